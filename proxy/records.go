package proxy

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// logRequest writes the one record of an intercepted request. It logs no
// header and no query string: either may carry a credential.
func (s *Server) logRequest(r *http.Request, rec *recorder, body *countingBody,
	st *reqState, start time.Time) {

	level := slog.LevelInfo
	if st.decision != DecisionIntercept {
		level = slog.LevelWarn
	}
	var in int64
	if body != nil {
		in = body.n
	}
	attrs := []slog.Attr{
		slog.String(KeySandbox, st.info.sandbox),
		slog.String(KeySandboxID, st.info.sandboxK),
		slog.Any(KeyPID, st.info.origin.PID),
		slog.String(KeyProvider, st.info.provider.Name),
		slog.String(KeyMethod, r.Method),
		slog.String(KeyHost, st.info.sni),
		slog.String(KeyPath, r.URL.Path),
		slog.String(KeyProto, r.Proto),
		slog.Int(KeyStatus, rec.statusCode()),
		slog.Int64(KeyBytesIn, in),
		slog.Int64(KeyBytesOut, rec.n),
		slog.Duration(KeyDuration, time.Since(start)),
		slog.String(KeyDecision, st.decision),
	}
	if st.reason != "" {
		attrs = append(attrs, slog.String(KeyReason, st.reason))
	}
	s.log.LogAttrs(r.Context(), level, msgRequest, attrs...)
}

// recorder notes the status and body bytes sent to the client. Flush and
// Hijack are forwarded explicitly (ReverseProxy needs both, for streaming and
// for websocket upgrades); Unwrap exposes the rest to http.ResponseController.
type recorder struct {
	http.ResponseWriter
	status   int
	n        int64
	hijacked bool
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.n += int64(n)
	return n, err
}

func (r *recorder) FlushError() error {
	return http.NewResponseController(r.ResponseWriter).Flush()
}

func (r *recorder) Flush() { _ = r.FlushError() }

func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(r.ResponseWriter).Hijack()
	if err == nil {
		r.hijacked = true
	}
	return c, brw, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// statusCode is what the client got: 101 after an upgrade (ReverseProxy writes
// that response on the hijacked connection, past the recorder).
func (r *recorder) statusCode() int {
	if r.hijacked && r.status == 0 {
		return http.StatusSwitchingProtocols
	}
	return r.status
}

// countingBody counts request body bytes read from the client.
type countingBody struct {
	io.ReadCloser
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}

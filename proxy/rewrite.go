package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hermes-netd/hermes-netd/internal/providers"
	"github.com/hermes-netd/hermes-netd/internal/secrets"
)

// reqState travels in the request context from ServeHTTP to the reverse
// proxy's Rewrite, Transport and ErrorHandler.
type reqState struct {
	info     *connInfo
	key      secrets.Key
	redact   *redaction // every form of key sent upstream; nil when none
	identity bool       // Accept-Encoding: identity was sent upstream
	decision string
	reason   string
}

type reqStateKey struct{}

// serveHTTP handles one request on a terminated connection: HTTP/1.1 requests
// on a keep-alive connection and HTTP/2 streams alike come through here, so
// each is checked on its own.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	info, ok := r.Context().Value(connInfoKey{}).(*connInfo)
	if !ok {
		writeJSONError(w, http.StatusInternalServerError, "hermes_internal_error",
			"connection has no interception state")
		return
	}
	start := time.Now()
	rec := &recorder{ResponseWriter: w}
	// The counting body goes only on the request handed to the reverse
	// proxy: net/http must keep seeing its own body on r, or an answer the
	// proxy gives itself (421, 429, 503) to a request sent with
	// "Expect: 100-continue" waits for a body the client never sends.
	var body *countingBody
	if r.Body != nil && r.Body != http.NoBody {
		body = &countingBody{ReadCloser: r.Body}
	}
	st := &reqState{info: info, decision: DecisionIntercept}
	defer func() {
		// A panic here is ReverseProxy aborting a response whose headers were
		// already sent; record it, then let the server reset the stream.
		if v := recover(); v != nil {
			st.decision, st.reason = DecisionUpstreamErr, "response aborted after headers"
			s.logRequest(r, rec, body, st, start)
			panic(v)
		}
		s.logRequest(r, rec, body, st, start)
	}()

	// Domain fronting and HTTP/2 coalescing both show up as an authority that
	// is not the name the connection was opened (and the leaf minted) for.
	if got := normalizeAuthority(r.Host, info.origin.Dst.Port()); got != info.sni {
		st.decision = DecisionMisdirected
		st.reason = fmt.Sprintf("authority %q is not the TLS server name %q", r.Host, info.sni)
		writeJSONError(rec, http.StatusMisdirectedRequest, "hermes_misdirected_request",
			fmt.Sprintf("this connection is for %s; open a new connection for %q",
				info.sni, r.Host))
		return
	}
	if r.Method == http.MethodConnect {
		st.decision, st.reason = DecisionDeny, "CONNECT on an intercepted connection"
		writeJSONError(rec, http.StatusMethodNotAllowed, "hermes_method_not_allowed",
			"CONNECT is not allowed here")
		return
	}

	// Never forward without the key: the upstream would see an anonymous or,
	// worse, the client's own credential.
	key, err := s.opts.Keys(keyName(info.provider))
	if err != nil {
		st.decision, st.reason = DecisionNoKey, err.Error()
		writeJSONError(rec, http.StatusServiceUnavailable, "hermes_no_credential",
			fmt.Sprintf("no credential is configured for provider %q; an operator can "+
				"add one with: hermes-netd secrets set %s", info.provider.Name,
				keyName(info.provider)))
		return
	}
	st.key = key

	// Over a limit, nothing goes upstream. The key is checked first so that a
	// request that could not be forwarded anyway spends no token.
	if why, ok := s.policy.Load().Limits.Allow(info.provider.Name, info.sandbox,
		info.sandboxK); !ok {
		rateLimited(rec, st, why)
		return
	}
	out := r.WithContext(context.WithValue(r.Context(), reqStateKey{}, st))
	if body != nil {
		out.Body = body
	}
	s.rp.ServeHTTP(rec, out)
}

func keyName(p *providers.Provider) string {
	if p.Key != "" {
		return p.Key
	}
	return p.Name
}

// newReverseProxy builds the forwarding half. Rewrite (not Director) runs
// after hop-by-hop headers are stripped, so nothing can remove the injected
// credential. No X-Forwarded-* or Forwarded header is added (Rewrite removes
// the client's): the sandbox's loopback address and name mean nothing to the
// provider and would only leak how the host is laid out.
func (s *Server) newReverseProxy() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			st := pr.In.Context().Value(reqStateKey{}).(*reqState)
			host := st.info.sni
			if p := st.info.origin.Dst.Port(); p != 443 {
				host += ":" + strconv.Itoa(int(p))
			}
			pr.SetURL(&url.URL{Scheme: "https", Host: host})
			p := st.info.provider
			p.Inject(pr.Out, st.key)

			// Whatever was sent is what an upstream could reflect back.
			var header string
			if p.Form.Kind == providers.FormHeader {
				header = p.Form.Header
			}
			st.redact = newRedaction(credentialForms(pr.Out, header, st.key.Reveal())...)

			// The scan cannot read a compressed body; when the policy says
			// so, ask for none (the transport adds no Accept-Encoding of its
			// own: DisableCompression).
			if s.policy.Load().IdentityEncoding {
				pr.Out.Header.Set("Accept-Encoding", "identity")
				st.identity = true
			}
		},
		Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			st := r.Context().Value(reqStateKey{}).(*reqState)
			if st.redact != nil {
				r = r.WithContext(httptrace.WithClientTrace(r.Context(),
					&httptrace.ClientTrace{Got1xxResponse: st.redact.redact1xx}))
			}
			return s.transportFor(st.info.origin.Dst).RoundTrip(r)
		}),
		ModifyResponse: func(resp *http.Response) error {
			// Alt-Svc would send clients to HTTP/3 over UDP, which
			// interception rejects; they would fall back, but only after a
			// wasted attempt.
			resp.Header.Del("Alt-Svc")

			// Defense in depth for promise 1: an upstream that reflects the
			// request (echo endpoints, errors quoting the credential) must
			// not hand the key to the sandbox.
			if resp.Request != nil {
				st, _ := resp.Request.Context().Value(reqStateKey{}).(*reqState)
				if st != nil && st.identity {
					if err := checkIdentity(resp); err != nil {
						return err // ErrorHandler answers 502; nothing is relayed
					}
				}
				if st != nil && st.redact != nil {
					st.redact.redactResponse(resp)
				}
			}
			return nil
		},
		// Flush every write at once: server-sent events and token streams
		// must reach the client as the upstream sends them.
		FlushInterval: -1,
		BufferPool:    &copyBuffers{},
		ErrorHandler:  s.upstreamError,
		// ReverseProxy's own log lines would bypass the records; its errors
		// reach upstreamError or end in an abort that logRequest records.
		ErrorLog: log.New(io.Discard, "", 0),
	}
}

// checkIdentity refuses a response with a body in a Content-Encoding other
// than identity, after identity alone was asked for: the credential scan
// could not see into it. ReverseProxy closes the body of a refused response.
func checkIdentity(resp *http.Response) error {
	if resp.StatusCode == http.StatusSwitchingProtocols ||
		resp.Body == nil || resp.Body == http.NoBody || resp.ContentLength == 0 {
		return nil
	}
	for _, v := range resp.Header.Values("Content-Encoding") {
		for _, enc := range strings.Split(v, ",") {
			// The value is not quoted: it came from the upstream.
			if enc = strings.TrimSpace(enc); enc != "" && !strings.EqualFold(enc, "identity") {
				return errors.New("response body is compressed (Content-Encoding) although " +
					"only identity was accepted (identity_encoding), so it cannot be " +
					"scanned for the credential; refused")
			}
		}
	}
	return nil
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// upstreamError answers a request whose upstream failed before any response
// header reached the client: 502 with a JSON body in the usual API error shape.
func (s *Server) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	st := r.Context().Value(reqStateKey{}).(*reqState)
	msg := sanitizeError(err, st.key)
	if st.redact != nil {
		msg = st.redact.maskString(msg)
	}
	st.decision, st.reason = DecisionUpstreamErr, msg
	writeJSONError(w, http.StatusBadGateway, "hermes_upstream_error",
		"upstream "+st.info.sni+": "+msg)
}

// sanitizeError drops the URL a transport error carries (a query-parameter
// credential would be in it) and, as a last line, masks the key if present.
func sanitizeError(err error, key secrets.Key) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg := err.Error()
	if k := key.Reveal(); k != "" {
		msg = strings.ReplaceAll(msg, k, "[REDACTED]")
	}
	return msg
}

// writeJSONError writes {"error":{"type":...,"message":...}}, the shape the
// OpenAI and Anthropic SDKs parse, so agents show a readable error.
func writeJSONError(w http.ResponseWriter, code int, typ, msg string) {
	body, _ := json.Marshal(map[string]map[string]string{
		"error": {"type": typ, "message": msg},
	})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(append(body, '\n'))
}

package fakeapi

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"time"
)

// maxBody bounds what a fake site reads of a request body.
const maxBody = 8 << 20

// record reads the body, then lets h answer; the request is logged when its
// status is written, before the client can see a byte of the answer, so that
// a test reading Requests after its client finished always finds it.
func (s *Server) record(p Provider, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
		r.Body.Close()
		r.Body = io.NopCloser(bytes.NewReader(body))

		rec := Request{
			Time:       time.Now(),
			Provider:   p,
			Proto:      r.Proto,
			RemoteAddr: r.RemoteAddr,
			Method:     r.Method,
			Host:       r.Host,
			Path:       r.URL.Path,
			Query:      r.URL.Query(),
			Header:     r.Header.Clone(),
			BodySize:   int64(len(body)),
		}
		if r.TLS != nil {
			rec.ServerName = r.TLS.ServerName
		}
		var fields struct {
			Model  string `json:"model"`
			Stream bool   `json:"stream"`
		}
		if json.Unmarshal(body, &fields) == nil {
			rec.Model, rec.Stream = fields.Model, fields.Stream
		}
		if err != nil {
			s.logger.Debug("Fake site read body", "provider", string(p), "error", err)
		}

		rw := &recordingWriter{ResponseWriter: w, done: func(status int) {
			rec.Status = status
			s.log.add(rec)
			s.logger.Debug("Fake site request", "provider", string(p), "method", r.Method,
				"host", r.Host, "path", r.URL.Path, "status", status)
		}}
		h.ServeHTTP(rw, r)
		rw.WriteHeader(http.StatusOK) // no-op when the handler wrote
	})
}

// recordingWriter calls done once with the status, before it goes out.
type recordingWriter struct {
	http.ResponseWriter
	once sync.Once
	done func(status int)
}

func (w *recordingWriter) WriteHeader(status int) {
	first := false
	w.once.Do(func() {
		first = true
		w.done(status)
	})
	if first {
		w.ResponseWriter.WriteHeader(status)
	}
}

func (w *recordingWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.ResponseWriter.Write(b)
}

// Flush sends what was written so far; streaming handlers rely on it.
func (w *recordingWriter) Flush() {
	w.WriteHeader(http.StatusOK)
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the real writer.
func (w *recordingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// writeJSON answers status with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "fakeapi: encoding answer: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

package fakeapi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Provider names one fake site.
type Provider string

// The fake sites. The first three check credentials; Passthrough and Unknown
// answer anything.
const (
	OpenAI      Provider = "openai"
	Anthropic   Provider = "anthropic"
	NIM         Provider = "nim"
	Passthrough Provider = "passthrough"
	Unknown     Provider = "unknown"
)

// KeyedProviders are the fake sites that demand a credential.
var KeyedProviders = []Provider{OpenAI, Anthropic, NIM}

// DefaultChunkDelay is the pause between two streamed chunks.
const DefaultChunkDelay = 40 * time.Millisecond

// Options configure a Server.
type Options struct {
	// Keys holds the credential each of KeyedProviders expects, without any
	// scheme ("sk-...", not "Bearer sk-..."). Every keyed provider needs one.
	Keys map[Provider]string

	// ChunkDelay is the pause after each streamed chunk; 0 means
	// DefaultChunkDelay.
	ChunkDelay time.Duration

	// Logger receives one Debug record per request (never a credential) and
	// serve errors. Nil discards.
	Logger *slog.Logger
}

// Server runs the fake sites and records what they receive.
type Server struct {
	logger *slog.Logger
	delay  time.Duration
	log    requestLog

	mu      sync.Mutex
	keys    map[Provider]string
	servers []*http.Server
	closed  bool
	wg      sync.WaitGroup
}

// New checks opts and returns a Server that serves nothing yet; see Start.
func New(opts Options) (*Server, error) {
	keys := make(map[Provider]string, len(KeyedProviders))
	for _, p := range KeyedProviders {
		k := opts.Keys[p]
		if k == "" {
			return nil, fmt.Errorf("fakeapi: no key for provider %s: set Options.Keys[%q]", p, p)
		}
		keys[p] = k
	}
	s := &Server{
		logger: opts.Logger,
		delay:  opts.ChunkDelay,
		keys:   keys,
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.delay <= 0 {
		s.delay = DefaultChunkDelay
	}
	return s, nil
}

// SetKey changes the credential provider p expects from now on.
func (s *Server) SetKey(p Provider, key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[p] = key
}

func (s *Server) key(p Provider) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[p]
}

// Handler returns the plain HTTP handler of site p, recording included.
func (s *Server) Handler(p Provider) (http.Handler, error) {
	var h http.Handler
	switch p {
	case OpenAI, NIM:
		h = s.openAIHandler(p)
	case Anthropic:
		h = s.anthropicHandler()
	case Passthrough, Unknown:
		h = plainSite(p)
	default:
		return nil, fmt.Errorf("fakeapi: unknown provider %q", p)
	}
	return s.record(p, h), nil
}

// Start serves site p over TLS with cert on ln, HTTP/1.1 and HTTP/2, until
// Close. It takes ownership of ln.
func (s *Server) Start(ln net.Listener, p Provider, cert tls.Certificate) error {
	h, err := s.Handler(p)
	if err != nil {
		ln.Close()
		return err
	}
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	protos.SetHTTP2(true)
	srv := &http.Server{
		Handler:           h,
		Protocols:         protos,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelDebug),
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			NextProtos:   []string{"h2", "http/1.1"},
			MinVersion:   tls.VersionTLS12,
		},
	}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return fmt.Errorf("fakeapi: starting %s: server closed", p)
	}
	s.servers = append(s.servers, srv)
	s.wg.Add(1)
	s.mu.Unlock()

	addr := ln.Addr().String()
	go func() {
		defer s.wg.Done()
		err := srv.ServeTLS(ln, "", "")
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("Fake site stopped", "provider", string(p), "addr", addr,
				"error", err)
		}
	}()
	return nil
}

// Requests returns what site p received, oldest first; p == "" means all.
func (s *Server) Requests(p Provider) []Request { return s.log.filter(p) }

// Reset forgets every recorded request.
func (s *Server) Reset() { s.log.reset() }

// Close stops every site, cutting open streams, and waits for them.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	servers := s.servers
	s.servers = nil
	s.mu.Unlock()

	var errs []error
	for _, srv := range servers {
		if err := srv.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing fake site: %w", err))
		}
	}
	s.wg.Wait()
	return errors.Join(errs...)
}

// sleep pauses between streamed chunks; false when the client went away.
func (s *Server) sleep(ctx context.Context) bool {
	t := time.NewTimer(s.delay)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// plainSite answers every request with a short text naming the site.
func plainSite(p Provider) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, PlainBody(p, r.Host))
	})
}

// PlainBody is what the Passthrough and Unknown sites answer to any request
// for host.
func PlainBody(p Provider, host string) string {
	return fmt.Sprintf("fake %s site %s says hello\n", p, host)
}

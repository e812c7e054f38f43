package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/hermes-netd/hermes-netd/internal/secrets"
)

// Origin is where an accepted connection was going before the redirect layer
// sent it to the proxy, and who opened it.
type Origin struct {
	Dst      netip.AddrPort // original destination
	PID, UID uint32         // client process and user, 0 when unknown
	CgroupID uint64         // client cgroup, 0 when unknown
}

// Sandbox describes the source of the connections one listener accepts.
type Sandbox struct {
	// Name identifies the sandbox in records, usually its netns spec.
	Name string
	// ID, when set, tells apart sandboxes that share a Name (a netns name made
	// again, a pid reused): the per-sandbox connection cap and rate limit
	// buckets go by ID, and records carry it as KeySandboxID, so two
	// namespaces never share a cap, a bucket or a request count. Empty means Name. The daemon sets
	// it to the namespace's netns cookie.
	ID string
	// Origin returns the original destination of an accepted connection. An
	// error refuses the connection, and the record says why. Required.
	Origin func(net.Conn) (Origin, error)
}

// Timeouts bound the phases of a connection. Zero fields take the defaults
// below. There is deliberately no deadline on request or response bodies: a
// long token stream must survive as long as data flows.
type Timeouts struct {
	// Handshake bounds reading the ClientHello plus the client's TLS handshake
	// (default 10s), and the upstream TLS handshake.
	Handshake time.Duration
	// ReadHeader bounds reading each request's headers (default 30s).
	ReadHeader time.Duration
	// Idle closes a client connection idle between requests (default 120s).
	Idle time.Duration
	// UpstreamIdle closes pooled upstream connections left idle (default 90s).
	UpstreamIdle time.Duration
	// Dial bounds the TCP connect to the original destination (default 10s).
	Dial time.Duration
	// Resolve bounds the lookup of a passthrough name for the destination
	// check (default 5s).
	Resolve time.Duration
}

func (t *Timeouts) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.Handshake, 10*time.Second)
	def(&t.ReadHeader, 30*time.Second)
	def(&t.Idle, 120*time.Second)
	def(&t.UpstreamIdle, 90*time.Second)
	def(&t.Dial, 10*time.Second)
	def(&t.Resolve, 5*time.Second)
}

// Options configure a Server. Logger, Policy, Keys and Certs are required.
type Options struct {
	// Logger receives the decision records. Required.
	Logger *slog.Logger
	// Policy is the initial policy; swap it later with SetPolicy. Required.
	Policy *Policy
	// Keys returns the key stored under a provider's key name. An error means
	// no usable key: the request is answered 503 and never forwarded.
	Keys func(keyName string) (secrets.Key, error)
	// Certs returns the leaf certificate for an SNI (ca.LeafCache.Get).
	Certs func(sni string) (*tls.Certificate, error)
	// UpstreamRoots verifies upstream certificates. Nil means the system
	// roots. Verification is never skipped.
	UpstreamRoots *x509.CertPool
	// Dial opens upstream TCP connections; nil means a net.Dialer. The SSRF
	// guard checks the address before Dial is called (it is always an IP
	// literal, so no resolution can change it); the default dialer checks it
	// again on the socket.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Timeouts bound the phases of a connection; zero fields take defaults.
	Timeouts Timeouts
	// MaxConnsPerSandbox caps the connections open at once from one sandbox
	// (by Sandbox.ID, else Name, across its listeners), so that one sandbox
	// cannot use up the daemon's file descriptors; zero or less means
	// DefaultMaxConnsPerSandbox. Over the cap an accepted connection is closed
	// at once and recorded as refused.
	MaxConnsPerSandbox int
	// MaxUpstreamConnsPerHost caps the upstream connections open at once to
	// one (original destination, SNI) pair, shared by every sandbox; zero or
	// less means DefaultMaxUpstreamConnsPerHost. It counts connections being
	// dialed, in use and idle. A request that finds every connection busy
	// waits for one to come free (or for its client to give up), so many
	// HTTP/2 streams over few client connections cannot open an upstream
	// connection each. Upgraded (websocket) connections leave the count once
	// the upgrade succeeds; each holds a client connection of its own.
	MaxUpstreamConnsPerHost int
	// Resolve looks up a passthrough name's addresses for the destination
	// check (Policy.UncheckedPassthrough); nil means
	// net.DefaultResolver.LookupNetIP(ctx, "ip", host). Answers are cached for
	// 30s and failures for 5s: the standard resolver gives no record TTLs, so
	// the cache cannot follow them. Names pinned in Policy.Hosts never reach it.
	Resolve func(ctx context.Context, host string) ([]netip.Addr, error)
}

// MaxConcurrentStreams is how many requests one HTTP/2 client connection may
// have open at once; the proxy advertises it in its SETTINGS.
const MaxConcurrentStreams = 100

// Server is the interception proxy. One Server serves any number of
// listeners, one per sandbox.
type Server struct {
	opts     Options
	log      *slog.Logger
	policy   atomic.Pointer[Policy]
	resolver *resolveCache
	conns    *connLimit

	upstreams upstreams
	rp        *httputil.ReverseProxy
	clientTLS *tls.Config  // shared by every intercepted client connection
	http      *http.Server // serves every terminated connection, h1 and h2
	tlsConns  *connListener
	connInfo  sync.Map // *tls.Conn -> *connInfo, until http.Server picks it up

	mu        sync.Mutex
	closing   bool
	listeners map[net.Listener]netip.AddrPort
	raw       map[net.Conn]struct{} // conns not (yet) owned by http
	wg        sync.WaitGroup        // goroutines owning a raw conn
}

// New checks opts and returns a Server ready to Serve.
func New(opts Options) (*Server, error) {
	switch {
	case opts.Logger == nil:
		return nil, errors.New("proxy options: Logger is required")
	case opts.Policy == nil:
		return nil, errors.New("proxy options: Policy is required")
	case opts.Keys == nil:
		return nil, errors.New("proxy options: Keys is required")
	case opts.Certs == nil:
		return nil, errors.New("proxy options: Certs is required")
	}
	if err := opts.Policy.Validate(); err != nil {
		return nil, fmt.Errorf("proxy options: %w", err)
	}
	opts.Timeouts.setDefaults()

	s := &Server{
		opts:      opts,
		log:       opts.Logger,
		listeners: make(map[net.Listener]netip.AddrPort),
		raw:       make(map[net.Conn]struct{}),
		tlsConns:  newConnListener(),
		resolver:  newResolveCache(opts.Resolve),
		conns:     newConnLimit(opts.MaxConnsPerSandbox),
	}
	s.policy.Store(opts.Policy)
	s.rp = s.newReverseProxy()
	s.clientTLS = s.newClientTLS()
	if err := s.startHTTP(); err != nil {
		return nil, err
	}
	return s, nil
}

// startHTTP starts the one http.Server that serves every terminated
// connection. It sees handshaken *tls.Conns, so it serves h2 through
// TLSNextProto and HTTP/1.1 itself, and Shutdown drains both gracefully.
func (s *Server) startHTTP() error {
	hs := &http.Server{
		Handler:           http.HandlerFunc(s.serveHTTP),
		ReadHeaderTimeout: s.opts.Timeouts.ReadHeader,
		IdleTimeout:       s.opts.Timeouts.Idle,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if info, ok := s.connInfo.LoadAndDelete(c); ok {
				return context.WithValue(ctx, connInfoKey{}, info)
			}
			return ctx
		},
	}
	h2 := &http2.Server{
		IdleTimeout: s.opts.Timeouts.Idle,
		// Set explicitly, not left to the library's default: with the
		// per-sandbox connection cap it bounds the requests one sandbox can
		// have in flight.
		MaxConcurrentStreams: MaxConcurrentStreams,
	}
	if err := http2.ConfigureServer(hs, h2); err != nil {
		return fmt.Errorf("configuring http2: %w", err)
	}
	s.http = hs
	go hs.Serve(s.tlsConns) //nolint:errcheck // ends with ErrServerClosed on Shutdown
	return nil
}

// SetPolicy replaces the policy for connections accepted from now on.
func (s *Server) SetPolicy(p *Policy) error {
	if p == nil {
		return errors.New("setting policy: nil policy")
	}
	if err := p.Validate(); err != nil {
		return fmt.Errorf("setting policy: %w", err)
	}
	s.policy.Store(p)
	return nil
}

// key is what the per-sandbox connection cap, the rate limit buckets and the
// records' KeySandboxID go by: ID, else Name.
func (sb Sandbox) key() string {
	if sb.ID != "" {
		return sb.ID
	}
	return sb.Name
}

// Serve accepts connections on ln until ln is closed or Shutdown is called,
// and handles each as coming from sb. It returns nil after Shutdown; when the
// caller closes ln (a detach), the error wraps net.ErrClosed. Connections
// already accepted carry on either way; Shutdown ends them.
func (s *Server) Serve(ln net.Listener, sb Sandbox) error {
	if sb.Origin == nil {
		return fmt.Errorf("serving sandbox %q: Sandbox.Origin is required", sb.Name)
	}
	if !s.addListener(ln) {
		return http.ErrServerClosed
	}
	defer s.removeListener(ln)

	var errs acceptErrors
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.isClosing() {
				return nil
			}
			if isTemporary(err) {
				time.Sleep(errs.failed(s.log, sb.Name, err))
				continue
			}
			return fmt.Errorf("accepting on %v: %w", ln.Addr(), err)
		}
		errs.succeeded()

		// Over the cap the connection is closed at once, and the loop goes on
		// draining the backlog: blocking here would stall the sandbox's other
		// clients, and the refused ones would sit in the backlog holding fds.
		release, ok := s.conns.acquire(sb.key())
		if !ok {
			s.refuse(c, sb, Origin{}, "", fmt.Sprintf(
				"sandbox connection limit %d reached", s.conns.max))
			continue
		}
		cc := &countedConn{Conn: c, release: release}
		if !s.trackRaw(cc) {
			cc.Close()
			return nil
		}
		go s.handle(cc, sb)
	}
}

// Shutdown stops accepting, lets requests in flight and passthrough
// connections finish until ctx is done, then closes whatever is left and
// returns ctx's error. Upgraded (websocket) connections are not waited for.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	var errs []error
	for ln := range s.listeners {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("closing listener %v: %w", ln.Addr(), err))
		}
	}
	s.mu.Unlock()

	if err := s.http.Shutdown(ctx); err != nil {
		errs = append(errs, err)
	}

	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.raw {
			c.Close()
		}
		s.mu.Unlock()
		<-done
		errs = append(errs, ctx.Err())
	}
	s.http.Close()
	s.closeUpstreams()
	return errors.Join(errs...)
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

func (s *Server) addListener(ln net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	var ap netip.AddrPort
	if ta, ok := ln.Addr().(*net.TCPAddr); ok {
		ap = ta.AddrPort()
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	s.listeners[ln] = ap
	return true
}

func (s *Server) removeListener(ln net.Listener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.listeners, ln)
}

// isListener reports whether addr is one of the proxy's listening sockets
// (an unspecified listener address matches any address on its port).
func (s *Server) isListener(addr netip.AddrPort) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.listeners {
		if l.Port() != addr.Port() || !l.IsValid() {
			continue
		}
		if l.Addr() == addr.Addr() || l.Addr().IsUnspecified() {
			return true
		}
	}
	return false
}

// trackRaw registers a connection owned by one of the proxy's goroutines, so
// that Shutdown can close it. It refuses once Shutdown has begun.
func (s *Server) trackRaw(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.raw[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrackRaw(c net.Conn) {
	s.mu.Lock()
	delete(s.raw, c)
	s.mu.Unlock()
	s.wg.Done()
}

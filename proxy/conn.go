package proxy

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hermes-netd/hermes-netd/internal/providers"
)

// connInfo is what the request handler knows about its connection.
type connInfo struct {
	sandbox  string // Sandbox.Name
	sandboxK string // Sandbox.key(): ID, else Name
	origin   Origin
	sni      string
	provider *providers.Provider
	proto    string // negotiated ALPN
}

type connInfoKey struct{}

// handle owns one accepted connection until it is refused, spliced to
// completion, or handed (terminated) to the http.Server.
func (s *Server) handle(c net.Conn, sb Sandbox) {
	defer s.untrackRaw(c)

	origin, err := sb.Origin(rawConn(c))
	if err != nil {
		s.refuse(c, sb, Origin{}, "", "original destination unknown: "+err.Error())
		return
	}

	// The policy and the TLS handshake both see these same bytes: the hello is
	// read once here and replayed to whatever comes next.
	deadline := time.Now().Add(s.opts.Timeouts.Handshake)
	hello, peeked, err := ReadClientHello(c, deadline)
	if err != nil {
		s.refuse(c, sb, origin, "", err.Error())
		return
	}

	pol := s.policy.Load()
	d := pol.Decide(hello.ServerName)
	switch d.Action {
	case Intercept:
		s.intercept(c, peeked, sb, origin, hello.ServerName, d.Provider, deadline)
	case Passthrough:
		if err := s.checkDestination(pol, hello.ServerName, origin.Dst.Addr()); err != nil {
			s.refuse(c, sb, origin, hello.ServerName, err.Error())
			return
		}
		s.passthrough(c, peeked, sb, origin, hello.ServerName, pol, d.Reason)
	default:
		s.refuse(c, sb, origin, hello.ServerName, d.Reason)
	}
}

// refuse closes c and writes the record saying why.
func (s *Server) refuse(c net.Conn, sb Sandbox, o Origin, sni, reason string) {
	c.Close()
	s.log.LogAttrs(context.Background(), slog.LevelWarn, msgRefused,
		slog.String(KeySandbox, sb.Name),
		slog.String(KeySandboxID, sb.key()),
		slog.Any(KeyPID, o.PID),
		slog.Any(KeyUID, o.UID),
		slog.String(KeyDst, addrString(o)),
		slog.String(KeyHost, sni),
		slog.String(KeyDecision, DecisionDeny),
		slog.String(KeyReason, reason),
	)
}

func addrString(o Origin) string {
	if !o.Dst.IsValid() {
		return ""
	}
	return o.Dst.String()
}

// connListener is the net.Listener the http.Server accepts terminated
// connections from.
type connListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newConnListener() *connListener {
	return &connListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// push hands c to the http.Server; false when it is shut down.
func (l *connListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4zero} }

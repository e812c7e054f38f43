package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/hermes-netd/hermes-netd/internal/providers"
)

// errSNIChanged would mean the TLS stack read a different SNI than the policy.
// It cannot happen while both read the same replayed bytes; the check keeps it so.
var errSNIChanged = errors.New("handshake SNI differs from the one the policy judged")

// intercept terminates TLS on c with a leaf for sni and hands the connection
// to the http.Server, whose handler forwards each request with the key.
func (s *Server) intercept(c net.Conn, peeked []byte, sb Sandbox, o Origin,
	sni string, prov *providers.Provider, deadline time.Time) {

	tc := tls.Server(&replayConn{Conn: c, pending: peeked, sni: sni}, s.clientTLS)

	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		tc.Close()
		s.connError(sb, o, sni, prov.Name, "client TLS handshake: "+err.Error())
		return
	}

	info := &connInfo{sandbox: sb.Name, sandboxK: sb.key(), origin: o, sni: sni, provider: prov,
		proto: tc.ConnectionState().NegotiatedProtocol}
	s.connInfo.Store(tc, info)
	if !s.tlsConns.push(tc) {
		s.connInfo.Delete(tc)
		tc.Close()
	}
}

// newClientTLS returns the one TLS config of every intercepted client
// connection. Sharing it saves a config per connection, for as long as the
// connection lives; the name each connection was judged for travels on its
// replayConn, which GetCertificate sees as ClientHelloInfo.Conn.
func (s *Server) newClientTLS() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Negotiated with the client alone: the upstream side picks its own.
		NextProtos: []string{"h2", "http/1.1"},
		// A resumed session skips GetCertificate and so the check below, and
		// a shared config would make tickets from one name usable on a
		// connection for another. Per-connection configs never resumed
		// either, since each had its own ticket keys.
		SessionTicketsDisabled: true,
		GetCertificate: func(chi *tls.ClientHelloInfo) (*tls.Certificate, error) {
			rc, ok := chi.Conn.(*replayConn)
			if !ok {
				return nil, fmt.Errorf("%w: no policy decision for this connection",
					errSNIChanged)
			}
			if got, err := normalizeSNI(chi.ServerName); err != nil || got != rc.sni {
				return nil, fmt.Errorf("%w: policy saw %q, handshake %q",
					errSNIChanged, rc.sni, chi.ServerName)
			}
			return s.opts.Certs(rc.sni)
		},
	}
}

// connError records a connection that was accepted by policy but failed
// before any request (typically a client that does not trust the CA).
func (s *Server) connError(sb Sandbox, o Origin, sni, provider, reason string) {
	s.log.LogAttrs(context.Background(), slog.LevelWarn, msgConnError,
		slog.String(KeySandbox, sb.Name),
		slog.String(KeySandboxID, sb.key()),
		slog.Any(KeyPID, o.PID),
		slog.String(KeyDst, addrString(o)),
		slog.String(KeyHost, sni),
		slog.String(KeyProvider, provider),
		slog.String(KeyDecision, DecisionIntercept),
		slog.String(KeyReason, reason),
	)
}

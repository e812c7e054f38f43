package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// ErrUpstreamRefused is wrapped by every refusal of the SSRF guard.
var ErrUpstreamRefused = errors.New("address refused by the SSRF guard")

// blockedRanges are the non-public ranges the guard refuses. The proxy dials
// from the host's namespace, where these reach the host itself and its LAN.
var blockedRanges = []struct {
	prefix netip.Prefix
	name   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "this-network"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private"},
	{netip.MustParsePrefix("100.64.0.0/10"), "CGNAT"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("fc00::/7"), "private"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

// checkUpstream is the SSRF guard: it refuses addr when it is one of the
// proxy's own listeners (always: that would loop) or in a blocked range the
// policy does not allow.
func (s *Server) checkUpstream(addr netip.AddrPort, p *Policy) error {
	if !addr.IsValid() || addr.Port() == 0 {
		return fmt.Errorf("%w: no original destination (%v)", ErrUpstreamRefused, addr)
	}
	a := addr.Addr().Unmap()
	if s.isListener(netip.AddrPortFrom(a, addr.Port())) {
		return fmt.Errorf("%w: %v is the proxy's own listener", ErrUpstreamRefused, addr)
	}
	if p.allowsUpstream(a) {
		return nil
	}
	for _, r := range blockedRanges {
		if r.prefix.Contains(a) {
			return fmt.Errorf("%w: %v is in a %s range (%v); add the range to "+
				"allow_upstream in the config to permit it", ErrUpstreamRefused, addr, r.name, r.prefix)
		}
	}
	return nil
}

// dialUpstream opens a TCP connection to dst from the proxy's namespace,
// through the SSRF guard. The guard runs again in the socket's Control hook on
// the address actually dialed, so no later change of address can slip past it.
func (s *Server) dialUpstream(ctx context.Context, dst netip.AddrPort, p *Policy) (net.Conn, error) {
	if err := s.checkUpstream(dst, p); err != nil {
		return nil, err
	}
	if s.opts.Dial != nil {
		return s.opts.Dial(ctx, "tcp", dst.String())
	}
	d := net.Dialer{
		Timeout:   s.opts.Timeouts.Dial,
		KeepAlive: 30 * time.Second,
		Control: func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: unparsable address %q", ErrUpstreamRefused, address)
			}
			return s.checkUpstream(ap, p)
		},
	}
	return d.DialContext(ctx, "tcp", dst.String())
}

// upstreams pools one http.Transport per original destination. The transport
// dials that destination whatever the URL says, and verifies the certificate
// for the URL's host, the SNI; its own pool is keyed by that host, so a
// connection is reused only for the same (destination, SNI) pair.
type upstreams struct {
	mu    sync.Mutex
	byDst map[netip.AddrPort]*http.Transport
}

// maxTransports bounds the pool map; providers resolve to few addresses.
const maxTransports = 256

// DefaultMaxUpstreamConnsPerHost is Options.MaxUpstreamConnsPerHost when
// unset.
const DefaultMaxUpstreamConnsPerHost = 64

func (s *Server) transportFor(dst netip.AddrPort) *http.Transport {
	u := &s.upstreams
	u.mu.Lock()
	defer u.mu.Unlock()
	if t, ok := u.byDst[dst]; ok {
		return t
	}
	if len(u.byDst) >= maxTransports {
		for k, t := range u.byDst { // evict one; idle conns go, live ones finish
			t.CloseIdleConnections()
			delete(u.byDst, k)
			break
		}
	}
	t := s.newTransport(dst)
	if u.byDst == nil {
		u.byDst = make(map[netip.AddrPort]*http.Transport)
	}
	u.byDst[dst] = t
	return t
}

func (s *Server) newTransport(dst netip.AddrPort) *http.Transport {
	return &http.Transport{
		// The policy is read per dial, so a reload's AllowUpstream applies to
		// new upstream connections at once.
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return s.dialUpstream(ctx, dst, s.policy.Load())
		},
		TLSClientConfig: &tls.Config{
			RootCAs:    s.opts.UpstreamRoots, // nil: system roots
			MinVersion: tls.VersionTLS12,
		},
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   16,
		MaxConnsPerHost:       s.maxUpstreamConns(),
		IdleConnTimeout:       s.opts.Timeouts.UpstreamIdle,
		TLSHandshakeTimeout:   s.opts.Timeouts.Handshake,
		ExpectContinueTimeout: time.Second,
		// Compression is left as client and upstream chose it.
		DisableCompression: true,
		// No Proxy: the proxy talks to the original destination directly.
		Proxy: nil,
	}
}

// maxUpstreamConns is the per-(destination, SNI) cap on upstream
// connections.
func (s *Server) maxUpstreamConns() int {
	if n := s.opts.MaxUpstreamConnsPerHost; n > 0 {
		return n
	}
	return DefaultMaxUpstreamConnsPerHost
}

func (s *Server) closeUpstreams() {
	u := &s.upstreams
	u.mu.Lock()
	defer u.mu.Unlock()
	for k, t := range u.byDst {
		t.CloseIdleConnections()
		delete(u.byDst, k)
	}
}

package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// passOnce sends a hello for sni and payload through the proxy, half-closes,
// and returns what came back.
func passOnce(t *testing.T, e *env, sni string, payload []byte) []byte {
	t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	sent := append(goHello(t, &tls.Config{ServerName: sni}), payload...)
	if _, err := c.Write(sent); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	got, _ := io.ReadAll(c) // a refusal may end in a reset
	return got
}

func mapped(a netip.Addr) netip.Addr { return netip.AddrFrom16(a.As16()) }

func TestPassthroughDestinationCheck(t *testing.T) {
	const sni = "files.site.example"
	loop := netip.MustParseAddr("127.0.0.1")
	other := netip.MustParseAddr("127.0.0.99") // where "DNS" says the site is
	answer := func(a ...netip.Addr) func(context.Context, string) ([]netip.Addr, error) {
		return func(context.Context, string) ([]netip.Addr, error) { return a, nil }
	}
	errDNS := errors.New("server misbehaving")

	tests := []struct {
		name       string
		policy     func(*Policy)
		resolve    func(context.Context, string) ([]netip.Addr, error)
		mapDst     bool   // the sandbox connected to the IPv4-mapped form
		wantReason string // "" = spliced
	}{
		{name: "address of the name", resolve: answer(other, loop)},
		{name: "resolver answers mapped", resolve: answer(mapped(loop))},
		{name: "destination mapped", resolve: answer(loop), mapDst: true},
		{name: "spoofed destination", resolve: answer(other),
			wantReason: "destination 127.0.0.1 is not an address of " + sni},
		{name: "spoofed under default passthrough", resolve: answer(other),
			policy:     func(p *Policy) { p.Passthrough, p.DefaultPassthrough = nil, true },
			wantReason: "destination 127.0.0.1 is not an address of " + sni},
		{name: "resolver fails",
			resolve: func(context.Context, string) ([]netip.Addr, error) {
				return nil, errDNS
			},
			wantReason: "destination 127.0.0.1 of " + sni + " not checked: resolving " +
				sni + ": server misbehaving"},
		{name: "resolver finds nothing", resolve: answer(),
			wantReason: "no address for " + sni},
		{name: "check off", resolve: answer(other),
			policy: func(p *Policy) { p.UncheckedPassthrough = true }},
		{name: "pinned in hosts", resolve: answer(other),
			policy: func(p *Policy) { p.Hosts = map[string][]netip.Addr{sni: {loop}} }},
		{name: "pinned by pattern", resolve: answer(other),
			policy: func(p *Policy) {
				p.Hosts = map[string][]netip.Addr{"*.site.example": {loop}}
			}},
		{name: "hosts wins over dns", resolve: answer(loop),
			policy:     func(p *Policy) { p.Hosts = map[string][]netip.Addr{sni: {other}} },
			wantReason: "destination 127.0.0.1 is not an address of " + sni},
		{name: "exact hosts entry wins over pattern", resolve: answer(other),
			policy: func(p *Policy) {
				p.Hosts = map[string][]netip.Addr{"*.site.example": {loop}, sni: {other}}
			},
			wantReason: "destination 127.0.0.1 is not an address of " + sni},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reply := []byte("from the site")
			up, upGot := rawUpstream(t, reply)
			e := newEnv(t, nil, func(o *Options) {
				o.Policy.Passthrough = []string{"*.site.example"}
				if tt.policy != nil {
					tt.policy(o.Policy)
				}
				o.Resolve = tt.resolve
			})
			dst := up
			if tt.mapDst {
				dst = netip.AddrPortFrom(mapped(up.Addr()), up.Port())
			}
			e.setDst(dst)

			got := passOnce(t, e, sni, []byte("payload"))

			if tt.wantReason == "" {
				if !bytes.Equal(got, reply) {
					t.Errorf("client got %q, want the site's %q", got, reply)
				}
				if up := <-upGot; !bytes.HasSuffix(up, []byte("payload")) {
					t.Errorf("site got %q, want the hello and payload", up)
				}
				e.waitRecords(t, msgPassthrough, 1)
				return
			}
			if len(got) != 0 {
				t.Errorf("client got %q from a refused connection", got)
			}
			if n := e.dialCount(); n != 0 {
				t.Errorf("%d upstream dials for a refused connection, want none", n)
			}
			rec := e.waitRecords(t, msgRefused, 1)[0]
			if r, _ := rec[KeyReason].(string); !strings.Contains(r, tt.wantReason) {
				t.Errorf("reason %q, want it to contain %q", r, tt.wantReason)
			}
			if rec[KeyHost] != sni || rec[KeyDst] != dst.String() ||
				rec[KeyDecision] != DecisionDeny {
				t.Errorf("record host %v dst %v decision %v, want %s %s %s", rec[KeyHost],
					rec[KeyDst], rec[KeyDecision], sni, dst, DecisionDeny)
			}
		})
	}
}

func TestPassthroughResolveCache(t *testing.T) {
	var calls atomic.Int64
	e := newEnv(t, nil, func(o *Options) {
		o.Policy.Passthrough = []string{"site.example"}
		o.Resolve = func(context.Context, string) ([]netip.Addr, error) {
			calls.Add(1)
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		}
	})
	clock := time.Now()
	e.srv.resolver.now = func() time.Time { return clock }

	for i := range 2 {
		up, _ := rawUpstream(t, []byte("ok"))
		e.setDst(up)
		if got := passOnce(t, e, "site.example", nil); string(got) != "ok" {
			t.Fatalf("connection %d got %q, want ok", i, got)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("resolver called %d times for two connections within the TTL, want 1", n)
	}

	clock = clock.Add(resolveTTL) // the answer has expired
	up, _ := rawUpstream(t, []byte("ok"))
	e.setDst(up)
	if got := passOnce(t, e, "site.example", nil); string(got) != "ok" {
		t.Fatalf("connection after expiry got %q, want ok", got)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("resolver called %d times after the TTL passed, want 2", n)
	}
}

// A slow resolver is cut off by Timeouts.Resolve and the connection refused.
func TestPassthroughResolveTimeout(t *testing.T) {
	e := newEnv(t, nil, func(o *Options) {
		o.Policy.Passthrough = []string{"site.example"}
		o.Timeouts.Resolve = 50 * time.Millisecond
		o.Resolve = func(ctx context.Context, _ string) ([]netip.Addr, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}
	})
	e.setDst(netip.MustParseAddrPort("127.0.0.1:9"))
	passOnce(t, e, "site.example", nil)
	rec := e.waitRecords(t, msgRefused, 1)[0]
	if r, _ := rec[KeyReason].(string); !strings.Contains(r, "deadline exceeded") {
		t.Errorf("reason %q, want the lookup's deadline named", r)
	}
}

func TestPolicyValidateHosts(t *testing.T) {
	for name, hosts := range map[string]map[string][]netip.Addr{
		"bad name":   {"a.*.example": {netip.MustParseAddr("192.0.2.1")}},
		"no address": {"a.example": nil},
		"zero addr":  {"a.example": {{}}},
	} {
		p := &Policy{Hosts: hosts}
		if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "hosts entry") {
			t.Errorf("%s: Validate() = %v, want an error naming the hosts entry", name, err)
		}
	}
}

// The check on a cached name costs a map lookup and a short scan, not a
// lookup per connection.
func BenchmarkCheckDestinationCached(b *testing.B) {
	addr := netip.MustParseAddr("192.0.2.10")
	s := &Server{opts: Options{Timeouts: Timeouts{Resolve: time.Second}},
		resolver: newResolveCache(func(context.Context, string) ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr("192.0.2.9"), addr}, nil
		})}
	pol := &Policy{}
	for b.Loop() {
		if err := s.checkDestination(pol, "files.site.example", addr); err != nil {
			b.Fatal(err)
		}
	}
}

// Lookups racing for one name share the first one's answer.
func TestResolveCacheOneLookupAtOnce(t *testing.T) {
	var calls atomic.Int64
	release := make(chan struct{})
	c := newResolveCache(func(context.Context, string) ([]netip.Addr, error) {
		calls.Add(1)
		<-release
		return []netip.Addr{netip.MustParseAddr("192.0.2.1")}, nil
	})
	errs := make(chan error, 5)
	for range 5 {
		go func() {
			_, err := c.lookup("a.example", 5*time.Second)
			errs <- err
		}()
	}
	time.Sleep(50 * time.Millisecond) // let them all reach the cache
	close(release)
	for range 5 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("resolver called %d times for 5 racing lookups, want 1", n)
	}
}

// The cache stays bounded however many names a sandbox sends.
func TestResolveCacheBounded(t *testing.T) {
	c := newResolveCache(func(context.Context, string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("192.0.2.1")}, nil
	})
	for i := range resolveMaxNames + 100 {
		if _, err := c.lookup(fmt.Sprintf("n%d.example", i), time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(c.m); n > resolveMaxNames {
		t.Errorf("cache holds %d names, want at most %d", n, resolveMaxNames)
	}
}

//go:build linux

package netsetup_test

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/hermes-netd/hermes-netd/netsetup"
	"github.com/hermes-netd/hermes-netd/netsetup/nstest"
)

// proxyListeners serves "proxy <original dst>" on 127.0.0.1 and ::1 inside the
// sandbox, as the daemon's listeners would.
func proxyListeners(t *testing.T, ns *netsetup.NS) (l4, l6 net.Listener) {
	reply := func(c net.Conn) string {
		dst, err := netsetup.OriginalDst(c.(*net.TCPConn))
		if err != nil {
			return "proxy error: " + err.Error()
		}
		return "proxy " + dst.String()
	}
	return nstest.Serve(t, ns, "127.0.0.1:0", reply), nstest.Serve(t, ns, "[::1]:0", reply)
}

func port(ln net.Listener) uint16 { return uint16(ln.Addr().(*net.TCPAddr).Port) }

// TestPrivilegedNftRedirect drives the nftables path end to end: intercepted TCP
// lands on the listener with conntrack answering the original destination, other
// ports reach the fake internet, UDP to 443 is refused at once, and removing the
// table restores direct behaviour.
func TestPrivilegedNftRedirect(t *testing.T) {
	w := nstest.NewWorld(t, 443, 80, 8443)
	l4, l6 := proxyListeners(t, w.Sandbox)
	cfg := netsetup.TableConfig{Listen4: port(l4), Listen6: port(l6)}
	if err := w.Sandbox.EnsureTable(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Sandbox.RemoveTable() })

	tests := []struct{ network, addr, want string }{
		{"tcp", "198.18.0.10:443", "proxy 198.18.0.10:443"},
		{"tcp", "[2001:db8::10]:443", "proxy [2001:db8::10]:443"},
		{"tcp-mapped", "198.18.0.10:443", "proxy 198.18.0.10:443"},
		{"tcp", "198.18.0.10:80", "inet 80"},
		{"tcp", "198.18.0.10:8443", "inet 8443"},
		{"tcp", "[2001:db8::10]:80", "inet 80"},
		{"tcp", "[2001:db8::10]:8443", "inet 8443"},
	}
	for _, tt := range tests {
		if got, err := nstest.Ask(w.Sandbox, tt.network, tt.addr); err != nil || got != tt.want {
			t.Errorf("%s %s: got %q, %v; want %q", tt.network, tt.addr, got, err, tt.want)
		}
	}

	for _, addr := range []string{"198.18.0.10:443", "[2001:db8::10]:443"} {
		start := time.Now()
		err := nstest.UDPRefused(w.Sandbox, addr, 2*time.Second)
		if err == nil {
			t.Errorf("udp %s: not refused", addr)
		} else if d := time.Since(start); d > 500*time.Millisecond {
			t.Errorf("udp %s: refused only after %v (%v), want well under a second", addr, d, err)
		}
	}
	if err := nstest.UDPRefused(w.Sandbox, "198.18.0.10:8443", 2*time.Second); err != nil {
		t.Errorf("udp 8443 refused (%v), want it untouched", err)
	}

	if err := w.Sandbox.RemoveTable(); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"198.18.0.10:443", "[2001:db8::10]:443"} {
		if got, err := nstest.Ask(w.Sandbox, "tcp", addr); err != nil || got != "inet 443" {
			t.Errorf("after RemoveTable, %s: got %q, %v; want the fake internet", addr, got, err)
		}
	}
	if err := nstest.UDPRefused(w.Sandbox, "198.18.0.10:443", 2*time.Second); err != nil {
		t.Errorf("after RemoveTable, udp 443 refused: %v", err)
	}
}

// TestPrivilegedNftFailClosed: with the table in place and no listener, an
// intercepted connection fails; it never reaches the fake internet.
func TestPrivilegedNftFailClosed(t *testing.T) {
	w := nstest.NewWorld(t, 443)
	l4, l6 := proxyListeners(t, w.Sandbox)
	cfg := netsetup.TableConfig{Listen4: port(l4), Listen6: port(l6)}
	if err := w.Sandbox.EnsureTable(cfg); err != nil {
		t.Fatal(err)
	}
	l4.Close()
	l6.Close()

	for _, addr := range []string{"198.18.0.10:443", "[2001:db8::10]:443"} {
		got, err := nstest.Ask(w.Sandbox, "tcp", addr)
		if err == nil {
			t.Errorf("%s with the daemon down: got %q, want the connection refused", addr, got)
		}
	}
}

// TestPrivilegedOriginalDstNotRedirected: a direct connection has no original
// destination, and OriginalDst says so with ErrNoOriginalDst.
func TestPrivilegedOriginalDstNotRedirected(t *testing.T) {
	ns, _ := nstest.NewNS(t, "od")
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		errc := make(chan error, 1)
		ln := nstest.Serve(t, ns, addr, func(c net.Conn) string {
			_, err := netsetup.OriginalDst(c.(*net.TCPConn))
			errc <- err
			return "done"
		})
		if _, err := nstest.Ask(ns, "tcp", ln.Addr().String()); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; !errors.Is(err, netsetup.ErrNoOriginalDst) {
			t.Errorf("%s: OriginalDst error = %v, want ErrNoOriginalDst", addr, err)
		}
	}
}

// TestPrivilegedNftStrict: strict mode still redirects the intercepted ports and
// lets DNS out, and refuses every other egress at once.
func TestPrivilegedNftStrict(t *testing.T) {
	w := nstest.NewWorld(t, 443, 80, 53)
	l4, l6 := proxyListeners(t, w.Sandbox)
	cfg := netsetup.TableConfig{Listen4: port(l4), Listen6: port(l6), Strict: true}
	if err := w.Sandbox.EnsureTable(cfg); err != nil {
		t.Fatal(err)
	}

	allowed := []struct{ network, addr, want string }{
		{"tcp", "198.18.0.10:443", "proxy 198.18.0.10:443"},
		{"tcp", "[2001:db8::10]:443", "proxy [2001:db8::10]:443"},
		{"tcp", "198.18.0.10:53", "inet 53"},
		{"tcp", "[2001:db8::10]:53", "inet 53"},
	}
	for _, tt := range allowed {
		if got, err := nstest.Ask(w.Sandbox, tt.network, tt.addr); err != nil || got != tt.want {
			t.Errorf("strict, %s: got %q, %v; want %q", tt.addr, got, err, tt.want)
		}
	}
	for _, addr := range []string{"198.18.0.10:53", "[2001:db8::10]:53"} {
		if err := nstest.UDPRefused(w.Sandbox, addr, 2*time.Second); err != nil {
			t.Errorf("strict, udp %s (DNS) refused: %v", addr, err)
		}
	}

	for _, addr := range []string{"198.18.0.10:80", "[2001:db8::10]:80"} {
		start := time.Now()
		got, err := nstest.Ask(w.Sandbox, "tcp", addr)
		if err == nil {
			t.Errorf("strict, tcp %s: got %q, want it refused", addr, got)
		} else if d := time.Since(start); d > 500*time.Millisecond {
			t.Errorf("strict, tcp %s: refused after %v, want at once", addr, d)
		}
	}
	if err := nstest.UDPRefused(w.Sandbox, "198.18.0.10:80", 2*time.Second); err == nil {
		t.Error("strict, udp 80 not refused")
	}
}

// TestPrivilegedNftOneFamily: with no IPv6 listener, intercepted IPv6 TCP is
// refused at once (never let through), IPv4 is redirected, other ports untouched.
func TestPrivilegedNftOneFamily(t *testing.T) {
	w := nstest.NewWorld(t, 443, 80)
	l4, _ := proxyListeners(t, w.Sandbox)
	if err := w.Sandbox.EnsureTable(netsetup.TableConfig{Listen4: port(l4)}); err != nil {
		t.Fatal(err)
	}

	if got, err := nstest.Ask(w.Sandbox, "tcp", "198.18.0.10:443"); got != "proxy 198.18.0.10:443" {
		t.Errorf("v4 443: got %q, %v; want the listener", got, err)
	}
	if got, err := nstest.Ask(w.Sandbox, "tcp", "[2001:db8::10]:80"); got != "inet 80" {
		t.Errorf("v6 80: got %q, %v; want the fake internet", got, err)
	}
	start := time.Now()
	got, err := nstest.Ask(w.Sandbox, "tcp", "[2001:db8::10]:443")
	if err == nil {
		t.Errorf("v6 443 without a v6 listener: got %q, want it refused", got)
	} else if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("v6 443 refused after %v (%v), want at once", d, err)
	}
}

// TestPrivilegedNftStrictDNS: with DNS servers listed, strict mode lets DNS out
// only to them (udp and tcp, IPv4 and IPv6); DNS to any other host is refused,
// and interception is unaffected.
func TestPrivilegedNftStrictDNS(t *testing.T) {
	w := nstest.NewWorld(t, 443, 53)
	l4, l6 := proxyListeners(t, w.Sandbox)
	base := netsetup.TableConfig{Listen4: port(l4), Listen6: port(l6), Strict: true}
	dnsAddrs := []string{"198.18.0.10:53", "[2001:db8::10]:53"}

	listed := base
	listed.DNS = []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15"),
		netip.MustParsePrefix("2001:db8::10/128")}
	if err := w.Sandbox.EnsureTable(listed); err != nil {
		t.Fatal(err)
	}
	for _, addr := range dnsAddrs {
		if got, err := nstest.Ask(w.Sandbox, "tcp", addr); err != nil || got != "inet 53" {
			t.Errorf("listed DNS, tcp %s: got %q, %v; want %q", addr, got, err, "inet 53")
		}
		if err := nstest.UDPRefused(w.Sandbox, addr, 2*time.Second); err != nil {
			t.Errorf("listed DNS, udp %s refused: %v", addr, err)
		}
	}

	other := base
	other.DNS = []netip.Prefix{netip.MustParsePrefix("192.0.2.53/32"),
		netip.MustParsePrefix("2001:db8::53/128")}
	if err := w.Sandbox.EnsureTable(other); err != nil {
		t.Fatal(err)
	}
	for _, addr := range dnsAddrs {
		if got, err := nstest.Ask(w.Sandbox, "tcp", addr); err == nil {
			t.Errorf("unlisted DNS, tcp %s: got %q, want it refused", addr, got)
		}
		if err := nstest.UDPRefused(w.Sandbox, addr, 2*time.Second); err == nil {
			t.Errorf("unlisted DNS, udp %s: not refused", addr)
		}
	}
	for _, addr := range []string{"198.18.0.10:443", "[2001:db8::10]:443"} {
		want := "proxy " + addr
		if got, err := nstest.Ask(w.Sandbox, "tcp", addr); err != nil || got != want {
			t.Errorf("strict with DNS list, tcp %s: got %q, %v; want %q", addr, got, err, want)
		}
	}
}

//go:build linux

package redirect_test

import (
	"net"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hermes-netd/hermes-netd/internal/redirect"
	"github.com/hermes-netd/hermes-netd/netsetup"
	"github.com/hermes-netd/hermes-netd/netsetup/nstest"
)

// BenchmarkConnect measures one TCP connect() (socket, connect, close with RST)
// from inside a sandbox netns, for each way the connection can go:
//
//	ebpf           to 198.18.0.10:443, redirected by the BPF programs (nft table
//	               in place too, as in production, but the BPF hook acts first)
//	nft            to 198.18.0.10:443, redirected by the nftables table
//	none/loopback  straight to the listener on 127.0.0.1, no interception: the
//	               same path minus the redirect, so the difference is its cost
//	none/veth      to 198.18.0.10:80 in the fake internet, not intercepted
func BenchmarkConnect(b *testing.B) {
	cases := []struct {
		name string
		mode redirect.Mode // "" = not attached
		dst  func(l4 uint16) netip.AddrPort
	}{
		{"ebpf", redirect.ModeEBPF, func(uint16) netip.AddrPort { return inet(443) }},
		{"nft", redirect.ModeNFT, func(uint16) netip.AddrPort { return inet(443) }},
		{"none/loopback", "", func(l4 uint16) netip.AddrPort {
			return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), l4)
		}},
		{"none/veth", "", func(uint16) netip.AddrPort { return inet(80) }},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			w := nstest.NewWorld(b, 80)
			l4 := acceptAndClose(b, w.Sandbox, "127.0.0.1:0")
			l6 := acceptAndClose(b, w.Sandbox, "[::1]:0")
			if c.mode != "" {
				r := newRedirector(b, c.mode)
				if err := r.Attach(w.Sandbox, redirect.Listeners{Port4: l4, Port6: l6}); err != nil {
					b.Fatal(err)
				}
			}
			dst := c.dst(l4)

			err := w.Sandbox.Do(func() error {
				for b.Loop() {
					if err := connectOnce(dst); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		})
	}
}

func inet(port uint16) netip.AddrPort { return netip.AddrPortFrom(nstest.Inet4, port) }

// connectOnce connects a fresh IPv4 socket to dst and resets it, leaving no
// TIME_WAIT behind to exhaust the port range.
func connectOnce(dst netip.AddrPort) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER,
		&unix.Linger{Onoff: 1, Linger: 0}); err != nil {
		return err
	}
	return unix.Connect(fd, &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()})
}

// acceptAndClose listens on addr inside ns and closes whatever it accepts.
func acceptAndClose(b *testing.B, ns *netsetup.NS, addr string) uint16 {
	ln, err := ns.Listen("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

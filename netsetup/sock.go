//go:build linux

package netsetup

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Cookie returns the namespace's cookie (SO_NETNS_COOKIE, Linux 5.14+): a 64-bit
// number that names the namespace for its whole life and is never reused, the key
// the BPF programs see through bpf_get_netns_cookie.
func (n *NS) Cookie() (uint64, error) {
	var cookie uint64
	err := n.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("creating socket: %w", err)
		}
		defer unix.Close(fd)

		cookie, err = unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
		if err != nil {
			return fmt.Errorf("getsockopt SO_NETNS_COOKIE (needs Linux 5.14+): %w", err)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("reading cookie of netns %s: %w", n.spec, err)
	}
	return cookie, nil
}

// Listen creates a listener whose socket is made inside n, so it accepts
// connections from inside n only. The listener may be used from any goroutine.
func (n *NS) Listen(network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := n.Do(func() error {
		var err error
		ln, err = (&net.ListenConfig{}).Listen(context.Background(), network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listening on %s %s in netns %s: %w", network, addr, n.spec, err)
	}
	return ln, nil
}

// ListenPacket is Listen for packet sockets (udp).
func (n *NS) ListenPacket(network, addr string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := n.Do(func() error {
		var err error
		pc, err = (&net.ListenConfig{}).ListenPacket(context.Background(), network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listening on %s %s in netns %s: %w", network, addr, n.spec, err)
	}
	return pc, nil
}

// Dial connects from inside n. addr must hold an IP literal, since name lookups
// would run on other goroutines, outside n.
func (n *NS) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if _, err := netip.ParseAddrPort(addr); err != nil {
		return nil, fmt.Errorf("dialing %s in netns %s: want ip:port or [ip6]:port: %w",
			addr, n.spec, err)
	}

	var c net.Conn
	err := n.Do(func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dialing %s %s in netns %s: %w", network, addr, n.spec, err)
	}
	return c, nil
}

// EnsureLoopbackUp sets the loopback interface of n up if it is down, as it is in
// a freshly made namespace. The listeners on 127.0.0.1 and ::1 need it.
func (n *NS) EnsureLoopbackUp() error {
	h, err := netlink.NewHandleAt(netns.NsHandle(n.fd))
	if err != nil {
		return fmt.Errorf("opening netlink in netns %s: %w", n.spec, err)
	}
	defer h.Close()

	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("finding loopback in netns %s: %w", n.spec, err)
	}
	if lo.Attrs().Flags&net.FlagUp != 0 {
		return nil
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("setting loopback up in netns %s: %w", n.spec, err)
	}
	return nil
}

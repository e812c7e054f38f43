//go:build linux

package redirect

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/hermes-netd/hermes-netd/netsetup"
)

// ErrNoOrigin says that the original destination of an accepted connection is not
// known. The caller must close the connection; it must never guess.
var ErrNoOrigin = errors.New("original destination unknown")

// Origin is what is known of an intercepted connection before it was redirected.
type Origin struct {
	Dst      netip.AddrPort // where the client was connecting to
	PID      uint32         // process (thread group) id of the connecting process; 0 = unknown
	TID      uint32         // id of the connecting thread; 0 = unknown
	UID      uint32         // its uid; meaningful only when PID != 0
	CgroupID uint64         // its cgroup2 id; 0 = unknown
}

// Origin returns the original destination of conn, accepted on a listener in the
// netns with the given cookie, and on the BPF path the process that connected.
// The destination comes from getsockopt(SO_ORIGINAL_DST) (answered by conntrack
// on the nftables path and by the BPF getsockopt hook on the BPF path), with the
// BPF record as a second source. In ModeNFT the process is not known (PID 0):
// conntrack does not record it. If the destination cannot be found the error
// wraps ErrNoOrigin.
func (r *Redirector) Origin(conn net.Conn, netnsCookie uint64) (Origin, error) {
	client, err := addrPort(conn.RemoteAddr())
	if err != nil {
		return Origin{}, fmt.Errorf("finding origin: %w", err)
	}
	local, err := addrPort(conn.LocalAddr())
	if err != nil {
		return Origin{}, fmt.Errorf("finding origin of %s: %w", client, err)
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return Origin{}, fmt.Errorf("finding origin of %s: %T has no socket", client, conn)
	}

	var o Origin
	dst, dstErr := netsetup.OriginalDst(sc)
	// Conntrack answers even for a connection that was never NATed, with the
	// listener's own address: that is no original destination.
	if dstErr == nil && dst != local {
		o.Dst = dst
	}

	if b := r.progs.Load(); b != nil {
		if p, ok := b.Process(netnsCookie, client); ok {
			o.PID, o.TID, o.UID, o.CgroupID = p.TGID, p.PID, p.UID, p.CgroupID
		}
		if !o.Dst.IsValid() {
			if d, ok := b.OriginalDestination(netnsCookie, client); ok {
				o.Dst = d
			}
		}
	}

	if !o.Dst.IsValid() {
		if dstErr == nil {
			dstErr = errors.New("conntrack names the listener itself")
		}
		return Origin{}, fmt.Errorf("finding origin of %s: %w: %w", client, ErrNoOrigin, dstErr)
	}
	return o, nil
}

// addrPort converts a TCP address, unmapping v4-mapped IPv6 addresses.
func addrPort(a net.Addr) (netip.AddrPort, error) {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("not a TCP address: %v", a)
	}
	ap := ta.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

//go:build linux

package netsetup

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrNoOriginalDst says that the kernel knows no original destination for a
// connection: it was not redirected (no conntrack NAT entry, no BPF record), or
// the connection tracking that would answer is not loaded.
var ErrNoOriginalDst = errors.New("no original destination recorded")

// ip6tSOOriginalDst is IP6T_SO_ORIGINAL_DST from linux/netfilter_ipv6/ip6_tables.h;
// it has the same value as SO_ORIGINAL_DST but lives at level SOL_IPV6.
const ip6tSOOriginalDst = 80

// OriginalDst returns the destination a redirected connection was first aimed at,
// read with getsockopt(SO_ORIGINAL_DST) for IPv4 sockets (and IPv6 sockets holding
// v4-mapped addresses) and IP6T_SO_ORIGINAL_DST for IPv6. Conntrack answers for
// the nftables path; the BPF getsockopt hook answers for the BPF path. When
// neither knows the connection the error wraps ErrNoOriginalDst.
func OriginalDst(c syscall.Conn) (netip.AddrPort, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("reading original destination: %w", err)
	}

	var dst netip.AddrPort
	var opErr error
	err = rc.Control(func(fd uintptr) {
		dst, opErr = originalDst(int(fd))
	})
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("reading original destination: %w", err)
	}
	if opErr != nil {
		return netip.AddrPort{}, fmt.Errorf("reading original destination: %w", opErr)
	}
	return dst, nil
}

// originalDst picks the option by the socket's local address family.
func originalDst(fd int) (netip.AddrPort, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("getsockname: %w", err)
	}

	level, opt := unix.SOL_IP, unix.SO_ORIGINAL_DST
	if sa6, ok := sa.(*unix.SockaddrInet6); ok && !netip.AddrFrom16(sa6.Addr).Is4In6() {
		level, opt = unix.SOL_IPV6, ip6tSOOriginalDst
	}

	// Large enough for a struct sockaddr_in6; the kernel fills what the family needs.
	var buf [unix.SizeofSockaddrInet6]byte
	size := uint32(len(buf))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level),
		uintptr(opt), uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
	switch {
	case errno == unix.ENOENT || errno == unix.ENOPROTOOPT:
		return netip.AddrPort{}, fmt.Errorf("%w (%v)", ErrNoOriginalDst, errno)
	case errno != 0:
		return netip.AddrPort{}, fmt.Errorf("getsockopt original dst: %w", errno)
	}
	return parseSockaddr(buf[:size])
}

// parseSockaddr decodes a struct sockaddr_in or sockaddr_in6 as the kernel wrote it.
func parseSockaddr(b []byte) (netip.AddrPort, error) {
	if len(b) < 4 {
		return netip.AddrPort{}, fmt.Errorf("short sockaddr (%d bytes)", len(b))
	}
	family := binary.NativeEndian.Uint16(b[0:2])
	port := binary.BigEndian.Uint16(b[2:4])

	switch {
	case family == unix.AF_INET && len(b) >= unix.SizeofSockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), port), nil
	case family == unix.AF_INET6 && len(b) >= unix.SizeofSockaddrInet6:
		addr := netip.AddrFrom16([16]byte(b[8:24])).Unmap()
		return netip.AddrPortFrom(addr, port), nil
	}
	return netip.AddrPort{}, fmt.Errorf("unexpected sockaddr family %d (%d bytes)", family, len(b))
}

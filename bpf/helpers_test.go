//go:build linux

package bpf

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// These helpers stand on their own rather than on package netsetup so that the
// BPF tests exercise nothing but the kernel and this package.

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads BPF programs, attaches them to the cgroup2 root, makes netns")
	}
}

func randName(t testing.TB) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "hermes-t-" + hex.EncodeToString(b)
}

// testNetns is a fresh network namespace with its loopback up, removed when the
// test ends (its last reference, the fd, is closed).
type testNetns struct {
	fd     int
	cookie uint64
}

func newNetns(t testing.TB) *testNetns {
	t.Helper()
	fd, err := makeNetns()
	if err != nil {
		t.Fatalf("making netns: %v", err)
	}
	ns := &testNetns{fd: fd}
	t.Cleanup(func() { unix.Close(fd) })

	err = ns.do(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return err
		}
		ns.cookie, err = netnsCookieHere()
		return err
	})
	if err != nil {
		t.Fatalf("setting up netns: %v", err)
	}
	return ns
}

// makeNetns unshares a new netns on a locked thread, keeps an fd on it and puts
// the thread back where it was. A thread that cannot go back is never unlocked,
// so the runtime throws it away instead of reusing it in the wrong netns.
func makeNetns() (int, error) {
	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return -1, err
	}
	defer unix.Close(orig)

	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return -1, fmt.Errorf("unshare: %w", err)
	}
	fd, openErr := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
		return -1, fmt.Errorf("returning to the original netns: %w", err)
	}
	runtime.UnlockOSThread()
	return fd, openErr
}

// do runs fn on a locked thread inside the netns; sockets fn makes belong to it.
func (ns *testNetns) do(fn func() error) error {
	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer unix.Close(orig)
	if err := unix.Setns(ns.fd, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return err
	}

	fnErr := fn()

	if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
		return errors.Join(fnErr, err) // thread stays locked and dies with the goroutine
	}
	runtime.UnlockOSThread()
	return fnErr
}

func netnsCookieHere() (uint64, error) {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(s)
	return unix.GetsockoptUint64(s, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
}

func (ns *testNetns) listen(t testing.TB, network, addr string) *net.TCPListener {
	t.Helper()
	var ln net.Listener
	err := ns.do(func() (err error) {
		ln, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		t.Fatalf("listening on %s inside netns: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

// dial makes a socket inside the netns and connects it to dst. family is
// AF_INET or AF_INET6 (dual-stack: IPV6_V6ONLY off), sotype SOCK_STREAM or
// SOCK_DGRAM. The caller closes the returned fd.
func (ns *testNetns) dial(family, sotype int, dst netip.AddrPort) (int, error) {
	fd := -1
	err := ns.do(func() error {
		s, err := unix.Socket(family, sotype|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		fd = s
		if family == unix.AF_INET6 {
			if err := unix.SetsockoptInt(s, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
				return err
			}
		}
		return unix.Connect(s, sockaddr(family, dst))
	})
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return -1, err
	}
	return fd, nil
}

// sendto makes an unconnected UDP socket inside the netns and sends one datagram.
func (ns *testNetns) sendto(family int, dst netip.AddrPort) error {
	return ns.do(func() error {
		s, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(s)
		return unix.Sendto(s, []byte("quic?"), 0, sockaddr(family, dst))
	})
}

func sockaddr(family int, ap netip.AddrPort) unix.Sockaddr {
	if family == unix.AF_INET {
		return &unix.SockaddrInet4{Addr: ap.Addr().Unmap().As4(), Port: int(ap.Port())}
	}
	return &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
}

func localAddr(t testing.TB, fd int) netip.AddrPort {
	t.Helper()
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatalf("getsockname: %v", err)
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))
	}
	t.Fatalf("getsockname: unexpected %T", sa)
	return netip.AddrPort{}
}

// getsockopt is the raw system call, so that tests control level, name and
// buffer size exactly. It returns the length the kernel reported.
func getsockopt(fd, level, name int, buf []byte) (int, error) {
	n := uint32(len(buf))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level),
		uintptr(name), uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// originalDst reads SO_ORIGINAL_DST (level SOL_IP) or IP6T_SO_ORIGINAL_DST
// (level SOL_IPV6) and decodes the sockaddr it returns.
func originalDst(fd, level int) (netip.AddrPort, error) {
	buf := make([]byte, unix.SizeofSockaddrInet6)
	n, err := getsockopt(fd, level, 80, buf)
	if err != nil {
		return netip.AddrPort{}, err
	}
	port := binary.BigEndian.Uint16(buf[2:4])
	switch family := binary.NativeEndian.Uint16(buf[0:2]); {
	case family == unix.AF_INET && n >= unix.SizeofSockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(buf[4:8])), port), nil
	case family == unix.AF_INET6 && n >= unix.SizeofSockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(buf[8:24])), port), nil
	default:
		return netip.AddrPort{}, fmt.Errorf("unexpected sockaddr: family %d, %d bytes", family, n)
	}
}

func connFd(t testing.TB, c *net.TCPConn) int {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	if err := raw.Control(func(f uintptr) { fd = int(f) }); err != nil {
		t.Fatal(err)
	}
	return fd
}

// cgroup2Root finds the mount of the cgroup2 hierarchy's root.
func cgroup2Root(t testing.TB) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && fields[3] == "/" {
				return fields[4]
			}
		}
	}
	t.Fatal("no cgroup2 mount in /proc/self/mountinfo")
	return ""
}

// ownCgroupID returns the cgroup2 id of this process's cgroup.
func ownCgroupID(t testing.TB, root string) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if path, ok := strings.CutPrefix(line, "0::"); ok {
			id, err := cgroupID(filepath.Join(root, path))
			if err != nil {
				t.Fatal(err)
			}
			return id
		}
	}
	t.Fatal("no cgroup2 line in /proc/self/cgroup")
	return 0
}

// pinDir mounts a private bpffs instance for the test (so nothing is left on the
// machine's /sys/fs/bpf, which may not even be mounted) and returns a unique
// directory on it.
func pinDir(t testing.TB) string {
	t.Helper()
	mnt := t.TempDir()
	if err := unix.Mount("bpf", mnt, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mounting bpffs on %s: %v", mnt, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
			t.Errorf("unmounting bpffs %s: %v", mnt, err)
		}
	})
	return filepath.Join(mnt, randName(t))
}

// install installs into a fresh pin directory and uninstalls when the test ends,
// also when it fails.
func install(t testing.TB, dir string, ports []uint16) *Redirector {
	t.Helper()
	r, err := Install(dir, cgroup2Root(t), ports)
	if err != nil {
		t.Fatalf("Install: %v", err)
	}
	t.Cleanup(func() {
		r.Close()
		if err := Uninstall(dir); err != nil {
			t.Errorf("Uninstall: %v", err)
		}
	})
	return r
}

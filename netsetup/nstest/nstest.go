//go:build linux

// Package nstest builds throwaway network namespaces for privileged tests: a
// sandbox namespace and a fake internet namespace (198.18.0.0/15, 2001:db8::/64)
// joined by a veth pair, with servers that say who answered. Everything it makes
// is removed by t.Cleanup, also when the test fails, and named uniquely per run.
package nstest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hermes-netd/hermes-netd/netsetup"
)

// Addresses of the fake internet and of the sandbox's side of the link.
var (
	Inet4    = netip.MustParseAddr("198.18.0.10")
	Inet6    = netip.MustParseAddr("2001:db8::10")
	Sandbox4 = netip.MustParseAddr("198.18.0.1")
	Sandbox6 = netip.MustParseAddr("2001:db8::1")
)

// RequireRoot skips t unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, nftables rules and BPF programs")
	}
}

// UniqueName returns "hermes-t-<prefix>-<random>", short enough for interface names
// when prefix is short.
func UniqueName(prefix string) string {
	b := make([]byte, 3)
	rand.Read(b)
	return "hermes-t-" + prefix + hex.EncodeToString(b)
}

// Run runs a command and fails t with its output if it fails.
func Run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

var (
	createdMu sync.Mutex
	created   []string
)

// Leftovers returns the namespaces this process created through nstest that still
// exist. A TestMain calls it after m.Run to assert the suite cleaned up.
func Leftovers() []string {
	createdMu.Lock()
	defer createdMu.Unlock()
	var left []string
	for _, name := range created {
		if _, err := os.Stat("/var/run/netns/" + name); err == nil {
			left = append(left, name)
		}
	}
	return left
}

// NewNS creates a named netns with its loopback up, opens it, and removes both
// when the test ends.
func NewNS(t testing.TB, prefix string) (*netsetup.NS, string) {
	t.Helper()
	RequireRoot(t)
	name := UniqueName(prefix)
	AddNS(t, name)

	ns, err := netsetup.Open(name)
	if err != nil {
		t.Fatalf("opening new netns: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	if err := ns.EnsureLoopbackUp(); err != nil {
		t.Fatalf("loopback up: %v", err)
	}
	return ns, name
}

// AddNS creates the named netns (loopback down) and deletes it when the test ends.
func AddNS(t testing.TB, name string) {
	t.Helper()
	RequireRoot(t)
	createdMu.Lock()
	created = append(created, name)
	createdMu.Unlock()
	Run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { DeleteNS(t, name) })
}

// DeleteNS deletes a named netns; a missing one is fine.
func DeleteNS(t testing.TB, name string) {
	if _, err := os.Stat("/var/run/netns/" + name); errors.Is(err, os.ErrNotExist) {
		return
	}
	if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
		t.Errorf("deleting netns %s: %v\n%s", name, err, out)
	}
}

// World is a sandbox netns wired to a fake internet netns.
type World struct {
	Sandbox     *netsetup.NS
	SandboxName string
	Inet        *netsetup.NS
	InetName    string
}

// NewWorld builds the sandbox and the fake internet, and serves TCP on each of
// ports in the fake internet (v4 and v6); each server writes "inet <port>\n".
func NewWorld(t testing.TB, ports ...uint16) *World {
	t.Helper()
	w := &World{}
	w.Sandbox, w.SandboxName = NewNS(t, "sb")
	w.Inet, w.InetName = NewNS(t, "in")

	// Interfaces live only inside the two namespaces; the host is never touched.
	// Fixed MACs and permanent IPv6 neighbours: on a link that just came up the
	// first neighbour discovery stalls an IPv6 connection for a second.
	veth := "h" + w.SandboxName[len(w.SandboxName)-6:]
	mac := map[string]string{veth + "a": "02:00:5e:00:00:01", veth + "b": "02:00:5e:00:00:02"}
	Run(t, "ip", "-n", w.SandboxName, "link", "add", veth+"a", "address", mac[veth+"a"],
		"type", "veth", "peer", "name", veth+"b", "address", mac[veth+"b"], "netns", w.InetName)
	for _, side := range []struct {
		ns, dev, peerMAC string
		v4, v6, peer6    netip.Addr
	}{
		{w.SandboxName, veth + "a", mac[veth+"b"], Sandbox4, Sandbox6, Inet6},
		{w.InetName, veth + "b", mac[veth+"a"], Inet4, Inet6, Sandbox6},
	} {
		Run(t, "ip", "-n", side.ns, "addr", "add", side.v4.String()+"/15", "dev", side.dev)
		Run(t, "ip", "-n", side.ns, "addr", "add", side.v6.String()+"/64", "dev", side.dev,
			"nodad")
		Run(t, "ip", "-n", side.ns, "link", "set", side.dev, "up")
		Run(t, "ip", "-n", side.ns, "neigh", "replace", side.peer6.String(), "lladdr",
			side.peerMAC, "dev", side.dev, "nud", "permanent")
	}

	for _, p := range ports {
		Serve(t, w.Inet, fmt.Sprintf("[::]:%d", p), func(net.Conn) string {
			return fmt.Sprintf("inet %d", p)
		})
		echoUDP(t, w.Inet, fmt.Sprintf("[::]:%d", p))
	}
	return w
}

// echoUDP echoes datagrams on addr inside ns until the test ends, so that a UDP
// probe that is not refused gets an answer instead of an ICMP error.
func echoUDP(t testing.TB, ns *netsetup.NS, addr string) {
	t.Helper()
	pc, err := ns.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("serving udp: %v", err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
}

// Serve listens on addr inside ns and answers every connection with one line made
// by reply, then closes it. The listener is closed when the test ends.
func Serve(t testing.TB, ns *netsetup.NS, addr string, reply func(net.Conn) string) net.Listener {
	t.Helper()
	ln, err := ns.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("serving: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprintf(c, "%s\n", reply(c))
			}()
		}
	}()
	return ln
}

// Ask connects from ns to addr and returns the first line the server sends.
// network "tcp-mapped" dials an IPv4 addr from a dual-stack IPv6 socket, through
// its v4-mapped address (::ffff:a.b.c.d).
func Ask(ns *netsetup.NS, network, addr string) (string, error) {
	var c net.Conn
	var err error
	if network == "tcp-mapped" {
		c, err = dialMapped(ns, addr)
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err = ns.Dial(ctx, network, addr)
	}
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("reading answer of %s: %w", addr, err)
	}
	return strings.TrimSuffix(line, "\n"), nil
}

// UDPRefused sends one datagram from ns to addr and waits up to timeout for the
// kernel to refuse it, at send time (EPERM) or as an ICMP error on the next read.
// It returns the refusal error, or nil if nothing refused it in time.
func UDPRefused(ns *netsetup.NS, addr string, timeout time.Duration) error {
	c, err := ns.Dial(context.Background(), "udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write([]byte("quic?")); err != nil {
		return err
	}
	c.SetReadDeadline(time.Now().Add(timeout))
	_, err = c.Read(make([]byte, 16))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	return err
}

// dialMapped connects an AF_INET6 socket with IPV6_V6ONLY off to the v4-mapped
// form of addr, from inside ns (Go's dialer would pick an AF_INET socket).
func dialMapped(ns *netsetup.NS, addr string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		return nil, fmt.Errorf("dialMapped wants an IPv4 ip:port, got %q", addr)
	}
	var c net.Conn
	err = ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(fd), "mapped")
		defer f.Close()
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
			return err
		}
		sa := &unix.SockaddrInet6{Port: int(ap.Port()), Addr: netip.AddrFrom16(ap.Addr().As16()).As16()}
		if err := unix.Connect(fd, sa); err != nil {
			return fmt.Errorf("connect to [::ffff:%s]:%d: %w", ap.Addr(), ap.Port(), err)
		}
		c, err = net.FileConn(f)
		return err
	})
	return c, err
}

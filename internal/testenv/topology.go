//go:build linux

package testenv

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/hermes-netd/hermes-netd/netsetup"
)

// Role names one of the three namespaces.
type Role string

// The namespaces of the topology.
const (
	Host    Role = "host"
	Sandbox Role = "sandbox"
	Inet    Role = "inet"
)

var roles = []Role{Host, Sandbox, Inet}

// Addresses of the links between the namespaces. All IPv4 addresses lie in
// 198.18.0.0/15 (RFC 2544, benchmarking) and all IPv6 ones in 2001:db8::/32
// (RFC 3849, documentation), so nothing here can collide with a real network.
var (
	// FakeInternet4 and FakeInternet6 hold every address of the topology: a
	// daemon under test that guards against requests to private ranges must
	// be told to allow them upstream.
	FakeInternet4 = netip.MustParsePrefix("198.18.0.0/15")
	FakeInternet6 = netip.MustParsePrefix("2001:db8::/32")

	SandboxAddr4     = netip.MustParsePrefix("198.19.1.2/30")
	HostSandboxAddr4 = netip.MustParsePrefix("198.19.1.1/30")
	HostInetAddr4    = netip.MustParsePrefix("198.19.2.1/30")
	InetAddr4        = netip.MustParsePrefix("198.19.2.2/30")

	SandboxAddr6     = netip.MustParsePrefix("2001:db8:1::2/64")
	HostSandboxAddr6 = netip.MustParsePrefix("2001:db8:1::1/64")
	HostInetAddr6    = netip.MustParsePrefix("2001:db8:2::1/64")
	InetAddr6        = netip.MustParsePrefix("2001:db8:2::2/64")
)

// Interface names inside the namespaces. They never exist in the initial
// namespace: each veth pair is made inside the host namespace with its peer
// placed straight into the other one. The sites' addresses sit on inet's
// loopback rather than on a dummy interface, since not every kernel has the
// dummy driver.
const (
	HostSandboxLink = "veth-sandbox" // in host, towards the sandbox
	HostInetLink    = "veth-inet"    // in host, towards inet
	PeerLink        = "eth0"         // in sandbox and in inet
	SitesLink       = "lo"           // in inet, holding the sites' addresses
)

// addNamespace creates /var/run/netns/name through iproute2, which also sets
// up the mount propagation `ip netns exec` relies on.
func addNamespace(name string) error {
	out, err := exec.Command("ip", "netns", "add", name).CombinedOutput()
	if err != nil {
		return fmt.Errorf("creating netns %s: %w: %s", name, err,
			strings.TrimSpace(string(out)))
	}
	return nil
}

// deleteNamespace removes a namespace's name; missing is not an error.
func deleteNamespace(name string) error {
	if _, err := os.Stat(netsetup.NetnsDir + "/" + name); os.IsNotExist(err) {
		return nil
	}
	out, err := exec.Command("ip", "netns", "delete", name).CombinedOutput()
	if _, serr := os.Stat(netsetup.NetnsDir + "/" + name); os.IsNotExist(serr) {
		return nil // gone, perhaps removed by another run's CleanupStale meanwhile
	}
	if err != nil {
		return fmt.Errorf("deleting netns %s: %w: %s", name, err,
			strings.TrimSpace(string(out)))
	}
	return nil
}

// wire makes the links, addresses and routes of the topology and turns on
// forwarding in the host namespace.
func (e *Env) wire() error {
	h := map[Role]*netlink.Handle{}
	defer func() {
		for _, hd := range h {
			hd.Close()
		}
	}()
	for _, r := range roles {
		hd, err := netlink.NewHandleAt(netns.NsHandle(e.ns[r].Fd()))
		if err != nil {
			return fmt.Errorf("opening netlink in netns %s: %w", e.names[r], err)
		}
		h[r] = hd
		if err := e.fastIPv6(r); err != nil {
			return err
		}
		if r == Host {
			if err := e.enableForwarding(); err != nil {
				return err
			}
		}
		if err := e.ns[r].EnsureLoopbackUp(); err != nil {
			return err
		}
	}

	// One veth pair per hop, made in host with the peer born in the far side.
	if err := addVeth(h[Host], HostSandboxLink, e.ns[Sandbox]); err != nil {
		return err
	}
	if err := addVeth(h[Host], HostInetLink, e.ns[Inet]); err != nil {
		return err
	}

	steps := []struct {
		role  Role
		link  string
		addrs []netip.Prefix
	}{
		{Sandbox, PeerLink, []netip.Prefix{SandboxAddr4, SandboxAddr6}},
		{Host, HostSandboxLink, []netip.Prefix{HostSandboxAddr4, HostSandboxAddr6}},
		{Host, HostInetLink, []netip.Prefix{HostInetAddr4, HostInetAddr6}},
		{Inet, PeerLink, []netip.Prefix{InetAddr4, InetAddr6}},
		{Inet, SitesLink, siteHostPrefixes()},
	}
	for _, s := range steps {
		if err := linkUp(h[s.role], s.link, s.addrs); err != nil {
			return fmt.Errorf("in netns %s: %w", e.names[s.role], err)
		}
	}

	routes := []struct {
		role Role
		dst  netip.Prefix
		via  netip.Addr
	}{
		{Sandbox, netip.MustParsePrefix("0.0.0.0/0"), HostSandboxAddr4.Addr()},
		{Sandbox, netip.MustParsePrefix("::/0"), HostSandboxAddr6.Addr()},
		{Host, netip.MustParsePrefix("0.0.0.0/0"), InetAddr4.Addr()},
		{Host, netip.MustParsePrefix("::/0"), InetAddr6.Addr()},
		{Inet, SandboxAddr4.Masked(), HostInetAddr4.Addr()},
		{Inet, SandboxAddr6.Masked(), HostInetAddr6.Addr()},
	}
	for _, r := range routes {
		err := h[r.role].RouteAdd(&netlink.Route{Dst: ipNet(r.dst), Gw: r.via.AsSlice()})
		if err != nil {
			return fmt.Errorf("adding route %s via %s in netns %s: %w", r.dst, r.via,
				e.names[r.role], err)
		}
	}

	return nil
}

func addVeth(h *netlink.Handle, name string, peer *netsetup.NS) error {
	v := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: name},
		PeerName:      PeerLink,
		PeerNamespace: netlink.NsFd(peer.Fd()),
	}
	if err := h.LinkAdd(v); err != nil {
		return fmt.Errorf("adding veth %s to netns %s: %w", name, peer.Spec(), err)
	}
	return nil
}

// linkUp gives link its addresses and sets it up. IPv6 addresses skip
// duplicate address detection, which would keep them unusable for a second
// or two (a listener cannot bind a tentative address).
func linkUp(h *netlink.Handle, name string, addrs []netip.Prefix) error {
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("finding link %s: %w", name, err)
	}
	for _, p := range addrs {
		a := &netlink.Addr{IPNet: ipNet(p)}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(link, a); err != nil {
			return fmt.Errorf("adding %s to %s: %w", p, name, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("setting %s up: %w", name, err)
	}
	return nil
}

// fastIPv6 turns IPv6 duplicate address detection off in namespace r before
// its links exist, so that their link-local addresses, which neighbour
// discovery needs, are usable at once instead of after a second or two.
func (e *Env) fastIPv6(r Role) error {
	return e.ns[r].Do(func() error {
		for f, v := range map[string]string{
			"/proc/sys/net/ipv6/conf/all/accept_dad":     "0",
			"/proc/sys/net/ipv6/conf/default/accept_dad": "0",
		} {
			if err := os.WriteFile(f, []byte(v+"\n"), 0); err != nil {
				return fmt.Errorf("turning DAD off in netns %s: %w", e.names[r], err)
			}
		}
		return nil
	})
}

// enableForwarding writes the forwarding sysctls from a thread inside the
// host namespace: /proc/sys/net shows the values of the reader's namespace,
// so the initial namespace's settings are never touched.
func (e *Env) enableForwarding() error {
	return e.ns[Host].Do(func() error {
		for _, f := range []string{
			"/proc/sys/net/ipv4/ip_forward",
			"/proc/sys/net/ipv6/conf/all/forwarding",
		} {
			if err := os.WriteFile(f, []byte("1\n"), 0); err != nil {
				return fmt.Errorf("enabling forwarding in netns %s: %w", e.names[Host], err)
			}
		}
		return nil
	})
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{
		IP:   p.Addr().AsSlice(),
		Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
	}
}

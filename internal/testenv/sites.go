//go:build linux

package testenv

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/hermes-netd/hermes-netd/internal/testenv/fakeapi"
)

// Site is one fake site of the inet namespace.
type Site struct {
	Provider fakeapi.Provider
	Host     string       // the name the sandbox resolves
	Addrs    []netip.Addr // where it listens, on TCP and UDP port 443
}

// Sites are the fake sites. Only the first address of each is in the
// sandbox's hosts file, so clients pick IPv4 every time; reach OpenAI's IPv6
// address explicitly (curl --resolve api.openai.com:443:[2001:db8::10]).
var Sites = []Site{
	{fakeapi.OpenAI, "api.openai.com", addrs("198.18.0.10", "2001:db8::10")},
	{fakeapi.Anthropic, "api.anthropic.com", addrs("198.18.0.11")},
	{fakeapi.NIM, "integrate.api.nvidia.com", addrs("198.18.0.12")},
	{fakeapi.Passthrough, "passthrough.example.test", addrs("198.18.0.20")},
	{fakeapi.Unknown, "unknown.example.test", addrs("198.18.0.30")},
}

// SitePort is the port every fake site listens on.
const SitePort = 443

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

// SiteFor returns the site of provider p.
func SiteFor(p fakeapi.Provider) (Site, bool) {
	for _, s := range Sites {
		if s.Provider == p {
			return s, true
		}
	}
	return Site{}, false
}

func siteHostPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range Sites {
		for _, a := range s.Addrs {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out
}

// startSites writes the CA files and serves every site from inside inet: TLS
// on TCP 443, and a UDP echo on 443 so that a test can see UDP get through
// when nothing refuses it.
func (e *Env) startSites() error {
	var err error
	if e.upstreamCA, err = fakeapi.NewCA("hermes-e2e upstream CA"); err != nil {
		return err
	}
	if e.passthroughCA, err = fakeapi.NewCA("hermes-e2e passthrough CA"); err != nil {
		return err
	}
	e.upstreamCAFile = filepath.Join(e.dir, "upstream-ca.pem")
	e.passthroughCAFile = filepath.Join(e.dir, "passthrough-ca.pem")
	for file, ca := range map[string]*fakeapi.CA{
		e.upstreamCAFile:    e.upstreamCA,
		e.passthroughCAFile: e.passthroughCA,
	} {
		if err := os.WriteFile(file, ca.CertPEM(), 0o644); err != nil {
			return fmt.Errorf("writing CA file: %w", err)
		}
	}

	e.api, err = fakeapi.New(fakeapi.Options{
		Keys: e.keys, ChunkDelay: e.opts.ChunkDelay, Logger: e.logger,
	})
	if err != nil {
		return err
	}
	for _, s := range Sites {
		if err := e.startSite(s); err != nil {
			return err
		}
	}
	return nil
}

func (e *Env) startSite(s Site) error {
	ca := e.upstreamCA
	if s.Provider == fakeapi.Passthrough {
		ca = e.passthroughCA
	}
	names := []string{s.Host}
	for _, a := range s.Addrs {
		names = append(names, a.String())
	}
	cert, err := ca.Issue(names...)
	if err != nil {
		return err
	}

	for _, a := range s.Addrs {
		addr := netip.AddrPortFrom(a, SitePort).String()
		ln, err := e.ns[Inet].Listen("tcp", addr)
		if err != nil {
			return err
		}
		if err := e.api.Start(ln, s.Provider, cert); err != nil {
			return err
		}
		pc, err := e.ns[Inet].ListenPacket("udp", addr)
		if err != nil {
			return err
		}
		e.packetConns = append(e.packetConns, pc)
		go udpEcho(pc)
	}
	return nil
}

// udpEcho answers every datagram with "echo: " and its payload until pc is
// closed.
func udpEcho(pc net.PacketConn) {
	buf := make([]byte, 2048)
	for {
		n, from, err := pc.ReadFrom(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		pc.WriteTo(append([]byte("echo: "), buf[:n]...), from)
	}
}

// hostsFile is the sandbox's /etc/hosts.
func hostsFile() string {
	var b strings.Builder
	b.WriteString("# written by hermes-netd's testenv; removed when the run ends\n")
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	for _, s := range Sites {
		fmt.Fprintf(&b, "%s\t%s\n", s.Addrs[0], s.Host)
	}
	return b.String()
}

// resolvConf points the sandbox's resolver at an address nobody serves, so
// that a name missing from the hosts file fails at once, inside the topology.
const resolvConf = "# written by hermes-netd's testenv\nnameserver 198.18.0.53\n" +
	"options timeout:1 attempts:1\n"

// writeNetnsEtc writes /etc/netns/<sandbox>/{hosts,resolv.conf}.
func (e *Env) writeNetnsEtc() error {
	e.madeEtc = true
	return writeShared(e.NetnsEtcDir(),
		map[string]string{"hosts": hostsFile(), "resolv.conf": resolvConf})
}

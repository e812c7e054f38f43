//go:build linux

package redirect_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/hermes-netd/hermes-netd/bpf"
	"github.com/hermes-netd/hermes-netd/internal/redirect"
	"github.com/hermes-netd/hermes-netd/netsetup"
	"github.com/hermes-netd/hermes-netd/netsetup/nstest"
)

var modes = []redirect.Mode{redirect.ModeEBPF, redirect.ModeNFT}

// cgroupAttachTypes are the hooks the BPF path attaches to.
var cgroupAttachTypes = []ebpf.AttachType{
	ebpf.AttachCGroupInet4Connect, ebpf.AttachCGroupInet6Connect,
	ebpf.AttachCGroupUDP4Sendmsg, ebpf.AttachCGroupUDP6Sendmsg,
	ebpf.AttachCGroupSockOps, ebpf.AttachCGroupGetsockopt,
}

// hermesPrograms returns the ids of the programs named hermes_* attached to the
// cgroup2 root.
func hermesPrograms(t testing.TB) map[ebpf.ProgramID]string {
	t.Helper()
	root, err := netsetup.Cgroup2Root()
	if err != nil {
		t.Fatal(err)
	}
	progs, err := bpf.AttachedPrograms(root)
	if err != nil {
		t.Fatal(err)
	}
	return progs
}

// newRedirector makes a Redirector in mode with its own pin dir, and at cleanup
// uninstalls it and asserts that none of its pins or cgroup attachments remain.
func newRedirector(t testing.TB, mode redirect.Mode) *redirect.Redirector {
	t.Helper()
	nstest.RequireRoot(t)
	pinDir := filepath.Join(netsetup.BPFFSRoot, nstest.UniqueName("pin"))

	r, err := redirect.New(redirect.Options{Mode: mode, PinDir: pinDir,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if r.Mode() != mode {
		t.Fatalf("New(%s) chose mode %s", mode, r.Mode())
	}

	// Our programs are those behind the links pinned in our pin dir (other suites
	// may attach hermes programs of their own at the same time).
	ours := pinnedPrograms(t, pinDir)
	attached := hermesPrograms(t)
	for id, name := range ours {
		if _, ok := attached[id]; !ok {
			t.Errorf("pinned program %s (id %d) is not attached to the cgroup2 root", name, id)
		}
	}
	if mode == redirect.ModeEBPF && len(ours) != len(cgroupAttachTypes) {
		t.Errorf("ebpf mode pinned %d links (%v), want %d", len(ours), ours,
			len(cgroupAttachTypes))
	}

	t.Cleanup(func() {
		if err := r.Uninstall(); err != nil {
			t.Errorf("Uninstall: %v", err)
		}
		if _, err := os.Stat(pinDir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("pin dir %s still there after Uninstall (%v)", pinDir, err)
		}
		after := hermesPrograms(t)
		for id, name := range ours {
			if _, ok := after[id]; ok {
				t.Errorf("program %s (id %d) still attached after Uninstall", name, id)
			}
		}
	})
	return r
}

// pinnedPrograms returns the programs of the links pinned in pinDir.
func pinnedPrograms(t testing.TB, pinDir string) map[ebpf.ProgramID]string {
	t.Helper()
	progs, err := bpf.PinnedPrograms(pinDir)
	if err != nil {
		t.Fatal(err)
	}
	return progs
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// sandbox is an attached world: the proxy listeners answer with what Origin says.
type sandbox struct {
	*nstest.World
	cookie    uint64
	listeners redirect.Listeners
	l4, l6    net.Listener
}

func newSandbox(t *testing.T, r *redirect.Redirector) *sandbox {
	t.Helper()
	return newSandboxServing(t, r, 443, 80, 8443)
}

// newSandboxServing is newSandbox with the fake internet serving ports.
func newSandboxServing(t *testing.T, r *redirect.Redirector, ports ...uint16) *sandbox {
	t.Helper()
	s := &sandbox{World: nstest.NewWorld(t, ports...)}
	var err error
	if s.cookie, err = s.Sandbox.Cookie(); err != nil {
		t.Fatal(err)
	}
	reply := func(c net.Conn) string {
		o, err := r.Origin(c, s.cookie)
		if err != nil {
			return "proxy error: " + err.Error()
		}
		return fmt.Sprintf("proxy %s pid=%d", o.Dst, o.PID)
	}
	s.l4 = nstest.Serve(t, s.Sandbox, "127.0.0.1:0", reply)
	s.l6 = nstest.Serve(t, s.Sandbox, "[::1]:0", reply)
	s.listeners = redirect.Listeners{Port4: port(s.l4), Port6: port(s.l6)}
	return s
}

func port(ln net.Listener) uint16 { return uint16(ln.Addr().(*net.TCPAddr).Port) }

// expectPID is the pid Origin reports for connections this test process makes:
// ours on the BPF path, unknown (0) on the nftables path, where conntrack does
// not record who connected.
func expectPID(mode redirect.Mode) int {
	if mode == redirect.ModeEBPF {
		return os.Getpid()
	}
	return 0
}

type probe struct{ network, addr, want string }

func check(t *testing.T, ns *netsetup.NS, what string, probes []probe) {
	t.Helper()
	for _, p := range probes {
		got, err := nstest.Ask(ns, p.network, p.addr)
		if err != nil || got != p.want {
			t.Errorf("%s: %s %s: got %q, %v; want %q", what, p.network, p.addr, got, err, p.want)
		}
	}
}

func intercepted(mode redirect.Mode) []probe {
	pid := expectPID(mode)
	return []probe{
		{"tcp", "198.18.0.10:443", fmt.Sprintf("proxy 198.18.0.10:443 pid=%d", pid)},
		{"tcp", "[2001:db8::10]:443", fmt.Sprintf("proxy [2001:db8::10]:443 pid=%d", pid)},
		{"tcp-mapped", "198.18.0.10:443", fmt.Sprintf("proxy 198.18.0.10:443 pid=%d", pid)},
	}
}

var direct443 = []probe{
	{"tcp", "198.18.0.10:443", "inet 443"},
	{"tcp", "[2001:db8::10]:443", "inet 443"},
	{"tcp-mapped", "198.18.0.10:443", "inet 443"},
}

var untouchedPorts = []probe{
	{"tcp", "198.18.0.10:80", "inet 80"},
	{"tcp", "198.18.0.10:8443", "inet 8443"},
	{"tcp", "[2001:db8::10]:80", "inet 80"},
	{"tcp", "[2001:db8::10]:8443", "inet 8443"},
}

// checkUDP asserts UDP to addr is refused well under a second (refused) or
// answered by the fake internet (!refused).
func checkUDP(t *testing.T, ns *netsetup.NS, addr string, refused bool) {
	t.Helper()
	start := time.Now()
	err := nstest.UDPRefused(ns, addr, 2*time.Second)
	switch {
	case refused && err == nil:
		t.Errorf("udp %s: not refused", addr)
	case refused && time.Since(start) > 500*time.Millisecond:
		t.Errorf("udp %s: refused after %v, want well under a second", addr, time.Since(start))
	case !refused && err != nil:
		t.Errorf("udp %s: refused (%v), want it untouched", addr, err)
	}
}

func TestPrivilegedRedirect(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			r := newRedirector(t, mode)
			s := newSandbox(t, r)
			other := newSandbox(t, r) // never attached

			for range 2 { // attaching twice is harmless
				if err := r.Attach(s.Sandbox, s.listeners); err != nil {
					t.Fatal(err)
				}
			}
			check(t, s.Sandbox, "attached", intercepted(mode))
			check(t, s.Sandbox, "attached, other ports", untouchedPorts)
			check(t, other.Sandbox, "unattached netns", append(direct443, untouchedPorts...))
			for _, addr := range []string{"198.18.0.10:443", "[2001:db8::10]:443"} {
				checkUDP(t, s.Sandbox, addr, true)
				checkUDP(t, other.Sandbox, addr, false)
			}
			checkUDP(t, s.Sandbox, "198.18.0.10:8443", false)

			for range 2 { // detaching twice is harmless
				if err := r.Detach(s.Sandbox); err != nil {
					t.Fatal(err)
				}
			}
			check(t, s.Sandbox, "detached", direct443)
			checkUDP(t, s.Sandbox, "198.18.0.10:443", false)
			if reg, err := r.Registered(); err != nil || len(reg) != 0 {
				t.Errorf("after Detach: registered %v, %v; want none", reg, err)
			}
		})
	}
}

// TestPrivilegedBPFPathAlone removes the nftables fallback of an attached netns,
// so only the BPF programs can redirect: they must, with the right pid.
func TestPrivilegedBPFPathAlone(t *testing.T) {
	r := newRedirector(t, redirect.ModeEBPF)
	s := newSandbox(t, r)
	if err := r.Attach(s.Sandbox, s.listeners); err != nil {
		t.Fatal(err)
	}
	if err := s.Sandbox.RemoveTable(); err != nil {
		t.Fatal(err)
	}
	check(t, s.Sandbox, "bpf only", intercepted(redirect.ModeEBPF))
	checkUDP(t, s.Sandbox, "198.18.0.10:443", true)
	if err := r.Detach(s.Sandbox); err != nil {
		t.Fatal(err)
	}
}

// TestPrivilegedDeletedNetns deletes an attached netns, with the NS still open and
// with it closed, and detaches it: no error, and nothing of it stays registered.
func TestPrivilegedDeletedNetns(t *testing.T) {
	for _, mode := range modes {
		for _, closeFirst := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/closed=%v", mode, closeFirst), func(t *testing.T) {
				r := newRedirector(t, mode)
				ns, name := nstest.NewNS(t, "del")
				cookie, err := ns.Cookie()
				if err != nil {
					t.Fatal(err)
				}
				if err := r.Attach(ns, redirect.Listeners{Port4: 15001, Port6: 15002}); err != nil {
					t.Fatal(err)
				}
				if reg, _ := r.Registered(); mode == redirect.ModeEBPF && reg[cookie].Port4 != 15001 {
					t.Fatalf("registered %v, want cookie %d", reg, cookie)
				}

				nstest.Run(t, "ip", "netns", "del", name)
				if closeFirst {
					ns.Close()
				}
				if err := r.Detach(ns); err != nil {
					t.Fatalf("Detach of a deleted netns: %v", err)
				}
				if reg, err := r.Registered(); err != nil || len(reg) != 0 {
					t.Errorf("after Detach: registered %v, %v; want none", reg, err)
				}
				if att := r.Attached(); len(att) != 0 {
					t.Errorf("after Detach: attached %v, want none", att)
				}
			})
		}
	}
}

// TestPrivilegedOriginUnknown: a connection that was not redirected has no origin,
// and Origin says so instead of guessing.
func TestPrivilegedOriginUnknown(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			r := newRedirector(t, mode)
			s := newSandbox(t, r)
			if err := r.Attach(s.Sandbox, s.listeners); err != nil {
				t.Fatal(err)
			}
			// Straight to the listener: accepted by the nat chain, never rewritten.
			got, err := nstest.Ask(s.Sandbox, "tcp", s.l4.Addr().String())
			if err != nil || !strings.Contains(got, redirect.ErrNoOrigin.Error()) {
				t.Errorf("direct connection to the listener: %q, %v; want ErrNoOrigin", got, err)
			}
		})
	}
}

// TestPrivilegedModeChoice: a forced ebpf mode that cannot attach is an error that
// says why and what to do; auto falls back to nft and logs exactly one line saying
// why; neither leaves a pin dir behind.
func TestPrivilegedModeChoice(t *testing.T) {
	nstest.RequireRoot(t)
	notCgroup := t.TempDir()
	pinDir := filepath.Join(netsetup.BPFFSRoot, nstest.UniqueName("pin"))

	_, err := redirect.New(redirect.Options{Mode: redirect.ModeEBPF, PinDir: pinDir,
		CgroupRoot: notCgroup})
	if err == nil || !strings.Contains(err.Error(), "not a cgroup2 directory") ||
		!strings.Contains(err.Error(), "use mode nft") {
		t.Errorf("forced ebpf on a non-cgroup2 dir: error %v", err)
	}

	var logs bytes.Buffer
	r, err := redirect.New(redirect.Options{PinDir: pinDir, CgroupRoot: notCgroup,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Uninstall()
	if r.Mode() != redirect.ModeNFT || !strings.Contains(r.Reason(), "not a cgroup2 directory") {
		t.Errorf("auto: mode %s (%s), want nft because of the cgroup", r.Mode(), r.Reason())
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "mode=nft") ||
		!strings.Contains(lines[0], "not a cgroup2 directory") {
		t.Errorf("auto logged %q, want one line with the mode and the reason", lines)
	}
	if _, err := os.Stat(pinDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin dir %s left behind (%v)", pinDir, err)
	}

	// On this kernel, with the real cgroup2 root, auto picks the BPF path.
	logs.Reset()
	autoPins := filepath.Join(netsetup.BPFFSRoot, nstest.UniqueName("pin"))
	auto, err := redirect.New(redirect.Options{PinDir: autoPins,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := auto.Uninstall(); err != nil {
		t.Error(err)
	}
	if auto.Mode() != redirect.ModeEBPF || strings.Count(logs.String(), "\n") != 1 ||
		!strings.Contains(logs.String(), "mode=ebpf") {
		t.Errorf("auto on a capable kernel: mode %s, logged %q; want ebpf, one line",
			auto.Mode(), logs.String())
	}
	if _, err := os.Stat(autoPins); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin dir %s left behind after Uninstall (%v)", autoPins, err)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if left := nstest.Leftovers(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "namespaces left behind: %v\n", left)
		code = 1
	}
	os.Exit(code)
}

// TestPrivilegedStrictDNS: Options.StrictDNS reaches the table of an attached
// namespace: DNS to the listed IPv6 server passes, DNS to the IPv4 one (not
// listed) is refused although it answers, interception goes on.
func TestPrivilegedStrictDNS(t *testing.T) {
	nstest.RequireRoot(t)
	pinDir := filepath.Join(netsetup.BPFFSRoot, nstest.UniqueName("pin"))
	r, err := redirect.New(redirect.Options{Mode: redirect.ModeNFT, PinDir: pinDir,
		Strict: true, StrictDNS: []netip.Prefix{netip.MustParsePrefix("192.0.2.53/32"),
			netip.MustParsePrefix("2001:db8::10/128")},
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Uninstall(); err != nil {
			t.Errorf("Uninstall: %v", err)
		}
	})
	s := newSandboxServing(t, r, 443, 80, 53)
	if err := r.Attach(s.Sandbox, s.listeners); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Detach(s.Sandbox) })

	check(t, s.Sandbox, "strict with DNS list", intercepted(redirect.ModeNFT))
	check(t, s.Sandbox, "listed DNS", []probe{{"tcp", "[2001:db8::10]:53", "inet 53"}})
	checkUDP(t, s.Sandbox, "[2001:db8::10]:53", false)
	for _, addr := range []string{"198.18.0.10:53", "198.18.0.10:80"} {
		if got, err := nstest.Ask(s.Sandbox, "tcp", addr); err == nil {
			t.Errorf("strict, tcp %s: got %q, want it refused", addr, got)
		}
	}
	checkUDP(t, s.Sandbox, "198.18.0.10:53", true)
}

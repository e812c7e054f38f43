//go:build linux

package testenv

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"

	"github.com/hermes-netd/hermes-netd/bpf"
	"github.com/hermes-netd/hermes-netd/internal/testenv/fakeapi"
	"github.com/hermes-netd/hermes-netd/netsetup"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: testenv creates network namespaces")
	}
}

// initialState is what the initial namespace must still look like after a
// run: its links and its forwarding switch.
func initialState(t *testing.T) []string {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		out = append(out, l.Attrs().Name)
	}
	slices.Sort(out)
	fwd, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, "ip_forward="+strings.TrimSpace(string(fwd)))
}

func run(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	return string(out)
}

// assertGone checks that nothing of run id remains.
func assertGone(t *testing.T, e *Env) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	if strings.Contains(string(out), e.ID()) {
		t.Errorf("namespaces of run %s remain:\n%s", e.ID(), out)
	}
	for _, p := range []string{e.NetnsEtcDir(), e.TempDir(), filepath.Join(ownerDir, e.ID()),
		e.Path(Host), e.Path(Sandbox), e.Path(Inet)} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s remains after Close (stat: %v)", p, err)
		}
	}
}

func TestPrivilegedTopology(t *testing.T) {
	needRoot(t)
	before := initialState(t)
	ctx := context.Background()

	e, err := Start(Options{ChunkDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()

	t.Run("hosts file resolves in the sandbox", func(t *testing.T) {
		for _, s := range Sites {
			out := run(t, e.SandboxCmd(ctx, "getent", "ahostsv4", s.Host))
			if !strings.HasPrefix(out, s.Addrs[0].String()+" ") {
				t.Errorf("getent %s = %q, want %s", s.Host, out, s.Addrs[0])
			}
		}
	})

	t.Run("curl reaches the fake API through host forwarding", func(t *testing.T) {
		for _, proto := range []string{"--http1.1", "--http2"} {
			e.API().Reset()
			out := run(t, e.SandboxCmd(ctx, "curl", "-sS", "--fail-with-body", proto,
				"--cacert", e.UpstreamCAFile(),
				"-H", "Authorization: Bearer "+e.Key(fakeapi.OpenAI),
				"https://api.openai.com/v1/models"))
			if !strings.Contains(out, `"gpt-4o-mini"`) {
				t.Errorf("%s: answer %q lacks the model list", proto, out)
			}
			reqs := e.API().Requests(fakeapi.OpenAI)
			if len(reqs) != 1 {
				t.Fatalf("%s: fake API recorded %d requests, want 1", proto, len(reqs))
			}
			r := reqs[0]
			wantProto := map[string]string{"--http1.1": "HTTP/1.1", "--http2": "HTTP/2.0"}
			got := []string{r.Proto, r.ServerName, r.Path, strings.Split(r.RemoteAddr, ":")[0]}
			want := []string{wantProto[proto], "api.openai.com", "/v1/models",
				SandboxAddr4.Addr().String()}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s: record (-want +got):\n%s", proto, diff)
			}
			wantCreds := []fakeapi.Credential{{Where: "header", Name: "authorization",
				Value: "Bearer " + e.Key(fakeapi.OpenAI)}}
			if diff := cmp.Diff(wantCreds, r.Credentials()); diff != "" {
				t.Errorf("%s: credentials (-want +got):\n%s", proto, diff)
			}
		}
	})

	t.Run("no key gets OpenAI's 401", func(t *testing.T) {
		out := run(t, e.SandboxCmd(ctx, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
			"--cacert", e.UpstreamCAFile(), "https://api.openai.com/v1/models"))
		if out != "401" {
			t.Errorf("status %q, want 401", out)
		}
	})

	t.Run("IPv6 site", func(t *testing.T) {
		out := run(t, e.SandboxCmd(ctx, "curl", "-sS", "--fail-with-body",
			"--cacert", e.UpstreamCAFile(), "--resolve", "api.openai.com:443:[2001:db8::10]",
			"-H", "Authorization: Bearer "+e.Key(fakeapi.OpenAI),
			"https://api.openai.com/v1/models"))
		if !strings.Contains(out, `"object":"list"`) {
			t.Errorf("answer %q, want the model list", out)
		}
	})

	t.Run("passthrough site has its own CA", func(t *testing.T) {
		url := "https://passthrough.example.test/hello"
		out := run(t, e.SandboxCmd(ctx, "curl", "-sS", "--cacert", e.PassthroughCAFile(), url))
		if want := fakeapi.PlainBody(fakeapi.Passthrough, "passthrough.example.test"); out != want {
			t.Errorf("answer %q, want %q", out, want)
		}
		cmd := e.SandboxCmd(ctx, "curl", "-sS", "--cacert", e.UpstreamCAFile(), url)
		var exit *exec.ExitError
		if err := cmd.Run(); !errors.As(err, &exit) || exit.ExitCode() != 60 {
			t.Errorf("curl trusting only the upstream CA: %v, want exit 60 (bad certificate)",
				err)
		}
	})

	t.Run("forwarding only inside host", func(t *testing.T) {
		out := run(t, e.HostCmd(ctx, "cat", "/proc/sys/net/ipv4/ip_forward",
			"/proc/sys/net/ipv6/conf/all/forwarding"))
		if out != "1\n1\n" {
			t.Errorf("forwarding in host netns = %q, want 1 and 1", out)
		}
	})

	t.Run("HostCmd keeps cgroup2 visible", func(t *testing.T) {
		out := run(t, e.HostCmd(ctx, "ip", "-o", "-4", "addr", "show", HostSandboxLink))
		if !strings.Contains(out, HostSandboxAddr4.String()) {
			t.Errorf("HostCmd did not run in the host netns: %q", out)
		}
		if out := run(t, e.HostCmd(ctx, "findmnt", "-n", "-t", "cgroup2")); out == "" {
			t.Error("no cgroup2 mount visible from HostCmd")
		}
	})

	t.Run("UDP 443 reaches the site", func(t *testing.T) {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		c, err := e.SandboxDial(dctx, "udp", "api.openai.com:443")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != "echo: ping" {
			t.Errorf("echo = %q, %v; want \"echo: ping\"", buf[:n], err)
		}
	})

	t.Run("in-process client dials from the sandbox", func(t *testing.T) {
		e.API().Reset()
		tr := &http.Transport{
			DialContext:     e.SandboxDial,
			TLSClientConfig: &tls.Config{RootCAs: e.UpstreamCA().Pool()},
		}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest("POST", "https://api.anthropic.com/v1/messages",
			strings.NewReader(`{"model":"m","max_tokens":5,"messages":[{"role":"user"}]}`))
		req.Header.Set("X-Api-Key", e.Key(fakeapi.Anthropic))
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("status %d: %s", resp.StatusCode, body)
		}
		reqs := e.API().Requests(fakeapi.Anthropic)
		if len(reqs) != 1 || !strings.HasPrefix(reqs[0].RemoteAddr, "198.19.1.2:") {
			t.Errorf("records %+v, want one from the sandbox", reqs)
		}
	})

	// A process still running at Close is killed.
	sleeper := e.SandboxCmd(ctx, "sleep", "600")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- sleeper.Wait() }()
	select {
	case err := <-waited:
		if err == nil {
			t.Error("sleep 600 exited cleanly; Close should have killed it")
		}
	case <-time.After(10 * time.Second):
		t.Error("sleep 600 still runs after Close")
	}

	assertGone(t, e)
	if diff := cmp.Diff(before, initialState(t)); diff != "" {
		t.Errorf("initial netns changed (-before +after):\n%s", diff)
	}
	if err := e.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestPrivilegedTopologyPartialFailure shows that a build failing half way
// leaves nothing behind.
func TestPrivilegedTopologyPartialFailure(t *testing.T) {
	needRoot(t)
	before := initialState(t)
	for _, at := range []string{"wire", "sites", "done"} {
		var made *Env
		failStep = func(e *Env, step string) error {
			made = e
			if step == at {
				return errors.New("injected failure at " + step)
			}
			return nil
		}
		e, err := Start(Options{})
		failStep = nil
		if err == nil || e != nil || !strings.Contains(err.Error(), "injected failure") {
			t.Fatalf("Start failing at %s: %v, %v; want the injected error", at, e, err)
		}
		assertGone(t, made)
	}
	if diff := cmp.Diff(before, initialState(t)); diff != "" {
		t.Errorf("initial netns changed (-before +after):\n%s", diff)
	}
}

// TestPrivilegedCleanupStale shows that leftovers of a dead run go and a live
// run stays.
func TestPrivilegedCleanupStale(t *testing.T) {
	needRoot(t)
	live := New(t, Options{})

	// A dead run: its owner file names pid 999999999, which cannot exist
	// (pid_max is at most 2^22).
	deadID := "dead" + live.ID()
	name := Prefix + deadID + "-sandbox"
	if err := addNamespace(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteNamespace(name) })
	etc := filepath.Join("/etc/netns", name)
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(etc) })
	tmp := filepath.Join(os.TempDir(), Prefix+deadID+"-123")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	// A daemon of the dead run that was killed left its programs pinned and
	// attached to the cgroup2 root.
	pins := filepath.Join(netsetup.BPFFSRoot, Prefix+deadID)
	installDeadRunPins(t, pins)
	owner := filepath.Join(ownerDir, deadID)
	if err := os.WriteFile(owner, []byte("999999999 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	removed, err := CleanupStale()
	if err != nil {
		t.Fatal(err)
	}
	// Another suite's CleanupStale may beat this one to some of the items.
	for _, r := range removed {
		if !slices.Contains([]string{name, etc, tmp, pins}, r) {
			t.Errorf("CleanupStale removed %s, which is not of the dead run", r)
		}
	}
	for _, p := range []string{filepath.Join("/var/run/netns", name), etc, tmp, owner, pins} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s remains after CleanupStale (stat: %v)", p, err)
		}
	}
	for _, r := range roles {
		if _, err := os.Stat(live.Path(r)); err != nil {
			t.Errorf("live run's %s netns was touched: %v", r, err)
		}
	}
}

// installDeadRunPins installs the BPF programs into pins, as a daemon of a
// dead run would have, and makes sure they are gone when the test ends.
func installDeadRunPins(t *testing.T, pins string) {
	t.Helper()
	root, err := netsetup.Cgroup2Root()
	if err != nil {
		t.Fatal(err)
	}
	if err := netsetup.EnsureBPFFS(pins); err != nil {
		t.Fatal(err)
	}
	r, err := bpf.Install(pins, root, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	t.Cleanup(func() {
		if err := bpf.Uninstall(pins); err != nil {
			t.Errorf("removing %s: %v", pins, err)
		}
	})
}

//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hermes-netd/hermes-netd/bpf"
	"github.com/hermes-netd/hermes-netd/internal/daemon"
	"github.com/hermes-netd/hermes-netd/internal/testenv"
	"github.com/hermes-netd/hermes-netd/netsetup"
)

// TestPrivilegedServeAttachDetach runs the built daemon in a namespace that plays
// the host and drives it with the CLI: attach by name and by pid:N, status,
// refusal of an unknown domain (with its audit line), SIGTERM leaving the sandbox
// failing closed, restart taking the attachments back, SIGHUP, a namespace
// whose last process exited cleaned up by the watcher, detach, and errors. Once per redirect mode.
func TestPrivilegedServeAttachDetach(t *testing.T) {
	forEachMode(t, []string{"ip", "nsenter", "unshare", "nft"}, testServeAttachDetach)
}

func testServeAttachDetach(t *testing.T, bin, mode string) {
	s := newServed(t, bin, mode)
	id, host, sock, dir := s.id, s.host, s.sock, s.dir
	sb := id + "-sb"
	addNetns(t, sb)
	// A route out of the sandbox, so that connects to public addresses reach the
	// redirect instead of failing with "network unreachable". Nothing answers there.
	mustRun(t, "ip", "-n", sb, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
		"netns", host)
	mustRun(t, "ip", "-n", sb, "addr", "add", "10.99.0.2/24", "dev", "v0")
	mustRun(t, "ip", "-n", sb, "link", "set", "v0", "up")
	mustRun(t, "ip", "-n", host, "link", "set", "v1", "up")
	mustRun(t, "ip", "-n", sb, "route", "add", "default", "via", "10.99.0.1")

	s.start(t)
	c, mustCLI := s.cli(t), s.mustCLI(t)

	// Attach by name, idempotently, and a second namespace by pid.
	mustCLI("attached "+sb+" (netns cookie ", "attach", sb)
	mustCLI("already attached "+sb, "attach", sb)
	sleeper := exec.Command("unshare", "--net", "sleep", "600")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
	pidSpec := fmt.Sprintf("pid:%d", sleeper.Process.Pid)
	waitFor(t, "unshare to enter its namespace", func() bool {
		a, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", sleeper.Process.Pid))
		b, _ := os.Readlink("/proc/self/ns/net")
		return a != b && a != ""
	})
	mustCLI("attached "+pidSpec, "attach", pidSpec)

	st := status(t, sock)
	if st.Mode != mode || specs(st) != strings.Join(sortedStrings(sb, pidSpec), ",") {
		t.Fatalf("status: mode %q, attached %q; want %s with %s and %s", st.Mode,
			specs(st), mode, sb, pidSpec)
	}
	if code, _, _ := runCode("ip", "netns", "exec", sb, "nft", "list", "table", "inet",
		"hermes"); code != 0 {
		t.Errorf("no nft table hermes in %s after attach", sb)
	}

	// An unknown domain is refused, and the audit trail says so.
	sbNS := openNS(t, sb)
	if err := tlsHello(sbNS, "unknown.example"); err == nil {
		t.Errorf("TLS to an unknown domain succeeded, want it refused")
	}
	waitFor(t, "the audit line of the refusal", func() bool {
		b, _ := os.ReadFile(s.audit)
		return bytes.Contains(b, []byte(`"sandbox":"`+sb+`"`)) &&
			bytes.Contains(b, []byte(`"decision":"deny"`))
	})
	if st := status(t, sock); st.Counters.Refused["deny"] < 1 {
		t.Errorf("status counters %+v, want a deny", st.Counters)
	}
	checkAuditLines(t, s.audit)

	// SIGTERM: exit 0, the sandbox fails closed while the daemon is down.
	s.stop(t)
	err := tlsHello(sbNS, "unknown.example")
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("connect with the daemon down: %v, want connection refused", err)
	}

	// Restart: both namespaces are taken back.
	s.start(t)
	if st := status(t, sock); specs(st) != strings.Join(sortedStrings(sb, pidSpec), ",") {
		t.Fatalf("after restart attached %q, want %s and %s\n%s", specs(st), sb, pidSpec,
			s.log())
	}
	if n := strings.Count(s.log(), "msg=Re-attached"); n != 2 {
		t.Errorf("restart logged %d Re-attached lines, want 2:\n%s", n, s.log())
	}
	if err := tlsHello(sbNS, "unknown.example"); errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("after restart the listener is still missing: %v", err)
	}

	// SIGHUP reloads.
	if err := s.d.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reload log line", func() bool {
		return strings.Contains(s.log(), `msg="Reloaded configuration"`)
	})

	// The pid's process, the only one in its namespace, exits: nothing holds the
	// namespace any more, so the watcher detaches it. (A namespace that still
	// has processes stays attached: TestPrivilegedNamespaceOutlivesItsName.)
	sleeper.Process.Kill()
	sleeper.Wait()
	waitFor(t, "the vanished namespace to be detached", func() bool {
		return specs(status(t, sock)) == sb
	})

	// Detach, idempotently; the table goes and the state forgets it.
	mustCLI("detached "+sb, "detach", sb)
	mustCLI(sb+" was not attached", "detach", sb)
	if code, _, _ := runCode("ip", "netns", "exec", sb, "nft", "list", "table", "inet",
		"hermes"); code == 0 {
		t.Errorf("nft table hermes still in %s after detach", sb)
	}
	recs, err := daemon.LoadState(filepath.Join(dir, "state", daemon.StateFile))
	if err != nil || len(recs) != 0 {
		t.Errorf("state after detach = %v, %v; want empty", recs, err)
	}

	// The daemon's own namespace (host plays it) is refused.
	code, _, errOut := c("attach", host)
	if code == 0 || !strings.Contains(errOut, "own network namespace") {
		t.Errorf("attach of the daemon's netns = %d, %q; want a refusal", code, errOut)
	}

	// A namespace that does not exist: non-zero and one line.
	code, out, errOut := c("attach", id+"-nope")
	if code == 0 || out != "" || strings.Count(errOut, "\n") != 1 ||
		!strings.Contains(errOut, "network namespace not found") {
		t.Errorf("attach of a missing netns = %d, %q, %q; want one error line", code, out, errOut)
	}

	s.stop(t)
}

// forEachMode skips t unless it runs as root with tools at hand, builds the
// binary and runs fn in a subtest per redirect mode the kernel supports.
func forEachMode(t *testing.T, tools []string, fn func(t *testing.T, bin, mode string)) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and runs the daemon")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
	bin := buildBinary(t)
	for _, mode := range []string{"nft", "ebpf"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "ebpf" {
				if err := bpf.Probe(); err != nil {
					t.Skipf("kernel cannot run the BPF redirect: %v", err)
				}
			}
			fn(t, bin, mode)
		})
	}
}

// served is a `hermes-netd serve` of one test, in a namespace of its own that
// plays the host, with its files in a short temporary directory.
type served struct {
	bin, id, host                 string
	dir, sock, cfg, audit, pinDir string
	d                             *testenv.Daemon // the daemon now running, or the last one
}

// newServed makes the host namespace and writes the daemon's config for mode;
// the run's BPF pins go when the test ends. The daemon is not started yet.
func newServed(t *testing.T, bin, mode string) *served {
	t.Helper()
	id := "hermes-t-" + randomHex(t)
	s := &served{bin: bin, id: id, host: id + "-host", dir: shortDir(t),
		pinDir: filepath.Join("/sys/fs/bpf", id)}
	addNetns(t, s.host)
	s.sock = filepath.Join(s.dir, "run", "netd.sock")
	s.audit = filepath.Join(s.dir, "audit.log")
	s.cfg = filepath.Join(s.dir, "netd.yaml")
	writeFile(t, s.cfg, fmt.Sprintf("state_dir: %s/state\nsecrets_dir: %s/secrets\n"+
		"socket: %s\nmode: %s\naudit:\n  file: %s\n", s.dir, s.dir, s.sock, mode, s.audit))
	t.Cleanup(func() {
		if err := bpf.Uninstall(s.pinDir); err != nil {
			t.Errorf("removing BPF pins %s: %v", s.pinDir, err)
		}
	})
	return s
}

// start runs the daemon in the host namespace and waits until it serves; the
// test's end kills it if it still runs.
func (s *served) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command("nsenter", "--net="+filepath.Join(netsetup.NetnsDir, s.host),
		s.bin, "serve", "--config", s.cfg, "--bpf-pin-dir", s.pinDir,
		"--check-interval", "100ms", "--shutdown-timeout", "2s")
	d, err := testenv.StartDaemon(context.Background(), cmd)
	if err != nil {
		t.Fatal(err)
	}
	s.d = d
	t.Cleanup(func() {
		d.Kill()
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.Log())
		}
	})
}

// stop sends SIGTERM and checks that the daemon exits 0.
func (s *served) stop(t *testing.T) {
	t.Helper()
	if err := s.d.Stop(); err != nil {
		t.Fatalf("%v\n%s", err, s.d.Log())
	}
}

// log is the operational log of the daemon now running, or the last one.
func (s *served) log() string { return s.d.Log() }

// cli returns a runner of the CLI against the daemon's socket.
func (s *served) cli(t *testing.T) func(args ...string) (int, string, string) {
	return func(args ...string) (int, string, string) {
		return cli(t, "", append([]string{"--socket", s.sock}, args...)...)
	}
}

// mustCLI returns a runner of the CLI that fails the test unless the command
// exits 0 with stdout starting with want.
func (s *served) mustCLI(t *testing.T) func(want string, args ...string) {
	c := s.cli(t)
	return func(want string, args ...string) {
		t.Helper()
		code, out, errOut := c(args...)
		if code != 0 || !strings.HasPrefix(out, want) {
			t.Fatalf("%v = %d, %q, %q; want 0 and %q...\ndaemon log:\n%s", args, code,
				out, errOut, want, s.log())
		}
	}
}

func status(t *testing.T, sock string) daemon.Status {
	t.Helper()
	code, out, errOut := cli(t, "", "--socket", sock, "status", "--json")
	var st daemon.Status
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil {
		t.Fatalf("status --json = %d, %v: %s", code, err, errOut)
	}
	return st
}

func specs(st daemon.Status) string {
	var s []string
	for _, a := range st.Attached {
		s = append(s, a.Spec)
	}
	return strings.Join(s, ",")
}

func sortedStrings(s ...string) []string {
	slices.Sort(s)
	return s
}

// tlsHello connects from inside ns to a public address on 443 and starts TLS
// with sni; the redirect sends it to the daemon.
func tlsHello(ns *netsetup.NS, sni string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := ns.Dial(ctx, "tcp4", "198.51.100.7:443")
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(c, &tls.Config{ServerName: sni, MinVersion: tls.VersionTLS12})
	return tc.HandshakeContext(ctx)
}

// checkAuditLines checks that every audit line is one JSON object with the
// record fields.
func checkAuditLines(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("audit file mode %v, want 0600", fi.Mode().Perm())
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("audit line is not JSON: %q", line)
			continue
		}
		for _, k := range []string{"time", "sandbox", "decision"} {
			if _, ok := m[k]; !ok {
				t.Errorf("audit line lacks %q: %q", k, line)
			}
		}
	}
}

func openNS(t *testing.T, name string) *netsetup.NS {
	t.Helper()
	ns, err := netsetup.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

func addNetns(t *testing.T, name string) {
	t.Helper()
	mustRun(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if code, _, errOut := runCode("ip", "netns", "del", name); code != 0 {
			t.Errorf("removing netns %s: %s", name, errOut)
		}
	})
}

func mustRun(t *testing.T, name string, args ...string) {
	t.Helper()
	if code, out, errOut := runCode(name, args...); code != 0 {
		t.Fatalf("%s %s: exit %d: %s%s", name, strings.Join(args, " "), code, out, errOut)
	}
}

func runCode(name string, args ...string) (int, string, string) {
	return testenv.RunCommand(exec.Command(name, args...))
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func randomHex(t *testing.T) string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// waitFor polls cond for up to ten seconds; the daemon works asynchronously.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

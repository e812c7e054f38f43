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
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and runs the daemon")
	}
	for _, tool := range []string{"ip", "nsenter", "unshare", "nft"} {
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
			testServeAttachDetach(t, bin, mode)
		})
	}
}

func testServeAttachDetach(t *testing.T, bin, mode string) {
	id := "hermes-t-" + randomHex(t)
	host, sb := id+"-host", id+"-sb"
	addNetns(t, host)
	addNetns(t, sb)
	// A route out of the sandbox, so that connects to public addresses reach the
	// redirect instead of failing with "network unreachable". Nothing answers there.
	mustRun(t, "ip", "-n", sb, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
		"netns", host)
	mustRun(t, "ip", "-n", sb, "addr", "add", "10.99.0.2/24", "dev", "v0")
	mustRun(t, "ip", "-n", sb, "link", "set", "v0", "up")
	mustRun(t, "ip", "-n", host, "link", "set", "v1", "up")
	mustRun(t, "ip", "-n", sb, "route", "add", "default", "via", "10.99.0.1")

	dir := shortDir(t)
	sock := filepath.Join(dir, "run", "netd.sock")
	auditFile := filepath.Join(dir, "audit.log")
	cfg := filepath.Join(dir, "netd.yaml")
	writeFile(t, cfg, fmt.Sprintf("state_dir: %s/state\nsecrets_dir: %s/secrets\n"+
		"socket: %s\nmode: %s\naudit:\n  file: %s\n", dir, dir, sock, mode, auditFile))
	pinDir := filepath.Join("/sys/fs/bpf", id)
	t.Cleanup(func() {
		if err := bpf.Uninstall(pinDir); err != nil {
			t.Errorf("removing BPF pins %s: %v", pinDir, err)
		}
	})

	d := startDaemon(t, bin, host, cfg, pinDir)
	c := func(args ...string) (int, string, string) {
		return cli(t, "", append([]string{"--socket", sock}, args...)...)
	}
	mustCLI := func(want string, args ...string) {
		t.Helper()
		code, out, errOut := c(args...)
		if code != 0 || !strings.HasPrefix(out, want) {
			t.Fatalf("%v = %d, %q, %q; want 0 and %q...\ndaemon log:\n%s", args, code,
				out, errOut, want, d.Log())
		}
	}

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
		b, _ := os.ReadFile(auditFile)
		return bytes.Contains(b, []byte(`"sandbox":"`+sb+`"`)) &&
			bytes.Contains(b, []byte(`"decision":"deny"`))
	})
	if st := status(t, sock); st.Counters.Refused["deny"] < 1 {
		t.Errorf("status counters %+v, want a deny", st.Counters)
	}
	checkAuditLines(t, auditFile)

	// SIGTERM: exit 0, the sandbox fails closed while the daemon is down.
	stopDaemon(t, d)
	err := tlsHello(sbNS, "unknown.example")
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("connect with the daemon down: %v, want connection refused", err)
	}

	// Restart: both namespaces are taken back.
	d = startDaemon(t, bin, host, cfg, pinDir)
	if st := status(t, sock); specs(st) != strings.Join(sortedStrings(sb, pidSpec), ",") {
		t.Fatalf("after restart attached %q, want %s and %s\n%s", specs(st), sb, pidSpec,
			d.Log())
	}
	if n := strings.Count(d.Log(), "msg=Re-attached"); n != 2 {
		t.Errorf("restart logged %d Re-attached lines, want 2:\n%s", n, d.Log())
	}
	if err := tlsHello(sbNS, "unknown.example"); errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("after restart the listener is still missing: %v", err)
	}

	// SIGHUP reloads.
	if err := d.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reload log line", func() bool {
		return strings.Contains(d.Log(), `msg="Reloaded configuration"`)
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

	stopDaemon(t, d)
}

// startDaemon runs `hermes-netd serve` in the namespace hostNS and waits until
// it serves; the test's end kills it if it still runs.
func startDaemon(t *testing.T, bin, hostNS, cfg, pinDir string) *testenv.Daemon {
	t.Helper()
	cmd := exec.Command("nsenter", "--net="+filepath.Join(netsetup.NetnsDir, hostNS),
		bin, "serve", "--config", cfg, "--bpf-pin-dir", pinDir,
		"--check-interval", "100ms", "--shutdown-timeout", "2s")
	d, err := testenv.StartDaemon(context.Background(), cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.Kill()
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.Log())
		}
	})
	return d
}

// stopDaemon sends SIGTERM and checks that the daemon exits 0.
func stopDaemon(t *testing.T, d *testenv.Daemon) {
	t.Helper()
	if err := d.Stop(); err != nil {
		t.Fatalf("%v\n%s", err, d.Log())
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
	var out, errb bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), out.String(), errb.String()
	}
	if err != nil {
		return -1, out.String(), err.Error()
	}
	return 0, out.String(), errb.String()
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

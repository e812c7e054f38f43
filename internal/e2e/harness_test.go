//go:build linux

package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hermes-netd/hermes-netd/bpf"
	"github.com/hermes-netd/hermes-netd/internal/daemon"
	"github.com/hermes-netd/hermes-netd/internal/testenv"
	"github.com/hermes-netd/hermes-netd/internal/testenv/fakeapi"
)

// waitLimit bounds every wait of the suite; the daemon and the kernel work
// asynchronously, so conditions are polled until it runs out.
const waitLimit = 15 * time.Second

// binaries are built once per test binary, on first use.
var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binaries returns the built daemon and the Go client of testdata/goclient.
func binaries(t *testing.T) (daemonBin, goClient string) {
	t.Helper()
	buildOnce.Do(func() {
		// Not under testenv.Prefix: its stale-run cleanup would take it.
		binDir, buildErr = os.MkdirTemp("", "hermes-netd-e2e-bin-")
		if buildErr != nil {
			return
		}
		gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
		for _, b := range []struct{ dir, pkg, out string }{
			{"../..", "./cmd/hermes-netd", "hermes-netd"},
			{"testdata", "./goclient", "goclient"},
		} {
			cmd := exec.Command(gobin, "build", "-o", filepath.Join(binDir, b.out), b.pkg)
			cmd.Dir = b.dir
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("building %s: %w\n%s", b.pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "hermes-netd"), filepath.Join(binDir, "goclient")
}

// world is one topology with its daemon: everything a test of one mode uses.
type world struct {
	env      *testenv.Env
	mode     string
	bin      string // hermes-netd
	goClient string
	dir      string // the run's temporary directory, removed with the topology
	config   string
	socket   string
	secrets  string
	audit    string
	pinDir   string
	hermesCA string // the hermes CA, as `ca export` prints it
	sandbox  string // the sandbox namespace's name

	d    *testenv.Daemon   // the daemon now running, or the last one
	runs []*testenv.Daemon // every daemon run, for the logs
}

// newWorld builds the topology, writes the daemon's config and keys into the
// run's directory, and makes sure the run's BPF pins go at the end, even after
// a failure. The daemon is not started yet.
func newWorld(t *testing.T, mode string) *world {
	t.Helper()
	bin, goClient := binaries(t)
	env := testenv.New(t, testenv.Options{})
	w := &world{
		env:      env,
		mode:     mode,
		bin:      bin,
		goClient: goClient,
		dir:      env.TempDir(),
		sandbox:  env.Name(testenv.Sandbox),
		pinDir:   env.PinDir(),
	}
	w.config = filepath.Join(w.dir, "netd.yaml")
	w.socket = filepath.Join(w.dir, "run", "netd.sock")
	w.secrets = filepath.Join(w.dir, "secrets")
	w.audit = filepath.Join(w.dir, "audit.jsonl")
	w.hermesCA = filepath.Join(w.dir, "hermes-ca.pem")

	// Registered before the daemon starts, so it runs after the daemon is
	// killed; the daemon leaves its redirect in place on exit by design.
	t.Cleanup(func() {
		if err := bpf.Uninstall(w.pinDir); err != nil {
			t.Errorf("removing the run's BPF pins %s: %v", w.pinDir, err)
		}
	})

	cfg := fmt.Sprintf(`state_dir: %[1]s/state
secrets_dir: %[2]s
socket: %[3]s
mode: %[4]s
passthrough: [passthrough.example.test]
# The daemon's namespace cannot resolve the fake names: pin the passthrough
# site's address for the destination check.
hosts: {passthrough.example.test: [198.18.0.20]}
upstream_ca_files: [%[5]s]
allow_upstream: [%[6]s, %[7]s]
audit:
  file: %[8]s
`, w.dir, w.secrets, w.socket, mode, env.UpstreamCAFile(), testenv.FakeInternet4,
		testenv.FakeInternet6, w.audit)
	if err := os.WriteFile(w.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range fakeapi.KeyedProviders {
		w.setKey(t, p)
	}
	return w
}

// setKey stores provider p's right key with `secrets set`.
func (w *world) setKey(t *testing.T, p fakeapi.Provider) {
	t.Helper()
	w.mustCLI(t, w.env.Key(p), "stored "+string(p)+" (sha256:", "secrets", "set", string(p))
}

// cli runs the hermes-netd CLI (outside the namespaces: it only talks to the
// admin socket and the files) and returns its exit status and outputs.
func (w *world) cli(stdin string, args ...string) (int, string, string) {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.bin, append([]string{"--config", w.config}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	return testenv.RunCommand(cmd)
}

// mustCLI runs the CLI and fails the test unless it exits 0 with stdout
// starting with want.
func (w *world) mustCLI(t *testing.T, stdin, want string, args ...string) string {
	t.Helper()
	code, out, errOut := w.cli(stdin, args...)
	if code != 0 || !strings.HasPrefix(out, want) {
		t.Fatalf("hermes-netd %s = exit %d, stdout %q, stderr %q; want 0 and %q...",
			strings.Join(args, " "), code, out, errOut, want)
	}
	return out
}

// status asks the daemon for its status.
func (w *world) status(t *testing.T) daemon.Status {
	t.Helper()
	out := w.mustCLI(t, "", "{", "status", "--json")
	var st daemon.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	return st
}

// attached lists the namespaces the daemon says it serves.
func attached(st daemon.Status) []string {
	var specs []string
	for _, a := range st.Attached {
		specs = append(specs, a.Spec)
	}
	return specs
}

// start runs the daemon in the host namespace (through nsenter, which keeps
// cgroup2 and bpffs visible) and waits until it serves its admin socket.
func (w *world) start(t *testing.T) {
	t.Helper()
	cmd := w.env.HostCmd(context.Background(), w.bin, "--config", w.config, "serve",
		"--bpf-pin-dir", w.pinDir, "--check-interval", "200ms",
		"--shutdown-timeout", "5s")
	d, err := testenv.StartDaemon(context.Background(), cmd)
	if err != nil {
		t.Fatal(err)
	}
	w.d = d
	w.runs = append(w.runs, d)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon log (run %d):\n%s", len(w.runs), d.Log())
		}
	})
}

// stop sends SIGTERM and requires exit status 0 within the wait limit.
func (w *world) stop(t *testing.T) {
	t.Helper()
	if err := w.d.Stop(); err != nil {
		t.Fatalf("%v\n%s", err, w.d.Log())
	}
}

// daemonLogs is every run's operational log, joined.
func (w *world) daemonLogs() string {
	var b strings.Builder
	for _, d := range w.runs {
		b.WriteString(d.Log())
	}
	return b.String()
}

// auditRecords parses the audit file: one JSON object per line.
func (w *world) auditRecords(t *testing.T) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(w.audit)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var recs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("audit line is not one JSON object: %q: %v", line, err)
		}
		recs = append(recs, m)
	}
	return recs
}

// waitAudit polls the audit file until a record has every field of want.
func (w *world) waitAudit(t *testing.T, want map[string]any) map[string]any {
	t.Helper()
	var found map[string]any
	poll(t, fmt.Sprintf("an audit record with %v", want), func() bool {
		for _, r := range w.auditRecords(t) {
			if matches(r, want) {
				found = r
				return true
			}
		}
		return false
	})
	return found
}

func matches(rec, want map[string]any) bool {
	for k, v := range want {
		if fmt.Sprint(rec[k]) != fmt.Sprint(v) {
			return false
		}
	}
	return true
}

// poll calls cond until it holds, failing the test after waitLimit.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(waitLimit); ; {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitLimit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hermes-netd/hermes-netd/internal/audit"
	"github.com/hermes-netd/hermes-netd/internal/daemon"
)

// cli runs the command line in-process and returns exit status, stdout, stderr.
func cli(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// shortDir is a temporary directory short enough to hold a unix socket path.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "hn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func notRunningLine(sock string) string {
	return "hermes-netd: daemon not running (no socket at " + sock + "): start it with " +
		"`hermes-netd serve` or systemctl start hermes-netd\n"
}

func TestDaemonNotRunning(t *testing.T) {
	sock := filepath.Join(shortDir(t), "netd.sock")
	for _, args := range [][]string{
		{"attach", "sb1"}, {"detach", "sb1"}, {"status"}, {"status", "--json"}, {"reload"},
	} {
		code, out, errOut := cli(t, "", append([]string{"--socket", sock}, args...)...)
		if code == 0 || out != "" || errOut != notRunningLine(sock) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want non-zero, nothing, %q",
				args, code, out, errOut, notRunningLine(sock))
		}
	}
}

// TestBuiltBinaryDaemonNotRunning runs the real binary, as a launcher would.
func TestBuiltBinaryDaemonNotRunning(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	sock := filepath.Join(shortDir(t), "netd.sock")
	cmd := exec.Command(bin, "attach", "--socket", sock, "sb1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v, want status 1", err)
	}
	if stdout.Len() != 0 || stderr.String() != notRunningLine(sock) {
		t.Errorf("stdout %q, stderr %q; want nothing, %q", stdout.String(), stderr.String(),
			notRunningLine(sock))
	}
}

// buildBinary builds hermes-netd into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "hermes-netd")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"attach"},
			"hermes-netd: attach takes 1 argument(s): NETNS, got 0 " +
				"(see `hermes-netd attach --help`)\n"},
		{[]string{"detach", "a", "b"},
			"hermes-netd: detach takes 1 argument(s): NETNS, got 2 " +
				"(see `hermes-netd detach --help`)\n"},
		{[]string{"frobnicate"},
			"hermes-netd: unknown command \"frobnicate\" for \"hermes-netd\" " +
				"(see `hermes-netd --help`)\n"},
		{[]string{"status", "--yaml"},
			"hermes-netd: unknown flag: --yaml (see `hermes-netd status --help`)\n"},
	} {
		code, _, errOut := cli(t, "", tc.args...)
		if code == 0 || errOut != tc.want {
			t.Errorf("%v: exit %d, stderr %q; want non-zero, %q", tc.args, code, errOut, tc.want)
		}
	}
}

func TestBadConfigIsOneLine(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "netd.yaml")
	if err := os.WriteFile(cfg, []byte("stat_dir: /tmp\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := cli(t, "", "--config", cfg, "status")
	if code == 0 || strings.Count(errOut, "\n") != 1 ||
		!strings.HasPrefix(errOut, "hermes-netd: ") || !strings.Contains(errOut, cfg) {
		t.Errorf("exit %d, stderr %q; want one line naming %s", code, errOut, cfg)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := cli(t, "", "version")
	if code != 0 || !strings.HasPrefix(out, "hermes-netd dev (go") {
		t.Errorf("version: exit %d, %q", code, out)
	}
}

func TestCAEnv(t *testing.T) {
	code, out, errOut := cli(t, "", "ca", "env", "--path", "/opt/my certs/bundle.pem")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	q := "'/opt/my certs/bundle.pem'"
	want := ""
	for _, v := range []string{"SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE",
		"CURL_CA_BUNDLE", "GIT_SSL_CAINFO", "PIP_CERT", "CARGO_HTTP_CAINFO",
		"AWS_CA_BUNDLE", "DENO_CERT"} {
		want += "export " + v + "=" + q + "\n"
	}
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("ca env (-want +got):\n%s", diff)
	}

	_, out, _ = cli(t, "", "ca", "env")
	if !strings.HasPrefix(out, "export SSL_CERT_FILE="+DefaultTrustPath+"\n") {
		t.Errorf("ca env default = %q, want SSL_CERT_FILE=%s first", out, DefaultTrustPath)
	}

	// The output is valid shell that sets the variables.
	sh := exec.Command("sh", "-c", out+`printf %s "$NODE_EXTRA_CA_CERTS"`)
	got, err := sh.Output()
	if err != nil || string(got) != DefaultTrustPath {
		t.Errorf("sh evaluated NODE_EXTRA_CA_CERTS = %q, %v; want %s", got, err,
			DefaultTrustPath)
	}
}

// writeConfig writes a config whose directories are under a fresh temp dir.
func writeConfig(t *testing.T) (cfgPath, stateDir, secretsDir string) {
	t.Helper()
	dir := t.TempDir()
	stateDir, secretsDir = filepath.Join(dir, "state"), filepath.Join(dir, "secrets")
	cfgPath = filepath.Join(dir, "netd.yaml")
	yaml := fmt.Sprintf("state_dir: %s\nsecrets_dir: %s\n", stateDir, secretsDir)
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, stateDir, secretsDir
}

func TestCAExport(t *testing.T) {
	cfg, stateDir, _ := writeConfig(t)
	code, first, errOut := cli(t, "", "--config", cfg, "ca", "export")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	block, rest := pem.Decode([]byte(first))
	if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("ca export printed %q, want one PEM certificate", first)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil || !cert.IsCA {
		t.Fatalf("exported certificate: %v, IsCA %v", err, cert != nil && cert.IsCA)
	}
	if _, err := os.Stat(filepath.Join(stateDir, "ca.key")); err != nil {
		t.Errorf("CA key not created in the state dir: %v", err)
	}
	_, second, _ := cli(t, "", "--config", cfg, "ca", "export")
	if second != first {
		t.Errorf("second export differs: the CA must be created once and reused")
	}
}

func TestSecretsCLI(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: key files must be root-owned")
	}
	cfg, _, secretsDir := writeConfig(t)
	const key = "sk-test-0123456789"
	sum := sha256.Sum256([]byte(key))
	fp := "sha256:" + hex.EncodeToString(sum[:])[:12]

	code, out, errOut := cli(t, key+"\n", "--config", cfg, "secrets", "set", "openai")
	if code != 0 {
		t.Fatalf("secrets set: exit %d: %s", code, errOut)
	}
	if want := "stored openai (" + fp + ") in " + secretsDir + "\n"; out != want {
		t.Errorf("secrets set printed %q, want %q", out, want)
	}
	b, err := os.ReadFile(filepath.Join(secretsDir, "openai.key"))
	if err != nil || strings.TrimSpace(string(b)) != key {
		t.Errorf("key file = %q, %v", b, err)
	}
	fi, _ := os.Stat(filepath.Join(secretsDir, "openai.key"))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}

	// --secrets-dir wins over the config.
	other := filepath.Join(t.TempDir(), "other")
	if code, _, errOut := cli(t, "nvapi-0001\n", "secrets", "set", "nim",
		"--secrets-dir", other); code != 0 {
		t.Fatalf("secrets set --secrets-dir: %s", errOut)
	}
	if _, err := os.Stat(filepath.Join(other, "nim.key")); err != nil {
		t.Errorf("--secrets-dir not used: %v", err)
	}

	code, out, _ = cli(t, "", "--config", cfg, "secrets", "list")
	if want := "NAME    FINGERPRINT\nopenai  " + fp + "\n"; code != 0 || out != want {
		t.Errorf("secrets list = %d, %q; want %q", code, out, want)
	}
	if strings.Contains(out, key) {
		t.Errorf("secrets list printed the key")
	}

	for _, tc := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{"", []string{"secrets", "set", "openai"}, "key is empty"},
		{"a\nb\n", []string{"secrets", "set", "openai"}, "control byte"},
		{"sk-1\n", []string{"secrets", "set", "openai"}, "key is 4 bytes, shorter than"},
		{"k\n", []string{"secrets", "set", "Bad/Name"}, `key name "Bad/Name"`},
	} {
		code, _, errOut := cli(t, tc.stdin, append([]string{"--config", cfg}, tc.args...)...)
		if code == 0 || !strings.Contains(errOut, tc.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want one line with %q", tc.args, code, errOut,
				tc.want)
		}
	}

	if code, out, _ := cli(t, "", "--config", cfg, "secrets", "revoke", "openai"); code != 0 ||
		out != "revoked openai\n" {
		t.Errorf("secrets revoke = %d, %q", code, out)
	}
	code, _, errOut = cli(t, "", "--config", cfg, "secrets", "revoke", "openai")
	if code == 0 || !strings.Contains(errOut, "does not exist") {
		t.Errorf("second revoke: exit %d, %q; want an error saying it does not exist",
			code, errOut)
	}
	if _, out, _ := cli(t, "", "--config", cfg, "secrets", "list"); out != "NAME  FINGERPRINT\n" {
		t.Errorf("list after revoke = %q, want the header only", out)
	}
}

// fakeController answers the admin API for the client commands.
type fakeController struct{}

func (fakeController) Attach(_ context.Context, spec string) (daemon.Attachment, error) {
	if spec == "missing" {
		return daemon.Attachment{}, fmt.Errorf("opening netns missing: %w (no "+
			"/var/run/netns/missing)", daemon.ErrNoNamespace)
	}
	return daemon.Attachment{Record: daemon.Record{Spec: spec, Cookie: 4097,
		Port4: 15443, Port6: 15443}, Existing: spec == "again"}, nil
}

func (fakeController) Detach(_ context.Context, spec string) (daemon.DetachResult, error) {
	return daemon.DetachResult{Netns: spec, WasAttached: spec == "sb1"}, nil
}

func (fakeController) Status(context.Context) daemon.Status {
	since := time.Date(2026, 12, 3, 16, 0, 0, 0, time.UTC)
	return daemon.Status{
		Version: "dev", PID: 42, Started: since, Mode: "ebpf",
		ModeReason: "cgroup/connect4 available", Config: "/etc/hermes/netd.yaml",
		Attached: []daemon.Attachment{{Record: daemon.Record{Spec: "sb1", Cookie: 4097,
			Port4: 15443, Port6: 15443, Since: since}, Connections: 5, Requests: 4},
			{Record: daemon.Record{Spec: "pid:77", Cookie: 4098, Port4: 38211, Port6: 40999,
				Since: since}, NameGone: true}},
		Providers: []daemon.ProviderStatus{
			{Name: "anthropic", Key: "anthropic", Domains: []string{"api.anthropic.com"}},
			{Name: "openai", Key: "openai", Domains: []string{"api.openai.com"},
				Loaded: true, Fingerprint: "sha256:0123456789ab"},
		},
		Counters: audit.Snapshot{Requests: 4, Injected: map[string]uint64{"openai": 3},
			Refused:   map[string]uint64{"unknown_domain": 1},
			Decisions: map[string]uint64{"intercept": 3, "deny": 1}},
	}
}

func (fakeController) Reload(context.Context) (daemon.ReloadResult, error) {
	return daemon.ReloadResult{Config: "/etc/hermes/netd.yaml",
		NeedsRestart: []string{"mode"}}, nil
}

func startFakeDaemon(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(shortDir(t), "netd.sock")
	ln, err := daemon.ListenSocket(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := daemon.NewServer(daemon.NewHandler(fakeController{}, nil, nil), nil)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func TestClientCommands(t *testing.T) {
	sock := startFakeDaemon(t)
	for _, tc := range []struct {
		args     []string
		code     int
		out, err string
	}{
		{[]string{"attach", "sb1"}, 0,
			"attached sb1 (netns cookie 4097, listening on 127.0.0.1:15443 [::1]:15443)\n", ""},
		{[]string{"attach", "again"}, 0,
			"already attached again (netns cookie 4097, listening on 127.0.0.1:15443 " +
				"[::1]:15443)\n", ""},
		{[]string{"attach", "missing"}, 1, "",
			"hermes-netd: opening netns missing: no such network namespace " +
				"(no /var/run/netns/missing)\n"},
		{[]string{"detach", "sb1"}, 0, "detached sb1\n", ""},
		{[]string{"detach", "sb9"}, 0, "sb9 was not attached\n", ""},
		{[]string{"reload"}, 0,
			"reloaded /etc/hermes/netd.yaml\nrestart the daemon to apply: mode\n", ""},
	} {
		code, out, errOut := cli(t, "", append([]string{"--socket", sock}, tc.args...)...)
		if code != tc.code || out != tc.out || errOut != tc.err {
			t.Errorf("%v = %d, %q, %q; want %d, %q, %q", tc.args, code, out, errOut,
				tc.code, tc.out, tc.err)
		}
	}
}

func TestNetnsArg(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		"sb1":                  "sb1",
		"pid:42":               "pid:42",
		"/proc/42/ns/net":      "/proc/42/ns/net",
		"run/netns/sb1":        filepath.Join(wd, "run/netns/sb1"),
		"./sb1":                filepath.Join(wd, "sb1"),
		"/var/run/netns/../x/": "/var/run/netns/../x/",
	} {
		if got := netnsArg(in); got != want {
			t.Errorf("netnsArg(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestStatusOutput(t *testing.T) {
	sock := startFakeDaemon(t)
	code, out, errOut := cli(t, "", "--socket", sock, "status")
	if code != 0 {
		t.Fatalf("status: %s", errOut)
	}
	want := `mode:    ebpf (cgroup/connect4 available)
daemon:  pid 42, version dev, up since 2026-12-03T16:00:00Z
config:  /etc/hermes/netd.yaml

NETNS               COOKIE  LISTENING                    CONNECTIONS  REQUESTS  SINCE
sb1                 4097    127.0.0.1:15443 [::1]:15443  5            4         2026-12-03T16:00:00Z
pid:77 (name gone)  4098    127.0.0.1:38211 [::1]:40999  0            0         2026-12-03T16:00:00Z

PROVIDER   KEY        LOADED  FINGERPRINT          DOMAINS
anthropic  anthropic  no      -                    api.anthropic.com
openai     openai     yes     sha256:0123456789ab  api.openai.com

requests:   4
injected:   openai=3
refused:    unknown_domain=1
decisions:  deny=1 intercept=3
`
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}

	code, out, _ = cli(t, "", "--socket", sock, "status", "--json")
	var st daemon.Status
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil {
		t.Fatalf("status --json: exit %d, %v: %q", code, err, out)
	}
	if diff := cmp.Diff(fakeController{}.Status(context.Background()), st); diff != "" {
		t.Errorf("status --json (-want +got):\n%s", diff)
	}
}

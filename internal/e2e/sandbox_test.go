//go:build linux

package e2e_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hermes-netd/hermes-netd/internal/testenv"
	"github.com/hermes-netd/hermes-netd/internal/testenv/fakeapi"
)

// sandboxEnv is the whole environment of a sandboxed client: PATH and HOME
// (pyenv's python3 shim needs both), pyenv's own settings, and the trust
// variables given; no key and no proxy variable of the test's own
// environment can leak in.
func (w *world) sandboxEnv(extra ...string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "LANG=C.UTF-8"}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PYENV_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// result is what a command in the sandbox did.
type result struct {
	code           int // exit status; -1 when it could not run
	stdout, stderr string
}

// inSandbox runs name inside the sandbox with env and returns what it did.
func (w *world) inSandbox(t *testing.T, env []string, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	cmd := w.env.SandboxCmd(ctx, name, args...)
	cmd.Env = env
	var r result
	r.code, r.stdout, r.stderr = testenv.RunCommand(cmd)
	if ctx.Err() != nil {
		t.Fatalf("%s %q did not finish within %v", name, args, waitLimit)
	}
	return r
}

// curlResult is one curl run: its exit status (0, or curl's error number),
// and on success the HTTP status, version and body.
type curlResult struct {
	exit    int
	status  int
	version string // curl's %{http_version}: "1.1" or "2"
	body    string
	stderr  string
}

// curl runs curl in the sandbox with args, trusting only caFile (no other
// root: --cacert replaces the system bundle), and no proxy whatever.
func (w *world) curl(t *testing.T, caFile string, args ...string) curlResult {
	t.Helper()
	argv := append([]string{"-sS", "--noproxy", "*", "--max-time", "10",
		"-w", "\n%{http_code} %{http_version}"}, args...)
	if caFile != "" {
		argv = append([]string{"--cacert", caFile}, argv...)
	}
	r := w.inSandbox(t, w.sandboxEnv(), "curl", argv...)
	c := curlResult{exit: r.code, stderr: r.stderr}
	if r.code != 0 {
		return c
	}
	i := strings.LastIndexByte(r.stdout, '\n')
	status, version, _ := strings.Cut(r.stdout[i+1:], " ")
	c.body, c.version = r.stdout[:i], version
	c.status, _ = strconv.Atoi(status)
	return c
}

// chatArgs are curl arguments for a small chat completion at host.
func chatArgs(host, model string, extra ...string) []string {
	body := `{"model":"` + model + `","messages":[{"role":"user","content":"Say hello."}]}`
	return append([]string{"-H", "Content-Type: application/json", "-d", body,
		"https://" + host + "/v1/chat/completions"}, extra...)
}

// credential is the one carrier provider p must receive: its key in its form.
func (w *world) credential(p fakeapi.Provider) fakeapi.Credential {
	if p == fakeapi.Anthropic {
		return fakeapi.Credential{Where: "header", Name: "x-api-key", Value: w.env.Key(p)}
	}
	return fakeapi.Credential{Where: "header", Name: "authorization",
		Value: "Bearer " + w.env.Key(p)}
}

// mark is how many requests provider p has received so far.
func (w *world) mark(p fakeapi.Provider) int { return len(w.env.API().Requests(p)) }

// since returns the requests p received after mark.
func (w *world) since(p fakeapi.Provider, mark int) []fakeapi.Request {
	return w.env.API().Requests(p)[mark:]
}

// wantInjected checks that p received exactly one request after mark, and
// that it carried exactly one credential: the right one.
func (w *world) wantInjected(t *testing.T, p fakeapi.Provider, mark int) fakeapi.Request {
	t.Helper()
	reqs := w.since(p, mark)
	if len(reqs) != 1 {
		t.Fatalf("%s received %d requests, want 1", p, len(reqs))
	}
	want := []fakeapi.Credential{w.credential(p)}
	if diff := cmp.Diff(want, reqs[0].Credentials()); diff != "" {
		// The diff names key values: these are the fake run's test keys.
		t.Errorf("%s credentials (-want +got):\n%s", p, diff)
	}
	return reqs[0]
}

// wantNothing checks that p received nothing after mark.
func (w *world) wantNothing(t *testing.T, p fakeapi.Provider, mark int) {
	t.Helper()
	if reqs := w.since(p, mark); len(reqs) != 0 {
		t.Errorf("%s received %d requests, want none: %+v", p, len(reqs), reqs[0])
	}
}

// udpProbe sends one datagram to addr:443 on a connected UDP socket from the
// sandbox and reports "answer: ...", "refused: ERRNO" or "timeout". A
// connected socket reports an ICMP refusal on the next receive; a sendmsg
// hook refuses at connect or send.
const udpProbe = `
import errno, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
try:
    s.connect((sys.argv[1], 443))
    s.send(b"ping")
    print("answer: " + s.recv(100).decode())
except socket.timeout:
    print("timeout")
except OSError as e:
    print("refused: " + errno.errorcode.get(e.errno, str(e.errno)))
`

func (w *world) udp(t *testing.T, addr string) string {
	t.Helper()
	r := w.inSandbox(t, w.sandboxEnv(), "python3", "-c", udpProbe, addr)
	if r.code != 0 {
		t.Fatalf("udp probe: exit %d: %s", r.code, r.stderr)
	}
	return strings.TrimSpace(r.stdout)
}

// testdata is the absolute path of a client in testdata.
func testdata(t *testing.T, elem ...string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join(append([]string{"testdata"}, elem...)...))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

//go:build linux

package e2e_test

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/hermes-netd/hermes-netd/bpf"
	"github.com/hermes-netd/hermes-netd/internal/testenv"
	"github.com/hermes-netd/hermes-netd/internal/testenv/fakeapi"
)

// TestPrivilegedE2E runs the whole product once per redirect mode: the built
// daemon serves the host namespace of a fresh topology, the sandbox is
// attached by name, and real clients inside it, holding no key and trusting
// only the hermes CA, reach the fake providers with exactly the right key.
// Then revocation, a daemon restart and detach, the audit trail, and at the
// end that nothing of the run remains.
func TestPrivilegedE2E(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end suite: not run with -short (make test-unit)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds network namespaces and runs the daemon")
	}
	for _, tool := range []string{"ip", "nsenter", "curl", "python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (vagrant/provision.sh installs it): %v", tool, err)
		}
	}

	for _, mode := range []string{"ebpf", "nft"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "ebpf" {
				if err := bpf.Probe(); err != nil {
					t.Skipf("kernel cannot run the BPF redirect: %v", err)
				}
			}
			var w *world
			var ours programs
			t.Run("suite", func(t *testing.T) {
				w = newWorld(t, mode)
				ours = runSuite(t, w)
			})
			// The run's cleanups are done: the topology, the daemon and the
			// pins must all be gone now.
			if w != nil {
				checkNothingLeft(t, w, ours)
			}
		})
	}
}

// runSuite drives one world through every check, in an order where each step
// leaves the daemon as the next expects. It returns the BPF programs the
// daemon attached, for the final leak check.
func runSuite(t *testing.T, w *world) programs {
	// Before the daemon: the sandbox reaches the fake internet's UDP echo.
	if got := w.udp(t, "198.18.0.10"); got != "answer: echo: ping" {
		t.Fatalf("UDP to 198.18.0.10:443 before attach = %q, want the echo", got)
	}

	w.start(t)
	ca := w.mustCLI(t, "", "-----BEGIN CERTIFICATE-----", "ca", "export")
	if err := os.WriteFile(w.hermesCA, []byte(ca), 0o644); err != nil {
		t.Fatal(err)
	}
	w.mustCLI(t, "", "attached "+w.sandbox, "attach", w.sandbox)
	w.mustCLI(t, "", "already attached "+w.sandbox, "attach", w.sandbox)
	st := w.status(t)
	if st.Mode != w.mode || !slices.Equal(attached(st), []string{w.sandbox}) {
		t.Fatalf("status: mode %q, attached %q; want %s and [%s]", st.Mode, attached(st),
			w.mode, w.sandbox)
	}
	ours := pinnedPrograms(t, w.pinDir)
	if w.mode == "ebpf" {
		checkAttached(t, ours)
	}

	steps := []struct {
		name string
		fn   func(t *testing.T, w *world)
		// stop: the steps after it need what it sets up.
		stop bool
	}{
		{"curl http1.1 and http2", testCurlOpenAI, false},
		{"anthropic and nim", testOtherProviders, false},
		{"openai node sdk streams", testNodeSDK, false},
		{"go net/http", testGoClient, false},
		{"python urllib", testPython, false},
		{"passthrough", testPassthrough, false},
		{"passthrough sni spoofing refused", testPassthroughSpoof, false},
		{"unknown domain and no sni refused", testRefusals, false},
		{"udp 443 refused", testUDP, false},
		{"revoke and set", testRevoke, true},
		{"restart", testRestart, true},
		{"audit records", testAudit, false},
		{"detach", testDetach, true},
		{"no key in any output", testNoKeyLeaked, false},
	}
	for _, s := range steps {
		if !t.Run(s.name, func(t *testing.T) { s.fn(t, w) }) && s.stop {
			t.Fatalf("step %q failed; the steps after it depend on it", s.name)
		}
	}
	w.stop(t)
	return ours
}

// testCurlOpenAI: curl over HTTP/1.1 and HTTP/2, without a key and with dummy
// keys in every header that can carry one, gets the fake's answer, and the
// fake sees exactly one credential, the right one.
func testCurlOpenAI(t *testing.T, w *world) {
	for _, tc := range []struct {
		flag, version string
		dummies       []string
	}{
		{"--http1.1", "1.1", nil},
		{"--http2", "2", nil},
		{"--http1.1", "1.1", []string{"-H", "Authorization: Bearer sk-dummy"}},
		{"--http2", "2", []string{"-H", "Authorization: Bearer sk-dummy",
			"-H", "x-api-key: sk-dummy", "-H", "api-key: sk-dummy"}},
	} {
		mark := w.mark(fakeapi.OpenAI)
		args := append([]string{tc.flag},
			chatArgs("api.openai.com", "gpt-4o-mini", tc.dummies...)...)
		r := w.curl(t, w.hermesCA, args...)
		if r.exit != 0 || r.status != 200 || r.version != tc.version ||
			!strings.Contains(r.body, fakeapi.Reply) {
			t.Errorf("curl %s %q: exit %d (%s), status %d over HTTP/%s, body %q; "+
				"want 200 over HTTP/%s with the reply", tc.flag, tc.dummies, r.exit,
				r.stderr, r.status, r.version, r.body, tc.version)
			continue
		}
		w.wantInjected(t, fakeapi.OpenAI, mark)
	}

	// IPv6 is intercepted too: the provider's v6 address, named explicitly.
	mark := w.mark(fakeapi.OpenAI)
	r := w.curl(t, w.hermesCA, chatArgs("api.openai.com", "gpt-4o-mini",
		"--resolve", "api.openai.com:443:[2001:db8::10]")...)
	if r.exit != 0 || r.status != 200 {
		t.Errorf("over IPv6: exit %d (%s), status %d, body %q", r.exit, r.stderr, r.status,
			r.body)
	} else if req := w.wantInjected(t, fakeapi.OpenAI, mark); !strings.HasPrefix(
		req.RemoteAddr, "["+testenv.HostInetAddr6.Addr().String()+"]:") {
		// The proxy dials the original destination, so it stays IPv6 upstream.
		t.Errorf("over IPv6 the provider saw a request from %s, want the host's %s",
			req.RemoteAddr, testenv.HostInetAddr6.Addr())
	}

	// A query string reaches the provider; the audit trail keeps it out.
	mark = w.mark(fakeapi.OpenAI)
	r = w.curl(t, w.hermesCA, "https://api.openai.com/v1/models?after=cursor-e2e-query")
	if r.exit != 0 || r.status != 200 || !strings.Contains(r.body, "gpt-4o-mini") {
		t.Fatalf("GET /v1/models: exit %d (%s), status %d, body %q", r.exit, r.stderr,
			r.status, r.body)
	}
	if req := w.wantInjected(t, fakeapi.OpenAI, mark); req.Query.Get("after") !=
		"cursor-e2e-query" {
		t.Errorf("the provider saw query %v, want after=cursor-e2e-query", req.Query)
	}
}

// testOtherProviders: Anthropic gets its key as x-api-key (the client's dummy
// one replaced), NIM as a Bearer token.
func testOtherProviders(t *testing.T, w *world) {
	mark := w.mark(fakeapi.Anthropic)
	body := `{"model":"claude-sonnet-4-5","max_tokens":32,` +
		`"messages":[{"role":"user","content":"Say hello."}]}`
	r := w.curl(t, w.hermesCA, "-H", "x-api-key: sk-ant-dummy", "-H",
		"anthropic-version: 2023-06-01", "-H", "Content-Type: application/json", "-d", body,
		"https://api.anthropic.com/v1/messages")
	if r.exit != 0 || r.status != 200 || !strings.Contains(r.body, fakeapi.Reply) {
		t.Errorf("anthropic: exit %d (%s), status %d, body %q", r.exit, r.stderr, r.status,
			r.body)
	} else {
		w.wantInjected(t, fakeapi.Anthropic, mark)
	}

	mark = w.mark(fakeapi.NIM)
	r = w.curl(t, w.hermesCA,
		chatArgs("integrate.api.nvidia.com", "meta/llama-3.1-8b-instruct")...)
	if r.exit != 0 || r.status != 200 || !strings.Contains(r.body, fakeapi.Reply) {
		t.Errorf("nim: exit %d (%s), status %d, body %q", r.exit, r.stderr, r.status, r.body)
	} else {
		w.wantInjected(t, fakeapi.NIM, mark)
	}
}

// testPassthrough: a passthrough name is spliced, not terminated: the client
// verifies the site's own certificate, and the hermes CA alone cannot.
func testPassthrough(t *testing.T, w *world) {
	const host = "passthrough.example.test"
	mark := w.mark(fakeapi.Passthrough)
	r := w.curl(t, w.env.PassthroughCAFile(), "-H", "Authorization: Bearer sk-dummy",
		"https://"+host+"/hello")
	if r.exit != 0 || r.status != 200 || r.body != fakeapi.PlainBody(fakeapi.Passthrough, host) {
		t.Fatalf("passthrough with the site's CA: exit %d (%s), status %d, body %q",
			r.exit, r.stderr, r.status, r.body)
	}
	reqs := w.since(fakeapi.Passthrough, mark)
	if len(reqs) != 1 || reqs[0].ServerName != host {
		t.Fatalf("the passthrough site saw %d requests (%+v), want 1 for SNI %s",
			len(reqs), reqs, host)
	}
	// Untouched: the client's own header arrives as sent, nothing is added.
	want := []fakeapi.Credential{{Where: "header", Name: "authorization",
		Value: "Bearer sk-dummy"}}
	if got := reqs[0].Credentials(); !slices.Equal(got, want) {
		t.Errorf("passthrough site saw credentials %+v, want only the client's %+v", got, want)
	}

	// curl exit 60: the peer's certificate cannot be verified.
	if r := w.curl(t, w.hermesCA, "https://"+host+"/hello"); r.exit != 60 {
		t.Errorf("passthrough with only the hermes CA: exit %d (%s), want 60 "+
			"(certificate not verified)", r.exit, r.stderr)
	}
	w.waitAudit(t, map[string]any{"decision": "passthrough", "host": host,
		"sandbox": w.sandbox})
}

// testPassthroughSpoof: a passthrough name sent to another site's address
// (the unknown one, which policy denies) is refused, not spliced there: the
// destination is not an address of the name.
func testPassthroughSpoof(t *testing.T, w *world) {
	const host = "passthrough.example.test"
	unknown, _ := testenv.SiteFor(fakeapi.Unknown)
	addr := unknown.Addrs[0].String()
	mark, markPass := w.mark(fakeapi.Unknown), w.mark(fakeapi.Passthrough)
	r := w.curl(t, "", "-k", "--resolve", host+":443:"+addr, "https://"+host+"/hello")
	if r.exit == 0 {
		t.Errorf("passthrough name to %s: status %d, body %q; want the connection refused",
			addr, r.status, r.body)
	}
	w.wantNothing(t, fakeapi.Unknown, mark)
	w.wantNothing(t, fakeapi.Passthrough, markPass)
	w.waitAudit(t, map[string]any{"decision": "deny", "host": host, "dst": addr + ":443",
		"sandbox": w.sandbox,
		"reason":  "destination " + addr + " is not an address of " + host})
}

// testRefusals: an unknown name and a TLS hello without SNI (an IP literal)
// are refused, reach no site, and leave a deny record each.
func testRefusals(t *testing.T, w *world) {
	mark := w.mark(fakeapi.Unknown)
	if r := w.curl(t, w.hermesCA, "https://unknown.example.test/"); r.exit == 0 {
		t.Errorf("unknown domain: status %d, want the connection refused", r.status)
	}
	w.wantNothing(t, fakeapi.Unknown, mark)
	w.waitAudit(t, map[string]any{"decision": "deny", "host": "unknown.example.test",
		"sandbox": w.sandbox})

	// curl sends no SNI for an IP literal, even with -k.
	mark = w.mark(fakeapi.OpenAI)
	if r := w.curl(t, "", "-k", "https://198.18.0.10/v1/models"); r.exit == 0 {
		t.Errorf("IP literal: status %d, want the connection refused", r.status)
	}
	w.wantNothing(t, fakeapi.OpenAI, mark)
	rec := w.waitAudit(t, map[string]any{"decision": "deny", "host": "",
		"dst": "198.18.0.10:443", "sandbox": w.sandbox})
	if reason, _ := rec["reason"].(string); !strings.Contains(reason, "SNI") {
		t.Errorf("refusal of the IP literal gives reason %q, want it to name the SNI", reason)
	}
}

// testUDP: UDP to port 443 is refused at once, so QUIC falls back to TCP. Both
// modes fail the send itself with EPERM: the BPF sendmsg/connect hook, and the
// nftables reject in the output hook.
func testUDP(t *testing.T, w *world) {
	if got := w.udp(t, "198.18.0.10"); got != "refused: EPERM" {
		t.Errorf("UDP to 198.18.0.10:443 = %q, want refused: EPERM", got)
	}
}

// testRevoke: once `secrets revoke` is picked up, requests get the proxy's
// no-credential answer and nothing reaches the provider; `secrets set` brings
// injection back without a restart.
func testRevoke(t *testing.T, w *world) {
	args := chatArgs("api.openai.com", "gpt-4o-mini")
	w.mustCLI(t, "", "revoked openai", "secrets", "revoke", "openai")
	poll(t, "requests to get the no-credential answer", func() bool {
		return w.curl(t, w.hermesCA, args...).status == 503
	})
	mark := w.mark(fakeapi.OpenAI)
	r := w.curl(t, w.hermesCA, args...)
	if r.status != 503 || !strings.Contains(r.body, `"hermes_no_credential"`) ||
		!strings.Contains(r.body, `\"openai\"`) {
		t.Errorf("after revoke: status %d, body %q; want 503 hermes_no_credential "+
			"naming openai", r.status, r.body)
	}
	w.wantNothing(t, fakeapi.OpenAI, mark)
	w.waitAudit(t, map[string]any{"decision": "no_credential", "provider": "openai",
		"sandbox": w.sandbox})

	w.setKey(t, fakeapi.OpenAI)
	poll(t, "injection to come back after secrets set", func() bool {
		return w.curl(t, w.hermesCA, args...).status == 200
	})
	mark = w.mark(fakeapi.OpenAI)
	if r := w.curl(t, w.hermesCA, args...); r.status != 200 {
		t.Fatalf("after secrets set: exit %d, status %d", r.exit, r.status)
	}
	w.wantInjected(t, fakeapi.OpenAI, mark)
}

// testRestart: SIGTERM stops the daemon with status 0; while it is down the
// sandbox's :443 fails closed and never reaches a provider; serve again takes
// the attachment back and interception resumes.
func testRestart(t *testing.T, w *world) {
	w.stop(t)
	mark := w.mark(fakeapi.OpenAI)
	args := chatArgs("api.openai.com", "gpt-4o-mini")
	if r := w.curl(t, w.hermesCA, args...); r.exit == 0 {
		t.Errorf("with the daemon down: status %d, want the connection to fail", r.status)
	}
	if r := w.curl(t, w.env.UpstreamCAFile(), args...); r.exit == 0 {
		t.Errorf("with the daemon down, trusting the provider's CA: status %d, want the "+
			"connection to fail", r.status)
	}
	w.wantNothing(t, fakeapi.OpenAI, mark)

	w.start(t)
	if got := attached(w.status(t)); !slices.Equal(got, []string{w.sandbox}) {
		t.Fatalf("after restart attached %q, want [%s]", got, w.sandbox)
	}
	mark = w.mark(fakeapi.OpenAI)
	if r := w.curl(t, w.hermesCA, args...); r.exit != 0 || r.status != 200 {
		t.Fatalf("after restart: exit %d (%s), status %d", r.exit, r.stderr, r.status)
	}
	w.wantInjected(t, fakeapi.OpenAI, mark)
}

// testDetach: after detach the sandbox talks to the provider directly again:
// its own dummy key arrives (401), the hermes CA no longer fits, UDP passes.
func testDetach(t *testing.T, w *world) {
	w.mustCLI(t, "", "detached "+w.sandbox, "detach", w.sandbox)
	w.mustCLI(t, "", w.sandbox+" was not attached", "detach", w.sandbox)
	if got := attached(w.status(t)); len(got) != 0 {
		t.Errorf("after detach attached %q, want none", got)
	}

	mark := w.mark(fakeapi.OpenAI)
	r := w.curl(t, w.env.UpstreamCAFile(), chatArgs("api.openai.com", "gpt-4o-mini",
		"-H", "Authorization: Bearer sk-dummy")...)
	if r.exit != 0 || r.status != 401 {
		t.Fatalf("direct after detach: exit %d (%s), status %d; want 401 from the provider",
			r.exit, r.stderr, r.status)
	}
	reqs := w.since(fakeapi.OpenAI, mark)
	want := []fakeapi.Credential{{Where: "header", Name: "authorization",
		Value: "Bearer sk-dummy"}}
	if len(reqs) != 1 || !slices.Equal(reqs[0].Credentials(), want) {
		t.Errorf("direct after detach the provider saw %+v, want one request with only "+
			"the client's dummy key", reqs)
	}
	if r := w.curl(t, w.hermesCA, chatArgs("api.openai.com", "gpt-4o-mini")...); r.exit != 60 {
		t.Errorf("after detach with only the hermes CA: exit %d, want 60 (the provider's "+
			"own certificate)", r.exit)
	}
	if got := w.udp(t, "198.18.0.10"); got != "answer: echo: ping" {
		t.Errorf("UDP after detach = %q, want the echo", got)
	}
}

// keyedHosts maps each keyed provider to its fake site's name.
func keyedHosts() map[string]string {
	m := map[string]string{}
	for _, p := range fakeapi.KeyedProviders {
		s, _ := testenv.SiteFor(p)
		m[string(p)] = s.Host
	}
	return m
}

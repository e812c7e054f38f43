package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hermes-netd/hermes-netd/internal/ratelimit"
)

// slow is a rate so low that no token comes back while a test runs: one an
// hour. A refused request then waits just under an hour.
const slow = 1.0 / 3600

func withLimits(t *testing.T, cfg ratelimit.Config) envOption {
	t.Helper()
	l, err := ratelimit.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return func(o *Options) { o.Policy.Limits = l }
}

// serveSandbox serves one more listener on e's proxy, as the sandbox named
// name, and returns a client whose connections all reach it.
func (e *env) serveSandbox(t *testing.T, name string) *http.Client {
	t.Helper()
	return e.serveSandboxID(t, name, "")
}

// serveSandboxID is serveSandbox with a Sandbox.ID.
func (e *env) serveSandboxID(t *testing.T, name, id string) *http.Client {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() {
		served <- e.srv.Serve(ln, Sandbox{Name: name, ID: id, Origin: func(net.Conn) (Origin, error) {
			e.mu.Lock()
			defer e.mu.Unlock()
			return Origin{Dst: e.dst, PID: 4343, UID: 1001}, nil
		}})
	}()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", ln.Addr().String())
		},
		TLSClientConfig:   &tls.Config{RootCAs: e.clientCA},
		ForceAttemptHTTP2: true,
	}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		ln.Close()
		if err := <-served; err != nil && !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve of %s: %v", name, err)
		}
	})
	return &http.Client{Transport: tr}
}

// answer is what a client got for one request.
type answer struct {
	Status     int
	Type       string // JSON error type, "" on success
	RetryAfter string
}

func get(t *testing.T, c *http.Client, url string) (answer, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	a := answer{Status: resp.StatusCode, RetryAfter: resp.Header.Get("Retry-After")}
	if resp.StatusCode == http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return a, ""
	}
	typ, msg := apiError(t, resp.Body)
	a.Type = typ
	return a, msg
}

// checkRetryAfter checks that a refusal under the slow rate asks for just
// under an hour, in whole seconds.
func checkRetryAfter(t *testing.T, a answer) {
	t.Helper()
	n, err := strconv.Atoi(a.RetryAfter)
	if err != nil || n < 3590 || n > 3600 {
		t.Errorf("Retry-After %q, want whole seconds just under an hour (<= 3600)",
			a.RetryAfter)
	}
}

var (
	ok200   = answer{Status: 200}
	limited = answer{Status: 429, Type: "hermes_rate_limited"}
)

// ignoreRetry leaves Retry-After to checkRetryAfter.
func ignoreRetry(as []answer) []answer {
	out := make([]answer, len(as))
	for i, a := range as {
		a.RetryAfter = ""
		out[i] = a
	}
	return out
}

func TestProviderRateLimit(t *testing.T) {
	tca := newTestCA(t)
	up := newUpstream(t, tca, nil, "api.openai.com", "api.anthropic.com")
	e := newEnv(t, tca.pool, withLimits(t, ratelimit.Config{
		Providers: map[string]ratelimit.Limit{"openai": {RPS: slow, Burst: 2}}}))
	e.setDst(up.addr(t))
	other := e.serveSandbox(t, "sb-other")

	c := e.client(true)
	var got []answer
	var msgs []string
	for _, cl := range []*http.Client{c, c, c, other} {
		a, msg := get(t, cl, "https://api.openai.com/v1/models")
		got, msgs = append(got, a), append(msgs, msg)
	}
	// The provider's limit is shared: the other sandbox is refused too. A
	// provider without a limit is not.
	a, _ := get(t, other, "https://api.anthropic.com/v1/models")
	got = append(got, a)

	want := []answer{ok200, ok200, limited, limited, ok200}
	if diff := cmp.Diff(want, ignoreRetry(got)); diff != "" {
		t.Fatalf("answers (-want +got):\n%s", diff)
	}
	checkRetryAfter(t, got[2])
	checkRetryAfter(t, got[3])
	for _, w := range []string{`provider "openai"`, "provider rate limit of openai",
		"0.0002777777777777778 requests/s, burst 2"} {
		if !strings.Contains(msgs[2], w) {
			t.Errorf("429 message %q does not contain %q", msgs[2], w)
		}
	}
	if n := up.count(); n != 3 {
		t.Errorf("upstream saw %d requests, want 3 (2 openai, 1 anthropic)", n)
	}

	recs := e.waitRecords(t, msgRequest, 5)
	var decisions []string
	for _, r := range recs {
		decisions = append(decisions, r[KeyDecision].(string))
	}
	wantDec := []string{DecisionIntercept, DecisionIntercept, DecisionRateLimited,
		DecisionRateLimited, DecisionIntercept}
	if diff := cmp.Diff(wantDec, decisions); diff != "" {
		t.Errorf("record decisions (-want +got):\n%s", diff)
	}
	r := recs[2]
	if r[KeyStatus] != float64(429) || r[KeyProvider] != "openai" ||
		!strings.HasPrefix(r[KeyReason].(string), "provider limit of openai") {
		t.Errorf("rate-limited record = %v; want status 429, provider openai, "+
			"reason naming the provider limit", r)
	}
}

func TestSandboxRateLimitIsPerSandbox(t *testing.T) {
	tca := newTestCA(t)
	up := newUpstream(t, tca, nil, "api.openai.com", "api.anthropic.com")
	e := newEnv(t, tca.pool, withLimits(t, ratelimit.Config{
		Sandbox: &ratelimit.Limit{RPS: slow, Burst: 1}}))
	e.setDst(up.addr(t))
	a, b := e.client(false), e.serveSandbox(t, "sb-b")

	var got []answer
	var msgs []string
	for _, step := range []struct {
		c   *http.Client
		url string
	}{
		{a, "https://api.openai.com/v1/models"},
		// Across providers: sandbox a is out of tokens for anthropic too.
		{a, "https://api.anthropic.com/v1/models"},
		// Sandbox a exhausted does not touch b's bucket.
		{b, "https://api.openai.com/v1/models"},
		{b, "https://api.openai.com/v1/models"},
	} {
		ans, msg := get(t, step.c, step.url)
		got, msgs = append(got, ans), append(msgs, msg)
	}
	want := []answer{ok200, limited, ok200, limited}
	if diff := cmp.Diff(want, ignoreRetry(got)); diff != "" {
		t.Fatalf("answers (-want +got):\n%s", diff)
	}
	checkRetryAfter(t, got[1])
	if w := `provider "anthropic" not forwarded: over the sandbox rate limit`; !strings.Contains(msgs[1], w) {
		t.Errorf("429 message %q does not contain %q", msgs[1], w)
	}
	if strings.Contains(msgs[1], "sb-test") {
		t.Errorf("429 message %q names the host's sandbox", msgs[1])
	}
	if n := up.count(); n != 2 {
		t.Errorf("upstream saw %d requests, want 2", n)
	}

	recs := e.waitRecords(t, msgRequest, 4)
	var sbs []string
	for _, r := range recs {
		if r[KeyDecision] == DecisionRateLimited {
			sbs = append(sbs, r[KeySandbox].(string)+": "+r[KeyReason].(string))
		}
	}
	wantRecs := []string{
		"sb-test: sandbox limit of sb-test (0.0002777777777777778 requests/s, burst 1) " +
			"reached; retry after " + got[1].RetryAfter + "s",
		"sb-b: sandbox limit of sb-b (0.0002777777777777778 requests/s, burst 1) " +
			"reached; retry after " + got[3].RetryAfter + "s",
	}
	if diff := cmp.Diff(wantRecs, sbs); diff != "" {
		t.Errorf("rate-limited records (-want +got):\n%s", diff)
	}
}

func TestNamedSandboxLimitOverridesDefault(t *testing.T) {
	tca := newTestCA(t)
	up := newUpstream(t, tca, nil, "api.openai.com")
	e := newEnv(t, tca.pool, withLimits(t, ratelimit.Config{
		Sandbox:   &ratelimit.Limit{RPS: slow, Burst: 1},
		Sandboxes: map[string]ratelimit.Limit{"sb-test": {RPS: slow, Burst: 3}},
	}))
	e.setDst(up.addr(t))
	named, other := e.client(true), e.serveSandbox(t, "sb-default")

	var got []answer
	for _, c := range []*http.Client{named, named, named, named, other, other} {
		a, _ := get(t, c, "https://api.openai.com/v1/models")
		got = append(got, a)
	}
	want := []answer{ok200, ok200, ok200, limited, ok200, limited}
	if diff := cmp.Diff(want, ignoreRetry(got)); diff != "" {
		t.Errorf("answers (-want +got):\n%s", diff)
	}
	if n := up.count(); n != 4 {
		t.Errorf("upstream saw %d requests, want 4", n)
	}
}

// Limits are read per request: a reload reaches a connection already open.
func TestSetPolicyLimitsApplyToOpenConnections(t *testing.T) {
	tca := newTestCA(t)
	up := newUpstream(t, tca, nil, "api.openai.com")
	e := newEnv(t, tca.pool, withLimits(t, ratelimit.Config{
		Providers: map[string]ratelimit.Limit{"openai": {RPS: slow, Burst: 1}}}))
	e.setDst(up.addr(t))
	c := e.client(false)

	var got []answer
	var reused []bool
	do := func() {
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { reused = append(reused, i.Reused) },
		})
		req, _ := http.NewRequestWithContext(ctx, "GET", "https://api.openai.com/v1/models", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		got = append(got, answer{Status: resp.StatusCode})
	}
	do()
	do()
	pol := *e.srv.policy.Load()
	pol.Limits = nil
	if err := e.srv.SetPolicy(&pol); err != nil {
		t.Fatal(err)
	}
	do()

	if diff := cmp.Diff([]answer{ok200, {Status: 429}, ok200}, got); diff != "" {
		t.Errorf("answers (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]bool{false, true, true}, reused); diff != "" {
		t.Errorf("client connection reused (-want +got):\n%s", diff)
	}
	if n := up.count(); n != 2 {
		t.Errorf("upstream saw %d requests, want 2", n)
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for _, tt := range []struct {
		in   float64 // seconds
		want int
	}{{0, 1}, {0.001, 1}, {1, 1}, {1.2, 2}, {59.9, 60}, {3600, 3600}} {
		d := time.Duration(tt.in * float64(time.Second))
		if got := retryAfterSeconds(d); got != tt.want {
			t.Errorf("retryAfterSeconds(%vs) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

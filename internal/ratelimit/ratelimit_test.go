package ratelimit

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func mustNew(t *testing.T, cfg Config) *Limiter {
	t.Helper()
	l, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return l
}

// step is one request and what the limiter must say to it.
type step struct {
	at       time.Duration
	provider string
	sandbox  string
	key      string // the sandbox's unique key; "" means sandbox
	ok       bool
	why      Refusal // when !ok
}

func run(t *testing.T, l *Limiter, steps []step) {
	t.Helper()
	for i, s := range steps {
		why, ok := l.AllowAt(at(s.at), s.provider, s.sandbox, s.key)
		if ok != s.ok {
			t.Fatalf("step %d (%s %s at %v): allowed = %v, want %v (refusal %+v)",
				i, s.provider, s.sandbox, s.at, ok, s.ok, why)
		}
		if diff := cmp.Diff(s.why, why); diff != "" {
			t.Fatalf("step %d (%s %s at %v): refusal (-want +got):\n%s",
				i, s.provider, s.sandbox, s.at, diff)
		}
	}
}

func TestProviderLimitSharedBySandboxes(t *testing.T) {
	lim := Limit{RPS: 1, Burst: 2}
	l := mustNew(t, Config{Providers: map[string]Limit{"openai": lim}})
	run(t, l, []step{
		{at: 0, provider: "openai", sandbox: "a", ok: true},
		{at: 0, provider: "openai", sandbox: "b", ok: true},
		{at: 0, provider: "openai", sandbox: "c",
			why: Refusal{Scope: ScopeProvider, Name: "openai", Limit: lim, RetryAfter: time.Second}},
		// Other providers have no limit.
		{at: 0, provider: "anthropic", sandbox: "a", ok: true},
		{at: 0, provider: "anthropic", sandbox: "a", ok: true},
		{at: 0, provider: "anthropic", sandbox: "a", ok: true},
		// Half a token refilled: still half a second to go.
		{at: 500 * time.Millisecond, provider: "openai", sandbox: "a",
			why: Refusal{Scope: ScopeProvider, Name: "openai", Limit: lim,
				RetryAfter: 500 * time.Millisecond}},
		{at: time.Second, provider: "openai", sandbox: "a", ok: true},
		{at: time.Second, provider: "openai", sandbox: "a",
			why: Refusal{Scope: ScopeProvider, Name: "openai", Limit: lim, RetryAfter: time.Second}},
	})
}

func TestSandboxLimitsAreSeparate(t *testing.T) {
	def := Limit{RPS: 2, Burst: 1}
	l := mustNew(t, Config{Sandbox: &def})
	run(t, l, []step{
		{at: 0, provider: "openai", sandbox: "a", ok: true},
		// Across providers: the sandbox's bucket is empty.
		{at: 0, provider: "anthropic", sandbox: "a",
			why: Refusal{Scope: ScopeSandbox, Name: "a", Limit: def,
				RetryAfter: 500 * time.Millisecond}},
		// Sandbox b has its own bucket.
		{at: 0, provider: "openai", sandbox: "b", ok: true},
		{at: 500 * time.Millisecond, provider: "anthropic", sandbox: "a", ok: true},
	})
}

func TestNamedSandboxOverridesDefault(t *testing.T) {
	def := Limit{RPS: 1, Burst: 1}
	ci := Limit{RPS: 0.5, Burst: 3}
	l := mustNew(t, Config{Sandbox: &def, Sandboxes: map[string]Limit{"ci": ci}})
	run(t, l, []step{
		{at: 0, provider: "openai", sandbox: "ci", ok: true},
		{at: 0, provider: "openai", sandbox: "ci", ok: true},
		{at: 0, provider: "openai", sandbox: "ci", ok: true},
		{at: 0, provider: "openai", sandbox: "ci",
			why: Refusal{Scope: ScopeSandbox, Name: "ci", Limit: ci, RetryAfter: 2 * time.Second}},
		{at: 0, provider: "openai", sandbox: "dev", ok: true},
		{at: 0, provider: "openai", sandbox: "dev",
			why: Refusal{Scope: ScopeSandbox, Name: "dev", Limit: def, RetryAfter: time.Second}},
	})
	if got := l.SandboxBuckets(); got != 1 {
		t.Errorf("SandboxBuckets = %d, want 1 (dev; ci is named, not cached)", got)
	}
}

func TestNamedSandboxWithoutDefault(t *testing.T) {
	ci := Limit{RPS: 1, Burst: 1}
	l := mustNew(t, Config{Sandboxes: map[string]Limit{"ci": ci}})
	run(t, l, []step{
		{at: 0, provider: "openai", sandbox: "ci", ok: true},
		{at: 0, provider: "openai", sandbox: "ci",
			why: Refusal{Scope: ScopeSandbox, Name: "ci", Limit: ci, RetryAfter: time.Second}},
		{at: 0, provider: "openai", sandbox: "other", ok: true},
		{at: 0, provider: "openai", sandbox: "other", ok: true},
	})
	if got := l.SandboxBuckets(); got != 0 {
		t.Errorf("SandboxBuckets = %d, want 0 without a default sandbox limit", got)
	}
}

// A refusal by one bucket must not spend the other's token.
func TestRefusalSpendsNoToken(t *testing.T) {
	prov := Limit{RPS: 1, Burst: 2}
	sb := Limit{RPS: 1, Burst: 1}
	l := mustNew(t, Config{Providers: map[string]Limit{"openai": prov},
		Sandboxes: map[string]Limit{"a": sb}})
	run(t, l, []step{
		{at: 0, provider: "openai", sandbox: "a", ok: true},
		// a's bucket is empty; the provider's still holds one token...
		{at: 0, provider: "openai", sandbox: "a",
			why: Refusal{Scope: ScopeSandbox, Name: "a", Limit: sb, RetryAfter: time.Second}},
		{at: 0, provider: "openai", sandbox: "a",
			why: Refusal{Scope: ScopeSandbox, Name: "a", Limit: sb, RetryAfter: time.Second}},
		// ...which the refusals above did not take: b gets it.
		{at: 0, provider: "openai", sandbox: "b", ok: true},
		// Now the provider's bucket is empty too (b has no sandbox limit).
		{at: 0, provider: "openai", sandbox: "b",
			why: Refusal{Scope: ScopeProvider, Name: "openai", Limit: prov, RetryAfter: time.Second}},
		// After a second both have a token again: a passes once.
		{at: time.Second, provider: "openai", sandbox: "a", ok: true},
		// The provider refilled one token and a took it; a's bucket is empty.
		{at: time.Second, provider: "openai", sandbox: "b",
			why: Refusal{Scope: ScopeProvider, Name: "openai", Limit: prov, RetryAfter: time.Second}},
	})
}

// When both buckets are empty the retry time is the longer wait, and the
// refusal names the bucket that needs it.
func TestRetryAfterIsTheLongestWait(t *testing.T) {
	prov := Limit{RPS: 1, Burst: 1}
	sb := Limit{RPS: 0.25, Burst: 1}
	l := mustNew(t, Config{Providers: map[string]Limit{"openai": prov}, Sandbox: &sb})
	run(t, l, []step{
		{at: 0, provider: "openai", sandbox: "a", ok: true},
		{at: 0, provider: "openai", sandbox: "a",
			why: Refusal{Scope: ScopeSandbox, Name: "a", Limit: sb, RetryAfter: 4 * time.Second}},
		// The provider's bucket refills first; the sandbox still waits.
		{at: 3 * time.Second, provider: "openai", sandbox: "a",
			why: Refusal{Scope: ScopeSandbox, Name: "a", Limit: sb, RetryAfter: time.Second}},
		{at: 4 * time.Second, provider: "openai", sandbox: "a", ok: true},
	})
}

// Two namespaces attached in turn under one name (a netns name made again) have
// a bucket each, under the default limit and under a named limit alike, while
// the name still picks the limit and is what a refusal reports.
func TestSandboxesSharingANameHaveTheirOwnBuckets(t *testing.T) {
	def := Limit{RPS: 1, Burst: 1}
	ci := Limit{RPS: 0.5, Burst: 2}
	l := mustNew(t, Config{Sandbox: &def, Sandboxes: map[string]Limit{"ci": ci}})
	run(t, l, []step{
		// Default limit: cookie 11 spends its burst; cookie 12 of the same
		// name still has its own.
		{provider: "openai", sandbox: "dev", key: "11", ok: true},
		{provider: "openai", sandbox: "dev", key: "11",
			why: Refusal{Scope: ScopeSandbox, Name: "dev", Limit: def, RetryAfter: time.Second}},
		{provider: "openai", sandbox: "dev", key: "12", ok: true},
		{provider: "openai", sandbox: "dev", key: "12",
			why: Refusal{Scope: ScopeSandbox, Name: "dev", Limit: def, RetryAfter: time.Second}},
		// Named limit: each namespace under "ci" gets ci's burst of 2.
		{provider: "openai", sandbox: "ci", key: "21", ok: true},
		{provider: "openai", sandbox: "ci", key: "21", ok: true},
		{provider: "openai", sandbox: "ci", key: "21",
			why: Refusal{Scope: ScopeSandbox, Name: "ci", Limit: ci, RetryAfter: 2 * time.Second}},
		{provider: "openai", sandbox: "ci", key: "22", ok: true},
		{provider: "openai", sandbox: "ci", key: "22", ok: true},
		{provider: "openai", sandbox: "ci", key: "22",
			why: Refusal{Scope: ScopeSandbox, Name: "ci", Limit: ci, RetryAfter: 2 * time.Second}},
		// An empty key is the name: a bucket apart from the keyed ones.
		{provider: "openai", sandbox: "ci", ok: true},
		{provider: "openai", sandbox: "ci", key: "ci", ok: true},
		{provider: "openai", sandbox: "ci",
			why: Refusal{Scope: ScopeSandbox, Name: "ci", Limit: ci, RetryAfter: 2 * time.Second}},
	})
	if got := l.SandboxBuckets(); got != 2 {
		t.Errorf("SandboxBuckets = %d, want 2 (dev under two keys; named ones apart)", got)
	}
}

// Namespaces coming and going under one configured name cannot grow the named
// buckets without bound either.
func TestNamedSandboxBucketsAreBounded(t *testing.T) {
	ci := Limit{RPS: 1, Burst: 1}
	l := mustNew(t, Config{Sandboxes: map[string]Limit{"ci": ci}, MaxSandboxes: 8})
	for i := range 100 {
		if _, ok := l.AllowAt(t0, "openai", "ci", fmt.Sprint(i)); !ok {
			t.Fatalf("first request of ci namespace %d refused", i)
		}
	}
	if got := l.named.Len(); got != 8 {
		t.Errorf("named buckets after 100 namespaces = %d, want the bound 8", got)
	}
	if _, ok := l.AllowAt(t0, "openai", "ci", "99"); ok {
		t.Error("ci namespace 99 passed a second time at once; its bucket was lost")
	}
}

func TestSandboxBucketsAreBounded(t *testing.T) {
	def := Limit{RPS: 1, Burst: 1}
	l := mustNew(t, Config{Sandbox: &def, MaxSandboxes: 8})
	for i := range 100 {
		if _, ok := l.AllowAt(t0, "openai", fmt.Sprintf("sb-%d", i), ""); !ok {
			t.Fatalf("first request of sandbox sb-%d refused", i)
		}
	}
	if got := l.SandboxBuckets(); got != 8 {
		t.Errorf("SandboxBuckets after 100 sandboxes = %d, want the bound 8", got)
	}
	// The most recent sandbox kept its (empty) bucket.
	if _, ok := l.AllowAt(t0, "openai", "sb-99", ""); ok {
		t.Error("sb-99 passed a second time at once; its bucket was lost")
	}
}

func TestConcurrentFirstRequestsShareABucket(t *testing.T) {
	def := Limit{RPS: 1, Burst: 5}
	l := mustNew(t, Config{Sandbox: &def})
	var wg sync.WaitGroup
	var mu sync.Mutex
	passed := 0
	for range 50 {
		wg.Go(func() {
			if _, ok := l.AllowAt(t0, "openai", "new", ""); ok {
				mu.Lock()
				passed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if passed != 5 {
		t.Errorf("%d of 50 simultaneous requests passed, want the burst of 5", passed)
	}
}

func TestNilLimiterAllows(t *testing.T) {
	var l *Limiter
	if why, ok := l.Allow("openai", "a", "1"); !ok {
		t.Errorf("nil Limiter refused: %+v", why)
	}
	if got := l.SandboxBuckets(); got != 0 {
		t.Errorf("nil Limiter SandboxBuckets = %d", got)
	}
}

func TestNoLimitsAllow(t *testing.T) {
	l := mustNew(t, Config{})
	for i := range 1000 {
		if why, ok := l.AllowAt(t0, "openai", "a", ""); !ok {
			t.Fatalf("request %d refused without limits: %+v", i, why)
		}
	}
}

func TestNewRejectsBadLimits(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"zero rps", Config{Providers: map[string]Limit{"openai": {RPS: 0, Burst: 1}}},
			`rate limit of provider "openai": rps 0 is not a positive number`},
		{"zero burst", Config{Sandbox: &Limit{RPS: 1}},
			"default sandbox rate limit: burst 0 is below 1"},
		{"negative rps", Config{Sandboxes: map[string]Limit{"ci": {RPS: -1, Burst: 1}}},
			`rate limit of sandbox "ci": rps -1`},
		{"negative bound", Config{MaxSandboxes: -1}, "MaxSandboxes -1 is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestLimitString(t *testing.T) {
	if got, want := (Limit{RPS: 0.5, Burst: 2}).String(), "0.5 requests/s, burst 2"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
}

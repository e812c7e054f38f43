//go:build linux

package daemon

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hermes-netd/hermes-netd/internal/audit"
	"github.com/hermes-netd/hermes-netd/internal/config"
	"github.com/hermes-netd/hermes-netd/internal/ratelimit"
	"github.com/hermes-netd/hermes-netd/proxy"
)

func TestPolicyAppliesRateLimits(t *testing.T) {
	cfg, err := config.Parse([]byte("rate_limits:\n"+
		"  providers:\n    openai: {rps: 1, burst: 2}\n"+
		"  sandbox: {rps: 1, burst: 1}\n"+
		"  sandboxes:\n    ci: {rps: 0.5, burst: 3}\n"), "limits.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := policyOf(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p.Limits == nil {
		t.Fatal("policy has no Limits although the config sets rate_limits")
	}

	now := time.Now()
	type call struct{ provider, sandbox string }
	var got []string
	for _, c := range []call{
		{"openai", "ci"}, {"openai", "ci"}, {"openai", "dev"}, // provider burst 2
		{"anthropic", "ci"}, {"anthropic", "ci"}, // ci's burst 3 (default is 1)
		{"anthropic", "dev"}, {"anthropic", "dev"}, // dev's default burst 1
	} {
		why, ok := p.Limits.AllowAt(now, c.provider, c.sandbox, "")
		if ok {
			got = append(got, "ok")
			continue
		}
		got = append(got, string(why.Scope)+" "+why.Name)
	}
	want := []string{"ok", "ok", "provider openai", "ok", "sandbox ci", "ok", "sandbox dev"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("limits of the policy (-want +got):\n%s", diff)
	}

	// A reload builds a new limiter, with full buckets.
	p2, err := policyOf(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p2.Limits == p.Limits {
		t.Error("policyOf reused the limiter; a reload must bring a new one")
	}
	if _, ok := p2.Limits.AllowAt(now, "anthropic", "dev", ""); !ok {
		t.Error("new limiter refused dev's first request")
	}
}

func TestPolicyWithoutRateLimits(t *testing.T) {
	p, err := policyOf(config.Default())
	if err != nil {
		t.Fatal(err)
	}
	if p.Limits != nil {
		t.Error("policy has Limits without rate_limits in the config")
	}
}

func TestLimiterOfConverts(t *testing.T) {
	l, err := limiterOf(config.RateLimits{Sandbox: &config.Limit{RPS: 2, Burst: 1}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	l.AllowAt(now, "openai", "a", "")
	why, ok := l.AllowAt(now, "openai", "a", "")
	want := ratelimit.Refusal{Scope: ratelimit.ScopeSandbox, Name: "a",
		Limit: ratelimit.Limit{RPS: 2, Burst: 1}, RetryAfter: 500 * time.Millisecond}
	if ok || !cmp.Equal(want, why) {
		t.Errorf("second request: ok=%v refusal %+v; want %+v", ok, why, want)
	}

	// Config validation normally catches this; the conversion must not hide it.
	_, err = limiterOf(config.RateLimits{Providers: map[string]config.Limit{"x": {RPS: 1}}})
	if err == nil || !strings.Contains(err.Error(), `provider "x"`) {
		t.Errorf("limiterOf(burst 0) error = %v, want one naming provider x", err)
	}
}

// rate_limited records are refusals in status and metrics.
func TestCountersCountRateLimited(t *testing.T) {
	c := newCounters()
	log := slog.New(audit.Split(audit.NewHandler(io.Discard), slog.DiscardHandler, c))
	log.Warn("Request", proxy.KeySandbox, "sb1", proxy.KeyProvider, "openai",
		proxy.KeyMethod, "GET", proxy.KeyDecision, proxy.DecisionRateLimited)
	log.Info("Request", proxy.KeySandbox, "sb1", proxy.KeyProvider, "openai",
		proxy.KeyMethod, "GET", proxy.KeyDecision, proxy.DecisionIntercept)

	got := c.Snapshot()
	want := audit.Snapshot{
		Requests:  2,
		Refused:   map[string]uint64{proxy.DecisionRateLimited: 1},
		Injected:  map[string]uint64{"openai": 1},
		Decisions: map[string]uint64{proxy.DecisionRateLimited: 1, proxy.DecisionIntercept: 1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("counters (-want +got):\n%s", diff)
	}
}

// Two namespaces attached in turn under one spec show their own request
// counts in status: the proxy's records carry the cookie as sandbox_id.
func TestStatusCountsRequestsPerNamespace(t *testing.T) {
	if audit.KeySandbox != proxy.KeySandbox || audit.KeySandboxID != proxy.KeySandboxID {
		t.Fatalf("audit keys %q/%q differ from the proxy's %q/%q", audit.KeySandbox,
			audit.KeySandboxID, proxy.KeySandbox, proxy.KeySandboxID)
	}
	c := newCounters()
	log := slog.New(audit.Split(audit.NewHandler(io.Discard), slog.DiscardHandler, c))
	old := &attachment{rec: Record{Spec: "dev", Cookie: 4097}}
	cur := &attachment{rec: Record{Spec: "dev", Cookie: 4098}}
	for i, a := range []*attachment{old, old, cur, old} {
		log.Info("Request", proxy.KeySandbox, a.rec.Spec,
			proxy.KeySandboxID, sandboxID(a.rec.Cookie), proxy.KeyProvider, "openai",
			proxy.KeyMethod, "GET", proxy.KeyDecision, proxy.DecisionIntercept, "n", i)
	}
	got := []uint64{old.status(c).Requests, cur.status(c).Requests}
	if diff := cmp.Diff([]uint64{3, 1}, got); diff != "" {
		t.Errorf("requests of cookies 4097, 4098 under spec dev (-want +got):\n%s", diff)
	}
}

func TestRunOptionsFromConfig(t *testing.T) {
	cfg := config.Default()
	cfg.ListenPort = 16000
	cfg.Timeouts.Shutdown = 45 * time.Second
	cfg.Ports = []uint16{443, 8443}

	tests := []struct {
		name    string
		in      RunOptions
		want    RunOptions
		wantErr string
	}{
		{"config applies", RunOptions{},
			RunOptions{Port: 16000, ShutdownTimeout: 45 * time.Second}, ""},
		{"flags override", RunOptions{Port: 17000, ShutdownTimeout: time.Second},
			RunOptions{Port: 17000, ShutdownTimeout: time.Second}, ""},
		{"flag port intercepted", RunOptions{Port: 8443}, RunOptions{},
			"listen port 8443 is also an intercepted port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.in
			err := o.fromConfig(cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, o); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
		})
	}
}

// The daemon's own default and the config's must agree.
func TestDefaultPortMatchesConfig(t *testing.T) {
	if DefaultPort != config.DefaultListenPort {
		t.Errorf("daemon.DefaultPort %d != config.DefaultListenPort %d", DefaultPort,
			config.DefaultListenPort)
	}
}

//go:build linux

package daemon

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hermes-netd/hermes-netd/internal/config"
	"github.com/hermes-netd/hermes-netd/internal/providers"
	"github.com/hermes-netd/hermes-netd/internal/secrets"
)

func TestProviderStatus(t *testing.T) {
	ps := []providers.Provider{
		{Name: "openai", Domains: []string{"api.openai.com"}},
		{Name: "nim", Domains: []string{"integrate.api.nvidia.com"}, Key: "nvidia"},
		{Name: "anthropic", Domains: []string{"api.anthropic.com"}},
	}
	keys := []secrets.Entry{
		{Name: "anthropic", Err: errors.New("anthropic.key is mode 0644; chmod 600 it")},
		{Name: "nvidia", Fingerprint: "sha256:aaaaaaaaaaaa"},
		{Name: "unused", Fingerprint: "sha256:bbbbbbbbbbbb"},
	}
	want := []ProviderStatus{
		{Name: "openai", Domains: []string{"api.openai.com"}, Key: "openai"},
		{Name: "nim", Domains: []string{"integrate.api.nvidia.com"}, Key: "nvidia",
			Loaded: true, Fingerprint: "sha256:aaaaaaaaaaaa"},
		{Name: "anthropic", Domains: []string{"api.anthropic.com"}, Key: "anthropic",
			Problem: "anthropic.key is mode 0644; chmod 600 it"},
	}
	if diff := cmp.Diff(want, providerStatus(ps, keys)); diff != "" {
		t.Errorf("providerStatus (-want +got):\n%s", diff)
	}
}

func TestNeedsRestart(t *testing.T) {
	a := config.Default()
	b := config.Default()
	b.Passthrough = []string{"pypi.org"} // policy: applied by the reload
	b.Mode = "nft"
	b.Ports = []uint16{443, 8443}
	b.ListenPort = 16000
	b.RateLimits.Sandbox = &config.Limit{RPS: 1, Burst: 1} // policy: applied by the reload
	b.Audit.File = "/var/log/hermes/audit.log"
	b.StrictDNS = []netip.Prefix{netip.MustParsePrefix("192.0.2.53/32")}
	want := []string{"mode", "ports", "listen_port", "strict_dns", "audit.file"}
	if diff := cmp.Diff(want, needsRestart(a, b)); diff != "" {
		t.Errorf("needsRestart (-want +got):\n%s", diff)
	}
	if got := needsRestart(a, config.Default()); len(got) != 0 {
		t.Errorf("needsRestart(same) = %v, want none", got)
	}
}

// A setting that needs a restart is reported by every reload until the
// restart, not only by the first one after the change.
func TestReloadKeepsReportingRestart(t *testing.T) {
	start := config.Default()
	s := &service{cfg: start, started: start}
	changed := func() *config.Config {
		c := config.Default()
		c.Ports = []uint16{443, 8443}
		c.Strict = true
		return c
	}
	want := []string{"ports", "strict"}
	for i := range 2 {
		if diff := cmp.Diff(want, s.swap(changed())); diff != "" {
			t.Errorf("reload %d: needs restart (-want +got):\n%s", i+1, diff)
		}
	}
	if got := s.swap(config.Default()); len(got) != 0 {
		t.Errorf("reload back to the started config: needs restart %v, want none", got)
	}
	if s.config().Strict || len(s.config().Ports) != 1 {
		t.Errorf("current config = %+v, want the last one loaded", s.config())
	}
}

//go:build linux

package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hermes-netd/hermes-netd/internal/config"
	"github.com/hermes-netd/hermes-netd/internal/providers"
	"github.com/hermes-netd/hermes-netd/internal/secrets"
	"github.com/hermes-netd/hermes-netd/proxy"
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

// A reload rescans the secrets directory, so a key the watch missed (no watch
// runs here) is picked up by `hermes-netd reload`.
func TestReloadRescansSecrets(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: secrets must be root-owned")
	}
	dir := t.TempDir()
	keysDir := filepath.Join(dir, "secrets")
	if err := os.Mkdir(keysDir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "netd.yaml")
	if err := os.WriteFile(cfgPath, []byte("secrets_dir: "+keysDir+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	keys, err := secrets.Open(keysDir, logger)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	policy, err := policyOf(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.New(proxy.Options{Logger: logger, Policy: policy, Keys: keys.Get,
		Certs: func(string) (*tls.Certificate, error) { return nil, errors.New("unused") }})
	if err != nil {
		t.Fatal(err)
	}
	s := &service{path: cfgPath, parts: &parts{keys: keys, proxy: srv}, log: logger,
		cfg: cfg, started: cfg}

	if err := os.WriteFile(filepath.Join(keysDir, "openai.key"),
		[]byte("sk-reload-test-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Get("openai"); err == nil {
		t.Fatal("key visible before the reload: the test proves nothing")
	}
	if _, err := s.reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Get("openai"); err != nil {
		t.Errorf("after reload: %v, want the key loaded", err)
	}
}

//go:build linux

package daemon

import (
	"context"
	"log/slog"
	"slices"
	"sync"

	"github.com/hermes-netd/hermes-netd/internal/audit"
	"github.com/hermes-netd/hermes-netd/internal/config"
	"github.com/hermes-netd/hermes-netd/internal/providers"
	"github.com/hermes-netd/hermes-netd/internal/secrets"
)

// service holds what Run built, for status and reloads.
type service struct {
	path     string
	parts    *parts
	kern     *redirectKernel
	counters *audit.Counters
	log      *slog.Logger

	// started is the config the running pieces were built from; settings that
	// only apply at start are compared with it, not with the last reload, so
	// that a pending restart is reported by every reload until it happens.
	started *config.Config

	// reloading serialises reloads (SIGHUP and the admin API can race), so
	// the policy the proxy enforces and the config status reports agree.
	reloading sync.Mutex

	mu  sync.Mutex
	cfg *config.Config
}

func (s *service) config() *config.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

func (s *service) source() string {
	if src := s.config().Source; src != "" {
		return src
	}
	return "(defaults: no " + s.path + ")"
}

// fill completes a Status with the mode, providers and counters.
func (s *service) fill(st *Status) {
	st.Mode, st.ModeReason = s.kern.Mode(), s.kern.ModeReason()
	st.Config = s.source()
	st.Counters = s.counters.Snapshot()

	cat, err := s.config().Catalog()
	if err != nil { // validated at load; cannot fail for a loaded config
		s.log.Error("Building catalog for status", "error", err)
		return
	}
	st.Providers = providerStatus(cat.All(), s.parts.keys.List())
}

// providerStatus pairs each provider with its key's state; never the key.
func providerStatus(ps []providers.Provider, keys []secrets.Entry) []ProviderStatus {
	out := make([]ProviderStatus, 0, len(ps))
	for _, p := range ps {
		ps := ProviderStatus{Name: p.Name, Domains: slices.Clone(p.Domains), Key: p.KeyName()}
		i := slices.IndexFunc(keys, func(e secrets.Entry) bool { return e.Name == ps.Key })
		switch {
		case i < 0:
		case keys[i].Err != nil:
			ps.Problem = keys[i].Err.Error()
		default:
			ps.Loaded, ps.Fingerprint = true, keys[i].Fingerprint
		}
		out = append(out, ps)
	}
	return out
}

// reload reads the config again and swaps the proxy's policy, rate limits
// included (their buckets start full). What the running daemon cannot change
// (directories, socket, mode, ports, listen port, timeouts, audit file) is
// logged as needing a restart.
func (s *service) reload(ctx context.Context) (ReloadResult, error) {
	s.reloading.Lock()
	defer s.reloading.Unlock()

	cfg, err := config.Load(s.path)
	if err != nil {
		return ReloadResult{}, err
	}
	policy, err := policyOf(cfg)
	if err != nil {
		return ReloadResult{}, err
	}
	if err := s.parts.proxy.SetPolicy(policy); err != nil {
		return ReloadResult{}, err
	}
	// The watch sees most key changes by itself, but not all (a secrets
	// directory replaced as a whole loses its watch): a reload rescans.
	if err := s.parts.keys.Reload(); err != nil {
		s.log.Warn("Secrets reload refused; keeping the last good keys",
			"dir", s.parts.keys.Dir(), "error", err)
	}

	restart := s.swap(cfg)
	s.log.Info("Reloaded configuration", "config", s.source(),
		"providers", len(policy.Catalog.All()), "rate_limited", policy.Limits != nil,
		"needs_restart", restart)
	return ReloadResult{Config: s.source(), NeedsRestart: restart}, nil
}

// swap makes cfg the current config and names the settings in which it differs
// from the config the daemon was started with.
func (s *service) swap(cfg *config.Config) []string {
	s.mu.Lock()
	s.cfg = cfg
	s.mu.Unlock()
	return needsRestart(s.started, cfg)
}

// needsRestart names the settings that differ and only apply at start.
func needsRestart(a, b *config.Config) []string {
	var out []string
	check := func(name string, same bool) {
		if !same {
			out = append(out, name)
		}
	}
	check("state_dir", a.StateDir == b.StateDir)
	check("secrets_dir", a.SecretsDir == b.SecretsDir)
	check("socket", a.Socket == b.Socket)
	check("mode", a.Mode == b.Mode)
	check("ports", slices.Equal(a.Ports, b.Ports))
	check("listen_port", a.ListenPort == b.ListenPort)
	check("strict", a.Strict == b.Strict)
	check("strict_dns", slices.Equal(a.StrictDNS, b.StrictDNS))
	check("max_connections_per_sandbox",
		a.MaxConnectionsPerSandbox == b.MaxConnectionsPerSandbox)
	check("upstream_ca_files", slices.Equal(a.UpstreamCAFiles, b.UpstreamCAFiles))
	check("timeouts", a.Timeouts == b.Timeouts)
	check("audit.file", a.Audit.File == b.Audit.File)
	return out
}

//go:build linux

package daemon

import (
	"testing"

	"github.com/hermes-netd/hermes-netd/internal/config"
)

// identity_encoding reaches the proxy policy, which a reload rebuilds, and is
// not a setting that waits for a restart.
func TestPolicyCarriesIdentityEncoding(t *testing.T) {
	for _, on := range []bool{false, true} {
		cfg := config.Default()
		cfg.IdentityEncoding = on
		p, err := policyOf(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if p.IdentityEncoding != on {
			t.Errorf("identity_encoding %v gave Policy.IdentityEncoding %v", on, p.IdentityEncoding)
		}
		if got := needsRestart(config.Default(), cfg); len(got) != 0 {
			t.Errorf("identity_encoding %v: needs restart %v, want none (the reload applies it)",
				on, got)
		}
	}
}

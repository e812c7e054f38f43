package config

import (
	"crypto/x509"
	"fmt"
	"os"
	"sort"

	"github.com/hermes-netd/hermes-netd/internal/providers"
)

// defaultForm is the form of a provider added by config without one.
var defaultForm = providers.Form{
	Kind: providers.FormHeader, Header: "Authorization", Format: "Bearer {key}",
}

// Catalog merges c.Providers over the built-in providers and builds the
// catalog. Built-in providers keep their order; added ones follow by name.
// For a built-in provider each field set in config replaces the built-in
// value; Disabled drops it. An added provider needs domains; its key name
// defaults to its name and its form to "Authorization: Bearer {key}".
func (c *Config) Catalog() (*providers.Catalog, error) {
	var out []providers.Provider
	builtin := map[string]bool{}
	for _, p := range providers.Builtin() {
		builtin[p.Name] = true
		pc, ok := c.Providers[p.Name]
		if !ok {
			out = append(out, p)
			continue
		}
		if pc.Disabled {
			continue
		}
		out = append(out, merge(p, pc))
	}

	var added []string
	for name := range c.Providers {
		if !builtin[name] {
			added = append(added, name)
		}
	}
	sort.Strings(added)
	for _, name := range added {
		pc := c.Providers[name]
		if pc.Disabled {
			// Why: disabling a name that is not built in does nothing, which
			// is almost certainly a typo the operator wants to hear about.
			return nil, fmt.Errorf("provider %s is disabled but not built in "+
				"(built-in providers: %s)", name, builtinNames())
		}
		if len(pc.Domains) == 0 {
			return nil, fmt.Errorf("provider %s is not built in, so it needs domains "+
				"(built-in providers: %s)", name, builtinNames())
		}
		out = append(out, merge(providers.Provider{Name: name, Form: defaultForm}, pc))
	}
	return providers.NewCatalog(out)
}

func merge(p providers.Provider, pc ProviderConfig) providers.Provider {
	if pc.Domains != nil {
		p.Domains = append([]string(nil), pc.Domains...)
	}
	if pc.Key != "" {
		p.Key = pc.Key
	}
	if pc.StripQuery != nil {
		p.StripQuery = append([]string(nil), pc.StripQuery...)
	}
	if f := pc.Form; f != nil {
		if f.Kind != "" && providers.FormKind(f.Kind) != p.Form.Kind {
			p.Form = providers.Form{Kind: providers.FormKind(f.Kind)}
			if p.Form.Kind == providers.FormHeader {
				p.Form.Header = "Authorization"
			}
		}
		set(&p.Form.Header, f.Header)
		set(&p.Form.Format, f.Format)
		set(&p.Form.User, f.User)
		set(&p.Form.Param, f.Param)
	}
	return p
}

func set(dst *string, v string) {
	if v != "" {
		*dst = v
	}
}

func builtinNames() string {
	var s string
	for i, p := range providers.Builtin() {
		if i > 0 {
			s += ", "
		}
		s += p.Name
	}
	return s
}

// UpstreamRoots returns the system roots plus every certificate in
// UpstreamCAFiles, for verifying upstream TLS.
func (c *Config) UpstreamRoots() (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		return nil, fmt.Errorf("loading system roots: %w", err)
	}
	for _, name := range c.UpstreamCAFiles {
		data, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("reading upstream CA file: %w", err)
		}
		if !pool.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("upstream CA file %s holds no PEM certificate", name)
		}
	}
	return pool, nil
}

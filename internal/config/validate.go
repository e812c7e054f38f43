package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/hermes-netd/hermes-netd/internal/providers"
)

// validator turns a decoded file into a Config, collecting every problem
// with the field's path and line.
type validator struct {
	name string
	root *yaml.Node
	errs []error
	err  error
}

// fail records a problem at the field path (keys and list indexes).
func (v *validator) fail(path []string, format string, args ...any) {
	field := fieldName(path)
	msg := fmt.Sprintf(format, args...)
	if line := lineOf(v.root, path); line > 0 {
		v.errs = append(v.errs, fmt.Errorf("config %s:%d: %s: %s", v.name, line, field, msg))
	} else {
		v.errs = append(v.errs, fmt.Errorf("config %s: %s: %s", v.name, field, msg))
	}
	v.err = errors.Join(v.errs...)
}

// fieldName writes a path as "providers.nim.domains[0]".
func fieldName(path []string) string {
	var b strings.Builder
	for _, p := range path {
		if _, err := strconv.Atoi(p); err == nil {
			b.WriteString("[" + p + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}

// lineOf finds the line of the node at path, or of its deepest ancestor
// present in the document; 0 when the document is empty.
func lineOf(root *yaml.Node, path []string) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, p := range path {
		next := child(n, p)
		if next == nil {
			break
		}
		n, line = next, next.Line
	}
	return line
}

func child(n *yaml.Node, key string) *yaml.Node {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				return n.Content[i+1]
			}
		}
	case yaml.SequenceNode:
		if i, err := strconv.Atoi(key); err == nil && i >= 0 && i < len(n.Content) {
			return n.Content[i]
		}
	}
	return nil
}

func (v *validator) build(f *file) *Config {
	c := &Config{
		StateDir:        v.absPath([]string{"state_dir"}, f.StateDir, false),
		SecretsDir:      v.absPath([]string{"secrets_dir"}, f.SecretsDir, false),
		Socket:          v.absPath([]string{"socket"}, f.Socket, false),
		Mode:            v.oneOf([]string{"mode"}, f.Mode, "auto", "ebpf", "nft"),
		Strict:          f.Strict,
		Default:         v.oneOf([]string{"default"}, f.Default, "deny", "passthrough"),
		Providers:       f.Providers,
		UpstreamCAFiles: f.UpstreamCAFiles,
		RateLimits:      f.RateLimits,
		Audit:           Audit{File: v.absPath([]string{"audit", "file"}, f.Audit.File, true)},
	}
	c.Ports = v.ports(f.Ports)
	c.ListenPort = v.listenPort(f.ListenPort, c.Ports)
	c.AllowUpstream = v.prefixes("allow_upstream", f.AllowUpstream)
	c.StrictDNS = v.prefixes("strict_dns", f.StrictDNS)
	c.Timeouts = Timeouts{
		Handshake:  v.duration([]string{"timeouts", "handshake"}, f.Timeouts.Handshake),
		ReadHeader: v.duration([]string{"timeouts", "read_header"}, f.Timeouts.ReadHeader),
		Idle:       v.duration([]string{"timeouts", "idle"}, f.Timeouts.Idle),
		UpstreamIdle: v.duration([]string{"timeouts", "upstream_idle"},
			f.Timeouts.UpstreamIdle),
		Shutdown: v.duration([]string{"timeouts", "shutdown"}, f.Timeouts.Shutdown),
	}
	v.caFiles(c.UpstreamCAFiles)

	cat, err := c.Catalog()
	if err != nil {
		v.fail([]string{"providers"}, "%v", err)
	}
	v.passthrough(f.Passthrough, cat)
	c.Passthrough = f.Passthrough
	c.PassthroughCheck = f.PassthroughCheck
	c.Hosts = v.hosts(f.Hosts)
	c.IdentityEncoding = f.IdentityEncoding
	c.MaxConnectionsPerSandbox = v.maxConns(f.MaxConnsPerSandbox)
	v.rateLimits(&c.RateLimits, cat)
	return c
}

func (v *validator) absPath(path []string, s string, emptyOK bool) string {
	if s == "" && emptyOK {
		return s
	}
	if !filepath.IsAbs(s) {
		v.fail(path, "%q must be an absolute path", s)
	}
	return filepath.Clean(s)
}

func (v *validator) oneOf(path []string, s string, allowed ...string) string {
	for _, a := range allowed {
		if s == a {
			return s
		}
	}
	v.fail(path, "%q is not allowed; use one of %s", s, strings.Join(allowed, ", "))
	return s
}

func (v *validator) ports(in []int) []uint16 {
	if len(in) == 0 {
		v.fail([]string{"ports"}, "list at least one TCP port (default [443])")
		return nil
	}
	seen := map[int]bool{}
	out := make([]uint16, 0, len(in))
	for i, p := range in {
		path := []string{"ports", strconv.Itoa(i)}
		switch {
		case p < 1 || p > 65535:
			v.fail(path, "port %d is out of range; use 1-65535", p)
		case seen[p]:
			v.fail(path, "port %d is listed twice", p)
		default:
			seen[p] = true
			out = append(out, uint16(p))
		}
	}
	return out
}

// listenPort checks the proxy's listener port. Why not an intercepted port:
// the sandbox's own connections to that port are what gets redirected, so the
// listener would share its port with the traffic it receives.
func (v *validator) listenPort(p int, intercepted []uint16) uint16 {
	path := []string{"listen_port"}
	if p < 1 || p > 65535 {
		v.fail(path, "port %d is out of range; use 1-65535 (default %d)", p,
			DefaultListenPort)
		return 0
	}
	for _, ip := range intercepted {
		if int(ip) == p {
			v.fail(path, "port %d is also an intercepted port (ports); pick a port "+
				"that is not in ports (default %d)", p, DefaultListenPort)
		}
	}
	return uint16(p)
}

func (v *validator) prefixes(field string, in []string) []netip.Prefix {
	var out []netip.Prefix
	for i, s := range in {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			v.fail([]string{field, strconv.Itoa(i)}, "%q is not a CIDR prefix "+
				"(write 198.18.0.0/15 or fd00::/8; a single address is 10.0.0.1/32)", s)
			continue
		}
		out = append(out, p.Masked())
	}
	return out
}

func (v *validator) duration(path []string, s string) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		v.fail(path, "%q is not a positive duration (write it like 30s, 5m or 1h30m)", s)
		return 0
	}
	return d
}

func (v *validator) caFiles(files []string) {
	for i, name := range files {
		path := []string{"upstream_ca_files", strconv.Itoa(i)}
		if !filepath.IsAbs(name) {
			v.fail(path, "%q must be an absolute path", name)
			continue
		}
		data, err := os.ReadFile(name)
		if err != nil {
			v.fail(path, "reading %s: %v", name, err)
			continue
		}
		if !x509.NewCertPool().AppendCertsFromPEM(data) {
			v.fail(path, "%s holds no PEM certificate", name)
		}
	}
}

func (v *validator) passthrough(in []string, cat *providers.Catalog) {
	for i, d := range in {
		path := []string{"passthrough", strconv.Itoa(i)}
		if err := providers.ValidatePattern(d); err != nil {
			v.fail(path, "%v", err)
			continue
		}
		if cat == nil {
			continue
		}
		// Why: a provider domain must be intercepted for its key to be
		// injected; letting a passthrough entry win would silently skip it.
		for _, p := range cat.All() {
			for _, pd := range p.Domains {
				if providers.Overlaps(d, pd) {
					v.fail(path, "%q overlaps provider %s domain %q; remove it here, or "+
						"change the provider's domains or disable it", d, p.Name, pd)
				}
			}
		}
	}
}

// hosts checks the pinned addresses: names as passthrough patterns, each
// with at least one plain IP address.
func (v *validator) hosts(in map[string][]string) map[string][]netip.Addr {
	if in == nil {
		return nil
	}
	out := make(map[string][]netip.Addr, len(in))
	for _, name := range sortedKeys(in) {
		path := []string{"hosts", name}
		if err := providers.ValidatePattern(name); err != nil {
			v.fail(path, "%v", err)
			continue
		}
		if len(in[name]) == 0 {
			v.fail(path, "no address; list at least one (hosts: {%s: [192.0.2.10]})",
				name)
			continue
		}
		for i, s := range in[name] {
			a, err := netip.ParseAddr(s)
			if err != nil || a.Zone() != "" {
				v.fail(append(path, strconv.Itoa(i)), "%q is not an IP address "+
					"(write 192.0.2.10 or 2001:db8::10, without a prefix or zone)", s)
				continue
			}
			out[name] = append(out[name], a.Unmap())
		}
	}
	return out
}

func (v *validator) maxConns(n int) int {
	switch {
	case n < 0:
		v.fail([]string{"max_connections_per_sandbox"}, "%d is negative; use 0 for the "+
			"default (%d) or a positive number", n, DefaultMaxConnectionsPerSandbox)
	case n == 0:
		return DefaultMaxConnectionsPerSandbox
	}
	return n
}

func (v *validator) rateLimits(rl *RateLimits, cat *providers.Catalog) {
	for _, name := range sortedKeys(rl.Providers) {
		path := []string{"rate_limits", "providers", name}
		if cat != nil {
			if _, ok := cat.Provider(name); !ok {
				v.fail(path, "no provider named %q in the catalog", name)
			}
		}
		rl.Providers[name] = v.limit(path, rl.Providers[name])
	}
	if rl.Sandbox != nil {
		l := v.limit([]string{"rate_limits", "sandbox"}, *rl.Sandbox)
		rl.Sandbox = &l
	}
	for _, name := range sortedKeys(rl.Sandboxes) {
		rl.Sandboxes[name] = v.limit([]string{"rate_limits", "sandboxes", name},
			rl.Sandboxes[name])
	}
}

func (v *validator) limit(path []string, l Limit) Limit {
	if !(l.RPS > 0) || math.IsInf(l.RPS, 0) {
		v.fail(append(path, "rps"), "%v is not allowed; requests per second must be a "+
			"positive number (0.5 = one request every 2s)", l.RPS)
	}
	switch {
	case l.Burst < 0:
		v.fail(append(path, "burst"), "%d is negative; use 0 (default) or more", l.Burst)
	case l.Burst == 0:
		l.Burst = max(1, int(math.Ceil(l.RPS)))
	}
	return l
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

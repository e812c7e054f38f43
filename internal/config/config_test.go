package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/hermes-netd/hermes-netd/internal/providers"
)

func TestExampleLoads(t *testing.T) {
	c, err := Load("testdata/example.yaml")
	if err != nil {
		t.Fatalf("Load(example.yaml): %v", err)
	}
	want := &Config{
		Source:           "testdata/example.yaml",
		StateDir:         "/var/lib/hermes",
		SecretsDir:       "/etc/hermes/secrets",
		Socket:           "/run/hermes/netd.sock",
		Mode:             "auto",
		Ports:            []uint16{443},
		ListenPort:       15443,
		Default:          "deny",
		Passthrough:      []string{"pypi.org", "files.pythonhosted.org", "*.githubusercontent.com"},
		PassthroughCheck: true,
		Hosts: map[string][]netip.Addr{"files.pythonhosted.org": {
			netip.MustParseAddr("151.101.0.223"), netip.MustParseAddr("2a04:4e42::223")}},
		IdentityEncoding:         false,
		MaxConnectionsPerSandbox: 1024,
		Providers: map[string]ProviderConfig{
			"openai": {Key: "openai-team"},
			"nim":    {Domains: []string{"integrate.api.nvidia.com", "ai.api.nvidia.com"}},
			"github": {Disabled: true},
			"corp-llm": {
				Domains: []string{"llm.corp.example.com", "*.inference.corp.example.com"},
				Key:     "corp-llm",
				Form: &FormConfig{Kind: "header", Header: "X-Corp-Token",
					Format: "Token {key}"},
				StripQuery: []string{"access_token"},
			},
			"corp-search": {Domains: []string{"search.corp.example.com"},
				Form: &FormConfig{Kind: "basic", User: "api"}},
			"corp-maps": {Domains: []string{"maps.corp.example.com"},
				Form: &FormConfig{Kind: "query", Param: "apikey"}},
		},
		UpstreamCAFiles: []string{},
		AllowUpstream: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15"),
			netip.MustParsePrefix("fd00:18::/64")},
		StrictDNS: []netip.Prefix{netip.MustParsePrefix("192.0.2.53/32"),
			netip.MustParsePrefix("2001:db8::53/128")},
		Timeouts: Timeouts{Handshake: 10 * time.Second, ReadHeader: 30 * time.Second,
			Idle: 5 * time.Minute, UpstreamIdle: 90 * time.Second,
			Shutdown: 10 * time.Second},
		RateLimits: RateLimits{
			Providers: map[string]Limit{"openai": {RPS: 20, Burst: 40},
				"nim": {RPS: 5, Burst: 5}},
			Sandbox:   &Limit{RPS: 10, Burst: 20},
			Sandboxes: map[string]Limit{"ci-runner": {RPS: 0.5, Burst: 2}},
		},
		Audit: Audit{File: "/var/log/hermes/audit.jsonl"},
	}
	if diff := cmp.Diff(want, c,
		cmpopts.EquateComparable(netip.Prefix{}, netip.Addr{})); diff != "" {
		t.Errorf("example config (-want +got):\n%s", diff)
	}

	// identity_encoding is shown at its default; the line must be live, not
	// a comment, so that flipping it takes effect.
	data, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	flipped := strings.Replace(string(data), "\nidentity_encoding: false\n",
		"\nidentity_encoding: true\n", 1)
	if flipped == string(data) {
		t.Fatal("example.yaml has no \"identity_encoding: false\" line")
	}
	if c, err := Parse([]byte(flipped), "flipped.yaml"); err != nil {
		t.Errorf("example with identity_encoding: true: %v", err)
	} else if !c.IdentityEncoding {
		t.Error("example with identity_encoding: true loads IdentityEncoding false")
	}

	cat, err := c.Catalog()
	if err != nil {
		t.Fatalf("Catalog: %v", err)
	}
	got := map[string]providers.Provider{}
	for _, p := range cat.All() {
		got[p.Name] = p
	}
	if _, ok := got["github"]; ok {
		t.Error("disabled provider github is still in the catalog")
	}
	wantSome := map[string]providers.Provider{
		"openai": {Name: "openai", Domains: []string{"api.openai.com"}, Key: "openai-team",
			Form: providers.Form{Kind: "header", Header: "Authorization",
				Format: "Bearer {key}"}},
		"nim": {Name: "nim",
			Domains: []string{"integrate.api.nvidia.com", "ai.api.nvidia.com"},
			Form: providers.Form{Kind: "header", Header: "Authorization",
				Format: "Bearer {key}"}},
		"corp-llm": {Name: "corp-llm", Key: "corp-llm",
			Domains:    []string{"llm.corp.example.com", "*.inference.corp.example.com"},
			Form:       providers.Form{Kind: "header", Header: "X-Corp-Token", Format: "Token {key}"},
			StripQuery: []string{"access_token"}},
		"corp-search": {Name: "corp-search", Domains: []string{"search.corp.example.com"},
			Form: providers.Form{Kind: "basic", User: "api"}},
		"corp-maps": {Name: "corp-maps", Domains: []string{"maps.corp.example.com"},
			Form: providers.Form{Kind: "query", Param: "apikey"}},
	}
	for name, want := range wantSome {
		if diff := cmp.Diff(want, got[name]); diff != "" {
			t.Errorf("catalog provider %s (-want +got):\n%s", name, diff)
		}
	}
	if p, ok := cat.Match("x.inference.corp.example.com"); !ok || p.Name != "corp-llm" {
		t.Errorf("Match(x.inference.corp.example.com) = %v, %v; want corp-llm", p, ok)
	}
}

func TestLoadMissingFile(t *testing.T) {
	if _, err := os.Stat(DefaultPath); err == nil {
		t.Skipf("%s exists on this machine", DefaultPath)
	}
	c, err := Load("")
	if err != nil {
		t.Fatalf(`Load("") with no file at the default path: %v`, err)
	}
	if diff := cmp.Diff(Default(), c); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}

	missing := filepath.Join(t.TempDir(), "netd.yaml")
	if _, err := Load(missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("Load(%s) error = %v; want an error naming the file", missing, err)
	}
}

func TestEmptyFileGivesDefaults(t *testing.T) {
	for _, data := range []string{"", "# only a comment\n", "{}\n"} {
		c, err := Parse([]byte(data), "empty.yaml")
		if err != nil {
			t.Fatalf("Parse(%q): %v", data, err)
		}
		want := Default()
		want.Source = "empty.yaml"
		if diff := cmp.Diff(want, c); diff != "" {
			t.Errorf("Parse(%q) (-want +got):\n%s", data, diff)
		}
	}
}

func TestDefaults(t *testing.T) {
	c := Default()
	if c.ListenPort != 15443 || c.Timeouts.Shutdown != 10*time.Second {
		t.Errorf("default listen_port %d, timeouts.shutdown %v; want 15443 and 10s",
			c.ListenPort, c.Timeouts.Shutdown)
	}
	if c.DefaultPassthrough() {
		t.Error("default is passthrough; want deny")
	}
	cat, err := c.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(cat.All()), len(providers.Builtin()); got != want {
		t.Errorf("default catalog has %d providers, want the %d built in", got, want)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string // substrings of the error
	}{
		{"unknown top-level field", "mode: nft\nmdoe: auto\n",
			[]string{"bad.yaml:2: unknown field mdoe"}},
		{"unknown nested field", "timeouts:\n  handshake: 5s\n  idel: 1m\n",
			[]string{"bad.yaml:3: unknown field idel"}},
		{"unknown provider field", "providers:\n  openai:\n    domain: [a.example.com]\n",
			[]string{"bad.yaml:3: unknown field domain"}},
		{"syntax", "mode: auto\nports: [443\n", []string{"bad.yaml:"}},
		{"tab indentation", "timeouts:\n\thandshake: 5s\n", []string{"bad.yaml:2"}},
		{"wrong type", "ports: 443\n", []string{"bad.yaml:1:", "is not a list"}},
		{"wrong scalar type", "strict: maybe\n", []string{"bad.yaml:1:", "true or false"}},
		{"mode", "mode: bpf\n",
			[]string{"bad.yaml:1: mode:", `"bpf" is not allowed; use one of auto, ebpf, nft`}},
		{"default", "default: allow\n",
			[]string{"bad.yaml:1: default:", "use one of deny, passthrough"}},
		{"port zero", "ports: [443, 0]\n",
			[]string{"bad.yaml:1: ports[1]: port 0 is out of range; use 1-65535"}},
		{"port too big", "ports:\n  - 443\n  - 70000\n",
			[]string{"bad.yaml:3: ports[1]: port 70000 is out of range; use 1-65535"}},
		{"port twice", "ports: [443, 443]\n", []string{"ports[1]: port 443 is listed twice"}},
		{"no ports", "ports: []\n", []string{"ports: list at least one TCP port"}},
		{"listen port zero", "listen_port: 0\n",
			[]string{"bad.yaml:1: listen_port: port 0 is out of range; use 1-65535 " +
				"(default 15443)"}},
		{"listen port too big", "listen_port: 65536\n",
			[]string{"listen_port: port 65536 is out of range"}},
		{"listen port intercepted", "ports: [443, 8443]\nlisten_port: 8443\n",
			[]string{"bad.yaml:2: listen_port: port 8443 is also an intercepted port"}},
		{"listen port not a number", "listen_port: high\n",
			[]string{"bad.yaml:1:", "is not a whole number"}},
		{"shutdown duration", "timeouts:\n  shutdown: 10\n",
			[]string{"bad.yaml:2: timeouts.shutdown:", "write it like 30s"}},
		{"zero shutdown", "timeouts:\n  shutdown: 0s\n",
			[]string{"timeouts.shutdown:", "not a positive duration"}},
		{"duration", "timeouts:\n  idle: 5 minutes\n",
			[]string{"bad.yaml:2: timeouts.idle:", "write it like 30s"}},
		{"zero duration", "timeouts:\n  handshake: 0s\n",
			[]string{"timeouts.handshake:", "not a positive duration"}},
		{"negative duration", "timeouts:\n  read_header: -1s\n",
			[]string{"timeouts.read_header:", "not a positive duration"}},
		{"cidr", "allow_upstream:\n  - 198.18.0.0/15\n  - 10.0.0.1\n",
			[]string{"bad.yaml:3: allow_upstream[1]:", "is not a CIDR prefix"}},
		{"strict dns cidr", "strict_dns:\n  - 10.0.0.53\n",
			[]string{"bad.yaml:2: strict_dns[0]:", "is not a CIDR prefix"}},
		{"relative path", "state_dir: var/lib/hermes\n",
			[]string{"state_dir:", "must be an absolute path"}},
		{"relative audit file", "audit:\n  file: audit.log\n",
			[]string{"bad.yaml:2: audit.file:", "absolute path"}},
		{"missing ca file", "upstream_ca_files: [/nonexistent/ca.pem]\n",
			[]string{"upstream_ca_files[0]: reading /nonexistent/ca.pem"}},
		{"passthrough pattern", "passthrough: [\"a.*.example.com\"]\n",
			[]string{"passthrough[0]:", "use an exact name"}},
		{"passthrough overlaps provider", "passthrough:\n  - pypi.org\n  - api.openai.com\n",
			[]string{"bad.yaml:3: passthrough[1]:", "overlaps provider openai"}},
		{"new provider without domains", "providers:\n  corp:\n    key: corp\n",
			[]string{"bad.yaml:2: providers:", "provider corp is not built in, so it " +
				"needs domains"}},
		{"provider domains overlap", "providers:\n  corp:\n    domains: [api.openai.com]\n",
			[]string{"providers:", `provider corp domain "api.openai.com" overlaps ` +
				`provider openai`}},
		{"disable unknown provider", "providers:\n  githb:\n    disabled: true\n",
			[]string{"provider githb is disabled but not built in"}},
		{"empty domains for built-in", "providers:\n  openai:\n    domains: []\n",
			[]string{"provider openai: no domains"}},
		{"bad form kind", "providers:\n  openai:\n    form: {kind: cookie}\n",
			[]string{"providers:", `form kind "cookie": must be header, basic or query`}},
		{"bad provider name", "providers:\n  Corp:\n    domains: [a.example.com]\n",
			[]string{`provider name "Corp"`}},
		{"rate for unknown provider", "rate_limits:\n  providers:\n    opena: {rps: 1}\n",
			[]string{"bad.yaml:3: rate_limits.providers.opena:", `no provider named "opena"`}},
		{"rate zero", "rate_limits:\n  sandbox: {rps: 0}\n",
			[]string{"rate_limits.sandbox.rps:", "must be a positive number"}},
		{"rate negative burst", "rate_limits:\n  sandboxes:\n    a: {rps: 1, burst: -1}\n",
			[]string{"rate_limits.sandboxes.a.burst:", "negative"}},
		{"hosts name", "hosts:\n  Pypi.org: [192.0.2.1]\n",
			[]string{"bad.yaml:2: hosts.Pypi.org:", "write it in lowercase"}},
		{"hosts name ip", "hosts:\n  192.0.2.1: [192.0.2.1]\n",
			[]string{"hosts.192.0.2.1:", "an IP address is not a domain"}},
		{"hosts no address", "hosts:\n  pypi.org: []\n",
			[]string{"bad.yaml:2: hosts.pypi.org: no address"}},
		{"hosts bad address", "hosts:\n  pypi.org:\n    - 192.0.2.1\n    - 192.0.2.0/24\n",
			[]string{"bad.yaml:4: hosts.pypi.org[1]:", `"192.0.2.0/24" is not an IP address`}},
		{"hosts zone", "hosts:\n  pypi.org: [\"fe80::1%eth0\"]\n",
			[]string{"hosts.pypi.org[0]:", "without a prefix or zone"}},
		{"hosts not a list", "hosts:\n  pypi.org: 192.0.2.1\n",
			[]string{"bad.yaml:2:", "is not a list"}},
		{"passthrough_check type", "passthrough_check: yes please\n",
			[]string{"bad.yaml:1:", "true or false"}},
		{"identity_encoding type", "identity_encoding: gzip\n",
			[]string{"bad.yaml:1:", "true or false"}},
		{"negative max connections", "max_connections_per_sandbox: -1\n",
			[]string{"bad.yaml:1: max_connections_per_sandbox: -1 is negative"}},
		{"max connections not a number", "max_connections_per_sandbox: lots\n",
			[]string{"bad.yaml:1:", "is not a whole number"}},
		{"two documents", "mode: auto\n---\nmode: nft\n", []string{"more than one YAML"}},
		{"several problems at once", "mode: x\ndefault: y\n",
			[]string{"mode:", "default:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "bad.yaml")
			if err == nil {
				t.Fatalf("Parse succeeded, want an error containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "config.file") ||
				strings.Contains(err.Error(), "[]int") {
				t.Errorf("error %q leaks Go type names", err)
			}
		})
	}
}

func TestListenPortAndShutdown(t *testing.T) {
	c, err := Parse([]byte("ports: [443, 8443]\nlisten_port: 16000\n"+
		"timeouts:\n  shutdown: 45s\n"), "set.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Source = "set.yaml"
	want.Ports = []uint16{443, 8443}
	want.ListenPort = 16000
	want.Timeouts.Shutdown = 45 * time.Second
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
}

func TestPassthroughCheckHostsAndConnCap(t *testing.T) {
	tests := []struct {
		yaml string
		set  func(c *Config)
	}{
		{"passthrough_check: false\n", func(c *Config) { c.PassthroughCheck = false }},
		{"identity_encoding: true\n", func(c *Config) { c.IdentityEncoding = true }},
		{"identity_encoding: false\n", func(*Config) {}},
		{"max_connections_per_sandbox: 0\n", func(*Config) {}},
		{"max_connections_per_sandbox: 50\n",
			func(c *Config) { c.MaxConnectionsPerSandbox = 50 }},
		{"hosts:\n  \"*.example.test\": [\"::ffff:198.18.0.20\", 2001:db8::20]\n",
			func(c *Config) {
				c.Hosts = map[string][]netip.Addr{"*.example.test": {
					netip.MustParseAddr("198.18.0.20"), netip.MustParseAddr("2001:db8::20")}}
			}},
	}
	for _, tt := range tests {
		c, err := Parse([]byte(tt.yaml), "set.yaml")
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.yaml, err)
			continue
		}
		want := Default()
		want.Source = "set.yaml"
		tt.set(want)
		if diff := cmp.Diff(want, c, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
			t.Errorf("Parse(%q) (-want +got):\n%s", tt.yaml, diff)
		}
	}
}

func TestProviderOverrides(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want providers.Provider
	}{
		{"format only keeps header", "providers:\n  openai:\n    form: {format: \"Token {key}\"}\n",
			providers.Provider{Name: "openai", Domains: []string{"api.openai.com"},
				Form: providers.Form{Kind: "header", Header: "Authorization",
					Format: "Token {key}"}}},
		{"other kind starts afresh", "providers:\n  anthropic:\n    form: {kind: query, param: k}\n",
			providers.Provider{Name: "anthropic", Domains: []string{"api.anthropic.com"},
				Form: providers.Form{Kind: "query", Param: "k"}}},
		{"strip_query replaced", "providers:\n  gemini:\n    strip_query: [key, api_key]\n",
			providers.Provider{Name: "gemini",
				Domains: []string{"generativelanguage.googleapis.com"},
				Form: providers.Form{Kind: "header", Header: "x-goog-api-key",
					Format: "{key}"},
				StripQuery: []string{"key", "api_key"}}},
		{"new provider gets bearer", "providers:\n  corp:\n    domains: [a.corp.example.com]\n",
			providers.Provider{Name: "corp", Domains: []string{"a.corp.example.com"},
				Form: providers.Form{Kind: "header", Header: "Authorization",
					Format: "Bearer {key}"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml), "t.yaml")
			if err != nil {
				t.Fatal(err)
			}
			cat, err := c.Catalog()
			if err != nil {
				t.Fatal(err)
			}
			got, ok := cat.Provider(tt.want.Name)
			if !ok {
				t.Fatalf("no provider %s in the catalog", tt.want.Name)
			}
			if diff := cmp.Diff(tt.want, *got); diff != "" {
				t.Errorf("provider (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUpstreamCAFiles(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(good, selfSignedPEM(t), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Parse([]byte("upstream_ca_files: ["+good+"]\n"), "t.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if _, err := c.UpstreamRoots(); err != nil {
		t.Errorf("UpstreamRoots: %v", err)
	}

	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("nothing here"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Parse([]byte("upstream_ca_files:\n  - "+junk+"\n"), "t.yaml")
	if err == nil || !strings.Contains(err.Error(), "t.yaml:2: upstream_ca_files[0]: "+
		junk+" holds no PEM certificate") {
		t.Errorf("Parse with a junk CA file: %v", err)
	}
}

func selfSignedPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1),
		Subject: pkix.Name{CommonName: "test root"}, NotBefore: time.Now(),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

package config

import (
	"net/netip"
	"time"
)

// DefaultPath is the config file read when none is named.
const DefaultPath = "/etc/hermes/netd.yaml"

// DefaultListenPort is Config.ListenPort when the file does not set it.
const DefaultListenPort = 15443

// DefaultMaxConnectionsPerSandbox is Config.MaxConnectionsPerSandbox when the
// file does not set it (or sets 0).
const DefaultMaxConnectionsPerSandbox = 1024

// Config is the daemon's configuration, with defaults filled in and every
// field validated.
type Config struct {
	// Source is the file the config came from; "" when only defaults apply.
	Source string

	StateDir   string // CA and attach state; default /var/lib/hermes
	SecretsDir string // key files; default /etc/hermes/secrets
	Socket     string // admin socket; default /run/hermes/netd.sock

	Mode   string   // redirect mechanism: auto (default), ebpf or nft
	Ports  []uint16 // intercepted TCP ports; default [443]
	Strict bool     // reject all other egress of a sandbox but DNS and loopback
	// StrictDNS limits the DNS that Strict lets out (udp/tcp 53) to these
	// ranges; empty lets DNS out to any host.
	StrictDNS []netip.Prefix
	// ListenPort is the port of the proxy's listeners (127.0.0.1 and ::1)
	// inside each attached namespace; default 15443. It may not be one of
	// Ports.
	ListenPort uint16

	// Default decides for TLS server names that are neither a provider's nor
	// on Passthrough: "deny" (default) or "passthrough".
	Default string
	// Passthrough lists domains (exact or *.suffix) spliced through untouched.
	Passthrough []string
	// PassthroughCheck splices a passthrough connection (listed, or by
	// Default) only when its original destination is one of the addresses the
	// host finds for its SNI, in Hosts or else DNS; default true. false splices
	// to whatever address the sandbox chose, which lets it reach any address
	// by sending an allowed SNI (SNI spoofing).
	PassthroughCheck bool
	// Hosts pins the addresses of names (exact or *.suffix) for the
	// passthrough check: a name listed here is checked against these
	// addresses and not looked up in DNS. Addresses are stored unmapped.
	Hosts map[string][]netip.Addr
	// IdentityEncoding sends every intercepted request upstream with
	// Accept-Encoding: identity, so that every response body comes back
	// uncompressed and is scanned for the credential (a body compressed
	// anyway is refused with 502). Default false: compression stays as client
	// and upstream negotiate it, and a compressed echo of the key is not
	// masked. True closes that gap at the cost of bandwidth. A reload applies
	// it to the next request, also on connections already open.
	IdentityEncoding bool
	// MaxConnectionsPerSandbox caps the connections open at once from one
	// sandbox; over it a new connection is refused. Default 1024; 0 in the
	// file means the default.
	MaxConnectionsPerSandbox int

	// Providers adds providers to the built-in catalog or overrides fields of
	// built-in ones, by provider name. See Catalog.
	Providers map[string]ProviderConfig

	// UpstreamCAFiles are PEM files of extra roots trusted for upstream TLS,
	// in addition to the system roots.
	UpstreamCAFiles []string
	// AllowUpstream are ranges exempt from the SSRF guard (which refuses
	// loopback, private, link-local, CGNAT, multicast and unspecified).
	AllowUpstream []netip.Prefix

	Timeouts   Timeouts
	RateLimits RateLimits
	Audit      Audit
}

// Timeouts bound the phases of a proxied connection. Bodies have no
// deadline, so long streams survive.
type Timeouts struct {
	Handshake    time.Duration // client TLS handshake; default 10s
	ReadHeader   time.Duration // reading each request's headers; default 30s
	Idle         time.Duration // idle client keep-alive connection; default 5m
	UpstreamIdle time.Duration // idle pooled upstream connection; default 90s
	Shutdown     time.Duration // drain of requests in flight on SIGTERM; default 10s
}

// ProviderConfig adds or overrides one provider. For a built-in provider,
// every field left out keeps the built-in value.
type ProviderConfig struct {
	// Domains replace the provider's domains (exact or *.suffix).
	Domains []string `yaml:"domains"`
	// Key names the secret (file <key>.key); default the provider's name.
	Key string `yaml:"key"`
	// Form overrides the injection form field by field; a different kind
	// starts from an empty form of that kind.
	Form *FormConfig `yaml:"form"`
	// StripQuery replaces the extra query parameters removed from requests.
	StripQuery []string `yaml:"strip_query"`
	// Disabled removes a built-in provider from the catalog.
	Disabled bool `yaml:"disabled"`
}

// FormConfig is the YAML shape of providers.Form.
type FormConfig struct {
	Kind   string `yaml:"kind"`   // header, basic or query
	Header string `yaml:"header"` // header: field name; default Authorization
	Format string `yaml:"format"` // header: value around {key}; default "{key}"
	User   string `yaml:"user"`   // basic: user name ("" = key as user, empty password)
	Param  string `yaml:"param"`  // query: parameter name
}

// Limit is a token bucket: RPS requests per second on average, bursts of up
// to Burst (golang.org/x/time/rate semantics).
type Limit struct {
	RPS   float64 `yaml:"rps"`
	Burst int     `yaml:"burst"` // 0 = the smallest whole number >= RPS (at least 1)
}

// RateLimits caps request rates through the proxy. Unset means unlimited.
type RateLimits struct {
	// Providers limits all sandboxes together, by provider name.
	Providers map[string]Limit `yaml:"providers"`
	// Sandbox limits each sandbox not listed in Sandboxes, across providers.
	Sandbox *Limit `yaml:"sandbox"`
	// Sandboxes limits named sandboxes (the netns as given to attach), each
	// namespace attached under a name on its own.
	Sandboxes map[string]Limit `yaml:"sandboxes"`
}

// Audit says where request records go.
type Audit struct {
	File string // JSON lines appended to this file; "" = stderr
}

// Default returns the configuration used when no file exists.
func Default() *Config {
	return &Config{
		StateDir:   "/var/lib/hermes",
		SecretsDir: "/etc/hermes/secrets",
		Socket:     "/run/hermes/netd.sock",
		Mode:       "auto",
		Ports:      []uint16{443},
		ListenPort: DefaultListenPort,
		Default:    "deny",

		PassthroughCheck:         true,
		MaxConnectionsPerSandbox: DefaultMaxConnectionsPerSandbox,
		Timeouts: Timeouts{
			Handshake:    10 * time.Second,
			ReadHeader:   30 * time.Second,
			Idle:         5 * time.Minute,
			UpstreamIdle: 90 * time.Second,
			Shutdown:     10 * time.Second,
		},
	}
}

// DefaultPassthrough reports whether unknown server names pass through.
func (c *Config) DefaultPassthrough() bool { return c.Default == "passthrough" }

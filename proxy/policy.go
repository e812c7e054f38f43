package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/hermes-netd/hermes-netd/internal/providers"
	"github.com/hermes-netd/hermes-netd/internal/ratelimit"
)

// Policy says what happens to a connection once its SNI is known. The proxy
// holds one at a time; (*Server).SetPolicy swaps it for connections accepted
// afterwards (a SIGHUP reload), connections already open keep theirs.
type Policy struct {
	// Catalog maps provider domains to providers: those are intercepted.
	// Nil means no provider is known.
	Catalog *providers.Catalog
	// Passthrough lists domains spliced untouched to their original
	// destination: "example.com" matches exactly, "*.example.com" matches every
	// name below example.com (not example.com itself), as providers.MatchPattern
	// does. A provider domain wins over a passthrough entry.
	Passthrough []string
	// DefaultPassthrough passes through names that are in neither list.
	// False (the default) refuses them.
	DefaultPassthrough bool
	// Hosts pins the addresses of passthrough names for the destination check
	// (see UncheckedPassthrough): a name with an entry is checked against these
	// addresses only, and DNS is not asked. Keys are exact names or *.suffix
	// patterns, as in Passthrough; an exact entry wins, then the longest
	// matching pattern. Nil means DNS decides for every name.
	Hosts map[string][]netip.Addr
	// UncheckedPassthrough turns the destination check off. With the check
	// (false, the default) a passthrough connection is spliced only when its
	// original destination is one of the addresses the host finds for its SNI
	// (Hosts, else Options.Resolve); otherwise it is refused. Security caveat:
	// true lets a sandbox send an allowed SNI to any address it chooses, so the
	// passthrough list no longer limits where it can connect (SNI spoofing).
	UncheckedPassthrough bool
	// AllowUpstream lists upstream ranges the SSRF guard lets through although
	// they are not public (loopback, private, link-local...). The test suite
	// allows its fake internet this way. The proxy's own listeners are refused
	// whatever this says.
	AllowUpstream []netip.Prefix
	// Limits caps the rate of intercepted requests per provider and per
	// sandbox; nil means no limits. Unlike the rest of the policy, which a
	// connection keeps from when it was accepted, Limits is read from the
	// current policy on every request, so a reload applies to keep-alive and
	// HTTP/2 connections already open. A reload brings a new Limiter, whose
	// buckets start full.
	Limits *ratelimit.Limiter
	// IdentityEncoding asks every intercepted upstream for uncompressed
	// responses (Accept-Encoding: identity), so that the credential scan sees
	// every body in the clear; an upstream that answers with a body in
	// another Content-Encoding anyway is refused (502), not relayed unscanned.
	// It costs bandwidth on large responses. False (the default) leaves
	// compression as client and upstream negotiate it, and a compressed body
	// is relayed without the scan seeing the key in it (see the package
	// documentation). Like Limits, it is read from the current policy on every
	// request, so a reload applies to connections already open.
	IdentityEncoding bool
}

// Action is what the proxy does with a connection.
type Action int

// The three actions. The zero Action refuses.
const (
	Deny Action = iota
	Passthrough
	Intercept
)

func (a Action) String() string {
	switch a {
	case Passthrough:
		return DecisionPassthrough
	case Intercept:
		return DecisionIntercept
	default:
		return DecisionDeny
	}
}

// Decision is the policy's verdict on one SNI.
type Decision struct {
	Action   Action
	Provider *providers.Provider // set when Action is Intercept
	Reason   string              // why, in words for a record
}

// Validate checks the passthrough patterns, hosts entries and allowed ranges.
func (p *Policy) Validate() error {
	for _, pat := range p.Passthrough {
		if err := providers.ValidatePattern(pat); err != nil {
			return fmt.Errorf("passthrough entry %q: %w", pat, err)
		}
	}
	for name, addrs := range p.Hosts {
		if err := providers.ValidatePattern(name); err != nil {
			return fmt.Errorf("hosts entry %q: %w", name, err)
		}
		if len(addrs) == 0 {
			return fmt.Errorf("hosts entry %q has no address", name)
		}
		for _, a := range addrs {
			if !a.IsValid() {
				return fmt.Errorf("hosts entry %q holds an invalid address", name)
			}
		}
	}
	for _, pfx := range p.AllowUpstream {
		if !pfx.IsValid() {
			return fmt.Errorf("allow_upstream entry %v is not a valid prefix", pfx)
		}
	}
	return nil
}

// Decide returns the verdict for sni, which must already be normalised
// (lower-case, no trailing dot), as ReadClientHello returns it.
func (p *Policy) Decide(sni string) Decision {
	if p.Catalog != nil {
		if prov, ok := p.Catalog.Match(sni); ok {
			return Decision{Action: Intercept, Provider: prov,
				Reason: "provider domain of " + prov.Name}
		}
	}
	for _, pat := range p.Passthrough {
		if providers.MatchPattern(pat, sni) {
			return Decision{Action: Passthrough, Reason: "on the passthrough list"}
		}
	}
	if p.DefaultPassthrough {
		return Decision{Action: Passthrough, Reason: "unknown domain, default is passthrough"}
	}
	return Decision{Action: Deny, Reason: "unknown domain, default is deny"}
}

// allowsUpstream reports whether the guard's exception list covers addr.
func (p *Policy) allowsUpstream(addr netip.Addr) bool {
	for _, pfx := range p.AllowUpstream {
		if pfx.Contains(addr.Unmap()) {
			return true
		}
	}
	return false
}

// normalizeAuthority turns a request authority (Host header or :authority)
// into the form ReadClientHello gives the SNI: lower-case, no trailing dot, and
// no port when the port is the https default (443) or the connection's
// original destination port (an intercepted non-default port). Anything else
// keeps its port and so never equals an SNI.
func normalizeAuthority(authority string, dstPort uint16) string {
	host, port, err := net.SplitHostPort(authority)
	if err != nil {
		host, port = authority, ""
	}
	if port != "" && port != "443" && port != fmt.Sprint(dstPort) {
		return strings.ToLower(authority)
	}
	n, err := normalizeSNI(host)
	if err != nil {
		return strings.ToLower(authority)
	}
	return n
}

package providers

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// FormKind says how a key travels on the wire.
type FormKind string

// The injection forms.
const (
	// FormHeader sets Form.Header to Form.Format with "{key}" replaced by the key.
	FormHeader FormKind = "header"
	// FormBasic sets HTTP basic auth (Authorization: Basic ...). See Form.User.
	FormBasic FormKind = "basic"
	// FormQuery sets the query parameter Form.Param to the key.
	FormQuery FormKind = "query"
)

// KeyPlaceholder is replaced by the key in Form.Format.
const KeyPlaceholder = "{key}"

// Form is how a provider's key is written onto a request.
type Form struct {
	Kind FormKind
	// Header is the header to set, for FormHeader ("Authorization", "x-api-key").
	Header string
	// Format is the header value around the key, for FormHeader: "Bearer {key}".
	// It must contain "{key}" exactly once; empty means "{key}".
	Format string
	// User is the basic-auth user name, for FormBasic. The key is always the
	// password when User is set ("user:key", the GitHub convention). An empty
	// User sends the key as the user name with an empty password ("key:", the
	// convention of APIs that take the key as the basic-auth user).
	User string
	// Param is the query parameter name, for FormQuery.
	Param string
}

// Provider is one API whose key hermes-netd injects.
type Provider struct {
	// Name identifies the provider in config, logs and errors ("openai").
	Name string
	// Domains are exact host names or "*.suffix" wildcards, lowercase.
	Domains []string
	// Key names the secret holding the key (file <Key>.key); empty means Name.
	Key string
	// Form is how the key is written onto a request.
	Form Form
	// StripQuery lists extra query parameters that can carry a client-supplied
	// credential for this provider (Gemini's "key"); they are removed before
	// injection, in addition to Form.Param.
	StripQuery []string
}

// KeyName returns the secret name of p's key: Key, or Name when Key is empty.
func (p *Provider) KeyName() string {
	if p.Key != "" {
		return p.Key
	}
	return p.Name
}

var nameRE = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

// ValidName reports whether s is usable as a provider or key name: 1 to 64
// characters from a-z, 0-9, '_' and '-'.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// Validate checks p's fields and says what is allowed when one is wrong.
func (p *Provider) Validate() error {
	if !ValidName(p.Name) {
		return fmt.Errorf("provider name %q: use 1-64 characters from a-z, 0-9, '_' and '-'",
			p.Name)
	}
	if p.Key != "" && !ValidName(p.Key) {
		return fmt.Errorf("provider %s: key name %q: use 1-64 characters from a-z, 0-9, "+
			"'_' and '-'", p.Name, p.Key)
	}
	if len(p.Domains) == 0 {
		return fmt.Errorf("provider %s: no domains: list at least one host name "+
			"(exact or *.suffix)", p.Name)
	}
	for _, d := range p.Domains {
		if err := ValidatePattern(d); err != nil {
			return fmt.Errorf("provider %s: %w", p.Name, err)
		}
	}
	for _, q := range p.StripQuery {
		if q == "" || strings.ContainsAny(q, "&=#") {
			return fmt.Errorf("provider %s: strip query parameter %q: must be a non-empty "+
				"name without '&', '=' or '#'", p.Name, q)
		}
	}
	if err := p.Form.validate(); err != nil {
		return fmt.Errorf("provider %s: %w", p.Name, err)
	}
	return nil
}

func (f *Form) validate() error {
	switch f.Kind {
	case FormHeader:
		if !validToken(f.Header) {
			return fmt.Errorf("form header: header name %q is not a valid HTTP field name",
				f.Header)
		}
		if f.Format != "" && strings.Count(f.Format, KeyPlaceholder) != 1 {
			return fmt.Errorf("form header: format %q must contain %s exactly once",
				f.Format, KeyPlaceholder)
		}
		if strings.ContainsAny(f.Format, "\r\n\x00") {
			return fmt.Errorf("form header: format must not contain CR, LF or NUL")
		}
	case FormBasic:
		if strings.ContainsAny(f.User, ":\r\n\x00") {
			return fmt.Errorf("form basic: user %q must not contain ':', CR, LF or NUL", f.User)
		}
	case FormQuery:
		if f.Param == "" || strings.ContainsAny(f.Param, "&=#") {
			return fmt.Errorf("form query: parameter %q must be a non-empty name without "+
				"'&', '=' or '#'", f.Param)
		}
	default:
		return fmt.Errorf("form kind %q: must be header, basic or query", f.Kind)
	}
	return nil
}

// validToken reports whether s is an RFC 9110 token (a valid field name).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// NormalizeHost lowercases h and removes one trailing dot and a port, the
// form Match expects. It does not apply IDNA; non-ASCII names never match.
func NormalizeHost(h string) string {
	if strings.HasPrefix(h, "[") {
		if i := strings.LastIndexByte(h, ']'); i > 0 {
			h = h[1:i]
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 && strings.Count(h, ":") == 1 {
		h = h[:i]
	}
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// ValidatePattern checks a domain pattern: an exact lowercase DNS name with
// at least two labels, or "*." followed by such a name. It refuses IP
// addresses, ports, schemes and wildcards anywhere but the first label.
func ValidatePattern(p string) error {
	name := strings.TrimPrefix(p, "*.")
	if p != strings.ToLower(p) {
		return fmt.Errorf("domain %q: write it in lowercase", p)
	}
	if _, err := netip.ParseAddr(strings.Trim(name, "[]")); err == nil {
		return fmt.Errorf("domain %q: an IP address is not a domain; list host names", p)
	}
	if err := validDNSName(name); err != nil {
		return fmt.Errorf("domain %q: %w; use an exact name (api.example.com) or "+
			"*.suffix (*.example.com)", p, err)
	}
	if !strings.Contains(name, ".") {
		return fmt.Errorf("domain %q: needs at least two labels (example.com, "+
			"*.example.com)", p)
	}
	return nil
}

func validDNSName(name string) error {
	if name == "" {
		return fmt.Errorf("empty name")
	}
	if len(name) > 253 {
		return fmt.Errorf("longer than 253 characters")
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("label %q must be 1-63 characters", label)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with '-'", label)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("label %q has character %q (allowed: a-z 0-9 - _)",
					label, c)
			}
		}
	}
	return nil
}

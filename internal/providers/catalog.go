package providers

import (
	"fmt"
	"sort"
	"strings"
)

// Catalog matches host names to providers. It is immutable once built and
// safe for concurrent use.
type Catalog struct {
	providers []Provider
	exact     map[string]int // host -> index in providers
	wild      []wildcard     // longest suffix first
}

type wildcard struct {
	suffix string // ".example.com"
	idx    int
}

// NewCatalog validates ps and builds a Catalog. It refuses duplicate
// provider names and any two providers whose domain patterns can match the
// same host, naming both providers and patterns.
func NewCatalog(ps []Provider) (*Catalog, error) {
	c := &Catalog{exact: make(map[string]int)}
	owner := make(map[string]string) // pattern -> provider name
	names := make(map[string]bool)
	for _, p := range ps {
		if err := p.Validate(); err != nil {
			return nil, err
		}
		if names[p.Name] {
			return nil, fmt.Errorf("provider %s is defined twice", p.Name)
		}
		names[p.Name] = true

		// Why: a host matched by two providers would send one provider's key
		// to the other, so overlaps are refused rather than resolved by order.
		for _, d := range p.Domains {
			for pat, other := range owner {
				if other != p.Name && Overlaps(d, pat) {
					return nil, fmt.Errorf("provider %s domain %q overlaps provider %s "+
						"domain %q: a host may belong to one provider only; remove or "+
						"narrow one of them", p.Name, d, other, pat)
				}
			}
			owner[d] = p.Name
		}

		idx := len(c.providers)
		c.providers = append(c.providers, p.clone())
		for _, d := range p.Domains {
			if s, ok := strings.CutPrefix(d, "*"); ok {
				c.wild = append(c.wild, wildcard{suffix: s, idx: idx})
			} else {
				c.exact[d] = idx
			}
		}
	}
	sort.SliceStable(c.wild, func(i, j int) bool {
		return len(c.wild[i].suffix) > len(c.wild[j].suffix)
	})
	return c, nil
}

// Overlaps reports whether domain patterns a and b can match the same host.
func Overlaps(a, b string) bool {
	as, aw := strings.CutPrefix(a, "*.")
	bs, bw := strings.CutPrefix(b, "*.")
	switch {
	case !aw && !bw:
		return a == b
	case aw && !bw:
		return strings.HasSuffix(b, "."+as)
	case !aw && bw:
		return strings.HasSuffix(a, "."+bs)
	default:
		return as == bs || strings.HasSuffix(as, "."+bs) || strings.HasSuffix(bs, "."+as)
	}
}

// Match returns the provider whose domains match host, which must already
// be normalised (see NormalizeHost). An exact pattern matches only itself;
// "*.example.com" matches any name ending in ".example.com". The returned
// Provider belongs to the Catalog and must not be modified.
func (c *Catalog) Match(host string) (*Provider, bool) {
	if c == nil {
		return nil, false
	}
	if i, ok := c.exact[host]; ok {
		return &c.providers[i], true
	}
	for _, w := range c.wild {
		if len(host) > len(w.suffix) && strings.HasSuffix(host, w.suffix) {
			return &c.providers[w.idx], true
		}
	}
	return nil, false
}

// Provider returns the provider named name.
func (c *Catalog) Provider(name string) (*Provider, bool) {
	if c == nil {
		return nil, false
	}
	for i := range c.providers {
		if c.providers[i].Name == name {
			return &c.providers[i], true
		}
	}
	return nil, false
}

// All returns a copy of every provider, in the order given to NewCatalog.
func (c *Catalog) All() []Provider {
	if c == nil {
		return nil
	}
	out := make([]Provider, len(c.providers))
	for i, p := range c.providers {
		out[i] = p.clone()
	}
	return out
}

// MatchPattern reports whether the normalised host matches one domain
// pattern: exactly, or for "*.suffix" any name ending in ".suffix" (never
// the bare suffix).
func MatchPattern(pattern, host string) bool {
	if s, ok := strings.CutPrefix(pattern, "*"); ok {
		return len(host) > len(s) && strings.HasSuffix(host, s)
	}
	return host == pattern
}

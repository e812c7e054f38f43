package proxy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/hermes-netd/hermes-netd/internal/providers"
)

// Why the destination check exists: the policy judges a passthrough
// connection by its SNI, but the splice goes to the address the sandbox
// connected to. Without the check a sandbox could send an allowed SNI to any
// address it likes (curl --resolve allowed.example:443:10.0.0.1) and reach a
// site the policy denies. So before splicing, the original destination must
// be one of the addresses the host itself finds for the SNI: Policy.Hosts
// first, then DNS.

// Cache lifetimes of the resolver's answers. The standard resolver does not
// return the records' TTLs, so these stand in for them: short enough that a
// name moving to new addresses is followed within half a minute, long enough
// that a burst of connections to one name costs one lookup.
const (
	resolveTTL      = 30 * time.Second
	resolveErrTTL   = 5 * time.Second // failures too, so a sandbox cannot flood DNS
	resolveMaxNames = 4096
)

// checkDestination reports whether dst may be spliced to for sni: nil when
// the check is off or dst is one of sni's addresses, otherwise an error whose
// text is the refusal's reason.
func (s *Server) checkDestination(pol *Policy, sni string, dst netip.Addr) error {
	if pol.UncheckedPassthrough {
		return nil
	}
	dst = dst.Unmap()

	addrs, pinned := pol.hostAddrs(sni)
	if !pinned {
		var err error
		addrs, err = s.resolver.lookup(sni, s.opts.Timeouts.Resolve)
		if err != nil {
			return fmt.Errorf("destination %v of %s not checked: resolving %s: %w",
				dst, sni, sni, err)
		}
	}
	for _, a := range addrs {
		if a.Unmap() == dst {
			return nil
		}
	}
	return fmt.Errorf("destination %v is not an address of %s", dst, sni)
}

// hostAddrs returns the pinned addresses of name from Hosts: an exact entry,
// else the longest *.suffix entry matching it. pinned is false when no entry
// matches, and DNS decides.
func (p *Policy) hostAddrs(name string) (addrs []netip.Addr, pinned bool) {
	if a, ok := p.Hosts[name]; ok {
		return a, true
	}
	best := ""
	for pat := range p.Hosts {
		if strings.HasPrefix(pat, "*.") && len(pat) > len(best) &&
			providers.MatchPattern(pat, name) {
			best = pat
		}
	}
	if best == "" {
		return nil, false
	}
	return p.Hosts[best], true
}

// resolveCache answers lookups from recent results, and runs one lookup per
// name at a time: connections racing for one name wait for the first.
type resolveCache struct {
	resolve func(ctx context.Context, host string) ([]netip.Addr, error)
	now     func() time.Time // time.Now; tests move it

	mu sync.Mutex
	m  map[string]*resolveEntry
}

type resolveEntry struct {
	done    chan struct{} // closed once addrs and err are set
	addrs   []netip.Addr
	err     error
	expires time.Time
}

func newResolveCache(resolve func(context.Context, string) ([]netip.Addr, error)) *resolveCache {
	if resolve == nil {
		resolve = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	return &resolveCache{resolve: resolve, now: time.Now, m: map[string]*resolveEntry{}}
}

// lookup returns host's addresses, from the cache while they are fresh; a
// lookup, or the wait for one in flight, gives up after timeout.
func (c *resolveCache) lookup(host string, timeout time.Duration) ([]netip.Addr, error) {
	c.mu.Lock()
	e := c.m[host]
	if e != nil {
		select {
		case <-e.done:
			if c.now().Before(e.expires) {
				c.mu.Unlock()
				return e.addrs, e.err
			}
		default:
			c.mu.Unlock()
			return e.wait(timeout)
		}
	}
	e = &resolveEntry{done: make(chan struct{})}
	c.makeRoomLocked()
	c.m[host] = e
	c.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	addrs, err := c.resolve(ctx, host)
	cancel()
	ttl := resolveTTL
	if err == nil && len(addrs) == 0 {
		err = fmt.Errorf("no address for %s", host)
	}
	if err != nil {
		ttl = resolveErrTTL
	}
	c.mu.Lock()
	e.addrs, e.err, e.expires = addrs, err, c.now().Add(ttl)
	c.mu.Unlock()
	close(e.done)
	return addrs, err
}

func (e *resolveEntry) wait(timeout time.Duration) ([]netip.Addr, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-e.done:
		return e.addrs, e.err
	case <-t.C:
		return nil, fmt.Errorf("waiting for a lookup in flight: %w",
			context.DeadlineExceeded)
	}
}

// makeRoomLocked keeps the cache bounded: with default passthrough a sandbox
// chooses the names. It drops expired entries, then, if still full, any
// finished one.
func (c *resolveCache) makeRoomLocked() {
	if len(c.m) < resolveMaxNames {
		return
	}
	now := c.now()
	for name, e := range c.m {
		select {
		case <-e.done:
			if !now.Before(e.expires) {
				delete(c.m, name)
			}
		default:
		}
	}
	for name, e := range c.m {
		if len(c.m) < resolveMaxNames {
			return
		}
		select {
		case <-e.done:
			delete(c.m, name)
		default:
		}
	}
}

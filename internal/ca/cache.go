package ca

import (
	"crypto/tls"
	"fmt"
	"sync/atomic"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"
)

// DefaultCacheSize is the leaf count NewLeafCache uses for a size <= 0.
const DefaultCacheSize = 1024

// LeafCache hands out leaves for server names, minting each name once and
// keeping the most recently used ones. It is safe for concurrent use.
type LeafCache struct {
	a      *Authority
	lru    *lru.Cache[string, *tls.Certificate]
	flight singleflight.Group
	mints  atomic.Uint64
}

// NewLeafCache returns a cache of at most size leaves signed by a.
func NewLeafCache(a *Authority, size int) *LeafCache {
	if size <= 0 {
		size = DefaultCacheSize
	}
	c, err := lru.New[string, *tls.Certificate](size)
	if err != nil {
		// Unreachable: lru.New fails only for a size <= 0.
		panic(fmt.Sprintf("ca: lru.New(%d): %v", size, err))
	}
	return &LeafCache{a: a, lru: c}
}

// Get returns the leaf for sni (see NormalizeSNI), minting it on a miss.
// Concurrent calls for a name not yet cached share one mint. A cached leaf
// within a quarter of its lifetime of expiry is replaced.
func (c *LeafCache) Get(sni string) (*tls.Certificate, error) {
	name, err := NormalizeSNI(sni)
	if err != nil {
		return nil, err
	}
	if cert, ok := c.lru.Get(name); ok && c.fresh(cert) {
		return cert, nil
	}
	v, err, _ := c.flight.Do(name, func() (any, error) {
		// Another flight may have finished between the lookup and now.
		if cert, ok := c.lru.Get(name); ok && c.fresh(cert) {
			return cert, nil
		}
		cert, err := c.a.Mint(name)
		if err != nil {
			return nil, err
		}
		c.mints.Add(1)
		c.lru.Add(name, cert)
		return cert, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*tls.Certificate), nil
}

func (c *LeafCache) fresh(cert *tls.Certificate) bool {
	life := cert.Leaf.NotAfter.Sub(cert.Leaf.NotBefore)
	return c.a.opts.Now().Before(cert.Leaf.NotAfter.Add(-life / 4))
}

// Mints returns how many leaves the cache has minted.
func (c *LeafCache) Mints() uint64 { return c.mints.Load() }

// Len returns how many leaves are cached.
func (c *LeafCache) Len() int { return c.lru.Len() }

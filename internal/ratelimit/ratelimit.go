package ratelimit

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// DefaultMaxSandboxes is how many buckets of sandboxes under the default
// sandbox limit (and, apart, under named limits) are kept when
// Config.MaxSandboxes is 0.
const DefaultMaxSandboxes = 4096

// Limit is a token bucket: RPS requests per second on average, bursts of up to
// Burst requests.
type Limit struct {
	RPS   float64
	Burst int
}

// String writes the limit for messages, as in "0.5 requests/s, burst 2".
func (l Limit) String() string {
	return strconv.FormatFloat(l.RPS, 'g', -1, 64) + " requests/s, burst " +
		strconv.Itoa(l.Burst)
}

func (l Limit) validate() error {
	if !(l.RPS > 0) || math.IsInf(l.RPS, 0) {
		return fmt.Errorf("rps %v is not a positive number", l.RPS)
	}
	if l.Burst < 1 {
		return fmt.Errorf("burst %d is below 1, so no request could ever pass", l.Burst)
	}
	return nil
}

// Config says which limits apply. A limit left out means no limit.
type Config struct {
	// Providers limits all sandboxes together, by provider name.
	Providers map[string]Limit
	// Sandbox limits each sandbox not named in Sandboxes, across providers.
	// Nil means such sandboxes have no limit of their own.
	Sandbox *Limit
	// Sandboxes limits named sandboxes (Sandbox.Name in the proxy: the
	// netns spec as given to attach), across providers. The limit is per
	// namespace: two namespaces attached in turn under one name each get a
	// bucket of their own with that limit.
	Sandboxes map[string]Limit
	// MaxSandboxes bounds the buckets kept for sandboxes under the Sandbox
	// limit, and apart from those the buckets kept for namespaces under the
	// names in Sandboxes; 0 means DefaultMaxSandboxes.
	MaxSandboxes int
}

// Scope says which kind of limit refused a request.
type Scope string

// The scopes of a refusal.
const (
	ScopeProvider Scope = "provider" // the provider's limit, shared by all sandboxes
	ScopeSandbox  Scope = "sandbox"  // the sandbox's own (or the default) limit
)

// Refusal describes a request that may not go now.
type Refusal struct {
	Scope Scope  // which limit refused
	Name  string // the provider or the sandbox whose bucket is empty
	Limit Limit  // that bucket's limit
	// RetryAfter is how long until the same request would pass every bucket
	// (when no other request takes the tokens first). Always positive.
	RetryAfter time.Duration
}

// Limiter holds the buckets. It is safe for concurrent use. A nil *Limiter
// allows everything.
type Limiter struct {
	cfg       Config
	providers map[string]*rate.Limiter
	named     *lru.Cache[bucketKey, *rate.Limiter]
	others    *lru.Cache[bucketKey, *rate.Limiter] // nil when cfg.Sandbox is nil
}

// bucketKey names the bucket of one sandbox: its name and its key.
type bucketKey struct{ name, key string }

// New checks cfg and returns a Limiter whose buckets all start full.
func New(cfg Config) (*Limiter, error) {
	if err := validate(cfg); err != nil {
		return nil, err
	}
	size := cfg.MaxSandboxes
	if size == 0 {
		size = DefaultMaxSandboxes
	}
	named, err := lru.New[bucketKey, *rate.Limiter](size)
	if err != nil {
		return nil, fmt.Errorf("making the named sandbox bucket cache: %w", err)
	}
	l := &Limiter{
		cfg:       cfg,
		providers: buckets(cfg.Providers),
		named:     named,
	}
	if cfg.Sandbox != nil {
		c, err := lru.New[bucketKey, *rate.Limiter](size)
		if err != nil {
			return nil, fmt.Errorf("making the sandbox bucket cache: %w", err)
		}
		l.others = c
	}
	return l, nil
}

func validate(cfg Config) error {
	var errs []error
	for _, name := range sortedKeys(cfg.Providers) {
		if err := cfg.Providers[name].validate(); err != nil {
			errs = append(errs, fmt.Errorf("rate limit of provider %q: %w", name, err))
		}
	}
	if cfg.Sandbox != nil {
		if err := cfg.Sandbox.validate(); err != nil {
			errs = append(errs, fmt.Errorf("default sandbox rate limit: %w", err))
		}
	}
	for _, name := range sortedKeys(cfg.Sandboxes) {
		if err := cfg.Sandboxes[name].validate(); err != nil {
			errs = append(errs, fmt.Errorf("rate limit of sandbox %q: %w", name, err))
		}
	}
	if cfg.MaxSandboxes < 0 {
		errs = append(errs, fmt.Errorf("MaxSandboxes %d is negative; use 0 for the "+
			"default (%d)", cfg.MaxSandboxes, DefaultMaxSandboxes))
	}
	return errors.Join(errs...)
}

func buckets(limits map[string]Limit) map[string]*rate.Limiter {
	m := make(map[string]*rate.Limiter, len(limits))
	for name, l := range limits {
		m[name] = newBucket(l)
	}
	return m
}

func newBucket(l Limit) *rate.Limiter { return rate.NewLimiter(rate.Limit(l.RPS), l.Burst) }

// Allow takes a token for one request of a sandbox to provider from every
// bucket that applies, or none and says why. name is the sandbox's name, which
// picks its limit (Config.Sandboxes, else Config.Sandbox); key tells apart the
// sandboxes that share a name (the proxy passes Sandbox.ID, the netns cookie)
// and picks the bucket: each key has a bucket of its own, under a named limit
// too. An empty key means name.
func (l *Limiter) Allow(provider, name, key string) (Refusal, bool) {
	return l.AllowAt(time.Now(), provider, name, key)
}

// AllowAt is Allow at time now; tests pass their own clock.
func (l *Limiter) AllowAt(now time.Time, provider, name, key string) (Refusal, bool) {
	if l == nil {
		return Refusal{}, true
	}
	type held struct {
		res *rate.Reservation
		why Refusal
	}
	var hs []held
	if b, ok := l.providers[provider]; ok {
		hs = append(hs, held{b.ReserveN(now, 1),
			Refusal{Scope: ScopeProvider, Name: provider, Limit: l.cfg.Providers[provider]}})
	}
	if key == "" {
		key = name
	}
	if b, lim, ok := l.sandboxBucket(name, key); ok {
		hs = append(hs, held{b.ReserveN(now, 1),
			Refusal{Scope: ScopeSandbox, Name: name, Limit: lim}})
	}

	// The request passes only if no bucket makes it wait. Otherwise every
	// reservation is given back, so no bucket pays for a refused request, and
	// the answer is the longest wait: a retry needs every bucket to agree.
	var worst Refusal
	for _, h := range hs {
		if d := wait(h.res, now); d > worst.RetryAfter {
			worst = h.why
			worst.RetryAfter = d
		}
	}
	if worst.RetryAfter == 0 {
		return Refusal{}, true
	}
	for _, h := range hs {
		h.res.CancelAt(now)
	}
	return worst, false
}

// wait is how long the reservation would have the request wait. A reservation
// that can never be met (more tokens than the burst) waits forever; New's
// validation makes that impossible for one token.
func wait(r *rate.Reservation, now time.Time) time.Duration {
	if !r.OK() {
		return rate.InfDuration
	}
	return r.DelayFrom(now)
}

// sandboxBucket returns the bucket of the sandbox called name with key and
// its limit, making the bucket on the first request; false when no sandbox
// limit applies.
func (l *Limiter) sandboxBucket(name, key string) (*rate.Limiter, Limit, bool) {
	lim, ok := l.cfg.Sandboxes[name]
	if ok {
		return l.bucket(l.named, bucketKey{name, key}, lim), lim, true
	}
	if l.others == nil {
		return nil, Limit{}, false
	}
	return l.bucket(l.others, bucketKey{name, key}, *l.cfg.Sandbox), *l.cfg.Sandbox, true
}

// bucket returns the bucket of k in c, adding a full one the first time.
func (l *Limiter) bucket(c *lru.Cache[bucketKey, *rate.Limiter], k bucketKey,
	lim Limit) *rate.Limiter {

	if b, ok := c.Get(k); ok {
		return b
	}
	// Two first requests at once must share one bucket: PeekOrAdd keeps
	// whichever was added first.
	b := newBucket(lim)
	if prev, ok, _ := c.PeekOrAdd(k, b); ok {
		return prev
	}
	return b
}

// SandboxBuckets returns how many buckets of sandboxes under the default limit
// are held now (for tests and status).
func (l *Limiter) SandboxBuckets() int {
	if l == nil || l.others == nil {
		return 0
	}
	return l.others.Len()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

package audit

import (
	"maps"
	"sync"
)

// Counters tallies decision records. The zero value is not usable; use NewCounters.
// A nil *Counters ignores everything, so callers need not check.
type Counters struct {
	injectDecisions map[string]bool

	mu        sync.Mutex
	requests  uint64
	bySandbox map[string]uint64
	refused   map[string]uint64
	injected  map[string]uint64
	decisions map[string]uint64
}

// NewCounters returns empty counters. injectDecisions are the decision values
// that mean "a credential was injected"; a request record with one of them and a
// provider counts as an injection for that provider.
func NewCounters(injectDecisions ...string) *Counters {
	c := &Counters{
		injectDecisions: map[string]bool{},
		bySandbox:       map[string]uint64{},
		refused:         map[string]uint64{},
		injected:        map[string]uint64{},
		decisions:       map[string]uint64{},
	}
	for _, d := range injectDecisions {
		c.injectDecisions[d] = true
	}
	return c
}

// Snapshot is a copy of the counters at one moment.
type Snapshot struct {
	// Requests counts request records (those naming an HTTP method).
	Requests uint64 `json:"requests"`
	// Refused counts records that carry a reason, by reason: refused
	// connections and refused requests alike.
	Refused map[string]uint64 `json:"refused"`
	// Injected counts requests that got a credential, by provider.
	Injected map[string]uint64 `json:"injected"`
	// Decisions counts every decision record by its decision.
	Decisions map[string]uint64 `json:"decisions"`
}

// Snapshot returns a copy of the counters; maps are never nil.
func (c *Counters) Snapshot() Snapshot {
	if c == nil {
		return Snapshot{Refused: map[string]uint64{}, Injected: map[string]uint64{},
			Decisions: map[string]uint64{}}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return Snapshot{
		Requests:  c.requests,
		Refused:   maps.Clone(c.refused),
		Injected:  maps.Clone(c.injected),
		Decisions: maps.Clone(c.decisions),
	}
}

// SandboxRequests returns the number of request records naming sandbox.
func (c *Counters) SandboxRequests(sandbox string) uint64 {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bySandbox[sandbox]
}

func (c *Counters) observe(f fields) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()

	c.decisions[f.decision]++
	if f.reason != "" {
		c.refused[f.reason]++
	}
	if f.method == "" {
		return
	}
	c.requests++
	c.bySandbox[f.sandbox]++
	if f.provider != "" && c.injectDecisions[f.decision] {
		c.injected[f.provider]++
	}
}

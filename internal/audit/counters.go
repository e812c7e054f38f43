package audit

import (
	"maps"
	"sync"
)

// Counters tallies decision records. The zero value is not usable; use NewCounters.
// A nil *Counters ignores everything, so callers need not check.
type Counters struct {
	inject  string          // decision of a request forwarded with a key
	allowed map[string]bool // decisions that are not refusals

	mu        sync.Mutex
	requests  uint64
	bySandbox map[string]uint64 // by KeySandboxID, else KeySandbox
	refused   map[string]uint64
	injected  map[string]uint64
	decisions map[string]uint64
}

// NewCounters returns empty counters. inject is the decision value that means
// "forwarded with the provider's key"; a request record with it counts as an
// injection for its provider. Records whose decision is neither inject nor one
// of allowed (such as a passthrough) count as refusals.
func NewCounters(inject string, allowed ...string) *Counters {
	c := &Counters{
		inject:    inject,
		allowed:   map[string]bool{inject: true},
		bySandbox: map[string]uint64{},
		refused:   map[string]uint64{},
		injected:  map[string]uint64{},
		decisions: map[string]uint64{},
	}
	for _, d := range allowed {
		c.allowed[d] = true
	}
	return c
}

// Snapshot is a copy of the counters at one moment.
type Snapshot struct {
	// Requests counts request records (those naming an HTTP method).
	Requests uint64 `json:"requests"`
	// Refused counts refused connections and requests by their decision (the
	// proxy's reason class, such as deny or no_credential; the free-text
	// reason is in the audit line).
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

// SandboxRequests returns the number of request records of the sandbox with
// key id: records are counted by their KeySandboxID, which tells apart
// namespaces attached under one name, and by their KeySandbox only when they
// carry no KeySandboxID.
func (c *Counters) SandboxRequests(id string) uint64 {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bySandbox[id]
}

func (c *Counters) observe(f fields) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()

	c.decisions[f.decision]++
	if !c.allowed[f.decision] {
		c.refused[f.decision]++
	}
	if f.method == "" {
		return
	}
	c.requests++
	id := f.sandboxID
	if id == "" {
		id = f.sandbox
	}
	c.bySandbox[id]++
	if f.provider != "" && f.decision == c.inject {
		c.injected[f.provider]++
	}
}

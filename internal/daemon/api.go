package daemon

import (
	"time"

	"github.com/hermes-netd/hermes-netd/internal/audit"
)

// Admin API paths. Every body is JSON; failures answer {"error": "..."}.
const (
	PathAttach  = "/v1/attach" // POST NetnsRequest -> Attachment
	PathDetach  = "/v1/detach" // POST NetnsRequest -> DetachResult
	PathStatus  = "/v1/status" // GET -> Status
	PathReload  = "/v1/reload" // POST -> ReloadResult
	PathMetrics = "/metrics"   // GET, Prometheus text format
)

// NetnsRequest names a namespace: a name under /var/run/netns, a path, or pid:N.
type NetnsRequest struct {
	Netns string `json:"netns"`
}

// Attachment describes one attached namespace.
type Attachment struct {
	Record
	// Existing is true when the namespace was already attached (attach is idempotent).
	Existing bool `json:"existing,omitempty"`
	// Connections counts connections accepted from the namespace since attach.
	Connections uint64 `json:"connections"`
	// Requests counts the requests the proxy recorded for the namespace.
	Requests uint64 `json:"requests"`
	// NameGone is true when Spec no longer names the namespace (name deleted,
	// pid:N exited) but processes still live in it, so it stays intercepted.
	NameGone bool `json:"name_gone,omitempty"`
}

// DetachResult answers a detach.
type DetachResult struct {
	Netns string `json:"netns"`
	// Cookie is the netns cookie of what was detached.
	Cookie uint64 `json:"cookie,omitempty"`
	// WasAttached is false when there was nothing to detach (detach is idempotent).
	WasAttached bool `json:"was_attached"`
}

// ReloadResult answers a reload.
type ReloadResult struct {
	Config string `json:"config"`
	// NeedsRestart names changed settings that only apply at start.
	NeedsRestart []string `json:"needs_restart,omitempty"`
}

// ProviderStatus says whether a provider can inject. It never holds a key.
type ProviderStatus struct {
	Name        string   `json:"name"`
	Domains     []string `json:"domains"`
	Key         string   `json:"key"`                   // secrets name
	Loaded      bool     `json:"loaded"`                // a usable key is present
	Fingerprint string   `json:"fingerprint,omitempty"` // sha256 prefix of the key
	Problem     string   `json:"problem,omitempty"`     // why a present key is unusable
}

// Status is the daemon's answer to GET /v1/status.
type Status struct {
	Version    string       `json:"version"`
	PID        int          `json:"pid"`
	Started    time.Time    `json:"started"`
	Mode       string       `json:"mode"`        // ebpf or nft
	ModeReason string       `json:"mode_reason"` // why that mode
	Config     string       `json:"config"`
	Attached   []Attachment `json:"attached"`
	// Kept are state records that could not be attached again at start for a
	// reason other than the namespace being gone; see the daemon's log.
	Kept []Record `json:"kept,omitempty"`
	// Retired are namespaces the daemon stopped serving when nothing it could
	// see held them any more; their redirect stays (fail closed). Detach one
	// with "cookie:N" to drop its redirect entry.
	Retired   []Record         `json:"retired,omitempty"`
	Providers []ProviderStatus `json:"providers"`
	Counters  audit.Snapshot   `json:"counters"`
}

type errorBody struct {
	Error string `json:"error"`
}

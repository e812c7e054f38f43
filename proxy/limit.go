package proxy

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/hermes-netd/hermes-netd/internal/ratelimit"
)

// rateLimited answers a request over a rate limit: 429 with Retry-After and
// the usual JSON error body. The client learns the provider and which kind
// of limit refused it, but not the name the host gives its sandbox; the
// record has both.
func rateLimited(w http.ResponseWriter, st *reqState, why ratelimit.Refusal) {
	secs := retryAfterSeconds(why.RetryAfter)
	provider := st.info.provider.Name

	var limit string
	switch why.Scope {
	case ratelimit.ScopeProvider:
		limit = fmt.Sprintf("the provider rate limit of %s (%v, shared by all sandboxes)",
			provider, why.Limit)
	default:
		limit = fmt.Sprintf("the sandbox rate limit (%v, across providers)", why.Limit)
	}
	st.decision = DecisionRateLimited
	st.reason = fmt.Sprintf("%s limit of %s (%v) reached; retry after %ds",
		why.Scope, why.Name, why.Limit, secs)

	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeJSONError(w, http.StatusTooManyRequests, "hermes_rate_limited",
		fmt.Sprintf("request to provider %q not forwarded: over %s; retry after %d s",
			provider, limit, secs))
}

// retryAfterSeconds rounds a wait up to whole seconds, at least 1: Retry-After
// has no fractions, and 0 would invite an immediate retry that fails again.
func retryAfterSeconds(d time.Duration) int {
	return int(max(1, math.Ceil(d.Seconds())))
}

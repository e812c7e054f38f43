package proxy

// Attribute keys of the proxy's slog records, kept in one place so that audit
// tooling has a single list to follow. The record time is slog's own.
// KeySandboxID tells apart sandboxes that share a name (a netns name made
// again): it is what the per-sandbox connection cap, rate limit buckets and
// the daemon's request counters go by.
const (
	KeySandbox   = "sandbox"    // Sandbox.Name the connection came from
	KeySandboxID = "sandbox_id" // Sandbox.ID (netns cookie), else Sandbox.Name
	KeyPID       = "pid"        // client process, 0 when unknown
	KeyUID       = "uid"        // client user, 0 when unknown
	KeyProvider  = "provider"   // provider name, intercepted traffic only
	KeyMethod    = "method"     // HTTP method
	KeyHost      = "host"       // SNI (or the request's authority on a 421)
	KeyPath      = "path"       // URL path, never the query (it may carry a key)
	KeyStatus    = "status"     // HTTP status sent to the client
	KeyBytesIn   = "bytes_in"   // bytes from the client (request body, or spliced)
	KeyBytesOut  = "bytes_out"  // bytes to the client (response body, or spliced)
	KeyDuration  = "duration"   // wall time of the request or connection
	KeyDecision  = "decision"   // one of the Decision* values below
	KeyReason    = "reason"     // why, for anything other than a plain success
	KeyDst       = "dst"        // original destination address:port
	KeyProto     = "proto"      // negotiated client-side protocol: h2 or http/1.1
	KeyError     = "error"      // an operational error (accept failures)
	KeyFailures  = "failures"   // accept errors since the previous such record
	KeyBackoff   = "backoff"    // wait before the next accept
)

// Values of KeyDecision.
const (
	DecisionIntercept   = "intercept"      // request forwarded with the provider's key
	DecisionPassthrough = "passthrough"    // connection spliced untouched
	DecisionDeny        = "deny"           // connection refused
	DecisionMisdirected = "misdirected"    // authority != SNI, answered 421
	DecisionNoKey       = "no_credential"  // provider has no usable key, not forwarded
	DecisionUpstreamErr = "upstream_error" // upstream unreachable or refused, 502
	DecisionRateLimited = "rate_limited"   // over a rate limit, answered 429, not forwarded
)

// Record messages, constant so that they can be grepped and counted.
const (
	msgRequest       = "Request"
	msgPassthrough   = "Passthrough connection"
	msgRefused       = "Connection refused"
	msgConnError     = "Connection error"
	msgAcceptFailing = "Accept failing; backing off"
)

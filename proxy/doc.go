// Package proxy is the interception server of hermes-netd: it takes the TCP
// connections that the redirect layer steered away from a sandbox's :443
// traffic, reads each connection's TLS ClientHello without consuming it, and
// decides from the SNI what happens next.
//
//   - A provider domain is intercepted: TLS is terminated with a leaf minted for
//     exactly that name, every request's authority must equal the SNI (else 421),
//     client-supplied credentials are stripped, the provider's key is injected and
//     the request is forwarded to the connection's original destination over TLS
//     verified for the SNI.
//   - A passthrough domain is spliced to the original destination untouched,
//     once that destination is found to be one of the name's own addresses
//     (Policy.Hosts, else DNS), so an allowed SNI cannot be aimed elsewhere.
//   - Anything else, and anything that is not a well-formed TLS ClientHello with
//     an SNI, is refused (or passed through when the policy's default says so).
//
// The package knows nothing of network namespaces or BPF: the caller hands
// Serve a listener and a Sandbox whose Origin func says where each accepted
// connection was going. That keeps everything here testable on loopback.
//
// Upstream dials happen in the caller's (the host's) network namespace, so an
// SSRF guard refuses non-public destinations unless Policy.AllowUpstream covers
// them. Redirects are never followed: they go back to the client, whose next
// connection is judged on its own.
//
// Answers the proxy itself gives on an intercepted connection, each with a
// JSON body {"error":{"type":...,"message":...}} in the shape provider SDKs
// parse:
//
//   - 421 hermes_misdirected_request: the request's authority is not the SNI.
//   - 503 hermes_no_credential: the provider has no usable key. 503, not 502,
//     because nothing upstream failed: the host is not configured for it yet.
//     The request is never forwarded.
//   - 429 hermes_rate_limited: Policy.Limits refused the request, by the
//     provider's limit (shared by all sandboxes) or the sandbox's own; the
//     message says which, and Retry-After says in whole seconds (at least 1)
//     when a retry would pass. The request is never forwarded.
//   - 502 hermes_upstream_error: the upstream could not be reached, failed TLS
//     verification, was refused by the SSRF guard, or failed before sending
//     response headers. After headers, the response is aborted instead
//     (HTTP/1.1 connection closed mid-body, HTTP/2 stream reset), so a
//     truncated stream never looks complete.
//
// Responses from an intercepted upstream are scanned for the credential, as
// defense in depth for the promise that no key enters a sandbox: an upstream
// that reflects its request (an echo endpoint, a debugging API, an error that
// quotes the Authorization header) would otherwise hand the key back. Every
// form in which the proxy sent the key is masked: the raw key, the header
// value it set, the base64 token of basic auth, and the key URL-encoded as in
// the query form. A mask has the length of what it hides (the key's bytes
// become '*', or another byte when '*' is part of the key), so Content-Length
// stays valid. Response header names and values, 1xx informational headers,
// trailers and the body are all scanned. The body is masked as it streams:
// between two reads the proxy holds back only bytes that could still begin a
// key (never more than its length minus one), so server-sent events go out
// as soon as the upstream flushes them.
//
// Only whole occurrences are masked: an upstream that echoes part of a key
// (truncated to a length, or its last characters) passes that part through.
// When the upstream fails mid-body, the response is aborted and the bytes held
// back as a possible key prefix are dropped, not sent.
//
// Two things the scan cannot see:
//
//   - Compressed bodies, by default. Content-Encoding (gzip, br, deflate,
//     zstd) is left as the client and the upstream negotiated it, and the scan
//     works on the encoded bytes, so a compressed echo carries the key through
//     unless the encoding happens to store it verbatim (then the mask makes
//     the body fail to decode rather than leak). The client chooses
//     Accept-Encoding, so a sandbox can ask for this. Policy.IdentityEncoding
//     (identity_encoding in the config) closes the gap: every intercepted
//     request goes upstream with Accept-Encoding: identity, so bodies come
//     back in the clear and are scanned, and a body compressed anyway is
//     refused with a 502 instead of relayed. The cost is bandwidth: large
//     responses travel uncompressed between provider and host (the sandbox
//     gets them uncompressed too).
//   - Websocket frames (and any other protocol after a 101 Switching
//     Protocols). The 101's headers are masked; the frames are relayed as they
//     are, since masking inside them would need a frame parser per protocol.
//
// The proxy writes one slog record per intercepted request, per passthrough
// connection and per refused connection; attribute keys are in logkeys.go. No
// header is ever logged, and no credential appears in a record, an error or a
// response.
package proxy

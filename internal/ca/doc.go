// Package ca is hermes-netd's local certificate authority: an ECDSA P-256 CA
// made on first start and kept in the state directory (ca.crt 0644, ca.key
// 0600), and the leaf certificates it mints per TLS server name so the proxy
// can terminate sandbox connections to provider domains.
//
// A leaf names exactly one DNS name, the SNI, and no wildcard, so a client
// cannot reuse one connection for another host (HTTP/2 coalescing). Leaves
// live in a bounded LRU, and concurrent handshakes for a new name share one
// mint.
package ca

// Package ratelimit caps how fast requests go through the proxy, with token
// buckets from golang.org/x/time/rate.
//
// Two kinds of bucket apply to each intercepted request:
//
//   - one per provider, shared by every sandbox, for providers that have a
//     limit;
//   - one per sandbox, across providers: a named sandbox's own limit, else the
//     default sandbox limit, else none.
//
// A request passes only if every bucket that applies to it has a token. The
// buckets are reserved together and, when one of them refuses, the
// reservations are cancelled, so a request refused by its sandbox's bucket
// does not spend a token of its provider's bucket (and the other way round).
// A refusal says which limit refused and how long until a retry would pass.
//
// Buckets of named sandboxes and of providers are made up front, since the
// configuration bounds them. Buckets of other sandboxes are made on their
// first request and kept in an LRU of Config.MaxSandboxes entries, so a churn
// of sandboxes cannot grow memory without bound. The bucket that gets dropped
// is the least recently used one, which is almost always full again by then;
// dropping a bucket that is not full gives that sandbox a fresh burst.
//
// A Limiter's limits are fixed. A configuration reload builds a new Limiter
// that replaces the old one; every bucket starts full again at that moment.
package ratelimit

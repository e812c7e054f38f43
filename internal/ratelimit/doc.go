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
// A sandbox is looked up by its name (the netns spec given to attach), but its
// bucket is its own by a key that tells apart namespaces sharing that name
// (the netns cookie): a name made again for a new namespace, or a pid reused,
// gets a fresh bucket and does not spend the old namespace's tokens. This
// holds for named limits too: a named limit applies to each namespace
// attached under that name, not to all of them together.
//
// A request passes only if every bucket that applies to it has a token. The
// buckets are reserved together and, when one of them refuses, the
// reservations are cancelled, so a request refused by its sandbox's bucket
// does not spend a token of its provider's bucket (and the other way round).
// A refusal says which limit refused and how long until a retry would pass.
//
// Buckets of providers are made up front, since the configuration bounds
// them. Buckets of sandboxes are made on their first request and kept in an
// LRU of Config.MaxSandboxes entries (one LRU for named sandboxes, one for the
// others), so a churn of namespaces cannot grow memory without bound. The bucket that gets dropped
// is the least recently used one, which is almost always full again by then;
// dropping a bucket that is not full gives that sandbox a fresh burst.
//
// A Limiter's limits are fixed. A configuration reload builds a new Limiter
// that replaces the old one; every bucket starts full again at that moment.
package ratelimit

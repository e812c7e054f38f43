// Package netsetup holds the network-namespace mechanics of hermes-netd: opening a
// sandbox's netns by name, path or pid, reading its cookie, running code and creating
// sockets inside it without leaving any thread of the process in the wrong namespace,
// the nftables table that redirects and rejects a sandbox's traffic (the fail-closed
// fallback of the BPF path), reading the original destination of a redirected
// connection, and finding the cgroup2 and bpffs mounts the BPF path needs.
//
// The package never logs; it returns wrapped errors and sentinel errors (ErrNotFound,
// ErrNoOriginalDst) for expected conditions.
package netsetup

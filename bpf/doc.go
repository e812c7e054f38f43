// Package bpf holds hermes-netd's eBPF programs and the loader that installs them.
//
// The programs (redirect.c) are attached once to the cgroup2 root and act only for
// sockets of network namespaces registered with [Redirector.Register]:
//
//   - TCP connect() to an intercepted port (default 443) is rewritten to the
//     namespace's listener, 127.0.0.1:Port4 or [::1]:Port6 (a v4-mapped destination
//     on a dual-stack socket goes to ::ffff:127.0.0.1:Port4), and the original
//     destination is recorded with the pid, uid and cgroup of the caller;
//   - UDP connect() or sendmsg() to an intercepted port fails with EPERM, so QUIC
//     clients fall back to TCP at once;
//   - getsockopt(SO_ORIGINAL_DST) and getsockopt(IP6T_SO_ORIGINAL_DST) on the
//     listener's accepted socket answer with the recorded original destination.
//
// Everything is pinned under one bpffs directory, so interception survives the
// daemon's exit and a restarted daemon picks the pins up again ([Install] is
// idempotent); [Uninstall] removes it all. Program and map names all start with
// "hermes_".
//
// The objects are compiled by bpf2go (see generate.go) and committed;
// `make generate` rebuilds them byte for byte.
package bpf

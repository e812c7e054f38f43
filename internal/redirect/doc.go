// Package redirect is the Go API the daemon uses to intercept a sandbox's
// outbound connections: it chooses between the BPF path and the nftables path,
// attaches and detaches network namespaces, and tells for an accepted connection
// where it was going and, on the BPF path, which process made it.
//
// Both paths end in the same place: a connection to an intercepted TCP port lands
// on the daemon's listener inside the sandbox's own netns (127.0.0.1:Port4 or
// [::1]:Port6), and UDP to an intercepted port is refused at once. The nftables
// table is installed in every attached netns in both modes, so interception stays
// fail-closed even if the BPF programs were removed behind the daemon's back.
package redirect

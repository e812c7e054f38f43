// Package daemon is hermes-netd's control plane: it attaches network namespaces
// (a listener inside each, the kernel redirect pointed at it, the proxy serving it),
// remembers them in a state file so that a restarted daemon takes them back, notices
// when one vanishes, and answers the admin API over a root-only unix socket. Client
// is the other end of that socket, used by the CLI.
//
// The kernel half (netsetup + internal/redirect) and the proxy sit behind the small
// Kernel, Namespace and Proxy interfaces so that the control logic is testable
// without privileges; Run wires in the real ones.
package daemon

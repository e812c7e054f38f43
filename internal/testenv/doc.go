// Package testenv builds the world the end-to-end suite and the demo run in:
// three network namespaces wired by veth pairs, and a fake internet.
//
//	sandbox (198.19.1.2, 2001:db8:1::2)
//	   | veth
//	host (198.19.1.1 / 198.19.2.1; forwards; the daemon under test runs here)
//	   | veth
//	inet (198.19.2.2; fake sites on 198.18.0.0/15 and 2001:db8::10)
//
// The inet namespace holds the fake provider APIs of package fakeapi, served
// by goroutines of the calling process on listeners made inside it. The
// sandbox resolves the sites' names through /etc/netns/NAME/hosts, which
// `ip netns exec` mounts over /etc/hosts for SandboxCmd.
//
// Every name carries a per-run prefix (hermes-e2e-<id>-), so two suites can
// run at once, and nothing is ever added to the initial namespace: the only
// way out of the sandbox leads to the fake internet. Close removes all of it,
// also after a partial failure; CleanupStale removes what a killed run left.
//
// StartDaemon runs the `hermes-netd serve` under test and keeps its log,
// RunCommand runs a command line for its exit status and outputs, and
// CheckNodeStream checks what the suite's Node client printed.
//
// Everything here needs root.
package testenv

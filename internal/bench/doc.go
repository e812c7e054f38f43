// Command bench is `make bench`: it measures what interception by
// hermes-netd costs, side by side with direct connections and with peer
// proxies, on the same machine in the same run.
//
// It builds the test topology of package testenv (host, sandbox and fake
// internet namespaces), serves a minimal fast HTTPS upstream from inside the
// fake internet (HTTP/1.1 and HTTP/2, certificate from the topology's
// upstream CA), starts `hermes-netd serve` in the host namespace and runs
// each scenario in alternation: direct (sandbox not attached, the client
// trusting the upstream CA) and through hermes-netd (attached, the client
// trusting the hermes CA), several rounds each. It prints medians over the
// rounds and their ratios or differences, next to each scenario's target
// (from issue 5), and writes the same, with every round's figure and a
// description of the machine, as JSON.
//
// Clients run inside the sandbox: wrk and h2load for load, Go clients for
// per-request latency, server-sent events, bulk transfers, idle connections
// and TLS handshakes. In-process costs come from the repository's Go
// benchmarks (internal/ca, bpf, internal/redirect), run with `go test -bench`
// and parsed. The proxy's CPU time comes from /proc/PID/stat and its memory
// from /proc/PID/status.
//
// Every figure is checked to have taken its path: the upstream counts
// requests carrying the injected key, which must be none on the direct path
// and some through a proxy. A target that is not met is reported as such;
// nothing is adjusted.
//
// Environment: BENCH_QUICK=1 for a short run, BENCH_OUT=file.json for the
// JSON (default bench-results/bench.json; the table is also written as
// Markdown beside it, with .md for .json), BENCH_ONLY=1,6 to run some
// scenarios only. It needs root, and removes everything it made when it
// ends, also on failure or Ctrl-C.
package main

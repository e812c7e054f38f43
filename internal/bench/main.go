//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hermes-netd/hermes-netd/internal/testenv"
)

// settings size the scenarios; quick is for a smoke run under two minutes.
type settings struct {
	Quick       bool
	Rounds      int           // alternations of direct and hermes-netd per scenario
	LatencyN    int           // sequential requests per round (scenario 1)
	LoadTime    time.Duration // wrk / h2load run per round (scenario 1, 8)
	TTFBN       int           // new-connection requests per round (scenario 2)
	SSEEvents   int           // events per round (scenario 3)
	BulkBytes   int64         // bytes per transfer (scenario 4)
	BulkRounds  int
	IdleConns   int    // scenario 5
	MintNames   int    // new names handshaken through hermes-netd (scenario 6)
	GoBenchtime string // -benchtime of the Go benchmarks (scenarios 6, 7)
	GoCount     int    // -count of the Go benchmarks
}

func defaults(quick bool) settings {
	if quick {
		return settings{Quick: true, Rounds: 2, LatencyN: 300, LoadTime: time.Second,
			TTFBN: 8, SSEEvents: 50, BulkBytes: 64 << 20, BulkRounds: 1, IdleConns: 1000,
			MintNames: 10, GoBenchtime: "100ms", GoCount: 1}
	}
	return settings{Rounds: 5, LatencyN: 2000, LoadTime: 3 * time.Second, TTFBN: 30,
		SSEEvents: 200, BulkBytes: 1 << 30, BulkRounds: 3, IdleConns: 10000,
		MintNames: 30, GoBenchtime: "1s", GoCount: 3}
}

// bench is one run: settings, the world once it is built, and the report.
type bench struct {
	set    settings
	w      *world
	rep    *report
	logger *slog.Logger
	failed bool
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	if os.Geteuid() != 0 {
		return errors.New("make bench needs root: it creates network namespaces, " +
			"loads BPF programs and runs hermes-netd (run it with sudo)")
	}
	quick := os.Getenv("BENCH_QUICK") != "" && os.Getenv("BENCH_QUICK") != "0"
	out := os.Getenv("BENCH_OUT")
	if out == "" {
		out = filepath.Join("bench-results", "bench.json")
	}
	for _, tool := range []string{"ip", "nsenter", "h2load", "wrk"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("needs %s (run vagrant/provision.sh or make deps): %w", tool, err)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{
		Level: slog.LevelWarn}))
	b := &bench{set: defaults(quick), logger: logger, rep: &report{
		Started: time.Now().UTC(), Quick: quick, Machine: describeMachine(),
	}}
	b.rep.Rounds, b.rep.Settings = b.set.Rounds, b.set
	b.rep.LoadAverage[0] = loadAverage()
	err := b.runAll(ctx)

	b.rep.Duration = time.Since(b.rep.Started).Round(time.Second).String()
	b.rep.LoadAverage[1] = loadAverage()
	sortRows(b.rep.Rows)
	fmt.Println()
	b.rep.printTable(os.Stdout)
	if werr := os.MkdirAll(filepath.Dir(out), 0o755); werr == nil {
		werr = b.rep.writeJSON(out)
		if werr == nil {
			werr = b.rep.writeMarkdown(strings.TrimSuffix(out, ".json") + ".md")
		}
		if werr == nil {
			fmt.Printf("\nJSON written to %s, the table as Markdown beside it (%s, %s)\n",
				out, b.rep.Duration,
				map[bool]string{true: "quick", false: "default settings"}[quick])
		}
		err = errors.Join(err, werr)
	}
	if b.failed && err == nil {
		err = errors.New("some scenarios failed; see the table")
	}
	return err
}

// runAll runs the scenarios. The Go benchmarks come first, while no daemon
// of ours has BPF programs attached, so their no-BPF baseline is one.
func (b *bench) runAll(ctx context.Context) error {
	only := os.Getenv("BENCH_ONLY") // e.g. "1,6": run only these scenarios
	step := func(name string, fn func(context.Context) error) {
		if ctx.Err() != nil {
			return
		}
		if only != "" && !slices.Contains(strings.Split(only, ","), strings.Fields(name)[0]) {
			return
		}
		progress("%s", name)
		if err := fn(ctx); err != nil {
			b.failed = true
			note := "failed: " + err.Error()
			if ctx.Err() != nil {
				note = "interrupted"
			}
			b.rep.add(row{Scenario: name, Metric: "run", Note: note})
			fmt.Fprintf(os.Stderr, "bench: %s: %v\n", name, err)
		}
	}
	b.noteNeighbours("at the start")
	defer b.noteNeighbours("at the end")
	step("7 connect hook", b.connectHook)
	step("6 leaf mint", b.mintGoBench)

	progress("building the topology and starting hermes-netd")
	w, err := newWorld(ctx, b.logger)
	if err != nil {
		return err
	}
	b.w = w
	defer func() {
		if cerr := w.close(); cerr != nil {
			fmt.Fprintln(os.Stderr, "bench: cleaning up:", cerr)
			b.failed = true
		}
	}()

	step("1 keep-alive", b.keepAlive)
	step("6 leaf mint", b.mintBurst)
	step("3 SSE", b.sse)
	step("2 new connection", b.newConnection)
	step("4 bulk", b.bulk)
	step("5 idle connections", b.idle)
	step("8 peers", b.peers)
	return ctx.Err()
}

// noteNeighbours records other runs' namespaces and BPF pins: a test suite
// running beside the bench shares its CPUs, and BPF programs it attached
// to the cgroup root run on every connect of the machine.
func (b *bench) noteNeighbours(when string) {
	ours := ""
	if b.w != nil {
		ours = testenv.Prefix + b.w.env.ID()
	}
	var others []string
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, l := range strings.Split(string(out), "\n") {
		if n := strings.Fields(l + " x")[0]; strings.HasPrefix(n, "hermes") &&
			(ours == "" || !strings.HasPrefix(n, ours)) {
			others = append(others, "netns "+n)
		}
	}
	pins, _ := os.ReadDir("/sys/fs/bpf")
	for _, p := range pins {
		if strings.HasPrefix(p.Name(), "hermes") && p.Name() != ours {
			others = append(others, "bpf pin /sys/fs/bpf/"+p.Name())
		}
	}
	if len(others) > 0 {
		b.rep.Notes = append(b.rep.Notes, fmt.Sprintf("other runs on this machine %s "+
			"(their load and BPF programs share the machine): %s", when,
			strings.Join(others, ", ")))
	}
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s bench: %s\n", time.Now().Format("15:04:05"),
		fmt.Sprintf(format, args...))
}

// sortRows orders rows by scenario number, keeping each scenario's order.
func sortRows(rows []row) {
	num := func(s string) int {
		n, _ := strconv.Atoi(strings.Fields(s + " x")[0])
		return n
	}
	slices.SortStableFunc(rows, func(a, b row) int { return num(a.Scenario) - num(b.Scenario) })
}

// figures are named measurements of one round on one path.
type figures map[string]float64

// results are every round's figures: results[name][path] lists the rounds.
type results map[string]map[path][]float64

// alternate runs fn for each path in turn, rounds times, with the sandbox
// attached or detached to match.
func (b *bench) alternate(ctx context.Context, rounds int, paths []path,
	fn func(p path) (figures, error)) (results, error) {
	out := results{}
	for r := 0; r < rounds; r++ {
		for _, p := range paths {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if err := b.w.setPath(p); err != nil {
				return nil, err
			}
			before := b.w.counts()
			figs, err := fn(p)
			if err != nil {
				return nil, fmt.Errorf("%s, round %d: %w", p, r+1, err)
			}
			if err := checkPath(p, b.w.counts().sub(before)); err != nil {
				return nil, fmt.Errorf("%s, round %d: %w", p, r+1, err)
			}
			for k, v := range figs {
				if out[k] == nil {
					out[k] = map[path][]float64{}
				}
				out[k][p] = append(out[k][p], v)
			}
		}
	}
	return out, nil
}

// checkPath fails a round whose requests did not take path p: direct ones
// come from the sandbox's address without the injected key; proxied ones
// come from the host's address, with the key unless the proxy cannot set
// one (sslsplit).
func checkPath(p path, c counts) error {
	switch {
	case p == direct && (c.proxied > 0 || c.injected > 0 || c.fromSandbox == 0):
		return fmt.Errorf("direct round: %d requests came through a proxy, %d had the "+
			"injected key, %d came from the sandbox", c.proxied, c.injected, c.fromSandbox)
	case p != direct && (c.fromSandbox > 0 || c.proxied == 0):
		return fmt.Errorf("%s round: %d requests came straight from the sandbox, %d "+
			"through a proxy", p, c.fromSandbox, c.proxied)
	case p != direct && p != viaSplit && c.injected < c.proxied:
		return fmt.Errorf("%s round: only %d of %d requests had the injected key", p,
			c.injected, c.proxied)
	}
	return nil
}

// compare makes a row of figure name from direct and hermes-netd rounds.
func (res results) compare(scenario, metric, name, unit, how string) row {
	return compared(scenario, metric, unit, how, res[name][direct], res[name][viaHermes])
}

// only makes a row of a figure that exists on the hermes-netd side only.
func (res results) only(scenario, metric, name, unit string) row {
	h := res[name][viaHermes]
	return row{Scenario: scenario, Metric: metric, Unit: unit, Hermes: f(median(h)),
		Rounds: map[string][]float64{string(viaHermes): h}}
}

//go:build linux

package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
)

const (
	s6 = "6 leaf mint"
	s7 = "7 connect hook"
)

// goBench runs `go test -run '^$' -bench pattern` in pkg and returns, for
// each benchmark name (without the -N GOMAXPROCS suffix), each unit's values,
// one per -count run.
func (b *bench) goBench(ctx context.Context, pkg, pattern string) (
	map[string]map[string][]float64, error) {
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.CommandContext(ctx, gobin, "test", "-run", "^$", "-bench", pattern,
		"-benchtime", b.set.GoBenchtime, "-count", strconv.Itoa(b.set.GoCount), pkg)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("go test -bench %s %s: %w\n%s", pattern, pkg, err, out)
	}
	return parseGoBench(string(out))
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

func parseGoBench(out string) (map[string]map[string][]float64, error) {
	res := map[string]map[string][]float64{}
	for _, l := range strings.Split(out, "\n") {
		m := benchLine.FindStringSubmatch(strings.TrimSpace(l))
		if m == nil {
			continue
		}
		fs := strings.Fields(m[2])
		for i := 0; i+1 < len(fs); i += 2 {
			v, err := strconv.ParseFloat(fs[i], 64)
			if err != nil {
				continue
			}
			if res[m[1]] == nil {
				res[m[1]] = map[string][]float64{}
			}
			res[m[1]][fs[i+1]] = append(res[m[1]][fs[i+1]], v)
		}
	}
	if len(res) == 0 {
		return nil, fmt.Errorf("no benchmark results in:\n%s", out)
	}
	return res, nil
}

// mintGoBench is scenario 6's in-process half: the CA's mint cost, and a
// cached leaf's, from internal/ca's benchmarks.
func (b *bench) mintGoBench(ctx context.Context) error {
	res, err := b.goBench(ctx, "./internal/ca", "^(BenchmarkMint|BenchmarkLeafCacheGetCached)$")
	if err != nil {
		return err
	}
	mint, cached := res["BenchmarkMint"]["ns/op"], res["BenchmarkLeafCacheGetCached"]["ns/op"]
	if len(mint) == 0 || len(cached) == 0 {
		return fmt.Errorf("internal/ca benchmarks missing from the output: %v", res)
	}
	us := func(ns []float64) []float64 {
		out := make([]float64, len(ns))
		for i, v := range ns {
			out[i] = v / 1e3
		}
		return out
	}
	x := row{Scenario: s6, Metric: "mint cost (go bench internal/ca)", Unit: "us",
		Hermes: f(median(us(mint))), Rounds: map[string][]float64{"hermes": us(mint)}}
	b.rep.add(x.withTarget("<= 250 us", val(x.Hermes) <= 250))
	b.rep.add(row{Scenario: s6, Metric: "cached leaf lookup (go bench)", Unit: "us",
		Hermes: f(median(us(cached))), Rounds: map[string][]float64{"hermes": us(cached)}})
	return nil
}

// connectHook is scenario 7, from the bpf and internal/redirect benchmarks:
// the connect4 program's run time, the cost to namespaces that are not
// attached, and the BPF path against the nftables fallback.
func (b *bench) connectHook(ctx context.Context) error {
	bp, err := b.goBench(ctx, "./bpf", "^BenchmarkConnect$")
	if err != nil {
		return err
	}
	none := bp["BenchmarkConnect/no-bpf"]["ns/op"]
	unreg := bp["BenchmarkConnect/bpf-unregistered"]["ns/op"]
	redir := bp["BenchmarkConnect/bpf-redirect"]
	if len(none) == 0 || len(unreg) == 0 || len(redir["ns/connect4-run"]) == 0 {
		return fmt.Errorf("bpf benchmarks missing from the output: %v", bp)
	}
	run := median(redir["ns/connect4-run"])
	x := row{Scenario: s7, Metric: "connect4 run time per call (BPF stats)", Unit: "ns",
		Hermes: f(run), Rounds: map[string][]float64{"hermes": redir["ns/connect4-run"]}}
	b.rep.add(x.withTarget("<= 500 ns", run <= 500))
	if s := redir["ns/sockops-run"]; len(s) > 0 {
		b.rep.add(row{Scenario: s7, Metric: "sockops run time per call (BPF stats)",
			Unit: "ns", Hermes: f(median(s)), Rounds: map[string][]float64{"hermes": s}})
	}

	// Rate = 1/time per connect: unattached/none rate ratio is none/unreg time.
	rate := func(ns []float64) []float64 {
		out := make([]float64, len(ns))
		for i, v := range ns {
			out[i] = 1e9 / v
		}
		return out
	}
	x = compared(s7, "connect rate, netns not attached (programs loaded)", "conn/s",
		cmpRatio, rate(none), rate(unreg))
	x.Columns = [2]string{"no-bpf", "bpf"}
	b.rep.add(x.withTarget(">= 0.97x", val(x.Value) >= 0.97))

	rd, err := b.goBench(ctx, "./internal/redirect", "^BenchmarkConnect$")
	if err != nil {
		return err
	}
	nft, ebpf := rd["BenchmarkConnect/nft"]["ns/op"], rd["BenchmarkConnect/ebpf"]["ns/op"]
	if len(nft) == 0 || len(ebpf) == 0 {
		return fmt.Errorf("internal/redirect benchmarks missing from the output: %v", rd)
	}
	x = compared(s7, "intercepted connect rate, BPF vs nft path", "conn/s", cmpRatio,
		rate(nft), rate(ebpf))
	x.Columns = [2]string{"nft", "bpf"}
	b.rep.add(x.withTarget(">= 1.00x", val(x.Value) >= 1))
	if lo := rd["BenchmarkConnect/none/loopback"]["ns/op"]; len(lo) > 0 {
		x = compared(s7, "connect time, BPF redirect vs plain loopback", "ns", cmpAdded,
			lo, ebpf)
		x.Columns = [2]string{"loopback", "bpf"}
		b.rep.add(x)
	}
	return nil
}

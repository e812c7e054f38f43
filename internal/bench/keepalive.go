//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

const s1 = "1 keep-alive"

// keepAlive is scenario 1: 1 KiB each way on one kept-alive connection,
// HTTP/1.1 and HTTP/2. Latency comes from a Go client making one request at
// a time (so that the figures are the path's, not a queue's); throughput and
// the proxy's CPU per request from wrk (HTTP/1.1) and h2load (HTTP/2).
func (b *bench) keepAlive(ctx context.Context) error {
	for _, pr := range []proto{h1, h2} {
		res, err := b.alternate(ctx, b.set.Rounds, []path{direct, viaHermes},
			func(p path) (figures, error) { return b.latency(ctx, p, pr, fastHost) })
		if err != nil {
			return err
		}
		m := string(pr) + " latency "
		b.rep.add(latencyRow(res.compare(s1, m+"p50", "p50", "us", cmpAdded), 50))
		b.rep.add(latencyRow(res.compare(s1, m+"p99", "p99", "us", cmpAdded), 250))
	}

	for _, pr := range []proto{h1, h2} {
		res, err := b.alternate(ctx, b.set.Rounds, []path{direct, viaHermes},
			func(p path) (figures, error) { return b.load(ctx, p, pr, b.w.pid) })
		if err != nil {
			return err
		}
		tool := map[proto]string{h1: "wrk -c8", h2: "h2load -c4 -m8"}[pr]
		b.rep.add(res.compare(s1, fmt.Sprintf("%s throughput (%s)", pr, tool), "rps",
			"req/s", cmpRatio))
		b.rep.add(res.only(s1, string(pr)+" proxy CPU per request", "cpu_us", "us"))
	}
	return nil
}

func latencyRow(x row, limit float64) row {
	return x.withTarget(fmt.Sprintf("<= +%g us", limit), val(x.Value) <= limit)
}

// latency makes LatencyN sequential requests after a warm-up and returns
// their p50 and p99 in microseconds.
func (b *bench) latency(ctx context.Context, p path, pr proto, host string) (figures, error) {
	c := b.w.client(p, pr, host, true)
	defer closeClient(c)
	for i := 0; i < 50; i++ {
		if err := post1k(ctx, c, host); err != nil {
			return nil, err
		}
	}
	us := make([]float64, 0, b.set.LatencyN)
	for i := 0; i < b.set.LatencyN; i++ {
		start := time.Now()
		if err := post1k(ctx, c, host); err != nil {
			return nil, err
		}
		us = append(us, float64(time.Since(start).Nanoseconds())/1e3)
	}
	return figures{"p50": percentile(us, 50), "p99": percentile(us, 99)}, nil
}

// load runs wrk (h1) or h2load (h2) in the sandbox for LoadTime against
// host's /1k with 1 KiB uploads, and measures proxyPID's CPU meanwhile.
func (b *bench) load(ctx context.Context, p path, pr proto, proxyPID int) (figures, error) {
	if p == direct {
		proxyPID = 0
	}
	body := filepath.Join(b.w.dir, "body-1k")
	if err := os.WriteFile(body, payload, 0o644); err != nil {
		return nil, err
	}
	script := filepath.Join(b.w.dir, "post-1k.lua")
	lua := "wrk.method = \"POST\"\nwrk.body = string.rep(\"x\", 1024)\n" +
		"wrk.headers[\"Authorization\"] = \"Bearer dummy\"\n"
	if err := os.WriteFile(script, []byte(lua), 0o644); err != nil {
		return nil, err
	}
	secs := strconv.Itoa(int(b.set.LoadTime.Seconds()))
	url := "https://" + fastHost + "/1k"
	var args []string
	if pr == h1 {
		args = []string{"wrk", "-t1", "-c8", "-d" + secs + "s", "-s", script, url}
	} else {
		args = []string{"h2load", "-t1", "-c4", "-m8", "-D", secs, "-d", body,
			"-H", "Authorization: Bearer dummy", url}
	}

	cpu, err := startCPU(proxyPID)
	if err != nil {
		return nil, err
	}
	out, err := b.w.env.SandboxCmd(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%s: %w\n%s", args[0], err, out)
	}
	used, err := cpu.stop()
	if err != nil {
		return nil, err
	}
	var n, rps float64
	if pr == h1 {
		n, rps, err = parseWrk(string(out))
	} else {
		n, rps, err = parseH2load(string(out))
	}
	if err != nil {
		return nil, err
	}
	figs := figures{"rps": rps, "requests": n}
	if proxyPID != 0 {
		figs["cpu_us"] = float64(used.Microseconds()) / n
	}
	return figs, nil
}

var (
	wrkReqs   = regexp.MustCompile(`(\d+) requests in`)
	wrkRPS    = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	wrkNon2xx = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	wrkErrors = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), ` +
		`write (\d+), timeout (\d+)`)
	h2Reqs = regexp.MustCompile(`requests: \d+ total, \d+ started, \d+ done, (\d+) ` +
		`succeeded, (\d+) failed, (\d+) errored`)
	h2Status = regexp.MustCompile(`status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx`)
	h2RPS    = regexp.MustCompile(`finished in [\d.]+m?s, ([\d.]+) req/s`)
)

// parseWrk returns the completed requests and the rate; any error response
// or socket error fails the run, so that a failing path never looks fast.
func parseWrk(out string) (n, rps float64, err error) {
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		return 0, 0, fmt.Errorf("wrk got %s error responses:\n%s", m[1], out)
	}
	if m := wrkErrors.FindStringSubmatch(out); m != nil &&
		strings.Join(m[1:], "") != "0000" {
		return 0, 0, fmt.Errorf("wrk had socket errors:\n%s", out)
	}
	a, b := wrkReqs.FindStringSubmatch(out), wrkRPS.FindStringSubmatch(out)
	if a == nil || b == nil {
		return 0, 0, fmt.Errorf("cannot read wrk's output:\n%s", out)
	}
	n, _ = strconv.ParseFloat(a[1], 64)
	rps, _ = strconv.ParseFloat(b[1], 64)
	return n, rps, nil
}

func parseH2load(out string) (n, rps float64, err error) {
	r, s, x := h2Reqs.FindStringSubmatch(out), h2Status.FindStringSubmatch(out),
		h2RPS.FindStringSubmatch(out)
	if r == nil || s == nil || x == nil {
		return 0, 0, fmt.Errorf("cannot read h2load's output:\n%s", out)
	}
	if r[2] != "0" || r[3] != "0" || s[2] != "0" || s[3] != "0" || s[4] != "0" {
		return 0, 0, fmt.Errorf("h2load had failed or non-2xx requests:\n%s", out)
	}
	n, _ = strconv.ParseFloat(r[1], 64)
	rps, _ = strconv.ParseFloat(x[1], 64)
	if n == 0 {
		return 0, 0, fmt.Errorf("h2load completed no request:\n%s", out)
	}
	return n, rps, nil
}

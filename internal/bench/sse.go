//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const (
	s2 = "2 new connection"
	s3 = "3 SSE"
)

// sse is scenario 3: a stream of small events 10 ms apart. The upstream
// writes each event's send time (wall clock, the same clock the client reads:
// both run in this process), so each event's delivery latency is measured
// directly. Added p50 compares medians; "held back" is the slowest event
// through hermes-netd against the direct median.
func (b *bench) sse(ctx context.Context) error {
	var all = map[path][]float64{}
	res, err := b.alternate(ctx, b.set.Rounds, []path{direct, viaHermes},
		func(p path) (figures, error) {
			lat, err := b.sseRound(ctx, p)
			if err != nil {
				return nil, err
			}
			all[p] = append(all[p], lat...)
			return figures{"p50": percentile(lat, 50), "p99": percentile(lat, 99),
				"max": percentile(lat, 100)}, nil
		})
	if err != nil {
		return err
	}
	x := res.compare(s3, "event latency p50", "p50", "us", cmpAdded)
	b.rep.add(x.withTarget("<= +50 us", val(x.Value) <= 50))
	b.rep.add(res.compare(s3, "event latency p99", "p99", "us", cmpAdded))

	held := percentile(all[viaHermes], 100) - percentile(all[direct], 50)
	y := row{Scenario: s3, Metric: "slowest event through hermes-netd", Unit: "us",
		Direct: f(percentile(all[direct], 100)), Hermes: f(percentile(all[viaHermes], 100)),
		Compare: cmpAdded, Value: f(held)}
	y = y.withNote("added = slowest hermes-netd event minus the direct median, " +
		"over all rounds")
	b.rep.add(y.withTarget("<= +1000 us", held <= 1000))
	return nil
}

// sseRound reads SSEEvents events over HTTP/1.1 and returns each one's
// delivery latency in microseconds.
func (b *bench) sseRound(ctx context.Context, p path) ([]float64, error) {
	c := b.w.client(p, h1, fastHost, true)
	defer closeClient(c)
	url := "https://" + fastHost + "/sse?n=" + strconv.Itoa(b.set.SSEEvents)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var lat []float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		now := time.Now().UnixNano()
		v, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		sent, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad event %q", sc.Text())
		}
		lat = append(lat, float64(now-sent)/1e3)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(lat) != b.set.SSEEvents {
		return nil, fmt.Errorf("got %d events, want %d", len(lat), b.set.SSEEvents)
	}
	return lat, nil
}

// newConnection is scenario 2: one request per new client connection to an
// upstream 20 ms away. Through hermes-netd the client's handshake is local
// and the upstream connection pooled, so time to first byte should drop.
func (b *bench) newConnection(ctx context.Context) error {
	res, err := b.alternate(ctx, b.set.Rounds, []path{direct, viaHermes},
		func(p path) (figures, error) {
			c := b.w.client(p, h1, slowHost, false)
			defer closeClient(c)
			// One warm-up request: hermes-netd's upstream pool fills here.
			if _, err := ttfb(ctx, c, slowHost); err != nil {
				return nil, err
			}
			var ms []float64
			conns := b.w.slow.conns.Load()
			for i := 0; i < b.set.TTFBN; i++ {
				d, err := ttfb(ctx, c, slowHost)
				if err != nil {
					return nil, err
				}
				ms = append(ms, float64(d.Microseconds())/1e3)
			}
			perReq := float64(b.w.slow.conns.Load()-conns) / float64(b.set.TTFBN)
			return figures{"ttfb": median(ms), "upstream_conns": perReq}, nil
		})
	if err != nil {
		return err
	}
	x := res.compare(s2, "time to first byte, new connection per request", "ttfb", "ms",
		cmpRatio).withNote(netemNote)
	b.rep.add(x.withTarget("<= 0.60x", val(x.Value) <= 0.6))
	b.rep.add(res.compare(s2, "upstream connections opened per request", "upstream_conns",
		"", cmpNone))
	return nil
}

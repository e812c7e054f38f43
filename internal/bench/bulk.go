//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

const s4 = "4 bulk"

// bulk is scenario 4: BulkBytes down and up, over one HTTP/1.1 connection and
// split across 16 at once (the "16 streams", as 16 connections). Throughput is bytes over wall time (MB = 10^6
// bytes); hermes-netd's efficiency is bytes over the CPU time it used.
func (b *bench) bulk(ctx context.Context) error {
	for _, dir := range []string{"down", "up"} {
		for _, streams := range []int{1, 16} {
			res, err := b.alternate(ctx, b.set.BulkRounds, []path{direct, viaHermes},
				func(p path) (figures, error) { return b.transfer(ctx, p, dir, streams) })
			if err != nil {
				return err
			}
			m := fmt.Sprintf("%s %s, 1 connection", dir, sizeName(b.set.BulkBytes))
			if streams > 1 {
				m = fmt.Sprintf("%s %s, %d connections", dir, sizeName(b.set.BulkBytes),
					streams)
			}
			x := res.compare(s4, m+" throughput", "mbps", "MB/s", cmpRatio)
			b.rep.add(x.withTarget(">= 0.85x", val(x.Value) >= 0.85))
			y := res.only(s4, m+" per proxy core", "per_core", "MB/s")
			b.rep.add(y.withTarget(">= 700 MB/s", val(y.Hermes) >= 700))
		}
	}
	return nil
}

func sizeName(n int64) string {
	if n >= 1<<30 {
		return fmt.Sprintf("%d GiB", n>>30)
	}
	return fmt.Sprintf("%d MiB", n>>20)
}

// transfer moves BulkBytes in the given direction over streams connections.
func (b *bench) transfer(ctx context.Context, p path, dir string, streams int) (figures, error) {
	c := b.w.client(p, h1, fastHost, true)
	defer closeClient(c)
	each := b.set.BulkBytes / int64(streams)
	pid := 0
	if p == viaHermes {
		pid = b.w.pid
	}
	cpu, err := startCPU(pid)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for i := 0; i < streams; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.oneTransfer(ctx, c, dir, each); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	used, cerr := cpu.stop()
	if len(errs) > 0 {
		return nil, errs[0]
	}
	if cerr != nil {
		return nil, cerr
	}
	total := float64(each * int64(streams))
	figs := figures{"mbps": total / elapsed.Seconds() / 1e6}
	if pid != 0 && used > 0 {
		figs["per_core"] = total / used.Seconds() / 1e6
	}
	return figs, nil
}

func (b *bench) oneTransfer(ctx context.Context, c *http.Client, dir string, n int64) error {
	url := "https://" + fastHost
	if dir == "down" {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet,
			url+"/bulk?bytes="+strconv.FormatInt(n, 10), nil)
		if err != nil {
			return err
		}
		return do(c, req, n)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/upload",
		io.LimitReader(zeros{}, n))
	if err != nil {
		return err
	}
	req.ContentLength = n
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(got)) !=
		strconv.FormatInt(n, 10) {
		return fmt.Errorf("upload of %d bytes: %s, upstream read %q", n, resp.Status, got)
	}
	return nil
}

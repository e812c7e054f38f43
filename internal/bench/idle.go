//go:build linux

package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http2"

	"github.com/hermes-netd/hermes-netd/internal/daemon"
)

const s5 = "5 idle connections"

// idle is scenario 5: IdleConns intercepted connections, each having made
// one request, left open; hermes-netd's memory per connection is its RSS
// growth over their number. Each protocol starts from a freshly restarted
// daemon, so that memory freed by the previous step does not hide growth.
// There is no direct figure: the comparison is with the targets.
func (b *bench) idle(ctx context.Context) error {
	if err := b.w.setPath(viaHermes); err != nil {
		return err
	}
	for _, c := range []struct {
		pr    proto
		limit float64
	}{{h1, 32}, {h2, 48}} {
		kib, err := b.idleRound(ctx, c.pr)
		if err != nil {
			return fmt.Errorf("%s: %w", c.pr, err)
		}
		x := row{Scenario: s5, Metric: fmt.Sprintf("%s memory per idle connection (%d conns)",
			c.pr, b.set.IdleConns), Unit: "KiB", Hermes: f(kib)}
		x = x.withNote("hermes-netd RSS growth / connections; kernel socket buffers " +
			"are not in RSS")
		b.rep.add(x.withTarget(fmt.Sprintf("<= %g KiB", c.limit), kib <= c.limit))
	}
	return nil
}

// idleConn is one open client connection; close releases it.
type idleConn interface{ Close() error }

func (b *bench) idleRound(ctx context.Context, pr proto) (float64, error) {
	if err := b.w.restartDaemon(ctx); err != nil {
		return 0, err
	}
	before, err := b.settledRSS(ctx)
	if err != nil {
		return 0, err
	}
	conns0, err := b.attachedConns(ctx)
	if err != nil {
		return 0, err
	}

	conns, err := b.openIdle(ctx, pr, b.set.IdleConns)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if err != nil {
		return 0, err
	}
	after, err := b.settledRSS(ctx)
	if err != nil {
		return 0, err
	}
	conns1, err := b.attachedConns(ctx)
	if err != nil {
		return 0, err
	}
	if got := conns1 - conns0; got < uint64(len(conns)) {
		return 0, fmt.Errorf("hermes-netd counted %d new connections, want %d", got,
			len(conns))
	}
	return float64(after-before) / float64(len(conns)), nil
}

// settledRSS waits a moment for the daemon to go quiet, then reads its RSS.
func (b *bench) settledRSS(ctx context.Context) (int64, error) {
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(time.Second):
	}
	return rssKiB(b.w.pid)
}

// attachedConns is the daemon's count of connections from the sandbox.
func (b *bench) attachedConns(ctx context.Context) (uint64, error) {
	st, err := daemon.NewClient(b.w.socket, 0).Status(ctx)
	if err != nil {
		return 0, err
	}
	for _, a := range st.Attached {
		if a.Spec == b.w.sandbox {
			return a.Connections, nil
		}
	}
	return 0, fmt.Errorf("sandbox %s not attached after the restart", b.w.sandbox)
}

// openIdle opens n connections through hermes-netd, 32 at a time, each
// making one request, and returns them open.
func (b *bench) openIdle(ctx context.Context, pr proto, n int) ([]idleConn, error) {
	var (
		mu    sync.Mutex
		conns []idleConn
		first error
		wg    sync.WaitGroup
		next  = make(chan struct{})
	)
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				c, err := b.openOne(ctx, pr)
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				if c != nil {
					conns = append(conns, c)
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		mu.Lock()
		failed := first != nil
		mu.Unlock()
		if failed {
			break
		}
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return conns, first
}

func (b *bench) openOne(ctx context.Context, pr proto) (idleConn, error) {
	alpn := map[proto]string{h1: "http/1.1", h2: "h2"}[pr]
	tc, err := b.w.dialTLS(ctx, fastAddr+":443", b.w.tlsConfig(viaHermes, fastHost, alpn))
	if err != nil {
		return nil, err
	}
	if pr == h2 {
		cc, err := (&http2.Transport{}).NewClientConn(tc)
		if err != nil {
			tc.Close()
			return nil, err
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+fastHost+"/1k",
			nil)
		resp, err := cc.RoundTrip(req)
		if err != nil {
			cc.Close()
			return nil, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return cc, nil
	}
	if err := h1Once(tc); err != nil {
		tc.Close()
		return nil, err
	}
	return tc, nil
}

// h1Once makes one keep-alive request on c and reads the whole answer.
func h1Once(c *tls.Conn) error {
	if _, err := io.WriteString(c, "GET /1k HTTP/1.1\r\nHost: "+fastHost+"\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /1k: %s", resp.Status)
	}
	return nil
}

//go:build linux

package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/hermes-netd/hermes-netd/internal/testenv"
)

// payload is the body of every small response: 1 KiB.
var payload = make([]byte, 1024)

// upstream is the bench's fake provider: a minimal HTTPS server, HTTP/1.1
// and HTTP/2, whose handlers do as little as possible so that what is
// measured is the path, not the server.
//
//	GET  /1k            1 KiB response
//	POST /1k            reads the body (1 KiB in the scenarios), answers 1 KiB
//	GET  /sse?n=N       N server-sent events 10 ms apart; each event's data is
//	                    the wall-clock send time in nanoseconds
//	GET  /bulk?bytes=N  N bytes of response body
//	POST /upload        reads and discards the body; answers its length
type upstream struct {
	srv *http.Server
	// injected counts requests carrying the bench provider's key: every
	// request through hermes-netd (or a peer) must, no direct one can.
	injected atomic.Uint64
	// conns counts accepted connections.
	conns atomic.Uint64
	// fromSandbox and proxied count requests by their source address: the
	// sandbox's own when direct, the host's when a proxy there made them.
	fromSandbox, proxied atomic.Uint64
}

// counts is a snapshot of an upstream's request counters.
type counts struct{ injected, fromSandbox, proxied uint64 }

func (u *upstream) counts() counts {
	return counts{u.injected.Load(), u.fromSandbox.Load(), u.proxied.Load()}
}

func (c counts) add(o counts) counts {
	return counts{c.injected + o.injected, c.fromSandbox + o.fromSandbox,
		c.proxied + o.proxied}
}

func (c counts) sub(o counts) counts {
	return counts{c.injected - o.injected, c.fromSandbox - o.fromSandbox,
		c.proxied - o.proxied}
}

func newUpstream(cert tls.Certificate) (*upstream, error) {
	u := &upstream{}
	mux := http.NewServeMux()
	mux.HandleFunc("/1k", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Length", "1024")
		w.Write(payload)
	})
	mux.HandleFunc("/sse", serveSSE)
	mux.HandleFunc("/bulk", serveBulk)
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%d\n", n)
	})

	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") == "Bearer "+benchKey {
				u.injected.Add(1)
			}
			if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil &&
				ap.Addr().Unmap() == testenv.SandboxAddr4.Addr() {
				u.fromSandbox.Add(1)
			} else {
				u.proxied.Add(1)
			}
			mux.ServeHTTP(w, r)
		}),
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			NextProtos:   []string{"h2", "http/1.1"},
		},
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				u.conns.Add(1)
			}
		},
		// Clients that stop mid-handshake at the end of a load run are normal.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	// Large windows, so that one HTTP/2 stream is not held back by flow
	// control in the bulk scenario.
	h2 := &http2.Server{
		MaxUploadBufferPerConnection: 16 << 20,
		MaxUploadBufferPerStream:     16 << 20,
		MaxConcurrentStreams:         1000,
	}
	if err := http2.ConfigureServer(srv, h2); err != nil {
		return nil, fmt.Errorf("configuring http2 on the bench upstream: %w", err)
	}
	u.srv = srv
	return u, nil
}

// serve answers on ln until Close; a TLS listener is made around ln.
func (u *upstream) serve(ln net.Listener) {
	go u.srv.Serve(tls.NewListener(ln, u.srv.TLSConfig))
}

func (u *upstream) close() error { return u.srv.Close() }

func serveSSE(w http.ResponseWriter, r *http.Request) {
	n, _ := strconv.Atoi(r.URL.Query().Get("n"))
	fl, ok := w.(http.Flusher)
	if !ok || n <= 0 {
		http.Error(w, "need n > 0 and a flushing writer", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fl.Flush()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for i := 0; i < n; i++ {
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
		}
		if _, err := fmt.Fprintf(w, "data: %d\n\n", time.Now().UnixNano()); err != nil {
			return
		}
		fl.Flush()
	}
}

// bulkChunk is written repeatedly by /bulk.
var bulkChunk = make([]byte, 256<<10)

func serveBulk(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseInt(r.URL.Query().Get("bytes"), 10, 64)
	if err != nil || n < 0 {
		http.Error(w, "need bytes=N", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	for n > 0 {
		c := bulkChunk
		if int64(len(c)) > n {
			c = c[:n]
		}
		if _, err := w.Write(c); err != nil {
			return
		}
		n -= int64(len(c))
	}
}

// delayListener emulates an upstream far away when tc netem is not available:
// each accepted connection is handed over only after delay (the round trip
// of the TCP handshake), and every write of the server reaches the client
// delay later than it was made (one round trip per request/response flight).
// Writes are queued in order, so bandwidth is not limited, only latency.
type delayListener struct {
	net.Listener
	delay time.Duration
}

func (l delayListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	time.Sleep(l.delay)
	return newDelayConn(c, l.delay), nil
}

type delayedWrite struct {
	due  time.Time
	data []byte
}

type delayConn struct {
	net.Conn
	delay  time.Duration
	queue  chan delayedWrite
	failed atomic.Bool // a delayed write failed: later writes fail at once

	mu     sync.Mutex // guards closed and sends on queue
	closed bool
}

func newDelayConn(c net.Conn, d time.Duration) *delayConn {
	dc := &delayConn{Conn: c, delay: d, queue: make(chan delayedWrite, 4096)}
	go dc.flush()
	return dc
}

func (c *delayConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.failed.Load() {
		return 0, net.ErrClosed
	}
	c.queue <- delayedWrite{due: time.Now().Add(c.delay), data: append([]byte(nil), b...)}
	return len(b), nil
}

func (c *delayConn) flush() {
	for w := range c.queue {
		time.Sleep(time.Until(w.due))
		if c.failed.Load() {
			continue
		}
		if _, err := c.Conn.Write(w.data); err != nil {
			c.failed.Store(true)
		}
	}
	c.Conn.Close()
}

// SetDeadline applies to reads only: writes happen later, in flush, and a
// write deadline meant for the moment of Write (tls.Conn sets one to "now"
// after its close_notify) would fail them.
func (c *delayConn) SetDeadline(t time.Time) error { return c.Conn.SetReadDeadline(t) }

// SetWriteDeadline is ignored, as SetDeadline explains.
func (c *delayConn) SetWriteDeadline(time.Time) error { return nil }

// Close closes the connection once the queued writes are out.
func (c *delayConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		close(c.queue)
	}
	return nil
}

package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"
)

// DefaultMaxConnsPerSandbox is Options.MaxConnsPerSandbox when unset. Each
// client connection holds one of the daemon's descriptors; a passthrough or
// upgraded (websocket) connection holds one upstream descriptor besides, so
// those come to at most twice the cap, 2,048 by default. Intercepted
// requests do not get an upstream connection each: an HTTP/2 client
// connection carries at most MaxConcurrentStreams requests at once, and all
// requests share the pooled upstream connections, at most
// Options.MaxUpstreamConnsPerHost (default 64) per destination and SNI across
// every sandbox, with the rest waiting for one to come free.
const DefaultMaxConnsPerSandbox = 1024

// connLimit counts the open connections of each sandbox.
type connLimit struct {
	max int
	mu  sync.Mutex
	n   map[string]int
}

func newConnLimit(max int) *connLimit {
	if max <= 0 {
		max = DefaultMaxConnsPerSandbox
	}
	return &connLimit{max: max, n: map[string]int{}}
}

// acquire counts one more connection of sandbox, unless it is at the cap.
// release undoes it; it must be called exactly once.
func (l *connLimit) acquire(sandbox string) (release func(), ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[sandbox] >= l.max {
		return nil, false
	}
	l.n[sandbox]++
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.n[sandbox]--; l.n[sandbox] <= 0 {
			delete(l.n, sandbox)
		}
	}, true
}

// countedConn gives its count back when it is first closed, whoever closes
// it: the handler, the http.Server, a hijacker or Shutdown.
type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// rawConn returns the accepted connection under c: the redirect layer reads
// the original destination from its socket, and splice(2) needs a TCPConn.
func rawConn(c net.Conn) net.Conn {
	if cc, ok := c.(*countedConn); ok {
		return cc.Conn
	}
	return c
}

// acceptLogEvery spaces the records of a burst of accept errors: an accept
// loop out of descriptors fails thousands of times a minute.
const acceptLogEvery = 10 * time.Second

// acceptErrors paces an accept loop through temporary errors (running out of
// descriptors, mostly): it backs off from 5ms doubling to 1s, like
// net/http's loop, and logs the first error of a burst and then at most one
// every acceptLogEvery, with the count of failures in between.
type acceptErrors struct {
	backoff  time.Duration
	failures int // since the last record
	lastLog  time.Time
}

// failed notes err and returns how long to wait before accepting again.
func (a *acceptErrors) failed(log *slog.Logger, sandbox string, err error) time.Duration {
	a.backoff = min(max(2*a.backoff, 5*time.Millisecond), time.Second)
	a.failures++
	if now := time.Now(); now.Sub(a.lastLog) >= acceptLogEvery {
		attrs := []slog.Attr{
			slog.String(KeySandbox, sandbox),
			slog.String(KeyError, err.Error()),
			slog.Int(KeyFailures, a.failures),
			slog.Duration(KeyBackoff, a.backoff),
		}
		if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
			attrs = append(attrs, slog.String(KeyReason, "out of file descriptors: raise "+
				"the daemon's LimitNOFILE or lower max_connections_per_sandbox"))
		}
		log.LogAttrs(context.Background(), slog.LevelWarn, msgAcceptFailing, attrs...)
		a.lastLog, a.failures = now, 0
	}
	return a.backoff
}

// succeeded ends a burst: the next error backs off from the start again.
func (a *acceptErrors) succeeded() { a.backoff = 0 }

// isTemporary reports accept errors worth retrying, such as running out of
// file descriptors.
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// Many HTTP/2 streams over the few client connections the sandbox cap allows
// (2 × MaxConcurrentStreams = 200), to an HTTP/1.1 upstream: the requests
// share at most MaxUpstreamConnsPerHost upstream connections (the rest wait
// for one), and every one of them still succeeds.
func TestH2StreamsShareBoundedUpstreamConns(t *testing.T) {
	const (
		streams = 200
		connCap = 8
	)
	tca := newTestCA(t)
	var inflight, peak atomic.Int64
	release := make(chan struct{})
	up := newUpstreamProto(t, tca, func(w http.ResponseWriter, r *http.Request) {
		n := inflight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-release
		inflight.Add(-1)
		io.WriteString(w, "ok")
	}, false, "api.openai.com")
	e := newEnv(t, tca.pool, func(o *Options) {
		o.MaxConnsPerSandbox = 2
		o.MaxUpstreamConnsPerHost = connCap
	})
	e.setDst(up.addr(t))

	var clientDials atomic.Int64
	tr := &http2.Transport{
		TLSClientConfig: &tls.Config{RootCAs: e.clientCA},
		DialTLSContext: func(ctx context.Context, n, a string, cfg *tls.Config) (net.Conn, error) {
			clientDials.Add(1)
			c, err := e.dial(ctx, n, a)
			if err != nil {
				return nil, err
			}
			tc := tls.Client(c, cfg)
			return tc, tc.HandshakeContext(ctx)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	cl := &http.Client{Transport: tr}

	var wg sync.WaitGroup
	results := make(chan string, streams)
	for range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := cl.Get("https://api.openai.com/v1/x")
			if err != nil {
				results <- err.Error()
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				results <- err.Error()
				return
			}
			results <- resp.Status + " " + string(b)
		}()
	}

	// Hold every upstream request until the cap is reached, then a little
	// longer so that connections over the cap, were they allowed, would
	// show up; then let them all finish.
	deadline := time.Now().Add(10 * time.Second)
	for inflight.Load() < connCap && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	held := inflight.Load()
	close(release)
	wg.Wait()
	close(results)

	if held != connCap {
		t.Errorf("upstream requests held at once = %d, want the cap %d", held, connCap)
	}
	if p := peak.Load(); p > connCap {
		t.Errorf("upstream served %d requests at once, over MaxUpstreamConnsPerHost %d", p, connCap)
	}
	if d := e.dialCount(); d > connCap {
		t.Errorf("proxy dialed the upstream %d times, want at most %d", d, connCap)
	}
	if d := clientDials.Load(); d > 2 {
		t.Errorf("client opened %d connections, want at most the sandbox cap 2", d)
	}
	ok := 0
	for r := range results {
		if r == "200 OK ok" {
			ok++
		} else {
			t.Errorf("stream result %q, want 200 OK ok", r)
		}
	}
	if ok != streams {
		t.Errorf("%d of %d streams succeeded", ok, streams)
	}
}

// The proxy advertises its HTTP/2 stream limit explicitly.
func TestH2AdvertisesMaxConcurrentStreams(t *testing.T) {
	tca := newTestCA(t)
	up := newUpstream(t, tca, nil, "api.openai.com")
	e := newEnv(t, tca.pool)
	e.setDst(up.addr(t))
	c := e.tlsDial(t, "api.openai.com", "h2")
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	f, err := fr.ReadFrame()
	if err != nil {
		t.Fatalf("reading the server's first frame: %v", err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok {
		t.Fatalf("first frame is %v, want SETTINGS", f.Header().Type)
	}
	v, ok := sf.Value(http2.SettingMaxConcurrentStreams)
	if !ok || v != MaxConcurrentStreams {
		t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS = %d (present %v), want %d",
			v, ok, MaxConcurrentStreams)
	}
}

package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Each event must reach the client before the upstream sends the next.
func TestSSEEventsArriveOneByOne(t *testing.T) {
	var events []string
	for i := range 5 {
		events = append(events, fmt.Sprintf("data: event %d\n\n", i))
	}
	checkEventsOneByOne(t, events, events)
}

// checkEventsOneByOne serves events from an upstream that writes each one only
// after the client has read the one before, so any buffering in the proxy
// deadlocks the test, and checks that the client reads want, event by event,
// over HTTP/1.1 and HTTP/2.
func checkEventsOneByOne(t *testing.T, events, want []string) {
	t.Helper()
	tca := newTestCA(t)
	readOne := make(chan struct{})
	up := newUpstream(t, tca, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for _, ev := range events {
			io.WriteString(w, ev)
			w.(http.Flusher).Flush()
			select {
			case <-readOne:
			case <-r.Context().Done():
				return
			}
		}
	}, "api.openai.com")
	e := newEnv(t, tca.pool)
	e.setDst(up.addr(t))

	for _, h2 := range []bool{false, true} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		req, _ := http.NewRequestWithContext(ctx, "POST", "https://api.openai.com/v1/chat",
			strings.NewReader(`{"stream":true}`))
		resp, err := e.client(h2).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(resp.Body)
		for i := range events {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("h2=%v: event %d: %v (held back by the proxy?)", h2, i, err)
			}
			blank, _ := br.ReadString('\n')
			if got := line + blank; got != want[i] {
				t.Fatalf("h2=%v: event %d: got %q, want %q", h2, i, got, want[i])
			}
			readOne <- struct{}{}
		}
		resp.Body.Close()
		cancel()
	}
}

// A slow stream outlives every configured timeout: none applies to bodies.
func TestLongStreamSurvivesTimeouts(t *testing.T) {
	tca := newTestCA(t)
	up := newUpstream(t, tca, func(w http.ResponseWriter, r *http.Request) {
		for i := range 4 {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(150 * time.Millisecond)
		}
	}, "api.openai.com")
	e := newEnv(t, tca.pool, func(o *Options) {
		o.Timeouts = Timeouts{Handshake: 100 * time.Millisecond,
			ReadHeader: 100 * time.Millisecond, Idle: 100 * time.Millisecond,
			UpstreamIdle: 100 * time.Millisecond}
	})
	e.setDst(up.addr(t))

	resp, err := e.client(false).Get("https://api.openai.com/v1/stream")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || strings.Count(string(body), "data:") != 4 {
		t.Errorf("got %q, %v; want all 4 events", body, err)
	}
}

// countingReader yields n deterministic bytes without holding them.
type countingReader struct{ left int64 }

func (r *countingReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), r.left))
	for i := range p[:n] {
		p[i] = byte(i)
	}
	r.left -= int64(n)
	return n, nil
}

func TestLargeUploadStreamsWithBoundedMemory(t *testing.T) {
	const size = 64 << 20
	tca := newTestCA(t)
	var received atomic.Int64
	var keyBeforeBody atomic.Bool
	up := newUpstream(t, tca, func(w http.ResponseWriter, r *http.Request) {
		keyBeforeBody.Store(r.Header.Get("Authorization") == "Bearer "+openaiKey)
		n, _ := io.Copy(io.Discard, r.Body)
		received.Store(n)
		fmt.Fprint(w, n)
	}, "api.openai.com")
	e := newEnv(t, tca.pool)
	e.setDst(up.addr(t))

	for _, h2 := range []bool{false, true} {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		var peak atomic.Uint64
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			for {
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				if m.HeapInuse > peak.Load() {
					peak.Store(m.HeapInuse)
				}
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		}()

		req, _ := http.NewRequest("POST", "https://api.openai.com/v1/files",
			&countingReader{left: size})
		req.ContentLength = -1 // streamed, chunked on h1
		resp, err := e.client(h2).Do(req)
		close(stop)
		<-sampled
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()

		if got := received.Load(); got != size || string(body) != fmt.Sprint(size) {
			t.Errorf("h2=%v: upstream received %d bytes, want %d", h2, got, size)
		}
		if !keyBeforeBody.Load() {
			t.Errorf("h2=%v: key not set on the request headers", h2)
		}
		// Client, proxy and upstream share this heap; holding the body
		// anywhere would add 64 MiB.
		if growth := int64(peak.Load()) - int64(before.HeapInuse); growth > 16<<20 {
			t.Errorf("h2=%v: heap grew %d MiB during a 64 MiB upload", h2, growth>>20)
		}
	}
}

// Expect: 100-continue goes end to end: the client's body waits for the
// upstream's 100. (An HTTP/1.1 upstream, since Go's HTTP/2 server consumes the
// Expect header before the handler sees it.)
func TestExpectContinue(t *testing.T) {
	tca := newTestCA(t)
	up := newUpstreamProto(t, tca, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%d %s", len(b), r.Header.Get("Expect"))
	}, false, "api.openai.com")
	e := newEnv(t, tca.pool)
	e.setDst(up.addr(t))

	client := e.client(false)
	client.Transport.(*http.Transport).ExpectContinueTimeout = 30 * time.Second
	var got100 atomic.Bool
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		Got100Continue: func() { got100.Store(true) },
	})
	req, _ := http.NewRequestWithContext(ctx, "PUT", "https://api.openai.com/v1/upload",
		strings.NewReader(strings.Repeat("x", 1000)))
	req.Header.Set("Expect", "100-continue")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !got100.Load() {
		t.Error("client never got 100 Continue")
	}
	if string(body) != "1000 100-continue" {
		t.Errorf("upstream answered %q, want the whole body and the Expect header", body)
	}
}

// An answer the proxy gives itself reaches a client that waits for
// "100 Continue" at once, without the body ever being sent.
func TestExpectContinueRefusedWithoutBody(t *testing.T) {
	tca := newTestCA(t)
	up := newUpstream(t, tca, nil, "api.openai.com")
	e := newEnv(t, tca.pool)
	e.setDst(up.addr(t))

	client := e.client(false)
	client.Transport.(*http.Transport).ExpectContinueTimeout = time.Minute
	var got100 atomic.Bool
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		Got100Continue: func() { got100.Store(true) },
	})
	req, _ := http.NewRequestWithContext(ctx, "POST", "https://api.openai.com/v1/upload",
		strings.NewReader(strings.Repeat("x", 1000)))
	req.Host = "api.anthropic.com" // not the SNI: the proxy answers 421 itself
	req.Header.Set("Expect", "100-continue")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("request waiting for 100 Continue: %v (the refusal was held back)", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("status %d, want 421", resp.StatusCode)
	}
	if got100.Load() {
		t.Error("the proxy sent 100 Continue for a request it refuses")
	}
	if n := up.count(); n != 0 {
		t.Errorf("upstream saw %d requests, want none", n)
	}
}

// wsEcho accepts a websocket upgrade and answers every message with
// "echo: " and the message, until the connection ends.
func wsEcho(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	for {
		typ, msg, err := c.Read(r.Context())
		if err != nil {
			return
		}
		c.Write(r.Context(), typ, append([]byte("echo: "), msg...))
	}
}

func TestWebsocketRelayWithCredential(t *testing.T) {
	tca := newTestCA(t)
	var handshakeAuth atomic.Value
	up := newUpstream(t, tca, func(w http.ResponseWriter, r *http.Request) {
		handshakeAuth.Store(r.Header.Get("Authorization"))
		wsEcho(w, r)
	}, "api.openai.com")
	e := newEnv(t, tca.pool)
	e.setDst(up.addr(t))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "wss://api.openai.com/v1/realtime", &websocket.DialOptions{
		HTTPClient: e.client(true),
		HTTPHeader: http.Header{"Authorization": {"Bearer sk-dummy"}},
	})
	if err != nil {
		t.Fatalf("websocket dial: %v", err)
	}
	defer c.CloseNow()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Errorf("status %d", resp.StatusCode)
	}
	for _, m := range []string{"hello", "second message"} {
		if err := c.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil || string(got) != "echo: "+m {
			t.Fatalf("got %q, %v", got, err)
		}
	}
	c.Close(websocket.StatusNormalClosure, "")
	if got := handshakeAuth.Load(); got != "Bearer "+openaiKey {
		t.Errorf("upstream handshake Authorization %q, want the injected key", got)
	}
}

// splitConn sends the TLS client's first flight as 1-byte writes of a hello
// re-split into many small records: the hardest way a hello can arrive.
type splitConn struct {
	net.Conn
	t    *testing.T
	done bool
}

func (c *splitConn) Write(p []byte) (int, error) {
	if c.done {
		return c.Conn.Write(p)
	}
	c.done = true
	for _, b := range reframe(c.t, p, 50) {
		if _, err := c.Conn.Write([]byte{b}); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func TestSplitHelloThroughProxy(t *testing.T) {
	tca := newTestCA(t)
	up := newUpstream(t, tca, nil, "api.openai.com")
	e := newEnv(t, tca.pool)
	e.setDst(up.addr(t))

	tr := &http.Transport{
		DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			raw, err := e.dial(ctx, "", "")
			if err != nil {
				return nil, err
			}
			raw.(*net.TCPConn).SetNoDelay(true)
			tc := tls.Client(&splitConn{Conn: raw, t: t}, &tls.Config{
				ServerName: "api.openai.com", RootCAs: e.clientCA, NextProtos: []string{"h2"}})
			return tc, tc.HandshakeContext(ctx)
		},
		ForceAttemptHTTP2: true,
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("https://api.openai.com/v1/models")
	if err != nil {
		t.Fatalf("request with a split hello: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || up.last(t).Header.Get("Authorization") != "Bearer "+openaiKey {
		t.Errorf("status %d; want 200 with the key injected", resp.StatusCode)
	}
}

func TestRequestRecord(t *testing.T) {
	tca := newTestCA(t)
	up := newUpstream(t, tca, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(201)
		io.WriteString(w, "created!")
	}, "api.openai.com")
	e := newEnv(t, tca.pool)
	e.setDst(up.addr(t))

	req, _ := http.NewRequest("POST", "https://api.openai.com/v1/files?key=SECRETQUERY",
		strings.NewReader("0123456789"))
	resp, err := e.client(false).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	r := e.waitRecords(t, msgRequest, 1)[0]
	want := map[string]any{
		KeySandbox: "sb-test", KeyPID: float64(4242), KeyProvider: "openai",
		KeyMethod: "POST", KeyHost: "api.openai.com", KeyPath: "/v1/files",
		KeyStatus: float64(201), KeyBytesIn: float64(10), KeyBytesOut: float64(8),
		KeyDecision: DecisionIntercept,
	}
	for k, v := range want {
		if r[k] != v {
			t.Errorf("record %s = %v, want %v", k, r[k], v)
		}
	}
	if _, ok := r[KeyDuration]; !ok {
		t.Error("record has no duration")
	}
	if strings.Contains(e.log.String(), "SECRETQUERY") {
		t.Error("the query string reached a record")
	}
}

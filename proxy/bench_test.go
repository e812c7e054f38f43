package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"
)

// benchEnv is a proxy in front of one fake upstream, logging as in
// production (JSON) but to nowhere, so that b.N records do not pile up.
func benchEnv(b *testing.B) (*env, *upstream, *testCA) {
	tca := newTestCA(b)
	up := newUpstream(b, tca, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"object":"list","data":[]}`)
	}, "api.openai.com")
	e := newEnv(b, tca.pool, func(o *Options) {
		o.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	})
	e.setDst(up.addr(b))
	return e, up, tca
}

func runGets(b *testing.B, c *http.Client) {
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		resp, err := c.Get("https://api.openai.com/v1/models")
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

// directClient talks to the upstream itself, the baseline for the proxy.
func directClient(b *testing.B, up *upstream, tca *testCA, h2, keepAlive bool) *http.Client {
	addr := up.Listener.Addr().String()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		},
		TLSClientConfig:   &tls.Config{RootCAs: tca.pool},
		ForceAttemptHTTP2: h2,
		DisableKeepAlives: !keepAlive,
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	b.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// A request on a kept-alive client connection, through the proxy and direct.
func BenchmarkKeepAliveRequest(b *testing.B) {
	for _, h2 := range []bool{false, true} {
		name := map[bool]string{false: "h1", true: "h2"}[h2]
		b.Run("proxied-"+name, func(b *testing.B) {
			e, _, _ := benchEnv(b)
			runGets(b, e.client(h2))
		})
		b.Run("direct-"+name, func(b *testing.B) {
			_, up, tca := benchEnv(b)
			runGets(b, directClient(b, up, tca, h2, true))
		})
	}
}

// Each request on a new client connection: TCP, the hello peek, a TLS
// handshake with a leaf already in the cache, one request (the upstream
// connection stays pooled). Direct is the same without the proxy.
func BenchmarkNewConnectionCachedLeaf(b *testing.B) {
	b.Run("proxied", func(b *testing.B) {
		e, _, _ := benchEnv(b)
		c := e.client(false)
		c.Transport.(*http.Transport).DisableKeepAlives = true
		runGets(b, c)
	})
	b.Run("direct", func(b *testing.B) {
		_, up, tca := benchEnv(b)
		runGets(b, directClient(b, up, tca, false, false))
	})
}

// The worst case of the hello reader: 64 KiB of 1-byte records that never
// complete a hello, read one byte at a time. Work must stay linear.
func BenchmarkReadClientHelloTrickle(b *testing.B) {
	data := []byte{22, 3, 1, 0, 4, 1, 0, 0xea, 0x60}
	for len(data) < MaxHelloSize {
		data = append(data, 22, 3, 1, 0, 1, 0)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		c := &chunkConn{data: data, chunk: 1}
		if _, _, err := ReadClientHello(c, time.Time{}); !errors.Is(err, ErrHelloTooBig) {
			b.Fatalf("error %v, want ErrHelloTooBig", err)
		}
	}
}

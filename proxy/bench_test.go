package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
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
	cpu0 := cpuTime()
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
	// The CPU of client, proxy and upstream together: steadier than wall
	// time on a machine that runs other work.
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-us/op")
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

// idleConns is how many connections BenchmarkIdleConnection holds open.
const idleConns = 500

// The memory and goroutines one idle terminated client connection holds in
// the proxy, after one request on it. The clients run in a child process
// (runIdleClients), so that only the proxy's side is measured. Run it with
// -benchtime=1x: each round opens idleConns connections.
func BenchmarkIdleConnection(b *testing.B) {
	for _, proto := range []string{"http/1.1", "h2"} {
		b.Run(map[string]string{"http/1.1": "h1", "h2": "h2"}[proto], func(b *testing.B) {
			e, up, _ := benchEnv(b)
			caFile := filepath.Join(b.TempDir(), "ca.pem")
			pemCA := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.caCert.Raw})
			if err := os.WriteFile(caFile, pemCA, 0o600); err != nil {
				b.Fatal(err)
			}
			var mem, gor float64
			for b.Loop() {
				m, g := measureIdle(b, e.addr, caFile, proto, up)
				mem, gor = mem+m, gor+g
			}
			b.ReportMetric(mem/float64(b.N), "B/conn")
			b.ReportMetric(gor/float64(b.N), "goroutines/conn")
		})
	}
}

// measureIdle opens idleConns connections from a child process and returns
// the growth of the heap and stacks in use, and of the goroutine count, per
// connection.
func measureIdle(b *testing.B, addr, caFile, proto string, up *upstream) (mem, goroutines float64) {
	before, g0 := inUse()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "PROXY_IDLE_CLIENT="+strings.Join(
		[]string{addr, caFile, proto, strconv.Itoa(idleConns)}, ","))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if line != "ready\n" {
		b.Fatalf("idle client: %q, %v", line, err)
	}
	time.Sleep(100 * time.Millisecond) // let the last requests' handlers return
	up.mu.Lock()
	up.reqs = nil // the fake upstream's log of requests is not the proxy's memory
	up.mu.Unlock()
	after, g1 := inUse()
	return float64(after-before) / idleConns, float64(g1-g0) / idleConns
}

func inUse() (bytes uint64, goroutines int) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse + ms.StackInuse, runtime.NumGoroutine()
}

// runIdleClients is the child of BenchmarkIdleConnection, run by TestMain
// when PROXY_IDLE_CLIENT is "addr,ca-file,alpn,n": it opens n connections,
// makes one request on each, says "ready" and holds them until stdin closes.
func runIdleClients(spec string) error {
	f := strings.Split(spec, ",")
	if len(f) != 4 {
		return fmt.Errorf("PROXY_IDLE_CLIENT %q: want addr,ca-file,alpn,n", spec)
	}
	n, err := strconv.Atoi(f[3])
	if err != nil {
		return fmt.Errorf("PROXY_IDLE_CLIENT count: %w", err)
	}
	caPEM, err := os.ReadFile(f[1])
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	cfg := &tls.Config{ServerName: "api.openai.com", RootCAs: roots, NextProtos: []string{f[2]}}

	var keep []any
	for range n {
		c, err := tls.Dial("tcp", f[0], cfg)
		if err != nil {
			return err
		}
		rt, err := idleClientConn(c, f[2])
		if err != nil {
			return err
		}
		req, _ := http.NewRequest("GET", "https://api.openai.com/v1/models", nil)
		resp, err := rt.RoundTrip(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		keep = append(keep, c, rt)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	runtime.KeepAlive(keep)
	return nil
}

// idleClientConn makes a RoundTripper that uses c and only c.
func idleClientConn(c *tls.Conn, proto string) (http.RoundTripper, error) {
	if proto == "h2" {
		return (&http2.Transport{}).NewClientConn(c)
	}
	return &http.Transport{
		DialTLSContext:  func(context.Context, string, string) (net.Conn, error) { return c, nil },
		MaxConnsPerHost: 1,
	}, nil
}

// bulkSize is the body of one BenchmarkBulk operation.
const bulkSize = 64 << 20

// A 64 MiB body down (response) and up (request) on a kept-alive HTTP/1.1
// client connection, through the proxy and direct, to an HTTP/2 upstream.
func BenchmarkBulk(b *testing.B) {
	chunk := make([]byte, 256<<10)
	tca := newTestCA(b)
	up := newUpstream(b, tca, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			io.Copy(io.Discard, r.Body)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(bulkSize))
		for n := 0; n < bulkSize; n += len(chunk) {
			w.Write(chunk)
		}
	}, "api.openai.com")
	e := newEnv(b, tca.pool, func(o *Options) {
		o.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	})
	e.setDst(up.addr(b))

	for _, dir := range []string{"down", "up"} {
		for _, path := range []string{"proxied", "direct"} {
			b.Run(dir+"-"+path, func(b *testing.B) {
				c := e.client(false)
				if path == "direct" {
					c = directClient(b, up, tca, false, true)
				}
				b.SetBytes(bulkSize)
				cpu0 := cpuTime()
				for b.Loop() {
					bulkOnce(b, c, dir, chunk)
				}
				// Wall time moves with whatever else the machine runs; the
				// CPU the process spent (client, proxy and upstream) less so.
				cpu := (cpuTime() - cpu0).Seconds()
				b.ReportMetric(float64(b.N)*bulkSize/1e6/cpu, "MB/cpu-s")
			})
		}
	}
}

func bulkOnce(b *testing.B, c *http.Client, dir string, chunk []byte) {
	var body io.Reader
	method := http.MethodGet
	if dir == "up" {
		method, body = http.MethodPost, io.LimitReader(repeatReader(chunk), bulkSize)
	}
	req, _ := http.NewRequest(method, "https://api.openai.com/v1/files", body)
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || (dir == "down" && n != bulkSize) {
		b.Fatalf("status %d, %d bytes, %v", resp.StatusCode, n, err)
	}
}

// repeatReader reads chunk over and over.
type repeatReader []byte

func (r repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		n += copy(p[n:], r)
	}
	return n, nil
}

// cpuTime is the user and system CPU time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

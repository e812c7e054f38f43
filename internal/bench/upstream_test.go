//go:build linux

package main

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hermes-netd/hermes-netd/internal/testenv/fakeapi"
)

// startTestUpstream serves the bench upstream on loopback, delayed by delay.
func startTestUpstream(t *testing.T, delay time.Duration) (*upstream, *http.Client, string) {
	t.Helper()
	ca, err := fakeapi.NewCA("bench test CA")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue(fastHost)
	if err != nil {
		t.Fatal(err)
	}
	u, err := newUpstream(cert)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if delay > 0 {
		ln = delayListener{Listener: ln, delay: delay}
	}
	u.serve(ln)
	t.Cleanup(func() { u.close() })
	c := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: ca.Pool(), ServerName: fastHost},
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}}
	return u, c, "https://" + fastHost
}

func TestUpstreamEndpoints(t *testing.T) {
	u, c, base := startTestUpstream(t, 0)
	for _, tc := range []struct {
		method, path, body string
		wantLen            int64
		wantBody           string
	}{
		{"GET", "/1k", "", 1024, ""},
		{"POST", "/1k", strings.Repeat("x", 1024), 1024, ""},
		{"GET", "/bulk?bytes=300000", "", 300000, ""},
		{"POST", "/upload", strings.Repeat("y", 5000), -1, "5000\n"},
		{"GET", "/sse?n=3", "", -1, ""},
	} {
		req, _ := http.NewRequest(tc.method, base+tc.path, strings.NewReader(tc.body))
		req.Header.Set("Authorization", "Bearer "+benchKey)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s %s: status %d", tc.method, tc.path, resp.StatusCode)
		}
		if tc.wantLen >= 0 && int64(len(b)) != tc.wantLen {
			t.Errorf("%s %s: %d bytes, want %d", tc.method, tc.path, len(b), tc.wantLen)
		}
		if tc.wantBody != "" && string(b) != tc.wantBody {
			t.Errorf("%s %s: body %q, want %q", tc.method, tc.path, b, tc.wantBody)
		}
		if tc.path == "/sse?n=3" && strings.Count(string(b), "data: ") != 3 {
			t.Errorf("SSE body %q, want 3 events", b)
		}
	}
	if got := u.injected.Load(); got != 5 {
		t.Errorf("injected count %d, want 5", got)
	}
}

// TestDelayListener checks that a new-connection request to the delayed
// upstream takes about three delays (accept, handshake flight, response),
// and that it works at all: the delay must not break TLS or HTTP.
func TestDelayListener(t *testing.T) {
	const delay = 20 * time.Millisecond
	_, c, base := startTestUpstream(t, delay)
	for i := 0; i < 3; i++ {
		start := time.Now()
		resp, err := c.Get(base + "/1k")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if d := time.Since(start); d < 3*delay {
			t.Errorf("request %d took %v, want at least %v", i, d, 3*delay)
		}
	}
}

func TestParseGoBench(t *testing.T) {
	out := "goos: linux\n" +
		"BenchmarkConnect/no-bpf-2   \t  100\t  9000 ns/op\n" +
		"BenchmarkConnect/bpf-redirect-2 \t 50\t 12000 ns/op\t 180.5 ns/connect4-run\n" +
		"BenchmarkMint \t 10\t 150000 ns/op\t 4000 B/op\n" +
		"PASS\n"
	got, err := parseGoBench(out)
	if err != nil {
		t.Fatal(err)
	}
	if v := got["BenchmarkConnect/no-bpf"]["ns/op"]; len(v) != 1 || v[0] != 9000 {
		t.Errorf("no-bpf ns/op = %v", v)
	}
	if v := got["BenchmarkConnect/bpf-redirect"]["ns/connect4-run"]; len(v) != 1 ||
		v[0] != 180.5 {
		t.Errorf("connect4-run = %v", v)
	}
	if v := got["BenchmarkMint"]["B/op"]; len(v) != 1 || v[0] != 4000 {
		t.Errorf("Mint B/op = %v", v)
	}
}

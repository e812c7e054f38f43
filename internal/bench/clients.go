//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"time"

	"golang.org/x/net/http2"
)

// proto is the HTTP version a client speaks.
type proto string

const (
	h1 proto = "h1"
	h2 proto = "h2"
)

// client returns an HTTP client in the sandbox for host on path p, speaking
// only pr. keepAlive false makes a new connection for every request.
func (w *world) client(p path, pr proto, host string, keepAlive bool) *http.Client {
	if pr == h2 {
		tr := &http2.Transport{
			TLSClientConfig: w.tlsConfig(p, host, "h2"),
			DialTLSContext: func(ctx context.Context, network, addr string,
				cfg *tls.Config) (net.Conn, error) {
				return w.dialTLS(ctx, addr, cfg)
			},
			DisableCompression: true,
		}
		return &http.Client{Transport: tr, Timeout: 5 * time.Minute}
	}
	tr := &http.Transport{
		DialContext:         w.dial,
		TLSClientConfig:     w.tlsConfig(p, host, "http/1.1"),
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{},
		DisableKeepAlives:   !keepAlive,
		DisableCompression:  true,
		MaxIdleConnsPerHost: 64,
	}
	return &http.Client{Transport: tr, Timeout: 5 * time.Minute}
}

// dialTLS connects from the sandbox and completes a TLS handshake.
func (w *world) dialTLS(ctx context.Context, addr string, cfg *tls.Config) (*tls.Conn, error) {
	c, err := w.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}

func closeClient(c *http.Client) {
	c.CloseIdleConnections()
}

// post1k sends 1 KiB and reads the 1 KiB answer.
func post1k(ctx context.Context, c *http.Client, host string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+host+"/1k",
		bytes.NewReader(payload))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer dummy")
	return do(c, req, 1024)
}

// do runs req and reads the whole body, which must have want bytes (-1: any).
func do(c *http.Client, req *http.Request, want int64) error {
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return fmt.Errorf("reading %s: %w", req.URL, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: status %s", req.Method, req.URL, resp.Status)
	}
	if want >= 0 && n != want {
		return fmt.Errorf("%s %s: %d bytes, want %d", req.Method, req.URL, n, want)
	}
	return nil
}

// ttfb makes one request on a new connection and returns the time from the
// start of the dial to the first byte of the response.
func ttfb(ctx context.Context, c *http.Client, host string) (time.Duration, error) {
	var first time.Time
	trace := &httptrace.ClientTrace{GotFirstResponseByte: func() { first = time.Now() }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace),
		http.MethodGet, "https://"+host+"/1k", nil)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if err := do(c, req, 1024); err != nil {
		return 0, err
	}
	return first.Sub(start), nil
}

// zeros is an endless reader of zero bytes, for uploads.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

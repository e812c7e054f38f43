package proxy

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hermes-netd/hermes-netd/internal/ca"
	"github.com/hermes-netd/hermes-netd/internal/providers"
	"github.com/hermes-netd/hermes-netd/internal/secrets"
)

// The keys the suite injects. TestMain fails the run if any appears in any
// record written by any test.
const (
	openaiKey    = "sk-proj-SECRET-openai-5b1d0c9e"
	anthropicKey = "sk-ant-SECRET-anthropic-77aa31"
)

var testKeys = map[string]string{"openai": openaiKey, "anthropic": anthropicKey}

// suiteLog collects every record of every test in the package.
var suiteLog lockedBuffer

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// records parses the JSON lines written so far.
func (b *lockedBuffer) records(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("record %q is not JSON: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func TestMain(m *testing.M) {
	if spec := os.Getenv("PROXY_IDLE_CLIENT"); spec != "" {
		if err := runIdleClients(spec); err != nil {
			fmt.Fprintln(os.Stderr, "idle client:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	logs := suiteLog.String()
	for name, k := range testKeys {
		if strings.Contains(logs, k) {
			fmt.Fprintf(os.Stderr, "FAIL: the %s key appears in the suite's records\n", name)
			code = 1
		}
	}
	// With the whole suite run, the check must have had something to look at.
	if code == 0 && flag.Lookup("test.run").Value.String() == "" &&
		!strings.Contains(logs, `"msg":"Request"`) {
		fmt.Fprintln(os.Stderr, "FAIL: the suite wrote no request record; the key check saw nothing")
		code = 1
	}
	os.Exit(code)
}

// testCA is a minimal CA for fake upstreams, apart from the proxy's own CA so
// that a mix-up of the two shows as a failed verification.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "fake upstream test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// leaf mints a server certificate for names.
func (c *testCA) leaf(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// upstream is a fake provider API serving TLS for its names, recording what
// reaches it.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []*http.Request // headers and URL of each request received
	// active counts connections on which the upstream began reading a
	// request (http.StateActive): zero means no request byte ever arrived.
	active atomic.Int64
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

func (u *upstream) last(t testing.TB) *http.Request {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		t.Fatal("upstream received no request")
	}
	return u.reqs[len(u.reqs)-1]
}

func (u *upstream) addr(t testing.TB) netip.AddrPort {
	t.Helper()
	return netip.MustParseAddrPort(u.Listener.Addr().String())
}

// newUpstream starts a fake upstream with a certificate for names. h may be
// nil for a handler answering 200 "ok".
func newUpstream(t testing.TB, tca *testCA, h http.HandlerFunc, names ...string) *upstream {
	t.Helper()
	return newUpstreamProto(t, tca, h, true, names...)
}

// newUpstreamProto is newUpstream with HTTP/2 on or off.
func newUpstreamProto(t testing.TB, tca *testCA, h http.HandlerFunc, h2 bool,
	names ...string) *upstream {
	t.Helper()
	u := &upstream{}
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }
	}
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			u.mu.Lock()
			u.reqs = append(u.reqs, &http.Request{Method: r.Method, URL: r.URL,
				Host: r.Host, Header: r.Header.Clone(), Proto: r.Proto})
			u.mu.Unlock()
			h(w, r)
		}))
	u.EnableHTTP2 = h2
	u.TLS = &tls.Config{Certificates: []tls.Certificate{tca.leaf(t, names...)}}
	u.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateActive {
			u.active.Add(1)
		}
	}
	u.Config.ErrorLog = slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)
	u.StartTLS()
	t.Cleanup(u.Close)
	return u
}

// env is a proxy listening on loopback, as if in a sandbox, with every
// connection's original destination set by dst.
type env struct {
	t        testing.TB
	srv      *Server
	addr     string // proxy listener
	clientCA *x509.CertPool
	caCert   *x509.Certificate // the proxy's CA, which clientCA holds
	log      *lockedBuffer     // this test's records
	mu       sync.Mutex
	dst      netip.AddrPort
	dials    []string // upstream dials made through Options.Dial
}

func (e *env) setDst(d netip.AddrPort) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.dst = d
}

func (e *env) dialCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.dials)
}

type envOption func(*Options)

// testCatalog has a Bearer provider, an x-api-key provider and one with no key.
func testCatalog(t testing.TB) *providers.Catalog {
	t.Helper()
	c, err := providers.NewCatalog([]providers.Provider{
		{Name: "openai", Domains: []string{"api.openai.com"},
			Form: providers.Form{Kind: providers.FormHeader, Header: "Authorization",
				Format: "Bearer {key}"}},
		{Name: "anthropic", Domains: []string{"api.anthropic.com"},
			Form: providers.Form{Kind: providers.FormHeader, Header: "x-api-key"}},
		{Name: "nokey", Domains: []string{"api.nokey.example"},
			Form: providers.Form{Kind: providers.FormHeader, Header: "Authorization",
				Format: "Bearer {key}"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newEnv(t testing.TB, upstreamRoots *x509.CertPool, opts ...envOption) *env {
	t.Helper()
	authority, err := ca.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	leaves := ca.NewLeafCache(authority, 64)
	e := &env{t: t, log: &lockedBuffer{}, clientCA: x509.NewCertPool()}
	e.clientCA.AddCert(authority.Certificate())
	e.caCert = authority.Certificate()

	o := Options{
		Logger: slog.New(slog.NewJSONHandler(io.MultiWriter(&suiteLog, e.log),
			&slog.HandlerOptions{Level: slog.LevelInfo})),
		Policy: &Policy{
			Catalog:       testCatalog(t),
			AllowUpstream: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		},
		Keys: func(name string) (secrets.Key, error) {
			if k, ok := testKeys[name]; ok {
				return secrets.NewKey(k), nil
			}
			return secrets.Key{}, fmt.Errorf("key %s: %w", name, secrets.ErrNoKey)
		},
		Certs:         leaves.Get,
		UpstreamRoots: upstreamRoots,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			e.mu.Lock()
			e.dials = append(e.dials, addr)
			e.mu.Unlock()
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
		// A DNS that agrees with the sandbox: every name has the address the
		// connections go to. Tests of the destination check replace it.
		Resolve: func(context.Context, string) ([]netip.Addr, error) {
			e.mu.Lock()
			defer e.mu.Unlock()
			return []netip.Addr{e.dst.Addr()}, nil
		},
	}
	for _, f := range opts {
		f(&o)
	}
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.srv, e.addr = srv, ln.Addr().String()
	sb := Sandbox{Name: "sb-test", Origin: func(net.Conn) (Origin, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		return Origin{Dst: e.dst, PID: 4242, UID: 1000}, nil
	}}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln, sb) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return e
}

// dial opens a TCP connection to the proxy, whatever address is asked for:
// the stand-in for the redirect layer.
func (e *env) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", e.addr)
}

// client returns an HTTP client whose connections all reach the proxy and
// that trusts the proxy's CA; h2 selects whether it offers HTTP/2.
func (e *env) client(h2 bool) *http.Client {
	tr := &http.Transport{
		DialContext:       e.dial,
		TLSClientConfig:   &tls.Config{RootCAs: e.clientCA},
		ForceAttemptHTTP2: h2,
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	e.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// tlsDial opens a TLS connection to the proxy for sni offering protos.
func (e *env) tlsDial(t testing.TB, sni string, protos ...string) *tls.Conn {
	t.Helper()
	c, err := tls.Dial("tcp", e.addr, &tls.Config{ServerName: sni, RootCAs: e.clientCA,
		NextProtos: protos})
	if err != nil {
		t.Fatalf("TLS dial through the proxy: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// findRecords returns this test's records with message msg.
func (e *env) findRecords(t testing.TB, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, r := range e.log.records(t) {
		if r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

// waitRecords waits until n records with msg exist (records of a request are
// written when its handler returns, which may be after the client has read
// the response).
func (e *env) waitRecords(t testing.TB, msg string, n int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs := e.findRecords(t, msg)
		if len(recs) >= n || time.Now().After(deadline) {
			if len(recs) < n {
				t.Fatalf("got %d %q records, want %d; log:\n%s", len(recs), msg, n, e.log.String())
			}
			return recs
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// apiError decodes the proxy's JSON error body.
func apiError(t testing.TB, body io.Reader) (typ, msg string) {
	t.Helper()
	var v struct {
		Error struct{ Type, Message string }
	}
	if err := json.NewDecoder(body).Decode(&v); err != nil {
		t.Fatalf("error body is not the JSON error shape: %v", err)
	}
	return v.Error.Type, v.Error.Message
}

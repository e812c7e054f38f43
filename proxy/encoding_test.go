package proxy

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"testing"
)

// gzipEcho is an upstream that echoes the Authorization it got, gzipped when
// the request accepts gzip (or always, with ?force), and remembers the exact
// bytes it sent.
type gzipEcho struct {
	mu   sync.Mutex
	sent []byte
}

func (g *gzipEcho) handler(w http.ResponseWriter, r *http.Request) {
	body := fmt.Sprintf(`{"auth":%q}`, r.Header.Get("Authorization"))
	out := []byte(body)
	if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") || r.URL.Query().Has("force") {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		io.WriteString(zw, body)
		zw.Close()
		out = b.Bytes()
		w.Header().Set("Content-Encoding", "gzip")
	}
	g.mu.Lock()
	g.sent = append([]byte(nil), out...)
	g.mu.Unlock()
	w.Write(out)
}

func (g *gzipEcho) last() []byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sent
}

func getGzip(t *testing.T, cl *http.Client, url string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Set by hand, so the client transport neither adds nor undoes gzip.
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, raw
}

// By default compression is left as client and upstream chose it: a gzip
// response goes to the client byte for byte, unscanned. This is the gap the
// package documentation states and IdentityEncoding closes.
func TestCompressedResponsePassedUnchangedByDefault(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			tca := newTestCA(t)
			g := &gzipEcho{}
			up := newUpstream(t, tca, g.handler, "api.openai.com")
			e := newEnv(t, tca.pool)
			e.setDst(up.addr(t))

			resp, raw := getGzip(t, e.client(h2), "https://api.openai.com/v1/echo")
			if got := up.last(t).Header.Get("Accept-Encoding"); got != "gzip" {
				t.Errorf("upstream got Accept-Encoding %q, want the client's gzip", got)
			}
			if got := resp.Header.Get("Content-Encoding"); got != "gzip" {
				t.Errorf("Content-Encoding %q, want gzip", got)
			}
			if sent := g.last(); !bytes.Equal(raw, sent) {
				t.Errorf("client got %d bytes %x, want the upstream's %d bytes %x",
					len(raw), raw, len(sent), sent)
			}
		})
	}
}

// With IdentityEncoding the upstream is asked for identity whatever the
// client accepts, so an echo comes back in the clear and is masked.
func TestIdentityEncodingMasksEcho(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			tca := newTestCA(t)
			g := &gzipEcho{}
			up := newUpstream(t, tca, g.handler, "api.openai.com")
			e := newEnv(t, tca.pool, func(o *Options) { o.Policy.IdentityEncoding = true })
			e.setDst(up.addr(t))

			resp, raw := getGzip(t, e.client(h2), "https://api.openai.com/v1/echo")
			if got := up.last(t).Header.Get("Accept-Encoding"); got != "identity" {
				t.Errorf("upstream got Accept-Encoding %q, want identity", got)
			}
			if got := resp.Header.Get("Content-Encoding"); got != "" {
				t.Errorf("Content-Encoding %q, want none", got)
			}
			if want := `{"auth":"Bearer ` + mask(openaiKey) + `"}`; string(raw) != want {
				t.Errorf("body %q, want %q", raw, want)
			}
			assertNoKey(t, resp, string(raw), openaiKey)
		})
	}
}

// An upstream that compresses although only identity was accepted is refused:
// its body could not be scanned.
func TestIdentityEncodingRefusesCompressedAnyway(t *testing.T) {
	tca := newTestCA(t)
	g := &gzipEcho{}
	up := newUpstream(t, tca, g.handler, "api.openai.com")
	e := newEnv(t, tca.pool, func(o *Options) { o.Policy.IdentityEncoding = true })
	e.setDst(up.addr(t))

	resp, raw := getGzip(t, e.client(true), "https://api.openai.com/v1/echo?force=1")
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502; body %q", resp.StatusCode, raw)
	}
	typ, msg := apiError(t, bytes.NewReader(raw))
	if typ != "hermes_upstream_error" || !strings.Contains(msg, "identity_encoding") {
		t.Errorf("error %s: %q, want hermes_upstream_error naming identity_encoding", typ, msg)
	}
	if g.last() == nil {
		t.Fatal("upstream was not reached")
	}
	assertNoKey(t, resp, string(raw), openaiKey)
	recs := e.waitRecords(t, msgRequest, 1)
	if d := recs[0][KeyDecision]; d != DecisionUpstreamErr {
		t.Errorf("record decision %v, want %s", d, DecisionUpstreamErr)
	}
}

// A reload that turns IdentityEncoding on applies to the next request on a
// connection already open.
func TestIdentityEncodingAppliesOnReload(t *testing.T) {
	tca := newTestCA(t)
	g := &gzipEcho{}
	up := newUpstream(t, tca, g.handler, "api.openai.com")
	e := newEnv(t, tca.pool)
	e.setDst(up.addr(t))
	cl := e.client(true)

	if resp, _ := getGzip(t, cl, "https://api.openai.com/v1/echo"); resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("before reload: Content-Encoding %q, want gzip", resp.Header.Get("Content-Encoding"))
	}
	pol := *e.srv.policy.Load()
	pol.IdentityEncoding = true
	if err := e.srv.SetPolicy(&pol); err != nil {
		t.Fatal(err)
	}

	var reused bool
	req, err := http.NewRequest("GET", "https://api.openai.com/v1/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept-Encoding", "gzip")
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
	}))
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !reused {
		t.Error("second request opened a new connection; the test wants the open one")
	}
	if got := up.last(t).Header.Get("Accept-Encoding"); got != "identity" {
		t.Errorf("after reload upstream got Accept-Encoding %q, want identity", got)
	}
	if want := `{"auth":"Bearer ` + mask(openaiKey) + `"}`; string(raw) != want {
		t.Errorf("after reload body %q, want %q", raw, want)
	}
}

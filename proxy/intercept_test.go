package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/http2"
)

func TestInjectsKeyAndRemovesClientCredentials(t *testing.T) {
	tca := newTestCA(t)
	tests := []struct {
		name, host, header, want, absent string
		h2                               bool
	}{
		{"openai h1", "api.openai.com", "Authorization", "Bearer " + openaiKey, "X-Api-Key", false},
		{"openai h2", "api.openai.com", "Authorization", "Bearer " + openaiKey, "X-Api-Key", true},
		{"anthropic h1", "api.anthropic.com", "X-Api-Key", anthropicKey, "Authorization", false},
		{"anthropic h2", "api.anthropic.com", "X-Api-Key", anthropicKey, "Authorization", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpstream(t, tca, nil, tt.host)
			e := newEnv(t, tca.pool)
			e.setDst(up.addr(t))

			req, _ := http.NewRequest("POST", "https://"+tt.host+"/v1/chat?x=1",
				strings.NewReader(`{"model":"m"}`))
			// Every carrier a client might use for a dummy or stolen key.
			req.Header.Set("Authorization", "Bearer sk-dummy")
			req.Header["x-api-key"] = []string{"dummy-lowercase"}
			req.Header.Set("Proxy-Authorization", "Basic ZHVtbXk6")
			req.Header.Set("Api-Key", "dummy")
			resp, err := e.client(tt.h2).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "ok" {
				t.Fatalf("got %d %q, want 200 ok", resp.StatusCode, body)
			}
			if wantProto := map[bool]int{true: 2, false: 1}[tt.h2]; resp.ProtoMajor != wantProto {
				t.Errorf("client side spoke HTTP/%d, want HTTP/%d", resp.ProtoMajor, wantProto)
			}

			got := up.last(t)
			if diff := cmp.Diff([]string{tt.want}, got.Header.Values(tt.header)); diff != "" {
				t.Errorf("%s upstream saw (-want +got):\n%s", tt.header, diff)
			}
			for _, h := range []string{tt.absent, "Proxy-Authorization", "Api-Key"} {
				if v := got.Header.Values(h); len(v) != 0 {
					t.Errorf("client credential %s reached upstream: %q", h, v)
				}
			}
			for _, h := range []string{"X-Forwarded-For", "Forwarded", "X-Forwarded-Host"} {
				if v := got.Header.Get(h); v != "" {
					t.Errorf("upstream got %s: %q; the sandbox's address must not leak", h, v)
				}
			}
			// The fake upstream is not on 443, so the port is the original
			// destination's, the one the client connected to.
			wantHost := tt.host + ":" + itoa(up.addr(t).Port())
			if got.Host != wantHost || got.URL.RawQuery != "x=1" {
				t.Errorf("upstream got host %q query %q, want %q x=1", got.Host,
					got.URL.RawQuery, wantHost)
			}
			for k, v := range resp.Header {
				if strings.Contains(strings.Join(v, " "), "SECRET") {
					t.Errorf("response header %s carries a key", k)
				}
			}
		})
	}
}

func TestLeafNamesExactlyTheSNI(t *testing.T) {
	tca := newTestCA(t)
	up := newUpstream(t, tca, nil, "api.openai.com")
	e := newEnv(t, tca.pool)
	e.setDst(up.addr(t))

	c := e.tlsDial(t, "API.OpenAI.com", "h2", "http/1.1")
	st := c.ConnectionState()
	if diff := cmp.Diff([]string{"api.openai.com"}, st.PeerCertificates[0].DNSNames); diff != "" {
		t.Errorf("leaf SANs (-want +got):\n%s", diff)
	}
	if st.NegotiatedProtocol != "h2" {
		t.Errorf("ALPN %q, want h2 (negotiated with the client alone)", st.NegotiatedProtocol)
	}
}

func TestAuthorityMustEqualSNI(t *testing.T) {
	tca := newTestCA(t)
	up := newUpstream(t, tca, nil, "api.openai.com")
	e := newEnv(t, tca.pool)
	e.setDst(up.addr(t))

	tests := []struct {
		host string
		want int
	}{
		{"api.openai.com", 200},
		{"API.OpenAI.COM", 200},
		{"api.openai.com.", 200},
		{"api.openai.com:443", 200},
		{"api.openai.com:" + itoa(up.addr(t).Port()), 200}, // the original destination port
		{"api.openai.com:8443", 421},
		{"api.anthropic.com", 421},
		{"evil.example", 421},
		{"api.openai.com.evil.example", 421},
	}
	for _, h2 := range []bool{false, true} {
		client := e.client(h2)
		for _, tt := range tests {
			before := up.count()
			req, _ := http.NewRequest("GET", "https://api.openai.com/v1/models", nil)
			req.Host = tt.host
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("h2=%v host %q: %v", h2, tt.host, err)
			}
			if resp.StatusCode != tt.want {
				t.Errorf("h2=%v host %q: status %d, want %d", h2, tt.host, resp.StatusCode, tt.want)
			}
			if tt.want == 421 {
				if typ, _ := apiError(t, resp.Body); typ != "hermes_misdirected_request" {
					t.Errorf("error type %q", typ)
				}
				if up.count() != before {
					t.Errorf("h2=%v host %q: a misdirected request reached upstream", h2, tt.host)
				}
			}
			resp.Body.Close()
		}
	}
}

// An HTTP/2 client may coalesce a second name onto a connection; a stream
// whose :authority is not the connection's SNI must get 421, never the key.
func TestHTTP2StreamWithOtherAuthority(t *testing.T) {
	tca := newTestCA(t)
	up := newUpstream(t, tca, nil, "api.openai.com", "api.anthropic.com")
	e := newEnv(t, tca.pool)
	e.setDst(up.addr(t))

	conn := e.tlsDial(t, "api.openai.com", "h2")
	cc, err := (&http2.Transport{}).NewClientConn(conn)
	if err != nil {
		t.Fatal(err)
	}
	do := func(authority string) int {
		req, _ := http.NewRequest("GET", "https://"+authority+"/v1/models", nil)
		resp, err := cc.RoundTrip(req)
		if err != nil {
			t.Fatalf(":authority %s: %v", authority, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}

	if got := do("api.openai.com"); got != 200 {
		t.Fatalf("first stream: %d, want 200", got)
	}
	if got := do("api.anthropic.com"); got != 421 {
		t.Errorf("stream for another authority: %d, want 421", got)
	}
	if got := do("api.openai.com"); got != 200 {
		t.Errorf("third stream: %d, want 200 (the connection stays usable)", got)
	}
	if up.count() != 2 {
		t.Errorf("upstream saw %d requests, want 2", up.count())
	}
	for _, r := range up.reqs {
		if !strings.HasPrefix(r.Host, "api.openai.com:") || r.Header.Get("X-Api-Key") != "" {
			t.Errorf("upstream request for %q with x-api-key set", r.Host)
		}
	}
}

// A keep-alive HTTP/1.1 connection is judged per request, not once.
func TestKeepAliveSecondRequestOtherHost(t *testing.T) {
	tca := newTestCA(t)
	up := newUpstream(t, tca, nil, "api.openai.com")
	e := newEnv(t, tca.pool)
	e.setDst(up.addr(t))

	conn := e.tlsDial(t, "api.openai.com", "http/1.1")
	io.WriteString(conn, "GET /a HTTP/1.1\r\nHost: api.openai.com\r\n\r\n"+
		"GET /b HTTP/1.1\r\nHost: api.anthropic.com\r\n\r\n")
	br := newReader(conn)
	var got []int
	for range 2 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		got = append(got, resp.StatusCode)
	}
	if diff := cmp.Diff([]int{200, 421}, got); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	if up.count() != 1 || up.last(t).URL.Path != "/a" {
		t.Errorf("upstream saw %d requests, want only /a", up.count())
	}
}

func TestRedirectReturnedNotFollowed(t *testing.T) {
	tca := newTestCA(t)
	up := newUpstream(t, tca, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://elsewhere.example/landing", http.StatusFound)
	}, "api.openai.com")
	e := newEnv(t, tca.pool)
	e.setDst(up.addr(t))

	resp, err := e.client(false).Get("https://api.openai.com/v1/files/1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 302 || resp.Header.Get("Location") != "https://elsewhere.example/landing" {
		t.Errorf("got %d Location %q, want the 302 itself", resp.StatusCode,
			resp.Header.Get("Location"))
	}
	if up.count() != 1 || e.dialCount() != 1 {
		t.Errorf("upstream requests %d, dials %d; want 1 and 1 (no redirect followed)",
			up.count(), e.dialCount())
	}
}

func TestNoKeyAnswersJSONAndForwardsNothing(t *testing.T) {
	tca := newTestCA(t)
	up := newUpstream(t, tca, nil, "api.nokey.example")
	e := newEnv(t, tca.pool)
	e.setDst(up.addr(t))

	resp, err := e.client(true).Get("https://api.nokey.example/v1/x")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	typ, msg := apiError(t, resp.Body)
	if resp.StatusCode != 503 || typ != "hermes_no_credential" || !strings.Contains(msg, `"nokey"`) {
		t.Errorf("got %d %s %q; want 503 hermes_no_credential naming the provider",
			resp.StatusCode, typ, msg)
	}
	if up.count() != 0 || e.dialCount() != 0 {
		t.Errorf("without a key the request went upstream (%d requests, %d dials)",
			up.count(), e.dialCount())
	}
	recs := e.waitRecords(t, msgRequest, 1)
	if recs[0][KeyDecision] != DecisionNoKey {
		t.Errorf("record decision %v, want %s", recs[0][KeyDecision], DecisionNoKey)
	}
}

// A client that does not trust the proxy CA fails its handshake; the
// connection is recorded and nothing goes upstream.
func TestClientHandshakeFailureRecorded(t *testing.T) {
	tca := newTestCA(t)
	up := newUpstream(t, tca, nil, "api.openai.com")
	e := newEnv(t, tca.pool)
	e.setDst(up.addr(t))

	_, err := tls.Dial("tcp", e.addr, &tls.Config{ServerName: "api.openai.com"})
	if err == nil {
		t.Fatal("handshake with an untrusted CA succeeded")
	}
	recs := e.waitRecords(t, msgConnError, 1)
	if !strings.Contains(recs[0][KeyReason].(string), "client TLS handshake") {
		t.Errorf("reason %q", recs[0][KeyReason])
	}
	if e.dialCount() != 0 {
		t.Errorf("upstream dialled for a failed client handshake")
	}
}

var _ = context.Background

package proxy

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"
	"github.com/hermes-netd/hermes-netd/internal/providers"
	"github.com/hermes-netd/hermes-netd/internal/secrets"
)

// These tests play an upstream that reflects the request it got (an echo
// endpoint, an error quoting the credential): the sandbox must see masks of
// the same length, never the key.

func mask(s string) string { return strings.Repeat("*", len(s)) }

// assertNoKey fails if any of the secrets appears in the response's header,
// trailer or body.
func assertNoKey(t *testing.T, resp *http.Response, body string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		for _, h := range []http.Header{resp.Header, resp.Trailer} {
			for name, vs := range h {
				if strings.Contains(name+": "+strings.Join(vs, ", "), s) {
					t.Errorf("header %s carries the credential", name)
				}
			}
		}
		if strings.Contains(body, s) {
			t.Errorf("body carries the credential: %q", body)
		}
	}
}

func TestEchoedAuthorizationMasked(t *testing.T) {
	tca := newTestCA(t)
	up := newUpstream(t, tca, func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		body := fmt.Sprintf(`{"echo":{"authorization":%q,"path":%q}}`, auth, r.URL.Path)
		w.Header().Set("X-Echo-Authorization", auth)
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Has("trailer") {
			// Trailers need a body of unknown length (chunked in HTTP/1.1):
			// the flush keeps the upstream from adding a Content-Length.
			w.Header().Set("Trailer", "X-Echo-Trailer")
			io.WriteString(w, body)
			w.(http.Flusher).Flush()
			w.Header().Set("X-Echo-Trailer", auth)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		io.WriteString(w, body)
	}, "api.openai.com")
	e := newEnv(t, tca.pool)
	e.setDst(up.addr(t))

	wantBody := fmt.Sprintf(`{"echo":{"authorization":"Bearer %s","path":"/v1/echo"}}`,
		mask(openaiKey))
	for _, h2 := range []bool{false, true} {
		for _, trailer := range []bool{false, true} {
			u := "https://api.openai.com/v1/echo"
			if trailer {
				u += "?trailer=1"
			}
			req, _ := http.NewRequest("GET", u, nil)
			req.Header.Set("Authorization", "Bearer sk-dummy")
			resp, err := e.client(h2).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("h2=%v: reading body: %v", h2, err)
			}
			body := string(raw)

			got := []string{body, resp.Header.Get("X-Echo-Authorization")}
			want := []string{wantBody, "Bearer " + mask(openaiKey)}
			if trailer {
				got = append(got, resp.Trailer.Get("X-Echo-Trailer"))
				want = append(want, "Bearer "+mask(openaiKey))
			} else if resp.ContentLength != int64(len(wantBody)) {
				t.Errorf("h2=%v: Content-Length %d, want %d", h2, resp.ContentLength,
					len(wantBody))
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("h2=%v trailer=%v: body, header[, trailer] (-want +got):\n%s",
					h2, trailer, diff)
			}
			assertNoKey(t, resp, body, openaiKey)
		}
	}
	if got := up.last(t).Header.Get("Authorization"); got != "Bearer "+openaiKey {
		t.Errorf("upstream got %q; the key must still be injected", got)
	}
}

// The upstream writes the key in two parts with a flush between, and only
// writes the second part once the client has read what came before the
// first: the proxy's reads see the key split, and must mask it anyway.
func TestKeySplitAcrossUpstreamWritesMasked(t *testing.T) {
	tca := newTestCA(t)
	half := len(openaiKey) / 2
	clientRead := make(chan struct{})
	up := newUpstream(t, tca, func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		fmt.Fprintf(w, "before\n%s", key[:half])
		w.(http.Flusher).Flush()
		select {
		case <-clientRead:
		case <-r.Context().Done():
			return
		}
		fmt.Fprintf(w, "%s after\n", key[half:])
	}, "api.openai.com")
	e := newEnv(t, tca.pool)
	e.setDst(up.addr(t))

	for _, h2 := range []bool{false, true} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		req, _ := http.NewRequestWithContext(ctx, "GET", "https://api.openai.com/v1/x", nil)
		resp, err := e.client(h2).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(resp.Body)
		first, err := br.ReadString('\n')
		if err != nil || first != "before\n" {
			t.Fatalf("h2=%v: first line %q, %v (held back by the proxy?)", h2, first, err)
		}
		clientRead <- struct{}{}
		rest, err := io.ReadAll(br)
		resp.Body.Close()
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if want := mask(openaiKey) + " after\n"; string(rest) != want {
			t.Errorf("h2=%v: got %q, want %q", h2, rest, want)
		}
		assertNoKey(t, resp, first+string(rest), openaiKey, openaiKey[:half+1])
	}
}

// Redaction must keep streaming intact: events that carry the key, or bytes
// that look like its start, still reach the client one by one (the upstream
// waits for the client before each next event, so holding one deadlocks).
func TestSSEWithKeyArriveOneByOne(t *testing.T) {
	events := []string{
		"data: {\"delta\":\"hi\"}\n\n",
		"data: {\"echo\":\"Bearer " + openaiKey + "\"}\n\n",
		"data: sk-\n\n",
		"data: " + openaiKey[:len(openaiKey)-1] + "\n\n",
		"data: [DONE]\n\n",
	}
	var want []string
	for _, ev := range events {
		want = append(want, strings.ReplaceAll(ev, openaiKey, mask(openaiKey)))
	}
	checkEventsOneByOne(t, events, want)
}

// credentialEnv adds providers for the basic and query forms to the test
// catalog, with a query key that URL encoding changes.
const (
	queryKey = "AIza+SECRET/query=key"
	basicKey = "ghp_SECRETbasicKey42"
)

func withFormProviders(t *testing.T) envOption {
	return func(o *Options) {
		ps := testCatalog(t).All()
		ps = append(ps,
			providers.Provider{Name: "gemini", Domains: []string{"api.gemini.example"},
				Form: providers.Form{Kind: providers.FormQuery, Param: "key"}},
			providers.Provider{Name: "github", Domains: []string{"api.github.example"},
				Form: providers.Form{Kind: providers.FormBasic, User: "x-access-token"}})
		c, err := providers.NewCatalog(ps)
		if err != nil {
			t.Fatal(err)
		}
		o.Policy.Catalog = c
		keys := o.Keys
		o.Keys = func(name string) (secrets.Key, error) {
			switch name {
			case "gemini":
				return secrets.NewKey(queryKey), nil
			case "github":
				return secrets.NewKey(basicKey), nil
			}
			return keys(name)
		}
	}
}

// Every form the proxy sends the credential in is masked when echoed back:
// x-api-key, the query parameter (raw and URL-encoded) and basic auth (the
// base64 token as sent, and the decoded user:key).
func TestEchoedCredentialFormsMasked(t *testing.T) {
	tca := newTestCA(t)
	up := newUpstream(t, tca, func(w http.ResponseWriter, r *http.Request) {
		user, pass, _ := r.BasicAuth()
		w.Header().Set("X-Echo-Api-Key", r.Header.Get("X-Api-Key"))
		w.Header().Set("X-Echo-Query", r.URL.RawQuery)
		fmt.Fprintf(w, "api-key=%s\nraw-query=%s\nkey=%s\nauthorization=%s\nbasic=%s:%s\n",
			r.Header.Get("X-Api-Key"), r.URL.RawQuery, r.URL.Query().Get("key"),
			r.Header.Get("Authorization"), user, pass)
	}, "api.anthropic.com", "api.gemini.example", "api.github.example")
	e := newEnv(t, tca.pool, withFormProviders(t))
	e.setDst(up.addr(t))

	escaped := url.QueryEscape(queryKey)
	token := base64.StdEncoding.EncodeToString([]byte("x-access-token:" + basicKey))
	tests := []struct {
		url      string
		body     string
		header   string // X-Echo-Api-Key or X-Echo-Query, whichever applies
		hdrName  string
		forbid   []string
		sentForm string // what the upstream must have received, to show the form applied
	}{
		{url: "https://api.anthropic.com/v1/messages",
			body: "api-key=" + mask(anthropicKey) + "\nraw-query=\nkey=\nauthorization=\n" +
				"basic=:\n",
			hdrName: "X-Echo-Api-Key", header: mask(anthropicKey),
			forbid: []string{anthropicKey}},
		{url: "https://api.gemini.example/v1/models?alt=json",
			body: "api-key=\nraw-query=alt=json&key=" + mask(escaped) + "\nkey=" +
				mask(queryKey) + "\nauthorization=\nbasic=:\n",
			hdrName: "X-Echo-Query", header: "alt=json&key=" + mask(escaped),
			forbid: []string{queryKey, escaped}},
		{url: "https://api.github.example/user",
			body: "api-key=\nraw-query=\nkey=\nauthorization=Basic " + mask(token) +
				"\nbasic=x-access-token:" + mask(basicKey) + "\n",
			forbid: []string{basicKey, token}},
	}
	for _, tt := range tests {
		for _, h2 := range []bool{false, true} {
			resp, err := e.client(h2).Get(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if string(raw) != tt.body {
				t.Errorf("%s h2=%v: body\n%s\nwant\n%s", tt.url, h2, raw, tt.body)
			}
			if tt.hdrName != "" && resp.Header.Get(tt.hdrName) != tt.header {
				t.Errorf("%s h2=%v: %s %q, want %q", tt.url, h2, tt.hdrName,
					resp.Header.Get(tt.hdrName), tt.header)
			}
			assertNoKey(t, resp, string(raw), tt.forbid...)
		}
	}
	// The upstream did get each form, so the masks above hid real echoes.
	want := map[string]bool{"X-Api-Key": false, "key=" + escaped: false, token: false}
	up.mu.Lock()
	for _, r := range up.reqs {
		want["X-Api-Key"] = want["X-Api-Key"] || r.Header.Get("X-Api-Key") == anthropicKey
		want["key="+escaped] = want["key="+escaped] || strings.Contains(r.URL.RawQuery,
			"key="+escaped)
		want[token] = want[token] || r.Header.Get("Authorization") == "Basic "+token
	}
	up.mu.Unlock()
	for form, seen := range want {
		if !seen {
			t.Errorf("upstream never received the %q form", form)
		}
	}
}

// A websocket upgrade still works with redaction on, and the 101's own
// headers are masked; frames after it are not scanned (see doc.go).
func TestWebsocketUpgradeHeadersMasked(t *testing.T) {
	tca := newTestCA(t)
	up := newUpstream(t, tca, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Echo-Authorization", r.Header.Get("Authorization"))
		wsEcho(w, r)
	}, "api.openai.com")
	e := newEnv(t, tca.pool)
	e.setDst(up.addr(t))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "wss://api.openai.com/v1/realtime",
		&websocket.DialOptions{HTTPClient: e.client(false)})
	if err != nil {
		t.Fatalf("websocket dial: %v", err)
	}
	defer c.CloseNow()
	if got, want := resp.Header.Get("X-Echo-Authorization"), "Bearer "+mask(openaiKey); got != want {
		t.Errorf("101 header %q, want %q", got, want)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, got, err := c.Read(ctx); err != nil || string(got) != "echo: ping" {
		t.Fatalf("after upgrade got %q, %v", got, err)
	}
	c.Close(websocket.StatusNormalClosure, "")
}

// ReverseProxy forwards 1xx responses (103 Early Hints) from its own client
// trace, not through ModifyResponse; their headers are masked too.
func TestEarlyHintsHeaderMasked(t *testing.T) {
	tca := newTestCA(t)
	up := newUpstream(t, tca, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</hint?auth="+r.Header.Get("Authorization")+">; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		io.WriteString(w, "ok")
	}, "api.openai.com")
	e := newEnv(t, tca.pool)
	e.setDst(up.addr(t))

	var mu sync.Mutex
	var hints []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		mu.Lock()
		defer mu.Unlock()
		hints = append(hints, fmt.Sprintf("%d %s", code, h.Get("Link")))
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace),
		"GET", "https://api.openai.com/", nil)
	resp, err := e.client(false).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	want := []string{"103 </hint?auth=Bearer " + mask(openaiKey) + ">; rel=preload"}
	if diff := cmp.Diff(want, hints); diff != "" {
		t.Errorf("1xx responses (-want +got):\n%s", diff)
	}
}

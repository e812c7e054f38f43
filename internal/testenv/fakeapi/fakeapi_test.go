package fakeapi

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var testKeys = map[Provider]string{
	OpenAI:    "sk-test-openai-1",
	Anthropic: "sk-ant-test-1",
	NIM:       "nvapi-test-1",
}

// site is one fake site served on a loopback port.
type site struct {
	srv    *Server
	addr   string
	client *http.Client
}

// startSite serves p on 127.0.0.1 and returns a client that reaches it under
// the name host, over HTTP/2 when h2 is set.
func startSite(t *testing.T, p Provider, host string, h2 bool, delay time.Duration) site {
	t.Helper()
	ca, err := NewCA("fakeapi test CA")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue(host)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Options{Keys: testKeys, ChunkDelay: delay})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ln, p, cert); err != nil {
		t.Fatal(err)
	}

	addr := ln.Addr().String()
	protos := new(http.Protocols)
	protos.SetHTTP1(!h2)
	protos.SetHTTP2(h2)
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool()},
		Protocols:       protos,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return site{srv: srv, addr: addr, client: &http.Client{Transport: tr}}
}

func do(t *testing.T, c *http.Client, method, url, body string, hdr map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

const chatBody = `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`
const msgBody = `{"model":"claude-sonnet-4-5","max_tokens":64,` +
	`"messages":[{"role":"user","content":"hi"}]}`

func TestAuthAndShapes(t *testing.T) {
	tests := []struct {
		name       string
		p          Provider
		host       string
		method     string
		path, body string
		hdr        map[string]string
		wantStatus int
		wantJSON   string // a JSON object the answer must contain, at its top level
	}{
		{"openai ok", OpenAI, "api.openai.com", "POST", "/v1/chat/completions", chatBody,
			map[string]string{"Authorization": "Bearer sk-test-openai-1"}, 200,
			`{"object":"chat.completion"}`},
		{"openai models", OpenAI, "api.openai.com", "GET", "/v1/models", "",
			map[string]string{"Authorization": "Bearer sk-test-openai-1"}, 200,
			`{"object":"list"}`},
		{"openai no key", OpenAI, "api.openai.com", "GET", "/v1/models", "", nil, 401,
			`{"error":{"message":"You didn't provide an API key. Send it as a Bearer ` +
				`token in the Authorization header.","type":"invalid_request_error",` +
				`"param":null,"code":null}}`},
		{"openai wrong key", OpenAI, "api.openai.com", "GET", "/v1/models", "",
			map[string]string{"Authorization": "Bearer sk-dummy"}, 401,
			`{"error":{"message":"Incorrect API key provided.",` +
				`"type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`},
		{"openai bad json", OpenAI, "api.openai.com", "POST", "/v1/chat/completions", "{",
			map[string]string{"Authorization": "Bearer sk-test-openai-1"}, 400, `{}`},
		{"openai unknown url", OpenAI, "api.openai.com", "GET", "/v1/nope", "",
			map[string]string{"Authorization": "Bearer sk-test-openai-1"}, 404, `{}`},
		{"nim ok", NIM, "integrate.api.nvidia.com", "POST", "/v1/chat/completions",
			chatBody, map[string]string{"Authorization": "Bearer nvapi-test-1"}, 200,
			`{"object":"chat.completion"}`},
		{"nim openai key", NIM, "integrate.api.nvidia.com", "GET", "/v1/models", "",
			map[string]string{"Authorization": "Bearer sk-test-openai-1"}, 401,
			`{"status":401,"title":"Unauthorized","detail":"Authentication failed"}`},
		{"anthropic ok", Anthropic, "api.anthropic.com", "POST", "/v1/messages", msgBody,
			map[string]string{"X-Api-Key": "sk-ant-test-1"}, 200,
			`{"type":"message","stop_reason":"end_turn"}`},
		{"anthropic bearer only", Anthropic, "api.anthropic.com", "POST", "/v1/messages",
			msgBody, map[string]string{"Authorization": "Bearer sk-ant-test-1"}, 401,
			`{"type":"error","error":{"type":"authentication_error",` +
				`"message":"x-api-key header is required"}}`},
		{"anthropic missing max_tokens", Anthropic, "api.anthropic.com", "POST",
			"/v1/messages", chatBody, map[string]string{"X-Api-Key": "sk-ant-test-1"}, 400,
			`{"type":"error"}`},
		{"passthrough", Passthrough, "passthrough.example.test", "GET", "/x", "", nil, 200,
			""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startSite(t, tt.p, tt.host, false, time.Millisecond)
			status, body := do(t, s.client, tt.method, "https://"+tt.host+tt.path, tt.body,
				tt.hdr)
			if status != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", status, tt.wantStatus, body)
			}
			if strings.Contains(body, "sk-dummy") || strings.Contains(body, "sk-test") {
				t.Errorf("answer repeats a credential: %s", body)
			}
			if tt.wantJSON == "" {
				if diff := cmp.Diff(PlainBody(tt.p, tt.host), body); diff != "" {
					t.Errorf("body (-want +got):\n%s", diff)
				}
				return
			}
			var want, got map[string]any
			if err := json.Unmarshal([]byte(tt.wantJSON), &want); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("answer is not JSON: %v: %s", err, body)
			}
			for k := range got {
				if _, ok := want[k]; !ok {
					delete(got, k)
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("answer (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRecordsRequests(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		s := startSite(t, OpenAI, "api.openai.com", h2, time.Millisecond)
		do(t, s.client, "POST", "https://api.openai.com/v1/chat/completions?key=q1&x=2",
			chatBody, map[string]string{
				"Authorization": "Bearer sk-test-openai-1",
				"X-Api-Key":     "leaked",
			})

		got := s.srv.Requests(OpenAI)
		if len(got) != 1 {
			t.Fatalf("h2=%v: recorded %d requests, want 1", h2, len(got))
		}
		r := got[0]
		wantProto := map[bool]string{false: "HTTP/1.1", true: "HTTP/2.0"}[h2]
		gotSummary := []any{r.Provider, r.Proto, r.ServerName, r.Method, r.Host, r.Path,
			r.BodySize, r.Model, r.Stream, r.Status}
		wantSummary := []any{OpenAI, wantProto, "api.openai.com", "POST", "api.openai.com",
			"/v1/chat/completions", int64(len(chatBody)), "gpt-4o-mini", false, 200}
		if diff := cmp.Diff(wantSummary, gotSummary); diff != "" {
			t.Errorf("h2=%v: record (-want +got):\n%s", h2, diff)
		}
		wantCreds := []Credential{
			{Where: "header", Name: "authorization", Value: "Bearer sk-test-openai-1"},
			{Where: "header", Name: "x-api-key", Value: "leaked"},
			{Where: "query", Name: "key", Value: "q1"},
		}
		if diff := cmp.Diff(wantCreds, r.Credentials()); diff != "" {
			t.Errorf("h2=%v: credentials (-want +got):\n%s", h2, diff)
		}
		if n := len(s.srv.Requests(Anthropic)); n != 0 {
			t.Errorf("anthropic recorded %d requests, want 0", n)
		}
		s.srv.Reset()
		if n := len(s.srv.Requests("")); n != 0 {
			t.Errorf("after Reset: %d requests, want 0", n)
		}
	}
}

// readEvents reads SSE data lines until [DONE] or the end of the stream.
func readEvents(t *testing.T, body io.Reader, max int) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(body)
	for sc.Scan() && len(out) < max {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if ok {
			out = append(out, line)
		}
	}
	return out
}

func TestOpenAIStream(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		s := startSite(t, OpenAI, "api.openai.com", h2, time.Millisecond)
		req, _ := http.NewRequest("POST", "https://api.openai.com/v1/chat/completions",
			strings.NewReader(`{"model":"gpt-4o-mini","stream":true,`+
				`"stream_options":{"include_usage":true},`+
				`"messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Authorization", "Bearer sk-test-openai-1")
		resp, err := s.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
			t.Errorf("content type %q, want text/event-stream", ct)
		}
		events := readEvents(t, resp.Body, 100)
		resp.Body.Close()

		// role chunk, one per piece, finish chunk, usage chunk, [DONE]
		if want := len(ReplyPieces) + 4; len(events) != want {
			t.Fatalf("h2=%v: %d events, want %d: %q", h2, len(events), want, events)
		}
		if events[len(events)-1] != "[DONE]" {
			t.Errorf("last event %q, want [DONE]", events[len(events)-1])
		}
		var text strings.Builder
		var finish []string
		for _, ev := range events[:len(events)-1] {
			var c struct {
				Object  string
				Choices []struct {
					Delta        struct{ Content string }
					FinishReason *string `json:"finish_reason"`
				}
			}
			if err := json.Unmarshal([]byte(ev), &c); err != nil {
				t.Fatalf("event %q: %v", ev, err)
			}
			if c.Object != "chat.completion.chunk" {
				t.Errorf("object %q, want chat.completion.chunk", c.Object)
			}
			for _, ch := range c.Choices {
				text.WriteString(ch.Delta.Content)
				if ch.FinishReason != nil {
					finish = append(finish, *ch.FinishReason)
				}
			}
		}
		if diff := cmp.Diff(Reply, text.String()); diff != "" {
			t.Errorf("streamed text (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"stop"}, finish); diff != "" {
			t.Errorf("finish reasons (-want +got):\n%s", diff)
		}
		if r := s.srv.Requests(OpenAI); len(r) != 1 || !r[0].Stream {
			t.Errorf("records %+v, want one streamed request", r)
		}
	}
}

// TestStreamFlushesEachChunk shows that chunks leave one by one: with an hour
// between chunks, the first two still arrive.
func TestStreamFlushesEachChunk(t *testing.T) {
	tests := []struct {
		p          Provider
		host, path string
		body       string
		hdr        string
		key        string
	}{
		{OpenAI, "api.openai.com", "/v1/chat/completions",
			`{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`,
			"Authorization", "Bearer sk-test-openai-1"},
		{Anthropic, "api.anthropic.com", "/v1/messages",
			`{"model":"m","max_tokens":9,"stream":true,"messages":[{"role":"user"}]}`,
			"X-Api-Key", "sk-ant-test-1"},
	}
	for _, tt := range tests {
		t.Run(string(tt.p), func(t *testing.T) {
			s := startSite(t, tt.p, tt.host, true, time.Hour)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "POST", "https://"+tt.host+tt.path,
				strings.NewReader(tt.body))
			req.Header.Set(tt.hdr, tt.key)
			resp, err := s.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			events := readEvents(t, resp.Body, 1)
			if len(events) != 1 || ctx.Err() != nil {
				t.Fatalf("first event did not arrive on its own: %q, %v", events, ctx.Err())
			}
		})
	}
}

func TestAnthropicStream(t *testing.T) {
	s := startSite(t, Anthropic, "api.anthropic.com", false, time.Millisecond)
	req, _ := http.NewRequest("POST", "https://api.anthropic.com/v1/messages",
		strings.NewReader(`{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,`+
			`"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("X-Api-Key", "sk-ant-test-1")
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()

	var types []string
	var text strings.Builder
	for _, ev := range readEvents(t, resp.Body, 100) {
		var e struct {
			Type  string
			Delta struct{ Text string }
		}
		if err := json.Unmarshal([]byte(ev), &e); err != nil {
			t.Fatalf("event %q: %v", ev, err)
		}
		if len(types) == 0 || types[len(types)-1] != e.Type {
			types = append(types, e.Type)
		}
		text.WriteString(e.Delta.Text)
	}
	want := []string{"message_start", "content_block_start", "content_block_delta",
		"content_block_stop", "message_delta", "message_stop"}
	if diff := cmp.Diff(want, types); diff != "" {
		t.Errorf("event types (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(Reply, text.String()); diff != "" {
		t.Errorf("streamed text (-want +got):\n%s", diff)
	}
}

func TestNewNeedsKeys(t *testing.T) {
	_, err := New(Options{Keys: map[Provider]string{OpenAI: "a", NIM: "b"}})
	if err == nil || !strings.Contains(err.Error(), "anthropic") {
		t.Errorf("New without an anthropic key: error %v, want one naming anthropic", err)
	}
}

func TestCAsAreDistinct(t *testing.T) {
	a, err := NewCA("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewCA("b")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := b.Issue("passthrough.example.test", "198.18.0.20")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Leaf.Verify(x509VerifyOptions(b, "198.18.0.20")); err != nil {
		t.Errorf("leaf does not verify against its own CA by IP: %v", err)
	}
	if _, err := cert.Leaf.Verify(x509VerifyOptions(a, "passthrough.example.test")); err == nil {
		t.Error("leaf of CA b verifies against CA a")
	}
}

func x509VerifyOptions(ca *CA, name string) x509.VerifyOptions {
	return x509.VerifyOptions{Roots: ca.Pool(), DNSName: name}
}

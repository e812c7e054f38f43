//go:build linux

package e2e_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/hermes-netd/hermes-netd/internal/testenv"
	"github.com/hermes-netd/hermes-netd/internal/testenv/fakeapi"
)

// testNodeSDK: the official OpenAI Node SDK, with its default dummy key and
// only NODE_EXTRA_CA_CERTS pointing at the hermes CA, gets a streamed chat
// completion chunk by chunk.
func testNodeSDK(t *testing.T, w *world) {
	dir := testdata(t, "node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "openai")); err != nil {
		t.Skipf("the openai npm package is not installed: run vagrant/provision.sh "+
			"or `npm install` in %s", dir)
	}
	mark := w.mark(fakeapi.OpenAI)
	r := w.inSandbox(t, w.sandboxEnv("NODE_EXTRA_CA_CERTS="+w.hermesCA), "node",
		filepath.Join(dir, "openai-stream.mjs"))
	if r.code != 0 {
		t.Fatalf("node: exit %d: %s", r.code, r.stderr)
	}

	if err := testenv.CheckNodeStream(r.stdout); err != nil {
		t.Error(err)
	}
	if req := w.wantInjected(t, fakeapi.OpenAI, mark); !req.Stream {
		t.Errorf("the provider saw a request without stream: true")
	}
}

// testGoClient: Go's net/http, over HTTP/2 and HTTP/1.1, trusting the hermes
// CA through SSL_CERT_FILE.
func testGoClient(t *testing.T, w *world) {
	for _, tc := range []struct {
		args  []string
		proto string
	}{
		{nil, "HTTP/2.0"},
		{[]string{"-http1"}, "HTTP/1.1"},
	} {
		mark := w.mark(fakeapi.OpenAI)
		r := w.inSandbox(t, w.sandboxEnv("SSL_CERT_FILE="+w.hermesCA), w.goClient, tc.args...)
		var got struct {
			Status int
			Proto  string
			Body   struct {
				Choices []struct{ Message struct{ Content string } }
			}
		}
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 {
			t.Errorf("goclient %q: exit %d, stdout %q, stderr %q", tc.args, r.code,
				r.stdout, r.stderr)
			continue
		}
		if got.Status != 200 || got.Proto != tc.proto || len(got.Body.Choices) != 1 ||
			got.Body.Choices[0].Message.Content != fakeapi.Reply {
			t.Errorf("goclient %q: %s, want 200 over %s with the reply", tc.args, r.stdout,
				tc.proto)
		}
		w.wantInjected(t, fakeapi.OpenAI, mark)
	}
}

// testPython: Python's urllib with its default dummy key and SSL_CERT_FILE.
func testPython(t *testing.T, w *world) {
	mark := w.mark(fakeapi.OpenAI)
	r := w.inSandbox(t, w.sandboxEnv("SSL_CERT_FILE="+w.hermesCA), "python3",
		testdata(t, "py", "client.py"))
	if r.code != 0 {
		t.Fatalf("python: exit %d: %s", r.code, r.stderr)
	}
	var answer struct {
		Object  string
		Choices []struct{ Message struct{ Content string } }
	}
	if err := json.Unmarshal([]byte(r.stdout), &answer); err != nil {
		t.Fatalf("python answer %q: %v", r.stdout, err)
	}
	if answer.Object != "chat.completion" || len(answer.Choices) != 1 ||
		answer.Choices[0].Message.Content != fakeapi.Reply {
		t.Errorf("python answer %s, want one chat.completion choice saying %q", r.stdout,
			fakeapi.Reply)
	}
	w.wantInjected(t, fakeapi.OpenAI, mark)
}

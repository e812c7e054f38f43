//go:build linux

package testenv

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hermes-netd/hermes-netd/internal/testenv/fakeapi"
)

// TestPrivilegedRealClients shows that the e2e suite's real clients (the
// official OpenAI Node SDK, Go's net/http and Python's urllib) get along with the fake
// OpenAI API when they talk to it directly, with the right key, and get its
// 401 with the dummy key they carry in the suite.
func TestPrivilegedRealClients(t *testing.T) {
	needRoot(t)
	e := New(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	testdata, err := filepath.Abs("../e2e/testdata")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("node openai SDK streams", func(t *testing.T) {
		dir := filepath.Join(testdata, "node")
		if _, err := os.Stat(filepath.Join(dir, "node_modules", "openai")); err != nil {
			t.Skipf("the openai npm package is not installed: run vagrant/provision.sh "+
				"or `npm install` in %s", dir)
		}
		node := func(key string) *exec.Cmd {
			cmd := e.SandboxCmd(ctx, "node", filepath.Join(dir, "openai-stream.mjs"))
			cmd.Env = append(os.Environ(), "NODE_EXTRA_CA_CERTS="+e.UpstreamCAFile())
			if key != "" {
				cmd.Env = append(cmd.Env, "OPENAI_STREAM_API_KEY="+key)
			}
			return cmd
		}

		if err := CheckNodeStream(run(t, node(e.Key(fakeapi.OpenAI)))); err != nil {
			t.Error(err)
		}

		cmd := node("")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		var exit *exec.ExitError
		if err := cmd.Run(); !errors.As(err, &exit) || exit.ExitCode() != 1 ||
			!strings.Contains(stderr.String(), `"status":401`) {
			t.Errorf("with sk-dummy: %v, stderr %q; want exit 1 and status 401",
				err, stderr.String())
		}
	})

	t.Run("go net/http", func(t *testing.T) {
		bin := filepath.Join(t.TempDir(), "goclient")
		gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
		build := exec.CommandContext(ctx, gobin, "build", "-o", bin, "./goclient")
		build.Dir = testdata
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("building goclient: %v\n%s", err, out)
		}
		for _, tt := range []struct {
			args   []string
			status int
			proto  string
		}{
			{[]string{"-key", e.Key(fakeapi.OpenAI)}, 200, "HTTP/2.0"},
			{[]string{"-key", e.Key(fakeapi.OpenAI), "-http1"}, 200, "HTTP/1.1"},
			{nil, 401, "HTTP/2.0"},
		} {
			cmd := e.SandboxCmd(ctx, bin, tt.args...)
			cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+e.UpstreamCAFile())
			out, _ := cmd.Output()
			var got struct {
				Status int
				Proto  string
				Body   struct {
					Choices []struct{ Message struct{ Content string } }
				}
			}
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("goclient %q: output %q: %v", tt.args, out, err)
			}
			if got.Status != tt.status || got.Proto != tt.proto {
				t.Errorf("goclient %q: %d over %s, want %d over %s", tt.args, got.Status,
					got.Proto, tt.status, tt.proto)
			}
			if tt.status == 200 && (len(got.Body.Choices) != 1 ||
				got.Body.Choices[0].Message.Content != fakeapi.Reply) {
				t.Errorf("goclient %q: answer %s lacks the reply", tt.args, out)
			}
		}
	})

	t.Run("python urllib", func(t *testing.T) {
		py := func(key string) *exec.Cmd {
			cmd := e.SandboxCmd(ctx, "python3", filepath.Join(testdata, "py", "client.py"))
			cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+e.UpstreamCAFile())
			if key != "" {
				cmd.Env = append(cmd.Env, "CLIENT_API_KEY="+key)
			}
			return cmd
		}

		var answer struct {
			Object  string
			Choices []struct{ Message struct{ Content string } }
		}
		out := run(t, py(e.Key(fakeapi.OpenAI)))
		if err := json.Unmarshal([]byte(out), &answer); err != nil {
			t.Fatalf("answer %q: %v", out, err)
		}
		if answer.Object != "chat.completion" || len(answer.Choices) != 1 ||
			answer.Choices[0].Message.Content != fakeapi.Reply {
			t.Errorf("answer %s, want one chat.completion choice saying %q", out, fakeapi.Reply)
		}

		cmd := py("")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		var exit *exec.ExitError
		if err := cmd.Run(); !errors.As(err, &exit) || exit.ExitCode() != 1 ||
			!strings.Contains(stderr.String(), `"status": 401`) {
			t.Errorf("with sk-dummy: %v, stderr %q; want exit 1 and status 401",
				err, stderr.String())
		}
	})
}

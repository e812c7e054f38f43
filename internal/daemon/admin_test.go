package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hermes-netd/hermes-netd/internal/audit"
)

// fakeController records the calls of the admin API.
type fakeController struct {
	calls []string
}

func (f *fakeController) Attach(_ context.Context, spec string) (Attachment, error) {
	f.calls = append(f.calls, "attach "+spec)
	switch spec {
	case "missing":
		return Attachment{}, fmt.Errorf("opening netns missing: %w", ErrNoNamespace)
	case "broken":
		return Attachment{}, errors.New("attaching broken: nft said no")
	}
	return Attachment{Record: Record{Spec: spec, Cookie: 7, Port4: DefaultPort}}, nil
}

func (f *fakeController) Detach(_ context.Context, spec string) (DetachResult, error) {
	f.calls = append(f.calls, "detach "+spec)
	return DetachResult{Netns: spec, WasAttached: spec == "sb1"}, nil
}

func (f *fakeController) Status(context.Context) Status {
	f.calls = append(f.calls, "status")
	return Status{Mode: "ebpf", ModeReason: "kernel supports cgroup/connect4",
		Attached:  []Attachment{{Record: Record{Spec: "sb1"}, Requests: 3}},
		Providers: []ProviderStatus{{Name: "openai", Key: "openai", Loaded: true}},
		Counters:  audit.Snapshot{Requests: 3}}
}

func (f *fakeController) Reload(context.Context) (ReloadResult, error) {
	f.calls = append(f.calls, "reload")
	return ReloadResult{Config: "/etc/hermes/netd.yaml"}, nil
}

// shortDir returns a temporary directory whose path is short enough for a unix
// socket (108 bytes), removed at the end of the test.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "hn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func startAdmin(t *testing.T, c Controller) string {
	t.Helper()
	sock := filepath.Join(shortDir(t), "run", "netd.sock")
	ln, err := ListenSocket(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(NewHandler(c, nil, metricsHandler(c)), nil)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func TestAdminAPI(t *testing.T) {
	fc := &fakeController{}
	cl := NewClient(startAdmin(t, fc), 0)
	ctx := context.Background()

	att, err := cl.Attach(ctx, "sb1")
	if err != nil {
		t.Fatal(err)
	}
	if att.Spec != "sb1" || att.Cookie != 7 {
		t.Errorf("Attach = %+v, want sb1 with cookie 7", att)
	}
	det, err := cl.Detach(ctx, "sb1")
	if err != nil || !det.WasAttached {
		t.Errorf("Detach = %+v, %v; want WasAttached", det, err)
	}
	st, err := cl.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(fc.Status(ctx), st); diff != "" {
		t.Errorf("Status (-want +got):\n%s", diff)
	}
	rl, err := cl.Reload(ctx)
	if err != nil || rl.Config != "/etc/hermes/netd.yaml" {
		t.Errorf("Reload = %+v, %v", rl, err)
	}
	want := []string{"attach sb1", "detach sb1", "status", "status", "reload"}
	if diff := cmp.Diff(want, fc.calls); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

func TestAdminAPIErrors(t *testing.T) {
	fc := &fakeController{}
	sock := startAdmin(t, fc)
	cl := NewClient(sock, 0)
	ctx := context.Background()

	for _, tc := range []struct{ spec, want string }{
		{"missing", "opening netns missing: no such network namespace"},
		{"broken", "attaching broken: nft said no"},
		{"", "netns is empty"},
	} {
		_, err := cl.Attach(ctx, tc.spec)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("Attach(%q) error = %v, want prefix %q", tc.spec, err, tc.want)
		}
	}

	// Status codes, as a non-Go client sees them.
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
	for _, tc := range []struct {
		method, path, body string
		want               int
	}{
		{"POST", PathAttach, `{"netns":"missing"}`, http.StatusNotFound},
		{"POST", PathAttach, `{"netns":"broken"}`, http.StatusInternalServerError},
		{"POST", PathAttach, `{"ns":"sb1"}`, http.StatusBadRequest},
		{"POST", PathAttach, `not json`, http.StatusBadRequest},
		{"POST", PathAttach, `{"netns":"sb1"}{"netns":"sb2"}`, http.StatusBadRequest},
		{"POST", PathDetach, `{"netns":"sb1"} {"netns":"sb2"}`, http.StatusBadRequest},
		{"GET", PathAttach, ``, http.StatusMethodNotAllowed},
		{"GET", "/v1/nothing", ``, http.StatusNotFound},
	} {
		req, _ := http.NewRequest(tc.method, "http://x"+tc.path, strings.NewReader(tc.body))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s %s = %d, want %d", tc.method, tc.path, tc.body,
				resp.StatusCode, tc.want)
		}
	}
}

func TestClientDaemonNotRunning(t *testing.T) {
	dir := shortDir(t)
	sock := filepath.Join(dir, "netd.sock")
	_, err := NewClient(sock, 0).Attach(context.Background(), "sb1")
	want := "daemon not running (no socket at " + sock + "): start it with " +
		"`hermes-netd serve` or systemctl start hermes-netd"
	if !errors.Is(err, ErrNotRunning) || err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}

	// A socket file nobody listens on (a daemon that crashed).
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	_, err = NewClient(sock, 0).Status(context.Background())
	if !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "stale socket") {
		t.Errorf("error = %v, want daemon not running (stale socket ...)", err)
	}
}

func TestListenSocket(t *testing.T) {
	dir := filepath.Join(shortDir(t), "run")
	sock := filepath.Join(dir, "netd.sock")

	ln, err := ListenSocket(sock)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, sock: 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode = %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	// A second daemon must not steal the socket of a live one.
	if _, err := ListenSocket(sock); err == nil ||
		!strings.Contains(err.Error(), "another hermes-netd is serving") {
		t.Errorf("second ListenSocket error = %v, want refusal", err)
	}

	// A stale socket (the daemon died without removing it) is replaced.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	ln2, err := ListenSocket(sock)
	if err != nil {
		t.Fatalf("ListenSocket over a stale socket: %v", err)
	}
	ln2.Close()
}

func TestMetrics(t *testing.T) {
	fc := &fakeController{}
	sock := startAdmin(t, fc)
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
	resp, err := hc.Get("http://x" + PathMetrics)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"hermes_netd_requests_total 3\n",
		"hermes_netd_attached_namespaces 1\n",
		`hermes_netd_connections_total{netns="sb1"} 0` + "\n",
		`hermes_netd_provider_key_loaded{provider="openai"} 1` + "\n",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %q:\n%s", want, b)
		}
	}
}

package audit

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSplitRoutesDecisionRecordsToAudit(t *testing.T) {
	var auditBuf, opsBuf bytes.Buffer
	c := NewCounters("inject")
	logger := slog.New(Split(NewHandler(&auditBuf), slog.NewTextHandler(&opsBuf, nil), c))

	logger.Info("Request", KeySandbox, "sb1", KeyProvider, "openai", KeyMethod, "POST",
		KeyDecision, "inject", "status", 200)
	logger.With(KeySandbox, "sb2").Info("Connection refused",
		KeyDecision, "refuse", KeyReason, "unknown_domain")
	logger.Info("Upstream pool warmed", "host", "api.openai.com")
	logger.WithGroup("g").Info("Grouped", KeyDecision, "inject")

	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(auditBuf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("audit line %q is not JSON: %v", l, err)
		}
		delete(m, "time")
		lines = append(lines, m)
	}
	want := []map[string]any{
		{"level": "INFO", "msg": "Request", "sandbox": "sb1", "provider": "openai",
			"method": "POST", "decision": "inject", "status": float64(200)},
		{"level": "INFO", "msg": "Connection refused", "sandbox": "sb2",
			"decision": "refuse", "reason": "unknown_domain"},
	}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("audit lines (-want +got):\n%s", diff)
	}
	if !strings.Contains(opsBuf.String(), "Upstream pool warmed") ||
		!strings.Contains(opsBuf.String(), "Grouped") {
		t.Errorf("operational log lacks the non-decision records:\n%s", opsBuf.String())
	}
	if strings.Contains(opsBuf.String(), "Request") {
		t.Errorf("operational log got a decision record:\n%s", opsBuf.String())
	}
}

func TestCounters(t *testing.T) {
	c := NewCounters("inject", "passthrough")
	logger := slog.New(Split(NewHandler(&bytes.Buffer{}), slog.DiscardHandler, c))
	for range 3 {
		logger.Info("Request", KeySandbox, "sb1", KeyProvider, "openai", KeyMethod, "GET",
			KeyDecision, "inject")
	}
	logger.Info("Request", KeySandbox, "sb2", KeyProvider, "anthropic", KeyMethod, "GET",
		KeyDecision, "refuse", KeyReason, "authority_mismatch")
	logger.Info("Connection", KeySandbox, "sb2", KeyDecision, "refuse", KeyReason, "no_sni")
	logger.Info("Connection", KeySandbox, "sb2", KeyDecision, "passthrough",
		KeyReason, "on the passthrough list")
	logger.Info("Request", KeySandbox, "sb1", KeyProvider, "openai", KeyMethod, "GET",
		KeyDecision, "no_credential", KeyReason, "no usable key: no key named openai")

	want := Snapshot{
		Requests: 5,
		Refused:  map[string]uint64{"refuse": 2, "no_credential": 1},
		Injected: map[string]uint64{"openai": 3},
		Decisions: map[string]uint64{"inject": 3, "refuse": 2, "passthrough": 1,
			"no_credential": 1},
	}
	if diff := cmp.Diff(want, c.Snapshot()); diff != "" {
		t.Errorf("snapshot (-want +got):\n%s", diff)
	}
	if got := c.SandboxRequests("sb1"); got != 4 {
		t.Errorf("SandboxRequests(sb1) = %d, want 4", got)
	}
	var nilC *Counters
	if got := nilC.Snapshot(); got.Refused == nil || got.Requests != 0 {
		t.Errorf("nil counters snapshot = %+v, want empty maps", got)
	}
}

// Two namespaces attached in turn under one name are counted apart by their
// sandbox_id; a record without one counts under its sandbox name.
func TestCountersSandboxRequestsByID(t *testing.T) {
	c := NewCounters("inject")
	logger := slog.New(Split(NewHandler(&bytes.Buffer{}), slog.DiscardHandler, c))
	req := func(name, id string) {
		args := []any{KeySandbox, name, KeyProvider, "openai", KeyMethod, "GET",
			KeyDecision, "inject"}
		if id != "" {
			args = append(args, KeySandboxID, id)
		}
		logger.Info("Request", args...)
	}
	req("dev", "4097")
	req("dev", "4097")
	req("dev", "4098")
	logger.With(KeySandboxID, "4098").Info("Request", KeySandbox, "dev",
		KeyMethod, "GET", KeyDecision, "inject")
	req("dev", "4098")
	req("old", "")

	got := map[string]uint64{}
	for _, id := range []string{"4097", "4098", "dev", "old"} {
		got[id] = c.SandboxRequests(id)
	}
	want := map[string]uint64{"4097": 2, "4098": 3, "dev": 0, "old": 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("SandboxRequests by id (-want +got):\n%s", diff)
	}
}

func TestOpenFileIs0600(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("new\n")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	if string(b) != "old\nnew\n" {
		t.Errorf("content = %q, want appended", b)
	}
	if _, err := Open(filepath.Join(path, "x")); err == nil ||
		!strings.Contains(err.Error(), "opening audit file") {
		t.Errorf("Open(bad path) error = %v, want one naming the audit file", err)
	}
}

// A symbolic link or a FIFO at the audit path is refused, and the file a link
// points at is neither appended to nor chmodded.
func TestOpenRefusesLinksAndFIFOs(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "audit.log")
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "audit.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}

	for _, path := range []string{link, fifo} {
		if w, err := Open(path); err == nil {
			w.Close()
			t.Errorf("Open(%s) succeeded, want it refused", path)
		} else if !strings.Contains(err.Error(), path) {
			t.Errorf("Open(%s) error %q does not name the path", path, err)
		}
	}
	fi, err := os.Stat(victim)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(victim)
	if fi.Mode().Perm() != 0o644 || string(b) != "precious\n" {
		t.Errorf("link target changed: mode %v, content %q", fi.Mode().Perm(), b)
	}
}

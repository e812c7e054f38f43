package secrets

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestMain(m *testing.M) {
	// Without root, files cannot be root-owned; check ownership against the
	// running user instead. TestPrivileged* tests cover the root case.
	if os.Geteuid() != 0 {
		ownerUID = uint32(os.Geteuid())
	}
	os.Exit(m.Run())
}

// secretsDir makes an empty directory that passes the checks.
func secretsDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "secrets")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

func writeFile(t *testing.T, dir, name, data string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // umask-proof
		t.Fatal(err)
	}
	return path
}

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestOpenLoadsAndTrims(t *testing.T) {
	dir := secretsDir(t)
	writeFile(t, dir, "nim.key", "nvapi-one\n", 0o600)
	writeFile(t, dir, "openai.key", "sk-two-22\r\n", 0o400)
	writeFile(t, dir, "anthropic.key", "sk-ant-three", 0o600)
	writeFile(t, dir, "bad.key", "a\x00b\n", 0o600)
	writeFile(t, dir, "empty.key", "\n", 0o600)
	writeFile(t, dir, "README", "not a key", 0o600)
	writeFile(t, dir, "Upper.key", "ignored: not a valid name", 0o600)
	writeFile(t, dir, ".nim.tmp123", "half-written", 0o600)

	var logs syncBuffer
	s, err := Open(dir, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	for name, want := range map[string]string{
		"nim": "nvapi-one", "openai": "sk-two-22", "anthropic": "sk-ant-three",
	} {
		k, err := s.Get(name)
		if err != nil || k.Reveal() != want {
			t.Errorf("Get(%q) = %v, %v; want the value %q", name, k, err, want)
		}
	}

	got := s.List()
	want := []Entry{
		{Name: "anthropic", Fingerprint: NewKey("sk-ant-three").Fingerprint()},
		{Name: "bad", Err: errors.New("x")},
		{Name: "empty", Err: errors.New("x")},
		{Name: "nim", Fingerprint: NewKey("nvapi-one").Fingerprint()},
		{Name: "openai", Fingerprint: NewKey("sk-two-22").Fingerprint()},
	}
	errSet := cmp.Comparer(func(a, b error) bool { return (a == nil) == (b == nil) })
	if diff := cmp.Diff(want, got, errSet); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}

	_, err = s.Get("bad")
	if !errors.Is(err, ErrNoKey) || !strings.Contains(err.Error(), "bad.key") ||
		!strings.Contains(err.Error(), "control byte 0x00 at offset 1") {
		t.Errorf("Get(bad) error = %v; want ErrNoKey naming the file and the byte", err)
	}
	_, err = s.Get("missing")
	if !errors.Is(err, ErrNoKey) || !strings.Contains(err.Error(), "secrets set missing") {
		t.Errorf("Get(missing) error = %v; want ErrNoKey with the fix", err)
	}
	for _, v := range []string{"nvapi-one", "sk-two-22", "sk-ant-three"} {
		if strings.Contains(logs.String(), v) {
			t.Errorf("log reveals a key:\n%s", logs.String())
		}
	}
	if !strings.Contains(logs.String(), NewKey("nvapi-one").Fingerprint()) {
		t.Errorf("log does not name nim's fingerprint:\n%s", logs.String())
	}
}

func TestLoosePermissionsRefused(t *testing.T) {
	tests := []struct {
		name     string
		fileMode os.FileMode
		dirMode  os.FileMode
		wantFix  string // "file" or "dir"
	}{
		{"file 0644", 0o644, 0o700, "file"},
		{"file 0640", 0o640, 0o700, "file"},
		{"file 0604", 0o604, 0o700, "file"},
		{"file 0660 group-writable", 0o660, 0o700, "file"},
		{"dir 0755", 0o600, 0o755, "dir"},
		{"dir 0770 group-writable", 0o600, 0o770, "dir"},
		{"dir 0701", 0o600, 0o701, "dir"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := secretsDir(t)
			path := writeFile(t, dir, "nim.key", "nvapi-x\n", tt.fileMode)
			if err := os.Chmod(dir, tt.dirMode); err != nil {
				t.Fatal(err)
			}
			s, err := Open(dir, nil)
			if tt.wantFix == "dir" {
				want := "fix: chmod 700 " + dir + "; chown root:root " + dir
				if err == nil || !strings.Contains(err.Error(), want) ||
					!strings.Contains(err.Error(), modeString(tt.dirMode)) {
					t.Fatalf("Open error = %v; want one naming the mode and %q", err, want)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			_, err = s.Get("nim")
			want := "fix: chmod 600 " + path + "; chown root:root " + path
			if !errors.Is(err, ErrNoKey) || !strings.Contains(err.Error(), want) ||
				!strings.Contains(err.Error(), modeString(tt.fileMode)) {
				t.Fatalf("Get error = %v; want ErrNoKey naming the mode and %q", err, want)
			}
		})
	}
}

func modeString(m os.FileMode) string { return fmt.Sprintf("mode %04o", m.Perm()) }

func TestPrivilegedNonRootOwnerRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: chowns files to uid 65534")
	}
	t.Run("file", func(t *testing.T) {
		dir := secretsDir(t)
		path := writeFile(t, dir, "nim.key", "nvapi-x\n", 0o600)
		if err := os.Chown(path, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		s, err := Open(dir, nil)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		_, err = s.Get("nim")
		if !errors.Is(err, ErrNoKey) || !strings.Contains(err.Error(), "owner uid 65534") ||
			!strings.Contains(err.Error(), "chown root:root "+path) {
			t.Fatalf("Get error = %v; want the owner and the fix", err)
		}
	})
	t.Run("dir", func(t *testing.T) {
		dir := secretsDir(t)
		if err := os.Chown(dir, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		_, err := Open(dir, nil)
		if err == nil || !strings.Contains(err.Error(), "owner uid 65534") ||
			!strings.Contains(err.Error(), "chown root:root "+dir) {
			t.Fatalf("Open error = %v; want the owner and the fix", err)
		}
	})
}

func TestOpenMissingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nope")
	_, err := Open(dir, nil)
	if err == nil || !strings.Contains(err.Error(), "install -d -m 700") {
		t.Fatalf("Open(missing) error = %v; want one with the fix", err)
	}
}

func TestSetAndRevoke(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new-secrets") // Set creates it
	if err := Set(dir, "nim", []byte("nvapi-set\n")); err != nil {
		t.Fatalf("Set: %v", err)
	}
	fi, err := os.Stat(filepath.Join(dir, "nim.key"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("nim.key mode %v, want 0600", fi.Mode().Perm())
	}
	if di, _ := os.Stat(dir); di.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v, want 0700", di.Mode().Perm())
	}
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if k, err := s.Get("nim"); err != nil || k.Reveal() != "nvapi-set" {
		t.Errorf("Get after Set = %v, %v", k, err)
	}
	if des, _ := os.ReadDir(dir); len(des) != 1 {
		t.Errorf("dir holds %d entries after Set, want only nim.key", len(des))
	}

	for _, tt := range []struct{ name, value, want string }{
		{"../etc", "x", `key name "../etc"`},
		{"NIM", "x", `key name "NIM"`},
		{"", "x", `key name ""`},
		{"nim", "", "key is empty"},
		{"nim", "a\nb", "control byte 0x0a"},
		{"nim", "a\x00", "control byte 0x00"},
	} {
		err := Set(dir, tt.name, []byte(tt.value))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Set(%q, %q) error = %v, want %q", tt.name, tt.value, err, tt.want)
		}
	}

	if err := Revoke(dir, "nim"); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if err := Revoke(dir, "nim"); !errors.Is(err, ErrNoKey) {
		t.Errorf("Revoke of a missing key = %v, want ErrNoKey", err)
	}
}

func TestSetRefusesLooseDir(t *testing.T) {
	dir := secretsDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	err := Set(dir, "nim", []byte("nvapi-loose"))
	if err == nil || !strings.Contains(err.Error(), "chmod 700 "+dir) {
		t.Fatalf("Set into a 0755 dir = %v; want a refusal with the fix", err)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWatchPicksUpChanges(t *testing.T) {
	dir := secretsDir(t)
	var logs syncBuffer
	s, err := Open(dir, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Watch(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	})
	value := func(name string) string {
		k, err := s.Get(name)
		if err != nil {
			return ""
		}
		return k.Reveal()
	}

	if err := Set(dir, "nim", []byte("nvapi-first")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Set to be picked up", func() bool { return value("nim") == "nvapi-first" })

	if err := Set(dir, "nim", []byte("nvapi-second")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a replaced key", func() bool { return value("nim") == "nvapi-second" })

	// An editor-style write in place.
	writeFile(t, dir, "openai.key", "sk-direct\n", 0o600)
	waitFor(t, "a direct write", func() bool { return value("openai") == "sk-direct" })

	// Loosening the mode makes the key unusable.
	if err := os.Chmod(filepath.Join(dir, "openai.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a loosened file to be refused", func() bool { return value("openai") == "" })

	if err := Revoke(dir, "nim"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Revoke", func() bool {
		_, err := s.Get("nim")
		return errors.Is(err, ErrNoKey)
	})

	out := logs.String()
	for _, v := range []string{"nvapi-first", "nvapi-second", "sk-direct"} {
		if strings.Contains(out, v) {
			t.Errorf("log reveals key %q:\n%s", v, out)
		}
	}
	for _, want := range []string{
		"Secret loaded", "name=nim", NewKey("nvapi-first").Fingerprint(),
		"Secret changed", NewKey("nvapi-second").Fingerprint(),
		"Secret refused", "Secret removed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

// TestSymlinkedKeyRefused: a key file that is a symbolic link is refused,
// even one pointing at a well-kept key file; the error names the file and the
// fix, and never the target's contents.
func TestSymlinkedKeyRefused(t *testing.T) {
	dir := secretsDir(t)
	elsewhere := secretsDir(t)
	target := writeFile(t, elsewhere, "real.key", "nvapi-target-value\n", 0o600)
	link := filepath.Join(dir, "nim.key")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "openai.key", "sk-regular-file\n", 0o600)

	s, err := Open(dir, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	_, err = s.Get("nim")
	if !errors.Is(err, ErrNoKey) || !strings.Contains(err.Error(), link) ||
		!strings.Contains(err.Error(), "symbolic link") ||
		!strings.Contains(err.Error(), "hermes-netd secrets set nim") {
		t.Errorf("Get(symlinked) error = %v; want ErrNoKey naming %s and the fix", err, link)
	}
	if err != nil && strings.Contains(err.Error(), "nvapi-target-value") {
		t.Errorf("error reveals the target's key: %v", err)
	}
	if k, err := s.Get("openai"); err != nil || k.Reveal() != "sk-regular-file" {
		t.Errorf("Get(openai) = %v, %v; want the regular file's key", k, err)
	}

	// A dangling link is refused the same way, not skipped as missing.
	os.Remove(target)
	s, err = Open(dir, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if _, err := s.Get("nim"); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("Get(dangling symlink) error = %v; want the symlink refusal", err)
	}
}

// TestShortKeyRefused: keys under MinKeySize bytes are refused from files and
// by Set, with the length and never the bytes in the error.
func TestShortKeyRefused(t *testing.T) {
	dir := secretsDir(t)
	writeFile(t, dir, "nim.key", "q\n", 0o600)
	writeFile(t, dir, "openai.key", "sk-1234\n", 0o600)   // 7 bytes
	writeFile(t, dir, "mistral.key", "sk-12345\n", 0o600) // 8 bytes: the minimum
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	for name, want := range map[string]string{"nim": "key is 1 bytes", "openai": "key is 7 bytes"} {
		_, err := s.Get(name)
		if !errors.Is(err, ErrNoKey) || !strings.Contains(err.Error(), want) ||
			!strings.Contains(err.Error(), name+".key") {
			t.Errorf("Get(%s) error = %v; want ErrNoKey naming the file and %q", name, err, want)
		}
	}
	if k, err := s.Get("mistral"); err != nil || k.Reveal() != "sk-12345" {
		t.Errorf("Get(mistral) = %v, %v; want the 8-byte key", k, err)
	}

	err = Set(dir, "groq", []byte("sk-1234\n"))
	if err == nil || !strings.Contains(err.Error(), "shorter than the minimum of 8") ||
		strings.Contains(err.Error(), "sk-1234") {
		t.Errorf("Set(7-byte key) error = %v; want the length refusal without the key", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "groq.key")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused Set left groq.key behind (%v)", err)
	}
}

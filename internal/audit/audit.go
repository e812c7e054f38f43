package audit

import (
	"fmt"
	"io"
	"log/slog"
	"os"
)

// Attribute keys the audit trail relies on. They are the proxy's record keys
// (proxy/logkeys.go); the daemon's tests check that both spell them alike.
const (
	KeySandbox   = "sandbox"
	KeySandboxID = "sandbox_id"
	KeyProvider  = "provider"
	KeyMethod    = "method"
	KeyDecision  = "decision"
	KeyReason    = "reason"
)

// Open returns the writer the audit trail goes to: standard error when path is
// empty or "-", else path opened for appending and created with mode 0600. An
// existing file is narrowed to 0600 too, since request paths can be sensitive.
func Open(path string) (io.WriteCloser, error) {
	if path == "" || path == "-" {
		return nopCloser{os.Stderr}, nil
	}

	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening audit file %s: %w", path, err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return nil, fmt.Errorf("restricting audit file %s to 0600: %w", path, err)
	}
	return f, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// NewHandler returns the JSON handler that writes one line per record to w.
func NewHandler(w io.Writer) slog.Handler {
	return slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})
}

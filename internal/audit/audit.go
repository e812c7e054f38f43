package audit

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"syscall"
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

	// O_NOFOLLOW and the regular-file check keep a link, FIFO or device planted
	// at the path from making the daemon append to, and chmod, another file
	// (O_NONBLOCK: opening a FIFO must not wait for a reader).
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0o600)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("opening audit file %s: it is a symbolic link; "+
			"point audit.file at the real file", path)
	}
	if err != nil {
		return nil, fmt.Errorf("opening audit file %s: %w", path, err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("opening audit file %s: not a regular file", path)
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

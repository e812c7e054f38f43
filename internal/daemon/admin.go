package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// DefaultSocket is where the admin API listens unless configured otherwise.
const DefaultSocket = "/run/hermes/netd.sock"

// Controller is what the admin API drives; *Daemon is one.
type Controller interface {
	Attach(ctx context.Context, spec string) (Attachment, error)
	Detach(ctx context.Context, spec string) (DetachResult, error)
	Status(ctx context.Context) Status
	Reload(ctx context.Context) (ReloadResult, error)
}

// ErrBadRequest marks errors caused by the caller's input (answered 400).
var ErrBadRequest = errors.New("bad request")

// maxBody bounds admin request bodies; they hold one namespace spec.
const maxBody = 64 << 10

// NewHandler returns the admin API over c. metrics, when not nil, serves
// GET /metrics.
func NewHandler(c Controller, logger *slog.Logger, metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+PathAttach, func(w http.ResponseWriter, r *http.Request) {
		spec, ok := readNetns(w, r)
		if !ok {
			return
		}
		res, err := c.Attach(r.Context(), spec)
		reply(w, logger, res, err)
	})
	mux.HandleFunc("POST "+PathDetach, func(w http.ResponseWriter, r *http.Request) {
		spec, ok := readNetns(w, r)
		if !ok {
			return
		}
		res, err := c.Detach(r.Context(), spec)
		reply(w, logger, res, err)
	})
	mux.HandleFunc("GET "+PathStatus, func(w http.ResponseWriter, r *http.Request) {
		reply(w, logger, c.Status(r.Context()), nil)
	})
	mux.HandleFunc("POST "+PathReload, func(w http.ResponseWriter, r *http.Request) {
		res, err := c.Reload(r.Context())
		reply(w, logger, res, err)
	})
	if metrics != nil {
		mux.Handle("GET "+PathMetrics, metrics)
	}
	return mux
}

func readNetns(w http.ResponseWriter, r *http.Request) (string, bool) {
	var req NetnsRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{
			Error: fmt.Sprintf(`reading request: %v (send {"netns": "NAME"})`, err)})
		return "", false
	}
	if dec.More() {
		writeJSON(w, http.StatusBadRequest, errorBody{
			Error: `reading request: more than one JSON value (send one {"netns": "NAME"})`})
		return "", false
	}
	if req.Netns == "" {
		writeJSON(w, http.StatusBadRequest, errorBody{
			Error: "netns is empty: give a name under /var/run/netns, a path or pid:N"})
		return "", false
	}
	return req.Netns, true
}

func reply(w http.ResponseWriter, logger *slog.Logger, v any, err error) {
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, v)
	case errors.Is(err, ErrNoNamespace):
		writeJSON(w, http.StatusNotFound, errorBody{Error: err.Error()})
	case errors.Is(err, ErrBadRequest):
		writeJSON(w, http.StatusBadRequest, errorBody{Error: err.Error()})
	default:
		if logger != nil {
			logger.Error("Admin request failed", "error", err)
		}
		writeJSON(w, http.StatusInternalServerError, errorBody{Error: err.Error()})
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// ListenSocket listens on the unix socket at path for the admin API. The parent
// directory is created with mode 0700 if missing and the socket is made 0600, so
// only root can talk to the daemon. A stale socket file is removed; a socket on
// which another daemon answers is an error.
func ListenSocket(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating socket dir %s: %w", dir, err)
	}

	if _, err := os.Lstat(path); err == nil {
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("another hermes-netd is serving on %s "+
				"(stop it first, or set another socket in the config)", path)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("checking existing socket %s: %w", path, err)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing stale socket %s: %w", path, err)
		}
	}

	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("restricting socket %s to 0600: %w", path, err)
	}
	return ln, nil
}

// NewServer returns the HTTP server for the admin API with bounded timeouts.
func NewServer(h http.Handler, logger *slog.Logger) *http.Server {
	s := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	if logger != nil {
		s.ErrorLog = slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	}
	return s
}

//go:build linux

package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hermes-netd/hermes-netd/bpf"
	"github.com/hermes-netd/hermes-netd/internal/testenv/fakeapi"
	"github.com/hermes-netd/hermes-netd/netsetup"
)

// Prefix starts the name of every namespace, directory and file a run makes.
const Prefix = "hermes-e2e-"

// Options configure Start. The zero value is fine.
type Options struct {
	// Logger receives setup and teardown records and the fake sites' serve
	// errors. Nil discards.
	Logger *slog.Logger

	// Keys are the credentials the fake providers expect; a provider left
	// out gets a random key, readable through Env.Key.
	Keys map[fakeapi.Provider]string

	// ChunkDelay is the pause between streamed chunks; 0 means
	// fakeapi.DefaultChunkDelay.
	ChunkDelay time.Duration
}

// Env is a running topology. Its methods may be called from any goroutine,
// but Close must not race with commands being started.
type Env struct {
	opts   Options
	logger *slog.Logger
	id     string
	names  map[Role]string
	ns     map[Role]*netsetup.NS
	dir    string // temporary files: CA certificates
	keys   map[fakeapi.Provider]string

	upstreamCA, passthroughCA         *fakeapi.CA
	upstreamCAFile, passthroughCAFile string
	api                               *fakeapi.Server
	packetConns                       []net.PacketConn

	created []string // namespaces made, in order
	madeEtc bool

	mu     sync.Mutex
	cmds   []*exec.Cmd
	closed bool
	err    error
}

// New builds a topology for a test and removes it when the test ends. It
// skips the test when not run as root. It first removes what killed runs
// left behind (see CleanupStale).
func New(t testing.TB, opts Options) *Env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: testenv creates network namespaces")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	removed, err := CleanupStale()
	if len(removed) > 0 || err != nil {
		opts.Logger.Warn("Removed leftovers of killed test runs", "removed", removed,
			"error", err)
	}
	e, err := Start(opts)
	if err != nil {
		t.Fatalf("building test topology: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("removing test topology: %v", err)
		}
	})
	return e
}

// Start builds a topology; the caller must Close it. On error, whatever was
// made is already removed.
func Start(opts Options) (*Env, error) {
	id := make([]byte, 3)
	rand.Read(id)
	e := &Env{
		opts:   opts,
		logger: opts.Logger,
		id:     hex.EncodeToString(id),
		names:  map[Role]string{},
		ns:     map[Role]*netsetup.NS{},
		keys:   randomKeys(opts.Keys),
	}
	if e.logger == nil {
		e.logger = slog.New(slog.DiscardHandler)
	}
	for _, r := range roles {
		e.names[r] = Prefix + e.id + "-" + string(r)
	}

	if err := e.build(); err != nil {
		return nil, errors.Join(err, e.Close())
	}
	e.logger.Info("Test topology up", "sandbox", e.names[Sandbox], "host", e.names[Host],
		"inet", e.names[Inet])
	return e, nil
}

// failStep, when set by a test, makes build fail at the named step, to show
// that Close undoes a partial build.
var failStep func(e *Env, step string) error

func (e *Env) step(name string) error {
	if failStep == nil {
		return nil
	}
	return failStep(e, name)
}

// build does the work of Start, in an order Close can undo from any point.
func (e *Env) build() error {
	if err := writeOwner(e.id); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", Prefix+e.id+"-")
	if err != nil {
		return fmt.Errorf("creating temporary directory: %w", err)
	}
	e.dir = dir

	for _, r := range roles {
		if err := addNamespace(e.names[r]); err != nil {
			return err
		}
		e.created = append(e.created, e.names[r])
		ns, err := netsetup.Open(e.names[r])
		if err != nil {
			return err
		}
		e.ns[r] = ns
	}
	if err := e.step("wire"); err != nil {
		return err
	}
	if err := e.wire(); err != nil {
		return err
	}
	if err := e.writeNetnsEtc(); err != nil {
		return err
	}
	if err := e.step("sites"); err != nil {
		return err
	}
	if err := e.startSites(); err != nil {
		return err
	}
	if err := e.waitReady(context.Background()); err != nil {
		return err
	}
	return e.step("done")
}

// Close kills the processes started through the Env, stops the fake sites and
// removes the namespaces, the sandbox's /etc/netns directory and the
// temporary files. It goes on after a failure and reports every error; a
// second call returns the first call's result.
// PinDir is the bpffs directory a daemon under test should pin its BPF
// programs in (`serve --bpf-pin-dir`): unique to this run, and removed by
// Close and by CleanupStale.
func (e *Env) PinDir() string {
	return filepath.Join(netsetup.BPFFSRoot, Prefix+e.id)
}

func (e *Env) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return e.err
	}
	e.closed = true

	var errs []error
	errs = append(errs, e.killAll())
	if e.api != nil {
		errs = append(errs, e.api.Close())
	}
	for _, pc := range e.packetConns {
		pc.Close()
	}
	for _, r := range roles {
		if ns := e.ns[r]; ns != nil {
			errs = append(errs, ns.Close())
		}
	}
	for i := len(e.created) - 1; i >= 0; i-- {
		errs = append(errs, deleteNamespace(e.created[i]))
	}
	// The daemon under test pins its programs in PinDir; a daemon that was
	// killed leaves them attached to the cgroup2 root, so they go here too.
	errs = append(errs, bpf.Uninstall(e.PinDir()))
	if e.madeEtc {
		if err := os.RemoveAll(e.NetnsEtcDir()); err != nil {
			errs = append(errs, fmt.Errorf("removing %s: %w", e.NetnsEtcDir(), err))
		}
		// Leave no empty /etc/netns behind; another run's files keep it.
		os.Remove(filepath.Dir(e.NetnsEtcDir()))
	}
	if e.dir != "" {
		if err := os.RemoveAll(e.dir); err != nil {
			errs = append(errs, fmt.Errorf("removing %s: %w", e.dir, err))
		}
	}
	errs = append(errs, removeOwner(e.id))
	os.Remove(ownerDir) // only when empty

	e.err = errors.Join(errs...)
	e.logger.Info("Test topology removed", "sandbox", e.names[Sandbox], "error", e.err)
	return e.err
}

// randomKeys returns keys with a random key for every keyed provider that
// given does not name. Their shapes follow the real providers' keys.
func randomKeys(given map[fakeapi.Provider]string) map[fakeapi.Provider]string {
	prefixes := map[fakeapi.Provider]string{
		fakeapi.OpenAI:    "sk-proj-e2e",
		fakeapi.Anthropic: "sk-ant-api03-e2e",
		fakeapi.NIM:       "nvapi-e2e",
	}
	out := map[fakeapi.Provider]string{}
	for _, p := range fakeapi.KeyedProviders {
		if k := given[p]; k != "" {
			out[p] = k
			continue
		}
		b := make([]byte, 16)
		rand.Read(b)
		out[p] = prefixes[p] + hex.EncodeToString(b)
	}
	return out
}

// ID is the run's random part of every name.
func (e *Env) ID() string { return e.id }

// Name is the name of a namespace, as in /var/run/netns/NAME.
func (e *Env) Name(r Role) string { return e.names[r] }

// Path is the bind-mount path of a namespace, for nsenter --net= or
// netsetup.Open.
func (e *Env) Path(r Role) string { return filepath.Join(netsetup.NetnsDir, e.names[r]) }

// NS is the open namespace, valid until Close.
func (e *Env) NS(r Role) *netsetup.NS { return e.ns[r] }

// NetnsEtcDir is /etc/netns/<sandbox>, holding the sandbox's hosts file.
func (e *Env) NetnsEtcDir() string { return filepath.Join("/etc/netns", e.names[Sandbox]) }

// TempDir is a directory removed by Close, for configuration, state and
// sockets of the daemon under test.
func (e *Env) TempDir() string { return e.dir }

// API is the fake sites' server: what each received, and key changes.
func (e *Env) API() *fakeapi.Server { return e.api }

// Key is the credential provider p expects.
func (e *Env) Key(p fakeapi.Provider) string { return e.keys[p] }

// UpstreamCA is the CA of every fake site but the passthrough one; the daemon
// under test must trust it to reach the fake providers.
func (e *Env) UpstreamCA() *fakeapi.CA { return e.upstreamCA }

// UpstreamCAFile is UpstreamCA's certificate in PEM form.
func (e *Env) UpstreamCAFile() string { return e.upstreamCAFile }

// PassthroughCA is the separate CA of the passthrough site, so a client can
// tell that it saw the site's own certificate.
func (e *Env) PassthroughCA() *fakeapi.CA { return e.passthroughCA }

// PassthroughCAFile is PassthroughCA's certificate in PEM form.
func (e *Env) PassthroughCAFile() string { return e.passthroughCAFile }

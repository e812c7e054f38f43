//go:build linux

package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/hermes-netd/hermes-netd/internal/audit"
	"github.com/hermes-netd/hermes-netd/internal/ca"
	"github.com/hermes-netd/hermes-netd/internal/config"
	"github.com/hermes-netd/hermes-netd/internal/ratelimit"
	"github.com/hermes-netd/hermes-netd/internal/secrets"
	"github.com/hermes-netd/hermes-netd/proxy"
)

// DefaultCheckInterval is RunOptions.CheckInterval when not set.
const DefaultCheckInterval = 2 * time.Second

// RunOptions configure Run, the `hermes-netd serve` command.
type RunOptions struct {
	// ConfigPath is the config file; "" means config.DefaultPath.
	ConfigPath string
	// Socket overrides the config's admin socket when not empty.
	Socket string
	// Port overrides the config's listen_port (the listener port inside each
	// namespace) when not 0.
	Port uint16
	// ShutdownTimeout overrides the config's timeouts.shutdown (how long
	// requests in flight may finish on SIGTERM) when positive.
	ShutdownTimeout time.Duration
	// CheckInterval is how often vanished namespaces are looked for.
	CheckInterval time.Duration
	// PinDir is the bpffs directory of the BPF pins; "" = bpf.DefaultPinDir.
	// Tests give each run its own.
	PinDir string
	// CgroupRoot is the cgroup2 directory the BPF programs attach to; "" = the
	// root of the cgroup2 hierarchy.
	CgroupRoot string
	// Logger is the operational log; nil means text on stderr.
	Logger *slog.Logger
	// Stderr receives the audit trail when the config names no file; nil
	// means os.Stderr.
	Stderr io.Writer
	// Signals, when not nil, replaces the process's SIGTERM/SIGINT/SIGHUP
	// (tests send on it). SIGHUP reloads, anything else shuts down.
	Signals <-chan os.Signal
	// Ready, when set, is called once the admin socket accepts requests.
	Ready func(socket string)
}

// Run is the daemon: it loads the config, CA, keys and providers, sets up the
// kernel redirect, takes back the namespaces of the state file, serves the admin
// API, and runs until SIGTERM/SIGINT or ctx is done. Shutdown leaves the kernel
// redirects in place so that attached sandboxes fail closed while it is down.
func Run(ctx context.Context, o RunOptions) error {
	o.setDefaults()
	logger := o.Logger

	// Signals are caught from the start: SIGHUP's default action would kill a
	// daemon that is still loading.
	if o.Signals == nil {
		ch := make(chan os.Signal, 4)
		signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
		defer signal.Stop(ch)
		o.Signals = ch
	}

	cfg, err := config.Load(o.ConfigPath)
	if err != nil {
		return err
	}
	sock := cfg.Socket
	if o.Socket != "" {
		sock = o.Socket
	}
	if err := o.fromConfig(cfg); err != nil {
		return err
	}

	// The audit trail (decision records) and the operational log are apart.
	aw, err := auditWriter(cfg, o.Stderr)
	if err != nil {
		return err
	}
	defer aw.Close()
	counters := newCounters()
	proxyLog := slog.New(audit.Split(audit.NewHandler(aw), logger.Handler(), counters))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	parts, err := openParts(ctx, cfg, proxyLog, logger)
	if err != nil {
		return err
	}

	kern, err := openKernel(cfg, o)
	if err != nil {
		return err
	}
	defer kern.Close()

	s := &service{cfg: cfg, started: cfg, path: o.ConfigPath, parts: parts, kern: kern,
		counters: counters, log: logger}
	d, err := New(Options{
		Kernel:    kern,
		Proxy:     proxyAdapter{srv: parts.proxy, kern: kern},
		StatePath: filepath.Join(cfg.StateDir, StateFile),
		Port:      o.Port,
		Logger:    logger,
		Counters:  counters,
		Fill:      s.fill,
		Reload:    s.reload,
		OwnNetns:  ownNetns(logger),
		InitNetns: initNetns(logger),
	})
	if err != nil {
		return err
	}
	if err := d.Restore(ctx); err != nil {
		return err
	}

	ln, err := ListenSocket(sock)
	if err != nil {
		d.Close()
		return err
	}
	admin := NewServer(NewHandler(d, logger, metricsHandler(d)), logger)
	go admin.Serve(ln)
	go d.Watch(ctx, o.CheckInterval)
	logger.Info("Serving", "socket", sock, "mode", kern.Mode(), "config", s.source(),
		"attached", len(d.Attachments()))
	if o.Ready != nil {
		o.Ready(sock)
	}

	waitForStop(ctx, o.Signals, s, logger)
	return shutdown(d, admin, parts, o.ShutdownTimeout, logger)
}

func (o *RunOptions) setDefaults() {
	if o.ConfigPath == "" {
		o.ConfigPath = config.DefaultPath
	}
	if o.CheckInterval <= 0 {
		o.CheckInterval = DefaultCheckInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
}

// fromConfig takes the listener port and the shutdown timeout from cfg unless
// the command line gave them.
func (o *RunOptions) fromConfig(cfg *config.Config) error {
	if o.Port == 0 {
		o.Port = cfg.ListenPort
	} else if slices.Contains(cfg.Ports, o.Port) {
		return fmt.Errorf("listen port %d is also an intercepted port (ports %v in %s); "+
			"pick another --listen-port", o.Port, cfg.Ports, configName(cfg))
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = cfg.Timeouts.Shutdown
	}
	return nil
}

func configName(cfg *config.Config) string {
	if cfg.Source == "" {
		return "the defaults"
	}
	return cfg.Source
}

// newCounters counts the proxy's decision records for status and metrics.
// Forwarded requests and passthrough connections are allowed; every other
// decision (deny, misdirected, no_credential, rate_limited, upstream_error)
// counts as a refusal under its own name.
func newCounters() *audit.Counters {
	return audit.NewCounters(proxy.DecisionIntercept, proxy.DecisionPassthrough)
}

func auditWriter(cfg *config.Config, stderr io.Writer) (io.WriteCloser, error) {
	if cfg.Audit.File == "" {
		return nopWriteCloser{stderr}, nil
	}
	return audit.Open(cfg.Audit.File)
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// parts are what the proxy is made of.
type parts struct {
	ca     *ca.Authority
	leaves *ca.LeafCache
	keys   *secrets.Store
	proxy  *proxy.Server
}

// openParts loads the CA and the keys (and starts watching them) and makes the
// proxy with the config's policy.
func openParts(ctx context.Context, cfg *config.Config, proxyLog, logger *slog.Logger) (
	*parts, error) {
	authority, err := ca.LoadOrCreate(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	if err := secrets.EnsureDir(cfg.SecretsDir); err != nil {
		return nil, err
	}
	keys, err := secrets.Open(cfg.SecretsDir, logger)
	if err != nil {
		return nil, err
	}
	go func() {
		if err := keys.Watch(ctx); err != nil && !errors.Is(err, context.Canceled) {
			logger.Error("Watching secrets stopped; key changes need a restart",
				"dir", cfg.SecretsDir, "error", err)
		}
	}()

	policy, err := policyOf(cfg)
	if err != nil {
		return nil, err
	}
	roots, err := cfg.UpstreamRoots()
	if err != nil {
		return nil, err
	}
	leaves := ca.NewLeafCache(authority, ca.DefaultCacheSize)
	srv, err := proxy.New(proxy.Options{
		Logger:        proxyLog,
		Policy:        policy,
		Keys:          keys.Get,
		Certs:         leaves.Get,
		UpstreamRoots: roots,
		// Read at start only: a reload does not change it.
		MaxConnsPerSandbox: cfg.MaxConnectionsPerSandbox,
		Timeouts: proxy.Timeouts{
			Handshake:    cfg.Timeouts.Handshake,
			ReadHeader:   cfg.Timeouts.ReadHeader,
			Idle:         cfg.Timeouts.Idle,
			UpstreamIdle: cfg.Timeouts.UpstreamIdle,
		},
	})
	if err != nil {
		return nil, err
	}
	return &parts{ca: authority, leaves: leaves, keys: keys, proxy: srv}, nil
}

// policyOf builds the proxy policy of cfg. Each call makes a new rate
// limiter, so a reload starts every bucket full.
func policyOf(cfg *config.Config) (*proxy.Policy, error) {
	cat, err := cfg.Catalog()
	if err != nil {
		return nil, err
	}
	limits, err := limiterOf(cfg.RateLimits)
	if err != nil {
		return nil, fmt.Errorf("config %s: rate_limits: %w", configName(cfg), err)
	}
	return &proxy.Policy{
		Catalog:            cat,
		Passthrough:        cfg.Passthrough,
		DefaultPassthrough: cfg.DefaultPassthrough(),
		AllowUpstream:      cfg.AllowUpstream,
		Limits:             limits,

		Hosts:                cfg.Hosts,
		UncheckedPassthrough: !cfg.PassthroughCheck,
		IdentityEncoding:     cfg.IdentityEncoding,
	}, nil
}

// limiterOf converts the config's rate limits; nil when there are none.
func limiterOf(rl config.RateLimits) (*ratelimit.Limiter, error) {
	if len(rl.Providers) == 0 && rl.Sandbox == nil && len(rl.Sandboxes) == 0 {
		return nil, nil
	}
	conv := func(m map[string]config.Limit) map[string]ratelimit.Limit {
		out := make(map[string]ratelimit.Limit, len(m))
		for k, v := range m {
			out[k] = ratelimit.Limit(v)
		}
		return out
	}
	rc := ratelimit.Config{Providers: conv(rl.Providers), Sandboxes: conv(rl.Sandboxes)}
	if rl.Sandbox != nil {
		l := ratelimit.Limit(*rl.Sandbox)
		rc.Sandbox = &l
	}
	return ratelimit.New(rc)
}

// waitForStop returns on SIGTERM, SIGINT or ctx done; SIGHUP reloads.
func waitForStop(ctx context.Context, sigs <-chan os.Signal, s *service, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case sig := <-sigs:
			if sig != syscall.SIGHUP {
				log.Info("Shutting down", "signal", sig.String())
				return
			}
			if _, err := s.reload(ctx); err != nil {
				log.Error("Reloading configuration, keeping the old one", "error", err)
			}
		}
	}
}

// shutdown stops the admin API and the listeners, then lets the proxy drain
// within timeout. The kernel redirects and the state file stay.
func shutdown(d *Daemon, admin interface{ Close() error }, p *parts,
	timeout time.Duration, log *slog.Logger) error {
	admin.Close()
	errs := []error{d.Close()}

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := p.proxy.Shutdown(ctx); err != nil {
		// Cut-off connections are expected when clients outlive the bound.
		log.Warn("Shutdown cut connections off", "timeout", timeout, "error", err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	log.Info("Stopped; attached sandboxes stay intercepted and fail closed until restart")
	return nil
}

// ownNetns returns the inode of the daemon's network namespace, or 0 (no check)
// if it cannot be read.
func ownNetns(logger *slog.Logger) uint64 {
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/net", &st); err != nil {
		logger.Warn("Cannot identify own netns; attaching it is not prevented", "error", err)
		return 0
	}
	return st.Ino
}

// initNetns returns the inode of the initial network namespace, or 0 (no
// check) if it cannot be read. The kernel thread kthreadd (pid 2 where the
// daemon sees the host's pids) always lives there and its link is readable;
// else pid 1's namespace is taken, which hardened hosts may not let even root
// read (it is then refused as the daemon cannot open it either).
func initNetns(logger *slog.Logger) uint64 {
	var st syscall.Stat_t
	if comm, err := os.ReadFile("/proc/2/comm"); err == nil &&
		strings.TrimSpace(string(comm)) == "kthreadd" &&
		syscall.Stat("/proc/2/ns/net", &st) == nil {
		return st.Ino
	}
	if err := syscall.Stat("/proc/1/ns/net", &st); err != nil {
		logger.Warn("Cannot identify the initial netns; attaching it is not prevented",
			"error", err)
		return 0
	}
	return st.Ino
}

//go:build linux

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/hermes-netd/hermes-netd/internal/daemon"
	"github.com/hermes-netd/hermes-netd/internal/testenv"
)

// The bench's own sites, on inet's loopback next to testenv's fake sites.
// Both names belong to the "bench" provider of the daemon's config, and so
// does every name under mint.bench.test (new names for the leaf scenario).
const (
	fastHost  = "fast.bench.test"
	slowHost  = "slow.bench.test"
	fastAddr  = "198.18.0.50"
	slowAddr  = "198.18.0.51"
	mintZone  = "mint.bench.test"
	benchKey  = "bench-key-0123456789abcdef"
	netemNote = "tc netem unavailable (CONFIG_NET_SCH_NETEM not set); " +
		"20 ms round trip emulated in the fake upstream: accept held 20 ms, " +
		"every server write delivered 20 ms late"
)

// world is the topology, the bench upstream and the daemon under test.
type world struct {
	env      *testenv.Env
	logger   *slog.Logger
	dir      string
	bin      string
	config   string
	socket   string
	sandbox  string
	upstream *upstream
	slow     *upstream

	// What a client on each path trusts: the upstream CA for direct, the
	// hermes CA, or a peer proxy's CA; as a pool and as a PEM file.
	trust     map[path]*x509.CertPool
	trustFile map[path]string

	daemon   *testenv.Daemon // nil while stopped
	pid      int             // the daemon's, from its status
	attached bool
}

// newWorld builds everything; on error what was made is already removed.
func newWorld(ctx context.Context, logger *slog.Logger) (*world, error) {
	if removed, err := testenv.CleanupStale(); len(removed) > 0 || err != nil {
		logger.Warn("Removed leftovers of killed runs", "removed", removed, "error", err)
	}
	env, err := testenv.Start(testenv.Options{Logger: logger})
	if err != nil {
		return nil, err
	}
	w := &world{
		env:     env,
		logger:  logger,
		dir:     env.TempDir(),
		sandbox: env.Name(testenv.Sandbox),
	}
	if err := w.build(ctx); err != nil {
		return nil, errors.Join(err, w.close())
	}
	return w, nil
}

func (w *world) build(ctx context.Context) error {
	w.trust = map[path]*x509.CertPool{direct: w.env.UpstreamCA().Pool()}
	w.trustFile = map[path]string{direct: w.env.UpstreamCAFile()}

	// Addresses and names of the bench sites.
	for _, a := range []string{fastAddr, slowAddr} {
		if err := runCmd("ip", "-n", w.env.Name(testenv.Inet), "addr", "add", a+"/32",
			"dev", "lo"); err != nil {
			return err
		}
	}
	hosts := filepath.Join(w.env.NetnsEtcDir(), "hosts")
	f, err := os.OpenFile(hosts, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("adding the bench names to %s: %w", hosts, err)
	}
	fmt.Fprintf(f, "%s %s\n%s %s\n", fastAddr, fastHost, slowAddr, slowHost)
	f.Close()

	// The fast and the slow upstream, served from inside inet.
	if err := w.startUpstreams(); err != nil {
		return err
	}
	return w.startDaemon(ctx)
}

func (w *world) startUpstreams() error {
	ca := w.env.UpstreamCA()
	for _, s := range []struct {
		host, addr string
		delay      time.Duration
		dst        **upstream
	}{
		{fastHost, fastAddr, 0, &w.upstream},
		{slowHost, slowAddr, 20 * time.Millisecond, &w.slow},
	} {
		cert, err := ca.Issue(s.host, s.addr)
		if err != nil {
			return err
		}
		u, err := newUpstream(cert)
		if err != nil {
			return err
		}
		ln, err := w.env.NS(testenv.Inet).Listen("tcp", s.addr+":443")
		if err != nil {
			return err
		}
		if s.delay > 0 {
			ln = delayListener{Listener: ln, delay: s.delay}
		}
		u.serve(ln)
		*s.dst = u
	}
	return nil
}

// startDaemon builds hermes-netd, writes its config and key, starts `serve`
// in the host namespace and exports its CA.
func (w *world) startDaemon(ctx context.Context) error {
	w.bin = filepath.Join(w.dir, "hermes-netd")
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if out, err := exec.CommandContext(ctx, gobin, "build", "-o", w.bin,
		"./cmd/hermes-netd").CombinedOutput(); err != nil {
		return fmt.Errorf("building hermes-netd (run from the repository root): %w\n%s",
			err, out)
	}
	w.config = filepath.Join(w.dir, "netd.yaml")
	w.socket = filepath.Join(w.dir, "run", "netd.sock")
	cfg := fmt.Sprintf(`state_dir: %[1]s/state
secrets_dir: %[1]s/secrets
socket: %[2]s
upstream_ca_files: [%[3]s]
allow_upstream: [%[4]s, %[5]s]
# The idle scenario holds up to 10,000 connections from the one sandbox.
max_connections_per_sandbox: 20000
providers:
  bench:
    domains: [%[6]s, %[7]s, "*.%[8]s"]
audit:
  file: %[1]s/audit.jsonl
`, w.dir, w.socket, w.trustFile[direct], testenv.FakeInternet4, testenv.FakeInternet6,
		fastHost, slowHost, mintZone)
	if err := os.WriteFile(w.config, []byte(cfg), 0o600); err != nil {
		return fmt.Errorf("writing the daemon config: %w", err)
	}
	if _, err := w.cli(benchKey, "secrets", "set", "bench"); err != nil {
		return err
	}

	if err := w.spawnDaemon(ctx); err != nil {
		return err
	}
	pem, err := w.cli("", "ca", "export")
	if err != nil {
		return err
	}
	return w.trustPEM(viaHermes, []byte(pem))
}

// trustPEM makes clients on path p trust the certificates in pem.
func (w *world) trustPEM(p path, pem []byte) error {
	file := filepath.Join(w.dir, string(p)+"-ca.pem")
	if err := os.WriteFile(file, pem, 0o644); err != nil {
		return fmt.Errorf("writing the %s CA: %w", p, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("no certificate in the %s CA: %q", p, pem)
	}
	w.trust[p], w.trustFile[p] = pool, file
	return nil
}

// spawnDaemon starts `hermes-netd serve` in the host namespace and waits
// until it serves.
func (w *world) spawnDaemon(ctx context.Context) error {
	cmd := exec.Command("nsenter", "--net="+w.env.Path(testenv.Host), w.bin,
		"--config", w.config, "serve", "--bpf-pin-dir", w.env.PinDir())
	// The kernel kills the daemon if the bench dies (also by SIGKILL);
	// StartDaemon holds the forking thread for the daemon's life, which the
	// signal needs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	d, err := testenv.StartDaemon(ctx, cmd)
	if err != nil {
		return err
	}
	w.daemon = d
	st, err := daemon.NewClient(w.socket, 0).Status(ctx)
	if err != nil {
		return fmt.Errorf("asking hermes-netd for its status: %w", err)
	}
	w.pid = st.PID
	return nil
}

// restartDaemon stops hermes-netd and starts it again; it takes its
// attachments back, so the sandbox stays attached. Memory figures start
// from a fresh process this way.
func (w *world) restartDaemon(ctx context.Context) error {
	if err := w.stopDaemon(); err != nil {
		return err
	}
	return w.spawnDaemon(ctx)
}

// stopDaemon sends SIGTERM and waits for the daemon to exit
// (testenv.DaemonWaitLimit at most, then it is killed).
func (w *world) stopDaemon() error {
	if w.daemon == nil {
		return nil
	}
	err := w.daemon.Stop()
	w.daemon = nil
	return err
}

// counts are both upstreams' request counters together.
func (w *world) counts() counts { return w.upstream.counts().add(w.slow.counts()) }

// cli runs the hermes-netd command line with the bench's config.
func (w *world) cli(stdin string, args ...string) (string, error) {
	cmd := exec.Command(w.bin, append([]string{"--config", w.config}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	code, out, errOut := testenv.RunCommand(cmd)
	if code != 0 {
		return "", fmt.Errorf("hermes-netd %s: exit status %d: %s", strings.Join(args, " "),
			code, strings.TrimSpace(errOut))
	}
	return out, nil
}

// setPath attaches the sandbox (through hermes-netd) or detaches it (direct
// and the peers, which redirect on their own).
func (w *world) setPath(p path) error {
	want := p == viaHermes
	if want == w.attached {
		return nil
	}
	verb := "detach"
	if want {
		verb = "attach"
	}
	if _, err := w.cli("", verb, w.sandbox); err != nil {
		return err
	}
	w.attached = want
	return nil
}

// dial connects from inside the sandbox; the redirect acts on it when the
// sandbox is attached. The bench names resolve as the sandbox's hosts file
// says.
func (w *world) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	switch host {
	case fastHost:
		addr = net.JoinHostPort(fastAddr, port)
	case slowHost:
		addr = net.JoinHostPort(slowAddr, port)
	default:
		return w.env.SandboxDial(ctx, network, addr)
	}
	return w.env.NS(testenv.Sandbox).Dial(ctx, network, addr)
}

// tlsConfig is a client config for host on path p.
func (w *world) tlsConfig(p path, host string, protos ...string) *tls.Config {
	return &tls.Config{RootCAs: w.trust[p], ServerName: host, NextProtos: protos}
}

// close stops the daemon, removes its BPF pins and the whole topology. It
// goes on after errors and joins them.
func (w *world) close() error {
	var errs []error
	if err := w.stopDaemon(); err != nil {
		errs = append(errs, err)
	}
	for _, u := range []*upstream{w.upstream, w.slow} {
		if u != nil {
			u.close()
		}
	}
	errs = append(errs, w.env.Close()) // also removes the daemon's BPF pins
	return errors.Join(errs...)
}

func runCmd(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err,
			strings.TrimSpace(string(out)))
	}
	return nil
}

//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/hermes-netd/hermes-netd/internal/testenv"
)

const s8 = "8 peers"

// peerTable is the nftables table of the host namespace that sends the
// sandbox's tcp/443 to a peer proxy's transparent port. hermes-netd, when
// attached, takes the connections inside the sandbox before they get there.
const peerTable = "hermes_bench_peer"

// peer is a proxy compared with hermes-netd on scenario 1's workload.
type peer struct {
	path   path
	port   int
	protos []proto // what it can speak to the client
	why    string  // how it is set up, for the notes
	start  func(ctx context.Context, b *bench, pr *peer) (*exec.Cmd, error)
}

// peers is scenario 8: mitmproxy (transparent mode, an addon setting the
// same Authorization header hermes-netd sets) and sslsplit, each on the
// keep-alive workload, as ratios to hermes-netd measured in alternation.
func (b *bench) peers(ctx context.Context) error {
	ps := []*peer{
		{path: viaMitm, port: 8081, protos: []proto{h1, h2}, start: startMitm,
			why: "mitmdump --mode transparent, addon sets Authorization: Bearer <key>, " +
				"upstream verified against the upstream CA"},
		{path: viaSplit, port: 8082, protos: []proto{h1}, start: startSSLsplit,
			why: "sslsplit ssl mode with netfilter original destination; it has no " +
				"option to add a header and does not speak HTTP/2; it does not verify " +
				"the upstream certificate (its default)"},
	}
	var errs []error
	for _, p := range ps {
		if ctx.Err() != nil {
			break
		}
		if err := b.peer(ctx, p); err != nil {
			b.rep.unmeasurable(s8, string(p.path), err.Error())
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (b *bench) peer(ctx context.Context, p *peer) error {
	if _, err := exec.LookPath(map[path]string{viaMitm: "mitmdump",
		viaSplit: "sslsplit"}[p.path]); err != nil {
		return fmt.Errorf("%s is not installed (apt-get install %s)", p.path, p.path)
	}
	cmd, err := p.start(ctx, b, p)
	if err != nil {
		return err
	}
	defer stopGroup(cmd)
	if err := b.redirectTo(ctx, p.port); err != nil {
		return err
	}
	defer b.w.env.HostCmd(context.Background(), "nft", "delete", "table", "ip",
		peerTable).Run()

	paths := []path{viaHermes, p.path}
	rounds := min(b.set.Rounds, 3)
	for _, pr := range p.protos {
		res, err := b.alternate(ctx, rounds, paths, func(q path) (figures, error) {
			return b.latency(ctx, q, pr, fastHost)
		})
		if err != nil {
			return fmt.Errorf("%s %s latency: %w", p.path, pr, err)
		}
		for _, q := range []string{"p50", "p99"} {
			b.rep.add(peerRow(p, string(pr)+" latency "+q, "us", res[q]))
		}
	}
	for _, pr := range p.protos {
		res, err := b.alternate(ctx, rounds, paths, func(q path) (figures, error) {
			pid := b.w.pid
			if q == p.path {
				pid = cmd.Process.Pid
			}
			return b.load(ctx, q, pr, pid)
		})
		if err != nil {
			return fmt.Errorf("%s %s load: %w", p.path, pr, err)
		}
		b.rep.add(peerRow(p, string(pr)+" throughput", "req/s", res["rps"]))
		b.rep.add(peerRow(p, string(pr)+" proxy CPU per request", "us", res["cpu_us"]))
	}
	b.rep.Notes = append(b.rep.Notes, string(p.path)+": "+p.why)
	return nil
}

// peerRow compares a peer with hermes-netd: the ratio is peer / hermes-netd.
func peerRow(p *peer, metric, unit string, rounds map[path][]float64) row {
	h, q := rounds[viaHermes], rounds[p.path]
	x := row{Scenario: s8, Metric: string(p.path) + " " + metric, Unit: unit,
		Direct: f(median(h)), Hermes: f(median(q)), Compare: cmpRatio,
		Value:   f(median(q) / median(h)),
		Columns: [2]string{string(viaHermes), string(p.path)},
		Rounds:  map[string][]float64{string(viaHermes): h, string(p.path): q}}
	return x
}

// redirectTo sends the sandbox's tcp/443 arriving in the host namespace to
// port there.
func (b *bench) redirectTo(ctx context.Context, port int) error {
	rules := fmt.Sprintf(`table ip %[1]s {
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "%[2]s" tcp dport 443 redirect to :%[3]d
	}
}
`, peerTable, testenv.HostSandboxLink, port)
	file := filepath.Join(b.w.dir, "peer.nft")
	if err := os.WriteFile(file, []byte(rules), 0o600); err != nil {
		return err
	}
	if out, err := b.w.env.HostCmd(ctx, "nft", "-f", file).CombinedOutput(); err != nil {
		return fmt.Errorf("installing the peer redirect: %w: %s", err, out)
	}
	return nil
}

// waitPort waits until something listens on port in the host namespace.
func (b *bench) waitPort(ctx context.Context, port int) error {
	addr := net.JoinHostPort(testenv.HostSandboxAddr4.Addr().String(), strconv.Itoa(port))
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := b.w.env.NS(testenv.Host).Dial(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("nothing listens on %s after 30s: %w", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func startMitm(ctx context.Context, b *bench, p *peer) (*exec.Cmd, error) {
	conf := filepath.Join(b.w.dir, "mitmproxy")
	if err := os.MkdirAll(conf, 0o700); err != nil {
		return nil, err
	}
	addon := filepath.Join(conf, "inject.py")
	py := fmt.Sprintf("def request(flow):\n"+
		"    flow.request.headers[\"Authorization\"] = \"Bearer %s\"\n", benchKey)
	if err := os.WriteFile(addon, []byte(py), 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(conf, "mitmdump.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := b.w.env.HostCmd(ctx, "mitmdump", "--mode", "transparent",
		"--listen-port", strconv.Itoa(p.port), "--set", "confdir="+conf,
		"--set", "ssl_verify_upstream_trusted_ca="+b.w.trustFile[direct],
		"--set", "block_global=false", "--set", "flow_detail=0", "-q", "-s", addon)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting mitmdump: %w", err)
	}
	if err := b.waitPort(ctx, p.port); err != nil {
		stopGroup(cmd)
		log, _ := os.ReadFile(logf.Name())
		return nil, fmt.Errorf("mitmdump: %w: %s", err, log)
	}
	pem, err := os.ReadFile(filepath.Join(conf, "mitmproxy-ca-cert.pem"))
	if err == nil {
		err = b.w.trustPEM(viaMitm, pem)
	}
	if err != nil {
		stopGroup(cmd)
		return nil, fmt.Errorf("reading mitmproxy's CA: %w", err)
	}
	return cmd, nil
}

func startSSLsplit(ctx context.Context, b *bench, p *peer) (*exec.Cmd, error) {
	dir := filepath.Join(b.w.dir, "sslsplit")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	key, crt := filepath.Join(dir, "ca.key"), filepath.Join(dir, "ca.crt")
	if out, err := exec.CommandContext(ctx, "openssl", "req", "-x509", "-newkey", "ec",
		"-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt,
		"-days", "2", "-subj", "/CN=hermes bench sslsplit CA").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("making the sslsplit CA with openssl: %w: %s", err, out)
	}
	logf, err := os.Create(filepath.Join(dir, "sslsplit.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := b.w.env.HostCmd(ctx, "sslsplit", "-k", key, "-c", crt,
		"ssl", "0.0.0.0", strconv.Itoa(p.port))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting sslsplit: %w", err)
	}
	if err := b.waitPort(ctx, p.port); err != nil {
		stopGroup(cmd)
		log, _ := os.ReadFile(logf.Name())
		return nil, fmt.Errorf("sslsplit: %w: %s", err, log)
	}
	pem, err := os.ReadFile(crt)
	if err == nil {
		err = b.w.trustPEM(viaSplit, pem)
	}
	if err != nil {
		stopGroup(cmd)
		return nil, err
	}
	return cmd, nil
}

// stopGroup kills a peer's whole process group (sslsplit forks a worker that
// would outlive its parent) while the leader is not yet reaped, so that the
// group id cannot have been reused, then reaps the leader.
func stopGroup(cmd *exec.Cmd) {
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	cmd.Wait()
}

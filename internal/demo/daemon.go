//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/hermes-netd/hermes-netd/internal/testenv"
)

// waitLimit bounds every wait for the daemon.
const waitLimit = 15 * time.Second

// daemonBinary returns bin/hermes-netd of the repository the demo runs in,
// building it first when it is missing.
func daemonBinary(ctx context.Context, out io.Writer) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(root, "bin", "hermes-netd")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	fmt.Fprintf(out, "bin/hermes-netd is missing; building it (`make build` does the same)\n")
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.CommandContext(ctx, gobin, "build", "-o", bin, "./cmd/hermes-netd")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s: %w (run `make build` to see why)\n%s", bin, err, b)
	}
	return bin, nil
}

// repoRoot is the nearest directory up from the working directory holding
// go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory: run the demo " +
				"from the repository with `make demo`")
		}
		dir = parent
	}
}

// configure writes the daemon's config into the world's temporary directory:
// everything of its own (state, keys, socket, audit file, BPF pins), the fake
// internet allowed upstream and its CA trusted.
func (d *demo) configure() error {
	dir := d.env.TempDir()
	d.config = filepath.Join(dir, "netd.yaml")
	d.socket = filepath.Join(dir, "run", "netd.sock")
	d.audit = filepath.Join(dir, "audit.jsonl")
	d.hermesCA = filepath.Join(dir, "hermes-ca.pem")
	cfg := fmt.Sprintf(`state_dir: %[1]s/state
secrets_dir: %[1]s/secrets
socket: %[2]s
upstream_ca_files: [%[3]s]
allow_upstream: [%[4]s, %[5]s]
audit:
  file: %[6]s
`, dir, d.socket, d.env.UpstreamCAFile(), testenv.FakeInternet4, testenv.FakeInternet6,
		d.audit)
	return os.WriteFile(d.config, []byte(cfg), 0o600)
}

// cli runs the hermes-netd CLI and returns the first line it printed, or an
// error with what it said.
func (d *demo) cli(stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.bin, append([]string{"--config", d.config}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("hermes-netd %s: %w: %s", strings.Join(args, " "), err,
			strings.TrimSpace(stderr.String()))
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return line, nil
}

// daemonLog is what the daemon has logged, for an error report.
func (d *demo) daemonLog() string {
	if d.daemon == nil {
		return ""
	}
	return d.daemon.Log()
}

// startDaemon runs the daemon in the host namespace and waits until it serves.
func (d *demo) startDaemon(ctx context.Context) error {
	cmd := d.env.HostCmd(context.Background(), d.bin, "--config", d.config, "serve",
		"--bpf-pin-dir", d.env.PinDir())
	p, err := testenv.StartDaemon(ctx, cmd)
	if err != nil {
		return err
	}
	d.daemon = p
	return nil
}

// mode says how the daemon redirects, from its status.
func (d *demo) mode() string {
	out, err := exec.Command(d.bin, "--config", d.config, "status", "--json").Output()
	var st struct {
		Mode       string `json:"mode"`
		ModeReason string `json:"mode_reason"`
	}
	if err != nil || json.Unmarshal(out, &st) != nil {
		return "serving"
	}
	return fmt.Sprintf("serving, %s redirect (%s)", st.Mode, st.ModeReason)
}

// exportCA writes the hermes CA where the sandbox's curl reads it.
func (d *demo) exportCA() error {
	out, err := exec.Command(d.bin, "--config", d.config, "ca", "export").Output()
	if err != nil {
		return fmt.Errorf("hermes-netd ca export: %w", err)
	}
	return os.WriteFile(d.hermesCA, out, 0o644)
}

// teardown detaches the sandbox, stops the daemon, removes its BPF pins and
// the world. It goes on after a failure and reports every error.
func (d *demo) teardown() error {
	if d.env == nil {
		return nil
	}
	var errs []error
	if p := d.daemon; p != nil {
		if _, err := d.cli("", "detach", d.env.Name(testenv.Sandbox)); err != nil {
			errs = append(errs, err)
		}
		errs = append(errs, p.Stop())
	}
	// Close kills the daemon if it still runs and removes its BPF pins.
	errs = append(errs, d.env.Close())
	err := errors.Join(errs...)
	if err == nil {
		d.section("Cleaned up")
		d.printf("detached, daemon stopped, namespaces, BPF pins and files removed")
	}
	return err
}

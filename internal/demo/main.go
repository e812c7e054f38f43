//go:build linux

// Command demo is `make demo`: hermes-netd's main job on a built-in world. It
// builds the test topology (a sandbox, a host and a fake internet, each a
// network namespace), runs bin/hermes-netd in the host namespace with a key
// for the fake NVIDIA NIM provider, attaches the sandbox, and has curl inside
// the sandbox, holding no key, ask for a streamed chat completion. It prints
// what the sandbox sent, what the provider received (the key only by its
// fingerprint) and the answer as it streams in, then removes everything it
// made, also on failure or Ctrl-C.
//
// Run it from the repository root, as root: `make demo`, or `make build` then
// `go run ./internal/demo`.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hermes-netd/hermes-netd/internal/testenv"
	"github.com/hermes-netd/hermes-netd/internal/testenv/fakeapi"
)

// chunkDelay slows the fake provider's stream down enough to watch.
const chunkDelay = 150 * time.Millisecond

func main() {
	os.Exit(run(os.Stdout))
}

func run(out io.Writer) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "demo: needs root (it makes network namespaces and runs "+
			"the daemon): run `sudo make demo`")
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	d := &demo{out: out}
	err := d.run(ctx)
	if terr := d.teardown(); terr != nil {
		err = errors.Join(err, terr)
	}
	switch {
	case ctx.Err() != nil:
		fmt.Fprintln(os.Stderr, "demo: interrupted; everything it made is removed")
		return 130
	case err != nil:
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		if log := d.daemonLog(); log != "" {
			fmt.Fprintf(os.Stderr, "daemon log:\n%s", log)
		}
		return 1
	}
	return 0
}

// run builds the world, starts and attaches the daemon, and makes the call.
func (d *demo) run(ctx context.Context) error {
	bin, err := daemonBinary(ctx, d.out)
	if err != nil {
		return err
	}
	d.bin = bin

	testenv.CleanupStale() // what a killed earlier demo left behind
	env, err := testenv.Start(testenv.Options{ChunkDelay: chunkDelay})
	if err != nil {
		return err
	}
	d.env = env
	d.section("The world")
	d.printf("sandbox   netns %s: no key, no proxy settings, trusts only the hermes CA",
		env.Name(testenv.Sandbox))
	d.printf("host      netns %s: runs hermes-netd, holds the key",
		env.Name(testenv.Host))
	d.printf("internet  netns %s: a fake NVIDIA NIM at integrate.api.nvidia.com",
		env.Name(testenv.Inet))

	if err := d.configure(); err != nil {
		return err
	}
	d.section("hermes-netd")
	fp, err := d.cli(env.Key(fakeapi.NIM), "secrets", "set", "nim")
	if err != nil {
		return err
	}
	fp, _, _ = strings.Cut(fp, " in ") // the directory is the run's temporary one
	d.printf("$ hermes-netd secrets set nim      # %s", fp)
	if err := d.startDaemon(ctx); err != nil {
		return err
	}
	d.printf("$ hermes-netd serve                # %s", d.mode())
	attached, err := d.cli("", "attach", env.Name(testenv.Sandbox))
	if err != nil {
		return err
	}
	d.printf("$ hermes-netd attach %s  # %s", env.Name(testenv.Sandbox), attached)
	if err := d.exportCA(); err != nil {
		return err
	}

	return d.call(ctx)
}

// demo holds what the demo made, for teardown.
type demo struct {
	out      io.Writer
	bin      string
	env      *testenv.Env
	config   string
	socket   string
	audit    string
	hermesCA string
	daemon   *testenv.Daemon
}

func (d *demo) section(title string) {
	fmt.Fprintf(d.out, "\n== %s ==\n", title)
}

func (d *demo) printf(format string, args ...any) {
	fmt.Fprintf(d.out, "  "+format+"\n", args...)
}

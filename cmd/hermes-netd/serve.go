package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/hermes-netd/hermes-netd/bpf"
	"github.com/hermes-netd/hermes-netd/internal/daemon"
)

func newServeCmd(g *globals) *cobra.Command {
	var (
		port     uint16
		shutdown time.Duration
		check    time.Duration
		debug    bool
		pinDir   string
		cgroup   string
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the daemon (as root)",
		Long: "serve loads the redirect (eBPF, or nftables where eBPF is unavailable), " +
			"the CA,\nthe keys and the providers, takes back the namespaces it served " +
			"before a restart,\nand answers attach, detach and status on the admin " +
			"socket. SIGHUP reloads the\nconfiguration; SIGTERM stops accepting, lets " +
			"requests in flight finish within\ntimeouts.shutdown (or --shutdown-timeout) " +
			"and exits 0, leaving attached sandboxes\nintercepted (they fail closed " +
			"until the daemon is back).",
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			// Given explicitly, the flags override the config; left out, the
			// config's listen_port and timeouts.shutdown apply.
			f := cmd.Flags()
			if f.Changed("listen-port") && port == 0 {
				return errors.New("--listen-port 0 is not a port; give 1-65535, or " +
					"leave the flag out to use listen_port of the config")
			}
			if f.Changed("shutdown-timeout") && shutdown <= 0 {
				return fmt.Errorf("--shutdown-timeout %v is not positive; give a "+
					"duration like 30s, or leave the flag out to use timeouts.shutdown "+
					"of the config", shutdown)
			}
			if os.Geteuid() != 0 {
				return errors.New("serve must run as root: it listens inside other " +
					"network namespaces, changes their nftables and loads BPF programs")
			}
			level := slog.LevelInfo
			if debug {
				level = slog.LevelDebug
			}
			logger := slog.New(slog.NewTextHandler(g.stderr,
				&slog.HandlerOptions{Level: level}))
			return daemon.Run(cmd.Context(), daemon.RunOptions{
				ConfigPath:      g.configPath,
				Socket:          g.socket,
				Port:            port,
				ShutdownTimeout: shutdown,
				CheckInterval:   check,
				PinDir:          pinDir,
				CgroupRoot:      cgroup,
				Logger:          logger,
				Stderr:          g.stderr,
			})
		},
	}
	f := cmd.Flags()
	f.Uint16Var(&port, "listen-port", 0,
		"port of the proxy's listeners inside each attached namespace (127.0.0.1 and ::1);\n"+
			"overrides listen_port of the config (default 15443)")
	f.DurationVar(&shutdown, "shutdown-timeout", 0,
		"how long SIGTERM waits for requests in flight;\n"+
			"overrides timeouts.shutdown of the config (default 10s)")
	f.DurationVar(&check, "check-interval", daemon.DefaultCheckInterval,
		"how often to look for attached namespaces that vanished")
	f.StringVar(&pinDir, "bpf-pin-dir", bpf.DefaultPinDir,
		"bpffs directory for the BPF redirect's pins (one per daemon)")
	f.StringVar(&cgroup, "cgroup-root", "",
		"cgroup2 directory the BPF programs attach to (default: the cgroup2 root)")
	f.BoolVar(&debug, "debug", false, "log debug records too")
	return cmd
}

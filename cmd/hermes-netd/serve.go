package main

import (
	"errors"
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
			"requests in flight finish within\n--shutdown-timeout and exits 0, leaving " +
			"attached sandboxes intercepted (they fail\nclosed until the daemon is back).",
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
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
	f.Uint16Var(&port, "listen-port", daemon.DefaultPort,
		"port of the proxy's listeners inside each attached namespace (127.0.0.1 and ::1)")
	f.DurationVar(&shutdown, "shutdown-timeout", daemon.DefaultShutdownTimeout,
		"how long SIGTERM waits for requests in flight")
	f.DurationVar(&check, "check-interval", daemon.DefaultCheckInterval,
		"how often to look for attached namespaces that vanished")
	f.StringVar(&pinDir, "bpf-pin-dir", bpf.DefaultPinDir,
		"bpffs directory for the BPF redirect's pins (one per daemon)")
	f.StringVar(&cgroup, "cgroup-root", "",
		"cgroup2 directory the BPF programs attach to (default: the cgroup2 root)")
	f.BoolVar(&debug, "debug", false, "log debug records too")
	return cmd
}

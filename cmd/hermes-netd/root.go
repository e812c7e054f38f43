package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hermes-netd/hermes-netd/internal/config"
	"github.com/hermes-netd/hermes-netd/internal/daemon"
)

// globals are the flags every command shares.
type globals struct {
	configPath string
	socket     string
	stdin      io.Reader
	stdout     io.Writer
	stderr     io.Writer
}

// run executes the command line args and returns the exit status. Every failure
// is one line on stderr: "hermes-netd: <what went wrong and how to fix it>".
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &globals{stdin: stdin, stdout: stdout, stderr: stderr}
	root := newRootCmd(g)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)

	cmd, err := root.ExecuteC()
	if err == nil {
		return 0
	}
	msg := oneLine(err.Error())
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		msg += fmt.Sprintf(" (see `%s --help`)", cmd.CommandPath())
	}
	fmt.Fprintf(stderr, "hermes-netd: %s\n", msg)
	return 1
}

func newRootCmd(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "hermes-netd",
		Short: "Give sandboxed AI agents API access without giving them the API keys",
		Long: "hermes-netd intercepts the outbound HTTPS of attached sandbox network " +
			"namespaces,\ninjects the right API key for each provider and forwards the " +
			"request; the keys\nstay on the host. `serve` runs the daemon; the other " +
			"commands talk to it or\nmanage its keys and CA.",
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return usageError{err}
	})
	pf := root.PersistentFlags()
	pf.StringVar(&g.configPath, "config", config.DefaultPath, "configuration file")
	pf.StringVar(&g.socket, "socket", "",
		"admin socket (default: the config's socket, "+daemon.DefaultSocket+")")

	root.AddCommand(
		newServeCmd(g),
		newAttachCmd(g),
		newDetachCmd(g),
		newStatusCmd(g),
		newReloadCmd(g),
		newSecretsCmd(g),
		newCACmd(g),
		newVersionCmd(g),
	)
	return root
}

// loadConfig reads the configuration named by --config. A missing default file
// gives the defaults (config.Load's rule).
func (g *globals) loadConfig() (*config.Config, error) {
	return config.Load(g.configPath)
}

// socketPath returns --socket, else the config's socket. The config is read only
// when --socket is not given, so launchers can skip it entirely.
func (g *globals) socketPath() (string, error) {
	if g.socket != "" {
		return g.socket, nil
	}
	cfg, err := g.loadConfig()
	if err != nil {
		return "", err
	}
	if cfg.Socket == "" {
		return daemon.DefaultSocket, nil
	}
	return cfg.Socket, nil
}

// usageError marks a wrong command line; run appends a pointer to --help.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// exactArgs is cobra.ExactArgs with a message naming the missing argument.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return usageError{fmt.Errorf("%s takes %d argument(s): %s, got %d",
				cmd.Name(), len(names), strings.Join(names, " "), len(args))}
		}
		return nil
	}
}

// isCobraUsage recognises cobra's own unknown-command errors.
func isCobraUsage(err error) bool {
	return strings.HasPrefix(err.Error(), "unknown command") ||
		strings.HasPrefix(err.Error(), "unknown flag")
}

// oneLine folds a multi-line error into one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hermes-netd/hermes-netd/internal/ca"
)

// DefaultTrustPath is where `ca env` points by default: Debian's and Ubuntu's
// system bundle. A sandbox image that copied `hermes-netd ca export` to
// /usr/local/share/ca-certificates/hermes-ca.crt and ran update-ca-certificates
// has the hermes CA in it next to the public roots, so both intercepted and
// passthrough sites verify; most of the variables replace a runtime's bundle
// rather than add to it, which is why the single CA file is not the default.
const DefaultTrustPath = "/etc/ssl/certs/ca-certificates.crt"

func newCACmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Export the hermes CA that sandboxes must trust",
	}

	export := &cobra.Command{
		Use:   "export",
		Short: "Print the CA certificate (PEM); creates the CA in the state dir if absent",
		Example: "  hermes-netd ca export > /usr/local/share/ca-certificates/hermes-ca.crt\n" +
			"  update-ca-certificates",
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			a, err := ca.LoadOrCreate(cfg.StateDir)
			if err != nil {
				return err
			}
			_, err = g.stdout.Write(a.CertPEM())
			return err
		},
	}

	var path string
	env := &cobra.Command{
		Use:   "env",
		Short: "Print `export VAR=PATH` lines that make common runtimes trust a CA bundle",
		Long: "env prints shell lines that point OpenSSL, Go, Node.js, Python requests, " +
			"curl, git,\npip, cargo, the AWS SDKs and Deno at the CA bundle PATH. The " +
			"default is the\nsystem bundle " + DefaultTrustPath + ", which holds the " +
			"hermes CA\nonce it is installed with update-ca-certificates; most of these " +
			"variables\nreplace a runtime's roots, so PATH should hold the public roots " +
			"too.",
		Example: "  eval \"$(hermes-netd ca env)\"",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, kv := range ca.EnvVars(path) {
				name, value, _ := strings.Cut(kv, "=")
				fmt.Fprintf(g.stdout, "export %s=%s\n", name, shellQuote(value))
			}
			return nil
		},
	}
	env.Flags().StringVar(&path, "path", DefaultTrustPath, "CA bundle the variables name")

	cmd.AddCommand(export, env)
	return cmd
}

// shellQuote quotes s for a POSIX shell when it holds anything but safe characters.
func shellQuote(s string) string {
	safe := s != ""
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			strings.ContainsRune("/._-+:,@%", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/hermes-netd/hermes-netd/internal/secrets"
)

// maxKeyInput bounds what `secrets set` reads from stdin; keys are small.
const maxKeyInput = 64 << 10

func newSecretsCmd(g *globals) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "secrets",
		Short: "Manage the API keys (works with or without the daemon running)",
		Long: "The keys live in the secrets directory as NAME.key files, root-owned, " +
			"mode 0600.\nA running daemon picks up every change at once; no restart " +
			"is needed.",
	}
	cmd.PersistentFlags().StringVar(&dir, "secrets-dir", "",
		"secrets directory (default: the config's secrets_dir, "+secrets.DefaultDir+")")
	secretsDir := func() (string, error) {
		if dir != "" {
			return dir, nil
		}
		cfg, err := g.loadConfig()
		if err != nil {
			return "", err
		}
		return cfg.SecretsDir, nil
	}

	set := &cobra.Command{
		Use:   "set NAME",
		Short: "Store the key NAME, read from stdin (one trailing newline is dropped)",
		Example: "  printf %s \"$NVIDIA_API_KEY\" | hermes-netd secrets set nim\n" +
			"  hermes-netd secrets set openai < openai.txt",
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := secretsDir()
			if err != nil {
				return err
			}
			value, err := io.ReadAll(io.LimitReader(g.stdin, maxKeyInput+1))
			if err != nil {
				return fmt.Errorf("reading the key from stdin: %w", err)
			}
			if len(value) > maxKeyInput {
				return fmt.Errorf("key on stdin is longer than %d bytes", maxKeyInput)
			}
			if err := secrets.Set(d, args[0], value); err != nil {
				return err
			}
			fp := secrets.NewKey(mustParse(value)).Fingerprint()
			fmt.Fprintf(g.stdout, "stored %s (%s) in %s\n", args[0], fp, d)
			return nil
		},
	}

	list := &cobra.Command{
		Use:   "list",
		Short: "List the keys by name and fingerprint (never the values)",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := secretsDir()
			if err != nil {
				return err
			}
			s, err := secrets.Open(d, nil)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tFINGERPRINT")
			for _, e := range s.List() {
				fp := e.Fingerprint
				if e.Err != nil {
					fp = "refused: " + oneLine(e.Err.Error())
				}
				fmt.Fprintf(tw, "%s\t%s\n", e.Name, fp)
			}
			return tw.Flush()
		},
	}

	revoke := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Delete the key NAME; injection for it stops at the next request",
		Args:  exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := secretsDir()
			if err != nil {
				return err
			}
			if err := secrets.Revoke(d, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "revoked %s\n", args[0])
			return nil
		},
	}

	cmd.AddCommand(set, list, revoke)
	return cmd
}

// mustParse returns the key as secrets.Set stored it; Set has already accepted it.
func mustParse(value []byte) string {
	v, err := secrets.ParseValue(value)
	if err != nil {
		panic("secrets.Set accepted a value ParseValue refuses: " + err.Error())
	}
	return v
}

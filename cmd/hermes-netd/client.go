package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hermes-netd/hermes-netd/internal/daemon"
)

// clientTimeout bounds attach and detach: they sit in sandbox launch paths.
const clientTimeout = 10 * time.Second

func (g *globals) client() (*daemon.Client, error) {
	sock, err := g.socketPath()
	if err != nil {
		return nil, err
	}
	return daemon.NewClient(sock, clientTimeout), nil
}

func newAttachCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "attach NETNS",
		Short: "Intercept the outbound HTTPS of a network namespace (idempotent)",
		Long: "Attach asks the running daemon to intercept NETNS: a name under " +
			"/var/run/netns,\nan absolute path such as /proc/PID/ns/net, or pid:N. " +
			"Attaching an attached\nnamespace succeeds and changes nothing.",
		Args: exactArgs("NETNS"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			a, err := cl.Attach(cmd.Context(), netnsArg(args[0]))
			if err != nil {
				return err
			}
			verb := "attached"
			if a.Existing {
				verb = "already attached"
			}
			fmt.Fprintf(g.stdout, "%s %s (netns cookie %d, listening on %s)\n",
				verb, a.Spec, a.Cookie, ports(a.Record))
			return nil
		},
	}
}

func newDetachCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "detach NETNS|cookie:N",
		Short: "Stop intercepting a network namespace (idempotent)",
		Long: "Detach asks the running daemon to stop intercepting NETNS and to remove " +
			"its\nredirect. NETNS is resolved to the namespace it names now. When it names " +
			"none\nany more and several namespaces were attached under it, pick one by the " +
			"cookie\n`hermes-netd status` shows: detach cookie:N. Detaching a namespace that " +
			"is not\nattached, or no longer exists, succeeds.",
		Args: exactArgs("NETNS"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			res, err := cl.Detach(cmd.Context(), netnsArg(args[0]))
			if err != nil {
				return err
			}
			if res.WasAttached {
				if res.Cookie != 0 {
					fmt.Fprintf(g.stdout, "detached %s (cookie %d)\n", res.Netns, res.Cookie)
				} else {
					fmt.Fprintf(g.stdout, "detached %s\n", res.Netns)
				}
			} else {
				fmt.Fprintf(g.stdout, "%s was not attached\n", res.Netns)
			}
			return nil
		},
	}
}

func newStatusCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the mode, attached namespaces, providers and counters",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			st, err := cl.Status(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			return printStatus(g.stdout, st)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	return cmd
}

func newReloadCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "reload",
		Short: "Make the running daemon reload its configuration (as SIGHUP does)",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			res, err := cl.Reload(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "reloaded %s\n", res.Config)
			if len(res.NeedsRestart) > 0 {
				fmt.Fprintf(g.stdout, "restart the daemon to apply: %s\n",
					strings.Join(res.NeedsRestart, ", "))
			}
			return nil
		},
	}
}

// netnsArg makes a relative path absolute, since the daemon resolves specs from
// its own working directory. Names (no '/') and pid:N pass through.
func netnsArg(spec string) string {
	if !strings.ContainsRune(spec, '/') || filepath.IsAbs(spec) ||
		strings.HasPrefix(spec, "pid:") {
		return spec
	}
	if abs, err := filepath.Abs(spec); err == nil {
		return abs
	}
	return spec
}

func ports(r daemon.Record) string {
	s := fmt.Sprintf("127.0.0.1:%d", r.Port4)
	if r.Port6 != 0 {
		s += fmt.Sprintf(" [::1]:%d", r.Port6)
	}
	return s
}

// printStatus writes the human form of st: a header, then aligned tables.
func printStatus(w io.Writer, st daemon.Status) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "mode:\t%s (%s)\n", st.Mode, st.ModeReason)
	fmt.Fprintf(tw, "daemon:\tpid %d, version %s, up since %s\n", st.PID, st.Version,
		st.Started.Format(time.RFC3339))
	fmt.Fprintf(tw, "config:\t%s\n", orDash(st.Config))
	tw.Flush()

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NETNS\tCOOKIE\tLISTENING\tCONNECTIONS\tREQUESTS\tSINCE")
	for _, a := range st.Attached {
		spec := a.Spec
		if a.NameGone {
			// Still intercepted: processes live on in the namespace.
			spec += " (name gone)"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%s\n", spec, a.Cookie, ports(a.Record),
			a.Connections, a.Requests, a.Since.Format(time.RFC3339))
	}
	if len(st.Attached) == 0 {
		fmt.Fprintln(tw, "(none attached)\t\t\t\t\t")
	}
	for _, r := range st.Kept {
		fmt.Fprintf(tw, "%s\t%d\t(not served: could not re-attach, see the log)\t\t\t%s\n",
			r.Spec, r.Cookie, r.Since.Format(time.RFC3339))
	}
	for _, r := range st.Retired {
		fmt.Fprintf(tw, "%s\t%d\t(retired: nothing visible holds it; refused, not served)\t\t\t%s\n",
			r.Spec, r.Cookie, r.Since.Format(time.RFC3339))
	}
	tw.Flush()

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROVIDER\tKEY\tLOADED\tFINGERPRINT\tDOMAINS")
	for _, p := range st.Providers {
		loaded, fp := "no", orDash(p.Fingerprint)
		if p.Loaded {
			loaded = "yes"
		} else if p.Problem != "" {
			fp = p.Problem
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Name, p.Key, loaded, fp,
			strings.Join(p.Domains, ","))
	}
	tw.Flush()

	fmt.Fprintln(w)
	c := st.Counters
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "requests:\t%d\n", c.Requests)
	fmt.Fprintf(tw, "injected:\t%s\n", counts(c.Injected))
	fmt.Fprintf(tw, "refused:\t%s\n", counts(c.Refused))
	fmt.Fprintf(tw, "decisions:\t%s\n", counts(c.Decisions))
	return tw.Flush()
}

// counts renders a counter map as "a=1 b=2", sorted by name, or "-".
func counts(m map[string]uint64) string {
	if len(m) == 0 {
		return "-"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

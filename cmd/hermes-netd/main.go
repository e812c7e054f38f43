// Command hermes-netd is the hermes-netd daemon and its command-line client: it
// intercepts the outbound HTTPS of attached sandbox network namespaces and injects
// API keys the sandboxes never see. Run `hermes-netd --help` for the commands.
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

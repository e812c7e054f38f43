package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/hermes-netd/hermes-netd/internal/version"
)

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintf(g.stdout, "hermes-netd %s (%s, %s/%s)\n", version.Version,
				runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}

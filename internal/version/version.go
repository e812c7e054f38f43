// Package version holds the build's version string, set by the Makefile.
package version

// Version is overwritten at link time with `git describe`.
var Version = "dev"

package main

import (
	"strings"
	"testing"
)

// Flags given explicitly must be usable values: 0 would silently mean "use the
// config" otherwise.
func TestServeFlagErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--listen-port", "0"}, "--listen-port 0 is not a port"},
		{[]string{"serve", "--shutdown-timeout", "0s"}, "--shutdown-timeout 0s is not positive"},
		{[]string{"serve", "--shutdown-timeout", "-5s"}, "--shutdown-timeout -5s is not positive"},
	} {
		code, out, errOut := cli(t, "", tt.args...)
		if code == 0 || out != "" || !strings.Contains(errOut, tt.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want non-zero and %q",
				tt.args, code, out, errOut, tt.want)
		}
	}
}

//go:build linux

package bpf

import (
	"errors"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

func TestUnsupportedError(t *testing.T) {
	var err error = &UnsupportedError{
		Feature:   "bpf_get_netns_cookie in sockops programs",
		MinKernel: "5.15",
		Err:       ebpf.ErrNotSupported,
	}
	var ue *UnsupportedError
	if !errors.As(err, &ue) || !errors.Is(err, ebpf.ErrNotSupported) {
		t.Fatalf("%v: want an *UnsupportedError wrapping ErrNotSupported", err)
	}
	for _, want := range []string{"bpf_get_netns_cookie in sockops programs", "5.15"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q does not mention %q", err, want)
		}
	}
}

func TestPrivilegedProbe(t *testing.T) {
	requireRoot(t)
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		t.Fatal(err)
	}
	release := unix.ByteSliceToString(uts.Release[:])

	err := Probe()
	if kernelAtLeast(release, 5, 15) {
		if err != nil {
			t.Errorf("Probe() on Linux %s = %v, want nil", release, err)
		}
		return
	}
	var ue *UnsupportedError
	if !errors.As(err, &ue) {
		t.Errorf("Probe() on Linux %s = %v, want an *UnsupportedError", release, err)
	}
}

func kernelAtLeast(release string, major, minor int) bool {
	var ma, mi int
	for i, part := range strings.SplitN(release, ".", 3)[:2] {
		n := 0
		for _, c := range part {
			if c < '0' || c > '9' {
				break
			}
			n = n*10 + int(c-'0')
		}
		if i == 0 {
			ma = n
		} else {
			mi = n
		}
	}
	return ma > major || ma == major && mi >= minor
}

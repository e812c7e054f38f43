//go:build linux

package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
)

// UnsupportedError says which kernel feature the redirect needs is missing, and
// from which Linux version on it exists.
type UnsupportedError struct {
	Feature   string // e.g. "bpf_get_netns_cookie in sockops programs"
	MinKernel string // e.g. "5.15"
	Err       error  // what the probe saw
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("kernel lacks %s (needs Linux %s or later); use the nft mode instead",
		e.Feature, e.MinKernel)
}

func (e *UnsupportedError) Unwrap() error { return e.Err }

type requirement struct {
	feature   string
	minKernel string
	probe     func() error
}

// requirements lists what the programs in redirect.c use, oldest first, with the
// Linux release that introduced each. BPF links on cgroups (5.7), which Install
// needs to pin its attachments, are implied by the 5.15 helpers below.
var requirements = []requirement{
	{"cgroup/getsockopt programs", "5.3", func() error {
		return features.HaveProgramType(ebpf.CGroupSockopt)
	}},
	{"bpf_get_socket_cookie in cgroup/connect programs", "4.20", func() error {
		return features.HaveProgramHelper(ebpf.CGroupSockAddr, asm.FnGetSocketCookie)
	}},
	{"bpf_get_netns_cookie in cgroup/connect programs", "5.7", func() error {
		return features.HaveProgramHelper(ebpf.CGroupSockAddr, asm.FnGetNetnsCookie)
	}},
	{"bpf_get_current_pid_tgid in cgroup/connect programs", "5.7", func() error {
		return features.HaveProgramHelper(ebpf.CGroupSockAddr, asm.FnGetCurrentPidTgid)
	}},
	{"bpf_get_current_cgroup_id in cgroup/connect programs", "5.7", func() error {
		return features.HaveProgramHelper(ebpf.CGroupSockAddr, asm.FnGetCurrentCgroupId)
	}},
	{"bpf_get_netns_cookie in sockops programs", "5.15", func() error {
		return features.HaveProgramHelper(ebpf.SockOps, asm.FnGetNetnsCookie)
	}},
	{"bpf_get_netns_cookie in cgroup/getsockopt programs", "5.15", func() error {
		return features.HaveProgramHelper(ebpf.CGroupSockopt, asm.FnGetNetnsCookie)
	}},
}

// Probe reports whether the running kernel can run the redirect programs. It
// returns nil, an *UnsupportedError naming the first missing feature, or another
// error when probing itself failed (for example without CAP_BPF).
func Probe() error {
	for _, r := range requirements {
		err := r.probe()
		if err == nil {
			continue
		}
		if errors.Is(err, ebpf.ErrNotSupported) {
			return &UnsupportedError{Feature: r.feature, MinKernel: r.minKernel, Err: err}
		}
		return fmt.Errorf("probing for %s: %w", r.feature, err)
	}
	return nil
}

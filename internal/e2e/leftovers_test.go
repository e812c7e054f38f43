//go:build linux

package e2e_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/hermes-netd/hermes-netd/bpf"
	"github.com/hermes-netd/hermes-netd/internal/testenv"
	"github.com/hermes-netd/hermes-netd/netsetup"
)

// programs are BPF program ids with their link pin names.
type programs map[ebpf.ProgramID]string

// cgroupHooks are the attach types of the BPF redirect.
var cgroupHooks = []ebpf.AttachType{
	ebpf.AttachCGroupInet4Connect, ebpf.AttachCGroupInet6Connect,
	ebpf.AttachCGroupUDP4Sendmsg, ebpf.AttachCGroupUDP6Sendmsg,
	ebpf.AttachCGroupSockOps, ebpf.AttachCGroupGetsockopt,
}

// pinnedPrograms returns the programs behind the links pinned in pinDir: the
// run's own, whatever other suites attach at the same time.
func pinnedPrograms(t *testing.T, pinDir string) programs {
	t.Helper()
	out, err := bpf.PinnedPrograms(pinDir)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// rootPrograms returns the hermes_ programs attached to the cgroup2 root.
func rootPrograms(t *testing.T) programs {
	t.Helper()
	root, err := netsetup.Cgroup2Root()
	if err != nil {
		t.Fatal(err)
	}
	out, err := bpf.AttachedPrograms(root)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkAttached checks that the daemon's ebpf mode pinned one link per hook,
// each attached to the cgroup2 root.
func checkAttached(t *testing.T, ours programs) {
	t.Helper()
	if len(ours) != len(cgroupHooks) {
		t.Errorf("the daemon pinned %d links (%v), want %d", len(ours), ours, len(cgroupHooks))
	}
	attached := rootPrograms(t)
	for id, name := range ours {
		if _, ok := attached[id]; !ok {
			t.Errorf("pinned %s (program %d) is not attached to the cgroup2 root", name, id)
		}
	}
}

// checkNothingLeft runs after the run's cleanups: no daemon process, no
// namespace, /etc/netns entry, temporary directory, BPF pin or cgroup
// attachment of the run may remain.
func checkNothingLeft(t *testing.T, w *world, ours programs) {
	t.Helper()
	for i, d := range w.runs {
		select {
		case <-d.Exited():
		default:
			t.Errorf("daemon run %d (pid %d) still running", i+1, d.Pid())
		}
	}
	entries, err := os.ReadDir(netsetup.NetnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), testenv.Prefix+w.env.ID()) {
			t.Errorf("namespace %s remains", e.Name())
		}
	}
	for _, path := range []string{w.env.NetnsEtcDir(), w.dir, w.pinDir} {
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s remains (stat: %v)", path, err)
		}
	}
	attached := rootPrograms(t)
	for id, name := range ours {
		if _, ok := attached[id]; ok {
			t.Errorf("%s (program %d) is still attached to the cgroup2 root", name, id)
		}
	}
}

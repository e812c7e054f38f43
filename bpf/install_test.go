//go:build linux

package bpf

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// pinnedLinks maps each link pin under dir to its link and program ids.
type linkIDs struct {
	Link link.ID
	Prog ebpf.ProgramID
}

func pinnedLinks(t *testing.T, dir string) map[string]linkIDs {
	t.Helper()
	out := make(map[string]linkIDs)
	for _, a := range attachments {
		pin := filepath.Join(dir, linkPinPrefix+a.name)
		l, err := link.LoadPinnedLink(pin, nil)
		if err != nil {
			t.Fatalf("loading pinned link %s: %v", pin, err)
		}
		info, err := l.Info()
		l.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[a.name] = linkIDs{Link: info.ID, Prog: info.Program}
	}
	return out
}

// attachedOfOurs returns, per hook, how many of the given programs are attached
// to the cgroup.
func attachedOfOurs(t *testing.T, cgroup string, ours map[string]linkIDs) map[string]int {
	t.Helper()
	progs := make(map[ebpf.ProgramID]bool)
	for _, ids := range ours {
		progs[ids.Prog] = true
	}
	out := make(map[string]int)
	for _, a := range attachments {
		ids, err := attachedAt(cgroup, a.attach)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			if progs[id] {
				out[a.name]++
			}
		}
	}
	return out
}

func TestPrivilegedInstallIdempotentPersistentUninstall(t *testing.T) {
	requireRoot(t)
	root := cgroup2Root(t)
	dir := pinDir(t)
	t.Cleanup(func() { Uninstall(dir) }) // a failing test still cleans up

	ns := newNetns(t)
	ln4 := ns.listen(t, "tcp4", "127.0.0.1:0")
	dst := netip.MustParseAddrPort("198.18.0.10:443")
	lands := func(when string) {
		t.Helper()
		fd, err := ns.dial(unix.AF_INET, unix.SOCK_STREAM, dst)
		if err != nil {
			t.Fatalf("%s: connect to %s: %v, want it to land on the listener", when, dst, err)
		}
		defer unix.Close(fd)
		accept(t, ln4, localAddr(t, fd))
	}

	r1, err := Install(dir, root, nil)
	if err != nil {
		t.Fatalf("first Install: %v", err)
	}
	if err := r1.Register(ns.cookie, Listeners{Port4: port(ln4)}); err != nil {
		t.Fatal(err)
	}
	first := pinnedLinks(t, dir)
	if err := r1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	lands("after the installing process let go")

	// A second Install (a restarted daemon) reuses maps and links.
	r2, err := Install(dir, root, nil)
	if err != nil {
		t.Fatalf("second Install: %v", err)
	}
	defer r2.Close()
	second := pinnedLinks(t, dir)
	for name, ids := range second {
		if ids.Link != first[name].Link {
			t.Errorf("%s: link %d replaced by %d, want it updated in place",
				name, first[name].Link, ids.Link)
		}
		if ids.Prog == first[name].Prog {
			t.Errorf("%s: still runs program %d, want the newly loaded one", name, ids.Prog)
		}
	}
	once := make(map[string]int)
	for _, a := range attachments {
		once[a.name] = 1
	}
	if diff := cmp.Diff(once, attachedOfOurs(t, root, second)); diff != "" {
		t.Errorf("programs of ours attached per hook (-want +got):\n%s", diff)
	}
	got, err := r2.Registered()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[uint64]Listeners{ns.cookie: {Port4: port(ln4)}}, got); diff != "" {
		t.Errorf("registrations after reinstall (-want +got):\n%s", diff)
	}
	lands("after reinstall")

	// Uninstall while a daemon (r2) still holds the links open: they must be
	// detached all the same.
	if err := Uninstall(dir); err != nil {
		t.Fatalf("Uninstall: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin directory after Uninstall: %v, want it gone", err)
	}
	if diff := cmp.Diff(map[string]int{}, attachedOfOurs(t, root, second)); diff != "" {
		t.Errorf("programs of ours still attached (-want +got):\n%s", diff)
	}
	fd, err := ns.dial(unix.AF_INET, unix.SOCK_STREAM, dst)
	if err == nil {
		unix.Close(fd)
	}
	if !errors.Is(err, unix.ENETUNREACH) {
		t.Errorf("connect after Uninstall = %v, want ENETUNREACH (direct behaviour)", err)
	}
	if err := Uninstall(dir); err != nil {
		t.Errorf("second Uninstall = %v, want nil", err)
	}
}

func TestPrivilegedUninstallLeavesNoLinks(t *testing.T) {
	requireRoot(t)
	dir := pinDir(t)
	r, err := Install(dir, cgroup2Root(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	ours := pinnedLinks(t, dir)
	r.Close()
	if err := Uninstall(dir); err != nil {
		t.Fatalf("Uninstall: %v", err)
	}

	for name, ids := range ours {
		if l, err := link.NewFromID(ids.Link); err == nil {
			l.Close()
			t.Errorf("%s: link %d still exists after Uninstall", name, ids.Link)
		}
		if p, err := ebpf.NewProgramFromID(ids.Prog); err == nil {
			p.Close()
			t.Errorf("%s: program %d still loaded after Uninstall", name, ids.Prog)
		}
	}
}

func TestInstallRejectsBadInput(t *testing.T) {
	notBPFFS := t.TempDir()
	tests := []struct {
		name        string
		pinDir, cg  string
		ports       []uint16
		wantMessage string
	}{
		{"port 0", notBPFFS, notBPFFS, []uint16{443, 0}, "port 0"},
		{"no ports", notBPFFS, notBPFFS, []uint16{}, "at least one"},
		{"too many ports", notBPFFS, notBPFFS, make([]uint16, 65), "at most 64"},
		{"not cgroup2", notBPFFS, notBPFFS, nil, "not a cgroup2 directory"},
		{"pin dir not on bpffs", filepath.Join(notBPFFS, "pins"), cgroup2Root(t),
			nil, "not on a bpf filesystem"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Install(tt.pinDir, tt.cg, tt.ports)
			if err == nil {
				r.Close()
				t.Fatal("Install succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.wantMessage) {
				t.Errorf("Install error = %q, want it to mention %q", err, tt.wantMessage)
			}
		})
	}
}

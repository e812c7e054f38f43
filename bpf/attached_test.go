//go:build linux

package bpf

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/go-cmp/cmp"
)

func TestPrivilegedAttachedAndPinnedPrograms(t *testing.T) {
	requireRoot(t)
	root := cgroup2Root(t)
	dir := pinDir(t)
	r := install(t, dir, nil)
	r.Close()

	pinned, err := PinnedPrograms(dir)
	if err != nil {
		t.Fatalf("PinnedPrograms: %v", err)
	}
	var wantPins, gotPins []string
	for _, a := range attachments {
		wantPins = append(wantPins, linkPinPrefix+a.name)
	}
	for _, name := range pinned {
		gotPins = append(gotPins, name)
	}
	slices.Sort(wantPins)
	slices.Sort(gotPins)
	if diff := cmp.Diff(wantPins, gotPins); diff != "" {
		t.Errorf("PinnedPrograms pin names (-want +got):\n%s", diff)
	}

	attached, err := AttachedPrograms(root)
	if err != nil {
		t.Fatalf("AttachedPrograms: %v", err)
	}
	want := make(map[ebpf.ProgramID]string)
	for id, pin := range pinned {
		want[id] = pin[len(linkPinPrefix):]
	}
	if diff := cmp.Diff(want, ours(attached, pinned)); diff != "" {
		t.Errorf("our programs attached to %s (-want +got):\n%s", root, diff)
	}

	if err := Uninstall(dir); err != nil {
		t.Fatalf("Uninstall: %v", err)
	}
	attached, err = AttachedPrograms(root)
	if err != nil {
		t.Fatalf("AttachedPrograms after Uninstall: %v", err)
	}
	if got := ours(attached, pinned); len(got) != 0 {
		t.Errorf("programs still attached after Uninstall: %v", got)
	}
	if got, err := PinnedPrograms(dir); err != nil || len(got) != 0 {
		t.Errorf("PinnedPrograms after Uninstall = %v, %v; want none, nil", got, err)
	}
}

func TestAttachedProgramsRejectsMissingCgroup(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-cgroup")
	if got, err := AttachedPrograms(missing); err == nil {
		t.Errorf("AttachedPrograms(%s) = %v, nil; want an error", missing, got)
	}
}

// ours keeps the entries of attached whose ids are in pinned.
func ours(attached, pinned map[ebpf.ProgramID]string) map[ebpf.ProgramID]string {
	out := make(map[ebpf.ProgramID]string)
	for id, name := range attached {
		if _, ok := pinned[id]; ok {
			out[id] = name
		}
	}
	return out
}

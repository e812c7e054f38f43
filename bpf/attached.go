//go:build linux

package bpf

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// AttachedPrograms returns the programs named hermes_* attached to the cgroup2
// directory cgroupRoot at the hooks Install uses, by id with the name the
// kernel reports. Programs of any pin directory count, so a caller tells its
// own apart by the ids PinnedPrograms returns.
func AttachedPrograms(cgroupRoot string) (map[ebpf.ProgramID]string, error) {
	out := make(map[ebpf.ProgramID]string)
	for _, a := range attachments {
		ids, err := attachedAt(cgroupRoot, a.attach)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			p, err := ebpf.NewProgramFromID(id)
			if err != nil {
				continue // detached meanwhile
			}
			info, err := p.Info()
			p.Close()
			if err == nil && strings.HasPrefix(info.Name, "hermes_") {
				out[id] = info.Name
			}
		}
	}
	return out, nil
}

// attachedAt returns the ids of the programs attached to the cgroup at hook,
// once per attachment.
func attachedAt(cgroup string, hook ebpf.AttachType) ([]ebpf.ProgramID, error) {
	f, err := os.Open(cgroup)
	if err != nil {
		return nil, fmt.Errorf("opening cgroup %s: %w", cgroup, err)
	}
	defer f.Close()

	res, err := link.QueryPrograms(link.QueryOptions{Target: int(f.Fd()), Attach: hook})
	if err != nil {
		return nil, fmt.Errorf("querying the %s programs of cgroup %s: %w", hook, cgroup, err)
	}
	ids := make([]ebpf.ProgramID, 0, len(res.Programs))
	for _, p := range res.Programs {
		ids = append(ids, p.ID)
	}
	return ids, nil
}

// PinnedPrograms returns the programs behind the links pinned in pinDir, by id
// with the link's pin name. A missing directory has none.
func PinnedPrograms(pinDir string) (map[ebpf.ProgramID]string, error) {
	paths, err := filepath.Glob(filepath.Join(pinDir, linkPinPrefix+"*"))
	if err != nil {
		return nil, fmt.Errorf("listing the links pinned in %s: %w", pinDir, err)
	}
	out := make(map[ebpf.ProgramID]string)
	for _, path := range paths {
		l, err := link.LoadPinnedLink(path, nil)
		if err != nil {
			return nil, fmt.Errorf("loading pinned link %s: %w", path, err)
		}
		info, err := l.Info()
		l.Close()
		if err != nil {
			return nil, fmt.Errorf("reading pinned link %s: %w", path, err)
		}
		out[info.Program] = filepath.Base(path)
	}
	return out, nil
}

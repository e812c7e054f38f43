//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// DefaultPinDir is where the daemon pins its maps and links.
const DefaultPinDir = "/sys/fs/bpf/hermes"

// linkPinPrefix starts the file name of every pinned link; maps are pinned under
// their own names, which all start with "hermes_".
const linkPinPrefix = "link_"

// Redirector is an installed set of redirect programs: open handles on the pinned
// maps and links. Its methods other than Close are safe for concurrent use.
type Redirector struct {
	pinDir string
	objs   hermesObjects
	links  []link.Link
}

// attachment is one program and the cgroup hook it is attached to.
type attachment struct {
	attach ebpf.AttachType
	prog   func(*hermesObjects) *ebpf.Program
	name   string
}

var attachments = []attachment{
	{ebpf.AttachCGroupInet4Connect, func(o *hermesObjects) *ebpf.Program {
		return o.HermesConnect4
	}, hermesProgHermesConnect4},
	{ebpf.AttachCGroupInet6Connect, func(o *hermesObjects) *ebpf.Program {
		return o.HermesConnect6
	}, hermesProgHermesConnect6},
	{ebpf.AttachCGroupUDP4Sendmsg, func(o *hermesObjects) *ebpf.Program {
		return o.HermesSendmsg4
	}, hermesProgHermesSendmsg4},
	{ebpf.AttachCGroupUDP6Sendmsg, func(o *hermesObjects) *ebpf.Program {
		return o.HermesSendmsg6
	}, hermesProgHermesSendmsg6},
	{ebpf.AttachCGroupSockOps, func(o *hermesObjects) *ebpf.Program {
		return o.HermesSockops
	}, hermesProgHermesSockops},
	{ebpf.AttachCGroupGetsockopt, func(o *hermesObjects) *ebpf.Program {
		return o.HermesOrigdst
	}, hermesProgHermesOrigdst},
}

// Install loads the redirect programs, attaches them to the cgroup2 hierarchy at
// cgroupRoot (normally its root, so that every socket of the machine is seen) and
// pins maps and links under pinDir, which must lie on a bpf filesystem.
//
// Install is idempotent: maps already pinned under pinDir are reused with their
// contents (registered namespaces survive a daemon restart), and links already
// pinned there are updated in place with the freshly loaded programs instead of
// being attached a second time. ports replaces the set of intercepted TCP/UDP
// destination ports; nil means {443}.
//
// The returned Redirector holds file descriptors only: closing it, or the process
// exiting, leaves interception in place. Uninstall removes it.
func Install(pinDir, cgroupRoot string, ports []uint16) (*Redirector, error) {
	if ports == nil {
		ports = []uint16{443}
	}
	if err := checkPorts(ports); err != nil {
		return nil, err
	}
	if err := checkCgroup2(cgroupRoot); err != nil {
		return nil, err
	}
	if err := ensurePinDir(pinDir); err != nil {
		return nil, err
	}

	r := &Redirector{pinDir: pinDir}
	if err := r.load(); err != nil {
		return nil, err
	}
	if err := r.SetPorts(ports); err != nil {
		r.Close()
		return nil, err
	}

	for _, a := range attachments {
		l, err := ensureLink(pinDir, cgroupRoot, a, a.prog(&r.objs))
		if err != nil {
			r.Close()
			return nil, err
		}
		r.links = append(r.links, l)
	}
	return r, nil
}

// load loads the programs, creating the maps or reusing those pinned in r.pinDir.
func (r *Redirector) load() error {
	spec, err := loadHermes()
	if err != nil {
		return err
	}

	// The getsockopt program must know how much of a caller's buffer the kernel
	// lets it see, which is one page (see hermes_origdst in redirect.c).
	pageSize := uint32(os.Getpagesize())
	if err := spec.Variables[hermesVarHermesPageSize].Set(pageSize); err != nil {
		return fmt.Errorf("setting page size: %w", err)
	}

	opts := &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: r.pinDir}}
	if err := spec.LoadAndAssign(&r.objs, opts); err != nil {
		if errors.Is(err, ebpf.ErrMapIncompatible) {
			return fmt.Errorf("loading BPF objects: maps pinned in %s come from another "+
				"version; run uninstall first: %w", r.pinDir, err)
		}
		return fmt.Errorf("loading BPF objects: %w", err)
	}
	return nil
}

// ensureLink returns the link of a pinned under pinDir, updated to run prog, or
// attaches prog to the cgroup and pins the new link.
func ensureLink(pinDir, cgroup string, a attachment, prog *ebpf.Program) (link.Link, error) {
	pin := filepath.Join(pinDir, linkPinPrefix+a.name)

	l, err := link.LoadPinnedLink(pin, nil)
	if err == nil {
		return updateLink(l, pin, cgroup, a, prog)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("loading pinned link %s: %w", pin, err)
	}

	l, err = link.AttachCgroup(link.CgroupOptions{Path: cgroup, Attach: a.attach, Program: prog})
	if err != nil {
		return nil, fmt.Errorf("attaching %s to cgroup %s: %w", a.name, cgroup, err)
	}
	if err := l.Pin(pin); err != nil {
		// Closing an unpinned link detaches it again.
		l.Close()
		return nil, fmt.Errorf("pinning %s (cgroup BPF links need Linux 5.7): %w", pin, err)
	}
	return l, nil
}

// updateLink swaps prog into a pinned link after checking that the link is the
// one expected: same hook, same cgroup.
func updateLink(l link.Link, pin, cgroup string, a attachment,
	prog *ebpf.Program) (link.Link, error) {
	info, err := l.Info()
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("reading pinned link %s: %w", pin, err)
	}
	want, err := cgroupID(cgroup)
	if err != nil {
		l.Close()
		return nil, err
	}
	cg := info.Cgroup()
	if cg == nil || cg.CgroupId != want || ebpf.AttachType(cg.AttachType) != a.attach {
		l.Close()
		return nil, fmt.Errorf("pinned link %s is not attached to %s as %s; "+
			"run uninstall on %s first", pin, cgroup, a.attach, filepath.Dir(pin))
	}

	if err := l.Update(prog); err != nil {
		l.Close()
		return nil, fmt.Errorf("updating pinned link %s: %w", pin, err)
	}
	return l, nil
}

// Close releases the Redirector's file descriptors. Maps and links stay pinned,
// so interception goes on.
func (r *Redirector) Close() error {
	var errs []error
	for _, l := range r.links {
		errs = append(errs, l.Close())
	}
	r.links = nil
	errs = append(errs, r.objs.hermesPrograms.Close(), r.objs.hermesMaps.Close())
	return errors.Join(errs...)
}

// PinDir returns the directory the Redirector's maps and links are pinned in.
func (r *Redirector) PinDir() string { return r.pinDir }

// Uninstall detaches the links pinned under pinDir and removes every pin of ours
// there, then the directory itself. A missing directory is not an error; teardown
// goes on after a failure and reports all of them.
func Uninstall(pinDir string) error {
	entries, err := os.ReadDir(pinDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading pin directory %s: %w", pinDir, err)
	}

	var errs []error
	for _, e := range entries {
		if !isOurs(e.Name()) {
			continue
		}
		errs = append(errs, removePin(filepath.Join(pinDir, e.Name()), e.Name()))
	}
	if err := os.Remove(pinDir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("removing pin directory %s: %w", pinDir, err))
	}
	return errors.Join(errs...)
}

func isOurs(name string) bool {
	return strings.HasPrefix(name, linkPinPrefix+"hermes_") || strings.HasPrefix(name, "hermes_")
}

// removePin detaches a pinned link before unlinking its pin: another process (a
// daemon still running) may hold the link open, which would otherwise keep it
// attached.
func removePin(path, name string) error {
	if strings.HasPrefix(name, linkPinPrefix) {
		l, err := link.LoadPinnedLink(path, nil)
		if err != nil {
			return fmt.Errorf("loading pinned link %s: %w", path, err)
		}
		defer l.Close()
		if err := l.Detach(); err != nil && !errors.Is(err, link.ErrNotSupported) {
			return fmt.Errorf("detaching %s: %w", path, err)
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("unpinning %s: %w", path, err)
	}
	return nil
}

// ensurePinDir checks that pinDir lies on a bpf filesystem and creates it.
func ensurePinDir(pinDir string) error {
	existing := filepath.Clean(pinDir)
	for {
		if _, err := os.Stat(existing); err == nil {
			break
		}
		parent := filepath.Dir(existing)
		if parent == existing {
			break
		}
		existing = parent
	}

	var st unix.Statfs_t
	if err := unix.Statfs(existing, &st); err != nil {
		return fmt.Errorf("checking pin directory %s: %w", pinDir, err)
	}
	if st.Type != unix.BPF_FS_MAGIC {
		return fmt.Errorf("pin directory %s is not on a bpf filesystem; "+
			"mount one first (mount -t bpf bpf /sys/fs/bpf)", pinDir)
	}
	if err := os.MkdirAll(pinDir, 0o700); err != nil {
		return fmt.Errorf("creating pin directory %s: %w", pinDir, err)
	}
	return nil
}

// checkCgroup2 makes sure path is a directory of the cgroup2 hierarchy: on hybrid
// hosts /sys/fs/cgroup is cgroup v1 and attaching there fails obscurely.
func checkCgroup2(path string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return fmt.Errorf("checking cgroup %s: %w", path, err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		return fmt.Errorf("%s is not a cgroup2 directory; pass the cgroup2 mount "+
			"from /proc/self/mountinfo (on hybrid hosts /sys/fs/cgroup/unified)", path)
	}
	return nil
}

// cgroupID returns the id the kernel gives the cgroup2 directory at path, which
// is its inode number.
func cgroupID(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("reading cgroup id of %s: %w", path, err)
	}
	return st.Ino, nil
}

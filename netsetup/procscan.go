//go:build linux

package netsetup

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// A network namespace lives as long as anything holds it: a process or thread
// that has it as its network namespace, a bind mount of it (`ip netns add`), an
// open file descriptor of it, or a socket made inside it. Only the first two
// can be found from outside, so they are what FindByInode and InUse look for.
// That is not everything that can make traffic: a socket made inside the
// namespace can still connect (a process may make one, then unshare into a new
// namespace and keep it), and a file descriptor of it can be entered again with
// setns. So "not in use" here means "no holder found", never "freed": callers
// keep a namespace's redirect until they know it is gone. A namespace whose
// name (or pid:N process) is gone may still be very much in use by other
// processes.
//
// Identity is the nsfs inode, as readlink(/proc/PID/ns/net) prints it
// ("net:[4026532281]"): all network namespaces live on the one nsfs instance,
// so the inode alone tells them apart while they exist. Inodes are reused after
// a namespace dies, so callers that remember one across time also compare the
// namespace's cookie.

// FindByInode opens the live network namespace whose nsfs inode is ino through
// whatever holds it: a bind mount listed in /proc/self/mountinfo, a process or a
// thread in it (/proc/PID/ns/net, /proc/PID/task/TID/ns/net), or a bind mount in
// another process's mount namespace. The NS's spec is the path it was opened
// by. When nothing holds it, the error wraps ErrNotFound: the namespace is gone,
// or held only by open file descriptors or sockets.
func FindByInode(ino uint64) (*NS, error) {
	var found *NS
	var lastErr error
	ok, err := procScan{root: "/proc"}.find(ino, func(path string) bool {
		ns, err := Open(path)
		if err != nil {
			lastErr = err // the holder exited between the scan and the open
			return false
		}
		if ns.Inode() != ino {
			ns.Close() // pid reused by a process in another namespace
			return false
		}
		found = ns
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("finding netns inode %d: %w", ino, err)
	}
	if !ok {
		if lastErr != nil {
			return nil, fmt.Errorf("finding netns inode %d: %w (last try: %v)",
				ino, ErrNotFound, lastErr)
		}
		return nil, fmt.Errorf("finding netns inode %d: %w (no process, thread or "+
			"bind mount holds it)", ino, ErrNotFound)
	}
	return found, nil
}

// InUse reports whether the network namespace with nsfs inode ino is still the
// namespace of a process or thread, or bind-mounted. False does not mean no
// traffic can be made in it any more: see above. It scans until the first
// holder, so a namespace in use is usually answered after a few entries; a
// namespace that is gone costs one pass over /proc.
func InUse(ino uint64) (bool, error) {
	ok, err := procScan{root: "/proc"}.find(ino, func(string) bool { return true })
	if err != nil {
		return false, fmt.Errorf("looking for holders of netns inode %d: %w", ino, err)
	}
	return ok, nil
}

// procScan looks through a /proc tree (a fake one in unit tests).
type procScan struct{ root string }

// find calls accept with the path of each holder of the namespace ino, in order
// of cost: bind mounts of our mount namespace, processes, their other threads,
// bind mounts in other mount namespaces. It stops at the first path accept
// takes and reports whether there was one. Processes that exit during the scan
// are skipped.
func (p procScan) find(ino uint64, accept func(path string) bool) (bool, error) {
	self := filepath.Join(p.root, "self")
	mounts, err := p.nsfsMounts(filepath.Join(self, "mountinfo"), ino)
	if err != nil {
		return false, err
	}
	for _, m := range mounts {
		if accept(m) {
			return true, nil
		}
	}

	pids, err := p.pids()
	if err != nil {
		return false, err
	}
	for _, pid := range pids {
		path := filepath.Join(p.root, pid, "ns", "net")
		if linkInode(path, "net") == ino && accept(path) {
			return true, nil
		}
	}

	for _, pid := range pids {
		tasks, err := os.ReadDir(filepath.Join(p.root, pid, "task"))
		if err != nil {
			continue // exited
		}
		for _, t := range tasks {
			if t.Name() == pid {
				continue // the main thread, seen above
			}
			path := filepath.Join(p.root, pid, "task", t.Name(), "ns", "net")
			if linkInode(path, "net") == ino && accept(path) {
				return true, nil
			}
		}
	}

	// Bind mounts made in other mount namespaces (containers, `unshare -m`)
	// are only visible through a process of that mount namespace.
	seen := map[uint64]bool{linkInode(filepath.Join(self, "ns", "mnt"), "mnt"): true}
	for _, pid := range pids {
		mnt := linkInode(filepath.Join(p.root, pid, "ns", "mnt"), "mnt")
		if mnt == 0 || seen[mnt] {
			continue
		}
		seen[mnt] = true
		mounts, err := p.nsfsMounts(filepath.Join(p.root, pid, "mountinfo"), ino)
		if err != nil {
			continue // exited, or not readable
		}
		for _, m := range mounts {
			if path := filepath.Join(p.root, pid, "root", m); accept(path) {
				return true, nil
			}
		}
	}
	return false, nil
}

// pids lists the numeric entries of the /proc root.
func (p procScan) pids() ([]string, error) {
	entries, err := os.ReadDir(p.root)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", p.root, err)
	}
	var pids []string
	for _, e := range entries {
		if _, err := strconv.ParseUint(e.Name(), 10, 32); err == nil {
			pids = append(pids, e.Name())
		}
	}
	return pids, nil
}

// nsfsMounts returns the mount points in a mountinfo file that are bind mounts
// of network namespace ino (filesystem nsfs, root "net:[ino]").
func (p procScan) nsfsMounts(mountinfo string, ino uint64) ([]string, error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return nil, fmt.Errorf("reading mounts: %w", err)
	}
	defer f.Close()

	want := "net:[" + strconv.FormatUint(ino, 10) + "]"
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
		line := sc.Text()
		pre, post, ok := strings.Cut(line, " - ")
		if !ok || !strings.HasPrefix(post, "nsfs ") {
			continue
		}
		fields := strings.Fields(pre)
		if len(fields) < 5 || fields[3] != want {
			continue
		}
		out = append(out, unescapeOctal(fields[4]))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", mountinfo, err)
	}
	return out, nil
}

// linkInode reads a /proc namespace link ("net:[4026532281]") and returns its
// inode, or 0 when the link is missing (the task exited) or of another kind.
func linkInode(path, kind string) uint64 {
	target, err := os.Readlink(path)
	if err != nil {
		return 0 // ENOENT or ESRCH: exited; EACCES: not one we could open either
	}
	rest, ok := strings.CutPrefix(target, kind+":[")
	if !ok || !strings.HasSuffix(rest, "]") {
		return 0
	}
	ino, err := strconv.ParseUint(strings.TrimSuffix(rest, "]"), 10, 64)
	if err != nil {
		return 0
	}
	return ino
}

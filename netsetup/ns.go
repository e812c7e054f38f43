//go:build linux

package netsetup

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrNotFound says that the network namespace named by a spec does not exist.
var ErrNotFound = errors.New("network namespace not found")

// NetnsDir is where `ip netns add NAME` bind-mounts named namespaces.
const NetnsDir = "/var/run/netns"

// NS is an open network namespace. It holds a file descriptor, so the namespace
// stays alive while the NS is open even if its name is deleted.
type NS struct {
	fd   int
	spec string
	dev  uint64
	ino  uint64
}

// Open opens a network namespace. spec is a name under /var/run/netns ("sb1"), an
// absolute path to a namespace file (/proc/PID/ns/net or any bind mount of one), or
// "pid:N" for the namespace of process N. A missing namespace gives an error wrapping
// ErrNotFound; a file that is not a network namespace gives an error saying so.
func Open(spec string) (*NS, error) {
	path, err := specPath(spec)
	if err != nil {
		return nil, err
	}

	// A namespace file is a regular file on nsfs. Anything else is refused
	// before it is opened: opening a FIFO blocks until a writer comes, and
	// opening a device can have effects of its own. O_NONBLOCK covers a path
	// swapped for a FIFO between the two calls.
	var st unix.Stat_t
	err = unix.Stat(path, &st)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
		return nil, fmt.Errorf("opening netns %s: %w (no %s)", spec, ErrNotFound, path)
	}
	if err != nil {
		return nil, fmt.Errorf("opening netns %s: %w", spec, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("opening netns %s: %s is not a network namespace file "+
			"(give a name under %s, /proc/PID/ns/net or pid:PID)", spec, path, NetnsDir)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
		return nil, fmt.Errorf("opening netns %s: %w (no %s)", spec, ErrNotFound, path)
	}
	if err != nil {
		return nil, fmt.Errorf("opening netns %s: %w", spec, err)
	}

	ns := &NS{fd: fd, spec: spec}
	if err := ns.validate(path); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("opening netns %s: %w", spec, err)
	}
	return ns, nil
}

// specPath maps a spec to the file that holds the namespace.
func specPath(spec string) (string, error) {
	switch {
	case spec == "":
		return "", errors.New("opening netns: empty spec; give a name under " +
			NetnsDir + ", a path such as /proc/PID/ns/net, or pid:N")
	case strings.HasPrefix(spec, "pid:"):
		pid, err := strconv.Atoi(strings.TrimPrefix(spec, "pid:"))
		if err != nil || pid <= 0 {
			return "", fmt.Errorf("opening netns %s: pid must be a positive number, "+
				"as in pid:1234", spec)
		}
		return fmt.Sprintf("/proc/%d/ns/net", pid), nil
	case strings.HasPrefix(spec, "/"):
		return filepath.Clean(spec), nil
	case strings.ContainsRune(spec, '/') || spec == "." || spec == "..":
		return "", fmt.Errorf("opening netns %s: a name may not contain '/' "+
			"(use an absolute path for a file elsewhere)", spec)
	default:
		return filepath.Join(NetnsDir, spec), nil
	}
}

// validate checks that fd refers to a network namespace and records its identity.
func (n *NS) validate(path string) error {
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(n.fd, &sfs); err != nil {
		return fmt.Errorf("statfs %s: %w", path, err)
	}
	// A name whose bind mount went away is an empty file on tmpfs, not nsfs.
	if sfs.Type != unix.NSFS_MAGIC {
		return fmt.Errorf("%s is not a namespace file (not on nsfs); "+
			"was the namespace deleted or its bind mount removed?", path)
	}

	typ, err := unix.IoctlRetInt(n.fd, unix.NS_GET_NSTYPE)
	if err != nil {
		return fmt.Errorf("reading namespace type of %s: %w", path, err)
	}
	if typ != unix.CLONE_NEWNET {
		return fmt.Errorf("%s is a namespace but not a network namespace", path)
	}

	var st unix.Stat_t
	if err := unix.Fstat(n.fd, &st); err != nil {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	n.dev, n.ino = st.Dev, st.Ino
	return nil
}

// Close closes the namespace's file descriptor. The namespace itself lives on as
// long as something else (a process, a bind mount) holds it.
func (n *NS) Close() error {
	if n.fd < 0 {
		return nil
	}
	err := unix.Close(n.fd)
	n.fd = -1
	if err != nil {
		return fmt.Errorf("closing netns %s: %w", n.spec, err)
	}
	return nil
}

// Spec is the spec the namespace was opened with.
func (n *NS) Spec() string { return n.spec }

// SetSpec renames n in Spec, logs and errors. A namespace found by FindByInode
// is opened through a /proc path; its caller names it as it knows it.
func (n *NS) SetSpec(spec string) { n.spec = spec }

// Fd is the namespace's file descriptor, valid until Close.
func (n *NS) Fd() int { return n.fd }

// Inode is the namespace's inode number on nsfs: its identity while it exists
// (the same one `ip netns identify` and /proc/PID/ns/net report).
func (n *NS) Inode() uint64 { return n.ino }

// Do runs fn on an OS thread that has entered n, then returns the thread to the
// namespace it came from. fn runs on a fresh goroutine locked to its thread, so a
// caller's own thread locking is never disturbed. If the thread cannot switch back,
// its goroutine exits still locked and the Go runtime terminates the thread instead
// of reusing it: no thread is ever returned to the pool in the wrong namespace.
//
// Sockets created by fn belong to n for their whole life and may be used from any
// goroutine afterwards. Goroutines started by fn do not run inside n.
func (n *NS) Do(fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		done <- n.doLocked(fn)
	}()
	return <-done
}

// doLocked does the work of Do on a locked thread. It unlocks the thread only when
// the thread is back in its original namespace.
func (n *NS) doLocked(fn func() error) error {
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("opening current netns: %w", err)
	}
	defer unix.Close(orig)

	if err := unix.Setns(n.fd, unix.CLONE_NEWNET); err != nil {
		// Setns failing leaves the thread where it was, so it may be reused.
		runtime.UnlockOSThread()
		return fmt.Errorf("entering netns %s: %w", n.spec, err)
	}

	ferr := fn()

	if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
		// Stay locked: the goroutine ends and the runtime kills this thread.
		return errors.Join(ferr, fmt.Errorf("returning from netns %s: %w", n.spec, err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// String returns the spec, for logs.
func (n *NS) String() string { return n.spec }

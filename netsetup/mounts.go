//go:build linux

package netsetup

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// BPFFSRoot is where bpffs is mounted on every common distribution.
const BPFFSRoot = "/sys/fs/bpf"

// Mount is one line of /proc/self/mountinfo, reduced to what this package needs.
type Mount struct {
	Root       string // path inside the filesystem that is mounted
	MountPoint string
	FSType     string
}

// Cgroup2Root returns the mount point of the cgroup2 hierarchy's root, read from
// /proc/self/mountinfo. On unified hosts it is /sys/fs/cgroup; on hybrid hosts it
// is usually /sys/fs/cgroup/unified.
func Cgroup2Root() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("finding cgroup2 mount: %w", err)
	}
	defer f.Close()
	return cgroup2RootOf(f)
}

// cgroup2RootOf finds the cgroup2 root mount in a mountinfo text.
func cgroup2RootOf(r io.Reader) (string, error) {
	mounts, err := ParseMountinfo(r)
	if err != nil {
		return "", fmt.Errorf("finding cgroup2 mount: %w", err)
	}
	return cgroup2Root(mounts)
}

// cgroup2Root picks the first cgroup2 mount of the hierarchy's root. A mount of a
// sub-cgroup (root other than "/", as a bind mount or a container's view shows)
// cannot reach every process, so it does not count.
func cgroup2Root(mounts []Mount) (string, error) {
	for _, m := range mounts {
		if m.FSType == "cgroup2" && m.Root == "/" {
			return m.MountPoint, nil
		}
	}
	return "", errors.New("no cgroup2 root mount in /proc/self/mountinfo; " +
		"mount one (mount -t cgroup2 none /sys/fs/cgroup/unified) or use --mode nft")
}

// ParseMountinfo parses the format of /proc/PID/mountinfo (proc(5)).
func ParseMountinfo(r io.Reader) ([]Mount, error) {
	var mounts []Mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for line := 1; sc.Scan(); line++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		m, err := parseMountinfoLine(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("mountinfo line %d: %w", line, err)
		}
		mounts = append(mounts, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading mountinfo: %w", err)
	}
	return mounts, nil
}

// parseMountinfoLine parses
// "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue":
// six fixed fields, optional fields up to a lone "-", then type, source, options.
func parseMountinfoLine(s string) (Mount, error) {
	fields := strings.Fields(s)
	sep := -1
	for i := 6; i < len(fields); i++ {
		if fields[i] == "-" {
			sep = i
			break
		}
	}
	if len(fields) < 7 || sep < 0 || sep+1 >= len(fields) {
		return Mount{}, fmt.Errorf("malformed line %q", s)
	}
	return Mount{
		Root:       unescapeOctal(fields[3]),
		MountPoint: unescapeOctal(fields[4]),
		FSType:     fields[sep+1],
	}, nil
}

// unescapeOctal undoes the kernel's \NNN escaping of space, tab, newline and '\'.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// EnsureBPFFS makes sure bpffs is mounted on /sys/fs/bpf (mounting it if not) and
// that dir, which must lie on a bpffs, exists.
func EnsureBPFFS(dir string) error {
	mounted, err := isBPFFS(BPFFSRoot)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("checking bpffs on %s: %w", BPFFSRoot, err)
	}
	if !mounted {
		if err := os.MkdirAll(BPFFSRoot, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", BPFFSRoot, err)
		}
		if err := unix.Mount("bpffs", BPFFSRoot, "bpf", 0, "mode=0700"); err != nil {
			return fmt.Errorf("mounting bpffs on %s: %w", BPFFSRoot, err)
		}
	}

	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating pin dir %s: %w", dir, err)
	}
	ok, err := isBPFFS(dir)
	if err != nil {
		return fmt.Errorf("checking pin dir %s: %w", dir, err)
	}
	if !ok {
		return fmt.Errorf("pin dir %s is not on bpffs; choose a dir under %s",
			filepath.Clean(dir), BPFFSRoot)
	}
	return nil
}

// isBPFFS reports whether path lies on a bpf filesystem.
func isBPFFS(path string) (bool, error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(path, &sfs); err != nil {
		return false, err
	}
	return sfs.Type == unix.BPF_FS_MAGIC, nil
}

//go:build linux

package netsetup

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeProc builds a /proc tree: links maps paths below the root to link
// targets ("net:[N]"), files maps paths to contents.
func fakeProc(t *testing.T, links, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, target := range links {
		path := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, path); err != nil {
			t.Fatal(err)
		}
	}
	for p, content := range files {
		path := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const selfMounts = `22 1 0:21 / /proc rw,nosuid - proc proc rw
610 25 0:4 net:[4026532500] /run/netns/sb1 rw shared:5 - nsfs nsfs rw
611 25 0:4 net:[4026532501] /run/netns/with\040space rw shared:5 - nsfs nsfs rw
612 25 0:4 mnt:[4026532500] /run/other rw - nsfs nsfs rw
`

func TestProcScanFind(t *testing.T) {
	root := fakeProc(t, map[string]string{
		"self/ns/mnt":          "mnt:[4026531841]",
		"100/ns/net":           "net:[4026531840]",
		"100/ns/mnt":           "mnt:[4026531841]",
		"100/task/100/ns/net":  "net:[4026531840]",
		"200/ns/net":           "net:[4026532600]",
		"200/ns/mnt":           "mnt:[4026531841]",
		"200/task/200/ns/net":  "net:[4026532600]",
		"300/ns/net":           "net:[4026531840]",
		"300/ns/mnt":           "mnt:[4026531841]",
		"300/task/300/ns/net":  "net:[4026531840]",
		"300/task/301/ns/net":  "net:[4026532700]", // a thread that setns()ed
		"400/ns/net":           "net:[4026531840]",
		"400/ns/mnt":           "mnt:[4026532900]", // another mount namespace
		"400/task/400/ns/net":  "net:[4026531840]",
		"500/ns/net":           "net:[4026532600]",
		"500/ns/mnt":           "mnt:[4026531841]",
		"notapid/ns/net":       "net:[4026532800]",
		"600/task/600/ns/net1": "net:[4026532800]",
	}, map[string]string{
		"self/mountinfo": selfMounts,
		"400/mountinfo":  "700 1 0:4 net:[4026532800] /var/lib/ctr/netns rw - nsfs nsfs rw\n",
	})
	scan := procScan{root: root}

	tests := []struct {
		name string
		ino  uint64
		want []string // every path offered, in order, when accept takes none
	}{
		{"bind mounts", 4026532500, []string{"/run/netns/sb1"}},
		{"escaped mount point", 4026532501, []string{"/run/netns/with space"}},
		{"processes", 4026532600, []string{root + "/200/ns/net", root + "/500/ns/net"}},
		{"thread", 4026532700, []string{root + "/300/task/301/ns/net"}},
		{"other mount namespace", 4026532800,
			[]string{root + "/400/root/var/lib/ctr/netns"}},
		{"gone", 4026532999, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			ok, err := scan.find(tt.ino, func(p string) bool { got = append(got, p); return false })
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				t.Error("find reported a holder that accept refused")
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("paths offered (-want +got):\n%s", diff)
			}

			ok, err = scan.find(tt.ino, func(string) bool { return true })
			if err != nil {
				t.Fatal(err)
			}
			if ok != (len(tt.want) > 0) {
				t.Errorf("in use = %v, want %v", ok, len(tt.want) > 0)
			}
		})
	}
}

func TestProcScanStopsAtFirstAccepted(t *testing.T) {
	root := fakeProc(t, map[string]string{
		"10/ns/net": "net:[77]",
		"20/ns/net": "net:[77]",
		"30/ns/net": "net:[77]",
	}, map[string]string{"self/mountinfo": ""})
	var offered int
	ok, err := procScan{root: root}.find(77, func(string) bool { offered++; return offered == 2 })
	if err != nil || !ok {
		t.Fatalf("find = %v, %v; want true, nil", ok, err)
	}
	if offered != 2 {
		t.Errorf("offered %d paths, want 2 (stop at the first accepted)", offered)
	}
}

func TestProcScanMissingRoot(t *testing.T) {
	_, err := procScan{root: filepath.Join(t.TempDir(), "nope")}.find(1, func(string) bool {
		return true
	})
	if err == nil {
		t.Fatal("find on a missing /proc succeeded; want an error")
	}
}

func TestLinkInode(t *testing.T) {
	root := fakeProc(t, map[string]string{
		"ok":    "net:[4026531840]",
		"mnt":   "mnt:[4026531841]",
		"junk":  "net:[x]",
		"plain": "/etc/passwd",
	}, nil)
	for name, want := range map[string]uint64{"ok": 4026531840, "mnt": 0, "junk": 0,
		"plain": 0, "missing": 0} {
		if got := linkInode(filepath.Join(root, name), "net"); got != want {
			t.Errorf("linkInode(%s) = %d, want %d", name, got, want)
		}
	}
}

//go:build linux

package netsetup

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const hybridMountinfo = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
24 22 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
25 24 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:8 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,xattr,name=systemd
31 24 0:28 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:13 - bpf bpf rw,mode=700
`

const unifiedMountinfo = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`

// A container's view: its own cgroup is bind-mounted first, the root later, with
// a space in the mount point escaped as \040.
const nestedMountinfo = `22 1 8:1 / / rw - ext4 /dev/sda1 rw
40 22 0:26 /system.slice/x.scope /sys/fs/cgroup rw - cgroup2 cgroup2 rw
41 22 0:26 / /mnt/cgroup\040root rw - cgroup2 cgroup2 rw
`

func TestParseMountinfo(t *testing.T) {
	got, err := ParseMountinfo(strings.NewReader(nestedMountinfo))
	if err != nil {
		t.Fatal(err)
	}
	want := []Mount{
		{Root: "/", MountPoint: "/", FSType: "ext4"},
		{Root: "/system.slice/x.scope", MountPoint: "/sys/fs/cgroup", FSType: "cgroup2"},
		{Root: "/", MountPoint: "/mnt/cgroup root", FSType: "cgroup2"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseMountinfo (-want +got):\n%s", diff)
	}
}

func TestCgroup2RootFromMountinfo(t *testing.T) {
	tests := []struct {
		name, text, want, wantErr string
	}{
		{name: "hybrid", text: hybridMountinfo, want: "/sys/fs/cgroup/unified"},
		{name: "unified", text: unifiedMountinfo, want: "/sys/fs/cgroup"},
		{name: "sub-cgroup mount skipped", text: nestedMountinfo, want: "/mnt/cgroup root"},
		{name: "none", text: "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n",
			wantErr: "no cgroup2 root mount"},
		{name: "malformed", text: "22 1 8:1 / / rw ext4 /dev/sda1 rw\n",
			wantErr: "mountinfo line 1: malformed line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := cgroup2RootOf(strings.NewReader(tt.text))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("cgroup2 root = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestUnescapeOctal(t *testing.T) {
	for in, want := range map[string]string{
		`/a\040b`: "/a b", `/tab\011x`: "/tab\tx", `/back\134slash`: `/back\slash`,
		`/short\04`: `/short\04`, `/plain`: "/plain", `/bad\999`: `/bad\999`,
	} {
		if got := unescapeOctal(in); got != want {
			t.Errorf("unescapeOctal(%q) = %q, want %q", in, got, want)
		}
	}
}

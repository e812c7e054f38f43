//go:build linux

package netsetup_test

import (
	"errors"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/hermes-netd/hermes-netd/netsetup"
	"github.com/hermes-netd/hermes-netd/netsetup/nstest"
)

// sleepIn starts `sleep` inside the named netns and waits until it is there.
func sleepIn(t *testing.T, name string, ino uint64) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("nsenter", "--net=/var/run/netns/"+name, "sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	path := fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if ns, err := netsetup.Open(path); err == nil {
			got := ns.Inode()
			ns.Close()
			if got == ino {
				return cmd
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("sleep %d did not enter netns %s", cmd.Process.Pid, name)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPrivilegedFindByInode: a namespace whose name is deleted lives on in its
// processes and is found through them; once the last one exits it is gone, even
// though this test still holds a file descriptor of it.
func TestPrivilegedFindByInode(t *testing.T) {
	ns, name := nstest.NewNS(t, "fi")
	ino := ns.Inode()

	// Named: found through the bind mount.
	found, err := netsetup.FindByInode(ino)
	if err != nil {
		t.Fatalf("FindByInode of a named netns: %v", err)
	}
	if found.Inode() != ino || found.Spec() != "/run/netns/"+name &&
		found.Spec() != "/var/run/netns/"+name {
		t.Errorf("found inode %d at %q, want %d at the bind mount of %s",
			found.Inode(), found.Spec(), ino, name)
	}
	found.Close()

	sleeper := sleepIn(t, name, ino)
	nstest.DeleteNS(t, name)

	// Unnamed, one process inside: found through the process.
	inUse, err := netsetup.InUse(ino)
	if err != nil || !inUse {
		t.Fatalf("InUse after ip netns del with a process inside = %v, %v; want true", inUse, err)
	}
	found, err = netsetup.FindByInode(ino)
	if err != nil {
		t.Fatalf("FindByInode with a process inside: %v", err)
	}
	want := fmt.Sprintf("/proc/%d/ns/net", sleeper.Process.Pid)
	if found.Inode() != ino || found.Spec() != want {
		t.Errorf("found inode %d at %q, want %d at %s", found.Inode(), found.Spec(), ino, want)
	}
	found.Close()

	// No process and no name left: gone, whatever fds still hold it.
	sleeper.Process.Kill()
	sleeper.Wait()
	inUse, err = netsetup.InUse(ino)
	if err != nil || inUse {
		t.Errorf("InUse after the last process exited = %v, %v; want false", inUse, err)
	}
	if _, err := netsetup.FindByInode(ino); !errors.Is(err, netsetup.ErrNotFound) {
		t.Errorf("FindByInode of a gone netns: error %v, want ErrNotFound", err)
	}
}

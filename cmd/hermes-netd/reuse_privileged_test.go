//go:build linux

package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hermes-netd/hermes-netd/internal/daemon"
	"github.com/hermes-netd/hermes-netd/netsetup"
)

// TestPrivilegedReusedNameDetach: a namespace name deleted while a process
// lives on in it and then made again gives two attachments under one name.
// detach NAME acts on the namespace the name opens now, every time; once it
// opens none, detach refuses and lists the cookies, and cookie:N picks one.
func TestPrivilegedReusedNameDetach(t *testing.T) {
	forEachMode(t, []string{"ip", "nsenter"}, func(t *testing.T, bin, mode string) {
		s := newServed(t, bin, mode)
		s.start(t)
		mustCLI, cliRun := s.mustCLI(t), s.cli(t)
		name := s.id + "-dup"
		path := filepath.Join(netsetup.NetnsDir, name)

		mustRun(t, "ip", "netns", "add", name)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
		holdA := startHolder(t, "nsenter", "--net="+path, "sleep", "600")
		nsA := openNS(t, path)
		waitNetns(t, holdA.Process.Pid, nsA.Inode())
		mustCLI("attached "+name, "attach", name)
		cookieA := attachment(t, s.sock, name).Cookie
		mustRun(t, "ip", "netns", "del", name)
		waitFor(t, "the old namespace to be marked nameless", func() bool {
			a := attachment(t, s.sock, name)
			return a != nil && a.NameGone
		})

		mustRun(t, "ip", "netns", "add", name)
		holdB := startHolder(t, "nsenter", "--net="+path, "sleep", "600")
		nsB := openNS(t, path)
		waitNetns(t, holdB.Process.Pid, nsB.Inode())
		cookieB := attach(t, mustCLI, s.sock, name, cookieA)
		for range 4 {
			mustCLI(fmt.Sprintf("detached %s (cookie %d)", name, cookieB), "detach", name)
			if has, err := nsA.HasTable(); err != nil || !has {
				t.Fatalf("detach %s touched the old namespace: table %v, %v", name, has, err)
			}
			cookieB = attach(t, mustCLI, s.sock, name, cookieA)
		}

		// The name opens nothing now: refuse, naming both cookies.
		mustRun(t, "ip", "netns", "del", name)
		code, out, errOut := cliRun("detach", name)
		for _, c := range []uint64{cookieA, cookieB} {
			if !strings.Contains(errOut, fmt.Sprint(c)) {
				code = 0
			}
		}
		if code == 0 || out != "" || !strings.Contains(errOut, "cookie:") {
			t.Fatalf("detach of an ambiguous name = %d, %q, %q; want an error listing "+
				"cookies %d and %d and how to pick one", code, out, errOut, cookieA, cookieB)
		}
		mustCLI(fmt.Sprintf("detached %s (cookie %d)", name, cookieA), "detach",
			fmt.Sprintf("cookie:%d", cookieA))
		if has, err := nsA.HasTable(); err != nil || has {
			t.Errorf("table of the detached old namespace: %v, %v; want removed", has, err)
		}
		mustCLI(fmt.Sprintf("detached %s (cookie %d)", name, cookieB), "detach", name)
		if st := status(t, s.sock); len(st.Attached) != 0 || len(st.Retired) != 0 {
			t.Errorf("after detaching both: attached %+v, retired %+v", st.Attached, st.Retired)
		}
		s.stop(t)
	})
}

// attach attaches name and returns the new attachment's cookie, which must not
// be old's.
func attach(t *testing.T, mustCLI func(string, ...string), sock, name string, old uint64) uint64 {
	t.Helper()
	mustCLI("attached "+name, "attach", name)
	var got []daemon.Attachment
	for _, a := range status(t, sock).Attached {
		if a.Spec == name && a.Cookie != old {
			got = append(got, a)
		}
	}
	if len(got) != 1 {
		t.Fatalf("attachments of the new %s: %+v, want one", name, got)
	}
	return got[0].Cookie
}

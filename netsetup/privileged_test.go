//go:build linux

package netsetup_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/hermes-netd/hermes-netd/netsetup"
	"github.com/hermes-netd/hermes-netd/netsetup/nstest"
)

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestPrivilegedOpen(t *testing.T) {
	ns, name := nstest.NewNS(t, "op")

	// A process inside the namespace, for the pid: and /proc forms.
	cmd := exec.Command("ip", "netns", "exec", name, "sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// ip netns exec setns()es and then execs sleep: wait until the pid is inside.
	want := inode(t, "/var/run/netns/"+name)
	for i := 0; i < 200 && inode(t, fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid)) != want; i++ {
		runtime.Gosched()
		exec.Command("true").Run()
	}

	for _, spec := range []string{
		name, "/var/run/netns/" + name, "/run/netns/" + name,
		fmt.Sprintf("pid:%d", cmd.Process.Pid), fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid),
	} {
		got, err := netsetup.Open(spec)
		if err != nil {
			t.Errorf("Open(%q): %v", spec, err)
			continue
		}
		if got.Inode() != ns.Inode() || got.Spec() != spec {
			t.Errorf("Open(%q) = inode %d spec %q, want inode %d", spec, got.Inode(), got.Spec(),
				ns.Inode())
		}
		got.Close()
	}
}

func TestPrivilegedOpenErrors(t *testing.T) {
	nstest.RequireRoot(t)
	dir := t.TempDir()
	notNetns := filepath.Join(dir, "plain")
	os.WriteFile(notNetns, nil, 0o600)
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		spec, wantErr string
		notFound      bool
	}{
		{spec: nstest.UniqueName("missing"), wantErr: "network namespace not found", notFound: true},
		{spec: "pid:999999999", wantErr: "network namespace not found", notFound: true},
		{spec: "/proc/self/ns/uts", wantErr: "is a namespace but not a network namespace"},
		{spec: notNetns, wantErr: "is not a namespace file"},
		// Opening these would block (a FIFO with no writer) or act on a device.
		{spec: fifo, wantErr: "is not a network namespace file"},
		{spec: "/dev/zero", wantErr: "is not a network namespace file"},
		{spec: dir, wantErr: "is not a network namespace file"},
	}
	for _, tt := range tests {
		ns, err := openWithin(t, tt.spec, 5*time.Second)
		if err == nil {
			ns.Close()
			t.Errorf("Open(%q) succeeded, want error", tt.spec)
			continue
		}
		if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), tt.spec) {
			t.Errorf("Open(%q) error = %q, want it to name the spec and say %q", tt.spec, err,
				tt.wantErr)
		}
		if got := errors.Is(err, netsetup.ErrNotFound); got != tt.notFound {
			t.Errorf("Open(%q): errors.Is(ErrNotFound) = %v, want %v", tt.spec, got, tt.notFound)
		}
	}
}

func TestPrivilegedCookie(t *testing.T) {
	a, _ := nstest.NewNS(t, "ca")
	b, _ := nstest.NewNS(t, "cb")
	host, err := netsetup.Open("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()

	seen := map[uint64]string{}
	for _, ns := range []*netsetup.NS{a, b, host} {
		c1, err := ns.Cookie()
		if err != nil {
			t.Fatal(err)
		}
		c2, err := ns.Cookie()
		if err != nil {
			t.Fatal(err)
		}
		if c1 != c2 || c1 == 0 {
			t.Errorf("cookie of %s not stable and non-zero: %d then %d", ns, c1, c2)
		}
		if other, dup := seen[c1]; dup {
			t.Errorf("%s and %s share cookie %d", ns, other, c1)
		}
		seen[c1] = ns.Spec()
	}
}

func TestPrivilegedEnsureLoopbackUp(t *testing.T) {
	nstest.RequireRoot(t)
	name := nstest.UniqueName("lo")
	nstest.AddNS(t, name)
	ns, err := netsetup.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()

	isUp := func() bool {
		out := nstest.Run(t, "ip", "-n", name, "-o", "link", "show", "lo")
		return strings.Contains(out, ",UP")
	}
	if isUp() {
		t.Fatal("loopback of a fresh netns is already up; test cannot show anything")
	}
	for i := 0; i < 2; i++ { // the second call finds it up and must not fail
		if err := ns.EnsureLoopbackUp(); err != nil {
			t.Fatal(err)
		}
		if !isUp() {
			t.Fatalf("call %d: loopback still down", i+1)
		}
	}
}

func TestPrivilegedListenInside(t *testing.T) {
	a, _ := nstest.NewNS(t, "la")
	b, _ := nstest.NewNS(t, "lb")

	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		ln := nstest.Serve(t, a, addr, func(net.Conn) string { return "in a" })
		port := ln.Addr().(*net.TCPAddr).Port
		target := strings.Replace(addr, ":0", fmt.Sprintf(":%d", port), 1)

		got, err := nstest.Ask(a, "tcp", target)
		if err != nil || got != "in a" {
			t.Errorf("from inside to %s: %q, %v; want the listener", target, got, err)
		}
		if got, err := nstest.Ask(b, "tcp", target); !errors.Is(err, unix.ECONNREFUSED) {
			t.Errorf("from another netns to %s: %q, %v; want connection refused", target, got, err)
		}
	}
}

// TestPrivilegedDoLeavesNoThreadBehind runs many Do calls at once, some failing,
// then checks every thread of the process is in the host namespace again.
func TestPrivilegedDoLeavesNoThreadBehind(t *testing.T) {
	ns, _ := nstest.NewNS(t, "do")
	host := inode(t, "/proc/thread-self/ns/net")
	want := errors.New("fn error")

	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for i := range 400 {
		wg.Go(func() {
			err := ns.Do(func() error {
				var st unix.Stat_t
				if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
					return err
				}
				if st.Ino != ns.Inode() {
					return fmt.Errorf("inside Do: thread in netns %d, want %d", st.Ino, ns.Inode())
				}
				if i%2 == 0 {
					return want
				}
				return nil
			})
			if i%2 == 0 && !errors.Is(err, want) {
				errs <- fmt.Errorf("call %d: error %v, want fn's error", i, err)
			} else if i%2 == 1 && err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/ns/net", os.Getpid()))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("listing threads: %v", err)
	}
	for _, task := range tasks {
		var st unix.Stat_t
		if err := unix.Stat(task, &st); err != nil {
			continue // the thread exited meanwhile
		}
		if st.Ino != host {
			t.Errorf("%s is in netns %d, want the host's %d", task, st.Ino, host)
		}
	}
}

// TestPrivilegedTableMatchesNft installs each golden config and checks that nft
// prints exactly the rules Table.NftText says, and that install and removal are
// idempotent.
func TestPrivilegedTableMatchesNft(t *testing.T) {
	ns, name := nstest.NewNS(t, "nf")
	cfgs := []netsetup.TableConfig{
		{Listen4: 15001, Listen6: 15002},
		{Listen4: 15001, Listen6: 15002, Strict: true},
		{Ports: []uint16{8443, 443}, Listen4: 443, Listen6: 444},
		{Listen4: 15001},
		{Listen4: 15001, Listen6: 15002, Strict: true, DNS: []netip.Prefix{
			netip.MustParsePrefix("192.0.2.53/32"), netip.MustParsePrefix("198.18.0.0/15"),
			netip.MustParsePrefix("2001:db8::53/128"), netip.MustParsePrefix("fd00:53::/48")}},
	}
	for _, cfg := range cfgs {
		for range 2 {
			if err := ns.EnsureTable(cfg); err != nil {
				t.Fatal(err)
			}
		}
		table, err := netsetup.TableRules(cfg)
		if err != nil {
			t.Fatal(err)
		}
		got := nftList(t, name)
		if diff := cmp.Diff(table.NftText(), got); diff != "" {
			t.Errorf("nft list for %+v (-want +got):\n%s", cfg, diff)
		}
	}

	for range 2 {
		if err := ns.RemoveTable(); err != nil {
			t.Fatal(err)
		}
		if has, err := ns.HasTable(); err != nil || has {
			t.Fatalf("after RemoveTable: HasTable = %v, %v", has, err)
		}
	}
}

// nftList returns `nft list table inet hermes` of a netns, each line trimmed,
// blank lines dropped.
func nftList(t *testing.T, name string) string {
	out := nstest.Run(t, "ip", "netns", "exec", name, "nft", "list", "table", "inet", "hermes")
	var b strings.Builder
	for _, line := range strings.Split(out, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

func TestPrivilegedCgroup2Root(t *testing.T) {
	nstest.RequireRoot(t)
	root, err := netsetup.Cgroup2Root()
	if err != nil {
		t.Fatal(err)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(root, &sfs); err != nil {
		t.Fatal(err)
	}
	if sfs.Type != unix.CGROUP2_SUPER_MAGIC {
		t.Errorf("Cgroup2Root() = %s, which is not a cgroup2 mount", root)
	}
}

func TestPrivilegedEnsureBPFFS(t *testing.T) {
	nstest.RequireRoot(t)
	dir := filepath.Join(netsetup.BPFFSRoot, nstest.UniqueName("fs"), "pins")
	t.Cleanup(func() { os.RemoveAll(filepath.Dir(dir)) })

	for range 2 {
		if err := netsetup.EnsureBPFFS(dir); err != nil {
			t.Fatal(err)
		}
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil || sfs.Type != unix.BPF_FS_MAGIC {
		t.Errorf("%s: statfs %v, type %#x; want a dir on bpffs", dir, err, sfs.Type)
	}

	elsewhere := filepath.Join(t.TempDir(), "pins")
	if err := netsetup.EnsureBPFFS(elsewhere); err == nil ||
		!strings.Contains(err.Error(), "is not on bpffs") {
		t.Errorf("EnsureBPFFS(%s) = %v, want an error saying it is not on bpffs", elsewhere, err)
	}
}

func TestPrivilegedDialWantsIPLiteral(t *testing.T) {
	ns, _ := nstest.NewNS(t, "dl")
	_, err := ns.Dial(context.Background(), "tcp", "example.com:443")
	if err == nil || !strings.Contains(err.Error(), "want ip:port") {
		t.Errorf("Dial with a host name: %v, want an error asking for an IP literal", err)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if left := nstest.Leftovers(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "namespaces left behind: %v\n", left)
		code = 1
	}
	os.Exit(code)
}

// openWithin runs netsetup.Open and fails the test if it blocks.
func openWithin(t *testing.T, spec string, limit time.Duration) (*netsetup.NS, error) {
	t.Helper()
	type result struct {
		ns  *netsetup.NS
		err error
	}
	done := make(chan result, 1)
	go func() {
		ns, err := netsetup.Open(spec)
		done <- result{ns, err}
	}()
	select {
	case r := <-done:
		return r.ns, r.err
	case <-time.After(limit):
		t.Fatalf("Open(%q) still blocked after %v", spec, limit)
		return nil, nil
	}
}

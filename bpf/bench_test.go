//go:build linux

package bpf

import (
	"net"
	"net/netip"
	"runtime"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// BenchmarkConnect measures one TCP connect() and close() from inside a netns:
//
//   - no-bpf: nothing of ours attached, straight to a local listener;
//   - bpf-unregistered: programs attached, netns not registered (the cost every
//     other socket on the machine pays);
//   - bpf-redirect: registered netns, connect to 198.18.0.10:443 rewritten to the
//     listener, original destination recorded.
//
// With programs attached it also reports the programs' own run time per call
// (ns/connect4-run, ns/sockops-run), from the kernel's BPF statistics.
func BenchmarkConnect(b *testing.B) {
	requireRoot(b)
	ns := newNetns(b)
	ln := ns.listen(b, "tcp4", "127.0.0.1:0")
	go drain(ln)
	direct := ln.Addr().(*net.TCPAddr).AddrPort()

	b.Run("no-bpf", func(b *testing.B) {
		benchConnect(b, ns, direct, nil)
	})

	r := install(b, pinDir(b), nil)
	stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	if err != nil {
		b.Fatalf("enabling BPF run time statistics: %v", err)
	}
	defer stats.Close()

	b.Run("bpf-unregistered", func(b *testing.B) {
		benchConnect(b, ns, direct, r)
	})

	if err := r.Register(ns.cookie, Listeners{Port4: direct.Port()}); err != nil {
		b.Fatal(err)
	}
	b.Run("bpf-redirect", func(b *testing.B) {
		benchConnect(b, ns, netip.MustParseAddrPort("198.18.0.10:443"), r)
	})
}

func drain(ln *net.TCPListener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

func benchConnect(b *testing.B, ns *testNetns, dst netip.AddrPort, r *Redirector) {
	// The whole loop runs on one thread inside the netns, so that each
	// iteration is a socket, a connect and a close and nothing else.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(orig)
	if err := unix.Setns(ns.fd, unix.CLONE_NEWNET); err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			panic("cannot return to the original netns: " + err.Error())
		}
	}()

	before := progStats(b, r)
	sa := sockaddr(unix.AF_INET, dst)
	// A reset instead of a FIN keeps TIME_WAIT from using up the local ports.
	linger := &unix.Linger{Onoff: 1, Linger: 0}
	for b.Loop() {
		s, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			b.Fatal(err)
		}
		if err := unix.Connect(s, sa); err != nil {
			b.Fatalf("connect to %s: %v", dst, err)
		}
		unix.SetsockoptLinger(s, unix.SOL_SOCKET, unix.SO_LINGER, linger)
		unix.Close(s)
	}
	after := progStats(b, r)
	for name, a := range after {
		runs := a.RunCount - before[name].RunCount
		if runs > 0 {
			ns := float64(a.Runtime-before[name].Runtime) / float64(runs)
			b.ReportMetric(ns, "ns/"+name+"-run")
		}
	}
}

// progStats reads the kernel's run statistics of the connect4 and sockops
// programs. The programs run for every socket of the machine, so the counts
// include other traffic; the time per run is what matters.
func progStats(b *testing.B, r *Redirector) map[string]ebpf.ProgramStats {
	b.Helper()
	out := make(map[string]ebpf.ProgramStats)
	if r == nil {
		return out
	}
	for name, p := range map[string]*ebpf.Program{
		"connect4": r.objs.HermesConnect4,
		"sockops":  r.objs.HermesSockops,
	} {
		s, err := p.Stats()
		if err != nil {
			b.Fatalf("reading %s statistics: %v", name, err)
		}
		out[name] = *s
	}
	return out
}

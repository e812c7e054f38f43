//go:build linux

package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hermes-netd/hermes-netd/internal/daemon"
	"github.com/hermes-netd/hermes-netd/netsetup"
)

// TestPrivilegedKeptSocketFailsClosed: a sandbox keeps an unconnected socket of
// its namespace and leaves it (here the test makes the socket inside and every
// process leaves); nothing the daemon can see holds the namespace any more, so
// it stops serving it. The socket still lives in the namespace: connecting it
// to an intercepted port afterwards must be refused, never reach the
// destination. Per mode, with and without strict.
func TestPrivilegedKeptSocketFailsClosed(t *testing.T) {
	forEachMode(t, []string{"ip", "nsenter", "unshare"}, func(t *testing.T, bin, mode string) {
		for _, strict := range []bool{false, true} {
			t.Run(fmt.Sprintf("strict=%v", strict), func(t *testing.T) {
				testKeptSocket(t, bin, mode, strict)
			})
		}
	})
}

func testKeptSocket(t *testing.T, bin, mode string, strict bool) {
	s := newServed(t, bin, mode)
	if strict {
		f, err := os.OpenFile(s.cfg, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(f, "strict: true")
		f.Close()
	}
	s.start(t)
	mustCLI := s.mustCLI(t)

	holder := startHolder(t, "unshare", "--net", "sleep", "600")
	path := fmt.Sprintf("/proc/%d/ns/net", holder.Process.Pid)
	mustRun(t, "nsenter", "--net="+path, "ip", "link", "set", "lo", "up")
	// The fake upstream lives inside the namespace: a direct connect reaches it.
	mustRun(t, "nsenter", "--net="+path, "ip", "addr", "add", "198.18.0.10/32", "dev", "lo")
	ns, err := netsetup.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	upstream, err := ns.Listen("tcp4", "198.18.0.10:443")
	if err != nil {
		ns.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { upstream.Close() })
	var reached atomic.Int64
	go func() {
		for {
			c, err := upstream.Accept()
			if err != nil {
				return
			}
			reached.Add(1)
			c.Close()
		}
	}()

	// The kept socket: made inside the namespace, not connected yet.
	var fd int
	err = ns.Do(func() error {
		var err error
		fd, err = syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		ns.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	// connect(2) gives up after SO_SNDTIMEO instead of hanging the test.
	tv := syscall.Timeval{Sec: 5}
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_SNDTIMEO, &tv); err != nil {
		t.Fatal(err)
	}

	spec := fmt.Sprintf("pid:%d", holder.Process.Pid)
	mustCLI("attached "+spec, "attach", spec)
	checkIntercepted(t, s.sock, spec, ns, "tcp4", "198.18.0.10:443")
	cookie := attachment(t, s.sock, spec).Cookie
	if n := reached.Load(); n != 0 {
		t.Fatalf("the fake upstream was reached %d times while attached", n)
	}

	// Everything the daemon could see leaves: the process and the test's fd.
	ns.Close()
	holder.Process.Kill()
	holder.Wait()
	waitFor(t, "the daemon to stop serving the namespace", func() bool {
		st := status(t, s.sock)
		return attachment(t, s.sock, spec) == nil &&
			slices.ContainsFunc(st.Retired, func(r daemon.Record) bool { return r.Cookie == cookie })
	})

	err = syscall.Connect(fd, &syscall.SockaddrInet4{Port: 443, Addr: [4]byte{198, 18, 0, 10}})
	if err != syscall.ECONNREFUSED {
		t.Errorf("connecting the kept socket to 198.18.0.10:443 after the daemon let the "+
			"namespace go: %v, want connection refused\ndaemon log:\n%s", err, s.log())
	}
	// A fresh socket of the namespace, through the listener that holds it.
	c, err := dialFrom(upstream, "198.18.0.10:443")
	if err == nil {
		c.Close()
		t.Errorf("a new connection to 198.18.0.10:443 succeeded after the namespace was retired")
	}
	if n := reached.Load(); n != 0 {
		t.Errorf("the fake upstream was reached %d times: the namespace got out directly", n)
	}

	// An explicit detach by cookie drops the retired record.
	mustCLI("detached "+spec, "detach", fmt.Sprintf("cookie:%d", cookie))
	if st := status(t, s.sock); len(st.Retired) != 0 {
		t.Errorf("retired after detach: %+v, want none", st.Retired)
	}
	s.stop(t)
}

// dialFrom connects a new socket made in the namespace of ln's socket (found
// through SIOCGSKNS) to addr.
func dialFrom(ln net.Listener, addr string) (net.Conn, error) {
	raw, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		return nil, err
	}
	var nsfd int
	var ierr error
	err = raw.Control(func(fd uintptr) {
		const siocgskns = 0x894C
		r, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, siocgskns, 0)
		nsfd, ierr = int(r), nil
		if errno != 0 {
			ierr = errno
		}
	})
	if err != nil {
		return nil, err
	}
	if ierr != nil {
		return nil, fmt.Errorf("SIOCGSKNS: %w", ierr)
	}
	defer syscall.Close(nsfd)
	ns, err := netsetup.Open(fmt.Sprintf("/proc/self/fd/%d", nsfd))
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return ns.Dial(ctx, "tcp4", addr)
}

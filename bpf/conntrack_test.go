//go:build linux

package bpf

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// trackConnections makes conntrack follow the netns's connections by loading a
// rule that reads the connection state (the netns is the test's own).
func trackConnections(t *testing.T, ns *testNetns) {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(ns.fd))
	if err != nil {
		t.Fatal(err)
	}
	table := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "hermes-t"})
	chain := c.AddChain(&nftables.Chain{
		Name:     "out",
		Table:    table,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookOutput,
		Priority: nftables.ChainPriorityFilter,
	})
	c.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Counter{},
	}})
	if err := c.Flush(); err != nil {
		t.Fatalf("adding a conntrack rule inside the test netns: %v", err)
	}
}

// With conntrack active in the namespace the kernel itself answers
// SO_ORIGINAL_DST, but with the listener's address: it saw the connection only
// after the BPF rewrite. The recorded destination must win.
func TestPrivilegedRedirectWinsOverConntrack(t *testing.T) {
	e := newRedirectEnv(t)
	trackConnections(t, e.ns)

	// The premise: conntrack now answers for a connection that was not
	// redirected, with the address the client used, here the listener's.
	listener := e.ln4.Addr().(*net.TCPAddr).AddrPort()
	fd, err := e.ns.dial(unix.AF_INET, unix.SOCK_STREAM, listener)
	if err != nil {
		t.Fatalf("connect to the listener: %v", err)
	}
	c := accept(t, e.ln4, localAddr(t, fd))
	unix.Close(fd)
	if got, err := originalDst(connFd(t, c), unix.SOL_IP); err != nil || got != listener {
		t.Fatalf("conntrack's SO_ORIGINAL_DST = %s, %v; want %s", got, err, listener)
	}

	tests := []struct {
		name   string
		family int
		dst    netip.AddrPort
		level  int
		v6     bool
	}{
		{"ipv4", unix.AF_INET, netip.MustParseAddrPort("198.18.0.10:443"), unix.SOL_IP, false},
		{"ipv6", unix.AF_INET6, netip.MustParseAddrPort("[2001:db8::10]:443"), unix.SOL_IPV6, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fd, err := e.ns.dial(tt.family, unix.SOCK_STREAM, tt.dst)
			if err != nil {
				t.Fatalf("connect to %s: %v", tt.dst, err)
			}
			defer unix.Close(fd)
			ln := e.ln4
			if tt.v6 {
				ln = e.ln6
			}
			c := accept(t, ln, localAddr(t, fd))

			got, err := originalDst(connFd(t, c), tt.level)
			if err != nil || got != tt.dst {
				t.Errorf("SO_ORIGINAL_DST = %s, %v; want %s", got, err, tt.dst)
			}
		})
	}
}

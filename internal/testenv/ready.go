//go:build linux

package testenv

import (
	"context"
	"fmt"
	"net/netip"
	"time"
)

// waitReady proves the topology works before Start returns: a UDP datagram
// from the sandbox reaches the echo of every site address and comes back.
// Datagrams are resent every 50ms: IPv6 on a fresh veth stays unusable until
// the kernel's link watcher reports its carrier, which it batches for up to
// a second, and neighbour discovery fails until then.
func (e *Env) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, s := range Sites {
		for _, a := range s.Addrs {
			if err := e.echo(ctx, netip.AddrPortFrom(a, SitePort)); err != nil {
				return fmt.Errorf("checking the path from the sandbox to %s (%s): %w",
					s.Host, a, err)
			}
		}
	}
	return nil
}

func (e *Env) echo(ctx context.Context, to netip.AddrPort) error {
	c, err := e.ns[Sandbox].Dial(ctx, "udp", to.String())
	if err != nil {
		return err
	}
	defer c.Close()

	buf := make([]byte, 64)
	for {
		if _, err := c.Write([]byte("ready?")); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		n, err := c.Read(buf)
		if err == nil && string(buf[:n]) == "echo: ready?" {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("no echo: %w", ctx.Err())
		}
	}
}

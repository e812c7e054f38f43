//go:build linux

package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// SandboxCmd runs a command inside the sandbox through `ip netns exec`, so
// that the sandbox's hosts file is mounted over /etc/hosts. The process gets
// its own process group; Close kills it if it still runs.
func (e *Env) SandboxCmd(ctx context.Context, name string, args ...string) *exec.Cmd {
	argv := append([]string{"netns", "exec", e.names[Sandbox], name}, args...)
	return e.track(exec.CommandContext(ctx, "ip", argv...))
}

// HostCmd runs a command inside the host namespace through nsenter, entering
// the network namespace only: the cgroup2 and bpffs mounts stay visible, as
// the daemon under test needs (`ip netns exec` would remount /sys).
func (e *Env) HostCmd(ctx context.Context, name string, args ...string) *exec.Cmd {
	argv := append([]string{"--net=" + e.Path(Host), "--", name}, args...)
	return e.track(exec.CommandContext(ctx, "nsenter", argv...))
}

// InetCmd runs a command inside the fake internet, through nsenter.
func (e *Env) InetCmd(ctx context.Context, name string, args ...string) *exec.Cmd {
	argv := append([]string{"--net=" + e.Path(Inet), "--", name}, args...)
	return e.track(exec.CommandContext(ctx, "nsenter", argv...))
}

// track puts cmd in its own process group, kills the group when ctx ends,
// and remembers it for Close.
func (e *Env) track(cmd *exec.Cmd) *exec.Cmd {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return killGroup(cmd) }
	cmd.WaitDelay = 5 * time.Second

	e.mu.Lock()
	defer e.mu.Unlock()
	e.cmds = append(e.cmds, cmd)
	return cmd
}

// killAll kills every tracked command still running. Called with e.mu held.
func (e *Env) killAll() error {
	var errs []error
	for _, cmd := range e.cmds {
		if cmd.Process == nil {
			continue
		}
		if err := killGroup(cmd); err != nil {
			errs = append(errs, err)
		}
	}
	e.cmds = nil
	return errors.Join(errs...)
}

// killGroup kills cmd's process group. The leader is signalled first through
// os.Process, which knows whether it was already reaped: only while it is
// not can its pid, and so its group id, not have been reused.
func killGroup(cmd *exec.Cmd) error {
	err := cmd.Process.Signal(syscall.SIGKILL)
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("killing %s (pid %d): %w", cmd.Path, cmd.Process.Pid, err)
	}
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil &&
		!errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("killing process group %d: %w", cmd.Process.Pid, err)
	}
	return nil
}

// SandboxDial connects from inside the sandbox, resolving the fake sites'
// names as the sandbox's hosts file does. It suits an in-process client
// (http.Transport.DialContext) that should behave like a sandboxed one.
func (e *Env) SandboxDial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dialing %s from the sandbox: %w", addr, err)
	}
	ip, err := LookupHost(host)
	if err != nil {
		return nil, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("dialing %s from the sandbox: bad port: %w", addr, err)
	}
	return e.ns[Sandbox].Dial(ctx, network, netip.AddrPortFrom(ip, uint16(p)).String())
}

// LookupHost resolves host as the sandbox's hosts file does; IP literals
// resolve to themselves.
func LookupHost(host string) (netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip, nil
	}
	for _, s := range Sites {
		if s.Host == host {
			return s.Addrs[0], nil
		}
	}
	return netip.Addr{}, fmt.Errorf("resolving %s: not a fake site of the test topology "+
		"(see testenv.Sites)", host)
}

// RunCommand runs cmd and returns its exit status and outputs; it sets
// cmd.Stdout and cmd.Stderr. A command that cannot run, or that Wait reports
// another error for, has status -1 and the error appended to its stderr.
func RunCommand(cmd *exec.Cmd) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return exit.ExitCode(), out.String(), errb.String()
	case err != nil:
		return -1, out.String(), errb.String() + err.Error()
	}
	return 0, out.String(), errb.String()
}

//go:build linux

package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DaemonWaitLimit bounds a Daemon's waits: for it to serve after it starts,
// and for it to exit after SIGTERM.
const DaemonWaitLimit = 15 * time.Second

// servingMark is in the line `hermes-netd serve` logs once its admin socket
// listens and the attachments of its state file are restored.
const servingMark = "msg=Serving"

// Daemon is a running `hermes-netd serve` with its operational log (stderr)
// captured. Its methods are safe for concurrent use. It needs no topology:
// the tests of package main run it in namespaces of their own.
type Daemon struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd.Wait has returned
	err    error         // cmd.Wait's result, set before exited is closed
	log    syncBuffer
}

// StartDaemon starts cmd, a `hermes-netd serve` command line with the
// caller's flags that has not been started and whose Stderr is nil, and
// waits until the daemon serves (DaemonWaitLimit at most). When it exits
// first, is not serving in time or ctx ends, StartDaemon kills it and returns
// an error holding its log.
//
// The goroutine that starts the daemon keeps its OS thread until the daemon
// exits, so a SysProcAttr.Pdeathsig set by the caller lasts the daemon's life
// (the kernel ties the signal to the thread that forked, not the process).
func StartDaemon(ctx context.Context, cmd *exec.Cmd) (*Daemon, error) {
	if cmd.Stderr != nil {
		return nil, errors.New("starting hermes-netd serve: leave cmd.Stderr nil, " +
			"the Daemon captures it (read it with Log)")
	}
	d := &Daemon{cmd: cmd, exited: make(chan struct{})}
	cmd.Stderr = &d.log

	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		d.err = cmd.Wait()
		close(d.exited)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("starting hermes-netd serve: %w", err)
	}

	if err := d.waitServing(ctx); err != nil {
		d.Kill()
		return nil, fmt.Errorf("%w; its log:\n%s", err, d.Log())
	}
	return d, nil
}

// waitServing polls the log for the daemon's serving line.
func (d *Daemon) waitServing(ctx context.Context) error {
	limit := time.NewTimer(DaemonWaitLimit)
	defer limit.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(d.Log(), servingMark) {
		select {
		case <-d.exited:
			return fmt.Errorf("hermes-netd serve exited before serving: %v", d.err)
		case <-limit.C:
			return fmt.Errorf("hermes-netd serve not serving after %v", DaemonWaitLimit)
		case <-ctx.Done():
			return fmt.Errorf("waiting for hermes-netd serve: %w", ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// Log returns what the daemon has written to stderr so far.
func (d *Daemon) Log() string { return d.log.String() }

// Pid returns the daemon's process id.
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// Signal sends sig to the daemon, e.g. SIGHUP for a reload.
func (d *Daemon) Signal(sig os.Signal) error {
	if err := d.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signalling hermes-netd serve (pid %d): %w", d.Pid(), err)
	}
	return nil
}

// Exited is closed once the daemon has exited; Wait then says how.
func (d *Daemon) Exited() <-chan struct{} { return d.exited }

// Wait waits for the daemon to exit and returns what exec.Cmd.Wait said: nil
// for exit status 0. It may be called any number of times.
func (d *Daemon) Wait() error {
	<-d.exited
	return d.err
}

// Stop sends SIGTERM and waits for the daemon to exit, DaemonWaitLimit at
// most (then it kills it). It returns an error unless the exit status is 0;
// the error leaves the log out (Log has it).
func (d *Daemon) Stop() error {
	err := d.cmd.Process.Signal(syscall.SIGTERM)
	if err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signalling hermes-netd serve (pid %d): %w", d.Pid(), err)
	}
	select {
	case <-d.exited:
	case <-time.After(DaemonWaitLimit):
		d.Kill()
		return fmt.Errorf("hermes-netd serve still running %v after SIGTERM; killed",
			DaemonWaitLimit)
	}
	if d.err != nil {
		return fmt.Errorf("hermes-netd serve exit after SIGTERM: %w, want status 0", d.err)
	}
	return nil
}

// Kill kills the daemon, if it still runs, and waits for it to exit.
func (d *Daemon) Kill() {
	d.cmd.Process.Kill() // an exited daemon reports os.ErrProcessDone: nothing to do
	<-d.exited
}

// syncBuffer is a bytes.Buffer for one writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

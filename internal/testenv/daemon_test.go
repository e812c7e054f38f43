//go:build linux

package testenv

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// fakeServe is a shell stand-in for `hermes-netd serve`: it logs the serving
// line after a pause, then runs until SIGTERM and exits with termStatus.
func fakeServe(termStatus string) *exec.Cmd {
	return exec.Command("sh", "-c", `trap 'echo stopping >&2; exit `+termStatus+`' TERM
sleep 0.2
echo 'level=INFO msg=Serving socket=/run/x.sock' >&2
while :; do sleep 0.05; done`)
}

func TestDaemonStartLogStop(t *testing.T) {
	d, err := StartDaemon(context.Background(), fakeServe("0"))
	if err != nil {
		t.Fatalf("StartDaemon: %v", err)
	}
	t.Cleanup(d.Kill)
	if !strings.Contains(d.Log(), "msg=Serving socket=/run/x.sock") {
		t.Errorf("log after StartDaemon = %q, want the serving line", d.Log())
	}
	select {
	case <-d.Exited():
		t.Fatalf("Exited closed while the daemon runs: %v", d.Wait())
	default:
	}

	if err := d.Stop(); err != nil {
		t.Fatalf("Stop = %v, want nil (exit status 0)", err)
	}
	if !strings.HasSuffix(d.Log(), "stopping\n") {
		t.Errorf("log after Stop = %q, want it to end with the SIGTERM trap's line", d.Log())
	}
	if err := d.Wait(); err != nil {
		t.Errorf("Wait after Stop = %v, want nil", err)
	}
}

func TestDaemonStopReportsExitStatus(t *testing.T) {
	d, err := StartDaemon(context.Background(), fakeServe("3"))
	if err != nil {
		t.Fatalf("StartDaemon: %v", err)
	}
	t.Cleanup(d.Kill)
	err = d.Stop()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Errorf("Stop = %v, want an *exec.ExitError with status 3", err)
	}
}

func TestDaemonSignal(t *testing.T) {
	d, err := StartDaemon(context.Background(), fakeServe("0"))
	if err != nil {
		t.Fatalf("StartDaemon: %v", err)
	}
	t.Cleanup(d.Kill)
	if err := d.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("Signal: %v", err)
	}
	var exit *exec.ExitError
	if err := d.Wait(); !errors.As(err, &exit) || exit.ExitCode() != -1 {
		t.Errorf("Wait after SIGKILL = %v, want killed by a signal", err)
	}
	if err := d.Signal(syscall.SIGHUP); err == nil {
		t.Errorf("Signal to an exited daemon = nil, want an error")
	}
}

func TestStartDaemonFailures(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	withStderr := fakeServe("0")
	withStderr.Stderr = new(strings.Builder)

	tests := []struct {
		name string
		ctx  context.Context
		cmd  *exec.Cmd
		want []string // in the error
	}{
		{"exits before serving", context.Background(),
			exec.Command("sh", "-c", "echo 'bad config: no such key' >&2; exit 1"),
			[]string{"exited before serving: exit status 1", "bad config: no such key"}},
		{"context ends first", canceled, fakeServe("0"),
			[]string{"waiting for hermes-netd serve", context.Canceled.Error()}},
		{"missing program", context.Background(), exec.Command("/nonexistent/hermes-netd"),
			[]string{"starting hermes-netd serve", "no such file"}},
		{"stderr already set", context.Background(), withStderr,
			[]string{"leave cmd.Stderr nil"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := StartDaemon(tt.ctx, tt.cmd)
			if err == nil {
				d.Kill()
				t.Fatal("StartDaemon succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("StartDaemon error %q lacks %q", err, w)
				}
			}
			if tt.cmd.Process != nil && tt.cmd.ProcessState == nil {
				t.Errorf("StartDaemon failed but left pid %d running", tt.cmd.Process.Pid)
			}
		})
	}
}

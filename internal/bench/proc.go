//go:build linux

package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is USER_HZ, the unit of utime and stime in /proc/PID/stat; it is
// 100 on every Linux architecture Go supports.
const clockTick = 100

// cpuTime is the user+system CPU time a process has used so far.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("reading CPU time of pid %d: %w", pid, err)
	}
	// The command name (field 2) may hold spaces; count fields after its ")".
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("reading CPU time of pid %d: malformed stat", pid)
	}
	fs := strings.Fields(string(b[i+1:]))
	// fs[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(fs) < 13 {
		return 0, fmt.Errorf("reading CPU time of pid %d: short stat", pid)
	}
	u, err1 := strconv.ParseInt(fs[11], 10, 64)
	s, err2 := strconv.ParseInt(fs[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("reading CPU time of pid %d: bad utime/stime", pid)
	}
	return time.Duration(u+s) * time.Second / clockTick, nil
}

// rssKiB is a process's resident set size.
func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("reading memory of pid %d: %w", pid, err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if fs := strings.Fields(l); len(fs) >= 2 && fs[0] == "VmRSS:" {
			return strconv.ParseInt(fs[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("reading memory of pid %d: no VmRSS", pid)
}

// cpuMeter measures the CPU a process uses between start and stop. pid 0
// measures nothing (the direct path has no proxy).
type cpuMeter struct {
	pid    int
	before time.Duration
}

func startCPU(pid int) (*cpuMeter, error) {
	m := &cpuMeter{pid: pid}
	if pid == 0 {
		return m, nil
	}
	var err error
	m.before, err = cpuTime(pid)
	return m, err
}

func (m *cpuMeter) stop() (time.Duration, error) {
	if m.pid == 0 {
		return 0, nil
	}
	after, err := cpuTime(m.pid)
	return after - m.before, err
}

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

// treeCPU is the CPU time used so far by pid and its descendants (a peer
// proxy may fork workers, as sslsplit does for privilege separation), plus
// what its reaped children used.
func treeCPU(pid int) (time.Duration, error) {
	total, err := cpuTime(pid)
	if err != nil {
		return 0, err
	}
	for _, c := range descendants(pid) {
		if t, err := cpuTime(c); err == nil {
			total += t
		}
	}
	return total, nil
}

// descendants lists the processes below pid, from /proc/*/stat parents.
func descendants(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if fs, err := statFields(p); err == nil {
			parent[p], _ = strconv.Atoi(fs[1])
		}
	}
	var out []int
	for p := range parent {
		for q := parent[p]; q > 1; q = parent[q] {
			if q == pid {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// statFields are the fields of /proc/PID/stat after the command name:
// fields[0] is field 3 (state).
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	// The command name (field 2) may hold spaces; count fields after its ")".
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return nil, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	fs := strings.Fields(string(b[i+1:]))
	if len(fs) < 15 {
		return nil, fmt.Errorf("short /proc/%d/stat", pid)
	}
	return fs, nil
}

// cpuTime is the user+system CPU time a process has used so far, with that
// of its reaped children.
func cpuTime(pid int) (time.Duration, error) {
	fs, err := statFields(pid)
	if err != nil {
		return 0, fmt.Errorf("reading CPU time of pid %d: %w", pid, err)
	}
	// utime, stime, cutime, cstime are fields 14 to 17.
	var ticks int64
	for _, f := range fs[11:15] {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("reading CPU time of pid %d: bad field %q", pid, f)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTick, nil
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
	m.before, err = treeCPU(pid)
	return m, err
}

func (m *cpuMeter) stop() (time.Duration, error) {
	if m.pid == 0 {
		return 0, nil
	}
	after, err := treeCPU(m.pid)
	return after - m.before, err
}

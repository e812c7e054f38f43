//go:build linux

package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hermes-netd/hermes-netd/bpf"
	"github.com/hermes-netd/hermes-netd/netsetup"
)

// ownerDir holds one file per live run, naming the process that made it.
const ownerDir = "/run/hermes-e2e"

// writeOwner records that this process owns run id: its pid and start time,
// which together survive pid reuse.
func writeOwner(id string) error {
	start, err := startTime(os.Getpid())
	if err != nil {
		return err
	}
	text := fmt.Sprintf("%d %s\n", os.Getpid(), start)
	if err := writeShared(ownerDir, map[string]string{id: text}); err != nil {
		return fmt.Errorf("writing owner of run %s: %w", id, err)
	}
	return nil
}

// writeShared writes files into dir, creating it. dir is shared with other
// runs, whose Close removes it when it is empty; the few attempts cover the
// moment between creating it and filling it.
func writeShared(dir string, files map[string]string) error {
	var err error
	for range 3 {
		if err = os.MkdirAll(dir, 0o755); err != nil {
			continue
		}
		for name, text := range files {
			path := filepath.Join(dir, name)
			if err = os.WriteFile(path, []byte(text), 0o644); err != nil {
				err = fmt.Errorf("writing %s: %w", path, err)
				break
			}
		}
		if !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return err
}

func removeOwner(id string) error {
	err := os.Remove(filepath.Join(ownerDir, id))
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("removing owner of run %s: %w", id, err)
	}
	return nil
}

// startTime reads field 22 of /proc/PID/stat, the process's start time.
func startTime(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", fmt.Errorf("reading start time of pid %d: %w", pid, err)
	}
	// The command name (field 2) may hold spaces; count from its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", fmt.Errorf("reading start time of pid %d: unexpected /proc stat format", pid)
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 20 {
		return "", fmt.Errorf("reading start time of pid %d: unexpected /proc stat format", pid)
	}
	return fields[19], nil
}

// ownerAlive reports whether the process that made run id still runs.
func ownerAlive(id string) bool {
	b, err := os.ReadFile(filepath.Join(ownerDir, id))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(b))
	if len(fields) != 2 {
		return false
	}
	pid, err := strconv.Atoi(fields[0])
	if err != nil {
		return false
	}
	start, err := startTime(pid)
	return err == nil && start == fields[1]
}

// CleanupStale removes what runs whose process is gone left behind:
// namespaces named hermes-e2e-<id>-*, their /etc/netns directories,
// temporary directories and owner files. Runs of live processes are left alone. It returns the names removed.
func CleanupStale() ([]string, error) {
	entries, err := os.ReadDir(netsetup.NetnsDir)
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("listing %s: %w", netsetup.NetnsDir, err)
	}

	var removed []string
	var errs []error
	alive := map[string]bool{}
	for _, ent := range entries {
		id, ok := runID(ent.Name())
		if !ok {
			continue
		}
		if _, seen := alive[id]; !seen {
			alive[id] = ownerAlive(id)
		}
		if alive[id] {
			continue
		}
		if err := deleteNamespace(ent.Name()); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, ent.Name())
	}

	// /etc/netns directories and owner files can outlive their namespaces.
	etc, _ := os.ReadDir("/etc/netns")
	for _, ent := range etc {
		id, ok := runID(ent.Name())
		if !ok || alive[id] || ownerAlive(id) {
			continue
		}
		dir := filepath.Join("/etc/netns", ent.Name())
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("removing %s: %w", dir, err))
			continue
		}
		removed = append(removed, dir)
	}
	// Temp dirs are named Prefix+id+"-...", pin dirs Prefix+id.
	sweep := func(pattern string, remove func(string) error) {
		paths, _ := filepath.Glob(pattern)
		for _, path := range paths {
			id, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(path), Prefix), "-")
			if id == "" || alive[id] || ownerAlive(id) {
				continue
			}
			if err := remove(path); err != nil {
				errs = append(errs, fmt.Errorf("removing %s: %w", path, err))
				continue
			}
			removed = append(removed, path)
		}
	}
	sweep(filepath.Join(os.TempDir(), Prefix+"*-*"), os.RemoveAll)
	sweep(filepath.Join(netsetup.BPFFSRoot, Prefix+"*"), bpf.Uninstall)
	owners, _ := os.ReadDir(ownerDir)
	for _, ent := range owners {
		if !ownerAlive(ent.Name()) {
			errs = append(errs, removeOwner(ent.Name()))
		}
	}
	return removed, errors.Join(errs...)
}

// runID extracts <id> from hermes-e2e-<id>-<role>.
func runID(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, Prefix)
	if !ok {
		return "", false
	}
	id, role, ok := strings.Cut(rest, "-")
	if !ok || id == "" || !isRole(role) {
		return "", false
	}
	return id, true
}

func isRole(s string) bool {
	for _, r := range roles {
		if string(r) == s {
			return true
		}
	}
	return false
}

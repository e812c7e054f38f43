package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Restore takes back the namespaces of the state file: those that still exist
// (same namespace identity) are attached again, those that vanished are forgotten,
// one log line each. A namespace that exists but cannot be attached stays in the
// state file (its redirect stays too, so its sandbox fails closed) and is logged.
func (d *Daemon) Restore(ctx context.Context) error {
	recs, err := LoadState(d.opts.StatePath)
	if err != nil {
		return err
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	for _, rec := range recs {
		d.restore(rec)
	}
	return d.save()
}

// restore takes back one record. d.mu is held.
func (d *Daemon) restore(rec Record) {
	ns, err := d.opts.Kernel.Open(rec.Spec)
	if errors.Is(err, ErrNoNamespace) {
		d.forget(rec, "namespace no longer exists")
		return
	}
	if err != nil {
		d.log.Error("Keeping namespace for a later start", "netns", rec.Spec, "error", err)
		d.kept = append(d.kept, rec)
		return
	}
	if ns.Inode() != rec.Inode {
		ns.Close()
		d.forget(rec, "name now refers to another namespace")
		return
	}
	if _, ok := d.attached[rec.Inode]; ok {
		ns.Close() // two records of one namespace: the first one wins
		return
	}

	a, err := d.attach(ns, rec.Since)
	if err != nil {
		ns.Close()
		d.log.Error("Keeping namespace for a later start", "netns", rec.Spec, "error", err)
		d.kept = append(d.kept, rec)
		return
	}
	d.log.Info("Re-attached", "netns", rec.Spec, "cookie", a.rec.Cookie)
}

// forget drops the kernel leftovers of a namespace that is gone. d.mu is held.
func (d *Daemon) forget(rec Record, why string) {
	if err := d.opts.Kernel.Forget(rec); err != nil {
		d.log.Error("Forgetting vanished namespace", "netns", rec.Spec, "reason", why,
			"error", err)
		return
	}
	d.log.Info("Forgot vanished namespace", "netns", rec.Spec, "reason", why)
}

// Watch checks every interval that each attached namespace still exists under
// its spec, and detaches those that vanished (the daemon's own listeners keep a
// namespace alive, so it is the name or the process that disappears). It returns
// when ctx is done.
func (d *Daemon) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.CheckVanished()
		}
	}
}

// CheckVanished detaches every attached namespace whose spec no longer opens the
// same namespace, and returns their specs.
func (d *Daemon) CheckVanished() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}

	var gone []string
	for _, a := range d.attached {
		why := d.vanished(a.rec)
		if why == "" {
			continue
		}
		if err := d.detach(a); err != nil {
			d.log.Error("Detaching vanished namespace", "netns", a.rec.Spec, "error", err)
			continue
		}
		d.log.Info("Detached vanished namespace", "netns", a.rec.Spec, "reason", why)
		gone = append(gone, a.rec.Spec)
	}
	if len(gone) > 0 {
		if err := d.save(); err != nil {
			d.log.Error("Saving state", "error", err)
		}
	}
	slices.Sort(gone)
	return gone
}

// vanished says why rec's spec no longer names its namespace, or "" if it does
// (or if that cannot be told now).
func (d *Daemon) vanished(rec Record) string {
	ns, err := d.opts.Kernel.Open(rec.Spec)
	if errors.Is(err, ErrNoNamespace) {
		return "namespace no longer exists"
	}
	if err != nil {
		return ""
	}
	defer ns.Close()
	if ns.Inode() != rec.Inode {
		return "name now refers to another namespace"
	}
	return ""
}

// save writes the attached and kept records to the state file. d.mu is held.
func (d *Daemon) save() error {
	recs := slices.Clone(d.kept)
	for _, a := range d.attached {
		recs = append(recs, a.rec)
	}
	slices.SortFunc(recs, func(x, y Record) int { return strings.Compare(x.Spec, y.Spec) })
	return SaveState(d.opts.StatePath, recs)
}

// dropKept removes a kept record for spec, now attached again. d.mu is held.
func (d *Daemon) dropKept(spec string) {
	d.kept = slices.DeleteFunc(d.kept, func(r Record) bool { return r.Spec == spec })
}

// isKept reports whether spec has a kept record. d.mu is held.
func (d *Daemon) isKept(spec string) bool {
	return slices.ContainsFunc(d.kept, func(r Record) bool { return r.Spec == spec })
}

// forgetKept detaches a kept record of spec: it is dropped along with its
// kernel leftovers. d.mu is held.
func (d *Daemon) forgetKept(spec string) (DetachResult, error) {
	i := slices.IndexFunc(d.kept, func(r Record) bool { return r.Spec == spec })
	if err := d.opts.Kernel.Forget(d.kept[i]); err != nil {
		return DetachResult{}, fmt.Errorf("detaching %s: %w", spec, err)
	}
	d.dropKept(spec)
	if err := d.save(); err != nil {
		return DetachResult{}, err
	}
	d.log.Info("Detached", "netns", spec, "kept_record", true)
	return DetachResult{Netns: spec, WasAttached: true}, nil
}

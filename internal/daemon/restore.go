package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Restore takes back the namespaces of the state file. A namespace is taken
// back through its spec when that still opens it, else through whatever still
// holds it (a process or a bind mount, found by inode and confirmed by cookie,
// since inodes are reused), keeping the spec as its name. Only a namespace that
// nothing holds any more is forgotten. One log line each. A namespace that
// exists but cannot be attached stays in the state file (its redirect stays
// too, so its sandbox fails closed) and is logged.
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
		d.restoreByInode(rec, "name no longer exists")
		return
	}
	if err != nil {
		d.keep(rec, err)
		return
	}
	if ns.Inode() != rec.Inode {
		ns.Close()
		d.restoreByInode(rec, "name now refers to another namespace")
		return
	}
	if _, ok := d.attached[rec.Inode]; ok {
		ns.Close() // two records of one namespace: the first one wins
		return
	}

	a, err := d.attach(ns, rec.Since)
	if err != nil {
		ns.Close()
		d.keep(rec, err)
		return
	}
	d.log.Info("Re-attached", "netns", rec.Spec, "cookie", a.rec.Cookie,
		"port4", a.rec.Port4, "port6", a.rec.Port6)
}

// restoreByInode takes back a namespace whose spec no longer opens it, through
// a process or bind mount that still holds it. d.mu is held.
func (d *Daemon) restoreByInode(rec Record, why string) {
	ns, err := d.opts.Kernel.Find(rec)
	if errors.Is(err, ErrNoNamespace) {
		d.forget(rec, why+"; no process or bind mount holds the namespace")
		return
	}
	if err != nil {
		d.keep(rec, err)
		return
	}
	cookie, err := ns.Cookie()
	if err != nil {
		ns.Close()
		d.keep(rec, err)
		return
	}
	if cookie != rec.Cookie {
		ns.Close()
		d.forget(rec, why+"; its inode now belongs to another namespace")
		return
	}
	if _, ok := d.attached[rec.Inode]; ok {
		ns.Close()
		return
	}

	a, err := d.attach(ns, rec.Since)
	if err != nil {
		ns.Close()
		d.keep(rec, err)
		return
	}
	a.nameGone = true
	d.log.Warn("Re-attached a namespace that outlived its name; it stays intercepted "+
		"until its last process exits (detach it by this name to stop)",
		"netns", rec.Spec, "reason", why, "cookie", a.rec.Cookie,
		"port4", a.rec.Port4, "port6", a.rec.Port6)
}

// keep leaves rec in the state file for a later start. d.mu is held.
func (d *Daemon) keep(rec Record, err error) {
	d.log.Error("Keeping namespace for a later start", "netns", rec.Spec, "error", err)
	d.kept = append(d.kept, rec)
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

// Watch calls CheckVanished every interval until ctx is done.
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

// CheckVanished detaches every attached namespace that is gone, and returns
// their specs. A namespace is gone when its spec no longer opens it AND no
// process, thread or bind mount holds it any more (the daemon's own listeners
// and file descriptor keep it alive, but they make no traffic). A namespace
// whose name was deleted, or whose pid:N process exited, while other processes
// still live in it stays attached and intercepted: detaching it would let those
// processes out directly. That is logged once.
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
			if a.nameGone {
				a.nameGone = false
				d.log.Info("Namespace has its name again", "netns", a.rec.Spec)
			}
			continue
		}
		inUse, err := d.opts.Kernel.InUse(a.rec)
		if err != nil {
			// Cannot tell: keep intercepting, look again next time.
			d.log.Error("Checking whether a namespace is still in use; keeping it",
				"netns", a.rec.Spec, "error", err)
			continue
		}
		if inUse {
			if !a.nameGone {
				a.nameGone = true
				d.log.Warn("Namespace outlived its name; processes still live in it, "+
					"so it stays intercepted (detach it by this name to stop)",
					"netns", a.rec.Spec, "reason", why, "cookie", a.rec.Cookie)
			}
			continue
		}
		if err := d.detach(a); err != nil {
			d.log.Error("Detaching vanished namespace", "netns", a.rec.Spec, "error", err)
			continue
		}
		d.log.Info("Detached vanished namespace", "netns", a.rec.Spec,
			"reason", why+"; no process or bind mount holds the namespace")
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
		return "name no longer exists"
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

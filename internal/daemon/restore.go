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
// back through its spec when that still opens it (same inode and cookie), else
// through whatever still holds it (a process or a bind mount, found by inode
// and confirmed by cookie, since inodes are reused), keeping the spec as its
// name. A namespace that nothing visible holds any more is retired, not
// forgotten: see retire. One log line each. A namespace that exists but cannot
// be attached stays in the state file (its redirect stays too, so its sandbox
// fails closed) and is logged.
func (d *Daemon) Restore(ctx context.Context) error {
	st, err := ReadState(d.opts.StatePath)
	if err != nil {
		return err
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	d.retired = append(d.retired, st.Retired...)
	for _, rec := range st.Attached {
		d.restore(rec)
	}
	d.gcRetired()
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
	cookie, err := ns.Cookie()
	if err != nil {
		ns.Close()
		d.keep(rec, err)
		return
	}
	if cookie != rec.Cookie {
		// Same inode, other cookie: the recorded namespace died (a live one
		// keeps its inode) and the name was made again. The new namespace is
		// not attached: the launcher did not ask for it.
		ns.Close()
		d.forget(rec, fmt.Sprintf("name now refers to another namespace (cookie %d), "+
			"which is left unattached; the recorded one is gone, its inode reused", cookie))
		return
	}
	a := d.reattach(ns, rec)
	if a == nil {
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
		d.retireRecord(rec, why+"; no process or bind mount holds the namespace")
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
		// A live namespace has the recorded inode: the recorded one is freed.
		ns.Close()
		d.forget(rec, why+"; its inode now belongs to another namespace")
		return
	}
	a := d.reattach(ns, rec)
	if a == nil {
		return
	}
	a.nameGone = true
	d.log.Warn("Re-attached a namespace that outlived its name; it stays intercepted "+
		"until its last process exits (detach it by cookie:N to stop); a namespace "+
		"the name may point to now is not attached",
		"netns", rec.Spec, "reason", why, "cookie", a.rec.Cookie,
		"port4", a.rec.Port4, "port6", a.rec.Port6)
}

// reattach attaches ns, the namespace of rec, again. It returns nil when
// another record of the same namespace came first (that one wins) or when the
// attach failed (rec is kept for a later start); either way ns is closed.
// d.mu is held.
func (d *Daemon) reattach(ns Namespace, rec Record) *attachment {
	if _, ok := d.attached[rec.Cookie]; ok {
		ns.Close()
		return nil
	}
	a, err := d.attach(ns, rec.Since)
	if err != nil {
		ns.Close()
		d.keep(rec, err)
		return nil
	}
	return a
}

// keep leaves rec in the state file for a later start. d.mu is held.
func (d *Daemon) keep(rec Record, err error) {
	d.log.Error("Keeping namespace for a later start", "netns", rec.Spec, "error", err)
	d.kept = append(d.kept, rec)
}

// forget drops the kernel leftovers of a namespace known to be freed (its inode
// belongs to another namespace now). d.mu is held.
func (d *Daemon) forget(rec Record, why string) {
	if err := d.opts.Kernel.Forget(rec); err != nil {
		d.log.Error("Forgetting vanished namespace", "netns", rec.Spec, "reason", why,
			"error", err)
		return
	}
	d.log.Info("Forgot vanished namespace", "netns", rec.Spec, "cookie", rec.Cookie,
		"reason", why)
}

// retire stops serving a, which nothing visible holds any more, without
// removing its redirect. d.mu is held.
//
// Why the redirect stays: a namespace also lives on while a socket made inside
// it is open, and such a socket can still connect out (a process may create
// one, then unshare into a new namespace). No scan of processes and mounts can
// see that, so "no holder found" does not prove the namespace is freed. Its
// nftables table lives and dies with the namespace and keeps sending the
// intercepted ports to the now-closed listener port (connection refused),
// rejecting UDP to them and, in strict mode, everything else; the BPF entry
// keyed by its cookie does the same in ebpf mode. A cookie is never reused, so
// a stale entry costs only a slot in the BPF map: retired records stay in the
// state file and their entries are dropped oldest first only when the map
// nears capacity (gcRetired), when the inode turns up on another namespace
// (the old one is then provably freed), or on an explicit detach.
func (d *Daemon) retire(a *attachment, why string) error {
	a.closeListeners()
	delete(d.attached, a.rec.Cookie)
	a.served.Wait()
	err := a.ns.Close()
	d.retireRecord(a.rec, why)
	return err
}

// retireRecord records rec as retired. d.mu is held.
func (d *Daemon) retireRecord(rec Record, why string) {
	rec.Retired = time.Now().UTC()
	d.retired = append(d.retired, rec)
	d.log.Warn("Stopped serving a namespace nothing visible holds; its redirect stays "+
		"in place, so anything still in it fails closed (detach cookie:N to drop it)",
		"netns", rec.Spec, "cookie", rec.Cookie, "reason", why)
	d.gcRetired()
}

// gcRetired drops the redirect entries of the oldest retired namespaces while
// attached plus retired would fill more than three quarters of the redirect's
// namespace map. d.mu is held.
func (d *Daemon) gcRetired() {
	limit := d.opts.NetnsCapacity * 3 / 4
	if len(d.attached)+len(d.retired) <= limit {
		return
	}
	slices.SortStableFunc(d.retired, func(x, y Record) int { return x.Retired.Compare(y.Retired) })
	for len(d.retired) > 0 && len(d.attached)+len(d.retired) > limit {
		rec := d.retired[0]
		if err := d.opts.Kernel.Forget(rec); err != nil {
			d.log.Error("Dropping the redirect of a retired namespace", "netns", rec.Spec,
				"cookie", rec.Cookie, "error", err)
			return
		}
		d.log.Info("Dropped the redirect entry of the oldest retired namespace to make "+
			"room", "netns", rec.Spec, "cookie", rec.Cookie, "retired", rec.Retired)
		d.retired = d.retired[1:]
	}
}

// dropReusedInode forgets retired and kept records with rec's inode but another
// cookie: a live namespace (rec's) has that inode, so theirs is freed. d.mu is
// held.
func (d *Daemon) dropReusedInode(rec Record) {
	freed := func(r Record) bool { return r.Inode == rec.Inode && r.Cookie != rec.Cookie }
	for _, r := range slices.Concat(d.retired, d.kept) {
		if freed(r) {
			d.forget(r, "its inode now belongs to another namespace")
		}
	}
	d.retired = slices.DeleteFunc(d.retired, freed)
	d.kept = slices.DeleteFunc(d.kept, freed)
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

// CheckVanished retires every attached namespace that looks gone, and returns
// their specs. A namespace looks gone when its spec no longer opens it AND no
// process, thread or bind mount holds it any more (the daemon's own listeners
// and file descriptor keep it alive, but they make no traffic). Retiring stops
// serving it but leaves its redirect in place; see retire. A namespace whose
// name was deleted, or whose pid:N process exited, while other processes still
// live in it stays attached and intercepted: detaching it would let those
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
					"so it stays intercepted (detach it by cookie:N to stop)",
					"netns", a.rec.Spec, "reason", why, "cookie", a.rec.Cookie)
			}
			continue
		}
		if err := d.retire(a, why+"; no process or bind mount holds the namespace"); err != nil {
			d.log.Error("Closing a retired namespace", "netns", a.rec.Spec, "error", err)
		}
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

// save writes the attached, kept and retired records to the state file. d.mu
// is held.
func (d *Daemon) save() error {
	recs := slices.Clone(d.kept)
	for _, a := range d.attached {
		recs = append(recs, a.rec)
	}
	bySpec := func(x, y Record) int {
		if c := strings.Compare(x.Spec, y.Spec); c != 0 {
			return c
		}
		return cmpUint(x.Cookie, y.Cookie)
	}
	slices.SortFunc(recs, bySpec)
	return WriteState(d.opts.StatePath, State{Attached: recs, Retired: d.retired})
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// dropRecords removes kept and retired records of cookie, now attached again.
// d.mu is held.
func (d *Daemon) dropRecords(cookie uint64) {
	has := func(r Record) bool { return r.Cookie == cookie }
	d.kept = slices.DeleteFunc(d.kept, has)
	d.retired = slices.DeleteFunc(d.retired, has)
}

// removeRecordRedirect removes the redirect of a namespace that is not
// attached: all of it (table included) when the namespace can still be found
// by inode and cookie, else the BPF entry, the table going with the namespace.
// d.mu is held.
func (d *Daemon) removeRecordRedirect(rec Record) error {
	ns, err := d.opts.Kernel.Find(rec)
	if err == nil {
		defer ns.Close()
		if c, cerr := ns.Cookie(); cerr == nil && c == rec.Cookie {
			return d.opts.Kernel.Detach(ns)
		}
	}
	return d.opts.Kernel.Forget(rec)
}

// forgetRecord detaches a kept or retired record with cookie: it is dropped
// along with its kernel leftovers (the BPF entry; a retired namespace's table
// can only go with the namespace). Nothing to drop is WasAttached false. d.mu
// is held.
func (d *Daemon) forgetRecord(spec string, cookie uint64) (DetachResult, error) {
	var rec Record
	found := false
	for _, r := range slices.Concat(d.kept, d.retired) {
		if r.Cookie == cookie {
			rec, found = r, true
			break
		}
	}
	if !found {
		return DetachResult{Netns: spec}, nil
	}
	if err := d.removeRecordRedirect(rec); err != nil {
		return DetachResult{}, fmt.Errorf("detaching %s: %w", spec, err)
	}
	d.dropRecords(cookie)
	if err := d.save(); err != nil {
		return DetachResult{}, err
	}
	d.log.Info("Detached", "netns", rec.Spec, "cookie", cookie, "record_only", true)
	return DetachResult{Netns: rec.Spec, Cookie: cookie, WasAttached: true}, nil
}

//go:build linux

package redirect

import (
	"errors"
	"fmt"
	"maps"

	"github.com/hermes-netd/hermes-netd/bpf"
	"github.com/hermes-netd/hermes-netd/netsetup"
)

// Attach starts intercepting ns's connections to the intercepted ports, sending
// them to l. The nftables table is installed in both modes (it is the whole
// redirect in ModeNFT and the fail-closed fallback in ModeEBPF); in ModeEBPF the
// netns cookie is also registered with the BPF programs. Attaching again, with
// the same or new listeners, is harmless.
func (r *Redirector) Attach(ns *netsetup.NS, l Listeners) error {
	if l.Port4 == 0 && l.Port6 == 0 {
		return fmt.Errorf("attaching netns %s: no listener port given", ns)
	}
	cookie, err := ns.Cookie()
	if err != nil {
		return fmt.Errorf("attaching netns %s: %w", ns, err)
	}

	r.mu.Lock()
	defer r.mu.Unlock()

	// Namespace inodes are reused after a namespace dies: a different cookie under
	// the same inode is a dead namespace's registration, drop it.
	if old, ok := r.attached[ns.Inode()]; ok && old != cookie {
		if err := r.unregister(old); err != nil {
			return fmt.Errorf("attaching netns %s: %w", ns, err)
		}
	}

	cfg := netsetup.TableConfig{
		Ports: r.opts.Ports, Listen4: l.Port4, Listen6: l.Port6, Strict: r.opts.Strict,
		DNS: r.opts.StrictDNS,
	}
	if err := ns.EnsureTable(cfg); err != nil {
		return fmt.Errorf("attaching netns %s: %w", ns, err)
	}
	if r.mode == ModeEBPF {
		b := r.progs.Load()
		if b == nil {
			return fmt.Errorf("attaching netns %s: redirector is closed", ns)
		}
		if err := b.Register(cookie, l); err != nil {
			return fmt.Errorf("attaching netns %s: %w", ns, err)
		}
	}
	r.attached[ns.Inode()] = cookie
	return nil
}

// Detach stops intercepting ns. It is idempotent, and a namespace that is
// already gone (deleted, or ns already closed) is cleaned up without error: its
// BPF registration is removed by the cookie recorded at Attach, and its table
// went away with it.
func (r *Redirector) Detach(ns *netsetup.NS) error {
	r.mu.Lock()
	defer r.mu.Unlock()

	cookie, known := r.attached[ns.Inode()]
	if ns.Fd() >= 0 {
		// The fd keeps the namespace alive, so this works even after `ip netns del`.
		if c, err := ns.Cookie(); err == nil {
			cookie, known = c, true
		}
		if err := ns.RemoveTable(); err != nil {
			return fmt.Errorf("detaching netns %s: %w", ns, err)
		}
	}
	if known {
		if err := r.unregister(cookie); err != nil {
			return fmt.Errorf("detaching netns %s: %w", ns, err)
		}
	}
	delete(r.attached, ns.Inode())
	return nil
}

// DetachCookie removes the BPF registration of a namespace known only by its
// cookie, for a namespace that vanished while the daemon was down (its table
// vanished with it). A cookie that is not registered is not an error.
func (r *Redirector) DetachCookie(cookie uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()

	if err := r.unregister(cookie); err != nil {
		return fmt.Errorf("detaching netns cookie %d: %w", cookie, err)
	}
	for ino, c := range r.attached {
		if c == cookie {
			delete(r.attached, ino)
		}
	}
	return nil
}

// unregister removes cookie from the BPF programs' map; a no-op in ModeNFT.
func (r *Redirector) unregister(cookie uint64) error {
	b := r.progs.Load()
	if b == nil {
		return nil
	}
	return b.Unregister(cookie)
}

// Attached returns the namespaces attached through r: netns inode -> cookie.
func (r *Redirector) Attached() map[uint64]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.attached)
}

// Registered returns the cookies the BPF programs intercept for, with their
// listeners, including those registered by an earlier run of the daemon (the
// pinned map outlives it). It is empty in ModeNFT.
func (r *Redirector) Registered() (map[uint64]Listeners, error) {
	b := r.progs.Load()
	if b == nil {
		return map[uint64]Listeners{}, nil
	}
	return b.Registered()
}

// Close releases r's file descriptors and leaves interception in place: the
// pinned BPF programs and the nftables tables keep sandboxes fail-closed while the
// daemon restarts.
func (r *Redirector) Close() error {
	b := r.progs.Swap(nil)
	if b == nil {
		return nil
	}
	if err := b.Close(); err != nil {
		return fmt.Errorf("closing bpf redirector: %w", err)
	}
	return nil
}

// Uninstall removes the BPF programs, links and pins (in both modes, so that it
// also cleans up after an earlier ebpf-mode run) and forgets every attachment.
// The nftables tables of namespaces still alive are not touched: callers Detach
// each namespace first, which also removes its table. Teardown goes on after a
// failure and reports all of them.
func (r *Redirector) Uninstall() error {
	r.mu.Lock()
	defer r.mu.Unlock()

	var errs []error
	if b := r.progs.Swap(nil); b != nil {
		errs = append(errs, b.Close())
	}
	if err := bpf.Uninstall(r.opts.PinDir); err != nil {
		errs = append(errs, fmt.Errorf("uninstalling bpf redirect: %w", err))
	}
	clear(r.attached)
	return errors.Join(errs...)
}

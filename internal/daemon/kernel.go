//go:build linux

package daemon

import (
	"errors"
	"fmt"
	"net"

	"github.com/hermes-netd/hermes-netd/internal/config"
	"github.com/hermes-netd/hermes-netd/internal/redirect"
	"github.com/hermes-netd/hermes-netd/netsetup"
	"github.com/hermes-netd/hermes-netd/proxy"
)

// redirectKernel is the production Kernel: namespaces from netsetup, the
// redirect from internal/redirect.
type redirectKernel struct {
	r *redirect.Redirector
}

// openKernel sets up the redirect in the configured mode (one log line says
// which and why).
func openKernel(cfg *config.Config, o RunOptions) (*redirectKernel, error) {
	mode, err := redirect.ParseMode(cfg.Mode)
	if err != nil {
		return nil, err
	}
	r, err := redirect.New(redirect.Options{
		Mode:       mode,
		Ports:      cfg.Ports,
		Strict:     cfg.Strict,
		StrictDNS:  cfg.StrictDNS,
		PinDir:     o.PinDir,
		CgroupRoot: o.CgroupRoot,
		Logger:     o.Logger,
	})
	if err != nil {
		return nil, err
	}
	return &redirectKernel{r: r}, nil
}

func (k *redirectKernel) Open(spec string) (Namespace, error) {
	ns, err := netsetup.Open(spec)
	if errors.Is(err, netsetup.ErrNotFound) {
		return nil, notFound{err}
	}
	if err != nil {
		return nil, err
	}
	return ns, nil
}

func (k *redirectKernel) Attach(ns Namespace, l Listeners) error {
	n, err := realNS(ns)
	if err != nil {
		return err
	}
	return k.r.Attach(n, redirect.Listeners{Port4: l.Port4, Port6: l.Port6})
}

func (k *redirectKernel) Detach(ns Namespace) error {
	n, err := realNS(ns)
	if err != nil {
		return err
	}
	return k.r.Detach(n)
}

func (k *redirectKernel) Forget(rec Record) error { return k.r.DetachCookie(rec.Cookie) }

func (k *redirectKernel) InUse(rec Record) (bool, error) { return netsetup.InUse(rec.Inode) }

func (k *redirectKernel) Find(rec Record) (Namespace, error) {
	ns, err := netsetup.FindByInode(rec.Inode)
	if errors.Is(err, netsetup.ErrNotFound) {
		return nil, notFound{err}
	}
	if err != nil {
		return nil, err
	}
	ns.SetSpec(rec.Spec)
	return ns, nil
}

// Mode is the redirect mode in use, ebpf or nft.
func (k *redirectKernel) Mode() string { return string(k.r.Mode()) }

// ModeReason says why that mode was chosen.
func (k *redirectKernel) ModeReason() string { return k.r.Reason() }

// Close releases the redirect's file descriptors; interception stays installed.
func (k *redirectKernel) Close() error { return k.r.Close() }

func realNS(ns Namespace) (*netsetup.NS, error) {
	n, ok := ns.(*netsetup.NS)
	if !ok {
		return nil, fmt.Errorf("namespace %s is a %T, not opened by netsetup", ns.Spec(), ns)
	}
	return n, nil
}

// notFound keeps netsetup's message (it names the missing file) and matches
// ErrNoNamespace as well as netsetup.ErrNotFound.
type notFound struct{ err error }

func (e notFound) Error() string   { return e.err.Error() }
func (e notFound) Unwrap() []error { return []error{e.err, ErrNoNamespace} }

// proxyAdapter serves a namespace's listener with the proxy, looking original
// destinations up by the namespace's cookie.
type proxyAdapter struct {
	srv  *proxy.Server
	kern *redirectKernel
}

func (p proxyAdapter) Serve(ln net.Listener, sandbox string, cookie uint64) error {
	return p.srv.Serve(ln, proxy.Sandbox{
		Name: sandbox,
		// A spec can name two namespaces in turn; the cookie never does.
		ID: sandboxID(cookie),
		Origin: func(c net.Conn) (proxy.Origin, error) {
			o, err := p.kern.r.Origin(c, cookie)
			if err != nil {
				return proxy.Origin{}, err
			}
			return proxy.Origin{Dst: o.Dst, PID: o.PID, UID: o.UID, CgroupID: o.CgroupID}, nil
		},
	})
}

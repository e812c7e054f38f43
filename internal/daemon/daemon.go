package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hermes-netd/hermes-netd/internal/audit"
	"github.com/hermes-netd/hermes-netd/internal/version"
)

// DefaultPort is the port of the listeners inside each attached namespace. Each
// namespace has its own port space, so one fixed port serves them all.
const DefaultPort = 15443

// ErrNoNamespace is wrapped by Kernel.Open when the namespace does not exist.
var ErrNoNamespace = errors.New("no such network namespace")

// Listeners are the ports of the listeners inside one namespace; 0 means none.
type Listeners struct{ Port4, Port6 uint16 }

// Namespace is an open network namespace (a *netsetup.NS in production). While it
// is open the namespace stays alive, even if its name is deleted.
type Namespace interface {
	Spec() string
	Inode() uint64
	Cookie() (uint64, error)
	EnsureLoopbackUp() error
	Listen(network, addr string) (net.Listener, error)
	Close() error
}

// Kernel is the redirect layer (netsetup and internal/redirect in production).
type Kernel interface {
	// Open opens a namespace by spec; a missing one gives an error wrapping
	// ErrNoNamespace.
	Open(spec string) (Namespace, error)
	// Attach points the namespace's intercepted ports at l. Idempotent.
	Attach(ns Namespace, l Listeners) error
	// Detach removes the redirect of an open namespace. Idempotent.
	Detach(ns Namespace) error
	// Forget removes what is left of the redirect of a namespace that no longer
	// exists (rec.Cookie). Idempotent.
	Forget(rec Record) error
	// InUse reports whether the namespace with inode rec.Inode can still make
	// traffic: a process or thread has it as its network namespace, or it is
	// bind-mounted. Asked only once rec.Spec no longer opens it.
	InUse(rec Record) (bool, error)
	// Find opens the live namespace with inode rec.Inode through whatever holds
	// it, named rec.Spec; an error wrapping ErrNoNamespace when nothing does.
	// The caller checks the cookie: inodes are reused.
	Find(rec Record) (Namespace, error)
}

// Proxy serves the connections accepted on ln for the namespace named sandbox.
// Serve returns when ln is closed. cookie is the namespace's netns cookie, which
// the production Proxy uses to look up original destinations.
type Proxy interface {
	Serve(ln net.Listener, sandbox string, cookie uint64) error
}

// Options configure a Daemon. Kernel, Proxy and StatePath are required.
type Options struct {
	Kernel    Kernel
	Proxy     Proxy
	StatePath string
	Port      uint16 // listener port inside each namespace; DefaultPort when 0
	Logger    *slog.Logger
	// Counters, when set, give each attachment's request count.
	Counters *audit.Counters
	// Fill, when set, completes a Status with what the daemon core does not own:
	// mode, config, providers and counters.
	Fill func(*Status)
	// Reload, when set, reloads the configuration (SIGHUP and POST /v1/reload).
	Reload func(context.Context) (ReloadResult, error)
	// OwnNetns is the inode of the daemon's own network namespace, which is
	// never attached: its upstream connections would be intercepted too. 0
	// skips the check.
	OwnNetns uint64
	// InitNetns is the inode of the initial network namespace (that of
	// /proc/1/ns/net), which is never attached either: it is the host's own
	// network, not a sandbox. 0 skips the check.
	InitNetns uint64
	// NetnsCapacity is how many namespace cookies the redirect can hold
	// (attached plus retired); DefaultNetnsCapacity when 0. Retired cookies
	// are dropped, oldest first, once they would fill more than three quarters.
	NetnsCapacity int
}

// DefaultNetnsCapacity is the size of the BPF redirect's namespace map
// (HERMES_MAX_NETNS in bpf/hermes.h).
const DefaultNetnsCapacity = 16384

// Daemon keeps the set of attached namespaces. Its methods are safe for
// concurrent use.
type Daemon struct {
	opts    Options
	log     *slog.Logger
	started time.Time

	mu sync.Mutex
	// attached is keyed by netns cookie: unlike a spec (a name can be deleted
	// and made again, a pid reused) a cookie names one namespace for good.
	attached map[uint64]*attachment
	// kept are state records that could not be taken back for a reason other
	// than the namespace being gone; they stay in the state file for the next start.
	kept []Record
	// retired are namespaces judged gone without an explicit detach; see retire.
	retired []Record
	closed  bool
}

type attachment struct {
	rec      Record
	ns       Namespace
	lns      []net.Listener
	accepted atomic.Uint64
	served   sync.WaitGroup
	// nameGone is set once rec.Spec stopped naming the namespace while
	// processes still live in it: it stays intercepted, logged once. d.mu.
	nameGone bool
}

// New returns a Daemon with nothing attached; call Restore to take back the state.
func New(opts Options) (*Daemon, error) {
	if opts.Kernel == nil || opts.Proxy == nil || opts.StatePath == "" {
		return nil, errors.New("daemon: Kernel, Proxy and StatePath are required")
	}
	if opts.Port == 0 {
		opts.Port = DefaultPort
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.NetnsCapacity <= 0 {
		opts.NetnsCapacity = DefaultNetnsCapacity
	}
	return &Daemon{
		opts:     opts,
		log:      opts.Logger,
		started:  time.Now(),
		attached: map[uint64]*attachment{},
	}, nil
}

// Attach attaches the namespace named by spec, or reports the existing attachment
// if it is already attached (under this or another spec).
func (d *Daemon) Attach(ctx context.Context, spec string) (Attachment, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return Attachment{}, errors.New("daemon is shutting down")
	}
	if _, ok := parseCookieSpec(spec); ok {
		return Attachment{}, fmt.Errorf("%w: cannot attach %s: cookie:N only picks an "+
			"attachment to detach; attach by name, path or pid:N", ErrBadRequest, spec)
	}

	ns, err := d.opts.Kernel.Open(spec)
	if err != nil {
		return Attachment{}, err
	}
	if d.opts.OwnNetns != 0 && ns.Inode() == d.opts.OwnNetns {
		ns.Close()
		return Attachment{}, fmt.Errorf("%w: refusing to attach %s: it is the daemon's "+
			"own network namespace, whose upstream traffic must not be intercepted; "+
			"attach the sandbox's namespace instead", ErrBadRequest, spec)
	}
	if d.opts.InitNetns != 0 && ns.Inode() == d.opts.InitNetns {
		ns.Close()
		return Attachment{}, fmt.Errorf("%w: refusing to attach %s: it is the host's "+
			"initial network namespace, not a sandbox's; attach the sandbox's "+
			"namespace instead", ErrBadRequest, spec)
	}
	cookie, err := ns.Cookie()
	if err != nil {
		ns.Close()
		return Attachment{}, fmt.Errorf("attaching %s: %w", spec, err)
	}
	if a, ok := d.attached[cookie]; ok {
		ns.Close()
		st := a.status(d.opts.Counters)
		st.Existing = true
		return st, nil
	}

	a, err := d.attach(ns, time.Now().UTC())
	if err != nil {
		ns.Close()
		return Attachment{}, err
	}
	d.dropRecords(a.rec.Cookie)
	if err := d.save(); err != nil {
		d.log.Error("Saving state", "error", err)
	}
	d.log.Info("Attached", "netns", spec, "cookie", a.rec.Cookie,
		"port4", a.rec.Port4, "port6", a.rec.Port6)
	return a.status(d.opts.Counters), nil
}

// attach makes the listeners inside ns, points the redirect at them and starts
// serving. On failure it undoes what it did, except closing ns. d.mu is held.
func (d *Daemon) attach(ns Namespace, since time.Time) (*attachment, error) {
	spec := ns.Spec()
	if err := ns.EnsureLoopbackUp(); err != nil {
		return nil, fmt.Errorf("attaching %s: %w", spec, err)
	}
	cookie, err := ns.Cookie()
	if err != nil {
		return nil, fmt.Errorf("attaching %s: %w", spec, err)
	}

	a := &attachment{ns: ns, rec: Record{Spec: spec, Inode: ns.Inode(), Cookie: cookie,
		Since: since}}
	ln4, port4, err := d.listen(ns, "tcp4", "127.0.0.1")
	if err != nil {
		return nil, fmt.Errorf("attaching %s: %w", spec, err)
	}
	a.lns, a.rec.Port4 = append(a.lns, ln4), port4

	// A namespace may have IPv6 disabled; it then gets IPv4 interception only.
	if ln6, port6, err := d.listen(ns, "tcp6", "::1"); err != nil {
		d.log.Warn("No IPv6 listener, intercepting IPv4 only", "netns", spec, "error", err)
	} else {
		a.lns, a.rec.Port6 = append(a.lns, ln6), port6
	}

	l := Listeners{Port4: a.rec.Port4, Port6: a.rec.Port6}
	if err := d.opts.Kernel.Attach(ns, l); err != nil {
		a.closeListeners()
		return nil, fmt.Errorf("attaching %s: %w", spec, err)
	}

	for _, ln := range a.lns {
		a.served.Add(1)
		go d.serve(a, ln)
	}
	d.attached[a.rec.Cookie] = a
	d.dropReusedInode(a.rec)
	d.gcRetired()
	return a, nil
}

// listen makes a listener on host inside ns, on the configured port. If the
// port is taken there (a sandbox process may bind it while the daemon is
// down), it takes a port the kernel chooses instead: the redirect is per
// namespace, so it simply points at that port. It returns the port in use.
func (d *Daemon) listen(ns Namespace, network, host string) (net.Listener, uint16, error) {
	addr := net.JoinHostPort(host, strconv.Itoa(int(d.opts.Port)))
	ln, err := ns.Listen(network, addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		taken := err
		ln, err = ns.Listen(network, net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, 0, fmt.Errorf("listening on %s inside it: %w; and on a free "+
				"port: %w", addr, taken, err)
		}
		port, perr := listenerPort(ln)
		if perr != nil {
			ln.Close()
			return nil, 0, perr
		}
		d.log.Warn("Listen port taken inside the namespace; using a port the kernel "+
			"chose (a process there holds the configured one)", "netns", ns.Spec(),
			"addr", addr, "port", port)
		return ln, port, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("listening on %s inside it: %w", addr, err)
	}
	return ln, d.opts.Port, nil
}

// listenerPort is the port ln listens on.
func listenerPort(ln net.Listener) (uint16, error) {
	_, p, err := net.SplitHostPort(ln.Addr().String())
	if err != nil {
		return 0, fmt.Errorf("reading the port of listener %s: %w", ln.Addr(), err)
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil || port == 0 {
		return 0, fmt.Errorf("listener %s has no usable port", ln.Addr())
	}
	return uint16(port), nil
}

func (d *Daemon) serve(a *attachment, ln net.Listener) {
	defer a.served.Done()
	err := d.opts.Proxy.Serve(countingListener{ln, &a.accepted}, a.rec.Spec, a.rec.Cookie)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		d.log.Error("Listener stopped", "netns", a.rec.Spec, "addr", ln.Addr().String(),
			"error", err)
	}
}

// Detach detaches the namespace spec names now, found by its cookie. When spec
// opens nothing any more, it detaches the one attachment (or kept or retired
// record) made under that spec; if there are several it refuses and lists
// their cookies, to be detached as "cookie:N". Detaching what is not attached
// (or no longer exists) succeeds with WasAttached false.
func (d *Daemon) Detach(ctx context.Context, spec string) (DetachResult, error) {
	d.mu.Lock()
	defer d.mu.Unlock()

	if cookie, ok := parseCookieSpec(spec); ok {
		return d.detachCookie(spec, cookie)
	}
	ns, err := d.opts.Kernel.Open(spec)
	if err == nil {
		cookie, cerr := ns.Cookie()
		ns.Close()
		if cerr != nil {
			return DetachResult{}, fmt.Errorf("detaching %s: %w", spec, cerr)
		}
		return d.detachCookie(spec, cookie)
	}
	byRecordOnly := !errors.Is(err, ErrNoNamespace)

	// The spec names nothing now (or cannot be opened): act on what was
	// attached under it, if that is unambiguous.
	var cookies []uint64
	if !byRecordOnly {
		for c, a := range d.attached {
			if a.rec.Spec == spec {
				cookies = append(cookies, c)
			}
		}
	}
	lists := [][]Record{d.kept, d.retired}
	if byRecordOnly {
		lists = lists[:1] // kept records are the ones that may not open
	}
	for _, recs := range lists {
		for _, r := range recs {
			if r.Spec == spec {
				cookies = append(cookies, r.Cookie)
			}
		}
	}
	slices.Sort(cookies)
	cookies = slices.Compact(cookies)
	switch {
	case len(cookies) == 1:
		return d.detachCookie(spec, cookies[0])
	case len(cookies) > 1:
		list := make([]string, len(cookies))
		for i, c := range cookies {
			list[i] = strconv.FormatUint(c, 10)
		}
		return DetachResult{}, fmt.Errorf("%w: %s names no namespace now, and %d "+
			"namespaces were attached under that name (cookies %s); detach one with "+
			"`hermes-netd detach cookie:%d` (see `hermes-netd status` for which is which)",
			ErrBadRequest, spec, len(cookies), strings.Join(list, ", "), cookies[0])
	case byRecordOnly:
		return DetachResult{}, err
	}
	return DetachResult{Netns: spec}, nil
}

// detachCookie detaches the attachment, kept or retired record with cookie.
// d.mu is held.
func (d *Daemon) detachCookie(spec string, cookie uint64) (DetachResult, error) {
	a := d.attached[cookie]
	if a == nil {
		return d.forgetRecord(spec, cookie)
	}
	err := d.detach(a)
	if serr := d.save(); serr != nil {
		d.log.Error("Saving state", "error", serr)
	}
	if err != nil {
		return DetachResult{}, err
	}
	d.log.Info("Detached", "netns", a.rec.Spec, "cookie", a.rec.Cookie)
	return DetachResult{Netns: a.rec.Spec, Cookie: cookie, WasAttached: true}, nil
}

// parseCookieSpec reads "cookie:N".
func parseCookieSpec(spec string) (uint64, bool) {
	v, ok := strings.CutPrefix(spec, "cookie:")
	if !ok {
		return 0, false
	}
	c, err := strconv.ParseUint(v, 10, 64)
	return c, err == nil && c != 0
}

// detach stops serving a, removes its redirect and forgets it. d.mu is held.
func (d *Daemon) detach(a *attachment) error {
	// Listeners first: a connection made between the two steps is refused rather
	// than let out directly.
	a.closeListeners()
	err := d.opts.Kernel.Detach(a.ns)
	if err != nil {
		// Keep serving nothing but keep the record: the redirect still points
		// at the closed listeners, so the sandbox fails closed until a retry.
		return fmt.Errorf("detaching %s: %w", a.rec.Spec, err)
	}
	delete(d.attached, a.rec.Cookie)
	a.served.Wait()
	return a.ns.Close()
}

// Attachments returns the attached namespaces, sorted by spec.
func (d *Daemon) Attachments() []Attachment {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Attachment, 0, len(d.attached))
	for _, a := range d.attached {
		out = append(out, a.status(d.opts.Counters))
	}
	slices.SortFunc(out, func(x, y Attachment) int { return strings.Compare(x.Spec, y.Spec) })
	return out
}

// Status returns the daemon's status.
func (d *Daemon) Status(ctx context.Context) Status {
	st := Status{
		Version:  version.Version,
		PID:      os.Getpid(),
		Started:  d.started.UTC(),
		Attached: d.Attachments(),
	}
	d.mu.Lock()
	st.Kept = slices.Clone(d.kept)
	st.Retired = slices.Clone(d.retired)
	d.mu.Unlock()
	if d.opts.Fill != nil {
		d.opts.Fill(&st)
	}
	return st
}

// Reload reloads the configuration through Options.Reload.
func (d *Daemon) Reload(ctx context.Context) (ReloadResult, error) {
	if d.opts.Reload == nil {
		return ReloadResult{}, errors.New("this daemon cannot reload its configuration")
	}
	return d.opts.Reload(ctx)
}

// Close stops serving every namespace but leaves their redirects in place and
// keeps the state file, so that the sandboxes fail closed while the daemon is
// down and a restarted daemon takes them back. It waits for the Serve calls to
// return; draining in-flight connections is the proxy's Shutdown.
func (d *Daemon) Close() error {
	d.mu.Lock()
	d.closed = true
	as := make([]*attachment, 0, len(d.attached))
	for _, a := range d.attached {
		a.closeListeners()
		as = append(as, a)
	}
	d.mu.Unlock()

	var errs []error
	for _, a := range as {
		a.served.Wait()
		errs = append(errs, a.ns.Close())
	}
	return errors.Join(errs...)
}

func (a *attachment) closeListeners() {
	for _, ln := range a.lns {
		ln.Close()
	}
}

func (a *attachment) status(c *audit.Counters) Attachment {
	return Attachment{
		Record:      a.rec,
		Connections: a.accepted.Load(),
		Requests:    c.SandboxRequests(sandboxID(a.rec.Cookie)),
		NameGone:    a.nameGone,
	}
}

// sandboxID is the proxy's Sandbox.ID of the namespace with cookie, which its
// records carry as proxy.KeySandboxID. A spec can name two namespaces in turn;
// the cookie never does, so caps, rate limit buckets and request counts go by it.
func sandboxID(cookie uint64) string { return strconv.FormatUint(cookie, 10) }

// countingListener counts accepted connections. It returns the accepted
// connection unwrapped, so that the proxy can still read its original destination
// and splice it.
type countingListener struct {
	net.Listener
	n *atomic.Uint64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

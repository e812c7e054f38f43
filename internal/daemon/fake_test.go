package daemon

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
)

// fakeKernel stands in for netsetup + internal/redirect: namespaces are entries
// of a map from spec to inode, and it records what was attached.
type fakeKernel struct {
	mu        sync.Mutex
	specs     map[string]uint64 // spec -> inode; missing = no such namespace
	noV6      map[uint64]bool
	attached  map[uint64]Listeners // inode -> listeners
	forgotten []uint64             // cookies
	open      int                  // namespaces open now
	failOpen  error
	// held are namespaces some process or bind mount still holds, by inode,
	// whatever their specs say; Find opens them.
	held map[uint64]bool
	// cookies override a namespace's cookie (default inode+1000), by inode.
	cookies   map[uint64]uint64
	failInUse error
	// taken are listen addresses some other socket holds: Listen on them
	// fails with EADDRINUSE; Listen on port 0 picks 40000, 40001, ...
	taken    map[string]bool
	nextPort int
}

func newFakeKernel() *fakeKernel {
	return &fakeKernel{specs: map[string]uint64{}, noV6: map[uint64]bool{},
		attached: map[uint64]Listeners{}, held: map[uint64]bool{},
		cookies: map[uint64]uint64{}, taken: map[string]bool{}, nextPort: 40000}
}

func (k *fakeKernel) Open(spec string) (Namespace, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.failOpen != nil {
		return nil, k.failOpen
	}
	ino, ok := k.specs[spec]
	if !ok {
		return nil, fmt.Errorf("opening netns %s: %w", spec, ErrNoNamespace)
	}
	k.open++
	return &fakeNS{k: k, spec: spec, ino: ino}, nil
}

func (k *fakeKernel) Attach(ns Namespace, l Listeners) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.attached[ns.Inode()] = l
	return nil
}

func (k *fakeKernel) Detach(ns Namespace) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.attached, ns.Inode())
	return nil
}

func (k *fakeKernel) Forget(rec Record) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.forgotten = append(k.forgotten, rec.Cookie)
	delete(k.attached, rec.Inode)
	return nil
}

func (k *fakeKernel) InUse(rec Record) (bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.failInUse != nil {
		return false, k.failInUse
	}
	return k.held[rec.Inode], nil
}

func (k *fakeKernel) Find(rec Record) (Namespace, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.held[rec.Inode] {
		return nil, fmt.Errorf("finding netns inode %d: %w", rec.Inode, ErrNoNamespace)
	}
	k.open++
	return &fakeNS{k: k, spec: rec.Spec, ino: rec.Inode}, nil
}

func (k *fakeKernel) hold(ino uint64, held bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.held[ino] = held
}

func (k *fakeKernel) set(spec string, ino uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if ino == 0 {
		delete(k.specs, spec)
	} else {
		k.specs[spec] = ino
	}
}

func (k *fakeKernel) openCount() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.open
}

type fakeNS struct {
	k      *fakeKernel
	spec   string
	ino    uint64
	closed bool
}

func (n *fakeNS) Spec() string  { return n.spec }
func (n *fakeNS) Inode() uint64 { return n.ino }
func (n *fakeNS) Cookie() (uint64, error) {
	n.k.mu.Lock()
	defer n.k.mu.Unlock()
	if c, ok := n.k.cookies[n.ino]; ok {
		return c, nil
	}
	return n.ino + 1000, nil
}
func (n *fakeNS) EnsureLoopbackUp() error { return nil }

func (n *fakeNS) Listen(network, addr string) (net.Listener, error) {
	n.k.mu.Lock()
	defer n.k.mu.Unlock()
	if network == "tcp6" && n.k.noV6[n.ino] {
		return nil, errors.New("address family not supported")
	}
	if n.k.taken[addr] {
		return nil, &net.OpError{Op: "listen", Net: network,
			Err: os.NewSyscallError("bind", syscall.EADDRINUSE)}
	}
	if host, port, _ := net.SplitHostPort(addr); port == "0" {
		addr = net.JoinHostPort(host, strconv.Itoa(n.k.nextPort))
		n.k.nextPort++
	}
	return newFakeListener(addr), nil
}

func (n *fakeNS) Close() error {
	n.k.mu.Lock()
	defer n.k.mu.Unlock()
	if n.closed {
		return errors.New("closed twice")
	}
	n.closed = true
	n.k.open--
	return nil
}

// fakeListener accepts connections pushed into it and fails Accept once closed.
type fakeListener struct {
	addr  string
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newFakeListener(addr string) *fakeListener {
	return &fakeListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *fakeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *fakeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *fakeListener) Addr() net.Addr { return fakeAddr(l.addr) }

type fakeAddr string

func (a fakeAddr) Network() string { return "tcp" }
func (a fakeAddr) String() string  { return string(a) }

// fakeProxy accepts until the listener closes and remembers who it served.
type fakeProxy struct {
	mu      sync.Mutex
	serving map[string]int // sandbox -> listeners being served
	lns     map[string][]net.Listener
}

func newFakeProxy() *fakeProxy {
	return &fakeProxy{serving: map[string]int{}, lns: map[string][]net.Listener{}}
}

func (p *fakeProxy) Serve(ln net.Listener, sandbox string, cookie uint64) error {
	p.mu.Lock()
	p.serving[sandbox]++
	p.lns[sandbox] = append(p.lns[sandbox], ln)
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.serving[sandbox]--
		p.mu.Unlock()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		c.Close()
	}
}

func (p *fakeProxy) servingCount(sandbox string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.serving[sandbox]
}

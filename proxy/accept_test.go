package proxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// readsEOF reports whether c is closed by the proxy within a second (a
// connection still being handled would wait for its hello for 10s).
func readsEOF(t *testing.T, c net.Conn) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(time.Second))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func TestConnLimitPerSandbox(t *testing.T) {
	up, _ := rawUpstream(t, []byte("ok"))
	e := newEnv(t, nil, func(o *Options) {
		o.MaxConnsPerSandbox = 3
		o.Policy.Passthrough = []string{"site.example"}
	})
	e.setDst(up)

	// Three connections that have sent nothing yet are held open.
	var held []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		held = append(held, c)
	}

	// The fourth is closed at once, with a record.
	c4, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c4.Close()
	if !readsEOF(t, c4) {
		t.Fatal("the connection over the cap was not closed at once")
	}
	rec := e.waitRecords(t, msgRefused, 1)[0]
	if rec[KeyReason] != "sandbox connection limit 3 reached" ||
		rec[KeyDecision] != DecisionDeny || rec[KeySandbox] != "sb-test" {
		t.Errorf("record %v, want a deny of sb-test for the connection limit 3", rec)
	}
	if readsEOF(t, held[0]) {
		t.Error("a connection under the cap was closed")
	}

	// Closing one makes room: its refusal (no hello) releases the count.
	held[0].Close()
	e.waitRecords(t, msgRefused, 2)
	if got := passOnce(t, e, "site.example", nil); string(got) != "ok" {
		t.Errorf("after a connection closed, a new one got %q, want the site's ok", got)
	}
	if n := len(e.findRecords(t, msgRefused)); n != 2 {
		t.Errorf("%d refusals, want 2 (the one over the cap, the closed one)", n)
	}
}

// The cap counts a sandbox across its listeners, and sandboxes apart.
func TestConnLimitAcrossListeners(t *testing.T) {
	l := newConnLimit(2)
	r1, ok1 := l.acquire("a")
	_, ok2 := l.acquire("a")
	_, ok3 := l.acquire("a")
	_, okB := l.acquire("b")
	if !ok1 || !ok2 || ok3 || !okB {
		t.Fatalf("acquire a,a,a,b = %v,%v,%v,%v; want true,true,false,true", ok1, ok2, ok3, okB)
	}
	r1()
	if _, ok := l.acquire("a"); !ok {
		t.Error("no room for a after a release")
	}
	if newConnLimit(0).max != DefaultMaxConnsPerSandbox {
		t.Errorf("zero cap is %d, want the default %d", newConnLimit(0).max,
			DefaultMaxConnsPerSandbox)
	}
}

// emfileListener fails its first n accepts with EMFILE, as accept(2) does
// when the process is out of descriptors.
type emfileListener struct {
	net.Listener
	n atomic.Int64
}

func (l *emfileListener) Accept() (net.Conn, error) {
	if l.n.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(),
			Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

func TestAcceptOutOfDescriptors(t *testing.T) {
	up, _ := rawUpstream(t, []byte("ok"))
	e := newEnv(t, nil, func(o *Options) { o.Policy.Passthrough = []string{"site.example"} })
	e.setDst(up)

	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &emfileListener{Listener: inner}
	ln.n.Store(6)
	served := make(chan error, 1)
	go func() {
		served <- e.srv.Serve(ln, Sandbox{Name: "sb-emfile",
			Origin: func(net.Conn) (Origin, error) { return Origin{Dst: up}, nil }})
	}()

	// The loop backs off through the errors and then serves.
	c, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(goHello(t, &tls.Config{ServerName: "site.example"}))
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, _ := io.ReadAll(c); string(got) != "ok" {
		t.Fatalf("after the accept errors the connection got %q, want ok", got)
	}

	recs := e.findRecords(t, msgAcceptFailing)
	if len(recs) != 1 {
		t.Fatalf("%d %q records for one burst of 6 errors, want 1", len(recs), msgAcceptFailing)
	}
	if r, _ := recs[0][KeyReason].(string); !strings.Contains(r, "file descriptors") ||
		recs[0][KeySandbox] != "sb-emfile" {
		t.Errorf("record %v, want sandbox sb-emfile and a reason naming descriptors", recs[0])
	}

	inner.Close()
	if err := <-served; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Serve after its listener closed = %v, want net.ErrClosed", err)
	}
}

// acceptErrors logs a long burst again only after acceptLogEvery, with the
// failures in between counted.
func TestAcceptErrorsPacing(t *testing.T) {
	var a acceptErrors
	log := testLogger()
	emfile := os.NewSyscallError("accept4", syscall.EMFILE)
	var waits []time.Duration
	for range 10 {
		waits = append(waits, a.failed(log, "x", emfile))
	}
	if waits[0] != 5*time.Millisecond || waits[9] != time.Second {
		t.Errorf("backoff %v, want 5ms doubling up to 1s", waits)
	}
	if a.failures != 9 {
		t.Errorf("%d failures pending after 10 (the first logged), want 9", a.failures)
	}
	a.lastLog = a.lastLog.Add(-acceptLogEvery)
	a.failed(log, "x", emfile)
	if a.failures != 0 {
		t.Errorf("failures %d after acceptLogEvery passed, want 0 (logged)", a.failures)
	}
	a.succeeded()
	if w := a.failed(log, "x", emfile); w != 5*time.Millisecond {
		t.Errorf("first wait of a new burst %v, want 5ms", w)
	}
}

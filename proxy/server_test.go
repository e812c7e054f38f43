package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// refusedWith connects, sends data, expects the proxy to close without a
// byte, and returns the reason of the one refusal record.
func (e *env) refusedWith(t *testing.T, data []byte) string {
	t.Helper()
	before := len(e.findRecords(t, msgRefused))
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(data)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := io.Copy(io.Discard, c); n != 0 || isTimeout(err) {
		t.Fatalf("proxy sent %d bytes / did not close (%v)", n, err)
	}
	recs := e.waitRecords(t, msgRefused, before+1)
	r := recs[before]
	if r[KeyDecision] != DecisionDeny || r[KeySandbox] != "sb-test" || r[KeyPID] != float64(4242) {
		t.Errorf("refusal record %v lacks decision/sandbox/pid", r)
	}
	return r[KeyReason].(string)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestRefusedConnectionsRecordWhy(t *testing.T) {
	tca := newTestCA(t)
	up := newUpstream(t, tca, nil, "api.openai.com")
	e := newEnv(t, tca.pool)
	e.setDst(up.addr(t))

	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"plain HTTP", []byte("GET /v1/models HTTP/1.1\r\nHost: api.openai.com\r\n\r\n"),
			"plain HTTP on a TLS port"},
		{"no SNI", goHello(t, &tls.Config{ServerName: "203.0.113.9", InsecureSkipVerify: true}),
			"no SNI"},
		{"not TLS", []byte("SSH-2.0-OpenSSH_9.2\r\n"), "not a TLS handshake"},
		{"unknown domain", goHello(t, &tls.Config{ServerName: "unknown.example"}),
			"default is deny"},
	}
	for _, tt := range tests {
		if got := e.refusedWith(t, tt.data); !strings.Contains(got, tt.want) {
			t.Errorf("%s: reason %q, want it to say %q", tt.name, got, tt.want)
		}
	}
	if up.count() != 0 || e.dialCount() != 0 {
		t.Errorf("refused connections reached upstream")
	}
}

func TestOriginErrorRefuses(t *testing.T) {
	e := newEnv(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sb := Sandbox{Name: "sb-test", Origin: func(net.Conn) (Origin, error) {
		return Origin{}, errors.New("no original destination recorded")
	}}
	go e.srv.Serve(ln, sb)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Write(goHello(t, &tls.Config{ServerName: "api.openai.com"}))
	if n, _ := io.Copy(io.Discard, c); n != 0 {
		t.Errorf("got %d bytes", n)
	}
	c.Close()
	recs := e.waitRecords(t, msgRefused, 1)
	if r := recs[0][KeyReason].(string); !strings.Contains(r, "original destination unknown") {
		t.Errorf("reason %q", r)
	}
}

func TestHandshakeTimeout(t *testing.T) {
	e := newEnv(t, nil, func(o *Options) { o.Timeouts.Handshake = 100 * time.Millisecond })
	if r := e.refusedWith(t, []byte{22, 3, 1}); !strings.Contains(r, "timed out") {
		t.Errorf("reason %q, want a timeout", r)
	}
}

// A client that stops halfway through its request headers is cut off.
func TestReadHeaderTimeout(t *testing.T) {
	tca := newTestCA(t)
	up := newUpstream(t, tca, nil, "api.openai.com")
	e := newEnv(t, tca.pool, func(o *Options) { o.Timeouts.ReadHeader = 100 * time.Millisecond })
	e.setDst(up.addr(t))

	c := e.tlsDial(t, "api.openai.com", "http/1.1")
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: api.openai.com\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.ReadAll(c)
	if isTimeout(err) {
		t.Fatal("connection still open after the header timeout")
	}
	if up.count() != 0 {
		t.Error("an incomplete request reached upstream")
	}
}

// SetPolicy applies to connections accepted afterwards.
func TestSetPolicy(t *testing.T) {
	tca := newTestCA(t)
	up := newUpstream(t, tca, nil, "api.openai.com")
	e := newEnv(t, tca.pool)
	e.setDst(up.addr(t))

	if err := e.srv.SetPolicy(&Policy{Passthrough: []string{"*."}}); err == nil {
		t.Error("SetPolicy accepted an invalid passthrough pattern")
	}
	if err := e.srv.SetPolicy(&Policy{DefaultPassthrough: true,
		AllowUpstream: e.srv.policy.Load().AllowUpstream}); err != nil {
		t.Fatal(err)
	}
	// api.openai.com is no provider now: the handshake reaches the upstream
	// itself, whose certificate only the test CA verifies.
	c, err := tls.Dial("tcp", e.addr, &tls.Config{ServerName: "api.openai.com", RootCAs: tca.pool})
	if err != nil {
		t.Fatalf("passthrough after SetPolicy: %v", err)
	}
	c.Close()
	e.waitRecords(t, msgPassthrough, 1)
}

func TestShutdownDrainsInFlightRequest(t *testing.T) {
	tca := newTestCA(t)
	release := make(chan struct{})
	started := make(chan struct{})
	up := newUpstream(t, tca, func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "finished")
	}, "api.openai.com")
	e := newEnv(t, tca.pool)
	e.setDst(up.addr(t))

	type result struct {
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := e.client(false).Get("https://api.openai.com/slow")
		if err != nil {
			res <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- result{string(b), err}
	}()
	<-started

	shut := make(chan error, 1)
	go func() { shut <- e.srv.Shutdown(context.Background()) }()
	time.Sleep(50 * time.Millisecond) // let Shutdown close the listener first
	if _, err := net.DialTimeout("tcp", e.addr, time.Second); err == nil {
		t.Error("listener still accepts after Shutdown")
	}
	close(release)
	if r := <-res; r.err != nil || r.body != "finished" {
		t.Errorf("in-flight request: %q, %v; want it to finish", r.body, r.err)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func TestNewValidatesOptions(t *testing.T) {
	valid := Options{Logger: testLogger(), Policy: &Policy{},
		Keys:  func(string) (k secretsKey, err error) { return k, nil },
		Certs: func(string) (*tls.Certificate, error) { return nil, nil }}
	if _, err := New(valid); err != nil {
		t.Fatalf("valid options: %v", err)
	}
	for name, mod := range map[string]func(*Options){
		"Logger": func(o *Options) { o.Logger = nil },
		"Policy": func(o *Options) { o.Policy = nil },
		"Keys":   func(o *Options) { o.Keys = nil },
		"Certs":  func(o *Options) { o.Certs = nil },
	} {
		o := valid
		mod(&o)
		if _, err := New(o); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("without %s: error %v, want one naming it", name, err)
		}
	}
}

func TestServeReturnsWhenListenerClosed(t *testing.T) {
	e := newEnv(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- e.srv.Serve(ln, Sandbox{Name: "detached", Origin: func(net.Conn) (Origin, error) {
			return Origin{}, nil
		}})
	}()
	time.Sleep(20 * time.Millisecond)
	ln.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Serve after the owner closed ln: %v, want net.ErrClosed", err)
	}
	if err := e.srv.Serve(ln, Sandbox{Name: "x"}); err == nil {
		t.Error("Serve without Origin succeeded")
	}
}

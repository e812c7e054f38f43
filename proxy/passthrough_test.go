package proxy

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"testing"
)

// rawUpstream accepts one TCP connection, reads everything until the client
// half-closes, then sends reply and closes.
func rawUpstream(t *testing.T, reply []byte) (netip.AddrPort, <-chan []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c) // ends at the client's half-close, passed on
		got <- b
		c.Write(reply)
	}()
	return netip.MustParseAddrPort(ln.Addr().String()), got
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPassthroughSplicesBytesAndHalfClose(t *testing.T) {
	hello := goHello(t, &tls.Config{ServerName: "files.passthrough.example"})
	sent := append(append([]byte(nil), hello...), randomBytes(t, 1<<20)...)
	reply := randomBytes(t, 1<<20)
	dst, upGot := rawUpstream(t, reply)

	e := newEnv(t, nil, func(o *Options) {
		o.Policy.Passthrough = []string{"*.passthrough.example"}
	})
	e.setDst(dst)

	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		c.Write(sent)
		c.(*net.TCPConn).CloseWrite() // the upstream only answers after this
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if up := <-upGot; !bytes.Equal(up, sent) {
		t.Errorf("upstream got %d bytes, want the %d sent, identical", len(up), len(sent))
	}
	if !bytes.Equal(got, reply) {
		t.Errorf("client got %d bytes, want the %d replied, identical", len(got), len(reply))
	}

	recs := e.waitRecords(t, msgPassthrough, 1)
	if recs[0][KeyBytesIn] != float64(len(sent)) || recs[0][KeyBytesOut] != float64(len(reply)) {
		t.Errorf("record bytes in/out %v/%v, want %d/%d", recs[0][KeyBytesIn],
			recs[0][KeyBytesOut], len(sent), len(reply))
	}
}

// A passthrough TLS session is end to end: the client sees the upstream's own
// certificate, not a proxy leaf.
func TestPassthroughIsNotTerminated(t *testing.T) {
	tca := newTestCA(t)
	up := newUpstream(t, tca, nil, "site.example")
	e := newEnv(t, nil, func(o *Options) { o.Policy.DefaultPassthrough = true })
	e.setDst(up.addr(t))

	c, err := tls.Dial("tcp", e.addr, &tls.Config{ServerName: "site.example", RootCAs: tca.pool})
	if err != nil {
		t.Fatalf("TLS through passthrough: %v", err)
	}
	defer c.Close()
	if issuer := c.ConnectionState().PeerCertificates[0].Issuer.CommonName; issuer != tca.cert.Subject.CommonName {
		t.Errorf("certificate issued by %q, want the upstream's CA", issuer)
	}
}

func TestPassthroughSSRFGuard(t *testing.T) {
	e := newEnv(t, nil, func(o *Options) {
		o.Policy.DefaultPassthrough = true
		o.Policy.AllowUpstream = nil
	})
	e.setDst(netip.MustParseAddrPort("10.0.0.1:443"))

	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(goHello(t, &tls.Config{ServerName: "intranet.example"}))
	if n, _ := io.Copy(io.Discard, c); n != 0 {
		t.Errorf("got %d bytes from a refused connection", n)
	}
	recs := e.waitRecords(t, msgRefused, 1)
	if r := recs[0][KeyReason].(string); !bytes.Contains([]byte(r), []byte("private")) {
		t.Errorf("reason %q does not name the private range", r)
	}
	if e.dialCount() != 0 {
		t.Error("the guard let a dial through")
	}
}

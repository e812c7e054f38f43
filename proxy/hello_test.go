package proxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// captureConn records what a TLS client writes and fails its first read, so
// a handshake stops right after the ClientHello.
type captureConn struct{ out bytes.Buffer }

func (c *captureConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (c *captureConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *captureConn) Close() error                     { return nil }
func (c *captureConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *captureConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *captureConn) SetDeadline(time.Time) error      { return nil }
func (c *captureConn) SetReadDeadline(time.Time) error  { return nil }
func (c *captureConn) SetWriteDeadline(time.Time) error { return nil }

// goHello returns the ClientHello Go's TLS client sends for cfg.
func goHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	c := &captureConn{}
	_ = tls.Client(c, cfg).Handshake()
	if c.out.Len() == 0 {
		t.Fatal("TLS client wrote no hello")
	}
	return c.out.Bytes()
}

// reframe re-splits the handshake messages carried by the records in hello
// into records of at most size payload bytes, as a client or middlebox may.
func reframe(t testing.TB, hello []byte, size int) []byte {
	t.Helper()
	var msg []byte
	for b := hello; len(b) > 0; {
		if len(b) < 5 {
			t.Fatal("truncated record")
		}
		n := int(b[3])<<8 | int(b[4])
		msg = append(msg, b[5:5+n]...)
		b = b[5+n:]
	}
	var out []byte
	for len(msg) > 0 {
		n := min(size, len(msg))
		out = append(out, 22, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

// chunkConn serves data at most chunk bytes per Read, like a slow network.
type chunkConn struct {
	captureConn
	data  []byte
	chunk int
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.chunk)], c.data)
	c.data = c.data[n:]
	return n, nil
}

func TestReadClientHelloReassembles(t *testing.T) {
	hello := goHello(t, &tls.Config{ServerName: "API.OpenAI.com.", NextProtos: []string{"h2", "http/1.1"}})
	// Go offers an X25519MLKEM768 key share by default: the hello is larger
	// than a typical 1460-byte segment.
	if len(hello) < 1500 {
		t.Errorf("Go's hello is %d bytes; want a post-quantum one (~1.8 KB)", len(hello))
	}
	want := &ClientHello{ServerName: "api.openai.com", ALPN: []string{"h2", "http/1.1"}}
	variants := map[string][]byte{
		"as sent":            hello,
		"records of 1 byte":  reframe(t, hello, 1),
		"records of 7 bytes": reframe(t, hello, 7),
		"records of 512":     reframe(t, hello, 512),
	}
	for name, data := range variants {
		for _, chunk := range []int{1, 3, 1000, 1 << 16} {
			extra := []byte("early bytes after the hello")
			c := &chunkConn{data: append(append([]byte(nil), data...), extra...), chunk: chunk}
			got, raw, err := ReadClientHello(c, time.Time{})
			if err != nil {
				t.Fatalf("%s, reads of %d: %v", name, chunk, err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s, reads of %d (-want +got):\n%s", name, chunk, diff)
			}
			// Every byte read is returned for replay, and nothing past what
			// the reads happened to deliver.
			if !bytes.HasPrefix(append(raw, c.data...), data) || len(raw)+len(c.data) != len(data)+len(extra) {
				t.Errorf("%s, reads of %d: returned bytes are not what was read", name, chunk)
			}
		}
	}
}

func TestReadClientHelloRefusals(t *testing.T) {
	noSNI := goHello(t, &tls.Config{ServerName: "192.0.2.1", InsecureSkipVerify: true})
	hello := goHello(t, &tls.Config{ServerName: "api.openai.com"})
	huge := []byte{22, 3, 1, 0, 4, 1, 0x10, 0, 0} // ClientHello of 1 MiB announced
	// A hello announced at 60000 bytes, sent as 1-byte records: the 5-byte
	// headers push the total past the cap before the message completes.
	tooMany := append([]byte{22, 3, 1, 0, 4, 1, 0, 0xea, 0x60}, bytes.Repeat([]byte{22, 3, 1, 0, 1, 0}, 20000)...)

	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"plain HTTP", []byte("GET / HTTP/1.1\r\nHost: api.openai.com\r\n\r\n"), ErrPlainHTTP},
		{"h2 prior knowledge", []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), ErrPlainHTTP},
		{"SSH banner", []byte("SSH-2.0-OpenSSH_9.2\r\n"), ErrNotTLS},
		{"SSLv2 hello", []byte{0x80, 0x2e, 0x01, 0x00, 0x02}, ErrNotTLS},
		{"no SNI", noSNI, ErrNoSNI},
		{"truncated", hello[:len(hello)/2], ErrMalformed},
		{"alert record", []byte{21, 3, 3, 0, 2, 2, 40}, ErrNotTLS},
		{"application data first", append([]byte{23, 3, 3, 0, 1, 0}, hello...), ErrNotTLS},
		{"alert after a fragment", []byte{22, 3, 1, 0, 1, 1, 21, 3, 3, 0, 2, 2, 40}, ErrMalformed},
		{"server hello", []byte{22, 3, 3, 0, 4, 2, 0, 0, 0}, ErrMalformed},
		{"empty record", []byte{22, 3, 1, 0, 0}, ErrMalformed},
		{"record too long", []byte{22, 3, 1, 0xff, 0xff}, ErrMalformed},
		{"bad version", []byte{22, 9, 1, 0, 4}, ErrMalformed},
		{"announced 1 MiB", huge, ErrHelloTooBig},
		{"endless fragments", tooMany, ErrHelloTooBig},
		{"empty", nil, ErrMalformed},
	}
	for _, tt := range tests {
		c := &chunkConn{data: tt.data, chunk: 4096}
		_, _, err := ReadClientHello(c, time.Time{})
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: error %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestReadClientHelloDeadline(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	go client.Write([]byte{22, 3, 1, 0, 200, 1}) // a start, then silence

	_, raw, err := ReadClientHello(server, time.Now().Add(50*time.Millisecond))
	if !errors.Is(err, ErrHelloTimeout) {
		t.Fatalf("error %v, want ErrHelloTimeout", err)
	}
	if len(raw) != 6 {
		t.Errorf("returned %d bytes, want the 6 read", len(raw))
	}
}

// helloMsg builds a ClientHello handshake message with the given extensions
// (each already encoded as type, length, data).
func helloMsg(exts ...[]byte) []byte {
	body := []byte{3, 3}
	body = append(body, make([]byte, 32)...)
	body = append(body, 0)                // session id
	body = append(body, 0, 2, 0x13, 0x01) // one cipher suite
	body = append(body, 1, 0)             // null compression
	var e []byte
	for _, x := range exts {
		e = append(e, x...)
	}
	body = append(body, byte(len(e)>>8), byte(len(e)))
	body = append(body, e...)
	return append([]byte{1, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
}

func ext(typ uint16, data []byte) []byte {
	return append([]byte{byte(typ >> 8), byte(typ), byte(len(data) >> 8), byte(len(data))}, data...)
}

func sniExt(names ...string) []byte {
	var list []byte
	for _, n := range names {
		list = append(list, 0, byte(len(n)>>8), byte(len(n)))
		list = append(list, n...)
	}
	return ext(0, append([]byte{byte(len(list) >> 8), byte(len(list))}, list...))
}

func TestParseClientHello(t *testing.T) {
	alpn := ext(16, []byte{0, 12, 2, 'h', '2', 8, 'h', 't', 't', 'p', '/', '1', '.', '1'})
	tests := []struct {
		name    string
		msg     []byte
		want    *ClientHello
		wantErr error
	}{
		{"sni and alpn", helloMsg(sniExt("Api.Example.COM"), alpn),
			&ClientHello{ServerName: "api.example.com", ALPN: []string{"h2", "http/1.1"}}, nil},
		{"trailing dot", helloMsg(sniExt("api.example.com.")),
			&ClientHello{ServerName: "api.example.com"}, nil},
		{"no extensions", helloMsg(), nil, ErrNoSNI},
		{"alpn only", helloMsg(alpn), nil, ErrNoSNI},
		{"two host names", helloMsg(sniExt("a.example", "b.example")), nil, ErrMalformed},
		{"sni twice", helloMsg(sniExt("a.example"), sniExt("b.example")), nil, ErrMalformed},
		{"empty name", helloMsg(sniExt("")), nil, ErrMalformed},
		{"double dot", helloMsg(sniExt("a..example")), nil, ErrMalformed},
		{"two trailing dots", helloMsg(sniExt("a.example..")), nil, ErrMalformed},
		{"NUL in name", helloMsg(sniExt("a.example\x00.evil")), nil, ErrMalformed},
		{"newline in name", helloMsg(sniExt("a.example\nforged")), nil, ErrMalformed},
		{"slash in name", helloMsg(sniExt("a.example/x")), nil, ErrMalformed},
		{"empty alpn name", helloMsg(sniExt("a.example"), ext(16, []byte{0, 1, 0})), nil, ErrMalformed},
		{"trailing bytes", append(helloMsg(sniExt("a.example")), 0), nil, ErrMalformed},
		{"sni length past end", helloMsg(ext(0, []byte{0, 9, 0, 0, 3, 'a'})), nil, ErrMalformed},
	}
	for _, tt := range tests {
		got, err := ParseClientHello(tt.msg)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: error %v, want %v", tt.name, err, tt.wantErr)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
	}

	// Every truncation of a valid hello is an error, never a panic.
	full := helloMsg(sniExt("a.example"), alpn)
	for i := range full {
		if _, err := ParseClientHello(full[:i]); err == nil {
			t.Errorf("truncated to %d bytes: parsed", i)
		}
	}
}

func TestLooksLikeHTTP(t *testing.T) {
	for _, s := range []string{"G", "GE", "GET /", "POST /v1", "PRI * HTTP/2.0", "CONNECT a:443"} {
		if !looksLikeHTTP([]byte(s)) {
			t.Errorf("%q not recognised as HTTP", s)
		}
	}
	for _, s := range []string{"SSH-2.0", "\x00\x01", "GETX"} {
		if looksLikeHTTP([]byte(s)) {
			t.Errorf("%q taken for HTTP", s)
		}
	}
}

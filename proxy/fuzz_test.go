package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var helloErrors = []error{ErrNotTLS, ErrPlainHTTP, ErrNoSNI, ErrMalformed, ErrHelloTooBig,
	ErrHelloTimeout}

var errStopHandshake = errors.New("stop after the hello")

// FuzzReadClientHello feeds arbitrary bytes, in reads of arbitrary size, to
// the hello reader. It must never panic, must return only bytes it was given,
// must fail only with its documented errors, and an SNI it accepts must be
// normalised and equal to the one crypto/tls reads from the same bytes.
func FuzzReadClientHello(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"), uint16(5))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint16) {
		c := &chunkConn{data: data, chunk: int(chunk%4096) + 1}
		h, raw, err := ReadClientHello(c, time.Time{})
		if len(raw) > len(data) || string(raw) != string(data[:len(raw)]) {
			t.Fatalf("returned %d bytes that are not a prefix of the input", len(raw))
		}
		if err != nil {
			for _, want := range helloErrors {
				if errors.Is(err, want) {
					return
				}
			}
			t.Fatalf("undocumented error: %v", err)
		}
		if n, nerr := normalizeSNI(h.ServerName); nerr != nil || n != h.ServerName {
			t.Fatalf("SNI %q is not normalised", h.ServerName)
		}

		var goSNI string
		called := false
		srv := tls.Server(&chunkConn{data: raw, chunk: 1 << 16}, &tls.Config{
			GetConfigForClient: func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
				called, goSNI = true, chi.ServerName
				return nil, errStopHandshake
			},
		})
		_ = srv.Handshake()
		if called && strings.ToLower(goSNI) != h.ServerName {
			t.Fatalf("crypto/tls read SNI %q, the reader %q", goSNI, h.ServerName)
		}
	})
}

// TestWriteFuzzCorpus regenerates testdata/fuzz/FuzzReadClientHello from real
// hellos: Go's, curl's (if curl is installed), and split variants of them.
// Run it with HERMES_WRITE_CORPUS=1; the files are committed.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("HERMES_WRITE_CORPUS") == "" {
		t.Skip("set HERMES_WRITE_CORPUS=1 to regenerate the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzReadClientHello")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	hellos := map[string][]byte{
		"go-default": goHello(t, &tls.Config{ServerName: "api.openai.com",
			NextProtos: []string{"h2", "http/1.1"}}),
		"go-tls12": goHello(t, &tls.Config{ServerName: "integrate.api.nvidia.com",
			MaxVersion: tls.VersionTLS12}),
		"go-no-sni": goHello(t, &tls.Config{ServerName: "192.0.2.1", InsecureSkipVerify: true}),
	}
	for _, args := range [][]string{{"--http2"}, {"--http1.1"}} {
		hellos["curl"+args[0][1:]] = curlHello(t, args...)
	}
	write := func(name string, data []byte, chunk uint16) {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\nuint16(%d)\n",
			strconv.Quote(string(data)), chunk)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, h := range hellos {
		write(name, h, 4095)
		write(name+"-bytewise", h, 0)
		write(name+"-records-7", reframe(t, h, 7), 100)
		write(name+"-records-300", reframe(t, h, 300), 1000)
	}
	write("plain-http", []byte("POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\n\r\n"), 4095)
}

// curlHello runs curl against a local listener and returns the hello it sent.
func curlHello(t *testing.T, args ...string) []byte {
	t.Helper()
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("curl not installed: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	cmd := exec.Command(curl, append([]string{"-s", "--max-time", "5", "--resolve",
		fmt.Sprintf("api.openai.com:%d:127.0.0.1", port),
		fmt.Sprintf("https://api.openai.com:%d/v1/models", port)}, args...)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, raw, err := ReadClientHello(c, time.Now().Add(5*time.Second))
	if err != nil {
		t.Fatalf("reading curl's hello: %v", err)
	}
	return raw
}

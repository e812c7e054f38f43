package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// MaxHelloSize caps the bytes read while waiting for a complete ClientHello.
// A real hello is 0.3-2 KB (post-quantum key shares push it to ~1.8 KB); the
// protocol allows up to 16 MiB, which no client sends and no proxy should buffer.
const MaxHelloSize = 64 << 10

// Errors of ReadClientHello. Each says why a connection was refused.
var (
	ErrNotTLS       = errors.New("not a TLS handshake")
	ErrPlainHTTP    = errors.New("plain HTTP on a TLS port")
	ErrNoSNI        = errors.New("ClientHello has no SNI")
	ErrMalformed    = errors.New("malformed ClientHello")
	ErrHelloTooBig  = fmt.Errorf("ClientHello larger than %d bytes", MaxHelloSize)
	ErrHelloTimeout = errors.New("timed out reading the ClientHello")
)

const (
	recordHeaderLen    = 5
	recordTypeHS       = 22 // TLS handshake record
	hsTypeClientHello  = 1
	maxRecordPlaintext = 16384 + 2048 // RFC 8446 5.2 ceiling with expansion
	extServerName      = 0
	extALPN            = 16
	sniHostName        = 0
)

// ClientHello is what the proxy needs from a client's hello.
type ClientHello struct {
	// ServerName is the SNI, lower-cased and without a trailing dot.
	ServerName string
	// ALPN lists the protocols the client offered, in its order.
	ALPN []string
}

// ReadClientHello reads from c until it holds one complete ClientHello
// handshake message, reassembled across TCP segments and TLS records, and
// parses it. It reads at most MaxHelloSize bytes and gives up at deadline (the
// zero time means none). It returns the parsed hello and every byte it read,
// which the caller must replay before anything else (see replayConn): the TLS
// handshake that follows then sees exactly the hello the policy judged.
//
// Errors wrap ErrNotTLS, ErrPlainHTTP, ErrNoSNI, ErrMalformed, ErrHelloTooBig or
// ErrHelloTimeout; the bytes read so far are returned in every case.
func ReadClientHello(c net.Conn, deadline time.Time) (*ClientHello, []byte, error) {
	if err := c.SetReadDeadline(deadline); err != nil {
		return nil, nil, fmt.Errorf("setting hello deadline: %w", err)
	}
	defer c.SetReadDeadline(time.Time{})

	var (
		buf   []byte
		asm   helloAssembler
		chunk = make([]byte, 4096)
	)
	for {
		msg, err := asm.next(buf)
		if err == nil && msg != nil {
			h, err := ParseClientHello(msg)
			return h, buf, err
		}
		if err != nil {
			return nil, buf, err
		}
		if len(buf) >= MaxHelloSize {
			return nil, buf, ErrHelloTooBig
		}

		n, rerr := c.Read(chunk[:min(len(chunk), MaxHelloSize-len(buf))])
		buf = append(buf, chunk[:n]...)
		if rerr != nil {
			if n > 0 {
				continue // judge what arrived before reporting the error
			}
			return nil, buf, helloReadError(buf, rerr)
		}
	}
}

// helloReadError explains a read error that ended the hello early.
func helloReadError(buf []byte, err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%w after %d bytes", ErrHelloTimeout, len(buf))
	}
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: connection closed after %d bytes", ErrMalformed, len(buf))
	}
	return fmt.Errorf("reading ClientHello: %w", err)
}

// helloAssembler collects the payloads of the handshake records read so far.
// It remembers where it stopped, so a hello trickled in one byte per read
// costs linear, not quadratic, work.
type helloAssembler struct {
	off int    // bytes of buf already consumed as whole records
	msg []byte // their payloads, concatenated
}

// next walks the TLS records of buf past those already seen. It returns the
// ClientHello handshake message (header included) once the records hold all of
// it, nil when more bytes are needed, or an error as soon as buf cannot be the
// start of a ClientHello. buf must only ever grow between calls.
func (a *helloAssembler) next(buf []byte) ([]byte, error) {
	if err := checkFirstBytes(buf); err != nil {
		return nil, err
	}
	for len(buf)-a.off >= recordHeaderLen {
		rec := buf[a.off:]
		typ := rec[0]
		n := int(rec[3])<<8 | int(rec[4])
		if typ != recordTypeHS {
			return nil, fmt.Errorf("%w: record type %d before the hello was complete",
				ErrMalformed, typ)
		}
		if rec[1] != 3 {
			return nil, fmt.Errorf("%w: record version %d.%d", ErrMalformed, rec[1], rec[2])
		}
		if n == 0 || n > maxRecordPlaintext {
			return nil, fmt.Errorf("%w: record length %d", ErrMalformed, n)
		}
		if len(rec) < recordHeaderLen+n {
			return nil, nil
		}
		a.msg = append(a.msg, rec[recordHeaderLen:recordHeaderLen+n]...)
		a.off += recordHeaderLen + n

		if msg := a.msg; len(msg) >= 4 {
			if msg[0] != hsTypeClientHello {
				return nil, fmt.Errorf("%w: handshake type %d, want ClientHello",
					ErrMalformed, msg[0])
			}
			total := 4 + (int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3]))
			if total > MaxHelloSize {
				return nil, ErrHelloTooBig
			}
			if len(msg) >= total {
				return msg[:total], nil
			}
		}
	}
	return nil, nil
}

// checkFirstBytes rejects, from the first bytes alone, what is not TLS, and
// names plain HTTP, the usual mistake.
func checkFirstBytes(buf []byte) error {
	if len(buf) == 0 || buf[0] == recordTypeHS {
		return nil
	}
	if looksLikeHTTP(buf) {
		return ErrPlainHTTP
	}
	return fmt.Errorf("%w: first byte 0x%02x", ErrNotTLS, buf[0])
}

var httpMethods = []string{
	"GET ", "POST ", "PUT ", "HEAD ", "DELETE ", "OPTIONS ", "PATCH ", "CONNECT ",
	"TRACE ", "PRI * HTTP/2",
}

// looksLikeHTTP reports whether buf starts like (a prefix of) an HTTP request.
func looksLikeHTTP(buf []byte) bool {
	s := string(buf[:min(len(buf), 16)])
	for _, m := range httpMethods {
		if strings.HasPrefix(s, m) || (len(s) < len(m) && strings.HasPrefix(m, s)) {
			return true
		}
	}
	return false
}

// replayConn is a net.Conn whose first reads return the bytes that were
// peeked off it; after that it reads from the connection itself.
type replayConn struct {
	net.Conn
	pending []byte
	sni     string // the server name the policy judged, for GetCertificate
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		if len(c.pending) == 0 {
			// Drop the buffer: an emptied slice still holds all of it, for
			// as long as the connection lives.
			c.pending = nil
		}
		return n, nil
	}
	return c.Conn.Read(p)
}

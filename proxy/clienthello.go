package proxy

import (
	"fmt"
)

// ParseClientHello parses one ClientHello handshake message (RFC 8446 4.1.2,
// the 4-byte handshake header included) and returns its SNI and ALPN list.
// Every length is checked against what remains; a hello with trailing bytes, a
// repeated extension, more than one host name, or an SNI that is not a plain
// DNS name is refused as malformed, so that nothing downstream can read the
// hello differently than the policy did.
func ParseClientHello(msg []byte) (*ClientHello, error) {
	s := cursor(msg)
	typ, ok := s.u8()
	if !ok || typ != hsTypeClientHello {
		return nil, fmt.Errorf("%w: not a ClientHello message", ErrMalformed)
	}
	body, ok := s.prefixed24()
	if !ok || !s.empty() {
		return nil, fmt.Errorf("%w: handshake length does not match", ErrMalformed)
	}

	// legacy_version, random, legacy_session_id, cipher_suites,
	// legacy_compression_methods: skipped but bounds-checked.
	if !body.skip(2+32) || !body.skipPrefixed8() {
		return nil, fmt.Errorf("%w: truncated before cipher suites", ErrMalformed)
	}
	suites, ok := body.prefixed16()
	if !ok || len(suites) == 0 || len(suites)%2 != 0 {
		return nil, fmt.Errorf("%w: bad cipher suite list", ErrMalformed)
	}
	comp, ok := body.prefixed8()
	if !ok || len(comp) == 0 {
		return nil, fmt.Errorf("%w: bad compression method list", ErrMalformed)
	}
	if body.empty() {
		return nil, ErrNoSNI // a hello without extensions has no SNI
	}
	exts, ok := body.prefixed16()
	if !ok || !body.empty() {
		return nil, fmt.Errorf("%w: bad extensions block", ErrMalformed)
	}
	return parseExtensions(exts)
}

// parseExtensions reads the extension list, keeping SNI and ALPN.
func parseExtensions(exts cursor) (*ClientHello, error) {
	h := &ClientHello{}
	seen := make(map[uint16]bool)
	for !exts.empty() {
		typ, ok1 := exts.u16()
		data, ok2 := exts.prefixed16()
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("%w: truncated extension", ErrMalformed)
		}
		if seen[typ] {
			return nil, fmt.Errorf("%w: extension %d repeated", ErrMalformed, typ)
		}
		seen[typ] = true

		var err error
		switch typ {
		case extServerName:
			h.ServerName, err = parseSNI(data)
		case extALPN:
			h.ALPN, err = parseALPN(data)
		}
		if err != nil {
			return nil, err
		}
	}
	if h.ServerName == "" {
		return nil, ErrNoSNI
	}
	return h, nil
}

// parseSNI reads the server_name extension (RFC 6066 3): exactly one
// host_name entry, a DNS name, returned normalised.
func parseSNI(data cursor) (string, error) {
	list, ok := data.prefixed16()
	if !ok || !data.empty() || list.empty() {
		return "", fmt.Errorf("%w: bad server_name extension", ErrMalformed)
	}
	var name string
	for !list.empty() {
		typ, ok1 := list.u8()
		v, ok2 := list.prefixed16()
		if !ok1 || !ok2 {
			return "", fmt.Errorf("%w: truncated server_name entry", ErrMalformed)
		}
		if typ != sniHostName {
			continue // unknown name types are skipped, as RFC 6066 allows
		}
		if name != "" {
			return "", fmt.Errorf("%w: more than one host_name", ErrMalformed)
		}
		n, err := normalizeSNI(string(v))
		if err != nil {
			return "", err
		}
		name = n
	}
	if name == "" {
		return "", ErrNoSNI
	}
	return name, nil
}

// normalizeSNI lower-cases name, drops one trailing dot and refuses anything
// that is not a DNS name made of letters, digits, '-', '_' and dots: such bytes
// have no business in a host name and would otherwise reach records and
// certificate requests.
func normalizeSNI(name string) (string, error) {
	n := []byte(name)
	if len(n) > 0 && n[len(n)-1] == '.' {
		n = n[:len(n)-1]
	}
	if len(n) == 0 || len(n) > 253 || n[len(n)-1] == '.' {
		return "", fmt.Errorf("%w: SNI length %d", ErrMalformed, len(n))
	}
	for i, b := range n {
		switch {
		case 'A' <= b && b <= 'Z':
			n[i] = b + 'a' - 'A'
		case 'a' <= b && b <= 'z', '0' <= b && b <= '9', b == '-', b == '_':
		case b == '.' && i > 0 && n[i-1] != '.':
		default:
			return "", fmt.Errorf("%w: SNI has byte 0x%02x at %d", ErrMalformed, b, i)
		}
	}
	return string(n), nil
}

// parseALPN reads the application_layer_protocol_negotiation extension
// (RFC 7301 3.1): a non-empty list of non-empty protocol names.
func parseALPN(data cursor) ([]string, error) {
	list, ok := data.prefixed16()
	if !ok || !data.empty() || list.empty() {
		return nil, fmt.Errorf("%w: bad ALPN extension", ErrMalformed)
	}
	var protos []string
	for !list.empty() {
		p, ok := list.prefixed8()
		if !ok || len(p) == 0 {
			return nil, fmt.Errorf("%w: bad ALPN protocol name", ErrMalformed)
		}
		protos = append(protos, string(p))
	}
	return protos, nil
}

// cursor is a byte string read from the front. Every method checks the
// length first and reports false, leaving the cursor unchanged, on a short read.
type cursor []byte

func (c *cursor) empty() bool { return len(*c) == 0 }

func (c *cursor) take(n int) (cursor, bool) {
	if n < 0 || len(*c) < n {
		return nil, false
	}
	v := (*c)[:n]
	*c = (*c)[n:]
	return v, true
}

func (c *cursor) skip(n int) bool {
	_, ok := c.take(n)
	return ok
}

func (c *cursor) u8() (uint8, bool) {
	v, ok := c.take(1)
	if !ok {
		return 0, false
	}
	return v[0], true
}

func (c *cursor) u16() (uint16, bool) {
	v, ok := c.take(2)
	if !ok {
		return 0, false
	}
	return uint16(v[0])<<8 | uint16(v[1]), true
}

func (c *cursor) u24() (int, bool) {
	v, ok := c.take(3)
	if !ok {
		return 0, false
	}
	return int(v[0])<<16 | int(v[1])<<8 | int(v[2]), true
}

func (c *cursor) prefixed(n int, ok bool) (cursor, bool) {
	if !ok {
		return nil, false
	}
	return c.take(n)
}

func (c *cursor) prefixed8() (cursor, bool) {
	save := *c
	n, ok := c.u8()
	v, ok := c.prefixed(int(n), ok)
	if !ok {
		*c = save
	}
	return v, ok
}

func (c *cursor) prefixed16() (cursor, bool) {
	save := *c
	n, ok := c.u16()
	v, ok := c.prefixed(int(n), ok)
	if !ok {
		*c = save
	}
	return v, ok
}

func (c *cursor) prefixed24() (cursor, bool) {
	save := *c
	n, ok := c.u24()
	v, ok := c.prefixed(n, ok)
	if !ok {
		*c = save
	}
	return v, ok
}

func (c *cursor) skipPrefixed8() bool {
	_, ok := c.prefixed8()
	return ok
}

package proxy

import (
	"bytes"
	"encoding/base64"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
)

// redaction is the set of byte strings that must never reach a sandbox in a
// response: every form in which the proxy sent the credential upstream. An
// upstream that reflects request headers (an echo endpoint, an error quoting
// the credential) would otherwise hand the key straight back.
//
// Each occurrence is overwritten with a mask of the same length, so that
// Content-Length and any length-prefixed framing stay valid.
type redaction struct {
	// needles holds no string that contains another: masking the inner one
	// already hides the secret bytes of the outer, and with no needle a
	// prefix of another, at most one can match at any position.
	needles [][]byte
	mask    byte
	maxLen  int
	// folded are the needles with ASCII letters lower-cased, for header
	// names, which reach the proxy in whatever case the upstream's protocol
	// and Go's canonicalisation left them.
	folded []string
}

// maskCandidates are tried in order; the first byte that occurs in no needle
// is the mask, so a masked span can never be part of a new match.
const maskCandidates = "*#x~"

// newRedaction builds the set from the credential forms; empty forms are
// ignored. It returns nil when there is nothing to hide, so callers skip all
// work for a request that carries no key.
func newRedaction(forms ...string) *redaction {
	var ns []string
	for _, f := range forms {
		if f != "" && !slices.Contains(ns, f) {
			ns = append(ns, f)
		}
	}
	if len(ns) == 0 {
		return nil
	}

	// Keep only the innermost forms: drop a form that contains another.
	r := &redaction{mask: maskCandidates[0]}
	for i, n := range ns {
		inner := true
		for j, m := range ns {
			if i != j && len(m) < len(n) && strings.Contains(n, m) {
				inner = false
				break
			}
		}
		if inner {
			r.needles = append(r.needles, []byte(n))
			r.maxLen = max(r.maxLen, len(n))
			r.folded = append(r.folded, asciiLower(n))
		}
	}

	for _, c := range []byte(maskCandidates) {
		if !slices.ContainsFunc(r.needles, func(n []byte) bool {
			return bytes.IndexByte(n, c) >= 0
		}) {
			r.mask = c
			break
		}
	}
	return r
}

// credentialForms lists every encoding of key that the rewritten request out
// carries: the raw key, its query escaping (the query form sends exactly
// that), the value of the provider's header, and the base64 token of a basic
// Authorization header.
func credentialForms(out *http.Request, header, key string) []string {
	if key == "" {
		return nil
	}
	forms := []string{key, url.QueryEscape(key)}
	if v := out.Header.Get(header); header != "" && strings.Contains(v, key) {
		forms = append(forms, v)
	}
	if v, ok := strings.CutPrefix(out.Header.Get("Authorization"), "Basic "); ok &&
		isBasicOf(v, key) {
		forms = append(forms, v)
	}
	return forms
}

// isBasicOf reports whether token is a basic-auth token whose password or
// user is key.
func isBasicOf(token, key string) bool {
	raw, err := base64.StdEncoding.DecodeString(token)
	if err != nil {
		return false
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	return ok && (user == key || pass == key)
}

// maskInPlace overwrites every leftmost, non-overlapping occurrence of a
// needle in b and returns the end of the last one (0 when there was none).
func (r *redaction) maskInPlace(b []byte) int {
	if len(r.needles) == 1 {
		n, end := r.needles[0], 0
		for {
			i := bytes.Index(b[end:], n)
			if i < 0 {
				return end
			}
			end += i + len(n)
			r.fill(b[end-len(n) : end])
		}
	}

	end := 0
	for {
		at, n := -1, []byte(nil)
		for _, m := range r.needles {
			if i := bytes.Index(b[end:], m); i >= 0 && (at < 0 || i < at) {
				at, n = i, m
			}
		}
		if at < 0 {
			return end
		}
		end += at + len(n)
		r.fill(b[end-len(n) : end])
	}
}

func (r *redaction) fill(b []byte) {
	for i := range b {
		b[i] = r.mask
	}
}

// holdBack returns the length of the longest suffix of b[from:] that is a
// proper prefix of a needle: the bytes that must wait for the next read,
// because they may yet become a key. Anything else can go out now, so a
// stream of events ending in "\n\n" is never delayed.
func (r *redaction) holdBack(b []byte, from int) int {
	best := 0
	for _, n := range r.needles {
		// Only a suffix longer than the best so far can matter.
		for i := max(from, len(b)-len(n)+1); i < len(b)-best; {
			j := bytes.IndexByte(b[i:len(b)-best], n[0])
			if j < 0 {
				break
			}
			i += j
			if bytes.HasPrefix(n, b[i:]) {
				best = len(b) - i
				break
			}
			i++
		}
	}
	return best
}

// maskString returns s with every needle masked, or s itself when it holds
// none (the common case costs one scan and no allocation).
func (r *redaction) maskString(s string) string {
	hit := false
	for _, n := range r.needles {
		if strings.Contains(s, string(n)) {
			hit = true
			break
		}
	}
	if !hit {
		return s
	}
	b := []byte(s)
	r.maskInPlace(b)
	return string(b)
}

// maskName returns name with every needle masked whatever the case of its
// letters, or name itself when it holds none. Go canonicalises header names
// ("X-Abc") and HTTP/2 lower-cases them, so a key reflected into a name
// comes back with its case changed; the whole matching run is masked.
func (r *redaction) maskName(name string) string {
	if !slices.ContainsFunc(r.folded, func(m string) bool { return len(m) <= len(name) }) {
		return name // shorter than every needle: the usual case, no allocation
	}
	lower := asciiLower(name)
	var out []byte
	for end := 0; ; {
		at, n := -1, 0
		for _, m := range r.folded {
			if i := strings.Index(lower[end:], m); i >= 0 &&
				(at < 0 || i < at || (i == at && len(m) > n)) {
				at, n = i, len(m)
			}
		}
		if at < 0 {
			break
		}
		if out == nil {
			out = []byte(name)
		}
		end += at + n
		r.fill(out[end-n : end])
	}
	if out == nil {
		return name
	}
	return string(out)
}

// asciiLower lower-cases ASCII letters only, so byte offsets stay those of s.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// maskHeader masks every needle in h's values (exactly) and names (ignoring
// case), in place.
func (r *redaction) maskHeader(h map[string][]string) {
	for name, vs := range h {
		for i, v := range vs {
			vs[i] = r.maskString(v)
		}
		if m := r.maskName(name); m != name {
			delete(h, name)
			h[m] = append(h[m], vs...)
		}
	}
}

// redactResponse hides the credential in everything of resp that goes back
// to the client: headers now, the body as it streams, trailers at the end of
// the body. A 101 keeps its body, which ReverseProxy needs as the raw
// connection for the upgraded protocol.
//
// TODO: frames after a 101 (websockets) and compressed bodies are relayed
// unscanned: masking them needs a frame parser, or decoding and re-encoding
// the body, which this does not attempt. doc.go states the limitation;
// Policy.IdentityEncoding keeps bodies uncompressed instead.
func (r *redaction) redactResponse(resp *http.Response) {
	r.maskHeader(resp.Header)
	if resp.StatusCode == http.StatusSwitchingProtocols ||
		resp.Body == nil || resp.Body == http.NoBody {
		return
	}
	resp.Body = &redactingBody{src: resp.Body, red: r, onEOF: func() {
		// The transport fills Trailer just before the body reports EOF;
		// ReverseProxy copies it after reading EOF from this body.
		r.maskHeader(resp.Trailer)
	}}
}

// redact1xx masks an informational response's header (103 Early Hints, 100
// Continue) in place. ReverseProxy forwards those from its own client trace,
// never through ModifyResponse; ours is composed to run before it.
func (r *redaction) redact1xx(_ int, h textproto.MIMEHeader) error {
	r.maskHeader(h)
	return nil
}

// redactingBody streams src with every needle masked. Between reads it keeps
// at most maxLen-1 bytes, and only bytes that could still begin a needle;
// everything else is handed out as soon as src's read returns, so flushes by
// the upstream (server-sent events) stay flushes. It never buffers the body.
type redactingBody struct {
	src   io.ReadCloser
	red   *redaction
	onEOF func()

	pend  []byte // bytes read from src and not yet returned
	ready int    // pend[:ready] is decided; pend[ready:] may begin a needle
	err   error  // src's final error, returned once pend is drained
}

func (b *redactingBody) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if b.ready > 0 {
			n := copy(p, b.pend[:b.ready])
			b.pend = b.pend[:copy(b.pend, b.pend[n:])]
			b.ready -= n
			return n, nil
		}
		if b.err == io.EOF && len(b.pend) > 0 {
			// Nothing more can arrive, so an undecided tail is not a key.
			b.ready = len(b.pend)
			continue
		}
		if b.err != nil {
			// After a failed read the response is aborted anyway; an
			// undecided tail, possibly most of a key, is dropped.
			b.pend = b.pend[:0]
			return 0, b.err
		}
		var n, m int
		if len(p) > len(b.pend) {
			n, m = b.readInto(p)
		} else {
			m = b.readSmall()
		}
		if n > 0 || (m == 0 && b.err == nil) {
			// Nothing read and no error: pass the empty read on rather
			// than spin on a source that keeps returning it.
			return n, nil
		}
	}
}

// readInto reads straight into p behind the undecided tail, masks, and
// returns how many bytes of p are decided (n) and how many src gave (m): no
// copy of the body on the way, except the short tail.
func (b *redactingBody) readInto(p []byte) (n, m int) {
	held := copy(p, b.pend)
	m, err := b.src.Read(p[held:])
	total := held + m
	keep := b.scan(p[:total], err)
	b.pend = append(b.pend[:0], p[total-keep:total]...)
	return total - keep, m
}

// readSmall serves a caller whose buffer is no larger than the undecided
// tail: it reads into pend itself and marks what became decided.
func (b *redactingBody) readSmall() int {
	held := len(b.pend)
	b.pend = slices.Grow(b.pend, 512)[:held+512]
	m, err := b.src.Read(b.pend[held:])
	b.pend = b.pend[:held+m]
	b.ready = len(b.pend) - b.scan(b.pend, err)
	return m
}

// scan masks window, records src's error and returns how many trailing bytes
// must wait for more input.
func (b *redactingBody) scan(window []byte, err error) int {
	end := b.red.maskInPlace(window)
	b.err = err
	if err == io.EOF {
		if b.onEOF != nil {
			b.onEOF()
		}
		return 0
	}
	return b.red.holdBack(window, end)
}

func (b *redactingBody) Close() error { return b.src.Close() }

package proxy

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
)

// chunkReader returns its chunks one per Read (split further only when p is
// smaller), like an upstream that flushes after each write.
type chunkReader struct {
	chunks [][]byte
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for len(c.chunks) > 0 && len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	c.chunks[0] = c.chunks[0][n:]
	return n, nil
}

func (c *chunkReader) Close() error { return nil }

// randomSplit cuts s into pieces of random length, empty ones included.
func randomSplit(rng *rand.Rand, s string) [][]byte {
	var out [][]byte
	for len(s) > 0 {
		n := min(len(s), rng.IntN(12))
		out = append(out, []byte(s[:n]))
		s = s[n:]
	}
	return out
}

// randomText draws from a small alphabet and plants needles and their
// prefixes, so that partial and overlapping matches are common.
func randomText(rng *rand.Rand, alphabet string, needles []string) string {
	var b strings.Builder
	for range rng.IntN(80) {
		switch rng.IntN(6) {
		case 0:
			b.WriteString(needles[rng.IntN(len(needles))])
		case 1:
			n := needles[rng.IntN(len(needles))]
			b.WriteString(n[:rng.IntN(len(n))])
		default:
			b.WriteByte(alphabet[rng.IntN(len(alphabet))])
		}
	}
	return b.String()
}

// readAllWith reads b to the end with reads of random sizes (1 to 40 bytes,
// below and above the longest needle), checking after each read that what
// is held back is short and could still be a needle.
func readAllWith(t *testing.T, rng *rand.Rand, b *redactingBody) string {
	t.Helper()
	var out []byte
	for {
		p := make([]byte, 1+rng.IntN(40))
		n, err := b.Read(p)
		out = append(out, p[:n]...)
		held := b.pend[b.ready:]
		if len(held) >= b.red.maxLen {
			t.Fatalf("holding %d bytes, more than a needle minus one", len(held))
		}
		if len(held) > 0 && b.err == nil && !startsAnyNeedle(b.red, held) {
			t.Fatalf("holding %q, which begins no needle", held)
		}
		if err == io.EOF {
			return string(out)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func startsAnyNeedle(r *redaction, b []byte) bool {
	for _, n := range r.needles {
		if bytes.HasPrefix(n, b) {
			return true
		}
	}
	return false
}

// For any way the upstream splits its writes and the client sizes its reads,
// the redacted stream equals strings.ReplaceAll on the whole body.
func TestRedactingBodyRandomChunks(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, needle := range []string{"abaab", "aaaa", "ab", "a", "bab-key-bab"} {
		r := newRedaction(needle)
		want := func(s string) string {
			return strings.ReplaceAll(s, needle, strings.Repeat("*", len(needle)))
		}
		for range 3000 {
			in := randomText(rng, "ab-\n", []string{needle})
			b := &redactingBody{src: &chunkReader{chunks: randomSplit(rng, in)}, red: r}
			if got := readAllWith(t, rng, b); got != want(in) {
				t.Fatalf("needle %q, input %q:\ngot  %q\nwant %q", needle, in, got, want(in))
			}
		}
	}
}

// With several forms of the credential, the result is the leftmost-first
// replacement of all of them (strings.Replacer's rule).
func TestRedactingBodyRandomChunksManyNeedles(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	needles := []string{"keyab", "abkey", "k%2Fe"}
	r := newRedaction(needles...)
	var pairs []string
	for _, n := range needles {
		pairs = append(pairs, n, strings.Repeat("*", len(n)))
	}
	repl := strings.NewReplacer(pairs...)
	for range 5000 {
		in := randomText(rng, "abkey%2F", needles)
		b := &redactingBody{src: &chunkReader{chunks: randomSplit(rng, in)}, red: r}
		if got, want := readAllWith(t, rng, b), repl.Replace(in); got != want {
			t.Fatalf("input %q:\ngot  %q\nwant %q", in, got, want)
		}
	}
}

// A read that ends with no possible key prefix is passed on whole, at once:
// SSE events ending in "\n\n" are never held for the next one.
func TestRedactingBodyHoldsOnlyKeyPrefixes(t *testing.T) {
	key := "sk-proj-SECRET"
	chunks := []string{
		"data: one\n\n",
		"data: sk-proj-SECRET\n\n",
		"data: sk-\n\n",
		"data: tail sk-pr",
		"oj-SECRET done\n\n",
		"data: s",
	}
	wantReads := []string{
		"data: one\n\n",
		"data: **************\n\n",
		"data: sk-\n\n",
		"data: tail ",
		"************** done\n\n",
		"data: ",
		"s", // at EOF the undecided tail turns out to be no key
	}
	var cs [][]byte
	for _, c := range chunks {
		cs = append(cs, []byte(c))
	}
	b := &redactingBody{src: &chunkReader{chunks: cs}, red: newRedaction(key)}
	var got []string
	buf := make([]byte, 32<<10)
	for {
		n, err := b.Read(buf)
		if n > 0 {
			got = append(got, string(buf[:n]))
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff(wantReads, got); diff != "" {
		t.Errorf("reads (-want +got):\n%s", diff)
	}
}

// A body that fails mid-key ends with the error, never with the key prefix
// that was held back: the response is aborted, and the prefix is most of a key.
func TestRedactingBodyDropsHeldPrefixOnError(t *testing.T) {
	src := io.MultiReader(strings.NewReader("data: sk-proj-SECR"),
		iotest.ErrReader(io.ErrUnexpectedEOF))
	b := &redactingBody{src: io.NopCloser(src), red: newRedaction("sk-proj-SECRET")}
	got, err := io.ReadAll(b)
	if string(got) != "data: " || err != io.ErrUnexpectedEOF {
		t.Errorf("got %q, %v; want %q, %v", got, err, "data: ", io.ErrUnexpectedEOF)
	}
}

func TestRedactingBodyTrailersAtEOF(t *testing.T) {
	resp := &http.Response{
		StatusCode: 200,
		Header:     http.Header{"X-Echo": {"k=SECRETKEY"}},
		Trailer:    http.Header{"X-Trailer-Echo": nil},
		Body:       &chunkReader{chunks: [][]byte{[]byte("SECRET"), []byte("KEY")}},
	}
	newRedaction("SECRETKEY").redactResponse(resp)
	resp.Trailer.Set("X-Trailer-Echo", "SECRETKEY") // as the transport does at EOF
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	got := []string{string(body), resp.Header.Get("X-Echo"), resp.Trailer.Get("X-Trailer-Echo")}
	want := []string{"*********", "k=*********", "*********"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("body, header, trailer (-want +got):\n%s", diff)
	}
}

func TestSwitchingProtocolsBodyNotWrapped(t *testing.T) {
	body := &chunkReader{}
	resp := &http.Response{StatusCode: http.StatusSwitchingProtocols,
		Header: http.Header{"X-Echo": {"SECRETKEY"}}, Body: body}
	newRedaction("SECRETKEY").redactResponse(resp)
	if resp.Body != io.ReadCloser(body) {
		t.Error("the body of a 101 was wrapped; ReverseProxy needs the raw connection")
	}
	if got := resp.Header.Get("X-Echo"); got != "*********" {
		t.Errorf("101 header %q, want it masked", got)
	}
}

func TestNewRedaction(t *testing.T) {
	tests := []struct {
		name    string
		forms   []string
		needles []string
		mask    string
	}{
		{"none", nil, nil, ""},
		{"empty forms", []string{"", ""}, nil, ""},
		{"duplicates", []string{"k1k1", "k1k1"}, []string{"k1k1"}, "*"},
		{"header value holds the key", []string{"sk-1", "Bearer sk-1", "sk-1"},
			[]string{"sk-1"}, "*"},
		{"basic token kept", []string{"sk-1", "eC1hOnNrLTE="},
			[]string{"sk-1", "eC1hOnNrLTE="}, "*"},
		{"mask avoids needle bytes", []string{"a*b"}, []string{"a*b"}, "#"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRedaction(tt.forms...)
			var needles []string
			mask := ""
			if r != nil {
				for _, n := range r.needles {
					needles = append(needles, string(n))
				}
				mask = string(r.mask)
			}
			if diff := cmp.Diff(tt.needles, needles); diff != "" {
				t.Errorf("needles (-want +got):\n%s", diff)
			}
			if mask != tt.mask {
				t.Errorf("mask %q, want %q", mask, tt.mask)
			}
		})
	}
}

func TestCredentialForms(t *testing.T) {
	const key = "AIza+SECRET/key"
	basic := base64.StdEncoding.EncodeToString([]byte("x-access-token:" + key))
	tests := []struct {
		name   string
		header http.Header
		form   string // the provider's header, for the header form
		want   []string
	}{
		{"bearer", http.Header{"Authorization": {"Bearer " + key}}, "Authorization",
			[]string{key, url.QueryEscape(key), "Bearer " + key}},
		{"x-api-key", http.Header{"X-Api-Key": {key}}, "x-api-key",
			[]string{key, url.QueryEscape(key), key}},
		{"basic", http.Header{"Authorization": {"Basic " + basic}}, "",
			[]string{key, url.QueryEscape(key), basic}},
		{"basic of another credential", http.Header{"Authorization": {"Basic dTpw"}}, "",
			[]string{key, url.QueryEscape(key)}},
		{"query", http.Header{}, "", []string{key, url.QueryEscape(key)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := credentialForms(&http.Request{Header: tt.header}, tt.form, key)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("forms (-want +got):\n%s", diff)
			}
		})
	}
	if got := credentialForms(&http.Request{Header: http.Header{}}, "", ""); got != nil {
		t.Errorf("no key gave forms %q", got)
	}
}

func TestMaskHeaderNamesAndValues(t *testing.T) {
	h := http.Header{
		"X-Echo":           {"Bearer KEY123", "plain"},
		"X-Key-KEY123":     {"v"},
		"Content-Type":     {"application/json"},
		"X-Partial-Prefix": {"KEY12"},
	}
	newRedaction("KEY123").maskHeader(h)
	want := http.Header{
		"X-Echo":           {"Bearer ******", "plain"},
		"X-Key-******":     {"v"},
		"Content-Type":     {"application/json"},
		"X-Partial-Prefix": {"KEY12"},
	}
	if diff := cmp.Diff(want, h); diff != "" {
		t.Errorf("header (-want +got):\n%s", diff)
	}
}

// The redactor's cost on a 1 MiB body read in ReverseProxy's 32 KiB reads,
// against the plain copy. "typical" is a token stream; "near-misses" puts a
// key prefix in every 48-byte event, the worst case for the scan; both hold
// the whole key every 64 KiB.
func BenchmarkRedactingBody1MiB(b *testing.B) {
	bodies := map[string][]byte{
		"typical": bytes.Repeat([]byte("data: {\"delta\":\"some streamed tokens here\"}\n\n"),
			(1<<20)/48),
		"near-misses": bytes.Repeat([]byte("data: {\"delta\":\"some streamed tokens, sk-pr\"}\n\n"),
			(1<<20)/48),
	}
	red := newRedaction(openaiKey, url.QueryEscape(openaiKey), "Bearer "+openaiKey)
	buf := make([]byte, 32<<10)

	for _, name := range []string{"typical", "near-misses"} {
		body := bodies[name]
		for i := 0; i+len(openaiKey) < len(body); i += 64 << 10 {
			copy(body[i:], openaiKey)
		}
		for _, redact := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/redact=%v", name, redact), func(b *testing.B) {
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					var r io.Reader = bytes.NewReader(body)
					if redact {
						r = &redactingBody{src: io.NopCloser(r), red: red}
					}
					if _, err := io.CopyBuffer(io.Discard, onlyReader{r}, buf); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// onlyReader hides WriterTo so that CopyBuffer really reads in 32 KiB steps.
type onlyReader struct{ io.Reader }

// A key reflected into a header name comes back with its case changed (Go
// canonicalises names, HTTP/2 lower-cases them): names match ignoring case,
// values exactly.
func TestMaskHeaderNameIgnoresCase(t *testing.T) {
	h := http.Header{
		"X-Deadbeef":        {"1"},
		"Deadbeef-Deadbeef": {"2"},
		"X-Dead-Beef":       {"3"},
		"X-Value":           {"DEADBEEF", "deadbeef"},
	}
	newRedaction("deadbeef").maskHeader(h)
	want := http.Header{
		"X-********":        {"1"},
		"********-********": {"2"},
		"X-Dead-Beef":       {"3"},
		"X-Value":           {"DEADBEEF", "********"},
	}
	if diff := cmp.Diff(want, h); diff != "" {
		t.Errorf("header (-want +got):\n%s", diff)
	}
}

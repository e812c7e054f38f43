package proxy

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/hermes-netd/hermes-netd/internal/secrets"
)

// An upstream whose certificate names another host must never see the
// request, let alone the key.
func TestUpstreamWrongCertificate(t *testing.T) {
	tca := newTestCA(t)
	up := newUpstream(t, tca, nil, "impostor.example")
	e := newEnv(t, tca.pool)
	e.setDst(up.addr(t))

	resp, err := e.client(false).Get("https://api.openai.com/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	typ, msg := apiError(t, resp.Body)
	if resp.StatusCode != 502 || typ != "hermes_upstream_error" {
		t.Errorf("got %d %s, want 502 hermes_upstream_error", resp.StatusCode, typ)
	}
	if !strings.Contains(msg, "certificate") {
		t.Errorf("message %q does not say the certificate was wrong", msg)
	}
	if up.count() != 0 || up.active.Load() != 0 {
		t.Errorf("upstream saw %d requests on %d active connections, want none",
			up.count(), up.active.Load())
	}
}

// Untrusted upstream CA: the system roots (nil pool) do not know the test CA.
func TestUpstreamUntrustedCA(t *testing.T) {
	tca := newTestCA(t)
	up := newUpstream(t, tca, nil, "api.openai.com")
	e := newEnv(t, nil)
	e.setDst(up.addr(t))

	resp, err := e.client(false).Get("https://api.openai.com/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 502 || up.count() != 0 {
		t.Errorf("got %d with %d upstream requests, want 502 and none", resp.StatusCode, up.count())
	}
}

func TestSSRFGuardRefusesNonPublicUpstreams(t *testing.T) {
	tca := newTestCA(t)
	tests := []struct{ dst, want string }{
		{"10.0.0.1:443", "private"},
		{"172.20.1.1:443", "private"},
		{"192.168.1.1:443", "private"},
		{"169.254.169.254:443", "link-local"},
		{"100.64.0.1:443", "CGNAT"},
		{"0.0.0.0:443", "this-network"},
		{"224.0.0.1:443", "multicast"},
		{"[fc00::1]:443", "private"},
		{"[fe80::1]:443", "link-local"},
		{"[::1]:443", "loopback"},
		{"[::]:443", "unspecified"},
		{"[::ffff:10.0.0.1]:443", "private"},
		{"127.0.0.1:443", "loopback"},
	}
	e := newEnv(t, tca.pool, func(o *Options) { o.Policy.AllowUpstream = nil })
	for _, tt := range tests {
		// The destination belongs to a connection: each needs a new one.
		e.setDst(netip.MustParseAddrPort(tt.dst))
		resp, err := e.client(false).Get("https://api.openai.com/v1/models")
		if err != nil {
			t.Fatalf("%s: %v", tt.dst, err)
		}
		typ, msg := apiError(t, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 502 || typ != "hermes_upstream_error" ||
			!strings.Contains(msg, tt.want) || !strings.Contains(msg, "allow_upstream") {
			t.Errorf("%s: got %d %s %q, want 502 naming the %s range and the fix",
				tt.dst, resp.StatusCode, typ, msg, tt.want)
		}
	}
	if n := e.dialCount(); n != 0 {
		t.Errorf("%d dials reached the dialer; the guard must refuse before dialling", n)
	}
}

func TestCheckUpstream(t *testing.T) {
	s := &Server{listeners: map[net.Listener]netip.AddrPort{
		nil: netip.MustParseAddrPort("127.0.0.1:15001"),
	}}
	allowLoop := &Policy{AllowUpstream: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	tests := []struct {
		addr    string
		pol     *Policy
		refused bool
	}{
		{"198.18.0.10:443", &Policy{}, false}, // benchmark range: not in the list
		{"8.8.8.8:443", &Policy{}, false},
		{"[2606:4700::1]:443", &Policy{}, false},
		{"127.0.0.1:443", &Policy{}, true},
		{"127.0.0.1:443", allowLoop, false},
		{"127.0.0.1:15001", allowLoop, true}, // the listener itself, always
		{"[::ffff:127.0.0.1]:15001", allowLoop, true},
		{"10.1.2.3:443", allowLoop, true},
	}
	for _, tt := range tests {
		err := s.checkUpstream(netip.MustParseAddrPort(tt.addr), tt.pol)
		if (err != nil) != tt.refused || (err != nil && !errors.Is(err, ErrUpstreamRefused)) {
			t.Errorf("checkUpstream(%s) = %v, want refused=%v", tt.addr, err, tt.refused)
		}
	}
}

// The default dialer checks the address again on the socket (Control).
func TestDefaultDialerGuard(t *testing.T) {
	s := &Server{opts: Options{}}
	s.opts.Timeouts.setDefaults()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dst := netip.MustParseAddrPort(ln.Addr().String())

	if _, err := s.dialUpstream(t.Context(), dst, &Policy{}); !errors.Is(err, ErrUpstreamRefused) {
		t.Errorf("dial to loopback without allowance: %v, want ErrUpstreamRefused", err)
	}
	allow := &Policy{AllowUpstream: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}
	c, err := s.dialUpstream(t.Context(), dst, allow)
	if err != nil {
		t.Fatalf("dial with allowance: %v", err)
	}
	c.Close()
}

func TestUpstreamFailureBeforeHeaders(t *testing.T) {
	tca := newTestCA(t)
	e := newEnv(t, tca.pool)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	e.setDst(netip.MustParseAddrPort(ln.Addr().String()))
	ln.Close() // nothing listens there now

	for _, h2 := range []bool{false, true} {
		resp, err := e.client(h2).Get("https://api.openai.com/v1/models?key=x")
		if err != nil {
			t.Fatal(err)
		}
		typ, msg := apiError(t, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 502 || typ != "hermes_upstream_error" ||
			!strings.Contains(msg, "refused") {
			t.Errorf("h2=%v: got %d %s %q, want 502 saying the connection was refused",
				h2, resp.StatusCode, typ, msg)
		}
		if strings.Contains(msg, "https://") {
			t.Errorf("message %q carries the upstream URL", msg)
		}
	}
}

// Once headers are out, a broken upstream must look broken to the client: a
// clean end would pass a truncated completion off as whole.
func TestUpstreamFailureAfterHeadersAborts(t *testing.T) {
	tca := newTestCA(t)
	up := newUpstream(t, tca, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		io.WriteString(w, "data: partial\n\n")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // upstream dies mid-stream
	}, "api.openai.com")
	e := newEnv(t, tca.pool)
	e.setDst(up.addr(t))

	for _, h2 := range []bool{false, true} {
		resp, err := e.client(h2).Get("https://api.openai.com/v1/chat")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), "partial") {
			t.Errorf("h2=%v: got %d %q, want 200 and the partial event", h2, resp.StatusCode, body)
		}
		if err == nil {
			t.Errorf("h2=%v: body ended cleanly, want an error", h2)
		}
		if !h2 && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("h1: body error %v, want unexpected EOF", err)
		}
	}
	recs := e.waitRecords(t, msgRequest, 2)
	for _, r := range recs {
		if r[KeyDecision] != DecisionUpstreamErr {
			t.Errorf("record decision %v, want %s", r[KeyDecision], DecisionUpstreamErr)
		}
	}
}

func TestSanitizeErrorDropsURLAndKey(t *testing.T) {
	key := secrets.NewKey("AIzaSECRETquerykey")
	err := &url.Error{Op: "Get", URL: "https://generativelanguage.googleapis.com/v1?key=AIzaSECRETquerykey",
		Err: errors.New("dial tcp: connection refused")}
	if got := sanitizeError(err, key); got != "dial tcp: connection refused" {
		t.Errorf("got %q", got)
	}
	if got := sanitizeError(errors.New("odd AIzaSECRETquerykey echo"), key); strings.Contains(got, "SECRET") {
		t.Errorf("key survived: %q", got)
	}
}

func TestAltSvcRemoved(t *testing.T) {
	tca := newTestCA(t)
	up := newUpstream(t, tca, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Alt-Svc", `h3=":443"; ma=86400`)
	}, "api.openai.com")
	e := newEnv(t, tca.pool)
	e.setDst(up.addr(t))
	resp, err := e.client(true).Get("https://api.openai.com/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if v := resp.Header.Get("Alt-Svc"); v != "" {
		t.Errorf("Alt-Svc %q reached the client", v)
	}
}

//go:build linux

package testenv

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRunID(t *testing.T) {
	tests := []struct {
		name   string
		id     string
		isOurs bool
	}{
		{"hermes-e2e-a1b2c3-sandbox", "a1b2c3", true},
		{"hermes-e2e-a1b2c3-host", "a1b2c3", true},
		{"hermes-e2e-a1b2c3-inet", "a1b2c3", true},
		{"hermes-e2e-a1b2c3-other", "", false},
		{"hermes-e2e--host", "", false},
		{"hermes-t-a1b2c3-host", "", false},
		{"sandbox", "", false},
	}
	for _, tt := range tests {
		id, ok := runID(tt.name)
		if diff := cmp.Diff([]any{tt.id, tt.isOurs}, []any{id, ok}); diff != "" {
			t.Errorf("runID(%q) (-want +got):\n%s", tt.name, diff)
		}
	}
}

func TestHostsFileAndLookup(t *testing.T) {
	text := hostsFile()
	for _, s := range Sites {
		line := s.Addrs[0].String() + "\t" + s.Host + "\n"
		if !strings.Contains(text, line) {
			t.Errorf("hosts file lacks %q:\n%s", line, text)
		}
		got, err := LookupHost(s.Host)
		if err != nil || got != s.Addrs[0] {
			t.Errorf("LookupHost(%s) = %v, %v; want %v", s.Host, got, err, s.Addrs[0])
		}
		for _, a := range s.Addrs {
			if !FakeInternet4.Contains(a) && !FakeInternet6.Contains(a) {
				t.Errorf("site %s address %s lies outside the fake internet", s.Host, a)
			}
		}
	}
	if _, err := LookupHost("example.com"); err == nil {
		t.Error("LookupHost(example.com) succeeded; want an error, it is no fake site")
	}
	if got, _ := LookupHost("2001:db8::10"); got != netip.MustParseAddr("2001:db8::10") {
		t.Errorf("LookupHost of an IP literal = %v, want the literal", got)
	}
}

func TestLinkAddressesInFakeInternet(t *testing.T) {
	for _, p := range []netip.Prefix{SandboxAddr4, HostSandboxAddr4, HostInetAddr4, InetAddr4,
		SandboxAddr6, HostSandboxAddr6, HostInetAddr6, InetAddr6} {
		if !FakeInternet4.Contains(p.Addr()) && !FakeInternet6.Contains(p.Addr()) {
			t.Errorf("%s lies outside the fake internet", p)
		}
	}
}

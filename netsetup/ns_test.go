//go:build linux

package netsetup

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSpecPath(t *testing.T) {
	tests := []struct {
		spec, want, wantErr string
	}{
		{spec: "sb1", want: "/var/run/netns/sb1"},
		{spec: "/proc/42/ns/net", want: "/proc/42/ns/net"},
		{spec: "/run/netns/../netns/x", want: "/run/netns/x"},
		{spec: "pid:42", want: "/proc/42/ns/net"},
		{spec: "pid:0", wantErr: "pid must be a positive number"},
		{spec: "pid:abc", wantErr: "pid must be a positive number"},
		{spec: "a/b", wantErr: "may not contain '/'"},
		{spec: "..", wantErr: "may not contain '/'"},
		{spec: "", wantErr: "empty spec"},
	}
	for _, tt := range tests {
		got, err := specPath(tt.spec)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("specPath(%q) error = %v, want one containing %q", tt.spec, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("specPath(%q) = %q, %v; want %q", tt.spec, got, err, tt.want)
		}
	}
}

func TestParseSockaddr(t *testing.T) {
	v4 := []byte{2, 0, 0x01, 0xbb, 198, 18, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0}
	v6 := make([]byte, 28)
	v6[0], v6[2], v6[3] = 10, 0x01, 0xbb
	copy(v6[8:24], netip.MustParseAddr("2001:db8::10").AsSlice())
	mapped := make([]byte, 28)
	copy(mapped, v6[:8])
	copy(mapped[8:24], netip.MustParseAddr("::ffff:198.18.0.10").AsSlice())

	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"v4", v4, "198.18.0.10:443"},
		{"v6", v6, "[2001:db8::10]:443"},
		{"v4-mapped", mapped, "198.18.0.10:443"},
	}
	for _, tt := range tests {
		got, err := parseSockaddr(tt.in)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if diff := cmp.Diff(tt.want, got.String()); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
	}
	if _, err := parseSockaddr(v4[:3]); err == nil {
		t.Error("short sockaddr accepted")
	}
	if _, err := parseSockaddr(append([]byte{99, 0}, v4[2:]...)); err == nil {
		t.Error("unknown family accepted")
	}
}

//go:build linux

package redirect

import (
	"strings"
	"testing"
)

func TestParseMode(t *testing.T) {
	tests := []struct {
		in      string
		want    Mode
		wantErr string
	}{
		{"", ModeAuto, ""},
		{"auto", ModeAuto, ""},
		{"ebpf", ModeEBPF, ""},
		{"nft", ModeNFT, ""},
		{"iptables", "", `unknown redirect mode "iptables"; use auto, ebpf or nft`},
	}
	for _, tt := range tests {
		got, err := ParseMode(tt.in)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("ParseMode(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseMode(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"mode", Options{Mode: "fast"}, "unknown redirect mode"},
		{"no ports", Options{Mode: ModeNFT, Ports: []uint16{}}, "no intercepted ports"},
		{"port zero", Options{Mode: ModeNFT, Ports: []uint16{443, 0}}, "port 0 cannot"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

//go:build linux

package bpf

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

func TestPeerKeyUsesMappedNetworkOrder(t *testing.T) {
	tests := []struct {
		client string
		want   string // the 16 bytes the C side stores, as an IPv6 address
	}{
		{"127.0.0.1:40000", "::ffff:127.0.0.1"},
		{"[::ffff:127.0.0.1]:40000", "::ffff:127.0.0.1"},
		{"[::1]:40000", "::1"},
		{"[2001:db8::10]:40000", "2001:db8::10"},
	}
	for _, tt := range tests {
		k := peerKey(7, netip.MustParseAddrPort(tt.client))
		var mem [16]byte
		for i, w := range k.Addr {
			binary.NativeEndian.PutUint32(mem[4*i:], w)
		}
		if got := netip.AddrFrom16(mem); got != netip.MustParseAddr(tt.want) {
			t.Errorf("%s: key address bytes = %s, want %s", tt.client, got, tt.want)
		}
		if k.Port != 40000 || k.Netns != 7 || k.Pad1 != 0 || k.Pad2 != 0 {
			t.Errorf("%s: key = %+v, want port 40000, netns 7, zero padding", tt.client, k)
		}
		if got := fromWords(k.Addr); got != netip.MustParseAddr(tt.want) {
			t.Errorf("%s: fromWords = %s, want %s", tt.client, got, tt.want)
		}
	}
}

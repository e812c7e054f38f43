package proxy

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Sandboxes that share a Name but not an ID (a netns name made again) are
// counted apart by the connection cap; without an ID the Name counts.
func TestSandboxKey(t *testing.T) {
	for _, tc := range []struct {
		sb   Sandbox
		want string
	}{
		{Sandbox{Name: "sb"}, "sb"},
		{Sandbox{Name: "sb", ID: "1601"}, "1601"},
		{Sandbox{Name: "sb", ID: "1602"}, "1602"},
	} {
		if diff := cmp.Diff(tc.want, tc.sb.key()); diff != "" {
			t.Errorf("%+v key (-want +got):\n%s", tc.sb, diff)
		}
	}

	l := newConnLimit(1)
	a, b := Sandbox{Name: "sb", ID: "1601"}, Sandbox{Name: "sb", ID: "1602"}
	if _, ok := l.acquire(a.key()); !ok {
		t.Fatal("first namespace refused under the cap")
	}
	if _, ok := l.acquire(b.key()); !ok {
		t.Error("second namespace of the same name refused: the cap is shared")
	}
	if _, ok := l.acquire(a.key()); ok {
		t.Error("first namespace over its cap of 1 accepted")
	}
}

package proxy

import (
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hermes-netd/hermes-netd/internal/ratelimit"
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

// Namespaces attached in turn under one name have rate limit buckets of their
// own, under the default limit and under a named one, and their request
// records carry their ID as sandbox_id (what the daemon counts by).
func TestSandboxesSharingANameHaveTheirOwnRateLimits(t *testing.T) {
	tca := newTestCA(t)
	up := newUpstream(t, tca, nil, "api.openai.com")
	e := newEnv(t, tca.pool, withLimits(t, ratelimit.Config{
		Sandbox:   &ratelimit.Limit{RPS: slow, Burst: 1},
		Sandboxes: map[string]ratelimit.Limit{"ci": {RPS: slow, Burst: 2}},
	}))
	e.setDst(up.addr(t))

	type step struct{ name, id string }
	clients := map[step]*http.Client{}
	steps := []step{
		{"dev", "1601"}, {"dev", "1601"}, {"dev", "1602"}, {"dev", "1602"},
		{"ci", "1701"}, {"ci", "1701"}, {"ci", "1701"},
		{"ci", "1702"}, {"ci", "1702"}, {"ci", "1702"},
	}
	var got []answer
	for _, s := range steps {
		c, ok := clients[s]
		if !ok {
			c = e.serveSandboxID(t, s.name, s.id)
			clients[s] = c
		}
		a, _ := get(t, c, "https://api.openai.com/v1/models")
		got = append(got, a)
	}
	want := []answer{ok200, limited, ok200, limited,
		ok200, ok200, limited, ok200, ok200, limited}
	if diff := cmp.Diff(want, ignoreRetry(got)); diff != "" {
		t.Fatalf("answers (-want +got):\n%s", diff)
	}
	if n := up.count(); n != 6 {
		t.Errorf("upstream saw %d requests, want 6", n)
	}

	var gotIDs, wantIDs []string
	for i, r := range e.waitRecords(t, msgRequest, len(steps)) {
		gotIDs = append(gotIDs, r[KeySandbox].(string)+"/"+r[KeySandboxID].(string))
		wantIDs = append(wantIDs, steps[i].name+"/"+steps[i].id)
	}
	if diff := cmp.Diff(wantIDs, gotIDs); diff != "" {
		t.Errorf("request records' sandbox/sandbox_id (-want +got):\n%s", diff)
	}
}

package daemon

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestDetachReusedSpec: a spec (name or pid:N) re-used for a new namespace
// while the old one lives on gives two attachments under one spec; detach acts
// on the namespace the spec names now, refuses to guess once it names none,
// and takes cookie:N to pick one.
func TestDetachReusedSpec(t *testing.T) {
	for _, spec := range []string{"sb", "pid:5"} {
		t.Run(spec, func(t *testing.T) {
			td := newTestDaemon(t)
			ctx := context.Background()
			td.k.set(spec, 601)
			if _, err := td.Attach(ctx, spec); err != nil {
				t.Fatal(err)
			}
			td.k.set(spec, 0) // name deleted (pid exited), a process still inside
			td.k.hold(601, true)
			td.CheckVanished()
			td.k.set(spec, 602) // made again: another namespace
			b, err := td.Attach(ctx, spec)
			if err != nil {
				t.Fatal(err)
			}
			if b.Existing || b.Cookie != 1602 {
				t.Fatalf("Attach of the new %s = %+v, want a new attachment, cookie 1602", spec, b)
			}

			// The spec names 602 now: detach acts on it, every time.
			for range 5 {
				res, err := td.Detach(ctx, spec)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(DetachResult{Netns: spec, Cookie: 1602, WasAttached: true}, res); diff != "" {
					t.Fatalf("Detach(%s) (-want +got):\n%s", spec, diff)
				}
				if _, ok := td.k.attached[601]; !ok {
					t.Fatalf("detach %s removed the old namespace's redirect", spec)
				}
				if _, err := td.Attach(ctx, spec); err != nil {
					t.Fatal(err)
				}
			}
			if n := td.p.servingCount(spec); n != 4 {
				t.Errorf("serving %d listeners under %s, want 4 (two namespaces)", n, spec)
			}

			// Neither is named now: refuse, listing both cookies.
			td.k.set(spec, 0)
			td.k.hold(602, true)
			_, err = td.Detach(ctx, spec)
			if !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "1601, 1602") ||
				!strings.Contains(err.Error(), "cookie:1601") {
				t.Fatalf("Detach(ambiguous %s) error = %v, want ErrBadRequest listing "+
					"cookies 1601, 1602 and how to pick one", spec, err)
			}
			if len(td.Attachments()) != 2 {
				t.Fatalf("an ambiguous detach detached something: %+v", td.Attachments())
			}

			res, err := td.Detach(ctx, "cookie:1601")
			if err != nil || res.Cookie != 1601 || !res.WasAttached {
				t.Fatalf("Detach(cookie:1601) = %+v, %v", res, err)
			}
			res, err = td.Detach(ctx, spec) // now unambiguous
			if err != nil || res.Cookie != 1602 || !res.WasAttached {
				t.Fatalf("Detach(%s) after = %+v, %v; want cookie 1602", spec, res, err)
			}
			if len(td.k.attached) != 0 || len(td.Attachments()) != 0 {
				t.Errorf("left: redirects %v, attachments %v", td.k.attached, td.Attachments())
			}
			res, err = td.Detach(ctx, "cookie:1601")
			if err != nil || res.WasAttached {
				t.Errorf("Detach(cookie:1601) again = %+v, %v; want WasAttached false", res, err)
			}
		})
	}
}

func TestAttachRefusesCookieSpec(t *testing.T) {
	td := newTestDaemon(t)
	_, err := td.Attach(context.Background(), "cookie:12")
	if !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "pid:N") {
		t.Errorf("Attach(cookie:12) error = %v, want ErrBadRequest saying how to attach", err)
	}
}

// TestRetiredSurviveRestartAndAreCollected: retired records stay in the state
// file across a restart (their redirect still matters), and their redirect
// entries are dropped oldest first only as the map nears capacity.
func TestRetiredSurviveRestartAndAreCollected(t *testing.T) {
	td := newTestDaemon(t)
	old := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st := State{Retired: []Record{
		{Spec: "b", Inode: 902, Cookie: 1902, Retired: old.Add(time.Hour)},
		{Spec: "a", Inode: 901, Cookie: 1901, Retired: old},
	}}
	if err := WriteState(td.state, st); err != nil {
		t.Fatal(err)
	}
	if err := td.Restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"a/1901", "b/1902"}, td.retiredSpecs(t)); diff != "" {
		t.Errorf("retired after restart (-want +got):\n%s", diff)
	}
	if len(td.k.forgotten) != 0 {
		t.Errorf("restart forgot %v, want nothing", td.k.forgotten)
	}

	// Capacity 4: three quarters is 3 entries. Attaching a second namespace
	// (4 in all) drops the oldest retired one, a; retiring y then keeps 3.
	td.opts.NetnsCapacity = 4
	ctx := context.Background()
	for i, spec := range []string{"x", "y"} {
		td.k.set(spec, uint64(910+i))
		if _, err := td.Attach(ctx, spec); err != nil {
			t.Fatal(err)
		}
	}
	td.k.set("y", 0)
	if diff := cmp.Diff([]string{"y"}, td.CheckVanished()); diff != "" {
		t.Errorf("CheckVanished (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]uint64{1901}, td.k.forgotten); diff != "" {
		t.Errorf("collected cookies (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"b/1902", "y/1911"}, td.retiredSpecs(t)); diff != "" {
		t.Errorf("retired after collection (-want +got):\n%s", diff)
	}
}

// TestRestoreComparesCookie: the name opens a namespace with the recorded
// inode but another cookie: the recorded namespace is gone (its inode reused)
// and the new one is not attached, since nobody asked for it.
func TestRestoreComparesCookie(t *testing.T) {
	td := newTestDaemon(t)
	rec := Record{Spec: "n", Inode: 720, Cookie: 1720, Port4: 15443}
	if err := SaveState(td.state, []Record{rec}); err != nil {
		t.Fatal(err)
	}
	td.k.set("n", 720)
	td.k.cookies[720] = 5555
	if err := td.Restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(td.Attachments()) != 0 || len(td.k.attached) != 0 {
		t.Errorf("attached %+v (redirects %v); want the new namespace left alone",
			td.Attachments(), td.k.attached)
	}
	if diff := cmp.Diff([]uint64{1720}, td.k.forgotten); diff != "" {
		t.Errorf("forgotten (-want +got):\n%s", diff)
	}
	if specs := td.stateSpecs(t); len(specs) != 0 {
		t.Errorf("state = %v, want empty", specs)
	}
}

package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestStateRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", StateFile)
	if got, err := LoadState(path); err != nil || got != nil {
		t.Fatalf("LoadState(missing) = %v, %v; want nil, nil", got, err)
	}

	since := time.Date(2026, 12, 3, 16, 0, 0, 0, time.UTC)
	want := []Record{
		{Spec: "sb1", Inode: 4026532001, Cookie: 8193, Port4: 15443, Port6: 15443, Since: since},
		{Spec: "pid:42", Inode: 4026532002, Cookie: 8194, Port4: 15443, Since: since},
	}
	if err := SaveState(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := LoadState(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode = %v, want 0600", fi.Mode().Perm())
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".attached-*"))
	if len(left) != 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

func TestLoadStateRejectsBadFiles(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"corrupt": "{not json",
		"version": `{"version": 99, "attached": []}`,
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := LoadState(path)
		if err == nil || !strings.Contains(err.Error(), path) ||
			!strings.Contains(err.Error(), "move it aside") {
			t.Errorf("LoadState(%s) error = %v, want one naming the file and the fix",
				name, err)
		}
	}
}

type testDaemon struct {
	*Daemon
	k     *fakeKernel
	p     *fakeProxy
	state string
}

func newTestDaemon(t *testing.T) *testDaemon {
	t.Helper()
	k, p := newFakeKernel(), newFakeProxy()
	state := filepath.Join(t.TempDir(), StateFile)
	d, err := New(Options{Kernel: k, Proxy: p, StatePath: state})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return &testDaemon{Daemon: d, k: k, p: p, state: state}
}

func (td *testDaemon) stateSpecs(t *testing.T) []string {
	t.Helper()
	recs, err := LoadState(td.state)
	if err != nil {
		t.Fatal(err)
	}
	var specs []string
	for _, r := range recs {
		specs = append(specs, r.Spec)
	}
	return specs
}

// retiredSpecs are the specs of the retired records in the state file, with
// their cookies, sorted by spec.
func (td *testDaemon) retiredSpecs(t *testing.T) []string {
	t.Helper()
	st, err := ReadState(td.state)
	if err != nil {
		t.Fatal(err)
	}
	var specs []string
	for _, r := range st.Retired {
		if r.Retired.IsZero() {
			t.Errorf("retired record %+v has no retirement time", r)
		}
		specs = append(specs, fmt.Sprintf("%s/%d", r.Spec, r.Cookie))
	}
	slices.Sort(specs)
	return specs
}

func TestAttachDetach(t *testing.T) {
	td := newTestDaemon(t)
	td.k.set("sb1", 501)
	td.k.set("pid:77", 501) // a process inside sb1
	ctx := context.Background()

	got, err := td.Attach(ctx, "sb1")
	if err != nil {
		t.Fatal(err)
	}
	want := Attachment{Record: Record{Spec: "sb1", Inode: 501, Cookie: 1501,
		Port4: DefaultPort, Port6: DefaultPort}}
	ignoreSince := cmpopts.IgnoreFields(Record{}, "Since")
	if diff := cmp.Diff(want, got, ignoreSince); diff != "" {
		t.Errorf("Attach (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[uint64]Listeners{501: {DefaultPort, DefaultPort}},
		td.k.attached); diff != "" {
		t.Errorf("kernel redirects (-want +got):\n%s", diff)
	}
	waitFor(t, func() bool { return td.p.servingCount("sb1") == 2 })
	if diff := cmp.Diff([]string{"sb1"}, td.stateSpecs(t)); diff != "" {
		t.Errorf("state (-want +got):\n%s", diff)
	}

	// Attaching again, by the same or another spec, is a no-op.
	for _, spec := range []string{"sb1", "pid:77"} {
		again, err := td.Attach(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		if !again.Existing || again.Spec != "sb1" {
			t.Errorf("Attach(%s) again = %+v, want the existing sb1 attachment", spec, again)
		}
	}
	if n := td.k.openCount(); n != 1 {
		t.Errorf("%d namespaces open, want 1 (the attached one)", n)
	}

	res, err := td.Detach(ctx, "pid:77")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(DetachResult{Netns: "sb1", Cookie: 1501, WasAttached: true}, res); diff != "" {
		t.Errorf("Detach (-want +got):\n%s", diff)
	}
	if len(td.k.attached) != 0 || td.p.servingCount("sb1") != 0 || td.k.openCount() != 0 {
		t.Errorf("after detach: redirects %v, serving %d, open %d; want none",
			td.k.attached, td.p.servingCount("sb1"), td.k.openCount())
	}
	if specs := td.stateSpecs(t); len(specs) != 0 {
		t.Errorf("state after detach = %v, want empty", specs)
	}

	res, err = td.Detach(ctx, "sb1")
	if err != nil || res.WasAttached {
		t.Errorf("second Detach = %+v, %v; want WasAttached false, no error", res, err)
	}
	res, err = td.Detach(ctx, "gone")
	if err != nil || res.WasAttached {
		t.Errorf("Detach(missing) = %+v, %v; want WasAttached false, no error", res, err)
	}
}

func TestAttachMissingNamespace(t *testing.T) {
	td := newTestDaemon(t)
	_, err := td.Attach(context.Background(), "nope")
	if !errors.Is(err, ErrNoNamespace) {
		t.Errorf("Attach(nope) error = %v, want ErrNoNamespace", err)
	}
	if td.k.openCount() != 0 {
		t.Errorf("a namespace was left open")
	}
}

func TestAttachRefusesOwnNamespace(t *testing.T) {
	k, p := newFakeKernel(), newFakeProxy()
	d, err := New(Options{Kernel: k, Proxy: p, StatePath: filepath.Join(t.TempDir(), "s"),
		OwnNetns: 1})
	if err != nil {
		t.Fatal(err)
	}
	k.set("pid:1", 1)
	_, err = d.Attach(context.Background(), "pid:1")
	if !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "own network namespace") {
		t.Errorf("Attach(own netns) error = %v, want a refusal", err)
	}
	if len(k.attached) != 0 || k.openCount() != 0 {
		t.Errorf("refused attach left redirects %v, %d open namespaces", k.attached,
			k.openCount())
	}
}

func TestAttachWithoutIPv6(t *testing.T) {
	td := newTestDaemon(t)
	td.k.set("v4only", 600)
	td.k.noV6[600] = true
	got, err := td.Attach(context.Background(), "v4only")
	if err != nil {
		t.Fatal(err)
	}
	if got.Port4 != DefaultPort || got.Port6 != 0 {
		t.Errorf("ports = %d/%d, want %d/0", got.Port4, got.Port6, DefaultPort)
	}
	if l := td.k.attached[600]; l != (Listeners{Port4: DefaultPort}) {
		t.Errorf("kernel got listeners %+v, want IPv4 only", l)
	}
}

func TestConnectionsCounted(t *testing.T) {
	td := newTestDaemon(t)
	td.k.set("sb1", 501)
	if _, err := td.Attach(context.Background(), "sb1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return td.p.servingCount("sb1") == 2 })

	td.p.mu.Lock()
	fl := td.p.lns["sb1"][0].(countingListener).Listener.(*fakeListener)
	td.p.mu.Unlock()
	for range 3 {
		a, b := net.Pipe()
		fl.conns <- a
		b.Close()
	}
	waitFor(t, func() bool { return td.Attachments()[0].Connections == 3 })
}

func TestRestore(t *testing.T) {
	td := newTestDaemon(t)
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	recs := []Record{
		{Spec: "alive", Inode: 701, Cookie: 1701, Port4: 15443, Since: since},
		{Spec: "reused", Inode: 702, Cookie: 1702, Port4: 15443, Since: since},
		{Spec: "vanished", Inode: 703, Cookie: 1703, Port4: 15443, Since: since},
	}
	if err := SaveState(td.state, recs); err != nil {
		t.Fatal(err)
	}
	td.k.set("alive", 701)
	td.k.set("reused", 799) // the name now points to a different namespace

	if err := td.Restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := td.Attachments()
	want := []Attachment{{Record: Record{Spec: "alive", Inode: 701, Cookie: 1701,
		Port4: DefaultPort, Port6: DefaultPort, Since: since}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("attached after restore (-want +got):\n%s", diff)
	}
	// Nothing visible holds reused's and vanished's namespaces, which does not
	// prove them freed (a socket may hold one): retired, redirect kept.
	if len(td.k.forgotten) != 0 {
		t.Errorf("forgotten cookies %v, want none", td.k.forgotten)
	}
	if diff := cmp.Diff([]string{"alive"}, td.stateSpecs(t)); diff != "" {
		t.Errorf("state after restore (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"reused/1702", "vanished/1703"}, td.retiredSpecs(t)); diff != "" {
		t.Errorf("retired after restore (-want +got):\n%s", diff)
	}
}

func TestRestoreKeepsWhatCannotBeOpenedNow(t *testing.T) {
	td := newTestDaemon(t)
	rec := Record{Spec: "busy", Inode: 801, Cookie: 1801, Port4: 15443}
	if err := SaveState(td.state, []Record{rec}); err != nil {
		t.Fatal(err)
	}
	td.k.failOpen = errors.New("permission denied")
	if err := td.Restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(td.Attachments()) != 0 || len(td.k.forgotten) != 0 {
		t.Errorf("attached %v, forgotten %v; want neither", td.Attachments(), td.k.forgotten)
	}
	if diff := cmp.Diff([]string{"busy"}, td.stateSpecs(t)); diff != "" {
		t.Errorf("state (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]Record{rec}, td.Status(context.Background()).Kept); diff != "" {
		t.Errorf("Status.Kept (-want +got):\n%s", diff)
	}

	// Detaching the kept record drops it and its kernel leftovers.
	res, err := td.Detach(context.Background(), "busy")
	if err != nil || !res.WasAttached {
		t.Errorf("Detach(kept) = %+v, %v; want WasAttached", res, err)
	}
	if diff := cmp.Diff([]uint64{1801}, td.k.forgotten); diff != "" {
		t.Errorf("forgotten after detach (-want +got):\n%s", diff)
	}
	if specs := td.stateSpecs(t); len(specs) != 0 {
		t.Errorf("state after detach = %v, want empty", specs)
	}
	if err := SaveState(td.state, []Record{rec}); err != nil {
		t.Fatal(err)
	}
	if err := td.Restore(context.Background()); err != nil {
		t.Fatal(err)
	}

	// Once it opens again, attaching it replaces the kept record.
	td.k.failOpen = nil
	td.k.set("busy", 801)
	if _, err := td.Attach(context.Background(), "busy"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"busy"}, td.stateSpecs(t)); diff != "" {
		t.Errorf("state after attach (-want +got):\n%s", diff)
	}
}

func TestCheckVanished(t *testing.T) {
	td := newTestDaemon(t)
	ctx := context.Background()
	td.k.set("sb1", 501)
	td.k.set("sb2", 502)
	td.k.set("pid:9", 503)
	for _, spec := range []string{"sb1", "sb2", "pid:9"} {
		if _, err := td.Attach(ctx, spec); err != nil {
			t.Fatal(err)
		}
	}
	td.k.set("sb2", 0)     // ip netns del sb2
	td.k.set("pid:9", 599) // pid reused by a process in another namespace

	if diff := cmp.Diff([]string{"pid:9", "sb2"}, td.CheckVanished()); diff != "" {
		t.Errorf("CheckVanished (-want +got):\n%s", diff)
	}
	// Retired: no longer served, but the redirect stays (fail closed).
	all := map[uint64]Listeners{501: {DefaultPort, DefaultPort},
		502: {DefaultPort, DefaultPort}, 503: {DefaultPort, DefaultPort}}
	if diff := cmp.Diff(all, td.k.attached); diff != "" {
		t.Errorf("kernel redirects (-want +got):\n%s", diff)
	}
	if td.p.servingCount("sb2") != 0 || td.p.servingCount("pid:9") != 0 {
		t.Errorf("still serving a retired namespace")
	}
	if n := td.k.openCount(); n != 1 {
		t.Errorf("%d namespaces open, want 1 (sb1)", n)
	}
	if diff := cmp.Diff([]string{"sb1"}, td.stateSpecs(t)); diff != "" {
		t.Errorf("state (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"pid:9/1503", "sb2/1502"}, td.retiredSpecs(t)); diff != "" {
		t.Errorf("retired (-want +got):\n%s", diff)
	}
	if got := td.CheckVanished(); len(got) != 0 {
		t.Errorf("second CheckVanished = %v, want none", got)
	}

	// Only an explicit detach drops a retired namespace's redirect.
	res, err := td.Detach(ctx, "sb2")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(DetachResult{Netns: "sb2", Cookie: 1502, WasAttached: true}, res); diff != "" {
		t.Errorf("Detach(sb2) (-want +got):\n%s", diff)
	}
	res, err = td.Detach(ctx, "cookie:1503")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(DetachResult{Netns: "pid:9", Cookie: 1503, WasAttached: true}, res); diff != "" {
		t.Errorf("Detach(cookie:1503) (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]uint64{1502, 1503}, td.k.forgotten); diff != "" {
		t.Errorf("forgotten cookies (-want +got):\n%s", diff)
	}
	if got := td.retiredSpecs(t); len(got) != 0 {
		t.Errorf("retired after detach = %v, want none", got)
	}
}

func TestCloseKeepsRedirectsAndState(t *testing.T) {
	td := newTestDaemon(t)
	td.k.set("sb1", 501)
	if _, err := td.Attach(context.Background(), "sb1"); err != nil {
		t.Fatal(err)
	}
	if err := td.Close(); err != nil {
		t.Fatal(err)
	}
	if td.p.servingCount("sb1") != 0 || td.k.openCount() != 0 {
		t.Errorf("after Close: serving %d, open %d; want 0, 0",
			td.p.servingCount("sb1"), td.k.openCount())
	}
	if _, ok := td.k.attached[501]; !ok {
		t.Errorf("Close removed the redirect; the sandbox must fail closed instead")
	}
	if diff := cmp.Diff([]string{"sb1"}, td.stateSpecs(t)); diff != "" {
		t.Errorf("state after Close (-want +got):\n%s", diff)
	}
	if _, err := td.Attach(context.Background(), "sb1"); err == nil {
		t.Errorf("Attach after Close succeeded, want an error")
	}
}

// waitFor polls cond for up to five seconds: goroutines started by the daemon
// need a moment to run.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("condition not met within 5s")
}

// TestCheckVanishedKeepsNamespacesInUse: a namespace whose name is deleted (or
// whose pid:N process exits) while other processes live in it stays attached
// and intercepted, until nothing holds it any more.
func TestCheckVanishedKeepsNamespacesInUse(t *testing.T) {
	td := newTestDaemon(t)
	ctx := context.Background()
	td.k.set("sb1", 501)
	td.k.set("pid:9", 503)
	for _, spec := range []string{"sb1", "pid:9"} {
		if _, err := td.Attach(ctx, spec); err != nil {
			t.Fatal(err)
		}
	}
	td.k.set("sb1", 0)   // ip netns del sb1, a process still inside
	td.k.set("pid:9", 0) // the pid exited, another process still inside
	td.k.hold(501, true)
	td.k.hold(503, true)

	for range 2 { // the second round logs nothing new and still keeps them
		if got := td.CheckVanished(); len(got) != 0 {
			t.Errorf("CheckVanished = %v, want none while processes live in them", got)
		}
	}
	want := map[uint64]Listeners{501: {DefaultPort, DefaultPort}, 503: {DefaultPort, DefaultPort}}
	if diff := cmp.Diff(want, td.k.attached); diff != "" {
		t.Errorf("kernel redirects (-want +got):\n%s", diff)
	}
	if td.p.servingCount("sb1") != 2 || td.p.servingCount("pid:9") != 2 {
		t.Errorf("serving sb1 %d, pid:9 %d listeners; want 2 each",
			td.p.servingCount("sb1"), td.p.servingCount("pid:9"))
	}
	for _, a := range td.Attachments() {
		if !a.NameGone {
			t.Errorf("attachment %s: NameGone false, want true", a.Spec)
		}
	}
	if diff := cmp.Diff([]string{"pid:9", "sb1"}, td.stateSpecs(t)); diff != "" {
		t.Errorf("state (-want +got):\n%s", diff)
	}

	// Cannot tell: keep.
	td.k.failInUse = errors.New("reading /proc: permission denied")
	if got := td.CheckVanished(); len(got) != 0 {
		t.Errorf("CheckVanished when InUse fails = %v, want none (fail closed)", got)
	}
	td.k.failInUse = nil

	// The last process of pid:9's namespace exits: now it is gone.
	td.k.hold(503, false)
	if diff := cmp.Diff([]string{"pid:9"}, td.CheckVanished()); diff != "" {
		t.Errorf("CheckVanished (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, td.k.attached); diff != "" {
		t.Errorf("kernel redirects (-want +got), the retired one's stays:\n%s", diff)
	}
	if diff := cmp.Diff([]string{"sb1"}, td.stateSpecs(t)); diff != "" {
		t.Errorf("state (-want +got):\n%s", diff)
	}
	if td.p.servingCount("pid:9") != 0 {
		t.Errorf("still serving pid:9 after it is gone")
	}

	// Explicit detach by the old name still works.
	res, err := td.Detach(ctx, "sb1")
	if err != nil || !res.WasAttached {
		t.Errorf("Detach(sb1) = %+v, %v; want WasAttached", res, err)
	}
	if diff := cmp.Diff(map[uint64]Listeners{503: {DefaultPort, DefaultPort}},
		td.k.attached); diff != "" {
		t.Errorf("kernel redirects after detach (-want +got), only the retired one's:\n%s", diff)
	}
}

// TestRestoreFindsNamespacesByInode: at start, a namespace whose spec no
// longer opens it is taken back through what still holds it when its cookie
// matches; it is forgotten only when nothing holds it, or when its inode now
// belongs to another namespace.
func TestRestoreFindsNamespacesByInode(t *testing.T) {
	td := newTestDaemon(t)
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	recs := []Record{
		{Spec: "nameless", Inode: 711, Cookie: 1711, Port4: 15443, Since: since},
		{Spec: "pid:12", Inode: 712, Cookie: 1712, Port4: 15443, Since: since},
		{Spec: "renamed", Inode: 713, Cookie: 1713, Port4: 15443, Since: since},
		{Spec: "reused-inode", Inode: 714, Cookie: 1714, Port4: 15443, Since: since},
		{Spec: "gone", Inode: 715, Cookie: 1715, Port4: 15443, Since: since},
	}
	if err := SaveState(td.state, recs); err != nil {
		t.Fatal(err)
	}
	td.k.hold(711, true) // ip netns del nameless, a process inside
	td.k.hold(712, true) // pid 12 exited, another process inside
	td.k.set("renamed", 799)
	td.k.hold(713, true) // the name points elsewhere, the old netns lives on
	td.k.hold(714, true)
	td.k.cookies[714] = 9999 // a new namespace got the old inode

	if err := td.Restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range td.Attachments() {
		if a.Cookie != a.Inode+1000 || !a.NameGone || !a.Since.Equal(since) {
			t.Errorf("attachment %+v: want cookie inode+1000, NameGone, since kept", a)
		}
		got = append(got, a.Spec)
	}
	if diff := cmp.Diff([]string{"nameless", "pid:12", "renamed"}, got); diff != "" {
		t.Errorf("attached after restore (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"gone/1715"}, td.retiredSpecs(t)); diff != "" {
		t.Errorf("retired (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]uint64{1714}, td.k.forgotten); diff != "" {
		t.Errorf("forgotten cookies (-want +got):\n%s", diff)
	}
	if _, ok := td.k.attached[714]; ok {
		t.Errorf("the namespace that reused inode 714 was attached")
	}
	if diff := cmp.Diff([]string{"nameless", "pid:12", "renamed"}, td.stateSpecs(t)); diff != "" {
		t.Errorf("state after restore (-want +got):\n%s", diff)
	}
}

func TestAttachRefusesInitialNamespace(t *testing.T) {
	k, p := newFakeKernel(), newFakeProxy()
	d, err := New(Options{Kernel: k, Proxy: p, StatePath: filepath.Join(t.TempDir(), "s"),
		OwnNetns: 2, InitNetns: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	k.set("/proc/1/ns/net", 1)
	k.set("sb1", 3)
	_, err = d.Attach(context.Background(), "/proc/1/ns/net")
	if !errors.Is(err, ErrBadRequest) ||
		!strings.Contains(err.Error(), "initial network namespace") ||
		strings.Contains(err.Error(), "\n") {
		t.Errorf("Attach(initial netns) error = %v, want a one-line refusal", err)
	}
	if len(k.attached) != 0 || k.openCount() != 0 {
		t.Errorf("refused attach left redirects %v, %d open namespaces", k.attached,
			k.openCount())
	}
	if _, err := d.Attach(context.Background(), "sb1"); err != nil {
		t.Errorf("Attach(sb1) next to the guard: %v", err)
	}
}

// TestAttachFallsBackWhenListenPortTaken: a sandbox process holding the
// listen port inside its namespace gets the daemon a kernel-chosen port, which
// the redirect then points at; per family.
func TestAttachFallsBackWhenListenPortTaken(t *testing.T) {
	td := newTestDaemon(t)
	td.k.set("squat4", 901)
	td.k.set("squat46", 902)
	td.k.taken["127.0.0.1:15443"] = true

	got, err := td.Attach(context.Background(), "squat4")
	if err != nil {
		t.Fatal(err)
	}
	if got.Port4 != 40000 || got.Port6 != DefaultPort {
		t.Errorf("ports %d/%d, want 40000 (fallback) and %d", got.Port4, got.Port6,
			DefaultPort)
	}

	td.k.taken["[::1]:15443"] = true
	got, err = td.Attach(context.Background(), "squat46")
	if err != nil {
		t.Fatal(err)
	}
	if got.Port4 != 40001 || got.Port6 != 40002 {
		t.Errorf("ports %d/%d, want 40001 and 40002", got.Port4, got.Port6)
	}
	want := map[uint64]Listeners{901: {40000, DefaultPort}, 902: {40001, 40002}}
	if diff := cmp.Diff(want, td.k.attached); diff != "" {
		t.Errorf("redirects point at (-want +got):\n%s", diff)
	}
	recs, err := LoadState(td.state)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[1].Port4 != 40001 || recs[1].Port6 != 40002 {
		t.Errorf("state %+v, want the fallback ports recorded", recs)
	}
}

func TestAttachListenErrorOtherThanTaken(t *testing.T) {
	td := newTestDaemon(t)
	td.k.set("v4gone", 903)
	td.k.noV6[903] = true
	td.k.taken["127.0.0.1:15443"] = true
	td.k.taken["127.0.0.1:0"] = true // even a free port cannot be had
	_, err := td.Attach(context.Background(), "v4gone")
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:15443") {
		t.Errorf("Attach = %v, want an error naming the listen address", err)
	}
	if len(td.k.attached) != 0 || td.k.openCount() != 0 {
		t.Errorf("failed attach left redirects %v, %d open", td.k.attached, td.k.openCount())
	}
}

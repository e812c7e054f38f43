//go:build linux

package e2e_test

import (
	"os"
	"strings"
	"testing"

	"github.com/hermes-netd/hermes-netd/internal/secrets"
	"github.com/hermes-netd/hermes-netd/internal/testenv/fakeapi"
)

// requestFields are the fields every audit record of an intercepted request
// carries.
var requestFields = []string{"time", "sandbox", "pid", "provider", "method", "host", "path",
	"status", "bytes_in", "bytes_out", "duration", "decision"}

// testAudit: one JSON line per intercepted request, each with its fields and
// the path without its query; as many as the providers received so far (every
// request up to here went through the daemon).
func testAudit(t *testing.T, w *world) {
	hosts := keyedHosts()
	received := 0
	for _, p := range fakeapi.KeyedProviders {
		received += len(w.env.API().Requests(p))
	}

	var intercepted []map[string]any
	sawQueryPath := false
	for _, rec := range w.auditRecords(t) {
		if rec["msg"] != "Request" || rec["decision"] != "intercept" {
			continue
		}
		intercepted = append(intercepted, rec)
		for _, f := range requestFields {
			if _, ok := rec[f]; !ok {
				t.Errorf("audit record lacks %q: %v", f, rec)
			}
		}
		provider, _ := rec["provider"].(string)
		path, _ := rec["path"].(string)
		status, _ := rec["status"].(float64)
		if rec["sandbox"] != w.sandbox || hosts[provider] == "" ||
			rec["host"] != hosts[provider] || rec["method"] == "" ||
			!strings.HasPrefix(path, "/v1/") || strings.Contains(path, "?") || status < 200 {
			t.Errorf("audit record %v: want sandbox %s, a keyed provider with its host, "+
				"a method, a /v1/ path without query and a status", rec, w.sandbox)
		}
		if provider == "openai" && rec["method"] == "GET" && path == "/v1/models" &&
			status == 200 {
			sawQueryPath = true
		}
	}
	if len(intercepted) != received {
		t.Errorf("%d intercept records, but the providers received %d requests",
			len(intercepted), received)
	}
	if !sawQueryPath {
		t.Errorf("no audit record for GET /v1/models (sent with a query string)")
	}
	b, err := os.ReadFile(w.audit)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "cursor-e2e-query") {
		t.Errorf("the audit file holds a request's query string")
	}
	if fi, err := os.Stat(w.audit); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("audit file mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
}

// testNoKeyLeaked: no key value appears in the audit file, the daemon's logs
// of every run, or what the CLI prints; status shows each key by fingerprint.
func testNoKeyLeaked(t *testing.T, w *world) {
	audit, err := os.ReadFile(w.audit)
	if err != nil {
		t.Fatal(err)
	}
	st := w.status(t)
	_, statusOut, _ := w.cli("", "status", "--json")
	_, listOut, _ := w.cli("", "secrets", "list")
	outputs := map[string]string{
		"audit file":     string(audit),
		"daemon log":     w.daemonLogs(),
		"status --json":  statusOut,
		"secrets list":   listOut,
		"status (human)": func() string { _, o, _ := w.cli("", "status"); return o }(),
	}
	for _, p := range fakeapi.KeyedProviders {
		key := w.env.Key(p)
		for name, text := range outputs {
			if strings.Contains(text, key) {
				t.Errorf("the %s holds %s's key", name, p)
			}
		}

		fp := secrets.NewKey(key).Fingerprint()
		if !strings.Contains(listOut, fp) {
			t.Errorf("secrets list lacks %s's fingerprint %s:\n%s", p, fp, listOut)
		}
		found := false
		for _, ps := range st.Providers {
			if ps.Name == string(p) {
				found = ps.Loaded && ps.Fingerprint == fp
			}
		}
		if !found {
			t.Errorf("status does not show %s loaded with fingerprint %s: %+v", p, fp,
				st.Providers)
		}
	}
}

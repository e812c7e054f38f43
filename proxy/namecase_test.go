package proxy

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/hermes-netd/hermes-netd/internal/secrets"
)

// A key of lower-case letters and digits reflected into a response header
// name: on the way back Go canonicalises it ("X-Deadbeef...") or HTTP/2
// lower-cases it, and it must be masked either way.
func TestReflectedKeyInHeaderNameMaskedWhateverCase(t *testing.T) {
	const lowKey = "deadbeefcafebabe0123456789abcdef"
	for _, upH2 := range []bool{false, true} {
		for _, clientH2 := range []bool{false, true} {
			t.Run(fmt.Sprintf("upstream-h2=%v/client-h2=%v", upH2, clientH2), func(t *testing.T) {
				tca := newTestCA(t)
				up := newUpstreamProto(t, tca, func(w http.ResponseWriter, r *http.Request) {
					k := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
					w.Header()["x-"+k] = []string{"1"} // sent as written, not canonical
					io.WriteString(w, "ok")
				}, upH2, "api.openai.com")
				e := newEnv(t, tca.pool, func(o *Options) {
					o.Keys = func(string) (secrets.Key, error) { return secrets.NewKey(lowKey), nil }
				})
				e.setDst(up.addr(t))

				resp, err := e.client(clientH2).Get("https://api.openai.com/v1/echo")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d, want 200", resp.StatusCode)
				}
				if got := up.last(t).Header.Get("Authorization"); got != "Bearer "+lowKey {
					t.Fatalf("upstream got Authorization %q, want the injected key", got)
				}
				masked := false
				for name := range resp.Header {
					if strings.Contains(strings.ToLower(name), lowKey) {
						t.Errorf("header name %q carries the credential", name)
					}
					if strings.EqualFold(name, "x-"+mask(lowKey)) {
						masked = true
					}
				}
				if !masked {
					t.Errorf("no masked header name x-%s among %v", mask(lowKey), resp.Header)
				}
			})
		}
	}
}

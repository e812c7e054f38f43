package providers

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hermes-netd/hermes-netd/internal/secrets"
)

func TestInject(t *testing.T) {
	const key = "sk-real-0123"
	bearer := Form{Kind: FormHeader, Header: "Authorization", Format: "Bearer {key}"}
	tests := []struct {
		name      string
		p         Provider
		header    http.Header
		rawQuery  string
		wantHead  http.Header
		wantQuery string
	}{
		{
			name: "bearer replaces every client carrier",
			p:    Provider{Name: "openai", Form: bearer},
			header: http.Header{
				"Authorization":       {"Bearer dummy", "Bearer second"},
				"authorization":       {"Bearer lowercase-key"},
				"Proxy-Authorization": {"Basic eDp5"},
				"X-Api-Key":           {"dummy"},
				"API-KEY":             {"dummy"},
				"X-Goog-Api-Key":      {"dummy"},
				"Content-Type":        {"application/json"},
			},
			rawQuery: "a=1&b=%2F",
			wantHead: http.Header{
				"Authorization": {"Bearer " + key},
				"Content-Type":  {"application/json"},
			},
			wantQuery: "a=1&b=%2F",
		},
		{
			name: "custom header, raw key",
			p: Provider{Name: "anthropic",
				Form: Form{Kind: FormHeader, Header: "x-api-key", Format: "{key}"}},
			header: http.Header{
				"X-Api-Key":         {"dummy"},
				"Authorization":     {"Bearer dummy"},
				"Anthropic-Version": {"2023-06-01"},
			},
			wantHead: http.Header{
				"X-Api-Key":         {key},
				"Anthropic-Version": {"2023-06-01"},
			},
		},
		{
			name: "provider's own unusual header is stripped too",
			p: Provider{Name: "corp",
				Form: Form{Kind: FormHeader, Header: "X-Corp-Token"}},
			header:   http.Header{"x-corp-token": {"dummy"}, "X-CORP-TOKEN": {"dummy2"}},
			wantHead: http.Header{"X-Corp-Token": {key}},
		},
		{
			name: "gemini strips ?key= and keeps the rest byte for byte",
			p: Provider{Name: "gemini", StripQuery: []string{"key"},
				Form: Form{Kind: FormHeader, Header: "x-goog-api-key", Format: "{key}"}},
			header:    http.Header{"X-Goog-Api-Key": {"dummy"}},
			rawQuery:  "alt=sse&key=dummy&KEY=x&k%65y=y&z=a%20b+c&key",
			wantHead:  http.Header{"X-Goog-Api-Key": {key}},
			wantQuery: "alt=sse&z=a%20b+c",
		},
		{
			name:      "query form replaces every occurrence, also after ';'",
			p:         Provider{Name: "q", Form: Form{Kind: FormQuery, Param: "api_key"}},
			header:    http.Header{"Authorization": {"Bearer dummy"}},
			rawQuery:  "api_key=dummy&x=1;api_key=again&Api_Key=3",
			wantHead:  http.Header{},
			wantQuery: "x=1&api_key=" + url.QueryEscape(key),
		},
		{
			name:      "query form on an empty query",
			p:         Provider{Name: "q", Form: Form{Kind: FormQuery, Param: "token"}},
			wantHead:  http.Header{},
			wantQuery: "token=" + url.QueryEscape(key),
		},
		{
			name:   "basic with user: key is the password",
			p:      Provider{Name: "gh", Form: Form{Kind: FormBasic, User: "x-access-token"}},
			header: http.Header{"Authorization": {"Basic ZHVtbXk6ZHVtbXk="}},
			wantHead: http.Header{"Authorization": {"Basic " +
				b64("x-access-token:"+key)}},
		},
		{
			name:     "basic without user: key is the user, empty password",
			p:        Provider{Name: "b", Form: Form{Kind: FormBasic}},
			wantHead: http.Header{"Authorization": {"Basic " + b64(key+":")}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := &url.URL{Scheme: "https", Host: "h.example.com", Path: "/v1",
				RawQuery: tt.rawQuery, User: url.UserPassword("u", "dummy")}
			req := &http.Request{Method: "POST", URL: u, Header: tt.header}
			if req.Header == nil {
				req.Header = http.Header{}
			}
			tt.p.Inject(req, secrets.NewKey(key))
			if diff := cmp.Diff(tt.wantHead, req.Header); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantQuery, req.URL.RawQuery); diff != "" {
				t.Errorf("raw query (-want +got):\n%s", diff)
			}
			if req.URL.User != nil {
				t.Errorf("URL user info %v kept; want it removed", req.URL.User)
			}
		})
	}
}

func TestInjectNilHeader(t *testing.T) {
	p := Provider{Name: "openai", Form: Form{Kind: FormHeader, Header: "Authorization"}}
	req := &http.Request{URL: &url.URL{Path: "/"}}
	p.Inject(req, secrets.NewKey("k1"))
	if diff := cmp.Diff(http.Header{"Authorization": {"k1"}}, req.Header); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

package providers

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/hermes-netd/hermes-netd/internal/secrets"
)

// credentialHeaders can carry a credential for any provider; a client's
// values are always removed before the provider's own credential is set.
var credentialHeaders = []string{
	"Authorization",
	"Proxy-Authorization",
	"X-Api-Key",
	"Api-Key",
	"X-Goog-Api-Key",
}

// Inject removes every client-supplied credential carrier from out and sets
// exactly one credential, key, in p's form. It is meant for the outgoing
// request inside httputil.ReverseProxy's Rewrite.
//
// Removed, matching names case-insensitively and every occurrence: the
// headers Authorization, Proxy-Authorization, x-api-key, api-key,
// x-goog-api-key and p's own header; the query parameter of a query form and
// p.StripQuery (the rest of the query is kept byte for byte); and user info
// in the URL.
func (p *Provider) Inject(out *http.Request, key secrets.Key) {
	if out.Header == nil {
		out.Header = make(http.Header)
	}
	strip := credentialHeaders
	if p.Form.Kind == FormHeader {
		strip = append(append([]string(nil), credentialHeaders...), p.Form.Header)
	}
	deleteHeaders(out.Header, strip)

	params := p.StripQuery
	if p.Form.Kind == FormQuery {
		params = append(append([]string(nil), p.StripQuery...), p.Form.Param)
	}
	if out.URL != nil {
		out.URL.User = nil
		out.URL.RawQuery = stripQuery(out.URL.RawQuery, params)
	}

	switch p.Form.Kind {
	case FormHeader:
		format := p.Form.Format
		if format == "" {
			format = KeyPlaceholder
		}
		out.Header.Set(p.Form.Header, strings.Replace(format, KeyPlaceholder, key.Reveal(), 1))
	case FormBasic:
		if p.Form.User == "" {
			out.SetBasicAuth(key.Reveal(), "")
		} else {
			out.SetBasicAuth(p.Form.User, key.Reveal())
		}
	case FormQuery:
		if out.URL == nil {
			out.URL = &url.URL{}
		}
		kv := url.QueryEscape(p.Form.Param) + "=" + url.QueryEscape(key.Reveal())
		if out.URL.RawQuery == "" {
			out.URL.RawQuery = kv
		} else {
			out.URL.RawQuery += "&" + kv
		}
	}
}

// deleteHeaders removes every key of h equal to one of names, ignoring case,
// so that keys added without canonicalisation are caught too.
func deleteHeaders(h http.Header, names []string) {
	for k := range h {
		for _, n := range names {
			if strings.EqualFold(k, n) {
				delete(h, k)
				break
			}
		}
	}
}

// stripQuery removes the parameters named in names (case-insensitively,
// after unescaping the name) from a raw query, leaving every other byte as it
// was. Both '&' and ';' count as separators, since some servers split on ';'.
func stripQuery(raw string, names []string) string {
	if raw == "" || len(names) == 0 {
		return raw
	}
	var kept []string
	for _, piece := range strings.Split(raw, "&") {
		var sub []string
		for _, seg := range strings.Split(piece, ";") {
			if !queryNameIn(seg, names) {
				sub = append(sub, seg)
			}
		}
		if len(sub) > 0 {
			kept = append(kept, strings.Join(sub, ";"))
		}
	}
	return strings.Join(kept, "&")
}

func queryNameIn(seg string, names []string) bool {
	name, _, _ := strings.Cut(seg, "=")
	if u, err := url.QueryUnescape(name); err == nil {
		name = u
	}
	for _, n := range names {
		if strings.EqualFold(name, n) {
			return true
		}
	}
	return false
}

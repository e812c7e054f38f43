package fakeapi

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// credentialHeaders are the request headers that carry an API credential at
// one provider or another, lowercase. A proxy that injects keys must leave
// exactly one of them (or one query parameter) in place.
var credentialHeaders = []string{
	"authorization",
	"proxy-authorization",
	"x-api-key",
	"api-key",
	"x-goog-api-key",
}

// credentialParams are the query parameters that carry a credential.
var credentialParams = []string{"key", "api_key", "api-key", "apikey", "access_token"}

// Credential is one credential carrier seen on a request.
type Credential struct {
	Where string // "header" or "query"
	Name  string // lowercase header name, or the query parameter as sent
	Value string // as sent, e.g. "Bearer sk-..."
}

// Request is what a fake site received. Header and Query are copies, safe to
// keep.
type Request struct {
	Time       time.Time
	Provider   Provider
	Proto      string // "HTTP/1.1" or "HTTP/2.0"
	ServerName string // TLS SNI the client sent; "" when none
	RemoteAddr string
	Method     string
	Host       string
	Path       string
	Query      url.Values
	Header     http.Header
	BodySize   int64
	Model      string // from the JSON body, when present
	Stream     bool   // the JSON body asked for a stream
	Status     int
}

// Credentials returns every credential carrier on the request, headers first,
// each header value and each query value on its own.
func (r Request) Credentials() []Credential {
	var out []Credential
	for _, h := range credentialHeaders {
		for _, v := range r.Header.Values(h) {
			out = append(out, Credential{Where: "header", Name: h, Value: v})
		}
	}
	names := make([]string, 0, len(r.Query))
	for name := range r.Query {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if !slices.Contains(credentialParams, strings.ToLower(name)) {
			continue
		}
		for _, v := range r.Query[name] {
			out = append(out, Credential{Where: "query", Name: name, Value: v})
		}
	}
	return out
}

// requestLog is a thread-safe append-only list of requests.
type requestLog struct {
	mu   sync.Mutex
	reqs []Request
}

func (l *requestLog) add(r Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reqs = append(l.reqs, r)
}

func (l *requestLog) filter(p Provider) []Request {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Request
	for _, r := range l.reqs {
		if p == "" || r.Provider == p {
			out = append(out, r)
		}
	}
	return out
}

func (l *requestLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reqs = nil
}

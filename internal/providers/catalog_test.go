package providers

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestBuiltinCatalogMatch(t *testing.T) {
	c, err := NewCatalog(Builtin())
	if err != nil {
		t.Fatalf("NewCatalog(Builtin()): %v", err)
	}
	tests := []struct {
		host string
		want string // provider name, "" for no match
	}{
		{"integrate.api.nvidia.com", "nim"},
		{"ai.api.nvidia.com", "nim"},
		{"api.nvcf.nvidia.com", "nim"},
		{"docs.api.nvidia.com", ""},
		{"api.openai.com", "openai"},
		{"API.OpenAI.com.", "openai"},
		{"api.openai.com:443", "openai"},
		{"openai.com", ""},
		{"x.api.openai.com", ""},
		{"api.anthropic.com", "anthropic"},
		{"openrouter.ai", "openrouter"},
		{"generativelanguage.googleapis.com", "gemini"},
		{"api.mistral.ai", "mistral"},
		{"api.groq.com", "groq"},
		{"api.together.xyz", "together"},
		{"api.together.ai", "together"},
		{"router.huggingface.co", "huggingface"},
		{"api-inference.huggingface.co", "huggingface"},
		{"huggingface.co", "huggingface"},
		{"cdn-lfs.huggingface.co", ""},
		{"api.github.com", "github"},
		{"github.com", ""},
		{"example.com", ""},
		{"", ""},
	}
	for _, tt := range tests {
		p, ok := c.Match(NormalizeHost(tt.host))
		got := ""
		if ok {
			got = p.Name
		}
		if got != tt.want {
			t.Errorf("Match(%q) = %q, want %q", tt.host, got, tt.want)
		}
	}
}

func TestBuiltinForms(t *testing.T) {
	bearer := Form{Kind: FormHeader, Header: "Authorization", Format: "Bearer {key}"}
	want := map[string]Form{
		"nim":         bearer,
		"openai":      bearer,
		"anthropic":   {Kind: FormHeader, Header: "x-api-key", Format: "{key}"},
		"openrouter":  bearer,
		"gemini":      {Kind: FormHeader, Header: "x-goog-api-key", Format: "{key}"},
		"mistral":     bearer,
		"groq":        bearer,
		"together":    bearer,
		"huggingface": bearer,
		"github":      bearer,
	}
	got := map[string]Form{}
	for _, p := range Builtin() {
		got[p.Name] = p.Form
		if p.KeyName() != p.Name {
			t.Errorf("provider %s: key name %q, want the provider name", p.Name, p.KeyName())
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("builtin forms (-want +got):\n%s", diff)
	}
}

func TestBuiltinIsACopy(t *testing.T) {
	a := Builtin()
	a[0].Domains[0] = "changed.example.com"
	if b := Builtin(); b[0].Domains[0] == "changed.example.com" {
		t.Fatal("changing Builtin()'s result changed the next call's")
	}
}

func TestWildcardMatch(t *testing.T) {
	c, err := NewCatalog([]Provider{
		{Name: "corp", Domains: []string{"*.llm.example.com", "llm.example.com"},
			Form: Form{Kind: FormQuery, Param: "token"}},
		{Name: "other", Domains: []string{"*.example.org"},
			Form: Form{Kind: FormBasic, User: "api"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ host, want string }{
		{"a.llm.example.com", "corp"},
		{"a.b.llm.example.com", "corp"},
		{"llm.example.com", "corp"}, // listed exactly as well
		{"example.com", ""},
		{"xllm.example.com", ""},
		{"a.example.org", "other"},
		{"example.org", ""}, // the bare suffix is not matched by *.example.org
		{"aexample.org", ""},
	}
	for _, tt := range tests {
		got := ""
		if p, ok := c.Match(tt.host); ok {
			got = p.Name
		}
		if got != tt.want {
			t.Errorf("Match(%q) = %q, want %q", tt.host, got, tt.want)
		}
	}
}

func TestNewCatalogRejects(t *testing.T) {
	h := Form{Kind: FormHeader, Header: "Authorization", Format: "Bearer {key}"}
	tests := []struct {
		name string
		ps   []Provider
		want string // substring of the error
	}{
		{"duplicate exact", []Provider{
			{Name: "a", Domains: []string{"api.example.com"}, Form: h},
			{Name: "b", Domains: []string{"api.example.com"}, Form: h},
		}, `provider b domain "api.example.com" overlaps provider a domain "api.example.com"`},
		{"exact under wildcard", []Provider{
			{Name: "a", Domains: []string{"*.example.com"}, Form: h},
			{Name: "b", Domains: []string{"x.api.example.com"}, Form: h},
		}, `overlaps provider a domain "*.example.com"`},
		{"nested wildcards", []Provider{
			{Name: "a", Domains: []string{"*.api.example.com"}, Form: h},
			{Name: "b", Domains: []string{"*.example.com"}, Form: h},
		}, `provider b domain "*.example.com" overlaps provider a`},
		{"duplicate name", []Provider{
			{Name: "a", Domains: []string{"a.example.com"}, Form: h},
			{Name: "a", Domains: []string{"b.example.com"}, Form: h},
		}, "provider a is defined twice"},
		{"no domains", []Provider{{Name: "a", Form: h}}, "provider a: no domains"},
		{"bad name", []Provider{{Name: "A B", Domains: []string{"a.example.com"}, Form: h}},
			`provider name "A B"`},
		{"bad key name", []Provider{{Name: "a", Key: "../x",
			Domains: []string{"a.example.com"}, Form: h}}, `key name "../x"`},
		{"uppercase domain", []Provider{{Name: "a", Domains: []string{"A.example.com"},
			Form: h}}, "write it in lowercase"},
		{"ip domain", []Provider{{Name: "a", Domains: []string{"10.0.0.1"}, Form: h}},
			"an IP address is not a domain"},
		{"inner wildcard", []Provider{{Name: "a", Domains: []string{"a.*.example.com"},
			Form: h}}, `has character '*'`},
		{"single label", []Provider{{Name: "a", Domains: []string{"*.com"}, Form: h}},
			"needs at least two labels"},
		{"port", []Provider{{Name: "a", Domains: []string{"a.example.com:443"}, Form: h}},
			`has character ':'`},
		{"no kind", []Provider{{Name: "a", Domains: []string{"a.example.com"}}},
			"must be header, basic or query"},
		{"format without key", []Provider{{Name: "a", Domains: []string{"a.example.com"},
			Form: Form{Kind: FormHeader, Header: "Authorization", Format: "Bearer"}}},
			"must contain {key} exactly once"},
		{"bad header name", []Provider{{Name: "a", Domains: []string{"a.example.com"},
			Form: Form{Kind: FormHeader, Header: "X Key"}}}, "not a valid HTTP field name"},
		{"basic user with colon", []Provider{{Name: "a", Domains: []string{"a.example.com"},
			Form: Form{Kind: FormBasic, User: "a:b"}}}, "must not contain ':'"},
		{"query without param", []Provider{{Name: "a", Domains: []string{"a.example.com"},
			Form: Form{Kind: FormQuery}}}, "form query"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewCatalog(tt.ps)
			if err == nil {
				t.Fatalf("NewCatalog succeeded, want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestOverlapsAndMatchPattern(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"a.example.com", "a.example.com", true},
		{"a.example.com", "b.example.com", false},
		{"*.example.com", "a.example.com", true},
		{"*.example.com", "example.com", false},
		{"example.com", "*.example.com", false},
		{"*.example.com", "*.a.example.com", true},
		{"*.example.com", "*.example.org", false},
		{"*.ample.com", "a.example.com", false},
	}
	for _, tt := range tests {
		if got := Overlaps(tt.a, tt.b); got != tt.want {
			t.Errorf("Overlaps(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
	if !MatchPattern("*.example.com", "a.example.com") || MatchPattern("*.example.com",
		"example.com") || !MatchPattern("x.org", "x.org") || MatchPattern("x.org", "y.org") {
		t.Error("MatchPattern disagrees with the documented rules")
	}
}

func TestNormalizeHost(t *testing.T) {
	tests := map[string]string{
		"API.OpenAI.com":      "api.openai.com",
		"api.openai.com.":     "api.openai.com",
		"api.openai.com:443":  "api.openai.com",
		"api.openai.com.:443": "api.openai.com",
		"[::1]:443":           "::1",
		"::1":                 "::1",
		"":                    "",
	}
	got := map[string]string{}
	for in := range tests {
		got[in] = NormalizeHost(in)
	}
	if diff := cmp.Diff(tests, got); diff != "" {
		t.Errorf("NormalizeHost (-want +got):\n%s", diff)
	}
}

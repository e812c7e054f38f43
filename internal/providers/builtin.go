package providers

// bearer is the form of most OpenAI-style APIs.
var bearer = Form{Kind: FormHeader, Header: "Authorization", Format: "Bearer {key}"}

// Builtin returns the catalog of well-known providers. Each call returns a
// fresh copy that the caller may change.
//
// Domains are the API hosts only, listed exactly rather than with wildcards
// wherever the provider's API hosts are known, so that documentation and
// console sites under the same parent domain are not intercepted.
func Builtin() []Provider {
	ps := []Provider{
		{
			// NVIDIA's hosted NIM endpoints: OpenAI-compatible chat and embeddings on
			// integrate, retrieval/vision models on ai, health models on health,
			// and NVCF function invocation on api.nvcf. All take an nvapi- key as
			// a Bearer token.
			Name: "nim",
			Domains: []string{
				"integrate.api.nvidia.com",
				"ai.api.nvidia.com",
				"health.api.nvidia.com",
				"api.nvcf.nvidia.com",
			},
			Form: bearer,
		},
		{Name: "openai", Domains: []string{"api.openai.com"}, Form: bearer},
		{
			Name:    "anthropic",
			Domains: []string{"api.anthropic.com"},
			Form:    Form{Kind: FormHeader, Header: "x-api-key", Format: "{key}"},
		},
		{Name: "openrouter", Domains: []string{"openrouter.ai"}, Form: bearer},
		{
			// Gemini's SDKs send x-goog-api-key; older clients use ?key=, which is
			// stripped so that a dummy key cannot shadow the injected one.
			Name:       "gemini",
			Domains:    []string{"generativelanguage.googleapis.com"},
			Form:       Form{Kind: FormHeader, Header: "x-goog-api-key", Format: "{key}"},
			StripQuery: []string{"key"},
		},
		{Name: "mistral", Domains: []string{"api.mistral.ai"}, Form: bearer},
		{Name: "groq", Domains: []string{"api.groq.com"}, Form: bearer},
		{
			Name:    "together",
			Domains: []string{"api.together.xyz", "api.together.ai"},
			Form:    bearer,
		},
		{
			// router is the Inference Providers endpoint, api-inference the older
			// serverless one, and huggingface.co itself serves the Hub API and
			// gated model downloads, which take the same token.
			Name: "huggingface",
			Domains: []string{
				"router.huggingface.co",
				"api-inference.huggingface.co",
				"huggingface.co",
			},
			Form: bearer,
		},
		{Name: "github", Domains: []string{"api.github.com"}, Form: bearer},
	}
	for i := range ps {
		ps[i] = ps[i].clone()
	}
	return ps
}

func (p Provider) clone() Provider {
	p.Domains = append([]string(nil), p.Domains...)
	p.StripQuery = append([]string(nil), p.StripQuery...)
	if len(p.StripQuery) == 0 {
		p.StripQuery = nil
	}
	return p
}

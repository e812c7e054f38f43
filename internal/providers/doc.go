// Package providers describes the APIs whose credentials hermes-netd injects:
// which domains belong to a provider, which secret holds its key, and the
// form the key takes on the wire (a header with a format around the key,
// HTTP basic auth, or a query parameter).
//
// Builtin returns the catalog of well-known providers; the config package
// merges the operator's additions and overrides over it and builds a Catalog,
// which matches a TLS server name to at most one provider. Domain patterns
// are either exact ("api.openai.com") or a suffix wildcard ("*.example.com",
// which matches any name below example.com but not example.com itself).
// A Catalog refuses two providers whose patterns can match the same name, so
// a key can never be sent to another provider's domain.
package providers

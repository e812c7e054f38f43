// Package fakeapi serves fake OpenAI-, Anthropic- and NVIDIA NIM-like HTTPS
// APIs, a plain "passthrough" site and a catch-all "unknown" site, for the
// end-to-end suite and the demo.
//
// The provider APIs answer the way the real ones do for the calls the suite
// makes: chat completions (JSON, or server-sent events when the request asks
// for a stream), the model list, and Anthropic's messages endpoint. A request
// without the expected credential gets a 401 in the provider's own error
// shape. Every request is recorded (method, host, path, every credential
// carrier, body size) so that a test can check what really reached the
// provider. A recorded credential is test data; the server never logs it.
//
// Certificates come from CA, a throwaway certificate authority made in
// memory; the caller writes its PEM where the daemon under test can trust it.
package fakeapi

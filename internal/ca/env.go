package ca

// trustVars are the environment variables that point common runtimes and
// tools at an extra CA bundle: OpenSSL and Go (SSL_CERT_FILE), Node.js,
// Python requests, curl, git, pip, cargo, the AWS SDKs and Deno.
var trustVars = []string{
	"SSL_CERT_FILE",
	"NODE_EXTRA_CA_CERTS",
	"REQUESTS_CA_BUNDLE",
	"CURL_CA_BUNDLE",
	"GIT_SSL_CAINFO",
	"PIP_CERT",
	"CARGO_HTTP_CAINFO",
	"AWS_CA_BUNDLE",
	"DENO_CERT",
}

// EnvVars returns "NAME=caPath" for each variable that makes a common
// runtime trust the CA file at caPath. Most of them replace the runtime's
// bundle rather than add to it (NODE_EXTRA_CA_CERTS and DENO_CERT add), so
// caPath should hold the system roots and the hermes CA together when the
// sandbox also reaches passthrough sites.
func EnvVars(caPath string) []string {
	out := make([]string, len(trustVars))
	for i, v := range trustVars {
		out[i] = v + "=" + caPath
	}
	return out
}

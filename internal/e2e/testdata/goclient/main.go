// Command goclient makes one chat completion with Go's net/http, as a
// sandboxed Go agent might: a dummy key, the real URL, no proxy. hermes-netd
// is expected to intercept the connection and put the real key in. Trust
// comes from SSL_CERT_FILE, set by the caller.
//
// It prints {"status": N, "proto": "HTTP/2.0", "body": {...}} and exits 0 on
// a 2xx answer, 1 on any other answer, 2 when no answer came.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	url := flag.String("url", "https://api.openai.com/v1/chat/completions", "endpoint")
	key := flag.String("key", "sk-dummy", "API key to send as a Bearer token")
	model := flag.String("model", "gpt-4o-mini", "model name")
	h1 := flag.Bool("http1", false, "use HTTP/1.1 only (default: HTTP/2 when offered)")
	flag.Parse()

	body, _ := json.Marshal(map[string]any{
		"model":    *model,
		"messages": []map[string]string{{"role": "user", "content": "Say hello."}},
	})
	req, err := http.NewRequest(http.MethodPost, *url, bytes.NewReader(body))
	if err != nil {
		fail(err)
	}
	req.Header.Set("Authorization", "Bearer "+*key)
	req.Header.Set("Content-Type", "application/json")

	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	protos.SetHTTP2(!*h1)
	// No Proxy function: environment proxy settings are ignored on purpose.
	client := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{Protocols: protos, ForceAttemptHTTP2: !*h1},
	}
	resp, err := client.Do(req)
	if err != nil {
		fail(err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		fail(err)
	}

	out := map[string]any{"status": resp.StatusCode, "proto": resp.Proto}
	if json.Valid(answer) {
		out["body"] = json.RawMessage(answer)
	} else {
		out["body"] = string(answer)
	}
	json.NewEncoder(os.Stdout).Encode(out)
	if resp.StatusCode/100 != 2 {
		os.Exit(1)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "{\"error\": %q}\n", err.Error())
	os.Exit(2)
}

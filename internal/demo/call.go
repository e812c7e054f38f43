//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hermes-netd/hermes-netd/internal/secrets"
	"github.com/hermes-netd/hermes-netd/internal/testenv/fakeapi"
)

const (
	nimHost = "integrate.api.nvidia.com"
	body    = `{"model":"meta/llama-3.1-8b-instruct","stream":true,` +
		`"messages":[{"role":"user","content":"Say hello."}]}`
)

// call runs curl in the sandbox and prints the three views of the request:
// what the sandbox sent (curl's own trace of its headers), what the provider
// received (its record, keys by fingerprint) and the answer as it streams.
func (d *demo) call(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	mark := len(d.env.API().Requests(fakeapi.NIM))
	cmd := d.env.SandboxCmd(ctx, "curl", "-sS", "-N", "-v", "--noproxy", "*",
		"--cacert", d.hermesCA, "-H", "Content-Type: application/json", "-d", body,
		"https://"+nimHost+"/v1/chat/completions")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "LANG=C.UTF-8"}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	trace := &curlTrace{headersSent: make(chan struct{})}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting curl in the sandbox: %w", err)
	}
	go trace.read(stderr)

	// curl traces its request headers before the answer starts, and the fake
	// provider records the request before it answers: both are known once the
	// first line of the answer arrives.
	lines := bufio.NewScanner(stdout)
	first := lines.Scan()
	start := time.Now()
	select {
	case <-trace.headersSent:
	case <-time.After(time.Second):
	}
	d.printSent(trace.sent())
	if err := d.printReceived(mark); err != nil {
		cmd.Wait()
		return fmt.Errorf("%w\ncurl said:\n%s", err, trace.all())
	}

	d.section("The answer, as it streams in")
	var text strings.Builder
	for ok := first; ok; ok = lines.Scan() {
		d.printChunk(lines.Text(), time.Since(start), &text)
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("curl in the sandbox: %w\n%s", err, trace.all())
	}
	d.printf("answer: %s", text.String())
	return d.printAudit()
}

// printSent shows the request headers as curl traced them.
func (d *demo) printSent(headers []string) {
	d.section("What the sandbox sent (curl -v, inside the sandbox)")
	hasKey := false
	for _, h := range headers {
		d.printf("%s", h)
		name, _, _ := strings.Cut(strings.ToLower(h), ":")
		hasKey = hasKey || slices.Contains([]string{"authorization", "x-api-key"}, name)
	}
	d.printf("%s", body)
	if !hasKey {
		d.printf("(no Authorization header: the sandbox has no key)")
	}
}

// printReceived shows the provider's record of the request, each credential
// by its fingerprint next to the stored key's.
func (d *demo) printReceived(mark int) error {
	reqs := d.env.API().Requests(fakeapi.NIM)[mark:]
	if len(reqs) != 1 {
		return fmt.Errorf("the fake provider received %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	d.section("What the provider received (fake NIM, on the fake internet)")
	d.printf("%s %s %s  (TLS server name %s)", r.Method, r.Path, r.Proto, r.ServerName)
	d.printf("Host: %s", r.Host)
	creds := map[string]bool{}
	for _, c := range r.Credentials() {
		creds[c.Name] = true
	}
	names := make([]string, 0, len(r.Header))
	for name := range r.Header {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if !creds[strings.ToLower(name)] {
			d.printf("%s: %s", name, strings.Join(r.Header.Values(name), ", "))
		}
	}
	stored := secrets.NewKey(d.env.Key(fakeapi.NIM)).Fingerprint()
	for _, c := range r.Credentials() {
		scheme, key, ok := strings.Cut(c.Value, " ")
		if !ok {
			scheme, key = "", c.Value
		}
		fp := secrets.NewKey(key).Fingerprint()
		verdict := "NOT the stored key"
		if fp == stored {
			verdict = "the key stored with `secrets set nim`"
		}
		d.printf("%s: %s <%s>  = %s", c.Name, scheme, fp, verdict)
	}
	if len(r.Credentials()) == 0 {
		return errors.New("the fake provider received no credential")
	}
	return nil
}

// printChunk prints one line of the server-sent events stream.
func (d *demo) printChunk(line string, at time.Duration, text *strings.Builder) {
	data, ok := strings.CutPrefix(line, "data: ")
	if !ok {
		return
	}
	if data == "[DONE]" {
		d.printf("+%.2fs  [DONE]", at.Seconds())
		return
	}
	var chunk struct {
		Choices []struct {
			Delta        struct{ Content string }
			FinishReason *string `json:"finish_reason"`
		}
	}
	if json.Unmarshal([]byte(data), &chunk) != nil || len(chunk.Choices) == 0 {
		d.printf("+%.2fs  %s", at.Seconds(), data)
		return
	}
	c := chunk.Choices[0]
	switch {
	case c.Delta.Content != "":
		text.WriteString(c.Delta.Content)
		d.printf("+%.2fs  %q", at.Seconds(), c.Delta.Content)
	case c.FinishReason != nil:
		d.printf("+%.2fs  (finish: %s)", at.Seconds(), *c.FinishReason)
	}
}

// printAudit shows the daemon's audit record of the request; the daemon
// writes it as the request ends, so it may come a moment after curl exits.
func (d *demo) printAudit() error {
	var rec map[string]any
	for deadline := time.Now().Add(waitLimit); rec == nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("no intercept record in the audit file %s after %v", d.audit,
				waitLimit)
		}
		b, _ := os.ReadFile(d.audit)
		for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
			var r map[string]any
			if json.Unmarshal(line, &r) == nil && r["msg"] == "Request" &&
				r["decision"] == "intercept" {
				rec = r
			}
		}
	}
	d.section("The daemon's audit record (one JSON line per request)")
	var parts []string
	for _, k := range []string{"sandbox", "pid", "provider", "method", "host", "path",
		"status", "bytes_out", "decision"} {
		parts = append(parts, fmt.Sprintf("%s=%v", k, rec[k]))
	}
	d.printf("%s", strings.Join(parts, " "))
	return nil
}

// curlTrace collects curl -v's standard error: the request headers it traces
// ("> " lines, ended by a bare ">") and everything, for errors.
type curlTrace struct {
	headersSent chan struct{} // closed once the headers are traced, or at EOF

	mu      sync.Mutex
	headers []string
	lines   []string
}

func (c *curlTrace) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	done := false
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		c.mu.Lock()
		c.lines = append(c.lines, line)
		h, isHeader := strings.CutPrefix(line, "> ")
		if !done && isHeader && h != "" {
			c.headers = append(c.headers, h)
		}
		c.mu.Unlock()
		if !done && strings.TrimSpace(line) == ">" {
			done = true
			close(c.headersSent)
		}
	}
	if !done {
		close(c.headersSent)
	}
}

func (c *curlTrace) sent() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.headers)
}

func (c *curlTrace) all() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.lines, "\n")
}

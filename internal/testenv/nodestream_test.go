//go:build linux

package testenv

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hermes-netd/hermes-netd/internal/testenv/fakeapi"
)

// nodeOutput is what openai-stream.mjs prints for n chunks gap apart, its
// summary saying text.
func nodeOutput(t *testing.T, n int, gap time.Duration, text string) string {
	t.Helper()
	var b strings.Builder
	at := 1.7e12
	for i := range n {
		line, _ := json.Marshal(map[string]any{"t": at, "chunk": map[string]int{"i": i}})
		b.Write(append(line, '\n'))
		at += float64(gap) / float64(time.Millisecond)
	}
	line, _ := json.Marshal(map[string]any{"t": at, "done": true, "chunks": n, "text": text})
	b.Write(append(line, '\n'))
	return b.String()
}

func TestCheckNodeStream(t *testing.T) {
	chunks := len(fakeapi.ReplyPieces) + 2
	slow, fast := fakeapi.DefaultChunkDelay, fakeapi.DefaultChunkDelay/10
	tests := []struct {
		name string
		out  string
		want string // in the error; "" for none
	}{
		{"one by one", nodeOutput(t, chunks, slow, fakeapi.Reply), ""},
		{"held back", nodeOutput(t, chunks, fast, fakeapi.Reply), "not one by one"},
		{"wrong text", nodeOutput(t, chunks, slow, "hello"), "want done"},
		{"a chunk missing", nodeOutput(t, chunks-1, slow, fakeapi.Reply), "lines, want"},
		{"not JSON", "Error: connect ECONNREFUSED\n", "node output line"},
		{"time going back", nodeOutput(t, chunks, -slow, fakeapi.Reply), "earlier timestamp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckNodeStream(tt.out)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("CheckNodeStream = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("CheckNodeStream = %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

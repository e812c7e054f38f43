//go:build linux

package testenv

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hermes-netd/hermes-netd/internal/testenv/fakeapi"
)

// CheckNodeStream checks what the e2e suite's Node client
// (internal/e2e/testdata/node/openai-stream.mjs) printed for a streamed fake
// OpenAI reply served with fakeapi.DefaultChunkDelay: the role chunk, one
// chunk per piece, the finish chunk, then a summary with the whole reply;
// timestamps in order; and chunks that arrived one by one. The fake pauses
// after each chunk, so chunks passed on one by one are spread over at least
// half the delay per gap, while chunks held back and delivered together are
// not.
func CheckNodeStream(out string) error {
	type line struct {
		T      float64 // ms since the epoch
		Chunk  json.RawMessage
		Done   bool
		Chunks int
		Text   string
	}
	var lines []line
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("node output line %q: %w", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	if want := len(fakeapi.ReplyPieces) + 3; len(lines) != want {
		return fmt.Errorf("node printed %d lines, want %d:\n%s", len(lines), want, out)
	}

	var errs []error
	last := lines[len(lines)-1]
	if !last.Done || last.Chunks != len(lines)-1 || last.Text != fakeapi.Reply {
		errs = append(errs, fmt.Errorf("node summary %+v, want done, %d chunks, text %q",
			last, len(lines)-1, fakeapi.Reply))
	}
	for i := 1; i < len(lines); i++ {
		if lines[i].T < lines[i-1].T {
			errs = append(errs, fmt.Errorf("node line %d has an earlier timestamp than "+
				"line %d", i, i-1))
		}
	}
	spread := time.Duration((lines[len(lines)-2].T - lines[0].T) * float64(time.Millisecond))
	if min := fakeapi.DefaultChunkDelay / 2 * time.Duration(len(lines)-2); spread < min {
		errs = append(errs, fmt.Errorf("chunks arrived within %v, want at least %v: "+
			"not one by one", spread, min))
	}
	return errors.Join(errs...)
}

package secrets

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

const rawValue = "sk-TOP-secret-value-0123456789"

type withExported struct {
	Name string
	Key  Key
}

type withUnexported struct {
	name string
	key  Key
}

func TestKeyNeverPrints(t *testing.T) {
	k := NewKey(rawValue)
	fp := k.Fingerprint()
	if !strings.HasPrefix(fp, "sha256:") || len(fp) != len("sha256:")+12 {
		t.Fatalf("Fingerprint() = %q, want sha256: and 12 hex digits", fp)
	}

	var outs []string
	verbs := []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10.3s", "%T"}
	values := []any{k, &k, []Key{k}, map[string]Key{"a": k},
		withExported{"a", k}, &withExported{"a", k}, withUnexported{"a", k},
		&withUnexported{"a", k}}
	for _, verb := range verbs {
		for _, v := range values {
			outs = append(outs, fmt.Sprintf(verb, v))
		}
	}
	outs = append(outs, fmt.Sprint(k), fmt.Sprintln(k, &k), k.String(), k.GoString(),
		fmt.Errorf("wrapping %v: %w", k, errors.New("x")).Error())

	for _, v := range []any{k, withExported{"a", k}, map[string]Key{"a": k}} {
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("json.Marshal: %v", err)
		}
		outs = append(outs, string(j))
	}
	text, _ := k.MarshalText()
	outs = append(outs, string(text))

	var buf bytes.Buffer
	for _, h := range []slog.Handler{slog.NewTextHandler(&buf, nil),
		slog.NewJSONHandler(&buf, nil)} {
		l := slog.New(h)
		l.Info("Key", "key", k, "ptr", &k, "struct", withExported{"a", k})
		l.Info("Key", slog.Group("g", "key", k), slog.Any("any", k))
		l.With("key", k).Info("With")
	}
	outs = append(outs, buf.String())

	for _, out := range outs {
		if strings.Contains(out, rawValue) || strings.Contains(out, rawValue[3:12]) {
			t.Errorf("formatted output reveals the key: %s", out)
		}
	}
	if got := fmt.Sprint(k); !strings.Contains(got, fp) {
		t.Errorf("fmt.Sprint(k) = %q, want the fingerprint %s in it", got, fp)
	}
	if got := k.Reveal(); got != rawValue {
		t.Errorf("Reveal() = %q, want the raw value", got)
	}
}

func TestZeroKey(t *testing.T) {
	var k Key
	if !k.IsZero() || k.Reveal() != "" || k.Fingerprint() != "" {
		t.Errorf("zero Key: IsZero %v, Reveal %q, Fingerprint %q", k.IsZero(), k.Reveal(),
			k.Fingerprint())
	}
	if got := fmt.Sprintf("%v", k); got != "[REDACTED empty]" {
		t.Errorf("%%v of zero Key = %q", got)
	}
}

func TestParseValue(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{in: "abcdefgh", want: "abcdefgh"},
		{in: "abcdefgh\n", want: "abcdefgh"},
		{in: "abcdefgh\r\n", want: "abcdefgh"},
		{in: "abc\n\n", err: "control byte 0x0a at offset 3"},
		{in: "abcd efgh", want: "abcd efgh"},
		{in: "abcdefg", err: "key is 7 bytes, shorter than the minimum of 8"},
		{in: "k\n", err: "key is 1 bytes, shorter than the minimum of 8"},
		{in: "", err: "key is empty"},
		{in: "\n", err: "key is empty"},
		{in: "\r\n", err: "key is empty"},
		{in: "ab\rc", err: "control byte 0x0d at offset 2"},
		{in: "ab\nc\n", err: "control byte 0x0a at offset 2"},
		{in: "a\x00b", err: "control byte 0x00 at offset 1"},
		{in: "a\tb", err: "control byte 0x09 at offset 1"},
		{in: "abc\r", err: "control byte 0x0d at offset 3"},
	}
	for _, tt := range tests {
		got, err := ParseValue([]byte(tt.in))
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("ParseValue(%q) error = %v, want %q", tt.in, err, tt.err)
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("ParseValue(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

package secrets

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
)

// Key is an API key. Its value is reachable only through Reveal: String,
// GoString, every fmt verb, slog and JSON/text marshalling print a redacted
// form carrying the fingerprint. The value is held only by a closure: fmt's
// reflection, which bypasses the methods of a Key held in an unexported
// struct field, prints a function as an address, never what it captured.
// The zero Key is empty.
type Key struct {
	d *keyData
}

type keyData struct {
	value func() string
	fp    string
}

// NewKey makes a Key from a value that has passed ValidateValue. It does
// not validate; Store and Set do.
func NewKey(value string) Key {
	return Key{d: &keyData{value: func() string { return value }, fp: fingerprint(value)}}
}

// Reveal returns the raw key. Call it only to write the credential onto an
// upstream request; never log or return what it gives.
func (k Key) Reveal() string {
	if k.d == nil {
		return ""
	}
	return k.d.value()
}

// IsZero reports whether k holds no key.
func (k Key) IsZero() bool { return k.d == nil || k.d.value() == "" }

// Fingerprint identifies the key without revealing it: "sha256:" and the
// first 12 hex digits of the SHA-256 of the value; "" for the zero Key.
func (k Key) Fingerprint() string {
	if k.d == nil {
		return ""
	}
	return k.d.fp
}

func fingerprint(value string) string {
	sum := sha256.Sum256([]byte(value))
	return "sha256:" + hex.EncodeToString(sum[:])[:12]
}

func (k Key) redacted() string {
	if k.IsZero() {
		return "[REDACTED empty]"
	}
	return "[REDACTED " + k.d.fp + "]"
}

// String returns the redacted form.
func (k Key) String() string { return k.redacted() }

// GoString returns the redacted form, for %#v.
func (k Key) GoString() string { return "secrets.Key(" + k.redacted() + ")" }

// Format makes every fmt verb print the redacted form (%q quotes it).
func (k Key) Format(f fmt.State, verb rune) {
	switch verb {
	case 'q':
		_, _ = f.Write([]byte(strconv.Quote(k.redacted())))
	case 'v':
		if f.Flag('#') {
			_, _ = f.Write([]byte(k.GoString()))
			return
		}
		_, _ = f.Write([]byte(k.redacted()))
	default:
		_, _ = f.Write([]byte(k.redacted()))
	}
}

// LogValue makes slog record the redacted form.
func (k Key) LogValue() slog.Value { return slog.StringValue(k.redacted()) }

// MarshalJSON encodes the redacted form as a JSON string.
func (k Key) MarshalJSON() ([]byte, error) { return json.Marshal(k.redacted()) }

// MarshalText returns the redacted form.
func (k Key) MarshalText() ([]byte, error) { return []byte(k.redacted()), nil }

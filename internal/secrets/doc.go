// Package secrets keeps the provider API keys that hermes-netd injects.
//
// Keys live one per file in a directory (default /etc/hermes/secrets), named
// NAME.key, where NAME is the provider's key name (for example nim.key). The
// directory and every key file must be owned by root and carry no group or
// other permission bits; anything looser is refused with an error that names
// the file and the command that fixes it. A Store loads the directory and,
// with Watch, follows changes made by Set, Revoke or an operator's editor.
//
// A Key never prints its value: every fmt verb, slog, JSON and text
// marshalling show only its fingerprint. Reveal is the one way to read it,
// and only the code that writes the credential onto an upstream request
// should call it.
package secrets

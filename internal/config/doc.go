// Package config reads hermes-netd's YAML configuration (default
// /etc/hermes/netd.yaml). Every field is optional; testdata/example.yaml
// lists them all with comments.
//
// Unknown fields are errors, so a typo never silently leaves a default in
// place. Syntax and unknown-field errors name the file and line; validation
// errors name the field, its line and what is allowed.
package config

package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/asn1"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}

func TestLoadOrCreateMakesCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	before := time.Now()
	a, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatalf("LoadOrCreate: %v", err)
	}
	c := a.Certificate()

	if !c.IsCA || !c.BasicConstraintsValid || !c.MaxPathLenZero {
		t.Errorf("IsCA %v, BasicConstraintsValid %v, MaxPathLenZero %v; want all true",
			c.IsCA, c.BasicConstraintsValid, c.MaxPathLenZero)
	}
	if want := x509.KeyUsageCertSign | x509.KeyUsageCRLSign; c.KeyUsage != want {
		t.Errorf("KeyUsage %v, want keyCertSign|cRLSign", c.KeyUsage)
	}
	critical := false
	for _, ext := range c.Extensions {
		if ext.Id.Equal(oidBasicConstraints) {
			critical = ext.Critical
		}
	}
	if !critical {
		t.Error("basicConstraints extension is not critical")
	}
	if len(c.SubjectKeyId) != 20 {
		t.Errorf("SubjectKeyId %x, want a 20-byte key id", c.SubjectKeyId)
	}
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key %T, want ECDSA P-256", c.PublicKey)
	}
	if lo := before.Add(DefaultValidity - time.Minute); c.NotAfter.Before(lo) {
		t.Errorf("NotAfter %v, want about 10 years from now", c.NotAfter)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("CA is not self-signed: %v", err)
	}

	for name, want := range map[string]os.FileMode{CertFile: 0o644, KeyFile: 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %04o, want %04o", name, fi.Mode().Perm(), want)
		}
	}
	if des, _ := os.ReadDir(dir); len(des) != 2 {
		t.Errorf("state dir holds %d entries, want ca.crt and ca.key only", len(des))
	}
}

func TestLoadOrCreateReloads(t *testing.T) {
	dir := t.TempDir()
	a, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatalf("second LoadOrCreate: %v", err)
	}
	if string(a.CertPEM()) != string(b.CertPEM()) {
		t.Error("restart made a new CA; want the saved one reloaded")
	}
	pem, err := os.ReadFile(filepath.Join(dir, CertFile))
	if err != nil || string(pem) != string(a.CertPEM()) {
		t.Errorf("CertPEM differs from ca.crt (%v)", err)
	}
}

func TestLoadOrCreateRefuses(t *testing.T) {
	other := t.TempDir()
	if _, err := LoadOrCreate(other); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		breakIt func(t *testing.T, dir string)
		opts    Options
		want    string
	}{
		{"loose key", func(t *testing.T, dir string) {
			chmod(t, filepath.Join(dir, KeyFile), 0o640)
		}, Options{}, "mode 0640, readable beyond its owner; fix: chmod 600"},
		{"world-readable key", func(t *testing.T, dir string) {
			chmod(t, filepath.Join(dir, KeyFile), 0o604)
		}, Options{}, "fix: chmod 600"},
		{"lone certificate", func(t *testing.T, dir string) {
			remove(t, filepath.Join(dir, KeyFile))
		}, Options{}, "only one of ca.crt and ca.key exists"},
		{"lone key", func(t *testing.T, dir string) {
			remove(t, filepath.Join(dir, CertFile))
		}, Options{}, "only one of ca.crt and ca.key exists"},
		{"key of another CA", func(t *testing.T, dir string) {
			copyFile(t, filepath.Join(other, KeyFile), filepath.Join(dir, KeyFile))
		}, Options{}, "does not match"},
		{"garbage certificate", func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, CertFile), "not pem", 0o644)
		}, Options{}, "no PEM CERTIFICATE block"},
		{"expired", func(t *testing.T, dir string) {}, Options{Now: func() time.Time {
			return time.Now().Add(11 * 365 * 24 * time.Hour)
		}}, "expired on"},
		{"leaf validity too long", func(t *testing.T, dir string) {},
			Options{LeafValidity: 398 * 24 * time.Hour}, "at most 397 days"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := LoadOrCreate(dir); err != nil {
				t.Fatal(err)
			}
			tt.breakIt(t, dir)
			_, err := LoadOrCreateWith(dir, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("LoadOrCreateWith error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func remove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	write(t, to, string(data), 0o600)
}

func TestEnvVars(t *testing.T) {
	got := EnvVars("/etc/hermes/ca.crt")
	want := []string{
		"SSL_CERT_FILE=/etc/hermes/ca.crt",
		"NODE_EXTRA_CA_CERTS=/etc/hermes/ca.crt",
		"REQUESTS_CA_BUNDLE=/etc/hermes/ca.crt",
		"CURL_CA_BUNDLE=/etc/hermes/ca.crt",
		"GIT_SSL_CAINFO=/etc/hermes/ca.crt",
		"PIP_CERT=/etc/hermes/ca.crt",
		"CARGO_HTTP_CAINFO=/etc/hermes/ca.crt",
		"AWS_CA_BUNDLE=/etc/hermes/ca.crt",
		"DENO_CERT=/etc/hermes/ca.crt",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("EnvVars (-want +got):\n%s", diff)
	}
}

// TestLoadOrCreateMakesPrivateDir: a missing state dir (and missing parents)
// is created 0700, so other users cannot even list it.
func TestLoadOrCreateMakesPrivateDir(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "var")
	dir := filepath.Join(parent, "state")
	if _, err := LoadOrCreate(dir); err != nil {
		t.Fatalf("LoadOrCreate: %v", err)
	}
	for _, d := range []string{parent, dir} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o700 {
			t.Errorf("%s created with mode %04o, want 0700", d, got)
		}
	}
}

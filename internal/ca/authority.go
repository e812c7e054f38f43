package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// File names inside the state directory.
const (
	CertFile = "ca.crt"
	KeyFile  = "ca.key"
)

// Defaults for Options.
const (
	DefaultValidity     = 10 * 365 * 24 * time.Hour
	DefaultLeafValidity = 30 * 24 * time.Hour
	// MaxLeafValidity is the CA/Browser Forum limit that clients such as
	// Apple's enforce for server certificates.
	MaxLeafValidity = 397 * 24 * time.Hour
)

// Options tune LoadOrCreateWith. The zero value gives the defaults.
type Options struct {
	// Validity of a newly made CA; 0 means DefaultValidity.
	Validity time.Duration
	// LeafValidity of minted leaves, at most MaxLeafValidity; 0 means
	// DefaultLeafValidity. A leaf never outlives the CA.
	LeafValidity time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Authority holds the CA certificate and key. It is safe for concurrent use.
type Authority struct {
	cert    *x509.Certificate
	certPEM []byte
	key     *ecdsa.PrivateKey
	opts    Options
}

// LoadOrCreate loads the CA from dir/ca.crt and dir/ca.key, or makes and
// saves a new one when neither exists. See LoadOrCreateWith.
func LoadOrCreate(dir string) (*Authority, error) {
	return LoadOrCreateWith(dir, Options{})
}

// LoadOrCreateWith is LoadOrCreate with options. It refuses a ca.key with
// any group or other permission bit, a lone ca.crt or ca.key (sandboxes
// already trust the old CA, so it is never silently replaced), a key that
// does not match the certificate, and an expired CA.
func LoadOrCreateWith(dir string, opts Options) (*Authority, error) {
	if opts.Validity == 0 {
		opts.Validity = DefaultValidity
	}
	if opts.LeafValidity == 0 {
		opts.LeafValidity = DefaultLeafValidity
	}
	if opts.LeafValidity < 0 || opts.LeafValidity > MaxLeafValidity {
		return nil, fmt.Errorf("leaf validity %s (%.1f days): must be positive and at "+
			"most 397 days", opts.LeafValidity, opts.LeafValidity.Hours()/24)
	}
	if opts.Validity < 0 {
		return nil, fmt.Errorf("ca validity %s: must be positive", opts.Validity)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}

	certPath, keyPath := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	_, certErr := os.Stat(certPath)
	_, keyErr := os.Stat(keyPath)
	switch {
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
		return create(dir, opts)
	case certErr != nil && !errors.Is(certErr, fs.ErrNotExist):
		return nil, fmt.Errorf("checking %s: %w", certPath, certErr)
	case keyErr != nil && !errors.Is(keyErr, fs.ErrNotExist):
		return nil, fmt.Errorf("checking %s: %w", keyPath, keyErr)
	case certErr != nil || keyErr != nil:
		return nil, fmt.Errorf("ca in %s: only one of %s and %s exists; restore the "+
			"missing file, or remove both to make a new CA (sandboxes must then trust "+
			"the new one)", dir, CertFile, KeyFile)
	}
	return load(certPath, keyPath, opts)
}

func create(dir string, opts Options) (*Authority, error) {
	// 0700: the state dir holds the CA key and the attach state; nothing in
	// it is for other users (ca.crt is handed out with `hermes-netd ca export`).
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating state dir %s: %w", dir, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating ca key: %w", err)
	}
	ski, err := keyID(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}

	now := opts.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization: []string{"hermes-netd"},
			// The key id makes each host's CA name distinct in trust stores.
			CommonName: "hermes-netd local CA " + hex.EncodeToString(ski[:4]),
		},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(opts.Validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          ski,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("signing ca certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding ca key: %w", err)
	}

	// Key first: a crash between the writes leaves a lone key, which the next
	// start reports instead of trusting a certificate without its key.
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if err := writeAtomic(filepath.Join(dir, KeyFile), keyPEM, 0o600); err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := writeAtomic(filepath.Join(dir, CertFile), certPEM, 0o644); err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing new ca certificate: %w", err)
	}
	return &Authority{cert: cert, certPEM: certPEM, key: key, opts: opts}, nil
}

func load(certPath, keyPath string, opts Options) (*Authority, error) {
	fi, err := os.Stat(keyPath)
	if err != nil {
		return nil, fmt.Errorf("checking %s: %w", keyPath, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("ca key %s has mode %04o, readable beyond its owner; "+
			"fix: chmod 600 %s", keyPath, fi.Mode().Perm(), keyPath)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("reading ca key: %w", err)
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("reading ca certificate: %w", err)
	}

	cert, err := parseCert(certPath, certPEM)
	if err != nil {
		return nil, err
	}
	key, err := parseKey(keyPath, keyPEM)
	if err != nil {
		return nil, err
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("ca key %s does not match %s; restore the matching pair, "+
			"or remove both to make a new CA", keyPath, certPath)
	}
	if now := opts.Now(); now.After(cert.NotAfter) {
		return nil, fmt.Errorf("ca certificate %s expired on %s; remove %s and %s to make "+
			"a new CA, then make sandboxes trust it", certPath,
			cert.NotAfter.Format(time.DateOnly), certPath, keyPath)
	}
	return &Authority{cert: cert, certPEM: certPEM, key: key, opts: opts}, nil
}

func parseCert(path string, data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("ca certificate %s: no PEM CERTIFICATE block", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing ca certificate %s: %w", path, err)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("ca certificate %s is not a CA (needs CA:TRUE and "+
			"keyCertSign)", path)
	}
	return cert, nil
}

func parseKey(path string, data []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("ca key %s: no PEM PRIVATE KEY block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing ca key %s: %w", path, err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("ca key %s: want an ECDSA key, got %T", path, k)
	}
	return key, nil
}

// CertPEM returns the CA certificate in PEM, for export to sandboxes.
func (a *Authority) CertPEM() []byte { return append([]byte(nil), a.certPEM...) }

// Certificate returns the parsed CA certificate. Do not modify it.
func (a *Authority) Certificate() *x509.Certificate { return a.cert }

// keyID is the SHA-1 of the subject public key bits (the uncompressed
// point), the RFC 5280 method 1 key identifier.
func keyID(pub *ecdsa.PublicKey) ([]byte, error) {
	ek, err := pub.ECDH()
	if err != nil {
		return nil, fmt.Errorf("encoding public key: %w", err)
	}
	sum := sha1.Sum(ek.Bytes())
	return sum[:], nil
}

// randomSerial returns a random positive 128-bit serial number.
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("generating serial: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// writeAtomic writes data to path through a temporary file in the same
// directory, synced and renamed, so a reader never sees half a file.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("syncing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("renaming into %s: %w", path, err)
	}
	return nil
}

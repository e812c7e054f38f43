package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// backdate covers clients whose clocks run a little behind the host's.
const backdate = 5 * time.Minute

// NormalizeSNI lowercases sni and removes one trailing dot, then checks that
// it is a DNS name a leaf may carry: not empty, not an IP address (RFC 6066
// forbids IP literals in SNI), no wildcard, labels of 1-63 characters from
// a-z, 0-9, '-' and '_', at most 253 characters.
func NormalizeSNI(sni string) (string, error) {
	name := strings.TrimSuffix(strings.ToLower(sni), ".")
	if name == "" {
		return "", fmt.Errorf("server name is empty")
	}
	// Only a name starting with a digit, '[' or holding ':' can be an address;
	// the test skips ParseAddr's error allocation for the rest.
	if looksLikeIP(name) {
		if _, err := netip.ParseAddr(strings.Trim(name, "[]")); err == nil {
			return "", fmt.Errorf("server name %q is an IP address, which is not a "+
				"valid SNI", sni)
		}
	}
	if len(name) > 253 {
		return "", fmt.Errorf("server name is longer than 253 characters")
	}
	// One pass over the bytes, without splitting, keeps cached lookups cheap.
	start := 0
	for i := 0; i <= len(name); i++ {
		if i == len(name) || name[i] == '.' {
			if n := i - start; n == 0 || n > 63 {
				return "", fmt.Errorf("server name %q: label %q must be 1-63 characters",
					sni, name[start:i])
			}
			start = i + 1
			continue
		}
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return "", fmt.Errorf("server name %q: character %q not allowed "+
				"(a-z 0-9 - _)", sni, c)
		}
	}
	return name, nil
}

// Mint makes a new leaf certificate for sni, signed by the CA: ECDSA P-256,
// the SNI as its only DNS name, serverAuth, backdated a few minutes, valid
// for the configured leaf validity but never past the CA. Prefer
// LeafCache.Get, which caches.
func (a *Authority) Mint(sni string) (*tls.Certificate, error) {
	name, err := NormalizeSNI(sni)
	if err != nil {
		return nil, fmt.Errorf("minting leaf: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating leaf key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}

	now := a.opts.Now()
	notAfter := now.Add(a.opts.LeafValidity)
	if notAfter.After(a.cert.NotAfter) {
		notAfter = a.cert.NotAfter
	}
	notBefore := now.Add(-backdate)
	if notBefore.Before(a.cert.NotBefore) {
		notBefore = a.cert.NotBefore
	}
	tmpl := &x509.Certificate{
		SerialNumber:   serial,
		Subject:        pkix.Name{CommonName: name},
		DNSNames:       []string{name},
		NotBefore:      notBefore,
		NotAfter:       notAfter,
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		AuthorityKeyId: a.cert.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		return nil, fmt.Errorf("signing leaf for %s: %w", name, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing leaf for %s: %w", name, err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

func looksLikeIP(name string) bool {
	return name[0] >= '0' && name[0] <= '9' || name[0] == '[' || strings.Contains(name, ":")
}

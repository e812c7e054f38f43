package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func newAuthority(t testing.TB, opts Options) *Authority {
	t.Helper()
	a, err := LoadOrCreateWith(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestMintLeaf(t *testing.T) {
	a := newAuthority(t, Options{})
	now := time.Now()
	cert, err := a.Mint("API.OpenAI.com.")
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	leaf := cert.Leaf

	type shape struct {
		DNSNames       []string
		IPs, Emails    int
		URIs           int
		ExtKeyUsage    []x509.ExtKeyUsage
		IsCA           bool
		AuthorityKeyId []byte
		CommonName     string
	}
	got := shape{leaf.DNSNames, len(leaf.IPAddresses), len(leaf.EmailAddresses),
		len(leaf.URIs), leaf.ExtKeyUsage, leaf.IsCA, leaf.AuthorityKeyId,
		leaf.Subject.CommonName}
	want := shape{DNSNames: []string{"api.openai.com"},
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		AuthorityKeyId: a.Certificate().SubjectKeyId, CommonName: "api.openai.com"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("leaf (-want +got):\n%s", diff)
	}

	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("leaf key %T, want ECDSA P-256", leaf.PublicKey)
	}
	if !leaf.NotBefore.Before(now) {
		t.Errorf("NotBefore %v is not backdated before %v", leaf.NotBefore, now)
	}
	if max := now.Add(DefaultLeafValidity + time.Minute); leaf.NotAfter.After(max) {
		t.Errorf("NotAfter %v beyond the default leaf validity", leaf.NotAfter)
	}
	if leaf.SerialNumber.Sign() <= 0 || leaf.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %v, want positive and at most 128 bits", leaf.SerialNumber)
	}
	other, err := a.Mint("api.openai.com")
	if err != nil {
		t.Fatal(err)
	}
	if other.Leaf.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Error("two leaves share a serial number")
	}
}

func TestLeafVerifiesOnlyForItsName(t *testing.T) {
	a := newAuthority(t, Options{})
	cert, err := a.Mint("integrate.api.nvidia.com")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(a.Certificate())
	verify := func(name string) error {
		_, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		return err
	}
	if err := verify("integrate.api.nvidia.com"); err != nil {
		t.Errorf("Verify for its own name: %v", err)
	}
	for _, name := range []string{"api.nvidia.com", "ai.api.nvidia.com", "api.openai.com"} {
		if err := verify(name); err == nil {
			t.Errorf("Verify for %q succeeded; want a name mismatch", name)
		}
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: "integrate.api.nvidia.com",
		Roots: x509.NewCertPool()}); err == nil {
		t.Error("Verify without the CA succeeded")
	}
}

func TestLeafHandshake(t *testing.T) {
	a := newAuthority(t, Options{})
	cache := NewLeafCache(a, 8)
	roots := x509.NewCertPool()
	roots.AddCert(a.Certificate())

	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	srv := tls.Server(c1, &tls.Config{GetCertificate: func(h *tls.ClientHelloInfo) (
		*tls.Certificate, error) {
		return cache.Get(h.ServerName)
	}})
	go func() { _ = srv.Handshake() }()
	cli := tls.Client(c2, &tls.Config{ServerName: "api.anthropic.com", RootCAs: roots})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cli.HandshakeContext(ctx); err != nil {
		t.Fatalf("client handshake with a minted leaf: %v", err)
	}
}

func TestLeafNeverOutlivesCA(t *testing.T) {
	a := newAuthority(t, Options{Validity: time.Hour})
	cert, err := a.Mint("api.openai.com")
	if err != nil {
		t.Fatal(err)
	}
	if !cert.Leaf.NotAfter.Equal(a.Certificate().NotAfter) {
		t.Errorf("leaf NotAfter %v, want the CA's %v", cert.Leaf.NotAfter,
			a.Certificate().NotAfter)
	}
	if cert.Leaf.NotBefore.Before(a.Certificate().NotBefore) {
		t.Errorf("leaf NotBefore %v precedes the CA's", cert.Leaf.NotBefore)
	}
}

func TestMintRefusesBadNames(t *testing.T) {
	a := newAuthority(t, Options{})
	tests := map[string]string{
		"":                              "empty",
		".":                             "empty",
		"10.0.0.1":                      "IP address",
		"::1":                           "IP address",
		"[::1]":                         "IP address",
		"*.example.com":                 "'*'",
		"a..example.com":                "must be 1-63",
		"a.example.com:443":             "':'",
		strings.Repeat("a", 64):         "must be 1-63",
		strings.Repeat("a.", 127) + "a": "longer than 253",
		"caf\u00e9.example.com":         "not allowed",
		"evil.com\x00.openai.com":       "not allowed",
		"has space.example.com":         "not allowed",
		"a/b.example.com":               "not allowed",
	}
	for name, want := range tests {
		_, err := a.Mint(name)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Mint(%q) error = %v, want one containing %q", name, err, want)
		}
	}
}

func TestLeafCacheMintsOncePerName(t *testing.T) {
	a := newAuthority(t, Options{})
	c := NewLeafCache(a, 16)

	const n = 100
	var wg sync.WaitGroup
	var failed atomic.Int32
	certs := make([]*tls.Certificate, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			cert, err := c.Get("api.openai.com")
			if err != nil {
				failed.Add(1)
			}
			certs[i] = cert
		}()
	}
	close(start)
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d of %d Get calls failed", failed.Load(), n)
	}
	if got := c.Mints(); got != 1 {
		t.Errorf("Mints() = %d after %d concurrent Gets for one name, want 1", got, n)
	}
	for i, cert := range certs {
		if cert != certs[0] {
			t.Fatalf("Get #%d returned another certificate", i)
		}
	}
	if cert, _ := c.Get("API.OPENAI.COM."); cert != certs[0] || c.Mints() != 1 {
		t.Error("a differently written form of the same name minted again")
	}
}

func TestLeafCacheEvictsLeastRecentlyUsed(t *testing.T) {
	c := NewLeafCache(newAuthority(t, Options{}), 2)
	for _, name := range []string{"a.example.com", "b.example.com", "a.example.com",
		"c.example.com", "a.example.com", "b.example.com"} {
		if _, err := c.Get(name); err != nil {
			t.Fatal(err)
		}
	}
	// a, b minted; a hit; c evicts b; a hit; b minted again.
	if got := c.Mints(); got != 4 {
		t.Errorf("Mints() = %d, want 4", got)
	}
	if got := c.Len(); got != 2 {
		t.Errorf("Len() = %d, want the bound 2", got)
	}
}

func TestLeafCacheRenewsAgeingLeaves(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	c := NewLeafCache(newAuthority(t, Options{Now: clock, LeafValidity: 40 * time.Hour}), 4)

	first, err := c.Get("api.openai.com")
	if err != nil {
		t.Fatal(err)
	}
	now.Add(int64(20 * time.Hour)) // half-way: still fresh
	if again, _ := c.Get("api.openai.com"); again != first {
		t.Error("a fresh cached leaf was replaced")
	}
	now.Add(int64(15 * time.Hour)) // within the last quarter
	renewed, err := c.Get("api.openai.com")
	if err != nil {
		t.Fatal(err)
	}
	if renewed == first || c.Mints() != 2 {
		t.Errorf("leaf near expiry not renewed (mints %d)", c.Mints())
	}
}

func BenchmarkMint(b *testing.B) {
	a := newAuthority(b, Options{})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Mint("api.openai.com"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLeafCacheGetCached(b *testing.B) {
	c := NewLeafCache(newAuthority(b, Options{}), 16)
	if _, err := c.Get("api.openai.com"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Get("api.openai.com"); err != nil {
			b.Fatal(err)
		}
	}
}

//go:build linux

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"time"
)

// burstSize is how many handshakes for one new name arrive at once.
const burstSize = 100

// mintBurst is scenario 6 seen from the sandbox: the extra handshake time of
// a name hermes-netd has no leaf for yet, and a burst of handshakes for one
// new name, which must all get the same leaf (one mint: every leaf minted has
// a fresh random serial, so one serial means one mint).
func (b *bench) mintBurst(ctx context.Context) error {
	if err := b.w.setPath(viaHermes); err != nil {
		return err
	}
	run := randomHex(4)
	var cached, fresh []float64
	for i := 0; i < b.set.MintNames; i++ {
		d, _, err := b.handshake(ctx, fastHost)
		if err != nil {
			return err
		}
		cached = append(cached, d)
		d, _, err = b.handshake(ctx, fmt.Sprintf("n%d-%s.%s", i, run, mintZone))
		if err != nil {
			return err
		}
		fresh = append(fresh, d)
	}
	x := compared(s6, "handshake, new name vs cached (through hermes-netd)", "us",
		cmpAdded, cached, fresh)
	x.Columns = [2]string{"cached", "new"}
	b.rep.add(x.withNote("added = mint cost as a sandbox sees it, plus the cache miss"))

	name := fmt.Sprintf("burst-%s.%s", run, mintZone)
	serials, err := b.burst(ctx, name)
	if err != nil {
		return err
	}
	y := row{Scenario: s6, Metric: fmt.Sprintf("distinct leaves in a burst of %d "+
		"handshakes for a new name", burstSize), Hermes: f(float64(len(serials)))}
	b.rep.add(y.withTarget("1 (one mint)", len(serials) == 1))
	return nil
}

// handshake times one TLS handshake (with the connect) from the sandbox to
// the bench upstream's address with server name sni, and returns the leaf's
// serial number.
func (b *bench) handshake(ctx context.Context, sni string) (float64, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	c, err := b.w.dialTLS(ctx, fastAddr+":443", b.w.tlsConfig(viaHermes, sni, "h2"))
	if err != nil {
		return 0, "", fmt.Errorf("TLS handshake for %s through hermes-netd: %w", sni, err)
	}
	d := float64(time.Since(start).Nanoseconds()) / 1e3
	defer c.Close()
	leaf := c.ConnectionState().PeerCertificates[0]
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != sni {
		return 0, "", fmt.Errorf("leaf for %s names %v", sni, leaf.DNSNames)
	}
	return d, leaf.SerialNumber.String(), nil
}

// burst starts burstSize handshakes for name at once and returns the
// distinct leaf serials they saw.
func (b *bench) burst(ctx context.Context, name string) (map[string]int, error) {
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		serials = map[string]int{}
		errs    []error
		start   = make(chan struct{})
	)
	for i := 0; i < burstSize; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, s, err := b.handshake(ctx, name)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			serials[s]++
		}()
	}
	close(start)
	wg.Wait()
	if len(errs) > 0 {
		return nil, fmt.Errorf("%d of %d burst handshakes failed, first: %w", len(errs),
			burstSize, errs[0])
	}
	return serials, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestComparedMediansAndMissingFigures(t *testing.T) {
	x := compared("1 x", "m", "us", cmpAdded, []float64{10, 30, 20}, []float64{50, 70, 60})
	if val(x.Direct) != 20 || val(x.Hermes) != 60 || val(x.Value) != 40 {
		t.Errorf("compared = %v %v %v, want medians 20, 60 and +40", val(x.Direct),
			val(x.Hermes), val(x.Value))
	}
	x = compared("1 x", "m", "req/s", cmpRatio, []float64{100}, nil)
	if x.Hermes != nil || x.Value != nil {
		t.Errorf("a side without rounds has figures: %v %v", x.Hermes, x.Value)
	}
	// A missing figure never meets a target, whichever way it points.
	if val(x.Value) <= 1 || val(x.Value) >= 1 {
		t.Error("a missing figure compared as a number")
	}
	if _, err := json.Marshal(x); err != nil {
		t.Errorf("a row without figures does not encode: %v", err)
	}
}

func TestPercentile(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	got := []float64{percentile(xs, 50), percentile(xs, 99), percentile(xs, 100),
		median([]float64{4, 1, 3, 2})}
	if diff := cmp.Diff([]float64{5, 10, 10, 2.5}, got); diff != "" {
		t.Errorf("percentiles (-want +got):\n%s", diff)
	}
}

func TestTableAndMarkdown(t *testing.T) {
	r := &report{}
	r.add(compared("1 keep-alive", "h1 latency p50", "us", cmpAdded, []float64{30},
		[]float64{300}).withTarget("<= +50 us", false))
	r.unmeasurable("8 peers", "sslsplit", "sslsplit is not installed\nmore detail")
	var out bytes.Buffer
	r.printTable(&out)
	for _, want := range []string{"+270 us", "NO", "not measurable: sslsplit is not installed)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "more detail") {
		t.Errorf("table shows more than a note's first line:\n%s", out.String())
	}

	file := filepath.Join(t.TempDir(), "t.md")
	if err := r.writeMarkdown(file); err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(file)
	want := "| 1 keep-alive | h1 latency p50 | 30 us | 300 us | +270 us | <= +50 us | **NO** |"
	if !strings.Contains(string(md), want) {
		t.Errorf("markdown lacks %q:\n%s", want, md)
	}
}

func TestCheckPath(t *testing.T) {
	for _, tc := range []struct {
		p  path
		c  counts
		ok bool
	}{
		{direct, counts{fromSandbox: 10}, true},
		{direct, counts{fromSandbox: 10, proxied: 1}, false},
		{direct, counts{fromSandbox: 10, injected: 1}, false},
		{direct, counts{}, false},
		{viaHermes, counts{proxied: 10, injected: 10}, true},
		{viaHermes, counts{proxied: 10, injected: 9}, false},
		{viaHermes, counts{proxied: 10, injected: 10, fromSandbox: 1}, false},
		{viaMitm, counts{}, false},
		{viaSplit, counts{proxied: 10}, true},
	} {
		if err := checkPath(tc.p, tc.c); (err == nil) != tc.ok {
			t.Errorf("checkPath(%s, %+v) = %v, want ok=%v", tc.p, tc.c, err, tc.ok)
		}
	}
}

func TestRoundsFiledUnderColumns(t *testing.T) {
	r := &report{}
	x := compared("7 c", "m", "ns", cmpRatio, []float64{1}, []float64{2})
	x.Columns = [2]string{"nft", "bpf"}
	r.add(x)
	r.add(peerRow(&peer{path: viaMitm}, "m", "us",
		map[path][]float64{viaHermes: {3}, viaMitm: {4}}))
	want := []map[string][]float64{
		{"nft": {1}, "bpf": {2}},
		{"hermes": {3}, "mitmproxy": {4}},
	}
	for i, w := range want {
		if diff := cmp.Diff(w, r.Rows[i].Rounds); diff != "" {
			t.Errorf("row %d rounds (-want +got):\n%s", i, diff)
		}
	}
}

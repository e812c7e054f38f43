//go:build linux

package netsetup

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenConfigs are the table configs whose rendered rules are pinned in testdata/.
var goldenConfigs = []struct {
	name string
	cfg  TableConfig
}{
	{"default", TableConfig{Listen4: 15001, Listen6: 15002}},
	{"strict", TableConfig{Listen4: 15001, Listen6: 15002, Strict: true}},
	{"ports", TableConfig{Ports: []uint16{8443, 443, 443}, Listen4: 443, Listen6: 444}},
	{"v4only", TableConfig{Listen4: 15001}},
	{"strict-dns", TableConfig{Listen4: 15001, Listen6: 15002, Strict: true,
		DNS: []netip.Prefix{netip.MustParsePrefix("192.0.2.53/32"),
			netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("2001:db8::53/128"),
			netip.MustParsePrefix("fd00:53::/48")}}},
	// DNS without Strict changes nothing: the same rules as "default".
	{"default", TableConfig{Listen4: 15001, Listen6: 15002,
		DNS: []netip.Prefix{netip.MustParsePrefix("192.0.2.53/32")}}},
}

func TestTableRulesGolden(t *testing.T) {
	for _, tc := range goldenConfigs {
		t.Run(tc.name, func(t *testing.T) {
			table, err := TableRules(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := table.Render()
			if err != nil {
				t.Fatal(err)
			}
			got += "\n# nft list table inet hermes\n" + table.NftText()

			path := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("rules of %+v (-want +got):\n%s", tc.cfg, diff)
			}
		})
	}
}

func TestTableRulesInvalid(t *testing.T) {
	tests := []struct {
		name    string
		cfg     TableConfig
		wantErr string
	}{
		{"no listeners", TableConfig{Ports: []uint16{443}}, "neither Listen4 nor Listen6 is set"},
		{"port zero", TableConfig{Ports: []uint16{443, 0}, Listen4: 1, Listen6: 2},
			"port 0 cannot be intercepted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := TableRules(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestTableRulesPorts(t *testing.T) {
	table, err := TableRules(TableConfig{Ports: []uint16{8443, 443, 8443}, Listen4: 1, Listen6: 2})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]uint16{443, 8443}, table.Ports); diff != "" {
		t.Errorf("ports (-want +got):\n%s", diff)
	}
}

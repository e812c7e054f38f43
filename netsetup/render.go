//go:build linux

package netsetup

import (
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/google/nftables/expr"
)

// Render writes t in a stable text form: each rule in nft syntax followed by the
// expressions that are sent to the kernel, one per line, in a notation close to
// `nft --debug=netlink`. Golden tests compare it; an expression type this file
// does not know is an error, so a new kind of rule cannot slip past them.
func (t Table) Render() (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s\n", t.Name)
	fmt.Fprintf(&b, "set %s type inet_service elements %v\n", PortsSetName, t.Ports)
	for _, ch := range t.Chains {
		fmt.Fprintf(&b, "chain %s type %s hook output priority %d policy accept\n",
			ch.Name, ch.Type, int32(ch.Priority))
		for _, r := range ch.Rules {
			fmt.Fprintf(&b, "  rule %s\n", r.Nft)
			for _, e := range r.Exprs {
				s, err := renderExpr(e)
				if err != nil {
					return "", fmt.Errorf("rendering rule %q: %w", r.Nft, err)
				}
				fmt.Fprintf(&b, "    [ %s ]\n", s)
			}
		}
	}
	return b.String(), nil
}

var payloadBases = map[expr.PayloadBase]string{
	expr.PayloadBaseLLHeader:        "link",
	expr.PayloadBaseNetworkHeader:   "network",
	expr.PayloadBaseTransportHeader: "transport",
}

var metaKeys = map[expr.MetaKey]string{
	expr.MetaKeyNFPROTO: "nfproto",
	expr.MetaKeyL4PROTO: "l4proto",
	expr.MetaKeyOIFNAME: "oifname",
}

var verdicts = map[expr.VerdictKind]string{
	expr.VerdictAccept: "accept",
	expr.VerdictDrop:   "drop",
	expr.VerdictReturn: "return",
}

// renderExpr renders one expression of the kinds TableRules uses.
func renderExpr(e expr.Any) (string, error) {
	switch e := e.(type) {
	case *expr.Meta:
		if k, ok := metaKeys[e.Key]; ok && !e.SourceRegister {
			return fmt.Sprintf("meta load %s => reg %d", k, e.Register), nil
		}
		return "", fmt.Errorf("unrenderable meta key %d", e.Key)
	case *expr.Cmp:
		if e.Op == expr.CmpOpEq {
			return fmt.Sprintf("cmp eq reg %d 0x%s", e.Register, hex.EncodeToString(e.Data)), nil
		}
		return "", fmt.Errorf("unrenderable cmp op %d", e.Op)
	case *expr.Payload:
		base, ok := payloadBases[e.Base]
		if !ok || e.OperationType != expr.PayloadLoad {
			return "", fmt.Errorf("unrenderable payload %+v", *e)
		}
		return fmt.Sprintf("payload load %db @ %s header + %d => reg %d",
			e.Len, base, e.Offset, e.DestRegister), nil
	case *expr.Lookup:
		if e.Invert || e.IsDestRegSet {
			return "", fmt.Errorf("unrenderable lookup %+v", *e)
		}
		return fmt.Sprintf("lookup reg %d set %s", e.SourceRegister, e.SetName), nil
	case *expr.Bitwise:
		return fmt.Sprintf("bitwise reg %d = ( reg %d & 0x%s ) ^ 0x%s", e.DestRegister,
			e.SourceRegister, hex.EncodeToString(e.Mask), hex.EncodeToString(e.Xor)), nil
	case *expr.Immediate:
		return fmt.Sprintf("immediate reg %d 0x%s", e.Register, hex.EncodeToString(e.Data)), nil
	case *expr.NAT:
		return renderNAT(e)
	case *expr.Reject:
		return fmt.Sprintf("reject type %d code %d", e.Type, e.Code), nil
	case *expr.Verdict:
		if v, ok := verdicts[e.Kind]; ok && e.Chain == "" {
			return "immediate reg 0 " + v, nil
		}
		return "", fmt.Errorf("unrenderable verdict %+v", *e)
	}
	return "", fmt.Errorf("unrenderable expression %T", e)
}

func renderNAT(e *expr.NAT) (string, error) {
	if e.Type != expr.NATTypeDestNAT || e.RegAddrMax != 0 || e.RegProtoMax != 0 ||
		e.Random || e.FullyRandom || e.Persistent || e.Prefix {
		return "", fmt.Errorf("unrenderable nat %+v", *e)
	}
	fam := map[uint32]string{2: "ip", 10: "ip6"}[e.Family]
	if fam == "" {
		return "", fmt.Errorf("unrenderable nat family %d", e.Family)
	}
	s := fmt.Sprintf("nat dnat %s addr_min reg %d proto_min reg %d", fam, e.RegAddrMin, e.RegProtoMin)
	if e.Specified {
		s += " flags specified"
	}
	return s, nil
}

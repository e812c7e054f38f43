//go:build linux

package netsetup

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Names of everything hermes-netd puts into a sandbox's nftables ruleset. They all
// share the prefix "hermes" so that an operator (and our own cleanup) can tell ours
// from anybody else's.
const (
	TableName       = "hermes"
	PortsSetName    = "hermes_ports"
	NATChainName    = "hermes_nat_output"
	FilterChainName = "hermes_filter_output"
)

// portsSetID names the ports set inside the one batch that creates it and the
// rules that look it up; IDs only need to be unique within a batch.
const portsSetID = 1

// TableConfig describes the nftables table of one sandbox netns.
type TableConfig struct {
	Ports   []uint16 // intercepted TCP ports (UDP to them is rejected); default {443}
	Listen4 uint16   // port of the daemon's listener on 127.0.0.1 in the netns
	Listen6 uint16   // port of the daemon's listener on ::1 in the netns
	// A zero Listen4 or Listen6 means there is no listener for that family (say,
	// IPv6 is disabled in the netns): its intercepted TCP is then rejected, never
	// let through. At least one of them must be set.
	Strict bool // also reject all other egress except loopback and DNS (53)
	// DNS, with Strict, limits the DNS let out (udp and tcp port 53) to these
	// destination prefixes, IPv4 and IPv6 alike. Empty lets DNS out to any
	// host, which a sandbox could also use as a tunnel to a server of its
	// choosing. Without Strict it has no effect.
	DNS []netip.Prefix
}

// Table is the whole table TableRules builds: what EnsureTable installs.
type Table struct {
	Name   string
	Ports  []uint16 // elements of the set PortsSetName
	Chains []Chain
}

// Chain is one base chain of the table.
type Chain struct {
	Name     string
	Type     nftables.ChainType
	Hook     nftables.ChainHook
	Priority nftables.ChainPriority
	Rules    []Rule
}

// Rule is one rule: the expressions sent to the kernel and the same rule as
// `nft list table inet hermes` prints it (privileged tests check they agree).
type Rule struct {
	Nft   string
	Exprs []expr.Any
}

// Hook and priority choices, explained once.
//
// Everything we filter is traffic the sandbox itself sends, so both chains hook
// "output" (NF_INET_LOCAL_OUT): it sees locally generated packets before routing
// takes them anywhere, and it is the only hook where a NAT rule can send a local
// socket's connection to a local listener. Prerouting/forward would only see
// traffic passing through the namespace, which is not what a sandbox does.
//
// The nat chain has priority dstnat (-100, NF_IP_PRI_NAT_DST): after conntrack
// (-200) has created the entry whose NAT mapping later answers SO_ORIGINAL_DST,
// and before the filter chain, so the filter chain sees the rewritten destination
// (the listener on loopback) and a redirected connection passes it as loopback
// traffic. Only the first packet of a connection traverses a nat chain; conntrack
// applies the mapping to the rest. DNAT, not "redirect", is used so the address is
// spelled out (127.0.0.1 and ::1) instead of derived from the outgoing interface.
// A connection already aimed at the listener is accepted first so that it is never
// rewritten twice (that is the path BPF-redirected connections take).
//
// The filter chain has priority filter (0), the conventional place for accept and
// reject verdicts, after NAT. UDP to an intercepted port (QUIC, HTTP/3) is
// rejected rather than dropped: a reject in output both answers with an ICMP error
// and makes the sending syscall fail with EPERM at once, so clients fall back to
// TCP immediately instead of waiting for a timeout. Strict mode rejects whatever
// else leaves the namespace except loopback, DNS (to the TableConfig.DNS
// prefixes only, when any are given) and the ICMPv6 neighbour
// discovery that IPv6 DNS needs to reach its resolver; TCP is refused with a
// reset rather than an ICMP error, since ICMPv6 errors are rate-limited and a
// second refused connect() within a second would otherwise hang for a retry.
//
// Both chains keep policy accept: the table only ever narrows what the sandbox can
// do through its explicit rules, so other tables in the namespace are unaffected.

// TableRules builds the table for cfg without touching the kernel.
func TableRules(cfg TableConfig) (Table, error) {
	ports, err := cfg.ports()
	if err != nil {
		return Table{}, err
	}
	if cfg.Listen4 == 0 && cfg.Listen6 == 0 {
		return Table{}, errors.New("table config: neither Listen4 nor Listen6 is set; " +
			"give the port of the listener on 127.0.0.1 or ::1")
	}

	nat := Chain{
		Name:     NATChainName,
		Type:     nftables.ChainTypeNAT,
		Hook:     *nftables.ChainHookOutput,
		Priority: *nftables.ChainPriorityNATDest,
		Rules:    natRules(cfg),
	}
	filter := Chain{
		Name:     FilterChainName,
		Type:     nftables.ChainTypeFilter,
		Hook:     *nftables.ChainHookOutput,
		Priority: *nftables.ChainPriorityFilter,
		Rules:    filterRules(cfg),
	}
	return Table{Name: TableName, Ports: ports, Chains: []Chain{nat, filter}}, nil
}

// ports returns the sorted, de-duplicated intercepted ports, {443} by default.
func (cfg TableConfig) ports() ([]uint16, error) {
	if len(cfg.Ports) == 0 {
		return []uint16{443}, nil
	}
	ports := slices.Clone(cfg.Ports)
	slices.Sort(ports)
	ports = slices.Compact(ports)
	if ports[0] == 0 {
		return nil, errors.New("table config: port 0 cannot be intercepted; list real ports")
	}
	return ports, nil
}

var (
	loopback4 = netip.MustParseAddr("127.0.0.1")
	loopback6 = netip.IPv6Loopback()
)

// natRules: leave connections to the listener alone, send the rest of the
// intercepted TCP ports to the listener of their family.
func natRules(cfg TableConfig) []Rule {
	rules := listenerAccepts(cfg)
	if cfg.Listen4 != 0 {
		rules = append(rules, dnatRule(loopback4, cfg.Listen4))
	}
	if cfg.Listen6 != 0 {
		rules = append(rules, dnatRule(loopback6, cfg.Listen6))
	}
	return rules
}

// dnatRule rewrites intercepted TCP of to's family to to:port.
func dnatRule(to netip.Addr, port uint16) Rule {
	family, name, text := uint32(unix.NFPROTO_IPV4), "ipv4", fmt.Sprintf("ip to %s:%d", to, port)
	if to.Is6() {
		family, name, text = unix.NFPROTO_IPV6, "ipv6", fmt.Sprintf("ip6 to [%s]:%d", to, port)
	}
	return Rule{
		Nft: fmt.Sprintf("meta nfproto %s tcp dport @%s dnat %s", name, PortsSetName, text),
		Exprs: join(nfproto(byte(family)), l4proto(unix.IPPROTO_TCP), dportInSet(),
			[]expr.Any{
				&expr.Immediate{Register: 1, Data: to.AsSlice()},
				&expr.Immediate{Register: 2, Data: be16(port)},
				&expr.NAT{Type: expr.NATTypeDestNAT, Family: family,
					RegAddrMin: 1, RegProtoMin: 2, Specified: true},
			}),
	}
}

// noListenerRule refuses intercepted TCP of a family that has no listener, so it
// is never let through. It lives in the filter chain: the kernel does not act on
// reject verdicts in a nat chain.
func noListenerRule(family byte) Rule {
	// nft 1.0 lists this rule without its "meta nfproto" match (it takes the match
	// for a dependency of the reject), though the kernel has it.
	return Rule{
		Nft: fmt.Sprintf("tcp dport @%s reject with tcp reset", PortsSetName),
		Exprs: join(nfproto(family), l4proto(unix.IPPROTO_TCP), dportInSet(),
			rejectReset()),
	}
}

// filterRules: reject UDP to the intercepted ports; in strict mode, everything
// that is not loopback, the listeners, DNS or neighbour discovery.
func filterRules(cfg TableConfig) []Rule {
	rules := []Rule{{
		Nft:   fmt.Sprintf("udp dport @%s reject with icmpx admin-prohibited", PortsSetName),
		Exprs: join(l4proto(unix.IPPROTO_UDP), dportInSet(), rejectAdmin()),
	}}
	if cfg.Listen4 == 0 {
		rules = append(rules, noListenerRule(unix.NFPROTO_IPV4))
	}
	if cfg.Listen6 == 0 {
		rules = append(rules, noListenerRule(unix.NFPROTO_IPV6))
	}
	if !cfg.Strict {
		return rules
	}

	rules = append(rules, Rule{Nft: `oifname "lo" accept`, Exprs: join(oifname("lo"), accept())})
	// A connection the nat chain sent to a listener still shows its first
	// interface here (the output hook's device is fixed before the chains run), so
	// the listeners are let through by address.
	rules = append(rules, listenerAccepts(cfg)...)
	rules = append(rules, dnsRules(cfg.DNS)...)
	for _, nd := range []struct {
		name string
		typ  byte
	}{{"nd-router-solicit", 133}, {"nd-neighbor-solicit", 135}, {"nd-neighbor-advert", 136}} {
		rules = append(rules, Rule{
			Nft:   "icmpv6 type " + nd.name + " accept",
			Exprs: join(l4proto(unix.IPPROTO_ICMPV6), icmpType(nd.typ), accept()),
		})
	}
	return append(rules,
		Rule{Nft: "meta l4proto tcp reject with tcp reset",
			Exprs: join(l4proto(unix.IPPROTO_TCP), rejectReset())},
		Rule{Nft: "reject with icmpx admin-prohibited", Exprs: rejectAdmin()},
	)
}

// dnsRules accepts udp and tcp to port 53: to any host when prefixes is empty,
// else only to the hosts in prefixes (one rule per prefix and protocol).
func dnsRules(prefixes []netip.Prefix) []Rule {
	protos := []struct {
		name  string
		proto byte
	}{{"udp", unix.IPPROTO_UDP}, {"tcp", unix.IPPROTO_TCP}}
	if len(prefixes) == 0 {
		var rules []Rule
		for _, p := range protos {
			rules = append(rules, Rule{Nft: p.name + " dport 53 accept",
				Exprs: join(l4proto(p.proto), dport(53), accept())})
		}
		return rules
	}
	var rules []Rule
	for _, pfx := range prefixes {
		pfx = pfx.Masked()
		ip, dst := "ip", pfx.String()
		if pfx.Addr().Is6() {
			ip = "ip6"
		}
		if pfx.IsSingleIP() {
			dst = pfx.Addr().String()
		}
		for _, p := range protos {
			rules = append(rules, Rule{
				Nft:   fmt.Sprintf("%s daddr %s %s dport 53 accept", ip, dst, p.name),
				Exprs: join(daddrIn(pfx), l4proto(p.proto), dport(53), accept()),
			})
		}
	}
	return rules
}

// listenerAccepts accepts TCP aimed at the listeners (127.0.0.1:Listen4 and
// [::1]:Listen6); a zero port has no rule.
func listenerAccepts(cfg TableConfig) []Rule {
	var rules []Rule
	for _, l := range []struct {
		addr netip.Addr
		port uint16
		ip   string
	}{{loopback4, cfg.Listen4, "ip"}, {loopback6, cfg.Listen6, "ip6"}} {
		if l.port == 0 {
			continue
		}
		rules = append(rules, Rule{
			Nft:   fmt.Sprintf("%s daddr %s tcp dport %d accept", l.ip, l.addr, l.port),
			Exprs: join(ipDaddr(l.addr), l4proto(unix.IPPROTO_TCP), dport(l.port), accept()),
		})
	}
	return rules
}

func join(parts ...[]expr.Any) []expr.Any { return slices.Concat(parts...) }

func be16(v uint16) []byte { return []byte{byte(v >> 8), byte(v)} }

func cmpEq(data []byte) *expr.Cmp {
	return &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data}
}

func nfproto(family byte) []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, cmpEq([]byte{family})}
}

func l4proto(proto byte) []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, cmpEq([]byte{proto})}
}

// ipDaddr matches the destination address, after checking the family.
func ipDaddr(a netip.Addr) []expr.Any {
	if a.Is4() {
		return append(nfproto(unix.NFPROTO_IPV4), &expr.Payload{DestRegister: 1,
			Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4}, cmpEq(a.AsSlice()))
	}
	return append(nfproto(unix.NFPROTO_IPV6), &expr.Payload{DestRegister: 1,
		Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16}, cmpEq(a.AsSlice()))
}

// daddrIn matches destination addresses in pfx (of its family), masking the
// address unless pfx is a single address.
func daddrIn(pfx netip.Prefix) []expr.Any {
	if pfx.IsSingleIP() {
		return ipDaddr(pfx.Addr())
	}
	a := pfx.Addr()
	family, offset := byte(unix.NFPROTO_IPV4), uint32(16)
	if a.Is6() {
		family, offset = unix.NFPROTO_IPV6, 24
	}
	n := uint32(a.BitLen() / 8)
	mask := make([]byte, n)
	for i := 0; i < pfx.Bits(); i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	return append(nfproto(family),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader,
			Offset: offset, Len: n},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n, Mask: mask,
			Xor: make([]byte, n)},
		cmpEq(a.AsSlice()))
}

func loadDport() *expr.Payload {
	return &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}
}

func dport(p uint16) []expr.Any { return []expr.Any{loadDport(), cmpEq(be16(p))} }

func dportInSet() []expr.Any {
	return []expr.Any{loadDport(),
		&expr.Lookup{SourceRegister: 1, SetName: PortsSetName, SetID: portsSetID}}
}

func icmpType(t byte) []expr.Any {
	return []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader,
		Offset: 0, Len: 1}, cmpEq([]byte{t})}
}

func oifname(name string) []expr.Any {
	padded := make([]byte, unix.IFNAMSIZ)
	copy(padded, name)
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1}, cmpEq(padded)}
}

func accept() []expr.Any { return []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}} }

// rejectReset answers TCP with a reset: connect() fails at once with
// ECONNREFUSED, where an ICMP error may be rate-limited (ICMPv6 especially) and
// leave the client waiting for its SYN retransmission.
func rejectReset() []expr.Any {
	return []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}}
}

func rejectAdmin() []expr.Any {
	return []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH,
		Code: unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED}}
}

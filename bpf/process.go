//go:build linux

package bpf

import (
	"encoding/binary"
	"net/netip"
)

// Process identifies who made a redirected connection, as seen at connect() time.
type Process struct {
	PID      uint32 // the kernel's pid: the id of the connecting thread
	TGID     uint32 // the thread group id: what ps(1) calls the process id
	UID      uint32
	CgroupID uint64 // cgroup2 id (inode number) of the connecting task
}

// Process returns the identity of the process behind a redirected connection from
// client (the accepted connection's remote address) in the namespace with the
// given cookie. It reports false when no record is found: the connection was not
// redirected by these programs, or its record was evicted.
func (r *Redirector) Process(netnsCookie uint64, client netip.AddrPort) (Process, bool) {
	var o hermesHermesOrigin
	if err := r.objs.HermesOrigins.Lookup(peerKey(netnsCookie, client), &o); err != nil {
		return Process{}, false
	}
	return Process{
		PID:      uint32(o.PidTgid),
		TGID:     uint32(o.PidTgid >> 32),
		UID:      o.Uid,
		CgroupID: o.CgroupId,
	}, true
}

// OriginalDestination returns the recorded original destination of a redirected
// connection from client in the namespace with the given cookie, the same answer
// getsockopt(SO_ORIGINAL_DST) gives on the accepted socket. IPv4 destinations are
// returned unmapped (198.18.0.10:443, not [::ffff:198.18.0.10]:443).
func (r *Redirector) OriginalDestination(netnsCookie uint64, client netip.AddrPort) (
	netip.AddrPort, bool) {
	var o hermesHermesOrigin
	if err := r.objs.HermesOrigins.Lookup(peerKey(netnsCookie, client), &o); err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(fromWords(o.Addr).Unmap(), o.Port), true
}

// peerKey builds the hermes_origins key: IPv4 addresses in their IPv4-mapped form,
// as the BPF programs store them.
func peerKey(netnsCookie uint64, client netip.AddrPort) hermesHermesPeer {
	return hermesHermesPeer{
		Netns: netnsCookie,
		Addr:  toWords(client.Addr()),
		Port:  client.Port(),
	}
}

// toWords lays a 16-byte address out as the C side's __u32[4] in network byte
// order: the bytes keep their order in memory.
func toWords(a netip.Addr) [4]uint32 {
	b := netip.AddrFrom16(a.As16()).As16()
	var w [4]uint32
	for i := range w {
		w[i] = binary.NativeEndian.Uint32(b[4*i:])
	}
	return w
}

func fromWords(w [4]uint32) netip.Addr {
	var b [16]byte
	for i := range w {
		binary.NativeEndian.PutUint32(b[4*i:], w[i])
	}
	return netip.AddrFrom16(b)
}

/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * Types, maps and small helpers shared by the hermes programs in redirect.c.
 *
 * Every map and program name starts with "hermes_" so that the daemon, and a
 * person reading bpftool output, can tell our objects apart from anyone
 * else's. Names stay within 15 characters: the kernel keeps no more.
 */
#ifndef HERMES_H
#define HERMES_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* From <sys/socket.h> and the netfilter headers, which are not for BPF. */
#define HERMES_AF_INET 2
#define HERMES_AF_INET6 10
#define HERMES_SOCK_STREAM 1
#define HERMES_SOL_IP 0
#define HERMES_SOL_IPV6 41
#define HERMES_SO_ORIGINAL_DST 80 /* IP6T_SO_ORIGINAL_DST has the same value */
#define HERMES_EPERM 1

/* Map sizes. The two LRU maps only ever lose old records when full. */
#define HERMES_MAX_NETNS 16384
#define HERMES_MAX_PORTS 64
#define HERMES_MAX_CONNS 65536

/* The listener of one registered network namespace, host byte order.
 * A zero port means "no listener for this family": such connections are
 * refused rather than let through.
 */
struct hermes_listener {
	__u16 port4;
	__u16 port6;
};

/* Where a redirected connection was going, and who made it. IPv4 addresses
 * are kept in their IPv4-mapped IPv6 form (::ffff:a.b.c.d) so that one key
 * and one value type serve both families.
 */
struct hermes_origin {
	__u32 addr[4]; /* network byte order */
	__u16 port;    /* host byte order */
	__u16 pad;
	__u32 uid;
	__u64 pid_tgid; /* tgid << 32 | thread id, as bpf_get_current_pid_tgid */
	__u64 cgroup_id;
};

/* The client end of a connection as its peer (our listener) sees it. */
struct hermes_peer {
	__u64 netns;
	__u32 addr[4]; /* network byte order, IPv4 as IPv4-mapped */
	__u16 port;    /* host byte order */
	__u16 pad1;
	__u32 pad2;
};

/* netns cookie -> listener; filled by the daemon's Register. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HERMES_MAX_NETNS);
	__type(key, __u64);
	__type(value, struct hermes_listener);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hermes_netns SEC(".maps");

/* Intercepted destination ports (host byte order) -> 1. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HERMES_MAX_PORTS);
	__type(key, __u16);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hermes_ports SEC(".maps");

/* Socket cookie -> origin, from connect() until the connection is
 * established and its local address is known.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, HERMES_MAX_CONNS);
	__type(key, __u64);
	__type(value, struct hermes_origin);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hermes_pending SEC(".maps");

/* Client address -> origin, for getsockopt(SO_ORIGINAL_DST) on the accepted
 * socket and for the daemon's process lookup.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, HERMES_MAX_CONNS);
	__type(key, struct hermes_peer);
	__type(value, struct hermes_origin);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hermes_origins SEC(".maps");

/* Set by the loader to the machine's page size; see hermes_origdst. */
volatile const __u32 hermes_page_size = 4096;

static __always_inline int hermes_is_mapped(const __u32 *a)
{
	return a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0x0000ffff);
}

static __always_inline void hermes_set_mapped(__u32 *a, __u32 ip4)
{
	a[0] = 0;
	a[1] = 0;
	a[2] = bpf_htonl(0x0000ffff);
	a[3] = ip4;
}

static __always_inline struct hermes_listener *hermes_lookup_netns(__u64 netns)
{
	return bpf_map_lookup_elem(&hermes_netns, &netns);
}

static __always_inline int hermes_intercepted(__u16 port)
{
	return bpf_map_lookup_elem(&hermes_ports, &port) != NULL;
}

#endif /* HERMES_H */

/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
//go:build ignore

/*
 * hermes-netd's socket-level redirect.
 *
 * All programs here are attached once, to the cgroup2 root, so they run for
 * every socket of the machine. They must therefore act only for sockets of
 * network namespaces registered in hermes_netns and leave everything else
 * exactly as it was, as cheaply as possible.
 *
 *   connect4/6   TCP to an intercepted port: rewrite the destination to the
 *                namespace's listener, remember where it was going (keyed by
 *                socket cookie). UDP to an intercepted port: EPERM, so QUIC
 *                clients fall back to TCP at once.
 *   sendmsg4/6   UDP sendto() to an intercepted port: EPERM.
 *   sockops      once the connection is established, re-key the record by
 *                the client's address, which is what the listener sees.
 *   getsockopt   answer SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST on the
 *                accepted socket from that record.
 *
 * Helpers return 0 to let the call through or a negative errno; the entry
 * programs turn that into the cgroup verdict (1 allow, 0 EPERM).
 */
#include "hermes.h"

char __license[] SEC("license") = "Dual MIT/GPL";

static __always_inline int hermes_verdict(int err)
{
	return err == -HERMES_EPERM ? 0 : 1;
}

static __always_inline void hermes_fill_origin(struct hermes_origin *o, const __u32 *addr,
					       __u16 port)
{
	__builtin_memcpy(o->addr, addr, sizeof(o->addr));
	o->port = port;
	o->pid_tgid = bpf_get_current_pid_tgid();
	o->uid = (__u32)bpf_get_current_uid_gid();
	o->cgroup_id = bpf_get_current_cgroup_id();
}

/* hermes_check decides what happens to a connect or sendmsg: 0 means leave
 * it alone, 1 means redirect (stream sockets only), -EPERM means refuse.
 * *l is set when 1 is returned.
 */
static __always_inline int hermes_check(struct bpf_sock_addr *ctx, __u16 port,
					struct hermes_listener **l)
{
	/* The port test comes first: it is one hash lookup and rules out most
	 * of the machine's traffic before the netns cookie is even read.
	 */
	if (!hermes_intercepted(port))
		return 0;
	*l = hermes_lookup_netns(bpf_get_netns_cookie(ctx));
	if (!*l)
		return 0;

	if (ctx->protocol == IPPROTO_UDP || ctx->protocol == IPPROTO_UDPLITE)
		return -HERMES_EPERM;
	if (ctx->type != HERMES_SOCK_STREAM)
		return 0;
	return 1;
}

static __always_inline int hermes_redirect4(struct bpf_sock_addr *ctx)
{
	struct hermes_origin o = {};
	struct hermes_listener *l = NULL;
	__u16 port = bpf_ntohs((__u16)ctx->user_port);
	__u32 dst4 = ctx->user_ip4;
	__u32 addr[4];
	__u64 cookie;
	int ret;

	ret = hermes_check(ctx, port, &l);
	if (ret <= 0 || !l)
		return ret;
	if (l->port4 == 0)
		return -HERMES_EPERM;
	if (dst4 == bpf_htonl(INADDR_LOOPBACK) && port == l->port4)
		return 0;

	hermes_set_mapped(addr, dst4);
	hermes_fill_origin(&o, addr, port);
	cookie = bpf_get_socket_cookie(ctx);
	bpf_map_update_elem(&hermes_pending, &cookie, &o, BPF_ANY);

	ctx->user_ip4 = bpf_htonl(INADDR_LOOPBACK);
	ctx->user_port = bpf_htons(l->port4);
	return 0;
}

static __always_inline int hermes_redirect6(struct bpf_sock_addr *ctx)
{
	struct hermes_origin o = {};
	struct hermes_listener *l = NULL;
	__u16 port = bpf_ntohs((__u16)ctx->user_port);
	__u32 addr[4], to[4] = {};
	__u16 to_port;
	__u64 cookie;
	int ret;

	ret = hermes_check(ctx, port, &l);
	if (ret <= 0 || !l)
		return ret;

	addr[0] = ctx->user_ip6[0];
	addr[1] = ctx->user_ip6[1];
	addr[2] = ctx->user_ip6[2];
	addr[3] = ctx->user_ip6[3];

	/* A v4-mapped destination on a dual-stack socket travels as IPv4:
	 * send it to the IPv4 listener, in the form such a socket accepts.
	 */
	if (hermes_is_mapped(addr)) {
		hermes_set_mapped(to, bpf_htonl(INADDR_LOOPBACK));
		to_port = l->port4;
	} else {
		to[3] = bpf_htonl(1); /* ::1 */
		to_port = l->port6;
	}
	if (to_port == 0)
		return -HERMES_EPERM;
	if (port == to_port && addr[0] == to[0] && addr[1] == to[1] && addr[2] == to[2] &&
	    addr[3] == to[3])
		return 0;

	hermes_fill_origin(&o, addr, port);
	cookie = bpf_get_socket_cookie(ctx);
	bpf_map_update_elem(&hermes_pending, &cookie, &o, BPF_ANY);

	ctx->user_ip6[0] = to[0];
	ctx->user_ip6[1] = to[1];
	ctx->user_ip6[2] = to[2];
	ctx->user_ip6[3] = to[3];
	ctx->user_port = bpf_htons(to_port);
	return 0;
}

static __always_inline int hermes_refuse_udp(struct bpf_sock_addr *ctx)
{
	struct hermes_listener *l = NULL;
	int ret = hermes_check(ctx, bpf_ntohs((__u16)ctx->user_port), &l);

	return ret < 0 ? ret : 0;
}

SEC("cgroup/connect4")
int hermes_connect4(struct bpf_sock_addr *ctx)
{
	return hermes_verdict(hermes_redirect4(ctx));
}

SEC("cgroup/connect6")
int hermes_connect6(struct bpf_sock_addr *ctx)
{
	return hermes_verdict(hermes_redirect6(ctx));
}

SEC("cgroup/sendmsg4")
int hermes_sendmsg4(struct bpf_sock_addr *ctx)
{
	return hermes_verdict(hermes_refuse_udp(ctx));
}

SEC("cgroup/sendmsg6")
int hermes_sendmsg6(struct bpf_sock_addr *ctx)
{
	return hermes_verdict(hermes_refuse_udp(ctx));
}

/* hermes_sockops moves a connection's record from its socket cookie to its
 * client address once the three-way handshake is done: only then is the
 * local port known, and the listener side can see nothing but addresses.
 *
 * The record is not deleted when the client closes: the daemon may accept
 * and ask about the connection after the client has already gone, and the
 * LRU map bounds the memory anyway. A connection in a registered namespace
 * that was not redirected clears any older record under the same address,
 * so a stale answer is never given for it.
 */
SEC("sockops")
int hermes_sockops(struct bpf_sock_ops *ctx)
{
	struct hermes_peer key = {};
	struct hermes_origin *o;
	__u64 cookie;

	if (ctx->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
		return 1;
	key.netns = bpf_get_netns_cookie(ctx);
	if (!hermes_lookup_netns(key.netns))
		return 1;

	if (ctx->family == HERMES_AF_INET) {
		hermes_set_mapped(key.addr, ctx->local_ip4);
	} else if (ctx->family == HERMES_AF_INET6) {
		key.addr[0] = ctx->local_ip6[0];
		key.addr[1] = ctx->local_ip6[1];
		key.addr[2] = ctx->local_ip6[2];
		key.addr[3] = ctx->local_ip6[3];
	} else {
		return 1;
	}
	key.port = (__u16)ctx->local_port;

	cookie = bpf_get_socket_cookie(ctx);
	o = bpf_map_lookup_elem(&hermes_pending, &cookie);
	if (!o) {
		bpf_map_delete_elem(&hermes_origins, &key);
		return 1;
	}
	bpf_map_update_elem(&hermes_origins, &key, o, BPF_ANY);
	bpf_map_delete_elem(&hermes_pending, &cookie);
	return 1;
}

/* The context takes 4-byte stores only: volatile keeps clang from merging the
 * two neighbouring fields into one 8-byte store, which the verifier rejects.
 */
static __always_inline void hermes_set_result(struct bpf_sockopt *ctx, __s32 optlen)
{
	*(volatile __s32 *)&ctx->optlen = optlen;
	*(volatile __s32 *)&ctx->retval = 0;
}

static __always_inline int hermes_answer4(struct bpf_sockopt *ctx, const struct hermes_origin *o)
{
	struct sockaddr_in *sin = ctx->optval;

	if (!hermes_is_mapped(o->addr) || (void *)(sin + 1) > ctx->optval_end)
		return 0;
	__builtin_memset(sin, 0, sizeof(*sin));
	sin->sin_family = HERMES_AF_INET;
	sin->sin_port = bpf_htons(o->port);
	sin->sin_addr.s_addr = o->addr[3];
	hermes_set_result(ctx, sizeof(*sin));
	return 0;
}

static __always_inline int hermes_answer6(struct bpf_sockopt *ctx, const struct hermes_origin *o)
{
	struct sockaddr_in6 *sin6 = ctx->optval;

	if ((void *)(sin6 + 1) > ctx->optval_end)
		return 0;
	__builtin_memset(sin6, 0, sizeof(*sin6));
	sin6->sin6_family = HERMES_AF_INET6;
	sin6->sin6_port = bpf_htons(o->port);
	__builtin_memcpy(&sin6->sin6_addr, o->addr, sizeof(o->addr));
	hermes_set_result(ctx, sizeof(*sin6));
	return 0;
}

/* hermes_origdst answers SO_ORIGINAL_DST on the listener's accepted socket.
 *
 * It answers whenever it holds a record, even if the kernel already did:
 * conntrack, when loaded in that namespace, saw the connection only after
 * the rewrite and would report the listener's own address. A record exists
 * only for connections these programs redirected (see hermes_sockops).
 *
 * Every other option passes through. The kernel hands the program at most
 * one page of optval; when the caller's buffer is larger, optlen is set to 0
 * so that the kernel returns its own answer untouched (see the kernel's
 * Documentation/bpf/prog_cgroup_sockopt.rst, "Large optval").
 */
SEC("cgroup/getsockopt")
int hermes_origdst(struct bpf_sockopt *ctx)
{
	struct hermes_peer key = {};
	struct hermes_origin *o;
	struct bpf_sock *sk;

	if (ctx->optlen > (__s32)hermes_page_size) {
		ctx->optlen = 0;
		return 1;
	}
	if (ctx->optname != HERMES_SO_ORIGINAL_DST ||
	    (ctx->level != HERMES_SOL_IP && ctx->level != HERMES_SOL_IPV6))
		return 1;
	sk = ctx->sk;
	if (!sk)
		return 1;

	key.netns = bpf_get_netns_cookie(ctx);
	if (sk->family == HERMES_AF_INET) {
		hermes_set_mapped(key.addr, sk->dst_ip4);
	} else if (sk->family == HERMES_AF_INET6) {
		key.addr[0] = sk->dst_ip6[0];
		key.addr[1] = sk->dst_ip6[1];
		key.addr[2] = sk->dst_ip6[2];
		key.addr[3] = sk->dst_ip6[3];
	} else {
		return 1;
	}
	key.port = bpf_ntohs(sk->dst_port);

	o = bpf_map_lookup_elem(&hermes_origins, &key);
	if (!o)
		return 1;
	if (ctx->level == HERMES_SOL_IP)
		hermes_answer4(ctx, o);
	else
		hermes_answer6(ctx, o);
	return 1;
}

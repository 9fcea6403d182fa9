// A measurement prototype, not part of turnout: capture at connect(2) instead of NAT, to learn
// what it would buy (scripts/bench/capture). The way Merbridge captures for Istio.
//
// How it works. `capture_connect` (cgroup/connect4, attached to the application's cgroup) runs
// in the application's connect(2) before any packet exists: a TCP connection to the captured
// service address (one entry in `target`, filled by the script) has its destination rewritten to
// the proxy's listener, and the address it asked for is kept under the socket's cookie. When the
// connection is established, `capture_established` (sock_ops) moves that address to `origins`,
// keyed by the connection's four-tuple. The proxy then asks for the original destination the
// usual way, getsockopt(SOL_IP, SO_ORIGINAL_DST); with no NAT there is no conntrack entry and the
// kernel answers ENOENT, and `capture_original_destination` (cgroup/getsockopt, attached to the
// proxy's cgroup) answers from `origins` instead. So the proxy needs no change at all, and the
// namespace needs no nat table: conntrack never tracks a connection there, on either leg.
//
// With --sockmap, the same sock_ops program also puts every established IPv4 TCP socket of the
// cgroup into `socks`, and `capture_send` (sk_msg) sends each message straight to the peer
// socket's receive queue, as scripts/bench/prototype/sockmap-accel.bpf.c does. Here the two ends
// of a captured connection have exactly reversed four-tuples (the application's socket is
// connected to the proxy's own address), so no translation table is needed: capture at connect
// is what makes pairing exact.
//
// Inbound (--inbound), where connect4 cannot help (the connection comes from another host): an
// `sk_lookup` program, attached to the application's namespace, steers a new connection to the
// captured port straight to the proxy's inbound listener (`bpf_sk_assign`), the way the kernel
// would pick a listener, so no packet is rewritten. The accepted socket's own local address is
// then the original destination, which `capture_original_destination` answers. The listeners
// are put into `listeners` by the sock_ops program when they call listen(2). Connections from
// 127.0.0.0/8 are left alone: the proxy's own delivery to the application comes from there.
//
// What it does not do (a product version would): IPv6 (connect6, IP6T_SO_ORIGINAL_DST), more
// than one captured address (a prefix or the table's VIPs, and the exclusions `turnout init`
// has: the proxy's own uid, ports), deleting `origins` entries when a connection closes (an LRU
// map stands in), and the no-mix guarantee of the sockmap prototype's header.
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define SOCK_STREAM_TYPE 1
#define SOL_IP_LEVEL 0
#define SO_ORIGINAL_DST_OPTNAME 80

// Addresses in network order, ports in host order.
struct capture_addr { __u32 ip, port; };
struct capture_tuple { __u32 client_ip, proxy_ip, client_port, proxy_port; };

// Key 0: the captured service address; key 1: where it goes now (the proxy under test); key 2:
// the captured inbound port (ip 0); key 3: the inbound listener it goes to now (its port).
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 4);
    __type(key, __u32);
    __type(value, struct capture_addr);
} target SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 262144);
    __type(key, __u64);
    __type(value, struct capture_addr);
} pending SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 262144);
    __type(key, struct capture_tuple);
    __type(value, struct capture_addr);
} origins SEC(".maps");

// Key 0: 1 when --sockmap is on.
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u32);
} options SEC(".maps");

struct capture_peer { __u32 local_ip, remote_ip, local_port, remote_port; };

struct {
    __uint(type, BPF_MAP_TYPE_SOCKHASH);
    __uint(max_entries, 65536);
    __type(key, struct capture_peer);
    __type(value, __u32);
} socks SEC(".maps");

// Listening IPv4 TCP sockets of the cgroup, keyed by their port, for the inbound steering.
struct {
    __uint(type, BPF_MAP_TYPE_SOCKHASH);
    __uint(max_entries, 64);
    __type(key, __u32);
    __type(value, __u64);
} listeners SEC(".maps");

// 0: connects captured, 1: origins recorded, 2: getsockopt answered, 3: getsockopt without an
// origin, 4: sockets taken, 5: messages redirected, 6: messages sent by TCP, 7: inbound
// connections steered, 8: inbound connections with no listener to steer to.
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 9);
    __type(key, __u32);
    __type(value, __u64);
} stats SEC(".maps");

static __always_inline void count(__u32 index) {
    __u64 *value = bpf_map_lookup_elem(&stats, &index);
    if (value) __sync_fetch_and_add(value, 1);
}

// sock_ops' remote port is documented as network order in a 32-bit field, and kernels have
// placed it in either half of that field; take whichever half holds it.
static __always_inline __u32 remote_port(__u32 raw) {
    __u32 port = bpf_ntohl(raw);
    return port > 0xffff ? bpf_ntohs((__u16)raw) : port;
}

SEC("cgroup/connect4")
int capture_connect(struct bpf_sock_addr *ctx) {
    if (ctx->type != SOCK_STREAM_TYPE || ctx->protocol != IPPROTO_TCP) return 1;
    __u32 zero = 0, one = 1;
    struct capture_addr *service = bpf_map_lookup_elem(&target, &zero);
    struct capture_addr *proxy = bpf_map_lookup_elem(&target, &one);
    if (!service || !proxy || proxy->port == 0) return 1;
    if (ctx->user_ip4 != service->ip || bpf_ntohs((__u16)ctx->user_port) != service->port) return 1;
    struct capture_addr asked = { .ip = ctx->user_ip4, .port = service->port };
    __u64 cookie = bpf_get_socket_cookie(ctx);
    if (bpf_map_update_elem(&pending, &cookie, &asked, BPF_ANY) != 0) return 1;
    ctx->user_ip4 = proxy->ip;
    ctx->user_port = bpf_htons((__u16)proxy->port);
    count(0);
    return 1;
}

SEC("sockops")
int capture_established(struct bpf_sock_ops *ops) {
    if (ops->family != 2 /* AF_INET */) return 1;
    if (ops->op == BPF_SOCK_OPS_TCP_LISTEN_CB) {
        __u32 port = ops->local_port;
        bpf_sock_hash_update(ops, &listeners, &port, BPF_ANY);
        return 1;
    }
    int active = ops->op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB;
    if (!active && ops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB) return 1;
    if (active) {
        __u64 cookie = bpf_get_socket_cookie(ops);
        struct capture_addr *asked = bpf_map_lookup_elem(&pending, &cookie);
        if (asked) {
            struct capture_tuple tuple = { .client_ip = ops->local_ip4, .proxy_ip = ops->remote_ip4,
                                           .client_port = ops->local_port, .proxy_port = remote_port(ops->remote_port) };
            struct capture_addr copy = *asked;
            if (bpf_map_update_elem(&origins, &tuple, &copy, BPF_ANY) == 0) count(1);
            bpf_map_delete_elem(&pending, &cookie);
        }
    }
    __u32 zero = 0;
    __u32 *sockmap = bpf_map_lookup_elem(&options, &zero);
    if (!sockmap || !*sockmap) return 1;
    struct capture_peer key = { .local_ip = ops->local_ip4, .remote_ip = ops->remote_ip4,
                                .local_port = ops->local_port, .remote_port = remote_port(ops->remote_port) };
    if (bpf_sock_hash_update(ops, &socks, &key, BPF_NOEXIST) == 0) count(4);
    return 1;
}

SEC("cgroup/getsockopt")
int capture_original_destination(struct bpf_sockopt *ctx) {
    if (ctx->level != SOL_IP_LEVEL || ctx->optname != SO_ORIGINAL_DST_OPTNAME) return 1;
    struct bpf_sock *sk = ctx->sk;
    if (!sk || sk->family != 2) return 1;
    // The proxy's accepted socket: its remote end is the client, its local end the listener.
    struct capture_tuple tuple = { .client_ip = sk->dst_ip4, .proxy_ip = sk->src_ip4,
                                   .client_port = bpf_ntohs((__u16)sk->dst_port), .proxy_port = sk->src_port };
    // Looked up before conntrack's answer is kept: with conntrack on (--conntrack) it knows a
    // connection captured at connect(2) too, but by the address it was rewritten to, the proxy's.
    struct capture_addr *asked = bpf_map_lookup_elem(&origins, &tuple);
    struct capture_addr own = { .ip = sk->src_ip4, .port = sk->src_port };
    if (!asked) {
        // Steered by capture_inbound: the socket's own address is where the client connected.
        __u32 two = 2;
        struct capture_addr *inbound = bpf_map_lookup_elem(&target, &two);
        if (!inbound || inbound->port == 0 || inbound->port != sk->src_port) {
            if (ctx->retval != 0) count(3);  // else conntrack knew it (a NAT redirect): it stands
            return 1;
        }
        asked = &own;
    }
    struct sockaddr_in *answer = ctx->optval;
    if ((void *)(answer + 1) > ctx->optval_end) return 1;
    answer->sin_family = 2;
    answer->sin_port = bpf_htons((__u16)asked->port);
    answer->sin_addr.s_addr = asked->ip;
    ctx->optlen = sizeof(*answer);
    // Two 4-byte stores: the verifier refuses the 8-byte one clang would merge them into.
    asm volatile("" ::: "memory");
    ctx->retval = 0;
    count(2);
    return 1;
}

SEC("sk_msg")
int capture_send(struct sk_msg_md *msg) {
    struct capture_peer peer = { .local_ip = msg->remote_ip4, .remote_ip = msg->local_ip4,
                                 .local_port = remote_port(msg->remote_port), .remote_port = msg->local_port };
    // A failed lookup sets nothing and answers SK_DROP; passing then sends the message by TCP.
    int redirected = bpf_msg_redirect_hash(msg, &socks, &peer, BPF_F_INGRESS) == SK_PASS;
    count(redirected ? 5 : 6);
    return SK_PASS;
}

SEC("sk_lookup")
int capture_inbound(struct bpf_sk_lookup *ctx) {
    if (ctx->family != 2 || ctx->protocol != IPPROTO_TCP) return SK_PASS;
    // The proxy delivers from 127.0.0.6 (turnout) or 127.0.0.1 (HAProxy) to the application's
    // own address; that connection must reach the application. (Its ingress_ifindex is not lo's.)
    if ((bpf_ntohl(ctx->remote_ip4) >> 24) == 127) return SK_PASS;
    __u32 two = 2, three = 3;
    struct capture_addr *inbound = bpf_map_lookup_elem(&target, &two);
    struct capture_addr *proxy = bpf_map_lookup_elem(&target, &three);
    if (!inbound || !proxy || inbound->port == 0 || ctx->local_port != inbound->port) return SK_PASS;
    __u32 port = proxy->port;
    struct bpf_sock *listener = bpf_map_lookup_elem(&listeners, &port);
    if (!listener) { count(8); return SK_PASS; }
    long failed = bpf_sk_assign(ctx, listener, 0);
    bpf_sk_release(listener);
    if (!failed) count(7);
    return SK_PASS;
}

// The kernel checks this declaration before it lets a program use GPL-only helpers.
char LICENSE[] SEC("license") = "Dual BSD/GPL";

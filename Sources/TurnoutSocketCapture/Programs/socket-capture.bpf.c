// The socket capture of `turnout init --backend bpf`: Istio's capture, done where the socket is
// made instead of on its packets, so that no NAT rule exists and conntrack never tracks a pod's
// connections. Compiled for the BPF target at build time (Plugins/SocketCaptureProgram) and
// embedded in turnout, which loads it with libbpf (CTurnoutBPF) and fills its maps from
// CaptureOptions (TurnoutRules' SocketCaptureCompiler). Map layouts: CTurnoutBPFMaps.h.
//
// Outbound, at connect(2) (cgroup/connect4 and connect6, the pod's cgroup), first match wins, as
// CaptureCompiler orders the NAT rules:
//  1. an excluded destination port: left alone;
//  2. a socket bound to the passthrough source 127.0.0.6 or ::6 (the proxy delivering inbound):
//     left alone;
//  3. the proxy (its uid or gid) calling one of the pod's own, non-loopback addresses: to the
//     inbound listener, so the app's server side goes through the proxy too;
//  4. anything else of the proxy: left alone (the loop guard);
//  5. a loopback or own address (NAT: "over lo"): left alone;
//  6. an always-captured port: to the outbound listener; 7. an excluded block: left alone;
//  8. a captured block: to the outbound listener.
// A captured connect(2) goes to 127.0.0.1:port (::1 for IPv6) instead, and the address asked for is kept with
// the socket (sk_storage, for getpeername) and, once established, by four-tuple (`origins`, for
// the proxy's SO_ORIGINAL_DST); the four-tuple is forgotten when the socket closes.
//
// Inbound, at the listener lookup (sk_lookup, the pod's network namespace): a new connection to
// a captured port, from an address that is not the pod's own (NAT's prerouting never sees those
// either), is handed to the inbound listener as it is; the
// accepted socket's own address is then its original destination. No listener: refused, so
// that traffic never bypasses the proxy.
//
// The proxy asks SO_ORIGINAL_DST as it would under NAT (cgroup/getsockopt answers when conntrack
// cannot; IP6T_SO_ORIGINAL_DST for IPv6), so the proxy needs no change. An IPv6 socket connecting
// to a v4-mapped address (::ffff:a.b.c.d, how dual-stack programs reach IPv4) is an IPv4
// connection on the wire: it is decided as IPv4 and sent to ::ffff:127.0.0.1, which reaches the
// proxy's IPv4 listener. With IPv6 off (config.ipv6 = 0) connect6 captures only v4-mapped
// destinations.
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "CTurnoutBPFMaps.h"

#define AF_INET_FAMILY 2
#define AF_INET6_FAMILY 10
#define SOCK_STREAM_TYPE 1
#define SOL_IP_LEVEL 0
#define SOL_IPV6_LEVEL 41
#define SO_ORIGINAL_DST_OPTNAME 80
#define TCP_STATE_CLOSE 7
#define READ(field) (*(volatile typeof(field) *)&(field))
// An IPv6 address, word by word (context fields take only 4-byte accesses, one per field).
#define COPY6(to, from) do { (to)[0] = (from)[0]; (to)[1] = (from)[1]; (to)[2] = (from)[2]; (to)[3] = (from)[3]; } while (0)

// Per load: what init's options say. Filled before any program is attached.
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct CTurnoutBPF_config);
} config SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 65536);
    __type(key, __u32);
    __type(value, __u8);
} outbound_ports SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 65536);
    __type(key, __u32);
    __type(value, __u8);
} inbound_ports SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, CTURNOUTBPF_MAX_OWNERS);
    __type(key, __u64);
    __type(value, __u8);
} proxy_ids SEC(".maps");

#define BLOCK_TRIE(name, key_type) \
    struct { \
        __uint(type, BPF_MAP_TYPE_LPM_TRIE); \
        __uint(max_entries, 4096); \
        __uint(map_flags, BPF_F_NO_PREALLOC); \
        __type(key, key_type); \
        __type(value, __u8); \
    } name SEC(".maps")

BLOCK_TRIE(local_addresses, struct CTurnoutBPF_block);
BLOCK_TRIE(excluded_blocks, struct CTurnoutBPF_block);
BLOCK_TRIE(captured_blocks, struct CTurnoutBPF_block);
BLOCK_TRIE(local_addresses6, struct CTurnoutBPF_block6);
BLOCK_TRIE(excluded_blocks6, struct CTurnoutBPF_block6);
BLOCK_TRIE(captured_blocks6, struct CTurnoutBPF_block6);

// Shared by every load (LIBBPF_PIN_BY_NAME: pinned under the capture's directory, which turnout
// gives libbpf as pin_root_path, and reused by the next init): the state of connections and
// listeners that must survive a re-run of init with other options.
struct {
    __uint(type, BPF_MAP_TYPE_SK_STORAGE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
    __type(key, int);
    __type(value, struct CTurnoutBPF_origin);
} origin_by_socket SEC(".maps");

// An LRU map only as a backstop: entries are deleted when the proxy's end of their connection
// closes, so it fills only with 65,536 captured connections open at once (about 7 MiB of
// kernel memory, preallocated); then the oldest go rather than new captures failing.
struct {
    __uint(pinning, LIBBPF_PIN_BY_NAME);
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, struct CTurnoutBPF_tuple);
    __type(value, struct CTurnoutBPF_origin);
} origins SEC(".maps");

// The inbound listeners, IPv4 and IPv6 (one per SO_REUSEPORT group member would be the same:
// the kernel picks within the group after sk_assign), found when they call listen(2).
#define LISTENERS(name) \
    struct { \
        __uint(pinning, LIBBPF_PIN_BY_NAME); \
        __uint(type, BPF_MAP_TYPE_SOCKHASH); \
        __uint(max_entries, 16); \
        __type(key, __u32); \
        __type(value, __u64); \
    } name SEC(".maps")

LISTENERS(listeners);
LISTENERS(listeners6);

struct {
    __uint(pinning, LIBBPF_PIN_BY_NAME);
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, CTURNOUTBPF_COUNTER_COUNT);
    __type(key, __u32);
    __type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 index) {
    __u64 *value = bpf_map_lookup_elem(&counters, &index);
    if (value) __sync_fetch_and_add(value, 1);
}

static __always_inline struct CTurnoutBPF_config *configuration(void) {
    __u32 zero = 0;
    return bpf_map_lookup_elem(&config, &zero);
}

static __always_inline __u8 lookup_block(void *trie, __u32 address) {
    struct CTurnoutBPF_block key = { .prefix_length = 32, .address = address };
    __u8 *value = bpf_map_lookup_elem(trie, &key);
    return value ? *value : 0;
}

static __always_inline __u8 lookup_block6(void *trie, const __u32 *address) {
    struct CTurnoutBPF_block6 key = { .prefix_length = 128 };
    COPY6(key.address, address);
    __u8 *value = bpf_map_lookup_elem(trie, &key);
    return value ? *value : 0;
}

static __always_inline __u8 port_verdict(void *ports, __u32 port) {
    __u8 *value = bpf_map_lookup_elem(ports, &port);
    return value ? *value : 0;
}

static __always_inline int inbound_steered(const struct CTurnoutBPF_config *cfg, __u32 port) {
    __u8 verdict = port_verdict(&inbound_ports, port);
    if (verdict == CTURNOUTBPF_INBOUND_DEFAULT) verdict = (__u8)cfg->inbound_default;
    return verdict == CTURNOUTBPF_INBOUND_STEERED;
}

static __always_inline int is_proxy(void) {
    __u64 ids = bpf_get_current_uid_gid();
    __u64 uid = CTURNOUTBPF_OWNER_KEY(CTURNOUTBPF_OWNER_UID, (__u32)ids), gid = CTURNOUTBPF_OWNER_KEY(CTURNOUTBPF_OWNER_GID, ids >> 32);
    return bpf_map_lookup_elem(&proxy_ids, &uid) || bpf_map_lookup_elem(&proxy_ids, &gid);
}

static __always_inline int same6(const __u32 *a, const __u32 *b) {
    return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3];
}

// sock_ops' remote port is documented as network order in a 32-bit field, and kernels have
// placed it in either half of that field; take whichever half holds it.
static __always_inline __u32 remote_port(__u32 raw) {
    __u32 port = bpf_ntohl(raw);
    return port > 0xffff ? bpf_ntohs((__u16)raw) : port;
}

// A tuple's family and addresses, from a socket's addresses already read into plain numbers
// (see turnout_getsockopt for why they are read up front): the IPv4 pair, or the IPv6 one.
static __always_inline void set_addresses(struct CTurnoutBPF_tuple *tuple, int ipv6, __u32 client4, __u32 proxy4,
                                          const __u32 *client6, const __u32 *proxy6) {
    if (ipv6) {
        tuple->family = CTURNOUTBPF_FAMILY_IPV6;
        COPY6(tuple->client_address, client6);
        COPY6(tuple->proxy_address, proxy6);
    } else {
        tuple->family = CTURNOUTBPF_FAMILY_IPV4;
        tuple->client_address[0] = client4;
        tuple->proxy_address[0] = proxy4;
    }
}

// The decision of the header's steps 3–8, once the port and the passthrough source are out of
// the way: the listener port to send the connection to, or 0 to leave it alone. `local` is
// what `local_addresses(6)` says of the destination, `excluded` and `captured` whether the
// destination is in those blocks.
static __always_inline __u16 decide(const struct CTurnoutBPF_config *cfg, __u8 verdict, __u8 local, int excluded, int captured) {
    if (is_proxy()) return local == CTURNOUTBPF_LOCAL_OWN ? cfg->inbound_port : 0;
    if (local) return 0;
    if (verdict == CTURNOUTBPF_PORT_CAPTURED) return cfg->proxy_port;
    if (excluded || !captured) return 0;
    return cfg->proxy_port;
}

static __always_inline __u16 decide4(const struct CTurnoutBPF_config *cfg, __u8 verdict, __u32 address) {
    return decide(cfg, verdict, lookup_block(&local_addresses, address),
                  lookup_block(&excluded_blocks, address), lookup_block(&captured_blocks, address));
}

static __always_inline __u16 decide6(const struct CTurnoutBPF_config *cfg, __u8 verdict, const __u32 *address) {
    return decide(cfg, verdict, lookup_block6(&local_addresses6, address),
                  lookup_block6(&excluded_blocks6, address), lookup_block6(&captured_blocks6, address));
}

// ::ffff:a.b.c.d, how an IPv6 socket reaches an IPv4 address.
static __always_inline int v4_mapped(const __u32 *address) {
    return address[0] == 0 && address[1] == 0 && address[2] == bpf_htonl(0xffff);
}

// Keeps what the application asked for with its socket and counts the capture; 0 when there
// is no room, and then the connection is refused rather than let past the proxy (which could
// not route it). The caller rewrites the destination's address; the port is set here.
static __always_inline int capture(struct bpf_sock_addr *ctx, const struct CTurnoutBPF_config *cfg, __u32 family,
                                   __u32 port, const __u32 *address, __u16 to) {
    struct CTurnoutBPF_origin *origin = bpf_sk_storage_get(&origin_by_socket, ctx->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
    if (!origin) {
        count(CTURNOUTBPF_COUNTER_UNRECORDED);
        return 0;
    }
    origin->family = family;
    origin->port = port;
    COPY6(origin->address, address);
    ctx->user_port = bpf_htons(to);
    count(to == cfg->proxy_port ? CTURNOUTBPF_COUNTER_CAPTURED : CTURNOUTBPF_COUNTER_CAPTURED_OWN);
    return 1;
}

// A connect(2) left alone. The socket may have been captured by an earlier connect(2) that
// failed (a TCP socket can connect again after a refusal): what it asked for then must neither
// answer its getpeername(2) nor be recorded for a connection the proxy never sees. Returns the
// connect hook's "go on".
static __always_inline int leave_alone(struct bpf_sock *sk) {
    bpf_sk_storage_delete(&origin_by_socket, sk);
    return 1;
}

// The configuration, for a TCP connect(2) of a socket the hook can keep state with; 0 for
// anything else, which the connect hooks let through untouched.
static __always_inline struct CTurnoutBPF_config *tcp_connect(const struct bpf_sock_addr *ctx) {
    if (ctx->type != SOCK_STREAM_TYPE || ctx->protocol != IPPROTO_TCP || !ctx->sk) return 0;
    return configuration();
}

SEC("cgroup/connect4")
int turnout_connect4(struct bpf_sock_addr *ctx) {
    struct CTurnoutBPF_config *cfg = tcp_connect(ctx);
    if (!cfg) return 1;
    struct bpf_sock *sk = ctx->sk;
    __u32 address[4] = { ctx->user_ip4, 0, 0, 0 };
    __u32 port = bpf_ntohs((__u16)ctx->user_port);
    __u8 verdict = port_verdict(&outbound_ports, port);
    if (verdict == CTURNOUTBPF_PORT_EXCLUDED || sk->src_ip4 == cfg->passthrough_ip) return leave_alone(sk);
    __u16 to = decide4(cfg, verdict, address[0]);
    if (!to) return leave_alone(sk);
    if (!capture(ctx, cfg, CTURNOUTBPF_FAMILY_IPV4, port, address, to)) return 0;
    ctx->user_ip4 = cfg->proxy_ip;
    return 1;
}

SEC("cgroup/connect6")
int turnout_connect6(struct bpf_sock_addr *ctx) {
    struct CTurnoutBPF_config *cfg = tcp_connect(ctx);
    if (!cfg) return 1;
    struct bpf_sock *sk = ctx->sk;
    __u32 address[4] = { ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3] };
    __u32 source[4] = { sk->src_ip6[0], sk->src_ip6[1], sk->src_ip6[2], sk->src_ip6[3] };
    __u32 port = bpf_ntohs((__u16)ctx->user_port);
    __u8 verdict = port_verdict(&outbound_ports, port);
    if (verdict == CTURNOUTBPF_PORT_EXCLUDED) return leave_alone(sk);
    if (v4_mapped(address)) {
        // An IPv4 connection on the wire, decided as one and sent to ::ffff:127.0.0.1.
        if (v4_mapped(source) && source[3] == cfg->passthrough_ip) return leave_alone(sk);
        __u32 v4[4] = { address[3], 0, 0, 0 };
        __u16 to = decide4(cfg, verdict, v4[0]);
        if (!to) return leave_alone(sk);
        if (!capture(ctx, cfg, CTURNOUTBPF_FAMILY_IPV4, port, v4, to)) return 0;
        ctx->user_ip6[3] = cfg->proxy_ip;
        return 1;
    }
    if (!cfg->ipv6 || same6(source, cfg->passthrough_ip6)) return leave_alone(sk);
    __u16 to = decide6(cfg, verdict, address);
    if (!to) return leave_alone(sk);
    if (!capture(ctx, cfg, CTURNOUTBPF_FAMILY_IPV6, port, address, to)) return 0;
    COPY6(ctx->user_ip6, cfg->proxy_ip6);
    return 1;
}

// What connect(2) was asked for on the socket of `ctx`, when it was captured.
static __always_inline struct CTurnoutBPF_origin *asked_for(struct bpf_sock_addr *ctx) {
    struct bpf_sock *sk = ctx->sk;
    return sk ? bpf_sk_storage_get(&origin_by_socket, sk, 0, 0) : 0;
}

// An application that asks whom its socket is connected to hears what it asked for, as it
// would under NAT, not the proxy's listener.
SEC("cgroup/getpeername4")
int turnout_getpeername4(struct bpf_sock_addr *ctx) {
    struct CTurnoutBPF_origin *origin = asked_for(ctx);
    if (!origin || origin->family != CTURNOUTBPF_FAMILY_IPV4) return 1;
    ctx->user_ip4 = origin->address[0];
    ctx->user_port = bpf_htons((__u16)origin->port);
    return 1;
}

SEC("cgroup/getpeername6")
int turnout_getpeername6(struct bpf_sock_addr *ctx) {
    struct CTurnoutBPF_origin *origin = asked_for(ctx);
    if (!origin) return 1;
    if (origin->family == CTURNOUTBPF_FAMILY_IPV4) {
        ctx->user_ip6[0] = 0;
        ctx->user_ip6[1] = 0;
        ctx->user_ip6[2] = bpf_htonl(0xffff);
        ctx->user_ip6[3] = origin->address[0];
    } else {
        COPY6(ctx->user_ip6, origin->address);
    }
    ctx->user_port = bpf_htons((__u16)origin->port);
    return 1;
}

SEC("sockops")
int turnout_sockops(struct bpf_sock_ops *ops) {
    struct bpf_sock *sk = ops->sk;
    if (!sk) return 1;
    int ipv6 = ops->family == AF_INET6_FAMILY;
    if (!ipv6 && ops->family != AF_INET_FAMILY) return 1;
    if (ops->op == BPF_SOCK_OPS_TCP_LISTEN_CB) {
        struct CTurnoutBPF_config *cfg = configuration();
        __u32 port = ops->local_port;
        if (cfg && port == cfg->inbound_port) bpf_sock_hash_update(ops, ipv6 ? (void *)&listeners6 : (void *)&listeners, &port, BPF_ANY);
        return 1;
    }
    int closing = ops->op == BPF_SOCK_OPS_STATE_CB && ops->args[1] == TCP_STATE_CLOSE;
    if (ops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && ops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB && !closing) return 1;
    // Both families' addresses read up front (see turnout_getsockopt), and only for the three
    // events that need them: this program runs for every TCP event of the pod's sockets.
    __u32 local4 = READ(ops->local_ip4), remote4 = READ(ops->remote_ip4);
    __u32 local6[4] = { READ(ops->local_ip6[0]), READ(ops->local_ip6[1]), READ(ops->local_ip6[2]), READ(ops->local_ip6[3]) };
    __u32 remote6[4] = { READ(ops->remote_ip6[0]), READ(ops->remote_ip6[1]), READ(ops->remote_ip6[2]), READ(ops->remote_ip6[3]) };
    struct CTurnoutBPF_tuple tuple = {};
    if (ops->op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB) {
        // The application's socket: keep what it asked for by four-tuple, for the proxy. A
        // v4-mapped connection is IPv4 on the wire, so its addresses are the IPv4 ones.
        struct CTurnoutBPF_origin *origin = bpf_sk_storage_get(&origin_by_socket, sk, 0, 0);
        if (!origin) return 1;
        set_addresses(&tuple, origin->family == CTURNOUTBPF_FAMILY_IPV6, local4, remote4, local6, remote6);
        tuple.client_port = ops->local_port;
        tuple.proxy_port = remote_port(ops->remote_port);
        struct CTurnoutBPF_origin copy = *origin;
        if (bpf_map_update_elem(&origins, &tuple, &copy, BPF_ANY) == 0) count(CTURNOUTBPF_COUNTER_ORIGIN_RECORDED);
        return 1;
    }
    // The proxy's end of a captured connection: forgotten when it closes, not when the
    // application's end does, which may be before the proxy even accepted it (conntrack keeps its
    // entry that long too). The application's socket has reached ACTIVE_ESTABLISHED first: the
    // proxy's end is established only by the ACK that follows it.
    set_addresses(&tuple, ipv6, remote4, local4, remote6, local6);
    tuple.client_port = remote_port(ops->remote_port);
    tuple.proxy_port = ops->local_port;
    if (ops->op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB) {
        if (bpf_map_lookup_elem(&origins, &tuple))
            bpf_sock_ops_cb_flags_set(ops, ops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
        return 1;
    }
    if (bpf_map_delete_elem(&origins, &tuple) == 0) count(CTURNOUTBPF_COUNTER_ORIGIN_FORGOTTEN);
    return 1;
}

SEC("cgroup/getsockopt")
int turnout_getsockopt(struct bpf_sockopt *ctx) {
    if (ctx->optname != SO_ORIGINAL_DST_OPTNAME) return 1;
    struct bpf_sock *sk = ctx->sk;
    if (!sk) return 1;
    int ipv6;
    if (ctx->level == SOL_IP_LEVEL && sk->family == AF_INET_FAMILY) ipv6 = 0;
    else if (ctx->level == SOL_IPV6_LEVEL && sk->family == AF_INET6_FAMILY) ipv6 = 1;
    else return 1;
    // The proxy's accepted socket: its remote end is the application, its local end the listener.
    // Both families' fields read up front, volatile (READ), and the branch picks among plain
    // numbers: loads inside the branches get merged by clang into one at a computed offset, which
    // the verifier refuses on a socket.
    __u32 client4 = READ(sk->dst_ip4), proxy4 = READ(sk->src_ip4);
    __u32 client6[4] = { READ(sk->dst_ip6[0]), READ(sk->dst_ip6[1]), READ(sk->dst_ip6[2]), READ(sk->dst_ip6[3]) };
    __u32 proxy6[4] = { READ(sk->src_ip6[0]), READ(sk->src_ip6[1]), READ(sk->src_ip6[2]), READ(sk->src_ip6[3]) };
    struct CTurnoutBPF_tuple tuple = {};
    set_addresses(&tuple, ipv6, client4, proxy4, client6, proxy6);
    tuple.client_port = bpf_ntohs((__u16)sk->dst_port);
    tuple.proxy_port = sk->src_port;
    // Looked up before conntrack's answer is kept: if some other table turned conntrack on, it
    // knows this connection by the address connect(2) was rewritten to, the proxy's own.
    struct CTurnoutBPF_origin answer = {};
    struct CTurnoutBPF_origin *recorded = bpf_map_lookup_elem(&origins, &tuple);
    if (recorded) {
        answer = *recorded;
        count(CTURNOUTBPF_COUNTER_ANSWERED);
    } else {
        struct CTurnoutBPF_config *cfg = configuration();
        // Handed over by turnout_inbound: the socket's own address is where the client connected.
        // Never the proxy's own listeners, nor a loopback address (steering hands over
        // connections from other hosts only): a miss there is no original destination.
        if (!cfg || ctx->retval == 0 || sk->src_port == cfg->inbound_port || sk->src_port == cfg->proxy_port ||
            !inbound_steered(cfg, sk->src_port)) return 1;
        if (ipv6 ? lookup_block6(&local_addresses6, tuple.proxy_address) == CTURNOUTBPF_LOCAL_LOOPBACK
                 : lookup_block(&local_addresses, tuple.proxy_address[0]) == CTURNOUTBPF_LOCAL_LOOPBACK) return 1;
        answer.port = sk->src_port;
        COPY6(answer.address, tuple.proxy_address);
        count(CTURNOUTBPF_COUNTER_ANSWERED_INBOUND);
    }
    if (ipv6) {
        struct sockaddr_in6 *out = ctx->optval;
        if ((void *)(out + 1) > ctx->optval_end) return 1;
        out->sin6_family = AF_INET6_FAMILY;
        out->sin6_port = bpf_htons((__u16)answer.port);
        out->sin6_flowinfo = 0;
        COPY6(out->sin6_addr.in6_u.u6_addr32, answer.address);
        out->sin6_scope_id = 0;
        ctx->optlen = sizeof(*out);
    } else {
        struct sockaddr_in *out = ctx->optval;
        if ((void *)(out + 1) > ctx->optval_end) return 1;
        out->sin_family = AF_INET_FAMILY;
        out->sin_port = bpf_htons((__u16)answer.port);
        out->sin_addr.s_addr = answer.address[0];
        ctx->optlen = sizeof(*out);
    }
    // Separate stores: the verifier refuses the wider one clang would merge them into.
    asm volatile("" ::: "memory");
    ctx->retval = 0;
    return 1;
}

SEC("sk_lookup")
int turnout_inbound(struct bpf_sk_lookup *ctx) {
    if (ctx->protocol != IPPROTO_TCP) return SK_PASS;
    int ipv6 = ctx->family == AF_INET6_FAMILY;
    if (!ipv6 && ctx->family != AF_INET_FAMILY) return SK_PASS;
    struct CTurnoutBPF_config *cfg = configuration();
    if (!cfg || (ipv6 && !cfg->ipv6)) return SK_PASS;
    __u32 port = ctx->local_port;
    if (port == cfg->inbound_port || port == cfg->proxy_port) return SK_PASS;
    if (!inbound_steered(cfg, port)) return SK_PASS;
    if (ipv6) {
        __u32 remote[4] = { ctx->remote_ip6[0], ctx->remote_ip6[1], ctx->remote_ip6[2], ctx->remote_ip6[3] };
        if (lookup_block6(&local_addresses6, remote)) return SK_PASS;
    } else if (lookup_block(&local_addresses, ctx->remote_ip4)) {
        return SK_PASS;
    }
    __u32 key = cfg->inbound_port;
    struct bpf_sock *listener = bpf_map_lookup_elem(ipv6 ? (void *)&listeners6 : (void *)&listeners, &key);
    if (!listener) {
        count(CTURNOUTBPF_COUNTER_REFUSED);
        return SK_DROP;
    }
    long failed = bpf_sk_assign(ctx, listener, 0);
    bpf_sk_release(listener);
    if (failed) {
        count(CTURNOUTBPF_COUNTER_REFUSED);
        return SK_DROP;
    }
    count(CTURNOUTBPF_COUNTER_STEERED);
    return SK_PASS;
}

// The kernel checks this declaration before it lets a program use GPL-only helpers.
char LICENSE[] SEC("license") = "Dual BSD/GPL";

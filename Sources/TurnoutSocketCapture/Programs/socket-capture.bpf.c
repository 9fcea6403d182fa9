// The socket capture of `turnout init --backend bpf`: Istio's capture, done where the socket is
// made instead of on its packets, so that no NAT rule exists and conntrack never tracks a pod's
// connections. Compiled for the BPF target at build time (Plugins/SocketCaptureProgram) and
// embedded in turnout, which loads it with libbpf (CTurnoutBPF) and fills its maps from
// CaptureOptions (TurnoutRules' SocketCaptureCompiler). Map layouts: CTurnoutBPFMaps.h.
//
// Outbound, at connect(2) (cgroup/connect4, the pod's cgroup), first match wins, as
// CaptureCompiler orders the NAT rules:
//  1. an excluded destination port: left alone;
//  2. a socket bound to the passthrough source 127.0.0.6 (the proxy delivering inbound): alone;
//  3. the proxy (its uid or gid) calling one of the pod's own, non-loopback addresses: to the
//     inbound listener, so the app's server side goes through the proxy too;
//  4. anything else of the proxy: left alone (the loop guard);
//  5. a loopback or own address (NAT: "over lo"): left alone;
//  6. an always-captured port: to the outbound listener; 7. an excluded block: left alone;
//  8. a captured block: to the outbound listener.
// A captured connect(2) goes to 127.0.0.1:port instead, and the address asked for is kept with
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
// cannot), so the proxy needs no change. IPv4 only so far: `init` refuses IPv6 with this backend.
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "CTurnoutBPFMaps.h"

#define AF_INET_FAMILY 2
#define SOCK_STREAM_TYPE 1
#define SOL_IP_LEVEL 0
#define SO_ORIGINAL_DST_OPTNAME 80
#define TCP_STATE_CLOSE 7

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
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(max_entries, 4096);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct CTurnoutBPF_block);
    __type(value, __u8);
} local_addresses SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(max_entries, 4096);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct CTurnoutBPF_block);
    __type(value, __u8);
} excluded_blocks SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(max_entries, 4096);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct CTurnoutBPF_block);
    __type(value, __u8);
} captured_blocks SEC(".maps");

// Shared by every load (pinned, reused by the next init): the state of connections and
// listeners that must survive a re-run of init with other options.
struct {
    __uint(type, BPF_MAP_TYPE_SK_STORAGE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, int);
    __type(value, struct CTurnoutBPF_origin);
} origin_by_socket SEC(".maps");

// An LRU map only as a backstop: entries are deleted when the proxy's end of their connection
// closes, so it fills only with 65,536 captured connections open at once (about 4.5 MiB of
// kernel memory, preallocated); then the oldest go rather than new captures failing.
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, struct CTurnoutBPF_tuple);
    __type(value, struct CTurnoutBPF_origin);
} origins SEC(".maps");

// The inbound listener (one per SO_REUSEPORT group member would be the same: the kernel picks
// within the group after sk_assign), found when it calls listen(2).
struct {
    __uint(type, BPF_MAP_TYPE_SOCKHASH);
    __uint(max_entries, 16);
    __type(key, __u32);
    __type(value, __u64);
} listeners SEC(".maps");

struct {
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

static __always_inline __u8 port_verdict(void *ports, __u32 port) {
    __u8 *value = bpf_map_lookup_elem(ports, &port);
    return value ? *value : 0;
}

static __always_inline int inbound_steered(const struct CTurnoutBPF_config *cfg, __u32 port) {
    __u8 verdict = port_verdict(&inbound_ports, port);
    if (verdict == CTURNOUTBPF_INBOUND_DEFAULT) verdict = (__u8)cfg->inbound_default;
    return verdict == CTURNOUTBPF_INBOUND_STEERED;
}

static __always_inline int is_proxy(const struct CTurnoutBPF_config *cfg) {
    __u64 ids = bpf_get_current_uid_gid();
    __u32 uid = (__u32)ids, gid = (__u32)(ids >> 32);
    for (int i = 0; i < CTURNOUTBPF_MAX_OWNERS; i++) {
        if (i < cfg->uid_count && cfg->uids[i] == uid) return 1;
        if (i < cfg->gid_count && cfg->gids[i] == gid) return 1;
    }
    return 0;
}

// sock_ops' remote port is documented as network order in a 32-bit field, and kernels have
// placed it in either half of that field; take whichever half holds it.
static __always_inline __u32 remote_port(__u32 raw) {
    __u32 port = bpf_ntohl(raw);
    return port > 0xffff ? bpf_ntohs((__u16)raw) : port;
}

SEC("cgroup/connect4")
int turnout_connect4(struct bpf_sock_addr *ctx) {
    if (ctx->type != SOCK_STREAM_TYPE || ctx->protocol != IPPROTO_TCP) return 1;
    struct CTurnoutBPF_config *cfg = configuration();
    if (!cfg) return 1;
    __u32 address = ctx->user_ip4;
    __u32 port = bpf_ntohs((__u16)ctx->user_port);
    __u8 verdict = port_verdict(&outbound_ports, port);
    if (verdict == CTURNOUTBPF_PORT_EXCLUDED) return 1;
    struct bpf_sock *sk = ctx->sk;
    if (!sk) return 1;
    if (sk->src_ip4 == cfg->passthrough_ip) return 1;
    __u8 local = lookup_block(&local_addresses, address);
    __u16 to = cfg->proxy_port;
    if (is_proxy(cfg)) {
        if (local != CTURNOUTBPF_LOCAL_OWN) return 1;
        to = cfg->inbound_port;
    } else if (local) {
        return 1;
    } else if (verdict != CTURNOUTBPF_PORT_CAPTURED) {
        if (lookup_block(&excluded_blocks, address)) return 1;
        if (!lookup_block(&captured_blocks, address)) return 1;
    }
    struct CTurnoutBPF_origin *origin = bpf_sk_storage_get(&origin_by_socket, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
    if (!origin) {
        // Nowhere to keep the original destination: the proxy could not route it, so the
        // connection is refused rather than let past the proxy.
        count(CTURNOUTBPF_COUNTER_UNRECORDED);
        return 0;
    }
    origin->address = address;
    origin->port = port;
    ctx->user_ip4 = cfg->proxy_ip;
    ctx->user_port = bpf_htons(to);
    count(to == cfg->proxy_port ? CTURNOUTBPF_COUNTER_CAPTURED : CTURNOUTBPF_COUNTER_CAPTURED_OWN);
    return 1;
}

// An application that asks whom its socket is connected to hears what it asked for, as it
// would under NAT, not the proxy's listener.
SEC("cgroup/getpeername4")
int turnout_getpeername4(struct bpf_sock_addr *ctx) {
    struct bpf_sock *sk = ctx->sk;
    if (!sk) return 1;
    struct CTurnoutBPF_origin *origin = bpf_sk_storage_get(&origin_by_socket, sk, 0, 0);
    if (!origin) return 1;
    ctx->user_ip4 = origin->address;
    ctx->user_port = bpf_htons((__u16)origin->port);
    return 1;
}

SEC("sockops")
int turnout_sockops(struct bpf_sock_ops *ops) {
    if (ops->family != AF_INET_FAMILY) return 1;
    struct bpf_sock *sk = ops->sk;
    if (!sk) return 1;
    if (ops->op == BPF_SOCK_OPS_TCP_LISTEN_CB) {
        struct CTurnoutBPF_config *cfg = configuration();
        __u32 port = ops->local_port;
        if (cfg && port == cfg->inbound_port) bpf_sock_hash_update(ops, &listeners, &port, BPF_ANY);
        return 1;
    }
    if (ops->op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB) {
        // The application's socket: keep what it asked for by four-tuple, for the proxy.
        struct CTurnoutBPF_origin *origin = bpf_sk_storage_get(&origin_by_socket, sk, 0, 0);
        if (!origin) return 1;
        struct CTurnoutBPF_tuple tuple = { .client_address = ops->local_ip4, .proxy_address = ops->remote_ip4,
                                           .client_port = ops->local_port, .proxy_port = remote_port(ops->remote_port) };
        struct CTurnoutBPF_origin copy = *origin;
        if (bpf_map_update_elem(&origins, &tuple, &copy, BPF_ANY) == 0) count(CTURNOUTBPF_COUNTER_ORIGIN_RECORDED);
        return 1;
    }
    // The proxy's end of a captured connection: forgotten when it closes, not when the
    // application's end does, which may be before the proxy even accepted it (conntrack keeps its
    // entry that long too). The application's socket has reached ACTIVE_ESTABLISHED first: the
    // proxy's end is established only by the ACK that follows it.
    struct CTurnoutBPF_tuple tuple = { .client_address = ops->remote_ip4, .proxy_address = ops->local_ip4,
                                       .client_port = remote_port(ops->remote_port), .proxy_port = ops->local_port };
    if (ops->op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB) {
        if (bpf_map_lookup_elem(&origins, &tuple))
            bpf_sock_ops_cb_flags_set(ops, ops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
        return 1;
    }
    if (ops->op == BPF_SOCK_OPS_STATE_CB && ops->args[1] == TCP_STATE_CLOSE) {
        if (bpf_map_delete_elem(&origins, &tuple) == 0) count(CTURNOUTBPF_COUNTER_ORIGIN_FORGOTTEN);
    }
    return 1;
}

SEC("cgroup/getsockopt")
int turnout_getsockopt(struct bpf_sockopt *ctx) {
    if (ctx->level != SOL_IP_LEVEL || ctx->optname != SO_ORIGINAL_DST_OPTNAME) return 1;
    struct bpf_sock *sk = ctx->sk;
    if (!sk || sk->family != AF_INET_FAMILY) return 1;
    // The proxy's accepted socket: its remote end is the application, its local end the listener.
    struct CTurnoutBPF_tuple tuple = { .client_address = sk->dst_ip4, .proxy_address = sk->src_ip4,
                                       .client_port = bpf_ntohs((__u16)sk->dst_port), .proxy_port = sk->src_port };
    // Looked up before conntrack's answer is kept: if some other table turned conntrack on, it
    // knows this connection by the address connect(2) was rewritten to, the proxy's own.
    struct CTurnoutBPF_origin *recorded = bpf_map_lookup_elem(&origins, &tuple);
    struct CTurnoutBPF_origin answer;
    if (recorded) {
        answer = *recorded;
        count(CTURNOUTBPF_COUNTER_ANSWERED);
    } else {
        struct CTurnoutBPF_config *cfg = configuration();
        // Handed over by turnout_inbound: the socket's own address is where the client connected.
        // Never the proxy's own listeners, nor a loopback address (steering hands over
        // connections from other hosts only): a miss there is no original destination.
        if (!cfg || ctx->retval == 0 || sk->src_port == cfg->inbound_port || sk->src_port == cfg->proxy_port ||
            lookup_block(&local_addresses, sk->src_ip4) == CTURNOUTBPF_LOCAL_LOOPBACK ||
            !inbound_steered(cfg, sk->src_port)) return 1;
        answer.address = sk->src_ip4;
        answer.port = sk->src_port;
        count(CTURNOUTBPF_COUNTER_ANSWERED_INBOUND);
    }
    struct sockaddr_in *out = ctx->optval;
    if ((void *)(out + 1) > ctx->optval_end) return 1;
    out->sin_family = AF_INET_FAMILY;
    out->sin_port = bpf_htons((__u16)answer.port);
    out->sin_addr.s_addr = answer.address;
    ctx->optlen = sizeof(*out);
    // Two 4-byte stores: the verifier refuses the 8-byte one clang would merge them into.
    asm volatile("" ::: "memory");
    ctx->retval = 0;
    return 1;
}

SEC("sk_lookup")
int turnout_inbound(struct bpf_sk_lookup *ctx) {
    if (ctx->family != AF_INET_FAMILY || ctx->protocol != IPPROTO_TCP) return SK_PASS;
    struct CTurnoutBPF_config *cfg = configuration();
    if (!cfg) return SK_PASS;
    __u32 port = ctx->local_port;
    if (port == cfg->inbound_port || port == cfg->proxy_port) return SK_PASS;
    if (!inbound_steered(cfg, port)) return SK_PASS;
    if (lookup_block(&local_addresses, ctx->remote_ip4)) return SK_PASS;
    __u32 key = cfg->inbound_port;
    struct bpf_sock *listener = bpf_map_lookup_elem(&listeners, &key);
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

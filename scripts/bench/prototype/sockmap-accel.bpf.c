// A measurement prototype, not part of turnout: socket-level acceleration of local TCP
// connections with an sk_msg verdict, to learn what it would buy (scripts/bench/sockmap).
//
// How it works. A sock_ops program, attached to one cgroup (v2), puts every IPv4 TCP socket of
// that cgroup into the `socks` hash the moment it is established, keyed by its own four-tuple.
// An sk_msg program runs on every send(2) from those sockets: if the peer socket (the same
// four-tuple, reversed) is in the hash too, the message is queued straight onto the peer's
// receive queue (`bpf_msg_redirect_hash` with BPF_F_INGRESS) and never becomes a packet: no
// loopback device, netfilter, conntrack or TCP on the way. Otherwise it goes the usual way.
// Connection setup and teardown (SYN, FIN) still go through TCP, so SO_ORIGINAL_DST and the NAT
// redirect keep working.
//
// The NAT problem. An application that connects to a service VIP has the VIP as its socket's
// remote address; the proxy's accepted socket has the proxy's own address and port as its local
// one, so the reversed four-tuples do not meet. `redir` (filled by the script, one entry: VIP:80
// to the address the NAT rule currently sends it to) translates the application's side.
// A product version would need the same mapping for every captured destination, or would pair the
// two sockets from the proxy after accept (it knows both ends then), and would have to make sure
// no byte of a connection goes by TCP before its first redirected one: the receive side reads
// the redirected queue before TCP's, so a mix would reorder the stream.
//
// What it does not do. splice(2) reads TCP's receive queue only, so a relay that splices would
// never see redirected bytes: turnout with 100-byte responses does not splice (it copies until a
// read fills its buffer), bulk streams would stall. Measured with keepalive and Connection: close
// requests only.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// Addresses in network order, ports in host order: both programs build keys the same way.
struct sockmap_key { __u32 local_ip, remote_ip, local_port, remote_port; };
struct sockmap_addr { __u32 ip, port; };

struct {
    __uint(type, BPF_MAP_TYPE_SOCKHASH);
    __uint(max_entries, 65536);
    __type(key, struct sockmap_key);
    __type(value, __u32);
} socks SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16);
    __type(key, struct sockmap_addr);
    __type(value, struct sockmap_addr);
} redir SEC(".maps");

// 0: sockets added, 1: messages redirected, 2: messages sent the usual way (no peer).
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 3);
    __type(key, __u32);
    __type(value, __u64);
} stats SEC(".maps");

// The remote port is documented as network order in a 32-bit field, and kernels have placed it
// in either half of that field; take whichever half holds it.
static __always_inline __u32 remote_port(__u32 raw) {
    __u32 port = bpf_ntohl(raw);
    return port > 0xffff ? bpf_ntohs((__u16)raw) : port;
}

static __always_inline void count(__u32 index) {
    __u64 *value = bpf_map_lookup_elem(&stats, &index);
    if (value) __sync_fetch_and_add(value, 1);
}

static __always_inline void translate(__u32 *ip, __u32 *port) {
    struct sockmap_addr address = { .ip = *ip, .port = *port };
    struct sockmap_addr *target = bpf_map_lookup_elem(&redir, &address);
    if (target) { *ip = target->ip; *port = target->port; }
}

SEC("sockops")
int sockmap_established(struct bpf_sock_ops *ops) {
    if (ops->family != 2 /* AF_INET */) return 1;
    int active = ops->op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB;
    if (!active && ops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB) return 1;
    struct sockmap_key key = { .local_ip = ops->local_ip4, .remote_ip = ops->remote_ip4,
                               .local_port = ops->local_port, .remote_port = remote_port(ops->remote_port) };
    if (active) translate(&key.remote_ip, &key.remote_port);
    if (bpf_sock_hash_update(ops, &socks, &key, BPF_NOEXIST) == 0) count(0);
    return 1;
}

SEC("sk_msg")
int sockmap_send(struct sk_msg_md *msg) {
    __u32 ip = msg->remote_ip4, port = remote_port(msg->remote_port);
    translate(&ip, &port);
    struct sockmap_key peer = { .local_ip = ip, .remote_ip = msg->local_ip4,
                                .local_port = port, .remote_port = msg->local_port };
    // A failed lookup sets nothing and answers SK_DROP; passing then sends the message by TCP.
    int redirected = bpf_msg_redirect_hash(msg, &socks, &peer, BPF_F_INGRESS) == SK_PASS;
    count(redirected ? 1 : 2);
    return SK_PASS;
}

// The kernel checks this declaration before it lets a program use GPL-only helpers.
char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The layout of the socket capture's maps (`turnout init --backend bpf`), shared by the BPF
 * program (Sources/TurnoutSocketCapture/Programs/socket-capture.bpf.c, compiled for the BPF
 * target) and by Swift, which fills them through CTurnoutBPF. One header for both so a field can
 * never mean one thing in the kernel and another in turnout.
 *
 * Conventions: addresses in network order (as the kernel's contexts hold them: an IPv4 address
 * in one 32-bit word, an IPv6 one in four), ports in host order. */
#ifndef C_TURNOUT_BPF_MAPS_H
#define C_TURNOUT_BPF_MAPS_H

#include <linux/types.h>

/* How many proxy uids and gids (together) `proxy_ids` holds (the loop guard). */
#define CTURNOUTBPF_MAX_OWNERS 16

/* `proxy_ids` keys: a uid or a gid of the proxy, never captured. One hash lookup each, where a
 * loop over a list made the verifier walk every comparison (30 ms of init). */
#define CTURNOUTBPF_OWNER_UID 0ULL
#define CTURNOUTBPF_OWNER_GID 1ULL
#define CTURNOUTBPF_OWNER_KEY(kind, id) (((__u64)(kind) << 32) | (__u32)(id))

/* `config`, its one element: what CaptureOptions says that is not a list. */
struct CTurnoutBPF_config {
    __u32 proxy_ip;          /* where captured connections are sent: 127.0.0.1 */
    __u32 passthrough_ip;    /* 127.0.0.6: the proxy's inbound delivery source, never captured */
    __u32 proxy_ip6[4];      /* ::1 */
    __u32 passthrough_ip6[4]; /* ::6 */
    __u32 ipv6;              /* 1: IPv6 is captured too; 0: connect6 and IPv6 lookups are left alone */
    __u16 proxy_port;        /* outbound listener (15001) */
    __u16 inbound_port;      /* inbound listener (15006) */
    __u32 inbound_default;   /* CTURNOUTBPF_INBOUND_*: what a port without an entry in `inbound_ports` gets */
};

/* `outbound_ports` values: what a destination port decides before any address is looked at. */
#define CTURNOUTBPF_PORT_DEFAULT 0
#define CTURNOUTBPF_PORT_EXCLUDED 1   /* --exclude-outbound-ports */
#define CTURNOUTBPF_PORT_CAPTURED 2   /* --capture-outbound-ports */

/* `inbound_ports` values, and `inbound_default`. Only the ports that differ from the default are
 * written (at most half of them), since filling 65,536 entries costs init ~20 ms. */
#define CTURNOUTBPF_INBOUND_DEFAULT 0 /* an entry never written: `inbound_default` decides */
#define CTURNOUTBPF_INBOUND_STEERED 1
#define CTURNOUTBPF_INBOUND_LEFT 2

/* `local_addresses` values: where a connection to this address goes without any capture. */
#define CTURNOUTBPF_LOCAL_LOOPBACK 1  /* 127.0.0.0/8 */
#define CTURNOUTBPF_LOCAL_OWN 2       /* one of the namespace's own, non-loopback addresses */

/* The key of the LPM tries `local_addresses`, `excluded_blocks` and `captured_blocks` (IPv4)
 * and of their `…6` twins (IPv6). */
struct CTurnoutBPF_block {
    __u32 prefix_length;
    __u32 address;
};
struct CTurnoutBPF_block6 {
    __u32 prefix_length;
    __u32 address[4];
};

#define CTURNOUTBPF_FAMILY_IPV4 4
#define CTURNOUTBPF_FAMILY_IPV6 6

/* What the application asked connect(2) for, kept with its socket and by four-tuple. An IPv4
 * address is address[0] (also for an IPv6 socket connecting to a v4-mapped address: such a
 * connection is IPv4 on the wire, and the proxy's IPv4 listener asks SOL_IP for it). */
struct CTurnoutBPF_origin {
    __u32 family;            /* CTURNOUTBPF_FAMILY_* */
    __u32 port;
    __u32 address[4];
};

/* `origins` key: a captured connection as the proxy's accepted socket sees it. */
struct CTurnoutBPF_tuple {
    __u32 family;
    __u32 client_address[4];
    __u32 proxy_address[4];
    __u32 client_port;
    __u32 proxy_port;
};

/* `counters` indices. */
enum {
    CTURNOUTBPF_COUNTER_CAPTURED = 0,        /* connect(2) sent to the outbound listener */
    CTURNOUTBPF_COUNTER_CAPTURED_OWN,        /* the proxy calling the pod's own address: to inbound */
    CTURNOUTBPF_COUNTER_ORIGIN_RECORDED,     /* established, its four-tuple recorded */
    CTURNOUTBPF_COUNTER_ORIGIN_FORGOTTEN,    /* closed, its four-tuple deleted */
    CTURNOUTBPF_COUNTER_ANSWERED,            /* SO_ORIGINAL_DST answered from a recorded origin */
    CTURNOUTBPF_COUNTER_ANSWERED_INBOUND,    /* SO_ORIGINAL_DST answered for a steered inbound socket */
    CTURNOUTBPF_COUNTER_STEERED,             /* inbound connection handed to the inbound listener */
    CTURNOUTBPF_COUNTER_REFUSED,             /* inbound connection refused: no inbound listener */
    CTURNOUTBPF_COUNTER_UNRECORDED,          /* capture lost: no room for the origin */
    CTURNOUTBPF_COUNTER_COUNT
};

#endif

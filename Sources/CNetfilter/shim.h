/* The libnftnl and libmnl headers TurnoutNetlink uses, in an order that compiles (rtnetlink for
 * the one interface address `turnout init` adds).
 *
 * glibc's <sys/socket.h> and <netinet/in.h> come first: <linux/netfilter.h> pulls <linux/in.h>,
 * and only when glibc's headers were seen first does linux/libc-compat.h skip its duplicate
 * in_addr / IPPROTO_* definitions, which otherwise clash with SwiftGlibc's. */
#ifndef TURNOUT_CNETFILTER_SHIM_H
#define TURNOUT_CNETFILTER_SHIM_H
#include <stdint.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <libmnl/libmnl.h>
#include <libnftnl/common.h>
#include <libnftnl/batch.h>
#include <libnftnl/gen.h>
#include <libnftnl/table.h>
#include <libnftnl/chain.h>
#include <libnftnl/rule.h>
#include <libnftnl/expr.h>
#include <libnftnl/set.h>
#include <libnftnl/udata.h>
#endif

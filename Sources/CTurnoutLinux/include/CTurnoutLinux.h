/* Linux calls that Swift's Glibc module does not export.
 *
 * Glibc declares these only under _GNU_SOURCE (or not at all), and the Glibc module Swift imports
 * is not built with it, so each gets a prefixed wrapper here, compiled with _GNU_SOURCE (as
 * swift-nio's CNIOLinux does). Every symbol is prefixed CTurnoutLinux_ so it can never clash with
 * the C library's. */
#ifndef C_TURNOUT_LINUX_H
#define C_TURNOUT_LINUX_H

#include <sys/types.h>

/* The value of CLONE_NEWNET, for CTurnoutLinux_setns. */
extern const int CTurnoutLinux_CLONE_NEWNET;

/* setns(2): moves the calling thread into the namespace `fd` refers to. Used to open netlink
 * sockets inside a network namespace from a thread of our own (a socket keeps its namespace). */
int CTurnoutLinux_setns(int fd, int nstype);

/* pidfd_open(2) (Linux 5.3): a descriptor that becomes readable when the child exits, so a
 * tool's exit can be awaited with poll(2) and a time limit, without SIGCHLD handlers or a run
 * loop. glibc 2.36 declares it only under _GNU_SOURCE. Returns -1 with errno (ENOSYS on older
 * kernels; the caller then falls back to polling waitpid). */
int CTurnoutLinux_pidfd_open(pid_t pid);

/* accept4(2): accept with SOCK_NONBLOCK | SOCK_CLOEXEC set atomically, so an accepted socket is
 * never briefly blocking or inheritable by a tool started at the same moment. */
struct sockaddr;
int CTurnoutLinux_accept4(int fd, struct sockaddr *address, unsigned int *length, int flags);

/* setfsuid(2) / setfsgid(2): change the calling thread's filesystem ids, which a new socket
 * takes as its owner (what `meta skuid` / `-m owner --uid-owner` match). Per thread, unlike
 * setuid, so a probe connection can be made "as" another user without touching the process.
 * Both return the previous id and never fail visibly: read back with the same call to check. */
int CTurnoutLinux_setfsuid(uid_t uid);
int CTurnoutLinux_setfsgid(gid_t gid);

/* SO_ORIGINAL_DST (netfilter's getsockopt 80, on SOL_IP) and IP6T_SO_ORIGINAL_DST (on
 * SOL_IPV6): where a redirected connection was going before NAT rewrote it. The values come from
 * <linux/netfilter_ipv4.h> and <linux/netfilter_ipv6/ip6_tables.h>, which clash with glibc's
 * headers when imported into Swift, so they are exported as constants. */
extern const int CTurnoutLinux_SO_ORIGINAL_DST;
extern const int CTurnoutLinux_IP6T_SO_ORIGINAL_DST;

#endif

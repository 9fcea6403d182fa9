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

/* epoll(7), for the proxy's workers: Swift's Glibc module exports none of it, and glibc's
 * `struct epoll_event` is packed on x86-64, which Swift cannot import faithfully. The shim
 * passes the event mask and a 64-bit token as plain arguments and unpacks waits into
 * CTurnoutLinux_epoll_event, so Swift never touches the packed layout. */
typedef struct {
    unsigned int events;
    unsigned long long token;
} CTurnoutLinux_epoll_event;

extern const unsigned int CTurnoutLinux_EPOLLIN;
extern const unsigned int CTurnoutLinux_EPOLLOUT;
extern const unsigned int CTurnoutLinux_EPOLLRDHUP;
extern const unsigned int CTurnoutLinux_EPOLLERR;
extern const unsigned int CTurnoutLinux_EPOLLHUP;
extern const unsigned int CTurnoutLinux_EPOLLET;

/* epoll_create1(EPOLL_CLOEXEC). */
int CTurnoutLinux_epoll_create(void);
/* epoll_ctl(2) with op EPOLL_CTL_ADD (0), EPOLL_CTL_MOD (1) or EPOLL_CTL_DEL (2). */
int CTurnoutLinux_epoll_ctl(int epfd, int op, int fd, unsigned int events, unsigned long long token);
/* epoll_wait(2), at most `capacity` (<= 1024) events copied into `events`. */
int CTurnoutLinux_epoll_wait(int epfd, CTurnoutLinux_epoll_event *events, int capacity, int timeout);

/* eventfd(2) with EFD_NONBLOCK | EFD_CLOEXEC: how another thread wakes a worker's epoll_wait
 * (a reload, a stop). Not in Swift's Glibc module. */
int CTurnoutLinux_eventfd(void);

/* splice(2) between a socket and a pipe with SPLICE_F_MOVE | SPLICE_F_NONBLOCK and no offsets:
 * the proxy moves bytes socket → pipe → socket without copying them through user space.
 * Declared by glibc only under _GNU_SOURCE. */
long CTurnoutLinux_splice(int from, int to, unsigned long length);

/* pipe2(2) with O_NONBLOCK | O_CLOEXEC, and fcntl(F_SETPIPE_SZ) / F_GETPIPE_SZ (both
 * _GNU_SOURCE-only): the relay's pipes, sized once when made. */
int CTurnoutLinux_pipe(int fds[2]);
int CTurnoutLinux_set_pipe_size(int fd, int size);
int CTurnoutLinux_get_pipe_size(int fd);

/* IP_BIND_ADDRESS_NO_PORT (Linux 4.2, <linux/in.h>, clashes with glibc's <netinet/in.h>):
 * an upstream socket bound to a source address (127.0.0.6) gets its port only at connect, so
 * the 4-tuple, not the source port alone, must be unique. */
extern const int CTurnoutLinux_IP_BIND_ADDRESS_NO_PORT;

/* statfs(2)'s f_type for `path` (<sys/vfs.h>, not in Swift's Glibc module): tells a BPF
 * filesystem or a cgroup v2 directory from an ordinary one. Returns 0 or -1 with errno. */
int CTurnoutLinux_filesystem_type(const char *path, long *type);

/* membarrier(2) with MEMBARRIER_CMD_GLOBAL, which the kernel implements with synchronize_rcu():
 * it returns once every CPU has left the RCU read-side sections it was in at the call, and
 * netfilter evaluates a packet's hooks inside one. So after it, no packet still walks the rules
 * of a generation committed before it. glibc has no wrapper and Swift cannot call the variadic
 * syscall(2). Returns 0, or -1 with errno (ENOSYS: no CONFIG_MEMBARRIER; EINVAL: nohz_full). */
int CTurnoutLinux_membarrier_global(void);

#endif

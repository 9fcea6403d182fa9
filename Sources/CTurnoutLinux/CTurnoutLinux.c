#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/fsuid.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <linux/membarrier.h>
#include <linux/netfilter_ipv4.h>
#include "CTurnoutLinux.h"

/* <linux/netfilter_ipv6/ip6_tables.h> drags in the whole x_tables UAPI; the value is fixed ABI. */
#define C_TURNOUT_LINUX_IP6T_SO_ORIGINAL_DST 80

const int CTurnoutLinux_CLONE_NEWNET = CLONE_NEWNET;
const int CTurnoutLinux_SO_ORIGINAL_DST = SO_ORIGINAL_DST;
const int CTurnoutLinux_IP6T_SO_ORIGINAL_DST = C_TURNOUT_LINUX_IP6T_SO_ORIGINAL_DST;

int CTurnoutLinux_setns(int fd, int nstype) {
    return setns(fd, nstype);
}

int CTurnoutLinux_pidfd_open(pid_t pid) {
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    errno = ENOSYS;
    return -1;
#endif
}

int CTurnoutLinux_setfsuid(uid_t uid) {
    return setfsuid(uid);
}

int CTurnoutLinux_setfsgid(gid_t gid) {
    return setfsgid(gid);
}

int CTurnoutLinux_accept4(int fd, struct sockaddr *address, unsigned int *length, int flags) {
    return accept4(fd, address, (socklen_t *)length, flags);
}

const unsigned int CTurnoutLinux_EPOLLIN = EPOLLIN;
const unsigned int CTurnoutLinux_EPOLLOUT = EPOLLOUT;
const unsigned int CTurnoutLinux_EPOLLRDHUP = EPOLLRDHUP;
const unsigned int CTurnoutLinux_EPOLLERR = EPOLLERR;
const unsigned int CTurnoutLinux_EPOLLHUP = EPOLLHUP;
const unsigned int CTurnoutLinux_EPOLLET = EPOLLET;

int CTurnoutLinux_epoll_create(void) {
    return epoll_create1(EPOLL_CLOEXEC);
}

int CTurnoutLinux_epoll_ctl(int epfd, int op, int fd, unsigned int events, unsigned long long token) {
    struct epoll_event event = { .events = events, .data = { .u64 = token } };
    return epoll_ctl(epfd, op, fd, &event);
}

int CTurnoutLinux_epoll_wait(int epfd, CTurnoutLinux_epoll_event *events, int capacity, int timeout) {
    struct epoll_event packed[1024];
    if (capacity > 1024) capacity = 1024;
    int count = epoll_wait(epfd, packed, capacity, timeout);
    for (int i = 0; i < count; i++) {
        events[i].events = packed[i].events;
        events[i].token = packed[i].data.u64;
    }
    return count;
}

int CTurnoutLinux_eventfd(void) {
    return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

long CTurnoutLinux_splice(int from, int to, unsigned long length) {
    return (long)splice(from, NULL, to, NULL, length, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
}

int CTurnoutLinux_pipe(int fds[2]) {
    return pipe2(fds, O_NONBLOCK | O_CLOEXEC);
}

int CTurnoutLinux_set_pipe_size(int fd, int size) {
    return fcntl(fd, F_SETPIPE_SZ, size);
}

int CTurnoutLinux_get_pipe_size(int fd) {
    return fcntl(fd, F_GETPIPE_SZ);
}

/* The value from <linux/in.h>; fixed ABI. */
const int CTurnoutLinux_IP_BIND_ADDRESS_NO_PORT = 24;

int CTurnoutLinux_filesystem_type(const char *path, long *type) {
    struct statfs info;
    if (statfs(path, &info) != 0) return -1;
    *type = (long)info.f_type;
    return 0;
}

int CTurnoutLinux_membarrier_global(void) {
#ifdef SYS_membarrier
    return (int)syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0);
#else
    errno = ENOSYS;
    return -1;
#endif
}

#include <sched.h>
#include <sys/fsuid.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
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

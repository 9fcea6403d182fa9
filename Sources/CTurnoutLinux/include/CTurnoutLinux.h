/* Linux calls that Swift's Glibc module does not export.
 *
 * Glibc declares these only under _GNU_SOURCE, which the Glibc module Swift imports is not built
 * with, so each gets a prefixed wrapper here, compiled with _GNU_SOURCE (as swift-nio's CNIOLinux
 * does). Every symbol is prefixed CTurnoutLinux_ so it can never clash with the C library's. */
#ifndef C_TURNOUT_LINUX_H
#define C_TURNOUT_LINUX_H

/* The value of CLONE_NEWNET, for CTurnoutLinux_setns. */
extern const int CTurnoutLinux_CLONE_NEWNET;

/* setns(2): moves the calling thread into the namespace `fd` refers to. Used to open netlink
 * sockets inside a network namespace from a thread of our own (a socket keeps its namespace). */
int CTurnoutLinux_setns(int fd, int nstype);

#endif

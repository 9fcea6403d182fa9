/* io_uring (Debian's liburing 2.3 on Linux 6.1 or later) for the proxy's completion workers.
 *
 * Why a shim: liburing's API is inline functions and macros over the ring's shared memory
 * (io_uring_for_each_cqe, the buffer-ring helpers), which Swift cannot all call, and a worker
 * needs only a few fixed shapes of request. The shim owns one ring with one ring of provided
 * receive buffers, queues those shapes, and hands completions back as plain structs, so Swift
 * never touches the ring's memory or its barriers. Every symbol is prefixed CTurnoutUring_.
 *
 * Threads: a ring is set up with IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, so
 * only one thread may submit and reap; completions are worked out only when that thread waits
 * (no interrupt of the worker for each arriving segment). It is made disabled
 * (IORING_SETUP_R_DISABLED), so one thread can make it and report failures, and the thread
 * that calls CTurnoutUring_enable becomes its only submitter.
 *
 * Errors: functions that can fail return a negative errno (liburing's convention) and set
 * nothing else. */
#ifndef C_TURNOUT_URING_H
#define C_TURNOUT_URING_H

#include <stdint.h>

/* Declared, not included: <sys/socket.h> pulled in here would make this module the owner of
 * the socket constants (SOCK_STREAM, ...) for Swift files that also import Glibc. */
struct sockaddr;

typedef struct CTurnoutUring_ring CTurnoutUring_ring;

/* One completion: the token the request was queued with, its result (bytes, a descriptor, 0, or
 * a negative errno), whether more completions of the same multishot request follow, and the
 * provided buffer that holds the bytes of a receive (buffer >= 0) or -1. */
typedef struct {
    uint64_t token;
    int32_t result;
    int32_t buffer;
    int32_t more;
} CTurnoutUring_completion;

/* Makes a ring of `entries` submission slots (a power of two) and `buffers` receive buffers of
 * `buffer_size` bytes each (`buffers` a power of two, at most 32768), registered as buffer group
 * 0. Returns NULL and sets *error to the negative errno: -ENOSYS (no io_uring), -EPERM (a
 * seccomp profile or kernel.io_uring_disabled refuses it), -EINVAL (a kernel older than 6.1: no
 * DEFER_TASKRUN), -ENOMEM. */
CTurnoutUring_ring *CTurnoutUring_create(unsigned entries, unsigned buffers, unsigned buffer_size, int *error);
void CTurnoutUring_destroy(CTurnoutUring_ring *ring);
/* Enables the ring for the calling thread, which becomes its only submitter (every other call
 * but destroy must then come from it). Returns 0 or a negative errno. */
int CTurnoutUring_enable(CTurnoutUring_ring *ring);

/* The bytes of provided buffer `id`, valid until it is given back. */
void *CTurnoutUring_buffer(CTurnoutUring_ring *ring, int id);
/* Gives buffer `id` back to the kernel for later receives. */
void CTurnoutUring_give_back(CTurnoutUring_ring *ring, int id);

/* Queueing: each returns 0, or -EBUSY when the submission queue is full even after submitting
 * what was queued (the caller then waits for completions first). Nothing is sent to the kernel
 * until CTurnoutUring_wait (or a full queue) submits it. Token UINT64_MAX is the shim's own
 * (its completions are never reported); callers use any other. */

/* accept4 with SOCK_NONBLOCK | SOCK_CLOEXEC, multishot (5.19): one completion per connection
 * (result = the new descriptor) until one comes without `more` (an error such as -EMFILE ends it). */
int CTurnoutUring_accept(CTurnoutUring_ring *ring, int fd, uint64_t token);
/* connect(2) of `fd` to `address` (copied into the slot's own storage: the caller's may go
 * away on return; -EINVAL when longer than a sockaddr_storage), ended with -ECANCELED after `timeout_ns` (a linked
 * timeout, whose own completion is not reported). */
int CTurnoutUring_connect(CTurnoutUring_ring *ring, int fd, const struct sockaddr *address, unsigned length,
                          uint64_t timeout_ns, uint64_t token);
/* recv(2), multishot, into provided buffers: one completion per arrival with the buffer that
 * holds it, result 0 at the end of stream. A completion without `more` ends it (end of stream,
 * an error, or -ENOBUFS when every buffer was in use: queue it again once some are given back). */
int CTurnoutUring_receive(CTurnoutUring_ring *ring, int fd, uint64_t token);
/* send(2) with MSG_NOSIGNAL and MSG_DONTWAIT (| MSG_MORE when `more`): never waits for room; a
 * full socket completes it with -EAGAIN, a nearly full one with the bytes it took. `bytes` must
 * stay valid until its completion. */
int CTurnoutUring_send(CTurnoutUring_ring *ring, int fd, const void *bytes, unsigned length, int more, uint64_t token);
/* Readiness of `fd` (POLLIN / POLLOUT / POLLRDHUP bits of `events`), one-shot: for the bulk
 * path, which splices with plain calls once the ring says the socket is ready. */
int CTurnoutUring_poll(CTurnoutUring_ring *ring, int fd, unsigned events, uint64_t token);
/* The same, multishot (IORING_POLL_ADD_MULTI): a completion now if `fd` is ready, then one per
 * wakeup of its wait queue that concerns `events`, each with IORING_CQE_F_MORE, until cancelled.
 * Why it exists: io_uring adds POLLRDHUP (and POLLERR, POLLHUP) to every poll, so a one-shot poll
 * for POLLOUT on a socket whose peer shut its writes down completes at once, full or not; only
 * a poll that stays armed waits for the wakeup that says there is room. */
int CTurnoutUring_poll_multishot(CTurnoutUring_ring *ring, int fd, unsigned events, uint64_t token);
/* Cancels every request still queued or armed on `fd` (each completes with -ECANCELED or what it
 * had); its own completion is not reported. A descriptor's socket is released only once no
 * request holds it, so this comes before close(2). */
int CTurnoutUring_cancel(CTurnoutUring_ring *ring, int fd);
/* Cancels the one request queued with `token` (a receive whose direction moves to splicing). */
int CTurnoutUring_cancel_request(CTurnoutUring_ring *ring, uint64_t token);
/* A wakeup after `timeout_ns` (one-shot, result -ETIME), for a worker's timers. */
int CTurnoutUring_timeout(CTurnoutUring_ring *ring, uint64_t timeout_ns, uint64_t token);

/* Submits what was queued without waiting: a cancel must reach the kernel before its
 * descriptor is closed (the number could be reused at once). Returns 0 or a negative errno. */
int CTurnoutUring_submit(CTurnoutUring_ring *ring);

/* Submits what was queued and waits until at least one completion is ready or `timeout_ns`
 * passed (0: do not wait; UINT64_MAX: no timeout, and no timer armed for the wait), then copies up to `capacity` completions into `out` and returns
 * how many (0 on timeout or a signal), or a negative errno. */
int CTurnoutUring_wait(CTurnoutUring_ring *ring, CTurnoutUring_completion *out, int capacity, uint64_t timeout_ns);

/* The POLL* event bits for CTurnoutUring_poll, which Swift's Glibc module does not all export. */
extern const unsigned CTurnoutUring_POLLIN;
extern const unsigned CTurnoutUring_POLLOUT;
extern const unsigned CTurnoutUring_POLLRDHUP;
extern const unsigned CTurnoutUring_POLLERR;
extern const unsigned CTurnoutUring_POLLHUP;

#endif

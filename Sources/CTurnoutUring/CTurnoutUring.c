#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <liburing.h>
#include "CTurnoutUring.h"

/* Completions of these tokens are the shim's own (linked timeouts, cancels) and never reported. */
#define C_TURNOUT_URING_INTERNAL UINT64_MAX

struct CTurnoutUring_ring {
    struct io_uring ring;
    struct io_uring_buf_ring *buffer_ring;
    size_t buffer_ring_bytes;
    unsigned char *buffers;
    size_t buffers_bytes;
    unsigned buffer_count;
    unsigned buffer_size;
    /* The timespec of each submission slot's timeout: the kernel reads it when the slot is
     * submitted, and a slot is not reused before that. */
    struct __kernel_timespec *timeouts;
    /* The address of each submission slot's connect, copied there so the caller's may go away at
     * once: the kernel reads it when the slot is submitted. */
    struct sockaddr_storage *addresses;
};

static struct __kernel_timespec *timeout_for(CTurnoutUring_ring *ring, struct io_uring_sqe *sqe, uint64_t nanoseconds) {
    struct __kernel_timespec *timeout = &ring->timeouts[sqe - ring->ring.sq.sqes];
    timeout->tv_sec = (long long)(nanoseconds / 1000000000u);
    timeout->tv_nsec = (long long)(nanoseconds % 1000000000u);
    return timeout;
}

const unsigned CTurnoutUring_POLLIN = POLLIN;
const unsigned CTurnoutUring_POLLOUT = POLLOUT;
const unsigned CTurnoutUring_POLLRDHUP = POLLRDHUP;
const unsigned CTurnoutUring_POLLERR = POLLERR;
const unsigned CTurnoutUring_POLLHUP = POLLHUP;

CTurnoutUring_ring *CTurnoutUring_create(unsigned entries, unsigned buffers, unsigned buffer_size, int *error) {
    if (buffers == 0 || buffers > 32768 || (buffers & (buffers - 1)) != 0 || buffer_size == 0) {
        *error = -EINVAL;
        return NULL;
    }
    CTurnoutUring_ring *ring = calloc(1, sizeof *ring);
    if (!ring) {
        *error = -ENOMEM;
        return NULL;
    }
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
    /* A completion queue well above the submission queue: multishot requests post many
     * completions for one submission, and an overflowing queue costs the kernel a slow path. */
    params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE | IORING_SETUP_R_DISABLED;
    params.cq_entries = entries * 8;
    int result = io_uring_queue_init_params(entries, &ring->ring, &params);
    if (result < 0) {
        free(ring);
        *error = result;
        return NULL;
    }
    ring->timeouts = calloc(ring->ring.sq.ring_entries, sizeof *ring->timeouts);
    ring->addresses = calloc(ring->ring.sq.ring_entries, sizeof *ring->addresses);
    if (!ring->timeouts || !ring->addresses) {
        free(ring->addresses);
        io_uring_queue_exit(&ring->ring);
        free(ring);
        *error = -ENOMEM;
        return NULL;
    }
    ring->buffer_count = buffers;
    ring->buffer_size = buffer_size;
    /* The buffer ring must be page-aligned; mmap gives that and its pages are not touched
     * until used. */
    ring->buffer_ring_bytes = (size_t)buffers * sizeof(struct io_uring_buf);
    ring->buffers_bytes = (size_t)buffers * buffer_size;
    void *ring_memory = mmap(NULL, ring->buffer_ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    void *buffer_memory = mmap(NULL, ring->buffers_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ring_memory == MAP_FAILED || buffer_memory == MAP_FAILED) {
        result = -errno;
        if (ring_memory != MAP_FAILED) munmap(ring_memory, ring->buffer_ring_bytes);
        if (buffer_memory != MAP_FAILED) munmap(buffer_memory, ring->buffers_bytes);
        io_uring_queue_exit(&ring->ring);
        free(ring->timeouts);
        free(ring->addresses);
        free(ring);
        *error = result;
        return NULL;
    }
    ring->buffer_ring = ring_memory;
    ring->buffers = buffer_memory;
    io_uring_buf_ring_init(ring->buffer_ring);
    struct io_uring_buf_reg registration;
    memset(&registration, 0, sizeof registration);
    registration.ring_addr = (unsigned long)ring->buffer_ring;
    registration.ring_entries = buffers;
    registration.bgid = 0;
    result = io_uring_register_buf_ring(&ring->ring, &registration, 0);
    if (result < 0) {
        CTurnoutUring_destroy(ring);
        *error = result;
        return NULL;
    }
    for (unsigned id = 0; id < buffers; id++) {
        io_uring_buf_ring_add(ring->buffer_ring, ring->buffers + (size_t)id * buffer_size, buffer_size, (unsigned short)id,
                              io_uring_buf_ring_mask(buffers), (int)id);
    }
    io_uring_buf_ring_advance(ring->buffer_ring, (int)buffers);
    return ring;
}

void CTurnoutUring_destroy(CTurnoutUring_ring *ring) {
    if (!ring) return;
    /* Exiting the ring cancels whatever is still armed and drops its references. */
    io_uring_queue_exit(&ring->ring);
    munmap(ring->buffer_ring, ring->buffer_ring_bytes);
    munmap(ring->buffers, ring->buffers_bytes);
    free(ring->timeouts);
    free(ring->addresses);
    free(ring);
}

int CTurnoutUring_enable(CTurnoutUring_ring *ring) {
    /* liburing 2.3 declares io_uring_enable_rings but its shared library does not export it
     * (missing from its symbol map), so the register call is made directly. */
    long result = syscall(__NR_io_uring_register, ring->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
    return result < 0 ? -errno : 0;
}

void *CTurnoutUring_buffer(CTurnoutUring_ring *ring, int id) {
    return ring->buffers + (size_t)id * ring->buffer_size;
}

void CTurnoutUring_give_back(CTurnoutUring_ring *ring, int id) {
    io_uring_buf_ring_add(ring->buffer_ring, CTurnoutUring_buffer(ring, id), ring->buffer_size, (unsigned short)id,
                          io_uring_buf_ring_mask(ring->buffer_count), 0);
    io_uring_buf_ring_advance(ring->buffer_ring, 1);
}

/* A free submission slot, submitting what is queued when there is none; NULL when the kernel
 * took nothing either (the caller reports -EBUSY). */
static struct io_uring_sqe *slot(CTurnoutUring_ring *ring) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring->ring);
    if (sqe) return sqe;
    io_uring_submit(&ring->ring);
    return io_uring_get_sqe(&ring->ring);
}

/* Two adjacent slots (a request and its linked timeout), or -EBUSY without taking any. */
static int two_slots(CTurnoutUring_ring *ring) {
    if (io_uring_sq_space_left(&ring->ring) >= 2) return 0;
    io_uring_submit(&ring->ring);
    return io_uring_sq_space_left(&ring->ring) >= 2 ? 0 : -EBUSY;
}

int CTurnoutUring_accept(CTurnoutUring_ring *ring, int fd, uint64_t token) {
    struct io_uring_sqe *sqe = slot(ring);
    if (!sqe) return -EBUSY;
    io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, token);
    return 0;
}

int CTurnoutUring_connect(CTurnoutUring_ring *ring, int fd, const struct sockaddr *address, unsigned length,
                          uint64_t timeout_ns, uint64_t token) {
    if (length > sizeof(struct sockaddr_storage)) return -EINVAL;
    if (two_slots(ring) < 0) return -EBUSY;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring->ring);
    struct sockaddr_storage *copy = &ring->addresses[sqe - ring->ring.sq.sqes];
    memcpy(copy, address, length);
    io_uring_prep_connect(sqe, fd, (const struct sockaddr *)copy, length);
    io_uring_sqe_set_data64(sqe, token);
    sqe->flags |= IOSQE_IO_LINK;
    struct io_uring_sqe *limit = io_uring_get_sqe(&ring->ring);
    io_uring_prep_link_timeout(limit, timeout_for(ring, limit, timeout_ns), 0);
    io_uring_sqe_set_data64(limit, C_TURNOUT_URING_INTERNAL);
    return 0;
}

int CTurnoutUring_receive(CTurnoutUring_ring *ring, int fd, uint64_t token) {
    struct io_uring_sqe *sqe = slot(ring);
    if (!sqe) return -EBUSY;
    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = 0;
    io_uring_sqe_set_data64(sqe, token);
    return 0;
}

int CTurnoutUring_send(CTurnoutUring_ring *ring, int fd, const void *bytes, unsigned length, int more, uint64_t token) {
    struct io_uring_sqe *sqe = slot(ring);
    if (!sqe) return -EBUSY;
    /* MSG_DONTWAIT: a full socket completes the send with -EAGAIN instead of leaving it armed,
     * so no send ever holds its buffer while a destination is stalled. */
    io_uring_prep_send(sqe, fd, bytes, length, MSG_NOSIGNAL | MSG_DONTWAIT | (more ? MSG_MORE : 0));
    io_uring_sqe_set_data64(sqe, token);
    return 0;
}

int CTurnoutUring_poll(CTurnoutUring_ring *ring, int fd, unsigned events, uint64_t token) {
    struct io_uring_sqe *sqe = slot(ring);
    if (!sqe) return -EBUSY;
    io_uring_prep_poll_add(sqe, fd, events);
    io_uring_sqe_set_data64(sqe, token);
    return 0;
}

int CTurnoutUring_poll_multishot(CTurnoutUring_ring *ring, int fd, unsigned events, uint64_t token) {
    struct io_uring_sqe *sqe = slot(ring);
    if (!sqe) return -EBUSY;
    io_uring_prep_poll_multishot(sqe, fd, events);
    io_uring_sqe_set_data64(sqe, token);
    return 0;
}

int CTurnoutUring_cancel(CTurnoutUring_ring *ring, int fd) {
    struct io_uring_sqe *sqe = slot(ring);
    if (!sqe) return -EBUSY;
    io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data64(sqe, C_TURNOUT_URING_INTERNAL);
    return 0;
}

int CTurnoutUring_cancel_request(CTurnoutUring_ring *ring, uint64_t token) {
    struct io_uring_sqe *sqe = slot(ring);
    if (!sqe) return -EBUSY;
    io_uring_prep_cancel64(sqe, token, 0);
    io_uring_sqe_set_data64(sqe, C_TURNOUT_URING_INTERNAL);
    return 0;
}

int CTurnoutUring_timeout(CTurnoutUring_ring *ring, uint64_t timeout_ns, uint64_t token) {
    struct io_uring_sqe *sqe = slot(ring);
    if (!sqe) return -EBUSY;
    io_uring_prep_timeout(sqe, timeout_for(ring, sqe, timeout_ns), 0, 0);
    io_uring_sqe_set_data64(sqe, token);
    return 0;
}

int CTurnoutUring_submit(CTurnoutUring_ring *ring) {
    int result = io_uring_submit(&ring->ring);
    return result < 0 ? result : 0;
}

int CTurnoutUring_wait(CTurnoutUring_ring *ring, CTurnoutUring_completion *out, int capacity, uint64_t timeout_ns) {
    struct io_uring_cqe *cqe = NULL;
    int result;
    if (timeout_ns == 0) {
        result = io_uring_submit_and_get_events(&ring->ring);
    } else if (timeout_ns == UINT64_MAX) {
        /* No timeout argument: the kernel arms no timer for the wait (a worker's own periodic
         * wakeup is a timeout request on the ring, armed once per period). */
        result = io_uring_submit_and_wait(&ring->ring, 1);
    } else {
        struct __kernel_timespec timeout = {.tv_sec = (long long)(timeout_ns / 1000000000u),
                                            .tv_nsec = (long long)(timeout_ns % 1000000000u)};
        result = io_uring_submit_and_wait_timeout(&ring->ring, &cqe, 1, &timeout, NULL);
    }
    if (result < 0 && result != -ETIME && result != -EINTR) return result;
    int count = 0;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&ring->ring, head, cqe) {
        if (count == capacity) break;
        seen++;
        if (cqe->user_data == C_TURNOUT_URING_INTERNAL) continue;
        out[count].token = cqe->user_data;
        out[count].result = cqe->res;
        out[count].buffer = (cqe->flags & IORING_CQE_F_BUFFER) ? (int32_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT) : -1;
        out[count].more = (cqe->flags & IORING_CQE_F_MORE) != 0;
        count++;
    }
    io_uring_cq_advance(&ring->ring, seen);
    return count;
}

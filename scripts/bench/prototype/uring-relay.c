// A prototype, not part of turnout: the measurement that decided to give the proxy a worker on
// io_uring. A transparent TCP relay, one thread per worker with its own SO_REUSEPORT listener
// and ring (single issuer, deferred task work): multishot accept, SO_ORIGINAL_DST, connect,
// multishot recv into a ring of provided buffers, send; one io_uring_enter per loop for every
// request and completion. No routing, timeouts, health or counters: every connection goes to
// UPSTREAM_IP (port 80 to UPSTREAM_PORT_FOR_80, any other port to itself).
//
// Usage: relay PORT WORKERS UPSTREAM_IP UPSTREAM_PORT_FOR_80
// Measured with scripts/bench/proxy through ./turnout-stand-in (see there).
#define _GNU_SOURCE
#include <liburing.h>
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 16384
#define NBUF 1024
#define BGID 1
enum { OP_ACCEPT = 1, OP_CONNECT, OP_RECV0, OP_RECV1, OP_SEND0, OP_SEND1, OP_CLOSE };

struct chunk { struct chunk *next; int bid, len, off; };
struct conn {
  struct chunk *q[2], *qt[2];   // received, not yet sent, per direction
  int sending[2];
  int armed[2];
  int fd[2];          // 0 client, 1 upstream
  int inflight;
  int eof[2];         // direction d's source said EOF
  int dead;
  struct sockaddr_in up;
  
};

static int port, workers, upport;
static struct in_addr upip;

static inline struct io_uring_sqe *sqe_get(struct io_uring *r) {
  struct io_uring_sqe *s = io_uring_get_sqe(r);
  if (!s) { io_uring_submit(r); s = io_uring_get_sqe(r); }
  return s;
}
static inline uint64_t ud(struct conn *c, int op) { return (uint64_t)(uintptr_t)c | (uint64_t)op; }

static __thread struct io_uring_buf_ring *br;
static __thread char *bufs;
static void give_back(int bid) {
  io_uring_buf_ring_add(br, bufs + (size_t)bid * BUF, BUF, bid, io_uring_buf_ring_mask(NBUF), 0);
  io_uring_buf_ring_advance(br, 1);
}
static void arm_recv(struct io_uring *r, struct conn *c, int d) {
  struct io_uring_sqe *s = sqe_get(r);
  io_uring_prep_recv_multishot(s, c->fd[d], NULL, 0, 0);
  s->flags |= IOSQE_BUFFER_SELECT; s->buf_group = BGID;
  c->armed[d] = 1;
  io_uring_sqe_set_data64(s, ud(c, d == 0 ? OP_RECV0 : OP_RECV1));
  c->inflight++;
}
static void arm_send(struct io_uring *r, struct conn *c, int d) {
  struct io_uring_sqe *s = sqe_get(r);
  struct chunk *k = c->q[d];
  c->sending[d] = 1;
  io_uring_prep_send(s, c->fd[1 - d], bufs + (size_t)k->bid * BUF + k->off, k->len - k->off, MSG_NOSIGNAL);
  io_uring_sqe_set_data64(s, ud(c, d == 0 ? OP_SEND0 : OP_SEND1));
  c->inflight++;
}
static void kill_conn(struct conn *c) {
  if (!c->dead) {
    c->dead = 1;
    // Pending receives end with 0 or an error once both sockets are shut down.
    if (c->fd[0] >= 0) shutdown(c->fd[0], SHUT_RDWR);
    if (c->fd[1] >= 0) shutdown(c->fd[1], SHUT_RDWR);
  }
}
static void maybe_free(struct conn *c) {
  if (c->inflight == 0 && (c->dead || (c->eof[0] && c->eof[1]))) {
    for (int d = 0; d < 2; d++) while (c->q[d]) { struct chunk *k = c->q[d]; c->q[d] = k->next; give_back(k->bid); free(k); }
    if (c->fd[0] >= 0) close(c->fd[0]);
    if (c->fd[1] >= 0) close(c->fd[1]);
    free(c);
  }
}

static void *worker(void *arg) {
  (void)arg;
  int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  setsockopt(lfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(lfd, (void *)&a, sizeof a) || listen(lfd, 4096)) { perror("bind/listen"); exit(1); }

  struct io_uring ring;
  struct io_uring_params p = {0};
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  p.flags |= IORING_SETUP_CQSIZE; p.cq_entries = 65536;
  int e = io_uring_queue_init_params(4096, &ring, &p);
  if (e < 0) { fprintf(stderr, "queue_init: %s\n", strerror(-e)); exit(1); }

  size_t rsz = NBUF * sizeof(struct io_uring_buf);
  if (posix_memalign((void **)&br, 4096, rsz)) exit(1);
  io_uring_buf_ring_init(br);
  struct io_uring_buf_reg reg = {.ring_addr = (unsigned long)br, .ring_entries = NBUF, .bgid = BGID};
  if ((e = io_uring_register_buf_ring(&ring, &reg, 0))) { fprintf(stderr, "buf ring: %s\n", strerror(-e)); exit(1); }
  bufs = malloc((size_t)NBUF * BUF);
  for (int i = 0; i < NBUF; i++) give_back(i);
  struct io_uring_sqe *s = sqe_get(&ring);
  io_uring_prep_multishot_accept(s, lfd, NULL, NULL, 0);
  io_uring_sqe_set_data64(s, OP_ACCEPT);

  for (;;) {
    int rc = io_uring_submit_and_wait(&ring, 1);
    if (rc < 0 && rc != -EINTR) { fprintf(stderr, "submit_and_wait: %s\n", strerror(-rc)); exit(1); }
    struct io_uring_cqe *cqe; unsigned head, n = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      n++;
      uint64_t u = cqe->user_data; int op = u & 7; struct conn *c = (void *)(uintptr_t)(u & ~7ull);
      int res = cqe->res;
      switch (op) {
      case OP_ACCEPT: {
        if (!(cqe->flags & IORING_CQE_F_MORE)) {  // re-arm
          struct io_uring_sqe *s2 = sqe_get(&ring);
          io_uring_prep_multishot_accept(s2, lfd, NULL, NULL, 0);
          io_uring_sqe_set_data64(s2, OP_ACCEPT);
        }
        if (res < 0) break;
        struct conn *nc = aligned_alloc(8, sizeof *nc);
        memset(nc, 0, sizeof *nc);
        nc->fd[0] = res; nc->fd[1] = -1;
        struct sockaddr_in od; socklen_t ol = sizeof od;
        if (getsockopt(res, SOL_IP, SO_ORIGINAL_DST, &od, &ol)) { close(res); free(nc); break; }
        nc->up = od;
        nc->up.sin_addr = upip; if (ntohs(od.sin_port) == 80) nc->up.sin_port = htons(upport);
        nc->fd[1] = socket(AF_INET, SOCK_STREAM, 0);
        setsockopt(nc->fd[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct io_uring_sqe *s2 = sqe_get(&ring);
        io_uring_prep_connect(s2, nc->fd[1], (void *)&nc->up, sizeof nc->up);
        io_uring_sqe_set_data64(s2, ud(nc, OP_CONNECT));
        nc->inflight++;
        break;
      }
      case OP_CONNECT:
        c->inflight--;
        if (res < 0) { kill_conn(c); maybe_free(c); break; }
        arm_recv(&ring, c, 0); arm_recv(&ring, c, 1);
        break;
      case OP_RECV0: case OP_RECV1: {
        int d = op == OP_RECV0 ? 0 : 1;
        int more = cqe->flags & IORING_CQE_F_MORE;
        if (!more) { c->inflight--; c->armed[d] = 0; }
        if (res > 0) {
          struct chunk *k = malloc(sizeof *k);
          k->next = NULL; k->bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT; k->len = res; k->off = 0;
          if (c->dead) { give_back(k->bid); free(k); maybe_free(c); break; }
          if (c->q[d]) c->qt[d]->next = k; else c->q[d] = k;
          c->qt[d] = k;
          if (!c->sending[d]) arm_send(&ring, c, d);
          if (!more) arm_recv(&ring, c, d);
          break;
        }
        if (c->dead) { maybe_free(c); break; }
        if (res == -ENOBUFS) { arm_recv(&ring, c, d); break; }
        if (res <= 0) {
          if (res == 0) {
            c->eof[d] = 1;
            if (!c->q[d]) shutdown(c->fd[1 - d], SHUT_WR);
            if (c->eof[0] && c->eof[1]) { maybe_free(c); break; }
          } else { kill_conn(c); maybe_free(c); }
          break;
        }
        break;
      }
      case OP_SEND0: case OP_SEND1: {
        int d = op == OP_SEND0 ? 0 : 1;
        c->inflight--;
        if (c->dead) { maybe_free(c); break; }
        if (res < 0) { kill_conn(c); maybe_free(c); break; }
        c->sending[d] = 0;
        struct chunk *k = c->q[d];
        k->off += res;
        if (k->off == k->len) { c->q[d] = k->next; give_back(k->bid); free(k); }
        if (c->q[d]) arm_send(&ring, c, d);
        else if (c->eof[d]) { shutdown(c->fd[1 - d], SHUT_WR); if (c->eof[1 - d]) maybe_free(c); }
        break;
      }
      }
    }
    io_uring_cq_advance(&ring, n);
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 5) { fprintf(stderr, "usage: relay PORT WORKERS UPIP UPPORT\n"); return 2; }
  signal(SIGPIPE, SIG_IGN);
  port = atoi(argv[1]); workers = atoi(argv[2]); inet_pton(AF_INET, argv[3], &upip); upport = atoi(argv[4]);
  pthread_t t[64];
  for (int i = 0; i < workers; i++) pthread_create(&t[i], NULL, worker, NULL);
  for (int i = 0; i < workers; i++) pthread_join(t[i], NULL);
}

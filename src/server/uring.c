/*
 * uring.c - the io_uring I/O path (see uring.h), over liburing.
 *
 * Completions are reaped from the worker's libevent loop: the ring's fd is
 * registered for EV_READ, and poll on an io_uring fd reports it readable
 * while the completion queue holds entries. Operations are only queued by
 * callbacks of that loop, and the worker calls uring_submit() between loop
 * iterations, so one io_uring_enter carries every operation the iteration
 * queued. Each operation's user_data is its struct uring_op; a cancel
 * request carries 0 and its own completion is ignored.
 */
#include "uring.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <liburing.h>

#include "log.h"

#define IOV_INLINE  8    /* iovecs an op holds without allocating */
#define REAP_MAX    1024 /* completions handled per readable event */
#define CQ_ENTRIES  4096
#define DRAIN_TRIES 50 /* of 100 ms each, at shutdown */

struct uring {
    struct io_uring ring;
    struct event *ev;
    unsigned inflight; /* operations whose completion has not been reaped */
};

struct uring_op {
    struct uring *r;
    int fd;
    bool busy;
    uring_done_fn done;
    void *arg;
    struct msghdr msg;
    struct iovec *iov; /* iov_inline, or a heap array of iovcap */
    int iovcap;
    struct iovec iov_inline[IOV_INLINE];
};

static void reap(struct uring *r, unsigned max)
{
    struct io_uring_cqe *cqe;
    for (unsigned i = 0; i < max && io_uring_peek_cqe(&r->ring, &cqe) == 0; i++) {
        struct uring_op *op = io_uring_cqe_get_data(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(&r->ring, cqe);
        if (op == NULL) {
            continue; /* a cancel request's own completion */
        }
        op->busy = false;
        r->inflight--;
        op->done(op->arg, res); /* may free op, or queue its next operation */
    }
}

static void ring_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    reap(arg, REAP_MAX);
}

struct uring *uring_create(struct event_base *base, unsigned entries)
{
    struct uring *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return NULL;
    }
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_CQSIZE;
    /* Default task running: IORING_SETUP_DEFER_TASKRUN (woken through a
     * registered eventfd) measured the same here, and COOP_TASKRUN stalled
     * a loop that sleeps in epoll_wait rather than in io_uring_enter. */
    p.cq_entries = CQ_ENTRIES;
    int rc = io_uring_queue_init_params(entries, &r->ring, &p);
    if (rc < 0) {
        free(r);
        errno = -rc;
        return NULL;
    }
    r->ev = event_new(base, r->ring.ring_fd, EV_READ | EV_PERSIST, ring_cb, r);
    if (r->ev == NULL || event_add(r->ev, NULL) != 0) {
        if (r->ev != NULL) {
            event_free(r->ev);
        }
        io_uring_queue_exit(&r->ring);
        free(r);
        errno = ENOMEM;
        return NULL;
    }
    return r;
}

void uring_submit(struct uring *r)
{
    if (io_uring_sq_ready(&r->ring) == 0) {
        return;
    }
    int rc;
    do {
        rc = io_uring_submit(&r->ring);
    } while (rc == -EINTR);
    if (rc < 0 && rc != -EBUSY && rc != -EAGAIN) {
        log_msg(LOG_ERROR, "io_uring_submit: %s", strerror(-rc));
    }
}

void uring_destroy(struct uring *r)
{
    if (r == NULL) {
        return;
    }
    uring_submit(r);
    for (int i = 0; i < DRAIN_TRIES && r->inflight > 0; i++) {
        struct io_uring_cqe *cqe;
        struct __kernel_timespec ts = {0, 100 * 1000 * 1000};
        if (io_uring_wait_cqe_timeout(&r->ring, &cqe, &ts) == 0) {
            reap(r, UINT32_MAX);
        }
        uring_submit(r); /* whatever the callbacks queued */
    }
    if (r->inflight > 0) {
        log_msg(LOG_WARN, "io_uring: %u operations still in flight at exit", r->inflight);
    }
    event_free(r->ev);
    io_uring_queue_exit(&r->ring);
    free(r);
}

struct uring_op *uring_op_new(struct uring *r, int fd, uring_done_fn done, void *arg)
{
    struct uring_op *op = calloc(1, sizeof(*op));
    if (op == NULL) {
        return NULL;
    }
    op->r = r;
    op->fd = fd;
    op->done = done;
    op->arg = arg;
    op->iov = op->iov_inline;
    op->iovcap = IOV_INLINE;
    return op;
}

void uring_op_free(struct uring_op *op)
{
    if (op == NULL) {
        return;
    }
    if (op->iov != op->iov_inline) {
        free(op->iov);
    }
    free(op);
}

bool uring_op_busy(const struct uring_op *op)
{
    return op->busy;
}

/* A free submission slot: when the queue is full, what it holds goes to the
 * kernel first. */
static struct io_uring_sqe *get_sqe(struct uring *r)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (sqe == NULL) {
        uring_submit(r);
        sqe = io_uring_get_sqe(&r->ring);
    }
    return sqe;
}

int uring_recv(struct uring_op *op, void *buf, size_t len)
{
    struct io_uring_sqe *sqe = get_sqe(op->r);
    if (sqe == NULL) {
        return -1;
    }
    io_uring_prep_recv(sqe, op->fd, buf, len, 0);
    io_uring_sqe_set_data(sqe, op);
    op->busy = true;
    op->r->inflight++;
    return 0;
}

int uring_send(struct uring_op *op, const struct iovec *iov, int iovcnt)
{
    if (iovcnt > op->iovcap) {
        struct iovec *a = malloc((size_t)iovcnt * sizeof(*a));
        if (a == NULL) {
            return -1;
        }
        if (op->iov != op->iov_inline) {
            free(op->iov);
        }
        op->iov = a;
        op->iovcap = iovcnt;
    }
    struct io_uring_sqe *sqe = get_sqe(op->r);
    if (sqe == NULL) {
        return -1;
    }
    memcpy(op->iov, iov, (size_t)iovcnt * sizeof(*iov));
    memset(&op->msg, 0, sizeof(op->msg));
    op->msg.msg_iov = op->iov;
    op->msg.msg_iovlen = (size_t)iovcnt;
    io_uring_prep_sendmsg(sqe, op->fd, &op->msg, MSG_NOSIGNAL);
    io_uring_sqe_set_data(sqe, op);
    op->busy = true;
    op->r->inflight++;
    return 0;
}

void uring_cancel(struct uring_op *op)
{
    if (!op->busy) {
        return;
    }
    struct io_uring_sqe *sqe = get_sqe(op->r);
    if (sqe == NULL) {
        return; /* the operation ends when its socket does */
    }
    io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)op, 0);
    io_uring_sqe_set_data(sqe, NULL);
    /* At once: the op's memory may be reused once its completion is in,
     * and a cancel left queued could then hit the next op at that address. */
    uring_submit(op->r);
}

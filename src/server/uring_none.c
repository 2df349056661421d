/*
 * uring_none.c - uring.h for builds without liburing: no ring can be
 * created, so every connection stays on libevent. The other functions are
 * never reached without a ring.
 */
#include "uring.h"

#include <errno.h>

struct uring *uring_create(struct event_base *base, unsigned entries)
{
    (void)base;
    (void)entries;
    errno = ENOSYS;
    return NULL;
}

void uring_submit(struct uring *r)
{
    (void)r;
}

void uring_destroy(struct uring *r)
{
    (void)r;
}

struct uring_op *uring_op_new(struct uring *r, int fd, uring_done_fn done, void *arg)
{
    (void)r;
    (void)fd;
    (void)done;
    (void)arg;
    return NULL;
}

void uring_op_free(struct uring_op *op)
{
    (void)op;
}

bool uring_op_busy(const struct uring_op *op)
{
    (void)op;
    return false;
}

int uring_recv(struct uring_op *op, void *buf, size_t len)
{
    (void)op;
    (void)buf;
    (void)len;
    return -1;
}

int uring_send(struct uring_op *op, const struct iovec *iov, int iovcnt)
{
    (void)op;
    (void)iov;
    (void)iovcnt;
    return -1;
}

void uring_cancel(struct uring_op *op)
{
    (void)op;
}

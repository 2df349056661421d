/*
 * uring.h - the optional io_uring I/O path (-o io_uring).
 *
 * With -o io_uring each worker owns one ring. The ring's fd sits in the
 * worker's libevent base like any other socket (it is readable while
 * completions wait), and the worker's loop submits every queued operation in
 * one io_uring_enter per loop iteration, so the recv and send operations of
 * many connections reach the kernel together instead of one system call
 * each. A plain TCP or unix connection on a ring has at most one operation in
 * flight: a recv into its read buffer, or a sendmsg of its queued replies.
 * TLS and UDP connections stay on libevent.
 *
 * Built from uring.c when CMake finds liburing, else from uring_none.c,
 * whose uring_create always fails: the server then logs it and uses epoll.
 */
#ifndef MEMSTASH_URING_H
#define MEMSTASH_URING_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

struct event_base;
struct uring;    /* one per worker */
struct uring_op; /* one per connection */

/* Called for each completion of an operation: res is the system call's
 * result (bytes, 0 at EOF) or -errno. The op is idle again when it runs. */
typedef void (*uring_done_fn)(void *arg, int res);

/* A ring of `entries` submission slots whose completions are reaped from
 * base. NULL with errno set when io_uring is not built in or the kernel
 * refuses it. */
struct uring *uring_create(struct event_base *base, unsigned entries);
/* Hands every queued operation to the kernel; the worker calls it before its
 * loop sleeps. */
void uring_submit(struct uring *r);
/* Waits (boundedly) for the operations still in flight, runs their
 * callbacks, and frees the ring. */
void uring_destroy(struct uring *r);

/* The I/O slot of one connection on socket fd. */
struct uring_op *uring_op_new(struct uring *r, int fd, uring_done_fn done, void *arg);
void uring_op_free(struct uring_op *op);
/* An operation is in flight (its buffers must stay valid until done runs). */
bool uring_op_busy(const struct uring_op *op);
/* Queues a recv of up to len bytes into buf. 0, or -1 when no slot is free. */
int uring_recv(struct uring_op *op, void *buf, size_t len);
/* Queues one sendmsg of the iovecs (copied; the bytes they point to must
 * stay until done runs). 0, or -1. */
int uring_send(struct uring_op *op, const struct iovec *iov, int iovcnt);
/* Asks the kernel to cancel the operation in flight (submitted at once);
 * done still runs, with -ECANCELED or the result it reached. */
void uring_cancel(struct uring_op *op);

#endif

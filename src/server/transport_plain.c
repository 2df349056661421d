/*
 * transport_plain.c - the default transport: the socket system calls, with
 * nothing in between. A write is one sendmsg(2) of the connection's iovecs
 * (item memory included), so values still go out without a copy.
 */
#include "transport.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

static ssize_t plain_read(struct transport_conn *t, void *buf, size_t len)
{
    ssize_t n;
    do {
        n = read(t->fd, buf, len);
    } while (n < 0 && errno == EINTR);
    return n;
}

static ssize_t plain_writev(struct transport_conn *t, const struct iovec *iov, int iovcnt)
{
    struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
    ssize_t n;
    do {
        n = sendmsg(t->fd, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n;
}

static void plain_close(struct transport_conn *t)
{
    close(t->fd);
    t->fd = -1;
}

const struct transport transport_plain = {
    .name = "plain",
    .read = plain_read,
    .writev = plain_writev,
    .pending = NULL,
    .close = plain_close,
};

/*
 * transport.h - how a connection's bytes reach its socket: a small table of
 * functions (read, writev, close) that conn.c calls instead of read(2),
 * sendmsg(2) and close(2). The plain table is those system calls; the TLS
 * table (transport_tls.c) runs them through OpenSSL. conn.c has no TLS code
 * and no #ifdef: a connection picks its table once, when it is created.
 *
 * Contract, shared by every table (the read(2)/writev(2) conventions):
 *   read    returns bytes read, 0 at end of stream, -1 with errno set
 *           (EAGAIN: nothing now, wait for readability);
 *   writev  returns bytes written from the front of iov (possibly fewer),
 *           -1 with errno set (EAGAIN: wait for writability). After EAGAIN
 *           the caller must offer the same bytes again, first;
 *   pending NULL, or true when bytes were read from the socket but not yet
 *           returned by read (the event loop will not report them again);
 *   close   releases the transport state and closes the socket.
 */
#ifndef MEMSTASH_TRANSPORT_H
#define MEMSTASH_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

struct transport_conn {
    int fd;
    void *state; /* NULL for plain; the TLS session for TLS */
};

struct transport {
    const char *name; /* "plain", "tls" */
    ssize_t (*read)(struct transport_conn *t, void *buf, size_t len);
    ssize_t (*writev)(struct transport_conn *t, const struct iovec *iov, int iovcnt);
    bool (*pending)(const struct transport_conn *t);
    void (*close)(struct transport_conn *t);
};

extern const struct transport transport_plain;

#endif

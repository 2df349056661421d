/*
 * conn.h - one client connection, owned by one worker thread for its life.
 *
 * A connection reads requests into its read buffer, hands whole requests to
 * process.c, and collects the replies of one read batch as a list of output
 * segments: bytes copied into its write buffer, or spans of item memory held
 * by a reference (values are never copied). When the batch is done the
 * segments go out in one writev. Storage-command data blocks are read
 * straight into the new item's memory.
 *
 * Nothing but the owning worker touches a connection, except "stats conns",
 * which reads a few fields under the server's stats_lock.
 */
#ifndef MEMSTASH_CONN_H
#define MEMSTASH_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "clock.h"
#include "text.h"
#include "transport.h"

struct worker;
struct item;
struct event;
struct conn_dump;
struct watcher;
struct uring;
struct uring_op;

enum conn_state {
    CONN_NEW_CMD = 0, /* waiting for / parsing a command line */
    CONN_NREAD,       /* reading a data block into c->item */
    CONN_SWALLOW,     /* discarding c->swallow bytes of a refused data block */
    CONN_WRITE,       /* output pending, socket not writable */
    CONN_CLOSING,     /* flush what is queued, then close */
};

/* A span of output: `it` NULL means bytes at wbuf + off. */
struct out_seg {
    struct item *it;
    const char *ptr;
    uint32_t off;
    uint32_t len;
};

struct conn {
    struct conn *next, *prev; /* the worker's list */
    struct worker *w;
    int fd;
    const struct transport *tp; /* how bytes reach fd (transport.h) */
    struct transport_conn io;
    enum conn_state state;
    bool binary; /* protocol picked from the first byte */
    bool is_udp; /* a worker's UDP socket: one request datagram at a time */
    bool proto_known;
    bool close_after_write;
    bool close_now;          /* a protocol error: close without a reply */
    bool peer_closed;        /* read() saw EOF: close once buffered requests are answered */
    bool noreply;            /* current command's reply is suppressed */
    struct watcher *watcher; /* "watch" accepted: the socket goes to it once OK is sent */
    struct event *ev;        /* on a ring: never added, only activated to resume a yield */
    short ev_flags;
    /* -o io_uring (uring.h): the connection's one recv or send in flight */
    struct uring_op *ring;
    bool ring_sending;   /* the op in flight is a send (else a recv) */
    bool ring_into_item; /* the recv in flight fills c->item, not rbuf */
    bool ring_closed;    /* closed while an op was in flight: freed at its completion */
    bool close_error;    /* close_after_write is for an error (logged "error") */
    rel_time_t last_cmd_time;
    char peer[64];           /* "tcp:1.2.3.4:5678", for stats conns and logs */
    const char *listen_addr; /* the listener's address (not owned) */

    /* read side */
    char *rbuf;
    uint32_t rsize, rstart, rlen; /* buffer size, start of unparsed data, its length */

    /* storage command in flight */
    struct item *item;
    enum text_cmd item_cmd;
    uint64_t item_cas;
    uint64_t item_hv;
    uint32_t item_done; /* bytes of value+"\r\n" received so far */
    uint32_t item_need; /* value length + 2 (text), value length (binary) */
    uint8_t bin_opcode; /* the binary request the item belongs to */
    uint32_t bin_opaque;
    uint64_t swallow;       /* bytes left to discard */
    void *meta_pending;     /* an ms awaiting its data block (process_meta.c); freed with free() */
    struct conn_dump *dump; /* a metadump/mgdump in progress (dump.c) */

    /* write side */
    char *wbuf;
    uint32_t wsize, wlen;
    struct out_seg *segs;
    uint32_t nsegs, segcap, seg_sent; /* segments fully sent */
    uint32_t seg_off;                 /* bytes sent of segs[seg_sent] */
    uint32_t out_bytes;               /* bytes queued since the output was last empty */
    rel_time_t write_blocked_since;   /* output waiting on a full socket since; 0 = not */
    uint32_t blocked_outq;            /* the kernel's send queue when last looked at */
    /* authentication (-S, -Y) */
    bool authenticated;
    struct auth_ascii auth_ascii; /* -Y token exchange */
    void *sasl;                   /* libsasl2 state, see auth.h */

    /* UDP only: where each response starts in the queued output, so that
     * each goes out as its own message, as memcached sends them. */
    uint32_t *marks;
    uint32_t nmarks, markcap;
};

/* "stats conns" on another worker reads state and last_cmd_time while the
 * owner changes them: the owner writes them only through these. */
static inline void conn_set_state(struct conn *c, enum conn_state s)
{
    __atomic_store_n(&c->state, s, __ATOMIC_RELAXED);
}

static inline void conn_set_last_cmd(struct conn *c, rel_time_t t)
{
    __atomic_store_n(&c->last_cmd_time, t, __ATOMIC_RELAXED);
}

/* Takes a connected, non-blocking socket into worker w, to be read and
 * written through tp (tstate: the transport's state, owned from now on), or,
 * with ring non-NULL (plain sockets only), through that io_uring. */
struct conn *conn_create(struct worker *w, int fd, const char *peer, const char *listen_addr,
                         const struct transport *tp, void *tstate, struct uring *ring);
/* Closes the socket, releases items and buffers, frees the connection. */
void conn_close(struct conn *c, const char *reason);

/* Output, for process.c. */
void conn_out(struct conn *c, const void *data, size_t len);
void conn_out_str(struct conn *c, const char *s); /* s followed by "\r\n" */
/* Queues len bytes at ptr inside item it; takes over one reference to it. */
void conn_out_item(struct conn *c, struct item *it, const char *ptr, size_t len);
/* Drops n parsed bytes from the front of the read buffer. */
void conn_consume(struct conn *c, size_t n);
/* Processes whatever the read buffer holds, writes the replies and sets the
 * events for what comes next (used after a yield). */
void conn_drive(struct conn *c);
/* Runs the requests buffered in the read buffer, at most -R of them before
 * setting *yielded. Returns false when the connection must be closed. */
bool conn_run(struct conn *c, bool *yielded);

/* Marks the start of a response in the output (UDP sends each response as
 * its own message). With keep_empty false, a response that adds no bytes
 * before the next mark is merged into it; with true it becomes an empty
 * message (binary quiet replies). A no-op on stream connections. */
void conn_mark_response(struct conn *c, bool keep_empty);

/* For datagram transports: the bytes queued for output, copying them out,
 * and dropping all per-request state between datagrams. */
size_t conn_out_pending(const struct conn *c);
void conn_out_flatten(const struct conn *c, char *dst);
void conn_reset(struct conn *c);

const char *conn_state_name(enum conn_state s);

#endif

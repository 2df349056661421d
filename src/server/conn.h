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

#include <event2/event_struct.h>

struct worker;
struct item;
struct conn_dump;
struct watcher;
struct uring;
struct uring_op;

enum conn_state {
    CONN_NEW_CMD = 0, /* waiting for / parsing a command line */
    CONN_NREAD,       /* reading a data block into c->ext->item */
    CONN_SWALLOW,     /* discarding c->ext->swallow bytes of a refused data block */
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

/*
 * What most connections never need, or need only while one command runs: a
 * storage command's data block in flight, a refused block being discarded,
 * an authentication exchange, a dump, a watch hand-off, UDP's message marks.
 * conn_ext() makes it on first use; it goes back to the worker (one spare) or
 * is freed once the connection is idle again with none of it in use, and at
 * close. An idle connection holds only struct conn.
 */
struct conn_ext {
    /* storage command in flight */
    struct item *item;
    uint64_t item_cas;
    uint64_t item_hv;
    uint64_t swallow;   /* bytes left to discard */
    void *meta_pending; /* an ms awaiting its data block (process_meta.c); freed with free() */
    enum text_cmd item_cmd;
    uint32_t item_done;  /* bytes of the data block received so far */
    uint32_t item_need;  /* value length + 2 (text), value length (binary) */
    char tail[2];        /* the text block's terminator: items do not store it */
    uint32_t bin_opaque; /* the binary request the item belongs to */
    uint8_t bin_opcode;
    /* authentication (-S, -Y), while an exchange is going on */
    struct auth_ascii auth_ascii; /* -Y token exchange */
    void *sasl;                   /* libsasl2 state, see auth.h; kept until close once made */
    struct conn_dump *dump;       /* a metadump/mgdump in progress (dump.c) */
    struct watcher *watcher;      /* "watch" accepted: the socket goes to it once OK is sent */
    /* UDP only: where each response starts in the queued output, so that
     * each goes out as its own message, as memcached sends them. */
    uint32_t *marks;
    uint32_t nmarks, markcap;
};

/*
 * One per client socket, and the only per-connection memory an idle one
 * holds (with libevent's per-fd entry): it is laid out with no padding but
 * 1 byte before ev, and the _Static_assert below keeps it from growing.
 * Read and write buffers exist only while bytes are pending.
 */
struct conn {
    struct conn *next, *prev; /* the worker's list */
    struct worker *w;
    const struct transport *tp; /* how bytes reach fd (transport.h) */
    struct transport_conn io;
    const char *listen_addr; /* the listener's address (not owned) */
    struct conn_ext *ext;    /* NULL unless in use (conn_ext()) */
    struct uring_op *ring;   /* -o io_uring (uring.h): its one recv or send in flight */

    /* read side */
    char *rbuf;
    /* write side */
    char *wbuf;
    struct out_seg *segs;

    int fd;
    uint32_t rsize, rstart, rlen; /* buffer size, start of unparsed data, its length */
    uint32_t wsize, wlen;
    uint32_t nsegs, segcap, seg_sent; /* segments fully sent */
    uint32_t seg_off;                 /* bytes sent of segs[seg_sent] */
    uint32_t out_bytes;               /* bytes queued since the output was last empty */
    rel_time_t write_blocked_since;   /* output waiting on a full socket since; 0 = not */
    uint32_t blocked_outq;            /* the kernel's send queue when last looked at */
    rel_time_t last_cmd_time;

    /* the peer, for stats conns and watch connevents (conn_peer_name) */
    uint8_t peer_addr[16];
    uint16_t peer_port;
    uint8_t peer_family; /* AF_INET, AF_INET6, AF_UNIX...; CONN_PEER_UNKNOWN */

    uint8_t state; /* enum conn_state */
    short ev_flags;
    bool binary; /* protocol picked from the first byte */
    bool is_udp; /* a worker's UDP socket: one request datagram at a time */
    bool proto_known;
    bool close_after_write;
    bool close_now;     /* a protocol error: close without a reply */
    bool peer_closed;   /* read() saw EOF: close once buffered requests are answered */
    bool noreply;       /* current command's reply is suppressed */
    bool authenticated; /* -S, -Y */
    /* -o io_uring only */
    bool ring_sending : 1;   /* the op in flight is a send (else a recv) */
    bool ring_into_item : 1; /* the recv in flight fills c->ext->item, not rbuf */
    bool ring_closed : 1;    /* closed while an op was in flight: freed at its completion */
    bool close_error : 1;    /* close_after_write is for an error (logged "error") */

    struct event ev; /* embedded; on a ring never added, only activated to resume a yield */
};

/* peer_family when getpeername() failed: shown as "?". */
#define CONN_PEER_UNKNOWN 0xff

/* An idle connection costs sizeof(struct conn) plus malloc's 8-byte header,
 * rounded up to 16: keep it within 320 bytes of heap. 312 fills that chunk
 * exactly, so there is no room left: moving a field that idle connections do
 * not use into struct conn_ext is the way to make some. */
#define CONN_SIZE_MAX 312
_Static_assert(sizeof(struct conn) <= CONN_SIZE_MAX, "struct conn grew: see CONN_SIZE_MAX");

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
 * with ring non-NULL (plain sockets only), through that io_uring.
 * udp: fd is a worker's UDP socket. */
struct conn *conn_create(struct worker *w, int fd, bool udp, const char *listen_addr,
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

/* The connection's rarely used state (struct conn_ext), made on first use;
 * NULL when out of memory (the caller answers or closes). */
struct conn_ext *conn_ext(struct conn *c);

/* The peer as memcached shows it: "tcp:1.2.3.4:5678", "tcp6:[::1]:5678",
 * "?:<AF 0>" for a unix socket; "udp:ADDR:PORT" (the socket's own address)
 * for a UDP socket. Safe from another thread while the connection lives. */
#define CONN_PEER_NAME_MAX 64
void conn_peer_name(const struct conn *c, char *out, size_t cap);

#endif

/*
 * client_int.h - libmemstash internals shared by its source files: the
 * handle, a server with its connection and health, and the I/O engine that
 * runs one call's requests on every server involved at once.
 *
 * Not installed; nothing here is exported.
 *
 * How a call runs: the call validates keys, picks each key's server (health
 * first: a dead server past its retry interval is let back in), appends its
 * request bytes to that server's write buffer and sets how many replies it
 * waits for, then io_run() polls all involved servers together, writing
 * what is pending and parsing replies as they arrive, handing each reply to
 * the call's handler. A server that fails (connect error, I/O error, timeout,
 * unparsable reply) is closed, its failure is counted, and io_run() goes on
 * with the others.
 *
 * Protocols: the handle's protocol is text, binary, or meta (the default).
 * With meta, every new connection starts out not knowing whether the
 * server speaks it: the first call on it sends "mn" ahead of its own
 * request, which it composes in text (every server understands that). The
 * "MN" or "ERROR" that comes back first decides: later calls speak meta, or
 * stay with text (memcached < 1.6). So finding out costs no round trip.
 *
 * Quiet requests (noreply in meta and binary) end with an "mn" / NOOP
 * sentinel and are not waited for: the replies a server still sends for
 * them (NS, NF, errors, mg hits) are skipped, up to the sentinel, before
 * the next call's replies are read. srv->owed counts those sentinels.
 */
#ifndef MEMSTASH_CLIENT_INT_H
#define MEMSTASH_CLIENT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dist.h"
#include "memstash/memstash.h"
#include "reply.h"
#include "spec.h"
#include "wire.h"

struct addrinfo;

struct buf {
    char *p;
    size_t len; /* bytes held */
    size_t off; /* bytes already consumed (written or parsed) */
    size_t cap;
};

struct mst_server {
    struct server_spec spec;
    char name[300]; /* "host:port" */
    /* Connection. */
    int fd;                 /* -1 when closed */
    bool connecting;        /* non-blocking connect in progress */
    uint64_t connect_until; /* connect deadline (monotonic ms) */
    struct addrinfo *ai;    /* resolved addresses (TCP), NULL until the first connect */
    struct addrinfo *ai_cur;
    struct buf wbuf;
    struct buf rbuf;
    /* Protocol on this connection (reset when it closes). */
    uint8_t meta;  /* META_UNKNOWN, META_YES, META_NO */
    bool probing;  /* the reply to an "mn" probe comes before the call's replies */
    unsigned owed; /* sentinels of earlier quiet requests still to be skipped */
    /* Hot path (io.c): when the idle probe can be skipped, and the blocking read. */
    uint64_t last_ok_ms;  /* monotonic ms the last call on this connection ended well */
    bool maybe_stray;     /* a text noreply went out: an error line may still come */
    bool blocking;        /* O_NONBLOCK cleared (every other call passes MSG_DONTWAIT) */
    unsigned rcvtimeo_ms; /* SO_RCVTIMEO set on the socket, 0 none */
    /* The adaptive wait (io.c, fast_read): mean wait for a reply, in ns, when
     * spinning and when blocking (0 = not yet measured), and a call counter
     * that schedules the occasional try of the mode not in favour. */
    uint32_t wait_ns[2];
    uint32_t wait_calls;
    /* Health. */
    unsigned failures;   /* consecutive */
    uint64_t dead_until; /* monotonic ms; 0 = alive */
    /* State of the current call. */
    bool active;     /* takes part in the current io_run() */
    size_t pending;  /* replies still expected */
    int status;      /* MST_OK or the failure of this server in this call */
    bool conn_error; /* the failure happened before anything was sent */
    /* A text multi-get being composed (ops.c): keys on its current line, lines. */
    unsigned multi_keys;
    unsigned multi_lines;
};

enum { META_UNKNOWN = 0, META_YES, META_NO };

/* How srv's replies are framed in this call. */
enum io_framing {
    FRAME_TEXT = 0, /* text and meta replies (reply_parse) */
    FRAME_BINARY,   /* binary packets (bin_parse_response) */
    FRAME_LINES,    /* raw lines (reply_parse_line) */
};

struct io_call;
/*
 * Handles one reply of server srv. Returns 1 when the reply ends one expected
 * response, 0 when more elements of the same response follow (VALUE, STAT),
 * or a negative MST_E* code (the server's connection is then closed).
 */
typedef int (*io_handler)(struct io_call *call, struct mst_server *srv, size_t idx,
                          const struct reply *r);

struct io_call {
    struct mst *m;
    io_handler handler;
    void *arg;
    bool lines; /* FRAME_LINES for every text server of this call */
};

struct mst {
    struct mst_server **servers;
    size_t nservers;

    enum mst_distribution distribution;
    enum mst_hash hash;
    unsigned connect_timeout_ms;
    unsigned io_timeout_ms;
    unsigned spin_us; /* longest spin on a reply before blocking; 0 never spins */
    unsigned retry_interval_ms;
    unsigned failure_limit;
    bool failover;
    bool noreply;
    bool hash_namespace;
    enum mst_protocol protocol;
    char ns[MST_KEY_MAX + 1];
    size_t nns;

    struct dist dist;
    bool dist_dirty;

    char errbuf[512];
    char lasterr[512]; /* scratch copy of errbuf across a failover retry */
};

_Static_assert((int)WIRE_TEXT == MST_PROTO_TEXT && (int)WIRE_META == MST_PROTO_META &&
                   (int)WIRE_BINARY == MST_PROTO_BINARY,
               "wire protocols mirror enum mst_protocol");

/* The protocol the next request to srv is composed in. */
static inline enum wire_proto srv_wire(const struct mst *m, const struct mst_server *srv)
{
    if (m->protocol == MST_PROTO_BINARY) {
        return WIRE_BINARY;
    }
    if (m->protocol == MST_PROTO_META && srv->meta == META_YES) {
        return WIRE_META;
    }
    return WIRE_TEXT;
}

/* Monotonic milliseconds. */
uint64_t mst_now_ms(void);
uint64_t mst_now_ns(void);

/* Records the detail of a failure for mst_last_error(); returns status. */
int mst_fail(struct mst *m, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Health: a call on srv failed (counts towards failure_limit) or worked. */
void health_failure(struct mst *m, struct mst_server *srv, int status);
void health_success(struct mst *m, struct mst_server *srv);

/* Key check (namespace included): MST_OK or MST_EBADKEY. */
int key_check(const struct mst *m, const char *key, size_t nkey);

/*
 * Picks the server for key (no I/O): lets dead servers whose interval has
 * passed back in and rebuilds the placement when needed. Returns MST_OK and
 * *idx, or MST_EDEAD / MST_ENOSERVERS / MST_ENOMEM.
 */
int route_key(struct mst *m, const char *key, size_t nkey, size_t *idx);
/* route_key() in two steps, for calls with many keys: once per call, then once per key. */
int route_prepare(struct mst *m);
int route_one(struct mst *m, const char *key, size_t nkey, size_t *idx);

/* Error replies (ops.c): the status for r, recorded in srv->status and the last error. */
int reply_error_status(struct mst *m, struct mst_server *srv, const struct reply *r);
bool reply_is_error(const struct reply *r);

/* Buffers. */
int buf_reserve(struct buf *b, size_t more);
int buf_append(struct buf *b, const void *p, size_t n);
void buf_reset(struct buf *b);
void buf_free(struct buf *b);

/* Connection management and the I/O engine (io.c). */
void io_close(struct mst_server *srv);
/*
 * Makes srv take part in the next io_run(): opens a connection if needed
 * (non-blocking) and clears its call state. Returns MST_OK or the connect
 * failure (already recorded in health and in srv->status).
 */
int io_begin(struct mst *m, struct mst_server *srv);
/*
 * io_begin(), then, on a meta handle whose connection to srv has not been
 * probed yet, queues the "mn" probe ahead of the request the caller is about
 * to append (which srv_wire() then composes in text).
 */
int io_begin_probe(struct mst *m, struct mst_server *srv);
/*
 * Makes sure srv's meta support is known, running a probe round trip if
 * needed (for calls that only exist in meta). MST_OK when it speaks meta,
 * MST_ENOTSUP when it does not, or the connection failure. srv takes part
 * in the next io_run() afterwards, as after io_begin().
 */
int io_need_meta(struct mst *m, struct mst_server *srv);
/* Runs every active server until its writes are flushed and its replies read. */
void io_run(struct io_call *call);

#endif

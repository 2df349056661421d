/*
 * wire.h - composes the client's requests in the three memcached protocols:
 * text lines, meta lines ("mg <key> <flags>*", "ms <key> <len> <flags>*"...)
 * and binary packets (through src/proto/binary.h's bin_compose_request).
 *
 * One protocol-neutral request (struct wire_req) becomes the bytes of one
 * protocol, appended to a buffer. Every request composed here parses with
 * the server's own codecs (text_parse, meta_parse, bin_parse_request): the
 * unit tests check that round trip for every operation.
 *
 * What this module is not: it does no I/O, checks no keys (the caller has)
 * and does not read replies (reply.h does).
 *
 * How replies come back, per protocol (the "expect" of wire_compose()):
 *   - text: one response per request (a get's ends with END);
 *   - meta: one per request, except quiet requests (q), whose hidden
 *     replies are not sent; a quiet batch ends with wire_compose_end()'s
 *     "mn", answered by "MN";
 *   - binary: one per request, except the quiet opcodes; a quiet batch ends
 *     with a NOOP.
 */
#ifndef MEMSTASH_CLIENT_WIRE_H
#define MEMSTASH_CLIENT_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;

enum wire_proto {
    WIRE_TEXT = 0,
    WIRE_META,
    WIRE_BINARY,
};

enum wire_op {
    WOP_GET = 0,    /* text get, meta mg v f, binary GET */
    WOP_GETS,       /* with the CAS */
    WOP_GAT,        /* get and touch (exptime) */
    WOP_TOUCH,      /* exptime */
    WOP_SET,        /* data, flags, exptime */
    WOP_ADD,        /* data, flags, exptime */
    WOP_REPLACE,    /* data, flags, exptime */
    WOP_APPEND,     /* data */
    WOP_PREPEND,    /* data */
    WOP_CAS,        /* data, flags, exptime, cas */
    WOP_DELETE,     /* - */
    WOP_INCR,       /* delta; initial/has_initial with exptime */
    WOP_DECR,       /* delta; initial/has_initial with exptime */
    WOP_LEASE_GET,  /* meta only: mg v f c N<lease_ttl> [R<recache>] */
    WOP_LEASE_SET,  /* meta only: ms ... C<cas> I (cas 0: plain set) */
    WOP_INVALIDATE, /* meta only: md I [T<exptime>] */
};

struct wire_req {
    enum wire_op op;
    const char *ns; /* namespace, prepended to the key on the wire */
    size_t nns;
    const char *key;
    size_t nkey;
    const void *data; /* stores: the value (the caller appends nothing) */
    size_t len;
    uint32_t flags;
    int32_t exptime;
    uint64_t cas;
    uint64_t delta;
    uint64_t initial;
    bool has_initial;
    uint32_t lease_ttl;     /* WOP_LEASE_GET */
    uint32_t recache_below; /* WOP_LEASE_GET, 0 = off */
    /*
     * Quiet: meta q, binary quiet opcodes (TOUCH, which has none, is sent
     * as is), text noreply. With multi the request is one element of a
     * pipelined multi-get: meta adds k (and q), binary uses GETKQ.
     */
    bool quiet;
    bool multi;
    /*
     * Meta multi-get elements: ask for the opaque "O<opaque>" back instead
     * of the key (k): shorter replies, and the caller maps the index.
     */
    bool by_opaque;
    uint32_t opaque;
};

/*
 * Appends rq in protocol p to b. *expect (may be NULL) is the number of
 * responses to read for it: 0 for a quiet request (its reply, if the server
 * sends one, comes before the batch's end marker), else 1. Returns MST_OK,
 * MST_ENOMEM, MST_ETOOBIG (value too long for the protocol's length field)
 * or MST_ENOTSUP (a meta-only operation in another protocol).
 *
 * Text get/gets with multi appends only " <ns><key>": the caller writes
 * "get"/"gets" first and "\r\n" last (one line for all keys of a server).
 */
int wire_compose(struct buf *b, enum wire_proto p, const struct wire_req *rq, size_t *expect);

/*
 * Appends the end marker of a quiet batch: meta "mn\r\n" or a binary NOOP,
 * answered by one REPLY_MN. MST_EINVAL for text, which has none.
 */
int wire_compose_end(struct buf *b, enum wire_proto p);

/* flush_all [delay] [noreply] / binary FLUSH(Q). */
int wire_compose_flush(struct buf *b, enum wire_proto p, int32_t delay, bool quiet);
/* version / binary VERSION. */
int wire_compose_version(struct buf *b, enum wire_proto p);
/* stats [group] / binary STAT with the group as key. */
int wire_compose_stats(struct buf *b, enum wire_proto p, const char *group);

/* Binary exptimes are unsigned: a negative one (already expired in text) is sent as this. */
#define WIRE_BIN_EXPIRED 2592001u

#endif

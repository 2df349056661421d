/*
 * reply.h - client side of the memcached text protocol: parses one reply
 * element out of a receive buffer.
 *
 * src/proto/text.h parses requests (the server side); this is its mirror for
 * the replies a client reads. One call frames one element: a line
 * ("STORED", "END", "STAT name value", "VERSION x", a number, an error line)
 * or a whole "VALUE key flags bytes [cas]" header with its data block. It is
 * resumable the simple way: REPLY_NEED_MORE consumes nothing, and the caller
 * calls again with the same bytes plus more.
 *
 * What this module is not: it does no I/O and does not know which request
 * a reply answers (the caller does).
 *
 * Ownership: every span in a struct reply points into the caller's buffer.
 */
#ifndef MEMSTASH_CLIENT_REPLY_H
#define MEMSTASH_CLIENT_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A reply line without a newline after this many bytes is refused. */
#define REPLY_LINE_MAX 8192

enum reply_kind {
    REPLY_VALUE, /* key, flags, data, cas/has_cas */
    REPLY_END,
    REPLY_STORED,
    REPLY_NOT_STORED,
    REPLY_EXISTS,
    REPLY_NOT_FOUND,
    REPLY_DELETED,
    REPLY_TOUCHED,
    REPLY_OK,
    REPLY_NUMBER,       /* incr/decr result in number */
    REPLY_VERSION,      /* text: the version */
    REPLY_STAT,         /* name, text: the value (may be empty) */
    REPLY_ERROR,        /* "ERROR" (text: anything after it) */
    REPLY_CLIENT_ERROR, /* text: the message */
    REPLY_SERVER_ERROR, /* text: the message */
};

struct reply_span {
    const char *p;
    size_t len;
};

struct reply {
    enum reply_kind kind;
    struct reply_span key;
    struct reply_span data;
    struct reply_span name;
    struct reply_span text;
    uint32_t flags;
    uint64_t cas;
    bool has_cas;
    uint64_t number;
};

enum reply_status {
    REPLY_DONE,      /* one element parsed; *consumed bytes used */
    REPLY_NEED_MORE, /* incomplete: read more, call again with all bytes */
    REPLY_BAD,       /* not a reply this client understands: the stream is lost */
};

enum reply_status reply_parse(const char *buf, size_t len, struct reply *r, size_t *consumed);

#endif

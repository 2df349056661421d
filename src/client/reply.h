/*
 * reply.h - client side of the memcached text and meta protocols: parses one
 * reply element out of a receive buffer; and the normalisation of binary
 * responses (framed by src/proto/binary.h's bin_parse_response) into the
 * same struct reply, so that one handler per operation serves all three
 * protocols.
 *
 * src/proto/text.h and src/proto/meta.h parse requests and compose replies
 * (the server side); this is their mirror for the replies a client reads,
 * and it reuses their tokenizer (text_next_token) and flag numbering
 * (meta_flag_bit). One call frames one element: a line ("STORED", "END",
 * "STAT name value", "VERSION x", a number, an error line, a meta "HD ...",
 * "EN", "NF", "NS", "EX", "MN"), a whole "VALUE key flags bytes [cas]"
 * header with its data block, or a meta "VA <len> <flags>*" line with its
 * data block. It is resumable the simple way: REPLY_NEED_MORE consumes
 * nothing, and the caller calls again with the same bytes plus more.
 *
 * What this module is not: it does no I/O and does not know which request
 * a reply answers (the caller does). It never sees requests.
 *
 * Ownership: every span in a struct reply points into the caller's buffer.
 */
#ifndef MEMSTASH_CLIENT_REPLY_H
#define MEMSTASH_CLIENT_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bin_response;

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
    /*
     * Meta replies. Their return flags are in mflags (bit meta_flag_bit(c)
     * for flag c) with the values decoded: f -> flags, c -> cas/has_cas,
     * t -> ttl, s -> size, k -> key, O -> opaque (without the 'O'); W, X
     * and Z are plain bits.
     */
    REPLY_META_HD,
    REPLY_META_VA, /* data: the value block */
    REPLY_META_EN,
    REPLY_META_NF,
    REPLY_META_NS,
    REPLY_META_EX,
    /*
     * The end of a quiet batch: meta "MN", or a binary NOOP response. Every
     * pipelined quiet batch ends with the request that produces it.
     */
    REPLY_MN,
    /* reply_parse_line() only: one raw line in text (without its line end). */
    REPLY_LINE,
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
    /* Meta return flags (see REPLY_META_*). */
    uint64_t mflags;
    int64_t ttl; /* t: remaining seconds, -1 for none */
    uint64_t size;
    struct reply_span opaque;
    /* Binary responses (reply_from_bin): the opcode and status as received. */
    bool binary;
    uint8_t opcode;
    uint16_t status;
};

/* True when the meta reply r carries return flag c. */
bool reply_has_mflag(const struct reply *r, char c);

enum reply_status {
    REPLY_DONE,      /* one element parsed; *consumed bytes used */
    REPLY_NEED_MORE, /* incomplete: read more, call again with all bytes */
    REPLY_BAD,       /* not a reply this client understands: the stream is lost */
};

/* One element of a text or meta reply stream (kinds REPLY_VALUE ... REPLY_MN). */
enum reply_status reply_parse(const char *buf, size_t len, struct reply *r, size_t *consumed);

/*
 * One raw line ending in "\n" (a "\r" before it is dropped) as REPLY_LINE,
 * for replies made of free-form lines (lru_crawler metadump). Lines longer
 * than REPLY_LINE_MAX are REPLY_BAD.
 */
enum reply_status reply_parse_line(const char *buf, size_t len, struct reply *r, size_t *consumed);

/*
 * Fills r from a binary response framed by bin_parse_response(), mapping
 * status and opcode to the text kinds: success of GET/GETK/GAT/GATK (and
 * quiet variants) -> REPLY_VALUE (has_cas), of stores -> REPLY_STORED, of
 * DELETE -> REPLY_DELETED, of INCR/DECR -> REPLY_NUMBER, of TOUCH ->
 * REPLY_TOUCHED, of FLUSH/QUIT -> REPLY_OK, of NOOP -> REPLY_MN, of VERSION
 * -> REPLY_VERSION, of STAT -> REPLY_STAT (REPLY_END for the empty end
 * packet); statuses: not found -> REPLY_NOT_FOUND, exists -> REPLY_EXISTS,
 * not stored -> REPLY_NOT_STORED, unknown command -> REPLY_ERROR, invalid
 * arguments and non-numeric value -> REPLY_CLIENT_ERROR, the rest ->
 * REPLY_SERVER_ERROR (text: the body). r points into b's buffer.
 */
void reply_from_bin(const struct bin_response *b, struct reply *r);

#endif

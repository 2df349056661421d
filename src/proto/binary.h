/*
 * binary.h - the memcached binary protocol codec.
 *
 * bin_parse_request() frames one request out of a connection's read buffer
 * and validates it exactly as memcached 1.6.18 does: which opcode it is, its
 * quiet flag, its extras, its key, how many value bytes follow, and, for a
 * rejected request, which status the server answers with and whether it then
 * swallows bytes or closes the connection. The composers write response
 * packets (and request packets, for clients and tests), and
 * bin_parse_response() is the client side's resumable response parser.
 *
 * What this module is not: it never touches sockets or storage, it does not
 * read values (the server reads req->value_len bytes after a request, straight
 * into item memory if it likes), it does not decide cache outcomes (hit, miss,
 * exists...) and it does not speak SASL: the SASL opcodes get memcached's
 * no-SASL answer, "Unknown command", whose swallow count is the SASL data
 * length; a server with SASL enabled (-S) reads those bytes instead.
 *
 * Ownership: every pointer in a struct bin_request or struct bin_response
 * points into the buffer given to the parser and stays valid only as long as
 * the caller keeps those bytes in place. The codec never writes to an input
 * buffer and allocates nothing.
 *
 * Packet layout (all integers big-endian, "network byte order"):
 *
 *     byte  0      1       2..3     4       5         6..7       8..11
 *         +------+-------+--------+-------+---------+----------+---------+
 *         | magic| opcode| keylen | extlen| datatype| vbucket/ | bodylen |
 *         |      |       |        |       |  (0)    |  status  |         |
 *         +------+-------+--------+-------+---------+----------+---------+
 *     byte 12..15   16..23
 *         +--------+-------+
 *         | opaque |  cas  |   then the body: extras, key, value, where
 *         +--------+-------+   bodylen = extlen + keylen + value length.
 *
 * Requests carry magic 0x80 and a vbucket id (ignored); responses carry magic
 * 0x81 and a status. The opaque is echoed verbatim in every response.
 */
#ifndef MEMSTASH_PROTO_BINARY_H
#define MEMSTASH_PROTO_BINARY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BIN_HEADER_LEN 24
#define BIN_MAGIC_REQ  0x80
#define BIN_MAGIC_RES  0x81
/* Longest key memcached accepts in a request (the header allows 65535). */
#define BIN_KEY_MAX 250
/*
 * memcached 1.6.18 reads a binary request into a fixed 16 KiB buffer and
 * needs header + extras + key in it at once. When they add up to more, the
 * connection is closed silently as soon as the buffer is full (verified: a GET
 * with a 16360-byte key gets "Invalid arguments", one with 16361 bytes gets
 * the connection closed). bin_parse_request() reproduces this, so a server
 * whose read buffer holds BIN_REQ_PREFIX_MAX bytes can always finish a parse.
 */
#define BIN_REQ_PREFIX_MAX 16384

/* Opcodes memcached 1.6 serves (quiet variants suppress some replies). */
enum bin_opcode {
    BIN_OP_GET = 0x00,
    BIN_OP_SET = 0x01,
    BIN_OP_ADD = 0x02,
    BIN_OP_REPLACE = 0x03,
    BIN_OP_DELETE = 0x04,
    BIN_OP_INCREMENT = 0x05,
    BIN_OP_DECREMENT = 0x06,
    BIN_OP_QUIT = 0x07,
    BIN_OP_FLUSH = 0x08,
    BIN_OP_GETQ = 0x09,
    BIN_OP_NOOP = 0x0a,
    BIN_OP_VERSION = 0x0b,
    BIN_OP_GETK = 0x0c,
    BIN_OP_GETKQ = 0x0d,
    BIN_OP_APPEND = 0x0e,
    BIN_OP_PREPEND = 0x0f,
    BIN_OP_STAT = 0x10,
    BIN_OP_SETQ = 0x11,
    BIN_OP_ADDQ = 0x12,
    BIN_OP_REPLACEQ = 0x13,
    BIN_OP_DELETEQ = 0x14,
    BIN_OP_INCREMENTQ = 0x15,
    BIN_OP_DECREMENTQ = 0x16,
    BIN_OP_QUITQ = 0x17,
    BIN_OP_FLUSHQ = 0x18,
    BIN_OP_APPENDQ = 0x19,
    BIN_OP_PREPENDQ = 0x1a,
    /* Defined by the protocol, but memcached 1.6.18 answers "Unknown command". */
    BIN_OP_VERBOSITY = 0x1b,
    BIN_OP_TOUCH = 0x1c,
    BIN_OP_GAT = 0x1d,
    BIN_OP_GATQ = 0x1e,
    /* SASL: parsed as "Unknown command"; see the file comment. */
    BIN_OP_SASL_LIST_MECHS = 0x20,
    BIN_OP_SASL_AUTH = 0x21,
    BIN_OP_SASL_STEP = 0x22,
    BIN_OP_GATK = 0x23,
    BIN_OP_GATKQ = 0x24,
};

/*
 * Response statuses memcached sends. There is no 0x07/0x08 in practice: the
 * spec's 0x07 ("vbucket belongs to another server") is never sent, and the
 * authentication error is 0x20.
 */
enum bin_status {
    BIN_STATUS_OK = 0x0000,
    BIN_STATUS_KEY_ENOENT = 0x0001,      /* "Not found" */
    BIN_STATUS_KEY_EEXISTS = 0x0002,     /* "Data exists for key." */
    BIN_STATUS_E2BIG = 0x0003,           /* "Too large." */
    BIN_STATUS_EINVAL = 0x0004,          /* "Invalid arguments" */
    BIN_STATUS_NOT_STORED = 0x0005,      /* "Not stored." */
    BIN_STATUS_DELTA_BADVAL = 0x0006,    /* "Non-numeric server-side value for incr or decr" */
    BIN_STATUS_AUTH_ERROR = 0x0020,      /* "Auth failure." (also flush with -F) */
    BIN_STATUS_AUTH_CONTINUE = 0x0021,   /* SASL only; the body is SASL data */
    BIN_STATUS_UNKNOWN_COMMAND = 0x0081, /* "Unknown command" */
    BIN_STATUS_ENOMEM = 0x0082,          /* "Out of memory" */
};

/*
 * Returns the body text memcached sends with an error status, "" for
 * BIN_STATUS_OK and BIN_STATUS_AUTH_CONTINUE, and NULL for a status memcached
 * never sends.
 */
const char *bin_status_text(uint16_t status);
/* Longest error text ("Non-numeric server-side value for incr or decr"). */
#define BIN_STATUS_TEXT_MAX 46

/* The opcode's name as memcached's docs spell it ("GetKQ"), or NULL if unknown. */
const char *bin_opcode_name(uint8_t opcode);
/* True for the quiet variants: GETQ GETKQ SETQ ... PREPENDQ GATQ GATKQ. */
bool bin_opcode_is_quiet(uint8_t opcode);
/* The loud opcode a quiet variant maps to (GETKQ -> GETK); others map to themselves. */
uint8_t bin_opcode_base(uint8_t opcode);

/* A span of bytes; not NUL-terminated. */
struct bin_span {
    const char *p;
    size_t len;
};

/* A decoded header, in host byte order. */
struct bin_header {
    uint8_t magic;
    uint8_t opcode;
    uint16_t keylen;
    uint8_t extlen;
    uint8_t datatype;
    uint16_t status; /* the vbucket id in a request */
    uint32_t bodylen;
    uint32_t opaque;
    uint64_t cas;
};

/* Reads / writes the 24 header bytes at buf. Encoding writes h->magic as given. */
void bin_header_decode(const char *buf, struct bin_header *h);
void bin_header_encode(char *buf, const struct bin_header *h);

/* Results of the parsers. */
enum bin_result {
    /* A packet was framed: *consumed bytes belong to it; see the parser for the rest. */
    BIN_OK,
    /* Not enough bytes yet: read more and call again with all buffered bytes. */
    BIN_NEED_MORE,
    /*
     * Requests only: the request was rejected. Consume *consumed bytes, answer
     * with bin_compose_error(req->hdr.opcode, req->hdr.opaque, req->err_status),
     * then either close the connection once the reply is written (err_close)
     * or discard the next err_swallow bytes (possibly not read yet) and go on.
     * memcached writes the reply only once the swallowed bytes have arrived.
     */
    BIN_ERROR,
    /* Close the connection without a reply (bad magic, oversized key + extras). */
    BIN_CLOSE,
};

/*
 * One parsed request. bin_parse_request() zeroes the whole struct first, so a
 * field the opcode does not use is 0/false/empty.
 */
struct bin_request {
    struct bin_header hdr; /* as received; echo hdr.opcode and hdr.opaque in replies */
    uint8_t cmd;           /* bin_opcode_base(hdr.opcode): what to do */
    bool quiet;            /* hdr.opcode is a quiet variant (see the reply rules below) */
    bool return_key;       /* GETK GETKQ GATK GATKQ: hits and misses carry the key */
    struct bin_span extras;
    struct bin_span key;
    /*
     * Extras, decoded. exptime is unsigned in the binary protocol (memcached
     * never sees a negative one here, unlike the text protocol) and is 0 for
     * a FLUSH without extras. For INCR/DECR, exptime == BIN_ARITH_NO_CREATE
     * means "a miss is an error, do not create the counter".
     */
    uint32_t flags;     /* SET ADD REPLACE */
    uint32_t exptime;   /* SET ADD REPLACE INCR DECR TOUCH GAT GATK FLUSH */
    uint64_t delta;     /* INCR DECR */
    uint64_t initial;   /* INCR DECR */
    uint32_t verbosity; /* VERBOSITY with 4 bytes of extras (it still gets BIN_ERROR) */
    /*
     * Value bytes that follow *consumed and belong to this request: the value
     * of SET ADD REPLACE APPEND PREPEND (may be 0), 0 for every other opcode.
     * TOUCH, GAT* and STAT may carry surplus body bytes; memcached 1.6.18
     * does not consume them but parses them as the next request, and so does
     * a server that trusts value_len.
     */
    uint32_t value_len;
    /* Set when the parser returned BIN_ERROR. */
    uint16_t err_status;
    bool err_close;
    uint32_t err_swallow;
};

/* INCR/DECR exptime meaning "do not create on a miss". */
#define BIN_ARITH_NO_CREATE 0xffffffffu

/*
 * Parses the request at the start of buf[0..len).
 *
 * BIN_NEED_MORE until the header, the extras and the key are buffered (or,
 * when they exceed BIN_REQ_PREFIX_MAX, until that many bytes are, which gives
 * BIN_CLOSE); *consumed is 0 and req is untouched.
 * BIN_CLOSE: the magic is not 0x80, or see BIN_REQ_PREFIX_MAX; req untouched.
 * BIN_OK: *consumed = 24 + extlen + keylen, req is filled, and value_len more
 * bytes of value follow.
 * BIN_ERROR: *consumed = 24 + extlen + keylen, req->hdr and the err_* fields
 * are filled. The rules, in memcached 1.6.18's order, all verified live:
 *   - keylen > bodylen or keylen + extlen > bodylen: 0x81, close;
 *   - keylen > 250 (any opcode, even an unknown one): 0x04, close;
 *   - an extlen/keylen/bodylen combination the opcode does not allow:
 *     0x04, close (see binary.c for the table);
 *   - SASL opcodes with valid lengths: 0x81, swallow bodylen - keylen;
 *   - any other opcode (VERBOSITY, 0x1f, 0x25..0xff): 0x81, swallow bodylen.
 *     Note memcached swallows bodylen bytes AFTER extras and key, i.e.
 *     extlen + keylen bytes of whatever follows too.
 * A swallow count above INT32_MAX becomes 0, as in memcached (an int).
 */
enum bin_result bin_parse_request(const char *buf, size_t len, struct bin_request *req,
                                  size_t *consumed);

/*
 * memcached passes swallow counts as an int: one above INT32_MAX swallows
 * nothing. Servers use this for the value of a rejected SET (E2BIG, ENOMEM).
 */
uint32_t bin_swallow_len(uint32_t n);

/*
 * A packet to compose: the header fields the caller chooses plus the extras
 * and key to copy. The value (value_len bytes) is counted in bodylen but not
 * written: the caller appends it. status is ignored for requests.
 */
struct bin_packet {
    uint8_t opcode;
    uint16_t status;
    uint32_t opaque;
    uint64_t cas;
    const char *extras;
    uint8_t extlen;
    const char *key;
    uint16_t keylen;
    uint32_t value_len;
};

/*
 * Generic composers: write header + extras + key into buf and return the
 * bytes written (24 + extlen + keylen), or 0 without writing if that does not
 * fit in cap or bodylen would overflow 32 bits. Datatype is 0.
 */
size_t bin_compose_request(char *buf, size_t cap, const struct bin_packet *pk);
size_t bin_compose_response(char *buf, size_t cap, const struct bin_packet *pk);

/* Request extras, for clients and tests: out must hold the BIN_EXTLEN_* bytes. */
#define BIN_EXTLEN_STORE   8  /* SET ADD REPLACE: flags, exptime */
#define BIN_EXTLEN_ARITH   20 /* INCR DECR: delta, initial, exptime */
#define BIN_EXTLEN_EXPTIME 4  /* TOUCH GAT GATK FLUSH (optional); also VERBOSITY's level */
void bin_encode_store_extras(char *out, uint32_t flags, uint32_t exptime);
void bin_encode_arith_extras(char *out, uint64_t delta, uint64_t initial, uint32_t exptime);
void bin_encode_u32(char *out, uint32_t v);

/*
 * Response composers for the server. They write into buf, return the bytes
 * written, and echo the request's opcode (a quiet one stays quiet) and opaque.
 */

/* Success with an empty body (stores, DELETE, FLUSH, NOOP, QUIT): 24 bytes. */
size_t bin_compose_ok(char *buf, uint8_t opcode, uint32_t opaque, uint64_t cas);

/* An error: status plus bin_status_text() as the body, CAS 0. */
size_t bin_compose_error(char *buf, uint8_t opcode, uint32_t opaque, uint16_t status);
#define BIN_ERROR_MAX (BIN_HEADER_LEN + BIN_STATUS_TEXT_MAX)

/*
 * A hit (GET GETK GAT GATK and quiet variants, TOUCH): header, 4 bytes of
 * flags, then the key when nkey > 0 (only for the "K" opcodes). bodylen counts
 * value_len more bytes, which the caller appends (value_len 0 for TOUCH).
 * nkey must be <= BIN_KEY_MAX and 4 + nkey + value_len must fit in 32 bits.
 */
size_t bin_compose_item(char *buf, uint8_t opcode, uint32_t opaque, uint64_t cas, uint32_t flags,
                        const char *key, size_t nkey, uint32_t value_len);
#define BIN_ITEM_HEADER_MAX (BIN_HEADER_LEN + 4 + BIN_KEY_MAX)

/* A GETK/GATK miss: status 0x01 with the key and no text. nkey <= BIN_KEY_MAX. */
size_t bin_compose_key_miss(char *buf, uint8_t opcode, uint32_t opaque, const char *key,
                            size_t nkey);

/* INCR/DECR success: the new value as 8 bytes of body: 32 bytes. */
size_t bin_compose_arith(char *buf, uint8_t opcode, uint32_t opaque, uint64_t cas, uint64_t value);
#define BIN_ARITH_LEN (BIN_HEADER_LEN + 8)

/*
 * One STAT packet: opcode STAT, key = name, value = the value in text form,
 * CAS 0. Returns 0 and writes nothing when it does not fit in cap.
 * bin_compose_stat_end() writes the empty packet that ends a STAT reply
 * (24 bytes).
 */
size_t bin_compose_stat(char *buf, size_t cap, uint32_t opaque, const char *name, size_t nname,
                        const char *value, size_t nvalue);
size_t bin_compose_stat_u64(char *buf, size_t cap, uint32_t opaque, const char *name,
                            uint64_t value);
size_t bin_compose_stat_end(char *buf, uint32_t opaque);

/* VERSION: the version string as the body. Returns 0 when it does not fit in cap. */
size_t bin_compose_version(char *buf, size_t cap, uint32_t opaque, const char *version);

/* One parsed response (client side). */
struct bin_response {
    struct bin_header hdr; /* hdr.status is the status */
    struct bin_span extras;
    struct bin_span key;
    /* The value; empty (p points past the key) for bin_parse_response_head(). */
    struct bin_span value;
    uint32_t value_len; /* bodylen - extlen - keylen */
    bool has_flags;     /* extlen == 4: a GET-family or TOUCH hit */
    uint32_t flags;
    /* INCR/DECR(Q) success with an 8-byte value (bin_parse_response() only). */
    bool has_number;
    uint64_t number;
};

/*
 * Parses the response at the start of buf[0..len). BIN_NEED_MORE until the
 * whole packet (24 + bodylen bytes) is buffered; BIN_CLOSE when the magic is
 * not 0x81 or extlen + keylen > bodylen (the stream cannot be trusted); BIN_OK
 * with *consumed = 24 + bodylen. res is untouched unless BIN_OK.
 *
 * bin_parse_response_head() is the streaming variant: it needs only header,
 * extras and key, consumes those, leaves res->value empty and lets the caller
 * read res->value_len value bytes itself.
 */
enum bin_result bin_parse_response(const char *buf, size_t len, struct bin_response *res,
                                   size_t *consumed);
enum bin_result bin_parse_response_head(const char *buf, size_t len, struct bin_response *res,
                                        size_t *consumed);

/*
 * Reply rules for the server (memcached 1.6.18, verified live). "K" opcodes
 * carry the key; quiet variants behave like their base opcode except that
 * the reply marked "quiet: suppressed" is not sent. Errors are always sent,
 * with the request's own (quiet) opcode.
 *
 *   GET GETK GAT GATK  hit: item (flags; key for K; value), CAS = item's.
 *                      miss: GET/GAT 0x01 "Not found"; GETK/GATK 0x01 with
 *                      the key and no text. GETQ GETKQ GATQ GATKQ: miss
 *                      suppressed, hit sent.
 *   TOUCH              hit: item with flags only (no key, no value), CAS =
 *                      item's; miss 0x01 "Not found". No quiet variant.
 *   SET ADD REPLACE    ok (CAS = new CAS); quiet: success suppressed. CAS in
 *                      the request != 0: mismatch 0x02, missing key 0x01.
 *                      ADD exists 0x02; REPLACE missing 0x01. Value over the
 *                      item size: 0x03 "Too large." and swallow value_len
 *                      (bin_swallow_len); no memory: 0x82 "Out of memory".
 *   APPEND PREPEND     ok (CAS = new CAS); missing key 0x05 "Not stored.";
 *                      CAS mismatch 0x02. Quiet: success suppressed.
 *   DELETE             ok with CAS 0; missing 0x01; CAS mismatch 0x02.
 *                      Quiet: success suppressed.
 *   INCR DECR          arith (new value, CAS = new CAS); miss with exptime
 *                      BIN_ARITH_NO_CREATE 0x01, else store `initial` (flags
 *                      0) and return it; non-numeric 0x06; CAS mismatch 0x02.
 *                      Quiet: success suppressed.
 *   QUIT               ok, then close. QUITQ: close without a reply.
 *   FLUSH              ok; FLUSHQ: suppressed. Flush disabled (-F): 0x20
 *                      "Auth failure." for both.
 *   NOOP               ok; it also flushes the replies queued so far.
 *   VERSION            bin_compose_version(), CAS 0.
 *   STAT               one packet per stat then bin_compose_stat_end(); key
 *                      "reset" / "detail on" / "detail off": only the end
 *                      packet; unknown group: 0x01 "Not found" (no end).
 *                      memcached matches groups by prefix (strncmp).
 */

#endif

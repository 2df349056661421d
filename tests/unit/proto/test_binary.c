/*
 * test_binary.c - unit tests for the binary protocol codec (src/proto/binary.c).
 *
 * Expected behaviour is memcached 1.6.18's. The validation rules and the
 * byte-exact response vectors below were checked by sending the same packets
 * to Debian's memcached 1.6.18 (/usr/bin/memcached, 127.0.0.1, -U 0) and
 * reading the replies; a request that silently kept bytes was told apart from
 * one that swallowed them by sending a NOOP right after it.
 *
 * Packets are built in heap buffers of exactly the tested length, so that an
 * over-read shows up under AddressSanitizer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "binary.h"

/* Helpers. */

static char *dup_bytes(const char *p, size_t n)
{
    char *b = malloc(n > 0 ? n : 1);
    assert_non_null(b);
    if (n > 0) {
        memcpy(b, p, n);
    }
    return b;
}

/* Decodes a hex string into a new heap buffer of exactly the decoded length. */
static char *from_hex(const char *hex, size_t *len)
{
    size_t n = strlen(hex);
    assert_int_equal(n % 2, 0);
    char *b = malloc(n / 2 > 0 ? n / 2 : 1);
    assert_non_null(b);
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v = 0;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        b[i] = (char)v;
    }
    *len = n / 2;
    return b;
}

/* Compares composed bytes with a hex vector. */
static void assert_bytes_hex(const char *got, size_t n, const char *hex)
{
    size_t len = 0;
    char *want = from_hex(hex, &len);
    assert_int_equal(n, len);
    assert_memory_equal(got, want, len);
    free(want);
}

/*
 * Builds a request with arbitrary header fields followed by body (which need
 * not match bodylen). Returns an exact-size heap buffer.
 */
static char *raw_packet(uint8_t magic, uint8_t opcode, uint16_t keylen, uint8_t extlen,
                        uint32_t bodylen, const char *body, size_t nbody, size_t *len)
{
    struct bin_header h = {
        .magic = magic,
        .opcode = opcode,
        .keylen = keylen,
        .extlen = extlen,
        .bodylen = bodylen,
        .opaque = 0xdeadbeef,
        .cas = 0,
    };
    *len = BIN_HEADER_LEN + nbody;
    char *b = malloc(*len);
    assert_non_null(b);
    bin_header_encode(b, &h);
    if (nbody > 0) {
        memcpy(b + BIN_HEADER_LEN, body, nbody);
    }
    return b;
}

/* Builds a well-formed request with the composer plus its value. */
static char *build_request(uint8_t opcode, uint32_t opaque, uint64_t cas, const char *extras,
                           uint8_t extlen, const char *key, const char *value, size_t *len)
{
    size_t nkey = key != NULL ? strlen(key) : 0;
    size_t nvalue = value != NULL ? strlen(value) : 0;
    struct bin_packet pk = {
        .opcode = opcode,
        .opaque = opaque,
        .cas = cas,
        .extras = extras,
        .extlen = extlen,
        .key = key,
        .keylen = (uint16_t)nkey,
        .value_len = (uint32_t)nvalue,
    };
    size_t head = BIN_HEADER_LEN + extlen + nkey;
    *len = head + nvalue;
    char *b = malloc(*len);
    assert_non_null(b);
    assert_int_equal(bin_compose_request(b, head, &pk), head);
    if (nvalue > 0) {
        memcpy(b + head, value, nvalue);
    }
    return b;
}

static void assert_span(const struct bin_span *s, const char *p, size_t len)
{
    assert_int_equal(s->len, len);
    if (len > 0) {
        assert_memory_equal(s->p, p, len);
    }
}

/* Parses and expects BIN_ERROR with the given verdict. */
static void expect_reject(const char *buf, size_t len, uint16_t status, bool close,
                          uint32_t swallow, size_t consumed_want)
{
    struct bin_request req;
    size_t consumed = 99;
    assert_int_equal(bin_parse_request(buf, len, &req, &consumed), BIN_ERROR);
    assert_int_equal(consumed, consumed_want);
    assert_int_equal(req.err_status, status);
    assert_int_equal(req.err_close, close);
    assert_int_equal(req.err_swallow, swallow);
    assert_int_equal(req.value_len, 0);
}

/* A raw request with a body of nbody filler bytes: expects the verdict. */
static void expect_raw_reject(uint8_t opcode, uint16_t keylen, uint8_t extlen, uint32_t bodylen,
                              size_t nbody, uint16_t status, bool close, uint32_t swallow)
{
    char *body = malloc(nbody > 0 ? nbody : 1);
    assert_non_null(body);
    memset(body, 'a', nbody);
    size_t len = 0;
    char *b = raw_packet(BIN_MAGIC_REQ, opcode, keylen, extlen, bodylen, body, nbody, &len);
    expect_reject(b, len, status, close, swallow, BIN_HEADER_LEN + (size_t)extlen + keylen);
    free(b);
    free(body);
}

static void expect_raw_einval(uint8_t opcode, uint16_t keylen, uint8_t extlen, uint32_t bodylen)
{
    expect_raw_reject(opcode, keylen, extlen, bodylen, (size_t)extlen + keylen, BIN_STATUS_EINVAL,
                      true, 0);
}

/* Header and tables. */

static void test_header_byte_order(void **state)
{
    (void)state;
    struct bin_header h = {
        .magic = 0x80,
        .opcode = 0x1d,
        .keylen = 0x0102,
        .extlen = 0x04,
        .datatype = 0x00,
        .status = 0x0506,
        .bodylen = 0x0708090a,
        .opaque = 0x0b0c0d0e,
        .cas = 0x1112131415161718ull,
    };
    char buf[BIN_HEADER_LEN];
    bin_header_encode(buf, &h);
    assert_bytes_hex(buf, sizeof(buf),
                     "801d010204000506"
                     "0708090a0b0c0d0e"
                     "1112131415161718");
    struct bin_header d;
    bin_header_decode(buf, &d);
    assert_int_equal(d.magic, 0x80);
    assert_int_equal(d.opcode, 0x1d);
    assert_int_equal(d.keylen, 0x0102);
    assert_int_equal(d.extlen, 4);
    assert_int_equal(d.datatype, 0);
    assert_int_equal(d.status, 0x0506);
    assert_int_equal(d.bodylen, 0x0708090a);
    assert_int_equal(d.opaque, 0x0b0c0d0e);
    assert_true(d.cas == 0x1112131415161718ull);

    /* High bits survive (no sign extension anywhere). */
    struct bin_header hi = {.magic = 0xff,
                            .opcode = 0xff,
                            .keylen = 0xffff,
                            .extlen = 0xff,
                            .datatype = 0xff,
                            .status = 0xffff,
                            .bodylen = 0xffffffffu,
                            .opaque = 0xffffffffu,
                            .cas = UINT64_MAX};
    bin_header_encode(buf, &hi);
    for (size_t i = 0; i < sizeof(buf); i++) {
        assert_int_equal((unsigned char)buf[i], 0xff);
    }
    bin_header_decode(buf, &d);
    assert_int_equal(d.keylen, 0xffff);
    assert_int_equal(d.bodylen, 0xffffffffu);
    assert_true(d.cas == UINT64_MAX);

    char ext[BIN_EXTLEN_ARITH];
    bin_encode_store_extras(ext, 0xcafebabe, 0x00000e10);
    assert_bytes_hex(ext, BIN_EXTLEN_STORE, "cafebabe00000e10");
    bin_encode_arith_extras(ext, 0x0102030405060708ull, 0x1112131415161718ull, 0xffffffffu);
    assert_bytes_hex(ext, BIN_EXTLEN_ARITH, "01020304050607081112131415161718ffffffff");
    bin_encode_u32(ext, 0x01020304);
    assert_bytes_hex(ext, BIN_EXTLEN_EXPTIME, "01020304");
}

static void test_quiet_mapping(void **state)
{
    (void)state;
    static const uint8_t pairs[][2] = {
        {BIN_OP_GETQ, BIN_OP_GET},
        {BIN_OP_GETKQ, BIN_OP_GETK},
        {BIN_OP_SETQ, BIN_OP_SET},
        {BIN_OP_ADDQ, BIN_OP_ADD},
        {BIN_OP_REPLACEQ, BIN_OP_REPLACE},
        {BIN_OP_DELETEQ, BIN_OP_DELETE},
        {BIN_OP_INCREMENTQ, BIN_OP_INCREMENT},
        {BIN_OP_DECREMENTQ, BIN_OP_DECREMENT},
        {BIN_OP_QUITQ, BIN_OP_QUIT},
        {BIN_OP_FLUSHQ, BIN_OP_FLUSH},
        {BIN_OP_APPENDQ, BIN_OP_APPEND},
        {BIN_OP_PREPENDQ, BIN_OP_PREPEND},
        {BIN_OP_GATQ, BIN_OP_GAT},
        {BIN_OP_GATKQ, BIN_OP_GATK},
    };
    size_t nquiet = 0;
    for (unsigned op = 0; op < 256; op++) {
        bool quiet = false;
        for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
            if (pairs[i][0] == op) {
                assert_int_equal(bin_opcode_base((uint8_t)op), pairs[i][1]);
                quiet = true;
            }
        }
        assert_int_equal(bin_opcode_is_quiet((uint8_t)op), quiet);
        if (!quiet) {
            assert_int_equal(bin_opcode_base((uint8_t)op), op);
        } else {
            nquiet++;
        }
    }
    assert_int_equal(nquiet, 14);
    /* No quiet variant for these. */
    assert_false(bin_opcode_is_quiet(BIN_OP_TOUCH));
    assert_false(bin_opcode_is_quiet(BIN_OP_NOOP));
    assert_false(bin_opcode_is_quiet(BIN_OP_STAT));
    assert_false(bin_opcode_is_quiet(BIN_OP_VERSION));

    /* Opcode values are the protocol's. */
    assert_int_equal(BIN_OP_GET, 0x00);
    assert_int_equal(BIN_OP_SETQ, 0x11);
    assert_int_equal(BIN_OP_PREPENDQ, 0x1a);
    assert_int_equal(BIN_OP_VERBOSITY, 0x1b);
    assert_int_equal(BIN_OP_TOUCH, 0x1c);
    assert_int_equal(BIN_OP_SASL_STEP, 0x22);
    assert_int_equal(BIN_OP_GATKQ, 0x24);

    assert_string_equal(bin_opcode_name(BIN_OP_GETKQ), "GetKQ");
    assert_string_equal(bin_opcode_name(BIN_OP_NOOP), "No-op");
    unsigned named = 0;
    for (unsigned op = 0; op < 256; op++) {
        if (bin_opcode_name((uint8_t)op) != NULL) {
            named++;
        }
    }
    /* 0x00..0x1e and 0x20..0x24. */
    assert_int_equal(named, 31 + 5);
    assert_null(bin_opcode_name(0x1f));
    assert_null(bin_opcode_name(0x25));
    assert_null(bin_opcode_name(0x30));
}

static void test_status_text(void **state)
{
    (void)state;
    assert_string_equal(bin_status_text(BIN_STATUS_OK), "");
    assert_string_equal(bin_status_text(0x01), "Not found");
    assert_string_equal(bin_status_text(0x02), "Data exists for key.");
    assert_string_equal(bin_status_text(0x03), "Too large.");
    assert_string_equal(bin_status_text(0x04), "Invalid arguments");
    assert_string_equal(bin_status_text(0x05), "Not stored.");
    assert_string_equal(bin_status_text(0x06), "Non-numeric server-side value for incr or decr");
    assert_string_equal(bin_status_text(0x20), "Auth failure.");
    assert_string_equal(bin_status_text(0x21), "");
    assert_string_equal(bin_status_text(0x81), "Unknown command");
    assert_string_equal(bin_status_text(0x82), "Out of memory");
    assert_null(bin_status_text(0x07));
    assert_null(bin_status_text(0x08));
    assert_null(bin_status_text(0x83));
    assert_int_equal(strlen(bin_status_text(0x06)), BIN_STATUS_TEXT_MAX);
}

/* Round trips: a table of requests, one or more per opcode. */

struct req_case {
    uint8_t opcode;
    const char *extras; /* literal bytes, so the table also pins byte order */
    uint8_t extlen;
    const char *key;
    const char *value;
    uint64_t cas;
    enum bin_result result;
    uint8_t cmd;
    bool return_key;
    uint32_t flags;
    uint32_t exptime;
    uint64_t delta;
    uint64_t initial;
    uint32_t verbosity;
    uint32_t value_len;
    uint16_t err_status;
    uint32_t err_swallow;
};

#define STORE_EXT "\xca\xfe\xba\xbe\x00\x00\x0e\x10" /* flags 0xcafebabe, exptime 3600 */
/* delta 5, initial 0x0102030405060708, exptime 0xffffffff */
#define ARITH_EXT "\0\0\0\0\0\0\0\x05\x01\x02\x03\x04\x05\x06\x07\x08\xff\xff\xff\xff"
#define EXP_EXT   "\x00\x01\x51\x80" /* 86400 */

#define OK_CASE(op, ext, nex, k, v, c, base, rk)                                                   \
    .opcode = (op), .extras = (ext), .extlen = (nex), .key = (k), .value = (v), .cas = (c),        \
    .result = BIN_OK, .cmd = (base), .return_key = (rk)
#define ERR_CASE(op, ext, nex, k, v, swallow)                                                      \
    .opcode = (op), .extras = (ext), .extlen = (nex), .key = (k), .value = (v),                    \
    .result = BIN_ERROR, .cmd = (op), .err_status = BIN_STATUS_UNKNOWN_COMMAND,                    \
    .err_swallow = (swallow)

static const struct req_case cases[] = {
    {OK_CASE(BIN_OP_GET, NULL, 0, "foo", NULL, 0, BIN_OP_GET, false)},
    {OK_CASE(BIN_OP_GETQ, NULL, 0, "foo", NULL, 0, BIN_OP_GET, false)},
    {OK_CASE(BIN_OP_GETK, NULL, 0, "foo", NULL, 0, BIN_OP_GETK, true)},
    {OK_CASE(BIN_OP_GETKQ, NULL, 0, "foo", NULL, 0, BIN_OP_GETK, true)},
    {OK_CASE(BIN_OP_SET, STORE_EXT, 8, "k", "hello", 0, BIN_OP_SET, false), .flags = 0xcafebabe,
     .exptime = 3600, .value_len = 5},
    {OK_CASE(BIN_OP_SET, STORE_EXT, 8, "k", NULL, 77, BIN_OP_SET, false), .flags = 0xcafebabe,
     .exptime = 3600},
    {OK_CASE(BIN_OP_SETQ, STORE_EXT, 8, "k", "v", 0, BIN_OP_SET, false), .flags = 0xcafebabe,
     .exptime = 3600, .value_len = 1},
    {OK_CASE(BIN_OP_ADD, STORE_EXT, 8, "k", "vv", 0, BIN_OP_ADD, false), .flags = 0xcafebabe,
     .exptime = 3600, .value_len = 2},
    {OK_CASE(BIN_OP_ADDQ, STORE_EXT, 8, "k", "vv", 0, BIN_OP_ADD, false), .flags = 0xcafebabe,
     .exptime = 3600, .value_len = 2},
    {OK_CASE(BIN_OP_REPLACE, STORE_EXT, 8, "k", "vvv", 0, BIN_OP_REPLACE, false),
     .flags = 0xcafebabe, .exptime = 3600, .value_len = 3},
    {OK_CASE(BIN_OP_REPLACEQ, STORE_EXT, 8, "k", "vvv", 0, BIN_OP_REPLACE, false),
     .flags = 0xcafebabe, .exptime = 3600, .value_len = 3},
    {OK_CASE(BIN_OP_DELETE, NULL, 0, "gone", NULL, 5, BIN_OP_DELETE, false)},
    {OK_CASE(BIN_OP_DELETEQ, NULL, 0, "gone", NULL, 0, BIN_OP_DELETE, false)},
    {OK_CASE(BIN_OP_INCREMENT, ARITH_EXT, 20, "n", NULL, 0, BIN_OP_INCREMENT, false),
     .exptime = BIN_ARITH_NO_CREATE, .delta = 5, .initial = 0x0102030405060708ull},
    {OK_CASE(BIN_OP_INCREMENTQ, ARITH_EXT, 20, "n", NULL, 0, BIN_OP_INCREMENT, false),
     .exptime = BIN_ARITH_NO_CREATE, .delta = 5, .initial = 0x0102030405060708ull},
    {OK_CASE(BIN_OP_DECREMENT, ARITH_EXT, 20, "n", NULL, 9, BIN_OP_DECREMENT, false),
     .exptime = BIN_ARITH_NO_CREATE, .delta = 5, .initial = 0x0102030405060708ull},
    {OK_CASE(BIN_OP_DECREMENTQ, ARITH_EXT, 20, "n", NULL, 0, BIN_OP_DECREMENT, false),
     .exptime = BIN_ARITH_NO_CREATE, .delta = 5, .initial = 0x0102030405060708ull},
    {OK_CASE(BIN_OP_QUIT, NULL, 0, NULL, NULL, 0, BIN_OP_QUIT, false)},
    {OK_CASE(BIN_OP_QUITQ, NULL, 0, NULL, NULL, 0, BIN_OP_QUIT, false)},
    {OK_CASE(BIN_OP_FLUSH, NULL, 0, NULL, NULL, 0, BIN_OP_FLUSH, false)},
    {OK_CASE(BIN_OP_FLUSH, EXP_EXT, 4, NULL, NULL, 0, BIN_OP_FLUSH, false), .exptime = 86400},
    {OK_CASE(BIN_OP_FLUSHQ, EXP_EXT, 4, NULL, NULL, 0, BIN_OP_FLUSH, false), .exptime = 86400},
    {OK_CASE(BIN_OP_NOOP, NULL, 0, NULL, NULL, 0, BIN_OP_NOOP, false)},
    {OK_CASE(BIN_OP_VERSION, NULL, 0, NULL, NULL, 0, BIN_OP_VERSION, false)},
    {OK_CASE(BIN_OP_APPEND, NULL, 0, "k", "tail", 0, BIN_OP_APPEND, false), .value_len = 4},
    {OK_CASE(BIN_OP_APPENDQ, NULL, 0, "k", "tail", 0, BIN_OP_APPEND, false), .value_len = 4},
    {OK_CASE(BIN_OP_PREPEND, NULL, 0, "k", "head", 3, BIN_OP_PREPEND, false), .value_len = 4},
    {OK_CASE(BIN_OP_PREPENDQ, NULL, 0, "k", NULL, 0, BIN_OP_PREPEND, false)},
    {OK_CASE(BIN_OP_STAT, NULL, 0, NULL, NULL, 0, BIN_OP_STAT, false)},
    {OK_CASE(BIN_OP_STAT, NULL, 0, "settings", NULL, 0, BIN_OP_STAT, false)},
    {OK_CASE(BIN_OP_TOUCH, EXP_EXT, 4, "k", NULL, 0, BIN_OP_TOUCH, false), .exptime = 86400},
    {OK_CASE(BIN_OP_GAT, EXP_EXT, 4, "k", NULL, 0, BIN_OP_GAT, false), .exptime = 86400},
    {OK_CASE(BIN_OP_GATQ, EXP_EXT, 4, "k", NULL, 0, BIN_OP_GAT, false), .exptime = 86400},
    {OK_CASE(BIN_OP_GATK, EXP_EXT, 4, "k", NULL, 0, BIN_OP_GATK, true), .exptime = 86400},
    {OK_CASE(BIN_OP_GATKQ, EXP_EXT, 4, "k", NULL, 0, BIN_OP_GATK, true), .exptime = 86400},
    /* Verified: VERBOSITY is "Unknown command" in 1.6.18, the extras are swallowed again. */
    {ERR_CASE(BIN_OP_VERBOSITY, "\x00\x00\x00\x02", 4, NULL, NULL, 4), .verbosity = 2},
    /* Verified: the SASL opcodes when SASL is not enabled. */
    {ERR_CASE(BIN_OP_SASL_LIST_MECHS, NULL, 0, NULL, NULL, 0)},
    {ERR_CASE(BIN_OP_SASL_AUTH, NULL, 0, "PLAIN", "\x01u\x01p", 4)},
    {ERR_CASE(BIN_OP_SASL_STEP, NULL, 0, "PLAIN", "data!", 5)},
    /* Unknown opcodes: bodylen is swallowed after extras and key. */
    {ERR_CASE(0x1f, NULL, 0, NULL, "xyz", 3)},
    {ERR_CASE(0x30, "EE", 2, "key", "vv", 7)},
    {ERR_CASE(0xff, NULL, 0, NULL, NULL, 0)},
};

#define NCASES (sizeof(cases) / sizeof(cases[0]))

static char *build_case(const struct req_case *c, uint32_t opaque, size_t *len)
{
    return build_request(c->opcode, opaque, c->cas, c->extras, c->extlen, c->key, c->value, len);
}

static void check_case(const struct req_case *c, const char *buf, size_t len,
                       const struct bin_request *req, enum bin_result r, size_t consumed)
{
    size_t nkey = c->key != NULL ? strlen(c->key) : 0;
    size_t nvalue = c->value != NULL ? strlen(c->value) : 0;
    assert_int_equal(r, c->result);
    assert_int_equal(consumed, BIN_HEADER_LEN + c->extlen + nkey);
    assert_int_equal(len, consumed + nvalue);
    assert_int_equal(req->hdr.magic, BIN_MAGIC_REQ);
    assert_int_equal(req->hdr.opcode, c->opcode);
    assert_int_equal(req->hdr.opaque, 0x01020304);
    assert_true(req->hdr.cas == c->cas);
    assert_int_equal(req->hdr.bodylen, c->extlen + nkey + nvalue);
    assert_int_equal(req->cmd, c->cmd);
    assert_int_equal(req->quiet, bin_opcode_is_quiet(c->opcode));
    assert_int_equal(req->return_key, c->return_key);
    assert_span(&req->extras, c->extras, c->extlen);
    assert_ptr_equal(req->extras.p, buf + BIN_HEADER_LEN);
    assert_span(&req->key, c->key, nkey);
    assert_ptr_equal(req->key.p, buf + BIN_HEADER_LEN + c->extlen);
    assert_int_equal(req->flags, c->flags);
    assert_int_equal(req->exptime, c->exptime);
    assert_true(req->delta == c->delta);
    assert_true(req->initial == c->initial);
    assert_int_equal(req->verbosity, c->verbosity);
    assert_int_equal(req->value_len, c->value_len);
    if (r == BIN_OK) {
        assert_int_equal(req->err_status, 0);
        assert_false(req->err_close);
        assert_int_equal(req->err_swallow, 0);
        assert_memory_equal(buf + consumed, c->value, req->value_len);
    } else {
        assert_int_equal(req->err_status, c->err_status);
        assert_false(req->err_close);
        assert_int_equal(req->err_swallow, c->err_swallow);
    }
}

static void test_roundtrip_every_opcode(void **state)
{
    (void)state;
    bool seen[256] = {false};
    for (size_t i = 0; i < NCASES; i++) {
        size_t len = 0;
        char *buf = build_case(&cases[i], 0x01020304, &len);
        struct bin_request req;
        size_t consumed = 0;
        enum bin_result r = bin_parse_request(buf, len, &req, &consumed);
        check_case(&cases[i], buf, len, &req, r, consumed);
        seen[cases[i].opcode] = true;
        free(buf);
    }
    /* Every opcode memcached 1.6 knows appears in the table. */
    for (unsigned op = 0; op < 256; op++) {
        if (bin_opcode_name((uint8_t)op) != NULL) {
            assert_true(seen[op]);
        }
    }
}

/* Compares two parses of the same bytes held in different buffers. */
static void assert_req_same(const struct bin_request *a, const char *abase,
                            const struct bin_request *b, const char *bbase)
{
    assert_memory_equal(&a->hdr, &b->hdr, sizeof(a->hdr));
    assert_int_equal(a->cmd, b->cmd);
    assert_int_equal(a->quiet, b->quiet);
    assert_int_equal(a->return_key, b->return_key);
    assert_int_equal(a->extras.p - abase, b->extras.p - bbase);
    assert_int_equal(a->extras.len, b->extras.len);
    assert_int_equal(a->key.p - abase, b->key.p - bbase);
    assert_int_equal(a->key.len, b->key.len);
    assert_int_equal(a->flags, b->flags);
    assert_int_equal(a->exptime, b->exptime);
    assert_true(a->delta == b->delta);
    assert_true(a->initial == b->initial);
    assert_int_equal(a->verbosity, b->verbosity);
    assert_int_equal(a->value_len, b->value_len);
    assert_int_equal(a->err_status, b->err_status);
    assert_int_equal(a->err_close, b->err_close);
    assert_int_equal(a->err_swallow, b->err_swallow);
}

/*
 * Feeds every prefix of buf (in an exact-size copy): NEED_MORE with req
 * untouched until need bytes are there, then the same result as the whole.
 */
static void check_request_split(const char *whole, size_t len, size_t need)
{
    struct bin_request full;
    size_t full_consumed = 0;
    enum bin_result full_r = bin_parse_request(whole, len, &full, &full_consumed);
    assert_int_not_equal(full_r, BIN_NEED_MORE);
    for (size_t i = 0; i < len; i++) {
        char *part = dup_bytes(whole, i);
        struct bin_request req;
        struct bin_request untouched;
        memset(&req, 0xa5, sizeof(req));
        memcpy(&untouched, &req, sizeof(req));
        size_t consumed = 99;
        enum bin_result r = bin_parse_request(part, i, &req, &consumed);
        if (i < need) {
            assert_int_equal(r, BIN_NEED_MORE);
            assert_int_equal(consumed, 0);
            assert_memory_equal(&req, &untouched, sizeof(req));
        } else {
            assert_int_equal(r, full_r);
            assert_int_equal(consumed, full_consumed);
            if (r != BIN_CLOSE) {
                assert_req_same(&req, part, &full, whole);
            }
        }
        free(part);
    }
}

static void test_split_every_byte(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCASES; i++) {
        size_t len = 0;
        char *buf = build_case(&cases[i], 0x01020304, &len);
        size_t nkey = cases[i].key != NULL ? strlen(cases[i].key) : 0;
        check_request_split(buf, len, BIN_HEADER_LEN + cases[i].extlen + nkey);
        free(buf);
    }

    /* Rejections are decided once extras and key are there, as in memcached. */
    size_t len = 0;
    char key[251];
    memset(key, 'k', sizeof(key));
    char *b = raw_packet(BIN_MAGIC_REQ, BIN_OP_GET, 251, 0, 251, key, sizeof(key), &len);
    check_request_split(b, len, len);
    free(b);
    b = raw_packet(BIN_MAGIC_REQ, BIN_OP_GET, 3, 0, 2, "abc", 3, &len);
    check_request_split(b, len, len);
    free(b);
    b = raw_packet(BIN_MAGIC_REQ, BIN_OP_DELETE, 3, 4, 7, "EEEEabc", 7, &len);
    check_request_split(b, len, len);
    free(b);
    /* Bad magic closes once a whole header is buffered. */
    b = raw_packet(0x81, BIN_OP_NOOP, 0, 0, 0, NULL, 0, &len);
    check_request_split(b, len, BIN_HEADER_LEN);
    free(b);
}

static void test_pipeline(void **state)
{
    (void)state;
    /* All cases back to back, each value right after its request. */
    size_t total = 0;
    size_t lens[NCASES];
    char *bufs[NCASES];
    for (size_t i = 0; i < NCASES; i++) {
        bufs[i] = build_case(&cases[i], 0x01020304, &lens[i]);
        total += lens[i];
    }
    char *all = malloc(total);
    assert_non_null(all);
    size_t off = 0;
    for (size_t i = 0; i < NCASES; i++) {
        memcpy(all + off, bufs[i], lens[i]);
        off += lens[i];
    }
    off = 0;
    for (size_t i = 0; i < NCASES; i++) {
        struct bin_request req;
        size_t consumed = 0;
        enum bin_result r = bin_parse_request(all + off, total - off, &req, &consumed);
        check_case(&cases[i], all + off, lens[i], &req, r, consumed);
        /* The test cases carry no bytes to swallow beyond their own value. */
        off += consumed + (r == BIN_OK ? req.value_len : lens[i] - consumed);
        free(bufs[i]);
    }
    assert_int_equal(off, total);
    struct bin_request req;
    size_t consumed = 0;
    assert_int_equal(bin_parse_request(all + off, 0, &req, &consumed), BIN_NEED_MORE);
    free(all);
}

/* Validation rules (all verified against 1.6.18). */

static void test_bad_magic(void **state)
{
    (void)state;
    static const uint8_t magics[] = {0x00, 0x81, 0x7f, 'g', 0xff};
    for (size_t i = 0; i < sizeof(magics); i++) {
        size_t len = 0;
        char *b = raw_packet(magics[i], BIN_OP_NOOP, 0, 0, 0, NULL, 0, &len);
        struct bin_request req;
        size_t consumed = 99;
        assert_int_equal(bin_parse_request(b, BIN_HEADER_LEN - 1, &req, &consumed), BIN_NEED_MORE);
        assert_int_equal(bin_parse_request(b, len, &req, &consumed), BIN_CLOSE);
        assert_int_equal(consumed, 0);
        free(b);
    }
}

static void test_lengths_vs_body(void **state)
{
    (void)state;
    /* keylen > bodylen or keylen + extlen > bodylen: "Unknown command" and close. */
    expect_raw_reject(BIN_OP_GET, 3, 0, 2, 3, BIN_STATUS_UNKNOWN_COMMAND, true, 0);
    expect_raw_reject(BIN_OP_SET, 3, 8, 10, 11, BIN_STATUS_UNKNOWN_COMMAND, true, 0);
    expect_raw_reject(0x30, 3, 0, 2, 3, BIN_STATUS_UNKNOWN_COMMAND, true, 0);
    expect_raw_reject(BIN_OP_NOOP, 0, 4, 0, 4, BIN_STATUS_UNKNOWN_COMMAND, true, 0);
    /* That check comes before the key length check. */
    expect_raw_reject(BIN_OP_GET, 300, 0, 10, 300, BIN_STATUS_UNKNOWN_COMMAND, true, 0);
}

static void test_key_length(void **state)
{
    (void)state;
    char key[251];
    memset(key, 'a', sizeof(key));
    key[250] = '\0';
    size_t len = 0;
    char *b = build_request(BIN_OP_GET, 1, 0, NULL, 0, key, NULL, &len);
    struct bin_request req;
    size_t consumed = 0;
    assert_int_equal(bin_parse_request(b, len, &req, &consumed), BIN_OK);
    assert_int_equal(req.key.len, 250);
    free(b);

    /* 251 bytes: "Invalid arguments" and close, for any opcode. */
    expect_raw_einval(BIN_OP_GET, 251, 0, 251);
    expect_raw_einval(BIN_OP_SET, 251, 8, 259);
    expect_raw_reject(0x30, 251, 0, 251, 251, BIN_STATUS_EINVAL, true, 0);
    expect_raw_reject(BIN_OP_SASL_AUTH, 251, 0, 260, 251, BIN_STATUS_EINVAL, true, 0);
    expect_raw_einval(BIN_OP_GET, 16360, 0, 16360);
    expect_raw_einval(BIN_OP_SET, 16105, 255, 16360);

    /*
     * Header + extras + key above 16384 bytes: memcached's read buffer fills
     * up and it closes without a reply once 16384 bytes are in.
     */
    static const struct {
        uint16_t keylen;
        uint8_t extlen;
    } big[] = {{16361, 0}, {16106, 255}, {65535, 255}, {65535, 0}};
    for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++) {
        size_t nbody = BIN_REQ_PREFIX_MAX - BIN_HEADER_LEN;
        char *body = malloc(nbody);
        assert_non_null(body);
        memset(body, 'a', nbody);
        size_t blen = 0;
        uint32_t bodylen = (uint32_t)big[i].keylen + big[i].extlen;
        char *p = raw_packet(BIN_MAGIC_REQ, BIN_OP_GET, big[i].keylen, big[i].extlen, bodylen, body,
                             nbody, &blen);
        assert_int_equal(blen, BIN_REQ_PREFIX_MAX);
        consumed = 99;
        assert_int_equal(bin_parse_request(p, blen - 1, &req, &consumed), BIN_NEED_MORE);
        assert_int_equal(bin_parse_request(p, BIN_HEADER_LEN, &req, &consumed), BIN_NEED_MORE);
        assert_int_equal(bin_parse_request(p, blen, &req, &consumed), BIN_CLOSE);
        assert_int_equal(consumed, 0);
        free(p);
        free(body);
    }
}

static void test_per_opcode_rules(void **state)
{
    (void)state;
    /* GET family and DELETE: extlen 0, keylen > 0, bodylen == keylen. */
    static const uint8_t gets[] = {BIN_OP_GET,   BIN_OP_GETQ,   BIN_OP_GETK,
                                   BIN_OP_GETKQ, BIN_OP_DELETE, BIN_OP_DELETEQ};
    for (size_t i = 0; i < sizeof(gets); i++) {
        expect_raw_einval(gets[i], 3, 4, 7);                                /* extras */
        expect_raw_einval(gets[i], 0, 0, 0);                                /* no key */
        expect_raw_reject(gets[i], 3, 0, 4, 4, BIN_STATUS_EINVAL, true, 0); /* value */
    }
    /* SET ADD REPLACE: extlen 8, keylen > 0 (a value may be empty). */
    static const uint8_t stores[] = {BIN_OP_SET,  BIN_OP_SETQ,    BIN_OP_ADD,
                                     BIN_OP_ADDQ, BIN_OP_REPLACE, BIN_OP_REPLACEQ};
    for (size_t i = 0; i < sizeof(stores); i++) {
        expect_raw_einval(stores[i], 3, 4, 8);
        expect_raw_einval(stores[i], 3, 0, 3);
        expect_raw_einval(stores[i], 3, 12, 16);
        expect_raw_einval(stores[i], 0, 8, 9);
    }
    /* INCR DECR: extlen 20, keylen > 0, no value. */
    static const uint8_t ariths[] = {BIN_OP_INCREMENT, BIN_OP_INCREMENTQ, BIN_OP_DECREMENT,
                                     BIN_OP_DECREMENTQ};
    for (size_t i = 0; i < sizeof(ariths); i++) {
        expect_raw_einval(ariths[i], 3, 8, 11);
        expect_raw_einval(ariths[i], 0, 20, 20);
        expect_raw_reject(ariths[i], 3, 20, 24, 23, BIN_STATUS_EINVAL, true, 0);
    }
    /* APPEND PREPEND: extlen 0, keylen > 0. */
    static const uint8_t cats[] = {BIN_OP_APPEND, BIN_OP_APPENDQ, BIN_OP_PREPEND, BIN_OP_PREPENDQ};
    for (size_t i = 0; i < sizeof(cats); i++) {
        expect_raw_einval(cats[i], 3, 8, 12);
        expect_raw_reject(cats[i], 0, 0, 1, 0, BIN_STATUS_EINVAL, true, 0);
    }
    /* No extras, key or value at all. */
    static const uint8_t bare[] = {BIN_OP_VERSION, BIN_OP_NOOP, BIN_OP_QUIT, BIN_OP_QUITQ,
                                   BIN_OP_SASL_LIST_MECHS};
    for (size_t i = 0; i < sizeof(bare); i++) {
        expect_raw_einval(bare[i], 3, 0, 3);
        expect_raw_einval(bare[i], 0, 4, 4);
        expect_raw_reject(bare[i], 0, 0, 1, 0, BIN_STATUS_EINVAL, true, 0);
    }
    /* FLUSH: no key, no value, extlen 0 or 4. */
    static const uint8_t flushes[] = {BIN_OP_FLUSH, BIN_OP_FLUSHQ};
    for (size_t i = 0; i < sizeof(flushes); i++) {
        expect_raw_einval(flushes[i], 0, 8, 8);
        expect_raw_einval(flushes[i], 0, 2, 2);
        expect_raw_einval(flushes[i], 3, 0, 3);
        expect_raw_reject(flushes[i], 0, 0, 1, 0, BIN_STATUS_EINVAL, true, 0);
        expect_raw_reject(flushes[i], 0, 4, 5, 4, BIN_STATUS_EINVAL, true, 0);
    }
    /* TOUCH GAT GATK: extlen 4 and a key. */
    static const uint8_t touches[] = {BIN_OP_TOUCH, BIN_OP_GAT, BIN_OP_GATQ, BIN_OP_GATK,
                                      BIN_OP_GATKQ};
    for (size_t i = 0; i < sizeof(touches); i++) {
        expect_raw_einval(touches[i], 3, 0, 3);
        expect_raw_einval(touches[i], 3, 8, 11);
        expect_raw_einval(touches[i], 0, 4, 4);
    }
    /* STAT: extras are refused, anything else goes. */
    expect_raw_einval(BIN_OP_STAT, 0, 4, 4);
    /* SASL AUTH / STEP: no extras, a key (the mechanism). */
    expect_raw_einval(BIN_OP_SASL_AUTH, 0, 0, 0);
    expect_raw_reject(BIN_OP_SASL_STEP, 0, 0, 5, 0, BIN_STATUS_EINVAL, true, 0);
    expect_raw_einval(BIN_OP_SASL_AUTH, 5, 4, 9);
}

static void test_surplus_body_not_consumed(void **state)
{
    (void)state;
    /*
     * memcached ignores bodylen for TOUCH, GAT* and STAT: bytes past the key
     * are parsed as the next request (verified with a NOOP as "value").
     */
    char noop[BIN_HEADER_LEN];
    struct bin_packet pk = {.opcode = BIN_OP_NOOP, .opaque = 0x22222222};
    assert_int_equal(bin_compose_request(noop, sizeof(noop), &pk), BIN_HEADER_LEN);
    char ext[4];
    bin_encode_u32(ext, 100);
    static const uint8_t ops[] = {BIN_OP_TOUCH, BIN_OP_GAT,   BIN_OP_GATQ,
                                  BIN_OP_GATK,  BIN_OP_GATKQ, BIN_OP_STAT};
    for (size_t i = 0; i < sizeof(ops); i++) {
        bool stat = ops[i] == BIN_OP_STAT;
        char body[4 + 7 + BIN_HEADER_LEN];
        size_t nbody = 0;
        if (!stat) {
            memcpy(body, ext, 4);
            nbody = 4;
        }
        memcpy(body + nbody, "nogroup", 7);
        nbody += 7;
        memcpy(body + nbody, noop, sizeof(noop));
        nbody += sizeof(noop);
        size_t len = 0;
        char *b =
            raw_packet(BIN_MAGIC_REQ, ops[i], 7, stat ? 0 : 4, (uint32_t)nbody, body, nbody, &len);
        struct bin_request req;
        size_t consumed = 0;
        assert_int_equal(bin_parse_request(b, len, &req, &consumed), BIN_OK);
        assert_int_equal(req.value_len, 0);
        assert_int_equal(consumed, len - BIN_HEADER_LEN);
        assert_span(&req.key, "nogroup", 7);
        assert_int_equal(bin_parse_request(b + consumed, len - consumed, &req, &consumed), BIN_OK);
        assert_int_equal(req.cmd, BIN_OP_NOOP);
        assert_int_equal(req.hdr.opaque, 0x22222222);
        free(b);
    }
}

static void test_swallow_rules(void **state)
{
    (void)state;
    /* Unknown opcode: bodylen is swallowed after the 24 + extlen + keylen bytes. */
    expect_raw_reject(0x30, 3, 0, 3, 3, BIN_STATUS_UNKNOWN_COMMAND, false, 3);
    expect_raw_reject(0x30, 0, 4, 6, 4, BIN_STATUS_UNKNOWN_COMMAND, false, 6);
    expect_raw_reject(BIN_OP_VERBOSITY, 0, 0, 0, 0, BIN_STATUS_UNKNOWN_COMMAND, false, 0);
    /* SASL: bodylen - keylen. */
    expect_raw_reject(BIN_OP_SASL_AUTH, 5, 0, 29, 5, BIN_STATUS_UNKNOWN_COMMAND, false, 24);
    /* memcached's swallow count is an int: above INT32_MAX nothing is swallowed. */
    expect_raw_reject(0x30, 0, 0, 0x7fffffffu, 0, BIN_STATUS_UNKNOWN_COMMAND, false, 0x7fffffffu);
    expect_raw_reject(0x30, 0, 0, 0x80000000u, 0, BIN_STATUS_UNKNOWN_COMMAND, false, 0);
    expect_raw_reject(BIN_OP_SASL_AUTH, 1, 0, 0x80000001u, 1, BIN_STATUS_UNKNOWN_COMMAND, false, 0);
    assert_int_equal(bin_swallow_len(0), 0);
    assert_int_equal(bin_swallow_len(5), 5);
    assert_int_equal(bin_swallow_len(0x7fffffffu), 0x7fffffffu);
    assert_int_equal(bin_swallow_len(0x80000000u), 0);
    assert_int_equal(bin_swallow_len(0xffffffffu), 0);
}

static void test_ignored_fields_and_big_values(void **state)
{
    (void)state;
    /* Datatype and vbucket are ignored (verified: datatype 1, vbucket 5). */
    size_t len = 0;
    char *b = build_request(BIN_OP_GET, 7, 0, NULL, 0, "k1", NULL, &len);
    b[5] = 1;
    b[6] = 0;
    b[7] = 5;
    struct bin_request req;
    size_t consumed = 0;
    assert_int_equal(bin_parse_request(b, len, &req, &consumed), BIN_OK);
    assert_int_equal(req.hdr.datatype, 1);
    assert_int_equal(req.hdr.status, 5);
    free(b);

    /* A large value is announced, not waited for. */
    char ext[8];
    bin_encode_store_extras(ext, 1, 2);
    b = raw_packet(BIN_MAGIC_REQ, BIN_OP_SET, 3, 8, 0xfffffff0u, "\0\0\0\1\0\0\0\2abc", 11, &len);
    assert_int_equal(bin_parse_request(b, len, &req, &consumed), BIN_OK);
    assert_int_equal(consumed, len);
    assert_int_equal(req.value_len, 0xfffffff0u - 11);
    assert_int_equal(req.flags, 1);
    assert_int_equal(req.exptime, 2);
    free(b);

    /* An all-ones exptime stays unsigned. */
    bin_encode_store_extras(ext, 0xffffffffu, 0xffffffffu);
    b = build_request(BIN_OP_ADD, 7, 0, ext, 8, "k", "v", &len);
    assert_int_equal(bin_parse_request(b, len, &req, &consumed), BIN_OK);
    assert_int_equal(req.flags, 0xffffffffu);
    assert_int_equal(req.exptime, 0xffffffffu);
    free(b);
}

/* Response composers, against bytes captured from memcached 1.6.18. */

static void test_compose_known_answers(void **state)
{
    (void)state;
    char buf[BIN_ITEM_HEADER_MAX + 16];
    size_t n;

    n = bin_compose_ok(buf, BIN_OP_SET, 0x01020304, 10);
    assert_bytes_hex(buf, n, "81010000000000000000000001020304000000000000000a");

    n = bin_compose_item(buf, BIN_OP_GETK, 0x01020304, 10, 0xcafebabe, "k1", 2, 5);
    memcpy(buf + n, "hello", 5);
    assert_bytes_hex(buf, n + 5,
                     "810c0002040000000000000b01020304000000000000000acafebabe6b3168656c6c6f");

    n = bin_compose_item(buf, BIN_OP_TOUCH, 0x01020304, 10, 0xcafebabe, NULL, 0, 0);
    assert_bytes_hex(buf, n, "811c0000040000000000000401020304000000000000000acafebabe");

    n = bin_compose_key_miss(buf, BIN_OP_GETK, 0x01020304, "zz", 2);
    assert_bytes_hex(buf, n, "810c000200000001000000020102030400000000000000007a7a");

    n = bin_compose_error(buf, BIN_OP_GET, 0x01020304, BIN_STATUS_KEY_ENOENT);
    assert_bytes_hex(buf, n, "8100000000000001000000090102030400000000000000004e6f7420666f756e64");

    n = bin_compose_arith(buf, BIN_OP_INCREMENT, 0x01020304, 11, 0x0102030405060708ull);
    assert_int_equal(n, BIN_ARITH_LEN);
    assert_bytes_hex(buf, n, "81050000000000000000000801020304000000000000000b0102030405060708");

    n = bin_compose_version(buf, sizeof(buf), 0x01020304, "1.6.18");
    assert_bytes_hex(buf, n, "810b00000000000000000006010203040000000000000000312e362e3138");

    n = bin_compose_stat(buf, sizeof(buf), 0x01020304, "maxbytes", 8, "67108864", 8);
    assert_bytes_hex(buf, n,
                     "811000080000000000000010010203040000000000000000"
                     "6d61786279746573"
                     "3637313038383634");
    n = bin_compose_stat_u64(buf, sizeof(buf), 0x01020304, "maxbytes", 67108864);
    assert_bytes_hex(buf, n,
                     "811000080000000000000010010203040000000000000000"
                     "6d61786279746573"
                     "3637313038383634");

    n = bin_compose_stat_end(buf, 0x01020304);
    assert_bytes_hex(buf, n, "811000000000000000000000010203040000000000000000");
}

static void test_compose_errors_and_limits(void **state)
{
    (void)state;
    static const uint16_t statuses[] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x20, 0x81, 0x82};
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        char *buf = malloc(BIN_ERROR_MAX);
        assert_non_null(buf);
        /* A quiet opcode is echoed as is. */
        size_t n = bin_compose_error(buf, BIN_OP_ADDQ, 0xdeadbeef, statuses[i]);
        const char *text = bin_status_text(statuses[i]);
        assert_int_equal(n, BIN_HEADER_LEN + strlen(text));
        assert_true(n <= BIN_ERROR_MAX);
        struct bin_response res;
        size_t consumed = 0;
        assert_int_equal(bin_parse_response(buf, n, &res, &consumed), BIN_OK);
        assert_int_equal(consumed, n);
        assert_int_equal(res.hdr.opcode, BIN_OP_ADDQ);
        assert_int_equal(res.hdr.status, statuses[i]);
        assert_int_equal(res.hdr.opaque, 0xdeadbeef);
        assert_true(res.hdr.cas == 0);
        assert_span(&res.value, text, strlen(text));
        free(buf);
    }

    /* Generic composers refuse what does not fit. */
    char buf[64];
    struct bin_packet pk = {.opcode = BIN_OP_GET, .key = "abc", .keylen = 3};
    assert_int_equal(bin_compose_request(buf, 26, &pk), 0);
    assert_int_equal(bin_compose_request(buf, 27, &pk), 27);
    pk.value_len = 0xffffffffu - 3;
    assert_int_equal(bin_compose_request(buf, sizeof(buf), &pk), 27);
    pk.value_len = 0xffffffffu - 2;
    assert_int_equal(bin_compose_request(buf, sizeof(buf), &pk), 0);
    assert_int_equal(bin_compose_stat(buf, 24 + 3 + 2, 1, "abc", 3, "12", 2), 29);
    assert_int_equal(bin_compose_stat(buf, 24 + 3 + 1, 1, "abc", 3, "12", 2), 0);
    assert_int_equal(bin_compose_version(buf, 24 + 5, 1, "1.2.3"), 29);
    assert_int_equal(bin_compose_version(buf, 24 + 4, 1, "1.2.3"), 0);

    /* Requests get magic 0x80 and vbucket 0 even if a status is given. */
    struct bin_packet q = {.opcode = BIN_OP_NOOP, .status = 0x1234, .opaque = 9};
    assert_int_equal(bin_compose_request(buf, sizeof(buf), &q), BIN_HEADER_LEN);
    assert_bytes_hex(buf, BIN_HEADER_LEN,
                     "800a000000000000000000000000000900000000"
                     "00000000");
    assert_int_equal(bin_compose_response(buf, sizeof(buf), &q), BIN_HEADER_LEN);
    assert_bytes_hex(buf, BIN_HEADER_LEN,
                     "810a000000001234000000000000000900000000"
                     "00000000");
}

/* Response parser. */

struct resp_case {
    char *buf;
    size_t len;
};

/* Stores composed bytes tmp[0..n) plus a value as response k, in an exact-size buffer. */
static void add_resp(struct resp_case *out, size_t *k, const char *tmp, size_t n, const char *value,
                     size_t nvalue)
{
    assert_true(n >= BIN_HEADER_LEN);
    out[*k].len = n + nvalue;
    out[*k].buf = malloc(out[*k].len);
    assert_non_null(out[*k].buf);
    memcpy(out[*k].buf, tmp, n);
    if (nvalue > 0) {
        memcpy(out[*k].buf + n, value, nvalue);
    }
    (*k)++;
}

/* Builds a set of composed responses, values appended. */
static size_t build_responses(struct resp_case *out)
{
    char t[512];
    size_t k = 0;
    add_resp(out, &k, t, bin_compose_ok(t, BIN_OP_SET, 1, 42), NULL, 0);
    add_resp(out, &k, t, bin_compose_item(t, BIN_OP_GET, 2, 43, 0xcafebabe, NULL, 0, 5), "hello",
             5);
    add_resp(out, &k, t, bin_compose_item(t, BIN_OP_GETKQ, 3, 44, 7, "key", 3, 6), "world!", 6);
    add_resp(out, &k, t, bin_compose_item(t, BIN_OP_GAT, 4, 45, 0, NULL, 0, 0), NULL, 0);
    add_resp(out, &k, t, bin_compose_item(t, BIN_OP_TOUCH, 5, 46, 9, NULL, 0, 0), NULL, 0);
    add_resp(out, &k, t, bin_compose_key_miss(t, BIN_OP_GATK, 6, "missing", 7), NULL, 0);
    add_resp(out, &k, t, bin_compose_error(t, BIN_OP_INCREMENT, 7, BIN_STATUS_DELTA_BADVAL), NULL,
             0);
    add_resp(out, &k, t, bin_compose_arith(t, BIN_OP_DECREMENTQ, 8, 47, 0xfedcba9876543210ull),
             NULL, 0);
    add_resp(out, &k, t, bin_compose_stat(t, sizeof(t), 9, "uptime", 6, "12345", 5), NULL, 0);
    add_resp(out, &k, t, bin_compose_stat_end(t, 9), NULL, 0);
    add_resp(out, &k, t, bin_compose_version(t, sizeof(t), 10, "1.6.18"), NULL, 0);
    return k;
}

static void test_response_parser(void **state)
{
    (void)state;
    struct resp_case rs[16];
    size_t nr = build_responses(rs);
    assert_int_equal(nr, 11);
    struct bin_response res;
    size_t consumed = 0;

    assert_int_equal(bin_parse_response(rs[0].buf, rs[0].len, &res, &consumed), BIN_OK);
    assert_int_equal(res.hdr.magic, BIN_MAGIC_RES);
    assert_int_equal(res.hdr.opcode, BIN_OP_SET);
    assert_true(res.hdr.cas == 42);
    assert_int_equal(res.value_len, 0);
    assert_false(res.has_flags);

    assert_int_equal(bin_parse_response(rs[1].buf, rs[1].len, &res, &consumed), BIN_OK);
    assert_true(res.has_flags);
    assert_int_equal(res.flags, 0xcafebabe);
    assert_span(&res.key, NULL, 0);
    assert_span(&res.value, "hello", 5);
    assert_int_equal(res.hdr.opaque, 2);

    assert_int_equal(bin_parse_response(rs[2].buf, rs[2].len, &res, &consumed), BIN_OK);
    assert_int_equal(res.hdr.opcode, BIN_OP_GETKQ);
    assert_int_equal(res.flags, 7);
    assert_span(&res.key, "key", 3);
    assert_span(&res.value, "world!", 6);

    assert_int_equal(bin_parse_response(rs[4].buf, rs[4].len, &res, &consumed), BIN_OK);
    assert_true(res.has_flags);
    assert_int_equal(res.flags, 9);
    assert_int_equal(res.value.len, 0);

    assert_int_equal(bin_parse_response(rs[5].buf, rs[5].len, &res, &consumed), BIN_OK);
    assert_int_equal(res.hdr.status, BIN_STATUS_KEY_ENOENT);
    assert_span(&res.key, "missing", 7);
    assert_int_equal(res.value.len, 0);

    assert_int_equal(bin_parse_response(rs[6].buf, rs[6].len, &res, &consumed), BIN_OK);
    assert_int_equal(res.hdr.status, BIN_STATUS_DELTA_BADVAL);
    assert_false(res.has_number);
    assert_span(&res.value, "Non-numeric server-side value for incr or decr", 46);

    assert_int_equal(bin_parse_response(rs[7].buf, rs[7].len, &res, &consumed), BIN_OK);
    assert_true(res.has_number);
    assert_true(res.number == 0xfedcba9876543210ull);
    assert_true(res.hdr.cas == 47);

    assert_int_equal(bin_parse_response(rs[8].buf, rs[8].len, &res, &consumed), BIN_OK);
    assert_int_equal(res.hdr.opcode, BIN_OP_STAT);
    assert_span(&res.key, "uptime", 6);
    assert_span(&res.value, "12345", 5);

    assert_int_equal(bin_parse_response(rs[9].buf, rs[9].len, &res, &consumed), BIN_OK);
    assert_int_equal(res.key.len + res.value.len, 0);

    assert_int_equal(bin_parse_response(rs[10].buf, rs[10].len, &res, &consumed), BIN_OK);
    assert_span(&res.value, "1.6.18", 6);

    /* Streaming variant: stops after the key. */
    assert_int_equal(bin_parse_response_head(rs[2].buf, rs[2].len, &res, &consumed), BIN_OK);
    assert_int_equal(consumed, BIN_HEADER_LEN + 4 + 3);
    assert_int_equal(res.value_len, 6);
    assert_int_equal(res.value.len, 0);
    assert_ptr_equal(res.value.p, rs[2].buf + consumed);
    assert_int_equal(bin_parse_response_head(rs[7].buf, rs[7].len, &res, &consumed), BIN_OK);
    assert_false(res.has_number);

    /* Back to back. */
    size_t total = 0;
    for (size_t i = 0; i < nr; i++) {
        total += rs[i].len;
    }
    char *all = malloc(total);
    assert_non_null(all);
    size_t off = 0;
    for (size_t i = 0; i < nr; i++) {
        memcpy(all + off, rs[i].buf, rs[i].len);
        off += rs[i].len;
    }
    off = 0;
    for (size_t i = 0; i < nr; i++) {
        assert_int_equal(bin_parse_response(all + off, total - off, &res, &consumed), BIN_OK);
        assert_int_equal(consumed, rs[i].len);
        off += consumed;
    }
    assert_int_equal(bin_parse_response(all + off, 0, &res, &consumed), BIN_NEED_MORE);
    free(all);
    for (size_t i = 0; i < nr; i++) {
        free(rs[i].buf);
    }

    /* Not a response, or lengths that do not add up: close. */
    size_t len = 0;
    char *b = raw_packet(BIN_MAGIC_REQ, BIN_OP_NOOP, 0, 0, 0, NULL, 0, &len);
    assert_int_equal(bin_parse_response(b, len, &res, &consumed), BIN_CLOSE);
    free(b);
    b = raw_packet(BIN_MAGIC_RES, BIN_OP_GET, 3, 4, 6, "EEEEabc", 7, &len);
    assert_int_equal(bin_parse_response(b, len, &res, &consumed), BIN_CLOSE);
    assert_int_equal(bin_parse_response_head(b, len, &res, &consumed), BIN_CLOSE);
    free(b);
}

static void assert_res_same(const struct bin_response *a, const char *abase,
                            const struct bin_response *b, const char *bbase)
{
    assert_memory_equal(&a->hdr, &b->hdr, sizeof(a->hdr));
    assert_int_equal(a->extras.p - abase, b->extras.p - bbase);
    assert_int_equal(a->extras.len, b->extras.len);
    assert_int_equal(a->key.p - abase, b->key.p - bbase);
    assert_int_equal(a->key.len, b->key.len);
    assert_int_equal(a->value.p - abase, b->value.p - bbase);
    assert_int_equal(a->value.len, b->value.len);
    assert_int_equal(a->value_len, b->value_len);
    assert_int_equal(a->has_flags, b->has_flags);
    assert_int_equal(a->flags, b->flags);
    assert_int_equal(a->has_number, b->has_number);
    assert_true(a->number == b->number);
}

static void test_response_split_every_byte(void **state)
{
    (void)state;
    struct resp_case rs[16];
    size_t nr = build_responses(rs);
    for (size_t c = 0; c < nr; c++) {
        for (int head = 0; head < 2; head++) {
            enum bin_result (*parse)(const char *, size_t, struct bin_response *, size_t *) =
                head ? bin_parse_response_head : bin_parse_response;
            struct bin_response full;
            size_t full_consumed = 0;
            assert_int_equal(parse(rs[c].buf, rs[c].len, &full, &full_consumed), BIN_OK);
            for (size_t i = 0; i < rs[c].len; i++) {
                char *part = dup_bytes(rs[c].buf, i);
                struct bin_response res;
                struct bin_response untouched;
                memset(&res, 0x5a, sizeof(res));
                memcpy(&untouched, &res, sizeof(res));
                size_t consumed = 99;
                enum bin_result r = parse(part, i, &res, &consumed);
                if (i < full_consumed) {
                    assert_int_equal(r, BIN_NEED_MORE);
                    assert_int_equal(consumed, 0);
                    assert_memory_equal(&res, &untouched, sizeof(res));
                } else {
                    assert_int_equal(r, BIN_OK);
                    assert_int_equal(consumed, full_consumed);
                    assert_res_same(&res, part, &full, rs[c].buf);
                }
                free(part);
            }
        }
        free(rs[c].buf);
    }
}

/* Server request -> composed reply -> client parse, for the common flows. */
static void test_request_reply_flow(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCASES; i++) {
        size_t len = 0;
        char *b = build_case(&cases[i], 0x0a0b0c0d, &len);
        struct bin_request req;
        size_t consumed = 0;
        enum bin_result r = bin_parse_request(b, len, &req, &consumed);
        char out[BIN_ERROR_MAX + BIN_ITEM_HEADER_MAX];
        size_t n;
        if (r == BIN_ERROR) {
            n = bin_compose_error(out, req.hdr.opcode, req.hdr.opaque, req.err_status);
        } else if (req.return_key) {
            n = bin_compose_item(out, req.hdr.opcode, req.hdr.opaque, 1, 2, req.key.p, req.key.len,
                                 0);
        } else {
            n = bin_compose_ok(out, req.hdr.opcode, req.hdr.opaque, 0);
        }
        char *exact = dup_bytes(out, n);
        struct bin_response res;
        size_t rc = 0;
        assert_int_equal(bin_parse_response(exact, n, &res, &rc), BIN_OK);
        assert_int_equal(rc, n);
        assert_int_equal(res.hdr.opcode, cases[i].opcode);
        assert_int_equal(res.hdr.opaque, 0x0a0b0c0d);
        if (req.return_key) {
            assert_span(&res.key, req.key.p, req.key.len);
        }
        if (r == BIN_ERROR) {
            assert_int_equal(res.hdr.status, BIN_STATUS_UNKNOWN_COMMAND);
            assert_span(&res.value, "Unknown command", 15);
        }
        free(exact);
        free(b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_byte_order),
        cmocka_unit_test(test_quiet_mapping),
        cmocka_unit_test(test_status_text),
        cmocka_unit_test(test_roundtrip_every_opcode),
        cmocka_unit_test(test_split_every_byte),
        cmocka_unit_test(test_pipeline),
        cmocka_unit_test(test_bad_magic),
        cmocka_unit_test(test_lengths_vs_body),
        cmocka_unit_test(test_key_length),
        cmocka_unit_test(test_per_opcode_rules),
        cmocka_unit_test(test_surplus_body_not_consumed),
        cmocka_unit_test(test_swallow_rules),
        cmocka_unit_test(test_ignored_fields_and_big_values),
        cmocka_unit_test(test_compose_known_answers),
        cmocka_unit_test(test_compose_errors_and_limits),
        cmocka_unit_test(test_response_parser),
        cmocka_unit_test(test_response_split_every_byte),
        cmocka_unit_test(test_request_reply_flow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * fuzz_binary.c - libFuzzer driver for the binary protocol codec
 * (proto/binary.h), server side and client side.
 *
 * Requests: the input is parsed with bin_parse_request() as a pipelined
 * stream, skipping value_len bytes after BIN_OK and err_swallow bytes after
 * a BIN_ERROR that keeps the connection, as a server does. Each result is
 * checked against the header (consumed, spans, quiet and key flags, decoded
 * extras, memcached's length rules), re-parsed from prefixes of itself
 * (short ones must give BIN_NEED_MORE, whole ones the same result), and a
 * valid request is composed again with bin_compose_request() and must parse
 * back to the same fields. The response composers are fed from the request
 * and their packets must parse back with bin_parse_response().
 *
 * Responses: the same bytes go through bin_parse_response() and
 * bin_parse_response_head() as a stream, once as they are and once with the
 * magic of every packet forced to 0x81 so request seeds reach the parser
 * too; the two parsers must agree on the header, extras and key.
 *
 * What this is not: a test of what the server does with a request; see
 * fuzz_server.c.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "binary.h"
#include "fuzz_common.h"

#define MAX_PACKETS 512

static uint32_t be32(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;
    return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

static uint64_t be64(const char *p)
{
    return (uint64_t)be32(p) << 32 | be32(p + 4);
}

static bool is_store(uint8_t cmd)
{
    return cmd == BIN_OP_SET || cmd == BIN_OP_ADD || cmd == BIN_OP_REPLACE ||
           cmd == BIN_OP_APPEND || cmd == BIN_OP_PREPEND;
}

static bool same_header(const struct bin_header *a, const struct bin_header *b)
{
    return a->magic == b->magic && a->opcode == b->opcode && a->keylen == b->keylen &&
           a->extlen == b->extlen && a->datatype == b->datatype && a->status == b->status &&
           a->bodylen == b->bodylen && a->opaque == b->opaque && a->cas == b->cas;
}

/* Two parses of the same request from two copies agree. */
static void check_same_request(const struct bin_request *a, const char *abase,
                               const struct bin_request *b, const char *bbase)
{
    FUZZ_CHECK(same_header(&a->hdr, &b->hdr));
    FUZZ_CHECK(a->cmd == b->cmd && a->quiet == b->quiet && a->return_key == b->return_key);
    FUZZ_CHECK(fuzz_off(a->extras.p, abase) == fuzz_off(b->extras.p, bbase));
    FUZZ_CHECK(a->extras.len == b->extras.len);
    FUZZ_CHECK(fuzz_off(a->key.p, abase) == fuzz_off(b->key.p, bbase));
    FUZZ_CHECK(a->key.len == b->key.len);
    FUZZ_CHECK(a->flags == b->flags && a->exptime == b->exptime);
    FUZZ_CHECK(a->delta == b->delta && a->initial == b->initial);
    FUZZ_CHECK(a->verbosity == b->verbosity && a->value_len == b->value_len);
    FUZZ_CHECK(a->err_status == b->err_status && a->err_close == b->err_close);
    FUZZ_CHECK(a->err_swallow == b->err_swallow);
}

/* Invariants of one bin_parse_request() result over buf[0..len). */
static void check_request(const char *buf, size_t len, enum bin_result r,
                          const struct bin_request *req, size_t used)
{
    FUZZ_CHECK(used <= len);
    if (len < BIN_HEADER_LEN) {
        FUZZ_CHECK(r == BIN_NEED_MORE && used == 0);
        return;
    }
    struct bin_header h;
    bin_header_decode(buf, &h);
    size_t prefix = BIN_HEADER_LEN + (size_t)h.extlen + h.keylen;
    switch (r) {
    case BIN_NEED_MORE:
        FUZZ_CHECK(used == 0 && h.magic == BIN_MAGIC_REQ);
        FUZZ_CHECK(len < prefix && len < BIN_REQ_PREFIX_MAX);
        return;
    case BIN_CLOSE:
        FUZZ_CHECK(used == 0);
        FUZZ_CHECK(h.magic != BIN_MAGIC_REQ ||
                   (prefix > BIN_REQ_PREFIX_MAX && len >= BIN_REQ_PREFIX_MAX));
        return;
    case BIN_OK:
    case BIN_ERROR:
        break;
    default:
        FUZZ_CHECK(!"unknown bin_result");
    }
    FUZZ_CHECK(h.magic == BIN_MAGIC_REQ);
    FUZZ_CHECK(used == prefix && prefix <= BIN_REQ_PREFIX_MAX);
    FUZZ_CHECK(same_header(&req->hdr, &h));
    FUZZ_CHECK(req->cmd == bin_opcode_base(h.opcode));
    FUZZ_CHECK(req->quiet == bin_opcode_is_quiet(h.opcode));
    FUZZ_CHECK(req->quiet == (req->cmd != h.opcode));
    FUZZ_CHECK(req->extras.p == buf + BIN_HEADER_LEN && req->extras.len == h.extlen);
    FUZZ_CHECK(req->key.p == buf + BIN_HEADER_LEN + h.extlen && req->key.len == h.keylen);
    FUZZ_CHECK(fuzz_span_in(req->key.p, req->key.len, buf, used));

    if (r == BIN_ERROR) {
        FUZZ_CHECK(bin_status_text(req->err_status) != NULL);
        FUZZ_CHECK(req->err_status != BIN_STATUS_OK);
        FUZZ_CHECK(!req->err_close || req->err_swallow == 0);
        FUZZ_CHECK(req->err_swallow <= INT32_MAX);
        FUZZ_CHECK(req->value_len == 0);
        if (!req->err_close) {
            FUZZ_CHECK(req->err_status == BIN_STATUS_UNKNOWN_COMMAND);
            FUZZ_CHECK(h.keylen <= BIN_KEY_MAX);
        }
        return;
    }

    /* BIN_OK: memcached's framing and length rules hold. */
    FUZZ_CHECK(bin_opcode_name(h.opcode) != NULL);
    FUZZ_CHECK(h.keylen <= BIN_KEY_MAX);
    FUZZ_CHECK((uint64_t)h.extlen + h.keylen <= h.bodylen);
    FUZZ_CHECK(req->return_key == (req->cmd == BIN_OP_GETK || req->cmd == BIN_OP_GATK));
    FUZZ_CHECK(req->err_status == 0 && !req->err_close && req->err_swallow == 0);
    if (is_store(req->cmd)) {
        FUZZ_CHECK(req->value_len == h.bodylen - h.extlen - h.keylen);
        FUZZ_CHECK(h.keylen >= 1);
    } else {
        FUZZ_CHECK(req->value_len == 0);
    }
    switch (req->cmd) {
    case BIN_OP_SET:
    case BIN_OP_ADD:
    case BIN_OP_REPLACE:
        FUZZ_CHECK(h.extlen == 8);
        FUZZ_CHECK(req->flags == be32(req->extras.p) && req->exptime == be32(req->extras.p + 4));
        break;
    case BIN_OP_INCREMENT:
    case BIN_OP_DECREMENT:
        FUZZ_CHECK(h.extlen == 20 && h.keylen >= 1 && h.bodylen == h.keylen + 20u);
        FUZZ_CHECK(req->delta == be64(req->extras.p));
        FUZZ_CHECK(req->initial == be64(req->extras.p + 8));
        FUZZ_CHECK(req->exptime == be32(req->extras.p + 16));
        break;
    case BIN_OP_GET:
    case BIN_OP_GETK:
    case BIN_OP_DELETE:
        FUZZ_CHECK(h.extlen == 0 && h.keylen >= 1 && h.bodylen == h.keylen);
        break;
    case BIN_OP_TOUCH:
    case BIN_OP_GAT:
    case BIN_OP_GATK:
        FUZZ_CHECK(h.extlen == 4 && h.keylen >= 1);
        FUZZ_CHECK(req->exptime == be32(req->extras.p));
        break;
    case BIN_OP_FLUSH:
        FUZZ_CHECK(h.keylen == 0 && h.bodylen == h.extlen);
        FUZZ_CHECK(req->exptime == (h.extlen == 4 ? be32(req->extras.p) : 0));
        break;
    case BIN_OP_NOOP:
    case BIN_OP_VERSION:
    case BIN_OP_QUIT:
        FUZZ_CHECK(h.extlen == 0 && h.keylen == 0 && h.bodylen == 0);
        break;
    case BIN_OP_APPEND:
    case BIN_OP_PREPEND:
    case BIN_OP_STAT:
        FUZZ_CHECK(h.extlen == 0);
        break;
    default:
        /* Nothing else is served: SASL and unknown opcodes are errors. */
        FUZZ_CHECK(!"BIN_OK for an opcode that is not served");
    }
}

/* Parses a heap copy of buf[0..k) against the whole-buffer result. */
static void check_prefix(const char *buf, size_t len, enum bin_result whole_r,
                         const struct bin_request *whole, size_t whole_used, size_t k)
{
    if (k > len) {
        return;
    }
    char *copy = fuzz_copy(buf, k);
    struct bin_request req;
    size_t used = 777;
    enum bin_result r = bin_parse_request(copy, k, &req, &used);
    check_request(copy, k, r, &req, used);
    if ((whole_r == BIN_OK || whole_r == BIN_ERROR) && k >= whole_used) {
        FUZZ_CHECK(r == whole_r && used == whole_used);
        check_same_request(&req, copy, whole, buf);
    } else if (whole_r == BIN_OK || whole_r == BIN_ERROR) {
        FUZZ_CHECK(r == BIN_NEED_MORE);
    } else if (whole_r == BIN_NEED_MORE) {
        FUZZ_CHECK(r == BIN_NEED_MORE);
    } else {
        FUZZ_CHECK(r == BIN_CLOSE || r == BIN_NEED_MORE);
    }
    free(copy);
}

/* A composed response (body included) parses back with its header fields. */
static void check_response_packet(const char *pkt, size_t n, uint8_t opcode, uint16_t status,
                                  uint32_t opaque, uint64_t cas)
{
    char *copy = fuzz_copy(pkt, n);
    struct bin_response res;
    size_t used = 0;
    FUZZ_CHECK(bin_parse_response_head(copy, n, &res, &used) == BIN_OK);
    FUZZ_CHECK(res.hdr.opcode == opcode && res.hdr.status == status);
    FUZZ_CHECK(res.hdr.opaque == opaque && res.hdr.cas == cas);
    FUZZ_CHECK(used == BIN_HEADER_LEN + (size_t)res.hdr.extlen + res.hdr.keylen);
    FUZZ_CHECK(bin_parse_response(copy, n, &res, &used) == BIN_OK && used == n);
    free(copy);
}

/* Every response composer, fed from a valid request. */
static void check_composers(const struct bin_request *req)
{
    uint8_t op = req->hdr.opcode;
    uint32_t opaque = req->hdr.opaque;
    char *buf = malloc(BIN_HEADER_LEN + BIN_KEY_MAX + 64);
    FUZZ_CHECK(buf != NULL);

    size_t n = bin_compose_ok(buf, op, opaque, req->hdr.cas);
    check_response_packet(buf, n, op, 0, opaque, req->hdr.cas);

    uint16_t statuses[] = {BIN_STATUS_KEY_ENOENT, BIN_STATUS_E2BIG, BIN_STATUS_ENOMEM,
                           (uint16_t)(req->hdr.cas & 0xffff)};
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        n = bin_compose_error(buf, op, opaque, statuses[i]);
        FUZZ_CHECK(n <= BIN_ERROR_MAX);
        check_response_packet(buf, n, op, statuses[i], opaque, 0);
    }

    const char *key = req->return_key ? req->key.p : NULL;
    size_t nkey = req->return_key ? req->key.len : 0;
    n = bin_compose_item(buf, op, opaque, req->hdr.cas, req->flags, key, nkey, 0);
    FUZZ_CHECK(n <= BIN_ITEM_HEADER_MAX);
    check_response_packet(buf, n, op, 0, opaque, req->hdr.cas);
    struct bin_response res;
    size_t used;
    FUZZ_CHECK(bin_parse_response(buf, n, &res, &used) == BIN_OK);
    FUZZ_CHECK(res.has_flags && res.flags == req->flags && res.key.len == nkey);
    FUZZ_CHECK(nkey == 0 || memcmp(res.key.p, key, nkey) == 0);

    n = bin_compose_key_miss(buf, op, opaque, req->key.p, req->key.len);
    check_response_packet(buf, n, op, BIN_STATUS_KEY_ENOENT, opaque, 0);

    n = bin_compose_arith(buf, op, opaque, req->hdr.cas, req->delta);
    FUZZ_CHECK(n == BIN_ARITH_LEN);
    FUZZ_CHECK(bin_parse_response(buf, n, &res, &used) == BIN_OK && used == n);
    if (req->cmd == BIN_OP_INCREMENT || req->cmd == BIN_OP_DECREMENT) {
        FUZZ_CHECK(res.has_number && res.number == req->delta);
    }

    /* A STAT packet named after the key, into a buffer that may be too small. */
    size_t cap = BIN_HEADER_LEN + req->key.len / 2 + 8;
    n = bin_compose_stat(buf, cap, opaque, req->key.p, req->key.len, "12345678", 8);
    FUZZ_CHECK(n == 0 || n == BIN_HEADER_LEN + req->key.len + 8);
    if (n > 0) {
        check_response_packet(buf, n, BIN_OP_STAT, 0, opaque, 0);
    }
    n = bin_compose_stat_u64(buf, BIN_HEADER_LEN + 64, opaque, "x", req->delta);
    FUZZ_CHECK(n > BIN_HEADER_LEN);
    n = bin_compose_stat_end(buf, opaque);
    check_response_packet(buf, n, BIN_OP_STAT, 0, opaque, 0);
    n = bin_compose_version(buf, BIN_HEADER_LEN + 8, opaque, "1.2.3");
    check_response_packet(buf, n, BIN_OP_VERSION, 0, opaque, 0);
    free(buf);
}

/* A valid request composed again from its fields parses back the same. */
static void check_recompose(const struct bin_request *req)
{
    struct bin_packet pk = {
        .opcode = req->hdr.opcode,
        .opaque = req->hdr.opaque,
        .cas = req->hdr.cas,
        .extras = req->extras.p,
        .extlen = (uint8_t)req->extras.len,
        .key = req->key.p,
        .keylen = (uint16_t)req->key.len,
        .value_len = req->value_len,
    };
    size_t cap = BIN_HEADER_LEN + req->extras.len + req->key.len;
    char *buf = fuzz_copy("", cap);
    size_t n = bin_compose_request(buf, cap, &pk);
    FUZZ_CHECK(n == cap);
    FUZZ_CHECK(bin_compose_request(buf, cap - 1, &pk) == 0);
    struct bin_request back;
    size_t used;
    /* Surplus body bytes (TOUCH, GAT, STAT) are dropped; nothing else changes. */
    FUZZ_CHECK(bin_parse_request(buf, n, &back, &used) == BIN_OK && used == n);
    FUZZ_CHECK(back.cmd == req->cmd && back.quiet == req->quiet);
    FUZZ_CHECK(back.key.len == req->key.len);
    FUZZ_CHECK(memcmp(back.key.p, req->key.p, req->key.len) == 0);
    FUZZ_CHECK(back.value_len == req->value_len);
    FUZZ_CHECK(back.flags == req->flags && back.exptime == req->exptime);
    FUZZ_CHECK(back.delta == req->delta && back.initial == req->initial);
    FUZZ_CHECK(back.hdr.opaque == req->hdr.opaque && back.hdr.cas == req->hdr.cas);
    free(buf);

    /* The encoders agree with the decoded extras. */
    char ex[BIN_EXTLEN_ARITH];
    bin_encode_store_extras(ex, req->flags, req->exptime);
    FUZZ_CHECK(be32(ex) == req->flags && be32(ex + 4) == req->exptime);
    bin_encode_arith_extras(ex, req->delta, req->initial, req->exptime);
    FUZZ_CHECK(be64(ex) == req->delta && be64(ex + 8) == req->initial);
    FUZZ_CHECK(be32(ex + 16) == req->exptime);
    bin_encode_u32(ex, req->hdr.opaque);
    FUZZ_CHECK(be32(ex) == req->hdr.opaque);
}

static void request_stream(const char *buf, size_t size)
{
    size_t off = 0;
    for (unsigned n = 0; off < size && n < MAX_PACKETS; n++) {
        const char *p = buf + off;
        size_t len = size - off;
        struct bin_request req;
        size_t used = 777;
        enum bin_result r = bin_parse_request(p, len, &req, &used);
        check_request(p, len, r, &req, used);
        size_t splits[] = {
            0, 1, BIN_HEADER_LEN - 1, BIN_HEADER_LEN, used / 2, used > 0 ? used - 1 : 0, used, len};
        for (size_t i = 0; i < sizeof(splits) / sizeof(splits[0]); i++) {
            check_prefix(p, len, r, &req, used, splits[i]);
        }
        if (r == BIN_OK) {
            check_recompose(&req);
            check_composers(&req);
            off += used;
            off = req.value_len > size - off ? size : off + req.value_len;
        } else if (r == BIN_ERROR && !req.err_close) {
            off += used;
            off = req.err_swallow > size - off ? size : off + req.err_swallow;
        } else {
            break;
        }
    }
}

/* Invariants of one response parse over buf[0..len). */
static void check_response(const char *buf, size_t len, enum bin_result r,
                           const struct bin_response *res, size_t used, bool whole)
{
    FUZZ_CHECK(used <= len);
    if (r != BIN_OK) {
        FUZZ_CHECK(used == 0 && (r == BIN_NEED_MORE || r == BIN_CLOSE));
        return;
    }
    FUZZ_CHECK(len >= BIN_HEADER_LEN);
    struct bin_header h;
    bin_header_decode(buf, &h);
    FUZZ_CHECK(same_header(&res->hdr, &h) && h.magic == BIN_MAGIC_RES);
    size_t prefix = BIN_HEADER_LEN + (size_t)h.extlen + h.keylen;
    FUZZ_CHECK(used == (whole ? BIN_HEADER_LEN + (size_t)h.bodylen : prefix));
    FUZZ_CHECK(res->extras.p == buf + BIN_HEADER_LEN && res->extras.len == h.extlen);
    FUZZ_CHECK(res->key.p == buf + BIN_HEADER_LEN + h.extlen && res->key.len == h.keylen);
    FUZZ_CHECK(res->value.p == buf + prefix);
    FUZZ_CHECK(res->value_len == h.bodylen - h.extlen - h.keylen);
    FUZZ_CHECK(res->value.len == (whole ? res->value_len : 0));
    FUZZ_CHECK(fuzz_span_in(res->value.p, res->value.len, buf, used));
    FUZZ_CHECK(res->has_flags == (h.extlen == 4));
    FUZZ_CHECK(!res->has_flags || res->flags == be32(res->extras.p));
    if (res->has_number) {
        FUZZ_CHECK(whole && res->value_len == 8 && res->number == be64(res->value.p));
    }
}

static void response_stream(const char *data, size_t size, bool force_magic)
{
    char *buf = fuzz_copy(data, size);
    size_t off = 0;
    for (unsigned n = 0; off < size && n < MAX_PACKETS; n++) {
        char *p = buf + off;
        size_t len = size - off;
        if (force_magic) {
            p[0] = (char)BIN_MAGIC_RES;
        }
        struct bin_response res, head;
        size_t used = 777, hused = 777;
        enum bin_result r = bin_parse_response(p, len, &res, &used);
        check_response(p, len, r, &res, used, true);
        enum bin_result hr = bin_parse_response_head(p, len, &head, &hused);
        check_response(p, len, hr, &head, hused, false);
        if (r == BIN_OK) {
            /* The streaming parser needs less, so it must succeed too. */
            FUZZ_CHECK(hr == BIN_OK && same_header(&head.hdr, &res.hdr));
            FUZZ_CHECK(head.extras.p == res.extras.p && head.key.p == res.key.p);
            FUZZ_CHECK(head.value_len == res.value_len && head.flags == res.flags);
            /* One byte short of the packet is never enough. */
            char *shorter = fuzz_copy(p, used - 1);
            struct bin_response tmp;
            size_t tused;
            FUZZ_CHECK(bin_parse_response(shorter, used - 1, &tmp, &tused) == BIN_NEED_MORE);
            free(shorter);
            off += used;
        } else if (hr == BIN_OK) {
            FUZZ_CHECK(r == BIN_NEED_MORE);
            off += hused;
            off = head.value_len > size - off ? size : off + head.value_len;
        } else {
            FUZZ_CHECK(r == hr);
            break;
        }
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    request_stream(buf, size);
    response_stream(buf, size, false);
    response_stream(buf, size, true);
    return 0;
}

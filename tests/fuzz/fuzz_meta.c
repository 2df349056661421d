/*
 * fuzz_meta.c - libFuzzer driver for the meta protocol codec (proto/meta.h).
 *
 * The input is a text-protocol byte stream. Every line text_parse() frames
 * as TEXT_CMD_META goes through meta_parse(), and the driver checks:
 *   - the result: return value and err agree, err_after_exec only with an
 *     over-long opaque on mg/ma, swallow/read_len for ms;
 *   - the key: the token is at most 250 bytes, a decoded (b) key at most
 *     187 and inside keybuf, and it survives base64 encode + decode;
 *   - the flags: order[] holds each flag once and matches the flag bits,
 *     the opaque starts with 'O' and is at most META_OPAQUE_MAX bytes, the
 *     mode is the M token's character;
 *   - the composers, for a valid request and every return code, with a
 *     few fixed item facts (including the widest ones): the line fits in
 *     META_HEADER_MAX, ends with "\r\n" and holds no other newline, and
 *     composing into a buffer of exactly that size gives the same bytes
 *     while one byte less gives 0.
 * Data blocks (ms read_len, and a text storage command's bytes + 2) are
 * skipped as a server skips them, so pipelined streams stay in step.
 *
 * What this is not: a test of the server's use of the results; see
 * fuzz_server.c.
 */
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"
#include "meta.h"
#include "text.h"

#define MAX_LINES 512
/* The largest key a b flag can decode to: 250 base64 bytes. */
#define META_DECODED_MAX 187

static const enum meta_rc all_rcs[] = {META_RC_HD, META_RC_VA, META_RC_EN, META_RC_NF,
                                       META_RC_NS, META_RC_EX, META_RC_MN};

static bool is_flag_char(char c)
{
    return meta_flag_bit(c) >= 0;
}

static void check_base64_roundtrip(const char *key, size_t n)
{
    char enc[4 * ((META_KEYBUF_SIZE + 2) / 3)];
    char dec[META_KEYBUF_SIZE];
    FUZZ_CHECK(n <= META_KEYBUF_SIZE);
    size_t ne = meta_base64_encode((const unsigned char *)key, n, enc);
    FUZZ_CHECK(ne == 4 * ((n + 2) / 3));
    size_t nd = meta_base64_decode(enc, ne, dec, sizeof(dec));
    FUZZ_CHECK(nd == n);
    FUZZ_CHECK(memcmp(dec, key, n) == 0);
}

/* Composes into a heap block of exactly the reported size, and one byte less. */
static void check_exact_cap(const struct meta_request *req, enum meta_rc rc,
                            const struct meta_item_facts *facts, const char *ref, size_t n)
{
    char *exact = fuzz_copy("", n);
    FUZZ_CHECK(meta_compose(exact, n, req, rc, facts) == n);
    FUZZ_CHECK(memcmp(exact, ref, n) == 0);
    free(exact);
    char *small = fuzz_copy("", n - 1);
    FUZZ_CHECK(meta_compose(small, n - 1, req, rc, facts) == 0);
    free(small);
}

static void check_line(const char *out, size_t n)
{
    FUZZ_CHECK(n >= 4 && n <= META_HEADER_MAX);
    FUZZ_CHECK(out[n - 2] == '\r' && out[n - 1] == '\n');
    FUZZ_CHECK(memchr(out, '\n', n - 1) == NULL);
}

static void check_compose(const struct meta_request *req)
{
    /* Fixed facts: ordinary ones, and the widest numbers with a 250-byte binary key. */
    static char long_key[META_KEY_MAX];
    memset(long_key, 0xff, sizeof(long_key));
    struct meta_item_facts facts[3] = {
        {.value_len = 5,
         .client_flags = 7,
         .cas = 42,
         .ttl = -1,
         .ttl_after_t = 100,
         .ttl_after_n = 200,
         .last_access = 3,
         .fetched = true},
        {.value_len = UINT32_MAX,
         .client_flags = UINT32_MAX,
         .cas = UINT64_MAX,
         .ttl = INT64_MAX,
         .ttl_after_t = INT64_MIN,
         .ttl_after_n = INT64_MAX,
         .last_access = UINT32_MAX,
         .fetched = true,
         .created = true,
         .stale = true,
         .token_sent = true,
         .win = true,
         .key = long_key,
         .nkey = sizeof(long_key),
         .key_binary = true},
        {.value_len = 0, .ttl = 0, .created = false, .win = true, .key = "k", .nkey = 1},
    };
    char *out = malloc(META_HEADER_MAX);
    FUZZ_CHECK(out != NULL);
    for (size_t r = 0; r < sizeof(all_rcs) / sizeof(all_rcs[0]); r++) {
        enum meta_rc rc = all_rcs[r];
        for (size_t f = 0; f <= 3; f++) {
            const struct meta_item_facts *fp = f < 3 ? &facts[f] : NULL;
            bool needs_facts =
                ((req->cmd == META_CMD_MG || req->cmd == META_CMD_MA) &&
                 (rc == META_RC_HD || rc == META_RC_VA)) ||
                (req->cmd == META_CMD_MS && rc == META_RC_HD && meta_has_flag(req, 'c'));
            if (fp == NULL && needs_facts) {
                continue;
            }
            size_t n = meta_compose(out, META_HEADER_MAX, req, rc, fp);
            check_line(out, n);
            check_exact_cap(req, rc, fp, out, n);
        }
        bool skipped = meta_reply_skipped(req, rc, false);
        FUZZ_CHECK(!skipped || meta_has_flag(req, 'q'));
        FUZZ_CHECK(!meta_reply_skipped(req, META_RC_NF, true));
        FUZZ_CHECK(!meta_reply_skipped(req, META_RC_EX, false));
    }
    char src = meta_ttl_source(req, true);
    FUZZ_CHECK(src == 0 || src == 'T' || src == 'N');
    FUZZ_CHECK(src == 0 || meta_has_flag(req, src));
    src = meta_ttl_source(req, false);
    FUZZ_CHECK(src == 0 || src == 'T');

    free(out);
    if (req->cmd == META_CMD_MN) {
        return;
    }

    /* me's line for an item stored under this key. */
    out = malloc(META_HEADER_MAX);
    FUZZ_CHECK(out != NULL);
    struct meta_me_facts me = {
        .key = req->key.p,
        .nkey = req->key.len,
        .key_binary = req->key_binary,
        .ttl = req->ttl,
        .last_access = UINT32_MAX,
        .cas = UINT64_MAX,
        .fetched = req->key.len % 2 == 0,
        .slab_class = 63,
        .total_size = UINT64_MAX,
    };
    size_t n = meta_compose_me(out, META_HEADER_MAX, &me);
    check_line(out, n);
    FUZZ_CHECK(memcmp(out, "ME ", 3) == 0);
    free(out);
}

/* Checks one meta line; returns the data block bytes a server skips after it. */
static size_t check_meta(const struct text_request *treq, const char *line, size_t line_len)
{
    char *keybuf = malloc(META_KEYBUF_SIZE);
    FUZZ_CHECK(keybuf != NULL);
    struct meta_request req;
    int rc = meta_parse(treq, keybuf, &req);

    FUZZ_CHECK(rc == 0 || rc == -1);
    FUZZ_CHECK(req.err >= META_ERR_NONE && req.err <= META_ERR_OPAQUE_TOO_LONG);
    FUZZ_CHECK((rc == 0) == (req.err == META_ERR_NONE));
    FUZZ_CHECK(meta_error_string(req.err) != NULL);
    FUZZ_CHECK((req.err == META_ERR_NONE) == (meta_error_string(req.err)[0] == '\0'));
    FUZZ_CHECK(req.cmd >= META_CMD_MG && req.cmd <= META_CMD_ME);
    FUZZ_CHECK((char)"?gsdane"[req.cmd] == treq->args[0].p[1]);
    if (req.err_after_exec) {
        FUZZ_CHECK(req.err == META_ERR_OPAQUE_TOO_LONG);
        FUZZ_CHECK(req.cmd == META_CMD_MG || req.cmd == META_CMD_MA);
    }
    FUZZ_CHECK(!req.swallow || req.cmd == META_CMD_MS);
    if (req.cmd == META_CMD_MS && rc == 0) {
        FUZZ_CHECK(req.swallow);
    }
    if (req.swallow) {
        FUZZ_CHECK(req.data_len <= (uint32_t)INT_MAX - 2);
        FUZZ_CHECK(req.read_len == (size_t)req.data_len + 2);
    } else {
        FUZZ_CHECK(req.read_len == 0 && req.data_len == 0);
    }

    /* Flags: each once, in order[], matching the bits. */
    FUZZ_CHECK(req.norder <= META_MAX_TOKENS - 2);
    uint64_t bits = 0;
    for (unsigned i = 0; i < req.norder; i++) {
        char c = req.order[i];
        FUZZ_CHECK(is_flag_char(c));
        uint64_t b = (uint64_t)1 << meta_flag_bit(c);
        FUZZ_CHECK((bits & b) == 0);
        bits |= b;
    }
    FUZZ_CHECK(bits == req.flags);
    if (req.opaque.len > 0) {
        FUZZ_CHECK(meta_has_flag(&req, 'O'));
        FUZZ_CHECK(req.opaque.p[0] == 'O');
        FUZZ_CHECK(fuzz_span_in(req.opaque.p, req.opaque.len, line, line_len));
    } else {
        FUZZ_CHECK(!meta_has_flag(&req, 'O'));
    }
    if (req.mode != 0) {
        FUZZ_CHECK(meta_has_flag(&req, 'M'));
    }
    if (req.cmd == META_CMD_MS && rc == 0) {
        FUZZ_CHECK(req.store_op >= META_STORE_SET && req.store_op <= META_STORE_CAS);
        FUZZ_CHECK(!req.invalidate || req.store_op == META_STORE_CAS);
        FUZZ_CHECK(req.store_op != META_STORE_CAS || meta_has_flag(&req, 'C'));
    }
    if (req.cmd == META_CMD_MA && (rc == 0 || req.err_after_exec)) {
        FUZZ_CHECK(req.incr == (req.mode == 0 || req.mode == 'I' || req.mode == '+'));
    }
    if (!meta_has_flag(&req, 'D')) {
        FUZZ_CHECK(req.delta == 1);
    }

    /* The key, for every request that goes on to storage. */
    bool valid = rc == 0 || req.err_after_exec;
    if (valid && req.cmd != META_CMD_MN) {
        FUZZ_CHECK(req.key_token.len >= 1 && req.key_token.len <= META_KEY_MAX);
        FUZZ_CHECK(req.key_token.p == treq->args[1].p);
        FUZZ_CHECK(req.key.len >= 1 && req.key.len <= META_KEY_MAX);
        if (req.key_binary) {
            FUZZ_CHECK(req.key.p == keybuf);
            FUZZ_CHECK(req.key.len <= META_DECODED_MAX);
            check_base64_roundtrip(req.key.p, req.key.len);
        } else {
            FUZZ_CHECK(req.key.p == req.key_token.p && req.key.len == req.key_token.len);
        }
    }
    if (valid) {
        FUZZ_CHECK(req.opaque.len <= META_OPAQUE_MAX || req.err_after_exec);
    }
    if (rc == 0) {
        check_compose(&req);
    }
    free(keybuf);
    return req.swallow ? req.read_len : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    size_t off = 0;
    for (unsigned n = 0; off < size && n < MAX_LINES; n++) {
        struct text_request treq;
        size_t used = 0;
        if (text_parse(buf + off, size - off, &treq, &used) != TEXT_OK) {
            break;
        }
        FUZZ_CHECK(used > 0 && used <= size - off);
        size_t skip = 0;
        if (treq.cmd == TEXT_CMD_META) {
            /* A server skips an ms data block whenever the datalen parsed. */
            skip = check_meta(&treq, treq.line, treq.line_len);
            if (skip > 0 && skip <= size - off - used) {
                bool ok = meta_data_ok(buf + off + used, skip);
                FUZZ_CHECK(ok == (memcmp(buf + off + used + skip - 2, "\r\n", 2) == 0));
            }
        } else if (treq.cmd >= TEXT_CMD_SET && treq.cmd <= TEXT_CMD_CAS) {
            skip = (size_t)treq.bytes + 2;
        }
        off += used;
        off = skip > size - off ? size : off + skip;
    }
    return 0;
}

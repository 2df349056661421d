/*
 * fuzz_reply.c - libFuzzer driver for the client's reply parser
 * (client/reply.h): text and meta replies, raw lines, and binary responses
 * normalised by reply_from_bin().
 *
 * The input is read four ways:
 *   1. as a text/meta reply stream, element by element with reply_parse():
 *      spans lie inside the element, consumed is the line plus, for VALUE
 *      and VA, the data block and its "\r\n"; and resumability: a prefix
 *      shorter than the element gives NEED_MORE, a longer one the same
 *      element, a prefix found BAD stays BAD (heap copies of exactly the
 *      prefix, so over-reads show). A VALUE element composed again with the
 *      server's text_compose_value() parses back the same;
 *   2. as raw lines with reply_parse_line();
 *   3. as binary responses (bin_parse_response(), with each packet's magic
 *      forced to 0x81 so any bytes get there) fed to reply_from_bin();
 *   4. as request lines: each valid meta request gets every reply the
 *      server's meta_compose() can write for it, with fixed item facts, and
 *      reply_parse() must read back the code and the echoed flags (f c t s
 *      k O, a b key's base64, W X Z). This is the client/server codec pact.
 *
 * What this is not: a test of the client's request matching or I/O.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "binary.h"
#include "fuzz_common.h"
#include "meta.h"
#include "reply.h"
#include "text.h"

#define MAX_ELEMENTS 512

static bool has_data(enum reply_kind k)
{
    return k == REPLY_VALUE || k == REPLY_META_VA;
}

static bool is_meta(enum reply_kind k)
{
    return (k >= REPLY_META_HD && k <= REPLY_META_EX) || k == REPLY_MN;
}

static void check_reply(const char *buf, size_t len, enum reply_status st, const struct reply *r,
                        size_t used)
{
    FUZZ_CHECK(used <= len);
    if (st != REPLY_DONE) {
        /* reply.h promises nothing about consumed for REPLY_BAD. */
        FUZZ_CHECK(st == REPLY_NEED_MORE || st == REPLY_BAD);
        FUZZ_CHECK(st == REPLY_BAD || used == 0);
        return;
    }
    FUZZ_CHECK(used >= 2);
    FUZZ_CHECK(r->kind >= REPLY_VALUE && r->kind <= REPLY_MN);
    FUZZ_CHECK(!r->binary);
    const char *nl = memchr(buf, '\n', used);
    FUZZ_CHECK(nl != NULL && nl > buf && nl[-1] == '\r');
    size_t linelen = (size_t)(nl - buf) + 1;
    FUZZ_CHECK(linelen <= REPLY_LINE_MAX);
    /* Everything but the data block lies in the line, before its "\r\n". */
    FUZZ_CHECK(fuzz_span_in(r->key.p, r->key.len, buf, linelen - 2));
    FUZZ_CHECK(fuzz_span_in(r->name.p, r->name.len, buf, linelen - 2));
    FUZZ_CHECK(fuzz_span_in(r->text.p, r->text.len, buf, linelen - 2));
    FUZZ_CHECK(fuzz_span_in(r->opaque.p, r->opaque.len, buf, linelen - 2));
    if (has_data(r->kind)) {
        FUZZ_CHECK(r->data.p == buf + linelen);
        FUZZ_CHECK(used == linelen + r->data.len + 2);
        FUZZ_CHECK(buf[used - 2] == '\r' && buf[used - 1] == '\n');
    } else {
        FUZZ_CHECK(used == linelen);
        FUZZ_CHECK(r->data.p == NULL && r->data.len == 0);
    }
    if (r->kind == REPLY_VALUE) {
        FUZZ_CHECK(memcmp(buf, "VALUE ", 6) == 0);
        FUZZ_CHECK(r->key.len > 0 && memchr(r->key.p, ' ', r->key.len) == NULL);
    }
    if (is_meta(r->kind)) {
        FUZZ_CHECK(buf[2] == ' ' || linelen == 4);
        FUZZ_CHECK(r->key.len == 0 || reply_has_mflag(r, 'k'));
        FUZZ_CHECK(r->opaque.len == 0 || reply_has_mflag(r, 'O'));
        FUZZ_CHECK(r->has_cas == reply_has_mflag(r, 'c'));
        FUZZ_CHECK(reply_has_mflag(r, 't') || r->ttl == -1);
    } else {
        FUZZ_CHECK(r->mflags == 0 && r->opaque.p == NULL);
        FUZZ_CHECK(r->kind == REPLY_VALUE || !r->has_cas);
    }
    if (r->kind == REPLY_STAT) {
        FUZZ_CHECK(r->name.len > 0 && memchr(r->name.p, ' ', r->name.len) == NULL);
    }
}

static bool same_span(const struct reply_span *a, const char *abase, const struct reply_span *b,
                      const char *bbase)
{
    return fuzz_off(a->p, abase) == fuzz_off(b->p, bbase) && a->len == b->len;
}

static void check_same(const struct reply *a, const char *abase, const struct reply *b,
                       const char *bbase)
{
    FUZZ_CHECK(a->kind == b->kind && a->flags == b->flags && a->cas == b->cas);
    FUZZ_CHECK(a->has_cas == b->has_cas && a->number == b->number);
    FUZZ_CHECK(a->mflags == b->mflags && a->ttl == b->ttl && a->size == b->size);
    FUZZ_CHECK(same_span(&a->key, abase, &b->key, bbase));
    FUZZ_CHECK(same_span(&a->data, abase, &b->data, bbase));
    FUZZ_CHECK(same_span(&a->name, abase, &b->name, bbase));
    FUZZ_CHECK(same_span(&a->text, abase, &b->text, bbase));
    FUZZ_CHECK(same_span(&a->opaque, abase, &b->opaque, bbase));
}

static void check_prefix(const char *buf, size_t len, enum reply_status whole_st,
                         const struct reply *whole, size_t whole_used, size_t k)
{
    if (k > len) {
        return;
    }
    char *copy = fuzz_copy(buf, k);
    struct reply r;
    size_t used = 99;
    enum reply_status st = reply_parse(copy, k, &r, &used);
    check_reply(copy, k, st, &r, used);
    if (st == REPLY_DONE) {
        FUZZ_CHECK(whole_st == REPLY_DONE && used == whole_used);
        check_same(&r, copy, whole, buf);
    } else if (st == REPLY_BAD) {
        FUZZ_CHECK(whole_st == REPLY_BAD);
    } else if (whole_st == REPLY_DONE) {
        FUZZ_CHECK(k < whole_used);
    }
    if (whole_st == REPLY_DONE && k >= whole_used) {
        FUZZ_CHECK(st == REPLY_DONE);
    }
    free(copy);
}

/* VALUE composed again by the server's codec parses back the same. */
static void check_value_roundtrip(const struct reply *r)
{
    if (r->kind != REPLY_VALUE || r->key.len > TEXT_KEY_MAX) {
        return;
    }
    size_t cap = TEXT_VALUE_HEADER_MAX + r->data.len + 2;
    char *out = malloc(cap);
    FUZZ_CHECK(out != NULL);
    size_t n =
        text_compose_value(out, r->key.p, r->key.len, r->flags, r->data.len, r->has_cas, r->cas);
    memcpy(out + n, r->data.p, r->data.len);
    memcpy(out + n + r->data.len, "\r\n", 2);
    size_t total = n + r->data.len + 2;
    struct reply back;
    size_t used = 0;
    FUZZ_CHECK(reply_parse(out, total, &back, &used) == REPLY_DONE && used == total);
    FUZZ_CHECK(back.kind == REPLY_VALUE && back.flags == r->flags);
    FUZZ_CHECK(back.has_cas == r->has_cas && back.cas == r->cas);
    FUZZ_CHECK(back.key.len == r->key.len && memcmp(back.key.p, r->key.p, r->key.len) == 0);
    FUZZ_CHECK(back.data.len == r->data.len);
    FUZZ_CHECK(memcmp(back.data.p, r->data.p, r->data.len) == 0);
    free(out);
}

/* 1. */
static void reply_stream(const char *buf, size_t size)
{
    size_t off = 0;
    for (unsigned n = 0; off < size && n < MAX_ELEMENTS; n++) {
        const char *p = buf + off;
        size_t len = size - off;
        struct reply r;
        size_t used = 99;
        enum reply_status st = reply_parse(p, len, &r, &used);
        check_reply(p, len, st, &r, used);
        size_t splits[] = {0, 1, used / 2, used > 0 ? used - 1 : 0, used, used + 1, len / 2};
        for (size_t i = 0; i < sizeof(splits) / sizeof(splits[0]); i++) {
            check_prefix(p, len, st, &r, used, splits[i]);
        }
        if (st != REPLY_DONE) {
            break;
        }
        check_value_roundtrip(&r);
        off += used;
    }
}

/* 2. */
static void line_stream(const char *buf, size_t size)
{
    size_t off = 0;
    for (unsigned n = 0; off < size && n < MAX_ELEMENTS; n++) {
        const char *p = buf + off;
        size_t len = size - off;
        struct reply r;
        size_t used = 99;
        enum reply_status st = reply_parse_line(p, len, &r, &used);
        FUZZ_CHECK(used <= len);
        if (st != REPLY_DONE) {
            FUZZ_CHECK(used == 0);
            FUZZ_CHECK(st == REPLY_BAD ? len >= REPLY_LINE_MAX : len < REPLY_LINE_MAX);
            FUZZ_CHECK(memchr(p, '\n', len < REPLY_LINE_MAX ? len : REPLY_LINE_MAX) == NULL);
            break;
        }
        FUZZ_CHECK(r.kind == REPLY_LINE && used >= 1 && p[used - 1] == '\n');
        FUZZ_CHECK(memchr(p, '\n', used - 1) == NULL);
        FUZZ_CHECK(r.text.p == p && (r.text.len == used - 1 || r.text.len == used - 2));
        off += used;
    }
}

/* 3. */
static void binary_stream(const char *data, size_t size)
{
    char *buf = fuzz_copy(data, size);
    size_t off = 0;
    for (unsigned n = 0; off < size && n < MAX_ELEMENTS; n++) {
        char *p = buf + off;
        size_t len = size - off;
        p[0] = (char)BIN_MAGIC_RES;
        struct bin_response b;
        size_t used = 0;
        if (bin_parse_response(p, len, &b, &used) != BIN_OK) {
            break;
        }
        struct reply r;
        reply_from_bin(&b, &r);
        FUZZ_CHECK(r.binary && r.opcode == b.hdr.opcode && r.status == b.hdr.status);
        FUZZ_CHECK(r.kind >= REPLY_VALUE && r.kind <= REPLY_MN);
        FUZZ_CHECK(fuzz_span_in(r.key.p, r.key.len, p, used));
        FUZZ_CHECK(fuzz_span_in(r.data.p, r.data.len, p, used));
        FUZZ_CHECK(fuzz_span_in(r.name.p, r.name.len, p, used));
        if (b.hdr.status != BIN_STATUS_E2BIG) {
            FUZZ_CHECK(fuzz_span_in(r.text.p, r.text.len, p, used));
        }
        if (b.hdr.status == BIN_STATUS_OK) {
            FUZZ_CHECK(r.kind != REPLY_NOT_FOUND && r.kind != REPLY_EXISTS);
        } else {
            FUZZ_CHECK(r.kind != REPLY_VALUE && r.kind != REPLY_STORED && r.kind != REPLY_MN);
        }
        FUZZ_CHECK(r.kind != REPLY_NUMBER || b.has_number);
        off += used;
    }
    free(buf);
}

/* 4: the reply to a meta request, parsed back. */
static void check_meta_reply(const struct meta_request *req, enum meta_rc rc,
                             const struct meta_item_facts *f)
{
    char *out = malloc(META_HEADER_MAX + 8);
    FUZZ_CHECK(out != NULL);
    size_t n = meta_compose(out, META_HEADER_MAX, req, rc, f);
    FUZZ_CHECK(n > 0);
    size_t vlen = 0;
    if (rc == META_RC_VA) {
        vlen = f != NULL ? f->value_len : 0;
        FUZZ_CHECK(vlen <= 5);
        memcpy(out + n, "abcde", vlen);
        memcpy(out + n + vlen, "\r\n", 2);
    }
    size_t total = n + (rc == META_RC_VA ? vlen + 2 : 0);
    char *copy = fuzz_copy(out, total);
    free(out);
    struct reply r;
    size_t used = 0;
    enum reply_status st = reply_parse(copy, total, &r, &used);
    if (st != REPLY_DONE) {
        fprintf(stderr, "meta reply not parsed back: %.*s\n", (int)n, copy);
    }
    FUZZ_CHECK(st == REPLY_DONE && used == total);
    static const enum reply_kind kinds[] = {
        [META_RC_HD] = REPLY_META_HD, [META_RC_VA] = REPLY_META_VA, [META_RC_EN] = REPLY_META_EN,
        [META_RC_NF] = REPLY_META_NF, [META_RC_NS] = REPLY_META_NS, [META_RC_EX] = REPLY_META_EX,
        [META_RC_MN] = REPLY_MN,
    };
    FUZZ_CHECK(r.kind == kinds[rc]);
    bool item = (req->cmd == META_CMD_MG || req->cmd == META_CMD_MA) &&
                (rc == META_RC_HD || rc == META_RC_VA) && f != NULL;
    bool echoes = rc != META_RC_MN && req->cmd != META_CMD_ME && req->cmd != META_CMD_MN;
    if (rc == META_RC_VA) {
        FUZZ_CHECK(r.data.len == vlen);
    }
    if (echoes && meta_has_flag(req, 'O')) {
        FUZZ_CHECK(reply_has_mflag(&r, 'O'));
        FUZZ_CHECK(r.opaque.len + 1 == req->opaque.len);
        FUZZ_CHECK(memcmp(r.opaque.p, req->opaque.p + 1, r.opaque.len) == 0);
    }
    if (echoes && meta_has_flag(req, 'k')) {
        const char *key = req->key.p;
        size_t nkey = req->key.len;
        bool binary = req->key_binary;
        if (item && req->cmd == META_CMD_MG && f->key != NULL) {
            key = f->key;
            nkey = f->nkey;
            binary = f->key_binary;
        }
        FUZZ_CHECK(reply_has_mflag(&r, 'k'));
        FUZZ_CHECK(reply_has_mflag(&r, 'b') == binary);
        if (binary) {
            char dec[META_KEYBUF_SIZE];
            size_t nd = meta_base64_decode(r.key.p, r.key.len, dec, sizeof(dec));
            FUZZ_CHECK(nd == nkey && memcmp(dec, key, nkey) == 0);
        } else {
            FUZZ_CHECK(r.key.len == nkey && memcmp(r.key.p, key, nkey) == 0);
        }
    }
    if (item) {
        bool mg = req->cmd == META_CMD_MG;
        FUZZ_CHECK(r.has_cas == meta_has_flag(req, 'c'));
        FUZZ_CHECK(!r.has_cas || r.cas == f->cas);
        if (mg && meta_has_flag(req, 'f')) {
            FUZZ_CHECK(r.flags == f->client_flags);
        }
        if (mg && meta_has_flag(req, 's')) {
            FUZZ_CHECK(r.size == f->value_len);
        }
        if (meta_has_flag(req, 't')) {
            FUZZ_CHECK(reply_has_mflag(&r, 't') && (r.ttl == -1 || r.ttl >= 0));
        }
        FUZZ_CHECK(reply_has_mflag(&r, 'W') == (mg && f->win));
        FUZZ_CHECK(reply_has_mflag(&r, 'Z') == (mg && f->token_sent));
        FUZZ_CHECK(reply_has_mflag(&r, 'X') == (mg && f->stale));
    } else if (echoes && req->cmd == META_CMD_MS && meta_has_flag(req, 'c')) {
        FUZZ_CHECK(r.has_cas && r.cas == (rc == META_RC_HD && f != NULL ? f->cas : 0));
    } else {
        FUZZ_CHECK(!r.has_cas);
    }
    free(copy);
}

static void meta_roundtrip(const char *buf, size_t size)
{
    static char stored_key[META_KEY_MAX];
    memset(stored_key, 'S', sizeof(stored_key));
    const struct meta_item_facts facts[] = {
        {.value_len = 5,
         .client_flags = 7,
         .cas = 42,
         .ttl = -1,
         .ttl_after_t = 100,
         .ttl_after_n = 200,
         .last_access = 3,
         .fetched = true,
         .win = true},
        {.value_len = 0,
         .client_flags = UINT32_MAX,
         .cas = UINT64_MAX,
         .ttl = INT64_MAX,
         .ttl_after_t = 0,
         .ttl_after_n = -5,
         .last_access = UINT32_MAX,
         .created = true,
         .stale = true,
         .token_sent = true,
         .key = stored_key,
         .nkey = 187,
         .key_binary = true},
        {.value_len = 1, .cas = 1, .ttl = 9, .key = stored_key, .nkey = 250},
    };
    size_t off = 0;
    for (unsigned n = 0; off < size && n < MAX_ELEMENTS; n++) {
        struct text_request treq;
        size_t used = 0;
        if (text_parse(buf + off, size - off, &treq, &used) != TEXT_OK) {
            break;
        }
        off += used;
        if (treq.cmd != TEXT_CMD_META) {
            continue;
        }
        struct meta_request req;
        char keybuf[META_KEYBUF_SIZE];
        if (meta_parse(&treq, keybuf, &req) != 0) {
            continue;
        }
        for (int rc = META_RC_HD; rc <= META_RC_MN; rc++) {
            check_meta_reply(&req, (enum meta_rc)rc, NULL);
            for (size_t i = 0; i < sizeof(facts) / sizeof(facts[0]); i++) {
                check_meta_reply(&req, (enum meta_rc)rc, &facts[i]);
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    reply_stream(buf, size);
    line_stream(buf, size);
    binary_stream(buf, size);
    meta_roundtrip(buf, size);
    return 0;
}

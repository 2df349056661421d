/*
 * test_wire.c - the client's request composers, checked by the server's own
 * codecs: every operation in text, meta and binary is composed, then parsed
 * back with text_parse/meta_parse/bin_parse_request, and what the server
 * would do is compared with what was asked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "binary.h"
#include "client_int.h"
#include "meta.h"
#include "text.h"
#include "wire.h"

static struct wire_req req(enum wire_op op)
{
    struct wire_req rq = {
        .op = op,
        .ns = "ns:",
        .nns = 3,
        .key = "key",
        .nkey = 3,
        .data = "hello",
        .len = 5,
        .flags = 42,
        .exptime = 300,
        .cas = 77,
        .delta = 5,
        .initial = 9,
    };
    return rq;
}

static void compose(struct buf *b, enum wire_proto p, const struct wire_req *rq, size_t expect)
{
    buf_reset(b);
    size_t got = 99;
    assert_int_equal(wire_compose(b, p, rq, &got), MST_OK);
    assert_int_equal(got, expect);
}

/* Parses a text line out of b; returns the bytes used. */
static size_t parse_text(const struct buf *b, struct text_request *t)
{
    size_t used;
    assert_int_equal(text_parse(b->p, b->len, t, &used), TEXT_OK);
    return used;
}

static void meta_of(const struct buf *b, struct meta_request *mr, size_t *used)
{
    struct text_request t;
    *used = parse_text(b, &t);
    assert_int_equal(t.cmd, TEXT_CMD_META);
    char keybuf[META_KEYBUF_SIZE];
    assert_int_equal(meta_parse(&t, keybuf, mr), 0);
    assert_int_equal(mr->key.len, 6);
    assert_memory_equal(mr->key.p, "ns:key", 6);
}

static void test_text(void **state)
{
    (void)state;
    struct buf b = {0};
    struct text_request t;
    static const struct {
        enum wire_op op;
        enum text_cmd cmd;
    } stores[] = {
        {WOP_SET, TEXT_CMD_SET},         {WOP_ADD, TEXT_CMD_ADD},
        {WOP_REPLACE, TEXT_CMD_REPLACE}, {WOP_APPEND, TEXT_CMD_APPEND},
        {WOP_PREPEND, TEXT_CMD_PREPEND}, {WOP_CAS, TEXT_CMD_CAS},
    };
    for (size_t i = 0; i < sizeof(stores) / sizeof(stores[0]); i++) {
        for (int quiet = 0; quiet < 2; quiet++) {
            struct wire_req rq = req(stores[i].op);
            rq.quiet = quiet;
            compose(&b, WIRE_TEXT, &rq, quiet ? 0 : 1);
            size_t used = parse_text(&b, &t);
            assert_int_equal(t.cmd, stores[i].cmd);
            assert_memory_equal(t.key.p, "ns:key", 6);
            assert_int_equal(t.bytes, 5);
            assert_int_equal(t.noreply, quiet);
            bool keeps = stores[i].op == WOP_APPEND || stores[i].op == WOP_PREPEND;
            assert_int_equal(t.flags, keeps ? 0 : 42);
            assert_int_equal(t.exptime, keeps ? 0 : 300);
            if (stores[i].op == WOP_CAS) {
                assert_int_equal(t.cas, 77);
            }
            assert_int_equal(b.len - used, 7);
            assert_memory_equal(b.p + used, "hello\r\n", 7);
        }
    }
    struct wire_req rq = req(WOP_GETS);
    compose(&b, WIRE_TEXT, &rq, 1);
    parse_text(&b, &t);
    assert_int_equal(t.cmd, TEXT_CMD_GETS);
    assert_int_equal(t.nkeys, 1);
    rq = req(WOP_GAT);
    rq.exptime = -1;
    compose(&b, WIRE_TEXT, &rq, 1);
    parse_text(&b, &t);
    assert_int_equal(t.cmd, TEXT_CMD_GAT);
    assert_int_equal(t.exptime, -1);
    rq = req(WOP_TOUCH);
    compose(&b, WIRE_TEXT, &rq, 1);
    parse_text(&b, &t);
    assert_int_equal(t.cmd, TEXT_CMD_TOUCH);
    assert_int_equal(t.exptime, 300);
    rq = req(WOP_DECR);
    rq.delta = UINT64_MAX;
    compose(&b, WIRE_TEXT, &rq, 1);
    parse_text(&b, &t);
    assert_int_equal(t.cmd, TEXT_CMD_DECR);
    assert_true(t.delta == UINT64_MAX);
    rq = req(WOP_DELETE);
    rq.quiet = true;
    compose(&b, WIRE_TEXT, &rq, 0);
    parse_text(&b, &t);
    assert_int_equal(t.cmd, TEXT_CMD_DELETE);
    assert_true(t.noreply);
    /* A multi-get element is " <key>", the caller frames the line. */
    rq = req(WOP_GET);
    rq.multi = true;
    compose(&b, WIRE_TEXT, &rq, 0);
    assert_int_equal(b.len, 7);
    assert_memory_equal(b.p, " ns:key", 7);
    /* Leases have no text form. */
    rq = req(WOP_LEASE_GET);
    assert_int_equal(wire_compose(&b, WIRE_TEXT, &rq, NULL), MST_ENOTSUP);
    buf_reset(&b);
    assert_int_equal(wire_compose_end(&b, WIRE_TEXT), MST_EINVAL);
    assert_int_equal(wire_compose_flush(&b, WIRE_TEXT, 10, true), MST_OK);
    parse_text(&b, &t);
    assert_int_equal(t.cmd, TEXT_CMD_FLUSH_ALL);
    assert_int_equal(t.exptime, 10);
    assert_true(t.noreply);
    buf_free(&b);
}

static void test_meta_reads(void **state)
{
    (void)state;
    struct buf b = {0};
    struct meta_request mr;
    size_t used;
    struct wire_req rq = req(WOP_GET);
    compose(&b, WIRE_META, &rq, 1);
    meta_of(&b, &mr, &used);
    assert_int_equal(mr.cmd, META_CMD_MG);
    assert_true(meta_has_flag(&mr, 'v') && meta_has_flag(&mr, 'f'));
    assert_false(meta_has_flag(&mr, 'c') || meta_has_flag(&mr, 'q') || meta_has_flag(&mr, 'k'));
    assert_int_equal(used, b.len);
    /* Multi-get elements: quiet with the key returned, or an index as opaque. */
    rq = req(WOP_GETS);
    rq.multi = true;
    compose(&b, WIRE_META, &rq, 0);
    meta_of(&b, &mr, &used);
    assert_true(meta_has_flag(&mr, 'c') && meta_has_flag(&mr, 'k') && meta_has_flag(&mr, 'q'));
    rq.by_opaque = true;
    rq.opaque = 4294967295u;
    compose(&b, WIRE_META, &rq, 0);
    meta_of(&b, &mr, &used);
    assert_true(meta_has_flag(&mr, 'O') && meta_has_flag(&mr, 'q'));
    assert_false(meta_has_flag(&mr, 'k'));
    assert_int_equal(mr.opaque.len, 11);
    assert_memory_equal(mr.opaque.p, "O4294967295", 11);
    /* Get and touch, touch. */
    rq = req(WOP_GAT);
    rq.exptime = -1;
    compose(&b, WIRE_META, &rq, 1);
    meta_of(&b, &mr, &used);
    assert_true(meta_has_flag(&mr, 'T') && meta_has_flag(&mr, 'v'));
    assert_int_equal(mr.ttl, -1);
    rq = req(WOP_TOUCH);
    rq.quiet = true;
    compose(&b, WIRE_META, &rq, 0);
    meta_of(&b, &mr, &used);
    assert_true(meta_has_flag(&mr, 'T') && meta_has_flag(&mr, 'q'));
    assert_false(meta_has_flag(&mr, 'v'));
    assert_int_equal(mr.ttl, 300);
    /* Lease: v f c N<ttl> R<recache>. */
    rq = req(WOP_LEASE_GET);
    rq.lease_ttl = 30;
    rq.recache_below = 5;
    compose(&b, WIRE_META, &rq, 1);
    meta_of(&b, &mr, &used);
    assert_true(meta_has_flag(&mr, 'N') && meta_has_flag(&mr, 'R') && meta_has_flag(&mr, 'c'));
    assert_int_equal(mr.vivify_ttl, 30);
    assert_int_equal(mr.recache_ttl, 5);
    /* The end of a quiet batch. */
    buf_reset(&b);
    assert_int_equal(wire_compose_end(&b, WIRE_META), MST_OK);
    struct text_request t;
    parse_text(&b, &t);
    char keybuf[META_KEYBUF_SIZE];
    assert_int_equal(meta_parse(&t, keybuf, &mr), 0);
    assert_int_equal(mr.cmd, META_CMD_MN);
    buf_free(&b);
}

static void test_meta_writes(void **state)
{
    (void)state;
    struct buf b = {0};
    struct meta_request mr;
    size_t used;
    static const struct {
        enum wire_op op;
        enum meta_store_op store;
    } stores[] = {
        {WOP_SET, META_STORE_SET},         {WOP_ADD, META_STORE_ADD},
        {WOP_REPLACE, META_STORE_REPLACE}, {WOP_APPEND, META_STORE_APPEND},
        {WOP_PREPEND, META_STORE_PREPEND}, {WOP_CAS, META_STORE_CAS},
    };
    for (size_t i = 0; i < sizeof(stores) / sizeof(stores[0]); i++) {
        for (int quiet = 0; quiet < 2; quiet++) {
            struct wire_req rq = req(stores[i].op);
            rq.quiet = quiet;
            compose(&b, WIRE_META, &rq, quiet ? 0 : 1);
            meta_of(&b, &mr, &used);
            assert_int_equal(mr.cmd, META_CMD_MS);
            assert_int_equal(mr.store_op, stores[i].store);
            assert_int_equal(mr.data_len, 5);
            assert_int_equal(meta_has_flag(&mr, 'q'), quiet);
            bool keeps = stores[i].op == WOP_APPEND || stores[i].op == WOP_PREPEND;
            assert_int_equal(mr.client_flags, keeps ? 0 : 42);
            assert_int_equal(mr.ttl, keeps ? 0 : 300);
            if (stores[i].op == WOP_CAS) {
                assert_int_equal(mr.cas, 77);
            }
            assert_int_equal(b.len - used, mr.read_len);
            assert_true(meta_data_ok(b.p + used, mr.read_len));
        }
    }
    /* Lease set: C<cas> I; cas 0 is a plain set. */
    struct wire_req rq = req(WOP_LEASE_SET);
    compose(&b, WIRE_META, &rq, 1);
    meta_of(&b, &mr, &used);
    assert_int_equal(mr.store_op, META_STORE_CAS);
    assert_true(mr.invalidate);
    rq.cas = 0;
    compose(&b, WIRE_META, &rq, 1);
    meta_of(&b, &mr, &used);
    assert_int_equal(mr.store_op, META_STORE_SET);
    assert_false(meta_has_flag(&mr, 'I'));
    /* Zero flags and exptime are left out; an empty value is fine. */
    rq = req(WOP_SET);
    rq.flags = 0;
    rq.exptime = 0;
    rq.data = NULL;
    rq.len = 0;
    compose(&b, WIRE_META, &rq, 1);
    meta_of(&b, &mr, &used);
    assert_false(meta_has_flag(&mr, 'F') || meta_has_flag(&mr, 'T'));
    assert_int_equal(b.len - used, 2);
    /* Delete, invalidate. */
    rq = req(WOP_DELETE);
    compose(&b, WIRE_META, &rq, 1);
    meta_of(&b, &mr, &used);
    assert_int_equal(mr.cmd, META_CMD_MD);
    assert_false(meta_has_flag(&mr, 'I'));
    rq = req(WOP_INVALIDATE);
    compose(&b, WIRE_META, &rq, 1);
    meta_of(&b, &mr, &used);
    assert_true(meta_has_flag(&mr, 'I'));
    assert_int_equal(mr.ttl, 300);
    /* Arithmetic: incr/decr, delta, initial value through N and J. */
    rq = req(WOP_INCR);
    compose(&b, WIRE_META, &rq, 1);
    meta_of(&b, &mr, &used);
    assert_int_equal(mr.cmd, META_CMD_MA);
    assert_true(mr.incr && meta_has_flag(&mr, 'v'));
    assert_int_equal(mr.delta, 5);
    assert_false(meta_has_flag(&mr, 'N'));
    rq = req(WOP_DECR);
    rq.has_initial = true;
    rq.delta = 1;
    compose(&b, WIRE_META, &rq, 1);
    meta_of(&b, &mr, &used);
    assert_false(mr.incr);
    assert_int_equal(mr.delta, 1);
    assert_int_equal(mr.initial, 9);
    assert_int_equal(mr.vivify_ttl, 300);
    rq.quiet = true;
    compose(&b, WIRE_META, &rq, 0);
    meta_of(&b, &mr, &used);
    assert_true(meta_has_flag(&mr, 'q'));
    assert_false(meta_has_flag(&mr, 'v'));
    buf_free(&b);
}

static void bin_of(const struct buf *b, struct bin_request *br, size_t *used, uint8_t opcode)
{
    assert_int_equal(bin_parse_request(b->p, b->len, br, used), BIN_OK);
    assert_int_equal(br->hdr.opcode, opcode);
    assert_int_equal(b->len - *used, br->value_len);
}

static void test_binary(void **state)
{
    (void)state;
    struct buf b = {0};
    struct bin_request br;
    size_t used;
    struct wire_req rq = req(WOP_GET);
    compose(&b, WIRE_BINARY, &rq, 1);
    bin_of(&b, &br, &used, BIN_OP_GET);
    assert_int_equal(br.key.len, 6);
    assert_memory_equal(br.key.p, "ns:key", 6);
    rq.multi = true;
    compose(&b, WIRE_BINARY, &rq, 0);
    bin_of(&b, &br, &used, BIN_OP_GETKQ);
    assert_true(br.quiet && br.return_key);
    rq = req(WOP_GAT);
    rq.exptime = -5; /* already expired: a unix time in the past */
    compose(&b, WIRE_BINARY, &rq, 1);
    bin_of(&b, &br, &used, BIN_OP_GAT);
    assert_int_equal(br.exptime, WIRE_BIN_EXPIRED);
    rq = req(WOP_TOUCH);
    rq.quiet = true;
    compose(&b, WIRE_BINARY, &rq, 0);
    bin_of(&b, &br, &used, BIN_OP_TOUCH);
    assert_int_equal(br.exptime, 300);

    static const struct {
        enum wire_op op;
        uint8_t loud, quiet;
    } stores[] = {
        {WOP_SET, BIN_OP_SET, BIN_OP_SETQ},
        {WOP_ADD, BIN_OP_ADD, BIN_OP_ADDQ},
        {WOP_REPLACE, BIN_OP_REPLACE, BIN_OP_REPLACEQ},
        {WOP_CAS, BIN_OP_SET, BIN_OP_SETQ},
        {WOP_APPEND, BIN_OP_APPEND, BIN_OP_APPENDQ},
        {WOP_PREPEND, BIN_OP_PREPEND, BIN_OP_PREPENDQ},
    };
    for (size_t i = 0; i < sizeof(stores) / sizeof(stores[0]); i++) {
        for (int quiet = 0; quiet < 2; quiet++) {
            rq = req(stores[i].op);
            rq.quiet = quiet;
            compose(&b, WIRE_BINARY, &rq, quiet ? 0 : 1);
            bin_of(&b, &br, &used, quiet ? stores[i].quiet : stores[i].loud);
            assert_int_equal(br.value_len, 5);
            assert_memory_equal(b.p + used, "hello", 5);
            if (stores[i].op != WOP_APPEND && stores[i].op != WOP_PREPEND) {
                assert_int_equal(br.flags, 42);
                assert_int_equal(br.exptime, 300);
            }
            assert_true(br.hdr.cas == (stores[i].op == WOP_CAS ? 77u : 0u));
        }
    }
    rq = req(WOP_DELETE);
    rq.quiet = true;
    compose(&b, WIRE_BINARY, &rq, 0);
    bin_of(&b, &br, &used, BIN_OP_DELETEQ);
    rq = req(WOP_INCR);
    compose(&b, WIRE_BINARY, &rq, 1);
    bin_of(&b, &br, &used, BIN_OP_INCREMENT);
    assert_int_equal(br.delta, 5);
    assert_int_equal(br.exptime, BIN_ARITH_NO_CREATE);
    rq = req(WOP_DECR);
    rq.has_initial = true;
    compose(&b, WIRE_BINARY, &rq, 1);
    bin_of(&b, &br, &used, BIN_OP_DECREMENT);
    assert_int_equal(br.initial, 9);
    assert_int_equal(br.exptime, 300);
    rq = req(WOP_LEASE_GET);
    assert_int_equal(wire_compose(&b, WIRE_BINARY, &rq, NULL), MST_ENOTSUP);
    buf_reset(&b);
    assert_int_equal(wire_compose_end(&b, WIRE_BINARY), MST_OK);
    bin_of(&b, &br, &used, BIN_OP_NOOP);
    buf_reset(&b);
    assert_int_equal(wire_compose_flush(&b, WIRE_BINARY, 0, true), MST_OK);
    bin_of(&b, &br, &used, BIN_OP_FLUSHQ);
    buf_reset(&b);
    assert_int_equal(wire_compose_stats(&b, WIRE_BINARY, "items"), MST_OK);
    bin_of(&b, &br, &used, BIN_OP_STAT);
    assert_int_equal(br.key.len, 5);
    buf_reset(&b);
    assert_int_equal(wire_compose_version(&b, WIRE_BINARY), MST_OK);
    bin_of(&b, &br, &used, BIN_OP_VERSION);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_meta_reads),
        cmocka_unit_test(test_meta_writes),
        cmocka_unit_test(test_binary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

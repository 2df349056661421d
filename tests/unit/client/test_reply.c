/*
 * test_reply.c - the client's reply parser: every text reply kind, VALUE
 * blocks split at every byte, and what is refused; meta replies as the
 * server's codec composes them (meta_compose) for requests the client
 * composed (wire.c), VA blocks split at every byte; binary responses from
 * the server's composers through bin_parse_response and reply_from_bin.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "binary.h"
#include "client_int.h"
#include "meta.h"
#include "reply.h"
#include "text.h"
#include "wire.h"

#define S(x) x, strlen(x)

static void kind(const char *s, enum reply_kind k)
{
    struct reply r;
    size_t used;
    assert_int_equal(reply_parse(S(s), &r, &used), REPLY_DONE);
    assert_int_equal(r.kind, k);
    assert_int_equal(used, strlen(s));
}

static void test_lines(void **state)
{
    (void)state;
    kind("END\r\n", REPLY_END);
    kind("STORED\r\n", REPLY_STORED);
    kind("NOT_STORED\r\n", REPLY_NOT_STORED);
    kind("EXISTS\r\n", REPLY_EXISTS);
    kind("NOT_FOUND\r\n", REPLY_NOT_FOUND);
    kind("DELETED\r\n", REPLY_DELETED);
    kind("TOUCHED\r\n", REPLY_TOUCHED);
    kind("OK\r\n", REPLY_OK);
    kind("ERROR\r\n", REPLY_ERROR);
    kind("CLIENT_ERROR bad command line format\r\n", REPLY_CLIENT_ERROR);
    kind("SERVER_ERROR object too large for cache\r\n", REPLY_SERVER_ERROR);

    struct reply r;
    size_t used;
    assert_int_equal(reply_parse(S("18446744073709551615\r\n"), &r, &used), REPLY_DONE);
    assert_int_equal(r.kind, REPLY_NUMBER);
    assert_true(r.number == UINT64_MAX);
    assert_int_equal(reply_parse(S("VERSION 1.6.18\r\n"), &r, &used), REPLY_DONE);
    assert_int_equal(r.kind, REPLY_VERSION);
    assert_int_equal(r.text.len, 6);
    assert_memory_equal(r.text.p, "1.6.18", 6);
    assert_int_equal(reply_parse(S("STAT version 1.6.18\r\n"), &r, &used), REPLY_DONE);
    assert_int_equal(r.kind, REPLY_STAT);
    assert_memory_equal(r.name.p, "version", 7);
    assert_memory_equal(r.text.p, "1.6.18", 6);
    assert_int_equal(reply_parse(S("STAT items:1:number 5 6\r\n"), &r, &used), REPLY_DONE);
    assert_int_equal(r.text.len, 3);
    assert_int_equal(reply_parse(S("CLIENT_ERROR x y\r\n"), &r, &used), REPLY_DONE);
    assert_int_equal(r.text.len, 3);
}

static void test_value(void **state)
{
    (void)state;
    const char *s = "VALUE foo 42 5 99\r\nhe\r\no\r\nEND\r\n";
    size_t full = strlen(s) - 5;
    struct reply r;
    size_t used;
    for (size_t cut = 0; cut < full; cut++) {
        assert_int_equal(reply_parse(s, cut, &r, &used), REPLY_NEED_MORE);
        assert_int_equal(used, 0);
    }
    assert_int_equal(reply_parse(S(s), &r, &used), REPLY_DONE);
    assert_int_equal(used, full);
    assert_int_equal(r.kind, REPLY_VALUE);
    assert_memory_equal(r.key.p, "foo", 3);
    assert_int_equal(r.flags, 42);
    assert_int_equal(r.data.len, 5);
    assert_memory_equal(r.data.p, "he\r\no", 5);
    assert_true(r.has_cas);
    assert_int_equal(r.cas, 99);
    assert_int_equal(reply_parse(s + used, strlen(s) - used, &r, &used), REPLY_DONE);
    assert_int_equal(r.kind, REPLY_END);

    assert_int_equal(reply_parse(S("VALUE k 0 0\r\n\r\n"), &r, &used), REPLY_DONE);
    assert_int_equal(r.data.len, 0);
    assert_false(r.has_cas);
}

static void test_refused(void **state)
{
    (void)state;
    struct reply r;
    size_t used;
    assert_int_equal(reply_parse(S("VALUE foo 0 3\r\nabcd\r\n"), &r, &used), REPLY_BAD);
    assert_int_equal(reply_parse(S("VALUE foo x 3\r\nabc\r\n"), &r, &used), REPLY_BAD);
    assert_int_equal(reply_parse(S("VALUE foo 0\r\n"), &r, &used), REPLY_BAD);
    assert_int_equal(reply_parse(S("VALUE foo 0 -1\r\n"), &r, &used), REPLY_BAD);
    assert_int_equal(reply_parse(S("VALUE foo 0 1 2 3\r\nx\r\n"), &r, &used), REPLY_BAD);
    assert_int_equal(reply_parse(S("STORED\n"), &r, &used), REPLY_BAD);
    assert_int_equal(reply_parse(S("WHAT\r\n"), &r, &used), REPLY_BAD);
    assert_int_equal(reply_parse(S("12a\r\n"), &r, &used), REPLY_BAD);
    assert_int_equal(reply_parse(S("\r\n"), &r, &used), REPLY_BAD);
    assert_int_equal(reply_parse(S("STORED"), &r, &used), REPLY_NEED_MORE);
    static char junk[REPLY_LINE_MAX + 10];
    memset(junk, 'a', sizeof(junk));
    assert_int_equal(reply_parse(junk, sizeof(junk), &r, &used), REPLY_BAD);
}

/* Composes op with the client, parses it with the server codec. */
static void server_view(enum wire_op op, bool multi, struct buf *b, struct meta_request *mr)
{
    struct wire_req rq = {.op = op,
                          .key = "some-key",
                          .nkey = 8,
                          .data = "v",
                          .len = 1,
                          .lease_ttl = 30,
                          .multi = multi,
                          .quiet = multi};
    buf_reset(b);
    assert_int_equal(wire_compose(b, WIRE_META, &rq, NULL), MST_OK);
    struct text_request t;
    size_t used;
    assert_int_equal(text_parse(b->p, b->len, &t, &used), TEXT_OK);
    static char keybuf[META_KEYBUF_SIZE];
    assert_int_equal(meta_parse(&t, keybuf, mr), 0);
}

static void test_meta_round_trip(void **state)
{
    (void)state;
    struct buf req = {0};
    struct meta_request mr;
    char line[META_HEADER_MAX + 64];
    struct reply r;
    size_t used;

    /* A multi-get hit: VA with f, c, k as the server writes it, split everywhere. */
    server_view(WOP_GETS, true, &req, &mr);
    struct meta_item_facts f = {.value_len = 5,
                                .client_flags = 9,
                                .cas = 1234,
                                .ttl = -1,
                                .ttl_after_t = -1,
                                .ttl_after_n = -1};
    size_t n = meta_compose(line, sizeof(line), &mr, META_RC_VA, &f);
    assert_true(n > 0);
    memcpy(line + n, "he\r\no\r\n", 7);
    size_t full = n + 7;
    for (size_t cut = 0; cut < full; cut++) {
        assert_int_equal(reply_parse(line, cut, &r, &used), REPLY_NEED_MORE);
    }
    assert_int_equal(reply_parse(line, full, &r, &used), REPLY_DONE);
    assert_int_equal(used, full);
    assert_int_equal(r.kind, REPLY_META_VA);
    assert_int_equal(r.data.len, 5);
    assert_memory_equal(r.data.p, "he\r\no", 5);
    assert_int_equal(r.flags, 9);
    assert_true(r.has_cas && r.cas == 1234);
    assert_true(reply_has_mflag(&r, 'k'));
    assert_int_equal(r.key.len, 8);
    assert_memory_equal(r.key.p, "some-key", 8);
    assert_false(reply_has_mflag(&r, 'W'));

    /* A won lease: the server adds W (and X/Z) after the flags. */
    server_view(WOP_LEASE_GET, false, &req, &mr);
    struct meta_item_facts won = {.value_len = 0,
                                  .cas = 5,
                                  .ttl = 30,
                                  .ttl_after_t = 30,
                                  .ttl_after_n = 30,
                                  .created = true,
                                  .win = true};
    n = meta_compose(line, sizeof(line), &mr, META_RC_VA, &won);
    memcpy(line + n, "\r\n", 2);
    assert_int_equal(reply_parse(line, n + 2, &r, &used), REPLY_DONE);
    assert_int_equal(r.kind, REPLY_META_VA);
    assert_true(reply_has_mflag(&r, 'W') && !reply_has_mflag(&r, 'Z'));
    assert_true(r.cas == 5);
    struct meta_item_facts lost = {.value_len = 3,
                                   .cas = 6,
                                   .ttl = 30,
                                   .ttl_after_t = 30,
                                   .ttl_after_n = 30,
                                   .stale = true,
                                   .token_sent = true};
    n = meta_compose(line, sizeof(line), &mr, META_RC_VA, &lost);
    memcpy(line + n, "old\r\n", 5);
    assert_int_equal(reply_parse(line, n + 5, &r, &used), REPLY_DONE);
    assert_true(reply_has_mflag(&r, 'X') && reply_has_mflag(&r, 'Z'));
    assert_false(reply_has_mflag(&r, 'W'));

    /* Codes without a value. */
    static const struct {
        enum wire_op op;
        enum meta_rc rc;
        enum reply_kind kind;
    } codes[] = {
        {WOP_SET, META_RC_HD, REPLY_META_HD},    {WOP_ADD, META_RC_NS, REPLY_META_NS},
        {WOP_CAS, META_RC_EX, REPLY_META_EX},    {WOP_CAS, META_RC_NF, REPLY_META_NF},
        {WOP_DELETE, META_RC_HD, REPLY_META_HD}, {WOP_DELETE, META_RC_NF, REPLY_META_NF},
        {WOP_GET, META_RC_EN, REPLY_META_EN},    {WOP_TOUCH, META_RC_HD, REPLY_META_HD},
    };
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        server_view(codes[i].op, false, &req, &mr);
        struct meta_item_facts hd = {.ttl = -1, .ttl_after_t = -1, .ttl_after_n = -1};
        n = meta_compose(line, sizeof(line), &mr, codes[i].rc, &hd);
        assert_int_equal(reply_parse(line, n, &r, &used), REPLY_DONE);
        assert_int_equal(used, n);
        assert_int_equal(r.kind, codes[i].kind);
    }
    /* ma with v: the number as the value. */
    server_view(WOP_INCR, false, &req, &mr);
    struct meta_item_facts num = {.value_len = 2, .ttl = -1, .ttl_after_t = -1, .ttl_after_n = -1};
    n = meta_compose(line, sizeof(line), &mr, META_RC_VA, &num);
    memcpy(line + n, "42\r\n", 4);
    assert_int_equal(reply_parse(line, n + 4, &r, &used), REPLY_DONE);
    assert_int_equal(r.kind, REPLY_META_VA);
    assert_memory_equal(r.data.p, "42", 2);
    kind("MN\r\n", REPLY_MN);
    kind("HD c12 t-1 Oabc\r\n", REPLY_META_HD);
    assert_int_equal(reply_parse(S("HD c12 t-1 Oabc\r\n"), &r, &used), REPLY_DONE);
    assert_int_equal(r.ttl, -1);
    assert_int_equal(r.opaque.len, 3);
    /* Refused meta lines. */
    assert_int_equal(reply_parse(S("HD cx\r\n"), &r, &used), REPLY_BAD);
    assert_int_equal(reply_parse(S("HD 1\r\n"), &r, &used), REPLY_BAD);
    assert_int_equal(reply_parse(S("VA\r\n"), &r, &used), REPLY_BAD);
    assert_int_equal(reply_parse(S("VA 2\r\nabc\r\n"), &r, &used), REPLY_BAD);
    assert_int_equal(reply_parse(S("ENX\r\n"), &r, &used), REPLY_BAD);
    buf_free(&req);
}

static void bin_kind(const char *pkt, size_t n, enum reply_kind k, struct reply *r)
{
    struct bin_response br;
    size_t used;
    for (size_t cut = 0; cut < n; cut++) {
        assert_int_equal(bin_parse_response(pkt, cut, &br, &used), BIN_NEED_MORE);
    }
    assert_int_equal(bin_parse_response(pkt, n, &br, &used), BIN_OK);
    assert_int_equal(used, n);
    reply_from_bin(&br, r);
    assert_true(r->binary);
    assert_int_equal(r->kind, k);
}

static void test_binary(void **state)
{
    (void)state;
    char pkt[BIN_ITEM_HEADER_MAX + 16];
    struct reply r;
    size_t n = bin_compose_item(pkt, BIN_OP_GETKQ, 0, 99, 7, "key", 3, 5);
    memcpy(pkt + n, "value", 5);
    bin_kind(pkt, n + 5, REPLY_VALUE, &r);
    assert_memory_equal(r.key.p, "key", 3);
    assert_memory_equal(r.data.p, "value", 5);
    assert_int_equal(r.flags, 7);
    assert_true(r.cas == 99);
    n = bin_compose_ok(pkt, BIN_OP_SET, 0, 5);
    bin_kind(pkt, n, REPLY_STORED, &r);
    n = bin_compose_ok(pkt, BIN_OP_DELETE, 0, 0);
    bin_kind(pkt, n, REPLY_DELETED, &r);
    n = bin_compose_ok(pkt, BIN_OP_NOOP, 0, 0);
    bin_kind(pkt, n, REPLY_MN, &r);
    n = bin_compose_ok(pkt, BIN_OP_FLUSH, 0, 0);
    bin_kind(pkt, n, REPLY_OK, &r);
    n = bin_compose_item(pkt, BIN_OP_TOUCH, 0, 3, 0, NULL, 0, 0);
    bin_kind(pkt, n, REPLY_TOUCHED, &r);
    n = bin_compose_arith(pkt, BIN_OP_INCREMENT, 0, 4, 1234);
    bin_kind(pkt, n, REPLY_NUMBER, &r);
    assert_true(r.number == 1234);
    static const struct {
        uint16_t status;
        enum reply_kind kind;
    } errs[] = {
        {BIN_STATUS_KEY_ENOENT, REPLY_NOT_FOUND},  {BIN_STATUS_KEY_EEXISTS, REPLY_EXISTS},
        {BIN_STATUS_NOT_STORED, REPLY_NOT_STORED}, {BIN_STATUS_UNKNOWN_COMMAND, REPLY_ERROR},
        {BIN_STATUS_EINVAL, REPLY_CLIENT_ERROR},   {BIN_STATUS_DELTA_BADVAL, REPLY_CLIENT_ERROR},
        {BIN_STATUS_E2BIG, REPLY_SERVER_ERROR},    {BIN_STATUS_ENOMEM, REPLY_SERVER_ERROR},
    };
    for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
        n = bin_compose_error(pkt, BIN_OP_SET, 0, errs[i].status);
        bin_kind(pkt, n, errs[i].kind, &r);
    }
    n = bin_compose_error(pkt, BIN_OP_SET, 0, BIN_STATUS_E2BIG);
    bin_kind(pkt, n, REPLY_SERVER_ERROR, &r);
    assert_non_null(memmem(r.text.p, r.text.len, "too large", 9));
    char big[128];
    n = bin_compose_stat(big, sizeof(big), 0, "pid", 3, "42", 2);
    bin_kind(big, n, REPLY_STAT, &r);
    assert_memory_equal(r.name.p, "pid", 3);
    assert_memory_equal(r.text.p, "42", 2);
    n = bin_compose_stat_end(big, 0);
    bin_kind(big, n, REPLY_END, &r);
    n = bin_compose_version(big, sizeof(big), 0, "1.6.18");
    bin_kind(big, n, REPLY_VERSION, &r);
    assert_memory_equal(r.text.p, "1.6.18", 6);
}

static void test_lines_raw(void **state)
{
    (void)state;
    struct reply r;
    size_t used;
    const char *s = "key=a%25b exp=-1 la=1 cas=1 fetch=no cls=1 size=63\nEND\r\n";
    assert_int_equal(reply_parse_line(S(s), &r, &used), REPLY_DONE);
    assert_int_equal(r.kind, REPLY_LINE);
    assert_int_equal(used, strlen(s) - 5);
    assert_int_equal(r.text.len, used - 1);
    assert_int_equal(reply_parse_line(s + used, 5, &r, &used), REPLY_DONE);
    assert_int_equal(r.text.len, 3);
    assert_int_equal(reply_parse_line(S("partial"), &r, &used), REPLY_NEED_MORE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines),   cmocka_unit_test(test_value),
        cmocka_unit_test(test_refused), cmocka_unit_test(test_meta_round_trip),
        cmocka_unit_test(test_binary),  cmocka_unit_test(test_lines_raw),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

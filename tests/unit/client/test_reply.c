/*
 * test_reply.c - the client's text reply parser: every reply kind, VALUE
 * blocks split at every byte, and what is refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "reply.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines),
        cmocka_unit_test(test_value),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

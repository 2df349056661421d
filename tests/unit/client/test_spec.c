/*
 * test_spec.c - server list parsing: host:port[:weight], [v6]:port, unix
 * paths, comma lists, and what is refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "spec.h"

static void one(const char *s, const char *host, unsigned port, unsigned weight, bool is_unix)
{
    struct server_spec sp;
    assert_int_equal(spec_parse_one(s, strlen(s), &sp), 0);
    assert_string_equal(sp.host, host);
    assert_int_equal(sp.port, port);
    assert_int_equal(sp.weight, weight);
    assert_int_equal(sp.is_unix, is_unix);
    free(sp.host);
}

static void bad(const char *s)
{
    struct server_spec sp;
    if (spec_parse_one(s, strlen(s), &sp) == 0) {
        print_error("accepted \"%s\"\n", s);
        free(sp.host);
        fail();
    }
}

static void test_items(void **state)
{
    (void)state;
    one("localhost", "localhost", 11211, 1, false);
    one("127.0.0.1:23101", "127.0.0.1", 23101, 1, false);
    one("127.0.0.1:23101:3", "127.0.0.1", 23101, 3, false);
    one("10.0.1.1:11211 600", "10.0.1.1", 11211, 600, false);
    one("  cache-1.example:0  ", "cache-1.example", 11211, 1, false);
    one("[::1]", "::1", 11211, 1, false);
    one("[::1]:23101", "::1", 23101, 1, false);
    one("[fe80::1%lo]:23101:2", "fe80::1%lo", 23101, 2, false);
    one("/tmp/mc.sock", "/tmp/mc.sock", 0, 1, true);
    one("unix:/tmp/mc.sock", "/tmp/mc.sock", 0, 1, true);
}

static void test_refused(void **state)
{
    (void)state;
    bad("");
    bad("   ");
    bad("::1");
    bad("host:");
    bad("host:65536");
    bad("host:12x");
    bad("host:1:0");
    bad("host:1:");
    bad("host:1:2:3");
    bad("[::1");
    bad("[]:1");
    bad("[127.0.0.1]:1");
    bad("[::1]x");
    bad("a b");
    bad(":11211");
}

static void test_list(void **state)
{
    (void)state;
    struct server_spec *sp;
    size_t n;
    assert_int_equal(spec_parse_list("a:1, b:2:5 ,[::1]:3,/tmp/s", &sp, &n), 0);
    assert_int_equal(n, 4);
    assert_string_equal(sp[0].host, "a");
    assert_int_equal(sp[1].weight, 5);
    assert_string_equal(sp[2].host, "::1");
    assert_true(sp[3].is_unix);
    char buf[64];
    spec_format(&sp[0], buf, sizeof(buf));
    assert_string_equal(buf, "a:1");
    spec_format(&sp[2], buf, sizeof(buf));
    assert_string_equal(buf, "[::1]:3");
    spec_format(&sp[3], buf, sizeof(buf));
    assert_string_equal(buf, "/tmp/s");
    spec_free_list(sp, n);
    assert_int_equal(spec_parse_list("a:1,,b:2", &sp, &n), -1);
    assert_null(sp);
    assert_int_equal(spec_parse_list("a:1,", &sp, &n), -1);
    assert_int_equal(spec_parse_list("", &sp, &n), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_items),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

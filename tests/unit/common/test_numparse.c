/*
 * test_numparse.c - memcached's safe_strto* rules over spans.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "numparse.h"

#define S(x) x, strlen(x)

static void test_u64(void **state)
{
    (void)state;
    uint64_t v = 7;
    assert_true(num_parse_u64(S("0"), &v));
    assert_int_equal(v, 0);
    assert_true(num_parse_u64(S("18446744073709551615"), &v));
    assert_true(v == UINT64_MAX);
    assert_false(num_parse_u64(S("18446744073709551616"), &v));
    assert_false(num_parse_u64(S("-1"), &v));
    assert_true(num_parse_u64(S("-0"), &v));
    assert_int_equal(v, 0);
    /* strtoull wraps the sign; memcached accepts what is then positive. */
    assert_true(num_parse_u64(S("-18446744073709551615"), &v));
    assert_int_equal(v, 1);
    assert_false(num_parse_u64(S("-9223372036854775807"), &v));
    assert_true(num_parse_u64(S("  42"), &v));
    assert_int_equal(v, 42);
    assert_true(num_parse_u64(S("+42"), &v));
    assert_int_equal(v, 42);
    assert_false(num_parse_u64(S("42abc"), &v));
    assert_false(num_parse_u64(S("abc"), &v));
    assert_false(num_parse_u64(S(""), &v));
    assert_false(num_parse_u64(S("   "), &v));
    /* Digits followed by white space are accepted, as strtoull + isspace is. */
    assert_true(num_parse_u64(S("12\t"), &v));
    assert_int_equal(v, 12);
    assert_true(num_parse_u64(S("1 2"), &v));
    assert_int_equal(v, 1);
}

static void test_u32_truncates(void **state)
{
    (void)state;
    uint32_t v = 1;
    assert_true(num_parse_u32(S("4294967296"), &v));
    assert_int_equal(v, 0);
    assert_true(num_parse_u32(S("4294967295"), &v));
    assert_true(v == UINT32_MAX);
    assert_false(num_parse_u32(S("-5"), &v));
}

static void test_signed(void **state)
{
    (void)state;
    int64_t v;
    int32_t w;
    assert_true(num_parse_i64(S("-9223372036854775808"), &v));
    assert_true(v == INT64_MIN);
    assert_false(num_parse_i64(S("9223372036854775808"), &v));
    assert_true(num_parse_i64(S("9223372036854775807"), &v));
    assert_true(v == INT64_MAX);
    assert_true(num_parse_i32(S("-1"), &w));
    assert_int_equal(w, -1);
    assert_true(num_parse_i32(S("2592000"), &w));
    assert_int_equal(w, 2592000);
    assert_false(num_parse_i32(S("1.5"), &w));
    assert_false(num_parse_i32(S("-"), &w));
}

static void test_format(void **state)
{
    (void)state;
    char buf[24];
    const uint64_t cases[] = {0, 1, 9, 10, 99, 100, 12345678901234ULL, UINT64_MAX};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = num_format_u64(buf, cases[i]);
        buf[n] = '\0';
        uint64_t back;
        assert_true(num_parse_u64(buf, n, &back));
        assert_true(back == cases[i]);
    }
    assert_int_equal(num_format_u64(buf, UINT64_MAX), 20);
    assert_memory_equal(buf, "18446744073709551615", 20);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_u64),
        cmocka_unit_test(test_u32_truncates),
        cmocka_unit_test(test_signed),
        cmocka_unit_test(test_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

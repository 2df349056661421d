/*
 * test_uri.c - memcached's key encoding, byte class by byte class.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "uri.h"

static void expect(const char *in, size_t n, const char *want)
{
    char out[URI_ENCODED_MAX(64)];
    assert_true(n <= 64);
    size_t got = uri_encode(in, n, out);
    assert_int_equal(got, strlen(want));
    assert_memory_equal(out, want, got);
}

static void test_unreserved_pass(void **state)
{
    (void)state;
    expect("AZaz09-._~", 10, "AZaz09-._~");
    expect("", 0, "");
}

static void test_others_escaped(void **state)
{
    (void)state;
    expect("a b", 3, "a%20b");
    expect("%", 1, "%25");
    expect("a/b:c", 5, "a%2Fb%3Ac");
    expect("\xc3\xa9", 2, "%C3%A9");
    expect("\x00\xff", 2, "%00%FF");
    /* Every byte of the worst case takes three. */
    char all[64];
    memset(all, '/', sizeof(all));
    char out[URI_ENCODED_MAX(64)];
    assert_int_equal(uri_encode(all, sizeof(all), out), URI_ENCODED_MAX(64));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unreserved_pass),
        cmocka_unit_test(test_others_escaped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

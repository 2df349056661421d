/*
 * test_clock.c - exptime conversion with a fake clock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "clock.h"

static void test_realtime(void **state)
{
    (void)state;
    struct clock c;
    const time_t start = 1700000000;
    clock_init(&c, start);
    assert_int_equal(clock_now(&c), 2);
    clock_set(&c, 1000);
    assert_int_equal(clock_realtime(&c, 0), 0);
    assert_int_equal(clock_realtime(&c, 10), 1010);
    assert_int_equal(clock_realtime(&c, CLOCK_REALTIME_MAXDELTA), 1000 + CLOCK_REALTIME_MAXDELTA);
    /* Past 30 days: absolute unix time. */
    assert_int_equal(clock_realtime(&c, start + 5000), 5002);
    /* At or before the start: already expired. */
    assert_int_equal(clock_realtime(&c, CLOCK_REALTIME_MAXDELTA + 1), 1);
    assert_int_equal(clock_realtime(&c, start - 2), 1);
    /* Negative: expired at once. */
    assert_int_equal(clock_realtime(&c, -1), 1);
    assert_int_equal(clock_realtime(&c, -100000), 1);
    assert_true(clock_unix(&c) == start - 2 + 1000);
    assert_true(clock_to_unix(&c, 0) == 0);
    assert_true(clock_to_unix(&c, 5002) == start + 5000);
}

static void test_tick_monotonic(void **state)
{
    (void)state;
    struct clock c;
    clock_init(&c, time(NULL));
    rel_time_t a = clock_tick(&c);
    rel_time_t b = clock_tick(&c);
    assert_true(a >= 2);
    assert_true(b >= a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_realtime),
        cmocka_unit_test(test_tick_monotonic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

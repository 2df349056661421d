/*
 * test_htab.c - unit tests of the hash table: incremental growth while keys
 * are inserted and deleted, with every live key found at every step.
 */
#include "storage_test.h"

#define T0    100
#define NKEYS 100000

static void key_of(char *k, size_t n, int i)
{
    snprintf(k, n, "growth-key-%d", i);
}

static void verify(struct storage *st, const unsigned char *live, int upto)
{
    char k[64];
    for (int i = 0; i < upto; i++) {
        key_of(k, sizeof(k), i);
        bool present = t_present(st, k, T0);
        if (present != (bool)live[i]) {
            fail_msg("key %d: present %d, live %d", i, present, live[i]);
        }
    }
}

static void test_hash_growth(void **state)
{
    (void)state;
    struct storage *st = t_create(64 * MiB, 10, false);
    assert_int_equal(t_stats(st, T0).hash_power_level, 10);
    unsigned char *live = calloc(NKEYS, 1);
    char k[64];
    unsigned expanding_steps = 0;
    unsigned last_power = 10;
    for (int i = 0; i < NKEYS; i++) {
        key_of(k, sizeof(k), i);
        t_set(st, k, "v", 0, T0);
        live[i] = 1;
        if (i % 7 == 3) {
            int d = i - 3;
            key_of(k, sizeof(k), d);
            bool found;
            assert_int_equal(storage_delete(st, k, strlen(k), storage_hash(k, strlen(k)), 0, T0,
                                            &found, NULL, NULL),
                             0);
            assert_true(found == (bool)live[d]);
            live[d] = 0;
        }
        if (i % 200 == 199) {
            storage_maintain(st, T0);
            struct storage_stats s = t_stats(st, T0);
            assert_true(s.hash_power_level >= last_power);
            last_power = s.hash_power_level;
            if (s.hash_is_expanding) {
                /* Mid-migration: some buckets moved, some not. */
                expanding_steps++;
                verify(st, live, i + 1);
                /* Both tables are counted while growing. */
                uint64_t both = 3ull << (s.hash_power_level - 1);
                assert_int_equal(s.hash_bytes, both * sizeof(uint32_t));
            }
        }
    }
    while (storage_maintain(st, T0)) {
    }
    struct storage_stats s = t_stats(st, T0);
    assert_false(s.hash_is_expanding);
    assert_int_equal(s.hash_power_level, 16);
    assert_int_equal(s.hash_bytes, (1ull << 16) * sizeof(uint32_t));
    assert_true(expanding_steps > 20);
    verify(st, live, NKEYS);
    uint64_t nlive = 0;
    for (int i = 0; i < NKEYS; i++) {
        nlive += live[i];
    }
    assert_int_equal(s.curr_items, nlive);
    t_check(st);
    free(live);
    storage_destroy(&st);
}

static void test_no_expand(void **state)
{
    (void)state;
    struct storage_options o;
    storage_options_default(&o);
    o.hashpower = 10;
    o.hash_expand = false;
    struct storage *st = NULL;
    assert_int_equal(storage_create(&st, &o), 0);
    char k[64];
    for (int i = 0; i < 5000; i++) {
        key_of(k, sizeof(k), i);
        t_set(st, k, "v", 0, T0);
    }
    while (storage_maintain(st, T0)) {
    }
    assert_int_equal(t_stats(st, T0).hash_power_level, 10);
    for (int i = 0; i < 5000; i++) {
        key_of(k, sizeof(k), i);
        assert_true(t_present(st, k, T0));
    }
    storage_destroy(&st);

    /* hashpower below the stripe count is raised to it. */
    o.hashpower = 4;
    assert_int_equal(storage_create(&st, &o), 0);
    assert_int_equal(t_stats(st, T0).hash_power_level, 10);
    storage_destroy(&st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_growth),
        cmocka_unit_test(test_no_expand),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_dist.c - placement known answers: the key -> server tables of
 * clients.md (§1.9 python-memcached, §2.2 libmemcached, observed through
 * pylibmc/libmemcached 1.1.4 and python-memcached 1.59) and libmemcached's
 * own ketama fixture (99 keys, 8 weighted servers, standard and spy names).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "dist.h"
#include "ketama_fixture.h"

#define NKEYS 10
static const char *const keys[NKEYS] = {
    "foo",     "bar",
    "baz",     "key0",
    "key1",    "key2",
    "user:42", "session:abc123",
    "ob",      "\xc3\xa9t\xc3\xa9",
};

/* Pool A: 127.0.0.1:23101..23103; pool B: 10.0.0.1..3 on the default port. */
static void pool_a(struct dist_server *s, const uint32_t *weights)
{
    static const uint16_t ports[3] = {23101, 23102, 23103};
    for (int i = 0; i < 3; i++) {
        s[i].host = "127.0.0.1";
        s[i].port = ports[i];
        s[i].weight = weights ? weights[i] : 1;
        s[i].live = true;
    }
}

static void pool_b(struct dist_server *s)
{
    static const char *const hosts[3] = {"10.0.0.1", "10.0.0.2", "10.0.0.3"};
    for (int i = 0; i < 3; i++) {
        s[i].host = hosts[i];
        s[i].port = 11211;
        s[i].weight = 1;
        s[i].live = true;
    }
}

static void check_row(const char *what, const struct dist_config *cfg,
                      const struct dist_server *servers, size_t n, const int expect[NKEYS])
{
    struct dist d;
    dist_init(&d, cfg);
    assert_int_equal(dist_build(&d, servers, n), 0);
    int bad = 0;
    for (int k = 0; k < NKEYS; k++) {
        long got = dist_lookup(&d, keys[k], strlen(keys[k]));
        if (got != expect[k]) {
            print_error("%s: key %s -> %ld, expected %d\n", what, keys[k], got, expect[k]);
            bad++;
        }
    }
    dist_deinit(&d);
    assert_int_equal(bad, 0);
}

static void test_modula(void **state)
{
    (void)state;
    struct dist_server s[3];
    pool_a(s, NULL);
    struct dist_config cfg = {.mode = DIST_MODULA, .hash = HASH_DEFAULT};
    static const int oaat[NKEYS] = {0, 1, 1, 2, 2, 2, 0, 1, 2, 2};
    check_row("modula default", &cfg, s, 3, oaat);
    cfg.hash = HASH_CRC;
    static const int crc[NKEYS] = {1, 1, 0, 2, 1, 0, 1, 1, 0, 1};
    check_row("modula crc", &cfg, s, 3, crc);
}

static void test_ketama_unweighted(void **state)
{
    (void)state;
    struct dist_server s[3];
    pool_a(s, NULL);
    struct dist_config cfg = {.mode = DIST_KETAMA, .hash = HASH_DEFAULT};
    static const int a_default[NKEYS] = {1, 0, 2, 0, 1, 1, 2, 0, 1, 2};
    check_row("A ketama", &cfg, s, 3, a_default);
    cfg.hash = HASH_MD5;
    static const int a_md5[NKEYS] = {2, 1, 0, 0, 1, 1, 1, 0, 1, 1};
    check_row("A ketama md5", &cfg, s, 3, a_md5);

    pool_b(s);
    cfg.hash = HASH_DEFAULT;
    static const int b_default[NKEYS] = {2, 0, 1, 0, 0, 1, 1, 1, 2, 0};
    check_row("B ketama", &cfg, s, 3, b_default);
}

static void test_ketama_weighted(void **state)
{
    (void)state;
    struct dist_server s[3];
    pool_a(s, NULL);
    /* KETAMA_WEIGHTED: MD5 points and MD5 keys. */
    struct dist_config cfg = {.mode = DIST_KETAMA, .hash = HASH_MD5, .weighted = true};
    static const int a_w[NKEYS] = {1, 2, 2, 0, 2, 2, 2, 0, 1, 1};
    check_row("A ketama_weighted", &cfg, s, 3, a_w);

    static const uint32_t w121[3] = {1, 2, 1};
    pool_a(s, w121);
    static const int a_w121[NKEYS] = {1, 1, 2, 0, 2, 2, 1, 1, 1, 1};
    check_row("A ketama_weighted 1,2,1", &cfg, s, 3, a_w121);

    /* Plain KETAMA with a weight > 1 turns weighted: MD5 points, oaat keys. */
    cfg.hash = HASH_DEFAULT;
    cfg.weighted = false;
    static const int a_auto[NKEYS] = {1, 1, 2, 1, 1, 0, 2, 1, 2, 0};
    check_row("A ketama auto-weighted", &cfg, s, 3, a_auto);

    pool_b(s);
    cfg.hash = HASH_MD5;
    cfg.weighted = true;
    static const int b_w[NKEYS] = {1, 1, 0, 1, 0, 2, 0, 2, 0, 0};
    check_row("B ketama_weighted", &cfg, s, 3, b_w);
}

static void test_continuum_points(void **state)
{
    (void)state;
    struct dist_server s[3];
    pool_a(s, NULL);
    struct dist d;
    struct dist_config cfg = {.mode = DIST_KETAMA, .hash = HASH_DEFAULT};
    dist_init(&d, &cfg);
    assert_int_equal(dist_build(&d, s, 3), 0);
    assert_int_equal(d.npoints, 300);
    static const struct dist_point first_u[5] = {
        {0x0006cfba, 2}, {0x0215ddf4, 1}, {0x02306b7c, 0}, {0x03bf560b, 2}, {0x03dd4d81, 0}};
    for (int i = 0; i < 5; i++) {
        assert_true(d.points[i].value == first_u[i].value);
        assert_int_equal(d.points[i].server, first_u[i].server);
    }
    dist_deinit(&d);

    cfg.hash = HASH_MD5;
    cfg.weighted = true;
    dist_init(&d, &cfg);
    assert_int_equal(dist_build(&d, s, 3), 0);
    assert_int_equal(d.npoints, 480);
    static const struct dist_point first_w[5] = {
        {0x0004067b, 2}, {0x00558872, 2}, {0x00574942, 2}, {0x02e7559d, 2}, {0x02eb660f, 1}};
    for (int i = 0; i < 5; i++) {
        assert_true(d.points[i].value == first_w[i].value);
        assert_int_equal(d.points[i].server, first_w[i].server);
    }
    dist_deinit(&d);
}

static void fixture_pool(struct dist_server *s, char names[8][16])
{
    static const uint32_t weights[8] = {600, 300, 200, 350, 1000, 800, 950, 100};
    for (int i = 0; i < 8; i++) {
        snprintf(names[i], 16, "10.0.1.%d", i + 1);
        s[i].host = names[i];
        s[i].port = 11211;
        s[i].weight = weights[i];
        s[i].live = true;
    }
}

static void run_fixture(bool spy)
{
    struct dist_server s[8];
    char names[8][16];
    fixture_pool(s, names);
    struct dist d;
    struct dist_config cfg = {.mode = DIST_KETAMA, .hash = HASH_MD5, .weighted = true, .spy = spy};
    dist_init(&d, &cfg);
    assert_int_equal(dist_build(&d, s, 8), 0);
    if (!spy) {
        /* Points per server: 176, 88, 56, 104, 296, 236, 280, 28. */
        assert_int_equal(d.npoints, 1264);
    }
    /* "VDEAAAAA" hashes past the last point and wraps to the first. */
    assert_true(dist_key_hash(&d, "VDEAAAAA", 8) > d.points[d.npoints - 1].value);
    assert_int_equal(dist_lookup(&d, "VDEAAAAA", 8), (long)d.points[0].server);
    int bad = 0;
    for (int i = 0; i < 99; i++) {
        const char *k = ketama_fixture[i].key;
        assert_true(dist_key_hash(&d, k, strlen(k)) == (uint32_t)ketama_fixture[i].md5);
        long got = dist_lookup(&d, k, strlen(k)) + 1;
        long want = spy ? ketama_fixture[i].spy : ketama_fixture[i].std;
        if (got != want) {
            print_error("%s key %d (%s): got 10.0.1.%ld expected 10.0.1.%ld\n", spy ? "spy" : "std",
                        i, k, got, want);
            bad++;
        }
    }
    dist_deinit(&d);
    assert_int_equal(bad, 0);
}

static void test_libmemcached_fixture(void **state)
{
    (void)state;
    run_fixture(false);
}

static void test_libmemcached_fixture_spy(void **state)
{
    (void)state;
    run_fixture(true);
}

static void test_ketama_dead_server(void **state)
{
    (void)state;
    /* With a server left out (auto-eject) none of its keys land on it, and
     * the other servers keep their keys (unweighted: same points). */
    struct dist_server s[3];
    pool_a(s, NULL);
    struct dist_config cfg = {.mode = DIST_KETAMA, .hash = HASH_DEFAULT};
    struct dist all, some;
    dist_init(&all, &cfg);
    dist_init(&some, &cfg);
    assert_int_equal(dist_build(&all, s, 3), 0);
    s[1].live = false;
    assert_int_equal(dist_build(&some, s, 3), 0);
    for (int i = 0; i < 2000; i++) {
        char k[32];
        int n = snprintf(k, sizeof(k), "key:%d", i);
        long a = dist_lookup(&all, k, (size_t)n), b = dist_lookup(&some, k, (size_t)n);
        assert_true(b != 1);
        if (a != 1) {
            assert_int_equal(a, b);
        }
    }
    /* libmemcached's fixture with 10.0.1.3 ejected: nothing maps there. */
    struct dist_server f[8];
    char names[8][16];
    fixture_pool(f, names);
    f[2].live = false;
    struct dist_config wcfg = {.mode = DIST_KETAMA, .hash = HASH_MD5, .weighted = true};
    struct dist w;
    dist_init(&w, &wcfg);
    assert_int_equal(dist_build(&w, f, 8), 0);
    for (int i = 0; i < 99; i++) {
        const char *k = ketama_fixture[i].key;
        assert_true(dist_lookup(&w, k, strlen(k)) != 2);
    }
    /* No live server at all. */
    for (int i = 0; i < 3; i++) {
        s[i].live = false;
    }
    assert_int_equal(dist_build(&some, s, 3), 0);
    assert_int_equal(dist_lookup(&some, "foo", 3), -1);
    dist_deinit(&w);
    dist_deinit(&all);
    dist_deinit(&some);
}

static void test_python(void **state)
{
    (void)state;
    struct dist_server s[3];
    pool_a(s, NULL);
    struct dist_config cfg = {.mode = DIST_PYTHON, .python_or_one = true};
    static const int p159[NKEYS] = {1, 1, 0, 2, 1, 0, 1, 1, 1, 1};
    check_row("python 1.59", &cfg, s, 3, p159);
    cfg.python_or_one = false;
    static const int p162[NKEYS] = {1, 1, 0, 2, 1, 0, 1, 1, 0, 1};
    check_row("python 1.62", &cfg, s, 3, p162);

    /* Weights 1,2,1: buckets [s0, s1, s1, s2]. */
    static const uint32_t w121[3] = {1, 2, 1};
    pool_a(s, w121);
    cfg.python_or_one = true;
    static const int w159[NKEYS] = {2, 2, 0, 2, 0, 1, 2, 2, 1, 1};
    check_row("python 1.59 weights 1,2,1", &cfg, s, 3, w159);
    cfg.python_or_one = false;
    static const int w162[NKEYS] = {2, 2, 0, 2, 0, 1, 2, 2, 0, 1};
    check_row("python 1.62 weights 1,2,1", &cfg, s, 3, w162);

    /* Server 1 dead: the str(h) + str(i) rehash. */
    pool_a(s, NULL);
    s[1].live = false;
    cfg.python_or_one = true;
    static const int dead[NKEYS] = {0, 2, 0, 2, 2, 0, 0, 2, 0, 2};
    check_row("python 1.59 server 1 dead", &cfg, s, 3, dead);

    /* Every server dead: no server after 10 rehashes. */
    for (int i = 0; i < 3; i++) {
        s[i].live = false;
    }
    struct dist d;
    dist_init(&d, &cfg);
    assert_int_equal(dist_build(&d, s, 3), 0);
    assert_int_equal(dist_lookup(&d, "foo", 3), -1);
    dist_deinit(&d);
}

static void test_single_server(void **state)
{
    (void)state;
    struct dist_server s[1] = {{"127.0.0.1", 23101, 1, true}};
    enum dist_mode modes[3] = {DIST_MODULA, DIST_KETAMA, DIST_PYTHON};
    for (int m = 0; m < 3; m++) {
        struct dist_config cfg = {.mode = modes[m]};
        struct dist d;
        dist_init(&d, &cfg);
        assert_int_equal(dist_build(&d, s, 1), 0);
        for (int k = 0; k < NKEYS; k++) {
            assert_int_equal(dist_lookup(&d, keys[k], strlen(keys[k])), 0);
        }
        dist_deinit(&d);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_modula),
        cmocka_unit_test(test_ketama_unweighted),
        cmocka_unit_test(test_ketama_weighted),
        cmocka_unit_test(test_continuum_points),
        cmocka_unit_test(test_libmemcached_fixture),
        cmocka_unit_test(test_libmemcached_fixture_spy),
        cmocka_unit_test(test_ketama_dead_server),
        cmocka_unit_test(test_python),
        cmocka_unit_test(test_single_server),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_client.c - the handle's health and failover logic, driven over
 * loopback sockets that refuse connections or never answer (no server
 * needed): failure counting, dead marking, failover vs fail fast, modula
 * never moving keys, the retry interval, timeouts, and key checks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "memstash/memstash.h"

/* A loopback port nobody listens on (bound, then released). */
static unsigned refused_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* A listening socket that never accepts, so connects succeed but nothing answers. */
static int silent_listener(unsigned *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 16), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static struct mst *pool_of_refusers(size_t n)
{
    struct mst *m;
    assert_int_equal(mst_create(&m), MST_OK);
    for (size_t i = 0; i < n; i++) {
        char spec[64];
        snprintf(spec, sizeof(spec), "127.0.0.1:%u", refused_port());
        assert_int_equal(mst_server_add(m, spec), MST_OK);
    }
    return m;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_failure_limit_marks_dead(void **state)
{
    (void)state;
    struct mst *m = pool_of_refusers(3);
    assert_int_equal(mst_set_failure_limit(m, 2), MST_OK);
    assert_int_equal(mst_set_failover(m, false), MST_OK);
    size_t home;
    assert_int_equal(mst_locate(m, "k", 1, &home), MST_OK);
    enum mst_outcome out;
    assert_int_equal(mst_set(m, "k", 1, "v", 1, 0, 0, &out), MST_ECONNECT);
    assert_false(mst_server_is_dead(m, home));
    assert_int_equal(mst_set(m, "k", 1, "v", 1, 0, 0, &out), MST_ECONNECT);
    assert_true(mst_server_is_dead(m, home));
    /* Fail fast while dead: no connect attempt, MST_EDEAD. */
    assert_int_equal(mst_set(m, "k", 1, "v", 1, 0, 0, &out), MST_EDEAD);
    size_t idx;
    assert_int_equal(mst_locate(m, "k", 1, &idx), MST_EDEAD);
    assert_non_null(strstr(mst_last_error(m), "marked dead"));
    mst_destroy(&m);
    assert_null(m);
}

static void test_failover_moves_keys_and_retry_interval(void **state)
{
    (void)state;
    struct mst *m = pool_of_refusers(3);
    assert_int_equal(mst_set_failure_limit(m, 1), MST_OK);
    /* Long enough that the checks below run well within it even on a
     * loaded host (the first server is marked dead at the first refusal). */
    assert_int_equal(mst_set_retry_interval(m, 1000), MST_OK);
    size_t home;
    assert_int_equal(mst_locate(m, "k", 1, &home), MST_OK);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* Every server refuses: each is tried once (failover), then none is left. */
    assert_int_equal(mst_set(m, "k", 1, "v", 1, 0, 0, NULL), MST_ECONNECT);
    for (size_t i = 0; i < 3; i++) {
        assert_true(mst_server_is_dead(m, i));
    }
    size_t idx;
    assert_int_equal(mst_locate(m, "k", 1, &idx), MST_ENOSERVERS);
    /* After the interval the servers are let back in and keys go home
     * (polled, bounded: at most 10 s). */
    int rc = MST_ENOSERVERS;
    for (int i = 0; i < 200 && rc != MST_OK; i++) {
        sleep_ms(50);
        rc = mst_locate(m, "k", 1, &idx);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_int_equal(rc, MST_OK);
    assert_int_equal(idx, home);
    /* ... and not before it (give or take the library's whole milliseconds). */
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(ms >= 990);
    mst_destroy(&m);
}

static void test_failover_next_server(void **state)
{
    (void)state;
    /* One refusing server among two silent ones: its keys move to a live one. */
    unsigned p1, p2;
    int l1 = silent_listener(&p1), l2 = silent_listener(&p2);
    struct mst *m;
    assert_int_equal(mst_create(&m), MST_OK);
    char spec[128];
    snprintf(spec, sizeof(spec), "127.0.0.1:%u,127.0.0.1:%u,127.0.0.1:%u", p1, refused_port(), p2);
    assert_int_equal(mst_server_add(m, spec), MST_OK);
    assert_int_equal(mst_set_failure_limit(m, 1), MST_OK);
    assert_int_equal(mst_set_io_timeout(m, 50), MST_OK);
    char key[32];
    size_t idx = 0;
    int k = 0;
    for (; k < 1000; k++) {
        snprintf(key, sizeof(key), "key%d", k);
        assert_int_equal(mst_locate(m, key, strlen(key), &idx), MST_OK);
        if (idx == 1) {
            break;
        }
    }
    assert_int_equal(idx, 1);
    /* The refused connect marks server 1 dead and the get moves on; the
     * silent server then times out. */
    struct mst_value v;
    assert_int_equal(mst_get(m, key, strlen(key), &v, NULL), MST_ETIMEOUT);
    assert_true(mst_server_is_dead(m, 1));
    assert_int_equal(mst_locate(m, key, strlen(key), &idx), MST_OK);
    assert_true(idx != 1);
    mst_destroy(&m);
    close(l1);
    close(l2);
}

static void test_modula_never_moves(void **state)
{
    (void)state;
    struct mst *m = pool_of_refusers(3);
    assert_int_equal(mst_set_distribution(m, MST_DIST_MODULA), MST_OK);
    assert_int_equal(mst_set_failure_limit(m, 1), MST_OK);
    size_t home, idx;
    assert_int_equal(mst_locate(m, "k", 1, &home), MST_OK);
    assert_int_equal(mst_delete(m, "k", 1, NULL), MST_ECONNECT);
    assert_true(mst_server_is_dead(m, home));
    assert_int_equal(mst_locate(m, "k", 1, &idx), MST_EDEAD);
    int alive = 0;
    for (size_t i = 0; i < 3; i++) {
        alive += !mst_server_is_dead(m, i);
    }
    assert_int_equal(alive, 2);
    mst_destroy(&m);
}

static void test_timeout(void **state)
{
    (void)state;
    unsigned port;
    int l = silent_listener(&port);
    struct mst *m;
    assert_int_equal(mst_create(&m), MST_OK);
    char spec[64];
    snprintf(spec, sizeof(spec), "127.0.0.1:%u", port);
    assert_int_equal(mst_server_add(m, spec), MST_OK);
    assert_int_equal(mst_set_io_timeout(m, 80), MST_OK);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char ver[64];
    assert_int_equal(mst_version(m, 0, ver, sizeof(ver)), MST_ETIMEOUT);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    /* The timeout bounds the wait (generously above: a loaded host may run
     * this thread late). */
    assert_true(ms >= 70 && ms < 5000);
    const char *keys[2] = {"a", "b"};
    size_t nkeys[2] = {1, 1};
    assert_int_equal(mst_get_multi(m, keys, nkeys, 2, false, NULL, NULL), MST_ETIMEOUT);
    mst_destroy(&m);
    close(l);
}

static void test_bad_keys_and_options(void **state)
{
    (void)state;
    struct mst *m;
    assert_int_equal(mst_create(&m), MST_OK);
    size_t idx;
    assert_int_equal(mst_locate(m, "k", 1, &idx), MST_ENOSERVERS);
    assert_int_equal(mst_server_add(m, "127.0.0.1:1"), MST_OK);
    static const char *const bad[] = {"", "a b", "a\n", "a\r", "\t", "x\x7f"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(mst_set(m, bad[i], strlen(bad[i]), "v", 1, 0, 0, NULL), MST_EBADKEY);
        assert_int_equal(mst_locate(m, bad[i], strlen(bad[i]), &idx), MST_EBADKEY);
    }
    char big[252];
    memset(big, 'k', sizeof(big));
    assert_int_equal(mst_locate(m, big, 250, &idx), MST_OK);
    assert_int_equal(mst_locate(m, big, 251, &idx), MST_EBADKEY);
    assert_int_equal(mst_set_namespace(m, "ns:"), MST_OK);
    assert_int_equal(mst_locate(m, big, 247, &idx), MST_OK);
    assert_int_equal(mst_locate(m, big, 248, &idx), MST_EBADKEY);
    assert_int_equal(mst_set_namespace(m, "bad ns"), MST_EINVAL);
    assert_int_equal(mst_locate(m, "\xc3\xa9t\xc3\xa9", 5, &idx), MST_OK);
    const char *keys[2] = {"ok", "not ok"};
    size_t nkeys[2] = {2, 6};
    assert_int_equal(mst_get_multi(m, keys, nkeys, 2, false, NULL, NULL), MST_EBADKEY);
    assert_int_equal(mst_set_failure_limit(m, 0), MST_EINVAL);
    assert_int_equal(mst_set_io_timeout(m, 0), MST_EINVAL);
    assert_int_equal(mst_get_protocol(m), MST_PROTO_META); /* the default */
    assert_int_equal(mst_set_protocol(m, MST_PROTO_BINARY), MST_OK);
    assert_int_equal(mst_get_protocol(m), MST_PROTO_BINARY);
    assert_int_equal(mst_server_protocol(m, 0), MST_PROTO_BINARY);
    assert_int_equal(mst_server_protocol(m, 9), MST_ENOENT);
    assert_int_equal(mst_set_protocol(m, (enum mst_protocol)7), MST_EINVAL);
    assert_int_equal(mst_set_protocol(m, MST_PROTO_META), MST_OK);
    assert_int_equal(mst_server_protocol(m, 0), MST_PROTO_TEXT); /* not asked yet */
    assert_int_equal(mst_set_distribution(m, (enum mst_distribution)99), MST_EINVAL);
    assert_int_equal(mst_set_hash(m, (enum mst_hash)7), MST_EINVAL);
    assert_int_equal(mst_server_add(m, "a:1,b:x"), MST_EINVAL);
    assert_int_equal(mst_server_count(m), 1);
    assert_int_equal(mst_server_remove(m, "127.0.0.1:2"), MST_ENOENT);
    assert_int_equal(mst_server_remove(m, "127.0.0.1:1"), MST_OK);
    assert_int_equal(mst_server_count(m), 0);
    assert_string_equal(mst_strerror(MST_EDEAD), "server is marked dead");
    assert_string_equal(mst_outcome_name(MST_NOT_STORED), "not stored");
    mst_destroy(&m);
    mst_destroy(&m);
}

static void test_clone(void **state)
{
    (void)state;
    struct mst *m, *c;
    assert_int_equal(mst_create(&m), MST_OK);
    assert_int_equal(mst_server_add(m, "10.0.0.1,10.0.0.2,10.0.0.3"), MST_OK);
    assert_int_equal(mst_set_distribution(m, MST_DIST_PYTHON), MST_OK);
    assert_int_equal(mst_clone(m, &c), MST_OK);
    assert_int_equal(mst_server_count(c), 3);
    assert_string_equal(mst_server_name(c, 2), "10.0.0.3:11211");
    static const char *const keys[] = {"foo", "bar", "baz", "key0", "ob"};
    for (size_t i = 0; i < 5; i++) {
        size_t a, b;
        assert_int_equal(mst_locate(m, keys[i], strlen(keys[i]), &a), MST_OK);
        assert_int_equal(mst_locate(c, keys[i], strlen(keys[i]), &b), MST_OK);
        assert_int_equal(a, b);
    }
    /* python-memcached 1.59 places "foo" on server 1 and "ob" (hash 0 -> 1) on 1. */
    size_t idx;
    assert_int_equal(mst_locate(c, "foo", 3, &idx), MST_OK);
    assert_int_equal(idx, 1);
    assert_int_equal(mst_locate(c, "ob", 2, &idx), MST_OK);
    assert_int_equal(idx, 1);
    mst_destroy(&c);
    mst_destroy(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failure_limit_marks_dead),
        cmocka_unit_test(test_failover_moves_keys_and_retry_interval),
        cmocka_unit_test(test_failover_next_server),
        cmocka_unit_test(test_modula_never_moves),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_bad_keys_and_options),
        cmocka_unit_test(test_clone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

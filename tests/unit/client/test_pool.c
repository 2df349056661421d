/*
 * test_pool.c - the handle pool: lending up to its size, waiting with a
 * timeout, and several threads sharing it (this test is about threads).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>

#include "memstash/memstash.h"

static void test_lend_and_timeout(void **state)
{
    (void)state;
    struct mst *tmpl;
    assert_int_equal(mst_create(&tmpl), MST_OK);
    assert_int_equal(mst_server_add(tmpl, "10.0.0.1,10.0.0.2"), MST_OK);
    struct mst_pool *p;
    assert_int_equal(mst_pool_create(tmpl, 2, &p), MST_OK);
    mst_destroy(&tmpl); /* the pool keeps its own copy */
    struct mst *a, *b, *c;
    assert_int_equal(mst_pool_borrow(p, 0, &a), MST_OK);
    assert_int_equal(mst_pool_borrow(p, 0, &b), MST_OK);
    assert_true(a != b);
    assert_int_equal(mst_server_count(a), 2);
    assert_int_equal(mst_pool_borrow(p, 0, &c), MST_ETIMEOUT);
    assert_null(c);
    assert_int_equal(mst_pool_borrow(p, 30, &c), MST_ETIMEOUT);
    mst_pool_return(p, &a);
    assert_null(a);
    assert_int_equal(mst_pool_borrow(p, 0, &c), MST_OK);
    mst_pool_return(p, &b);
    mst_pool_return(p, &c);
    mst_pool_destroy(&p);
    assert_null(p);
    assert_int_equal(mst_pool_create(NULL, 2, &p), MST_EINVAL);
}

struct shared {
    struct mst_pool *pool;
    atomic_int out;
    atomic_int max_out;
    atomic_int failures;
};

static void *worker(void *arg)
{
    struct shared *sh = arg;
    for (int i = 0; i < 200; i++) {
        struct mst *m;
        if (mst_pool_borrow(sh->pool, 5000, &m) != MST_OK) {
            atomic_fetch_add(&sh->failures, 1);
            continue;
        }
        int now = atomic_fetch_add(&sh->out, 1) + 1;
        int seen = atomic_load(&sh->max_out);
        while (now > seen && !atomic_compare_exchange_weak(&sh->max_out, &seen, now)) {
        }
        size_t idx;
        if (mst_locate(m, "key", 3, &idx) != MST_OK) {
            atomic_fetch_add(&sh->failures, 1);
        }
        atomic_fetch_sub(&sh->out, 1);
        mst_pool_return(sh->pool, &m);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    struct mst *tmpl;
    assert_int_equal(mst_create(&tmpl), MST_OK);
    assert_int_equal(mst_server_add(tmpl, "10.0.0.1,10.0.0.2,10.0.0.3"), MST_OK);
    struct shared sh;
    memset(&sh, 0, sizeof(sh));
    assert_int_equal(mst_pool_create(tmpl, 2, &sh.pool), MST_OK);
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, worker, &sh), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
    }
    assert_int_equal(atomic_load(&sh.failures), 0);
    assert_true(atomic_load(&sh.max_out) <= 2);
    mst_pool_destroy(&sh.pool);
    mst_destroy(&tmpl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lend_and_timeout),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

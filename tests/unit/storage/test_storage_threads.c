/*
 * test_storage_threads.c - multi-threaded smoke test: four threads run mixed
 * operations on overlapping keys against a small cache (so eviction, page
 * stealing and hash growth all happen) while a fifth runs storage_maintain();
 * then the engine's invariants and every value are checked.
 */
#include <pthread.h>

#include "storage_test.h"

#define T0        100
#define NTHREADS  4
#define OPS       50000 /* per thread: 200k in all */
#define NKEYS     4000
#define NCOUNTERS 16

struct shared {
    struct storage *st;  /* small: evictions */
    struct storage *cst; /* counters only, never full */
    int stop;
    uint64_t incrs[NTHREADS];
    uint64_t errors;
};

struct worker {
    struct shared *sh;
    int id;
};

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static char fill_of(int key)
{
    return (char)('a' + key % 26);
}

/* A value of key k is made only of fill_of(k) bytes. */
static bool value_ok(struct item *it, int key)
{
    const char *v = storage_item_value(it);
    size_t n = storage_item_nbytes(it);
    for (size_t i = 0; i < n; i++) {
        if (v[i] != fill_of(key)) {
            return false;
        }
    }
    return true;
}

static void note_error(struct shared *sh)
{
    __atomic_fetch_add(&sh->errors, 1, __ATOMIC_RELAXED);
}

static void do_store(struct shared *sh, int key, const char *k, size_t nval, enum storage_op op,
                     uint64_t cas_in)
{
    struct item *it = NULL;
    size_t nkey = strlen(k);
    int rc = storage_alloc(sh->st, k, nkey, 0, 0, nval, T0, &it);
    if (rc != 0) {
        if (rc != STORAGE_ENOMEM) {
            note_error(sh);
        }
        return;
    }
    memset(storage_item_value(it), fill_of(key), nval);
    enum storage_store_outcome out;
    rc = storage_store(sh->st, it, op, cas_in, storage_hash(k, nkey), T0, &out, NULL);
    if (rc != 0 && rc != STORAGE_ENOMEM && rc != STORAGE_E2BIG) {
        note_error(sh);
    }
    storage_release(sh->st, &it);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct shared *sh = w->sh;
    uint64_t seed = 0x9e3779b97f4a7c15ull * (uint64_t)(w->id + 1);
    char k[32];
    for (int op = 0; op < OPS; op++) {
        uint64_t r = rnd(&seed);
        int key = (int)(r % NKEYS);
        snprintf(k, sizeof(k), "key:%d", key);
        size_t nkey = strlen(k);
        uint64_t hv = storage_hash(k, nkey);
        unsigned kind = (unsigned)((r >> 32) % 100);
        size_t nval = (r >> 16) % 64 == 0 ? 2000 + (r >> 40) % 30000 : 1 + (r >> 40) % 400;
        if (kind < 45) {
            struct item *it = storage_get(sh->st, k, nkey, hv, T0, NULL);
            if (it != NULL) {
                if (!value_ok(it, key)) {
                    note_error(sh);
                }
                storage_release(sh->st, &it);
            }
        } else if (kind < 70) {
            do_store(sh, key, k, nval, STORAGE_SET, 0);
        } else if (kind < 75) {
            do_store(sh, key, k, nval, STORAGE_ADD, 0);
        } else if (kind < 80) {
            do_store(sh, key, k, 1 + nval % 50, STORAGE_APPEND, 0);
        } else if (kind < 85) {
            struct item *it = storage_get(sh->st, k, nkey, hv, T0, NULL);
            if (it != NULL) {
                uint64_t cas = storage_item_cas(it);
                storage_release(sh->st, &it);
                do_store(sh, key, k, nval, STORAGE_CAS, cas);
            }
        } else if (kind < 92) {
            bool found;
            storage_delete(sh->st, k, nkey, hv, 0, T0, &found, NULL, NULL);
        } else {
            int c = (int)(r % NCOUNTERS);
            snprintf(k, sizeof(k), "ctr:%d", c);
            struct storage_arith a = {.incr = true, .delta = 1};
            enum storage_arith_outcome out;
            uint64_t v;
            int rc = storage_arith(sh->cst, k, strlen(k), storage_hash(k, strlen(k)), &a, T0, &out,
                                   &v, NULL, NULL);
            if (rc != 0 || out != STORAGE_ARITH_OK) {
                note_error(sh);
            } else {
                sh->incrs[w->id]++;
            }
            /* Sometimes hold a counter while others update it. */
            if (r % 3 == 0) {
                struct item *it =
                    storage_get(sh->cst, k, strlen(k), storage_hash(k, strlen(k)), T0, NULL);
                storage_release(sh->cst, &it);
            }
        }
    }
    return NULL;
}

static void *maintainer_main(void *arg)
{
    struct shared *sh = arg;
    while (!__atomic_load_n(&sh->stop, __ATOMIC_ACQUIRE)) {
        storage_maintain(sh->st, T0);
        storage_maintain(sh->cst, T0);
        struct storage_stats s;
        storage_get_stats(sh->st, T0, &s);
        if (s.total_malloced > 8 * MiB) {
            note_error(sh);
        }
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    struct shared sh = {0};
    sh.st = t_create(8 * MiB, 10, false);
    sh.cst = t_create(8 * MiB, 10, false);
    for (int c = 0; c < NCOUNTERS; c++) {
        char k[32];
        snprintf(k, sizeof(k), "ctr:%d", c);
        t_set(sh.cst, k, "0", 0, T0);
    }
    pthread_t th[NTHREADS];
    struct worker w[NTHREADS];
    pthread_t mt;
    assert_int_equal(pthread_create(&mt, NULL, maintainer_main, &sh), 0);
    for (int i = 0; i < NTHREADS; i++) {
        w[i].sh = &sh;
        w[i].id = i;
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
    }
    __atomic_store_n(&sh.stop, 1, __ATOMIC_RELEASE);
    pthread_join(mt, NULL);
    assert_int_equal(sh.errors, 0);

    t_check(sh.st);
    t_check(sh.cst);
    struct storage_stats s = t_stats(sh.st, T0);
    assert_true(s.total_malloced <= 8 * MiB);
    assert_true(s.evictions > 0);
    assert_true(s.hash_power_level >= 10);

    /* Every key present has a well-formed value; counts add up. */
    uint64_t present = 0;
    for (int key = 0; key < NKEYS; key++) {
        char k[32];
        snprintf(k, sizeof(k), "key:%d", key);
        struct item *it = t_get(sh.st, k, T0, NULL);
        if (it != NULL) {
            present++;
            assert_true(value_ok(it, key));
            storage_release(sh.st, &it);
        }
    }
    assert_int_equal(present, s.curr_items);
    uint64_t used = 0;
    for (unsigned id = 1; id <= storage_class_count(sh.st); id++) {
        struct storage_class_stats cs;
        assert_true(storage_get_class_stats(sh.st, id, T0, &cs));
        used += cs.used_chunks;
    }
    assert_int_equal(used, s.curr_items); /* no references left */

    /* No increment was lost. */
    uint64_t want = 0;
    uint64_t got = 0;
    for (int i = 0; i < NTHREADS; i++) {
        want += sh.incrs[i];
    }
    for (int c = 0; c < NCOUNTERS; c++) {
        char k[32];
        snprintf(k, sizeof(k), "ctr:%d", c);
        struct item *it = t_get(sh.cst, k, T0, NULL);
        assert_non_null(it);
        /* Values carry no terminator: parse a copy. */
        char digits[32] = {0};
        size_t n = storage_item_nbytes(it);
        assert_true(n < sizeof(digits));
        memcpy(digits, storage_item_value(it), n);
        got += strtoull(digits, NULL, 10);
        storage_release(sh.cst, &it);
    }
    assert_int_equal(got, want);
    assert_true(want > 0);
    storage_destroy(&sh.st);
    storage_destroy(&sh.cst);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

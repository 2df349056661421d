/*
 * test_storage.c - unit tests of the storage API semantics: store operations,
 * CAS, delete, references, expiry, flush, incr/decr, size limits, stats.
 * Time is faked by passing `now` values.
 */
#include "storage_test.h"

#define T0 100

static void test_options_and_create(void **state)
{
    (void)state;
    struct storage_options o;
    storage_options_default(&o);
    assert_int_equal(o.maxbytes, 64 * MiB);
    assert_int_equal(o.item_size_max, 1 * MiB);
    assert_true(o.growth_factor == 1.25);
    assert_int_equal(o.chunk_min, 48);
    assert_int_equal(o.hashpower, 16);
    assert_false(o.no_evict);
    assert_true(o.use_cas);
    assert_true(o.hash_expand);

    struct storage *st = NULL;
    struct storage_options bad = o;
    bad.growth_factor = 1.0;
    assert_int_equal(storage_create(&st, &bad), STORAGE_EINVAL);
    assert_null(st);
    bad = o;
    bad.item_size_max = 100;
    assert_int_equal(storage_create(&st, &bad), STORAGE_EINVAL);
    bad = o;
    bad.hashpower = 40;
    assert_int_equal(storage_create(&st, &bad), STORAGE_EINVAL);
    bad = o;
    bad.chunk_min = 2 * MiB;
    assert_int_equal(storage_create(&st, &bad), STORAGE_EINVAL);

    assert_int_equal(storage_create(&st, &o), 0);
    struct storage_stats s = t_stats(st, T0);
    assert_int_equal(s.hash_power_level, 16);
    assert_int_equal(s.hash_bytes, (1u << 16) * sizeof(uint32_t));
    assert_int_equal(s.limit_maxbytes, 64 * MiB);
    assert_int_equal(s.total_malloced, 0); /* lazy */
    storage_destroy(&st);
    assert_null(st);
    storage_destroy(&st); /* NULL is fine */

    assert_string_equal(storage_strerror(STORAGE_OK), "success");
    assert_non_null(storage_strerror(STORAGE_ENOMEM));
    assert_non_null(storage_strerror(STORAGE_E2BIG));
    assert_non_null(storage_strerror(STORAGE_EINVAL));
    assert_non_null(storage_strerror(-99));
    assert_int_equal(storage_hash("abc", 3), storage_hash("abc", 3));
    assert_int_not_equal(storage_hash("abc", 3), storage_hash("abd", 3));
}

static void test_set_get(void **state)
{
    (void)state;
    struct storage *st = t_create(64 * MiB, 0, false);
    enum storage_store_outcome out;
    uint64_t cas = 0;
    int rc = t_store(st, "foo", "bar", 3, 0xdeadbeef, 5000, STORAGE_SET, 0, T0, &out, &cas);
    assert_int_equal(rc, 0);
    assert_int_equal(out, STORAGE_STORED);
    assert_true(cas >= 1);

    enum storage_get_outcome g;
    struct item *it = t_get(st, "foo", T0, &g);
    assert_non_null(it);
    assert_int_equal(g, STORAGE_HIT);
    assert_int_equal(storage_item_nkey(it), 3);
    assert_memory_equal(storage_item_key(it), "foo", 3);
    assert_int_equal(storage_item_nbytes(it), 3);
    assert_memory_equal(storage_item_value(it), "bar", 3);
    assert_int_equal(storage_item_flags(it), 0xdeadbeef);
    assert_int_equal(storage_item_exptime(it), 5000);
    assert_int_equal(storage_item_cas(it), cas);
    assert_int_equal(storage_item_total(it), T_HEADER(0xdeadbeef, 3) + 3 + 3);
    storage_release(st, &it);

    t_expect_absent(st, "nope", T0, STORAGE_MISS);
    /* outcome may be NULL */
    assert_null(t_get(st, "nope", T0, NULL));

    /* SET over an existing key replaces it and changes the CAS. */
    uint64_t cas2 = t_set(st, "foo", "second", 0, T0);
    assert_true(cas2 > cas);
    t_expect(st, "foo", "second", T0);

    /* Zero-length values. */
    t_set(st, "empty", "", 0, T0);
    t_expect(st, "empty", "", T0);

    struct storage_stats s = t_stats(st, T0);
    assert_int_equal(s.curr_items, 2);
    assert_int_equal(s.total_items, 3);
    assert_int_equal(s.bytes, (T_HEADER(0, 6) + 3 + 6) + (T_HEADER(0, 0) + 5 + 0));
    t_check(st);
    storage_destroy(&st);
}

static void test_add_replace(void **state)
{
    (void)state;
    struct storage *st = t_create(64 * MiB, 0, false);
    assert_int_equal(t_op(st, "k", "v1", STORAGE_REPLACE, 0, T0), STORAGE_NOT_STORED);
    t_expect_absent(st, "k", T0, STORAGE_MISS);
    assert_int_equal(t_op(st, "k", "v1", STORAGE_ADD, 0, T0), STORAGE_STORED);
    assert_int_equal(t_op(st, "k", "v2", STORAGE_ADD, 0, T0), STORAGE_NOT_STORED);
    t_expect(st, "k", "v1", T0);
    assert_int_equal(t_op(st, "k", "v3", STORAGE_REPLACE, 0, T0), STORAGE_STORED);
    t_expect(st, "k", "v3", T0);

    /* ADD on a present but never-read item counts as an access (and so does
     * the read that checks it). */
    t_set(st, "cold", "x", 0, T0);
    assert_int_equal(t_op(st, "cold", "y", STORAGE_ADD, 0, T0), STORAGE_NOT_STORED);
    struct item *it = t_get(st, "cold", T0, NULL);
    assert_non_null(it);
    assert_int_equal(item_freq(it), 2);
    storage_release(st, &it);

    /* Expired items count as absent for ADD and REPLACE. */
    t_set(st, "e", "old", T0 + 5, T0);
    assert_int_equal(t_op(st, "e", "r", STORAGE_REPLACE, 0, T0 + 5), STORAGE_NOT_STORED);
    t_set(st, "e", "old", T0 + 5, T0);
    assert_int_equal(t_op(st, "e", "new", STORAGE_ADD, 0, T0 + 6), STORAGE_STORED);
    t_expect(st, "e", "new", T0 + 6);

    /* Storing an already linked item is refused. */
    struct item *a = NULL;
    assert_int_equal(storage_alloc(st, "dup", 3, 0, 0, 1, T0, &a), 0);
    memcpy(storage_item_value(a), "x", 1);
    enum storage_store_outcome out;
    uint64_t hv = storage_hash("dup", 3);
    assert_int_equal(storage_store(st, a, STORAGE_SET, 0, hv, T0, &out, NULL), 0);
    assert_int_equal(storage_store(st, a, STORAGE_SET, 0, hv, T0, &out, NULL), STORAGE_EINVAL);
    storage_release(st, &a);
    t_check(st);
    storage_destroy(&st);
}

static void test_append_prepend(void **state)
{
    (void)state;
    struct storage *st = t_create(64 * MiB, 0, false);
    assert_int_equal(t_op(st, "a", "x", STORAGE_APPEND, 0, T0), STORAGE_NOT_STORED);
    assert_int_equal(t_op(st, "a", "x", STORAGE_PREPEND, 0, T0), STORAGE_NOT_STORED);
    t_expect_absent(st, "a", T0, STORAGE_MISS);

    enum storage_store_outcome out;
    uint64_t cas1 = 0;
    int rc = t_store(st, "a", "mid", 3, 42, T0 + 1000, STORAGE_SET, 0, T0, &out, &cas1);
    assert_int_equal(rc, 0);
    uint64_t cas2 = 0;
    assert_int_equal(t_store(st, "a", "END", 3, 7, 0, STORAGE_APPEND, 0, T0, &out, &cas2), 0);
    assert_int_equal(out, STORAGE_STORED);
    assert_true(cas2 > cas1);
    uint64_t cas3 = 0;
    assert_int_equal(t_store(st, "a", "BEGIN", 5, 7, 0, STORAGE_PREPEND, 0, T0, &out, &cas3), 0);
    assert_int_equal(out, STORAGE_STORED);
    assert_true(cas3 > cas2);

    struct item *it = t_get(st, "a", T0, NULL);
    assert_non_null(it);
    assert_int_equal(storage_item_nbytes(it), 11);
    assert_memory_equal(storage_item_value(it), "BEGINmidEND", 11);
    assert_int_equal(storage_item_flags(it), 42);          /* old flags kept */
    assert_int_equal(storage_item_exptime(it), T0 + 1000); /* old exptime kept */
    assert_int_equal(storage_item_cas(it), cas3);
    storage_release(st, &it);

    /* Joining past item_size_max fails with E2BIG and keeps the old item. */
    size_t big = 600 * 1024;
    char *buf = malloc(big);
    memset(buf, 'z', big);
    assert_int_equal(t_store(st, "b", buf, big, 0, 0, STORAGE_SET, 0, T0, &out, NULL), 0);
    assert_int_equal(t_store(st, "b", buf, big, 0, 0, STORAGE_APPEND, 0, T0, &out, NULL),
                     STORAGE_E2BIG);
    it = t_get(st, "b", T0, NULL);
    assert_non_null(it);
    assert_int_equal(storage_item_nbytes(it), big);
    storage_release(st, &it);
    free(buf);
    t_check(st);
    storage_destroy(&st);
}

static void test_cas(void **state)
{
    (void)state;
    struct storage *st = t_create(64 * MiB, 0, false);
    assert_int_equal(t_op(st, "c", "v", STORAGE_CAS, 1, T0), STORAGE_NOT_FOUND);
    uint64_t cas = t_set(st, "c", "v1", 0, T0);
    assert_int_equal(t_op(st, "c", "v2", STORAGE_CAS, cas + 1, T0), STORAGE_EXISTS);
    assert_int_equal(t_op(st, "c", "v2", STORAGE_CAS, 0, T0), STORAGE_EXISTS);
    t_expect(st, "c", "v1", T0);
    enum storage_store_outcome out;
    uint64_t cas2 = 0;
    assert_int_equal(t_store(st, "c", "v2", 2, 0, 0, STORAGE_CAS, cas, T0, &out, &cas2), 0);
    assert_int_equal(out, STORAGE_STORED);
    assert_true(cas2 > cas);
    t_expect(st, "c", "v2", T0);
    /* The old CAS is stale now. */
    assert_int_equal(t_op(st, "c", "v3", STORAGE_CAS, cas, T0), STORAGE_EXISTS);
    /* A failed store reports CAS 0. */
    uint64_t cas3 = 99;
    assert_int_equal(t_store(st, "c", "v3", 2, 0, 0, STORAGE_ADD, 0, T0, &out, &cas3), 0);
    assert_int_equal(out, STORAGE_NOT_STORED);
    assert_int_equal(cas3, 0);
    /* CAS on an expired item is NOT_FOUND. */
    t_set(st, "ce", "v", T0 + 1, T0);
    assert_int_equal(t_op(st, "ce", "w", STORAGE_CAS, 1, T0 + 1), STORAGE_NOT_FOUND);
    storage_destroy(&st);

    /* Without CAS (-C) items report 0 and only cas 0 matches. */
    struct storage_options o;
    storage_options_default(&o);
    o.use_cas = false;
    assert_int_equal(storage_create(&st, &o), 0);
    uint64_t c0 = 1234;
    assert_int_equal(t_store(st, "n", "v", 1, 0, 0, STORAGE_SET, 0, T0, &out, &c0), 0);
    assert_int_equal(c0, 0);
    struct item *it = t_get(st, "n", T0, NULL);
    assert_int_equal(storage_item_cas(it), 0);
    storage_release(st, &it);
    assert_int_equal(t_op(st, "n", "w", STORAGE_CAS, 0, T0), STORAGE_STORED);
    assert_int_equal(t_op(st, "n", "w", STORAGE_CAS, 5, T0), STORAGE_EXISTS);
    storage_destroy(&st);
}

static void test_delete(void **state)
{
    (void)state;
    struct storage *st = t_create(64 * MiB, 0, false);
    bool found = true;
    bool mismatch = true;
    uint64_t hv = storage_hash("d", 1);
    assert_int_equal(storage_delete(st, "d", 1, hv, 0, T0, &found, &mismatch, NULL), 0);
    assert_false(found);
    assert_false(mismatch);

    t_set(st, "d", "v", 0, T0);
    assert_int_equal(storage_delete(st, "d", 1, hv, 0, T0, &found, &mismatch, NULL), 0);
    assert_true(found);
    assert_false(mismatch);
    t_expect_absent(st, "d", T0, STORAGE_MISS);

    uint64_t cas = t_set(st, "d", "v", 0, T0);
    assert_int_equal(storage_delete(st, "d", 1, hv, cas + 7, T0, &found, &mismatch, NULL), 0);
    assert_true(found);
    assert_true(mismatch);
    t_expect(st, "d", "v", T0);
    assert_int_equal(storage_delete(st, "d", 1, hv, cas, T0, &found, &mismatch, NULL), 0);
    assert_true(found);
    assert_false(mismatch);
    t_expect_absent(st, "d", T0, STORAGE_MISS);

    /* Deleting an expired item reports not found. */
    t_set(st, "d", "v", T0 + 1, T0);
    assert_int_equal(storage_delete(st, "d", 1, hv, 0, T0 + 2, &found, &mismatch, NULL), 0);
    assert_false(found);
    assert_int_equal(t_stats(st, T0).curr_items, 0);
    t_check(st);
    storage_destroy(&st);
}

static void test_references_survive(void **state)
{
    (void)state;
    struct storage *st = t_create(64 * MiB, 0, false);
    t_set(st, "r", "original", 0, T0);
    struct item *held = t_get(st, "r", T0, NULL);
    assert_non_null(held);

    /* Replace: the held item keeps its bytes. */
    t_set(st, "r", "replaced", 0, T0);
    /* Delete the replacement too. */
    bool found;
    assert_int_equal(storage_delete(st, "r", 1, storage_hash("r", 1), 0, T0, &found, NULL, NULL),
                     0);
    assert_true(found);
    /* Reuse memory aggressively: many stores of the same size. */
    for (int i = 0; i < 1000; i++) {
        char k[16];
        snprintf(k, sizeof(k), "o%d", i);
        t_set(st, k, "XXXXXXXX", 0, T0);
    }
    assert_memory_equal(storage_item_value(held), "original", 8);
    assert_memory_equal(storage_item_key(held), "r", 1);

    /* Its segment cannot be reused while it is held. */
    struct seg *g = &st->segs[item_seg(st, held)];
    uint32_t refs = __atomic_load_n(&g->refs, __ATOMIC_RELAXED);
    assert_true(refs >= 1);
    storage_release(st, &held);
    assert_null(held);
    assert_int_equal(__atomic_load_n(&g->refs, __ATOMIC_RELAXED), refs - 1);

    /* An allocated item that is never stored is simply released. */
    struct item *a = NULL;
    assert_int_equal(storage_alloc(st, "tmp", 3, 0, 0, 10, T0, &a), 0);
    storage_release(st, &a);
    storage_release(st, &a); /* NULL is fine */
    t_check(st);
    storage_destroy(&st);
}

static void test_expiry(void **state)
{
    (void)state;
    struct storage *st = t_create(64 * MiB, 0, false);
    t_set(st, "e", "v", T0 + 10, T0);
    t_expect(st, "e", "v", T0 + 9);
    t_expect_absent(st, "e", T0 + 10, STORAGE_EXPIRED);
    t_expect_absent(st, "e", T0 + 10, STORAGE_MISS); /* unlinked by the first lookup */

    /* Touch extends the life and returns the item with the new exptime. */
    t_set(st, "t", "v", T0 + 10, T0);
    enum storage_get_outcome g;
    uint64_t hv = storage_hash("t", 1);
    struct item *it = storage_get_touch(st, "t", 1, hv, T0 + 5, T0 + 100, &g);
    assert_non_null(it);
    assert_int_equal(g, STORAGE_HIT);
    assert_int_equal(storage_item_exptime(it), T0 + 100);
    storage_release(st, &it);
    t_expect(st, "t", "v", T0 + 50);
    assert_null(storage_get_touch(st, "t", 1, hv, T0 + 100, 0, &g));
    assert_int_equal(g, STORAGE_EXPIRED);
    assert_null(storage_get_touch(st, "t", 1, hv, T0 + 100, 0, &g));
    assert_int_equal(g, STORAGE_MISS);
    /* Touch to 0 = never. */
    t_set(st, "t0", "v", T0 + 10, T0);
    it = storage_get_touch(st, "t0", 2, storage_hash("t0", 2), T0, 0, NULL);
    storage_release(st, &it);
    t_expect(st, "t0", "v", T0 + 100000);

    /* Referenced items stay intact after they expire. */
    t_set(st, "h", "held", T0 + 10, T0);
    struct item *held = t_get(st, "h", T0, NULL);
    t_expect_absent(st, "h", T0 + 20, STORAGE_EXPIRED);
    assert_memory_equal(storage_item_value(held), "held", 4);
    storage_release(st, &held);
    t_check(st);
    storage_destroy(&st);
}

static void test_maintain_reclaims_expired(void **state)
{
    (void)state;
    struct storage *st = t_create(64 * MiB, 0, false);
    char k[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(k, sizeof(k), "exp%d", i);
        t_set(st, k, "some value", (i % 2) ? T0 + 10 : 0, T0);
    }
    while (storage_maintain(st, T0)) {
    }
    struct storage_stats s = t_stats(st, T0);
    assert_int_equal(s.curr_items, 5000);
    assert_int_equal(s.crawler_reclaimed, 0);

    /* The crawler backs off after empty passes; well past the expiry it runs. */
    rel_time_t later = T0 + 200;
    for (int i = 0; i < 100 && t_stats(st, later).curr_items > 2500; i++) {
        while (storage_maintain(st, later)) {
        }
    }
    s = t_stats(st, later);
    assert_int_equal(s.curr_items, 2500);
    assert_int_equal(s.crawler_reclaimed, 2500);
    /* Survivors: even i; keys "exp0".."exp4999" are 4 to 7 bytes long. */
    assert_int_equal(s.bytes, 2500 * (T_HEADER(0, 10) + 7 + 10) - (5 * 3 + 45 * 2 + 450));
    snprintf(k, sizeof(k), "exp%d", 42);
    t_expect(st, k, "some value", later);
    t_check(st);

    /* An immediate flush lets the crawler reclaim everything. */
    storage_flush(st, 0, later);
    while (storage_maintain(st, later)) {
    }
    s = t_stats(st, later);
    assert_int_equal(s.curr_items, 0);
    assert_int_equal(s.crawler_reclaimed, 5000);
    t_check(st);
    storage_destroy(&st);
}

static void test_flush_immediate(void **state)
{
    (void)state;
    struct storage *st = t_create(64 * MiB, 0, false);
    t_set(st, "a", "1", 0, T0 - 5);
    t_set(st, "b", "2", 0, T0);
    struct item *held = t_get(st, "b", T0, NULL);
    storage_flush(st, T0, T0);
    /* Stored after the flush, in the same second: survives. */
    t_set(st, "c", "3", 0, T0);
    t_expect_absent(st, "a", T0, STORAGE_FLUSHED);
    t_expect_absent(st, "b", T0, STORAGE_FLUSHED);
    t_expect(st, "c", "3", T0);
    t_expect(st, "c", "3", T0 + 1000);
    assert_memory_equal(storage_item_value(held), "2", 1);
    storage_release(st, &held);
    /* Flushed items are absent for add, replace, cas, append, incr. */
    t_set(st, "x", "9", 0, T0);
    t_set(st, "y", "9", 0, T0);
    storage_flush(st, 0, T0 + 1);
    assert_int_equal(t_op(st, "x", "new", STORAGE_ADD, 0, T0 + 1), STORAGE_STORED);
    assert_int_equal(t_op(st, "y", "new", STORAGE_APPEND, 0, T0 + 1), STORAGE_NOT_STORED);
    t_expect(st, "x", "new", T0 + 1);
    t_expect_absent(st, "y", T0 + 1, STORAGE_MISS); /* unlinked by the append lookup */
    t_expect_absent(st, "c", T0 + 1, STORAGE_FLUSHED);
    t_check(st);
    storage_destroy(&st);
}

static void test_flush_delayed(void **state)
{
    (void)state;
    struct storage *st = t_create(64 * MiB, 0, false);
    t_set(st, "a", "1", 0, T0);
    storage_flush(st, T0 + 10, T0);
    t_set(st, "b", "2", 0, T0 + 5);
    t_expect(st, "a", "1", T0 + 8);
    t_expect(st, "b", "2", T0 + 8);
    /* Once the point is reached, everything stored up to it is gone. */
    t_expect_absent(st, "a", T0 + 10, STORAGE_FLUSHED);
    t_expect_absent(st, "b", T0 + 10, STORAGE_FLUSHED);
    t_set(st, "c", "3", 0, T0 + 11);
    t_expect(st, "c", "3", T0 + 20);

    /* A point passed unnoticed (no lookup or store since) stays in force
     * when a later delayed flush replaces it. */
    storage_flush(st, T0 + 30, T0 + 20);
    t_set(st, "d", "4", 0, T0 + 25);
    storage_flush(st, T0 + 100, T0 + 35);
    t_expect_absent(st, "d", T0 + 35, STORAGE_FLUSHED);
    t_expect_absent(st, "c", T0 + 35, STORAGE_FLUSHED);
    t_set(st, "g", "7", 0, T0 + 36);
    t_expect(st, "g", "7", T0 + 50);
    /* Stored during the point's second: flushed too, as in memcached. */
    t_set(st, "h", "8", 0, T0 + 99);
    t_expect_absent(st, "h", T0 + 99, STORAGE_FLUSHED);
    t_expect_absent(st, "g", T0 + 100, STORAGE_FLUSHED);

    /* An immediate flush cancels a pending delayed one. */
    t_set(st, "e", "5", 0, T0 + 200);
    storage_flush(st, T0 + 300, T0 + 200);
    storage_flush(st, 0, T0 + 201);
    t_expect_absent(st, "e", T0 + 201, STORAGE_FLUSHED);
    t_set(st, "f", "6", 0, T0 + 202);
    t_expect(st, "f", "6", T0 + 400);
    t_check(st);
    storage_destroy(&st);
}

/* incr/decr helper: returns the outcome, *v the value. */
static enum storage_arith_outcome t_arith(struct storage *st, const char *key, bool incr,
                                          uint64_t delta, uint64_t *v, uint64_t *cas)
{
    struct storage_arith a = {.incr = incr, .delta = delta};
    enum storage_arith_outcome out;
    assert_int_equal(storage_arith(st, key, strlen(key), storage_hash(key, strlen(key)), &a, T0,
                                   &out, v, cas, NULL),
                     0);
    return out;
}

static void t_expect_raw(struct storage *st, const char *key, const char *raw)
{
    t_expect(st, key, raw, T0);
}

static void test_arith(void **state)
{
    (void)state;
    struct storage *st = t_create(64 * MiB, 0, false);
    uint64_t v = 0;
    uint64_t cas = 0;
    assert_int_equal(t_arith(st, "n", true, 1, &v, NULL), STORAGE_ARITH_NOT_FOUND);

    /* Padded as memcached's in-place update: 100 decr 1 -> "99 ". */
    enum storage_store_outcome so;
    uint64_t cas0 = 0;
    assert_int_equal(t_store(st, "n", "100", 3, 17, T0 + 1000, STORAGE_SET, 0, T0, &so, &cas0), 0);
    struct item *before = t_get(st, "n", T0, NULL);
    struct item *b2 = before;
    storage_release(st, &before);
    assert_int_equal(t_arith(st, "n", false, 1, &v, &cas), STORAGE_ARITH_OK);
    assert_int_equal(v, 99);
    assert_true(cas > cas0);
    t_expect_raw(st, "n", "99 ");
    struct item *after = t_get(st, "n", T0, NULL);
    /* A new item (never in place: references are per segment), looking as
     * memcached's in-place update does. */
    assert_ptr_not_equal(after, b2);
    assert_int_equal(storage_item_flags(after), 17);
    assert_int_equal(storage_item_exptime(after), T0 + 1000);
    assert_int_equal(storage_item_cas(after), cas);
    storage_release(st, &after);

    /* Growth: "99 " incr 1 -> "100", still fits the 3 bytes. */
    assert_int_equal(t_arith(st, "n", true, 1, &v, NULL), STORAGE_ARITH_OK);
    assert_int_equal(v, 100);
    t_expect_raw(st, "n", "100");
    /* 99 incr 1 -> new item "100" of length 3. */
    t_set(st, "m", "99", 0, T0);
    assert_int_equal(t_arith(st, "m", true, 1, &v, NULL), STORAGE_ARITH_OK);
    assert_int_equal(v, 100);
    t_expect_raw(st, "m", "100");

    /* Wrap at 2^64. */
    t_set(st, "w", "18446744073709551615", 0, T0);
    assert_int_equal(t_arith(st, "w", true, 1, &v, NULL), STORAGE_ARITH_OK);
    assert_int_equal(v, 0);
    t_expect_raw(st, "w", "0                   ");
    assert_int_equal(t_arith(st, "w", true, 5, &v, NULL), STORAGE_ARITH_OK);
    assert_int_equal(v, 5);
    /* Decr floors at 0. */
    t_set(st, "f", "3", 0, T0);
    assert_int_equal(t_arith(st, "f", false, 10, &v, NULL), STORAGE_ARITH_OK);
    assert_int_equal(v, 0);
    t_expect_raw(st, "f", "0");

    /* Numeric forms. */
    t_set(st, "s", "1 2", 0, T0);
    assert_int_equal(t_arith(st, "s", true, 1, &v, NULL), STORAGE_ARITH_OK);
    assert_int_equal(v, 2);
    t_expect_raw(st, "s", "2  ");
    t_set(st, "s", "  41", 0, T0);
    assert_int_equal(t_arith(st, "s", true, 1, &v, NULL), STORAGE_ARITH_OK);
    assert_int_equal(v, 42);
    t_set(st, "s", "00000000000000000007", 0, T0); /* 20 digits */
    assert_int_equal(t_arith(st, "s", true, 1, &v, NULL), STORAGE_ARITH_OK);
    assert_int_equal(v, 8);

    /* Non-numeric values. */
    static const char *const bad[] = {
        "",                      /* empty */
        "-1",                    /* negative */
        "abc",                   /* no digits */
        "12abc",                 /* junk after the digits */
        "123456789012345678901", /* 21 digits */
        "18446744073709551616",  /* 2^64 */
        " ",                     /* only space */
        "+5",                    /* sign */
        "1.5",                   /* not an integer */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        t_set(st, "bad", bad[i], 0, T0);
        v = 777;
        assert_int_equal(t_arith(st, "bad", true, 1, &v, NULL), STORAGE_ARITH_NON_NUMERIC);
        assert_int_equal(v, 777);
        t_expect_raw(st, "bad", bad[i]);
    }

    /* Someone holds the item: a new item replaces it, the held one is intact. */
    t_set(st, "h", "500", 0, T0);
    struct item *held = t_get(st, "h", T0, NULL);
    assert_int_equal(t_arith(st, "h", false, 1, &v, NULL), STORAGE_ARITH_OK);
    assert_int_equal(v, 499);
    assert_memory_equal(storage_item_value(held), "500", 3);
    t_expect_raw(st, "h", "499");
    storage_release(st, &held);

    /* cas_in. */
    uint64_t c = t_set(st, "c", "10", 0, T0);
    struct storage_arith a = {.incr = true, .delta = 5, .cas_in = c + 1};
    enum storage_arith_outcome out;
    uint64_t hv = storage_hash("c", 1);
    assert_int_equal(storage_arith(st, "c", 1, hv, &a, T0, &out, &v, NULL, NULL), 0);
    assert_int_equal(out, STORAGE_ARITH_EXISTS);
    a.cas_in = c;
    assert_int_equal(storage_arith(st, "c", 1, hv, &a, T0, &out, &v, &cas, NULL), 0);
    assert_int_equal(out, STORAGE_ARITH_OK);
    assert_int_equal(v, 15);
    assert_true(cas > c);

    /* create/initial on a miss. */
    struct storage_arith cr = {
        .incr = true, .delta = 5, .create = true, .initial = 1000, .flags = 9, .exptime = 0};
    hv = storage_hash("new", 3);
    assert_int_equal(storage_arith(st, "new", 3, hv, &cr, T0, &out, &v, &cas, NULL), 0);
    assert_int_equal(out, STORAGE_ARITH_OK);
    assert_int_equal(v, 1000);
    struct item *it = t_get(st, "new", T0, NULL);
    assert_non_null(it);
    assert_memory_equal(storage_item_value(it), "1000", 4);
    assert_int_equal(storage_item_flags(it), 9);
    assert_int_equal(storage_item_cas(it), cas);
    storage_release(st, &it);
    assert_int_equal(storage_arith(st, "new", 3, hv, &cr, T0, &out, &v, NULL, NULL), 0);
    assert_int_equal(v, 1005);
    /* outcome/value/cas pointers may be NULL */
    assert_int_equal(storage_arith(st, "new", 3, hv, &cr, T0, NULL, NULL, NULL, NULL), 0);
    t_expect_raw(st, "new", "1010");

    t_check(st);
    storage_destroy(&st);
}

/* Pins the header layout: items packed at 2-byte alignment start at every
 * address modulo 8, and each of the four field placements keeps its CAS,
 * exptime, flags, key and value, through touch and a CAS change (md I). */
static void test_header_placements(void **state)
{
    (void)state;
    struct storage *st = t_create(64 * MiB, 0, false);
    unsigned seen = 0;
    uint64_t last_cas = 0;
    char key[32], val[300];
    for (unsigned i = 0; i < 64; i++) {
        int kl = snprintf(key, sizeof(key), "h%0*u", (int)(1 + i % 13), i);
        size_t vl = (i * 37) % 290;
        memset(val, 'a' + (int)(i % 26), vl);
        uint32_t flags = i % 3 == 0 ? 0 : 0x80000000u | i;
        uint64_t cas = 0;
        enum storage_store_outcome out;
        assert_int_equal(
            t_store(st, key, val, vl, flags, T0 + 1000 + i, STORAGE_SET, 0, T0, &out, &cas), 0);
        assert_int_equal(out, STORAGE_STORED);
        assert_true(cas > last_cas);
        last_cas = cas;
        struct item *it = t_get(st, key, T0, NULL);
        assert_non_null(it);
        seen |= 1u << ((uintptr_t)it & 7);
        assert_int_equal(storage_item_nkey(it), (size_t)kl);
        assert_memory_equal(storage_item_key(it), key, (size_t)kl);
        assert_int_equal(storage_item_nbytes(it), vl);
        assert_memory_equal(storage_item_value(it), val, vl);
        assert_int_equal(storage_item_flags(it), flags);
        assert_int_equal(storage_item_exptime(it), T0 + 1000 + i);
        assert_int_equal(storage_item_cas(it), cas);
        storage_release(st, &it);

        it = storage_get_touch(st, key, (size_t)kl, storage_hash(key, (size_t)kl), T0 + 1,
                               T0 + 5000 + i, NULL);
        assert_non_null(it);
        assert_int_equal(storage_item_exptime(it), T0 + 5000 + i);
        assert_int_equal(storage_item_cas(it), cas);
        assert_int_equal(storage_item_flags(it), flags);
        storage_release(st, &it);

        struct storage_mdelete_opts mo = {.invalidate = true};
        struct storage_mdelete_result mr;
        assert_int_equal(storage_meta_delete(st, key, (size_t)kl, storage_hash(key, (size_t)kl),
                                             T0 + 2, &mo, &mr),
                         0);
        assert_int_equal(mr.outcome, STORAGE_MDEL_INVALIDATED);
        it = t_get(st, key, T0 + 2, NULL);
        assert_non_null(it);
        assert_true(storage_item_cas(it) > cas);
        last_cas = storage_item_cas(it);
        assert_int_equal(storage_item_exptime(it), T0 + 5000 + i);
        assert_memory_equal(storage_item_value(it), val, vl);
        assert_int_equal(storage_item_atime(it, T0 + 2), T0 + 2);
        storage_release(st, &it);
    }
    /* Items at 0, 2, 4 and 6 modulo 8: the four placements. */
    assert_int_equal(seen, 0x55);
    /* An exptime past 29 bits is kept as STORAGE_EXPTIME_MAX. */
    t_set(st, "far", "1", 0xfffffff0u, T0);
    struct item *far = t_get(st, "far", T0, NULL);
    assert_non_null(far);
    assert_int_equal(storage_item_exptime(far), STORAGE_EXPTIME_MAX);
    storage_release(st, &far);
    t_check(st);
    storage_destroy(&st);
}

static void test_sizes(void **state)
{
    (void)state;
    struct storage *st = t_create(64 * MiB, 0, false);
    struct item *it = NULL;
    size_t fit = 1 * MiB - T_HEADER(1, 1 * MiB) - 3;
    assert_true(storage_item_size_ok(st, 3, fit));
    assert_false(storage_item_size_ok(st, 3, fit + 1));
    /* storage_alloc applies memcached's rule: 48 + 8 (CAS) + key + 1 + value + 2,
     * plus 4 when the flags are non-zero. */
    size_t max = 1 * MiB - 48 - 8 - 3 - 1 - 2;
    assert_int_equal(storage_alloc(st, "big", 3, 0, 0, max + 1, T0, &it), STORAGE_E2BIG);
    assert_null(it);
    assert_int_equal(storage_alloc(st, "big", 3, 1, 0, max - 3, T0, &it), STORAGE_E2BIG);
    assert_null(it);
    assert_int_equal(storage_alloc(st, "big", 3, 0, 0, (size_t)1 << 40, T0, &it), STORAGE_E2BIG);
    assert_int_equal(storage_alloc(st, "big", 3, 0, 0, max, T0, &it), 0);
    assert_non_null(it);
    assert_int_equal(storage_item_total(it), T_HEADER(0, max) + 3 + max);
    memset(storage_item_value(it), 'q', max);
    enum storage_store_outcome out;
    assert_int_equal(storage_store(st, it, STORAGE_SET, 0, storage_hash("big", 3), T0, &out, NULL),
                     0);
    assert_int_equal(out, STORAGE_STORED);
    storage_release(st, &it);
    it = t_get(st, "big", T0, NULL);
    assert_non_null(it);
    assert_int_equal(storage_item_nbytes(it), max);
    assert_int_equal(storage_item_value(it)[max - 1], 'q');
    storage_release(st, &it);

    char key[300];
    memset(key, 'k', sizeof(key));
    assert_int_equal(storage_alloc(st, key, 0, 0, 0, 1, T0, &it), STORAGE_EINVAL);
    assert_int_equal(storage_alloc(st, key, 251, 0, 0, 1, T0, &it), STORAGE_EINVAL);
    assert_int_equal(storage_alloc(st, key, 250, 0, 0, 1, T0, &it), 0);
    storage_release(st, &it);
    storage_destroy(&st);

    /* A smaller -I. */
    struct storage_options o;
    storage_options_default(&o);
    o.item_size_max = 4096;
    assert_int_equal(storage_create(&st, &o), 0);
    assert_true(storage_item_size_ok(st, 10, 4096 - T_HEADER(1, 4096) - 10));
    assert_false(storage_item_size_ok(st, 10, 4096 - T_HEADER(1, 4096) - 9));
    struct storage_class_stats cs;
    assert_true(storage_get_class_stats(st, storage_class_count(st), T0, &cs));
    assert_int_equal(cs.chunk_size, 4096);
    assert_int_equal(cs.chunks_per_page, 256);
    storage_destroy(&st);
}

static void test_reset_stats(void **state)
{
    (void)state;
    struct storage *st = t_create(64 * MiB, 0, false);
    t_set(st, "a", "1", 0, T0);
    t_set(st, "b", "2", T0 + 1, T0);
    t_expect_absent(st, "b", T0 + 5, STORAGE_EXPIRED);
    struct storage_stats s = t_stats(st, T0);
    assert_int_equal(s.total_items, 2);
    assert_int_equal(s.curr_items, 1);
    storage_reset_stats(st);
    s = t_stats(st, T0);
    assert_int_equal(s.total_items, 0);
    assert_int_equal(s.curr_items, 1);                 /* gauge kept */
    assert_int_equal(s.bytes, T_HEADER(0, 1) + 1 + 1); /* gauge kept */
    assert_int_equal(s.total_malloced, 1 * MiB);       /* gauge kept */
    assert_int_equal(s.active_classes, 1);
    t_set(st, "c", "3", 0, T0);
    assert_int_equal(t_stats(st, T0).total_items, 1);
    storage_destroy(&st);
}

static void test_two_caches(void **state)
{
    (void)state;
    struct storage *a = t_create(2 * MiB, 10, false);
    struct storage *b = t_create(2 * MiB, 10, true);
    t_set(a, "k", "in a", 0, T0);
    t_set(b, "k", "in b", 0, T0);
    storage_flush(a, 0, T0 + 1);
    t_expect_absent(a, "k", T0 + 1, STORAGE_FLUSHED);
    t_expect(b, "k", "in b", T0 + 1);
    storage_destroy(&a);
    storage_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_options_and_create),
        cmocka_unit_test(test_set_get),
        cmocka_unit_test(test_add_replace),
        cmocka_unit_test(test_append_prepend),
        cmocka_unit_test(test_cas),
        cmocka_unit_test(test_delete),
        cmocka_unit_test(test_references_survive),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_maintain_reclaims_expired),
        cmocka_unit_test(test_flush_immediate),
        cmocka_unit_test(test_flush_delayed),
        cmocka_unit_test(test_arith),
        cmocka_unit_test(test_header_placements),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_reset_stats),
        cmocka_unit_test(test_two_caches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

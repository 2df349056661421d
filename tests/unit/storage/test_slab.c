/*
 * test_slab.c - unit tests of item memory: the size class table, the exact
 * memory limit, S3-FIFO eviction, -M (no eviction), page stealing between
 * classes, references pinning items, run-time memory limit changes, and
 * the expiry crawler starting when the earliest item expires.
 */
#include "storage_test.h"

#define T0 100

static char g_val[8192];

static void fill_value(void)
{
    for (size_t i = 0; i < sizeof(g_val); i++) {
        g_val[i] = (char)('a' + i % 26);
    }
}

/* Stores key%d with nval bytes; returns the store or alloc status. */
static int put(struct storage *st, const char *prefix, int i, size_t nval, rel_time_t exptime,
               rel_time_t now)
{
    char k[64];
    snprintf(k, sizeof(k), "%s%d", prefix, i);
    enum storage_store_outcome out;
    int rc = t_store(st, k, g_val, nval, 0, exptime, STORAGE_SET, 0, now, &out, NULL);
    if (rc == 0) {
        assert_int_equal(out, STORAGE_STORED);
    }
    return rc;
}

static bool has(struct storage *st, const char *prefix, int i, rel_time_t now)
{
    char k[64];
    snprintf(k, sizeof(k), "%s%d", prefix, i);
    return t_present(st, k, now);
}

static void test_class_table(void **state)
{
    (void)state;
    struct storage *st = t_create(64 * MiB, 0, false);
    unsigned n = storage_class_count(st);
    assert_true(n > 30 && n <= 63);
    struct storage_class_stats cs;
    assert_false(storage_get_class_stats(st, 0, T0, &cs));
    assert_false(storage_get_class_stats(st, n + 1, T0, &cs));
    uint32_t prev = 0;
    for (unsigned id = 1; id <= n; id++) {
        assert_true(storage_get_class_stats(st, id, T0, &cs));
        assert_int_equal(cs.id, id);
        assert_int_equal(cs.chunk_size % 8, 0);
        assert_true(cs.chunk_size > prev);
        assert_int_equal(cs.chunks_per_page, MiB / cs.chunk_size);
        assert_int_equal(cs.total_pages, 0);
        if (id > 1 && id < n) {
            /* growth factor 1.25, rounded up to 8 */
            assert_true(cs.chunk_size >= prev * 1.25 && cs.chunk_size < prev * 1.25 + 8);
        }
        prev = cs.chunk_size;
    }
    assert_true(storage_get_class_stats(st, 1, T0, &cs));
    /* memcached's smallest chunk: its 48-byte header plus -n 48. */
    assert_int_equal(cs.chunk_size, 96);
    assert_true(storage_get_class_stats(st, n, T0, &cs));
    assert_int_equal(cs.chunk_size, MiB);
    assert_int_equal(cs.chunks_per_page, 1);

    /* An item goes to the smallest class that fits it. */
    t_set(st, "k", "v", 0, T0);
    assert_true(storage_get_class_stats(st, 1, T0 + 5, &cs));
    assert_int_equal(cs.number, 1);
    assert_int_equal(cs.total_pages, 1);
    assert_int_equal(cs.used_chunks, 1);
    assert_int_equal(cs.free_chunks, cs.chunks_per_page - 1);
    assert_int_equal(cs.mem_requested, ITEM_HEADER_SIZE + 1 + 1 + 2);
    assert_int_equal(cs.age, 5);
    storage_destroy(&st);
}

static void test_memory_limit_and_eviction(void **state)
{
    (void)state;
    struct storage *st = t_create(4 * MiB, 0, false);
    int n = 60000;
    for (int i = 0; i < n; i++) {
        assert_int_equal(put(st, "key", i, 100, 0, T0), 0);
        if (i % 97 == 0) {
            assert_true(t_stats(st, T0).total_malloced <= 4 * MiB);
        }
    }
    struct storage_stats s = t_stats(st, T0);
    assert_int_equal(s.total_malloced, 4 * MiB);
    assert_true(s.evictions > 0);
    assert_int_equal(s.evicted_unfetched, s.evictions);
    assert_int_equal(s.curr_items + s.evictions, (uint64_t)n);
    assert_int_equal(s.total_items, (uint64_t)n);
    /* The most recent items are all there, the oldest are gone. */
    for (int i = n - 2000; i < n; i++) {
        assert_true(has(st, "key", i, T0));
    }
    assert_false(has(st, "key", 0, T0));
    t_check(st);

    /* Per-class view adds up. */
    uint64_t number = 0;
    uint64_t evicted = 0;
    uint64_t pages = 0;
    for (unsigned id = 1; id <= storage_class_count(st); id++) {
        struct storage_class_stats cs;
        assert_true(storage_get_class_stats(st, id, T0 + 7, &cs));
        number += cs.number;
        evicted += cs.evicted;
        pages += cs.total_pages;
        assert_int_equal(cs.used_chunks, cs.number);
        if (cs.evicted > 0) {
            assert_int_equal(cs.evicted_nonzero, 0);
            assert_int_equal(cs.evicted_time, 0);
            assert_int_equal(cs.age, 7);
        }
    }
    assert_int_equal(number, s.curr_items);
    assert_int_equal(evicted, s.evictions);
    assert_int_equal(pages, 4);
    storage_destroy(&st);
}

static void test_tiny_limit(void **state)
{
    (void)state;
    /* Less than a page: one page in all. */
    struct storage *st = t_create(100 * 1024, 0, false);
    for (int i = 0; i < 20000; i++) {
        assert_int_equal(put(st, "t", i, 50, 0, T0), 0);
    }
    assert_int_equal(t_stats(st, T0).total_malloced, MiB);
    /* Another class can still get memory, by taking the page. */
    assert_int_equal(put(st, "big", 0, 5000, 0, T0), 0);
    assert_true(has(st, "big", 0, T0));
    assert_int_equal(t_stats(st, T0).total_malloced, MiB);
    t_check(st);
    storage_destroy(&st);
}

static void test_no_evict(void **state)
{
    (void)state;
    struct storage *st = t_create(4 * MiB, 0, true);
    int stored = 0;
    int rc = 0;
    while ((rc = put(st, "ne", stored, 100, 0, T0)) == 0) {
        stored++;
        assert_true(stored < 100000);
    }
    assert_int_equal(rc, STORAGE_ENOMEM);
    assert_true(stored > 20000);
    struct storage_stats s = t_stats(st, T0);
    assert_int_equal(s.evictions, 0);
    assert_int_equal(s.curr_items, (uint64_t)stored);
    assert_int_equal(s.total_malloced, 4 * MiB);
    for (int i = 0; i < stored; i++) {
        assert_true(has(st, "ne", i, T0));
    }
    /* Other classes fail too: no page may be taken from live items. */
    assert_int_equal(put(st, "other", 0, 5000, 0, T0), STORAGE_ENOMEM);
    uint64_t oom = 0;
    for (unsigned id = 1; id <= storage_class_count(st); id++) {
        struct storage_class_stats cs;
        assert_true(storage_get_class_stats(st, id, T0, &cs));
        oom += cs.outofmemory;
    }
    assert_int_equal(oom, 2);
    /* A delete makes room again. */
    bool found;
    assert_int_equal(
        storage_delete(st, "ne0", 3, storage_hash("ne0", 3), 0, T0, &found, NULL, NULL), 0);
    assert_true(found);
    assert_int_equal(put(st, "again", 0, 100, 0, T0), 0);
    t_check(st);
    storage_destroy(&st);
}

static void test_no_evict_reclaims_expired(void **state)
{
    (void)state;
    struct storage *st = t_create(4 * MiB, 0, true);
    int stored = 0;
    while (put(st, "x", stored, 100, T0 + 10, T0) == 0) {
        stored++;
    }
    assert_int_equal(put(st, "late", 0, 100, 0, T0 + 5), STORAGE_ENOMEM);
    assert_int_equal(put(st, "big", 0, 5000, 0, T0 + 5), STORAGE_ENOMEM);
    /* After the expiry, allocations reuse expired items' memory. */
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(put(st, "late", i, 100, 0, T0 + 20), 0);
    }
    struct storage_stats s = t_stats(st, T0 + 20);
    assert_int_equal(s.evictions, 0);
    assert_int_equal(s.reclaimed, 1000);
    assert_int_equal(s.expired_unfetched, 1000);
    /* And a page full of expired items may move to another class. */
    assert_int_equal(put(st, "big", 0, 5000, 0, T0 + 20), 0);
    assert_true(has(st, "big", 0, T0 + 20));
    assert_int_equal(t_stats(st, T0 + 20).evictions, 0);
    assert_int_equal(t_stats(st, T0 + 20).total_malloced, 4 * MiB);
    t_check(st);
    storage_destroy(&st);
}

static void test_sieve_keeps_hot_item(void **state)
{
    (void)state;
    /* One page: about 5900 items of this size fit. */
    struct storage *st = t_create(MiB, 0, false);
    assert_int_equal(put(st, "hot", 0, 100, 0, T0), 0);
    assert_int_equal(put(st, "cold", 0, 100, 0, T0), 0);
    assert_true(has(st, "hot", 0, T0));
    for (int i = 0; i < 60000; i++) {
        assert_int_equal(put(st, "s", i, 100, 0, T0), 0);
        if (i % 1000 == 0) {
            assert_true(has(st, "hot", 0, T0));
        }
    }
    /* FIFO (or LRU without the reads) would have dropped "hot" long ago. */
    assert_true(has(st, "hot", 0, T0));
    assert_false(has(st, "cold", 0, T0));
    assert_true(t_stats(st, T0).evictions > 50000);
    t_check(st);
    storage_destroy(&st);
}

static void test_references_pin_items(void **state)
{
    (void)state;
    struct storage *st = t_create(MiB, 0, false);
    fill_value();
    t_set(st, "pinned", "precious bytes", 0, T0);
    struct item *held = t_get(st, "pinned", T0, NULL);
    assert_non_null(held);
    /* Deleted but held: bytes stay while the class churns. */
    t_set(st, "gone", "also precious", 0, T0);
    struct item *held2 = t_get(st, "gone", T0, NULL);
    bool found;
    assert_int_equal(
        storage_delete(st, "gone", 4, storage_hash("gone", 4), 0, T0, &found, NULL, NULL), 0);
    for (int i = 0; i < 30000; i++) {
        assert_int_equal(put(st, "p", i, 10, 0, T0), 0);
    }
    /* The referenced item is skipped by the hand, so it is still linked. */
    assert_memory_equal(storage_item_value(held), "precious bytes\r\n", 16);
    assert_memory_equal(storage_item_value(held2), "also precious\r\n", 15);
    assert_true(t_present(st, "pinned", T0));
    assert_false(t_present(st, "gone", T0));
    storage_release(st, &held);
    storage_release(st, &held2);
    /* Released: the deleted one's chunk is free again, the other can go. */
    struct storage_class_stats cs;
    assert_true(storage_get_class_stats(st, 1, T0, &cs));
    assert_int_equal(cs.used_chunks, cs.number);
    bool found2;
    assert_int_equal(
        storage_delete(st, "pinned", 6, storage_hash("pinned", 6), 0, T0, &found2, NULL, NULL), 0);
    assert_true(found2);
    t_check(st);
    storage_destroy(&st);
}

static void test_all_referenced_is_enomem(void **state)
{
    (void)state;
    /* One page of the largest class holds a single item. */
    struct storage *st = t_create(MiB, 0, false);
    size_t max = MiB - 48 - 8 - 2 - 1 - 2; /* memcached's largest value for a 2-byte key */
    struct item *a = NULL;
    assert_int_equal(storage_alloc(st, "aa", 2, 0, 0, max, T0, &a), 0);
    struct item *b = NULL;
    assert_int_equal(storage_alloc(st, "bb", 2, 0, 0, max, T0, &b), STORAGE_ENOMEM);
    storage_release(st, &a);
    assert_int_equal(storage_alloc(st, "bb", 2, 0, 0, max, T0, &b), 0);
    storage_release(st, &b);
    storage_destroy(&st);
}

static void test_page_stealing(void **state)
{
    (void)state;
    fill_value();
    struct storage *st = t_create(4 * MiB, 0, false);
    for (int i = 0; i < 40000; i++) {
        assert_int_equal(put(st, "small", i, 100, 0, T0), 0);
    }
    struct storage_stats s = t_stats(st, T0);
    assert_int_equal(s.total_malloced, 4 * MiB);
    assert_int_equal(s.active_classes, 1);
    uint64_t ev = s.evictions;
    /* Hold a reference into the small class: its page cannot be taken. */
    struct item *held = NULL;
    {
        char k[32];
        snprintf(k, sizeof(k), "small%d", 39999);
        held = t_get(st, k, T0, NULL);
        assert_non_null(held);
    }
    for (int i = 0; i < 400; i++) {
        assert_int_equal(put(st, "large", i, 5000, 0, T0), 0);
        assert_true(t_stats(st, T0).total_malloced <= 4 * MiB);
    }
    /* The large class took pages from the small one as long as the small
     * class's items were much older than its own; the newest are all there. */
    for (int i = 100; i < 400; i++) {
        assert_true(has(st, "large", i, T0));
    }
    s = t_stats(st, T0);
    assert_int_equal(s.active_classes, 2);
    assert_true(s.evictions > ev);
    struct storage_class_stats cs;
    unsigned large_cls = 0;
    for (unsigned id = 1; id <= storage_class_count(st); id++) {
        assert_true(storage_get_class_stats(st, id, T0, &cs));
        if (cs.chunk_size > 5000 && cs.total_pages > 0) {
            large_cls = id;
            assert_true(cs.total_pages >= 2);
        }
    }
    assert_int_not_equal(large_cls, 0);
    /* The page holding a referenced item was not taken. */
    assert_memory_equal(storage_item_value(held), g_val, 100);
    assert_true(has(st, "small", 39999, T0));
    storage_release(st, &held);
    t_check(st);

    /* And back: as the large items age (to SLAB_REBALANCE_RATIO times the
     * small items' lifetime, about 20000 stores), the small class takes
     * pages back. */
    for (int i = 0; i < 200000; i++) {
        assert_int_equal(put(st, "small2-", i, 100, 0, T0), 0);
    }
    for (int i = 199000; i < 200000; i++) {
        assert_true(has(st, "small2-", i, T0));
    }
    assert_true(storage_get_class_stats(st, large_cls, T0, &cs));
    assert_int_equal(cs.total_pages, 0);
    assert_int_equal(t_stats(st, T0).total_malloced, 4 * MiB);
    t_check(st);
    storage_destroy(&st);
}

static void test_set_memlimit(void **state)
{
    (void)state;
    fill_value();
    struct storage *st = t_create(2 * MiB, 0, false);
    for (int i = 0; i < 30000; i++) {
        assert_int_equal(put(st, "m", i, 100, 0, T0), 0);
    }
    assert_int_equal(t_stats(st, T0).total_malloced, 2 * MiB);
    assert_int_equal(storage_set_memlimit(st, 4 * MiB), 0);
    assert_int_equal(t_stats(st, T0).limit_maxbytes, 4 * MiB);
    for (int i = 0; i < 30000; i++) {
        assert_int_equal(put(st, "n", i, 100, 0, T0), 0);
    }
    assert_int_equal(t_stats(st, T0).total_malloced, 4 * MiB);
    /* Lowering keeps the pages in use; stores keep working by eviction. */
    assert_int_equal(storage_set_memlimit(st, 1 * MiB), 0);
    for (int i = 0; i < 30000; i++) {
        assert_int_equal(put(st, "o", i, 100, 0, T0), 0);
    }
    struct storage_stats s = t_stats(st, T0);
    assert_int_equal(s.total_malloced, 4 * MiB);
    assert_int_equal(s.limit_maxbytes, 1 * MiB);
    t_check(st);
    storage_destroy(&st);
}

static void test_expired_reclaimed_before_eviction(void **state)
{
    (void)state;
    fill_value();
    struct storage *st = t_create(MiB, 0, false);
    /* Live, read items first (at the tail), then short-lived ones. */
    for (int i = 0; i < 2000; i++) {
        assert_int_equal(put(st, "live", i, 100, 0, T0), 0);
        assert_true(has(st, "live", i, T0));
    }
    int i = 0;
    while (t_stats(st, T0).evictions == 0) {
        assert_int_equal(put(st, "short", i++, 100, T0 + 5, T0), 0);
    }
    storage_reset_stats(st);
    /* Later: new items take the expired ones' memory, live items stay. */
    for (int j = 0; j < 1000; j++) {
        assert_int_equal(put(st, "new", j, 100, 0, T0 + 10), 0);
    }
    struct storage_stats s = t_stats(st, T0 + 10);
    assert_int_equal(s.evictions, 0);
    assert_int_equal(s.reclaimed, 1000);
    for (int j = 0; j < 2000; j++) {
        assert_true(has(st, "live", j, T0 + 10));
    }
    t_check(st);
    storage_destroy(&st);
}

/* The crawler backs off while it finds nothing, but a pass still starts as
 * soon as the earliest exptime of a class is reached. */
static void test_crawler_follows_expiry(void **state)
{
    (void)state;
    struct storage *st = t_create(64 * MiB, 0, false);
    for (int i = 0; i < 3000; i++) {
        assert_int_equal(put(st, "live", i, 100, 0, T0), 0);
    }
    /* Passes that find nothing: the backoff grows to several seconds. */
    for (rel_time_t t = T0; t < T0 + 8; t++) {
        while (storage_maintain(st, t)) {
        }
    }
    assert_int_equal(t_stats(st, T0 + 8).crawler_reclaimed, 0);
    for (int i = 0; i < 2000; i++) {
        assert_int_equal(put(st, "short", i, 100, T0 + 10, T0 + 8), 0);
    }
    /* A pass during the backoff leaves them alone until they expire. */
    while (storage_maintain(st, T0 + 9)) {
    }
    assert_int_equal(t_stats(st, T0 + 9).crawler_reclaimed, 0);
    assert_int_equal(t_stats(st, T0 + 9).curr_items, 5000);
    /* At T0 + 10 they are expired, and the next slices reclaim all of them. */
    while (storage_maintain(st, T0 + 10)) {
    }
    struct storage_stats s = t_stats(st, T0 + 10);
    assert_int_equal(s.crawler_reclaimed, 2000);
    assert_int_equal(s.curr_items, 3000);
    for (int i = 0; i < 3000; i += 100) {
        assert_true(has(st, "live", i, T0 + 10));
    }
    t_check(st);
    storage_destroy(&st);
}

int main(void)
{
    fill_value();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_class_table),
        cmocka_unit_test(test_memory_limit_and_eviction),
        cmocka_unit_test(test_tiny_limit),
        cmocka_unit_test(test_no_evict),
        cmocka_unit_test(test_no_evict_reclaims_expired),
        cmocka_unit_test(test_sieve_keeps_hot_item),
        cmocka_unit_test(test_references_pin_items),
        cmocka_unit_test(test_all_referenced_is_enomem),
        cmocka_unit_test(test_page_stealing),
        cmocka_unit_test(test_set_memlimit),
        cmocka_unit_test(test_expired_reclaimed_before_eviction),
        cmocka_unit_test(test_crawler_follows_expiry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

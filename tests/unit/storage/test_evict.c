/*
 * test_evict.c - unit tests of S3-FIFO eviction in a size class: one-hit
 * wonders leave through the small queue before items read again, a key
 * evicted from the small queue and stored again goes straight to main (the
 * ghost), the main queue gives read items a second chance (CLOCK), and the
 * eviction counters stay exact.
 *
 * Every test runs with a 1 MiB limit: one page, one class, so the class's
 * capacity is its chunks per page. Presence is checked with peek(), which
 * does not count as an access, so checking does not change what is evicted.
 */
#include "storage_test.h"

#define T0 100

static char g_val[256];

static void fill_value(void)
{
    for (size_t i = 0; i < sizeof(g_val); i++) {
        g_val[i] = (char)('a' + i % 26);
    }
}

/* Stores prefix%d with a 100-byte value at `now`. */
static void put(struct storage *st, const char *prefix, int i, rel_time_t exptime, rel_time_t now)
{
    char k[64];
    snprintf(k, sizeof(k), "%s%d", prefix, i);
    enum storage_store_outcome out;
    assert_int_equal(t_store(st, k, g_val, 100, 0, exptime, STORAGE_SET, 0, now, &out, NULL), 0);
    assert_int_equal(out, STORAGE_STORED);
}

/* A read: counts as an access. */
static void get(struct storage *st, const char *prefix, int i, rel_time_t now)
{
    char k[64];
    snprintf(k, sizeof(k), "%s%d", prefix, i);
    struct item *it = t_get(st, k, now, NULL);
    assert_non_null(it);
    storage_release(st, &it);
}

enum where { ABSENT, SMALL, MAIN };

/* Where a live item is, without touching it. */
static enum where peek(struct storage *st, const char *prefix, int i, rel_time_t now)
{
    char k[64];
    snprintf(k, sizeof(k), "%s%d", prefix, i);
    uint64_t hv = storage_hash(k, strlen(k));
    pthread_mutex_t *m = stripe_lock_of(st, hv);
    pthread_mutex_lock(m);
    struct item *it = htab_find(st, k, strlen(k), hv);
    enum where w = ABSENT;
    if (it != NULL && item_state(st, it, now) == ITEM_ALIVE) {
        w = (item_iflags(it) & ITEM_MAIN) ? MAIN : SMALL;
    }
    pthread_mutex_unlock(m);
    return w;
}

/* Chunks in the one page of the class that 100-byte values with keys of
 * up to 8 bytes land in. */
static uint64_t capacity(struct storage *st)
{
    unsigned cls = slab_class_for(st, ITEM_HEADER_SIZE + 8 + 100 + 2);
    assert_int_equal(slab_class_for(st, ITEM_HEADER_SIZE + 2 + 100 + 2), cls);
    struct storage_class_stats cs;
    assert_true(storage_get_class_stats(st, cls, T0, &cs));
    return cs.chunks_per_page;
}

static void test_one_hit_wonders_go_first(void **state)
{
    (void)state;
    struct storage *st = t_create(MiB, 0, false);
    int cap = (int)capacity(st);
    /* 200 keys read once after their store, then a stream of keys never
     * read, three times the cache. */
    for (int i = 0; i < 200; i++) {
        put(st, "r", i, 0, T0);
        get(st, "r", i, T0);
    }
    for (int i = 0; i < 3 * cap; i++) {
        put(st, "o", i, 0, T0);
    }
    for (int i = 0; i < 200; i++) {
        assert_int_equal(peek(st, "r", i, T0), MAIN);
    }
    /* The one-hit wonders left through the small queue, oldest first: what
     * is left of them is the newest, still on probation. */
    assert_int_equal(peek(st, "o", 0, T0), ABSENT);
    assert_int_equal(peek(st, "o", 3 * cap - 1, T0), SMALL);
    struct storage_stats s = t_stats(st, T0);
    assert_int_equal(s.curr_items, (uint64_t)cap);
    assert_int_equal(s.evictions, (uint64_t)(2 * cap + 200));
    assert_int_equal(s.evicted_unfetched, s.evictions);
    t_check(st);
    storage_destroy(&st);
}

static void test_ghost_admits_to_main(void **state)
{
    (void)state;
    struct storage *st = t_create(MiB, 0, false);
    int cap = (int)capacity(st);
    put(st, "g", 0, 0, T0);
    assert_int_equal(peek(st, "g", 0, T0), SMALL);
    for (int i = 0; i < cap; i++) {
        put(st, "f", i, 0, T0);
    }
    /* Evicted unread from the small queue: its fingerprint is in the ghost. */
    assert_int_equal(peek(st, "g", 0, T0), ABSENT);
    unsigned cls = slab_class_for(st, ITEM_HEADER_SIZE + 2 + 100 + 2);
    assert_int_equal(st->classes[cls].ghost_hits, 0);
    /* Stored again (the set after the miss): main, not probation. */
    put(st, "g", 0, 0, T0);
    assert_int_equal(peek(st, "g", 0, T0), MAIN);
    assert_int_equal(st->classes[cls].ghost_hits, 1);
    /* The ghost entry is used up: evicted again from main, it comes back on
     * probation (main evicts without a ghost entry). A new key does too. */
    put(st, "new", 0, 0, T0);
    assert_int_equal(peek(st, "new", 0, T0), SMALL);
    /* Keys evicted from the small queue come back to main, in bulk. */
    for (int i = 0; i < 100; i++) {
        put(st, "f", i, 0, T0);
    }
    for (int i = 0; i < 100; i++) {
        assert_int_equal(peek(st, "f", i, T0), MAIN);
    }
    assert_int_equal(st->classes[cls].ghost_hits, 101);
    /* A replacement of a main item stays in main; so does a restored item. */
    put(st, "g", 0, 0, T0 + 1);
    assert_int_equal(peek(st, "g", 0, T0), MAIN);
    struct item *it = NULL;
    assert_int_equal(storage_alloc(st, "w", 1, 0, 0, 100, T0, &it), 0);
    memcpy(storage_item_value(it), g_val, 100);
    bool stored = false;
    assert_int_equal(storage_restore(st, it, 12345, storage_hash("w", 1), T0, &stored), 0);
    assert_true(stored);
    storage_release(st, &it);
    enum storage_get_outcome out;
    it = t_get(st, "w", T0, &out);
    assert_non_null(it);
    assert_true(item_iflags(it) & ITEM_MAIN);
    assert_int_equal(storage_item_cas(it), 12345);
    storage_release(st, &it);
    t_check(st);
    storage_destroy(&st);
}

static void test_main_clock_second_chance(void **state)
{
    (void)state;
    struct storage *st = t_create(MiB, 0, false);
    int cap = (int)capacity(st);
    /* Fill the class with items each read once. */
    for (int i = 0; i < cap; i++) {
        put(st, "m", i, 0, T0);
        get(st, "m", i, T0);
    }
    /* The next store moves the read items from the small queue to main
     * (their counts start over there) until the small queue is down to its
     * share; then main's oldest, m0, unread since, is evicted. */
    put(st, "x", 0, 0, T0);
    assert_int_equal(peek(st, "m", 0, T0), ABSENT);
    assert_int_equal(peek(st, "m", 1, T0), MAIN);
    assert_int_equal(peek(st, "m", 2, T0), MAIN);
    assert_int_equal(peek(st, "m", cap - 1, T0), SMALL);
    /* m1, now main's oldest, is read: it gets a second chance, and m2,
     * next and unread, goes in its place. */
    get(st, "m", 1, T0);
    for (int i = 1; i <= 3; i++) {
        put(st, "x", i, 0, T0);
    }
    assert_int_equal(peek(st, "m", 1, T0), MAIN);
    assert_int_equal(peek(st, "m", 2, T0), ABSENT);
    assert_int_equal(peek(st, "m", 3, T0), ABSENT);
    /* Counts saturate at ITEM_FREQ_MAX. */
    for (int r = 0; r < 5; r++) {
        get(st, "m", 1, T0);
    }
    struct item *it = t_get(st, "m1", T0, NULL);
    assert_non_null(it);
    assert_int_equal(it->freq, ITEM_FREQ_MAX);
    storage_release(st, &it);
    /* A stream of keys never read again: main evicts only while the last
     * read items still move there from the small queue (m1, counted up,
     * survives that); then the small queue stays over its share, eviction
     * takes from it alone, and main is left as it is. */
    for (int i = 4; i < 3 * cap; i++) {
        put(st, "x", i, 0, T0);
    }
    assert_int_equal(peek(st, "m", 1, T0), MAIN);
    assert_int_equal(peek(st, "m", 5, T0), ABSENT);
    assert_int_equal(peek(st, "m", cap - 1, T0), MAIN);
    assert_int_equal(peek(st, "x", 4, T0), ABSENT);
    assert_int_equal(peek(st, "x", 3 * cap - 1, T0), SMALL);
    t_check(st);
    storage_destroy(&st);
}

static void test_eviction_stats(void **state)
{
    (void)state;
    struct storage *st = t_create(MiB, 0, false);
    int cap = (int)capacity(st);
    /* The first 100 expire at T0 + 10; 20 of the others are read. */
    for (int i = 0; i < cap; i++) {
        put(st, "s", i, i < 100 ? T0 + 10 : 0, T0);
    }
    for (int i = 100; i < 120; i++) {
        get(st, "s", i, T0);
    }
    /* 1000 stores at T0 + 50: the 100 expired are reclaimed, the 20 read
     * move to main, and 900 of the others are evicted, all unread. */
    for (int i = 0; i < 1000; i++) {
        put(st, "n", i, 0, T0 + 50);
    }
    struct storage_stats s = t_stats(st, T0 + 50);
    assert_int_equal(s.curr_items, (uint64_t)cap);
    assert_int_equal(s.total_items, (uint64_t)cap + 1000);
    assert_int_equal(s.reclaimed, 100);
    assert_int_equal(s.expired_unfetched, 100);
    assert_int_equal(s.evictions, 900);
    assert_int_equal(s.evicted_unfetched, 900);
    unsigned cls = slab_class_for(st, ITEM_HEADER_SIZE + 2 + 100 + 2);
    struct storage_class_stats cs;
    assert_true(storage_get_class_stats(st, cls, T0 + 50, &cs));
    assert_int_equal(cs.number, (uint64_t)cap);
    assert_int_equal(cs.evicted, 900);
    assert_int_equal(cs.evicted_unfetched, 900);
    assert_int_equal(cs.evicted_nonzero, 0);
    assert_int_equal(cs.evicted_time, 50);
    assert_int_equal(cs.reclaimed, 100);
    assert_int_equal(cs.expired_unfetched, 100);
    assert_int_equal(cs.used_chunks, (uint64_t)cap);
    assert_int_equal(cs.age, 50); /* the oldest item was stored at T0 */
    for (int i = 100; i < 120; i++) {
        assert_int_equal(peek(st, "s", i, T0 + 50), MAIN);
    }
    assert_int_equal(peek(st, "s", 120, T0 + 50), ABSENT);
    assert_int_equal(peek(st, "s", 1020, T0 + 50), SMALL);
    /* Evicted keys stored again go to main (the ghost), which pushes the
     * small queue under its share; then main evicts its oldest, the 20 read
     * items, whose counts started over when they moved, and those evictions
     * count as fetched. */
    int j = 120;
    while (peek(st, "s", 119, T0 + 60) != ABSENT) {
        put(st, "s", j++, 0, T0 + 60);
        assert_true(j < 2 * cap);
    }
    s = t_stats(st, T0 + 60);
    assert_int_equal(s.evictions - s.evicted_unfetched, 20);
    assert_int_equal(s.curr_items, (uint64_t)cap);
    assert_int_equal(s.reclaimed, 100);
    for (int i = 100; i < 120; i++) {
        assert_int_equal(peek(st, "s", i, T0 + 60), ABSENT);
    }
    t_check(st);
    storage_destroy(&st);
}

int main(void)
{
    fill_value();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_hit_wonders_go_first),
        cmocka_unit_test(test_ghost_admits_to_main),
        cmocka_unit_test(test_main_clock_second_chance),
        cmocka_unit_test(test_eviction_stats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

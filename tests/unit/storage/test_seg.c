/*
 * test_seg.c - unit tests of the segment log engine (seg.c): the memory
 * limit in whole 1 MiB segments with one held back as the reserve, S3-FIFO
 * eviction by segment (copy-forward of read items, one-hit wonders first,
 * the ghost), references pinning segments, -M compaction, whole-segment
 * expiry and the crawler, run-time memory limit changes, and a threaded run
 * with checksummed values. Tests marked "Regression" failed on the engine
 * commit they name and pin the fix.
 *
 * Presence is checked with seg_peek(), which looks in the hash table under
 * the stripe lock without counting an access, so checking does not change
 * what the engine keeps.
 */
#include <pthread.h>

#include "storage_test.h"

#define T0 100

/* Keys are one tag letter and 9 digits: 10 bytes. */
#define KEYLEN 10
#define KEYBUF 32

/* Bytes an item takes in its segment (see storage_int.h): 18-byte header,
 * nbytes in 1, 2 or 4 bytes, key, value, rounded up to 2 (the caches here
 * are far below 8 GiB). */
#define SPAN(nkey, nval) (((size_t)T_HEADER(0, (nval)) + (nkey) + (nval) + 1) & ~(size_t)1)

static void mkkey(char *buf, char tag, unsigned i)
{
    snprintf(buf, KEYBUF, "%c%09u", tag, i);
}

/* The value of (tag, i, seed): a fill byte and the numbers written over its
 * start, so that values of different keys differ. */
static void mkval(char *dst, size_t n, char tag, unsigned i, unsigned seed)
{
    char head[40];
    memset(dst, 'a' + (int)((i + seed) % 26), n);
    int len = snprintf(head, sizeof(head), "%c%u.%u;", tag, i, seed);
    memcpy(dst, head, (size_t)len < n ? (size_t)len : n);
}

static char g_buf[64 * 1024];
static char g_want[64 * 1024];

/* Stores tag+i with an nval-byte value; returns the allocation or store
 * status (asserts STORED when it is 0). */
static int s_put(struct storage *st, char tag, unsigned i, size_t nval, unsigned seed,
                 rel_time_t exptime, rel_time_t now)
{
    char k[KEYBUF];
    mkkey(k, tag, i);
    mkval(g_buf, nval, tag, i, seed);
    enum storage_store_outcome out = STORAGE_NOT_STORED;
    int rc = t_store(st, k, g_buf, nval, 0, exptime, STORAGE_SET, 0, now, &out, NULL);
    if (rc == 0) {
        assert_int_equal(out, STORAGE_STORED);
    }
    return rc;
}

static void s_put_ok(struct storage *st, char tag, unsigned i, size_t nval, unsigned seed,
                     rel_time_t exptime, rel_time_t now)
{
    int rc = s_put(st, tag, i, nval, seed, exptime, now);
    if (rc != 0) {
        fail_msg("store of %c%09u failed: %s", tag, i, storage_strerror(rc));
    }
}

/* Whether tag+i is linked and alive, looked up without counting an access;
 * fills its iflags and segment number when asked (either may be NULL). */
static bool seg_peek(struct storage *st, char tag, unsigned i, rel_time_t now, uint8_t *iflags,
                     uint32_t *segno)
{
    char k[KEYBUF];
    mkkey(k, tag, i);
    uint64_t hv = storage_hash(k, KEYLEN);
    pthread_mutex_t *m = stripe_lock_of(st, hv);
    pthread_mutex_lock(m);
    struct item *it = htab_find(st, k, KEYLEN, hv);
    bool live = it != NULL && item_state(st, it, now) == ITEM_ALIVE;
    if (live && iflags != NULL) {
        *iflags = item_iflags(it);
    }
    if (live && segno != NULL) {
        *segno = item_seg(st, it);
    }
    pthread_mutex_unlock(m);
    return live;
}

static bool s_linked(struct storage *st, char tag, unsigned i, rel_time_t now)
{
    return seg_peek(st, tag, i, now, NULL, NULL);
}

/* Stores never-read keys tag+i, tag+(i+1), ... of nval bytes until the
 * first eviction (asserting fewer than `max` keys are needed); returns the
 * next i. */
static unsigned s_fill_until_eviction(struct storage *st, char tag, unsigned i, size_t nval,
                                      rel_time_t now, unsigned max)
{
    while (t_stats(st, now).evictions == 0) {
        s_put_ok(st, tag, i++, nval, 0, 0, now);
        assert_true(i < max);
    }
    return i;
}

/* Fills the cache with never-read 'q' keys of nval bytes until eviction
 * begins, then asks for the reserve (as the first copy without room does)
 * and stores on until it is there; returns how many were stored. */
static unsigned s_begin_evicting(struct storage *st, size_t nval, rel_time_t now)
{
    unsigned i = s_fill_until_eviction(st, 'q', 0, nval, now, 1000000);
    pthread_mutex_lock(&st->seg_lock);
    st->reserve_wanted = true;
    pthread_mutex_unlock(&st->seg_lock);
    while (st->reserve == SEG_NONE) {
        s_put_ok(st, 'q', i++, nval, 0, 0, now);
        assert_true(i < 1000000);
    }
    return i;
}

/* Asserts tag+i is readable with exactly its value (a read: counts as an
 * access). */
static void s_expect(struct storage *st, char tag, unsigned i, size_t nval, unsigned seed,
                     rel_time_t now)
{
    char k[KEYBUF];
    mkkey(k, tag, i);
    enum storage_get_outcome out;
    struct item *it = t_get(st, k, now, &out);
    if (it == NULL) {
        fail_msg("key %s missing (outcome %d)", k, (int)out);
    }
    mkval(g_want, nval, tag, i, seed);
    assert_int_equal(storage_item_nbytes(it), nval);
    assert_memory_equal(storage_item_value(it), g_want, nval);
    storage_release(st, &it);
}

static void s_expect_absent(struct storage *st, char tag, unsigned i, rel_time_t now,
                            enum storage_get_outcome want)
{
    char k[KEYBUF];
    mkkey(k, tag, i);
    t_expect_absent(st, k, now, want);
}

static uint64_t free_segs(struct storage *st)
{
    return t_stats(st, T0).slab_global_page_pool;
}

/* ---- 1. memory limit --------------------------------------------------------------- */

/* Pins the limit in segments: with 8 MiB, all 8 segments hold items until
 * the first eviction, which comes after 8 * (1 MiB / span) items and empties
 * one segment; committed memory never passes the
 * limit however long the churn (with copy-forward using the reserve), and
 * the invariants hold after it. */
static void test_limit_and_first_eviction(void **state)
{
    (void)state;
    struct storage *st = t_create(8 * MiB, 0, false);
    const size_t nval = 100;
    const size_t span = SPAN(KEYLEN, nval);
    assert_int_equal(span, 130); /* 18 + 1 + 10 + 100 = 129, rounded to 2 */
    const uint64_t predicted = 8 * (MiB / span);

    uint64_t first = 0;
    for (unsigned i = 0;; i++) {
        s_put_ok(st, 'k', i, nval, 0, 0, T0);
        struct storage_stats s = t_stats(st, T0);
        assert_true(s.total_malloced <= 8 * MiB);
        if (s.evictions > 0) {
            first = i; /* stores that fit before this one */
            /* The whole oldest segment went at once (the background
             * thread fills the reserve after). */
            assert_int_equal(s.evictions, MiB / span);
            assert_int_equal(s.curr_items, i + 1 - s.evictions);
            break;
        }
        assert_true(i < 2 * predicted);
    }
    assert_true(first + predicted / 100 >= predicted);
    assert_true(first <= predicted + predicted / 100);
    assert_int_equal(t_stats(st, T0).total_malloced, 8 * MiB);

    /* Heavy churn, one item in 4 read right after its store so that
     * copy-forward runs too. */
    unsigned base = (unsigned)first + 1;
    for (unsigned i = 0; i < 4 * predicted; i++) {
        s_put_ok(st, 'k', base + i, nval, 0, 0, T0);
        if (i % 4 == 0) {
            s_expect(st, 'k', base + i, nval, 0, T0 + 1);
        }
        if (i % 512 == 0) {
            struct storage_stats s = t_stats(st, T0);
            assert_true(s.total_malloced <= 8 * MiB);
            assert_true(s.curr_items * span <= 8 * MiB);
        }
    }
    struct storage_stats s = t_stats(st, T0);
    assert_true(s.total_malloced <= 8 * MiB);
    assert_true(s.evictions > predicted);
    assert_true(st->moved > 0);
    /* No deletes, overwrites or expiry: every store is stored or evicted. */
    assert_int_equal(s.total_items, s.curr_items + s.evictions);
    t_check(st);
    storage_destroy(&st);
}

/* ---- 2. S3-FIFO ------------------------------------------------------------------- */

/* Pins copy-forward: once eviction has begun, an item read once after its
 * store survives the eviction of its small-queue segment (it moves to the
 * main queue) while unread neighbours written just before and after it are
 * evicted. */
static void test_read_item_copied_forward(void **state)
{
    (void)state;
    struct storage *st = t_create(8 * MiB, 0, false);
    const size_t nval = 100;
    const unsigned per_seg = (unsigned)(MiB / SPAN(KEYLEN, nval));
    const unsigned hot = 500;
    s_begin_evicting(st, nval, T0);
    uint32_t seg_before = SEG_NONE;
    unsigned i = 0;
    for (; i < 1000; i++) {
        s_put_ok(st, 'n', i, nval, 0, 0, T0);
    }
    s_expect(st, 'n', hot, nval, 0, T0);
    assert_true(seg_peek(st, 'n', hot, T0, NULL, &seg_before));
    assert_true(st->segs[seg_before].small);
    uint32_t seg_lo = SEG_NONE, seg_hi = SEG_NONE;
    assert_true(seg_peek(st, 'n', hot - 1, T0, NULL, &seg_lo));
    assert_true(seg_peek(st, 'n', hot + 1, T0, NULL, &seg_hi));
    uint64_t moved0 = st->moved;
    uint32_t seg_after = seg_before;
    while (seg_after == seg_before) {
        s_put_ok(st, 'n', i++, nval, 0, 0, T0);
        assert_true(i < 20 * per_seg);
        assert_true(seg_peek(st, 'n', hot, T0, NULL, &seg_after));
    }
    assert_true(st->moved >= moved0 + 1);
    uint8_t fl = 0;
    assert_true(seg_peek(st, 'n', hot, T0, &fl, &seg_after));
    assert_true(fl & ITEM_MAIN);
    assert_true(fl & ITEM_FETCHED);
    assert_false(st->segs[seg_after].small);
    /* Its unread neighbours in the same segment went. */
    if (seg_lo == seg_before) {
        s_expect_absent(st, 'n', hot - 1, T0, STORAGE_MISS);
    }
    if (seg_hi == seg_before) {
        s_expect_absent(st, 'n', hot + 1, T0, STORAGE_MISS);
    }
    s_expect(st, 'n', hot, nval, 0, T0);
    t_check(st);
    storage_destroy(&st);
}

/* Pins the reserve's two triggers. A cache only written keeps every
 * segment for items, so a first read after it filled finds no reserve: the
 * copy of that read item finds no room, so the item is evicted, its key
 * goes to the ghost (its next store goes straight to main) and the reserve
 * is kept from then on. A cache read before it fills holds the reserve back
 * from the first hit, so its first eviction copies read items forward. */
static void test_reserve_triggers(void **state)
{
    (void)state;
    struct storage *st = t_create(8 * MiB, 0, false);
    const size_t nval = 100;
    const unsigned per_seg = (unsigned)(MiB / SPAN(KEYLEN, nval));
    unsigned i = s_fill_until_eviction(st, 'n', 0, nval, T0, 9 * per_seg);
    assert_true(i >= 8 * per_seg - 1);
    assert_false(st->reserve_wanted);
    /* The oldest item left, read once: in the next victim. */
    unsigned hot = 0;
    while (!s_linked(st, 'n', hot, T0)) {
        hot++;
    }
    s_expect(st, 'n', hot, nval, 0, T0);
    assert_true(st->reserve_wanted);
    assert_int_equal(st->reserve, SEG_NONE);
    while (s_linked(st, 'n', hot + 1, T0)) {
        s_put_ok(st, 'n', i++, nval, 0, 0, T0);
        assert_true(i < 12 * per_seg);
    }
    s_expect_absent(st, 'n', hot, T0, STORAGE_MISS);
    assert_int_not_equal(st->reserve, SEG_NONE);
    s_put_ok(st, 'n', hot, nval, 1, 0, T0);
    uint8_t fl = 0;
    assert_true(seg_peek(st, 'n', hot, T0, &fl, NULL));
    assert_true(fl & ITEM_MAIN);
    t_check(st);
    storage_destroy(&st);

    /* Read before full: the last segment is held back, and the read item
     * is copied at the first eviction. */
    st = t_create(8 * MiB, 0, false);
    s_put_ok(st, 'h', 0, nval, 0, 0, T0);
    s_expect(st, 'h', 0, nval, 0, T0);
    i = s_fill_until_eviction(st, 'n', 0, nval, T0, 9 * per_seg);
    assert_true(i < 7 * per_seg + per_seg / 2);
    assert_true(st->moved >= 1);
    s_expect(st, 'h', 0, nval, 0, T0);
    t_check(st);
    storage_destroy(&st);
}

/* Pins evicting ahead: a cache that is only written keeps no reserve, and
 * the background pass frees a segment only once the active one is three
 * quarters full, then exactly one. */
static void test_evict_ahead_when_active_nearly_full(void **state)
{
    (void)state;
    struct storage *st = t_create(8 * MiB, 0, false);
    const size_t nval = 100;
    const unsigned per_seg = (unsigned)(MiB / SPAN(KEYLEN, nval));
    unsigned i = s_fill_until_eviction(st, 'n', 0, nval, T0, 9 * per_seg);
    uint64_t ev = t_stats(st, T0).evictions;
    storage_maintain(st, T0);
    assert_int_equal(t_stats(st, T0).evictions, ev);
    assert_int_equal(st->reserve, SEG_NONE);
    assert_false(st->reserve_wanted);
    assert_int_equal(free_segs(st), 0);
    while (st->segs[st->small_act].used < MiB / 4 * 3) {
        s_put_ok(st, 'n', i++, nval, 0, 0, T0);
        assert_true(i < 10 * per_seg);
    }
    assert_int_equal(t_stats(st, T0).evictions, ev);
    storage_maintain(st, T0);
    assert_int_equal(t_stats(st, T0).evictions, ev + MiB / SPAN(KEYLEN, nval));
    assert_int_equal(free_segs(st), 1);
    storage_maintain(st, T0);
    assert_int_equal(t_stats(st, T0).evictions, ev + MiB / SPAN(KEYLEN, nval));

    /* A wanted reserve while the limit leaves room uncommitted (raised by
     * a segment): that room is the reserve, and idle passes evict nothing
     * for it (they once emptied nearly the whole cache). */
    st->reserve_wanted = true;
    assert_int_equal(storage_set_memlimit(st, 9 * MiB), 0);
    ev = t_stats(st, T0).evictions;
    for (int k = 0; k < 40; k++) {
        storage_maintain(st, T0);
    }
    assert_true(t_stats(st, T0).evictions <= ev + per_seg);
    t_check(st);
    storage_destroy(&st);
}

/* Pins "one-hit wonders go first" and the eviction counters: of three
 * segments of keys, every third key is read once; those survive a churn of
 * three times the cache in never-read keys, the unread ones are gone. Every eviction is counted
 * as unfetched, in `evictions` and in the items' class, and with an exptime
 * as evicted_nonzero. */
static void test_one_hit_wonders_and_counters(void **state)
{
    (void)state;
    struct storage *st = t_create(8 * MiB, 0, false);
    const size_t nval = 1000;
    const unsigned per_seg = (unsigned)(MiB / SPAN(KEYLEN, nval));
    const unsigned n = 3 * per_seg;
    const unsigned nq = s_begin_evicting(st, nval, T0);
    for (unsigned i = 0; i < n; i++) {
        s_put_ok(st, 'a', i, nval, 0, 0, T0);
    }
    for (unsigned i = 0; i < n; i += 3) {
        s_expect(st, 'a', i, nval, 0, T0);
    }
    const unsigned churn = 3 * 8 * per_seg;
    for (unsigned i = 0; i < churn; i++) {
        s_put_ok(st, 'c', i, nval, 0, T0 + 100000, T0 + 1);
    }
    for (unsigned i = 0; i < n; i++) {
        if (i % 3 == 0) {
            assert_true(s_linked(st, 'a', i, T0 + 1));
        } else if (s_linked(st, 'a', i, T0 + 1)) {
            fail_msg("unread a%09u survived three cache sizes of churn", i);
        }
    }
    struct storage_stats s = t_stats(st, T0 + 1);
    /* The never-read fillers (no exptime) are all gone too. */
    for (unsigned i = 0; i < nq; i++) {
        assert_false(s_linked(st, 'q', i, T0 + 1));
    }
    const uint64_t unread_gone = n - n / 3 + nq;
    assert_true(s.evictions >= unread_gone + churn - 8 * per_seg);
    assert_int_equal(s.total_items, s.curr_items + s.evictions);
    assert_int_equal(s.evicted_unfetched, s.evictions);

    /* Per class: every item has the same size, so one class has them all. */
    char k[KEYBUF];
    mkkey(k, 'a', 0);
    struct item *it = t_get(st, k, T0 + 1, NULL);
    assert_non_null(it);
    const unsigned cls = storage_item_class(st, it);
    storage_release(st, &it);
    uint64_t sum = 0;
    for (unsigned id = 1; id <= storage_class_count(st); id++) {
        struct storage_class_stats cs;
        assert_true(storage_get_class_stats(st, id, T0 + 1, &cs));
        sum += cs.evicted;
        if (id == cls) {
            assert_int_equal(cs.evicted, s.evictions);
            assert_int_equal(cs.evicted_unfetched, s.evictions);
            /* Only the churn keys had an exptime. */
            assert_int_equal(cs.evicted_nonzero, s.evictions - unread_gone);
            assert_int_equal(cs.number, s.curr_items);
        } else {
            assert_int_equal(cs.evicted, 0);
        }
    }
    assert_int_equal(sum, s.evictions);
    for (unsigned i = 0; i < n; i += 3) {
        s_expect(st, 'a', i, nval, 0, T0 + 2);
    }
    t_check(st);
    storage_destroy(&st);
}

/* Pins the ghost: a key evicted unread from the small queue and stored
 * again soon after is admitted to the main queue (a ghost hit, ITEM_MAIN;
 * in the main queue's active segment when one is open, else in the small
 * queue's until its segment is emptied); a key never seen is not. */
static void test_ghost_admits_to_main(void **state)
{
    (void)state;
    struct storage *st = t_create(8 * MiB, 0, false);
    const size_t nval = 100;
    s_put_ok(st, 'g', 0, nval, 0, 0, T0);
    s_fill_until_eviction(st, 'x', 0, nval, T0, 100000);
    s_expect_absent(st, 'g', 0, T0, STORAGE_MISS);

    uint64_t hits = st->ghost_hits;
    s_put_ok(st, 'g', 0, nval, 1, 0, T0 + 1);
    assert_int_equal(st->ghost_hits, hits + 1);
    uint8_t fl = 0;
    uint32_t segno = SEG_NONE;
    assert_true(seg_peek(st, 'g', 0, T0 + 1, &fl, &segno));
    assert_true(fl & ITEM_MAIN);
    assert_false(fl & ITEM_FETCHED);
    /* No copy has opened a main segment: rather than one for this item, it
     * waits in the small queue, marked for main. */
    assert_int_equal(st->main_act, SEG_NONE);
    assert_true(st->segs[segno].small);
    s_expect(st, 'g', 0, nval, 1, T0 + 1);

    /* A key the cache never had goes to the small queue. */
    s_put_ok(st, 'y', 0, nval, 0, 0, T0 + 1);
    assert_int_equal(st->ghost_hits, hits + 1);
    assert_true(seg_peek(st, 'y', 0, T0 + 1, &fl, &segno));
    assert_false(fl & ITEM_MAIN);
    assert_true(st->segs[segno].small);

    /* The ghost hit is taken: a second store of the key is not another. */
    s_put_ok(st, 'g', 0, nval, 2, 0, T0 + 1);
    assert_int_equal(st->ghost_hits, hits + 1);
    /* It replaced a main-queue item, so it stays in main. */
    assert_true(seg_peek(st, 'g', 0, T0 + 1, &fl, NULL));
    assert_true(fl & ITEM_MAIN);
    t_check(st);
    storage_destroy(&st);
}

/* Regression (failed on bef1f61, fixed since): in a small cache (fewer than about 10
 * segments) an unread item can be evicted a handful of stores after it was
 * stored, while the cache holds thousands of items. S3-FIFO gives a new
 * item a probation in the small queue of about 10% of the cache; here the
 * victim test `nsmall * SEG_SMALL_DIV >= total` holds as soon as one full
 * small segment exists, so the segment just filled is emptied at once by
 * the store that opens the next one. Pins that an item survives 100 later
 * stores (1.5% of this cache) while half the items are read once. */
static void test_small_cache_probation_window(void **state)
{
    (void)state;
    struct storage *st = t_create(8 * MiB, 0, false);
    const size_t nval = 1000;
    const unsigned lag = 100;
    unsigned lost = 0;
    unsigned first_lost = 0;
    for (unsigned i = 0; i < 20000; i++) {
        s_put_ok(st, 'h', i, nval, 0, 0, T0);
        if (i % 2 == 0) {
            s_expect(st, 'h', i, nval, 0, T0);
        } else if (i >= lag && !s_linked(st, 'h', i - lag, T0)) {
            if (lost++ == 0) {
                first_lost = i - lag;
            }
        }
    }
    if (lost > 0) {
        fail_msg("%u unread items evicted within %u stores of their own store (first "
                 "h%09u) in a cache holding %llu items",
                 lost, lag, first_lost, (unsigned long long)t_stats(st, T0).curr_items);
    }
    t_check(st);
    storage_destroy(&st);
}

/* ---- 3. references ---------------------------------------------------------------- */

/* Pins that references pin memory: an item held from storage_get and one
 * held from storage_alloc (stored, not released) keep their bytes while the
 * cache is churned five times over; their segment, emptied meanwhile, waits
 * (SEG_DRAIN) and is reused only after the release. */
static void test_reference_pins_segment(void **state)
{
    (void)state;
    struct storage *st = t_create(8 * MiB, 0, false);
    const size_t nval = 1000;
    const size_t pval = 3000;
    const unsigned per_seg = (unsigned)(MiB / SPAN(KEYLEN, nval));
    char wa[3000], wb[3000];

    s_begin_evicting(st, nval, T0);
    s_put_ok(st, 'p', 0, pval, 7, 0, T0);
    char k[KEYBUF];
    mkkey(k, 'p', 0);
    struct item *a = t_get(st, k, T0, NULL);
    assert_non_null(a);
    mkval(wa, pval, 'p', 0, 7);

    struct item *b = NULL;
    mkkey(k, 'p', 1);
    assert_int_equal(storage_alloc(st, k, KEYLEN, 0, 0, pval, T0, &b), 0);
    mkval(wb, pval, 'p', 1, 8);
    memcpy(storage_item_value(b), wb, pval);
    enum storage_store_outcome out;
    assert_int_equal(storage_store(st, b, STORAGE_SET, 0, storage_hash(k, KEYLEN), T0, &out, NULL),
                     0);
    assert_int_equal(out, STORAGE_STORED);

    const uint32_t sa = item_seg(st, a);
    const uint32_t sb = item_seg(st, b);
    const unsigned churn = 5 * 8 * per_seg;
    for (unsigned i = 0; i < churn; i++) {
        s_put_ok(st, 'c', i, nval, 0, 0, T0);
        if (i % 256 == 0) {
            assert_memory_equal(storage_item_key(a), "p000000000", KEYLEN);
            assert_memory_equal(storage_item_value(a), wa, pval);
            assert_memory_equal(storage_item_key(b), "p000000001", KEYLEN);
            assert_memory_equal(storage_item_value(b), wb, pval);
        }
    }
    assert_int_equal(storage_item_nbytes(a), pval);
    assert_memory_equal(storage_item_value(a), wa, pval);
    assert_int_equal(storage_item_nbytes(b), pval);
    assert_memory_equal(storage_item_value(b), wb, pval);

    /* Emptied but not reused. */
    assert_int_equal(st->segs[sa].state, SEG_DRAIN);
    assert_int_equal(st->segs[sb].state, SEG_DRAIN);
    /* The read one was copied forward, the unread one evicted. */
    struct item *a2 = t_get(st, "p000000000", T0, NULL);
    assert_non_null(a2);
    assert_ptr_not_equal(a2, a);
    assert_memory_equal(storage_item_value(a2), wa, pval);
    storage_release(st, &a2);
    s_expect_absent(st, 'p', 1, T0, STORAGE_MISS);
    struct storage_stats s = t_stats(st, T0);
    assert_true(s.total_malloced <= 8 * MiB);

    storage_release(st, &a);
    storage_release(st, &b);
    t_check(st);
    for (unsigned i = 0; i < 8 * per_seg; i++) {
        s_put_ok(st, 'd', i, nval, 0, 0, T0);
    }
    assert_int_not_equal(st->segs[sa].state, SEG_DRAIN);
    assert_int_not_equal(st->segs[sb].state, SEG_DRAIN);
    t_check(st);
    storage_destroy(&st);
}

/* Pins pending items: an item allocated and not yet stored keeps its
 * segment from being emptied (its unread neighbours survive three cache
 * sizes of churn, and its value bytes stay), and storing it afterwards
 * makes it readable with the full value. */
static void test_pending_item_pins_segment(void **state)
{
    (void)state;
    struct storage *st = t_create(8 * MiB, 0, false);
    const size_t nval = 1000;
    const size_t pval = 5000;
    const unsigned per_seg = (unsigned)(MiB / SPAN(KEYLEN, nval));

    s_put_ok(st, 'b', 0, nval, 0, 0, T0);
    char k[KEYBUF];
    mkkey(k, 'q', 0);
    struct item *it = NULL;
    assert_int_equal(storage_alloc(st, k, KEYLEN, 0, 0, pval, T0, &it), 0);
    char want[5000];
    mkval(want, pval, 'q', 0, 3);
    memcpy(storage_item_value(it), want, pval);
    s_put_ok(st, 'b', 1, nval, 0, 0, T0);
    const uint32_t segno = item_seg(st, it);

    uint64_t ev0 = t_stats(st, T0).evictions;
    for (unsigned i = 0; i < 3 * 8 * per_seg; i++) {
        s_put_ok(st, 'c', i, nval, 0, 0, T0);
    }
    assert_true(t_stats(st, T0).evictions > ev0);
    assert_true(st->segs[segno].state == SEG_SMALL || st->segs[segno].state == SEG_MAIN);
    assert_true(s_linked(st, 'b', 0, T0));
    assert_true(s_linked(st, 'b', 1, T0));
    assert_memory_equal(storage_item_value(it), want, pval);
    /* Not linked yet. */
    assert_false(t_present(st, k, T0));

    enum storage_store_outcome out;
    assert_int_equal(storage_store(st, it, STORAGE_SET, 0, storage_hash(k, KEYLEN), T0, &out, NULL),
                     0);
    assert_int_equal(out, STORAGE_STORED);
    storage_release(st, &it);
    s_expect(st, 'q', 0, pval, 3, T0);
    s_expect(st, 'b', 0, nval, 0, T0);
    s_expect(st, 'b', 1, nval, 0, T0);
    t_check(st);
    storage_destroy(&st);
}

/* ---- 4. -M ------------------------------------------------------------------------- */

/* Pins -M: stores fill the limit and then fail with ENOMEM without a single
 * eviction; deleting items lets new stores succeed again (the segment with
 * the fewest live items is compacted), and every item not deleted keeps its
 * exact value. */
static void test_no_evict_compaction(void **state)
{
    (void)state;
    struct storage *st = t_create(8 * MiB, 0, true);
    const size_t nval = 1000;
    const unsigned per_seg = (unsigned)(MiB / SPAN(KEYLEN, nval));
    unsigned n = 0;
    int rc;
    while ((rc = s_put(st, 'm', n, nval, 0, 0, T0)) == 0) {
        n++;
        assert_true(n < 9 * per_seg);
    }
    assert_int_equal(rc, STORAGE_ENOMEM);
    struct storage_stats s = t_stats(st, T0);
    assert_int_equal(s.evictions, 0);
    assert_int_equal(s.curr_items, n);
    assert_true(s.total_malloced <= 8 * MiB);
    assert_true(n >= 7 * per_seg);
    /* A refused store changed nothing: a second one is refused too. */
    assert_int_equal(s_put(st, 'm', n, nval, 0, 0, T0), STORAGE_ENOMEM);
    assert_int_equal(t_stats(st, T0).curr_items, n);
    t_check(st);

    /* Delete every other item: half of every segment. */
    unsigned deleted = 0;
    for (unsigned i = 0; i < n; i += 2) {
        char k[KEYBUF];
        mkkey(k, 'm', i);
        bool found = false;
        storage_delete(st, k, KEYLEN, storage_hash(k, KEYLEN), 0, T0, &found, NULL, NULL);
        assert_true(found);
        deleted++;
    }
    unsigned m = 0;
    while ((rc = s_put(st, 'r', m, nval, 0, 0, T0)) == 0) {
        m++;
        assert_true(m <= deleted);
    }
    assert_int_equal(rc, STORAGE_ENOMEM);
    s = t_stats(st, T0);
    assert_int_equal(s.evictions, 0);
    /* Compaction gave back nearly all of the deleted room. */
    assert_true(m + 2 * per_seg >= deleted);
    assert_true(s.total_malloced <= 8 * MiB);
    for (unsigned i = 1; i < n; i += 2) {
        s_expect(st, 'm', i, nval, 0, T0);
    }
    for (unsigned i = 0; i < m; i++) {
        s_expect(st, 'r', i, nval, 0, T0);
    }
    assert_int_equal(t_stats(st, T0).curr_items, n - deleted + m);
    t_check(st);
    storage_destroy(&st);
}

/* Regression (failed on bef1f61, fixed since): under -M, once every segment is full of live
 * items, each refused store still compacts full segments, up to
 * SEG_ALLOC_ROUNDS (16) of them, copying every item of each to gain the
 * few bytes at a segment's end, and then fails anyway (about 16 MiB of
 * copies per refused store with a 64 MiB limit). Pins that a refusal
 * copies at most one segment's items. */
static void test_no_evict_refusal_copies_little(void **state)
{
    (void)state;
    struct storage *st = t_create(16 * MiB, 0, true);
    const size_t nval = 1000;
    const unsigned per_seg = (unsigned)(MiB / SPAN(KEYLEN, nval));
    unsigned n = 0;
    while (s_put(st, 'm', n, nval, 0, 0, T0) == 0) {
        n++;
        assert_true(n < 17 * per_seg);
    }
    for (int r = 0; r < 3; r++) {
        uint64_t moved = st->moved;
        assert_int_equal(s_put(st, 'm', n, nval, 0, 0, T0), STORAGE_ENOMEM);
        if (st->moved - moved > per_seg) {
            fail_msg("a refused store under -M copied %llu items (%u per segment)",
                     (unsigned long long)(st->moved - moved), per_seg);
        }
    }
    assert_int_equal(t_stats(st, T0).curr_items, n);
    t_check(st);
    storage_destroy(&st);
}

/* ---- 5. and 6. expiry -------------------------------------------------------------- */

/* Runs storage_maintain() until it reports nothing pending (bounded). */
static void maintain_all(struct storage *st, rel_time_t now)
{
    for (int i = 0; i < 100000 && storage_maintain(st, now); i++) {
    }
    /* One more pass: a slice with nothing left to do must say so. */
    assert_false(storage_maintain(st, now));
}

/* Pins whole-segment expiry: a batch of items with one short exptime,
 * written together, fills whole segments; after it, storage_maintain()
 * frees those segments (the free count rises by them), the crawler takes
 * the expired items that shared segments with survivors, and storing as
 * many bytes again reuses the memory with no eviction. */
static void test_expiry_frees_segments(void **state)
{
    (void)state;
    struct storage *st = t_create(8 * MiB, 0, false);
    const size_t nval = 1000;
    const unsigned per_seg = (unsigned)(MiB / SPAN(KEYLEN, nval));
    const unsigned nsurv = 400;
    const unsigned nbatch = 4 * per_seg;
    for (unsigned i = 0; i < nsurv; i++) {
        s_put_ok(st, 's', i, nval, 0, 0, T0);
    }
    for (unsigned i = 0; i < nbatch; i++) {
        s_put_ok(st, 'e', i, nval, 0, T0 + 10, T0);
    }
    for (unsigned i = nsurv; i < 2 * nsurv; i++) {
        s_put_ok(st, 's', i, nval, 0, 0, T0);
    }
    struct storage_stats s0 = t_stats(st, T0);
    assert_int_equal(s0.curr_items, nbatch + 2 * nsurv);
    assert_int_equal(s0.evictions, 0);
    const uint64_t free0 = s0.slab_global_page_pool;

    /* Before the exptime nothing is reclaimed. */
    maintain_all(st, T0 + 9);
    assert_int_equal(t_stats(st, T0 + 9).curr_items, nbatch + 2 * nsurv);
    assert_int_equal(free_segs(st), free0);

    maintain_all(st, T0 + 20);
    struct storage_stats s = t_stats(st, T0 + 20);
    assert_int_equal(s.curr_items, 2 * nsurv);
    assert_int_equal(s.crawler_reclaimed, nbatch);
    assert_int_equal(s.expired_unfetched, nbatch);
    assert_int_equal(s.evictions, 0);
    /* Three segments held only batch items. */
    assert_true(s.slab_global_page_pool >= free0 + 3);
    assert_true(s.total_malloced <= 8 * MiB);
    /* Reclaimed items were unlinked: a lookup misses, it does not find
     * them expired. */
    s_expect_absent(st, 'e', 0, T0 + 20, STORAGE_MISS);
    s_expect_absent(st, 'e', nbatch - 1, T0 + 20, STORAGE_MISS);
    t_check(st);

    /* As many bytes again: the freed memory is reused, nothing evicted
     * (without the reclaim, the oldest segment's survivors would go). */
    for (unsigned i = 0; i < nbatch; i++) {
        s_put_ok(st, 'f', i, nval, 0, 0, T0 + 20);
    }
    s = t_stats(st, T0 + 20);
    assert_int_equal(s.evictions, 0);
    assert_int_equal(s.curr_items, nbatch + 2 * nsurv);
    assert_true(s.total_malloced <= 8 * MiB);
    for (unsigned i = 0; i < 2 * nsurv; i++) {
        s_expect(st, 's', i, nval, 0, T0 + 20);
    }
    for (unsigned i = 0; i < nbatch; i++) {
        s_expect(st, 'f', i, nval, 0, T0 + 20);
    }
    t_check(st);
    storage_destroy(&st);
}

/* Regression (failed on eba2113, fixed since): at the limit, storage_maintain() evicts a
 * segment ahead of demand before it looks for segments whose items have
 * all expired, so a cache whose memory is full of expired items loses live
 * ones in the background. Pins that reclaiming expired segments comes
 * first: with every usable segment committed and four of them expired,
 * maintenance evicts nothing and every survivor stays. */
static void test_expiry_at_limit_reclaims_before_evicting(void **state)
{
    (void)state;
    struct storage *st = t_create(8 * MiB, 0, false);
    const size_t nval = 1000;
    const unsigned per_seg = (unsigned)(MiB / SPAN(KEYLEN, nval));
    const unsigned nbatch = 4 * per_seg;
    const unsigned nsurv = 3 * per_seg - 10; /* 7 segments in all, just short of full */
    for (unsigned i = 0; i < 2 * per_seg; i++) {
        s_put_ok(st, 's', i, nval, 0, 0, T0);
    }
    for (unsigned i = 0; i < nbatch; i++) {
        s_put_ok(st, 'e', i, nval, 0, T0 + 10, T0);
    }
    for (unsigned i = 2 * per_seg; i < nsurv; i++) {
        s_put_ok(st, 's', i, nval, 0, 0, T0);
    }
    struct storage_stats s = t_stats(st, T0);
    assert_int_equal(s.evictions, 0);
    assert_int_equal(s.total_malloced, 7 * MiB);

    maintain_all(st, T0 + 20);
    s = t_stats(st, T0 + 20);
    if (s.evictions != 0) {
        fail_msg("background maintenance evicted %llu live items while %u expired items "
                 "filled four segments",
                 (unsigned long long)s.evictions, nbatch);
    }
    assert_int_equal(s.curr_items, nsurv);
    assert_int_equal(s.crawler_reclaimed, nbatch);
    for (unsigned i = 0; i < nsurv; i++) {
        s_expect(st, 's', i, nval, 0, T0 + 20);
    }
    t_check(st);
    storage_destroy(&st);
}

/* Pins the crawler on shared segments: expiring items interleaved with
 * items that never expire are removed by storage_maintain() alone (counted
 * in crawler_reclaimed; lookups then miss), and the survivors stay. */
static void test_crawler_mixed_segments(void **state)
{
    (void)state;
    struct storage *st = t_create(16 * MiB, 0, false);
    const size_t nval = 1000;
    const unsigned n = 3000; /* about three segments */
    for (unsigned i = 0; i < n; i++) {
        s_put_ok(st, 'i', i, nval, 0, i % 2 ? T0 + 10 : 0, T0);
    }
    maintain_all(st, T0 + 5);
    assert_int_equal(t_stats(st, T0 + 5).curr_items, n);
    assert_int_equal(t_stats(st, T0 + 5).crawler_reclaimed, 0);

    maintain_all(st, T0 + 10);
    struct storage_stats s = t_stats(st, T0 + 10);
    assert_int_equal(s.curr_items, n / 2);
    assert_int_equal(s.crawler_reclaimed, n / 2);
    assert_int_equal(s.expired_unfetched, n / 2);
    assert_int_equal(s.evictions, 0);
    uint64_t sum = 0;
    for (unsigned id = 1; id <= storage_class_count(st); id++) {
        struct storage_class_stats cs;
        assert_true(storage_get_class_stats(st, id, T0 + 10, &cs));
        sum += cs.crawler_reclaimed;
    }
    assert_int_equal(sum, n / 2);
    for (unsigned i = 0; i < n; i++) {
        if (i % 2) {
            assert_false(s_linked(st, 'i', i, T0 + 10));
            s_expect_absent(st, 'i', i, T0 + 10, STORAGE_MISS);
        } else {
            s_expect(st, 'i', i, nval, 0, T0 + 10);
        }
    }
    t_check(st);
    storage_destroy(&st);
}

/* ---- 7. run-time memory limit --------------------------------------------------------- */

/* Fills a cache of `mib` MiB with unread 1000-byte items past its size;
 * returns the next key number. */
static unsigned fill_past(struct storage *st, size_t mib, unsigned per_seg)
{
    unsigned k = 0;
    for (; k < (mib + 2) * per_seg; k++) {
        s_put_ok(st, 'l', k, 1000, 0, 0, T0);
    }
    struct storage_stats s = t_stats(st, T0);
    assert_true(s.evictions > 0);
    assert_true(s.total_malloced >= (mib - 2) * MiB && s.total_malloced <= mib * MiB);
    return k;
}

/* Pins storage_set_memlimit: lowering the limit below the memory in use
 * keeps the engine consistent, further stores evict until committed memory
 * is within the new limit (freed segments are given back), and raising it
 * lets the cache grow again without evicting. */
static void test_memlimit_lower_raise(void **state)
{
    (void)state;
    struct storage *st = t_create(16 * MiB, 0, false);
    const size_t nval = 1000;
    const size_t span = SPAN(KEYLEN, nval);
    const unsigned per_seg = (unsigned)(MiB / span);
    unsigned k = fill_past(st, 16, per_seg);

    assert_int_equal(storage_set_memlimit(st, 4 * MiB), 0);
    struct storage_stats s = t_stats(st, T0);
    assert_int_equal(s.limit_maxbytes, 4 * MiB);
    assert_true(s.total_malloced > 4 * MiB); /* in use: not freed at once */
    t_check(st);
    for (unsigned i = k - 100; i < k; i++) {
        s_expect(st, 'l', i, nval, 0, T0);
    }
    for (unsigned i = 0; i < 8 * per_seg; i++, k++) {
        s_put_ok(st, 'l', k, nval, 0, 0, T0);
        if (i > 4 * per_seg) {
            assert_true(t_stats(st, T0).total_malloced <= 4 * MiB);
        }
    }
    s = t_stats(st, T0);
    assert_true(s.total_malloced <= 4 * MiB);
    assert_true(s.curr_items * span <= 4 * MiB);
    assert_true(s.curr_items >= per_seg);
    t_check(st);
    for (unsigned i = k - 100; i < k; i++) {
        s_expect(st, 'l', i, nval, 0, T0);
    }

    /* Raised: room for 20 MiB more without an eviction. */
    assert_int_equal(storage_set_memlimit(st, 32 * MiB), 0);
    uint64_t ev = t_stats(st, T0).evictions;
    uint64_t items = t_stats(st, T0).curr_items;
    for (unsigned i = 0; i < 20 * per_seg; i++, k++) {
        s_put_ok(st, 'l', k, nval, 0, 0, T0);
    }
    s = t_stats(st, T0);
    assert_int_equal(s.evictions, ev);
    assert_int_equal(s.curr_items, items + 20 * per_seg);
    assert_true(s.total_malloced > 20 * MiB && s.total_malloced <= 32 * MiB);
    assert_int_equal(s.limit_maxbytes, 32 * MiB);
    t_check(st);
    storage_destroy(&st);
}

/* Regression (failed on bef1f61, fixed since): after the limit is lowered far below what is
 * committed (32 MiB to 4 MiB), the next store fails with STORAGE_ENOMEM
 * although everything is evictable. storage.h keeps ENOMEM for "eviction
 * impossible or -M". Pins that every store after lowering succeeds. */
static void test_memlimit_lowered_far_store_succeeds(void **state)
{
    (void)state;
    struct storage *st = t_create(32 * MiB, 0, false);
    const size_t nval = 1000;
    const unsigned per_seg = (unsigned)(MiB / SPAN(KEYLEN, nval));
    unsigned k = fill_past(st, 32, per_seg);
    assert_int_equal(storage_set_memlimit(st, 4 * MiB), 0);
    for (unsigned i = 0; i < 6 * per_seg; i++, k++) {
        int rc = s_put(st, 'l', k, nval, 0, 0, T0);
        if (rc != 0) {
            fail_msg("store %u after lowering the limit: %s (committed %llu MiB)", i,
                     storage_strerror(rc),
                     (unsigned long long)(t_stats(st, T0).total_malloced / MiB));
        }
    }
    assert_true(t_stats(st, T0).total_malloced <= 4 * MiB);
    t_check(st);
    storage_destroy(&st);
}

/* ---- 8. threads ------------------------------------------------------------------------ */

#define MT_THREADS 4
#define MT_OPS     20000
#define MT_KEYS    6000
#define MT_CTRS    16
#define BLK        32
#define MT_MAXBLK  64

struct mt_shared {
    struct storage *st;
    uint64_t torn;     /* values whose checksum failed */
    uint64_t errors;   /* unexpected status codes */
    uint64_t ctr_incr; /* incr operations issued, all counters */
    uint64_t hits;
};

struct mt_worker {
    struct mt_shared *sh;
    unsigned id;
};

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static uint32_t fnv1a(const char *p, size_t n, uint32_t h)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 16777619u;
    }
    return h;
}

static void hex8(char *dst, uint32_t v)
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 7; i >= 0; i--) {
        dst[i] = digits[v & 15];
        v >>= 4;
    }
}

/* A value is whole 32-byte blocks: 8 hex digits of a seed, 16 bytes made
 * from the seed, and 8 hex digits of a checksum of the first 24 bytes and
 * the key number, so that a block torn, shifted or from another key fails. */
static void mt_block(char *dst, uint32_t seed, unsigned key)
{
    hex8(dst, seed);
    for (int j = 0; j < 16; j++) {
        dst[8 + j] = (char)('A' + (seed >> (j % 8)) % 26);
    }
    hex8(dst + 24, fnv1a(dst, 24, 2166136261u ^ key));
}

static bool mt_value_ok(struct item *it, unsigned key)
{
    const char *v = storage_item_value(it);
    size_t n = storage_item_nbytes(it);
    if (n == 0 || n % BLK != 0) {
        return false;
    }
    for (size_t off = 0; off < n; off += BLK) {
        char want[8];
        hex8(want, fnv1a(v + off, 24, 2166136261u ^ key));
        if (memcmp(want, v + off + 24, 8) != 0) {
            return false;
        }
        char head[9];
        memcpy(head, v + off, 8);
        head[8] = '\0';
        uint32_t seed = (uint32_t)strtoul(head, NULL, 16);
        for (int j = 0; j < 16; j++) {
            if (v[off + 8 + j] != (char)('A' + (seed >> (j % 8)) % 26)) {
                return false;
            }
        }
    }
    return true;
}

static void mt_count(uint64_t *p)
{
    __atomic_fetch_add(p, 1, __ATOMIC_RELAXED);
}

static void mt_store(struct mt_shared *sh, unsigned key, const char *k, unsigned nblk,
                     uint32_t seed, enum storage_op op, rel_time_t exptime, rel_time_t now)
{
    struct item *it = NULL;
    int rc = storage_alloc(sh->st, k, KEYLEN, 0, exptime, (size_t)nblk * BLK, now, &it);
    if (rc != 0) {
        if (rc != STORAGE_ENOMEM) {
            mt_count(&sh->errors);
        }
        return;
    }
    for (unsigned b = 0; b < nblk; b++) {
        mt_block(storage_item_value(it) + b * BLK, seed + b, key);
    }
    enum storage_store_outcome out;
    rc = storage_store(sh->st, it, op, 0, storage_hash(k, KEYLEN), now, &out, NULL);
    if (rc != 0 && rc != STORAGE_ENOMEM && rc != STORAGE_E2BIG) {
        mt_count(&sh->errors);
    }
    storage_release(sh->st, &it);
}

static void *mt_main(void *arg)
{
    struct mt_worker *w = arg;
    struct mt_shared *sh = w->sh;
    uint64_t rs = 0x2545f4914f6cdd1dull * (w->id + 1);
    struct item *held = NULL;
    unsigned held_key = 0;
    int held_for = 0;
    char k[KEYBUF];
    for (unsigned op = 0; op < MT_OPS; op++) {
        uint64_t r = xorshift(&rs);
        rel_time_t now = T0 + op / 2000;
        unsigned key = (unsigned)(r % MT_KEYS);
        mkkey(k, 'w', key);
        uint64_t hv = storage_hash(k, KEYLEN);
        unsigned kind = (unsigned)((r >> 32) % 100);
        if (held != NULL && --held_for <= 0) {
            /* The held bytes did not change meanwhile. */
            if (!mt_value_ok(held, held_key)) {
                mt_count(&sh->torn);
            }
            storage_release(sh->st, &held);
        }
        if (kind < 40) {
            struct item *it = storage_get(sh->st, k, KEYLEN, hv, now, NULL);
            if (it != NULL) {
                mt_count(&sh->hits);
                if (!mt_value_ok(it, key)) {
                    mt_count(&sh->torn);
                }
                if (held == NULL && r % 8 == 0) {
                    held = it;
                    held_key = key;
                    held_for = 16;
                } else {
                    storage_release(sh->st, &it);
                }
            }
        } else if (kind < 65) {
            unsigned nblk = 1 + (unsigned)((r >> 16) % 24);
            rel_time_t exp = (r >> 24) % 8 == 0 ? now + 2 : 0;
            mt_store(sh, key, k, nblk, (uint32_t)(r >> 8), STORAGE_SET, exp, now);
        } else if (kind < 73) {
            bool found;
            storage_delete(sh->st, k, KEYLEN, hv, 0, now, &found, NULL, NULL);
        } else if (kind < 85) {
            /* Append (or now and then prepend) one block, up to a cap. */
            struct item *it = storage_get(sh->st, k, KEYLEN, hv, now, NULL);
            size_t nb = it != NULL ? storage_item_nbytes(it) : 0;
            storage_release(sh->st, &it);
            if (nb < MT_MAXBLK * BLK) {
                mt_store(sh, key, k, 1, (uint32_t)(r >> 12),
                         r % 5 == 0 ? STORAGE_PREPEND : STORAGE_APPEND, 0, now);
            }
        } else if (kind < 97) {
            mkkey(k, 'z', (unsigned)(r % MT_CTRS));
            struct storage_arith a = {.incr = true, .delta = 1, .create = true, .initial = 0};
            enum storage_arith_outcome out;
            uint64_t v = 0;
            mt_count(&sh->ctr_incr);
            int rc = storage_arith(sh->st, k, KEYLEN, storage_hash(k, KEYLEN), &a, now, &out, &v,
                                   NULL, NULL);
            if (rc == 0 &&
                (out != STORAGE_ARITH_OK || v > __atomic_load_n(&sh->ctr_incr, __ATOMIC_RELAXED))) {
                mt_count(&sh->errors);
            } else if (rc != 0 && rc != STORAGE_ENOMEM) {
                mt_count(&sh->errors);
            }
        } else {
            storage_maintain(sh->st, now);
        }
    }
    storage_release(sh->st, &held);
    return NULL;
}

/* Pins thread safety of the segment engine: four threads run set, get,
 * delete, incr, append and prepend on overlapping keys in a 4 MiB cache (so
 * eviction, copy-forward, expiry and the crawler all run at once) while
 * some threads hold references; no read ever sees a torn value, and the
 * invariants hold after. */
static void test_threads_checksummed(void **state)
{
    (void)state;
    struct mt_shared sh = {0};
    sh.st = t_create(4 * MiB, 10, false);
    pthread_t th[MT_THREADS];
    struct mt_worker w[MT_THREADS];
    for (unsigned i = 0; i < MT_THREADS; i++) {
        w[i].sh = &sh;
        w[i].id = i;
        assert_int_equal(pthread_create(&th[i], NULL, mt_main, &w[i]), 0);
    }
    for (unsigned i = 0; i < MT_THREADS; i++) {
        pthread_join(th[i], NULL);
    }
    assert_int_equal(sh.torn, 0);
    assert_int_equal(sh.errors, 0);
    assert_true(sh.hits > 1000);
    t_check(sh.st);
    struct storage_stats s = t_stats(sh.st, T0 + 10);
    assert_true(s.total_malloced <= 4 * MiB);
    assert_true(s.evictions > 0);
    assert_true(sh.st->moved > 0);

    uint64_t present = 0;
    for (unsigned key = 0; key < MT_KEYS; key++) {
        char k[KEYBUF];
        mkkey(k, 'w', key);
        struct item *it = t_get(sh.st, k, T0 + 9, NULL);
        if (it != NULL) {
            present++;
            assert_true(mt_value_ok(it, key));
            storage_release(sh.st, &it);
        }
    }
    uint64_t ctr_sum = 0;
    for (unsigned c = 0; c < MT_CTRS; c++) {
        char k[KEYBUF];
        mkkey(k, 'z', c);
        struct item *it = t_get(sh.st, k, T0 + 9, NULL);
        if (it != NULL) {
            present++;
            char num[32] = {0};
            size_t nb = storage_item_nbytes(it);
            assert_true(nb > 0 && nb < sizeof(num));
            memcpy(num, storage_item_value(it), nb);
            char *end;
            ctr_sum += strtoull(num, &end, 10);
            assert_true(*end == '\0' || *end == ' ');
            storage_release(sh.st, &it);
        }
    }
    assert_true(ctr_sum <= sh.ctr_incr);
    assert_int_equal(present, t_stats(sh.st, T0 + 9).curr_items);
    t_check(sh.st);
    storage_destroy(&sh.st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_and_first_eviction),
        cmocka_unit_test(test_read_item_copied_forward),
        cmocka_unit_test(test_reserve_triggers),
        cmocka_unit_test(test_evict_ahead_when_active_nearly_full),
        cmocka_unit_test(test_one_hit_wonders_and_counters),
        cmocka_unit_test(test_ghost_admits_to_main),
        cmocka_unit_test(test_small_cache_probation_window),
        cmocka_unit_test(test_reference_pins_segment),
        cmocka_unit_test(test_pending_item_pins_segment),
        cmocka_unit_test(test_no_evict_compaction),
        cmocka_unit_test(test_no_evict_refusal_copies_little),
        cmocka_unit_test(test_expiry_frees_segments),
        cmocka_unit_test(test_expiry_at_limit_reclaims_before_evicting),
        cmocka_unit_test(test_crawler_mixed_segments),
        cmocka_unit_test(test_memlimit_lower_raise),
        cmocka_unit_test(test_memlimit_lowered_far_store_succeeds),
        cmocka_unit_test(test_threads_checksummed),
    };
    /* TEST_SEG_FILTER=pattern runs only the matching tests. */
    const char *filter = getenv("TEST_SEG_FILTER");
    if (filter != NULL) {
        cmocka_set_test_filter(filter);
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}

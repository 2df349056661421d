/*
 * test_storage_meta.c - unit tests of the storage calls the meta protocol
 * uses: storage_meta_get (h, l, touch, vivify, recache, stale, win/token),
 * storage_meta_store (modes, append CAS, invalidate), storage_meta_delete
 * (CAS, invalidate), storage_meta_arith (vivify, T/N order, CAS), the binary
 * key mark, and the access time rule shared with storage_get. Time is faked
 * by passing `now` values.
 */
#include "storage_test.h"

#define T0 100

static uint64_t hv_of(const char *key)
{
    return storage_hash(key, strlen(key));
}

/* storage_meta_get with options; returns the item (or NULL) and fills r. */
static struct item *t_mget(struct storage *st, const char *key, const struct storage_mget_opts *o,
                           rel_time_t now, struct storage_mget_result *r)
{
    struct item *it = NULL;
    assert_int_equal(storage_meta_get(st, key, strlen(key), hv_of(key), now, o, r, &it), 0);
    if (it != NULL) {
        assert_int_equal(r->outcome, STORAGE_HIT);
    } else {
        assert_int_not_equal(r->outcome, STORAGE_HIT);
    }
    return it;
}

/* A plain mg: hit facts, then release. Returns whether it hit. */
static bool t_mget_plain(struct storage *st, const char *key, rel_time_t now,
                         struct storage_mget_result *r)
{
    struct storage_mget_opts o = {0};
    struct item *it = t_mget(st, key, &o, now, r);
    bool hit = it != NULL;
    storage_release(st, &it);
    return hit;
}

static rel_time_t t_exptime(struct storage *st, const char *key, rel_time_t now)
{
    struct storage_mget_opts o = {.no_bump = true, .no_win = true};
    struct storage_mget_result r;
    struct item *it = t_mget(st, key, &o, now, &r);
    assert_non_null(it);
    rel_time_t e = storage_item_exptime(it);
    assert_int_equal(e, r.exptime);
    storage_release(st, &it);
    return e;
}

static uint64_t t_cas(struct storage *st, const char *key, rel_time_t now)
{
    struct storage_mget_opts o = {.no_bump = true, .no_win = true};
    struct storage_mget_result r;
    struct item *it = t_mget(st, key, &o, now, &r);
    assert_non_null(it);
    uint64_t cas = storage_item_cas(it);
    storage_release(st, &it);
    return cas;
}

/* ms: allocates key=val and stores it with storage_meta_store. */
static int t_mstore(struct storage *st, const char *key, const char *val, rel_time_t exptime,
                    enum storage_op op, uint64_t cas_in, bool invalidate, bool binary,
                    rel_time_t now, struct storage_mstore_result *r)
{
    struct item *it = NULL;
    size_t nkey = strlen(key);
    size_t nval = strlen(val);
    int rc = storage_alloc(st, key, nkey, 0, exptime, nval, now, &it);
    if (rc != 0) {
        return rc;
    }
    memcpy(storage_item_value(it), val, nval);
    if (binary) {
        storage_item_set_key_binary(it);
    }
    rc = storage_meta_store(st, it, op, cas_in, invalidate, hv_of(key), now, r);
    storage_release(st, &it);
    return rc;
}

/* ---- mg ---------------------------------------------------------------- */

static void test_mget_hit_miss_fetched(void **state)
{
    (void)state;
    struct storage *st = t_create(64 * MiB, 0, false);
    struct storage_mget_result r;

    assert_false(t_mget_plain(st, "a", T0, &r));
    assert_int_equal(r.outcome, STORAGE_MISS);

    t_set(st, "a", "xyz", 0, T0);
    assert_true(t_mget_plain(st, "a", T0, &r));
    assert_false(r.fetched);
    assert_false(r.created || r.stale || r.token_sent || r.win);
    assert_int_equal(r.time, T0);
    assert_int_equal(r.exptime, 0);
    assert_true(t_mget_plain(st, "a", T0 + 1, &r));
    assert_true(r.fetched);

    /* u: neither fetched nor an access. */
    t_set(st, "u", "1", 0, T0);
    struct storage_mget_opts nob = {.no_bump = true};
    struct item *it = t_mget(st, "u", &nob, T0 + 5, &r);
    storage_release(st, &it);
    it = t_mget(st, "u", &nob, T0 + 6, &r);
    assert_false(r.fetched);
    assert_int_equal(r.time, T0);
    storage_release(st, &it);

    /* Expired and flushed keys are reported as such. */
    t_set(st, "e", "1", T0 + 2, T0);
    assert_false(t_mget_plain(st, "e", T0 + 2, &r));
    assert_int_equal(r.outcome, STORAGE_EXPIRED);
    t_set(st, "f", "1", 0, T0);
    storage_flush(st, T0, T0);
    assert_false(t_mget_plain(st, "f", T0, &r));
    assert_int_equal(r.outcome, STORAGE_FLUSHED);
    t_check(st);
    storage_destroy(&st);
}

/* The first fetch after a store leaves the access time; later ones move it
 * (memcached 1.6.18's segmented LRU does the same). get and mg share it. */
static void test_access_time(void **state)
{
    (void)state;
    struct storage *st = t_create(64 * MiB, 0, false);
    struct storage_mget_result r;
    t_set(st, "a", "1", 0, T0);
    assert_true(t_mget_plain(st, "a", T0 + 3, &r)); /* first fetch */
    assert_int_equal(r.time, T0);
    assert_true(t_mget_plain(st, "a", T0 + 5, &r)); /* second: still the store time */
    assert_int_equal(r.time, T0);
    assert_true(t_mget_plain(st, "a", T0 + 9, &r)); /* moved by the second */
    assert_int_equal(r.time, T0 + 5);

    /* storage_get counts the same way. */
    t_set(st, "g", "1", 0, T0);
    struct item *it = t_get(st, "g", T0 + 2, NULL);
    storage_release(st, &it);
    it = t_get(st, "g", T0 + 4, NULL);
    storage_release(st, &it);
    assert_true(t_mget_plain(st, "g", T0 + 7, &r));
    assert_int_equal(r.time, T0 + 4);

    /* Items keep the time's low 16 bits: exact up to 18 hours back. */
    t_set(st, "b", "1", 0, T0 + 50);
    assert_true(t_mget_plain(st, "b", T0 + 50 + 65000, &r));
    assert_int_equal(r.time, T0 + 50);
    assert_true(t_mget_plain(st, "b", T0 + 50 + 65400, &r));
    assert_int_equal(r.time, T0 + 50);
    assert_true(t_mget_plain(st, "b", T0 + 50 + 65403, &r));
    assert_int_equal(r.time, T0 + 50 + 65400);
    /* A stored time a little ahead of `now` (a thread that read the clock
     * just before its tick) reads as `now`. */
    assert_true(t_mget_plain(st, "b", T0 + 50 + 65398, &r));
    assert_int_equal(r.time, T0 + 50 + 65398);

    /* An ADD that finds the key moves the access time, not FETCHED. */
    t_set(st, "add", "1", 0, T0);
    assert_int_equal(t_op(st, "add", "2", STORAGE_ADD, 0, T0 + 20), STORAGE_NOT_STORED);
    assert_true(t_mget_plain(st, "add", T0 + 21, &r));
    assert_int_equal(r.time, T0 + 20);
    assert_false(r.fetched);
    t_check(st);
    storage_destroy(&st);
}

/* A delayed flush still catches items whose access time moved before it. */
static void test_access_time_and_delayed_flush(void **state)
{
    (void)state;
    struct storage *st = t_create(64 * MiB, 0, false);
    struct storage_mget_result r;
    t_set(st, "a", "1", 0, T0);
    t_set(st, "b", "1", 0, T0);
    storage_flush(st, T0 + 10, T0); /* point T0 + 9 */
    assert_true(t_mget_plain(st, "a", T0 + 2, &r));
    assert_true(t_mget_plain(st, "a", T0 + 8, &r)); /* time -> T0 + 8 */
    t_set(st, "c", "1", 0, T0 + 10);                /* stored after the point */
    assert_false(t_mget_plain(st, "a", T0 + 9, &r));
    assert_int_equal(r.outcome, STORAGE_FLUSHED);
    assert_false(t_mget_plain(st, "b", T0 + 12, &r));
    assert_true(t_mget_plain(st, "c", T0 + 12, &r));
    t_check(st);
    storage_destroy(&st);
}

static void test_mget_touch_order(void **state)
{
    (void)state;
    struct storage *st = t_create(64 * MiB, 0, false);
    struct storage_mget_result r;
    t_set(st, "a", "1", T0 + 100, T0);
    struct storage_mget_opts o = {.touch = true, .touch_ttl = T0 + 30, .order = "T"};
    struct item *it = t_mget(st, "a", &o, T0, &r);
    assert_int_equal(r.exptime, T0 + 100); /* before T */
    assert_int_equal(storage_item_exptime(it), T0 + 30);
    assert_false(r.win);
    storage_release(st, &it);
    assert_int_equal(t_exptime(st, "a", T0), T0 + 30);

    /* T without its place in the order does nothing. */
    o.order = "";
    o.touch_ttl = T0 + 60;
    it = t_mget(st, "a", &o, T0, &r);
    storage_release(st, &it);
    assert_int_equal(t_exptime(st, "a", T0), T0 + 30);

    /* A touch on a miss creates nothing. */
    o.order = "T";
    assert_null(t_mget(st, "nope", &o, T0, &r));
    t_check(st);
    storage_destroy(&st);
}

static void test_mget_vivify(void **state)
{
    (void)state;
    struct storage *st = t_create(64 * MiB, 0, false);
    struct storage_mget_result r;
    struct storage_mget_opts o = {.vivify = true, .vivify_ttl = T0 + 30, .order = "N"};
    struct item *it = t_mget(st, "v", &o, T0, &r);
    assert_non_null(it);
    assert_true(r.created);
    assert_true(r.win);
    assert_false(r.fetched);
    assert_false(r.token_sent);
    assert_int_equal(r.exptime, 0);
    assert_int_equal(storage_item_nbytes(it), 0);
    assert_int_equal(storage_item_flags(it), 0);
    assert_int_equal(storage_item_exptime(it), T0 + 30);
    assert_true(storage_item_cas(it) != 0);
    assert_false(storage_item_key_binary(it));
    storage_release(st, &it);

    /* Second fetcher: the item exists, token already sent, no win. */
    it = t_mget(st, "v", &o, T0 + 1, &r);
    assert_false(r.created);
    assert_true(r.token_sent);
    assert_false(r.win);
    assert_true(r.fetched); /* the creating fetch counted */
    assert_int_equal(r.exptime, T0 + 30);
    storage_release(st, &it);

    /* T after N wins for the TTL; T before N loses. */
    struct storage_mget_opts tn = {
        .vivify = true, .vivify_ttl = T0 + 30, .touch = true, .touch_ttl = T0 + 60, .order = "NT"};
    it = t_mget(st, "v2", &tn, T0, &r);
    assert_int_equal(storage_item_exptime(it), T0 + 60);
    assert_true(r.win);
    storage_release(st, &it);
    tn.order = "TN";
    it = t_mget(st, "v3", &tn, T0, &r);
    assert_int_equal(storage_item_exptime(it), T0 + 30);
    storage_release(st, &it);

    /* N missing from the order (cut by an error): created, no TTL, and with
     * no_win no token. */
    struct storage_mget_opts cut = {.vivify = true, .vivify_ttl = T0 + 30, .no_win = true};
    it = t_mget(st, "v4", &cut, T0, &r);
    assert_true(r.created);
    assert_false(r.win);
    assert_int_equal(storage_item_exptime(it), 0);
    storage_release(st, &it);
    assert_true(t_mget_plain(st, "v4", T0, &r));
    assert_false(r.token_sent);
    t_check(st);
    storage_destroy(&st);
}

static void test_mget_recache(void **state)
{
    (void)state;
    struct storage *st = t_create(64 * MiB, 0, false);
    struct storage_mget_result r;
    t_set(st, "r", "1", T0 + 100, T0);
    struct storage_mget_opts o = {.recache = true, .recache_at = T0 + 30, .order = "R"};
    struct item *it = t_mget(st, "r", &o, T0, &r);
    assert_false(r.win); /* 100 left, threshold 30 */
    storage_release(st, &it);
    o.recache_at = T0 + 200;
    it = t_mget(st, "r", &o, T0, &r);
    assert_true(r.win);
    assert_false(r.token_sent);
    storage_release(st, &it);
    it = t_mget(st, "r", &o, T0, &r);
    assert_false(r.win);
    assert_true(r.token_sent);
    storage_release(st, &it);

    /* No TTL: never wins by R. */
    t_set(st, "n", "1", 0, T0);
    it = t_mget(st, "n", &o, T0, &r);
    assert_false(r.win);
    storage_release(st, &it);

    /* R sees the exptime as an earlier T left it. */
    t_set(st, "rt", "1", T0 + 100, T0);
    struct storage_mget_opts rt = {
        .recache = true, .recache_at = T0 + 50, .touch = true, .touch_ttl = T0 + 40, .order = "RT"};
    it = t_mget(st, "rt", &rt, T0, &r);
    assert_false(r.win);
    storage_release(st, &it);
    rt.order = "TR";
    it = t_mget(st, "rt", &rt, T0, &r);
    assert_true(r.win);
    storage_release(st, &it);

    /* A store clears the token. */
    t_set(st, "r", "2", T0 + 100, T0);
    it = t_mget(st, "r", &o, T0, &r);
    assert_true(r.win);
    assert_false(r.token_sent);
    storage_release(st, &it);
    t_check(st);
    storage_destroy(&st);
}

/* ---- md ---------------------------------------------------------------- */

static void test_mdelete(void **state)
{
    (void)state;
    struct storage *st = t_create(64 * MiB, 0, false);
    struct storage_mdelete_result r;
    struct storage_mdelete_opts plain = {0};
    assert_int_equal(storage_meta_delete(st, "a", 1, hv_of("a"), T0, &plain, &r), 0);
    assert_int_equal(r.outcome, STORAGE_MDEL_NOT_FOUND);
    assert_int_equal(r.lookup, STORAGE_MISS);
    assert_int_equal(r.clsid, 0);

    uint64_t cas = t_set(st, "a", "1", 0, T0);
    /* C0 is compared too (unlike storage_delete). */
    struct storage_mdelete_opts c0 = {.has_cas = true, .cas_in = 0};
    assert_int_equal(storage_meta_delete(st, "a", 1, hv_of("a"), T0, &c0, &r), 0);
    assert_int_equal(r.outcome, STORAGE_MDEL_EXISTS);
    assert_true(r.clsid != 0);
    assert_true(t_present(st, "a", T0));
    struct storage_mdelete_opts cm = {.has_cas = true, .cas_in = cas};
    assert_int_equal(storage_meta_delete(st, "a", 1, hv_of("a"), T0, &cm, &r), 0);
    assert_int_equal(r.outcome, STORAGE_MDEL_DELETED);
    assert_false(t_present(st, "a", T0));

    /* Expired: not found, reported as expired. */
    t_set(st, "e", "1", T0 + 1, T0);
    assert_int_equal(storage_meta_delete(st, "e", 1, hv_of("e"), T0 + 1, &plain, &r), 0);
    assert_int_equal(r.outcome, STORAGE_MDEL_NOT_FOUND);
    assert_int_equal(r.lookup, STORAGE_EXPIRED);
    t_check(st);
    storage_destroy(&st);
}

static void test_mdelete_invalidate(void **state)
{
    (void)state;
    struct storage *st = t_create(64 * MiB, 0, false);
    struct storage_mget_result g;
    struct storage_mdelete_result r;
    uint64_t cas = t_set(st, "s", "val", T0 + 100, T0);
    /* Hand out a token first: invalidation clears it. */
    struct storage_mget_opts rec = {.recache = true, .recache_at = T0 + 1000, .order = "R"};
    struct item *it = t_mget(st, "s", &rec, T0, &g);
    assert_true(g.win);
    storage_release(st, &it);

    struct storage_mdelete_opts inv = {.invalidate = true, .touch = true, .touch_ttl = T0 + 30};
    assert_int_equal(storage_meta_delete(st, "s", 1, hv_of("s"), T0 + 1, &inv, &r), 0);
    assert_int_equal(r.outcome, STORAGE_MDEL_INVALIDATED);
    uint64_t cas2 = t_cas(st, "s", T0 + 1);
    assert_true(cas2 > cas);
    assert_int_equal(t_exptime(st, "s", T0 + 1), T0 + 30);
    t_expect(st, "s", "val", T0 + 1);

    /* The next mg sees stale without a token: it wins, the one after sees Z X. */
    assert_true(t_mget_plain(st, "s", T0 + 2, &g));
    assert_true(g.stale);
    assert_false(g.token_sent);
    assert_true(g.win);
    assert_true(t_mget_plain(st, "s", T0 + 2, &g));
    assert_true(g.stale);
    assert_true(g.token_sent);
    assert_false(g.win);

    /* Without T the TTL stays. */
    struct storage_mdelete_opts inv2 = {.invalidate = true};
    assert_int_equal(storage_meta_delete(st, "s", 1, hv_of("s"), T0 + 3, &inv2, &r), 0);
    assert_int_equal(t_exptime(st, "s", T0 + 3), T0 + 30);
    assert_true(t_mget_plain(st, "s", T0 + 3, &g));
    assert_true(g.win); /* token cleared again */

    /* CAS mismatch: nothing changes. */
    struct storage_mdelete_opts bad = {.invalidate = true, .has_cas = true, .cas_in = 1};
    uint64_t before = t_cas(st, "s", T0 + 3);
    assert_int_equal(storage_meta_delete(st, "s", 1, hv_of("s"), T0 + 3, &bad, &r), 0);
    assert_int_equal(r.outcome, STORAGE_MDEL_EXISTS);
    assert_int_equal(t_cas(st, "s", T0 + 3), before);

    /* A plain set makes it fresh again. */
    t_set(st, "s", "new", 0, T0 + 4);
    assert_true(t_mget_plain(st, "s", T0 + 4, &g));
    assert_false(g.stale || g.token_sent || g.win);
    t_check(st);
    storage_destroy(&st);
}

/* ---- ms ---------------------------------------------------------------- */

static void test_mstore_modes(void **state)
{
    (void)state;
    struct storage *st = t_create(64 * MiB, 0, false);
    struct storage_mstore_result r;
    assert_int_equal(t_mstore(st, "a", "x", 0, STORAGE_APPEND, 0, false, false, T0, &r), 0);
    assert_int_equal(r.outcome, STORAGE_NOT_STORED);
    assert_int_equal(r.cas, 0);
    assert_int_equal(r.lookup, STORAGE_MISS);
    assert_int_equal(t_mstore(st, "a", "x", 0, STORAGE_CAS, 0, false, false, T0, &r), 0);
    assert_int_equal(r.outcome, STORAGE_NOT_FOUND);
    assert_int_equal(t_mstore(st, "a", "ab", 0, STORAGE_SET, 0, false, false, T0, &r), 0);
    assert_int_equal(r.outcome, STORAGE_STORED);
    uint64_t cas = r.cas;
    assert_true(cas != 0);
    assert_int_equal(t_cas(st, "a", T0), cas);

    /* C0 on a CAS is compared (mismatch); on append it means no check. */
    assert_int_equal(t_mstore(st, "a", "z", 0, STORAGE_CAS, 0, false, false, T0, &r), 0);
    assert_int_equal(r.outcome, STORAGE_EXISTS);
    assert_int_equal(r.lookup, STORAGE_HIT);
    assert_int_equal(t_mstore(st, "a", "c", 0, STORAGE_APPEND, 0, false, false, T0, &r), 0);
    assert_int_equal(r.outcome, STORAGE_STORED);
    t_expect(st, "a", "abc", T0);
    uint64_t cas2 = r.cas;
    assert_true(cas2 > cas);
    assert_int_equal(t_mstore(st, "a", "0", 0, STORAGE_PREPEND, cas, false, false, T0, &r), 0);
    assert_int_equal(r.outcome, STORAGE_EXISTS);
    t_expect(st, "a", "abc", T0);
    assert_int_equal(t_mstore(st, "a", "0", 0, STORAGE_PREPEND, cas2, false, false, T0, &r), 0);
    assert_int_equal(r.outcome, STORAGE_STORED);
    t_expect(st, "a", "0abc", T0);

    /* ADD ignores the CAS; REPLACE needs the key. */
    assert_int_equal(t_mstore(st, "a", "n", 0, STORAGE_ADD, 12345, false, false, T0, &r), 0);
    assert_int_equal(r.outcome, STORAGE_NOT_STORED);
    assert_int_equal(t_mstore(st, "b", "n", 0, STORAGE_ADD, 12345, false, false, T0, &r), 0);
    assert_int_equal(r.outcome, STORAGE_STORED);
    assert_int_equal(t_mstore(st, "c", "n", 0, STORAGE_REPLACE, 0, false, false, T0, &r), 0);
    assert_int_equal(r.outcome, STORAGE_NOT_STORED);
    assert_int_equal(t_mstore(st, "b", "r", 0, STORAGE_REPLACE, 0, false, false, T0, &r), 0);
    assert_int_equal(r.outcome, STORAGE_STORED);
    t_expect(st, "b", "r", T0);

    /* A linked item is refused. */
    struct item *it = t_get(st, "b", T0, NULL);
    assert_int_equal(storage_meta_store(st, it, STORAGE_SET, 0, false, hv_of("b"), T0, &r),
                     STORAGE_EINVAL);
    storage_release(st, &it);
    t_check(st);
    storage_destroy(&st);
}

static void test_mstore_invalidate(void **state)
{
    (void)state;
    struct storage *st = t_create(64 * MiB, 0, false);
    struct storage_mstore_result r;
    struct storage_mget_result g;
    assert_int_equal(t_mstore(st, "k", "v1", T0 + 100, STORAGE_SET, 0, false, false, T0, &r), 0);
    uint64_t cas = r.cas;
    /* Hand out the token. */
    struct storage_mget_opts rec = {.recache = true, .recache_at = T0 + 1000, .order = "R"};
    struct item *it = t_mget(st, "k", &rec, T0, &g);
    assert_true(g.win);
    storage_release(st, &it);

    /* A higher CAS is EXISTS even with invalidate. */
    assert_int_equal(t_mstore(st, "k", "v2", 0, STORAGE_CAS, cas + 5, true, false, T0, &r), 0);
    assert_int_equal(r.outcome, STORAGE_EXISTS);
    assert_false(r.stale);
    /* A lower one stores, stale, old TTL, token kept. */
    assert_int_equal(t_mstore(st, "k", "v2", T0 + 5, STORAGE_CAS, cas - 1, true, false, T0 + 1, &r),
                     0);
    assert_int_equal(r.outcome, STORAGE_STORED);
    assert_true(r.stale);
    assert_true(r.cas > cas);
    t_expect(st, "k", "v2", T0 + 1);
    assert_int_equal(t_exptime(st, "k", T0 + 1), T0 + 100);
    assert_true(t_mget_plain(st, "k", T0 + 1, &g));
    assert_true(g.stale);
    assert_true(g.token_sent);
    assert_false(g.win);

    /* Without invalidate the same lower CAS is EXISTS. */
    assert_int_equal(t_mstore(st, "k", "v3", 0, STORAGE_CAS, 1, false, false, T0 + 1, &r), 0);
    assert_int_equal(r.outcome, STORAGE_EXISTS);

    /* An equal CAS with invalidate is a plain CAS store: fresh item. */
    uint64_t now_cas = t_cas(st, "k", T0 + 1);
    assert_int_equal(t_mstore(st, "k", "v4", 0, STORAGE_CAS, now_cas, true, false, T0 + 1, &r), 0);
    assert_int_equal(r.outcome, STORAGE_STORED);
    assert_false(r.stale);
    assert_true(t_mget_plain(st, "k", T0 + 1, &g));
    assert_false(g.stale || g.token_sent);
    assert_int_equal(t_exptime(st, "k", T0 + 1), 0);

    /* Stale without a token sent: the next mg wins. */
    assert_int_equal(t_mstore(st, "k", "v5", 0, STORAGE_CAS, 1, true, false, T0 + 2, &r), 0);
    assert_true(r.stale);
    assert_true(t_mget_plain(st, "k", T0 + 2, &g));
    assert_true(g.stale);
    assert_true(g.win);
    t_check(st);
    storage_destroy(&st);
}

static void test_key_binary_mark(void **state)
{
    (void)state;
    struct storage *st = t_create(64 * MiB, 0, false);
    struct storage_mstore_result r;
    struct storage_mget_result g;
    assert_int_equal(t_mstore(st, "bk", "1", 0, STORAGE_SET, 0, false, true, T0, &r), 0);
    struct storage_mget_opts o = {0};
    struct item *it = t_mget(st, "bk", &o, T0, &g);
    assert_true(storage_item_key_binary(it));
    storage_release(st, &it);

    /* md I and an in-place incr keep the mark. */
    struct storage_mdelete_opts inv = {.invalidate = true};
    struct storage_mdelete_result d;
    assert_int_equal(storage_meta_delete(st, "bk", 2, hv_of("bk"), T0, &inv, &d), 0);
    struct storage_marith_opts inc = {.a = {.incr = true, .delta = 1}};
    struct storage_marith_result a;
    assert_int_equal(storage_meta_arith(st, "bk", 2, hv_of("bk"), T0, &inc, &a), 0);
    it = t_mget(st, "bk", &o, T0, &g);
    assert_true(storage_item_key_binary(it));
    storage_release(st, &it);

    /* A value that grows is a new item: no mark (as in 1.6.18). */
    inc.a.delta = 100;
    assert_int_equal(storage_meta_arith(st, "bk", 2, hv_of("bk"), T0, &inc, &a), 0);
    it = t_mget(st, "bk", &o, T0, &g);
    assert_false(storage_item_key_binary(it));
    storage_release(st, &it);

    /* Append builds a new item without the mark; a plain set drops it. */
    assert_int_equal(t_mstore(st, "bk", "1", 0, STORAGE_SET, 0, false, true, T0, &r), 0);
    assert_int_equal(t_mstore(st, "bk", "2", 0, STORAGE_APPEND, 0, false, true, T0, &r), 0);
    it = t_mget(st, "bk", &o, T0, &g);
    assert_false(storage_item_key_binary(it));
    storage_release(st, &it);
    assert_int_equal(t_mstore(st, "bk", "1", 0, STORAGE_SET, 0, false, true, T0, &r), 0);
    t_set(st, "bk", "plain", 0, T0);
    it = t_mget(st, "bk", &o, T0, &g);
    assert_false(storage_item_key_binary(it));
    storage_release(st, &it);
    t_check(st);
    storage_destroy(&st);
}

/* ---- ma ---------------------------------------------------------------- */

static void test_marith(void **state)
{
    (void)state;
    struct storage *st = t_create(64 * MiB, 0, false);
    struct storage_marith_result r;
    struct storage_marith_opts o = {.a = {.incr = true, .delta = 1}};
    assert_int_equal(storage_meta_arith(st, "n", 1, hv_of("n"), T0, &o, &r), 0);
    assert_int_equal(r.outcome, STORAGE_ARITH_NOT_FOUND);
    assert_false(r.created);
    assert_int_equal(r.lookup, STORAGE_MISS);

    /* N: create with J, no delta applied, TTL from N. */
    o.a.create = true;
    o.a.initial = 10;
    o.a.exptime = 12345; /* ignored */
    o.vivify_ttl = T0 + 30;
    o.order = "N";
    assert_int_equal(storage_meta_arith(st, "n", 1, hv_of("n"), T0, &o, &r), 0);
    assert_int_equal(r.outcome, STORAGE_ARITH_OK);
    assert_true(r.created);
    assert_int_equal(r.value, 10);
    assert_int_equal(r.exptime, 0);
    assert_int_equal(r.clsid, 0);
    assert_int_equal(r.cas, t_cas(st, "n", T0));
    t_expect(st, "n", "10", T0);
    assert_int_equal(t_exptime(st, "n", T0), T0 + 30);

    /* Present: the delta applies, N does not touch the TTL. */
    o.vivify_ttl = T0 + 99;
    o.a.delta = 5;
    assert_int_equal(storage_meta_arith(st, "n", 1, hv_of("n"), T0, &o, &r), 0);
    assert_false(r.created);
    assert_int_equal(r.value, 15);
    assert_int_equal(r.exptime, T0 + 30);
    assert_true(r.clsid != 0);
    assert_int_equal(t_exptime(st, "n", T0), T0 + 30);

    /* T sets the TTL after the operation. */
    o.touch = true;
    o.touch_ttl = T0 + 60;
    o.order = "NT";
    o.a.incr = false;
    o.a.delta = 20;
    assert_int_equal(storage_meta_arith(st, "n", 1, hv_of("n"), T0, &o, &r), 0);
    assert_int_equal(r.value, 0);
    assert_int_equal(r.exptime, T0 + 30);
    assert_int_equal(t_exptime(st, "n", T0), T0 + 60);

    /* On a created item the later of T and N wins. */
    o.order = "NT";
    assert_int_equal(storage_meta_arith(st, "m1", 2, hv_of("m1"), T0, &o, &r), 0);
    assert_true(r.created);
    assert_int_equal(t_exptime(st, "m1", T0), T0 + 60);
    o.order = "TN";
    assert_int_equal(storage_meta_arith(st, "m2", 2, hv_of("m2"), T0, &o, &r), 0);
    assert_int_equal(t_exptime(st, "m2", T0), T0 + 99);

    /* CAS: 0 means no check; a mismatch changes nothing. */
    struct storage_marith_opts c = {.a = {.incr = true, .delta = 1, .cas_in = 1}};
    assert_int_equal(storage_meta_arith(st, "n", 1, hv_of("n"), T0, &c, &r), 0);
    assert_int_equal(r.outcome, STORAGE_ARITH_EXISTS);
    t_expect(st, "n", "0 ", T0); /* rewritten in place, space-padded */
    c.a.cas_in = t_cas(st, "n", T0);
    assert_int_equal(storage_meta_arith(st, "n", 1, hv_of("n"), T0, &c, &r), 0);
    assert_int_equal(r.outcome, STORAGE_ARITH_OK);
    assert_int_equal(r.value, 1);
    assert_true(r.cas > c.a.cas_in);

    /* Non-numeric. */
    t_set(st, "s", "abc", 0, T0);
    assert_int_equal(storage_meta_arith(st, "s", 1, hv_of("s"), T0, &o, &r), 0);
    assert_int_equal(r.outcome, STORAGE_ARITH_NON_NUMERIC);
    t_expect(st, "s", "abc", T0);

    /* An incr moves the access time, and does not count as a fetch. */
    t_set(st, "t", "5", 0, T0);
    struct storage_marith_opts p = {.a = {.incr = true, .delta = 1}};
    assert_int_equal(storage_meta_arith(st, "t", 1, hv_of("t"), T0 + 7, &p, &r), 0);
    struct storage_mget_result g;
    assert_true(t_mget_plain(st, "t", T0 + 8, &g));
    assert_int_equal(g.time, T0 + 7);
    assert_false(g.fetched);
    t_check(st);
    storage_destroy(&st);
}

static void test_marith_vivify_nomem(void **state)
{
    (void)state;
    struct storage_options opts;
    storage_options_default(&opts);
    opts.maxbytes = 1 * MiB;
    opts.no_evict = true;
    struct storage *st = NULL;
    assert_int_equal(storage_create(&st, &opts), 0);
    /* Fill the one page with items of the smallest class. */
    char key[32];
    int i = 0;
    for (;; i++) {
        snprintf(key, sizeof(key), "f%d", i);
        enum storage_store_outcome out;
        if (t_store(st, key, "1", 1, 0, 0, STORAGE_SET, 0, T0, &out, NULL) != 0) {
            break;
        }
    }
    assert_true(i > 100);
    struct storage_marith_opts o = {.a = {.incr = true, .delta = 1, .create = true}};
    struct storage_marith_result r;
    assert_int_equal(storage_meta_arith(st, "zz", 2, hv_of("zz"), T0, &o, &r), STORAGE_ENOMEM);
    assert_int_equal(r.outcome, STORAGE_ARITH_NOT_FOUND);
    assert_false(r.created);

    struct storage_mget_opts v = {.vivify = true, .order = "N"};
    struct storage_mget_result g;
    struct item *it = NULL;
    assert_int_equal(storage_meta_get(st, "zz", 2, hv_of("zz"), T0, &v, &g, &it), STORAGE_ENOMEM);
    assert_null(it);
    assert_int_equal(g.outcome, STORAGE_MISS);
    t_check(st);
    storage_destroy(&st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mget_hit_miss_fetched),
        cmocka_unit_test(test_access_time),
        cmocka_unit_test(test_access_time_and_delayed_flush),
        cmocka_unit_test(test_mget_touch_order),
        cmocka_unit_test(test_mget_vivify),
        cmocka_unit_test(test_mget_recache),
        cmocka_unit_test(test_mdelete),
        cmocka_unit_test(test_mdelete_invalidate),
        cmocka_unit_test(test_mstore_modes),
        cmocka_unit_test(test_mstore_invalidate),
        cmocka_unit_test(test_key_binary_mark),
        cmocka_unit_test(test_marith),
        cmocka_unit_test(test_marith_vivify_nomem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * walk.c - visiting every live item, for the dump commands ("lru_crawler
 * metadump", "lru_crawler mgdump", "stats cachedump").
 *
 * The walk goes one hash stripe at a time. A stripe lock covers every
 * bucket whose index has its low bits, in the current table and, while the
 * table grows, in the old one too (see htab.c), and an item's bucket never
 * leaves its stripe. So holding one stripe lock gives a stable view of
 * exactly the items whose hash falls in that stripe, whatever the state of
 * the growth, and walking the stripes 0..STORAGE_STRIPES-1 visits every
 * item that stays linked during the whole walk exactly once. Items stored or
 * removed while the walk is under way may or may not be seen, as with
 * memcached's crawler.
 *
 * The callback runs under the stripe lock: it must copy what it needs and
 * must not call back into the storage engine.
 */
#include "storage_int.h"

unsigned storage_walk_parts(void)
{
    return STORAGE_STRIPES;
}

static size_t walk_chain(struct storage *st, struct item *it, rel_time_t now, storage_walk_fn fn,
                         void *ctx)
{
    size_t n = 0;
    for (; it != NULL; it = item_at(st, *item_hnextp(it))) {
        if (item_state(st, it, now) != ITEM_ALIVE) {
            continue;
        }
        fn(ctx, it);
        n++;
    }
    return n;
}

size_t storage_walk(struct storage *st, unsigned part, rel_time_t now, storage_walk_fn fn,
                    void *ctx)
{
    if (part >= STORAGE_STRIPES) {
        return 0;
    }
    pthread_mutex_t *m = &st->stripes[part].lock;
    pthread_mutex_lock(m);
    size_t n = 0;
    uint64_t size = (uint64_t)1 << st->ht_power;
    for (uint64_t b = part; b < size; b += STORAGE_STRIPES) {
        n += walk_chain(st, item_at(st, st->ht[b]), now, fn, ctx);
    }
    if (st->ht_expanding) {
        /* Buckets below ht_cursor have moved and are empty. */
        uint64_t oldsize = (uint64_t)1 << st->ht_old_power;
        for (uint64_t b = part; b < oldsize; b += STORAGE_STRIPES) {
            n += walk_chain(st, item_at(st, st->ht_old[b]), now, fn, ctx);
        }
    }
    pthread_mutex_unlock(m);
    return n;
}

/* ---- the expiry crawler ---------------------------------------------------- */

/* Stripes the crawler walks per storage_maintain() call. */
#define CRAWL_STRIPES 16u

static void crawl_chain(struct storage *st, uint32_t *link, rel_time_t now)
{
    while (*link != 0) {
        struct item *it = item_at(st, *link);
        if (item_state(st, it, now) != ITEM_ALIVE) {
            seg_count_dead(st, it, true);
            /* Unlinking rewrites *link to the next item. */
            item_unlink_locked(st, it, storage_hash(item_key(it), item_nkey(it)));
            continue;
        }
        rel_time_t exp = item_exptime(it);
        if (exp != 0 && (st->pass_min == 0 || exp < st->pass_min)) {
            st->pass_min = exp;
        }
        link = item_hnextp(it);
    }
}

bool crawl_step(struct storage *st, rel_time_t now)
{
    if (!st->crawling) {
        rel_time_t hint = __atomic_load_n(&st->exp_hint, __ATOMIC_RELAXED);
        rel_time_t fl = __atomic_load_n(&st->crawl_flush_at, __ATOMIC_RELAXED);
        bool due = (hint != 0 && hint <= now) || (fl != 0 && fl <= now);
        if (!due) {
            return false;
        }
        st->crawling = true;
        st->crawl_stripe = 0;
        st->pass_min = 0;
        __atomic_store_n(&st->exp_hint, 0, __ATOMIC_RELAXED);
        if (fl != 0 && fl <= now) {
            __atomic_compare_exchange_n(&st->crawl_flush_at, &fl, 0, false, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED);
        }
    }
    for (unsigned n = 0; n < CRAWL_STRIPES && st->crawl_stripe < STORAGE_STRIPES; n++) {
        unsigned part = st->crawl_stripe++;
        pthread_mutex_t *m = &st->stripes[part].lock;
        pthread_mutex_lock(m);
        uint64_t size = (uint64_t)1 << st->ht_power;
        for (uint64_t b = part; b < size; b += STORAGE_STRIPES) {
            crawl_chain(st, &st->ht[b], now);
        }
        if (st->ht_expanding) {
            uint64_t oldsize = (uint64_t)1 << st->ht_old_power;
            for (uint64_t b = part; b < oldsize; b += STORAGE_STRIPES) {
                crawl_chain(st, &st->ht_old[b], now);
            }
        }
        pthread_mutex_unlock(m);
    }
    if (st->crawl_stripe < STORAGE_STRIPES) {
        return true;
    }
    st->crawling = false;
    /* What this pass left behind expires next; items noted meanwhile are in
     * exp_hint already. */
    if (st->pass_min != 0) {
        exp_hint_lower(st, st->pass_min);
    }
    return false;
}

rel_time_t storage_item_atime(const struct item *it, rel_time_t now)
{
    return item_time(it, now);
}

bool storage_item_fetched(const struct item *it)
{
    return (item_iflags(it) & ITEM_FETCHED) != 0;
}

/* ---- restoring saved items --------------------------------------------- */

int storage_restore(struct storage *st, struct item *it, uint64_t cas, uint64_t hv, rel_time_t now,
                    bool *stored)
{
    enum storage_store_outcome out = STORAGE_NOT_STORED;
    *stored = false;
    /* Saved items were in the cache before: straight to the main queue. (A
     * linked item is refused by storage_store; its flag must not change.) */
    if (!(item_iflags(it) & ITEM_LINKED)) {
        __atomic_fetch_or(item_iflagsp(it), ITEM_MAIN, __ATOMIC_RELAXED);
    }
    int rc = storage_store(st, it, STORAGE_SET, 0, hv, now, &out, NULL);
    if (rc != 0 || out != STORAGE_STORED) {
        return rc;
    }
    *stored = true;
    if (cas == 0 || !st->opts.use_cas) {
        return 0;
    }
    pthread_mutex_t *m = stripe_lock_of(st, hv);
    pthread_mutex_lock(m);
    if (item_iflags(it) & ITEM_LINKED) {
        item_set_cas(it, cas);
        seg_note_item(st, it);
    }
    pthread_mutex_unlock(m);
    /* CAS values handed out from now on stay above every restored one. */
    uint64_t next = __atomic_load_n(&st->next_cas, __ATOMIC_RELAXED);
    while (next <= cas && !__atomic_compare_exchange_n(&st->next_cas, &next, cas + 1, false,
                                                       __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    return 0;
}

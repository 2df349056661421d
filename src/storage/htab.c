/*
 * htab.c - the storage engine's hash table: chained, power-of-two buckets,
 * guarded by STORAGE_STRIPES stripe locks picked by the low bits of the hash.
 *
 * The table never has fewer buckets than there are stripes, so every bucket
 * (and, while growing, an old bucket together with the two new buckets it
 * splits into) is covered by exactly one stripe lock.
 *
 * Growth is incremental: htab_maintain() allocates a table twice the size,
 * switches to it with every stripe lock held for a moment, then moves a
 * bounded batch of old buckets per call, each under its stripe lock.
 * ht_cursor counts the old buckets already moved: a lookup for hash hv uses
 * the old table when (hv & oldmask) >= ht_cursor, else the new one. Both
 * cases are stable while the caller holds the stripe lock, because the
 * bucket is only moved under that lock. When every old bucket has moved, the
 * old table is dropped, again with all stripe locks held for a moment. No
 * caller ever waits for a whole-table rehash.
 */
#include <stdlib.h>
#include <string.h>

#include "storage_int.h"

/* Old buckets moved per htab_maintain() call. */
#define HTAB_MOVE_BATCH 1024u

int htab_setup(struct storage *st, unsigned power)
{
    st->ht = calloc((size_t)1 << power, sizeof(*st->ht));
    if (st->ht == NULL) {
        return STORAGE_ENOMEM;
    }
    st->ht_power = power;
    st->ht_old = NULL;
    st->ht_old_power = 0;
    st->ht_expanding = false;
    st->ht_cursor = 0;
    return 0;
}

void htab_teardown(struct storage *st)
{
    free(st->ht);
    free(st->ht_old);
    st->ht = NULL;
    st->ht_old = NULL;
}

static uint32_t *htab_bucket(struct storage *st, uint64_t hv)
{
    if (st->ht_expanding) {
        uint64_t ob = hv & (((uint64_t)1 << st->ht_old_power) - 1);
        if (ob >= __atomic_load_n(&st->ht_cursor, __ATOMIC_ACQUIRE)) {
            return &st->ht_old[ob];
        }
    }
    return &st->ht[hv & (((uint64_t)1 << st->ht_power) - 1)];
}

struct item *htab_find(struct storage *st, const char *key, size_t nkey, uint64_t hv)
{
    for (struct item *it = item_at(st, *htab_bucket(st, hv)); it != NULL;
         it = item_at(st, *item_hnextp(it))) {
        if (item_nkey(it) == nkey && memcmp(item_key(it), key, nkey) == 0) {
            return it;
        }
    }
    return NULL;
}

void htab_insert(struct storage *st, struct item *it, uint64_t hv)
{
    uint32_t *b = htab_bucket(st, hv);
    *item_hnextp(it) = *b;
    *b = item_ref(st, it);
}

/* The link that points at `it` (the bucket or a predecessor's h_next). */
static uint32_t *htab_link_of(struct storage *st, struct item *it, uint64_t hv)
{
    uint32_t ref = item_ref(st, it);
    uint32_t *pp = htab_bucket(st, hv);
    while (*pp != 0 && *pp != ref) {
        pp = item_hnextp(item_at(st, *pp));
    }
    return *pp == ref ? pp : NULL;
}

void htab_remove(struct storage *st, struct item *it, uint64_t hv)
{
    uint32_t *pp = htab_link_of(st, it, hv);
    if (pp != NULL) {
        *pp = *item_hnextp(it);
    }
    *item_hnextp(it) = 0;
}

void htab_replace(struct storage *st, struct item *from, struct item *to, uint64_t hv)
{
    uint32_t *pp = htab_link_of(st, from, hv);
    *item_hnextp(to) = *item_hnextp(from);
    if (pp != NULL) {
        *pp = item_ref(st, to);
    }
    *item_hnextp(from) = 0;
}

void htab_lock_all(struct storage *st)
{
    for (unsigned i = 0; i < STORAGE_STRIPES; i++) {
        pthread_mutex_lock(&st->stripes[i].lock);
    }
}

void htab_unlock_all(struct storage *st)
{
    for (unsigned i = STORAGE_STRIPES; i > 0; i--) {
        pthread_mutex_unlock(&st->stripes[i - 1].lock);
    }
}

static uint64_t htab_items(struct storage *st)
{
    return __atomic_load_n(&st->curr_items, __ATOMIC_RELAXED);
}

/* Starts an expansion if the load factor passed 1.5; returns whether it did. */
static bool htab_start_expand(struct storage *st)
{
    if (!st->opts.hash_expand || st->ht_power >= STORAGE_HASHPOWER_MAX) {
        return false;
    }
    uint64_t buckets = (uint64_t)1 << st->ht_power;
    if (htab_items(st) <= buckets + buckets / 2) {
        return false;
    }
    /* Allocated outside the locks: calloc of a large table maps zero pages
     * lazily, so this costs little until buckets are filled. */
    uint32_t *bigger = calloc((size_t)buckets * 2, sizeof(*bigger));
    if (bigger == NULL) {
        __atomic_fetch_add(&st->malloc_fails, 1, __ATOMIC_RELAXED);
        return false;
    }
    htab_lock_all(st);
    st->ht_old = st->ht;
    st->ht_old_power = st->ht_power;
    st->ht = bigger;
    st->ht_power++;
    __atomic_store_n(&st->ht_cursor, 0, __ATOMIC_RELEASE);
    st->ht_expanding = true;
    htab_unlock_all(st);
    return true;
}

/* Moves one old bucket into the new table; the caller holds its stripe lock. */
static void htab_move_bucket_locked(struct storage *st, uint64_t ob)
{
    uint64_t newmask = ((uint64_t)1 << st->ht_power) - 1;
    struct item *it = item_at(st, st->ht_old[ob]);
    while (it != NULL) {
        struct item *next = item_at(st, *item_hnextp(it));
        uint64_t hv = storage_hash(item_key(it), item_nkey(it));
        uint32_t *b = &st->ht[hv & newmask];
        *item_hnextp(it) = *b;
        *b = item_ref(st, it);
        it = next;
    }
    st->ht_old[ob] = 0;
}

bool htab_maintain(struct storage *st)
{
    if (!st->ht_expanding) {
        return htab_start_expand(st);
    }
    /* Only the (single) maintaining thread writes ht_cursor. */
    uint64_t oldsize = (uint64_t)1 << st->ht_old_power;
    uint64_t ob = __atomic_load_n(&st->ht_cursor, __ATOMIC_RELAXED);
    uint64_t end = ob + HTAB_MOVE_BATCH < oldsize ? ob + HTAB_MOVE_BATCH : oldsize;
    for (; ob < end; ob++) {
        pthread_mutex_t *m = stripe_lock_of(st, ob);
        pthread_mutex_lock(m);
        htab_move_bucket_locked(st, ob);
        __atomic_store_n(&st->ht_cursor, ob + 1, __ATOMIC_RELEASE);
        pthread_mutex_unlock(m);
    }
    if (ob < oldsize) {
        return true;
    }
    htab_lock_all(st);
    uint32_t *old = st->ht_old;
    st->ht_old = NULL;
    st->ht_old_power = 0;
    st->ht_expanding = false;
    __atomic_store_n(&st->ht_cursor, 0, __ATOMIC_RELEASE);
    htab_unlock_all(st);
    free(old);
    return true;
}

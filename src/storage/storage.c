/*
 * storage.c - the storage engine's public API (see storage.h): items,
 * lookups, mutations, flush, background maintenance and statistics.
 *
 * Lock order (complete; the same as in storage.h):
 *     item stripe lock  ->  seg_lock, ghost_lock (leaves)
 * - A request takes the stripe lock of its key's hash, and while holding it
 *   may allocate (seg_lock, and eviction: see seg.c for how it reaches other
 *   stripe locks).
 * - No thread waits for a stripe lock while holding another, except
 *   htab_lock_all(), which takes all of them in index order while holding
 *   nothing else.
 * - flush_lock is a leaf: held alone, for a few stores.
 * - storage_maintain() runs in one thread at a time (an atomic flag, not a
 *   lock: a second caller returns at once).
 *
 * Reads (storage_get) take only the stripe lock. A hit counts up the item's
 * S3-FIFO access count and sets its FETCHED bit with atomic stores, and
 * takes a reference on the item's segment.
 *
 * Item fields of a linked item change under its stripe lock. exptime, the
 * CAS/time word, fq and iflags are also read without it (statistics, segment
 * summaries), so those are accessed with __atomic builtins.
 *
 * Flush. An item is flushed when its CAS sequence is below oldest_cas (set by
 * an immediate flush to the next CAS to be handed out, so items stored after
 * the flush in the same second survive). A delayed flush point (oldest_live
 * = when - 1, as memcached does) flushes everything during that second, and
 * once it is past becomes oldest_cas: the first CAS handed out after it, or
 * the next one when nothing was stored since (flush_capture). So items
 * last stored at or before the point are flushed, as in memcached, without
 * keeping a store time in every item.
 */
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "numparse.h"
#include "storage_int.h"

void storage_options_default(struct storage_options *o)
{
    memset(o, 0, sizeof(*o));
    o->maxbytes = (size_t)64 << 20;
    o->item_size_max = (size_t)1 << 20;
    o->growth_factor = 1.25;
    o->chunk_min = 48;
    o->hashpower = 16;
    o->no_evict = false;
    o->use_cas = true;
    o->hash_expand = true;
}

const char *storage_strerror(int err)
{
    switch (err) {
    case STORAGE_OK:
        return "success";
    case STORAGE_ENOMEM:
        return "out of memory";
    case STORAGE_E2BIG:
        return "item too large";
    case STORAGE_EINVAL:
        return "invalid argument";
    default:
        return "unknown error";
    }
}

uint64_t storage_hash(const void *key, size_t nkey)
{
    return XXH3_64bits(key, nkey);
}

static size_t storage_pages_for(const struct storage *st, size_t maxbytes)
{
    if (maxbytes == 0) {
        return SIZE_MAX; /* memcached: -m 0 sets no limit */
    }
    size_t n = maxbytes / st->page_size;
    return n > 0 ? n : 1;
}

int storage_create(struct storage **out, const struct storage_options *opts)
{
    *out = NULL;
    if (opts == NULL || !(opts->growth_factor > 1.0) || opts->item_size_max < 1024 ||
        opts->item_size_max > ((size_t)1 << 30) || opts->hashpower > STORAGE_HASHPOWER_MAX) {
        return STORAGE_EINVAL;
    }
    struct storage *st = aligned_alloc(64, (sizeof(*st) + 63) & ~(size_t)63);
    if (st == NULL) {
        return STORAGE_ENOMEM;
    }
    memset(st, 0, sizeof(*st));
    st->opts = *opts;
    st->item_max = opts->item_size_max & ~(size_t)7;
    st->page_size = st->item_max > STORAGE_PAGE_SIZE ? st->item_max : STORAGE_PAGE_SIZE;
    st->pages_max = storage_pages_for(st, opts->maxbytes);
    st->next_cas = 1;

    unsigned power = opts->hashpower == 0 ? 16 : opts->hashpower;
    if (power < STORAGE_HASHPOWER_MIN) {
        power = STORAGE_HASHPOWER_MIN;
    }
    int rc = seg_setup(st);
    if (rc != 0) {
        free(st);
        return rc;
    }
    if (htab_setup(st, power) != 0) {
        seg_teardown(st);
        free(st);
        return STORAGE_ENOMEM;
    }
    pthread_mutex_init(&st->flush_lock, NULL);
    pthread_mutex_init(&st->sizes_lock, NULL);
    for (unsigned i = 0; i < STORAGE_STRIPES; i++) {
        pthread_mutex_init(&st->stripes[i].lock, NULL);
    }
    *out = st;
    return 0;
}

void storage_destroy(struct storage **stp)
{
    struct storage *st = *stp;
    if (st == NULL) {
        return;
    }
    seg_teardown(st);
    htab_teardown(st);
    for (unsigned i = 0; i < STORAGE_STRIPES; i++) {
        pthread_mutex_destroy(&st->stripes[i].lock);
    }
    pthread_mutex_destroy(&st->flush_lock);
    pthread_mutex_destroy(&st->sizes_lock);
    free(st->sizes);
    free(st);
    *stp = NULL;
}

/* ---- items ------------------------------------------------------------- */

const char *storage_item_key(const struct item *it)
{
    return item_key(it);
}

size_t storage_item_nkey(const struct item *it)
{
    return item_nkey(it);
}

uint32_t storage_item_flags(const struct item *it)
{
    return item_flags(it);
}

char *storage_item_value(struct item *it)
{
    return item_val(it);
}

size_t storage_item_nbytes(const struct item *it)
{
    return item_nbytes(it);
}

uint64_t storage_item_cas(const struct item *it)
{
    if (item_iflags(it) & ITEM_NOCAS) {
        return 0;
    }
    return item_cas(it);
}

rel_time_t storage_item_exptime(const struct item *it)
{
    return item_exptime(it);
}

size_t storage_item_total(const struct item *it)
{
    return item_total(it);
}

unsigned storage_item_class(const struct storage *st, const struct item *it)
{
    return item_class(st, it);
}

/* Fixed header, nbytes in the bytes it needs, flags when not 0. */
static size_t item_header_for(uint32_t flags, size_t nbytes)
{
    size_t w = nbytes < 0x80 ? 1 : nbytes < 0x4000 ? 2 : 4;
    return ITEM_FIXED_SIZE + w + (flags != 0 ? 4u : 0u);
}

/* Writes nbytes in item_nbytes()'s encoding; returns the bytes used. */
static size_t item_put_nbytes(unsigned char *p, uint32_t nb)
{
    if (nb < 0x80) {
        p[0] = (unsigned char)nb;
        return 1;
    }
    if (nb < 0x4000) {
        p[0] = (unsigned char)(0x80 | (nb >> 8));
        p[1] = (unsigned char)nb;
        return 2;
    }
    p[0] = (unsigned char)(0xC0 | (nb >> 24));
    p[1] = (unsigned char)(nb >> 16);
    p[2] = (unsigned char)(nb >> 8);
    p[3] = (unsigned char)nb;
    return 4;
}

bool storage_item_size_ok(const struct storage *st, size_t nkey, size_t nbytes)
{
    return nkey <= STORAGE_KEY_MAX && nbytes <= st->item_max &&
           item_header_for(0xffffffffu, nbytes) + nkey + nbytes <= st->item_max;
}

/* Turns a delayed flush point that is past into oldest_cas. Every CAS is
 * handed out after this ran (cas_next), so the CAS taken here is the first
 * one stored after the point. */
static void flush_capture_slow(struct storage *st, rel_time_t now)
{
    pthread_mutex_lock(&st->flush_lock);
    rel_time_t live = __atomic_load_n(&st->oldest_live, __ATOMIC_RELAXED);
    if (live != 0 && live < now) {
        uint64_t next = __atomic_load_n(&st->next_cas, __ATOMIC_RELAXED);
        if (next > __atomic_load_n(&st->oldest_cas, __ATOMIC_RELAXED)) {
            __atomic_store_n(&st->oldest_cas, next, __ATOMIC_RELAXED);
        }
        __atomic_store_n(&st->oldest_live, 0, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&st->flush_lock);
}

static inline void flush_capture(struct storage *st, rel_time_t now)
{
    rel_time_t live = __atomic_load_n(&st->oldest_live, __ATOMIC_ACQUIRE);
    if (live != 0 && live < now) {
        flush_capture_slow(st, now);
    }
}

/* The next CAS sequence, after any delayed flush point that is past has
 * been captured. */
static uint64_t cas_next(struct storage *st, rel_time_t now)
{
    flush_capture(st, now);
    return __atomic_fetch_add(&st->next_cas, 1, __ATOMIC_RELAXED) & ITEM_CAS_MASK;
}

enum item_state item_state(struct storage *st, const struct item *it, rel_time_t now)
{
    flush_capture(st, now);
    uint64_t oldest_cas = __atomic_load_n(&st->oldest_cas, __ATOMIC_RELAXED);
    if (oldest_cas != 0 && item_cas(it) < oldest_cas) {
        return ITEM_FLUSHED;
    }
    /* During the second of a delayed flush point, everything is flushed. */
    rel_time_t live = __atomic_load_n(&st->oldest_live, __ATOMIC_RELAXED);
    if (live != 0 && live <= now) {
        return ITEM_FLUSHED;
    }
    rel_time_t exp = item_exptime(it);
    if (exp != 0 && exp <= now) {
        return ITEM_EXPIRED;
    }
    return ITEM_ALIVE;
}

void item_set_exptime(struct storage *st, struct item *it, rel_time_t exptime)
{
    item_store_exptime(it, exptime);
    if (item_iflags(it) & ITEM_LINKED) {
        seg_note_item(st, it);
    }
}

/* memcached's item size rule, so that the largest value a client can store
 * (set, or append/prepend growing a value) is the same as with memcached: a
 * 48-byte header, 8 for the CAS unless disabled, the key and a terminator, 4
 * when the flags are non-zero, and the value with its "\r\n" must fit in
 * item_size_max. */
static size_t compat_total_of(const struct storage *st, size_t nkey, uint32_t flags, size_t nbytes)
{
    return 48 + (st->opts.use_cas ? 8 : 0) + nkey + 1 + (flags != 0 ? 4 : 0) + nbytes + 2;
}

static bool compat_size_ok(const struct storage *st, size_t nkey, uint32_t flags, size_t nbytes)
{
    return compat_total_of(st, nkey, flags, nbytes) <= st->opts.item_size_max;
}

/* Clears ITEM_PENDING (once) and counts it out of its segment. */
static void item_done_pending(struct storage *st, struct item *it)
{
    if (__atomic_fetch_and(item_iflagsp(it), (uint8_t)~ITEM_PENDING, __ATOMIC_ACQ_REL) &
        ITEM_PENDING) {
        __atomic_sub_fetch(&st->segs[item_seg(st, it)].pending, 1, __ATOMIC_ACQ_REL);
    }
}

static int item_alloc(struct storage *st, const char *key, size_t nkey, uint32_t flags,
                      rel_time_t exptime, size_t nbytes, pthread_mutex_t *held, rel_time_t now,
                      struct item **out)
{
    *out = NULL;
    if (nkey == 0 || nkey > STORAGE_KEY_MAX) {
        return STORAGE_EINVAL;
    }
    if (!storage_item_size_ok(st, nkey, nbytes) || !compat_size_ok(st, nkey, flags, nbytes)) {
        return STORAGE_E2BIG;
    }
#ifdef MEMSTASH_FAULT_INJECTION
    uint64_t every = __atomic_load_n(&st->fault_every, __ATOMIC_RELAXED);
    if (every != 0 && __atomic_add_fetch(&st->fault_count, 1, __ATOMIC_RELAXED) % every == 0) {
        return STORAGE_ENOMEM;
    }
#endif
    size_t header = item_header_for(flags, nbytes);
    size_t span = (header + nkey + nbytes + item_align(st) - 1) & ~(item_align(st) - 1);
    /* A key the small queue evicted unread a moment ago goes to main. */
    bool main = seg_ghost_take(st, storage_hash(key, nkey));
    struct item *it = seg_alloc(st, span, main, held, now);
    if (it == NULL) {
        unsigned clsid = seg_class_for(st, compat_total_of(st, nkey, flags, nbytes));
        __atomic_fetch_add(&st->classes[clsid].outofmemory, 1, __ATOMIC_RELAXED);
        return STORAGE_ENOMEM;
    }
    *item_wordp(it) = item_word(0, now);
    *item_xwordp(it) = item_x_exptime(exptime) | (flags != 0 ? ITEM_X_FLAGS : 0);
    *item_hnextp(it) = 0;
    *item_field(it, ITEM_F_NKEY) = (uint8_t)nkey;
    size_t w = item_put_nbytes(it->rest, (uint32_t)nbytes);
    if (flags != 0) {
        memcpy(it->rest + w, &flags, 4);
    }
    __atomic_store_n(
        item_iflagsp(it),
        (uint8_t)(ITEM_PENDING | (st->opts.use_cas ? 0 : ITEM_NOCAS) | (main ? ITEM_MAIN : 0)),
        __ATOMIC_RELEASE);
    memcpy(item_key(it), key, nkey);
    *out = it;
    return 0;
}

int storage_alloc(struct storage *st, const char *key, size_t nkey, uint32_t flags,
                  rel_time_t exptime, size_t nbytes, rel_time_t now, struct item **out)
{
    return item_alloc(st, key, nkey, flags, exptime, nbytes, NULL, now, out);
}

#ifdef MEMSTASH_FAULT_INJECTION
void storage_fault_inject(struct storage *st, unsigned every)
{
    __atomic_store_n(&st->fault_count, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&st->fault_every, every, __ATOMIC_RELAXED);
}
#endif

void storage_release(struct storage *st, struct item **itp)
{
    struct item *it = *itp;
    if (it == NULL) {
        return;
    }
    *itp = NULL;
    item_done_pending(st, it);
    seg_unref(st, it);
}

/* ---- link and unlink --------------------------------------------------- */

/* memcached's total for an item: the bucket "stats sizes" counts it in. */
static size_t compat_total(const struct storage *st, const struct item *it)
{
    return compat_total_of(st, item_nkey(it), item_flags(it), item_nbytes(it));
}

unsigned item_class(const struct storage *st, const struct item *it)
{
    return seg_class_for(st, compat_total(st, it));
}

void sizes_count(struct storage *st, const struct item *it, bool add)
{
    if (!__atomic_load_n(&st->sizes_on, __ATOMIC_ACQUIRE)) {
        return;
    }
    size_t b = compat_total(st, it) / 32;
    if (b >= st->nsizes) {
        b = st->nsizes - 1;
    }
    if (add) {
        __atomic_fetch_add(&st->sizes[b], 1, __ATOMIC_RELAXED);
    } else {
        /* Items linked before the histogram was enabled are not in it. */
        uint64_t v = __atomic_load_n(&st->sizes[b], __ATOMIC_RELAXED);
        while (v > 0 && !__atomic_compare_exchange_n(&st->sizes[b], &v, v - 1, false,
                                                     __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
        }
    }
}

bool storage_sizes_enable(struct storage *st, bool on)
{
    pthread_mutex_lock(&st->sizes_lock);
    if (on && st->sizes == NULL) {
        st->nsizes = st->opts.item_size_max / 32 + 2;
        st->sizes = calloc(st->nsizes, sizeof(*st->sizes));
    }
    bool ok = !on || st->sizes != NULL;
    if (ok && on && !st->sizes_on) {
        memset(st->sizes, 0, st->nsizes * sizeof(*st->sizes));
    }
    if (ok) {
        __atomic_store_n(&st->sizes_on, on, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&st->sizes_lock);
    return ok;
}

bool storage_sizes_enabled(const struct storage *st)
{
    return __atomic_load_n(&st->sizes_on, __ATOMIC_ACQUIRE);
}

void storage_sizes_visit(struct storage *st, void (*fn)(void *ctx, size_t size, uint64_t count),
                         void *ctx)
{
    pthread_mutex_lock(&st->sizes_lock);
    if (st->sizes_on) {
        for (size_t b = 0; b < st->nsizes; b++) {
            uint64_t v = __atomic_load_n(&st->sizes[b], __ATOMIC_RELAXED);
            if (v != 0) {
                fn(ctx, b * 32, v);
            }
        }
    }
    pthread_mutex_unlock(&st->sizes_lock);
}

/* Links an unlinked item: new CAS, store time `now`, a reference for the
 * table. The caller holds the stripe lock of hv. */
static void item_link_locked(struct storage *st, struct item *it, uint64_t hv, rel_time_t now)
{
    struct class_stats *cls = &st->classes[item_class(st, it)];
    __atomic_store_n(item_wordp(it), item_word(cas_next(st, now), now), __ATOMIC_RELAXED);
    item_set_freq(it, 0);
    __atomic_fetch_and(item_iflagsp(it), (uint8_t)~ITEM_FETCHED, __ATOMIC_RELAXED);
    htab_insert(st, it, hv);
    __atomic_fetch_or(item_iflagsp(it), ITEM_LINKED, __ATOMIC_RELEASE);
    /* Counted live before it stops being pending, so the segment never
     * looks empty in between. */
    __atomic_fetch_add(&st->segs[item_seg(st, it)].live, 1, __ATOMIC_ACQ_REL);
    seg_note_item(st, it);
    item_done_pending(st, it);
    __atomic_fetch_add(&st->curr_items, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&cls->number, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&cls->mem_requested, item_total(it), __ATOMIC_RELAXED);
    __atomic_fetch_add(&cls->total_items, 1, __ATOMIC_RELAXED);
    sizes_count(st, it, true);
}

void item_unlink_locked(struct storage *st, struct item *it, uint64_t hv)
{
    struct class_stats *cls = &st->classes[item_class(st, it)];
    htab_remove(st, it, hv);
    __atomic_fetch_and(item_iflagsp(it), (uint8_t)~ITEM_LINKED, __ATOMIC_RELEASE);
    __atomic_fetch_sub(&st->segs[item_seg(st, it)].live, 1, __ATOMIC_ACQ_REL);
    __atomic_fetch_sub(&st->curr_items, 1, __ATOMIC_RELAXED);
    __atomic_fetch_sub(&cls->number, 1, __ATOMIC_RELAXED);
    __atomic_fetch_sub(&cls->mem_requested, item_total(it), __ATOMIC_RELAXED);
    sizes_count(st, it, false);
}

/* Finds a live item under the stripe lock; dead ones met are unlinked. */
static struct item *item_find_locked(struct storage *st, const char *key, size_t nkey, uint64_t hv,
                                     rel_time_t now, enum item_state *why)
{
    *why = ITEM_ALIVE;
    struct item *it = htab_find(st, key, nkey, hv);
    if (it == NULL) {
        return NULL;
    }
    enum item_state s = item_state(st, it, now);
    if (s != ITEM_ALIVE) {
        item_unlink_locked(st, it, hv);
        *why = s;
        return NULL;
    }
    return it;
}

/* Moves the item's access time forward to `now`. The caller holds the
 * stripe lock. */
static void item_touch_time(struct item *it, rel_time_t now)
{
    if (item_time(it, now) < now) {
        item_set_time(it, now);
    }
}

/* Counts an access for S3-FIFO, up to ITEM_FREQ_MAX: a plain load and store,
 * no lock beyond the stripe's; a count lost to the eviction side changing it
 * at the same moment does no harm. */
static void item_freq_bump(struct item *it)
{
    unsigned f = item_freq(it);
    if (f < ITEM_FREQ_MAX) {
        item_set_freq(it, f + 1);
    }
}

/* A fetch: counts an access, and sets FETCHED the first time; a later fetch
 * moves the access time, as memcached's segmented LRU does on the second
 * fetch of an item. The first hit of all asks for the segment reserve
 * (seg.c): from now on eviction has read items to copy. The caller holds
 * the stripe lock. */
static void item_mark_used(struct storage *st, struct item *it, rel_time_t now)
{
    if (!__atomic_load_n(&st->reserve_wanted, __ATOMIC_RELAXED)) {
        __atomic_store_n(&st->reserve_wanted, true, __ATOMIC_RELAXED);
    }
    item_freq_bump(it);
    if (!(item_iflags(it) & ITEM_FETCHED)) {
        __atomic_fetch_or(item_iflagsp(it), ITEM_FETCHED, __ATOMIC_RELAXED);
    } else {
        item_touch_time(it, now);
    }
}

static enum storage_get_outcome get_outcome(const struct item *it, enum item_state why)
{
    if (it != NULL) {
        return STORAGE_HIT;
    }
    if (why == ITEM_EXPIRED) {
        return STORAGE_EXPIRED;
    }
    if (why == ITEM_FLUSHED) {
        return STORAGE_FLUSHED;
    }
    return STORAGE_MISS;
}

/* The CAS a client sees must equal cas_in (0 when CAS is disabled). */
static bool item_cas_matches(const struct item *it, uint64_t cas_in)
{
    return storage_item_cas(it) == cas_in;
}

/* ---- lookups ----------------------------------------------------------- */

static struct item *storage_lookup(struct storage *st, const char *key, size_t nkey, uint64_t hv,
                                   rel_time_t now, bool touch, rel_time_t exptime,
                                   enum storage_get_outcome *outcome)
{
    pthread_mutex_t *m = stripe_lock_of(st, hv);
    pthread_mutex_lock(m);
    enum item_state why;
    struct item *it = item_find_locked(st, key, nkey, hv, now, &why);
    enum storage_get_outcome out = get_outcome(it, why);
    if (it != NULL) {
        seg_ref(st, it);
        item_mark_used(st, it, now);
        if (touch) {
            item_set_exptime(st, it, exptime);
        }
    }
    pthread_mutex_unlock(m);
    if (outcome != NULL) {
        *outcome = out;
    }
    return it;
}

struct item *storage_get(struct storage *st, const char *key, size_t nkey, uint64_t hv,
                         rel_time_t now, enum storage_get_outcome *outcome)
{
    return storage_lookup(st, key, nkey, hv, now, false, 0, outcome);
}

struct item *storage_get_touch(struct storage *st, const char *key, size_t nkey, uint64_t hv,
                               rel_time_t now, rel_time_t exptime,
                               enum storage_get_outcome *outcome)
{
    return storage_lookup(st, key, nkey, hv, now, true, exptime, outcome);
}

/* ---- mutations --------------------------------------------------------- */

/* Replaces `old` (linked, or NULL) by `it` under the stripe lock of hv. The
 * new item takes the old one's place in the main queue if it had one. */
static void item_replace_locked(struct storage *st, struct item *old, struct item *it, uint64_t hv,
                                rel_time_t now)
{
    if (old != NULL) {
        if (item_iflags(old) & ITEM_MAIN) {
            __atomic_fetch_or(item_iflagsp(it), ITEM_MAIN, __ATOMIC_RELAXED);
        }
        item_unlink_locked(st, old, hv);
    }
    item_link_locked(st, it, hv, now);
}

/* Builds and links old+add or add+old for append/prepend. */
static int item_join_locked(struct storage *st, struct item *old, struct item *add, bool append,
                            uint64_t hv, rel_time_t now, uint64_t *cas_out)
{
    struct item *it;
    size_t on = item_nbytes(old);
    size_t an = item_nbytes(add);
    /* Copied out: the allocation may move `old` (eviction copies live items
     * forward), after which only the table's new copy is linked. */
    char key[STORAGE_KEY_MAX];
    size_t nkey = item_nkey(old);
    memcpy(key, item_key(old), nkey);
    int rc = item_alloc(st, key, nkey, item_flags(old), item_exptime(old), on + an,
                        stripe_lock_of(st, hv), now, &it);
    if (rc != 0) {
        return rc;
    }
    old = htab_find(st, key, nkey, hv);
    if (old == NULL || item_state(st, old, now) != ITEM_ALIVE) {
        /* Evicted to make room for its own join: nothing to append to. */
        storage_release(st, &it);
        return STORAGE_ENOMEM;
    }
    char *dst = storage_item_value(it);
    const char *ov = item_val(old);
    const char *av = item_val(add);
    if (append) {
        memcpy(dst, ov, on);
        memcpy(dst + on, av, an);
    } else {
        memcpy(dst, av, an);
        memcpy(dst + an, ov, on);
    }
    item_replace_locked(st, old, it, hv, now);
    *cas_out = storage_item_cas(it);
    storage_release(st, &it);
    return 0;
}

/* What item_store_locked() adds for ms (storage_meta_store). */
struct store_meta {
    bool join_cas;   /* APPEND/PREPEND compare cas_in when it is not 0 */
    bool invalidate; /* CAS with a lower cas_in stores a stale item */
    bool stale;      /* out: stored as stale */
};

/* The body of storage_store() and storage_meta_store(), under the stripe
 * lock of hv. `it` is not linked. */
static int item_store_locked(struct storage *st, struct item *it, enum storage_op op,
                             uint64_t cas_in, struct store_meta *meta, uint64_t hv, rel_time_t now,
                             enum storage_store_outcome *outcome, uint64_t *cas_out,
                             enum storage_get_outcome *lookup)
{
    enum storage_store_outcome out = STORAGE_NOT_STORED;
    uint64_t cas = 0;
    int rc = 0;
    enum item_state why;
    struct item *old = item_find_locked(st, item_key(it), item_nkey(it), hv, now, &why);
    *lookup = get_outcome(old, why);
    switch (op) {
    case STORAGE_SET:
        item_replace_locked(st, old, it, hv, now);
        out = STORAGE_STORED;
        break;
    case STORAGE_ADD:
        if (old != NULL) {
            /* memcached bumps the present item (its LRU and access time). */
            item_freq_bump(old);
            item_touch_time(old, now);
        } else {
            item_link_locked(st, it, hv, now);
            out = STORAGE_STORED;
        }
        break;
    case STORAGE_REPLACE:
        if (old != NULL) {
            item_replace_locked(st, old, it, hv, now);
            out = STORAGE_STORED;
        }
        break;
    case STORAGE_APPEND:
    case STORAGE_PREPEND:
        if (old == NULL) {
            break;
        }
        if (meta != NULL && meta->join_cas && cas_in != 0 && !item_cas_matches(old, cas_in)) {
            out = STORAGE_EXISTS;
            break;
        }
        rc = item_join_locked(st, old, it, op == STORAGE_APPEND, hv, now, &cas);
        if (rc == 0) {
            out = STORAGE_STORED;
        }
        break;
    case STORAGE_CAS:
        if (old == NULL) {
            out = STORAGE_NOT_FOUND;
        } else if (item_cas_matches(old, cas_in)) {
            item_replace_locked(st, old, it, hv, now);
            out = STORAGE_STORED;
        } else if (meta != NULL && meta->invalidate && cas_in < storage_item_cas(old)) {
            uint8_t keep = item_iflags(old) & ITEM_TOKEN_SENT;
            item_store_exptime(it, item_exptime(old));
            __atomic_fetch_or(item_iflagsp(it), (uint8_t)(ITEM_STALE | keep), __ATOMIC_RELAXED);
            item_replace_locked(st, old, it, hv, now);
            meta->stale = true;
            out = STORAGE_STORED;
        } else {
            out = STORAGE_EXISTS;
        }
        break;
    }
    if (out == STORAGE_STORED && op != STORAGE_APPEND && op != STORAGE_PREPEND) {
        cas = storage_item_cas(it);
    }
    *outcome = out;
    *cas_out = out == STORAGE_STORED ? cas : 0;
    return rc;
}

int storage_store(struct storage *st, struct item *it, enum storage_op op, uint64_t cas_in,
                  uint64_t hv, rel_time_t now, enum storage_store_outcome *outcome,
                  uint64_t *cas_out)
{
    enum storage_store_outcome out = STORAGE_NOT_STORED;
    uint64_t cas = 0;
    if (it == NULL || op > STORAGE_CAS) {
        return STORAGE_EINVAL;
    }
    pthread_mutex_t *m = stripe_lock_of(st, hv);
    pthread_mutex_lock(m);
    if (item_iflags(it) & ITEM_LINKED) {
        pthread_mutex_unlock(m);
        return STORAGE_EINVAL;
    }
    enum storage_get_outcome lookup;
    int rc = item_store_locked(st, it, op, cas_in, NULL, hv, now, &out, &cas, &lookup);
    pthread_mutex_unlock(m);
    if (outcome != NULL) {
        *outcome = out;
    }
    if (cas_out != NULL) {
        *cas_out = cas;
    }
    return rc;
}

int storage_delete(struct storage *st, const char *key, size_t nkey, uint64_t hv, uint64_t cas_in,
                   rel_time_t now, bool *found, bool *cas_mismatch, unsigned *clsid_out)
{
    bool f = false;
    bool mismatch = false;
    pthread_mutex_t *m = stripe_lock_of(st, hv);
    pthread_mutex_lock(m);
    enum item_state why;
    struct item *it = item_find_locked(st, key, nkey, hv, now, &why);
    if (it != NULL) {
        f = true;
        if (cas_in != 0 && !item_cas_matches(it, cas_in)) {
            mismatch = true;
        } else {
            if (clsid_out != NULL) {
                *clsid_out = item_class(st, it);
            }
            item_unlink_locked(st, it, hv);
        }
    }
    pthread_mutex_unlock(m);
    if (found != NULL) {
        *found = f;
    }
    if (cas_mismatch != NULL) {
        *cas_mismatch = mismatch;
    }
    return 0;
}

/* Parses an incr/decr operand stored in an item: optional leading white
 * space, 1..20 digits without overflow, then the end or white space. */
static bool arith_parse(const char *s, size_t n, uint64_t *out)
{
    size_t i = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n' || s[i] == '\v' ||
                     s[i] == '\f')) {
        i++;
    }
    size_t start = i;
    uint64_t v = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9') {
        uint64_t d = (uint64_t)(s[i] - '0');
        if (i - start >= 20 || v > (UINT64_MAX - d) / 10) {
            return false;
        }
        v = v * 10 + d;
        i++;
    }
    if (i == start) {
        return false;
    }
    if (i < n && !(s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n' || s[i] == '\v' ||
                   s[i] == '\f')) {
        return false;
    }
    *out = v;
    return true;
}

/* Allocates and links a new item holding `digits` in place of `old` (which
 * may be NULL); *linked is the new item (the table's reference only). The
 * caller holds the stripe lock of hv. */
static int arith_link_locked(struct storage *st, const char *key, size_t nkey, bool replace,
                             uint32_t flags, rel_time_t exptime, const char *digits, size_t len,
                             size_t width, uint8_t keep, uint64_t hv, rel_time_t now, uint64_t *cas,
                             struct item **linked)
{
    struct item *it;
    int rc = item_alloc(st, key, nkey, flags, exptime, width, stripe_lock_of(st, hv), now, &it);
    if (rc != 0) {
        return rc;
    }
    memcpy(storage_item_value(it), digits, len);
    memset(storage_item_value(it) + len, ' ', width - len);
    /* Looked up again: the allocation may have moved or evicted it. */
    struct item *old = replace ? htab_find(st, key, nkey, hv) : NULL;
    item_replace_locked(st, old, it, hv, now);
    __atomic_fetch_or(item_iflagsp(it), keep, __ATOMIC_RELAXED);
    *cas = storage_item_cas(it);
    *linked = it;
    storage_release(st, &it);
    return 0;
}

/* What arith_locked() reports. */
struct arith_out {
    enum storage_arith_outcome outcome;
    enum item_state why; /* of the lookup */
    bool created;
    uint64_t value;
    uint64_t cas;
    unsigned clsid;    /* class of the item found, 0 if none */
    struct item *item; /* the linked item holding the result (valid under the lock) */
};

/* The body of storage_arith() and storage_meta_arith(), under the stripe
 * lock of hv. */
static int arith_locked(struct storage *st, const char *key, size_t nkey, uint64_t hv,
                        const struct storage_arith *a, rel_time_t now, struct arith_out *o)
{
    char digits[24];
    int rc = 0;
    memset(o, 0, sizeof(*o));
    o->outcome = STORAGE_ARITH_OK;
    struct item *it = item_find_locked(st, key, nkey, hv, now, &o->why);
    if (it != NULL) {
        o->clsid = item_class(st, it);
    }
    if (it == NULL) {
        if (!a->create) {
            o->outcome = STORAGE_ARITH_NOT_FOUND;
        } else {
            o->value = a->initial;
            size_t len = num_format_u64(digits, o->value);
            rc = arith_link_locked(st, key, nkey, false, a->flags, a->exptime, digits, len, len, 0,
                                   hv, now, &o->cas, &o->item);
            if (rc != 0) {
                o->outcome = STORAGE_ARITH_NOT_FOUND;
            } else {
                o->created = true;
            }
        }
    } else if (a->cas_in != 0 && !item_cas_matches(it, a->cas_in)) {
        o->outcome = STORAGE_ARITH_EXISTS;
    } else if (!arith_parse(storage_item_value(it), item_nbytes(it), &o->value)) {
        o->outcome = STORAGE_ARITH_NON_NUMERIC;
    } else {
        uint64_t v = o->value;
        if (a->incr) {
            v += a->delta; /* wraps modulo 2^64 */
        } else {
            v = v > a->delta ? v - a->delta : 0;
        }
        o->value = v;
        size_t len = num_format_u64(digits, v);
        /* Always a new item: references are counted per segment, so whether
         * a reader is still sending the old digits cannot be told. Where
         * memcached updates in place (the number fits), it looks the same: a
         * shorter number is padded with spaces to the old length, and the
         * item's marks stay; a longer one is a new item without them. */
        rel_time_t exptime = item_exptime(it);
        size_t width = len <= item_nbytes(it) ? item_nbytes(it) : len;
        uint8_t keep =
            len <= item_nbytes(it)
                ? item_iflags(it) & (ITEM_KEY_BINARY | ITEM_STALE | ITEM_TOKEN_SENT | ITEM_FETCHED)
                : 0;
        rc = arith_link_locked(st, key, nkey, true, item_flags(it), exptime, digits, len, width,
                               keep, hv, now, &o->cas, &o->item);
    }
    return rc;
}

int storage_arith(struct storage *st, const char *key, size_t nkey, uint64_t hv,
                  const struct storage_arith *a, rel_time_t now,
                  enum storage_arith_outcome *outcome, uint64_t *value, uint64_t *cas_out,
                  unsigned *clsid_out)
{
    struct arith_out o;
    pthread_mutex_t *m = stripe_lock_of(st, hv);
    pthread_mutex_lock(m);
    int rc = arith_locked(st, key, nkey, hv, a, now, &o);
    pthread_mutex_unlock(m);
    if (o.clsid != 0 && clsid_out != NULL) {
        *clsid_out = o.clsid;
    }
    if (rc != 0) {
        return rc;
    }
    if (outcome != NULL) {
        *outcome = o.outcome;
    }
    if (o.outcome == STORAGE_ARITH_OK) {
        if (value != NULL) {
            *value = o.value;
        }
        if (cas_out != NULL) {
            *cas_out = o.cas;
        }
    }
    return 0;
}

void storage_flush(struct storage *st, rel_time_t when, rel_time_t now)
{
    rel_time_t crawl_at;
    pthread_mutex_lock(&st->flush_lock);
    /* A delayed flush point already reached stays in force: what was stored
     * up to now is flushed. */
    rel_time_t live = __atomic_load_n(&st->oldest_live, __ATOMIC_RELAXED);
    uint64_t next = __atomic_load_n(&st->next_cas, __ATOMIC_RELAXED);
    if (live != 0 && live <= now && next > __atomic_load_n(&st->oldest_cas, __ATOMIC_RELAXED)) {
        __atomic_store_n(&st->oldest_cas, next, __ATOMIC_RELAXED);
    }
    if (when <= now) {
        __atomic_store_n(&st->oldest_live, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&st->oldest_cas, __atomic_load_n(&st->next_cas, __ATOMIC_RELAXED),
                         __ATOMIC_RELAXED);
        crawl_at = now;
    } else {
        rel_time_t point = when - 1 > 0 ? when - 1 : 1;
        __atomic_store_n(&st->oldest_live, point, __ATOMIC_RELAXED);
        crawl_at = point;
    }
    pthread_mutex_unlock(&st->flush_lock);
    /* Whole segments are found flushed by their summaries; the crawler
     * takes the rest. */
    __atomic_store_n(&st->crawl_flush_at, crawl_at, __ATOMIC_RELAXED);
}

int storage_set_memlimit(struct storage *st, size_t maxbytes)
{
    pthread_mutex_lock(&st->seg_lock);
    size_t pages = storage_pages_for(st, maxbytes);
    if (pages > st->nsegs_max) {
        /* The arena, reserved for the limit at start (see seg_setup), caps
         * a raise: the limit reported is the one in force. */
        pages = st->nsegs_max;
        maxbytes = pages * st->page_size;
    }
    st->pages_max = pages;
    st->opts.maxbytes = maxbytes;
    pthread_mutex_unlock(&st->seg_lock);
    return 0;
}

bool storage_maintain(struct storage *st, rel_time_t now)
{
    int expected = 0;
    if (!__atomic_compare_exchange_n(&st->maintaining, &expected, 1, false, __ATOMIC_ACQUIRE,
                                     __ATOMIC_RELAXED)) {
        return true;
    }
    bool more = htab_maintain(st);
    more |= seg_maintain(st, now);
    more |= crawl_step(st, now);
    __atomic_store_n(&st->maintaining, 0, __ATOMIC_RELEASE);
    return more;
}

/* ---- meta protocol ----------------------------------------------------- */

void storage_item_set_key_binary(struct item *it)
{
    __atomic_fetch_or(item_iflagsp(it), ITEM_KEY_BINARY, __ATOMIC_RELAXED);
}

bool storage_item_key_binary(const struct item *it)
{
    return (item_iflags(it) & ITEM_KEY_BINARY) != 0;
}

/* Applies T, N and R of a meta request's order to a linked item, under its
 * stripe lock; returns whether the walk won the recache token. */
static bool meta_walk_locked(struct storage *st, struct item *it, const struct storage_mget_opts *o,
                             bool created, bool token_sent)
{
    bool win = false;
    rel_time_t exp = item_exptime(it);
    rel_time_t start = exp;
    for (const char *p = o->order; p != NULL && *p != '\0'; p++) {
        if (*p == 'T' && o->touch) {
            exp = o->touch_ttl;
        } else if (*p == 'N' && created) {
            exp = o->vivify_ttl;
            win = true;
        } else if (*p == 'R' && o->recache && !token_sent && !created && exp != 0 &&
                   exp < o->recache_at) {
            win = true;
        }
    }
    if (exp != start) {
        item_set_exptime(st, it, exp);
    }
    return win;
}

int storage_meta_get(struct storage *st, const char *key, size_t nkey, uint64_t hv, rel_time_t now,
                     const struct storage_mget_opts *o, struct storage_mget_result *r,
                     struct item **out)
{
    int rc = 0;
    memset(r, 0, sizeof(*r));
    *out = NULL;
    pthread_mutex_t *m = stripe_lock_of(st, hv);
    pthread_mutex_lock(m);
    enum item_state why;
    struct item *it = item_find_locked(st, key, nkey, hv, now, &why);
    r->outcome = get_outcome(it, why);
    if (it != NULL) {
        seg_ref(st, it);
    } else if (o->vivify) {
        /* An empty value, client flags 0, no TTL until N is walked. */
        rc = item_alloc(st, key, nkey, 0, 0, 0, m, now, &it);
        if (rc == 0) {
            item_link_locked(st, it, hv, now);
            r->created = true;
            r->outcome = STORAGE_HIT;
        }
    }
    if (it != NULL) {
        uint8_t fl = item_iflags(it);
        r->fetched = !r->created && (fl & ITEM_FETCHED) != 0;
        r->stale = (fl & ITEM_STALE) != 0;
        r->token_sent = (fl & ITEM_TOKEN_SENT) != 0;
        r->time = item_time(it, now);
        r->exptime = item_exptime(it);
        bool win = meta_walk_locked(st, it, o, r->created, r->token_sent);
        if (!o->no_win) {
            if (r->stale && !r->token_sent) {
                win = true;
            }
            if (win) {
                __atomic_fetch_or(item_iflagsp(it), ITEM_TOKEN_SENT, __ATOMIC_RELAXED);
            }
            r->win = win;
        }
        if (!o->no_bump) {
            item_mark_used(st, it, now);
        }
        *out = it;
    }
    pthread_mutex_unlock(m);
    return rc;
}

int storage_meta_store(struct storage *st, struct item *it, enum storage_op op, uint64_t cas_in,
                       bool invalidate, uint64_t hv, rel_time_t now,
                       struct storage_mstore_result *r)
{
    memset(r, 0, sizeof(*r));
    r->outcome = STORAGE_NOT_STORED;
    if (it == NULL || op > STORAGE_CAS) {
        return STORAGE_EINVAL;
    }
    struct store_meta meta = {.join_cas = true, .invalidate = invalidate};
    pthread_mutex_t *m = stripe_lock_of(st, hv);
    pthread_mutex_lock(m);
    if (item_iflags(it) & ITEM_LINKED) {
        pthread_mutex_unlock(m);
        return STORAGE_EINVAL;
    }
    int rc =
        item_store_locked(st, it, op, cas_in, &meta, hv, now, &r->outcome, &r->cas, &r->lookup);
    pthread_mutex_unlock(m);
    r->stale = meta.stale;
    return rc;
}

int storage_meta_delete(struct storage *st, const char *key, size_t nkey, uint64_t hv,
                        rel_time_t now, const struct storage_mdelete_opts *o,
                        struct storage_mdelete_result *r)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_t *m = stripe_lock_of(st, hv);
    pthread_mutex_lock(m);
    enum item_state why;
    struct item *it = item_find_locked(st, key, nkey, hv, now, &why);
    r->lookup = get_outcome(it, why);
    if (it == NULL) {
        r->outcome = STORAGE_MDEL_NOT_FOUND;
    } else {
        r->clsid = item_class(st, it);
        if (o->has_cas && !item_cas_matches(it, o->cas_in)) {
            r->outcome = STORAGE_MDEL_EXISTS;
        } else if (o->invalidate) {
            if (o->touch) {
                item_set_exptime(st, it, o->touch_ttl);
            }
            __atomic_fetch_or(item_iflagsp(it), ITEM_STALE, __ATOMIC_RELAXED);
            __atomic_fetch_and(item_iflagsp(it), (uint8_t)~ITEM_TOKEN_SENT, __ATOMIC_RELAXED);
            item_set_cas(it, cas_next(st, now));
            seg_note_item(st, it);
            r->outcome = STORAGE_MDEL_INVALIDATED;
        } else {
            item_unlink_locked(st, it, hv);
            r->outcome = STORAGE_MDEL_DELETED;
        }
    }
    pthread_mutex_unlock(m);
    return 0;
}

int storage_meta_arith(struct storage *st, const char *key, size_t nkey, uint64_t hv,
                       rel_time_t now, const struct storage_marith_opts *o,
                       struct storage_marith_result *r)
{
    struct arith_out ao;
    struct storage_arith a = o->a;
    a.exptime = 0; /* a created item gets its TTL from N below */
    memset(r, 0, sizeof(*r));
    pthread_mutex_t *m = stripe_lock_of(st, hv);
    pthread_mutex_lock(m);
    int rc = arith_locked(st, key, nkey, hv, &a, now, &ao);
    if (rc == 0 && ao.outcome == STORAGE_ARITH_OK) {
        struct item *it = ao.item;
        rel_time_t exp = item_exptime(it);
        r->exptime = exp;
        const char *order = o->order != NULL ? o->order : "T";
        for (const char *p = order; *p != '\0'; p++) {
            if (*p == 'T' && o->touch) {
                exp = o->touch_ttl;
            } else if (*p == 'N' && ao.created) {
                exp = o->vivify_ttl;
            }
        }
        if (exp != r->exptime) {
            item_set_exptime(st, it, exp);
        }
    }
    pthread_mutex_unlock(m);
    r->outcome = ao.outcome;
    r->lookup = ao.clsid != 0 ? STORAGE_HIT : get_outcome(NULL, ao.why);
    r->created = ao.created;
    r->value = ao.value;
    r->cas = ao.cas;
    r->clsid = ao.clsid;
    return rc;
}

/* ---- statistics -------------------------------------------------------- */

static uint64_t ld(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

void storage_get_stats(struct storage *st, rel_time_t now, struct storage_stats *out)
{
    (void)now;
    memset(out, 0, sizeof(*out));
    for (unsigned c = 1; c <= st->nclasses; c++) {
        const struct class_stats *cls = &st->classes[c];
        uint64_t number = ld(&cls->number);
        out->curr_items += number;
        out->total_items += ld(&cls->total_items);
        out->bytes += ld(&cls->mem_requested);
        out->evictions += ld(&cls->evicted);
        out->reclaimed += ld(&cls->reclaimed);
        out->expired_unfetched += ld(&cls->expired_unfetched);
        out->evicted_unfetched += ld(&cls->evicted_unfetched);
        out->crawler_reclaimed += ld(&cls->crawler_reclaimed);
        if (number > 0) {
            out->active_classes++;
        }
    }
    uint64_t committed, free_segs, limit;
    seg_counts(st, &committed, &free_segs, &limit);
    out->limit_maxbytes = limit;
    out->total_malloced = committed * st->page_size;
    out->slab_global_page_pool = free_segs;
    out->malloc_fails = __atomic_load_n(&st->malloc_fails, __ATOMIC_RELAXED);
    pthread_mutex_t *m = &st->stripes[0].lock;
    pthread_mutex_lock(m);
    out->hash_power_level = st->ht_power;
    out->hash_bytes = ((uint64_t)1 << st->ht_power) * sizeof(*st->ht);
    if (st->ht_expanding) {
        out->hash_bytes += ((uint64_t)1 << st->ht_old_power) * sizeof(*st->ht);
    }
    out->hash_is_expanding = st->ht_expanding;
    pthread_mutex_unlock(m);
}

unsigned storage_class_count(const struct storage *st)
{
    return st->nclasses;
}

/* Seconds since the oldest full segment was started: no item is older. */
static uint64_t seg_oldest_age(struct storage *st, rel_time_t now)
{
    rel_time_t t = now;
    pthread_mutex_lock(&st->seg_lock);
    uint32_t olds[2] = {st->small_old, st->main_old};
    for (int q = 0; q < 2; q++) {
        if (olds[q] != SEG_NONE && st->segs[olds[q]].created < t) {
            t = st->segs[olds[q]].created;
        }
    }
    pthread_mutex_unlock(&st->seg_lock);
    return now > t ? now - t : 0;
}

/* A class is a reporting bucket here (memcached's class for the item's
 * size): chunks are its items, pages the segment bytes they take, rounded
 * up; nothing is free inside a class. */
bool storage_get_class_stats(struct storage *st, unsigned id, rel_time_t now,
                             struct storage_class_stats *out)
{
    if (id == 0 || id > st->nclasses) {
        return false;
    }
    const struct class_stats *cls = &st->classes[id];
    memset(out, 0, sizeof(*out));
    out->id = id;
    out->chunk_size = st->class_size[id];
    out->chunks_per_page = (uint32_t)(st->page_size / st->class_size[id]);
    out->number = ld(&cls->number);
    out->mem_requested = ld(&cls->mem_requested);
    out->total_pages = (out->mem_requested + st->page_size - 1) / st->page_size;
    out->total_chunks = out->number;
    out->used_chunks = out->number;
    out->free_chunks = 0;
    out->age = out->number > 0 ? seg_oldest_age(st, now) : 0;
    out->evicted = ld(&cls->evicted);
    out->evicted_nonzero = ld(&cls->evicted_nonzero);
    out->evicted_time = ld(&cls->evicted_time);
    out->evicted_unfetched = ld(&cls->evicted_unfetched);
    out->outofmemory = ld(&cls->outofmemory);
    out->reclaimed = ld(&cls->reclaimed);
    out->expired_unfetched = ld(&cls->expired_unfetched);
    out->crawler_reclaimed = ld(&cls->crawler_reclaimed);
    return true;
}

void storage_reset_stats(struct storage *st)
{
    for (unsigned c = 1; c <= st->nclasses; c++) {
        struct class_stats *cls = &st->classes[c];
        uint64_t *counters[] = {
            &cls->total_items,  &cls->evicted,           &cls->evicted_nonzero,
            &cls->evicted_time, &cls->evicted_unfetched, &cls->outofmemory,
            &cls->reclaimed,    &cls->expired_unfetched, &cls->crawler_reclaimed};
        for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
            __atomic_store_n(counters[i], 0, __ATOMIC_RELAXED);
        }
    }
    __atomic_store_n(&st->malloc_fails, 0, __ATOMIC_RELAXED);
}

/* ---- consistency check (tests) ----------------------------------------- */

const char *storage_check(struct storage *st)
{
    const char *err = NULL;
    uint64_t linked_total = 0;
    uint64_t per_class[STORAGE_MAX_CLASSES + 1] = {0};
    uint64_t bytes_class[STORAGE_MAX_CLASSES + 1] = {0};
    htab_lock_all(st);
    pthread_mutex_lock(&st->seg_lock);
    for (uint32_t s = 0; s < st->seg_high && err == NULL; s++) {
        struct seg *g = &st->segs[s];
        if (g->state == SEG_UNUSED || g->state == SEG_FREE) {
            if (g->state == SEG_FREE && g->refs != 0) {
                err = "free segment with references";
            }
            continue;
        }
        if (g->refs != 0 || g->pending != 0) {
            err = "segment still referenced";
            break;
        }
        uint32_t live = 0;
        char *base = st->arena + (size_t)s * st->page_size;
        for (uint32_t off = 0; off < g->used && err == NULL;) {
            struct item *it = (struct item *)(base + off);
            if (item_span(st, it) == 0 || off + item_span(st, it) > g->used) {
                err = "item overruns its segment";
                break;
            }
            off += (uint32_t)item_span(st, it);
            if (!(*item_iflagsp(it) & ITEM_LINKED)) {
                continue;
            }
            live++;
            uint64_t hv = storage_hash(item_key(it), item_nkey(it));
            if (htab_find(st, item_key(it), item_nkey(it), hv) != it) {
                err = "linked item not found in the hash table";
            } else if (item_class(st, it) == 0 || item_class(st, it) > st->nclasses) {
                err = "item with a wrong class id";
            } else {
                per_class[item_class(st, it)]++;
                bytes_class[item_class(st, it)] += item_total(it);
            }
        }
        if (err == NULL && live != g->live) {
            err = "segment live count mismatch";
        }
        if (err == NULL && g->state == SEG_DRAIN && live != 0) {
            err = "drained segment with linked items";
        }
        linked_total += live;
    }
    for (unsigned c = 1; c <= st->nclasses && err == NULL; c++) {
        if (per_class[c] != st->classes[c].number) {
            err = "linked item count mismatch";
        } else if (bytes_class[c] != st->classes[c].mem_requested) {
            err = "mem_requested mismatch";
        }
    }
    uint32_t nsmall = 0;
    uint32_t nmain = 0;
    for (uint32_t s = st->small_old; s != SEG_NONE && err == NULL; s = st->segs[s].next) {
        nsmall++;
        if (st->segs[s].state != SEG_SMALL) {
            err = "segment in the wrong queue";
        }
    }
    for (uint32_t s = st->main_old; s != SEG_NONE && err == NULL; s = st->segs[s].next) {
        nmain++;
        if (st->segs[s].state != SEG_MAIN) {
            err = "segment in the wrong queue";
        }
    }
    if (err == NULL && (nsmall != st->nsmall || nmain != st->nmain)) {
        err = "queue length mismatch";
    }
    pthread_mutex_unlock(&st->seg_lock);
    if (err == NULL) {
        uint64_t chained = 0;
        for (uint64_t b = 0; b < ((uint64_t)1 << st->ht_power); b++) {
            for (struct item *it = item_at(st, st->ht[b]); it != NULL;
                 it = item_at(st, *item_hnextp(it))) {
                chained++;
            }
        }
        if (st->ht_expanding) {
            for (uint64_t b = 0; b < ((uint64_t)1 << st->ht_old_power); b++) {
                for (struct item *it = item_at(st, st->ht_old[b]); it != NULL;
                     it = item_at(st, *item_hnextp(it))) {
                    chained++;
                }
            }
        }
        if (chained != linked_total || linked_total != st->curr_items) {
            err = "hash table item count mismatch";
        }
    }
    htab_unlock_all(st);
    return err;
}

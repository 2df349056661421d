/*
 * slab.c - item memory for the storage engine: size classes carved from
 * pages, S3-FIFO eviction per class, page stealing between classes, and the
 * background expiry crawler.
 *
 * Pages are page_size bytes (1 MiB, or item_max if larger), malloc'ed one at
 * a time when a class runs out of free chunks, and never more than pages_max
 * of them (maxbytes / page_size, at least one): the memory limit is exact.
 * A page belongs to one class and is cut into chunks of the class size.
 *
 * When a class has no free chunk and no page can be added, it evicts with
 * S3-FIFO (Yang et al., SOSP'23; see slab_evict_run_locked): a small FIFO
 * queue on probation (new items), a main queue run as CLOCK, and a ghost of
 * keys recently evicted from the small queue. Expired or flushed items met on
 * the way are reclaimed first. If nothing in the class can go (it is empty,
 * or every item is referenced), a page is stolen from the class whose pages
 * hold the fewest items: every item in it is evicted, its chunks leave that
 * class's free list and it is re-cut for the requesting class. This is what
 * memcached's slab rebalancer does, done on demand, so a class can never
 * starve because other classes hold all the memory.
 *
 * Pages also move when the mix of item sizes shifts (memcached's automover):
 * every few evictions a class compares how long its items last before
 * eviction (a running average of the evicted items' age, see slab_age_locked)
 * with the other classes' and takes a page from the class whose items last
 * more than SLAB_REBALANCE_RATIO (8) times as long, if that class has not
 * evicted anything for longer than the requester's items last (it is not
 * under pressure itself): a workload whose sizes shifted leaves classes that
 * stop evicting and whose ages grow without bound, while in a steady mix,
 * where every class evicts, pages stay where the fill put them, which keeps
 * more small, hot items than evening the ages out does. Age is counted in
 * stores (the global CAS sequence), not seconds, so it is comparable between
 * classes and does not depend on the clock.
 *
 * Locking: the class lock guards the free list, the queue, the pages array
 * and the counters. Reaching an item's stripe lock from here is against the
 * lock order, so it is only ever tried (pthread_mutex_trylock) and the item
 * skipped when busy. At most one class lock is held at a time: stealing
 * drops the requester's lock before taking the victim's.
 */
#include <stdlib.h>
#include <string.h>

#include "storage_int.h"

/* Under AddressSanitizer the bytes after a free chunk's header are poisoned,
 * so touching an item's key or value after its last release is reported. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define SLAB_POISON(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#define SLAB_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define SLAB_POISON(p, n)   ((void)(p), (void)(n))
#define SLAB_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* Longest walk of the hand under -M, where it only looks for dead items. */
#define SLAB_NOEVICT_WALK 1000u
/* S3-FIFO: the small queue holds at most 1/SLAB_SMALL_DIV of the class's
 * chunks before eviction takes from it; an item leaving it with at least
 * SLAB_PROMOTE_FREQ reads moves to main; ghost buckets hold this many. */
#define SLAB_SMALL_DIV    10u
#define SLAB_PROMOTE_FREQ 1u
#define SLAB_GHOST_WAYS   8u
/* Items the crawler examines per class per storage_maintain() call. */
#define SLAB_CRAWL_BATCH 500u
/* Longest wait between crawler passes that found nothing, in seconds. */
#define SLAB_CRAWL_BACKOFF_MAX 60u
/* Stealing: classes tried, and pages tried per class. */
#define SLAB_STEAL_CLASSES 3u
#define SLAB_STEAL_PAGES   8u
/* Most evictions between two age comparisons of a class with the others. */
#define SLAB_REBALANCE_EVERY 64u
/* A page moves to a class from one whose items last this many times longer. */
#define SLAB_REBALANCE_RATIO 8u
/* Rounds of (free list, new page, eviction, stealing) before giving up. */
#define SLAB_ALLOC_ROUNDS 8

static size_t align8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

/* memcached's item header without the CAS: -n counts from it, so the class
 * table is memcached's, chunk for chunk. An item here (56-byte header with
 * the CAS, key, value, "\r\n") is never larger than memcached's for the
 * same key and value while CAS is on (48 + 8 + key + 1 + value + 2, plus 4
 * for non-zero flags), so it never lands in a larger class. */
#define SLAB_COMPAT_HEADER 48u
/* The smallest chunk must hold a header and a short key and value. */
#define SLAB_MIN_CHUNK (ITEM_HEADER_SIZE + 8u)

int slab_setup(struct storage *st)
{
    size_t size = align8(SLAB_COMPAT_HEADER + st->opts.chunk_min);
    if (size < SLAB_MIN_CHUNK) {
        size = SLAB_MIN_CHUNK;
    }
    if (size >= st->item_max) {
        return STORAGE_EINVAL;
    }
    unsigned id = 1;
    while (id < STORAGE_MAX_CLASSES &&
           (double)size <= (double)st->item_max / st->opts.growth_factor) {
        st->classes[id].size = (uint32_t)size;
        id++;
        size_t next = align8((size_t)((double)size * st->opts.growth_factor));
        size = next > size ? next : size + 8;
    }
    st->classes[id].size = (uint32_t)st->item_max;
    st->nclasses = id;
    for (unsigned c = 1; c <= st->nclasses; c++) {
        struct slab_class *cls = &st->classes[c];
        cls->perpage = (uint32_t)(st->page_size / cls->size);
        cls->crawl_backoff = 1;
        if (pthread_mutex_init(&cls->lock, NULL) != 0) {
            return STORAGE_ENOMEM;
        }
    }
    return 0;
}

void slab_teardown(struct storage *st)
{
    for (unsigned c = 1; c <= st->nclasses; c++) {
        struct slab_class *cls = &st->classes[c];
        for (size_t i = 0; i < cls->npages; i++) {
            SLAB_UNPOISON(cls->pages[i], st->page_size);
            free(cls->pages[i]);
        }
        free(cls->pages);
        cls->pages = NULL;
        free(cls->ghost);
        cls->ghost = NULL;
        cls->ghost_buckets = 0;
        cls->npages = 0;
        pthread_mutex_destroy(&cls->lock);
    }
}

unsigned slab_class_for(const struct storage *st, size_t total)
{
    if (total > st->item_max) {
        return 0;
    }
    unsigned lo = 1;
    unsigned hi = st->nclasses;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (st->classes[mid].size >= total) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return lo;
}

/* ---- free list and queue ----------------------------------------------- */

void slab_free_locked(struct slab_class *cls, struct item *it)
{
    SLAB_POISON(it->data, cls->size - ITEM_HEADER_SIZE);
    __atomic_store_n(&it->iflags, ITEM_FREE, __ATOMIC_RELEASE);
    it->h_next = NULL;
    it->q_older = NULL;
    it->q_newer = cls->free_head;
    if (cls->free_head != NULL) {
        cls->free_head->q_older = it;
    }
    cls->free_head = it;
    cls->nfree++;
}

static void slab_free_remove_locked(struct slab_class *cls, struct item *it)
{
    if (it->q_older != NULL) {
        it->q_older->q_newer = it->q_newer;
    } else {
        cls->free_head = it->q_newer;
    }
    if (it->q_newer != NULL) {
        it->q_newer->q_older = it->q_older;
    }
    it->q_newer = NULL;
    it->q_older = NULL;
    cls->nfree--;
}

static struct item *slab_free_pop_locked(struct slab_class *cls, unsigned clsid)
{
    struct item *it = cls->free_head;
    slab_free_remove_locked(cls, it);
    SLAB_UNPOISON(it->data, cls->size - ITEM_HEADER_SIZE);
    __atomic_store_n(&it->iflags, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&it->refcount, 1, __ATOMIC_RELAXED);
    it->clsid = (uint8_t)clsid;
    return it;
}

static rel_time_t earliest(rel_time_t a, rel_time_t b)
{
    if (a == 0) {
        return b;
    }
    return b != 0 && b < a ? b : a;
}

/* ---- ghost ------------------------------------------------------------- */

/* The ghost remembers keys the small queue evicted unread, so that a key
 * coming back soon after (its set followed the miss) goes straight to the
 * main queue. It holds about as many fingerprints as the class holds items
 * (S3-FIFO's ghost is as large as the main queue), between half and all of
 * that, as the bucket count is a power of two; a bucket keeps its newest
 * SLAB_GHOST_WAYS, which, with hashing spreading keys evenly, approximates
 * a FIFO of the whole table's size. 2 bytes per entry, outside -m like the
 * hash table; the memory is calloc'ed, so untouched buckets cost nothing. */

static uint16_t ghost_fp(uint64_t hv)
{
    uint16_t fp = (uint16_t)(hv >> 48);
    return fp != 0 ? fp : 1;
}

static uint16_t *ghost_bucket(struct slab_class *cls, uint64_t hv)
{
    return cls->ghost + (size_t)((hv >> 16) & (cls->ghost_buckets - 1)) * SLAB_GHOST_WAYS;
}

/* Resizes the ghost to the class's capacity (forgetting its entries) when it
 * has outgrown it or lost most of it. */
static void ghost_fit_locked(struct slab_class *cls)
{
    uint64_t want = (uint64_t)cls->npages * cls->perpage / SLAB_GHOST_WAYS;
    uint32_t nb = 1;
    while ((uint64_t)nb * 2 <= want && nb < ((uint32_t)1 << 30)) {
        nb *= 2;
    }
    if (nb <= cls->ghost_buckets && nb * 4 > cls->ghost_buckets) {
        return;
    }
    uint16_t *g = calloc((size_t)nb * SLAB_GHOST_WAYS, sizeof(*g));
    if (g == NULL) {
        return; /* keep the old one */
    }
    free(cls->ghost);
    cls->ghost = g;
    cls->ghost_buckets = nb;
}

static void ghost_add_locked(struct slab_class *cls, uint64_t hv)
{
    ghost_fit_locked(cls);
    if (cls->ghost == NULL) {
        return;
    }
    uint16_t *b = ghost_bucket(cls, hv);
    memmove(b + 1, b, (SLAB_GHOST_WAYS - 1) * sizeof(*b));
    b[0] = ghost_fp(hv);
}

/* Whether hv is in the ghost; a hit removes it. */
static bool ghost_take_locked(struct slab_class *cls, uint64_t hv)
{
    if (cls->ghost == NULL) {
        return false;
    }
    uint16_t *b = ghost_bucket(cls, hv);
    uint16_t fp = ghost_fp(hv);
    for (unsigned i = 0; i < SLAB_GHOST_WAYS; i++) {
        if (b[i] == fp) {
            memmove(b + i, b + i + 1, (SLAB_GHOST_WAYS - 1 - i) * sizeof(*b));
            b[SLAB_GHOST_WAYS - 1] = 0;
            return true;
        }
    }
    return false;
}

/* ---- queues ------------------------------------------------------------ */

/* Inserts at the head of the list: the newest item of the main queue. */
static void queue_push_main_locked(struct slab_class *cls, struct item *it)
{
    __atomic_fetch_or(&it->iflags, ITEM_MAIN, __ATOMIC_RELAXED);
    it->q_newer = NULL;
    it->q_older = cls->head;
    if (cls->head != NULL) {
        cls->head->q_newer = it;
    }
    cls->head = it;
    if (cls->tail == NULL) {
        cls->tail = it;
    }
}

/* Inserts just above small_head: the newest item of the small queue. */
static void queue_push_small_locked(struct slab_class *cls, struct item *it)
{
    __atomic_fetch_and(&it->iflags, (uint8_t)~ITEM_MAIN, __ATOMIC_RELAXED);
    struct item *below = cls->small_head;
    struct item *above = below != NULL ? below->q_newer : cls->tail;
    it->q_older = below;
    it->q_newer = above;
    if (below != NULL) {
        below->q_newer = it;
    } else {
        cls->tail = it;
    }
    if (above != NULL) {
        above->q_older = it;
    } else {
        cls->head = it;
    }
    cls->small_head = it;
    cls->nsmall++;
}

/* Takes an item out of the list, leaving its ITEM_MAIN bit as it was. */
static void queue_remove_locked(struct slab_class *cls, struct item *it)
{
    if (cls->hand == it) {
        cls->hand = it->q_newer;
    }
    if (cls->crawl == it) {
        cls->crawl = it->q_newer;
    }
    if (!(item_iflags(it) & ITEM_MAIN)) {
        if (cls->small_head == it) {
            cls->small_head = it->q_older;
        }
        cls->nsmall--;
    }
    if (it->q_newer != NULL) {
        it->q_newer->q_older = it->q_older;
    } else {
        cls->head = it->q_older;
    }
    if (it->q_older != NULL) {
        it->q_older->q_newer = it->q_newer;
    } else {
        cls->tail = it->q_newer;
    }
    it->q_newer = NULL;
    it->q_older = NULL;
}

void slab_queue_push_locked(struct slab_class *cls, struct item *it, uint64_t hv)
{
    cls->next_expiry = earliest(cls->next_expiry, __atomic_load_n(&it->exptime, __ATOMIC_RELAXED));
    bool admit = (item_iflags(it) & ITEM_MAIN) != 0;
    if (ghost_take_locked(cls, hv)) {
        cls->ghost_hits++;
        admit = true;
    }
    if (admit) {
        queue_push_main_locked(cls, it);
    } else {
        queue_push_small_locked(cls, it);
    }
}

void slab_queue_remove_locked(struct slab_class *cls, struct item *it)
{
    queue_remove_locked(cls, it);
    __atomic_fetch_and(&it->iflags, (uint8_t)~ITEM_MAIN, __ATOMIC_RELAXED);
}

/* The oldest item of the main queue, or NULL. */
static struct item *queue_main_tail(const struct slab_class *cls)
{
    return cls->small_head != NULL ? cls->small_head->q_newer : cls->tail;
}

/* ---- pages ------------------------------------------------------------- */

/* Adds a page to the class and cuts it into free chunks. */
static bool slab_add_page_locked(struct storage *st, struct slab_class *cls, char *page)
{
    if (cls->npages == cls->pages_cap) {
        size_t cap = cls->pages_cap ? cls->pages_cap * 2 : 16;
        char **p = realloc(cls->pages, cap * sizeof(*p));
        if (p == NULL) {
            __atomic_fetch_add(&st->malloc_fails, 1, __ATOMIC_RELAXED);
            return false;
        }
        cls->pages = p;
        cls->pages_cap = cap;
    }
    cls->pages[cls->npages] = page;
    __atomic_store_n(&cls->npages, cls->npages + 1, __ATOMIC_RELAXED);
    /* A stolen page was cut differently: clear its old poisoning. */
    SLAB_UNPOISON(page, st->page_size);
    /* Pushed last to first so chunks are handed out in address order. */
    for (uint32_t i = cls->perpage; i > 0; i--) {
        struct item *it = (struct item *)(page + (size_t)(i - 1) * cls->size);
        it->refcount = 0;
        it->freq = 0;
        it->clsid = (uint8_t)(cls - st->classes);
        slab_free_locked(cls, it);
    }
    return true;
}

static bool slab_page_reserve(struct storage *st)
{
    bool ok = false;
    pthread_mutex_lock(&st->page_lock);
    if (st->pages_used < st->pages_max) {
        st->pages_used++;
        ok = true;
    }
    pthread_mutex_unlock(&st->page_lock);
    return ok;
}

static void slab_page_unreserve(struct storage *st)
{
    pthread_mutex_lock(&st->page_lock);
    st->pages_used--;
    pthread_mutex_unlock(&st->page_lock);
}

/* Takes a new page under the budget; returns whether the class grew. */
static bool slab_grow_locked(struct storage *st, struct slab_class *cls)
{
    if (!slab_page_reserve(st)) {
        return false;
    }
    char *page = malloc(st->page_size);
    if (page == NULL || !slab_add_page_locked(st, cls, page)) {
        free(page);
        __atomic_fetch_add(&st->malloc_fails, 1, __ATOMIC_RELAXED);
        slab_page_unreserve(st);
        return false;
    }
    return true;
}

/* ---- eviction ---------------------------------------------------------- */

/* Tries to take the stripe lock of a linked item seen from the class side.
 * Returns the lock (held) and its hash, or NULL when busy. */
static pthread_mutex_t *slab_try_stripe(struct storage *st, struct item *it, uint64_t *hv)
{
    *hv = storage_hash(it->data, it->nkey);
    pthread_mutex_t *m = stripe_lock_of(st, *hv);
    if (pthread_mutex_trylock(m) != 0) {
        return NULL;
    }
    return m;
}

/* Removes a dead item met by eviction or the crawler. The class lock and the
 * item's stripe lock are held. Returns whether its chunk was freed. */
static bool slab_drop_dead_locked(struct storage *st, struct slab_class *cls, struct item *it,
                                  uint64_t hv, bool crawler)
{
    bool unfetched = !(item_iflags(it) & ITEM_FETCHED);
    bool freed = item_refcount(it) == 1;
    item_unlink_cls_locked(st, cls, it, hv);
    if (crawler) {
        cls->crawler_reclaimed++;
    } else if (freed) {
        cls->reclaimed++;
        if (unfetched) {
            cls->expired_unfetched++;
        }
    }
    return freed;
}

/* by_policy: evicted by S3-FIFO (counted in the class's eviction age), not
 * because its page was taken. */
static void slab_evict_locked(struct storage *st, struct slab_class *cls, struct item *it,
                              uint64_t hv, rel_time_t now, bool by_policy)
{
    rel_time_t t = __atomic_load_n(&it->time, __ATOMIC_RELAXED);
    cls->evicted++;
    if (__atomic_load_n(&it->exptime, __ATOMIC_RELAXED) != 0) {
        cls->evicted_nonzero++;
    }
    cls->evicted_time = now > t ? now - t : 0;
    if (!(item_iflags(it) & ITEM_FETCHED)) {
        cls->evicted_unfetched++;
    }
    if (by_policy) {
        uint64_t next = __atomic_load_n(&st->next_cas, __ATOMIC_RELAXED);
        uint64_t cas = __atomic_load_n(&it->cas, __ATOMIC_RELAXED);
        uint64_t age = next > cas ? next - cas : 0;
        cls->evict_age = cls->evict_cas == 0 ? age : cls->evict_age - cls->evict_age / 8 + age / 8;
        cls->evict_cas = next;
    }
    item_unlink_cls_locked(st, cls, it, hv);
}

/* Under -M: walks the list from where it stopped for dead items only. */
static void slab_reclaim_walk_locked(struct storage *st, struct slab_class *cls, rel_time_t now)
{
    uint64_t n = cls->number;
    uint64_t limit = n < SLAB_NOEVICT_WALK ? n : SLAB_NOEVICT_WALK;
    for (uint64_t i = 0; i < limit && cls->free_head == NULL; i++) {
        struct item *it = cls->hand != NULL ? cls->hand : cls->tail;
        if (it == NULL) {
            break;
        }
        if (item_state(st, it, now) != ITEM_ALIVE) {
            uint64_t hv;
            pthread_mutex_t *m = slab_try_stripe(st, it, &hv);
            if (m != NULL) {
                /* Unlinking moves the hand past the item. */
                slab_drop_dead_locked(st, cls, it, hv, false);
                pthread_mutex_unlock(m);
                continue;
            }
        }
        cls->hand = it->q_newer;
    }
}

/* Whether the next eviction comes from the small queue: it holds more than
 * its share of the class, or main is empty. */
static bool slab_small_due_locked(const struct slab_class *cls)
{
    if (cls->nsmall == 0) {
        return false;
    }
    uint64_t cap = (uint64_t)cls->npages * cls->perpage;
    return cls->nsmall * SLAB_SMALL_DIV > cap || cls->nsmall == cls->number;
}

/* Runs S3-FIFO (SOSP'23) until one chunk is free; returns whether one is.
 *
 * Small queue (probation): its oldest item moves to main if it was read
 * while in small, else it is evicted and its key's fingerprint goes to the
 * ghost. Main queue: CLOCK; its oldest item, if read since it was last
 * looked at, loses one count and goes back to the head, else it is evicted.
 * Dead items met are reclaimed first; items someone references, or whose
 * stripe is busy, go back to the head of their queue. */
static bool slab_evict_run_locked(struct storage *st, struct slab_class *cls, rel_time_t now)
{
    if (st->opts.no_evict) {
        slab_reclaim_walk_locked(st, cls, now);
        return cls->free_head != NULL;
    }
    /* Each item passes at most ITEM_FREQ_MAX + 2 times (small, then main
     * once per count), so this bounds a round where everything is busy. */
    uint64_t limit = (ITEM_FREQ_MAX + 2) * cls->number + 2;
    for (uint64_t i = 0; i < limit && cls->free_head == NULL; i++) {
        bool small = slab_small_due_locked(cls);
        struct item *it = small ? cls->tail : queue_main_tail(cls);
        if (it == NULL) {
            break;
        }
        uint64_t hv;
        pthread_mutex_t *m;
        if (item_state(st, it, now) != ITEM_ALIVE) {
            m = slab_try_stripe(st, it, &hv);
            if (m != NULL) {
                slab_drop_dead_locked(st, cls, it, hv, false);
                pthread_mutex_unlock(m);
                continue;
            }
        } else {
            uint8_t f = __atomic_load_n(&it->freq, __ATOMIC_RELAXED);
            if (small && f >= SLAB_PROMOTE_FREQ) {
                __atomic_store_n(&it->freq, 0, __ATOMIC_RELAXED);
                queue_remove_locked(cls, it);
                queue_push_main_locked(cls, it);
                continue;
            }
            if (!small && f > 0) {
                __atomic_store_n(&it->freq, (uint8_t)(f - 1), __ATOMIC_RELAXED);
                queue_remove_locked(cls, it);
                queue_push_main_locked(cls, it);
                continue;
            }
            if (item_refcount(it) == 1 && (m = slab_try_stripe(st, it, &hv)) != NULL) {
                bool evicted = item_refcount(it) == 1;
                if (evicted) {
                    if (small) {
                        ghost_add_locked(cls, hv);
                    }
                    slab_evict_locked(st, cls, it, hv, now, true);
                }
                pthread_mutex_unlock(m);
                if (evicted) {
                    continue;
                }
            }
        }
        /* Busy: to the head of its queue. */
        queue_remove_locked(cls, it);
        if (small) {
            queue_push_small_locked(cls, it);
        } else {
            queue_push_main_locked(cls, it);
        }
    }
    return cls->free_head != NULL;
}

/* ---- page stealing ----------------------------------------------------- */

/* Empties one page of the victim class: every chunk must be free, or hold a
 * linked item nobody else references (a live one only when eviction is
 * allowed). Returns whether the page is now entirely on the free list. */
static bool slab_empty_page_locked(struct storage *st, struct slab_class *cls, char *page,
                                   rel_time_t now)
{
    for (uint32_t i = 0; i < cls->perpage; i++) {
        struct item *it = (struct item *)(page + (size_t)i * cls->size);
        uint8_t fl = item_iflags(it);
        if (fl & ITEM_FREE) {
            continue;
        }
        if (!(fl & ITEM_LINKED) || item_refcount(it) != 1) {
            return false;
        }
        if (st->opts.no_evict && item_state(st, it, now) == ITEM_ALIVE) {
            return false;
        }
    }
    for (uint32_t i = 0; i < cls->perpage; i++) {
        struct item *it = (struct item *)(page + (size_t)i * cls->size);
        if (item_iflags(it) & ITEM_FREE) {
            continue;
        }
        uint64_t hv;
        pthread_mutex_t *m = slab_try_stripe(st, it, &hv);
        if (m == NULL) {
            return false;
        }
        if (item_refcount(it) != 1) {
            pthread_mutex_unlock(m);
            return false;
        }
        if (item_state(st, it, now) != ITEM_ALIVE) {
            slab_drop_dead_locked(st, cls, it, hv, false);
        } else {
            slab_evict_locked(st, cls, it, hv, now, false);
        }
        pthread_mutex_unlock(m);
    }
    return true;
}

/* How long an item lasts in the class before eviction, in stores (the
 * global CAS sequence): the running average age of the items it evicted
 * (from either queue), plus the stores since its last eviction, so a class
 * that stopped evicting grows older. A class that never evicted reports the
 * age of its oldest item. UINT64_MAX when the class has no item.
 *
 * Not the age of the oldest item: the main queue keeps items that are read
 * for as long as they are, so a class full of hot items would look idle and
 * lose its pages (and those hot items). */
static uint64_t slab_age_locked(struct storage *st, struct slab_class *cls)
{
    if (cls->tail == NULL) {
        return UINT64_MAX;
    }
    uint64_t next = __atomic_load_n(&st->next_cas, __ATOMIC_RELAXED);
    if (cls->evict_cas != 0) {
        return cls->evict_age + (next > cls->evict_cas ? next - cls->evict_cas : 0);
    }
    uint64_t cas = __atomic_load_n(&cls->tail->cas, __ATOMIC_RELAXED);
    struct item *mt = queue_main_tail(cls);
    if (mt != NULL) {
        uint64_t mcas = __atomic_load_n(&mt->cas, __ATOMIC_RELAXED);
        cas = mcas < cas ? mcas : cas;
    }
    return next > cas ? next - cas : 0;
}

/* Stores since the class last evicted (its age as slab_age_locked gives it if
 * it never did). */
static uint64_t slab_idle_locked(struct storage *st, struct slab_class *cls)
{
    if (cls->evict_cas == 0) {
        return slab_age_locked(st, cls);
    }
    uint64_t next = __atomic_load_n(&st->next_cas, __ATOMIC_RELAXED);
    return next > cls->evict_cas ? next - cls->evict_cas : 0;
}

/* Empties one of the first pages tried of the victim class and takes it out
 * of the class. The caller holds the victim's lock. */
static char *slab_take_page_locked(struct storage *st, struct slab_class *cls, rel_time_t now)
{
    size_t attempts = cls->npages < SLAB_STEAL_PAGES ? cls->npages : SLAB_STEAL_PAGES;
    for (size_t a = 0; a < attempts; a++) {
        size_t idx = cls->steal_next++ % cls->npages;
        char *page = cls->pages[idx];
        if (!slab_empty_page_locked(st, cls, page, now)) {
            continue;
        }
        for (uint32_t i = 0; i < cls->perpage; i++) {
            slab_free_remove_locked(cls, (struct item *)(page + (size_t)i * cls->size));
        }
        cls->pages[idx] = cls->pages[cls->npages - 1];
        __atomic_store_n(&cls->npages, cls->npages - 1, __ATOMIC_RELAXED);
        return page;
    }
    return NULL;
}

/* Takes a page away from another class for class `want`. The caller holds no
 * class lock. With min_age 0 (the class cannot free anything itself), tries
 * the classes whose pages hold the fewest items, so that the move costs as
 * few items as it can (a class of large items, or one whose page is mostly
 * free, before a full class of small ones). Otherwise only the class that
 * has gone longest without evicting (slab_idle_locked), if that is more than
 * SLAB_REBALANCE_RATIO times min_age. Returns the page, no longer owned by
 * any class, or NULL. */
static char *slab_steal_page(struct storage *st, unsigned want, rel_time_t now, uint64_t min_age)
{
    bool tried[STORAGE_MAX_CLASSES + 1] = {false};
    tried[want] = true;
    unsigned rounds = SLAB_STEAL_CLASSES;
    if (min_age != 0) {
        unsigned victim = 0;
        uint64_t oldest = 0;
        for (unsigned c = 1; c <= st->nclasses; c++) {
            struct slab_class *cls = &st->classes[c];
            if (c == want || __atomic_load_n(&cls->npages, __ATOMIC_RELAXED) == 0) {
                continue;
            }
            pthread_mutex_lock(&cls->lock);
            uint64_t age = 0;
            if (cls->npages > 0 && slab_idle_locked(st, cls) > min_age) {
                age = slab_age_locked(st, cls);
            }
            pthread_mutex_unlock(&cls->lock);
            if (age > oldest) {
                oldest = age;
                victim = c;
            }
        }
        if (victim == 0 || oldest / SLAB_REBALANCE_RATIO <= min_age) {
            return NULL;
        }
        for (unsigned c = 1; c <= st->nclasses; c++) {
            tried[c] = c != victim;
        }
        rounds = 1;
    }
    for (unsigned round = 0; round < rounds; round++) {
        unsigned victim = 0;
        uint64_t least = UINT64_MAX;
        for (unsigned c = 1; c <= st->nclasses; c++) {
            size_t np = __atomic_load_n(&st->classes[c].npages, __ATOMIC_RELAXED);
            if (tried[c] || np == 0) {
                continue;
            }
            uint64_t per_page = __atomic_load_n(&st->classes[c].number, __ATOMIC_RELAXED) / np;
            if (per_page < least) {
                least = per_page;
                victim = c;
            }
        }
        if (victim == 0) {
            return NULL;
        }
        tried[victim] = true;
        struct slab_class *cls = &st->classes[victim];
        pthread_mutex_lock(&cls->lock);
        char *page = cls->npages > 0 ? slab_take_page_locked(st, cls, now) : NULL;
        pthread_mutex_unlock(&cls->lock);
        if (page != NULL) {
            return page;
        }
    }
    return NULL;
}

/* ---- allocation -------------------------------------------------------- */

/* Whether it is time for the class to compare its age with the others. */
static bool slab_rebalance_due_locked(struct storage *st, struct slab_class *cls)
{
    if (st->opts.no_evict || cls->tail == NULL) {
        return false;
    }
    if (cls->rebalance_countdown > 0) {
        cls->rebalance_countdown--;
        return false;
    }
    cls->rebalance_countdown =
        cls->perpage < SLAB_REBALANCE_EVERY ? cls->perpage : SLAB_REBALANCE_EVERY;
    return true;
}

/* Adds a stolen page to the class, or gives it back to the budget. */
static bool slab_adopt_page_locked(struct storage *st, struct slab_class *cls, char *page)
{
    if (slab_add_page_locked(st, cls, page)) {
        return true;
    }
    SLAB_UNPOISON(page, st->page_size);
    free(page);
    slab_page_unreserve(st);
    return false;
}

struct item *slab_alloc(struct storage *st, unsigned clsid, rel_time_t now)
{
    struct slab_class *cls = &st->classes[clsid];
    pthread_mutex_lock(&cls->lock);
    for (int round = 0; round < SLAB_ALLOC_ROUNDS; round++) {
        if (cls->free_head != NULL) {
            struct item *it = slab_free_pop_locked(cls, clsid);
            pthread_mutex_unlock(&cls->lock);
            return it;
        }
        if (slab_grow_locked(st, cls)) {
            continue;
        }
        if (slab_rebalance_due_locked(st, cls)) {
            uint64_t age = slab_age_locked(st, cls);
            pthread_mutex_unlock(&cls->lock);
            char *page = slab_steal_page(st, clsid, now, age > 0 ? age : 1);
            pthread_mutex_lock(&cls->lock);
            if (page != NULL && slab_adopt_page_locked(st, cls, page)) {
                continue;
            }
        }
        if (slab_evict_run_locked(st, cls, now)) {
            continue;
        }
        pthread_mutex_unlock(&cls->lock);
        char *page = slab_steal_page(st, clsid, now, 0);
        pthread_mutex_lock(&cls->lock);
        if (page == NULL || !slab_adopt_page_locked(st, cls, page)) {
            break;
        }
    }
    cls->outofmemory++;
    pthread_mutex_unlock(&cls->lock);
    return NULL;
}

/* ---- expiry crawler ---------------------------------------------------- */

static bool slab_crawl_class(struct storage *st, struct slab_class *cls, rel_time_t now)
{
    pthread_mutex_lock(&cls->lock);
    if (!cls->crawling) {
        bool due = now >= cls->crawl_next || (cls->next_expiry != 0 && cls->next_expiry <= now);
        if (!due || cls->tail == NULL) {
            pthread_mutex_unlock(&cls->lock);
            return false;
        }
        cls->crawling = true;
        cls->crawl = cls->tail;
        cls->crawl_found = 0;
        cls->crawl_min_exp = 0;
        cls->next_expiry = 0; /* items linked during the pass fold in again */
    }
    for (unsigned i = 0; i < SLAB_CRAWL_BATCH && cls->crawl != NULL; i++) {
        struct item *it = cls->crawl;
        if (item_state(st, it, now) != ITEM_ALIVE) {
            uint64_t hv;
            pthread_mutex_t *m = slab_try_stripe(st, it, &hv);
            if (m != NULL) {
                /* Unlinking moves the crawler past the item. */
                slab_drop_dead_locked(st, cls, it, hv, true);
                pthread_mutex_unlock(m);
                cls->crawl_found++;
                continue;
            }
        }
        cls->crawl_min_exp =
            earliest(cls->crawl_min_exp, __atomic_load_n(&it->exptime, __ATOMIC_RELAXED));
        cls->crawl = it->q_newer;
    }
    bool more = cls->crawl != NULL;
    if (!more) {
        cls->crawling = false;
        cls->next_expiry = earliest(cls->next_expiry, cls->crawl_min_exp);
        if (cls->crawl_found > 0) {
            cls->crawl_backoff = 1;
        } else if (cls->crawl_backoff < SLAB_CRAWL_BACKOFF_MAX) {
            cls->crawl_backoff *= 2;
        }
        cls->crawl_next = now + cls->crawl_backoff;
    }
    pthread_mutex_unlock(&cls->lock);
    return more;
}

bool slab_crawl(struct storage *st, rel_time_t now)
{
    bool more = false;
    for (unsigned c = 1; c <= st->nclasses; c++) {
        if (__atomic_load_n(&st->classes[c].number, __ATOMIC_RELAXED) == 0 &&
            !st->classes[c].crawling) {
            continue;
        }
        more |= slab_crawl_class(st, &st->classes[c], now);
    }
    return more;
}

void slab_crawl_schedule(struct storage *st, rel_time_t when)
{
    for (unsigned c = 1; c <= st->nclasses; c++) {
        struct slab_class *cls = &st->classes[c];
        pthread_mutex_lock(&cls->lock);
        cls->crawl_next = when;
        cls->crawl_backoff = 1;
        pthread_mutex_unlock(&cls->lock);
    }
}

/*
 * seg.c - the segment log: where items live, and how memory is taken back.
 *
 * Memory. The arena is one address range reserved at start (PROT_NONE, so
 * it costs nothing) and made usable one segment (1 MiB, or -I when larger)
 * at a time, up to the memory limit. Items are appended to a segment one
 * after another at 2-byte alignment: no size classes, so no rounding up and
 * no memory stranded in a class when value sizes change.
 *
 * Eviction is S3-FIFO (Yang et al., SOSP'23) at segment granularity, in the
 * way Segcache (NSDI'21) evicts: a new item is appended to the small queue's
 * active segment, or to the main queue's when the ghost remembers its key.
 * When no segment is free, the oldest full segment of the small queue (when
 * that queue holds more than 1/SEG_SMALL_DIV of the segments) or else of the
 * main queue is emptied: each live item read since it was stored (or marked
 * ITEM_MAIN) is copied to the main queue's active segment, the others are
 * evicted (from the small queue, into the ghost). A copy from the main queue
 * costs one access count (CLOCK's second chance). The emptied segment is
 * free once its last reference is released.
 *
 * Once a copy has found no room, one free segment (the reserve) is kept
 * for those copies, so emptying a segment never needs the memory it is
 * about to give back. Until then every segment of the limit holds items: a
 * cache that is only written never pays for the reserve, and the first copy
 * without room costs one item (evicted, its key into the ghost, so its next
 * store goes to main). The background thread evicts ahead once the active
 * segment is three quarters full, so that a store rarely has to empty a
 * segment itself. Under -M the reserve is kept from the start, and nothing
 * is evicted: the segment with the fewest live bytes is compacted instead,
 * when its live items fit in the room left, else the allocation fails.
 *
 * Expiry. Each segment keeps the largest exptime and CAS of its items;
 * storage_maintain() empties a segment as soon as every item in it has
 * expired or been flushed, or none is left, looking at segment summaries
 * only, never at the items of segments that are still live.
 *
 * Locks. seg_lock (a leaf) guards the lists and the active segments, and is
 * held only for list changes and appends; emptying a segment happens without
 * it, taking each item's stripe lock. A caller that already holds a stripe
 * lock passes it as `held`: items under that lock are handled directly, and
 * other stripe locks are only tried, since waiting for one while holding
 * another could deadlock with a thread doing the same the other way round.
 *
 * References are counted per segment (seg.refs): an allocation holds one
 * until released, and so does every lookup hit. A segment with items still
 * pending (allocated, not yet linked or released) is never emptied; an
 * emptied segment with references waits on the drain list.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "storage_int.h"

/* Under AddressSanitizer the bytes of a free segment are poisoned, so a
 * read through a released reference is reported. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define SEG_POISON(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#define SEG_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define SEG_POISON(p, n)   ((void)(p), (void)(n))
#define SEG_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* The small queue's share of the segments (S3-FIFO: 10%). */
#define SEG_SMALL_DIV  10u
#define SEG_GHOST_WAYS 8u
/* Segments emptied per allocation before it fails. */
#define SEG_ALLOC_ROUNDS 16
/* Oldest segments looked at for a victim without pending items. */
#define SEG_VICTIM_SCAN 8
/* Tries of another stripe lock while holding one. */
#define SEG_TRYLOCK_SPINS 64
/* Segment summaries storage_maintain() looks at per call. */
#define SEG_MAINTAIN_BATCH 256u
/* Largest arena reserved: item references are 32-bit, in units of the item
 * alignment: 2 bytes up to 8 GiB, 4 up to 16 GiB, 8 up to 32 GiB. */
#define SEG_ARENA_MAX ((size_t)32 << 30)

static size_t align8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

/* ---- reporting classes --------------------------------------------------- */

/* memcached's chunk sizes for the same -n and -f: stats report each item in
 * the class memcached would have put it in, and per-class counters are kept
 * for those. Items are not rounded up to them. */
#define SEG_COMPAT_HEADER 48u

static int seg_classes(struct storage *st)
{
    size_t size = align8(SEG_COMPAT_HEADER + st->opts.chunk_min);
    if (size < SEG_COMPAT_HEADER + 8) {
        size = SEG_COMPAT_HEADER + 8;
    }
    if (size >= st->item_max) {
        return STORAGE_EINVAL;
    }
    unsigned id = 1;
    while (id < STORAGE_MAX_CLASSES &&
           (double)size <= (double)st->item_max / st->opts.growth_factor) {
        st->class_size[id] = (uint32_t)size;
        id++;
        size_t next = align8((size_t)((double)size * st->opts.growth_factor));
        size = next > size ? next : size + 8;
    }
    st->class_size[id] = (uint32_t)st->item_max;
    st->nclasses = id;
    return 0;
}

unsigned seg_class_for(const struct storage *st, size_t total)
{
    if (total > st->opts.item_size_max) {
        return 0;
    }
    unsigned lo = 1;
    unsigned hi = st->nclasses;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (st->class_size[mid] >= total) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return lo;
}

/* ---- setup --------------------------------------------------------------- */

int seg_setup(struct storage *st)
{
    int rc = seg_classes(st);
    if (rc != 0) {
        return rc;
    }
    size_t need = st->pages_max == SIZE_MAX ? 1 : st->pages_max + 1;
    /* The finest alignment whose arena (2^32 units) holds the limit. */
    st->ref_shift = 3;
    while (st->ref_shift > 1 && st->pages_max != SIZE_MAX &&
           need <= (SEG_ARENA_MAX >> (4 - st->ref_shift)) / st->page_size) {
        st->ref_shift--;
    }
    size_t want = (SEG_ARENA_MAX >> (3 - st->ref_shift)) / st->page_size;
    void *p = MAP_FAILED;
    while (p == MAP_FAILED && want >= need) {
        p = mmap(NULL, want * st->page_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
        if (p == MAP_FAILED) {
            want /= 2;
        }
    }
    if (p == MAP_FAILED) {
        return STORAGE_ENOMEM;
    }
    st->segs = calloc(want, sizeof(*st->segs));
    if (st->segs == NULL) {
        munmap(p, want * st->page_size);
        return STORAGE_ENOMEM;
    }
    st->arena = p;
    st->nsegs_max = (uint32_t)want;
    st->arena_bytes = want * st->page_size;
    st->free_head = st->reserve = SEG_NONE;
    st->small_act = st->main_act = SEG_NONE;
    st->small_old = st->small_new = st->main_old = st->main_new = SEG_NONE;
    st->drain_head = SEG_NONE;
    pthread_mutex_init(&st->seg_lock, NULL);
    pthread_mutex_init(&st->ghost_lock, NULL);
    return 0;
}

void seg_teardown(struct storage *st)
{
    if (st->arena != NULL) {
        SEG_UNPOISON(st->arena, (size_t)st->seg_high * st->page_size);
        munmap(st->arena, st->arena_bytes);
        st->arena = NULL;
    }
    free(st->segs);
    st->segs = NULL;
    free(st->ghost);
    st->ghost = NULL;
    pthread_mutex_destroy(&st->seg_lock);
    pthread_mutex_destroy(&st->ghost_lock);
}

static char *seg_base(const struct storage *st, uint32_t s)
{
    return st->arena + (size_t)s * st->page_size;
}

/* Appends room for `span` bytes to segment s (SEG_NONE: none) under
 * seg_lock, counted pending until written, and with a reference for a
 * caller's allocation; NULL when it does not fit. */
static struct item *seg_append_locked(struct storage *st, uint32_t s, size_t span, bool ref)
{
    if (s == SEG_NONE || st->segs[s].used + span > st->page_size) {
        return NULL;
    }
    struct seg *g = &st->segs[s];
    struct item *it = (struct item *)(seg_base(st, s) + g->used);
    g->used += (uint32_t)span;
    if (ref) {
        __atomic_add_fetch(&g->refs, 1, __ATOMIC_ACQ_REL);
    }
    __atomic_add_fetch(&g->pending, 1, __ATOMIC_ACQ_REL);
    return it;
}

/* ---- lists (under seg_lock) ---------------------------------------------- */

static void fifo_push(struct storage *st, uint32_t *oldest, uint32_t *newest, uint32_t s)
{
    struct seg *g = &st->segs[s];
    g->next = SEG_NONE;
    g->prev = *newest;
    if (*newest != SEG_NONE) {
        st->segs[*newest].next = s;
    } else {
        *oldest = s;
    }
    *newest = s;
}

/* Puts s back as the oldest of its FIFO. */
static void fifo_push_oldest(struct storage *st, uint32_t *oldest, uint32_t *newest, uint32_t s)
{
    struct seg *g = &st->segs[s];
    g->prev = SEG_NONE;
    g->next = *oldest;
    if (*oldest != SEG_NONE) {
        st->segs[*oldest].prev = s;
    } else {
        *newest = s;
    }
    *oldest = s;
}

static void fifo_remove(struct storage *st, uint32_t *oldest, uint32_t *newest, uint32_t s)
{
    struct seg *g = &st->segs[s];
    if (g->prev != SEG_NONE) {
        st->segs[g->prev].next = g->next;
    } else {
        *oldest = g->next;
    }
    if (g->next != SEG_NONE) {
        st->segs[g->next].prev = g->prev;
    } else {
        *newest = g->prev;
    }
    g->next = g->prev = SEG_NONE;
}

static void queue_remove_locked(struct storage *st, uint32_t s)
{
    if (st->segs[s].state == SEG_SMALL) {
        fifo_remove(st, &st->small_old, &st->small_new, s);
        st->nsmall--;
    } else {
        fifo_remove(st, &st->main_old, &st->main_new, s);
        st->nmain--;
    }
}

static void queue_push_locked(struct storage *st, uint32_t s, bool oldest)
{
    struct seg *g = &st->segs[s];
    if (g->small) {
        g->state = SEG_SMALL;
        (oldest ? fifo_push_oldest : fifo_push)(st, &st->small_old, &st->small_new, s);
        st->nsmall++;
    } else {
        g->state = SEG_MAIN;
        (oldest ? fifo_push_oldest : fifo_push)(st, &st->main_old, &st->main_new, s);
        st->nmain++;
    }
}

/* One segment of the limit is held back (the reserve) for moving items
 * out of a victim, once the limit is more than a few segments and a copy has
 * found no room (under -M, from the start: compaction needs it): either not
 * committed yet, or a free segment kept in st->reserve. */
static bool seg_keep_reserve(const struct storage *st)
{
    return st->pages_max >= 4 && st->reserve == SEG_NONE &&
           (__atomic_load_n(&st->reserve_wanted, __ATOMIC_RELAXED) || st->opts.no_evict);
}

static size_t seg_room_locked(const struct storage *st)
{
    return st->nsegs < st->pages_max ? st->pages_max - st->nsegs : 0;
}

/* A free segment goes to the reserve when that is wanted and empty and no
 * memory is left uncommitted, back to the system when the limit was lowered
 * below what is committed, else to the free list. */
static void seg_release_locked(struct storage *st, uint32_t s)
{
    struct seg *g = &st->segs[s];
    SEG_POISON(seg_base(st, s), st->page_size);
    g->used = 0;
    g->state = SEG_FREE;
    if (seg_keep_reserve(st) && seg_room_locked(st) == 0 && st->nsegs <= st->pages_max) {
        st->reserve = s;
        return;
    }
    if (st->nsegs > st->pages_max) {
        /* Lowered limit: give the memory back; a later commit may reuse the
         * slot. */
        madvise(seg_base(st, s), st->page_size, MADV_DONTNEED);
        mprotect(seg_base(st, s), st->page_size, PROT_NONE);
        g->state = SEG_UNUSED;
        st->nsegs--;
        return;
    }
    g->next = st->free_head;
    st->free_head = s;
    st->nfree++;
}

static uint32_t seg_commit_locked(struct storage *st)
{
    /* The lowest index never committed, or given back. */
    uint32_t s = 0;
    while (s < st->nsegs_max && st->segs[s].state != SEG_UNUSED) {
        s++;
    }
    if (s >= st->nsegs_max ||
        mprotect(seg_base(st, s), st->page_size, PROT_READ | PROT_WRITE) != 0) {
        __atomic_fetch_add(&st->malloc_fails, 1, __ATOMIC_RELAXED);
        return SEG_NONE;
    }
    SEG_UNPOISON(seg_base(st, s), st->page_size);
    st->nsegs++;
    if (s + 1 > st->seg_high) {
        st->seg_high = s + 1;
    }
    st->segs[s].state = SEG_FREE;
    return s;
}

/* A segment to append to: the free list, else a newly committed one while
 * the limit allows (less the reserve); for moves (use_reserve) the reserve
 * too. */
static uint32_t seg_take_locked(struct storage *st, bool use_reserve)
{
    if (seg_keep_reserve(st) && seg_room_locked(st) == 0 && st->free_head != SEG_NONE) {
        uint32_t s = st->free_head;
        st->free_head = st->segs[s].next;
        st->nfree--;
        st->reserve = s;
    }
    if (st->free_head != SEG_NONE) {
        uint32_t s = st->free_head;
        st->free_head = st->segs[s].next;
        st->nfree--;
        SEG_UNPOISON(seg_base(st, s), st->page_size);
        return s;
    }
    size_t held_back = !use_reserve && seg_keep_reserve(st) ? 1 : 0;
    if (seg_room_locked(st) > held_back) {
        uint32_t s = seg_commit_locked(st);
        if (s != SEG_NONE) {
            return s;
        }
    }
    if (use_reserve && st->reserve != SEG_NONE) {
        uint32_t s = st->reserve;
        st->reserve = SEG_NONE;
        SEG_UNPOISON(seg_base(st, s), st->page_size);
        return s;
    }
    return SEG_NONE;
}

static void seg_open_locked(struct storage *st, uint32_t s, bool small, rel_time_t now)
{
    struct seg *g = &st->segs[s];
    g->used = 0;
    g->state = SEG_ACTIVE;
    g->small = small;
    g->next = g->prev = SEG_NONE;
    __atomic_store_n(&g->live, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&g->max_exp, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&g->never, false, __ATOMIC_RELAXED);
    __atomic_store_n(&g->max_cas, 0, __ATOMIC_RELAXED);
    g->created = now;
}

/* Frees drained segments whose references are gone; returns how many. */
static unsigned seg_sweep_drain_locked(struct storage *st)
{
    unsigned n = 0;
    uint32_t *pp = &st->drain_head;
    while (*pp != SEG_NONE) {
        uint32_t s = *pp;
        if (__atomic_load_n(&st->segs[s].refs, __ATOMIC_ACQUIRE) == 0) {
            *pp = st->segs[s].next;
            seg_release_locked(st, s);
            n++;
        } else {
            pp = &st->segs[s].next;
        }
    }
    return n;
}

/* After emptying: free now, or drain until the last reference goes. */
static void seg_retire_locked(struct storage *st, uint32_t s)
{
    if (__atomic_load_n(&st->segs[s].refs, __ATOMIC_ACQUIRE) == 0) {
        seg_release_locked(st, s);
    } else {
        st->segs[s].state = SEG_DRAIN;
        st->segs[s].next = st->drain_head;
        st->drain_head = s;
    }
}

/* ---- ghost --------------------------------------------------------------- */

/* The ghost remembers keys the small queue evicted unread, so that a key
 * coming back soon after (its set followed the miss) goes straight to the
 * main queue. It holds about as many fingerprints as the cache holds items,
 * between half and all of that (the bucket count is a power of two); a
 * bucket keeps its newest SEG_GHOST_WAYS. 2 bytes per entry, outside -m like
 * the hash table. */

static uint16_t ghost_fp(uint64_t hv)
{
    uint16_t fp = (uint16_t)(hv >> 48);
    return fp != 0 ? fp : 1;
}

static uint16_t *ghost_bucket(struct storage *st, uint64_t hv)
{
    return st->ghost + (size_t)((hv >> 16) & (st->ghost_buckets - 1)) * SEG_GHOST_WAYS;
}

static void ghost_fit_locked(struct storage *st)
{
    uint64_t want = __atomic_load_n(&st->curr_items, __ATOMIC_RELAXED) / SEG_GHOST_WAYS;
    uint32_t nb = 1;
    while ((uint64_t)nb * 2 <= want && nb < ((uint32_t)1 << 30)) {
        nb *= 2;
    }
    if (nb <= st->ghost_buckets && nb * 4 > st->ghost_buckets) {
        return;
    }
    uint16_t *g = calloc((size_t)nb * SEG_GHOST_WAYS, sizeof(*g));
    if (g == NULL) {
        return; /* keep the old one */
    }
    free(st->ghost);
    st->ghost = g;
    __atomic_store_n(&st->ghost_buckets, nb, __ATOMIC_RELAXED);
}

static void ghost_add(struct storage *st, uint64_t hv)
{
    pthread_mutex_lock(&st->ghost_lock);
    ghost_fit_locked(st);
    if (st->ghost != NULL) {
        uint16_t *b = ghost_bucket(st, hv);
        memmove(b + 1, b, (SEG_GHOST_WAYS - 1) * sizeof(*b));
        b[0] = ghost_fp(hv);
    }
    pthread_mutex_unlock(&st->ghost_lock);
}

bool seg_ghost_take(struct storage *st, uint64_t hv)
{
    bool hit = false;
    if (__atomic_load_n(&st->ghost_buckets, __ATOMIC_RELAXED) == 0) {
        return false;
    }
    pthread_mutex_lock(&st->ghost_lock);
    if (st->ghost != NULL) {
        uint16_t *b = ghost_bucket(st, hv);
        uint16_t fp = ghost_fp(hv);
        for (unsigned i = 0; i < SEG_GHOST_WAYS; i++) {
            if (b[i] == fp) {
                memmove(b + i, b + i + 1, (SEG_GHOST_WAYS - 1 - i) * sizeof(*b));
                b[SEG_GHOST_WAYS - 1] = 0;
                st->ghost_hits++;
                hit = true;
                break;
            }
        }
    }
    pthread_mutex_unlock(&st->ghost_lock);
    return hit;
}

/* ---- summaries ------------------------------------------------------------ */

static void atomic_max_u32(uint32_t *p, uint32_t v)
{
    uint32_t cur = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (cur < v &&
           !__atomic_compare_exchange_n(p, &cur, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

static void atomic_max_u64(uint64_t *p, uint64_t v)
{
    uint64_t cur = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (cur < v &&
           !__atomic_compare_exchange_n(p, &cur, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

void seg_note_item(struct storage *st, const struct item *it)
{
    struct seg *g = &st->segs[item_seg(st, it)];
    rel_time_t exp = item_exptime(it);
    if (exp == 0) {
        __atomic_store_n(&g->never, true, __ATOMIC_RELAXED);
    } else {
        atomic_max_u32(&g->max_exp, exp);
        exp_hint_lower(st, exp);
    }
    atomic_max_u64(&g->max_cas, item_cas(it));
}

/* Whether every item linked in s has expired or been flushed by now (from
 * the summary: no item needs to be read). */
static bool seg_all_dead(const struct storage *st, const struct seg *g, rel_time_t now)
{
    if (__atomic_load_n(&g->live, __ATOMIC_ACQUIRE) == 0) {
        return true;
    }
    uint64_t oldest = __atomic_load_n(&st->oldest_cas, __ATOMIC_RELAXED);
    if (oldest != 0 && __atomic_load_n(&g->max_cas, __ATOMIC_RELAXED) < oldest) {
        return true;
    }
    rel_time_t exp = __atomic_load_n(&g->max_exp, __ATOMIC_RELAXED);
    return !__atomic_load_n(&g->never, __ATOMIC_RELAXED) && exp != 0 && exp <= now;
}

/* ---- emptying a segment --------------------------------------------------- */

enum empty_mode {
    EMPTY_EVICT,   /* S3-FIFO: keep items read since stored, evict the rest */
    EMPTY_COMPACT, /* keep every live item (-M, and reclaim of dead segments) */
};

/* Room for a copy in the main queue's active segment (reserve allowed). */
static struct item *seg_alloc_move(struct storage *st, size_t span, rel_time_t now)
{
    struct item *it = NULL;
    pthread_mutex_lock(&st->seg_lock);
    for (int round = 0; round < 2 && it == NULL; round++) {
        it = seg_append_locked(st, st->main_act, span, false);
        if (it != NULL) {
            break;
        }
        if (st->main_act != SEG_NONE) {
            queue_push_locked(st, st->main_act, false);
            st->main_act = SEG_NONE;
        }
        uint32_t s = seg_take_locked(st, true);
        if (s == SEG_NONE) {
            /* Keep a reserve from now on. */
            __atomic_store_n(&st->reserve_wanted, true, __ATOMIC_RELAXED);
            break;
        }
        seg_open_locked(st, s, false, now);
        st->main_act = s;
    }
    pthread_mutex_unlock(&st->seg_lock);
    return it;
}

static void count_evicted(struct storage *st, const struct item *it, rel_time_t now)
{
    struct class_stats *c = &st->classes[item_class(st, it)];
    rel_time_t t = item_time(it, now);
    __atomic_fetch_add(&c->evicted, 1, __ATOMIC_RELAXED);
    if (item_exptime(it) != 0) {
        __atomic_fetch_add(&c->evicted_nonzero, 1, __ATOMIC_RELAXED);
    }
    __atomic_store_n(&c->evicted_time, (uint64_t)(now > t ? now - t : 0), __ATOMIC_RELAXED);
    if (!(item_iflags(it) & ITEM_FETCHED)) {
        __atomic_fetch_add(&c->evicted_unfetched, 1, __ATOMIC_RELAXED);
    }
}

void seg_count_dead(struct storage *st, const struct item *it, bool background)
{
    struct class_stats *c = &st->classes[item_class(st, it)];
    __atomic_fetch_add(background ? &c->crawler_reclaimed : &c->reclaimed, 1, __ATOMIC_RELAXED);
    if (!(item_iflags(it) & ITEM_FETCHED)) {
        __atomic_fetch_add(&c->expired_unfetched, 1, __ATOMIC_RELAXED);
    }
}

/* Moves a linked item (its stripe lock held) to the main queue's active
 * segment; false when there is no room. */
static bool seg_move_locked(struct storage *st, struct item *it, uint64_t hv, unsigned freq,
                            rel_time_t now)
{
    size_t span = item_span(st, it);
    struct item *to = seg_alloc_move(st, span, now);
    if (to == NULL) {
        return false;
    }
    item_copy(to, it);
    *item_iflagsp(to) = (uint8_t)((item_iflags(it) | ITEM_MAIN) & ~ITEM_PENDING);
    item_set_freq(to, freq);
    htab_replace(st, it, to, hv);
    __atomic_fetch_and(item_iflagsp(it), (uint8_t)~ITEM_LINKED, __ATOMIC_RELEASE);
    __atomic_fetch_sub(&st->segs[item_seg(st, it)].live, 1, __ATOMIC_RELEASE);
    __atomic_fetch_add(&st->segs[item_seg(st, to)].live, 1, __ATOMIC_RELEASE);
    seg_note_item(st, to);
    /* Written and counted: the segment may be emptied from now on. */
    __atomic_sub_fetch(&st->segs[item_seg(st, to)].pending, 1, __ATOMIC_ACQ_REL);
    __atomic_fetch_add(&st->moved, 1, __ATOMIC_RELAXED);
    return true;
}

/* Locks the stripe of hv unless it is `held`; with `held` set, only tries.
 * Returns the lock taken, `held` itself, or NULL when it could not. */
static pthread_mutex_t *seg_lock_stripe(struct storage *st, uint64_t hv, pthread_mutex_t *held)
{
    pthread_mutex_t *m = stripe_lock_of(st, hv);
    if (m == held) {
        return m;
    }
    if (held == NULL) {
        pthread_mutex_lock(m);
        return m;
    }
    for (int i = 0; i < SEG_TRYLOCK_SPINS; i++) {
        if (pthread_mutex_trylock(m) == 0) {
            return m;
        }
    }
    return NULL;
}

/* Empties segment s (not on any list, no pending items): every linked item
 * is moved or dropped. Returns false when some item's lock could not be
 * taken (the segment then still holds it). */
static bool seg_empty(struct storage *st, uint32_t s, enum empty_mode mode, bool background,
                      pthread_mutex_t *held, rel_time_t now)
{
    struct seg *g = &st->segs[s];
    char *base = seg_base(st, s);
    uint32_t used = g->used;
    bool complete = true;
    bool from_small = g->small;
    for (uint32_t off = 0; off < used;) {
        struct item *it = (struct item *)(base + off);
        off += (uint32_t)item_span(st, it);
        if (!(item_iflags(it) & ITEM_LINKED)) {
            continue;
        }
        uint64_t hv = storage_hash(item_key(it), item_nkey(it));
        pthread_mutex_t *m = seg_lock_stripe(st, hv, held);
        if (m == NULL) {
            complete = false;
            continue;
        }
        if (item_iflags(it) & ITEM_LINKED) {
            unsigned f = item_freq(it);
            if (item_state(st, it, now) != ITEM_ALIVE) {
                seg_count_dead(st, it, background);
                item_unlink_locked(st, it, hv);
            } else if (mode == EMPTY_COMPACT) {
                if (!seg_move_locked(st, it, hv, f, now)) {
                    complete = false;
                }
            } else if (from_small ? (f >= 1 || (item_iflags(it) & ITEM_MAIN)) : f >= 1) {
                if (!seg_move_locked(st, it, hv, from_small ? 0 : f - 1, now)) {
                    /* No room (the first eviction has no reserve yet): the
                     * ghost sends it back to main when it is stored again. */
                    count_evicted(st, it, now);
                    ghost_add(st, hv);
                    item_unlink_locked(st, it, hv);
                }
            } else {
                count_evicted(st, it, now);
                if (from_small) {
                    ghost_add(st, hv);
                }
                item_unlink_locked(st, it, hv);
            }
        }
        if (m != held) {
            pthread_mutex_unlock(m);
        }
    }
    return complete;
}

/* Detaches and empties one full segment to make room. Called and returns
 * with seg_lock held (dropped meanwhile). Returns whether it made progress. */
static bool seg_evict_one_locked(struct storage *st, size_t span, pthread_mutex_t *held,
                                 rel_time_t now)
{
    uint32_t v = SEG_NONE;
    enum empty_mode mode = EMPTY_EVICT;
    if (st->opts.no_evict) {
        /* Compact the segment with the fewest live items, when they fit in
         * the room left in the main queue's active segment and the reserve.
         * A segment whose items are all dead needs no room. */
        uint64_t best = UINT64_MAX;
        for (int q = 0; q < 2; q++) {
            for (uint32_t s = q == 0 ? st->small_old : st->main_old; s != SEG_NONE;
                 s = st->segs[s].next) {
                struct seg *g = &st->segs[s];
                if (__atomic_load_n(&g->pending, __ATOMIC_ACQUIRE) != 0) {
                    continue;
                }
                uint64_t live =
                    seg_all_dead(st, g, now) ? 0 : __atomic_load_n(&g->live, __ATOMIC_RELAXED);
                if (live < best) {
                    best = live;
                    v = s;
                }
            }
        }
        if (v == SEG_NONE || (best > 0 && st->reserve == SEG_NONE && seg_room_locked(st) == 0)) {
            return false;
        }
        mode = EMPTY_COMPACT;
        /* Only if its live bytes fit: measured below, without the lock. */
    } else {
        size_t total = st->nsmall + st->nmain + 1;
        bool small =
            st->small_old != SEG_NONE &&
            (st->main_old == SEG_NONE || (st->nsmall >= 2 && st->nsmall * SEG_SMALL_DIV > total));
        for (int q = 0; q < 2 && v == SEG_NONE; q++, small = !small) {
            uint32_t s = small ? st->small_old : st->main_old;
            for (int i = 0; s != SEG_NONE && i < SEG_VICTIM_SCAN; i++, s = st->segs[s].next) {
                if (__atomic_load_n(&st->segs[s].pending, __ATOMIC_ACQUIRE) == 0) {
                    v = s;
                    break;
                }
            }
        }
        if (v == SEG_NONE) {
            return false;
        }
    }
    queue_remove_locked(st, v);
    st->segs[v].state = SEG_EVICTING;
    pthread_mutex_unlock(&st->seg_lock);
    bool fits = true;
    if (mode == EMPTY_COMPACT) {
        /* The live bytes, from the items (the segment is detached, and its
         * items only ever leave it). */
        size_t live_bytes = 0;
        char *base = seg_base(st, v);
        for (uint32_t off = 0; off < st->segs[v].used;) {
            struct item *it = (struct item *)(base + off);
            off += (uint32_t)item_span(st, it);
            if ((item_iflags(it) & ITEM_LINKED) && item_state(st, it, now) == ITEM_ALIVE) {
                live_bytes += item_span(st, it);
            }
        }
        pthread_mutex_lock(&st->seg_lock);
        size_t room = st->reserve != SEG_NONE || seg_room_locked(st) > 0 ? st->page_size : 0;
        if (st->main_act != SEG_NONE) {
            room += st->page_size - st->segs[st->main_act].used;
        }
        /* Worth it only if the room it frees takes the item. */
        fits = live_bytes <= room && live_bytes + span <= st->page_size;
        pthread_mutex_unlock(&st->seg_lock);
    }
    bool done = fits && seg_empty(st, v, mode, false, held, now);
    pthread_mutex_lock(&st->seg_lock);
    if (!done) {
        /* Back as the oldest; eviction may try it again (an item whose lock
         * was busy), bounded by the caller's rounds. Compaction that does
         * not fit is no progress. */
        queue_push_locked(st, v, true);
        return fits && mode == EMPTY_EVICT;
    }
    seg_retire_locked(st, v);
    return true;
}

struct item *seg_alloc(struct storage *st, size_t span, bool main, pthread_mutex_t *held,
                       rel_time_t now)
{
    struct item *it = NULL;
    pthread_mutex_lock(&st->seg_lock);
    if (main && st->main_act == SEG_NONE && !st->opts.no_evict) {
        /* No main segment is open (copies open them): rather than a new
         * segment for one ghost-admitted item, it waits in the small queue,
         * marked ITEM_MAIN by the caller, and is copied to main from there. */
        main = false;
    }
    /* A lowered limit gives back every segment emptied above it. */
    int rounds =
        SEG_ALLOC_ROUNDS + (st->nsegs > st->pages_max ? (int)(st->nsegs - st->pages_max) : 0);
    for (int round = 0; round < rounds; round++) {
        uint32_t *act = main ? &st->main_act : &st->small_act;
        uint32_t *other = main ? &st->small_act : &st->main_act;
        if (st->opts.no_evict && *other != SEG_NONE &&
            st->segs[*other].used + span <= st->page_size &&
            (*act == SEG_NONE || st->segs[*act].used + span > st->page_size)) {
            /* -M has no queues to respect: compaction leaves its room in
             * the main queue's active segment. */
            act = other;
        }
        it = seg_append_locked(st, *act, span, true);
        if (it != NULL) {
            break;
        }
        if (*act != SEG_NONE) {
            queue_push_locked(st, *act, false);
            *act = SEG_NONE;
        }
        uint32_t s = seg_take_locked(st, false);
        if (s != SEG_NONE) {
            seg_open_locked(st, s, !main, now);
            *act = s;
            continue;
        }
        if (seg_sweep_drain_locked(st) > 0) {
            continue;
        }
        if (!seg_evict_one_locked(st, span, held, now)) {
            break;
        }
    }
    if (it == NULL) {
        /* A tiny cache may not have a segment for each queue: the other
         * queue's active segment will do. */
        it = seg_append_locked(st, main ? st->small_act : st->main_act, span, true);
    }
    pthread_mutex_unlock(&st->seg_lock);
    return it;
}

/* ---- background reclaim --------------------------------------------------- */

bool seg_maintain(struct storage *st, rel_time_t now)
{
    pthread_mutex_lock(&st->seg_lock);
    seg_sweep_drain_locked(st);
    uint32_t highest = st->seg_high;
    uint32_t s = st->expire_cursor;
    unsigned looked = 0;
    unsigned emptied = 0;
    if (highest == 0) {
        pthread_mutex_unlock(&st->seg_lock);
        return false;
    }
    if (s >= highest) {
        s = 0;
    }
    while (looked < SEG_MAINTAIN_BATCH && looked < highest) {
        struct seg *g = &st->segs[s];
        if ((g->state == SEG_SMALL || g->state == SEG_MAIN) &&
            __atomic_load_n(&g->pending, __ATOMIC_ACQUIRE) == 0 && seg_all_dead(st, g, now)) {
            queue_remove_locked(st, s);
            g->state = SEG_EVICTING;
            pthread_mutex_unlock(&st->seg_lock);
            bool done = seg_empty(st, s, EMPTY_COMPACT, true, NULL, now);
            pthread_mutex_lock(&st->seg_lock);
            if (done) {
                seg_retire_locked(st, s);
                emptied++;
            } else {
                queue_push_locked(st, s, true);
            }
        }
        looked++;
        s = s + 1 < highest ? s + 1 : 0;
    }
    st->expire_cursor = s;
    /* Evict ahead of demand: at the limit, with nothing expired to take
     * back, fill a wanted reserve, and free a segment once the small queue's
     * active one is three quarters full, so that a store rarely has to empty
     * a segment itself. */
    /* (No active segment: a store is between segments, emptying one
     * itself, and takes the one it frees.) */
    bool act_full =
        st->small_act != SEG_NONE && st->segs[st->small_act].used >= st->page_size / 4 * 3;
    if (emptied == 0 && !st->opts.no_evict &&
        ((seg_keep_reserve(st) && seg_room_locked(st) == 0) ||
         (st->nfree == 0 && act_full && seg_room_locked(st) <= (seg_keep_reserve(st) ? 1u : 0u))) &&
        st->pages_max >= 4 && st->nsmall + st->nmain > 0) {
        bool progress = seg_evict_one_locked(st, 0, NULL, now);
        pthread_mutex_unlock(&st->seg_lock);
        return progress;
    }
    pthread_mutex_unlock(&st->seg_lock);
    return emptied > 0;
}

void seg_counts(struct storage *st, uint64_t *committed, uint64_t *free_segs, uint64_t *limit)
{
    pthread_mutex_lock(&st->seg_lock);
    *limit = st->opts.maxbytes;
    *committed = st->nsegs;
    *free_segs = st->nfree + (st->reserve != SEG_NONE ? 1u : 0u);
    pthread_mutex_unlock(&st->seg_lock);
}

/*
 * storage_int.h - the storage engine's internal structures, shared by
 * storage.c (the public API), seg.c (the segment log: allocation, S3-FIFO
 * eviction by segment, expiry), htab.c (the striped, incrementally growing
 * hash table) and walk.c (dumps and restore).
 *
 * Not part of the contract: only files in src/storage/ and the storage unit
 * tests include it.
 *
 * Items are appended to 1 MiB segments (a log), packed one after another at
 * 2-byte alignment (4 when the arena is over 8 GiB, 8 over 16 GiB), with no
 * size classes and no per-item list links. An item is addressed by a 32-bit
 * reference (its offset in the arena in alignment units, plus one) in the
 * hash chain. Layout: an 18-byte header, then
 *
 *   size   field
 *   1|2|4  nbytes    value length: < 0x80 in one byte, < 0x4000 in two
 *                    (first byte 10xxxxxx), else four (11xxxxxx)
 *   0|4    flags     client flags, when not 0
 *   nkey   key
 *   nbytes value (no "\r\n": writers add it), then padding
 *
 * The header holds five fields, placed so that each is naturally aligned
 * whatever the item's address modulo 8 (item_field(); a is that address
 * modulo 8):
 *
 *   field   size  a=0  a=2  a=4  a=6
 *   word    8     0    6    4    2   CAS sequence (bits 0-47) and the low 16
 *                                    bits of the last access time (48-63);
 *                                    changed only by compare-and-swap
 *   xword   4     8    2    0    10  exptime (bits 0-28: rel_time_t, 0 =
 *                                    never, capped at 17 years), the S3-FIFO
 *                                    access count (29-30) and ITEM_X_FLAGS
 *                                    when the client flags are not 0 (31);
 *                                    changed only by compare-and-swap
 *   h_next  4     12   14   12   14  reference of the next item in the chain
 *   nkey    1     16   0    16   0   key length, 1..250
 *   iflags  1     17   1    17   1   ITEM_* bits, changed atomically
 *
 * A 20-byte key with a 16-byte value takes 56 bytes, 30/100 takes 150
 * (memcached: chunks of 96 and 192). References to items are counted per
 * segment, not per item. The reporting class is computed from the sizes
 * (seg_class_for), not stored.
 */
#ifndef MEMSTASH_STORAGE_INT_H
#define MEMSTASH_STORAGE_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "storage.h"

struct item {
    unsigned char hdr[18]; /* see item_field() */
    unsigned char rest[];
};

#define ITEM_FIXED_SIZE 18u
_Static_assert(offsetof(struct item, rest) == ITEM_FIXED_SIZE, "item fixed header is 18 bytes");

/* iflags bits. */
#define ITEM_LINKED  0x01 /* in the hash table */
#define ITEM_FETCHED 0x02 /* read at least once since it was stored */
#define ITEM_PENDING 0x04 /* allocated, not yet linked or released */
#define ITEM_NOCAS   0x08 /* engine runs without CAS: report 0 */
/* Meta protocol marks (see storage.h, "meta protocol"). */
#define ITEM_STALE      0x10 /* invalidated by md I or ms I: mg reports X */
#define ITEM_TOKEN_SENT 0x20 /* a recache token (mg W) was handed out */
#define ITEM_KEY_BINARY 0x40 /* stored by ms with a base64 (b) key */
/* Belongs in the main queue: promoted, admitted by the ghost, or replacing
 * an item that was there (its segment may still be a small one). */
#define ITEM_MAIN 0x80

/* xword: exptime, access count, flags present. */
#define ITEM_X_EXPTIME    STORAGE_EXPTIME_MAX
#define ITEM_X_FREQ_SHIFT 29
#define ITEM_X_FLAGS      (UINT32_C(1) << 31)

/* CAS sequences are 48-bit (2.8e14 stores: about 9 years at a million a
 * second); the word's high 16 bits hold the access time. */
#define ITEM_CAS_MASK   ((UINT64_C(1) << 48) - 1)
#define ITEM_TIME_SHIFT 48

/* Largest S3-FIFO access count, kept in fq's low bits. */
#define ITEM_FREQ_MAX 3u

#define STORAGE_STRIPES     1024u /* power of two; <= 2^STORAGE_HASHPOWER_MIN */
#define STORAGE_MAX_CLASSES 63u
#define STORAGE_PAGE_SIZE   ((size_t)1 << 20)

#define STORAGE_HASHPOWER_MIN 10u
#define STORAGE_HASHPOWER_MAX 32u

/* No segment (queue ends). */
#define SEG_NONE UINT32_MAX

/* Whether an item is alive, and if not why. */
enum item_state {
    ITEM_ALIVE = 0,
    ITEM_EXPIRED,
    ITEM_FLUSHED,
};

enum seg_state {
    SEG_UNUSED = 0, /* not yet part of the cache (no memory committed) */
    SEG_FREE,       /* on the free list (or the reserve) */
    SEG_ACTIVE,     /* being appended to */
    SEG_SMALL,      /* full, in the small FIFO */
    SEG_MAIN,       /* full, in the main FIFO */
    SEG_EVICTING,   /* its items are being moved or dropped */
    SEG_DRAIN,      /* emptied; waits for its last reference to go */
};

struct stripe {
    pthread_mutex_t lock;
} __attribute__((aligned(64)));

struct seg {
    uint32_t next; /* toward newer in its queue / next on the free list */
    uint32_t prev;
    uint32_t used;    /* bytes appended; under seg_lock while active */
    uint8_t state;    /* enum seg_state, under seg_lock */
    bool small;       /* an active or full segment of the small queue */
    uint32_t refs;    /* atomic: allocations and lookups not yet released */
    uint32_t pending; /* atomic: items allocated here, not yet linked or released */
    uint32_t live;    /* atomic: linked items */
    /* Summaries for whole-segment reclaim (atomic): the largest exptime of
     * its items (0 = none with one yet), whether one never expires, and the
     * largest CAS linked here. */
    rel_time_t max_exp;
    bool never;
    uint64_t max_cas;
    rel_time_t created;
};

/* Counters of a reporting class (memcached's size class of the item). */
struct class_stats {
    uint64_t number; /* gauges */
    uint64_t mem_requested;
    uint64_t total_items; /* counters */
    uint64_t evicted;
    uint64_t evicted_nonzero;
    uint64_t evicted_time;
    uint64_t evicted_unfetched;
    uint64_t outofmemory;
    uint64_t reclaimed;
    uint64_t expired_unfetched;
    uint64_t crawler_reclaimed;
} __attribute__((aligned(64)));

struct storage {
    struct storage_options opts;
#ifdef MEMSTASH_FAULT_INJECTION
    uint64_t fault_every; /* every fault_every-th item allocation fails (0 = none) */
    uint64_t fault_count; /* item allocations so far; __atomic access */
#endif
    /* "stats sizes": linked items per 32-byte bucket of memcached's item
     * size, counted while sizes_on; allocated at the first enable. */
    uint64_t *sizes;
    size_t nsizes;
    bool sizes_on;
    pthread_mutex_t sizes_lock; /* enable/disable only */
    size_t page_size;           /* segment size */
    size_t item_max;            /* largest item total, a multiple of 8 */
    unsigned nclasses;
    uint32_t class_size[STORAGE_MAX_CLASSES + 1]; /* memcached's chunk sizes */

    /* The arena: nsegs_max segments reserved (PROT_NONE) at start, made
     * usable one at a time. */
    char *arena;
    size_t arena_bytes;
    unsigned ref_shift; /* item alignment and reference unit: 2, 4 or 8 bytes */
    uint32_t nsegs_max; /* reserved */
    struct seg *segs;

    /* Segment state, under seg_lock (a leaf lock). */
    pthread_mutex_t seg_lock;
    size_t pages_max;   /* segments the memory limit allows */
    uint32_t nsegs;     /* segments committed (0..nsegs_max) */
    uint32_t seg_high;  /* 1 + the highest index ever committed */
    uint32_t free_head; /* free list */
    uint32_t nfree;
    uint32_t reserve;             /* one free segment kept for moving items out of a victim */
    bool reserve_wanted;          /* a copy found no room: keep the reserve from now on */
    uint32_t small_act, main_act; /* active segments */
    uint32_t small_old, small_new, main_old, main_new; /* FIFOs of full segments */
    uint32_t nsmall, nmain;
    uint32_t drain_head; /* emptied segments still referenced */
    uint32_t expire_cursor;
    uint64_t malloc_fails; /* atomic */
    uint64_t moved;        /* items copied forward by eviction (atomic) */

    /* Ghost: 16-bit fingerprints of keys recently evicted from the small
     * queue (see seg.c), under ghost_lock. */
    pthread_mutex_t ghost_lock;
    uint16_t *ghost;
    uint32_t ghost_buckets;
    uint64_t ghost_hits;

    /* Hash table of item references. ht, ht_power, ht_old, ht_old_power and
     * ht_expanding change only with every stripe lock held, so holding any
     * one stripe lock gives a stable view; ht_cursor is atomic. */
    uint32_t *ht;
    unsigned ht_power;
    uint32_t *ht_old;
    unsigned ht_old_power;
    bool ht_expanding;
    uint64_t ht_cursor;  /* old buckets below this one have moved to ht */
    uint64_t curr_items; /* atomic */

    /* The expiry crawler (walk.c): a pass over the hash table, a few stripes
     * per storage_maintain() call, starts when exp_hint (the earliest exptime
     * noted since the last pass started; atomic, 0 = none) or crawl_flush_at
     * (a flush point) is reached. */
    rel_time_t exp_hint;
    rel_time_t crawl_flush_at;
    bool crawling;
    uint32_t crawl_stripe;
    rel_time_t pass_min;

    uint64_t next_cas; /* atomic, starts at 1 */

    /* Flush state, atomics; writers serialise on flush_lock (a leaf lock). */
    pthread_mutex_t flush_lock;
    uint64_t oldest_cas;    /* items with a smaller CAS are flushed */
    rel_time_t oldest_live; /* delayed flush point not yet captured in oldest_cas */
    int maintaining;        /* atomic flag: one storage_maintain at a time */

    struct stripe stripes[STORAGE_STRIPES];
    struct class_stats classes[STORAGE_MAX_CLASSES + 1]; /* index 0 unused */
};

/* ---- item helpers ------------------------------------------------------ */

enum item_field { ITEM_F_WORD, ITEM_F_XWORD, ITEM_F_HNEXT, ITEM_F_NKEY, ITEM_F_IFLAGS };

/* Where a header field sits, by the item's address modulo 8 (items are at
 * least 2-byte aligned). */
static inline unsigned char *item_field(const struct item *it, enum item_field f)
{
    static const uint8_t off[4][5] = {
        {0, 8, 12, 16, 17},
        {6, 2, 14, 0, 1},
        {4, 0, 12, 16, 17},
        {2, 10, 14, 0, 1},
    };
    return (unsigned char *)(uintptr_t)it->hdr + off[((uintptr_t)it >> 1) & 3][f];
}

static inline uint64_t *item_wordp(const struct item *it)
{
    return (uint64_t *)(void *)item_field(it, ITEM_F_WORD);
}

static inline uint32_t *item_xwordp(const struct item *it)
{
    return (uint32_t *)(void *)item_field(it, ITEM_F_XWORD);
}

/* The hash chain link; changed and read under the item's stripe lock. */
static inline uint32_t *item_hnextp(const struct item *it)
{
    return (uint32_t *)(void *)item_field(it, ITEM_F_HNEXT);
}

static inline uint8_t item_nkey(const struct item *it)
{
    return *item_field(it, ITEM_F_NKEY);
}

static inline uint8_t *item_iflagsp(const struct item *it)
{
    return item_field(it, ITEM_F_IFLAGS);
}

static inline uint32_t item_xword(const struct item *it)
{
    return __atomic_load_n(item_xwordp(it), __ATOMIC_RELAXED);
}

/* Bytes of the nbytes field. */
static inline size_t item_width(const struct item *it)
{
    uint8_t b = it->rest[0];
    return b < 0x80 ? 1 : b < 0xC0 ? 2 : 4;
}

static inline size_t item_header(const struct item *it)
{
    return ITEM_FIXED_SIZE + item_width(it) + ((item_xword(it) & ITEM_X_FLAGS) ? 4u : 0u);
}

static inline uint32_t item_nbytes(const struct item *it)
{
    const unsigned char *p = it->rest;
    if (p[0] < 0x80) {
        return p[0];
    }
    if (p[0] < 0xC0) {
        return ((uint32_t)(p[0] & 0x3F) << 8) | p[1];
    }
    return ((uint32_t)(p[0] & 0x3F) << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline uint32_t item_flags(const struct item *it)
{
    uint32_t v = 0;
    if (item_xword(it) & ITEM_X_FLAGS) {
        memcpy(&v, it->rest + item_width(it), 4);
    }
    return v;
}

static inline char *item_key(const struct item *it)
{
    return (char *)it + item_header(it);
}

static inline char *item_val(const struct item *it)
{
    return item_key(it) + item_nkey(it);
}

/* Header, key and value. */
static inline size_t item_total(const struct item *it)
{
    return item_header(it) + item_nkey(it) + item_nbytes(it);
}

/* Item alignment in the arena (2, 4 or 8 bytes). */
static inline size_t item_align(const struct storage *st)
{
    return (size_t)1 << st->ref_shift;
}

/* Bytes the item takes in its segment. */
static inline size_t item_span(const struct storage *st, const struct item *it)
{
    return (item_total(it) + item_align(st) - 1) & ~(item_align(st) - 1);
}

static inline uint64_t item_cas(const struct item *it)
{
    return __atomic_load_n(item_wordp(it), __ATOMIC_RELAXED) & ITEM_CAS_MASK;
}

/* The last access time: the latest time at or before `now` whose low 16
 * bits are the stored ones (exact for 18 hours). A stored time up to a
 * minute ahead of `now` (another thread read the clock after its tick) is
 * `now`. */
static inline rel_time_t item_time(const struct item *it, rel_time_t now)
{
    uint16_t t = (uint16_t)(__atomic_load_n(item_wordp(it), __ATOMIC_RELAXED) >> ITEM_TIME_SHIFT);
    uint16_t back = (uint16_t)((uint16_t)now - t);
    if (back > UINT16_MAX - 60) {
        return now;
    }
    return now >= back ? now - back : 0;
}

static inline uint64_t item_word(uint64_t cas, rel_time_t time)
{
    return (cas & ITEM_CAS_MASK) | ((uint64_t)(uint16_t)time << ITEM_TIME_SHIFT);
}

/* Sets the CAS, keeping the time. */
static inline void item_set_cas(struct item *it, uint64_t cas)
{
    uint64_t *p = item_wordp(it);
    uint64_t w = __atomic_load_n(p, __ATOMIC_RELAXED);
    uint64_t n;
    do {
        n = (w & ~ITEM_CAS_MASK) | (cas & ITEM_CAS_MASK);
    } while (!__atomic_compare_exchange_n(p, &w, n, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
}

/* Sets the access time, keeping the CAS. */
static inline void item_set_time(struct item *it, rel_time_t now)
{
    uint64_t *p = item_wordp(it);
    uint64_t w = __atomic_load_n(p, __ATOMIC_RELAXED);
    uint64_t n;
    do {
        n = (w & ITEM_CAS_MASK) | ((uint64_t)(uint16_t)now << ITEM_TIME_SHIFT);
        if (n == w) {
            return;
        }
    } while (!__atomic_compare_exchange_n(p, &w, n, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
}

/* exptime as xword stores it: later than 17 years from start is capped. */
static inline uint32_t item_x_exptime(rel_time_t exptime)
{
    return exptime > ITEM_X_EXPTIME ? ITEM_X_EXPTIME : exptime;
}

static inline rel_time_t item_exptime(const struct item *it)
{
    return item_xword(it) & ITEM_X_EXPTIME;
}

/* Replaces the xword bits in `mask` with `bits`. */
static inline void item_xword_set(struct item *it, uint32_t mask, uint32_t bits)
{
    uint32_t *p = item_xwordp(it);
    uint32_t w = __atomic_load_n(p, __ATOMIC_RELAXED);
    uint32_t n;
    do {
        n = (w & ~mask) | (bits & mask);
        if (n == w) {
            return;
        }
    } while (!__atomic_compare_exchange_n(p, &w, n, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
}

/* Sets the exptime field only (see item_set_exptime for linked items). */
static inline void item_store_exptime(struct item *it, rel_time_t exptime)
{
    item_xword_set(it, ITEM_X_EXPTIME, item_x_exptime(exptime));
}

static inline unsigned item_freq(const struct item *it)
{
    return (item_xword(it) >> ITEM_X_FREQ_SHIFT) & ITEM_FREQ_MAX;
}

static inline void item_set_freq(struct item *it, unsigned f)
{
    item_xword_set(it, ITEM_FREQ_MAX << ITEM_X_FREQ_SHIFT, (uint32_t)f << ITEM_X_FREQ_SHIFT);
}

/* Copies an item's header, key and value to `to` (not yet visible), whose
 * header fields may sit elsewhere (another address modulo 8). */
static inline void item_copy(struct item *to, const struct item *from)
{
    memcpy(to->rest, from->rest, item_total(from) - ITEM_FIXED_SIZE);
    *item_wordp(to) = __atomic_load_n(item_wordp(from), __ATOMIC_RELAXED);
    *item_xwordp(to) = item_xword(from);
    *item_hnextp(to) = *item_hnextp(from);
    *item_field(to, ITEM_F_NKEY) = item_nkey(from);
    *item_iflagsp(to) = __atomic_load_n(item_iflagsp(from), __ATOMIC_RELAXED);
}

static inline uint8_t item_iflags(const struct item *it)
{
    return __atomic_load_n(item_iflagsp(it), __ATOMIC_ACQUIRE);
}

static inline uint32_t item_ref(const struct storage *st, const struct item *it)
{
    return (uint32_t)(((const char *)it - st->arena) >> st->ref_shift) + 1;
}

static inline struct item *item_at(const struct storage *st, uint32_t ref)
{
    return ref == 0 ? NULL : (struct item *)(st->arena + ((size_t)(ref - 1) << st->ref_shift));
}

static inline uint32_t item_seg(const struct storage *st, const struct item *it)
{
    return (uint32_t)((size_t)((const char *)it - st->arena) / st->page_size);
}

static inline pthread_mutex_t *stripe_lock_of(struct storage *st, uint64_t hv)
{
    return &st->stripes[hv & (STORAGE_STRIPES - 1)].lock;
}

/* Lowers the crawler's exp_hint to exp (non-zero) if it is earlier. */
static inline void exp_hint_lower(struct storage *st, rel_time_t exp)
{
    rel_time_t hint = __atomic_load_n(&st->exp_hint, __ATOMIC_RELAXED);
    while ((hint == 0 || exp < hint) &&
           !__atomic_compare_exchange_n(&st->exp_hint, &hint, exp, true, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED)) {
    }
}

/* Live, expired or flushed at `now` (see storage.c). */
enum item_state item_state(struct storage *st, const struct item *it, rel_time_t now);

/* The item's reporting class: memcached's class for its size. */
unsigned item_class(const struct storage *st, const struct item *it);

/* Unlinks a linked item from the hash table. The caller holds the item's
 * stripe lock. */
void item_unlink_locked(struct storage *st, struct item *it, uint64_t hv);

/* Sets a linked item's exptime, keeping its segment's summary right. */
void item_set_exptime(struct storage *st, struct item *it, rel_time_t exptime);

/* Counts a linked item in or out of "stats sizes". */
void sizes_count(struct storage *st, const struct item *it, bool add);

/* ---- seg.c ------------------------------------------------------------- */

/* Reserves the arena and builds the reporting class table; returns 0,
 * STORAGE_EINVAL or STORAGE_ENOMEM. */
int seg_setup(struct storage *st);
void seg_teardown(struct storage *st);
/* Reporting class id (1..n) of an item of memcached size `total`, 0 if too big. */
unsigned seg_class_for(const struct storage *st, size_t total);
/* Room for an item of `span` bytes (a multiple of item_align()), with one
 * reference and ITEM_PENDING set, in the small or main queue's active
 * segment; NULL when memory is exhausted. May evict. `held` is the stripe lock the caller holds
 * (or NULL): eviction then only tries other stripe locks. */
struct item *seg_alloc(struct storage *st, size_t span, bool main, pthread_mutex_t *held,
                       rel_time_t now);
/* Whether the ghost holds hv (a hit removes it). */
bool seg_ghost_take(struct storage *st, uint64_t hv);
/* Drops one reference to the segment holding it. */
static inline void seg_unref(struct storage *st, const struct item *it)
{
    __atomic_sub_fetch(&st->segs[item_seg(st, it)].refs, 1, __ATOMIC_ACQ_REL);
}
static inline void seg_ref(struct storage *st, const struct item *it)
{
    __atomic_add_fetch(&st->segs[item_seg(st, it)].refs, 1, __ATOMIC_ACQ_REL);
}
/* Reclaims whole segments whose items are all expired or flushed, a bounded
 * number per call; returns whether more may be due. */
bool seg_maintain(struct storage *st, rel_time_t now);
/* Notes a linked item's CAS and exptime in its segment's summary. */
void seg_note_item(struct storage *st, const struct item *it);
/* Counts an expired or flushed item dropped by eviction or the crawler. */
void seg_count_dead(struct storage *st, const struct item *it, bool background);
/* Segment counts and the memory limit (-m, changed by cache_memlimit). */
void seg_counts(struct storage *st, uint64_t *committed, uint64_t *free_segs, uint64_t *limit);

/* ---- walk.c ------------------------------------------------------------ */

/* One slice of the expiry crawler; returns whether a pass is under way. */
bool crawl_step(struct storage *st, rel_time_t now);

/* ---- htab.c ------------------------------------------------------------ */

int htab_setup(struct storage *st, unsigned power);
void htab_teardown(struct storage *st);
/* The caller holds the stripe lock of hv for the next four. */
struct item *htab_find(struct storage *st, const char *key, size_t nkey, uint64_t hv);
void htab_insert(struct storage *st, struct item *it, uint64_t hv);
void htab_remove(struct storage *st, struct item *it, uint64_t hv);
/* Puts `to` in the chain in place of `from` (an item moved in memory). */
void htab_replace(struct storage *st, struct item *from, struct item *to, uint64_t hv);
/* One bounded slice of expansion work; returns whether more is pending. */
bool htab_maintain(struct storage *st);
void htab_lock_all(struct storage *st);
void htab_unlock_all(struct storage *st);

/* ---- tests ------------------------------------------------------------- */

/* Checks internal invariants with every lock held (tests only; nobody may
 * hold an item reference). Returns NULL or a message. */
const char *storage_check(struct storage *st);

#endif

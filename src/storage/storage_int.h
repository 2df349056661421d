/*
 * storage_int.h - the storage engine's internal structures, shared by
 * storage.c (the public API), slab.c (pages, size classes, S3-FIFO eviction,
 * page stealing) and htab.c (the striped, incrementally growing hash table).
 *
 * Not part of the contract: only files in src/storage/ and the storage unit
 * tests include it.
 *
 * Item layout (64-bit; one chunk of a size class, 8-byte aligned):
 *
 *   offset  size  field
 *   0       8     h_next     next item in the hash chain
 *   8       8     q_newer    class queue: neighbour toward the head;
 *                            free list: next free chunk
 *   16      8     q_older    class queue: neighbour toward the tail;
 *                            free list: previous free chunk
 *   24      8     cas        internal CAS sequence, kept even with use_cas off
 *   32      4     exptime    rel_time_t, 0 = never
 *   36      4     time       rel_time_t of the last store, modification or
 *                            counted access (see item_mark_used in storage.c)
 *   40      4     flags      client flags
 *   44      4     nbytes     value length, without the "\r\n"
 *   48      4     refcount   atomic; the hash table holds one
 *   52      1     nkey       key length, 1..250
 *   53      1     clsid      size class id, 1..63
 *   54      1     iflags     ITEM_* bits, changed atomically
 *   55      1     freq       S3-FIFO access counter 0..3, stored without a lock
 *   56      nkey  key bytes (no terminator)
 *   56+nkey nbytes value bytes, then "\r\n"
 *
 *   +--------------------------+-----+------------------+------+-------
 *   | header (56 bytes)        | key | value (nbytes)   | \r\n | slack
 *   +--------------------------+-----+------------------+------+-------
 *   |<------------- storage_item_total() ---------------------->|
 *   |<------------- chunk size of the class --------------------------->|
 */
#ifndef MEMSTASH_STORAGE_INT_H
#define MEMSTASH_STORAGE_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage.h"

struct item {
    struct item *h_next;
    struct item *q_newer;
    struct item *q_older;
    uint64_t cas;
    rel_time_t exptime;
    rel_time_t time;
    uint32_t flags;
    uint32_t nbytes;
    uint32_t refcount;
    uint8_t nkey;
    uint8_t clsid;
    uint8_t iflags;
    uint8_t freq;
    char data[];
};

#define ITEM_HEADER_SIZE 56
_Static_assert(sizeof(struct item) == ITEM_HEADER_SIZE, "item header must stay 56 bytes");

/* iflags bits. */
#define ITEM_LINKED  0x01 /* in the hash table and its class queue */
#define ITEM_FETCHED 0x02 /* read at least once since it was stored */
#define ITEM_FREE    0x04 /* chunk is on its class's free list */
#define ITEM_NOCAS   0x08 /* engine runs without CAS: report 0 */
/* Meta protocol marks (see storage.h, "meta protocol"). */
#define ITEM_STALE      0x10 /* invalidated by md I or ms I: mg reports X */
#define ITEM_TOKEN_SENT 0x20 /* a recache token (mg W) was handed out */
#define ITEM_KEY_BINARY 0x40 /* stored by ms with a base64 (b) key */
/* In the class's main queue (else, linked, in the small one). On an item not
 * yet linked: link it into main (a replacement of a main item, a restore). */
#define ITEM_MAIN 0x80

/* Largest S3-FIFO access count. */
#define ITEM_FREQ_MAX 3u

#define STORAGE_STRIPES     1024u /* power of two; <= 2^STORAGE_HASHPOWER_MIN */
#define STORAGE_MAX_CLASSES 63u
#define STORAGE_PAGE_SIZE   ((size_t)1 << 20)

#define STORAGE_HASHPOWER_MIN 10u
#define STORAGE_HASHPOWER_MAX 32u

/* Whether an item is alive, and if not why. */
enum item_state {
    ITEM_ALIVE = 0,
    ITEM_EXPIRED,
    ITEM_FLUSHED,
};

struct stripe {
    pthread_mutex_t lock;
} __attribute__((aligned(64)));

struct slab_class {
    pthread_mutex_t lock;
    uint32_t size;    /* chunk size */
    uint32_t perpage; /* chunks per page */

    /* Free chunks, doubly linked through q_newer (next) and q_older (prev). */
    struct item *free_head;
    uint64_t nfree;

    /* S3-FIFO queues (see slab.c), one list: from the tail, the small FIFO
     * (tail .. small_head), then the main FIFO (up to head). New items enter
     * at small_head, or at head when admitted to main; eviction looks at the
     * tail (small) or at small_head->q_newer (the main queue's tail). */
    struct item *head;
    struct item *tail;
    struct item *small_head; /* newest item of the small queue; NULL = empty */
    uint64_t nsmall;         /* items in the small queue */
    struct item *hand;       /* -M only: next item the dead-item walk examines */
    /* Ghost: 16-bit fingerprints of keys recently evicted from the small
     * queue, ghost_buckets (a power of two, 0 = none yet) buckets of
     * SLAB_GHOST_WAYS, newest first in each bucket. */
    uint16_t *ghost;
    uint32_t ghost_buckets;
    uint64_t ghost_hits; /* items admitted to main by the ghost */
    struct item *crawl;  /* next item the expiry crawler examines */
    bool crawling;
    rel_time_t crawl_next; /* earliest time of the next crawler pass */
    rel_time_t crawl_backoff;
    uint64_t crawl_found; /* items reclaimed during the current pass */
    /* Earliest non-zero exptime among the class's items as far as known: those
     * linked since the last pass started, and those a finished pass left in
     * the queue (0 = none). A pass starts once it is reached, whatever the
     * backoff, so expired memory is reclaimed right after it expires. A touch
     * that moves an exptime earlier is not seen here; the backoff finds it. */
    rel_time_t next_expiry;
    rel_time_t crawl_min_exp; /* earliest exptime left behind by the current pass */

    char **pages;
    size_t npages; /* written under the lock, read atomically */
    size_t pages_cap;
    size_t steal_next;            /* round-robin index for page stealing */
    uint32_t rebalance_countdown; /* evictions until the next age comparison */
    uint64_t evict_age;           /* running average age (in stores) of items S3-FIFO evicted */
    uint64_t evict_cas;           /* next_cas at the last such eviction; 0 = none yet */

    /* Gauges (number is written atomically, read without the lock too). */
    uint64_t number;
    uint64_t mem_requested;

    /* Counters, under the lock. */
    uint64_t total_items;
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
    size_t page_size;
    size_t item_max; /* largest item total, a multiple of 8 */
    unsigned nclasses;

    /* Page budget, under page_lock. */
    pthread_mutex_t page_lock;
    size_t pages_used;
    size_t pages_max;
    uint64_t malloc_fails; /* atomic */

    /* Hash table. ht, ht_power, ht_old, ht_old_power and ht_expanding change
     * only with every stripe lock held, so holding any one stripe lock gives
     * a stable view; ht_cursor is atomic. */
    struct item **ht;
    unsigned ht_power;
    struct item **ht_old;
    unsigned ht_old_power;
    bool ht_expanding;
    uint64_t ht_cursor; /* old buckets below this one have moved to ht */

    uint64_t next_cas; /* atomic, starts at 1 */

    /* Flush state, atomics; writers serialise on flush_lock (a leaf lock). */
    pthread_mutex_t flush_lock;
    uint64_t oldest_cas;    /* items with a smaller CAS are flushed */
    rel_time_t oldest_live; /* pending or active delayed flush point */
    rel_time_t flush_done;  /* an earlier delayed flush point, still in force */
    int maintaining;        /* atomic flag: one storage_maintain at a time */

    struct stripe stripes[STORAGE_STRIPES];
    struct slab_class classes[STORAGE_MAX_CLASSES + 1]; /* index 0 unused */
};

/* ---- item helpers ------------------------------------------------------ */

static inline size_t item_total(const struct item *it)
{
    return ITEM_HEADER_SIZE + (size_t)it->nkey + (size_t)it->nbytes + 2;
}

static inline uint8_t item_iflags(const struct item *it)
{
    return __atomic_load_n(&it->iflags, __ATOMIC_ACQUIRE);
}

static inline uint32_t item_refcount(const struct item *it)
{
    return __atomic_load_n(&it->refcount, __ATOMIC_ACQUIRE);
}

static inline pthread_mutex_t *stripe_lock_of(struct storage *st, uint64_t hv)
{
    return &st->stripes[hv & (STORAGE_STRIPES - 1)].lock;
}

/* Live, expired or flushed at `now` (see storage.c). */
enum item_state item_state(const struct storage *st, const struct item *it, rel_time_t now);

/* Unlinks a linked item from the hash table and its class queue and drops the
 * table's reference. The caller holds the item's stripe lock; the _cls_locked
 * variant also expects the class lock held. */
void item_unlink_locked(struct storage *st, struct item *it, uint64_t hv);
void item_unlink_cls_locked(struct storage *st, struct slab_class *cls, struct item *it,
                            uint64_t hv);

/* ---- slab.c ------------------------------------------------------------ */

/* Builds the class table; returns 0 or STORAGE_EINVAL. */
int slab_setup(struct storage *st);
void slab_teardown(struct storage *st);
/* Class id (1..n) for an item of `total` bytes, 0 if too big. */
unsigned slab_class_for(const struct storage *st, size_t total);
/* A free chunk of class clsid with refcount 1 and no other field set, or NULL
 * (STORAGE_ENOMEM). May reclaim, evict or steal a page. The caller may hold
 * one stripe lock, but no class lock. */
struct item *slab_alloc(struct storage *st, unsigned clsid, rel_time_t now);
/* Returns an unlinked item with refcount 0 to its class. */
void slab_free_locked(struct slab_class *cls, struct item *it);
/* Queues a newly linked item: main if ITEM_MAIN is set or its hash hv is in
 * the ghost, else small. */
void slab_queue_push_locked(struct slab_class *cls, struct item *it, uint64_t hv);
void slab_queue_remove_locked(struct slab_class *cls, struct item *it);
/* One bounded slice of the expiry crawler over every class; returns whether a
 * pass is still under way. */
bool slab_crawl(struct storage *st, rel_time_t now);
/* Restarts crawler passes at `when` (after a flush). */
void slab_crawl_schedule(struct storage *st, rel_time_t when);

/* ---- htab.c ------------------------------------------------------------ */

int htab_setup(struct storage *st, unsigned power);
void htab_teardown(struct storage *st);
/* The caller holds the stripe lock of hv for the next three. */
struct item *htab_find(struct storage *st, const char *key, size_t nkey, uint64_t hv);
void htab_insert(struct storage *st, struct item *it, uint64_t hv);
void htab_remove(struct storage *st, struct item *it, uint64_t hv);
/* One bounded slice of expansion work; returns whether more is pending. */
bool htab_maintain(struct storage *st);
void htab_lock_all(struct storage *st);
void htab_unlock_all(struct storage *st);

/* ---- tests ------------------------------------------------------------- */

/* Checks internal invariants with every lock held (tests only; nobody may
 * hold an item reference that is not linked). Returns NULL or a message. */
const char *storage_check(struct storage *st);

#endif

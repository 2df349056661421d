/*
 * storage.h - the cache engine's whole contract.
 *
 * The engine stores items (key, 32-bit client flags, expiry time, CAS, value)
 * in memory bounded by a byte limit (a log of 1 MiB segments), finds them
 * through a hash table that grows incrementally, and evicts when full. It knows nothing of sockets,
 * protocols or threads it did not start (it starts none): the server drives
 * background work by calling storage_maintain() from a thread of its own.
 *
 * Time. Every call that needs the time takes `now`, a rel_time_t in seconds
 * since the server started (see common/clock.h). Expiry times stored in items
 * are rel_time_t too; 0 means "never". Converting protocol exptimes (relative,
 * absolute unix time, negative) into rel_time_t is the caller's job
 * (clock_realtime()). Tests pass whatever `now` they like: that is the fake clock.
 *
 * Keys are hashed once by the caller with storage_hash() and the hash is
 * passed down, so the protocol layer can reuse it.
 *
 * Thread safety: every function may be called from any thread at once,
 * except create/destroy.
 *
 * Lock order (complete; take left before right, never the reverse):
 *     item stripe lock  ->  segment lock, ghost lock
 * - item stripe lock: striped by key hash; guards hash chains, the hash
 *   table's migration of the buckets it covers, and item fields of linked items.
 * - segment lock: guards the segment lists (free, S3-FIFO queues, drain) and
 *   appends to the active segments; a leaf, as is the ghost's lock.
 * Eviction empties a segment holding no engine lock, taking each item's
 * stripe lock in turn, and only *tries* one when its caller holds another.
 *
 * Items are reference-counted. storage_get() and friends return an item with
 * a reference the caller owns; it stays valid (key and value bytes unchanged)
 * until storage_release(), even if it is deleted, replaced or evicted
 * meanwhile. Memory of an unlinked item is reused only once its last
 * reference is released.
 */
#ifndef MEMSTASH_STORAGE_H
#define MEMSTASH_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clock.h"

#define STORAGE_KEY_MAX 250

/* Expiry times are kept in 29 bits: one later than this (about 17 years
 * after the server started; the text protocol's exptimes end in 2038) is
 * stored, and reported, as this. */
#define STORAGE_EXPTIME_MAX ((rel_time_t)((1u << 29) - 1))

struct storage;
struct item;

struct storage_options {
    size_t maxbytes;      /* item memory limit in bytes (-m); segments are 1 MiB */
    size_t item_size_max; /* largest item total size (-I), default 1 MiB */
    double growth_factor; /* reporting class growth factor (-f), > 1 */
    size_t chunk_min;     /* -n: key+value+flags room of the smallest class */
    unsigned hashpower;   /* initial hash table size 2^hashpower; 0 = 16 */
    bool no_evict;        /* -M: refuse stores instead of evicting */
    bool use_cas;         /* false with -C: storage_item_cas() reports 0 */
    bool hash_expand;     /* grow the hash table when the load factor passes 1.5 */
};

/* Fills `o` with memcached's defaults: 64 MiB, 1 MiB items, factor 1.25, 48,
 * hashpower 16, evictions on, CAS on, expansion on. */
void storage_options_default(struct storage_options *o);

/* Status codes for failures (negative) and cache outcomes (non-negative) are
 * kept apart: functions return 0 or a negative STORAGE_E*, outcomes come back
 * through an out parameter. */
enum storage_err {
    STORAGE_OK = 0,
    STORAGE_ENOMEM = -1, /* no memory could be found (eviction impossible or -M) */
    STORAGE_E2BIG = -2,  /* item would exceed item_size_max */
    STORAGE_EINVAL = -3, /* bad argument (e.g. key longer than 250) */
};
const char *storage_strerror(int err);

/* Creates an engine. Returns 0 or STORAGE_EINVAL / STORAGE_ENOMEM.
 * Memory for items is taken lazily, a page at a time. */
int storage_create(struct storage **out, const struct storage_options *opts);
/* Frees everything. All item references must have been released. Sets *st to NULL. */
void storage_destroy(struct storage **st);

uint64_t storage_hash(const void *key, size_t nkey);

/* ---- items ------------------------------------------------------------- */

/* Accessors for an item the caller holds a reference to. */
const char *storage_item_key(const struct item *it);
size_t storage_item_nkey(const struct item *it);
uint32_t storage_item_flags(const struct item *it);
/* Value bytes, nbytes of them. The protocol's "\r\n" after a value is not
 * stored: writers add it. */
char *storage_item_value(struct item *it);
size_t storage_item_nbytes(const struct item *it);
uint64_t storage_item_cas(const struct item *it);       /* 0 when CAS is disabled */
rel_time_t storage_item_exptime(const struct item *it); /* 0 = never */
/* Total bytes the item occupies, header included (its chunk's used size). */
size_t storage_item_total(const struct item *it);
/* The item's reporting class id, 1..storage_class_count(): the class
 * memcached would store it in (same -n, -f and -I). */
unsigned storage_item_class(const struct storage *st, const struct item *it);

/* Would an item with this key length and value length fit under
 * item_size_max? storage_alloc() also applies memcached's size rule (48-byte
 * header, CAS, key + 1, flags when non-zero, value + 2), so that clients see
 * memcached's largest value, for set and for append/prepend alike. */
bool storage_item_size_ok(const struct storage *st, size_t nkey, size_t nbytes);

/* Allocates an unlinked item with room for nbytes of value. May evict. The caller fills the value
 * through storage_item_value() and then links it with storage_store(), or drops it with
 * storage_release(). Returns 0, STORAGE_E2BIG, STORAGE_ENOMEM or STORAGE_EINVAL (nkey 0 or > 250).
 */
int storage_alloc(struct storage *st, const char *key, size_t nkey, uint32_t flags,
                  rel_time_t exptime, size_t nbytes, rel_time_t now, struct item **out);

/* Drops a reference and sets *it to NULL. NULL is fine. */
void storage_release(struct storage *st, struct item **it);

/* ---- lookups ----------------------------------------------------------- */

enum storage_get_outcome {
    STORAGE_HIT = 0,
    STORAGE_MISS,    /* never there, evicted or deleted */
    STORAGE_EXPIRED, /* found but past its exptime (now unlinked) */
    STORAGE_FLUSHED, /* found but invalidated by flush (now unlinked) */
};

/* Looks a key up. Returns a referenced item on a hit, or NULL with *outcome
 * saying why (outcome may be NULL). A hit marks the item as recently used and
 * fetched. */
struct item *storage_get(struct storage *st, const char *key, size_t nkey, uint64_t hv,
                         rel_time_t now, enum storage_get_outcome *outcome);

/* Same as storage_get, and on a hit also sets the item's exptime (gat, touch).
 * The returned item already carries the new exptime. */
struct item *storage_get_touch(struct storage *st, const char *key, size_t nkey, uint64_t hv,
                               rel_time_t now, rel_time_t exptime,
                               enum storage_get_outcome *outcome);

/* ---- mutations --------------------------------------------------------- */

enum storage_op {
    STORAGE_SET,
    STORAGE_ADD,     /* only if absent (expired and flushed count as absent) */
    STORAGE_REPLACE, /* only if present */
    STORAGE_APPEND,  /* only if present; keeps old flags and exptime */
    STORAGE_PREPEND, /* likewise */
    STORAGE_CAS,     /* only if present and its CAS equals cas_in */
};

enum storage_store_outcome {
    STORAGE_STORED = 0,
    STORAGE_NOT_STORED, /* add on a present key, replace/append/prepend on an absent one */
    STORAGE_EXISTS,     /* cas mismatch */
    STORAGE_NOT_FOUND,  /* cas on an absent key */
};

/* Links `it` (from storage_alloc, not yet linked) under its key according to
 * `op`. On success the item gets a fresh CAS, reported in *cas_out when
 * cas_out is not NULL. The caller keeps its reference to `it` and must still
 * release it. For append/prepend a new item holding the joined value is
 * linked instead of `it`; that may fail with STORAGE_ENOMEM or STORAGE_E2BIG.
 * ADD on a present item marks that item as used (as memcached bumps it).
 * Returns 0 with *outcome set, or a negative STORAGE_E*. */
int storage_store(struct storage *st, struct item *it, enum storage_op op, uint64_t cas_in,
                  uint64_t hv, rel_time_t now, enum storage_store_outcome *outcome,
                  uint64_t *cas_out);

/* Unlinks the key. If cas_in is non-zero it must match (else *found is true
 * and *cas_mismatch true, nothing deleted). *found says whether a live item
 * was there; *clsid_out (may be NULL) gets the deleted item's class id.
 * Returns 0. */
int storage_delete(struct storage *st, const char *key, size_t nkey, uint64_t hv, uint64_t cas_in,
                   rel_time_t now, bool *found, bool *cas_mismatch, unsigned *clsid_out);

enum storage_arith_outcome {
    STORAGE_ARITH_OK = 0,
    STORAGE_ARITH_NOT_FOUND,
    STORAGE_ARITH_NON_NUMERIC, /* value is not a decimal u64 of at most 20 digits */
    STORAGE_ARITH_EXISTS,      /* cas_in given and it did not match */
};

struct storage_arith {
    bool incr; /* incr wraps modulo 2^64; decr floors at 0 */
    uint64_t delta;
    uint64_t cas_in; /* 0 = no check */
    bool create;     /* when absent, store `initial` (binary and meta protocols) */
    uint64_t initial;
    uint32_t flags; /* flags and exptime of a created item */
    rel_time_t exptime;
};

/* incr/decr. The value must be a decimal u64 (leading spaces allowed, anything
 * after the digits and a space ignored). A new item replaces the old one;
 * when the new number is no longer than the old value it is right-padded
 * with spaces to the old length and keeps the item's marks (as memcached's
 * in-place update).
 * Flags and exptime are kept; the CAS changes. *value gets the new number and
 * *cas_out the new CAS (either may be NULL). *clsid_out (may be NULL) gets
 * the class id of the item found, when one was.
 * Returns 0 with *outcome, or STORAGE_ENOMEM. */
int storage_arith(struct storage *st, const char *key, size_t nkey, uint64_t hv,
                  const struct storage_arith *a, rel_time_t now,
                  enum storage_arith_outcome *outcome, uint64_t *value, uint64_t *cas_out,
                  unsigned *clsid_out);

/* With when <= now: invalidates every item stored before this call (items
 * stored later in the same second survive). With when > now: from `when - 1`
 * on, invalidates every item last stored at or before `when - 1` (memcached's
 * rule). Memory is reclaimed lazily and by storage_maintain(). */
void storage_flush(struct storage *st, rel_time_t when, rel_time_t now);

/* Changes the memory limit at run time. Lowering it does not free pages that
 * are in use. A raise is capped by the arena reserved at start (8 GiB when
 * started with -m up to 8 GiB, 16 GiB up to 16, else 32): the stats report
 * the limit in force. Returns 0 or STORAGE_EINVAL. */
int storage_set_memlimit(struct storage *st, size_t maxbytes);

/* Does a bounded slice of background work and returns whether more is
 * pending: moves a batch of hash buckets during expansion, and reclaims a
 * batch of expired or flushed items. Never holds a lock for long, so
 * callers on other threads do not stall. */
bool storage_maintain(struct storage *st, rel_time_t now);

/* ---- meta protocol ----------------------------------------------------- */

/*
 * What the meta protocol (mg ms md ma me) needs beyond the calls above. Each
 * call runs under the key's stripe lock from lookup to the last change, so
 * the facts it reports and the changes it makes are one atomic step.
 *
 * Item marks, kept in the item's flag byte:
 * - stale: set by storage_meta_delete() with invalidate and by an
 *   invalidating storage_meta_store(); mg reports X.
 * - token sent: a recache token (mg W) was handed out; mg reports Z.
 * - binary key: the item was stored by ms with a base64 key; mg k and me
 *   print its key base64-encoded. Set with storage_item_set_key_binary().
 * Any new item (set, append, a new incr/decr value) starts without them.
 *
 * Access time. `time`, the last-store time, also serves as memcached's
 * last-access time, as it->time does in memcached: a lookup that marks an
 * item used (storage_get, storage_get_touch, storage_meta_get without
 * no_bump) sets FETCHED the first time and moves `time` to `now` on every
 * later lookup; an ADD that finds the key present and an incr/decr also move
 * it. This is what 1.6.18 shows deterministically (its segmented LRU leaves
 * the first fetch out and bumps the second). Items keep the low 16 bits of
 * it (see storage_item_atime). Delayed flush does not depend on it: a flush
 * point, once past, becomes a CAS bound (see storage.c, "Flush").
 */

/* Marks an item from storage_alloc(), not linked yet, as stored with a
 * base64 key. */
void storage_item_set_key_binary(struct item *it);
bool storage_item_key_binary(const struct item *it);

/* mg and me. */
struct storage_mget_opts {
    bool no_bump;          /* u (and me): do not mark fetched, do not count an access */
    bool vivify;           /* N: on a miss create an empty item, client flags 0 */
    rel_time_t vivify_ttl; /* exptime N gives a created item */
    bool touch;            /* T */
    rel_time_t touch_ttl;  /* exptime T sets */
    bool recache;          /* R */
    rel_time_t recache_at; /* R wins when the item's non-zero exptime is before this */
    /*
     * The T, N and R flags in request order (other characters are skipped;
     * NULL = none apply). Walking it: T sets the exptime; N, on an item
     * this call created, sets the exptime and wins; R wins when no token was
     * sent, the item was not created and its exptime, as it stands at that
     * point, is non-zero and before recache_at.
     */
    const char *order;
    /*
     * Hand out no token: skip the win rules and the token-sent mark (mg whose
     * reply turns into an error after it ran).
     */
    bool no_win;
};

struct storage_mget_result {
    enum storage_get_outcome outcome; /* of the lookup; HIT when vivify created the item */
    bool created;                     /* vivify created the item */
    bool fetched;                     /* FETCHED before this call (false when created) */
    bool stale;
    bool token_sent;    /* a token was handed out before this call */
    bool win;           /* this call wins the token (now marked as sent) */
    rel_time_t time;    /* the item's last access/store time before this call */
    rel_time_t exptime; /* before T or N applied (0 when created) */
};

/*
 * Looks a key up for mg/me, creating it when o->vivify asks, applies the
 * order walk (see storage_mget_opts), then on a hit or a new item: a stale
 * item with no token sent wins too; a win marks the token sent; unless
 * no_bump the item is marked used as storage_get() does. Returns 0 with *out
 * a referenced item the caller must release, or NULL on a miss; or
 * STORAGE_ENOMEM when vivify could not allocate (*out NULL, outcome MISS).
 */
int storage_meta_get(struct storage *st, const char *key, size_t nkey, uint64_t hv, rel_time_t now,
                     const struct storage_mget_opts *o, struct storage_mget_result *r,
                     struct item **out);

struct storage_mstore_result {
    enum storage_store_outcome outcome;
    uint64_t cas;                    /* the new CAS when stored, else 0 */
    enum storage_get_outcome lookup; /* what the lookup of the old item met */
    bool stale;                      /* stored by invalidate, as stale */
};

/*
 * storage_store() for ms, with two differences: APPEND and PREPEND compare
 * cas_in with the item's CAS when cas_in is not 0 (EXISTS on a mismatch);
 * and with invalidate, a CAS whose cas_in is below the item's CAS still
 * stores `it`, keeping the old item's exptime and token-sent mark and marking
 * the new item stale (an equal CAS stores normally, a higher one is EXISTS).
 * The caller keeps its reference to `it`. Returns 0 with *r filled, or
 * STORAGE_ENOMEM / STORAGE_E2BIG when an append/prepend could not build the
 * joined item (outcome NOT_STORED).
 */
int storage_meta_store(struct storage *st, struct item *it, enum storage_op op, uint64_t cas_in,
                       bool invalidate, uint64_t hv, rel_time_t now,
                       struct storage_mstore_result *r);

struct storage_mdelete_opts {
    bool has_cas; /* compare cas_in (0 included) with the item's CAS */
    uint64_t cas_in;
    bool invalidate; /* keep the item: mark it stale, clear token sent, new CAS */
    bool touch;      /* with invalidate: set the exptime to touch_ttl */
    rel_time_t touch_ttl;
};

enum storage_mdelete_outcome {
    STORAGE_MDEL_DELETED = 0,
    STORAGE_MDEL_INVALIDATED,
    STORAGE_MDEL_NOT_FOUND,
    STORAGE_MDEL_EXISTS, /* CAS mismatch; nothing changed */
};

struct storage_mdelete_result {
    enum storage_mdelete_outcome outcome;
    enum storage_get_outcome lookup;
    unsigned clsid; /* class of the item found, 0 if none */
};

/* md. Returns 0 with *r filled. */
int storage_meta_delete(struct storage *st, const char *key, size_t nkey, uint64_t hv,
                        rel_time_t now, const struct storage_mdelete_opts *o,
                        struct storage_mdelete_result *r);

struct storage_marith_opts {
    /* incr/decr, delta, cas_in (0 = no check), create and initial (N, J),
     * flags of a created item; a.exptime is not used: see vivify_ttl. */
    struct storage_arith a;
    bool touch; /* T: set the exptime after the operation */
    rel_time_t touch_ttl;
    rel_time_t vivify_ttl; /* N: exptime of a created item (which starts at 0) */
    /* T and N in request order: the later one sets the exptime of a created
     * item (N applies to created items only). NULL = T only. */
    const char *order;
};

struct storage_marith_result {
    enum storage_arith_outcome outcome;
    enum storage_get_outcome lookup;
    bool created;       /* the item was created holding a.initial */
    uint64_t value;     /* the new number */
    uint64_t cas;       /* CAS after the operation */
    unsigned clsid;     /* class of the item found, 0 if none */
    rel_time_t exptime; /* of the resulting item, before T or N applied */
};

/*
 * ma: storage_arith() and then T/N on the resulting item, in one step.
 * Returns 0 with *r filled, or STORAGE_ENOMEM (or STORAGE_E2BIG) when no
 * item could be allocated: r->outcome is then NOT_FOUND if the key was
 * absent (creating failed), else OK (the new value could not be stored).
 */
int storage_meta_arith(struct storage *st, const char *key, size_t nkey, uint64_t hv,
                       rel_time_t now, const struct storage_marith_opts *o,
                       struct storage_marith_result *r);

/* ---- statistics -------------------------------------------------------- */

struct storage_stats {
    uint64_t curr_items;
    uint64_t total_items; /* successful links since start */
    uint64_t bytes;       /* sum of storage_item_total() of linked items */
    uint64_t evictions;   /* live items evicted */
    uint64_t reclaimed;   /* allocations that reused an expired item's memory */
    uint64_t expired_unfetched;
    uint64_t evicted_unfetched;
    uint64_t crawler_reclaimed; /* expired/flushed items freed by storage_maintain */
    uint64_t limit_maxbytes;
    uint64_t total_malloced;        /* bytes of segments in use or free */
    uint64_t slab_global_page_pool; /* free segments */
    uint64_t malloc_fails;
    unsigned hash_power_level;
    uint64_t hash_bytes;
    bool hash_is_expanding;
    unsigned active_classes;
};

struct storage_class_stats {
    unsigned id; /* 1-based class id, as memcached numbers them */
    uint32_t chunk_size;
    uint32_t chunks_per_page;
    uint64_t total_pages;
    uint64_t total_chunks;
    uint64_t used_chunks;
    uint64_t free_chunks;
    uint64_t number;        /* linked items in this class */
    uint64_t age;           /* seconds since the oldest item's last access */
    uint64_t mem_requested; /* sum of item totals in this class */
    uint64_t evicted;
    uint64_t evicted_nonzero;
    uint64_t evicted_time; /* seconds since last access of the last evicted item */
    uint64_t evicted_unfetched;
    uint64_t outofmemory;
    uint64_t reclaimed;
    uint64_t expired_unfetched;
    uint64_t crawler_reclaimed;
};

void storage_get_stats(struct storage *st, rel_time_t now, struct storage_stats *out);
/* Number of reporting classes (ids 1..n). */
unsigned storage_class_count(const struct storage *st);
/* Fills `out` for class id 1..n; returns false for an unknown id. */
bool storage_get_class_stats(struct storage *st, unsigned id, rel_time_t now,
                             struct storage_class_stats *out);
/* memcached's "stats sizes": while enabled, linked items are counted per
 * 32-byte bucket of memcached's item size (48-byte header, CAS, key + 1,
 * flags when non-zero, value + 2). Enabling starts from zero; items linked
 * before are not counted. storage_sizes_enable() returns false when out of
 * memory. storage_sizes_visit() calls fn for each non-empty bucket, in
 * ascending size, and nothing while disabled. */
bool storage_sizes_enable(struct storage *st, bool on);
bool storage_sizes_enabled(const struct storage *st);
void storage_sizes_visit(struct storage *st, void (*fn)(void *ctx, size_t size, uint64_t count),
                         void *ctx);

/* ---- walking (dumps) ---------------------------------------------------- */

/* Called for each live item under an internal lock: copy what is needed,
 * and do not call back into the engine. */
typedef void (*storage_walk_fn)(void *ctx, const struct item *it);
/* The walk is split into storage_walk_parts() parts, 0..n-1, each visited
 * under one short lock; visiting every part visits each item that stays
 * stored throughout exactly once (items changing meanwhile may be missed).
 * storage_walk() returns the number of items passed to fn. */
unsigned storage_walk_parts(void);
size_t storage_walk(struct storage *st, unsigned part, rel_time_t now, storage_walk_fn fn,
                    void *ctx);
/* Last access (store or hit) time, and whether it was read since stored.
 * Items keep the time's low 16 bits: the answer is exact when the last
 * access was less than 18 hours before `now`. */
rel_time_t storage_item_atime(const struct item *it, rel_time_t now);
bool storage_item_fetched(const struct item *it);

/* Links `it` (from storage_alloc, value filled in) as a set would, then
 * gives it CAS value `cas` (a warm restart keeps CAS values); later CAS
 * values are larger. *stored is false when it could not be linked. The
 * caller keeps and releases its reference. */
int storage_restore(struct storage *st, struct item *it, uint64_t cas, uint64_t hv, rel_time_t now,
                    bool *stored);

#ifdef MEMSTASH_FAULT_INJECTION
/* Test builds only (MEMSTASH_FAULT_INJECTION): from now on every `every`-th
 * item allocation (set, append/prepend, incr/decr, vivify) fails with
 * STORAGE_ENOMEM as if memory were exhausted; 0 turns it off. */
void storage_fault_inject(struct storage *st, unsigned every);
#endif

/* Zeroes the counters (not the gauges: curr_items, bytes, pages). */
void storage_reset_stats(struct storage *st);

#endif

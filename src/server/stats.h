/*
 * stats.h - per-thread counters and the server-wide gauges.
 *
 * Each worker owns a struct thread_stats and is its only writer, so counting
 * takes no lock and no locked instruction (STAT_INCR is a relaxed
 * load-add-store). Readers sum all threads with relaxed loads. "stats reset"
 * does not write into other threads' counters: it records a baseline that is
 * subtracted on every read.
 */
#ifndef MEMSTASH_STATS_H
#define MEMSTASH_STATS_H

#include <stdint.h>

/* The counters every worker keeps; the names are memcached's stat names
 * where one exists (see stats.c for the mapping). */
#define THREAD_STATS(X)                                                                            \
    X(get_cmds)                                                                                    \
    X(get_hits)                                                                                    \
    X(get_misses)                                                                                  \
    X(get_expired)                                                                                 \
    X(get_flushed)                                                                                 \
    X(set_cmds)                                                                                    \
    X(touch_cmds)                                                                                  \
    X(touch_hits)                                                                                  \
    X(touch_misses)                                                                                \
    X(delete_hits)                                                                                 \
    X(delete_misses)                                                                               \
    X(incr_hits)                                                                                   \
    X(incr_misses)                                                                                 \
    X(decr_hits)                                                                                   \
    X(decr_misses)                                                                                 \
    X(cas_hits)                                                                                    \
    X(cas_misses)                                                                                  \
    X(cas_badval)                                                                                  \
    X(flush_cmds)                                                                                  \
    X(meta_cmds)                                                                                   \
    X(store_too_large)                                                                             \
    X(store_no_memory)                                                                             \
    X(auth_cmds)                                                                                   \
    X(auth_errors)                                                                                 \
    X(bytes_read)                                                                                  \
    X(bytes_written)                                                                               \
    X(conn_yields)                                                                                 \
    X(idle_kicks)

/* Counters memcached also keeps per size class ("stats slabs"). */
#define SLAB_STATS(X)                                                                              \
    X(get_hits)                                                                                    \
    X(cmd_set)                                                                                     \
    X(delete_hits)                                                                                 \
    X(incr_hits)                                                                                   \
    X(decr_hits)                                                                                   \
    X(cas_hits)                                                                                    \
    X(cas_badval)                                                                                  \
    X(touch_hits)

#define STATS_MAX_CLASSES 64

struct slab_stats {
#define X(name) uint64_t name;
    SLAB_STATS(X)
#undef X
};

struct thread_stats {
#define X(name) uint64_t name;
    THREAD_STATS(X)
#undef X
    struct slab_stats slab[STATS_MAX_CLASSES];
};

#define STAT_ADD(ts, field, n)                                                                     \
    __atomic_store_n(&(ts)->field, __atomic_load_n(&(ts)->field, __ATOMIC_RELAXED) + (n),          \
                     __ATOMIC_RELAXED)
#define STAT_INCR(ts, field) STAT_ADD(ts, field, 1)
/* Counts in the per-class table; class ids beyond the table are not kept. */
#define SLAB_INCR(ts, cls, field)                                                                  \
    do {                                                                                           \
        unsigned cls_ = (cls);                                                                     \
        if (cls_ < STATS_MAX_CLASSES) {                                                            \
            STAT_INCR(&(ts)->slab[cls_], field);                                                   \
        }                                                                                          \
    } while (0)

/* out += in, reading `in` with relaxed loads. */
void thread_stats_accumulate(struct thread_stats *out, const struct thread_stats *in);
/* out -= base, saturating at 0. */
void thread_stats_subtract(struct thread_stats *out, const struct thread_stats *base);

#endif

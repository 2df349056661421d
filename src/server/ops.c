/*
 * ops.c - cache operations with memcached's counters (see ops.h).
 */
#include "ops.h"

#include "conn.h"
#include "prefix_stats.h"
#include "server.h"
#include "watch.h"

static bool detail_on(struct server *srv)
{
    return __atomic_load_n(&srv->settings->detail_enabled, __ATOMIC_RELAXED);
}

struct item *ops_fetch(struct conn *c, const char *key, size_t nkey, bool touch, int64_t exptime)
{
    struct server *srv = c->w->srv;
    struct thread_stats *ts = &c->w->stats;
    rel_time_t now = clock_now(&srv->clock);
    uint64_t hv = storage_hash(key, nkey);
    enum storage_get_outcome why = STORAGE_MISS;
    struct item *it;
    if (touch) {
        it = storage_get_touch(srv->storage, key, nkey, hv, now,
                               clock_realtime(&srv->clock, exptime), &why);
        STAT_INCR(ts, touch_cmds);
        if (it != NULL) {
            STAT_INCR(ts, touch_hits);
            SLAB_INCR(ts, storage_item_class(c->w->srv->storage, it), touch_hits);
        } else {
            STAT_INCR(ts, touch_misses);
        }
    } else {
        it = storage_get(srv->storage, key, nkey, hv, now, &why);
        STAT_INCR(ts, get_cmds);
        if (it != NULL) {
            STAT_INCR(ts, get_hits);
            SLAB_INCR(ts, storage_item_class(c->w->srv->storage, it), get_hits);
        } else {
            STAT_INCR(ts, get_misses);
            if (why == STORAGE_EXPIRED) {
                STAT_INCR(ts, get_expired);
            } else if (why == STORAGE_FLUSHED) {
                STAT_INCR(ts, get_flushed);
            }
        }
    }
    if (detail_on(srv)) {
        prefix_stats_record_get(srv->prefix_stats, key, nkey, it != NULL);
    }
    if (watch_wants(srv->watch, WATCH_FETCHERS)) {
        enum watch_get_status st = it != NULL               ? WATCH_FOUND
                                   : why == STORAGE_EXPIRED ? WATCH_EXPIRED
                                   : why == STORAGE_FLUSHED ? WATCH_FLUSHED
                                                            : WATCH_NOT_FOUND;
        watch_emit_get(srv->watch, key, nkey, st,
                       it != NULL ? storage_item_class(c->w->srv->storage, it) : 0, c->fd,
                       it != NULL ? storage_item_nbytes(it) : 0);
    }
    return it;
}

int ops_alloc(struct conn *c, const char *key, size_t nkey, uint32_t flags, int64_t exptime,
              size_t nbytes, bool is_set, uint64_t *hv, struct item **out)
{
    struct server *srv = c->w->srv;
    rel_time_t now = clock_now(&srv->clock);
    *hv = storage_hash(key, nkey);
    *out = NULL;
    if (detail_on(srv)) {
        prefix_stats_record_set(srv->prefix_stats, key, nkey);
    }
    int rc = storage_alloc(srv->storage, key, nkey, flags, clock_realtime(&srv->clock, exptime),
                           nbytes, now, out);
    if (rc == STORAGE_OK) {
        return 0;
    }
    if (rc == STORAGE_E2BIG) {
        STAT_INCR(&c->w->stats, store_too_large);
    } else {
        STAT_INCR(&c->w->stats, store_no_memory);
    }
    if (is_set) {
        bool found, mismatch;
        storage_delete(srv->storage, key, nkey, *hv, 0, now, &found, &mismatch, NULL);
    }
    return rc == STORAGE_E2BIG ? STORAGE_E2BIG : STORAGE_ENOMEM;
}

/* One "type=item_store" line for watchers of mutations. */
static void log_store(struct conn *c, const struct item *it, enum storage_op op, int rc,
                      enum storage_store_outcome outcome)
{
    static const char *const cmds[] = {
        [STORAGE_SET] = "set",       [STORAGE_ADD] = "add",         [STORAGE_REPLACE] = "replace",
        [STORAGE_APPEND] = "append", [STORAGE_PREPEND] = "prepend", [STORAGE_CAS] = "cas",
    };
    /* watch.h's status numbers: not_stored stored exists not_found too_large no_memory. */
    int status = rc == STORAGE_E2BIG            ? 4
                 : rc != STORAGE_OK             ? 5
                 : outcome == STORAGE_STORED    ? 1
                 : outcome == STORAGE_EXISTS    ? 2
                 : outcome == STORAGE_NOT_FOUND ? 3
                                                : 0;
    watch_emit_store(c->w->srv->watch, storage_item_key(it), storage_item_nkey(it), status,
                     cmds[op], storage_item_exptime(it), storage_item_class(c->w->srv->storage, it),
                     c->fd, storage_item_nbytes(it));
}

int ops_store(struct conn *c, struct item *it, enum storage_op op, uint64_t cas_in, uint64_t hv,
              enum storage_store_outcome *outcome, uint64_t *cas_out)
{
    struct server *srv = c->w->srv;
    struct thread_stats *ts = &c->w->stats;
    unsigned cls = storage_item_class(c->w->srv->storage, it);
    STAT_INCR(ts, set_cmds);
    SLAB_INCR(ts, cls, cmd_set);
    *outcome = STORAGE_NOT_STORED;
    int rc;
    if ((op == STORAGE_APPEND || op == STORAGE_PREPEND) && cas_in != 0) {
        /* A CAS on append/prepend (binary, meta) must match. */
        struct storage_mstore_result r;
        rc =
            storage_meta_store(srv->storage, it, op, cas_in, false, hv, clock_now(&srv->clock), &r);
        *outcome = r.outcome;
        if (cas_out != NULL) {
            *cas_out = r.cas;
        }
    } else {
        rc = storage_store(srv->storage, it, op, cas_in, hv, clock_now(&srv->clock), outcome,
                           cas_out);
    }
    if (watch_wants(srv->watch, WATCH_MUTATIONS)) {
        log_store(c, it, op, rc, *outcome);
    }
    storage_release(srv->storage, &it);
    if (rc == STORAGE_ENOMEM && op != STORAGE_APPEND && op != STORAGE_PREPEND) {
        STAT_INCR(ts, store_no_memory);
    }
    if (rc == STORAGE_OK && op == STORAGE_CAS) {
        if (*outcome == STORAGE_STORED) {
            STAT_INCR(ts, cas_hits);
            SLAB_INCR(ts, cls, cas_hits);
        } else if (*outcome == STORAGE_EXISTS) {
            STAT_INCR(ts, cas_badval);
            SLAB_INCR(ts, cls, cas_badval);
        } else if (*outcome == STORAGE_NOT_FOUND) {
            STAT_INCR(ts, cas_misses);
        }
    }
    return rc;
}

void ops_delete(struct conn *c, const char *key, size_t nkey, uint64_t cas_in, bool *found,
                bool *cas_mismatch)
{
    struct server *srv = c->w->srv;
    unsigned cls = 0;
    if (detail_on(srv)) {
        prefix_stats_record_delete(srv->prefix_stats, key, nkey);
    }
    *found = *cas_mismatch = false;
    storage_delete(srv->storage, key, nkey, storage_hash(key, nkey), cas_in, clock_now(&srv->clock),
                   found, cas_mismatch, &cls);
    if (*found && !*cas_mismatch) {
        STAT_INCR(&c->w->stats, delete_hits);
        SLAB_INCR(&c->w->stats, cls, delete_hits);
    } else if (!*found) {
        STAT_INCR(&c->w->stats, delete_misses);
    }
}

int ops_arith(struct conn *c, const char *key, size_t nkey, const struct storage_arith *a,
              enum storage_arith_outcome *outcome, uint64_t *value, uint64_t *cas_out)
{
    struct server *srv = c->w->srv;
    struct thread_stats *ts = &c->w->stats;
    unsigned cls = 0;
    *outcome = STORAGE_ARITH_NOT_FOUND;
    int rc = storage_arith(srv->storage, key, nkey, storage_hash(key, nkey), a,
                           clock_now(&srv->clock), outcome, value, cas_out, &cls);
    if (rc != STORAGE_OK) {
        return rc;
    }
    /* A counter created on a miss (binary, meta) counts as a miss. */
    bool hit = *outcome == STORAGE_ARITH_OK && cls != 0;
    if (hit && a->incr) {
        STAT_INCR(ts, incr_hits);
        SLAB_INCR(ts, cls, incr_hits);
    } else if (hit) {
        STAT_INCR(ts, decr_hits);
        SLAB_INCR(ts, cls, decr_hits);
    } else if (*outcome == STORAGE_ARITH_OK || *outcome == STORAGE_ARITH_NOT_FOUND) {
        if (a->incr) {
            STAT_INCR(ts, incr_misses);
        } else {
            STAT_INCR(ts, decr_misses);
        }
    }
    return 0;
}

bool ops_flush(struct conn *c, int64_t exptime)
{
    struct server *srv = c->w->srv;
    STAT_INCR(&c->w->stats, flush_cmds);
    if (!srv->settings->flush_enabled) {
        return false;
    }
    rel_time_t now = clock_now(&srv->clock);
    rel_time_t when = exptime > 0 ? clock_realtime(&srv->clock, exptime) : now;
    storage_flush(srv->storage, when, now);
    return true;
}

/*
 * stats.c - summing per-thread counters and rendering the stats groups with
 * memcached's names and order.
 */
#include "stats.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <event2/event.h>

#include "conn.h"
#include "listener.h"
#include "server.h"

void thread_stats_accumulate(struct thread_stats *out, const struct thread_stats *in)
{
#define X(name) out->name += __atomic_load_n(&in->name, __ATOMIC_RELAXED);
    THREAD_STATS(X)
#undef X
    for (unsigned i = 0; i < STATS_MAX_CLASSES; i++) {
#define X(name) out->slab[i].name += __atomic_load_n(&in->slab[i].name, __ATOMIC_RELAXED);
        SLAB_STATS(X)
#undef X
    }
}

static uint64_t sat_sub(uint64_t a, uint64_t b)
{
    return a > b ? a - b : 0;
}

void thread_stats_subtract(struct thread_stats *out, const struct thread_stats *base)
{
#define X(name) out->name = sat_sub(out->name, base->name);
    THREAD_STATS(X)
#undef X
    for (unsigned i = 0; i < STATS_MAX_CLASSES; i++) {
#define X(name) out->slab[i].name = sat_sub(out->slab[i].name, base->slab[i].name);
        SLAB_STATS(X)
#undef X
    }
}

void server_sum_stats(struct server *srv, struct thread_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < srv->nworkers; i++) {
        thread_stats_accumulate(out, &srv->workers[i].stats);
    }
    pthread_mutex_lock(&srv->stats_lock);
    thread_stats_subtract(out, &srv->stats_baseline);
    pthread_mutex_unlock(&srv->stats_lock);
}

void server_reset_stats(struct server *srv)
{
    struct thread_stats now;
    memset(&now, 0, sizeof(now));
    for (unsigned i = 0; i < srv->nworkers; i++) {
        thread_stats_accumulate(&now, &srv->workers[i].stats);
    }
    pthread_mutex_lock(&srv->stats_lock);
    srv->stats_baseline = now;
    pthread_mutex_unlock(&srv->stats_lock);
    storage_reset_stats(srv->storage);
    __atomic_store_n(&srv->counters.total_conns, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&srv->counters.rejected_conns, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&srv->counters.listen_disabled_num, 0, __ATOMIC_RELAXED);
}

static void emit_u64(stat_emit_fn emit, void *ctx, const char *name, uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%" PRIu64, v);
    emit(ctx, name, buf);
}

static uint64_t counter(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

void stats_render_general(struct server *srv, stat_emit_fn emit, void *ctx)
{
    struct thread_stats t;
    struct storage_stats s;
    struct rusage ru;
    char buf[64];
    rel_time_t now = clock_now(&srv->clock);

    server_sum_stats(srv, &t);
    storage_get_stats(srv->storage, now, &s);
    getrusage(RUSAGE_SELF, &ru);

    emit_u64(emit, ctx, "pid", (uint64_t)getpid());
    emit_u64(emit, ctx, "uptime", now);
    emit_u64(emit, ctx, "time", (uint64_t)clock_unix(&srv->clock));
    emit(ctx, "version", MEMSTASH_VERSION);
    emit(ctx, "libevent", event_get_version());
    emit_u64(emit, ctx, "pointer_size", 8 * sizeof(void *));
    snprintf(buf, sizeof(buf), "%ld.%06ld", (long)ru.ru_utime.tv_sec, (long)ru.ru_utime.tv_usec);
    emit(ctx, "rusage_user", buf);
    snprintf(buf, sizeof(buf), "%ld.%06ld", (long)ru.ru_stime.tv_sec, (long)ru.ru_stime.tv_usec);
    emit(ctx, "rusage_system", buf);
    emit_u64(emit, ctx, "max_connections", (uint64_t)srv->settings->maxconns);
    uint64_t curr = counter(&srv->counters.curr_conns);
    emit_u64(emit, ctx, "curr_connections", curr > 0 ? curr - 1 : 0);
    emit_u64(emit, ctx, "total_connections", counter(&srv->counters.total_conns));
    emit_u64(emit, ctx, "rejected_connections", counter(&srv->counters.rejected_conns));
    emit_u64(emit, ctx, "connection_structures", counter(&srv->counters.conn_structures));
    emit_u64(emit, ctx, "reserved_fds", counter(&srv->counters.reserved_fds));
    emit_u64(emit, ctx, "cmd_get", t.get_cmds);
    emit_u64(emit, ctx, "cmd_set", t.set_cmds);
    emit_u64(emit, ctx, "cmd_flush", t.flush_cmds);
    emit_u64(emit, ctx, "cmd_touch", t.touch_cmds);
    emit_u64(emit, ctx, "cmd_meta", t.meta_cmds);
    emit_u64(emit, ctx, "get_hits", t.get_hits);
    emit_u64(emit, ctx, "get_misses", t.get_misses);
    emit_u64(emit, ctx, "get_expired", t.get_expired);
    emit_u64(emit, ctx, "get_flushed", t.get_flushed);
    emit_u64(emit, ctx, "delete_misses", t.delete_misses);
    emit_u64(emit, ctx, "delete_hits", t.delete_hits);
    emit_u64(emit, ctx, "incr_misses", t.incr_misses);
    emit_u64(emit, ctx, "incr_hits", t.incr_hits);
    emit_u64(emit, ctx, "decr_misses", t.decr_misses);
    emit_u64(emit, ctx, "decr_hits", t.decr_hits);
    emit_u64(emit, ctx, "cas_misses", t.cas_misses);
    emit_u64(emit, ctx, "cas_hits", t.cas_hits);
    emit_u64(emit, ctx, "cas_badval", t.cas_badval);
    emit_u64(emit, ctx, "touch_hits", t.touch_hits);
    emit_u64(emit, ctx, "touch_misses", t.touch_misses);
    emit_u64(emit, ctx, "store_too_large", t.store_too_large);
    emit_u64(emit, ctx, "store_no_memory", t.store_no_memory);
    emit_u64(emit, ctx, "auth_cmds", t.auth_cmds);
    emit_u64(emit, ctx, "auth_errors", t.auth_errors);
    if (srv->settings->idle_timeout > 0) {
        emit_u64(emit, ctx, "idle_kicks", t.idle_kicks);
    }
    emit_u64(emit, ctx, "bytes_read", t.bytes_read);
    emit_u64(emit, ctx, "bytes_written", t.bytes_written);
    emit_u64(emit, ctx, "limit_maxbytes", s.limit_maxbytes);
    emit_u64(emit, ctx, "accepting_conns", counter(&srv->counters.accepting_conns));
    emit_u64(emit, ctx, "listen_disabled_num", counter(&srv->counters.listen_disabled_num));
    emit_u64(emit, ctx, "time_in_listen_disabled_us", 0);
    emit_u64(emit, ctx, "threads", srv->nworkers);
    emit_u64(emit, ctx, "conn_yields", t.conn_yields);
    emit_u64(emit, ctx, "hash_power_level", s.hash_power_level);
    emit_u64(emit, ctx, "hash_bytes", s.hash_bytes);
    emit_u64(emit, ctx, "hash_is_expanding", s.hash_is_expanding ? 1 : 0);
    emit_u64(emit, ctx, "malloc_fails", s.malloc_fails);
    emit_u64(emit, ctx, "bytes", s.bytes);
    emit_u64(emit, ctx, "curr_items", s.curr_items);
    emit_u64(emit, ctx, "total_items", s.total_items);
    emit_u64(emit, ctx, "slab_global_page_pool", s.slab_global_page_pool);
    emit_u64(emit, ctx, "expired_unfetched", s.expired_unfetched);
    emit_u64(emit, ctx, "evicted_unfetched", s.evicted_unfetched);
    emit_u64(emit, ctx, "evictions", s.evictions);
    emit_u64(emit, ctx, "reclaimed", s.reclaimed);
    emit_u64(emit, ctx, "crawler_reclaimed", s.crawler_reclaimed);
}

void stats_render_items(struct server *srv, stat_emit_fn emit, void *ctx)
{
    rel_time_t now = clock_now(&srv->clock);
    unsigned n = storage_class_count(srv->storage);
    for (unsigned id = 1; id <= n; id++) {
        struct storage_class_stats cs;
        if (!storage_get_class_stats(srv->storage, id, now, &cs) || cs.number == 0) {
            continue;
        }
        const struct {
            const char *name;
            uint64_t v;
        } rows[] = {
            {"number", cs.number},
            {"age", cs.age},
            {"mem_requested", cs.mem_requested},
            {"evicted", cs.evicted},
            {"evicted_nonzero", cs.evicted_nonzero},
            {"evicted_time", cs.evicted_time},
            {"outofmemory", cs.outofmemory},
            {"tailrepairs", 0},
            {"reclaimed", cs.reclaimed},
            {"expired_unfetched", cs.expired_unfetched},
            {"evicted_unfetched", cs.evicted_unfetched},
            {"crawler_reclaimed", cs.crawler_reclaimed},
        };
        for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
            char name[64];
            snprintf(name, sizeof(name), "items:%u:%s", id, rows[i].name);
            emit_u64(emit, ctx, name, rows[i].v);
        }
    }
}

void stats_render_slabs(struct server *srv, stat_emit_fn emit, void *ctx)
{
    rel_time_t now = clock_now(&srv->clock);
    struct thread_stats *t = malloc(sizeof(*t));
    if (t == NULL) {
        return;
    }
    server_sum_stats(srv, t);
    unsigned n = storage_class_count(srv->storage);
    unsigned active = 0;
    for (unsigned id = 1; id <= n; id++) {
        struct storage_class_stats cs;
        if (!storage_get_class_stats(srv->storage, id, now, &cs) || cs.total_pages == 0) {
            continue;
        }
        active++;
        const struct {
            const char *name;
            uint64_t v;
        } rows[] = {
            {"chunk_size", cs.chunk_size},   {"chunks_per_page", cs.chunks_per_page},
            {"total_pages", cs.total_pages}, {"total_chunks", cs.total_chunks},
            {"used_chunks", cs.used_chunks}, {"free_chunks", cs.free_chunks},
            {"free_chunks_end", 0},
        };
        for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
            char name[64];
            snprintf(name, sizeof(name), "%u:%s", id, rows[i].name);
            emit_u64(emit, ctx, name, rows[i].v);
        }
        if (id < STATS_MAX_CLASSES) {
            const struct slab_stats *ss = &t->slab[id];
#define X(field)                                                                                   \
    do {                                                                                           \
        char name[64];                                                                             \
        snprintf(name, sizeof(name), "%u:%s", id, #field);                                         \
        emit_u64(emit, ctx, name, ss->field);                                                      \
    } while (0);
            SLAB_STATS(X)
#undef X
        }
    }
    struct storage_stats s;
    storage_get_stats(srv->storage, now, &s);
    emit_u64(emit, ctx, "active_slabs", active);
    emit_u64(emit, ctx, "total_malloced", s.total_malloced);
    free(t);
}

struct sizes_ctx {
    stat_emit_fn emit;
    void *ctx;
};

static void emit_size(void *arg, size_t size, uint64_t count)
{
    struct sizes_ctx *sc = arg;
    char name[24];
    snprintf(name, sizeof(name), "%zu", size);
    emit_u64(sc->emit, sc->ctx, name, count);
}

void stats_render_sizes(struct server *srv, stat_emit_fn emit, void *ctx)
{
    if (!storage_sizes_enabled(srv->storage)) {
        emit(ctx, "sizes_status", "disabled");
        return;
    }
    struct sizes_ctx sc = {emit, ctx};
    storage_sizes_visit(srv->storage, emit_size, &sc);
}

void stats_render_conns(struct server *srv, const struct conn *self, stat_emit_fn emit, void *ctx)
{
    rel_time_t now = clock_now(&srv->clock);
    char name[64];
    char peer[CONN_PEER_NAME_MAX];
    for (int i = 0; i < srv->nlisteners; i++) {
        const struct listener *l = &srv->listeners[i];
        snprintf(name, sizeof(name), "%d:addr", l->fd);
        emit(ctx, name, l->name);
        snprintf(name, sizeof(name), "%d:state", l->fd);
        emit(ctx, name, "conn_listening");
        snprintf(name, sizeof(name), "%d:secs_since_last_cmd", l->fd);
        emit_u64(emit, ctx, name, now > l->created ? now - l->created : 0);
    }
    pthread_mutex_lock(&srv->stats_lock);
    for (int fd = 0; fd < srv->registry_size; fd++) {
        const struct conn *c = srv->registry[fd];
        if (c == NULL) {
            continue;
        }
        rel_time_t last = __atomic_load_n(&c->last_cmd_time, __ATOMIC_RELAXED);
        enum conn_state st = __atomic_load_n(&c->state, __ATOMIC_RELAXED);
        conn_peer_name(c, peer, sizeof(peer));
        if (c->is_udp) {
            snprintf(name, sizeof(name), "%d:UDP", fd);
            emit(ctx, name, "UDP");
            snprintf(name, sizeof(name), "%d:addr", fd);
            emit(ctx, name, peer);
            snprintf(name, sizeof(name), "%d:state", fd);
            emit(ctx, name, "conn_read");
            continue;
        }
        /* memcached shows the asking connection parsing and idle ones reading. */
        const char *state = conn_state_name(st);
        if (st == CONN_NEW_CMD) {
            state = c == self ? "conn_parse_cmd" : "conn_read";
        }
        snprintf(name, sizeof(name), "%d:addr", fd);
        emit(ctx, name, peer);
        snprintf(name, sizeof(name), "%d:listen_addr", fd);
        emit(ctx, name, c->listen_addr ? c->listen_addr : "");
        snprintf(name, sizeof(name), "%d:state", fd);
        emit(ctx, name, state);
        snprintf(name, sizeof(name), "%d:secs_since_last_cmd", fd);
        emit_u64(emit, ctx, name, now > last ? now - last : 0);
    }
    pthread_mutex_unlock(&srv->stats_lock);
}

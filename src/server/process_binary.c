/*
 * process_binary.c - the binary protocol against storage, with memcached
 * 1.6.18's replies, statuses and quiet-variant rules (see proto/binary.h).
 */
#include "process_binary.h"

#include <string.h>

#include "binary.h"
#include "log.h"
#include "prefix_stats.h"
#include "process.h"
#include "server.h"
#include "storage.h"

static struct server *srv_of(struct conn *c)
{
    return c->w->srv;
}

static void send_error(struct conn *c, uint8_t opcode, uint32_t opaque, uint16_t status)
{
    char buf[BIN_ERROR_MAX];
    conn_out(c, buf, bin_compose_error(buf, opcode, opaque, status));
}

static void send_ok(struct conn *c, const struct bin_request *req, uint64_t cas)
{
    if (req->quiet) {
        return;
    }
    char buf[BIN_HEADER_LEN];
    conn_out(c, buf, bin_compose_ok(buf, req->hdr.opcode, req->hdr.opaque, cas));
}

static void process_get(struct conn *c, const struct bin_request *req)
{
    struct server *srv = srv_of(c);
    struct thread_stats *ts = &c->w->stats;
    bool touch = req->cmd == BIN_OP_TOUCH || req->cmd == BIN_OP_GAT || req->cmd == BIN_OP_GATK;
    rel_time_t now = clock_now(&srv->clock);
    uint64_t hv = storage_hash(req->key.p, req->key.len);
    enum storage_get_outcome why = STORAGE_MISS;
    struct item *it;
    if (touch) {
        it = storage_get_touch(srv->storage, req->key.p, req->key.len, hv, now,
                               clock_realtime(&srv->clock, (int64_t)req->exptime), &why);
        STAT_INCR(ts, touch_cmds);
        if (it != NULL) {
            STAT_INCR(ts, touch_hits);
            SLAB_INCR(ts, storage_item_class(it), touch_hits);
        } else {
            STAT_INCR(ts, touch_misses);
        }
    } else {
        it = storage_get(srv->storage, req->key.p, req->key.len, hv, now, &why);
        STAT_INCR(ts, get_cmds);
        if (it != NULL) {
            STAT_INCR(ts, get_hits);
            SLAB_INCR(ts, storage_item_class(it), get_hits);
        } else {
            STAT_INCR(ts, get_misses);
            if (why == STORAGE_EXPIRED) {
                STAT_INCR(ts, get_expired);
            } else if (why == STORAGE_FLUSHED) {
                STAT_INCR(ts, get_flushed);
            }
        }
    }
    if (__atomic_load_n(&srv->settings->detail_enabled, __ATOMIC_RELAXED)) {
        prefix_stats_record_get(srv->prefix_stats, req->key.p, req->key.len, it != NULL);
    }
    if (it == NULL) {
        if (req->quiet) {
            return;
        }
        if (req->return_key) {
            char buf[BIN_HEADER_LEN + BIN_KEY_MAX];
            conn_out(c, buf,
                     bin_compose_key_miss(buf, req->hdr.opcode, req->hdr.opaque, req->key.p,
                                          req->key.len));
        } else {
            send_error(c, req->hdr.opcode, req->hdr.opaque, BIN_STATUS_KEY_ENOENT);
        }
        return;
    }
    /* TOUCH answers with the flags only; the others with the value too. */
    bool with_value = req->cmd != BIN_OP_TOUCH;
    size_t nbytes = storage_item_nbytes(it);
    char hdr[BIN_ITEM_HEADER_MAX];
    size_t n =
        bin_compose_item(hdr, req->hdr.opcode, req->hdr.opaque, storage_item_cas(it),
                         storage_item_flags(it), req->return_key ? req->key.p : NULL,
                         req->return_key ? req->key.len : 0, with_value ? (uint32_t)nbytes : 0);
    conn_out(c, hdr, n);
    if (with_value && nbytes > 0) {
        conn_out_item(c, it, storage_item_value(it), nbytes);
    } else {
        storage_release(srv->storage, &it);
    }
}

static void process_update(struct conn *c, const struct bin_request *req)
{
    struct server *srv = srv_of(c);
    rel_time_t now = clock_now(&srv->clock);
    uint64_t hv = storage_hash(req->key.p, req->key.len);
    bool has_extras =
        req->cmd == BIN_OP_SET || req->cmd == BIN_OP_ADD || req->cmd == BIN_OP_REPLACE;
    uint32_t flags = has_extras ? req->flags : 0;
    struct item *it = NULL;
    int rc = STORAGE_E2BIG;

    if (__atomic_load_n(&srv->settings->detail_enabled, __ATOMIC_RELAXED)) {
        prefix_stats_record_set(srv->prefix_stats, req->key.p, req->key.len);
    }
    if (process_size_ok(srv->settings, req->key.len, flags, req->value_len)) {
        rc = storage_alloc(srv->storage, req->key.p, req->key.len, flags,
                           has_extras ? clock_realtime(&srv->clock, (int64_t)req->exptime) : 0,
                           req->value_len, now, &it);
    }
    if (rc != STORAGE_OK) {
        if (rc == STORAGE_E2BIG) {
            STAT_INCR(&c->w->stats, store_too_large);
            send_error(c, req->hdr.opcode, req->hdr.opaque, BIN_STATUS_E2BIG);
        } else {
            STAT_INCR(&c->w->stats, store_no_memory);
            send_error(c, req->hdr.opcode, req->hdr.opaque, BIN_STATUS_ENOMEM);
        }
        c->swallow = bin_swallow_len(req->value_len);
        c->state = c->swallow > 0 ? CONN_SWALLOW : CONN_NEW_CMD;
        if (req->cmd == BIN_OP_SET) {
            bool found, mismatch;
            storage_delete(srv->storage, req->key.p, req->key.len, hv, 0, now, &found, &mismatch,
                           NULL);
        }
        return;
    }
    c->item = it;
    c->item_hv = hv;
    c->item_cas = req->hdr.cas;
    c->item_done = 0;
    c->item_need = req->value_len;
    c->bin_opcode = req->hdr.opcode;
    c->bin_opaque = req->hdr.opaque;
    c->state = CONN_NREAD;
}

void process_binary_complete_nread(struct conn *c)
{
    struct server *srv = srv_of(c);
    struct thread_stats *ts = &c->w->stats;
    struct item *it = c->item;
    uint8_t opcode = c->bin_opcode;
    uint8_t base = bin_opcode_base(opcode);
    bool quiet = bin_opcode_is_quiet(opcode);
    enum storage_op op;

    c->item = NULL;
    /* Binary values carry no terminator; the item keeps one for text readers. */
    memcpy(storage_item_value(it) + storage_item_nbytes(it), "\r\n", 2);
    STAT_INCR(ts, set_cmds);
    unsigned cls = storage_item_class(it);
    SLAB_INCR(ts, cls, cmd_set);

    switch (base) {
    case BIN_OP_ADD:
        op = STORAGE_ADD;
        break;
    case BIN_OP_REPLACE:
        op = STORAGE_REPLACE;
        break;
    case BIN_OP_APPEND:
        op = STORAGE_APPEND;
        break;
    case BIN_OP_PREPEND:
        op = STORAGE_PREPEND;
        break;
    default:
        op = STORAGE_SET;
        break;
    }
    /* A CAS in a SET/ADD/REPLACE request turns it into a compare-and-swap. */
    if (c->item_cas != 0 && (op == STORAGE_SET || op == STORAGE_ADD || op == STORAGE_REPLACE)) {
        op = STORAGE_CAS;
    }
    enum storage_store_outcome out = STORAGE_NOT_STORED;
    uint64_t cas = 0;
    int rc = storage_store(srv->storage, it, op, c->item_cas, c->item_hv, clock_now(&srv->clock),
                           &out, &cas);
    storage_release(srv->storage, &it);
    if (rc == STORAGE_ENOMEM && op != STORAGE_APPEND && op != STORAGE_PREPEND) {
        STAT_INCR(ts, store_no_memory);
        send_error(c, opcode, c->bin_opaque, BIN_STATUS_ENOMEM);
        return;
    }
    if (rc != STORAGE_OK) {
        out = STORAGE_NOT_STORED;
    }
    if (op == STORAGE_CAS) {
        if (out == STORAGE_STORED) {
            STAT_INCR(ts, cas_hits);
            SLAB_INCR(ts, cls, cas_hits);
        } else if (out == STORAGE_EXISTS) {
            STAT_INCR(ts, cas_badval);
            SLAB_INCR(ts, cls, cas_badval);
        } else if (out == STORAGE_NOT_FOUND) {
            STAT_INCR(ts, cas_misses);
        }
    }
    switch (out) {
    case STORAGE_STORED:
        if (!quiet) {
            char buf[BIN_HEADER_LEN];
            conn_out(c, buf, bin_compose_ok(buf, opcode, c->bin_opaque, cas));
        }
        break;
    case STORAGE_EXISTS:
        send_error(c, opcode, c->bin_opaque, BIN_STATUS_KEY_EEXISTS);
        break;
    case STORAGE_NOT_FOUND:
        send_error(c, opcode, c->bin_opaque, BIN_STATUS_KEY_ENOENT);
        break;
    default:
        send_error(c, opcode, c->bin_opaque,
                   base == BIN_OP_ADD       ? BIN_STATUS_KEY_EEXISTS
                   : base == BIN_OP_REPLACE ? BIN_STATUS_KEY_ENOENT
                                            : BIN_STATUS_NOT_STORED);
        break;
    }
}

static void process_delete(struct conn *c, const struct bin_request *req)
{
    struct server *srv = srv_of(c);
    bool found = false, mismatch = false;
    unsigned cls = 0;
    if (__atomic_load_n(&srv->settings->detail_enabled, __ATOMIC_RELAXED)) {
        prefix_stats_record_delete(srv->prefix_stats, req->key.p, req->key.len);
    }
    uint64_t hv = storage_hash(req->key.p, req->key.len);
    storage_delete(srv->storage, req->key.p, req->key.len, hv, req->hdr.cas, clock_now(&srv->clock),
                   &found, &mismatch, &cls);
    if (found && mismatch) {
        send_error(c, req->hdr.opcode, req->hdr.opaque, BIN_STATUS_KEY_EEXISTS);
    } else if (found) {
        STAT_INCR(&c->w->stats, delete_hits);
        SLAB_INCR(&c->w->stats, cls, delete_hits);
        send_ok(c, req, 0);
    } else {
        STAT_INCR(&c->w->stats, delete_misses);
        send_error(c, req->hdr.opcode, req->hdr.opaque, BIN_STATUS_KEY_ENOENT);
    }
}

static void process_arith(struct conn *c, const struct bin_request *req)
{
    struct server *srv = srv_of(c);
    struct thread_stats *ts = &c->w->stats;
    bool incr = req->cmd == BIN_OP_INCREMENT;
    struct storage_arith a = {
        .incr = incr,
        .delta = req->delta,
        .cas_in = req->hdr.cas,
        .create = req->exptime != BIN_ARITH_NO_CREATE,
        .initial = req->initial,
        .exptime = req->exptime != BIN_ARITH_NO_CREATE
                       ? clock_realtime(&srv->clock, (int64_t)req->exptime)
                       : 0,
    };
    enum storage_arith_outcome out = STORAGE_ARITH_NOT_FOUND;
    uint64_t value = 0, cas = 0;
    unsigned cls = 0;
    uint64_t hv = storage_hash(req->key.p, req->key.len);
    int rc = storage_arith(srv->storage, req->key.p, req->key.len, hv, &a, clock_now(&srv->clock),
                           &out, &value, &cas, &cls);
    if (rc != STORAGE_OK) {
        send_error(c, req->hdr.opcode, req->hdr.opaque, BIN_STATUS_ENOMEM);
        return;
    }
    switch (out) {
    case STORAGE_ARITH_OK:
        if (cls != 0) {
            if (incr) {
                STAT_INCR(ts, incr_hits);
                SLAB_INCR(ts, cls, incr_hits);
            } else {
                STAT_INCR(ts, decr_hits);
                SLAB_INCR(ts, cls, decr_hits);
            }
        } else if (incr) {
            STAT_INCR(ts, incr_misses);
        } else {
            STAT_INCR(ts, decr_misses);
        }
        if (!req->quiet) {
            char buf[BIN_ARITH_LEN];
            conn_out(c, buf, bin_compose_arith(buf, req->hdr.opcode, req->hdr.opaque, cas, value));
        }
        break;
    case STORAGE_ARITH_NON_NUMERIC:
        send_error(c, req->hdr.opcode, req->hdr.opaque, BIN_STATUS_DELTA_BADVAL);
        break;
    case STORAGE_ARITH_EXISTS:
        send_error(c, req->hdr.opcode, req->hdr.opaque, BIN_STATUS_KEY_EEXISTS);
        break;
    default:
        if (incr) {
            STAT_INCR(ts, incr_misses);
        } else {
            STAT_INCR(ts, decr_misses);
        }
        send_error(c, req->hdr.opcode, req->hdr.opaque, BIN_STATUS_KEY_ENOENT);
        break;
    }
}

static void process_flush(struct conn *c, const struct bin_request *req)
{
    struct server *srv = srv_of(c);
    STAT_INCR(&c->w->stats, flush_cmds);
    if (!srv->settings->flush_enabled) {
        send_error(c, req->hdr.opcode, req->hdr.opaque, BIN_STATUS_AUTH_ERROR);
        return;
    }
    rel_time_t now = clock_now(&srv->clock);
    rel_time_t when = req->exptime > 0 ? clock_realtime(&srv->clock, (int64_t)req->exptime) : now;
    storage_flush(srv->storage, when, now);
    send_ok(c, req, 0);
}

struct bin_stat_ctx {
    struct conn *c;
    uint32_t opaque;
};

static void emit_bin_stat(void *ctx, const char *name, const char *value)
{
    struct bin_stat_ctx *sc = ctx;
    char buf[BIN_HEADER_LEN + 512];
    size_t n =
        bin_compose_stat(buf, sizeof(buf), sc->opaque, name, strlen(name), value, strlen(value));
    conn_out(sc->c, buf, n);
}

/* memcached matches STAT group names by prefix. */
static bool group_is(const struct bin_span *key, const char *name)
{
    size_t n = strlen(name);
    return key->len >= n && memcmp(key->p, name, n) == 0;
}

static void process_stat(struct conn *c, const struct bin_request *req)
{
    struct server *srv = srv_of(c);
    struct bin_stat_ctx sc = {c, req->hdr.opaque};
    const struct bin_span *key = &req->key;
    if (key->len == 0) {
        stats_render_general(srv, emit_bin_stat, &sc);
    } else if (group_is(key, "reset")) {
        server_reset_stats(srv);
    } else if (group_is(key, "settings")) {
        settings_render(srv->settings, emit_bin_stat, &sc);
    } else if (group_is(key, "detail")) {
        const char *arg = key->p + 6;
        size_t n = key->len - 6;
        while (n > 0 && *arg == ' ') {
            arg++;
            n--;
        }
        if (n == 2 && memcmp(arg, "on", 2) == 0) {
            __atomic_store_n(&srv->settings->detail_enabled, true, __ATOMIC_RELAXED);
        } else if (n == 3 && memcmp(arg, "off", 3) == 0) {
            __atomic_store_n(&srv->settings->detail_enabled, false, __ATOMIC_RELAXED);
        } else {
            send_error(c, req->hdr.opcode, req->hdr.opaque, BIN_STATUS_KEY_ENOENT);
            return;
        }
    } else if (group_is(key, "items")) {
        stats_render_items(srv, emit_bin_stat, &sc);
    } else if (group_is(key, "slabs")) {
        stats_render_slabs(srv, emit_bin_stat, &sc);
    } else if (group_is(key, "sizes")) {
        emit_bin_stat(&sc, "sizes_status", "disabled");
    } else if (group_is(key, "conns")) {
        stats_render_conns(srv, emit_bin_stat, &sc);
    } else {
        send_error(c, req->hdr.opcode, req->hdr.opaque, BIN_STATUS_KEY_ENOENT);
        return;
    }
    char end[BIN_HEADER_LEN];
    conn_out(c, end, bin_compose_stat_end(end, req->hdr.opaque));
}

void process_binary(struct conn *c, const struct bin_request *req)
{
    struct server *srv = srv_of(c);
    if (srv->verbose > 1) {
        log_msg(LOG_DEBUG, "<%d Read binary protocol data: %s", c->fd,
                bin_opcode_name(req->hdr.opcode));
    }
    switch (req->cmd) {
    case BIN_OP_GET:
    case BIN_OP_GETK:
    case BIN_OP_TOUCH:
    case BIN_OP_GAT:
    case BIN_OP_GATK:
        process_get(c, req);
        break;
    case BIN_OP_SET:
    case BIN_OP_ADD:
    case BIN_OP_REPLACE:
    case BIN_OP_APPEND:
    case BIN_OP_PREPEND:
        process_update(c, req);
        break;
    case BIN_OP_DELETE:
        process_delete(c, req);
        break;
    case BIN_OP_INCREMENT:
    case BIN_OP_DECREMENT:
        process_arith(c, req);
        break;
    case BIN_OP_QUIT:
        send_ok(c, req, 0);
        c->close_after_write = true;
        break;
    case BIN_OP_FLUSH:
        process_flush(c, req);
        break;
    case BIN_OP_NOOP: {
        char buf[BIN_HEADER_LEN];
        conn_out(c, buf, bin_compose_ok(buf, req->hdr.opcode, req->hdr.opaque, 0));
        break;
    }
    case BIN_OP_VERSION: {
        char buf[BIN_HEADER_LEN + 64];
        conn_out(c, buf, bin_compose_version(buf, sizeof(buf), req->hdr.opaque, MEMSTASH_VERSION));
        break;
    }
    case BIN_OP_STAT:
        process_stat(c, req);
        break;
    default:
        send_error(c, req->hdr.opcode, req->hdr.opaque, BIN_STATUS_UNKNOWN_COMMAND);
        break;
    }
}

void process_binary_error(struct conn *c, const struct bin_request *req)
{
    send_error(c, req->hdr.opcode, req->hdr.opaque, req->err_status);
    if (req->err_close) {
        c->close_after_write = true;
    } else if (req->err_swallow > 0) {
        c->swallow = req->err_swallow;
        c->state = CONN_SWALLOW;
    }
}

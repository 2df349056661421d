/*
 * process.c - text-protocol requests run against storage, with memcached
 * 1.6.18's replies and counters.
 */
#include "process.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "dump.h"
#include "log.h"
#include "numparse.h"
#include "ops.h"
#include "prefix_stats.h"
#include "process_binary.h"
#include "process_meta.h"
#include "server.h"
#include "transport_tls.h"
#include "storage.h"
#include "watch.h"

static struct server *srv_of(struct conn *c)
{
    return c->w->srv;
}

/* Queues a one-line reply unless the command asked for no reply. */
static void reply(struct conn *c, const char *line)
{
    if (c->noreply) {
        if (server_verbose(srv_of(c)) > 1) {
            log_msg(LOG_DEBUG, ">%d NOREPLY %s", c->fd, line);
        }
        return;
    }
    conn_out_str(c, line);
}

static void process_get(struct conn *c, const struct text_request *req)
{
    struct server *srv = srv_of(c);
    bool with_cas = req->cmd == TEXT_CMD_GETS || req->cmd == TEXT_CMD_GATS;
    bool touch = req->cmd == TEXT_CMD_GAT || req->cmd == TEXT_CMD_GATS;
    const char *p = req->keys;
    const char *end = req->keys + req->keys_len;
    struct text_token key;

    while (text_next_token(&p, end, &key)) {
        struct item *it = ops_fetch(c, key.p, key.len, touch, req->exptime);
        if (it == NULL) {
            continue;
        }
        conn_mark_response(c, false); /* over UDP, each hit is a message */
        char hdr[TEXT_VALUE_HEADER_MAX];
        size_t nbytes = storage_item_nbytes(it);
        size_t n =
            text_compose_value(hdr, storage_item_key(it), storage_item_nkey(it),
                               storage_item_flags(it), nbytes, with_cas, storage_item_cas(it));
        if (server_verbose(srv) > 1) {
            log_msg(LOG_DEBUG, ">%d sending key %.*s", c->fd, (int)key.len, key.p);
        }
        conn_out(c, hdr, n);
        conn_out_item(c, it, storage_item_value(it), nbytes);
        conn_out(c, "\r\n", 2);
    }
    if (server_verbose(srv) > 1) {
        log_msg(LOG_DEBUG, ">%d END", c->fd);
    }
    conn_out(c, "END\r\n", 5);
}

static enum storage_op store_op(enum text_cmd cmd)
{
    switch (cmd) {
    case TEXT_CMD_ADD:
        return STORAGE_ADD;
    case TEXT_CMD_REPLACE:
        return STORAGE_REPLACE;
    case TEXT_CMD_APPEND:
        return STORAGE_APPEND;
    case TEXT_CMD_PREPEND:
        return STORAGE_PREPEND;
    case TEXT_CMD_CAS:
        return STORAGE_CAS;
    default:
        return STORAGE_SET;
    }
}

static void process_update(struct conn *c, const struct text_request *req)
{
    struct conn_ext *x = conn_ext(c);
    if (x == NULL) {
        /* Nowhere to note the data block that follows: answer, then close. */
        reply(c, "SERVER_ERROR out of memory storing object");
        c->close_after_write = true;
        return;
    }
    struct item *it = NULL;
    uint64_t hv;
    int rc = ops_alloc(c, req->key.p, req->key.len, req->flags, req->exptime, req->bytes,
                       req->cmd == TEXT_CMD_SET, &hv, &it);
    if (rc != STORAGE_OK) {
        reply(c, rc == STORAGE_E2BIG ? "SERVER_ERROR object too large for cache"
                                     : "SERVER_ERROR out of memory storing object");
        x->swallow = (uint64_t)req->bytes + 2;
        conn_set_state(c, CONN_SWALLOW);
        return;
    }
    x->item = it;
    x->item_cmd = req->cmd;
    x->item_cas = req->cas;
    x->item_hv = hv;
    x->item_done = 0;
    x->item_need = req->bytes + 2;
    conn_set_state(c, CONN_NREAD);
}

void process_complete_nread(struct conn *c)
{
    struct server *srv = srv_of(c);
    struct conn_ext *x = c->ext;
    struct item *it = x->item;
    if (c->binary) {
        process_binary_complete_nread(c);
        return;
    }
    if (x->item_cmd == TEXT_CMD_META) {
        process_meta_complete_nread(c);
        return;
    }
    x->item = NULL;
    if (x->tail[0] != '\r' || x->tail[1] != '\n') {
        /* memcached counts the attempt before it checks the terminator. */
        STAT_INCR(&c->w->stats, set_cmds);
        SLAB_INCR(&c->w->stats, storage_item_class(c->w->srv->storage, it), cmd_set);
        reply(c, "CLIENT_ERROR bad data chunk");
        storage_release(srv->storage, &it);
        return;
    }
    enum storage_store_outcome out;
    enum storage_op op = store_op(x->item_cmd);
    int rc = ops_store(c, it, op, x->item_cas, x->item_hv, &out, NULL);
    if (rc != STORAGE_OK && op != STORAGE_APPEND && op != STORAGE_PREPEND) {
        reply(c, "SERVER_ERROR out of memory storing object");
        return;
    }
    if (rc != STORAGE_OK) {
        /* An append/prepend whose joined value cannot be allocated is not
         * stored, as in memcached. */
        out = STORAGE_NOT_STORED;
    }
    switch (out) {
    case STORAGE_STORED:
        reply(c, "STORED");
        break;
    case STORAGE_EXISTS:
        reply(c, "EXISTS");
        break;
    case STORAGE_NOT_FOUND:
        reply(c, "NOT_FOUND");
        break;
    default:
        reply(c, "NOT_STORED");
        break;
    }
}

static void process_delete(struct conn *c, const struct text_request *req)
{
    bool found, mismatch;
    ops_delete(c, req->key.p, req->key.len, 0, &found, &mismatch);
    reply(c, found ? "DELETED" : "NOT_FOUND");
}

static void process_arith(struct conn *c, const struct text_request *req)
{
    struct storage_arith a = {.incr = req->cmd == TEXT_CMD_INCR, .delta = req->delta};
    enum storage_arith_outcome out;
    uint64_t value = 0;
    if (ops_arith(c, req->key.p, req->key.len, &a, &out, &value, NULL) != STORAGE_OK) {
        reply(c, "SERVER_ERROR out of memory");
        return;
    }
    switch (out) {
    case STORAGE_ARITH_OK: {
        char num[24];
        num[num_format_u64(num, value)] = '\0';
        reply(c, num);
        break;
    }
    case STORAGE_ARITH_NON_NUMERIC:
        reply(c, "CLIENT_ERROR cannot increment or decrement non-numeric value");
        break;
    default:
        reply(c, "NOT_FOUND");
        break;
    }
}

static void process_touch(struct conn *c, const struct text_request *req)
{
    struct item *it = ops_fetch(c, req->key.p, req->key.len, true, req->exptime);
    if (it != NULL) {
        storage_release(srv_of(c)->storage, &it);
        reply(c, "TOUCHED");
    } else {
        reply(c, "NOT_FOUND");
    }
}

static void process_flush_all(struct conn *c, const struct text_request *req)
{
    reply(c, ops_flush(c, req->exptime) ? "OK" : "CLIENT_ERROR flush_all not allowed");
}

static void process_memlimit(struct conn *c, const struct text_request *req)
{
    struct server *srv = srv_of(c);
    uint64_t mb = req->delta;
    if (mb < 8) {
        reply(c, "MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m");
    } else if (mb > 1000000000) {
        reply(c, "MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes");
    } else if (storage_set_memlimit(srv->storage, (size_t)mb * 1024 * 1024) != STORAGE_OK) {
        reply(c, "MEMLIMIT_ADJUST_FAILED out of bounds or unable to adjust");
    } else {
        __atomic_store_n(&srv->settings->maxbytes, (size_t)mb * 1024 * 1024, __ATOMIC_RELAXED);
        if (server_verbose(srv) > 0) {
            log_msg(LOG_INFO, "maxbytes adjusted to %" PRIu64 "m", mb);
        }
        reply(c, "OK");
    }
}

static void emit_stat(void *ctx, const char *name, const char *value)
{
    struct conn *c = ctx;
    char line[512];
    int n = snprintf(line, sizeof(line), "STAT %s %s\r\n", name, value);
    if (n > 0) {
        conn_out(c, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
    }
}

static void emit_line(void *ctx, const char *text)
{
    conn_out_str(ctx, text);
}

/* "stats detail on|off|dump". */
static void process_stats_detail(struct conn *c, const struct text_token *arg)
{
    struct server *srv = srv_of(c);
    bool *enabled = &srv->settings->detail_enabled;
    if (arg != NULL && text_token_is(arg, "on")) {
        __atomic_store_n(enabled, true, __ATOMIC_RELAXED);
        conn_out_str(c, "OK");
    } else if (arg != NULL && text_token_is(arg, "off")) {
        __atomic_store_n(enabled, false, __ATOMIC_RELAXED);
        conn_out_str(c, "OK");
    } else if (arg != NULL && text_token_is(arg, "dump")) {
        prefix_stats_dump(srv->prefix_stats, emit_line, c);
        conn_out_str(c, "END");
    } else {
        conn_out_str(c, "CLIENT_ERROR usage: stats detail on|off|dump");
    }
}

static void process_stats(struct conn *c, const struct text_request *req)
{
    struct server *srv = srv_of(c);
    if (req->nargs == 1) {
        stats_render_general(srv, emit_stat, c);
    } else {
        const struct text_token *sub = &req->args[1];
        if (text_token_is(sub, "reset")) {
            server_reset_stats(srv);
            conn_out_str(c, "RESET");
            return;
        } else if (text_token_is(sub, "settings")) {
            settings_render(srv->settings, emit_stat, c);
        } else if (text_token_is(sub, "items")) {
            stats_render_items(srv, emit_stat, c);
        } else if (text_token_is(sub, "slabs")) {
            stats_render_slabs(srv, emit_stat, c);
        } else if (text_token_is(sub, "sizes")) {
            stats_render_sizes(srv, emit_stat, c);
        } else if (text_token_is(sub, "sizes_enable") || text_token_is(sub, "sizes_disable")) {
            /* memcached answers these with one line and no END. */
            bool on = sub->len == sizeof("sizes_enable") - 1;
            if (storage_sizes_enable(srv->storage, on)) {
                emit_stat(c, "sizes_status", on ? "enabled" : "disabled");
            } else {
                emit_stat(c, "sizes_status", "error");
            }
            return;
        } else if (text_token_is(sub, "conns")) {
            stats_render_conns(srv, c, emit_stat, c);
        } else if (text_token_is(sub, "cachedump")) {
            dump_cachedump(c, req);
            return;
        } else if (text_token_is(sub, "detail")) {
            process_stats_detail(c, req->nargs > 2 ? &req->args[2] : NULL);
            return;
        } else {
            conn_out_str(c, "ERROR");
            return;
        }
    }
    conn_out(c, "END\r\n", 5);
}

/* watch: the watcher collects lines from now on; once the OK is written,
 * conn.c hands it the socket. */
static void process_watch(struct conn *c, const struct text_request *req)
{
    struct server *srv = srv_of(c);
    unsigned flags;
    struct conn_ext *x;
    if (!srv->settings->watch_enabled) {
        reply(c, "CLIENT_ERROR watch commands not allowed");
    } else if (c->is_udp || c->tp != &transport_plain ||
               (c->ext != NULL && c->ext->watcher != NULL) || srv->watch == NULL ||
               watch_parse_flags(req->args + 1, req->nargs - 1, &flags) != 0) {
        reply(c, "ERROR");
    } else if ((x = conn_ext(c)) == NULL) {
        reply(c, "SERVER_ERROR out of memory");
    } else if ((x->watcher = watch_reserve(srv->watch, flags)) == NULL) {
        reply(c, "WATCHER_TOO_MANY log watcher limit reached");
    } else {
        reply(c, "OK");
        c->close_after_write = true;
    }
}

/* memcached 1.6.18's answers: OK, the loader's error line, or this without -Z. */
static void process_refresh_certs(struct conn *c)
{
    struct server *srv = c->w->srv;
    if (srv->tls == NULL) {
        conn_out_str(c, "Error TLS not enabled");
        return;
    }
    char err[512];
    if (tls_ctx_refresh(srv->tls, err, sizeof(err)) == 0) {
        conn_out_str(c, "OK");
    } else {
        conn_out_str(c, err);
    }
}

void process_text(struct conn *c, const struct text_request *req)
{
    struct server *srv = srv_of(c);
    if (server_verbose(srv) > 1) {
        log_msg(LOG_DEBUG, "<%d %.*s", c->fd, (int)req->line_len, req->line);
    }
    c->noreply = req->noreply;
    conn_mark_response(c, false);
    switch (req->cmd) {
    case TEXT_CMD_GET:
    case TEXT_CMD_GETS:
    case TEXT_CMD_GAT:
    case TEXT_CMD_GATS:
        process_get(c, req);
        break;
    case TEXT_CMD_SET:
    case TEXT_CMD_ADD:
    case TEXT_CMD_REPLACE:
    case TEXT_CMD_APPEND:
    case TEXT_CMD_PREPEND:
    case TEXT_CMD_CAS:
        process_update(c, req);
        break;
    case TEXT_CMD_DELETE:
        process_delete(c, req);
        break;
    case TEXT_CMD_INCR:
    case TEXT_CMD_DECR:
        process_arith(c, req);
        break;
    case TEXT_CMD_TOUCH:
        process_touch(c, req);
        break;
    case TEXT_CMD_STATS:
        process_stats(c, req);
        break;
    case TEXT_CMD_FLUSH_ALL:
        process_flush_all(c, req);
        break;
    case TEXT_CMD_VERSION:
        conn_out_str(c, "VERSION " MEMSTASH_VERSION);
        break;
    case TEXT_CMD_VERBOSITY: {
        int level = req->delta > 2 ? 2 : (int)req->delta;
        __atomic_store_n(&srv->verbose, level, __ATOMIC_RELAXED);
        __atomic_store_n(&srv->settings->verbose, level, __ATOMIC_RELAXED);
        reply(c, "OK");
        break;
    }
    case TEXT_CMD_QUIT:
        c->close_after_write = true;
        break;
    case TEXT_CMD_SHUTDOWN:
        if (!srv->settings->shutdown_command) {
            conn_out_str(c, "ERROR: shutdown not enabled");
            break;
        }
        server_request_shutdown(srv, req->graceful ? 2 : 1);
        c->close_after_write = true;
        break;
    case TEXT_CMD_CACHE_MEMLIMIT:
        process_memlimit(c, req);
        break;
    case TEXT_CMD_META:
        process_meta(c, req);
        break;
    case TEXT_CMD_LRU_CRAWLER:
        dump_lru_crawler(c, req);
        break;
    case TEXT_CMD_WATCH:
        process_watch(c, req);
        break;
    case TEXT_CMD_REFRESH_CERTS:
        process_refresh_certs(c);
        break;
    case TEXT_CMD_ERROR:
    default:
        /* memcached checks -A and -F (and counts cmd_flush) before it looks
         * at the arguments. */
        if (req->err_cmd == TEXT_CMD_SHUTDOWN && !srv->settings->shutdown_command) {
            conn_out_str(c, "ERROR: shutdown not enabled");
            break;
        }
        if (req->err_cmd == TEXT_CMD_FLUSH_ALL) {
            STAT_INCR(&c->w->stats, flush_cmds);
            if (!srv->settings->flush_enabled) {
                reply(c, "CLIENT_ERROR flush_all not allowed");
                break;
            }
        }
        reply(c, text_error_string(req->err));
        break;
    }
}

/*
 * process_meta.c - the meta protocol (mg ms md ma mn me) run against storage.
 *
 * proto/meta.h parses the line and composes the reply lines; the rules at its
 * end are the spec this file follows (memcached 1.6.18). Each command makes
 * one storage call that does its whole read-modify-write under the key's
 * lock (storage.h, "meta protocol"), then counts memcached's statistics and
 * queues the reply. Values go out as spans of item memory, never copied.
 *
 * Counters, as 1.6.18 keeps them for meta commands:
 *   mg  hit: cmd_get, get_hits (cmd_touch, touch_hits with T); a created item
 *       counts as a hit; miss: cmd_get, get_misses (even with T)
 *   ms  cmd_set after the data block; cas_hits/cas_badval/cas_misses in CAS
 *       mode (an invalidating store counts as a cas hit)
 *   md  delete_hits, or delete_misses (not found or CAS mismatch); md I none
 *   ma  incr_/decr_hits on an existing item, incr_/decr_misses on NF; a
 *       created item and EX count nothing
 *   me  cmd_meta (the only command that counts there)
 * Every lookup that meets an expired or flushed item also counts get_expired
 * or get_flushed, as memcached's item lookup does. Meta commands do not feed
 * "stats detail".
 */
#include "process_meta.h"

#include <stdlib.h>
#include <string.h>

#include "meta.h"
#include "numparse.h"
#include "ops.h"
#include "server.h"
#include "storage.h"

/* An ms waiting for its data block. The read buffer moves while the block
 * arrives, so the request is copied here: req.key, req.key_token and
 * req.opaque point into key and opaque below. Freed with free(). */
struct meta_pending {
    struct meta_request req;
    char key[META_KEY_MAX];
    char opaque[META_OPAQUE_MAX];
};

static struct server *srv_of(struct conn *c)
{
    return c->w->srv;
}

static void reply_error(struct conn *c, enum meta_error err)
{
    conn_out_str(c, meta_error_string(err));
}

/* Queues the reply line for rc unless q hides it. */
static void reply_line(struct conn *c, const struct meta_request *req, enum meta_rc rc,
                       const struct meta_item_facts *facts, bool created)
{
    if (meta_reply_skipped(req, rc, created)) {
        return;
    }
    char buf[META_HEADER_MAX];
    size_t n = meta_compose(buf, sizeof(buf), req, rc, facts);
    if (n == 0) {
        conn_out_str(c, "SERVER_ERROR output line too long");
        return;
    }
    conn_out(c, buf, n);
}

/* memcached prints a TTL as exptime - now in unsigned 32-bit arithmetic, so
 * an exptime already past (T-1 in the same request) shows as a huge number;
 * -1 means none. */
static int64_t ttl_of(rel_time_t exptime, rel_time_t now)
{
    if (exptime == 0) {
        return -1;
    }
    return (int64_t)(uint32_t)(exptime - now);
}

static void count_lookup(struct thread_stats *ts, enum storage_get_outcome o)
{
    if (o == STORAGE_EXPIRED) {
        STAT_INCR(ts, get_expired);
    } else if (o == STORAGE_FLUSHED) {
        STAT_INCR(ts, get_flushed);
    }
}

/*
 * The T, N and R flags of req in request order, for storage. When the reply
 * turns into an error after the command ran (an over-long O on mg or ma),
 * 1.6.18 applied only the flags before the O: the walk stops there.
 */
static void flag_order(const struct meta_request *req, char *out)
{
    bool cut = req->err_after_exec;
    size_t n = 0;
    for (unsigned i = 0; i < req->norder; i++) {
        char f = req->order[i];
        if (cut && f == 'O') {
            break;
        }
        if (f == 'T' || f == 'N' || f == 'R') {
            out[n++] = f;
        }
    }
    out[n] = '\0';
}

/* ---- mg ---------------------------------------------------------------- */

static void meta_mg(struct conn *c, const struct meta_request *req)
{
    struct server *srv = srv_of(c);
    struct thread_stats *ts = &c->w->stats;
    rel_time_t now = clock_now(&srv->clock);
    bool after = req->err_after_exec;
    char order[META_MAX_TOKENS + 1];
    flag_order(req, order);
    /* With any of these 1.6.18 fetches under the item lock and bumps after
     * the reply is built, which an error skips. */
    bool locked = meta_has_flag(req, 'N') || meta_has_flag(req, 'T') || meta_has_flag(req, 'R') ||
                  meta_has_flag(req, 'l') || meta_has_flag(req, 'h');
    struct storage_mget_opts o = {
        .no_bump = meta_has_flag(req, 'u') || (after && locked),
        .vivify = meta_has_flag(req, 'N'),
        .vivify_ttl = clock_realtime(&srv->clock, req->vivify_ttl),
        .touch = meta_has_flag(req, 'T'),
        .touch_ttl = clock_realtime(&srv->clock, req->ttl),
        .recache = meta_has_flag(req, 'R'),
        .recache_at = clock_realtime(&srv->clock, req->recache_ttl),
        .order = order,
        .no_win = after,
    };
    struct storage_mget_result r;
    struct item *it = NULL;
    uint64_t hv = storage_hash(req->key.p, req->key.len);
    /* A failed vivify allocation is a miss, as in 1.6.18. */
    (void)storage_meta_get(srv->storage, req->key.p, req->key.len, hv, now, &o, &r, &it);
    count_lookup(ts, r.outcome);
    if (it == NULL) {
        STAT_INCR(ts, get_cmds);
        STAT_INCR(ts, get_misses);
        if (after) {
            reply_error(c, req->err);
        } else {
            reply_line(c, req, META_RC_EN, NULL, false);
        }
        return;
    }
    if (after) {
        /* 1.6.18 counts nothing for a hit that ends in an error. */
        storage_release(srv->storage, &it);
        reply_error(c, req->err);
        return;
    }
    unsigned cls = storage_item_class(c->w->srv->storage, it);
    if (o.touch) {
        STAT_INCR(ts, touch_cmds);
        STAT_INCR(ts, touch_hits);
        SLAB_INCR(ts, cls, touch_hits);
    } else {
        STAT_INCR(ts, get_cmds);
        STAT_INCR(ts, get_hits);
        SLAB_INCR(ts, cls, get_hits);
    }
    size_t nbytes = storage_item_nbytes(it);
    struct meta_item_facts f = {
        .value_len = (uint32_t)nbytes,
        .client_flags = storage_item_flags(it),
        .cas = storage_item_cas(it),
        .ttl = ttl_of(r.exptime, now),
        .ttl_after_t = ttl_of(o.touch_ttl, now),
        .ttl_after_n = ttl_of(o.vivify_ttl, now),
        .last_access = (uint32_t)(now - r.time),
        .fetched = r.fetched,
        .created = r.created,
        .stale = r.stale,
        .token_sent = r.token_sent,
        .win = r.win,
        .key = storage_item_key(it),
        .nkey = storage_item_nkey(it),
        .key_binary = storage_item_key_binary(it),
    };
    bool value = meta_has_flag(req, 'v');
    reply_line(c, req, value ? META_RC_VA : META_RC_HD, &f, r.created);
    if (value) {
        /* The value straight from item memory, then its "\r\n". */
        conn_out_item(c, it, storage_item_value(it), nbytes);
        conn_out(c, "\r\n", 2);
    } else {
        storage_release(srv->storage, &it);
    }
}

/* ---- ms ---------------------------------------------------------------- */

static enum storage_op store_op_of(enum meta_store_op op)
{
    switch (op) {
    case META_STORE_ADD:
        return STORAGE_ADD;
    case META_STORE_REPLACE:
        return STORAGE_REPLACE;
    case META_STORE_APPEND:
        return STORAGE_APPEND;
    case META_STORE_PREPEND:
        return STORAGE_PREPEND;
    case META_STORE_CAS:
        return STORAGE_CAS;
    case META_STORE_SET:
    default:
        return STORAGE_SET;
    }
}

/* Replies with err and discards the data block that follows the line. */
static void ms_refuse(struct conn *c, const struct meta_request *req, enum meta_error err)
{
    reply_error(c, err);
    struct conn_ext *x = conn_ext(c);
    if (x == NULL) {
        c->close_after_write = true; /* nowhere to count the bytes to discard */
        return;
    }
    x->swallow = req->read_len;
    conn_set_state(c, CONN_SWALLOW);
}

static void meta_ms(struct conn *c, const struct meta_request *req)
{
    struct server *srv = srv_of(c);
    struct thread_stats *ts = &c->w->stats;
    struct conn_ext *x = conn_ext(c);
    if (x == NULL) {
        reply_error(c, META_ERR_OOM_STORE);
        c->close_after_write = true; /* nowhere to note the data block that follows */
        return;
    }
    uint64_t hv;
    struct item *it = NULL;
    /* ops_alloc counts the failure and drops the old value: 1.6.18 never
     * leaves it behind after a failed ms, whatever the mode. */
    int rc = ops_alloc(c, req->key.p, req->key.len, req->client_flags, req->ttl, req->data_len,
                       true, &hv, &it);
    if (rc != STORAGE_OK) {
        ms_refuse(c, req, rc == STORAGE_E2BIG ? META_ERR_TOO_LARGE : META_ERR_OOM_STORE);
        return;
    }
    struct meta_pending *p = malloc(sizeof(*p));
    if (p == NULL) {
        storage_release(srv->storage, &it);
        STAT_INCR(ts, store_no_memory);
        ms_refuse(c, req, META_ERR_OOM_STORE);
        return;
    }
    p->req = *req;
    memcpy(p->key, req->key.p, req->key.len);
    p->req.key.p = p->key;
    p->req.key_token = p->req.key;
    if (req->opaque.len > 0) {
        memcpy(p->opaque, req->opaque.p, req->opaque.len);
    }
    p->req.opaque.p = p->opaque;
    if (req->key_binary) {
        storage_item_set_key_binary(it);
    }
    free(x->meta_pending);
    x->meta_pending = p;
    x->item = it;
    x->item_cmd = TEXT_CMD_META;
    x->item_cas = req->cas;
    x->item_hv = hv;
    x->item_done = 0;
    x->item_need = (uint32_t)req->read_len;
    conn_set_state(c, CONN_NREAD);
}

void process_meta_complete_nread(struct conn *c)
{
    struct server *srv = srv_of(c);
    struct thread_stats *ts = &c->w->stats;
    struct conn_ext *x = c->ext;
    struct meta_pending *p = x->meta_pending;
    struct item *it = x->item;
    x->meta_pending = NULL;
    x->item = NULL;
    if (p == NULL) {
        storage_release(srv->storage, &it);
        return;
    }
    const struct meta_request *req = &p->req;
    unsigned cls = storage_item_class(c->w->srv->storage, it);
    STAT_INCR(ts, set_cmds);
    SLAB_INCR(ts, cls, cmd_set);
    if (!meta_data_ok(x->tail, sizeof(x->tail))) {
        /* Never hidden by q. */
        reply_error(c, META_ERR_BAD_DATA_CHUNK);
        storage_release(srv->storage, &it);
        free(p);
        return;
    }
    enum storage_op op = store_op_of(req->store_op);
    struct storage_mstore_result r;
    int rc = storage_meta_store(srv->storage, it, op, req->cas, req->invalidate, x->item_hv,
                                clock_now(&srv->clock), &r);
    storage_release(srv->storage, &it);
    count_lookup(ts, r.lookup);
    if (rc != STORAGE_OK) {
        /* An append/prepend whose joined value cannot be allocated. */
        r.outcome = STORAGE_NOT_STORED;
    }
    if (op == STORAGE_CAS) {
        if (r.outcome == STORAGE_STORED) {
            STAT_INCR(ts, cas_hits);
            SLAB_INCR(ts, cls, cas_hits);
        } else if (r.outcome == STORAGE_EXISTS) {
            STAT_INCR(ts, cas_badval);
            SLAB_INCR(ts, cls, cas_badval);
        } else if (r.outcome == STORAGE_NOT_FOUND) {
            STAT_INCR(ts, cas_misses);
        }
    }
    enum meta_rc mrc = META_RC_NS;
    switch (r.outcome) {
    case STORAGE_STORED:
        mrc = META_RC_HD;
        break;
    case STORAGE_EXISTS:
        mrc = META_RC_EX;
        break;
    case STORAGE_NOT_FOUND:
        mrc = META_RC_NF;
        break;
    case STORAGE_NOT_STORED:
        mrc = META_RC_NS;
        break;
    }
    struct meta_item_facts f = {.cas = r.cas};
    reply_line(c, req, mrc, &f, false);
    free(p);
}

/* ---- md ---------------------------------------------------------------- */

static void meta_md(struct conn *c, const struct meta_request *req)
{
    struct server *srv = srv_of(c);
    struct thread_stats *ts = &c->w->stats;
    struct storage_mdelete_opts o = {
        .has_cas = meta_has_flag(req, 'C'),
        .cas_in = req->cas,
        .invalidate = meta_has_flag(req, 'I'),
        .touch = meta_has_flag(req, 'T'),
        .touch_ttl = clock_realtime(&srv->clock, req->ttl),
    };
    struct storage_mdelete_result r;
    uint64_t hv = storage_hash(req->key.p, req->key.len);
    storage_meta_delete(srv->storage, req->key.p, req->key.len, hv, clock_now(&srv->clock), &o, &r);
    count_lookup(ts, r.lookup);
    enum meta_rc rc = META_RC_HD;
    switch (r.outcome) {
    case STORAGE_MDEL_DELETED:
        STAT_INCR(ts, delete_hits);
        SLAB_INCR(ts, r.clsid, delete_hits);
        break;
    case STORAGE_MDEL_INVALIDATED:
        break;
    case STORAGE_MDEL_NOT_FOUND:
        STAT_INCR(ts, delete_misses);
        rc = META_RC_NF;
        break;
    case STORAGE_MDEL_EXISTS:
        STAT_INCR(ts, delete_misses);
        rc = META_RC_EX;
        break;
    }
    reply_line(c, req, rc, NULL, false);
}

/* ---- ma ---------------------------------------------------------------- */

static void meta_ma(struct conn *c, const struct meta_request *req)
{
    struct server *srv = srv_of(c);
    struct thread_stats *ts = &c->w->stats;
    rel_time_t now = clock_now(&srv->clock);
    char order[META_MAX_TOKENS + 1];
    flag_order(req, order);
    struct storage_marith_opts o = {
        .a =
            {
                .incr = req->incr,
                .delta = req->delta,
                .cas_in = req->cas, /* 0 = no check, as in 1.6.18 */
                .create = meta_has_flag(req, 'N'),
                .initial = req->initial,
            },
        .touch = meta_has_flag(req, 'T'),
        .touch_ttl = clock_realtime(&srv->clock, req->ttl),
        .vivify_ttl = clock_realtime(&srv->clock, req->vivify_ttl),
        .order = order,
    };
    struct storage_marith_result r;
    uint64_t hv = storage_hash(req->key.p, req->key.len);
    int rc = storage_meta_arith(srv->storage, req->key.p, req->key.len, hv, now, &o, &r);
    count_lookup(ts, r.lookup);
    if (rc != STORAGE_OK) {
        reply_error(c, r.outcome == STORAGE_ARITH_NOT_FOUND ? META_ERR_OOM_VIVIFY : META_ERR_OOM);
        return;
    }
    switch (r.outcome) {
    case STORAGE_ARITH_NON_NUMERIC:
        reply_error(c, META_ERR_NON_NUMERIC);
        return;
    case STORAGE_ARITH_NOT_FOUND:
        if (req->incr) {
            STAT_INCR(ts, incr_misses);
        } else {
            STAT_INCR(ts, decr_misses);
        }
        if (req->err_after_exec) {
            reply_error(c, req->err);
        } else {
            reply_line(c, req, META_RC_NF, NULL, false);
        }
        return;
    case STORAGE_ARITH_EXISTS:
        if (req->err_after_exec) {
            reply_error(c, req->err);
        } else {
            reply_line(c, req, META_RC_EX, NULL, false);
        }
        return;
    case STORAGE_ARITH_OK:
        break;
    }
    if (!r.created) {
        if (req->incr) {
            STAT_INCR(ts, incr_hits);
            SLAB_INCR(ts, r.clsid, incr_hits);
        } else {
            STAT_INCR(ts, decr_hits);
            SLAB_INCR(ts, r.clsid, decr_hits);
        }
    }
    if (req->err_after_exec) {
        reply_error(c, req->err);
        return;
    }
    char digits[24];
    size_t len = num_format_u64(digits, r.value);
    struct meta_item_facts f = {
        .value_len = (uint32_t)len,
        .cas = r.cas,
        .ttl = ttl_of(r.exptime, now),
        .ttl_after_t = ttl_of(o.touch_ttl, now),
        .ttl_after_n = ttl_of(o.vivify_ttl, now),
        .created = r.created,
    };
    bool value = meta_has_flag(req, 'v');
    enum meta_rc mrc = value ? META_RC_VA : META_RC_HD;
    if (meta_reply_skipped(req, mrc, r.created)) {
        return;
    }
    reply_line(c, req, mrc, &f, r.created);
    if (value) {
        /* 1.6.18 sends the number from its own buffer, not the item. */
        memcpy(digits + len, "\r\n", 2);
        conn_out(c, digits, len + 2);
    }
}

/* ---- me ---------------------------------------------------------------- */

static void meta_me(struct conn *c, const struct meta_request *req)
{
    struct server *srv = srv_of(c);
    struct thread_stats *ts = &c->w->stats;
    rel_time_t now = clock_now(&srv->clock);
    struct storage_mget_opts o = {.no_bump = true, .no_win = true};
    struct storage_mget_result r;
    struct item *it = NULL;
    uint64_t hv = storage_hash(req->key.p, req->key.len);
    (void)storage_meta_get(srv->storage, req->key.p, req->key.len, hv, now, &o, &r, &it);
    count_lookup(ts, r.outcome);
    STAT_INCR(ts, meta_cmds);
    if (it == NULL) {
        conn_out(c, "EN\r\n", 4);
        return;
    }
    /* cls and size are memstash's own (its classes and header differ). */
    struct meta_me_facts f = {
        .key = storage_item_key(it),
        .nkey = storage_item_nkey(it),
        .key_binary = storage_item_key_binary(it),
        .ttl = r.exptime == 0 ? -1 : (int64_t)r.exptime - (int64_t)now,
        .last_access = (uint32_t)(now - r.time),
        .cas = storage_item_cas(it),
        .fetched = r.fetched,
        .slab_class = storage_item_class(c->w->srv->storage, it),
        .total_size = storage_item_total(it),
    };
    char buf[META_HEADER_MAX];
    size_t n = meta_compose_me(buf, sizeof(buf), &f);
    storage_release(srv->storage, &it);
    if (n == 0) {
        conn_out_str(c, "SERVER_ERROR output line too long");
        return;
    }
    conn_out(c, buf, n);
}

/* ---- dispatch ---------------------------------------------------------- */

void process_meta(struct conn *c, const struct text_request *treq)
{
    struct meta_request req;
    char keybuf[META_KEYBUF_SIZE];
    if (meta_parse(treq, keybuf, &req) != 0 && !req.err_after_exec) {
        if (req.cmd == META_CMD_MS && req.swallow) {
            ms_refuse(c, &req, req.err);
        } else {
            reply_error(c, req.err);
        }
        return;
    }
    switch (req.cmd) {
    case META_CMD_MG:
        meta_mg(c, &req);
        break;
    case META_CMD_MS:
        meta_ms(c, &req);
        break;
    case META_CMD_MD:
        meta_md(c, &req);
        break;
    case META_CMD_MA:
        meta_ma(c, &req);
        break;
    case META_CMD_MN:
        conn_out(c, "MN\r\n", 4);
        break;
    case META_CMD_ME:
        meta_me(c, &req);
        break;
    case META_CMD_NONE:
    default:
        reply_error(c, META_ERR_ERROR);
        break;
    }
}

/*
 * ops.c - libmemstash operations: each call describes its request once
 * (struct wire_req), has it composed in the protocol each server speaks
 * (wire.c: meta, text or binary), runs the I/O engine, and turns the
 * replies into a status and an outcome. One handler per operation reads
 * the replies of all three protocols (reply.h normalises them).
 *
 * The stampede-safe lease calls (mst_lease_*) live here too: they are
 * meta-only variants of get and set.
 */
#include "client_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "numparse.h"

/* What a call collects from its replies. */
struct op_result {
    enum wire_op op;
    enum wire_proto wire; /* the protocol the request went out in */
    enum mst_outcome outcome;
    struct mst_value *val;
    bool got_value;
    bool want_cas;
    uint64_t number;
    uint64_t mflags; /* meta return flags of the reply (leases) */
    char *text;
    size_t text_cap;
    mst_stat_cb stat_cb;
    mst_item_cb item_cb;
    void *cb_arg;
    bool stop;
    /* Multi-get: the call's keys, for meta replies that name them by index. */
    const char *const *keys;
    const size_t *key_lens;
    size_t nkeys;
};

int reply_error_status(struct mst *m, struct mst_server *srv, const struct reply *r)
{
    int st;
    if (r->kind == REPLY_ERROR) {
        st = MST_ECMD;
    } else if (r->kind == REPLY_CLIENT_ERROR) {
        st = MST_ECLIENT;
    } else if (r->text.len >= 9 && memmem(r->text.p, r->text.len, "too large", 9)) {
        st = MST_ETOOBIG;
    } else {
        st = MST_ESERVER;
    }
    srv->status = st;
    mst_fail(m, st, "%s: %s%s%.*s", srv->name,
             r->kind == REPLY_ERROR          ? "ERROR"
             : r->kind == REPLY_CLIENT_ERROR ? "CLIENT_ERROR"
                                             : "SERVER_ERROR",
             r->text.len ? " " : "", (int)(r->text.len > 200 ? 200 : r->text.len), r->text.p);
    return 1;
}

bool reply_is_error(const struct reply *r)
{
    return r->kind == REPLY_ERROR || r->kind == REPLY_CLIENT_ERROR || r->kind == REPLY_SERVER_ERROR;
}

static int other_reply(struct io_call *c, struct mst_server *srv, const struct reply *r)
{
    return reply_is_error(r) ? reply_error_status(c->m, srv, r) : MST_EPROTO;
}

static int h_storage(struct io_call *c, struct mst_server *srv, size_t idx, const struct reply *r)
{
    (void)idx;
    struct op_result *res = c->arg;
    enum wire_op op = res->op;
    switch (r->kind) {
    case REPLY_STORED:
    case REPLY_META_HD:
        res->outcome = MST_STORED;
        return 1;
    case REPLY_NOT_STORED:
    case REPLY_META_NS:
        res->outcome = MST_NOT_STORED;
        return 1;
    case REPLY_EXISTS:
    case REPLY_META_EX:
        /* Binary ADD answers "exists" where text says NOT_STORED. */
        res->outcome = op == WOP_ADD ? MST_NOT_STORED : MST_EXISTS;
        return 1;
    case REPLY_NOT_FOUND:
    case REPLY_META_NF:
        /* Binary REPLACE answers "not found" where text says NOT_STORED. */
        res->outcome = (op == WOP_REPLACE || op == WOP_APPEND || op == WOP_PREPEND) ? MST_NOT_STORED
                                                                                    : MST_NOT_FOUND;
        return 1;
    default:
        return other_reply(c, srv, r);
    }
}

static int keep_value(struct op_result *res, const struct reply *r)
{
    if (res->got_value) {
        return MST_EPROTO;
    }
    char *p = malloc(r->data.len + 1);
    if (!p) {
        return MST_ENOMEM;
    }
    if (r->data.len) {
        memcpy(p, r->data.p, r->data.len);
    }
    p[r->data.len] = '\0';
    res->val->data = p;
    res->val->len = r->data.len;
    res->val->flags = r->flags;
    res->val->cas = res->want_cas ? r->cas : 0;
    res->got_value = true;
    res->mflags = r->mflags;
    return MST_OK;
}

static int h_get(struct io_call *c, struct mst_server *srv, size_t idx, const struct reply *r)
{
    (void)idx;
    struct op_result *res = c->arg;
    int rc;
    switch (r->kind) {
    case REPLY_VALUE:
        rc = keep_value(res, r);
        if (rc != MST_OK) {
            return rc;
        }
        if (!r->binary) {
            return 0; /* text: END follows */
        }
        res->outcome = MST_HIT;
        return 1;
    case REPLY_META_VA:
        rc = keep_value(res, r);
        if (rc != MST_OK) {
            return rc;
        }
        res->outcome = MST_HIT;
        return 1;
    case REPLY_END:
        res->outcome = res->got_value ? MST_HIT : MST_MISS;
        return 1;
    case REPLY_META_EN:
        res->outcome = MST_MISS;
        return 1;
    case REPLY_NOT_FOUND:
        if (r->binary) {
            res->outcome = MST_MISS;
            return 1;
        }
        return MST_EPROTO;
    default:
        return other_reply(c, srv, r);
    }
}

static int h_delete(struct io_call *c, struct mst_server *srv, size_t idx, const struct reply *r)
{
    (void)idx;
    struct op_result *res = c->arg;
    switch (r->kind) {
    case REPLY_DELETED:
    case REPLY_META_HD:
        res->outcome = MST_DELETED;
        return 1;
    case REPLY_NOT_FOUND:
    case REPLY_META_NF:
        res->outcome = MST_NOT_FOUND;
        return 1;
    case REPLY_EXISTS:
    case REPLY_META_EX:
        res->outcome = MST_EXISTS;
        return 1;
    default:
        return other_reply(c, srv, r);
    }
}

static int h_arith(struct io_call *c, struct mst_server *srv, size_t idx, const struct reply *r)
{
    (void)idx;
    struct op_result *res = c->arg;
    switch (r->kind) {
    case REPLY_NUMBER:
        res->number = r->number;
        res->outcome = MST_STORED;
        return 1;
    case REPLY_META_VA:
        if (r->data.len == 0 || !num_parse_u64(r->data.p, r->data.len, &res->number)) {
            return MST_EPROTO;
        }
        res->outcome = MST_STORED;
        return 1;
    case REPLY_META_HD:
        res->outcome = MST_STORED;
        return 1;
    case REPLY_NOT_FOUND:
    case REPLY_META_NF:
        res->outcome = MST_NOT_FOUND;
        return 1;
    case REPLY_META_NS:
        res->outcome = MST_NOT_STORED;
        return 1;
    case REPLY_EXISTS:
    case REPLY_META_EX:
        res->outcome = MST_EXISTS;
        return 1;
    default:
        return other_reply(c, srv, r);
    }
}

static int h_touch(struct io_call *c, struct mst_server *srv, size_t idx, const struct reply *r)
{
    (void)idx;
    struct op_result *res = c->arg;
    switch (r->kind) {
    case REPLY_TOUCHED:
    case REPLY_META_HD:
        res->outcome = MST_TOUCHED;
        return 1;
    case REPLY_NOT_FOUND:
    case REPLY_META_EN:
        res->outcome = MST_NOT_FOUND;
        return 1;
    default:
        return other_reply(c, srv, r);
    }
}

static int h_ok(struct io_call *c, struct mst_server *srv, size_t idx, const struct reply *r)
{
    (void)idx;
    if (r->kind == REPLY_OK) {
        return 1;
    }
    return other_reply(c, srv, r);
}

static int h_version(struct io_call *c, struct mst_server *srv, size_t idx, const struct reply *r)
{
    (void)idx;
    struct op_result *res = c->arg;
    if (r->kind == REPLY_VERSION) {
        if (res->text && res->text_cap) {
            size_t n = r->text.len < res->text_cap - 1 ? r->text.len : res->text_cap - 1;
            if (n) {
                memcpy(res->text, r->text.p, n);
            }
            res->text[n] = '\0';
        }
        return 1;
    }
    return other_reply(c, srv, r);
}

static int h_stats(struct io_call *c, struct mst_server *srv, size_t idx, const struct reply *r)
{
    struct op_result *res = c->arg;
    if (r->kind == REPLY_STAT) {
        if (res->stat_cb && !res->stop) {
            res->stop =
                res->stat_cb(res->cb_arg, idx, r->name.p, r->name.len, r->text.p, r->text.len) != 0;
        }
        return 0;
    }
    if (r->kind == REPLY_END) {
        return 1;
    }
    return other_reply(c, srv, r);
}

/*
 * Multi-get replies: text VALUE ... END; meta VA (with k) ... MN; binary
 * GETKQ hits ... NOOP. In the quiet batches of meta and binary an error
 * answers one key only, so reading goes on to the end marker.
 */
static int h_multi(struct io_call *c, struct mst_server *srv, size_t idx, const struct reply *r)
{
    (void)idx;
    struct op_result *res = c->arg;
    struct mst *m = c->m;
    if (r->kind == REPLY_VALUE || r->kind == REPLY_META_VA) {
        const char *k = r->key.p;
        size_t nk = r->key.len;
        if (r->kind == REPLY_META_VA && reply_has_mflag(r, 'O')) {
            /* O<index> into the call's keys. */
            uint64_t i;
            if (!num_parse_u64(r->opaque.p, r->opaque.len, &i) || i >= res->nkeys) {
                return MST_EPROTO;
            }
            k = res->keys[i];
            nk = res->key_lens[i];
        } else if (r->kind == REPLY_META_VA && !reply_has_mflag(r, 'k')) {
            return MST_EPROTO;
        } else if (m->nns && nk >= m->nns && memcmp(k, m->ns, m->nns) == 0) {
            k += m->nns;
            nk -= m->nns;
        }
        if (res->item_cb && !res->stop) {
            uint64_t cas = res->want_cas ? r->cas : 0;
            res->stop =
                res->item_cb(res->cb_arg, k, nk, r->data.p, r->data.len, r->flags, cas) != 0;
        }
        return 0;
    }
    if (r->kind == REPLY_END && !r->binary) {
        return 1;
    }
    if (r->kind == REPLY_MN) {
        return 1;
    }
    if (r->kind == REPLY_META_EN || (r->binary && r->kind == REPLY_NOT_FOUND)) {
        return 0;
    }
    if (reply_is_error(r)) {
        reply_error_status(m, srv, r);
        return r->binary || res->wire == WIRE_META ? 0 : 1;
    }
    return MST_EPROTO;
}

/* ---- Running requests -------------------------------------------------- */

/*
 * Composes rq for srv (already begun) in the protocol it speaks, with the
 * end marker after a quiet request in meta or binary (whose replies are
 * then skipped by the next call), and sets srv->pending.
 */
static int compose_on(struct mst *m, struct mst_server *srv, const struct wire_req *rq,
                      struct op_result *res)
{
    enum wire_proto w = srv_wire(m, srv);
    size_t expect = 0;
    int rc = wire_compose(&srv->wbuf, w, rq, &expect);
    if (rc == MST_OK && rq->quiet && expect == 0 && w != WIRE_TEXT) {
        rc = wire_compose_end(&srv->wbuf, w);
        if (rc == MST_OK) {
            srv->owed++;
        }
    }
    if (rc != MST_OK) {
        io_close(srv);
        srv->active = false;
        srv->status = rc;
        return mst_fail(m, rc, "%s: %s", srv->name,
                        rc == MST_ETOOBIG ? "value too large for the protocol" : mst_strerror(rc));
    }
    if (res) {
        res->wire = w;
    }
    srv->pending += expect;
    return MST_OK;
}

static bool meta_only(enum wire_op op)
{
    return op == WOP_LEASE_GET || op == WOP_LEASE_SET || op == WOP_INVALIDATE;
}

/* Runs rq on server idx: begin (probing on a meta handle), compose, I/O. */
static int run_on(struct mst *m, size_t idx, const struct wire_req *rq, io_handler h,
                  struct op_result *res)
{
    struct mst_server *srv = m->servers[idx];
    int rc = meta_only(rq->op) ? io_need_meta(m, srv) : io_begin_probe(m, srv);
    if (rc != MST_OK) {
        if (rc == MST_ENOTSUP) {
            srv->active = false;
        }
        return rc;
    }
    rc = compose_on(m, srv, rq, res);
    if (rc != MST_OK) {
        return rc;
    }
    struct io_call call = {m, h, res, false};
    io_run(&call);
    return srv->status;
}

/*
 * Runs a keyed request. When the key's server cannot be connected to and
 * that marks it dead, the request is sent again where the key lives now
 * (failover), since nothing reached the dead server.
 */
static int keyed(struct mst *m, struct wire_req *rq, io_handler h, struct op_result *res)
{
    rq->ns = m->ns;
    rq->nns = m->nns;
    res->op = rq->op;
    int rc = MST_OK;
    for (size_t attempt = 0; attempt <= m->nservers; attempt++) {
        size_t idx;
        int route = route_key(m, rq->key, rq->nkey, &idx);
        if (route != MST_OK) {
            /* After a failed attempt, report that failure rather than "no server". */
            if (attempt > 0) {
                mst_fail(m, rc, "%s", m->lasterr);
                return rc;
            }
            return route;
        }
        rc = run_on(m, idx, rq, h, res);
        struct mst_server *srv = m->servers[idx];
        if (rc == MST_OK || !srv->conn_error || !m->failover || srv->dead_until == 0 ||
            m->distribution == MST_DIST_MODULA) {
            break;
        }
        memcpy(m->lasterr, m->errbuf, sizeof(m->lasterr));
    }
    return rc;
}

static int check_args(struct mst *m, const char *key, size_t nkey)
{
    if (!m) {
        return MST_EINVAL;
    }
    m->errbuf[0] = '\0';
    if (key_check(m, key, nkey) != MST_OK) {
        return mst_fail(m, MST_EBADKEY, "bad key");
    }
    return MST_OK;
}

/* ---- Storage ---------------------------------------------------------- */

static int store(struct mst *m, enum wire_op op, const char *key, size_t nkey, const void *data,
                 size_t len, uint32_t flags, int32_t exptime, uint64_t cas, bool noreply,
                 enum mst_outcome *outcome)
{
    if (outcome) {
        *outcome = MST_NONE;
    }
    int rc = check_args(m, key, nkey);
    if (rc != MST_OK) {
        return rc;
    }
    if (!data && len) {
        return MST_EINVAL;
    }
    struct wire_req rq = {
        .op = op,
        .key = key,
        .nkey = nkey,
        .data = data ? data : "",
        .len = len,
        .flags = flags,
        .exptime = exptime,
        .cas = cas,
        .quiet = noreply,
    };
    struct op_result res = {0};
    rc = keyed(m, &rq, h_storage, &res);
    if (rc == MST_OK && outcome) {
        *outcome = res.outcome;
    }
    return rc;
}

MST_API int mst_set(struct mst *m, const char *key, size_t nkey, const void *data, size_t len,
                    uint32_t flags, int32_t exptime, enum mst_outcome *outcome)
{
    bool nr = m && m->noreply;
    return store(m, WOP_SET, key, nkey, data, len, flags, exptime, 0, nr, outcome);
}

MST_API int mst_add(struct mst *m, const char *key, size_t nkey, const void *data, size_t len,
                    uint32_t flags, int32_t exptime, enum mst_outcome *outcome)
{
    bool nr = m && m->noreply;
    return store(m, WOP_ADD, key, nkey, data, len, flags, exptime, 0, nr, outcome);
}

MST_API int mst_replace(struct mst *m, const char *key, size_t nkey, const void *data, size_t len,
                        uint32_t flags, int32_t exptime, enum mst_outcome *outcome)
{
    bool nr = m && m->noreply;
    return store(m, WOP_REPLACE, key, nkey, data, len, flags, exptime, 0, nr, outcome);
}

MST_API int mst_append(struct mst *m, const char *key, size_t nkey, const void *data, size_t len,
                       enum mst_outcome *outcome)
{
    bool nr = m && m->noreply;
    return store(m, WOP_APPEND, key, nkey, data, len, 0, 0, 0, nr, outcome);
}

MST_API int mst_prepend(struct mst *m, const char *key, size_t nkey, const void *data, size_t len,
                        enum mst_outcome *outcome)
{
    bool nr = m && m->noreply;
    return store(m, WOP_PREPEND, key, nkey, data, len, 0, 0, 0, nr, outcome);
}

MST_API int mst_cas(struct mst *m, const char *key, size_t nkey, const void *data, size_t len,
                    uint32_t flags, int32_t exptime, uint64_t cas, enum mst_outcome *outcome)
{
    bool nr = m && m->noreply;
    return store(m, WOP_CAS, key, nkey, data, len, flags, exptime, cas, nr, outcome);
}

/* ---- Reads ------------------------------------------------------------ */

static int get_one(struct mst *m, enum wire_op op, const char *key, size_t nkey, int32_t exptime,
                   struct mst_value *val, enum mst_outcome *outcome)
{
    if (outcome) {
        *outcome = MST_NONE;
    }
    if (!val) {
        return MST_EINVAL;
    }
    memset(val, 0, sizeof(*val));
    int rc = check_args(m, key, nkey);
    if (rc != MST_OK) {
        return rc;
    }
    struct wire_req rq = {.op = op, .key = key, .nkey = nkey, .exptime = exptime};
    struct op_result res = {0};
    res.val = val;
    res.want_cas = op == WOP_GETS;
    rc = keyed(m, &rq, h_get, &res);
    if (rc != MST_OK) {
        mst_value_clear(val);
        return rc;
    }
    if (outcome) {
        *outcome = res.outcome;
    }
    return MST_OK;
}

MST_API int mst_get(struct mst *m, const char *key, size_t nkey, struct mst_value *val,
                    enum mst_outcome *outcome)
{
    return get_one(m, WOP_GET, key, nkey, 0, val, outcome);
}

MST_API int mst_gets(struct mst *m, const char *key, size_t nkey, struct mst_value *val,
                     enum mst_outcome *outcome)
{
    return get_one(m, WOP_GETS, key, nkey, 0, val, outcome);
}

MST_API int mst_gat(struct mst *m, const char *key, size_t nkey, int32_t exptime,
                    struct mst_value *val, enum mst_outcome *outcome)
{
    return get_one(m, WOP_GAT, key, nkey, exptime, val, outcome);
}

MST_API void mst_value_clear(struct mst_value *val)
{
    if (!val) {
        return;
    }
    free(val->data);
    memset(val, 0, sizeof(*val));
}

/* Per-server state of one multi-key round. */
enum { MS_IDLE = 0, MS_ACTIVE, MS_FAILED };

/*
 * Starts srv's part of a multi-key round: begin (with the meta probe) and,
 * for a text multi-get, the start of the line.
 */
static int multi_begin(struct mst *m, struct mst_server *srv)
{
    if (io_begin_probe(m, srv) != MST_OK) {
        return MS_FAILED;
    }
    srv->multi_keys = 0;
    srv->multi_lines = 0;
    return MS_ACTIVE;
}

/*
 * A multi-get goes out as text "get k1 k2 ..." lines even on a meta
 * connection: one VALUE per hit and one END per line cost the server and the
 * client less than an mg with its own reply (or miss) per key, and every
 * memcached speaks it. bench/client_mget.sh measures it against
 * libmemcached's memcached_mget. Binary stays binary (GETKQ ... NOOP).
 */
#define MULTI_LINE_KEYS 100

static enum wire_proto multi_wire(const struct mst *m, const struct mst_server *srv)
{
    enum wire_proto w = srv_wire(m, srv);
    return w == WIRE_META ? WIRE_TEXT : w;
}

/* Composes one key of a multi-get round for srv. */
static int multi_add_get(struct mst *m, struct mst_server *srv, const char *cmd,
                         const struct wire_req *rq)
{
    enum wire_proto w = multi_wire(m, srv);
    if (w == WIRE_TEXT) {
        if (srv->multi_keys == MULTI_LINE_KEYS) {
            if (buf_append(&srv->wbuf, "\r\n", 2) != MST_OK) {
                return MST_ENOMEM;
            }
            srv->multi_keys = 0;
        }
        if (srv->multi_keys == 0) {
            if (buf_append(&srv->wbuf, cmd, strlen(cmd)) != MST_OK) {
                return MST_ENOMEM;
            }
            srv->multi_lines++;
        }
        srv->multi_keys++;
    }
    return wire_compose(&srv->wbuf, w, rq, NULL);
}

/* Ends srv's part of a multi-get round: "\r\n" for text (one END per line),
 * the end marker otherwise. */
static int multi_end_get(struct mst *m, struct mst_server *srv)
{
    enum wire_proto w = multi_wire(m, srv);
    if (w == WIRE_TEXT) {
        srv->pending = srv->multi_lines;
        return buf_append(&srv->wbuf, "\r\n", 2);
    }
    srv->pending = 1;
    return wire_compose_end(&srv->wbuf, w);
}

MST_API int mst_get_multi(struct mst *m, const char *const *keys, const size_t *nkeys, size_t n,
                          bool with_cas, mst_item_cb cb, void *arg)
{
    if (!m || (n && (!keys || !nkeys))) {
        return MST_EINVAL;
    }
    m->errbuf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (key_check(m, keys[i], nkeys[i]) != MST_OK) {
            return mst_fail(m, MST_EBADKEY, "bad key #%zu", i);
        }
    }
    if (n == 0) {
        return MST_OK;
    }
    int rc = route_prepare(m);
    if (rc != MST_OK) {
        return rc;
    }
    size_t ns = m->nservers;
    long small_where[128];
    unsigned char small_state[64];
    long *where = n <= 128 ? small_where : malloc(n * sizeof(*where));
    unsigned char *state = ns <= 64 ? small_state : malloc(ns);
    if (!where || !state) {
        if (where != small_where) {
            free(where);
        }
        if (state != small_state) {
            free(state);
        }
        return MST_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        where[i] = -2; /* -2: to send; -1: no server; >= 0: sent there */
    }
    struct op_result res = {0};
    res.item_cb = cb;
    res.cb_arg = arg;
    res.want_cas = with_cas;
    res.keys = keys;
    res.key_lens = nkeys;
    res.nkeys = n;
    const char *cmd = with_cas ? "gets" : "get";
    struct wire_req rq = {
        .op = with_cas ? WOP_GETS : WOP_GET,
        .ns = m->ns,
        .nns = m->nns,
        .multi = true,
        .quiet = true,
        .by_opaque = n <= UINT32_MAX,
    };
    int first_failure = MST_OK;
    int moved_status = MST_ENOSERVERS;
    bool any_ok = false, any_failed = false;
    for (int round = 0; round < 3; round++) {
        memset(state, MS_IDLE, ns);
        bool sent = false;
        for (size_t i = 0; i < n && rc == MST_OK; i++) {
            if (where[i] != -2) {
                continue;
            }
            size_t idx;
            if (route_one(m, keys[i], nkeys[i], &idx) != MST_OK) {
                where[i] = -1;
                any_failed = true;
                if (first_failure == MST_OK) {
                    /* Keys moved off a failed server report that failure. */
                    first_failure = round > 0 ? moved_status : MST_ENOSERVERS;
                    if (round > 0) {
                        mst_fail(m, moved_status, "%s", m->lasterr);
                    }
                }
                continue;
            }
            struct mst_server *srv = m->servers[idx];
            where[i] = (long)idx;
            if (state[idx] == MS_IDLE) {
                int st = multi_begin(m, srv);
                if (st < 0) {
                    rc = MST_ENOMEM;
                    state[idx] = MS_ACTIVE;
                    break;
                }
                state[idx] = (unsigned char)st;
            }
            if (state[idx] != MS_ACTIVE) {
                continue;
            }
            rq.key = keys[i];
            rq.nkey = nkeys[i];
            rq.opaque = (uint32_t)i;
            if (multi_add_get(m, srv, cmd, &rq) != MST_OK) {
                rc = MST_ENOMEM;
            }
        }
        for (size_t s = 0; s < ns && rc == MST_OK; s++) {
            if (state[s] == MS_ACTIVE) {
                if (multi_end_get(m, m->servers[s]) != MST_OK) {
                    rc = MST_ENOMEM;
                }
                sent = true;
            }
        }
        if (rc != MST_OK) {
            for (size_t s = 0; s < ns; s++) {
                if (state[s] == MS_ACTIVE) {
                    io_close(m->servers[s]);
                    m->servers[s]->active = false;
                }
            }
            break;
        }
        if (sent) {
            struct io_call call = {m, h_multi, &res, false};
            io_run(&call);
        }
        /* Keys of servers that failed before anything was sent and are now
         * dead move to their new place in the next round (failover). */
        bool again = false;
        bool refreshed = false;
        for (size_t s = 0; s < ns; s++) {
            if (state[s] == MS_IDLE) {
                continue;
            }
            struct mst_server *srv = m->servers[s];
            if (srv->status == MST_OK) {
                any_ok = true;
                continue;
            }
            bool retry = srv->conn_error && m->failover && srv->dead_until != 0 &&
                         m->distribution != MST_DIST_MODULA && round < 2;
            for (size_t i = 0; i < n; i++) {
                if (where[i] == (long)s) {
                    where[i] = retry ? -2 : -1;
                }
            }
            if (retry) {
                again = true;
                moved_status = srv->status;
                memcpy(m->lasterr, m->errbuf, sizeof(m->lasterr));
                if (!refreshed) {
                    route_prepare(m);
                    refreshed = true;
                }
            } else {
                any_failed = true;
                if (first_failure == MST_OK) {
                    first_failure = srv->status;
                }
            }
        }
        for (size_t i = 0; i < n; i++) {
            if (where[i] >= 0) {
                where[i] = -3; /* answered */
            }
        }
        if (!again) {
            break;
        }
    }
    if (where != small_where) {
        free(where);
    }
    if (state != small_state) {
        free(state);
    }
    if (rc == MST_ENOMEM) {
        return mst_fail(m, MST_ENOMEM, "out of memory");
    }
    if (!any_failed) {
        return MST_OK;
    }
    return any_ok ? MST_ESOME : first_failure;
}

/* ---- Delete, arithmetic, touch ---------------------------------------- */

MST_API int mst_delete(struct mst *m, const char *key, size_t nkey, enum mst_outcome *outcome)
{
    if (outcome) {
        *outcome = MST_NONE;
    }
    int rc = check_args(m, key, nkey);
    if (rc != MST_OK) {
        return rc;
    }
    struct wire_req rq = {.op = WOP_DELETE, .key = key, .nkey = nkey, .quiet = m->noreply};
    struct op_result res = {0};
    rc = keyed(m, &rq, h_delete, &res);
    if (rc == MST_OK && outcome) {
        *outcome = res.outcome;
    }
    return rc;
}

static int h_delete_count(struct io_call *c, struct mst_server *srv, size_t idx,
                          const struct reply *r)
{
    (void)idx;
    struct op_result *res = c->arg;
    switch (r->kind) {
    case REPLY_DELETED:
    case REPLY_META_HD:
        res->number++;
        return 1;
    case REPLY_NOT_FOUND:
    case REPLY_META_NF:
        return 1;
    default:
        return other_reply(c, srv, r);
    }
}

/*
 * The end of a multi-key write round (delete_multi, set_multi): when the
 * round failed locally (rc), every server that took part is closed, as its
 * stream is cut mid-request; otherwise the servers' outcomes make the call's
 * status: MST_OK, MST_ESOME when some failed, or the first failure when none
 * answered. `failed` says keys already failed before the round (unrouted).
 */
static int multi_tally(struct mst *m, const unsigned char *state, int rc, bool failed,
                       int first_failure)
{
    bool any_ok = false;
    for (size_t s = 0; s < m->nservers; s++) {
        if (state[s] == MS_IDLE) {
            continue;
        }
        struct mst_server *srv = m->servers[s];
        if (rc != MST_OK) {
            io_close(srv);
            srv->active = false;
        } else if (state[s] == MS_ACTIVE && srv->status == MST_OK) {
            any_ok = true;
        } else {
            failed = true;
            first_failure =
                first_failure ? first_failure : (srv->status != MST_OK ? srv->status : MST_EIO);
        }
    }
    if (!failed) {
        return MST_OK;
    }
    return any_ok ? MST_ESOME : first_failure;
}

MST_API int mst_delete_multi(struct mst *m, const char *const *keys, const size_t *nkeys, size_t n,
                             size_t *deleted)
{
    if (deleted) {
        *deleted = 0;
    }
    if (!m || (n && (!keys || !nkeys))) {
        return MST_EINVAL;
    }
    m->errbuf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (key_check(m, keys[i], nkeys[i]) != MST_OK) {
            return mst_fail(m, MST_EBADKEY, "bad key #%zu", i);
        }
    }
    if (n == 0) {
        return MST_OK;
    }
    int rc = route_prepare(m);
    if (rc != MST_OK) {
        return rc;
    }
    size_t ns = m->nservers;
    unsigned char *state = calloc(ns, 1);
    if (!state) {
        return MST_ENOMEM;
    }
    bool noreply = m->noreply;
    struct wire_req rq = {.op = WOP_DELETE, .ns = m->ns, .nns = m->nns, .quiet = noreply};
    int first_failure = MST_OK;
    bool unrouted = false;
    for (size_t i = 0; i < n && rc == MST_OK; i++) {
        size_t idx;
        if (route_one(m, keys[i], nkeys[i], &idx) != MST_OK) {
            unrouted = true;
            first_failure = first_failure ? first_failure : MST_ENOSERVERS;
            continue;
        }
        struct mst_server *srv = m->servers[idx];
        if (state[idx] == MS_IDLE) {
            state[idx] = (unsigned char)multi_begin(m, srv);
        }
        if (state[idx] != MS_ACTIVE) {
            continue;
        }
        rq.key = keys[i];
        rq.nkey = nkeys[i];
        size_t expect;
        if (wire_compose(&srv->wbuf, srv_wire(m, srv), &rq, &expect) != MST_OK) {
            rc = MST_ENOMEM;
        }
        srv->pending += expect;
    }
    /* Quiet batches end with their marker, skipped by the next call. */
    for (size_t s = 0; s < ns && rc == MST_OK && noreply; s++) {
        struct mst_server *srv = m->servers[s];
        enum wire_proto w = srv_wire(m, srv);
        if (state[s] == MS_ACTIVE && w != WIRE_TEXT) {
            if (wire_compose_end(&srv->wbuf, w) != MST_OK) {
                rc = MST_ENOMEM;
            } else {
                srv->owed++;
            }
        }
    }
    struct op_result res = {0};
    if (rc == MST_OK) {
        struct io_call call = {m, h_delete_count, &res, false};
        io_run(&call);
    }
    int status = multi_tally(m, state, rc, unrouted, first_failure);
    free(state);
    if (rc != MST_OK) {
        return mst_fail(m, rc, "out of memory");
    }
    if (deleted) {
        *deleted = (size_t)res.number;
    }
    return status;
}

static int arith(struct mst *m, enum wire_op op, const char *key, size_t nkey, uint64_t delta,
                 const uint64_t *initial, int32_t exptime, uint64_t *value,
                 enum mst_outcome *outcome)
{
    if (outcome) {
        *outcome = MST_NONE;
    }
    int rc = check_args(m, key, nkey);
    if (rc != MST_OK) {
        return rc;
    }
    /* With an initial value the reply is needed to know whether to create the item. */
    bool noreply = m->noreply && !initial;
    struct wire_req rq = {
        .op = op,
        .key = key,
        .nkey = nkey,
        .delta = delta,
        .initial = initial ? *initial : 0,
        .has_initial = initial != NULL,
        .exptime = exptime,
        .quiet = noreply,
    };
    for (int attempt = 0; attempt < 2; attempt++) {
        struct op_result res = {0};
        rc = keyed(m, &rq, h_arith, &res);
        if (rc != MST_OK) {
            return rc;
        }
        /* Meta (N/J) and binary create the item in the same request; text needs an add. */
        if (res.outcome != MST_NOT_FOUND || !initial || res.wire != WIRE_TEXT) {
            if (value && res.outcome == MST_STORED) {
                *value = res.number;
            }
            if (outcome) {
                *outcome = res.outcome;
            }
            return MST_OK;
        }
        char num[24];
        size_t nn = num_format_u64(num, *initial);
        enum mst_outcome st;
        rc = store(m, WOP_ADD, key, nkey, num, nn, 0, exptime, 0, false, &st);
        if (rc != MST_OK) {
            return rc;
        }
        if (st == MST_STORED) {
            if (value) {
                *value = *initial;
            }
            if (outcome) {
                *outcome = MST_STORED;
            }
            return MST_OK;
        }
        /* Someone else created it meanwhile: apply the delta to theirs. */
    }
    if (outcome) {
        *outcome = MST_NOT_FOUND;
    }
    return MST_OK;
}

MST_API int mst_incr(struct mst *m, const char *key, size_t nkey, uint64_t delta,
                     const uint64_t *initial, int32_t exptime, uint64_t *value,
                     enum mst_outcome *outcome)
{
    return arith(m, WOP_INCR, key, nkey, delta, initial, exptime, value, outcome);
}

MST_API int mst_decr(struct mst *m, const char *key, size_t nkey, uint64_t delta,
                     const uint64_t *initial, int32_t exptime, uint64_t *value,
                     enum mst_outcome *outcome)
{
    return arith(m, WOP_DECR, key, nkey, delta, initial, exptime, value, outcome);
}

MST_API int mst_touch(struct mst *m, const char *key, size_t nkey, int32_t exptime,
                      enum mst_outcome *outcome)
{
    if (outcome) {
        *outcome = MST_NONE;
    }
    int rc = check_args(m, key, nkey);
    if (rc != MST_OK) {
        return rc;
    }
    struct wire_req rq = {
        .op = WOP_TOUCH, .key = key, .nkey = nkey, .exptime = exptime, .quiet = m->noreply};
    struct op_result res = {0};
    rc = keyed(m, &rq, h_touch, &res);
    if (rc == MST_OK && outcome) {
        *outcome = res.outcome;
    }
    return rc;
}

/* ---- Leases (meta only) ------------------------------------------------ */

MST_API const char *mst_lease_name(enum mst_lease state)
{
    switch (state) {
    case MST_LEASE_HIT:
        return "hit";
    case MST_LEASE_STALE:
        return "stale";
    case MST_LEASE_WON:
        return "won";
    case MST_LEASE_WAIT:
        return "wait";
    default:
        return "unknown";
    }
}

/* Keeps val->cas (the lease token) but drops the value. */
static void drop_value(struct mst_value *val)
{
    uint64_t cas = val->cas;
    mst_value_clear(val);
    val->cas = cas;
}

MST_API int mst_lease_get(struct mst *m, const char *key, size_t nkey, uint32_t lease_ttl,
                          uint32_t recache_below, struct mst_value *val, enum mst_lease *state)
{
    if (state) {
        *state = MST_LEASE_WAIT;
    }
    if (!val || !state) {
        return MST_EINVAL;
    }
    memset(val, 0, sizeof(*val));
    int rc = check_args(m, key, nkey);
    if (rc != MST_OK) {
        return rc;
    }
    if (lease_ttl == 0 || lease_ttl > INT32_MAX || recache_below > INT32_MAX) {
        return mst_fail(m, MST_EINVAL, "lease_ttl must be 1..2^31-1 seconds");
    }
    struct wire_req rq = {
        .op = WOP_LEASE_GET,
        .key = key,
        .nkey = nkey,
        .lease_ttl = lease_ttl,
        .recache_below = recache_below,
    };
    struct op_result res = {0};
    res.val = val;
    res.want_cas = true;
    rc = keyed(m, &rq, h_get, &res);
    if (rc != MST_OK) {
        mst_value_clear(val);
        return rc;
    }
    if (res.outcome != MST_HIT) {
        /* N always creates the item on a miss; a miss here means it just went away. */
        *state = MST_LEASE_WAIT;
        return MST_OK;
    }
    struct reply probe = {.mflags = res.mflags};
    bool win = reply_has_mflag(&probe, 'W');
    bool stale = reply_has_mflag(&probe, 'X');
    bool taken = reply_has_mflag(&probe, 'Z');
    /* The item N created holds 0 bytes and flags 0 until the winner stores. */
    bool placeholder = val->len == 0 && val->flags == 0;
    if (win) {
        *state = MST_LEASE_WON;
        if (!stale && placeholder) {
            drop_value(val);
        }
    } else if (stale) {
        *state = MST_LEASE_STALE;
    } else if (taken && placeholder) {
        *state = MST_LEASE_WAIT;
        drop_value(val);
    } else {
        *state = MST_LEASE_HIT;
    }
    return MST_OK;
}

MST_API int mst_lease_set(struct mst *m, const char *key, size_t nkey, const void *data, size_t len,
                          uint32_t flags, int32_t exptime, uint64_t lease_cas,
                          enum mst_outcome *outcome)
{
    if (outcome) {
        *outcome = MST_NONE;
    }
    int rc = check_args(m, key, nkey);
    if (rc != MST_OK) {
        return rc;
    }
    if (!data && len) {
        return MST_EINVAL;
    }
    struct wire_req rq = {
        .op = WOP_LEASE_SET,
        .key = key,
        .nkey = nkey,
        .data = data ? data : "",
        .len = len,
        .flags = flags,
        .exptime = exptime,
        .cas = lease_cas,
    };
    struct op_result res = {0};
    rc = keyed(m, &rq, h_storage, &res);
    if (rc == MST_OK && res.outcome == MST_NOT_FOUND) {
        /* The placeholder expired (or was evicted): store unless someone else has. */
        rq.op = WOP_ADD;
        rc = keyed(m, &rq, h_storage, &res);
    }
    if (rc == MST_OK && outcome) {
        *outcome = res.outcome;
    }
    return rc;
}

MST_API int mst_lease_invalidate(struct mst *m, const char *key, size_t nkey, int32_t stale_ttl,
                                 enum mst_outcome *outcome)
{
    if (outcome) {
        *outcome = MST_NONE;
    }
    int rc = check_args(m, key, nkey);
    if (rc != MST_OK) {
        return rc;
    }
    struct wire_req rq = {.op = WOP_INVALIDATE, .key = key, .nkey = nkey, .exptime = stale_ttl};
    struct op_result res = {0};
    rc = keyed(m, &rq, h_delete, &res);
    if (rc == MST_OK && outcome) {
        *outcome = res.outcome;
    }
    return rc;
}

/* ---- Whole servers ---------------------------------------------------- */

static int check_server(struct mst *m, size_t i)
{
    if (!m) {
        return MST_EINVAL;
    }
    m->errbuf[0] = '\0';
    if (i >= m->nservers) {
        return mst_fail(m, MST_ENOENT, "no server #%zu", i);
    }
    return MST_OK;
}

/* Composes a whole-server request on srv (begun) and sets pending; quiet ones owe a marker. */
static int compose_server(struct mst *m, struct mst_server *srv, int kind, int32_t delay,
                          const char *group)
{
    enum wire_proto w = srv_wire(m, srv);
    int rc;
    size_t expect = 1;
    if (kind == 0) {
        bool quiet = m->noreply;
        rc = wire_compose_flush(&srv->wbuf, w, delay, quiet);
        if (rc == MST_OK && quiet) {
            expect = 0;
            if (w == WIRE_BINARY) {
                rc = wire_compose_end(&srv->wbuf, w);
                srv->owed += rc == MST_OK;
            }
        }
    } else if (kind == 1) {
        rc = wire_compose_version(&srv->wbuf, w);
    } else {
        rc = wire_compose_stats(&srv->wbuf, w, group);
    }
    if (rc != MST_OK) {
        io_close(srv);
        srv->active = false;
        srv->status = rc;
        return mst_fail(m, rc, "%s: %s", srv->name, mst_strerror(rc));
    }
    srv->pending = expect;
    return MST_OK;
}

static int run_server(struct mst *m, size_t i, int kind, int32_t delay, const char *group,
                      io_handler h, struct op_result *res)
{
    struct mst_server *srv = m->servers[i];
    int rc = io_begin_probe(m, srv);
    if (rc != MST_OK) {
        return rc;
    }
    rc = compose_server(m, srv, kind, delay, group);
    if (rc != MST_OK) {
        return rc;
    }
    struct io_call call = {m, h, res, false};
    io_run(&call);
    return srv->status;
}

MST_API int mst_flush_server(struct mst *m, size_t i, int32_t delay)
{
    int rc = check_server(m, i);
    if (rc != MST_OK) {
        return rc;
    }
    struct op_result res = {0};
    return run_server(m, i, 0, delay, NULL, h_ok, &res);
}

MST_API int mst_flush_all(struct mst *m, int32_t delay)
{
    if (!m) {
        return MST_EINVAL;
    }
    m->errbuf[0] = '\0';
    if (m->nservers == 0) {
        return mst_fail(m, MST_ENOSERVERS, "no servers configured");
    }
    bool any = false;
    for (size_t i = 0; i < m->nservers; i++) {
        struct mst_server *srv = m->servers[i];
        if (io_begin_probe(m, srv) != MST_OK) {
            continue;
        }
        if (compose_server(m, srv, 0, delay, NULL) != MST_OK) {
            continue;
        }
        any = true;
    }
    if (any) {
        struct op_result res = {0};
        struct io_call call = {m, h_ok, &res, false};
        io_run(&call);
    }
    int first = MST_OK;
    size_t ok = 0;
    for (size_t i = 0; i < m->nservers; i++) {
        if (m->servers[i]->status == MST_OK) {
            ok++;
        } else if (first == MST_OK) {
            first = m->servers[i]->status;
        }
    }
    if (ok == m->nservers) {
        return MST_OK;
    }
    return ok ? MST_ESOME : first;
}

MST_API int mst_version(struct mst *m, size_t i, char *buf, size_t cap)
{
    int rc = check_server(m, i);
    if (rc != MST_OK) {
        return rc;
    }
    struct op_result res = {0};
    res.text = buf;
    res.text_cap = cap;
    if (buf && cap) {
        buf[0] = '\0';
    }
    return run_server(m, i, 1, 0, NULL, h_version, &res);
}

MST_API int mst_stats(struct mst *m, size_t i, const char *group, mst_stat_cb cb, void *arg)
{
    int rc = check_server(m, i);
    if (rc != MST_OK) {
        return rc;
    }
    size_t glen = group ? strlen(group) : 0;
    if (glen > 200 || (group && (strchr(group, '\r') || strchr(group, '\n')))) {
        return mst_fail(m, MST_EINVAL, "bad stats group");
    }
    struct op_result res = {0};
    res.stat_cb = cb;
    res.cb_arg = arg;
    return run_server(m, i, 2, 0, glen ? group : NULL, h_stats, &res);
}

/* ---- Pipelined multi-set ------------------------------------------------ */

/* What mst_set_multi() collects: replies come back in order per server. */
struct set_multi_result {
    enum mst_outcome *outcomes; /* per item, may be NULL */
    const size_t *order;        /* item indices grouped by server (counting sort) */
    size_t *cursor;             /* per server: its next reply's position in order */
    size_t stored;
};

static int h_set_multi(struct io_call *c, struct mst_server *srv, size_t idx, const struct reply *r)
{
    struct set_multi_result *res = c->arg;
    enum mst_outcome out;
    switch (r->kind) {
    case REPLY_STORED:
    case REPLY_META_HD:
        out = MST_STORED;
        res->stored++;
        break;
    case REPLY_NOT_STORED:
    case REPLY_META_NS:
    case REPLY_EXISTS:
    case REPLY_META_EX:
    case REPLY_NOT_FOUND:
    case REPLY_META_NF:
        out = MST_NOT_STORED;
        break;
    default:
        if (!reply_is_error(r)) {
            return MST_EPROTO;
        }
        /* The server refused this item (too large...): the others go on. */
        out = MST_NONE;
        break;
    }
    size_t item = res->order[res->cursor[idx]++];
    if (res->outcomes) {
        res->outcomes[item] = out;
    }
    (void)srv;
    return 1;
}

MST_API int mst_set_multi(struct mst *m, const struct mst_item *items, size_t n,
                          enum mst_outcome *outcomes, size_t *stored)
{
    if (stored) {
        *stored = 0;
    }
    if (!m || (n && !items)) {
        return MST_EINVAL;
    }
    m->errbuf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (outcomes) {
            outcomes[i] = MST_NONE;
        }
        if (key_check(m, items[i].key, items[i].nkey) != MST_OK) {
            return mst_fail(m, MST_EBADKEY, "bad key #%zu", i);
        }
        if (!items[i].data && items[i].len) {
            return MST_EINVAL;
        }
    }
    if (n == 0) {
        return MST_OK;
    }
    int rc = route_prepare(m);
    if (rc != MST_OK) {
        return rc;
    }
    size_t ns = m->nservers;
    /* where[i]: item i's server (ns when it has none); then a counting sort by server. */
    size_t *where = malloc(n * sizeof(*where));
    size_t *order = malloc(n * sizeof(*order));
    size_t *cursor = calloc(ns + 1, sizeof(*cursor));
    unsigned char *state = calloc(ns, 1);
    if (!where || !order || !cursor || !state) {
        free(where);
        free(order);
        free(cursor);
        free(state);
        return MST_ENOMEM;
    }
    int first_failure = MST_OK;
    bool unrouted = false;
    for (size_t i = 0; i < n; i++) {
        size_t idx;
        if (route_one(m, items[i].key, items[i].nkey, &idx) != MST_OK) {
            unrouted = true;
            first_failure = first_failure ? first_failure : MST_ENOSERVERS;
            idx = ns;
        }
        where[i] = idx;
        cursor[idx]++;
    }
    /* cursor[s] becomes the start of server s's run in order. */
    size_t at = 0;
    for (size_t s = 0; s <= ns; s++) {
        size_t count = cursor[s];
        cursor[s] = at;
        at += count;
    }
    for (size_t i = 0; i < n; i++) {
        order[cursor[where[i]]++] = i;
    }
    for (size_t s = ns + 1; s-- > 1;) {
        cursor[s] = cursor[s - 1];
    }
    cursor[0] = 0;

    bool noreply = m->noreply;
    struct wire_req rq = {.op = WOP_SET, .ns = m->ns, .nns = m->nns, .quiet = noreply};
    for (size_t k = 0; k < n && rc == MST_OK; k++) {
        size_t i = order[k];
        size_t idx = where[i];
        if (idx == ns) {
            continue;
        }
        struct mst_server *srv = m->servers[idx];
        if (state[idx] == MS_IDLE) {
            state[idx] = (unsigned char)multi_begin(m, srv);
        }
        if (state[idx] != MS_ACTIVE) {
            continue;
        }
        rq.key = items[i].key;
        rq.nkey = items[i].nkey;
        rq.data = items[i].data ? items[i].data : "";
        rq.len = items[i].len;
        rq.flags = items[i].flags;
        rq.exptime = items[i].exptime;
        size_t expect;
        rc = wire_compose(&srv->wbuf, srv_wire(m, srv), &rq, &expect);
        srv->pending += expect;
    }
    /* Quiet batches end with their marker, skipped by the next call. */
    for (size_t s = 0; s < ns && rc == MST_OK && noreply; s++) {
        struct mst_server *srv = m->servers[s];
        enum wire_proto w = srv_wire(m, srv);
        if (state[s] == MS_ACTIVE && w != WIRE_TEXT) {
            rc = wire_compose_end(&srv->wbuf, w);
            if (rc == MST_OK) {
                srv->owed++;
            }
        }
    }
    struct set_multi_result res = {
        .outcomes = noreply ? NULL : outcomes, .order = order, .cursor = cursor};
    if (rc == MST_OK) {
        struct io_call call = {m, h_set_multi, &res, false};
        io_run(&call);
    }
    int status = multi_tally(m, state, rc, unrouted, first_failure);
    free(where);
    free(order);
    free(cursor);
    free(state);
    if (rc != MST_OK) {
        return mst_fail(m, rc, "%s",
                        rc == MST_ETOOBIG ? "value too large for the protocol" : mst_strerror(rc));
    }
    if (stored) {
        *stored = noreply ? 0 : res.stored;
    }
    return status;
}

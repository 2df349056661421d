/*
 * ops.c - libmemstash operations over the text protocol: each call composes
 * its request lines into the servers' write buffers, runs the I/O engine,
 * and turns the replies into a status and an outcome.
 */
#include "client_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What a call collects from its replies. */
struct op_result {
    enum mst_outcome outcome;
    struct mst_value *val;
    bool got_value;
    bool with_cas;
    uint64_t number;
    char *text;
    size_t text_cap;
    mst_stat_cb stat_cb;
    mst_item_cb item_cb;
    void *cb_arg;
    bool stop;
};

/* Maps an error reply to a status for srv (the response is complete). */
static int error_reply(struct mst *m, struct mst_server *srv, const struct reply *r)
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

static bool is_error_reply(const struct reply *r)
{
    return r->kind == REPLY_ERROR || r->kind == REPLY_CLIENT_ERROR || r->kind == REPLY_SERVER_ERROR;
}

static int h_storage(struct io_call *c, struct mst_server *srv, size_t idx, const struct reply *r)
{
    (void)idx;
    struct op_result *res = c->arg;
    switch (r->kind) {
    case REPLY_STORED:
        res->outcome = MST_STORED;
        return 1;
    case REPLY_NOT_STORED:
        res->outcome = MST_NOT_STORED;
        return 1;
    case REPLY_EXISTS:
        res->outcome = MST_EXISTS;
        return 1;
    case REPLY_NOT_FOUND:
        res->outcome = MST_NOT_FOUND;
        return 1;
    default:
        return is_error_reply(r) ? error_reply(c->m, srv, r) : MST_EPROTO;
    }
}

static int h_get(struct io_call *c, struct mst_server *srv, size_t idx, const struct reply *r)
{
    (void)idx;
    struct op_result *res = c->arg;
    if (r->kind == REPLY_VALUE) {
        if (res->got_value) {
            return MST_EPROTO;
        }
        char *p = malloc(r->data.len + 1);
        if (!p) {
            return MST_ENOMEM;
        }
        memcpy(p, r->data.p, r->data.len);
        p[r->data.len] = '\0';
        res->val->data = p;
        res->val->len = r->data.len;
        res->val->flags = r->flags;
        res->val->cas = r->cas;
        res->got_value = true;
        return 0;
    }
    if (r->kind == REPLY_END) {
        res->outcome = res->got_value ? MST_HIT : MST_MISS;
        return 1;
    }
    return is_error_reply(r) ? error_reply(c->m, srv, r) : MST_EPROTO;
}

static int h_delete(struct io_call *c, struct mst_server *srv, size_t idx, const struct reply *r)
{
    (void)idx;
    struct op_result *res = c->arg;
    if (r->kind == REPLY_DELETED) {
        res->outcome = MST_DELETED;
        return 1;
    }
    if (r->kind == REPLY_NOT_FOUND) {
        res->outcome = MST_NOT_FOUND;
        return 1;
    }
    return is_error_reply(r) ? error_reply(c->m, srv, r) : MST_EPROTO;
}

static int h_arith(struct io_call *c, struct mst_server *srv, size_t idx, const struct reply *r)
{
    (void)idx;
    struct op_result *res = c->arg;
    if (r->kind == REPLY_NUMBER) {
        res->number = r->number;
        res->outcome = MST_STORED;
        return 1;
    }
    if (r->kind == REPLY_NOT_FOUND) {
        res->outcome = MST_NOT_FOUND;
        return 1;
    }
    return is_error_reply(r) ? error_reply(c->m, srv, r) : MST_EPROTO;
}

static int h_touch(struct io_call *c, struct mst_server *srv, size_t idx, const struct reply *r)
{
    (void)idx;
    struct op_result *res = c->arg;
    if (r->kind == REPLY_TOUCHED) {
        res->outcome = MST_TOUCHED;
        return 1;
    }
    if (r->kind == REPLY_NOT_FOUND) {
        res->outcome = MST_NOT_FOUND;
        return 1;
    }
    return is_error_reply(r) ? error_reply(c->m, srv, r) : MST_EPROTO;
}

static int h_ok(struct io_call *c, struct mst_server *srv, size_t idx, const struct reply *r)
{
    (void)idx;
    if (r->kind == REPLY_OK) {
        return 1;
    }
    return is_error_reply(r) ? error_reply(c->m, srv, r) : MST_EPROTO;
}

static int h_version(struct io_call *c, struct mst_server *srv, size_t idx, const struct reply *r)
{
    (void)idx;
    struct op_result *res = c->arg;
    if (r->kind == REPLY_VERSION) {
        if (res->text && res->text_cap) {
            size_t n = r->text.len < res->text_cap - 1 ? r->text.len : res->text_cap - 1;
            memcpy(res->text, r->text.p, n);
            res->text[n] = '\0';
        }
        return 1;
    }
    return is_error_reply(r) ? error_reply(c->m, srv, r) : MST_EPROTO;
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
    return is_error_reply(r) ? error_reply(c->m, srv, r) : MST_EPROTO;
}

static int h_multi(struct io_call *c, struct mst_server *srv, size_t idx, const struct reply *r)
{
    (void)idx;
    struct op_result *res = c->arg;
    struct mst *m = c->m;
    if (r->kind == REPLY_VALUE) {
        const char *k = r->key.p;
        size_t nk = r->key.len;
        if (m->nns && nk >= m->nns && memcmp(k, m->ns, m->nns) == 0) {
            k += m->nns;
            nk -= m->nns;
        }
        if (res->item_cb && !res->stop) {
            res->stop =
                res->item_cb(res->cb_arg, k, nk, r->data.p, r->data.len, r->flags, r->cas) != 0;
        }
        return 0;
    }
    if (r->kind == REPLY_END) {
        return 1;
    }
    return is_error_reply(r) ? error_reply(m, srv, r) : MST_EPROTO;
}

/* Appends " noreply" when asked, then "\r\n". */
static size_t end_line(char *buf, size_t len, size_t cap, bool noreply)
{
    int n = snprintf(buf + len, cap - len, "%s\r\n", noreply ? " noreply" : "");
    return len + (size_t)n;
}

/*
 * Runs one request on server idx: line[0..nline) then, if data is not NULL,
 * data[0..ndata) and "\r\n". expect is the number of responses to read.
 */
static int run_on(struct mst *m, size_t idx, const char *line, size_t nline, const void *data,
                  size_t ndata, size_t expect, io_handler h, struct op_result *res)
{
    struct mst_server *srv = m->servers[idx];
    int rc = io_begin(m, srv);
    if (rc != MST_OK) {
        return rc;
    }
    if (buf_append(&srv->wbuf, line, nline) != MST_OK ||
        (data && (buf_append(&srv->wbuf, data, ndata) != MST_OK ||
                  buf_append(&srv->wbuf, "\r\n", 2) != MST_OK))) {
        io_close(srv);
        srv->active = false;
        return mst_fail(m, MST_ENOMEM, "out of memory");
    }
    srv->pending = expect;
    struct io_call call = {m, h, res};
    io_run(&call);
    return srv->status;
}

/*
 * Runs a keyed request. When the key's server cannot be connected to and
 * that marks it dead, the request is sent again where the key lives now
 * (failover), since nothing reached the dead server.
 */
typedef size_t (*compose_fn)(struct mst *m, const char *key, size_t nkey, void *ctx, char *buf,
                             size_t cap);

static int keyed(struct mst *m, const char *key, size_t nkey, compose_fn compose, void *ctx,
                 const void *data, size_t ndata, bool noreply, io_handler h, struct op_result *res)
{
    char line[640];
    size_t nline = compose(m, key, nkey, ctx, line, sizeof(line));
    nline = end_line(line, nline, sizeof(line), noreply);
    int rc = MST_OK;
    for (size_t attempt = 0; attempt <= m->nservers; attempt++) {
        size_t idx;
        int route = route_key(m, key, nkey, &idx);
        if (route != MST_OK) {
            /* After a failed attempt, report that failure rather than "no server". */
            if (attempt > 0) {
                mst_fail(m, rc, "%s", m->lasterr);
                return rc;
            }
            return route;
        }
        rc = run_on(m, idx, line, nline, data, ndata, noreply ? 0 : 1, h, res);
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

struct store_ctx {
    const char *cmd;
    uint32_t flags;
    int32_t exptime;
    size_t len;
    uint64_t cas;
    bool with_cas;
};

static size_t compose_store(struct mst *m, const char *key, size_t nkey, void *ctx, char *buf,
                            size_t cap)
{
    struct store_ctx *s = ctx;
    int n;
    if (s->with_cas) {
        n = snprintf(buf, cap, "%s %.*s%.*s %u %d %zu %llu", s->cmd, (int)m->nns, m->ns, (int)nkey,
                     key, s->flags, (int)s->exptime, s->len, (unsigned long long)s->cas);
    } else {
        n = snprintf(buf, cap, "%s %.*s%.*s %u %d %zu", s->cmd, (int)m->nns, m->ns, (int)nkey, key,
                     s->flags, (int)s->exptime, s->len);
    }
    return (size_t)n;
}

static int store(struct mst *m, const char *cmd, const char *key, size_t nkey, const void *data,
                 size_t len, uint32_t flags, int32_t exptime, bool with_cas, uint64_t cas,
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
    struct store_ctx s = {cmd, flags, exptime, len, cas, with_cas};
    struct op_result res = {0};
    rc = keyed(m, key, nkey, compose_store, &s, data ? data : "", len, m->noreply, h_storage, &res);
    if (rc == MST_OK && outcome) {
        *outcome = res.outcome;
    }
    return rc;
}

MST_API int mst_set(struct mst *m, const char *key, size_t nkey, const void *data, size_t len,
                    uint32_t flags, int32_t exptime, enum mst_outcome *outcome)
{
    return store(m, "set", key, nkey, data, len, flags, exptime, false, 0, outcome);
}

MST_API int mst_add(struct mst *m, const char *key, size_t nkey, const void *data, size_t len,
                    uint32_t flags, int32_t exptime, enum mst_outcome *outcome)
{
    return store(m, "add", key, nkey, data, len, flags, exptime, false, 0, outcome);
}

MST_API int mst_replace(struct mst *m, const char *key, size_t nkey, const void *data, size_t len,
                        uint32_t flags, int32_t exptime, enum mst_outcome *outcome)
{
    return store(m, "replace", key, nkey, data, len, flags, exptime, false, 0, outcome);
}

MST_API int mst_append(struct mst *m, const char *key, size_t nkey, const void *data, size_t len,
                       enum mst_outcome *outcome)
{
    return store(m, "append", key, nkey, data, len, 0, 0, false, 0, outcome);
}

MST_API int mst_prepend(struct mst *m, const char *key, size_t nkey, const void *data, size_t len,
                        enum mst_outcome *outcome)
{
    return store(m, "prepend", key, nkey, data, len, 0, 0, false, 0, outcome);
}

MST_API int mst_cas(struct mst *m, const char *key, size_t nkey, const void *data, size_t len,
                    uint32_t flags, int32_t exptime, uint64_t cas, enum mst_outcome *outcome)
{
    return store(m, "cas", key, nkey, data, len, flags, exptime, true, cas, outcome);
}

/* ---- Reads ------------------------------------------------------------ */

static size_t compose_get(struct mst *m, const char *key, size_t nkey, void *ctx, char *buf,
                          size_t cap)
{
    const char *cmd = ctx;
    return (size_t)snprintf(buf, cap, "%s %.*s%.*s", cmd, (int)m->nns, m->ns, (int)nkey, key);
}

static int get_one(struct mst *m, const char *cmd, const char *key, size_t nkey,
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
    struct op_result res = {0};
    res.val = val;
    rc = keyed(m, key, nkey, compose_get, (void *)cmd, NULL, 0, false, h_get, &res);
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
    return get_one(m, "get", key, nkey, val, outcome);
}

MST_API int mst_gets(struct mst *m, const char *key, size_t nkey, struct mst_value *val,
                     enum mst_outcome *outcome)
{
    return get_one(m, "gets", key, nkey, val, outcome);
}

static size_t compose_gat(struct mst *m, const char *key, size_t nkey, void *ctx, char *buf,
                          size_t cap)
{
    int32_t exptime = *(int32_t *)ctx;
    return (size_t)snprintf(buf, cap, "gat %d %.*s%.*s", (int)exptime, (int)m->nns, m->ns,
                            (int)nkey, key);
}

MST_API int mst_gat(struct mst *m, const char *key, size_t nkey, int32_t exptime,
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
    struct op_result res = {0};
    res.val = val;
    rc = keyed(m, key, nkey, compose_gat, &exptime, NULL, 0, false, h_get, &res);
    if (rc != MST_OK) {
        mst_value_clear(val);
        return rc;
    }
    if (outcome) {
        *outcome = res.outcome;
    }
    return MST_OK;
}

MST_API void mst_value_clear(struct mst_value *val)
{
    if (!val) {
        return;
    }
    free(val->data);
    memset(val, 0, sizeof(*val));
}

/* Per-server state of one mst_get_multi() round. */
enum { MS_IDLE = 0, MS_ACTIVE, MS_FAILED };

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
    long *where = malloc(n * sizeof(*where));
    unsigned char *state = malloc(ns);
    if (!where || !state) {
        free(where);
        free(state);
        return MST_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        where[i] = -2; /* -2: to send; -1: no server; >= 0: sent there */
    }
    struct op_result res = {0};
    res.item_cb = cb;
    res.cb_arg = arg;
    const char *cmd = with_cas ? "gets" : "get";
    int first_failure = MST_OK;
    int moved_status = MST_ENOSERVERS;
    bool any_ok = false, any_failed = false;
    for (int round = 0; round < 3; round++) {
        memset(state, MS_IDLE, ns);
        bool sent = false;
        for (size_t i = 0; i < n; i++) {
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
                if (io_begin(m, srv) != MST_OK) {
                    state[idx] = MS_FAILED;
                    continue;
                }
                state[idx] = MS_ACTIVE;
                srv->pending = 1;
                if (buf_append(&srv->wbuf, cmd, strlen(cmd)) != MST_OK) {
                    rc = MST_ENOMEM;
                }
            }
            if (state[idx] != MS_ACTIVE) {
                continue;
            }
            if (buf_append(&srv->wbuf, " ", 1) != MST_OK ||
                buf_append(&srv->wbuf, m->ns, m->nns) != MST_OK ||
                buf_append(&srv->wbuf, keys[i], nkeys[i]) != MST_OK) {
                rc = MST_ENOMEM;
            }
        }
        for (size_t s = 0; s < ns; s++) {
            if (state[s] == MS_ACTIVE) {
                if (buf_append(&m->servers[s]->wbuf, "\r\n", 2) != MST_OK) {
                    rc = MST_ENOMEM;
                }
                sent = true;
            }
        }
        if (rc == MST_ENOMEM) {
            for (size_t s = 0; s < ns; s++) {
                if (state[s] == MS_ACTIVE) {
                    io_close(m->servers[s]);
                    m->servers[s]->active = false;
                }
            }
            break;
        }
        if (sent) {
            struct io_call call = {m, h_multi, &res};
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
    free(where);
    free(state);
    if (rc == MST_ENOMEM) {
        return mst_fail(m, MST_ENOMEM, "out of memory");
    }
    if (!any_failed) {
        return MST_OK;
    }
    return any_ok ? MST_ESOME : first_failure;
}

/* ---- Delete, arithmetic, touch ---------------------------------------- */

static size_t compose_delete(struct mst *m, const char *key, size_t nkey, void *ctx, char *buf,
                             size_t cap)
{
    (void)ctx;
    return (size_t)snprintf(buf, cap, "delete %.*s%.*s", (int)m->nns, m->ns, (int)nkey, key);
}

MST_API int mst_delete(struct mst *m, const char *key, size_t nkey, enum mst_outcome *outcome)
{
    if (outcome) {
        *outcome = MST_NONE;
    }
    int rc = check_args(m, key, nkey);
    if (rc != MST_OK) {
        return rc;
    }
    struct op_result res = {0};
    rc = keyed(m, key, nkey, compose_delete, NULL, NULL, 0, m->noreply, h_delete, &res);
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
    if (r->kind == REPLY_DELETED) {
        res->number++;
        return 1;
    }
    if (r->kind == REPLY_NOT_FOUND) {
        return 1;
    }
    return is_error_reply(r) ? error_reply(c->m, srv, r) : MST_EPROTO;
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
            state[idx] = io_begin(m, srv) == MST_OK ? MS_ACTIVE : MS_FAILED;
        }
        if (state[idx] != MS_ACTIVE) {
            continue;
        }
        if (buf_append(&srv->wbuf, "delete ", 7) != MST_OK ||
            buf_append(&srv->wbuf, m->ns, m->nns) != MST_OK ||
            buf_append(&srv->wbuf, keys[i], nkeys[i]) != MST_OK ||
            buf_append(&srv->wbuf, noreply ? " noreply\r\n" : "\r\n", noreply ? 10 : 2) != MST_OK) {
            rc = MST_ENOMEM;
        }
        srv->pending += noreply ? 0 : 1;
    }
    struct op_result res = {0};
    if (rc == MST_OK) {
        struct io_call call = {m, h_delete_count, &res};
        io_run(&call);
    }
    bool any_ok = false, any_failed = unrouted;
    for (size_t s = 0; s < ns; s++) {
        if (state[s] == MS_IDLE) {
            continue;
        }
        struct mst_server *srv = m->servers[s];
        if (rc != MST_OK) {
            io_close(srv);
            srv->active = false;
        } else if (srv->status == MST_OK) {
            any_ok = true;
        } else {
            any_failed = true;
            first_failure = first_failure ? first_failure : srv->status;
        }
    }
    free(state);
    if (rc != MST_OK) {
        return mst_fail(m, rc, "out of memory");
    }
    if (deleted) {
        *deleted = (size_t)res.number;
    }
    if (!any_failed) {
        return MST_OK;
    }
    return any_ok ? MST_ESOME : first_failure;
}

struct arith_ctx {
    const char *cmd;
    uint64_t delta;
};

static size_t compose_arith(struct mst *m, const char *key, size_t nkey, void *ctx, char *buf,
                            size_t cap)
{
    struct arith_ctx *a = ctx;
    return (size_t)snprintf(buf, cap, "%s %.*s%.*s %llu", a->cmd, (int)m->nns, m->ns, (int)nkey,
                            key, (unsigned long long)a->delta);
}

static int arith(struct mst *m, const char *cmd, const char *key, size_t nkey, uint64_t delta,
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
    struct arith_ctx a = {cmd, delta};
    /* With an initial value the reply is needed to know whether to create the item. */
    bool noreply = m->noreply && !initial;
    for (int attempt = 0; attempt < 2; attempt++) {
        struct op_result res = {0};
        rc = keyed(m, key, nkey, compose_arith, &a, NULL, 0, noreply, h_arith, &res);
        if (rc != MST_OK) {
            return rc;
        }
        if (res.outcome != MST_NOT_FOUND || !initial) {
            if (value && res.outcome == MST_STORED) {
                *value = res.number;
            }
            if (outcome) {
                *outcome = res.outcome;
            }
            return MST_OK;
        }
        char num[24];
        int nn = snprintf(num, sizeof(num), "%llu", (unsigned long long)*initial);
        enum mst_outcome st;
        bool saved = m->noreply;
        m->noreply = false;
        rc = store(m, "add", key, nkey, num, (size_t)nn, 0, exptime, false, 0, &st);
        m->noreply = saved;
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
    return arith(m, "incr", key, nkey, delta, initial, exptime, value, outcome);
}

MST_API int mst_decr(struct mst *m, const char *key, size_t nkey, uint64_t delta,
                     const uint64_t *initial, int32_t exptime, uint64_t *value,
                     enum mst_outcome *outcome)
{
    return arith(m, "decr", key, nkey, delta, initial, exptime, value, outcome);
}

static size_t compose_touch(struct mst *m, const char *key, size_t nkey, void *ctx, char *buf,
                            size_t cap)
{
    int32_t exptime = *(int32_t *)ctx;
    return (size_t)snprintf(buf, cap, "touch %.*s%.*s %d", (int)m->nns, m->ns, (int)nkey, key,
                            (int)exptime);
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
    struct op_result res = {0};
    rc = keyed(m, key, nkey, compose_touch, &exptime, NULL, 0, m->noreply, h_touch, &res);
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

static size_t compose_flush(char *buf, size_t cap, int32_t delay, bool noreply)
{
    size_t n = delay ? (size_t)snprintf(buf, cap, "flush_all %d", (int)delay)
                     : (size_t)snprintf(buf, cap, "flush_all");
    return end_line(buf, n, cap, noreply);
}

MST_API int mst_flush_server(struct mst *m, size_t i, int32_t delay)
{
    int rc = check_server(m, i);
    if (rc != MST_OK) {
        return rc;
    }
    char line[64];
    size_t n = compose_flush(line, sizeof(line), delay, m->noreply);
    struct op_result res = {0};
    return run_on(m, i, line, n, NULL, 0, m->noreply ? 0 : 1, h_ok, &res);
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
    char line[64];
    size_t n = compose_flush(line, sizeof(line), delay, m->noreply);
    bool any = false;
    for (size_t i = 0; i < m->nservers; i++) {
        struct mst_server *srv = m->servers[i];
        if (io_begin(m, srv) != MST_OK) {
            continue;
        }
        if (buf_append(&srv->wbuf, line, n) != MST_OK) {
            io_close(srv);
            srv->active = false;
            srv->status = MST_ENOMEM;
            continue;
        }
        srv->pending = m->noreply ? 0 : 1;
        any = true;
    }
    if (any) {
        struct op_result res = {0};
        struct io_call call = {m, h_ok, &res};
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
    return run_on(m, i, "version\r\n", 9, NULL, 0, 1, h_version, &res);
}

MST_API int mst_stats(struct mst *m, size_t i, const char *group, mst_stat_cb cb, void *arg)
{
    int rc = check_server(m, i);
    if (rc != MST_OK) {
        return rc;
    }
    char line[300];
    size_t glen = group ? strlen(group) : 0;
    if (glen > 200 || (group && (strchr(group, '\r') || strchr(group, '\n')))) {
        return mst_fail(m, MST_EINVAL, "bad stats group");
    }
    int n = glen ? snprintf(line, sizeof(line), "stats %s\r\n", group)
                 : snprintf(line, sizeof(line), "stats\r\n");
    struct op_result res = {0};
    res.stat_cb = cb;
    res.cb_arg = arg;
    return run_on(m, i, line, (size_t)n, NULL, 0, 1, h_stats, &res);
}

/*
 * dump.c - mst_dump(): lists the items a server holds through its dump
 * facility, then (optionally) fetches their values from that same server.
 *
 * "lru_crawler metadump all" answers one line per item,
 *     key=<uri-encoded key> exp=<unix time|-1> la=<n> cas=<n> fetch=<yes|no> cls=<n> size=<n>
 * ended by "\n", then "END\r\n"; memcached refuses it when other commands
 * are pipelined before it, so it goes out alone on a connection with
 * nothing pending. "lru_crawler mgdump all" (newer memcached) answers
 * "mg <key>[ b]" lines and "EN". A server without either answers a bare
 * ERROR.
 *
 * Values are fetched in batches with the handle's protocol (a multi-get
 * pinned to the server, not routed: the item lives where it was listed).
 */
#include "client_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meta.h"
#include "numparse.h"

#define DUMP_BATCH 100

struct dump_key {
    char *key;
    size_t nkey;
    int64_t exptime;
    uint64_t cas;
};

struct dump_ctx {
    mst_dump_cb cb;
    void *arg;
    size_t server;
    bool with_values;
    bool mgdump;
    bool stop;
    int err;           /* MST_ENOMEM while collecting */
    bool unsupported;  /* a bare ERROR: no such facility */
    char refused[128]; /* the server's refusal (-X, crawler disabled), if any */
    struct dump_key *keys;
    size_t n, cap;
    /* Value fetch: keys [lo, hi) are in flight; next is the first not yet delivered. */
    size_t lo, hi, next;
};

static bool span_eq(const char *p, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    return n == l && memcmp(p, lit, l) == 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Decodes the %XX escapes of p into out (cap bytes); returns the length or -1. */
static long uri_decode(const char *p, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '%' && i + 2 < n) {
            int h = hexval(p[i + 1]), l = hexval(p[i + 2]);
            if (h < 0 || l < 0) {
                return -1;
            }
            c = (char)(h * 16 + l);
            i += 2;
        } else if (c == '%') {
            return -1;
        }
        if (o >= cap) {
            return -1;
        }
        out[o++] = c;
    }
    return (long)o;
}

static void deliver(struct dump_ctx *d, const struct dump_key *k, const struct reply *r)
{
    if (d->stop) {
        return;
    }
    struct mst_dump_item it = {
        .key = k->key,
        .nkey = k->nkey,
        .exptime = k->exptime,
        .cas = k->cas,
    };
    if (r) {
        it.has_value = true;
        it.data = r->data.p;
        it.len = r->data.len;
        it.flags = r->flags;
        if (r->has_cas && r->cas) {
            it.cas = r->cas;
        }
    }
    d->stop = d->cb(d->arg, d->server, &it) != 0;
}

/* Takes one listed item: delivered at once, or kept for the value fetch. */
static void take(struct dump_ctx *d, const char *key, size_t nkey, int64_t exptime, uint64_t cas)
{
    struct dump_key k = {(char *)key, nkey, exptime, cas};
    if (!d->with_values) {
        deliver(d, &k, NULL);
        return;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 256;
        struct dump_key *keys = realloc(d->keys, cap * sizeof(*keys));
        if (!keys) {
            d->err = MST_ENOMEM;
            return;
        }
        d->keys = keys;
        d->cap = cap;
    }
    k.key = malloc(nkey ? nkey : 1);
    if (!k.key) {
        d->err = MST_ENOMEM;
        return;
    }
    memcpy(k.key, key, nkey);
    d->keys[d->n++] = k;
}

/* One metadump line: key=... exp=... cas=... */
static int metadump_line(struct dump_ctx *d, const char *p, size_t n)
{
    const char *end = p + n;
    struct text_token t;
    char key[MST_KEY_MAX + 1];
    long nkey = -1;
    int64_t exptime = 0;
    uint64_t cas = 0;
    while (text_next_token(&p, end, &t)) {
        if (t.len > 4 && memcmp(t.p, "key=", 4) == 0) {
            nkey = uri_decode(t.p + 4, t.len - 4, key, sizeof(key));
        } else if (t.len > 4 && memcmp(t.p, "exp=", 4) == 0) {
            if (!num_parse_i64(t.p + 4, t.len - 4, &exptime)) {
                return MST_EPROTO;
            }
        } else if (t.len > 4 && memcmp(t.p, "cas=", 4) == 0) {
            if (!num_parse_u64(t.p + 4, t.len - 4, &cas)) {
                return MST_EPROTO;
            }
        }
    }
    if (nkey <= 0) {
        return MST_EPROTO;
    }
    take(d, key, (size_t)nkey, exptime, cas);
    return 0;
}

/* One mgdump line: "mg <key>" or "mg <base64 key> b". */
static int mgdump_line(struct dump_ctx *d, const char *p, size_t n)
{
    const char *end = p + n;
    struct text_token cmd, k, b;
    if (!text_next_token(&p, end, &cmd) || !span_eq(cmd.p, cmd.len, "mg") ||
        !text_next_token(&p, end, &k)) {
        return MST_EPROTO;
    }
    char key[META_KEYBUF_SIZE];
    size_t nkey = k.len;
    if (text_next_token(&p, end, &b) && span_eq(b.p, b.len, "b")) {
        nkey = meta_base64_decode(k.p, k.len, key, sizeof(key));
        if (nkey == 0) {
            return MST_EPROTO;
        }
    } else {
        if (nkey > MST_KEY_MAX) {
            return MST_EPROTO;
        }
        memcpy(key, k.p, nkey);
    }
    take(d, key, nkey, 0, 0);
    return 0;
}

static int h_list(struct io_call *c, struct mst_server *srv, size_t idx, const struct reply *r)
{
    (void)idx;
    struct dump_ctx *d = c->arg;
    const char *p = r->text.p;
    size_t n = r->text.len;
    if (span_eq(p, n, d->mgdump ? "EN" : "END")) {
        return 1;
    }
    if (span_eq(p, n, "ERROR")) {
        d->unsupported = true;
        return 1;
    }
    /* Dumping switched off (-X, "lru_crawler disable"): not an error of the
     * server, a facility it refuses. */
    if ((n >= 5 && memcmp(p, "ERROR", 5) == 0 && memmem(p, n, "not allowed", 11) != NULL) ||
        span_eq(p, n, "CLIENT_ERROR lru crawler disabled")) {
        snprintf(d->refused, sizeof(d->refused), "%.*s", (int)(n > 100 ? 100 : n), p);
        return 1;
    }
    if ((n >= 5 && memcmp(p, "ERROR", 5) == 0) || (n >= 4 && memcmp(p, "BUSY", 4) == 0) ||
        (n >= 8 && memcmp(p, "BADCLASS", 8) == 0) ||
        (n >= 12 && memcmp(p, "CLIENT_ERROR", 12) == 0) ||
        (n >= 12 && memcmp(p, "SERVER_ERROR", 12) == 0)) {
        srv->status = MST_ESERVER;
        mst_fail(c->m, MST_ESERVER, "%s: %.*s", srv->name, (int)(n > 200 ? 200 : n), p);
        return 1;
    }
    if (d->err != MST_OK) {
        return 0; /* out of memory: read the rest, report later */
    }
    int rc = d->mgdump ? mgdump_line(d, p, n) : metadump_line(d, p, n);
    return rc < 0 ? rc : 0;
}

/* Values of keys [lo, hi): replies come in request order, misses left out. */
static int h_values(struct io_call *c, struct mst_server *srv, size_t idx, const struct reply *r)
{
    (void)idx;
    struct dump_ctx *d = c->arg;
    if (r->kind == REPLY_VALUE || r->kind == REPLY_META_VA) {
        size_t i = d->next;
        while (i < d->hi && !(d->keys[i].nkey == r->key.len &&
                              memcmp(d->keys[i].key, r->key.p, r->key.len) == 0)) {
            i++;
        }
        if (i == d->hi) {
            return MST_EPROTO;
        }
        for (; d->next < i; d->next++) {
            deliver(d, &d->keys[d->next], NULL);
        }
        deliver(d, &d->keys[d->next++], r);
        return 0;
    }
    if ((r->kind == REPLY_END && !r->binary) || r->kind == REPLY_MN) {
        return 1;
    }
    if (r->kind == REPLY_META_EN) {
        return 0;
    }
    if (reply_is_error(r)) {
        reply_error_status(c->m, srv, r);
        return srv_wire(c->m, srv) == WIRE_META ? 0 : 1;
    }
    return MST_EPROTO;
}

static bool fetchable(const struct dump_key *k)
{
    if (k->nkey == 0 || k->nkey > MST_KEY_MAX) {
        return false;
    }
    for (size_t i = 0; i < k->nkey; i++) {
        unsigned char ch = (unsigned char)k->key[i];
        if (!((ch >= 0x21 && ch <= 0x7e) || ch >= 0x80)) {
            return false;
        }
    }
    return true;
}

static int fetch_values(struct mst *m, size_t i, struct dump_ctx *d)
{
    struct mst_server *srv = m->servers[i];
    struct wire_req rq = {.op = WOP_GET, .multi = true, .quiet = true};
    d->next = 0;
    while (d->next < d->n && !d->stop) {
        int rc = io_begin_probe(m, srv);
        if (rc != MST_OK) {
            return rc;
        }
        enum wire_proto w = srv_wire(m, srv);
        d->lo = d->next;
        d->hi = d->lo;
        size_t asked = 0;
        if (w == WIRE_TEXT) {
            rc = buf_append(&srv->wbuf, "get", 3);
        }
        while (rc == MST_OK && d->hi < d->n && asked < DUMP_BATCH) {
            const struct dump_key *k = &d->keys[d->hi++];
            if (!fetchable(k)) {
                continue;
            }
            rq.key = k->key;
            rq.nkey = k->nkey;
            rc = wire_compose(&srv->wbuf, w, &rq, NULL);
            asked++;
        }
        if (rc == MST_OK) {
            rc = w == WIRE_TEXT ? buf_append(&srv->wbuf, "\r\n", 2)
                                : wire_compose_end(&srv->wbuf, w);
        }
        if (rc != MST_OK) {
            io_close(srv);
            srv->active = false;
            return mst_fail(m, rc, "out of memory");
        }
        if (asked == 0) {
            /* Nothing fetchable in this batch: drop the request. */
            io_close(srv);
            srv->active = false;
        } else {
            srv->pending = 1;
            struct io_call call = {m, h_values, d, false};
            io_run(&call);
            if (srv->status != MST_OK) {
                return srv->status;
            }
        }
        for (; d->next < d->hi; d->next++) {
            deliver(d, &d->keys[d->next], NULL);
        }
    }
    return MST_OK;
}

/* Runs one listing command alone on a clean connection to server i. */
static int list_items(struct mst *m, size_t i, struct dump_ctx *d, const char *cmd)
{
    struct mst_server *srv = m->servers[i];
    if (srv->owed > 0 || srv->rbuf.off < srv->rbuf.len) {
        io_close(srv); /* replies still due would be taken for the listing */
    }
    int rc = io_begin(m, srv);
    if (rc != MST_OK) {
        return rc;
    }
    if (buf_append(&srv->wbuf, cmd, strlen(cmd)) != MST_OK) {
        io_close(srv);
        srv->active = false;
        return mst_fail(m, MST_ENOMEM, "out of memory");
    }
    srv->pending = 1;
    struct io_call call = {m, h_list, d, true};
    io_run(&call);
    return srv->status;
}

MST_API int mst_dump(struct mst *m, size_t i, bool with_values, mst_dump_cb cb, void *arg)
{
    if (!m || !cb) {
        return MST_EINVAL;
    }
    m->errbuf[0] = '\0';
    if (i >= m->nservers) {
        return mst_fail(m, MST_ENOENT, "no server #%zu", i);
    }
    if (m->protocol == MST_PROTO_BINARY) {
        return mst_fail(m, MST_ENOTSUP, "dump needs the text or meta protocol");
    }
    struct dump_ctx d = {.cb = cb, .arg = arg, .server = i, .with_values = with_values};
    int rc = list_items(m, i, &d, "lru_crawler metadump all\r\n");
    if (rc == MST_OK && d.refused[0] != '\0') {
        rc = mst_fail(m, MST_ENOTSUP, "%s refuses to dump: %s", m->servers[i]->name, d.refused);
    }
    if (rc == MST_OK && d.unsupported) {
        d.unsupported = false;
        d.mgdump = true;
        rc = list_items(m, i, &d, "lru_crawler mgdump all\r\n");
        if (rc == MST_OK && d.unsupported) {
            rc = mst_fail(m, MST_ENOTSUP, "%s has no dump facility (lru_crawler metadump/mgdump)",
                          m->servers[i]->name);
        }
    }
    if (rc == MST_OK && d.err != MST_OK) {
        rc = mst_fail(m, d.err, "out of memory");
    }
    if (rc == MST_OK && with_values) {
        rc = fetch_values(m, i, &d);
    }
    for (size_t k = 0; k < d.n; k++) {
        free(d.keys[k].key);
    }
    free(d.keys);
    return rc;
}

/*
 * dump.c - the commands that list what the cache holds: "lru_crawler
 * metadump|mgdump <ids|all|hash>", "stats cachedump <class> <limit>", and
 * the rest of the "lru_crawler" family.
 *
 * metadump and mgdump stream: a dump in progress hangs off the connection
 * (c->ext->dump) and produces the next stretch of lines only when the previous
 * stretch has been written, so a dump of any size holds at most about
 * DUMP_STEP_BYTES of output at a time. The walk goes through the storage
 * engine's parts one at a time (storage_walk), each under one short lock.
 * Requests pipelined after the dump wait and are answered after its end
 * marker (memcached 1.6.18 drops them).
 *
 * memstash has no separate LRU crawler thread: expired items are reclaimed
 * by the background maintainer. "lru_crawler enable|disable" switches the
 * dump/crawl commands on and off as memcached does, and "lru_crawler crawl"
 * validates its classes and answers OK.
 */
#include "dump.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meta.h"
#include "numparse.h"
#include "server.h"
#include "storage.h"
#include "uri.h"

/* Output produced per step of a streaming dump before it waits for the writer. */
#define DUMP_STEP_BYTES ((size_t)256 * 1024)
/* memcached caps "stats cachedump" at 2 MB of output. */
#define CACHEDUMP_MAX_BYTES ((size_t)2 * 1024 * 1024)
/* memcached accepts class ids below MAX_NUMBER_OF_SLAB_CLASSES (64). */
#define DUMP_CLASS_LIMIT 64u

enum dump_kind {
    DUMP_META,
    DUMP_MG,
    DUMP_CACHE,
};

struct conn_dump {
    enum dump_kind kind;
    struct server *srv;
    bool all;
    bool classes[DUMP_CLASS_LIMIT];
    unsigned part; /* next storage part to walk */
    /* Lines of the part being walked. */
    char *buf;
    size_t len, cap;
    bool oom;
    /* stats cachedump only */
    unsigned limit; /* 0 = no limit */
    unsigned count;
};

static bool buf_reserve(struct conn_dump *d, size_t more)
{
    if (d->len + more <= d->cap) {
        return true;
    }
    size_t cap = d->cap == 0 ? 16384 : d->cap;
    while (cap < d->len + more) {
        cap *= 2;
    }
    char *nb = realloc(d->buf, cap);
    if (nb == NULL) {
        d->oom = true;
        return false;
    }
    d->buf = nb;
    d->cap = cap;
    return true;
}

static long unix_time(const struct server *srv, rel_time_t t)
{
    return (long)srv->clock.process_started + (long)t;
}

/* The walk callback: appends one item's line. Runs under a storage lock. */
static void dump_item(void *ctx, const struct item *it)
{
    struct conn_dump *d = ctx;
    unsigned cls = storage_item_class(d->srv->storage, it);
    if (!d->all && (cls >= DUMP_CLASS_LIMIT || !d->classes[cls])) {
        return;
    }
    if (d->kind == DUMP_CACHE && d->limit != 0 && d->count >= d->limit) {
        return;
    }
    const char *key = storage_item_key(it);
    size_t nkey = storage_item_nkey(it);
    rel_time_t exp = storage_item_exptime(it);
    if (!buf_reserve(d, nkey * 3 + 160)) {
        return;
    }
    char *p = d->buf + d->len;
    int n = 0;
    switch (d->kind) {
    case DUMP_META: {
        memcpy(p, "key=", 4);
        size_t k = 4 + uri_encode(key, nkey, p + 4);
        n = snprintf(p + k, d->cap - d->len - k,
                     " exp=%ld la=%ld cas=%" PRIu64 " fetch=%s cls=%u size=%zu\n",
                     exp == 0 ? -1L : unix_time(d->srv, exp),
                     unix_time(d->srv, storage_item_atime(it, clock_now(&d->srv->clock))),
                     storage_item_cas(it), storage_item_fetched(it) ? "yes" : "no", cls,
                     storage_item_total(it));
        n = n < 0 ? 0 : n + (int)k;
        break;
    }
    case DUMP_MG: {
        memcpy(p, "mg ", 3);
        size_t k = 3;
        if (storage_item_key_binary(it)) {
            k += meta_base64_encode((const unsigned char *)key, nkey, p + k);
            memcpy(p + k, " b", 2);
            k += 2;
        } else {
            memcpy(p + k, key, nkey);
            k += nkey;
        }
        memcpy(p + k, "\r\n", 2);
        n = (int)k + 2;
        break;
    }
    case DUMP_CACHE:
        if (d->len + nkey + 64 > CACHEDUMP_MAX_BYTES) {
            d->limit = d->count; /* full: stop here, as memcached does */
            return;
        }
        memcpy(p, "ITEM ", 5);
        memcpy(p + 5, key, nkey);
        n = snprintf(p + 5 + nkey, d->cap - d->len - 5 - nkey, " [%zu b; %ld s]\r\n",
                     storage_item_nbytes(it), exp == 0 ? 0L : unix_time(d->srv, exp));
        n = n < 0 ? 0 : n + 5 + (int)nkey;
        break;
    }
    d->len += (size_t)n;
    d->count++;
}

static void dump_free(struct conn_dump *d)
{
    if (d != NULL) {
        free(d->buf);
        free(d);
    }
}

void dump_release(struct conn *c)
{
    if (c->ext != NULL) {
        dump_free(c->ext->dump);
        c->ext->dump = NULL;
    }
}

void dump_continue(struct conn *c)
{
    struct conn_dump *d = c->ext != NULL ? c->ext->dump : NULL;
    if (d == NULL) {
        return;
    }
    rel_time_t now = clock_now(&d->srv->clock);
    unsigned parts = storage_walk_parts();
    size_t produced = 0;
    while (d->part < parts && produced < DUMP_STEP_BYTES && !d->oom) {
        d->len = 0;
        storage_walk(d->srv->storage, d->part++, now, dump_item, d);
        if (d->len > 0) {
            conn_out(c, d->buf, d->len);
            produced += d->len;
        }
    }
    if (d->oom) {
        conn_out_str(c, "SERVER_ERROR out of memory");
    } else if (d->part < parts) {
        return;
    } else {
        conn_out_str(c, d->kind == DUMP_MG ? "EN" : "END");
    }
    dump_release(c);
}

/* Parses "all", "hash" or a comma list of class ids into d. */
static bool parse_classes(struct conn_dump *d, const struct text_token *t)
{
    if (text_token_is(t, "all") || text_token_is(t, "hash")) {
        d->all = true;
        return true;
    }
    /* Comma-separated ids; empty fields are skipped (memcached uses strtok_r). */
    size_t i = 0;
    while (i < t->len) {
        if (t->p[i] == ',') {
            i++;
            continue;
        }
        size_t j = i;
        unsigned v = 0;
        while (j < t->len && t->p[j] >= '0' && t->p[j] <= '9' && v < 1000) {
            v = v * 10 + (unsigned)(t->p[j] - '0');
            j++;
        }
        if (j == i || (j < t->len && t->p[j] != ',') || v == 0 || v >= DUMP_CLASS_LIMIT) {
            return false;
        }
        d->classes[v] = true;
        i = j + 1;
    }
    return true;
}

static bool crawler_on(const struct server *srv)
{
    return __atomic_load_n(&srv->settings->lru_crawler, __ATOMIC_RELAXED);
}

/* "lru_crawler metadump|mgdump <classes>". */
static void start_dump(struct conn *c, enum dump_kind kind, const struct text_token *arg)
{
    struct server *srv = c->w->srv;
    if (!srv->settings->dump_enabled) {
        conn_out_str(c,
                     kind == DUMP_MG ? "ERROR key dump not allowed" : "ERROR metadump not allowed");
        return;
    }
    if (!crawler_on(srv)) {
        conn_out_str(c, "CLIENT_ERROR lru crawler disabled");
        return;
    }
    if (c->is_udp) {
        conn_out_str(c, "SERVER_ERROR dumps are not served over UDP");
        return;
    }
    struct conn_ext *x = conn_ext(c);
    struct conn_dump *d = x != NULL ? calloc(1, sizeof(*d)) : NULL;
    if (d == NULL) {
        conn_out_str(c, "SERVER_ERROR out of memory");
        return;
    }
    d->kind = kind;
    d->srv = srv;
    if (!parse_classes(d, arg)) {
        dump_free(d);
        conn_out_str(c, "BADCLASS invalid class id");
        return;
    }
    x->dump = d;
}

static bool parse_uint(const struct text_token *t, uint32_t max, uint32_t *out)
{
    uint64_t v;
    if (!num_parse_u64(t->p, t->len, &v) || v > max) {
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

void dump_lru_crawler(struct conn *c, const struct text_request *req)
{
    struct server *srv = c->w->srv;
    struct settings *s = srv->settings;
    const struct text_token *sub = req->nargs > 1 ? &req->args[1] : NULL;
    if (sub != NULL && req->nargs == 2 && !req->args_more) {
        if (text_token_is(sub, "enable")) {
            bool was = __atomic_exchange_n(&s->lru_crawler, true, __ATOMIC_RELAXED);
            conn_out_str(c, was ? "ERROR failed to start lru crawler thread" : "OK");
            return;
        }
        if (text_token_is(sub, "disable")) {
            __atomic_store_n(&s->lru_crawler, false, __ATOMIC_RELAXED);
            conn_out_str(c, "OK");
            return;
        }
    }
    if (sub == NULL || req->nargs != 3 || req->args_more) {
        conn_out_str(c, "ERROR");
        return;
    }
    const struct text_token *arg = &req->args[2];
    uint32_t v;
    if (text_token_is(sub, "metadump")) {
        start_dump(c, DUMP_META, arg);
    } else if (text_token_is(sub, "mgdump")) {
        start_dump(c, DUMP_MG, arg);
    } else if (text_token_is(sub, "crawl")) {
        struct conn_dump probe = {0};
        if (!crawler_on(srv)) {
            conn_out_str(c, "CLIENT_ERROR lru crawler disabled");
        } else if (!parse_classes(&probe, arg)) {
            conn_out_str(c, "BADCLASS invalid class id");
        } else {
            /* The background maintainer reclaims expired items continuously. */
            conn_out_str(c, "OK");
        }
    } else if (text_token_is(sub, "sleep")) {
        if (!parse_uint(arg, UINT32_MAX, &v)) {
            conn_out_str(c, "CLIENT_ERROR bad command line format");
        } else if (v > 1000000) {
            conn_out_str(c, "CLIENT_ERROR sleep must be one second or less");
        } else {
            __atomic_store_n(&s->lru_crawler_sleep, (int)v, __ATOMIC_RELAXED);
            conn_out_str(c, "OK");
        }
    } else if (text_token_is(sub, "tocrawl")) {
        if (!parse_uint(arg, UINT32_MAX, &v)) {
            conn_out_str(c, "CLIENT_ERROR bad command line format");
        } else {
            __atomic_store_n(&s->lru_crawler_tocrawl, v, __ATOMIC_RELAXED);
            conn_out_str(c, "OK");
        }
    } else {
        conn_out_str(c, "ERROR");
    }
}

void dump_cachedump(struct conn *c, const struct text_request *req)
{
    struct server *srv = c->w->srv;
    if (!srv->settings->dump_enabled) {
        conn_out_str(c, "CLIENT_ERROR stats cachedump not allowed");
        return;
    }
    if (req->nargs < 4) {
        conn_out_str(c, "CLIENT_ERROR bad command line");
        return;
    }
    uint32_t id, limit;
    if (!parse_uint(&req->args[2], UINT32_MAX, &id) ||
        !parse_uint(&req->args[3], UINT32_MAX, &limit)) {
        conn_out_str(c, "CLIENT_ERROR bad command line format");
        return;
    }
    if (id >= DUMP_CLASS_LIMIT) {
        conn_out_str(c, "CLIENT_ERROR Illegal slab id");
        return;
    }
    struct conn_dump d = {.kind = DUMP_CACHE, .srv = srv, .limit = limit};
    d.classes[id] = true;
    rel_time_t now = clock_now(&srv->clock);
    unsigned parts = storage_walk_parts();
    for (unsigned p = 0; p < parts && (d.limit == 0 || d.count < d.limit) && !d.oom; p++) {
        storage_walk(srv->storage, p, now, dump_item, &d);
    }
    if (d.oom) {
        free(d.buf);
        conn_out_str(c, "SERVER_ERROR out of memory");
        return;
    }
    if (d.len > 0) {
        conn_out(c, d.buf, d.len);
    }
    free(d.buf);
    conn_out(c, "END\r\n", 5);
}

/*
 * dist.c - modula, libmemcached ketama and python-memcached placement (see dist.h).
 */
#include "dist.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KETAMA_POINTS          100 /* MEMCACHED_POINTS_PER_SERVER */
#define KETAMA_POINTS_WEIGHTED 160 /* MEMCACHED_POINTS_PER_SERVER_KETAMA */
#define DEFAULT_PORT           11211
#define PYTHON_REHASHES        10

void dist_init(struct dist *d, const struct dist_config *cfg)
{
    memset(d, 0, sizeof(*d));
    d->cfg = *cfg;
}

void dist_deinit(struct dist *d)
{
    free(d->live);
    free(d->points);
    free(d->buckets);
    d->live = NULL;
    d->points = NULL;
    d->buckets = NULL;
    d->npoints = 0;
    d->nbuckets = 0;
    d->nservers = 0;
    d->nlive = 0;
}

static uint32_t weight_of(const struct dist_server *s)
{
    return s->weight ? s->weight : 1;
}

static int point_cmp(const void *a, const void *b)
{
    const struct dist_point *x = a, *y = b;
    if (x->value != y->value) {
        return x->value < y->value ? -1 : 1;
    }
    return x->server < y->server ? -1 : (x->server > y->server);
}

/* Writes the continuum name of point i of s; returns its length. */
static size_t point_name(char *buf, size_t cap, const struct dist_server *s, uint32_t i, bool spy)
{
    int len;
    if (spy) {
        len = snprintf(buf, cap, "/%s:%u-%u", s->host, (unsigned)s->port, i);
    } else if (s->port == DEFAULT_PORT) {
        len = snprintf(buf, cap, "%s-%u", s->host, i);
    } else {
        len = snprintf(buf, cap, "%s:%u-%u", s->host, (unsigned)s->port, i);
    }
    if (len < 0) {
        return 0;
    }
    return (size_t)len < cap ? (size_t)len : cap - 1;
}

/* Points of one server in weighted mode, in single precision as libmemcached computes them. */
static uint32_t weighted_points(uint32_t weight, uint64_t total, uint32_t live)
{
    float pct = (float)weight / (float)total;
    float t = pct * KETAMA_POINTS_WEIGHTED / 4 * (float)live;
    float f = (float)((double)t + 0.0000000001);
    return (uint32_t)floor(f) * 4;
}

static int build_ketama(struct dist *d, const struct dist_server *servers, size_t n)
{
    bool weighted = d->cfg.weighted;
    for (size_t i = 0; i < n; i++) {
        if (servers[i].weight > 1) {
            weighted = true; /* libmemcached switches on its own */
        }
    }
    uint64_t total = 0;
    size_t cap = 0;
    for (size_t i = 0; i < n; i++) {
        if (servers[i].live) {
            total += weight_of(&servers[i]);
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (!servers[i].live) {
            continue;
        }
        cap += weighted ? weighted_points(weight_of(&servers[i]), total, (uint32_t)d->nlive)
                        : KETAMA_POINTS;
    }
    if (cap == 0) {
        return 0;
    }
    d->points = malloc(cap * sizeof(*d->points));
    if (!d->points) {
        return -1;
    }
    size_t np = 0;
    char name[1100];
    for (size_t i = 0; i < n; i++) {
        const struct dist_server *s = &servers[i];
        if (!s->live) {
            continue;
        }
        if (weighted) {
            uint32_t per = weighted_points(weight_of(s), total, (uint32_t)d->nlive);
            for (uint32_t j = 0; j < per / 4; j++) {
                unsigned char md[16];
                size_t len = point_name(name, sizeof(name), s, j, d->cfg.spy);
                hash_md5_digest(name, len, md);
                for (int a = 0; a < 4; a++) {
                    const unsigned char *p = md + 4 * a;
                    d->points[np].value = (uint32_t)p[0] | (uint32_t)p[1] << 8 |
                                          (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
                    d->points[np].server = (uint32_t)i;
                    np++;
                }
            }
        } else {
            for (uint32_t j = 0; j < KETAMA_POINTS; j++) {
                size_t len = point_name(name, sizeof(name), s, j, d->cfg.spy);
                d->points[np].value = hash_key(d->cfg.hash, name, len);
                d->points[np].server = (uint32_t)i;
                np++;
            }
        }
    }
    qsort(d->points, np, sizeof(*d->points), point_cmp);
    d->npoints = np;
    return 0;
}

static int build_python(struct dist *d, const struct dist_server *servers, size_t n)
{
    size_t nb = 0;
    for (size_t i = 0; i < n; i++) {
        nb += weight_of(&servers[i]);
    }
    if (nb == 0) {
        return 0;
    }
    d->buckets = malloc(nb * sizeof(*d->buckets));
    if (!d->buckets) {
        return -1;
    }
    size_t b = 0;
    for (size_t i = 0; i < n; i++) {
        for (uint32_t w = 0; w < weight_of(&servers[i]); w++) {
            d->buckets[b++] = (uint32_t)i;
        }
    }
    d->nbuckets = nb;
    return 0;
}

int dist_build(struct dist *d, const struct dist_server *servers, size_t n)
{
    struct dist_config cfg = d->cfg;
    dist_deinit(d);
    d->cfg = cfg;
    if (n == 0) {
        return 0;
    }
    d->live = malloc(n * sizeof(*d->live));
    if (!d->live) {
        return -1;
    }
    d->nservers = n;
    for (size_t i = 0; i < n; i++) {
        d->live[i] = servers[i].live;
        d->nlive += servers[i].live;
    }
    int rc = 0;
    if (cfg.mode == DIST_KETAMA) {
        rc = build_ketama(d, servers, n);
    } else if (cfg.mode == DIST_PYTHON) {
        rc = build_python(d, servers, n);
    }
    if (rc != 0) {
        dist_deinit(d);
        d->cfg = cfg;
    }
    return rc;
}

uint32_t dist_key_hash(const struct dist *d, const char *key, size_t n)
{
    if (d->cfg.mode == DIST_PYTHON) {
        return hash_python(key, n, d->cfg.python_or_one);
    }
    return hash_key(d->cfg.hash, key, n);
}

static long lookup_ketama(const struct dist *d, uint32_t h)
{
    if (d->npoints == 0) {
        return -1;
    }
    size_t lo = 0, hi = d->npoints;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (d->points[mid].value < h) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo == d->npoints) {
        lo = 0;
    }
    return (long)d->points[lo].server;
}

static long lookup_python(const struct dist *d, uint32_t h)
{
    if (d->nbuckets == 0) {
        return -1;
    }
    for (int i = 0; i < PYTHON_REHASHES; i++) {
        uint32_t s = d->buckets[h % d->nbuckets];
        if (d->live[s]) {
            return (long)s;
        }
        /* python: h = cmemcache_hash((str(h) + str(i)).encode()) */
        char buf[32];
        int len = snprintf(buf, sizeof(buf), "%u%d", h, i);
        h = hash_python(buf, (size_t)len, d->cfg.python_or_one);
    }
    return -1;
}

long dist_lookup(const struct dist *d, const char *key, size_t n)
{
    if (d->nservers == 0) {
        return -1;
    }
    if (d->nservers == 1) {
        return d->live[0] || d->cfg.mode == DIST_MODULA ? 0 : -1;
    }
    uint32_t h = dist_key_hash(d, key, n);
    switch (d->cfg.mode) {
    case DIST_KETAMA:
        return lookup_ketama(d, h);
    case DIST_PYTHON:
        return lookup_python(d, h);
    case DIST_MODULA:
    default:
        return (long)(h % d->nservers);
    }
}

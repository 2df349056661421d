/*
 * prefix_stats.c - per-prefix counters for "stats detail" (see prefix_stats.h).
 */
#include "prefix_stats.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#define PREFIX_BUCKETS 256
#define PREFIX_MAX     65536 /* memcached's cap on distinct prefixes */

struct prefix {
    struct prefix *hnext; /* bucket chain */
    struct prefix *next;  /* first-seen order, for dumps */
    uint64_t gets, hits, sets, deletes;
    size_t len;
    char name[];
};

struct prefix_stats {
    pthread_mutex_t lock;
    char delimiter;
    size_t count;
    struct prefix *buckets[PREFIX_BUCKETS];
    struct prefix *first, *last;
};

struct prefix_stats *prefix_stats_create(char delimiter)
{
    struct prefix_stats *ps = calloc(1, sizeof(*ps));
    if (ps == NULL) {
        return NULL;
    }
    pthread_mutex_init(&ps->lock, NULL);
    ps->delimiter = delimiter;
    return ps;
}

void prefix_stats_destroy(struct prefix_stats **psp)
{
    struct prefix_stats *ps = *psp;
    if (ps == NULL) {
        return;
    }
    struct prefix *p = ps->first;
    while (p != NULL) {
        struct prefix *next = p->next;
        free(p);
        p = next;
    }
    pthread_mutex_destroy(&ps->lock);
    free(ps);
    *psp = NULL;
}

/* Finds or adds the key's prefix; the caller holds the lock. NULL when the
 * key has no delimiter or the table is full. */
static struct prefix *find_locked(struct prefix_stats *ps, const char *key, size_t nkey)
{
    const char *d = memchr(key, ps->delimiter, nkey);
    if (d == NULL) {
        return NULL;
    }
    size_t len = (size_t)(d - key);
    unsigned b = (unsigned)(XXH3_64bits(key, len) % PREFIX_BUCKETS);
    for (struct prefix *p = ps->buckets[b]; p != NULL; p = p->hnext) {
        if (p->len == len && memcmp(p->name, key, len) == 0) {
            return p;
        }
    }
    if (ps->count >= PREFIX_MAX) {
        return NULL;
    }
    struct prefix *p = calloc(1, sizeof(*p) + len + 1);
    if (p == NULL) {
        return NULL;
    }
    memcpy(p->name, key, len);
    p->len = len;
    p->hnext = ps->buckets[b];
    ps->buckets[b] = p;
    if (ps->last != NULL) {
        ps->last->next = p;
    } else {
        ps->first = p;
    }
    ps->last = p;
    ps->count++;
    return p;
}

void prefix_stats_record_get(struct prefix_stats *ps, const char *key, size_t nkey, bool hit)
{
    pthread_mutex_lock(&ps->lock);
    struct prefix *p = find_locked(ps, key, nkey);
    if (p != NULL) {
        p->gets++;
        p->hits += hit ? 1 : 0;
    }
    pthread_mutex_unlock(&ps->lock);
}

void prefix_stats_record_set(struct prefix_stats *ps, const char *key, size_t nkey)
{
    pthread_mutex_lock(&ps->lock);
    struct prefix *p = find_locked(ps, key, nkey);
    if (p != NULL) {
        p->sets++;
    }
    pthread_mutex_unlock(&ps->lock);
}

void prefix_stats_record_delete(struct prefix_stats *ps, const char *key, size_t nkey)
{
    pthread_mutex_lock(&ps->lock);
    struct prefix *p = find_locked(ps, key, nkey);
    if (p != NULL) {
        p->deletes++;
    }
    pthread_mutex_unlock(&ps->lock);
}

void prefix_stats_dump(struct prefix_stats *ps, void (*line)(void *ctx, const char *text),
                       void *ctx)
{
    char buf[400];
    pthread_mutex_lock(&ps->lock);
    for (const struct prefix *p = ps->first; p != NULL; p = p->next) {
        snprintf(buf, sizeof(buf),
                 "PREFIX %s get %" PRIu64 " hit %" PRIu64 " set %" PRIu64 " del %" PRIu64, p->name,
                 p->gets, p->hits, p->sets, p->deletes);
        line(ctx, buf);
    }
    pthread_mutex_unlock(&ps->lock);
}

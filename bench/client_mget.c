/*
 * client_mget.c - get_multi of N keys (default 100) over a pool of servers:
 * libmemstash's mst_get_multi() against libmemcached's memcached_mget() +
 * memcached_fetch_result() doing the same, as keys per second.
 *
 * A benchmark, not a test (not run by make test): it asserts only that both
 * clients fetch every key. Variants run in alternating rounds (the order
 * rotates every round so drift falls on all of them); each round times
 * ITERS multi-gets per variant; the report gives each variant's median
 * keys/s and the ratios against libmemcached's default (text protocol).
 * Both clients use ketama placement with TCP_NODELAY, one connection per
 * server, and are warmed up before timing.
 *
 *   client_mget SERVERS [ROUNDS [ITERS [NKEYS [VALUE_SIZE]]]]
 *   e.g. client_mget 127.0.0.1:22201,127.0.0.1:22202,127.0.0.1:22203 7 2000 100 100
 *
 * Build and run with bench/client_mget.sh, which starts three memstashd.
 */
#include <libmemcached/memcached.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "memstash/memstash.h"

#define MAX_VARIANTS 8
#define MAX_ROUNDS   101

struct variant {
    const char *name;
    struct mst *mst;         /* libmemstash variant, or */
    memcached_st *memc;      /* libmemcached variant */
    memcached_result_st res; /* reused by memcached_fetch_result */
    double keys_per_sec[MAX_ROUNDS];
};

static char **keys;
static size_t *nkeys;
static size_t nk;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct count {
    size_t hits;
    size_t bytes;
};

static int on_item(void *arg, const char *key, size_t nkey, const char *data, size_t len,
                   uint32_t flags, uint64_t cas)
{
    (void)key;
    (void)nkey;
    (void)flags;
    (void)cas;
    struct count *c = arg;
    c->hits++;
    c->bytes += len + (len ? (unsigned char)data[0] : 0);
    return 0;
}

/* One multi-get of all keys; returns the hits. */
static size_t mget_once(struct variant *v)
{
    struct count c = {0, 0};
    if (v->mst) {
        int rc = mst_get_multi(v->mst, (const char *const *)keys, nkeys, nk, false, on_item, &c);
        if (rc != MST_OK) {
            fprintf(stderr, "%s: %s (%s)\n", v->name, mst_strerror(rc), mst_last_error(v->mst));
            exit(1);
        }
        return c.hits;
    }
    memcached_return_t rc = memcached_mget(v->memc, (const char *const *)keys, nkeys, nk);
    if (rc != MEMCACHED_SUCCESS) {
        fprintf(stderr, "%s: %s\n", v->name, memcached_strerror(v->memc, rc));
        exit(1);
    }
    memcached_result_st *r;
    while ((r = memcached_fetch_result(v->memc, &v->res, &rc)) != NULL) {
        size_t len = memcached_result_length(r);
        const char *data = memcached_result_value(r);
        c.hits++;
        c.bytes += len + (len ? (unsigned char)data[0] : 0);
    }
    if (rc != MEMCACHED_END && rc != MEMCACHED_SUCCESS && rc != MEMCACHED_NOTFOUND) {
        fprintf(stderr, "%s: fetch: %s\n", v->name, memcached_strerror(v->memc, rc));
        exit(1);
    }
    return c.hits;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *xs, int n)
{
    double s[MAX_ROUNDS];
    memcpy(s, xs, (size_t)n * sizeof(double));
    qsort(s, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static struct mst *make_mst(const char *servers, enum mst_protocol p)
{
    struct mst *m;
    if (mst_create(&m) != MST_OK || mst_server_add(m, servers) != MST_OK ||
        mst_set_protocol(m, p) != MST_OK) {
        fprintf(stderr, "libmemstash: bad server list %s\n", servers);
        exit(2);
    }
    return m;
}

static memcached_st *make_memc(const char *servers, bool binary)
{
    memcached_st *memc = memcached_create(NULL);
    memcached_server_st *list = memcached_servers_parse(servers);
    if (!memc || !list || memcached_server_push(memc, list) != MEMCACHED_SUCCESS) {
        fprintf(stderr, "libmemcached: bad server list %s\n", servers);
        exit(2);
    }
    memcached_server_list_free(list);
    memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_KETAMA, 1);
    memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
    if (binary) {
        memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1);
    }
    return memc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s SERVERS [ROUNDS [ITERS [NKEYS [VALUE_SIZE]]]]\n", argv[0]);
        return 2;
    }
    const char *servers = argv[1];
    int rounds = argc > 2 ? atoi(argv[2]) : 7;
    int iters = argc > 3 ? atoi(argv[3]) : 2000;
    nk = argc > 4 ? (size_t)atol(argv[4]) : 100;
    size_t vsize = argc > 5 ? (size_t)atol(argv[5]) : 100;
    if (rounds < 1 || rounds > MAX_ROUNDS || iters < 1 || nk < 1) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }

    keys = calloc(nk, sizeof(*keys));
    nkeys = calloc(nk, sizeof(*nkeys));
    char *value = malloc(vsize ? vsize : 1);
    memset(value, 'v', vsize);
    for (size_t i = 0; i < nk; i++) {
        keys[i] = malloc(48);
        nkeys[i] = (size_t)snprintf(keys[i], 48, "client_mget:key:%06zu", i);
    }

    struct variant vs[MAX_VARIANTS];
    memset(vs, 0, sizeof(vs));
    int nv = 0;
    vs[nv].name = "libmemcached mget (text)";
    vs[nv++].memc = make_memc(servers, false);
    vs[nv].name = "libmemcached mget (binary)";
    vs[nv++].memc = make_memc(servers, true);
    vs[nv].name = "libmemstash get_multi (default: meta)";
    vs[nv++].mst = make_mst(servers, MST_PROTO_META);
    vs[nv].name = "libmemstash get_multi (text)";
    vs[nv++].mst = make_mst(servers, MST_PROTO_TEXT);
    vs[nv].name = "libmemstash get_multi (binary)";
    vs[nv++].mst = make_mst(servers, MST_PROTO_BINARY);
    for (int v = 0; v < nv; v++) {
        if (vs[v].memc && !memcached_result_create(vs[v].memc, &vs[v].res)) {
            return 1;
        }
    }

    /* Store the keys, then check every variant sees all of them. */
    for (size_t i = 0; i < nk; i++) {
        enum mst_outcome out;
        int rc = mst_set(vs[2].mst, keys[i], nkeys[i], value, vsize, 0, 0, &out);
        if (rc != MST_OK || out != MST_STORED) {
            fprintf(stderr, "set %s: %s (%s)\n", keys[i], mst_strerror(rc),
                    mst_last_error(vs[2].mst));
            return 1;
        }
    }
    for (int v = 0; v < nv; v++) {
        for (int w = 0; w < 200; w++) {
            size_t hits = mget_once(&vs[v]);
            if (hits != nk) {
                fprintf(stderr, "%s: %zu of %zu keys\n", vs[v].name, hits, nk);
                return 1;
            }
        }
    }

    printf("get_multi of %zu keys (%zu-byte values) over %s\n", nk, vsize, servers);
    printf("%d rounds x %d multi-gets per variant, rotating order\n\n", rounds, iters);
    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < nv; k++) {
            struct variant *v = &vs[(r + k) % nv];
            double t0 = now();
            for (int i = 0; i < iters; i++) {
                mget_once(v);
            }
            double dt = now() - t0;
            v->keys_per_sec[r] = (double)nk * iters / dt;
        }
        printf("round %d:", r + 1);
        for (int v = 0; v < nv; v++) {
            printf("  %.0f", vs[v].keys_per_sec[r]);
        }
        printf("  keys/s\n");
    }
    double base = median(vs[0].keys_per_sec, rounds);
    printf("\n%-40s %14s %10s\n", "variant", "median keys/s", "vs mget");
    for (int v = 0; v < nv; v++) {
        double m = median(vs[v].keys_per_sec, rounds);
        printf("%-40s %14.0f %9.2fx\n", vs[v].name, m, m / base);
    }
    double headline = median(vs[2].keys_per_sec, rounds) / base;
    double text = median(vs[3].keys_per_sec, rounds) / base;
    printf("\nratio libmemstash get_multi / libmemcached memcached_mget (keys/s, medians): "
           "%.2fx (default protocols: meta vs text), %.2fx (both text)\n",
           headline, text);

    for (int v = 0; v < nv; v++) {
        if (vs[v].mst) {
            mst_destroy(&vs[v].mst);
        } else {
            memcached_result_free(&vs[v].res);
            memcached_free(vs[v].memc);
        }
    }
    for (size_t i = 0; i < nk; i++) {
        free(keys[i]);
    }
    free(keys);
    free(nkeys);
    free(value);
    return 0;
}

/*
 * bench.c - `memstash bench` (see bench.h).
 *
 * Latencies go into a log-linear histogram per thread (16 sub-buckets per
 * power of two: under 7% error), merged at the end. Counters are relaxed
 * atomics that the main thread reads for the progress line.
 */
#include "bench.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "memstash/memstash.h"

#include "hist.h"
#include "rng.h"

#define KEY_MAX 32

struct shared {
    const struct bench_opts *o;
    const double *cdf; /* Zipf CDF over the key space, NULL for uniform */
    char *value;
    atomic_bool stop;
    atomic_uint_fast64_t claimed; /* operations handed out (for --count) */
};

struct worker {
    struct shared *sh;
    struct mst *m;
    pthread_t tid;
    uint64_t rng;
    struct hist hist;
    atomic_uint_fast64_t ops, keys, gets, hits, sets, errors;
    int last_error;
    uint64_t end_ns; /* when the thread stopped */
};

static double rand_unit(uint64_t *s)
{
    return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

static uint64_t pick_key(struct worker *w)
{
    const struct shared *sh = w->sh;
    uint64_t n = sh->o->keys;
    if (!sh->cdf) {
        return rng_next(&w->rng) % n;
    }
    double u = rand_unit(&w->rng);
    uint64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (sh->cdf[mid] < u) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static size_t key_name(char *buf, uint64_t k)
{
    return (size_t)snprintf(buf, KEY_MAX, "bench:%08llu", (unsigned long long)k);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct hits {
    uint64_t n;
};

static int count_hit(void *arg, const char *key, size_t nkey, const char *data, size_t len,
                     uint32_t flags, uint64_t cas)
{
    (void)key;
    (void)nkey;
    (void)data;
    (void)len;
    (void)flags;
    (void)cas;
    ((struct hits *)arg)->n++;
    return 0;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct shared *sh = w->sh;
    const struct bench_opts *o = sh->o;
    unsigned multi = o->multi ? o->multi : 1;
    char(*names)[KEY_MAX] = calloc(multi, KEY_MAX);
    const char **keys = calloc(multi, sizeof(*keys));
    size_t *nkeys = calloc(multi, sizeof(*nkeys));
    if (!names || !keys || !nkeys) {
        atomic_fetch_add_explicit(&w->errors, 1, memory_order_relaxed);
        free(names);
        free(keys);
        free(nkeys);
        return NULL;
    }
    unsigned total_weight = o->get_weight + o->set_weight;
    while (!atomic_load_explicit(&sh->stop, memory_order_relaxed)) {
        if (o->count &&
            atomic_fetch_add_explicit(&sh->claimed, 1, memory_order_relaxed) >= o->count) {
            break;
        }
        bool is_get = (unsigned)(rng_next(&w->rng) % total_weight) < o->get_weight;
        int rc;
        uint64_t t0 = now_ns();
        if (is_get && multi > 1) {
            for (unsigned i = 0; i < multi; i++) {
                nkeys[i] = key_name(names[i], pick_key(w));
                keys[i] = names[i];
            }
            struct hits h = {0};
            rc = mst_get_multi(w->m, keys, nkeys, multi, false, count_hit, &h);
            if (rc == MST_OK) {
                atomic_fetch_add_explicit(&w->hits, h.n, memory_order_relaxed);
            }
            atomic_fetch_add_explicit(&w->keys, multi, memory_order_relaxed);
            atomic_fetch_add_explicit(&w->gets, multi, memory_order_relaxed);
        } else if (is_get) {
            size_t n = key_name(names[0], pick_key(w));
            struct mst_value v;
            enum mst_outcome out;
            rc = mst_get(w->m, names[0], n, &v, &out);
            if (rc == MST_OK && out == MST_HIT) {
                atomic_fetch_add_explicit(&w->hits, 1, memory_order_relaxed);
            }
            mst_value_clear(&v);
            atomic_fetch_add_explicit(&w->keys, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&w->gets, 1, memory_order_relaxed);
        } else {
            size_t n = key_name(names[0], pick_key(w));
            rc = mst_set(w->m, names[0], n, sh->value, o->value_size, 0, 0, NULL);
            atomic_fetch_add_explicit(&w->keys, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&w->sets, 1, memory_order_relaxed);
        }
        hist_add(&w->hist, now_ns() - t0);
        if (rc != MST_OK) {
            w->last_error = rc;
            atomic_fetch_add_explicit(&w->errors, 1, memory_order_relaxed);
        }
        atomic_fetch_add_explicit(&w->ops, 1, memory_order_relaxed);
    }
    w->end_ns = now_ns();
    free(names);
    free(keys);
    free(nkeys);
    return NULL;
}

void bench_defaults(struct bench_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->seconds = 10;
    o->get_weight = 9;
    o->set_weight = 1;
    o->multi = 1;
    o->value_size = 100;
    o->connections = 4;
    o->keys = 10000;
    o->prefill = true;
    o->pipeline = 1;
    o->key_size = 32;
}

bool bench_parse_ratio(const char *s, unsigned *get, unsigned *set)
{
    char *end;
    unsigned long g = strtoul(s, &end, 10);
    if (end == s || *end != ':') {
        return false;
    }
    const char *p = end + 1;
    unsigned long st = strtoul(p, &end, 10);
    if (end == p || *end || g > 1000000 || st > 1000000 || g + st == 0) {
        return false;
    }
    *get = (unsigned)g;
    *set = (unsigned)st;
    return true;
}

static double *zipf_cdf(uint64_t n, double s)
{
    double *cdf = malloc(n * sizeof(*cdf));
    if (!cdf) {
        return NULL;
    }
    double sum = 0;
    for (uint64_t i = 0; i < n; i++) {
        sum += 1.0 / pow((double)(i + 1), s);
        cdf[i] = sum;
    }
    for (uint64_t i = 0; i < n; i++) {
        cdf[i] /= sum;
    }
    cdf[n - 1] = 1.0;
    return cdf;
}

/* Stores every key once (noreply, so it is quick); returns a failure or MST_OK. */
static int prefill(struct mst *m, const struct bench_opts *o, const char *value)
{
    mst_set_noreply(m, true);
    int rc = MST_OK;
    for (uint64_t k = 0; k < o->keys && rc == MST_OK; k++) {
        char name[KEY_MAX];
        size_t n = key_name(name, k);
        rc = mst_set(m, name, n, value, o->value_size, 0, 0, NULL);
    }
    mst_set_noreply(m, false);
    /* A round trip, so every quiet store has landed before the clock starts. */
    char ver[64];
    for (size_t i = 0; rc == MST_OK && i < mst_server_count(m); i++) {
        rc = mst_version(m, i, ver, sizeof(ver));
    }
    return rc;
}

struct totals {
    uint64_t ops, keys, gets, hits, sets, errors;
};

static void sum_up(struct worker *ws, unsigned n, struct totals *t)
{
    memset(t, 0, sizeof(*t));
    for (unsigned i = 0; i < n; i++) {
        t->ops += atomic_load_explicit(&ws[i].ops, memory_order_relaxed);
        t->keys += atomic_load_explicit(&ws[i].keys, memory_order_relaxed);
        t->gets += atomic_load_explicit(&ws[i].gets, memory_order_relaxed);
        t->hits += atomic_load_explicit(&ws[i].hits, memory_order_relaxed);
        t->sets += atomic_load_explicit(&ws[i].sets, memory_order_relaxed);
        t->errors += atomic_load_explicit(&ws[i].errors, memory_order_relaxed);
    }
}

static void progress(const struct totals *t, double secs, uint64_t last_ops, double dt, bool tty)
{
    double rate = dt > 0 ? (double)(t->ops - last_ops) / dt : 0;
    double hit = t->gets ? 100.0 * (double)t->hits / (double)t->gets : 0;
    fprintf(stderr, "%s[%6.1fs] %12llu ops %11.0f ops/s  hits %5.1f%%  errors %llu%s",
            tty ? "\r" : "", secs, (unsigned long long)t->ops, rate, hit,
            (unsigned long long)t->errors, tty ? "   " : "\n");
    fflush(stderr);
}

static void report(const struct bench_opts *o, const struct totals *t, const struct hist *h,
                   double secs, int last_error)
{
    double ops_s = secs > 0 ? (double)t->ops / secs : 0;
    double keys_s = secs > 0 ? (double)t->keys / secs : 0;
    double hit = t->gets ? 100.0 * (double)t->hits / (double)t->gets : 0;
    static const double qs[] = {0.5, 0.9, 0.99, 0.999};
    static const char *qn[] = {"p50", "p90", "p99", "p99.9"};
    if (o->json) {
        printf("{\"seconds\": %.3f, \"connections\": %u, \"ops\": %llu, \"ops_per_sec\": %.1f, "
               "\"keys_per_sec\": %.1f, \"gets\": %llu, \"hits\": %llu, \"sets\": %llu, "
               "\"errors\": %llu, \"latency_us\": {",
               secs, o->connections, (unsigned long long)t->ops, ops_s, keys_s,
               (unsigned long long)t->gets, (unsigned long long)t->hits,
               (unsigned long long)t->sets, (unsigned long long)t->errors);
        for (size_t i = 0; i < 4; i++) {
            printf("\"%s\": %.1f, ", qn[i], (double)hist_quantile(h, qs[i]) / 1e3);
        }
        printf("\"max\": %.1f}, \"histogram_us\": [", (double)h->max / 1e3);
        bool first = true;
        for (unsigned b = 0; b < NBUCKETS; b++) {
            if (h->n[b]) {
                printf("%s[%.3f, %llu]", first ? "" : ", ", (double)bucket_top(b) / 1e3,
                       (unsigned long long)h->n[b]);
                first = false;
            }
        }
        printf("]}\n");
        return;
    }
    printf("bench: %u connections, get:set %u:%u, multi-get %u, value %zu B, %llu keys (%s",
           o->connections, o->get_weight, o->set_weight, o->multi, o->value_size,
           (unsigned long long)o->keys, o->zipf > 0 ? "zipf " : "uniform");
    if (o->zipf > 0) {
        printf("%.2f", o->zipf);
    }
    printf("), %.1f s\n", secs);
    printf("ops:       %llu  (%.0f ops/s)\n", (unsigned long long)t->ops, ops_s);
    printf("keys:      %llu  (%.0f keys/s)\n", (unsigned long long)t->keys, keys_s);
    printf("gets:      %llu keys, %llu hits (%.1f%%)\n", (unsigned long long)t->gets,
           (unsigned long long)t->hits, hit);
    printf("sets:      %llu\n", (unsigned long long)t->sets);
    printf("errors:    %llu%s%s\n", (unsigned long long)t->errors, t->errors ? "  last: " : "",
           t->errors ? mst_strerror(last_error) : "");
    printf("latency:  ");
    for (size_t i = 0; i < 4; i++) {
        printf(" %s %.1f us ", qn[i], (double)hist_quantile(h, qs[i]) / 1e3);
    }
    printf(" max %.1f us\n", (double)h->max / 1e3);
    /* The histogram by powers of two, in microseconds. */
    uint64_t total = hist_total(h);
    uint64_t peak = 0;
    uint64_t pow2[64] = {0};
    for (unsigned b = 0; b < NBUCKETS; b++) {
        if (h->n[b]) {
            uint64_t top_us = bucket_top(b) / 1000;
            unsigned p = top_us ? 64u - (unsigned)__builtin_clzll(top_us) : 0;
            pow2[p] += h->n[b];
        }
    }
    for (unsigned p = 0; p < 64; p++) {
        peak = pow2[p] > peak ? pow2[p] : peak;
    }
    printf("histogram:\n");
    uint64_t cum = 0;
    for (unsigned p = 0; p < 64 && total; p++) {
        if (!pow2[p]) {
            continue;
        }
        cum += pow2[p];
        int bar = peak ? (int)(40 * pow2[p] / peak) : 0;
        printf("  < %8llu us %10llu %6.2f%% %6.2f%% |%.*s\n", (unsigned long long)1 << p,
               (unsigned long long)pow2[p], 100.0 * (double)pow2[p] / (double)total,
               100.0 * (double)cum / (double)total, bar,
               "########################################");
    }
}

int bench_run(const struct mst *tmpl, const struct bench_opts *o)
{
    if (o->keys == 0 || o->connections == 0 || o->get_weight + o->set_weight == 0) {
        return 2;
    }
    struct shared sh;
    memset(&sh, 0, sizeof(sh));
    sh.o = o;
    atomic_init(&sh.stop, false);
    atomic_init(&sh.claimed, 0);
    sh.value = malloc(o->value_size ? o->value_size : 1);
    double *cdf = o->zipf > 0 ? zipf_cdf(o->keys, o->zipf) : NULL;
    struct worker *ws = calloc(o->connections, sizeof(*ws));
    if (!sh.value || (o->zipf > 0 && !cdf) || !ws) {
        fprintf(stderr, "memstash: bench: out of memory\n");
        free(sh.value);
        free(cdf);
        free(ws);
        return 3;
    }
    memset(sh.value, 'x', o->value_size);
    sh.cdf = cdf;
    int code = 0;
    struct mst *fill = NULL;
    if (o->prefill && o->get_weight > 0) {
        if (mst_clone(tmpl, &fill) != MST_OK) {
            code = 3;
        } else {
            int rc = prefill(fill, o, sh.value);
            if (rc != MST_OK) {
                fprintf(stderr, "memstash: bench: prefill: %s (%s)\n", mst_strerror(rc),
                        mst_last_error(fill));
                code = 3;
            }
            mst_destroy(&fill);
        }
    }
    unsigned started = 0;
    uint64_t seed = now_ns();
    uint64_t t0 = now_ns();
    for (unsigned i = 0; i < o->connections && code == 0; i++) {
        struct worker *w = &ws[i];
        w->sh = &sh;
        w->rng = (seed ^ (0x9e3779b97f4a7c15ull * (i + 1))) | 1;
        if (mst_clone(tmpl, &w->m) != MST_OK) {
            code = 3;
            break;
        }
        if (pthread_create(&w->tid, NULL, worker_main, w) != 0) {
            mst_destroy(&w->m);
            code = 3;
            break;
        }
        started++;
    }
    bool tty = isatty(STDERR_FILENO);
    uint64_t last_ops = 0;
    double last_t = 0;
    struct totals t;
    while (code == 0) {
        struct timespec nap = {0, 10 * 1000000L};
        nanosleep(&nap, NULL);
        double secs = (double)(now_ns() - t0) / 1e9;
        sum_up(ws, started, &t);
        bool done = (o->seconds > 0 && secs >= o->seconds) || (o->count && t.ops >= o->count);
        if (secs - last_t >= 1.0 || done) {
            progress(&t, secs, last_ops, secs - last_t, tty);
            last_ops = t.ops;
            last_t = secs;
        }
        if (done) {
            break;
        }
    }
    atomic_store(&sh.stop, true);
    for (unsigned i = 0; i < started; i++) {
        pthread_join(ws[i].tid, NULL);
    }
    uint64_t end = t0;
    for (unsigned i = 0; i < started; i++) {
        end = ws[i].end_ns > end ? ws[i].end_ns : end;
    }
    double secs = (double)(end - t0) / 1e9;
    if (tty && code == 0) {
        fputc('\n', stderr);
    }
    struct hist *all = calloc(1, sizeof(*all));
    int last_error = MST_OK;
    for (unsigned i = 0; i < started && all; i++) {
        for (unsigned b = 0; b < NBUCKETS; b++) {
            all->n[b] += ws[i].hist.n[b];
        }
        if (ws[i].hist.max > all->max) {
            all->max = ws[i].hist.max;
        }
        if (ws[i].last_error != MST_OK) {
            last_error = ws[i].last_error;
        }
        mst_destroy(&ws[i].m);
    }
    if (code == 0 && all) {
        sum_up(ws, started, &t);
        report(o, &t, all, secs, last_error);
        if (t.errors || t.ops == 0) {
            code = 3;
        }
    }
    free(all);
    free(ws);
    free(cdf);
    free(sh.value);
    return code;
}

/*
 * storage_stress.c - many threads against one storage engine, for
 * ThreadSanitizer (make tsan) and as a short smoke run in every tree.
 *
 * N threads run get, get-touch, set, add, replace, cas, append, prepend,
 * delete, incr/decr, flush and the meta calls on a small, overlapping key
 * set, against a cache small enough to evict and a hash table small enough to
 * grow, while one more thread runs storage_maintain() and advances the clock.
 *
 * Every value read back is checked. A value is a run of segments, each
 * "LLLL" (body length, 4 digits), the body, and the 8-hex FNV-1a checksum of
 * key + body; the body names the key, the writing thread and a sequence
 * number. set writes one segment, append/prepend add one, so any value
 * assembled from whole writes parses; a torn or mixed-up value does not.
 * Counter keys hold decimal numbers only.
 *
 * Usage: storage_stress [threads [ops_per_thread [seconds]]]
 * Exits 0 when every check passed, 1 otherwise.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "storage.h"

#define NKEYS      48
#define NCOUNTERS  8
#define MAXVAL     6000
#define MAXTHREADS 64

struct shared {
    struct storage *st;
    rel_time_t now; /* advanced by the maintainer; __atomic access */
    int stop;       /* __atomic access */
    double deadline;
    uint64_t errors, verified, ops, flushes, maint_rounds;
};

struct worker {
    struct shared *sh;
    int id;
    long ops;
    uint64_t rng;
};

static double mono_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static uint32_t fnv1a(const char *a, size_t na, const char *b, size_t nb)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < na; i++) {
        h = (h ^ (uint8_t)a[i]) * 16777619u;
    }
    for (size_t i = 0; i < nb; i++) {
        h = (h ^ (uint8_t)b[i]) * 16777619u;
    }
    return h;
}

static rel_time_t now_of(struct shared *sh)
{
    return __atomic_load_n(&sh->now, __ATOMIC_RELAXED);
}

static void fail(struct shared *sh, const char *what, const char *key)
{
    if (__atomic_fetch_add(&sh->errors, 1, __ATOMIC_RELAXED) < 20) {
        fprintf(stderr, "storage_stress: %s (key %s)\n", what, key);
    }
}

/* Writes one segment for key into dst (room for it assumed); returns its length. */
static size_t make_segment(char *dst, const char *key, int thread, uint64_t seq, size_t pad)
{
    char body[MAXVAL];
    int n = snprintf(body, sizeof(body), "%s|t%d|s%" PRIu64 "|", key, thread, seq);
    for (size_t i = 0; i < pad; i++) {
        body[n + (int)i] = (char)('a' + (seq + i) % 26);
    }
    size_t blen = (size_t)n + pad;
    uint32_t h = fnv1a(key, strlen(key), body, blen);
    sprintf(dst, "%04zu", blen);
    memcpy(dst + 4, body, blen);
    sprintf(dst + 4 + blen, "%08" PRIx32, h);
    return 4 + blen + 8;
}

/* Checks that v[0..n) is a run of whole segments written for key. */
static bool value_ok(const char *key, const char *v, size_t n)
{
    size_t nkey = strlen(key);
    size_t off = 0;
    while (off < n) {
        if (n - off < 12) {
            return false;
        }
        size_t blen = 0;
        for (int i = 0; i < 4; i++) {
            char ch = v[off + (size_t)i];
            if (ch < '0' || ch > '9') {
                return false;
            }
            blen = blen * 10 + (size_t)(ch - '0');
        }
        if (n - off < 12 + blen) {
            return false;
        }
        const char *body = v + off + 4;
        if (blen <= nkey || memcmp(body, key, nkey) != 0 || body[nkey] != '|') {
            return false;
        }
        char hex[9];
        memcpy(hex, body + blen, 8);
        hex[8] = '\0';
        char *end = NULL;
        unsigned long h = strtoul(hex, &end, 16);
        if (end != hex + 8 || (uint32_t)h != fnv1a(key, nkey, body, blen)) {
            return false;
        }
        off += 12 + blen;
    }
    return true;
}

static void check_item(struct shared *sh, const char *key, struct item *it)
{
    size_t n = storage_item_nbytes(it);
    const char *v = storage_item_value(it);
    if (storage_item_nkey(it) != strlen(key) || memcmp(storage_item_key(it), key, strlen(key))) {
        fail(sh, "item carries another key", key);
    } else if (!value_ok(key, v, n)) {
        fail(sh, "value does not verify", key);
    } else {
        __atomic_fetch_add(&sh->verified, 1, __ATOMIC_RELAXED);
    }
}

static void check_counter(struct shared *sh, const char *key, struct item *it)
{
    size_t n = storage_item_nbytes(it);
    const char *v = storage_item_value(it);
    size_t i = 0;
    while (i < n && v[i] >= '0' && v[i] <= '9') {
        i++;
    }
    while (i < n && v[i] == ' ') {
        i++; /* incr pads a shorter number in place */
    }
    if (n == 0 || i != n || v[0] == ' ') {
        fail(sh, "counter is not a number", key);
    } else {
        __atomic_fetch_add(&sh->verified, 1, __ATOMIC_RELAXED);
    }
}

static void do_store(struct worker *w, const char *key, enum storage_op op, uint64_t cas_in)
{
    struct shared *sh = w->sh;
    char val[MAXVAL + 64];
    size_t pad = rnd(&w->rng) % 4 == 0 ? rnd(&w->rng) % 4000 : rnd(&w->rng) % 64;
    size_t n = make_segment(val, key, w->id, (uint64_t)w->ops, pad);
    struct item *it = NULL;
    size_t nkey = strlen(key);
    rel_time_t now = now_of(sh);
    rel_time_t exp = rnd(&w->rng) % 8 == 0 ? now + 1 + (rel_time_t)(rnd(&w->rng) % 3) : 0;
    int rc = storage_alloc(sh->st, key, nkey, (uint32_t)w->id, exp, n, now, &it);
    if (rc != 0) {
        if (rc != STORAGE_ENOMEM) {
            fail(sh, "storage_alloc failed", key);
        }
        return;
    }
    memcpy(storage_item_value(it), val, n);
    enum storage_store_outcome out;
    rc = storage_store(sh->st, it, op, cas_in, storage_hash(key, nkey), now, &out, NULL);
    if (rc != 0 && rc != STORAGE_ENOMEM && rc != STORAGE_E2BIG) {
        fail(sh, "storage_store failed", key);
    }
    storage_release(sh->st, &it);
}

static void one_op(struct worker *w)
{
    struct shared *sh = w->sh;
    char key[32];
    uint64_t r = rnd(&w->rng);
    bool counter = r % 5 == 0;
    if (counter) {
        snprintf(key, sizeof(key), "cnt%u", (unsigned)((r >> 8) % NCOUNTERS));
    } else {
        snprintf(key, sizeof(key), "key%u", (unsigned)((r >> 8) % NKEYS));
    }
    size_t nkey = strlen(key);
    uint64_t hv = storage_hash(key, nkey);
    rel_time_t now = now_of(sh);
    unsigned pick = (unsigned)((r >> 20) % 100);

    if (counter) {
        if (pick < 60) {
            struct storage_arith a = {.incr = pick % 2 == 0,
                                      .delta = 1 + (r >> 40) % 1000,
                                      .create = true,
                                      .initial = (r >> 32) % 100000};
            enum storage_arith_outcome out;
            uint64_t v = 0;
            int rc = storage_arith(sh->st, key, nkey, hv, &a, now, &out, &v, NULL, NULL);
            if (rc == 0 && out == STORAGE_ARITH_NON_NUMERIC) {
                fail(sh, "counter became non-numeric", key);
            }
        } else if (pick < 70) {
            struct storage_marith_opts o = {
                .a = {.incr = true, .delta = 7, .create = true}, .touch = true, .touch_ttl = 0};
            struct storage_marith_result res;
            storage_meta_arith(sh->st, key, nkey, hv, now, &o, &res);
        } else if (pick < 75) {
            bool found, mismatch;
            storage_delete(sh->st, key, nkey, hv, 0, now, &found, &mismatch, NULL);
        } else {
            struct item *it = storage_get(sh->st, key, nkey, hv, now, NULL);
            if (it != NULL) {
                check_counter(sh, key, it);
                storage_release(sh->st, &it);
            }
        }
        return;
    }

    if (pick < 35) {
        struct item *it = storage_get(sh->st, key, nkey, hv, now, NULL);
        if (it != NULL) {
            check_item(sh, key, it);
            storage_release(sh->st, &it);
        }
    } else if (pick < 40) {
        struct item *it = storage_get_touch(sh->st, key, nkey, hv, now, now + 5, NULL);
        if (it != NULL) {
            check_item(sh, key, it);
            storage_release(sh->st, &it);
        }
    } else if (pick < 45) {
        struct storage_mget_opts o = {.vivify = pick % 2 == 0,
                                      .vivify_ttl = now + 3,
                                      .recache = true,
                                      .recache_at = now + 2,
                                      .order = "NR"};
        struct storage_mget_result res;
        struct item *it = NULL;
        if (storage_meta_get(sh->st, key, nkey, hv, now, &o, &res, &it) == 0 && it != NULL) {
            check_item(sh, key, it);
            storage_release(sh->st, &it);
        }
    } else if (pick < 65) {
        do_store(w, key, STORAGE_SET, 0);
    } else if (pick < 68) {
        do_store(w, key, STORAGE_ADD, 0);
    } else if (pick < 71) {
        do_store(w, key, STORAGE_REPLACE, 0);
    } else if (pick < 76) {
        struct item *it = storage_get(sh->st, key, nkey, hv, now, NULL);
        if (it != NULL) {
            uint64_t cas = storage_item_cas(it);
            check_item(sh, key, it);
            storage_release(sh->st, &it);
            do_store(w, key, STORAGE_CAS, cas);
        }
    } else if (pick < 82) {
        do_store(w, key, pick % 2 ? STORAGE_APPEND : STORAGE_PREPEND, 0);
    } else if (pick < 90) {
        bool found, mismatch;
        storage_delete(sh->st, key, nkey, hv, 0, now, &found, &mismatch, NULL);
    } else if (pick < 93) {
        struct storage_mdelete_opts o = {.invalidate = true, .touch = true, .touch_ttl = now + 2};
        struct storage_mdelete_result res;
        storage_meta_delete(sh->st, key, nkey, hv, now, &o, &res);
    } else if (pick < 98) {
        /* an item allocated and dropped unlinked */
        struct item *it = NULL;
        if (storage_alloc(sh->st, key, nkey, 0, 0, 100, now, &it) == 0) {
            storage_release(sh->st, &it);
        }
    } else if (rnd(&w->rng) % 40 == 0) {
        storage_flush(sh->st, r % 2 == 0 ? now + 1 : now, now);
        __atomic_fetch_add(&sh->flushes, 1, __ATOMIC_RELAXED);
    } else {
        struct storage_stats s;
        storage_get_stats(sh->st, now, &s);
        struct storage_class_stats cs;
        storage_get_class_stats(sh->st, 1 + (unsigned)(r % storage_class_count(sh->st)), now, &cs);
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    long max_ops = w->ops;
    w->ops = 0;
    while (w->ops < max_ops && !__atomic_load_n(&w->sh->stop, __ATOMIC_RELAXED)) {
        one_op(w);
        w->ops++;
        if (w->ops % 1024 == 0 && mono_now() > w->sh->deadline) {
            break;
        }
    }
    __atomic_fetch_add(&w->sh->ops, (uint64_t)w->ops, __ATOMIC_RELAXED);
    return NULL;
}

/* The server's background thread, sped up: one simulated second per 20 ms. */
static void *maintainer_main(void *arg)
{
    struct shared *sh = arg;
    int rounds = 0;
    while (!__atomic_load_n(&sh->stop, __ATOMIC_RELAXED)) {
        rel_time_t now = now_of(sh);
        for (int i = 0; i < 16 && storage_maintain(sh->st, now); i++) {
        }
        if (++rounds % 20 == 0) {
            __atomic_store_n(&sh->now, now + 1, __ATOMIC_RELAXED);
        }
        if (rounds % 50 == 0) {
            storage_set_memlimit(sh->st, (rounds / 50) % 2 ? 6u << 20 : 4u << 20);
        }
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    __atomic_store_n(&sh->maint_rounds, (uint64_t)rounds, __ATOMIC_RELAXED);
    return NULL;
}

int main(int argc, char **argv)
{
    int nthreads = argc > 1 ? atoi(argv[1]) : 8;
    long ops = argc > 2 ? atol(argv[2]) : 200000;
    double seconds = argc > 3 ? atof(argv[3]) : 30.0;
    if (nthreads < 1 || nthreads > MAXTHREADS || ops < 1 || seconds <= 0) {
        fprintf(stderr, "usage: storage_stress [threads 1..%d [ops_per_thread [seconds]]]\n",
                MAXTHREADS);
        return 2;
    }
    struct storage_options o;
    storage_options_default(&o);
    o.maxbytes = 4u << 20; /* a few pages: evictions and page moves */
    o.hashpower = 4;       /* grows while the threads run */
    struct shared sh = {.now = 100, .deadline = mono_now() + seconds};
    if (storage_create(&sh.st, &o) != 0) {
        fprintf(stderr, "storage_stress: storage_create failed\n");
        return 1;
    }
    pthread_t maint;
    struct worker ws[MAXTHREADS];
    pthread_t th[MAXTHREADS];
    if (pthread_create(&maint, NULL, maintainer_main, &sh) != 0) {
        return 1;
    }
    for (int i = 0; i < nthreads; i++) {
        ws[i] = (struct worker){
            .sh = &sh, .id = i, .ops = ops, .rng = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1)};
        if (pthread_create(&th[i], NULL, worker_main, &ws[i]) != 0) {
            return 1;
        }
    }
    for (int i = 0; i < nthreads; i++) {
        pthread_join(th[i], NULL);
    }
    __atomic_store_n(&sh.stop, 1, __ATOMIC_RELAXED);
    pthread_join(maint, NULL);

    /* Quiet now: every linked value must still verify. */
    rel_time_t now = now_of(&sh);
    for (int k = 0; k < NKEYS + NCOUNTERS; k++) {
        char key[32];
        if (k < NKEYS) {
            snprintf(key, sizeof(key), "key%d", k);
        } else {
            snprintf(key, sizeof(key), "cnt%d", k - NKEYS);
        }
        struct item *it =
            storage_get(sh.st, key, strlen(key), storage_hash(key, strlen(key)), now, NULL);
        if (it != NULL) {
            if (k < NKEYS) {
                check_item(&sh, key, it);
            } else {
                check_counter(&sh, key, it);
            }
            storage_release(sh.st, &it);
        }
    }
    struct storage_stats s;
    storage_get_stats(sh.st, now, &s);
    printf("storage_stress: threads=%d ops=%" PRIu64 " verified=%" PRIu64 " flushes=%" PRIu64
           " maintainer_rounds=%" PRIu64 " evictions=%" PRIu64 " hash_power=%u errors=%" PRIu64
           "\n",
           nthreads, sh.ops, sh.verified, sh.flushes, sh.maint_rounds, s.evictions,
           s.hash_power_level, sh.errors);
    storage_destroy(&sh.st);
    return sh.errors == 0 ? 0 : 1;
}

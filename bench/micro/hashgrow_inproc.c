/*
 * hashgrow_inproc.c - target 6 ("no request stall above 1 ms while the hash
 * table grows from 1 to 10 million items"), measured inside one process.
 *
 * bench/storage_hashgrow.py measures the same thing over the network, but on
 * a small shared machine the scheduler sets its tail: the Python loader takes
 * a core and the probe sees stalls of milliseconds outside growth as often as
 * during it. This program keeps only the storage engine and three threads:
 *
 *   loader       inserts N distinct 20-byte keys with 16-byte values (SET),
 *                timing every storage_alloc and storage_store;
 *   maintenance  calls storage_maintain() as src/server/background.c does:
 *                slices for up to 10 ms while there is work, then waits 1 ms
 *                (busy) or 100 ms (idle);
 *   probe        storage_get + storage_release of a few hot keys back to back
 *                in bursts, timing each with CLOCK_MONOTONIC and recording
 *                the thread's CPU time (CLOCK_THREAD_CPUTIME_ID) and its
 *                voluntary / involuntary context switches (getrusage) for
 *                every sample over 1 ms, so that a sample that was preempted
 *                (off CPU, involuntary), one that slept on a lock (off CPU,
 *                voluntary) and one that spent the time running (on CPU) can
 *                be told apart.
 *
 * The probe and maintenance threads ask for SCHED_FIFO and are pinned to CPUs
 * (probe on the last CPU, maintenance on CPU 0); the loader stays an ordinary
 * thread free to run anywhere. When that is not permitted the program says so
 * and carries on. The probe sleeps between bursts (--burst-us, --gap-us) so
 * that a real-time thread never takes a whole CPU (the kernel throttles
 * real-time threads above 95%, which would itself look like a stall).
 * A real-time maintenance thread pinned next to an ordinary loader can keep
 * the loader off its CPU for up to a 10 ms slice, and with it any stripe lock
 * the loader holds; --maint-normal leaves the maintenance thread an ordinary
 * (pinned) thread, --no-rt makes no thread real-time, --no-pin pins none.
 *
 * Phases. Whether the table is growing is read with storage_get_stats()
 * (hash_is_expanding, hash_power_level) by the maintenance thread before and
 * after every storage_maintain() call, and by the loader every 16384 items (in
 * case an engine grows inside storage_store). A growth window runs from the
 * last observation before it that saw the table settled to the first one
 * after it that saw it settled again, so a sample near a boundary counts as
 * "during growth". A probe sample belongs to growth when its time span
 * overlaps a growth window.
 *
 * Every round runs twice: "growth" (hash_expand on, initial hashpower 16, as
 * memcached's default) and "baseline" (hash_expand off, hashpower 24, so the
 * table never grows), same items, same threads; the baseline's stalls are the
 * machine's noise. Medians over --rounds rounds close the report.
 *
 * Only storage.h is used, so the program works with any engine behind it.
 *
 *     hashgrow_inproc                 # 10M items, 3 rounds
 *     hashgrow_inproc --quick         # 2M items, 1 round
 *     hashgrow_inproc --items N --rounds R [-v]   # -v: growth windows, the
 *                                                 # calls that start and end
 *                                                 # them, every slow sample
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "storage.h"

#define KEYLEN        20
#define VALLEN        16
#define NHOT          8
#define STALL_NS      1000000ull /* the target: no stall above 1 ms */
#define SLOW_OP_NS    100000ull  /* loader ops slower than this are kept */
#define MAX_SLOW      100000u    /* kept slow probe samples per run */
#define MAX_SLOW_OPS  200000u    /* kept slow loader ops per run */
#define MAX_OBS       4096u      /* kept phase observations per thread */
#define OBS_EVERY     16384u     /* loader observes the table every this many items */
#define MAINT_SLICE   10000000ll /* background.c: slices for at most 10 ms, */
#define MAINT_BUSY_NS 1000000l   /* then waits 1 ms when more is pending, */
#define MAINT_IDLE_NS 100000000l /* else 100 ms */

struct config {
    uint64_t items;
    unsigned rounds;
    size_t memory_mib;
    double max_seconds;
    uint64_t max_samples;
    long burst_us, gap_us;
    bool rt, maint_rt, pin, verbose;
};

/* One reading of the table's state, taken between ta and tb. */
struct obs {
    uint64_t ta, tb;
    unsigned power;
    bool expanding;
};

/* A thread's observations, kept only around changes: the last reading of a
 * state is committed together with the first reading of the next one. */
struct obs_log {
    struct obs v[MAX_OBS];
    unsigned n;
    bool have_pending;
    struct obs pending; /* the latest reading, not yet committed */
    bool overflow;
};

struct slow_sample {
    uint64_t start, wall, cpu; /* ns; start since the run began */
    long nvcsw, nivcsw;        /* context switches during the sample */
    unsigned hot;              /* which hot key */
};

enum op_kind { OP_ALLOC, OP_STORE };

struct slow_op {
    uint64_t start, wall, cpu;
    enum op_kind kind;
};

struct window {
    uint64_t start, end;
};

/* A storage_maintain() call that started or ended a growth. */
struct edge_call {
    uint64_t start, wall, cpu;
    unsigned power; /* after the call */
    bool started;
};

#define MAX_EDGES      128u
#define MAX_SLOW_MAINT 4096u /* kept storage_maintain calls over 0.5 ms */
#define SLOW_MAINT_NS  500000ull

/* Everything a run shares between its threads, and its raw results. */
struct run {
    const struct config *cfg;
    const char *name;
    bool grow;
    struct storage *st;
    struct timespec origin;
    _Atomic uint32_t now; /* rel_time_t, ticked by the maintenance thread */
    atomic_bool loader_done, stop_probe, stop_maint;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* wakes the maintenance thread to stop */

    char hot_keys[NHOT][KEYLEN];
    uint64_t hot_hv[NHOT];

    /* probe */
    uint32_t *s_start_us, *s_wall_ns; /* preallocated by main, max_samples */
    uint64_t nsamples, unrecorded, misses;
    bool samples_full;
    struct slow_sample *slow;
    unsigned nslow;
    uint64_t slow_dropped;
    char probe_note[160];

    /* loader */
    uint64_t loaded, store_errors;
    double load_seconds;
    bool capped;
    struct slow_op *ops;
    unsigned nops;
    uint64_t ops_dropped;
    struct obs_log loader_obs;

    /* maintenance */
    uint64_t maint_calls;
    uint64_t maint_max_ns[3]; /* a call that started growth, ended it, any other */
    struct edge_call edges[MAX_EDGES];
    unsigned nedges;
    struct slow_op slow_maint[MAX_SLOW_MAINT]; /* kind unused */
    unsigned nslow_maint;
    struct obs_log maint_obs;
    char maint_note[160];
};

/* ---- time -------------------------------------------------------------- */

static uint64_t ts_ns(const struct timespec *t)
{
    return (uint64_t)t->tv_sec * 1000000000ull + (uint64_t)t->tv_nsec;
}

static uint64_t since(const struct run *r)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return ts_ns(&t) - ts_ns(&r->origin);
}

static uint64_t thread_cpu(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return ts_ns(&t);
}

static rel_time_t tick(struct run *r)
{
    rel_time_t now = (rel_time_t)(2 + since(r) / 1000000000ull);
    atomic_store_explicit(&r->now, now, memory_order_relaxed);
    return now;
}

static rel_time_t now_of(struct run *r)
{
    return atomic_load_explicit(&r->now, memory_order_relaxed);
}

/* ---- threads: priority and placement ------------------------------------ */

/* Pins the calling thread to `cpu` (when cfg->pin) and makes it SCHED_FIFO at
 * `prio` (when cfg->rt and prio > 0); writes what happened into note. */
static void place_thread(const struct config *cfg, int cpu, int prio, char *note, size_t len)
{
    char pin[64] = "not pinned", rt[80] = "SCHED_OTHER";
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (cfg->pin && cpu >= 0 && ncpu > 1) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
        if (rc == 0) {
            snprintf(pin, sizeof(pin), "pinned to CPU %d", cpu);
        } else {
            snprintf(pin, sizeof(pin), "not pinned (%s)", strerror(rc));
        }
    }
    if (cfg->rt && prio > 0) {
        struct sched_param sp = {.sched_priority = prio};
        int rc = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
        if (rc == 0) {
            snprintf(rt, sizeof(rt), "SCHED_FIFO %d", prio);
        } else {
            snprintf(rt, sizeof(rt), "SCHED_OTHER (SCHED_FIFO refused: %s)", strerror(rc));
        }
    }
    snprintf(note, len, "%s, %s", rt, pin);
}

/* ---- phase observations ------------------------------------------------- */

static void obs_commit(struct obs_log *l, const struct obs *o)
{
    if (l->n < MAX_OBS) {
        l->v[l->n++] = *o;
    } else {
        l->overflow = true;
    }
}

/* Reads the table's state, logs it and returns it. */
static struct obs observe(struct run *r, struct obs_log *l)
{
    struct storage_stats s;
    struct obs o;
    o.ta = since(r);
    storage_get_stats(r->st, now_of(r), &s);
    o.tb = since(r);
    o.power = s.hash_power_level;
    o.expanding = s.hash_is_expanding;
    if (l->n == 0) {
        obs_commit(l, &o);
        return o;
    }
    const struct obs *last = l->have_pending ? &l->pending : &l->v[l->n - 1];
    if (last->power != o.power || last->expanding != o.expanding) {
        if (l->have_pending) {
            obs_commit(l, &l->pending);
        }
        obs_commit(l, &o);
        l->have_pending = false;
    } else {
        l->pending = o;
        l->have_pending = true;
    }
    return o;
}

static void obs_flush(struct obs_log *l)
{
    if (l->have_pending) {
        obs_commit(l, &l->pending);
        l->have_pending = false;
    }
}

static int cmp_obs(const void *a, const void *b)
{
    const struct obs *x = a, *y = b;
    return x->ta < y->ta ? -1 : x->ta > y->ta;
}

/* Merges both threads' observations into growth windows; returns how many,
 * and the lowest and highest power seen. */
static unsigned growth_windows(struct run *r, struct window *w, unsigned maxw, unsigned *pmin,
                               unsigned *pmax)
{
    unsigned n = r->loader_obs.n + r->maint_obs.n;
    struct obs *all = malloc((n + 1) * sizeof(*all));
    if (all == NULL) {
        return 0;
    }
    memcpy(all, r->loader_obs.v, r->loader_obs.n * sizeof(*all));
    memcpy(all + r->loader_obs.n, r->maint_obs.v, r->maint_obs.n * sizeof(*all));
    qsort(all, n, sizeof(*all), cmp_obs);
    unsigned nw = 0;
    *pmin = n > 0 ? all[0].power : 0;
    *pmax = *pmin;
    for (unsigned i = 0; i < n; i++) {
        *pmin = all[i].power < *pmin ? all[i].power : *pmin;
        *pmax = all[i].power > *pmax ? all[i].power : *pmax;
        if (i + 1 == n) {
            /* still expanding at the last reading: growth to the end */
            if (all[i].expanding && nw < maxw) {
                w[nw++] = (struct window){all[i].ta, UINT64_MAX};
            }
            break;
        }
        const struct obs *a = &all[i], *b = &all[i + 1];
        if (!(a->expanding || b->expanding || a->power != b->power)) {
            continue;
        }
        if (nw > 0 && w[nw - 1].end >= a->ta) {
            w[nw - 1].end = b->tb > w[nw - 1].end ? b->tb : w[nw - 1].end;
        } else if (nw < maxw) {
            w[nw++] = (struct window){a->ta, b->tb};
        }
    }
    free(all);
    return nw;
}

static bool in_growth(const struct window *w, unsigned nw, uint64_t start, uint64_t end)
{
    for (unsigned i = 0; i < nw; i++) {
        if (start <= w[i].end && end >= w[i].start) {
            return true;
        }
    }
    return false;
}

/* ---- the three threads -------------------------------------------------- */

static void key_of(char *buf, const char *prefix, uint64_t i)
{
    char tmp[48];
    snprintf(tmp, sizeof(tmp), "%s%0*llu", prefix, (int)(KEYLEN - strlen(prefix)),
             (unsigned long long)i);
    memcpy(buf, tmp, KEYLEN);
}

/* Records an operation that started at t0 (c0 on-CPU) when it took longer
 * than SLOW_OP_NS. */
static void note_slow(struct run *r, uint64_t t0, uint64_t c0, enum op_kind kind)
{
    uint64_t t1 = since(r);
    uint64_t c1 = thread_cpu();
    if (t1 - t0 <= SLOW_OP_NS) {
        return;
    }
    if (r->nops < MAX_SLOW_OPS) {
        r->ops[r->nops++] = (struct slow_op){t0, t1 - t0, c1 - c0, kind};
    } else {
        r->ops_dropped++;
    }
}

static int put(struct run *r, const char *key, uint64_t hv, bool timed)
{
    rel_time_t now = now_of(r);
    struct item *it = NULL;
    uint64_t c0 = 0, t0 = 0;
    if (timed) {
        c0 = thread_cpu();
        t0 = since(r);
    }
    int rc = storage_alloc(r->st, key, KEYLEN, 0, 0, VALLEN, now, &it);
    if (timed) {
        note_slow(r, t0, c0, OP_ALLOC);
    }
    if (rc != 0) {
        return rc;
    }
    char *v = storage_item_value(it);
    memset(v, 'v', VALLEN);
    enum storage_store_outcome out;
    if (timed) {
        c0 = thread_cpu();
        t0 = since(r);
    }
    rc = storage_store(r->st, it, STORAGE_SET, 0, hv, now, &out, NULL);
    if (timed) {
        note_slow(r, t0, c0, OP_STORE);
    }
    storage_release(r->st, &it);
    return rc != 0 ? rc : out == STORAGE_STORED ? 0 : STORAGE_EINVAL;
}

static void *loader_main(void *arg)
{
    struct run *r = arg;
    uint64_t t0 = since(r);
    uint64_t cap = (uint64_t)(r->cfg->max_seconds * 1e9);
    char key[KEYLEN];
    uint64_t i;
    for (i = 0; i < r->cfg->items; i++) {
        key_of(key, "k", i);
        if (put(r, key, storage_hash(key, KEYLEN), true) != 0) {
            r->store_errors++;
        }
        if (i % OBS_EVERY == 0) {
            observe(r, &r->loader_obs);
            if (since(r) - t0 > cap) {
                r->capped = true;
                i++;
                break;
            }
        }
    }
    r->loaded = i;
    r->load_seconds = (double)(since(r) - t0) / 1e9;
    observe(r, &r->loader_obs);
    obs_flush(&r->loader_obs);
    atomic_store(&r->loader_done, true);
    return NULL;
}

static void *maint_main(void *arg)
{
    struct run *r = arg;
    place_thread(r->cfg, 0, r->cfg->maint_rt ? 10 : 0, r->maint_note, sizeof(r->maint_note));
    pthread_mutex_lock(&r->lock);
    while (!atomic_load(&r->stop_maint)) {
        pthread_mutex_unlock(&r->lock);
        rel_time_t now = tick(r);
        bool more = false;
        struct timespec start, t;
        clock_gettime(CLOCK_MONOTONIC, &start);
        do {
            struct obs before = observe(r, &r->maint_obs);
            uint64_t c = thread_cpu();
            uint64_t a = since(r);
            more = storage_maintain(r->st, now);
            uint64_t d = since(r) - a;
            c = thread_cpu() - c;
            r->maint_calls++;
            struct obs after = observe(r, &r->maint_obs);
            bool started = !before.expanding && (after.expanding || after.power != before.power);
            int k = started ? 0 : before.expanding && !after.expanding ? 1 : 2;
            r->maint_max_ns[k] = d > r->maint_max_ns[k] ? d : r->maint_max_ns[k];
            if (d > SLOW_MAINT_NS && r->nslow_maint < MAX_SLOW_MAINT) {
                r->slow_maint[r->nslow_maint++] = (struct slow_op){a, d, c, OP_STORE};
            }
            if (k < 2 && r->nedges < MAX_EDGES) {
                r->edges[r->nedges++] = (struct edge_call){a, d, c, after.power, k == 0};
            }
            clock_gettime(CLOCK_MONOTONIC, &t);
        } while (more && (long long)(ts_ns(&t) - ts_ns(&start)) < MAINT_SLICE);
        pthread_mutex_lock(&r->lock);
        if (atomic_load(&r->stop_maint)) {
            break;
        }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += more ? MAINT_BUSY_NS : MAINT_IDLE_NS;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&r->cond, &r->lock, &until);
    }
    pthread_mutex_unlock(&r->lock);
    observe(r, &r->maint_obs);
    obs_flush(&r->maint_obs);
    return NULL;
}

static long thread_switches(long *nivcsw)
{
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    *nivcsw = ru.ru_nivcsw;
    return ru.ru_nvcsw;
}

static void *probe_main(void *arg)
{
    struct run *r = arg;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    place_thread(r->cfg, (int)(ncpu > 1 ? ncpu - 1 : 0), 20, r->probe_note, sizeof(r->probe_note));
    uint64_t burst = (uint64_t)r->cfg->burst_us * 1000;
    struct timespec gap = {r->cfg->gap_us / 1000000, (r->cfg->gap_us % 1000000) * 1000};
    unsigned h = 0;
    while (!atomic_load_explicit(&r->stop_probe, memory_order_relaxed)) {
        uint64_t end = since(r) + burst;
        uint64_t t1;
        do {
            h = (h + 1) % NHOT;
            rel_time_t now = now_of(r);
            long iv0, vol0 = thread_switches(&iv0);
            uint64_t c0 = thread_cpu();
            uint64_t t0 = since(r);
            enum storage_get_outcome out;
            struct item *it = storage_get(r->st, r->hot_keys[h], KEYLEN, r->hot_hv[h], now, &out);
            storage_release(r->st, &it);
            t1 = since(r);
            uint64_t c1 = thread_cpu();
            if (out != STORAGE_HIT) {
                r->misses++;
            }
            uint64_t wall = t1 - t0;
            if (r->nsamples < r->cfg->max_samples) {
                r->s_start_us[r->nsamples] = (uint32_t)(t0 / 1000);
                r->s_wall_ns[r->nsamples] = wall > UINT32_MAX ? UINT32_MAX : (uint32_t)wall;
                r->nsamples++;
            } else {
                /* Full: stalls are still caught (below), percentiles
                 * come from the samples kept. */
                r->samples_full = true;
                r->unrecorded++;
            }
            if (wall > STALL_NS) {
                long iv1, vol1 = thread_switches(&iv1);
                if (r->nslow < MAX_SLOW) {
                    r->slow[r->nslow++] =
                        (struct slow_sample){t0, wall, c1 - c0, vol1 - vol0, iv1 - iv0, h};
                } else {
                    r->slow_dropped++;
                }
            }
        } while (t1 < end);
        if (r->cfg->gap_us > 0) {
            nanosleep(&gap, NULL);
        }
    }
    return NULL;
}

/* ---- one run ------------------------------------------------------------ */

struct phase_stats {
    uint64_t n;
    double p50, p99, p999, max; /* us */
    uint64_t over, on_cpu, off_vol, off_invol;
    double store_max, store_max_cpu;    /* ms: the loader's longest store, its CPU time */
    double alloc_max;                   /* ms */
    uint64_t store_over, store_over_on; /* loader stores over 1 ms, of which on CPU */
};

struct result {
    bool ok;
    uint64_t loaded;
    double load_seconds, growth_seconds;
    unsigned pmin, pmax, nwindows;
    struct phase_stats ph[2]; /* 0 = during growth, 1 = outside */
};

/* Sorts n 32-bit values (LSD radix, 4 passes of 8 bits). */
static void sort_u32(uint32_t *a, uint32_t *tmp, size_t n)
{
    for (unsigned shift = 0; shift < 32; shift += 8) {
        size_t count[257] = {0};
        for (size_t i = 0; i < n; i++) {
            count[((a[i] >> shift) & 0xff) + 1]++;
        }
        for (unsigned b = 0; b < 256; b++) {
            count[b + 1] += count[b];
        }
        for (size_t i = 0; i < n; i++) {
            tmp[count[(a[i] >> shift) & 0xff]++] = a[i];
        }
        memcpy(a, tmp, n * sizeof(*a));
    }
}

static double pct_us(const uint32_t *sorted, size_t n, double p)
{
    if (n == 0) {
        return 0;
    }
    size_t i = (size_t)(p * (double)n);
    return (double)sorted[i < n ? i : n - 1] / 1000.0;
}

static void fill_phase(struct phase_stats *ps, uint32_t *v, uint32_t *tmp, size_t n)
{
    sort_u32(v, tmp, n);
    ps->n = n;
    ps->p50 = pct_us(v, n, 0.50);
    ps->p99 = pct_us(v, n, 0.99);
    ps->p999 = pct_us(v, n, 0.999);
    ps->max = n > 0 ? (double)v[n - 1] / 1000.0 : 0;
}

static const char *phase_name(int p)
{
    return p == 0 ? "during growth" : "outside growth";
}

/* Prints a slow event's place relative to the nearest growth window edge. */
static void print_where(const struct window *w, unsigned nw, uint64_t t)
{
    uint64_t best = UINT64_MAX;
    const char *edge = "";
    long long off = 0;
    for (unsigned i = 0; i < nw; i++) {
        uint64_t e[2] = {w[i].start, w[i].end};
        for (int k = 0; k < 2; k++) {
            if (e[k] == UINT64_MAX) {
                continue;
            }
            uint64_t d = t > e[k] ? t - e[k] : e[k] - t;
            if (d < best) {
                best = d;
                edge = k == 0 ? "start" : "end";
                off = (long long)t - (long long)e[k];
            }
        }
    }
    if (best != UINT64_MAX) {
        printf(" (%+.3f ms from growth window %s)", (double)off / 1e6, edge);
    }
}

/* Prints the loader op and the storage_maintain call (among those kept as
 * slow) that overlap [a, b] the most: a probe that slept on a lock while one
 * of them was off CPU was most likely waiting for it. */
static void print_overlaps(const struct run *r, uint64_t a, uint64_t b)
{
    const struct slow_op *lists[2] = {r->ops, r->slow_maint};
    unsigned counts[2] = {r->nops, r->nslow_maint};
    for (int l = 0; l < 2; l++) {
        const struct slow_op *best = NULL;
        uint64_t best_ov = 0;
        for (unsigned i = 0; i < counts[l]; i++) {
            const struct slow_op *x = &lists[l][i];
            uint64_t lo = x->start > a ? x->start : a;
            uint64_t hi = x->start + x->wall < b ? x->start + x->wall : b;
            if (hi > lo && hi - lo > best_ov) {
                best_ov = hi - lo;
                best = x;
            }
        }
        if (best != NULL) {
            printf("; overlaps %s (wall %.3f ms, cpu %.3f ms)",
                   l == 1                   ? "a storage_maintain call"
                   : best->kind == OP_STORE ? "a loader store"
                                            : "a loader alloc",
                   (double)best->wall / 1e6, (double)best->cpu / 1e6);
        }
    }
}

static int run_once(const struct config *cfg, struct run *r, bool grow, unsigned round,
                    struct result *res, uint32_t *scratch)
{
    memset(res, 0, sizeof(*res));
    struct storage_options o;
    storage_options_default(&o);
    o.maxbytes = cfg->memory_mib << 20;
    o.hashpower = grow ? 16 : 24;
    o.hash_expand = grow;
    int rc = storage_create(&r->st, &o);
    if (rc != 0) {
        fprintf(stderr, "storage_create: %s\n", storage_strerror(rc));
        return -1;
    }
    r->grow = grow;
    r->name = grow ? "growth" : "baseline";
    clock_gettime(CLOCK_MONOTONIC, &r->origin);
    tick(r);
    for (unsigned i = 0; i < NHOT; i++) {
        key_of(r->hot_keys[i], "hot:", i);
        r->hot_hv[i] = storage_hash(r->hot_keys[i], KEYLEN);
        if (put(r, r->hot_keys[i], r->hot_hv[i], false) != 0) {
            fprintf(stderr, "cannot store the hot keys\n");
            storage_destroy(&r->st);
            return -1;
        }
    }

    pthread_t tl, tm, tp;
    pthread_create(&tm, NULL, maint_main, r);
    pthread_create(&tp, NULL, probe_main, r);
    struct timespec settle = {0, 200000000}; /* 200 ms of quiet before the load */
    nanosleep(&settle, NULL);
    pthread_create(&tl, NULL, loader_main, r);
    pthread_join(tl, NULL);
    /* Let a growth under way finish (bounded), then 200 ms more of quiet. */
    for (int i = 0; i < 600; i++) {
        struct storage_stats s;
        storage_get_stats(r->st, now_of(r), &s);
        if (!s.hash_is_expanding) {
            break;
        }
        struct timespec w = {0, 50000000};
        nanosleep(&w, NULL);
    }
    nanosleep(&settle, NULL);
    atomic_store(&r->stop_probe, true);
    pthread_join(tp, NULL);
    pthread_mutex_lock(&r->lock);
    atomic_store(&r->stop_maint, true);
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
    pthread_join(tm, NULL);

    struct storage_stats s;
    storage_get_stats(r->st, now_of(r), &s);

    struct window w[256];
    unsigned nw = growth_windows(r, w, 256, &res->pmin, &res->pmax);
    res->nwindows = nw;
    res->loaded = r->loaded;
    res->load_seconds = r->load_seconds;
    uint64_t run_end = since(r);
    for (unsigned i = 0; i < nw; i++) {
        uint64_t e = w[i].end == UINT64_MAX ? run_end : w[i].end;
        res->growth_seconds += (double)(e - w[i].start) / 1e9;
    }

    /* Split the probe samples by phase (the durations are reordered in place:
     * growth samples first, then outside). */
    uint32_t *v = r->s_wall_ns, *at = r->s_start_us;
    size_t ng = 0;
    for (size_t i = 0; i < r->nsamples; i++) {
        uint64_t a = (uint64_t)at[i] * 1000;
        if (in_growth(w, nw, a, a + v[i] + 1000)) {
            uint32_t x = v[ng], y = at[ng];
            v[ng] = v[i];
            at[ng] = at[i];
            v[i] = x;
            at[i] = y;
            ng++;
        }
    }
    fill_phase(&res->ph[0], v, scratch, ng);
    fill_phase(&res->ph[1], v + ng, scratch, r->nsamples - ng);
    for (unsigned i = 0; i < r->nslow; i++) {
        const struct slow_sample *x = &r->slow[i];
        struct phase_stats *ps = &res->ph[in_growth(w, nw, x->start, x->start + x->wall) ? 0 : 1];
        ps->over++;
        if (x->cpu > STALL_NS) {
            ps->on_cpu++;
        } else if (x->nivcsw > 0) {
            ps->off_invol++;
        } else {
            ps->off_vol++;
        }
    }
    for (unsigned i = 0; i < r->nops; i++) {
        const struct slow_op *x = &r->ops[i];
        struct phase_stats *ps = &res->ph[in_growth(w, nw, x->start, x->start + x->wall) ? 0 : 1];
        double ms = (double)x->wall / 1e6;
        if (x->kind == OP_STORE) {
            if (ms > ps->store_max) {
                ps->store_max = ms;
                ps->store_max_cpu = (double)x->cpu / 1e6;
            }
            ps->store_over += x->wall > STALL_NS;
            ps->store_over_on += x->wall > STALL_NS && x->cpu > STALL_NS;
        } else {
            ps->alloc_max = ms > ps->alloc_max ? ms : ps->alloc_max;
        }
    }

    if (round == 0 && grow) {
        printf("  threads: probe %s; maintenance %s; loader SCHED_OTHER, any CPU\n", r->probe_note,
               r->maint_note);
    }
    printf("round %u %-8s: %llu items in %.1f s (%.2f M/s), hash power %u -> %u, "
           "%u growth window(s), %.2f s in growth; %llu probe samples\n",
           round + 1, r->name, (unsigned long long)r->loaded, r->load_seconds,
           (double)r->loaded / r->load_seconds / 1e6, res->pmin, res->pmax, nw, res->growth_seconds,
           (unsigned long long)r->nsamples);
    if (r->samples_full) {
        printf("  note: sample buffer full; %llu later samples counted only when over 1 ms\n",
               (unsigned long long)r->unrecorded);
    }
    if (r->capped || r->misses || r->store_errors || s.evictions || r->slow_dropped ||
        r->ops_dropped || r->loader_obs.overflow || r->maint_obs.overflow) {
        printf("  WARNING: capped %d, misses %llu, store errors %llu, "
               "evictions %llu, dropped slow %llu/%llu, obs overflow %d/%d\n",
               r->capped, (unsigned long long)r->misses, (unsigned long long)r->store_errors,
               (unsigned long long)s.evictions, (unsigned long long)r->slow_dropped,
               (unsigned long long)r->ops_dropped, r->loader_obs.overflow, r->maint_obs.overflow);
    }
    for (int p = 0; p < 2; p++) {
        const struct phase_stats *ps = &res->ph[p];
        printf("  %-14s %9llu samples  p50 %6.2f  p99 %6.2f  p99.9 %7.2f  max %9.1f us;"
               "  >1ms %llu (on-CPU %llu, off-CPU: blocked %llu, preempted %llu)\n",
               phase_name(p), (unsigned long long)ps->n, ps->p50, ps->p99, ps->p999, ps->max,
               (unsigned long long)ps->over, (unsigned long long)ps->on_cpu,
               (unsigned long long)ps->off_vol, (unsigned long long)ps->off_invol);
        printf("  %-14s loader: longest store %.3f ms (%.3f ms of it on CPU), %llu stores >1ms "
               "(%llu on CPU); longest alloc %.3f ms\n",
               "", ps->store_max, ps->store_max_cpu, (unsigned long long)ps->store_over,
               (unsigned long long)ps->store_over_on, ps->alloc_max);
    }
    printf("  storage_maintain: %llu calls, longest %.3f ms (call that started a growth), "
           "%.3f ms (ended one), %.3f ms (other)\n",
           (unsigned long long)r->maint_calls, (double)r->maint_max_ns[0] / 1e6,
           (double)r->maint_max_ns[1] / 1e6, (double)r->maint_max_ns[2] / 1e6);
    if (cfg->verbose) {
        for (unsigned i = 0; i < nw; i++) {
            printf("  growth window %u: %.3f .. %.3f s\n", i, (double)w[i].start / 1e9,
                   w[i].end == UINT64_MAX ? -1.0 : (double)w[i].end / 1e9);
        }
        for (unsigned i = 0; i < r->nedges; i++) {
            const struct edge_call *e = &r->edges[i];
            printf(
                "  storage_maintain at %.6f s %s growth to power %u: wall %.3f ms, cpu %.3f ms\n",
                (double)e->start / 1e9, e->started ? "started" : "ended", e->power,
                (double)e->wall / 1e6, (double)e->cpu / 1e6);
        }
        for (unsigned i = 0; i < r->nslow && i < 40; i++) {
            const struct slow_sample *x = &r->slow[i];
            printf("  slow get at %.6f s: wall %.3f ms, cpu %.3f ms, switches vol %ld invol %ld",
                   (double)x->start / 1e9, (double)x->wall / 1e6, (double)x->cpu / 1e6, x->nvcsw,
                   x->nivcsw);
            print_where(w, nw, x->start);
            print_overlaps(r, x->start, x->start + x->wall);
            printf("\n");
        }
        unsigned shown = 0;
        for (unsigned i = 0; i < r->nops && shown < 20; i++) {
            const struct slow_op *x = &r->ops[i];
            if (x->wall <= STALL_NS) {
                continue;
            }
            shown++;
            printf("  slow %s at %.6f s: wall %.3f ms, cpu %.3f ms",
                   x->kind == OP_STORE ? "store" : "alloc", (double)x->start / 1e9,
                   (double)x->wall / 1e6, (double)x->cpu / 1e6);
            print_where(w, nw, x->start);
            printf("\n");
        }
    }
    fflush(stdout);
    storage_destroy(&r->st);
    res->ok = true;
    return 0;
}

/* ---- main --------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, unsigned n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s [--items N] [--quick] [--rounds R] [--memory MiB] [--max-seconds S]\n"
            "          [--burst-us US] [--gap-us US] [--no-rt] [--maint-normal] [--no-pin] [-v]\n",
            prog);
}

int main(int argc, char **argv)
{
    struct config cfg = {
        .items = 10000000,
        .rounds = 3,
        .memory_mib = 2048,
        .max_seconds = 150,
        .max_samples = 64000000,
        .burst_us = 1000,
        .gap_us = 500,
        .rt = true,
        .maint_rt = true,
        .pin = true,
    };
    bool rounds_set = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--quick") == 0) {
            cfg.items = 2000000;
            if (!rounds_set) {
                cfg.rounds = 1;
            }
        } else if (strcmp(a, "--no-rt") == 0) {
            cfg.rt = false;
        } else if (strcmp(a, "--maint-normal") == 0) {
            cfg.maint_rt = false;
        } else if (strcmp(a, "--no-pin") == 0) {
            cfg.pin = false;
        } else if (strcmp(a, "-v") == 0) {
            cfg.verbose = true;
        } else if (val != NULL && strcmp(a, "--items") == 0) {
            cfg.items = strtoull(val, NULL, 10);
            i++;
        } else if (val != NULL && strcmp(a, "--rounds") == 0) {
            cfg.rounds = (unsigned)strtoul(val, NULL, 10);
            rounds_set = true;
            i++;
        } else if (val != NULL && strcmp(a, "--memory") == 0) {
            cfg.memory_mib = strtoull(val, NULL, 10);
            i++;
        } else if (val != NULL && strcmp(a, "--max-seconds") == 0) {
            cfg.max_seconds = strtod(val, NULL);
            i++;
        } else if (val != NULL && strcmp(a, "--burst-us") == 0) {
            cfg.burst_us = strtol(val, NULL, 10);
            i++;
        } else if (val != NULL && strcmp(a, "--gap-us") == 0) {
            cfg.gap_us = strtol(val, NULL, 10);
            i++;
        } else {
            usage(argv[0]);
            return 2;
        }
    }
    if (cfg.items == 0 || cfg.rounds == 0 || cfg.rounds > 64 || cfg.burst_us <= 0 ||
        cfg.gap_us < 0 || cfg.max_seconds <= 0) {
        usage(argv[0]);
        return 2;
    }

    /* Sample buffers are allocated and touched once, so that the probe never
     * takes a page fault on them while it measures. */
    size_t bytes = cfg.max_samples * sizeof(uint32_t);
    uint32_t *start_us = malloc(bytes), *wall_ns = malloc(bytes), *scratch = malloc(bytes);
    struct slow_sample *slow = calloc(MAX_SLOW, sizeof(*slow));
    struct slow_op *ops = calloc(MAX_SLOW_OPS, sizeof(*ops));
    struct run *r = malloc(sizeof(*r));
    struct result(*res)[2] = calloc(cfg.rounds, sizeof(*res));
    if (!start_us || !wall_ns || !scratch || !slow || !ops || !r || !res) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    memset(start_us, 0, bytes);
    memset(wall_ns, 0, bytes);
    memset(scratch, 0, bytes);

    printf("hashgrow_inproc: %llu items (key %d, value %d), -m %zu MiB, %u round(s); "
           "growth: hashpower 16, expansion on; baseline: hashpower 24, expansion off\n",
           (unsigned long long)cfg.items, KEYLEN, VALLEN, cfg.memory_mib, cfg.rounds);
    for (unsigned round = 0; round < cfg.rounds; round++) {
        for (int g = 0; g < 2; g++) {
            memset(r, 0, sizeof(*r));
            r->cfg = &cfg;
            pthread_mutex_init(&r->lock, NULL);
            pthread_cond_init(&r->cond, NULL);
            r->s_start_us = start_us;
            r->s_wall_ns = wall_ns;
            r->slow = slow;
            r->ops = ops;
            int rc = run_once(&cfg, r, g == 0, round, &res[round][g], scratch);
            pthread_cond_destroy(&r->cond);
            pthread_mutex_destroy(&r->lock);
            if (rc != 0) {
                return 1;
            }
        }
    }

    printf("\nmedians over %u round(s) (us; loader store max in ms):\n", cfg.rounds);
    printf("  %-8s %-14s %9s %7s %7s %8s %9s %6s %6s %8s %9s %10s\n", "run", "phase", "samples",
           "p50", "p99", "p99.9", "max", ">1ms", "on-CPU", "blocked", "preempted", "store max");
    double *tmp = malloc(cfg.rounds * sizeof(double));
    for (int g = 0; g < 2; g++) {
        for (int p = 0; p < 2; p++) {
            double m[10];
            for (int k = 0; k < 10; k++) {
                for (unsigned i = 0; i < cfg.rounds; i++) {
                    const struct phase_stats *ps = &res[i][g].ph[p];
                    double x[10] = {(double)ps->n,
                                    ps->p50,
                                    ps->p99,
                                    ps->p999,
                                    ps->max,
                                    (double)ps->over,
                                    (double)ps->on_cpu,
                                    (double)ps->off_vol,
                                    (double)ps->off_invol,
                                    ps->store_max};
                    tmp[i] = x[k];
                }
                m[k] = median(tmp, cfg.rounds);
            }
            printf("  %-8s %-14s %9.0f %7.2f %7.2f %8.2f %9.1f %6.1f %6.1f %8.1f %9.1f %10.3f\n",
                   g == 0 ? "growth" : "baseline", phase_name(p), m[0], m[1], m[2], m[3], m[4],
                   m[5], m[6], m[7], m[8], m[9]);
        }
    }
    unsigned pmin = res[0][0].pmin, pmax = res[0][0].pmax;
    for (unsigned i = 1; i < cfg.rounds; i++) {
        pmin = res[i][0].pmin < pmin ? res[i][0].pmin : pmin;
        pmax = res[i][0].pmax > pmax ? res[i][0].pmax : pmax;
    }
    printf("  growth runs: hash power %u -> %u\n", pmin, pmax);
    free(tmp);
    free(res);
    free(r);
    free(ops);
    free(slow);
    free(scratch);
    free(wall_ns);
    free(start_us);
    return 0;
}

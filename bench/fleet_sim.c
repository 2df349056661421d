/*
 * fleet_sim.c - what a large fleet looks like to libmemstash's placement:
 * for N nodes and K keys, how evenly each distribution spreads the keys,
 * and how many keys move when one node is lost or one is added.
 *
 * It runs the real placement code (src/client/dist.c, linked from the
 * in-tree libmemstash static library), not a model of it, over synthetic
 * node names ("10.<a>.<b>.<c>:11211") and keys ("key:<i>"). No I/O.
 *
 * For each distribution:
 *   - load: keys per node (per unit of weight for the weighted mix), as
 *     max/mean, min/mean and stddev/mean;
 *   - loss: for T evenly spaced nodes, the node is taken out of the list and
 *     the fraction of keys whose node changed is measured (ideal 1/N), with
 *     how many of them did not belong to the lost node (ideal 0);
 *   - addition: for T new node names, a node is appended and the fraction
 *     moved is measured (ideal 1/(N+1)), with how many did not move to it.
 *
 *   fleet_sim [--nodes N] [--keys K] [--trials T] [--csv FILE]
 *
 * Bounded: at most 1,000 nodes, 10,000,000 keys, 50 trials.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dist.h"

#define MAX_NODES  1000
#define MAX_KEYS   10000000UL
#define MAX_TRIALS 50

struct mode {
    const char *name;
    enum dist_mode dist;
    enum hash_alg hash;
    bool weighted;
    bool mixed_weights; /* every 4th node has weight 2 */
};

static const struct mode modes[] = {
    {"ketama", DIST_KETAMA, HASH_DEFAULT, false, false},
    {"ketama-md5", DIST_KETAMA, HASH_MD5, false, false},
    /* MST_DIST_KETAMA_WEIGHTED (memstash -d ketama-weighted) hashes keys with MD5. */
    {"ketama-weighted", DIST_KETAMA, HASH_MD5, true, false},
    {"ketama-weighted-mix", DIST_KETAMA, HASH_MD5, true, true},
    {"modula", DIST_MODULA, HASH_DEFAULT, false, false},
    {"python", DIST_PYTHON, HASH_DEFAULT, false, false},
};

struct fleet {
    size_t nkeys;
    char *keybuf; /* keys, each NUL-terminated, at keyoff[i] */
    uint32_t *keyoff;
    uint8_t *keylen;
    char names[MAX_NODES + MAX_TRIALS][24];
};

struct moves {
    double mean, min, max; /* fraction of keys moved over the trials */
    uint64_t stray;        /* moved keys not of the lost node / not to the new one */
};

struct row {
    const struct mode *m;
    double max_mean, min_mean, cv;
    struct moves loss, add;
    double ms; /* placement time per key pass, milliseconds */
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static bool parse_count(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || !*s || *s == '-' || v == 0 || v > max) {
        return false;
    }
    *out = v;
    return true;
}

static int fleet_init(struct fleet *f, size_t nkeys)
{
    f->nkeys = nkeys;
    f->keybuf = malloc(nkeys * 16);
    f->keyoff = malloc(nkeys * sizeof(*f->keyoff));
    f->keylen = malloc(nkeys);
    if (!f->keybuf || !f->keyoff || !f->keylen) {
        return -1;
    }
    size_t off = 0;
    for (size_t i = 0; i < nkeys; i++) {
        int n = snprintf(f->keybuf + off, 16, "key:%zu", i);
        f->keyoff[i] = (uint32_t)off;
        f->keylen[i] = (uint8_t)n;
        off += (size_t)n + 1;
    }
    for (size_t i = 0; i < MAX_NODES + MAX_TRIALS; i++) {
        snprintf(f->names[i], sizeof(f->names[i]), "10.%zu.%zu.%zu", (i >> 16) & 255,
                 (i >> 8) & 255, i & 255);
    }
    return 0;
}

static void fleet_deinit(struct fleet *f)
{
    free(f->keybuf);
    free(f->keyoff);
    free(f->keylen);
}

/*
 * Places every key on the servers; owner[i] gets the index into ids[] of the
 * node that holds key i, translated to a node id through ids[].
 */
static int place(const struct fleet *f, const struct mode *m, const size_t *ids, size_t n,
                 uint32_t *owner)
{
    struct dist_server *srv = calloc(n, sizeof(*srv));
    if (!srv) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        srv[i].host = f->names[ids[i]];
        srv[i].port = 11211;
        srv[i].weight = (m->mixed_weights && ids[i] % 4 == 3) ? 2 : 1;
        srv[i].live = true;
    }
    struct dist_config cfg = {
        .mode = m->dist,
        .hash = m->hash,
        .weighted = m->weighted,
        .python_or_one = true,
    };
    struct dist d;
    dist_init(&d, &cfg);
    int rc = dist_build(&d, srv, n);
    for (size_t k = 0; rc == 0 && k < f->nkeys; k++) {
        long s = dist_lookup(&d, f->keybuf + f->keyoff[k], f->keylen[k]);
        if (s < 0) {
            rc = -1;
        } else {
            owner[k] = (uint32_t)ids[s];
        }
    }
    dist_deinit(&d);
    free(srv);
    return rc;
}

static void moves_add(struct moves *mv, double frac, int trial)
{
    mv->mean += frac;
    if (trial == 0 || frac < mv->min) {
        mv->min = frac;
    }
    if (trial == 0 || frac > mv->max) {
        mv->max = frac;
    }
}

static int simulate(const struct fleet *f, const struct mode *m, size_t nodes, size_t trials,
                    struct row *r)
{
    size_t nk = f->nkeys;
    uint32_t *base = malloc(nk * sizeof(*base));
    uint32_t *other = malloc(nk * sizeof(*other));
    size_t *ids = malloc((nodes + 1) * sizeof(*ids));
    double *per = calloc(nodes, sizeof(*per));
    int rc = -1;
    if (!base || !other || !ids || !per) {
        goto out;
    }
    memset(r, 0, sizeof(*r));
    r->m = m;
    for (size_t i = 0; i < nodes; i++) {
        ids[i] = i;
    }
    double t0 = now_ms();
    if (place(f, m, ids, nodes, base) != 0) {
        goto out;
    }
    r->ms = now_ms() - t0;

    /* Load per unit of weight, so a weight-2 node is judged against twice the mean. */
    double units = 0;
    for (size_t i = 0; i < nodes; i++) {
        units += (m->mixed_weights && i % 4 == 3) ? 2 : 1;
    }
    for (size_t k = 0; k < nk; k++) {
        per[base[k]] += 1;
    }
    double mean = (double)nk / units, max = 0, min = INFINITY, var = 0;
    for (size_t i = 0; i < nodes; i++) {
        double w = (m->mixed_weights && i % 4 == 3) ? 2 : 1;
        double v = per[i] / w;
        max = v > max ? v : max;
        min = v < min ? v : min;
        var += (v - mean) * (v - mean);
    }
    r->max_mean = max / mean;
    r->min_mean = min / mean;
    r->cv = sqrt(var / (double)nodes) / mean;

    for (size_t t = 0; t < trials; t++) {
        /* Loss: drop node `lost` from the list. */
        size_t lost = t * nodes / trials, n = 0;
        for (size_t i = 0; i < nodes; i++) {
            if (i != lost) {
                ids[n++] = i;
            }
        }
        if (place(f, m, ids, n, other) != 0) {
            goto out;
        }
        size_t moved = 0;
        for (size_t k = 0; k < nk; k++) {
            if (other[k] != base[k]) {
                moved++;
                r->loss.stray += base[k] != lost;
            }
        }
        moves_add(&r->loss, (double)moved / (double)nk, (int)t);

        /* Addition: append a new node (a different name each trial). */
        for (size_t i = 0; i < nodes; i++) {
            ids[i] = i;
        }
        size_t added = MAX_NODES + t;
        ids[nodes] = added;
        if (place(f, m, ids, nodes + 1, other) != 0) {
            goto out;
        }
        moved = 0;
        for (size_t k = 0; k < nk; k++) {
            if (other[k] != base[k]) {
                moved++;
                r->add.stray += other[k] != added;
            }
        }
        moves_add(&r->add, (double)moved / (double)nk, (int)t);
    }
    r->loss.mean /= (double)trials;
    r->add.mean /= (double)trials;
    rc = 0;
out:
    free(base);
    free(other);
    free(ids);
    free(per);
    return rc;
}

static const char usage[] = "usage: fleet_sim [--nodes N] [--keys K] [--trials T] [--csv FILE]\n"
                            "  defaults: 100 nodes, 1000000 keys, 5 trials; at most 1000 nodes,\n"
                            "  10000000 keys, 50 trials\n";

int main(int argc, char **argv)
{
    unsigned long nodes = 100, nkeys = 1000000, trials = 5;
    const char *csv = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = v != NULL;
        if (strcmp(a, "--nodes") == 0 && ok) {
            ok = parse_count(v, MAX_NODES, &nodes) && nodes >= 2;
        } else if (strcmp(a, "--keys") == 0 && ok) {
            ok = parse_count(v, MAX_KEYS, &nkeys);
        } else if (strcmp(a, "--trials") == 0 && ok) {
            ok = parse_count(v, MAX_TRIALS, &trials);
        } else if (strcmp(a, "--csv") == 0 && ok) {
            csv = v;
        } else {
            ok = false;
        }
        if (!ok) {
            fputs(usage, stderr);
            return 2;
        }
        i++;
    }
    if (trials > nodes) {
        trials = nodes;
    }

    struct fleet f;
    if (fleet_init(&f, nkeys) != 0) {
        fprintf(stderr, "fleet_sim: out of memory\n");
        fleet_deinit(&f);
        return 1;
    }
    size_t nmodes = sizeof(modes) / sizeof(modes[0]);
    struct row rows[sizeof(modes) / sizeof(modes[0])];
    for (size_t i = 0; i < nmodes; i++) {
        if (simulate(&f, &modes[i], nodes, trials, &rows[i]) != 0) {
            fprintf(stderr, "fleet_sim: %s failed (out of memory?)\n", modes[i].name);
            fleet_deinit(&f);
            return 1;
        }
    }
    fleet_deinit(&f);

    printf("fleet_sim: %lu nodes, %lu keys, %lu trials; ideal moved: loss 1/N = %.4f, "
           "add 1/(N+1) = %.4f\n\n",
           nodes, nkeys, trials, 1.0 / (double)nodes, 1.0 / (double)(nodes + 1));
    printf("| distribution | keys/node max/mean | min/mean | stddev/mean | loss: moved (min-max) "
           "| loss: not the lost node's | add: moved (min-max) | add: not to the new node "
           "| ms per 1M keys |\n");
    printf("|---|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < nmodes; i++) {
        const struct row *r = &rows[i];
        printf("| %s | %.3f | %.3f | %.3f | %.4f (%.4f-%.4f) | %.4f | %.4f (%.4f-%.4f) | %.4f "
               "| %.0f |\n",
               r->m->name, r->max_mean, r->min_mean, r->cv, r->loss.mean, r->loss.min, r->loss.max,
               (double)r->loss.stray / (double)(nkeys * trials), r->add.mean, r->add.min,
               r->add.max, (double)r->add.stray / (double)(nkeys * trials),
               r->ms * 1e6 / (double)nkeys);
    }
    if (csv) {
        FILE *out = fopen(csv, "w");
        if (!out) {
            fprintf(stderr, "fleet_sim: %s: %s\n", csv, strerror(errno));
            return 1;
        }
        fprintf(out, "distribution,nodes,keys,trials,max_mean,min_mean,stddev_mean,"
                     "loss_moved,loss_moved_min,loss_moved_max,loss_stray,add_moved,"
                     "add_moved_min,add_moved_max,add_stray,ideal_loss,ideal_add\n");
        for (size_t i = 0; i < nmodes; i++) {
            const struct row *r = &rows[i];
            fprintf(out,
                    "%s,%lu,%lu,%lu,%.4f,%.4f,%.4f,%.5f,%.5f,%.5f,%.5f,%.5f,%.5f,%.5f,%.5f,"
                    "%.5f,%.5f\n",
                    r->m->name, nodes, nkeys, trials, r->max_mean, r->min_mean, r->cv, r->loss.mean,
                    r->loss.min, r->loss.max, (double)r->loss.stray / (double)(nkeys * trials),
                    r->add.mean, r->add.min, r->add.max,
                    (double)r->add.stray / (double)(nkeys * trials), 1.0 / (double)nodes,
                    1.0 / (double)(nodes + 1));
        }
        if (fclose(out) != 0) {
            fprintf(stderr, "fleet_sim: %s: %s\n", csv, strerror(errno));
            return 1;
        }
    }
    return 0;
}

/*
 * top.c - `memstash top` (see top.h).
 *
 * Each frame reads `stats` from every server and prints, per server and in
 * total, the rates of change since the previous frame. Counters that went
 * down (a restart, `stats reset`) count from zero. On a terminal each frame
 * replaces the last; otherwise (or with --json) frames follow each other.
 */
#include "top.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "memstash/memstash.h"

enum {
    C_CMD_GET,
    C_GET_HITS,
    C_CMD_SET,
    C_DELETE_HITS,
    C_DELETE_MISSES,
    C_INCR_HITS,
    C_INCR_MISSES,
    C_DECR_HITS,
    C_DECR_MISSES,
    C_CAS_HITS,
    C_CAS_MISSES,
    C_CAS_BADVAL,
    C_CMD_TOUCH,
    C_EVICTIONS,
    C_TOTAL_CONNECTIONS,
    C_BYTES_READ,
    C_BYTES_WRITTEN,
    /* gauges */
    C_CURR_ITEMS,
    C_BYTES,
    C_LIMIT_MAXBYTES,
    C_CURR_CONNECTIONS,
    C_N,
};
#define FIRST_GAUGE C_CURR_ITEMS

static const char *const stat_names[C_N] = {
    "cmd_get",          "get_hits",      "cmd_set",    "delete_hits", "delete_misses",
    "incr_hits",        "incr_misses",   "decr_hits",  "decr_misses", "cas_hits",
    "cas_misses",       "cas_badval",    "cmd_touch",  "evictions",   "total_connections",
    "bytes_read",       "bytes_written", "curr_items", "bytes",       "limit_maxbytes",
    "curr_connections",
};

struct sample {
    bool up;
    uint64_t v[C_N];
};

/* What a frame shows for one server (or the total). */
struct rates {
    bool up;
    double get, set, del, arith, cas, touch, evict, rd, wr;
    double hit_ratio; /* < 0: no gets in the interval */
    uint64_t items, bytes, limit, conns, evictions;
};

static int on_stat(void *arg, size_t server, const char *name, size_t nname, const char *value,
                   size_t nvalue)
{
    (void)server;
    struct sample *s = arg;
    for (int i = 0; i < C_N; i++) {
        if (strlen(stat_names[i]) == nname && memcmp(stat_names[i], name, nname) == 0) {
            char tmp[32];
            size_t n = nvalue < sizeof(tmp) - 1 ? nvalue : sizeof(tmp) - 1;
            memcpy(tmp, value, n);
            tmp[n] = '\0';
            s->v[i] = strtoull(tmp, NULL, 10);
            break;
        }
    }
    return 0;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void take(struct mst *m, struct sample *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof(out[i]));
        out[i].up = mst_stats(m, i, NULL, on_stat, &out[i]) == MST_OK;
    }
}

static double per_s(uint64_t now, uint64_t before, double secs)
{
    return now >= before ? (double)(now - before) / secs : (double)now / secs;
}

static void compute(const struct sample *a, const struct sample *b, double secs, struct rates *r)
{
    memset(r, 0, sizeof(*r));
    r->up = a->up && b->up;
    r->hit_ratio = -1;
    if (!r->up) {
        return;
    }
    uint64_t d[FIRST_GAUGE];
    for (int i = 0; i < FIRST_GAUGE; i++) {
        d[i] = b->v[i] >= a->v[i] ? b->v[i] - a->v[i] : b->v[i];
    }
    r->get = per_s(b->v[C_CMD_GET], a->v[C_CMD_GET], secs);
    r->set = per_s(b->v[C_CMD_SET], a->v[C_CMD_SET], secs);
    r->del = (double)(d[C_DELETE_HITS] + d[C_DELETE_MISSES]) / secs;
    r->arith =
        (double)(d[C_INCR_HITS] + d[C_INCR_MISSES] + d[C_DECR_HITS] + d[C_DECR_MISSES]) / secs;
    r->cas = (double)(d[C_CAS_HITS] + d[C_CAS_MISSES] + d[C_CAS_BADVAL]) / secs;
    r->touch = (double)d[C_CMD_TOUCH] / secs;
    r->evict = (double)d[C_EVICTIONS] / secs;
    r->rd = (double)d[C_BYTES_READ] / secs;
    r->wr = (double)d[C_BYTES_WRITTEN] / secs;
    if (d[C_CMD_GET] > 0) {
        r->hit_ratio = (double)d[C_GET_HITS] / (double)d[C_CMD_GET];
    }
    r->items = b->v[C_CURR_ITEMS];
    r->bytes = b->v[C_BYTES];
    r->limit = b->v[C_LIMIT_MAXBYTES];
    r->conns = b->v[C_CURR_CONNECTIONS];
    r->evictions = b->v[C_EVICTIONS];
}

/* Adds r into the total; the total's hit ratio is recomputed by the caller. */
static void add(struct rates *t, const struct rates *r, double *gets, double *hits)
{
    if (!r->up) {
        return;
    }
    t->up = true;
    t->get += r->get;
    t->set += r->set;
    t->del += r->del;
    t->arith += r->arith;
    t->cas += r->cas;
    t->touch += r->touch;
    t->evict += r->evict;
    t->rd += r->rd;
    t->wr += r->wr;
    t->items += r->items;
    t->bytes += r->bytes;
    t->limit += r->limit;
    t->conns += r->conns;
    t->evictions += r->evictions;
    if (r->hit_ratio >= 0) {
        *gets += r->get;
        *hits += r->get * r->hit_ratio;
    }
}

static void print_json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') {
            putchar('\\');
        }
        putchar(*s);
    }
    putchar('"');
}

static void print_json_rates(const char *name, const struct rates *r)
{
    printf("{\"server\": ");
    print_json_string(name);
    printf(", \"up\": %s", r->up ? "true" : "false");
    if (r->up) {
        printf(", \"get_per_s\": %.1f, \"set_per_s\": %.1f, \"delete_per_s\": %.1f, "
               "\"incr_decr_per_s\": %.1f, \"cas_per_s\": %.1f, \"touch_per_s\": %.1f, ",
               r->get, r->set, r->del, r->arith, r->cas, r->touch);
        if (r->hit_ratio >= 0) {
            printf("\"hit_ratio\": %.4f, ", r->hit_ratio);
        } else {
            printf("\"hit_ratio\": null, ");
        }
        printf("\"items\": %llu, \"bytes\": %llu, \"limit_maxbytes\": %llu, "
               "\"evictions\": %llu, \"evictions_per_s\": %.1f, \"connections\": %llu, "
               "\"read_bytes_per_s\": %.1f, \"written_bytes_per_s\": %.1f",
               (unsigned long long)r->items, (unsigned long long)r->bytes,
               (unsigned long long)r->limit, (unsigned long long)r->evictions, r->evict,
               (unsigned long long)r->conns, r->rd, r->wr);
    }
    printf("}");
}

static void print_row(const char *name, const struct rates *r)
{
    if (!r->up) {
        printf("%-22.22s  %s\n", name, "down");
        return;
    }
    char hit[16];
    if (r->hit_ratio >= 0) {
        snprintf(hit, sizeof(hit), "%5.1f", r->hit_ratio * 100.0);
    } else {
        snprintf(hit, sizeof(hit), "%5s", "-");
    }
    double mb = (double)r->bytes / (1024.0 * 1024.0);
    double pct = r->limit ? 100.0 * (double)r->bytes / (double)r->limit : 0.0;
    printf("%-22.22s %9.0f %8.0f %7.0f %7.0f %6s %10llu %9.1f %5.1f %8.0f %6llu %9.1f %9.1f\n",
           name, r->get, r->set, r->del, r->arith + r->cas + r->touch, hit,
           (unsigned long long)r->items, mb, pct, r->evict, (unsigned long long)r->conns,
           r->rd / 1024.0, r->wr / 1024.0);
}

static void print_frame(struct mst *m, const struct rates *rows, const struct rates *total,
                        size_t n, double secs, bool screen, bool json)
{
    char when[32];
    time_t t = time(NULL);
    struct tm tmv;
    strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", localtime_r(&t, &tmv));
    if (json) {
        printf("{\"time\": %lld, \"interval_s\": %.3f, \"servers\": [", (long long)t, secs);
        for (size_t i = 0; i < n; i++) {
            printf("%s", i ? ", " : "");
            print_json_rates(mst_server_name(m, i), &rows[i]);
        }
        printf("], \"total\": ");
        print_json_rates("total", total);
        printf("}\n");
        fflush(stdout);
        return;
    }
    if (screen) {
        printf("\033[H\033[2J");
    }
    printf("memstash top - %s - %zu server%s - every %.1f s\n\n", when, n, n == 1 ? "" : "s", secs);
    printf("%-22s %9s %8s %7s %7s %6s %10s %9s %5s %8s %6s %9s %9s\n", "SERVER", "GET/s", "SET/s",
           "DEL/s", "OTHER/s", "HIT%", "ITEMS", "MEM MB", "MEM%", "EVICT/s", "CONNS", "IN KB/s",
           "OUT KB/s");
    for (size_t i = 0; i < n; i++) {
        print_row(mst_server_name(m, i), &rows[i]);
    }
    if (n > 1) {
        print_row("total", total);
    }
    if (!screen) {
        printf("\n");
    }
    fflush(stdout);
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

int top_run(struct mst *m, const struct top_opts *o)
{
    size_t n = mst_server_count(m);
    struct sample *prev = calloc(n ? n : 1, sizeof(*prev));
    struct sample *cur = calloc(n ? n : 1, sizeof(*cur));
    struct rates *rows = calloc(n ? n : 1, sizeof(*rows));
    if (!prev || !cur || !rows) {
        free(prev);
        free(cur);
        free(rows);
        fprintf(stderr, "memstash: out of memory\n");
        return 3;
    }
    bool screen = !o->json && isatty(STDOUT_FILENO);
    unsigned interval = o->interval_ms ? o->interval_ms : 1000;
    uint64_t t_prev = now_ms();
    take(m, prev, n);
    uint64_t next = t_prev + interval;
    bool any_up = false;
    for (uint64_t frame = 0; o->frames == 0 || frame < o->frames; frame++) {
        uint64_t now = now_ms();
        if (next > now) {
            sleep_ms(next - now);
        }
        next += interval;
        take(m, cur, n);
        uint64_t t_cur = now_ms();
        double secs = (double)(t_cur - t_prev) / 1000.0;
        if (secs <= 0) {
            secs = 0.001;
        }
        struct rates total;
        memset(&total, 0, sizeof(total));
        double gets = 0, hits = 0;
        for (size_t i = 0; i < n; i++) {
            compute(&prev[i], &cur[i], secs, &rows[i]);
            add(&total, &rows[i], &gets, &hits);
            any_up |= rows[i].up;
        }
        total.hit_ratio = gets > 0 ? hits / gets : -1;
        print_frame(m, rows, &total, n, secs, screen, o->json);
        struct sample *tmp = prev;
        prev = cur;
        cur = tmp;
        t_prev = t_cur;
    }
    free(prev);
    free(cur);
    free(rows);
    return any_up ? 0 : 3;
}

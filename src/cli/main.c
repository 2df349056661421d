/*
 * main.c - the memstash command-line tool: one binary with subcommands
 * (get, set, add, replace, delete, touch, incr, decr, stats, flush, version,
 * ping, locate, dump, bench, top) over libmemstash. It parses options, configures
 * a handle, runs one command and maps the result to an exit code; the
 * library (and bench.c for the load generator) does the rest.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "top.h"
#include "loadgen.h"
#include "memstash/memstash.h"

/* Exit codes (documented in --help). */
enum {
    EXIT_OK = 0,
    EXIT_OUTCOME = 1, /* miss, not stored, not found, exists */
    EXIT_USAGE = 2,
    EXIT_FAILURE_ = 3, /* a server could not be reached or answered with an error */
    EXIT_BADKEY = 4,
    EXIT_NOTSUP = 5, /* dump: the server has no dump facility */
};

static const char usage_text[] =
    "usage: memstash [options] <command> [arguments]\n"
    "\n"
    "commands:\n"
    "  get KEY...                 print values (one multi-get over all servers)\n"
    "  set KEY VALUE              store (VALUE '-' reads standard input)\n"
    "  add KEY VALUE              store if absent\n"
    "  replace KEY VALUE          store if present\n"
    "  delete KEY...              delete keys\n"
    "  touch KEY EXPTIME          set a new expiry time\n"
    "  incr KEY [DELTA]           add DELTA (default 1); --initial N creates a missing key\n"
    "  decr KEY [DELTA]           subtract DELTA (default 1), floored at 0\n"
    "  stats [GROUP]              statistics of every server\n"
    "  flush [DELAY]              flush_all on every server\n"
    "  version                    version of every server\n"
    "  ping                       check that every server answers\n"
    "  locate KEY...              which server holds each key (no I/O); KEY '-' reads\n"
    "                             keys from standard input, one per line\n"
    "  dump                       list every server's keys and values (lru_crawler\n"
    "                             metadump/mgdump); --keys-only skips the values\n"
    "  bench                      load generator: progress every second, then ops/s and\n"
    "                             a latency histogram (p50/p90/p99/p99.9); see below\n"
    "  top                        live view of every server, refreshed every second:\n"
    "                             ops/s by command, hit ratio, memory, items, evictions,\n"
    "                             connections (--interval MS, --count FRAMES, --json)\n"
    "\n"
    "options:\n"
    "  -s, --servers LIST         servers: host[:port[:weight]], [v6]:port, /unix/path,\n"
    "                             comma separated (default: $MEMSTASH_SERVERS, else\n"
    "                             127.0.0.1:11211)\n"
    "  -d, --distribution NAME    ketama (libmemcached KETAMA, default), ketama-weighted,\n"
    "                             ketama-spy, modula, python (python-memcached 1.59),\n"
    "                             python-new (python-memcached 1.60+)\n"
    "  -H, --hash NAME            key hash for ketama/modula: default (one-at-a-time),\n"
    "                             md5, crc, fnv1_64, fnv1a_64, fnv1_32, fnv1a_32, murmur,\n"
    "                             jenkins, murmur3\n"
    "  -t, --timeout MS           connect and I/O timeout in milliseconds (default 1000)\n"
    "  -n, --namespace PREFIX     key prefix\n"
    "      --no-failover          fail keys of a dead server instead of moving them\n"
    "      --failure-limit N      failures that mark a server dead (default 1)\n"
    "      --retry-interval MS    how long a dead server is skipped (default 2000)\n"
    "  -f, --flags N              set/add/replace: client flags (default 0)\n"
    "  -e, --exptime SECONDS      set/add/replace/incr --initial: expiry (default 0)\n"
    "  -i, --initial N            incr/decr: create a missing key with N\n"
    "  -P, --protocol NAME        meta (default; text with servers older than memcached\n"
    "                             1.6), text or binary\n"
    "  -b, --binary               same as --protocol binary\n"
    "  -j, --json                 machine-readable output\n"
    "  -h, --help                 this help\n"
    "  -V, --version              print the tool's version\n"
    "\n"
    "dump options:\n"
    "      --keys-only            list keys (with expiry and CAS) without fetching values\n"
    "\n"
    "bench options (bounded by --time and/or --count, whichever comes first):\n"
    "      --time SECONDS         run time (default 10, none when only --count is given)\n"
    "      --count N              total operations (default: no limit)\n"
    "      --ratio GET:SET        operation mix (default 9:1)\n"
    "      --multi N              keys per get, as one multi-get (default 1)\n"
    "      --value-size BYTES     value size for sets (default 100)\n"
    "      --connections N        concurrent clients, one thread and one connection per\n"
    "                             server each (default 4)\n"
    "      --keys N               key space (default 10000)\n"
    "      --zipf S               Zipf popularity with exponent S (default 0: uniform)\n"
    "      --no-prefill           do not store every key before measuring\n"
    "      --threads N            the epoll engine: N client threads share the connections\n"
    "                             and speak --protocol text (default), meta or binary to\n"
    "                             the first server; reports the client's CPU per op\n"
    "      --pipeline N           epoll engine: requests in flight per connection (1)\n"
    "      --rate OPS             epoll engine: open loop at OPS requests/s in all, latency\n"
    "                             counted from when each request was due (default: closed)\n"
    "      --key-size BYTES       epoll engine: key length (default 32)\n"
    "      --cdf FILE             epoll engine: write the latency CDF (us fraction) to FILE\n"
    "\n"
    "exit codes:\n"
    "  0  success\n"
    "  1  cache outcome: a key was missing, not stored, not found, or changed (exists)\n"
    "  2  usage error (bad option, command or argument)\n"
    "  3  failure: a server could not be reached, timed out, or answered with an error\n"
    "  4  bad key (empty, over 250 bytes, or holding a space or control character)\n"
    "  5  dump: a server has no dump facility (lru_crawler metadump or mgdump)\n";

struct opts {
    const char *servers;
    const char *distribution;
    const char *hash;
    const char *ns;
    unsigned timeout_ms;
    bool no_failover;
    unsigned failure_limit;
    unsigned retry_ms;
    uint32_t flags;
    int32_t exptime;
    bool has_initial;
    uint64_t initial;
    const char *protocol;
    bool json;
    bool keys_only;
    unsigned interval_ms; /* top */
    struct bench_opts bench;
};

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "memstash: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'memstash --help'.\n");
    return EXIT_USAGE;
}

static bool parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+') {
        return false;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) {
        return false;
    }
    *out = v;
    return true;
}

static bool parse_i32(const char *s, int32_t *out)
{
    if (!s || !*s) {
        return false;
    }
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < INT32_MIN || v > INT32_MAX) {
        return false;
    }
    *out = (int32_t)v;
    return true;
}

/* ---- JSON output -------------------------------------------------------- */

static void json_str(FILE *f, const char *s, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc(c, f);
        } else if (c == '\n') {
            fputs("\\n", f);
        } else if (c == '\r') {
            fputs("\\r", f);
        } else if (c == '\t') {
            fputs("\\t", f);
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(f, "\\u%04x", c);
        } else {
            fputc(c, f);
        }
    }
    fputc('"', f);
}

static void json_cstr(FILE *f, const char *s)
{
    json_str(f, s, strlen(s));
}

/* ---- Results ------------------------------------------------------------ */

static int exit_for(int rc)
{
    if (rc == MST_OK) {
        return EXIT_OK;
    }
    if (rc == MST_EBADKEY) {
        return EXIT_BADKEY;
    }
    return EXIT_FAILURE_;
}

static int report_failure(struct mst *m, const char *what, int rc)
{
    const char *detail = mst_last_error(m);
    if (*detail) {
        fprintf(stderr, "memstash: %s: %s (%s)\n", what, mst_strerror(rc), detail);
    } else {
        fprintf(stderr, "memstash: %s: %s\n", what, mst_strerror(rc));
    }
    return exit_for(rc);
}

/* ---- Commands ----------------------------------------------------------- */

struct get_ctx {
    int argc;
    char **argv;
    bool *found;
    struct mst_value *vals;
};

static int on_item(void *arg, const char *key, size_t nkey, const char *data, size_t len,
                   uint32_t flags, uint64_t cas)
{
    struct get_ctx *g = arg;
    for (int i = 0; i < g->argc; i++) {
        if (!g->found[i] && strlen(g->argv[i]) == nkey && memcmp(g->argv[i], key, nkey) == 0) {
            char *copy = malloc(len + 1);
            if (!copy) {
                return 1;
            }
            memcpy(copy, data, len);
            copy[len] = '\0';
            g->vals[i].data = copy;
            g->vals[i].len = len;
            g->vals[i].flags = flags;
            g->vals[i].cas = cas;
            g->found[i] = true;
        }
    }
    return 0;
}

static int cmd_get(struct mst *m, const struct opts *o, int argc, char **argv)
{
    if (argc < 1) {
        return usage_error("%s: get needs at least one key", "get");
    }
    const char **keys = calloc((size_t)argc, sizeof(*keys));
    size_t *nkeys = calloc((size_t)argc, sizeof(*nkeys));
    bool *found = calloc((size_t)argc, sizeof(*found));
    struct mst_value *vals = calloc((size_t)argc, sizeof(*vals));
    if (!keys || !nkeys || !found || !vals) {
        fprintf(stderr, "memstash: out of memory\n");
        free(keys);
        free(nkeys);
        free(found);
        free(vals);
        return EXIT_FAILURE_;
    }
    for (int i = 0; i < argc; i++) {
        keys[i] = argv[i];
        nkeys[i] = strlen(argv[i]);
    }
    struct get_ctx g = {argc, argv, found, vals};
    int rc = mst_get_multi(m, keys, nkeys, (size_t)argc, true, on_item, &g);
    int code = EXIT_OK;
    if (rc != MST_OK && rc != MST_ESOME) {
        code = report_failure(m, "get", rc);
    } else {
        if (rc == MST_ESOME) {
            report_failure(m, "get", rc);
        }
        if (o->json) {
            printf("{");
            for (int i = 0; i < argc; i++) {
                printf("%s", i ? ", " : "");
                json_cstr(stdout, argv[i]);
                if (found[i]) {
                    printf(": {\"value\": ");
                    json_str(stdout, vals[i].data, vals[i].len);
                    printf(", \"flags\": %" PRIu32 ", \"cas\": %" PRIu64 "}", vals[i].flags,
                           vals[i].cas);
                } else {
                    printf(": null");
                }
            }
            printf("}\n");
        } else {
            for (int i = 0; i < argc; i++) {
                if (!found[i]) {
                    continue;
                }
                if (argc > 1) {
                    printf("%s: ", argv[i]);
                }
                fwrite(vals[i].data, 1, vals[i].len, stdout);
                fputc('\n', stdout);
            }
        }
        for (int i = 0; i < argc; i++) {
            if (!found[i]) {
                if (!o->json) {
                    fprintf(stderr, "memstash: %s: not found\n", argv[i]);
                }
                code = EXIT_OUTCOME;
            }
        }
        if (rc == MST_ESOME) {
            code = EXIT_FAILURE_;
        }
    }
    for (int i = 0; i < argc; i++) {
        mst_value_clear(&vals[i]);
    }
    free(keys);
    free(nkeys);
    free(found);
    free(vals);
    return code;
}

static char *read_stdin(size_t *len)
{
    size_t cap = 4096, n = 0;
    char *p = malloc(cap);
    if (!p) {
        return NULL;
    }
    for (;;) {
        if (n == cap) {
            char *q = realloc(p, cap * 2);
            if (!q) {
                free(p);
                return NULL;
            }
            p = q;
            cap *= 2;
        }
        size_t r = fread(p + n, 1, cap - n, stdin);
        n += r;
        if (r == 0) {
            break;
        }
    }
    *len = n;
    return p;
}

static int print_outcome(const struct opts *o, const char *key, enum mst_outcome out, bool good)
{
    if (o->json) {
        printf("{\"key\": ");
        json_cstr(stdout, key);
        printf(", \"outcome\": \"%s\"}\n", mst_outcome_name(out));
    } else {
        printf("%s\n", mst_outcome_name(out));
    }
    return good ? EXIT_OK : EXIT_OUTCOME;
}

static int cmd_store(struct mst *m, const struct opts *o, const char *cmd, int argc, char **argv)
{
    if (argc != 2) {
        return usage_error("%s needs KEY and VALUE", cmd);
    }
    const char *key = argv[0];
    size_t len;
    char *data = NULL;
    const char *value = argv[1];
    if (strcmp(value, "-") == 0) {
        data = read_stdin(&len);
        if (!data) {
            fprintf(stderr, "memstash: out of memory\n");
            return EXIT_FAILURE_;
        }
        value = data;
    } else {
        len = strlen(value);
    }
    enum mst_outcome out = MST_NONE;
    int rc;
    if (strcmp(cmd, "set") == 0) {
        rc = mst_set(m, key, strlen(key), value, len, o->flags, o->exptime, &out);
    } else if (strcmp(cmd, "add") == 0) {
        rc = mst_add(m, key, strlen(key), value, len, o->flags, o->exptime, &out);
    } else {
        rc = mst_replace(m, key, strlen(key), value, len, o->flags, o->exptime, &out);
    }
    free(data);
    if (rc != MST_OK) {
        return report_failure(m, cmd, rc);
    }
    return print_outcome(o, key, out, out == MST_STORED);
}

static int cmd_delete(struct mst *m, const struct opts *o, int argc, char **argv)
{
    if (argc < 1) {
        return usage_error("%s needs at least one key", "delete");
    }
    int code = EXIT_OK;
    for (int i = 0; i < argc; i++) {
        enum mst_outcome out;
        int rc = mst_delete(m, argv[i], strlen(argv[i]), &out);
        if (rc != MST_OK) {
            int c = report_failure(m, argv[i], rc);
            code = code > c ? code : c;
            continue;
        }
        int c = print_outcome(o, argv[i], out, out == MST_DELETED);
        code = code > c ? code : c;
    }
    return code;
}

static int cmd_arith(struct mst *m, const struct opts *o, bool incr, int argc, char **argv)
{
    const char *name = incr ? "incr" : "decr";
    if (argc < 1 || argc > 2) {
        return usage_error("%s needs KEY [DELTA]", name);
    }
    uint64_t delta = 1;
    if (argc == 2 && !parse_u64(argv[1], &delta)) {
        return usage_error("bad delta: %s", argv[1]);
    }
    uint64_t value = 0;
    enum mst_outcome out;
    const uint64_t *initial = o->has_initial ? &o->initial : NULL;
    int rc = incr ? mst_incr(m, argv[0], strlen(argv[0]), delta, initial, o->exptime, &value, &out)
                  : mst_decr(m, argv[0], strlen(argv[0]), delta, initial, o->exptime, &value, &out);
    if (rc != MST_OK) {
        return report_failure(m, name, rc);
    }
    if (out != MST_STORED) {
        return print_outcome(o, argv[0], out, false);
    }
    if (o->json) {
        printf("{\"key\": ");
        json_cstr(stdout, argv[0]);
        printf(", \"value\": %" PRIu64 "}\n", value);
    } else {
        printf("%" PRIu64 "\n", value);
    }
    return EXIT_OK;
}

static int cmd_touch(struct mst *m, const struct opts *o, int argc, char **argv)
{
    int32_t exptime;
    if (argc != 2) {
        return usage_error("%s needs KEY EXPTIME", "touch");
    }
    if (!parse_i32(argv[1], &exptime)) {
        return usage_error("bad exptime: %s", argv[1]);
    }
    enum mst_outcome out;
    int rc = mst_touch(m, argv[0], strlen(argv[0]), exptime, &out);
    if (rc != MST_OK) {
        return report_failure(m, "touch", rc);
    }
    return print_outcome(o, argv[0], out, out == MST_TOUCHED);
}

struct stats_ctx {
    bool json;
    bool first;
};

static int on_stat(void *arg, size_t server, const char *name, size_t nname, const char *value,
                   size_t nvalue)
{
    (void)server;
    struct stats_ctx *s = arg;
    if (s->json) {
        printf("%s", s->first ? "" : ", ");
        json_str(stdout, name, nname);
        printf(": ");
        json_str(stdout, value, nvalue);
    } else {
        printf("\t%.*s: %.*s\n", (int)nname, name, (int)nvalue, value);
    }
    s->first = false;
    return 0;
}

static int cmd_stats(struct mst *m, const struct opts *o, int argc, char **argv)
{
    if (argc > 1) {
        return usage_error("%s takes at most one group", "stats");
    }
    const char *group = argc ? argv[0] : NULL;
    int code = EXIT_OK;
    size_t n = mst_server_count(m);
    if (o->json) {
        printf("{");
    }
    for (size_t i = 0; i < n; i++) {
        struct stats_ctx s = {o->json, true};
        if (o->json) {
            printf("%s", i ? ", " : "");
            json_cstr(stdout, mst_server_name(m, i));
            printf(": {");
        } else {
            printf("Server: %s\n", mst_server_name(m, i));
        }
        int rc = mst_stats(m, i, group, on_stat, &s);
        if (o->json) {
            printf("}");
        }
        if (rc != MST_OK) {
            code = report_failure(m, mst_server_name(m, i), rc);
        }
    }
    if (o->json) {
        printf("}\n");
    }
    return code;
}

static int cmd_flush(struct mst *m, const struct opts *o, int argc, char **argv)
{
    int32_t delay = 0;
    if (argc > 1 || (argc == 1 && !parse_i32(argv[0], &delay))) {
        return usage_error("%s takes an optional DELAY in seconds", "flush");
    }
    int code = EXIT_OK;
    size_t n = mst_server_count(m);
    if (o->json) {
        printf("{");
    }
    for (size_t i = 0; i < n; i++) {
        int rc = mst_flush_server(m, i, delay);
        if (o->json) {
            printf("%s", i ? ", " : "");
            json_cstr(stdout, mst_server_name(m, i));
            printf(": ");
            json_cstr(stdout, rc == MST_OK ? "ok" : mst_strerror(rc));
        } else if (rc == MST_OK) {
            printf("%s: ok\n", mst_server_name(m, i));
        }
        if (rc != MST_OK) {
            code = report_failure(m, mst_server_name(m, i), rc);
        }
    }
    if (o->json) {
        printf("}\n");
    }
    return code;
}

static double elapsed_ms(const struct timespec *a)
{
    struct timespec b;
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (double)(b.tv_sec - a->tv_sec) * 1e3 + (double)(b.tv_nsec - a->tv_nsec) / 1e6;
}

static int cmd_version_ping(struct mst *m, const struct opts *o, bool ping, int argc, char **argv)
{
    (void)argv;
    if (argc != 0) {
        return usage_error("%s takes no arguments", ping ? "ping" : "version");
    }
    int code = EXIT_OK;
    size_t n = mst_server_count(m);
    if (o->json) {
        printf("{");
    }
    for (size_t i = 0; i < n; i++) {
        char ver[128];
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int rc = mst_version(m, i, ver, sizeof(ver));
        double ms = elapsed_ms(&t0);
        const char *name = mst_server_name(m, i);
        if (o->json) {
            printf("%s", i ? ", " : "");
            json_cstr(stdout, name);
            if (ping) {
                printf(": {\"ok\": %s, \"ms\": %.3f", rc == MST_OK ? "true" : "false", ms);
                if (rc != MST_OK) {
                    printf(", \"error\": ");
                    json_cstr(stdout, mst_strerror(rc));
                }
                printf("}");
            } else if (rc == MST_OK) {
                printf(": ");
                json_cstr(stdout, ver);
            } else {
                printf(": null");
            }
        } else if (rc == MST_OK) {
            if (ping) {
                printf("%s: ok (%.3f ms)\n", name, ms);
            } else {
                printf("%s: %s\n", name, ver);
            }
        }
        if (rc != MST_OK) {
            code = report_failure(m, name, rc);
        }
    }
    if (o->json) {
        printf("}\n");
    }
    return code;
}

/* One key of `locate`: prints its row and folds its exit code into *code. */
static void locate_one(struct mst *m, const struct opts *o, const char *key, bool first, int *code)
{
    size_t idx = 0;
    int rc = mst_locate(m, key, strlen(key), &idx);
    if (o->json) {
        printf("%s{\"key\": ", first ? "" : ", ");
        json_cstr(stdout, key);
        if (rc == MST_OK) {
            printf(", \"index\": %zu, \"server\": ", idx);
            json_cstr(stdout, mst_server_name(m, idx));
        } else {
            printf(", \"index\": null, \"server\": null, \"error\": ");
            json_cstr(stdout, mst_strerror(rc));
        }
        printf("}");
    } else if (rc == MST_OK) {
        printf("%s %s\n", key, mst_server_name(m, idx));
    }
    if (rc != MST_OK) {
        int c = report_failure(m, key, rc);
        *code = *code > c ? *code : c;
    }
}

/* locate KEY... or locate - (keys from standard input, one per line). */
static int cmd_locate(struct mst *m, const struct opts *o, int argc, char **argv)
{
    if (argc < 1) {
        return usage_error("%s needs at least one key", "locate");
    }
    int code = EXIT_OK;
    if (o->json) {
        printf("[");
    }
    if (argc == 1 && strcmp(argv[0], "-") == 0) {
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        bool first = true;
        while ((n = getline(&line, &cap, stdin)) >= 0) {
            while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
                line[--n] = '\0';
            }
            locate_one(m, o, line, first, &code);
            first = false;
        }
        free(line);
    } else {
        for (int i = 0; i < argc; i++) {
            locate_one(m, o, argv[i], i == 0, &code);
        }
    }
    if (o->json) {
        printf("]\n");
    }
    return code;
}

struct dump_out {
    const struct opts *o;
    struct mst *m;
    bool first;
    uint64_t items;
};

/* A value for a terminal: printable bytes as they are, the rest escaped. */
static void print_escaped(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\\') {
            fputs("\\\\", stdout);
        } else if (c == '\n') {
            fputs("\\n", stdout);
        } else if (c == '\r') {
            fputs("\\r", stdout);
        } else if (c == '\t') {
            fputs("\\t", stdout);
        } else if (c < 0x20 || c == 0x7f) {
            printf("\\x%02x", c);
        } else {
            fputc(c, stdout);
        }
    }
}

static int on_dump(void *arg, size_t server, const struct mst_dump_item *it)
{
    struct dump_out *d = arg;
    const char *key = it->key;
    size_t nkey = it->nkey;
    /* With a namespace, only its keys, shown without it. */
    size_t nns = d->o->ns ? strlen(d->o->ns) : 0;
    if (nns) {
        if (nkey <= nns || memcmp(key, d->o->ns, nns) != 0) {
            return 0;
        }
        key += nns;
        nkey -= nns;
    }
    d->items++;
    if (d->o->json) {
        printf("%s\n  {\"server\": ", d->first ? "" : ",");
        json_cstr(stdout, mst_server_name(d->m, server));
        printf(", \"key\": ");
        json_str(stdout, key, nkey);
        printf(", \"exptime\": %" PRId64 ", \"cas\": %" PRIu64, it->exptime, it->cas);
        if (it->has_value) {
            printf(", \"flags\": %" PRIu32 ", \"value\": ", it->flags);
            json_str(stdout, it->data, it->len);
        }
        printf("}");
    } else if (it->has_value) {
        print_escaped(key, nkey);
        fputs(": ", stdout);
        print_escaped(it->data, it->len);
        fputc('\n', stdout);
    } else {
        print_escaped(key, nkey);
        if (d->o->keys_only) {
            printf("  exptime=%" PRId64 " cas=%" PRIu64, it->exptime, it->cas);
        }
        fputc('\n', stdout);
    }
    d->first = false;
    return 0;
}

static int cmd_dump(struct mst *m, const struct opts *o, int argc, char **argv)
{
    (void)argv;
    if (argc != 0) {
        return usage_error("%s takes no arguments", "dump");
    }
    struct dump_out d = {o, m, true, 0};
    int code = EXIT_OK;
    if (o->json) {
        printf("[");
    }
    for (size_t i = 0; i < mst_server_count(m); i++) {
        int rc = mst_dump(m, i, !o->keys_only, on_dump, &d);
        if (rc == MST_ENOTSUP) {
            fprintf(stderr, "memstash: %s\n", mst_last_error(m));
            code = code == EXIT_OK ? EXIT_NOTSUP : code;
        } else if (rc != MST_OK) {
            int c = report_failure(m, mst_server_name(m, i), rc);
            code = c > code ? c : code;
        }
    }
    if (o->json) {
        printf("%s]\n", d.first ? "" : "\n");
    }
    return code;
}

static int cmd_bench(struct mst *m, const struct opts *o, int argc, char **argv)
{
    (void)argv;
    if (argc != 0) {
        return usage_error("%s takes options, not arguments", "bench");
    }
    struct bench_opts b = o->bench;
    b.json = o->json;
    if (b.threads > 0) {
        return loadgen_run(o->servers, o->protocol, &b);
    }
    return bench_run(m, &b);
}

/* ---- Setup -------------------------------------------------------------- */

static int pick_distribution(const char *s, enum mst_distribution *d)
{
    static const struct {
        const char *name;
        enum mst_distribution d;
    } t[] = {
        {"ketama", MST_DIST_KETAMA},
        {"consistent", MST_DIST_KETAMA},
        {"ketama-weighted", MST_DIST_KETAMA_WEIGHTED},
        {"ketama-spy", MST_DIST_KETAMA_SPY},
        {"modula", MST_DIST_MODULA},
        {"python", MST_DIST_PYTHON},
        {"python-new", MST_DIST_PYTHON_NEW},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        if (strcmp(s, t[i].name) == 0) {
            *d = t[i].d;
            return 0;
        }
    }
    return -1;
}

static int pick_hash(const char *s, enum mst_hash *h)
{
    static const struct {
        const char *name;
        enum mst_hash h;
    } t[] = {
        {"default", MST_HASH_DEFAULT},   {"md5", MST_HASH_MD5},
        {"crc", MST_HASH_CRC},           {"fnv1_64", MST_HASH_FNV1_64},
        {"fnv1a_64", MST_HASH_FNV1A_64}, {"fnv1_32", MST_HASH_FNV1_32},
        {"fnv1a_32", MST_HASH_FNV1A_32}, {"murmur", MST_HASH_MURMUR},
        {"jenkins", MST_HASH_JENKINS},   {"murmur3", MST_HASH_MURMUR3},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        if (strcmp(s, t[i].name) == 0) {
            *h = t[i].h;
            return 0;
        }
    }
    return -1;
}

static int configure(struct mst *m, const struct opts *o)
{
    int rc = mst_server_add(m, o->servers);
    if (rc != MST_OK) {
        return usage_error("bad server list: %s", o->servers);
    }
    if (o->distribution) {
        enum mst_distribution d;
        if (pick_distribution(o->distribution, &d) != 0) {
            return usage_error("unknown distribution: %s", o->distribution);
        }
        mst_set_distribution(m, d);
    }
    if (o->hash) {
        enum mst_hash h;
        if (pick_hash(o->hash, &h) != 0) {
            return usage_error("unknown hash: %s", o->hash);
        }
        mst_set_hash(m, h);
    }
    if (o->ns && mst_set_namespace(m, o->ns) != MST_OK) {
        return usage_error("bad namespace: %s", o->ns);
    }
    if (mst_set_connect_timeout(m, o->timeout_ms) != MST_OK ||
        mst_set_io_timeout(m, o->timeout_ms) != MST_OK) {
        return usage_error("bad timeout: %s", "out of range");
    }
    mst_set_failover(m, !o->no_failover);
    if (mst_set_failure_limit(m, o->failure_limit) != MST_OK) {
        return usage_error("bad failure limit: %s", "must be at least 1");
    }
    if (mst_set_retry_interval(m, o->retry_ms) != MST_OK) {
        return usage_error("bad retry interval: %s", "out of range");
    }
    if (o->protocol) {
        static const struct {
            const char *name;
            enum mst_protocol p;
        } t[] = {{"meta", MST_PROTO_META}, {"text", MST_PROTO_TEXT}, {"binary", MST_PROTO_BINARY}};
        size_t i = 0;
        while (i < sizeof(t) / sizeof(t[0]) && strcmp(o->protocol, t[i].name) != 0) {
            i++;
        }
        if (i == sizeof(t) / sizeof(t[0])) {
            return usage_error("unknown protocol: %s", o->protocol);
        }
        mst_set_protocol(m, t[i].p);
    }
    return EXIT_OK;
}

enum {
    OPT_NO_FAILOVER = 256,
    OPT_FAILURE_LIMIT,
    OPT_RETRY,
    OPT_KEYS_ONLY,
    OPT_TIME,
    OPT_COUNT,
    OPT_RATIO,
    OPT_MULTI,
    OPT_VALUE_SIZE,
    OPT_CONNECTIONS,
    OPT_KEYS,
    OPT_ZIPF,
    OPT_NO_PREFILL,
    OPT_INTERVAL,
    OPT_THREADS,
    OPT_PIPELINE,
    OPT_RATE,
    OPT_KEY_SIZE,
    OPT_CDF,
};

static bool parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        return false;
    }
    *out = v;
    return true;
}

/* The bench options; returns -1 when c is not one, else 0 or the usage exit code. */
static int bench_option(struct bench_opts *b, int c, const char *arg)
{
    uint64_t v;
    switch (c) {
    case OPT_TIME:
        return parse_double(arg, 0, 86400 * 365, &b->seconds) ? 0
                                                              : usage_error("bad --time: %s", arg);
    case OPT_COUNT:
        if (!parse_u64(arg, &b->count)) {
            return usage_error("bad --count: %s", arg);
        }
        return 0;
    case OPT_RATIO:
        return bench_parse_ratio(arg, &b->get_weight, &b->set_weight)
                   ? 0
                   : usage_error("bad --ratio (GET:SET, e.g. 9:1): %s", arg);
    case OPT_MULTI:
        if (!parse_u64(arg, &v) || v == 0 || v > 100000) {
            return usage_error("bad --multi: %s", arg);
        }
        b->multi = (unsigned)v;
        return 0;
    case OPT_VALUE_SIZE:
        if (!parse_u64(arg, &v) || v > 64 * 1024 * 1024) {
            return usage_error("bad --value-size: %s", arg);
        }
        b->value_size = (size_t)v;
        return 0;
    case OPT_CONNECTIONS:
        if (!parse_u64(arg, &v) || v == 0 || v > 4096) {
            return usage_error("bad --connections: %s", arg);
        }
        b->connections = (unsigned)v;
        return 0;
    case OPT_KEYS:
        if (!parse_u64(arg, &v) || v == 0 || v > 100000000) {
            return usage_error("bad --keys: %s", arg);
        }
        b->keys = v;
        return 0;
    case OPT_ZIPF:
        return parse_double(arg, 0, 10, &b->zipf) ? 0 : usage_error("bad --zipf: %s", arg);
    case OPT_NO_PREFILL:
        b->prefill = false;
        return 0;
    case OPT_THREADS:
        if (!parse_u64(arg, &v) || v == 0 || v > 256) {
            return usage_error("bad --threads: %s", arg);
        }
        b->threads = (unsigned)v;
        return 0;
    case OPT_PIPELINE:
        if (!parse_u64(arg, &v) || v == 0 || v > 4096) {
            return usage_error("bad --pipeline: %s", arg);
        }
        b->pipeline = (unsigned)v;
        return 0;
    case OPT_RATE:
        return parse_double(arg, 0, 1e9, &b->rate) ? 0 : usage_error("bad --rate: %s", arg);
    case OPT_KEY_SIZE:
        if (!parse_u64(arg, &v) || v < 8 || v > 250) {
            return usage_error("bad --key-size (8 to 250): %s", arg);
        }
        b->key_size = (size_t)v;
        return 0;
    case OPT_CDF:
        b->cdf_path = arg;
        return 0;
    default:
        return -1;
    }
}

int main(int argc, char **argv)
{
    struct opts o = {0};
    o.servers = getenv("MEMSTASH_SERVERS");
    o.timeout_ms = 1000;
    o.failure_limit = 1;
    o.retry_ms = 2000;
    static const struct option longopts[] = {
        {"servers", required_argument, NULL, 's'},
        {"distribution", required_argument, NULL, 'd'},
        {"hash", required_argument, NULL, 'H'},
        {"timeout", required_argument, NULL, 't'},
        {"namespace", required_argument, NULL, 'n'},
        {"no-failover", no_argument, NULL, OPT_NO_FAILOVER},
        {"failure-limit", required_argument, NULL, OPT_FAILURE_LIMIT},
        {"retry-interval", required_argument, NULL, OPT_RETRY},
        {"flags", required_argument, NULL, 'f'},
        {"exptime", required_argument, NULL, 'e'},
        {"initial", required_argument, NULL, 'i'},
        {"binary", no_argument, NULL, 'b'},
        {"protocol", required_argument, NULL, 'P'},
        {"keys-only", no_argument, NULL, OPT_KEYS_ONLY},
        {"time", required_argument, NULL, OPT_TIME},
        {"count", required_argument, NULL, OPT_COUNT},
        {"ratio", required_argument, NULL, OPT_RATIO},
        {"multi", required_argument, NULL, OPT_MULTI},
        {"value-size", required_argument, NULL, OPT_VALUE_SIZE},
        {"connections", required_argument, NULL, OPT_CONNECTIONS},
        {"keys", required_argument, NULL, OPT_KEYS},
        {"zipf", required_argument, NULL, OPT_ZIPF},
        {"no-prefill", no_argument, NULL, OPT_NO_PREFILL},
        {"interval", required_argument, NULL, OPT_INTERVAL},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"pipeline", required_argument, NULL, OPT_PIPELINE},
        {"rate", required_argument, NULL, OPT_RATE},
        {"key-size", required_argument, NULL, OPT_KEY_SIZE},
        {"cdf", required_argument, NULL, OPT_CDF},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int c;
    uint64_t v;
    bench_defaults(&o.bench);
    bool count_given = false, time_given = false;
    while ((c = getopt_long(argc, argv, "s:d:H:t:n:f:e:i:P:bjhV", longopts, NULL)) != -1) {
        int bc = bench_option(&o.bench, c, optarg);
        if (bc > 0) {
            return bc;
        }
        if (bc == 0) {
            count_given |= c == OPT_COUNT;
            time_given |= c == OPT_TIME;
            continue;
        }
        switch (c) {
        case 's':
            o.servers = optarg;
            break;
        case 'd':
            o.distribution = optarg;
            break;
        case 'H':
            o.hash = optarg;
            break;
        case 't':
            if (!parse_u64(optarg, &v) || v == 0 || v > 3600000) {
                return usage_error("bad timeout: %s", optarg);
            }
            o.timeout_ms = (unsigned)v;
            break;
        case 'n':
            o.ns = optarg;
            break;
        case OPT_NO_FAILOVER:
            o.no_failover = true;
            break;
        case OPT_FAILURE_LIMIT:
            if (!parse_u64(optarg, &v) || v == 0 || v > 1000000) {
                return usage_error("bad failure limit: %s", optarg);
            }
            o.failure_limit = (unsigned)v;
            break;
        case OPT_RETRY:
            if (!parse_u64(optarg, &v) || v > 3600000) {
                return usage_error("bad retry interval: %s", optarg);
            }
            o.retry_ms = (unsigned)v;
            break;
        case 'f':
            if (!parse_u64(optarg, &v) || v > UINT32_MAX) {
                return usage_error("bad flags: %s", optarg);
            }
            o.flags = (uint32_t)v;
            break;
        case 'e':
            if (!parse_i32(optarg, &o.exptime)) {
                return usage_error("bad exptime: %s", optarg);
            }
            break;
        case 'i':
            if (!parse_u64(optarg, &o.initial)) {
                return usage_error("bad initial value: %s", optarg);
            }
            o.has_initial = true;
            break;
        case 'b':
            o.protocol = "binary";
            break;
        case 'P':
            o.protocol = optarg;
            break;
        case OPT_KEYS_ONLY:
            o.keys_only = true;
            break;
        case OPT_INTERVAL:
            if (!parse_u64(optarg, &v) || v < 10 || v > 3600000) {
                return usage_error("bad interval: %s", optarg);
            }
            o.interval_ms = (unsigned)v;
            break;
        case 'j':
            o.json = true;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return EXIT_OK;
        case 'V':
            printf("memstash %s (libmemstash %s)\n", MST_VERSION_STRING, mst_version_string());
            return EXIT_OK;
        default:
            fprintf(stderr, "Try 'memstash --help'.\n");
            return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        fputs(usage_text, stderr);
        return EXIT_USAGE;
    }
    if (count_given && !time_given) {
        o.bench.seconds = 0; /* --count alone bounds the run */
    }
    bool top = optind < argc && strcmp(argv[optind], "top") == 0;
    if (top && time_given) {
        return usage_error("top takes --interval and --count, not %s", "--time");
    }
    if (optind < argc && strcmp(argv[optind], "bench") == 0 && o.bench.seconds == 0 &&
        o.bench.count == 0) {
        return usage_error("bench needs --time or --count to end: %s", "both are 0");
    }
    if (!o.servers || !*o.servers) {
        o.servers = "127.0.0.1:11211";
    }
    const char *cmd = argv[optind];
    int nargs = argc - optind - 1;
    char **args = argv + optind + 1;

    struct mst *m;
    if (mst_create(&m) != MST_OK) {
        fprintf(stderr, "memstash: out of memory\n");
        return EXIT_FAILURE_;
    }
    int code = configure(m, &o);
    if (code == EXIT_OK) {
        if (strcmp(cmd, "get") == 0) {
            code = cmd_get(m, &o, nargs, args);
        } else if (strcmp(cmd, "set") == 0 || strcmp(cmd, "add") == 0 ||
                   strcmp(cmd, "replace") == 0) {
            code = cmd_store(m, &o, cmd, nargs, args);
        } else if (strcmp(cmd, "delete") == 0) {
            code = cmd_delete(m, &o, nargs, args);
        } else if (strcmp(cmd, "incr") == 0 || strcmp(cmd, "decr") == 0) {
            code = cmd_arith(m, &o, cmd[0] == 'i', nargs, args);
        } else if (strcmp(cmd, "touch") == 0) {
            code = cmd_touch(m, &o, nargs, args);
        } else if (strcmp(cmd, "stats") == 0) {
            code = cmd_stats(m, &o, nargs, args);
        } else if (strcmp(cmd, "flush") == 0) {
            code = cmd_flush(m, &o, nargs, args);
        } else if (strcmp(cmd, "version") == 0) {
            code = cmd_version_ping(m, &o, false, nargs, args);
        } else if (strcmp(cmd, "ping") == 0) {
            code = cmd_version_ping(m, &o, true, nargs, args);
        } else if (strcmp(cmd, "locate") == 0) {
            code = cmd_locate(m, &o, nargs, args);
        } else if (strcmp(cmd, "dump") == 0) {
            code = cmd_dump(m, &o, nargs, args);
        } else if (strcmp(cmd, "bench") == 0) {
            code = cmd_bench(m, &o, nargs, args);
        } else if (top) {
            struct top_opts t = {o.interval_ms, count_given ? o.bench.count : 0, o.json};
            code = nargs ? usage_error("top takes no arguments: %s", args[0]) : top_run(m, &t);
        } else {
            code = usage_error("unknown command: %s", cmd);
        }
    }
    mst_destroy(&m);
    return code;
}

/*
 * settings.c - memcached 1.6's command line, parsed and validated.
 *
 * The option table below drives getopt_long and the -h text. Validation
 * messages follow memcached's where it has one, and are plain otherwise.
 */
#include "settings.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>

#include <event2/event.h>

#include "numparse.h"

#define MIB (1024UL * 1024UL)

/* X(short, long, has_arg, help) */
#define OPTION_TABLE(X)                                                                            \
    X('p', "port", 1, "TCP port to listen on (default: 11211, 0 = off)")                           \
    X('U', "udp-port", 1, "UDP port to listen on (default: 0, off)")                               \
    X('s', "unix-socket", 1, "UNIX socket to listen on (disables network support)")                \
    X('a', "unix-mask", 1, "access mask for UNIX socket, in octal (default: 700)")                 \
    X('A', "enable-shutdown", 0, "enable ascii \"shutdown\" command")                              \
    X('l', "listen", 1,                                                                            \
      "interface(s) to listen on, comma separated, optional :port (default: 127.0.0.1)")           \
    X('d', "daemon", 0, "run as a daemon")                                                         \
    X('r', "enable-coredumps", 0, "maximize core file limit")                                      \
    X('u', "user", 1, "assume identity of <username> (only when run as root)")                     \
    X('m', "memory-limit", 1, "item memory in megabytes (default: 64; suffixes k, m, g)")          \
    X('M', "disable-evictions", 0, "return error on memory exhausted instead of evicting")         \
    X('c', "conn-limit", 1, "max simultaneous connections (default: 1024)")                        \
    X('k', "lock-memory", 0, "lock down all paged memory")                                         \
    X('v', "verbose", 0, "verbose (-vv: commands and responses, -vvv: state changes)")             \
    X('h', "help", 0, "print this help and exit")                                                  \
    X('i', "license", 0, "print the license and exit")                                             \
    X('V', "version", 0, "print version and exit")                                                 \
    X('P', "pidfile", 1, "save PID in <file>")                                                     \
    X('f', "slab-growth-factor", 1, "chunk size growth factor (default: 1.25)")                    \
    X('n', "slab-min-size", 1, "min space used for key+value+flags (default: 48)")                 \
    X('L', "enable-largepages", 0, "try to use large memory pages (if available)")                 \
    X('D', "prefix-delimiter", 1, "delimiter between key prefixes and IDs for prefix stats")       \
    X('t', "threads", 1, "number of worker threads to use (default: 4)")                           \
    X('R', "max-reqs-per-event", 1, "max requests per event per connection (default: 20)")         \
    X('C', "disable-cas", 0, "disable use of CAS")                                                 \
    X('b', "listen-backlog", 1, "set the backlog queue limit (default: 1024)")                     \
    X('B', "protocol", 1, "protocol - one of ascii, binary, or auto (default: auto-negotiate)")    \
    X('I', "max-item-size", 1, "max item size (default: 1m, min: 1k, max: 1024m)")                 \
    X('S', "enable-sasl", 0, "turn on SASL authentication")                                        \
    X('F', "disable-flush-all", 0, "disable flush_all command")                                    \
    X('X', "disable-dumping", 0, "disable stats cachedump and lru_crawler metadump")               \
    X('W', "disable-watch", 0, "disable watch commands (live logging)")                            \
    X('Y', "auth-file", 1, "enable ASCII protocol authentication (user:pass lines)")               \
    X('e', "memory-file", 1, "mmap a file for item memory (restartable cache)")                    \
    X('Z', "enable-ssl", 0, "enable TLS/SSL")                                                      \
    X('o', "extended", 1, "comma separated list of extended options (see below)")                  \
    X('N', "napi-ids", 1, "number of napi ids")

static const char *const suboption_help[] = {
    "maxconns_fast:       immediately close new connections after limit (default: enabled)",
    "hashpower:           initial hash table size as a power of two (12..32)",
    "no_hashexpand:       disable hash table expansion",
    "idle_timeout:        close connections idle this many seconds (default: 0, off)",
    "write_stall_timeout: close a client that reads none of its pending output for",
    "                     this many seconds (default: 60; 0: never)",
    "metrics_port:        serve Prometheus metrics on GET /metrics at this TCP port,",
    "                     on the -l addresses (default: 0, off)",
    "io_uring:            plain TCP/unix connections do their I/O through an",
    "                     io_uring per worker thread (default: off, epoll; falls",
    "                     back to epoll when the kernel or build has no io_uring)",
    "relaxed_privileges:  accepted for compatibility",
    "ssl_chain_cert:      certificate chain file in PEM format",
    "ssl_key:             private key, if not part of the -ssl_chain_cert",
    "ssl_keyformat:       private key format: 1 PEM (default), 2 DER",
    "ssl_verify_mode:     peer certificate verification: 0(None, default), 1(Request), "
    "2(Require), 3(Once)",
    "ssl_ciphers:         specify cipher list to be used",
    "ssl_ca_cert:         PEM format file of acceptable client CA's",
    "ssl_wbuf_size:       size in kilobytes of per-connection SSL output buffer (default: 16)",
    "ssl_session_cache:   enable server-side SSL session cache, to support session resumption",
    "ssl_kernel_tls:      accepted; no effect",
    "ssl_min_version:     minimum protocol version: 0(tlsv1.0), 1(tlsv1.1), 2(tlsv1.2, "
    "default), 3(tlsv1.3)",
    "slab_chunk_max, slab_reassign, slab_automove, lru_crawler, lru_maintainer,",
    "hot_lru_pct, warm_lru_pct, hot_max_factor, warm_max_factor, temporary_ttl,",
    "tail_repair_time, hash_algorithm, track_sizes, read_buf_mem_limit, modern,",
    "watcher_logbuf_size, worker_logbuf_size, lru_crawler_sleep, lru_crawler_tocrawl:",
    "                     accepted as memcached takes them (see docs/options.md)",
};

void settings_init(struct settings *s)
{
    memset(s, 0, sizeof(*s));
    s->port = 11211;
    s->access = 0700;
    s->maxbytes = 64 * MIB;
    s->maxconns = 1024;
    s->factor = 1.25;
    s->chunk_size = 48;
    s->prefix_delimiter = ':';
    s->num_threads = 4;
    s->reqs_per_event = 20;
    s->use_cas = true;
    s->backlog = 1024;
    s->binding_protocol = PROTO_AUTO;
    s->item_size_max = MIB;
    s->flush_enabled = true;
    s->dump_enabled = true;
    s->watch_enabled = true;
    s->maxconns_fast = true;
    s->hash_expand = true;
    s->slab_reassign = true;
    s->slab_automove = 1;
    s->slab_automove_ratio = 0.8;
    s->slab_automove_window = 30;
    s->slab_chunk_max = 512 * 1024;
    s->lru_crawler = true;
    s->write_stall_timeout = 60;
    s->lru_crawler_sleep = 100;
    s->lru_maintainer = true;
    s->hot_lru_pct = 20;
    s->warm_lru_pct = 40;
    s->hot_max_factor = 0.2;
    s->warm_max_factor = 2.0;
    s->temporary_ttl = 61;
    s->watcher_logbuf_size = 256 * 1024;
    s->worker_logbuf_size = 64 * 1024;
    s->ssl_keyformat = 1;
    s->ssl_min_version = 2;
    s->ssl_wbuf_size = 16 * 1024;
}

void settings_deinit(struct settings *s)
{
    free(s->socketpath);
    free(s->inter);
    free(s->username);
    free(s->pidfile);
    free(s->auth_file);
    free(s->memory_file);
    free(s->ssl_chain_cert);
    free(s->ssl_key);
    free(s->ssl_ca_cert);
    free(s->ssl_ciphers);
    s->socketpath = s->inter = s->username = s->pidfile = s->auth_file = s->memory_file = NULL;
    s->ssl_chain_cert = s->ssl_key = s->ssl_ca_cert = s->ssl_ciphers = NULL;
}

const char *settings_protocol_name(enum binding_protocol p)
{
    switch (p) {
    case PROTO_ASCII:
        return "ascii";
    case PROTO_BINARY:
        return "binary";
    default:
        return "auto-negotiate";
    }
}

static void usage(void)
{
    printf("memstashd %s\n", MEMSTASH_VERSION);
#define X(c, name, arg, help)                                                                      \
    do {                                                                                           \
        char left[64];                                                                             \
        snprintf(left, sizeof(left), "-%c, --%s%s", c, name, arg ? "=<arg>" : "");                 \
        printf("%-26s%s\n", left, help);                                                           \
    } while (0);
    OPTION_TABLE(X)
#undef X
    printf("-o suboptions:\n");
    for (size_t i = 0; i < sizeof(suboption_help) / sizeof(suboption_help[0]); i++) {
        printf("   - %s\n", suboption_help[i]);
    }
}

static bool parse_int(const char *arg, long min, long max, int *out)
{
    int64_t v;
    if (!num_parse_i64(arg, strlen(arg), &v) || strchr(arg, ' ') != NULL || v < min || v > max) {
        return false;
    }
    *out = (int)v;
    return true;
}

static bool parse_double(const char *arg, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(arg, &end);
    if (errno != 0 || end == arg || *end != '\0') {
        return false;
    }
    *out = v;
    return true;
}

/* A size with an optional k/m/g suffix; `unit` multiplies a bare number. */
static bool parse_size(const char *arg, size_t unit, size_t *out)
{
    size_t n = strlen(arg);
    if (n == 0) {
        return false;
    }
    size_t mult = unit;
    char last = arg[n - 1];
    if (last == 'k' || last == 'K') {
        mult = 1024;
        n--;
    } else if (last == 'm' || last == 'M') {
        mult = MIB;
        n--;
    } else if (last == 'g' || last == 'G') {
        mult = 1024 * MIB;
        n--;
    }
    uint64_t v;
    if (n == 0 || arg[0] < '0' || arg[0] > '9' || !num_parse_u64(arg, n, &v) ||
        v > SIZE_MAX / mult) {
        return false;
    }
    *out = (size_t)v * mult;
    return true;
}

static int bad_value(char opt, const char *arg)
{
    fprintf(stderr, "Invalid value for -%c: \"%s\"\n", opt, arg);
    return EX_USAGE;
}

static void set_str(char **dst, const char *src)
{
    free(*dst);
    *dst = strdup(src);
}

/* The -o ssl_* options, with memcached's messages. */
static int parse_ssl_suboption(struct settings *s, const char *opt, const char *val)
{
    struct {
        const char *name;
        char **target;
    } strs[] = {
        {"ssl_chain_cert", &s->ssl_chain_cert},
        {"ssl_key", &s->ssl_key},
        {"ssl_ca_cert", &s->ssl_ca_cert},
        {"ssl_ciphers", &s->ssl_ciphers},
    };
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        if (strcmp(opt, strs[i].name) == 0) {
            if (val == NULL || *val == '\0') {
                fprintf(stderr, "Missing %s argument\n", opt);
                return 1;
            }
            set_str(strs[i].target, val);
            return 0;
        }
    }
    if (strcmp(opt, "ssl_session_cache") == 0) {
        s->ssl_session_cache = true;
        return 0;
    }
    if (strcmp(opt, "ssl_kernel_tls") == 0) {
        s->ssl_kernel_tls = true;
        return 0;
    }
    int v;
    if (strcmp(opt, "ssl_verify_mode") == 0) {
        if (val == NULL || !parse_int(val, 0, 3, &v)) {
            fprintf(stderr, "Invalid ssl_verify_mode. Use help to see valid options.\n");
            return 1;
        }
        s->ssl_verify_mode = v;
        return 0;
    }
    if (strcmp(opt, "ssl_min_version") == 0) {
        static const char *const names[] = {"tlsv1.0", "tlsv1.1", "tlsv1.2", "tlsv1.3"};
        v = -1;
        for (int i = 0; val != NULL && i < 4; i++) {
            if (strcasecmp(val, names[i]) == 0) {
                v = i;
            }
        }
        if (v < 0 && (val == NULL || !parse_int(val, 0, 3, &v))) {
            fprintf(stderr, "Invalid ssl_min_version. Use help to see valid options.\n");
            return 1;
        }
        s->ssl_min_version = v;
        return 0;
    }
    if (strcmp(opt, "ssl_keyformat") == 0) {
        if (val == NULL || !parse_int(val, 1, 2, &v)) {
            fprintf(stderr, "Invalid ssl_keyformat. Use help to see valid options.\n");
            return 1;
        }
        s->ssl_keyformat = v;
        return 0;
    }
    if (strcmp(opt, "ssl_wbuf_size") == 0) {
        if (val == NULL || !parse_int(val, 1, 1024 * 1024, &v)) {
            fprintf(stderr, "Invalid ssl_wbuf_size. Use help to see valid options.\n");
            return 1;
        }
        s->ssl_wbuf_size = v * 1024;
        return 0;
    }
    fprintf(stderr, "Illegal suboption \"%s\"\n", opt);
    return 1;
}

/* One "name" or "name=value" of -o. Returns 0 or an exit code. */
static int parse_suboption(struct settings *s, char *opt)
{
    char *val = strchr(opt, '=');
    if (val != NULL) {
        *val++ = '\0';
    }
    struct {
        const char *name;
        int *target;
        long min, max;
    } ints[] = {
        {"hashpower", &s->hashpower_init, 12, 32},
        {"idle_timeout", &s->idle_timeout, 0, INT_MAX},
        {"write_stall_timeout", &s->write_stall_timeout, 0, INT_MAX},
        {"metrics_port", &s->metrics_port, 0, 65535},
        {"slab_automove_window", &s->slab_automove_window, 3, 1800},
        {"lru_crawler_sleep", &s->lru_crawler_sleep, 0, 1000000},
        {"hot_lru_pct", &s->hot_lru_pct, 1, 80},
        {"warm_lru_pct", &s->warm_lru_pct, 1, 80},
        {"tail_repair_time", &s->tail_repair_time, 0, INT_MAX},
        {"read_buf_mem_limit", &s->read_buf_mem_limit, 0, INT_MAX},
        {"sock_cookie_id", NULL, 0, INT_MAX},
    };
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        if (strcmp(opt, ints[i].name) == 0) {
            int v;
            if (val == NULL || !parse_int(val, ints[i].min, ints[i].max, &v)) {
                fprintf(stderr, "Invalid value for -o %s: \"%s\"\n", opt, val ? val : "");
                return EX_USAGE;
            }
            if (ints[i].target != NULL) {
                *ints[i].target = v;
            }
            return 0;
        }
    }
    struct {
        const char *name;
        bool *target;
        bool value;
    } flags[] = {
        {"maxconns_fast", &s->maxconns_fast, true},
        {"no_maxconns_fast", &s->maxconns_fast, false},
        {"no_hashexpand", &s->hash_expand, false},
        {"slab_reassign", &s->slab_reassign, true},
        {"no_slab_reassign", &s->slab_reassign, false},
        {"lru_crawler", &s->lru_crawler, true},
        {"no_lru_crawler", &s->lru_crawler, false},
        {"lru_maintainer", &s->lru_maintainer, true},
        {"no_lru_maintainer", &s->lru_maintainer, false},
        {"track_sizes", &s->track_sizes, true},
        {"relaxed_privileges", &s->relaxed_privileges, true},
        {"drop_privileges", &s->drop_privileges, true},
        {"no_drop_privileges", &s->drop_privileges, false},
        {"io_uring", &s->io_uring, true},
        {"modern", NULL, true},
        {"inline_ascii_resp", NULL, true},
        {"no_inline_ascii_resp", NULL, true},
        {"no_chunked_items", NULL, true},
    };
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        if (strcmp(opt, flags[i].name) == 0) {
            if (flags[i].target != NULL) {
                *flags[i].target = flags[i].value;
            }
            return 0;
        }
    }
    if (strcmp(opt, "no_modern") == 0) {
        s->lru_crawler = false;
        s->lru_maintainer = false;
        s->slab_reassign = false;
        s->slab_automove = 0;
        return 0;
    }
    if (strcmp(opt, "slab_automove") == 0) {
        int v = 1;
        if (val != NULL && !parse_int(val, 0, 2, &v)) {
            fprintf(stderr, "slab_automove must be between 0 and 2\n");
            return EX_USAGE;
        }
        s->slab_automove = v;
        return 0;
    }
    if (strcmp(opt, "no_slab_automove") == 0) {
        s->slab_automove = 0;
        return 0;
    }
    if (strcmp(opt, "temporary_ttl") == 0) {
        if (val == NULL || !parse_int(val, 0, INT_MAX, &s->temporary_ttl)) {
            fprintf(stderr, "Invalid value for -o temporary_ttl\n");
            return EX_USAGE;
        }
        s->temp_lru = true;
        return 0;
    }
    if (strcmp(opt, "lru_crawler_tocrawl") == 0) {
        int v;
        if (val == NULL || !parse_int(val, 0, INT_MAX, &v)) {
            fprintf(stderr, "Invalid value for -o lru_crawler_tocrawl\n");
            return EX_USAGE;
        }
        s->lru_crawler_tocrawl = (uint32_t)v;
        return 0;
    }
    if (strcmp(opt, "slab_chunk_max") == 0) {
        int v;
        if (val == NULL || !parse_int(val, 1, 1024 * 1024, &v)) {
            fprintf(stderr, "Invalid value for -o slab_chunk_max\n");
            return EX_USAGE;
        }
        s->slab_chunk_max = v * 1024;
        return 0;
    }
    if (strcmp(opt, "watcher_logbuf_size") == 0 || strcmp(opt, "worker_logbuf_size") == 0) {
        int v;
        if (val == NULL || !parse_int(val, 1, 1024 * 1024, &v)) {
            fprintf(stderr, "Invalid value for -o %s\n", opt);
            return EX_USAGE;
        }
        *(opt[1] == 'a' ? &s->watcher_logbuf_size : &s->worker_logbuf_size) = v * 1024;
        return 0;
    }
    if (strcmp(opt, "hot_max_factor") == 0 || strcmp(opt, "warm_max_factor") == 0 ||
        strcmp(opt, "slab_automove_ratio") == 0) {
        double v;
        if (val == NULL || !parse_double(val, &v) || v <= 0) {
            fprintf(stderr, "Invalid value for -o %s\n", opt);
            return EX_USAGE;
        }
        if (opt[0] == 'h') {
            s->hot_max_factor = v;
        } else if (opt[0] == 'w') {
            s->warm_max_factor = v;
        } else {
            s->slab_automove_ratio = v;
        }
        return 0;
    }
    if (strcmp(opt, "hash_algorithm") == 0) {
        if (val == NULL || (strcmp(val, "jenkins") != 0 && strcmp(val, "murmur3") != 0 &&
                            strcmp(val, "xxh3") != 0)) {
            fprintf(stderr, "Failed to initialize hash_algorithm!\n");
            return EX_USAGE;
        }
        return 0; /* memstash always hashes with xxh3 */
    }
    if (strncmp(opt, "ssl_", 4) == 0) {
        return parse_ssl_suboption(s, opt, val);
    }
    fprintf(stderr, "Illegal suboption \"%s\"\n", opt);
    return 1;
}

static int parse_option(struct settings *s, int c, const char *arg)
{
    switch (c) {
    case 'p':
        if (!parse_int(arg, 0, INT_MAX, &s->port) || s->port > 65535) {
            fprintf(stderr, "ERROR: Invalid port number %s.\n", arg);
            return EX_USAGE;
        }
        s->port_set = true;
        return 0;
    case 'U':
        if (!parse_int(arg, 0, INT_MAX, &s->udpport) || s->udpport > 65535) {
            fprintf(stderr, "ERROR: Invalid port number %s.\n", arg);
            return EX_USAGE;
        }
        return 0;
    case 's':
        set_str(&s->socketpath, arg);
        return 0;
    case 'a': {
        char *end;
        errno = 0;
        long v = strtol(arg, &end, 8);
        if (errno != 0 || end == arg || *end != '\0' || v < 0 || v > 0777) {
            return bad_value('a', arg);
        }
        s->access = (int)v;
        return 0;
    }
    case 'A':
        s->shutdown_command = true;
        return 0;
    case 'l':
        if (s->inter != NULL) {
            /* memcached accepts -l more than once and joins the lists. */
            size_t n = strlen(s->inter) + strlen(arg) + 2;
            char *joined = malloc(n);
            if (joined == NULL) {
                return EX_OSERR;
            }
            snprintf(joined, n, "%s,%s", s->inter, arg);
            free(s->inter);
            s->inter = joined;
        } else {
            set_str(&s->inter, arg);
        }
        return 0;
    case 'd':
        s->daemonize = true;
        return 0;
    case 'r':
        s->coredumps = true;
        return 0;
    case 'u':
        set_str(&s->username, arg);
        return 0;
    case 'm':
        if (!parse_size(arg, MIB, &s->maxbytes)) {
            return bad_value('m', arg);
        }
        return 0;
    case 'M':
        s->no_evict = true;
        return 0;
    case 'c':
        if (!parse_int(arg, INT_MIN, INT_MAX, &s->maxconns)) {
            return bad_value('c', arg);
        }
        if (s->maxconns <= 0) {
            fprintf(stderr, "Maximum connections must be greater than 0\n");
            return EX_USAGE;
        }
        return 0;
    case 'k':
        s->lock_memory = true;
        return 0;
    case 'v':
        s->verbose++;
        return 0;
    case 'P':
        set_str(&s->pidfile, arg);
        return 0;
    case 'f':
        if (!parse_double(arg, &s->factor)) {
            return bad_value('f', arg);
        }
        if (s->factor <= 1.0) {
            fprintf(stderr, "Factor must be greater than 1\n");
            return EX_USAGE;
        }
        return 0;
    case 'n':
        if (!parse_int(arg, INT_MIN, INT_MAX, &s->chunk_size)) {
            return bad_value('n', arg);
        }
        if (s->chunk_size <= 0) {
            fprintf(stderr, "Chunk size must be greater than 0\n");
            return EX_USAGE;
        }
        return 0;
    case 'L':
        s->largepages = true;
        return 0;
    case 'D':
        if (arg[0] == '\0' || arg[1] != '\0') {
            fprintf(stderr, "No delimiter specified\n");
            return EX_USAGE;
        }
        s->prefix_delimiter = arg[0];
        s->detail_enabled = true;
        return 0;
    case 't':
        if (!parse_int(arg, INT_MIN, INT_MAX, &s->num_threads)) {
            return bad_value('t', arg);
        }
        if (s->num_threads <= 0) {
            fprintf(stderr, "Number of threads must be greater than 0\n");
            return EX_USAGE;
        }
        if (s->num_threads > 64) {
            fprintf(stderr, "WARNING: Setting a high number of worker threads is not "
                            "recommended.\n Set this value to the number of cores in your "
                            "machine or less.\n");
        }
        return 0;
    case 'R':
        if (!parse_int(arg, INT_MIN, INT_MAX, &s->reqs_per_event)) {
            return bad_value('R', arg);
        }
        if (s->reqs_per_event <= 0) {
            fprintf(stderr, "Number of requests per event must be greater than 0\n");
            return EX_USAGE;
        }
        return 0;
    case 'C':
        s->use_cas = false;
        return 0;
    case 'b':
        if (!parse_int(arg, 1, INT_MAX, &s->backlog)) {
            return bad_value('b', arg);
        }
        return 0;
    case 'B':
        s->protocol_set = true;
        if (strcmp(arg, "auto") == 0) {
            s->binding_protocol = PROTO_AUTO;
        } else if (strcmp(arg, "binary") == 0) {
            s->binding_protocol = PROTO_BINARY;
        } else if (strcmp(arg, "ascii") == 0) {
            s->binding_protocol = PROTO_ASCII;
        } else {
            fprintf(stderr,
                    "Invalid value for binding protocol: %s\n"
                    " -- should be one of auto, binary, or ascii\n",
                    arg);
            return EX_USAGE;
        }
        return 0;
    case 'I':
        if (!parse_size(arg, 1, &s->item_size_max)) {
            return bad_value('I', arg);
        }
        return 0;
    case 'S':
        s->sasl = true;
        return 0;
    case 'F':
        s->flush_enabled = false;
        return 0;
    case 'X':
        s->dump_enabled = false;
        return 0;
    case 'W':
        s->watch_enabled = false;
        return 0;
    case 'Y':
        set_str(&s->auth_file, arg);
        return 0;
    case 'Z':
        s->ssl_enabled = true;
        return 0;
    case 'e':
        set_str(&s->memory_file, arg);
        return 0;
    case 'N':
        if (!parse_int(arg, 0, INT_MAX, &s->num_napi_ids)) {
            return bad_value('N', arg);
        }
        return 0;
    case 'o': {
        char *copy = strdup(arg);
        int rc = 0;
        char *save = NULL;
        for (char *tok = strtok_r(copy, ",", &save); tok != NULL && rc == 0;
             tok = strtok_r(NULL, ",", &save)) {
            rc = parse_suboption(s, tok);
        }
        free(copy);
        return rc;
    }
    default:
        return 1;
    }
}

static int validate(struct settings *s)
{
    /* memcached: -U without -p puts TCP on the UDP port too. */
    if (s->udpport != 0 && !s->port_set) {
        s->port = s->udpport;
    }
    if (s->item_size_max < 1024) {
        fprintf(stderr, "Item max size cannot be less than 1024 bytes.\n");
        return EX_USAGE;
    }
    if (s->item_size_max > s->maxbytes / 2) {
        fprintf(stderr, "Cannot set item size limit higher than 1/2 of memory max.\n");
        return EX_USAGE;
    }
    if (s->item_size_max > 1024 * MIB) {
        fprintf(stderr, "Cannot set item size limit higher than a gigabyte.\n");
        return EX_USAGE;
    }
    if (s->hot_lru_pct + s->warm_lru_pct > 80) {
        fprintf(stderr, "hot_lru_pct + warm_lru_pct cannot be more than 80%% combined\n");
        return EX_USAGE;
    }
    if (s->temp_lru && !s->lru_maintainer) {
        fprintf(stderr, "temporary_ttl requires lru_maintainer to be enabled\n");
        return EX_USAGE;
    }
    if (s->num_napi_ids > s->num_threads) {
        fprintf(stderr, "Number of napi_ids(%d) cannot be greater than number of threads(%d)\n",
                s->num_napi_ids, s->num_threads);
        return EX_USAGE;
    }
    /* memcached 1.6.18's rules: SASL is binary-only, -Y is text-only, and
     * neither allows UDP. Without -B each picks its protocol. */
    if (s->sasl) {
        if (!s->protocol_set) {
            s->binding_protocol = PROTO_BINARY;
        } else if (s->binding_protocol != PROTO_BINARY) {
            fprintf(stderr, "ERROR: You cannot allow the ASCII protocol while using SASL.\n");
            return EX_USAGE;
        }
        if (s->udpport != 0) {
            fprintf(stderr, "ERROR: Cannot enable UDP while using binary SASL authentication.\n");
            return EX_USAGE;
        }
    }
    if (s->auth_file != NULL) {
        if (!s->protocol_set) {
            s->binding_protocol = PROTO_ASCII;
        } else if (s->binding_protocol != PROTO_ASCII) {
            fprintf(stderr, "ERROR: You cannot allow the BINARY protocol while using ascii "
                            "authentication tokens.\n");
            return EX_USAGE;
        }
        if (s->udpport != 0) {
            fprintf(stderr, "Cannot use UDP with ascii authentication enabled (-U 0 to disable)\n");
            return EX_USAGE;
        }
    }
    return 0;
}

int settings_parse(struct settings *s, int argc, char **argv)
{
    static const struct option longopts[] = {
#define X(c, name, arg, help) {name, arg ? required_argument : no_argument, NULL, c},
        OPTION_TABLE(X)
#undef X
            {NULL, 0, NULL, 0},
    };
    char shortopts[128];
    size_t n = 0;
    shortopts[n++] = ':';
#define X(c, name, arg, help)                                                                      \
    shortopts[n++] = c;                                                                            \
    if (arg) {                                                                                     \
        shortopts[n++] = ':';                                                                      \
    }
    OPTION_TABLE(X)
#undef X
    shortopts[n] = '\0';

    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
        if (c == 'h') {
            usage();
            return SETTINGS_EXIT_OK;
        }
        if (c == 'V') {
            printf("memstashd %s\n", MEMSTASH_VERSION);
            return SETTINGS_EXIT_OK;
        }
        if (c == 'i') {
            printf("memstashd %s\nmemstash is free software; libevent %s.\n", MEMSTASH_VERSION,
                   event_get_version());
            return SETTINGS_EXIT_OK;
        }
        if (c == '?') {
            fprintf(stderr, "Illegal argument \"%c\"\n", optopt ? optopt : '?');
            return EX_USAGE;
        }
        if (c == ':') {
            fprintf(stderr, "Option -%c requires an argument\n", optopt);
            return EX_USAGE;
        }
        int rc = parse_option(s, c, optarg);
        if (rc != 0) {
            return rc;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "Unexpected argument \"%s\"\n", argv[optind]);
        return EX_USAGE;
    }
    return validate(s);
}

static void emit_int(void (*emit)(void *, const char *, const char *), void *ctx, const char *name,
                     long long v)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%lld", v);
    emit(ctx, name, buf);
}

static void emit_fmt(void (*emit)(void *, const char *, const char *), void *ctx, const char *name,
                     const char *fmt, double v)
{
    char buf[32];
    snprintf(buf, sizeof(buf), fmt, v);
    emit(ctx, name, buf);
}

void settings_render(const struct settings *s,
                     void (*emit)(void *ctx, const char *name, const char *value), void *ctx)
{
    char buf[32];
    emit_int(emit, ctx, "maxbytes", (long long)s->maxbytes);
    emit_int(emit, ctx, "maxconns", s->maxconns);
    emit_int(emit, ctx, "tcpport", s->port);
    emit_int(emit, ctx, "udpport", s->udpport);
    /* With -s there is no TCP listener, and memcached then shows NULL. */
    emit(ctx, "inter", s->inter ? s->inter : (s->socketpath ? "NULL" : "127.0.0.1"));
    emit_int(emit, ctx, "verbosity", __atomic_load_n(&s->verbose, __ATOMIC_RELAXED));
    emit_int(emit, ctx, "oldest", 0);
    emit(ctx, "evictions", s->no_evict ? "off" : "on");
    emit(ctx, "domain_socket", s->socketpath ? s->socketpath : "NULL");
    snprintf(buf, sizeof(buf), "%o", s->access);
    emit(ctx, "umask", buf);
    emit(ctx, "shutdown_command", s->shutdown_command ? "yes" : "no");
    emit_fmt(emit, ctx, "growth_factor", "%.2f", s->factor);
    emit_int(emit, ctx, "chunk_size", s->chunk_size);
    emit_int(emit, ctx, "num_threads", s->num_threads);
    emit_int(emit, ctx, "num_threads_per_udp", s->num_threads);
    buf[0] = s->prefix_delimiter;
    buf[1] = '\0';
    emit(ctx, "stat_key_prefix", buf);
    emit(ctx, "detail_enabled", s->detail_enabled ? "yes" : "no");
    emit_int(emit, ctx, "reqs_per_event", s->reqs_per_event);
    emit(ctx, "cas_enabled", s->use_cas ? "yes" : "no");
    emit_int(emit, ctx, "tcp_backlog", s->backlog);
    emit(ctx, "binding_protocol", settings_protocol_name(s->binding_protocol));
    emit(ctx, "auth_enabled_sasl", s->sasl ? "yes" : "no");
    emit(ctx, "auth_enabled_ascii", s->auth_file ? s->auth_file : "no");
    emit_int(emit, ctx, "item_size_max", (long long)s->item_size_max);
    emit(ctx, "maxconns_fast", s->maxconns_fast ? "yes" : "no");
    emit_int(emit, ctx, "hashpower_init", s->hashpower_init);
    emit(ctx, "slab_reassign", s->slab_reassign ? "yes" : "no");
    emit_int(emit, ctx, "slab_automove", s->slab_automove);
    emit_fmt(emit, ctx, "slab_automove_ratio", "%.2f", s->slab_automove_ratio);
    emit_int(emit, ctx, "slab_automove_window", s->slab_automove_window);
    emit_int(emit, ctx, "slab_chunk_max", s->slab_chunk_max);
    emit(ctx, "lru_crawler", s->lru_crawler ? "yes" : "no");
    emit_int(emit, ctx, "lru_crawler_sleep", s->lru_crawler_sleep);
    emit_int(emit, ctx, "lru_crawler_tocrawl", s->lru_crawler_tocrawl);
    emit_int(emit, ctx, "tail_repair_time", s->tail_repair_time);
    emit(ctx, "flush_enabled", s->flush_enabled ? "yes" : "no");
    emit(ctx, "dump_enabled", s->dump_enabled ? "yes" : "no");
    emit(ctx, "hash_algorithm", "xxh3");
    emit(ctx, "lru_maintainer_thread", s->lru_maintainer ? "yes" : "no");
    emit(ctx, "lru_segmented", "no");
    emit_int(emit, ctx, "hot_lru_pct", s->hot_lru_pct);
    emit_int(emit, ctx, "warm_lru_pct", s->warm_lru_pct);
    emit_fmt(emit, ctx, "hot_max_factor", "%.2f", s->hot_max_factor);
    emit_fmt(emit, ctx, "warm_max_factor", "%.2f", s->warm_max_factor);
    emit(ctx, "temp_lru", s->temp_lru ? "yes" : "no");
    emit_int(emit, ctx, "temporary_ttl", s->temporary_ttl);
    emit_int(emit, ctx, "idle_timeout", s->idle_timeout);
    emit_int(emit, ctx, "write_stall_timeout", s->write_stall_timeout);
    emit_int(emit, ctx, "watcher_logbuf_size", s->watcher_logbuf_size);
    emit_int(emit, ctx, "worker_logbuf_size", s->worker_logbuf_size);
    emit_int(emit, ctx, "read_buf_mem_limit", s->read_buf_mem_limit);
    emit(ctx, "track_sizes", s->track_sizes ? "yes" : "no");
    emit(ctx, "inline_ascii_response", "no");
    emit(ctx, "drop_privileges", s->drop_privileges ? "yes" : "no");
    static const char *const tls_names[] = {"tlsv1.0", "tlsv1.1", "tlsv1.2", "tlsv1.3"};
    emit(ctx, "ssl_enabled", s->ssl_enabled ? "yes" : "no");
    emit(ctx, "ssl_chain_cert", s->ssl_chain_cert ? s->ssl_chain_cert : "(null)");
    emit(ctx, "ssl_key", s->ssl_key ? s->ssl_key : "(null)");
    emit_int(emit, ctx, "ssl_verify_mode", s->ssl_verify_mode);
    emit_int(emit, ctx, "ssl_keyformat", s->ssl_keyformat);
    emit(ctx, "ssl_ciphers", s->ssl_ciphers ? s->ssl_ciphers : "NULL");
    emit(ctx, "ssl_ca_cert", s->ssl_ca_cert ? s->ssl_ca_cert : "NULL");
    emit_int(emit, ctx, "ssl_wbuf_size", s->ssl_wbuf_size);
    emit(ctx, "ssl_session_cache", s->ssl_session_cache ? "yes" : "no");
    emit(ctx, "ssl_kernel_tls", s->ssl_kernel_tls ? "yes" : "no");
    emit(ctx, "ssl_min_version", tls_names[s->ssl_min_version]);
    emit_int(emit, ctx, "num_napi_ids", s->num_napi_ids);
    emit(ctx, "memory_file", s->memory_file ? s->memory_file : "(null)");
    emit(ctx, "eviction_policy", "s3fifo");
    emit_int(emit, ctx, "metrics_port", s->metrics_port);
    emit(ctx, "io_uring", s->io_uring ? "yes" : "no");
}

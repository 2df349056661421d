/*
 * settings.h - memstashd's configuration: memcached 1.6's command line.
 *
 * settings_parse() reads argv with memcached's flags and rules and leaves
 * a validated struct settings; it prints its own error and returns non-zero
 * for anything wrong. It opens no sockets and touches no other module.
 */
#ifndef MEMSTASH_SETTINGS_H
#define MEMSTASH_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define MEMSTASH_VERSION "1.6.18-memstash-0.1.0"

enum binding_protocol {
    PROTO_AUTO = 0,
    PROTO_ASCII,
    PROTO_BINARY,
};

struct settings {
    int port;              /* -p */
    bool port_set;         /* -p was given (else -U moves TCP to the UDP port too) */
    int udpport;           /* -U (accepted; UDP arrives with a later issue) */
    char *socketpath;      /* -s */
    int access;            /* -a, octal */
    bool shutdown_command; /* -A */
    char *inter;           /* -l; NULL means 127.0.0.1 */
    bool daemonize;        /* -d */
    bool coredumps;        /* -r */
    char *username;        /* -u */
    size_t maxbytes;       /* -m */
    bool no_evict;         /* -M */
    int maxconns;          /* -c */
    bool lock_memory;      /* -k */
    int verbose;           /* -v count */
    char *pidfile;         /* -P */
    double factor;         /* -f */
    int chunk_size;        /* -n */
    bool largepages;       /* -L */
    char prefix_delimiter; /* -D */
    bool detail_enabled;
    int num_threads;                        /* -t */
    int reqs_per_event;                     /* -R */
    bool use_cas;                           /* !-C */
    int backlog;                            /* -b */
    enum binding_protocol binding_protocol; /* -B */
    bool protocol_set;                      /* -B was given */
    size_t item_size_max;                   /* -I */
    bool sasl;                              /* -S */
    bool flush_enabled;                     /* !-F */
    bool dump_enabled;                      /* !-X: stats cachedump, lru_crawler metadump */
    bool watch_enabled;                     /* !-W */
    char *auth_file;                        /* -Y */
    char *memory_file;                      /* -e */

    /* TLS: -Z and the -o ssl_* options, memcached's names and defaults. */
    bool ssl_enabled;       /* -Z */
    char *ssl_chain_cert;   /* PEM certificate chain */
    char *ssl_key;          /* private key (else in the chain file) */
    char *ssl_ca_cert;      /* CAs accepted for client certificates */
    char *ssl_ciphers;      /* OpenSSL cipher list, NULL: OpenSSL's */
    int ssl_keyformat;      /* 1 PEM (SSL_FILETYPE_PEM), 2 ASN1/DER */
    int ssl_verify_mode;    /* 0 none, 1 request, 2 require, 3 once */
    int ssl_min_version;    /* 0 TLSv1.0 .. 3 TLSv1.3; default 2 */
    int ssl_wbuf_size;      /* bytes of per-connection TLS output buffer */
    bool ssl_session_cache; /* server-side session cache for resumption */
    bool ssl_kernel_tls;    /* accepted; no effect */
    int num_napi_ids;       /* -N */

    /* -o suboptions */
    bool maxconns_fast;
    int hashpower_init;
    bool hash_expand;
    bool slab_reassign;
    int slab_automove;
    double slab_automove_ratio;
    int slab_automove_window;
    int slab_chunk_max;
    bool lru_crawler;
    int lru_crawler_sleep;
    uint32_t lru_crawler_tocrawl;
    bool lru_maintainer;
    int hot_lru_pct;
    int warm_lru_pct;
    double hot_max_factor;
    double warm_max_factor;
    bool temp_lru;
    int temporary_ttl;
    int tail_repair_time;
    int idle_timeout;
    int write_stall_timeout; /* close a reader taking no output for this long; 0 = never */
    int watcher_logbuf_size;
    int worker_logbuf_size;
    int read_buf_mem_limit;
    bool track_sizes;
    bool relaxed_privileges;
    bool drop_privileges;
    int metrics_port; /* -o metrics_port: Prometheus endpoint, 0 = off */
    bool io_uring;    /* -o io_uring: plain connections' I/O through a ring per worker
                       * (uring.h); cleared at startup when no ring can be made */
};

/* Fills memcached's defaults. */
void settings_init(struct settings *s);

/* Parses argv. Returns 0 to run, a positive exit code to exit with (after
 * printing the reason, or the help/version text for -h, -V, -i: code 0 is
 * then reported as -1). */
int settings_parse(struct settings *s, int argc, char **argv);
#define SETTINGS_EXIT_OK (-1)

/* Frees the strings parse copied. */
void settings_deinit(struct settings *s);

/* "auto-negotiate", "ascii" or "binary". */
const char *settings_protocol_name(enum binding_protocol p);

/* Calls emit(ctx, name, value) for every line of `stats settings`, in
 * memcached's order. */
void settings_render(const struct settings *s,
                     void (*emit)(void *ctx, const char *name, const char *value), void *ctx);

#endif

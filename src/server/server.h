/*
 * server.h - the memstashd process: its shared context and the worker
 * threads that own connections.
 *
 * One struct server holds everything the threads share: settings, the
 * storage engine, the clock and the server-wide counters. It is created by
 * main() and passed down; there is no other global state except the signal
 * flags in main.c.
 */
#ifndef MEMSTASH_SERVER_H
#define MEMSTASH_SERVER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "clock.h"
#include "settings.h"
#include "stats.h"
#include "storage.h"

struct conn;
struct conn_ext;
struct listener;
struct prefix_stats;
struct watch;
struct tls_ctx;
struct event_base;
struct event;
struct uring;

/* A worker thread: its own libevent base, its connections, its counters. */
struct worker {
    struct server *srv;
    unsigned id;
    pthread_t thread;
    struct event_base *base;
    struct event *notify_ev; /* new connections and stop requests */
    int notify_fd;           /* eventfd */
    struct event *tick_ev;   /* once a second: idle timeouts */
    pthread_mutex_t queue_lock;
    struct pending_conn *queue_head, *queue_tail;
    struct conn *conns; /* every connection this worker owns */
    struct thread_stats stats;
    struct uring *ring;         /* -o io_uring, else NULL (uring.h) */
    char *spare_rbuf;           /* one cached read buffer, reused across connections */
    char *spare_wbuf;           /* likewise one write buffer (WBUF_SIZE) and one segment */
    void *spare_segs;           /* array (SEGS_MIN), so a request batch allocates nothing */
    struct conn_ext *spare_ext; /* and one connection extension (conn.h) */
    bool stopping;
};

/* Server-wide gauges and counters that are not per thread. */
struct server_counters {
    uint64_t curr_conns; /* listeners + clients, as memcached counts */
    uint64_t total_conns;
    uint64_t rejected_conns;
    uint64_t conn_structures;
    uint64_t listen_disabled_num;
    uint64_t reserved_fds;
    uint64_t accepting_conns;
};

struct server {
    struct settings *settings;
    struct storage *storage;
    struct clock clock;
    struct server_counters counters; /* updated with __atomic builtins */
    struct worker *workers;
    unsigned nworkers;
    unsigned next_worker; /* round-robin hand-off, listener thread only */
    struct event_base *main_base;
    pthread_mutex_t stats_lock; /* guards stats_baseline and the connection registry */
    struct thread_stats stats_baseline;
    struct conn **registry; /* by fd, for "stats conns" */
    int registry_size;
    struct prefix_stats *prefix_stats; /* "stats detail" */
    struct watch *watch;               /* "watch" log streams (watch.c) */
    struct authfile *authfile;         /* -Y, else NULL */
    struct tls_ctx *tls;               /* -Z, else NULL */
    struct listener *listeners;        /* set up by listener.c */
    int nlisteners;
    int *udp_fds; /* set up by udp.c; -1 once a worker owns one */
    int nudp;
    int verbose; /* "verbosity" changes it at run time; __atomic access (server_verbose()) */
    volatile int shutdown_mode; /* 0 none, 1 exit, 2 graceful; set by "shutdown" */
};

/* The current verbosity: "verbosity" on any worker changes it at run time. */
static inline int server_verbose(const struct server *srv)
{
    return __atomic_load_n(&srv->verbose, __ATOMIC_RELAXED);
}

/* Sums every worker's counters minus the reset baseline. */
void server_sum_stats(struct server *srv, struct thread_stats *out);
/* "stats reset". */
void server_reset_stats(struct server *srv);

/* Workers. */
int workers_start(struct server *srv);
/* Hands an accepted socket to the next worker. `transport` names the listener
 * ("tcp" or "unix") and listen_addr its address, for stats conns. */
void workers_dispatch(struct server *srv, int fd, const char *listen_addr, bool tls);
/* Stops every worker: closes their connections and joins them. */
void workers_stop(struct server *srv);

/* Output sink for the stats renderers: one "STAT name value" line each. */
typedef void (*stat_emit_fn)(void *ctx, const char *name, const char *value);

/* The renderers behind "stats", "stats items", "stats slabs", "stats conns". */
void stats_render_general(struct server *srv, stat_emit_fn emit, void *ctx);
void stats_render_items(struct server *srv, stat_emit_fn emit, void *ctx);
void stats_render_slabs(struct server *srv, stat_emit_fn emit, void *ctx);
/* "stats sizes": the histogram, or sizes_status disabled. */
void stats_render_sizes(struct server *srv, stat_emit_fn emit, void *ctx);
/* self: the connection asking, which memcached shows as conn_parse_cmd. */
void stats_render_conns(struct server *srv, const struct conn *self, stat_emit_fn emit, void *ctx);

/* Asks the main loop to stop: mode 1 = exit, 2 = graceful. Safe from any thread. */
void server_request_shutdown(struct server *srv, int mode);

#endif

/*
 * main.c - memstashd: parses the command line, then sets up each module in
 * order (limits, storage, listeners, privileges, daemon, workers, background,
 * metrics endpoint, pid file, signals), runs the main loop, and tears down in
 * reverse.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "auth.h"
#include "background.h"
#include "daemon.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "restart.h"
#include "prefix_stats.h"
#include "server.h"
#include "settings.h"
#include "storage.h"
#include "transport_tls.h"
#include "udp.h"
#include "watch.h"

static struct event *shutdown_ev;

void server_request_shutdown(struct server *srv, int mode)
{
    int expected = 0;
    __atomic_compare_exchange_n(&srv->shutdown_mode, &expected, mode, false, __ATOMIC_SEQ_CST,
                                __ATOMIC_SEQ_CST);
    event_active(shutdown_ev, EV_READ, 0);
}

static void shutdown_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    (void)fd;
    (void)what;
    event_base_loopbreak(srv->main_base);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct server *srv = arg;
    (void)what;
    if (sig == SIGHUP) {
        /* As memcached: SIGHUP reloads the TLS certificates (refresh_certs). */
        char err[512];
        if (srv->tls != NULL && tls_ctx_refresh(srv->tls, err, sizeof(err)) != 0) {
            log_msg(LOG_WARN, "%s", err);
        } else if (server_verbose(srv) > 0) {
            log_msg(LOG_INFO, srv->tls != NULL ? "SIGHUP received: certificates reloaded"
                                               : "SIGHUP received: nothing to reload");
        }
        return;
    }
    server_request_shutdown(srv, sig == SIGUSR1 ? 2 : 1);
}

static void storage_options_from(const struct settings *s, struct storage_options *o)
{
    storage_options_default(o);
    o->maxbytes = s->maxbytes;
    o->item_size_max = s->item_size_max;
    o->growth_factor = s->factor;
    o->chunk_min = (size_t)s->chunk_size;
    o->hashpower = s->hashpower_init > 0 ? (unsigned)s->hashpower_init : 16;
    o->no_evict = s->no_evict;
    o->use_cas = s->use_cas;
    o->hash_expand = s->hash_expand;
}

int main(int argc, char **argv)
{
    struct settings settings;
    struct server srv;
    struct event *signals[4] = {NULL};
    struct metrics *metrics = NULL;
    int rc;

    settings_init(&settings);
    rc = settings_parse(&settings, argc, argv);
    if (rc != 0) {
        settings_deinit(&settings);
        return rc == SETTINGS_EXIT_OK ? 0 : rc;
    }
    signal(SIGPIPE, SIG_IGN);

    memset(&srv, 0, sizeof(srv));
    srv.settings = &settings;
    srv.verbose = settings.verbose;
    log_setup(&srv.verbose);
    pthread_mutex_init(&srv.stats_lock, NULL);
    clock_init(&srv.clock, time(NULL));
    srv.counters.reserved_fds = 5 * (uint64_t)settings.num_threads;

    char *pidfile = daemon_abspath(settings.pidfile);
    rc = daemon_check_user(&settings);
    if (rc == 0 && settings.auth_file != NULL) {
        srv.authfile = authfile_load(settings.auth_file);
        rc = srv.authfile == NULL ? EXIT_FAILURE : 0;
    }
    if (rc == 0 && settings.ssl_enabled) {
        srv.tls = tls_ctx_create(&settings);
        rc = srv.tls == NULL ? EX_USAGE : 0;
    }
    if (rc == 0 && settings.sasl) {
        rc = auth_sasl_setup(settings.verbose) != 0 ? EXIT_FAILURE : 0;
    }
    if (rc == 0) {
        rc = daemon_set_limits(&settings, (int)srv.counters.reserved_fds + 16);
    }
    struct storage_options sopts;
    storage_options_from(&settings, &sopts);
    srv.prefix_stats = prefix_stats_create(settings.prefix_delimiter);
    if (srv.prefix_stats == NULL) {
        rc = EX_OSERR;
    }
    if (rc == 0 && storage_create(&srv.storage, &sopts) != STORAGE_OK) {
        fprintf(stderr, "failed to set up the storage engine\n");
        rc = EX_OSERR;
    }
#ifdef MEMSTASH_FAULT_INJECTION
    /* Test builds only: item allocations fail on demand (test_faults.py). */
    const char *fault_every = getenv("MEMSTASH_FAULT_ALLOC_EVERY");
    if (rc == 0 && fault_every != NULL) {
        storage_fault_inject(srv.storage, (unsigned)strtoul(fault_every, NULL, 10));
    }
#endif
    if (rc == 0 && settings.track_sizes) {
        storage_sizes_enable(srv.storage, true);
    }
    if (rc == 0 && settings.memory_file != NULL) {
        struct restart_result r;
        rc = restart_load(&srv, settings.memory_file, &r) == 0 ? 0 : EX_OSERR;
        if (rc == 0 && server_verbose(&srv) > 0) {
            log_msg(LOG_INFO, "warm restart: %zu items restored, %zu expired, %zu dropped",
                    r.restored, r.expired, r.dropped);
        }
    }
    if (rc == 0) {
        srv.registry_size = settings.maxconns + (int)srv.counters.reserved_fds + 64;
        srv.registry = calloc((size_t)srv.registry_size, sizeof(*srv.registry));
        rc = srv.registry == NULL ? EX_OSERR : 0;
    }
    /* Listeners accept connections (into the backlog) as soon as they are
     * open, before the signal events exist. Hold the shutdown signals until
     * then, so a SIGTERM sent by someone who already saw the port is handled
     * as a clean shutdown instead of killing the process. */
    sigset_t held, unheld;
    sigemptyset(&held);
    sigaddset(&held, SIGTERM);
    sigaddset(&held, SIGINT);
    sigaddset(&held, SIGUSR1);
    sigaddset(&held, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &held, &unheld);
    if (rc == 0) {
        rc = listeners_open(&srv);
    }
    if (rc == 0) {
        rc = udp_open(&srv);
    }
    if (rc == 0) {
        rc = metrics_open(&metrics, &srv);
    }
    if (rc == 0) {
        rc = daemon_drop_privileges(&settings);
    }
    if (rc == 0 && settings.daemonize) {
        rc = daemon_detach(&settings);
    }
    if (rc == 0) {
        evthread_use_pthreads();
        srv.main_base = event_base_new();
        rc = srv.main_base == NULL ? EX_OSERR : 0;
    }
    if (rc == 0) {
        srv.watch = watch_create(srv.main_base, (size_t)settings.watcher_logbuf_size,
                                 &srv.counters.curr_conns);
        rc = srv.watch == NULL ? EX_OSERR : 0;
    }
    if (rc == 0) {
        shutdown_ev = event_new(srv.main_base, -1, 0, shutdown_cb, &srv);
        const int sigs[4] = {SIGTERM, SIGINT, SIGUSR1, SIGHUP};
        for (int i = 0; i < 4; i++) {
            signals[i] = evsignal_new(srv.main_base, sigs[i], signal_cb, &srv);
            event_add(signals[i], NULL);
        }
        pthread_sigmask(SIG_SETMASK, &unheld, NULL);
        if (workers_start(&srv) != 0 || background_start(&srv) != 0 || listeners_start(&srv) != 0) {
            fprintf(stderr, "failed to start threads\n");
            rc = EX_OSERR;
        } else if (metrics != NULL && metrics_start(metrics) != 0) {
            fprintf(stderr, "failed to start the metrics endpoint\n");
            rc = EX_OSERR;
        }
    }
    if (rc == 0 && pidfile != NULL) {
        rc = daemon_write_pidfile(pidfile);
    }
    if (rc == 0) {
        log_msg(LOG_INFO, "memstashd %s started: pid %d, %u worker threads", MEMSTASH_VERSION,
                (int)getpid(), srv.nworkers);
        if (server_verbose(&srv) > 1) {
            for (int i = 0; i < srv.nlisteners; i++) {
                log_msg(LOG_DEBUG, "<%d server listening (%s) on %s", srv.listeners[i].fd,
                        settings_protocol_name(settings.binding_protocol), srv.listeners[i].name);
            }
        }
        event_base_dispatch(srv.main_base);
        if (server_verbose(&srv) > 0) {
            log_msg(LOG_INFO, srv.shutdown_mode == 2 ? "Gracefully stopping" : "Exiting normally");
        }
        daemon_remove_pidfile(pidfile);
    }

    /* Teardown, in reverse. */
    /* The metrics thread reads the workers' counters: it stops first. */
    metrics_destroy(&metrics);
    /* Workers first: their connections point at listener names. */
    workers_stop(&srv);
    watch_destroy(&srv.watch);
    listeners_close(&srv);
    udp_close(&srv);
    background_stop(&srv);
    if (rc == 0 && settings.memory_file != NULL && srv.shutdown_mode == 2) {
        /* A graceful stop (SIGUSR1, "shutdown graceful") keeps the cache. */
        size_t saved = 0;
        if (restart_save(&srv, settings.memory_file, &saved) != 0) {
            rc = EX_IOERR;
        } else if (server_verbose(&srv) > 0) {
            log_msg(LOG_INFO, "warm restart: %zu items saved to %s", saved, settings.memory_file);
        }
    }
    for (int i = 0; i < 4; i++) {
        if (signals[i] != NULL) {
            event_free(signals[i]);
        }
    }
    if (shutdown_ev != NULL) {
        event_free(shutdown_ev);
    }
    if (srv.main_base != NULL) {
        event_base_free(srv.main_base);
    }
    storage_destroy(&srv.storage);
    prefix_stats_destroy(&srv.prefix_stats);
    authfile_destroy(&srv.authfile);
    auth_sasl_teardown();
    tls_ctx_destroy(&srv.tls);
    free(srv.registry);
    pthread_mutex_destroy(&srv.stats_lock);
    free(pidfile);
    settings_deinit(&settings);
    libevent_global_shutdown();
    return rc;
}

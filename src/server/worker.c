/*
 * worker.c - worker threads. Each runs its own libevent base and owns the
 * connections handed to it for their whole life. The listener thread passes
 * new sockets through a mutex-guarded queue and an eventfd.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <event2/event.h>

#include "conn.h"
#include "log.h"
#include "server.h"
#include "transport_tls.h"
#include "udp.h"
#include "uring.h"

#define RING_ENTRIES 1024 /* submission slots per worker's ring (-o io_uring) */

struct pending_conn {
    struct pending_conn *next;
    int fd;
    bool tls;
    const char *listen_addr;
};

static void worker_close_all(struct worker *w, const char *reason)
{
    while (w->conns != NULL) {
        conn_close(w->conns, reason);
    }
}

static void notify_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    uint64_t v;
    (void)what;
    ssize_t r = read(fd, &v, sizeof(v));
    (void)r;
    pthread_mutex_lock(&w->queue_lock);
    struct pending_conn *list = w->queue_head;
    w->queue_head = w->queue_tail = NULL;
    bool stopping = w->stopping;
    pthread_mutex_unlock(&w->queue_lock);

    while (list != NULL) {
        struct pending_conn *p = list;
        list = p->next;
        const struct transport *tp = p->tls ? &transport_tls : &transport_plain;
        struct transport_conn io = {p->fd, NULL};
        if (!stopping && p->tls) {
            io.state = tls_session_create(w->srv->tls, p->fd);
        }
        if (stopping || (p->tls && io.state == NULL) ||
            conn_create(w, p->fd, false, p->listen_addr, tp, io.state, p->tls ? NULL : w->ring) ==
                NULL) {
            if (io.state != NULL) {
                tp->close(&io);
            } else {
                close(p->fd);
            }
            __atomic_sub_fetch(&w->srv->counters.curr_conns, 1, __ATOMIC_RELAXED);
        }
        free(p);
    }
    if (stopping) {
        worker_close_all(w, "shutdown");
        event_base_loopbreak(w->base);
    }
}

/* Once a second: close connections idle past -o idle_timeout, and readers
 * that have taken nothing of their pending output for -o
 * write_stall_timeout seconds (their output is already capped, so they
 * hold bounded memory; this gives it back). */
static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    int timeout = w->srv->settings->idle_timeout;
    int stall = w->srv->settings->write_stall_timeout;
    rel_time_t now = clock_now(&w->srv->clock);
    (void)fd;
    (void)what;
    struct conn *c = w->conns;
    while (c != NULL) {
        struct conn *next = c->next;
        /* A UDP socket is not a client: it is never idle-kicked. */
        if (c->is_udp) {
            c = next;
            continue;
        }
        if (timeout > 0 && c->state == CONN_NEW_CMD && c->rlen == 0 && c->nsegs == 0 &&
            now - c->last_cmd_time > (rel_time_t)timeout) {
            STAT_INCR(&w->stats, idle_kicks);
            conn_close(c, "idle_timeout");
        } else if (stall > 0 && c->write_blocked_since != 0) {
            /* The kernel's send queue shrinking means the client is
             * reading, even while the socket is not yet writable again. */
            int outq = 0;
            if (ioctl(c->fd, SIOCOUTQ, &outq) == 0 && (uint32_t)outq != c->blocked_outq) {
                c->blocked_outq = (uint32_t)outq;
                c->write_blocked_since = now;
            } else if (now - c->write_blocked_since > (rel_time_t)stall) {
                conn_close(c, "write_stall_timeout");
            }
        }
        c = next;
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    if (w->ring == NULL) {
        event_base_dispatch(w->base);
        return NULL;
    }
    /* One loop iteration at a time, so that what its callbacks queued on the
     * ring goes to the kernel in one submission before the loop sleeps. */
    while (!event_base_got_break(w->base)) {
        uring_submit(w->ring);
        if (event_base_loop(w->base, EVLOOP_ONCE) != 0) {
            break;
        }
    }
    /* The connections are closed: wait for the operations they left. */
    uring_destroy(w->ring);
    w->ring = NULL;
    return NULL;
}

/* -o io_uring: a ring for every worker, or for none (logged). */
static void workers_rings(struct server *srv)
{
    for (unsigned i = 0; i < srv->nworkers; i++) {
        struct worker *w = &srv->workers[i];
        w->ring = uring_create(w->base, RING_ENTRIES);
        if (w->ring == NULL) {
            log_msg(LOG_ERROR, "io_uring unavailable (%s): using epoll", strerror(errno));
            for (unsigned j = 0; j < i; j++) {
                uring_destroy(srv->workers[j].ring);
                srv->workers[j].ring = NULL;
            }
            srv->settings->io_uring = false;
            return;
        }
    }
    log_msg(LOG_INFO, "io_uring: one ring per worker for plain TCP and unix connections");
}

int workers_start(struct server *srv)
{
    if (event_get_struct_event_size() > sizeof(struct event)) {
        /* struct conn embeds a struct event of the size libevent's headers gave. */
        log_msg(LOG_ERROR, "libevent's struct event is %zu bytes, built for %zu",
                event_get_struct_event_size(), sizeof(struct event));
        return -1;
    }
    srv->nworkers = (unsigned)srv->settings->num_threads;
    srv->workers = calloc(srv->nworkers, sizeof(struct worker));
    if (srv->workers == NULL) {
        return -1;
    }
    for (unsigned i = 0; i < srv->nworkers; i++) {
        srv->workers[i].notify_fd = -1;
    }
    for (unsigned i = 0; i < srv->nworkers; i++) {
        struct worker *w = &srv->workers[i];
        w->srv = srv;
        w->id = i;
        pthread_mutex_init(&w->queue_lock, NULL);
        w->base = event_base_new();
        w->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (w->base == NULL || w->notify_fd < 0) {
            log_msg(LOG_ERROR, "failed to set up worker thread %u: %s", i, strerror(errno));
            return -1;
        }
        w->notify_ev = event_new(w->base, w->notify_fd, EV_READ | EV_PERSIST, notify_cb, w);
        event_add(w->notify_ev, NULL);
        if (srv->settings->idle_timeout > 0 || srv->settings->write_stall_timeout > 0) {
            struct timeval one = {1, 0};
            w->tick_ev = event_new(w->base, -1, EV_PERSIST, tick_cb, w);
            event_add(w->tick_ev, &one);
        }
    }
    if (srv->settings->io_uring) {
        workers_rings(srv);
    }
    for (int j = 0; j < srv->nudp; j++) {
        if (udp_attach(&srv->workers[(unsigned)j % srv->nworkers], srv->udp_fds[j]) != 0) {
            log_msg(LOG_ERROR, "failed to serve a UDP socket");
            return -1;
        }
        srv->udp_fds[j] = -1;
    }
    for (unsigned i = 0; i < srv->nworkers; i++) {
        struct worker *w = &srv->workers[i];
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            log_msg(LOG_ERROR, "failed to start worker thread %u", i);
            return -1;
        }
    }
    return 0;
}

static void worker_notify(struct worker *w)
{
    uint64_t one = 1;
    ssize_t r = write(w->notify_fd, &one, sizeof(one));
    (void)r;
}

void workers_dispatch(struct server *srv, int fd, const char *listen_addr, bool tls)
{
    struct worker *w = &srv->workers[srv->next_worker++ % srv->nworkers];
    struct pending_conn *p = malloc(sizeof(*p));
    if (p == NULL) {
        close(fd);
        __atomic_sub_fetch(&srv->counters.curr_conns, 1, __ATOMIC_RELAXED);
        return;
    }
    p->next = NULL;
    p->fd = fd;
    p->tls = tls;
    p->listen_addr = listen_addr;
    pthread_mutex_lock(&w->queue_lock);
    if (w->queue_tail != NULL) {
        w->queue_tail->next = p;
    } else {
        w->queue_head = p;
    }
    w->queue_tail = p;
    pthread_mutex_unlock(&w->queue_lock);
    worker_notify(w);
    if (log_enabled(LOG_TRACE)) {
        log_msg(LOG_TRACE, "fd %d from %s handed to worker %u", fd,
                listen_addr != NULL ? listen_addr : "?", w->id);
    }
}

void workers_stop(struct server *srv)
{
    if (srv->workers == NULL) {
        return;
    }
    for (unsigned i = 0; i < srv->nworkers; i++) {
        struct worker *w = &srv->workers[i];
        pthread_mutex_lock(&w->queue_lock);
        w->stopping = true;
        pthread_mutex_unlock(&w->queue_lock);
        worker_notify(w);
    }
    for (unsigned i = 0; i < srv->nworkers; i++) {
        struct worker *w = &srv->workers[i];
        if (w->thread) {
            pthread_join(w->thread, NULL);
        }
        uring_destroy(w->ring); /* a worker that never ran */
        w->ring = NULL;
        if (w->tick_ev) {
            event_free(w->tick_ev);
        }
        if (w->notify_ev) {
            event_free(w->notify_ev);
        }
        if (w->notify_fd >= 0) {
            close(w->notify_fd);
        }
        free(w->spare_rbuf);
        free(w->spare_wbuf);
        free(w->spare_segs);
        free(w->spare_ext);
        if (w->base) {
            event_base_free(w->base);
        }
        pthread_mutex_destroy(&w->queue_lock);
    }
    free(srv->workers);
    srv->workers = NULL;
    srv->nworkers = 0;
}

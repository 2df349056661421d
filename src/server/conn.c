/*
 * conn.c - a client connection's life: read, parse, process, write.
 *
 * The loop of one readable event: read once (into the read buffer, or into
 * the item being filled by a data block), then hand every whole request to
 * process.c (at most -R of them before yielding to other connections), then
 * write every queued reply with one writev. A connection whose replies the
 * peer does not read stops reading requests until they drain. Every read,
 * write and close goes through the connection's transport (transport.h):
 * plain system calls, or TLS.
 */
#include "conn.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/event.h>

#include "dump.h"
#include "conn_auth.h"
#include "log.h"
#include "process.h"
#include "process_binary.h"
#include "server.h"
#include "uring.h"
#include "watch.h"

#define RBUF_SIZE 16384
#define WBUF_SIZE 4096
#define WBUF_KEEP (64 * 1024) /* larger write buffers are freed once drained */
#define SEGS_MIN  16          /* segments in a first (and the cached) array */
#define RBUF_KEEP (64 * 1024)
#define IOV_BATCH 512
/* Once this much output is queued, no further request of the batch runs
 * until it has been written: a client that pipelines requests but reads
 * slowly or never (it stops being read from while its output cannot drain)
 * pins at most this much plus one request's reply. */
#define OUT_BATCH_MAX (4u * 1024 * 1024)
/* Replies held back while a binary request's body is swallowed, at most. */
#define SWALLOW_HOLD_MAX (64 * 1024)

static void conn_event_cb(evutil_socket_t fd, short what, void *arg);
static void conn_ring_done(void *arg, int res);

static void registry_set(struct server *srv, int fd, struct conn *c)
{
    pthread_mutex_lock(&srv->stats_lock);
    if (fd >= 0 && fd < srv->registry_size) {
        srv->registry[fd] = c;
    }
    pthread_mutex_unlock(&srv->stats_lock);
}

/* Keeps the peer's address in the connection's few bytes for it. */
static void peer_save(struct conn *c)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    c->peer_family = CONN_PEER_UNKNOWN;
    if (c->is_udp || getpeername(c->fd, (struct sockaddr *)&ss, &len) != 0) {
        return;
    }
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
        memcpy(c->peer_addr, &sin->sin_addr, sizeof(sin->sin_addr));
        c->peer_port = ntohs(sin->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
        memcpy(c->peer_addr, &sin6->sin6_addr, sizeof(sin6->sin6_addr));
        c->peer_port = ntohs(sin6->sin6_port);
    }
    c->peer_family = ss.ss_family < CONN_PEER_UNKNOWN ? (uint8_t)ss.ss_family : CONN_PEER_UNKNOWN;
}

void conn_peer_name(const struct conn *c, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "";
    if (c->is_udp) {
        /* The socket's own address, which never changes. */
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        char nhost[NI_MAXHOST], nport[NI_MAXSERV];
        snprintf(out, cap, "udp");
        if (getsockname(c->fd, (struct sockaddr *)&ss, &len) == 0 &&
            getnameinfo((struct sockaddr *)&ss, len, nhost, sizeof(nhost), nport, sizeof(nport),
                        NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
            snprintf(out, cap, ss.ss_family == AF_INET6 ? "udp6:[%s]:%s" : "udp:%s:%s", nhost,
                     nport);
        }
        return;
    }
    switch (c->peer_family) {
    case CONN_PEER_UNKNOWN:
        snprintf(out, cap, "?");
        break;
    case AF_INET:
        inet_ntop(AF_INET, c->peer_addr, host, sizeof(host));
        snprintf(out, cap, "tcp:%s:%u", host, c->peer_port);
        break;
    case AF_INET6:
        inet_ntop(AF_INET6, c->peer_addr, host, sizeof(host));
        snprintf(out, cap, "tcp6:[%s]:%u", host, c->peer_port);
        break;
    case AF_UNIX:
        /* An unnamed unix peer, shown as memcached shows it. */
        snprintf(out, cap, "?:<AF 0>");
        break;
    default:
        snprintf(out, cap, "?:<AF %d>", c->peer_family);
        break;
    }
}

static void emit_conn_event(struct conn *c, const char *reason)
{
    char peer[CONN_PEER_NAME_MAX];
    conn_peer_name(c, peer, sizeof(peer));
    watch_emit_conn(c->w->srv->watch, peer, c->fd, reason);
}

struct conn *conn_create(struct worker *w, int fd, bool udp, const char *listen_addr,
                         const struct transport *tp, void *tstate, struct uring *ring)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    c->w = w;
    c->fd = fd;
    c->is_udp = udp;
    c->tp = tp;
    c->io = (struct transport_conn){fd, tstate};
    conn_set_state(c, CONN_NEW_CMD);
    c->listen_addr = listen_addr;
    peer_save(c);
    conn_set_last_cmd(c, clock_now(&w->srv->clock));
    c->ev_flags = EV_READ | EV_PERSIST;
    if (ring != NULL) {
        c->ring = uring_op_new(ring, fd, conn_ring_done, c);
    }
    /* On a ring the event is never added, only activated (ring_next). */
    if (event_assign(&c->ev, w->base, fd, c->ev_flags, conn_event_cb, c) != 0 ||
        (ring != NULL ? c->ring == NULL : event_add(&c->ev, NULL) != 0)) {
        uring_op_free(c->ring);
        free(c);
        return NULL;
    }
    c->next = w->conns;
    if (w->conns != NULL) {
        w->conns->prev = c;
    }
    w->conns = c;
    struct server *srv = w->srv;
    __atomic_add_fetch(&srv->counters.conn_structures, 1, __ATOMIC_RELAXED);
    registry_set(srv, fd, c);
    if (server_verbose(srv) > 1) {
        log_msg(LOG_DEBUG, "<%d new auto-negotiating client connection", fd);
    }
    if (watch_wants(srv->watch, WATCH_CONNEVENTS)) {
        emit_conn_event(c, NULL);
    }
    if (c->ring != NULL) {
        /* The first recv is queued from the loop (conn_event_cb), where a
         * failure can close the connection. */
        event_active(&c->ev, EV_READ, 0);
    }
    return c;
}

struct conn_ext *conn_ext(struct conn *c)
{
    if (c->ext != NULL) {
        return c->ext;
    }
    struct worker *w = c->w;
    if (w->spare_ext != NULL) {
        c->ext = w->spare_ext;
        w->spare_ext = NULL;
        memset(c->ext, 0, sizeof(*c->ext));
    } else {
        c->ext = calloc(1, sizeof(*c->ext));
    }
    return c->ext;
}

/* Releases what the extension holds (its storage command, dump, SASL state,
 * marks) and the extension itself. */
static void ext_free(struct conn *c)
{
    struct conn_ext *x = c->ext;
    if (x == NULL) {
        return;
    }
    storage_release(c->w->srv->storage, &x->item);
    free(x->meta_pending);
    dump_release(c);
    auth_sasl_conn_free(&x->sasl);
    free(x->marks);
    free(x);
    c->ext = NULL;
}

/* An idle connection gives its extension back when nothing in it is in use. */
static void ext_trim(struct conn *c)
{
    const struct conn_ext *x = c->ext;
    if (x == NULL || c->state != CONN_NEW_CMD || x->item != NULL || x->meta_pending != NULL ||
        x->dump != NULL || x->watcher != NULL || x->sasl != NULL || x->auth_ascii.started ||
        x->marks != NULL) {
        return;
    }
    if (c->w->spare_ext == NULL) {
        c->w->spare_ext = c->ext;
    } else {
        free(c->ext);
    }
    c->ext = NULL;
}

static void release_output(struct conn *c)
{
    struct storage *st = c->w->srv->storage;
    for (uint32_t i = 0; i < c->nsegs; i++) {
        if (c->segs[i].it != NULL) {
            storage_release(st, &c->segs[i].it);
        }
    }
    c->nsegs = c->seg_sent = c->seg_off = 0;
    c->wlen = 0;
    c->out_bytes = 0;
    if (c->ext != NULL) {
        c->ext->nmarks = 0;
    }
}

static void free_rbuf(struct conn *c)
{
    if (c->rbuf == NULL) {
        return;
    }
    if (c->w->spare_rbuf == NULL && c->rsize == RBUF_SIZE) {
        c->w->spare_rbuf = c->rbuf;
    } else {
        free(c->rbuf);
    }
    c->rbuf = NULL;
    c->rsize = c->rstart = c->rlen = 0;
}

/* Frees what the connection holds, once no operation of a ring uses it. */
static void conn_release(struct conn *c)
{
    struct worker *w = c->w;
    struct server *srv = w->srv;
    uring_op_free(c->ring);
    c->ring = NULL;
    release_output(c);
    ext_free(c);
    free_rbuf(c);
    free(c->wbuf);
    free(c->segs);
    __atomic_sub_fetch(&srv->counters.conn_structures, 1, __ATOMIC_RELAXED);
    free(c);
}

/* Frees the connection; keep_fd leaves its socket open (and counted in
 * curr_conns) for a new owner. With a ring op in flight (only when closed
 * from outside its own I/O: timeouts, shutdown), the op is cancelled and the
 * memory it may still write to is freed at its completion. */
static void conn_free(struct conn *c, bool keep_fd)
{
    struct worker *w = c->w;
    struct server *srv = w->srv;
    event_del(&c->ev);
    registry_set(srv, c->fd, NULL);
    if (!keep_fd) {
        c->tp->close(&c->io);
        __atomic_sub_fetch(&srv->counters.curr_conns, 1, __ATOMIC_RELAXED);
        if (c->ext != NULL && c->ext->watcher != NULL) {
            watch_cancel(srv->watch, c->ext->watcher);
        }
    }
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        w->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    if (c->ring != NULL && uring_op_busy(c->ring)) {
        c->ring_closed = true;
        uring_cancel(c->ring);
        return;
    }
    conn_release(c);
}

void conn_close(struct conn *c, const char *reason)
{
    struct server *srv = c->w->srv;
    if (server_verbose(srv) > 1) {
        log_msg(LOG_DEBUG, "<%d connection closed (%s).", c->fd, reason);
    }
    if (!c->is_udp && watch_wants(srv->watch, WATCH_CONNEVENTS)) {
        emit_conn_event(c, reason);
    }
    conn_free(c, false);
}

/* Closes a connection whose last reply went out, or, after "watch", hands
 * its socket to the watch hub. */
static void conn_finish(struct conn *c)
{
    if (c->ext == NULL || c->ext->watcher == NULL) {
        conn_close(c, c->close_error ? "error" : "normal");
        return;
    }
    struct server *srv = c->w->srv;
    int fd = c->fd;
    struct watcher *wt = c->ext->watcher;
    conn_free(c, true);
    if (watch_attach(srv->watch, wt, fd) != 0) {
        close(fd);
        __atomic_sub_fetch(&srv->counters.curr_conns, 1, __ATOMIC_RELAXED);
    }
}

size_t conn_out_pending(const struct conn *c)
{
    size_t n = 0;
    for (uint32_t i = c->seg_sent; i < c->nsegs; i++) {
        n += c->segs[i].len;
    }
    return n - c->seg_off;
}

void conn_out_flatten(const struct conn *c, char *dst)
{
    for (uint32_t i = c->seg_sent; i < c->nsegs; i++) {
        const struct out_seg *s = &c->segs[i];
        const char *base = s->it != NULL ? s->ptr : c->wbuf + s->off;
        size_t skip = i == c->seg_sent ? c->seg_off : 0;
        memcpy(dst, base + skip, s->len - skip);
        dst += s->len - skip;
    }
}

void conn_reset(struct conn *c)
{
    release_output(c);
    struct conn_ext *x = c->ext;
    if (x != NULL) {
        storage_release(c->w->srv->storage, &x->item);
        free(x->meta_pending);
        x->meta_pending = NULL;
        dump_release(c);
        x->swallow = 0;
    }
    conn_set_state(c, CONN_NEW_CMD);
    c->rstart = c->rlen = 0;
    c->close_after_write = c->close_now = false;
}

const char *conn_state_name(enum conn_state s)
{
    switch (s) {
    case CONN_NEW_CMD:
        return "conn_new_cmd";
    case CONN_NREAD:
        return "conn_nread";
    case CONN_SWALLOW:
        return "conn_swallow";
    case CONN_WRITE:
        return "conn_write";
    case CONN_CLOSING:
        return "conn_closing";
    }
    return "conn_unknown";
}

/* ---- output ------------------------------------------------------------ */

static bool seg_reserve(struct conn *c)
{
    if (c->nsegs < c->segcap) {
        return true;
    }
    if (c->segcap == 0 && c->w->spare_segs != NULL) {
        c->segs = c->w->spare_segs;
        c->w->spare_segs = NULL;
        c->segcap = SEGS_MIN;
        return true;
    }
    uint32_t cap = c->segcap ? c->segcap * 2 : SEGS_MIN;
    struct out_seg *segs = realloc(c->segs, cap * sizeof(*segs));
    if (segs == NULL) {
        return false;
    }
    c->segs = segs;
    c->segcap = cap;
    return true;
}

void conn_out(struct conn *c, const void *data, size_t len)
{
    if (len == 0) {
        return;
    }
    if (c->wsize == 0 && c->w->spare_wbuf != NULL && len <= WBUF_SIZE) {
        c->wbuf = c->w->spare_wbuf;
        c->w->spare_wbuf = NULL;
        c->wsize = WBUF_SIZE;
    }
    if (c->wlen + len > c->wsize) {
        size_t cap = c->wsize ? c->wsize : WBUF_SIZE;
        while (cap < c->wlen + len) {
            cap *= 2;
        }
        char *nb = realloc(c->wbuf, cap);
        if (nb == NULL) {
            c->close_after_write = true;
            return;
        }
        c->wbuf = nb;
        c->wsize = (uint32_t)cap;
    }
    memcpy(c->wbuf + c->wlen, data, len);
    /* Extend the last segment when it ends where these bytes start. */
    if (c->nsegs > c->seg_sent && c->segs[c->nsegs - 1].it == NULL &&
        c->segs[c->nsegs - 1].off + c->segs[c->nsegs - 1].len == c->wlen) {
        c->segs[c->nsegs - 1].len += (uint32_t)len;
    } else {
        if (!seg_reserve(c)) {
            c->close_after_write = true;
            return;
        }
        c->segs[c->nsegs++] = (struct out_seg){NULL, NULL, c->wlen, (uint32_t)len};
    }
    c->wlen += (uint32_t)len;
    c->out_bytes += (uint32_t)len;
}

void conn_out_str(struct conn *c, const char *s)
{
    size_t n = strlen(s);
    if (server_verbose(c->w->srv) > 1) {
        log_msg(LOG_DEBUG, ">%d %s", c->fd, s);
    }
    char line[128];
    if (n + 2 <= sizeof(line)) {
        /* One copy and one segment update instead of two. */
        memcpy(line, s, n);
        memcpy(line + n, "\r\n", 2);
        conn_out(c, line, n + 2);
        return;
    }
    conn_out(c, s, n);
    conn_out(c, "\r\n", 2);
}

void conn_out_item(struct conn *c, struct item *it, const char *ptr, size_t len)
{
    if (!seg_reserve(c)) {
        storage_release(c->w->srv->storage, &it);
        c->close_after_write = true;
        return;
    }
    c->segs[c->nsegs++] = (struct out_seg){it, ptr, 0, (uint32_t)len};
    c->out_bytes += (uint32_t)len;
}

void conn_mark_response(struct conn *c, bool keep_empty)
{
    if (!c->is_udp) {
        return;
    }
    struct conn_ext *x = conn_ext(c);
    if (x == NULL) {
        return; /* the response joins the previous message */
    }
    if (!keep_empty && x->nmarks > 0 && x->marks[x->nmarks - 1] == c->out_bytes) {
        return;
    }
    if (x->nmarks == x->markcap) {
        uint32_t cap = x->markcap ? x->markcap * 2 : 16;
        uint32_t *m = realloc(x->marks, cap * sizeof(*m));
        if (m == NULL) {
            return;
        }
        x->marks = m;
        x->markcap = cap;
    }
    x->marks[x->nmarks++] = c->out_bytes;
}

/* The unsent output as at most IOV_BATCH iovecs; returns how many. */
static int out_iov(const struct conn *c, struct iovec *iov)
{
    int n = 0;
    for (uint32_t i = c->seg_sent; i < c->nsegs && n < IOV_BATCH; i++, n++) {
        const struct out_seg *s = &c->segs[i];
        const char *base = s->it != NULL ? s->ptr : c->wbuf + s->off;
        size_t skip = i == c->seg_sent ? c->seg_off : 0;
        iov[n].iov_base = (void *)(base + skip);
        iov[n].iov_len = s->len - skip;
    }
    return n;
}

/* Drops wr written bytes from the front of the output. */
static void out_advance(struct conn *c, size_t wr)
{
    c->write_blocked_since = 0;
    STAT_ADD(&c->w->stats, bytes_written, (uint64_t)wr);
    size_t left = wr;
    while (left > 0 && c->seg_sent < c->nsegs) {
        struct out_seg *s = &c->segs[c->seg_sent];
        size_t rest = s->len - c->seg_off;
        if (left >= rest) {
            left -= rest;
            if (s->it != NULL) {
                storage_release(c->w->srv->storage, &s->it);
            }
            c->seg_sent++;
            c->seg_off = 0;
        } else {
            c->seg_off += (uint32_t)left;
            left = 0;
        }
    }
}

/* Everything went out: empties the output and gives spare buffers back. */
static void out_drained(struct conn *c)
{
    c->nsegs = c->seg_sent = c->seg_off = 0;
    c->wlen = 0;
    c->out_bytes = 0;
    if (c->ext != NULL) {
        c->ext->nmarks = 0;
    }
    if (c->wsize > WBUF_KEEP || c->state == CONN_NEW_CMD) {
        /* Idle connections hold no write buffer; the worker keeps one for the next. */
        if (c->wsize == WBUF_SIZE && c->w->spare_wbuf == NULL) {
            c->w->spare_wbuf = c->wbuf;
        } else {
            free(c->wbuf);
        }
        c->wbuf = NULL;
        c->wsize = 0;
    }
    if (c->state == CONN_NEW_CMD && c->segcap == SEGS_MIN && c->w->spare_segs == NULL) {
        c->w->spare_segs = c->segs;
        c->segs = NULL;
        c->segcap = 0;
    }
}

/* Writes queued output. Returns 1 when everything went out, 0 when the
 * socket would block, -1 on error. */
static int conn_flush(struct conn *c)
{
    while (c->seg_sent < c->nsegs) {
        struct iovec iov[IOV_BATCH];
        int n = out_iov(c, iov);
        ssize_t wr = c->tp->writev(&c->io, iov, n);
        if (wr < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                /* Blocked: the worker's tick closes a reader that stays
                 * away past -o write_stall_timeout. */
                if (c->write_blocked_since == 0) {
                    c->write_blocked_since = clock_now(&c->w->srv->clock);
                }
                return 0;
            }
            return -1;
        }
        out_advance(c, (size_t)wr);
    }
    out_drained(c);
    return 1;
}

static void set_events(struct conn *c, short flags)
{
    if (c->ev_flags == flags) {
        return;
    }
    event_del(&c->ev);
    event_assign(&c->ev, c->w->base, c->fd, flags, conn_event_cb, c);
    event_add(&c->ev, NULL);
    c->ev_flags = flags;
}

/* ---- input ------------------------------------------------------------- */

/* Makes room to read at the end of the read buffer. */
static bool rbuf_make_room(struct conn *c)
{
    if (c->rbuf == NULL) {
        if (c->w->spare_rbuf != NULL) {
            c->rbuf = c->w->spare_rbuf;
            c->w->spare_rbuf = NULL;
        } else {
            c->rbuf = malloc(RBUF_SIZE);
            if (c->rbuf == NULL) {
                return false;
            }
        }
        c->rsize = RBUF_SIZE;
        c->rstart = c->rlen = 0;
    }
    if (c->rstart > 0 && c->rstart + c->rlen == c->rsize) {
        memmove(c->rbuf, c->rbuf + c->rstart, c->rlen);
        c->rstart = 0;
    }
    if (c->rlen == c->rsize) {
        /* A single line longer than the buffer: only big multigets get here
         * (the codec closes other long lines). */
        if (c->rsize > INT_MAX / 2) {
            return false;
        }
        char *nb = realloc(c->rbuf, (size_t)c->rsize * 2);
        if (nb == NULL) {
            return false;
        }
        c->rbuf = nb;
        c->rsize *= 2;
    }
    return true;
}

/* Where the next read goes: straight into the item a data block fills, or
 * the end of the read buffer. False when no buffer could be had (an error
 * reply is queued and the connection closes after it). */
/* Where the next bytes of a data block go: the item's value, then the
 * terminator's two bytes (text) into x->tail. */
static char *nread_target(struct conn_ext *x, size_t *room)
{
    size_t nv = storage_item_nbytes(x->item);
    if (x->item_done < nv) {
        *room = nv - x->item_done;
        return storage_item_value(x->item) + x->item_done;
    }
    *room = x->item_need - x->item_done;
    return x->tail + (x->item_done - nv);
}

static bool read_target(struct conn *c, char **dst, size_t *room, bool *into_item)
{
    /* CONN_NREAD is entered only with c->ext made. Only the value is read
     * straight into the item: its terminator comes through the read buffer
     * with whatever follows it. */
    *into_item = c->state == CONN_NREAD && c->rlen == 0 &&
                 c->ext->item_done < storage_item_nbytes(c->ext->item);
    if (*into_item) {
        *dst = nread_target(c->ext, room);
        return true;
    }
    if (!rbuf_make_room(c)) {
        conn_out_str(c, "SERVER_ERROR out of memory reading request");
        c->close_after_write = true;
        return false;
    }
    *dst = c->rbuf + c->rstart + c->rlen;
    *room = c->rsize - c->rstart - c->rlen;
    return true;
}

static void read_account(struct conn *c, size_t n, bool into_item)
{
    STAT_ADD(&c->w->stats, bytes_read, (uint64_t)n);
    if (into_item) {
        c->ext->item_done += (uint32_t)n;
    } else {
        c->rlen += (uint32_t)n;
    }
}

/* One read() from the socket. Returns bytes read, 0 on EOF, -1 on error,
 * -2 when nothing is there now. */
static ssize_t conn_read(struct conn *c)
{
    char *dst;
    size_t room;
    bool into_item;
    if (!read_target(c, &dst, &room, &into_item)) {
        return -2;
    }
    ssize_t n = c->tp->read(&c->io, dst, room);
    if (n < 0) {
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? -2 : -1;
    }
    if (n > 0) {
        read_account(c, (size_t)n, into_item);
    }
    return n;
}

static void consume(struct conn *c, size_t n)
{
    c->rstart += (uint32_t)n;
    c->rlen -= (uint32_t)n;
    if (c->rlen == 0) {
        c->rstart = 0;
    }
}

void conn_consume(struct conn *c, size_t n)
{
    consume(c, n);
}

/* Runs one buffered binary request. Returns false when it needs more bytes
 * or the connection must close (then c->close_now is set). */
static bool conn_process_binary(struct conn *c)
{
    struct bin_request req;
    size_t used = 0;
    enum bin_result r = bin_parse_request(c->rbuf + c->rstart, c->rlen, &req, &used);
    switch (r) {
    case BIN_NEED_MORE:
        return false;
    case BIN_CLOSE:
        c->close_now = true;
        return false;
    case BIN_ERROR:
    case BIN_OK:
        break;
    }
    if (c->w->srv->settings->sasl) {
        return conn_auth_binary(c, r, &req, used);
    }
    if (r == BIN_ERROR) {
        process_binary_error(c, &req);
        consume(c, used);
        return true;
    }
    conn_set_last_cmd(c, clock_now(&c->w->srv->clock));
    /* The request's pointers stay valid until consume(): process never reads. */
    process_binary(c, &req);
    consume(c, used);
    return true;
}

bool conn_run(struct conn *c, bool *yielded)
{
    struct server *srv = c->w->srv;
    int budget = srv->settings->reqs_per_event;
    *yielded = false;
    if (c->ext != NULL && c->ext->dump != NULL) {
        /* A dump goes on alone, one stretch per drained output; requests
         * pipelined behind it wait for its end. */
        dump_continue(c);
        if (c->ext->dump != NULL) {
            *yielded = true;
            return true;
        }
    }
    while (!c->close_after_write) {
        /* CONN_NREAD and CONN_SWALLOW are entered only with c->ext made. */
        if (c->state == CONN_NREAD) {
            struct conn_ext *x = c->ext;
            while (c->rlen > 0 && x->item_done < x->item_need) {
                size_t n;
                char *dst = nread_target(x, &n);
                if (n > c->rlen) {
                    n = c->rlen;
                }
                memcpy(dst, c->rbuf + c->rstart, n);
                x->item_done += (uint32_t)n;
                consume(c, n);
            }
            if (x->item_done < x->item_need) {
                return true;
            }
            conn_set_state(c, CONN_NEW_CMD);
            process_complete_nread(c);
            continue;
        }
        if (c->state == CONN_SWALLOW) {
            struct conn_ext *x = c->ext;
            size_t n = x->swallow < c->rlen ? (size_t)x->swallow : c->rlen;
            consume(c, n);
            x->swallow -= n;
            if (x->swallow > 0) {
                return true;
            }
            conn_set_state(c, CONN_NEW_CMD);
            continue;
        }
        if (c->rlen == 0) {
            return true;
        }
        if (!c->proto_known) {
            c->proto_known = true;
            unsigned char first = (unsigned char)c->rbuf[c->rstart];
            enum binding_protocol bp = srv->settings->binding_protocol;
            c->binary = bp == PROTO_BINARY || (bp == PROTO_AUTO && first == 0x80);
            if (server_verbose(srv) > 1) {
                log_msg(LOG_DEBUG, "%d: Client using the %s protocol", c->fd,
                        c->binary ? "binary" : "ascii");
            }
        }
        if (c->out_bytes > OUT_BATCH_MAX) {
            *yielded = true; /* resumes once the output has been written */
            return true;
        }
        if (budget-- <= 0) {
            STAT_INCR(&c->w->stats, conn_yields);
            *yielded = true;
            return true;
        }
        if (c->binary) {
            if (!conn_process_binary(c)) {
                return !c->close_now;
            }
            continue;
        }
        if (srv->authfile != NULL && !c->authenticated) {
            int ar = conn_auth_text(c);
            if (ar <= 0) {
                return ar == 0;
            }
            continue;
        }
        struct text_request req;
        size_t used = 0;
        enum text_status st = text_parse(c->rbuf + c->rstart, c->rlen, &req, &used);
        if (st == TEXT_NEED_MORE) {
            return true;
        }
        if (st == TEXT_CLOSE) {
            return false;
        }
        conn_set_last_cmd(c, clock_now(&srv->clock));
        /* The request's pointers stay valid until consume() below: process
         * never reads from the socket. */
        process_text(c, &req);
        consume(c, used);
        if (c->ext != NULL && c->ext->dump != NULL) {
            *yielded = true; /* dump_continue() runs on the next pass */
            return true;
        }
    }
    return true;
}

/* ---- the io_uring path (-o io_uring, uring.h) ---------------------------
 *
 * The same steps as the event path, one operation in flight at a time: a
 * recv; on its completion conn_drive() runs the buffered requests; their
 * replies go out in sendmsg operations until none is left (a client that
 * does not read its replies gets no recv, as on the event path); then the
 * next recv. A yield resumes through c->ev, activated without a socket. */

static void ring_next(struct conn *c, bool yielded);

static void ring_send(struct conn *c)
{
    struct iovec iov[IOV_BATCH];
    int n = out_iov(c, iov);
    c->ring_sending = true;
    if (uring_send(c->ring, iov, n) != 0) {
        conn_close(c, "error");
    }
}

static void ring_recv(struct conn *c)
{
    char *dst;
    size_t room;
    bool into_item;
    if (!read_target(c, &dst, &room, &into_item)) {
        ring_send(c); /* the error reply, then close */
        return;
    }
    c->ring_into_item = into_item;
    c->ring_sending = false;
    if (uring_recv(c->ring, dst, room) != 0) {
        conn_close(c, "error");
    }
}

static void conn_ring_done(void *arg, int res)
{
    struct conn *c = arg;
    if (c->ring_closed) {
        conn_release(c);
        return;
    }
    if (res == -EINTR || res == -EAGAIN) {
        if (c->ring_sending) {
            ring_send(c);
        } else {
            ring_recv(c);
        }
        return;
    }
    if (res < 0) {
        conn_close(c, "error");
        return;
    }
    if (c->ring_sending) {
        out_advance(c, (size_t)res);
        if (c->seg_sent < c->nsegs) {
            /* A short send: the socket's buffer is full. The worker's tick
             * closes a reader that stays away past -o write_stall_timeout. */
            c->write_blocked_since = clock_now(&c->w->srv->clock);
            ring_send(c);
            return;
        }
        if (c->close_after_write) {
            out_drained(c);
            conn_finish(c);
            return;
        }
        /* Drained: go on with whatever was buffered meanwhile. */
        conn_drive(c);
        return;
    }
    if (res == 0) {
        c->peer_closed = true; /* answer what it sent, then close */
    } else {
        read_account(c, (size_t)res, c->ring_into_item);
    }
    conn_drive(c);
}

/* After a batch ran: send its replies, or close, or resume, or read on. */
static void ring_next(struct conn *c, bool yielded)
{
    if (c->seg_sent < c->nsegs) {
        ring_send(c);
        return;
    }
    out_drained(c);
    if (c->close_after_write || (c->peer_closed && !yielded)) {
        conn_finish(c);
        return;
    }
    if (yielded) {
        event_active(&c->ev, EV_READ, 0);
        return;
    }
    if (c->state == CONN_NEW_CMD && c->rlen == 0) {
        /* Idle again: the extension goes back (the read buffer stays, as
         * the recv's target). */
        ext_trim(c);
    }
    ring_recv(c);
}

void conn_drive(struct conn *c)
{
    bool yielded = false;
    if (!conn_run(c, &yielded)) {
        if (c->ring != NULL) {
            /* What was queued goes out first, as conn_flush() tries below. */
            c->close_after_write = c->close_error = true;
            ring_next(c, false);
            return;
        }
        conn_flush(c);
        conn_close(c, "error");
        return;
    }
    if (c->binary && c->state == CONN_SWALLOW && !c->peer_closed &&
        conn_out_pending(c) < SWALLOW_HOLD_MAX) {
        /* memcached answers a refused binary request only once the bytes it
         * discards have arrived; keep the replies until then. */
        if (c->ring != NULL) {
            ring_recv(c);
        } else {
            set_events(c, EV_READ | EV_PERSIST);
        }
        return;
    }
    if (c->ring != NULL) {
        ring_next(c, yielded);
        return;
    }
    int fl = conn_flush(c);
    if (fl < 0) {
        conn_close(c, "error");
        return;
    }
    if (fl == 0) {
        set_events(c, EV_WRITE | EV_PERSIST);
        return;
    }
    if (c->close_after_write || (c->peer_closed && !yielded)) {
        conn_finish(c);
        return;
    }
    if (c->state == CONN_NEW_CMD && c->rlen == 0) {
        free_rbuf(c);
        ext_trim(c);
    }
    set_events(c, EV_READ | EV_PERSIST);
    /* A TLS record may hold more than one read took: the socket will not
     * signal those bytes again. */
    if (yielded || (c->tp->pending != NULL && c->tp->pending(&c->io))) {
        event_active(&c->ev, EV_READ, 0);
    }
}

static void conn_event_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    (void)fd;
    if (what & EV_WRITE) {
        int fl = conn_flush(c);
        if (fl < 0) {
            conn_close(c, "error");
            return;
        }
        if (fl == 0) {
            return;
        }
        if (c->close_after_write) {
            conn_finish(c);
            return;
        }
        /* Drained: go on with whatever was buffered while we waited. */
        set_events(c, EV_READ | EV_PERSIST);
        conn_drive(c);
        return;
    }
    /* While a dump streams, requests behind it stay in the socket; a ring's
     * connection gets here only to start or to resume after a yield. */
    ssize_t n = (c->ext != NULL && c->ext->dump != NULL) || c->ring != NULL ? -2 : conn_read(c);
    if (n == -1) {
        conn_close(c, "error");
        return;
    }
    if (n == 0) {
        /* The peer is done sending; answer what it sent, then close. */
        c->peer_closed = true;
    }
    conn_drive(c);
}

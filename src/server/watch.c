/*
 * watch.c - log watchers (see watch.h): the hub, the producers' line
 * formats (memcached 1.6's logger.c formats, field for field), and the main
 * thread's writing of each watcher's buffer.
 */
#include "watch.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "log.h"
#include "text.h"
#include "uri.h"

struct watcher {
    struct watch *hub;
    int fd;
    unsigned flags;
    struct event *read_ev;    /* EOF or error closes the watcher; input is ignored */
    struct event *write_ev;   /* added whenever pending gains bytes */
    struct evbuffer *pending; /* producers append, under hub->lock */
    struct evbuffer *out;     /* main thread only: bytes taken from pending */
    uint64_t skipped;         /* lines missed while full, under hub->lock */
};

struct watch {
    struct event_base *base;
    pthread_mutex_t lock; /* guards watchers[] and each watcher's pending/skipped */
    struct watcher *watchers[WATCH_MAX_WATCHERS];
    unsigned flags; /* union of the watchers' flags; relaxed atomics */
    uint64_t gid;   /* memcached's global log id; atomic */
    size_t limit;
    uint64_t *curr_conns;
};

static void read_cb(evutil_socket_t fd, short what, void *arg);
static void write_cb(evutil_socket_t fd, short what, void *arg);
static void unlink_watcher(struct watch *h, struct watcher *wt);

int watch_wants(const struct watch *w, unsigned flag)
{
    return w != NULL && (__atomic_load_n(&w->flags, __ATOMIC_RELAXED) & flag) != 0;
}

static void recompute_flags_locked(struct watch *h)
{
    unsigned f = 0;
    for (int i = 0; i < WATCH_MAX_WATCHERS; i++) {
        if (h->watchers[i] != NULL) {
            f |= h->watchers[i]->flags;
        }
    }
    __atomic_store_n(&h->flags, f, __ATOMIC_RELAXED);
}

struct watch *watch_create(struct event_base *base, size_t buf_limit, uint64_t *curr_conns)
{
    struct watch *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        return NULL;
    }
    h->base = base;
    h->limit = buf_limit > 0 ? buf_limit : 256 * 1024;
    h->curr_conns = curr_conns;
    pthread_mutex_init(&h->lock, NULL);
    return h;
}

static void watcher_free(struct watcher *wt)
{
    if (wt->read_ev != NULL) {
        event_free(wt->read_ev);
    }
    if (wt->write_ev != NULL) {
        event_free(wt->write_ev);
    }
    if (wt->pending != NULL) {
        evbuffer_free(wt->pending);
    }
    if (wt->out != NULL) {
        evbuffer_free(wt->out);
    }
    free(wt);
}

/* Main thread: unlinks and closes one watcher. */
static void watcher_close(struct watcher *wt)
{
    struct watch *h = wt->hub;
    unlink_watcher(h, wt);
    if (wt->fd >= 0) {
        log_msg(LOG_DEBUG, "<%d watcher closed", wt->fd);
        close(wt->fd);
        if (h->curr_conns != NULL) {
            __atomic_sub_fetch(h->curr_conns, 1, __ATOMIC_RELAXED);
        }
    }
    watcher_free(wt);
}

void watch_destroy(struct watch **wp)
{
    struct watch *h = *wp;
    if (h == NULL) {
        return;
    }
    for (int i = 0; i < WATCH_MAX_WATCHERS; i++) {
        if (h->watchers[i] != NULL) {
            watcher_close(h->watchers[i]);
        }
    }
    pthread_mutex_destroy(&h->lock);
    free(h);
    *wp = NULL;
}

int watch_parse_flags(const struct text_token *args, unsigned n, unsigned *flags)
{
    static const struct {
        const char *name;
        unsigned flag;
    } names[] = {
        {"fetchers", WATCH_FETCHERS},   {"mutations", WATCH_MUTATIONS},
        {"evictions", WATCH_EVICTIONS}, {"connevents", WATCH_CONNEVENTS},
        {"rawcmds", WATCH_OTHER},       {"sysevents", WATCH_OTHER},
        {"proxyreqs", WATCH_OTHER},     {"proxyevents", WATCH_OTHER},
        {"proxyuser", WATCH_OTHER},
    };
    *flags = n == 0 ? WATCH_FETCHERS : 0;
    for (unsigned i = 0; i < n; i++) {
        unsigned f = 0;
        for (size_t j = 0; j < sizeof(names) / sizeof(names[0]); j++) {
            if (args[i].len == strlen(names[j].name) &&
                memcmp(args[i].p, names[j].name, args[i].len) == 0) {
                f = names[j].flag;
            }
        }
        if (f == 0) {
            return -1;
        }
        *flags |= f;
    }
    return 0;
}

/* Main thread: takes pending bytes (while out holds less than the limit, so
 * a stuck watcher's memory stays bounded and its producers start skipping)
 * and writes what the socket takes. */
static void write_cb(evutil_socket_t fd, short what, void *arg)
{
    struct watcher *wt = arg;
    struct watch *h = wt->hub;
    (void)what;
    for (;;) {
        if (evbuffer_get_length(wt->out) < h->limit) {
            pthread_mutex_lock(&h->lock);
            evbuffer_add_buffer(wt->out, wt->pending);
            pthread_mutex_unlock(&h->lock);
        }
        if (evbuffer_get_length(wt->out) == 0) {
            return;
        }
        int n = evbuffer_write(wt->out, fd);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            event_add(wt->write_ev, NULL);
            return;
        }
        if (n < 0 && errno != EINTR) {
            watcher_close(wt);
            return;
        }
    }
}

static void read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct watcher *wt = arg;
    char buf[512];
    (void)what;
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        watcher_close(wt);
    }
}

struct watcher *watch_reserve(struct watch *h, unsigned flags)
{
    struct watcher *wt = calloc(1, sizeof(*wt));
    if (wt == NULL) {
        return NULL;
    }
    wt->hub = h;
    wt->fd = -1;
    wt->flags = flags;
    wt->pending = evbuffer_new();
    wt->out = evbuffer_new();
    if (wt->pending == NULL || wt->out == NULL) {
        watcher_free(wt);
        return NULL;
    }
    pthread_mutex_lock(&h->lock);
    int slot = -1;
    for (int i = 0; i < WATCH_MAX_WATCHERS && slot < 0; i++) {
        if (h->watchers[i] == NULL) {
            slot = i;
        }
    }
    if (slot >= 0) {
        h->watchers[slot] = wt;
        recompute_flags_locked(h);
    }
    pthread_mutex_unlock(&h->lock);
    if (slot < 0) {
        watcher_free(wt);
        return NULL;
    }
    return wt;
}

static void unlink_watcher(struct watch *h, struct watcher *wt)
{
    pthread_mutex_lock(&h->lock);
    for (int i = 0; i < WATCH_MAX_WATCHERS; i++) {
        if (h->watchers[i] == wt) {
            h->watchers[i] = NULL;
        }
    }
    recompute_flags_locked(h);
    pthread_mutex_unlock(&h->lock);
}

void watch_cancel(struct watch *h, struct watcher *wt)
{
    unlink_watcher(h, wt);
    watcher_free(wt);
}

int watch_attach(struct watch *h, struct watcher *wt, int fd)
{
    struct event *rd = event_new(h->base, fd, EV_READ | EV_PERSIST, read_cb, wt);
    struct event *wr = event_new(h->base, fd, EV_WRITE, write_cb, wt);
    if (rd == NULL || wr == NULL) {
        if (rd != NULL) {
            event_free(rd);
        }
        if (wr != NULL) {
            event_free(wr);
        }
        watch_cancel(h, wt);
        return -1;
    }
    pthread_mutex_lock(&h->lock);
    wt->fd = fd;
    wt->read_ev = rd;
    wt->write_ev = wr;
    event_add(rd, NULL);
    if (evbuffer_get_length(wt->pending) > 0) {
        event_add(wr, NULL);
    }
    pthread_mutex_unlock(&h->lock);
    log_msg(LOG_DEBUG, "<%d became a watcher (flags %#x)", fd, wt->flags);
    return 0;
}

/* Formats "ts=... gid=... <body>\n" and queues it for every watcher of flag. */
static void emit(struct watch *h, unsigned flag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void emit(struct watch *h, unsigned flag, const char *fmt, ...)
{
    char line[1024];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    uint64_t gid = __atomic_add_fetch(&h->gid, 1, __ATOMIC_RELAXED);
    /* memcached prints the microseconds unpadded: "ts=1795496610.13145". */
    int n = snprintf(line, sizeof(line), "ts=%d.%d gid=%llu ", (int)tv.tv_sec, (int)tv.tv_usec,
                     (unsigned long long)gid);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0) {
        return;
    }
    n += m;
    if ((size_t)n > sizeof(line) - 2) {
        n = (int)sizeof(line) - 2;
    }
    line[n++] = '\n';

    pthread_mutex_lock(&h->lock);
    for (int i = 0; i < WATCH_MAX_WATCHERS; i++) {
        struct watcher *wt = h->watchers[i];
        if (wt == NULL || (wt->flags & flag) == 0) {
            continue;
        }
        size_t queued = evbuffer_get_length(wt->pending);
        if (queued + (size_t)n > h->limit) {
            wt->skipped++;
            continue;
        }
        if (wt->skipped > 0) {
            evbuffer_add_printf(wt->pending, "skipped=%llu\n", (unsigned long long)wt->skipped);
            wt->skipped = 0;
        }
        evbuffer_add(wt->pending, line, (size_t)n);
        if (queued == 0 && wt->write_ev != NULL) {
            event_add(wt->write_ev, NULL);
        }
    }
    pthread_mutex_unlock(&h->lock);
}

/* A key as watch lines print it, NUL-terminated. */
static void key_encode(const char *key, size_t nkey, char *out, size_t cap)
{
    if (nkey > 250 || URI_ENCODED_MAX(nkey) >= cap) {
        nkey = 0; /* keys are at most 250 bytes; never happens */
    }
    out[uri_encode(key, nkey, out)] = '\0';
}

void watch_emit_get(struct watch *h, const char *key, size_t nkey, enum watch_get_status status,
                    unsigned clsid, int cfd, size_t size)
{
    static const char *const names[] = {"not_found", "found", "flushed", "expired"};
    char k[3 * 250 + 8];
    key_encode(key, nkey, k, sizeof(k));
    emit(h, WATCH_FETCHERS, "type=item_get key=%s status=%s clsid=%u cfd=%d size=%zu", k,
         names[status], clsid, cfd, size);
}

void watch_emit_store(struct watch *h, const char *key, size_t nkey, int status, const char *cmd,
                      unsigned ttl, unsigned clsid, int cfd, size_t size)
{
    static const char *const names[] = {"not_stored", "stored",    "exists",
                                        "not_found",  "too_large", "no_memory"};
    char k[3 * 250 + 8];
    key_encode(key, nkey, k, sizeof(k));
    emit(h, WATCH_MUTATIONS,
         "type=item_store key=%s status=%s cmd=%s ttl=%u clsid=%u cfd=%d size=%zu", k,
         names[status >= 0 && status <= 5 ? status : 0], cmd, ttl, clsid, cfd, size);
}

void watch_emit_conn(struct watch *h, const char *peer, int cfd, const char *reason)
{
    char rip[64] = "unix";
    unsigned rport = 0;
    const char *transport = "local";
    const char *p = NULL;
    if (strncmp(peer, "tcp6:[", 6) == 0) {
        p = peer + 6;
        const char *close = strchr(p, ']');
        if (close != NULL) {
            snprintf(rip, sizeof(rip), "%.*s", (int)(close - p), p);
            rport = close[1] == ':' ? (unsigned)atoi(close + 2) : 0;
        }
        transport = "tcp";
    } else if (strncmp(peer, "tcp:", 4) == 0) {
        p = peer + 4;
        const char *colon = strrchr(p, ':');
        if (colon != NULL) {
            snprintf(rip, sizeof(rip), "%.*s", (int)(colon - p), p);
            rport = (unsigned)atoi(colon + 1);
        }
        transport = "tcp";
    }
    if (reason == NULL) {
        emit(h, WATCH_CONNEVENTS, "type=conn_new rip=%s rport=%u transport=%s cfd=%d", rip, rport,
             transport, cfd);
    } else {
        emit(h, WATCH_CONNEVENTS, "type=conn_close rip=%s rport=%u transport=%s reason=%s cfd=%d",
             rip, rport, transport, reason, cfd);
    }
}

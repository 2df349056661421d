/*
 * loadgen.c - the epoll engine of `memstash bench` (see loadgen.h).
 *
 * Each thread owns its connections and an epoll set; nothing is shared
 * between threads but the phase flag and the options. A connection keeps a
 * ring of the requests it has in flight (kind and start time); replies are
 * matched to the ring's head in order, which every memcached protocol
 * guarantees on one connection. Replies are scanned, not parsed: only what
 * is needed to find where each one ends, with value bytes skipped as they
 * arrive, so a 16 KB value never has to fit in the read buffer.
 *
 * The run has three phases: warm-up (connections open, requests flow, nothing
 * counted), measure, stop. The main thread takes the client's CPU time
 * (getrusage) at the edges of the measured phase.
 */
#include "loadgen.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "hist.h"
#include "rng.h"

#define KEY_BUF  256
#define RBUF     (64 * 1024)
#define MAX_EVTS 256

enum wire { WIRE_TEXT, WIRE_META, WIRE_BINARY };
enum kind { K_GET, K_MULTI, K_SET };
enum phase { PH_WARMUP, PH_MEASURE, PH_STOP };

struct inflight {
    uint64_t t0;
    uint8_t kind;
};

struct lconn {
    int fd;
    bool want_out;         /* EPOLLOUT armed */
    bool dirty;            /* on the thread's flush list */
    struct inflight *ring; /* capacity: depth */
    unsigned head, count;
    char *out; /* pending request bytes */
    size_t out_len, out_off, out_cap;
    char *in; /* RBUF bytes */
    size_t in_len;
    uint64_t skip;        /* value bytes still to discard */
    bool done_after_skip; /* the head completes when skip reaches 0 */
    unsigned head_hits;   /* hits seen so far in the head's reply */
};

struct lthread {
    const struct bench_opts *o;
    enum wire wire;
    const struct sockaddr_storage *addr;
    socklen_t addrlen;
    atomic_int *phase;
    unsigned nconns, depth;
    struct lconn *conns;
    struct lconn **flush;
    unsigned nflush;
    int ep;
    pthread_t tid;
    uint64_t rng;
    double rate; /* this thread's ops/s; 0 for closed loop */
    const char *value;
    struct hist hist;
    uint64_t ops, keys, gets, hits, sets, errors, backlog_max;
    int failed; /* errno of a connection failure */
};

static uint64_t lg_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Key k as exactly `size` bytes: 'k' padding, then the decimal number. */
static size_t lg_key(char *buf, size_t size, uint64_t k)
{
    char num[24];
    int n = snprintf(num, sizeof(num), "%llu", (unsigned long long)k);
    memset(buf, 'k', size);
    memcpy(buf + size - (size_t)n, num, (size_t)n);
    return size;
}

static bool out_reserve(struct lconn *c, size_t more)
{
    if (c->out_len + more <= c->out_cap) {
        return true;
    }
    if (c->out_off > 0) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
        if (c->out_len + more <= c->out_cap) {
            return true;
        }
    }
    size_t cap = c->out_cap ? c->out_cap : 4096;
    while (cap < c->out_len + more) {
        cap *= 2;
    }
    char *p = realloc(c->out, cap);
    if (!p) {
        return false;
    }
    c->out = p;
    c->out_cap = cap;
    return true;
}

static void out_put(struct lconn *c, const void *p, size_t n)
{
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
}

static void bin_header(struct lconn *c, uint8_t op, uint16_t keylen, uint8_t extlen,
                       uint32_t bodylen)
{
    uint8_t h[24] = {0};
    h[0] = 0x80;
    h[1] = op;
    h[2] = (uint8_t)(keylen >> 8);
    h[3] = (uint8_t)keylen;
    h[4] = extlen;
    h[8] = (uint8_t)(bodylen >> 24);
    h[9] = (uint8_t)(bodylen >> 16);
    h[10] = (uint8_t)(bodylen >> 8);
    h[11] = (uint8_t)bodylen;
    out_put(c, h, sizeof(h));
}

/* Appends one request to c's output and records it in the ring; false when out of memory. */
static bool compose(struct lthread *t, struct lconn *c, uint64_t t0)
{
    const struct bench_opts *o = t->o;
    unsigned tw = o->get_weight + o->set_weight;
    bool is_get = (unsigned)(rng_next(&t->rng) % tw) < o->get_weight;
    enum kind kind = !is_get ? K_SET : o->multi > 1 ? K_MULTI : K_GET;
    size_t ks = o->key_size;
    unsigned nkeys = kind == K_MULTI ? o->multi : 1;
    size_t need = (size_t)nkeys * (ks + 40) + 64 + (kind == K_SET ? o->value_size : 0);
    if (!out_reserve(c, need)) {
        return false;
    }
    char key[KEY_BUF];
    char line[128];
    if (kind == K_SET) {
        lg_key(key, ks, rng_next(&t->rng) % o->keys);
        if (t->wire == WIRE_BINARY) {
            bin_header(c, 0x01, (uint16_t)ks, 8, (uint32_t)(8 + ks + o->value_size));
            static const uint8_t extras[8] = {0};
            out_put(c, extras, 8);
            out_put(c, key, ks);
            out_put(c, t->value, o->value_size);
        } else {
            out_put(c, t->wire == WIRE_META ? "ms " : "set ", t->wire == WIRE_META ? 3 : 4);
            out_put(c, key, ks);
            int n = t->wire == WIRE_META
                        ? snprintf(line, sizeof(line), " %zu\r\n", o->value_size)
                        : snprintf(line, sizeof(line), " 0 0 %zu\r\n", o->value_size);
            out_put(c, line, (size_t)n);
            out_put(c, t->value, o->value_size);
            out_put(c, "\r\n", 2);
        }
    } else if (t->wire == WIRE_TEXT) {
        out_put(c, "get", 3);
        for (unsigned i = 0; i < nkeys; i++) {
            out_put(c, " ", 1);
            out_put(c, key, lg_key(key, ks, rng_next(&t->rng) % o->keys));
        }
        out_put(c, "\r\n", 2);
    } else if (t->wire == WIRE_META) {
        for (unsigned i = 0; i < nkeys; i++) {
            out_put(c, "mg ", 3);
            out_put(c, key, lg_key(key, ks, rng_next(&t->rng) % o->keys));
            out_put(c, kind == K_MULTI ? " v q\r\n" : " v\r\n", kind == K_MULTI ? 6 : 4);
        }
        if (kind == K_MULTI) {
            out_put(c, "mn\r\n", 4);
        }
    } else {
        for (unsigned i = 0; i < nkeys; i++) {
            lg_key(key, ks, rng_next(&t->rng) % o->keys);
            bin_header(c, kind == K_MULTI ? 0x0d : 0x00, (uint16_t)ks, 0, (uint32_t)ks);
            out_put(c, key, ks);
        }
        if (kind == K_MULTI) {
            bin_header(c, 0x0a, 0, 0, 0);
        }
    }
    unsigned slot = (c->head + c->count) % t->depth;
    c->ring[slot].t0 = t0;
    c->ring[slot].kind = (uint8_t)kind;
    c->count++;
    if (!c->dirty) {
        c->dirty = true;
        t->flush[t->nflush++] = c;
    }
    return true;
}

/* The ring's head has its whole reply. */
static void complete(struct lthread *t, struct lconn *c, bool error, uint64_t now)
{
    if (c->count == 0) {
        t->errors++; /* a reply nobody asked for */
        return;
    }
    struct inflight *f = &c->ring[c->head];
    unsigned hits = c->head_hits;
    c->head_hits = 0;
    c->head = (c->head + 1) % t->depth;
    c->count--;
    if (atomic_load_explicit(t->phase, memory_order_relaxed) != PH_MEASURE) {
        return;
    }
    t->hits += hits;
    hist_add(&t->hist, now > f->t0 ? now - f->t0 : 0);
    t->ops++;
    unsigned n = f->kind == K_MULTI ? t->o->multi : 1;
    t->keys += n;
    if (f->kind == K_SET) {
        t->sets++;
    } else {
        t->gets += n;
    }
    if (error) {
        t->errors++;
    }
}

/* A hit in the head's reply; counted with the reply when it completes. */
static void count_hit(struct lconn *c)
{
    c->head_hits++;
}

static bool starts(const char *p, size_t n, const char *w)
{
    size_t wl = strlen(w);
    return n >= wl && memcmp(p, w, wl) == 0 && (n == wl || p[wl] == ' ');
}

/* The last number on a VALUE line or the first after "VA ". */
static uint64_t line_number(const char *p, size_t n, bool last)
{
    size_t i;
    if (last) {
        i = n;
        while (i > 0 && p[i - 1] != ' ') {
            i--;
        }
    } else {
        i = 3;
    }
    uint64_t v = 0;
    while (i < n && p[i] >= '0' && p[i] <= '9') {
        v = v * 10 + (uint64_t)(p[i] - '0');
        i++;
    }
    return v;
}

/* Scans what c has buffered; returns the bytes consumed. */
static size_t scan(struct lthread *t, struct lconn *c, uint64_t now)
{
    size_t pos = 0;
    for (;;) {
        if (c->skip > 0) {
            size_t avail = c->in_len - pos;
            size_t take = avail < c->skip ? avail : (size_t)c->skip;
            pos += take;
            c->skip -= take;
            if (c->skip > 0) {
                return pos;
            }
            if (c->done_after_skip) {
                c->done_after_skip = false;
                complete(t, c, false, now);
            }
        }
        const char *p = c->in + pos;
        size_t avail = c->in_len - pos;
        if (t->wire == WIRE_BINARY) {
            if (avail < 24) {
                return pos;
            }
            const uint8_t *h = (const uint8_t *)p;
            uint8_t op = h[1];
            uint16_t status = (uint16_t)(h[6] << 8 | h[7]);
            uint32_t body = (uint32_t)h[8] << 24 | (uint32_t)h[9] << 16 | (uint32_t)h[10] << 8 |
                            (uint32_t)h[11];
            pos += 24;
            c->skip = body;
            if (op == 0x0d) {
                count_hit(c);
                continue;
            }
            if (op == 0x00 && status == 0) {
                count_hit(c);
            }
            bool err = h[0] != 0x81 || (op != 0x00 && status != 0);
            if (body > 0) {
                c->done_after_skip = true; /* completes once the body is skipped */
                if (err) {
                    t->errors++;
                }
            } else {
                complete(t, c, err, now);
            }
            continue;
        }
        const char *nl = memchr(p, '\n', avail);
        if (!nl) {
            return pos;
        }
        size_t n = (size_t)(nl - p);
        pos += n + 1;
        if (n > 0 && p[n - 1] == '\r') {
            n--;
        }
        enum kind head = c->count ? (enum kind)c->ring[c->head].kind : K_GET;
        if (starts(p, n, "VALUE")) {
            count_hit(c);
            c->skip = line_number(p, n, true) + 2;
        } else if (starts(p, n, "VA")) {
            count_hit(c);
            c->skip = line_number(p, n, false) + 2;
            c->done_after_skip = head != K_MULTI;
        } else if (starts(p, n, "ERROR") || starts(p, n, "CLIENT_ERROR") ||
                   starts(p, n, "SERVER_ERROR")) {
            complete(t, c, true, now);
        } else if (starts(p, n, "NOT_STORED") || starts(p, n, "EXISTS") ||
                   starts(p, n, "NOT_FOUND") || starts(p, n, "NS") || starts(p, n, "EX") ||
                   starts(p, n, "NF")) {
            complete(t, c, head == K_SET, now);
        } else {
            /* END, STORED, EN, HD, MN and anything else end the head's reply. */
            complete(t, c, false, now);
        }
    }
}

static void arm(struct lthread *t, struct lconn *c, bool out)
{
    if (c->want_out == out) {
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0u), .data.ptr = c};
    epoll_ctl(t->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = out;
}

static int flush_conn(struct lthread *t, struct lconn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                arm(t, c, true);
                return 0;
            }
            return -errno;
        }
        c->out_off += (size_t)w;
    }
    c->out_off = c->out_len = 0;
    arm(t, c, false);
    return 0;
}

static int read_conn(struct lthread *t, struct lconn *c)
{
    ssize_t r = recv(c->fd, c->in + c->in_len, RBUF - c->in_len, 0);
    if (r == 0) {
        return -ECONNRESET;
    }
    if (r < 0) {
        return errno == EAGAIN || errno == EINTR ? 0 : -errno;
    }
    c->in_len += (size_t)r;
    size_t used = scan(t, c, lg_now());
    if (used < c->in_len) {
        memmove(c->in, c->in + used, c->in_len - used);
    }
    c->in_len -= used;
    if (c->in_len == RBUF) {
        return -EMSGSIZE; /* a reply line longer than the buffer */
    }
    return 0;
}

static int open_conn(struct lthread *t, struct lconn *c)
{
    c->fd = socket(t->addr->ss_family, SOCK_STREAM, 0);
    if (c->fd < 0) {
        return -errno;
    }
    if (connect(c->fd, (const struct sockaddr *)t->addr, t->addrlen) != 0) {
        return -errno;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int fl = fcntl(c->fd, F_GETFL);
    if (fl < 0 || fcntl(c->fd, F_SETFL, fl | O_NONBLOCK) != 0) {
        return -errno;
    }
    c->ring = calloc(t->depth, sizeof(*c->ring));
    c->in = malloc(RBUF);
    if (!c->ring || !c->in) {
        return -ENOMEM;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(t->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        return -errno;
    }
    return 0;
}

static void fail(struct lthread *t, int err)
{
    if (!t->failed) {
        t->failed = err < 0 ? -err : err;
    }
}

static void *thread_main(void *arg)
{
    struct lthread *t = arg;
    struct epoll_event evs[MAX_EVTS];
    t->ep = epoll_create1(0);
    if (t->ep < 0) {
        fail(t, errno);
        return NULL;
    }
    for (unsigned i = 0; i < t->nconns; i++) {
        t->conns[i].fd = -1;
    }
    for (unsigned i = 0; i < t->nconns && !t->failed; i++) {
        int rc = open_conn(t, &t->conns[i]);
        if (rc != 0) {
            fail(t, rc);
        }
    }
    uint64_t interval = t->rate > 0 ? (uint64_t)(1e9 / t->rate) : 0;
    uint64_t next_due = lg_now();
    unsigned rr = 0;
    bool stalled = false; /* every connection is full: wait for replies, not for the clock */
    for (unsigned i = 0; i < t->nconns && !t->failed && !interval; i++) {
        for (unsigned d = 0; d < t->depth; d++) {
            if (!compose(t, &t->conns[i], lg_now())) {
                fail(t, ENOMEM);
            }
        }
    }
    while (!t->failed && atomic_load_explicit(t->phase, memory_order_relaxed) != PH_STOP) {
        struct timespec to = {0, 100 * 1000000L};
        if (interval && !stalled) {
            uint64_t now = lg_now();
            uint64_t d = next_due > now ? next_due - now : 0;
            if (d < (uint64_t)to.tv_nsec) {
                to.tv_nsec = (long)d;
            }
        }
        if (t->nflush == 0) {
            int n = epoll_pwait2(t->ep, evs, MAX_EVTS, &to, NULL);
            for (int i = 0; i < n && !t->failed; i++) {
                struct lconn *c = evs[i].data.ptr;
                int rc = 0;
                if (evs[i].events & EPOLLOUT) {
                    rc = flush_conn(t, c);
                }
                if (rc == 0 && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) {
                    rc = read_conn(t, c);
                }
                if (rc != 0) {
                    fail(t, rc);
                    break;
                }
                uint64_t now = lg_now();
                while (!interval && c->count < t->depth) {
                    if (!compose(t, c, now)) {
                        fail(t, ENOMEM);
                        break;
                    }
                }
            }
        }
        if (interval) {
            uint64_t now = lg_now();
            stalled = false;
            while (next_due <= now) {
                struct lconn *c = NULL;
                for (unsigned k = 0; k < t->nconns; k++) {
                    struct lconn *cand = &t->conns[(rr + k) % t->nconns];
                    if (cand->count < t->depth) {
                        c = cand;
                        rr = (rr + k + 1) % t->nconns;
                        break;
                    }
                }
                if (!c) {
                    uint64_t behind = (now - next_due) / interval;
                    if (behind > t->backlog_max) {
                        t->backlog_max = behind;
                    }
                    stalled = true;
                    break; /* every connection is full: the request waits, its clock runs */
                }
                if (!compose(t, c, next_due)) {
                    fail(t, ENOMEM);
                    break;
                }
                next_due += interval;
            }
        }
        for (unsigned i = 0; i < t->nflush; i++) {
            struct lconn *c = t->flush[i];
            c->dirty = false;
            int rc = flush_conn(t, c);
            if (rc != 0) {
                fail(t, rc);
            }
        }
        t->nflush = 0;
    }
    for (unsigned i = 0; i < t->nconns; i++) {
        if (t->conns[i].fd >= 0) {
            close(t->conns[i].fd);
        }
        free(t->conns[i].ring);
        free(t->conns[i].in);
        free(t->conns[i].out);
    }
    close(t->ep);
    return NULL;
}

/* "host:port", "[v6]:port" or "host" (port 11211) from the first server of the list. */
static int resolve(const char *servers, struct sockaddr_storage *ss, socklen_t *len)
{
    char buf[256];
    size_t n = strcspn(servers, ", ");
    if (n == 0 || n >= sizeof(buf)) {
        return -1;
    }
    memcpy(buf, servers, n);
    buf[n] = '\0';
    char *host = buf, *port = NULL;
    if (buf[0] == '[') {
        char *e = strchr(buf, ']');
        if (!e) {
            return -1;
        }
        *e = '\0';
        host = buf + 1;
        port = e[1] == ':' ? e + 2 : NULL;
    } else {
        char *colon = strrchr(buf, ':');
        if (colon) {
            *colon = '\0';
            port = colon + 1;
        }
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo(host, port ? port : "11211", &hints, &ai) != 0 || !ai) {
        return -1;
    }
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

/* Stores every key with noreply text sets, then waits for a version reply. */
static int prefill(const struct sockaddr_storage *ss, socklen_t len, const struct bench_opts *o,
                   const char *value)
{
    int fd = socket(ss->ss_family, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (const struct sockaddr *)ss, len) != 0) {
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    size_t cap = 256 * 1024 + o->value_size + KEY_BUF + 64;
    char *buf = malloc(cap);
    int rc = buf ? 0 : -1;
    size_t used = 0;
    for (uint64_t k = 0; k <= o->keys && rc == 0; k++) {
        if (k < o->keys) {
            char key[KEY_BUF];
            size_t ks = lg_key(key, o->key_size, k);
            memcpy(buf + used, "set ", 4);
            memcpy(buf + used + 4, key, ks);
            used += 4 + ks;
            used += (size_t)snprintf(buf + used, 64, " 0 0 %zu noreply\r\n", o->value_size);
            memcpy(buf + used, value, o->value_size);
            used += o->value_size;
            memcpy(buf + used, "\r\n", 2);
            used += 2;
        } else {
            memcpy(buf + used, "version\r\n", 9);
            used += 9;
        }
        if (used >= 256 * 1024 || k == o->keys) {
            for (size_t off = 0; off < used;) {
                ssize_t w = send(fd, buf + off, used - off, MSG_NOSIGNAL);
                if (w <= 0) {
                    rc = -1;
                    break;
                }
                off += (size_t)w;
            }
            used = 0;
        }
    }
    char reply[256];
    size_t got = 0;
    while (rc == 0 && !memmem(reply, got, "\r\n", 2)) {
        ssize_t r = recv(fd, reply + got, sizeof(reply) - got, 0);
        if (r <= 0 || got + (size_t)r >= sizeof(reply)) {
            rc = -1;
            break;
        }
        got += (size_t)r;
    }
    if (rc == 0 && (got < 8 || memcmp(reply, "VERSION ", 8) != 0)) {
        rc = -1; /* some set was refused */
    }
    free(buf);
    close(fd);
    return rc;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void nap(double secs)
{
    struct timespec ts = {(time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static const char *const wire_names[] = {"text", "meta", "binary"};

static void report(const struct bench_opts *o, enum wire wire, const struct lthread *sum,
                   const struct hist *h, double secs, double cpu)
{
    static const double qs[] = {0.5, 0.9, 0.99, 0.999};
    static const char *const qn[] = {"p50", "p90", "p99", "p99.9"};
    double ops_s = secs > 0 ? (double)sum->ops / secs : 0;
    double keys_s = secs > 0 ? (double)sum->keys / secs : 0;
    double cpu_op = sum->ops ? cpu * 1e6 / (double)sum->ops : 0;
    if (o->json) {
        printf("{\"engine\": \"epoll\", \"protocol\": \"%s\", \"threads\": %u, "
               "\"connections\": %u, \"pipeline\": %u, \"rate_target\": %.1f, "
               "\"seconds\": %.3f, \"ops\": %llu, \"ops_per_sec\": %.1f, \"keys_per_sec\": %.1f, "
               "\"gets\": %llu, \"hits\": %llu, \"sets\": %llu, \"errors\": %llu, "
               "\"backlog_max\": %llu, \"client_cpu_s\": %.4f, \"client_cpu_us_per_op\": %.4f, "
               "\"latency_us\": {",
               wire_names[wire], o->threads, o->connections, o->pipeline, o->rate, secs,
               (unsigned long long)sum->ops, ops_s, keys_s, (unsigned long long)sum->gets,
               (unsigned long long)sum->hits, (unsigned long long)sum->sets,
               (unsigned long long)sum->errors, (unsigned long long)sum->backlog_max, cpu, cpu_op);
        for (unsigned i = 0; i < 4; i++) {
            printf("\"%s\": %.2f, ", qn[i], (double)hist_quantile(h, qs[i]) / 1e3);
        }
        printf("\"max\": %.2f}}\n", (double)h->max / 1e3);
        return;
    }
    printf("bench (epoll): %s, %u threads, %u connections, pipeline %u, ", wire_names[wire],
           o->threads, o->connections, o->pipeline);
    if (o->rate > 0) {
        printf("offered %.0f ops/s, ", o->rate);
    } else {
        printf("closed loop, ");
    }
    printf("get:set %u:%u, multi-get %u, key %zu B, value %zu B, %llu keys, %.1f s\n",
           o->get_weight, o->set_weight, o->multi, o->key_size, o->value_size,
           (unsigned long long)o->keys, secs);
    printf("ops:       %llu  (%.0f ops/s)\n", (unsigned long long)sum->ops, ops_s);
    printf("keys:      %llu  (%.0f keys/s)\n", (unsigned long long)sum->keys, keys_s);
    printf("gets:      %llu keys, %llu hits (%.1f%%)\n", (unsigned long long)sum->gets,
           (unsigned long long)sum->hits,
           sum->gets ? 100.0 * (double)sum->hits / (double)sum->gets : 0.0);
    printf("sets:      %llu\n", (unsigned long long)sum->sets);
    printf("errors:    %llu\n", (unsigned long long)sum->errors);
    printf("latency:  ");
    for (unsigned i = 0; i < 4; i++) {
        printf(" %s %.1f us ", qn[i], (double)hist_quantile(h, qs[i]) / 1e3);
    }
    printf(" max %.1f us\n", (double)h->max / 1e3);
    printf("client:    %.3f s CPU, %.3f us per op\n", cpu, cpu_op);
}

/* The CDF as "microseconds fraction" lines, one per non-empty bucket. */
static int write_cdf(const char *path, const struct hist *h)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        return -1;
    }
    uint64_t total = hist_total(h), seen = 0;
    for (unsigned b = 0; b < NBUCKETS && total; b++) {
        if (h->n[b]) {
            seen += h->n[b];
            fprintf(f, "%.3f %.6f\n", (double)bucket_top(b) / 1e3, (double)seen / (double)total);
        }
    }
    return fclose(f);
}

int loadgen_run(const char *servers, const char *protocol, const struct bench_opts *o)
{
    enum wire wire = WIRE_TEXT;
    if (protocol) {
        unsigned i = 0;
        while (i < 3 && strcmp(protocol, wire_names[i]) != 0) {
            i++;
        }
        if (i == 3) {
            fprintf(stderr, "memstash: bench: --threads speaks text, meta or binary, not %s\n",
                    protocol);
            return 2;
        }
        wire = (enum wire)i;
    }
    if (o->seconds <= 0) {
        fprintf(stderr, "memstash: bench: --threads needs --time\n");
        return 2;
    }
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (resolve(servers, &ss, &sslen) != 0) {
        fprintf(stderr, "memstash: bench: cannot resolve %s\n", servers);
        return 2;
    }
    unsigned nthreads = o->threads < o->connections ? o->threads : o->connections;
    char *value = malloc(o->value_size ? o->value_size : 1);
    struct lthread *ts = calloc(nthreads, sizeof(*ts));
    struct hist *all = calloc(1, sizeof(*all));
    if (!value || !ts || !all) {
        free(value);
        free(ts);
        free(all);
        fprintf(stderr, "memstash: bench: out of memory\n");
        return 3;
    }
    memset(value, 'x', o->value_size);
    int code = 0;
    if (o->prefill && o->get_weight > 0 && prefill(&ss, sslen, o, value) != 0) {
        fprintf(stderr, "memstash: bench: prefill failed\n");
        code = 3;
    }
    atomic_int phase;
    atomic_init(&phase, PH_WARMUP);
    unsigned started = 0;
    uint64_t seed = lg_now();
    for (unsigned i = 0; i < nthreads && code == 0; i++) {
        struct lthread *t = &ts[i];
        t->o = o;
        t->wire = wire;
        t->addr = &ss;
        t->addrlen = sslen;
        t->phase = &phase;
        t->nconns = o->connections / nthreads + (i < o->connections % nthreads ? 1 : 0);
        t->depth = o->pipeline ? o->pipeline : 1;
        t->rate = o->rate / nthreads;
        t->value = value;
        t->rng = (seed ^ (0x9e3779b97f4a7c15ull * (i + 1))) | 1;
        t->conns = calloc(t->nconns, sizeof(*t->conns));
        t->flush = calloc(t->nconns, sizeof(*t->flush));
        if (!t->conns || !t->flush || pthread_create(&t->tid, NULL, thread_main, t) != 0) {
            code = 3;
            break;
        }
        started++;
    }
    double warm = o->seconds * 0.1 < 1.0 ? o->seconds * 0.1 : 1.0;
    nap(warm);
    double cpu0 = cpu_seconds();
    uint64_t t0 = lg_now();
    atomic_store(&phase, PH_MEASURE);
    nap(o->seconds);
    atomic_store(&phase, PH_STOP);
    double secs = (double)(lg_now() - t0) / 1e9;
    double cpu = cpu_seconds() - cpu0;
    struct lthread sum = {0};
    for (unsigned i = 0; i < started; i++) {
        pthread_join(ts[i].tid, NULL);
        struct lthread *t = &ts[i];
        for (unsigned b = 0; b < NBUCKETS; b++) {
            all->n[b] += t->hist.n[b];
        }
        all->max = t->hist.max > all->max ? t->hist.max : all->max;
        sum.ops += t->ops;
        sum.keys += t->keys;
        sum.gets += t->gets;
        sum.hits += t->hits;
        sum.sets += t->sets;
        sum.errors += t->errors;
        sum.backlog_max = t->backlog_max > sum.backlog_max ? t->backlog_max : sum.backlog_max;
        if (t->failed) {
            fprintf(stderr, "memstash: bench: connection failed: %s\n", strerror(t->failed));
            code = 3;
        }
    }
    for (unsigned i = 0; i < nthreads; i++) {
        free(ts[i].conns);
        free(ts[i].flush);
    }
    if (code == 0) {
        report(o, wire, &sum, all, secs, cpu);
        if (o->cdf_path && write_cdf(o->cdf_path, all) != 0) {
            fprintf(stderr, "memstash: bench: cannot write %s\n", o->cdf_path);
            code = 3;
        }
        if (sum.errors || sum.ops == 0) {
            code = 3;
        }
    }
    free(all);
    free(ts);
    free(value);
    return code;
}

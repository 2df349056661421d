/*
 * io.c - connections and the I/O engine of libmemstash (see client_int.h).
 *
 * Every socket is non-blocking. io_run() polls all servers of one call
 * together: a server's request bytes are written as the socket accepts
 * them, and its replies are parsed as soon as they arrive, so a multi-get
 * over N servers costs one round trip, not N.
 */
#include "client_int.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "binary.h"

#define READ_CHUNK (64 * 1024)
/*
 * A connection that ended a call well less than this long ago is used
 * without the idle probe (one recv syscall per call saved on hot loops); a
 * server that closed it meanwhile shows up as a failed read instead.
 */
#define PROBE_IDLE_MS 10

int buf_reserve(struct buf *b, size_t more)
{
    if (b->off > 0 && b->off == b->len) {
        b->off = b->len = 0;
    }
    if (b->cap - b->len >= more) {
        return MST_OK;
    }
    if (b->off > 0) {
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->cap - b->len >= more) {
            return MST_OK;
        }
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < more) {
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p) {
        return MST_ENOMEM;
    }
    b->p = p;
    b->cap = cap;
    return MST_OK;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
    int rc = buf_reserve(b, n);
    if (rc != MST_OK) {
        return rc;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    return MST_OK;
}

void buf_reset(struct buf *b)
{
    b->len = b->off = 0;
}

void buf_free(struct buf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

void io_close(struct mst_server *srv)
{
    if (srv->fd >= 0) {
        close(srv->fd);
    }
    srv->fd = -1;
    srv->connecting = false;
    srv->meta = META_UNKNOWN;
    srv->probing = false;
    srv->owed = 0;
    srv->maybe_stray = false;
    srv->blocking = false;
    srv->rcvtimeo_ms = 0;
    srv->last_ok_ms = 0;
    buf_reset(&srv->wbuf);
    buf_reset(&srv->rbuf);
    /* Large buffers are not kept across a failure. */
    if (srv->rbuf.cap > 1024 * 1024) {
        buf_free(&srv->rbuf);
    }
}

/* Ends srv's part in the current call with a failure. */
static void io_fail(struct mst *m, struct mst_server *srv, int status, bool before_send,
                    const char *what)
{
    int err = errno;
    io_close(srv);
    srv->status = status;
    srv->conn_error = before_send;
    srv->active = false;
    srv->pending = 0;
    health_failure(m, srv, status);
    if (what) {
        mst_fail(m, status, "%s: %s%s%s", srv->name, what, err ? ": " : "",
                 err ? strerror(err) : "");
    }
}

static int set_socket_options(int fd, bool tcp)
{
    if (tcp) {
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    return 0;
}

/* Starts a connect to srv's current address. 0: connected or in progress; -1: failed. */
static int start_connect(struct mst *m, struct mst_server *srv)
{
    if (srv->spec.is_unix) {
        struct sockaddr_un sun;
        memset(&sun, 0, sizeof(sun));
        sun.sun_family = AF_UNIX;
        size_t n = strlen(srv->spec.host);
        if (n >= sizeof(sun.sun_path)) {
            errno = ENAMETOOLONG;
            return -1;
        }
        memcpy(sun.sun_path, srv->spec.host, n);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            return -1;
        }
        if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0 && errno != EINPROGRESS) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        srv->fd = fd;
        srv->connecting = false; /* unix connects complete at once or fail */
        return 0;
    }
    while (srv->ai_cur) {
        struct addrinfo *ai = srv->ai_cur;
        int fd =
            socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd >= 0) {
            set_socket_options(fd, true);
            if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
                srv->fd = fd;
                srv->connecting = false;
                return 0;
            }
            if (errno == EINPROGRESS) {
                srv->fd = fd;
                srv->connecting = true;
                srv->connect_until = mst_now_ms() + m->connect_timeout_ms;
                return 0;
            }
            int e = errno;
            close(fd);
            errno = e;
        }
        srv->ai_cur = ai->ai_next;
    }
    return -1;
}

/*
 * An idle connection may have been closed by the server (restart, idle
 * timeout) or hold stray bytes (an error a server sent for a noreply
 * command). Either would break the next call, so look before using it:
 * stray bytes are dropped, a closed connection is reopened.
 */
static bool conn_still_good(struct mst_server *srv)
{
    char scratch[4096];
    if (srv->owed > 0 || srv->rbuf.off < srv->rbuf.len) {
        /* Replies to earlier quiet requests are on their way: they are read
         * (and skipped) in order, so only look for a closed connection. */
        for (;;) {
            ssize_t n = recv(srv->fd, scratch, 1, MSG_DONTWAIT | MSG_PEEK);
            if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))) {
                return true;
            }
            if (n < 0 && errno == EINTR) {
                continue;
            }
            return false;
        }
    }
    buf_reset(&srv->rbuf);
    for (;;) {
        ssize_t n = recv(srv->fd, scratch, sizeof(scratch), MSG_DONTWAIT);
        if (n > 0) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return true;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        return false;
    }
}

int io_begin(struct mst *m, struct mst_server *srv)
{
    srv->status = MST_OK;
    srv->conn_error = false;
    srv->pending = 0;
    srv->active = true;
    if (srv->fd >= 0 && !srv->connecting && !srv->maybe_stray && srv->owed == 0 &&
        srv->rbuf.off >= srv->rbuf.len && srv->last_ok_ms != 0 &&
        mst_now_ms() - srv->last_ok_ms < PROBE_IDLE_MS) {
        buf_reset(&srv->rbuf);
        return MST_OK;
    }
    if (srv->fd >= 0 && !srv->connecting && conn_still_good(srv)) {
        srv->maybe_stray = false;
        return MST_OK;
    }
    io_close(srv);
    buf_reset(&srv->wbuf);
    buf_reset(&srv->rbuf);
    if (!srv->spec.is_unix && !srv->ai) {
        struct addrinfo hints;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_NUMERICSERV;
        char port[8];
        snprintf(port, sizeof(port), "%u", (unsigned)srv->spec.port);
        int rc = getaddrinfo(srv->spec.host, port, &hints, &srv->ai);
        if (rc != 0) {
            srv->ai = NULL;
            errno = 0;
            io_fail(m, srv, MST_ERESOLVE, true, NULL);
            return mst_fail(m, MST_ERESOLVE, "%s: %s", srv->name, gai_strerror(rc));
        }
    }
    srv->ai_cur = srv->ai;
    if (start_connect(m, srv) != 0) {
        io_fail(m, srv, MST_ECONNECT, true, "connect");
        return MST_ECONNECT;
    }
    return MST_OK;
}

int io_begin_probe(struct mst *m, struct mst_server *srv)
{
    int rc = io_begin(m, srv);
    if (rc != MST_OK) {
        return rc;
    }
    if (m->protocol == MST_PROTO_META && srv->meta == META_UNKNOWN && !srv->probing) {
        if (buf_append(&srv->wbuf, "mn\r\n", 4) != MST_OK) {
            io_close(srv);
            srv->active = false;
            srv->status = MST_ENOMEM;
            return mst_fail(m, MST_ENOMEM, "out of memory");
        }
        srv->probing = true;
    }
    return MST_OK;
}

static int h_none(struct io_call *call, struct mst_server *srv, size_t idx, const struct reply *r)
{
    (void)call;
    (void)srv;
    (void)idx;
    (void)r;
    return MST_EPROTO;
}

int io_need_meta(struct mst *m, struct mst_server *srv)
{
    if (m->protocol != MST_PROTO_META) {
        return mst_fail(m, MST_ENOTSUP, "%s: this call needs the meta protocol", srv->name);
    }
    int rc = io_begin_probe(m, srv);
    if (rc != MST_OK) {
        return rc;
    }
    if (srv->probing) {
        struct io_call call = {m, h_none, NULL, false};
        io_run(&call);
        if (srv->status != MST_OK) {
            return srv->status;
        }
        rc = io_begin(m, srv);
        if (rc != MST_OK) {
            return rc;
        }
    }
    if (srv->meta != META_YES) {
        return mst_fail(m, MST_ENOTSUP, "%s does not speak the meta protocol", srv->name);
    }
    return MST_OK;
}

/* A pending connect finished (POLLOUT): check how. */
static void finish_connect(struct mst *m, struct mst_server *srv)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(srv->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        err = errno;
    }
    if (err == 0) {
        srv->connecting = false;
        return;
    }
    close(srv->fd);
    srv->fd = -1;
    srv->connecting = false;
    if (srv->ai_cur) {
        srv->ai_cur = srv->ai_cur->ai_next;
    }
    if (srv->ai_cur && start_connect(m, srv) == 0) {
        return;
    }
    errno = err;
    io_fail(m, srv, MST_ECONNECT, true, "connect");
}

static void do_write(struct mst *m, struct mst_server *srv)
{
    while (srv->wbuf.off < srv->wbuf.len) {
        ssize_t n = send(srv->fd, srv->wbuf.p + srv->wbuf.off, srv->wbuf.len - srv->wbuf.off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            srv->wbuf.off += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        io_fail(m, srv, MST_EIO, false, "write");
        return;
    }
    buf_reset(&srv->wbuf);
}

/* Frames one element of srv's reply stream. */
static enum reply_status frame_one(const struct io_call *call, const struct mst_server *srv,
                                   const char *p, size_t n, struct reply *r, size_t *used)
{
    if (call->m->protocol == MST_PROTO_BINARY) {
        struct bin_response br;
        enum bin_result st = bin_parse_response(p, n, &br, used);
        if (st == BIN_NEED_MORE) {
            return REPLY_NEED_MORE;
        }
        if (st != BIN_OK) {
            return REPLY_BAD;
        }
        reply_from_bin(&br, r);
        return REPLY_DONE;
    }
    if (call->lines && !srv->probing && srv->owed == 0) {
        return reply_parse_line(p, n, r, used);
    }
    return reply_parse(p, n, r, used);
}

static void parse_replies(struct io_call *call, struct mst_server *srv, size_t idx)
{
    struct mst *m = call->m;
    while ((srv->pending > 0 || srv->probing || srv->owed > 0) && srv->rbuf.off < srv->rbuf.len) {
        struct reply r;
        size_t used;
        enum reply_status st = frame_one(call, srv, srv->rbuf.p + srv->rbuf.off,
                                         srv->rbuf.len - srv->rbuf.off, &r, &used);
        if (st == REPLY_NEED_MORE) {
            return;
        }
        if (st == REPLY_BAD) {
            errno = 0;
            io_fail(m, srv, MST_EPROTO, false, "unparsable reply");
            return;
        }
        srv->rbuf.off += used;
        if (srv->owed > 0) {
            /* A reply to an earlier quiet request, or the end of its batch. */
            if (r.kind == REPLY_MN) {
                srv->owed--;
            }
            continue;
        }
        if (srv->probing) {
            srv->probing = false;
            if (r.kind == REPLY_MN) {
                srv->meta = META_YES;
            } else if (r.kind == REPLY_ERROR) {
                srv->meta = META_NO;
            } else {
                errno = 0;
                io_fail(m, srv, MST_EPROTO, false, "unexpected reply to mn");
                return;
            }
            continue;
        }
        int h = call->handler(call, srv, idx, &r);
        if (h < 0) {
            errno = 0;
            io_fail(m, srv, h, false, "unexpected reply");
            return;
        }
        if (h == 1) {
            srv->pending--;
        }
    }
    if (srv->pending == 0 && !srv->probing && srv->owed == 0 && srv->rbuf.off < srv->rbuf.len) {
        /* Bytes nobody asked for: the stream cannot be trusted any more. */
        errno = 0;
        io_fail(m, srv, MST_EPROTO, false, "unexpected data after the reply");
    }
}

/* One recv() (flags: MSG_DONTWAIT, or 0 on a blocking socket) into srv's
 * read buffer, whose replies are then parsed. Returns the bytes read, 0 when
 * nothing came (would block, or SO_RCVTIMEO ran out), or -1 after io_fail(). */
static ssize_t read_some(struct io_call *call, struct mst_server *srv, size_t idx, int flags)
{
    struct mst *m = call->m;
    if (buf_reserve(&srv->rbuf, READ_CHUNK) != MST_OK) {
        errno = ENOMEM;
        io_fail(m, srv, MST_ENOMEM, false, "read buffer");
        return -1;
    }
    for (;;) {
        ssize_t n =
            recv(srv->fd, srv->rbuf.p + srv->rbuf.len, srv->rbuf.cap - srv->rbuf.len, flags);
        if (n > 0) {
            srv->rbuf.len += (size_t)n;
            parse_replies(call, srv, idx);
            return n;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return 0;
        }
        if (n == 0) {
            errno = 0;
            io_fail(m, srv, MST_EIO, false, "connection closed by the server");
        } else {
            io_fail(m, srv, MST_EIO, false, "read");
        }
        return -1;
    }
}

static void do_read(struct io_call *call, struct mst_server *srv, size_t idx)
{
    for (;;) {
        ssize_t n = read_some(call, srv, idx, MSG_DONTWAIT);
        if (n <= 0 || !srv->active || (srv->pending == 0 && !srv->probing) ||
            (size_t)n < READ_CHUNK) {
            return;
        }
    }
}

/* fast_read's adaptive wait: one call in this many waits the other way (eight
 * times fewer when that way was twice as slow), and a sample above the cap (a
 * slow reply, a timeout) counts as the cap. */
#define WAIT_EXPLORE_EVERY 32
#define WAIT_SAMPLE_MAX_NS 10000000u

/*
 * The common case of one server with its request written: wait for the
 * reply in recv() itself (SO_RCVTIMEO bounds it by the I/O timeout) rather
 * than in poll() and then recv(). The socket is switched to blocking mode
 * once per connection; every other send and recv passes MSG_DONTWAIT.
 * Before sleeping in recv() the call may spin on non-blocking recv() for up
 * to spin_us (mst_set_spin): each connection keeps the mean wait of both ways
 * and uses the faster, trying the other every WAIT_EXPLORE_EVERY calls, so
 * spinning happens only where it has paid (a reply that comes back sooner
 * than the cost of waking a sleeping thread).
 * Whatever is left (a partial reply, a timeout) goes on in io_run's poll loop.
 */
static void fast_read(struct io_call *call, struct mst_server *srv, size_t idx)
{
    struct mst *m = call->m;
    if (!srv->blocking) {
        int fl = fcntl(srv->fd, F_GETFL);
        if (fl < 0 || fcntl(srv->fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
            return;
        }
        srv->blocking = true;
    }
    if (srv->rcvtimeo_ms != m->io_timeout_ms) {
        struct timeval tv = {.tv_sec = (time_t)(m->io_timeout_ms / 1000),
                             .tv_usec = (suseconds_t)(m->io_timeout_ms % 1000) * 1000};
        if (setsockopt(srv->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0) {
            return;
        }
        srv->rcvtimeo_ms = m->io_timeout_ms;
    }
    /* A timeout (0) goes on in io_run's poll loop, which reports it. */
    if (m->spin_us == 0) {
        read_some(call, srv, idx, 0);
        return;
    }
    /* The adaptive wait: spin or block, whichever has been faster here. */
    enum { WAIT_SPIN = 0, WAIT_BLOCK = 1 };
    int mode;
    if (srv->wait_ns[WAIT_SPIN] == 0) {
        mode = WAIT_SPIN;
    } else if (srv->wait_ns[WAIT_BLOCK] == 0) {
        mode = WAIT_BLOCK;
    } else {
        mode = srv->wait_ns[WAIT_SPIN] <= srv->wait_ns[WAIT_BLOCK] ? WAIT_SPIN : WAIT_BLOCK;
        /* A way twice as slow is tried less often: trying it costs. */
        bool far = srv->wait_ns[!mode] / 2 > srv->wait_ns[mode];
        unsigned every = far ? WAIT_EXPLORE_EVERY * 8 : WAIT_EXPLORE_EVERY;
        if (++srv->wait_calls >= every) {
            srv->wait_calls = 0;
            mode = !mode;
        }
    }
    uint64_t t0 = mst_now_ns();
    ssize_t n = 0;
    if (mode == WAIT_SPIN) {
        uint64_t until = t0 + (uint64_t)m->spin_us * 1000;
        do {
            n = read_some(call, srv, idx, MSG_DONTWAIT);
        } while (n == 0 && mst_now_ns() < until);
    }
    if (n == 0) {
        n = read_some(call, srv, idx, 0);
    }
    if (n > 0) {
        uint64_t took = mst_now_ns() - t0;
        if (took > WAIT_SAMPLE_MAX_NS) {
            took = WAIT_SAMPLE_MAX_NS;
        }
        uint32_t *avg = &srv->wait_ns[mode];
        *avg = *avg == 0 ? (uint32_t)took + 1 : (uint32_t)((*avg * 7 + took) / 8) + 1;
    }
}

void io_run(struct io_call *call)
{
    struct mst *m = call->m;
    size_t ns = m->nservers;
    struct pollfd small_pfds[16];
    size_t small_idx[16];
    struct pollfd *pfds = small_pfds;
    size_t *pidx = small_idx;
    if (ns > 16) {
        pfds = malloc(ns * sizeof(*pfds));
        pidx = malloc(ns * sizeof(*pidx));
        if (!pfds || !pidx) {
            free(pfds == small_pfds ? NULL : pfds);
            free(pidx == small_idx ? NULL : pidx);
            for (size_t i = 0; i < ns; i++) {
                if (m->servers[i]->active) {
                    errno = ENOMEM;
                    io_fail(m, m->servers[i], MST_ENOMEM, false, "poll set");
                }
            }
            return;
        }
    }
    /* Sockets are nearly always writable: write first, poll after. */
    for (size_t i = 0; i < ns; i++) {
        struct mst_server *srv = m->servers[i];
        if (srv->active && !srv->connecting && srv->wbuf.off < srv->wbuf.len) {
            do_write(m, srv);
        }
    }
    uint64_t deadline = mst_now_ms() + m->io_timeout_ms;
    size_t nactive = 0, last = 0;
    for (size_t i = 0; i < ns; i++) {
        if (m->servers[i]->active) {
            nactive++;
            last = i;
        }
    }
    if (nactive == 1) {
        struct mst_server *srv = m->servers[last];
        if (m->noreply) {
            srv->maybe_stray = true; /* text noreply errors come unasked */
        }
        /* (Replies owed to earlier quiet requests alone are not waited for.) */
        if (!srv->connecting && srv->wbuf.off == srv->wbuf.len &&
            (srv->pending > 0 || srv->probing)) {
            fast_read(call, srv, last);
        }
    } else if (m->noreply) {
        for (size_t i = 0; i < ns; i++) {
            if (m->servers[i]->active) {
                m->servers[i]->maybe_stray = true;
            }
        }
    }
    for (;;) {
        size_t n = 0;
        uint64_t now = mst_now_ms();
        uint64_t wake = deadline;
        for (size_t i = 0; i < ns; i++) {
            struct mst_server *srv = m->servers[i];
            if (!srv->active) {
                continue;
            }
            if (!srv->connecting && srv->wbuf.off == srv->wbuf.len && srv->pending == 0 &&
                !srv->probing) {
                srv->active = false;
                /* After an error reply the server may hang up: probe next time. */
                srv->last_ok_ms = srv->status == MST_OK ? now : 0;
                health_success(m, srv);
                continue;
            }
            if (srv->connecting && now >= srv->connect_until) {
                errno = ETIMEDOUT;
                io_fail(m, srv, MST_ETIMEOUT, true, "connect");
                continue;
            }
            if (now >= deadline) {
                errno = ETIMEDOUT;
                io_fail(m, srv, MST_ETIMEOUT, srv->connecting, "I/O");
                continue;
            }
            short ev = 0;
            if (srv->connecting) {
                ev = POLLOUT;
                if (srv->connect_until < wake) {
                    wake = srv->connect_until;
                }
            } else {
                if (srv->wbuf.off < srv->wbuf.len) {
                    ev |= POLLOUT;
                }
                /* Replies owed to quiet requests are read (and skipped) as they
                 * come, so that a long quiet stream cannot fill both ways. */
                if (srv->pending > 0 || srv->probing || srv->owed > 0) {
                    ev |= POLLIN;
                }
            }
            pfds[n].fd = srv->fd;
            pfds[n].events = ev;
            pfds[n].revents = 0;
            pidx[n] = i;
            n++;
        }
        if (n == 0) {
            break;
        }
        int wait_ms = wake > now ? (int)(wake - now) : 0;
        int rc = poll(pfds, (nfds_t)n, wait_ms);
        if (rc < 0) {
            if (errno == EINTR) {
                continue;
            }
            for (size_t k = 0; k < n; k++) {
                io_fail(m, m->servers[pidx[k]], MST_EIO, false, "poll");
            }
            break;
        }
        for (size_t k = 0; k < n && rc > 0; k++) {
            short re = pfds[k].revents;
            if (!re) {
                continue;
            }
            struct mst_server *srv = m->servers[pidx[k]];
            if (srv->connecting) {
                finish_connect(m, srv);
                if (!srv->active || srv->connecting) {
                    continue;
                }
            }
            if (srv->active && srv->wbuf.off < srv->wbuf.len &&
                (re & (POLLOUT | POLLERR | POLLHUP))) {
                do_write(m, srv);
            }
            if (srv->active && (srv->pending > 0 || srv->probing || srv->owed > 0) &&
                (re & (POLLIN | POLLERR | POLLHUP))) {
                do_read(call, srv, pidx[k]);
            }
        }
    }
    if (pfds != small_pfds) {
        free(pfds);
        free(pidx);
    }
}

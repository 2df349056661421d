/*
 * listener.c - listening sockets and the accept loop.
 *
 * -l takes a comma list of addresses, each optionally with ":port"
 * ("127.0.0.1", "127.0.0.1:11311", "[::1]:11211", "localhost"); -s a unix
 * socket path, which turns network listeners off. Binding happens before
 * privileges are dropped and before daemonizing, so a bind failure is
 * reported by the command that started the server.
 *
 * -c is counted as memcached counts it: file descriptors. A connection is
 * refused when listeners + clients + the descriptors reserved for workers
 * reach -c - 1; with maxconns_fast (the default) the refused client is told
 * "ERROR Too many open connections" first.
 */
#include "listener.h"

#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sysexits.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "server.h"

#define MAX_LISTENERS 64

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static struct listener *add_listener(struct server *srv)
{
    if (srv->listeners == NULL) {
        srv->listeners = calloc(MAX_LISTENERS, sizeof(struct listener));
    }
    if (srv->listeners == NULL || srv->nlisteners >= MAX_LISTENERS) {
        return NULL;
    }
    return &srv->listeners[srv->nlisteners++];
}

static int open_unix(struct server *srv)
{
    const char *path = srv->settings->socketpath;
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sun.sun_path)) {
        fprintf(stderr, "Unix socket path too long: %s\n", path);
        return EX_USAGE;
    }
    strcpy(sun.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        perror("socket()");
        return EX_OSERR;
    }
    /* Remove a stale socket file, but never a live one or another file. */
    struct stat sb;
    if (lstat(path, &sb) == 0 && S_ISSOCK(sb.st_mode)) {
        unlink(path);
    }
    mode_t old = umask((mode_t)(~srv->settings->access & 0777));
    int rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
    umask(old);
    if (rc != 0) {
        /* memcached's two lines: the bind error, then the path (its second
         * errno is always EINVAL by then). */
        fprintf(stderr, "bind(): %s\n", strerror(errno));
        fprintf(stderr, "failed to listen on UNIX socket: %s: %s\n", path, strerror(EINVAL));
        close(fd);
        return EX_OSERR;
    }
    if (listen(fd, srv->settings->backlog) != 0 || set_nonblock(fd) != 0) {
        fprintf(stderr, "failed to listen on UNIX socket: %s: %s\n", path, strerror(errno));
        close(fd);
        return EX_OSERR;
    }
    struct listener *l = add_listener(srv);
    if (l == NULL) {
        close(fd);
        return EX_OSERR;
    }
    l->fd = fd;
    l->is_unix = true;
    snprintf(l->name, sizeof(l->name), "unix:%s", path);
    return 0;
}

/* Splits "host", "host:port", "[v6]:port" or "[v6]" (see listener.h). */
int listener_split_hostport(char *spec, int defport, char **host, int *port)
{
    *port = defport;
    if (spec[0] == '[') {
        char *close = strchr(spec, ']');
        if (close == NULL) {
            return -1;
        }
        *close = '\0';
        *host = spec + 1;
        if (close[1] == ':') {
            *port = atoi(close + 2);
        } else if (close[1] != '\0') {
            return -1;
        }
        return 0;
    }
    char *colon = strchr(spec, ':');
    if (colon != NULL && strchr(colon + 1, ':') == NULL) {
        *colon = '\0';
        *port = atoi(colon + 1);
    }
    *host = spec;
    return 0;
}

int listener_bind_all(const char *host, int port, int backlog, listener_bound_fn fn, void *ctx)
{
    struct addrinfo hints = {
        .ai_flags = AI_PASSIVE, .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    char portbuf[16];
    snprintf(portbuf, sizeof(portbuf), "%d", port);
    int err = getaddrinfo(host, portbuf, &hints, &ai);
    if (err != 0) {
        fprintf(stderr, "getaddrinfo(%s): %s\n", host ? host : "*", gai_strerror(err));
        return -1;
    }
    int bound = 0;
    int last_errno = 0;
    for (struct addrinfo *p = ai; p != NULL; p = p->ai_next) {
        int fd =
            socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, p->ai_protocol);
        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (p->ai_family == AF_INET6) {
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        }
        if (bind(fd, p->ai_addr, p->ai_addrlen) != 0 || listen(fd, backlog) != 0) {
            last_errno = errno;
            close(fd);
            continue;
        }
        if (fn(ctx, fd, p->ai_addr, p->ai_addrlen) != 0) {
            close(fd);
            break;
        }
        bound++;
    }
    freeaddrinfo(ai);
    if (bound == 0) {
        errno = last_errno;
        return -1;
    }
    return bound;
}

struct tcp_open {
    struct server *srv;
    int port;
    bool tls;
};

/* Takes one bound TCP socket as a listener named like memcached's. */
static int keep_tcp(void *ctx, int fd, const struct sockaddr *sa, socklen_t len)
{
    struct tcp_open *t = ctx;
    struct listener *l = add_listener(t->srv);
    if (l == NULL) {
        return -1;
    }
    l->fd = fd;
    l->tls = t->tls;
    char hbuf[INET6_ADDRSTRLEN + 8] = "";
    getnameinfo(sa, len, hbuf, sizeof(hbuf), NULL, 0, NI_NUMERICHOST);
    if (sa->sa_family == AF_INET6) {
        snprintf(l->name, sizeof(l->name), "tcp6:[%s]:%d", hbuf, t->port);
    } else {
        snprintf(l->name, sizeof(l->name), "tcp:%s:%d", hbuf, t->port);
    }
    return 0;
}

static int open_tcp(struct server *srv, const char *host, int port, bool tls)
{
    struct tcp_open t = {srv, port, tls};
    return listener_bind_all(host, port, srv->settings->backlog, keep_tcp, &t) < 0 ? -1 : 0;
}

int listeners_open(struct server *srv)
{
    const struct settings *s = srv->settings;
    if (s->socketpath != NULL) {
        return open_unix(srv);
    }
    if (s->port == 0) {
        return 0;
    }
    const char *inter = s->inter != NULL ? s->inter : "127.0.0.1";
    char *list = strdup(inter);
    char *save = NULL;
    int rc = 0;
    for (char *tok = strtok_r(list, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        char *host;
        int port;
        /* memcached 1.6.18: with -Z every TCP listener speaks TLS except the
         * ones given as "notls:ADDR[:PORT]". */
        bool tls = s->ssl_enabled;
        if (strncmp(tok, "notls:", 6) == 0) {
            tok += 6;
            tls = false;
        }
        if (listener_split_hostport(tok, s->port, &host, &port) != 0 || port <= 0 || port > 65535) {
            fprintf(stderr, "Invalid listen address: %s\n", tok);
            rc = EX_USAGE;
            break;
        }
        if (open_tcp(srv, strcmp(host, "*") == 0 || host[0] == '\0' ? NULL : host, port, tls) !=
            0) {
            if (s->inter != NULL) {
                fprintf(stderr, "failed to listen on one of interface(s) %s: %s\n", inter,
                        strerror(errno));
            } else {
                fprintf(stderr, "failed to listen on TCP port %d: %s\n", s->port, strerror(errno));
            }
            rc = EX_OSERR;
            break;
        }
    }
    free(list);
    return rc;
}

/* The accept callback needs both the listener and the server. */
struct accept_ctx {
    struct server *srv;
    struct listener *l;
};

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    (void)fd;
    (void)what;
    for (int i = 0; i < srv->nlisteners; i++) {
        event_add(srv->listeners[i].ev, NULL);
    }
    __atomic_store_n(&srv->counters.accepting_conns, 1, __ATOMIC_RELAXED);
    log_msg(LOG_TRACE, "accepting connections again");
}

/* Stops accepting for 10 ms: on EMFILE, or at -c without maxconns_fast,
 * when clients should wait in the kernel's backlog. */
static void pause_accepting(struct server *srv)
{
    static const struct timeval ten_ms = {0, 10000};
    for (int i = 0; i < srv->nlisteners; i++) {
        event_del(srv->listeners[i].ev);
    }
    __atomic_store_n(&srv->counters.accepting_conns, 0, __ATOMIC_RELAXED);
    __atomic_add_fetch(&srv->counters.listen_disabled_num, 1, __ATOMIC_RELAXED);
    event_base_once(srv->main_base, -1, EV_TIMEOUT, resume_cb, srv, &ten_ms);
    log_msg(LOG_TRACE, "accepting paused for 10 ms at the connection limit");
}

static void do_accept(evutil_socket_t lfd, short what, void *arg)
{
    struct accept_ctx *ctx = arg;
    struct server *srv = ctx->srv;
    (void)what;
    for (int i = 0; i < 64; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                if (server_verbose(srv) > 0) {
                    log_msg(LOG_ERROR, "Too many open connections");
                }
                pause_accepting(srv);
            } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                       errno != ECONNABORTED) {
                log_msg(LOG_ERROR, "accept(): %s", strerror(errno));
            }
            return;
        }
        uint64_t curr = __atomic_load_n(&srv->counters.curr_conns, __ATOMIC_RELAXED);
        uint64_t reserved = __atomic_load_n(&srv->counters.reserved_fds, __ATOMIC_RELAXED);
        if (curr + reserved >= (uint64_t)srv->settings->maxconns - 1) {
            if (!srv->settings->maxconns_fast) {
                close(fd);
                pause_accepting(srv);
                return;
            }
            /* Counted before the client can see the refusal, so a stats
             * request it sends next already includes it. */
            __atomic_add_fetch(&srv->counters.rejected_conns, 1, __ATOMIC_RELAXED);
            static const char msg[] = "ERROR Too many open connections\r\n";
            ssize_t w = write(fd, msg, sizeof(msg) - 1);
            (void)w;
            close(fd);
            continue;
        }
        if (!ctx->l->is_unix) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
        __atomic_add_fetch(&srv->counters.curr_conns, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&srv->counters.total_conns, 1, __ATOMIC_RELAXED);
        workers_dispatch(srv, fd, ctx->l->name, ctx->l->tls);
    }
}

int listeners_start(struct server *srv)
{
    for (int i = 0; i < srv->nlisteners; i++) {
        struct listener *l = &srv->listeners[i];
        struct accept_ctx *ctx = malloc(sizeof(*ctx));
        if (ctx == NULL) {
            return -1;
        }
        ctx->srv = srv;
        ctx->l = l;
        l->ev = event_new(srv->main_base, l->fd, EV_READ | EV_PERSIST, do_accept, ctx);
        if (l->ev == NULL || event_add(l->ev, NULL) != 0) {
            free(ctx);
            return -1;
        }
        l->created = clock_now(&srv->clock);
        __atomic_add_fetch(&srv->counters.curr_conns, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&srv->counters.total_conns, 1, __ATOMIC_RELAXED);
    }
    __atomic_store_n(&srv->counters.accepting_conns, 1, __ATOMIC_RELAXED);
    return 0;
}

void listeners_close(struct server *srv)
{
    for (int i = 0; i < srv->nlisteners; i++) {
        struct listener *l = &srv->listeners[i];
        if (l->ev != NULL) {
            free(event_get_callback_arg(l->ev));
            event_free(l->ev);
            l->ev = NULL;
        }
        if (l->fd >= 0) {
            close(l->fd);
            l->fd = -1;
        }
        if (l->is_unix && srv->settings->socketpath != NULL) {
            unlink(srv->settings->socketpath);
        }
    }
    free(srv->listeners);
    srv->listeners = NULL;
    srv->nlisteners = 0;
}

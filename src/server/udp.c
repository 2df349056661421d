/*
 * udp.c - memcached's UDP transport (-U, off by default).
 *
 * Every request is one datagram that starts with an 8-byte frame header:
 * request id, sequence number, datagram count, reserved (all 16-bit, network
 * order). Only single-datagram requests are served. The reply is split into
 * datagrams of at most 1400 bytes, each with the request id, its sequence
 * number and the total count.
 *
 * Each worker has its own socket on the UDP port (SO_REUSEPORT), wrapped in
 * a connection whose read buffer holds one datagram; the text and binary
 * codecs run on it as on a stream, and the queued output is cut into
 * datagrams when the request is done.
 */
#include "udp.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sysexits.h>
#include <unistd.h>

#include <event2/event.h>

#include "conn.h"
#include "log.h"
#include "server.h"

#define UDP_HEADER_LEN  8
#define UDP_MAX_PAYLOAD 1400 /* whole datagram, header included */
#define UDP_READ_SIZE   65536
#define UDP_BATCH       64 /* datagrams per readable event */
/* Largest reply to one request datagram; a larger one (say, one datagram
 * asking for the same big item thousands of times) is dropped rather than
 * copied and sent: UDP replies must not amplify. */
#define UDP_REPLY_MAX (2 * 1024 * 1024)

struct udp_state {
    struct sockaddr_storage peer;
    socklen_t peerlen;
    unsigned char reqid[2];
};

/* Opens one socket per worker on every -l address at the -U port. */
int udp_open(struct server *srv)
{
    const struct settings *s = srv->settings;
    if (s->udpport == 0 || s->socketpath != NULL) {
        return 0;
    }
    const char *inter = s->inter != NULL ? s->inter : "127.0.0.1";
    char *list = strdup(inter);
    char *save = NULL;
    int rc = 0;
    srv->udp_fds = calloc((size_t)s->num_threads * 16, sizeof(int));
    if (list == NULL || srv->udp_fds == NULL) {
        free(list);
        return EX_OSERR;
    }
    for (char *tok = strtok_r(list, ",", &save); tok != NULL && rc == 0;
         tok = strtok_r(NULL, ",", &save)) {
        /* Strip a ":port" (the TCP port) and IPv6 brackets. */
        char host[256];
        snprintf(host, sizeof(host), "%s", tok);
        if (host[0] == '[') {
            char *close = strchr(host, ']');
            if (close != NULL) {
                *close = '\0';
            }
            memmove(host, host + 1, strlen(host));
        } else {
            char *colon = strchr(host, ':');
            if (colon != NULL && strchr(colon + 1, ':') == NULL) {
                *colon = '\0';
            }
        }
        struct addrinfo hints = {
            .ai_flags = AI_PASSIVE, .ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM};
        struct addrinfo *ai = NULL;
        char port[16];
        snprintf(port, sizeof(port), "%d", s->udpport);
        if (getaddrinfo(strcmp(host, "*") == 0 ? NULL : host, port, &hints, &ai) != 0) {
            fprintf(stderr, "failed to resolve UDP address %s\n", host);
            rc = EX_OSERR;
            break;
        }
        for (int t = 0; t < s->num_threads && rc == 0 && srv->nudp < s->num_threads * 16; t++) {
            int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            int one = 1;
            if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
                (ai->ai_family == AF_INET6 &&
                 setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) ||
                bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
                fprintf(stderr, "failed to listen on UDP port %d: %s\n", s->udpport,
                        strerror(errno));
                if (fd >= 0) {
                    close(fd);
                }
                rc = EX_OSERR;
                break;
            }
            srv->udp_fds[srv->nudp++] = fd;
        }
        freeaddrinfo(ai);
    }
    free(list);
    return rc;
}

void udp_close(struct server *srv)
{
    /* The sockets belong to connections once attached; close the rest. */
    for (int i = 0; i < srv->nudp; i++) {
        if (srv->udp_fds[i] >= 0) {
            close(srv->udp_fds[i]);
        }
    }
    free(srv->udp_fds);
    srv->udp_fds = NULL;
    srv->nudp = 0;
}

/* Sends bytes [off, off + len) of flat as one message: numbered datagrams of
 * at most UDP_MAX_PAYLOAD bytes, or a bare header when len is 0. */
static void udp_send_message(struct conn *c, const struct udp_state *u, const char *flat,
                             size_t len)
{
    const size_t room = UDP_MAX_PAYLOAD - UDP_HEADER_LEN;
    size_t count = (len + room - 1) / room;
    if (count > 0xffff) {
        count = 0xffff; /* the frame cannot number more; the rest is dropped */
    }
    char dgram[UDP_MAX_PAYLOAD];
    size_t i = 0;
    do {
        size_t off = i * room;
        size_t n = len - off < room ? len - off : room;
        dgram[0] = (char)u->reqid[0];
        dgram[1] = (char)u->reqid[1];
        dgram[2] = (char)(i >> 8);
        dgram[3] = (char)(i & 0xff);
        dgram[4] = (char)(count >> 8);
        dgram[5] = (char)(count & 0xff);
        dgram[6] = 0;
        dgram[7] = 0;
        memcpy(dgram + UDP_HEADER_LEN, flat + off, n);
        ssize_t w = sendto(c->fd, dgram, UDP_HEADER_LEN + n, 0, (const struct sockaddr *)&u->peer,
                           u->peerlen);
        if (w > 0) {
            STAT_ADD(&c->w->stats, bytes_written, (uint64_t)w);
        }
        i++;
    } while (i < count);
}

/* Sends each response of the queued output as its own message, as memcached
 * does: a multi-key get gives one message per hit (END on the last one). */
static void udp_send_reply(struct conn *c, const struct udp_state *u)
{
    size_t total = conn_out_pending(c);
    uint32_t nmarks = c->ext != NULL ? c->ext->nmarks : 0;
    if ((total == 0 && nmarks == 0) || total > UDP_REPLY_MAX) {
        return;
    }
    char *flat = malloc(total > 0 ? total : 1);
    if (flat == NULL) {
        return;
    }
    conn_out_flatten(c, flat);
    size_t start = 0;
    for (uint32_t m = 0; m <= nmarks; m++) {
        size_t end = m < nmarks ? c->ext->marks[m] : total;
        if (end < start || end > total) {
            continue;
        }
        /* The part before the first mark is a message only if it has bytes;
         * later empty parts are empty responses (binary quiet replies). */
        if (end > start || (m > 0 && c->binary)) {
            udp_send_message(c, u, flat + start, end - start);
        }
        start = end;
    }
    free(flat);
}

static void udp_event_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    (void)what;
    if (c->rbuf == NULL) {
        c->rbuf = malloc(UDP_READ_SIZE);
        if (c->rbuf == NULL) {
            return;
        }
        c->rsize = UDP_READ_SIZE;
    }
    for (int i = 0; i < UDP_BATCH; i++) {
        struct udp_state u;
        u.peerlen = sizeof(u.peer);
        ssize_t n = recvfrom(fd, c->rbuf, c->rsize, 0, (struct sockaddr *)&u.peer, &u.peerlen);
        if (n < 0) {
            break; /* EAGAIN, or an error to retry on the next event */
        }
        STAT_ADD(&c->w->stats, bytes_read, (uint64_t)n);
        if (n < UDP_HEADER_LEN) {
            continue;
        }
        const unsigned char *h = (const unsigned char *)c->rbuf;
        u.reqid[0] = h[0];
        u.reqid[1] = h[1];
        c->rstart = UDP_HEADER_LEN;
        c->rlen = (uint32_t)n - UDP_HEADER_LEN;
        /* A datagram is a fresh request: its protocol is its first byte. */
        c->proto_known = false;
        if (h[4] != 0 || h[5] != 1) {
            /* Multi-datagram requests are dropped without a reply, as
             * memcached 1.6.18 does. */
            continue;
        }
        bool yielded = true;
        for (int rounds = 0; yielded && rounds < 1000; rounds++) {
            if (!conn_run(c, &yielded)) {
                break;
            }
        }
        udp_send_reply(c, &u);
        conn_reset(c);
    }
}

int udp_attach(struct worker *w, int fd)
{
    struct conn *c = conn_create(w, fd, true, NULL, &transport_plain, NULL, NULL);
    if (c == NULL) {
        return -1;
    }
    event_del(&c->ev);
    event_assign(&c->ev, w->base, fd, EV_READ | EV_PERSIST, udp_event_cb, c);
    event_add(&c->ev, NULL);
    __atomic_add_fetch(&w->srv->counters.curr_conns, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&w->srv->counters.total_conns, 1, __ATOMIC_RELAXED);
    return 0;
}

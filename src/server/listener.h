/*
 * listener.h - the sockets memstashd accepts on (-l/-p, -s) and the accept
 * loop that enforces -c and hands connections to workers.
 */
#ifndef MEMSTASH_LISTENER_H
#define MEMSTASH_LISTENER_H

#include <sys/socket.h>

#include <stdbool.h>

struct server;
struct event;

struct listener {
    int fd;
    char name[96]; /* "tcp:127.0.0.1:11211", "unix:/path" */
    bool is_unix;
    bool tls; /* -Z, unless given as notls:ADDR */
    struct event *ev;
    unsigned created; /* rel_time_t the listener started, for stats conns */
};

/* Binds and listens on every configured address. Prints memcached's
 * message and returns non-zero (an exit code) on failure. Runs before
 * privileges are dropped and before daemonizing. */
int listeners_open(struct server *srv);
/* Starts accepting on srv->main_base. */
int listeners_start(struct server *srv);
/* Splits one -l entry in place: "host", "host:port", "[v6]:port" or "[v6]".
 * *host points into spec; *port is defport when the entry names none.
 * Returns 0, or -1 for a malformed entry. */
int listener_split_hostport(char *spec, int defport, char **host, int *port);
/* Binds and listens (non-blocking, close-on-exec, IPv6 sockets v6-only) on
 * every address host:port resolves to (all interfaces for a NULL host), and
 * hands each socket to fn, which keeps it (0) or refuses it (non-zero: the
 * socket is closed and no more are opened). Returns how many were kept, or
 * -1 with errno from the last failure when none could be bound. */
typedef int (*listener_bound_fn)(void *ctx, int fd, const struct sockaddr *sa, socklen_t len);
int listener_bind_all(const char *host, int port, int backlog, listener_bound_fn fn, void *ctx);
/* Closes every listening socket (and unlinks the unix socket path). */
void listeners_close(struct server *srv);

#endif

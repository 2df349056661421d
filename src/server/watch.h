/*
 * watch.h - memcached's "watch" command: a client connection turned into a
 * stream of log lines in memcached's format, e.g.
 *
 *   ts=1795496609.512379 gid=8 type=item_get key=foo status=found clsid=1 cfd=25 size=3
 *
 * Workers produce lines (watch_emit*) only when some watcher asked for that
 * kind; the check is one relaxed load. Lines go into each watcher's pending
 * buffer under the hub's lock; the watcher sockets themselves are written by
 * the main thread's event base, so a slow watcher never blocks a worker. A
 * watcher whose buffer holds watcher_logbuf_size bytes misses lines, and is
 * told "skipped=N" before the next one it gets, as memcached does.
 *
 * Lock order: the hub lock may be held while calling event_add (libevent's
 * base lock); nothing takes the hub lock while holding a base lock.
 */
#ifndef MEMSTASH_WATCH_H
#define MEMSTASH_WATCH_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct text_token;

/* What a watcher asked for ("watch fetchers mutations ..."). */
#define WATCH_FETCHERS   (1u << 0) /* item_get: every retrieval */
#define WATCH_MUTATIONS  (1u << 1) /* item_store: every storage command */
#define WATCH_EVICTIONS  (1u << 2) /* accepted; storage reports no evictions yet */
#define WATCH_CONNEVENTS (1u << 3) /* conn_new, conn_close */
#define WATCH_OTHER      (1u << 4) /* rawcmds, sysevents, proxy*: accepted, nothing to report */

#define WATCH_MAX_WATCHERS 20 /* memcached's WATCHER_LIMIT */

struct watch;

/* The hub serves watchers on `base` (the main thread's). buf_limit bounds
 * each watcher's unsent bytes. curr_conns is decremented when a watcher's
 * connection closes (it stays counted while it watches, as in memcached).
 * Returns NULL when out of memory. */
struct watch *watch_create(struct event_base *base, size_t buf_limit, uint64_t *curr_conns);
/* Closes every watcher; call after the producers (workers) stopped and
 * before base is freed. Sets *w to NULL; safe with NULL. */
void watch_destroy(struct watch **w);

/* Parses the arguments after "watch" (args[0..n)). No argument means
 * fetchers. Returns 0, or -1 for an unknown argument (memcached: ERROR). */
int watch_parse_flags(const struct text_token *args, unsigned n, unsigned *flags);

struct watcher;

/* Registers a watcher of `flags` (from any thread). Lines are collected for
 * it from now on, so nothing that happens after its "OK" is missed; its
 * socket follows with watch_attach once the OK is written. Returns NULL when
 * WATCH_MAX_WATCHERS are registered (or memory runs out). */
struct watcher *watch_reserve(struct watch *w, unsigned flags);

/* Hands the watcher its connected socket (from any thread); the hub writes
 * to it from then on and closes it when the peer goes away. Returns 0, or -1
 * after unregistering the watcher (the caller still owns fd). */
int watch_attach(struct watch *w, struct watcher *wt, int fd);

/* Unregisters a reserved watcher that never got its socket. */
void watch_cancel(struct watch *w, struct watcher *wt);

/* True when some watcher wants lines of this kind (one relaxed load). w may
 * be NULL. */
int watch_wants(const struct watch *w, unsigned flag);

/* Producers. key is URI-encoded as memcached does. */
enum watch_get_status { WATCH_NOT_FOUND = 0, WATCH_FOUND, WATCH_FLUSHED, WATCH_EXPIRED };
void watch_emit_get(struct watch *w, const char *key, size_t nkey, enum watch_get_status status,
                    unsigned clsid, int cfd, size_t size);

/* status: 0 not_stored, 1 stored, 2 exists, 3 not_found, 4 too_large,
 * 5 no_memory. cmd: "set", "add", "replace", "append", "prepend", "cas". */
void watch_emit_store(struct watch *w, const char *key, size_t nkey, int status, const char *cmd,
                      unsigned ttl, unsigned clsid, int cfd, size_t size);

/* peer as conn.h keeps it ("tcp:1.2.3.4:5678", "tcp6:[::1]:5678", "?:<AF 0>"
 * for unix). reason (close only): error, normal, idle_timeout or shutdown. */
void watch_emit_conn(struct watch *w, const char *peer, int cfd, const char *reason);

#endif

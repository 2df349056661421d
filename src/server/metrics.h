/*
 * metrics.h - the Prometheus endpoint (-o metrics_port=N): GET /metrics in
 * the text exposition format, named as prometheus/memcached_exporter names
 * memcached's stats, so its dashboards and alerts keep working.
 *
 * It serves from its own thread and libevent base (evhttp), never from a
 * worker, and reads the same renderers "stats", "stats settings",
 * "stats items" and "stats slabs" use. Other paths get 404, other methods
 * 405. It binds metrics_port on the hosts of -l (default 127.0.0.1).
 *
 * Not a general HTTP server: no keep-alive tuning, no TLS, no auth.
 */
#ifndef MEMSTASH_METRICS_H
#define MEMSTASH_METRICS_H

struct server;
struct metrics;
struct evbuffer;

/* Binds and listens on metrics_port. Runs before privileges are dropped.
 * Leaves *out NULL (and returns 0) when metrics_port is 0; on failure prints
 * the reason and returns an exit code. The handle keeps a pointer to srv. */
int metrics_open(struct metrics **out, struct server *srv);

/* Starts the serving thread. Call after evthread_use_pthreads(). Returns 0,
 * or -1 when the thread or its event base cannot be set up. */
int metrics_start(struct metrics *m);

/* Stops the thread if it runs, closes the sockets and frees the handle;
 * sets *m to NULL. Safe with *m == NULL. */
void metrics_destroy(struct metrics **m);

/* Appends the whole exposition (every family with # HELP and # TYPE) to out.
 * Safe from any thread. */
void metrics_render(struct server *srv, struct evbuffer *out);

#endif

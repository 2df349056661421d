/*
 * restart.h - warm restart with -e FILE: the cache survives a graceful
 * restart or an upgrade.
 *
 * A graceful stop (SIGUSR1 or "shutdown graceful") writes every live item
 * (key, value, flags, absolute expiry, CAS) to FILE after the workers have
 * stopped; the next start with the same -e reads it back before the first
 * connection is accepted, then removes it, so that a later crash never
 * brings back a stale cache. A missing, truncated or corrupt file means a
 * cold start (with a message), never a half-loaded cache.
 */
#ifndef MEMSTASH_RESTART_H
#define MEMSTASH_RESTART_H

#include <stddef.h>

struct server;

struct restart_result {
    size_t restored; /* items linked again */
    size_t expired;  /* saved items whose time ran out meanwhile */
    size_t dropped;  /* items that no longer fit (smaller -m or -I) */
};

/* Loads path into srv->storage if it exists. Returns 0 (including for a
 * missing or unusable file, reported on stderr) or -1 when the file exists
 * but cannot be opened. */
int restart_load(struct server *srv, const char *path, struct restart_result *res);
/* Writes every live item to path (through a temporary file and a rename).
 * Returns 0 or -1 (reported on stderr). The workers must be stopped. */
int restart_save(struct server *srv, const char *path, size_t *saved);

#endif

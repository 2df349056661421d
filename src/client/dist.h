/*
 * dist.h - key placement: which server of a pool holds a key.
 *
 * Three families, each matching another client exactly so that a mixed
 * fleet agrees on where every key lives:
 *
 *   DIST_MODULA   libmemcached MODULA: hash(key) % number of servers.
 *   DIST_KETAMA   libmemcached's consistent hashing (1.1.4, hosts.cc):
 *                 - unweighted: 100 points per server, point i of a server is
 *                   hash("<host>-<i>") (or "<host>:<port>-<i>" when the port
 *                   is not 11211) with the key hash function;
 *                 - weighted (weighted flag, or any weight > 1): 4 points per
 *                   MD5 digest of the same names, floor(w/W * 40 * live) * 4
 *                   points per server computed in single precision;
 *                 - spy (spymemcached): names "/<host>:<port>-<i>".
 *                 Points sorted by (value, server); a key goes to the first
 *                 point >= hash(key), wrapping to the first point.
 *   DIST_PYTHON   python-memcached's Client: buckets = each server repeated
 *                 weight times, bucket = cmemcache_hash(key) % nbuckets; a
 *                 dead server's keys rehash with cmemcache_hash(str(h) + str(i))
 *                 for i = 0..9 (1.59 maps hash 0 to 1, 1.60+ does not).
 *
 * With exactly one server every mode answers 0 without hashing (libmemcached
 * does the same).
 *
 * Liveness is an input: dist_build() takes a live flag per server. Ketama
 * leaves dead servers out of the continuum and out of the weight sums, as
 * libmemcached does with auto-eject; python keeps them in the buckets and
 * rehashes past them at lookup; modula ignores liveness. A caller that wants
 * "fail fast" instead of failover simply passes every server as live.
 *
 * What this module is not: it does no I/O and keeps no clock; it does not
 * decide when a server is dead (the client's health logic does).
 */
#ifndef MEMSTASH_CLIENT_DIST_H
#define MEMSTASH_CLIENT_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hash.h"

enum dist_mode {
    DIST_MODULA = 0,
    DIST_KETAMA,
    DIST_PYTHON,
};

struct dist_server {
    const char *host; /* exactly as the user wrote it (a unix path for sockets) */
    uint16_t port;    /* 0 for unix sockets */
    uint32_t weight;  /* 0 counts as 1 */
    bool live;
};

struct dist_point {
    uint32_t value;
    uint32_t server;
};

struct dist_config {
    enum dist_mode mode;
    enum hash_alg hash; /* key hash for modula and ketama (python always uses crc) */
    bool weighted;      /* ketama: force weighted (MD5 points) mode */
    bool spy;           /* ketama: spymemcached point names */
    bool python_or_one; /* python: 1.59's "or 1" (Debian 12); false for 1.60+ */
};

struct dist {
    struct dist_config cfg;
    size_t nservers;
    size_t nlive;
    bool *live;                /* nservers entries */
    struct dist_point *points; /* ketama continuum */
    size_t npoints;
    uint32_t *buckets; /* python bucket list */
    size_t nbuckets;
};

/* Zeroes d and sets its configuration. */
void dist_init(struct dist *d, const struct dist_config *cfg);
/* Frees what dist_build() allocated; d can be built again. */
void dist_deinit(struct dist *d);

/*
 * (Re)builds the placement for servers[0..n). Returns 0, or -1 when out of
 * memory (d is then empty: every lookup answers -1).
 */
int dist_build(struct dist *d, const struct dist_server *servers, size_t n);

/* The hash the mode computes for a key (ketama: the value searched on the continuum). */
uint32_t dist_key_hash(const struct dist *d, const char *key, size_t n);

/* The server index for key, or -1 when no live server can take it. */
long dist_lookup(const struct dist *d, const char *key, size_t n);

#endif

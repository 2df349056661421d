/*
 * spec.h - server list parsing: "host[:port[:weight]]", "[v6]:port[:weight]",
 * unix socket paths, comma lists.
 *
 * Accepted items (spaces around items are ignored):
 *   host                 port 11211, weight 1
 *   host:port            port 0 means 11211, as in libmemcached
 *   host:port:weight     weight >= 1
 *   host:port weight     libmemcached's memcached_servers_parse() form
 *   [v6addr] [v6addr]:port [v6addr]:port:weight
 *   /path/to.sock  unix:/path/to.sock     (port 0, weight 1)
 * A bare IPv6 literal without brackets ("::1") is refused: it cannot be told
 * from host:port.
 *
 * The host is kept exactly as written (without brackets): libmemcached uses
 * that string in ketama point names, so "localhost" and "127.0.0.1" are
 * different servers for placement.
 */
#ifndef MEMSTASH_CLIENT_SPEC_H
#define MEMSTASH_CLIENT_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SPEC_DEFAULT_PORT 11211

struct server_spec {
    char *host; /* malloc'd; the unix path for sockets */
    uint16_t port;
    uint32_t weight;
    bool is_unix;
    bool is_v6; /* written in brackets */
};

/* Parses one item s[0..n) into out (out->host malloc'd). Returns 0 or -1. */
int spec_parse_one(const char *s, size_t n, struct server_spec *out);

/*
 * Parses a comma list. On success *out holds *count items (free with
 * spec_free_list); on failure returns -1 and *out is NULL. An empty list
 * (or one with an empty item) is an error.
 */
int spec_parse_list(const char *s, struct server_spec **out, size_t *count);
void spec_free_list(struct server_spec *specs, size_t count);

/* "host:port", "[v6]:port" or the path, NUL-terminated in buf. Returns the length. */
size_t spec_format(const struct server_spec *sp, char *buf, size_t cap);

#endif

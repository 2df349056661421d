/*
 * memstash.h - libmemstash, the memstash client library (C11).
 *
 * A handle (struct mst) holds a pool of memcached-compatible servers, decides
 * which server holds each key (ketama compatible with libmemcached 1.1.4,
 * modula, or python-memcached's own placement), talks to them over
 * non-blocking sockets with connect and I/O timeouts, and marks a server that
 * keeps failing dead for a retry interval, moving its keys to the other
 * servers or failing fast, as configured.
 *
 * Conventions:
 *   - Every function that can fail returns an int: MST_OK (0) or a negative
 *     MST_E* code; mst_strerror() names it and mst_last_error() gives the
 *     detail of the handle's last failure (which server, what happened).
 *   - Cache outcomes are not failures. They come back separately, through an
 *     `enum mst_outcome *` argument (which may be NULL): a miss is MST_OK with
 *     outcome MST_MISS, a failed add is MST_OK with MST_NOT_STORED.
 *   - Keys are byte spans (pointer + length). Before anything is sent, a key
 *     must be 1..250 bytes long including the namespace, with no space or
 *     control byte (bytes 0x21-0x7e and 0x80-0xff are allowed, so UTF-8 keys
 *     work); otherwise the call fails with MST_EBADKEY and nothing is sent.
 *   - Times are milliseconds, expiry times are memcached exptimes (seconds,
 *     or a unix time past 30 days).
 *
 * Threads: a handle is used by one thread at a time. Give each thread its
 * own handle (mst_clone() copies the configuration and servers), or share
 * a struct mst_pool and borrow handles from it.
 *
 * Ownership is stated at each declaration. Nothing returned points into the
 * handle past the next call on it unless said so.
 */
#ifndef MEMSTASH_H
#define MEMSTASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define MST_API __attribute__((visibility("default")))
#else
#define MST_API
#endif

#define MST_VERSION_STRING "0.1.0"
/* Longest key, namespace included. */
#define MST_KEY_MAX 250

/* Failures. */
enum mst_status {
    MST_OK = 0,
    MST_EINVAL = -1,     /* invalid argument or option value */
    MST_ENOMEM = -2,     /* out of memory */
    MST_EBADKEY = -3,    /* key empty, too long, or holds a space or control byte */
    MST_ENOSERVERS = -4, /* no server configured, or none alive for the key */
    MST_ECONNECT = -5,   /* could not connect to the server */
    MST_ETIMEOUT = -6,   /* connect or I/O timeout */
    MST_EIO = -7,        /* read or write failed, or the server closed the connection */
    MST_EPROTO = -8,     /* the server's reply could not be understood */
    MST_ESERVER = -9,    /* the server answered SERVER_ERROR */
    MST_ECLIENT = -10,   /* the server answered CLIENT_ERROR (e.g. incr of a non-number) */
    MST_EDEAD = -11,     /* the key's server is marked dead and failover is off */
    MST_ETOOBIG = -12,   /* the value is too large for the server */
    MST_ENOTSUP = -13,   /* not supported (yet) */
    MST_ESOME = -14,     /* a multi-server call: some servers failed, the rest succeeded */
    MST_ERESOLVE = -15,  /* the host name could not be resolved */
    MST_ENOENT = -16,    /* no such server in the pool */
    MST_ECMD = -17,      /* the server answered ERROR (unknown command) */
};

/* Cache outcomes of a successful call. */
enum mst_outcome {
    MST_NONE = 0,   /* no outcome: noreply, or a call that has none */
    MST_HIT,        /* get: found */
    MST_MISS,       /* get: not found */
    MST_STORED,     /* set/add/replace/append/prepend/cas stored; incr/decr applied */
    MST_NOT_STORED, /* add: exists; replace/append/prepend: missing */
    MST_EXISTS,     /* cas: the item changed since gets */
    MST_NOT_FOUND,  /* cas/delete/incr/decr/touch: no such item */
    MST_DELETED,    /* delete: removed */
    MST_TOUCHED,    /* touch: expiry updated */
};

/* Where keys go. */
enum mst_distribution {
    /* hash(key) % servers (libmemcached MODULA). */
    MST_DIST_MODULA = 0,
    /*
     * libmemcached's MEMCACHED_BEHAVIOR_KETAMA / pylibmc {"ketama": True}:
     * 100 points per server hashed with the key hash (default one-at-a-time);
     * any server weight > 1 switches to MD5 points as libmemcached does.
     */
    MST_DIST_KETAMA,
    /* MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED: 160 MD5 points scaled by weight, MD5 keys. */
    MST_DIST_KETAMA_WEIGHTED,
    /* CONSISTENT_KETAMA_SPY (spymemcached point names); keeps the key hash. */
    MST_DIST_KETAMA_SPY,
    /* python-memcached 1.59 (Debian 12): crc32 buckets with "or 1", rehash past dead servers. */
    MST_DIST_PYTHON,
    /* python-memcached 1.60 and later (no "or 1"). */
    MST_DIST_PYTHON_NEW,
};

/* Key hash for modula and ketama (libmemcached's memcached_hash_t numbers). */
enum mst_hash {
    MST_HASH_DEFAULT = 0, /* one-at-a-time */
    MST_HASH_MD5 = 1,
    MST_HASH_CRC = 2,
    MST_HASH_FNV1_64 = 3,
    MST_HASH_FNV1A_64 = 4,
    MST_HASH_FNV1_32 = 5,
    MST_HASH_FNV1A_32 = 6,
    MST_HASH_MURMUR = 8,
    MST_HASH_JENKINS = 9,
    MST_HASH_MURMUR3 = 10,
};

enum mst_protocol {
    MST_PROTO_TEXT = 0, /* the classic text protocol (get, set, incr...) */
    /*
     * The default: the meta protocol (mg, ms, md, ma, mn) with servers that
     * speak it, text with servers that answer ERROR to "mn" (memcached older
     * than 1.6). Each new connection finds out with an "mn" sent ahead of
     * its first request, which goes out in text; so it costs no round trip.
     * (memcached 1.6.0-1.6.9 answered "mn" but spoke an older meta dialect:
     * use MST_PROTO_TEXT with those.)
     */
    MST_PROTO_META,
    MST_PROTO_BINARY, /* the binary protocol (deprecated by memcached, still served) */
};

struct mst;

/* A value returned by mst_get()/mst_gets(). data is malloc'd and NUL-terminated
 * (the NUL is not counted in len); release it with mst_value_clear(). */
struct mst_value {
    char *data;
    size_t len;
    uint32_t flags;
    uint64_t cas; /* 0 unless fetched with gets */
};

/* ---- Handle ---------------------------------------------------------- */

/* Creates an empty handle (no servers, defaults below). *out is NULL on failure. */
MST_API int mst_create(struct mst **out);
/* A new handle with m's options and servers (not its connections or health). */
MST_API int mst_clone(const struct mst *m, struct mst **out);
/* Closes every connection and frees the handle; sets *m to NULL. NULL is fine. */
MST_API void mst_destroy(struct mst **m);

/* A static description of a status code ("unknown status" for others). */
MST_API const char *mst_strerror(int status);
/* "hit", "miss", "stored", ... (static). */
MST_API const char *mst_outcome_name(enum mst_outcome outcome);
/* Detail of the last failure on this handle ("" if none); valid until the next call. */
MST_API const char *mst_last_error(const struct mst *m);
/* The library version, "0.1.0". */
MST_API const char *mst_version_string(void);

/* ---- Servers ---------------------------------------------------------- */

/*
 * Adds servers: "host", "host:port", "host:port:weight", "host:port weight",
 * "[v6addr]", "[v6addr]:port[:weight]", "/unix/path" or "unix:/path", or a
 * comma-separated list of these. The default port is 11211 and the default
 * weight 1. Either every item is added or none (MST_EINVAL).
 */
MST_API int mst_server_add(struct mst *m, const char *spec);
/* Removes the server that spec names (same syntax, weight ignored); MST_ENOENT if absent. */
MST_API int mst_server_remove(struct mst *m, const char *spec);
MST_API size_t mst_server_count(const struct mst *m);
/* "host:port", "[v6]:port" or the unix path; valid until the server list changes. NULL if i is out
 * of range. */
MST_API const char *mst_server_name(const struct mst *m, size_t i);
/* True while server i is marked dead (it failed failure_limit times in a row). */
MST_API bool mst_server_is_dead(const struct mst *m, size_t i);

/* ---- Options (one typed setter each) ---------------------------------- */

/* Default MST_DIST_KETAMA. MST_DIST_KETAMA_WEIGHTED also sets the hash to MD5. */
MST_API int mst_set_distribution(struct mst *m, enum mst_distribution d);
/* Default MST_HASH_DEFAULT (one-at-a-time). Python distributions ignore it. */
MST_API int mst_set_hash(struct mst *m, enum mst_hash h);
/* Milliseconds, 1..3600000. Defaults: connect 1000, I/O 2000 (per call). */
MST_API int mst_set_connect_timeout(struct mst *m, unsigned ms);
MST_API int mst_set_io_timeout(struct mst *m, unsigned ms);
/*
 * Longest time, in microseconds (0..10000, default 100), a call on one server
 * polls its socket for the reply before it sleeps in recv(). Waking a sleeping
 * thread costs tens of microseconds on many machines, often more than a
 * loopback or same-rack round trip. The library measures both ways of waiting
 * per connection and keeps to the faster one, trying the other now and then,
 * so a distant or slow server is simply waited for. 0 never polls.
 */
MST_API int mst_set_spin(struct mst *m, unsigned us);
/* Prefix put before every key on the wire (not hashed unless mst_set_hash_namespace). NULL or ""
 * clears it. */
MST_API int mst_set_namespace(struct mst *m, const char *prefix);
/* Whether the namespace is part of the hashed key (default false, as libmemcached). */
MST_API int mst_set_hash_namespace(struct mst *m, bool on);
/* How long a dead server is skipped before it is tried again (default 2000 ms). */
MST_API int mst_set_retry_interval(struct mst *m, unsigned ms);
/* Consecutive failures that mark a server dead (default 2, at least 1). */
MST_API int mst_set_failure_limit(struct mst *m, unsigned n);
/*
 * On (default): a dead server's keys go to the next server on the continuum
 * (ketama) or python-memcached's rehash (python). Off: calls for its keys fail
 * fast with MST_EDEAD. Modula never moves keys.
 */
MST_API int mst_set_failover(struct mst *m, bool on);
/*
 * Default MST_PROTO_META (see enum mst_protocol). Changing it closes the
 * handle's connections (a server keeps the protocol a connection began
 * with). Flush, stats and version have no meta form and go out in text.
 */
MST_API int mst_set_protocol(struct mst *m, enum mst_protocol p);
/* The protocol set on m (an enum mst_protocol value). */
MST_API int mst_get_protocol(const struct mst *m);
/*
 * The protocol the next request to server i goes out in: MST_PROTO_BINARY
 * or MST_PROTO_TEXT when set so; on a meta handle MST_PROTO_META once the
 * current connection answered "mn", MST_PROTO_TEXT when it refused it or
 * before it was asked. MST_ENOENT if i is out of range.
 */
MST_API int mst_server_protocol(const struct mst *m, size_t i);
/*
 * Storage, delete, incr/decr, touch and flush without waiting for replies
 * (outcome MST_NONE). In meta and binary these go out quiet with an "mn" /
 * NOOP after them; the replies a server still sends (failures such as NS,
 * NF, errors) are read and dropped before the next call's, so the stream
 * never goes out of step.
 */
MST_API int mst_set_noreply(struct mst *m, bool on);

/* ---- Placement -------------------------------------------------------- */

/*
 * The index of the server that holds key now (dead servers and failover taken
 * into account). MST_EDEAD if it is dead and failover is off, MST_ENOSERVERS
 * if no server can take it. No I/O.
 */
MST_API int mst_locate(struct mst *m, const char *key, size_t nkey, size_t *server);

/* ---- Reads ------------------------------------------------------------ */

/* Fetches key. On a hit *val is filled (release with mst_value_clear), on a miss it is zeroed. */
MST_API int mst_get(struct mst *m, const char *key, size_t nkey, struct mst_value *val,
                    enum mst_outcome *outcome);
/* As mst_get, with the item's CAS in val->cas. */
MST_API int mst_gets(struct mst *m, const char *key, size_t nkey, struct mst_value *val,
                     enum mst_outcome *outcome);
/* Fetches key and sets its expiry to exptime in the same step (gat). */
MST_API int mst_gat(struct mst *m, const char *key, size_t nkey, int32_t exptime,
                    struct mst_value *val, enum mst_outcome *outcome);
/* Frees val->data and zeroes *val. */
MST_API void mst_value_clear(struct mst_value *val);

/*
 * Called once per hit of mst_get_multi(); key is without the namespace. The
 * pointers are valid only during the call. Return 0 to go on; any other value
 * stops delivering further hits (the replies are still read).
 */
typedef int (*mst_item_cb)(void *arg, const char *key, size_t nkey, const char *data, size_t len,
                           uint32_t flags, uint64_t cas);

/*
 * Fetches n keys (keys[i], nkeys[i] bytes) from all their servers at once:
 * one pipelined request per server, replies read as they arrive. Hits go to
 * cb; misses are simply not reported. with_cas uses gets. Returns MST_OK,
 * MST_ESOME when some servers failed (their keys are missing), or the failure
 * when every server failed. A bad key fails the whole call before any I/O.
 */
MST_API int mst_get_multi(struct mst *m, const char *const *keys, const size_t *nkeys, size_t n,
                          bool with_cas, mst_item_cb cb, void *arg);

/* ---- Writes ----------------------------------------------------------- */

MST_API int mst_set(struct mst *m, const char *key, size_t nkey, const void *data, size_t len,
                    uint32_t flags, int32_t exptime, enum mst_outcome *outcome);
MST_API int mst_add(struct mst *m, const char *key, size_t nkey, const void *data, size_t len,
                    uint32_t flags, int32_t exptime, enum mst_outcome *outcome);
MST_API int mst_replace(struct mst *m, const char *key, size_t nkey, const void *data, size_t len,
                        uint32_t flags, int32_t exptime, enum mst_outcome *outcome);
/* append/prepend keep the item's flags and exptime (the server ignores those sent). */
MST_API int mst_append(struct mst *m, const char *key, size_t nkey, const void *data, size_t len,
                       enum mst_outcome *outcome);
MST_API int mst_prepend(struct mst *m, const char *key, size_t nkey, const void *data, size_t len,
                        enum mst_outcome *outcome);
/* Stores only if the item's CAS is still cas: MST_STORED, MST_EXISTS or MST_NOT_FOUND. */
MST_API int mst_cas(struct mst *m, const char *key, size_t nkey, const void *data, size_t len,
                    uint32_t flags, int32_t exptime, uint64_t cas, enum mst_outcome *outcome);
/* MST_DELETED or MST_NOT_FOUND. */
MST_API int mst_delete(struct mst *m, const char *key, size_t nkey, enum mst_outcome *outcome);

/*
 * Deletes n keys, pipelined: one batch per server, all servers at once.
 * *deleted (may be NULL) counts the keys that existed. Returns MST_OK,
 * MST_ESOME when some servers failed, or the failure when all did.
 */
MST_API int mst_delete_multi(struct mst *m, const char *const *keys, const size_t *nkeys, size_t n,
                             size_t *deleted);

/* One item of mst_set_multi(); the pointers are the caller's and only read. */
struct mst_item {
    const char *key;
    size_t nkey;
    const void *data;
    size_t len;
    uint32_t flags;
    int32_t exptime;
};

/*
 * Sets n items, pipelined: each server gets all its items in one write and
 * answers them in order (text "set", meta "ms", binary SET; with
 * mst_set_noreply the quiet forms and one end marker per server), all
 * servers at once. outcomes (may be NULL) gets one entry per item:
 * MST_STORED, MST_NOT_STORED, or MST_NONE when the item was not answered
 * (its server failed, no server took it, the server refused it with an
 * error line, or noreply). *stored (may be NULL) counts MST_STORED. Returns
 * MST_OK, MST_ESOME when some servers failed, or the failure when all did.
 * A bad key fails the whole call before any I/O.
 */
MST_API int mst_set_multi(struct mst *m, const struct mst_item *items, size_t n,
                          enum mst_outcome *outcomes, size_t *stored);

/*
 * Adds delta to (incr) or subtracts it from (decr, floored at 0 by the
 * server) a decimal value. If the key is missing and initial is not NULL, the
 * item is created with *initial and exptime (and *value = *initial); else the
 * outcome is MST_NOT_FOUND. value may be NULL.
 */
MST_API int mst_incr(struct mst *m, const char *key, size_t nkey, uint64_t delta,
                     const uint64_t *initial, int32_t exptime, uint64_t *value,
                     enum mst_outcome *outcome);
MST_API int mst_decr(struct mst *m, const char *key, size_t nkey, uint64_t delta,
                     const uint64_t *initial, int32_t exptime, uint64_t *value,
                     enum mst_outcome *outcome);
/* MST_TOUCHED or MST_NOT_FOUND. */
MST_API int mst_touch(struct mst *m, const char *key, size_t nkey, int32_t exptime,
                      enum mst_outcome *outcome);

/* ---- Stampede-safe cache-aside: leases (meta protocol) ----------------- */

/*
 * When a popular item is missing or stale, every client that misses would
 * recompute it at once (a stampede). A lease lets exactly one of them do
 * it: mst_lease_get() uses memcached's "mg <key> v f c N<lease_ttl>
 * [R<recache_below>]" and tells each caller its part:
 *
 *   MST_LEASE_HIT    the value is fresh: use it.
 *   MST_LEASE_STALE  the value is stale (mst_lease_invalidate) and another
 *                    client is recomputing it: use it meanwhile.
 *   MST_LEASE_WON    this caller must recompute the value and store it with
 *                    mst_lease_set(..., val->cas, ...). *val also holds the
 *                    old value when there is one (stale, or due for recache
 *                    with recache_below); val->data is NULL when the key
 *                    was missing.
 *   MST_LEASE_WAIT   there is no value yet and another client is computing
 *                    it: retry after a short sleep (or compute without
 *                    storing). val->data is NULL.
 *
 * On a miss the server creates an empty placeholder that lives lease_ttl
 * seconds (1..2^31-1): if the winner dies, the next caller after that wins.
 * With recache_below > 0 a caller wins ahead of expiry once the item's
 * remaining TTL drops below recache_below seconds; the others keep getting
 * MST_LEASE_HIT. (An item stored with 0 bytes and flags 0 is taken for the
 * placeholder: cache at least one byte or set a flag.)
 *
 * Leases need the meta protocol: MST_ENOTSUP with a text or binary handle,
 * or with a server that does not speak it. val is filled as by mst_get()
 * (release with mst_value_clear) and val->cas always carries the lease
 * token for mst_lease_set().
 *
 * Cache-aside with a lease:
 *
 *     for (;;) {
 *         if (mst_lease_get(m, key, nkey, 30, 0, &val, &state) != MST_OK)
 *             break;                       // fall back to computing
 *         if (state == MST_LEASE_HIT || state == MST_LEASE_STALE)
 *             break;                       // use val.data
 *         if (state == MST_LEASE_WON) {    // compute, store, use
 *             mst_lease_set(m, key, nkey, data, len, 0, ttl, val.cas, NULL);
 *             break;
 *         }
 *         mst_value_clear(&val);           // MST_LEASE_WAIT
 *         sleep_a_little();
 *     }
 */
enum mst_lease {
    MST_LEASE_HIT = 0,
    MST_LEASE_STALE,
    MST_LEASE_WON,
    MST_LEASE_WAIT,
};

/* "hit", "stale", "won", "wait" (static). */
MST_API const char *mst_lease_name(enum mst_lease state);

MST_API int mst_lease_get(struct mst *m, const char *key, size_t nkey, uint32_t lease_ttl,
                          uint32_t recache_below, struct mst_value *val, enum mst_lease *state);

/*
 * Stores the recomputed value of a won lease: "ms <key> ... C<lease_cas> I".
 * When the item changed meanwhile (invalidated again), the value is stored
 * anyway but stays stale, so the next reader recomputes it once more. When
 * the placeholder is gone (expired), the value is added unless someone else
 * stored one. Outcomes: MST_STORED, MST_NOT_STORED (someone else's value is
 * there), MST_EXISTS. lease_cas 0 stores unconditionally.
 */
MST_API int mst_lease_set(struct mst *m, const char *key, size_t nkey, const void *data, size_t len,
                          uint32_t flags, int32_t exptime, uint64_t lease_cas,
                          enum mst_outcome *outcome);

/*
 * Marks the item stale instead of deleting it ("md <key> I [T<stale_ttl>]"):
 * the next mst_lease_get() wins and recomputes while the others get
 * MST_LEASE_STALE with the old value. stale_ttl (0: keep) bounds how long
 * the stale item lives. MST_DELETED (marked) or MST_NOT_FOUND.
 */
MST_API int mst_lease_invalidate(struct mst *m, const char *key, size_t nkey, int32_t stale_ttl,
                                 enum mst_outcome *outcome);

/* ---- Servers as a whole ----------------------------------------------- */

/* flush_all [delay] on every server: MST_OK, MST_ESOME or the common failure. */
MST_API int mst_flush_all(struct mst *m, int32_t delay);
/* flush_all on server i only. */
MST_API int mst_flush_server(struct mst *m, size_t i, int32_t delay);
/* Server i's version string into buf (NUL-terminated, truncated to cap). */
MST_API int mst_version(struct mst *m, size_t i, char *buf, size_t cap);

/* One STAT line of server i; return 0 to go on (the rest is read either way). */
typedef int (*mst_stat_cb)(void *arg, size_t server, const char *name, size_t nname,
                           const char *value, size_t nvalue);
/* "stats [group]" on server i; group may be NULL. */
MST_API int mst_stats(struct mst *m, size_t i, const char *group, mst_stat_cb cb, void *arg);

/* One item of mst_dump(). Pointers are valid only during the callback. */
struct mst_dump_item {
    const char *key; /* as stored, namespace included */
    size_t nkey;
    bool has_value;   /* with_values and the item was still there */
    const char *data; /* the value when has_value, else NULL */
    size_t len;
    uint32_t flags;
    int64_t exptime; /* unix time it expires, -1 never, 0 unknown (mgdump) */
    uint64_t cas;    /* 0 unknown */
};

/* Called once per item of mst_dump(); return 0 to go on, anything else to stop. */
typedef int (*mst_dump_cb)(void *arg, size_t server, const struct mst_dump_item *item);

/*
 * Lists the items server i holds, through its dump facility: "lru_crawler
 * metadump all" (memcached 1.4.31+), else "lru_crawler mgdump all"; with
 * with_values their values are then fetched from server i in batches (an
 * item that expired meanwhile comes without one). Returns MST_OK,
 * MST_ENOTSUP when the server has no dump facility (or with the binary
 * protocol), MST_ESERVER when it refused (dumping disabled, crawler busy),
 * or the I/O failure. The listing must fit in the I/O timeout.
 */
MST_API int mst_dump(struct mst *m, size_t i, bool with_values, mst_dump_cb cb, void *arg);

/* ---- Pool: handles shared between threads ----------------------------- */

struct mst_pool;

/*
 * A pool of at most max handles cloned from tmpl (its options and servers;
 * tmpl itself stays the caller's). Handles are created on first need.
 */
MST_API int mst_pool_create(const struct mst *tmpl, size_t max, struct mst_pool **out);
/*
 * Lends a handle to the calling thread, waiting up to wait_ms for one to be
 * returned when all max are out (MST_ETIMEOUT). Only the borrower uses it
 * until mst_pool_return().
 */
MST_API int mst_pool_borrow(struct mst_pool *p, unsigned wait_ms, struct mst **out);
/* Gives a borrowed handle back (it keeps its connections) and sets *m to NULL. */
MST_API void mst_pool_return(struct mst_pool *p, struct mst **m);
/* Destroys the pool and its idle handles; every handle must have been returned. */
MST_API void mst_pool_destroy(struct mst_pool **p);

#ifdef __cplusplus
}
#endif

#endif

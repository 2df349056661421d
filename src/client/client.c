/*
 * client.c - the libmemstash handle: options, the server list, health
 * (failure counting, dead servers, retry) and key routing.
 */
#include "client_int.h"

#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_CONNECT_TIMEOUT_MS 1000
#define DEFAULT_IO_TIMEOUT_MS      2000
#define DEFAULT_RETRY_INTERVAL_MS  2000
#define DEFAULT_SPIN_US            100
#define SPIN_MAX_US                10000U
#define DEFAULT_FAILURE_LIMIT      2
#define TIMEOUT_MAX_MS             3600000U

uint64_t mst_now_ms(void)
{
    return mst_now_ns() / 1000000;
}

uint64_t mst_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000 + (uint64_t)ts.tv_nsec;
}

int mst_fail(struct mst *m, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->errbuf, sizeof(m->errbuf), fmt, ap);
    va_end(ap);
    return status;
}

MST_API const char *mst_version_string(void)
{
    return MST_VERSION_STRING;
}

MST_API const char *mst_strerror(int status)
{
    switch (status) {
    case MST_OK:
        return "success";
    case MST_EINVAL:
        return "invalid argument";
    case MST_ENOMEM:
        return "out of memory";
    case MST_EBADKEY:
        return "bad key (empty, longer than 250 bytes, or holding a space or control byte)";
    case MST_ENOSERVERS:
        return "no server available";
    case MST_ECONNECT:
        return "connection failed";
    case MST_ETIMEOUT:
        return "timeout";
    case MST_EIO:
        return "I/O error or connection closed";
    case MST_EPROTO:
        return "protocol error (unexpected reply)";
    case MST_ESERVER:
        return "server error";
    case MST_ECLIENT:
        return "client error reported by the server";
    case MST_EDEAD:
        return "server is marked dead";
    case MST_ETOOBIG:
        return "value too large";
    case MST_ENOTSUP:
        return "not supported";
    case MST_ESOME:
        return "some servers failed";
    case MST_ERESOLVE:
        return "host name lookup failed";
    case MST_ENOENT:
        return "no such server";
    case MST_ECMD:
        return "command not understood by the server";
    default:
        return "unknown status";
    }
}

MST_API const char *mst_outcome_name(enum mst_outcome outcome)
{
    switch (outcome) {
    case MST_NONE:
        return "none";
    case MST_HIT:
        return "hit";
    case MST_MISS:
        return "miss";
    case MST_STORED:
        return "stored";
    case MST_NOT_STORED:
        return "not stored";
    case MST_EXISTS:
        return "exists";
    case MST_NOT_FOUND:
        return "not found";
    case MST_DELETED:
        return "deleted";
    case MST_TOUCHED:
        return "touched";
    default:
        return "unknown";
    }
}

MST_API const char *mst_last_error(const struct mst *m)
{
    return m ? m->errbuf : "";
}

static void dist_config_of(const struct mst *m, struct dist_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->hash = (enum hash_alg)m->hash;
    switch (m->distribution) {
    case MST_DIST_MODULA:
        cfg->mode = DIST_MODULA;
        break;
    case MST_DIST_KETAMA_WEIGHTED:
        cfg->mode = DIST_KETAMA;
        cfg->weighted = true;
        break;
    case MST_DIST_KETAMA_SPY:
        cfg->mode = DIST_KETAMA;
        cfg->spy = true;
        break;
    case MST_DIST_PYTHON:
        cfg->mode = DIST_PYTHON;
        cfg->python_or_one = true;
        break;
    case MST_DIST_PYTHON_NEW:
        cfg->mode = DIST_PYTHON;
        break;
    case MST_DIST_KETAMA:
    default:
        cfg->mode = DIST_KETAMA;
        break;
    }
}

MST_API int mst_create(struct mst **out)
{
    if (!out) {
        return MST_EINVAL;
    }
    struct mst *m = calloc(1, sizeof(*m));
    *out = NULL;
    if (!m) {
        return MST_ENOMEM;
    }
    m->distribution = MST_DIST_KETAMA;
    m->hash = MST_HASH_DEFAULT;
    m->connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
    m->io_timeout_ms = DEFAULT_IO_TIMEOUT_MS;
    m->spin_us = DEFAULT_SPIN_US;
    m->retry_interval_ms = DEFAULT_RETRY_INTERVAL_MS;
    m->failure_limit = DEFAULT_FAILURE_LIMIT;
    m->failover = true;
    m->protocol = MST_PROTO_META;
    struct dist_config cfg;
    dist_config_of(m, &cfg);
    dist_init(&m->dist, &cfg);
    m->dist_dirty = true;
    *out = m;
    return MST_OK;
}

static void server_free(struct mst_server *srv)
{
    if (!srv) {
        return;
    }
    io_close(srv);
    buf_free(&srv->wbuf);
    buf_free(&srv->rbuf);
    if (srv->ai) {
        freeaddrinfo(srv->ai);
    }
    free(srv->spec.host);
    free(srv);
}

MST_API void mst_destroy(struct mst **mp)
{
    if (!mp || !*mp) {
        return;
    }
    struct mst *m = *mp;
    for (size_t i = 0; i < m->nservers; i++) {
        server_free(m->servers[i]);
    }
    free(m->servers);
    dist_deinit(&m->dist);
    free(m);
    *mp = NULL;
}

static struct mst_server *server_new(const struct server_spec *sp)
{
    struct mst_server *srv = calloc(1, sizeof(*srv));
    if (!srv) {
        return NULL;
    }
    srv->spec = *sp;
    srv->spec.host = strdup(sp->host);
    if (!srv->spec.host) {
        free(srv);
        return NULL;
    }
    srv->fd = -1;
    spec_format(&srv->spec, srv->name, sizeof(srv->name));
    return srv;
}

MST_API int mst_server_add(struct mst *m, const char *spec)
{
    if (!m || !spec) {
        return MST_EINVAL;
    }
    struct server_spec *specs;
    size_t n;
    if (spec_parse_list(spec, &specs, &n) != 0) {
        return mst_fail(m, MST_EINVAL, "bad server list: \"%s\"", spec);
    }
    struct mst_server **grown = realloc(m->servers, (m->nservers + n) * sizeof(*grown));
    if (!grown) {
        spec_free_list(specs, n);
        return MST_ENOMEM;
    }
    m->servers = grown;
    size_t added = 0;
    for (; added < n; added++) {
        struct mst_server *srv = server_new(&specs[added]);
        if (!srv) {
            break;
        }
        m->servers[m->nservers + added] = srv;
    }
    spec_free_list(specs, n);
    if (added < n) {
        for (size_t i = 0; i < added; i++) {
            server_free(m->servers[m->nservers + i]);
        }
        return MST_ENOMEM;
    }
    m->nservers += n;
    m->dist_dirty = true;
    return MST_OK;
}

static bool same_server(const struct server_spec *a, const struct server_spec *b)
{
    return a->is_unix == b->is_unix && a->port == b->port && strcmp(a->host, b->host) == 0;
}

MST_API int mst_server_remove(struct mst *m, const char *spec)
{
    if (!m || !spec) {
        return MST_EINVAL;
    }
    struct server_spec sp;
    if (spec_parse_one(spec, strlen(spec), &sp) != 0) {
        return mst_fail(m, MST_EINVAL, "bad server: \"%s\"", spec);
    }
    int rc = MST_ENOENT;
    for (size_t i = 0; i < m->nservers; i++) {
        if (same_server(&m->servers[i]->spec, &sp)) {
            server_free(m->servers[i]);
            memmove(&m->servers[i], &m->servers[i + 1],
                    (m->nservers - i - 1) * sizeof(*m->servers));
            m->nservers--;
            m->dist_dirty = true;
            rc = MST_OK;
            break;
        }
    }
    free(sp.host);
    if (rc != MST_OK) {
        mst_fail(m, rc, "no server %s in the pool", spec);
    }
    return rc;
}

MST_API size_t mst_server_count(const struct mst *m)
{
    return m ? m->nservers : 0;
}

MST_API const char *mst_server_name(const struct mst *m, size_t i)
{
    if (!m || i >= m->nservers) {
        return NULL;
    }
    return m->servers[i]->name;
}

MST_API bool mst_server_is_dead(const struct mst *m, size_t i)
{
    if (!m || i >= m->nservers) {
        return false;
    }
    return m->servers[i]->dead_until != 0 && mst_now_ms() < m->servers[i]->dead_until;
}

MST_API int mst_clone(const struct mst *m, struct mst **out)
{
    if (!m || !out) {
        return MST_EINVAL;
    }
    int rc = mst_create(out);
    if (rc != MST_OK) {
        return rc;
    }
    struct mst *c = *out;
    c->distribution = m->distribution;
    c->hash = m->hash;
    c->connect_timeout_ms = m->connect_timeout_ms;
    c->io_timeout_ms = m->io_timeout_ms;
    c->spin_us = m->spin_us;
    c->retry_interval_ms = m->retry_interval_ms;
    c->failure_limit = m->failure_limit;
    c->failover = m->failover;
    c->noreply = m->noreply;
    c->hash_namespace = m->hash_namespace;
    c->protocol = m->protocol;
    memcpy(c->ns, m->ns, sizeof(c->ns));
    c->nns = m->nns;
    struct dist_config cfg;
    dist_config_of(c, &cfg);
    c->dist.cfg = cfg;
    if (m->nservers) {
        c->servers = calloc(m->nservers, sizeof(*c->servers));
        if (!c->servers) {
            mst_destroy(out);
            return MST_ENOMEM;
        }
        for (size_t i = 0; i < m->nservers; i++) {
            c->servers[i] = server_new(&m->servers[i]->spec);
            if (!c->servers[i]) {
                c->nservers = i;
                mst_destroy(out);
                return MST_ENOMEM;
            }
        }
        c->nservers = m->nservers;
    }
    return MST_OK;
}

/* ---- Options ---------------------------------------------------------- */

static void config_changed(struct mst *m)
{
    struct dist_config cfg;
    dist_config_of(m, &cfg);
    m->dist.cfg = cfg;
    m->dist_dirty = true;
}

MST_API int mst_set_distribution(struct mst *m, enum mst_distribution d)
{
    if (!m || (int)d < MST_DIST_MODULA || d > MST_DIST_PYTHON_NEW) {
        return MST_EINVAL;
    }
    m->distribution = d;
    if (d == MST_DIST_KETAMA_WEIGHTED) {
        m->hash = MST_HASH_MD5; /* as MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED does */
    }
    config_changed(m);
    return MST_OK;
}

MST_API int mst_set_hash(struct mst *m, enum mst_hash h)
{
    if (!m) {
        return MST_EINVAL;
    }
    switch (h) {
    case MST_HASH_DEFAULT:
    case MST_HASH_MD5:
    case MST_HASH_CRC:
    case MST_HASH_FNV1_64:
    case MST_HASH_FNV1A_64:
    case MST_HASH_FNV1_32:
    case MST_HASH_FNV1A_32:
    case MST_HASH_MURMUR:
    case MST_HASH_JENKINS:
    case MST_HASH_MURMUR3:
        break;
    default:
        return MST_EINVAL;
    }
    m->hash = h;
    config_changed(m);
    return MST_OK;
}

MST_API int mst_set_connect_timeout(struct mst *m, unsigned ms)
{
    if (!m || ms == 0 || ms > TIMEOUT_MAX_MS) {
        return MST_EINVAL;
    }
    m->connect_timeout_ms = ms;
    return MST_OK;
}

MST_API int mst_set_io_timeout(struct mst *m, unsigned ms)
{
    if (!m || ms == 0 || ms > TIMEOUT_MAX_MS) {
        return MST_EINVAL;
    }
    m->io_timeout_ms = ms;
    return MST_OK;
}

MST_API int mst_set_spin(struct mst *m, unsigned us)
{
    if (!m || us > SPIN_MAX_US) {
        return MST_EINVAL;
    }
    m->spin_us = us;
    return MST_OK;
}

static bool key_byte_ok(unsigned char c)
{
    return (c >= 0x21 && c <= 0x7e) || c >= 0x80;
}

MST_API int mst_set_namespace(struct mst *m, const char *prefix)
{
    if (!m) {
        return MST_EINVAL;
    }
    size_t n = prefix ? strlen(prefix) : 0;
    if (n >= MST_KEY_MAX) {
        return MST_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!key_byte_ok((unsigned char)prefix[i])) {
            return MST_EINVAL;
        }
    }
    if (n) {
        memcpy(m->ns, prefix, n);
    }
    m->ns[n] = '\0';
    m->nns = n;
    return MST_OK;
}

MST_API int mst_set_hash_namespace(struct mst *m, bool on)
{
    if (!m) {
        return MST_EINVAL;
    }
    m->hash_namespace = on;
    return MST_OK;
}

MST_API int mst_set_retry_interval(struct mst *m, unsigned ms)
{
    if (!m || ms > TIMEOUT_MAX_MS) {
        return MST_EINVAL;
    }
    m->retry_interval_ms = ms;
    return MST_OK;
}

MST_API int mst_set_failure_limit(struct mst *m, unsigned n)
{
    if (!m || n == 0) {
        return MST_EINVAL;
    }
    m->failure_limit = n;
    return MST_OK;
}

MST_API int mst_set_failover(struct mst *m, bool on)
{
    if (!m) {
        return MST_EINVAL;
    }
    m->failover = on;
    m->dist_dirty = true;
    return MST_OK;
}

MST_API int mst_set_protocol(struct mst *m, enum mst_protocol p)
{
    if (!m || (p != MST_PROTO_TEXT && p != MST_PROTO_META && p != MST_PROTO_BINARY)) {
        return MST_EINVAL;
    }
    if (p != m->protocol) {
        /* A server keeps the protocol a connection started with: start afresh. */
        for (size_t i = 0; i < m->nservers; i++) {
            io_close(m->servers[i]);
        }
    }
    m->protocol = p;
    return MST_OK;
}

MST_API int mst_get_protocol(const struct mst *m)
{
    return m ? (int)m->protocol : MST_EINVAL;
}

MST_API int mst_server_protocol(const struct mst *m, size_t i)
{
    if (!m || i >= m->nservers) {
        return MST_ENOENT;
    }
    return (int)srv_wire(m, m->servers[i]);
}

MST_API int mst_set_noreply(struct mst *m, bool on)
{
    if (!m) {
        return MST_EINVAL;
    }
    m->noreply = on;
    return MST_OK;
}

/* ---- Health and routing ----------------------------------------------- */

void health_failure(struct mst *m, struct mst_server *srv, int status)
{
    (void)status;
    srv->failures++;
    if (srv->failures >= m->failure_limit && srv->dead_until == 0) {
        uint64_t until = mst_now_ms() + m->retry_interval_ms;
        srv->dead_until = until ? until : 1;
        m->dist_dirty = true;
    }
}

void health_success(struct mst *m, struct mst_server *srv)
{
    (void)m;
    srv->failures = 0;
}

/* Lets servers whose retry interval has passed back in (one more failure re-kills them). */
static void health_refresh(struct mst *m)
{
    uint64_t now = 0;
    for (size_t i = 0; i < m->nservers; i++) {
        struct mst_server *srv = m->servers[i];
        if (srv->dead_until == 0) {
            continue;
        }
        if (now == 0) {
            now = mst_now_ms();
        }
        if (now >= srv->dead_until) {
            srv->dead_until = 0;
            srv->failures = m->failure_limit - 1;
            m->dist_dirty = true;
        }
    }
}

static int rebuild(struct mst *m)
{
    struct dist_server small[16];
    struct dist_server *ds = small;
    memset(small, 0, sizeof(small));
    if (m->nservers > 16) {
        ds = malloc(m->nservers * sizeof(*ds));
        if (!ds) {
            return MST_ENOMEM;
        }
    }
    for (size_t i = 0; i < m->nservers; i++) {
        const struct mst_server *srv = m->servers[i];
        ds[i].host = srv->spec.host;
        ds[i].port = srv->spec.port;
        ds[i].weight = srv->spec.weight;
        ds[i].live = !m->failover || srv->dead_until == 0;
    }
    int rc = dist_build(&m->dist, ds, m->nservers) == 0 ? MST_OK : MST_ENOMEM;
    if (ds != small) {
        free(ds);
    }
    if (rc == MST_OK) {
        m->dist_dirty = false;
    }
    return rc;
}

int key_check(const struct mst *m, const char *key, size_t nkey)
{
    if (!key || nkey == 0 || nkey + m->nns > MST_KEY_MAX) {
        return MST_EBADKEY;
    }
    for (size_t i = 0; i < nkey; i++) {
        if (!key_byte_ok((unsigned char)key[i])) {
            return MST_EBADKEY;
        }
    }
    return MST_OK;
}

int route_one(struct mst *m, const char *key, size_t nkey, size_t *idx)
{
    long s;
    if (m->hash_namespace && m->nns) {
        char full[MST_KEY_MAX];
        memcpy(full, m->ns, m->nns);
        memcpy(full + m->nns, key, nkey);
        s = dist_lookup(&m->dist, full, m->nns + nkey);
    } else {
        s = dist_lookup(&m->dist, key, nkey);
    }
    if (s < 0) {
        return mst_fail(m, MST_ENOSERVERS, "no live server for the key");
    }
    struct mst_server *srv = m->servers[s];
    if (srv->dead_until != 0) {
        return mst_fail(m, MST_EDEAD, "%s is marked dead", srv->name);
    }
    *idx = (size_t)s;
    return MST_OK;
}

int route_prepare(struct mst *m)
{
    if (m->nservers == 0) {
        return mst_fail(m, MST_ENOSERVERS, "no servers configured");
    }
    health_refresh(m);
    if (m->dist_dirty) {
        return rebuild(m);
    }
    return MST_OK;
}

int route_key(struct mst *m, const char *key, size_t nkey, size_t *idx)
{
    int rc = route_prepare(m);
    if (rc != MST_OK) {
        return rc;
    }
    return route_one(m, key, nkey, idx);
}

MST_API int mst_locate(struct mst *m, const char *key, size_t nkey, size_t *server)
{
    if (!m || !server) {
        return MST_EINVAL;
    }
    int rc = key_check(m, key, nkey);
    if (rc != MST_OK) {
        return mst_fail(m, rc, "bad key");
    }
    return route_key(m, key, nkey, server);
}

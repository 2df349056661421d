/*
 * memstash.c - the memstash Python module: Client, a drop-in replacement for
 * python-memcached 1.59's memcache.Client, written in C on libmemstash.
 *
 * `import memstash as memcache` is the whole migration: the constructor,
 * every public method, the return values (True/False/0/None/1), the
 * exceptions, the value flags (pickle 1, int 2, long 4, compressed 8, text
 * 16) and the key placement (crc32 buckets with weights and the dead-server
 * rehash) are python-memcached's. Where this module deliberately differs:
 *
 *   - A key with a space, a control byte or a newline (even a trailing one,
 *     which python-memcached's regex lets through) raises
 *     MemcachedKeyCharacterError and never reaches the wire, even with
 *     check_keys=False.
 *   - cas() after gets() is a real check-and-set even with cache_cas=False
 *     (the id is kept once, in a bounded private map); python-memcached
 *     silently sends a plain set there. With cache_cas=True the public
 *     cas_ids dict behaves exactly as python-memcached's.
 *   - get_stats/get_slab_stats/get_slabs work on Python 3.
 *   - set_multi with (hash, key) tuple keys works (1.59 raises KeyError), a
 *     value over server_max_value_length is reported without stalling the
 *     connection, and keys lost to a failing server are reported as failed.
 *   - One Client may be shared by threads: it is not a threading.local. The
 *     server list, dead-server state, cas_ids and stats are shared; each
 *     thread borrows its own libmemstash handle (connections) from the
 *     Client's pool. The GIL is released during network I/O.
 *   - Additions: cached() (cache-aside where one caller recomputes a missing
 *     or stale value, through meta-protocol leases) and invalidate().
 *
 * The hot paths (key checks, value encoding and decoding for str, bytes and
 * int, get/set/get_multi) are C; pickling, compression and the server-spec
 * regexes call Python.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "memstash/memstash.h"

#define SERVER_MAX_KEY_LENGTH   250
#define SERVER_MAX_VALUE_LENGTH (1024 * 1024)
#define SERVER_RETRIES          10
#define PRIVATE_CAS_MAX         65536

enum {
    FLAG_PICKLE = 1 << 0,
    FLAG_INTEGER = 1 << 1,
    FLAG_LONG = 1 << 2,
    FLAG_COMPRESSED = 1 << 3,
    FLAG_TEXT = 1 << 4,
};

/* ---- Module-wide objects (created once by PyInit_memstash) ------------ */

static PyObject *KeyError_, *KeyLengthError, *KeyCharacterError, *KeyNoneError, *KeyTypeError;
static PyObject *StringEncodingError;
static PyObject *pickle_Pickler, *pickle_Unpickler, *pickle_dumps, *pickle_loads;
static PyObject *zlib_compress, *zlib_decompress, *io_BytesIO;
static PyObject *helper_parse_servers;
static PyObject *str_dump, *str_load, *str_getvalue, *str_persistent_id, *str_persistent_load,
    *str_protocol, *str_write;
static PyObject *empty_bytes;

/* Server parsing and the _Host view stay in Python: they are python-memcached's regexes. */
static const char HELPER_SOURCE[] =
    "import os as _os, re as _re, socket as _socket\n"
    "class _Host(object):\n"
    "    \"\"\"One server of a memstash Client, as python-memcached's _Host shows it.\"\"\"\n"
    "    def __init__(self, family, address, weight, ip=None, port=None):\n"
    "        self.family = family\n"
    "        self.address = address\n"
    "        self.weight = weight\n"
    "        if ip is not None:\n"
    "            self.ip = ip\n"
    "            self.port = port\n"
    "        self.deaduntil = 0\n"
    "        self.socket = None\n"
    "    def __str__(self):\n"
    "        d = ''\n"
    "        if self.deaduntil:\n"
    "            d = ' (dead until %d)' % self.deaduntil\n"
    "        if self.family == _socket.AF_INET:\n"
    "            return 'inet:%s:%d%s' % (self.address[0], self.address[1], d)\n"
    "        elif self.family == _socket.AF_INET6:\n"
    "            return 'inet6:[%s]:%d%s' % (self.address[0], self.address[1], d)\n"
    "        return 'unix:%s%s' % (self.address, d)\n"
    "def _parse_servers(servers):\n"
    "    out = []\n"
    "    for host in servers:\n"
    "        if isinstance(host, tuple):\n"
    "            host, weight = host\n"
    "        else:\n"
    "            weight = 1\n"
    "        m = _re.match(r'^(?P<proto>unix):(?P<path>.*)$', host)\n"
    "        if not m:\n"
    "            m = _re.match(r'^(?P<proto>inet6):'\n"
    "                         r'\\[(?P<host>[^\\[\\]]+)\\](:(?P<port>[0-9]+))?$', host)\n"
    "        if not m:\n"
    "            m = _re.match(r'^(?P<proto>inet):'\n"
    "                         r'(?P<host>[^:]+)(:(?P<port>[0-9]+))?$', host)\n"
    "        if not m:\n"
    "            m = _re.match(r'^(?P<host>[^:]+)(:(?P<port>[0-9]+))?$', host)\n"
    "        if not m:\n"
    "            raise ValueError('Unable to parse connection string: \"%s\"' % host)\n"
    "        d = m.groupdict()\n"
    "        nbuckets = len(range(weight))\n"
    "        if d.get('proto') == 'unix':\n"
    "            path = d['path']\n"
    "            h = _Host(_socket.AF_UNIX, path, weight)\n"
    "            spec = 'unix:' + _os.path.abspath(path)\n"
    "            name = 'unix:%s (%s)' % (path, weight)\n"
    "            unix = True\n"
    "        else:\n"
    "            port = int(d.get('port') or 11211)\n"
    "            ip = d['host']\n"
    "            unix = False\n"
    "            if d.get('proto') == 'inet6':\n"
    "                h = _Host(_socket.AF_INET6, (ip, port), weight, ip, port)\n"
    "                spec = '[%s]:%d' % (ip, port)\n"
    "                name = '[%s]:%s (%s)' % (ip, port, weight)\n"
    "            else:\n"
    "                h = _Host(_socket.AF_INET, (ip, port), weight, ip, port)\n"
    "                spec = '%s:%d' % (ip, port)\n"
    "                name = '%s:%s (%s)' % (ip, port, weight)\n"
    "        out.append((h, spec, nbuckets, name, unix, host))\n"
    "    return out\n";

/* ---- Small helpers ---------------------------------------------------- */

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint32_t crc32_table[256];

static void crc32_setup(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? 0xedb88320U ^ (c >> 1) : c >> 1;
        }
        crc32_table[i] = c;
    }
}

static uint32_t crc32_of(const char *p, size_t n)
{
    uint32_t c = 0xffffffffU;
    for (size_t i = 0; i < n; i++) {
        c = crc32_table[(c ^ (unsigned char)p[i]) & 0xff] ^ (c >> 8);
    }
    return c ^ 0xffffffffU;
}

/* python-memcached 1.59's cmemcache_hash (with its "or 1"). */
static uint32_t cmemcache_hash(const char *p, size_t n)
{
    uint32_t h = (crc32_of(p, n) >> 16) & 0x7fff;
    return h ? h : 1;
}

static bool key_byte_ok(unsigned char c)
{
    return (c >= 0x21 && c <= 0x7e) || c >= 0x80;
}

static bool key_chars_ok(const char *p, Py_ssize_t n)
{
    if (n <= 0) {
        return false;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!key_byte_ok((unsigned char)p[i])) {
            return false;
        }
    }
    return true;
}

/*
 * A tiny argument parser for METH_FASTCALL | METH_KEYWORDS: names[] lists
 * every parameter, the first nreq are required; out[] gets borrowed
 * references (NULL for an absent optional one). Errors read as CPython's for
 * python-memcached's methods ("Client.set() missing 1 required ...").
 */
static int parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                      const char *const *names, int nparams, int nreq, PyObject **out)
{
    if (nargs > nparams) {
        if (nreq == nparams) {
            PyErr_Format(PyExc_TypeError,
                         "Client.%s() takes %d positional arguments but %zd were given", fname,
                         nparams + 1, nargs + 1);
        } else {
            PyErr_Format(PyExc_TypeError,
                         "Client.%s() takes from %d to %d positional arguments but %zd were given",
                         fname, nreq + 1, nparams + 1, nargs + 1);
        }
        return -1;
    }
    for (int i = 0; i < nparams; i++) {
        out[i] = i < nargs ? args[i] : NULL;
    }
    if (kwnames) {
        Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t k = 0; k < nkw; k++) {
            PyObject *kw = PyTuple_GET_ITEM(kwnames, k);
            int found = -1;
            for (int i = 0; i < nparams; i++) {
                if (PyUnicode_CompareWithASCIIString(kw, names[i]) == 0) {
                    found = i;
                    break;
                }
            }
            if (found < 0) {
                PyErr_Format(PyExc_TypeError, "Client.%s() got an unexpected keyword argument '%U'",
                             fname, kw);
                return -1;
            }
            if (out[found]) {
                PyErr_Format(PyExc_TypeError, "Client.%s() got multiple values for argument '%s'",
                             fname, names[found]);
                return -1;
            }
            out[found] = args[nargs + k];
        }
    }
    int missing = 0;
    for (int i = 0; i < nreq; i++) {
        missing += !out[i];
    }
    if (missing) {
        /* "'a'", "'a' and 'b'" */
        PyObject *list = PyUnicode_FromString("");
        int seen = 0;
        for (int i = 0; i < nreq && list; i++) {
            if (out[i]) {
                continue;
            }
            seen++;
            const char *sep = seen == 1         ? ""
                              : seen == missing ? (missing > 2 ? ", and " : " and ")
                                                : ", ";
            PyObject *next = PyUnicode_FromFormat("%U%s'%s'", list, sep, names[i]);
            Py_SETREF(list, next);
        }
        if (list) {
            PyErr_Format(PyExc_TypeError,
                         "Client.%s() missing %d required positional argument%s: %U", fname,
                         missing, missing > 1 ? "s" : "", list);
            Py_DECREF(list);
        }
        return -1;
    }
    return 0;
}

/* ---- Handle pools ----------------------------------------------------- */

/* Idle libmemstash handles (each with its own connections), cloned from a template. */
struct hpool {
    struct mst **v;
    size_t n, cap;
};

#define HPOOL_MAX 64

static void hpool_clear(struct hpool *p)
{
    for (size_t i = 0; i < p->n; i++) {
        mst_destroy(&p->v[i]);
    }
    p->n = 0;
}

static void hpool_free(struct hpool *p)
{
    hpool_clear(p);
    free(p->v);
    p->v = NULL;
    p->cap = 0;
}

/* One server of the list, as python-memcached's _Host. */
struct host {
    struct mst *tmpl;  /* this server alone (tuple keys, weight-0 servers) */
    struct hpool pool; /* idle clones of tmpl */
    long first;        /* its first index in the Client's main handle, -1 if absent */
    double dead_until; /* monotonic seconds; set by the tuple-key path */
    PyObject *name;    /* "ip:port (weight)" for get_stats */
};

/* ---- The Client type -------------------------------------------------- */

typedef struct {
    PyObject_HEAD PyObject *dict;
    PyObject *weakrefs;
    /* Servers and placement. */
    struct host *hosts;
    Py_ssize_t nhosts;
    uint32_t *buckets; /* host index per bucket (python-memcached's bucket list) */
    size_t nbuckets;
    struct mst *tmpl; /* every server with weight >= 1, placement as python-memcached */
    struct hpool pool;
    struct hpool mpool; /* meta-protocol clones of tmpl, for cached() */
    unsigned long gen;  /* bumped when the server list or its state is reset */
    enum mst_distribution dist;
    /* Options. */
    unsigned timeout_ms;
    unsigned spin_us; /* mst_set_spin */
    unsigned retry_ms;
    double dead_retry_s;
    Py_ssize_t max_key_len;
    Py_ssize_t max_value_len;
    bool check_keys;
    bool cache_cas;
    bool pickler_is_keyword;
    PyObject *debug;
    PyObject *pickle_protocol;
    PyObject *pickler;
    PyObject *unpickler;
    PyObject *compressor;
    PyObject *decompressor;
    PyObject *persistent_load;
    PyObject *persistent_id;
    PyObject *dead_retry;
    PyObject *socket_timeout;
    PyObject *flush_on_reconnect;
    PyObject *servers;     /* list of _Host */
    PyObject *cas_ids;     /* cache_cas=True: wire key (bytes) -> cas id, as python-memcached */
    PyObject *cas_private; /* cache_cas=False: ids of gets() not yet used by cas() */
    PyObject *stats;       /* command -> calls */
} Client;

/* A handle lent to one call. */
struct lease {
    struct mst *h;
    unsigned long gen;
    struct hpool *pool;
};

static int lease_take(Client *self, struct hpool *pool, struct mst *tmpl, struct lease *l)
{
    l->gen = self->gen;
    l->pool = pool;
    if (pool->n) {
        l->h = pool->v[--pool->n];
        return 0;
    }
    l->h = NULL;
    int rc = mst_clone(tmpl, &l->h);
    if (rc != MST_OK) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void lease_give(Client *self, struct lease *l)
{
    if (!l->h) {
        return;
    }
    /* A handle that outlived set_servers()/forget_dead_hosts() is dropped. */
    if (l->gen != self->gen) {
        mst_destroy(&l->h);
        return;
    }
    struct hpool *p = l->pool;
    if (p->n == p->cap && p->cap < HPOOL_MAX) {
        size_t cap = p->cap ? p->cap * 2 : 4;
        struct mst **v = realloc(p->v, cap * sizeof(*v));
        if (v) {
            p->v = v;
            p->cap = cap;
        }
    }
    if (p->n < p->cap) {
        p->v[p->n++] = l->h;
    } else {
        mst_destroy(&l->h);
    }
    l->h = NULL;
}

/* ---- Operations (run without the GIL) --------------------------------- */

enum opkind {
    OP_GET,
    OP_GETS,
    OP_SET,
    OP_ADD,
    OP_REPLACE,
    OP_APPEND,
    OP_PREPEND,
    OP_CAS,
    OP_DELETE,
    OP_INCR,
    OP_DECR,
    OP_TOUCH,
};

struct op {
    enum opkind kind;
    const char *key;
    size_t nkey;
    const char *data;
    size_t len;
    uint32_t flags;
    int32_t exptime;
    uint64_t cas;
    uint64_t delta;
    bool noreply;
    /* Results. */
    int rc;
    enum mst_outcome outcome;
    struct mst_value val;
    uint64_t number;
    char err[320];
};

static void op_run(struct mst *h, struct op *op)
{
    if (op->noreply) {
        mst_set_noreply(h, true);
    }
    const char *k = op->key;
    size_t nk = op->nkey;
    switch (op->kind) {
    case OP_GET:
        op->rc = mst_get(h, k, nk, &op->val, &op->outcome);
        break;
    case OP_GETS:
        op->rc = mst_gets(h, k, nk, &op->val, &op->outcome);
        break;
    case OP_SET:
        op->rc = mst_set(h, k, nk, op->data, op->len, op->flags, op->exptime, &op->outcome);
        break;
    case OP_ADD:
        op->rc = mst_add(h, k, nk, op->data, op->len, op->flags, op->exptime, &op->outcome);
        break;
    case OP_REPLACE:
        op->rc = mst_replace(h, k, nk, op->data, op->len, op->flags, op->exptime, &op->outcome);
        break;
    case OP_APPEND:
        op->rc = mst_append(h, k, nk, op->data, op->len, &op->outcome);
        break;
    case OP_PREPEND:
        op->rc = mst_prepend(h, k, nk, op->data, op->len, &op->outcome);
        break;
    case OP_CAS:
        op->rc =
            mst_cas(h, k, nk, op->data, op->len, op->flags, op->exptime, op->cas, &op->outcome);
        break;
    case OP_DELETE:
        op->rc = mst_delete(h, k, nk, &op->outcome);
        break;
    case OP_INCR:
        op->rc = mst_incr(h, k, nk, op->delta, NULL, 0, &op->number, &op->outcome);
        break;
    case OP_DECR:
        op->rc = mst_decr(h, k, nk, op->delta, NULL, 0, &op->number, &op->outcome);
        break;
    case OP_TOUCH:
        op->rc = mst_touch(h, k, nk, op->exptime, &op->outcome);
        break;
    }
    if (op->noreply) {
        mst_set_noreply(h, false);
    }
    if (op->rc != MST_OK) {
        snprintf(op->err, sizeof(op->err), "%s", mst_last_error(h));
    }
}

/* The server answered with an error line (python-memcached reads it as "not stored"). */
static bool rc_is_reply(int rc)
{
    return rc == MST_ESERVER || rc == MST_ECLIENT || rc == MST_ECMD || rc == MST_ETOOBIG;
}

/* The failure happened before anything reached the server. */
static bool rc_is_connect(int rc, const char *err)
{
    if (rc == MST_ECONNECT || rc == MST_ERESOLVE) {
        return true;
    }
    return rc == MST_ETIMEOUT && strstr(err, ": connect") != NULL;
}

/* A key as python-memcached's _encode_key + check_key leave it. */
struct keyinfo {
    const char *p;
    Py_ssize_t n;
    PyObject *hash; /* borrowed: the hash of a (hash, key) tuple, else NULL */
    bool too_long;  /* longer than libmemstash allows (only when checks are off) */
};

static void debuglog(Client *self, PyObject *msg)
{
    int on = self->debug ? PyObject_IsTrue(self->debug) : 0;
    if (on <= 0) {
        if (on < 0) {
            PyErr_Clear();
        }
        return;
    }
    PyObject *err = PySys_GetObject("stderr");
    if (!err || err == Py_None) {
        return;
    }
    PyObject *line = PyUnicode_FromFormat("MemCached: %S\n", msg);
    if (!line) {
        PyErr_Clear();
        return;
    }
    PyObject *r = PyObject_CallMethodOneArg(err, str_write, line);
    Py_DECREF(line);
    if (!r) {
        PyErr_Clear();
    }
    Py_XDECREF(r);
}

static int raise_char_error(PyObject *bytes_key, const char *p, Py_ssize_t n)
{
    PyObject *k = bytes_key;
    if (!k) {
        k = PyBytes_FromStringAndSize(p, n);
        if (!k) {
            return -1;
        }
    } else {
        Py_INCREF(k);
    }
    PyErr_Format(KeyCharacterError, "Control/space characters not allowed (key=%R)", k);
    Py_DECREF(k);
    return -1;
}

/*
 * python-memcached's check_key on an encoded key: None, type, length (with
 * key_extra_len), then characters (stricter: a trailing newline is refused).
 */
static int check_bytes_key(Client *self, PyObject *key, Py_ssize_t extra)
{
    if (key == Py_None) {
        PyErr_SetString(KeyNoneError, "Key is None");
        return -1;
    }
    if (!PyBytes_Check(key)) {
        PyErr_SetString(KeyTypeError, "Key must be a binary string");
        return -1;
    }
    Py_ssize_t n = PyBytes_GET_SIZE(key);
    if (self->max_key_len != 0 && n + extra > self->max_key_len) {
        PyErr_Format(KeyLengthError, "Key length is > %zd", self->max_key_len);
        return -1;
    }
    if (!key_chars_ok(PyBytes_AS_STRING(key), n)) {
        return raise_char_error(key, NULL, 0);
    }
    return 0;
}

/*
 * Single-key operations: key is str, bytes or (hash, key). *holder gets a
 * new reference that keeps ki->p alive (or NULL).
 */
static int key_prepare(Client *self, PyObject *key, struct keyinfo *ki, PyObject **holder)
{
    ki->hash = NULL;
    ki->too_long = false;
    *holder = NULL;
    PyObject *k = key;
    if (PyTuple_Check(key)) {
        Py_ssize_t tn = PyTuple_GET_SIZE(key);
        if (tn < 2) {
            PyErr_SetString(PyExc_IndexError, "tuple index out of range");
            return -1;
        }
        if (tn > 2) {
            PyErr_SetString(PyExc_ValueError, "too many values to unpack (expected 2)");
            return -1;
        }
        ki->hash = PyTuple_GET_ITEM(key, 0);
        k = PyTuple_GET_ITEM(key, 1);
    }
    if (PyUnicode_Check(k)) {
        k = PyUnicode_AsEncodedString(k, "utf-8", "strict");
        if (!k) {
            return -1;
        }
    } else {
        Py_INCREF(k);
    }
    if (self->check_keys) {
        if (check_bytes_key(self, k, 0) < 0) {
            Py_DECREF(k);
            return -1;
        }
    } else if (!PyBytes_Check(k)) {
        PyErr_Format(PyExc_TypeError, "a bytes-like object is required, not '%.200s'",
                     Py_TYPE(k)->tp_name);
        Py_DECREF(k);
        return -1;
    } else if (!key_chars_ok(PyBytes_AS_STRING(k), PyBytes_GET_SIZE(k))) {
        /* Never sent, whatever check_keys says: it would break the stream. */
        raise_char_error(k, NULL, 0);
        Py_DECREF(k);
        return -1;
    }
    ki->p = PyBytes_AS_STRING(k);
    ki->n = PyBytes_GET_SIZE(k);
    ki->too_long = ki->n > MST_KEY_MAX;
    *holder = k;
    return 0;
}

static void statlog(Client *self, PyObject *name)
{
    if (!self->stats || !PyDict_Check(self->stats)) {
        return;
    }
    PyObject *cur = PyDict_GetItemWithError(self->stats, name);
    PyObject *next;
    if (cur) {
        PyObject *one = PyLong_FromLong(1);
        next = one ? PyNumber_Add(cur, one) : NULL;
        Py_XDECREF(one);
    } else {
        if (PyErr_Occurred()) {
            PyErr_Clear();
            return;
        }
        next = PyLong_FromLong(1);
    }
    if (!next) {
        PyErr_Clear();
        return;
    }
    if (PyDict_SetItem(self->stats, name, next) < 0) {
        PyErr_Clear();
    }
    Py_DECREF(next);
}

/* Is host hi usable for the tuple-key path? */
static bool host_alive(Client *self, size_t hi, double now)
{
    struct host *h = &self->hosts[hi];
    if (now < h->dead_until) {
        return false;
    }
    if (h->first >= 0 && self->pool.n) {
        return !mst_server_is_dead(self->pool.v[self->pool.n - 1], (size_t)h->first);
    }
    return true;
}

static void host_mark_dead(Client *self, size_t hi)
{
    self->hosts[hi].dead_until = now_mono() + self->dead_retry_s;
}

/*
 * A (hash, key) tuple: python-memcached's _get_server with the given hash:
 * buckets[hash % n], then cmemcache_hash(str(h) + str(i)) past dead servers.
 * The operation runs on that server's own handle.
 */
static int exec_tuple(Client *self, PyObject *hash, struct op *op)
{
    op->rc = MST_ENOSERVERS;
    snprintf(op->err, sizeof(op->err), "no server available");
    if (self->nbuckets == 0) {
        return 0;
    }
    PyObject *nb = PyLong_FromSize_t(self->nbuckets);
    if (!nb) {
        return -1;
    }
    PyObject *r = PyNumber_Remainder(hash, nb);
    Py_DECREF(nb);
    if (!r) {
        return -1;
    }
    Py_ssize_t b = PyLong_AsSsize_t(r);
    Py_DECREF(r);
    if (b == -1 && PyErr_Occurred()) {
        return -1;
    }
    PyObject *hs = PyObject_Str(hash);
    if (!hs) {
        return -1;
    }
    Py_ssize_t nhs;
    const char *phs = PyUnicode_AsUTF8AndSize(hs, &nhs);
    if (!phs) {
        Py_DECREF(hs);
        return -1;
    }
    char *text = malloc((size_t)nhs + 32);
    if (!text) {
        Py_DECREF(hs);
        PyErr_NoMemory();
        return -1;
    }
    memcpy(text, phs, (size_t)nhs);
    size_t ntext = (size_t)nhs;
    Py_DECREF(hs);
    unsigned long gen = self->gen;
    for (int i = 0; i < SERVER_RETRIES; i++) {
        size_t hi = self->buckets[(size_t)b];
        if (host_alive(self, hi, now_mono())) {
            struct host *host = &self->hosts[hi];
            struct lease l;
            if (lease_take(self, &host->pool, host->tmpl, &l) < 0) {
                free(text);
                return -1;
            }
            mst_value_clear(&op->val);
            {
                PyThreadState *ts = PyEval_SaveThread();
                op_run(l.h, op);
                PyEval_RestoreThread(ts);
            }
            lease_give(self, &l);
            if (gen != self->gen) {
                break; /* the server list changed meanwhile: report what happened */
            }
            if (op->rc == MST_OK || rc_is_reply(op->rc) || op->rc == MST_EBADKEY) {
                break;
            }
            host_mark_dead(self, hi);
            if (!rc_is_connect(op->rc, op->err)) {
                break;
            }
            op->rc = MST_ENOSERVERS;
        }
        ntext += (size_t)snprintf(text + ntext, 16, "%d", i);
        uint32_t h = cmemcache_hash(text, ntext);
        b = (Py_ssize_t)(h % self->nbuckets);
        ntext = (size_t)snprintf(text, 32, "%u", (unsigned)h);
    }
    free(text);
    return 0;
}

/* Runs op for a key: on the main handle, or for a tuple key on its hash's server. */
static int client_exec(Client *self, const struct keyinfo *ki, struct op *op)
{
    op->key = ki->p;
    op->nkey = (size_t)ki->n;
    memset(&op->val, 0, sizeof(op->val));
    op->err[0] = '\0';
    if (ki->hash && (self->dist == MST_DIST_PYTHON || self->dist == MST_DIST_PYTHON_NEW)) {
        return exec_tuple(self, ki->hash, op);
    }
    struct lease l;
    if (lease_take(self, &self->pool, self->tmpl, &l) < 0) {
        return -1;
    }
    {
        PyThreadState *ts = PyEval_SaveThread();
        op_run(l.h, op);
        PyEval_RestoreThread(ts);
    }
    lease_give(self, &l);
    return 0;
}

/* ---- Values ----------------------------------------------------------- */

/* An encoded value: data[0..len) owned by owner (a new reference, or NULL for buf). */
struct encoded {
    PyObject *owner;
    const char *data;
    Py_ssize_t len;
    uint32_t flags;
    char buf[24];
};

static void encoded_clear(struct encoded *e)
{
    Py_CLEAR(e->owner);
}

static PyObject *do_pickle(Client *self, PyObject *val)
{
    if (self->pickler == pickle_Pickler &&
        (!self->persistent_id || self->persistent_id == Py_None) && self->pickler_is_keyword) {
        PyObject *args[2] = {val, self->pickle_protocol};
        return PyObject_Vectorcall(pickle_dumps, args, 2, NULL);
    }
    PyObject *file = PyObject_CallNoArgs(io_BytesIO);
    if (!file) {
        return NULL;
    }
    PyObject *p;
    if (self->pickler_is_keyword) {
        PyObject *args[2] = {file, self->pickle_protocol};
        PyObject *kw = PyTuple_Pack(1, str_protocol);
        if (!kw) {
            Py_DECREF(file);
            return NULL;
        }
        p = PyObject_Vectorcall(self->pickler, args, 1, kw);
        Py_DECREF(kw);
    } else {
        p = PyObject_CallFunctionObjArgs(self->pickler, file, self->pickle_protocol, NULL);
    }
    if (!p) {
        Py_DECREF(file);
        return NULL;
    }
    if (self->persistent_id && self->persistent_id != Py_None &&
        PyObject_SetAttr(p, str_persistent_id, self->persistent_id) < 0) {
        Py_DECREF(p);
        Py_DECREF(file);
        return NULL;
    }
    PyObject *r = PyObject_CallMethodOneArg(p, str_dump, val);
    Py_DECREF(p);
    if (!r) {
        Py_DECREF(file);
        return NULL;
    }
    Py_DECREF(r);
    PyObject *out = PyObject_CallMethodNoArgs(file, str_getvalue);
    Py_DECREF(file);
    return out;
}

/* min_compress_len truthy and len > min_compress_len? -1 on exception. */
static int should_compress(PyObject *mcl, Py_ssize_t len)
{
    if (!mcl || mcl == Py_None) {
        return 0;
    }
    if (PyLong_CheckExact(mcl)) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(mcl, &overflow);
        if (overflow) {
            return overflow < 0;
        }
        return v != 0 && (long long)len > v;
    }
    int t = PyObject_IsTrue(mcl);
    if (t <= 0) {
        return t;
    }
    PyObject *lv = PyLong_FromSsize_t(len);
    if (!lv) {
        return -1;
    }
    int r = PyObject_RichCompareBool(lv, mcl, Py_GT);
    Py_DECREF(lv);
    return r;
}

/*
 * python-memcached's _val_to_store_info. Returns 0 (encoded), 1 (larger than
 * server_max_value_length: not to be sent) or -1 (exception).
 */
static int encode_value(Client *self, PyObject *val, PyObject *mcl, struct encoded *e)
{
    e->owner = NULL;
    e->flags = 0;
    bool may_compress = true;
    PyTypeObject *t = Py_TYPE(val);
    if (t == &PyBytes_Type) {
        Py_INCREF(val);
        e->owner = val;
        e->data = PyBytes_AS_STRING(val);
        e->len = PyBytes_GET_SIZE(val);
    } else if (t == &PyUnicode_Type) {
        e->flags = FLAG_TEXT;
        e->data = PyUnicode_AsUTF8AndSize(val, &e->len);
        if (!e->data) {
            return -1;
        }
        Py_INCREF(val);
        e->owner = val;
    } else if (t == &PyLong_Type) {
        e->flags = FLAG_INTEGER;
        may_compress = false;
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(val, &overflow);
        if (!overflow && !(v == -1 && PyErr_Occurred())) {
            e->len = snprintf(e->buf, sizeof(e->buf), "%lld", v);
            e->data = e->buf;
        } else {
            PyErr_Clear();
            PyObject *s = PyObject_Str(val);
            if (!s) {
                return -1;
            }
            e->data = PyUnicode_AsUTF8AndSize(s, &e->len);
            if (!e->data) {
                Py_DECREF(s);
                return -1;
            }
            e->owner = s;
        }
    } else {
        e->flags = FLAG_PICKLE;
        PyObject *b = do_pickle(self, val);
        if (!b) {
            return -1;
        }
        if (!PyBytes_Check(b)) {
            PyObject *bb = PyBytes_FromObject(b);
            Py_DECREF(b);
            if (!bb) {
                return -1;
            }
            b = bb;
        }
        e->owner = b;
        e->data = PyBytes_AS_STRING(b);
        e->len = PyBytes_GET_SIZE(b);
    }
    if (may_compress) {
        int c = should_compress(mcl, e->len);
        if (c < 0) {
            encoded_clear(e);
            return -1;
        }
        if (c) {
            PyObject *raw = PyBytes_FromStringAndSize(e->data, e->len);
            if (!raw) {
                encoded_clear(e);
                return -1;
            }
            PyObject *comp = PyObject_CallOneArg(self->compressor, raw);
            Py_DECREF(raw);
            if (!comp) {
                encoded_clear(e);
                return -1;
            }
            if (!PyBytes_Check(comp)) {
                PyObject *cb = PyBytes_FromObject(comp);
                Py_DECREF(comp);
                if (!cb) {
                    encoded_clear(e);
                    return -1;
                }
                comp = cb;
            }
            if (PyBytes_GET_SIZE(comp) < e->len) {
                encoded_clear(e);
                e->owner = comp;
                e->data = PyBytes_AS_STRING(comp);
                e->len = PyBytes_GET_SIZE(comp);
                e->flags |= FLAG_COMPRESSED;
            } else {
                Py_DECREF(comp);
            }
        }
    }
    if (self->max_value_len != 0 && e->len > self->max_value_len) {
        encoded_clear(e);
        return 1;
    }
    return 0;
}

/* int(b'...') as python-memcached does for flags 2 and 4. */
static PyObject *int_of(const char *p, size_t n)
{
    if (n > 0 && n < 19) {
        long long v = 0;
        size_t i = 0;
        bool neg = false;
        if (p[0] == '-') {
            neg = true;
            i = 1;
        }
        if (i < n) {
            for (; i < n; i++) {
                if (p[i] < '0' || p[i] > '9') {
                    break;
                }
                v = v * 10 + (p[i] - '0');
            }
            if (i == n) {
                return PyLong_FromLongLong(neg ? -v : v);
            }
        }
    }
    PyObject *b = PyBytes_FromStringAndSize(p, (Py_ssize_t)n);
    if (!b) {
        return NULL;
    }
    PyObject *r = PyNumber_Long(b);
    Py_DECREF(b);
    return r;
}

static PyObject *do_unpickle(Client *self, PyObject *buf)
{
    PyObject *val;
    if (self->unpickler == pickle_Unpickler &&
        (!self->persistent_load || self->persistent_load == Py_None)) {
        val = PyObject_CallOneArg(pickle_loads, buf);
    } else {
        val = NULL;
        PyObject *file = PyObject_CallOneArg(io_BytesIO, buf);
        if (file) {
            PyObject *u = PyObject_CallOneArg(self->unpickler, file);
            if (u) {
                if (!self->persistent_load || self->persistent_load == Py_None ||
                    PyObject_SetAttr(u, str_persistent_load, self->persistent_load) == 0) {
                    val = PyObject_CallMethodNoArgs(u, str_load);
                }
                Py_DECREF(u);
            }
            Py_DECREF(file);
        }
    }
    if (!val) {
        if (!PyErr_ExceptionMatches(PyExc_Exception)) {
            return NULL;
        }
        /* python-memcached: an unpickling error logs and reads as None. */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        PyObject *msg = PyUnicode_FromFormat("Pickle error: %S\n", value ? value : Py_None);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        if (msg) {
            debuglog(self, msg);
            Py_DECREF(msg);
        } else {
            PyErr_Clear();
        }
        Py_RETURN_NONE;
    }
    return val;
}

/* python-memcached's _recv_value on the bytes read. */
static PyObject *decode_value(Client *self, const char *data, size_t len, uint32_t flags)
{
    PyObject *buf = NULL; /* set when the data went through the decompressor */
    if (flags & FLAG_COMPRESSED) {
        PyObject *raw = PyBytes_FromStringAndSize(data, (Py_ssize_t)len);
        if (!raw) {
            return NULL;
        }
        buf = PyObject_CallOneArg(self->decompressor, raw);
        Py_DECREF(raw);
        if (!buf) {
            return NULL;
        }
        flags &= ~(uint32_t)FLAG_COMPRESSED;
        if (PyBytes_Check(buf)) {
            data = PyBytes_AS_STRING(buf);
            len = (size_t)PyBytes_GET_SIZE(buf);
        } else if (flags != 0) {
            PyObject *b = PyBytes_FromObject(buf);
            Py_DECREF(buf);
            if (!b) {
                return NULL;
            }
            buf = b;
            data = PyBytes_AS_STRING(buf);
            len = (size_t)PyBytes_GET_SIZE(buf);
        }
    }
    PyObject *val;
    if (flags == 0) {
        if (buf) {
            return buf;
        }
        val = PyBytes_FromStringAndSize(data, (Py_ssize_t)len);
    } else if (flags & FLAG_TEXT) {
        val = PyUnicode_DecodeUTF8(data, (Py_ssize_t)len, "strict");
    } else if (flags & (FLAG_INTEGER | FLAG_LONG)) {
        val = int_of(data, len);
    } else if (flags & FLAG_PICKLE) {
        PyObject *b = buf;
        if (!b) {
            b = PyBytes_FromStringAndSize(data, (Py_ssize_t)len);
            if (!b) {
                return NULL;
            }
        } else {
            Py_INCREF(b);
        }
        val = do_unpickle(self, b);
        Py_DECREF(b);
    } else {
        PyObject *msg = PyUnicode_FromFormat("unknown flags on get: %x\n", (unsigned)flags);
        if (msg) {
            debuglog(self, msg);
            Py_DECREF(msg);
        }
        PyErr_Format(PyExc_ValueError, "Unknown flags on get: %x", (unsigned)flags);
        val = NULL;
    }
    Py_XDECREF(buf);
    return val;
}

/* '%d' % time, as python-memcached formats the exptime of storage commands. */
static int exptime_of(PyObject *o, int32_t *out, bool *in_range)
{
    *in_range = true;
    *out = 0;
    if (!o) {
        return 0;
    }
    PyObject *l;
    if (PyLong_Check(o)) {
        Py_INCREF(o);
        l = o;
    } else if (PyNumber_Check(o) && !PyUnicode_Check(o) && !PyBytes_Check(o)) {
        l = PyNumber_Long(o);
        if (!l) {
            return -1;
        }
    } else {
        PyErr_Format(PyExc_TypeError, "%%d format: a real number is required, not %.200s",
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(l, &overflow);
    Py_DECREF(l);
    if (overflow || v < INT32_MIN || v > INT32_MAX) {
        *in_range = false;
        return 0;
    }
    *out = (int32_t)v;
    return 0;
}

static int truthy(PyObject *o)
{
    return o ? PyObject_IsTrue(o) : 0;
}

/* ---- Storage ---------------------------------------------------------- */

static PyObject *S_set, *S_add, *S_replace, *S_append, *S_prepend, *S_cas, *S_get, *S_gets,
    *S_delete, *S_touch, *S_incr, *S_decr, *S_get_multi, *S_set_multi, *S_delete_multi;

/* True on STORED (or noreply), False on another reply, 0 when nothing was stored. */
static PyObject *store_result(const struct op *op)
{
    if (op->rc == MST_OK) {
        if (op->outcome == MST_STORED || op->outcome == MST_NONE) {
            Py_RETURN_TRUE;
        }
        Py_RETURN_FALSE;
    }
    if (rc_is_reply(op->rc) || op->rc == MST_EBADKEY) {
        Py_RETURN_FALSE;
    }
    return PyLong_FromLong(0);
}

/* The id cas() should use for the wire key, or 0 (none: a plain set). */
static int cas_lookup(Client *self, PyObject *wire, uint64_t *cas)
{
    *cas = 0;
    PyObject *d = self->cache_cas ? self->cas_ids : self->cas_private;
    if (!d || !PyDict_Check(d)) {
        return 0;
    }
    PyObject *v = PyDict_GetItemWithError(d, wire);
    if (!v) {
        return PyErr_Occurred() ? -1 : 0;
    }
    unsigned long long c = PyLong_AsUnsignedLongLong(v);
    if (c == (unsigned long long)-1 && PyErr_Occurred()) {
        return -1;
    }
    *cas = c ? c : 1;
    if (!self->cache_cas && PyDict_DelItem(d, wire) < 0) {
        return -1;
    }
    return 1;
}

static PyObject *do_store(Client *self, enum opkind kind, PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames, const char *fname)
{
    static const char *const names[] = {"key", "val", "time", "min_compress_len", "noreply"};
    PyObject *a[5];
    if (parse_args(fname, args, nargs, kwnames, names, 5, 2, a) < 0) {
        return NULL;
    }
    struct keyinfo ki;
    PyObject *holder;
    if (key_prepare(self, a[0], &ki, &holder) < 0) {
        return NULL;
    }
    PyObject *result = NULL;
    struct op op;
    memset(&op, 0, sizeof(op));
    op.kind = kind;
    PyObject *statname = kind == OP_SET       ? S_set
                         : kind == OP_ADD     ? S_add
                         : kind == OP_REPLACE ? S_replace
                         : kind == OP_APPEND  ? S_append
                         : kind == OP_PREPEND ? S_prepend
                                              : S_cas;
    statlog(self, statname);
    if (kind == OP_CAS) {
        PyObject *wire = PyBytes_FromStringAndSize(ki.p, ki.n);
        if (!wire) {
            goto out;
        }
        int found = cas_lookup(self, wire, &op.cas);
        Py_DECREF(wire);
        if (found < 0) {
            goto out;
        }
        if (!found) {
            /* No id for the key: python-memcached's cas() is then a plain set. */
            op.kind = OP_SET;
            statlog(self, S_set);
        }
    }
    struct encoded e;
    int enc = encode_value(self, a[1], a[3], &e);
    if (enc < 0) {
        goto out;
    }
    if (enc == 1) {
        result = PyLong_FromLong(0);
        goto out;
    }
    bool in_range;
    if (exptime_of(a[2], &op.exptime, &in_range) < 0) {
        encoded_clear(&e);
        goto out;
    }
    int nr = truthy(a[4]);
    if (nr < 0) {
        encoded_clear(&e);
        goto out;
    }
    op.noreply = nr;
    op.data = e.data;
    op.len = (size_t)e.len;
    op.flags = e.flags;
    if (!in_range || ki.too_long) {
        /* The server would refuse the command line. */
        encoded_clear(&e);
        result = PyBool_FromLong(0);
        goto out;
    }
    if (client_exec(self, &ki, &op) < 0) {
        encoded_clear(&e);
        goto out;
    }
    encoded_clear(&e);
    result = store_result(&op);
out:
    Py_XDECREF(holder);
    return result;
}

#define STORE_METHOD(name, kind)                                                                   \
    static PyObject *Client_##name(Client *self, PyObject *const *args, Py_ssize_t nargs,          \
                                   PyObject *kwnames)                                              \
    {                                                                                              \
        return do_store(self, kind, args, nargs, kwnames, #name);                                  \
    }

STORE_METHOD(set, OP_SET)
STORE_METHOD(add, OP_ADD)
STORE_METHOD(replace, OP_REPLACE)
STORE_METHOD(append, OP_APPEND)
STORE_METHOD(prepend, OP_PREPEND)
STORE_METHOD(cas, OP_CAS)

/* ---- Reads ------------------------------------------------------------ */

static int remember_cas(Client *self, const struct keyinfo *ki, uint64_t cas)
{
    PyObject *d = self->cache_cas ? self->cas_ids : self->cas_private;
    if (!d || !PyDict_Check(d)) {
        return 0;
    }
    if (!self->cache_cas && PyDict_GET_SIZE(d) >= PRIVATE_CAS_MAX) {
        PyDict_Clear(d);
    }
    PyObject *wire = PyBytes_FromStringAndSize(ki->p, ki->n);
    PyObject *v = PyLong_FromUnsignedLongLong(cas);
    int rc = (wire && v) ? PyDict_SetItem(d, wire, v) : -1;
    Py_XDECREF(wire);
    Py_XDECREF(v);
    return rc;
}

static PyObject *do_get(Client *self, enum opkind kind, PyObject *const *args, Py_ssize_t nargs,
                        PyObject *kwnames, const char *fname)
{
    static const char *const names[] = {"key"};
    PyObject *a[1];
    if (parse_args(fname, args, nargs, kwnames, names, 1, 1, a) < 0) {
        return NULL;
    }
    struct keyinfo ki;
    PyObject *holder;
    if (key_prepare(self, a[0], &ki, &holder) < 0) {
        return NULL;
    }
    statlog(self, kind == OP_GET ? S_get : S_gets);
    PyObject *result = NULL;
    struct op op;
    op.kind = kind;
    op.noreply = false;
    if (ki.too_long) {
        Py_DECREF(holder);
        Py_RETURN_NONE;
    }
    if (client_exec(self, &ki, &op) < 0) {
        goto out;
    }
    if (op.rc != MST_OK || op.outcome != MST_HIT) {
        mst_value_clear(&op.val);
        result = Py_None;
        Py_INCREF(result);
        goto out;
    }
    if (kind == OP_GETS && remember_cas(self, &ki, op.val.cas) < 0) {
        mst_value_clear(&op.val);
        goto out;
    }
    result = decode_value(self, op.val.data, op.val.len, op.val.flags);
    mst_value_clear(&op.val);
out:
    Py_XDECREF(holder);
    return result;
}

static PyObject *Client_get(Client *self, PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames)
{
    return do_get(self, OP_GET, args, nargs, kwnames, "get");
}

static PyObject *Client_gets(Client *self, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames)
{
    return do_get(self, OP_GETS, args, nargs, kwnames, "gets");
}

/* ---- Delete, touch, incr/decr ----------------------------------------- */

/* ---- cached(): cache-aside without stampedes (meta leases) ------------- */

/*
 * cached() and invalidate() need the meta protocol (mg N/W/Z/X, ms C I,
 * md I), so they run on handles of their own, cloned from the template
 * with the protocol switched to meta; the other methods keep the text
 * protocol python-memcached speaks.
 */
static int meta_take(Client *self, struct lease *l)
{
    if (lease_take(self, &self->mpool, self->tmpl, l) < 0) {
        return -1;
    }
    if (mst_get_protocol(l->h) != MST_PROTO_META && mst_set_protocol(l->h, MST_PROTO_META) != 0) {
        mst_destroy(&l->h);
        PyErr_SetString(PyExc_ValueError, "libmemstash refused the meta protocol");
        return -1;
    }
    return 0;
}

/* Sleeps ms milliseconds without the GIL. */
static void sleep_nogil(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    PyThreadState *ts_py = PyEval_SaveThread();
    while (nanosleep(&ts, &ts) != 0) {
    }
    PyEval_RestoreThread(ts_py);
}

struct lease_op {
    const char *key;
    size_t nkey;
    uint32_t lease_ttl;
    uint32_t recache_below;
    int rc;
    enum mst_lease state;
    struct mst_value val;
};

/* key_prepare for the lease calls, which refuse (hash, key) tuple keys: a
 * lease is found by the key alone. */
static int lease_key_prepare(Client *self, PyObject *key, const char *method, struct keyinfo *ki,
                             PyObject **holder)
{
    if (key_prepare(self, key, ki, holder) < 0) {
        return -1;
    }
    if (ki->hash) {
        PyErr_Format(PyExc_TypeError, "%s() does not take (hash, key) tuple keys", method);
        Py_CLEAR(*holder);
        return -1;
    }
    return 0;
}

static PyObject *Client_cached(Client *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    static const char *const names[] = {"key",        "loader",       "time", "min_compress_len",
                                        "lease_time", "recache_below"};
    PyObject *a[6];
    if (parse_args("cached", args, nargs, kwnames, names, 6, 2, a) < 0) {
        return NULL;
    }
    PyObject *loader = a[1];
    if (!PyCallable_Check(loader)) {
        PyErr_SetString(PyExc_TypeError, "cached() loader must be callable");
        return NULL;
    }
    unsigned long lease_ttl = 30, recache = 0;
    if (a[4] && a[4] != Py_None) {
        lease_ttl = PyLong_AsUnsignedLong(a[4]);
        if (PyErr_Occurred() || lease_ttl == 0 || lease_ttl > INT32_MAX) {
            PyErr_Clear();
            PyErr_SetString(PyExc_ValueError, "lease_time must be 1..2**31-1 seconds");
            return NULL;
        }
    }
    if (a[5] && a[5] != Py_None) {
        recache = PyLong_AsUnsignedLong(a[5]);
        if (PyErr_Occurred() || recache > INT32_MAX) {
            PyErr_Clear();
            PyErr_SetString(PyExc_ValueError, "recache_below must be 0..2**31-1 seconds");
            return NULL;
        }
    }
    int32_t exptime;
    bool in_range;
    if (exptime_of(a[2], &exptime, &in_range) < 0) {
        return NULL;
    }
    if (!in_range) {
        PyErr_SetString(PyExc_ValueError, "time is out of range");
        return NULL;
    }
    struct keyinfo ki;
    PyObject *holder;
    if (lease_key_prepare(self, a[0], "cached", &ki, &holder) < 0) {
        return NULL;
    }
    PyObject *result = NULL;
    if (ki.too_long) {
        result = PyObject_CallNoArgs(loader);
        goto out;
    }
    struct lease_op op = {.key = ki.p,
                          .nkey = (size_t)ki.n,
                          .lease_ttl = (uint32_t)lease_ttl,
                          .recache_below = (uint32_t)recache};
    /* A loser waits for the winner at most the lease's lifetime (plus a second). */
    double deadline = now_mono() + (double)lease_ttl + 1.0;
    unsigned backoff_ms = 1;
    for (;;) {
        struct lease l;
        if (meta_take(self, &l) < 0) {
            goto out;
        }
        {
            PyThreadState *ts = PyEval_SaveThread();
            op.rc = mst_lease_get(l.h, op.key, op.nkey, op.lease_ttl, op.recache_below, &op.val,
                                  &op.state);
            PyEval_RestoreThread(ts);
        }
        lease_give(self, &l);
        if (op.rc != MST_OK) {
            /* No server (or no meta): compute, as a miss with the cache down would. */
            mst_value_clear(&op.val);
            result = PyObject_CallNoArgs(loader);
            goto out;
        }
        if (op.state == MST_LEASE_HIT || op.state == MST_LEASE_STALE) {
            result = decode_value(self, op.val.data, op.val.len, op.val.flags);
            mst_value_clear(&op.val);
            goto out;
        }
        if (op.state == MST_LEASE_WON) {
            break;
        }
        /* MST_LEASE_WAIT: someone else computes it; re-read after a bounded backoff. */
        mst_value_clear(&op.val);
        if (now_mono() >= deadline) {
            result = PyObject_CallNoArgs(loader);
            goto out;
        }
        sleep_nogil(backoff_ms);
        backoff_ms = backoff_ms * 2 > 50 ? 50 : backoff_ms * 2;
    }
    /* This caller won the lease: compute and store. */
    uint64_t token = op.val.cas;
    bool placeholder = op.val.data == NULL;
    mst_value_clear(&op.val);
    PyObject *value = PyObject_CallNoArgs(loader);
    struct lease l;
    if (!value) {
        /* Let the next caller win instead of waiting out the lease. */
        if (placeholder) {
            PyObject *exc_type, *exc_val, *exc_tb;
            PyErr_Fetch(&exc_type, &exc_val, &exc_tb);
            if (meta_take(self, &l) == 0) {
                PyThreadState *ts = PyEval_SaveThread();
                (void)mst_delete(l.h, op.key, op.nkey, NULL);
                PyEval_RestoreThread(ts);
                lease_give(self, &l);
            } else {
                PyErr_Clear();
            }
            PyErr_Restore(exc_type, exc_val, exc_tb);
        }
        goto out;
    }
    struct encoded e;
    int enc = encode_value(self, value, a[3], &e);
    if (enc < 0) {
        Py_DECREF(value);
        goto out;
    }
    if (enc == 0 && e.len == 0 && e.flags == 0) {
        /*
         * b"" stored as 0 bytes with flags 0 would look like the lease's
         * placeholder to every reader: store it pickled instead.
         */
        encoded_clear(&e);
        PyObject *p = do_pickle(self, value);
        if (!p) {
            Py_DECREF(value);
            goto out;
        }
        e.owner = p;
        e.data = PyBytes_AS_STRING(p);
        e.len = PyBytes_GET_SIZE(p);
        e.flags = FLAG_PICKLE;
    }
    if (enc == 0) {
        if (meta_take(self, &l) < 0) {
            encoded_clear(&e);
            Py_DECREF(value);
            goto out;
        }
        PyThreadState *ts = PyEval_SaveThread();
        (void)mst_lease_set(l.h, op.key, op.nkey, e.data, (size_t)e.len, e.flags, exptime, token,
                            NULL);
        PyEval_RestoreThread(ts);
        lease_give(self, &l);
        encoded_clear(&e);
    }
    result = value;
out:
    Py_XDECREF(holder);
    return result;
}

static PyObject *Client_invalidate(Client *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames)
{
    static const char *const names[] = {"key", "stale_time"};
    PyObject *a[2];
    if (parse_args("invalidate", args, nargs, kwnames, names, 2, 1, a) < 0) {
        return NULL;
    }
    int32_t stale;
    bool in_range;
    if (exptime_of(a[1], &stale, &in_range) < 0) {
        return NULL;
    }
    struct keyinfo ki;
    PyObject *holder;
    if (lease_key_prepare(self, a[0], "invalidate", &ki, &holder) < 0) {
        return NULL;
    }
    PyObject *result = NULL;
    if (!in_range || ki.too_long) {
        result = PyLong_FromLong(0);
        goto out;
    }
    struct lease l;
    if (meta_take(self, &l) < 0) {
        goto out;
    }
    enum mst_outcome outcome = MST_NONE;
    int rc;
    {
        PyThreadState *ts = PyEval_SaveThread();
        rc = mst_lease_invalidate(l.h, ki.p, (size_t)ki.n, stale, &outcome);
        PyEval_RestoreThread(ts);
    }
    lease_give(self, &l);
    result = PyLong_FromLong(rc == MST_OK && outcome == MST_DELETED);
out:
    Py_XDECREF(holder);
    return result;
}

static PyObject *Client_delete(Client *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    static const char *const names[] = {"key", "time", "noreply"};
    PyObject *a[3];
    if (parse_args("delete", args, nargs, kwnames, names, 3, 1, a) < 0) {
        return NULL;
    }
    struct keyinfo ki;
    PyObject *holder;
    if (key_prepare(self, a[0], &ki, &holder) < 0) {
        return NULL;
    }
    statlog(self, S_delete);
    PyObject *result = NULL;
    int nr = truthy(a[2]);
    if (nr < 0) {
        goto out;
    }
    /*
     * python-memcached sends "delete <key> <time>"; memcached >= 1.4 (and
     * memstashd) accept only 0 there and answer CLIENT_ERROR otherwise, so
     * anything but None/0 deletes nothing and returns 0.
     */
    bool plain = !a[1] || a[1] == Py_None;
    if (!plain && PyLong_CheckExact(a[1])) {
        int overflow;
        plain = PyLong_AsLongLongAndOverflow(a[1], &overflow) == 0 && !overflow;
    }
    if (!plain || ki.too_long) {
        result = PyLong_FromLong(nr && !ki.too_long ? 1 : 0);
        goto out;
    }
    struct op op;
    op.kind = OP_DELETE;
    op.noreply = nr;
    if (client_exec(self, &ki, &op) < 0) {
        goto out;
    }
    result = PyLong_FromLong(op.rc == MST_OK ? 1 : 0);
out:
    Py_XDECREF(holder);
    return result;
}

static PyObject *Client_touch(Client *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    static const char *const names[] = {"key", "time", "noreply"};
    PyObject *a[3];
    if (parse_args("touch", args, nargs, kwnames, names, 3, 1, a) < 0) {
        return NULL;
    }
    struct keyinfo ki;
    PyObject *holder;
    if (key_prepare(self, a[0], &ki, &holder) < 0) {
        return NULL;
    }
    statlog(self, S_touch);
    PyObject *result = NULL;
    int nr = truthy(a[2]);
    if (nr < 0) {
        goto out;
    }
    struct op op;
    op.kind = OP_TOUCH;
    op.noreply = nr;
    op.exptime = 0;
    /* python-memcached sends str(time): only an integer is an exptime the server takes. */
    bool ok = true;
    if (a[1] && a[1] != Py_None) {
        if (PyLong_Check(a[1]) && !PyBool_Check(a[1])) {
            int overflow;
            long long v = PyLong_AsLongLongAndOverflow(a[1], &overflow);
            ok = !overflow && v >= INT32_MIN && v <= INT32_MAX;
            op.exptime = (int32_t)(ok ? v : 0);
        } else {
            ok = false;
        }
    } else if (a[1] == Py_None) {
        ok = false; /* "touch <key>" without an exptime: the server refuses it */
    }
    if (!ok || ki.too_long) {
        result = PyLong_FromLong(nr ? 1 : 0);
        goto out;
    }
    if (client_exec(self, &ki, &op) < 0) {
        goto out;
    }
    result = PyLong_FromLong(
        op.rc == MST_OK && (op.outcome == MST_TOUCHED || op.outcome == MST_NONE) ? 1 : 0);
out:
    Py_XDECREF(holder);
    return result;
}

/* python-memcached leaks int(b'<error line>')'s ValueError from incr/decr. */
static PyObject *raise_int_of_line(const char *line)
{
    PyObject *b = PyBytes_FromString(line);
    if (!b) {
        return NULL;
    }
    PyObject *r = PyNumber_Long(b);
    Py_DECREF(b);
    if (r) {
        /* Not reachable for an error line; keep the contract anyway. */
        return r;
    }
    return NULL;
}

static const char *error_line_of(const char *err)
{
    const char *p = strstr(err, "CLIENT_ERROR");
    if (!p) {
        p = strstr(err, "SERVER_ERROR");
    }
    if (!p) {
        p = strstr(err, "ERROR");
    }
    return p ? p : "ERROR";
}

/* Parses delta as the server would read str(delta); false if it would refuse it. */
static int delta_of(PyObject *o, uint64_t *out, bool *ok)
{
    *ok = false;
    if (PyLong_CheckExact(o)) {
        unsigned long long v = PyLong_AsUnsignedLongLong(o);
        if (v == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        *out = v;
        *ok = true;
        return 0;
    }
    PyObject *s = PyObject_Str(o);
    if (!s) {
        return -1;
    }
    Py_ssize_t n;
    const char *p = PyUnicode_AsUTF8AndSize(s, &n);
    if (!p) {
        Py_DECREF(s);
        return -1;
    }
    uint64_t v = 0;
    bool good = n > 0 && n <= 20;
    for (Py_ssize_t i = 0; good && i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            good = false;
            break;
        }
        uint64_t d = (uint64_t)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10) {
            good = false;
            break;
        }
        v = v * 10 + d;
    }
    Py_DECREF(s);
    *out = v;
    *ok = good;
    return 0;
}

static PyObject *do_arith(Client *self, enum opkind kind, PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames, const char *fname)
{
    static const char *const names[] = {"key", "delta", "noreply"};
    PyObject *a[3];
    if (parse_args(fname, args, nargs, kwnames, names, 3, 1, a) < 0) {
        return NULL;
    }
    struct keyinfo ki;
    PyObject *holder;
    if (key_prepare(self, a[0], &ki, &holder) < 0) {
        return NULL;
    }
    statlog(self, kind == OP_INCR ? S_incr : S_decr);
    PyObject *result = NULL;
    int nr = truthy(a[2]);
    if (nr < 0) {
        goto out;
    }
    struct op op;
    op.kind = kind;
    op.noreply = nr;
    op.delta = 1;
    bool ok = true;
    if (a[1] && delta_of(a[1], &op.delta, &ok) < 0) {
        goto out;
    }
    if (!ok || ki.too_long) {
        if (nr) {
            result = Py_None;
            Py_INCREF(result);
        } else {
            result = raise_int_of_line(ki.too_long ? "CLIENT_ERROR bad command line format"
                                                   : "CLIENT_ERROR invalid numeric delta argument");
        }
        goto out;
    }
    if (client_exec(self, &ki, &op) < 0) {
        goto out;
    }
    if (op.rc == MST_OK) {
        if (op.outcome == MST_STORED) {
            result = PyLong_FromUnsignedLongLong(op.number);
        } else {
            result = Py_None;
            Py_INCREF(result);
        }
    } else if (rc_is_reply(op.rc)) {
        result = raise_int_of_line(error_line_of(op.err));
    } else {
        result = Py_None;
        Py_INCREF(result);
    }
out:
    Py_XDECREF(holder);
    return result;
}

static PyObject *Client_incr(Client *self, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames)
{
    return do_arith(self, OP_INCR, args, nargs, kwnames, "incr");
}

static PyObject *Client_decr(Client *self, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames)
{
    return do_arith(self, OP_DECR, args, nargs, kwnames, "decr");
}

/* ---- Multi-key calls -------------------------------------------------- */

/* One key of a *_multi call. */
struct mkey {
    PyObject *wire; /* new ref: key_prefix + key, encoded */
    PyObject *orig; /* borrowed: the key reported back (key[1] for a tuple) */
    PyObject *item; /* borrowed: the item as iterated (a mapping key for set_multi) */
    PyObject *hash; /* borrowed: the tuple's hash, else NULL */
    bool skip;      /* longer than the protocol allows (checks off): never sent */
};

static void mkeys_free(struct mkey *v, Py_ssize_t n)
{
    if (!v) {
        return;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_XDECREF(v[i].wire);
    }
    PyMem_Free(v);
}

static PyObject *encode_prefix(PyObject *prefix)
{
    if (!prefix) {
        Py_INCREF(empty_bytes);
        return empty_bytes;
    }
    if (PyUnicode_Check(prefix)) {
        return PyUnicode_AsEncodedString(prefix, "utf-8", "strict");
    }
    if (PyBytes_Check(prefix)) {
        Py_INCREF(prefix);
        return prefix;
    }
    PyErr_Format(PyExc_TypeError, "key_prefix must be str or bytes, not %.200s",
                 Py_TYPE(prefix)->tp_name);
    return NULL;
}

/* A list or tuple of the items of o, with iter()'s error for a non-iterable. */
static PyObject *as_sequence(PyObject *o)
{
    if (PyList_CheckExact(o) || PyTuple_CheckExact(o)) {
        Py_INCREF(o);
        return o;
    }
    PyObject *it = PyObject_GetIter(o);
    if (!it) {
        return NULL;
    }
    PyObject *l = PySequence_List(it);
    Py_DECREF(it);
    return l;
}

/* The key as bytes: str encoded, bytes as is, anything else str(key) encoded. */
static PyObject *multi_key_bytes(PyObject *k)
{
    if (PyUnicode_Check(k)) {
        return PyUnicode_AsEncodedString(k, "utf-8", "strict");
    }
    if (PyBytes_Check(k)) {
        Py_INCREF(k);
        return k;
    }
    PyObject *s = PyObject_Str(k);
    if (!s) {
        return NULL;
    }
    PyObject *b = PyUnicode_AsEncodedString(s, "utf-8", "strict");
    Py_DECREF(s);
    return b;
}

/*
 * python-memcached's _map_and_prefix_keys: every key is checked before
 * anything is sent. seq is a list or tuple (PySequence_Fast) that keeps the
 * items alive.
 */
static int map_keys(Client *self, PyObject *seq, PyObject *prefix, struct mkey **out,
                    Py_ssize_t *nout)
{
    *out = NULL;
    *nout = 0;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    Py_ssize_t np = PyBytes_GET_SIZE(prefix);
    if (np && self->check_keys && check_bytes_key(self, prefix, 0) < 0) {
        return -1;
    }
    struct mkey *v = PyMem_Calloc((size_t)(n ? n : 1), sizeof(*v));
    if (!v) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = items[i];
        PyObject *k = item;
        v[i].item = item;
        if (PyTuple_Check(item)) {
            if (PyTuple_GET_SIZE(item) != 2) {
                PyErr_Format(PyExc_ValueError, PyTuple_GET_SIZE(item) > 2
                                                   ? "too many values to unpack (expected 2)"
                                                   : "not enough values to unpack (expected 2)");
                mkeys_free(v, i);
                return -1;
            }
            v[i].hash = PyTuple_GET_ITEM(item, 0);
            k = PyTuple_GET_ITEM(item, 1);
        }
        v[i].orig = k;
        if (k == Py_None) {
            PyErr_SetString(KeyNoneError, "Key is None");
            mkeys_free(v, i);
            return -1;
        }
        PyObject *kb = multi_key_bytes(k);
        if (!kb) {
            mkeys_free(v, i);
            return -1;
        }
        if (self->check_keys && check_bytes_key(self, kb, np) < 0) {
            Py_DECREF(kb);
            mkeys_free(v, i);
            return -1;
        }
        if (!self->check_keys && !key_chars_ok(PyBytes_AS_STRING(kb), PyBytes_GET_SIZE(kb)) &&
            !(np && PyBytes_GET_SIZE(kb) == 0)) {
            raise_char_error(kb, NULL, 0);
            Py_DECREF(kb);
            mkeys_free(v, i);
            return -1;
        }
        PyObject *wire;
        if (np) {
            wire = PyBytes_FromStringAndSize(NULL, np + PyBytes_GET_SIZE(kb));
            if (wire) {
                memcpy(PyBytes_AS_STRING(wire), PyBytes_AS_STRING(prefix), (size_t)np);
                memcpy(PyBytes_AS_STRING(wire) + np, PyBytes_AS_STRING(kb),
                       (size_t)PyBytes_GET_SIZE(kb));
            }
            Py_DECREF(kb);
        } else {
            wire = kb;
        }
        if (!wire) {
            mkeys_free(v, i);
            return -1;
        }
        v[i].wire = wire;
        v[i].skip = PyBytes_GET_SIZE(wire) > MST_KEY_MAX ||
                    !key_chars_ok(PyBytes_AS_STRING(wire), PyBytes_GET_SIZE(wire));
    }
    *out = v;
    *nout = n;
    return 0;
}

/* Hits of mst_get_multi(), collected without the GIL. */
struct hit {
    size_t koff, nkey, doff, len;
    uint32_t flags;
};

struct hits {
    struct hit *v;
    size_t n, cap;
    char *buf;
    size_t blen, bcap;
    bool oom;
};

static int hits_cb(void *arg, const char *key, size_t nkey, const char *data, size_t len,
                   uint32_t flags, uint64_t cas)
{
    (void)cas;
    struct hits *h = arg;
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        struct hit *v = realloc(h->v, cap * sizeof(*v));
        if (!v) {
            h->oom = true;
            return 1;
        }
        h->v = v;
        h->cap = cap;
    }
    if (h->bcap - h->blen < nkey + len) {
        size_t cap = h->bcap ? h->bcap : 4096;
        while (cap - h->blen < nkey + len) {
            cap *= 2;
        }
        char *b = realloc(h->buf, cap);
        if (!b) {
            h->oom = true;
            return 1;
        }
        h->buf = b;
        h->bcap = cap;
    }
    struct hit *x = &h->v[h->n++];
    x->koff = h->blen;
    x->nkey = nkey;
    memcpy(h->buf + h->blen, key, nkey);
    h->blen += nkey;
    x->doff = h->blen;
    x->len = len;
    memcpy(h->buf + h->blen, data, len);
    h->blen += len;
    x->flags = flags;
    return 0;
}

static PyObject *Client_get_multi(Client *self, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames)
{
    static const char *const names[] = {"keys", "key_prefix"};
    PyObject *a[2];
    if (parse_args("get_multi", args, nargs, kwnames, names, 2, 1, a) < 0) {
        return NULL;
    }
    statlog(self, S_get_multi);
    PyObject *prefix = encode_prefix(a[1]);
    if (!prefix) {
        return NULL;
    }
    PyObject *seq = as_sequence(a[0]);
    if (!seq) {
        Py_DECREF(prefix);
        return NULL;
    }
    struct mkey *mk;
    Py_ssize_t n;
    PyObject *result = NULL, *wire2orig = NULL;
    const char **kp = NULL;
    size_t *kl = NULL;
    struct hits hits = {0};
    if (map_keys(self, seq, prefix, &mk, &n) < 0) {
        goto out;
    }
    result = PyDict_New();
    wire2orig = PyDict_New();
    kp = PyMem_Malloc(sizeof(*kp) * (size_t)(n ? n : 1));
    kl = PyMem_Malloc(sizeof(*kl) * (size_t)(n ? n : 1));
    if (!result || !wire2orig || !kp || !kl) {
        Py_CLEAR(result);
        if (!PyErr_Occurred()) {
            PyErr_NoMemory();
        }
        goto out;
    }
    size_t nk = 0;
    bool tuple_route = self->dist == MST_DIST_PYTHON || self->dist == MST_DIST_PYTHON_NEW;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (mk[i].skip) {
            continue;
        }
        if (PyDict_SetItem(wire2orig, mk[i].wire, mk[i].orig) < 0) {
            Py_CLEAR(result);
            goto out;
        }
        if (mk[i].hash && tuple_route) {
            continue;
        }
        kp[nk] = PyBytes_AS_STRING(mk[i].wire);
        kl[nk] = (size_t)PyBytes_GET_SIZE(mk[i].wire);
        nk++;
    }
    if (nk) {
        struct lease l;
        if (lease_take(self, &self->pool, self->tmpl, &l) < 0) {
            Py_CLEAR(result);
            goto out;
        }
        {
            PyThreadState *ts = PyEval_SaveThread();
            mst_get_multi(l.h, kp, kl, nk, false, hits_cb, &hits);
            PyEval_RestoreThread(ts);
        }
        lease_give(self, &l);
        if (hits.oom) {
            Py_CLEAR(result);
            PyErr_NoMemory();
            goto out;
        }
    }
    for (size_t i = 0; i < hits.n; i++) {
        struct hit *x = &hits.v[i];
        PyObject *w = PyBytes_FromStringAndSize(hits.buf + x->koff, (Py_ssize_t)x->nkey);
        if (!w) {
            Py_CLEAR(result);
            goto out;
        }
        PyObject *orig = PyDict_GetItemWithError(wire2orig, w);
        Py_DECREF(w);
        if (!orig) {
            if (PyErr_Occurred()) {
                Py_CLEAR(result);
                goto out;
            }
            continue;
        }
        PyObject *val = decode_value(self, hits.buf + x->doff, x->len, x->flags);
        if (!val || PyDict_SetItem(result, orig, val) < 0) {
            Py_XDECREF(val);
            Py_CLEAR(result);
            goto out;
        }
        Py_DECREF(val);
    }
    /* Tuple keys go to the server their hash names, one at a time. */
    for (Py_ssize_t i = 0; tuple_route && i < n; i++) {
        if (!mk[i].hash || mk[i].skip) {
            continue;
        }
        struct keyinfo ki = {PyBytes_AS_STRING(mk[i].wire), PyBytes_GET_SIZE(mk[i].wire),
                             mk[i].hash, false};
        struct op op;
        op.kind = OP_GET;
        op.noreply = false;
        if (client_exec(self, &ki, &op) < 0) {
            Py_CLEAR(result);
            goto out;
        }
        if (op.rc == MST_OK && op.outcome == MST_HIT) {
            PyObject *val = decode_value(self, op.val.data, op.val.len, op.val.flags);
            mst_value_clear(&op.val);
            if (!val || PyDict_SetItem(result, mk[i].orig, val) < 0) {
                Py_XDECREF(val);
                Py_CLEAR(result);
                goto out;
            }
            Py_DECREF(val);
        }
        mst_value_clear(&op.val);
    }
out:
    free(hits.v);
    free(hits.buf);
    PyMem_Free(kp);
    PyMem_Free(kl);
    Py_XDECREF(wire2orig);
    mkeys_free(mk, n);
    Py_DECREF(seq);
    Py_DECREF(prefix);
    return result;
}

/* One value of set_multi, ready to send. */
struct mset {
    const char *key;
    size_t nkey;
    struct encoded e;
    Py_ssize_t idx; /* into the mkey array */
    int rc;
    enum mst_outcome outcome;
};

static PyObject *Client_set_multi(Client *self, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames)
{
    static const char *const names[] = {"mapping", "time", "key_prefix", "min_compress_len",
                                        "noreply"};
    PyObject *a[5];
    if (parse_args("set_multi", args, nargs, kwnames, names, 5, 1, a) < 0) {
        return NULL;
    }
    statlog(self, S_set_multi);
    PyObject *prefix = encode_prefix(a[2]);
    if (!prefix) {
        return NULL;
    }
    PyObject *seq = PyMapping_Keys(a[0]);
    if (!seq) {
        Py_DECREF(prefix);
        return NULL;
    }
    struct mkey *mk = NULL;
    Py_ssize_t n = 0;
    struct mset *ms = NULL;
    size_t nms = 0;
    PyObject *failed = NULL;
    if (map_keys(self, seq, prefix, &mk, &n) < 0) {
        goto out;
    }
    int32_t exptime;
    bool in_range;
    if (exptime_of(a[1], &exptime, &in_range) < 0) {
        goto out;
    }
    int nr = truthy(a[4]);
    if (nr < 0) {
        goto out;
    }
    failed = PyList_New(0);
    ms = PyMem_Calloc((size_t)(n ? n : 1), sizeof(*ms));
    if (!failed || !ms) {
        Py_CLEAR(failed);
        if (!PyErr_Occurred()) {
            PyErr_NoMemory();
        }
        goto out;
    }
    /* Values are encoded first: an encoding error raises before anything is sent. */
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *val = PyObject_GetItem(a[0], mk[i].item);
        if (!val) {
            Py_CLEAR(failed);
            goto out;
        }
        struct mset *m = &ms[nms];
        int enc = encode_value(self, val, a[3], &m->e);
        Py_DECREF(val);
        if (enc < 0) {
            Py_CLEAR(failed);
            goto out;
        }
        if (enc == 1 || mk[i].skip || !in_range) {
            if (enc == 0) {
                encoded_clear(&m->e);
            }
            if (PyList_Append(failed, mk[i].item) < 0) {
                Py_CLEAR(failed);
                goto out;
            }
            continue;
        }
        m->key = PyBytes_AS_STRING(mk[i].wire);
        m->nkey = (size_t)PyBytes_GET_SIZE(mk[i].wire);
        m->idx = i;
        nms++;
    }
    bool tuple_route = self->dist == MST_DIST_PYTHON || self->dist == MST_DIST_PYTHON_NEW;
    bool any_plain = false;
    for (size_t j = 0; j < nms; j++) {
        any_plain |= !(mk[ms[j].idx].hash && tuple_route);
    }
    if (any_plain) {
        struct lease l;
        if (lease_take(self, &self->pool, self->tmpl, &l) < 0) {
            Py_CLEAR(failed);
            goto out;
        }
        struct mst_item *items = PyMem_Malloc(nms * sizeof(*items));
        enum mst_outcome *outs = PyMem_Malloc(nms * sizeof(*outs));
        size_t *which = PyMem_Malloc(nms * sizeof(*which));
        if (!items || !outs || !which) {
            PyMem_Free(items);
            PyMem_Free(outs);
            PyMem_Free(which);
            lease_give(self, &l);
            Py_CLEAR(failed);
            PyErr_NoMemory();
            goto out;
        }
        size_t ni = 0;
        for (size_t j = 0; j < nms; j++) {
            if (mk[ms[j].idx].hash && tuple_route) {
                continue;
            }
            struct mset *m = &ms[j];
            items[ni] = (struct mst_item){m->key,           m->nkey,    m->e.data,
                                          (size_t)m->e.len, m->e.flags, exptime};
            which[ni++] = j;
        }
        {
            PyThreadState *ts = PyEval_SaveThread();
            if (nr) {
                mst_set_noreply(l.h, true);
            }
            /* All keys in one pipelined round; what it could not place (a server
             * failed: its keys fail over) is retried one by one. */
            int mrc = mst_set_multi(l.h, items, ni, outs, NULL);
            for (size_t k = 0; k < ni; k++) {
                struct mset *m = &ms[which[k]];
                if (nr ? mrc == MST_OK : (outs[k] == MST_STORED || outs[k] == MST_NOT_STORED)) {
                    m->rc = MST_OK;
                    m->outcome = outs[k];
                    continue;
                }
                m->rc = mst_set(l.h, m->key, m->nkey, m->e.data, (size_t)m->e.len, m->e.flags,
                                exptime, &m->outcome);
            }
            if (nr) {
                mst_set_noreply(l.h, false);
            }
            PyEval_RestoreThread(ts);
        }
        lease_give(self, &l);
        PyMem_Free(items);
        PyMem_Free(outs);
        PyMem_Free(which);
    }
    for (size_t j = 0; j < nms; j++) {
        struct mset *m = &ms[j];
        if (!(mk[m->idx].hash && tuple_route)) {
            continue;
        }
        struct keyinfo ki = {m->key, (Py_ssize_t)m->nkey, mk[m->idx].hash, false};
        struct op op;
        op.kind = OP_SET;
        op.noreply = nr;
        op.data = m->e.data;
        op.len = (size_t)m->e.len;
        op.flags = m->e.flags;
        op.exptime = exptime;
        if (client_exec(self, &ki, &op) < 0) {
            Py_CLEAR(failed);
            goto out;
        }
        m->rc = op.rc;
        m->outcome = op.outcome;
    }
    /* Every server gone: python-memcached reports every key. */
    bool none_reached = nms > 0;
    for (size_t j = 0; j < nms; j++) {
        if (ms[j].rc != MST_ENOSERVERS && ms[j].rc != MST_EDEAD) {
            none_reached = false;
        }
    }
    if (none_reached || (n > 0 && self->nbuckets == 0)) {
        Py_DECREF(failed);
        failed = PySequence_List(seq);
        goto out;
    }
    for (size_t j = 0; j < nms; j++) {
        struct mset *m = &ms[j];
        bool stored = m->rc == MST_OK && (m->outcome == MST_STORED || m->outcome == MST_NONE);
        if (!stored && PyList_Append(failed, mk[m->idx].item) < 0) {
            Py_CLEAR(failed);
            goto out;
        }
    }
out:
    if (ms) {
        for (size_t j = 0; j < nms; j++) {
            encoded_clear(&ms[j].e);
        }
        PyMem_Free(ms);
    }
    mkeys_free(mk, n);
    Py_DECREF(seq);
    Py_DECREF(prefix);
    return failed;
}

static PyObject *Client_delete_multi(Client *self, PyObject *const *args, Py_ssize_t nargs,
                                     PyObject *kwnames)
{
    static const char *const names[] = {"keys", "time", "key_prefix", "noreply"};
    PyObject *a[4];
    if (parse_args("delete_multi", args, nargs, kwnames, names, 4, 1, a) < 0) {
        return NULL;
    }
    statlog(self, S_delete_multi);
    PyObject *prefix = encode_prefix(a[2]);
    if (!prefix) {
        return NULL;
    }
    PyObject *seq = as_sequence(a[0]);
    if (!seq) {
        Py_DECREF(prefix);
        return NULL;
    }
    struct mkey *mk = NULL;
    Py_ssize_t n = 0;
    PyObject *result = NULL;
    const char **kp = NULL;
    size_t *kl = NULL;
    if (map_keys(self, seq, prefix, &mk, &n) < 0) {
        goto out;
    }
    int nr = truthy(a[3]);
    if (nr < 0) {
        goto out;
    }
    /* As delete(): a time other than None/0 makes the server refuse every delete. */
    bool plain = !a[1] || a[1] == Py_None;
    if (!plain && PyLong_CheckExact(a[1])) {
        int overflow;
        plain = PyLong_AsLongLongAndOverflow(a[1], &overflow) == 0 && !overflow;
    }
    if (!plain) {
        result = PyLong_FromLong(1);
        goto out;
    }
    kp = PyMem_Malloc(sizeof(*kp) * (size_t)(n ? n : 1));
    kl = PyMem_Malloc(sizeof(*kl) * (size_t)(n ? n : 1));
    if (!kp || !kl) {
        PyErr_NoMemory();
        goto out;
    }
    bool tuple_route = self->dist == MST_DIST_PYTHON || self->dist == MST_DIST_PYTHON_NEW;
    size_t nk = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (mk[i].skip || (mk[i].hash && tuple_route)) {
            continue;
        }
        kp[nk] = PyBytes_AS_STRING(mk[i].wire);
        kl[nk] = (size_t)PyBytes_GET_SIZE(mk[i].wire);
        nk++;
    }
    long rc = 1;
    if (nk) {
        struct lease l;
        if (lease_take(self, &self->pool, self->tmpl, &l) < 0) {
            goto out;
        }
        int st;
        {
            PyThreadState *ts = PyEval_SaveThread();
            if (nr) {
                mst_set_noreply(l.h, true);
            }
            st = mst_delete_multi(l.h, kp, kl, nk, NULL);
            if (nr) {
                mst_set_noreply(l.h, false);
            }
            PyEval_RestoreThread(ts);
        }
        lease_give(self, &l);
        /* No server for any key is not a communication failure (python-memcached: 1). */
        if (st != MST_OK && st != MST_ENOSERVERS && st != MST_EDEAD) {
            rc = 0;
        }
    }
    for (Py_ssize_t i = 0; tuple_route && i < n; i++) {
        if (!mk[i].hash || mk[i].skip) {
            continue;
        }
        struct keyinfo ki = {PyBytes_AS_STRING(mk[i].wire), PyBytes_GET_SIZE(mk[i].wire),
                             mk[i].hash, false};
        struct op op;
        op.kind = OP_DELETE;
        op.noreply = nr;
        if (client_exec(self, &ki, &op) < 0) {
            goto out;
        }
        if (op.rc != MST_OK && op.rc != MST_ENOSERVERS && !rc_is_reply(op.rc)) {
            rc = 0;
        }
    }
    result = PyLong_FromLong(rc);
out:
    PyMem_Free(kp);
    PyMem_Free(kl);
    mkeys_free(mk, n);
    Py_DECREF(seq);
    Py_DECREF(prefix);
    return result;
}

/* ---- Whole servers ---------------------------------------------------- */

/* STAT lines of one server, collected without the GIL. */
struct statbuf {
    char *buf;
    size_t len, cap;
    size_t *offs; /* name offset, name length, value offset, value length */
    size_t n, ncap;
    bool oom;
};

static int stat_cb(void *arg, size_t server, const char *name, size_t nname, const char *value,
                   size_t nvalue)
{
    (void)server;
    struct statbuf *s = arg;
    if (s->n + 4 > s->ncap) {
        size_t cap = s->ncap ? s->ncap * 2 : 256;
        size_t *o = realloc(s->offs, cap * sizeof(*o));
        if (!o) {
            s->oom = true;
            return 1;
        }
        s->offs = o;
        s->ncap = cap;
    }
    if (s->cap - s->len < nname + nvalue) {
        size_t cap = s->cap ? s->cap : 8192;
        while (cap - s->len < nname + nvalue) {
            cap *= 2;
        }
        char *b = realloc(s->buf, cap);
        if (!b) {
            s->oom = true;
            return 1;
        }
        s->buf = b;
        s->cap = cap;
    }
    s->offs[s->n++] = s->len;
    s->offs[s->n++] = nname;
    memcpy(s->buf + s->len, name, nname);
    s->len += nname;
    s->offs[s->n++] = s->len;
    s->offs[s->n++] = nvalue;
    memcpy(s->buf + s->len, value, nvalue);
    s->len += nvalue;
    return 0;
}

static PyObject *text_of(const char *p, size_t n)
{
    PyObject *s = PyUnicode_DecodeASCII(p, (Py_ssize_t)n, "strict");
    if (!s) {
        PyErr_Clear();
        s = PyUnicode_DecodeLatin1(p, (Py_ssize_t)n, NULL);
    }
    return s;
}

enum stats_shape { STATS_FLAT, STATS_SLABS, STATS_ITEMS };

/* Puts one STAT line into d in the shape of get_stats/get_slab_stats/get_slabs. */
static int stats_put(PyObject *d, enum stats_shape shape, const char *name, size_t nname,
                     const char *value, size_t nvalue)
{
    PyObject *v = text_of(value, nvalue);
    if (!v) {
        return -1;
    }
    const char *outer = NULL, *inner = name;
    size_t nouter = 0, ninner = nname;
    const char *c = memchr(name, ':', nname);
    if (shape == STATS_SLABS && c) {
        outer = name;
        nouter = (size_t)(c - name);
        inner = c + 1;
        ninner = nname - nouter - 1;
    } else if (shape == STATS_ITEMS && c) {
        /* items:<slab>:<field> */
        const char *c2 = memchr(c + 1, ':', nname - (size_t)(c + 1 - name));
        if (c2) {
            outer = c + 1;
            nouter = (size_t)(c2 - outer);
            inner = c2 + 1;
            ninner = nname - (size_t)(inner - name);
        }
    }
    PyObject *target = d;
    PyObject *sub = NULL;
    if (outer) {
        PyObject *ok = text_of(outer, nouter);
        if (!ok) {
            Py_DECREF(v);
            return -1;
        }
        sub = PyDict_GetItemWithError(d, ok);
        if (sub) {
            Py_INCREF(sub);
        } else if (!PyErr_Occurred()) {
            sub = PyDict_New();
            if (sub && PyDict_SetItem(d, ok, sub) < 0) {
                Py_CLEAR(sub);
            }
        }
        Py_DECREF(ok);
        if (!sub) {
            Py_DECREF(v);
            return -1;
        }
        target = sub;
    }
    PyObject *k = text_of(inner, ninner);
    int rc = k ? PyDict_SetItem(target, k, v) : -1;
    Py_XDECREF(k);
    Py_XDECREF(sub);
    Py_DECREF(v);
    return rc;
}

/* Is host hi dead now (python-memcached skips it without I/O)? */
static bool host_dead(Client *self, Py_ssize_t hi, struct mst *main)
{
    struct host *h = &self->hosts[hi];
    if (now_mono() < h->dead_until) {
        return true;
    }
    return h->first >= 0 && mst_server_is_dead(main, (size_t)h->first);
}

static PyObject *collect_stats(Client *self, const char *group, enum stats_shape shape)
{
    PyObject *out = PyList_New(0);
    if (!out) {
        return NULL;
    }
    unsigned long gen = self->gen;
    for (Py_ssize_t hi = 0; hi < self->nhosts && gen == self->gen; hi++) {
        struct host *host = &self->hosts[hi];
        struct lease l;
        bool on_main = host->first >= 0;
        if (lease_take(self, on_main ? &self->pool : &host->pool, on_main ? self->tmpl : host->tmpl,
                       &l) < 0) {
            Py_DECREF(out);
            return NULL;
        }
        if (host_dead(self, hi, l.h)) {
            lease_give(self, &l);
            continue;
        }
        size_t idx = on_main ? (size_t)host->first : 0;
        struct statbuf sb = {0};
        int rc;
        char err[320];
        {
            PyThreadState *ts = PyEval_SaveThread();
            rc = mst_stats(l.h, idx, group, stat_cb, &sb);
            snprintf(err, sizeof(err), "%s", rc == MST_OK ? "" : mst_last_error(l.h));
            PyEval_RestoreThread(ts);
        }
        lease_give(self, &l);
        if (gen != self->gen) {
            /* Another thread replaced the server list meanwhile (host is gone). */
            free(sb.buf);
            free(sb.offs);
            break;
        }
        if (rc != MST_OK && (rc_is_connect(rc, err) || rc == MST_ETIMEOUT || sb.n == 0)) {
            free(sb.buf);
            free(sb.offs);
            continue;
        }
        PyObject *d = PyDict_New();
        PyObject *pair = d ? PyTuple_Pack(2, host->name, d) : NULL;
        int bad = !pair || PyList_Append(out, pair) < 0 || sb.oom;
        for (size_t i = 0; !bad && i < sb.n; i += 4) {
            bad = stats_put(d, shape, sb.buf + sb.offs[i], sb.offs[i + 1], sb.buf + sb.offs[i + 2],
                            sb.offs[i + 3]) < 0;
        }
        Py_XDECREF(pair);
        Py_XDECREF(d);
        free(sb.buf);
        free(sb.offs);
        if (bad) {
            if (!PyErr_Occurred()) {
                PyErr_NoMemory();
            }
            Py_DECREF(out);
            return NULL;
        }
    }
    return out;
}

static PyObject *Client_get_stats(Client *self, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames)
{
    static const char *const names[] = {"stat_args"};
    PyObject *a[1];
    if (parse_args("get_stats", args, nargs, kwnames, names, 1, 0, a) < 0) {
        return NULL;
    }
    const char *group = NULL;
    if (a[0] && a[0] != Py_None) {
        int t = PyObject_IsTrue(a[0]);
        if (t < 0) {
            return NULL;
        }
        if (t) {
            if (!PyUnicode_Check(a[0])) {
                PyErr_Format(PyExc_TypeError, "can only concatenate str (not \"%.200s\") to str",
                             Py_TYPE(a[0])->tp_name);
                return NULL;
            }
            group = PyUnicode_AsUTF8(a[0]);
            if (!group) {
                return NULL;
            }
        }
    }
    return collect_stats(self, group, STATS_FLAT);
}

static PyObject *Client_get_slab_stats(Client *self, PyObject *unused)
{
    return collect_stats(self, "slabs", STATS_SLABS);
}

static PyObject *Client_get_slabs(Client *self, PyObject *unused)
{
    return collect_stats(self, "items", STATS_ITEMS);
}

static PyObject *Client_flush_all(Client *self, PyObject *unused)
{
    unsigned long gen = self->gen;
    for (Py_ssize_t hi = 0; hi < self->nhosts && gen == self->gen; hi++) {
        struct host *host = &self->hosts[hi];
        bool on_main = host->first >= 0;
        struct lease l;
        if (lease_take(self, on_main ? &self->pool : &host->pool, on_main ? self->tmpl : host->tmpl,
                       &l) < 0) {
            return NULL;
        }
        if (!host_dead(self, hi, l.h)) {
            size_t idx = on_main ? (size_t)host->first : 0;
            {
                PyThreadState *ts = PyEval_SaveThread();
                mst_flush_server(l.h, idx, 0);
                PyEval_RestoreThread(ts);
            }
        }
        lease_give(self, &l);
    }
    Py_RETURN_NONE;
}

/* ---- Servers ---------------------------------------------------------- */

static void hosts_free(Client *self)
{
    for (Py_ssize_t i = 0; i < self->nhosts; i++) {
        hpool_free(&self->hosts[i].pool);
        mst_destroy(&self->hosts[i].tmpl);
        Py_XDECREF(self->hosts[i].name);
    }
    PyMem_Free(self->hosts);
    self->hosts = NULL;
    self->nhosts = 0;
    PyMem_Free(self->buckets);
    self->buckets = NULL;
    self->nbuckets = 0;
    hpool_free(&self->pool);
    hpool_free(&self->mpool);
    mst_destroy(&self->tmpl);
}

/*
 * python-memcached's semantics on a libmemstash handle: its placement, one
 * failure marks a server dead for dead_retry seconds, socket_timeout bounds
 * connects and I/O, and the text protocol (python-memcached's, whose error
 * lines incr/decr hand back in their ValueError).
 */
static int configure(Client *self, struct mst *m)
{
    if (mst_set_distribution(m, self->dist) != MST_OK ||
        mst_set_connect_timeout(m, self->timeout_ms) != MST_OK ||
        mst_set_io_timeout(m, self->timeout_ms) != MST_OK ||
        mst_set_spin(m, self->spin_us) != MST_OK ||
        mst_set_retry_interval(m, self->retry_ms) != MST_OK ||
        mst_set_failure_limit(m, 1) != MST_OK || mst_set_failover(m, true) != MST_OK ||
        mst_set_protocol(m, MST_PROTO_TEXT) != MST_OK) {
        PyErr_SetString(PyExc_ValueError, "libmemstash refused an option");
        return -1;
    }
    return 0;
}

static int new_handle(Client *self, struct mst **out)
{
    *out = NULL;
    if (mst_create(out) != MST_OK) {
        PyErr_NoMemory();
        return -1;
    }
    if (configure(self, *out) < 0) {
        mst_destroy(out);
        return -1;
    }
    return 0;
}

static int add_server(struct mst *m, const char *spec, PyObject *orig)
{
    if (mst_server_add(m, spec) != MST_OK) {
        PyErr_Format(PyExc_ValueError, "Unable to parse connection string: \"%S\"", orig);
        return -1;
    }
    return 0;
}

/* Reads the timeouts from the attributes, as python-memcached's _Host does at set_servers. */
static int read_timeouts(Client *self)
{
    double dr = 30, st = 3;
    if (self->dead_retry && self->dead_retry != Py_None) {
        dr = PyFloat_AsDouble(self->dead_retry);
        if (dr == -1 && PyErr_Occurred()) {
            return -1;
        }
    }
    if (self->socket_timeout && self->socket_timeout != Py_None) {
        st = PyFloat_AsDouble(self->socket_timeout);
        if (st == -1 && PyErr_Occurred()) {
            return -1;
        }
    } else if (self->socket_timeout == Py_None) {
        st = 3600; /* blocking sockets: the longest timeout libmemstash takes */
    }
    if (dr < 0) {
        dr = 0;
    }
    if (dr > 3600) {
        dr = 3600;
    }
    if (st < 0.001) {
        st = 0.001;
    }
    if (st > 3600) {
        st = 3600;
    }
    self->dead_retry_s = dr;
    self->retry_ms = (unsigned)(dr * 1000);
    self->timeout_ms = (unsigned)(st * 1000);
    return 0;
}

static int set_servers(Client *self, PyObject *servers)
{
    if (read_timeouts(self) < 0) {
        return -1;
    }
    PyObject *parsed = PyObject_CallOneArg(helper_parse_servers, servers);
    if (!parsed) {
        return -1;
    }
    Py_ssize_t n = PyList_GET_SIZE(parsed);
    struct host *hosts = PyMem_Calloc((size_t)(n ? n : 1), sizeof(*hosts));
    PyObject *hostlist = PyList_New(n);
    struct mst *tmpl = NULL;
    uint32_t *buckets = NULL;
    size_t nbuckets = 0;
    if (!hosts || !hostlist || new_handle(self, &tmpl) < 0) {
        goto fail;
    }
    size_t total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PyList_GET_ITEM(parsed, i);
        Py_ssize_t nb = PyLong_AsSsize_t(PyTuple_GET_ITEM(t, 2));
        if (nb < 0 && PyErr_Occurred()) {
            goto fail;
        }
        total += (size_t)nb;
    }
    buckets = PyMem_Malloc(sizeof(*buckets) * (total ? total : 1));
    if (!buckets) {
        PyErr_NoMemory();
        goto fail;
    }
    size_t next = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PyList_GET_ITEM(parsed, i);
        PyObject *hostobj = PyTuple_GET_ITEM(t, 0);
        const char *spec = PyUnicode_AsUTF8(PyTuple_GET_ITEM(t, 1));
        Py_ssize_t nb = PyLong_AsSsize_t(PyTuple_GET_ITEM(t, 2));
        bool is_unix = PyObject_IsTrue(PyTuple_GET_ITEM(t, 4)) == 1;
        PyObject *orig = PyTuple_GET_ITEM(t, 5);
        if (!spec) {
            goto fail;
        }
        Py_INCREF(hostobj);
        PyList_SET_ITEM(hostlist, i, hostobj);
        struct host *h = &hosts[i];
        h->name = PyTuple_GET_ITEM(t, 3);
        Py_INCREF(h->name);
        h->first = -1;
        if (new_handle(self, &h->tmpl) < 0 || add_server(h->tmpl, spec, orig) < 0) {
            goto fail;
        }
        if (nb <= 0) {
            continue;
        }
        h->first = (long)next;
        if (is_unix) {
            /* A unix socket takes no weight in libmemstash: repeat it, which yields the
             * same bucket list. */
            for (Py_ssize_t w = 0; w < nb; w++) {
                if (add_server(tmpl, spec, orig) < 0) {
                    goto fail;
                }
                next++;
            }
        } else {
            char buf[600];
            snprintf(buf, sizeof(buf), "%s:%zd", spec, nb);
            if (add_server(tmpl, nb == 1 ? spec : buf, orig) < 0) {
                goto fail;
            }
            next++;
        }
        for (Py_ssize_t w = 0; w < nb; w++) {
            buckets[nbuckets++] = (uint32_t)i;
        }
    }
    Py_DECREF(parsed);
    hosts_free(self);
    self->hosts = hosts;
    self->nhosts = n;
    self->buckets = buckets;
    self->nbuckets = nbuckets;
    self->tmpl = tmpl;
    self->gen++;
    Py_XSETREF(self->servers, hostlist);
    return 0;
fail:
    if (hosts) {
        for (Py_ssize_t i = 0; i < n; i++) {
            mst_destroy(&hosts[i].tmpl);
            Py_XDECREF(hosts[i].name);
        }
        PyMem_Free(hosts);
    }
    PyMem_Free(buckets);
    mst_destroy(&tmpl);
    Py_XDECREF(hostlist);
    Py_DECREF(parsed);
    return -1;
}

static PyObject *Client_set_servers(Client *self, PyObject *servers)
{
    if (set_servers(self, servers) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* Drops every pooled handle: their connections close and their health is forgotten. */
static void reset_handles(Client *self)
{
    self->gen++;
    hpool_clear(&self->pool);
    hpool_clear(&self->mpool);
    for (Py_ssize_t i = 0; i < self->nhosts; i++) {
        hpool_clear(&self->hosts[i].pool);
    }
}

static PyObject *Client_forget_dead_hosts(Client *self, PyObject *unused)
{
    reset_handles(self);
    for (Py_ssize_t i = 0; i < self->nhosts; i++) {
        self->hosts[i].dead_until = 0;
    }
    Py_RETURN_NONE;
}

static PyObject *Client_disconnect_all(Client *self, PyObject *unused)
{
    reset_handles(self);
    Py_RETURN_NONE;
}

static PyObject *Client_debuglog(Client *self, PyObject *msg)
{
    debuglog(self, msg);
    Py_RETURN_NONE;
}

static PyObject *Client_reset_cas(Client *self, PyObject *unused)
{
    PyObject *d = PyDict_New();
    if (!d) {
        return NULL;
    }
    Py_XSETREF(self->cas_ids, d);
    if (self->cas_private) {
        PyDict_Clear(self->cas_private);
    }
    Py_RETURN_NONE;
}

static PyObject *Client_check_key(Client *self, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames)
{
    static const char *const names[] = {"key", "key_extra_len"};
    PyObject *a[2];
    if (parse_args("check_key", args, nargs, kwnames, names, 2, 1, a) < 0) {
        return NULL;
    }
    Py_ssize_t extra = 0;
    if (a[1]) {
        extra = PyLong_AsSsize_t(a[1]);
        if (extra == -1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    PyObject *key = a[0];
    if (PyTuple_Check(key) && PyTuple_GET_SIZE(key) >= 2) {
        key = PyTuple_GET_ITEM(key, 1);
    }
    if (PyUnicode_Check(key) && PyUnicode_GET_LENGTH(key) == 0) {
        if (extra == 0) {
            PyErr_SetString(KeyNoneError, "Key is empty");
            return NULL;
        }
        Py_RETURN_NONE;
    }
    if (check_bytes_key(self, key, extra) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ---- Attributes ------------------------------------------------------- */

static PyObject *get_max_key(Client *self, void *closure)
{
    return PyLong_FromSsize_t(self->max_key_len);
}

static int set_len_attr(PyObject *v, Py_ssize_t dflt, Py_ssize_t *out)
{
    if (!v) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete this attribute");
        return -1;
    }
    if (v == Py_None) {
        *out = dflt;
        return 0;
    }
    Py_ssize_t n = PyNumber_AsSsize_t(v, PyExc_OverflowError);
    if (n == -1 && PyErr_Occurred()) {
        return -1;
    }
    *out = n;
    return 0;
}

static int set_max_key(Client *self, PyObject *v, void *closure)
{
    return set_len_attr(v, SERVER_MAX_KEY_LENGTH, &self->max_key_len);
}

static PyObject *get_max_value(Client *self, void *closure)
{
    return PyLong_FromSsize_t(self->max_value_len);
}

static int set_max_value(Client *self, PyObject *v, void *closure)
{
    return set_len_attr(v, SERVER_MAX_VALUE_LENGTH, &self->max_value_len);
}

static int set_bool_attr(PyObject *v, bool *out)
{
    if (!v) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete this attribute");
        return -1;
    }
    int t = PyObject_IsTrue(v);
    if (t < 0) {
        return -1;
    }
    *out = t;
    return 0;
}

static PyObject *get_check_keys(Client *self, void *closure)
{
    return PyBool_FromLong(self->check_keys);
}

static int set_check_keys(Client *self, PyObject *v, void *closure)
{
    return set_bool_attr(v, &self->check_keys);
}

static PyObject *get_cache_cas(Client *self, void *closure)
{
    return PyBool_FromLong(self->cache_cas);
}

static int set_cache_cas(Client *self, PyObject *v, void *closure)
{
    return set_bool_attr(v, &self->cache_cas);
}

static PyObject *get_pickler_kw(Client *self, void *closure)
{
    return PyBool_FromLong(self->pickler_is_keyword);
}

static PyObject *get_buckets(Client *self, void *closure)
{
    PyObject *l = PyList_New((Py_ssize_t)self->nbuckets);
    if (!l || !self->servers) {
        return l;
    }
    for (size_t i = 0; i < self->nbuckets; i++) {
        PyObject *h = PyList_GetItem(self->servers, (Py_ssize_t)self->buckets[i]);
        if (!h) {
            Py_DECREF(l);
            return NULL;
        }
        Py_INCREF(h);
        PyList_SET_ITEM(l, (Py_ssize_t)i, h);
    }
    return l;
}

static PyObject *get_distribution(Client *self, void *closure)
{
    return PyUnicode_FromString(self->dist == MST_DIST_KETAMA ? "ketama" : "python");
}

static PyGetSetDef Client_getset[] = {
    {"server_max_key_length", (getter)get_max_key, (setter)set_max_key,
     "Longest key accepted (with key_prefix); 0 disables the check.", NULL},
    {"server_max_value_length", (getter)get_max_value, (setter)set_max_value,
     "Largest encoded value sent; 0 disables the check.", NULL},
    {"do_check_key", (getter)get_check_keys, (setter)set_check_keys,
     "check_keys: whether keys are checked (type, None, length, characters).", NULL},
    {"cache_cas", (getter)get_cache_cas, (setter)set_cache_cas,
     "Whether gets() records cas ids in cas_ids (python-memcached's cache_cas).", NULL},
    {"picklerIsKeyword", (getter)get_pickler_kw, NULL,
     "Whether the pickler takes protocol= as a keyword.", NULL},
    {"buckets", (getter)get_buckets, NULL,
     "python-memcached's bucket list: each server repeated weight times.", NULL},
    {"distribution", (getter)get_distribution, NULL,
     "Key placement: 'python' (python-memcached 1.59) or 'ketama'.", NULL},
    {NULL},
};

static PyMemberDef Client_members[] = {
    {"debug", T_OBJECT, offsetof(Client, debug), 0, "When true, debuglog() writes to stderr."},
    {"pickleProtocol", T_OBJECT, offsetof(Client, pickle_protocol), 0, "Pickle protocol."},
    {"pickler", T_OBJECT, offsetof(Client, pickler), 0, "Pickler class."},
    {"unpickler", T_OBJECT, offsetof(Client, unpickler), 0, "Unpickler class."},
    {"compressor", T_OBJECT, offsetof(Client, compressor), 0, "Compression function."},
    {"decompressor", T_OBJECT, offsetof(Client, decompressor), 0, "Decompression function."},
    {"persistent_load", T_OBJECT, offsetof(Client, persistent_load), 0,
     "Unpickler.persistent_load (pload)."},
    {"persistent_id", T_OBJECT, offsetof(Client, persistent_id), 0, "Pickler.persistent_id (pid)."},
    {"dead_retry", T_OBJECT, offsetof(Client, dead_retry), 0,
     "Seconds a failed server is skipped (read by set_servers)."},
    {"socket_timeout", T_OBJECT, offsetof(Client, socket_timeout), 0,
     "Connect and I/O timeout in seconds (read by set_servers)."},
    {"flush_on_reconnect", T_OBJECT, offsetof(Client, flush_on_reconnect), 0,
     "Accepted for compatibility; not acted on."},
    {"servers", T_OBJECT, offsetof(Client, servers), READONLY, "The servers (_Host objects)."},
    {"cas_ids", T_OBJECT, offsetof(Client, cas_ids), 0,
     "cache_cas=True: cas ids recorded by gets(), by encoded key."},
    {"stats", T_OBJECT, offsetof(Client, stats), 0, "Calls per command."},
    {NULL},
};

/* ---- Life cycle ------------------------------------------------------- */

static int Client_traverse(Client *self, visitproc visit, void *arg)
{
    Py_VISIT(self->dict);
    Py_VISIT(self->debug);
    Py_VISIT(self->pickle_protocol);
    Py_VISIT(self->pickler);
    Py_VISIT(self->unpickler);
    Py_VISIT(self->compressor);
    Py_VISIT(self->decompressor);
    Py_VISIT(self->persistent_load);
    Py_VISIT(self->persistent_id);
    Py_VISIT(self->dead_retry);
    Py_VISIT(self->socket_timeout);
    Py_VISIT(self->flush_on_reconnect);
    Py_VISIT(self->servers);
    Py_VISIT(self->cas_ids);
    Py_VISIT(self->cas_private);
    Py_VISIT(self->stats);
    for (Py_ssize_t i = 0; i < self->nhosts; i++) {
        Py_VISIT(self->hosts[i].name);
    }
    return 0;
}

static int Client_clear(Client *self)
{
    Py_CLEAR(self->dict);
    Py_CLEAR(self->debug);
    Py_CLEAR(self->pickle_protocol);
    Py_CLEAR(self->pickler);
    Py_CLEAR(self->unpickler);
    Py_CLEAR(self->compressor);
    Py_CLEAR(self->decompressor);
    Py_CLEAR(self->persistent_load);
    Py_CLEAR(self->persistent_id);
    Py_CLEAR(self->dead_retry);
    Py_CLEAR(self->socket_timeout);
    Py_CLEAR(self->flush_on_reconnect);
    Py_CLEAR(self->servers);
    Py_CLEAR(self->cas_ids);
    Py_CLEAR(self->cas_private);
    Py_CLEAR(self->stats);
    return 0;
}

static void Client_dealloc(Client *self)
{
    PyObject_GC_UnTrack(self);
    if (self->weakrefs) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    Client_clear(self);
    hosts_free(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Client_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Client *self = (Client *)type->tp_alloc(type, 0);
    if (!self) {
        return NULL;
    }
    self->dist = MST_DIST_PYTHON;
    self->max_key_len = SERVER_MAX_KEY_LENGTH;
    self->max_value_len = SERVER_MAX_VALUE_LENGTH;
    self->check_keys = true;
    self->timeout_ms = 3000;
    self->spin_us = 100;
    self->retry_ms = 30000;
    self->dead_retry_s = 30;
    return (PyObject *)self;
}

static void set_obj(PyObject **slot, PyObject *v)
{
    Py_XINCREF(v);
    Py_XSETREF(*slot, v);
}

static int Client_init(Client *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"servers",
                             "debug",
                             "pickleProtocol",
                             "pickler",
                             "unpickler",
                             "compressor",
                             "decompressor",
                             "pload",
                             "pid",
                             "server_max_key_length",
                             "server_max_value_length",
                             "dead_retry",
                             "socket_timeout",
                             "cache_cas",
                             "flush_on_reconnect",
                             "check_keys",
                             "distribution",
                             "spin_us",
                             NULL};
    PyObject *servers, *debug = NULL, *proto = NULL, *pickler = pickle_Pickler,
                       *unpickler = pickle_Unpickler, *compressor = zlib_compress,
                       *decompressor = zlib_decompress, *pload = Py_None, *pid = Py_None,
                       *mkl = Py_None, *mvl = Py_None, *dead_retry = NULL, *socket_timeout = NULL,
                       *cache_cas = Py_False, *flush = NULL, *check_keys = Py_True;
    const char *dist = "python";
    int spin_us = 100;
    if (!PyArg_ParseTupleAndKeywords(
            args, kwds, "O|OOOOOOOOOOOOOOO$si:Client", kwlist, &servers, &debug, &proto, &pickler,
            &unpickler, &compressor, &decompressor, &pload, &pid, &mkl, &mvl, &dead_retry,
            &socket_timeout, &cache_cas, &flush, &check_keys, &dist, &spin_us)) {
        return -1;
    }
    if (spin_us < 0 || spin_us > 10000) {
        PyErr_Format(PyExc_ValueError, "spin_us must be 0..10000, not %d", spin_us);
        return -1;
    }
    self->spin_us = (unsigned)spin_us;
    if (strcmp(dist, "python") == 0) {
        self->dist = MST_DIST_PYTHON;
    } else if (strcmp(dist, "ketama") == 0) {
        self->dist = MST_DIST_KETAMA;
    } else {
        PyErr_Format(PyExc_ValueError, "distribution must be 'python' or 'ketama', not '%s'", dist);
        return -1;
    }
    PyObject *zero = PyLong_FromLong(0);
    PyObject *dr = dead_retry ? (Py_INCREF(dead_retry), dead_retry) : PyLong_FromLong(30);
    PyObject *st =
        socket_timeout ? (Py_INCREF(socket_timeout), socket_timeout) : PyLong_FromLong(3);
    if (!zero || !dr || !st) {
        Py_XDECREF(zero);
        Py_XDECREF(dr);
        Py_XDECREF(st);
        return -1;
    }
    set_obj(&self->debug, debug ? debug : zero);
    Py_XSETREF(self->dead_retry, dr);
    Py_XSETREF(self->socket_timeout, st);
    set_obj(&self->flush_on_reconnect, flush ? flush : zero);
    if (set_servers(self, servers) < 0) {
        Py_DECREF(zero);
        return -1;
    }
    PyObject *stats = PyDict_New();
    PyObject *priv = PyDict_New();
    if (!stats || !priv) {
        Py_XDECREF(stats);
        Py_XDECREF(priv);
        Py_DECREF(zero);
        return -1;
    }
    Py_XSETREF(self->stats, stats);
    Py_XSETREF(self->cas_private, priv);
    PyObject *cas_ids = PyDict_New();
    int t = PyObject_IsTrue(cache_cas);
    if (t < 0 || !cas_ids) {
        Py_XDECREF(cas_ids);
        Py_DECREF(zero);
        return -1;
    }
    Py_XSETREF(self->cas_ids, cas_ids);
    self->cache_cas = t;
    t = PyObject_IsTrue(check_keys);
    if (t < 0) {
        Py_DECREF(zero);
        return -1;
    }
    self->check_keys = t;
    set_obj(&self->pickle_protocol, proto ? proto : zero);
    Py_DECREF(zero);
    set_obj(&self->pickler, pickler);
    set_obj(&self->unpickler, unpickler);
    set_obj(&self->compressor, compressor);
    set_obj(&self->decompressor, decompressor);
    set_obj(&self->persistent_load, pload);
    set_obj(&self->persistent_id, pid);
    if (set_len_attr(mkl, SERVER_MAX_KEY_LENGTH, &self->max_key_len) < 0 ||
        set_len_attr(mvl, SERVER_MAX_VALUE_LENGTH, &self->max_value_len) < 0) {
        return -1;
    }
    /* python-memcached's "figure out the pickler style". */
    PyObject *file = PyObject_CallNoArgs(io_BytesIO);
    if (!file) {
        return -1;
    }
    PyObject *kw = Py_BuildValue("{sO}", "protocol", self->pickle_protocol);
    PyObject *argt = kw ? PyTuple_Pack(1, file) : NULL;
    PyObject *p = argt ? PyObject_Call(self->pickler, argt, kw) : NULL;
    Py_XDECREF(argt);
    Py_XDECREF(kw);
    Py_DECREF(file);
    if (p) {
        self->pickler_is_keyword = true;
        Py_DECREF(p);
    } else if (PyErr_ExceptionMatches(PyExc_TypeError)) {
        PyErr_Clear();
        self->pickler_is_keyword = false;
    } else {
        return -1;
    }
    return 0;
}

/* ---- Method table ----------------------------------------------------- */

#define FASTKW(fn) (PyCFunction)(void (*)(void))(fn), METH_FASTCALL | METH_KEYWORDS

static PyMethodDef Client_methods[] = {
    {"set", FASTKW(Client_set),
     "set(key, val, time=0, min_compress_len=0, noreply=False)\n--\n\n"
     "Store val under key. True when stored, False when the server refused, 0 when no\n"
     "server was reached or the encoded value exceeds server_max_value_length."},
    {"add", FASTKW(Client_add),
     "add(key, val, time=0, min_compress_len=0, noreply=False)\n--\n\n"
     "Store only if key is absent. Returns as set()."},
    {"replace", FASTKW(Client_replace),
     "replace(key, val, time=0, min_compress_len=0, noreply=False)\n--\n\n"
     "Store only if key exists. Returns as set()."},
    {"append", FASTKW(Client_append),
     "append(key, val, time=0, min_compress_len=0, noreply=False)\n--\n\n"
     "Append the encoded val to the existing value. Returns as set()."},
    {"prepend", FASTKW(Client_prepend),
     "prepend(key, val, time=0, min_compress_len=0, noreply=False)\n--\n\n"
     "Prepend the encoded val to the existing value. Returns as set()."},
    {"cas", FASTKW(Client_cas),
     "cas(key, val, time=0, min_compress_len=0, noreply=False)\n--\n\n"
     "Check and set: store only if key did not change since gets(key). Without a cas\n"
     "id for the key this is a plain set(), as in python-memcached. Returns as set()."},
    {"cached", FASTKW(Client_cached),
     "cached(key, loader, time=0, min_compress_len=0, lease_time=30, recache_below=0)\n--\n\n"
     "Cache-aside in one call: the value under key, or loader() stored with expiry time.\n"
     "On a miss only one caller (across threads, processes and hosts) runs loader(): it\n"
     "wins a lease (meta protocol mg N/W/Z); the others get the stale value while it is\n"
     "recomputed (after invalidate(), or once fewer than recache_below seconds of its\n"
     "expiry remain), or wait with a bounded backoff (at most lease_time seconds) and\n"
     "re-read. Values are encoded as set() encodes them. If no server answers, loader()\n"
     "is called and its result returned without storing."},
    {"invalidate", FASTKW(Client_invalidate),
     "invalidate(key, stale_time=0)\n--\n\n"
     "Mark key stale instead of deleting it (meta md I): the next cached() call\n"
     "recomputes it while the others keep getting the old value. stale_time (0: keep)\n"
     "bounds how long the stale item lives. 1 when marked, else 0."},
    {"get", FASTKW(Client_get), "get(key)\n--\n\nThe value stored under key, or None."},
    {"gets", FASTKW(Client_gets),
     "gets(key)\n--\n\nAs get(), remembering the item's cas id for cas()."},
    {"get_multi", FASTKW(Client_get_multi),
     "get_multi(keys, key_prefix='')\n--\n\n"
     "A dict of the keys found (as passed, without key_prefix); one request per server,\n"
     "all servers at once."},
    {"set_multi", FASTKW(Client_set_multi),
     "set_multi(mapping, time=0, key_prefix='', min_compress_len=0, noreply=False)\n--\n\n"
     "Store every item of mapping; returns the list of keys that were not stored."},
    {"delete", FASTKW(Client_delete),
     "delete(key, time=None, noreply=False)\n--\n\n"
     "Delete key: 1 when the server answered (deleted or not found), else 0."},
    {"delete_multi", FASTKW(Client_delete_multi),
     "delete_multi(keys, time=None, key_prefix='', noreply=False)\n--\n\n"
     "Delete every key: 1 unless a server failed, else 0."},
    {"incr", FASTKW(Client_incr),
     "incr(key, delta=1, noreply=False)\n--\n\n"
     "Add delta to a decimal value: the new value, or None if key is missing.\n"
     "ValueError for a non-numeric value or a bad delta, as python-memcached."},
    {"decr", FASTKW(Client_decr),
     "decr(key, delta=1, noreply=False)\n--\n\n"
     "Subtract delta (floored at 0): the new value, or None if key is missing."},
    {"touch", FASTKW(Client_touch),
     "touch(key, time=0, noreply=False)\n--\n\n"
     "Set key's expiry: 1 when touched, else 0."},
    {"flush_all", (PyCFunction)Client_flush_all, METH_NOARGS,
     "flush_all()\n--\n\nInvalidate every item on every reachable server."},
    {"get_stats", FASTKW(Client_get_stats),
     "get_stats(stat_args=None)\n--\n\n"
     "[(\"host:port (weight)\", {name: value}), ...] for the reachable servers."},
    {"get_slab_stats", (PyCFunction)Client_get_slab_stats, METH_NOARGS,
     "get_slab_stats()\n--\n\n"
     "[(server, {slab_id: {field: value}, 'active_slabs': .., 'total_malloced': ..})]."},
    {"get_slabs", (PyCFunction)Client_get_slabs, METH_NOARGS,
     "get_slabs()\n--\n\n[(server, {slab_id: {field: value}})] from 'stats items'."},
    {"set_servers", (PyCFunction)Client_set_servers, METH_O,
     "set_servers(servers)\n--\n\n"
     "Replace the server list: 'host:port', ('host:port', weight), 'unix:/path',\n"
     "'inet6:[::1]:port'."},
    {"forget_dead_hosts", (PyCFunction)Client_forget_dead_hosts, METH_NOARGS,
     "forget_dead_hosts()\n--\n\nMark every server alive again."},
    {"disconnect_all", (PyCFunction)Client_disconnect_all, METH_NOARGS,
     "disconnect_all()\n--\n\nClose every connection (they reopen on the next call)."},
    {"debuglog", (PyCFunction)Client_debuglog, METH_O,
     "debuglog(str)\n--\n\nWrite 'MemCached: str' to stderr when debug is set."},
    {"reset_cas", (PyCFunction)Client_reset_cas, METH_NOARGS,
     "reset_cas()\n--\n\nForget every remembered cas id."},
    {"check_key", FASTKW(Client_check_key),
     "check_key(key, key_extra_len=0)\n--\n\n"
     "Raise a MemcachedKeyError subclass if key (bytes) is not a valid key."},
    {NULL},
};

static PyTypeObject ClientType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "memstash.Client",
    .tp_basicsize = sizeof(Client),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Client(servers, debug=0, pickleProtocol=0, pickler=pickle.Pickler, "
              "unpickler=pickle.Unpickler, compressor=zlib.compress, "
              "decompressor=zlib.decompress, pload=None, pid=None, "
              "server_max_key_length=None, server_max_value_length=None, dead_retry=30, "
              "socket_timeout=3, cache_cas=False, flush_on_reconnect=0, check_keys=True, *, "
              "distribution='python', spin_us=100)\n--\n\n"
              "A pool of memcached servers, used exactly as python-memcached's memcache.Client.\n"
              "spin_us: longest time a call polls for a reply before sleeping (0 never);\n"
              "each connection keeps to whichever way of waiting has been faster.\n"
              "Unlike python-memcached's (a threading.local), one Client may be shared by\n"
              "threads: each call borrows a connection set from the Client's pool.",
    .tp_new = Client_new,
    .tp_init = (initproc)Client_init,
    .tp_dealloc = (destructor)Client_dealloc,
    .tp_traverse = (traverseproc)Client_traverse,
    .tp_clear = (inquiry)Client_clear,
    .tp_methods = Client_methods,
    .tp_members = Client_members,
    .tp_getset = Client_getset,
    .tp_dictoffset = offsetof(Client, dict),
    .tp_weaklistoffset = offsetof(Client, weakrefs),
};

/* ---- Module ----------------------------------------------------------- */

static PyObject *mod_cmemcache_hash(PyObject *mod, PyObject *key)
{
    Py_buffer b;
    if (PyObject_GetBuffer(key, &b, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    uint32_t h = cmemcache_hash(b.buf, (size_t)b.len);
    PyBuffer_Release(&b);
    return PyLong_FromUnsignedLong(h);
}

static PyObject *mod_use_old_hash(PyObject *mod, PyObject *unused)
{
    PyErr_SetString(PyExc_NotImplementedError,
                    "memstash places keys with python-memcached's cmemcache_hash only");
    return NULL;
}

static PyMethodDef module_methods[] = {
    {"cmemcache_hash", mod_cmemcache_hash, METH_O,
     "cmemcache_hash(key)\n--\n\npython-memcached 1.59's server hash of an encoded key."},
    {"useOldServerHashFunction", mod_use_old_hash, METH_NOARGS,
     "Not supported: raises NotImplementedError."},
    {NULL},
};

static struct PyModuleDef memstash_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "memstash",
    .m_doc = "memstash: a fast drop-in replacement for python-memcached's memcache module,\n"
             "built on libmemstash. `import memstash as memcache` is the whole migration.",
    .m_size = -1,
    .m_methods = module_methods,
};

static PyObject *import_attr(const char *module, const char *name)
{
    PyObject *m = PyImport_ImportModule(module);
    if (!m) {
        return NULL;
    }
    PyObject *a = PyObject_GetAttrString(m, name);
    Py_DECREF(m);
    return a;
}

static PyObject *new_exception(PyObject *mod, const char *name, PyObject *base)
{
    char full[128];
    snprintf(full, sizeof(full), "memstash.%s", name);
    PyObject *e = PyErr_NewException(full, base, NULL);
    if (!e) {
        return NULL;
    }
    PyObject *qual = PyUnicode_FromFormat("Client.%s", name);
    if (!qual || PyObject_SetAttrString(e, "__qualname__", qual) < 0 ||
        PyDict_SetItemString(ClientType.tp_dict, name, e) < 0 ||
        PyModule_AddObjectRef(mod, name, e) < 0) {
        Py_XDECREF(qual);
        Py_DECREF(e);
        return NULL;
    }
    Py_DECREF(qual);
    return e;
}

static int intern_all(void)
{
    struct {
        PyObject **slot;
        const char *s;
    } t[] = {
        {&str_dump, "dump"},
        {&str_load, "load"},
        {&str_getvalue, "getvalue"},
        {&str_persistent_id, "persistent_id"},
        {&str_persistent_load, "persistent_load"},
        {&str_protocol, "protocol"},
        {&str_write, "write"},
        {&S_set, "set"},
        {&S_add, "add"},
        {&S_replace, "replace"},
        {&S_append, "append"},
        {&S_prepend, "prepend"},
        {&S_cas, "cas"},
        {&S_get, "get"},
        {&S_gets, "gets"},
        {&S_delete, "delete"},
        {&S_touch, "touch"},
        {&S_incr, "incr"},
        {&S_decr, "decr"},
        {&S_get_multi, "get_multi"},
        {&S_set_multi, "set_multi"},
        {&S_delete_multi, "delete_multi"},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        *t[i].slot = PyUnicode_InternFromString(t[i].s);
        if (!*t[i].slot) {
            return -1;
        }
    }
    return 0;
}

PyMODINIT_FUNC PyInit_memstash(void);

PyMODINIT_FUNC PyInit_memstash(void)
{
    crc32_setup();
    if (intern_all() < 0) {
        return NULL;
    }
    empty_bytes = PyBytes_FromStringAndSize("", 0);
    pickle_Pickler = import_attr("pickle", "Pickler");
    pickle_Unpickler = import_attr("pickle", "Unpickler");
    pickle_dumps = import_attr("pickle", "dumps");
    pickle_loads = import_attr("pickle", "loads");
    zlib_compress = import_attr("zlib", "compress");
    zlib_decompress = import_attr("zlib", "decompress");
    io_BytesIO = import_attr("io", "BytesIO");
    if (!empty_bytes || !pickle_Pickler || !pickle_Unpickler || !pickle_dumps || !pickle_loads ||
        !zlib_compress || !zlib_decompress || !io_BytesIO) {
        return NULL;
    }
    if (PyType_Ready(&ClientType) < 0) {
        return NULL;
    }
    PyObject *mod = PyModule_Create(&memstash_module);
    if (!mod) {
        return NULL;
    }
    /* The Python helpers run in the module's namespace. */
    PyObject *globals = PyModule_GetDict(mod);
    if (PyDict_SetItemString(globals, "__builtins__", PyEval_GetBuiltins()) < 0) {
        goto fail;
    }
    PyObject *r = PyRun_String(HELPER_SOURCE, Py_file_input, globals, globals);
    if (!r) {
        goto fail;
    }
    Py_DECREF(r);
    helper_parse_servers = PyDict_GetItemString(globals, "_parse_servers");
    if (!helper_parse_servers) {
        PyErr_SetString(PyExc_ImportError, "memstash: helper missing");
        goto fail;
    }
    Py_INCREF(helper_parse_servers);
    KeyError_ = new_exception(mod, "MemcachedKeyError", PyExc_Exception);
    KeyLengthError = KeyError_ ? new_exception(mod, "MemcachedKeyLengthError", KeyError_) : NULL;
    KeyCharacterError =
        KeyError_ ? new_exception(mod, "MemcachedKeyCharacterError", KeyError_) : NULL;
    KeyNoneError = KeyError_ ? new_exception(mod, "MemcachedKeyNoneError", KeyError_) : NULL;
    KeyTypeError = KeyError_ ? new_exception(mod, "MemcachedKeyTypeError", KeyError_) : NULL;
    StringEncodingError = new_exception(mod, "MemcachedStringEncodingError", PyExc_Exception);
    if (!KeyLengthError || !KeyCharacterError || !KeyNoneError || !KeyTypeError ||
        !StringEncodingError) {
        goto fail;
    }
    struct {
        const char *name;
        long v;
    } consts[] = {
        {"_FLAG_PICKLE", FLAG_PICKLE}, {"_FLAG_INTEGER", FLAG_INTEGER},
        {"_FLAG_LONG", FLAG_LONG},     {"_FLAG_COMPRESSED", FLAG_COMPRESSED},
        {"_FLAG_TEXT", FLAG_TEXT},     {"_SERVER_RETRIES", SERVER_RETRIES},
    };
    for (size_t i = 0; i < sizeof(consts) / sizeof(consts[0]); i++) {
        PyObject *v = PyLong_FromLong(consts[i].v);
        if (!v || PyDict_SetItemString(ClientType.tp_dict, consts[i].name, v) < 0) {
            Py_XDECREF(v);
            goto fail;
        }
        Py_DECREF(v);
    }
    PyType_Modified(&ClientType);
    PyObject *hashfn = PyObject_GetAttrString(mod, "cmemcache_hash");
    if (!hashfn || PyModule_AddObject(mod, "serverHashFunction", hashfn) < 0) {
        Py_XDECREF(hashfn);
        goto fail;
    }
    if (PyModule_AddObjectRef(mod, "Client", (PyObject *)&ClientType) < 0 ||
        PyModule_AddIntConstant(mod, "SERVER_MAX_KEY_LENGTH", SERVER_MAX_KEY_LENGTH) < 0 ||
        PyModule_AddIntConstant(mod, "SERVER_MAX_VALUE_LENGTH", SERVER_MAX_VALUE_LENGTH) < 0 ||
        PyModule_AddIntConstant(mod, "_DEAD_RETRY", 30) < 0 ||
        PyModule_AddIntConstant(mod, "_SOCKET_TIMEOUT", 3) < 0 ||
        PyModule_AddStringConstant(mod, "__version__", mst_version_string()) < 0 ||
        PyModule_AddStringConstant(mod, "libmemstash_version", mst_version_string()) < 0) {
        goto fail;
    }
    return mod;
fail:
    Py_DECREF(mod);
    return NULL;
}

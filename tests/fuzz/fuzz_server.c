/*
 * fuzz_server.c - libFuzzer driver that runs request streams against a real
 * storage engine, in process.
 *
 * The server's connection code is tied to libevent and sockets, so this
 * driver stands in for it: a small process loop that frames the input the
 * way conn.c does (binary when the first byte is 0x80, else text and meta),
 * reads data blocks into items, and makes the storage calls the server's
 * handlers make (process.c, process_meta.c, process_binary.c), on a fresh
 * struct storage per input with a 2 MiB limit (two pages), so eviction,
 * page stealing, expiry and flushing all happen within a few KiB of input.
 * One liberty with the protocol: a data block of 4 KiB or more that the
 * input does not hold is synthesised (see fz_read_block), so that inputs
 * can store items big enough to fill pages. The clock is fake: it advances
 * one second per request, and the crawler runs (storage_maintain) after
 * every request.
 *
 * Checked, besides what the sanitizers see:
 *   - outcomes are ones the operation can give (a set is stored, a delete
 *     leaves nothing behind, a lookup miss is MISS/EXPIRED/FLUSHED);
 *   - a value just stored reads back as written (set, add, replace, cas,
 *     ms), an appended/prepended value ends/starts with the new bytes, and an
 *     incr/decr result reads back as that number;
 *   - hit items carry the key that was looked up;
 *   - items handed out are held across later requests, as a connection
 *     holds them until its reply is written, and their key and value bytes
 *     must not change while held (storage.h's reference contract);
 *   - every meta reply line fits META_HEADER_MAX;
 *   - at the end, with every reference released, storage_check() passes and
 *     the statistics add up.
 *
 * What this is not: a test of reply bytes or counters (the integration
 * suite compares those with memcached), nor of threads.
 */
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "binary.h"
#include "clock.h"
#include "fuzz_common.h"
#include "meta.h"
#include "numparse.h"
#include "storage.h"
#include "storage_int.h"
#include "text.h"

#define FZ_MAXBYTES   ((size_t)2 << 20)
#define FZ_MAX_REQS   1024
#define FZ_HOLD_MAX   24
#define FZ_HOLD_EVERY 8 /* requests between two "writes" that drop held items */
/* cache_memlimit is honoured up to this many MiB, to keep inputs cheap. */
#define FZ_MEMLIMIT_MAX_MB 16
/* Data blocks at least this long that the input lacks are synthesised. */
#define FZ_SYNTH_MIN 4096
/* Held values are fingerprinted over at most this many leading bytes. */
#define FZ_FP_MAX 8192
/* A fixed unix time for the fake clock's start. */
#define FZ_UNIX_START 1700000000

struct held {
    struct item *it;
    uint64_t fp; /* fingerprint of key and value bytes when handed out */
};

struct fz {
    struct storage *st;
    struct clock clk;
    const char *buf;
    size_t size;
    size_t off; /* next unread input byte */
    bool stop;  /* quit, close, or the input ended inside a data block */
    size_t limit_max;
    struct held held[FZ_HOLD_MAX];
    unsigned nheld;
};

static rel_time_t fz_now(const struct fz *f)
{
    return clock_now(&f->clk);
}

static uint64_t item_fp(struct item *it)
{
    uint64_t h = fuzz_hash(storage_item_key(it), storage_item_nkey(it));
    size_t n = storage_item_nbytes(it);
    const char *v = storage_item_value(it);
    h ^= fuzz_hash(v, n < FZ_FP_MAX ? n : FZ_FP_MAX) * 31;
    if (n >= 2) {
        h ^= fuzz_hash(v + n - 2, 2) * 7;
    }
    return h ^ (uint64_t)n;
}

/* A hit: the key looked up, then held like a queued reply. */
static void fz_hold(struct fz *f, struct item *it, const char *key, size_t nkey)
{
    FUZZ_CHECK(storage_item_nkey(it) == nkey);
    FUZZ_CHECK(memcmp(storage_item_key(it), key, nkey) == 0);
    size_t n = storage_item_nbytes(it);
    FUZZ_CHECK(storage_item_class(f->st, it) >= 1 &&
               storage_item_class(f->st, it) <= storage_class_count(f->st));
    FUZZ_CHECK(storage_item_total(it) >= n + nkey);
    if (f->nheld == FZ_HOLD_MAX) {
        struct held *h = &f->held[0];
        FUZZ_CHECK(item_fp(h->it) == h->fp);
        storage_release(f->st, &h->it);
        memmove(&f->held[0], &f->held[1], (FZ_HOLD_MAX - 1) * sizeof(f->held[0]));
        f->nheld--;
    }
    f->held[f->nheld].it = it;
    f->held[f->nheld].fp = item_fp(it);
    f->nheld++;
}

/* The connection wrote its replies: held items are released. */
static void fz_release_held(struct fz *f)
{
    for (unsigned i = 0; i < f->nheld; i++) {
        FUZZ_CHECK(item_fp(f->held[i].it) == f->held[i].fp);
        storage_release(f->st, &f->held[i].it);
        FUZZ_CHECK(f->held[i].it == NULL);
    }
    f->nheld = 0;
}

/* Skips n input bytes (a refused data block). */
static void fz_skip(struct fz *f, uint64_t n)
{
    size_t left = f->size - f->off;
    if (n >= left) {
        f->off = f->size;
    } else {
        f->off += (size_t)n;
    }
}

/*
 * Reads a data block of n bytes (terminated: n counts a "\r\n" the input must
 * carry) into the item's value and, for that "\r\n", into tail (items do
 * not store it, as the server reads it into struct conn_ext). A block of FZ_SYNTH_MIN value bytes
 * or more that the input does not hold is synthesised instead and nothing is consumed: inputs are a
 * few KiB, and this is how they reach items big enough to fill pages, evict and steal. Any other
 * short block releases the item and stops the stream (a client that disconnects mid-value) and
 * returns false.
 */
static bool fz_read_block(struct fz *f, struct item **it, size_t n, bool terminated, char tail[2])
{
    size_t left = f->size - f->off;
    char *v = storage_item_value(*it);
    size_t nbytes = storage_item_nbytes(*it);
    if (left < n && nbytes >= FZ_SYNTH_MIN) {
        memset(v, 'A' + (int)(nbytes % 26), nbytes);
        memcpy(tail, "\r\n", 2);
        return true;
    }
    if (left < n) {
        memcpy(v, f->buf + f->off, left < nbytes ? left : nbytes);
        storage_release(f->st, it);
        f->off = f->size;
        f->stop = true;
        return false;
    }
    memcpy(v, f->buf + f->off, nbytes);
    if (terminated) {
        memcpy(tail, f->buf + f->off + nbytes, 2);
    }
    f->off += n;
    return true;
}

/* An exptime as the engine keeps it (see STORAGE_EXPTIME_MAX). */
static rel_time_t fz_exp(rel_time_t exptime)
{
    return exptime > STORAGE_EXPTIME_MAX ? STORAGE_EXPTIME_MAX : exptime;
}

static void check_miss(struct item *it, enum storage_get_outcome why)
{
    FUZZ_CHECK(it == NULL);
    FUZZ_CHECK(why == STORAGE_MISS || why == STORAGE_EXPIRED || why == STORAGE_FLUSHED);
}

/* After a store: the value reads back (or the item is already dead). */
static void check_stored(struct fz *f, const char *key, size_t nkey, enum storage_op op,
                         const char *val, size_t nval, uint32_t flags, uint64_t cas)
{
    enum storage_get_outcome why = STORAGE_HIT;
    uint64_t hv = storage_hash(key, nkey);
    struct item *it = storage_get(f->st, key, nkey, hv, fz_now(f), &why);
    if (it == NULL) {
        /* Stored with a past exptime, or under a flush point reached now. */
        FUZZ_CHECK(why == STORAGE_EXPIRED || why == STORAGE_FLUSHED);
        return;
    }
    FUZZ_CHECK(why == STORAGE_HIT);
    const char *v = storage_item_value(it);
    size_t n = storage_item_nbytes(it);
    if (op == STORAGE_APPEND) {
        FUZZ_CHECK(n >= nval && memcmp(v + n - nval, val, nval) == 0);
    } else if (op == STORAGE_PREPEND) {
        FUZZ_CHECK(n >= nval && memcmp(v, val, nval) == 0);
    } else {
        FUZZ_CHECK(n == nval && memcmp(v, val, nval) == 0);
        FUZZ_CHECK(storage_item_flags(it) == flags);
    }
    FUZZ_CHECK(storage_item_cas(it) == cas);
    fz_hold(f, it, key, nkey);
}

/* After incr/decr: the item holds the number, maybe padded with spaces. */
static void check_number(struct fz *f, const char *key, size_t nkey, uint64_t value)
{
    enum storage_get_outcome why = STORAGE_HIT;
    struct item *it = storage_get(f->st, key, nkey, storage_hash(key, nkey), fz_now(f), &why);
    if (it == NULL) {
        FUZZ_CHECK(why == STORAGE_EXPIRED || why == STORAGE_FLUSHED);
        return;
    }
    const char *v = storage_item_value(it);
    size_t n = storage_item_nbytes(it);
    char digits[24];
    size_t nd = num_format_u64(digits, value);
    FUZZ_CHECK(n >= nd && memcmp(v, digits, nd) == 0);
    for (size_t i = nd; i < n; i++) {
        FUZZ_CHECK(v[i] == ' ');
    }
    fz_hold(f, it, key, nkey);
}

static void fz_stats(struct fz *f)
{
    struct storage_stats s;
    storage_get_stats(f->st, fz_now(f), &s);
    uint64_t items = 0, bytes = 0, pages = 0;
    for (unsigned id = 1; id <= storage_class_count(f->st); id++) {
        struct storage_class_stats c;
        FUZZ_CHECK(storage_get_class_stats(f->st, id, fz_now(f), &c));
        FUZZ_CHECK(c.used_chunks + c.free_chunks == c.total_chunks);
        FUZZ_CHECK(c.number <= c.used_chunks);
        items += c.number;
        bytes += c.mem_requested;
        pages += c.total_pages;
    }
    FUZZ_CHECK(items == s.curr_items && bytes == s.bytes);
    FUZZ_CHECK(s.total_malloced <= f->limit_max);
    /* Classes are reporting rows over shared segments: each rounds its own
     * bytes up to pages, so only the bytes are bounded by the segments. */
    FUZZ_CHECK(s.bytes <= s.total_malloced || s.curr_items == 0);
    FUZZ_CHECK(pages >= (s.bytes + STORAGE_PAGE_SIZE - 1) / STORAGE_PAGE_SIZE);
    FUZZ_CHECK(!storage_get_class_stats(f->st, 0, fz_now(f), &(struct storage_class_stats){0}));
}

/* ---- text -------------------------------------------------------------- */

static void text_get(struct fz *f, const struct text_request *req)
{
    bool touch = req->cmd == TEXT_CMD_GAT || req->cmd == TEXT_CMD_GATS;
    rel_time_t exp = clock_realtime(&f->clk, req->exptime);
    const char *p = req->keys;
    const char *end = req->keys + req->keys_len;
    struct text_token key;
    while (text_next_token(&p, end, &key)) {
        uint64_t hv = storage_hash(key.p, key.len);
        enum storage_get_outcome why = STORAGE_HIT;
        struct item *it = touch ? storage_get_touch(f->st, key.p, key.len, hv, fz_now(f), exp, &why)
                                : storage_get(f->st, key.p, key.len, hv, fz_now(f), &why);
        if (it == NULL) {
            check_miss(it, why);
            continue;
        }
        FUZZ_CHECK(why == STORAGE_HIT);
        if (touch) {
            FUZZ_CHECK(storage_item_exptime(it) == fz_exp(exp));
        }
        char hdr[TEXT_VALUE_HEADER_MAX];
        size_t n = text_compose_value(hdr, storage_item_key(it), storage_item_nkey(it),
                                      storage_item_flags(it), storage_item_nbytes(it), true,
                                      storage_item_cas(it));
        FUZZ_CHECK(n <= sizeof(hdr));
        fz_hold(f, it, key.p, key.len);
    }
}

static enum storage_op text_store_op(enum text_cmd cmd)
{
    switch (cmd) {
    case TEXT_CMD_ADD:
        return STORAGE_ADD;
    case TEXT_CMD_REPLACE:
        return STORAGE_REPLACE;
    case TEXT_CMD_APPEND:
        return STORAGE_APPEND;
    case TEXT_CMD_PREPEND:
        return STORAGE_PREPEND;
    case TEXT_CMD_CAS:
        return STORAGE_CAS;
    default:
        return STORAGE_SET;
    }
}

static void check_store_outcome(enum storage_op op, int rc, enum storage_store_outcome out)
{
    FUZZ_CHECK(rc == 0 || rc == STORAGE_ENOMEM || rc == STORAGE_E2BIG);
    if (rc != 0) {
        return;
    }
    switch (op) {
    case STORAGE_SET:
        FUZZ_CHECK(out == STORAGE_STORED);
        break;
    case STORAGE_ADD:
    case STORAGE_REPLACE:
    case STORAGE_APPEND:
    case STORAGE_PREPEND:
        FUZZ_CHECK(out == STORAGE_STORED || out == STORAGE_NOT_STORED ||
                   (out == STORAGE_EXISTS && op != STORAGE_ADD && op != STORAGE_REPLACE));
        break;
    case STORAGE_CAS:
        FUZZ_CHECK(out == STORAGE_STORED || out == STORAGE_EXISTS || out == STORAGE_NOT_FOUND);
        break;
    }
}

/*
 * A storage command: allocate, read the block, store. flags/exptime are the
 * item's; is_set drops the old value when allocation fails (ops_alloc).
 * terminated says whether the block carries "\r\n" in the input (text) or
 * the driver adds it (binary).
 */
static void do_update(struct fz *f, const char *key, size_t nkey, uint32_t flags,
                      rel_time_t exptime, size_t nbytes, bool terminated, enum storage_op op,
                      uint64_t cas_in, bool is_set)
{
    uint64_t hv = storage_hash(key, nkey);
    size_t block = nbytes + (terminated ? 2 : 0);
    struct item *it = NULL;
    int rc = STORAGE_E2BIG;
    if (storage_item_size_ok(f->st, nkey, nbytes)) {
        rc = storage_alloc(f->st, key, nkey, flags, exptime, nbytes, fz_now(f), &it);
    }
    if (rc != 0) {
        FUZZ_CHECK(it == NULL && (rc == STORAGE_E2BIG || rc == STORAGE_ENOMEM));
        if (is_set) {
            bool found = false, mismatch = false;
            storage_delete(f->st, key, nkey, hv, 0, fz_now(f), &found, &mismatch, NULL);
            FUZZ_CHECK(!mismatch);
        }
        fz_skip(f, terminated ? block : (uint64_t)bin_swallow_len((uint32_t)nbytes));
        return;
    }
    FUZZ_CHECK(storage_item_nbytes(it) == nbytes && storage_item_nkey(it) == nkey);
    FUZZ_CHECK(storage_item_flags(it) == flags && storage_item_exptime(it) == fz_exp(exptime));
    char tail[2] = {'\r', '\n'};
    if (!fz_read_block(f, &it, block, terminated, tail)) {
        return;
    }
    char *v = storage_item_value(it);
    if (tail[0] != '\r' || tail[1] != '\n') {
        /* "bad data chunk". */
        storage_release(f->st, &it);
        return;
    }
    enum storage_store_outcome out = STORAGE_NOT_STORED;
    uint64_t cas = 0;
    rc = storage_store(f->st, it, op, cas_in, hv, fz_now(f), &out, &cas);
    check_store_outcome(op, rc, out);
    /* The value to compare with: the caller's reference keeps it in place. */
    if (rc == 0 && out == STORAGE_STORED) {
        FUZZ_CHECK(cas != 0);
        check_stored(f, key, nkey, op, v, nbytes, flags, cas);
    }
    storage_release(f->st, &it);
}

static void text_arith(struct fz *f, const char *key, size_t nkey, const struct storage_arith *a)
{
    enum storage_arith_outcome out = STORAGE_ARITH_NOT_FOUND;
    uint64_t value = 0, cas = 0;
    unsigned cls = 0;
    int rc = storage_arith(f->st, key, nkey, storage_hash(key, nkey), a, fz_now(f), &out, &value,
                           &cas, &cls);
    FUZZ_CHECK(rc == 0 || rc == STORAGE_ENOMEM || rc == STORAGE_E2BIG);
    if (rc != 0) {
        return;
    }
    FUZZ_CHECK(cls <= storage_class_count(f->st));
    if (out == STORAGE_ARITH_OK) {
        check_number(f, key, nkey, value);
    } else {
        FUZZ_CHECK(out == STORAGE_ARITH_NOT_FOUND || out == STORAGE_ARITH_NON_NUMERIC ||
                   (out == STORAGE_ARITH_EXISTS && a->cas_in != 0));
        FUZZ_CHECK(out != STORAGE_ARITH_NOT_FOUND || !a->create);
    }
}

static void fz_delete(struct fz *f, const char *key, size_t nkey, uint64_t cas_in)
{
    bool found = false, mismatch = false;
    unsigned cls = 0;
    uint64_t hv = storage_hash(key, nkey);
    FUZZ_CHECK(storage_delete(f->st, key, nkey, hv, cas_in, fz_now(f), &found, &mismatch, &cls) ==
               0);
    FUZZ_CHECK(!mismatch || (found && cas_in != 0));
    enum storage_get_outcome why = STORAGE_HIT;
    struct item *it = storage_get(f->st, key, nkey, hv, fz_now(f), &why);
    if (found && !mismatch) {
        FUZZ_CHECK(cls >= 1);
        FUZZ_CHECK(it == NULL && why == STORAGE_MISS);
    } else if (it != NULL) {
        fz_hold(f, it, key, nkey);
    }
}

static void fz_flush(struct fz *f, int64_t exptime)
{
    rel_time_t now = fz_now(f);
    rel_time_t when = exptime > 0 ? clock_realtime(&f->clk, exptime) : now;
    storage_flush(f->st, when, now);
}

static void fz_memlimit(struct fz *f, uint64_t mb)
{
    if (mb < 8) {
        return;
    }
    if (mb > FZ_MEMLIMIT_MAX_MB) {
        mb = FZ_MEMLIMIT_MAX_MB;
    }
    size_t bytes = (size_t)mb << 20;
    FUZZ_CHECK(storage_set_memlimit(f->st, bytes) == 0);
    if (bytes > f->limit_max) {
        f->limit_max = bytes;
    }
}

/* ---- meta -------------------------------------------------------------- */

static int64_t ttl_of(rel_time_t exptime, rel_time_t now)
{
    return exptime == 0 ? -1 : (int64_t)(uint32_t)(exptime - now);
}

static void meta_reply(const struct meta_request *req, enum meta_rc rc,
                       const struct meta_item_facts *facts)
{
    char buf[META_HEADER_MAX];
    size_t n = meta_compose(buf, sizeof(buf), req, rc, facts);
    FUZZ_CHECK(n >= 4 && buf[n - 1] == '\n');
}

/* The T, N and R flags in request order, cut at O when the reply is an error. */
static void flag_order(const struct meta_request *req, char *out)
{
    size_t n = 0;
    for (unsigned i = 0; i < req->norder; i++) {
        char c = req->order[i];
        if (req->err_after_exec && c == 'O') {
            break;
        }
        if (c == 'T' || c == 'N' || c == 'R') {
            out[n++] = c;
        }
    }
    out[n] = '\0';
}

static void meta_mg(struct fz *f, const struct meta_request *req)
{
    rel_time_t now = fz_now(f);
    char order[META_MAX_TOKENS + 1];
    flag_order(req, order);
    struct storage_mget_opts o = {
        .no_bump = meta_has_flag(req, 'u'),
        .vivify = meta_has_flag(req, 'N'),
        .vivify_ttl = clock_realtime(&f->clk, req->vivify_ttl),
        .touch = meta_has_flag(req, 'T'),
        .touch_ttl = clock_realtime(&f->clk, req->ttl),
        .recache = meta_has_flag(req, 'R'),
        .recache_at = clock_realtime(&f->clk, req->recache_ttl),
        .order = order,
        .no_win = req->err_after_exec,
    };
    struct storage_mget_result r;
    struct item *it = NULL;
    uint64_t hv = storage_hash(req->key.p, req->key.len);
    int rc = storage_meta_get(f->st, req->key.p, req->key.len, hv, now, &o, &r, &it);
    FUZZ_CHECK(rc == 0 || (rc == STORAGE_ENOMEM && it == NULL && o.vivify));
    if (it == NULL) {
        FUZZ_CHECK(!r.created && r.outcome != STORAGE_HIT);
        if (!req->err_after_exec) {
            meta_reply(req, META_RC_EN, NULL);
        }
        return;
    }
    FUZZ_CHECK(r.outcome == STORAGE_HIT && (!r.created || o.vivify));
    FUZZ_CHECK(!(r.win && req->err_after_exec));
    if (r.created) {
        FUZZ_CHECK(storage_item_nbytes(it) == 0 && storage_item_flags(it) == 0);
    }
    struct meta_item_facts facts = {
        .value_len = (uint32_t)storage_item_nbytes(it),
        .client_flags = storage_item_flags(it),
        .cas = storage_item_cas(it),
        .ttl = ttl_of(r.exptime, now),
        .ttl_after_t = ttl_of(o.touch_ttl, now),
        .ttl_after_n = ttl_of(o.vivify_ttl, now),
        .last_access = (uint32_t)(now - r.time),
        .fetched = r.fetched,
        .created = r.created,
        .stale = r.stale,
        .token_sent = r.token_sent,
        .win = r.win,
        .key = storage_item_key(it),
        .nkey = storage_item_nkey(it),
        .key_binary = storage_item_key_binary(it),
    };
    if (!req->err_after_exec) {
        meta_reply(req, meta_has_flag(req, 'v') ? META_RC_VA : META_RC_HD, &facts);
    }
    fz_hold(f, it, req->key.p, req->key.len);
}

static enum storage_op meta_store_op(enum meta_store_op op)
{
    switch (op) {
    case META_STORE_ADD:
        return STORAGE_ADD;
    case META_STORE_REPLACE:
        return STORAGE_REPLACE;
    case META_STORE_APPEND:
        return STORAGE_APPEND;
    case META_STORE_PREPEND:
        return STORAGE_PREPEND;
    case META_STORE_CAS:
        return STORAGE_CAS;
    default:
        return STORAGE_SET;
    }
}

static void meta_ms(struct fz *f, const struct meta_request *req)
{
    rel_time_t now = fz_now(f);
    uint64_t hv = storage_hash(req->key.p, req->key.len);
    struct item *it = NULL;
    int rc = STORAGE_E2BIG;
    if (storage_item_size_ok(f->st, req->key.len, req->data_len)) {
        rc = storage_alloc(f->st, req->key.p, req->key.len, req->client_flags,
                           clock_realtime(&f->clk, req->ttl), req->data_len, now, &it);
    }
    if (rc != 0) {
        FUZZ_CHECK(rc == STORAGE_E2BIG || rc == STORAGE_ENOMEM);
        bool found, mismatch;
        storage_delete(f->st, req->key.p, req->key.len, hv, 0, now, &found, &mismatch, NULL);
        fz_skip(f, req->read_len);
        return;
    }
    if (req->key_binary) {
        storage_item_set_key_binary(it);
    }
    char tail[2];
    if (!fz_read_block(f, &it, req->read_len, true, tail)) {
        return;
    }
    const char *v = storage_item_value(it);
    if (!meta_data_ok(tail, sizeof(tail))) {
        storage_release(f->st, &it);
        return;
    }
    enum storage_op op = meta_store_op(req->store_op);
    struct storage_mstore_result r;
    rc = storage_meta_store(f->st, it, op, req->cas, req->invalidate, hv, now, &r);
    FUZZ_CHECK(rc == 0 || rc == STORAGE_ENOMEM || rc == STORAGE_E2BIG);
    if (rc == 0) {
        FUZZ_CHECK(r.outcome >= STORAGE_STORED && r.outcome <= STORAGE_NOT_FOUND);
        FUZZ_CHECK((r.outcome == STORAGE_STORED) == (r.cas != 0));
        FUZZ_CHECK(!r.stale || req->invalidate);
        FUZZ_CHECK(op != STORAGE_SET || r.outcome == STORAGE_STORED);
    }
    struct meta_item_facts facts = {.cas = r.cas};
    enum meta_rc mrc = rc != 0                          ? META_RC_NS
                       : r.outcome == STORAGE_STORED    ? META_RC_HD
                       : r.outcome == STORAGE_EXISTS    ? META_RC_EX
                       : r.outcome == STORAGE_NOT_FOUND ? META_RC_NF
                                                        : META_RC_NS;
    meta_reply(req, mrc, &facts);
    if (rc == 0 && r.outcome == STORAGE_STORED) {
        check_stored(f, req->key.p, req->key.len, op, v, req->data_len, req->client_flags, r.cas);
    }
    storage_release(f->st, &it);
}

static void meta_md(struct fz *f, const struct meta_request *req)
{
    struct storage_mdelete_opts o = {
        .has_cas = meta_has_flag(req, 'C'),
        .cas_in = req->cas,
        .invalidate = meta_has_flag(req, 'I'),
        .touch = meta_has_flag(req, 'T'),
        .touch_ttl = clock_realtime(&f->clk, req->ttl),
    };
    struct storage_mdelete_result r;
    uint64_t hv = storage_hash(req->key.p, req->key.len);
    FUZZ_CHECK(storage_meta_delete(f->st, req->key.p, req->key.len, hv, fz_now(f), &o, &r) == 0);
    enum meta_rc rc = META_RC_HD;
    switch (r.outcome) {
    case STORAGE_MDEL_DELETED: {
        enum storage_get_outcome why = STORAGE_HIT;
        struct item *it = storage_get(f->st, req->key.p, req->key.len, hv, fz_now(f), &why);
        FUZZ_CHECK(it == NULL && why == STORAGE_MISS);
        break;
    }
    case STORAGE_MDEL_INVALIDATED:
        FUZZ_CHECK(o.invalidate);
        break;
    case STORAGE_MDEL_NOT_FOUND:
        rc = META_RC_NF;
        break;
    case STORAGE_MDEL_EXISTS:
        FUZZ_CHECK(o.has_cas);
        rc = META_RC_EX;
        break;
    default:
        FUZZ_CHECK(!"unknown mdelete outcome");
    }
    meta_reply(req, rc, NULL);
}

static void meta_ma(struct fz *f, const struct meta_request *req)
{
    rel_time_t now = fz_now(f);
    char order[META_MAX_TOKENS + 1];
    flag_order(req, order);
    struct storage_marith_opts o = {
        .a =
            {
                .incr = req->incr,
                .delta = req->delta,
                .cas_in = req->cas,
                .create = meta_has_flag(req, 'N'),
                .initial = req->initial,
            },
        .touch = meta_has_flag(req, 'T'),
        .touch_ttl = clock_realtime(&f->clk, req->ttl),
        .vivify_ttl = clock_realtime(&f->clk, req->vivify_ttl),
        .order = order,
    };
    struct storage_marith_result r;
    uint64_t hv = storage_hash(req->key.p, req->key.len);
    int rc = storage_meta_arith(f->st, req->key.p, req->key.len, hv, now, &o, &r);
    FUZZ_CHECK(rc == 0 || rc == STORAGE_ENOMEM || rc == STORAGE_E2BIG);
    if (rc != 0 || r.outcome != STORAGE_ARITH_OK) {
        FUZZ_CHECK(!r.created);
        if (rc == 0 && !req->err_after_exec && r.outcome != STORAGE_ARITH_NON_NUMERIC) {
            meta_reply(req, r.outcome == STORAGE_ARITH_NOT_FOUND ? META_RC_NF : META_RC_EX, NULL);
        }
        return;
    }
    FUZZ_CHECK(!r.created || (o.a.create && r.value == req->initial));
    if (!req->err_after_exec) {
        char digits[24];
        struct meta_item_facts facts = {
            .value_len = (uint32_t)num_format_u64(digits, r.value),
            .cas = r.cas,
            .ttl = ttl_of(r.exptime, now),
            .ttl_after_t = ttl_of(o.touch_ttl, now),
            .ttl_after_n = ttl_of(o.vivify_ttl, now),
            .created = r.created,
        };
        meta_reply(req, meta_has_flag(req, 'v') ? META_RC_VA : META_RC_HD, &facts);
    }
    check_number(f, req->key.p, req->key.len, r.value);
}

static void meta_me(struct fz *f, const struct meta_request *req)
{
    rel_time_t now = fz_now(f);
    struct storage_mget_opts o = {.no_bump = true, .no_win = true};
    struct storage_mget_result r;
    struct item *it = NULL;
    uint64_t hv = storage_hash(req->key.p, req->key.len);
    FUZZ_CHECK(storage_meta_get(f->st, req->key.p, req->key.len, hv, now, &o, &r, &it) == 0);
    if (it == NULL) {
        return;
    }
    FUZZ_CHECK(!r.win && !r.created);
    struct meta_me_facts facts = {
        .key = storage_item_key(it),
        .nkey = storage_item_nkey(it),
        .key_binary = storage_item_key_binary(it),
        .ttl = r.exptime == 0 ? -1 : (int64_t)r.exptime - (int64_t)now,
        .last_access = (uint32_t)(now - r.time),
        .cas = storage_item_cas(it),
        .fetched = r.fetched,
        .slab_class = storage_item_class(f->st, it),
        .total_size = storage_item_total(it),
    };
    char buf[META_HEADER_MAX];
    size_t n = meta_compose_me(buf, sizeof(buf), &facts);
    FUZZ_CHECK(n > 0 && buf[n - 1] == '\n');
    storage_release(f->st, &it);
}

static void text_meta(struct fz *f, const struct text_request *treq)
{
    struct meta_request req;
    char keybuf[META_KEYBUF_SIZE];
    if (meta_parse(treq, keybuf, &req) != 0 && !req.err_after_exec) {
        if (req.cmd == META_CMD_MS && req.swallow) {
            fz_skip(f, req.read_len);
        }
        return;
    }
    switch (req.cmd) {
    case META_CMD_MG:
        meta_mg(f, &req);
        break;
    case META_CMD_MS:
        meta_ms(f, &req);
        break;
    case META_CMD_MD:
        meta_md(f, &req);
        break;
    case META_CMD_MA:
        meta_ma(f, &req);
        break;
    case META_CMD_ME:
        meta_me(f, &req);
        break;
    default:
        break;
    }
}

static void text_one(struct fz *f, const struct text_request *req)
{
    switch (req->cmd) {
    case TEXT_CMD_GET:
    case TEXT_CMD_GETS:
    case TEXT_CMD_GAT:
    case TEXT_CMD_GATS:
        text_get(f, req);
        break;
    case TEXT_CMD_SET:
    case TEXT_CMD_ADD:
    case TEXT_CMD_REPLACE:
    case TEXT_CMD_APPEND:
    case TEXT_CMD_PREPEND:
    case TEXT_CMD_CAS:
        do_update(f, req->key.p, req->key.len, req->flags, clock_realtime(&f->clk, req->exptime),
                  req->bytes, true, text_store_op(req->cmd), req->cas, req->cmd == TEXT_CMD_SET);
        break;
    case TEXT_CMD_DELETE:
        fz_delete(f, req->key.p, req->key.len, 0);
        break;
    case TEXT_CMD_INCR:
    case TEXT_CMD_DECR: {
        struct storage_arith a = {.incr = req->cmd == TEXT_CMD_INCR, .delta = req->delta};
        text_arith(f, req->key.p, req->key.len, &a);
        break;
    }
    case TEXT_CMD_TOUCH: {
        rel_time_t exp = clock_realtime(&f->clk, req->exptime);
        enum storage_get_outcome why = STORAGE_HIT;
        struct item *it =
            storage_get_touch(f->st, req->key.p, req->key.len,
                              storage_hash(req->key.p, req->key.len), fz_now(f), exp, &why);
        if (it != NULL) {
            FUZZ_CHECK(storage_item_exptime(it) == fz_exp(exp));
            storage_release(f->st, &it);
        } else {
            check_miss(it, why);
        }
        break;
    }
    case TEXT_CMD_STATS:
        fz_stats(f);
        break;
    case TEXT_CMD_FLUSH_ALL:
        fz_flush(f, req->exptime);
        break;
    case TEXT_CMD_CACHE_MEMLIMIT:
        fz_memlimit(f, req->delta);
        break;
    case TEXT_CMD_QUIT:
    case TEXT_CMD_SHUTDOWN:
        f->stop = true;
        break;
    case TEXT_CMD_META:
        text_meta(f, req);
        break;
    default:
        break;
    }
}

/* One text request; false when the stream cannot go on. */
static bool text_step(struct fz *f)
{
    struct text_request req;
    size_t used = 0;
    enum text_status st = text_parse(f->buf + f->off, f->size - f->off, &req, &used);
    if (st != TEXT_OK) {
        return false;
    }
    f->off += used;
    text_one(f, &req);
    return true;
}

/* ---- binary ------------------------------------------------------------ */

static void bin_get(struct fz *f, const struct bin_request *req)
{
    bool touch = req->cmd == BIN_OP_TOUCH || req->cmd == BIN_OP_GAT || req->cmd == BIN_OP_GATK;
    rel_time_t exp = clock_realtime(&f->clk, (int64_t)req->exptime);
    uint64_t hv = storage_hash(req->key.p, req->key.len);
    enum storage_get_outcome why = STORAGE_HIT;
    struct item *it =
        touch ? storage_get_touch(f->st, req->key.p, req->key.len, hv, fz_now(f), exp, &why)
              : storage_get(f->st, req->key.p, req->key.len, hv, fz_now(f), &why);
    if (it == NULL) {
        check_miss(it, why);
        char buf[BIN_HEADER_LEN + BIN_KEY_MAX];
        FUZZ_CHECK(bin_compose_key_miss(buf, req->hdr.opcode, req->hdr.opaque, req->key.p,
                                        req->key.len) <= sizeof(buf));
        return;
    }
    char hdr[BIN_ITEM_HEADER_MAX];
    size_t n =
        bin_compose_item(hdr, req->hdr.opcode, req->hdr.opaque, storage_item_cas(it),
                         storage_item_flags(it), req->return_key ? req->key.p : NULL,
                         req->return_key ? req->key.len : 0, (uint32_t)storage_item_nbytes(it));
    FUZZ_CHECK(n <= sizeof(hdr));
    fz_hold(f, it, req->key.p, req->key.len);
}

static enum storage_op bin_store_op(uint8_t cmd, uint64_t cas)
{
    if (cmd == BIN_OP_APPEND) {
        return STORAGE_APPEND;
    }
    if (cmd == BIN_OP_PREPEND) {
        return STORAGE_PREPEND;
    }
    if (cas != 0) {
        return STORAGE_CAS;
    }
    return cmd == BIN_OP_ADD ? STORAGE_ADD : cmd == BIN_OP_REPLACE ? STORAGE_REPLACE : STORAGE_SET;
}

static void bin_one(struct fz *f, const struct bin_request *req)
{
    switch (req->cmd) {
    case BIN_OP_GET:
    case BIN_OP_GETK:
    case BIN_OP_TOUCH:
    case BIN_OP_GAT:
    case BIN_OP_GATK:
        bin_get(f, req);
        break;
    case BIN_OP_SET:
    case BIN_OP_ADD:
    case BIN_OP_REPLACE:
    case BIN_OP_APPEND:
    case BIN_OP_PREPEND: {
        bool extras =
            req->cmd == BIN_OP_SET || req->cmd == BIN_OP_ADD || req->cmd == BIN_OP_REPLACE;
        rel_time_t exp = extras ? clock_realtime(&f->clk, (int64_t)req->exptime) : 0;
        do_update(f, req->key.p, req->key.len, extras ? req->flags : 0, exp, req->value_len, false,
                  bin_store_op(req->cmd, req->hdr.cas), req->hdr.cas, req->cmd == BIN_OP_SET);
        break;
    }
    case BIN_OP_DELETE:
        fz_delete(f, req->key.p, req->key.len, req->hdr.cas);
        break;
    case BIN_OP_INCREMENT:
    case BIN_OP_DECREMENT: {
        bool create = req->exptime != BIN_ARITH_NO_CREATE;
        struct storage_arith a = {
            .incr = req->cmd == BIN_OP_INCREMENT,
            .delta = req->delta,
            .cas_in = req->hdr.cas,
            .create = create,
            .initial = req->initial,
            .exptime = create ? clock_realtime(&f->clk, (int64_t)req->exptime) : 0,
        };
        text_arith(f, req->key.p, req->key.len, &a);
        break;
    }
    case BIN_OP_FLUSH:
        fz_flush(f, (int64_t)req->exptime);
        break;
    case BIN_OP_STAT:
        fz_stats(f);
        break;
    case BIN_OP_QUIT:
        f->stop = true;
        break;
    default:
        break;
    }
}

static bool bin_step(struct fz *f)
{
    struct bin_request req;
    size_t used = 0;
    enum bin_result r = bin_parse_request(f->buf + f->off, f->size - f->off, &req, &used);
    switch (r) {
    case BIN_OK:
        f->off += used;
        bin_one(f, &req);
        return true;
    case BIN_ERROR:
        f->off += used;
        if (req.err_close) {
            return false;
        }
        fz_skip(f, req.err_swallow);
        return true;
    default:
        return false;
    }
}

/* ---- driver ------------------------------------------------------------ */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz f;
    memset(&f, 0, sizeof(f));
    struct storage_options opts;
    storage_options_default(&opts);
    opts.maxbytes = FZ_MAXBYTES;
    opts.hashpower = STORAGE_HASHPOWER_MIN;
    FUZZ_CHECK(storage_create(&f.st, &opts) == 0);
    clock_init(&f.clk, FZ_UNIX_START);
    f.buf = (const char *)data;
    f.size = size;
    f.limit_max = FZ_MAXBYTES;

    bool binary = size > 0 && data[0] == BIN_MAGIC_REQ;
    for (unsigned n = 0; n < FZ_MAX_REQS && !f.stop && f.off < f.size; n++) {
        if (!(binary ? bin_step(&f) : text_step(&f))) {
            break;
        }
        if (n % FZ_HOLD_EVERY == FZ_HOLD_EVERY - 1) {
            fz_release_held(&f);
        }
        clock_set(&f.clk, fz_now(&f) + 1);
        (void)storage_maintain(f.st, fz_now(&f));
    }

    fz_release_held(&f);
    fz_stats(&f);
    const char *err = storage_check(f.st);
    if (err != NULL) {
        fprintf(stderr, "storage_check: %s\n", err);
        FUZZ_CHECK(err == NULL);
    }
    storage_destroy(&f.st);
    FUZZ_CHECK(f.st == NULL);
    return 0;
}

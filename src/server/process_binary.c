/*
 * process_binary.c - the binary protocol against storage, with memcached
 * 1.6.18's replies, statuses and quiet-variant rules (see proto/binary.h).
 */
#include "process_binary.h"

#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "binary.h"
#include "log.h"
#include "ops.h"
#include "prefix_stats.h"
#include "server.h"
#include "storage.h"

static struct server *srv_of(struct conn *c)
{
    return c->w->srv;
}

static void send_error(struct conn *c, uint8_t opcode, uint32_t opaque, uint16_t status)
{
    char buf[BIN_ERROR_MAX];
    conn_out(c, buf, bin_compose_error(buf, opcode, opaque, status));
}

static void send_ok(struct conn *c, const struct bin_request *req, uint64_t cas)
{
    if (req->quiet) {
        return;
    }
    char buf[BIN_HEADER_LEN];
    conn_out(c, buf, bin_compose_ok(buf, req->hdr.opcode, req->hdr.opaque, cas));
}

static void process_get(struct conn *c, const struct bin_request *req)
{
    bool touch = req->cmd == BIN_OP_TOUCH || req->cmd == BIN_OP_GAT || req->cmd == BIN_OP_GATK;
    struct item *it = ops_fetch(c, req->key.p, req->key.len, touch, (int64_t)req->exptime);
    if (it == NULL) {
        if (req->quiet) {
            return;
        }
        if (req->return_key) {
            char buf[BIN_HEADER_LEN + BIN_KEY_MAX];
            conn_out(c, buf,
                     bin_compose_key_miss(buf, req->hdr.opcode, req->hdr.opaque, req->key.p,
                                          req->key.len));
        } else {
            send_error(c, req->hdr.opcode, req->hdr.opaque, BIN_STATUS_KEY_ENOENT);
        }
        return;
    }
    /* TOUCH answers with the flags only; the others with the value too. */
    bool with_value = req->cmd != BIN_OP_TOUCH;
    size_t nbytes = storage_item_nbytes(it);
    char hdr[BIN_ITEM_HEADER_MAX];
    size_t n =
        bin_compose_item(hdr, req->hdr.opcode, req->hdr.opaque, storage_item_cas(it),
                         storage_item_flags(it), req->return_key ? req->key.p : NULL,
                         req->return_key ? req->key.len : 0, with_value ? (uint32_t)nbytes : 0);
    conn_out(c, hdr, n);
    if (with_value && nbytes > 0) {
        conn_out_item(c, it, storage_item_value(it), nbytes);
    } else {
        storage_release(srv_of(c)->storage, &it);
    }
}

static void process_update(struct conn *c, const struct bin_request *req)
{
    bool has_extras =
        req->cmd == BIN_OP_SET || req->cmd == BIN_OP_ADD || req->cmd == BIN_OP_REPLACE;
    struct conn_ext *x = conn_ext(c);
    if (x == NULL) {
        /* Nowhere to note the value that follows: answer, then close. */
        send_error(c, req->hdr.opcode, req->hdr.opaque, BIN_STATUS_ENOMEM);
        c->close_after_write = true;
        return;
    }
    struct item *it = NULL;
    uint64_t hv;
    int rc = ops_alloc(c, req->key.p, req->key.len, has_extras ? req->flags : 0,
                       has_extras ? (int64_t)req->exptime : 0, req->value_len,
                       req->cmd == BIN_OP_SET, &hv, &it);
    if (rc != STORAGE_OK) {
        send_error(c, req->hdr.opcode, req->hdr.opaque,
                   rc == STORAGE_E2BIG ? BIN_STATUS_E2BIG : BIN_STATUS_ENOMEM);
        x->swallow = bin_swallow_len(req->value_len);
        conn_set_state(c, x->swallow > 0 ? CONN_SWALLOW : CONN_NEW_CMD);
        return;
    }
    x->item = it;
    x->item_hv = hv;
    x->item_cas = req->hdr.cas;
    x->item_done = 0;
    x->item_need = req->value_len;
    x->bin_opcode = req->hdr.opcode;
    x->bin_opaque = req->hdr.opaque;
    conn_set_state(c, CONN_NREAD);
}

static enum storage_op store_op(uint8_t base, uint64_t cas)
{
    switch (base) {
    case BIN_OP_APPEND:
        return STORAGE_APPEND;
    case BIN_OP_PREPEND:
        return STORAGE_PREPEND;
    default:
        break;
    }
    /* A CAS in a SET/ADD/REPLACE request turns it into a compare-and-swap. */
    if (cas != 0) {
        return STORAGE_CAS;
    }
    return base == BIN_OP_ADD       ? STORAGE_ADD
           : base == BIN_OP_REPLACE ? STORAGE_REPLACE
                                    : STORAGE_SET;
}

void process_binary_complete_nread(struct conn *c)
{
    struct conn_ext *x = c->ext;
    struct item *it = x->item;
    uint8_t opcode = x->bin_opcode;
    uint32_t opaque = x->bin_opaque;
    uint8_t base = bin_opcode_base(opcode);
    enum storage_op op = store_op(base, x->item_cas);

    x->item = NULL;
    enum storage_store_outcome out;
    uint64_t cas = 0;
    int rc = ops_store(c, it, op, x->item_cas, x->item_hv, &out, &cas);
    if (rc != STORAGE_OK && op != STORAGE_APPEND && op != STORAGE_PREPEND) {
        send_error(c, opcode, opaque, BIN_STATUS_ENOMEM);
        return;
    }
    if (rc != STORAGE_OK) {
        out = STORAGE_NOT_STORED;
    }
    switch (out) {
    case STORAGE_STORED:
        if (!bin_opcode_is_quiet(opcode)) {
            char buf[BIN_HEADER_LEN];
            conn_out(c, buf, bin_compose_ok(buf, opcode, opaque, cas));
        }
        break;
    case STORAGE_EXISTS:
        send_error(c, opcode, opaque, BIN_STATUS_KEY_EEXISTS);
        break;
    case STORAGE_NOT_FOUND:
        send_error(c, opcode, opaque, BIN_STATUS_KEY_ENOENT);
        break;
    default:
        send_error(c, opcode, opaque,
                   base == BIN_OP_ADD       ? BIN_STATUS_KEY_EEXISTS
                   : base == BIN_OP_REPLACE ? BIN_STATUS_KEY_ENOENT
                                            : BIN_STATUS_NOT_STORED);
        break;
    }
}

static void process_delete(struct conn *c, const struct bin_request *req)
{
    bool found, mismatch;
    ops_delete(c, req->key.p, req->key.len, req->hdr.cas, &found, &mismatch);
    if (found && mismatch) {
        send_error(c, req->hdr.opcode, req->hdr.opaque, BIN_STATUS_KEY_EEXISTS);
    } else if (found) {
        send_ok(c, req, 0);
    } else {
        send_error(c, req->hdr.opcode, req->hdr.opaque, BIN_STATUS_KEY_ENOENT);
    }
}

static void process_arith(struct conn *c, const struct bin_request *req)
{
    struct server *srv = srv_of(c);
    bool create = req->exptime != BIN_ARITH_NO_CREATE;
    struct storage_arith a = {
        .incr = req->cmd == BIN_OP_INCREMENT,
        .delta = req->delta,
        .cas_in = req->hdr.cas,
        .create = create,
        .initial = req->initial,
        .exptime = create ? clock_realtime(&srv->clock, (int64_t)req->exptime) : 0,
    };
    enum storage_arith_outcome out;
    uint64_t value = 0, cas = 0;
    if (ops_arith(c, req->key.p, req->key.len, &a, &out, &value, &cas) != STORAGE_OK) {
        send_error(c, req->hdr.opcode, req->hdr.opaque, BIN_STATUS_ENOMEM);
        return;
    }
    switch (out) {
    case STORAGE_ARITH_OK:
        if (!req->quiet) {
            char buf[BIN_ARITH_LEN];
            conn_out(c, buf, bin_compose_arith(buf, req->hdr.opcode, req->hdr.opaque, cas, value));
        }
        break;
    case STORAGE_ARITH_NON_NUMERIC:
        send_error(c, req->hdr.opcode, req->hdr.opaque, BIN_STATUS_DELTA_BADVAL);
        break;
    case STORAGE_ARITH_EXISTS:
        send_error(c, req->hdr.opcode, req->hdr.opaque, BIN_STATUS_KEY_EEXISTS);
        break;
    default:
        send_error(c, req->hdr.opcode, req->hdr.opaque, BIN_STATUS_KEY_ENOENT);
        break;
    }
}

static void process_flush(struct conn *c, const struct bin_request *req)
{
    if (ops_flush(c, (int64_t)req->exptime)) {
        send_ok(c, req, 0);
    } else {
        send_error(c, req->hdr.opcode, req->hdr.opaque, BIN_STATUS_AUTH_ERROR);
    }
}

struct bin_stat_ctx {
    struct conn *c;
    uint32_t opaque;
};

static void emit_bin_stat(void *ctx, const char *name, const char *value)
{
    struct bin_stat_ctx *sc = ctx;
    char buf[BIN_HEADER_LEN + 512];
    size_t n =
        bin_compose_stat(buf, sizeof(buf), sc->opaque, name, strlen(name), value, strlen(value));
    conn_out(sc->c, buf, n);
}

static void emit_bin_stat_n(struct bin_stat_ctx *sc, const char *name, const char *value,
                            size_t nvalue)
{
    size_t cap = BIN_HEADER_LEN + strlen(name) + nvalue;
    char *buf = malloc(cap);
    if (buf == NULL) {
        return;
    }
    conn_out(sc->c, buf, bin_compose_stat(buf, cap, sc->opaque, name, strlen(name), value, nvalue));
    free(buf);
}

/* "stats detail dump" collected into one string, for the binary reply. */
struct dump_ctx {
    char *buf;
    size_t len, cap;
};

static void dump_append(struct dump_ctx *d, const char *s, size_t n)
{
    if (d->len + n > d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 256;
        while (cap < d->len + n) {
            cap *= 2;
        }
        char *nb = realloc(d->buf, cap);
        if (nb == NULL) {
            return;
        }
        d->buf = nb;
        d->cap = cap;
    }
    memcpy(d->buf + d->len, s, n);
    d->len += n;
}

static void dump_line(void *ctx, const char *text)
{
    dump_append(ctx, text, strlen(text));
    dump_append(ctx, "\r\n", 2);
}

/* memcached matches STAT group names by prefix. */
static bool group_is(const struct bin_span *key, const char *name)
{
    size_t n = strlen(name);
    return key->len >= n && memcmp(key->p, name, n) == 0;
}

static void process_stat(struct conn *c, const struct bin_request *req)
{
    struct server *srv = srv_of(c);
    struct bin_stat_ctx sc = {c, req->hdr.opaque};
    const struct bin_span *key = &req->key;
    if (key->len == 0) {
        stats_render_general(srv, emit_bin_stat, &sc);
    } else if (group_is(key, "reset")) {
        server_reset_stats(srv);
    } else if (group_is(key, "settings")) {
        settings_render(srv->settings, emit_bin_stat, &sc);
    } else if (group_is(key, "detail")) {
        /* memcached matches " on", " off" and " dump" by prefix after "detail". */
        struct bin_span sub = {key->p + 6, key->len - 6};
        if (group_is(&sub, " dump")) {
            struct dump_ctx dc = {NULL, 0, 0};
            prefix_stats_dump(srv->prefix_stats, dump_line, &dc);
            dump_append(&dc, "END\r\n", 5);
            emit_bin_stat_n(&sc, "detailed", dc.buf != NULL ? dc.buf : "", dc.len);
            free(dc.buf);
        } else if (group_is(&sub, " on")) {
            __atomic_store_n(&srv->settings->detail_enabled, true, __ATOMIC_RELAXED);
        } else if (group_is(&sub, " off")) {
            __atomic_store_n(&srv->settings->detail_enabled, false, __ATOMIC_RELAXED);
        } else {
            send_error(c, req->hdr.opcode, req->hdr.opaque, BIN_STATUS_KEY_ENOENT);
            return;
        }
    } else if (group_is(key, "items")) {
        stats_render_items(srv, emit_bin_stat, &sc);
    } else if (group_is(key, "slabs")) {
        stats_render_slabs(srv, emit_bin_stat, &sc);
    } else if (group_is(key, "sizes_enable") || group_is(key, "sizes_disable")) {
        /* One packet and no end packet, as memcached answers. */
        bool on = group_is(key, "sizes_enable");
        emit_bin_stat(&sc, "sizes_status",
                      storage_sizes_enable(srv->storage, on) ? (on ? "enabled" : "disabled")
                                                             : "error");
        return;
    } else if (group_is(key, "sizes")) {
        stats_render_sizes(srv, emit_bin_stat, &sc);
    } else {
        send_error(c, req->hdr.opcode, req->hdr.opaque, BIN_STATUS_KEY_ENOENT);
        return;
    }
    char end[BIN_HEADER_LEN];
    conn_out(c, end, bin_compose_stat_end(end, req->hdr.opaque));
}

void process_binary(struct conn *c, const struct bin_request *req)
{
    struct server *srv = srv_of(c);
    conn_mark_response(c, true);
    if (server_verbose(srv) > 1) {
        log_msg(LOG_DEBUG, "<%d Read binary protocol data: %s", c->fd,
                bin_opcode_name(req->hdr.opcode));
    }
    switch (req->cmd) {
    case BIN_OP_GET:
    case BIN_OP_GETK:
    case BIN_OP_TOUCH:
    case BIN_OP_GAT:
    case BIN_OP_GATK:
        process_get(c, req);
        break;
    case BIN_OP_SET:
    case BIN_OP_ADD:
    case BIN_OP_REPLACE:
    case BIN_OP_APPEND:
    case BIN_OP_PREPEND:
        process_update(c, req);
        break;
    case BIN_OP_DELETE:
        process_delete(c, req);
        break;
    case BIN_OP_INCREMENT:
    case BIN_OP_DECREMENT:
        process_arith(c, req);
        break;
    case BIN_OP_QUIT:
        send_ok(c, req, 0);
        c->close_after_write = true;
        break;
    case BIN_OP_FLUSH:
        process_flush(c, req);
        break;
    case BIN_OP_NOOP: {
        char buf[BIN_HEADER_LEN];
        conn_out(c, buf, bin_compose_ok(buf, req->hdr.opcode, req->hdr.opaque, 0));
        break;
    }
    case BIN_OP_VERSION: {
        char buf[BIN_HEADER_LEN + 64];
        conn_out(c, buf, bin_compose_version(buf, sizeof(buf), req->hdr.opaque, MEMSTASH_VERSION));
        break;
    }
    case BIN_OP_STAT:
        process_stat(c, req);
        break;
    default:
        send_error(c, req->hdr.opcode, req->hdr.opaque, BIN_STATUS_UNKNOWN_COMMAND);
        break;
    }
}

/* A response whose body is `len` bytes of value (SASL answers). */
static void send_body(struct conn *c, const struct bin_request *req, uint16_t status,
                      const char *body, size_t len)
{
    char hdr[BIN_HEADER_LEN];
    struct bin_packet pk = {.opcode = req->hdr.opcode,
                            .status = status,
                            .opaque = req->hdr.opaque,
                            .value_len = (uint32_t)len};
    conn_out(c, hdr, bin_compose_response(hdr, sizeof(hdr), &pk));
    conn_out(c, body, len);
}

void process_binary_sasl(struct conn *c, const struct bin_request *req, const char *data,
                         size_t ndata, bool too_long)
{
    conn_mark_response(c, true);
    struct conn_ext *x = conn_ext(c);
    if (x == NULL) {
        send_error(c, req->hdr.opcode, req->hdr.opaque, BIN_STATUS_ENOMEM);
        c->close_after_write = true;
        return;
    }
    if (req->cmd == BIN_OP_SASL_LIST_MECHS) {
        const char *mechs = NULL;
        size_t n = 0;
        if (auth_sasl_list_mechs(&x->sasl, &mechs, &n)) {
            send_body(c, req, BIN_STATUS_OK, mechs, n);
        } else {
            send_error(c, req->hdr.opcode, req->hdr.opaque, BIN_STATUS_AUTH_ERROR);
        }
        return;
    }
    const char *out = NULL;
    size_t outlen = 0;
    enum auth_sasl_result r = AUTH_SASL_FAIL;
    if (req->cmd == BIN_OP_SASL_AUTH) {
        /* A new exchange drops whatever an earlier one granted. */
        c->authenticated = false;
        if (!too_long) {
            r = auth_sasl_start(&x->sasl, req->key.p, req->key.len, data, ndata, &out, &outlen);
        }
    } else if (!too_long) {
        r = auth_sasl_step(&x->sasl, data, ndata, &out, &outlen);
    }
    struct thread_stats *ts = &c->w->stats;
    switch (r) {
    case AUTH_SASL_OK:
        c->authenticated = true;
        STAT_INCR(ts, auth_cmds);
        send_body(c, req, BIN_STATUS_OK, "Authenticated", strlen("Authenticated"));
        break;
    case AUTH_SASL_CONTINUE:
        send_body(c, req, BIN_STATUS_AUTH_CONTINUE, out, outlen);
        break;
    case AUTH_SASL_FAIL:
        c->authenticated = false;
        STAT_INCR(ts, auth_cmds);
        STAT_INCR(ts, auth_errors);
        send_error(c, req->hdr.opcode, req->hdr.opaque, BIN_STATUS_AUTH_ERROR);
        break;
    }
}

void process_binary_refuse(struct conn *c, const struct bin_request *req)
{
    conn_mark_response(c, true);
    send_error(c, req->hdr.opcode, req->hdr.opaque, BIN_STATUS_AUTH_ERROR);
    c->close_after_write = true;
}

void process_binary_error(struct conn *c, const struct bin_request *req)
{
    conn_mark_response(c, true);
    send_error(c, req->hdr.opcode, req->hdr.opaque, req->err_status);
    struct conn_ext *x;
    if (req->err_close) {
        c->close_after_write = true;
    } else if (req->err_swallow > 0) {
        if ((x = conn_ext(c)) == NULL) {
            c->close_after_write = true; /* nowhere to count the bytes to discard */
            return;
        }
        x->swallow = req->err_swallow;
        conn_set_state(c, CONN_SWALLOW);
    }
}

/*
 * wire.c - request composers for the text, meta and binary protocols (see
 * wire.h). Lines are built with memcpy and num_format_u64 rather than
 * snprintf: a multi-get composes one line per key.
 */
#include "wire.h"

#include <string.h>

#include "binary.h"
#include "client_int.h"
#include "numparse.h"

/* A request line being built; big enough for any line composed here. */
struct line {
    char p[MST_KEY_MAX + 160];
    size_t n;
};

static void l_str(struct line *l, const char *s)
{
    size_t n = strlen(s);
    memcpy(l->p + l->n, s, n);
    l->n += n;
}

static void l_mem(struct line *l, const char *s, size_t n)
{
    if (n) {
        memcpy(l->p + l->n, s, n);
        l->n += n;
    }
}

static void l_u64(struct line *l, uint64_t v)
{
    l->n += num_format_u64(l->p + l->n, v);
}

static void l_i64(struct line *l, int64_t v)
{
    if (v < 0) {
        l->p[l->n++] = '-';
        l_u64(l, (uint64_t)0 - (uint64_t)v);
    } else {
        l_u64(l, (uint64_t)v);
    }
}

/* " <flag><number>" */
static void l_flag_u64(struct line *l, char flag, uint64_t v)
{
    l->p[l->n++] = ' ';
    l->p[l->n++] = flag;
    l_u64(l, v);
}

static void l_flag_i64(struct line *l, char flag, int64_t v)
{
    l->p[l->n++] = ' ';
    l->p[l->n++] = flag;
    l_i64(l, v);
}

static void l_key(struct line *l, const struct wire_req *rq)
{
    l_mem(l, rq->ns, rq->nns);
    l_mem(l, rq->key, rq->nkey);
}

/* Appends the line, then the data block and its "\r\n" when data is not NULL. */
static int emit(struct buf *b, const struct line *l, const void *data, size_t len)
{
    size_t total = l->n + (data ? len + 2 : 0);
    if (buf_reserve(b, total) != MST_OK) {
        return MST_ENOMEM;
    }
    memcpy(b->p + b->len, l->p, l->n);
    b->len += l->n;
    if (data) {
        if (len) {
            memcpy(b->p + b->len, data, len);
        }
        b->len += len;
        b->p[b->len++] = '\r';
        b->p[b->len++] = '\n';
    }
    return MST_OK;
}

static void l_end(struct line *l, bool noreply)
{
    if (noreply) {
        l_str(l, " noreply");
    }
    l_str(l, "\r\n");
}

/* ---- Text ------------------------------------------------------------- */

static const char *text_store_cmd(enum wire_op op)
{
    switch (op) {
    case WOP_ADD:
        return "add ";
    case WOP_REPLACE:
        return "replace ";
    case WOP_APPEND:
        return "append ";
    case WOP_PREPEND:
        return "prepend ";
    case WOP_CAS:
        return "cas ";
    default:
        return "set ";
    }
}

static int compose_text(struct buf *b, const struct wire_req *rq, size_t *expect)
{
    struct line l = {.n = 0};
    bool nr = rq->quiet;
    *expect = nr ? 0 : 1;
    switch (rq->op) {
    case WOP_GET:
    case WOP_GETS:
        if (rq->multi) {
            l_str(&l, " ");
            l_key(&l, rq);
            *expect = 0;
            return emit(b, &l, NULL, 0);
        }
        l_str(&l, rq->op == WOP_GETS ? "gets " : "get ");
        l_key(&l, rq);
        l_end(&l, false);
        *expect = 1;
        return emit(b, &l, NULL, 0);
    case WOP_GAT:
        l_str(&l, "gat ");
        l_i64(&l, rq->exptime);
        l_str(&l, " ");
        l_key(&l, rq);
        l_end(&l, false);
        *expect = 1;
        return emit(b, &l, NULL, 0);
    case WOP_TOUCH:
        l_str(&l, "touch ");
        l_key(&l, rq);
        l_str(&l, " ");
        l_i64(&l, rq->exptime);
        l_end(&l, nr);
        return emit(b, &l, NULL, 0);
    case WOP_SET:
    case WOP_ADD:
    case WOP_REPLACE:
    case WOP_APPEND:
    case WOP_PREPEND:
    case WOP_CAS: {
        bool keeps = rq->op == WOP_APPEND || rq->op == WOP_PREPEND;
        l_str(&l, text_store_cmd(rq->op));
        l_key(&l, rq);
        l_str(&l, " ");
        l_u64(&l, keeps ? 0 : rq->flags);
        l_str(&l, " ");
        l_i64(&l, keeps ? 0 : rq->exptime);
        l_str(&l, " ");
        l_u64(&l, rq->len);
        if (rq->op == WOP_CAS) {
            l_str(&l, " ");
            l_u64(&l, rq->cas);
        }
        l_end(&l, nr);
        return emit(b, &l, rq->data ? rq->data : "", rq->len);
    }
    case WOP_DELETE:
        l_str(&l, "delete ");
        l_key(&l, rq);
        l_end(&l, nr);
        return emit(b, &l, NULL, 0);
    case WOP_INCR:
    case WOP_DECR:
        /* The initial value is the caller's business in text (add after NOT_FOUND). */
        l_str(&l, rq->op == WOP_INCR ? "incr " : "decr ");
        l_key(&l, rq);
        l_str(&l, " ");
        l_u64(&l, rq->delta);
        l_end(&l, nr);
        return emit(b, &l, NULL, 0);
    default:
        return MST_ENOTSUP;
    }
}

/* ---- Meta ------------------------------------------------------------- */

static int compose_meta(struct buf *b, const struct wire_req *rq, size_t *expect)
{
    struct line l = {.n = 0};
    bool q = rq->quiet;
    *expect = q ? 0 : 1;
    switch (rq->op) {
    case WOP_GET:
    case WOP_GETS:
    case WOP_GAT:
        l_str(&l, "mg ");
        l_key(&l, rq);
        l_str(&l, " v f");
        if (rq->op == WOP_GETS) {
            l_str(&l, " c");
        }
        if (rq->op == WOP_GAT) {
            l_flag_i64(&l, 'T', rq->exptime);
        }
        if (rq->multi && rq->by_opaque) {
            l_str(&l, " q O");
            l_u64(&l, rq->opaque);
            *expect = 0;
        } else if (rq->multi) {
            l_str(&l, " k q");
            *expect = 0;
        }
        l_str(&l, "\r\n");
        return emit(b, &l, NULL, 0);
    case WOP_TOUCH:
        l_str(&l, "mg ");
        l_key(&l, rq);
        l_flag_i64(&l, 'T', rq->exptime);
        l_str(&l, q ? " q\r\n" : "\r\n");
        return emit(b, &l, NULL, 0);
    case WOP_LEASE_GET:
        l_str(&l, "mg ");
        l_key(&l, rq);
        l_str(&l, " v f c");
        l_flag_u64(&l, 'N', rq->lease_ttl);
        if (rq->recache_below) {
            l_flag_u64(&l, 'R', rq->recache_below);
        }
        l_str(&l, "\r\n");
        *expect = 1;
        return emit(b, &l, NULL, 0);
    case WOP_SET:
    case WOP_ADD:
    case WOP_REPLACE:
    case WOP_APPEND:
    case WOP_PREPEND:
    case WOP_CAS:
    case WOP_LEASE_SET: {
        /* The datalen token is an int32 in 0..INT_MAX-2 for memcached. */
        if (rq->len > 2147483645u) {
            return MST_ETOOBIG;
        }
        bool keeps = rq->op == WOP_APPEND || rq->op == WOP_PREPEND;
        l_str(&l, "ms ");
        l_key(&l, rq);
        l_str(&l, " ");
        l_u64(&l, rq->len);
        if (!keeps && rq->exptime != 0) {
            l_flag_i64(&l, 'T', rq->exptime);
        }
        if (!keeps && rq->flags != 0) {
            l_flag_u64(&l, 'F', rq->flags);
        }
        switch (rq->op) {
        case WOP_ADD:
            l_str(&l, " ME");
            break;
        case WOP_REPLACE:
            l_str(&l, " MR");
            break;
        case WOP_APPEND:
            l_str(&l, " MA");
            break;
        case WOP_PREPEND:
            l_str(&l, " MP");
            break;
        case WOP_CAS:
            l_flag_u64(&l, 'C', rq->cas);
            break;
        case WOP_LEASE_SET:
            if (rq->cas) {
                l_flag_u64(&l, 'C', rq->cas);
                l_str(&l, " I");
            }
            break;
        default:
            break;
        }
        l_str(&l, q ? " q\r\n" : "\r\n");
        return emit(b, &l, rq->data ? rq->data : "", rq->len);
    }
    case WOP_DELETE:
        l_str(&l, "md ");
        l_key(&l, rq);
        l_str(&l, q ? " q\r\n" : "\r\n");
        return emit(b, &l, NULL, 0);
    case WOP_INVALIDATE:
        l_str(&l, "md ");
        l_key(&l, rq);
        l_str(&l, " I");
        if (rq->exptime != 0) {
            l_flag_i64(&l, 'T', rq->exptime);
        }
        l_str(&l, q ? " q\r\n" : "\r\n");
        return emit(b, &l, NULL, 0);
    case WOP_INCR:
    case WOP_DECR:
        l_str(&l, "ma ");
        l_key(&l, rq);
        if (rq->op == WOP_DECR) {
            l_str(&l, " MD");
        }
        if (rq->delta != 1) {
            l_flag_u64(&l, 'D', rq->delta);
        }
        if (rq->has_initial) {
            l_flag_i64(&l, 'N', rq->exptime);
            l_flag_u64(&l, 'J', rq->initial);
        }
        l_str(&l, q ? " q\r\n" : " v\r\n");
        return emit(b, &l, NULL, 0);
    default:
        return MST_ENOTSUP;
    }
}

/* ---- Binary ----------------------------------------------------------- */

static uint32_t bin_exptime(int32_t exptime)
{
    return exptime < 0 ? WIRE_BIN_EXPIRED : (uint32_t)exptime;
}

/* Appends header + extras + key [+ value]. */
static int emit_bin(struct buf *b, uint8_t opcode, uint64_t cas, const char *extras, uint8_t extlen,
                    const struct wire_req *rq, const void *value, size_t vlen)
{
    char key[MST_KEY_MAX];
    size_t nkey = rq ? rq->nns + rq->nkey : 0;
    if (nkey > sizeof(key)) {
        return MST_EINVAL;
    }
    if (rq && rq->nns) {
        memcpy(key, rq->ns, rq->nns);
    }
    if (rq && rq->nkey) {
        memcpy(key + rq->nns, rq->key, rq->nkey);
    }
    if (vlen > UINT32_MAX - (size_t)extlen - nkey) {
        return MST_ETOOBIG;
    }
    struct bin_packet pk = {
        .opcode = opcode,
        .cas = cas,
        .extras = extras,
        .extlen = extlen,
        .key = key,
        .keylen = (uint16_t)nkey,
        .value_len = (uint32_t)vlen,
    };
    size_t head = BIN_HEADER_LEN + extlen + nkey;
    if (buf_reserve(b, head + vlen) != MST_OK) {
        return MST_ENOMEM;
    }
    size_t n = bin_compose_request(b->p + b->len, head, &pk);
    if (n != head) {
        return MST_EINVAL;
    }
    b->len += n;
    if (vlen) {
        memcpy(b->p + b->len, value, vlen);
        b->len += vlen;
    }
    return MST_OK;
}

static int compose_binary(struct buf *b, const struct wire_req *rq, size_t *expect)
{
    char ext[BIN_EXTLEN_ARITH];
    bool q = rq->quiet;
    *expect = q ? 0 : 1;
    switch (rq->op) {
    case WOP_GET:
    case WOP_GETS:
        if (rq->multi) {
            *expect = 0;
            return emit_bin(b, BIN_OP_GETKQ, 0, NULL, 0, rq, NULL, 0);
        }
        *expect = 1;
        return emit_bin(b, BIN_OP_GET, 0, NULL, 0, rq, NULL, 0);
    case WOP_GAT:
        bin_encode_u32(ext, bin_exptime(rq->exptime));
        *expect = 1;
        return emit_bin(b, BIN_OP_GAT, 0, ext, BIN_EXTLEN_EXPTIME, rq, NULL, 0);
    case WOP_TOUCH:
        /* TOUCH has no quiet variant: quiet, its reply is skipped like a hidden one's. */
        bin_encode_u32(ext, bin_exptime(rq->exptime));
        return emit_bin(b, BIN_OP_TOUCH, 0, ext, BIN_EXTLEN_EXPTIME, rq, NULL, 0);
    case WOP_SET:
    case WOP_ADD:
    case WOP_REPLACE:
    case WOP_CAS: {
        uint8_t op = rq->op == WOP_ADD       ? (q ? BIN_OP_ADDQ : BIN_OP_ADD)
                     : rq->op == WOP_REPLACE ? (q ? BIN_OP_REPLACEQ : BIN_OP_REPLACE)
                                             : (q ? BIN_OP_SETQ : BIN_OP_SET);
        bin_encode_store_extras(ext, rq->flags, bin_exptime(rq->exptime));
        return emit_bin(b, op, rq->op == WOP_CAS ? rq->cas : 0, ext, BIN_EXTLEN_STORE, rq, rq->data,
                        rq->len);
    }
    case WOP_APPEND:
    case WOP_PREPEND: {
        uint8_t op = rq->op == WOP_APPEND ? (q ? BIN_OP_APPENDQ : BIN_OP_APPEND)
                                          : (q ? BIN_OP_PREPENDQ : BIN_OP_PREPEND);
        return emit_bin(b, op, 0, NULL, 0, rq, rq->data, rq->len);
    }
    case WOP_DELETE:
        return emit_bin(b, q ? BIN_OP_DELETEQ : BIN_OP_DELETE, 0, NULL, 0, rq, NULL, 0);
    case WOP_INCR:
    case WOP_DECR: {
        uint8_t op = rq->op == WOP_INCR ? (q ? BIN_OP_INCREMENTQ : BIN_OP_INCREMENT)
                                        : (q ? BIN_OP_DECREMENTQ : BIN_OP_DECREMENT);
        bin_encode_arith_extras(ext, rq->delta, rq->has_initial ? rq->initial : 0,
                                rq->has_initial ? bin_exptime(rq->exptime) : BIN_ARITH_NO_CREATE);
        return emit_bin(b, op, 0, ext, BIN_EXTLEN_ARITH, rq, NULL, 0);
    }
    default:
        return MST_ENOTSUP;
    }
}

int wire_compose(struct buf *b, enum wire_proto p, const struct wire_req *rq, size_t *expect)
{
    size_t dummy;
    if (!expect) {
        expect = &dummy;
    }
    switch (p) {
    case WIRE_META:
        return compose_meta(b, rq, expect);
    case WIRE_BINARY:
        return compose_binary(b, rq, expect);
    default:
        return compose_text(b, rq, expect);
    }
}

int wire_compose_end(struct buf *b, enum wire_proto p)
{
    if (p == WIRE_META) {
        return buf_append(b, "mn\r\n", 4);
    }
    if (p == WIRE_BINARY) {
        return emit_bin(b, BIN_OP_NOOP, 0, NULL, 0, NULL, NULL, 0);
    }
    return MST_EINVAL;
}

int wire_compose_flush(struct buf *b, enum wire_proto p, int32_t delay, bool quiet)
{
    if (p == WIRE_BINARY) {
        char ext[BIN_EXTLEN_EXPTIME];
        bin_encode_u32(ext, bin_exptime(delay));
        return emit_bin(b, quiet ? BIN_OP_FLUSHQ : BIN_OP_FLUSH, 0, ext,
                        delay ? BIN_EXTLEN_EXPTIME : 0, NULL, NULL, 0);
    }
    struct line l = {.n = 0};
    l_str(&l, "flush_all");
    if (delay) {
        l_str(&l, " ");
        l_i64(&l, delay);
    }
    l_end(&l, quiet);
    return emit(b, &l, NULL, 0);
}

int wire_compose_version(struct buf *b, enum wire_proto p)
{
    if (p == WIRE_BINARY) {
        return emit_bin(b, BIN_OP_VERSION, 0, NULL, 0, NULL, NULL, 0);
    }
    return buf_append(b, "version\r\n", 9);
}

int wire_compose_stats(struct buf *b, enum wire_proto p, const char *group)
{
    size_t n = group ? strlen(group) : 0;
    if (n > 200) {
        return MST_EINVAL;
    }
    if (p == WIRE_BINARY) {
        struct wire_req rq = {.key = group, .nkey = n};
        return emit_bin(b, BIN_OP_STAT, 0, NULL, 0, n ? &rq : NULL, NULL, 0);
    }
    struct line l = {.n = 0};
    l_str(&l, "stats");
    if (n) {
        l_str(&l, " ");
        l_mem(&l, group, n);
    }
    l_str(&l, "\r\n");
    return emit(b, &l, NULL, 0);
}

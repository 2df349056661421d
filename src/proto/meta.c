/*
 * meta.c - memcached meta protocol codec (see meta.h).
 *
 * The order of checks, the error each one produces and the layout of every
 * reply line follow memcached 1.6.18's behaviour as observed on the Debian
 * binary; tests/unit/proto/test_meta.c pins them. Numeric flag tokens are
 * read with the C library's strtol/strtoull rules that 1.6.18 applies,
 * including their quirks (a '-' in front of a large magnitude, leading white
 * space, truncation to 32 bits).
 */
#include "meta.h"

#include <limits.h>
#include <string.h>

#include "numparse.h"

const char *meta_error_string(enum meta_error e)
{
    switch (e) {
    case META_ERR_NONE:
        return "";
    case META_ERR_ERROR:
        return "ERROR";
    case META_ERR_BAD_FORMAT:
        return "CLIENT_ERROR bad command line format";
    case META_ERR_FLAGS_TOO_LONG_MG:
        return "CLIENT_ERROR options flags are too long";
    case META_ERR_FLAGS_TOO_LONG:
        return "CLIENT_ERROR options flags too long";
    case META_ERR_DUPLICATE_FLAG:
        return "CLIENT_ERROR duplicate flag";
    case META_ERR_INVALID_FLAG:
        return "CLIENT_ERROR invalid flag";
    case META_ERR_INVALID_OR_DUPLICATE:
        return "CLIENT_ERROR invalid or duplicate flag";
    case META_ERR_DECODE_KEY:
        return "CLIENT_ERROR error decoding key";
    case META_ERR_BAD_TOKEN:
        return "CLIENT_ERROR bad token in command line format";
    case META_ERR_BAD_INITIAL:
        return "CLIENT_ERROR invalid numeric initial value";
    case META_ERR_BAD_DELTA:
        return "CLIENT_ERROR invalid numeric delta value";
    case META_ERR_M_LENGTH:
        return "CLIENT_ERROR incorrect length for M token";
    case META_ERR_MS_MODE:
        return "CLIENT_ERROR invalid mode for ms M token";
    case META_ERR_MA_MODE:
        return "CLIENT_ERROR invalid mode for ma M token";
    case META_ERR_OPAQUE_TOO_LONG:
        return "CLIENT_ERROR opaque token too long";
    case META_ERR_BAD_DATA_CHUNK:
        return "CLIENT_ERROR bad data chunk";
    case META_ERR_NON_NUMERIC:
        return "CLIENT_ERROR cannot increment or decrement non-numeric value";
    case META_ERR_TOO_LARGE:
        return "SERVER_ERROR object too large for cache";
    case META_ERR_OOM_STORE:
        return "SERVER_ERROR out of memory storing object";
    case META_ERR_OOM:
        return "SERVER_ERROR out of memory";
    case META_ERR_OOM_VIVIFY:
        return "SERVER_ERROR Out of memory allocating new item";
    case META_ERR_REFCOUNT:
        return "SERVER_ERROR refcount overflow during fetch";
    }
    return "ERROR";
}

/* ---- Base64 ---- */

static const char meta_b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Value of an alphabet byte, 0 for '=', -1 for any other byte. */
static int meta_b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return 26 + (c - 'a');
    }
    if (c >= '0' && c <= '9') {
        return 52 + (c - '0');
    }
    if (c == '+') {
        return 62;
    }
    if (c == '/') {
        return 63;
    }
    if (c == '=') {
        return 0;
    }
    return -1;
}

size_t meta_base64_decode(const char *src, size_t n, char *out, size_t cap)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        if (meta_b64_value((unsigned char)src[i]) >= 0) {
            count++;
        }
    }
    if (count == 0 || count % 4 != 0 || count / 4 * 3 > cap) {
        return 0;
    }

    unsigned char block[4];
    size_t nblock = 0;
    size_t pad = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int v = meta_b64_value((unsigned char)src[i]);
        if (v < 0) {
            continue;
        }
        if (src[i] == '=') {
            pad++;
        }
        block[nblock++] = (unsigned char)v;
        if (nblock < 4) {
            continue;
        }
        out[o++] = (char)((block[0] << 2) | (block[1] >> 4));
        out[o++] = (char)((block[1] << 4) | (block[2] >> 2));
        out[o++] = (char)((block[2] << 6) | block[3]);
        nblock = 0;
        if (pad > 0) {
            /* The first block holding '=' ends the input; "a===" is invalid. */
            if (pad > 2) {
                return 0;
            }
            o -= pad;
            break;
        }
    }
    return o;
}

size_t meta_base64_encode(const unsigned char *src, size_t n, char *out)
{
    size_t o = 0;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = ((uint32_t)src[i] << 16) | ((uint32_t)src[i + 1] << 8) | src[i + 2];
        out[o++] = meta_b64_alphabet[(v >> 18) & 63];
        out[o++] = meta_b64_alphabet[(v >> 12) & 63];
        out[o++] = meta_b64_alphabet[(v >> 6) & 63];
        out[o++] = meta_b64_alphabet[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)src[i] << 16;
        if (i + 1 < n) {
            v |= (uint32_t)src[i + 1] << 8;
        }
        out[o++] = meta_b64_alphabet[(v >> 18) & 63];
        out[o++] = meta_b64_alphabet[(v >> 12) & 63];
        out[o++] = i + 1 < n ? meta_b64_alphabet[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    return o;
}

/* ---- Numeric tokens ---- */

/* The token after a flag's first character. */
static void meta_flag_arg(const struct text_token *t, const char **p, size_t *n)
{
    *p = t->p + 1;
    *n = t->len - 1;
}

/* ---- Parsing ---- */

static int meta_fail(struct meta_request *req, enum meta_error err)
{
    req->err = err;
    return -1;
}

/*
 * 1.6.18's flag pre-parse over args[first..nargs): records every flag and
 * its value. Returns META_ERR_NONE or the error it would answer with.
 */
static enum meta_error meta_parse_flags(const struct text_request *treq, unsigned first,
                                        char *keybuf, struct meta_request *req)
{
    /* The message a failed token leaves behind; F fails without setting one. */
    enum meta_error msg = META_ERR_BAD_FORMAT;
    bool failed = false;

    for (unsigned i = first; i < treq->nargs; i++) {
        const struct text_token *t = &treq->args[i];
        unsigned char c = (unsigned char)t->p[0];
        int bit = meta_flag_bit((char)c);
        if (c >= 127 || (bit >= 0 && ((req->flags >> bit) & 1u) != 0)) {
            return META_ERR_DUPLICATE_FLAG;
        }
        const char *arg;
        size_t narg;
        meta_flag_arg(t, &arg, &narg);
        switch (c) {
        case 'b': {
            size_t n =
                meta_base64_decode(req->key_token.p, req->key_token.len, keybuf, META_KEYBUF_SIZE);
            if (n == 0) {
                msg = META_ERR_DECODE_KEY;
                failed = true;
            }
            req->key.p = keybuf;
            req->key.len = n;
            req->key_binary = true;
            break;
        }
        case 'N':
        case 'T':
        case 'R': {
            int32_t v;
            if (!num_parse_i32(arg, narg, &v)) {
                msg = META_ERR_BAD_TOKEN;
                failed = true;
            } else if (c == 'N') {
                req->vivify_ttl = v;
            } else if (c == 'T') {
                req->ttl = v;
            } else {
                req->recache_ttl = v;
            }
            break;
        }
        case 'O':
            req->opaque = *t;
            break;
        case 'P':
        case 'L':
        case 'k':
        case 's':
        case 't':
        case 'c':
        case 'f':
        case 'v':
        case 'h':
        case 'l':
        case 'u':
        case 'q':
        case 'I':
            break;
        case 'F': {
            uint64_t v;
            if (!num_parse_u64(arg, narg, &v)) {
                failed = true;
            } else {
                req->client_flags = (uint32_t)v;
            }
            break;
        }
        case 'C':
            if (!num_parse_u64(arg, narg, &req->cas)) {
                msg = META_ERR_BAD_TOKEN;
                failed = true;
            }
            break;
        case 'M':
            if (t->len != 2) {
                msg = META_ERR_M_LENGTH;
                failed = true;
            } else {
                req->mode = t->p[1];
            }
            break;
        case 'J':
            if (!num_parse_u64(arg, narg, &req->initial)) {
                msg = META_ERR_BAD_INITIAL;
                failed = true;
            }
            break;
        case 'D':
            if (!num_parse_u64(arg, narg, &req->delta)) {
                msg = META_ERR_BAD_DELTA;
                failed = true;
            }
            break;
        default:
            return META_ERR_INVALID_FLAG;
        }
        req->flags |= (uint64_t)1 << bit;
        req->order[req->norder++] = (char)c;
    }
    return failed ? msg : META_ERR_NONE;
}

static bool meta_opaque_too_long(const struct meta_request *req)
{
    return req->opaque.len > META_OPAQUE_MAX;
}

static int meta_parse_me(const struct text_request *treq, char *keybuf, struct meta_request *req)
{
    if (treq->nargs < 2 || treq->args[1].len > META_KEY_MAX) {
        return meta_fail(req, META_ERR_BAD_FORMAT);
    }
    req->key_token = treq->args[1];
    req->key = req->key_token;
    const struct text_token *third = &treq->args[2];
    if (treq->nargs >= 3 && third->len == 1 && third->p[0] == 'b') {
        size_t n =
            meta_base64_decode(req->key_token.p, req->key_token.len, keybuf, META_KEYBUF_SIZE);
        if (n == 0) {
            return meta_fail(req, META_ERR_BAD_FORMAT);
        }
        req->key.p = keybuf;
        req->key.len = n;
        req->key_binary = true;
    }
    return 0;
}

/* ms after the flags: the storage operation, mode and opaque errors. */
static int meta_finish_ms(struct meta_request *req)
{
    enum meta_error err = meta_opaque_too_long(req) ? META_ERR_OPAQUE_TOO_LONG : META_ERR_NONE;
    switch (req->mode) {
    case 0:
    case 'S':
        req->store_op = META_STORE_SET;
        break;
    case 'E':
        req->store_op = META_STORE_ADD;
        break;
    case 'A':
        req->store_op = META_STORE_APPEND;
        break;
    case 'P':
        req->store_op = META_STORE_PREPEND;
        break;
    case 'R':
        req->store_op = META_STORE_REPLACE;
        break;
    default:
        return meta_fail(req, META_ERR_MS_MODE);
    }
    if (meta_has_flag(req, 'C') &&
        (req->store_op == META_STORE_SET || req->store_op == META_STORE_REPLACE)) {
        req->store_op = META_STORE_CAS;
    }
    req->invalidate = meta_has_flag(req, 'I') && req->store_op == META_STORE_CAS;
    return err == META_ERR_NONE ? 0 : meta_fail(req, err);
}

/* ma after the flags: the mode, then the opaque (checked after the arithmetic). */
static int meta_finish_ma(struct meta_request *req)
{
    switch (req->mode) {
    case 0:
    case 'I':
    case '+':
        req->incr = true;
        break;
    case 'D':
    case '-':
        req->incr = false;
        break;
    default:
        return meta_fail(req, META_ERR_MA_MODE);
    }
    if (meta_opaque_too_long(req)) {
        req->err_after_exec = true;
        return meta_fail(req, META_ERR_OPAQUE_TOO_LONG);
    }
    return 0;
}

int meta_parse(const struct text_request *treq, char *keybuf, struct meta_request *req)
{
    memset(req, 0, sizeof(*req));
    req->delta = 1;
    req->incr = true;

    if (treq->cmd != TEXT_CMD_META || treq->nargs < 1 || treq->args[0].len != 2 ||
        treq->args[0].p[0] != 'm') {
        return meta_fail(req, META_ERR_ERROR);
    }
    switch (treq->args[0].p[1]) {
    case 'g':
        req->cmd = META_CMD_MG;
        break;
    case 's':
        req->cmd = META_CMD_MS;
        break;
    case 'd':
        req->cmd = META_CMD_MD;
        break;
    case 'a':
        req->cmd = META_CMD_MA;
        break;
    case 'n':
        req->cmd = META_CMD_MN;
        return 0;
    case 'e':
        req->cmd = META_CMD_ME;
        return meta_parse_me(treq, keybuf, req);
    default:
        return meta_fail(req, META_ERR_ERROR);
    }

    if (treq->nargs < 2) {
        return meta_fail(req, META_ERR_ERROR);
    }
    req->key_token = treq->args[1];
    req->key = req->key_token;
    if (req->key_token.len > META_KEY_MAX) {
        return meta_fail(req, META_ERR_BAD_FORMAT);
    }
    bool is_ms = req->cmd == META_CMD_MS;
    if (is_ms && treq->nargs == 2) {
        return meta_fail(req, META_ERR_BAD_FORMAT);
    }
    if (treq->nargs > META_MAX_TOKENS || treq->args_more) {
        return meta_fail(req, req->cmd == META_CMD_MG ? META_ERR_FLAGS_TOO_LONG_MG
                                                      : META_ERR_FLAGS_TOO_LONG);
    }
    if (is_ms) {
        int32_t len;
        const struct text_token *t = &treq->args[2];
        if (!num_parse_i32(t->p, t->len, &len) || len < 0 || len > INT_MAX - 2) {
            return meta_fail(req, META_ERR_BAD_FORMAT);
        }
        req->data_len = (uint32_t)len;
        req->read_len = (size_t)len + 2;
        req->swallow = true;
    }

    enum meta_error err = meta_parse_flags(treq, is_ms ? 3 : 2, keybuf, req);
    if (err != META_ERR_NONE) {
        if (req->cmd == META_CMD_MD || req->cmd == META_CMD_MA) {
            err = META_ERR_INVALID_OR_DUPLICATE;
        }
        return meta_fail(req, err);
    }

    switch (req->cmd) {
    case META_CMD_MG:
        if (meta_opaque_too_long(req)) {
            req->err_after_exec = true;
            return meta_fail(req, META_ERR_OPAQUE_TOO_LONG);
        }
        return 0;
    case META_CMD_MS:
        return meta_finish_ms(req);
    case META_CMD_MD:
        return meta_opaque_too_long(req) ? meta_fail(req, META_ERR_OPAQUE_TOO_LONG) : 0;
    case META_CMD_MA:
        return meta_finish_ma(req);
    default:
        return 0;
    }
}

/* ---- Composition ---- */

/* A bounded writer: once something does not fit, everything after is dropped. */
struct meta_out {
    char *p;
    char *end;
    bool overflow;
};

static void meta_put(struct meta_out *o, const void *s, size_t n)
{
    if (o->overflow || (size_t)(o->end - o->p) < n) {
        o->overflow = true;
        return;
    }
    memcpy(o->p, s, n);
    o->p += n;
}

static void meta_put_str(struct meta_out *o, const char *s)
{
    meta_put(o, s, strlen(s));
}

static void meta_put_u64(struct meta_out *o, uint64_t v)
{
    char num[20];
    meta_put(o, num, num_format_u64(num, v));
}

static void meta_put_i64(struct meta_out *o, int64_t v)
{
    if (v < 0) {
        meta_put(o, "-", 1);
        meta_put_u64(o, 0 - (uint64_t)v);
    } else {
        meta_put_u64(o, (uint64_t)v);
    }
}

/* " <c>" as memcached's META_CHAR. */
static void meta_put_flag(struct meta_out *o, char c)
{
    char s[2] = {' ', c};
    meta_put(o, s, 2);
}

/* " k<key>" or " k<base64> b". */
static void meta_put_key(struct meta_out *o, const char *key, size_t nkey, bool binary)
{
    meta_put_flag(o, 'k');
    if (!binary) {
        meta_put(o, key, nkey);
        return;
    }
    /* Keys are at most 250 bytes, so 4 * 84 characters suffice. */
    char enc[4 * ((META_KEY_MAX + 2) / 3)];
    if (nkey > META_KEY_MAX) {
        o->overflow = true;
        return;
    }
    meta_put(o, enc, meta_base64_encode((const unsigned char *)key, nkey, enc));
    meta_put(o, " b", 2);
}

static size_t meta_out_done(struct meta_out *o, char *buf)
{
    meta_put(o, "\r\n", 2);
    return o->overflow ? 0 : (size_t)(o->p - buf);
}

static const char *meta_rc_string(enum meta_rc rc)
{
    switch (rc) {
    case META_RC_HD:
        return "HD";
    case META_RC_VA:
        return "VA";
    case META_RC_EN:
        return "EN";
    case META_RC_NF:
        return "NF";
    case META_RC_NS:
        return "NS";
    case META_RC_EX:
        return "EX";
    case META_RC_MN:
        return "MN";
    }
    return "EN";
}

/* The flags of a mg or ma success line (the item exists). */
static void meta_put_item_flags(struct meta_out *o, const struct meta_request *req,
                                const struct meta_item_facts *f)
{
    bool mg = req->cmd == META_CMD_MG;
    int64_t ttl = f->ttl;
    for (unsigned i = 0; i < req->norder; i++) {
        char c = req->order[i];
        switch (c) {
        case 'T':
            ttl = f->ttl_after_t;
            break;
        case 'N':
            if (f->created) {
                ttl = f->ttl_after_n;
            }
            break;
        case 't':
            meta_put_flag(o, 't');
            meta_put_i64(o, ttl < 0 ? -1 : ttl);
            break;
        case 'c':
            meta_put_flag(o, 'c');
            meta_put_u64(o, f->cas);
            break;
        case 'O':
            meta_put(o, " ", 1);
            meta_put(o, req->opaque.p, req->opaque.len);
            break;
        case 'k':
            if (mg && f->key != NULL) {
                meta_put_key(o, f->key, f->nkey, f->key_binary);
            } else {
                meta_put_key(o, req->key.p, req->key.len, req->key_binary);
            }
            break;
        case 's':
        case 'f':
        case 'l':
        case 'h':
            if (!mg) {
                break;
            }
            meta_put_flag(o, c);
            if (c == 's') {
                meta_put_u64(o, f->value_len);
            } else if (c == 'f') {
                meta_put_u64(o, f->client_flags);
            } else if (c == 'l') {
                meta_put_u64(o, f->last_access);
            } else {
                meta_put(o, f->fetched ? "1" : "0", 1);
            }
            break;
        default:
            break;
        }
    }
    if (mg) {
        if (f->token_sent) {
            meta_put_flag(o, 'Z');
        }
        if (f->stale) {
            meta_put_flag(o, 'X');
        }
        if (f->win) {
            meta_put_flag(o, 'W');
        }
    }
}

size_t meta_compose(char *buf, size_t cap, const struct meta_request *req, enum meta_rc rc,
                    const struct meta_item_facts *facts)
{
    struct meta_out o = {buf, buf + cap, false};
    meta_put_str(&o, meta_rc_string(rc));
    if (rc == META_RC_VA) {
        meta_put(&o, " ", 1);
        meta_put_u64(&o, facts != NULL ? facts->value_len : 0);
    }
    if (rc == META_RC_MN || req->cmd == META_CMD_ME || req->cmd == META_CMD_MN) {
        return meta_out_done(&o, buf);
    }

    bool success = rc == META_RC_HD || rc == META_RC_VA;
    if ((req->cmd == META_CMD_MG || req->cmd == META_CMD_MA) && success && facts != NULL) {
        meta_put_item_flags(&o, req, facts);
        return meta_out_done(&o, buf);
    }

    /* ms, md, and mg/ma without an item: O and k, and c for ms. */
    for (unsigned i = 0; i < req->norder; i++) {
        char c = req->order[i];
        if (c == 'O') {
            meta_put(&o, " ", 1);
            meta_put(&o, req->opaque.p, req->opaque.len);
        } else if (c == 'k') {
            meta_put_key(&o, req->key.p, req->key.len, req->key_binary);
        } else if (c == 'c' && req->cmd == META_CMD_MS) {
            meta_put_flag(&o, 'c');
            meta_put_u64(&o, rc == META_RC_HD && facts != NULL ? facts->cas : 0);
        }
    }
    return meta_out_done(&o, buf);
}

size_t meta_compose_me(char *buf, size_t cap, const struct meta_me_facts *f)
{
    struct meta_out o = {buf, buf + cap, false};
    meta_put(&o, "ME ", 3);
    if (f->key_binary) {
        char enc[4 * ((META_KEY_MAX + 2) / 3)];
        if (f->nkey > META_KEY_MAX) {
            return 0;
        }
        meta_put(&o, enc, meta_base64_encode((const unsigned char *)f->key, f->nkey, enc));
    } else {
        meta_put(&o, f->key, f->nkey);
    }
    meta_put_str(&o, " exp=");
    meta_put_i64(&o, f->ttl < 0 ? -1 : -f->ttl);
    meta_put_str(&o, " la=");
    meta_put_u64(&o, f->last_access);
    meta_put_str(&o, " cas=");
    meta_put_u64(&o, f->cas);
    meta_put_str(&o, f->fetched ? " fetch=yes" : " fetch=no");
    meta_put_str(&o, " cls=");
    meta_put_u64(&o, f->slab_class);
    meta_put_str(&o, " size=");
    meta_put_u64(&o, f->total_size);
    return meta_out_done(&o, buf);
}

bool meta_reply_skipped(const struct meta_request *req, enum meta_rc rc, bool created)
{
    if (!meta_has_flag(req, 'q')) {
        return false;
    }
    switch (req->cmd) {
    case META_CMD_MG:
        return rc == META_RC_EN;
    case META_CMD_MS:
    case META_CMD_MD:
        return rc == META_RC_HD;
    case META_CMD_MA:
        return (rc == META_RC_HD || rc == META_RC_VA) && !created;
    default:
        return false;
    }
}

char meta_ttl_source(const struct meta_request *req, bool created)
{
    char source = 0;
    for (unsigned i = 0; i < req->norder; i++) {
        char c = req->order[i];
        if (c == 'T' || (c == 'N' && created)) {
            source = c;
        }
    }
    return source;
}

bool meta_data_ok(const char *block, size_t read_len)
{
    return read_len >= 2 && block[read_len - 2] == '\r' && block[read_len - 1] == '\n';
}

/*
 * reply.c - text and meta protocol reply parser for the client, and the
 * binary response normalisation (see reply.h).
 */
#include "reply.h"

#include <string.h>

#include "binary.h"
#include "meta.h"
#include "numparse.h"
#include "text.h"

static bool span_is(const char *p, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    return n == l && memcmp(p, lit, l) == 0;
}

static bool starts(const char *p, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    return n >= l && memcmp(p, lit, l) == 0;
}

static bool all_digits(const char *p, size_t n)
{
    if (n == 0) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return false;
        }
    }
    return true;
}

/* Next space-separated token of [*p, end) (the server codec's tokenizer). */
static bool next_tok(const char **p, const char *end, struct reply_span *t)
{
    struct text_token tok;
    if (!text_next_token(p, end, &tok)) {
        return false;
    }
    t->p = tok.p;
    t->len = tok.len;
    return true;
}

bool reply_has_mflag(const struct reply *r, char c)
{
    int bit = meta_flag_bit(c);
    return bit >= 0 && ((r->mflags >> bit) & 1u) != 0;
}

/* The return flags of a meta reply line, from p to end. */
static bool parse_meta_flags(const char *p, const char *end, struct reply *r)
{
    struct reply_span t;
    while (next_tok(&p, end, &t)) {
        int bit = meta_flag_bit(t.p[0]);
        if (bit < 0) {
            return false;
        }
        const char *v = t.p + 1;
        size_t nv = t.len - 1;
        switch (t.p[0]) {
        case 'f':
            if (!all_digits(v, nv) || !num_parse_u32(v, nv, &r->flags)) {
                return false;
            }
            break;
        case 'c':
            if (!all_digits(v, nv) || !num_parse_u64(v, nv, &r->cas)) {
                return false;
            }
            r->has_cas = true;
            break;
        case 't':
            if (nv == 0 || !num_parse_i64(v, nv, &r->ttl)) {
                return false;
            }
            break;
        case 's':
            if (!all_digits(v, nv) || !num_parse_u64(v, nv, &r->size)) {
                return false;
            }
            break;
        case 'k':
            r->key.p = v;
            r->key.len = nv;
            break;
        case 'O':
            r->opaque.p = v;
            r->opaque.len = nv;
            break;
        default:
            /* b h l W X Z and flags this client does not ask for: the bit is enough. */
            break;
        }
        r->mflags |= (uint64_t)1 << bit;
    }
    return true;
}

/* A meta reply line: "XX" or "XX <tokens>". */
static bool meta_code(const char *line, size_t n, const char *code)
{
    return n >= 2 && line[0] == code[0] && line[1] == code[1] && (n == 2 || line[2] == ' ');
}

static enum reply_status parse_meta_va(const char *buf, size_t len, const char *line, size_t nline,
                                       size_t linelen, struct reply *r, size_t *consumed)
{
    const char *p = line + 2, *end = line + nline;
    struct reply_span vlen;
    uint64_t nbytes;
    if (!next_tok(&p, end, &vlen) || !all_digits(vlen.p, vlen.len) ||
        !num_parse_u64(vlen.p, vlen.len, &nbytes) || nbytes > SIZE_MAX / 2) {
        return REPLY_BAD;
    }
    r->ttl = -1;
    if (!parse_meta_flags(p, end, r)) {
        return REPLY_BAD;
    }
    size_t need = linelen + (size_t)nbytes + 2;
    if (len < need) {
        return REPLY_NEED_MORE;
    }
    if (buf[need - 2] != '\r' || buf[need - 1] != '\n') {
        return REPLY_BAD;
    }
    r->kind = REPLY_META_VA;
    r->data.p = buf + linelen;
    r->data.len = (size_t)nbytes;
    *consumed = need;
    return REPLY_DONE;
}

static enum reply_status parse_value(const char *buf, size_t len, const char *line, size_t nline,
                                     size_t linelen, struct reply *r, size_t *consumed)
{
    const char *p = line + 6, *end = line + nline;
    struct reply_span key, flags, bytes, cas;
    if (!next_tok(&p, end, &key) || !next_tok(&p, end, &flags) || !next_tok(&p, end, &bytes)) {
        return REPLY_BAD;
    }
    uint64_t nbytes;
    if (!all_digits(flags.p, flags.len) || !num_parse_u32(flags.p, flags.len, &r->flags) ||
        !all_digits(bytes.p, bytes.len) || !num_parse_u64(bytes.p, bytes.len, &nbytes)) {
        return REPLY_BAD;
    }
    if (next_tok(&p, end, &cas)) {
        if (!all_digits(cas.p, cas.len) || !num_parse_u64(cas.p, cas.len, &r->cas)) {
            return REPLY_BAD;
        }
        r->has_cas = true;
        struct reply_span extra;
        if (next_tok(&p, end, &extra)) {
            return REPLY_BAD;
        }
    }
    if (nbytes > SIZE_MAX / 2) {
        return REPLY_BAD;
    }
    size_t need = linelen + (size_t)nbytes + 2;
    if (len < need) {
        return REPLY_NEED_MORE;
    }
    if (buf[need - 2] != '\r' || buf[need - 1] != '\n') {
        return REPLY_BAD;
    }
    r->kind = REPLY_VALUE;
    r->key = key;
    r->data.p = buf + linelen;
    r->data.len = (size_t)nbytes;
    *consumed = need;
    return REPLY_DONE;
}

enum reply_status reply_parse(const char *buf, size_t len, struct reply *r, size_t *consumed)
{
    memset(r, 0, sizeof(*r));
    *consumed = 0;
    size_t scan = len < REPLY_LINE_MAX ? len : REPLY_LINE_MAX;
    const char *nl = memchr(buf, '\n', scan);
    if (!nl) {
        return len >= REPLY_LINE_MAX ? REPLY_BAD : REPLY_NEED_MORE;
    }
    size_t linelen = (size_t)(nl - buf) + 1;
    size_t n = linelen - 1;
    if (n == 0 || buf[n - 1] != '\r') {
        return REPLY_BAD;
    }
    n--;
    const char *line = buf;

    if (starts(line, n, "VALUE ")) {
        return parse_value(buf, len, line, n, linelen, r, consumed);
    }
    if (meta_code(line, n, "VA")) {
        memset(r, 0, sizeof(*r));
        return parse_meta_va(buf, len, line, n, linelen, r, consumed);
    }
    static const struct {
        char code[3];
        enum reply_kind kind;
    } meta[] = {
        {"HD", REPLY_META_HD}, {"EN", REPLY_META_EN}, {"NF", REPLY_META_NF},
        {"NS", REPLY_META_NS}, {"EX", REPLY_META_EX}, {"MN", REPLY_MN},
    };
    for (size_t i = 0; i < sizeof(meta) / sizeof(meta[0]); i++) {
        if (meta_code(line, n, meta[i].code)) {
            r->kind = meta[i].kind;
            r->ttl = -1;
            if (!parse_meta_flags(line + 2, line + n, r)) {
                return REPLY_BAD;
            }
            *consumed = linelen;
            return REPLY_DONE;
        }
    }
    *consumed = linelen;
    if (span_is(line, n, "END")) {
        r->kind = REPLY_END;
    } else if (span_is(line, n, "STORED")) {
        r->kind = REPLY_STORED;
    } else if (span_is(line, n, "NOT_STORED")) {
        r->kind = REPLY_NOT_STORED;
    } else if (span_is(line, n, "EXISTS")) {
        r->kind = REPLY_EXISTS;
    } else if (span_is(line, n, "NOT_FOUND")) {
        r->kind = REPLY_NOT_FOUND;
    } else if (span_is(line, n, "DELETED")) {
        r->kind = REPLY_DELETED;
    } else if (span_is(line, n, "TOUCHED")) {
        r->kind = REPLY_TOUCHED;
    } else if (span_is(line, n, "OK")) {
        r->kind = REPLY_OK;
    } else if (starts(line, n, "VERSION ")) {
        r->kind = REPLY_VERSION;
        r->text.p = line + 8;
        r->text.len = n - 8;
    } else if (starts(line, n, "STAT ")) {
        const char *p = line + 5, *end = line + n;
        if (!next_tok(&p, end, &r->name)) {
            return REPLY_BAD;
        }
        if (p < end) {
            p++; /* the one space after the name; the value is the rest */
        }
        r->kind = REPLY_STAT;
        r->text.p = p;
        r->text.len = (size_t)(end - p);
    } else if (span_is(line, n, "ERROR") || starts(line, n, "ERROR ")) {
        r->kind = REPLY_ERROR;
        r->text.p = line + (n > 5 ? 6 : 5);
        r->text.len = n > 5 ? n - 6 : 0;
    } else if (starts(line, n, "CLIENT_ERROR")) {
        r->kind = REPLY_CLIENT_ERROR;
        r->text.p = line + (n > 12 ? 13 : 12);
        r->text.len = n > 12 ? n - 13 : 0;
    } else if (starts(line, n, "SERVER_ERROR")) {
        r->kind = REPLY_SERVER_ERROR;
        r->text.p = line + (n > 12 ? 13 : 12);
        r->text.len = n > 12 ? n - 13 : 0;
    } else if (all_digits(line, n) && num_parse_u64(line, n, &r->number)) {
        r->kind = REPLY_NUMBER;
    } else {
        *consumed = 0;
        return REPLY_BAD;
    }
    return REPLY_DONE;
}

enum reply_status reply_parse_line(const char *buf, size_t len, struct reply *r, size_t *consumed)
{
    memset(r, 0, sizeof(*r));
    *consumed = 0;
    size_t scan = len < REPLY_LINE_MAX ? len : REPLY_LINE_MAX;
    const char *nl = memchr(buf, '\n', scan);
    if (!nl) {
        return len >= REPLY_LINE_MAX ? REPLY_BAD : REPLY_NEED_MORE;
    }
    size_t n = (size_t)(nl - buf);
    *consumed = n + 1;
    if (n > 0 && buf[n - 1] == '\r') {
        n--;
    }
    r->kind = REPLY_LINE;
    r->text.p = buf;
    r->text.len = n;
    return REPLY_DONE;
}

void reply_from_bin(const struct bin_response *b, struct reply *r)
{
    memset(r, 0, sizeof(*r));
    r->binary = true;
    r->opcode = b->hdr.opcode;
    r->status = b->hdr.status;
    r->cas = b->hdr.cas;
    r->key.p = b->key.p;
    r->key.len = b->key.len;
    r->flags = b->flags;
    r->ttl = -1;
    uint8_t op = bin_opcode_base(b->hdr.opcode);
    if (b->hdr.status != BIN_STATUS_OK) {
        r->text.p = b->value.p;
        r->text.len = b->value.len;
        switch (b->hdr.status) {
        case BIN_STATUS_KEY_ENOENT:
            r->kind = REPLY_NOT_FOUND;
            break;
        case BIN_STATUS_KEY_EEXISTS:
            r->kind = REPLY_EXISTS;
            break;
        case BIN_STATUS_NOT_STORED:
            r->kind = REPLY_NOT_STORED;
            break;
        case BIN_STATUS_UNKNOWN_COMMAND:
            r->kind = REPLY_ERROR;
            break;
        case BIN_STATUS_EINVAL:
        case BIN_STATUS_DELTA_BADVAL:
            r->kind = REPLY_CLIENT_ERROR;
            break;
        case BIN_STATUS_E2BIG:
            r->kind = REPLY_SERVER_ERROR;
            r->text.p = "object too large for cache";
            r->text.len = strlen(r->text.p);
            break;
        default:
            r->kind = REPLY_SERVER_ERROR;
            break;
        }
        return;
    }
    switch (op) {
    case BIN_OP_GET:
    case BIN_OP_GETK:
    case BIN_OP_GAT:
    case BIN_OP_GATK:
        r->kind = REPLY_VALUE;
        r->data.p = b->value.p;
        r->data.len = b->value.len;
        r->has_cas = true;
        break;
    case BIN_OP_SET:
    case BIN_OP_ADD:
    case BIN_OP_REPLACE:
    case BIN_OP_APPEND:
    case BIN_OP_PREPEND:
        r->kind = REPLY_STORED;
        break;
    case BIN_OP_DELETE:
        r->kind = REPLY_DELETED;
        break;
    case BIN_OP_INCREMENT:
    case BIN_OP_DECREMENT:
        r->kind = b->has_number ? REPLY_NUMBER : REPLY_SERVER_ERROR;
        r->number = b->number;
        break;
    case BIN_OP_TOUCH:
        r->kind = REPLY_TOUCHED;
        break;
    case BIN_OP_FLUSH:
    case BIN_OP_QUIT:
        r->kind = REPLY_OK;
        break;
    case BIN_OP_NOOP:
        r->kind = REPLY_MN;
        break;
    case BIN_OP_VERSION:
        r->kind = REPLY_VERSION;
        r->text.p = b->value.p;
        r->text.len = b->value.len;
        break;
    case BIN_OP_STAT:
        if (b->key.len == 0) {
            r->kind = REPLY_END;
        } else {
            r->kind = REPLY_STAT;
            r->name.p = b->key.p;
            r->name.len = b->key.len;
            r->text.p = b->value.p;
            r->text.len = b->value.len;
        }
        break;
    default:
        r->kind = REPLY_SERVER_ERROR;
        break;
    }
}

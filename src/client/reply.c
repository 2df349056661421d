/*
 * reply.c - text protocol reply parser for the client (see reply.h).
 */
#include "reply.h"

#include <string.h>

#include "numparse.h"

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

/* Next space-separated token of [*p, end). */
static bool next_tok(const char **p, const char *end, struct reply_span *t)
{
    const char *s = *p;
    while (s < end && *s == ' ') {
        s++;
    }
    if (s == end) {
        return false;
    }
    const char *e = s;
    while (e < end && *e != ' ') {
        e++;
    }
    t->p = s;
    t->len = (size_t)(e - s);
    *p = e;
    return true;
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

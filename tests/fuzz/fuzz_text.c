/*
 * fuzz_text.c - libFuzzer driver for the text protocol codec (proto/text.h).
 *
 * The input is a byte stream as a client would send it. The driver:
 *   1. parses it as a pipelined stream with text_parse(), consuming each
 *      line and skipping the data block of a storage command as a server
 *      does, and checks every result's invariants (consumed within the
 *      buffer, key and token spans inside the line, key lengths, the
 *      error/command pairing, numbers in range);
 *   2. re-parses each line from a few prefixes of itself (heap copies of
 *      exactly that many bytes) and asserts the differential property of a
 *      resumable parser: a prefix holding the whole line gives the same
 *      result as the whole buffer, a shorter one gives NEED_MORE (or CLOSE
 *      once more than TEXT_LINE_MAX bytes sit without a newline);
 *   3. replays the stream in chunks of pseudo-random sizes, as reads from a
 *      socket would deliver it, and asserts that the requests seen are
 *      exactly those of step 1.
 *
 * What this is not: a test of what the server does with the requests; see
 * fuzz_server.c for that.
 */
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"
#include "text.h"

/* Lines examined per input; inputs are at most a few KiB. */
#define MAX_LINES 512

/* One parse, as step 1 saw it. */
struct seen {
    size_t off; /* stream offset of the line */
    enum text_status st;
    size_t used;
    struct text_request req;
};

static bool is_keyed(enum text_cmd c)
{
    switch (c) {
    case TEXT_CMD_SET:
    case TEXT_CMD_ADD:
    case TEXT_CMD_REPLACE:
    case TEXT_CMD_APPEND:
    case TEXT_CMD_PREPEND:
    case TEXT_CMD_CAS:
    case TEXT_CMD_DELETE:
    case TEXT_CMD_INCR:
    case TEXT_CMD_DECR:
    case TEXT_CMD_TOUCH:
        return true;
    default:
        return false;
    }
}

static bool is_storage(enum text_cmd c)
{
    return c >= TEXT_CMD_SET && c <= TEXT_CMD_CAS;
}

static bool is_get(enum text_cmd c)
{
    return c >= TEXT_CMD_GET && c <= TEXT_CMD_GATS;
}

static bool token_eq(const struct text_token *t, const char *s)
{
    size_t n = strlen(s);
    return t->len == n && memcmp(t->p, s, n) == 0;
}

/* Mirrors text_is_multiget(): a line that may grow without bound. */
static bool starts_multiget(const char *buf, size_t len)
{
    size_t i = 0;
    while (i < len && buf[i] == ' ') {
        i++;
    }
    if (i > TEXT_LEADING_SPACE_MAX) {
        return false;
    }
    return (len - i >= 4 && memcmp(buf + i, "get ", 4) == 0) ||
           (len - i >= 5 && memcmp(buf + i, "gets ", 5) == 0);
}

/* Invariants of a filled request whose line is buf[0..used). */
static void check_request(const char *buf, size_t used, const struct text_request *req)
{
    FUZZ_CHECK(req->line == buf);
    FUZZ_CHECK(req->line_len + 1 <= used);
    FUZZ_CHECK(memchr(req->line, '\0', req->line_len) == NULL);
    FUZZ_CHECK(memchr(req->line, '\n', req->line_len) == NULL);
    const char *line = req->line;
    size_t n = req->line_len;

    FUZZ_CHECK(req->cmd >= TEXT_CMD_ERROR && req->cmd < TEXT_CMD_COUNT_);
    FUZZ_CHECK(req->err >= TEXT_ERR_NONE && req->err <= TEXT_ERR_SHUTDOWN_MODE);
    FUZZ_CHECK((req->cmd == TEXT_CMD_ERROR) == (req->err != TEXT_ERR_NONE));
    FUZZ_CHECK(req->cmd == TEXT_CMD_ERROR || req->err_cmd == TEXT_CMD_ERROR);
    FUZZ_CHECK(text_error_string(req->err) != NULL);
    FUZZ_CHECK((req->err == TEXT_ERR_NONE) == (text_error_string(req->err)[0] == '\0'));

    /* Tokens: in order, inside the line, non-empty, without spaces. */
    FUZZ_CHECK(req->nargs <= TEXT_MAX_TOKENS - 1);
    FUZZ_CHECK(!req->args_more || req->nargs == TEXT_MAX_TOKENS - 1);
    const char *prev_end = line;
    for (unsigned i = 0; i < req->nargs; i++) {
        const struct text_token *t = &req->args[i];
        FUZZ_CHECK(t->len > 0);
        FUZZ_CHECK(fuzz_span_in(t->p, t->len, line, n));
        FUZZ_CHECK(t->p >= prev_end);
        FUZZ_CHECK(memchr(t->p, ' ', t->len) == NULL);
        FUZZ_CHECK(t->p == line || t->p[-1] == ' ');
        FUZZ_CHECK(t->p + t->len == line + n || t->p[t->len] == ' ');
        prev_end = t->p + t->len;
    }
    /* Slots from args[nargs] on are not cleared (text.h): nothing to check there. */

    if (req->cmd != TEXT_CMD_ERROR && req->cmd != TEXT_CMD_STATS) {
        FUZZ_CHECK(req->nargs >= 1);
    }
    if (req->noreply && req->cmd != TEXT_CMD_ERROR) {
        FUZZ_CHECK(token_eq(&req->args[req->nargs - 1], "noreply"));
    }

    if (is_keyed(req->cmd)) {
        FUZZ_CHECK(req->key.len >= 1 && req->key.len <= TEXT_KEY_MAX);
        FUZZ_CHECK(req->key.p == req->args[1].p && req->key.len == req->args[1].len);
        FUZZ_CHECK(fuzz_span_in(req->key.p, req->key.len, line, n));
    } else if (req->cmd != TEXT_CMD_ERROR) {
        FUZZ_CHECK(req->key.p == NULL && req->key.len == 0);
    }
    if (req->key.p != NULL) {
        FUZZ_CHECK(fuzz_span_in(req->key.p, req->key.len, line, n));
    }

    if (is_storage(req->cmd)) {
        FUZZ_CHECK(req->bytes <= (uint32_t)INT_MAX - 2);
        FUZZ_CHECK(req->nargs >= 5);
    } else if (req->cmd != TEXT_CMD_ERROR) {
        FUZZ_CHECK(req->bytes == 0 && req->flags == 0);
    }
    if (req->cmd != TEXT_CMD_CAS && req->cmd != TEXT_CMD_ERROR) {
        FUZZ_CHECK(req->cas == 0);
    }
    if (req->cmd == TEXT_CMD_VERBOSITY || req->cmd == TEXT_CMD_CACHE_MEMLIMIT) {
        FUZZ_CHECK(req->delta <= UINT32_MAX);
    }
    FUZZ_CHECK(!req->graceful || req->cmd == TEXT_CMD_SHUTDOWN);

    if (is_get(req->cmd)) {
        FUZZ_CHECK(fuzz_span_in(req->keys, req->keys_len, line, n));
        FUZZ_CHECK(req->keys + req->keys_len == line + n);
        const char *p = req->keys;
        const char *end = req->keys + req->keys_len;
        struct text_token k;
        uint32_t count = 0;
        while (text_next_token(&p, end, &k)) {
            FUZZ_CHECK(k.len >= 1 && k.len <= TEXT_KEY_MAX);
            FUZZ_CHECK(fuzz_span_in(k.p, k.len, req->keys, req->keys_len));
            count++;
        }
        FUZZ_CHECK(count == req->nkeys);
        if (req->cmd == TEXT_CMD_GET || req->cmd == TEXT_CMD_GETS) {
            FUZZ_CHECK(req->nkeys >= 1);
        }
    } else if (req->cmd != TEXT_CMD_ERROR) {
        FUZZ_CHECK(req->keys == NULL && req->keys_len == 0 && req->nkeys == 0);
    }
    if (req->cmd == TEXT_CMD_META) {
        FUZZ_CHECK(req->args[0].len == 2 && req->args[0].p[0] == 'm');
        FUZZ_CHECK(strchr("gsdane", req->args[0].p[1]) != NULL);
    }
}

/* Invariants of one text_parse() result over buf[0..len). */
static void check_result(const char *buf, size_t len, enum text_status st,
                         const struct text_request *req, size_t used)
{
    FUZZ_CHECK(used <= len);
    const char *nl = memchr(buf, '\n', len);
    switch (st) {
    case TEXT_OK:
        FUZZ_CHECK(nl != NULL && used == (size_t)(nl - buf) + 1);
        check_request(buf, used, req);
        break;
    case TEXT_NEED_MORE:
        FUZZ_CHECK(used == 0 && nl == NULL);
        FUZZ_CHECK(len <= TEXT_LINE_MAX || starts_multiget(buf, len));
        break;
    case TEXT_CLOSE:
        if (used == 0) {
            FUZZ_CHECK(nl == NULL && len > TEXT_LINE_MAX && !starts_multiget(buf, len));
        } else {
            /* An HTTP probe: a whole line, refused. */
            FUZZ_CHECK(nl != NULL && used == (size_t)(nl - buf) + 1);
            check_request(buf, used, req);
            FUZZ_CHECK(req->cmd == TEXT_CMD_ERROR && req->err == TEXT_ERR_ERROR);
        }
        break;
    default:
        FUZZ_CHECK(!"unknown text_status");
    }
}

static void check_token_same(const struct text_token *a, const char *abase,
                             const struct text_token *b, const char *bbase)
{
    FUZZ_CHECK(fuzz_off(a->p, abase) == fuzz_off(b->p, bbase));
    FUZZ_CHECK(a->len == b->len);
}

/* Two parses of the same line from two copies give the same request. */
static void check_same(const struct text_request *a, const char *abase,
                       const struct text_request *b, const char *bbase)
{
    FUZZ_CHECK(a->cmd == b->cmd);
    FUZZ_CHECK(a->err == b->err);
    FUZZ_CHECK(a->err_cmd == b->err_cmd);
    FUZZ_CHECK(a->noreply == b->noreply);
    FUZZ_CHECK(fuzz_off(a->line, abase) == fuzz_off(b->line, bbase));
    FUZZ_CHECK(a->line_len == b->line_len);
    check_token_same(&a->key, abase, &b->key, bbase);
    if (a->key.len > 0) {
        FUZZ_CHECK(memcmp(a->key.p, b->key.p, a->key.len) == 0);
    }
    FUZZ_CHECK(a->flags == b->flags);
    FUZZ_CHECK(a->exptime == b->exptime);
    FUZZ_CHECK(a->bytes == b->bytes);
    FUZZ_CHECK(a->cas == b->cas);
    FUZZ_CHECK(a->delta == b->delta);
    FUZZ_CHECK(a->graceful == b->graceful);
    FUZZ_CHECK(fuzz_off(a->keys, abase) == fuzz_off(b->keys, bbase));
    FUZZ_CHECK(a->keys_len == b->keys_len);
    FUZZ_CHECK(a->nkeys == b->nkeys);
    FUZZ_CHECK(a->nargs == b->nargs);
    FUZZ_CHECK(a->args_more == b->args_more);
    for (unsigned i = 0; i < a->nargs; i++) {
        check_token_same(&a->args[i], abase, &b->args[i], bbase);
        FUZZ_CHECK(memcmp(a->args[i].p, b->args[i].p, a->args[i].len) == 0);
    }
}

/* Parses a heap copy of buf[0..k) and checks it against the whole-buffer result. */
static void check_prefix(const char *buf, size_t len, const struct seen *whole, size_t k)
{
    if (k > len) {
        return;
    }
    char *copy = fuzz_copy(buf, k);
    struct text_request req;
    memset(&req, 0xa5, sizeof(req)); /* stale slots must not leak into any field checked */
    size_t used = 12345;
    enum text_status st = text_parse(copy, k, &req, &used);
    check_result(copy, k, st, &req, used);
    bool has_line = memchr(copy, '\n', k) != NULL;
    if (has_line) {
        /* The whole line is there: nothing after it may matter. */
        FUZZ_CHECK(st == whole->st);
        FUZZ_CHECK(used == whole->used);
        check_same(&req, copy, &whole->req, buf);
    } else if (st == TEXT_CLOSE) {
        /* Too long without a newline; more bytes cannot make it shorter. */
        FUZZ_CHECK(whole->st == TEXT_CLOSE || whole->used > k);
        FUZZ_CHECK(whole->st != TEXT_NEED_MORE);
    } else {
        FUZZ_CHECK(st == TEXT_NEED_MORE);
        FUZZ_CHECK(whole->st != TEXT_OK || whole->used > k);
    }
    free(copy);
}

/* The composers, fed from a parsed request. */
static void check_composers(const struct text_request *req)
{
    if (is_keyed(req->cmd)) {
        char *out = malloc(TEXT_VALUE_HEADER_MAX);
        FUZZ_CHECK(out != NULL);
        size_t n = text_compose_value(out, req->key.p, req->key.len, req->flags, req->bytes,
                                      req->cmd == TEXT_CMD_CAS, req->cas);
        FUZZ_CHECK(n >= 6 + req->key.len + 2 && n <= TEXT_VALUE_HEADER_MAX);
        FUZZ_CHECK(memcmp(out, "VALUE ", 6) == 0);
        FUZZ_CHECK(memcmp(out + 6, req->key.p, req->key.len) == 0);
        FUZZ_CHECK(out[n - 2] == '\r' && out[n - 1] == '\n');
        free(out);
    }
    if (req->nargs >= 1 && req->args[0].len < 64) {
        /* A stat named after the command, into a buffer that may be too small. */
        char name[64];
        memcpy(name, req->args[0].p, req->args[0].len);
        name[req->args[0].len] = '\0';
        size_t cap = req->line_len % 48;
        char *out = fuzz_copy("", cap);
        size_t n = text_compose_stat_u64(out, cap, name, req->delta);
        FUZZ_CHECK(n <= cap);
        FUZZ_CHECK(n == 0 || (memcmp(out, "STAT ", 5) == 0 && out[n - 1] == '\n'));
        n = text_compose_stat_str(out, cap, name, name);
        FUZZ_CHECK(n == 0 || n == 5 + 2 * strlen(name) + 1 + 2);
        free(out);
    }
}

/* Bytes a server skips after a line: the data block of a storage command. */
static size_t data_after(const struct seen *s)
{
    if (s->st == TEXT_OK && is_storage(s->req.cmd)) {
        return (size_t)s->req.bytes + 2;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    static struct seen seen[MAX_LINES];
    unsigned nseen = 0;

    /* 1 and 2: the whole stream, and prefixes of every line. */
    size_t off = 0;
    while (off < size && nseen < MAX_LINES) {
        struct seen *s = &seen[nseen++];
        s->off = off;
        s->used = 12345;
        s->st = text_parse(buf + off, size - off, &s->req, &s->used);
        check_result(buf + off, size - off, s->st, &s->req, s->used);

        size_t rest = size - off;
        size_t line = s->used > 0 ? s->used : rest;
        size_t splits[] = {0, 1, line / 2, line - 1, line, line + 1, TEXT_LINE_MAX + 1};
        for (size_t i = 0; i < sizeof(splits) / sizeof(splits[0]); i++) {
            if (splits[i] <= line + 1) {
                check_prefix(buf + off, rest, s, splits[i]);
            }
        }
        if (s->st != TEXT_OK) {
            break;
        }
        check_composers(&s->req);
        off += s->used;
        size_t skip = data_after(s);
        off = skip > size - off ? size : off + skip;
    }

    /* 3: the same stream, delivered in chunks. */
    uint64_t rng = fuzz_hash(data, size);
    size_t pos = 0;   /* next unparsed byte */
    size_t avail = 0; /* bytes received so far */
    unsigned idx = 0;
    while (idx < nseen) {
        const struct seen *s = &seen[idx];
        FUZZ_CHECK(pos == s->off);
        char *copy = fuzz_copy(buf + pos, avail - pos);
        struct text_request req;
        size_t used = 12345;
        enum text_status st = text_parse(copy, avail - pos, &req, &used);
        check_result(copy, avail - pos, st, &req, used);
        if (st == TEXT_NEED_MORE) {
            free(copy);
            if (avail == size) {
                FUZZ_CHECK(s->st == TEXT_NEED_MORE);
                break;
            }
            size_t chunk = 1 + (size_t)(fuzz_rand(&rng) % 64);
            avail = chunk > size - avail ? size : avail + chunk;
            continue;
        }
        if (st == TEXT_CLOSE && used == 0) {
            /* Closed on a long partial line: the whole stream agrees. */
            free(copy);
            FUZZ_CHECK(s->st == TEXT_CLOSE || s->used > avail - pos);
            break;
        }
        FUZZ_CHECK(st == s->st && used == s->used);
        check_same(&req, copy, &s->req, buf + pos);
        free(copy);
        if (st == TEXT_CLOSE) {
            break;
        }
        pos += used;
        size_t skip = data_after(s);
        pos = skip > size - pos ? size : pos + skip;
        if (avail < pos) {
            avail = pos;
        }
        idx++;
    }
    return 0;
}

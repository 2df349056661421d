/*
 * text.c - memcached ASCII protocol codec (see text.h).
 *
 * The dispatch order and token-count rules follow memcached 1.6.18's
 * process_command_ascii(): requests are told apart by their first letter,
 * a wrong number of tokens for a known command is a plain "ERROR", and
 * "noreply" is recognised as the last token before any argument is checked.
 * Behaviours that look odd here were confirmed against the 1.6.18 binary;
 * tests/unit/proto/test_text.c pins them.
 */
#include "text.h"

#include <limits.h>
#include <stddef.h>
#include <string.h>

#include "numparse.h"

/* memcached's tokenizer keeps at most this many real tokens per pass. */
#define TEXT_TOKENS_KEPT (TEXT_MAX_TOKENS - 1)

const char *text_error_string(enum text_error e)
{
    switch (e) {
    case TEXT_ERR_NONE:
        return "";
    case TEXT_ERR_ERROR:
        return "ERROR";
    case TEXT_ERR_BAD_FORMAT:
        return "CLIENT_ERROR bad command line format";
    case TEXT_ERR_DELETE_USAGE:
        return "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]";
    case TEXT_ERR_INVALID_EXPTIME:
        return "CLIENT_ERROR invalid exptime argument";
    case TEXT_ERR_INVALID_DELTA:
        return "CLIENT_ERROR invalid numeric delta argument";
    case TEXT_ERR_BAD_LINE:
        return "CLIENT_ERROR bad command line";
    case TEXT_ERR_SHUTDOWN_MODE:
        return "CLIENT_ERROR invalid shutdown mode";
    }
    return "ERROR";
}

/* text_next_token, inlined into the parser's own loops. */
static inline __attribute__((always_inline)) bool next_token(const char **p, const char *end,
                                                             struct text_token *tok)
{
    const char *s = *p;
    while (s < end && *s == ' ') {
        s++;
    }
    if (s == end) {
        *p = s;
        return false;
    }
    const char *e = s;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /*
     * Eight bytes at a time: a byte of w ^ 0x20.. is zero where w holds a
     * space, and the classic has-zero test flags it; the lowest flag is exact
     * on a little-endian load. Keys (10 to 60 bytes) take a few steps
     * instead of one per byte.
     */
    while (end - e >= 8) {
        uint64_t w;
        memcpy(&w, e, 8);
        uint64_t x = w ^ 0x2020202020202020ull;
        uint64_t hit = (x - 0x0101010101010101ull) & ~x & 0x8080808080808080ull;
        if (hit != 0) {
            e += __builtin_ctzll(hit) >> 3;
            goto found;
        }
        e += 8;
    }
#endif
    while (e < end && *e != ' ') {
        e++;
    }
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
found:
#endif
    tok->p = s;
    tok->len = (size_t)(e - s);
    *p = e;
    return true;
}

bool text_next_token(const char **p, const char *end, struct text_token *tok)
{
    return next_token(p, end, tok);
}

/*
 * True when buffered data without a newline may keep growing: it starts,
 * after at most TEXT_LEADING_SPACE_MAX spaces, with "get " or "gets ".
 */
static bool text_is_multiget(const char *buf, size_t len)
{
    size_t i = 0;
    while (i < len && buf[i] == ' ') {
        i++;
    }
    if (i > TEXT_LEADING_SPACE_MAX) {
        return false;
    }
    const char *s = buf + i;
    size_t n = len - i;
    return (n >= 4 && memcmp(s, "get ", 4) == 0) || (n >= 5 && memcmp(s, "gets ", 5) == 0);
}

static void text_fail(struct text_request *req, enum text_cmd which, enum text_error err)
{
    req->cmd = TEXT_CMD_ERROR;
    req->err_cmd = which;
    req->err = err;
}

/* memcached's set_noreply_maybe(): the last kept token is exactly "noreply". */
static bool text_last_is_noreply(const struct text_request *req)
{
    return req->nargs > 0 && text_token_is(&req->args[req->nargs - 1], "noreply");
}

static bool text_nargs_is(const struct text_request *req, unsigned a, unsigned b)
{
    return req->nargs == a || req->nargs == b;
}

/* get, gets, bget, gat, gats: req->nargs >= 2 already holds. */
static void text_parse_get(struct text_request *req, enum text_cmd cmd, const char *end)
{
    const struct text_token *after = &req->args[0];
    if (cmd == TEXT_CMD_GAT || cmd == TEXT_CMD_GATS) {
        after = &req->args[1];
        if (!num_parse_i32(after->p, after->len, &req->exptime)) {
            text_fail(req, cmd, TEXT_ERR_INVALID_EXPTIME);
            return;
        }
    }
    /* The keys run to the end of the line, past the tokens kept in args. */
    const char *p = after->p + after->len;
    struct text_token key;
    uint32_t nkeys = 0;
    req->keys = p;
    req->keys_len = (size_t)(end - p);
    while (next_token(&p, end, &key)) {
        if (key.len > TEXT_KEY_MAX) {
            text_fail(req, cmd, TEXT_ERR_BAD_FORMAT);
            return;
        }
        nkeys++;
    }
    req->nkeys = nkeys;
    req->cmd = cmd;
}

/* set, add, replace, append, prepend, cas. */
static void text_parse_storage(struct text_request *req, enum text_cmd cmd)
{
    bool is_cas = cmd == TEXT_CMD_CAS;
    if (!(is_cas ? text_nargs_is(req, 6, 7) : text_nargs_is(req, 5, 6))) {
        text_fail(req, cmd, TEXT_ERR_ERROR);
        return;
    }
    /*
     * A sixth (seventh for cas) token other than "noreply" is ignored, and
     * "noreply" in the bytes position silences the resulting error: both
     * verified on 1.6.18.
     */
    req->noreply = text_last_is_noreply(req);
    req->key = req->args[1];
    if (req->key.len > TEXT_KEY_MAX) {
        text_fail(req, cmd, TEXT_ERR_BAD_FORMAT);
        return;
    }
    const struct text_token *a = req->args;
    int32_t bytes;
    if (!num_parse_u32(a[2].p, a[2].len, &req->flags) ||
        !num_parse_i32(a[3].p, a[3].len, &req->exptime) ||
        !num_parse_i32(a[4].p, a[4].len, &bytes)) {
        text_fail(req, cmd, TEXT_ERR_BAD_FORMAT);
        return;
    }
    if (is_cas && !num_parse_u64(a[5].p, a[5].len, &req->cas)) {
        text_fail(req, cmd, TEXT_ERR_BAD_FORMAT);
        return;
    }
    if (bytes < 0 || bytes > INT_MAX - 2) {
        text_fail(req, cmd, TEXT_ERR_BAD_FORMAT);
        return;
    }
    req->bytes = (uint32_t)bytes;
    req->cmd = cmd;
}

static void text_parse_delete(struct text_request *req)
{
    if (req->nargs < 2 || req->nargs > 4) {
        text_fail(req, TEXT_CMD_DELETE, TEXT_ERR_ERROR);
        return;
    }
    if (req->nargs > 2) {
        /* Old clients send "delete <key> 0"; any other extra token is refused. */
        bool hold_is_zero = text_token_is(&req->args[2], "0");
        req->noreply = text_last_is_noreply(req);
        bool valid = (req->nargs == 3 && (hold_is_zero || req->noreply)) ||
                     (req->nargs == 4 && hold_is_zero && req->noreply);
        if (!valid) {
            text_fail(req, TEXT_CMD_DELETE, TEXT_ERR_DELETE_USAGE);
            return;
        }
    }
    req->key = req->args[1];
    if (req->key.len > TEXT_KEY_MAX) {
        text_fail(req, TEXT_CMD_DELETE, TEXT_ERR_BAD_FORMAT);
        return;
    }
    req->cmd = TEXT_CMD_DELETE;
}

/* incr, decr, touch: "<cmd> <key> <number> [noreply]". */
static void text_parse_key_number(struct text_request *req, enum text_cmd cmd)
{
    if (!text_nargs_is(req, 3, 4)) {
        text_fail(req, cmd, TEXT_ERR_ERROR);
        return;
    }
    req->noreply = text_last_is_noreply(req);
    req->key = req->args[1];
    if (req->key.len > TEXT_KEY_MAX) {
        text_fail(req, cmd, TEXT_ERR_BAD_FORMAT);
        return;
    }
    const struct text_token *n = &req->args[2];
    if (cmd == TEXT_CMD_TOUCH) {
        if (!num_parse_i32(n->p, n->len, &req->exptime)) {
            text_fail(req, cmd, TEXT_ERR_INVALID_EXPTIME);
            return;
        }
    } else if (!num_parse_u64(n->p, n->len, &req->delta)) {
        text_fail(req, cmd, TEXT_ERR_INVALID_DELTA);
        return;
    }
    req->cmd = cmd;
}

static void text_parse_shutdown(struct text_request *req)
{
    if (req->nargs == 1) {
        req->cmd = TEXT_CMD_SHUTDOWN;
    } else if (req->nargs == 2 && text_token_is(&req->args[1], "graceful")) {
        req->cmd = TEXT_CMD_SHUTDOWN;
        req->graceful = true;
    } else {
        text_fail(req, TEXT_CMD_SHUTDOWN, TEXT_ERR_SHUTDOWN_MODE);
    }
}

/* verbosity, cache_memlimit: "<cmd> <u32> [noreply]"; the number goes to delta. */
static void text_parse_level(struct text_request *req, enum text_cmd cmd)
{
    if (!text_nargs_is(req, 2, 3)) {
        text_fail(req, cmd, TEXT_ERR_ERROR);
        return;
    }
    req->noreply = text_last_is_noreply(req);
    uint32_t v;
    if (!num_parse_u32(req->args[1].p, req->args[1].len, &v)) {
        /* Verified on 1.6.18: cache_memlimit says "ERROR", verbosity a CLIENT_ERROR. */
        text_fail(req, cmd, cmd == TEXT_CMD_VERBOSITY ? TEXT_ERR_BAD_FORMAT : TEXT_ERR_ERROR);
        return;
    }
    req->delta = v;
    req->cmd = cmd;
}

static void text_parse_flush_all(struct text_request *req)
{
    if (req->nargs < 1 || req->nargs > 3) {
        text_fail(req, TEXT_CMD_FLUSH_ALL, TEXT_ERR_ERROR);
        return;
    }
    req->noreply = text_last_is_noreply(req);
    /* "flush_all 5 6" uses 5 and ignores 6; "flush_all noreply 5" is refused. */
    if (req->nargs != (req->noreply ? 2u : 1u)) {
        if (!num_parse_i32(req->args[1].p, req->args[1].len, &req->exptime)) {
            text_fail(req, TEXT_CMD_FLUSH_ALL, TEXT_ERR_INVALID_EXPTIME);
            return;
        }
    }
    req->cmd = TEXT_CMD_FLUSH_ALL;
}

static void text_parse_meta(struct text_request *req)
{
    switch (req->args[0].p[1]) {
    case 'g':
    case 's':
    case 'd':
    case 'a':
    case 'n':
    case 'e':
        req->cmd = TEXT_CMD_META;
        break;
    default:
        text_fail(req, TEXT_CMD_ERROR, TEXT_ERR_ERROR);
        break;
    }
}

/*
 * Commands 1.6.18 knows but memstash does not serve yet. They answer ERROR
 * and, being known, escape the HTTP-probe check.
 */
static bool text_is_unserved(const struct text_token *cmd)
{
    static const char *const cmds[] = {"lru", "extstore"};
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        if (text_token_is(cmd, cmds[i])) {
            return true;
        }
    }
    return false;
}

/* Returns false when the connection must be closed (HTTP probe). */
static bool text_dispatch(struct text_request *req, const char *end)
{
    const struct text_token *c = &req->args[0];

    if (req->nargs == 0 || c->len < 2) {
        text_fail(req, TEXT_CMD_ERROR, TEXT_ERR_ERROR);
        return true;
    }
    switch (c->p[0]) {
    case 'm':
        if (c->len == 2) {
            text_parse_meta(req);
            return true;
        }
        break;
    case 'g': {
        enum text_cmd cmd = TEXT_CMD_ERROR;
        if (text_token_is(c, "get")) {
            cmd = TEXT_CMD_GET;
        } else if (text_token_is(c, "gets")) {
            cmd = TEXT_CMD_GETS;
        } else if (text_token_is(c, "gat")) {
            cmd = TEXT_CMD_GAT;
        } else if (text_token_is(c, "gats")) {
            cmd = TEXT_CMD_GATS;
        }
        /* "gat 10" (no keys) passes this and answers just END, as in 1.6.18. */
        if (cmd == TEXT_CMD_ERROR || req->nargs < 2) {
            text_fail(req, cmd, TEXT_ERR_ERROR);
        } else {
            text_parse_get(req, cmd, end);
        }
        return true;
    }
    case 's':
        if (text_token_is(c, "set")) {
            text_parse_storage(req, TEXT_CMD_SET);
        } else if (text_token_is(c, "stats")) {
            req->cmd = TEXT_CMD_STATS;
        } else if (text_token_is(c, "shutdown")) {
            text_parse_shutdown(req);
        } else {
            /* This includes "slabs", not served yet. */
            text_fail(req, TEXT_CMD_ERROR, TEXT_ERR_ERROR);
        }
        return true;
    case 'a':
        if (text_token_is(c, "add")) {
            text_parse_storage(req, TEXT_CMD_ADD);
        } else if (text_token_is(c, "append")) {
            text_parse_storage(req, TEXT_CMD_APPEND);
        } else {
            text_fail(req, TEXT_CMD_ERROR, TEXT_ERR_ERROR);
        }
        return true;
    case 'c':
        if (text_token_is(c, "cas")) {
            text_parse_storage(req, TEXT_CMD_CAS);
        } else if (text_token_is(c, "cache_memlimit")) {
            text_parse_level(req, TEXT_CMD_CACHE_MEMLIMIT);
        } else {
            text_fail(req, TEXT_CMD_ERROR, TEXT_ERR_ERROR);
        }
        return true;
    case 'i':
        if (text_token_is(c, "incr")) {
            text_parse_key_number(req, TEXT_CMD_INCR);
        } else {
            text_fail(req, TEXT_CMD_ERROR, TEXT_ERR_ERROR);
        }
        return true;
    case 'd':
        if (text_token_is(c, "delete")) {
            text_parse_delete(req);
        } else if (text_token_is(c, "decr")) {
            text_parse_key_number(req, TEXT_CMD_DECR);
        } else {
            text_fail(req, TEXT_CMD_ERROR, TEXT_ERR_ERROR);
        }
        return true;
    case 't':
        if (text_token_is(c, "touch")) {
            text_parse_key_number(req, TEXT_CMD_TOUCH);
        } else {
            text_fail(req, TEXT_CMD_ERROR, TEXT_ERR_ERROR);
        }
        return true;
    default:
        break;
    }

    if (text_token_is(c, "replace")) {
        text_parse_storage(req, TEXT_CMD_REPLACE);
    } else if (text_token_is(c, "prepend")) {
        text_parse_storage(req, TEXT_CMD_PREPEND);
    } else if (text_token_is(c, "bget")) {
        /* The ancient "binary get", still an alias of get in 1.6.18 (verified). */
        if (req->nargs < 2) {
            text_fail(req, TEXT_CMD_GET, TEXT_ERR_ERROR);
        } else {
            text_parse_get(req, TEXT_CMD_GET, end);
        }
    } else if (text_token_is(c, "flush_all")) {
        text_parse_flush_all(req);
    } else if (text_token_is(c, "version")) {
        req->cmd = TEXT_CMD_VERSION;
    } else if (text_token_is(c, "quit")) {
        req->cmd = TEXT_CMD_QUIT;
    } else if (text_token_is(c, "verbosity")) {
        text_parse_level(req, TEXT_CMD_VERBOSITY);
    } else if (text_token_is(c, "lru_crawler")) {
        req->cmd = TEXT_CMD_LRU_CRAWLER;
    } else if (text_token_is(c, "watch")) {
        /* memcached takes a last "noreply" as noreply, then refuses it as an
         * unknown watch flag: the line gets no reply at all. */
        req->cmd = TEXT_CMD_WATCH;
        req->noreply = req->nargs > 1 && text_token_is(&req->args[req->nargs - 1], "noreply");
    } else if (text_token_is(c, "refresh_certs")) {
        req->cmd = TEXT_CMD_REFRESH_CERTS; /* arguments are ignored, as in 1.6.18 */
    } else if (text_is_unserved(c)) {
        text_fail(req, TEXT_CMD_ERROR, TEXT_ERR_ERROR);
    } else {
        /*
         * Unknown command. memcached looks at the last token its tokenizer
         * kept (the 23rd on longer lines, verified) for an HTTP version.
         */
        const struct text_token *last = &req->args[req->nargs - 1];
        text_fail(req, TEXT_CMD_ERROR, TEXT_ERR_ERROR);
        if (last->len >= 5 && memcmp(last->p, "HTTP/", 5) == 0) {
            return false;
        }
    }
    return true;
}

enum text_status text_parse(const char *buf, size_t len, struct text_request *req, size_t *consumed)
{
    *consumed = 0;
    const char *nl = memchr(buf, '\n', len);
    if (nl == NULL) {
        if (len > TEXT_LINE_MAX && (len > TEXT_MULTIGET_LINE_MAX || !text_is_multiget(buf, len))) {
            return TEXT_CLOSE;
        }
        return TEXT_NEED_MORE;
    }

    size_t n = (size_t)(nl - buf);
    /* A lone "\r\n" keeps its '\r' and so becomes the one-byte command "\r". */
    if (n > 1 && buf[n - 1] == '\r') {
        n--;
    }
    /* memcached sees the line as a C string. */
    const char *nul = memchr(buf, '\0', n);
    if (nul != NULL) {
        n = (size_t)(nul - buf);
    }

    /* args[] past nargs is never read, so it is left as it is: 368 bytes not cleared per line. */
    memset(req, 0, offsetof(struct text_request, args));
    req->line = buf;
    req->line_len = n;

    const char *p = buf;
    const char *end = buf + n;
    struct text_token tok;
    while (req->nargs < TEXT_TOKENS_KEPT && next_token(&p, end, &tok)) {
        req->args[req->nargs++] = tok;
    }
    if (req->nargs == TEXT_TOKENS_KEPT) {
        const char *q = p;
        req->args_more = next_token(&q, end, &tok);
    }

    *consumed = (size_t)(nl - buf) + 1;
    return text_dispatch(req, end) ? TEXT_OK : TEXT_CLOSE;
}

size_t text_compose_value(char *buf, const char *key, size_t nkey, uint32_t flags, size_t nbytes,
                          bool with_cas, uint64_t cas)
{
    char *p = buf;
    memcpy(p, "VALUE ", 6);
    p += 6;
    memcpy(p, key, nkey);
    p += nkey;
    *p++ = ' ';
    p += num_format_u64(p, flags);
    *p++ = ' ';
    p += num_format_u64(p, (uint64_t)nbytes);
    if (with_cas) {
        *p++ = ' ';
        p += num_format_u64(p, cas);
    }
    *p++ = '\r';
    *p++ = '\n';
    return (size_t)(p - buf);
}

/* Writes "STAT <name> <v>\r\n" for a value already in text form. */
static size_t text_compose_stat(char *buf, size_t cap, const char *name, const char *v, size_t nv)
{
    size_t nname = strlen(name);
    size_t total = 5 + nname + 1 + nv + 2;
    if (total > cap) {
        return 0;
    }
    char *p = buf;
    memcpy(p, "STAT ", 5);
    p += 5;
    memcpy(p, name, nname);
    p += nname;
    *p++ = ' ';
    memcpy(p, v, nv);
    p += nv;
    *p++ = '\r';
    *p++ = '\n';
    return total;
}

size_t text_compose_stat_u64(char *buf, size_t cap, const char *name, uint64_t v)
{
    char num[20];
    size_t n = num_format_u64(num, v);
    return text_compose_stat(buf, cap, name, num, n);
}

size_t text_compose_stat_str(char *buf, size_t cap, const char *name, const char *v)
{
    return text_compose_stat(buf, cap, name, v, strlen(v));
}

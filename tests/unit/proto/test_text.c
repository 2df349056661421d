/*
 * test_text.c - unit tests for the text protocol codec (src/proto/text.c).
 *
 * Expected behaviour is memcached 1.6.18's. Cases marked "verified" were
 * checked by sending the same line to Debian's memcached 1.6.18 binary
 * (/usr/bin/memcached, 127.0.0.1, -U 0) and reading the reply; a silent
 * reply was told apart from a slow one by sending "mn" right after.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "text.h"

/* Parses a C string (without its terminator). */
static enum text_status parse(const char *s, struct text_request *req, size_t *consumed)
{
    return text_parse(s, strlen(s), req, consumed);
}

static void assert_token(const struct text_token *t, const char *s)
{
    assert_int_equal(t->len, strlen(s));
    assert_memory_equal(t->p, s, t->len);
}

/* The line must parse to cmd without error and consume all of s. */
static void expect_cmd(const char *s, enum text_cmd cmd, struct text_request *req)
{
    size_t consumed = 0;
    assert_int_equal(parse(s, req, &consumed), TEXT_OK);
    assert_int_equal(consumed, strlen(s));
    assert_int_equal(req->err, TEXT_ERR_NONE);
    assert_int_equal(req->cmd, cmd);
}

/* The line must be rejected with err; noreply must match. */
static void expect_err(const char *s, enum text_error err, bool noreply)
{
    struct text_request req;
    size_t consumed = 0;
    assert_int_equal(parse(s, &req, &consumed), TEXT_OK);
    assert_int_equal(consumed, strlen(s));
    assert_int_equal(req.cmd, TEXT_CMD_ERROR);
    assert_int_equal(req.err, err);
    assert_int_equal(req.noreply, noreply);
}

static void expect_close(const char *s)
{
    struct text_request req;
    size_t consumed = 0;
    assert_int_equal(parse(s, &req, &consumed), TEXT_CLOSE);
}

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* Builds a line from a printf-like pattern into a static buffer. */
static const char *fmt(const char *pattern, ...)
{
    static char buf[8192];
    va_list ap;
    va_start(ap, pattern);
    int n = vsnprintf(buf, sizeof(buf), pattern, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof(buf));
    return buf;
}

/* ---------------------------------------------------------------------- */

static void test_framing(void **state)
{
    (void)state;
    struct text_request req;
    size_t consumed;

    expect_cmd("version\r\n", TEXT_CMD_VERSION, &req);
    assert_int_equal(req.line_len, 7);
    /* A bare "\n" ends a command line too (verified). */
    expect_cmd("version\n", TEXT_CMD_VERSION, &req);
    assert_int_equal(req.line_len, 7);
    assert_memory_equal(req.line, "version", 7);

    /* "\r\n" alone keeps its '\r' (one-byte line): ERROR (verified). */
    expect_err("\r\n", TEXT_ERR_ERROR, false);
    expect_err("\n", TEXT_ERR_ERROR, false);
    expect_err("   \r\n", TEXT_ERR_ERROR, false);
    expect_err("a\r\n", TEXT_ERR_ERROR, false);
    expect_err("\r\r\n", TEXT_ERR_ERROR, false);
    /* Only one '\r' is stripped: the command becomes "version\r" (verified). */
    expect_err("version\r\r\n", TEXT_ERR_ERROR, false);
    /* Leading and trailing spaces are fine (verified). */
    expect_cmd("   version   x y\r\n", TEXT_CMD_VERSION, &req);

    /* The line ends at its first NUL byte (verified for all three). */
    const char v[] = "version\0junk\r\n";
    assert_int_equal(text_parse(v, sizeof(v) - 1, &req, &consumed), TEXT_OK);
    assert_int_equal(consumed, sizeof(v) - 1);
    assert_int_equal(req.cmd, TEXT_CMD_VERSION);
    assert_int_equal(req.line_len, 7);
    const char z[] = "\0version\r\n";
    assert_int_equal(text_parse(z, sizeof(z) - 1, &req, &consumed), TEXT_OK);
    assert_int_equal(consumed, sizeof(z) - 1);
    assert_int_equal(req.cmd, TEXT_CMD_ERROR);
    assert_int_equal(req.err, TEXT_ERR_ERROR);
    const char g[] = "get a\0 junk\r\n";
    assert_int_equal(text_parse(g, sizeof(g) - 1, &req, &consumed), TEXT_OK);
    assert_int_equal(req.cmd, TEXT_CMD_GET);
    assert_int_equal(req.nkeys, 1);
    assert_int_equal(req.keys_len, 2);

    /* No newline yet: nothing consumed, req untouched. */
    memset(&req, 0x5a, sizeof(req));
    consumed = 99;
    assert_int_equal(parse("", &req, &consumed), TEXT_NEED_MORE);
    assert_int_equal(consumed, 0);
    assert_int_equal(parse("get k\r", &req, &consumed), TEXT_NEED_MORE);
    assert_int_equal(consumed, 0);
    struct text_request poison;
    memset(&poison, 0x5a, sizeof(poison));
    assert_memory_equal(&req, &poison, sizeof(req));
}

static void test_long_line(void **state)
{
    (void)state;
    struct text_request req;
    size_t consumed;

    /* More than 2048 bytes without a newline closes (verified), 2048 waits. */
    char *junk = repeat('x', 2049);
    assert_int_equal(text_parse(junk, 2048, &req, &consumed), TEXT_NEED_MORE);
    assert_int_equal(text_parse(junk, 2049, &req, &consumed), TEXT_CLOSE);
    assert_int_equal(consumed, 0);
    free(junk);

    /* A long line that arrives whole is parsed normally (verified: ERROR). */
    char *whole = repeat('x', 2051);
    whole[2049] = '\r';
    whole[2050] = '\n';
    assert_int_equal(text_parse(whole, 2051, &req, &consumed), TEXT_OK);
    assert_int_equal(consumed, 2051);
    assert_int_equal(req.cmd, TEXT_CMD_ERROR);
    assert_int_equal(req.err, TEXT_ERR_ERROR);
    free(whole);

    /* "get " and "gets " after at most 100 spaces may grow (verified). */
    char *buf = repeat('k', 5000);
    size_t n = 5000;
    memcpy(buf, "get ", 4);
    assert_int_equal(text_parse(buf, n, &req, &consumed), TEXT_NEED_MORE);
    memcpy(buf, "gets ", 5);
    assert_int_equal(text_parse(buf, n, &req, &consumed), TEXT_NEED_MORE);
    memset(buf, ' ', 100);
    memcpy(buf + 100, "get ", 4);
    assert_int_equal(text_parse(buf, n, &req, &consumed), TEXT_NEED_MORE);
    memset(buf, ' ', 101);
    memcpy(buf + 101, "get ", 4);
    assert_int_equal(text_parse(buf, n, &req, &consumed), TEXT_CLOSE);
    /* gat, and get followed by a tab, get no such grace (gat verified). */
    memcpy(buf, "gat 1 ", 6);
    assert_int_equal(text_parse(buf, n, &req, &consumed), TEXT_CLOSE);
    memcpy(buf, "get\t", 4);
    assert_int_equal(text_parse(buf, n, &req, &consumed), TEXT_CLOSE);
    memset(buf, ' ', n);
    assert_int_equal(text_parse(buf, n, &req, &consumed), TEXT_CLOSE);
    free(buf);

    /* A 110 kB multiget of 10-byte keys, then its end arrives (verified at 4 kB). */
    size_t nkeys = 10000;
    size_t len = 4 + nkeys * 11 + 2;
    char *mg = malloc(len);
    assert_non_null(mg);
    memcpy(mg, "get ", 4);
    for (size_t i = 0; i < nkeys; i++) {
        snprintf(mg + 4 + i * 11, 12, "key%07zu ", i);
    }
    mg[len - 2] = '\r';
    mg[len - 1] = '\n';
    assert_int_equal(text_parse(mg, len - 1, &req, &consumed), TEXT_NEED_MORE);
    assert_int_equal(text_parse(mg, len, &req, &consumed), TEXT_OK);
    assert_int_equal(consumed, len);
    assert_int_equal(req.cmd, TEXT_CMD_GET);
    assert_int_equal(req.nkeys, nkeys);
    assert_int_equal(req.nargs, TEXT_MAX_TOKENS - 1);
    assert_true(req.args_more);
    const char *p = req.keys;
    struct text_token key;
    size_t count = 0;
    while (text_next_token(&p, req.keys + req.keys_len, &key)) {
        char want[16];
        snprintf(want, sizeof(want), "key%07zu", count);
        assert_token(&key, want);
        count++;
    }
    assert_int_equal(count, nkeys);
    free(mg);

    /* Even a multiget is closed past TEXT_MULTIGET_LINE_MAX without a newline. */
    size_t big = TEXT_MULTIGET_LINE_MAX + 1;
    char *huge = malloc(big);
    assert_non_null(huge);
    memcpy(huge, "get ", 4);
    memset(huge + 4, 'k', big - 4);
    for (size_t i = 200; i < big; i += 200) {
        huge[i] = ' ';
    }
    assert_int_equal(text_parse(huge, big - 1, &req, &consumed), TEXT_NEED_MORE);
    assert_int_equal(text_parse(huge, big, &req, &consumed), TEXT_CLOSE);
    free(huge);
}

static void test_http_probe(void **state)
{
    (void)state;
    struct text_request req;
    size_t consumed;

    /* All verified: an unknown command whose last token starts with HTTP/ closes. */
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: x\r\n", &req, &consumed), TEXT_CLOSE);
    assert_int_equal(consumed, 16);
    expect_close("HTTP/1.0\r\n");
    expect_close("foo HTTP/\r\n");
    expect_close("DELETE / HTTP/1.1\r\n");
    expect_close("POST /x HTTP/2\n");
    expect_err("foo HTTP\r\n", TEXT_ERR_ERROR, false);
    expect_err("foo HTTP/1.1 x\r\n", TEXT_ERR_ERROR, false);
    /* A one-byte command is refused before the check. */
    expect_err("x HTTP/1.0\r\n", TEXT_ERR_ERROR, false);
    /* Known commands are never mistaken for probes. */
    expect_cmd("get / HTTP/1.1\r\n", TEXT_CMD_GET, &req);
    assert_int_equal(req.nkeys, 2);
    expect_err("delete / HTTP/1.1\r\n", TEXT_ERR_DELETE_USAGE, false);
    expect_err("got / HTTP/1.1\r\n", TEXT_ERR_ERROR, false);
    expect_cmd("lru_crawler HTTP/1.1\r\n", TEXT_CMD_LRU_CRAWLER, &req);
    expect_cmd("watch HTTP/1.1\r\n", TEXT_CMD_WATCH, &req);
    expect_err("lru x HTTP/1.1\r\n", TEXT_ERR_ERROR, false);
    expect_cmd("version HTTP/1.1\r\n", TEXT_CMD_VERSION, &req);

    /*
     * memcached's tokenizer keeps 23 tokens; the check looks at the 23rd
     * (verified: HTTP/1.1 as 23rd token closes, as 24th does not).
     */
    char line[512];
    strcpy(line, "foo");
    for (int i = 0; i < 21; i++) {
        strcat(line, " t");
    }
    char *tail = line + strlen(line);
    strcpy(tail, " HTTP/1.1\r\n");
    expect_close(line);
    strcpy(tail, " HTTP/1.1 x\r\n");
    expect_close(line);
    strcpy(tail, " t HTTP/1.1\r\n");
    expect_err(line, TEXT_ERR_ERROR, false);
}

static void test_tokens(void **state)
{
    (void)state;
    struct text_request req;

    /* Tabs are part of tokens (verified: key "a\tb" is stored and fetched). */
    expect_cmd("set a\tb 0 0 1\r\n", TEXT_CMD_SET, &req);
    assert_token(&req.key, "a\tb");
    /* "set k\t0 0 1" has only four tokens (verified: ERROR). */
    expect_err("set k\t0 0 1\r\n", TEXT_ERR_ERROR, false);
    /* Numbers end at white space inside a token (verified: "1\tzz" is 1). */
    expect_cmd("set k 0 0 1\tzz\r\n", TEXT_CMD_SET, &req);
    assert_int_equal(req.bytes, 1);

    expect_cmd("  stats   slabs  x \r\n", TEXT_CMD_STATS, &req);
    assert_int_equal(req.nargs, 3);
    assert_false(req.args_more);
    assert_token(&req.args[0], "stats");
    assert_token(&req.args[1], "slabs");
    assert_token(&req.args[2], "x");

    /* 23 tokens fit, the 24th sets args_more. */
    char line[512] = "stats";
    for (int i = 0; i < 22; i++) {
        strcat(line, " a");
    }
    strcat(line, "\r\n");
    expect_cmd(line, TEXT_CMD_STATS, &req);
    assert_int_equal(req.nargs, 23);
    assert_false(req.args_more);
    strcpy(line + strlen(line) - 2, "    \r\n");
    expect_cmd(line, TEXT_CMD_STATS, &req);
    assert_false(req.args_more);
    strcpy(line + strlen(line) - 2, " b\r\n");
    expect_cmd(line, TEXT_CMD_STATS, &req);
    assert_int_equal(req.nargs, 23);
    assert_true(req.args_more);
    assert_token(&req.args[22], "a");
}

static void test_next_token(void **state)
{
    (void)state;
    const char s[] = "   ab  c\td    e ";
    const char *p = s;
    const char *end = s + sizeof(s) - 1;
    struct text_token t;
    assert_true(text_next_token(&p, end, &t));
    assert_token(&t, "ab");
    assert_true(text_next_token(&p, end, &t));
    assert_token(&t, "c\td");
    assert_true(text_next_token(&p, end, &t));
    assert_token(&t, "e");
    assert_false(text_next_token(&p, end, &t));
    assert_ptr_equal(p, end);
    assert_false(text_next_token(&p, end, &t));

    p = s;
    assert_false(text_next_token(&p, s, &t));
    const char *sp = "     ";
    p = sp;
    assert_false(text_next_token(&p, sp + 5, &t));
    /* The end bound is respected inside a token. */
    p = s;
    assert_true(text_next_token(&p, s + 4, &t));
    assert_token(&t, "a");
}

static void test_get(void **state)
{
    (void)state;
    struct text_request req;
    struct text_token key;

    expect_cmd("get  a   bb ccc  \r\n", TEXT_CMD_GET, &req);
    assert_int_equal(req.nkeys, 3);
    const char *p = req.keys;
    const char *end = req.keys + req.keys_len;
    assert_true(text_next_token(&p, end, &key));
    assert_token(&key, "a");
    assert_true(text_next_token(&p, end, &key));
    assert_token(&key, "bb");
    assert_true(text_next_token(&p, end, &key));
    assert_token(&key, "ccc");
    assert_false(text_next_token(&p, end, &key));
    assert_int_equal(req.keys_len, strlen("  a   bb ccc  "));

    expect_cmd("gets k\r\n", TEXT_CMD_GETS, &req);
    assert_int_equal(req.nkeys, 1);
    /* bget is still an alias of get in 1.6.18 (verified). */
    expect_cmd("bget k\r\n", TEXT_CMD_GET, &req);
    expect_err("bget\r\n", TEXT_ERR_ERROR, false);

    expect_cmd("gat 10 a b\r\n", TEXT_CMD_GAT, &req);
    assert_int_equal(req.exptime, 10);
    assert_int_equal(req.nkeys, 2);
    assert_int_equal(req.keys_len, 4);
    assert_memory_equal(req.keys, " a b", 4);
    expect_cmd("gats -1 k\r\n", TEXT_CMD_GATS, &req);
    assert_int_equal(req.exptime, -1);
    /* "gat 10" with no key answers just END in 1.6.18 (verified). */
    expect_cmd("gat 10\r\n", TEXT_CMD_GAT, &req);
    assert_int_equal(req.nkeys, 0);
    assert_int_equal(req.keys_len, 0);
    expect_err("gat abc k\r\n", TEXT_ERR_INVALID_EXPTIME, false);

    /* Verified: no key -> ERROR; case matters; unknown g* -> ERROR. */
    expect_err("get\r\n", TEXT_ERR_ERROR, false);
    expect_err("get   \r\n", TEXT_ERR_ERROR, false);
    expect_err("gat\r\n", TEXT_ERR_ERROR, false);
    expect_err("gatx 1 k\r\n", TEXT_ERR_ERROR, false);
    expect_err("GET k\r\n", TEXT_ERR_ERROR, false);
    expect_err("gx\r\n", TEXT_ERR_ERROR, false);

    struct text_request r2;
    assert_int_equal(parse("get\r\n", &r2, &(size_t){0}), TEXT_OK);
    assert_int_equal(r2.err_cmd, TEXT_CMD_GET);

    /* Key length: 250 is fine, 251 fails the whole request (verified). */
    char *k250 = repeat('k', 250);
    char *k251 = repeat('k', 251);
    expect_cmd(fmt("get a %s\r\n", k250), TEXT_CMD_GET, &req);
    assert_int_equal(req.nkeys, 2);
    expect_err(fmt("get a %s\r\n", k251), TEXT_ERR_BAD_FORMAT, false);
    expect_err(fmt("gets %s\r\n", k251), TEXT_ERR_BAD_FORMAT, false);
    /* The exptime is checked before the keys (verified). */
    expect_err(fmt("gat abc %s\r\n", k251), TEXT_ERR_INVALID_EXPTIME, false);
    expect_err(fmt("gat 0 %s\r\n", k251), TEXT_ERR_BAD_FORMAT, false);
    /* A bad key beyond the 23 tokens kept in args is still found (verified). */
    char line[4096] = "get";
    for (int i = 0; i < 25; i++) {
        strcat(line, " a");
    }
    strcat(line, " ");
    strcat(line, k251);
    strcat(line, " b b b b\r\n");
    expect_err(line, TEXT_ERR_BAD_FORMAT, false);
    free(k250);
    free(k251);
}

static void test_storage(void **state)
{
    (void)state;
    struct text_request req;

    expect_cmd("set foo 5 10 3\r\n", TEXT_CMD_SET, &req);
    assert_token(&req.key, "foo");
    assert_int_equal(req.flags, 5);
    assert_int_equal(req.exptime, 10);
    assert_int_equal(req.bytes, 3);
    assert_false(req.noreply);
    assert_int_equal(req.nargs, 5);

    expect_cmd("add k 0 0 0 noreply\r\n", TEXT_CMD_ADD, &req);
    assert_true(req.noreply);
    assert_int_equal(req.bytes, 0);
    expect_cmd("replace k 1 2 3\r\n", TEXT_CMD_REPLACE, &req);
    expect_cmd("append k 1 2 3\r\n", TEXT_CMD_APPEND, &req);
    expect_cmd("prepend k 1 2 3 noreply\r\n", TEXT_CMD_PREPEND, &req);
    assert_true(req.noreply);

    /* A sixth token other than noreply is ignored; a reply is wanted (verified). */
    expect_cmd("set k 0 0 1 foo\r\n", TEXT_CMD_SET, &req);
    assert_false(req.noreply);
    /* Wrong token counts are a plain ERROR, never silenced (verified). */
    expect_err("set k 0 0 1 noreply x\r\n", TEXT_ERR_ERROR, false);
    expect_err("set k 0 0 1 noreply a b\r\n", TEXT_ERR_ERROR, false);
    expect_err("set k 0 0\r\n", TEXT_ERR_ERROR, false);
    expect_err("add k 0 0\r\n", TEXT_ERR_ERROR, false);
    expect_err("replace k\r\n", TEXT_ERR_ERROR, false);
    expect_err("prepend k 0 0 1 2 3\r\n", TEXT_ERR_ERROR, false);
    expect_err("append\r\n", TEXT_ERR_ERROR, false);
    expect_err("Set k 0 0 1\r\n", TEXT_ERR_ERROR, false);
    expect_err("adds k 0 0 1\r\n", TEXT_ERR_ERROR, false);

    /* Argument errors: all verified. */
    char *k250 = repeat('k', 250);
    char *k251 = repeat('k', 251);
    expect_cmd(fmt("set %s 0 0 1\r\n", k250), TEXT_CMD_SET, &req);
    expect_err(fmt("set %s 0 0 1\r\n", k251), TEXT_ERR_BAD_FORMAT, false);
    expect_err(fmt("set %s 0 0 1 noreply\r\n", k251), TEXT_ERR_BAD_FORMAT, true);
    free(k250);
    free(k251);
    expect_err("set k -1 0 1\r\n", TEXT_ERR_BAD_FORMAT, false);
    expect_err("set k abc 0 1\r\n", TEXT_ERR_BAD_FORMAT, false);
    expect_err("set k 0 abc 1\r\n", TEXT_ERR_BAD_FORMAT, false);
    expect_err("set k 0 0 abc\r\n", TEXT_ERR_BAD_FORMAT, false);
    expect_err("set k 0 0 -1\r\n", TEXT_ERR_BAD_FORMAT, false);
    expect_err("set k 0 0 2147483646\r\n", TEXT_ERR_BAD_FORMAT, false);
    expect_err("set k abc 0 1 noreply\r\n", TEXT_ERR_BAD_FORMAT, true);
    /* noreply in the bytes position counts and silences the error. */
    expect_err("set k 0 0 noreply\r\n", TEXT_ERR_BAD_FORMAT, true);
    expect_err("set k 0 0 1x\r\n", TEXT_ERR_BAD_FORMAT, false);
    expect_cmd("set k 0 0 2147483645\r\n", TEXT_CMD_SET, &req);
    assert_int_equal(req.bytes, 2147483645u);
    /* 32-bit fields are truncated from 64 bits (verified: flags 0; 1 byte read). */
    expect_cmd("set k 4294967296 0 1\r\n", TEXT_CMD_SET, &req);
    assert_int_equal(req.flags, 0);
    expect_cmd("set k 0 0 4294967297\r\n", TEXT_CMD_SET, &req);
    assert_int_equal(req.bytes, 1);
    expect_cmd("set k 4294967295 -5 1\r\n", TEXT_CMD_SET, &req);
    assert_int_equal(req.flags, 4294967295u);
    assert_int_equal(req.exptime, -5);

    expect_cmd("cas k 1 2 3 18446744073709551615\r\n", TEXT_CMD_CAS, &req);
    assert_true(req.cas == UINT64_MAX);
    assert_int_equal(req.bytes, 3);
    assert_false(req.noreply);
    /* Verified: "cas k 0 0 1 1 noreply" stores silently. */
    expect_cmd("cas k 0 0 1 1 noreply\r\n", TEXT_CMD_CAS, &req);
    assert_true(req.noreply);
    assert_int_equal(req.cas, 1);
    expect_cmd("cas k 0 0 1 1 x\r\n", TEXT_CMD_CAS, &req);
    assert_false(req.noreply);
    expect_err("cas k 0 0 1 abc\r\n", TEXT_ERR_BAD_FORMAT, false);
    expect_err("cas k 0 0 1 -1\r\n", TEXT_ERR_BAD_FORMAT, false);
    expect_err("cas k 0 0 1 noreply\r\n", TEXT_ERR_BAD_FORMAT, true);
    expect_err("cas k 0 0 1\r\n", TEXT_ERR_ERROR, false);
    expect_err("cas k 0 0 1 1 noreply x\r\n", TEXT_ERR_ERROR, false);

    struct text_request r2;
    assert_int_equal(parse("set k 0 0\r\n", &r2, &(size_t){0}), TEXT_OK);
    assert_int_equal(r2.err_cmd, TEXT_CMD_SET);
}

static void test_delete(void **state)
{
    (void)state;
    struct text_request req;

    /* All cases in this test were verified against 1.6.18. */
    expect_cmd("delete k\r\n", TEXT_CMD_DELETE, &req);
    assert_token(&req.key, "k");
    assert_false(req.noreply);
    expect_cmd("delete k 0\r\n", TEXT_CMD_DELETE, &req);
    assert_false(req.noreply);
    expect_cmd("delete k noreply\r\n", TEXT_CMD_DELETE, &req);
    assert_true(req.noreply);
    expect_cmd("delete k 0 noreply\r\n", TEXT_CMD_DELETE, &req);
    assert_true(req.noreply);
    expect_err("delete k 1\r\n", TEXT_ERR_DELETE_USAGE, false);
    expect_err("delete k x y\r\n", TEXT_ERR_DELETE_USAGE, false);
    expect_err("delete k 1 noreply\r\n", TEXT_ERR_DELETE_USAGE, true);
    expect_err("delete k noreply 0\r\n", TEXT_ERR_DELETE_USAGE, false);
    expect_err("delete k 0 noreply x\r\n", TEXT_ERR_ERROR, false);
    expect_err("delete\r\n", TEXT_ERR_ERROR, false);
    /* "delete noreply" deletes the key "noreply". */
    expect_cmd("delete noreply\r\n", TEXT_CMD_DELETE, &req);
    assert_false(req.noreply);
    assert_token(&req.key, "noreply");

    char *k251 = repeat('k', 251);
    expect_err(fmt("delete %s\r\n", k251), TEXT_ERR_BAD_FORMAT, false);
    expect_err(fmt("delete %s noreply\r\n", k251), TEXT_ERR_BAD_FORMAT, true);
    /* The usage check comes first. */
    expect_err(fmt("delete %s 1\r\n", k251), TEXT_ERR_DELETE_USAGE, false);
    free(k251);
    expect_err("deletes k\r\n", TEXT_ERR_ERROR, false);
}

static void test_arith_touch(void **state)
{
    (void)state;
    struct text_request req;

    expect_cmd("incr k 18446744073709551615\r\n", TEXT_CMD_INCR, &req);
    assert_token(&req.key, "k");
    assert_true(req.delta == UINT64_MAX);
    expect_cmd("decr k 5 noreply\r\n", TEXT_CMD_DECR, &req);
    assert_int_equal(req.delta, 5);
    assert_true(req.noreply);
    /* An extra token other than noreply is ignored (verified: NOT_FOUND). */
    expect_cmd("decr k 1 2\r\n", TEXT_CMD_DECR, &req);
    assert_false(req.noreply);

    /* Verified: the CLIENT_ERROR is silenced by noreply. */
    expect_err("incr k abc\r\n", TEXT_ERR_INVALID_DELTA, false);
    expect_err("incr k abc noreply\r\n", TEXT_ERR_INVALID_DELTA, true);
    expect_err("incr k -1\r\n", TEXT_ERR_INVALID_DELTA, false);
    expect_err("incr k 18446744073709551616\r\n", TEXT_ERR_INVALID_DELTA, false);
    expect_err("incr k noreply\r\n", TEXT_ERR_INVALID_DELTA, true);
    expect_err("incr k\r\n", TEXT_ERR_ERROR, false);
    expect_err("decr k 1 noreply x\r\n", TEXT_ERR_ERROR, false);
    expect_err("inc k 1\r\n", TEXT_ERR_ERROR, false);

    expect_cmd("touch k 100\r\n", TEXT_CMD_TOUCH, &req);
    assert_int_equal(req.exptime, 100);
    expect_cmd("touch k -1 noreply\r\n", TEXT_CMD_TOUCH, &req);
    assert_int_equal(req.exptime, -1);
    assert_true(req.noreply);
    expect_cmd("touch k 10 x\r\n", TEXT_CMD_TOUCH, &req);
    assert_false(req.noreply);
    expect_err("touch k abc\r\n", TEXT_ERR_INVALID_EXPTIME, false);
    expect_err("touch k abc noreply\r\n", TEXT_ERR_INVALID_EXPTIME, true);
    expect_err("touch k\r\n", TEXT_ERR_ERROR, false);
    expect_err("toucher k 1\r\n", TEXT_ERR_ERROR, false);

    /* Key length is checked before the number (verified). */
    char *k251 = repeat('k', 251);
    expect_err(fmt("incr %s abc\r\n", k251), TEXT_ERR_BAD_FORMAT, false);
    expect_err(fmt("decr %s 1 noreply\r\n", k251), TEXT_ERR_BAD_FORMAT, true);
    expect_err(fmt("touch %s abc\r\n", k251), TEXT_ERR_BAD_FORMAT, false);
    free(k251);
}

static void test_admin(void **state)
{
    (void)state;
    struct text_request req;
    size_t consumed;

    /* verbosity: all verified. */
    expect_cmd("verbosity 1\r\n", TEXT_CMD_VERBOSITY, &req);
    assert_int_equal(req.delta, 1);
    expect_cmd("verbosity 5 noreply\r\n", TEXT_CMD_VERBOSITY, &req);
    assert_int_equal(req.delta, 5);
    assert_true(req.noreply);
    expect_cmd("verbosity 1 foo\r\n", TEXT_CMD_VERBOSITY, &req);
    assert_false(req.noreply);
    expect_err("verbosity abc\r\n", TEXT_ERR_BAD_FORMAT, false);
    expect_err("verbosity noreply\r\n", TEXT_ERR_BAD_FORMAT, true);
    expect_err("verbosity\r\n", TEXT_ERR_ERROR, false);
    expect_err("verbosity 0 0 0\r\n", TEXT_ERR_ERROR, false);

    /* cache_memlimit: non-numeric is a plain ERROR that noreply silences (verified). */
    expect_cmd("cache_memlimit 100\r\n", TEXT_CMD_CACHE_MEMLIMIT, &req);
    assert_int_equal(req.delta, 100);
    expect_cmd("cache_memlimit 100 noreply\r\n", TEXT_CMD_CACHE_MEMLIMIT, &req);
    assert_true(req.noreply);
    expect_cmd("cache_memlimit 100 foo\r\n", TEXT_CMD_CACHE_MEMLIMIT, &req);
    assert_false(req.noreply);
    expect_err("cache_memlimit abc\r\n", TEXT_ERR_ERROR, false);
    expect_err("cache_memlimit -1\r\n", TEXT_ERR_ERROR, false);
    expect_err("cache_memlimit noreply\r\n", TEXT_ERR_ERROR, true);
    expect_err("cache_memlimit abc noreply\r\n", TEXT_ERR_ERROR, true);
    expect_err("cache_memlimit\r\n", TEXT_ERR_ERROR, false);
    expect_err("cache_memlimit 1 2 3\r\n", TEXT_ERR_ERROR, false);

    /* flush_all: all verified. */
    expect_cmd("flush_all\r\n", TEXT_CMD_FLUSH_ALL, &req);
    assert_int_equal(req.exptime, 0);
    assert_false(req.noreply);
    expect_cmd("flush_all 10\r\n", TEXT_CMD_FLUSH_ALL, &req);
    assert_int_equal(req.exptime, 10);
    expect_cmd("flush_all -5\r\n", TEXT_CMD_FLUSH_ALL, &req);
    assert_int_equal(req.exptime, -5);
    expect_cmd("flush_all noreply\r\n", TEXT_CMD_FLUSH_ALL, &req);
    assert_true(req.noreply);
    assert_int_equal(req.exptime, 0);
    expect_cmd("flush_all 7 noreply\r\n", TEXT_CMD_FLUSH_ALL, &req);
    assert_true(req.noreply);
    assert_int_equal(req.exptime, 7);
    expect_cmd("flush_all 5 6\r\n", TEXT_CMD_FLUSH_ALL, &req);
    assert_int_equal(req.exptime, 5);
    assert_false(req.noreply);
    expect_err("flush_all abc\r\n", TEXT_ERR_INVALID_EXPTIME, false);
    expect_err("flush_all noreply 5\r\n", TEXT_ERR_INVALID_EXPTIME, false);
    expect_err("flush_all abc noreply\r\n", TEXT_ERR_INVALID_EXPTIME, true);
    expect_err("flush_all noreply noreply\r\n", TEXT_ERR_INVALID_EXPTIME, true);
    expect_err("flush_all 0 0 0\r\n", TEXT_ERR_ERROR, false);
    assert_int_equal(parse("flush_all abc\r\n", &req, &consumed), TEXT_OK);
    assert_int_equal(req.err_cmd, TEXT_CMD_FLUSH_ALL);

    /* shutdown (mode errors verified with -A; without -A see text.h). */
    expect_cmd("shutdown\r\n", TEXT_CMD_SHUTDOWN, &req);
    assert_false(req.graceful);
    expect_cmd("shutdown graceful\r\n", TEXT_CMD_SHUTDOWN, &req);
    assert_true(req.graceful);
    expect_err("shutdown foo\r\n", TEXT_ERR_SHUTDOWN_MODE, false);
    expect_err("shutdown graceful x\r\n", TEXT_ERR_SHUTDOWN_MODE, false);
    expect_err("shutdown noreply\r\n", TEXT_ERR_SHUTDOWN_MODE, false);
    expect_err("shutdown Graceful\r\n", TEXT_ERR_SHUTDOWN_MODE, false);
    assert_int_equal(parse("shutdown foo\r\n", &req, &consumed), TEXT_OK);
    assert_int_equal(req.err_cmd, TEXT_CMD_SHUTDOWN);

    expect_cmd("version\r\n", TEXT_CMD_VERSION, &req);
    expect_cmd("quit\r\n", TEXT_CMD_QUIT, &req);
    expect_cmd("quit foo\r\n", TEXT_CMD_QUIT, &req);

    expect_cmd("stats\r\n", TEXT_CMD_STATS, &req);
    assert_int_equal(req.nargs, 1);
    expect_cmd("stats cachedump 1 2\r\n", TEXT_CMD_STATS, &req);
    assert_int_equal(req.nargs, 4);
    assert_token(&req.args[1], "cachedump");
    assert_token(&req.args[3], "2");
    expect_cmd("stats foo\r\n", TEXT_CMD_STATS, &req);
}

static void test_meta_and_unknown(void **state)
{
    (void)state;
    struct text_request req;
    static const char *const meta[] = {"mg k v\r\n", "ms k 1 T0\r\n", "md k q\r\n",
                                       "ma k\r\n",   "mn\r\n",        "me k\r\n"};
    for (size_t i = 0; i < sizeof(meta) / sizeof(meta[0]); i++) {
        expect_cmd(meta[i], TEXT_CMD_META, &req);
        assert_int_equal(req.args[0].len, 2);
    }
    expect_cmd("mg foo v f t\r\n", TEXT_CMD_META, &req);
    assert_int_equal(req.nargs, 5);
    assert_token(&req.args[0], "mg");
    assert_token(&req.args[1], "foo");
    assert_token(&req.args[4], "t");
    /* Verified: "mn foo" -> MN; mx, Mn -> ERROR. */
    expect_cmd("mn foo\r\n", TEXT_CMD_META, &req);
    expect_err("mx\r\n", TEXT_ERR_ERROR, false);
    expect_err("Mn\r\n", TEXT_ERR_ERROR, false);
    expect_err("m\r\n", TEXT_ERR_ERROR, false);

    /*
     * Unknown or not yet served commands. On 1.6.18 slabs and extstore are
     * real commands; memstash answers ERROR for now.
     */
    expect_err("foo\r\n", TEXT_ERR_ERROR, false);
    expect_err("foo bar noreply\r\n", TEXT_ERR_ERROR, false);
    expect_err("slabs\r\n", TEXT_ERR_ERROR, false);
    expect_err("slabs reassign 1 2\r\n", TEXT_ERR_ERROR, false);
    expect_err("misbehave\r\n", TEXT_ERR_ERROR, false);
    expect_cmd("lru_crawler crawl all\r\n", TEXT_CMD_LRU_CRAWLER, &req);
    assert_int_equal(req.nargs, 3);
    assert_token(&req.args[2], "all");
    expect_cmd("watch\r\n", TEXT_CMD_WATCH, &req);
    assert_int_equal(req.nargs, 1);
    expect_cmd("watch fetchers connevents\r\n", TEXT_CMD_WATCH, &req);
    assert_int_equal(req.nargs, 3);
    assert_false(req.noreply);
    expect_cmd("watch noreply\r\n", TEXT_CMD_WATCH, &req);
    assert_true(req.noreply);
    expect_err("extstore\r\n", TEXT_ERR_ERROR, false);
    expect_err("versions\r\n", TEXT_ERR_ERROR, false);
    assert_int_equal(parse("foo\r\n", &req, &(size_t){0}), TEXT_OK);
    assert_int_equal(req.err_cmd, TEXT_CMD_ERROR);
}

static void test_pipeline(void **state)
{
    (void)state;
    const char buf[] = "set a 0 0 1\r\n"
                       "get a b\n"
                       "\r\n"
                       "delete a noreply\r\n"
                       "incr n 5\r\n"
                       "mn\r\n"
                       "version";
    static const struct {
        size_t len;
        enum text_cmd cmd;
    } want[] = {
        {13, TEXT_CMD_SET},    {8, TEXT_CMD_GET},   {2, TEXT_CMD_ERROR},
        {18, TEXT_CMD_DELETE}, {10, TEXT_CMD_INCR}, {4, TEXT_CMD_META},
    };
    const char *p = buf;
    size_t left = sizeof(buf) - 1;
    struct text_request req;
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        size_t consumed = 0;
        assert_int_equal(text_parse(p, left, &req, &consumed), TEXT_OK);
        assert_int_equal(consumed, want[i].len);
        assert_int_equal(req.cmd, want[i].cmd);
        assert_ptr_equal(req.line, p);
        p += consumed;
        left -= consumed;
    }
    size_t consumed = 0;
    assert_int_equal(text_parse(p, left, &req, &consumed), TEXT_NEED_MORE);
    assert_int_equal(consumed, 0);
    assert_int_equal(left, 7);
}

/* ---------------------------------------------------------------------- */
/* Every request split at every byte. */

static void assert_token_same(const struct text_token *a, const char *abase,
                              const struct text_token *b, const char *bbase)
{
    assert_int_equal(a->len, b->len);
    if (a->p == NULL || b->p == NULL) {
        assert_ptr_equal(a->p, NULL);
        assert_ptr_equal(b->p, NULL);
        return;
    }
    assert_int_equal(a->p - abase, b->p - bbase);
}

/* Requests parsed from two copies of the same bytes must match field by field. */
static void assert_req_same(const struct text_request *a, const char *abase,
                            const struct text_request *b, const char *bbase)
{
    assert_int_equal(a->cmd, b->cmd);
    assert_int_equal(a->err, b->err);
    assert_int_equal(a->err_cmd, b->err_cmd);
    assert_int_equal(a->noreply, b->noreply);
    assert_int_equal(a->line - abase, b->line - bbase);
    assert_int_equal(a->line_len, b->line_len);
    assert_token_same(&a->key, abase, &b->key, bbase);
    assert_int_equal(a->flags, b->flags);
    assert_int_equal(a->exptime, b->exptime);
    assert_int_equal(a->bytes, b->bytes);
    assert_true(a->cas == b->cas);
    assert_true(a->delta == b->delta);
    assert_int_equal(a->graceful, b->graceful);
    struct text_token ak = {a->keys, a->keys_len};
    struct text_token bk = {b->keys, b->keys_len};
    assert_token_same(&ak, abase, &bk, bbase);
    assert_int_equal(a->nkeys, b->nkeys);
    assert_int_equal(a->nargs, b->nargs);
    assert_int_equal(a->args_more, b->args_more);
    for (unsigned i = 0; i < a->nargs; i++) {
        assert_token_same(&a->args[i], abase, &b->args[i], bbase);
    }
}

static void check_split(const char *line, size_t len)
{
    /* The reference: the whole line in its own exact-size buffer. */
    char *whole = malloc(len);
    assert_non_null(whole);
    memcpy(whole, line, len);
    struct text_request ref;
    size_t ref_consumed = 0;
    enum text_status ref_status = text_parse(whole, len, &ref, &ref_consumed);
    assert_int_not_equal(ref_status, TEXT_NEED_MORE);

    const char *nl = memchr(line, '\n', len);
    assert_non_null(nl);
    size_t line_end = (size_t)(nl - line) + 1;
    for (size_t i = 0; i <= len; i++) {
        /* Exact-size copies let AddressSanitizer catch any over-read. */
        char *part = malloc(i > 0 ? i : 1);
        assert_non_null(part);
        memcpy(part, line, i);
        struct text_request req;
        size_t consumed = 12345;
        enum text_status st = text_parse(part, i, &req, &consumed);
        if (i < line_end) {
            assert_int_equal(st, TEXT_NEED_MORE);
            assert_int_equal(consumed, 0);
        } else {
            assert_int_equal(st, ref_status);
            assert_int_equal(consumed, ref_consumed);
            assert_int_equal(consumed, line_end);
            assert_req_same(&req, part, &ref, whole);
        }
        free(part);
    }
    free(whole);
}

static void test_split_every_byte(void **state)
{
    (void)state;
    static const char *const lines[] = {
        "get k\r\n",
        "get  a   bb ccc  \r\n",
        "gets k1 k2\n",
        "bget k\r\n",
        "gat 10 a b\r\n",
        "gats abc k\r\n",
        "gat 10\r\n",
        "set foo 5 10 3\r\n",
        "set k 0 0 1 noreply\r\n",
        "set k 0 0 1 foo\r\n",
        "set k abc 0 1 noreply\r\n",
        "add k 0 0 1\r\n",
        "replace k 0 0 1\r\n",
        "append k 0 0 1\r\n",
        "prepend k 0 0 1\r\n",
        "cas k 1 2 3 99 noreply\r\n",
        "cas k 0 0 1 -1\r\n",
        "delete k\r\n",
        "delete k 0 noreply\r\n",
        "delete k 1\r\n",
        "incr k 1\r\n",
        "decr k 1 noreply\r\n",
        "incr k abc noreply\r\n",
        "touch k 10\r\n",
        "touch k abc\r\n",
        "stats\r\n",
        "stats items\r\n",
        "flush_all\r\n",
        "flush_all 10 noreply\r\n",
        "flush_all abc\r\n",
        "version\r\n",
        "verbosity 1\r\n",
        "verbosity noreply\r\n",
        "quit\r\n",
        "shutdown graceful\r\n",
        "shutdown x\r\n",
        "cache_memlimit 64\r\n",
        "cache_memlimit abc noreply\r\n",
        "mg k v t\r\n",
        "mn\r\n",
        "foo bar\r\n",
        "GET / HTTP/1.1\r\n",
        "\r\n",
        "\n",
        "   version\r\r\n",
        "set a\tb 0 0 1\r\n",
    };
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        check_split(lines[i], strlen(lines[i]));
    }

    /* A NUL inside the line. */
    const char nul[] = "get a\0 b\r\n";
    check_split(nul, sizeof(nul) - 1);

    /* A multiget longer than the 2048-byte guard, split everywhere too. */
    size_t len = 3000;
    char *mg = malloc(len);
    assert_non_null(mg);
    memcpy(mg, "  get ", 6);
    for (size_t i = 6; i < len - 2; i++) {
        mg[i] = (i % 7 == 0) ? ' ' : 'k';
    }
    mg[len - 2] = '\r';
    mg[len - 1] = '\n';
    check_split(mg, len);
    free(mg);

    /* A 251-byte key is refused only once the whole line is in. */
    char *k251 = repeat('k', 251);
    const char *s = fmt("set %s 0 0 1 noreply\r\n", k251);
    check_split(s, strlen(s));
    free(k251);
}

/* ---------------------------------------------------------------------- */

static void test_compose(void **state)
{
    (void)state;
    char buf[TEXT_VALUE_HEADER_MAX];
    size_t n = text_compose_value(buf, "foo", 3, 5, 10, false, 0);
    assert_int_equal(n, strlen("VALUE foo 5 10\r\n"));
    assert_memory_equal(buf, "VALUE foo 5 10\r\n", n);
    n = text_compose_value(buf, "foo", 3, 0, 0, true, 42);
    assert_int_equal(n, strlen("VALUE foo 0 0 42\r\n"));
    assert_memory_equal(buf, "VALUE foo 0 0 42\r\n", n);

    /* The largest header fits TEXT_VALUE_HEADER_MAX exactly. */
    char *k250 = repeat('k', 250);
    n = text_compose_value(buf, k250, 250, UINT32_MAX, SIZE_MAX, true, UINT64_MAX);
    assert_int_equal(n, TEXT_VALUE_HEADER_MAX);
    const char *tail = " 4294967295 18446744073709551615 18446744073709551615\r\n";
    assert_memory_equal(buf, "VALUE ", 6);
    assert_memory_equal(buf + 6, k250, 250);
    assert_memory_equal(buf + 256, tail, strlen(tail));
    free(k250);

    char sb[64];
    n = text_compose_stat_u64(sb, sizeof(sb), "curr_items", 12345);
    assert_int_equal(n, strlen("STAT curr_items 12345\r\n"));
    assert_memory_equal(sb, "STAT curr_items 12345\r\n", n);
    n = text_compose_stat_u64(sb, sizeof(sb), "x", 0);
    assert_memory_equal(sb, "STAT x 0\r\n", n);
    assert_int_equal(n, 10);
    n = text_compose_stat_u64(sb, sizeof(sb), "big", UINT64_MAX);
    assert_memory_equal(sb, "STAT big 18446744073709551615\r\n", n);
    n = text_compose_stat_str(sb, sizeof(sb), "version", "1.6.18");
    assert_int_equal(n, strlen("STAT version 1.6.18\r\n"));
    assert_memory_equal(sb, "STAT version 1.6.18\r\n", n);
    n = text_compose_stat_str(sb, sizeof(sb), "empty", "");
    assert_memory_equal(sb, "STAT empty \r\n", n);

    /* Too small: nothing written. Exactly enough: written. */
    memset(sb, '#', sizeof(sb));
    assert_int_equal(text_compose_stat_u64(sb, 9, "x", 0), 0);
    assert_int_equal(text_compose_stat_str(sb, 20, "version", "1.6.18"), 0);
    assert_int_equal(sb[0], '#');
    assert_int_equal(text_compose_stat_u64(sb, 10, "x", 0), 10);
    assert_int_equal(text_compose_stat_str(sb, 21, "version", "1.6.18"), 21);
}

static void test_error_strings(void **state)
{
    (void)state;
    assert_string_equal(text_error_string(TEXT_ERR_NONE), "");
    assert_string_equal(text_error_string(TEXT_ERR_ERROR), "ERROR");
    assert_string_equal(text_error_string(TEXT_ERR_BAD_FORMAT),
                        "CLIENT_ERROR bad command line format");
    assert_string_equal(text_error_string(TEXT_ERR_DELETE_USAGE),
                        "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]");
    assert_string_equal(text_error_string(TEXT_ERR_INVALID_EXPTIME),
                        "CLIENT_ERROR invalid exptime argument");
    assert_string_equal(text_error_string(TEXT_ERR_INVALID_DELTA),
                        "CLIENT_ERROR invalid numeric delta argument");
    assert_string_equal(text_error_string(TEXT_ERR_BAD_LINE), "CLIENT_ERROR bad command line");
    assert_string_equal(text_error_string(TEXT_ERR_SHUTDOWN_MODE),
                        "CLIENT_ERROR invalid shutdown mode");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_framing),          cmocka_unit_test(test_long_line),
        cmocka_unit_test(test_http_probe),       cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_next_token),       cmocka_unit_test(test_get),
        cmocka_unit_test(test_storage),          cmocka_unit_test(test_delete),
        cmocka_unit_test(test_arith_touch),      cmocka_unit_test(test_admin),
        cmocka_unit_test(test_meta_and_unknown), cmocka_unit_test(test_pipeline),
        cmocka_unit_test(test_split_every_byte), cmocka_unit_test(test_compose),
        cmocka_unit_test(test_error_strings),
    };
    return cmocka_run_group_tests(tests, 0, NULL);
}

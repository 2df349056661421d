/*
 * test_meta.c - unit tests for the meta protocol codec (src/proto/meta.c).
 *
 * Expected behaviour is memcached 1.6.18's. Every request line, error
 * string and reply line written out below was verified live: the same line
 * was sent to Debian's memcached 1.6.18 (/usr/bin/memcached on 127.0.0.1,
 * -U 0) and its reply copied here; a silent reply was told apart from a slow
 * one by sending "mn" after it. CAS and timing numbers in replies are the
 * ones that server produced and are fed back in as item facts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "meta.h"

/* One request line run through text_parse() and meta_parse(). */
struct parsed {
    struct text_request t;
    struct meta_request m;
    char keybuf[META_KEYBUF_SIZE];
    int rc;
};

/* Parses a whole line (which must end in "\n"); the line must outlive p. */
static void parse_line(const char *line, size_t len, struct parsed *p)
{
    size_t consumed = 0;
    assert_int_equal(text_parse(line, len, &p->t, &consumed), TEXT_OK);
    assert_int_equal(consumed, len);
    p->rc = meta_parse(&p->t, p->keybuf, &p->m);
    assert_int_equal(p->rc, p->m.err == META_ERR_NONE ? 0 : -1);
}

static void parse(const char *line, struct parsed *p)
{
    parse_line(line, strlen(line), p);
}

/* The line must parse as a valid cmd. */
static void expect_ok(const char *line, enum meta_cmd cmd, struct parsed *p)
{
    parse(line, p);
    if (p->m.err != META_ERR_NONE) {
        fail_msg("%s: unexpected %s", line, meta_error_string(p->m.err));
    }
    assert_int_equal(p->rc, 0);
    assert_int_equal(p->m.cmd, cmd);
}

/* The line must be refused with err; swallow says whether ms data is discarded. */
static void expect_err_swallow(const char *line, enum meta_error err, bool swallow)
{
    struct parsed p;
    parse(line, &p);
    if (p.m.err != err) {
        fail_msg("%s: got \"%s\", want \"%s\"", line, meta_error_string(p.m.err),
                 meta_error_string(err));
    }
    assert_int_equal(p.rc, -1);
    assert_int_equal(p.m.swallow, swallow);
}

static void expect_err(const char *line, enum meta_error err)
{
    expect_err_swallow(line, err, false);
}

static void assert_token(const struct text_token *t, const char *s)
{
    assert_int_equal(t->len, strlen(s));
    assert_memory_equal(t->p, s, t->len);
}

static void assert_order(const struct meta_request *m, const char *flags)
{
    assert_int_equal(m->norder, strlen(flags));
    assert_memory_equal(m->order, flags, m->norder);
}

/* Builds a line from a printf-like pattern into one of two rotating buffers. */
static const char *fmt(const char *pattern, ...)
{
    static char bufs[2][4096];
    static int which;
    char *buf = bufs[which];
    which ^= 1;
    va_list ap;
    va_start(ap, pattern);
    int n = vsnprintf(buf, sizeof(bufs[0]), pattern, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof(bufs[0]));
    return buf;
}

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* Composes into a scratch buffer and compares with the expected line. */
static void expect_line(const struct meta_request *req, enum meta_rc rc,
                        const struct meta_item_facts *f, const char *want)
{
    char buf[META_HEADER_MAX];
    size_t n = meta_compose(buf, sizeof(buf), req, rc, f);
    if (n != strlen(want) || memcmp(buf, want, n) != 0) {
        fail_msg("composed \"%.*s\", want \"%s\"", (int)n, buf, want);
    }
}

/* ---- Parsing ---- */

static void test_mg_flags(void **state)
{
    (void)state;
    struct parsed p;

    expect_ok("mg foo v f t c s k O123 h l\r\n", META_CMD_MG, &p);
    assert_token(&p.m.key, "foo");
    assert_token(&p.m.key_token, "foo");
    assert_false(p.m.key_binary);
    assert_order(&p.m, "vftcskOhl");
    assert_token(&p.m.opaque, "O123");
    const char *all = "vftcskOhl";
    for (const char *c = all; *c != '\0'; c++) {
        assert_true(meta_has_flag(&p.m, *c));
    }
    assert_false(meta_has_flag(&p.m, 'q'));
    assert_false(meta_has_flag(&p.m, 'T'));
    assert_false(meta_has_flag(&p.m, '!'));

    expect_ok("mg foo\r\n", META_CMD_MG, &p);
    assert_int_equal(p.m.norder, 0);
    assert_int_equal(p.m.flags, 0);
    assert_int_equal(p.m.opaque.len, 0);

    expect_ok("mg foo q u T30 N-5 R2147483647\r\n", META_CMD_MG, &p);
    assert_true(meta_has_flag(&p.m, 'q'));
    assert_true(meta_has_flag(&p.m, 'u'));
    assert_int_equal(p.m.ttl, 30);
    assert_int_equal(p.m.vivify_ttl, -5);
    assert_int_equal(p.m.recache_ttl, 2147483647);
    assert_order(&p.m, "quTNR");

    /* Verified: every flag of the common set is accepted by mg, even unused ones. */
    expect_ok("mg foo J5 D5 C5 F5 I s\r\n", META_CMD_MG, &p);
    assert_int_equal(p.m.initial, 5);
    assert_int_equal(p.m.delta, 5);
    assert_int_equal(p.m.cas, 5);
    assert_int_equal(p.m.client_flags, 5);
    expect_ok("mg foo MX s\r\n", META_CMD_MG, &p);
    assert_int_equal(p.m.mode, 'X');
    expect_ok("mg foo P L\r\n", META_CMD_MG, &p);
    expect_ok("mg foo Pabc Lxyz O\r\n", META_CMD_MG, &p);
    assert_token(&p.m.opaque, "O");
    /* Flags carry their first character only: "vxyz" is v. */
    expect_ok("mg foo vxyz qq\r\n", META_CMD_MG, &p);
    assert_true(meta_has_flag(&p.m, 'v'));
    assert_true(meta_has_flag(&p.m, 'q'));

    /* Leading spaces, runs of spaces and a bare "\n" (verified). */
    expect_ok("  mg   foo   v  \r\n", META_CMD_MG, &p);
    assert_token(&p.m.key, "foo");
    assert_order(&p.m, "v");
    expect_ok("mg foo v\n", META_CMD_MG, &p);

    /* 19 tokens are accepted (verified: 17 flags on mg). */
    expect_ok("mg foo s v f t c h l k u q O1 T5 N5 R5 P L I\r\n", META_CMD_MG, &p);
    assert_int_equal(p.m.norder, 17);

    /* A 250-byte key is accepted, 251 is not (verified). */
    char *k250 = repeat('a', 250);
    expect_ok(fmt("mg %s v\r\n", k250), META_CMD_MG, &p);
    assert_int_equal(p.m.key.len, 250);
    free(k250);
}

static void test_ms_parse(void **state)
{
    (void)state;
    struct parsed p;

    expect_ok("ms k1 2\r\n", META_CMD_MS, &p);
    assert_token(&p.m.key, "k1");
    assert_int_equal(p.m.data_len, 2);
    assert_int_equal(p.m.read_len, 4);
    assert_true(p.m.swallow);
    assert_int_equal(p.m.store_op, META_STORE_SET);
    assert_false(p.m.invalidate);

    expect_ok("ms k1 2 c k O55 s q T-1 F5 I\r\n", META_CMD_MS, &p);
    assert_order(&p.m, "ckOsqTFI");
    assert_int_equal(p.m.ttl, -1);
    assert_int_equal(p.m.client_flags, 5);
    assert_token(&p.m.opaque, "O55");
    assert_false(p.m.invalidate); /* I only matters in CAS mode. */

    static const struct {
        const char *line;
        enum meta_store_op op;
        bool invalidate;
    } modes[] = {
        {"ms k 1 MS\r\n", META_STORE_SET, false},
        {"ms k 1 ME\r\n", META_STORE_ADD, false},
        {"ms k 1 MA\r\n", META_STORE_APPEND, false},
        {"ms k 1 MP\r\n", META_STORE_PREPEND, false},
        {"ms k 1 MR\r\n", META_STORE_REPLACE, false},
        {"ms k 1 C5\r\n", META_STORE_CAS, false},
        {"ms k 1 MS C5\r\n", META_STORE_CAS, false},
        {"ms k 1 MR C5 I\r\n", META_STORE_CAS, true},
        {"ms k 1 I C1\r\n", META_STORE_CAS, true},
        {"ms k 1 ME C5 I\r\n", META_STORE_ADD, false},
        {"ms k 1 MA C5\r\n", META_STORE_APPEND, false},
        {"ms k 1 MP C5 I\r\n", META_STORE_PREPEND, false},
        {"ms k 1 C0\r\n", META_STORE_CAS, false},
    };
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        expect_ok(modes[i].line, META_CMD_MS, &p);
        assert_int_equal(p.m.store_op, modes[i].op);
        assert_int_equal(p.m.invalidate, modes[i].invalidate);
    }

    /* Verified: mg-only flags and N are accepted (and ignored) by ms. */
    expect_ok("ms nokey 2 v h l t f u N5 R5 s\r\n", META_CMD_MS, &p);
    assert_int_equal(p.m.vivify_ttl, 5);

    /* datalen: strtol rules, truncated to 32 bits (verified: 4294967298 stores 2 bytes). */
    expect_ok("ms foo 4294967298\r\n", META_CMD_MS, &p);
    assert_int_equal(p.m.data_len, 2);
    expect_ok("ms foo +2\r\n", META_CMD_MS, &p);
    assert_int_equal(p.m.data_len, 2);
    expect_ok("ms foo 2147483645\r\n", META_CMD_MS, &p);
    assert_int_equal(p.m.read_len, 2147483647u);
    expect_ok("ms foo 0\r\n", META_CMD_MS, &p);
    assert_int_equal(p.m.read_len, 2);

    /* 16 flags after key and datalen make 19 tokens (verified). */
    expect_ok("ms foo 1 c k q O1 T5 F1 I P L s v f t h l u\r\n", META_CMD_MS, &p);
    assert_int_equal(p.m.norder, 16);

    /* b: the key is decoded; the datalen is still the third token. */
    expect_ok("ms YmluYXJ5 1 b k c O1\r\n", META_CMD_MS, &p);
    assert_true(p.m.key_binary);
    assert_token(&p.m.key, "binary");
    assert_token(&p.m.key_token, "YmluYXJ5");
    assert_ptr_equal(p.m.key.p, p.keybuf);
}

static void test_md_ma_parse(void **state)
{
    (void)state;
    struct parsed p;

    expect_ok("md d1 q\r\n", META_CMD_MD, &p);
    assert_true(meta_has_flag(&p.m, 'q'));
    expect_ok("md d1 I T30 k q C7 O1\r\n", META_CMD_MD, &p);
    assert_true(meta_has_flag(&p.m, 'I'));
    assert_int_equal(p.m.ttl, 30);
    assert_int_equal(p.m.cas, 7);
    assert_order(&p.m, "ITkqCO");
    /* Verified: md takes M with any mode and ignores it. */
    expect_ok("md foo MX q\r\n", META_CMD_MD, &p);
    expect_ok("md ZDE= b k\r\n", META_CMD_MD, &p);
    assert_token(&p.m.key, "d1");

    expect_ok("ma cnt\r\n", META_CMD_MA, &p);
    assert_true(p.m.incr);
    assert_int_equal(p.m.delta, 1);
    assert_int_equal(p.m.initial, 0);
    expect_ok("ma cnt N0 J10 v\r\n", META_CMD_MA, &p);
    assert_int_equal(p.m.vivify_ttl, 0);
    assert_int_equal(p.m.initial, 10);
    assert_true(meta_has_flag(&p.m, 'N'));
    expect_ok("ma cnt MD D5 v\r\n", META_CMD_MA, &p);
    assert_false(p.m.incr);
    assert_int_equal(p.m.delta, 5);
    expect_ok("ma cnt M- D100 v\r\n", META_CMD_MA, &p);
    assert_false(p.m.incr);
    expect_ok("ma cnt M+ v\r\n", META_CMD_MA, &p);
    assert_true(p.m.incr);
    expect_ok("ma cnt MI v\r\n", META_CMD_MA, &p);
    assert_true(p.m.incr);
    expect_ok("ma cnt D18446744073709551615 v\r\n", META_CMD_MA, &p);
    assert_int_equal(p.m.delta, UINT64_MAX);
    expect_ok("ma cnt v t c k O5 C9 T100 q\r\n", META_CMD_MA, &p);
    assert_order(&p.m, "vtckOCTq");
    expect_ok("ma Y250 b v k N0\r\n", META_CMD_MA, &p);
    assert_token(&p.m.key, "cnt");
    assert_true(p.m.key_binary);
}

static void test_mn_me_parse(void **state)
{
    (void)state;
    struct parsed p;

    expect_ok("mn\r\n", META_CMD_MN, &p);
    expect_ok("mn foo bar\r\n", META_CMD_MN, &p);

    expect_ok("me foo\r\n", META_CMD_ME, &p);
    assert_token(&p.m.key, "foo");
    assert_false(p.m.key_binary);
    expect_ok("me Zm9vYg== b\r\n", META_CMD_ME, &p);
    assert_token(&p.m.key, "foob");
    assert_true(p.m.key_binary);
    /* Verified: only a third token of exactly "b" means base64. */
    expect_ok("me Zm9v bx\r\n", META_CMD_ME, &p);
    assert_token(&p.m.key, "Zm9v");
    expect_ok("me Zm9v x\r\n", META_CMD_ME, &p);
    assert_false(p.m.key_binary);
    expect_ok("me Zm9v b extra\r\n", META_CMD_ME, &p);
    assert_token(&p.m.key, "foo");
    char *k250 = repeat('a', 250);
    expect_ok(fmt("me %s\r\n", k250), META_CMD_ME, &p);
    free(k250);
}

/* Each line was sent to 1.6.18 and the error it answered is the one expected here. */
static void test_errors_mg(void **state)
{
    (void)state;
    expect_err("mg\r\n", META_ERR_ERROR);
    expect_err("mg foo E5\r\n", META_ERR_INVALID_FLAG);
    expect_err("mg foo x\r\n", META_ERR_INVALID_FLAG);
    expect_err("mg foo Z\r\n", META_ERR_INVALID_FLAG);
    expect_err("mg foo v v\r\n", META_ERR_DUPLICATE_FLAG);
    expect_err("mg foo P L Pabc\r\n", META_ERR_DUPLICATE_FLAG);
    expect_err("mg foo \xc3\r\n", META_ERR_DUPLICATE_FLAG);
    expect_err("mg foo \x7f\r\n", META_ERR_DUPLICATE_FLAG);
    expect_err("mg foo T\r\n", META_ERR_BAD_TOKEN);
    expect_err("mg foo Tabc\r\n", META_ERR_BAD_TOKEN);
    expect_err("mg foo T5x t\r\n", META_ERR_BAD_TOKEN);
    expect_err("mg foo T0x10 t\r\n", META_ERR_BAD_TOKEN);
    expect_err("mg foo T-9223372036854775809 t\r\n", META_ERR_BAD_TOKEN);
    expect_err("mg foo N\r\n", META_ERR_BAD_TOKEN);
    expect_err("mg foo Rx\r\n", META_ERR_BAD_TOKEN);
    expect_err("mg foo Cx\r\n", META_ERR_BAD_TOKEN);
    expect_err("mg foo Jabc\r\n", META_ERR_BAD_INITIAL);
    expect_err("mg foo Dabc\r\n", META_ERR_BAD_DELTA);
    expect_err("mg foo M\r\n", META_ERR_M_LENGTH);
    expect_err("mg foo Fx\r\n", META_ERR_BAD_FORMAT);
    expect_err("mg foo b\r\n", META_ERR_DECODE_KEY);
    expect_err("mg foo k b\r\n", META_ERR_DECODE_KEY);
    /* Order: the last recorded error wins; dup/invalid stop at once; F keeps the message. */
    expect_err("mg !!! Tx b\r\n", META_ERR_DECODE_KEY);
    expect_err("mg !!! b Tx\r\n", META_ERR_BAD_TOKEN);
    expect_err("mg foo v v b\r\n", META_ERR_DUPLICATE_FLAG);
    expect_err("mg foo Tx v v\r\n", META_ERR_DUPLICATE_FLAG);
    expect_err("mg foo Tx Z\r\n", META_ERR_INVALID_FLAG);
    expect_err("mg foo Fx Dx\r\n", META_ERR_BAD_DELTA);
    expect_err("mg foo Dx Fx\r\n", META_ERR_BAD_DELTA);
    expect_err("mg foo s v f t c h l k u q O1 T5 N5 R5 P L b\r\n", META_ERR_DECODE_KEY);
    /* 20 and more tokens. */
    expect_err("mg foo s v f t c h l k u q O1 T5 N5 R5 P L b C1\r\n", META_ERR_FLAGS_TOO_LONG_MG);
    expect_err("mg foo x x x x x x x x x x x x x x x x x x x x x x x x x\r\n",
               META_ERR_FLAGS_TOO_LONG_MG);
    char *k251 = repeat('a', 251);
    expect_err(fmt("mg %s v\r\n", k251), META_ERR_BAD_FORMAT);
    /* The key length is checked before the token count. */
    expect_err(fmt("mg %s x x x x x x x x x x x x x x x x x x x x x\r\n", k251),
               META_ERR_BAD_FORMAT);
    free(k251);

    /* Opaque: 32 bytes including 'O' pass, 33 fail after the fetch. */
    struct parsed p;
    expect_ok("mg foo O1234567890123456789012345678901\r\n", META_CMD_MG, &p);
    expect_err("mg foo O12345678901234567890123456789012\r\n", META_ERR_OPAQUE_TOO_LONG);
    parse("mg n T30 O123456789012345678901234567890123\r\n", &p);
    assert_int_equal(p.m.err, META_ERR_OPAQUE_TOO_LONG);
    assert_true(p.m.err_after_exec);
    assert_int_equal(p.m.ttl, 30);
    assert_true(meta_has_flag(&p.m, 'T'));
}

static void test_errors_ms(void **state)
{
    (void)state;
    /* Before datalen is known: no swallow (verified: the data line then answers ERROR). */
    expect_err("ms\r\n", META_ERR_ERROR);
    expect_err("ms nokey\r\n", META_ERR_BAD_FORMAT);
    expect_err("ms nokey abc\r\n", META_ERR_BAD_FORMAT);
    expect_err("ms nokey -1\r\n", META_ERR_BAD_FORMAT);
    expect_err("ms foo 2x\r\n", META_ERR_BAD_FORMAT);
    expect_err("ms foo 2147483646\r\n", META_ERR_BAD_FORMAT);
    expect_err("ms YWJj b k c 1\r\n", META_ERR_BAD_FORMAT);
    expect_err("ms foo 1 c k q O1 T5 F1 I P L s v f t h l u N5\r\n", META_ERR_FLAGS_TOO_LONG);
    char *k251 = repeat('a', 251);
    expect_err(fmt("ms %s 1\r\n", k251), META_ERR_BAD_FORMAT);
    free(k251);

    /* After datalen: the data block is swallowed. */
    expect_err_swallow("ms nokey 2 MX\r\n", META_ERR_MS_MODE, true);
    expect_err_swallow("ms nokey 2 Ms\r\n", META_ERR_MS_MODE, true);
    expect_err_swallow("ms nokey 2 M\r\n", META_ERR_M_LENGTH, true);
    expect_err_swallow("ms nokey 2 MSS\r\n", META_ERR_M_LENGTH, true);
    expect_err_swallow("ms nokey 2 E5\r\n", META_ERR_INVALID_FLAG, true);
    expect_err_swallow("ms foo 1 S1\r\n", META_ERR_INVALID_FLAG, true);
    expect_err_swallow("ms foo 1 \xc3\r\n", META_ERR_DUPLICATE_FLAG, true);
    expect_err_swallow("ms nokey 2 Fabc\r\n", META_ERR_BAD_FORMAT, true);
    expect_err_swallow("ms nokey 2 F-1\r\n", META_ERR_BAD_FORMAT, true);
    expect_err_swallow("ms foo 1 F18446744073709551616\r\n", META_ERR_BAD_FORMAT, true);
    expect_err_swallow("ms nokey 2 Tabc\r\n", META_ERR_BAD_TOKEN, true);
    expect_err_swallow("ms n 1 T\r\n", META_ERR_BAD_TOKEN, true);
    expect_err_swallow("ms nokey 2 Cabc\r\n", META_ERR_BAD_TOKEN, true);
    expect_err_swallow("ms nokey 2 C-1\r\n", META_ERR_BAD_TOKEN, true);
    expect_err_swallow("ms foo 1 Jx\r\n", META_ERR_BAD_INITIAL, true);
    expect_err_swallow("ms foo 1 Dx\r\n", META_ERR_BAD_DELTA, true);
    expect_err_swallow("ms foo 1 b\r\n", META_ERR_DECODE_KEY, true);
    expect_err_swallow("ms nokey 2 O123456789012345678901234567890123\r\n",
                       META_ERR_OPAQUE_TOO_LONG, true);
    /* Precedence, verified one by one. */
    expect_err_swallow("ms Zm9v 1 b T\r\n", META_ERR_BAD_TOKEN, true);
    expect_err_swallow("ms !!! 1 b Tx\r\n", META_ERR_BAD_TOKEN, true);
    expect_err_swallow("ms !!! 1 Tx b\r\n", META_ERR_DECODE_KEY, true);
    expect_err_swallow("ms foo 1 Tx Fx\r\n", META_ERR_BAD_TOKEN, true);
    expect_err_swallow("ms foo 1 Fx Tx\r\n", META_ERR_BAD_TOKEN, true);
    expect_err_swallow("ms foo 1 Fx M\r\n", META_ERR_M_LENGTH, true);
    expect_err_swallow("ms foo 1 M Fx\r\n", META_ERR_M_LENGTH, true);
    expect_err_swallow("ms foo 1 Tx MX\r\n", META_ERR_BAD_TOKEN, true);
    expect_err_swallow("ms foo 1 MX O123456789012345678901234567890123\r\n", META_ERR_MS_MODE,
                       true);
    expect_err_swallow("ms foo 1 O123456789012345678901234567890123 MX\r\n", META_ERR_MS_MODE,
                       true);
    expect_err_swallow("ms foo 1 O123456789012345678901234567890123 Tx\r\n", META_ERR_BAD_TOKEN,
                       true);
    expect_err_swallow("ms YmluYXJ5 1 b k c O1 q MX\r\n", META_ERR_MS_MODE, true);

    struct parsed p;
    parse("ms nokey 2 O123456789012345678901234567890123\r\n", &p);
    assert_false(p.m.err_after_exec);
    assert_int_equal(p.m.read_len, 4);
}

static void test_errors_md_ma_me(void **state)
{
    (void)state;
    /* md and ma answer every flag error with one message. */
    static const char *const md_bad[] = {
        "md d1 Cabc\r\n",
        "md d1 v v\r\n",
        "md d1 E5\r\n",
        "md d1 x\r\n",
        "md d1 Tabc\r\n",
        "md d1 b\r\n",
        "md d1 M\r\n",
        "md d1 D-1\r\n",
        "md foo \xc3\r\n",
        "md foo O123456789012345678901234567890123 Cx\r\n",
        "md foo s v f t c h l k u q O1 T5 N5 R5 P L b\r\n",
    };
    for (size_t i = 0; i < sizeof(md_bad) / sizeof(md_bad[0]); i++) {
        expect_err(md_bad[i], META_ERR_INVALID_OR_DUPLICATE);
    }
    static const char *const ma_bad[] = {
        "ma cnt MII v\r\n", "ma cnt Dabc\r\n",  "ma cnt Jabc\r\n", "ma cnt D-1\r\n",
        "ma cnt v b\r\n",   "ma cnt E5\r\n",    "ma cnt N\r\n",    "ma cnt Tx\r\n",
        "ma foo \xc3\r\n",  "ma foo Mx Dx\r\n", "ma foo Fx\r\n",
    };
    for (size_t i = 0; i < sizeof(ma_bad) / sizeof(ma_bad[0]); i++) {
        expect_err(ma_bad[i], META_ERR_INVALID_OR_DUPLICATE);
    }
    expect_err("md\r\n", META_ERR_ERROR);
    expect_err("ma\r\n", META_ERR_ERROR);
    expect_err("md d1 O123456789012345678901234567890123\r\n", META_ERR_OPAQUE_TOO_LONG);
    expect_err("ma cnt Md v\r\n", META_ERR_MA_MODE);
    expect_err("ma cnt Mi v\r\n", META_ERR_MA_MODE);
    expect_err("ma cnt MX v\r\n", META_ERR_MA_MODE);
    expect_err("ma foo MX O123456789012345678901234567890123\r\n", META_ERR_MA_MODE);
    expect_err("md foo s v f t c h l k u q O1 T5 N5 R5 P L b C1\r\n", META_ERR_FLAGS_TOO_LONG);
    expect_err("ma foo s v f t c h l k u q O1 T5 N5 R5 P L b C1 I\r\n", META_ERR_FLAGS_TOO_LONG);
    char *k251 = repeat('a', 251);
    expect_err(fmt("md %s\r\n", k251), META_ERR_BAD_FORMAT);
    expect_err(fmt("ma %s\r\n", k251), META_ERR_BAD_FORMAT);
    expect_err(fmt("me %s\r\n", k251), META_ERR_BAD_FORMAT);
    free(k251);

    struct parsed p;
    parse("md n k O123456789012345678901234567890123\r\n", &p);
    assert_false(p.m.err_after_exec);
    parse("ma n O123456789012345678901234567890123 v\r\n", &p);
    assert_int_equal(p.m.err, META_ERR_OPAQUE_TOO_LONG);
    assert_true(p.m.err_after_exec);

    expect_err("me\r\n", META_ERR_BAD_FORMAT);
    expect_err("me foo b\r\n", META_ERR_BAD_FORMAT);
    expect_err("me !!! b\r\n", META_ERR_BAD_FORMAT);

    /* Not a meta line at all. */
    size_t consumed;
    assert_int_equal(text_parse("mx\r\n", 4, &p.t, &consumed), TEXT_OK);
    assert_int_equal(meta_parse(&p.t, p.keybuf, &p.m), -1);
    assert_int_equal(p.m.err, META_ERR_ERROR);
    assert_int_equal(p.m.cmd, META_CMD_NONE);
}

static void test_error_strings(void **state)
{
    (void)state;
    static const struct {
        enum meta_error e;
        const char *s;
    } table[] = {
        {META_ERR_NONE, ""},
        {META_ERR_ERROR, "ERROR"},
        {META_ERR_BAD_FORMAT, "CLIENT_ERROR bad command line format"},
        {META_ERR_FLAGS_TOO_LONG_MG, "CLIENT_ERROR options flags are too long"},
        {META_ERR_FLAGS_TOO_LONG, "CLIENT_ERROR options flags too long"},
        {META_ERR_DUPLICATE_FLAG, "CLIENT_ERROR duplicate flag"},
        {META_ERR_INVALID_FLAG, "CLIENT_ERROR invalid flag"},
        {META_ERR_INVALID_OR_DUPLICATE, "CLIENT_ERROR invalid or duplicate flag"},
        {META_ERR_DECODE_KEY, "CLIENT_ERROR error decoding key"},
        {META_ERR_BAD_TOKEN, "CLIENT_ERROR bad token in command line format"},
        {META_ERR_BAD_INITIAL, "CLIENT_ERROR invalid numeric initial value"},
        {META_ERR_BAD_DELTA, "CLIENT_ERROR invalid numeric delta value"},
        {META_ERR_M_LENGTH, "CLIENT_ERROR incorrect length for M token"},
        {META_ERR_MS_MODE, "CLIENT_ERROR invalid mode for ms M token"},
        {META_ERR_MA_MODE, "CLIENT_ERROR invalid mode for ma M token"},
        {META_ERR_OPAQUE_TOO_LONG, "CLIENT_ERROR opaque token too long"},
        {META_ERR_BAD_DATA_CHUNK, "CLIENT_ERROR bad data chunk"},
        {META_ERR_NON_NUMERIC, "CLIENT_ERROR cannot increment or decrement non-numeric value"},
        {META_ERR_TOO_LARGE, "SERVER_ERROR object too large for cache"},
        {META_ERR_OOM_STORE, "SERVER_ERROR out of memory storing object"},
        {META_ERR_OOM, "SERVER_ERROR out of memory"},
        {META_ERR_OOM_VIVIFY, "SERVER_ERROR Out of memory allocating new item"},
        {META_ERR_REFCOUNT, "SERVER_ERROR refcount overflow during fetch"},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        assert_string_equal(meta_error_string(table[i].e), table[i].s);
    }
}

/* strtol/strtoull quirks of numeric flag tokens, all verified. */
static void test_numbers(void **state)
{
    (void)state;
    struct parsed p;

    static const struct {
        const char *line;
        int32_t ttl;
    } ttls[] = {
        {"mg foo T2147483647 t\r\n", 2147483647},
        {"mg foo T2147483648 t\r\n", INT32_MIN}, /* accepted, truncated to 32 bits */
        {"mg foo T-2147483649 t\r\n", 2147483647},
        {"mg foo T9223372036854775807 t\r\n", -1},
        {"mg foo T-9223372036854775808 t\r\n", 0},
        {"mg foo T+5 t\r\n", 5},
        {"mg foo T\t5 t\r\n", 5},
        {"mg foo T5\t t\r\n", 5},
        {"mg foo T-0 t\r\n", 0},
    };
    for (size_t i = 0; i < sizeof(ttls) / sizeof(ttls[0]); i++) {
        expect_ok(ttls[i].line, META_CMD_MG, &p);
        assert_int_equal(p.m.ttl, ttls[i].ttl);
    }

    static const struct {
        const char *line;
        uint64_t cas;
    } cases[] = {
        {"md foo C18446744073709551615 q\r\n", UINT64_MAX},
        {"md foo C-0 q\r\n", 0},
        {"md foo C-9223372036854775809 q\r\n", 9223372036854775807ull},
        {"md foo C-18446744073709551615 q\r\n", 1},
        {"md foo C+3 q\r\n", 3},
        {"md foo C\t3 q\r\n", 3},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        expect_ok(cases[i].line, META_CMD_MD, &p);
        assert_int_equal(p.m.cas, cases[i].cas);
    }
    expect_err("md foo C18446744073709551616 q\r\n", META_ERR_INVALID_OR_DUPLICATE);
    expect_err("md foo C-9223372036854775808 q\r\n", META_ERR_INVALID_OR_DUPLICATE);

    static const struct {
        const char *line;
        uint32_t flags;
    } fl[] = {
        {"ms foo 1 F4294967295\r\n", 4294967295u},
        {"ms foo 1 F4294967296\r\n", 0},
        {"ms foo 1 F-0\r\n", 0},
        {"ms foo 1 F-9223372036854775809\r\n", 4294967295u},
        {"ms foo 1 F18446744073709551615\r\n", 4294967295u},
        {"ms foo 1 F+7\r\n", 7},
    };
    for (size_t i = 0; i < sizeof(fl) / sizeof(fl[0]); i++) {
        expect_ok(fl[i].line, META_CMD_MS, &p);
        assert_int_equal(p.m.client_flags, fl[i].flags);
    }
}

/* ---- Base64 ---- */

static void expect_decode(const char *src, const char *want)
{
    char out[META_KEYBUF_SIZE];
    size_t n = meta_base64_decode(src, strlen(src), out, sizeof(out));
    if (want == NULL) {
        if (n != 0) {
            fail_msg("%s decoded to %zu bytes, want an error", src, n);
        }
        return;
    }
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
}

static void test_base64(void **state)
{
    (void)state;
    /* Accept/refuse decisions as 1.6.18 made them for "mg <key> b k". */
    expect_decode("Zm9v", "foo");
    expect_decode("Zm8=", "fo");
    expect_decode("Zg==", "f");
    expect_decode("Zm9vZg==", "foof");
    expect_decode("Zm9v!", "foo");
    expect_decode("!Zm9v", "foo");
    expect_decode("Zm!9v", "foo");
    expect_decode("Zg==Zm9v", "f");
    expect_decode("Z=g=", "d");
    expect_decode("YQ==", "a");
    expect_decode("Zm+/", "fo\xbf");
    expect_decode("Zm8", NULL);
    expect_decode("Zg=", NULL);
    expect_decode("Z===", NULL);
    expect_decode("====", NULL);
    expect_decode("Zm9v====", NULL);
    expect_decode("=Zm9v", NULL);
    expect_decode("Zm9v=", NULL);
    expect_decode("Zm-_", NULL);
    expect_decode("YQ", NULL);
    expect_decode("", NULL);
    expect_decode("!!!!", NULL);

    /* Output over cap is refused. */
    char small[2];
    assert_int_equal(meta_base64_decode("Zm9v", 4, small, sizeof(small)), 0);
    assert_int_equal(meta_base64_decode("Zg==", 4, small, sizeof(small)), 0);

    char enc[400];
    assert_int_equal(meta_base64_encode((const unsigned char *)"", 0, enc), 0);
    assert_int_equal(meta_base64_encode((const unsigned char *)"f", 1, enc), 4);
    assert_memory_equal(enc, "Zg==", 4);
    assert_int_equal(meta_base64_encode((const unsigned char *)"fo", 2, enc), 4);
    assert_memory_equal(enc, "Zm8=", 4);
    assert_int_equal(meta_base64_encode((const unsigned char *)"foob", 4, enc), 8);
    assert_memory_equal(enc, "Zm9vYg==", 8);

    /* Round trip of every length up to the longest decodable key, all byte values. */
    unsigned char raw[187];
    for (size_t i = 0; i < sizeof(raw); i++) {
        raw[i] = (unsigned char)(i * 131 + 7);
    }
    for (size_t n = 1; n <= sizeof(raw); n++) {
        size_t e = meta_base64_encode(raw, n, enc);
        assert_int_equal(e, 4 * ((n + 2) / 3));
        char dec[META_KEYBUF_SIZE];
        assert_int_equal(meta_base64_decode(enc, e, dec, sizeof(dec)), n);
        assert_memory_equal(dec, raw, n);
    }
}

/* A b key goes in encoded, is looked up decoded and comes back encoded with " b". */
static void test_base64_key_round_trip(void **state)
{
    (void)state;
    unsigned char raw[186];
    for (size_t i = 0; i < sizeof(raw); i++) {
        raw[i] = (unsigned char)i;
    }
    for (size_t n = 1; n <= sizeof(raw); n += 5) {
        char enc[256];
        size_t e = meta_base64_encode(raw, n, enc);
        enc[e] = '\0';
        const char *line = fmt("md %s b k q\r\n", enc);
        struct parsed p;
        expect_ok(line, META_CMD_MD, &p);
        assert_int_equal(p.m.key.len, n);
        assert_memory_equal(p.m.key.p, raw, n);
        expect_line(&p.m, META_RC_NF, NULL, fmt("NF k%s b\r\n", enc));
    }

    /* Verified: 186 bytes encode to 248 characters; the reply has no line breaks. */
    char enc[256];
    size_t e = meta_base64_encode(raw, 186, enc);
    assert_int_equal(e, 248);
    enc[e] = '\0';
    struct parsed p;
    expect_ok(fmt("mg !!!!!!!!!!%.48s b k v O1\r\n", enc), META_CMD_MG, &p);
    expect_line(&p.m, META_RC_EN, NULL, fmt("EN k%.48s b O1\r\n", enc));
}

/* ---- Split every request at every byte ---- */

static const char *const split_lines[] = {
    "mg foo v f t c s k O123 h l\r\n",
    "mg Zm9vYg== b k N30 v c t\r\n",
    "  mg   foo   v  \r\n",
    "mg foo v\n",
    "mg foo s v f t c h l k u q O1 T5 N5 R5 P L\r\n",
    "mg foo s v f t c h l k u q O1 T5 N5 R5 P L b C1\r\n",
    "mg foo O123456789012345678901234567890123\r\n",
    "mg foo Tx v v\r\n",
    "mg\r\n",
    "ms k1 2 c k O55 s\r\n",
    "ms YmluYXJ5 1 b k c O1 ME\r\n",
    "ms nokey abc\r\n",
    "ms nokey 2 MX\r\n",
    "ms s1 3 I C1 c T50\r\n",
    "md d1 I T30 k q\r\n",
    "md d1 Cabc\r\n",
    "ma cnt N0 J10 v\r\n",
    "ma cnt M- D100 v\r\n",
    "ma cnt MX v\r\n",
    "mn\r\n",
    "me Zm9vYg== b\r\n",
    "me\r\n",
};

static void assert_same_token(const struct text_token *a, const struct text_token *b)
{
    assert_int_equal(a->len, b->len);
    if (a->len > 0) {
        assert_memory_equal(a->p, b->p, a->len);
    }
}

static void assert_same_request(const struct meta_request *a, const struct meta_request *b)
{
    assert_int_equal(a->cmd, b->cmd);
    assert_int_equal(a->err, b->err);
    assert_int_equal(a->err_after_exec, b->err_after_exec);
    assert_int_equal(a->swallow, b->swallow);
    assert_same_token(&a->key_token, &b->key_token);
    assert_same_token(&a->key, &b->key);
    assert_int_equal(a->key_binary, b->key_binary);
    assert_int_equal(a->flags, b->flags);
    assert_int_equal(a->norder, b->norder);
    assert_memory_equal(a->order, b->order, a->norder);
    assert_same_token(&a->opaque, &b->opaque);
    assert_int_equal(a->ttl, b->ttl);
    assert_int_equal(a->vivify_ttl, b->vivify_ttl);
    assert_int_equal(a->recache_ttl, b->recache_ttl);
    assert_int_equal(a->client_flags, b->client_flags);
    assert_int_equal(a->cas, b->cas);
    assert_int_equal(a->delta, b->delta);
    assert_int_equal(a->initial, b->initial);
    assert_int_equal(a->mode, b->mode);
    assert_int_equal(a->store_op, b->store_op);
    assert_int_equal(a->invalidate, b->invalidate);
    assert_int_equal(a->incr, b->incr);
    assert_int_equal(a->data_len, b->data_len);
    assert_int_equal(a->read_len, b->read_len);
}

static void test_split_every_byte(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(split_lines) / sizeof(split_lines[0]); i++) {
        const char *line = split_lines[i];
        size_t len = strlen(line);
        struct parsed whole;
        parse_line(line, len, &whole);

        /* A heap copy so a sanitizer sees any read past the bytes handed over. */
        for (size_t cut = 0; cut < len; cut++) {
            char *buf = malloc(len);
            assert_non_null(buf);
            memcpy(buf, line, len);
            struct text_request t;
            size_t consumed = 1;
            assert_int_equal(text_parse(buf, cut, &t, &consumed), TEXT_NEED_MORE);
            assert_int_equal(consumed, 0);

            struct parsed part;
            parse_line(buf, len, &part);
            assert_same_request(&whole.m, &part.m);
            assert_int_equal(whole.rc, part.rc);
            free(buf);
        }
    }

    /* Pipelined: several meta lines in one buffer, parsed one after another. */
    const char pipe[] = "mg a v\r\nms b 1 T5\r\nx\r\nmd c q\r\nmn\r\n";
    const char *p = pipe;
    size_t left = sizeof(pipe) - 1;
    enum meta_cmd want[] = {META_CMD_MG, META_CMD_MS, META_CMD_MD, META_CMD_MN};
    for (size_t i = 0; i < 4; i++) {
        struct text_request t;
        struct meta_request m;
        char keybuf[META_KEYBUF_SIZE];
        size_t consumed;
        assert_int_equal(text_parse(p, left, &t, &consumed), TEXT_OK);
        assert_int_equal(meta_parse(&t, keybuf, &m), 0);
        assert_int_equal(m.cmd, want[i]);
        p += consumed;
        left -= consumed;
        if (m.cmd == META_CMD_MS) {
            assert_int_equal(m.read_len, 3);
            assert_true(meta_data_ok(p, m.read_len));
            p += m.read_len;
            left -= m.read_len;
        }
    }
    assert_int_equal(left, 0);
}

/* ---- Composition, byte for byte against 1.6.18's replies ---- */

static struct meta_item_facts no_facts(void)
{
    struct meta_item_facts f;
    memset(&f, 0, sizeof(f));
    f.ttl = -1;
    f.ttl_after_t = -1;
    f.ttl_after_n = -1;
    return f;
}

static void test_compose_mg(void **state)
{
    (void)state;
    struct parsed p;
    struct meta_item_facts f = no_facts();

    /* "set foo 0 0 3 / bar" then: */
    parse("mg foo v f t c s k O123 h l\r\n", &p);
    f.value_len = 3;
    f.cas = 1;
    expect_line(&p.m, META_RC_VA, &f, "VA 3 f0 t-1 c1 s3 kfoo O123 h0 l0\r\n");
    parse("mg foo h\r\n", &p);
    f.fetched = true;
    expect_line(&p.m, META_RC_HD, &f, "HD h1\r\n");
    parse("mg foo\r\n", &p);
    expect_line(&p.m, META_RC_HD, &f, "HD\r\n");
    parse("mg foo q v\r\n", &p);
    expect_line(&p.m, META_RC_VA, &f, "VA 3\r\n");
    parse("mg miss k O9 v\r\n", &p);
    expect_line(&p.m, META_RC_EN, NULL, "EN kmiss O9\r\n");
    parse("mg miss s v f t c h l k O9 u\r\n", &p);
    expect_line(&p.m, META_RC_EN, NULL, "EN kmiss O9\r\n");
    parse("mg miss\r\n", &p);
    expect_line(&p.m, META_RC_EN, NULL, "EN\r\n");
    parse("mg foo O k\r\n", &p);
    expect_line(&p.m, META_RC_HD, &f, "HD O kfoo\r\n");

    /* t before and after T in the same request (TTL 30 -> 60). */
    parse("mg foo T30 t\r\n", &p);
    f = no_facts();
    f.ttl_after_t = 30;
    expect_line(&p.m, META_RC_HD, &f, "HD t30\r\n");
    parse("mg foo t T60\r\n", &p);
    f.ttl = 30;
    f.ttl_after_t = 60;
    expect_line(&p.m, META_RC_HD, &f, "HD t30\r\n");
    assert_int_equal(meta_ttl_source(&p.m, false), 'T');

    /* b key on an item stored by a plain set: k prints the stored key raw. */
    parse("mg Zm9v b k v O1 s\r\n", &p);
    f = no_facts();
    f.value_len = 3;
    f.key = "foo";
    f.nkey = 3;
    expect_line(&p.m, META_RC_VA, &f, "VA 3 kfoo O1 s3\r\n");

    /* Vivify with b: the created item's key is not marked binary. */
    parse("mg Zm9vYg== b k N30 v c t\r\n", &p);
    f = no_facts();
    f.cas = 2;
    f.created = true;
    f.win = true;
    f.ttl_after_n = 30;
    f.key = "foob";
    f.nkey = 4;
    expect_line(&p.m, META_RC_VA, &f, "VA 0 kfoob c2 t30 W\r\n");
    assert_int_equal(meta_ttl_source(&p.m, true), 'N');
    assert_int_equal(meta_ttl_source(&p.m, false), 0);
    parse("mg Zm9vYg== b k v\r\n", &p);
    f = no_facts();
    f.token_sent = true;
    f.key = "foob";
    f.nkey = 4;
    expect_line(&p.m, META_RC_VA, &f, "VA 0 kfoob Z\r\n");

    parse("mg w1 N30 s t c v\r\n", &p);
    f = no_facts();
    f.cas = 50;
    f.created = true;
    f.win = true;
    f.ttl_after_n = 30;
    expect_line(&p.m, META_RC_VA, &f, "VA 0 s0 t30 c50 W\r\n");
    f = no_facts();
    f.cas = 50;
    f.ttl = 29;
    f.ttl_after_n = 30; /* not created: N does not apply */
    f.token_sent = true;
    expect_line(&p.m, META_RC_VA, &f, "VA 0 s0 t29 c50 Z\r\n");

    /* R recache: "mg w1 R200 t" with 98 s left wins, then Z. */
    parse("mg w1 R200 t\r\n", &p);
    f = no_facts();
    f.ttl = 98;
    f.win = true;
    expect_line(&p.m, META_RC_HD, &f, "HD t98 W\r\n");
    f.ttl = 97;
    f.win = false;
    f.token_sent = true;
    expect_line(&p.m, META_RC_HD, &f, "HD t97 Z\r\n");

    /* Stale after md I T30: X W, then Z X. */
    parse("mg d1 c t v\r\n", &p);
    f = no_facts();
    f.value_len = 1;
    f.cas = 15;
    f.ttl = 30;
    f.stale = true;
    f.win = true;
    expect_line(&p.m, META_RC_VA, &f, "VA 1 c15 t30 X W\r\n");
    f.ttl = 29;
    f.win = false;
    f.token_sent = true;
    expect_line(&p.m, META_RC_VA, &f, "VA 1 c15 t29 Z X\r\n");

    parse("mg w4 N30 h l t\r\n", &p);
    f = no_facts();
    f.created = true;
    f.win = true;
    f.ttl_after_n = 30;
    expect_line(&p.m, META_RC_HD, &f, "HD h0 l0 t30 W\r\n");
    parse("mg w4 h l\r\n", &p);
    f = no_facts();
    f.fetched = true;
    f.last_access = 1;
    f.token_sent = true;
    expect_line(&p.m, META_RC_HD, &f, "HD h1 l1 Z\r\n");

    /* An item stored by "ms YmluYXJ5 1 b": k is base64 with or without b in mg. */
    f = no_facts();
    f.value_len = 1;
    f.key = "binary";
    f.nkey = 6;
    f.key_binary = true;
    parse("mg YmluYXJ5 b k v\r\n", &p);
    expect_line(&p.m, META_RC_VA, &f, "VA 1 kYmluYXJ5 b\r\n");
    parse("mg binary k v\r\n", &p);
    expect_line(&p.m, META_RC_VA, &f, "VA 1 kYmluYXJ5 b\r\n");

    /* Miss with a b key: the decoded key is encoded again. */
    parse("mg Zg== b k s\r\n", &p);
    expect_line(&p.m, META_RC_EN, NULL, "EN kZg== b\r\n");
    parse("mg Z=g= b k s\r\n", &p);
    expect_line(&p.m, META_RC_EN, NULL, "EN kZA== b\r\n");

    /* The 17-flag line with P and L (P, L, T, N, R, u, q, v print nothing). */
    parse("mg foo s v f t c h l k u q O1 T5 N5 R5 P L\r\n", &p);
    f = no_facts();
    f.value_len = 3;
    f.ttl = 4;
    f.ttl_after_t = 5;
    f.cas = 42;
    f.fetched = true;
    f.last_access = 23;
    expect_line(&p.m, META_RC_VA, &f, "VA 3 s3 f0 t4 c42 h1 l23 kfoo O1\r\n");
}

static void test_compose_ms_md(void **state)
{
    (void)state;
    struct parsed p;
    struct meta_item_facts f = no_facts();

    parse("ms k1 2 c k O55 s\r\n", &p);
    f.cas = 4;
    expect_line(&p.m, META_RC_HD, &f, "HD c4 kk1 O55\r\n");
    parse("ms k1 2\r\n", &p);
    expect_line(&p.m, META_RC_HD, &f, "HD\r\n");
    parse("ms k1 2 c C999\r\n", &p);
    expect_line(&p.m, META_RC_EX, &f, "EX c0\r\n");
    expect_line(&p.m, META_RC_EX, NULL, "EX c0\r\n");
    parse("ms nokey 2 C5 q\r\n", &p);
    expect_line(&p.m, META_RC_NF, NULL, "NF\r\n");
    parse("ms nokey 2 ME k O1 c\r\n", &p);
    f.cas = 7;
    expect_line(&p.m, META_RC_HD, &f, "HD knokey O1 c7\r\n");
    expect_line(&p.m, META_RC_NS, &f, "NS knokey O1 c0\r\n");
    parse("ms YmluYXJ5 1 b k c O1\r\n", &p);
    f.cas = 49;
    expect_line(&p.m, META_RC_HD, &f, "HD kYmluYXJ5 b c49 O1\r\n");
    parse("ms YmluYXJ5 1 b k c O1 ME\r\n", &p);
    expect_line(&p.m, META_RC_NS, NULL, "NS kYmluYXJ5 b c0 O1\r\n");
    parse("ms s1 3 I C1 c T50\r\n", &p);
    f.cas = 55;
    expect_line(&p.m, META_RC_HD, &f, "HD c55\r\n");

    parse("md d1 k O1 q\r\n", &p);
    expect_line(&p.m, META_RC_NF, NULL, "NF kd1 O1\r\n");
    expect_line(&p.m, META_RC_HD, NULL, "HD kd1 O1\r\n");
    parse("md d1 C1 k O2\r\n", &p);
    expect_line(&p.m, META_RC_EX, NULL, "EX kd1 O2\r\n");
    parse("md d1\r\n", &p);
    expect_line(&p.m, META_RC_NF, NULL, "NF\r\n");
    parse("md ZDE= b k\r\n", &p);
    expect_line(&p.m, META_RC_HD, NULL, "HD kZDE= b\r\n");
    expect_line(&p.m, META_RC_NF, NULL, "NF kZDE= b\r\n");
}

static void test_compose_ma_mn_me(void **state)
{
    (void)state;
    struct parsed p;
    struct meta_item_facts f = no_facts();

    parse("ma cnt N0 J10 v\r\n", &p);
    f.value_len = 2;
    f.created = true;
    expect_line(&p.m, META_RC_VA, &f, "VA 2\r\n");
    parse("ma cnt\r\n", &p);
    expect_line(&p.m, META_RC_NF, NULL, "NF\r\n");
    parse("ma cnt v t c k O5\r\n", &p);
    f = no_facts();
    f.value_len = 2;
    f.cas = 20;
    expect_line(&p.m, META_RC_VA, &f, "VA 2 t-1 c20 kcnt O5\r\n");
    parse("ma cnt C1 v k O1\r\n", &p);
    expect_line(&p.m, META_RC_EX, NULL, "EX kcnt O1\r\n");
    parse("ma nocnt v k O1\r\n", &p);
    expect_line(&p.m, META_RC_NF, NULL, "NF knocnt O1\r\n");

    /* t prints the TTL as it stands at its place in the request. */
    parse("ma nocnt t N30 J5 v c\r\n", &p);
    f = no_facts();
    f.value_len = 1;
    f.cas = 25;
    f.created = true;
    f.ttl_after_n = 30;
    expect_line(&p.m, META_RC_VA, &f, "VA 1 t-1 c25\r\n");
    parse("ma nocnt2 N30 t J5 v c\r\n", &p);
    f.cas = 26;
    expect_line(&p.m, META_RC_VA, &f, "VA 1 t30 c26\r\n");
    parse("ma nocnt3 N30 J5 T60 t\r\n", &p);
    f.ttl_after_t = 60;
    expect_line(&p.m, META_RC_HD, &f, "HD t60\r\n");
    parse("ma cnt T100 t v\r\n", &p);
    f = no_facts();
    f.value_len = 1;
    f.ttl_after_t = 100;
    expect_line(&p.m, META_RC_VA, &f, "VA 1 t100\r\n");
    parse("ma cnt t T200 v\r\n", &p);
    f.ttl = 100;
    f.ttl_after_t = 200;
    expect_line(&p.m, META_RC_VA, &f, "VA 1 t100\r\n");
    /* Created with N100 then T5 in the request: t shows 100, the item keeps 5. */
    parse("ma cnt9 N100 J7 t T5\r\n", &p);
    f = no_facts();
    f.created = true;
    f.ttl_after_n = 100;
    f.ttl_after_t = 5;
    expect_line(&p.m, META_RC_HD, &f, "HD t100\r\n");
    assert_int_equal(meta_ttl_source(&p.m, true), 'T');
    parse("ma x T5 N100\r\n", &p);
    assert_int_equal(meta_ttl_source(&p.m, true), 'N');
    assert_int_equal(meta_ttl_source(&p.m, false), 'T');

    /* ma k uses the request's key and b. */
    parse("ma Y250 b v k N0\r\n", &p);
    f = no_facts();
    f.value_len = 1;
    expect_line(&p.m, META_RC_VA, &f, "VA 1 kY250 b\r\n");

    parse("mn\r\n", &p);
    expect_line(&p.m, META_RC_MN, NULL, "MN\r\n");
    parse("me foobar\r\n", &p);
    expect_line(&p.m, META_RC_EN, NULL, "EN\r\n");

    /* me lines as 1.6.18 printed them (exp has its sign inverted). */
    char buf[META_HEADER_MAX];
    struct meta_me_facts me = {"foob", 4, false, 29, 1, 2, true, 1, 63};
    size_t n = meta_compose_me(buf, sizeof(buf), &me);
    const char *want = "ME foob exp=-29 la=1 cas=2 fetch=yes cls=1 size=63\r\n";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(buf, want, n);
    struct meta_me_facts me2 = {"binary", 6, true, -1, 1, 48, true, 1, 66};
    n = meta_compose_me(buf, sizeof(buf), &me2);
    want = "ME YmluYXJ5 exp=-1 la=1 cas=48 fetch=yes cls=1 size=66\r\n";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(buf, want, n);
    struct meta_me_facts me3 = {"t1", 2, false, 99, 1, 81, false, 1, 62};
    n = meta_compose_me(buf, sizeof(buf), &me3);
    want = "ME t1 exp=-99 la=1 cas=81 fetch=no cls=1 size=62\r\n";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(buf, want, n);
    /* Too small a buffer writes nothing usable and says so. */
    assert_int_equal(meta_compose_me(buf, 10, &me3), 0);
}

static void test_compose_bounds(void **state)
{
    (void)state;
    struct parsed p;
    struct meta_item_facts f = no_facts();
    f.value_len = 4294967295u;
    f.client_flags = 4294967295u;
    f.cas = UINT64_MAX;
    f.ttl = 2147483647;
    f.last_access = 4294967295u;
    f.fetched = true;
    f.stale = true;
    f.token_sent = true;
    f.win = true;
    char *key = repeat('k', 250);
    f.key = key;
    f.nkey = 250;
    f.key_binary = true;
    parse("mg foo v f t c s k O1234567890123456789012345678901 h l\r\n", &p);
    char buf[META_HEADER_MAX];
    size_t n = meta_compose(buf, sizeof(buf), &p.m, META_RC_VA, &f);
    assert_true(n > 0 && n <= META_HEADER_MAX);
    assert_memory_equal(buf + n - 2, "\r\n", 2);
    /* Every shorter buffer is refused rather than overrun. */
    for (size_t cap = 0; cap < n; cap++) {
        char *small = malloc(cap + 1);
        assert_non_null(small);
        assert_int_equal(meta_compose(small, cap, &p.m, META_RC_VA, &f), 0);
        free(small);
    }
    free(key);
}

/* ---- The q rule, as 1.6.18 applied it ---- */

static void test_quiet(void **state)
{
    (void)state;
    struct parsed p;

    parse("mg miss q\r\n", &p);
    assert_true(meta_reply_skipped(&p.m, META_RC_EN, false));
    assert_false(meta_reply_skipped(&p.m, META_RC_HD, false));
    assert_false(meta_reply_skipped(&p.m, META_RC_VA, false));
    assert_false(meta_reply_skipped(&p.m, META_RC_HD, true)); /* "mg w3 N30 q" -> "HD W" */
    parse("mg miss\r\n", &p);
    assert_false(meta_reply_skipped(&p.m, META_RC_EN, false));

    parse("ms k1 2 q\r\n", &p);
    assert_true(meta_reply_skipped(&p.m, META_RC_HD, false));
    assert_false(meta_reply_skipped(&p.m, META_RC_NS, false));
    assert_false(meta_reply_skipped(&p.m, META_RC_EX, false));
    assert_false(meta_reply_skipped(&p.m, META_RC_NF, false));

    parse("md d1 q\r\n", &p);
    assert_true(meta_reply_skipped(&p.m, META_RC_HD, false));
    assert_false(meta_reply_skipped(&p.m, META_RC_NF, false));
    assert_false(meta_reply_skipped(&p.m, META_RC_EX, false));

    parse("ma cnt v q\r\n", &p);
    assert_true(meta_reply_skipped(&p.m, META_RC_HD, false));
    assert_true(meta_reply_skipped(&p.m, META_RC_VA, false));
    assert_false(meta_reply_skipped(&p.m, META_RC_HD, true)); /* "ma viv1 N0 q" -> "HD" */
    assert_false(meta_reply_skipped(&p.m, META_RC_VA, true));
    assert_false(meta_reply_skipped(&p.m, META_RC_NF, false));
    assert_false(meta_reply_skipped(&p.m, META_RC_NS, false));
    assert_false(meta_reply_skipped(&p.m, META_RC_EX, false));
    parse("ma cnt v\r\n", &p);
    assert_false(meta_reply_skipped(&p.m, META_RC_VA, false));

    parse("mn q\r\n", &p);
    assert_false(meta_reply_skipped(&p.m, META_RC_MN, false));
}

static void test_data_ok(void **state)
{
    (void)state;
    assert_true(meta_data_ok("hi\r\n", 4));
    assert_true(meta_data_ok("\r\n", 2));
    assert_false(meta_data_ok("hiX\r", 4)); /* verified: "bad data chunk" */
    assert_false(meta_data_ok("hi\n\n", 4));
    assert_false(meta_data_ok("\n", 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mg_flags),
        cmocka_unit_test(test_ms_parse),
        cmocka_unit_test(test_md_ma_parse),
        cmocka_unit_test(test_mn_me_parse),
        cmocka_unit_test(test_errors_mg),
        cmocka_unit_test(test_errors_ms),
        cmocka_unit_test(test_errors_md_ma_me),
        cmocka_unit_test(test_error_strings),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_base64_key_round_trip),
        cmocka_unit_test(test_split_every_byte),
        cmocka_unit_test(test_compose_mg),
        cmocka_unit_test(test_compose_ms_md),
        cmocka_unit_test(test_compose_ma_mn_me),
        cmocka_unit_test(test_compose_bounds),
        cmocka_unit_test(test_quiet),
        cmocka_unit_test(test_data_ok),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_auth.c - the text-protocol token exchange (-Y) and the authfile
 * loader of src/server/auth.c. SASL needs libsasl2's plugins and a sasldb;
 * the integration suite (test_sasl.py) covers it against memcached.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth.h"

static struct authfile *load_text(const char *text)
{
    char path[] = "/tmp/ms_test_authXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    struct authfile *af = authfile_load(path);
    unlink(path);
    return af;
}

static void test_authfile(void **state)
{
    (void)state;
    struct authfile *af = load_text("bob:pw1\ncarol:\n:anon\ndave:a:b");
    assert_non_null(af);
    assert_true(authfile_check(af, "bob", 3, "pw1", 3));
    assert_false(authfile_check(af, "bob", 3, "pw", 2));
    assert_false(authfile_check(af, "bob", 3, "pw11", 4));
    assert_false(authfile_check(af, "bo", 2, "pw1", 3));
    assert_true(authfile_check(af, "carol", 5, "", 0));
    assert_true(authfile_check(af, "", 0, "anon", 4));
    assert_true(authfile_check(af, "dave", 4, "a:b", 3)); /* the first colon splits */
    authfile_destroy(&af);
    assert_null(af);
    /* memcached refuses a line without a colon, empty lines included. */
    assert_null(load_text("bob:pw\n\ncarol:x\n"));
    assert_null(load_text("nocolon\n"));
    assert_null(authfile_load("/nonexistent/authfile"));
}

struct outcome {
    enum auth_ascii_result r;
    const char *reply;
    enum auth_ascii_outcome outcome;
};

/* Feeds buf one byte more at a time, as reads would deliver it, and
 * returns the replies in order, joined with '|'. */
static void run_split(const struct authfile *af, const char *buf, size_t step, char *out,
                      size_t cap, bool *authed, bool *closed)
{
    struct auth_ascii st = {0};
    size_t len = strlen(buf);
    size_t start = 0;
    size_t avail = 0;
    out[0] = '\0';
    *authed = false;
    *closed = false;
    while (start < len) {
        avail = avail + step > len ? len : avail + step;
        for (;;) {
            size_t used = 0;
            const char *reply = NULL;
            enum auth_ascii_outcome oc;
            enum auth_ascii_result r =
                auth_ascii_step(&st, af, buf + start, avail - start, &used, &reply, &oc);
            if (r == AUTH_ASCII_CLOSE) {
                *closed = true;
                return;
            }
            if (r == AUTH_ASCII_NEED_MORE) {
                assert_int_equal(used, 0);
                break;
            }
            assert_true(used > 0 && used <= avail - start);
            start += used;
            if (reply != NULL) {
                strncat(out, reply, cap - strlen(out) - 2);
                strcat(out, "|");
            }
            if (oc == AUTH_ASCII_PASSED) {
                *authed = true;
                return;
            }
            if (start == avail) {
                break;
            }
        }
        if (avail == len) {
            break;
        }
    }
}

static void expect(const struct authfile *af, const char *in, const char *want, bool want_auth)
{
    size_t len = strlen(in);
    for (size_t step = 1; step <= len; step++) {
        char out[512];
        bool authed, closed;
        run_split(af, in, step, out, sizeof(out), &authed, &closed);
        assert_false(closed);
        assert_string_equal(out, want);
        assert_int_equal(authed, want_auth);
    }
}

static void test_exchange(void **state)
{
    (void)state;
    struct authfile *af = load_text("bob:pw1\ncarol:pass word\n");
    assert_non_null(af);
    expect(af, "set k 0 0 7\r\nbob pw1\r\n", "STORED|", true);
    expect(af, "set k 0 0 7 noreply\r\nbob pw1\r\n", "STORED|", true);
    expect(af, "set k 0 0 15\r\ncarol pass word\r\n", "STORED|", true);
    expect(af, "get foo\r\nset k 0 0 7\r\nbob pw1\r\n", "CLIENT_ERROR unauthenticated|STORED|",
           true);
    expect(af, "set k 0 0 7\r\nbob pwX\r\n", "CLIENT_ERROR authentication failure|", false);
    expect(af, "set k 0 0 6\r\nbobpw1\r\n", "CLIENT_ERROR bad authentication token format|", false);
    expect(af, "set k 0 0 7\r\nbob pw1XX\r\n",
           "CLIENT_ERROR bad command line termination|CLIENT_ERROR unauthenticated|", false);
    expect(af, "set x 0\r\nadd k 0 0 1\r\n",
           "CLIENT_ERROR unauthenticated|CLIENT_ERROR unauthenticated|", false);
    expect(af, "set k 0 0 abc\r\n", "CLIENT_ERROR unauthenticated|", false);
    expect(af, "\n", "CLIENT_ERROR unauthenticated|", false);
    authfile_destroy(&af);
}

static void test_close_rules(void **state)
{
    (void)state;
    struct authfile *af = load_text("bob:pw1\n");
    char junk[3000];
    memset(junk, 'x', sizeof(junk) - 1);
    junk[sizeof(junk) - 1] = '\0';
    char out[64];
    bool authed, closed;
    run_split(af, junk, sizeof(junk) - 1, out, sizeof(out), &authed, &closed);
    assert_true(closed); /* more than 2048 bytes without a newline */
    run_split(af, "set k 0 0 99999\r\n", 17, out, sizeof(out), &authed, &closed);
    assert_true(closed); /* a token longer than memstash reads */
    authfile_destroy(&af);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_authfile),
        cmocka_unit_test(test_exchange),
        cmocka_unit_test(test_close_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

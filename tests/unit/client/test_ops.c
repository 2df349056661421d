/*
 * test_ops.c - the operations' exact bytes on the wire and their reading of
 * replies, against a scripted fake server: a child process (fork, no
 * threads) that accepts one connection on a unix socket, checks that each
 * request is byte for byte what the script expects, and answers with the
 * script's reply. Covers the meta probe and the fallback to text, the meta
 * and binary forms of each call, the skipping of replies to quiet requests
 * (even when they arrive late), and how lease replies map to lease states.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "binary.h"
#include "memstash/memstash.h"

/* One exchange: the request bytes expected, then the reply sent. */
struct step {
    const char *expect;
    size_t nexpect; /* 0: strlen(expect) */
    const char *reply;
    size_t nreply; /* 0: strlen(reply) */
};

struct fake {
    pid_t pid;
    char path[108];
};

static int read_exact(int fd, char *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, 5000) <= 0) {
            return -1;
        }
        ssize_t r = read(fd, p + got, n - got);
        if (r <= 0) {
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

/* delays: NULL, or per step how long the reply is held back after its first
 * byte is sent. */
static void serve(int lfd, const struct step *steps, const unsigned *delays, size_t nsteps)
{
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0) {
        _exit(10);
    }
    for (size_t i = 0; i < nsteps; i++) {
        size_t n = steps[i].nexpect ? steps[i].nexpect : strlen(steps[i].expect);
        char *got = malloc(n + 1);
        if (n && read_exact(fd, got, n) != 0) {
            fprintf(stderr, "fake: step %zu: wanted %zu bytes: \"%s\"\n", i, n, steps[i].expect);
            _exit(11);
        }
        if (memcmp(got, steps[i].expect, n) != 0) {
            got[n] = '\0';
            fprintf(stderr, "fake: step %zu: expected \"%s\"\n             got \"%s\"\n", i,
                    steps[i].expect, got);
            _exit(12);
        }
        free(got);
        size_t nr = steps[i].nreply ? steps[i].nreply : strlen(steps[i].reply);
        size_t first = 0;
        if (delays && delays[i] && nr > 1) {
            first = 1;
            if (write(fd, steps[i].reply, 1) != 1) {
                _exit(13);
            }
            usleep(delays[i]);
        }
        if (nr > first && write(fd, steps[i].reply + first, nr - first) != (ssize_t)(nr - first)) {
            _exit(13);
        }
    }
    /* Nothing more may arrive before the client closes. */
    char extra;
    struct pollfd pfd = {fd, POLLIN, 0};
    if (poll(&pfd, 1, 5000) > 0 && read(fd, &extra, 1) > 0) {
        fprintf(stderr, "fake: unexpected bytes after the script\n");
        _exit(14);
    }
    _exit(0);
}

static void fake_start_delayed(struct fake *f, const struct step *steps, const unsigned *delays,
                               size_t nsteps)
{
    snprintf(f->path, sizeof(f->path), "/tmp/mst-fake-%d-%p.sock", (int)getpid(), (void *)f);
    unlink(f->path);
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, f->path, strlen(f->path));
    assert_int_equal(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    assert_int_equal(listen(lfd, 4), 0);
    f->pid = fork();
    assert_true(f->pid >= 0);
    if (f->pid == 0) {
        serve(lfd, steps, delays, nsteps);
    }
    close(lfd);
}

static void fake_start(struct fake *f, const struct step *steps, size_t nsteps)
{
    fake_start_delayed(f, steps, NULL, nsteps);
}

/* Waits for the fake server (after the handle closed its connection). */
static void fake_finish(struct fake *f)
{
    int status = 0;
    assert_int_equal(waitpid(f->pid, &status, 0), f->pid);
    unlink(f->path);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static struct mst *handle_for(const struct fake *f, enum mst_protocol p)
{
    struct mst *m;
    assert_int_equal(mst_create(&m), MST_OK);
    assert_int_equal(mst_server_add(m, f->path), MST_OK);
    assert_int_equal(mst_set_protocol(m, p), MST_OK);
    assert_int_equal(mst_set_io_timeout(m, 3000), MST_OK);
    return m;
}

#define S(x) x, strlen(x)

static int count_item(void *arg, const char *key, size_t nkey, const char *data, size_t len,
                      uint32_t flags, uint64_t cas)
{
    (void)cas;
    int *n = arg;
    if (nkey == 1 && key[0] == 'a' && len == 1 && data[0] == 'x' && flags == 3) {
        *n += 1;
    }
    return 0;
}

struct hits {
    int n;
    char keys[4][8];
};

static int record_item(void *arg, const char *key, size_t nkey, const char *data, size_t len,
                       uint32_t flags, uint64_t cas)
{
    (void)data;
    (void)cas;
    struct hits *h = arg;
    if (h->n < 4 && nkey < 8 && len == 1 && flags == 3) {
        memcpy(h->keys[h->n], key, nkey);
        h->keys[h->n][nkey] = '\0';
    }
    h->n++;
    return 0;
}

static void test_meta_probe_then_meta(void **state)
{
    (void)state;
    static const struct step steps[] = {
        /* The first call goes out in text, with the probe ahead of it. */
        {"mn\r\nget k\r\n", 0, "MN\r\nEND\r\n", 0},
        {"ms k 1 T10 F5\r\nv\r\n", 0, "HD\r\n", 0},
        {"mg k v f c\r\n", 0, "VA 1 f5 c77\r\nv\r\n", 0},
        {"ms k 1 F5 C77\r\nw\r\n", 0, "EX\r\n", 0},
        {"ms k 1 MR\r\nw\r\n", 0, "NS\r\n", 0},
        /* Multi-get: text get lines even on meta, cheaper than an mg per key. */
        {"get a b\r\n", 0, "VALUE a 3 1\r\nx\r\nEND\r\n", 0},
        {"ma n D3 N0 J10 v\r\n", 0, "VA 2\r\n10\r\n", 0},
        {"ma n MD v\r\n", 0, "NF\r\n", 0},
        {"mg k T5\r\n", 0, "EN\r\n", 0},
        {"md k\r\n", 0, "HD\r\n", 0},
        {"flush_all\r\n", 0, "OK\r\n", 0},
    };
    struct fake f;
    fake_start(&f, steps, sizeof(steps) / sizeof(steps[0]));
    struct mst *m = handle_for(&f, MST_PROTO_META);
    assert_int_equal(mst_server_protocol(m, 0), MST_PROTO_TEXT);
    struct mst_value v;
    enum mst_outcome out;
    assert_int_equal(mst_get(m, S("k"), &v, &out), MST_OK);
    assert_int_equal(out, MST_MISS);
    assert_int_equal(mst_server_protocol(m, 0), MST_PROTO_META);
    assert_int_equal(mst_set(m, S("k"), "v", 1, 5, 10, &out), MST_OK);
    assert_int_equal(out, MST_STORED);
    assert_int_equal(mst_gets(m, S("k"), &v, &out), MST_OK);
    assert_int_equal(out, MST_HIT);
    assert_true(v.cas == 77 && v.flags == 5 && v.len == 1);
    mst_value_clear(&v);
    assert_int_equal(mst_cas(m, S("k"), "w", 1, 5, 0, 77, &out), MST_OK);
    assert_int_equal(out, MST_EXISTS);
    assert_int_equal(mst_replace(m, S("k"), "w", 1, 0, 0, &out), MST_OK);
    assert_int_equal(out, MST_NOT_STORED);
    const char *keys[] = {"a", "b"};
    size_t nkeys[] = {1, 1};
    int hits = 0;
    assert_int_equal(mst_get_multi(m, keys, nkeys, 2, false, count_item, &hits), MST_OK);
    assert_int_equal(hits, 1);
    uint64_t initial = 10, value = 0;
    assert_int_equal(mst_incr(m, S("n"), 3, &initial, 0, &value, &out), MST_OK);
    assert_true(out == MST_STORED && value == 10);
    assert_int_equal(mst_decr(m, S("n"), 1, NULL, 0, &value, &out), MST_OK);
    assert_int_equal(out, MST_NOT_FOUND);
    assert_int_equal(mst_touch(m, S("k"), 5, &out), MST_OK);
    assert_int_equal(out, MST_NOT_FOUND);
    assert_int_equal(mst_delete(m, S("k"), &out), MST_OK);
    assert_int_equal(out, MST_DELETED);
    assert_int_equal(mst_flush_all(m, 0), MST_OK);
    mst_destroy(&m);
    fake_finish(&f);
}

/*
 * The adaptive wait (mst_set_spin): whether a reply comes at once, after a
 * pause longer than the spin, or in two parts around such a pause, the call
 * reads it whole, in both ways of waiting and with spinning off.
 */
static void test_spin_then_block(void **state)
{
    (void)state;
    enum { FAST = 40, SLOW = 6 };
    struct step steps[2 * (FAST + SLOW)];
    unsigned delays[2 * (FAST + SLOW)];
    size_t n = 0;
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < FAST + SLOW; i++) {
            delays[n] = i >= FAST ? 20000u : 0u;
            steps[n++] = (struct step){"get k\r\n", 0, "VALUE k 7 5\r\nhello\r\nEND\r\n", 0};
        }
    }
    struct fake f;
    fake_start_delayed(&f, steps, delays, n);
    struct mst *m = handle_for(&f, MST_PROTO_TEXT);
    assert_int_equal(mst_set_spin(m, 10001), MST_EINVAL);
    assert_int_equal(mst_set_spin(m, 50), MST_OK);
    for (size_t i = 0; i < n; i++) {
        if (i == FAST + SLOW) {
            assert_int_equal(mst_set_spin(m, 0), MST_OK);
        }
        struct mst_value v;
        enum mst_outcome out;
        assert_int_equal(mst_get(m, S("k"), &v, &out), MST_OK);
        assert_int_equal(out, MST_HIT);
        assert_int_equal(v.len, 5);
        assert_memory_equal(v.data, "hello", 5);
        assert_int_equal(v.flags, 7);
        mst_value_clear(&v);
    }
    mst_destroy(&m);
    fake_finish(&f);
}

static void test_fallback_to_text(void **state)
{
    (void)state;
    static const struct step steps[] = {
        {"mn\r\nset k 0 0 1\r\nv\r\n", 0, "ERROR\r\nSTORED\r\n", 0},
        {"get a b\r\n", 0, "VALUE a 3 1\r\nx\r\nEND\r\n", 0},
        /* Text needs an add to create a counter. */
        {"incr n 1\r\n", 0, "NOT_FOUND\r\n", 0},
        {"add n 0 0 1\r\n4\r\n", 0, "STORED\r\n", 0},
        {"delete k\r\n", 0, "DELETED\r\n", 0},
    };
    struct fake f;
    fake_start(&f, steps, sizeof(steps) / sizeof(steps[0]));
    struct mst *m = handle_for(&f, MST_PROTO_META);
    enum mst_outcome out;
    assert_int_equal(mst_set(m, S("k"), "v", 1, 0, 0, &out), MST_OK);
    assert_int_equal(out, MST_STORED);
    assert_int_equal(mst_server_protocol(m, 0), MST_PROTO_TEXT);
    const char *keys[] = {"a", "b"};
    size_t nkeys[] = {1, 1};
    int hits = 0;
    assert_int_equal(mst_get_multi(m, keys, nkeys, 2, false, count_item, &hits), MST_OK);
    assert_int_equal(hits, 1);
    uint64_t initial = 4, value = 0;
    assert_int_equal(mst_incr(m, S("n"), 1, &initial, 0, &value, &out), MST_OK);
    assert_true(out == MST_STORED && value == 4);
    /* Leases need meta: refused without a byte sent. */
    struct mst_value v;
    enum mst_lease ls;
    assert_int_equal(mst_lease_get(m, S("k"), 30, 0, &v, &ls), MST_ENOTSUP);
    assert_int_equal(mst_delete(m, S("k"), &out), MST_OK);
    assert_int_equal(out, MST_DELETED);
    mst_destroy(&m);
    fake_finish(&f);
}

static void test_quiet_replies_are_skipped(void **state)
{
    (void)state;
    static const struct step steps[] = {
        {"mn\r\nget warm\r\n", 0, "MN\r\nEND\r\n", 0},
        /* noreply add: not waited for; its NS arrives only later. */
        {"ms k 1 ME q\r\nv\r\nmn\r\n", 0, "", 0},
        {"md k q\r\nmn\r\n", 0, "", 0},
        /* The next call reads NS, MN, NF, MN first and skips them. */
        {"mg k v f\r\n", 0, "NS\r\nMN\r\nNF\r\nMN\r\nVA 1 f0\r\nz\r\n", 0},
        /* Late replies split across reads. */
        {"ma c q\r\nmn\r\n", 0, "CLIENT_ERROR cannot increment or decrement non-numeric value\r\nM",
         0},
        {"mg k v f\r\n", 0, "N\r\nEN\r\n", 0},
    };
    struct fake f;
    fake_start(&f, steps, sizeof(steps) / sizeof(steps[0]));
    struct mst *m = handle_for(&f, MST_PROTO_META);
    struct mst_value v;
    enum mst_outcome out;
    assert_int_equal(mst_get(m, S("warm"), &v, &out), MST_OK);
    assert_int_equal(mst_set_noreply(m, true), MST_OK);
    assert_int_equal(mst_add(m, S("k"), "v", 1, 0, 0, &out), MST_OK);
    assert_int_equal(out, MST_NONE);
    assert_int_equal(mst_delete(m, S("k"), &out), MST_OK);
    assert_int_equal(out, MST_NONE);
    assert_int_equal(mst_get(m, S("k"), &v, &out), MST_OK);
    assert_int_equal(out, MST_HIT);
    assert_memory_equal(v.data, "z", 1);
    mst_value_clear(&v);
    assert_int_equal(mst_incr(m, S("c"), 1, NULL, 0, NULL, &out), MST_OK);
    assert_int_equal(mst_get(m, S("k"), &v, &out), MST_OK);
    assert_int_equal(out, MST_MISS);
    mst_destroy(&m);
    fake_finish(&f);
}

static void lease(struct mst *m, enum mst_lease want, const char *data, uint64_t cas)
{
    struct mst_value v;
    enum mst_lease got;
    assert_int_equal(mst_lease_get(m, S("k"), 30, 0, &v, &got), MST_OK);
    assert_int_equal(got, want);
    if (data) {
        assert_non_null(v.data);
        assert_int_equal(v.len, strlen(data));
        assert_memory_equal(v.data, data, v.len);
    } else {
        assert_null(v.data);
    }
    assert_true(v.cas == cas);
    mst_value_clear(&v);
}

static void test_lease_states(void **state)
{
    (void)state;
    static const struct step steps[] = {
        /* The lease needs meta: a probe round trip first. */
        {"mn\r\n", 0, "MN\r\n", 0},
        {"mg k v f c N30\r\n", 0, "VA 0 c7 W\r\n\r\n", 0},
        {"mg k v f c N30\r\n", 0, "VA 0 c7 Z\r\n\r\n", 0},
        {"mg k v f c N30\r\n", 0, "VA 3 f1 c8 X Z\r\nold\r\n", 0},
        {"mg k v f c N30\r\n", 0, "VA 3 f1 c8 X W\r\nold\r\n", 0},
        {"mg k v f c N30\r\n", 0, "VA 3 f1 c9 Z\r\nnew\r\n", 0},
        {"mg k v f c N30\r\n", 0, "VA 3 f1 c9\r\nnew\r\n", 0},
        {"ms k 3 T60 F1 C8 I\r\nnew\r\n", 0, "NF\r\n", 0},
        {"ms k 3 T60 F1 ME\r\nnew\r\n", 0, "HD\r\n", 0},
        {"md k I T10\r\n", 0, "HD\r\n", 0},
    };
    struct fake f;
    fake_start(&f, steps, sizeof(steps) / sizeof(steps[0]));
    struct mst *m = handle_for(&f, MST_PROTO_META);
    lease(m, MST_LEASE_WON, NULL, 7);
    lease(m, MST_LEASE_WAIT, NULL, 7);
    lease(m, MST_LEASE_STALE, "old", 8);
    lease(m, MST_LEASE_WON, "old", 8);
    lease(m, MST_LEASE_HIT, "new", 9); /* someone recaches ahead of expiry */
    lease(m, MST_LEASE_HIT, "new", 9);
    enum mst_outcome out;
    /* The placeholder expired: the value is added instead. */
    assert_int_equal(mst_lease_set(m, S("k"), "new", 3, 1, 60, 8, &out), MST_OK);
    assert_int_equal(out, MST_STORED);
    assert_int_equal(mst_lease_invalidate(m, S("k"), 10, &out), MST_OK);
    assert_int_equal(out, MST_DELETED);
    struct mst_value v;
    enum mst_lease ls;
    assert_int_equal(mst_lease_get(m, S("k"), 0, 0, &v, &ls), MST_EINVAL);
    assert_string_equal(mst_lease_name(MST_LEASE_STALE), "stale");
    mst_destroy(&m);
    fake_finish(&f);
}

/* A binary request header and key, as the client must send it. */
static size_t bin_req(char *out, uint8_t op, const char *extras, uint8_t extlen, const char *key,
                      uint64_t cas, const char *value)
{
    struct bin_packet pk = {.opcode = op,
                            .cas = cas,
                            .extras = extras,
                            .extlen = extlen,
                            .key = key,
                            .keylen = (uint16_t)(key ? strlen(key) : 0),
                            .value_len = (uint32_t)(value ? strlen(value) : 0)};
    size_t n = bin_compose_request(out, 512, &pk);
    if (value) {
        memcpy(out + n, value, strlen(value));
        n += strlen(value);
    }
    return n;
}

static void test_binary_wire(void **state)
{
    (void)state;
    char set_req[512], set_ok[64], get_req[512], get_hit[512], kq_req[1024], kq_rep[512];
    char ext[BIN_EXTLEN_ARITH];
    bin_encode_store_extras(ext, 5, 10);
    size_t nset = bin_req(set_req, BIN_OP_SET, ext, BIN_EXTLEN_STORE, "k", 0, "v");
    size_t nset_ok = bin_compose_ok(set_ok, BIN_OP_SET, 0, 42);
    size_t nget = bin_req(get_req, BIN_OP_GET, NULL, 0, "k", 0, NULL);
    size_t nhit = bin_compose_item(get_hit, BIN_OP_GET, 0, 42, 5, NULL, 0, 1);
    get_hit[nhit++] = 'v';
    size_t nkq = bin_req(kq_req, BIN_OP_GETKQ, NULL, 0, "a", 0, NULL);
    nkq += bin_req(kq_req + nkq, BIN_OP_GETKQ, NULL, 0, "b", 0, NULL);
    nkq += bin_req(kq_req + nkq, BIN_OP_NOOP, NULL, 0, NULL, 0, NULL);
    size_t nkr = bin_compose_item(kq_rep, BIN_OP_GETKQ, 0, 1, 3, "a", 1, 1);
    kq_rep[nkr++] = 'x';
    nkr += bin_compose_ok(kq_rep + nkr, BIN_OP_NOOP, 0, 0);
    const struct step steps[] = {
        {set_req, nset, set_ok, nset_ok},
        {get_req, nget, get_hit, nhit},
        {kq_req, nkq, kq_rep, nkr},
    };
    struct fake f;
    fake_start(&f, steps, sizeof(steps) / sizeof(steps[0]));
    struct mst *m = handle_for(&f, MST_PROTO_BINARY);
    enum mst_outcome out;
    assert_int_equal(mst_set(m, S("k"), "v", 1, 5, 10, &out), MST_OK);
    assert_int_equal(out, MST_STORED);
    struct mst_value v;
    assert_int_equal(mst_get(m, S("k"), &v, &out), MST_OK);
    assert_int_equal(out, MST_HIT);
    assert_true(v.flags == 5 && v.cas == 0 && v.len == 1); /* no CAS without gets */
    mst_value_clear(&v);
    const char *keys[] = {"a", "b"};
    size_t nkeys[] = {1, 1};
    int hits = 0;
    assert_int_equal(mst_get_multi(m, keys, nkeys, 2, false, count_item, &hits), MST_OK);
    assert_int_equal(hits, 1);
    mst_destroy(&m);
    fake_finish(&f);
}

/* A multi-get of 150 keys on a meta connection: text lines of 100 keys at
 * most, each answered by its own END, every hit delivered once. */
static void test_multi_get_text_lines(void **state)
{
    (void)state;
    enum { NK = 150 };
    static char names[NK][8];
    const char *keys[NK];
    size_t nkeys[NK];
    static char req[NK * 8 + 64], rep[256];
    size_t nreq = 0;
    for (int i = 0; i < NK; i++) {
        snprintf(names[i], sizeof(names[i]), "k%d", i);
        keys[i] = names[i];
        nkeys[i] = strlen(names[i]);
        if (i % 100 == 0) {
            nreq += (size_t)snprintf(req + nreq, sizeof(req) - nreq, "%sget", i ? "\r\n" : "");
        }
        nreq += (size_t)snprintf(req + nreq, sizeof(req) - nreq, " %s", names[i]);
    }
    nreq += (size_t)snprintf(req + nreq, sizeof(req) - nreq, "\r\n");
    /* k5 hits in the first line's reply, k120 in the second's. */
    snprintf(rep, sizeof(rep), "VALUE k5 3 1\r\nx\r\nEND\r\nVALUE k120 3 1\r\ny\r\nEND\r\n");
    const struct step steps[] = {
        {"mn\r\nget k\r\n", 0, "MN\r\nEND\r\n", 0},
        {req, nreq, rep, 0},
        {"mg k v f\r\n", 0, "EN\r\n", 0},
    };
    struct fake f;
    fake_start(&f, steps, sizeof(steps) / sizeof(steps[0]));
    struct mst *m = handle_for(&f, MST_PROTO_META);
    struct mst_value v;
    enum mst_outcome out;
    assert_int_equal(mst_get(m, S("k"), &v, &out), MST_OK);
    assert_int_equal(mst_server_protocol(m, 0), MST_PROTO_META);
    struct hits h = {0};
    assert_int_equal(mst_get_multi(m, keys, nkeys, NK, false, record_item, &h), MST_OK);
    assert_int_equal(h.n, 2);
    assert_string_equal(h.keys[0], "k5");
    assert_string_equal(h.keys[1], "k120");
    /* The connection is in sync afterwards, and still speaks meta. */
    assert_int_equal(mst_get(m, S("k"), &v, &out), MST_OK);
    assert_int_equal(out, MST_MISS);
    mst_destroy(&m);
    fake_finish(&f);
}

/* mst_set_multi: one write per server, replies read in order, one outcome per item. */
static void test_set_multi(void **state)
{
    (void)state;
    static const struct step steps[] = {
        /* Text: plain sets, answered in order; an error line fails only its item. */
        {"set a 1 0 1\r\nx\r\nset b 2 5 2\r\nyy\r\nset c 0 0 1\r\nz\r\n", 0,
         "STORED\r\nNOT_STORED\r\nSERVER_ERROR object too large for cache\r\n", 0},
        {"get a\r\n", 0, "END\r\n", 0},
    };
    struct fake f;
    fake_start(&f, steps, sizeof(steps) / sizeof(steps[0]));
    struct mst *m = handle_for(&f, MST_PROTO_TEXT);
    const struct mst_item items[] = {
        {"a", 1, "x", 1, 1, 0},
        {"b", 1, "yy", 2, 2, 5},
        {"c", 1, "z", 1, 0, 0},
    };
    enum mst_outcome outs[3];
    size_t stored = 99;
    assert_int_equal(mst_set_multi(m, items, 3, outs, &stored), MST_OK);
    assert_int_equal(outs[0], MST_STORED);
    assert_int_equal(outs[1], MST_NOT_STORED);
    assert_int_equal(outs[2], MST_NONE);
    assert_int_equal(stored, 1);
    /* The stream is still in step. */
    struct mst_value v;
    enum mst_outcome out;
    assert_int_equal(mst_get(m, S("a"), &v, &out), MST_OK);
    assert_int_equal(out, MST_MISS);
    /* A bad key fails the call before anything is sent; n == 0 sends nothing. */
    const struct mst_item bad[] = {{"a", 1, "x", 1, 0, 0}, {"b c", 3, "x", 1, 0, 0}};
    assert_int_equal(mst_set_multi(m, bad, 2, outs, &stored), MST_EBADKEY);
    assert_int_equal(stored, 0);
    assert_int_equal(mst_set_multi(m, NULL, 0, NULL, NULL), MST_OK);
    mst_destroy(&m);
    fake_finish(&f);

    static const struct step msteps[] = {
        {"mn\r\nget warm\r\n", 0, "MN\r\nEND\r\n", 0},
        {"ms a 1 T10 F5\r\nx\r\nms b 1 T10 F5\r\ny\r\n", 0, "HD\r\nNS\r\n", 0},
        /* noreply: the quiet forms and one end marker, skipped by the next call. */
        {"ms a 1 T10 F5 q\r\nx\r\nms b 1 T10 F5 q\r\ny\r\nmn\r\n", 0, "", 0},
        {"mg k v f\r\n", 0, "NS\r\nMN\r\nEN\r\n", 0},
    };
    fake_start(&f, msteps, sizeof(msteps) / sizeof(msteps[0]));
    m = handle_for(&f, MST_PROTO_META);
    assert_int_equal(mst_get(m, S("warm"), &v, &out), MST_OK);
    const struct mst_item mitems[] = {{"a", 1, "x", 1, 5, 10}, {"b", 1, "y", 1, 5, 10}};
    assert_int_equal(mst_set_multi(m, mitems, 2, outs, &stored), MST_OK);
    assert_true(outs[0] == MST_STORED && outs[1] == MST_NOT_STORED && stored == 1);
    assert_int_equal(mst_set_noreply(m, true), MST_OK);
    assert_int_equal(mst_set_multi(m, mitems, 2, outs, &stored), MST_OK);
    assert_true(outs[0] == MST_NONE && outs[1] == MST_NONE && stored == 0);
    assert_int_equal(mst_set_noreply(m, false), MST_OK);
    assert_int_equal(mst_get(m, S("k"), &v, &out), MST_OK);
    assert_int_equal(out, MST_MISS);
    mst_destroy(&m);
    fake_finish(&f);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_meta_probe_then_meta),
        cmocka_unit_test(test_fallback_to_text),
        cmocka_unit_test(test_spin_then_block),
        cmocka_unit_test(test_quiet_replies_are_skipped),
        cmocka_unit_test(test_lease_states),
        cmocka_unit_test(test_binary_wire),
        cmocka_unit_test(test_multi_get_text_lines),
        cmocka_unit_test(test_set_multi),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

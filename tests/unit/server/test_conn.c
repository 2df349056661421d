/*
 * test_conn.c - the parts of src/server/conn.c that need no event loop:
 * how a connection names its peer from the few bytes it keeps of the
 * address (stats conns, watch connevents), and its rarely used state
 * (struct conn_ext), made on first use from the worker's spare.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "conn.h"
#include "server.h"

/* main.c's, which conn.c's callers reach; never called here. */
void server_request_shutdown(struct server *srv, int mode)
{
    (void)srv;
    (void)mode;
    abort();
}

static void name_of(const struct conn *c, char *out)
{
    conn_peer_name(c, out, CONN_PEER_NAME_MAX);
}

static void test_peer_name(void **state)
{
    (void)state;
    struct conn c;
    char name[CONN_PEER_NAME_MAX];

    memset(&c, 0, sizeof(c));
    c.peer_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, "10.1.2.3", c.peer_addr), 1);
    c.peer_port = 65535;
    name_of(&c, name);
    assert_string_equal(name, "tcp:10.1.2.3:65535");

    memset(&c, 0, sizeof(c));
    c.peer_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::1", c.peer_addr), 1);
    c.peer_port = 11211;
    name_of(&c, name);
    assert_string_equal(name, "tcp6:[2001:db8::1]:11211");

    c.peer_family = AF_UNIX;
    name_of(&c, name);
    assert_string_equal(name, "?:<AF 0>");

    c.peer_family = CONN_PEER_UNKNOWN;
    name_of(&c, name);
    assert_string_equal(name, "?");

    c.peer_family = AF_NETLINK;
    name_of(&c, name);
    char want[32];
    snprintf(want, sizeof(want), "?:<AF %d>", AF_NETLINK);
    assert_string_equal(name, want);
}

/* A UDP socket is named by its own (bound) address. */
static void test_peer_name_udp(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    socklen_t len = sizeof(sin);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);

    struct conn c;
    memset(&c, 0, sizeof(c));
    c.fd = fd;
    c.is_udp = true;
    char name[CONN_PEER_NAME_MAX], want[CONN_PEER_NAME_MAX];
    name_of(&c, name);
    snprintf(want, sizeof(want), "udp:127.0.0.1:%u", ntohs(sin.sin_port));
    assert_string_equal(name, want);
    close(fd);
}

static void test_ext_from_spare(void **state)
{
    (void)state;
    struct worker w;
    memset(&w, 0, sizeof(w));
    struct conn c;
    memset(&c, 0, sizeof(c));
    c.w = &w;

    /* No spare: a zeroed block, kept until given back. */
    struct conn_ext *x = conn_ext(&c);
    assert_non_null(x);
    assert_ptr_equal(c.ext, x);
    assert_null(x->item);
    assert_int_equal(x->swallow, 0);
    x->swallow = 7;
    assert_ptr_equal(conn_ext(&c), x);
    assert_int_equal(x->swallow, 7);
    free(x);

    /* The worker's spare is taken, and comes zeroed. */
    struct conn_ext *spare = malloc(sizeof(*spare));
    assert_non_null(spare);
    memset(spare, 0xa5, sizeof(*spare));
    w.spare_ext = spare;
    c.ext = NULL;
    x = conn_ext(&c);
    assert_ptr_equal(x, spare);
    assert_null(w.spare_ext);
    assert_null(x->item);
    assert_null(x->dump);
    assert_null(x->sasl);
    assert_false(x->auth_ascii.started);
    assert_int_equal(x->nmarks, 0);
    free(x);
}

/* The idle footprint the _Static_assert in conn.h guards, stated as malloc
 * sees it: the struct plus glibc's 8-byte header within one 320-byte chunk. */
static void test_size(void **state)
{
    (void)state;
    assert_true(sizeof(struct conn) <= CONN_SIZE_MAX);
    assert_true((sizeof(struct conn) + 8 + 15) / 16 * 16 <= 320);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_peer_name),
        cmocka_unit_test(test_peer_name_udp),
        cmocka_unit_test(test_ext_from_spare),
        cmocka_unit_test(test_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

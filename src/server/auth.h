/*
 * auth.h - client authentication, as memcached 1.6 does it.
 *
 * Two independent schemes:
 *   - SASL (-S) for the binary protocol, through Cyrus libsasl2 with
 *     memcached's service name and configuration: sasl_server_init(...,
 *     "memcached"), SASL_CONF_PATH names the directory holding memcached.conf
 *     (else /etc/sasl2 or /etc/sasl), and MEMCACHED_SASL_PWDB names a
 *     "user:password" file that PLAIN checks passwords against.
 *   - text-protocol tokens (-Y file of "user:password" lines): the first
 *     command must be "set <any> <any> <any> <n>\r\n<user> <pass>\r\n".
 *
 * What this module is not: it never touches a socket or a connection. The
 * SASL functions return the bytes to answer with; the text-token step parses
 * a buffer and says what to reply, and conn.c does the I/O.
 */
#ifndef MEMSTASH_AUTH_H
#define MEMSTASH_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- SASL --------------------------------------------------------------- */

/* Initialises libsasl2 for the process (once, before workers start). Returns
 * 0, or -1 after printing memcached's "Error initializing sasl." */
int auth_sasl_setup(int verbose);
void auth_sasl_teardown(void);

enum auth_sasl_result {
    AUTH_SASL_OK,       /* authenticated; answer "Authenticated" */
    AUTH_SASL_CONTINUE, /* answer status 0x21 with the out bytes */
    AUTH_SASL_FAIL,     /* answer 0x20 "Auth failure." */
};

/*
 * Per-connection state is an opaque pointer the connection keeps (NULL until
 * the first SASL request) and releases with auth_sasl_conn_free(), which sets
 * it to NULL. The out bytes belong to libsasl2 and stay valid until the next
 * call on the same state.
 */
/* The mechanisms, space separated ("PLAIN CRAM-MD5"). Returns false on failure. */
bool auth_sasl_list_mechs(void **state, const char **out, size_t *outlen);
/* SASL_AUTH: mech is the request's key, data its value. */
enum auth_sasl_result auth_sasl_start(void **state, const char *mech, size_t nmech,
                                      const char *data, size_t ndata, const char **out,
                                      size_t *outlen);
/* SASL_STEP. */
enum auth_sasl_result auth_sasl_step(void **state, const char *data, size_t ndata, const char **out,
                                     size_t *outlen);
void auth_sasl_conn_free(void **state);

/* Longest SASL_AUTH/SASL_STEP body memstashd reads (memcached's items cap it
 * too); longer ones are answered 0x20 and swallowed. */
#define AUTH_SASL_DATA_MAX 8192

/* ---- text-protocol tokens (-Y) ------------------------------------------ */

/* The loaded "user:password" file. */
struct authfile;

/* Loads path. On failure returns NULL after printing memcached's message. */
struct authfile *authfile_load(const char *path);
void authfile_destroy(struct authfile **af);
/* True if user/pass match one line exactly. */
bool authfile_check(const struct authfile *af, const char *user, size_t nuser, const char *pass,
                    size_t npass);

/* Where a connection is in the token exchange. Zeroed = waiting for "set". */
struct auth_ascii {
    bool started;  /* the set line was read; `need` data bytes follow */
    uint32_t need; /* value length + 2 */
};

/* What a reply means, for the auth_cmds / auth_errors counters. */
enum auth_ascii_outcome {
    AUTH_ASCII_NO_CHECK, /* no credentials were checked */
    AUTH_ASCII_PASSED,   /* authenticated */
    AUTH_ASCII_FAILED,   /* credentials checked and refused */
};

enum auth_ascii_result {
    AUTH_ASCII_NEED_MORE, /* nothing consumed */
    AUTH_ASCII_REPLY,     /* *used bytes consumed; answer *reply (NULL: nothing yet) */
    AUTH_ASCII_CLOSE,     /* junk: close the connection */
};

/*
 * One step of the exchange on buf[0..len). On AUTH_ASCII_REPLY, *reply is the
 * line to send (without "\r\n") or NULL when only the set line was consumed,
 * and *outcome says whether credentials were checked and passed. memcached's rules:
 * anything but a 6-token "set" line is "CLIENT_ERROR unauthenticated"; the
 * data block must end in "\r\n" and hold "user pass"; more than 2048 bytes
 * without a newline closes.
 */
enum auth_ascii_result auth_ascii_step(struct auth_ascii *st, const struct authfile *af,
                                       const char *buf, size_t len, size_t *used,
                                       const char **reply, enum auth_ascii_outcome *outcome);

#endif

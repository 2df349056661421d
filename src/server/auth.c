/*
 * auth.c - SASL through Cyrus libsasl2, and memcached's text-protocol
 * authentication tokens (-Y). See auth.h for the contracts.
 *
 * libsasl2 keeps process-wide state, so the SASL part has a little too: the
 * verbosity for its log callback and the host name the connections announce.
 */
#include "auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sasl/sasl.h>
#include <sasl/saslplug.h>

#include "log.h"

/* ---- SASL --------------------------------------------------------------- */

#define SASL_MECH_MAX 32 /* memcached's MAX_SASL_MECH_LEN */

static int sasl_verbose;
static char sasl_hostname[256];
static bool sasl_ready;

static int sasl_log_cb(void *context, int level, const char *message)
{
    (void)context;
    if (sasl_verbose > 0 && level <= SASL_LOG_NOTE) {
        log_msg(LOG_INFO, "SASL (severity %d): %s", level, message);
    }
    return SASL_OK;
}

/* memcached's search: $SASL_CONF_PATH, else the first of /etc/sasl2, /etc/sasl
 * that holds a memcached.conf. */
static int sasl_getconf_cb(void *context, const char **path)
{
    static const char *const dirs[] = {"/etc/sasl2", "/etc/sasl"};
    (void)context;
    *path = getenv("SASL_CONF_PATH");
    if (*path != NULL) {
        return SASL_OK;
    }
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        char file[64];
        snprintf(file, sizeof(file), "%s/memcached.conf", dirs[i]);
        if (access(file, F_OK) == 0) {
            *path = dirs[i];
            return SASL_OK;
        }
    }
    return SASL_FAIL;
}

/* MEMCACHED_SASL_PWDB: one "user:password" per line, read at every check as
 * memcached does, so edits take effect without a restart. */
static int sasl_checkpass_cb(sasl_conn_t *conn, void *context, const char *user, const char *pass,
                             unsigned passlen, struct propctx *propctx)
{
    (void)conn;
    (void)propctx;
    const char *path = context;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        log_msg(LOG_WARN, "SASL: cannot open %s: %s", path, strerror(errno));
        return SASL_NOAUTHZ;
    }
    size_t nuser = strlen(user);
    char line[1024];
    int rc = SASL_NOAUTHZ;
    while (fgets(line, sizeof(line), f) != NULL) {
        size_t n = strcspn(line, "\r\n");
        line[n] = '\0';
        if (n > nuser && memcmp(line, user, nuser) == 0 && line[nuser] == ':' &&
            n - nuser - 1 == passlen && memcmp(line + nuser + 1, pass, passlen) == 0) {
            rc = SASL_OK;
            break;
        }
    }
    fclose(f);
    return rc;
}

/* libsasl2 stores every callback as int (*)(void); going through the generic
 * void (*)(void) keeps -Wcast-function-type quiet. */
#define SASL_FN(f) ((int (*)(void))(void (*)(void))(f))

static sasl_callback_t sasl_callbacks[4];

int auth_sasl_setup(int verbose)
{
    sasl_verbose = verbose;
    if (gethostname(sasl_hostname, sizeof(sasl_hostname) - 1) != 0) {
        sasl_hostname[0] = '\0';
    }
    int n = 0;
    sasl_callbacks[n++] = (sasl_callback_t){SASL_CB_LOG, SASL_FN(sasl_log_cb), NULL};
    sasl_callbacks[n++] = (sasl_callback_t){SASL_CB_GETCONFPATH, SASL_FN(sasl_getconf_cb), NULL};
    char *pwdb = getenv("MEMCACHED_SASL_PWDB");
    if (pwdb != NULL) {
        sasl_callbacks[n++] =
            (sasl_callback_t){SASL_CB_SERVER_USERDB_CHECKPASS, SASL_FN(sasl_checkpass_cb), pwdb};
    }
    sasl_callbacks[n] = (sasl_callback_t){SASL_CB_LIST_END, NULL, NULL};
    if (sasl_server_init(sasl_callbacks, "memcached") != SASL_OK) {
        fprintf(stderr, "Error initializing sasl.\n");
        return -1;
    }
    sasl_ready = true;
    if (verbose > 0) {
        log_msg(LOG_INFO, "Initialized SASL.");
    }
    return 0;
}

void auth_sasl_teardown(void)
{
    if (sasl_ready) {
        sasl_server_done();
        sasl_ready = false;
    }
}

/* A connection's SASL state: the libsasl2 connection, and whether an
 * exchange was started (libsasl2 must not be stepped before one is). */
struct sasl_state {
    sasl_conn_t *conn;
    bool started;
};

static struct sasl_state *sasl_state_get(void **state)
{
    if (*state == NULL) {
        struct sasl_state *st = calloc(1, sizeof(*st));
        if (st == NULL) {
            return NULL;
        }
        if (sasl_server_new("memcached", sasl_hostname[0] ? sasl_hostname : NULL, NULL, NULL, NULL,
                            NULL, 0, &st->conn) != SASL_OK) {
            if (st->conn != NULL) {
                sasl_dispose(&st->conn);
            }
            free(st);
            return NULL;
        }
        *state = st;
    }
    return *state;
}

void auth_sasl_conn_free(void **state)
{
    struct sasl_state *st = *state;
    if (st != NULL) {
        sasl_dispose(&st->conn);
        free(st);
        *state = NULL;
    }
}

bool auth_sasl_list_mechs(void **state, const char **out, size_t *outlen)
{
    struct sasl_state *st = sasl_state_get(state);
    unsigned len = 0;
    if (st == NULL || sasl_listmech(st->conn, NULL, "", " ", "", out, &len, NULL) != SASL_OK) {
        return false;
    }
    *outlen = len;
    return true;
}

static enum auth_sasl_result sasl_result(int rc, const char *raw, unsigned rawlen, const char **out,
                                         size_t *outlen)
{
    *out = raw;
    *outlen = raw != NULL ? rawlen : 0;
    switch (rc) {
    case SASL_OK:
        return AUTH_SASL_OK;
    case SASL_CONTINUE:
        return AUTH_SASL_CONTINUE;
    default:
        if (sasl_verbose > 0) {
            log_msg(LOG_INFO, "Unknown sasl response:  %d", rc);
        }
        return AUTH_SASL_FAIL;
    }
}

enum auth_sasl_result auth_sasl_start(void **state, const char *mech, size_t nmech,
                                      const char *data, size_t ndata, const char **out,
                                      size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    struct sasl_state *st = sasl_state_get(state);
    if (st == NULL || nmech == 0 || nmech > SASL_MECH_MAX) {
        return AUTH_SASL_FAIL;
    }
    char m[SASL_MECH_MAX + 1];
    memcpy(m, mech, nmech);
    m[nmech] = '\0';
    const char *raw = NULL;
    unsigned rawlen = 0;
    int rc =
        sasl_server_start(st->conn, m, ndata > 0 ? data : NULL, (unsigned)ndata, &raw, &rawlen);
    st->started = rc == SASL_OK || rc == SASL_CONTINUE;
    return sasl_result(rc, raw, rawlen, out, outlen);
}

enum auth_sasl_result auth_sasl_step(void **state, const char *data, size_t ndata, const char **out,
                                     size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    struct sasl_state *st = sasl_state_get(state);
    if (st == NULL || !st->started) {
        return AUTH_SASL_FAIL;
    }
    const char *raw = NULL;
    unsigned rawlen = 0;
    int rc = sasl_server_step(st->conn, data, (unsigned)ndata, &raw, &rawlen);
    return sasl_result(rc, raw, rawlen, out, outlen);
}

/* ---- text-protocol tokens ----------------------------------------------- */

#define AUTHFILE_MAX    (1024 * 1024)
#define ASCII_LINE_MAX  2048  /* junk longer than this without a newline closes */
#define ASCII_TOKEN_MAX 16384 /* longest "user pass" data block accepted */

struct authfile_entry {
    const char *user;
    size_t nuser;
    const char *pass;
    size_t npass;
};

struct authfile {
    char *text; /* the file, entries point into it */
    struct authfile_entry *entries;
    size_t n;
};

struct authfile *authfile_load(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        /* Sic: memcached names the error twice. */
        fprintf(stderr, "Could not open authfile [%s] for reading, error %s: %s\n", path,
                strerror(errno), strerror(errno));
        return NULL;
    }
    struct authfile *af = calloc(1, sizeof(*af));
    char *text = malloc(AUTHFILE_MAX + 1);
    size_t len = text != NULL ? fread(text, 1, AUTHFILE_MAX + 1, f) : 0;
    fclose(f);
    if (af == NULL || text == NULL || len > AUTHFILE_MAX) {
        fprintf(stderr, "Could not load authfile [%s]: %s\n", path,
                len > AUTHFILE_MAX ? "file too large" : "out of memory");
        free(text);
        free(af);
        return NULL;
    }
    text[len] = '\0';
    af->text = text;
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) {
        lines += text[i] == '\n';
    }
    af->entries = calloc(lines, sizeof(*af->entries));
    if (af->entries == NULL) {
        authfile_destroy(&af);
        return NULL;
    }
    /* memcached's rules: every line, empty ones too, must hold a colon; the
     * last line needs no newline. */
    char *line = text;
    while (line < text + len) {
        char *end = memchr(line, '\n', (size_t)(text + len - line));
        if (end == NULL) {
            end = text + len;
        }
        *end = '\0';
        char *colon = strchr(line, ':');
        if (colon == NULL) {
            fprintf(stderr, "Authfile [%s] has a malformed entry. Should be 'user:password'", path);
            authfile_destroy(&af);
            return NULL;
        }
        af->entries[af->n++] =
            (struct authfile_entry){line, (size_t)(colon - line), colon + 1, strlen(colon + 1)};
        line = end + 1;
    }
    return af;
}

void authfile_destroy(struct authfile **afp)
{
    struct authfile *af = *afp;
    if (af == NULL) {
        return;
    }
    free(af->entries);
    free(af->text);
    free(af);
    *afp = NULL;
}

bool authfile_check(const struct authfile *af, const char *user, size_t nuser, const char *pass,
                    size_t npass)
{
    for (size_t i = 0; i < af->n; i++) {
        const struct authfile_entry *e = &af->entries[i];
        if (e->nuser == nuser && e->npass == npass && memcmp(e->user, user, nuser) == 0 &&
            memcmp(e->pass, pass, npass) == 0) {
            return true;
        }
    }
    return false;
}

/* Splits a line into space-separated tokens, as memcached's tokenizer does;
 * returns how many (at most max). */
static size_t tokenize(const char *p, size_t len, const char **tok, size_t *ntok, size_t max)
{
    size_t n = 0;
    size_t i = 0;
    while (i < len && n < max) {
        while (i < len && p[i] == ' ') {
            i++;
        }
        if (i == len) {
            break;
        }
        size_t start = i;
        while (i < len && p[i] != ' ') {
            i++;
        }
        tok[n] = p + start;
        ntok[n] = i - start;
        n++;
    }
    return n;
}

static bool parse_u32(const char *p, size_t n, uint32_t *out)
{
    if (n == 0 || n > 10) {
        return false;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return false;
        }
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    if (v > UINT32_MAX) {
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

enum auth_ascii_result auth_ascii_step(struct auth_ascii *st, const struct authfile *af,
                                       const char *buf, size_t len, size_t *used,
                                       const char **reply, enum auth_ascii_outcome *outcome)
{
    *used = 0;
    *reply = NULL;
    *outcome = AUTH_ASCII_NO_CHECK;
    if (!st->started) {
        const char *nl = memchr(buf, '\n', len);
        if (nl == NULL) {
            return len > ASCII_LINE_MAX ? AUTH_ASCII_CLOSE : AUTH_ASCII_NEED_MORE;
        }
        size_t linelen = (size_t)(nl - buf);
        *used = linelen + 1;
        if (linelen > 0 && buf[linelen - 1] == '\r') {
            linelen--;
        }
        const char *tok[7];
        size_t ntok[7];
        size_t n = tokenize(buf, linelen, tok, ntok, 7);
        uint32_t size = 0;
        if (n < 5 || ntok[0] != 3 || memcmp(tok[0], "set", 3) != 0 ||
            !parse_u32(tok[4], ntok[4], &size)) {
            *reply = "CLIENT_ERROR unauthenticated";
            return AUTH_ASCII_REPLY;
        }
        if (size > ASCII_TOKEN_MAX) {
            return AUTH_ASCII_CLOSE;
        }
        st->started = true;
        st->need = size + 2;
        return AUTH_ASCII_REPLY;
    }
    if (len < st->need) {
        return AUTH_ASCII_NEED_MORE;
    }
    size_t n = st->need;
    *used = n;
    st->started = false;
    st->need = 0;
    if (n < 2 || buf[n - 2] != '\r' || buf[n - 1] != '\n') {
        *reply = "CLIENT_ERROR bad command line termination";
        return AUTH_ASCII_REPLY;
    }
    n -= 2;
    const char *sp = memchr(buf, ' ', n);
    if (sp == NULL) {
        *reply = "CLIENT_ERROR bad authentication token format";
        return AUTH_ASCII_REPLY;
    }
    size_t nuser = (size_t)(sp - buf);
    if (authfile_check(af, buf, nuser, sp + 1, n - nuser - 1)) {
        *outcome = AUTH_ASCII_PASSED;
        *reply = "STORED";
    } else {
        *outcome = AUTH_ASCII_FAILED;
        *reply = "CLIENT_ERROR authentication failure";
    }
    return AUTH_ASCII_REPLY;
}

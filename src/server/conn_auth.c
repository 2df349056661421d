/*
 * conn_auth.c - the connection side of authentication: where conn.c hands
 * a request to SASL (-S) or the text-token exchange (-Y) instead of running
 * it. The schemes themselves live in auth.c; these functions only decide,
 * consume the request's bytes and queue replies, like the rest of conn.c's
 * request loop.
 */
#include "conn_auth.h"

#include "auth.h"
#include "process_binary.h"
#include "server.h"

/* With -S: SASL requests, whose data the codec leaves as the swallow count
 * of a (no-SASL) "Unknown command", are read whole and answered by
 * process_binary_sasl(); before authentication everything but SASL and
 * VERSION is refused with "Auth failure." and the connection closed. */
bool conn_auth_binary(struct conn *c, enum bin_result r, const struct bin_request *req, size_t used)
{
    bool sasl_op = req->cmd == BIN_OP_SASL_LIST_MECHS || req->cmd == BIN_OP_SASL_AUTH ||
                   req->cmd == BIN_OP_SASL_STEP;
    bool framing = r == BIN_ERROR && req->err_close &&
                   req->err_status == BIN_STATUS_UNKNOWN_COMMAND; /* checked first */
    if (sasl_op && r == BIN_ERROR && !req->err_close &&
        req->err_status == BIN_STATUS_UNKNOWN_COMMAND) {
        size_t n = req->err_swallow;
        if (n > AUTH_SASL_DATA_MAX) {
            process_binary_sasl(c, req, NULL, 0, true);
            conn_consume(c, used);
            struct conn_ext *x = conn_ext(c);
            if (x == NULL) {
                c->close_after_write = true; /* nowhere to count the bytes to discard */
                return true;
            }
            x->swallow = n;
            c->state = CONN_SWALLOW;
            return true;
        }
        if (c->rlen < used + n) {
            return false; /* wait for the whole SASL body */
        }
        c->last_cmd_time = clock_now(&c->w->srv->clock);
        process_binary_sasl(c, req, c->rbuf + c->rstart + used, n, false);
        conn_consume(c, used + n);
        return true;
    }
    if (!c->authenticated && !framing && !sasl_op && req->cmd != BIN_OP_VERSION) {
        process_binary_refuse(c, req);
        conn_consume(c, used);
        return true;
    }
    if (r == BIN_ERROR) {
        process_binary_error(c, req);
        conn_consume(c, used);
        return true;
    }
    c->last_cmd_time = clock_now(&c->w->srv->clock);
    process_binary(c, req);
    conn_consume(c, used);
    return true;
}

/* -Y: the token exchange every text connection starts with. Returns 1 when
 * it consumed bytes, 0 when it needs more, -1 to close. */
int conn_auth_text(struct conn *c)
{
    size_t used = 0;
    const char *reply = NULL;
    enum auth_ascii_outcome outcome;
    struct conn_ext *x = conn_ext(c);
    if (x == NULL) {
        return -1;
    }
    enum auth_ascii_result r = auth_ascii_step(
        &x->auth_ascii, c->w->srv->authfile, c->rbuf + c->rstart, c->rlen, &used, &reply, &outcome);
    if (r == AUTH_ASCII_NEED_MORE) {
        return 0;
    }
    if (r == AUTH_ASCII_CLOSE) {
        return -1;
    }
    conn_consume(c, used);
    if (outcome != AUTH_ASCII_NO_CHECK) {
        STAT_INCR(&c->w->stats, auth_cmds);
        if (outcome == AUTH_ASCII_FAILED) {
            STAT_INCR(&c->w->stats, auth_errors);
        }
        c->authenticated = outcome == AUTH_ASCII_PASSED;
    }
    if (reply != NULL) {
        c->last_cmd_time = clock_now(&c->w->srv->clock);
        conn_out_str(c, reply);
    }
    return 1;
}

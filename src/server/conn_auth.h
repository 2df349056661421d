/*
 * conn_auth.h - authentication steps in a connection's request loop.
 */
#ifndef MEMSTASH_CONN_AUTH_H
#define MEMSTASH_CONN_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "binary.h"
#include "conn.h"

/*
 * With -S, runs one parsed binary request (r is BIN_OK or BIN_ERROR from
 * bin_parse_request, used its *consumed): SASL requests are read whole (their
 * data is the no-SASL swallow count) and answered; before authentication
 * everything but SASL and VERSION is refused with 0x20 and the connection
 * closed; anything else runs as usual. Returns false when more bytes are
 * needed (nothing consumed).
 */
bool conn_auth_binary(struct conn *c, enum bin_result r, const struct bin_request *req,
                      size_t used);

/*
 * With -Y, one step of the token exchange on the buffered bytes. Returns 1
 * when it consumed bytes, 0 when it needs more, -1 to close.
 */
int conn_auth_text(struct conn *c);

#endif

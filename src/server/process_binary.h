/*
 * process_binary.h - the binary protocol run against storage. Handlers
 * append reply packets to the connection; a SET-family request leaves the
 * connection in CONN_NREAD with the new item attached.
 */
#ifndef MEMSTASH_PROCESS_BINARY_H
#define MEMSTASH_PROCESS_BINARY_H

#include "binary.h"
#include "conn.h"

/* Runs one request that bin_parse_request() accepted (BIN_OK). */
void process_binary(struct conn *c, const struct bin_request *req);
/* Answers a request bin_parse_request() rejected (BIN_ERROR), then closes or
 * swallows as the codec says. */
void process_binary_error(struct conn *c, const struct bin_request *req);
/*
 * With -S. process_binary_sasl() answers SASL_LIST_MECHS, SASL_AUTH and
 * SASL_STEP; data is the request's value (the SASL bytes), too_long set when
 * it exceeded AUTH_SASL_DATA_MAX and was not read. process_binary_refuse()
 * answers an unauthenticated request with 0x20 "Auth failure." and marks
 * the connection for closing, as memcached does.
 */
void process_binary_sasl(struct conn *c, const struct bin_request *req, const char *data,
                         size_t ndata, bool too_long);
void process_binary_refuse(struct conn *c, const struct bin_request *req);
/* Called once a SET-family value is in c->ext->item. */
void process_binary_complete_nread(struct conn *c);

#endif

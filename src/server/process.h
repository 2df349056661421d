/*
 * process.h - runs requests against storage: the one place where protocol
 * meets storage.
 *
 * Handlers append replies to the connection (conn_out*); they never write to
 * a socket. A storage command leaves the connection in CONN_NREAD with the
 * new item attached (the connection fills it), or in CONN_SWALLOW when the
 * data block must be discarded.
 */
#ifndef MEMSTASH_PROCESS_H
#define MEMSTASH_PROCESS_H

#include "conn.h"
#include "text.h"

/* Runs one parsed text request. */
void process_text(struct conn *c, const struct text_request *req);
/* Called by the connection once a data block (value + "\r\n") is in c->ext->item. */
void process_complete_nread(struct conn *c);

#endif

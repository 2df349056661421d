/*
 * process_meta.h - the meta protocol (mg, ms, md, ma, mn, me) run against
 * storage. Like process.c, handlers append replies to the connection and
 * never touch the socket.
 */
#ifndef MEMSTASH_PROCESS_META_H
#define MEMSTASH_PROCESS_META_H

#include "conn.h"
#include "text.h"

/* Runs one meta command line (req->cmd == TEXT_CMD_META). An ms leaves the
 * connection in CONN_NREAD with c->ext->item set and item_cmd == TEXT_CMD_META,
 * keeping what it needs in c->ext->meta_pending; or in CONN_SWALLOW. */
void process_meta(struct conn *c, const struct text_request *req);
/* Called once an ms data block is in c->ext->item. */
void process_meta_complete_nread(struct conn *c);

#endif

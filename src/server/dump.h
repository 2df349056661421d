/*
 * dump.h - "lru_crawler ..." and "stats cachedump": listing what the cache
 * holds (see dump.c).
 */
#ifndef MEMSTASH_DUMP_H
#define MEMSTASH_DUMP_H

#include "conn.h"
#include "text.h"

/* "lru_crawler <sub> [arg]". metadump and mgdump leave a dump in progress on
 * the connection (c->ext->dump), which dump_continue() carries on. */
void dump_lru_crawler(struct conn *c, const struct text_request *req);
/* "stats cachedump <class> <limit>": the whole reply at once (2 MB cap). */
void dump_cachedump(struct conn *c, const struct text_request *req);
/* Queues the next stretch of a dump in progress; ends and frees it after
 * the last. The connection calls it while c->ext->dump is set and its output
 * has drained. */
void dump_continue(struct conn *c);
/* Drops a dump in progress (the connection is closing). */
void dump_release(struct conn *c);

#endif

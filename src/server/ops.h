/*
 * ops.h - cache operations shared by every protocol handler (text, binary,
 * meta): each calls storage and counts memcached's statistics for it, per
 * thread, exactly once. Protocol handlers decide only how to reply.
 *
 * Every function works for connection c's worker and takes keys as spans.
 */
#ifndef MEMSTASH_OPS_H
#define MEMSTASH_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clock.h"
#include "storage.h"

struct conn;
struct settings;

/* A retrieval: get (touch false) or touch/gat (touch true, with the new
 * protocol exptime). Counts cmd_get/get_hits/get_misses/get_expired/
 * get_flushed or cmd_touch/touch_hits/touch_misses, and prefix stats.
 * Returns a referenced item or NULL. */
struct item *ops_fetch(struct conn *c, const char *key, size_t nkey, bool touch, int64_t exptime);

/* Allocates the item a storage command fills. On failure (STORAGE_E2BIG,
 * STORAGE_ENOMEM) counts store_too_large / store_no_memory and, for a set,
 * drops the key's old value so that a failed update never leaves stale
 * data (as memcached does). Records the set in prefix stats. *hv gets the
 * key's hash for ops_store. */
int ops_alloc(struct conn *c, const char *key, size_t nkey, uint32_t flags, int64_t exptime,
              size_t nbytes, bool is_set, uint64_t *hv, struct item **out);

/* Links a filled item (storage_store), counting cmd_set and the cas
 * counters. Consumes the caller's reference to it. Returns 0 with *outcome
 * or STORAGE_ENOMEM/STORAGE_E2BIG (append/prepend could not allocate). */
int ops_store(struct conn *c, struct item *it, enum storage_op op, uint64_t cas_in, uint64_t hv,
              enum storage_store_outcome *outcome, uint64_t *cas_out);

/* A delete, counting delete_hits/delete_misses and prefix stats. */
void ops_delete(struct conn *c, const char *key, size_t nkey, uint64_t cas_in, bool *found,
                bool *cas_mismatch);

/* incr/decr, counting incr_/decr_ hits and misses. Returns 0 with *outcome,
 * or STORAGE_ENOMEM. */
int ops_arith(struct conn *c, const char *key, size_t nkey, const struct storage_arith *a,
              enum storage_arith_outcome *outcome, uint64_t *value, uint64_t *cas_out);

/* flush_all: counts cmd_flush; returns false when -F disables it. A
 * protocol exptime of 0 or less flushes now. */
bool ops_flush(struct conn *c, int64_t exptime);

#endif

/*
 * prefix_stats.h - memcached's "stats detail": get/hit/set/delete counts per
 * key prefix (the text before the first delimiter, -D, default ':').
 *
 * Recording is off until "stats detail on" or -D; keys without the delimiter
 * are not counted. One mutex guards the table: it is only touched when
 * detail is on, which memcached documents as a debugging aid.
 */
#ifndef MEMSTASH_PREFIX_STATS_H
#define MEMSTASH_PREFIX_STATS_H

#include <stdbool.h>
#include <stddef.h>

struct prefix_stats;

/* Returns NULL when out of memory. */
struct prefix_stats *prefix_stats_create(char delimiter);
void prefix_stats_destroy(struct prefix_stats **ps);

void prefix_stats_record_get(struct prefix_stats *ps, const char *key, size_t nkey, bool hit);
void prefix_stats_record_set(struct prefix_stats *ps, const char *key, size_t nkey);
void prefix_stats_record_delete(struct prefix_stats *ps, const char *key, size_t nkey);

/* Calls line(ctx, text) for each "PREFIX <p> get <n> hit <n> set <n> del <n>"
 * (without "\r\n"), in the order prefixes were first seen. */
void prefix_stats_dump(struct prefix_stats *ps, void (*line)(void *ctx, const char *text),
                       void *ctx);

#endif

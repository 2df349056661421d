/*
 * log.h - memstashd's leveled logger: one timestamped line per call to
 * stderr.
 *
 * Which levels print follows -v (and the "verbosity" command) as memcached
 * does:
 *
 *   LOG_ERROR  always: something failed that an operator must see
 *   LOG_WARN   -v   and up
 *   LOG_INFO   -v   and up: startup, shutdown, configuration notes
 *   LOG_DEBUG  -vv  and up: client commands, replies and connection events
 *   LOG_TRACE  -vvv: internal state changes
 *
 * Every line starts with an ISO 8601 UTC timestamp with milliseconds,
 * e.g. "2026-11-24T04:54:29.123Z <12 new auto-negotiating client connection".
 */
#ifndef MEMSTASH_LOG_H
#define MEMSTASH_LOG_H

#include <stdbool.h>

enum log_level {
    LOG_ERROR = 0,
    LOG_WARN,
    LOG_INFO,
    LOG_DEBUG,
    LOG_TRACE,
};

/* Points the logger at the live verbosity (the -v count, which "verbosity"
 * changes at run time). The int must outlive every log_msg call. Before
 * log_setup, or with NULL, every level prints. */
void log_setup(const volatile int *verbosity);

/* True when a message of this level would be written. */
bool log_enabled(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif

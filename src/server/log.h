/*
 * log.h - memstashd's leveled logger: one line per call to stderr.
 */
#ifndef MEMSTASH_LOG_H
#define MEMSTASH_LOG_H

enum log_level {
    LOG_ERROR = 0,
    LOG_WARN,
    LOG_INFO,
    LOG_DEBUG,
};

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif

/*
 * log.c - writes timestamped log lines to stderr in one write each, so lines
 * from different threads never interleave.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

/* The server's verbosity; the only state here, set once by main(). */
static const volatile int *log_verbosity;

void log_setup(const volatile int *verbosity)
{
    log_verbosity = verbosity;
}

bool log_enabled(enum log_level level)
{
    if (level == LOG_ERROR || log_verbosity == NULL) {
        return true;
    }
    int v = __atomic_load_n(log_verbosity, __ATOMIC_RELAXED);
    switch (level) {
    case LOG_WARN:
    case LOG_INFO:
        return v >= 1;
    case LOG_DEBUG:
        return v >= 2;
    default:
        return v >= 3;
    }
}

/* "2026-11-24T04:54:29.123Z " into buf; returns its length. */
static int format_timestamp(char *buf, size_t size)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    int m = snprintf(buf + n, size - n, ".%03ldZ ", ts.tv_nsec / 1000000L);
    return (int)n + (m > 0 ? m : 0);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (!log_enabled(level)) {
        return;
    }
    char line[2048];
    int ts = format_timestamp(line, 64);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line + ts, sizeof(line) - (size_t)ts - 1, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    n += ts;
    if ((size_t)n > sizeof(line) - 2) {
        n = (int)sizeof(line) - 2;
    }
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}

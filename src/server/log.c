/*
 * log.c - writes log lines to stderr in one write each, so lines from
 * different threads never interleave.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

void log_msg(enum log_level level, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    (void)level;
    if (n < 0) {
        return;
    }
    if ((size_t)n > sizeof(line) - 2) {
        n = (int)sizeof(line) - 2;
    }
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}

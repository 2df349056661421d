/*
 * uri.h - memcached's URI encoding of keys, as metadump and watch print
 * them: every byte but A-Za-z0-9 and -._~ becomes %XX (upper-case hex).
 */
#ifndef MEMSTASH_URI_H
#define MEMSTASH_URI_H

#include <stddef.h>

/* Longest encoding of n bytes. */
#define URI_ENCODED_MAX(n) (3 * (n))

/* Writes the encoding of src[0..n) to out (room for URI_ENCODED_MAX(n)
 * bytes, no terminator) and returns its length. */
size_t uri_encode(const char *src, size_t n, char *out);

#endif

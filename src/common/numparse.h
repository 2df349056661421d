/*
 * numparse.h - checked decimal parsing and fast formatting.
 *
 * The parsers read a span (not a C string) with the rules memcached applies
 * to protocol tokens (its safe_strto* helpers over strtoul/strtol): leading
 * white space is skipped, a sign is allowed, at least one digit is required,
 * and the digits must run to the end of the span or to a white-space byte.
 * Overflow of the 64-bit range fails. The 32-bit variants parse 64 bits and
 * truncate, as memcached does on 64-bit hosts.
 */
#ifndef MEMSTASH_NUMPARSE_H
#define MEMSTASH_NUMPARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Unsigned, with strtoull's sign rule as memcached applies it: a '-' is
 * refused when the negated value looks negative as a signed number. */
bool num_parse_u64(const char *s, size_t n, uint64_t *out);
bool num_parse_u32(const char *s, size_t n, uint32_t *out);
/* Signed. */
bool num_parse_i64(const char *s, size_t n, int64_t *out);
bool num_parse_i32(const char *s, size_t n, int32_t *out);

/* Writes v in decimal without a terminator; returns the length (1..20). */
size_t num_format_u64(char *buf, uint64_t v);

#endif

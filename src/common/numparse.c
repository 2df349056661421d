/*
 * numparse.c - checked decimal parsing (see numparse.h).
 */
#include "numparse.h"

#include <string.h>

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* Parses sign and magnitude; returns false on no digits, overflow of u64, or
 * a non-space byte after the digits. */
static bool parse_mag(const char *s, size_t n, bool *neg, uint64_t *mag)
{
    size_t i = 0;
    while (i < n && is_space(s[i])) {
        i++;
    }
    *neg = false;
    if (i < n && (s[i] == '+' || s[i] == '-')) {
        *neg = s[i] == '-';
        i++;
    }
    size_t start = i;
    uint64_t v = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9') {
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return false;
        }
        v = v * 10 + d;
        i++;
    }
    if (i == start) {
        return false;
    }
    if (i < n && !is_space(s[i])) {
        return false;
    }
    *mag = v;
    return true;
}

bool num_parse_u64(const char *s, size_t n, uint64_t *out)
{
    bool neg;
    uint64_t v;
    if (!parse_mag(s, n, &neg, &v)) {
        return false;
    }
    /* strtoull negates a signed magnitude modulo 2^64; memcached then refuses
     * the result only when it looks negative as a signed number, so "-1"
     * fails while "-18446744073709551615" reads as 1. */
    if (neg) {
        v = 0 - v;
        if (v > (uint64_t)INT64_MAX) {
            return false;
        }
    }
    *out = v;
    return true;
}

bool num_parse_u32(const char *s, size_t n, uint32_t *out)
{
    uint64_t v;
    if (!num_parse_u64(s, n, &v)) {
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

bool num_parse_i64(const char *s, size_t n, int64_t *out)
{
    bool neg;
    uint64_t v;
    if (!parse_mag(s, n, &neg, &v)) {
        return false;
    }
    if (neg) {
        if (v > (uint64_t)INT64_MAX + 1) {
            return false;
        }
        *out = (int64_t)(0 - v);
    } else {
        if (v > (uint64_t)INT64_MAX) {
            return false;
        }
        *out = (int64_t)v;
    }
    return true;
}

bool num_parse_i32(const char *s, size_t n, int32_t *out)
{
    int64_t v;
    if (!num_parse_i64(s, n, &v)) {
        return false;
    }
    *out = (int32_t)(uint32_t)(uint64_t)v;
    return true;
}

size_t num_format_u64(char *buf, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++) {
        buf[i] = tmp[n - 1 - i];
    }
    return n;
}

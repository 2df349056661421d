/*
 * spec.c - server list parsing (see spec.h).
 */
#include "spec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Parses all of s[0..n) as a decimal number in [lo, hi]. */
static bool parse_num(const char *s, size_t n, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (n == 0 || n > 10) {
        return false;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v < lo || v > hi) {
        return false;
    }
    *out = v;
    return true;
}

/* Parses "[:port[(:| )weight]]" after a host. */
static int parse_port_weight(const char *s, size_t n, struct server_spec *out)
{
    out->port = SPEC_DEFAULT_PORT;
    out->weight = 1;
    if (n == 0) {
        return 0;
    }
    if (s[0] != ':') {
        return -1;
    }
    s++;
    n--;
    size_t i = 0;
    while (i < n && s[i] != ':' && !is_blank(s[i])) {
        i++;
    }
    uint64_t v;
    if (!parse_num(s, i, 0, 65535, &v)) {
        return -1;
    }
    out->port = v == 0 ? SPEC_DEFAULT_PORT : (uint16_t)v;
    if (i == n) {
        return 0;
    }
    size_t j = i + 1;
    if (is_blank(s[i])) {
        while (j < n && is_blank(s[j])) {
            j++;
        }
    }
    if (!parse_num(s + j, n - j, 1, UINT32_MAX, &v)) {
        return -1;
    }
    out->weight = (uint32_t)v;
    return 0;
}

static bool host_ok(const char *s, size_t n)
{
    if (n == 0) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f || c == ',' || c == '[' || c == ']') {
            return false;
        }
    }
    return true;
}

int spec_parse_one(const char *s, size_t n, struct server_spec *out)
{
    memset(out, 0, sizeof(*out));
    while (n > 0 && is_blank(s[0])) {
        s++;
        n--;
    }
    while (n > 0 && is_blank(s[n - 1])) {
        n--;
    }
    if (n == 0) {
        return -1;
    }
    const char *host;
    size_t nhost;
    if (n > 5 && memcmp(s, "unix:", 5) == 0) {
        s += 5;
        n -= 5;
    }
    if (s[0] == '/') {
        for (size_t i = 0; i < n; i++) {
            if ((unsigned char)s[i] < 0x20) {
                return -1;
            }
        }
        out->is_unix = true;
        out->port = 0;
        out->weight = 1;
        host = s;
        nhost = n;
    } else if (s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close) {
            return -1;
        }
        host = s + 1;
        nhost = (size_t)(close - host);
        if (!host_ok(host, nhost) || !memchr(host, ':', nhost)) {
            return -1;
        }
        size_t rest = (size_t)(close + 1 - s);
        if (parse_port_weight(close + 1, n - rest, out) != 0) {
            return -1;
        }
        out->is_v6 = true;
    } else {
        size_t i = 0;
        while (i < n && s[i] != ':' && !is_blank(s[i])) {
            i++;
        }
        host = s;
        nhost = i;
        if (!host_ok(host, nhost) || (i < n && is_blank(s[i]))) {
            return -1;
        }
        if (parse_port_weight(s + i, n - i, out) != 0) {
            return -1;
        }
    }
    out->host = malloc(nhost + 1);
    if (!out->host) {
        return -1;
    }
    memcpy(out->host, host, nhost);
    out->host[nhost] = '\0';
    return 0;
}

void spec_free_list(struct server_spec *specs, size_t count)
{
    if (!specs) {
        return;
    }
    for (size_t i = 0; i < count; i++) {
        free(specs[i].host);
    }
    free(specs);
}

int spec_parse_list(const char *s, struct server_spec **out, size_t *count)
{
    *out = NULL;
    *count = 0;
    if (!s) {
        return -1;
    }
    size_t items = 1;
    for (const char *p = s; *p; p++) {
        items += *p == ',';
    }
    struct server_spec *specs = calloc(items, sizeof(*specs));
    if (!specs) {
        return -1;
    }
    size_t k = 0;
    const char *p = s;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (spec_parse_one(p, len, &specs[k]) != 0) {
            spec_free_list(specs, k);
            return -1;
        }
        k++;
        if (!comma) {
            break;
        }
        p = comma + 1;
    }
    *out = specs;
    *count = k;
    return 0;
}

size_t spec_format(const struct server_spec *sp, char *buf, size_t cap)
{
    int n;
    if (sp->is_unix) {
        n = snprintf(buf, cap, "%s", sp->host);
    } else if (sp->is_v6) {
        n = snprintf(buf, cap, "[%s]:%u", sp->host, (unsigned)sp->port);
    } else {
        n = snprintf(buf, cap, "%s:%u", sp->host, (unsigned)sp->port);
    }
    if (n < 0 || cap == 0) {
        return 0;
    }
    return (size_t)n < cap ? (size_t)n : cap - 1;
}

/*
 * bench_proto.c - micro benchmarks of the protocol codecs (src/proto), no I/O.
 *
 * Each case parses (or composes) one request per operation out of a buffer
 * of 64 different requests with 32-byte keys, as a pipelined batch would
 * present them to the server.
 */
#include <stdio.h>
#include <string.h>

#include "binary.h"
#include "meta.h"
#include "micro.h"
#include "text.h"

#define NREQ  64
#define KEYSZ 32

static char reqs[NREQ][4096];
static size_t reqlen[NREQ];

static void key_of(char *buf, unsigned i)
{
    char num[16];
    int n = snprintf(num, sizeof(num), "%u", i);
    memset(buf, 'k', KEYSZ);
    memcpy(buf + KEYSZ - n, num, (size_t)n);
}

static void build_text(const char *fmt_head, const char *tail, unsigned keys_per_req)
{
    for (unsigned i = 0; i < NREQ; i++) {
        size_t len = (size_t)snprintf(reqs[i], sizeof(reqs[i]), "%s", fmt_head);
        for (unsigned k = 0; k < keys_per_req; k++) {
            reqs[i][len++] = ' ';
            key_of(reqs[i] + len, i * keys_per_req + k);
            len += KEYSZ;
        }
        len += (size_t)snprintf(reqs[i] + len, sizeof(reqs[i]) - len, "%s", tail);
        reqlen[i] = len;
    }
}

static uint64_t parse_text(uint64_t n)
{
    uint64_t sum = 0;
    struct text_request req;
    for (uint64_t i = 0; i < n; i++) {
        size_t used = 0;
        unsigned r = (unsigned)(i % NREQ);
        if (text_parse(reqs[r], reqlen[r], &req, &used) == TEXT_OK) {
            sum += used + req.cmd;
        }
    }
    return sum;
}

static uint64_t case_text_get1(uint64_t n)
{
    build_text("get", "\r\n", 1);
    return parse_text(n);
}

static uint64_t case_text_set(uint64_t n)
{
    build_text("set", " 0 0 100\r\n", 1);
    return parse_text(n);
}

static uint64_t case_text_get50(uint64_t n)
{
    build_text("get", "\r\n", 50);
    uint64_t sum = 0;
    struct text_request req;
    for (uint64_t i = 0; i < n; i++) {
        size_t used = 0;
        unsigned r = (unsigned)(i % NREQ);
        if (text_parse(reqs[r], reqlen[r], &req, &used) != TEXT_OK) {
            continue;
        }
        const char *p = req.keys, *end = req.keys + req.keys_len;
        struct text_token tok;
        while (text_next_token(&p, end, &tok)) {
            sum += tok.len;
        }
    }
    return sum;
}

static uint64_t case_meta_mg(uint64_t n)
{
    build_text("mg", " v f t\r\n", 1);
    uint64_t sum = 0;
    struct text_request treq;
    struct meta_request mreq;
    char keybuf[META_KEYBUF_SIZE];
    for (uint64_t i = 0; i < n; i++) {
        size_t used = 0;
        unsigned r = (unsigned)(i % NREQ);
        if (text_parse(reqs[r], reqlen[r], &treq, &used) == TEXT_OK &&
            meta_parse(&treq, keybuf, &mreq) == 0) {
            sum += used + mreq.cmd + 1;
        }
    }
    return sum;
}

static uint64_t case_bin_get(uint64_t n)
{
    for (unsigned i = 0; i < NREQ; i++) {
        unsigned char *h = (unsigned char *)reqs[i];
        memset(h, 0, 24);
        h[0] = 0x80;
        h[1] = 0x00; /* GET */
        h[3] = KEYSZ;
        h[11] = KEYSZ;
        key_of(reqs[i] + 24, i);
        reqlen[i] = 24 + KEYSZ;
    }
    uint64_t sum = 0;
    struct bin_request req;
    for (uint64_t i = 0; i < n; i++) {
        size_t used = 0;
        unsigned r = (unsigned)(i % NREQ);
        if (bin_parse_request(reqs[r], reqlen[r], &req, &used) == BIN_OK) {
            sum += used + req.cmd + 1;
        }
    }
    return sum;
}

static uint64_t case_text_value_header(uint64_t n)
{
    static char keys[NREQ][KEYSZ];
    for (unsigned i = 0; i < NREQ; i++) {
        key_of(keys[i], i);
    }
    char out[TEXT_VALUE_HEADER_MAX];
    uint64_t sum = 0;
    for (uint64_t i = 0; i < n; i++) {
        sum += text_compose_value(out, keys[i % NREQ], KEYSZ, (uint32_t)(i & 7), 100 + (i & 1023),
                                  false, 0);
    }
    return sum;
}

int main(int argc, char **argv)
{
    static const struct micro_case cases[] = {
        {"text_get1", case_text_get1},   {"text_set_line", case_text_set},
        {"text_get50", case_text_get50}, {"meta_mg", case_meta_mg},
        {"bin_get", case_bin_get},       {"text_value_header", case_text_value_header},
    };
    return micro_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]), 5000000);
}

/*
 * restart.c - the warm-restart file (see restart.h).
 *
 * Layout (host byte order; the header's byte-order mark refuses a file from
 * another architecture):
 *     header  "MEMSTASH-RESTART\n" (17 bytes), u32 version, u32 0x01020304
 *     records struct rec, then nkey key bytes, then nbytes value bytes
 *     trailer a struct rec with nkey 0, u64 record count, u64 XXH64 of every
 *             record byte before the trailer
 * Expiry is saved as an absolute unix time, so a restart does not stretch
 * or shorten a TTL.
 */
#include "restart.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "log.h"
#include "server.h"
#include "storage.h"

#define RESTART_MAGIC   "MEMSTASH-RESTART\n"
#define RESTART_VERSION 1u
#define RESTART_BOM     0x01020304u

struct rec {
    uint32_t nkey;
    uint32_t nbytes; /* value length, without "\r\n" */
    uint32_t flags;
    uint32_t bits; /* REC_KEY_BINARY */
    int64_t exp;   /* absolute unix time, 0 = never */
    uint64_t cas;
};

#define REC_KEY_BINARY 1u

struct saver {
    FILE *f;
    XXH64_state_t *sum;
    const struct clock *clock;
    size_t count;
    bool failed;
};

static void put(struct saver *s, const void *p, size_t n)
{
    if (!s->failed && fwrite(p, 1, n, s->f) != n) {
        s->failed = true;
    }
    XXH64_update(s->sum, p, n);
}

/* The walk callback: one record per live item (runs under a storage lock;
 * the workers are stopped, so nobody waits for it). */
static void save_item(void *ctx, const struct item *it)
{
    struct saver *s = ctx;
    rel_time_t exp = storage_item_exptime(it);
    struct rec r = {
        .nkey = (uint32_t)storage_item_nkey(it),
        .nbytes = (uint32_t)storage_item_nbytes(it),
        .flags = storage_item_flags(it),
        .bits = storage_item_key_binary(it) ? REC_KEY_BINARY : 0,
        .exp = exp == 0 ? 0 : (int64_t)clock_to_unix(s->clock, exp),
        .cas = storage_item_cas(it),
    };
    put(s, &r, sizeof(r));
    put(s, storage_item_key(it), r.nkey);
    /* The value accessor takes a mutable item; nothing is written. */
    put(s, storage_item_value((struct item *)(uintptr_t)it), r.nbytes);
    s->count++;
}

int restart_save(struct server *srv, const char *path, size_t *saved)
{
    *saved = 0;
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    XXH64_state_t *sum = XXH64_createState();
    if (tmp == NULL || sum == NULL) {
        free(tmp);
        XXH64_freeState(sum);
        fprintf(stderr, "warm restart: out of memory saving %s\n", path);
        return -1;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    FILE *f = fopen(tmp, "wb");
    if (f == NULL) {
        fprintf(stderr, "warm restart: cannot create %s: %s\n", tmp, strerror(errno));
        free(tmp);
        XXH64_freeState(sum);
        return -1;
    }
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    struct saver s = {.f = f, .sum = sum, .clock = &srv->clock};
    uint32_t head[2] = {RESTART_VERSION, RESTART_BOM};
    if (fwrite(RESTART_MAGIC, 1, sizeof(RESTART_MAGIC) - 1, f) != sizeof(RESTART_MAGIC) - 1 ||
        fwrite(head, 1, sizeof(head), f) != sizeof(head)) {
        s.failed = true;
    }
    XXH64_reset(sum, 0);
    rel_time_t now = clock_now(&srv->clock);
    unsigned parts = storage_walk_parts();
    for (unsigned p = 0; p < parts && !s.failed; p++) {
        storage_walk(srv->storage, p, now, save_item, &s);
    }
    struct rec end = {0};
    uint64_t trailer[2] = {s.count, 0};
    if (!s.failed) {
        trailer[1] = XXH64_digest(sum);
        if (fwrite(&end, 1, sizeof(end), f) != sizeof(end) ||
            fwrite(trailer, 1, sizeof(trailer), f) != sizeof(trailer) || fflush(f) != 0 ||
            fsync(fileno(f)) != 0) {
            s.failed = true;
        }
    }
    int err = errno;
    if (fclose(f) != 0) {
        s.failed = true;
    }
    XXH64_freeState(sum);
    if (s.failed || rename(tmp, path) != 0) {
        fprintf(stderr, "warm restart: cannot write %s: %s\n", path, strerror(err ? err : errno));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    *saved = s.count;
    return 0;
}

static bool get(FILE *f, XXH64_state_t *sum, void *p, size_t n)
{
    if (n > 0 && fread(p, 1, n, f) != n) {
        return false;
    }
    if (sum != NULL) {
        XXH64_update(sum, p, n);
    }
    return true;
}

/* Reads the records; returns false for a truncated or corrupt file. */
static bool load_records(struct server *srv, FILE *f, XXH64_state_t *sum, char *scratch,
                         size_t scratch_cap, struct restart_result *res)
{
    const struct clock *ck = &srv->clock;
    rel_time_t now = clock_now(ck);
    time_t unix_now = clock_unix(ck);
    size_t count = 0;
    for (;;) {
        struct rec r;
        if (!get(f, NULL, &r, sizeof(r))) {
            return false;
        }
        if (r.nkey == 0) {
            uint64_t trailer[2];
            return get(f, NULL, trailer, sizeof(trailer)) && trailer[0] == count &&
                   trailer[1] == XXH64_digest(sum);
        }
        XXH64_update(sum, &r, sizeof(r));
        if (r.nkey > 250 || r.nbytes > ((uint32_t)1 << 30)) {
            return false;
        }
        char key[250];
        if (!get(f, sum, key, r.nkey)) {
            return false;
        }
        count++;
        struct item *it = NULL;
        bool expired = r.exp != 0 && r.exp <= (int64_t)unix_now;
        rel_time_t exp = r.exp == 0 ? 0 : clock_realtime(ck, r.exp);
        if (!expired && storage_alloc(srv->storage, key, r.nkey, r.flags, exp, r.nbytes, now,
                                      &it) != STORAGE_OK) {
            it = NULL;
        }
        if (it == NULL) {
            /* Skipped: read past its value (it may exceed this -I). */
            for (size_t left = r.nbytes; left > 0;) {
                size_t n = left < scratch_cap ? left : scratch_cap;
                if (!get(f, sum, scratch, n)) {
                    return false;
                }
                left -= n;
            }
            if (expired) {
                res->expired++;
            } else {
                res->dropped++;
            }
            continue;
        }
        char *dst = storage_item_value(it);
        if (!get(f, sum, dst, r.nbytes)) {
            storage_release(srv->storage, &it);
            return false;
        }
        if (r.bits & REC_KEY_BINARY) {
            storage_item_set_key_binary(it);
        }
        bool stored = false;
        storage_restore(srv->storage, it, r.cas, storage_hash(key, r.nkey), now, &stored);
        storage_release(srv->storage, &it);
        if (stored) {
            res->restored++;
        } else {
            res->dropped++;
        }
    }
}

int restart_load(struct server *srv, const char *path, struct restart_result *res)
{
    memset(res, 0, sizeof(*res));
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        if (errno == ENOENT) {
            return 0; /* nothing saved: a cold start */
        }
        fprintf(stderr, "warm restart: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    char magic[sizeof(RESTART_MAGIC) - 1];
    uint32_t head[2];
    bool ok = fread(magic, 1, sizeof(magic), f) == sizeof(magic) &&
              memcmp(magic, RESTART_MAGIC, sizeof(magic)) == 0 &&
              fread(head, 1, sizeof(head), f) == sizeof(head) && head[0] == RESTART_VERSION &&
              head[1] == RESTART_BOM;
    const char *why = "not a memstash restart file of this version and architecture";
    if (ok) {
        XXH64_state_t *sum = XXH64_createState();
        char *scratch = NULL;
        if (sum != NULL) {
            XXH64_reset(sum, 0);
            scratch = malloc((size_t)srv->settings->item_size_max);
        }
        if (sum == NULL || scratch == NULL) {
            ok = false;
            why = "out of memory";
        } else {
            ok = load_records(srv, f, sum, scratch, (size_t)srv->settings->item_size_max, res);
            why = "truncated or corrupt";
        }
        free(scratch);
        XXH64_freeState(sum);
    }
    fclose(f);
    if (!ok) {
        fprintf(stderr, "warm restart: %s is %s; starting with an empty cache\n", path, why);
        storage_flush(srv->storage, 0, clock_now(&srv->clock));
        res->restored = 0;
    }
    /* Used once: a crash later must not bring this cache back. */
    if (unlink(path) != 0) {
        fprintf(stderr, "warm restart: cannot remove %s: %s\n", path, strerror(errno));
    }
    return 0;
}

/*
 * bench_storage.c - micro benchmarks of the hash function, the hash table
 * lookups and the storage engine (src/storage), through storage.h only.
 *
 * One cache of 1 GiB holds 100,000 items with 32-byte keys and 100-byte
 * values (the load benchmark's data set); lookups pick keys with a fixed
 * xorshift sequence so that they miss the CPU caches as a server's would.
 */
#include <stdio.h>
#include <string.h>

#include "micro.h"
#include "storage.h"

#define NKEYS 100000u
#define KEYSZ 32
#define VALSZ 100

static struct storage *st;
static char keys[NKEYS][KEYSZ];
static uint64_t hashes[NKEYS];

static void key_of(char *buf, uint64_t i)
{
    char num[24];
    int n = snprintf(num, sizeof(num), "%llu", (unsigned long long)i);
    memset(buf, 'k', KEYSZ);
    memcpy(buf + KEYSZ - n, num, (size_t)n);
}

static uint64_t next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 2685821657736338717ull;
}

static int store(const char *key, uint64_t hv)
{
    struct item *it = NULL;
    if (storage_alloc(st, key, KEYSZ, 0, 0, VALSZ, 2, &it) != 0) {
        return -1;
    }
    char *v = storage_item_value(it);
    memset(v, 'x', VALSZ);
    enum storage_store_outcome out;
    int rc = storage_store(st, it, STORAGE_SET, 0, hv, 2, &out, NULL);
    storage_release(st, &it);
    return rc;
}

static void setup(void)
{
    if (st) {
        return;
    }
    struct storage_options o;
    storage_options_default(&o);
    o.maxbytes = (size_t)1024 * 1024 * 1024;
    if (storage_create(&st, &o) != 0) {
        fprintf(stderr, "storage_create failed\n");
        return;
    }
    for (uint64_t i = 0; i < NKEYS; i++) {
        key_of(keys[i], i);
        hashes[i] = storage_hash(keys[i], KEYSZ);
        store(keys[i], hashes[i]);
    }
    while (storage_maintain(st, 2)) {
        /* finish any hash table growth before measuring */
    }
}

static uint64_t case_hash32(uint64_t n)
{
    setup();
    uint64_t sum = 0, s = 88172645463325252ull;
    for (uint64_t i = 0; i < n; i++) {
        sum += storage_hash(keys[next(&s) % NKEYS], KEYSZ);
    }
    return sum | 1;
}

static uint64_t case_get_hit(uint64_t n)
{
    setup();
    uint64_t sum = 0, s = 88172645463325252ull;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t k = next(&s) % NKEYS;
        struct item *it = storage_get(st, keys[k], KEYSZ, hashes[k], 2, NULL);
        if (it) {
            sum += storage_item_nbytes(it);
            storage_release(st, &it);
        }
    }
    return sum;
}

static uint64_t case_get_miss(uint64_t n)
{
    setup();
    uint64_t sum = 1, s = 88172645463325252ull;
    for (uint64_t i = 0; i < n; i++) {
        /* keys[] with the first byte changed: absent, and no formatting in the loop. */
        char key[KEYSZ];
        memcpy(key, keys[next(&s) % NKEYS], KEYSZ);
        key[0] = 'm';
        struct item *it = storage_get(st, key, KEYSZ, storage_hash(key, KEYSZ), 2, NULL);
        sum += it == NULL;
        storage_release(st, &it);
    }
    return sum;
}

static uint64_t case_set(uint64_t n)
{
    setup();
    uint64_t sum = 0, s = 88172645463325252ull;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t k = next(&s) % NKEYS;
        sum += store(keys[k], hashes[k]) == 0;
    }
    return sum;
}

int main(int argc, char **argv)
{
    static const struct micro_case cases[] = {
        {"hash32", case_hash32},
        {"get_hit", case_get_hit},
        {"get_miss_hash", case_get_miss},
        {"set_100b", case_set},
    };
    int rc = micro_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]), 2000000);
    storage_destroy(&st);
    return rc;
}

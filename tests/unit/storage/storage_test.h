/*
 * storage_test.h - small helpers shared by the storage unit tests: build an
 * engine, store and read keys as C strings, and check invariants.
 */
#ifndef MEMSTASH_STORAGE_TEST_H
#define MEMSTASH_STORAGE_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "storage.h"
#include "storage_int.h"

#define MiB ((size_t)1 << 20)

/* The item header for these flags and value length (see storage_int.h). */
#define T_HEADER(flags, nbytes)                                                                    \
    (ITEM_FIXED_SIZE +                                                                             \
     ((nbytes) < 0x80     ? 1u                                                                     \
      : (nbytes) < 0x4000 ? 2u                                                                     \
                          : 4u) +                                                                  \
     ((flags) != 0 ? 4u : 0u))

static inline struct storage *t_create(size_t maxbytes, unsigned hashpower, bool no_evict)
{
    struct storage_options o;
    storage_options_default(&o);
    o.maxbytes = maxbytes;
    o.hashpower = hashpower;
    o.no_evict = no_evict;
    struct storage *st = NULL;
    assert_int_equal(storage_create(&st, &o), 0);
    assert_non_null(st);
    return st;
}

/* Stores key=value with op; returns the storage_store() status and fills the
 * outcome and CAS. Allocation failures come back as the alloc status. */
static inline int t_store(struct storage *st, const char *key, const char *val, size_t nval,
                          uint32_t flags, rel_time_t exptime, enum storage_op op, uint64_t cas_in,
                          rel_time_t now, enum storage_store_outcome *out, uint64_t *cas)
{
    struct item *it = NULL;
    size_t nkey = strlen(key);
    int rc = storage_alloc(st, key, nkey, flags, exptime, nval, now, &it);
    if (rc != 0) {
        return rc;
    }
    memcpy(storage_item_value(it), val, nval);
    rc = storage_store(st, it, op, cas_in, storage_hash(key, nkey), now, out, cas);
    storage_release(st, &it);
    return rc;
}

/* SET with a C-string value; asserts STORED and returns the CAS. */
static inline uint64_t t_set(struct storage *st, const char *key, const char *val,
                             rel_time_t exptime, rel_time_t now)
{
    enum storage_store_outcome out;
    uint64_t cas = 0;
    assert_int_equal(
        t_store(st, key, val, strlen(val), 0, exptime, STORAGE_SET, 0, now, &out, &cas), 0);
    assert_int_equal(out, STORAGE_STORED);
    return cas;
}

static inline enum storage_store_outcome t_op(struct storage *st, const char *key, const char *val,
                                              enum storage_op op, uint64_t cas_in, rel_time_t now)
{
    enum storage_store_outcome out;
    assert_int_equal(t_store(st, key, val, strlen(val), 0, 0, op, cas_in, now, &out, NULL), 0);
    return out;
}

static inline struct item *t_get(struct storage *st, const char *key, rel_time_t now,
                                 enum storage_get_outcome *out)
{
    size_t nkey = strlen(key);
    return storage_get(st, key, nkey, storage_hash(key, nkey), now, out);
}

/* Asserts the key is present with exactly this value. */
static inline void t_expect(struct storage *st, const char *key, const char *val, rel_time_t now)
{
    enum storage_get_outcome out;
    struct item *it = t_get(st, key, now, &out);
    if (it == NULL) {
        fail_msg("key %s missing (outcome %d)", key, (int)out);
    }
    assert_int_equal(out, STORAGE_HIT);
    assert_int_equal(storage_item_nbytes(it), strlen(val));
    assert_memory_equal(storage_item_value(it), val, strlen(val));
    storage_release(st, &it);
    assert_null(it);
}

/* Asserts the key is absent and the lookup outcome is `want`. */
static inline void t_expect_absent(struct storage *st, const char *key, rel_time_t now,
                                   enum storage_get_outcome want)
{
    enum storage_get_outcome out;
    struct item *it = t_get(st, key, now, &out);
    if (it != NULL) {
        storage_release(st, &it);
        fail_msg("key %s unexpectedly present", key);
    }
    assert_int_equal(out, want);
}

static inline bool t_present(struct storage *st, const char *key, rel_time_t now)
{
    struct item *it = t_get(st, key, now, NULL);
    bool ok = it != NULL;
    storage_release(st, &it);
    return ok;
}

static inline void t_check(struct storage *st)
{
    const char *err = storage_check(st);
    if (err != NULL) {
        fail_msg("storage_check: %s", err);
    }
}

static inline struct storage_stats t_stats(struct storage *st, rel_time_t now)
{
    struct storage_stats s;
    storage_get_stats(st, now, &s);
    return s;
}

#endif

/*
 * hash.h - the key hash functions of libmemcached 1.1.4 (libhashkit) and
 * python-memcached, bit for bit.
 *
 * These functions decide which server holds a key, so they are a
 * compatibility contract: each one returns exactly what libmemcached's
 * memcached_generate_hash_value() (or python-memcached's cmemcache_hash())
 * returns for the same bytes, including libmemcached's quirks: bytes are
 * sign-extended where its C code reads a plain (signed) char, "fnv1a_64" is
 * 32-bit arithmetic, and "crc" keeps only 15 bits.
 *
 * What this module is not: it knows nothing of servers or continuums
 * (dist.h does), and it holds no state.
 */
#ifndef MEMSTASH_CLIENT_HASH_H
#define MEMSTASH_CLIENT_HASH_H

#include <stddef.h>
#include <stdint.h>

/* libmemcached's memcached_hash_t numbering (HSIEH and CUSTOM are absent). */
enum hash_alg {
    HASH_DEFAULT = 0, /* one-at-a-time */
    HASH_MD5 = 1,
    HASH_CRC = 2,
    HASH_FNV1_64 = 3,
    HASH_FNV1A_64 = 4,
    HASH_FNV1_32 = 5,
    HASH_FNV1A_32 = 6,
    HASH_MURMUR = 8,
    HASH_JENKINS = 9,
    HASH_MURMUR3 = 10,
};

/* Hashes key[0..n) with alg; an unknown alg hashes as HASH_DEFAULT. */
uint32_t hash_key(enum hash_alg alg, const char *key, size_t n);

uint32_t hash_oaat(const char *key, size_t n);
/* MD5 of key; hash_md5() returns bytes 0..3 of the digest read little-endian. */
void hash_md5_digest(const char *key, size_t n, unsigned char out[16]);
uint32_t hash_md5(const char *key, size_t n);
/* The standard CRC-32 (zlib's crc32()), all 32 bits. */
uint32_t hash_crc32(const char *key, size_t n);
/* libmemcached's "crc": (crc32 >> 16) & 0x7fff. */
uint32_t hash_crc(const char *key, size_t n);
uint32_t hash_fnv1_64(const char *key, size_t n);
uint32_t hash_fnv1a_64(const char *key, size_t n);
uint32_t hash_fnv1_32(const char *key, size_t n);
uint32_t hash_fnv1a_32(const char *key, size_t n);
uint32_t hash_murmur(const char *key, size_t n);
uint32_t hash_jenkins(const char *key, size_t n);
uint32_t hash_murmur3(const char *key, size_t n);

/*
 * python-memcached's cmemcache_hash(): (crc32 >> 16) & 0x7fff, and in 1.59
 * (Debian 12's python3-memcache) a result of 0 becomes 1 ("or 1").
 */
uint32_t hash_python(const char *key, size_t n, int or_one);

#endif

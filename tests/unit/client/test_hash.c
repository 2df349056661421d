/*
 * test_hash.c - the key hashes against libmemcached 1.1.4's and
 * python-memcached's own answers (clients.md §1.9 and §2.1, observed through
 * memcached_generate_hash_value() and memcache.cmemcache_hash()).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "hash.h"

static const char *const keys[10] = {
    "foo",     "bar",
    "baz",     "key0",
    "key1",    "key2",
    "user:42", "session:abc123",
    "ob",      "\xc3\xa9t\xc3\xa9", /* "été" in UTF-8: exercises libmemcached's sign extension */
};

static const enum hash_alg algs[10] = {
    HASH_DEFAULT, HASH_MD5,      HASH_CRC,    HASH_FNV1_64, HASH_FNV1A_64,
    HASH_FNV1_32, HASH_FNV1A_32, HASH_MURMUR, HASH_JENKINS, HASH_MURMUR3,
};

/* memcached_generate_hash_value(key, alg) for each key (row) and alg (column). */
static const uint32_t expected[10][10] = {
    {596015325U, 3675831724U, 3187U, 1805727027U, 4275688823U, 1083137555U, 2851307223U,
     3303027599U, 2583187353U, 2784297138U},
    {2151715081U, 421377335U, 30463U, 1806514304U, 322520602U, 513390112U, 1991736602U, 516654467U,
     2006320315U, 148727849U},
    {4290121714U, 2768240243U, 30756U, 1806514312U, 322517122U, 513390120U, 1857515650U,
     1247684457U, 2504742802U, 388384049U},
    {1952532230U, 4060279841U, 23387U, 3396394486U, 1555932628U, 2215982742U, 910846164U,
     2865567508U, 3220592519U, 3408102282U},
    {3203718188U, 2497097154U, 11356U, 3396394487U, 1555933063U, 2215982743U, 927623783U,
     1050118838U, 3541214983U, 1066245579U},
    {2905880747U, 2854615160U, 13653U, 3396394484U, 1555933498U, 2215982740U, 944401402U,
     2111865733U, 3012554998U, 1249213978U},
    {809463786U, 417323606U, 25711U, 4068646096U, 3704758722U, 4160126384U, 795573122U, 1601091210U,
     3301358738U, 2367272551U},
    {1515114829U, 337401145U, 31207U, 4053312819U, 2656702839U, 421999283U, 531177591U, 3714274063U,
     1946906583U, 2197319879U},
    {325265795U, 1324284569U, 0U, 3035308146U, 3042342868U, 1651971890U, 1832141492U, 2229592618U,
     3231520963U, 3465089889U},
    {2144029493U, 510308318U, 17617U, 3995086359U, 3933641815U, 3199958167U, 200187927U,
     3664841419U, 2303093779U, 1542257627U},
};

static void test_libmemcached_hashes(void **state)
{
    (void)state;
    for (int k = 0; k < 10; k++) {
        for (int a = 0; a < 10; a++) {
            uint32_t got = hash_key(algs[a], keys[k], strlen(keys[k]));
            if (got != expected[k][a]) {
                print_error("key %d alg %d: got %u expected %u\n", k, (int)algs[a], got,
                            expected[k][a]);
            }
            assert_true(got == expected[k][a]);
        }
    }
}

static void test_crc32_full(void **state)
{
    (void)state;
    /* zlib.crc32() values quoted in clients.md §1.9. */
    assert_true(hash_crc32("foo", 3) == 0x8c736521U);
    assert_true(hash_crc32("bar", 3) == 0x76ff8caaU);
    assert_true(hash_crc32("ob", 2) == 0x000065e3U);
    assert_true(hash_crc32("\xc3\xa9t\xc3\xa9", 5) == 0x44d16cd4U);
    assert_true(hash_crc32("", 0) == 0);
}

static void test_python_hash(void **state)
{
    (void)state;
    /* 1.59 maps 0 to 1; 1.60+ keeps 0. */
    assert_int_equal(hash_python("ob", 2, 1), 1);
    assert_int_equal(hash_python("ob", 2, 0), 0);
    assert_int_equal(hash_python("foo", 3, 1), 3187);
    assert_int_equal(hash_python("session:abc123", 14, 1), 31207);
    /* The rehash chain of "foo" with server 1 dead: 3187 -> 29842 -> 32274. */
    assert_int_equal(hash_python("31870", 5, 1), 29842);
    assert_int_equal(hash_python("298421", 6, 1), 32274);
}

static void test_md5_fixture_hash(void **state)
{
    (void)state;
    /* libmemcached's ketama fixture: "VDEAAAAA" md5 = 0xfffcd1b5. */
    assert_true(hash_md5("VDEAAAAA", 8) == 0xfffcd1b5U);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_libmemcached_hashes),
        cmocka_unit_test(test_crc32_full),
        cmocka_unit_test(test_python_hash),
        cmocka_unit_test(test_md5_fixture_hash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

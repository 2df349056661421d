#!/usr/bin/env python3
"""make_seeds.py - writes the seed corpora of the libFuzzer drivers.

Run from anywhere: python3 tests/fuzz/make_seeds.py. It (re)writes
tests/fuzz/corpus/<driver>/<name> for every seed below and leaves other files
there alone. The generated files are committed, so the fuzzers do not need
Python; rerun this after changing a seed. Binary packets are built with
struct in network byte order, as binary.h lays them out.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# ---- binary protocol -------------------------------------------------------

REQ, RES = 0x80, 0x81
OP = dict(GET=0x00, SET=0x01, ADD=0x02, REPLACE=0x03, DELETE=0x04, INCR=0x05, DECR=0x06,
          QUIT=0x07, FLUSH=0x08, GETQ=0x09, NOOP=0x0A, VERSION=0x0B, GETK=0x0C, GETKQ=0x0D,
          APPEND=0x0E, PREPEND=0x0F, STAT=0x10, SETQ=0x11, ADDQ=0x12, REPLACEQ=0x13,
          DELETEQ=0x14, INCRQ=0x15, DECRQ=0x16, QUITQ=0x17, FLUSHQ=0x18, APPENDQ=0x19,
          PREPENDQ=0x1A, VERBOSITY=0x1B, TOUCH=0x1C, GAT=0x1D, GATQ=0x1E, SASL_LIST=0x20,
          SASL_AUTH=0x21, SASL_STEP=0x22, GATK=0x23, GATKQ=0x24)


def packet(magic, opcode, key=b"", extras=b"", value=b"", status=0, opaque=0, cas=0,
           bodylen=None, keylen=None, extlen=None):
    """Header + body; the length fields can be overridden to build bad packets."""
    body = extras + key + value
    hdr = struct.pack(">BBHBBHIIQ", magic, opcode,
                      len(key) if keylen is None else keylen,
                      len(extras) if extlen is None else extlen, 0, status,
                      len(body) if bodylen is None else bodylen, opaque, cas)
    return hdr + body


def req(op, key=b"", extras=b"", value=b"", **kw):
    return packet(REQ, OP[op], key, extras, value, **kw)


def res(op, key=b"", extras=b"", value=b"", **kw):
    return packet(RES, OP[op], key, extras, value, **kw)


def store_ex(flags, exptime):
    return struct.pack(">II", flags, exptime)


def arith_ex(delta, initial, exptime):
    return struct.pack(">QQI", delta, initial, exptime)


def u32(v):
    return struct.pack(">I", v)


BINARY_REQUESTS = {
    "get": req("GET", b"foo", opaque=1),
    "getq_getk_noop": req("GETQ", b"a", opaque=2) + req("GETK", b"b", opaque=3) + req("NOOP"),
    "getkq": req("GETKQ", b"key", opaque=0xDEADBEEF),
    "set": req("SET", b"foo", store_ex(5, 0), b"bar", opaque=7),
    "set_cas": req("SET", b"foo", store_ex(0, 0), b"v", cas=1),
    "setq_exptime": req("SETQ", b"k", store_ex(0xFFFFFFFF, 100), b"value"),
    "set_empty_value": req("SET", b"e", store_ex(0, 0)),
    "add": req("ADD", b"foo", store_ex(0, 0), b"x"),
    "addq_replaceq": req("ADDQ", b"a", store_ex(1, 2), b"1") + req("REPLACEQ", b"a",
                                                                    store_ex(3, 4), b"2"),
    "replace": req("REPLACE", b"foo", store_ex(0, 0), b"y"),
    "append_prepend": req("APPEND", b"foo", value=b"tail") + req("PREPEND", b"foo",
                                                                 value=b"head"),
    "appendq_prependq": req("APPENDQ", b"foo", value=b"t") + req("PREPENDQ", b"foo", value=b"h"),
    "delete": req("DELETE", b"foo"),
    "delete_cas": req("DELETEQ", b"foo", cas=12345),
    "incr": req("INCR", b"n", arith_ex(1, 10, 0)),
    "incr_nocreate": req("INCR", b"n", arith_ex(1, 0, 0xFFFFFFFF)),
    "decr_wrap": req("DECRQ", b"n", arith_ex(0xFFFFFFFFFFFFFFFF, 5, 100)),
    "incrq_cas": req("INCRQ", b"n", arith_ex(2, 0, 0), cas=3),
    "quit": req("QUIT"),
    "quitq": req("QUITQ"),
    "flush": req("FLUSH"),
    "flush_delay": req("FLUSHQ", extras=u32(10)),
    "noop": req("NOOP", opaque=0x01020304),
    "version": req("VERSION"),
    "stat": req("STAT"),
    "stat_items": req("STAT", b"items"),
    "stat_detail": req("STAT", b"detail on"),
    "touch": req("TOUCH", b"foo", u32(100)),
    "touch_surplus": req("TOUCH", b"foo", u32(1), b"surplus", ),
    "gat": req("GAT", b"foo", u32(0)),
    "gatq_gatk_gatkq": req("GATQ", b"a", u32(5)) + req("GATK", b"b", u32(5)) + req(
        "GATKQ", b"c", u32(5)),
    "verbosity": req("VERBOSITY", extras=u32(1)),
    "sasl_list": req("SASL_LIST"),
    "sasl_auth": req("SASL_AUTH", b"PLAIN", value=b"\0user\0pass"),
    "sasl_step": req("SASL_STEP", b"PLAIN", value=b"x"),
    "unknown_opcode": packet(REQ, 0x30, b"", b"", b"abcd"),
    "bad_magic": packet(0x42, 0, b"foo"),
    "keylen_over_body": req("GET", b"foo", bodylen=1),
    "key_too_long": req("GET", b"k" * 251),
    "key_250": req("GET", b"k" * 250),
    "bad_extlen": req("GET", b"foo", extras=b"\0\0\0\0"),
    "set_no_extras": req("SET", b"foo", value=b"bar"),
    "incr_bad_body": req("INCR", b"n", arith_ex(1, 1, 1), value=b"!"),
    "huge_bodylen": req("SET", b"k", store_ex(0, 0), bodylen=0x7FFFFFF0),
    "huge_swallow": packet(REQ, 0x40, b"", b"", b"", bodylen=0x80000001),
    "partial_header": req("GET", b"foo")[:20],
    "partial_key": req("GET", b"foobar")[:27],
    "pipeline_mixed": (req("SET", b"a", store_ex(0, 0), b"1") + req("INCR", b"a",
                                                                   arith_ex(5, 0, 0)) +
                       req("GETK", b"a") + req("APPEND", b"a", value=b"0") +
                       req("DECR", b"a", arith_ex(100, 0, 0)) + req("DELETE", b"a") +
                       req("GET", b"a") + req("FLUSH") + req("NOOP")),
    "pipeline_classes": b"".join(
        req("SETQ", b"k%d" % i, store_ex(i, 0), b"v" * (40 * i)) for i in range(1, 9)) + b"".join(
        req("GETKQ", b"k%d" % i) for i in range(1, 9)) + req("NOOP"),
    "pipeline_big": (req("SET", b"big", store_ex(0, 0), bodylen=8 + 3 + 700000)),
    "pipeline_expiry": (req("SET", b"t", store_ex(0, 1), b"x") + req("NOOP") + req("NOOP") +
                        req("GET", b"t") + req("TOUCH", b"t", u32(0xFFFFFFFF))),
    "error_then_more": packet(REQ, 0x1F, b"", b"", b"zz") + req("GET", b"after"),
}

BINARY_RESPONSES = {
    "res_get_hit": res("GET", extras=u32(5), value=b"bar", cas=9),
    "res_getk_hit": res("GETK", b"foo", u32(0), b"value", opaque=3),
    "res_getk_miss": res("GETK", b"foo", status=1),
    "res_not_found": res("GET", value=b"Not found", status=1),
    "res_set_ok": res("SET", cas=42),
    "res_incr": res("INCR", value=struct.pack(">Q", 11), cas=5),
    "res_decrq": res("DECRQ", value=struct.pack(">Q", 0)),
    "res_stat_stream": res("STAT", b"pid", value=b"123") + res("STAT", b"uptime",
                                                               value=b"9") + res("STAT"),
    "res_version": res("VERSION", value=b"1.6.18"),
    "res_error": res("SET", value=b"Too large.", status=3),
    "res_touch": res("TOUCH", extras=u32(7)),
    "res_bad_lengths": res("GET", b"k", u32(0), bodylen=2),
    "res_partial": res("GET", extras=u32(0), value=b"0123456789")[:30],
    "res_noop_pipeline": res("GETKQ", b"a", u32(1), b"x") + res("NOOP"),
}

# ---- text and meta protocols ----------------------------------------------

LONG_KEY = b"k" * 250
TOO_LONG_KEY = b"k" * 251

TEXT = {
    "get": b"get foo\r\n",
    "get_multi": b"get a b c d e f\r\n",
    "gets": b"gets foo bar\r\n",
    "bget": b"bget foo\r\n",
    "gat": b"gat 100 foo bar\r\n",
    "gats_negative": b"gats -1 foo\r\n",
    "gat_no_keys": b"gat 10\r\n",
    "gat_bad_exptime": b"gat x foo\r\n",
    "get_no_key": b"get\r\n",
    "get_long_key": b"get " + LONG_KEY + b"\r\n",
    "get_too_long_key": b"get a " + TOO_LONG_KEY + b"\r\n",
    "set": b"set foo 5 100 3\r\nbar\r\n",
    "set_noreply": b"set foo 0 0 3 noreply\r\nbar\r\n",
    "set_extra_token": b"set foo 0 0 3 extra\r\nbar\r\n",
    "set_bad_chunk": b"set foo 0 0 3\r\nbarx\r\n",
    "set_negative_bytes": b"set foo 0 0 -1\r\n",
    "set_huge_bytes": b"set foo 0 0 2147483645\r\n",
    "set_big_flags": b"set foo 4294967296 0 1\r\nx\r\n",
    "set_negative_exptime": b"set foo 0 -1 1\r\nx\r\n",
    "set_absolute_exptime": b"set foo 0 1700000100 1\r\nx\r\n",
    "set_key_too_long": b"set " + TOO_LONG_KEY + b" 0 0 1\r\nx\r\n",
    "set_lf_only": b"set foo 0 0 1\nx\r\n",
    "add": b"add foo 0 0 1\r\nx\r\n",
    "replace": b"replace foo 0 0 1\r\ny\r\n",
    "append": b"append foo 0 0 2\r\nzz\r\n",
    "prepend": b"prepend foo 0 0 2\r\naa\r\n",
    "cas": b"cas foo 0 0 3 12345\r\nbar\r\n",
    "cas_noreply": b"cas foo 0 0 3 1 noreply\r\nbar\r\n",
    "cas_bad": b"cas foo 0 0 3 -5\r\nbar\r\n",
    "delete": b"delete foo\r\n",
    "delete_hold": b"delete foo 0\r\n",
    "delete_noreply": b"delete foo noreply\r\n",
    "delete_hold_noreply": b"delete foo 0 noreply\r\n",
    "delete_bad": b"delete foo 1\r\n",
    "incr": b"incr n 5\r\n",
    "incr_noreply_bad": b"incr n abc noreply\r\n",
    "decr_max": b"decr n 18446744073709551615\r\n",
    "incr_overflow": b"incr n 18446744073709551616\r\n",
    "touch": b"touch foo 100\r\n",
    "touch_bad": b"touch foo x\r\n",
    "stats": b"stats\r\n",
    "stats_sub": b"stats items\r\nstats slabs\r\nstats settings\r\nstats detail on\r\n",
    "flush_all": b"flush_all\r\n",
    "flush_all_delay": b"flush_all 10\r\n",
    "flush_all_noreply": b"flush_all noreply\r\n",
    "flush_all_bad": b"flush_all noreply 5\r\n",
    "flush_all_negative": b"flush_all -1\r\n",
    "version": b"version\r\n",
    "verbosity": b"verbosity 1\r\nverbosity x\r\n",
    "quit": b"quit\r\n",
    "shutdown": b"shutdown\r\nshutdown graceful\r\nshutdown now\r\n",
    "cache_memlimit": b"cache_memlimit 8\r\ncache_memlimit 7\r\ncache_memlimit x\r\n",
    "unserved": b"lru_crawler metadump all\r\nwatch\r\nslabs reassign 1 2\r\n",
    "unknown": b"GET foo\r\n",
    "http_probe": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "empty_lines": b"\r\n\n\r\r\n",
    "nul_in_line": b"get foo\x00bar\r\n",
    "leading_spaces": b"     get   foo    bar   \r\n",
    "tabs": b"get\tfoo\r\n",
    "many_tokens": b"get " + b" ".join(b"k%d" % i for i in range(40)) + b"\r\n",
    "many_tokens_set": b"set " + b" ".join(b"%d" % i for i in range(30)) + b"\r\n",
    "long_line": b"x" * 2100,
    "long_multiget": b"get " + b"k " * 1100,
    "long_line_spaces": b" " * 101 + b"get " + b"k" * 2000,
    "partial_line": b"get fo",
    "mixed_pipeline": (b"set a 0 0 1\r\n1\r\nincr a 9\r\nget a\r\nappend a 0 0 1\r\n0\r\n"
                       b"decr a 200\r\ngets a\r\ntouch a 10\r\ndelete a\r\nget a\r\n"),
}

META = {
    "mg": b"mg foo v\r\n",
    "mg_all_flags": b"mg foo s f t c l h k O123 q u v\r\n",
    "mg_base64": b"mg Zm9v b v k\r\n",
    "mg_base64_bad": b"mg Zm9 b v\r\n",
    "mg_vivify": b"mg foo N30 T10 R5 v c t\r\n",
    "mg_opaque_long": b"mg foo O" + b"x" * 40 + b" v\r\n",
    "mg_no_key": b"mg\r\n",
    "mg_key_too_long": b"mg " + TOO_LONG_KEY + b" v\r\n",
    "mg_too_many_flags": b"mg foo " + b" ".join(b"O%d" % i for i in range(20)) + b"\r\n",
    "mg_duplicate": b"mg foo v v\r\n",
    "mg_invalid_flag": b"mg foo !\r\n",
    "mg_high_byte_flag": b"mg foo \xff\r\n",
    "ms": b"ms foo 3\r\nbar\r\n",
    "ms_flags": b"ms foo 3 T100 F5 c k O9 b\r\nbar\r\n",
    "ms_base64": b"ms Zm9vYmFy 2 b\r\nhi\r\n",
    "ms_modes": (b"ms foo 1 ME\r\na\r\nms foo 1 MR\r\nb\r\nms foo 1 MA\r\nc\r\n"
                 b"ms foo 1 MP\r\nd\r\nms foo 1 MS\r\ne\r\nms foo 1 MX\r\nf\r\n"),
    "ms_cas_invalidate": b"ms foo 1 C1 I\r\nx\r\nms foo 1 C999 I q\r\ny\r\n",
    "ms_bad_datalen": b"ms foo x\r\nms foo -1\r\nms foo\r\n",
    "ms_bad_chunk": b"ms foo 3\r\nbarx\r\n",
    "ms_huge": b"ms foo 2147483645\r\n",
    "ms_m_length": b"ms foo 1 MSS\r\nx\r\n",
    "md": b"md foo\r\n",
    "md_flags": b"md foo q I T30 C99 k O1\r\n",
    "md_bad_flag": b"md foo v v\r\n",
    "ma": b"ma n\r\n",
    "ma_create": b"ma n N0 J10 D5 MI v t c\r\n",
    "ma_decr": b"ma n MD D3 v\r\nma n M- q\r\nma n M+ k\r\n",
    "ma_bad": b"ma n Dx\r\nma n Jx\r\nma n MZ\r\nma n O" + b"y" * 40 + b"\r\n",
    "me": b"me foo\r\n",
    "me_base64": b"me Zm9v b\r\nme Zm9 b\r\nme foo x\r\n",
    "mn": b"mn\r\nmn anything\r\n",
    "mx_unknown": b"mx foo\r\nmgg foo\r\n",
    "meta_pipeline": (b"ms k 2 T0 F3\r\nhi\r\nmg k v f t c s\r\nma c N0 J5\r\nma c D2 v\r\n"
                      b"md k I T5\r\nmg k v c\r\nmg k\r\nmd k q\r\nmg k q\r\nmn\r\n"),
}

SERVER_TEXT = {
    "store_get": b"set a 1 0 3\r\nabc\r\nget a\r\ngets a\r\n",
    "classes": b"".join(b"set k%d 0 0 %d\r\n%s\r\n" % (i, 60 * i, b"v" * (60 * i))
                        for i in range(1, 7)) + b"get k1 k2 k3 k4 k5 k6\r\n",
    "expiry": b"set t 0 2 1\r\nx\r\nget t\r\nget t\r\nget t\r\ntouch t 1\r\nget t\r\n",
    "flush_delayed": (b"set a 0 0 1\r\n1\r\nflush_all 2\r\nget a\r\nget a\r\n"
                      b"set a 0 0 1\r\n2\r\nget a\r\n"),
    "cas_cycle": b"set c 0 0 1\r\nx\r\ngets c\r\ncas c 0 0 1 1\r\ny\r\ncas c 0 0 1 2\r\nz\r\n",
    "arith": (b"set n 0 0 2\r\n10\r\nincr n 5\r\nget n\r\ndecr n 100\r\n"
              b"incr n 18446744073709551615\r\n"),
    "arith_hold": b"set n 0 0 3\r\n100\r\nget n\r\nincr n 1\r\nget n\r\ndecr n 50\r\n",
    "append_hold": (b"set a 0 0 1\r\nx\r\nget a\r\nappend a 0 0 2\r\nyz\r\n"
                    b"prepend a 0 0 1\r\nw\r\nget a\r\n"),
    "big_refused": b"set big 0 0 2000000\r\nget big\r\n",
    "big_alloc": b"set big 0 0 1000000\r\n",
    # Blocks of 4 KiB or more missing from the input are synthesised by fuzz_server.
    "big_evict": b"".join(b"set b%d 0 0 600000\r\nget b%d\r\n" % (i, i) for i in range(4)) +
    b"get b0 b1 b2 b3\r\n",
    "big_steal": (b"set s1 0 0 1\r\nx\r\nset s2 0 0 200\r\n" + b"y" * 200 + b"\r\n"
                  b"set big 0 0 900000\r\nget s1 s2 big\r\nset s3 0 0 2000\r\n"
                  b"ms m 300000 T0\r\nmg m v\r\n"),
    "big_append": (b"set a 0 0 700000\r\nappend a 0 0 400000\r\nprepend a 0 0 5000\r\n"
                   b"get a\r\n"),
    "big_memlimit": (b"cache_memlimit 9\r\nset a 0 0 900000\r\nset b 0 0 900000\r\n"
                     b"set c 0 0 900000\r\nflush_all\r\nset d 0 0 900000\r\nstats\r\n"),
    "memlimit": b"cache_memlimit 8\r\nset a 0 0 1\r\n1\r\nstats\r\n",
    "meta_mix": META["meta_pipeline"],
    "meta_recache": (b"ms r 1 T3\r\nx\r\nmg r R10 v c\r\nmg r R10 v\r\nmd r I\r\nmg r v\r\n"
                     b"ms r 1 C1 I\r\ny\r\nme r\r\n"),
    "meta_b64": b"ms Zm9vYmFy 2 b\r\nhi\r\nmg Zm9vYmFy b k v\r\nme Zm9vYmFy b\r\n",
}

REPLIES = {
    "value": b"VALUE foo 0 3\r\nbar\r\nEND\r\n",
    "value_cas": b"VALUE foo 5 3 12345\r\nbar\r\nVALUE b 0 0 9\r\n\r\nEND\r\n",
    "value_binary": b"VALUE k 1 4\r\n\r\n\x00\xff\r\nEND\r\n",
    "value_bad_bytes": b"VALUE foo 0 x\r\nbar\r\n",
    "value_bad_tail": b"VALUE foo 0 3\r\nbarx\r\n",
    "value_extra": b"VALUE foo 0 3 1 2\r\nbar\r\n",
    "value_partial": b"VALUE foo 0 10\r\nabc",
    "simple": b"STORED\r\nNOT_STORED\r\nEXISTS\r\nNOT_FOUND\r\nDELETED\r\nTOUCHED\r\nOK\r\nEND\r\n",
    "number": b"12345\r\n18446744073709551615\r\n18446744073709551616\r\n",
    "version": b"VERSION 1.6.18\r\n",
    "stats": b"STAT pid 123\r\nSTAT version 1.6.18\r\nSTAT empty \r\nSTAT \r\nEND\r\n",
    "errors": (b"ERROR\r\nERROR unknown\r\nCLIENT_ERROR bad data chunk\r\n"
               b"SERVER_ERROR out of memory\r\n"),
    "error_bare": b"CLIENT_ERROR\r\nSERVER_ERROR\r\n",
    "no_cr": b"STORED\n",
    "garbage": b"HELLO\r\n",
    "meta_hd": b"HD\r\nHD c42 t-1 kfoo Oabc b W X Z\r\n",
    "meta_va": b"VA 3 f5 s3 c9 t100\r\nbar\r\nEN\r\n",
    "meta_codes": b"EN kfoo\r\nNF O1\r\nNS\r\nEX c0\r\nMN\r\n",
    "meta_bad": b"HD c-1\r\nVA x\r\nHD fz\r\nHDX\r\nVA 5 t\r\nabcde\r\n",
    "meta_va_partial": b"VA 10 f1\r\nabc",
    "lines": b"key=a exp=-1 la=1 cas=2 fetch=no cls=1 size=60\n\r\nEND\r\n",
    "long_line": b"STAT x " + b"y" * 8200,
}

# fuzz_reply also composes the replies to meta requests and parses them back.
REPLY_REQUESTS = {
    "req_meta_mg": META["mg_all_flags"] + META["mg_base64"] + META["mg_vivify"],
    "req_meta_pipeline": META["meta_pipeline"],
    "req_meta_ms": META["ms_flags"] + META["ms_base64"],
    "req_meta_ma_md": META["ma_create"] + META["md_flags"] + META["ma_decr"],
}

DRIVERS = {
    "fuzz_text": {**TEXT, **{"meta_" + k: v for k, v in META.items() if k in (
        "mg_all_flags", "ms_flags", "meta_pipeline", "mn")}},
    "fuzz_meta": {**META, "text_pipeline": TEXT["mixed_pipeline"], "set": TEXT["set"]},
    "fuzz_binary": {**BINARY_REQUESTS, **BINARY_RESPONSES},
    "fuzz_server": {**SERVER_TEXT, **{"text_" + k: v for k, v in TEXT.items() if k in (
        "mixed_pipeline", "set", "add", "cas", "gat", "flush_all", "stats", "incr")},
        **{"bin_" + k: v for k, v in BINARY_REQUESTS.items() if k.startswith("pipeline") or k in (
            "set", "incr", "decr_wrap", "flush_delay", "touch", "gatq_gatk_gatkq",
            "append_prepend", "error_then_more", "huge_bodylen", "delete_cas", "stat")}},
    "fuzz_reply": {**REPLIES, **REPLY_REQUESTS, **{"bin_" + k: v for k, v in
                                                   BINARY_RESPONSES.items()}},
}


def main():
    total = 0
    for driver, seeds in DRIVERS.items():
        d = os.path.join(HERE, "corpus", driver)
        os.makedirs(d, exist_ok=True)
        for name, data in seeds.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        total += len(seeds)
        print("%-12s %3d seeds" % (driver, len(seeds)))
    print("%d seeds written under %s" % (total, os.path.join(HERE, "corpus")))


if __name__ == "__main__":
    main()

/*
 * meta.h - the memcached meta protocol codec: mg, ms, md, ma, mn, me.
 *
 * meta_parse() takes a line that text_parse() has already framed and
 * classified as TEXT_CMD_META, and turns its tokens (treq->args) into a
 * struct meta_request: command, key (base64-decoded for the b flag), the set
 * of flags and their values, and the exact error 1.6.18 answers with. The
 * composers write reply header lines ("HD ...", "VA <n> ...", "EN ...",
 * "ME ...") byte for byte as memcached 1.6.18 does, and meta_reply_skipped()
 * applies the q (quiet) rule.
 *
 * What this module is not: it never touches sockets or storage and holds no
 * state. It does not read ms data blocks (the server reads req->read_len
 * bytes after the line) and it does not decide outcomes (hit, stored, won
 * the recache token): the server does, using the rules at the end of this
 * file, and hands the facts to the composers.
 *
 * Target: Debian's memcached 1.6.18. Every error string, flag rule and reply
 * layout below was checked against that binary. Later additions behave as
 * in 1.6.18: E and md x are refused ("invalid flag"), while ms N (append
 * vivify) and mg C parse but have no effect.
 *
 * Ownership: a struct meta_request points into the buffer the text_request
 * came from (key_token, opaque, and key unless b was given) and into the
 * caller's keybuf (key when b was given). It stays valid while both stay in
 * place. Nothing is allocated; no function here writes to the request line.
 */
#ifndef MEMSTASH_PROTO_META_H
#define MEMSTASH_PROTO_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "text.h"

/* Longest key token, checked before any base64 decoding. */
#define META_KEY_MAX 250
/* Size of the buffer meta_parse() decodes a b key into (187 bytes are used at most). */
#define META_KEYBUF_SIZE 250
/* A meta line may hold at most this many tokens: command, key, [datalen,] flags. */
#define META_MAX_TOKENS 19
/* Longest O token, counting the 'O' itself. */
#define META_OPAQUE_MAX 32
/* A buffer this large holds any header line meta_compose*() writes. */
#define META_HEADER_MAX 512

enum meta_cmd {
    META_CMD_NONE = 0, /* not a meta command (only with META_ERR_ERROR) */
    META_CMD_MG,
    META_CMD_MS,
    META_CMD_MD,
    META_CMD_MA,
    META_CMD_MN,
    META_CMD_ME,
};

/*
 * Error replies. meta_parse() produces the first group; the second group is
 * what a server answers for outcomes of its own (listed here so every meta
 * error line lives in one table). meta_error_string() gives the line without
 * "\r\n". Errors are never suppressed by q.
 */
enum meta_error {
    META_ERR_NONE = 0,
    META_ERR_ERROR,                /* "ERROR" (command without a key, except me) */
    META_ERR_BAD_FORMAT,           /* "CLIENT_ERROR bad command line format" */
    META_ERR_FLAGS_TOO_LONG_MG,    /* "CLIENT_ERROR options flags are too long" (mg) */
    META_ERR_FLAGS_TOO_LONG,       /* "CLIENT_ERROR options flags too long" (ms md ma) */
    META_ERR_DUPLICATE_FLAG,       /* "CLIENT_ERROR duplicate flag" */
    META_ERR_INVALID_FLAG,         /* "CLIENT_ERROR invalid flag" */
    META_ERR_INVALID_OR_DUPLICATE, /* "CLIENT_ERROR invalid or duplicate flag" (md ma) */
    META_ERR_DECODE_KEY,           /* "CLIENT_ERROR error decoding key" */
    META_ERR_BAD_TOKEN,            /* "CLIENT_ERROR bad token in command line format" */
    META_ERR_BAD_INITIAL,          /* "CLIENT_ERROR invalid numeric initial value" */
    META_ERR_BAD_DELTA,            /* "CLIENT_ERROR invalid numeric delta value" */
    META_ERR_M_LENGTH,             /* "CLIENT_ERROR incorrect length for M token" */
    META_ERR_MS_MODE,              /* "CLIENT_ERROR invalid mode for ms M token" */
    META_ERR_MA_MODE,              /* "CLIENT_ERROR invalid mode for ma M token" */
    META_ERR_OPAQUE_TOO_LONG,      /* "CLIENT_ERROR opaque token too long" */
    /* Server-side outcomes, never set by meta_parse(). */
    META_ERR_BAD_DATA_CHUNK, /* "CLIENT_ERROR bad data chunk" */
    META_ERR_NON_NUMERIC,    /* "CLIENT_ERROR cannot increment or decrement non-numeric value" */
    META_ERR_TOO_LARGE,      /* "SERVER_ERROR object too large for cache" */
    META_ERR_OOM_STORE,      /* "SERVER_ERROR out of memory storing object" */
    META_ERR_OOM,            /* "SERVER_ERROR out of memory" (ma) */
    META_ERR_OOM_VIVIFY,     /* "SERVER_ERROR Out of memory allocating new item" (ma N) */
    META_ERR_REFCOUNT,       /* "SERVER_ERROR refcount overflow during fetch" (mg) */
};

/* Returns the reply line for e without "\r\n" ("" for META_ERR_NONE). */
const char *meta_error_string(enum meta_error e);

/* What ms does, after M and C are taken into account. */
enum meta_store_op {
    META_STORE_SET = 0, /* no M, MS */
    META_STORE_ADD,     /* ME */
    META_STORE_REPLACE, /* MR */
    META_STORE_APPEND,  /* MA */
    META_STORE_PREPEND, /* MP */
    META_STORE_CAS,     /* set or replace with C<cas> */
};

/*
 * One parsed meta request. meta_parse() zeroes it first (then sets delta to 1
 * and incr to true), so a field the line does not set is 0/NULL/false.
 *
 * Flags: 1.6.18 accepts the same flag set on mg, ms, md and ma (a flag a
 * command has no use for is accepted and ignored):
 *   no token:   b c f h I k l O P L q s t u v   (O, P and L may carry any text)
 *   with token: C<u64> D<u64> F<u32> J<u64> M<char> N<i32> R<i32> T<i32>
 * Anything else is refused; E, S, x and Z are refused too.
 */
struct meta_request {
    enum meta_cmd cmd;
    enum meta_error err; /* META_ERR_NONE when the request is valid */
    /*
     * err is META_ERR_OPAQUE_TOO_LONG on mg or ma and every other field is
     * filled in: 1.6.18 runs the command first (fetch, touch, vivify,
     * incr/decr) and then replies with the error instead of the normal reply.
     */
    bool err_after_exec;
    /*
     * ms only: the datalen token parsed, so the server must read and discard
     * read_len bytes after the line, whatever err says. When false on an ms
     * error (key too long, too many tokens, bad datalen) nothing is
     * discarded: the data line is then parsed as a command.
     */
    bool swallow;

    struct text_token key_token; /* the key as sent */
    struct text_token key;       /* the key to look up: decoded when key_binary */
    bool key_binary;             /* b was given */

    uint64_t flags; /* flags present; test with meta_has_flag() */
    /* The flag characters in request order (duplicates are refused). */
    char order[META_MAX_TOKENS];
    unsigned norder;
    struct text_token opaque; /* the whole O token including 'O'; len 0 when absent */

    int32_t ttl;           /* T: new TTL (mg ma: touch; md: with I; ms: item TTL) */
    int32_t vivify_ttl;    /* N: TTL of an item created on a miss (mg, ma) */
    int32_t recache_ttl;   /* R: mg recache threshold */
    uint32_t client_flags; /* F: ms client flags (values past 32 bits are truncated) */
    uint64_t cas;          /* C: compare CAS (ms md ma) */
    uint64_t delta;        /* D: ma delta, default 1 */
    uint64_t initial;      /* J: ma initial value for N, default 0 */
    char mode;             /* M: the mode character as sent, 0 when absent */

    enum meta_store_op store_op; /* ms */
    bool invalidate;             /* ms: I with store_op CAS (see the rules below) */
    bool incr;                   /* ma: true for incr (default, MI, M+), false for MD, M- */

    uint32_t data_len; /* ms: the datalen token */
    size_t read_len;   /* ms: data_len + 2, the bytes the server reads next */
};

/* Bit of flag character f in meta_request.flags, or -1 if f is not a letter. */
static inline int meta_flag_bit(char f)
{
    if (f >= 'A' && f <= 'Z') {
        return f - 'A';
    }
    if (f >= 'a' && f <= 'z') {
        return 26 + (f - 'a');
    }
    return -1;
}

static inline bool meta_has_flag(const struct meta_request *req, char f)
{
    int bit = meta_flag_bit(f);
    return bit >= 0 && ((req->flags >> bit) & 1u) != 0;
}

/*
 * Parses the meta line in treq, which text_parse() returned with TEXT_OK and
 * cmd TEXT_CMD_META. keybuf must hold META_KEYBUF_SIZE bytes; it receives the
 * decoded key when b is given. Returns 0 when the request is valid and -1
 * when req->err holds the error to answer with (see err_after_exec and
 * swallow for the two cases where the server has more to do).
 *
 * The checks run in 1.6.18's order. mg ms md ma: no key -> ERROR; key token
 * over 250 bytes -> bad command line format; (ms: no datalen -> bad command
 * line format;) more than 19 tokens -> options flags [are] too long; (ms:
 * datalen not an int32 in 0..INT_MAX-2 -> bad command line format;) then the
 * flags left to right: a repeated flag (or one starting with a byte >= 0x7f)
 * and an unknown flag stop at once; a bad b key, numeric token or M length
 * records its error and parsing goes on, so the last one wins (a bad F token
 * fails with the default "bad command line format" message without
 * overwriting an earlier one). md and ma replace any flag error with
 * "invalid or duplicate flag". Then ms/ma check the M mode, and last the O
 * length (ms: the mode error wins over it).
 * me: no key, key over 250, or a bad key with "b" as third token -> bad
 * command line format. mn: always valid.
 */
int meta_parse(const struct text_request *treq, char *keybuf, struct meta_request *req);

/* Return codes. */
enum meta_rc {
    META_RC_HD, /* success without value */
    META_RC_VA, /* success with value: "VA <value_len> <flags>\r\n" then data and "\r\n" */
    META_RC_EN, /* mg miss, me miss */
    META_RC_NF, /* not found (md, ma, ms with C) */
    META_RC_NS, /* not stored (ms add/replace/append/prepend) */
    META_RC_EX, /* CAS mismatch */
    META_RC_MN, /* mn */
};

/*
 * What the server knows about the item when composing a mg or ma success
 * line (HD/VA), or an ms line (only cas is read, and only for HD).
 */
struct meta_item_facts {
    uint32_t value_len;    /* VA <n> and s: value bytes without "\r\n" */
    uint32_t client_flags; /* f */
    uint64_t cas;          /* c: mg: the item's CAS; ms/ma: the CAS after the store */
    /*
     * t: remaining TTL in seconds, -1 for none, as it stood before this
     * request's T/N, after a T token, and after an N token that created the
     * item. t prints whichever is current at its place in the request.
     */
    int64_t ttl;
    int64_t ttl_after_t;
    int64_t ttl_after_n;
    uint32_t last_access; /* l: seconds since last access, before this fetch */
    bool fetched;         /* h: fetched before this request */
    bool created;         /* the item was created by N in this request */
    bool stale;           /* mg: X */
    bool token_sent;      /* mg: Z (a recache token was handed out before this request) */
    bool win;             /* mg: W (this request wins the recache token) */
    /*
     * mg k on a hit prints the stored key, base64-encoded (with " b") when
     * the item was stored by ms with b. key == NULL means the request's key
     * and b flag.
     */
    const char *key;
    size_t nkey;
    bool key_binary;
};

/*
 * Writes the reply line for req and rc into buf (cap bytes; META_HEADER_MAX
 * always suffices) and returns its length including "\r\n", or 0 if it did
 * not fit. facts may be NULL except for mg/ma HD/VA and ms HD with c.
 *
 * The flags echoed follow the request order, then mg adds " Z", " X", " W":
 *   mg HD/VA: s f t c l h O k     mg EN: O k
 *   ms any:   O k c (c prints 0 unless rc is HD)
 *   md any:   O k
 *   ma HD/VA: c t O k             ma NF/NS/EX: O k
 *   me EN, mn MN: nothing
 * k is " k<key>", or " k<base64> b" for a b key; O is " " + the O token.
 */
size_t meta_compose(char *buf, size_t cap, const struct meta_request *req, enum meta_rc rc,
                    const struct meta_item_facts *facts);

/* What me prints about a hit. */
struct meta_me_facts {
    const char *key; /* the stored key */
    size_t nkey;
    bool key_binary;      /* stored by ms with b: printed base64 (without " b") */
    int64_t ttl;          /* remaining seconds, -1 for none */
    uint32_t last_access; /* seconds since last access */
    uint64_t cas;
    bool fetched;
    unsigned slab_class;
    uint64_t total_size; /* whole item size in memory */
};

/*
 * Writes "ME <key> exp=<e> la=<n> cas=<n> fetch=<yes|no> cls=<n> size=<n>\r\n".
 * 1.6.18 prints exp with its sign inverted: -1 without TTL, else minus the
 * remaining seconds (a bug fixed upstream later; kept for compatibility).
 * Returns the length, or 0 if it did not fit in cap.
 */
size_t meta_compose_me(char *buf, size_t cap, const struct meta_me_facts *facts);

/*
 * The q rule: true when the reply with code rc must not be sent. created is
 * true when ma N created the item in this request. Errors are always sent.
 *   mg: EN is hidden (HD and VA hits are sent).
 *   ms: HD is hidden (NS, EX, NF are sent).
 *   md: HD is hidden (NF, EX are sent).
 *   ma: HD and VA are hidden unless N created the item (NF, NS, EX are sent).
 *   mn, me: never hidden.
 */
bool meta_reply_skipped(const struct meta_request *req, enum meta_rc rc, bool created);

/*
 * mg, ma: which token sets the item's TTL at the end of the command: 'T', 'N'
 * or 0 for none. T applies to any item the command ends with, N only when it
 * created the item; when both apply the later one in the request wins.
 */
char meta_ttl_source(const struct meta_request *req, bool created);

/* ms: true when the read_len bytes read after the line end with "\r\n". */
bool meta_data_ok(const char *block, size_t read_len);

/*
 * Base64 as 1.6.18 does it. Decoding skips bytes outside the alphabet, needs
 * a non-zero multiple of 4 alphabet-or-'=' bytes, stops after the first block
 * holding '=' (3 or more '=' in it is an error) and refuses output over cap.
 * Returns the decoded length, 0 on error. Encoding pads with '=' and adds no
 * line breaks; it writes 4 * ((n + 2) / 3) bytes and returns that.
 */
size_t meta_base64_decode(const char *src, size_t n, char *out, size_t cap);
size_t meta_base64_encode(const unsigned char *src, size_t n, char *out);

/*
 * Semantics of 1.6.18, for the server (all verified live).
 *
 * General
 * - Keys are looked up by their decoded bytes. A b key's item is marked
 *   binary only when stored by ms with b; that mark (not the request's b)
 *   decides how mg k on a hit and me print the key.
 * - TTL tokens use the text protocol's exptime rules (<= 30 days relative,
 *   else absolute, negative = already expired).
 * - CAS values come from one global counter; any new or modified item gets a
 *   new CAS.
 *
 * mg <key> <flags>
 * - Hit: HD, or VA <len> with v. T sets the TTL (counted as a touch:
 *   touch_cmds/touch_hits/touch_misses instead of get_cmds/get_misses).
 *   h and l report the state before this fetch; then the item is bumped and
 *   marked fetched unless u is given.
 * - Miss without N: EN (+ O, k). Miss with N<ttl>: create an empty item with
 *   client flags 0 and TTL from N, and reply as a hit with W (item created
 *   => win). Its key is not marked binary, so k prints it raw.
 * - R<ttl>: win when no token was sent before, the item was not just
 *   created, it has a TTL and its remaining TTL (after an earlier T in the
 *   same request) is below the R value.
 * - After the flags: " Z" if a token was sent before this request; " X" if
 *   the item is stale, and a stale item with no token sent yet wins; " W" if
 *   this request wins, which marks "token sent" on the item. W and Z never
 *   appear together. Stale and token-sent are cleared when the item is
 *   replaced by a plain store.
 * - q hides EN only.
 *
 * ms <key> <datalen> <flags>, then datalen bytes and "\r\n"
 * - store_op: SET, ADD (ME), REPLACE (MR), APPEND (MA), PREPEND (MP); C turns
 *   SET and REPLACE into CAS; other modes answer "invalid mode for ms M
 *   token". F client flags (default 0), T TTL (default 0 = none), b key.
 * - SET: HD. ADD: HD, NS if the key exists. REPLACE/APPEND/PREPEND: NS if
 *   missing. APPEND/PREPEND with C: EX unless C equals the item's CAS. ADD
 *   ignores C. CAS: NF if missing, EX on mismatch, HD on match.
 * - invalidate (I with CAS): when C is lower than the item's CAS, store the
 *   new value anyway (HD, new CAS) but keep the old TTL, mark the item stale
 *   and keep its token-sent mark. A higher C is still EX.
 * - N is ignored (append on a miss is NS). c prints the new CAS on HD, 0
 *   otherwise. q hides HD only.
 * - The block must end in "\r\n" (meta_data_ok) else "bad data chunk"
 *   (never hidden). Too large: "object too large for cache", and a failed
 *   allocation removes the existing item with that key first.
 *
 * md <key> <flags>
 * - Missing: NF. C given and different from the item's CAS: EX.
 * - Without I: delete, HD (T is ignored).
 * - With I: keep the item, mark it stale, clear its token-sent mark, give it
 *   a new CAS, set the TTL from T if given; HD.
 * - q hides HD only. An over-long O is refused before anything is done.
 *
 * ma <key> <flags>
 * - Mode I/+ incr (default), D/- decr; D<delta> default 1. Same arithmetic
 *   as incr/decr: incr wraps at 2^64, decr stops at 0; a value that is not
 *   a decimal number answers "cannot increment or decrement non-numeric
 *   value". C given and different: EX (checked before changing anything).
 * - Missing without N: NF. Missing with N<ttl>: create the item holding J
 *   (default 0) in decimal, without applying the delta; TTL from N.
 * - Success: HD, or with v "VA <len>" then the number and "\r\n". T sets the
 *   TTL on success. t/c report the item after the operation (c = new CAS).
 * - q hides HD/VA of an existing item, not of one N created.
 *
 * me <key> [b]
 * - Only "b" as the third token means base64; other tokens are ignored.
 * - Hit: ME line (meta_compose_me), no LRU bump; miss or expired: EN.
 *   Counts in cmd_meta (no other meta command does).
 *
 * mn: "MN", whatever follows; the server flushes pending replies.
 */

#endif

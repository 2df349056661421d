/*
 * text.h - the memcached ASCII ("text") protocol codec.
 *
 * text_parse() frames one request line out of a connection's read buffer and
 * classifies it exactly as memcached 1.6.18 does: which command it is, its
 * arguments, whether the reply is suppressed (noreply), and which error line
 * (if any) the server must answer with. The composers write reply headers.
 *
 * What this module is not: it never touches sockets or storage, it does not
 * read storage data blocks (the server reads req->bytes + 2 bytes after a
 * storage line), and it does not interpret meta commands or stats
 * subcommands yet (their tokens are handed over in req->args).
 *
 * Ownership: every pointer in a struct text_request (line, key, keys, args)
 * points into the buffer given to text_parse() and stays valid only as long
 * as the caller keeps those bytes in place. The codec never writes to the
 * buffer and allocates nothing.
 */
#ifndef MEMSTASH_PROTO_TEXT_H
#define MEMSTASH_PROTO_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <stdint.h>

/* Longest key accepted by the text protocol. */
#define TEXT_KEY_MAX 250
/*
 * If more than this many bytes are buffered without a newline the connection
 * is closed, unless the data starts with "get " or "gets " (after at most
 * TEXT_LEADING_SPACE_MAX spaces): multigets may be arbitrarily long.
 */
#define TEXT_LINE_MAX 2048
/*
 * memcached lets a multiget line grow without bound; we close the connection
 * once this many bytes are buffered without a newline even then (some
 * 8,000 keys of 250 bytes, or 300,000 short ones, in one line).
 */
#define TEXT_MULTIGET_LINE_MAX (2 * 1024 * 1024)
#define TEXT_LEADING_SPACE_MAX 100

/* A span of bytes; not NUL-terminated. */
struct text_token {
    const char *p;
    size_t len;
};

/* Whether token t is exactly the string s. */
static inline bool text_token_is(const struct text_token *t, const char *s)
{
    size_t n = strlen(s);
    return t->len == n && memcmp(t->p, s, n) == 0;
}

enum text_cmd {
    TEXT_CMD_ERROR = 0, /* request rejected: see req->err */
    TEXT_CMD_GET,       /* also the legacy alias "bget" */
    TEXT_CMD_GETS,
    TEXT_CMD_GAT,
    TEXT_CMD_GATS,
    TEXT_CMD_SET,
    TEXT_CMD_ADD,
    TEXT_CMD_REPLACE,
    TEXT_CMD_APPEND,
    TEXT_CMD_PREPEND,
    TEXT_CMD_CAS,
    TEXT_CMD_DELETE,
    TEXT_CMD_INCR,
    TEXT_CMD_DECR,
    TEXT_CMD_TOUCH,
    TEXT_CMD_STATS,
    TEXT_CMD_FLUSH_ALL,
    TEXT_CMD_VERSION,
    TEXT_CMD_VERBOSITY,
    TEXT_CMD_QUIT,
    TEXT_CMD_SHUTDOWN,
    TEXT_CMD_CACHE_MEMLIMIT,
    TEXT_CMD_REFRESH_CERTS, /* TLS: reload the certificate files */
    /* A 2-letter m? command: mg ms md ma mn me; args in req->args. */
    TEXT_CMD_META,
    /* "lru_crawler <sub> [arg]"; args in req->args, checked by the server. */
    TEXT_CMD_LRU_CRAWLER,
    /* watch [fetchers|mutations|...]: the names are req->args[1..nargs). */
    TEXT_CMD_WATCH,
    TEXT_CMD_COUNT_ /* not a command: the number of values above */
};

/* The reply line for a rejected request, without "\r\n". */
enum text_error {
    TEXT_ERR_NONE = 0,
    TEXT_ERR_ERROR,      /* "ERROR" */
    TEXT_ERR_BAD_FORMAT, /* "CLIENT_ERROR bad command line format" */
    /* "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]" (two spaces) */
    TEXT_ERR_DELETE_USAGE,
    TEXT_ERR_INVALID_EXPTIME, /* "CLIENT_ERROR invalid exptime argument" */
    TEXT_ERR_INVALID_DELTA,   /* "CLIENT_ERROR invalid numeric delta argument" */
    TEXT_ERR_BAD_LINE,        /* "CLIENT_ERROR bad command line" */
    TEXT_ERR_SHUTDOWN_MODE,   /* "CLIENT_ERROR invalid shutdown mode" */
};

/* Returns the reply line for e without "\r\n" ("" for TEXT_ERR_NONE). */
const char *text_error_string(enum text_error e);

#define TEXT_MAX_TOKENS 24

/*
 * One parsed request line. text_parse() zeroes the whole struct first, so a
 * field a command does not use is 0/NULL/false.
 */
struct text_request {
    enum text_cmd cmd;
    enum text_error err; /* set when cmd == TEXT_CMD_ERROR */
    /*
     * When cmd == TEXT_CMD_ERROR: the command the line named if it was
     * recognised (e.g. TEXT_CMD_FLUSH_ALL, which memcached counts in cmd_flush
     * even when the delay is bad), else TEXT_CMD_ERROR.
     */
    enum text_cmd err_cmd;
    /*
     * The reply (even an error reply) must be suppressed. It can be true when
     * cmd == TEXT_CMD_ERROR: "incr k abc noreply" is silent.
     */
    bool noreply;
    /*
     * The command line without its "\r\n" or "\n", cut at its first NUL byte
     * as memcached does (for -vv logs).
     */
    const char *line;
    size_t line_len;
    struct text_token key; /* storage, delete, incr/decr, touch: the key */
    uint32_t flags;        /* storage */
    int32_t exptime;       /* storage, touch, gat/gats; flush_all delay (0 if none) */
    uint32_t bytes;        /* storage: data block length, without the trailing \r\n */
    uint64_t cas;          /* cas */
    uint64_t delta;        /* incr/decr delta; verbosity level; cache_memlimit megabytes */
    bool graceful;         /* shutdown graceful */
    /*
     * get/gets/gat/gats: the span that holds all keys (it may start with
     * spaces and be empty for "gat <exptime>"); iterate with
     * text_next_token(). Every key has been checked to be at most
     * TEXT_KEY_MAX bytes long, and nkeys counts them.
     */
    const char *keys;
    size_t keys_len;
    uint32_t nkeys;
    /*
     * All tokens of the line including the command, as memcached's tokenizer
     * sees them: at most TEXT_MAX_TOKENS - 1. args_more is true when the line
     * holds further tokens after args[nargs - 1]. Entries from args[nargs] on
     * are not cleared and must not be read.
     */
    unsigned nargs;
    bool args_more;
    struct text_token args[TEXT_MAX_TOKENS];
};

enum text_status {
    /* One line consumed (*consumed bytes incl. the newline); req filled (maybe cmd == ERROR). */
    TEXT_OK,
    /* No newline yet: read more and call again with the whole buffered data. */
    TEXT_NEED_MORE,
    /* The connection must be closed without reply (over-long line, HTTP probe). */
    TEXT_CLOSE,
};

/*
 * Parses the first line of buf[0..len). On TEXT_OK, *consumed is the length
 * of the line including its newline and req describes it. On TEXT_NEED_MORE
 * *consumed is 0 and req is untouched. On TEXT_CLOSE *consumed is the length
 * of the offending line if there was a whole one (an HTTP request line), else
 * 0; req is filled only in the former case (cmd == TEXT_CMD_ERROR).
 *
 * Shutdown note: memcached checks whether shutdown is enabled (-A) before
 * looking at the mode, so a server without -A answers a line that came back
 * as TEXT_ERR_SHUTDOWN_MODE with "ERROR: shutdown not enabled" as well.
 */
enum text_status text_parse(const char *buf, size_t len, struct text_request *req,
                            size_t *consumed);

/*
 * Iterates space-separated tokens of [*p, end): skips spaces, stores the next
 * token in *tok, advances *p past it and returns true; returns false at the
 * end. Only ' ' separates tokens; tabs and other bytes belong to tokens.
 */
bool text_next_token(const char **p, const char *end, struct text_token *tok);

/*
 * Composers write into buf, return the bytes written and add no terminator.
 *
 * text_compose_value writes "VALUE <key> <flags> <bytes>[ <cas>]\r\n"; buf
 * must hold TEXT_VALUE_HEADER_MAX bytes and nkey must be <= TEXT_KEY_MAX.
 */
size_t text_compose_value(char *buf, const char *key, size_t nkey, uint32_t flags, size_t nbytes,
                          bool with_cas, uint64_t cas);
#define TEXT_VALUE_HEADER_MAX (6 + 250 + 1 + 10 + 1 + 20 + 1 + 20 + 2)

/*
 * "STAT <name> <v>\r\n". They return 0 and write nothing when the line does
 * not fit in cap bytes.
 */
size_t text_compose_stat_u64(char *buf, size_t cap, const char *name, uint64_t v);
size_t text_compose_stat_str(char *buf, size_t cap, const char *name, const char *v);

#endif

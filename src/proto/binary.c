/*
 * binary.c - memcached binary protocol codec (see binary.h).
 *
 * The validation order and the per-opcode length rules follow memcached
 * 1.6.18's try_read_command_binary() and dispatch_bin_command(); every rule
 * was checked against the 1.6.18 binary and is pinned by
 * tests/unit/proto/test_binary.c. Integers are read and written byte by byte,
 * so nothing here depends on the host's byte order or alignment.
 */
#include "binary.h"

#include <string.h>

#include "numparse.h"

static uint16_t get16(const unsigned char *p)
{
    return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get64(const unsigned char *p)
{
    return (uint64_t)get32(p) << 32 | get32(p + 4);
}

static void put16(char *out, uint16_t v)
{
    unsigned char *p = (unsigned char *)out;
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static void put32(char *out, uint32_t v)
{
    unsigned char *p = (unsigned char *)out;
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static void put64(char *out, uint64_t v)
{
    put32(out, (uint32_t)(v >> 32));
    put32(out + 4, (uint32_t)v);
}

const char *bin_status_text(uint16_t status)
{
    switch (status) {
    case BIN_STATUS_OK:
    case BIN_STATUS_AUTH_CONTINUE:
        return "";
    case BIN_STATUS_KEY_ENOENT:
        return "Not found";
    case BIN_STATUS_KEY_EEXISTS:
        return "Data exists for key.";
    case BIN_STATUS_E2BIG:
        return "Too large.";
    case BIN_STATUS_EINVAL:
        return "Invalid arguments";
    case BIN_STATUS_NOT_STORED:
        return "Not stored.";
    case BIN_STATUS_DELTA_BADVAL:
        return "Non-numeric server-side value for incr or decr";
    case BIN_STATUS_AUTH_ERROR:
        return "Auth failure.";
    case BIN_STATUS_UNKNOWN_COMMAND:
        return "Unknown command";
    case BIN_STATUS_ENOMEM:
        return "Out of memory";
    }
    return NULL;
}

const char *bin_opcode_name(uint8_t opcode)
{
    switch (opcode) {
    case BIN_OP_GET:
        return "Get";
    case BIN_OP_SET:
        return "Set";
    case BIN_OP_ADD:
        return "Add";
    case BIN_OP_REPLACE:
        return "Replace";
    case BIN_OP_DELETE:
        return "Delete";
    case BIN_OP_INCREMENT:
        return "Increment";
    case BIN_OP_DECREMENT:
        return "Decrement";
    case BIN_OP_QUIT:
        return "Quit";
    case BIN_OP_FLUSH:
        return "Flush";
    case BIN_OP_GETQ:
        return "GetQ";
    case BIN_OP_NOOP:
        return "No-op";
    case BIN_OP_VERSION:
        return "Version";
    case BIN_OP_GETK:
        return "GetK";
    case BIN_OP_GETKQ:
        return "GetKQ";
    case BIN_OP_APPEND:
        return "Append";
    case BIN_OP_PREPEND:
        return "Prepend";
    case BIN_OP_STAT:
        return "Stat";
    case BIN_OP_SETQ:
        return "SetQ";
    case BIN_OP_ADDQ:
        return "AddQ";
    case BIN_OP_REPLACEQ:
        return "ReplaceQ";
    case BIN_OP_DELETEQ:
        return "DeleteQ";
    case BIN_OP_INCREMENTQ:
        return "IncrementQ";
    case BIN_OP_DECREMENTQ:
        return "DecrementQ";
    case BIN_OP_QUITQ:
        return "QuitQ";
    case BIN_OP_FLUSHQ:
        return "FlushQ";
    case BIN_OP_APPENDQ:
        return "AppendQ";
    case BIN_OP_PREPENDQ:
        return "PrependQ";
    case BIN_OP_VERBOSITY:
        return "Verbosity";
    case BIN_OP_TOUCH:
        return "Touch";
    case BIN_OP_GAT:
        return "GAT";
    case BIN_OP_GATQ:
        return "GATQ";
    case BIN_OP_SASL_LIST_MECHS:
        return "SASL list mechs";
    case BIN_OP_SASL_AUTH:
        return "SASL Auth";
    case BIN_OP_SASL_STEP:
        return "SASL Step";
    case BIN_OP_GATK:
        return "GATK";
    case BIN_OP_GATKQ:
        return "GATKQ";
    }
    return NULL;
}

uint8_t bin_opcode_base(uint8_t opcode)
{
    switch (opcode) {
    case BIN_OP_GETQ:
        return BIN_OP_GET;
    case BIN_OP_GETKQ:
        return BIN_OP_GETK;
    case BIN_OP_SETQ:
        return BIN_OP_SET;
    case BIN_OP_ADDQ:
        return BIN_OP_ADD;
    case BIN_OP_REPLACEQ:
        return BIN_OP_REPLACE;
    case BIN_OP_DELETEQ:
        return BIN_OP_DELETE;
    case BIN_OP_INCREMENTQ:
        return BIN_OP_INCREMENT;
    case BIN_OP_DECREMENTQ:
        return BIN_OP_DECREMENT;
    case BIN_OP_QUITQ:
        return BIN_OP_QUIT;
    case BIN_OP_FLUSHQ:
        return BIN_OP_FLUSH;
    case BIN_OP_APPENDQ:
        return BIN_OP_APPEND;
    case BIN_OP_PREPENDQ:
        return BIN_OP_PREPEND;
    case BIN_OP_GATQ:
        return BIN_OP_GAT;
    case BIN_OP_GATKQ:
        return BIN_OP_GATK;
    }
    return opcode;
}

bool bin_opcode_is_quiet(uint8_t opcode)
{
    return bin_opcode_base(opcode) != opcode;
}

void bin_header_decode(const char *buf, struct bin_header *h)
{
    const unsigned char *p = (const unsigned char *)buf;
    h->magic = p[0];
    h->opcode = p[1];
    h->keylen = get16(p + 2);
    h->extlen = p[4];
    h->datatype = p[5];
    h->status = get16(p + 6);
    h->bodylen = get32(p + 8);
    h->opaque = get32(p + 12);
    h->cas = get64(p + 16);
}

void bin_header_encode(char *buf, const struct bin_header *h)
{
    buf[0] = (char)h->magic;
    buf[1] = (char)h->opcode;
    put16(buf + 2, h->keylen);
    buf[4] = (char)h->extlen;
    buf[5] = (char)h->datatype;
    put16(buf + 6, h->status);
    put32(buf + 8, h->bodylen);
    /*
     * memcached copies the opaque as raw bytes; writing it big-endian from
     * the big-endian decoded value gives the same bytes back.
     */
    put32(buf + 12, h->opaque);
    put64(buf + 16, h->cas);
}

uint32_t bin_swallow_len(uint32_t n)
{
    return n > INT32_MAX ? 0 : n;
}

/*
 * Checks the length rules of dispatch_bin_command() for a request whose
 * opcode has been mapped to its base. Returns true when they hold; the
 * opcode must be one memcached knows (see bin_parse_request()).
 */
static bool bin_lengths_ok(uint8_t cmd, uint8_t extlen, uint16_t keylen, uint32_t bodylen)
{
    switch (cmd) {
    case BIN_OP_VERSION:
    case BIN_OP_NOOP:
    case BIN_OP_QUIT:
    case BIN_OP_SASL_LIST_MECHS:
        return extlen == 0 && keylen == 0 && bodylen == 0;
    case BIN_OP_FLUSH:
        return keylen == 0 && bodylen == extlen && (extlen == 0 || extlen == 4);
    case BIN_OP_SET:
    case BIN_OP_ADD:
    case BIN_OP_REPLACE:
        return extlen == 8 && keylen != 0 && bodylen >= (uint32_t)keylen + 8;
    case BIN_OP_GET:
    case BIN_OP_GETK:
    case BIN_OP_DELETE:
        return extlen == 0 && keylen != 0 && bodylen == keylen;
    case BIN_OP_INCREMENT:
    case BIN_OP_DECREMENT:
        return extlen == 20 && keylen != 0 && bodylen == (uint32_t)keylen + 20;
    case BIN_OP_APPEND:
    case BIN_OP_PREPEND:
    case BIN_OP_SASL_AUTH:
    case BIN_OP_SASL_STEP:
        return extlen == 0 && keylen != 0;
    case BIN_OP_STAT:
        return extlen == 0;
    case BIN_OP_TOUCH:
    case BIN_OP_GAT:
    case BIN_OP_GATK:
        /* memcached does not look at bodylen here; see value_len in binary.h. */
        return extlen == 4 && keylen != 0;
    }
    return false;
}

static bool bin_opcode_known(uint8_t cmd)
{
    switch (cmd) {
    case BIN_OP_GET:
    case BIN_OP_SET:
    case BIN_OP_ADD:
    case BIN_OP_REPLACE:
    case BIN_OP_DELETE:
    case BIN_OP_INCREMENT:
    case BIN_OP_DECREMENT:
    case BIN_OP_QUIT:
    case BIN_OP_FLUSH:
    case BIN_OP_NOOP:
    case BIN_OP_VERSION:
    case BIN_OP_GETK:
    case BIN_OP_APPEND:
    case BIN_OP_PREPEND:
    case BIN_OP_STAT:
    case BIN_OP_TOUCH:
    case BIN_OP_GAT:
    case BIN_OP_GATK:
    case BIN_OP_SASL_LIST_MECHS:
    case BIN_OP_SASL_AUTH:
    case BIN_OP_SASL_STEP:
        return true;
    }
    return false;
}

static enum bin_result bin_reject(struct bin_request *req, uint16_t status, bool close,
                                  uint32_t swallow)
{
    req->err_status = status;
    req->err_close = close;
    req->err_swallow = close ? 0 : bin_swallow_len(swallow);
    req->value_len = 0;
    return BIN_ERROR;
}

/* Decodes the extras of a request whose lengths have been validated. */
static void bin_decode_extras(struct bin_request *req)
{
    const unsigned char *e = (const unsigned char *)req->extras.p;
    switch (req->cmd) {
    case BIN_OP_SET:
    case BIN_OP_ADD:
    case BIN_OP_REPLACE:
        req->flags = get32(e);
        req->exptime = get32(e + 4);
        break;
    case BIN_OP_INCREMENT:
    case BIN_OP_DECREMENT:
        req->delta = get64(e);
        req->initial = get64(e + 8);
        req->exptime = get32(e + 16);
        break;
    case BIN_OP_TOUCH:
    case BIN_OP_GAT:
    case BIN_OP_GATK:
        req->exptime = get32(e);
        break;
    case BIN_OP_FLUSH:
        if (req->extras.len == 4) {
            req->exptime = get32(e);
        }
        break;
    }
}

enum bin_result bin_parse_request(const char *buf, size_t len, struct bin_request *req,
                                  size_t *consumed)
{
    *consumed = 0;
    if (len < BIN_HEADER_LEN) {
        return BIN_NEED_MORE;
    }
    struct bin_header h;
    bin_header_decode(buf, &h);
    if (h.magic != BIN_MAGIC_REQ) {
        return BIN_CLOSE;
    }
    size_t prefix = BIN_HEADER_LEN + (size_t)h.extlen + h.keylen;
    if (prefix > BIN_REQ_PREFIX_MAX) {
        /* memcached's read buffer fills up before the key is complete. */
        return len >= BIN_REQ_PREFIX_MAX ? BIN_CLOSE : BIN_NEED_MORE;
    }
    if (len < prefix) {
        return BIN_NEED_MORE;
    }

    memset(req, 0, sizeof(*req));
    req->hdr = h;
    req->cmd = bin_opcode_base(h.opcode);
    req->quiet = req->cmd != h.opcode;
    req->return_key = req->cmd == BIN_OP_GETK || req->cmd == BIN_OP_GATK;
    req->extras.p = buf + BIN_HEADER_LEN;
    req->extras.len = h.extlen;
    req->key.p = buf + BIN_HEADER_LEN + h.extlen;
    req->key.len = h.keylen;
    *consumed = prefix;

    if (h.keylen > h.bodylen || (uint32_t)h.keylen + h.extlen > h.bodylen) {
        return bin_reject(req, BIN_STATUS_UNKNOWN_COMMAND, true, 0);
    }
    if (h.keylen > BIN_KEY_MAX) {
        return bin_reject(req, BIN_STATUS_EINVAL, true, 0);
    }
    if (!bin_opcode_known(req->cmd)) {
        if (req->cmd == BIN_OP_VERBOSITY && h.extlen == 4) {
            req->verbosity = get32((const unsigned char *)req->extras.p);
        }
        /* Sic: memcached swallows bodylen bytes after extras and key. */
        return bin_reject(req, BIN_STATUS_UNKNOWN_COMMAND, false, h.bodylen);
    }
    if (!bin_lengths_ok(req->cmd, h.extlen, h.keylen, h.bodylen)) {
        return bin_reject(req, BIN_STATUS_EINVAL, true, 0);
    }
    switch (req->cmd) {
    case BIN_OP_SASL_LIST_MECHS:
    case BIN_OP_SASL_AUTH:
    case BIN_OP_SASL_STEP:
        /* memcached's answer when SASL is not enabled. */
        return bin_reject(req, BIN_STATUS_UNKNOWN_COMMAND, false, h.bodylen - h.keylen);
    case BIN_OP_SET:
    case BIN_OP_ADD:
    case BIN_OP_REPLACE:
    case BIN_OP_APPEND:
    case BIN_OP_PREPEND:
        req->value_len = h.bodylen - h.extlen - h.keylen;
        break;
    default:
        break;
    }
    bin_decode_extras(req);
    return BIN_OK;
}

static size_t bin_compose(char *buf, size_t cap, uint8_t magic, const struct bin_packet *pk)
{
    uint64_t body = (uint64_t)pk->extlen + pk->keylen + pk->value_len;
    size_t n = BIN_HEADER_LEN + (size_t)pk->extlen + pk->keylen;
    if (body > UINT32_MAX || n > cap) {
        return 0;
    }
    struct bin_header h = {
        .magic = magic,
        .opcode = pk->opcode,
        .keylen = pk->keylen,
        .extlen = pk->extlen,
        .datatype = 0,
        .status = magic == BIN_MAGIC_RES ? pk->status : 0,
        .bodylen = (uint32_t)body,
        .opaque = pk->opaque,
        .cas = pk->cas,
    };
    bin_header_encode(buf, &h);
    if (pk->extlen > 0) {
        memcpy(buf + BIN_HEADER_LEN, pk->extras, pk->extlen);
    }
    if (pk->keylen > 0) {
        memcpy(buf + BIN_HEADER_LEN + pk->extlen, pk->key, pk->keylen);
    }
    return n;
}

size_t bin_compose_request(char *buf, size_t cap, const struct bin_packet *pk)
{
    return bin_compose(buf, cap, BIN_MAGIC_REQ, pk);
}

size_t bin_compose_response(char *buf, size_t cap, const struct bin_packet *pk)
{
    return bin_compose(buf, cap, BIN_MAGIC_RES, pk);
}

void bin_encode_store_extras(char *out, uint32_t flags, uint32_t exptime)
{
    put32(out, flags);
    put32(out + 4, exptime);
}

void bin_encode_arith_extras(char *out, uint64_t delta, uint64_t initial, uint32_t exptime)
{
    put64(out, delta);
    put64(out + 8, initial);
    put32(out + 16, exptime);
}

void bin_encode_u32(char *out, uint32_t v)
{
    put32(out, v);
}

/* Writes a response header with datatype 0. */
static void bin_put_header(char *buf, uint8_t opcode, uint16_t status, uint8_t extlen,
                           uint16_t keylen, uint32_t bodylen, uint32_t opaque, uint64_t cas)
{
    struct bin_header h = {
        .magic = BIN_MAGIC_RES,
        .opcode = opcode,
        .keylen = keylen,
        .extlen = extlen,
        .datatype = 0,
        .status = status,
        .bodylen = bodylen,
        .opaque = opaque,
        .cas = cas,
    };
    bin_header_encode(buf, &h);
}

size_t bin_compose_ok(char *buf, uint8_t opcode, uint32_t opaque, uint64_t cas)
{
    bin_put_header(buf, opcode, BIN_STATUS_OK, 0, 0, 0, opaque, cas);
    return BIN_HEADER_LEN;
}

size_t bin_compose_error(char *buf, uint8_t opcode, uint32_t opaque, uint16_t status)
{
    const char *text = bin_status_text(status);
    size_t n = text != NULL ? strlen(text) : 0;
    bin_put_header(buf, opcode, status, 0, 0, (uint32_t)n, opaque, 0);
    memcpy(buf + BIN_HEADER_LEN, text != NULL ? text : "", n);
    return BIN_HEADER_LEN + n;
}

size_t bin_compose_item(char *buf, uint8_t opcode, uint32_t opaque, uint64_t cas, uint32_t flags,
                        const char *key, size_t nkey, uint32_t value_len)
{
    uint32_t body = 4 + (uint32_t)nkey + value_len;
    bin_put_header(buf, opcode, BIN_STATUS_OK, 4, (uint16_t)nkey, body, opaque, cas);
    put32(buf + BIN_HEADER_LEN, flags);
    if (nkey > 0) {
        memcpy(buf + BIN_HEADER_LEN + 4, key, nkey);
    }
    return BIN_HEADER_LEN + 4 + nkey;
}

size_t bin_compose_key_miss(char *buf, uint8_t opcode, uint32_t opaque, const char *key,
                            size_t nkey)
{
    bin_put_header(buf, opcode, BIN_STATUS_KEY_ENOENT, 0, (uint16_t)nkey, (uint32_t)nkey, opaque,
                   0);
    if (nkey > 0) {
        memcpy(buf + BIN_HEADER_LEN, key, nkey);
    }
    return BIN_HEADER_LEN + nkey;
}

size_t bin_compose_arith(char *buf, uint8_t opcode, uint32_t opaque, uint64_t cas, uint64_t value)
{
    bin_put_header(buf, opcode, BIN_STATUS_OK, 0, 0, 8, opaque, cas);
    put64(buf + BIN_HEADER_LEN, value);
    return BIN_ARITH_LEN;
}

size_t bin_compose_stat(char *buf, size_t cap, uint32_t opaque, const char *name, size_t nname,
                        const char *value, size_t nvalue)
{
    if (nname > UINT16_MAX || nvalue > UINT32_MAX - nname) {
        return 0;
    }
    size_t total = BIN_HEADER_LEN + nname + nvalue;
    if (total > cap) {
        return 0;
    }
    bin_put_header(buf, BIN_OP_STAT, BIN_STATUS_OK, 0, (uint16_t)nname, (uint32_t)(nname + nvalue),
                   opaque, 0);
    if (nname > 0) {
        memcpy(buf + BIN_HEADER_LEN, name, nname);
    }
    if (nvalue > 0) {
        memcpy(buf + BIN_HEADER_LEN + nname, value, nvalue);
    }
    return total;
}

size_t bin_compose_stat_u64(char *buf, size_t cap, uint32_t opaque, const char *name,
                            uint64_t value)
{
    char num[20];
    size_t n = num_format_u64(num, value);
    return bin_compose_stat(buf, cap, opaque, name, strlen(name), num, n);
}

size_t bin_compose_stat_end(char *buf, uint32_t opaque)
{
    bin_put_header(buf, BIN_OP_STAT, BIN_STATUS_OK, 0, 0, 0, opaque, 0);
    return BIN_HEADER_LEN;
}

size_t bin_compose_version(char *buf, size_t cap, uint32_t opaque, const char *version)
{
    size_t n = strlen(version);
    if (n > UINT32_MAX || BIN_HEADER_LEN + n > cap) {
        return 0;
    }
    bin_put_header(buf, BIN_OP_VERSION, BIN_STATUS_OK, 0, 0, (uint32_t)n, opaque, 0);
    memcpy(buf + BIN_HEADER_LEN, version, n);
    return BIN_HEADER_LEN + n;
}

/* Shared by both response parsers: whole says whether the value must be buffered too. */
static enum bin_result bin_parse_response_common(const char *buf, size_t len,
                                                 struct bin_response *res, size_t *consumed,
                                                 bool whole)
{
    *consumed = 0;
    if (len < BIN_HEADER_LEN) {
        return BIN_NEED_MORE;
    }
    struct bin_header h;
    bin_header_decode(buf, &h);
    if (h.magic != BIN_MAGIC_RES || (uint32_t)h.extlen + h.keylen > h.bodylen) {
        return BIN_CLOSE;
    }
    size_t prefix = BIN_HEADER_LEN + (size_t)h.extlen + h.keylen;
    size_t need = whole ? BIN_HEADER_LEN + (size_t)h.bodylen : prefix;
    if (len < need) {
        return BIN_NEED_MORE;
    }

    memset(res, 0, sizeof(*res));
    res->hdr = h;
    res->extras.p = buf + BIN_HEADER_LEN;
    res->extras.len = h.extlen;
    res->key.p = buf + BIN_HEADER_LEN + h.extlen;
    res->key.len = h.keylen;
    res->value_len = h.bodylen - h.extlen - h.keylen;
    res->value.p = buf + prefix;
    res->value.len = whole ? res->value_len : 0;
    if (h.extlen == 4) {
        res->has_flags = true;
        res->flags = get32((const unsigned char *)res->extras.p);
    }
    uint8_t cmd = bin_opcode_base(h.opcode);
    if (whole && h.status == BIN_STATUS_OK && h.extlen == 0 && h.keylen == 0 &&
        res->value_len == 8 && (cmd == BIN_OP_INCREMENT || cmd == BIN_OP_DECREMENT)) {
        res->has_number = true;
        res->number = get64((const unsigned char *)res->value.p);
    }
    *consumed = need;
    return BIN_OK;
}

enum bin_result bin_parse_response(const char *buf, size_t len, struct bin_response *res,
                                   size_t *consumed)
{
    return bin_parse_response_common(buf, len, res, consumed, true);
}

enum bin_result bin_parse_response_head(const char *buf, size_t len, struct bin_response *res,
                                        size_t *consumed)
{
    return bin_parse_response_common(buf, len, res, consumed, false);
}

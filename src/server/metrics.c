/*
 * metrics.c - the Prometheus endpoint: collects every stat through the
 * same emitters the text "stats" commands use, then renders them with
 * memcached_exporter's names, types and labels (docs/operations.md,
 * "Metrics", has the whole mapping).
 *
 * Rendering is two passes. First every (group, class, name, value) the stats
 * renderers emit is collected. Then METRIC_TABLE is walked in order; the rows
 * of one family are adjacent, so each family gets its # HELP and # TYPE once,
 * followed by every sample that matches its rows. A stat that no row claims
 * is still exposed, under a derived name (memcached_settings_<name> for
 * settings, "untyped" elsewhere) so nothing is silently lost; the
 * integration test requires that no untyped family remains.
 */
#include "metrics.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sysexits.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "listener.h"
#include "log.h"
#include "server.h"
#include "settings.h"

/* Where a stat comes from: the "stats" group that emits it. */
enum metric_src {
    SRC_CONST = 0, /* no stat: the row's value is 1 (memcached_up) */
    SRC_GENERAL,   /* "stats" */
    SRC_SETTINGS,  /* "stats settings" */
    SRC_ITEMS,     /* "stats items": items:<class>:<name> */
    SRC_SLABS,     /* "stats slabs": <class>:<name> */
    SRC_SLABS_ALL, /* "stats slabs" lines without a class */
};

/* How a row turns the stat's text into a sample. */
enum metric_kind {
    K_NUM,   /* the value as it is (integers, "1.250000") */
    K_BOOL,  /* yes/on = 1, no/off = 0 */
    K_LABEL, /* value 1, the stat's text in the row's label (version) */
    K_SET,   /* cmd_set minus the cas commands it includes, as the exporter */
    K_SKIP,  /* the same figure is exposed by another row */
};

#define C "counter"
#define G "gauge"

/* X(family, type, source, stat name, extra labels, kind, help) */
#define METRIC_TABLE(X)                                                                            \
    X("memcached_up", G, SRC_CONST, "", "", K_NUM, "Could the memcached server be reached.")       \
    X("memcached_uptime_seconds", C, SRC_GENERAL, "uptime", "", K_NUM,                             \
      "Number of seconds since the server started.")                                               \
    X("memcached_time_seconds", G, SRC_GENERAL, "time", "", K_NUM,                                 \
      "current UNIX time according to the server.")                                                \
    X("memcached_version", G, SRC_GENERAL, "version", "version", K_LABEL,                          \
      "The version of this memcached server.")                                                     \
    X("memcached_libevent_version", G, SRC_GENERAL, "libevent", "version", K_LABEL,                \
      "The libevent version this server runs on.")                                                 \
    X("memcached_pid", G, SRC_GENERAL, "pid", "", K_NUM, "Process id of the server.")              \
    X("memcached_pointer_size_bits", G, SRC_GENERAL, "pointer_size", "", K_NUM,                    \
      "Size of pointers on the host, in bits.")                                                    \
    X("memcached_process_user_cpu_seconds_total", C, SRC_GENERAL, "rusage_user", "", K_NUM,        \
      "Accumulated user time for this process.")                                                   \
    X("memcached_process_system_cpu_seconds_total", C, SRC_GENERAL, "rusage_system", "", K_NUM,    \
      "Accumulated system time for this process.")                                                 \
    X("memcached_max_connections", G, SRC_SETTINGS, "maxconns", "", K_NUM,                         \
      "Maximum number of clients allowed.")                                                        \
    X("memcached_max_connections", G, SRC_GENERAL, "max_connections", "", K_SKIP, "")              \
    X("memcached_current_connections", G, SRC_GENERAL, "curr_connections", "", K_NUM,              \
      "Current number of open connections.")                                                       \
    X("memcached_connections_total", C, SRC_GENERAL, "total_connections", "", K_NUM,               \
      "Total number of connections opened since the server started running.")                      \
    X("memcached_connections_rejected_total", C, SRC_GENERAL, "rejected_connections", "", K_NUM,   \
      "Total number of connections rejected due to hitting the memcached's -c limit in "           \
      "maxconns_fast mode.")                                                                       \
    X("memcached_connection_structures", G, SRC_GENERAL, "connection_structures", "", K_NUM,       \
      "Number of connection structures allocated by the server.")                                  \
    X("memcached_reserved_fds", G, SRC_GENERAL, "reserved_fds", "", K_NUM,                         \
      "Number of file descriptors reserved for internal use.")                                     \
    X("memcached_commands_total", C, SRC_GENERAL, "get_hits", "command=\"get\",status=\"hit\"",    \
      K_NUM, "Total number of all requests broken down by command (get, set, etc.) and status.")   \
    X("memcached_commands_total", C, SRC_GENERAL, "get_misses", "command=\"get\",status=\"miss\"", \
      K_NUM, "")                                                                                   \
    X("memcached_commands_total", C, SRC_GENERAL, "delete_hits",                                   \
      "command=\"delete\",status=\"hit\"", K_NUM, "")                                              \
    X("memcached_commands_total", C, SRC_GENERAL, "delete_misses",                                 \
      "command=\"delete\",status=\"miss\"", K_NUM, "")                                             \
    X("memcached_commands_total", C, SRC_GENERAL, "incr_hits", "command=\"incr\",status=\"hit\"",  \
      K_NUM, "")                                                                                   \
    X("memcached_commands_total", C, SRC_GENERAL, "incr_misses",                                   \
      "command=\"incr\",status=\"miss\"", K_NUM, "")                                               \
    X("memcached_commands_total", C, SRC_GENERAL, "decr_hits", "command=\"decr\",status=\"hit\"",  \
      K_NUM, "")                                                                                   \
    X("memcached_commands_total", C, SRC_GENERAL, "decr_misses",                                   \
      "command=\"decr\",status=\"miss\"", K_NUM, "")                                               \
    X("memcached_commands_total", C, SRC_GENERAL, "cas_hits", "command=\"cas\",status=\"hit\"",    \
      K_NUM, "")                                                                                   \
    X("memcached_commands_total", C, SRC_GENERAL, "cas_misses", "command=\"cas\",status=\"miss\"", \
      K_NUM, "")                                                                                   \
    X("memcached_commands_total", C, SRC_GENERAL, "cas_badval",                                    \
      "command=\"cas\",status=\"badval\"", K_NUM, "")                                              \
    X("memcached_commands_total", C, SRC_GENERAL, "touch_hits",                                    \
      "command=\"touch\",status=\"hit\"", K_NUM, "")                                               \
    X("memcached_commands_total", C, SRC_GENERAL, "touch_misses",                                  \
      "command=\"touch\",status=\"miss\"", K_NUM, "")                                              \
    X("memcached_commands_total", C, SRC_GENERAL, "cmd_flush", "command=\"flush\",status=\"hit\"", \
      K_NUM, "")                                                                                   \
    X("memcached_commands_total", C, SRC_GENERAL, "cmd_set", "command=\"set\",status=\"hit\"",     \
      K_SET, "")                                                                                   \
    X("memcached_get_commands_total", C, SRC_GENERAL, "cmd_get", "", K_NUM,                        \
      "Total number of keys requested by retrieval commands (stat cmd_get).")                      \
    X("memcached_touch_commands_total", C, SRC_GENERAL, "cmd_touch", "", K_NUM,                    \
      "Total number of touch requests (stat cmd_touch).")                                          \
    X("memcached_meta_commands_total", C, SRC_GENERAL, "cmd_meta", "", K_NUM,                      \
      "Total number of meta protocol commands (stat cmd_meta).")                                   \
    X("memcached_get_expired_total", C, SRC_GENERAL, "get_expired", "", K_NUM,                     \
      "Total number of gets that found an expired item.")                                          \
    X("memcached_get_flushed_total", C, SRC_GENERAL, "get_flushed", "", K_NUM,                     \
      "Total number of gets that found an item invalidated by flush_all.")                         \
    X("memcached_item_too_large_total", C, SRC_GENERAL, "store_too_large", "", K_NUM,              \
      "The number of times an item exceeded the max-item-size when being stored.")                 \
    X("memcached_item_no_memory_total", C, SRC_GENERAL, "store_no_memory", "", K_NUM,              \
      "The number of times an item could not be stored due to no more memory.")                    \
    X("memcached_auth_commands_total", C, SRC_GENERAL, "auth_cmds", "", K_NUM,                     \
      "Total number of authentication attempts.")                                                  \
    X("memcached_auth_errors_total", C, SRC_GENERAL, "auth_errors", "", K_NUM,                     \
      "Total number of failed authentication attempts.")                                           \
    X("memcached_idle_kicks_total", C, SRC_GENERAL, "idle_kicks", "", K_NUM,                       \
      "Total number of connections closed by idle_timeout.")                                       \
    X("memcached_read_bytes_total", C, SRC_GENERAL, "bytes_read", "", K_NUM,                       \
      "Total number of bytes read by this server from network.")                                   \
    X("memcached_written_bytes_total", C, SRC_GENERAL, "bytes_written", "", K_NUM,                 \
      "Total number of bytes sent by this server to network.")                                     \
    X("memcached_limit_bytes", G, SRC_GENERAL, "limit_maxbytes", "", K_NUM,                        \
      "Number of bytes this server is allowed to use for storage.")                                \
    X("memcached_accepting_connections", G, SRC_GENERAL, "accepting_conns", "", K_NUM,             \
      "The Memcached server is currently accepting new connections.")                              \
    X("memcached_connections_listener_disabled_total", C, SRC_GENERAL, "listen_disabled_num", "",  \
      K_NUM,                                                                                       \
      "Number of times that memcached has hit its connections limit and disabled its "             \
      "listener.")                                                                                 \
    X("memcached_listener_disabled_microseconds_total", C, SRC_GENERAL,                            \
      "time_in_listen_disabled_us", "", K_NUM,                                                     \
      "Microseconds spent with the listener disabled by the connections limit.")                   \
    X("memcached_threads", G, SRC_GENERAL, "threads", "", K_NUM, "Number of worker threads.")      \
    X("memcached_connections_yielded_total", C, SRC_GENERAL, "conn_yields", "", K_NUM,             \
      "Total number of connections yielded running due to hitting the memcached's -R limit.")      \
    X("memcached_hash_power_level", G, SRC_GENERAL, "hash_power_level", "", K_NUM,                 \
      "Current size of the hash table as a power of two.")                                         \
    X("memcached_hash_bytes", G, SRC_GENERAL, "hash_bytes", "", K_NUM,                             \
      "Bytes used by the hash table.")                                                             \
    X("memcached_hash_is_expanding", G, SRC_GENERAL, "hash_is_expanding", "", K_NUM,               \
      "Whether the hash table is growing (1) or not (0).")                                         \
    X("memcached_malloc_fails_total", C, SRC_GENERAL, "malloc_fails", "", K_NUM,                   \
      "Total number of failed memory allocations.")                                                \
    X("memcached_current_bytes", G, SRC_GENERAL, "bytes", "", K_NUM,                               \
      "Current number of bytes used to store items.")                                              \
    X("memcached_current_items", G, SRC_GENERAL, "curr_items", "", K_NUM,                          \
      "Current number of items stored by this instance.")                                          \
    X("memcached_items_total", C, SRC_GENERAL, "total_items", "", K_NUM,                           \
      "Total number of items stored during the life of this instance.")                            \
    X("memcached_slab_global_page_pool", G, SRC_GENERAL, "slab_global_page_pool", "", K_NUM,       \
      "Number of slab pages in the global pool, not assigned to a class.")                         \
    X("memcached_items_expired_unfetched_total", C, SRC_GENERAL, "expired_unfetched", "", K_NUM,   \
      "Total number of items that expired without ever being fetched.")                            \
    X("memcached_items_evicted_unfetched_total", C, SRC_GENERAL, "evicted_unfetched", "", K_NUM,   \
      "Total number of items evicted without ever being fetched.")                                 \
    X("memcached_items_evicted_total", C, SRC_GENERAL, "evictions", "", K_NUM,                     \
      "Total number of valid items removed from cache to free memory for new items.")              \
    X("memcached_items_reclaimed_total", C, SRC_GENERAL, "reclaimed", "", K_NUM,                   \
      "Total number of times an entry was stored using memory from an expired entry.")             \
    X("memcached_lru_crawler_reclaimed_total", C, SRC_GENERAL, "crawler_reclaimed", "", K_NUM,     \
      "Total items freed by LRU Crawler.")                                                         \
    X("memcached_lru_crawler_enabled", G, SRC_SETTINGS, "lru_crawler", "", K_BOOL,                 \
      "Whether the LRU crawler is enabled.")                                                       \
    X("memcached_lru_crawler_sleep", G, SRC_SETTINGS, "lru_crawler_sleep", "", K_NUM,              \
      "Microseconds to sleep between LRU crawls.")                                                 \
    X("memcached_lru_crawler_to_crawl", G, SRC_SETTINGS, "lru_crawler_tocrawl", "", K_NUM,         \
      "Max items to crawl per slab per run.")                                                      \
    X("memcached_lru_crawler_maintainer_thread", G, SRC_SETTINGS, "lru_maintainer_thread", "",     \
      K_BOOL, "Split LRU mode and background threads.")                                            \
    X("memcached_lru_crawler_hot_percent", G, SRC_SETTINGS, "hot_lru_pct", "", K_NUM,              \
      "Percent of slab memory reserved for HOT LRU.")                                              \
    X("memcached_lru_crawler_warm_percent", G, SRC_SETTINGS, "warm_lru_pct", "", K_NUM,            \
      "Percent of slab memory reserved for WARM LRU.")                                             \
    X("memcached_lru_crawler_hot_max_factor", G, SRC_SETTINGS, "hot_max_factor", "", K_NUM,        \
      "Set idle age of HOT LRU to COLD age * this")                                                \
    X("memcached_lru_crawler_warm_max_factor", G, SRC_SETTINGS, "warm_max_factor", "", K_NUM,      \
      "Set idle age of WARM LRU to COLD age * this")                                               \
    X("memcached_settings_umask", G, SRC_SETTINGS, "umask", "", K_SKIP, "")                        \
    X("memcached_malloced_bytes", G, SRC_SLABS_ALL, "total_malloced", "", K_NUM,                   \
      "Number of bytes of memory allocated to slab pages.")                                        \
    X("memcached_active_slabs", G, SRC_SLABS_ALL, "active_slabs", "", K_NUM,                       \
      "Number of slab classes with at least one page.")                                            \
    X("memcached_slab_current_items", G, SRC_ITEMS, "number", "", K_NUM,                           \
      "Number of items currently stored in this slab class.")                                      \
    X("memcached_slab_items_age_seconds", G, SRC_ITEMS, "age", "", K_NUM,                          \
      "Number of seconds the oldest item has been in the slab class.")                             \
    X("memcached_slab_mem_requested_bytes", C, SRC_ITEMS, "mem_requested", "", K_NUM,              \
      "Number of bytes of memory actual items take up within a slab.")                             \
    X("memcached_slab_items_evicted_total", C, SRC_ITEMS, "evicted", "", K_NUM,                    \
      "Total number of times an item had to be evicted from the LRU before it expired.")           \
    X("memcached_slab_items_evicted_nonzero_total", C, SRC_ITEMS, "evicted_nonzero", "", K_NUM,    \
      "Total number of times an item which had an explicit expire time set had to be evicted "     \
      "from the LRU before it expired.")                                                           \
    X("memcached_slab_items_evicted_time_seconds", C, SRC_ITEMS, "evicted_time", "", K_NUM,        \
      "Seconds since the last access for the most recent item evicted from this class.")           \
    X("memcached_slab_items_outofmemory_total", C, SRC_ITEMS, "outofmemory", "", K_NUM,            \
      "Total number of items for this slab class that have triggered an out of memory error.")     \
    X("memcached_slab_items_tailrepairs_total", C, SRC_ITEMS, "tailrepairs", "", K_NUM,            \
      "Total number of times the entries for a particular ID need repairing.")                     \
    X("memcached_slab_items_reclaimed_total", C, SRC_ITEMS, "reclaimed", "", K_NUM,                \
      "Total number of items reclaimed.")                                                          \
    X("memcached_slab_items_expired_unfetched_total", C, SRC_ITEMS, "expired_unfetched", "",       \
      K_NUM,                                                                                       \
      "Total number of valid items evicted from the LRU which were never touched after "           \
      "being set.")                                                                                \
    X("memcached_slab_items_evicted_unfetched_total", C, SRC_ITEMS, "evicted_unfetched", "",       \
      K_NUM, "Total number of items evicted and never fetched.")                                   \
    X("memcached_slab_items_crawler_reclaimed_total", C, SRC_ITEMS, "crawler_reclaimed", "",       \
      K_NUM, "Number of items freed by the LRU Crawler.")                                          \
    X("memcached_slab_chunk_size_bytes", G, SRC_SLABS, "chunk_size", "", K_NUM,                    \
      "Number of bytes allocated to each chunk within this slab class.")                           \
    X("memcached_slab_chunks_per_page", G, SRC_SLABS, "chunks_per_page", "", K_NUM,                \
      "Number of chunks within a single page for this slab class.")                                \
    X("memcached_slab_current_pages", G, SRC_SLABS, "total_pages", "", K_NUM,                      \
      "Number of pages allocated to this slab class.")                                             \
    X("memcached_slab_current_chunks", G, SRC_SLABS, "total_chunks", "", K_NUM,                    \
      "Number of chunks allocated to this slab class.")                                            \
    X("memcached_slab_chunks_used", G, SRC_SLABS, "used_chunks", "", K_NUM,                        \
      "Number of chunks allocated to an item.")                                                    \
    X("memcached_slab_chunks_free", G, SRC_SLABS, "free_chunks", "", K_NUM,                        \
      "Number of chunks not yet allocated items.")                                                 \
    X("memcached_slab_chunks_free_end", G, SRC_SLABS, "free_chunks_end", "", K_NUM,                \
      "Number of free chunks at the end of the last allocated page.")                              \
    X("memcached_slab_commands_total", C, SRC_SLABS, "get_hits", "command=\"get\",status=\"hit\"", \
      K_NUM,                                                                                       \
      "Total number of all requests broken down by command (get, set, etc.) and status "           \
      "per slab.")                                                                                 \
    X("memcached_slab_commands_total", C, SRC_SLABS, "delete_hits",                                \
      "command=\"delete\",status=\"hit\"", K_NUM, "")                                              \
    X("memcached_slab_commands_total", C, SRC_SLABS, "incr_hits",                                  \
      "command=\"incr\",status=\"hit\"", K_NUM, "")                                                \
    X("memcached_slab_commands_total", C, SRC_SLABS, "decr_hits",                                  \
      "command=\"decr\",status=\"hit\"", K_NUM, "")                                                \
    X("memcached_slab_commands_total", C, SRC_SLABS, "cas_hits", "command=\"cas\",status=\"hit\"", \
      K_NUM, "")                                                                                   \
    X("memcached_slab_commands_total", C, SRC_SLABS, "cas_badval",                                 \
      "command=\"cas\",status=\"badval\"", K_NUM, "")                                              \
    X("memcached_slab_commands_total", C, SRC_SLABS, "touch_hits",                                 \
      "command=\"touch\",status=\"hit\"", K_NUM, "")                                               \
    X("memcached_slab_commands_total", C, SRC_SLABS, "cmd_set", "command=\"set\",status=\"hit\"",  \
      K_SET, "")

struct metric_row {
    const char *family;
    const char *type;
    enum metric_src src;
    const char *stat;
    const char *labels;
    enum metric_kind kind;
    const char *help;
};

static const struct metric_row metric_rows[] = {
#define X(family, type, src, stat, labels, kind, help)                                             \
    {family, type, src, stat, labels, kind, help},
    METRIC_TABLE(X)
#undef X
};

#undef C
#undef G

/* One collected stat. */
struct sample {
    enum metric_src src;
    unsigned cls; /* slab class for SRC_ITEMS / SRC_SLABS, else 0 */
    bool used;    /* claimed by a table row */
    char name[48];
    char value[128];
};

struct collection {
    struct sample *v;
    size_t n, cap;
    enum metric_src src; /* the group being collected */
};

static void collect_emit(void *arg, const char *name, const char *value)
{
    struct collection *col = arg;
    if (col->n == col->cap) {
        size_t cap = col->cap ? col->cap * 2 : 256;
        struct sample *v = realloc(col->v, cap * sizeof(*v));
        if (v == NULL) {
            return;
        }
        col->v = v;
        col->cap = cap;
    }
    struct sample *s = &col->v[col->n];
    memset(s, 0, sizeof(*s));
    s->src = col->src;
    const char *key = name;
    if (col->src == SRC_ITEMS || col->src == SRC_SLABS) {
        /* "items:<cls>:<name>" or "<cls>:<name>"; slabs also has totals. */
        const char *p = col->src == SRC_ITEMS && strncmp(name, "items:", 6) == 0 ? name + 6 : name;
        char *end;
        unsigned long cls = strtoul(p, &end, 10);
        if (end != p && *end == ':') {
            s->cls = (unsigned)cls;
            key = end + 1;
        } else if (col->src == SRC_SLABS) {
            s->src = SRC_SLABS_ALL;
        }
    }
    snprintf(s->name, sizeof(s->name), "%s", key);
    snprintf(s->value, sizeof(s->value), "%s", value);
    col->n++;
}

/* The stat's text as a sample value, or NULL when it is not a number. */
static const char *numeric(const char *text, enum metric_kind kind)
{
    if (kind == K_BOOL || kind == K_NUM) {
        if (strcmp(text, "yes") == 0 || strcmp(text, "on") == 0) {
            return "1";
        }
        if (strcmp(text, "no") == 0 || strcmp(text, "off") == 0) {
            return "0";
        }
    }
    if (kind == K_BOOL || text[0] == '\0') {
        return NULL;
    }
    char *end;
    errno = 0;
    (void)strtod(text, &end);
    return *end == '\0' && errno == 0 ? text : NULL;
}

static const struct sample *find(const struct collection *col, enum metric_src src, unsigned cls,
                                 const char *name)
{
    for (size_t i = 0; i < col->n; i++) {
        const struct sample *s = &col->v[i];
        if (s->src == src && s->cls == cls && strcmp(s->name, name) == 0) {
            return s;
        }
    }
    return NULL;
}

static uint64_t value_of(const struct collection *col, enum metric_src src, unsigned cls,
                         const char *name)
{
    const struct sample *s = find(col, src, cls, name);
    return s != NULL ? strtoull(s->value, NULL, 10) : 0;
}

/* Label values escape backslash, double quote and newline. */
static void add_label_value(struct evbuffer *out, const char *v)
{
    for (; *v != '\0'; v++) {
        if (*v == '\\' || *v == '"') {
            evbuffer_add_printf(out, "\\%c", *v);
        } else if (*v == '\n') {
            evbuffer_add(out, "\\n", 2);
        } else {
            evbuffer_add(out, v, 1);
        }
    }
}

struct render_state {
    struct evbuffer *out;
    const char *header_done; /* family whose HELP/TYPE was written last */
};

static void family_header(struct render_state *st, const char *family, const char *type,
                          const char *help)
{
    if (st->header_done != NULL && strcmp(st->header_done, family) == 0) {
        return;
    }
    evbuffer_add_printf(st->out, "# HELP %s %s\n# TYPE %s %s\n", family, help, family, type);
    st->header_done = family;
}

/* Writes one sample line: family{slab="N",labels} value. */
static void sample_line(struct render_state *st, const char *family, const struct sample *s,
                        const char *labels, const char *label_value, const char *value)
{
    bool per_class = s != NULL && (s->src == SRC_ITEMS || s->src == SRC_SLABS);
    evbuffer_add_printf(st->out, "%s", family);
    if (per_class || labels[0] != '\0') {
        evbuffer_add(st->out, "{", 1);
        if (per_class) {
            evbuffer_add_printf(st->out, "slab=\"%u\"%s", s->cls, labels[0] != '\0' ? "," : "");
        }
        if (label_value != NULL) {
            evbuffer_add_printf(st->out, "%s=\"", labels);
            add_label_value(st->out, label_value);
            evbuffer_add(st->out, "\"", 1);
        } else {
            evbuffer_add_printf(st->out, "%s", labels);
        }
        evbuffer_add(st->out, "}", 1);
    }
    evbuffer_add_printf(st->out, " %s\n", value);
}

static void render_row(struct render_state *st, struct collection *col,
                       const struct metric_row *row, const char *help)
{
    if (row->src == SRC_CONST) {
        family_header(st, row->family, row->type, help);
        sample_line(st, row->family, NULL, row->labels, NULL, "1");
        return;
    }
    for (size_t i = 0; i < col->n; i++) {
        struct sample *s = &col->v[i];
        if (s->src != row->src || strcmp(s->name, row->stat) != 0) {
            continue;
        }
        s->used = true;
        char buf[32];
        const char *value = NULL;
        const char *label_value = NULL;
        switch (row->kind) {
        case K_SKIP:
            continue;
        case K_LABEL:
            value = "1";
            label_value = s->value;
            break;
        case K_SET: {
            /* memcached counts cas in cmd_set too; the exporter's "set"
             * is the rest. */
            uint64_t set = strtoull(s->value, NULL, 10);
            uint64_t cas = value_of(col, s->src, s->cls, "cas_hits") +
                           value_of(col, s->src, s->cls, "cas_badval") +
                           value_of(col, s->src, s->cls, "cas_misses");
            snprintf(buf, sizeof(buf), "%llu", (unsigned long long)(set > cas ? set - cas : 0));
            value = buf;
            break;
        }
        default:
            value = numeric(s->value, row->kind);
            break;
        }
        if (value == NULL) {
            continue;
        }
        family_header(st, row->family, row->type, help);
        sample_line(st, row->family, s, row->labels, label_value, value);
    }
}

/* Stats no row claims: exposed under a derived name so none is lost. */
static void render_unclaimed(struct render_state *st, struct collection *col)
{
    static const char *const prefix[] = {
        [SRC_GENERAL] = "memcached_",    [SRC_SETTINGS] = "memcached_settings_",
        [SRC_ITEMS] = "memcached_slab_", [SRC_SLABS] = "memcached_slab_",
        [SRC_SLABS_ALL] = "memcached_",
    };
    for (size_t i = 0; i < col->n; i++) {
        struct sample *first = &col->v[i];
        if (first->used || first->src == SRC_CONST) {
            continue;
        }
        char family[96];
        snprintf(family, sizeof(family), "%s%s", prefix[first->src], first->name);
        bool settings = first->src == SRC_SETTINGS;
        char help[96];
        snprintf(help, sizeof(help), "%s %s.", settings ? "stats settings" : "Unmapped stat",
                 first->name);
        bool header = false;
        for (size_t j = i; j < col->n; j++) {
            struct sample *s = &col->v[j];
            if (s->used || s->src != first->src || strcmp(s->name, first->name) != 0) {
                continue;
            }
            s->used = true;
            const char *value = numeric(s->value, K_NUM);
            if (value == NULL) {
                continue;
            }
            if (!header) {
                evbuffer_add_printf(st->out, "# HELP %s %s\n# TYPE %s %s\n", family, help, family,
                                    settings ? "gauge" : "untyped");
                header = true;
            }
            sample_line(st, family, s, "", NULL, value);
        }
    }
}

void metrics_render(struct server *srv, struct evbuffer *out)
{
    struct collection col = {0};
    col.src = SRC_GENERAL;
    stats_render_general(srv, collect_emit, &col);
    col.src = SRC_SETTINGS;
    settings_render(srv->settings, collect_emit, &col);
    col.src = SRC_ITEMS;
    stats_render_items(srv, collect_emit, &col);
    col.src = SRC_SLABS;
    stats_render_slabs(srv, collect_emit, &col);

    struct render_state st = {out, NULL};
    const char *help = "";
    for (size_t i = 0; i < sizeof(metric_rows) / sizeof(metric_rows[0]); i++) {
        const struct metric_row *row = &metric_rows[i];
        /* Only a family's first row carries the help text. */
        if (i == 0 || strcmp(row->family, metric_rows[i - 1].family) != 0) {
            help = row->help;
        }
        render_row(&st, &col, row, help);
    }
    render_unclaimed(&st, &col);
    free(col.v);
}

/* ---- HTTP ---- */

#define METRICS_MAX_FDS 16

struct metrics {
    struct server *srv;
    int fds[METRICS_MAX_FDS]; /* owned until handed to evhttp */
    int nfds;
    bool fds_handed;
    struct event_base *base;
    struct evhttp *http;
    pthread_t thread;
    bool running;
};

static void http_cb(struct evhttp_request *req, void *arg)
{
    struct metrics *m = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
    if (path == NULL || strcmp(path, "/metrics") != 0) {
        evhttp_send_error(req, HTTP_NOTFOUND, NULL);
        return;
    }
    struct evbuffer *body = evbuffer_new();
    if (body == NULL) {
        evhttp_send_error(req, HTTP_INTERNAL, NULL);
        return;
    }
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
        /* Not evhttp_send_error: it drops the headers set here. */
        evhttp_add_header(headers, "Allow", "GET");
        evhttp_add_header(headers, "Content-Type", "text/plain; charset=utf-8");
        evbuffer_add_printf(body, "Method Not Allowed\n");
        evhttp_send_reply(req, HTTP_BADMETHOD, "Method Not Allowed", body);
        evbuffer_free(body);
        return;
    }
    metrics_render(m->srv, body);
    if (log_enabled(LOG_TRACE)) {
        log_msg(LOG_TRACE, "metrics: served %zu bytes", evbuffer_get_length(body));
    }
    evhttp_add_header(headers, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    evhttp_send_reply(req, HTTP_OK, "OK", body);
    evbuffer_free(body);
}

static int keep_metrics(void *ctx, int fd, const struct sockaddr *sa, socklen_t len)
{
    (void)sa;
    (void)len;
    struct metrics *m = ctx;
    if (m->nfds >= METRICS_MAX_FDS) {
        return -1;
    }
    m->fds[m->nfds++] = fd;
    return 0;
}

static int open_one(struct metrics *m, const char *host, int port)
{
    return listener_bind_all(host, port, 64, keep_metrics, m) < 0 ? -1 : 0;
}

int metrics_open(struct metrics **out, struct server *srv)
{
    *out = NULL;
    const struct settings *s = srv->settings;
    if (s->metrics_port == 0) {
        return 0;
    }
    struct metrics *m = calloc(1, sizeof(*m));
    char *list = strdup(s->inter != NULL ? s->inter : "127.0.0.1");
    if (m == NULL || list == NULL) {
        free(m);
        free(list);
        return EX_OSERR;
    }
    m->srv = srv;
    int rc = 0;
    char *save = NULL;
    for (char *tok = strtok_r(list, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        char *host;
        int ignored;
        if (listener_split_hostport(tok, 0, &host, &ignored) != 0) {
            fprintf(stderr, "Invalid listen address: %s\n", tok);
            rc = EX_USAGE;
            break;
        }
        if (open_one(m, strcmp(host, "*") == 0 || host[0] == '\0' ? NULL : host, s->metrics_port) !=
            0) {
            fprintf(stderr, "failed to listen on metrics port %d: %s\n", s->metrics_port,
                    strerror(errno));
            rc = EX_OSERR;
            break;
        }
    }
    free(list);
    if (rc != 0) {
        metrics_destroy(&m);
        return rc;
    }
    *out = m;
    return 0;
}

static void *metrics_thread(void *arg)
{
    struct metrics *m = arg;
    event_base_dispatch(m->base);
    return NULL;
}

int metrics_start(struct metrics *m)
{
    m->base = event_base_new();
    m->http = m->base != NULL ? evhttp_new(m->base) : NULL;
    if (m->http == NULL) {
        return -1;
    }
    /* Every method reaches http_cb, which answers 405 itself. */
    evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                            EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_timeout(m->http, 10);
    evhttp_set_max_headers_size(m->http, 16384);
    evhttp_set_max_body_size(m->http, 65536);
    evhttp_set_gencb(m->http, http_cb, m);
    for (int i = 0; i < m->nfds; i++) {
        if (evhttp_accept_socket(m->http, m->fds[i]) != 0) {
            /* evhttp closes those it took when it is freed; close the rest. */
            for (int j = i; j < m->nfds; j++) {
                close(m->fds[j]);
            }
            m->fds_handed = true;
            return -1;
        }
    }
    m->fds_handed = true;
    if (pthread_create(&m->thread, NULL, metrics_thread, m) != 0) {
        return -1;
    }
    m->running = true;
    if (log_enabled(LOG_INFO)) {
        log_msg(LOG_INFO, "metrics endpoint on port %d (GET /metrics)",
                m->srv->settings->metrics_port);
    }
    return 0;
}

void metrics_destroy(struct metrics **mp)
{
    struct metrics *m = *mp;
    if (m == NULL) {
        return;
    }
    if (m->running) {
        event_base_loopbreak(m->base);
        pthread_join(m->thread, NULL);
    }
    if (m->http != NULL) {
        evhttp_free(m->http);
    }
    if (m->base != NULL) {
        event_base_free(m->base);
    }
    if (!m->fds_handed) {
        for (int i = 0; i < m->nfds; i++) {
            close(m->fds[i]);
        }
    }
    free(m);
    *mp = NULL;
}

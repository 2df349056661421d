/*
 * top.h - `memstash top`: a live view of every server, refreshed every
 * interval: operations per second by command, hit ratio, memory, items,
 * evictions and connections, from the difference of two `stats` replies.
 */
#ifndef MEMSTASH_CLI_TOP_H
#define MEMSTASH_CLI_TOP_H

#include <stdbool.h>
#include <stdint.h>

struct mst;

struct top_opts {
    unsigned interval_ms; /* between frames (default 1000) */
    uint64_t frames;      /* frames to print; 0: until interrupted */
    bool json;            /* one JSON object per frame and line, no screen control */
};

/* Runs the view; returns 0, or 3 when no server answered a whole frame. */
int top_run(struct mst *m, const struct top_opts *o);

#endif

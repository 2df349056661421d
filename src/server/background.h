/*
 * background.h - the background thread: ticks the clock and drives the
 * storage engine's incremental work (hash table growth, expired-item
 * reclaim) in small slices, so workers never wait for it.
 */
#ifndef MEMSTASH_BACKGROUND_H
#define MEMSTASH_BACKGROUND_H

struct server;

int background_start(struct server *srv);
void background_stop(struct server *srv);

#endif

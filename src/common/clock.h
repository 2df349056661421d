/*
 * clock.h - the server clock in whole seconds, as memcached keeps it.
 *
 * rel_time_t counts seconds since the process started (starting at 2, so that
 * 1 can mean "already expired"). The clock is a value, not a global: the
 * server owns one and ticks it once a second from a monotonic source; tests
 * build one and set it to whatever time they need.
 */
#ifndef MEMSTASH_CLOCK_H
#define MEMSTASH_CLOCK_H

#include <stdint.h>
#include <time.h>

typedef uint32_t rel_time_t;

/* Longest relative expiry: 30 days. Larger exptimes are absolute unix times. */
#define CLOCK_REALTIME_MAXDELTA (60 * 60 * 24 * 30)

struct clock {
    time_t process_started;       /* unix time of rel_time_t 0 */
    struct timespec mono_started; /* monotonic reading at start */
    volatile rel_time_t current;  /* seconds since process_started */
};

/* Starts the clock at `unix_now` (pass time(NULL)); current becomes 2. */
void clock_init(struct clock *c, time_t unix_now);
/* Re-reads the monotonic clock and advances `current`; returns it. */
rel_time_t clock_tick(struct clock *c);
/* Sets the current time (tests). */
void clock_set(struct clock *c, rel_time_t now);

static inline rel_time_t clock_now(const struct clock *c)
{
    return __atomic_load_n(&c->current, __ATOMIC_RELAXED);
}

/* The unix time `current` stands for. */
time_t clock_unix(const struct clock *c);

/* Converts a protocol exptime to a rel_time_t, as memcached does:
 * 0 -> 0 (never); 1..30 days -> now + exptime; larger -> absolute unix time
 * (at or before the start -> 1, i.e. already expired); negative -> 1. */
rel_time_t clock_realtime(const struct clock *c, int64_t exptime);

/* The unix time a rel_time_t stands for (0 stays 0). */
time_t clock_to_unix(const struct clock *c, rel_time_t t);

#endif

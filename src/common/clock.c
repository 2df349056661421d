/*
 * clock.c - the server clock (see clock.h).
 */
#include "clock.h"

void clock_init(struct clock *c, time_t unix_now)
{
    c->process_started = unix_now - 2;
    clock_gettime(CLOCK_MONOTONIC, &c->mono_started);
    c->current = 2;
}

rel_time_t clock_tick(struct clock *c)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    rel_time_t now = (rel_time_t)(ts.tv_sec - c->mono_started.tv_sec) + 2;
    __atomic_store_n(&c->current, now, __ATOMIC_RELAXED);
    return now;
}

void clock_set(struct clock *c, rel_time_t now)
{
    __atomic_store_n(&c->current, now, __ATOMIC_RELAXED);
}

time_t clock_unix(const struct clock *c)
{
    return c->process_started + (time_t)clock_now(c);
}

rel_time_t clock_realtime(const struct clock *c, int64_t exptime)
{
    if (exptime == 0) {
        return 0;
    }
    if (exptime < 0) {
        return 1;
    }
    if (exptime > CLOCK_REALTIME_MAXDELTA) {
        if (exptime <= (int64_t)c->process_started) {
            return 1;
        }
        int64_t rel = exptime - (int64_t)c->process_started;
        return rel > UINT32_MAX ? UINT32_MAX : (rel_time_t)rel;
    }
    return (rel_time_t)(exptime + clock_now(c));
}

time_t clock_to_unix(const struct clock *c, rel_time_t t)
{
    return t == 0 ? 0 : c->process_started + (time_t)t;
}

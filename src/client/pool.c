/*
 * pool.c - a pool of handles for programs that share one configuration
 * between threads.
 *
 * A handle is used by one thread at a time; the pool lends them out. Handles
 * are cloned from the template on demand, up to the pool's size, and keep
 * their connections and health while they sit in the pool. The mutex guards
 * only the free list: no lock is held while a borrowed handle does I/O.
 */
#include "client_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

struct mst_pool {
    pthread_mutex_t lock;
    pthread_cond_t freed;
    struct mst *template_;
    struct mst **idle; /* handles ready to lend */
    size_t nidle;
    size_t created; /* handles in existence (idle + lent) */
    size_t max;
};

MST_API int mst_pool_create(const struct mst *tmpl, size_t max, struct mst_pool **out)
{
    if (!tmpl || !out || max == 0) {
        return MST_EINVAL;
    }
    *out = NULL;
    struct mst_pool *p = calloc(1, sizeof(*p));
    if (!p) {
        return MST_ENOMEM;
    }
    p->idle = calloc(max, sizeof(*p->idle));
    if (!p->idle || mst_clone(tmpl, &p->template_) != MST_OK) {
        free(p->idle);
        free(p);
        return MST_ENOMEM;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->freed, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&p->lock, NULL);
    p->max = max;
    *out = p;
    return MST_OK;
}

MST_API int mst_pool_borrow(struct mst_pool *p, unsigned wait_ms, struct mst **out)
{
    if (!p || !out) {
        return MST_EINVAL;
    }
    *out = NULL;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += wait_ms / 1000;
    until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    bool timed_out = false;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        if (p->nidle > 0) {
            *out = p->idle[--p->nidle];
            pthread_mutex_unlock(&p->lock);
            return MST_OK;
        }
        if (p->created < p->max) {
            p->created++;
            pthread_mutex_unlock(&p->lock);
            /* Cloning allocates; do it outside the lock. */
            int rc = mst_clone(p->template_, out);
            if (rc != MST_OK) {
                pthread_mutex_lock(&p->lock);
                p->created--;
                pthread_cond_signal(&p->freed);
                pthread_mutex_unlock(&p->lock);
            }
            return rc;
        }
        if (wait_ms == 0 || timed_out) {
            pthread_mutex_unlock(&p->lock);
            return MST_ETIMEOUT;
        }
        if (pthread_cond_timedwait(&p->freed, &p->lock, &until) == ETIMEDOUT) {
            timed_out = true; /* one last look, then give up */
        }
    }
}

MST_API void mst_pool_return(struct mst_pool *p, struct mst **m)
{
    if (!p || !m || !*m) {
        return;
    }
    pthread_mutex_lock(&p->lock);
    if (p->nidle < p->max) {
        p->idle[p->nidle++] = *m;
        *m = NULL;
    }
    pthread_cond_signal(&p->freed);
    pthread_mutex_unlock(&p->lock);
    if (*m) {
        mst_destroy(m); /* not one of ours: the pool is full */
    }
}

MST_API void mst_pool_destroy(struct mst_pool **pp)
{
    if (!pp || !*pp) {
        return;
    }
    struct mst_pool *p = *pp;
    for (size_t i = 0; i < p->nidle; i++) {
        mst_destroy(&p->idle[i]);
    }
    mst_destroy(&p->template_);
    free(p->idle);
    pthread_cond_destroy(&p->freed);
    pthread_mutex_destroy(&p->lock);
    free(p);
    *pp = NULL;
}

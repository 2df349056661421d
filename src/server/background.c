/*
 * background.c - the clock and storage maintenance thread (see background.h).
 */
#include "background.h"

#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#include "server.h"

static pthread_t bg_thread;
static pthread_mutex_t bg_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t bg_cond = PTHREAD_COND_INITIALIZER;
static bool bg_stop;
static bool bg_running;

static void *background_main(void *arg)
{
    struct server *srv = arg;
    pthread_mutex_lock(&bg_lock);
    while (!bg_stop) {
        pthread_mutex_unlock(&bg_lock);
        rel_time_t now = clock_tick(&srv->clock);
        /* Slices of maintenance while there is work, for at most ~10 ms at
         * a time; each slice holds locks only briefly. */
        bool more = false;
        struct timespec start, t;
        clock_gettime(CLOCK_MONOTONIC, &start);
        do {
            more = storage_maintain(srv->storage, now);
            clock_gettime(CLOCK_MONOTONIC, &t);
        } while (more &&
                 (t.tv_sec - start.tv_sec) * 1000000000L + (t.tv_nsec - start.tv_nsec) < 10000000L);
        pthread_mutex_lock(&bg_lock);
        if (bg_stop) {
            break;
        }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        long ns = more ? 1000000L : 100000000L; /* 1 ms when busy, else 100 ms */
        until.tv_nsec += ns;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&bg_cond, &bg_lock, &until);
    }
    pthread_mutex_unlock(&bg_lock);
    return NULL;
}

int background_start(struct server *srv)
{
    bg_stop = false;
    if (pthread_create(&bg_thread, NULL, background_main, srv) != 0) {
        return -1;
    }
    bg_running = true;
    return 0;
}

void background_stop(struct server *srv)
{
    (void)srv;
    if (!bg_running) {
        return;
    }
    pthread_mutex_lock(&bg_lock);
    bg_stop = true;
    pthread_cond_signal(&bg_cond);
    pthread_mutex_unlock(&bg_lock);
    pthread_join(bg_thread, NULL);
    bg_running = false;
}

/*
 * udp.h - memcached's UDP transport: framed single-datagram requests,
 * replies cut into datagrams of at most 1400 bytes.
 */
#ifndef MEMSTASH_UDP_H
#define MEMSTASH_UDP_H

struct server;
struct worker;

/* Binds one SO_REUSEPORT socket per worker on each -l address at the -U
 * port (nothing when -U is 0 or -s is given). Returns 0 or an exit code. */
int udp_open(struct server *srv);
/* Serves UDP socket fd from worker w; the connection then owns the fd. */
int udp_attach(struct worker *w, int fd);
/* Closes sockets no worker took. */
void udp_close(struct server *srv);

#endif

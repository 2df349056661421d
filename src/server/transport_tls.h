/*
 * transport_tls.h - TLS (-Z) through OpenSSL, as a transport (transport.h).
 *
 * One struct tls_ctx per server holds the current SSL_CTX, built from the
 * -o ssl_* settings. tls_ctx_refresh() ("refresh_certs") builds a new one
 * from the same files and swaps it in under a lock: connections keep the
 * SSL_CTX they started with (OpenSSL counts its references), new ones get
 * the new certificates.
 */
#ifndef MEMSTASH_TRANSPORT_TLS_H
#define MEMSTASH_TRANSPORT_TLS_H

#include <stddef.h>

#include "settings.h"
#include "transport.h"

struct tls_ctx;

extern const struct transport transport_tls;

/* Builds the context from s. On failure prints memcached's message to
 * stderr and returns NULL. s must outlive the context. */
struct tls_ctx *tls_ctx_create(const struct settings *s);
void tls_ctx_destroy(struct tls_ctx **ctx);
/* Reloads the certificate files. Returns 0, or -1 with a message in err. */
int tls_ctx_refresh(struct tls_ctx *ctx, char *err, size_t errlen);
/* A server-side session on socket fd, the state transport_tls works on;
 * NULL on failure. Owned by the connection; transport_tls.close frees it. */
void *tls_session_create(struct tls_ctx *ctx, int fd);

#endif

/*
 * transport_tls.c - the TLS transport: OpenSSL over a non-blocking socket.
 *
 * The handshake is not a separate step: the session is put in accept state
 * and the first SSL_read() runs it, so a connection looks the same to
 * conn.c before and after it. OpenSSL writes one buffer at a time, so the
 * connection's iovecs are copied into a per-session buffer of -o
 * ssl_wbuf_size bytes (memcached does the same); after a write that would
 * block, that buffer is offered again unchanged, as OpenSSL requires.
 */
#include "transport_tls.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

struct tls_ctx {
    const struct settings *s;
    pthread_mutex_t lock; /* guards cur */
    SSL_CTX *cur;
};

struct tls_session {
    SSL *ssl;
    char *wbuf;
    size_t wcap;
    size_t retry; /* bytes of wbuf a blocked write must offer again; 0: none */
};

static void last_error(char *err, size_t errlen, const char *what, const char *file)
{
    unsigned long e = ERR_get_error();
    char reason[256];
    ERR_error_string_n(e, reason, sizeof(reason));
    if (file != NULL) {
        snprintf(err, errlen, "%s: %s : %s", what, file, reason);
    } else {
        snprintf(err, errlen, "%s: %s", what, reason);
    }
    ERR_clear_error();
}

/* A fresh SSL_CTX from the settings' files; NULL with a message in err. */
static SSL_CTX *ctx_build(const struct settings *s, char *err, size_t errlen)
{
    static const int versions[] = {TLS1_VERSION, TLS1_1_VERSION, TLS1_2_VERSION, TLS1_3_VERSION};
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        last_error(err, errlen, "Failed to create the SSL context", NULL);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, versions[s->ssl_min_version]);
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    const char *key = s->ssl_key != NULL ? s->ssl_key : s->ssl_chain_cert;
    if (s->ssl_chain_cert == NULL ||
        SSL_CTX_use_certificate_chain_file(ctx, s->ssl_chain_cert) != 1) {
        last_error(err, errlen, "Error loading the certificate chain",
                   s->ssl_chain_cert != NULL ? s->ssl_chain_cert : "(null)");
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, s->ssl_keyformat) != 1) {
        last_error(err, errlen, "Error loading the key", key);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        last_error(err, errlen, "Error validating the certificate", NULL);
        goto fail;
    }
    if (s->ssl_ca_cert != NULL) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(s->ssl_ca_cert);
        if (names == NULL || SSL_CTX_load_verify_locations(ctx, s->ssl_ca_cert, NULL) != 1) {
            if (names != NULL) {
                sk_X509_NAME_pop_free(names, X509_NAME_free);
            }
            last_error(err, errlen, "Error loading the CA certificate", s->ssl_ca_cert);
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
    }
    if (s->ssl_ciphers != NULL && SSL_CTX_set_cipher_list(ctx, s->ssl_ciphers) != 1) {
        last_error(err, errlen, "Error setting the provided cipher(s)", s->ssl_ciphers);
        goto fail;
    }
    static const int modes[] = {
        SSL_VERIFY_NONE,
        SSL_VERIFY_PEER,
        SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
        SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE,
    };
    SSL_CTX_set_verify(ctx, modes[s->ssl_verify_mode], NULL);
    static const unsigned char sid[] = "memstash";
    SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
    /* As memcached: the option turns on the server-side cache; session
     * tickets (stateless resumption) are OpenSSL's default either way. */
    SSL_CTX_set_session_cache_mode(ctx, s->ssl_session_cache ? SSL_SESS_CACHE_SERVER
                                                             : SSL_SESS_CACHE_OFF);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

struct tls_ctx *tls_ctx_create(const struct settings *s)
{
    char err[512];
    SSL_CTX *ctx = ctx_build(s, err, sizeof(err));
    if (ctx == NULL) {
        fprintf(stderr, "%s\n", err);
        return NULL;
    }
    struct tls_ctx *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    t->s = s;
    t->cur = ctx;
    pthread_mutex_init(&t->lock, NULL);
    return t;
}

void tls_ctx_destroy(struct tls_ctx **tp)
{
    struct tls_ctx *t = *tp;
    if (t == NULL) {
        return;
    }
    SSL_CTX_free(t->cur);
    pthread_mutex_destroy(&t->lock);
    free(t);
    *tp = NULL;
}

int tls_ctx_refresh(struct tls_ctx *t, char *err, size_t errlen)
{
    SSL_CTX *ctx = ctx_build(t->s, err, errlen);
    if (ctx == NULL) {
        return -1;
    }
    pthread_mutex_lock(&t->lock);
    SSL_CTX *old = t->cur;
    t->cur = ctx;
    pthread_mutex_unlock(&t->lock);
    SSL_CTX_free(old); /* sessions still using it hold their own reference */
    return 0;
}

void *tls_session_create(struct tls_ctx *t, int fd)
{
    struct tls_session *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    pthread_mutex_lock(&t->lock);
    s->ssl = SSL_new(t->cur);
    pthread_mutex_unlock(&t->lock);
    s->wcap = (size_t)t->s->ssl_wbuf_size;
    if (s->ssl == NULL || SSL_set_fd(s->ssl, fd) != 1) {
        SSL_free(s->ssl);
        free(s);
        return NULL;
    }
    SSL_set_accept_state(s->ssl);
    return s;
}

/* Maps an OpenSSL failure to the read(2)/writev(2) conventions. */
static ssize_t tls_fail(SSL *ssl, int rc)
{
    switch (SSL_get_error(ssl, rc)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        if (errno == 0) {
            errno = ECONNRESET;
        }
        ERR_clear_error();
        return -1;
    default:
        /* A failed handshake (no client certificate, old protocol...) or a
         * corrupt record: the connection cannot continue. */
        ERR_clear_error();
        errno = ECONNABORTED;
        return -1;
    }
}

static ssize_t tls_read(struct transport_conn *tc, void *buf, size_t len)
{
    struct tls_session *s = tc->state;
    ERR_clear_error();
    errno = 0;
    int n = SSL_read(s->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
    if (n > 0) {
        return n;
    }
    return tls_fail(s->ssl, n);
}

static ssize_t tls_writev(struct transport_conn *tc, const struct iovec *iov, int iovcnt)
{
    struct tls_session *s = tc->state;
    if (s->wbuf == NULL) {
        s->wbuf = malloc(s->wcap);
        if (s->wbuf == NULL) {
            errno = ENOMEM;
            return -1;
        }
    }
    size_t n = s->retry;
    if (n == 0) {
        for (int i = 0; i < iovcnt && n < s->wcap; i++) {
            size_t take = iov[i].iov_len;
            if (take > s->wcap - n) {
                take = s->wcap - n;
            }
            memcpy(s->wbuf + n, iov[i].iov_base, take);
            n += take;
        }
        if (n == 0) {
            return 0;
        }
    }
    ERR_clear_error();
    errno = 0;
    int w = SSL_write(s->ssl, s->wbuf, (int)n);
    if (w > 0) {
        s->retry = 0;
        return w;
    }
    ssize_t r = tls_fail(s->ssl, w);
    if (r < 0 && errno == EAGAIN) {
        s->retry = n;
    } else if (r == 0) {
        errno = EPIPE;
        r = -1;
    }
    return r;
}

static bool tls_pending(const struct transport_conn *tc)
{
    const struct tls_session *s = tc->state;
    return SSL_pending(s->ssl) > 0;
}

static void tls_close(struct transport_conn *tc)
{
    struct tls_session *s = tc->state;
    if (s != NULL) {
        if (SSL_is_init_finished(s->ssl)) {
            SSL_shutdown(s->ssl); /* best effort: one close_notify, no waiting */
        }
        SSL_free(s->ssl);
        free(s->wbuf);
        free(s);
        tc->state = NULL;
    }
    ERR_clear_error();
    close(tc->fd);
    tc->fd = -1;
}

const struct transport transport_tls = {
    .name = "tls",
    .read = tls_read,
    .writev = tls_writev,
    .pending = tls_pending,
    .close = tls_close,
};

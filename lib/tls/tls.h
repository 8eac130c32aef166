/*
 * TLS on mbedtls 2.28 (TLS 1.2; it has no 1.3): the credentials, which hold
 * the mbedtls configuration every connection made with them shares
 * (creds.c); the TLS byte stream, which wraps an open socket stream in
 * place so that the transport never knows it reads and writes through TLS
 * (stream.c); what a handshake established about the peer (auth.c); and
 * the process's random generator (rng.c).
 *
 * Loop thread only, except the credentials' reference counts and the
 * generator, which are thread-safe: one credentials object may serve loops
 * on several threads.
 */
#ifndef UVG_TLS_TLS_H
#define UVG_TLS_TLS_H

#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>
#include <stdatomic.h>

#include "../../loop/stream.h"

/* ---- credentials (creds.c) ---- */

/* A credentials object's configuration. The insecure credentials are
 * static objects with `insecure` set and nothing else used. */
typedef struct {
  atomic_uint refs;
  uint8_t insecure;
  uint8_t is_server;
  uint8_t client_cert; /* server: uvg_client_cert_t */
  mbedtls_ssl_config conf;
  mbedtls_x509_crt ca; /* roots (client), client CAs (server) */
  mbedtls_x509_crt chain;
  mbedtls_pk_context key;
  char *server_name; /* client: the override, or NULL */
} uvg__tls_config_t;

/* The public credentials types are their configuration. */
struct uvg_server_credentials_s {
  uvg__tls_config_t cfg;
};
struct uvg_channel_credentials_s {
  uvg__tls_config_t cfg;
};

/* Takes a reference (thread-safe; the insecure ones are not counted).
 * Returns cfg. */
uvg__tls_config_t *uvg__tls_config_ref(uvg__tls_config_t *cfg);
/* Drops a reference; the last one frees the credentials. NULL: no-op. */
void uvg__tls_config_unref(uvg__tls_config_t *cfg);

/* ---- the peer's authentication (auth.c) ---- */

/* What a handshake established, in one allocation, refcounted (loop
 * thread): the connection holds one reference and each call on it one, so
 * a call's view outlives the connection. */
typedef struct uvg__auth_s uvg__auth_t;

/* Builds the view of a finished handshake; `server_name` is the SNI a
 * server received or the name a client verified (may be NULL). Returns
 * NULL when out of memory. */
uvg__auth_t *uvg__auth_new(const mbedtls_ssl_context *ssl,
                           const char *server_name, int is_server);
/* Takes a reference; NULL stays NULL. */
uvg__auth_t *uvg__auth_ref(uvg__auth_t *a);
/* Drops a reference; NULL: no-op. */
void uvg__auth_unref(uvg__auth_t *a);
/* The public view; for NULL (plaintext) an all-zero one. */
const uvg_auth_info_t *uvg__auth_info(const uvg__auth_t *a);

/* ---- the TLS byte stream (stream.c) ---- */

/* The TLS stream carves this much off the top of the owner's read buffer
 * for decrypted bytes, so its read buffer must be at least twice as
 * large. */
#define UVG__TLS_PLAIN_MAX MBEDTLS_SSL_IN_CONTENT_LEN

/* Turns the open socket stream `s` (its callbacks and read buffer set, not
 * reading yet) into a TLS stream with the configuration `cfg` (a reference
 * is taken): a server's when cfg->is_server, else a client's, which
 * verifies the server's certificate against `server_name` (an IP literal
 * is matched against the certificate's IP SANs and not sent as SNI). From
 * here on s->ops are TLS's and s->cbs get plaintext; the handshake runs as
 * the owner reads (a client sends its ClientHello at once), and writes
 * made before it finishes are held until it has. A failed handshake is
 * reported to the owner as a read error (UV_EPROTO, or UV_EOF when the
 * peer hung up) whose reason s->ops->error() gives, after the alert that
 * tells the peer has been written. Returns 0; UVG_EINVAL (read buffer
 * shorter than 2 * UVG__TLS_PLAIN_MAX); UVG_ENOMEM: then `s` is unchanged,
 * a plain socket stream the caller closes. */
int uvg__tls_wrap(uvg__stream_t *s, uvg__tls_config_t *cfg,
                  const char *server_name);

/* The server's SNI callback (mbedtls_ssl_conf_sni): notes the name the
 * client asked for; any name is served. */
int uvg__tls_sni_cb(void *unused, mbedtls_ssl_context *ssl,
                    const unsigned char *name, size_t len);

/* The peer's authentication once the handshake is done; NULL for a
 * socket stream or before then. No reference is taken. */
uvg__auth_t *uvg__tls_auth(uvg__stream_t *s);

/* ---- randomness (rng.c) ---- */

/* mbedtls's f_rng: a CTR_DRBG for the whole process, seeded from the
 * kernel at first use and reseeded in a forked child before it gives out
 * anything. Thread-safe. Returns 0 or an mbedtls error. */
int uvg__tls_random(void *unused, unsigned char *out, size_t len);

#endif

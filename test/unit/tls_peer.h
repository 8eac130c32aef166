/*
 * A TLS client for tests that controls what uvgrpc's own channel would
 * never do: no ALPN or another protocol, renegotiation, a handshake that
 * stops halfway, raw bytes between records. mbedtls over a non-blocking
 * socket; every wait runs the test's loop, so the server under test, on
 * that loop, makes progress meanwhile. tp_unary() sends one gRPC request
 * over it with nghttp2.
 */
#ifndef UVG_TEST_TLS_PEER_H
#define UVG_TEST_TLS_PEER_H

#include <mbedtls/ssl.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct {
  const char *ca;           /* PEM; NULL: the server is not verified */
  const char *cert, *key;   /* PEM client certificate, or NULL */
  const char *const *alpn;  /* NULL-terminated; NULL: no ALPN extension */
  const char *hostname;     /* SNI and the name verified; may be NULL */
  int renegotiation;        /* 1: renegotiation enabled on this side */
  int max_minor;            /* nonzero: newest TLS 1.x minor version (2 = 1.1) */
} tp_opts_t;

typedef struct {
  uv_loop_t *loop;
  int fd;
  int eof; /* the server closed its end */
  int app_records; /* application data records received */
  int recv_errno;  /* why the socket failed, when it did */
  uint8_t hdr[5];
  size_t hdr_len, rec_left;
  mbedtls_ssl_context ssl;
  mbedtls_ssl_config conf;
  mbedtls_x509_crt ca, cert;
  mbedtls_pk_context key;
} tp_t;

/* TCP-connects to 127.0.0.1:port (no TLS yet). Returns 0 or -1. */
int tp_connect(tp_t *p, uv_loop_t *loop, int port, const tp_opts_t *o);
/* Runs the handshake, the loop turning meanwhile, for up to timeout_ms.
 * Returns 0 or the mbedtls error (MBEDTLS_ERR_SSL_TIMEOUT when time ran
 * out). */
int tp_handshake(tp_t *p, int timeout_ms);
/* Runs handshake steps until mbedtls has written its first flight and
 * waits for the server: the handshake stalls halfway. */
int tp_handshake_start(tp_t *p);
/* Writes application data (all of it). Returns 0 or an mbedtls error. */
int tp_write(tp_t *p, const void *buf, size_t n);
/* Writes bytes on the socket itself, around TLS. */
void tp_write_raw(tp_t *p, const void *buf, size_t n);
/* Reads application data, waiting up to timeout_ms: returns bytes read,
 * 0 at the server's close (close_notify or EOF), or an mbedtls error
 * (MBEDTLS_ERR_SSL_TIMEOUT: nothing came). */
int tp_read(tp_t *p, uint8_t *buf, size_t cap, int timeout_ms);
/* 1 if the server ends the connection within timeout_ms (reading and
 * dropping whatever comes), else 0. */
int tp_wait_closed(tp_t *p, int timeout_ms);
/* Sends the HTTP/2 client preface and an empty SETTINGS frame: an idle
 * HTTP/2 connection from here on. Returns 0 or an mbedtls error. */
int tp_h2_preface(tp_t *p);
/* Starts a renegotiation (a ClientHello inside the session). Returns what
 * mbedtls_ssl_renegotiate() returns at first. */
int tp_renegotiate(tp_t *p);
/* One gRPC unary call over the connection (its own HTTP/2 session): the
 * preface, `path`, the message `msg`; waits up to timeout_ms. Returns the
 * grpc-status (-1 when none came) and the response's DATA bytes (the
 * message and its 5-byte prefix) in *reply_len. */
int tp_unary(tp_t *p, const char *path, const uint8_t *msg, size_t len,
             size_t *reply_len, int timeout_ms);
void tp_close(tp_t *p);

/* Runs the loop and waits for the socket for about a millisecond. */
void tp_pump(tp_t *p);

#endif

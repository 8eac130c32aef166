/* A controllable TLS client for tests; see tls_peer.h. */
#include "tls_peer.h"

#include <errno.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tls/tls.h"

void tp_pump(tp_t *p) {
  uv_run(p->loop, UV_RUN_NOWAIT);
  struct pollfd pfd = {p->fd, POLLIN, 0};
  poll(&pfd, 1, 1);
  uv_run(p->loop, UV_RUN_NOWAIT);
}

static int bio_send(void *ctx, const unsigned char *buf, size_t len) {
  tp_t *p = ctx;
  ssize_t n = send(p->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
  if (n >= 0) return (int)n;
  if (errno == EAGAIN || errno == EINTR) return MBEDTLS_ERR_SSL_WANT_WRITE;
  return MBEDTLS_ERR_NET_SEND_FAILED;
}

/* Counts the records the server sends, by their headers. */
static void note_records(tp_t *p, const unsigned char *b, size_t n) {
  while (n > 0) {
    if (p->rec_left > 0) {
      size_t k = n < p->rec_left ? n : p->rec_left;
      p->rec_left -= k;
      b += k;
      n -= k;
      continue;
    }
    p->hdr[p->hdr_len++] = *b++;
    n--;
    if (p->hdr_len == 5) {
      p->hdr_len = 0;
      p->rec_left = (size_t)p->hdr[3] << 8 | p->hdr[4];
      if (p->hdr[0] == 23) p->app_records++;
    }
  }
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len) {
  tp_t *p = ctx;
  ssize_t n = recv(p->fd, buf, len, MSG_DONTWAIT);
  if (n > 0) note_records(p, buf, (size_t)n);
  if (n > 0) return (int)n;
  if (n == 0) {
    p->eof = 1;
    return MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY; /* EOF: closed either way */
  }
  if (errno == EAGAIN || errno == EINTR) return MBEDTLS_ERR_SSL_WANT_READ;
  p->eof = 1;
  p->recv_errno = errno;
  return MBEDTLS_ERR_NET_RECV_FAILED;
}

int tp_connect(tp_t *p, uv_loop_t *loop, int port, const tp_opts_t *o) {
  struct sockaddr_in a;
  memset(p, 0, sizeof(*p));
  p->loop = loop;
  mbedtls_ssl_init(&p->ssl);
  mbedtls_ssl_config_init(&p->conf);
  mbedtls_x509_crt_init(&p->ca);
  mbedtls_x509_crt_init(&p->cert);
  mbedtls_pk_init(&p->key);
  mbedtls_ssl_config_defaults(&p->conf, MBEDTLS_SSL_IS_CLIENT,
                              MBEDTLS_SSL_TRANSPORT_STREAM,
                              MBEDTLS_SSL_PRESET_DEFAULT);
  mbedtls_ssl_conf_rng(&p->conf, uvg__tls_random, NULL);
  if (o->ca != NULL) {
    mbedtls_x509_crt_parse(&p->ca, (const unsigned char *)o->ca,
                           strlen(o->ca) + 1);
    mbedtls_ssl_conf_ca_chain(&p->conf, &p->ca, NULL);
    mbedtls_ssl_conf_authmode(&p->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
  } else {
    mbedtls_ssl_conf_authmode(&p->conf, MBEDTLS_SSL_VERIFY_NONE);
  }
  if (o->cert != NULL) {
    mbedtls_x509_crt_parse(&p->cert, (const unsigned char *)o->cert,
                           strlen(o->cert) + 1);
    mbedtls_pk_parse_key(&p->key, (const unsigned char *)o->key,
                         strlen(o->key) + 1, NULL, 0);
    mbedtls_ssl_conf_own_cert(&p->conf, &p->cert, &p->key);
  }
  if (o->alpn != NULL)
    mbedtls_ssl_conf_alpn_protocols(&p->conf, (const char **)o->alpn);
  mbedtls_ssl_conf_renegotiation(
      &p->conf, o->renegotiation ? MBEDTLS_SSL_RENEGOTIATION_ENABLED
                                 : MBEDTLS_SSL_RENEGOTIATION_DISABLED);
  if (o->max_minor != 0) {
    mbedtls_ssl_conf_min_version(&p->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_1);
    mbedtls_ssl_conf_max_version(&p->conf, MBEDTLS_SSL_MAJOR_VERSION_3, o->max_minor);
  }
  mbedtls_ssl_setup(&p->ssl, &p->conf);
  if (o->hostname != NULL) mbedtls_ssl_set_hostname(&p->ssl, o->hostname);
  mbedtls_ssl_set_bio(&p->ssl, p, bio_send, bio_recv, NULL);
  p->fd = socket(AF_INET, SOCK_STREAM, 0);
  uv_ip4_addr("127.0.0.1", port, &a);
  if (p->fd < 0 || connect(p->fd, (struct sockaddr *)&a, sizeof(a)) != 0)
    return -1;
  /* as the server's sockets: no Nagle delay on a handshake's small flights */
  int one = 1;
  setsockopt(p->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return 0;
}

static uint64_t now_ms(tp_t *p) {
  uv_update_time(p->loop);
  return uv_now(p->loop);
}

int tp_handshake(tp_t *p, int timeout_ms) {
  uint64_t end = now_ms(p) + (uint64_t)timeout_ms;
  for (;;) {
    int rc = mbedtls_ssl_handshake(&p->ssl);
    if (rc != MBEDTLS_ERR_SSL_WANT_READ && rc != MBEDTLS_ERR_SSL_WANT_WRITE)
      return rc;
    if (now_ms(p) >= end) return MBEDTLS_ERR_SSL_TIMEOUT;
    tp_pump(p);
  }
}

int tp_handshake_start(tp_t *p) {
  for (int i = 0; i < 100; i++) {
    int rc = mbedtls_ssl_handshake_step(&p->ssl);
    if (rc == MBEDTLS_ERR_SSL_WANT_READ) return 0;
    if (rc != 0 && rc != MBEDTLS_ERR_SSL_WANT_WRITE) return rc;
  }
  return -1;
}

int tp_write(tp_t *p, const void *buf, size_t n) {
  const unsigned char *b = buf;
  while (n > 0) {
    int rc = mbedtls_ssl_write(&p->ssl, b, n);
    if (rc == MBEDTLS_ERR_SSL_WANT_WRITE || rc == MBEDTLS_ERR_SSL_WANT_READ) {
      tp_pump(p);
      continue;
    }
    if (rc < 0) return rc;
    b += rc;
    n -= (size_t)rc;
  }
  return 0;
}

void tp_write_raw(tp_t *p, const void *buf, size_t n) {
  const uint8_t *b = buf;
  while (n > 0) {
    ssize_t k = send(p->fd, b, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (k < 0 && (errno == EAGAIN || errno == EINTR)) {
      tp_pump(p);
      continue;
    }
    if (k < 0) return;
    b += k;
    n -= (size_t)k;
  }
}

int tp_read(tp_t *p, uint8_t *buf, size_t cap, int timeout_ms) {
  uint64_t end = now_ms(p) + (uint64_t)timeout_ms;
  for (;;) {
    int rc = mbedtls_ssl_read(&p->ssl, buf, cap);
    if (rc > 0) return rc;
    if (rc == 0 || rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) return 0;
    if (rc != MBEDTLS_ERR_SSL_WANT_READ && rc != MBEDTLS_ERR_SSL_WANT_WRITE)
      return rc;
    if (now_ms(p) >= end) return MBEDTLS_ERR_SSL_TIMEOUT;
    tp_pump(p);
  }
}

int tp_wait_closed(tp_t *p, int timeout_ms) {
  uint64_t end = now_ms(p) + (uint64_t)timeout_ms;
  uint8_t junk[4096];
  while (now_ms(p) < end) {
    ssize_t n = recv(p->fd, junk, sizeof(junk), MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return 1;
    tp_pump(p);
  }
  return 0;
}

int tp_renegotiate(tp_t *p) {
  return mbedtls_ssl_renegotiate(&p->ssl);
}

int tp_h2_preface(tp_t *p) {
  static const uint8_t preface[] =
      "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
      "\0\0\0\4\0\0\0\0\0"; /* empty SETTINGS */
  return tp_write(p, preface, sizeof(preface) - 1);
}

void tp_close(tp_t *p) {
  if (p->fd >= 0) close(p->fd);
  p->fd = -1;
  mbedtls_ssl_free(&p->ssl);
  mbedtls_ssl_config_free(&p->conf);
  mbedtls_x509_crt_free(&p->ca);
  mbedtls_x509_crt_free(&p->cert);
  mbedtls_pk_free(&p->key);
  uv_run(p->loop, UV_RUN_NOWAIT);
}

/* ---- one unary call over nghttp2 ---- */

typedef struct {
  tp_t *p;
  const uint8_t *body;
  size_t body_len, body_off;
  int status;
  size_t reply;
  int closed, failed;
} unary_t;

static ssize_t u_send(nghttp2_session *s, const uint8_t *data, size_t len,
                      int flags, void *ud) {
  unary_t *u = ud;
  (void)s;
  (void)flags;
  if (tp_write(u->p, data, len) != 0) {
    u->failed = 1;
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  return (ssize_t)len;
}

static int u_header(nghttp2_session *s, const nghttp2_frame *f,
                    const uint8_t *name, size_t nlen, const uint8_t *value,
                    size_t vlen, uint8_t flags, void *ud) {
  unary_t *u = ud;
  (void)s;
  (void)f;
  (void)flags;
  if (nlen == 11 && memcmp(name, "grpc-status", 11) == 0) {
    char v[8] = {0};
    memcpy(v, value, vlen < 7 ? vlen : 7);
    u->status = atoi(v);
  }
  return 0;
}

static int u_data(nghttp2_session *s, uint8_t flags, int32_t id,
                  const uint8_t *data, size_t len, void *ud) {
  unary_t *u = ud;
  (void)s;
  (void)flags;
  (void)id;
  (void)data;
  u->reply += len;
  return 0;
}

static int u_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud) {
  unary_t *u = ud;
  (void)s;
  (void)id;
  (void)code;
  u->closed = 1;
  return 0;
}

static ssize_t u_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
                      uint32_t *flags, nghttp2_data_source *src, void *ud) {
  unary_t *u = ud;
  (void)s;
  (void)id;
  (void)src;
  size_t n = u->body_len - u->body_off;
  if (n > len) n = len;
  memcpy(buf, u->body + u->body_off, n);
  u->body_off += n;
  if (u->body_off == u->body_len) *flags |= NGHTTP2_DATA_FLAG_EOF;
  return (ssize_t)n;
}

int tp_unary(tp_t *p, const char *path, const uint8_t *msg, size_t len,
             size_t *reply_len, int timeout_ms) {
  nghttp2_session_callbacks *cbs;
  nghttp2_session *s;
  unary_t u = {p, NULL, len + 5, 0, -1, 0, 0, 0};
  uint8_t *body = malloc(len + 5);
  body[0] = 0;
  body[1] = (uint8_t)(len >> 24);
  body[2] = (uint8_t)(len >> 16);
  body[3] = (uint8_t)(len >> 8);
  body[4] = (uint8_t)len;
  memcpy(body + 5, msg, len);
  u.body = body;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_send_callback(cbs, u_send);
  nghttp2_session_callbacks_set_on_header_callback(cbs, u_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, u_data);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, u_close);
  nghttp2_session_client_new(&s, cbs, &u);
  nghttp2_session_callbacks_del(cbs);
  /* windows large enough that flow control does not cut the server's
   * writes short */
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 24}};
  nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, iv, 1);
  nghttp2_session_set_local_window_size(s, NGHTTP2_FLAG_NONE, 0, 1 << 24);
  nghttp2_nv nv[] = {
#define NV(k, v) {(uint8_t *)(k), (uint8_t *)(v), strlen(k), strlen(v), 0}
      NV(":method", "POST"),
      NV(":scheme", "https"),
      NV(":path", path),
      NV(":authority", "localhost"),
      NV("content-type", "application/grpc"),
      NV("te", "trailers"),
#undef NV
  };
  nghttp2_data_provider dp = {.read_callback = u_read};
  nghttp2_submit_request(s, NULL, nv, 6, &dp, NULL);
  uint64_t end = now_ms(p) + (uint64_t)timeout_ms;
  uint8_t buf[16384];
  while (!u.closed && !u.failed && now_ms(p) < end) {
    nghttp2_session_send(s);
    int n = tp_read(p, buf, sizeof(buf), 5);
    if (n > 0) {
      nghttp2_session_mem_recv(s, buf, (size_t)n);
    } else if (n != MBEDTLS_ERR_SSL_TIMEOUT) {
      break;
    }
  }
  nghttp2_session_del(s);
  free(body);
  if (reply_len != NULL) *reply_len = u.reply;
  return u.status;
}

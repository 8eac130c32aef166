/*
 * The TLS byte stream: the loop/stream.h operations over an open socket
 * stream, on mbedtls, without blocking and without a thread.
 *
 * Reading: ciphertext lands in the owner's read buffer (the socket's
 * reads, as for a plain stream); mbedtls pulls it from there through the
 * BIO (bio_recv) and decrypts record by record into the top
 * UVG__TLS_PLAIN_MAX bytes of that same buffer, which the wrap took from
 * the socket: the owner lends one buffer per server or channel and
 * consumes every read at once, so decrypted bytes need no memory of the
 * connection's own. Each record's plaintext goes to the owner as one read.
 *
 * Writing: the owner's one write of a loop turn (an iovec array) is packed
 * into as few records as the record size allows (every record full but the
 * last), encrypted into a buffer, and leaves in one socket write. Records
 * mbedtls makes by itself (handshake flights, alerts, close_notify) join
 * the same buffer in order. Two buffers alternate: one in the socket write
 * in flight, the other collecting. The owner's write completes when the
 * socket write that carries its last byte does, so the owner's
 * backpressure holds as over a plain socket.
 *
 * The handshake runs as bytes arrive. Owner writes made before it ends are
 * held (copied; a connection's SETTINGS and first requests) and encrypted
 * once it has. A failed handshake writes its alert first and then reports
 * a read error whose reason error() gives, with a log line.
 */
#include <arpa/inet.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../../loop/buf.h"
#include "tls.h"

/* TLS record content types (RFC 5246 6.2.1). */
#define REC_ALERT 21
#define REC_HANDSHAKE 22
/* A buffer larger than this is freed after its write, so that a burst
 * does not stay with an idle connection. */
#define OUT_KEEP (16 * 1024)

typedef enum {
  OWNER_NONE,   /* the owner has no write outstanding */
  OWNER_HELD,   /* in `held`: the handshake is not done */
  OWNER_QUEUED, /* encrypted, in the collecting buffer */
  OWNER_FLYING  /* in the socket write in flight */
} owner_write_t;

typedef struct {
  mbedtls_ssl_context ssl;
  uvg__stream_t *s;
  uvg__tls_config_t *cfg;            /* a reference */
  const uvg__stream_ops_t *sock_ops; /* the socket's own */
  const uvg__stream_cbs_t *cbs;      /* the owner's */
  uint8_t *plain;                    /* decrypted bytes land here */
  const uint8_t *in;                 /* the read mbedtls is fed */
  size_t in_len;
  /* the record headers going by, to tell a renegotiation */
  uint8_t hdr[5];
  uint8_t hdr_len;
  size_t rec_left;
  uvg__bytes_t out[2]; /* out[fill] collects, the other is in flight */
  uvg__bytes_t held;
  uint8_t fill;
  uint8_t owner; /* owner_write_t */
  uint8_t is_server;
  uint8_t reading;
  uint8_t sock_writing;
  uint8_t handshake_done;
  uint8_t alpn_checked;
  uint8_t got_bytes;     /* the peer's first byte has arrived */
  uint8_t renegotiating; /* the peer sent a handshake record afterwards */
  uint8_t failed;
  uint8_t fail_pending; /* the owner is told once the alert is written */
  uint8_t shutdown_wanted, shut;
  uint8_t closing;
  int sent_alert; /* the description of a plaintext alert we sent, or -1 */
  int fail_code;  /* the read error the owner gets */
  char *name;     /* client: the name verified; server: the SNI */
  uint8_t ip[16]; /* client: a name that is an IP address */
  size_t ip_len;
  uvg__auth_t *auth;
  char peer[64];
  char error[320];
} tls_t;

static const uvg__stream_ops_t tls_ops;
static const uvg__stream_cbs_t sock_cbs;

/* ---- the BIO: what mbedtls reads and writes ---- */

/* Follows the record headers in the bytes mbedtls consumes. After the
 * handshake a handshake record from the peer can only be a renegotiation
 * (a ClientHello, or a server's HelloRequest). */
static void note_records(tls_t *t, const uint8_t *p, size_t n) {
  while (n > 0) {
    if (t->rec_left > 0) {
      size_t k = n < t->rec_left ? n : t->rec_left;
      t->rec_left -= k;
      p += k;
      n -= k;
      continue;
    }
    t->hdr[t->hdr_len++] = *p++;
    n--;
    if (t->hdr_len == sizeof(t->hdr)) {
      t->hdr_len = 0;
      t->rec_left = (size_t)t->hdr[3] << 8 | t->hdr[4];
      if (t->handshake_done && t->hdr[0] == REC_HANDSHAKE) t->renegotiating = 1;
    }
  }
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len) {
  tls_t *t = ctx;
  if (t->in_len == 0) return MBEDTLS_ERR_SSL_WANT_READ;
  size_t n = len < t->in_len ? len : t->in_len;
  memcpy(buf, t->in, n);
  note_records(t, t->in, n);
  t->in += n;
  t->in_len -= n;
  return (int)n;
}

static int bio_send(void *ctx, const unsigned char *buf, size_t len) {
  tls_t *t = ctx;
  /* an alert of our own before encryption starts: noted for the log */
  if (!t->handshake_done && len >= 7 && buf[0] == REC_ALERT && buf[4] == 2)
    t->sent_alert = buf[6];
  if (uvg__bytes_append(&t->out[t->fill], buf, len) != 0)
    return MBEDTLS_ERR_SSL_ALLOC_FAILED;
  return (int)len;
}

/* ---- writing to the socket ---- */

/* Hands the collected bytes to the socket unless a write is in flight.
 * Returns 0 or the socket's error. */
static int flush(tls_t *t) {
  uvg__bytes_t *b = &t->out[t->fill];
  if (t->sock_writing || t->closing || b->len == 0) return 0;
  uv_buf_t ub = uv_buf_init((char *)b->data, (unsigned)b->len);
  int rc = t->sock_ops->write(t->s, &ub, 1);
  if (rc != 0) return rc;
  t->fill ^= 1;
  t->sock_writing = 1;
  if (t->owner == OWNER_QUEUED) t->owner = OWNER_FLYING;
  return 0;
}

/* A wanted half-close goes out once every byte is handed to the socket
 * (libuv's shutdown itself waits for the write in flight). */
static void maybe_shutdown(tls_t *t) {
  if (!t->shutdown_wanted || t->shut || t->closing || t->out[t->fill].len > 0)
    return;
  t->shut = 1;
  t->sock_ops->shutdown(t->s);
}

/* ---- failing ---- */

static void stop_reading(tls_t *t) {
  if (!uv_is_closing(&t->s->h.handle)) uv_read_stop(&t->s->h.stream);
}

/* The owner learns of the failure once the alert has left. */
static void deliver_failure(tls_t *t) {
  if (!t->fail_pending || t->sock_writing || t->closing || !t->reading) return;
  t->fail_pending = 0;
  t->cbs->on_read(t->s, t->fail_code, NULL);
}

static void fail(tls_t *t, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(tls_t *t, int code, const char *fmt, ...) {
  char why[256];
  va_list ap;
  if (t->failed) return;
  va_start(ap, fmt);
  vsnprintf(why, sizeof(why), fmt, ap);
  va_end(ap);
  t->failed = 1;
  t->fail_code = code;
  t->fail_pending = 1;
  snprintf(t->error, sizeof(t->error), "%s: %s",
           t->handshake_done ? "TLS error" : "TLS handshake failed", why);
  uvg__log(UVG_LOG_WARN, "%s: %s", t->peer, t->error);
  stop_reading(t);
  if (flush(t) != 0) t->out[t->fill].len = 0; /* the alert is lost, no more */
  deliver_failure(t);
}

/* RFC 5246 7.2 and RFC 7301 3.2 alert names, for the log. */
static const char *alert_name(int d) {
  static const struct {
    int d;
    const char *name;
  } names[] = {
      {0, "close_notify"},
      {10, "unexpected_message"},
      {20, "bad_record_mac"},
      {22, "record_overflow"},
      {40, "handshake_failure"},
      {42, "bad_certificate"},
      {43, "unsupported_certificate"},
      {44, "certificate_revoked"},
      {45, "certificate_expired"},
      {46, "certificate_unknown"},
      {47, "illegal_parameter"},
      {48, "unknown_ca"},
      {49, "access_denied"},
      {50, "decode_error"},
      {51, "decrypt_error"},
      {70, "protocol_version"},
      {71, "insufficient_security"},
      {80, "internal_error"},
      {90, "user_canceled"},
      {100, "no_renegotiation"},
      {109, "missing_extension"},
      {110, "unsupported_extension"},
      {112, "unrecognized_name"},
      {116, "certificate_required"},
      {120, "no_application_protocol"},
  };
  for (size_t i = 0; i < UVG__ARRAY_SIZE(names); i++)
    if (names[i].d == d) return names[i].name;
  return "unknown alert";
}

/* Why a certificate was refused, from mbedtls's verification flags. */
static void describe_verify(tls_t *t, uint32_t flags, char *out, size_t cap) {
  static const struct {
    uint32_t flags;
    const char *text;
  } reasons[] = {
      {MBEDTLS_X509_BADCERT_EXPIRED, "it has expired"},
      {MBEDTLS_X509_BADCERT_FUTURE, "it is not valid yet"},
      {MBEDTLS_X509_BADCERT_NOT_TRUSTED, "it is not signed by a trusted CA"},
      {MBEDTLS_X509_BADCERT_REVOKED, "it is revoked"},
      {MBEDTLS_X509_BADCERT_MISSING, "none was sent"},
      {MBEDTLS_X509_BADCERT_KEY_USAGE | MBEDTLS_X509_BADCERT_EXT_KEY_USAGE |
           MBEDTLS_X509_BADCERT_NS_CERT_TYPE,
       "its key usage does not allow this use"},
      {MBEDTLS_X509_BADCERT_BAD_MD | MBEDTLS_X509_BADCERT_BAD_PK |
           MBEDTLS_X509_BADCERT_BAD_KEY,
       "its hash or key is not acceptable (too weak)"},
  };
  size_t n = (size_t)snprintf(out, cap, "the %s certificate is refused: ",
                              t->is_server ? "client's" : "server's");
  const char *sep = "";
  for (size_t i = 0; i < UVG__ARRAY_SIZE(reasons) && n < cap; i++)
    if (flags & reasons[i].flags) {
      n += (size_t)snprintf(out + n, cap - n, "%s%s", sep, reasons[i].text);
      sep = "; ";
    }
  if (flags & MBEDTLS_X509_BADCERT_CN_MISMATCH && n < cap) {
    n += (size_t)snprintf(out + n, cap - n, "%sit is not for \"%s\"", sep,
                          t->name ? t->name : "?");
    sep = "; ";
  }
  if (*sep == '\0' && n < cap)
    mbedtls_x509_crt_verify_info(out + n, cap - n, "", flags);
}

/* The reason of a failed handshake step, for the log and the owner. */
static void describe(tls_t *t, int rc, char *out, size_t cap) {
  uint32_t vr = mbedtls_ssl_get_verify_result(&t->ssl);
  switch (rc) {
    case MBEDTLS_ERR_X509_CERT_VERIFY_FAILED:
    case MBEDTLS_ERR_SSL_BAD_HS_CERTIFICATE:
      if (vr != 0 && vr != UINT32_MAX) {
        describe_verify(t, vr, out, cap);
        return;
      }
      break;
    case MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE:
      snprintf(out, cap, "the client sent no certificate, and one is required");
      return;
    case MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE:
      snprintf(out, cap, "the %s refused it with the alert %s%s",
               t->is_server ? "client" : "server",
               alert_name(t->ssl.in_msg != NULL ? t->ssl.in_msg[1] : -1),
               !t->is_server && t->ssl.client_auth && t->cfg->chain.version == 0
                   ? " (it asked for a client certificate, and this channel "
                     "has none)"
                   : "");
      return;
    case MBEDTLS_ERR_SSL_NO_CIPHER_CHOSEN:
      snprintf(out, cap,
               "no cipher suite in common (HTTP/2 allows only ECDHE with "
               "AES-GCM or ChaCha20-Poly1305, RFC 9113 9.2.2)");
      return;
    case MBEDTLS_ERR_SSL_BAD_HS_PROTOCOL_VERSION:
      snprintf(out, cap, "no TLS version in common (this side speaks TLS 1.2)");
      return;
    case MBEDTLS_ERR_SSL_BAD_HS_CLIENT_HELLO:
      if (t->sent_alert == MBEDTLS_SSL_ALERT_MSG_NO_APPLICATION_PROTOCOL)
        snprintf(out, cap,
                 "the client offers no ALPN protocol gRPC speaks (\"h2\" is "
                 "required)");
      else
        snprintf(out, cap, "malformed or unacceptable ClientHello");
      return;
    case MBEDTLS_ERR_SSL_INVALID_RECORD:
    case MBEDTLS_ERR_SSL_INVALID_MAC:
      snprintf(out, cap, "a malformed TLS record");
      return;
    case MBEDTLS_ERR_SSL_ALLOC_FAILED:
      snprintf(out, cap, "out of memory");
      return;
    default:
      break;
  }
  char text[128];
  mbedtls_strerror(rc, text, sizeof(text));
  snprintf(out, cap, "%s", text);
}

static void fail_mbedtls(tls_t *t, int rc) {
  char why[256];
  describe(t, rc, why, sizeof(why));
  /* mbedtls sends no alert for a missing client certificate: without one
   * the client would only see the connection close */
  if (rc == MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE)
    mbedtls_ssl_send_alert_message(&t->ssl, MBEDTLS_SSL_ALERT_LEVEL_FATAL,
                                   MBEDTLS_SSL_ALERT_MSG_HANDSHAKE_FAILURE);
  fail(t, UV_EPROTO, "%s", why);
}

/* The first bytes of a peer that does not speak TLS say what it speaks. */
static int check_first_bytes(tls_t *t, const uint8_t *p, size_t n) {
  static const char preface[] = "PRI * HTTP/2.0";
  if (p[0] == REC_HANDSHAKE || p[0] == REC_ALERT) return 0;
  size_t k = n < sizeof(preface) - 1 ? n : sizeof(preface) - 1;
  if (memcmp(p, preface, k) == 0) {
    /* An h2c client: tell it in its own terms, SETTINGS then GOAWAY
     * INADEQUATE_SECURITY with a reason, written in the clear before the
     * failure closes the connection. */
    static const char frames[] =
        "\0\0\0\x04\0\0\0\0\0"   /* SETTINGS, empty */
        "\0\0\x1e\x07\0\0\0\0\0" /* GOAWAY, 8 + 22 bytes: */
        "\0\0\0\0\0\0\0\x0c"      /* last stream 0, INADEQUATE_SECURITY */
        "this port requires TLS";
    if (t->is_server)
      uvg__bytes_append(&t->out[t->fill], frames, sizeof(frames) - 1);
    fail(t, UV_EPROTO,
         "the client sent plaintext HTTP/2 to a TLS port (a channel "
         "without TLS credentials?)");
  } else if (!t->is_server && p[0] == 0) {
    fail(t, UV_EPROTO,
         "the server answered with plaintext HTTP/2, not TLS (a "
         "server without TLS credentials?)");
  } else if (p[0] >= 'A' && p[0] <= 'Z') {
    fail(t, UV_EPROTO, "the %s sent plaintext (HTTP/1?), not TLS",
         t->is_server ? "client" : "server");
  } else {
    fail(t, UV_EPROTO, "the %s's first bytes are not a TLS record (0x%02x)",
         t->is_server ? "client" : "server", p[0]);
  }
  return -1;
}

/* ---- the handshake ---- */

/* mbedtls_ssl_handshake() step by step, so that ALPN is checked as soon as
 * the hello carrying it is read, before this side sends anything more:
 * gRPC needs "h2", and a peer that negotiates nothing is refused with the
 * alert RFC 7301 3.2 names. (A peer offering only other protocols never
 * gets this far: mbedtls refuses it with that alert.) */
static int handshake_steps(tls_t *t) {
  while (t->ssl.state != MBEDTLS_SSL_HANDSHAKE_OVER) {
    int rc = mbedtls_ssl_handshake_step(&t->ssl);
    if (rc != 0) return rc;
    int hello_read = t->ssl.state > (t->is_server ? MBEDTLS_SSL_CLIENT_HELLO
                                                  : MBEDTLS_SSL_SERVER_HELLO);
    if (!t->alpn_checked && hello_read) {
      t->alpn_checked = 1;
      const char *p = mbedtls_ssl_get_alpn_protocol(&t->ssl);
      if (p == NULL || strcmp(p, "h2") != 0) {
        mbedtls_ssl_send_alert_message(
            &t->ssl, MBEDTLS_SSL_ALERT_LEVEL_FATAL,
            MBEDTLS_SSL_ALERT_MSG_NO_APPLICATION_PROTOCOL);
        fail(t, UV_EPROTO,
             "the %s negotiated no ALPN protocol (gRPC requires \"h2\")",
             t->is_server ? "client" : "server");
        return -1;
      }
    }
  }
  return 0;
}

static int encrypt(tls_t *t, const uv_buf_t *bufs, unsigned n);

/* Runs the handshake on what has arrived. Returns 1 once it is done, 0
 * while it waits for the peer, -1 when it failed (the owner is told). */
static int drive_handshake(tls_t *t) {
  int rc = handshake_steps(t);
  if (t->failed) return -1;
  if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE) {
    if (flush(t) != 0) fail(t, UV_EPIPE, "cannot write to the socket");
    return t->failed ? -1 : 0;
  }
  if (rc != 0) {
    fail_mbedtls(t, rc);
    return -1;
  }
  /* UVG_CLIENT_CERT_REQUEST: mbedtls let any certificate in (OPTIONAL);
   * one that was sent must verify all the same */
  uint32_t vr = mbedtls_ssl_get_verify_result(&t->ssl);
  if (t->is_server && t->cfg->client_cert == UVG_CLIENT_CERT_REQUEST &&
      mbedtls_ssl_get_peer_cert(&t->ssl) != NULL && vr != 0) {
    char why[256];
    describe_verify(t, vr, why, sizeof(why));
    mbedtls_ssl_send_alert_message(&t->ssl, MBEDTLS_SSL_ALERT_LEVEL_FATAL,
                                   vr & MBEDTLS_X509_BADCERT_EXPIRED
                                       ? MBEDTLS_SSL_ALERT_MSG_CERT_EXPIRED
                                   : vr & MBEDTLS_X509_BADCERT_NOT_TRUSTED
                                       ? MBEDTLS_SSL_ALERT_MSG_UNKNOWN_CA
                                       : MBEDTLS_SSL_ALERT_MSG_BAD_CERT);
    fail(t, UV_EPROTO, "%s", why);
    return -1;
  }
  if ((t->auth = uvg__auth_new(&t->ssl, t->name, t->is_server)) == NULL) {
    fail(t, UVG_ENOMEM, "out of memory");
    return -1;
  }
  t->handshake_done = 1;
  UVG__TRACE(UVG__TRACE_TLS, "%s: TLS handshake done: %s, %s, ALPN %s%s%s",
             t->peer, mbedtls_ssl_get_version(&t->ssl),
             mbedtls_ssl_get_ciphersuite(&t->ssl),
             mbedtls_ssl_get_alpn_protocol(&t->ssl),
             uvg__auth_info(t->auth)->peer_subject ? ", peer " : "",
             uvg__auth_info(t->auth)->peer_subject
                 ? uvg__auth_info(t->auth)->peer_subject
                 : "");
  if (t->owner == OWNER_HELD) {
    uv_buf_t b = uv_buf_init((char *)t->held.data, (unsigned)t->held.len);
    rc = encrypt(t, &b, 1);
    uvg__bytes_free(&t->held);
    if (rc != 0) {
      fail(t, rc, "out of memory");
      return -1;
    }
    t->owner = OWNER_QUEUED;
  }
  if (flush(t) != 0) {
    fail(t, UV_EPIPE, "cannot write to the socket");
    return -1;
  }
  return 1;
}

/* ---- reading ---- */

/* Decrypts what has arrived, one record's plaintext per owner read. */
static void read_records(tls_t *t) {
  for (;;) {
    int n = mbedtls_ssl_read(&t->ssl, t->plain, UVG__TLS_PLAIN_MAX);
    if (t->renegotiating) {
      /* mbedtls has refused it with a warning; HTTP/2 ends the connection */
      fail(t, UV_EPROTO,
           "the peer attempted a renegotiation, which HTTP/2 forbids (RFC "
           "9113 9.2.1)");
      return;
    }
    if (n > 0) {
      t->cbs->on_read(t->s, n, t->plain);
      if (t->closing || t->failed || !t->reading) return;
      continue;
    }
    if (n == MBEDTLS_ERR_SSL_WANT_READ) break;
    if (n == 0 || n == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
      stop_reading(t);
      t->cbs->on_read(t->s, UV_EOF, NULL);
      return;
    }
    fail_mbedtls(t, n);
    return;
  }
  if (flush(t) != 0) fail(t, UV_EPIPE, "cannot write to the socket");
}

static void on_sock_read(uvg__stream_t *s, ssize_t nread, const uint8_t *buf) {
  tls_t *t = s->layer;
  if (t->failed || t->closing) return;
  if (nread < 0) {
    if (!t->handshake_done) {
      if (nread == UV_EOF)
        fail(t, UV_EOF, "the %s closed the connection during the handshake%s",
             t->is_server ? "client" : "server",
             t->is_server ? "" : " (is it a TLS server?)");
      else
        fail(t, (int)nread, "reading failed during the handshake: %s",
             uv_strerror((int)nread));
      return;
    }
    t->cbs->on_read(s, nread, NULL);
    return;
  }
  if (!t->got_bytes) {
    t->got_bytes = 1;
    if (check_first_bytes(t, buf, (size_t)nread) != 0) return;
  }
  t->in = buf;
  t->in_len = (size_t)nread;
  if (!t->handshake_done && drive_handshake(t) != 1) return;
  read_records(t);
}

/* ---- writing ---- */

/* Encrypts the owner's bytes into as few records as the record size
 * allows: pieces are packed into full records (the iovecs of one turn are
 * mostly small frame headers and short messages), and a piece that fills
 * a record by itself is encrypted where it lies. Returns 0 or UVG_ENOMEM. */
static int encrypt(tls_t *t, const uv_buf_t *bufs, unsigned n) {
  static _Thread_local unsigned char stage[MBEDTLS_SSL_OUT_CONTENT_LEN];
  int max_payload = mbedtls_ssl_get_max_out_record_payload(&t->ssl);
  size_t max = max_payload > 0 && (size_t)max_payload < sizeof(stage)
                   ? (size_t)max_payload
                   : sizeof(stage);
  size_t total = 0, staged = 0;
  for (unsigned i = 0; i < n; i++) total += bufs[i].len;
  /* header, explicit nonce and tag: 29 bytes a record at most here */
  if (uvg__bytes_reserve(&t->out[t->fill], total + (total / max + 1) * 64) != 0)
    return UVG_ENOMEM;
  for (unsigned i = 0; i <= n; i++) {
    const unsigned char *p = i < n ? (const unsigned char *)bufs[i].base : NULL;
    size_t len = i < n ? bufs[i].len : 0;
    while (len > 0 || (i == n && staged > 0)) {
      const unsigned char *rec = stage;
      size_t rec_len;
      if (i == n) {
        rec_len = staged; /* the last, partial record */
      } else if (staged == 0 && len >= max) {
        rec = p;
        rec_len = max;
        p += max;
        len -= max;
      } else {
        size_t k = max - staged < len ? max - staged : len;
        memcpy(stage + staged, p, k);
        staged += k;
        p += k;
        len -= k;
        if (staged < max) continue;
        rec_len = max;
      }
      staged = 0;
      while (rec_len > 0) {
        int w = mbedtls_ssl_write(&t->ssl, rec, rec_len);
        if (w < 0) return UVG_ENOMEM; /* our BIO fails only so */
        rec += w;
        rec_len -= (size_t)w;
      }
    }
  }
  return 0;
}

static int tls_write(uvg__stream_t *s, const uv_buf_t *bufs, unsigned n) {
  tls_t *t = s->layer;
  if (t->failed || t->closing || t->shutdown_wanted) return UV_EPIPE;
  if (t->owner != OWNER_NONE) return UV_EBUSY; /* one write at a time */
  if (!t->handshake_done) {
    for (unsigned i = 0; i < n; i++)
      if (uvg__bytes_append(&t->held, bufs[i].base, bufs[i].len) != 0) {
        uvg__bytes_free(&t->held);
        return UVG_ENOMEM;
      }
    t->owner = OWNER_HELD;
    return 0;
  }
  int rc = encrypt(t, bufs, n);
  if (rc == 0) {
    t->owner = OWNER_QUEUED;
    rc = flush(t);
  }
  if (rc != 0) {
    /* what is half encrypted cannot be taken back: the stream is done */
    t->owner = OWNER_NONE;
    t->failed = 1;
    snprintf(t->error, sizeof(t->error), "TLS error: %s",
             rc == UVG_ENOMEM ? "out of memory" : uv_strerror(rc));
  }
  return rc;
}

static void on_sock_write(uvg__stream_t *s, int status) {
  tls_t *t = s->layer;
  uvg__bytes_t *done = &t->out[t->fill ^ 1];
  t->sock_writing = 0;
  done->len = 0;
  if (done->cap > OUT_KEEP) uvg__bytes_free(done);
  int owner_done = t->owner == OWNER_FLYING;
  if (owner_done) t->owner = OWNER_NONE;
  if (status == 0 && flush(t) != 0) status = UV_EPIPE;
  if (status == 0) maybe_shutdown(t);
  if (status < 0 && !t->closing && !t->failed)
    fail(t, status, "writing failed: %s", uv_strerror(status));
  deliver_failure(t);
  /* last: the owner may write again from here */
  if (owner_done) {
    t->cbs->on_write(s, status);
  } else if (status < 0 && t->owner == OWNER_QUEUED) {
    t->owner = OWNER_NONE;
    t->cbs->on_write(s, status);
  }
}

/* ---- the other operations ---- */

static int tls_read_start(uvg__stream_t *s) {
  tls_t *t = s->layer;
  if (t->failed) return UV_EPROTO; /* the ClientHello could not be made */
  t->reading = 1;
  return t->sock_ops->read_start(s);
}

static int tls_shutdown(uvg__stream_t *s) {
  tls_t *t = s->layer;
  if (t->shutdown_wanted) return 0;
  t->shutdown_wanted = 1;
  /* RFC 5246 7.2.1: close_notify before the end of the writes */
  if (t->handshake_done && !t->failed) mbedtls_ssl_close_notify(&t->ssl);
  if (flush(t) != 0) t->out[t->fill].len = 0;
  maybe_shutdown(t);
  return 0;
}

static void tls_close(uvg__stream_t *s) {
  tls_t *t = s->layer;
  t->closing = 1;
  t->sock_ops->close(s);
}

static void tls_free(tls_t *t) {
  mbedtls_ssl_free(&t->ssl);
  uvg__bytes_free(&t->out[0]);
  uvg__bytes_free(&t->out[1]);
  uvg__bytes_free(&t->held);
  uvg__auth_unref(t->auth);
  uvg__tls_config_unref(t->cfg);
  uvg__free(t->name);
  uvg__free(t);
}

/* The socket is closed (its pending write has been called back first);
 * the owner may free `s` in its on_close, so `t` goes after. */
static void on_sock_close(uvg__stream_t *s) {
  tls_t *t = s->layer;
  if (t->owner != OWNER_NONE) {
    t->owner = OWNER_NONE;
    t->cbs->on_write(s, UV_ECANCELED);
  }
  s->ops = t->sock_ops;
  s->cbs = t->cbs;
  s->layer = NULL;
  t->cbs->on_close(s);
  tls_free(t);
}

static void tls_peer_name(uvg__stream_t *s, char *out, size_t len) {
  tls_t *t = s->layer;
  t->sock_ops->peer_name(s, out, len);
}

static void tls_set_user_timeout(uvg__stream_t *s, uint64_t ms) {
  tls_t *t = s->layer;
  if (t->sock_ops->set_user_timeout != NULL)
    t->sock_ops->set_user_timeout(s, ms);
}

static const char *tls_error(uvg__stream_t *s) {
  tls_t *t = s->layer;
  return t->error[0] != '\0' ? t->error : NULL;
}

static int tls_handshaking(uvg__stream_t *s) {
  tls_t *t = s->layer;
  return !t->handshake_done;
}

static const uvg__stream_ops_t tls_ops = {
    .read_start = tls_read_start,
    .write = tls_write,
    .close = tls_close,
    .shutdown = tls_shutdown,
    .peer_name = tls_peer_name,
    .set_user_timeout = tls_set_user_timeout,
    .error = tls_error,
    .handshaking = tls_handshaking,
};
static const uvg__stream_cbs_t sock_cbs = {on_sock_read, on_sock_write,
                                           on_sock_close};

/* ---- certificates and names ---- */

int uvg__tls_sni_cb(void *unused, mbedtls_ssl_context *ssl,
                    const unsigned char *name, size_t len) {
  tls_t *t = ssl->p_bio;
  (void)unused;
  uvg__free(t->name);
  /* a name we cannot keep only leaves it out of uvg_auth_info_t */
  t->name = uvg__strndup((const char *)name, len);
  return 0;
}

/* A client whose target is an IP address: mbedtls matches only DNS names,
 * so the leaf's IP SANs are checked here (RFC 6125 6.2.1: an IP reference
 * identity matches an iPAddress SAN, never a DNS name or the CN). */
static int verify_ip(void *arg, mbedtls_x509_crt *crt, int depth,
                     uint32_t *flags) {
  tls_t *t = arg;
  if (depth != 0) return 0;
  for (const mbedtls_x509_sequence *s = &crt->subject_alt_names; s != NULL;
       s = s->next)
    if (s->buf.p != NULL && (s->buf.tag & 0x1F) == 7 &&
        !(s->buf.tag & MBEDTLS_ASN1_CONSTRUCTED) && s->buf.len == t->ip_len &&
        memcmp(s->buf.p, t->ip, t->ip_len) == 0)
      return 0;
  *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
  return 0;
}

/* Sets what a client checks the server's certificate against. Returns 0,
 * UVG_EINVAL or UVG_ENOMEM. */
static int set_server_name(tls_t *t, const char *name) {
  char bare[64];
  size_t n = strlen(name);
  if (n >= 2 && name[0] == '[' && name[n - 1] == ']' && n - 2 < sizeof(bare)) {
    memcpy(bare, name + 1, n - 2); /* "[::1]" as an authority writes it */
    bare[n - 2] = '\0';
  } else if (n < sizeof(bare)) {
    memcpy(bare, name, n + 1);
  } else {
    bare[0] = '\0';
  }
  if ((t->name = uvg__strdup(bare[0] ? bare : name)) == NULL) return UVG_ENOMEM;
  if (inet_pton(AF_INET, t->name, t->ip) == 1) {
    t->ip_len = 4;
  } else if (inet_pton(AF_INET6, t->name, t->ip) == 1) {
    t->ip_len = 16;
  } else {
    int rc = mbedtls_ssl_set_hostname(&t->ssl, t->name);
    return rc == MBEDTLS_ERR_SSL_ALLOC_FAILED ? UVG_ENOMEM
           : rc != 0                          ? UVG_EINVAL
                                              : 0;
  }
  /* no SNI for an address (RFC 6066 3) */
  mbedtls_ssl_set_verify(&t->ssl, verify_ip, t);
  return 0;
}

/* ---- wrapping ---- */

int uvg__tls_wrap(uvg__stream_t *s, uvg__tls_config_t *cfg,
                  const char *server_name) {
  if (s->read_buf_len < 2 * UVG__TLS_PLAIN_MAX || cfg == NULL ||
      cfg->insecure || (!cfg->is_server && server_name == NULL))
    return UVG_EINVAL;
  tls_t *t = uvg__calloc(1, sizeof(*t));
  if (t == NULL) return UVG_ENOMEM;
  mbedtls_ssl_init(&t->ssl);
  t->is_server = cfg->is_server;
  t->sent_alert = -1;
  int rc = mbedtls_ssl_setup(&t->ssl, &cfg->conf) != 0 ? UVG_ENOMEM : 0;
  if (rc == 0 && !t->is_server) rc = set_server_name(t, server_name);
  if (rc != 0) {
    mbedtls_ssl_free(&t->ssl);
    uvg__free(t->name);
    uvg__free(t);
    return rc;
  }
  mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
  t->s = s;
  t->cfg = uvg__tls_config_ref(cfg);
  t->sock_ops = s->ops;
  t->cbs = s->cbs;
  s->ops->peer_name(s, t->peer, sizeof(t->peer));
  s->read_buf_len -= UVG__TLS_PLAIN_MAX;
  t->plain = s->read_buf + s->read_buf_len;
  s->ops = &tls_ops;
  s->cbs = &sock_cbs;
  s->layer = t;
  /* the client speaks first */
  if (!t->is_server) drive_handshake(t);
  return 0;
}

uvg__auth_t *uvg__tls_auth(uvg__stream_t *s) {
  if (s->ops != &tls_ops) return NULL;
  tls_t *t = s->layer;
  return t->handshake_done && !t->failed ? t->auth : NULL;
}

/*
 * What a finished handshake established about the peer, as the public
 * uvg_auth_info_t: built once per connection into one allocation (the
 * struct, the SAN array, the strings and the peer's certificate follow
 * each other), refcounted so that calls keep it after their connection
 * is gone.
 */
#include <arpa/inet.h>
#include <mbedtls/oid.h>
#include <string.h>

#include "tls.h"

struct uvg__auth_s {
  uvg_auth_info_t info;
  unsigned refs;
};

static const uvg_auth_info_t plaintext_info; /* every field 0 or NULL */

/* Lays the pieces out after the header: the first pass (base NULL) only
 * counts, the second writes. */
typedef struct {
  uint8_t *base;
  size_t off;
} cursor_t;

static void *put(cursor_t *c, const void *p, size_t n, size_t align) {
  c->off = (c->off + align - 1) / align * align;
  void *at = c->base != NULL ? c->base + c->off : NULL;
  if (at != NULL && p != NULL) memcpy(at, p, n);
  c->off += n;
  return at;
}

/* A NUL-terminated copy of n bytes; an embedded NUL (never legitimate in
 * these names) ends the copy early, so no check is fooled by it. */
static const char *put_str(cursor_t *c, const void *p, size_t n) {
  char *s = put(c, NULL, n + 1, 1);
  if (s != NULL) {
    memcpy(s, p, n);
    s[n] = '\0';
  }
  return s;
}

/* The text of a SAN entry, or 0 for a kind not shown. */
static size_t san_text(const mbedtls_x509_buf *b, uvg_san_type_t *type,
                       char *text, size_t cap) {
  int kind = b->tag & 0x1F;
  if ((b->tag & MBEDTLS_ASN1_CONSTRUCTED) != 0) return 0; /* otherName, ... */
  switch (kind) {
    case UVG_SAN_EMAIL:
    case UVG_SAN_DNS:
    case UVG_SAN_URI:
      *type = (uvg_san_type_t)kind;
      if (b->len >= cap) return 0;
      memcpy(text, b->p, b->len);
      text[b->len] = '\0';
      return strlen(text) + 1;
    case UVG_SAN_IP:
      *type = UVG_SAN_IP;
      if ((b->len != 4 && b->len != 16) ||
          inet_ntop(b->len == 4 ? AF_INET : AF_INET6, b->p, text,
                    (socklen_t)cap) == NULL)
        return 0;
      return strlen(text) + 1;
    default:
      return 0;
  }
}

static void layout(cursor_t *c, uvg_auth_info_t *info,
                   const mbedtls_ssl_context *ssl, const char *server_name,
                   int is_server) {
  const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(ssl);
  const char *suite = mbedtls_ssl_get_ciphersuite(ssl);
  const char *alpn = mbedtls_ssl_get_alpn_protocol(ssl);
  const char *version = mbedtls_ssl_get_version(ssl);
  info->secure = 1;
  info->protocol = put_str(c, version, strlen(version));
  info->alpn = alpn != NULL ? put_str(c, alpn, strlen(alpn)) : NULL;
  if (server_name != NULL)
    info->server_name = put_str(c, server_name, strlen(server_name));
  /* mbedtls says "TLS-ECDHE-RSA-WITH-..."; IANA's names use '_' */
  char *cs = (char *)put_str(c, suite, strlen(suite));
  for (char *p = cs; p != NULL && *p; p++)
    if (*p == '-') *p = '_';
  info->cipher_suite = cs;
  if (peer == NULL) return;
  /* A client's server certificate always verified (else no handshake); a
   * server checks a client's in stream.c before the handshake counts. */
  info->peer_verified = !is_server || mbedtls_ssl_get_verify_result(ssl) == 0;
  char text[1024];
  int n = mbedtls_x509_dn_gets(text, sizeof(text), &peer->subject);
  if (n > 0) info->peer_subject = put_str(c, text, (size_t)n);
  for (const mbedtls_x509_name *name = &peer->subject; name != NULL;
       name = name->next)
    if (name->oid.p != NULL &&
        MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &name->oid) == 0) {
      info->peer_common_name = put_str(c, name->val.p, name->val.len);
      break;
    }
  size_t nsans = 0;
  uvg_san_type_t type;
  for (const mbedtls_x509_sequence *s = &peer->subject_alt_names; s != NULL;
       s = s->next)
    if (s->buf.p != NULL && san_text(&s->buf, &type, text, sizeof(text)) > 0)
      nsans++;
  uvg_san_t *sans =
      put(c, NULL, nsans * sizeof(uvg_san_t), _Alignof(uvg_san_t));
  size_t i = 0;
  for (const mbedtls_x509_sequence *s = &peer->subject_alt_names; s != NULL;
       s = s->next) {
    size_t len =
        s->buf.p != NULL ? san_text(&s->buf, &type, text, sizeof(text)) : 0;
    if (len == 0) continue;
    const char *v = put_str(c, text, len - 1);
    if (sans != NULL) sans[i] = (uvg_san_t){type, v};
    i++;
  }
  info->peer_sans = nsans > 0 ? sans : NULL;
  info->npeer_sans = nsans;
  info->peer_cert = put(c, peer->raw.p, peer->raw.len, 1);
  info->peer_cert_len = peer->raw.len;
}

uvg__auth_t *uvg__auth_new(const mbedtls_ssl_context *ssl,
                           const char *server_name, int is_server) {
  uvg_auth_info_t info;
  cursor_t c = {NULL, sizeof(uvg__auth_t)};
  memset(&info, 0, sizeof(info));
  layout(&c, &info, ssl, server_name, is_server);
  uvg__auth_t *a = uvg__malloc(c.off);
  if (a == NULL) return NULL;
  c.base = (uint8_t *)a;
  c.off = sizeof(uvg__auth_t);
  memset(&a->info, 0, sizeof(a->info));
  layout(&c, &a->info, ssl, server_name, is_server);
  a->refs = 1;
  return a;
}

uvg__auth_t *uvg__auth_ref(uvg__auth_t *a) {
  if (a != NULL) a->refs++;
  return a;
}

void uvg__auth_unref(uvg__auth_t *a) {
  if (a != NULL && --a->refs == 0) uvg__free(a);
}

const uvg_auth_info_t *uvg__auth_info(const uvg__auth_t *a) {
  return a != NULL ? &a->info : &plaintext_info;
}

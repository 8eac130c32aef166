/*
 * Certificates made by the tests themselves (mbedtls's X.509 writer):
 * a CA, and leaves it signs with chosen names and validity, so that an
 * expired, a wrong-host or an untrusted certificate is one call away and
 * nothing on disk ages. Keys are EC P-256 (fast to make).
 */
#ifndef UVG_TEST_TLS_CERTS_H
#define UVG_TEST_TLS_CERTS_H

#include <time.h>

/* PEM text, NUL-terminated, malloc'd. */
typedef struct {
  char *cert;
  char *key;
} tc_pem_t;

typedef struct {
  const char *cn;          /* subject CN */
  const char *const *dns;  /* DNS SANs, NULL-terminated; may be NULL */
  const char *const *ips;  /* IP SANs as text ("127.0.0.1", "::1") */
  const char *const *uris; /* URI SANs */
  /* validity in days from now (negative: in the past); both 0: from
   * yesterday for ten years */
  long not_before_days;
  long not_after_days;
} tc_leaf_t;

/* A self-signed CA named `cn`. Returns 0, or -1 (printed). */
int tc_make_ca(tc_pem_t *ca, const char *cn);
/* A leaf signed by `ca` (NULL: self-signed). Returns 0 or -1. */
int tc_make_leaf(tc_pem_t *out, const tc_pem_t *ca, const tc_leaf_t *leaf);
void tc_free(tc_pem_t *p);

#endif

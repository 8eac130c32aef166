/* Certificates for tests; see tls_certs.h. */
#include "tls_certs.h"

#include <arpa/inet.h>
#include <mbedtls/asn1write.h>
#include <mbedtls/ecp.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls/tls.h"

#define PEM_MAX 4096

static int fail_with(const char *what, int rc) {
  fprintf(stderr, "tls_certs: %s: -0x%04x\n", what, -rc);
  return -1;
}

static int new_key(mbedtls_pk_context *pk) {
  int rc = mbedtls_pk_setup(pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
  if (rc == 0)
    rc = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(*pk),
                             uvg__tls_random, NULL);
  return rc;
}

static char *key_pem(mbedtls_pk_context *pk) {
  char *buf = malloc(PEM_MAX);
  if (buf != NULL &&
      mbedtls_pk_write_key_pem(pk, (unsigned char *)buf, PEM_MAX) != 0) {
    free(buf);
    buf = NULL;
  }
  return buf;
}

/* "YYYYMMDDhhmmss" (UTC) `days` from now. */
static void stamp(char out[15], long days) {
  time_t t = time(NULL) + days * 86400;
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, 15, "%Y%m%d%H%M%S", &tm);
}

static size_t count(const char *const *list) {
  size_t n = 0;
  while (list != NULL && list[n] != NULL) n++;
  return n;
}

/* The subjectAltName extension's value: a SEQUENCE of GeneralNames,
 * written back to front as mbedtls's ASN.1 writer does. */
static int san_der(const tc_leaf_t *l, unsigned char *buf, size_t cap,
                   unsigned char **start) {
  unsigned char *p = buf + cap;
  size_t len = 0;
  int rc;
#define ADD(tag, data, n)                                             \
  do {                                                                \
    size_t n_ = (n);                                                  \
    if ((rc = mbedtls_asn1_write_raw_buffer(                          \
             &p, buf, (const unsigned char *)(data), n_)) < 0 ||      \
        (rc = mbedtls_asn1_write_len(&p, buf, n_)) < 0)               \
      return rc;                                                      \
    len += n_ + (size_t)rc;                                           \
    if ((rc = mbedtls_asn1_write_tag(&p, buf, (tag))) < 0) return rc; \
    len += (size_t)rc;                                                \
  } while (0)
  /* back to front, so the names come out in the order given: DNS names,
   * then addresses, then URIs */
  for (size_t i = count(l->uris); i-- > 0;)
    ADD(MBEDTLS_ASN1_CONTEXT_SPECIFIC | 6, l->uris[i], strlen(l->uris[i]));
  for (size_t i = count(l->ips); i-- > 0;) {
    unsigned char a[16];
    const char *ip = l->ips[i];
    size_t n = inet_pton(AF_INET, ip, a) == 1    ? 4
               : inet_pton(AF_INET6, ip, a) == 1 ? 16
                                                 : 0;
    if (n == 0) return -1;
    ADD(MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7, a, n);
  }
  for (size_t i = count(l->dns); i-- > 0;)
    ADD(MBEDTLS_ASN1_CONTEXT_SPECIFIC | 2, l->dns[i], strlen(l->dns[i]));
#undef ADD
  if ((rc = mbedtls_asn1_write_len(&p, buf, len)) < 0) return rc;
  len += (size_t)rc;
  if ((rc = mbedtls_asn1_write_tag(
           &p, buf, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE)) < 0)
    return rc;
  len += (size_t)rc;
  *start = p;
  return (int)len;
}

static int issue(tc_pem_t *out, const tc_pem_t *ca, const char *subject_cn,
                 int is_ca, const tc_leaf_t *leaf) {
  static unsigned serial_no = 1;
  mbedtls_pk_context key, ca_key;
  mbedtls_x509write_cert w;
  mbedtls_x509_crt ca_crt;
  mbedtls_mpi serial;
  char subject[160], issuer[256], from[15], to[15];
  unsigned char *cert = malloc(PEM_MAX);
  int rc;
  mbedtls_pk_init(&key);
  mbedtls_pk_init(&ca_key);
  mbedtls_x509_crt_init(&ca_crt);
  mbedtls_x509write_crt_init(&w);
  mbedtls_mpi_init(&serial);
  memset(out, 0, sizeof(*out));
  snprintf(subject, sizeof(subject), "O=uvgrpc tests,CN=%s", subject_cn);
  if ((rc = new_key(&key)) != 0) goto done;
  if (ca != NULL) {
    rc = mbedtls_pk_parse_key(&ca_key, (const unsigned char *)ca->key,
                              strlen(ca->key) + 1, NULL, 0);
    if (rc == 0)
      rc = mbedtls_x509_crt_parse(&ca_crt, (const unsigned char *)ca->cert,
                                  strlen(ca->cert) + 1);
    if (rc != 0) goto done;
    mbedtls_x509_dn_gets(issuer, sizeof(issuer), &ca_crt.subject);
  } else {
    snprintf(issuer, sizeof(issuer), "%s", subject);
  }
  long nb = leaf != NULL ? leaf->not_before_days : 0;
  long na = leaf != NULL ? leaf->not_after_days : 0;
  if (nb == 0 && na == 0) { /* not given: valid from yesterday, ten years */
    nb = -1;
    na = 3650;
  }
  stamp(from, nb);
  stamp(to, na);
  mbedtls_mpi_lset(&serial, (mbedtls_mpi_sint)(serial_no++ * 7919 +
                                               (unsigned)time(NULL) % 1000));
  mbedtls_x509write_crt_set_version(&w, MBEDTLS_X509_CRT_VERSION_3);
  mbedtls_x509write_crt_set_md_alg(&w, MBEDTLS_MD_SHA256);
  mbedtls_x509write_crt_set_subject_key(&w, &key);
  mbedtls_x509write_crt_set_issuer_key(&w, ca != NULL ? &ca_key : &key);
  if ((rc = mbedtls_x509write_crt_set_serial(&w, &serial)) != 0 ||
      (rc = mbedtls_x509write_crt_set_validity(&w, from, to)) != 0 ||
      (rc = mbedtls_x509write_crt_set_subject_name(&w, subject)) != 0 ||
      (rc = mbedtls_x509write_crt_set_issuer_name(&w, issuer)) != 0 ||
      (rc = mbedtls_x509write_crt_set_basic_constraints(&w, is_ca, -1)) != 0)
    goto done;
  if (leaf != NULL && (leaf->dns || leaf->ips || leaf->uris)) {
    unsigned char der[1024], *start;
    int n = san_der(leaf, der, sizeof(der), &start);
    if (n < 0 || (rc = mbedtls_x509write_crt_set_extension(
                      &w, MBEDTLS_OID_SUBJECT_ALT_NAME,
                      MBEDTLS_OID_SIZE(MBEDTLS_OID_SUBJECT_ALT_NAME), 0, start,
                      (size_t)n)) != 0) {
      rc = n < 0 ? n : rc;
      goto done;
    }
  }
  rc = mbedtls_x509write_crt_pem(&w, cert, PEM_MAX, uvg__tls_random, NULL);
  if (rc == 0) {
    out->cert = (char *)cert;
    cert = NULL;
    out->key = key_pem(&key);
    if (out->key == NULL) rc = -1;
  }
done:
  free(cert);
  mbedtls_mpi_free(&serial);
  mbedtls_x509write_crt_free(&w);
  mbedtls_x509_crt_free(&ca_crt);
  mbedtls_pk_free(&ca_key);
  mbedtls_pk_free(&key);
  if (rc != 0) {
    tc_free(out);
    return fail_with(subject_cn, rc);
  }
  return 0;
}

int tc_make_ca(tc_pem_t *ca, const char *cn) {
  return issue(ca, NULL, cn, 1, NULL);
}

int tc_make_leaf(tc_pem_t *out, const tc_pem_t *ca, const tc_leaf_t *leaf) {
  return issue(out, ca, leaf->cn, 0, leaf);
}

void tc_free(tc_pem_t *p) {
  free(p->cert);
  free(p->key);
  p->cert = p->key = NULL;
}

/*
 * Server and channel credentials: the PEM inputs are parsed once into an
 * mbedtls configuration that every connection made with the credentials
 * shares read-only, so a credentials object is refcounted (atomically: it
 * may serve loops on several threads) and its inputs are not kept.
 */
#include <mbedtls/error.h>
#include <mbedtls/platform_util.h>
#include <stdlib.h>
#include <string.h>

#include "tls.h"

/* The system's CA bundle (Debian's ca-certificates), the default roots. */
#define SYSTEM_ROOTS "/etc/ssl/certs/ca-certificates.crt"

/* RFC 9113 9.2.2: HTTP/2 over TLS 1.2 uses ephemeral key exchange and an
 * AEAD cipher; everything else is on its block list (Appendix A). AES-GCM
 * first: it is the fastest where the CPU has AES instructions. */
static const int suites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    0,
};
/* RFC 9113 9.2.1: at least 224-bit ECDHE groups. */
static const mbedtls_ecp_group_id curves[] = {
    MBEDTLS_ECP_DP_CURVE25519, MBEDTLS_ECP_DP_SECP256R1,
    MBEDTLS_ECP_DP_SECP384R1, MBEDTLS_ECP_DP_NONE};
static const char *alpn[] = {"h2", NULL};

uvg_server_credentials_t *uvg_insecure_server_credentials(void) {
  static uvg_server_credentials_t insecure = {.cfg = {.insecure = 1}};
  return &insecure;
}

uvg_channel_credentials_t *uvg_insecure_channel_credentials(void) {
  static uvg_channel_credentials_t insecure = {.cfg = {.insecure = 1}};
  return &insecure;
}

uvg__tls_config_t *uvg__tls_config_ref(uvg__tls_config_t *cfg) {
  if (cfg != NULL && !cfg->insecure)
    atomic_fetch_add_explicit(&cfg->refs, 1, memory_order_relaxed);
  return cfg;
}

/* `cfg` is the first member of the credentials it belongs to, so this
 * frees them. */
static void config_free(uvg__tls_config_t *cfg) {
  mbedtls_ssl_config_free(&cfg->conf);
  mbedtls_x509_crt_free(&cfg->ca);
  mbedtls_x509_crt_free(&cfg->chain);
  mbedtls_pk_free(&cfg->key);
  uvg__free(cfg->server_name);
  uvg__free(cfg);
}

void uvg__tls_config_unref(uvg__tls_config_t *cfg) {
  if (cfg == NULL || cfg->insecure) return;
  /* acq_rel: whoever frees sees every other thread's use completed */
  if (atomic_fetch_sub_explicit(&cfg->refs, 1, memory_order_acq_rel) == 1)
    config_free(cfg);
}

void uvg_server_credentials_release(uvg_server_credentials_t *creds) {
  if (creds != NULL) uvg__tls_config_unref(&creds->cfg);
}

void uvg_channel_credentials_release(uvg_channel_credentials_t *creds) {
  if (creds != NULL) uvg__tls_config_unref(&creds->cfg);
}

/* ---- loading PEM ---- */

static int pem_given(const uvg_pem_t *p) {
  return p->file != NULL || p->data != NULL;
}
static int pem_valid(const uvg_pem_t *p) {
  return p->file == NULL || p->data == NULL;
}

static const char *pem_source(const uvg_pem_t *p) {
  return p->file != NULL ? p->file : "memory";
}

static void log_load_error(const char *what, const uvg_pem_t *p, int rc) {
  char text[160];
  mbedtls_strerror(rc, text, sizeof(text));
  uvg__log(UVG_LOG_WARN, "TLS credentials: cannot use the %s from %s: %s", what,
           pem_source(p), text);
}

/* mbedtls parses PEM only from a NUL-terminated buffer whose length counts
 * the NUL. Returns the copy, or NULL when out of memory. */
static unsigned char *nul_terminated(const uvg_pem_t *p) {
  unsigned char *b = uvg__malloc(p->len + 1);
  if (b == NULL) return NULL;
  memcpy(b, p->data, p->len);
  b[p->len] = '\0';
  return b;
}

/* Certificates from `p` appended to `crt`. With `partial_ok` (a system
 * bundle), entries mbedtls cannot parse are skipped as long as one
 * parses. Returns 0, UVG_EBADCREDS (logged) or UVG_ENOMEM. */
static int load_certs(mbedtls_x509_crt *crt, const uvg_pem_t *p,
                      const char *what, int partial_ok) {
  int rc;
  if (p->file != NULL) {
    rc = mbedtls_x509_crt_parse_file(crt, p->file);
  } else {
    unsigned char *b = nul_terminated(p);
    if (b == NULL) return UVG_ENOMEM;
    rc = mbedtls_x509_crt_parse(crt, b, p->len + 1);
    uvg__free(b);
  }
  if (rc > 0 && partial_ok && crt->version != 0) return 0;
  if (rc > 0) {
    uvg__log(UVG_LOG_WARN,
             "TLS credentials: %d of the certificates in the %s from %s do "
             "not parse",
             rc, what, pem_source(p));
    return UVG_EBADCREDS;
  }
  if (rc < 0) {
    log_load_error(what, p, rc);
    return UVG_EBADCREDS;
  }
  return 0;
}

static int load_key(mbedtls_pk_context *key, const uvg_pem_t *p) {
  int rc;
  if (p->file != NULL) {
    rc = mbedtls_pk_parse_keyfile(key, p->file, NULL);
  } else {
    unsigned char *b = nul_terminated(p);
    if (b == NULL) return UVG_ENOMEM;
    rc = mbedtls_pk_parse_key(key, b, p->len + 1, NULL, 0);
    mbedtls_platform_zeroize(b, p->len);
    uvg__free(b);
  }
  if (rc != 0) {
    log_load_error("private key", p, rc);
    return UVG_EBADCREDS;
  }
  return 0;
}

/* The certificate chain and its key, which must belong together. */
static int load_identity(uvg__tls_config_t *cfg, const uvg_pem_t *chain,
                         const uvg_pem_t *key) {
  int rc = load_certs(&cfg->chain, chain, "certificate chain", 0);
  if (rc == 0) rc = load_key(&cfg->key, key);
  if (rc == 0 && mbedtls_pk_check_pair(&cfg->chain.pk, &cfg->key) != 0) {
    uvg__log(UVG_LOG_WARN,
             "TLS credentials: the private key from %s does not match the "
             "certificate from %s",
             pem_source(key), pem_source(chain));
    rc = UVG_EBADCREDS;
  }
  if (rc == 0 &&
      mbedtls_ssl_conf_own_cert(&cfg->conf, &cfg->chain, &cfg->key) != 0)
    rc = UVG_ENOMEM;
  return rc;
}

/* ---- the configuration ---- */

static uvg__tls_config_t *config_new(int endpoint) {
  /* both credentials types are exactly their configuration */
  uvg__tls_config_t *cfg = uvg__calloc(1, sizeof(uvg_server_credentials_t));
  if (cfg == NULL) return NULL;
  atomic_init(&cfg->refs, 1);
  cfg->is_server = endpoint == MBEDTLS_SSL_IS_SERVER;
  mbedtls_ssl_config_init(&cfg->conf);
  mbedtls_x509_crt_init(&cfg->ca);
  mbedtls_x509_crt_init(&cfg->chain);
  mbedtls_pk_init(&cfg->key);
  if (mbedtls_ssl_config_defaults(&cfg->conf, endpoint,
                                  MBEDTLS_SSL_TRANSPORT_STREAM,
                                  MBEDTLS_SSL_PRESET_DEFAULT) != 0) {
    config_free(cfg);
    return NULL;
  }
  mbedtls_ssl_conf_rng(&cfg->conf, uvg__tls_random, NULL);
  /* TLS 1.2 only: mbedtls 2.28 has no 1.3, and RFC 9113 9.2 forbids
   * anything older */
  mbedtls_ssl_conf_min_version(&cfg->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                               MBEDTLS_SSL_MINOR_VERSION_3);
  mbedtls_ssl_conf_max_version(&cfg->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                               MBEDTLS_SSL_MINOR_VERSION_3);
  mbedtls_ssl_conf_ciphersuites(&cfg->conf, suites);
  mbedtls_ssl_conf_curves(&cfg->conf, curves);
  mbedtls_ssl_conf_alpn_protocols(&cfg->conf, alpn);
  /* RFC 9113 9.2.1: "A deployment of HTTP/2 over TLS 1.2 MUST disable
   * renegotiation" (stream.c ends a connection whose peer tries) */
  mbedtls_ssl_conf_renegotiation(&cfg->conf,
                                 MBEDTLS_SSL_RENEGOTIATION_DISABLED);
  if (!cfg->is_server)
    mbedtls_ssl_conf_session_tickets(&cfg->conf,
                                     MBEDTLS_SSL_SESSION_TICKETS_DISABLED);
  return cfg;
}

int uvg_tls_server_credentials_new(const uvg_tls_server_options_t *o,
                                   uvg_server_credentials_t **out) {
  if (o == NULL || out == NULL || !pem_given(&o->cert_chain) ||
      !pem_given(&o->private_key) || !pem_valid(&o->cert_chain) ||
      !pem_valid(&o->private_key) || !pem_valid(&o->client_ca) ||
      (unsigned)o->client_cert > UVG_CLIENT_CERT_REQUIRE)
    return UVG_EINVAL;
  uvg__trace_init();
  uvg__tls_config_t *cfg = config_new(MBEDTLS_SSL_IS_SERVER);
  if (cfg == NULL) return UVG_ENOMEM;
  int rc = load_identity(cfg, &o->cert_chain, &o->private_key);
  cfg->client_cert = (uint8_t)o->client_cert;
  if (rc == 0 && o->client_cert != UVG_CLIENT_CERT_NONE) {
    if (!pem_given(&o->client_ca)) {
      uvg__log(UVG_LOG_WARN,
               "TLS credentials: asking for client certificates needs the CAs "
               "that sign them (client_ca)");
      rc = UVG_EBADCREDS;
    } else {
      rc = load_certs(&cfg->ca, &o->client_ca, "client CA list", 0);
    }
    if (rc == 0) {
      mbedtls_ssl_conf_ca_chain(&cfg->conf, &cfg->ca, NULL);
      /* REQUEST checks a certificate that was sent once the handshake is
       * done (stream.c); OPTIONAL lets a client without one in */
      mbedtls_ssl_conf_authmode(&cfg->conf,
                                o->client_cert == UVG_CLIENT_CERT_REQUIRE
                                    ? MBEDTLS_SSL_VERIFY_REQUIRED
                                    : MBEDTLS_SSL_VERIFY_OPTIONAL);
    }
  } else {
    mbedtls_ssl_conf_authmode(&cfg->conf, MBEDTLS_SSL_VERIFY_NONE);
  }
  mbedtls_ssl_conf_sni(&cfg->conf, uvg__tls_sni_cb, NULL);
  if (rc != 0) {
    config_free(cfg);
    return rc;
  }
  *out = (uvg_server_credentials_t *)cfg;
  return 0;
}

int uvg_tls_channel_credentials_new(const uvg_tls_channel_options_t *o,
                                    uvg_channel_credentials_t **out) {
  if (o == NULL || out == NULL || !pem_valid(&o->root_certs) ||
      !pem_valid(&o->cert_chain) || !pem_valid(&o->private_key) ||
      pem_given(&o->cert_chain) != pem_given(&o->private_key))
    return UVG_EINVAL;
  uvg__trace_init();
  uvg__tls_config_t *cfg = config_new(MBEDTLS_SSL_IS_CLIENT);
  if (cfg == NULL) return UVG_ENOMEM;
  int rc = 0;
  if (pem_given(&o->root_certs)) {
    rc = load_certs(&cfg->ca, &o->root_certs, "root certificates", 0);
  } else {
    /* gRPC's own override of the default roots, then the system's */
    const char *env = getenv("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH");
    uvg_pem_t roots = {env != NULL && *env ? env : SYSTEM_ROOTS, NULL, 0};
    rc = load_certs(&cfg->ca, &roots, "root certificates", 1);
  }
  if (rc == 0 && pem_given(&o->cert_chain))
    rc = load_identity(cfg, &o->cert_chain, &o->private_key);
  if (rc == 0 && o->server_name_override != NULL &&
      (cfg->server_name = uvg__strdup(o->server_name_override)) == NULL)
    rc = UVG_ENOMEM;
  if (rc != 0) {
    config_free(cfg);
    return rc;
  }
  mbedtls_ssl_conf_ca_chain(&cfg->conf, &cfg->ca, NULL);
  mbedtls_ssl_conf_authmode(&cfg->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
  *out = (uvg_channel_credentials_t *)cfg;
  return 0;
}

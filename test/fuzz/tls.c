/*
 * The TLS record path (lib/tls/stream.c on mbedtls). The first byte picks
 * the side and the moment; the rest is raw bytes on the socket:
 *   0: into a TLS server during its handshake (a ClientHello...);
 *   1: into a channel's TLS client during its handshake (a ServerHello,
 *      certificates...);
 *   2: into a TLS server after a real handshake with an mbedtls client;
 *   3: into a channel's TLS client after a real handshake with an mbedtls
 *      server.
 * Either way the connection must end cleanly and everything be released,
 * as in the server and client targets, whose runs this reuses.
 */
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "peer.h"
#include "serve.h"

#define TESTDATA(f) GRPC_TESTDATA "/" f

static uvg_server_credentials_t *server_creds;
static uvg_channel_credentials_t *channel_creds;

/* ---- the harness's own TLS end, for the "after the handshake" modes ---- */

static mbedtls_entropy_context entropy;
static mbedtls_ctr_drbg_context drbg;
static mbedtls_x509_crt ca, cert;
static mbedtls_pk_context key;
static mbedtls_ssl_config client_conf, server_conf;
static const char *alpn[] = {"h2", NULL};

typedef struct {
  uv_poll_t poll;
  mbedtls_ssl_context ssl;
  mbedtls_net_context net;
  uv_loop_t *loop;
  fz_peer_t *peer;
} hs_t;

static void hs_closed(uv_handle_t *h) {
  hs_t *hs = h->data;
  fz_peer_t *p = hs->peer;
  /* the handshake is over, or failed: the raw input follows either way */
  fz_peer_open(p, hs->loop, hs->net.fd, (const uint8_t *)p->in.base, p->in.len,
               p->on_closed);
  mbedtls_ssl_free(&hs->ssl);
  free(hs);
}

static void hs_step(uv_poll_t *h, int status, int events) {
  hs_t *hs = h->data;
  (void)events;
  int rc = status == 0 ? mbedtls_ssl_handshake(&hs->ssl) : -1;
  if (rc == MBEDTLS_ERR_SSL_WANT_READ) {
    uv_poll_start(h, UV_READABLE, hs_step);
  } else if (rc == MBEDTLS_ERR_SSL_WANT_WRITE) {
    uv_poll_start(h, UV_WRITABLE, hs_step);
  } else {
    uv_close((uv_handle_t *)h, hs_closed);
  }
}

/* Runs a handshake on fd on the loop, as `conf` says, then hands fd to
 * the peer. */
static void hs_start(uv_loop_t *loop, int fd, fz_peer_t *p,
                     const mbedtls_ssl_config *conf) {
  hs_t *hs = calloc(1, sizeof(*hs));
  if (hs == NULL) abort();
  hs->loop = loop;
  hs->peer = p;
  hs->net.fd = fd;
  mbedtls_ssl_init(&hs->ssl);
  if (mbedtls_ssl_setup(&hs->ssl, conf) != 0 ||
      mbedtls_ssl_set_hostname(&hs->ssl, "foo.test.google.fr") != 0 ||
      mbedtls_net_set_nonblock(&hs->net) != 0)
    abort();
  mbedtls_ssl_set_bio(&hs->ssl, &hs->net, mbedtls_net_send, mbedtls_net_recv,
                      NULL);
  if (uv_poll_init(loop, &hs->poll, fd) != 0) abort();
  hs->poll.data = hs;
  hs_step(&hs->poll, 0, 0);
}

static void client_hs(uv_loop_t *loop, int fd, fz_peer_t *p) {
  hs_start(loop, fd, p, &client_conf);
}

static void server_hs(uv_loop_t *loop, int fd, fz_peer_t *p) {
  hs_start(loop, fd, p, &server_conf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  uvg__tls_config_t *tls = &server_creds->cfg;
  switch (data[0] & 3) {
  case 0: return fz_serve(data + 1, size - 1, tls, NULL);
  case 1: return fz_call(data + 1, size - 1, channel_creds, NULL);
  case 2: return fz_serve(data + 1, size - 1, tls, client_hs);
  default: return fz_call(data + 1, size - 1, channel_creds, server_hs);
  }
}

static void conf_init(mbedtls_ssl_config *c, int endpoint) {
  mbedtls_ssl_config_init(c);
  if (mbedtls_ssl_config_defaults(c, endpoint, MBEDTLS_SSL_TRANSPORT_STREAM,
                                  MBEDTLS_SSL_PRESET_DEFAULT) != 0 ||
      mbedtls_ssl_conf_alpn_protocols(c, alpn) != 0)
    abort();
  mbedtls_ssl_conf_rng(c, mbedtls_ctr_drbg_random, &drbg);
  mbedtls_ssl_conf_ca_chain(c, &ca, NULL);
}

static void cleanup(void) {
  uvg_server_credentials_release(server_creds);
  uvg_channel_credentials_release(channel_creds);
  mbedtls_ssl_config_free(&client_conf);
  mbedtls_ssl_config_free(&server_conf);
  mbedtls_x509_crt_free(&ca);
  mbedtls_x509_crt_free(&cert);
  mbedtls_pk_free(&key);
  mbedtls_ctr_drbg_free(&drbg);
  mbedtls_entropy_free(&entropy);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  fz_quiet();
  uvg_tls_server_options_t so;
  memset(&so, 0, sizeof(so));
  so.cert_chain.file = TESTDATA("server1.pem");
  so.private_key.file = TESTDATA("server1.key");
  uvg_tls_channel_options_t co;
  memset(&co, 0, sizeof(co));
  co.root_certs.file = TESTDATA("ca.pem");
  co.server_name_override = "foo.test.google.fr";
  if (uvg_tls_server_credentials_new(&so, &server_creds) != 0 ||
      uvg_tls_channel_credentials_new(&co, &channel_creds) != 0)
    abort();

  mbedtls_entropy_init(&entropy);
  mbedtls_ctr_drbg_init(&drbg);
  mbedtls_x509_crt_init(&ca);
  mbedtls_x509_crt_init(&cert);
  mbedtls_pk_init(&key);
  if (mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, NULL, 0) ||
      mbedtls_x509_crt_parse_file(&ca, TESTDATA("ca.pem")) ||
      mbedtls_x509_crt_parse_file(&cert, TESTDATA("server1.pem")) ||
      mbedtls_pk_parse_keyfile(&key, TESTDATA("server1.key"), NULL))
    abort();
  conf_init(&client_conf, MBEDTLS_SSL_IS_CLIENT);
  conf_init(&server_conf, MBEDTLS_SSL_IS_SERVER);
  mbedtls_ssl_conf_authmode(&client_conf, MBEDTLS_SSL_VERIFY_REQUIRED);
  if (mbedtls_ssl_conf_own_cert(&server_conf, &cert, &key) != 0) abort();
  atexit(cleanup);
  return 0;
}

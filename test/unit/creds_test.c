/*
 * Credentials (lib/tls/creds.c): what is refused when they are made, with
 * which code and which log line, and that they outlive the caller's
 * reference for as long as a server or channel uses them.
 */
#include <stdlib.h>
#include <uvgrpc.h>

#include "test.h"
#include "tls_certs.h"

#ifndef GRPC_TESTDATA
#define GRPC_TESTDATA "/usr/share/gocode/src/google.golang.org/grpc/testdata"
#endif

static char last_log[512];
static void on_log(uvg_log_level_t level, const char *line, void *data) {
  (void)level;
  (void)data;
  snprintf(last_log, sizeof(last_log), "%s", line);
}

static uvg_pem_t file(const char *path) {
  return (uvg_pem_t){.file = path};
}
static uvg_pem_t mem(const char *text) {
  return (uvg_pem_t){.data = text, .len = text ? strlen(text) : 0};
}

static tc_pem_t ca, leaf, other;

static int server_creds(uvg_tls_server_options_t o) {
  uvg_server_credentials_t *c = NULL;
  last_log[0] = '\0';
  int rc = uvg_tls_server_credentials_new(&o, &c);
  if (rc == 0) uvg_server_credentials_release(c);
  return rc;
}

static int channel_creds(uvg_tls_channel_options_t o) {
  uvg_channel_credentials_t *c = NULL;
  last_log[0] = '\0';
  int rc = uvg_tls_channel_credentials_new(&o, &c);
  if (rc == 0) uvg_channel_credentials_release(c);
  return rc;
}

static void test_server_credentials(void) {
  uvg_tls_server_options_t ok = {.cert_chain = mem(leaf.cert),
                                 .private_key = mem(leaf.key)};
  CHECK_EQ(server_creds(ok), 0);
  uvg_tls_server_options_t files = {
      .cert_chain = file(GRPC_TESTDATA "/server1.pem"),
      .private_key = file(GRPC_TESTDATA "/server1.key")};
  CHECK_EQ(server_creds(files), 0);
  uvg_server_credentials_t *c;
  CHECK_EQ(uvg_tls_server_credentials_new(NULL, &c), UVG_EINVAL);
  CHECK_EQ(uvg_tls_server_credentials_new(&ok, NULL), UVG_EINVAL);

  uvg_tls_server_options_t o = ok;
  o.private_key = (uvg_pem_t){0};
  CHECK_EQ(server_creds(o), UVG_EINVAL); /* a certificate without its key */
  o = ok;
  o.cert_chain.file = GRPC_TESTDATA "/server1.pem"; /* and data: both */
  CHECK_EQ(server_creds(o), UVG_EINVAL);
  o = ok;
  o.client_cert = 3;
  CHECK_EQ(server_creds(o), UVG_EINVAL);

  o = ok;
  o.cert_chain = file("/nonexistent/server.pem");
  CHECK_EQ(server_creds(o), UVG_EBADCREDS);
  CHECK(strstr(last_log, "certificate chain from /nonexistent/server.pem") !=
        NULL);
  o = ok;
  o.cert_chain = mem(
      "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n");
  CHECK_EQ(server_creds(o), UVG_EBADCREDS);
  CHECK(strstr(last_log, "certificate chain from memory") != NULL);
  o = ok;
  o.private_key = mem(other.key); /* another certificate's key */
  CHECK_EQ(server_creds(o), UVG_EBADCREDS);
  CHECK(strstr(last_log, "does not match the certificate") != NULL);
  o = ok;
  o.client_cert = UVG_CLIENT_CERT_REQUIRE; /* without the CAs */
  CHECK_EQ(server_creds(o), UVG_EBADCREDS);
  CHECK(strstr(last_log, "client_ca") != NULL);
  o.client_ca = mem(ca.cert);
  CHECK_EQ(server_creds(o), 0);
  o.client_cert = UVG_CLIENT_CERT_REQUEST;
  CHECK_EQ(server_creds(o), 0);
}

static void test_channel_credentials(void) {
  /* the system's roots by default */
  CHECK_EQ(channel_creds((uvg_tls_channel_options_t){0}), 0);
  /* or those gRPC's variable names */
  setenv("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", "/nonexistent/roots.pem", 1);
  CHECK_EQ(channel_creds((uvg_tls_channel_options_t){0}), UVG_EBADCREDS);
  CHECK(strstr(last_log, "/nonexistent/roots.pem") != NULL);
  setenv("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", GRPC_TESTDATA "/ca.pem", 1);
  CHECK_EQ(channel_creds((uvg_tls_channel_options_t){0}), 0);
  unsetenv("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH");

  uvg_tls_channel_options_t o = {.root_certs = mem(ca.cert)};
  CHECK_EQ(channel_creds(o), 0);
  o.root_certs = mem("garbage");
  CHECK_EQ(channel_creds(o), UVG_EBADCREDS);
  o.root_certs = file(GRPC_TESTDATA "/ca.pem");
  o.cert_chain = file(GRPC_TESTDATA "/x509/client1_cert.pem");
  CHECK_EQ(channel_creds(o), UVG_EINVAL); /* no key */
  o.private_key = file(GRPC_TESTDATA "/x509/client2_key.pem");
  CHECK_EQ(channel_creds(o), UVG_EBADCREDS); /* not its key */
  o.private_key = file(GRPC_TESTDATA "/x509/client1_key.pem");
  CHECK_EQ(channel_creds(o), 0);
  uvg_channel_credentials_t *c;
  CHECK_EQ(uvg_tls_channel_credentials_new(NULL, &c), UVG_EINVAL);
}

/* Each side refuses the other side's kind; the insecure objects are not
 * counted, so releasing them is harmless. */
static void test_kinds_and_references(void) {
  uv_loop_t *loop = uv_default_loop();
  uvg_server_credentials_t *sc;
  uvg_channel_credentials_t *cc;
  uvg_tls_server_options_t so = {.cert_chain = mem(leaf.cert),
                                 .private_key = mem(leaf.key)};
  uvg_tls_channel_options_t co = {.root_certs = mem(ca.cert)};
  CHECK_EQ(uvg_tls_server_credentials_new(&so, &sc), 0);
  CHECK_EQ(uvg_tls_channel_credentials_new(&co, &cc), 0);
  uvg_server_t *s;
  uvg_channel_t *ch, *ch2;
  CHECK_EQ(uvg_server_new(loop, NULL, &s), 0);
  CHECK_EQ(
      uvg_server_listen(s, "127.0.0.1:0", (uvg_server_credentials_t *)cc, NULL),
      UVG_EINVAL);
  CHECK_EQ(uvg_channel_new(loop, "localhost:1", (uvg_channel_credentials_t *)sc,
                           NULL, &ch),
           UVG_EINVAL);
  /* two channels share one credentials object beyond the caller's release */
  CHECK_EQ(uvg_channel_new(loop, "localhost:1", cc, NULL, &ch), 0);
  CHECK_EQ(uvg_channel_new(loop, "localhost:2", cc, NULL, &ch2), 0);
  uvg_channel_credentials_release(cc);
  CHECK_EQ(uvg_server_listen(s, "127.0.0.1:0", sc, NULL), 0);
  uvg_server_credentials_release(sc);
  uvg_channel_close(ch, NULL, NULL);
  uvg_channel_close(ch2, NULL, NULL);
  uvg_server_close(s, NULL, NULL);
  uvg_server_credentials_release(uvg_insecure_server_credentials());
  uvg_channel_credentials_release(uvg_insecure_channel_credentials());
  uvg_server_credentials_release(NULL);
  uvg_channel_credentials_release(NULL);
  CHECK_EQ(uv_run(loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ(uv_loop_close(loop), 0);
}

int main(void) {
  uvg_set_log_cb(on_log, NULL);
  static const char *const names[] = {"localhost", NULL};
  CHECK_EQ(tc_make_ca(&ca, "test CA"), 0);
  tc_leaf_t l = {.cn = "localhost", .dns = names};
  CHECK_EQ(tc_make_leaf(&leaf, &ca, &l), 0);
  CHECK_EQ(tc_make_leaf(&other, &ca, &l), 0);
  RUN(test_server_credentials);
  RUN(test_channel_credentials);
  RUN(test_kinds_and_references);
  tc_free(&ca);
  tc_free(&leaf);
  tc_free(&other);
  TEST_EXIT();
}

/*
 * The TLS byte stream (lib/tls/stream.c), directly and under a server and
 * a channel: what a user relies on. Calls go through; each side sees the
 * other's identity; a wrong name, an untrusted CA, an expired certificate,
 * a missing client certificate, plaintext on either side end that
 * connection with a reason in the call's status and a log line, while the
 * server goes on serving; a loop turn's output leaves in one write and as
 * few records as the record size allows.
 */
#include "tls/tls.h"

#include <unistd.h>
#include <uvgrpc.h>

#include "../../loop/listener.h"
#include "loop_wait.h"
#include "test.h"
#include "tls_certs.h"
#include "tls_peer.h"

static uv_loop_t *loop;
static tc_pem_t ca, other_ca, server_cert, ip_less_cert, expired_cert,
    client_ca, client_cert, stranger_cert;

/* ---- log lines ---- */

static char logged[8][512];
static int nlogged;

static void on_log(uvg_log_level_t level, const char *line, void *data) {
  (void)data;
  if (level == UVG_LOG_TRACE) return;
  snprintf(logged[nlogged % 8], sizeof(logged[0]), "%s", line);
  nlogged++;
}

/* 1 if a line logged since `from` holds `text`. */
static int logged_since(int from, const char *text) {
  for (int i = from; i < nlogged; i++)
    if (i >= nlogged - 8 && strstr(logged[i % 8], text) != NULL) return 1;
  return 0;
}

/* ---- a server that echoes and records what its calls saw ---- */

static uvg_auth_info_t seen; /* the last call's auth info, copied */
static char seen_peer[64];        /* the last call's uvg_call_peer() */
static char seen_subject[256], seen_cn[128], seen_sni[128], seen_suite[128],
    seen_protocol[32], seen_alpn[16];
static uvg_san_type_t seen_san_type;
static char seen_san[4][128];
static int intercepted_verified = -1;

static void keep(char *dst, size_t cap, const char *s) {
  snprintf(dst, cap, "%s", s != NULL ? s : "");
}

static void echo(uvg_call_t *call, const uint8_t *msg, size_t len) {
  const uvg_auth_info_t *a = uvg_call_auth_info(call);
  seen = *a;
  keep(seen_peer, sizeof(seen_peer), uvg_call_peer(call));
  keep(seen_subject, sizeof(seen_subject), a->peer_subject);
  keep(seen_cn, sizeof(seen_cn), a->peer_common_name);
  keep(seen_sni, sizeof(seen_sni), a->server_name);
  keep(seen_suite, sizeof(seen_suite), a->cipher_suite);
  keep(seen_protocol, sizeof(seen_protocol), a->protocol);
  keep(seen_alpn, sizeof(seen_alpn), a->alpn);
  seen_san_type = a->npeer_sans > 0 ? a->peer_sans[0].type : 0;
  /* the pointers of `seen` die with the call: only its numbers are read */
  for (size_t i = 0; i < 4; i++)
    keep(seen_san[i], sizeof(seen_san[i]),
         i < a->npeer_sans ? a->peer_sans[i].value : NULL);
  uvg_call_send(call, msg, len, 0, NULL, NULL);
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}
static void done(uvg_call_t *call, const uvg_status_t *st) {
  (void)call;
  (void)st;
}
static const uvg_method_t methods[] = {
    {.path = "/t.T/Echo", .on_call = echo, .on_done = done}};

static int note_peer(uvg_call_t *call, void *data, uvg_status_t *reject) {
  (void)data;
  (void)reject;
  intercepted_verified = uvg_call_auth_info(call)->peer_verified;
  return 0;
}

static int closed;
static void on_server_closed(uvg_server_t *s, void *d) {
  (void)s;
  (void)d;
  closed++;
}

/* A server on 127.0.0.1 with `cert` (and client CA / mode); *port set. */
static uvg_server_t *tls_server(const tc_pem_t *cert, uvg_client_cert_t mode,
                                const tc_pem_t *cca, uint64_t conn_timeout,
                                int *port) {
  uvg_server_t *s;
  uvg_server_options_t o;
  memset(&o, 0, sizeof(o));
  o.connection_timeout_ms = conn_timeout;
  uvg_tls_server_options_t to = {
      .cert_chain = {.data = cert->cert, .len = strlen(cert->cert)},
      .private_key = {.data = cert->key, .len = strlen(cert->key)},
      .client_cert = mode,
  };
  if (cca != NULL)
    to.client_ca = (uvg_pem_t){.data = cca->cert, .len = strlen(cca->cert)};
  uvg_server_credentials_t *creds;
  CHECK_EQ(uvg_tls_server_credentials_new(&to, &creds), 0);
  CHECK_EQ(uvg_server_new(loop, &o, &s), 0);
  CHECK_EQ(uvg_server_register(s, methods, 1), 0);
  static const uvg_server_interceptor_t ic = {.on_start = note_peer};
  CHECK_EQ(uvg_server_add_interceptor(s, &ic, NULL), 0);
  CHECK_EQ(uvg_server_listen(s, "127.0.0.1:0", creds, port), 0);
  /* the server holds its own reference from here on */
  uvg_server_credentials_release(creds);
  return s;
}

static void close_server(uvg_server_t *s) {
  int before = closed;
  uvg_server_close(s, on_server_closed, NULL);
  CHECK(wait_count(loop, &closed, before + 1, 3000));
}

/* ---- a channel and one unary call ---- */

typedef struct {
  int done;
  uvg_status_code_t code;
  char message[400];
  size_t len;
  int ok_bytes; /* the reply equals the request */
} result_t;

static const uint8_t *sent_msg;
static size_t sent_len;
static int wait_for_ready; /* call_once's calls wait, with a 300 ms deadline */

static void on_reply(const uvg_status_t *st, const uint8_t *reply, size_t len,
                     void *data) {
  result_t *r = data;
  r->done = 1;
  r->code = st->code;
  keep(r->message, sizeof(r->message), st->message);
  r->len = len;
  r->ok_bytes =
      len == sent_len && (len == 0 || memcmp(reply, sent_msg, len) == 0);
}

static int channel_closed;
static void on_channel_closed(uvg_channel_t *ch, void *d) {
  (void)ch;
  (void)d;
  channel_closed++;
}

typedef struct {
  const tc_pem_t *roots;
  const tc_pem_t *cert; /* client certificate, or NULL */
  const char *override;
  const char *target_host; /* default "127.0.0.1" */
  uint64_t connect_timeout;
} client_t;

/* Calls /t.T/Echo with msg over a fresh TLS channel (insecure when
 * c is NULL) and returns the outcome; the channel is closed afterwards. */
static result_t call_once(int port, const client_t *c, const void *msg,
                          size_t len) {
  result_t r;
  memset(&r, 0, sizeof(r));
  uvg_channel_credentials_t *creds = uvg_insecure_channel_credentials();
  if (c != NULL) {
    uvg_tls_channel_options_t o = {
        .root_certs = {.data = c->roots->cert, .len = strlen(c->roots->cert)},
        .server_name_override = c->override,
    };
    if (c->cert != NULL) {
      o.cert_chain =
          (uvg_pem_t){.data = c->cert->cert, .len = strlen(c->cert->cert)};
      o.private_key =
          (uvg_pem_t){.data = c->cert->key, .len = strlen(c->cert->key)};
    }
    CHECK_EQ(uvg_tls_channel_credentials_new(&o, &creds), 0);
  }
  char target[96];
  if (port < 0) /* target_host is the whole target */
    snprintf(target, sizeof(target), "%s", c->target_host);
  else
    snprintf(target, sizeof(target), "%s:%d",
             c && c->target_host ? c->target_host : "127.0.0.1", port);
  uvg_channel_options_t co;
  uvg_channel_options_init(&co);
  if (c != NULL && c->connect_timeout) {
    /* an attempt has max(backoff, min_connect_timeout) for the connect
     * and the handshakes: a backoff below it leaves exactly this */
    co.min_connect_timeout_ms = c->connect_timeout;
    co.backoff_initial_ms = c->connect_timeout / 2;
  }
  uvg_channel_t *ch;
  CHECK_EQ(uvg_channel_new(loop, target, creds, &co, &ch), 0);
  uvg_channel_credentials_release(creds);
  uvg_client_call_options_t opts = {.timeout_ms = wait_for_ready ? 300 : 5000,
                                    .wait_for_ready = wait_for_ready};
  sent_msg = msg;
  sent_len = len;
  CHECK_EQ(uvg_channel_unary(ch, "/t.T/Echo", msg, len, &opts, on_reply, &r),
           0);
  CHECK(wait_count(loop, &r.done, 1, 6000));
  int before = channel_closed;
  uvg_channel_close(ch, on_channel_closed, NULL);
  CHECK(wait_count(loop, &channel_closed, before + 1, 3000));
  return r;
}

/* ---- the tests ---- */

static void test_calls_and_identities(void) {
  int port;
  uvg_server_t *s =
      tls_server(&server_cert, UVG_CLIENT_CERT_NONE, NULL, 0, &port);
  client_t c = {.roots = &ca, .override = "localhost"};
  static uint8_t big[1 << 20];
  memset(big, 0x5a, sizeof(big));
  const size_t sizes[] = {0, 1, 16384 - 5, 16384, 100000, sizeof(big)};
  for (size_t i = 0; i < UVG__ARRAY_SIZE(sizes); i++) {
    result_t r = call_once(port, &c, big, sizes[i]);
    CHECK_EQ(r.code, UVG_STATUS_OK);
    CHECK(r.ok_bytes);
  }
  /* the server's view of the client: TLS without a certificate */
  CHECK_EQ(seen.secure, 1);
  CHECK_EQ(seen.peer_verified, 0);
  CHECK_STR(seen_protocol, "TLSv1.2");
  CHECK_STR(seen_alpn, "h2");
  CHECK_STR(seen_sni, "localhost");
  CHECK(strncmp(seen_suite, "TLS_ECDHE_ECDSA_WITH_", 21) == 0);
  CHECK_EQ(seen.peer_cert_len, 0);
  CHECK_EQ(intercepted_verified, 0);
  close_server(s);
}

/* What a client call sees of the server. */
static int meta_seen;
static char client_saw_cn[128], client_saw_name[128], client_saw_sans[256];
static int client_saw_verified, client_saw_cert_len;
static void on_meta(uvg_client_call_t *call, const uvg_metadata_t *md, size_t n,
                    void *data) {
  (void)md;
  (void)n;
  (void)data;
  const uvg_auth_info_t *a = uvg_client_call_auth_info(call);
  meta_seen = 1;
  if (a == NULL) return;
  keep(client_saw_cn, sizeof(client_saw_cn), a->peer_common_name);
  keep(client_saw_name, sizeof(client_saw_name), a->server_name);
  client_saw_verified = a->peer_verified;
  client_saw_cert_len = (int)a->peer_cert_len;
  client_saw_sans[0] = '\0';
  for (size_t i = 0; i < a->npeer_sans; i++) {
    size_t k = strlen(client_saw_sans);
    snprintf(client_saw_sans + k, sizeof(client_saw_sans) - k, "%s%d:%s",
             i ? "," : "", (int)a->peer_sans[i].type, a->peer_sans[i].value);
  }
}
static int status_seen;
static char client_saw_peer[64];
static void on_status(uvg_client_call_t *call, const uvg_status_t *st,
                      const uvg_metadata_t *t, size_t n, void *data) {
  (void)t;
  (void)n;
  (void)data;
  CHECK_EQ(st->code, UVG_STATUS_OK);
  CHECK(uvg_client_call_auth_info(call) != NULL); /* still, at the end */
  keep(client_saw_peer, sizeof(client_saw_peer), uvg_client_call_peer(call));
  status_seen = 1;
}

static void test_client_sees_server_certificate(void) {
  int port;
  uvg_server_t *s =
      tls_server(&server_cert, UVG_CLIENT_CERT_NONE, NULL, 0, &port);
  uvg_tls_channel_options_t o = {
      .root_certs = {.data = ca.cert, .len = strlen(ca.cert)}};
  uvg_channel_credentials_t *creds;
  CHECK_EQ(uvg_tls_channel_credentials_new(&o, &creds), 0);
  char target[64];
  snprintf(target, sizeof(target), "ipv4:127.0.0.1:%d", port);
  uvg_channel_t *ch;
  CHECK_EQ(uvg_channel_new(loop, target, creds, NULL, &ch), 0);
  uvg_channel_credentials_release(creds);
  static const uvg_client_call_cbs_t cbs = {on_meta, NULL, on_status};
  uvg_client_call_t *call;
  CHECK_EQ(uvg_client_call_start(ch, "/t.T/Echo", NULL, &cbs, NULL, &call), 0);
  CHECK(uvg_client_call_auth_info(call) == NULL); /* no stream yet */
  CHECK_STR(uvg_client_call_peer(call), "");
  uvg_client_call_send(call, "x", 1, 0, NULL, NULL);
  uvg_client_call_half_close(call);
  uvg_client_call_read(call);
  status_seen = meta_seen = 0;
  CHECK(wait_count(loop, &status_seen, 1, 5000));
  CHECK_EQ(meta_seen, 1);
  /* matched by its IP SAN: no override, the target is an address */
  CHECK_STR(client_saw_name, "127.0.0.1");
  CHECK_STR(client_saw_cn, "localhost");
  CHECK_STR(client_saw_sans, "2:localhost,7:127.0.0.1,7:::1");
  CHECK_EQ(client_saw_verified, 1);
  CHECK(client_saw_cert_len > 100);
  /* each side's address of the other */
  char want[64];
  snprintf(want, sizeof(want), "127.0.0.1:%d", port);
  CHECK_STR(client_saw_peer, want);
  CHECK(strncmp(seen_peer, "127.0.0.1:", 10) == 0 &&
        atoi(seen_peer + 10) > 0 && atoi(seen_peer + 10) != port);
  int before = channel_closed;
  uvg_channel_close(ch, on_channel_closed, NULL);
  CHECK(wait_count(loop, &channel_closed, before + 1, 3000));
  close_server(s);
}

/* TLS over a unix socket (the authority "localhost" is the name) and to
 * an IPv6 address (matched by the certificate's IP SAN ::1). */
static void test_unix_and_ipv6(void) {
  uvg_server_t *s;
  uvg_tls_server_options_t to = {
      .cert_chain = {.data = server_cert.cert, .len = strlen(server_cert.cert)},
      .private_key = {.data = server_cert.key, .len = strlen(server_cert.key)},
  };
  uvg_server_credentials_t *creds;
  char path[64], addr[80];
  snprintf(path, sizeof(path), "/tmp/uvg-tls-test-%d.sock", (int)getpid());
  snprintf(addr, sizeof(addr), "unix:%s", path);
  CHECK_EQ(uvg_tls_server_credentials_new(&to, &creds), 0);
  CHECK_EQ(uvg_server_new(loop, NULL, &s), 0);
  CHECK_EQ(uvg_server_register(s, methods, 1), 0);
  CHECK_EQ(uvg_server_listen(s, addr, creds, NULL), 0);
  int v6port = 0;
  int have_v6 = uvg_server_listen(s, "[::1]:0", creds, &v6port) == 0;
  uvg_server_credentials_release(creds);
  client_t c = {.roots = &ca, .target_host = addr};
  result_t r = call_once(-1, &c, "unix", 4);
  CHECK_EQ(r.code, UVG_STATUS_OK);
  CHECK_STR(seen_sni, "localhost");
  if (have_v6) {
    client_t v6 = {.roots = &ca, .target_host = "[::1]"};
    r = call_once(v6port, &v6, "v6", 2);
    CHECK_EQ(r.code, UVG_STATUS_OK);
    CHECK(r.ok_bytes);
  } else {
    fprintf(stderr, "  no IPv6 loopback here: only the unix socket checked\n");
  }
  close_server(s);
}

/* A refused handshake: the call fails UNAVAILABLE with `why` in its
 * message, the server logs `server_log`, and the next good client is
 * served. */
static void refused(int port, const client_t *c, const char *why,
                    const char *server_log) {
  int from = nlogged;
  result_t r = call_once(port, c, "hi", 2);
  CHECK_EQ(r.code, UVG_STATUS_UNAVAILABLE);
  if (strstr(r.message, why) == NULL)
    fprintf(stderr, "  status message: %s\n  (expected to hold: %s)\n",
            r.message, why);
  CHECK(strstr(r.message, why) != NULL);
  if (server_log != NULL) {
    wait_ms(loop, 20);
    if (!logged_since(from, server_log))
      fprintf(stderr, "  no log line with: %s\n", server_log);
    CHECK(logged_since(from, server_log));
  }
}

static void test_refused_certificates(void) {
  int port;
  uvg_server_t *s =
      tls_server(&server_cert, UVG_CLIENT_CERT_NONE, NULL, 0, &port);
  client_t wrong_host = {.roots = &ca, .override = "wrong.example"};
  refused(
      port, &wrong_host,
      "TLS handshake failed: the server's certificate is refused: it is not "
      "for \"wrong.example\"",
      "refused it with the alert bad_certificate");
  client_t untrusted = {.roots = &other_ca, .override = "localhost"};
  refused(port, &untrusted, "it is not signed by a trusted CA",
          "refused it with the alert unknown_ca");
  /* a wait-for-ready call waits out its deadline, then says why */
  wait_for_ready = 1;
  result_t r = call_once(port, &wrong_host, "hi", 2);
  wait_for_ready = 0;
  CHECK_EQ(r.code, UVG_STATUS_DEADLINE_EXCEEDED);
  CHECK(strstr(r.message,
               "while waiting for a connection; the last attempt: TLS "
               "handshake failed") != NULL);
  client_t ok = {.roots = &ca, .override = "localhost"};
  CHECK_EQ(call_once(port, &ok, "hi", 2).code, UVG_STATUS_OK);
  close_server(s);

  s = tls_server(&expired_cert, UVG_CLIENT_CERT_NONE, NULL, 0, &port);
  refused(port, &ok, "it has expired", "certificate_expired");
  close_server(s);

  /* an address as the target: only an IP SAN matches it */
  s = tls_server(&ip_less_cert, UVG_CLIENT_CERT_NONE, NULL, 0, &port);
  client_t by_ip = {.roots = &ca};
  refused(port, &by_ip, "it is not for \"127.0.0.1\"", NULL);
  close_server(s);
}

static void test_plaintext_either_way(void) {
  int port;
  uvg_server_t *s =
      tls_server(&server_cert, UVG_CLIENT_CERT_NONE, NULL, 0, &port);
  int from = nlogged;
  result_t r = call_once(port, NULL, "hi", 2);
  CHECK_EQ(r.code, UVG_STATUS_UNAVAILABLE);
  /* the TLS port answered the plaintext client in HTTP/2 */
  if (strstr(r.message, "GOAWAY INADEQUATE_SECURITY from the peer: this port "
                        "requires TLS") == NULL)
    fprintf(stderr, "  status message: %s\n", r.message);
  CHECK(strstr(r.message, "GOAWAY INADEQUATE_SECURITY from the peer: this port "
                          "requires TLS") != NULL);
  wait_ms(loop, 20);
  CHECK(logged_since(from, "the client sent plaintext HTTP/2 to a TLS port"));
  client_t ok = {.roots = &ca, .override = "localhost"};
  CHECK_EQ(call_once(port, &ok, "hi", 2).code, UVG_STATUS_OK);
  close_server(s);

  /* a TLS channel to a plaintext server */
  CHECK_EQ(uvg_server_new(loop, NULL, &s), 0);
  CHECK_EQ(uvg_server_register(s, methods, 1), 0);
  CHECK_EQ(uvg_server_listen(s, "127.0.0.1:0",
                             uvg_insecure_server_credentials(), &port),
           0);
  refused(port, &ok, "TLS handshake failed: the server", NULL);
  close_server(s);
}

static void test_mtls(void) {
  int port;
  uvg_server_t *s =
      tls_server(&server_cert, UVG_CLIENT_CERT_REQUIRE, &client_ca, 0, &port);
  client_t with = {.roots = &ca, .override = "localhost", .cert = &client_cert};
  intercepted_verified = -1;
  result_t r = call_once(port, &with, "hi", 2);
  CHECK_EQ(r.code, UVG_STATUS_OK);
  CHECK_EQ(seen.peer_verified, 1);
  CHECK_EQ(intercepted_verified, 1);
  CHECK_STR(seen_cn, "client-one");
  CHECK_STR(seen_subject, "O=uvgrpc tests, CN=client-one");
  CHECK_STR(seen_san[0], "spiffe://uvgrpc.test/client-one");
  CHECK_EQ(seen_san_type, UVG_SAN_URI);
  client_t without = {.roots = &ca, .override = "localhost"};
  refused(port, &without,
          "the server refused it with the alert handshake_failure (it asked "
          "for a client certificate, and this channel has none)",
          "the client sent no certificate, and one is required");
  client_t stranger = {
      .roots = &ca, .override = "localhost", .cert = &stranger_cert};
  refused(
      port, &stranger, "TLS handshake failed",
      "the client's certificate is refused: it is not signed by a trusted CA");
  close_server(s);

  /* REQUEST: a client may come without, but not with a bad one */
  s = tls_server(&server_cert, UVG_CLIENT_CERT_REQUEST, &client_ca, 0, &port);
  CHECK_EQ(call_once(port, &without, "hi", 2).code, UVG_STATUS_OK);
  CHECK_EQ(seen.peer_verified, 0);
  CHECK_EQ(call_once(port, &with, "hi", 2).code, UVG_STATUS_OK);
  CHECK_EQ(seen.peer_verified, 1);
  CHECK_STR(seen_cn, "client-one");
  refused(
      port, &stranger, "unknown_ca",
      "the client's certificate is refused: it is not signed by a trusted CA");
  close_server(s);
}

/* A server that accepts and never answers the ClientHello: the channel's
 * connect timeout ends the attempt, and says it was the TLS handshake. */
static int mute_fds[4], nmute;
static void on_mute_accept(uvg__listener_t *l, int fd) {
  (void)l;
  if (nmute < 4)
    mute_fds[nmute++] = fd; /* kept open and silent until the test ends */
  else
    close(fd);
}

static int listener_closed;
static void on_listener_closed(uvg__listener_t *l) {
  (void)l;
  listener_closed++;
}

static void test_client_handshake_timeout(void) {
  uvg__sched_t *sched;
  uvg__listener_t l;
  struct sockaddr_in a;
  int port;
  uv_ip4_addr("127.0.0.1", 0, &a);
  CHECK_EQ(uvg__sched_acquire(loop, &sched), 0);
  CHECK_EQ(uvg__listener_open(sched, &l, (struct sockaddr *)&a, NULL, &port, 0,
                              on_mute_accept),
           0);
  client_t c = {.roots = &ca, .override = "localhost", .connect_timeout = 200};
  int from = nlogged;
  result_t r = call_once(port, &c, "hi", 2);
  CHECK_EQ(r.code, UVG_STATUS_UNAVAILABLE);
  CHECK(strstr(r.message, "TLS handshake timed out") != NULL);
  /* the attempt's 200 ms less what the TCP connect took */
  CHECK(logged_since(from, "TLS handshake not finished in 19") ||
        logged_since(from, "TLS handshake not finished in 200 ms"));
  int before = listener_closed;
  uvg__listener_close(&l, on_listener_closed);
  CHECK(wait_count(loop, &listener_closed, before + 1, 1000));
  while (nmute > 0) close(mute_fds[--nmute]);
  uvg__sched_release(sched);
}

/* ---- the stream itself: one turn's output, one write, full records ---- */

static int writes_done, stream_closed;
static void s_read(uvg__stream_t *s, ssize_t n, const uint8_t *b) {
  (void)s;
  (void)n;
  (void)b;
}
static void s_write(uvg__stream_t *s, int status) {
  (void)s;
  CHECK_EQ(status, 0);
  writes_done++;
}
static void s_close(uvg__stream_t *s) {
  (void)s;
  stream_closed++;
}
static const uvg__stream_cbs_t s_cbs = {s_read, s_write, s_close};
static uvg__stream_t srv_stream;
static uint8_t srv_buf[64 * 1024];
static uvg_server_credentials_t *stream_creds;
static int stream_accepted;

static void on_stream_accept(uvg__listener_t *l, int fd) {
  CHECK_EQ(uvg__stream_open_fd(loop, &srv_stream, fd, l->is_unix, &s_cbs,
                               srv_buf, sizeof(srv_buf)),
           0);
  CHECK_EQ(uvg__tls_wrap(&srv_stream, &stream_creds->cfg, NULL), 0);
  CHECK_EQ(srv_stream.ops->read_start(&srv_stream), 0);
  stream_accepted = 1;
}

static void test_one_write_full_records(void) {
  uvg__sched_t *sched;
  uvg__listener_t l;
  struct sockaddr_in a;
  int port;
  uvg_tls_server_options_t to = {
      .cert_chain = {.data = server_cert.cert, .len = strlen(server_cert.cert)},
      .private_key = {.data = server_cert.key, .len = strlen(server_cert.key)},
  };
  CHECK_EQ(uvg_tls_server_credentials_new(&to, &stream_creds), 0);
  uv_ip4_addr("127.0.0.1", 0, &a);
  CHECK_EQ(uvg__sched_acquire(loop, &sched), 0);
  CHECK_EQ(uvg__listener_open(sched, &l, (struct sockaddr *)&a, NULL, &port, 0,
                              on_stream_accept),
           0);
  tp_t p;
  static const char *h2[] = {"h2", NULL};
  tp_opts_t po = {.ca = ca.cert, .hostname = "localhost", .alpn = h2};
  CHECK_EQ(tp_connect(&p, loop, port, &po), 0);
  CHECK_EQ(tp_handshake(&p, 3000), 0);
  CHECK_EQ(stream_accepted, 1);
  /* a turn's worth of pieces: 300 of 9 + 100 bytes (frame headers and
   * short messages), 32700 bytes, then one piece of 40000 */
  static uint8_t pieces[300][109], large[40000];
  uv_buf_t iov[301];
  size_t total = 0;
  for (int i = 0; i < 300; i++) {
    memset(pieces[i], i, sizeof(pieces[i]));
    iov[i] = uv_buf_init((char *)pieces[i], sizeof(pieces[i]));
    total += sizeof(pieces[i]);
  }
  memset(large, 0xee, sizeof(large));
  iov[300] = uv_buf_init((char *)large, sizeof(large));
  total += sizeof(large);
  writes_done = 0;
  CHECK_EQ(srv_stream.ops->write(&srv_stream, iov, 301), 0);
  static uint8_t got[80000];
  size_t have = 0;
  while (have < total) {
    int n = tp_read(&p, got + have, sizeof(got) - have, 3000);
    if (n <= 0) break;
    have += (size_t)n;
  }
  CHECK_EQ(have, total);
  CHECK(memcmp(got, pieces, sizeof(pieces)) == 0);
  CHECK(memcmp(got + sizeof(pieces), large, sizeof(large)) == 0);
  CHECK(wait_count(loop, &writes_done, 1, 1000));
  /* every record full but the last: ceil(72700 / 16384) */
  CHECK_EQ(p.app_records, (int)((total + 16383) / 16384));
  /* close_notify on shutdown: the peer reads the end cleanly */
  CHECK_EQ(srv_stream.ops->shutdown(&srv_stream), 0);
  uint8_t one;
  CHECK_EQ(tp_read(&p, &one, 1, 2000), 0);
  tp_close(&p);
  stream_closed = 0;
  srv_stream.ops->close(&srv_stream);
  CHECK(wait_count(loop, &stream_closed, 1, 1000));
  int before = listener_closed;
  uvg__listener_close(&l, on_listener_closed);
  CHECK(wait_count(loop, &listener_closed, before + 1, 1000));
  uvg__sched_release(sched);
  uvg_server_credentials_release(stream_creds);
}

/* ---- certificates for all of them ---- */

static void make_certs(void) {
  static const char *const localhost[] = {"localhost", NULL};
  static const char *const loopback[] = {"127.0.0.1", "::1", NULL};
  static const char *const client_uri[] = {"spiffe://uvgrpc.test/client-one",
                                           NULL};
  CHECK_EQ(tc_make_ca(&ca, "test CA"), 0);
  CHECK_EQ(tc_make_ca(&other_ca, "another CA"), 0);
  CHECK_EQ(tc_make_ca(&client_ca, "client CA"), 0);
  tc_leaf_t leaf = {.cn = "localhost", .dns = localhost, .ips = loopback};
  CHECK_EQ(tc_make_leaf(&server_cert, &ca, &leaf), 0);
  tc_leaf_t no_ip = {.cn = "localhost", .dns = localhost};
  CHECK_EQ(tc_make_leaf(&ip_less_cert, &ca, &no_ip), 0);
  tc_leaf_t old = {.cn = "localhost",
                   .dns = localhost,
                   .not_before_days = -30,
                   .not_after_days = -1};
  CHECK_EQ(tc_make_leaf(&expired_cert, &ca, &old), 0);
  tc_leaf_t client = {.cn = "client-one", .uris = client_uri};
  CHECK_EQ(tc_make_leaf(&client_cert, &client_ca, &client), 0);
  tc_leaf_t stranger = {.cn = "stranger"};
  CHECK_EQ(tc_make_leaf(&stranger_cert, &other_ca, &stranger), 0);
}

int main(void) {
  loop = uv_default_loop();
  uvg_set_log_cb(on_log, NULL);
  make_certs();
  RUN(test_calls_and_identities);
  RUN(test_client_sees_server_certificate);
  RUN(test_unix_and_ipv6);
  RUN(test_refused_certificates);
  RUN(test_plaintext_either_way);
  RUN(test_mtls);
  RUN(test_client_handshake_timeout);
  RUN(test_one_write_full_records);
  tc_pem_t *all[] = {&ca,           &other_ca,  &server_cert, &ip_less_cert,
                     &expired_cert, &client_ca, &client_cert, &stranger_cert};
  for (size_t i = 0; i < UVG__ARRAY_SIZE(all); i++) tc_free(all[i]);
  uv_run(loop, UV_RUN_DEFAULT);
  CHECK_EQ(uv_loop_close(loop), 0);
  TEST_EXIT();
}

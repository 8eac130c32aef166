/* The allocation-failure sweep of alloc_test.c, for the client and over
 * TLS: a channel makes a unary, a server-streaming, a client-streaming and
 * a bidi call to a server on the same loop, then closes; the Nth
 * allocation fails, for every N of that exchange, on whichever side it
 * falls. Every call that started ends in exactly one completion on each
 * side, no callback runs inside a library function, everything allocated
 * is given back, and the loop ends with no handle left.
 *
 * With TLS (argument "tls") our allocations around mbedtls are swept
 * (records, the connection's TLS state, credentials); mbedtls's own go to
 * libc's malloc, as Debian builds it without MBEDTLS_PLATFORM_MEMORY, and
 * are not. */
#include <signal.h>
#include <uvgrpc.h>

#include "fault_harness.h"
#include "test.h"
#include "tls_certs.h"

enum { UNARY, SSTREAM, CSTREAM, BIDI, NCALLS };
_Static_assert(NCALLS == FH_KINDS, "a round has one call of each kind");
enum { ROUNDS = 3 };
static const char *const paths[NCALLS] = {"/t.T/Unary", "/t.T/SStream",
                                          "/t.T/CStream", "/t.T/Bidi"};

static int use_tls;
static tc_pem_t ca, leaf;

static fh_round_t T;

static const uint8_t msg[] = "message";

/* ---- server ---- */

static int finished_mark;
static void s_finish(uvg_call_t *call) {
  if (uvg_call_get_data(call) == &finished_mark) return;
  uvg_call_set_data(call, &finished_mark);
  API(uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0));
}
/* A handler whose send fails ends the call with an error of its own. */
static int s_send(uvg_call_t *call, const uint8_t *m, size_t len) {
  int rc;
  API(rc = uvg_call_send(call, m, len, 0, NULL, NULL));
  if (rc != 0 && uvg_call_get_data(call) != &finished_mark) {
    uvg_call_set_data(call, &finished_mark);
    API(uvg_call_finish(call, UVG_STATUS_RESOURCE_EXHAUSTED, NULL, NULL, 0));
  }
  return rc;
}
static void s_call(uvg_call_t *call, const uint8_t *m, size_t len) {
  fh_entered();
  T.s_calls++;
  int path = *(int *)uvg_call_method_data(call);
  if (path == UNARY && s_send(call, m, len) != 0) return;
  if (path == SSTREAM)
    for (int i = 0; i < ROUNDS; i++)
      if (s_send(call, m, len) != 0) return;
  if (path == UNARY || path == SSTREAM) s_finish(call);
}
static void s_message(uvg_call_t *call, const uint8_t *m, size_t len) {
  fh_entered();
  if (*(int *)uvg_call_method_data(call) == BIDI) s_send(call, m, len);
}
static void s_half_close(uvg_call_t *call) {
  fh_entered();
  if (*(int *)uvg_call_method_data(call) == CSTREAM &&
      s_send(call, msg, sizeof(msg)) != 0)
    return;
  s_finish(call);
}
static void s_cancel(uvg_call_t *call, const uvg_status_t *st) {
  (void)st;
  fh_entered();
  s_finish(call);
}
static void s_done(uvg_call_t *call, const uvg_status_t *st) {
  (void)call;
  (void)st;
  fh_entered();
  T.s_dones++;
}

static int kinds[NCALLS] = {UNARY, SSTREAM, CSTREAM, BIDI};
static const uvg_method_t methods[NCALLS] = {
    {.path = "/t.T/Unary", .type = UVG_METHOD_UNARY, .on_call = s_call,
     .on_cancel = s_cancel, .on_done = s_done, .method_data = &kinds[UNARY]},
    {.path = "/t.T/SStream", .type = UVG_METHOD_SERVER_STREAMING,
     .on_call = s_call, .on_cancel = s_cancel, .on_done = s_done,
     .method_data = &kinds[SSTREAM]},
    {.path = "/t.T/CStream", .type = UVG_METHOD_CLIENT_STREAMING,
     .on_call = s_call, .on_message = s_message, .on_half_close = s_half_close,
     .on_cancel = s_cancel, .on_done = s_done, .method_data = &kinds[CSTREAM]},
    {.path = "/t.T/Bidi", .type = UVG_METHOD_BIDI_STREAMING, .on_call = s_call,
     .on_message = s_message, .on_half_close = s_half_close,
     .on_cancel = s_cancel, .on_done = s_done, .method_data = &kinds[BIDI]}};

/* ---- client ---- */

/* A client whose send fails gives the call up. */
static int c_send(uvg_client_call_t *call) {
  int rc;
  API(rc = uvg_client_call_send(call, msg, sizeof(msg), 0, NULL, NULL));
  if (rc != 0) API(uvg_client_call_cancel(call));
  return rc;
}
static void c_message(uvg_client_call_t *call, const uint8_t *m, size_t len,
                      void *d) {
  (void)m;
  (void)len;
  fh_entered();
  int k = *(int *)d;
  T.c_msgs[k]++;
  if (k == BIDI && T.c_msgs[k] < ROUNDS && c_send(call) != 0) return;
  if (k == BIDI && T.c_msgs[k] == ROUNDS)
    API(uvg_client_call_half_close(call));
  API(uvg_client_call_read(call));
}
static void c_status(uvg_client_call_t *call, const uvg_status_t *st,
                     const uvg_metadata_t *tr, size_t n, void *d) {
  (void)call;
  (void)tr;
  (void)n;
  fh_entered();
  int k = *(int *)d;
  T.c_statuses[k]++;
  T.c_code[k] = st->code;
}
static void c_unary_done(const uvg_status_t *st, const uint8_t *reply,
                         size_t len, void *d) {
  (void)d;
  fh_entered();
  T.c_statuses[UNARY]++;
  T.c_code[UNARY] = st->code;
  T.c_msgs[UNARY] += st->code == UVG_STATUS_OK && reply != NULL &&
                     len == sizeof(msg);
}

static void start_calls(uvg_channel_t *ch) {
  static const uvg_client_call_cbs_t cbs = {.on_message = c_message,
                                            .on_status = c_status};
  uvg_client_call_options_t o = {.timeout_ms = 5000};
  int rc;
  API(rc = uvg_channel_unary(ch, paths[UNARY], msg, sizeof(msg), &o,
                             c_unary_done, &kinds[UNARY]));
  T.c_started[UNARY] = rc == 0;
  for (int k = SSTREAM; k < NCALLS; k++) {
    uvg_client_call_t *call;
    API(rc = uvg_client_call_start(ch, paths[k], &o, &cbs, &kinds[k], &call));
    if (rc != 0) continue;
    T.c_started[k] = 1;
    int sends = k == SSTREAM || k == BIDI ? 1 : ROUNDS, failed = 0;
    for (int i = 0; i < sends && !failed; i++) failed = c_send(call) != 0;
    if (failed) continue;
    if (k != BIDI) API(uvg_client_call_half_close(call));
    API(uvg_client_call_read(call));
  }
}

static int calls_open(void) { return fh_round_open(&T); }
static void close_all(void) { fh_round_close(&T); }

/* One exchange on a fresh loop. Returns how many calls ended OK with all
 * their messages. */
static int one_round(void) {
  uv_loop_t loop;
  uvg_server_credentials_t *screds = uvg_insecure_server_credentials();
  uvg_channel_credentials_t *ccreds = uvg_insecure_channel_credentials();
  int port = 0;
  memset(&T, 0, sizeof(T));
  fh_reentered = 0;
  for (int k = 0; k < NCALLS; k++) T.c_code[k] = -1;
  CHECK_EQ(uv_loop_init(&loop), 0);
  if (use_tls) {
    uvg_tls_server_options_t so = {
        .cert_chain = {.data = leaf.cert, .len = strlen(leaf.cert)},
        .private_key = {.data = leaf.key, .len = strlen(leaf.key)}};
    uvg_tls_channel_options_t co = {
        .root_certs = {.data = ca.cert, .len = strlen(ca.cert)},
        .server_name_override = "localhost"};
    if (uvg_tls_server_credentials_new(&so, &screds) != 0) screds = NULL;
    if (uvg_tls_channel_credentials_new(&co, &ccreds) != 0) ccreds = NULL;
  }
  if (screds != NULL && uvg_server_new(&loop, NULL, &T.server) == 0 &&
      (uvg_server_register(T.server, methods, NCALLS) != 0 ||
       uvg_server_listen(T.server, "127.0.0.1:0", screds, &port) != 0))
    port = 0;
  char target[64];
  snprintf(target, sizeof(target), "ipv4:127.0.0.1:%d", port);
  uvg_channel_options_t copts;
  uvg_channel_options_init(&copts);
  copts.disable_http_proxy = 1;
  if (port != 0 && ccreds != NULL &&
      uvg_channel_new(&loop, target, ccreds, &copts, &T.channel) == 0)
    start_calls(T.channel);

  /* the credentials: the server and the channel hold their references */
  if (use_tls) {
    uvg_server_credentials_release(screds);
    uvg_channel_credentials_release(ccreds);
  }
  static const int want[NCALLS] = {1, ROUNDS, 1, ROUNDS};
  return fh_round_finish(&loop, &T, calls_open, close_all, paths, want);
}

static void test_allocation_failures(void) {
  int all_ok;
  long total = fh_sweep(one_round, NCALLS, &all_ok);
  /* nghttp2 sessions, calls, channel and subchannel state at the least */
  CHECK(total > 100);
  fprintf(stderr, "  %s: %ld allocations failed one at a time; all four calls "
          "still succeeded in %d of the runs\n", use_tls ? "TLS" : "plaintext",
          total, all_ok);
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN); /* libuv writes with write(2) */
  use_tls = argc > 1 && strcmp(argv[1], "tls") == 0;
  uvg_set_log_cb(fh_quiet, NULL);
  if (use_tls) {
    static const char *const dns[] = {"localhost", NULL};
    tc_leaf_t l = {.cn = "localhost", .dns = dns};
    if (tc_make_ca(&ca, "alloc CA") != 0 || tc_make_leaf(&leaf, &ca, &l) != 0)
      return 1;
  }
  CHECK_EQ(uvg_set_allocator(fh_malloc, fh_realloc, fh_free), 0);
  RUN(test_allocation_failures);
  if (use_tls) {
    tc_free(&ca);
    tc_free(&leaf);
  }
  TEST_EXIT();
}

/* Faults at every step of a call, our client against our server on one
 * loop: the connection cut by RST or FIN at every byte boundary of a
 * unary and of a bidi exchange, in both directions (test/unit/fault_relay.c);
 * the client's deadline passing at each step; and each side closing or
 * cancelling from inside each of its callbacks. In every case each call
 * ends in exactly one completion on each side with a status that says
 * what happened (never OK for a call that did not complete), no callback
 * runs inside a library function, and the loop ends with no handle left
 * (uv_loop_close() succeeds on a fresh loop per case). */
#include <signal.h>
#include <uvgrpc.h>

#include "fault_harness.h"
#include "fault_relay.h"
#include "test.h"
#include "tls_certs.h"

static tc_pem_t ca, leaf;

/* BIG: a unary call of 100 kB each way, past the client's first stream
 * window (64 KiB) and many DATA frames long */
enum { UNARY, BIDI, BIG };
enum { ROUNDS = 3 }; /* bidi messages each way */
enum { BIG_LEN = 100000 };

/* Where a case acts from inside a callback, and what it does there. */
typedef enum {
  AT_NONE,
  /* server */
  AT_S_CALL,
  AT_S_MESSAGE,
  AT_S_HALF_CLOSE,
  AT_S_SENT,
  AT_S_DONE,
  /* client */
  AT_C_METADATA,
  AT_C_MESSAGE,
  AT_C_SENT,
  AT_C_STATUS,
  AT_C_WATCH,
  AT_COUNT
} at_t;

typedef enum {
  DO_S_FINISH,  /* server: finish the call with ABORTED */
  DO_S_CLOSE,   /* server: uvg_server_close() */
  DO_C_CANCEL,  /* client: uvg_client_call_cancel() */
  DO_C_CLOSE,   /* client: uvg_channel_close() */
} do_t;

static const char *const at_names[] = {
    "none",      "on_call",   "on_message", "on_half_close", "send-cb",
    "on_done",   "on_metadata", "on_message", "send-cb",     "on_status",
    "watch"};

/* One case's state (every library call is made through API(), so that a
 * callback run inside one is counted: fault_harness.h). */
static struct {
  int kind;
  at_t at;
  do_t action;
  int acted;
  uint64_t timeout_ms;
  uint64_t server_delay_ms; /* the server answers each message this late */

  uv_loop_t *loop;
  uvg_server_t *server;
  uvg_channel_t *channel;
  int server_closed, channel_closed;

  /* server side */
  uvg_call_t *scall;
  int s_calls, s_dones, s_code, s_msgs;
  uv_timer_t delay;
  uint8_t pending[16];
  size_t pending_len;
  int pending_last;

  /* client side */
  uvg_client_call_t *ccall;
  int c_calls, c_statuses, c_code, c_msgs, c_sent;
  int copy_sends;
} T;

static uint8_t request_bytes[ROUNDS][8];
static uint8_t big_request[BIG_LEN];
static uint8_t reply_bytes[BIG_LEN];

static int is_unary(int kind) { return kind != BIDI; }


static void close_server(void) {
  if (T.server == NULL) return;
  API(uvg_server_close(T.server, fh_server_closed, &T.server_closed));
  T.server = NULL;
}
static void close_channel(void) {
  if (T.channel == NULL) return;
  API(uvg_channel_close(T.channel, fh_channel_closed, &T.channel_closed));
  T.channel = NULL;
}

/* A server call's data once its handler finished it (a hedged call has
 * several server calls at once). */
static int finished_mark;
static int finished(uvg_call_t *call) {
  return uvg_call_get_data(call) == &finished_mark;
}

static void server_finish(uvg_call_t *call, uvg_status_code_t code) {
  if (finished(call)) return;
  uvg_call_set_data(call, &finished_mark);
  API(uvg_call_finish(call, code, code ? "injected" : NULL, NULL, 0));
}

/* The case's action if `at` is its point; returns whether it acted. */
static int act(at_t at) {
  if (T.at != at || T.acted) return 0;
  T.acted = 1;
  switch (T.action) {
  case DO_S_FINISH:
    if (T.scall != NULL) server_finish(T.scall, UVG_STATUS_ABORTED);
    break;
  case DO_S_CLOSE:
    close_server();
    break;
  case DO_C_CANCEL:
    if (T.ccall != NULL) API(uvg_client_call_cancel(T.ccall));
    break;
  case DO_C_CLOSE:
    close_channel();
    break;
  }
  return 1;
}

/* ---- server ---- */

static void s_sent(uvg_call_t *call, int status, void *d) {
  (void)call;
  (void)status;
  (void)d;
  fh_entered();
  act(AT_S_SENT);
}

static void s_reply(uvg_call_t *call, const uint8_t *msg, size_t len,
                    int last) {
  if (finished(call)) return;
  memcpy(reply_bytes, msg, len);
  int rc;
  API(rc = uvg_call_send(call, reply_bytes, len, 0, s_sent, NULL));
  if (last && rc == 0) server_finish(call, UVG_STATUS_OK);
}

static void on_delay(uv_timer_t *t) {
  (void)t;
  if (T.scall != NULL)
    s_reply(T.scall, T.pending, T.pending_len, T.pending_last);
}

/* Answers now or, in the deadline cases, after the server's delay. */
static void s_answer(uvg_call_t *call, const uint8_t *msg, size_t len,
                     int last) {
  T.s_msgs++;
  if (T.server_delay_ms == 0) {
    s_reply(call, msg, len, last);
    return;
  }
  memcpy(T.pending, msg, len);
  T.pending_len = len;
  T.pending_last = last;
  uv_timer_start(&T.delay, on_delay, T.server_delay_ms, 0);
}

static void s_call(uvg_call_t *call, const uint8_t *msg, size_t len) {
  fh_entered();
  T.s_calls++;
  T.scall = call;
  if (act(AT_S_CALL)) return;
  if (is_unary(T.kind)) s_answer(call, msg, len, 1);
}
static void s_message(uvg_call_t *call, const uint8_t *msg, size_t len) {
  fh_entered();
  if (act(AT_S_MESSAGE)) return;
  s_answer(call, msg, len, 0);
}
static void s_half_close(uvg_call_t *call) {
  fh_entered();
  if (act(AT_S_HALF_CLOSE)) return;
  server_finish(call, UVG_STATUS_OK);
}
static void s_cancel(uvg_call_t *call, const uvg_status_t *st) {
  (void)st;
  fh_entered();
  if (call == T.scall) uv_timer_stop(&T.delay);
  server_finish(call, UVG_STATUS_CANCELLED);
}
static void s_done(uvg_call_t *call, const uvg_status_t *st) {
  fh_entered();
  T.s_dones++;
  T.s_code = st->code;
  if (call == T.scall) {
    T.scall = NULL;
    uv_timer_stop(&T.delay);
  }
  act(AT_S_DONE);
}

static const uvg_method_t methods[] = {
    {.path = "/t.T/Unary",
     .type = UVG_METHOD_UNARY,
     .on_call = s_call,
     .on_cancel = s_cancel,
     .on_done = s_done},
    {.path = "/t.T/Bidi",
     .type = UVG_METHOD_BIDI_STREAMING,
     .on_call = s_call,
     .on_message = s_message,
     .on_half_close = s_half_close,
     .on_cancel = s_cancel,
     .on_done = s_done}};

/* ---- client ---- */

static void c_sent(uvg_client_call_t *call, int status, void *d) {
  (void)call;
  (void)d;
  fh_entered();
  T.c_sent += status == 0;
  act(AT_C_SENT);
}

static void c_send(int i) {
  /* with a retry policy the request is copied, so that it can go again */
  uvg_client_send_cb cb = T.copy_sends ? NULL : c_sent;
  if (T.kind == BIG)
    API(uvg_client_call_send(T.ccall, big_request, BIG_LEN, 0, cb, NULL));
  else
    API(uvg_client_call_send(T.ccall, request_bytes[i],
                             sizeof(request_bytes[i]), 0, cb, NULL));
}

static void c_metadata(uvg_client_call_t *call, const uvg_metadata_t *md,
                       size_t n, void *d) {
  (void)call;
  (void)md;
  (void)n;
  (void)d;
  fh_entered();
  act(AT_C_METADATA);
}
static void c_message(uvg_client_call_t *call, const uint8_t *msg, size_t len,
                      void *d) {
  (void)d;
  fh_entered();
  int i = T.c_msgs++;
  if (T.kind == BIG)
    CHECK(i == 0 && len == BIG_LEN && memcmp(msg, big_request, len) == 0);
  else
    CHECK(i < ROUNDS && len == sizeof(request_bytes[i]) &&
          memcmp(msg, request_bytes[i], len) == 0);
  if (act(AT_C_MESSAGE)) return;
  if (T.kind == BIDI && i + 1 < ROUNDS) c_send(i + 1);
  if (T.kind == BIDI && i + 1 == ROUNDS) API(uvg_client_call_half_close(call));
  API(uvg_client_call_read(call));
}
static void c_status(uvg_client_call_t *call, const uvg_status_t *st,
                     const uvg_metadata_t *tr, size_t n, void *d) {
  (void)call;
  (void)tr;
  (void)n;
  (void)d;
  fh_entered();
  T.c_statuses++;
  T.c_code = st->code;
  T.ccall = NULL;
  act(AT_C_STATUS);
}

static void c_watch(uvg_channel_t *ch, uvg_connectivity_t state, void *d) {
  (void)d;
  fh_entered();
  if (state == UVG_STATE_SHUTDOWN) return;
  if (state == UVG_STATE_READY && act(AT_C_WATCH)) return;
  if (T.channel == ch) API(uvg_channel_watch_state(ch, state, c_watch, NULL));
}

static void start_call(void) {
  static const uvg_client_call_cbs_t cbs = {
      .on_metadata = c_metadata, .on_message = c_message, .on_status = c_status};
  uvg_client_call_options_t o = {.timeout_ms = T.timeout_ms};
  int rc;
  API(rc = uvg_client_call_start(T.channel,
                                 is_unary(T.kind) ? "/t.T/Unary" : "/t.T/Bidi",
                                 &o, &cbs, NULL, &T.ccall));
  CHECK_EQ(rc, 0);
  if (rc != 0) return;
  T.c_calls++;
  c_send(0);
  if (is_unary(T.kind)) API(uvg_client_call_half_close(T.ccall));
  API(uvg_client_call_read(T.ccall));
}

/* ---- one case ---- */

/* A user's reading of a final status: OK only for a call that completed,
 * ABORTED only where the server finished so, otherwise what the fault
 * makes it. */
static int sensible(int code, int completed) {
  if (code == UVG_STATUS_OK) return completed;
  return code == UVG_STATUS_CANCELLED || code == UVG_STATUS_UNAVAILABLE ||
         code == UVG_STATUS_DEADLINE_EXCEEDED ||
         (code == UVG_STATUS_ABORTED && T.action == DO_S_FINISH && T.acted);
}

typedef struct {
  int kind;
  at_t at;
  do_t action;
  fr_kill_t kill;
  int dir;
  int64_t budget; /* < 0: no relay fault */
  int tls;
  const char *service_config; /* the channel's default; NULL: none */
  uint64_t timeout_ms, server_delay_ms;
} case_t;

static fr_t relay;

static int calls_open(void) {
  return T.c_statuses < T.c_calls || T.s_dones < T.s_calls;
}
static void close_all(void) {
  close_channel();
  close_server();
  fr_stop(&relay);
  uv_close((uv_handle_t *)&T.delay, NULL);
}

static int64_t case_bytes[2]; /* relayed in the last case, per direction */
static int outcomes[UVG_STATUS_UNAUTHENTICATED + 1]; /* client codes seen */

/* Runs one case on a fresh loop; returns the number of failed checks. */
static int run_case(const case_t *k, const char *label) {
  int before = test_failures;
  const char *only = getenv("FAULT_ONLY");
  if (only != NULL && k->budget < 0 && k->at == AT_NONE && !k->timeout_ms)
    only = NULL; /* the clean exchange that sizes the sweep */
  if (only != NULL && strstr(label, only) == NULL) return -1;
  if (getenv("FAULT_VERBOSE") != NULL) fprintf(stderr, "  case %s\n", label);
  uv_loop_t loop;
  /* a cut connection is the first only: a call the client may retry
   * (transparently, as it never reached the server) goes on the next */
  relay = (fr_t){.kill = k->kill, .dir = k->dir, .budget = k->budget,
                 .faulty = 1};
  int port;
  uint64_t t0 = uv_hrtime();
  memset(&T, 0, sizeof(T));
  fh_reentered = 0;
  T.kind = k->kind;
  T.at = k->at;
  T.action = k->action;
  T.timeout_ms = k->timeout_ms ? k->timeout_ms : 5000;
  T.server_delay_ms = k->server_delay_ms;
  T.copy_sends = k->service_config != NULL;
  T.c_code = T.s_code = -1;
  CHECK_EQ(uv_loop_init(&loop), 0);
  T.loop = &loop;
  uv_timer_init(&loop, &T.delay);

  CHECK_EQ(uvg_server_new(&loop, NULL, &T.server), 0);
  CHECK_EQ(uvg_server_register(T.server, methods, 2), 0);
  uvg_server_credentials_t *screds = uvg_insecure_server_credentials();
  uvg_channel_credentials_t *ccreds = uvg_insecure_channel_credentials();
  if (k->tls) {
    uvg_tls_server_options_t so = {
        .cert_chain = {.data = leaf.cert, .len = strlen(leaf.cert)},
        .private_key = {.data = leaf.key, .len = strlen(leaf.key)}};
    uvg_tls_channel_options_t co = {
        .root_certs = {.data = ca.cert, .len = strlen(ca.cert)},
        .server_name_override = "localhost"};
    CHECK_EQ(uvg_tls_server_credentials_new(&so, &screds), 0);
    CHECK_EQ(uvg_tls_channel_credentials_new(&co, &ccreds), 0);
  }
  CHECK_EQ(uvg_server_listen(T.server, "127.0.0.1:0", screds, &port), 0);
  relay.upstream_port = port;
  CHECK_EQ(fr_start(&relay, &loop), 0);
  char target[64];
  snprintf(target, sizeof(target), "ipv4:127.0.0.1:%d", relay.port);
  uvg_channel_options_t co;
  uvg_channel_options_init(&co);
  co.disable_http_proxy = 1;
  co.default_service_config = k->service_config;
  CHECK_EQ(uvg_channel_new(&loop, target, ccreds, &co, &T.channel), 0);
  if (k->tls) { /* the server and the channel hold their own references */
    uvg_server_credentials_release(screds);
    uvg_channel_credentials_release(ccreds);
  }
  API(uvg_channel_watch_state(T.channel, UVG_STATE_IDLE, c_watch, NULL));
  start_call();

  /* the call ends (its deadline bounds it), then everything is closed */
  if (fh_finish_case(&loop, calls_open, close_all, 10000) != 0) {
    /* the loop cannot be closed, nor the next case trusted */
    fprintf(stderr, "  in case %s: the loop did not end\n", label);
    exit(1);
  }

  int completed = T.c_msgs == (is_unary(T.kind) ? 1 : ROUNDS);
  CHECK_EQ(fh_reentered, 0);
  CHECK_EQ(T.c_calls, 1);
  CHECK_EQ(T.c_statuses, 1);
  CHECK_EQ(T.s_dones, T.s_calls);
  CHECK(T.server_closed && T.channel_closed);
  CHECK(sensible(T.c_code, completed));
  CHECK(T.s_calls == 0 || sensible(T.s_code, 1));
  CHECK_EQ(relay.open_handles, 0);
  if (getenv("FAULT_VERBOSE") != NULL)
    fprintf(stderr, "    %s: %.1f ms\n", label, (double)(uv_hrtime() - t0) / 1e6);
  CHECK_EQ(uv_loop_close(&loop), 0);
  if (T.c_code >= 0 && T.c_code <= UVG_STATUS_UNAUTHENTICATED)
    outcomes[T.c_code]++;
  case_bytes[0] = relay.bytes[FR_UP];
  case_bytes[1] = relay.bytes[FR_DOWN];
  if (test_failures != before)
    fprintf(stderr,
            "  in case %s: client %d status(es), code %d, %d message(s); "
            "server %d call(s), %d done, code %d\n",
            label, T.c_statuses, T.c_code, T.c_msgs, T.s_calls, T.s_dones,
            T.s_code);
  return test_failures - before;
}

/* ---- the sweeps ---- */

static void print_outcomes(void) {
  fprintf(stderr, " the client saw");
  for (int c = 0; c <= UVG_STATUS_UNAUTHENTICATED; c++)
    if (outcomes[c] > 0)
      fprintf(stderr, " %s %d", uvg_status_code_name(c), outcomes[c]);
  fprintf(stderr, "\n");
  memset(outcomes, 0, sizeof(outcomes));
}

static const char *kind_name(int kind) {
  return kind == UNARY ? "unary" : kind == BIDI ? "bidi" : "big unary";
}

static void test_clean_exchange(void) {
  for (int kind = UNARY; kind <= BIDI; kind++) {
    case_t k = {.kind = kind, .budget = -1};
    if (run_case(&k, kind_name(kind)) < 0) continue;
    CHECK_EQ(T.c_code, UVG_STATUS_OK);
    CHECK_EQ(T.s_code, UVG_STATUS_OK);
    CHECK_EQ(T.c_msgs, kind == UNARY ? 1 : ROUNDS);
  }
}

/* The connection cut after every byte count of the whole exchange, each
 * direction, by RST and by FIN. */
static void cut_at_every_byte(int tls, int64_t stride, int from, int to,
                              const char *config, const char *name) {
  int cases = 0, failed = 0;
  memset(outcomes, 0, sizeof(outcomes));
  for (int kind = from; kind <= to; kind++) {
    case_t clean = {.kind = kind, .budget = -1, .tls = tls,
                    .service_config = config};
    run_case(&clean, kind_name(kind));
    int64_t total[2] = {case_bytes[0], case_bytes[1]};
    for (int dir = FR_UP; dir <= FR_DOWN; dir++)
      for (int kill = FR_RST; kill <= FR_FIN; kill++)
        for (int64_t n = 0; n <= total[dir] && failed < 5;
             n += n < 16 || n + stride > total[dir] ? 1 : stride) {
          case_t k = {.kind = kind, .kill = kill, .dir = dir, .budget = n,
                      .tls = tls, .service_config = config};
          char label[96];
          snprintf(label, sizeof(label), "%s%s, %s after %lld bytes %s", name,
                   kind_name(kind),
                   kill == FR_RST ? "RST" : "FIN", (long long)n,
                   dir == FR_UP ? "up" : "down");
          int rc = run_case(&k, label);
          failed += rc > 0;
          cases += rc >= 0;
        }
    fprintf(stderr, "  %s%s: %lld bytes up, %lld down\n", name, kind_name(kind), (long long)total[0], (long long)total[1]);
  }
  fprintf(stderr, "  %d cuts;", cases);
  print_outcomes();
}

static void test_cut_at_every_byte(void) {
  cut_at_every_byte(0, 1, UNARY, BIDI, NULL, "");
}

/* With a retry policy, and with hedging: the attempts after a cut. */
static void test_cut_with_retries(void) {
  static const char retry[] =
      "{\"methodConfig\":[{\"name\":[{\"service\":\"t.T\"}],"
      "\"retryPolicy\":{\"maxAttempts\":3,\"initialBackoff\":\"0.001s\","
      "\"maxBackoff\":\"0.005s\",\"backoffMultiplier\":2,"
      "\"retryableStatusCodes\":[\"UNAVAILABLE\"]}}]}";
  static const char hedge[] =
      "{\"methodConfig\":[{\"name\":[{\"service\":\"t.T\"}],"
      "\"hedgingPolicy\":{\"maxAttempts\":3,\"hedgingDelay\":\"0.002s\","
      "\"nonFatalStatusCodes\":[\"UNAVAILABLE\"]}}]}";
  cut_at_every_byte(0, 3, UNARY, BIDI, retry, "retry ");
  cut_at_every_byte(0, 3, UNARY, BIDI, hedge, "hedged ");
}

/* 100 kB each way: the cut falls inside DATA frames and in writes that
 * are still queued, every 1009 bytes (a prime: varied offsets in the
 * frames). */
static void test_cut_big_messages(void) {
  cut_at_every_byte(0, 1009, BIG, BIG, NULL, "");
}

/* Over TLS the cut falls inside the handshake and inside the records.
 * Each case costs a handshake or two (a few ms of mbedtls), so past the
 * first bytes the cut moves 29 bytes a case, a prime, to fall at varied
 * offsets of the records; FAULT_TLS_STRIDE=1 tries every byte (a few
 * minutes). */
static void test_cut_tls(void) {
  const char *s = getenv("FAULT_TLS_STRIDE");
  cut_at_every_byte(1, s != NULL && atoi(s) > 0 ? atoi(s) : 29, UNARY, BIDI,
                    NULL, "TLS ");
}

/* The client's deadline passes at each step of the exchange: the server
 * answers every message 3 ms late, and the deadline moves 1 ms a case. */
static void test_deadline_at_every_step(void) {
  int cases = 0;
  memset(outcomes, 0, sizeof(outcomes));
  for (int kind = UNARY; kind <= BIDI; kind++)
    for (uint64_t ms = 1; ms <= (kind == UNARY ? 8 : 16); ms++) {
      case_t k = {.kind = kind, .budget = -1, .timeout_ms = ms,
                  .server_delay_ms = 3};
      char label[64];
      snprintf(label, sizeof(label), "%s, deadline %llu ms", kind_name(kind),
               (unsigned long long)ms);
      cases += run_case(&k, label) >= 0;
    }
  fprintf(stderr, "  %d deadlines;", cases);
  print_outcomes();
}

/* Each side closes or cancels from inside each of its callbacks. */
static void test_close_inside_each_callback(void) {
  memset(outcomes, 0, sizeof(outcomes));
  static const struct {
    at_t from, to;
    do_t a, b;
  } sides[] = {{AT_S_CALL, AT_S_DONE, DO_S_FINISH, DO_S_CLOSE},
               {AT_C_METADATA, AT_C_WATCH, DO_C_CANCEL, DO_C_CLOSE}};
  int cases = 0;
  for (int kind = UNARY; kind <= BIDI; kind++)
    for (int s = 0; s < 2; s++)
      for (at_t at = sides[s].from; at <= sides[s].to; at++)
        for (do_t a = sides[s].a; a <= sides[s].b; a++) {
          if (kind == UNARY && (at == AT_S_MESSAGE || at == AT_S_HALF_CLOSE))
            continue;
          case_t k = {.kind = kind, .at = at, .action = a, .budget = -1};
          char label[80];
          snprintf(label, sizeof(label), "%s, %s inside %s", kind_name(kind),
                   a == DO_S_FINISH   ? "finish"
                   : a == DO_S_CLOSE  ? "server close"
                   : a == DO_C_CANCEL ? "cancel"
                                      : "channel close",
                   at_names[at]);
          if (run_case(&k, label) < 0) continue;
          if (!T.acted) fprintf(stderr, "  (%s: never reached)\n", label);
          CHECK(T.acted);
          cases++;
        }
  fprintf(stderr, "  %d cases;", cases);
  print_outcomes();
}

static void quiet(uvg_log_level_t level, const char *line, void *d) {
  (void)level;
  (void)d;
  if (getenv("FAULT_VERBOSE") != NULL)
    fprintf(stderr, "    %.1f %s\n", (double)(uv_hrtime() % 100000000000ull) / 1e6, line);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN); /* libuv writes with write(2) */
  uvg_set_log_cb(quiet, NULL);
  for (int i = 0; i < ROUNDS; i++)
    for (int j = 0; j < 8; j++) request_bytes[i][j] = (uint8_t)('a' + i + j);
  for (int j = 0; j < BIG_LEN; j++) big_request[j] = (uint8_t)(j * 7);
  RUN(test_clean_exchange);
  RUN(test_close_inside_each_callback);
  RUN(test_deadline_at_every_step);
  RUN(test_cut_at_every_byte);
  RUN(test_cut_big_messages);
  RUN(test_cut_with_retries);
  static const char *const dns[] = {"localhost", NULL};
  tc_leaf_t l = {.cn = "localhost", .dns = dns};
  CHECK(tc_make_ca(&ca, "fault CA") == 0 && tc_make_leaf(&leaf, &ca, &l) == 0);
  RUN(test_cut_tls);
  tc_free(&ca);
  tc_free(&leaf);
  TEST_EXIT();
}

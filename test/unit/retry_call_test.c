/* gRFC A6 retries of client calls against the project's own server: a
 * server method that fails the first N attempts of a call with a chosen
 * status (and pushback), and records each attempt's
 * grpc-previous-rpc-attempts. Attempt counts, backoff bounds, pushback,
 * non-retryable codes, commit on response headers, throttling, and a
 * deadline that ends a call between attempts. Run one case by name, or
 * all with no argument. */
#include <stdlib.h>
#include <uvgrpc.h>

#include "fault_relay.h"
#include "loop_wait.h"
#include "sockbuf.h"
#include "test.h"

static uv_loop_t *loop;

/* ---- the server: request "FAILS CODE PUSHBACK HEADERS" per call key ---- */

static int attempts;        /* attempts the server saw */
static int prev_seen[16];   /* their grpc-previous-rpc-attempts, -1: none */
static uint64_t seen_at[16];
static int failing;         /* attempts still to fail */

static void flaky(uvg_call_t *call, const uint8_t *msg, size_t len) {
  char req[64];
  snprintf(req, sizeof(req), "%.*s", (int)len, (const char *)msg);
  int code = 14, headers = 0;
  char pushback[16] = "";
  sscanf(req, "%d %15s %d", &code, pushback, &headers);
  const uvg_metadata_t *m = uvg_call_metadata_get(call, "grpc-previous-rpc-attempts");
  if (attempts < 16) {
    prev_seen[attempts] = m ? atoi((const char *)m->value) : -1;
    seen_at[attempts] = uv_now(loop);
  }
  attempts++;
  if (failing > 0) {
    failing--;
    if (headers) uvg_call_send_headers(call, NULL, 0);
    uvg_metadata_t tr = {"grpc-retry-pushback-ms", (const uint8_t *)pushback,
                         strlen(pushback)};
    uvg_call_finish(call, (uvg_status_code_t)code, "flaky", &tr,
                    strcmp(pushback, "-") != 0 ? 1 : 0);
    return;
  }
  uvg_call_send(call, "ok", 2, 0, NULL, NULL);
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}
/* client streaming: fails its first attempt at once (trailers-only, with a
 * pushback), then answers how many messages it got */
static int collected;
static void collect_start(uvg_call_t *call, const uint8_t *msg, size_t len) {
  (void)msg;
  (void)len;
  attempts++;
  collected = 0;
  if (failing > 0) {
    failing--;
    uvg_metadata_t tr = {"grpc-retry-pushback-ms", (const uint8_t *)"200", 3};
    uvg_call_finish(call, UVG_STATUS_UNAVAILABLE, "not yet", &tr, 1);
  }
}
static void collect_msg(uvg_call_t *call, const uint8_t *msg, size_t len) {
  (void)call;
  (void)msg;
  (void)len;
  collected++;
}
static void collect_end(uvg_call_t *call) {
  char out[8];
  int n = snprintf(out, sizeof(out), "%d", collected);
  uvg_call_send(call, out, (size_t)n, 0, NULL, NULL);
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}
static void collect_cancel(uvg_call_t *call, const uvg_status_t *st) {
  (void)st;
  uvg_call_finish(call, UVG_STATUS_CANCELLED, NULL, NULL, 0);
}

/* hedged: request "slow" makes the first attempt (no
 * grpc-previous-rpc-attempts) answer after 500 ms; "fail N" makes it fail
 * with status N at once; the others answer "attempt K" at once */
static int hedge_cancels;
static uint64_t hedge_seen_at[8];
typedef struct {
  uv_timer_t t;
  uvg_call_t *call;
} late_t;
static void late_reply(uv_timer_t *t) {
  late_t *l = (late_t *)t;
  uvg_call_send(l->call, "attempt 0", 9, 0, NULL, NULL);
  uvg_call_finish(l->call, UVG_STATUS_OK, NULL, NULL, 0);
  uv_close((uv_handle_t *)t, (uv_close_cb)free);
}
static void hedged(uvg_call_t *call, const uint8_t *msg, size_t len) {
  char req[32];
  snprintf(req, sizeof(req), "%.*s", (int)len, (const char *)msg);
  const uvg_metadata_t *m = uvg_call_metadata_get(call, "grpc-previous-rpc-attempts");
  int k = m ? atoi((const char *)m->value) : 0;
  if (attempts < 8) hedge_seen_at[attempts] = uv_now(loop);
  attempts++;
  if (k == 0 && strcmp(req, "slow") == 0) {
    late_t *l = calloc(1, sizeof(*l));
    l->call = call;
    uv_timer_init(loop, &l->t);
    uv_timer_start(&l->t, late_reply, 500, 0);
    uvg_call_set_data(call, l);
    return;
  }
  if (k == 0 && strncmp(req, "fail ", 5) == 0) {
    uvg_call_finish(call, (uvg_status_code_t)atoi(req + 5), "first attempt fails", NULL, 0);
    return;
  }
  char out[16];
  int n = snprintf(out, sizeof(out), "attempt %d", k);
  uvg_call_send(call, out, (size_t)n, 0, NULL, NULL);
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}
static void hedged_cancel(uvg_call_t *call, const uvg_status_t *st) {
  late_t *l = uvg_call_get_data(call);
  (void)st;
  hedge_cancels++;
  if (l != NULL) {
    uv_timer_stop(&l->t);
    uv_close((uv_handle_t *)&l->t, (uv_close_cb)free);
  }
  uvg_call_finish(call, UVG_STATUS_CANCELLED, NULL, NULL, 0);
}

/* hold: client streaming; every first attempt is held until HOLD_CALLS
 * have sent their message, then all fail UNAVAILABLE together; a retry
 * answers OK on its message */
#define HOLD_CALLS 80
static uvg_call_t *held[HOLD_CALLS];
static int nheld;
static void hold_start(uvg_call_t *call, const uint8_t *msg, size_t len) {
  (void)call;
  (void)msg;
  (void)len;
}
static void hold_msg(uvg_call_t *call, const uint8_t *msg, size_t len) {
  (void)msg;
  (void)len;
  attempts++;
  if (uvg_call_metadata_get(call, "grpc-previous-rpc-attempts") != NULL) {
    uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
    return;
  }
  held[nheld++] = call;
  if (nheld < HOLD_CALLS) return;
  for (int i = 0; i < nheld; i++)
    uvg_call_finish(held[i], UVG_STATUS_UNAVAILABLE, "all at once", NULL, 0);
  nheld = 0;
}

static void srv_done(uvg_call_t *call, const uvg_status_t *st) {
  (void)call;
  (void)st;
}
static const uvg_method_t flaky_m[] = {
    {.path = "/t.T/Flaky", .on_call = flaky, .on_done = srv_done},
    {.path = "/t.T/Collect", .type = UVG_METHOD_CLIENT_STREAMING, .on_call = collect_start,
     .on_message = collect_msg, .on_half_close = collect_end, .on_cancel = collect_cancel,
     .on_done = srv_done},
    {.path = "/t.T/Hedged", .on_call = hedged, .on_cancel = hedged_cancel,
     .on_done = srv_done},
    {.path = "/t.T/Hold", .type = UVG_METHOD_CLIENT_STREAMING, .on_call = hold_start,
     .on_message = hold_msg, .on_half_close = collect_end,
     .on_cancel = collect_cancel, .on_done = srv_done}};

static uvg_server_t *srv;
static int port, srv_closed;
static void on_srv_closed(uvg_server_t *s, void *d) {
  (void)s;
  (void)d;
  srv_closed++;
}
static void server_start(void) {
  port = 0;
  CHECK_EQ(uvg_server_new(loop, NULL, &srv), 0);
  CHECK_EQ(uvg_server_register(srv, flaky_m, 4), 0);
  CHECK_EQ(uvg_server_listen(srv, "127.0.0.1:0", uvg_insecure_server_credentials(), &port), 0);
}
static void server_stop(void) {
  int before = srv_closed;
  uvg_server_close(srv, on_srv_closed, NULL);
  while (srv_closed == before) uv_run(loop, UV_RUN_ONCE);
}

/* ---- the client ---- */

static int ch_closed;
static void on_ch_closed(uvg_channel_t *ch, void *d) {
  (void)ch;
  (void)d;
  ch_closed++;
}

#define POLICY(max, codes)                                                         \
  "{\"methodConfig\": [{\"name\": [{\"service\": \"t.T\"}], \"retryPolicy\": {"    \
  "\"maxAttempts\": " #max ", \"initialBackoff\": \"0.1s\", \"maxBackoff\": \"0.2s\"," \
  " \"backoffMultiplier\": 2, \"retryableStatusCodes\": [" codes "]}}]"

static uvg_channel_t *channel(const char *config) {
  char target[32];
  snprintf(target, sizeof(target), "127.0.0.1:%d", port);
  uvg_channel_options_t o;
  uvg_channel_options_init(&o);
  o.default_service_config = config;
  uvg_channel_t *ch = NULL;
  CHECK_EQ(uvg_channel_new(loop, target, uvg_insecure_channel_credentials(), &o, &ch), 0);
  return ch;
}
static void channel_close(uvg_channel_t *ch) {
  int before = ch_closed;
  uvg_channel_close(ch, on_ch_closed, NULL);
  CHECK(wait_count(loop, &ch_closed, before + 1, 5000));
}

typedef struct {
  int done;
  int code;
  char msg[128];
  char reply[16];
} result_t;
static void on_reply(const uvg_status_t *st, const uint8_t *reply, size_t len, void *ud) {
  result_t *r = ud;
  r->done++;
  r->code = st->code;
  snprintf(r->msg, sizeof(r->msg), "%s", st->message ? st->message : "");
  snprintf(r->reply, sizeof(r->reply), "%.*s", (int)len, (const char *)reply);
}
/* One call; returns how long it took. */
static uint64_t call(uvg_channel_t *ch, const char *req, uint64_t timeout_ms, result_t *r) {
  uvg_client_call_options_t co = {.wait_for_ready = 1, .timeout_ms = timeout_ms};
  memset(r, 0, sizeof(*r));
  attempts = 0;
  memset(prev_seen, 0, sizeof(prev_seen));
  uv_update_time(loop);
  uint64_t t0 = uv_now(loop);
  CHECK_EQ(uvg_channel_unary(ch, "/t.T/Flaky", req, strlen(req), &co, on_reply, r), 0);
  CHECK(wait_count(loop, &r->done, 1, 10000));
  return uv_now(loop) - t0;
}

static void test_retried_until_ok(void) {
  server_start();
  uvg_channel_t *ch = channel(POLICY(4, "\"UNAVAILABLE\"") "}");
  result_t r;
  failing = 2;
  uint64_t took = call(ch, "14 - 0", 5000, &r);
  fprintf(stderr, "  %d attempts in %llu ms: %s\n", attempts, (unsigned long long)took,
          uvg_status_code_name(r.code));
  CHECK_EQ(r.code, UVG_STATUS_OK);
  CHECK_STR(r.reply, "ok");
  CHECK_EQ(attempts, 3);
  /* A6: grpc-previous-rpc-attempts on the retries only */
  CHECK_EQ(prev_seen[0], -1);
  CHECK_EQ(prev_seen[1], 1);
  CHECK_EQ(prev_seen[2], 2);
  /* backoffs random(0, 100 ms) then random(0, 200 ms) */
  CHECK(seen_at[1] - seen_at[0] <= 100 + 30);
  CHECK(seen_at[2] - seen_at[1] <= 200 + 30);
  channel_close(ch);
  server_stop();
}

static void test_exhausted_and_fatal(void) {
  server_start();
  uvg_channel_t *ch = channel(POLICY(3, "\"UNAVAILABLE\", 8") "}");
  result_t r;
  failing = 100;
  call(ch, "14 - 0", 5000, &r);
  CHECK_EQ(r.code, UVG_STATUS_UNAVAILABLE);
  CHECK_STR(r.msg, "flaky");
  CHECK_EQ(attempts, 3); /* maxAttempts */
  call(ch, "8 - 0", 5000, &r); /* RESOURCE_EXHAUSTED given as a number */
  CHECK_EQ(r.code, UVG_STATUS_RESOURCE_EXHAUSTED);
  CHECK_EQ(attempts, 3);
  call(ch, "13 - 0", 5000, &r); /* INTERNAL is not retryable */
  CHECK_EQ(r.code, UVG_STATUS_INTERNAL);
  CHECK_EQ(attempts, 1);
  /* maxAttempts above 5 is 5 */
  channel_close(ch);
  ch = channel(POLICY(9, "\"UNAVAILABLE\"") "}");
  call(ch, "14 - 0", 5000, &r);
  CHECK_EQ(attempts, 5);
  channel_close(ch);
  server_stop();
}

static void test_pushback(void) {
  server_start();
  uvg_channel_t *ch = channel(POLICY(3, "\"UNAVAILABLE\"") "}");
  result_t r;
  failing = 1;
  call(ch, "14 250 0", 5000, &r);
  fprintf(stderr, "  pushback 250: retried after %llu ms\n",
          (unsigned long long)(seen_at[1] - seen_at[0]));
  CHECK_EQ(r.code, UVG_STATUS_OK);
  CHECK_EQ(attempts, 2);
  CHECK(seen_at[1] - seen_at[0] >= 245);
  failing = 1;
  call(ch, "14 -1 0", 5000, &r); /* negative: do not retry */
  CHECK_EQ(r.code, UVG_STATUS_UNAVAILABLE);
  CHECK_EQ(attempts, 1);
  failing = 1;
  call(ch, "14 soon 0", 5000, &r); /* unparsable: do not retry */
  CHECK_EQ(attempts, 1);
  channel_close(ch);
  server_stop();
}

/* Response headers commit the call: a status after them is final. */
static void test_committed_after_headers(void) {
  server_start();
  uvg_channel_t *ch = channel(POLICY(3, "\"UNAVAILABLE\"") "}");
  result_t r;
  failing = 1;
  call(ch, "14 - 1", 5000, &r);
  CHECK_EQ(r.code, UVG_STATUS_UNAVAILABLE);
  CHECK_EQ(attempts, 1);
  channel_close(ch);
  server_stop();
}

/* A6 throttling: maxTokens 10, tokenRatio 0.5; each failed attempt takes
 * a token, and retries stop at half the tokens. */
static void test_throttling(void) {
  server_start();
  uvg_channel_t *ch = channel(POLICY(5, "\"UNAVAILABLE\"")
                              ", \"retryThrottling\": {\"maxTokens\": 10, \"tokenRatio\": 0.5}}");
  result_t r;
  failing = 100;
  call(ch, "14 - 0", 5000, &r); /* 10 -> 5 tokens in 5 failed attempts */
  CHECK_EQ(attempts, 5);
  call(ch, "14 - 0", 5000, &r); /* 4 left: throttled at once */
  CHECK_EQ(attempts, 1);
  CHECK_EQ(r.code, UVG_STATUS_UNAVAILABLE);
  failing = 0;
  for (int i = 0; i < 4; i++) call(ch, "14 - 0", 5000, &r); /* +0.5 each: 6 */
  failing = 100;
  call(ch, "14 - 0", 5000, &r); /* 6 -> 5: one failure, then throttled */
  CHECK_EQ(attempts, 1);
  channel_close(ch);
  server_stop();
}

/* The call's deadline covers every attempt and the waits between them. */
static void test_deadline_between_attempts(void) {
  server_start();
  uvg_channel_t *ch = channel(POLICY(5, "\"UNAVAILABLE\"") "}");
  result_t r;
  failing = 100;
  uint64_t took = call(ch, "14 400 0", 250, &r); /* pushback beyond the deadline */
  fprintf(stderr, "  %s after %llu ms, %d attempt(s)\n", uvg_status_code_name(r.code),
          (unsigned long long)took, attempts);
  CHECK_EQ(r.code, UVG_STATUS_DEADLINE_EXCEEDED);
  CHECK_EQ(attempts, 1);
  CHECK(took >= 240 && took < 400);
  channel_close(ch);
  server_stop();
}

/* Messages sent between two attempts (during the backoff) go with the
 * next attempt, after the ones sent before. */
static result_t stream_result;
static void on_stream_message(uvg_client_call_t *call, const uint8_t *msg, size_t len,
                              void *ud) {
  (void)call;
  (void)ud;
  snprintf(stream_result.reply, sizeof(stream_result.reply), "%.*s", (int)len,
           (const char *)msg);
}
static void on_stream_status(uvg_client_call_t *call, const uvg_status_t *st,
                             const uvg_metadata_t *tr, size_t n, void *ud) {
  (void)call;
  (void)tr;
  (void)n;
  (void)ud;
  stream_result.code = st->code;
  stream_result.done++;
}
static void test_sends_during_backoff(void) {
  server_start();
  uvg_channel_t *ch = channel(POLICY(3, "\"UNAVAILABLE\"") "}");
  static const uvg_client_call_cbs_t cbs = {NULL, on_stream_message, on_stream_status};
  uvg_client_call_options_t co = {.wait_for_ready = 1, .timeout_ms = 5000};
  memset(&stream_result, 0, sizeof(stream_result));
  attempts = 0;
  failing = 1;
  uvg_client_call_t *c;
  CHECK_EQ(uvg_client_call_start(ch, "/t.T/Collect", &co, &cbs, NULL, &c), 0);
  CHECK_EQ(uvg_client_call_send(c, "a", 1, 0, NULL, NULL), 0);
  CHECK_EQ(uvg_client_call_read(c), 0);
  int never = 0;
  wait_count(loop, &never, 1, 100); /* attempt 1 failed; 200 ms pushback */
  CHECK_EQ(attempts, 1);
  CHECK_EQ(uvg_client_call_send(c, "b", 1, 0, NULL, NULL), 0);
  CHECK_EQ(uvg_client_call_half_close(c), 0);
  CHECK(wait_count(loop, &stream_result.done, 1, 3000));
  fprintf(stderr, "  %d attempts; the server counted %s message(s)\n", attempts,
          stream_result.reply);
  CHECK_EQ(stream_result.code, UVG_STATUS_OK);
  CHECK_EQ(attempts, 2);
  CHECK_STR(stream_result.reply, "2");
  channel_close(ch);
  server_stop();
}

/* gRFC A6: what a channel keeps for retries is bounded (16 MiB) across its
 * calls: of 80 calls that each keep a 256000-byte message, the first 65 fit
 * (65 x 256005 framed bytes) and are retried; the others are committed and
 * fail. A second round retries 65 again: the ended calls gave their share
 * back. */
static int held_done[UVG_STATUS_UNAUTHENTICATED + 1];
static void on_held_status(uvg_client_call_t *call, const uvg_status_t *st,
                           const uvg_metadata_t *tr, size_t n, void *ud) {
  (void)call;
  (void)tr;
  (void)n;
  (void)ud;
  held_done[st->code]++;
}
static void test_channel_retry_buffer(void) {
  server_start();
  uvg_channel_t *ch = channel(POLICY(2, "\"UNAVAILABLE\"") "}");
  static const uvg_client_call_cbs_t cbs = {NULL, NULL, on_held_status};
  uvg_client_call_options_t co = {.wait_for_ready = 1, .timeout_ms = 20000};
  static uint8_t big[256000];
  for (int round = 0; round < 2; round++) {
    memset(held_done, 0, sizeof(held_done));
    attempts = 0;
    for (int i = 0; i < HOLD_CALLS; i++) {
      uvg_client_call_t *c;
      CHECK_EQ(uvg_client_call_start(ch, "/t.T/Hold", &co, &cbs, NULL, &c), 0);
      CHECK_EQ(uvg_client_call_send(c, big, sizeof(big), 0, NULL, NULL), 0);
      CHECK_EQ(uvg_client_call_read(c), 0);
    }
    int total = 0;
    for (int k = 0; k < 200 && total < HOLD_CALLS; k++) {
      wait_ms(loop, 50);
      total = held_done[UVG_STATUS_OK] + held_done[UVG_STATUS_UNAVAILABLE];
    }
    fprintf(stderr, "  round %d: %d retried and OK, %d failed\n", round,
            held_done[UVG_STATUS_OK], held_done[UVG_STATUS_UNAVAILABLE]);
    CHECK_EQ(held_done[UVG_STATUS_OK], 65);
    CHECK_EQ(held_done[UVG_STATUS_UNAVAILABLE], HOLD_CALLS - 65);
    CHECK_EQ(attempts, HOLD_CALLS + 65);
  }
  channel_close(ch);
  server_stop();
}

#define HEDGING(delay)                                                          \
  "{\"methodConfig\": [{\"name\": [{\"service\": \"t.T\"}], \"hedgingPolicy\": {"   \
  "\"maxAttempts\": 3, \"hedgingDelay\": \"" delay "\","                         \
  " \"nonFatalStatusCodes\": [\"UNAVAILABLE\"]}}]}"

static uint64_t hedged_call(uvg_channel_t *ch, const char *req, result_t *r) {
  uvg_client_call_options_t co = {.wait_for_ready = 1, .timeout_ms = 5000};
  memset(r, 0, sizeof(*r));
  attempts = 0;
  hedge_cancels = 0;
  uv_update_time(loop);
  uint64_t t0 = uv_now(loop);
  CHECK_EQ(uvg_channel_unary(ch, "/t.T/Hedged", req, strlen(req), &co, on_reply, r), 0);
  CHECK(wait_count(loop, &r->done, 1, 5000));
  uint64_t took = uv_now(loop) - t0;
  int never = 0;
  wait_count(loop, &never, 1, 50); /* the losers' cancels reach the server */
  fprintf(stderr, "  %s: %s \"%s\" after %llu ms, %d attempts, %d cancelled\n", req,
          uvg_status_code_name(r->code), r->reply, (unsigned long long)took, attempts,
          hedge_cancels);
  return took;
}

/* gRFC A6 hedging: a slow first attempt is overtaken by the next one,
 * sent hedgingDelay later, and cancelled; a non-fatal status sends the
 * next at once; a fatal one ends the call. */
static void test_hedging(void) {
  server_start();
  uvg_channel_t *ch = channel(HEDGING("0.1s"));
  result_t r;
  hedged_call(ch, "x", &r); /* connected; one attempt is enough */
  CHECK_EQ(r.code, UVG_STATUS_OK);
  CHECK_EQ(attempts, 1);
  uint64_t took = hedged_call(ch, "slow", &r);
  CHECK_EQ(r.code, UVG_STATUS_OK);
  CHECK_STR(r.reply, "attempt 1");
  CHECK(took >= 90 && took < 450);
  CHECK_EQ(hedge_cancels, 1); /* the first attempt, still waiting */
  took = hedged_call(ch, "fail 14", &r); /* UNAVAILABLE: non-fatal */
  CHECK_EQ(r.code, UVG_STATUS_OK);
  CHECK_STR(r.reply, "attempt 1");
  CHECK(took < 90);
  hedged_call(ch, "fail 13", &r); /* INTERNAL: fatal */
  CHECK_EQ(r.code, UVG_STATUS_INTERNAL);
  CHECK_STR(r.msg, "first attempt fails");
  CHECK_EQ(attempts, 1);
  channel_close(ch);
  /* hedgingDelay 0: every attempt at once; the first answer wins */
  ch = channel(HEDGING("0s"));
  hedged_call(ch, "slow", &r);
  CHECK_EQ(r.code, UVG_STATUS_OK);
  CHECK_EQ(attempts, 3);
  CHECK(strcmp(r.reply, "attempt 1") == 0 || strcmp(r.reply, "attempt 2") == 0);
  CHECK(hedge_cancels >= 1);
  channel_close(ch);
  server_stop();
}

/* A call cancelled during a retry's backoff, with a message sent then
 * still waiting for the next attempt: one status, the message's callback
 * once, and the channel closes. */
static int sent_cbs;
static void on_sent(uvg_client_call_t *call, int status, void *ud) {
  (void)call;
  (void)ud;
  (void)status;
  sent_cbs++;
}
static void test_cancel_during_backoff(void) {
  server_start();
  uvg_channel_t *ch = channel(POLICY(3, "\"UNAVAILABLE\"") "}");
  static const uvg_client_call_cbs_t cbs = {NULL, on_stream_message, on_stream_status};
  uvg_client_call_options_t co = {.wait_for_ready = 1, .timeout_ms = 5000};
  memset(&stream_result, 0, sizeof(stream_result));
  attempts = 0;
  failing = 1;
  sent_cbs = 0;
  uvg_client_call_t *c;
  CHECK_EQ(uvg_client_call_start(ch, "/t.T/Collect", &co, &cbs, NULL, &c), 0);
  CHECK_EQ(uvg_client_call_send(c, "a", 1, 0, NULL, NULL), 0);
  int never = 0;
  wait_count(loop, &never, 1, 100); /* attempt 1 failed; 200 ms pushback */
  CHECK_EQ(uvg_client_call_send(c, "b", 1, 0, on_sent, NULL), 0);
  uvg_client_call_cancel(c);
  CHECK(wait_count(loop, &stream_result.done, 1, 3000));
  wait_count(loop, &never, 1, 300);
  CHECK_EQ(stream_result.done, 1);
  CHECK_EQ(stream_result.code, UVG_STATUS_CANCELLED);
  CHECK_EQ(sent_cbs, 1);
  CHECK_EQ(attempts, 1);
  channel_close(ch); /* returns only once the channel is released */
  server_stop();
}

/* Hedging: a non-fatal status whose pushback says stop ends the call at
 * once, not when the next hedge would have been due. */
static void test_hedging_pushback_stop(void) {
  server_start();
  uvg_channel_t *ch = channel(HEDGING("2s"));
  result_t r;
  failing = 1;
  uint64_t took = call(ch, "14 -1 0", 5000, &r);
  fprintf(stderr, "  %s after %llu ms\n", uvg_status_code_name(r.code),
          (unsigned long long)took);
  CHECK_EQ(r.code, UVG_STATUS_UNAVAILABLE);
  CHECK(took < 1000);
  channel_close(ch);
  server_stop();
}

/* gRFC A6: sending commits nothing. The first attempt's connection is cut
 * (RST) after a few KiB of the request, while the rest of it is still in
 * the client's socket write (a small send buffer, sockbuf.h): the server never answered, so the call is
 * retried, on a new connection, and succeeds on its second attempt. */
static void test_cut_while_sending(void) {
  server_start();
  fr_t relay = {.upstream_port = port, .kill = FR_RST, .dir = FR_UP,
                .budget = 8192, .faulty = 1};
  CHECK_EQ(fr_start(&relay, loop), 0);
  char target[32];
  snprintf(target, sizeof(target), "127.0.0.1:%d", relay.port);
  uvg_channel_options_t o;
  uvg_channel_options_init(&o);
  o.default_service_config = POLICY(3, "\"UNAVAILABLE\"") "}";
  uvg_channel_t *ch = NULL;
  CHECK_EQ(uvg_channel_new(loop, target, uvg_insecure_channel_credentials(), &o, &ch), 0);
  uvg_channel_state(ch, 1);
  for (int i = 0; i < 200 && uvg_channel_state(ch, 0) != UVG_STATE_READY; i++)
    wait_ms(loop, 10);
  CHECK_EQ(uvg_channel_state(ch, 0), UVG_STATE_READY);
  sockbuf_shrink(loop, relay.port, 4096);
  /* "0 - 0": the server answers OK; within the 256 KiB a call keeps for
   * retries, and more than the socket takes at once while nobody reads */
  static char req[200 * 1024];
  memset(req, 'x', sizeof(req));
  memcpy(req, "0 - 0 ", 6);
  result_t r = {0};
  attempts = 0;
  failing = 0;
  memset(prev_seen, 0, sizeof(prev_seen));
  uvg_client_call_options_t co = {.wait_for_ready = 1, .timeout_ms = 5000};
  CHECK_EQ(uvg_channel_unary(ch, "/t.T/Flaky", req, sizeof(req), &co, on_reply, &r), 0);
  CHECK(wait_count(loop, &r.done, 1, 8000));
  fprintf(stderr, "  %d connection(s), %d cut; %d attempt(s) reached the handler: %s %s\n",
          relay.connections, relay.kills, attempts, uvg_status_code_name(r.code), r.msg);
  CHECK_EQ(relay.kills, 1);
  CHECK_EQ(relay.connections, 2);
  CHECK_EQ(r.code, UVG_STATUS_OK);
  CHECK_STR(r.reply, "ok");
  CHECK_EQ(attempts, 1);
  CHECK_EQ(prev_seen[0], 1); /* the first attempt never got there */
  channel_close(ch);
  fr_stop(&relay);
  uv_run(loop, UV_RUN_NOWAIT);
  server_stop();
}

int main(int argc, char **argv) {
  loop = uv_default_loop();
  const char *t = argc > 1 ? argv[1] : "";
#define CASE(n) if (*t == '\0' || strcmp(t, #n) == 0) RUN(test_##n)
  CASE(retried_until_ok);
  CASE(exhausted_and_fatal);
  CASE(pushback);
  CASE(committed_after_headers);
  CASE(throttling);
  CASE(deadline_between_attempts);
  CASE(sends_during_backoff);
  CASE(hedging);
  CASE(cancel_during_backoff);
  CASE(hedging_pushback_stop);
  CASE(channel_retry_buffer);
  CASE(cut_while_sending);
  TEST_EXIT();
}

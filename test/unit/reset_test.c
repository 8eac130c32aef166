/* A peer's RST_STREAM at each step of a call, against a raw HTTP/2 peer
 * that sends it exactly where the case says: our client against
 * h2server.c (before the response, after its headers, inside a message,
 * after a message), our server against h2client.c (after the request
 * headers, inside a message, after a message and its echo, while the
 * handler holds the call), with each reset code. Each call ends once with
 * the status gRPC gives the code (CANCEL: CANCELLED; REFUSED_STREAM:
 * UNAVAILABLE; ENHANCE_YOUR_CALM: RESOURCE_EXHAUSTED; the others:
 * INTERNAL; on the server NO_ERROR before its status is a client that
 * left, CANCELLED), never waits for its deadline, no callback runs inside a
 * library function, the connection still serves the next call, and every
 * handle is closed at the end. */
#include <signal.h>
#include <uvgrpc.h>

#include "fault_harness.h"
#include "h2client.h"
#include "h2server.h"
#include "loop_wait.h"
#include "test.h"

static uv_loop_t *loop;

static const uint32_t codes[] = {NGHTTP2_NO_ERROR, NGHTTP2_PROTOCOL_ERROR,
                                 NGHTTP2_INTERNAL_ERROR, NGHTTP2_REFUSED_STREAM,
                                 NGHTTP2_CANCEL, NGHTTP2_ENHANCE_YOUR_CALM};
enum { NCODES = sizeof(codes) / sizeof(codes[0]) };

/* gRPC's HTTP/2 mapping (doc/PROTOCOL-HTTP2.md, "Errors") */
static int code_for(uint32_t h2) {
  switch (h2) {
    case NGHTTP2_REFUSED_STREAM: return UVG_STATUS_UNAVAILABLE;
    case NGHTTP2_CANCEL: return UVG_STATUS_CANCELLED;
    case NGHTTP2_ENHANCE_YOUR_CALM: return UVG_STATUS_RESOURCE_EXHAUSTED;
    default: return UVG_STATUS_INTERNAL;
  }
}

/* ---- our client, the raw server resets ---- */

enum { AT_ONCE, AFTER_HEADERS, INSIDE_MESSAGE, AFTER_MESSAGE, NSTEPS };
static const char *const steps[] = {"at once", "after the headers",
                                    "inside a message", "after a message"};
static int step;
static uint32_t rst_code;

static void reset_at_step(h2s_stream_t *st, void *ud) {
  (void)ud;
  static const char *const hdrs[] = {":status", "200", "content-type",
                                     "application/grpc", NULL};
  static const uint8_t msg[] = {0, 0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'};
  if (st->index > 0) { /* the call on the same connection after it */
    h2s_ok(st, "ok", 2);
    return;
  }
  if (step >= AFTER_HEADERS) h2s_headers(st, hdrs, 0);
  if (step == INSIDE_MESSAGE) h2s_data(st, msg, 7, 0);
  if (step == AFTER_MESSAGE) h2s_data(st, msg, sizeof(msg), 0);
  h2s_rst(st, rst_code);
}

static int statuses, last_code, messages;
static void c_message(uvg_client_call_t *call, const uint8_t *m, size_t len,
                      void *d) {
  (void)m;
  (void)len;
  (void)d;
  fh_entered();
  messages++;
  API(uvg_client_call_read(call));
}
static void c_status(uvg_client_call_t *call, const uvg_status_t *st,
                     const uvg_metadata_t *tr, size_t n, void *d) {
  (void)call;
  (void)tr;
  (void)n;
  (void)d;
  fh_entered();
  statuses++;
  last_code = st->code;
}
static const uvg_client_call_cbs_t cbs = {.on_message = c_message,
                                          .on_status = c_status};

static void one_call(uvg_channel_t *ch) {
  uvg_client_call_options_t o = {.timeout_ms = 5000};
  uvg_client_call_t *call;
  int rc;
  API(rc = uvg_client_call_start(ch, "/t.T/M", &o, &cbs, NULL, &call));
  CHECK_EQ(rc, 0);
  API(uvg_client_call_send(call, "req", 3, 0, NULL, NULL));
  API(uvg_client_call_half_close(call));
  API(uvg_client_call_read(call));
}

static int channel_closed, server_closed;

static void test_client_sees_reset(void) {
  for (step = 0; step < NSTEPS; step++)
    for (int i = 0; i < NCODES; i++) {
      int before = test_failures;
      h2s_t srv = {0};
      rst_code = codes[i];
      CHECK_EQ(h2s_start(&srv, loop, reset_at_step, NULL), 0);
      char target[64];
      snprintf(target, sizeof(target), "ipv4:127.0.0.1:%d", srv.port);
      uvg_channel_options_t co;
      uvg_channel_options_init(&co);
      co.disable_http_proxy = 1;
      uvg_channel_t *ch;
      CHECK_EQ(uvg_channel_new(loop, target, uvg_insecure_channel_credentials(),
                               &co, &ch),
               0);
      statuses = messages = fh_reentered = 0;
      last_code = -1;
      one_call(ch);
      CHECK(wait_count(loop, &statuses, 1, 3000));
      int first = last_code;
      /* REFUSED_STREAM: the server did not process it, and the client may
       * retry it transparently (gRFC A6), on the same connection */
      if (codes[i] == NGHTTP2_REFUSED_STREAM)
        CHECK(first == UVG_STATUS_OK || first == UVG_STATUS_UNAVAILABLE);
      else
        CHECK_EQ(first, code_for(codes[i]));
      /* the connection serves the next call */
      one_call(ch);
      CHECK(wait_count(loop, &statuses, 2, 3000));
      CHECK_EQ(last_code, UVG_STATUS_OK);
      wait_ms(loop, 10);
      CHECK_EQ(statuses, 2);
      CHECK_EQ(fh_reentered, 0);
      channel_closed = 0;
      API(uvg_channel_close(ch, fh_channel_closed, &channel_closed));
      CHECK(wait_count(loop, &channel_closed, 1, 3000));
      h2s_close(&srv);
      if (test_failures != before)
        fprintf(stderr, "  in case: RST_STREAM(%u) %s: first call %s\n",
                codes[i], steps[step], uvg_status_code_name(first));
    }
}

/* ---- our server, the raw client resets ---- */

static int s_calls, s_dones, s_cancels, s_code;
static uvg_call_t *held; /* a unary call whose handler answers later */
static uint8_t echo_buf[64];

static void s_finish(uvg_call_t *call, uvg_status_code_t code) {
  if (uvg_call_get_data(call) != NULL) return;
  uvg_call_set_data(call, call);
  API(uvg_call_finish(call, code, NULL, NULL, 0));
}
static void s_unary(uvg_call_t *call, const uint8_t *m, size_t len) {
  (void)m;
  (void)len;
  fh_entered();
  s_calls++;
  held = call; /* answered by the test, later */
}
static void s_bidi(uvg_call_t *call, const uint8_t *m, size_t len) {
  (void)call;
  (void)m;
  (void)len;
  fh_entered();
  s_calls++;
}
static void s_message(uvg_call_t *call, const uint8_t *m, size_t len) {
  fh_entered();
  memcpy(echo_buf, m, len < sizeof(echo_buf) ? len : sizeof(echo_buf));
  API(uvg_call_send(call, echo_buf, len, 0, NULL, NULL));
}
static void s_half_close(uvg_call_t *call) {
  fh_entered();
  s_finish(call, UVG_STATUS_OK);
}
static void s_cancel(uvg_call_t *call, const uvg_status_t *st) {
  (void)st;
  fh_entered();
  s_cancels++;
  if (call == held) return; /* its handler finishes it, later */
  s_finish(call, UVG_STATUS_CANCELLED);
}
static void s_done(uvg_call_t *call, const uvg_status_t *st) {
  fh_entered();
  s_dones++;
  s_code = st->code;
  if (call == held) held = NULL;
}
static const uvg_method_t methods[] = {
    {.path = "/t.T/Unary", .on_call = s_unary, .on_cancel = s_cancel,
     .on_done = s_done},
    {.path = "/t.T/Bidi", .type = UVG_METHOD_BIDI_STREAMING, .on_call = s_bidi,
     .on_message = s_message, .on_half_close = s_half_close,
     .on_cancel = s_cancel, .on_done = s_done}};

enum { S_AFTER_HEADERS, S_INSIDE_MESSAGE, S_AFTER_ECHO, S_HANDLER_HOLDS,
       S_NSTEPS };
static const char *const s_steps[] = {"after the request headers",
                                      "inside a message", "after an echo",
                                      "while the handler holds the call"};

static int done_changed(void *arg) { return s_dones != *(int *)arg; }
static int got_data(void *arg) {
  return ((h2c_stream_t *)arg)->data_len >= 10;
}
static int is_closed(void *arg) { return ((h2c_stream_t *)arg)->closed; }

static void test_server_sees_reset(void) {
  uint8_t body[64];
  size_t n = h2c_frame(body, 0, "hello", 5);
  for (int st = 0; st < S_NSTEPS; st++)
    for (int i = 0; i < NCODES; i++) {
      int before = test_failures;
      uvg_server_t *s;
      int port;
      CHECK_EQ(uvg_server_new(loop, NULL, &s), 0);
      CHECK_EQ(uvg_server_register(s, methods, 2), 0);
      CHECK_EQ(uvg_server_listen(s, "127.0.0.1:0",
                                 uvg_insecure_server_credentials(), &port),
               0);
      h2c_t c;
      CHECK_EQ(h2c_connect(&c, loop, port, 1, 0), 0);
      s_calls = s_dones = s_cancels = fh_reentered = 0;
      s_code = -1;
      held = NULL;
      int k;
      if (st == S_HANDLER_HOLDS) {
        k = h2c_request(&c, "/t.T/Unary", NULL, NULL, body, n, 0, 1);
        h2c_run_for(loop, 20);
        CHECK(held != NULL);
      } else {
        /* a bidi call starts at its headers */
        k = h2c_request(&c, "/t.T/Bidi", NULL, NULL,
                        st == S_INSIDE_MESSAGE ? body : NULL,
                        st == S_INSIDE_MESSAGE ? 7 : 0, 0, 0);
        if (st == S_AFTER_ECHO) {
          h2c_send(&c, k, body, n, 0);
          CHECK(h2c_run_until(loop, got_data, &c.streams[k], 2000));
        } else {
          h2c_run_for(loop, 20);
        }
      }
      CHECK_EQ(s_calls, 1);
      int done0 = s_dones;
      h2c_reset(&c, k, codes[i]);
      if (st == S_HANDLER_HOLDS) {
        /* the handler learns of it, and answers into the void */
        h2c_run_for(loop, 20);
        CHECK_EQ(s_cancels, 1);
        CHECK(held != NULL); /* no on_done before the handler finishes */
        if (held != NULL) {
          int rc;
          API(rc = uvg_call_send(held, "late", 4, 0, NULL, NULL));
          CHECK_EQ(rc, UVG_ECANCELED);
          uvg_call_t *h = held;
          s_finish(h, UVG_STATUS_OK);
        }
      }
      CHECK(h2c_run_until(loop, done_changed, &done0, 2000));
      CHECK_EQ(s_dones, 1);
      /* NO_ERROR before the status: the client left, as with CANCEL */
      CHECK_EQ(s_code, codes[i] == NGHTTP2_NO_ERROR ? UVG_STATUS_CANCELLED
                                                   : code_for(codes[i]));
      /* the connection serves the next call */
      int k2 = h2c_request(&c, "/t.T/Bidi", NULL, NULL, body, n, 0, 1);
      CHECK(h2c_run_until(loop, is_closed, &c.streams[k2], 2000));
      CHECK_EQ(h2c_grpc_status(&c.streams[k2]), 0);
      CHECK_EQ(s_dones, 2);
      CHECK_EQ(fh_reentered, 0);
      h2c_close(&c);
      server_closed = 0;
      API(uvg_server_close(s, fh_server_closed, &server_closed));
      CHECK(wait_count(loop, &server_closed, 1, 3000));
      if (test_failures != before)
        fprintf(stderr, "  in case: RST_STREAM(%u) %s\n", codes[i],
                s_steps[st]);
    }
}

int main(void) {
  signal(SIGPIPE, SIG_IGN); /* libuv writes with write(2) */
  uvg_set_log_cb(NULL, NULL);
  loop = uv_default_loop();
  RUN(test_client_sees_reset);
  RUN(test_server_sees_reset);
  CHECK_EQ(uv_run(loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ(uv_loop_close(loop), 0);
  TEST_EXIT();
}

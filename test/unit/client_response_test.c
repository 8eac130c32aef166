/* How a client call reads the responses of a server that misbehaves, with
 * a raw HTTP/2 server (h2server) on the same loop: the negative HTTP/2
 * interop cases a client can meet (grpc/grpc
 * doc/negative-http2-interop-test-descriptions.md), RST_STREAM codes as
 * statuses (doc/PROTOCOL-HTTP2.md, "Errors"), HTTP statuses without
 * grpc-status (doc/http-grpc-status-mapping.md), malformed responses and
 * deadlines. Every call ends with exactly one on_status. */
#include <uvgrpc.h>

#include "h2server.h"
#include "loop_wait.h"
#include "sockbuf.h"
#include "test.h"

static uv_loop_t *loop;
static h2s_t srv;

/* ---- running the loop ---- */

static int run_until(const int *flag, int want, int ms) {
  return wait_count(loop, flag, want, ms);
}
static void run_for(int ms) { wait_ms(loop, ms); }

/* ---- the channel and the server ---- */

static uvg_channel_t *channel_to(int port) {
  char target[48];
  snprintf(target, sizeof(target), "127.0.0.1:%d", port);
  uvg_channel_t *ch = NULL;
  CHECK_EQ(uvg_channel_new(loop, target, uvg_insecure_channel_credentials(),
                           NULL, &ch),
           0);
  return ch;
}

/* A server answering with `fn`, and a channel to it. */
static uvg_channel_t *open_pair(h2s_behaviour_fn fn) {
  CHECK_EQ(h2s_start(&srv, loop, fn, NULL), 0);
  return channel_to(srv.port);
}

static int ch_closed;
static void on_ch_closed(uvg_channel_t *ch, void *d) {
  (void)ch;
  (void)d;
  ch_closed++;
}

/* Closes the channel, then the server; the server met no trouble. */
static void close_pair(uvg_channel_t *ch) {
  int before = ch_closed;
  uvg_channel_close(ch, on_ch_closed, NULL);
  CHECK(run_until(&ch_closed, before + 1, 3000));
  CHECK_EQ(srv.errors, 0);
  h2s_close(&srv);
}

/* ---- a recording call ---- */

typedef struct {
  int metadata, messages, statuses;
  uvg_status_code_t code;
  char message[128];
  uint8_t details[16];
  size_t details_len;
  char trail[16]; /* the x-trail trailer */
  size_t bytes;
} rec_t;

static void r_metadata(uvg_client_call_t *call, const uvg_metadata_t *md,
                       size_t n, void *ud) {
  rec_t *r = ud;
  (void)call;
  (void)md;
  (void)n;
  r->metadata++;
}
static void r_message(uvg_client_call_t *call, const uint8_t *msg, size_t len,
                      void *ud) {
  rec_t *r = ud;
  (void)msg;
  r->messages++;
  r->bytes += len;
  uvg_client_call_read(call);
}
static void r_status(uvg_client_call_t *call, const uvg_status_t *st,
                     const uvg_metadata_t *tr, size_t n, void *ud) {
  rec_t *r = ud;
  (void)call;
  r->statuses++;
  r->code = st->code;
  snprintf(r->message, sizeof(r->message), "%s", st->message);
  r->details_len = st->details_len < 16 ? st->details_len : 16;
  if (st->details != NULL) memcpy(r->details, st->details, r->details_len);
  for (size_t i = 0; i < n; i++)
    if (strcmp(tr[i].key, "x-trail") == 0)
      snprintf(r->trail, sizeof(r->trail), "%.*s", (int)tr[i].value_len,
               (const char *)tr[i].value);
}
static const uvg_client_call_cbs_t rec_cbs = {r_metadata, r_message, r_status};

/* Starts a call that sends "req", half-closes and reads every message. */
static void call(uvg_channel_t *ch, rec_t *r,
                 const uvg_client_call_options_t *o) {
  memset(r, 0, sizeof(*r));
  uvg_client_call_t *c = NULL;
  CHECK_EQ(uvg_client_call_start(ch, "/t.T/M", o, &rec_cbs, r, &c), 0);
  CHECK_EQ(uvg_client_call_send(c, "req", 3, 0, NULL, NULL), 0);
  CHECK_EQ(uvg_client_call_half_close(c), 0);
  CHECK_EQ(uvg_client_call_read(c), 0);
}

/* Makes a call and waits for its status; then nothing more follows. */
static void call_and_wait(uvg_channel_t *ch, rec_t *r,
                          const uvg_client_call_options_t *o) {
  call(ch, r, o);
  CHECK(run_until(&r->statuses, 1, 3000));
  run_for(20);
  CHECK_EQ(r->statuses, 1);
}

typedef struct {
  int calls;
  uvg_status_code_t code;
  size_t len;
} unary_t;

static void on_unary(const uvg_status_t *st, const uint8_t *reply, size_t len,
                     void *ud) {
  unary_t *u = ud;
  (void)reply;
  u->calls++;
  u->code = st->code;
  u->len = len;
}

/* The interop cases' request: 271828 bytes of zeros; their answer: 1024. */
static uint8_t zeros[271828];

static void unary(uvg_channel_t *ch, unary_t *u) {
  memset(u, 0, sizeof(*u));
  CHECK_EQ(
      uvg_channel_unary(ch, "/t.T/M", zeros, sizeof(zeros), NULL, on_unary, u),
      0);
}

/* Waits for the unary call's callback; then nothing more follows. */
static void wait_unary(unary_t *u) {
  CHECK(run_until(&u->calls, 1, 5000));
  run_for(20);
  CHECK_EQ(u->calls, 1);
}

static void unary_and_wait(uvg_channel_t *ch, unary_t *u) {
  unary(ch, u);
  wait_unary(u);
}

/* ---- answers ---- */

static const char *const grpc_head[] = {":status", "200", "content-type",
                                        "application/grpc", NULL};
static const char *const ok_trailers[] = {"grpc-status", "0", NULL};

static void answer_1024(h2s_stream_t *st) {
  h2s_ok(st, zeros, 1024);
}

/* ---- the negative interop cases ---- */

/* goaway: GOAWAY after the first call arrives; it still completes, and
 * the second call goes out on a new connection. */
static void goaway_after_first(h2s_stream_t *st, void *ud) {
  (void)ud;
  if (st->index == 0) h2s_goaway(st->conn, st->id, NGHTTP2_NO_ERROR);
  answer_1024(st);
}
static void test_goaway(void) {
  uvg_channel_t *ch = open_pair(goaway_after_first);
  unary_t a, b;
  unary_and_wait(ch, &a);
  CHECK_EQ(a.code, UVG_STATUS_OK);
  CHECK_EQ(a.len, 1024);
  unary_and_wait(ch, &b);
  CHECK_EQ(b.code, UVG_STATUS_OK);
  CHECK_EQ(b.len, 1024);
  CHECK_EQ(srv.nstreams, 2);
  CHECK_EQ(srv.nconns, 2);
  CHECK_EQ(srv.streams[0].body_len, 5 + sizeof(zeros));
  CHECK_EQ(srv.streams[1].conn->index, 1);
  close_pair(ch);
}

/* A call the GOAWAY's last-stream-id leaves out was not processed:
 * UNAVAILABLE (PROTOCOL-HTTP2.md, "GOAWAY Frame"); the one before it
 * completes. */
static void goaway_keeps_first(h2s_stream_t *st, void *ud) {
  (void)ud;
  if (st->index == 0) h2s_goaway(st->conn, st->id, NGHTTP2_NO_ERROR);
  if (st->conn->index == 0 && st->index > 0)
    return; /* never answered: the GOAWAY excludes it */
  answer_1024(st);
}
static void test_goaway_excludes_later_streams(void) {
  uvg_channel_t *ch = open_pair(goaway_keeps_first);
  unary_t a, b, c;
  unary(ch, &a);
  unary(ch, &b);
  CHECK(run_until(&b.calls, 1, 3000));
  CHECK(run_until(&a.calls, 1, 3000));
  run_for(20);
  CHECK_EQ(a.calls, 1);
  CHECK_EQ(b.calls, 1);
  CHECK_EQ(a.code, UVG_STATUS_OK);
  CHECK_EQ(b.code, UVG_STATUS_UNAVAILABLE);
  /* the channel goes on with a new connection */
  unary_and_wait(ch, &c);
  CHECK_EQ(c.code, UVG_STATUS_OK);
  CHECK_EQ(srv.nconns, 2);
  close_pair(ch);
}

/* gRPC's transparent retry: a stream the server never processed is sent
 * again once, with its message, on a new connection; refused twice, the
 * call fails UNAVAILABLE. */
static void small_unary(uvg_channel_t *ch, unary_t *u) {
  memset(u, 0, sizeof(*u));
  CHECK_EQ(uvg_channel_unary(ch, "/t.T/M", "hello", 5, NULL, on_unary, u), 0);
}
static void goaway_on_first_conn(h2s_stream_t *st, void *ud) {
  (void)ud;
  if (st->conn->index == 0) {
    h2s_goaway(st->conn, 0, NGHTTP2_NO_ERROR); /* nothing processed */
    return;
  }
  answer_1024(st);
}
static void refuse_always(h2s_stream_t *st, void *ud) {
  (void)ud;
  h2s_rst(st, NGHTTP2_REFUSED_STREAM);
}
static void test_transparent_retry(void) {
  uvg_channel_t *ch = open_pair(goaway_on_first_conn);
  unary_t u;
  small_unary(ch, &u);
  CHECK(run_until(&u.calls, 1, 3000));
  run_for(20);
  CHECK_EQ(u.calls, 1);
  CHECK_EQ(u.code, UVG_STATUS_OK);
  CHECK_EQ(u.len, 1024);
  CHECK_EQ(srv.nconns, 2);
  CHECK_EQ(srv.nstreams, 2);
  CHECK_EQ(srv.streams[1].body_len, 5 + 5); /* the message went again */
  close_pair(ch);
  ch = open_pair(refuse_always);
  small_unary(ch, &u);
  CHECK(run_until(&u.calls, 1, 3000));
  run_for(20);
  CHECK_EQ(u.calls, 1);
  CHECK_EQ(u.code, UVG_STATUS_UNAVAILABLE);
  CHECK_EQ(srv.nstreams, 2); /* once again, no more */
  close_pair(ch);
}

/* The same while the request is still in the client's socket write (a
 * small send buffer, sockbuf.h): the first stream is refused as its
 * headers arrive, and the call goes again on the same connection, with the
 * whole message, in order. */
static void refuse_first_at_headers(h2s_stream_t *st, void *ud) {
  (void)ud;
  if (st->index == 0)
    h2s_rst(st, NGHTTP2_REFUSED_STREAM);
  else
    h2s_later(st, 200, answer_1024); /* once the request is all there */
}
static void test_transparent_retry_while_sending(void) {
  CHECK_EQ(h2s_start(&srv, loop, refuse_first_at_headers, NULL), 0);
  srv.answer_on_headers = 1;
  uvg_channel_t *ch = channel_to(srv.port);
  uvg_channel_state(ch, 1);
  for (int i = 0; i < 200 && uvg_channel_state(ch, 0) != UVG_STATE_READY; i++)
    run_for(10);
  sockbuf_shrink(loop, srv.port, 4096);
  /* within the stream window and what a call keeps for a transparent retry */
  static uint8_t req[60000];
  for (size_t i = 0; i < sizeof(req); i++) req[i] = (uint8_t)i;
  unary_t u = {0};
  CHECK_EQ(uvg_channel_unary(ch, "/t.T/M", req, sizeof(req), NULL, on_unary, &u), 0);
  wait_unary(&u);
  CHECK_EQ(u.code, UVG_STATUS_OK);
  CHECK_EQ(srv.nconns, 1);
  CHECK_EQ(srv.nstreams, 2);
  CHECK_EQ(srv.streams[1].body_len, 5 + sizeof(req));
  if (srv.streams[1].body_len == 5 + sizeof(req))
    CHECK(memcmp(srv.streams[1].body + 5, req, sizeof(req)) == 0);
  close_pair(ch);
}

/* rst_after_header, rst_during_data, rst_after_data: RST_STREAM NO_ERROR
 * instead of the trailers. The call fails: INTERNAL (NO_ERROR "might be
 * used to aggressively lameduck"; an OK must come as grpc-status). */
static void rst_after_header(h2s_stream_t *st, void *ud) {
  (void)ud;
  h2s_headers(st, grpc_head, 0);
  h2s_rst(st, NGHTTP2_NO_ERROR);
}
static void rst_during_data(h2s_stream_t *st, void *ud) {
  (void)ud;
  uint8_t half[5 + 512] = {0, 0, 0, 1024 >> 8, 0}; /* a 1024-byte message */
  h2s_headers(st, grpc_head, 0);
  h2s_data(st, half, sizeof(half), 0);
  h2s_rst(st, NGHTTP2_NO_ERROR);
}
static void rst_after_data(h2s_stream_t *st, void *ud) {
  (void)ud;
  h2s_headers(st, grpc_head, 0);
  h2s_message(st, 0, zeros, 1024);
  h2s_rst(st, NGHTTP2_NO_ERROR);
}
static void test_rst_after_header(void) {
  uvg_channel_t *ch = open_pair(rst_after_header);
  unary_t u;
  unary_and_wait(ch, &u);
  CHECK_EQ(u.code, UVG_STATUS_INTERNAL);
  close_pair(ch);
}
static void test_rst_during_data(void) {
  uvg_channel_t *ch = open_pair(rst_during_data);
  unary_t u;
  unary_and_wait(ch, &u);
  CHECK_EQ(u.code, UVG_STATUS_INTERNAL);
  close_pair(ch);
}
static void test_rst_after_data(void) {
  uvg_channel_t *ch = open_pair(rst_after_data);
  unary_t u;
  unary_and_wait(ch, &u);
  CHECK_EQ(u.code, UVG_STATUS_INTERNAL);
  /* the message before the reset is dropped, as with any status the
   * library decides */
  rec_t r;
  call_and_wait(ch, &r, NULL);
  CHECK_EQ(r.code, UVG_STATUS_INTERNAL);
  CHECK_EQ(r.messages, 0);
  close_pair(ch);
}

/* PROTOCOL-HTTP2.md, "Errors": each RST_STREAM code as a status. */
static uint32_t rst_code;
static void rst_with_code(h2s_stream_t *st, void *ud) {
  (void)ud;
  h2s_headers(st, grpc_head, 0);
  h2s_rst(st, rst_code);
}
static void test_rst_codes(void) {
  static const struct {
    uint32_t h2;
    uvg_status_code_t code;
  } table[] = {
      {NGHTTP2_NO_ERROR, UVG_STATUS_INTERNAL},
      {NGHTTP2_PROTOCOL_ERROR, UVG_STATUS_INTERNAL},
      {NGHTTP2_INTERNAL_ERROR, UVG_STATUS_INTERNAL},
      {NGHTTP2_FLOW_CONTROL_ERROR, UVG_STATUS_INTERNAL},
      {NGHTTP2_SETTINGS_TIMEOUT, UVG_STATUS_INTERNAL},
      {NGHTTP2_FRAME_SIZE_ERROR, UVG_STATUS_INTERNAL},
      {NGHTTP2_REFUSED_STREAM, UVG_STATUS_UNAVAILABLE},
      {NGHTTP2_CANCEL, UVG_STATUS_CANCELLED},
      {NGHTTP2_COMPRESSION_ERROR, UVG_STATUS_INTERNAL},
      {NGHTTP2_CONNECT_ERROR, UVG_STATUS_INTERNAL},
      {NGHTTP2_ENHANCE_YOUR_CALM, UVG_STATUS_RESOURCE_EXHAUSTED},
      {NGHTTP2_INADEQUATE_SECURITY, UVG_STATUS_PERMISSION_DENIED},
      {NGHTTP2_HTTP_1_1_REQUIRED, UVG_STATUS_INTERNAL},
      {0xff, UVG_STATUS_INTERNAL}, /* a code HTTP/2 does not define */
  };
  uvg_channel_t *ch = open_pair(rst_with_code);
  for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
    rec_t r;
    rst_code = table[i].h2;
    call_and_wait(ch, &r, NULL);
    if (r.code != table[i].code)
      fprintf(stderr, "  RST_STREAM %u: %s (%s)\n", table[i].h2,
              uvg_status_code_name(r.code), r.message);
    CHECK_EQ(r.code, table[i].code);
  }
  /* the connection outlived every reset */
  CHECK_EQ(srv.nconns, 1);
  close_pair(ch);
}

/* ping: PINGs before and after the headers and the data; the call
 * succeeds and every PING is acknowledged. */
static void pings_around(h2s_stream_t *st, void *ud) {
  (void)ud;
  h2s_ping(st->conn);
  h2s_headers(st, grpc_head, 0);
  h2s_ping(st->conn);
  h2s_message(st, 0, zeros, 1024);
  h2s_ping(st->conn);
  h2s_headers(st, ok_trailers, 1);
  h2s_ping(st->conn);
}
static void test_ping(void) {
  uvg_channel_t *ch = open_pair(pings_around);
  unary_t u;
  unary_and_wait(ch, &u);
  CHECK_EQ(u.code, UVG_STATUS_OK);
  CHECK_EQ(u.len, 1024);
  h2s_conn_t *c = &srv.conns[0];
  CHECK(run_until(&c->ping_acks, 4, 1000));
  CHECK_EQ(c->pings_sent, 4);
  CHECK_EQ(c->ping_acks, 4);
  close_pair(ch);
}

/* max_streams: after the first call the server allows one stream at a
 * time; ten concurrent calls queue and all succeed, on one connection. */
static void answer_later(h2s_stream_t *st) {
  answer_1024(st);
}
static void one_stream_at_a_time(h2s_stream_t *st, void *ud) {
  (void)ud;
  if (st->index == 0) {
    h2s_max_streams(st->conn, 1);
    answer_1024(st);
  } else {
    h2s_later(st, 5, answer_later); /* so that calls would overlap */
  }
}
static void test_max_streams(void) {
  uvg_channel_t *ch = open_pair(one_stream_at_a_time);
  unary_t first, u[10];
  unary_and_wait(ch, &first);
  CHECK_EQ(first.code, UVG_STATUS_OK);
  for (int i = 0; i < 10; i++) unary(ch, &u[i]);
  CHECK(run_until(&u[9].calls, 1, 5000));
  run_for(20);
  for (int i = 0; i < 10; i++) {
    CHECK_EQ(u[i].calls, 1);
    CHECK_EQ(u[i].code, UVG_STATUS_OK);
    CHECK_EQ(u[i].len, 1024);
  }
  CHECK_EQ(srv.nstreams, 11);
  CHECK_EQ(srv.nconns, 1);
  CHECK_EQ(srv.conns[0].max_open_streams, 1);
  close_pair(ch);
}

/* Calls queued behind MAX_CONCURRENT_STREAMS when the GOAWAY comes were
 * never sent: each ends, once, UNAVAILABLE. */
static void goaway_with_queue(h2s_stream_t *st, void *ud) {
  (void)ud;
  h2s_goaway(st->conn, st->id, NGHTTP2_NO_ERROR);
  h2s_later(st, 20, answer_later);
}
static void test_goaway_with_queued_calls(void) {
  uvg_channel_t *ch = open_pair(goaway_with_queue);
  srv.max_concurrent_streams = 1;
  unary_t u[3];
  for (int i = 0; i < 3; i++) unary(ch, &u[i]);
  for (int i = 0; i < 3; i++) CHECK(run_until(&u[i].calls, 1, 3000));
  run_for(20);
  CHECK_EQ(u[0].code, UVG_STATUS_OK);
  for (int i = 0; i < 3; i++) CHECK_EQ(u[i].calls, 1);
  CHECK_EQ(u[1].code, UVG_STATUS_UNAVAILABLE);
  CHECK_EQ(u[2].code, UVG_STATUS_UNAVAILABLE);
  CHECK_EQ(srv.nstreams, 1);
  close_pair(ch);
}

/* ---- HTTP statuses and content types ---- */

static const char *http_status;
static void http_only(h2s_stream_t *st, void *ud) {
  (void)ud;
  const char *head[] = {":status", http_status, "content-type", "text/html",
                        NULL};
  h2s_headers(st, head, 1);
}
static void http_with_body(h2s_stream_t *st, void *ud) {
  (void)ud;
  static const char page[] = "<html><body>Bad Gateway</body></html>";
  const char *head[] = {":status", http_status, "content-type", "text/html",
                        NULL};
  h2s_headers(st, head, 0);
  h2s_data(st, page, sizeof(page) - 1, 1);
}

/* doc/http-grpc-status-mapping.md, for responses without grpc-status. */
static void test_http_status_mapping(void) {
  static const struct {
    const char *http;
    uvg_status_code_t code;
  } table[] = {
      {"400", UVG_STATUS_INTERNAL},
      {"401", UVG_STATUS_UNAUTHENTICATED},
      {"403", UVG_STATUS_PERMISSION_DENIED},
      {"404", UVG_STATUS_UNIMPLEMENTED},
      {"429", UVG_STATUS_UNAVAILABLE},
      {"431", UVG_STATUS_INTERNAL},
      {"502", UVG_STATUS_UNAVAILABLE},
      {"503", UVG_STATUS_UNAVAILABLE},
      {"504", UVG_STATUS_UNAVAILABLE},
      {"500", UVG_STATUS_UNKNOWN},
      {"302", UVG_STATUS_UNKNOWN},
      {"405", UVG_STATUS_UNKNOWN},
      {"200", UVG_STATUS_UNKNOWN}, /* text/html: no gRPC at all */
  };
  uvg_channel_t *ch = open_pair(http_only);
  for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
    rec_t r;
    http_status = table[i].http;
    call_and_wait(ch, &r, NULL);
    if (r.code != table[i].code)
      fprintf(stderr, "  HTTP %s: %s (%s)\n", table[i].http,
              uvg_status_code_name(r.code), r.message);
    CHECK_EQ(r.code, table[i].code);
  }
  close_pair(ch);
  /* a proxy's error page: a body, END_STREAM on its DATA */
  ch = open_pair(http_with_body);
  http_status = "502";
  rec_t r;
  call_and_wait(ch, &r, NULL);
  CHECK_EQ(r.code, UVG_STATUS_UNAVAILABLE);
  CHECK_EQ(r.messages, 0);
  close_pair(ch);
}

/* A proxy's 503 is no gRPC response: it does not commit the call, so a
 * retry policy for UNAVAILABLE tries again (gRFC A6), whether the page
 * ends on its headers or after a body. */
static void unavailable_then_ok(h2s_stream_t *st, void *ud) {
  (void)ud;
  if (st->index % 2 == 1) {
    answer_1024(st);
    return;
  }
  http_status = "503";
  if (st->index == 0)
    http_only(st, NULL);
  else
    http_with_body(st, NULL);
}
static void test_http_error_retried(void) {
  CHECK_EQ(h2s_start(&srv, loop, unavailable_then_ok, NULL), 0);
  char target[48];
  snprintf(target, sizeof(target), "127.0.0.1:%d", srv.port);
  uvg_channel_options_t o;
  uvg_channel_options_init(&o);
  o.default_service_config =
      "{\"methodConfig\": [{\"name\": [{}], \"retryPolicy\": {"
      "\"maxAttempts\": 3, \"initialBackoff\": \"0.01s\", "
      "\"maxBackoff\": \"0.01s\", \"backoffMultiplier\": 1, "
      "\"retryableStatusCodes\": [\"UNAVAILABLE\"]}}]}";
  uvg_channel_t *ch = NULL;
  CHECK_EQ(uvg_channel_new(loop, target, uvg_insecure_channel_credentials(), &o,
                           &ch),
           0);
  for (int i = 0; i < 2; i++) { /* page on the headers, then with a body */
    rec_t r;
    call_and_wait(ch, &r, NULL);
    CHECK_EQ(r.code, UVG_STATUS_OK);
    CHECK_EQ(r.bytes, 1024);
  }
  CHECK_EQ(srv.nstreams, 4);
  close_pair(ch);
}

/* "If grpc-status was provided, it must be used", whatever the HTTP
 * status. */
static void http_500_with_status(h2s_stream_t *st, void *ud) {
  (void)ud;
  static const char *const head[] = {
      ":status",          "500",         "content-type",
      "application/grpc", "grpc-status", "5",
      "grpc-message",     "gone",        NULL};
  h2s_headers(st, head, 1);
}
static void test_http_error_with_grpc_status(void) {
  uvg_channel_t *ch = open_pair(http_500_with_status);
  rec_t r;
  call_and_wait(ch, &r, NULL);
  CHECK_EQ(r.code, UVG_STATUS_NOT_FOUND);
  CHECK_STR(r.message, "gone");
  close_pair(ch);
}

/* 1xx headers are skipped and the final response read (the mapping doc:
 * "1xx should have the entire header skipped and a subsequent header be
 * read", RFC 9113 8.1). */
static void informational_first(h2s_stream_t *st, void *ud) {
  (void)ud;
  static const char *const info[] = {":status", "100", NULL};
  h2s_headers(st, info, 0);
  answer_1024(st);
}
static void test_informational_headers(void) {
  uvg_channel_t *ch = open_pair(informational_first);
  rec_t r;
  call_and_wait(ch, &r, NULL);
  if (r.code != UVG_STATUS_OK)
    fprintf(stderr, "  100 then 200: %s (%s)\n", uvg_status_code_name(r.code),
            r.message);
  CHECK_EQ(r.code, UVG_STATUS_OK);
  CHECK_EQ(r.messages, 1);
  close_pair(ch);
}

/* 200 with a content-type that is not gRPC's, or none: UNKNOWN. */
static const char *content_type;
static void typed(h2s_stream_t *st, void *ud) {
  (void)ud;
  const char *head[] = {":status", "200", "content-type", content_type, NULL};
  const char *bare[] = {":status", "200", NULL};
  h2s_headers(st, content_type != NULL ? head : bare, 0);
  h2s_message(st, 0, "hi", 2);
  h2s_headers(st, ok_trailers, 1);
}
static void test_content_type(void) {
  uvg_channel_t *ch = open_pair(typed);
  rec_t r;
  content_type = "text/html";
  call_and_wait(ch, &r, NULL);
  CHECK_EQ(r.code, UVG_STATUS_UNKNOWN);
  CHECK_EQ(r.messages, 0);
  content_type = NULL;
  call_and_wait(ch, &r, NULL);
  CHECK_EQ(r.code, UVG_STATUS_UNKNOWN);
  content_type = "application/grpcx";
  call_and_wait(ch, &r, NULL);
  CHECK_EQ(r.code, UVG_STATUS_UNKNOWN);
  /* what gRPC allows */
  content_type = "application/grpc+proto";
  call_and_wait(ch, &r, NULL);
  CHECK_EQ(r.code, UVG_STATUS_OK);
  CHECK_EQ(r.messages, 1);
  close_pair(ch);
}

/* ---- trailers ---- */

static void trailers_without_status(h2s_stream_t *st, void *ud) {
  (void)ud;
  static const char *const tr[] = {"x-trail", "t", NULL};
  h2s_headers(st, grpc_head, 0);
  h2s_message(st, 0, "hi", 2);
  h2s_headers(st, tr, 1);
}
static void trailers_only_without_status(h2s_stream_t *st, void *ud) {
  (void)ud;
  h2s_headers(st, grpc_head, 1);
}
static void test_trailers_without_status(void) {
  uvg_channel_t *ch = open_pair(trailers_without_status);
  rec_t r;
  call_and_wait(ch, &r, NULL);
  CHECK_EQ(r.code, UVG_STATUS_UNKNOWN);
  CHECK_STR(r.trail, "t");
  CHECK_EQ(r.messages, 1); /* a status from the server: messages first */
  close_pair(ch);
  ch = open_pair(trailers_only_without_status);
  call_and_wait(ch, &r, NULL);
  CHECK_EQ(r.code, UVG_STATUS_UNKNOWN);
  close_pair(ch);
}

/* PROTOCOL-HTTP2.md: grpc-message is percent-encoded UTF-8; a broken
 * %-encoding is left as it is, never an error. */
static void percent_message(h2s_stream_t *st, void *ud) {
  (void)ud;
  static const char *const tr[] = {"grpc-status", "9", "grpc-message",
                                   "caf%C3%A9 100%25 %zz %4", NULL};
  h2s_headers(st, grpc_head, 0);
  h2s_headers(st, tr, 1);
}
static void test_grpc_message_decoded(void) {
  uvg_channel_t *ch = open_pair(percent_message);
  rec_t r;
  call_and_wait(ch, &r, NULL);
  CHECK_EQ(r.code, UVG_STATUS_FAILED_PRECONDITION);
  CHECK_STR(r.message, "caf\xc3\xa9 100% %zz %4");
  close_pair(ch);
}

/* grpc-status-details-bin, padded or not, reaches on_status as details. */
static const char *details_b64;
static void with_details(h2s_stream_t *st, void *ud) {
  (void)ud;
  const char *tr[] = {
      "grpc-status", "3", "grpc-message", "bad", "grpc-status-details-bin",
      details_b64,   NULL};
  h2s_headers(st, grpc_head, 0);
  h2s_headers(st, tr, 1);
}
static void test_status_details(void) {
  uvg_channel_t *ch = open_pair(with_details);
  rec_t r;
  static const char *const forms[] = {"AQIA/w", "AQIA/w=="};
  for (int i = 0; i < 2; i++) {
    details_b64 = forms[i];
    call_and_wait(ch, &r, NULL);
    CHECK_EQ(r.code, UVG_STATUS_INVALID_ARGUMENT);
    CHECK_STR(r.message, "bad");
    CHECK_EQ(r.details_len, 4);
    CHECK(memcmp(r.details, "\x01\x02\x00\xff", 4) == 0);
  }
  close_pair(ch);
}

/* ---- messages ---- */

/* An encoding the client does not know: INTERNAL. */
static void unknown_encoding(h2s_stream_t *st, void *ud) {
  (void)ud;
  static const char *const head[] = {
      ":status",   "200", "content-type", "application/grpc", "grpc-encoding",
      "x-unknown", NULL};
  h2s_headers(st, head, 0);
  h2s_message(st, 1, "\x01\x02\x03", 3);
  h2s_headers(st, ok_trailers, 1);
}
static void test_unknown_encoding(void) {
  uvg_channel_t *ch = open_pair(unknown_encoding);
  rec_t r;
  call_and_wait(ch, &r, NULL);
  CHECK_EQ(r.code, UVG_STATUS_INTERNAL);
  CHECK_EQ(r.messages, 0);
  close_pair(ch);
}

/* The compressed flag with no grpc-encoding: "If the Message-Encoding
 * header is omitted then the Compressed-Flag must be 0". */
static void compressed_without_encoding(h2s_stream_t *st, void *ud) {
  (void)ud;
  h2s_headers(st, grpc_head, 0);
  h2s_message(st, 1, "hi", 2);
  h2s_headers(st, ok_trailers, 1);
}
static void test_compressed_without_encoding(void) {
  uvg_channel_t *ch = open_pair(compressed_without_encoding);
  rec_t r;
  call_and_wait(ch, &r, NULL);
  CHECK_EQ(r.code, UVG_STATUS_INTERNAL);
  CHECK_EQ(r.messages, 0);
  close_pair(ch);
}

/* A message over the call's max_receive_message_size: RESOURCE_EXHAUSTED
 * and the stream reset, also when only the prefix has arrived. */
static void too_large(h2s_stream_t *st, void *ud) {
  (void)ud;
  h2s_headers(st, grpc_head, 0);
  if (st->index == 0) {
    h2s_message(st, 0, zeros, 1024); /* no trailers: the client must reset */
  } else {
    static const uint8_t prefix[5] = {0, 0x7f, 0xff, 0xff, 0xff};
    h2s_data(st, prefix, 5, 0);
  }
}
static void test_message_too_large(void) {
  uvg_channel_t *ch = open_pair(too_large);
  uvg_client_call_options_t o = {.max_receive_message_size = 1000};
  for (int i = 0; i < 2; i++) {
    rec_t r;
    call_and_wait(ch, &r, &o);
    CHECK_EQ(r.code, UVG_STATUS_RESOURCE_EXHAUSTED);
    CHECK_EQ(r.messages, 0);
    CHECK(run_until(&srv.streams[i].got_rst, 1, 1000));
    CHECK_EQ(srv.streams[i].rst_code, NGHTTP2_CANCEL);
  }
  close_pair(ch);
}

/* DATA that ends in the middle of a message, then trailers with OK: the
 * response is incomplete, INTERNAL. */
static void cut_message(h2s_stream_t *st, void *ud) {
  (void)ud;
  static const uint8_t part[5 + 4] = {0, 0, 0, 0, 10, 'a', 'b', 'c', 'd'};
  h2s_headers(st, grpc_head, 0);
  h2s_data(st, part, sizeof(part), 0);
  h2s_headers(st, ok_trailers, 1);
}
static void test_data_ends_mid_message(void) {
  uvg_channel_t *ch = open_pair(cut_message);
  rec_t r;
  call_and_wait(ch, &r, NULL);
  CHECK_EQ(r.messages, 0);
  if (r.code != UVG_STATUS_INTERNAL)
    fprintf(stderr, "  cut message: %s (%s)\n", uvg_status_code_name(r.code),
            r.message);
  CHECK_EQ(r.code, UVG_STATUS_INTERNAL);
  close_pair(ch);
}

/* END_STREAM on DATA, no trailers: INTERNAL. */
static void no_trailers(h2s_stream_t *st, void *ud) {
  (void)ud;
  static const uint8_t msg[5 + 2] = {0, 0, 0, 0, 2, 'h', 'i'};
  h2s_headers(st, grpc_head, 0);
  h2s_data(st, msg, sizeof(msg), 1);
}
static void test_end_stream_without_trailers(void) {
  uvg_channel_t *ch = open_pair(no_trailers);
  rec_t r;
  call_and_wait(ch, &r, NULL);
  CHECK_EQ(r.code, UVG_STATUS_INTERNAL);
  close_pair(ch);
}

/* Response headers without :status break HTTP/2 (RFC 9113 8.3.2): nghttp2
 * resets the stream with PROTOCOL_ERROR, and the call ends INTERNAL. */
static void no_status(h2s_stream_t *st, void *ud) {
  (void)ud;
  static const char *const head[] = {"content-type", "application/grpc", NULL};
  h2s_headers(st, head, 0);
}
static void test_missing_http_status(void) {
  uvg_channel_t *ch = open_pair(no_status);
  rec_t r;
  call_and_wait(ch, &r, NULL);
  CHECK_EQ(r.code, UVG_STATUS_INTERNAL);
  CHECK(run_until(&srv.streams[0].got_rst, 1, 1000));
  CHECK_EQ(srv.streams[0].rst_code, NGHTTP2_PROTOCOL_ERROR);
  close_pair(ch);
}

/* The connection lost in the middle of a response: UNAVAILABLE. */
static void drop_mid_response(h2s_stream_t *st, void *ud) {
  (void)ud;
  static const uint8_t part[5 + 2] = {0, 0, 0, 0, 10, 'a', 'b'};
  h2s_headers(st, grpc_head, 0);
  h2s_data(st, part, sizeof(part), 0);
  h2s_drop(st->conn);
}
static void test_connection_lost(void) {
  uvg_channel_t *ch = open_pair(drop_mid_response);
  rec_t r;
  call_and_wait(ch, &r, NULL);
  CHECK_EQ(r.code, UVG_STATUS_UNAVAILABLE);
  close_pair(ch);
}

/* ---- deadlines ---- */

static void never(h2s_stream_t *st, void *ud) {
  (void)st;
  (void)ud;
}
static void test_deadline_server_silent(void) {
  uvg_channel_t *ch = open_pair(never);
  uvg_client_call_options_t o = {.timeout_ms = 100};
  rec_t r;
  uv_update_time(loop);
  uint64_t t0 = uv_now(loop);
  call_and_wait(ch, &r, &o);
  CHECK_EQ(r.code, UVG_STATUS_DEADLINE_EXCEEDED);
  CHECK(uv_now(loop) - t0 >= 100);
  CHECK(run_until(&srv.streams[0].got_rst, 1, 1000));
  CHECK_EQ(srv.streams[0].rst_code, NGHTTP2_CANCEL);
  close_pair(ch);
}

/* The server cancels when the deadline passes, and its RST_STREAM(CANCEL)
 * is read before the client's deadline timer runs: PROTOCOL-HTTP2.md,
 * "Client Cancellation": "when a call fails with CANCELLED status the
 * client is encouraged to check whether the deadline has expired and fail
 * the call with DEADLINE_EXCEEDED". To make that order certain the reset
 * is sent from a prepare callback, after the loop has run its due timers
 * and right before it polls: the loop holds there until 10 ms past the
 * deadline, so the next thing it does is read the reset. */
static uv_prepare_t before_poll;
static h2s_stream_t *to_cancel;
static uint64_t cancel_at_ns;
static void cancel_before_poll(uv_prepare_t *p) {
  uv_prepare_stop(p);
  while (uv_hrtime() < cancel_at_ns) uv_sleep(1);
  h2s_rst(to_cancel, NGHTTP2_CANCEL);
}
static void cancel_soon(h2s_stream_t *st) {
  to_cancel = st;
  uv_prepare_start(&before_poll, cancel_before_poll);
}
static void cancel_at_deadline(h2s_stream_t *st, void *ud) {
  (void)ud;
  h2s_headers(st, grpc_head, 0);
  h2s_later(st, 80, cancel_soon);
}
static void test_deadline_server_cancels(void) {
  uvg_channel_t *ch = open_pair(cancel_at_deadline);
  uv_prepare_init(loop, &before_poll);
  uvg_client_call_options_t o = {.timeout_ms = 100};
  rec_t r;
  uv_update_time(loop);
  cancel_at_ns = uv_hrtime() + 110 * 1000000ull;
  call_and_wait(ch, &r, &o);
  CHECK(srv.streams[0].closed); /* the reset left */
  if (r.code != UVG_STATUS_DEADLINE_EXCEEDED)
    fprintf(stderr, "  CANCEL past the deadline: %s (%s)\n",
            uvg_status_code_name(r.code), r.message);
  CHECK_EQ(r.code, UVG_STATUS_DEADLINE_EXCEEDED);
  uv_close((uv_handle_t *)&before_poll, NULL);
  close_pair(ch);
}

int main(void) {
  loop = uv_default_loop();
  uvg_set_log_cb(NULL, NULL);
  RUN(test_goaway);
  RUN(test_goaway_excludes_later_streams);
  RUN(test_transparent_retry);
  RUN(test_transparent_retry_while_sending);
  RUN(test_rst_after_header);
  RUN(test_rst_during_data);
  RUN(test_rst_after_data);
  RUN(test_rst_codes);
  RUN(test_ping);
  RUN(test_max_streams);
  RUN(test_goaway_with_queued_calls);
  RUN(test_http_status_mapping);
  RUN(test_http_error_with_grpc_status);
  RUN(test_informational_headers);
  RUN(test_content_type);
  RUN(test_trailers_without_status);
  RUN(test_grpc_message_decoded);
  RUN(test_status_details);
  RUN(test_unknown_encoding);
  RUN(test_compressed_without_encoding);
  RUN(test_message_too_large);
  RUN(test_data_ends_mid_message);
  RUN(test_end_stream_without_trailers);
  RUN(test_missing_http_status);
  RUN(test_connection_lost);
  RUN(test_deadline_server_silent);
  RUN(test_deadline_server_cancels);
  RUN(test_http_error_retried);
  uv_run(loop, UV_RUN_DEFAULT);
  CHECK_EQ(uv_loop_close(loop), 0);
  TEST_EXIT();
}

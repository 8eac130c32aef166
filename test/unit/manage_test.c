/* Connection management with small time values: keepalive, ping
 * enforcement, max idle, max age + grace, the handshake deadline and
 * graceful shutdown. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <uvgrpc.h>

#include "h2client.h"
#include "test.h"

static uv_loop_t *loop;
static int n_calls, n_done, n_cancel, last_cancel_code, last_done_code;
static int closed;

static void on_done(uvg_call_t *call, const uvg_status_t *st) {
  (void)call;
  n_done++;
  last_done_code = st->code;
}
static void on_cancel(uvg_call_t *call, const uvg_status_t *st) {
  n_cancel++;
  last_cancel_code = st->code;
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}
static void ok_unary(uvg_call_t *call, const uint8_t *msg, size_t len) {
  (void)msg;
  (void)len;
  n_calls++;
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}
static void stream_call(uvg_call_t *call, const uint8_t *msg, size_t len) {
  (void)call;
  (void)msg;
  (void)len;
  n_calls++;
}
static void stream_message(uvg_call_t *call, const uint8_t *msg, size_t len) {
  (void)call;
  (void)msg;
  (void)len;
}
static void stream_half_close(uvg_call_t *call) {
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}

/* A 32 MiB response sent without copying, then OK. */
#define BIG_LEN (32u << 20)
static uint8_t *big_buf;
static void big_sent(uvg_call_t *call, int status, void *data) {
  (void)call;
  (void)status;
  (void)data;
}
static void big_call(uvg_call_t *call, const uint8_t *msg, size_t len) {
  (void)msg;
  (void)len;
  n_calls++;
  uvg_call_send(call, big_buf, BIG_LEN, 0, big_sent, NULL);
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}

static const uvg_method_t methods[] = {
    {.path = "/m.M/Ok", .on_call = ok_unary, .on_done = on_done},
    {.path = "/m.M/Stream", .type = UVG_METHOD_CLIENT_STREAMING,
     .on_call = stream_call, .on_message = stream_message,
     .on_half_close = stream_half_close, .on_cancel = on_cancel,
     .on_done = on_done},
    {.path = "/m.M/Big", .type = UVG_METHOD_SERVER_STREAMING,
     .on_call = big_call, .on_done = on_done},
};

static void on_closed(uvg_server_t *s, void *data) {
  (void)s;
  (void)data;
  closed++;
}

static uvg_server_t *start_server(const uvg_server_options_t *o, int *port) {
  uvg_server_t *s;
  CHECK_EQ(uvg_server_new(loop, o, &s), 0);
  CHECK_EQ(uvg_server_register(s, methods, 3), 0);
  CHECK_EQ(uvg_server_listen(s, "127.0.0.1:0", uvg_insecure_server_credentials(), port), 0);
  return s;
}

static void stop_server(uvg_server_t *s) {
  int before = closed;
  uvg_server_close(s, on_closed, NULL);
  while (closed == before) uv_run(loop, UV_RUN_ONCE);
}

static int is_eof(void *arg) { return ((h2c_t *)arg)->eof; }
static int has_ping(void *arg) { return ((h2c_t *)arg)->pings > 0; }
static int two_goaways(void *arg) { return ((h2c_t *)arg)->raw_goaways >= 2; }

static int ok_call(h2c_t *c, const char *path) {
  uint8_t body[8];
  size_t n = h2c_frame(body, 0, "", 0);
  int i = h2c_request(c, path, NULL, NULL, body, n, 0, 1);
  for (int k = 0; k < 500 && !c->streams[i].closed; k++) h2c_run_for(loop, 2);
  return i;
}

/* A18: some socket of this process (the server's end) has
 * TCP_USER_TIMEOUT set to `ms`. */
static int user_timeout_set(unsigned ms) {
  for (int fd = 3; fd < 4096; fd++) {
    unsigned v = 0;
    socklen_t len = sizeof(v);
    if (getsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &v, &len) == 0 && v == ms)
      return 1;
  }
  return 0;
}

static void test_keepalive_ping_and_timeout(void) {
  uvg_server_options_t o;
  memset(&o, 0, sizeof(o));
  o.keepalive_time_ms = 40;
  o.keepalive_timeout_ms = 40;
  int port;
  uvg_server_t *s = start_server(&o, &port);
  /* a client that answers pings keeps its connection */
  h2c_t good;
  CHECK_EQ(h2c_connect(&good, loop, port, 1, 0), 0);
  CHECK(h2c_run_until(loop, has_ping, &good, 2000));
  CHECK(user_timeout_set(40));
  h2c_run_for(loop, 250);
  CHECK(good.pings >= 3);
  CHECK(!good.eof);
  /* one that does not is closed after time + timeout */
  h2c_t mute;
  CHECK_EQ(h2c_connect_ex(&mute, loop, port, 1, 0, 1), 0);
  uint64_t t0 = uv_now(loop);
  CHECK(h2c_run_until(loop, is_eof, &mute, 2000));
  uint64_t took = uv_now(loop) - t0;
  CHECK(took >= 70 && took < 1000);
  CHECK(!good.eof);
  h2c_close(&mute);
  h2c_close(&good);
  stop_server(s);
}

static void test_ping_enforcement(void) {
  uvg_server_options_t o;
  memset(&o, 0, sizeof(o));
  o.keepalive_min_time_ms = 200;
  int port;
  uvg_server_t *s = start_server(&o, &port);
  /* pings every 20 ms with a call in progress: strike three is out */
  h2c_t c;
  CHECK_EQ(h2c_connect(&c, loop, port, 1, 0), 0);
  h2c_request(&c, "/m.M/Stream", NULL, NULL, NULL, 0, 0, 0);
  h2c_run_for(loop, 20);
  for (int k = 0; k < 6 && !c.eof; k++) {
    nghttp2_submit_ping(c.h2, NGHTTP2_FLAG_NONE, NULL);
    h2c_flush(&c);
    h2c_run_for(loop, 20);
  }
  CHECK(h2c_run_until(loop, is_eof, &c, 2000));
  CHECK(c.got_goaway);
  CHECK_EQ(c.goaway_code, NGHTTP2_ENHANCE_YOUR_CALM);
  CHECK_STR(c.goaway_debug, "too_many_pings");
  h2c_close(&c);
  /* pings spaced wider than the minimum are fine */
  CHECK_EQ(h2c_connect(&c, loop, port, 1, 0), 0);
  h2c_request(&c, "/m.M/Stream", NULL, NULL, NULL, 0, 0, 0);
  for (int k = 0; k < 4; k++) {
    nghttp2_submit_ping(c.h2, NGHTTP2_FLAG_NONE, NULL);
    h2c_flush(&c);
    h2c_run_for(loop, 220);
  }
  CHECK(!c.eof);
  CHECK(!c.got_goaway);
  h2c_close(&c);
  stop_server(s);
}

/* The count, as grpc-go counts it (maxPingStrikes = 2, GOAWAY when the
 * strikes exceed it): a connection's first PING is no strike, the next two
 * early ones are strikes one and two and are tolerated, the third strike
 * gets the GOAWAY. */
static void test_third_strike_is_out(void) {
  uvg_server_options_t o;
  memset(&o, 0, sizeof(o));
  o.keepalive_min_time_ms = 1000;
  int port;
  uvg_server_t *s = start_server(&o, &port);
  h2c_t c;
  CHECK_EQ(h2c_connect(&c, loop, port, 1, 0), 0);
  h2c_request(&c, "/m.M/Stream", NULL, NULL, NULL, 0, 0, 0);
  h2c_run_for(loop, 20);
  for (int k = 0; k < 3; k++) { /* the first PING, then strikes 1 and 2 */
    nghttp2_submit_ping(c.h2, NGHTTP2_FLAG_NONE, NULL);
    h2c_flush(&c);
    h2c_run_for(loop, 20);
  }
  h2c_run_for(loop, 50);
  CHECK_EQ(c.ping_acks, 3);
  CHECK(!c.got_goaway);
  CHECK(!c.eof);
  nghttp2_submit_ping(c.h2, NGHTTP2_FLAG_NONE, NULL); /* strike 3 */
  h2c_flush(&c);
  CHECK(h2c_run_until(loop, is_eof, &c, 2000));
  CHECK(c.got_goaway);
  CHECK_EQ(c.goaway_code, NGHTTP2_ENHANCE_YOUR_CALM);
  CHECK_STR(c.goaway_debug, "too_many_pings");
  h2c_close(&c);
  stop_server(s);
}

static void test_max_idle(void) {
  uvg_server_options_t o;
  memset(&o, 0, sizeof(o));
  o.max_connection_idle_ms = 60;
  int port;
  uvg_server_t *s = start_server(&o, &port);
  h2c_t c;
  CHECK_EQ(h2c_connect(&c, loop, port, 1, 0), 0);
  int i = ok_call(&c, "/m.M/Ok");
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), 0);
  CHECK(h2c_run_until(loop, is_eof, &c, 2000));
  /* the heads-up GOAWAY (2^31-1), then the final one (last stream 1) */
  CHECK_EQ(c.goaway_code, NGHTTP2_NO_ERROR);
  CHECK_EQ(c.goaway_last_stream, 0x7fffffff);
  CHECK_EQ(c.raw_goaways, 2);
  CHECK_EQ(c.raw_goaway_last_stream, 1);
  h2c_close(&c);
  stop_server(s);
}

static void test_max_age_and_grace(void) {
  uvg_server_options_t o;
  memset(&o, 0, sizeof(o));
  o.max_connection_age_ms = 100;
  o.max_connection_age_grace_ms = 100;
  int port;
  uvg_server_t *s = start_server(&o, &port);
  h2c_t c;
  int cancel0 = n_cancel;
  CHECK_EQ(h2c_connect(&c, loop, port, 1, 0), 0);
  uint64_t t0 = uv_now(loop);
  h2c_request(&c, "/m.M/Stream", NULL, NULL, NULL, 0, 0, 0);
  CHECK(h2c_run_until(loop, two_goaways, &c, 2000));
  uint64_t drained = uv_now(loop) - t0;
  CHECK(drained >= 85 && drained < 600);
  CHECK(!c.eof); /* the call in flight keeps the connection */
  CHECK(h2c_run_until(loop, is_eof, &c, 2000));
  CHECK(uv_now(loop) - t0 >= 180);
  h2c_run_for(loop, 20);
  CHECK_EQ(n_cancel, cancel0 + 1);
  CHECK_EQ(last_cancel_code, UVG_STATUS_UNAVAILABLE);
  h2c_close(&c);
  stop_server(s);
}

/* A9's ±10% max-age jitter comes from the library's own generator: the
 * application's rand() sequence is not moved by connections being made. */
static void test_age_jitter_leaves_rand_alone(void) {
  uvg_server_options_t o;
  memset(&o, 0, sizeof(o));
  o.max_connection_age_ms = 60 * 1000;
  int port;
  uvg_server_t *s = start_server(&o, &port);
  srand(7);
  int first = rand(), second = rand();
  srand(7);
  h2c_t c[4];
  for (int i = 0; i < 4; i++) CHECK_EQ(h2c_connect(&c[i], loop, port, 1, 0), 0);
  for (int i = 0; i < 4; i++) CHECK_EQ(ok_call(&c[i], "/m.M/Ok") >= 0, 1);
  CHECK_EQ(rand(), first);
  CHECK_EQ(rand(), second);
  for (int i = 0; i < 4; i++) h2c_close(&c[i]);
  stop_server(s);
}

static void test_handshake_timeout(void) {
  uvg_server_options_t o;
  memset(&o, 0, sizeof(o));
  o.connection_timeout_ms = 50;
  int port;
  uvg_server_t *s = start_server(&o, &port);
  h2c_t slow, fine;
  uv_update_time(loop);
  uint64_t t0 = uv_now(loop);
  CHECK_EQ(h2c_connect(&slow, loop, port, 0, 0), 0); /* says nothing */
  CHECK_EQ(h2c_connect(&fine, loop, port, 1, 0), 0);
  CHECK(h2c_run_until(loop, is_eof, &slow, 2000));
  CHECK(uv_now(loop) - t0 >= 40);
  h2c_run_for(loop, 60);
  CHECK(!fine.eof);
  int i = ok_call(&fine, "/m.M/Ok");
  CHECK_EQ(h2c_grpc_status(&fine.streams[i]), 0);
  h2c_close(&slow);
  h2c_close(&fine);
  stop_server(s);
}

static void test_graceful_shutdown(void) {
  int port;
  uvg_server_t *s = start_server(NULL, &port);
  h2c_t c;
  CHECK_EQ(h2c_connect(&c, loop, port, 1, 0), 0);
  int calls0 = n_calls, done0 = n_done;
  /* a call in flight, not half-closed yet */
  uint8_t body[16];
  size_t n = h2c_frame(body, 0, "abc", 3);
  int i = h2c_request(&c, "/m.M/Stream", NULL, NULL, body, n, 0, 0);
  while (n_calls == calls0) uv_run(loop, UV_RUN_ONCE);
  closed = 0;
  uvg_server_shutdown(s, 5000, on_closed, NULL);
  CHECK(h2c_run_until(loop, two_goaways, &c, 2000));
  CHECK_EQ(c.goaway_code, NGHTTP2_NO_ERROR);
  CHECK_EQ(c.raw_goaway_last_stream, c.streams[i].id);
  CHECK(!c.streams[i].closed);
  CHECK_EQ(closed, 0);
  /* the call finishes normally, then everything closes */
  h2c_end_stream(&c, i);
  CHECK(h2c_run_until(loop, is_eof, &c, 2000));
  CHECK(c.streams[i].closed);
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), 0);
  while (closed == 0) uv_run(loop, UV_RUN_ONCE);
  CHECK_EQ(n_done, done0 + 1);
  CHECK_EQ(last_done_code, UVG_STATUS_OK);
  h2c_close(&c);
}

static void test_shutdown_grace_expires(void) {
  int port;
  uvg_server_t *s = start_server(NULL, &port);
  h2c_t c;
  CHECK_EQ(h2c_connect(&c, loop, port, 1, 0), 0);
  int calls0 = n_calls, cancel0 = n_cancel;
  h2c_request(&c, "/m.M/Stream", NULL, NULL, NULL, 0, 0, 0);
  while (n_calls == calls0) uv_run(loop, UV_RUN_ONCE);
  closed = 0;
  uint64_t t0 = uv_now(loop);
  uvg_server_shutdown(s, 80, on_closed, NULL);
  while (closed == 0) uv_run(loop, UV_RUN_ONCE);
  CHECK(uv_now(loop) - t0 >= 75);
  CHECK_EQ(n_cancel, cancel0 + 1);
  CHECK_EQ(last_cancel_code, UVG_STATUS_UNAVAILABLE);
  CHECK(h2c_run_until(loop, is_eof, &c, 2000));
  h2c_close(&c);
}

static int has_goaway_and_ping(void *arg) {
  h2c_t *c = arg;
  return c->raw_goaways >= 1 && c->reads > 0;
}
static int is_closed_flag(void *arg) {
  (void)arg;
  return closed > 0;
}

static int closed_by_close;
static void on_closed_by_close(uvg_server_t *s, void *data) {
  (void)s;
  (void)data;
  closed_by_close++;
}

/* A close during a shutdown's grace is how a caller stops waiting for a
 * call that never ends: the call is cancelled at once and the server
 * closes, with the shutdown's callback as its only close callback. */
static void test_close_ends_shutdown_grace(void) {
  int port;
  uvg_server_t *s = start_server(NULL, &port);
  h2c_t c;
  CHECK_EQ(h2c_connect(&c, loop, port, 1, 0), 0);
  int calls0 = n_calls, cancel0 = n_cancel, done0 = n_done;
  int i = h2c_request(&c, "/m.M/Stream", NULL, NULL, NULL, 0, 0, 0);
  while (n_calls == calls0) uv_run(loop, UV_RUN_ONCE);
  closed = closed_by_close = 0;
  uvg_server_shutdown(s, UVG_INFINITE, on_closed, NULL);
  CHECK(h2c_run_until(loop, two_goaways, &c, 2000));
  h2c_run_for(loop, 100);
  CHECK_EQ(closed, 0);
  CHECK_EQ(n_cancel, cancel0);
  uv_update_time(loop);
  uint64_t t0 = uv_now(loop);
  uvg_server_close(s, on_closed_by_close, NULL);
  uvg_server_close(s, on_closed_by_close, NULL); /* still a no-op */
  CHECK(h2c_run_until(loop, is_closed_flag, NULL, 3000));
  CHECK(uv_now(loop) - t0 < 1200);
  CHECK_EQ(n_cancel, cancel0 + 1);
  CHECK_EQ(last_cancel_code, UVG_STATUS_UNAVAILABLE);
  CHECK_EQ(n_done, done0 + 1);
  CHECK(h2c_run_until(loop, is_eof, &c, 2000));
  CHECK(!c.streams[i].closed || h2c_grpc_status(&c.streams[i]) != 0);
  h2c_run_for(loop, 50);
  CHECK_EQ(closed, 1);
  CHECK_EQ(closed_by_close, 0);
  CHECK_EQ(n_cancel, cancel0 + 1);
  CHECK_EQ(n_done, done0 + 1);
  h2c_close(&c);
}

/* RFC 9113 6.8: requests already on the wire when the client gets the
 * heads-up GOAWAY are served; only those above the final GOAWAY's
 * last-stream-id are not. */
static void test_stream_between_goaways(void) {
  int port;
  uvg_server_t *s = start_server(NULL, &port);
  h2c_t c;
  CHECK_EQ(h2c_connect(&c, loop, port, 1, 0), 0);
  int i = ok_call(&c, "/m.M/Ok");
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), 0);
  /* the heads-up arrives but the client has not read it yet */
  h2c_hold(&c, 1);
  closed = 0;
  uvg_server_shutdown(s, 5000, on_closed, NULL);
  CHECK(h2c_run_until(loop, has_goaway_and_ping, &c, 2000));
  CHECK_EQ(c.raw_goaways, 1);
  CHECK_EQ(c.raw_goaway_last_stream, 0x7fffffff);
  uint8_t body[8];
  size_t n = h2c_frame(body, 0, "", 0);
  int j = h2c_request(&c, "/m.M/Ok", NULL, NULL, body, n, 0, 1);
  h2c_run_for(loop, 50);
  h2c_hold(&c, 0);
  CHECK(h2c_run_until(loop, is_eof, &c, 3000));
  CHECK(c.streams[j].closed);
  CHECK(!c.streams[j].got_rst);
  CHECK_EQ(h2c_grpc_status(&c.streams[j]), 0);
  CHECK_EQ(c.raw_goaways, 2);
  CHECK_EQ(c.raw_goaway_last_stream, c.streams[j].id);
  CHECK(h2c_run_until(loop, is_closed_flag, NULL, 3000));
  h2c_close(&c);
}

/* A client that opened a large window, took part of a large response and
 * stopped reading leaves the server's write in flight for good: closing
 * (and the end of a shutdown's grace) still completes within
 * UVG__CONN_CLOSE_MS, 1 s. */
static void stuck_client(h2c_t *c, int port) {
  CHECK_EQ(h2c_connect(c, loop, port, 1, 0x7fffffff), 0);
  nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, 0x7fffffff);
  uint8_t body[8];
  size_t n = h2c_frame(body, 0, "", 0);
  int i = h2c_request(c, "/m.M/Big", NULL, NULL, body, n, 0, 1);
  for (int k = 0; k < 1000 && c->streams[i].data_len < (1u << 20); k++)
    h2c_run_for(loop, 2);
  CHECK(c->streams[i].data_len >= (1u << 20));
  uv_read_stop((uv_stream_t *)&c->tcp);
  h2c_run_for(loop, 300); /* the socket buffers fill up */
}

static void test_close_with_stuck_write(void) {
  int port;
  for (int graceful = 0; graceful < 2; graceful++) {
    uvg_server_t *s = start_server(NULL, &port);
    h2c_t c;
    int done0 = n_done;
    stuck_client(&c, port);
    closed = 0;
    uv_update_time(loop);
    uint64_t t0 = uv_now(loop);
    if (graceful)
      uvg_server_shutdown(s, 100, on_closed, NULL);
    else
      uvg_server_close(s, on_closed, NULL);
    CHECK(h2c_run_until(loop, is_closed_flag, NULL, 5000));
    uint64_t took = uv_now(loop) - t0;
    fprintf(stderr, "  %s with a stuck write took %llu ms\n",
            graceful ? "shutdown(100 ms grace)" : "close",
            (unsigned long long)took);
    CHECK(took < (graceful ? 100u : 0u) + 1000 + 200);
    /* the status never reached the client */
    CHECK_EQ(n_done, done0 + 1);
    CHECK_EQ(last_done_code, UVG_STATUS_UNAVAILABLE);
    h2c_close(&c);
  }
}

/* RFC 9113 6.8: the last-stream-id of a later GOAWAY never exceeds an
 * earlier one's. The drain's final GOAWAY waits behind a write the client
 * does not take; a stream it then opens is refused; when the grace ends
 * the closing GOAWAY still names only the first stream. */
static void test_goaway_last_id_never_grows(void) {
  int port;
  uvg_server_t *s = start_server(NULL, &port);
  h2c_t c;
  stuck_client(&c, port); /* stream 1, a response stuck in the socket */
  closed = 0;
  uvg_server_shutdown(s, 1500, on_closed, NULL);
  h2c_run_for(loop, 1200); /* the drain's PING wait is over */
  uint8_t body[8];
  size_t n = h2c_frame(body, 0, "", 0);
  int j = h2c_request(&c, "/m.M/Ok", NULL, NULL, body, n, 0, 1);
  CHECK(j >= 0);
  h2c_run_for(loop, 400); /* the grace is over */
  h2c_read_resume(&c);
  CHECK(h2c_run_until(loop, is_closed_flag, NULL, 5000));
  h2c_run_for(loop, 100);
  CHECK(c.raw_goaways >= 2);
  CHECK_EQ(c.raw_goaway_last_stream, c.streams[0].id);
  h2c_close(&c);
}

int main(void) {
  loop = uv_default_loop();
  uvg_set_log_cb(NULL, NULL);
  big_buf = calloc(1, BIG_LEN);
  RUN(test_keepalive_ping_and_timeout);
  RUN(test_ping_enforcement);
  RUN(test_third_strike_is_out);
  RUN(test_max_idle);
  RUN(test_max_age_and_grace);
  RUN(test_age_jitter_leaves_rand_alone);
  RUN(test_handshake_timeout);
  RUN(test_graceful_shutdown);
  RUN(test_shutdown_grace_expires);
  RUN(test_close_ends_shutdown_grace);
  RUN(test_stream_between_goaways);
  RUN(test_close_with_stuck_write);
  RUN(test_goaway_last_id_never_grows);
  uv_run(loop, UV_RUN_DEFAULT);
  CHECK_EQ(uv_loop_close(loop), 0);
  free(big_buf);
  TEST_EXIT();
}

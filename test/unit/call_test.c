/* A server call's end: on_done reports the status as the client will see
 * it, only once that status reached the socket (or can no longer reach
 * it), and a deadline still bounds a call whose handler has finished. */
#include <uvgrpc.h>

#include "h2client.h"
#include "test.h"

static uv_loop_t *loop;
static int n_done, last_done_code, n_sent, last_sent_status;

/* Larger than the client's 64 KiB window, smaller than one write batch. */
#define REPLY_LEN 250000
static uint8_t reply[REPLY_LEN];

static void on_sent(uvg_call_t *call, int status, void *data) {
  (void)call;
  (void)data;
  n_sent++;
  last_sent_status = status;
}
static void reply_and_finish(uvg_call_t *call, const uint8_t *msg, size_t len) {
  (void)msg;
  (void)len;
  CHECK_EQ(uvg_call_send(call, reply, REPLY_LEN, 0, on_sent, NULL), 0);
  CHECK_EQ(uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0), 0);
}
static int n_fail_done, fail_done_code;
static void fail_now(uvg_call_t *call, const uint8_t *msg, size_t len) {
  (void)msg;
  (void)len;
  CHECK_EQ(uvg_call_finish(call, UVG_STATUS_NOT_FOUND, NULL, NULL, 0), 0);
}
static void on_done(uvg_call_t *call, const uvg_status_t *st) {
  if (strcmp(uvg_call_method(call), "/c.C/Fail") == 0) {
    n_fail_done++;
    fail_done_code = st->code;
    return;
  }
  n_done++;
  last_done_code = st->code;
}

static const uvg_method_t methods[] = {
    {.path = "/c.C/Reply", .type = UVG_METHOD_SERVER_STREAMING,
     .on_call = reply_and_finish, .on_done = on_done},
    {.path = "/c.C/Fail", .on_call = fail_now, .on_done = on_done},
};

static int closed;
static void on_closed(uvg_server_t *s, void *d) {
  (void)s;
  (void)d;
  closed = 1;
}

static uvg_server_t *start(const char *addr, int *port) {
  uvg_server_t *s;
  CHECK_EQ(uvg_server_new(loop, NULL, &s), 0);
  CHECK_EQ(uvg_server_register(s, methods, 2), 0);
  CHECK_EQ(uvg_server_listen(s, addr, uvg_insecure_server_credentials(), port), 0);
  return s;
}

static void stop(uvg_server_t *s) {
  closed = 0;
  uvg_server_close(s, on_closed, NULL);
  while (!closed) uv_run(loop, UV_RUN_ONCE);
}

static int done_changed(void *arg) { return n_done != *(int *)arg; }

/* Sends a request whose response (reply + OK) cannot fully leave: the
 * client grants 64 KiB and never more. Returns the stream index. */
static int blocked_call(h2c_t *c, int port, const char *timeout) {
  CHECK_EQ(h2c_connect(c, loop, port, 1, 65535), 0);
  uint8_t body[8];
  size_t n = h2c_frame(body, 0, "", 0);
  const char *extra[] = {"grpc-timeout", timeout, NULL};
  int i = h2c_request(c, "/c.C/Reply", NULL, timeout ? extra : NULL, body, n,
                      0, 1);
  for (int k = 0; k < 500 && c->streams[i].data_len < 65535 - 9; k++)
    h2c_run_for(loop, 2);
  CHECK(c->streams[i].data_len >= 65535 - 9);
  return i;
}

static void test_ok_after_the_status_left(void) {
  int port;
  uvg_server_t *s = start("127.0.0.1:0", &port);
  h2c_t c;
  int done0 = n_done;
  CHECK_EQ(h2c_connect(&c, loop, port, 1, 0), 0);
  uint8_t body[8];
  size_t n = h2c_frame(body, 0, "", 0);
  int i = h2c_request(&c, "/c.C/Reply", NULL, NULL, body, n, 0, 1);
  CHECK(h2c_run_until(loop, done_changed, &done0, 2000));
  CHECK_EQ(last_done_code, UVG_STATUS_OK);
  h2c_run_for(loop, 20);
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), 0);
  CHECK_EQ(c.streams[i].data_len, REPLY_LEN + 5);
  h2c_close(&c);
  stop(s);
}

/* The handler finished OK, the client reset before the trailers left. */
static void reset_after_finish(uint32_t code, uvg_status_code_t want) {
  int port;
  uvg_server_t *s = start("127.0.0.1:0", &port);
  h2c_t c;
  int done0 = n_done;
  int i = blocked_call(&c, port, NULL);
  h2c_run_for(loop, 50);
  CHECK_EQ(n_done, done0); /* the status has not left */
  h2c_reset(&c, i, code);
  CHECK(h2c_run_until(loop, done_changed, &done0, 2000));
  CHECK_EQ(last_done_code, want);
  CHECK_EQ(last_sent_status, UVG_ECANCELED);
  h2c_close(&c);
  stop(s);
}

/* A reset's code is the status, as PROTOCOL-HTTP2.md maps it. */
static void test_reset_after_finish(void) {
  reset_after_finish(NGHTTP2_CANCEL, UVG_STATUS_CANCELLED);
  reset_after_finish(NGHTTP2_INTERNAL_ERROR, UVG_STATUS_INTERNAL);
  reset_after_finish(NGHTTP2_ENHANCE_YOUR_CALM, UVG_STATUS_RESOURCE_EXHAUSTED);
}

/* The handler finished OK, the connection died before the trailers left. */
static void test_connection_lost_after_finish(void) {
  int port;
  uvg_server_t *s = start("127.0.0.1:0", &port);
  h2c_t c;
  int done0 = n_done;
  blocked_call(&c, port, NULL);
  h2c_close(&c);
  CHECK(h2c_run_until(loop, done_changed, &done0, 2000));
  CHECK_EQ(last_done_code, UVG_STATUS_UNAVAILABLE);
  stop(s);
}

/* A server on a unix socket and a client with large windows that reads
 * nothing: a response larger than the socket's buffer stays in a write
 * that does not complete. */
static uvg_server_t *unix_server_and_deaf_client(h2c_t *c) {
  char addr[64];
  snprintf(addr, sizeof(addr), "unix:/tmp/uvg-call-test-%d.sock",
           (int)uv_os_getpid());
  uvg_server_t *s = start(addr, NULL);
  CHECK_EQ(h2c_connect_unix(c, loop, addr + 5), 0);
  nghttp2_settings_entry iv = {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 24};
  nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, &iv, 1);
  nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, 1 << 24);
  h2c_flush(c);
  h2c_run_for(loop, 20);
  uv_read_stop((uv_stream_t *)&c->pipe);
  return s;
}

/* A trailers-only status is serialized into a write the client never lets
 * complete (beside another call's response, larger than a unix socket's
 * buffer): that call is not released while the write is in flight, and
 * the connection's loss then decides its status. */
static void test_release_waits_for_the_socket(void) {
  h2c_t c;
  int done0 = n_done;
  uvg_server_t *s = unix_server_and_deaf_client(&c);
  uint8_t body[8];
  size_t n = h2c_frame(body, 0, "", 0);
  int fail0 = n_fail_done;
  h2c_request(&c, "/c.C/Reply", NULL, NULL, body, n, 0, 1);
  h2c_request(&c, "/c.C/Fail", NULL, NULL, body, n, 0, 1);
  h2c_run_for(loop, 200);
  CHECK_EQ(n_done, done0);
  CHECK_EQ(n_fail_done, fail0);
  h2c_close(&c);
  CHECK(h2c_run_until(loop, done_changed, &done0, 2000));
  CHECK_EQ(last_done_code, UVG_STATUS_UNAVAILABLE);
  h2c_run_for(loop, 20);
  CHECK_EQ(n_fail_done, fail0 + 1);
  CHECK_EQ(fail_done_code, UVG_STATUS_UNAVAILABLE);
  stop(s);
}

/* The client resets the stream while the status sits in a write that has
 * not completed: when the write then completes, the client has reset and
 * never sees the status, and on_done says CANCELLED. */
static void test_reset_while_status_in_write(void) {
  h2c_t c;
  int done0 = n_done;
  uvg_server_t *s = unix_server_and_deaf_client(&c);
  uint8_t body[8];
  size_t n = h2c_frame(body, 0, "", 0);
  int i = h2c_request(&c, "/c.C/Reply", NULL, NULL, body, n, 0, 1);
  h2c_run_for(loop, 200);
  CHECK_EQ(n_done, done0); /* the status is stuck */
  h2c_reset(&c, i, NGHTTP2_CANCEL);
  h2c_run_for(loop, 100);
  h2c_read_resume(&c); /* the write completes */
  CHECK(h2c_run_until(loop, done_changed, &done0, 2000));
  CHECK_EQ(last_done_code, UVG_STATUS_CANCELLED);
  h2c_close(&c);
  stop(s);
}

/* Finished, but the client reads nothing more: the deadline still ends
 * the call, resets the stream and gives the application its buffer back. */
static void test_deadline_after_finish(void) {
  int port;
  uvg_server_t *s = start("127.0.0.1:0", &port);
  h2c_t c;
  int done0 = n_done, sent0 = n_sent;
  uv_update_time(loop);
  uint64_t t0 = uv_now(loop);
  int i = blocked_call(&c, port, "100m");
  CHECK(h2c_run_until(loop, done_changed, &done0, 2000));
  uint64_t took = uv_now(loop) - t0;
  CHECK(took >= 90 && took < 1000);
  CHECK_EQ(last_done_code, UVG_STATUS_DEADLINE_EXCEEDED);
  CHECK_EQ(n_sent, sent0 + 1);
  CHECK_EQ(last_sent_status, UVG_ECANCELED);
  h2c_run_for(loop, 20);
  CHECK(c.streams[i].got_rst);
  CHECK_EQ(c.streams[i].rst_code, NGHTTP2_CANCEL);
  h2c_close(&c);
  stop(s);
}

int main(void) {
  loop = uv_default_loop();
  uvg_set_log_cb(NULL, NULL);
  RUN(test_ok_after_the_status_left);
  RUN(test_reset_after_finish);
  RUN(test_connection_lost_after_finish);
  RUN(test_release_waits_for_the_socket);
  RUN(test_reset_while_status_in_write);
  RUN(test_deadline_after_finish);
  uv_run(loop, UV_RUN_DEFAULT);
  CHECK_EQ(uv_loop_close(loop), 0);
  TEST_EXIT();
}

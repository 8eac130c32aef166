/* Allocations per unary call in steady state, server and client apart:
 * the hot path must not grow new mallocs unnoticed. The peer of each side
 * is a raw nghttp2 test peer whose memory does not go through the
 * library's allocator, so what is counted is the library's alone. The
 * limits are the counts measured when the hot path was last trimmed
 * (14 server and 12 client allocations before the free lists, the lent
 * messages and the call arenas); never raise them without a reason
 * written here. */
#include <uvgrpc.h>

#include "h2client.h"
#include "h2server.h"
#include "loop_wait.h"
#include "test.h"

/* Server: an echo of a small message, with a reply and OK trailers. */
#define SERVER_LIMIT 0
/* Client: start, send, half-close, read; the same small message back. */
#define CLIENT_LIMIT 0

#define WARMUP 40
#define MEASURED 150

static long n_alloc;

static void *t_malloc(size_t n) {
  n_alloc++;
  return malloc(n);
}
static void *t_realloc(void *p, size_t n) {
  n_alloc++;
  return realloc(p, n);
}

static uv_loop_t *loop;

/* ---- server ---- */

static uint8_t reply[64];
static void echo(uvg_call_t *call, const uint8_t *msg, size_t len) {
  if (len > sizeof(reply)) len = sizeof(reply);
  memcpy(reply, msg, len);
  uvg_call_send(call, reply, len, 0, NULL, NULL);
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}
static void done(uvg_call_t *call, const uvg_status_t *st) {
  (void)call;
  (void)st;
}
static const uvg_method_t methods[] = {
    {.path = "/t.T/Echo", .on_call = echo, .on_done = done}};

static int server_closed;
static void on_server_closed(uvg_server_t *s, void *d) {
  (void)s;
  (void)d;
  server_closed = 1;
}

typedef struct {
  h2c_t *c;
  int i;
} h2c_wait_t;
static int h2c_stream_done(void *arg) {
  h2c_wait_t *w = arg;
  return w->c->streams[w->i].closed || w->c->eof;
}

/* One call from the raw client; its status must be OK. */
static void server_call(h2c_t *c) {
  uint8_t body[64];
  size_t n = h2c_frame(body, 0, "hello world", 11);
  h2c_wait_t w = {c, h2c_request(c, "/t.T/Echo", NULL, NULL, body, n, 0, 1)};
  CHECK(w.i >= 0);
  CHECK(h2c_run_until(loop, h2c_stream_done, &w, 3000));
  CHECK_EQ(h2c_grpc_status(&c->streams[w.i]), 0);
  CHECK_EQ(c->streams[w.i].data_len, 16u);
}

static double server_allocs_per_call(void) {
  uvg_server_t *s;
  int port;
  CHECK_EQ(uvg_server_new(loop, NULL, &s), 0);
  CHECK_EQ(uvg_server_register(s, methods, 1), 0);
  CHECK_EQ(uvg_server_listen(s, "127.0.0.1:0",
                             uvg_insecure_server_credentials(), &port),
           0);
  h2c_t c;
  CHECK_EQ(h2c_connect(&c, loop, port, 1, 0), 0);
  for (int i = 0; i < WARMUP; i++) server_call(&c);
  long before = n_alloc;
  for (int i = 0; i < MEASURED; i++) server_call(&c);
  long used = n_alloc - before;
  h2c_close(&c);
  uvg_server_close(s, on_server_closed, NULL);
  CHECK(wait_count(loop, &server_closed, 1, 3000));
  return (double)used / MEASURED;
}

/* ---- client ---- */

static void answer_ok(h2s_stream_t *st, void *ud) {
  (void)ud;
  h2s_ok(st, "hello world", 11);
}

static int messages, statuses;
static uvg_status_code_t last_code;
static void on_message(uvg_client_call_t *call, const uint8_t *msg, size_t len,
                       void *ud) {
  (void)call;
  (void)msg;
  (void)ud;
  if (len == 11) messages++;
}
static void on_status(uvg_client_call_t *call, const uvg_status_t *st,
                      const uvg_metadata_t *tr, size_t n, void *ud) {
  (void)call;
  (void)tr;
  (void)n;
  (void)ud;
  last_code = st->code;
  statuses++;
}
static const uvg_client_call_cbs_t cbs = {NULL, on_message, on_status};

static void client_call(uvg_channel_t *ch) {
  uvg_client_call_t *call;
  int want = statuses + 1, got = messages + 1;
  CHECK_EQ(uvg_client_call_start(ch, "/t.T/Echo", NULL, &cbs, NULL, &call), 0);
  CHECK_EQ(uvg_client_call_send(call, "hello world", 11, 0, NULL, NULL), 0);
  CHECK_EQ(uvg_client_call_half_close(call), 0);
  CHECK_EQ(uvg_client_call_read(call), 0);
  CHECK(wait_count(loop, &statuses, want, 3000));
  CHECK_EQ(last_code, UVG_STATUS_OK);
  CHECK_EQ(messages, got);
}

static int channel_closed;
static void on_channel_closed(uvg_channel_t *ch, void *d) {
  (void)ch;
  (void)d;
  channel_closed = 1;
}

static double client_allocs_per_call(void) {
  h2s_t srv;
  CHECK_EQ(h2s_start(&srv, loop, answer_ok, NULL), 0);
  char target[48];
  snprintf(target, sizeof(target), "127.0.0.1:%d", srv.port);
  uvg_channel_t *ch;
  CHECK_EQ(uvg_channel_new(loop, target, uvg_insecure_channel_credentials(),
                           NULL, &ch),
           0);
  for (int i = 0; i < WARMUP; i++) client_call(ch);
  long before = n_alloc;
  for (int i = 0; i < MEASURED; i++) client_call(ch);
  long used = n_alloc - before;
  uvg_channel_close(ch, on_channel_closed, NULL);
  CHECK(wait_count(loop, &channel_closed, 1, 3000));
  CHECK_EQ(srv.errors, 0);
  h2s_close(&srv);
  return (double)used / MEASURED;
}

int main(void) {
  loop = uv_default_loop();
  CHECK_EQ(uvg_set_allocator(t_malloc, t_realloc, free), 0);
  double server = server_allocs_per_call();
  double client = client_allocs_per_call();
  printf("allocations per unary call: server %.2f (limit %d), client %.2f "
         "(limit %d)\n",
         server, SERVER_LIMIT, client, CLIENT_LIMIT);
  CHECK(server <= SERVER_LIMIT);
  CHECK(client <= CLIENT_LIMIT);
  CHECK_EQ(uv_loop_close(loop), 0);
  TEST_EXIT();
}

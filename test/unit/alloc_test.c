/* The replaceable allocator: every allocation of the library, nghttp2's
 * and zlib's included, goes through it and is given back; and a server
 * whose allocations fail one by one never crashes or leaks. */
#include <uvgrpc.h>

#include "h2client.h"
#include "test.h"

static long n_alloc, n_free, fail_at = -1;

static int should_fail(void) { return fail_at >= 0 && n_alloc == fail_at; }

static void *t_malloc(size_t n) {
  if (should_fail()) return n_alloc++, NULL;
  n_alloc++;
  return malloc(n);
}
static void *t_realloc(void *p, size_t n) {
  if (p == NULL) return t_malloc(n);
  if (should_fail()) return n_alloc++, NULL;
  n_alloc++;
  n_free++;
  return realloc(p, n);
}
static void t_free(void *p) {
  if (p != NULL) n_free++;
  free(p);
}

/* Whatever fails, a call's callbacks never run inside a library function
 * the handler called, and every call that started ends in one on_done. */
static int in_api, reentered, started, dones;
static uint8_t reply[64];

static void sent(uvg_call_t *call, int status, void *data) {
  (void)call;
  (void)status;
  (void)data;
  reentered += in_api;
}
static void echo(uvg_call_t *call, const uint8_t *msg, size_t len) {
  started++;
  in_api = 1;
  memcpy(reply, msg, len < sizeof(reply) ? len : sizeof(reply));
  uvg_call_send(call, reply, len < sizeof(reply) ? len : sizeof(reply), 0,
                sent, NULL);
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
  in_api = 0;
}
static void done(uvg_call_t *call, const uvg_status_t *st) {
  (void)call;
  (void)st;
  reentered += in_api;
  dones++;
}
static const uvg_method_t methods[] = {
    {.path = "/t.T/Echo", .on_call = echo, .on_done = done}};

static int closed;
static void on_closed(uvg_server_t *s, void *d) {
  (void)s;
  (void)d;
  closed = 1;
}

/* One server, one compressed call, close. Returns the call's grpc-status
 * (-1 if it did not complete). */
static int one_round(uv_loop_t *loop) {
  uvg_server_t *s;
  int port, status = -1;
  if (uvg_server_new(loop, NULL, &s) != 0) return -1;
  if (uvg_server_register(s, methods, 1) == 0 &&
      uvg_server_listen(s, "127.0.0.1:0", uvg_insecure_server_credentials(), &port) == 0) {
    h2c_t c;
    if (h2c_connect(&c, loop, port, 1, 0) == 0) {
      uint8_t body[64];
      size_t n = h2c_frame(body, 0, "hello", 5);
      const char *extra[] = {"grpc-accept-encoding", "gzip", NULL};
      int i = h2c_request(&c, "/t.T/Echo", NULL, extra, body, n, 0, 1);
      for (int k = 0; k < 200 && i >= 0 && !c.streams[i].closed && !c.eof; k++)
        h2c_run_for(loop, 2);
      if (i >= 0) status = h2c_grpc_status(&c.streams[i]);
    }
    h2c_close(&c);
  }
  closed = 0;
  uvg_server_close(s, on_closed, NULL);
  for (int k = 0; k < 500 && !closed; k++) uv_run(loop, UV_RUN_ONCE);
  CHECK(closed);
  return status;
}

static void test_everything_through_the_allocator(void) {
  uv_loop_t *loop = uv_default_loop();
  n_alloc = n_free = 0;
  CHECK_EQ(one_round(loop), 0);
  /* nghttp2's session alone makes dozens of allocations */
  CHECK(n_alloc > 20);
  CHECK_EQ(n_alloc, n_free);
}

static void test_allocation_failures(void) {
  uv_loop_t *loop = uv_default_loop();
  n_alloc = n_free = 0;
  fail_at = -1;
  one_round(loop);
  long total = n_alloc;
  int completed = 0;
  for (long k = 0; k < total; k++) {
    n_alloc = n_free = 0;
    started = dones = reentered = 0;
    fail_at = k;
    int st = one_round(loop);
    fail_at = -1;
    if (reentered || dones != started)
      fprintf(stderr, "  failing allocation %ld: %d re-entrant callbacks, "
              "%d calls started, %d ended\n", k, reentered, started, dones);
    CHECK_EQ(reentered, 0);
    CHECK_EQ(dones, started);
    completed += st == 0;
    /* whatever failed, everything allocated was given back */
    if (n_alloc - 1 != n_free && n_alloc != n_free)
      fprintf(stderr, "  failing allocation %ld: %ld allocated, %ld freed\n", k,
              n_alloc, n_free);
    CHECK(n_alloc - 1 == n_free || n_alloc == n_free);
  }
  fprintf(stderr, "  %ld allocations failed one at a time; the call still "
          "succeeded in %d of the runs\n", total, completed);
}

static int is_eof(void *arg) { return ((h2c_t *)arg)->eof; }

/* An allocation that fails while a request is received is the server's
 * failure, not the client's: GOAWAY INTERNAL_ERROR (RFC 9113 7), and no
 * protocol error counted. */
static void test_failure_while_receiving(void) {
  uv_loop_t *loop = uv_default_loop();
  uvg_server_t *s;
  uvg_server_stats_t st0, st1;
  int port;
  h2c_t c;
  CHECK_EQ(uvg_server_new(loop, NULL, &s), 0);
  CHECK_EQ(uvg_server_register(s, methods, 1), 0);
  CHECK_EQ(uvg_server_listen(s, "127.0.0.1:0", uvg_insecure_server_credentials(), &port), 0);
  CHECK_EQ(h2c_connect(&c, loop, port, 1, 0), 0);
  h2c_run_for(loop, 50); /* SETTINGS exchanged: the server is idle */
  uint8_t body[64];
  size_t n = h2c_frame(body, 0, "hello", 5);
  /* one call first: what it frees, its call and nghttp2's stream, serves
   * the next call without the allocator */
  int first = h2c_request(&c, "/t.T/Echo", NULL, NULL, body, n, 0, 1);
  for (int k = 0; k < 200 && first >= 0 && !c.streams[first].closed; k++)
    uv_run(loop, UV_RUN_ONCE);
  h2c_run_for(loop, 50); /* the call is released to the server's pool */
  uvg_server_get_stats(s, &st0);
  /* the next allocation is the server's, inside nghttp2 receiving the
   * request: the copy of a header value larger than the free lists keep */
  static char big[4000];
  memset(big, 'v', sizeof(big) - 1);
  const char *extra[] = {"x-big", big, NULL};
  fail_at = n_alloc;
  h2c_request(&c, "/t.T/Echo", NULL, extra, body, n, 0, 1);
  CHECK(h2c_run_until(loop, is_eof, &c, 3000));
  fail_at = -1;
  CHECK_EQ(c.raw_goaways, 1);
  CHECK_EQ(c.raw_goaway_code, NGHTTP2_INTERNAL_ERROR);
  uvg_server_get_stats(s, &st1);
  CHECK_EQ(st1.protocol_errors, st0.protocol_errors);
  h2c_close(&c);
  closed = 0;
  uvg_server_close(s, on_closed, NULL);
  for (int k = 0; k < 500 && !closed; k++) uv_run(loop, UV_RUN_ONCE);
  CHECK(closed);
}

/* A batch registered while allocations fail, one after the other: each
 * attempt fails whole, so the batch finally registers without UVG_EEXIST
 * (which a partly registered earlier attempt would cause). */
static void test_register_all_or_nothing(void) {
  enum { N = 40 };
  static char paths[N][24];
  uvg_method_t batch[N];
  uvg_server_t *s;
  for (int i = 0; i < N; i++) {
    snprintf(paths[i], sizeof(paths[i]), "/t.T/M%d", i);
    batch[i] = methods[0];
    batch[i].path = paths[i];
  }
  uv_loop_t *loop = uv_default_loop();
  CHECK_EQ(uvg_server_new(loop, NULL, &s), 0);
  CHECK_EQ(uvg_server_register(s, methods, 1), 0);
  int rc = UVG_ENOMEM, failures = 0;
  for (long k = 0; rc == UVG_ENOMEM; k++, failures++) {
    n_alloc = 0;
    fail_at = k;
    rc = uvg_server_register(s, batch, N);
    fail_at = -1;
  }
  CHECK_EQ(rc, 0);
  CHECK(failures > N); /* every entry and the table could fail */
  CHECK_EQ(uvg_server_register(s, batch + 7, 1), UVG_EEXIST);
  closed = 0;
  uvg_server_close(s, on_closed, NULL);
  for (int k = 0; k < 500 && !closed; k++) uv_run(loop, UV_RUN_ONCE);
  CHECK(closed);
}

int main(void) {
  uvg_set_log_cb(NULL, NULL);
  CHECK_EQ(uvg_set_allocator(NULL, t_realloc, t_free), UVG_EINVAL);
  CHECK_EQ(uvg_set_allocator(t_malloc, t_realloc, t_free), 0);
  RUN(test_everything_through_the_allocator);
  RUN(test_allocation_failures);
  RUN(test_register_all_or_nothing);
  RUN(test_failure_while_receiving);
  CHECK_EQ(uv_loop_close(uv_default_loop()), 0);
  TEST_EXIT();
}

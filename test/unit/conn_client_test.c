/* The client role of the HTTP/2 connection (lib/transport/conn.c) against
 * the project's own server: the ready signal, requests, response headers,
 * messages, trailers and trailers-only responses passed up by kind, the
 * GOAWAY, and the close reason. */
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uvgrpc.h>

#include "h2server.h"
#include "loop_wait.h"
#include "rpc/rpc.h"
#include "test.h"
#include "transport/conn.h"

static uv_loop_t *loop;

/* ---- a server to talk to ---- */

static void echo(uvg_call_t *call, const uint8_t *msg, size_t len) {
  const uvg_metadata_t md = {"x-seen", (const uint8_t *)"yes", 3};
  uvg_call_send_headers(call, &md, 1);
  uvg_call_send(call, msg, len, 0, NULL, NULL);
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}
static int bidi_started;
static void bidi_call(uvg_call_t *call, const uint8_t *msg, size_t len) {
  (void)call;
  (void)msg;
  (void)len;
  bidi_started++;
}
static void bidi_message(uvg_call_t *call, const uint8_t *msg, size_t len) {
  uvg_call_send(call, msg, len, 0, NULL, NULL);
}
static void bidi_half_close(uvg_call_t *call) {
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}
static void bidi_cancel(uvg_call_t *call, const uvg_status_t *st) {
  (void)st;
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}
static void done(uvg_call_t *call, const uvg_status_t *st) {
  (void)call;
  (void)st;
}
static const uvg_method_t methods[] = {
    {.path = "/t.T/Echo", .on_call = echo, .on_done = done},
    {.path = "/t.T/Bidi", .type = UVG_METHOD_BIDI_STREAMING,
     .on_call = bidi_call, .on_message = bidi_message,
     .on_half_close = bidi_half_close, .on_cancel = bidi_cancel,
     .on_done = done},
};

/* ---- the client connection under test ---- */

typedef struct {
  uvg__tstream_t ts;
  int header_blocks[3]; /* by uvg__hblock_t */
  int trailers_only;
  char status[8], grpc_status[8], seen[8];
  uint8_t data[256];
  size_t data_len;
  int remote_end, closed;
  uint32_t close_code;
} stream_t;

typedef struct {
  uvg__conn_t c;
  int ready, goaways, closed;
  int32_t goaway_last;
  uint32_t goaway_code;
  const char *reason;
} client_t;

static void copy(char *dst, size_t cap, const uint8_t *v, size_t n) {
  snprintf(dst, cap, "%.*s", (int)n, (const char *)v);
}

static int c_header(uvg__tstream_t *ts, uvg__hblock_t kind, const uint8_t *name,
                    size_t nlen, const uint8_t *value, size_t vlen) {
  stream_t *s = (stream_t *)ts;
  CHECK(kind == UVG__HB_RESPONSE || kind == UVG__HB_TRAILERS);
  if (nlen == 7 && memcmp(name, ":status", 7) == 0) copy(s->status, 8, value, vlen);
  if (nlen == 11 && memcmp(name, "grpc-status", 11) == 0)
    copy(s->grpc_status, 8, value, vlen);
  if (nlen == 6 && memcmp(name, "x-seen", 6) == 0) copy(s->seen, 8, value, vlen);
  return 0;
}
static void c_headers(uvg__tstream_t *ts, uvg__hblock_t kind, int end_stream) {
  stream_t *s = (stream_t *)ts;
  s->header_blocks[kind]++;
  if (kind == UVG__HB_RESPONSE && end_stream) s->trailers_only = 1;
}
static void c_data(uvg__tstream_t *ts, const uint8_t *p, size_t n) {
  stream_t *s = (stream_t *)ts;
  if (s->data_len + n <= sizeof(s->data)) memcpy(s->data + s->data_len, p, n);
  s->data_len += n;
}
static void c_remote_end(uvg__tstream_t *ts) { ((stream_t *)ts)->remote_end++; }
static void c_stream_close(uvg__tstream_t *ts, uint32_t code) {
  stream_t *s = (stream_t *)ts;
  s->closed++;
  s->close_code = code;
}
static void c_close(uvg__conn_t *c) {
  client_t *cl = (client_t *)c;
  cl->closed++;
  cl->reason = c->close_reason;
}
static void c_ready(uvg__conn_t *c) { ((client_t *)c)->ready++; }
static void c_goaway(uvg__conn_t *c, int32_t last, uint32_t code,
                     const uint8_t *debug, size_t len) {
  client_t *cl = (client_t *)c;
  (void)debug;
  (void)len;
  cl->goaways++;
  cl->goaway_last = last;
  cl->goaway_code = code;
}
static const uvg__conn_cbs_t client_cbs = {
    .on_header = c_header,
    .on_headers = c_headers,
    .on_data = c_data,
    .on_remote_end = c_remote_end,
    .on_stream_close = c_stream_close,
    .on_close = c_close,
    .on_ready = c_ready,
    .on_goaway = c_goaway,
};

static uvg__sched_t sched;
static uint8_t read_buf[65536];
static const uvg__conn_settings_t settings = {
    .initial_window_size = 1 << 20,
    .connection_window_size = 1 << 24,
    .max_frame_size = 16384,
    .max_header_list_size = 16384,
};

/* Runs the loop until *flag reaches `want` or 2 s pass. */
static int run_until(const int *flag, int want) {
  return wait_count(loop, flag, want, 2000);
}

static void client_open_with(client_t *cl, int port, const uvg__conn_settings_t *st);
static void client_open(client_t *cl, int port) { client_open_with(cl, port, &settings); }
static void client_open_with(client_t *cl, int port, const uvg__conn_settings_t *st) {
  memset(cl, 0, sizeof(*cl));
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", port, &a);
  CHECK_EQ(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  uvg__conn_init(&cl->c, &sched, &client_cbs);
  CHECK_EQ(uvg__stream_open_fd(loop, &cl->c.io, fd, 0, cl->c.io.cbs, read_buf,
                               sizeof(read_buf)),
           0);
  CHECK_EQ(uvg__conn_start_client(&cl->c, st), 0);
}

static int request(client_t *cl, stream_t *s, const char *path) {
  nghttp2_nv nv[] = {
      UVG__NV(":method", "POST", 4),
      UVG__NV(":scheme", "http", 4),
      UVG__NV(":path", path, strlen(path)),
      UVG__NV(":authority", "localhost", 9),
      UVG__NV("content-type", "application/grpc", 16),
      UVG__NV("te", "trailers", 8),
  };
  memset(s, 0, sizeof(*s));
  return uvg__conn_request(&cl->c, &s->ts, nv, 6);
}

static void msg_done(uvg__msg_t *m, int status) {
  (void)m;
  (void)status;
}

static void send_msg(stream_t *s, uvg__msg_t *m, const char *msg) {
  memset(m, 0, sizeof(*m));
  m->head_len = UVG__FRAME_HEADER_LEN;
  uvg__frame_header(m->head, 0, (uint32_t)strlen(msg));
  m->data = (const uint8_t *)msg;
  m->len = strlen(msg);
  m->done = msg_done;
  CHECK_EQ(uvg__ts_send(&s->ts, m), 0);
}

static int server_closed;
static void on_server_closed(uvg_server_t *s, void *d) {
  (void)s;
  (void)d;
  server_closed++;
}

static void test_unary_and_trailers_only(void) {
  uvg_server_t *srv;
  int port;
  CHECK_EQ(uvg_server_new(loop, NULL, &srv), 0);
  CHECK_EQ(uvg_server_register(srv, methods, 2), 0);
  CHECK_EQ(uvg_server_listen(srv, "127.0.0.1:0", uvg_insecure_server_credentials(),
                             &port),
           0);
  client_t cl;
  client_open(&cl, port);
  CHECK(run_until(&cl.ready, 1));

  /* a unary call: headers, one message, trailers */
  stream_t s1;
  uvg__msg_t m1;
  CHECK_EQ(request(&cl, &s1, "/t.T/Echo"), 0);
  send_msg(&s1, &m1, "hello");
  CHECK_EQ(uvg__ts_end(&s1.ts, NULL, 0), 0);
  CHECK(run_until(&s1.closed, 1));
  CHECK_EQ(s1.header_blocks[UVG__HB_RESPONSE], 1);
  CHECK_EQ(s1.header_blocks[UVG__HB_TRAILERS], 1);
  CHECK(!s1.trailers_only);
  CHECK_STR(s1.status, "200");
  CHECK_STR(s1.seen, "yes");
  CHECK_STR(s1.grpc_status, "0");
  CHECK_EQ(s1.data_len, 10);
  CHECK(memcmp(s1.data + 5, "hello", 5) == 0);
  CHECK_EQ(s1.remote_end, 1);
  CHECK_EQ(s1.close_code, NGHTTP2_NO_ERROR);

  /* an unknown method: a trailers-only response */
  stream_t s2;
  CHECK_EQ(request(&cl, &s2, "/t.T/Nope"), 0);
  CHECK_EQ(uvg__ts_end(&s2.ts, NULL, 0), 0);
  CHECK(run_until(&s2.closed, 1));
  CHECK_EQ(s2.header_blocks[UVG__HB_RESPONSE], 1);
  CHECK_EQ(s2.header_blocks[UVG__HB_TRAILERS], 0);
  CHECK(s2.trailers_only);
  CHECK_STR(s2.grpc_status, "12");

  /* a stream in flight, then the server shuts down: GOAWAY, no new
   * requests here, the stream in flight finishes */
  stream_t s3, s4;
  uvg__msg_t m3;
  int started = bidi_started;
  CHECK_EQ(request(&cl, &s3, "/t.T/Bidi"), 0);
  CHECK(run_until(&bidi_started, started + 1));
  uvg_server_shutdown(srv, 5000, on_server_closed, NULL);
  CHECK(run_until(&cl.goaways, 2));
  CHECK_EQ(cl.goaway_code, NGHTTP2_NO_ERROR);
  CHECK_EQ(cl.goaway_last, s3.ts.id);
  CHECK_EQ(request(&cl, &s4, "/t.T/Echo"), UVG_ECLOSED);
  send_msg(&s3, &m3, "ping");
  CHECK_EQ(uvg__ts_end(&s3.ts, NULL, 0), 0);
  CHECK(run_until(&s3.closed, 1));
  CHECK_STR(s3.grpc_status, "0");
  CHECK_EQ(s3.data_len, 9);
  CHECK(run_until(&cl.closed, 1));
  CHECK_STR(cl.reason, "GOAWAY received");
  CHECK(run_until(&server_closed, 1));
}

/* The server goes away under a stream: the stream closes once with the
 * connection's loss and the connection says why. */
static void test_server_gone(void) {
  uvg_server_t *srv;
  int port;
  CHECK_EQ(uvg_server_new(loop, NULL, &srv), 0);
  CHECK_EQ(uvg_server_register(srv, methods, 2), 0);
  CHECK_EQ(uvg_server_listen(srv, "127.0.0.1:0", uvg_insecure_server_credentials(),
                             &port),
           0);
  client_t cl;
  client_open(&cl, port);
  CHECK(run_until(&cl.ready, 1));
  stream_t s;
  int started = bidi_started;
  CHECK_EQ(request(&cl, &s, "/t.T/Bidi"), 0);
  CHECK(run_until(&bidi_started, started + 1));
  server_closed = 0;
  uvg_server_close(srv, on_server_closed, NULL);
  CHECK(run_until(&cl.closed, 1));
  CHECK_EQ(s.closed, 1);
  CHECK(s.close_code == UVG__H2_CONN_CLOSED || s.close_code == NGHTTP2_REFUSED_STREAM);
  CHECK(cl.reason != NULL);
  CHECK(run_until(&server_closed, 1));
}

/* Keepalive (gRFC A8) from the client: without calls it pings only when
 * permitted; a server that finds the pings too frequent says
 * too_many_pings. */
static void test_keepalive(void) {
  uvg_server_t *srv;
  int port;
  CHECK_EQ(uvg_server_new(loop, NULL, &srv), 0);
  CHECK_EQ(uvg_server_register(srv, methods, 2), 0);
  CHECK_EQ(uvg_server_listen(srv, "127.0.0.1:0", uvg_insecure_server_credentials(),
                             &port),
           0);
  uvg__conn_settings_t st = settings;
  st.keepalive_time = 30;
  st.keepalive_timeout = 100;
  client_t quiet, eager;
  client_open_with(&quiet, port, &st);
  uvg__conn_settings_t st2 = st;
  st2.permit_without_stream = 1;
  client_open_with(&eager, port, &st2);
  CHECK(run_until(&eager.goaways, 1));
  CHECK_EQ(eager.goaway_code, NGHTTP2_ENHANCE_YOUR_CALM);
  CHECK_EQ(quiet.goaways, 0);
  CHECK(run_until(&eager.closed, 1));
  uvg__conn_close(&quiet.c);
  CHECK(run_until(&quiet.closed, 1));
  server_closed = 0;
  uvg_server_close(srv, on_server_closed, NULL);
  CHECK(run_until(&server_closed, 1));
}

/* An allocator that fails while told to. */
static int fail_allocs, failed_allocs;
static void *t_malloc(size_t n) {
  if (fail_allocs > 0) {
    fail_allocs--;
    failed_allocs++;
    return NULL;
  }
  return malloc(n);
}
static void *t_realloc(void *p, size_t n) { return realloc(p, n); }

/* The stream window cap: the streams open times the window the peer was
 * told stay within it. Three streams join one: the window must come down
 * to a quarter before their HEADERS leave. The SETTINGS that says so cannot
 * be queued at first (nghttp2 runs out of memory): that write waits, the
 * connection's window stays the one the peer was told, and a later one
 * carries the SETTINGS, then the HEADERS. */
#define CAP (1u << 20)
static void test_window_cap_when_settings_fail(void) {
  h2s_t srv;
  CHECK_EQ(h2s_start(&srv, loop, NULL, NULL), 0);
  uvg__conn_settings_t st = settings;
  st.initial_window_size = CAP;
  st.window_cap = CAP;
  client_t cl;
  client_open_with(&cl, srv.port, &st);
  CHECK(run_until(&cl.ready, 1));
  stream_t s[4];
  CHECK_EQ(request(&cl, &s[0], "/t.T/Bidi"), 0);
  CHECK(run_until(&srv.nstreams, 1));
  CHECK_EQ(cl.c.window, CAP); /* one stream has it all */
  for (int i = 1; i < 4; i++) CHECK_EQ(request(&cl, &s[i], "/t.T/Bidi"), 0);
  /* nghttp2's next allocation, the SETTINGS, misses the pool's free
   * blocks and fails */
  uvg__pool_t empty, *pool = cl.c.h2mem.pool;
  uvg__pool_init(&empty);
  cl.c.h2mem.pool = &empty;
  fail_allocs = 1;
  failed_allocs = 0;
  uv_run(loop, UV_RUN_NOWAIT); /* the flush */
  fail_allocs = 0;
  cl.c.h2mem.pool = pool;
  uvg__pool_trim(&empty);
  CHECK_EQ(failed_allocs, 1);
  CHECK(run_until(&srv.nstreams, 4));
  wait_ms(loop, 20);
  fprintf(stderr, "  at most %llu KiB of windows, cap %u KiB\n",
          (unsigned long long)srv.conns[0].max_windows / 1024, CAP / 1024);
  CHECK(srv.conns[0].max_windows <= CAP);
  CHECK_EQ(cl.c.window, CAP / 4);
  CHECK_EQ(nghttp2_session_get_local_settings(cl.c.h2, NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE),
           CAP / 4);
  uvg__conn_close(&cl.c);
  CHECK(run_until(&cl.closed, 1));
  CHECK_EQ(srv.errors, 0);
  h2s_close(&srv);
}

static void on_sched_closed(uvg__sched_t *s) { (void)s; }

int main(void) {
  loop = uv_default_loop();
  CHECK_EQ(uvg_set_allocator(t_malloc, t_realloc, free), 0);
  uvg_set_log_cb(NULL, NULL);
  CHECK_EQ(uvg__sched_init(loop, &sched), 0);
  RUN(test_unary_and_trailers_only);
  RUN(test_server_gone);
  RUN(test_keepalive);
  RUN(test_window_cap_when_settings_fail);
  uvg__sched_close(&sched, on_sched_closed);
  uv_run(loop, UV_RUN_DEFAULT);
  CHECK_EQ(uv_loop_close(loop), 0);
  TEST_EXIT();
}

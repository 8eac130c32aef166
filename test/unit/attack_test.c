/* A raw HTTP/2 client playing the attacker: each defence answers as RFC 9113
 * and the gRPC spec prescribe, the server keeps serving everyone else, and
 * its memory returns to where it was. */
#include <malloc.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uvgrpc.h>

#include "h2client.h"
#include "test.h"
#include "workq.h"

static uv_loop_t *loop;
static uvg_server_t *server;
static int port;

static void ok_unary(uvg_call_t *call, const uint8_t *msg, size_t len) {
  uvg_call_send(call, msg, len, 0, NULL, NULL);
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}
static void on_done(uvg_call_t *call, const uvg_status_t *st) {
  (void)call;
  (void)st;
}

static const uvg_method_t methods[] = {
    {.path = "/a.A/Ok", .on_call = ok_unary, .on_done = on_done},
};

/* ---- frame building ---- */

typedef struct {
  uint8_t *p;
  size_t len, cap;
} out_t;

static void put(out_t *o, const void *p, size_t n) {
  if (o->len + n > o->cap) {
    o->cap = (o->len + n) * 2;
    o->p = realloc(o->p, o->cap);
  }
  memcpy(o->p + o->len, p, n);
  o->len += n;
}

static void frame(out_t *o, uint8_t type, uint8_t flags, uint32_t stream,
                  const void *payload, size_t n) {
  uint8_t h[9] = {(uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n, type, flags,
                  (uint8_t)(stream >> 24), (uint8_t)(stream >> 16),
                  (uint8_t)(stream >> 8), (uint8_t)stream};
  put(o, h, 9);
  if (n) put(o, payload, n);
}

static nghttp2_hd_deflater *deflater;

/* HPACK state is per connection: call before building a connection's
 * header blocks. */
static void fresh_hpack(void) {
  if (deflater != NULL) nghttp2_hd_deflate_del(deflater);
  nghttp2_hd_deflate_new(&deflater, 4096);
}

static void preface(out_t *o) {
  put(o, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
  frame(o, NGHTTP2_SETTINGS, 0, 0, NULL, 0);
}

/* HPACK block of a gRPC request for `path`. */
static size_t request_block(uint8_t *buf, size_t cap, const char *path) {
  nghttp2_nv nv[] = {
#define NV(k, v) {(uint8_t *)(k), (uint8_t *)(v), strlen(k), strlen(v), 0}
      NV(":method", "POST"), NV(":scheme", "http"), NV(":path", path),
      NV(":authority", "x"), NV("content-type", "application/grpc"),
      NV("te", "trailers"),
#undef NV
  };
  return (size_t)nghttp2_hd_deflate_hd(deflater, buf, cap, nv, 6);
}

static void send_out(h2c_t *c, out_t *o) {
  h2c_write_raw(c, o->p, o->len);
  free(o->p);
  memset(o, 0, sizeof(*o));
}

static int is_eof(void *arg) { return ((h2c_t *)arg)->eof; }

/* A well-behaved client still gets served. */
static void check_others_served(void) {
  h2c_t c;
  CHECK_EQ(h2c_connect(&c, loop, port, 1, 0), 0);
  uint8_t body[16];
  size_t n = h2c_frame(body, 0, "hi", 2);
  int i = h2c_request(&c, "/a.A/Ok", NULL, NULL, body, n, 0, 1);
  for (int k = 0; k < 1000 && !c.streams[i].closed; k++) h2c_run_for(loop, 2);
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), 0);
  h2c_close(&c);
}

/* Opens a raw connection, sends `o` after the preface, waits for the
 * server to close it, and returns the GOAWAY code (-1 if none). */
static int attack(out_t *o, int expect_close) {
  h2c_t c;
  out_t pre = {0};
  CHECK_EQ(h2c_connect(&c, loop, port, 0, 0), 0);
  preface(&pre);
  send_out(&c, &pre);
  send_out(&c, o);
  int closed = h2c_run_until(loop, is_eof, &c, 3000);
  if (expect_close) CHECK(closed);
  int code = c.raw_goaways > 0 ? (int)c.raw_goaway_code : -1;
  h2c_close(&c);
  check_others_served();
  return code;
}

static void test_rapid_reset(void) {
  /* CVE-2023-44487: open and reset streams as fast as possible; nghttp2's
   * reset rate limit ends the connection with INTERNAL_ERROR */
  out_t o = {0};
  uint8_t block[256];
  fresh_hpack();
  for (uint32_t id = 1; id < 2 * 5000; id += 2) {
    size_t n = request_block(block, sizeof(block), "/a.A/Ok");
    frame(&o, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, id, block, n);
    uint8_t code[4] = {0, 0, 0, NGHTTP2_CANCEL};
    frame(&o, NGHTTP2_RST_STREAM, 0, id, code, 4);
  }
  CHECK_EQ(attack(&o, 1), NGHTTP2_INTERNAL_ERROR);
}

static void test_ping_flood(void) {
  out_t o = {0};
  for (int k = 0; k < 20000; k++) frame(&o, NGHTTP2_PING, 0, 0, "12345678", 8);
  /* the ping policy says ENHANCE_YOUR_CALM; if nghttp2's flood guard
   * trips first the connection is closed before that GOAWAY can leave */
  int code = attack(&o, 1);
  CHECK(code == -1 || code == NGHTTP2_ENHANCE_YOUR_CALM);
}

static void test_settings_flood(void) {
  out_t o = {0};
  uint8_t s[6] = {0, NGHTTP2_SETTINGS_ENABLE_PUSH, 0, 0, 0, 0};
  for (int k = 0; k < 20000; k++) frame(&o, NGHTTP2_SETTINGS, 0, 0, s, 6);
  int code = attack(&o, 1);
  CHECK(code == -1 || code == NGHTTP2_ENHANCE_YOUR_CALM);
}

static void test_continuation_flood(void) {
  out_t o = {0};
  uint8_t block[256];
  fresh_hpack();
  size_t n = request_block(block, sizeof(block), "/a.A/Ok");
  frame(&o, NGHTTP2_HEADERS, 0, 1, block, n); /* no END_HEADERS */
  uint8_t junk[16] = {0x40, 3, 'x', '-', 'a', 1, 'b'}; /* literal x-a: b */
  for (int k = 0; k < 1000; k++) frame(&o, NGHTTP2_CONTINUATION, 0, 1, junk, 7);
  /* nghttp2 stops after 8 CONTINUATIONs; the server calls it a flood */
  CHECK_EQ(attack(&o, 1), NGHTTP2_ENHANCE_YOUR_CALM);
}

static void test_window_overflow(void) {
  out_t o = {0};
  uint8_t inc[4] = {0x7f, 0xff, 0xff, 0xff};
  frame(&o, NGHTTP2_WINDOW_UPDATE, 0, 0, inc, 4);
  CHECK_EQ(attack(&o, 1), NGHTTP2_FLOW_CONTROL_ERROR);
}

static void test_zero_window_increment(void) {
  out_t o = {0};
  uint8_t inc[4] = {0, 0, 0, 0};
  frame(&o, NGHTTP2_WINDOW_UPDATE, 0, 0, inc, 4);
  CHECK_EQ(attack(&o, 1), NGHTTP2_PROTOCOL_ERROR);
}

static void test_bad_hpack(void) {
  out_t o = {0};
  uint8_t block[] = {0xff, 0xff, 0xff, 0xff, 0x0f}; /* index far past the table */
  frame(&o, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, 1, block, sizeof(block));
  CHECK_EQ(attack(&o, 1), NGHTTP2_COMPRESSION_ERROR);
}

static void test_oversized_frame(void) {
  out_t o = {0};
  static uint8_t big[20000];
  frame(&o, NGHTTP2_PING, 0, 0, big, sizeof(big));
  CHECK_EQ(attack(&o, 1), NGHTTP2_FRAME_SIZE_ERROR);
}

static void test_headers_on_stream_zero(void) {
  out_t o = {0};
  uint8_t block[256];
  fresh_hpack();
  size_t n = request_block(block, sizeof(block), "/a.A/Ok");
  frame(&o, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, 0, block, n);
  CHECK_EQ(attack(&o, 1), NGHTTP2_PROTOCOL_ERROR);
}

/* RFC 9113 5.1.1: a new stream's id must be greater than every id the
 * client used before; ids it skipped are closed for good. HEADERS on one
 * is a connection error PROTOCOL_ERROR, with or without a priority. */
static void headers_on_skipped_id(int with_priority) {
  out_t o = {0};
  uint8_t block[256], payload[300];
  fresh_hpack();
  size_t n = request_block(block, sizeof(block), "/a.A/Ok");
  frame(&o, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, 5, block, n);
  n = request_block(block, sizeof(block), "/a.A/Ok");
  uint8_t prio[5] = {0, 0, 0, 0, 15}; /* depends on stream 0, weight 16 */
  size_t off = 0;
  if (with_priority) memcpy(payload, prio, 5), off = 5;
  memcpy(payload + off, block, n);
  frame(&o, NGHTTP2_HEADERS,
        NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM |
            (with_priority ? NGHTTP2_FLAG_PRIORITY : 0),
        3, payload, off + n);
  uvg_server_stats_t st0, st1;
  uvg_server_get_stats(server, &st0);
  CHECK_EQ(attack(&o, 1), NGHTTP2_PROTOCOL_ERROR);
  uvg_server_get_stats(server, &st1);
  CHECK_EQ(st1.protocol_errors, st0.protocol_errors + 1);
}

static void test_headers_on_skipped_stream_id(void) {
  headers_on_skipped_id(0);
  headers_on_skipped_id(1);
}

/* HEADERS on a stream id the client did use is no such error: trailers on
 * a stream the server has answered and reset (RST_STREAM NO_ERROR, RFC
 * 9113 8.1) may cross that reset (5.1 / 6.4); they are ignored and the
 * connection goes on. */
static void test_trailers_after_reset_are_ignored(void) {
  h2c_t c;
  out_t o = {0};
  uint8_t block[256], body[16];
  uvg_server_stats_t st0, st1;
  fresh_hpack();
  uvg_server_get_stats(server, &st0);
  CHECK_EQ(h2c_connect(&c, loop, port, 0, 0), 0);
  preface(&o);
  /* an unknown method is answered at once: the client is still sending */
  size_t n = request_block(block, sizeof(block), "/a.A/Nope");
  frame(&o, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, 1, block, n);
  size_t blen = h2c_frame(body, 0, "hi", 2);
  send_out(&c, &o);
  for (int k = 0; k < 500 && c.raw_rst_streams == 0; k++) h2c_run_for(loop, 2);
  CHECK_EQ(c.raw_rst_streams, 1);
  CHECK_EQ(c.raw_rst_code, NGHTTP2_NO_ERROR);
  /* trailers on stream 1, then a new call on stream 3 */
  nghttp2_nv trailer = {(uint8_t *)"x-t", (uint8_t *)"v", 3, 1, 0};
  n = (size_t)nghttp2_hd_deflate_hd(deflater, block, sizeof(block), &trailer, 1);
  frame(&o, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, 1,
        block, n);
  n = request_block(block, sizeof(block), "/a.A/Ok");
  frame(&o, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, 3, block, n);
  frame(&o, NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, 3, body, blen);
  send_out(&c, &o);
  h2c_run_for(loop, 100);
  CHECK(!c.eof);
  CHECK_EQ(c.raw_goaways, 0);
  uvg_server_get_stats(server, &st1);
  CHECK_EQ(st1.calls_started, st0.calls_started + 2);
  CHECK_EQ(st1.calls_open, st0.calls_open); /* both ended */
  CHECK_EQ(st1.protocol_errors, st0.protocol_errors);
  h2c_close(&c);
}

/* ---- a thousand idle connections ---- */

#define IDLE_CONNS 1000
static uv_tcp_t *idle;
static uv_connect_t *idle_req;
static int idle_connected, idle_closed;
static char sink[65536];

static void idle_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  (void)h;
  (void)hint;
  *b = uv_buf_init(sink, sizeof(sink));
}
static void idle_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  (void)s;
  (void)n;
  (void)b;
}
static void idle_on_connect(uv_connect_t *req, int status) {
  static uv_write_t w[IDLE_CONNS];
  static uv_buf_t pre;
  static char bytes[33] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\4\0\0\0\0\0";
  int i = (int)(req - idle_req);
  CHECK_EQ(status, 0);
  idle_connected++;
  pre = uv_buf_init(bytes, 33);
  uv_write(&w[i], (uv_stream_t *)&idle[i], &pre, 1, NULL);
  uv_read_start((uv_stream_t *)&idle[i], idle_alloc, idle_read);
}
static void idle_on_close(uv_handle_t *h) {
  (void)h;
  idle_closed++;
}

/* The heap in use, after the loop's free lists gave back what they keep
 * for reuse (loop/pool.h: bounded, and not what a connection leaves). */
static size_t heap_in_use(void) {
  uvg__sched_t *s;
  if (uvg__sched_acquire(loop, &s) == 0) {
    uvg__pool_trim(&s->mem);
    uvg__sched_release(s);
  }
  return mallinfo2().uordblks;
}

static size_t rss_bytes(void) {
  long pages = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f != NULL) {
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    fclose(f);
  }
  return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

static void test_thousand_idle_connections(void) {
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < 2 * IDLE_CONNS + 64 && rl.rlim_max >= 2 * IDLE_CONNS + 64) {
    rl.rlim_cur = 2 * IDLE_CONNS + 64;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  int n = rl.rlim_cur >= 2 * IDLE_CONNS + 64 ? IDLE_CONNS : (int)(rl.rlim_cur - 64) / 2;
  idle = calloc((size_t)n, sizeof(*idle));
  idle_req = calloc((size_t)n, sizeof(*idle_req));
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", port, &a);
  check_others_served(); /* warm the server's free lists */
  h2c_run_for(loop, 50);
  uvg_server_stats_t st;
  size_t base = heap_in_use(), base_rss = rss_bytes();
  idle_connected = idle_closed = 0;
  for (int i = 0; i < n; i++) {
    uv_tcp_init(loop, &idle[i]);
    uv_tcp_connect(&idle_req[i], &idle[i], (struct sockaddr *)&a, idle_on_connect);
  }
  for (int k = 0; k < 2000 && idle_connected < n; k++) h2c_run_for(loop, 5);
  h2c_run_for(loop, 300);
  uvg_server_get_stats(server, &st);
  CHECK_EQ(st.connections_open, (uint64_t)n);
  size_t open = heap_in_use(), open_rss = rss_bytes();
  fprintf(stderr,
          "  %d idle connections: %zu bytes of heap, %zu bytes of RSS each "
          "(server and client in this process)\n",
          n, (open - base) / (size_t)n, (open_rss - base_rss) / (size_t)n);
  check_others_served();
  for (int i = 0; i < n; i++) uv_close((uv_handle_t *)&idle[i], idle_on_close);
  for (int k = 0; k < 2000 && (idle_closed < n || st.connections_open > 0); k++) {
    h2c_run_for(loop, 5);
    uvg_server_get_stats(server, &st);
  }
  CHECK_EQ(st.connections_open, 0);
  h2c_run_for(loop, 50);
  size_t after = heap_in_use();
  fprintf(stderr, "  heap before %zu, with connections %zu, after %zu\n", base, open, after);
  /* back to the baseline, within what libuv and the free lists keep */
  if (base != 0) CHECK(after <= base + 64 * 1024);
  free(idle);
  free(idle_req);
}

/* A client that ignores SETTINGS_MAX_CONCURRENT_STREAMS (100). Before it
 * has acknowledged the setting, the streams past the limit are refused one
 * by one (RST_STREAM REFUSED_STREAM, RFC 9113 5.1.2) and the rest are
 * served; after the ack, exceeding it is a connection error (PROTOCOL_ERROR;
 * 5.4.2 allows treating the stream error so). */
static void streams_over_the_limit(int acked) {
  h2c_t c;
  out_t o = {0};
  uint8_t block[256];
  fresh_hpack();
  CHECK_EQ(h2c_connect(&c, loop, port, 0, 0), 0);
  preface(&o);
  if (acked) frame(&o, NGHTTP2_SETTINGS, NGHTTP2_FLAG_ACK, 0, NULL, 0);
  send_out(&c, &o);
  h2c_run_for(loop, 50);
  uint8_t body[5] = {0, 0, 0, 0, 0};
  for (uint32_t id = 1; id <= 2 * 150; id += 2) {
    size_t n = request_block(block, sizeof(block), "/a.A/Ok");
    frame(&o, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, id, block, n);
    frame(&o, NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, id, body, 5);
  }
  send_out(&c, &o);
  h2c_run_for(loop, 300);
  if (acked) {
    CHECK_EQ(c.raw_goaways, 1);
    CHECK_EQ(c.raw_goaway_code, NGHTTP2_PROTOCOL_ERROR);
    CHECK(c.raw_goaway_last_stream <= 199);
  } else {
    CHECK(!c.eof);
    CHECK_EQ(c.raw_goaways, 0);
    CHECK_EQ(c.raw_rst_streams, 50);
    CHECK_EQ(c.raw_rst_code, NGHTTP2_REFUSED_STREAM);
  }
  h2c_close(&c);
  check_others_served();
}

/* Heap in use, including blocks the allocator mmaps for itself (large
 * ones, which mallinfo2's uordblks leaves out). 0 where there is no
 * mallinfo (a sanitizer's allocator). */
static size_t heap_with_large_blocks(void) {
  struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

/* Streams that each declare a message of the receive limit (4 MiB) and
 * send only its 5-byte prefix: the server holds what arrived, not what was
 * declared (reserving the declared length would be 400 MiB here). */
static void test_declared_but_not_sent(void) {
  enum { STREAMS = 100 };
  h2c_t c;
  out_t o = {0};
  uint8_t block[256];
  fresh_hpack();
  CHECK_EQ(h2c_connect(&c, loop, port, 0, 0), 0);
  preface(&o);
  frame(&o, NGHTTP2_SETTINGS, NGHTTP2_FLAG_ACK, 0, NULL, 0);
  send_out(&c, &o);
  h2c_run_for(loop, 50);
  size_t base = heap_with_large_blocks();
  const uint8_t prefix[5] = {0, 0x00, 0x40, 0x00, 0x00}; /* 4 MiB follows */
  for (uint32_t id = 1; id < 2 * STREAMS; id += 2) {
    size_t n = request_block(block, sizeof(block), "/a.A/Ok");
    frame(&o, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, id, block, n);
    frame(&o, NGHTTP2_DATA, 0, id, prefix, sizeof(prefix));
  }
  send_out(&c, &o);
  h2c_run_for(loop, 300);
  size_t held = heap_with_large_blocks() - base;
  CHECK(!c.eof);
  CHECK_EQ(c.raw_goaways, 0);
  CHECK_EQ(c.raw_rst_streams, 0);
  if (base != 0) {
    fprintf(stderr, "  %d streams, each a 5-byte prefix declaring 4 MiB: "
            "%zu bytes of heap\n", STREAMS, held);
    CHECK(held < 4u << 20);
  }
  h2c_close(&c);
  check_others_served();
}

static void test_streams_over_the_limit(void) {
  streams_over_the_limit(0);
  streams_over_the_limit(1);
}

/* Slowloris: hundreds of connections that send half a preface and stop.
 * The handshake deadline closes every one; the server serves meanwhile. */
#define SLOW_CONNS 300
static void test_slow_connections(void) {
  uvg_server_t *s;
  uvg_server_options_t o;
  memset(&o, 0, sizeof(o));
  o.connection_timeout_ms = 150;
  CHECK_EQ(uvg_server_new(loop, &o, &s), 0);
  int p;
  CHECK_EQ(uvg_server_listen(s, "127.0.0.1:0", uvg_insecure_server_credentials(), &p), 0);
  h2c_t *c = calloc(SLOW_CONNS, sizeof(*c));
  int made = 0;
  for (; made < SLOW_CONNS; made++) {
    if (h2c_connect(&c[made], loop, p, 0, 0) != 0) {
      free(c[made].streams);
      break;
    }
    h2c_write_raw(&c[made], "PRI * HTTP/2.0\r\n", 16);
  }
  CHECK_EQ(made, SLOW_CONNS);
  check_others_served();
  uvg_server_stats_t st;
  uint64_t end = uv_now(loop) + 5000;
  int eofs;
  do {
    h2c_run_for(loop, 20);
    eofs = 0;
    for (int k = 0; k < made; k++) eofs += c[k].eof;
    uvg_server_get_stats(s, &st);
  } while ((eofs < made || st.connections_open > 0) && uv_now(loop) < end);
  CHECK_EQ(eofs, made);
  CHECK_EQ(st.connections_open, 0);
  for (int k = 0; k < made; k++) h2c_close(&c[k]);
  free(c);
  uvg_server_close(s, NULL, NULL);
  h2c_run_for(loop, 20);
}

int main(void) {
  loop = uv_default_loop();
  uvg_set_log_cb(NULL, NULL);
  CHECK_EQ(uvg_server_new(loop, NULL, &server), 0);
  CHECK_EQ(uvg_server_register(server, methods, 1), 0);
  CHECK_EQ(uvg_server_listen(server, "127.0.0.1:0", uvg_insecure_server_credentials(), &port), 0);
  /* Round one fills the caches (call and work-node free lists, libuv's
   * watcher array); round two must end where round one did: whatever the
   * attacks cost is given back. */
  size_t heap[2];
  for (int round = 0; round < 2; round++) {
    RUN(test_rapid_reset);
    RUN(test_ping_flood);
    RUN(test_settings_flood);
    RUN(test_continuation_flood);
    RUN(test_window_overflow);
    RUN(test_zero_window_increment);
    RUN(test_bad_hpack);
    RUN(test_oversized_frame);
    RUN(test_headers_on_stream_zero);
    RUN(test_headers_on_skipped_stream_id);
    RUN(test_trailers_after_reset_are_ignored);
    RUN(test_streams_over_the_limit);
    RUN(test_declared_but_not_sent);
    RUN(test_slow_connections);
    RUN(test_thousand_idle_connections);
    h2c_run_for(loop, 50);
    heap[round] = heap_in_use();
  }
  if (heap[0] == 0) {
    /* a sanitizer's allocator keeps no mallinfo; LeakSanitizer checks leaks */
    fprintf(stderr, "heap accounting unavailable under this allocator\n");
  } else {
    fprintf(stderr, "heap after round one %zu, after round two %zu\n", heap[0], heap[1]);
    CHECK(heap[1] <= heap[0] + 64 * 1024);
  }
  nghttp2_hd_deflate_del(deflater);
  uvg_server_close(server, NULL, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  CHECK_EQ(uv_loop_close(loop), 0);
  TEST_EXIT();
}

/* A client call's life at its edges: every call ends in exactly one
 * on_status and the channel closes, whatever the application does from
 * its callbacks and whatever the peer does. Run one case by name, or all
 * with no argument. */
#include <uvgrpc.h>

#include "client/channel.h"
#include "h2server.h"
#include "test.h"
#include "loop_wait.h"

static uv_loop_t *loop;
static h2s_t srv;

static int run_until(const int *flag, int want, int ms) {
  return wait_count(loop, flag, want, ms);
}
static void run_for(int ms) { wait_ms(loop, ms); }

static uvg_channel_t *channel_opts(int port, const uvg_channel_options_t *o) {
  char target[48];
  snprintf(target, sizeof(target), "127.0.0.1:%d", port);
  uvg_channel_t *ch = NULL;
  CHECK_EQ(uvg_channel_new(loop, target, uvg_insecure_channel_credentials(), o, &ch), 0);
  return ch;
}

static int ch_closed;
static void on_ch_closed(uvg_channel_t *ch, void *d) {
  (void)ch;
  (void)d;
  ch_closed++;
}

typedef struct {
  int metadata, messages, statuses, after_status;
  uvg_status_code_t code;
  char message[128];
  int no_read;
} rec_t;

static void r_metadata(uvg_client_call_t *call, const uvg_metadata_t *md, size_t n,
                       void *ud) {
  rec_t *r = ud;
  (void)call; (void)md; (void)n;
  if (r->statuses) r->after_status++;
  r->metadata++;
}
static void r_message(uvg_client_call_t *call, const uint8_t *msg, size_t len, void *ud) {
  rec_t *r = ud;
  (void)msg; (void)len;
  if (r->statuses) r->after_status++;
  r->messages++;
  if (!r->no_read) uvg_client_call_read(call);
}
static void r_status(uvg_client_call_t *call, const uvg_status_t *st,
                     const uvg_metadata_t *tr, size_t n, void *ud) {
  rec_t *r = ud;
  (void)call; (void)tr; (void)n;
  r->statuses++;
  r->code = st->code;
  snprintf(r->message, sizeof(r->message), "%s", st->message);
  fprintf(stderr, "  status %s: %s\n", uvg_status_code_name(st->code), st->message);
}
static const uvg_client_call_cbs_t rec_cbs = {r_metadata, r_message, r_status};

/* A call that sends "req" and half-closes; it reads when `read`. */
static uvg_client_call_t *request(uvg_channel_t *ch, const uvg_client_call_cbs_t *cbs,
                                  rec_t *r, int read) {
  uvg_client_call_t *c = NULL;
  CHECK_EQ(uvg_client_call_start(ch, "/t.T/M", NULL, cbs, r, &c), 0);
  uvg_client_call_send(c, "req", 3, 0, NULL, NULL);
  uvg_client_call_half_close(c);
  if (read) uvg_client_call_read(c);
  return c;
}


static void answer_ok(h2s_stream_t *st, void *ud) {
  (void)ud;
  h2s_ok(st, "x", 1);
}

/* ---- 1: a round longer than its backoff delay leaves the channel in
 * TRANSIENT_FAILURE for good ---- */
static uv_tcp_t mute_listener;
static int mute_accepts;
static uv_tcp_t mute_conns[64];
static void on_mute_read_alloc(uv_handle_t *h, size_t s, uv_buf_t *b) {
  (void)h;
  static char buf[65536];
  (void)s;
  *b = uv_buf_init(buf, sizeof(buf));
}
static uint64_t mute_first_eof; /* loop time the client first hung up */
static void on_mute_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  (void)b;
  if (n < 0) {
    if (mute_first_eof == 0) mute_first_eof = uv_now(loop);
    uv_close((uv_handle_t *)s, NULL);
  }
}
static void on_mute_conn(uv_stream_t *l, int status) {
  if (status != 0 || mute_accepts == 64) return;
  uv_tcp_t *c = &mute_conns[mute_accepts++];
  uv_tcp_init(loop, c);
  uv_accept(l, (uv_stream_t *)c);
  uv_read_start((uv_stream_t *)c, on_mute_read_alloc, on_mute_read);
}
/* Listens on 127.0.0.1 with `cb`; returns the port. */
static int listen_on(uv_tcp_t *l, uv_connection_cb cb) {
  struct sockaddr_in a;
  struct sockaddr_storage bound;
  int len = sizeof(bound);
  uv_ip4_addr("127.0.0.1", 0, &a);
  uv_tcp_init(loop, l);
  uv_tcp_bind(l, (struct sockaddr *)&a, 0);
  CHECK_EQ(uv_listen((uv_stream_t *)l, 64, cb), 0);
  uv_tcp_getsockname(l, (struct sockaddr *)&bound, &len);
  return ntohs(((struct sockaddr_in *)&bound)->sin_port);
}
static int mute_listen(void) {
  mute_accepts = 0;
  mute_first_eof = 0;
  return listen_on(&mute_listener, on_mute_conn);
}
static void mute_close(void) {
  for (int i = 0; i < mute_accepts; i++)
    if (!uv_is_closing((uv_handle_t *)&mute_conns[i]))
      uv_close((uv_handle_t *)&mute_conns[i], NULL);
  uv_close((uv_handle_t *)&mute_listener, NULL);
  run_for(20); /* the handles are closed before they are used again */
}
static void test_stuck_tf(void) {
  int port = mute_listen();
  uvg_channel_options_t o;
  uvg_channel_options_init(&o);
  o.backoff_initial_ms = 50;
  o.backoff_max_ms = 100;
  o.min_connect_timeout_ms = 300; /* also the handshake timeout */
  uvg_channel_t *ch = channel_opts(port, &o);
  rec_t r = {0};
  uvg_client_call_options_t co = {.timeout_ms = 3000, .wait_for_ready = 1};
  uvg_client_call_t *c;
  CHECK_EQ(uvg_client_call_start(ch, "/t.T/M", &co, &rec_cbs, &r, &c), 0);
  CHECK(run_until(&r.statuses, 1, 5000));
  fprintf(stderr, "  accepts in 3 s: %d, state %s\n", mute_accepts,
          uvg_connectivity_name(uvg_channel_state(ch, 0)));
  CHECK(mute_accepts >= 3); /* ~300 ms per round */
  uvg_channel_close(ch, on_ch_closed, NULL);
  CHECK(run_until(&ch_closed, 1, 3000));
  mute_close();
}

/* An attempt has max(backoff, min_connect_timeout) for the connect and
 * the HTTP/2 handshake together (connection-backoff.md): a server that
 * accepts and never answers is left after that long, not after
 * min_connect_timeout. */
static uint64_t first_attempt_ms(uint32_t backoff_ms, uint32_t min_connect_ms) {
  int port = mute_listen();
  uvg_channel_options_t o;
  uvg_channel_options_init(&o);
  o.backoff_initial_ms = backoff_ms;
  o.backoff_jitter = 0.0001; /* 0 takes the default */
  o.min_connect_timeout_ms = min_connect_ms;
  uvg_channel_t *ch = channel_opts(port, &o);
  uint64_t t0 = uv_now(loop);
  CHECK_EQ(uvg_channel_state(ch, 1), UVG_STATE_CONNECTING);
  int never = 0;
  while (mute_first_eof == 0 && uv_now(loop) - t0 < 3000) run_until(&never, 1, 10);
  uint64_t took = mute_first_eof - t0;
  fprintf(stderr, "  backoff %u, min connect %u: first attempt left after %llu ms\n",
          backoff_ms, min_connect_ms, (unsigned long long)took);
  uvg_channel_close(ch, on_ch_closed, NULL);
  CHECK(run_until(&ch_closed, 1, 3000));
  mute_close();
  return took;
}
static void test_attempt_deadline(void) {
  uint64_t a = first_attempt_ms(800, 200);
  CHECK(a >= 750 && a < 1300);
  ch_closed = 0;
  uint64_t b = first_attempt_ms(100, 400);
  CHECK(b >= 350 && b < 800);
}

/* ---- 2: a call started from on_status of a call the lost connection
 * ended meets the closing connection as ch->conn ---- */
static void drop_first(h2s_stream_t *st, void *ud) {
  (void)ud;
  if (st->index == 0)
    h2s_drop(st->conn);
  else
    h2s_ok(st, "x", 1);
}
static uvg_channel_t *g_ch;
static rec_t r2b;
static void status_then_retry(uvg_client_call_t *call, const uvg_status_t *st,
                              const uvg_metadata_t *tr, size_t n, void *ud) {
  r_status(call, st, tr, n, ud);
  uvg_client_call_options_t co = {.timeout_ms = 2000, .wait_for_ready = 1};
  uvg_client_call_t *c;
  CHECK_EQ(uvg_client_call_start(g_ch, "/t.T/M", &co, &rec_cbs, &r2b, &c), 0);
  uvg_client_call_send(c, "req", 3, 0, NULL, NULL);
  uvg_client_call_half_close(c);
  uvg_client_call_read(c);
}
static void test_retry_in_on_status(void) {
  CHECK_EQ(h2s_start(&srv, loop, drop_first, NULL), 0);
  g_ch = channel_opts(srv.port, NULL);
  static const uvg_client_call_cbs_t cbs = {r_metadata, r_message, status_then_retry};
  rec_t r = {0};
  uvg_client_call_t *c;
  uvg_client_call_options_t co = {.wait_for_ready = 1};
  CHECK_EQ(uvg_client_call_start(g_ch, "/t.T/M", &co, &cbs, &r, &c), 0);
  uvg_client_call_send(c, "req", 3, 0, NULL, NULL);
  uvg_client_call_half_close(c);
  uvg_client_call_read(c);
  CHECK(run_until(&r2b.statuses, 1, 3000));
  CHECK_EQ(r.code, UVG_STATUS_UNAVAILABLE);
  CHECK_EQ(r2b.code, UVG_STATUS_OK); /* wait-for-ready: must wait for READY */
  uvg_channel_close(g_ch, on_ch_closed, NULL);
  CHECK(run_until(&ch_closed, 1, 3000));
  h2s_close(&srv);
}

/* ---- 3: the server's status with unread messages: neither cancel nor the
 * channel's close ends the call ---- */
static void test_unread_then_close(void) {
  CHECK_EQ(h2s_start(&srv, loop, answer_ok, NULL), 0);
  uvg_channel_t *ch = channel_opts(srv.port, NULL);
  rec_t r = {0};
  uvg_client_call_t *c;
  uvg_client_call_options_t co = {.timeout_ms = 500};
  CHECK_EQ(uvg_client_call_start(ch, "/t.T/M", &co, &rec_cbs, &r, &c), 0);
  uvg_client_call_send(c, "req", 3, 0, NULL, NULL);
  uvg_client_call_half_close(c);
  /* no read: the application got busy */
  run_for(1000); /* past the deadline, too */
  CHECK_EQ(r.statuses, 0);
  int rc = uvg_client_call_cancel(c);
  fprintf(stderr, "  cancel: %d\n", rc);
  run_for(100);
  fprintf(stderr, "  statuses after cancel: %d\n", r.statuses);
  /* the server's OK, but the application did not get the response */
  CHECK_EQ(rc, 0);
  CHECK_EQ(r.code, UVG_STATUS_CANCELLED);
  uvg_channel_close(ch, on_ch_closed, NULL);
  CHECK(run_until(&ch_closed, 1, 3000));
  CHECK_EQ(r.statuses, 1);
  h2s_close(&srv);
}

/* ---- 4: a server's status while the client has not half-closed (no
 * RST_STREAM from the server): the stream stays half-open, the call is
 * never freed ---- */
static void test_status_before_half_close(void) {
  CHECK_EQ(h2s_start(&srv, loop, answer_ok, NULL), 0);
  srv.answer_on_headers = 1;
  uvg_channel_t *ch = channel_opts(srv.port, NULL);
  rec_t r = {0};
  uvg_client_call_t *c;
  CHECK_EQ(uvg_client_call_start(ch, "/t.T/M", NULL, &rec_cbs, &r, &c), 0);
  uvg_client_call_send(c, "req", 3, 0, NULL, NULL);
  uvg_client_call_read(c);
  CHECK(run_until(&r.statuses, 1, 3000));
  CHECK_EQ(r.code, UVG_STATUS_OK);
  run_for(500);
  fprintf(stderr, "  server stream: closed %d, got_rst %d, half_closed %d\n",
          srv.streams[0].closed, srv.streams[0].got_rst, srv.streams[0].half_closed);
  CHECK(srv.streams[0].closed); /* the client never ends its side */
  fprintf(stderr, "  ch->ncalls %u, sched holds %u\n", ch->ncalls, ch->sched->holds);
  CHECK_EQ(ch->ncalls, 0);
  uvg_channel_close(ch, on_ch_closed, NULL);
  CHECK(run_until(&ch_closed, 1, 3000));
  h2s_close(&srv);
}

/* ---- 5: uvg_channel_close() inside an interceptor's on_start ---- */
static uvg_channel_t *g_ch5;
static int close_in_start(uvg_client_call_t *call, void *data, uvg_status_t *rej) {
  (void)call; (void)data; (void)rej;
  uvg_channel_close(g_ch5, on_ch_closed, NULL);
  return 0;
}
static void test_close_in_on_start(void) {
  CHECK_EQ(h2s_start(&srv, loop, answer_ok, NULL), 0);
  g_ch5 = channel_opts(srv.port, NULL);
  uvg_client_interceptor_t ic = {close_in_start, NULL, NULL, NULL};
  CHECK_EQ(uvg_channel_add_interceptor(g_ch5, &ic, NULL), 0);
  rec_t r = {0};
  uvg_client_call_t *c;
  CHECK_EQ(uvg_client_call_start(g_ch5, "/t.T/M", NULL, &rec_cbs, &r, &c), 0);
  CHECK(run_until(&r.statuses, 1, 2000));
  CHECK(run_until(&ch_closed, 1, 2000));
  h2s_close(&srv);
}

/* ---- 6: a watch re-armed with the state it got, SHUTDOWN included ---- */
static int watch_runs;
static void rearm(uvg_channel_t *ch, uvg_connectivity_t st, void *ud) {
  (void)ud;
  watch_runs++;
  fprintf(stderr, "  watch: %s -> rearm %d\n", uvg_connectivity_name(st),
          uvg_channel_watch_state(ch, st, rearm, NULL));
}
static void test_watch_rearm_shutdown(void) {
  CHECK_EQ(h2s_start(&srv, loop, answer_ok, NULL), 0);
  uvg_channel_t *ch = channel_opts(srv.port, NULL);
  CHECK_EQ(uvg_channel_watch_state(ch, UVG_STATE_IDLE, rearm, NULL), 0);
  uvg_channel_close(ch, on_ch_closed, NULL);
  CHECK(run_until(&ch_closed, 1, 2000));
  h2s_close(&srv);
}

/* ---- 7: timeout_ms = UVG_INFINITE ---- */
static void test_infinite_timeout(void) {
  CHECK_EQ(h2s_start(&srv, loop, answer_ok, NULL), 0);
  uvg_channel_t *ch = channel_opts(srv.port, NULL);
  rec_t r = {0};
  uvg_client_call_t *c;
  uvg_client_call_options_t co = {.timeout_ms = UVG_INFINITE};
  CHECK_EQ(uvg_client_call_start(ch, "/t.T/M", &co, &rec_cbs, &r, &c), 0);
  uvg_client_call_send(c, "req", 3, 0, NULL, NULL);
  uvg_client_call_half_close(c);
  uvg_client_call_read(c);
  CHECK(run_until(&r.statuses, 1, 3000));
  fprintf(stderr, "  grpc-timeout sent: \"%s\"\n", srv.streams[0].timeout);
  CHECK(strcmp(srv.streams[0].timeout, "1m") != 0);
  uvg_channel_close(ch, on_ch_closed, NULL);
  CHECK(run_until(&ch_closed, 1, 3000));
  h2s_close(&srv);
}

/* more exactly-once probes */
static uvg_channel_t *g_ch8;
static rec_t r8[4];
static void cancel_meta(uvg_client_call_t *call, const uvg_metadata_t *md, size_t n, void *ud) {
  r_metadata(call, md, n, ud);
  CHECK_EQ(uvg_client_call_cancel(call), 0);
}
static void close_msg(uvg_client_call_t *call, const uint8_t *m, size_t l, void *ud) {
  r_message(call, m, l, ud);
  uvg_channel_close(g_ch8, on_ch_closed, NULL);
}
static void close_status(uvg_client_call_t *call, const uvg_status_t *st,
                         const uvg_metadata_t *tr, size_t n, void *ud) {
  r_status(call, st, tr, n, ud);
  uvg_channel_close(g_ch8, on_ch_closed, NULL);
  CHECK_EQ(uvg_client_call_cancel(call), UVG_ECANCELED);
  CHECK_EQ(uvg_client_call_read(call), UVG_ECANCELED);
}
static void slow_ok(h2s_stream_t *st) { h2s_ok(st, "x", 1); }
static void answer_later(h2s_stream_t *st, void *ud) {
  (void)ud;
  h2s_headers(st, (const char *const[]){":status", "200", "content-type", "application/grpc", NULL}, 0);
  h2s_message(st, 0, "y", 1);
  h2s_later(st, 50, slow_ok);
}
static void start8(const uvg_client_call_cbs_t *cbs, rec_t *r) {
  uvg_client_call_t *c;
  memset(r, 0, sizeof(*r));
  CHECK_EQ(uvg_client_call_start(g_ch8, "/t.T/M", NULL, cbs, r, &c), 0);
  uvg_client_call_send(c, "req", 3, 0, NULL, NULL);
  uvg_client_call_half_close(c);
  uvg_client_call_read(c);
}
static void test_callbacks_mix(void) {
  CHECK_EQ(h2s_start(&srv, loop, answer_later, NULL), 0);
  g_ch8 = channel_opts(srv.port, NULL);
  static const uvg_client_call_cbs_t a = {cancel_meta, r_message, r_status};
  static const uvg_client_call_cbs_t b = {r_metadata, close_msg, r_status};
  static const uvg_client_call_cbs_t c = {r_metadata, r_message, close_status};
  start8(&a, &r8[0]);
  start8(&c, &r8[1]);
  start8(&b, &r8[2]);
  start8(&rec_cbs, &r8[3]);
  CHECK(run_until(&ch_closed, 1, 3000));
  for (int i = 0; i < 4; i++) {
    CHECK_EQ(r8[i].statuses, 1);
    CHECK_EQ(r8[i].after_status, 0);
  }
  run_for(50);
  h2s_close(&srv);
}
static int last_status_closes;
static void close_in_last_status(uvg_client_call_t *call, const uvg_status_t *st,
                         const uvg_metadata_t *tr, size_t n, void *ud) {
  r_status(call, st, tr, n, ud);
  if (++last_status_closes == 3) uvg_channel_close(g_ch8, on_ch_closed, NULL);
}
static void test_close_in_last_status(void) {
  CHECK_EQ(h2s_start(&srv, loop, answer_ok, NULL), 0);
  g_ch8 = channel_opts(srv.port, NULL);
  static const uvg_client_call_cbs_t c = {r_metadata, r_message, close_in_last_status};
  for (int i = 0; i < 3; i++) start8(&c, &r8[i]);
  CHECK(run_until(&ch_closed, 1, 3000));
  for (int i = 0; i < 3; i++) CHECK_EQ(r8[i].statuses, 1);
  h2s_close(&srv);
  uv_run(loop, UV_RUN_DEFAULT);
}
static void close_in_watch(uvg_channel_t *ch, uvg_connectivity_t st, void *ud) {
  (void)ud;
  fprintf(stderr, "  watch %s\n", uvg_connectivity_name(st));
  if (st == UVG_STATE_READY) uvg_channel_close(ch, on_ch_closed, NULL);
  else uvg_channel_watch_state(ch, st, close_in_watch, NULL);
}
static void never_answer(h2s_stream_t *st, void *ud) { (void)st; (void)ud; }
static void test_close_in_watch(void) {
  CHECK_EQ(h2s_start(&srv, loop, never_answer, NULL), 0);
  g_ch8 = channel_opts(srv.port, NULL);
  uvg_channel_watch_state(g_ch8, UVG_STATE_IDLE, close_in_watch, NULL);
  for (int i = 0; i < 3; i++) start8(&rec_cbs, &r8[i]);
  CHECK(run_until(&ch_closed, 1, 3000));
  for (int i = 0; i < 3; i++) CHECK_EQ(r8[i].statuses, 1);
  h2s_close(&srv);
  uv_run(loop, UV_RUN_DEFAULT);
}
/* one unread call takes the whole connection window */
static void big_or_small(h2s_stream_t *st, void *ud) {
  (void)ud;
  if (strcmp(st->path, "/t.T/Big") == 0) {
    size_t one = 5 + (1 << 20), n = 20;
    uint8_t *b = calloc(n, one);
    for (size_t i = 0; i < n; i++) b[i * one + 2] = 0x10; /* 1 MiB */
    h2s_headers(st, (const char *const[]){":status", "200", "content-type", "application/grpc", NULL}, 0);
    h2s_data(st, b, n * one, 0);
    free(b);
  } else {
    h2s_ok(st, "x", 1);
  }
}
static void test_conn_window_starved(void) {
  CHECK_EQ(h2s_start(&srv, loop, big_or_small, NULL), 0);
  uvg_channel_options_t o;
  uvg_channel_options_init(&o);
  o.initial_window_size = 16 * 1024 * 1024; /* as large as the connection's */
  uvg_channel_t *ch = channel_opts(srv.port, &o);
  rec_t a = {0}, b = {0};
  uvg_client_call_t *c;
  a.no_read = 1; /* reads one message, then pauses */
  CHECK_EQ(uvg_client_call_start(ch, "/t.T/Big", NULL, &rec_cbs, &a, &c), 0);
  uvg_client_call_half_close(c);
  uvg_client_call_read(c);
  CHECK(run_until(&a.messages, 1, 3000));
  run_for(300);
  uvg_client_call_options_t co = {.timeout_ms = 1500};
  CHECK_EQ(uvg_client_call_start(ch, "/t.T/Small", &co, &rec_cbs, &b, &c), 0);
  uvg_client_call_half_close(c);
  uvg_client_call_read(c);
  CHECK(run_until(&b.statuses, 1, 3000));
  CHECK_EQ(b.code, UVG_STATUS_OK);
  fprintf(stderr, "  small call: metadata %d messages %d; big call read %d\n", b.metadata, b.messages, a.messages);
  uvg_channel_close(ch, on_ch_closed, NULL);
  CHECK(run_until(&ch_closed, 1, 3000));
  h2s_close(&srv);
}
/* The stream window a channel asks for grows with what one round trip
 * carries (the bandwidth-delay product), unless the application set it. */
static uint32_t window_after_big_read(const uvg_channel_options_t *o) {
  CHECK_EQ(h2s_start(&srv, loop, big_or_small, NULL), 0);
  uvg_channel_t *ch = channel_opts(srv.port, o);
  rec_t a = {0};
  uvg_client_call_t *c;
  CHECK_EQ(uvg_client_call_start(ch, "/t.T/Big", NULL, &rec_cbs, &a, &c), 0);
  uvg_client_call_half_close(c);
  uvg_client_call_read(c);
  CHECK(run_until(&a.messages, 20, 10000));
  run_for(50); /* the last SETTINGS, if any, arrives */
  uint32_t w = nghttp2_session_get_remote_settings(
      srv.conns[0].h2, NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE);
  fprintf(stderr, "  stream window %u after 20 MiB, %d pings\n", w,
          srv.conns[0].pings_received);
  uvg_client_call_cancel(c);
  CHECK(run_until(&a.statuses, 1, 3000));
  uvg_channel_close(ch, on_ch_closed, NULL);
  CHECK(run_until(&ch_closed, 1, 3000));
  h2s_close(&srv);
  return w;
}
static void test_window_grows(void) {
  /* How far it grows depends on the round trips measured (a busy machine
   * makes them noisy); that it grows does not. */
  CHECK(window_after_big_read(NULL) > 65535u);
  ch_closed = 0;
  uvg_channel_options_t o;
  uvg_channel_options_init(&o);
  o.initial_window_size = 65535;
  CHECK_EQ(window_after_big_read(&o), 65535u);
}
/* trailers-only: its metadata is the trailers */
static char g_trail[16];
static size_t g_ntr;
static void trail_status(uvg_client_call_t *call, const uvg_status_t *st,
                         const uvg_metadata_t *tr, size_t n, void *ud) {
  r_status(call, st, tr, n, ud);
  g_ntr = n;
  for (size_t i = 0; i < n; i++)
    if (strcmp(tr[i].key, "x-trail") == 0)
      snprintf(g_trail, sizeof(g_trail), "%.*s", (int)tr[i].value_len, (const char *)tr[i].value);
}
static void trailers_only(h2s_stream_t *st, void *ud) {
  (void)ud;
  h2s_headers(st, (const char *const[]){":status", "200", "content-type", "application/grpc",
                                        "grpc-status", "5", "x-trail", "t", NULL}, 1);
}
static void test_trailers_only_metadata(void) {
  CHECK_EQ(h2s_start(&srv, loop, trailers_only, NULL), 0);
  uvg_channel_t *ch = channel_opts(srv.port, NULL);
  static const uvg_client_call_cbs_t cbs = {r_metadata, r_message, trail_status};
  rec_t r = {0};
  uvg_client_call_t *c;
  CHECK_EQ(uvg_client_call_start(ch, "/t.T/M", NULL, &cbs, &r, &c), 0);
  uvg_client_call_half_close(c);
  uvg_client_call_read(c);
  CHECK(run_until(&r.statuses, 1, 3000));
  fprintf(stderr, "  NOT_FOUND trailers-only: %zu trailers, x-trail \"%s\", on_metadata %d\n", g_ntr, g_trail, r.metadata);
  CHECK_STR(g_trail, "t");
  uvg_channel_close(ch, on_ch_closed, NULL);
  CHECK(run_until(&ch_closed, 1, 3000));
  h2s_close(&srv);
}
static void close_during(const char *target, int ms) {
  uvg_channel_t *ch = NULL;
  CHECK_EQ(uvg_channel_new(loop, target, uvg_insecure_channel_credentials(), NULL, &ch), 0);
  rec_t r = {0};
  uvg_client_call_t *c;
  uvg_client_call_options_t co = {.wait_for_ready = 1};
  CHECK_EQ(uvg_client_call_start(ch, "/t.T/M", &co, &rec_cbs, &r, &c), 0);
  run_for(ms);
  int before = ch_closed;
  uvg_channel_close(ch, on_ch_closed, NULL);
  CHECK(run_until(&ch_closed, before + 1, 5000));
  CHECK_EQ(r.statuses, 1);
}
static void test_close_while_busy(void) {
  close_during("dns:///localhost:1", 0);
  close_during("dns:///localhost:1", 5);
  close_during("ipv4:127.0.0.1:1,127.0.0.1:1", 30);
  close_during("unix:/tmp/uvg-no-such-socket.sock", 5);
  close_during("localhost:1", 1500);
  uv_run(loop, UV_RUN_DEFAULT);
  CHECK_EQ(uv_loop_close(loop), 0);
}
/* a transparent retry in flight when the channel closes */
static uvg_channel_t *g_ch9;
static void a_status_closes(uvg_client_call_t *call, const uvg_status_t *st,
                            const uvg_metadata_t *tr, size_t n, void *ud) {
  r_status(call, st, tr, n, ud);
  uvg_channel_close(g_ch9, on_ch_closed, NULL);
}
static void answer_a_and_goaway(h2s_stream_t *st, void *ud) {
  (void)ud;
  if (st->index != 1) return;
  h2s_stream_t *a = &st->srv->streams[0];
  h2s_headers(a, (const char *const[]){":status", "200", "content-type", "application/grpc",
                                       "grpc-status", "0", NULL}, 1);
  h2s_goaway(st->conn, a->id, NGHTTP2_NO_ERROR); /* B was not processed */
}
static void test_close_during_retry(void) {
  CHECK_EQ(h2s_start(&srv, loop, answer_a_and_goaway, NULL), 0);
  g_ch9 = channel_opts(srv.port, NULL);
  static const uvg_client_call_cbs_t acbs = {r_metadata, r_message, a_status_closes};
  rec_t a = {0}, b = {0};
  uvg_client_call_t *c;
  CHECK_EQ(uvg_client_call_start(g_ch9, "/t.T/A", NULL, &acbs, &a, &c), 0);
  uvg_client_call_half_close(c);
  uvg_client_call_read(c);
  CHECK(run_until(&srv.nstreams, 1, 2000));
  run_for(50);
  CHECK_EQ(uvg_client_call_start(g_ch9, "/t.T/B", NULL, &rec_cbs, &b, &c), 0);
  uvg_client_call_send(c, "req", 3, 0, NULL, NULL);
  uvg_client_call_half_close(c);
  uvg_client_call_read(c);
  CHECK(run_until(&a.statuses, 1, 2000));
  CHECK(run_until(&b.statuses, 1, 2000));
  CHECK(run_until(&ch_closed, 1, 2000));
  h2s_close(&srv);
}
/* a peer that stops reading its socket: the deadline's status waits for
 * the write in flight */
static void grant_and_stop_reading(h2s_stream_t *st, void *ud) {
  (void)ud;
  nghttp2_settings_entry iv[1] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 0x7fffffff}};
  nghttp2_submit_settings(st->conn->h2, NGHTTP2_FLAG_NONE, iv, 1);
  nghttp2_session_set_local_window_size(st->conn->h2, NGHTTP2_FLAG_NONE, 0, 0x7fffffff);
  h2s_headers(st, (const char *const[]){":status", "200", "content-type", "application/grpc", NULL}, 0);
  uv_read_stop((uv_stream_t *)&st->conn->tcp);
}
static void test_deadline_hung_peer(void) {
  CHECK_EQ(h2s_start(&srv, loop, grant_and_stop_reading, NULL), 0);
  srv.answer_on_headers = 1;
  uvg_channel_t *ch = channel_opts(srv.port, NULL);
  rec_t r = {0};
  uvg_client_call_t *c;
  uvg_client_call_options_t co = {.timeout_ms = 500};
  CHECK_EQ(uvg_client_call_start(ch, "/t.T/M", &co, &rec_cbs, &r, &c), 0);
  size_t n = 64u << 20;
  uint8_t *big = calloc(1, n);
  CHECK_EQ(uvg_client_call_send(c, big, n, 0, NULL, NULL), 0); /* copied */
  free(big);
  uvg_client_call_read(c);
  CHECK(run_until(&r.statuses, 1, 3000)); /* DEADLINE_EXCEEDED at 500 ms */
  fprintf(stderr, "  statuses %d\n", r.statuses);
  uvg_channel_close(ch, on_ch_closed, NULL);
  CHECK(run_until(&ch_closed, 1, 3000));
  h2s_close(&srv);
}
/* ---- cancel once the server's status is known: a no-op (grpc-go,
 * grpc-js); on_status reports the server's status, once ---- */
static void answer_not_found(h2s_stream_t *st, void *ud) {
  static const char *const head[] = {":status", "200", "content-type",
                                     "application/grpc", NULL};
  static const char *const tr[] = {"grpc-status", "5", "grpc-message", "nope", NULL};
  (void)ud;
  h2s_headers(st, head, 0);
  h2s_message(st, 0, "x", 1);
  h2s_headers(st, tr, 1);
}
static int cancel_rc;
static uv_timer_t cancel_timer;
static void cancel_later(uv_timer_t *t) { cancel_rc = uvg_client_call_cancel(t->data); }
/* in on_message: cancel at once, or from a timer, the next loop turn */
static int cancel_how;
static void c_message(uvg_client_call_t *call, const uint8_t *msg, size_t len,
                      void *ud) {
  rec_t *r = ud;
  (void)msg;
  (void)len;
  r->messages++;
  if (cancel_how == 0) {
    cancel_rc = uvg_client_call_cancel(call);
  } else {
    cancel_timer.data = call;
    uv_timer_start(&cancel_timer, cancel_later, 0, 0);
  }
}
static const uvg_client_call_cbs_t cancel_cbs = {r_metadata, c_message, r_status};
static void test_cancel_after_status(void) {
  CHECK_EQ(h2s_start(&srv, loop, answer_not_found, NULL), 0);
  uvg_channel_t *ch = channel_opts(srv.port, NULL);
  uv_timer_init(loop, &cancel_timer);
  /* 0: the status waits for the message to be read, and on_message
   * cancels; 1: the status is queued when the cancel comes; 2: the
   * message is never read, the cancel drops it */
  for (cancel_how = 0; cancel_how < 3; cancel_how++) {
    rec_t r = {0};
    uvg_client_call_t *c = request(ch, &cancel_cbs, &r, 0);
    CHECK(run_until(&srv.nstreams, cancel_how + 1, 3000));
    run_for(100); /* the response and its trailers are in */
    CHECK_EQ(r.statuses, 0);
    cancel_rc = 1;
    if (cancel_how < 2)
      CHECK_EQ(uvg_client_call_read(c), 0);
    else
      cancel_rc = uvg_client_call_cancel(c);
    CHECK(run_until(&r.statuses, 1, 3000));
    run_for(50);
    CHECK_EQ(r.messages, cancel_how < 2 ? 1 : 0);
    CHECK_EQ(cancel_rc, UVG_ECANCELED);
    CHECK_EQ(r.statuses, 1);
    CHECK_EQ(r.code, UVG_STATUS_NOT_FOUND);
    CHECK_STR(r.message, "nope");
  }
  uv_close((uv_handle_t *)&cancel_timer, NULL);
  uvg_channel_close(ch, on_ch_closed, NULL);
  CHECK(run_until(&ch_closed, ch_closed + 1, 3000));
  h2s_close(&srv);
}

/* ---- a server that answers every connection with SETTINGS then GOAWAY:
 * the channel reconnects with backoff, not each round trip ---- */
static uv_tcp_t ga_listener;
static int ga_accepts, ga_open;
static const uint8_t settings_goaway[] = {
    0, 0, 0, 0x4, 0, 0, 0, 0, 0,                /* SETTINGS, empty */
    0, 0, 8, 0x7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* GOAWAY 0 NO_ERROR */
};
static void ga_closed(uv_handle_t *h) {
  free(h);
  ga_open--;
}
static void ga_alloc(uv_handle_t *h, size_t s, uv_buf_t *b) {
  static char buf[4096];
  (void)h;
  (void)s;
  *b = uv_buf_init(buf, sizeof(buf));
}
static void ga_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  (void)b;
  if (n < 0 && !uv_is_closing((uv_handle_t *)s)) uv_close((uv_handle_t *)s, ga_closed);
}
static void ga_written(uv_write_t *w, int status) {
  (void)status;
  free(w);
}
static void ga_conn(uv_stream_t *l, int status) {
  if (status != 0) return;
  uv_tcp_t *c = malloc(sizeof(*c));
  uv_tcp_init(loop, c);
  ga_open++;
  if (uv_accept(l, (uv_stream_t *)c) != 0) {
    uv_close((uv_handle_t *)c, ga_closed);
    return;
  }
  ga_accepts++;
  uv_write_t *w = malloc(sizeof(*w));
  uv_buf_t b = uv_buf_init((char *)settings_goaway, sizeof(settings_goaway));
  uv_write(w, (uv_stream_t *)c, &b, 1, ga_written);
  uv_read_start((uv_stream_t *)c, ga_alloc, ga_read);
}
static void test_goaway_server_backoff(void) {
  ga_accepts = 0;
  int port = listen_on(&ga_listener, ga_conn);
  uvg_channel_options_t o;
  uvg_channel_options_init(&o);
  o.backoff_initial_ms = 100;
  uvg_channel_t *ch = channel_opts(port, &o);
  /* a call that waits for READY keeps the channel connecting */
  rec_t r = {0};
  uvg_client_call_t *c;
  uvg_client_call_options_t co = {.timeout_ms = 2000, .wait_for_ready = 1};
  CHECK_EQ(uvg_client_call_start(ch, "/t.T/M", &co, &rec_cbs, &r, &c), 0);
  CHECK(run_until(&r.statuses, 1, 4000));
  /* backoff 100 ms x 1.6 (+-20%) from the second connection: about 6 in
   * 2 s; a new connection each round trip would be thousands */
  fprintf(stderr, "  %d connections in 2 s\n", ga_accepts);
  CHECK(ga_accepts >= 3);
  CHECK(ga_accepts <= 10);
  CHECK_EQ(r.code, UVG_STATUS_DEADLINE_EXCEEDED);
  uvg_channel_close(ch, on_ch_closed, NULL);
  CHECK(run_until(&ch_closed, ch_closed + 1, 3000));
  uv_close((uv_handle_t *)&ga_listener, NULL);
  run_for(50); /* the client's side closed: so did ours */
  CHECK_EQ(ga_open, 0);
}

/* ---- a connection that served a call, then GOAWAY with an error code
 * while idle: the subchannel goes IDLE, not TRANSIENT_FAILURE (that is
 * for a server that fails before any answer: a TLS port), and the next
 * call connects at once ---- */
static void goaway_error(h2s_stream_t *st) {
  h2s_goaway(st->conn, st->id, NGHTTP2_INTERNAL_ERROR);
}
static void answer_then_goaway(h2s_stream_t *st, void *ud) {
  (void)ud;
  h2s_ok(st, "x", 1);
  h2s_later(st, 50, goaway_error);
}
static void test_goaway_error_after_calls(void) {
  CHECK_EQ(h2s_start(&srv, loop, answer_then_goaway, NULL), 0);
  uvg_channel_t *ch = channel_opts(srv.port, NULL);
  rec_t r = {0};
  request(ch, &rec_cbs, &r, 1);
  CHECK(run_until(&r.statuses, 1, 3000));
  CHECK_EQ(r.code, UVG_STATUS_OK);
  run_for(150); /* the GOAWAY is in */
  /* the next call, not waiting for READY, goes on a new connection */
  rec_t r2 = {0};
  uv_update_time(loop);
  uint64_t t0 = uv_now(loop);
  request(ch, &rec_cbs, &r2, 1);
  CHECK(run_until(&r2.statuses, 1, 3000));
  uint64_t took = uv_now(loop) - t0;
  fprintf(stderr, "  the next call: %llu ms\n", (unsigned long long)took);
  CHECK_EQ(r2.code, UVG_STATUS_OK);
  CHECK(took < 500); /* no backoff (1 s) */
  CHECK_EQ(srv.nconns, 2);
  uvg_channel_close(ch, on_ch_closed, NULL);
  CHECK(run_until(&ch_closed, ch_closed + 1, 3000));
  h2s_close(&srv);
}

int main(int argc, char **argv) {
  loop = uv_default_loop();
  const char *t = argc > 1 ? argv[1] : "";
#define CASE(n) if (*t == '\0' || strcmp(t, #n) == 0) { ch_closed = 0; RUN(test_##n); }
  CASE(stuck_tf);
  CASE(attempt_deadline);
  CASE(retry_in_on_status);
  CASE(unread_then_close);
  CASE(status_before_half_close);
  CASE(close_in_on_start);
  CASE(watch_rearm_shutdown);
  CASE(infinite_timeout);
  CASE(callbacks_mix);
  CASE(close_in_last_status);
  CASE(close_in_watch);
  CASE(conn_window_starved);
  CASE(window_grows);
  CASE(trailers_only_metadata);
  CASE(close_during_retry);
  CASE(deadline_hung_peer);
  CASE(cancel_after_status);
  CASE(goaway_server_backoff);
  CASE(goaway_error_after_calls);
  CASE(close_while_busy); /* last: it closes the loop */
  TEST_EXIT();
}

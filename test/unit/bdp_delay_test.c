/* The channel's receive window on a link with delay: a relay in the test
 * holds every chunk DELAY_MS each way (a 2 * DELAY_MS round trip on
 * 127.0.0.1). With the dynamic window the stream window grows with the
 * measured bandwidth-delay product and a download is several times faster
 * than with HTTP/2's fixed 64 KiB window; with several streams open, what
 * the server may send ahead of the calls' reads (the sum of the stream
 * windows) stays within max_stream_windows_per_connection, and a burst of
 * calls costs the channel a few SETTINGS, not two a call. */
#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "test.h"
#include "uvgrpc.h"

#define DELAY_MS 25
#define MSG 16384
#define AHEAD 4 /* messages a server call keeps queued */
#define DOWNLOAD (3u * 1024 * 1024)
#define STREAMS 4
#define CAP (1u * 1024 * 1024)

static uv_loop_t loop;

/* ---- the delaying relay: client <-> relay <-> server ---- */

typedef struct chunk_s {
  struct chunk_s *next;
  uint64_t due;
  uv_write_t req;
  uv_buf_t buf;
} chunk_t;

typedef struct pipe_s pipe_t;
typedef struct {
  uv_tcp_t from_client, to_server;
  uv_connect_t connect;
  pipe_t *up, *down;
  int closed;
} relay_conn_t;

/* One direction: what `src` reads is written to `dst` DELAY_MS later. */
struct pipe_s {
  uv_stream_t *src, *dst;
  uv_timer_t timer;
  chunk_t *head, *tail;
  relay_conn_t *rc;
};

static uv_tcp_t relay_listener;
static struct sockaddr_in server_addr;

static void on_written(uv_write_t *req, int status) {
  chunk_t *ch = req->data;
  (void)status;
  free(ch->buf.base);
  free(ch);
}

static void on_due(uv_timer_t *t) {
  pipe_t *p = t->data;
  uint64_t now = uv_now(&loop);
  while (p->head != NULL && p->head->due <= now) {
    chunk_t *ch = p->head;
    p->head = ch->next;
    if (p->head == NULL) p->tail = NULL;
    ch->req.data = ch;
    if (uv_write(&ch->req, p->dst, &ch->buf, 1, on_written) != 0) {
      free(ch->buf.base);
      free(ch);
    }
  }
  if (p->head != NULL) uv_timer_start(&p->timer, on_due, p->head->due - now, 0);
}

static void relay_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)h;
  (void)hint;
  buf->base = malloc(65536);
  buf->len = buf->base ? 65536 : 0;
}

static void relay_close(relay_conn_t *rc);

static void on_relay_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  pipe_t *p = s->data;
  if (n <= 0) {
    free(buf->base);
    if (n < 0) relay_close(p->rc);
    return;
  }
  chunk_t *ch = calloc(1, sizeof(*ch));
  ch->buf = uv_buf_init(buf->base, (unsigned)n);
  ch->due = uv_now(&loop) + DELAY_MS;
  if (p->tail != NULL)
    p->tail->next = ch;
  else
    p->head = ch;
  p->tail = ch;
  if (!uv_is_active((uv_handle_t *)&p->timer))
    uv_timer_start(&p->timer, on_due, DELAY_MS, 0);
}

static void on_relay_handle_closed(uv_handle_t *h) {
  relay_conn_t *rc = h->data;
  if (++rc->closed < 4) return;
  for (int i = 0; i < 2; i++) {
    pipe_t *p = i ? rc->down : rc->up;
    while (p->head != NULL) {
      chunk_t *ch = p->head;
      p->head = ch->next;
      free(ch->buf.base);
      free(ch);
    }
    free(p);
  }
  free(rc);
}

static void relay_close(relay_conn_t *rc) {
  if (uv_is_closing((uv_handle_t *)&rc->from_client)) return;
  rc->from_client.data = rc->to_server.data = rc;
  rc->up->timer.data = rc->down->timer.data = rc;
  uv_close((uv_handle_t *)&rc->from_client, on_relay_handle_closed);
  uv_close((uv_handle_t *)&rc->to_server, on_relay_handle_closed);
  uv_close((uv_handle_t *)&rc->up->timer, on_relay_handle_closed);
  uv_close((uv_handle_t *)&rc->down->timer, on_relay_handle_closed);
}

static pipe_t *pipe_new(relay_conn_t *rc, uv_tcp_t *src, uv_tcp_t *dst) {
  pipe_t *p = calloc(1, sizeof(*p));
  p->src = (uv_stream_t *)src;
  p->dst = (uv_stream_t *)dst;
  p->rc = rc;
  uv_timer_init(&loop, &p->timer);
  p->timer.data = p;
  return p;
}

static void on_server_connected(uv_connect_t *req, int status) {
  relay_conn_t *rc = req->data;
  if (status != 0) {
    relay_close(rc);
    return;
  }
  rc->from_client.data = rc->up;
  rc->to_server.data = rc->down;
  uv_read_start((uv_stream_t *)&rc->from_client, relay_alloc, on_relay_read);
  uv_read_start((uv_stream_t *)&rc->to_server, relay_alloc, on_relay_read);
}

static void on_relay_accept(uv_stream_t *l, int status) {
  if (status != 0) return;
  relay_conn_t *rc = calloc(1, sizeof(*rc));
  uv_tcp_init(&loop, &rc->from_client);
  uv_tcp_init(&loop, &rc->to_server);
  uv_accept(l, (uv_stream_t *)&rc->from_client);
  uv_tcp_nodelay(&rc->from_client, 1);
  uv_tcp_nodelay(&rc->to_server, 1);
  rc->up = pipe_new(rc, &rc->from_client, &rc->to_server);
  rc->down = pipe_new(rc, &rc->to_server, &rc->from_client);
  rc->connect.data = rc;
  uv_tcp_connect(&rc->connect, &rc->to_server, (struct sockaddr *)&server_addr,
                 on_server_connected);
}

/* ---- the server: /bdp.Test/Download sends MSG-byte messages ---- */

static uint8_t payload[MSG];
static uint64_t server_sent; /* message bytes handed to the socket */

typedef struct {
  uint32_t left; /* messages still to queue; UINT32_MAX: until cancelled */
  unsigned queued;
  int ended;
} download_t;

static void send_more(uvg_call_t *call, download_t *d);

static void on_sent(uvg_call_t *call, int status, void *data) {
  download_t *d = data;
  d->queued--;
  if (status != 0) return;
  server_sent += MSG;
  send_more(call, d);
}

static void send_more(uvg_call_t *call, download_t *d) {
  while (!d->ended && d->queued < AHEAD && d->left > 0) {
    if (uvg_call_send(call, payload, MSG, 0, on_sent, d) != 0) return;
    d->queued++;
    if (d->left != UINT32_MAX) d->left--;
  }
  if (!d->ended && d->left == 0 && d->queued == 0) {
    d->ended = 1;
    uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
  }
}

static void on_download(uvg_call_t *call, const uint8_t *msg, size_t len) {
  download_t *d = calloc(1, sizeof(*d));
  uint32_t bytes = 0;
  for (size_t i = 0; i < len && i < 4; i++) bytes = bytes << 8 | msg[i];
  d->left = bytes ? bytes / MSG : UINT32_MAX;
  uvg_call_set_data(call, d);
  send_more(call, d);
}

static void on_download_cancel(uvg_call_t *call, const uvg_status_t *st) {
  download_t *d = uvg_call_get_data(call);
  (void)st;
  d->ended = 1;
  uvg_call_finish(call, UVG_STATUS_CANCELLED, NULL, NULL, 0);
}

static void on_download_done(uvg_call_t *call, const uvg_status_t *st) {
  (void)st;
  free(uvg_call_get_data(call));
}

/* ---- the window, as the transport's trace reports it ---- */

static uint32_t window_max;  /* the largest stream window set */
static unsigned window_changes; /* SETTINGS changing the window */
static uint64_t window_over; /* a window times its streams past CAP */

static void on_log(uvg_log_level_t level, const char *line, void *data) {
  unsigned from, to, n;
  const char *p = strstr(line, "stream window ");
  (void)level;
  (void)data;
  if (p == NULL || sscanf(p, "stream window %u -> %u (%u streams)", &from, &to, &n) != 3)
    return;
  window_changes++;
  if (to > window_max) window_max = to;
  if ((uint64_t)to * n > window_over) window_over = (uint64_t)to * n;
}

/* ---- the client ---- */

typedef struct {
  uvg_client_call_t *call;
  uint64_t received;
  int reading; /* asks for the next message as each arrives */
  int ended;
  uvg_status_code_t code;
} dl_t;

static int calls_ended;

static void on_dl_message(uvg_client_call_t *call, const uint8_t *msg, size_t len,
                          void *data) {
  dl_t *d = data;
  (void)msg;
  d->received += len;
  if (d->reading) uvg_client_call_read(call);
}

static void on_dl_status(uvg_client_call_t *call, const uvg_status_t *st,
                         const uvg_metadata_t *md, size_t n, void *data) {
  dl_t *d = data;
  (void)call;
  (void)md;
  (void)n;
  d->ended = 1;
  d->code = st->code;
  calls_ended++;
}

static void start_download(uvg_channel_t *ch, dl_t *d, uint32_t bytes) {
  static const uvg_client_call_cbs_t cbs = {NULL, on_dl_message, on_dl_status};
  uint8_t req[4] = {(uint8_t)(bytes >> 24), (uint8_t)(bytes >> 16),
                    (uint8_t)(bytes >> 8), (uint8_t)bytes};
  d->reading = 1;
  CHECK_EQ(uvg_client_call_start(ch, "/bdp.Test/Download", NULL, &cbs, d, &d->call), 0);
  CHECK_EQ(uvg_client_call_send(d->call, req, 4, 0, NULL, NULL), 0);
  CHECK_EQ(uvg_client_call_half_close(d->call), 0);
  CHECK_EQ(uvg_client_call_read(d->call), 0);
}

/* ---- unary calls straight to the server ---- */

static void on_echo(uvg_call_t *call, const uint8_t *msg, size_t len) {
  uvg_call_send(call, msg, len, 0, NULL, NULL);
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}

static void on_echo_done(uvg_call_t *call, const uvg_status_t *st) {
  (void)call;
  (void)st;
}

static int unary_done, unary_ok;

static void on_unary(const uvg_status_t *st, const uint8_t *resp, size_t len,
                     void *data) {
  (void)data;
  unary_done++;
  unary_ok += st->code == UVG_STATUS_OK && len == 1 && resp[0] == 'x';
}

static uvg_server_t *server;
static char relay_target[64], server_target[64];

static void setup(void) {
  uvg_method_t m[] = {
      {.path = "/bdp.Test/Download", .type = UVG_METHOD_SERVER_STREAMING,
       .on_call = on_download, .on_cancel = on_download_cancel,
       .on_done = on_download_done},
      {.path = "/bdp.Test/Echo", .on_call = on_echo, .on_done = on_echo_done}};
  int port, rport;
  struct sockaddr_in any;
  struct sockaddr_storage ss;
  int sl = sizeof(ss);
  CHECK_EQ(uvg_server_new(&loop, NULL, &server), 0);
  CHECK_EQ(uvg_server_register(server, m, 2), 0);
  CHECK_EQ(uvg_server_listen(server, "127.0.0.1:0", uvg_insecure_server_credentials(),
                             &port),
           0);
  uv_ip4_addr("127.0.0.1", port, &server_addr);
  snprintf(server_target, sizeof(server_target), "ipv4:127.0.0.1:%d", port);
  uv_ip4_addr("127.0.0.1", 0, &any);
  uv_tcp_init(&loop, &relay_listener);
  CHECK_EQ(uv_tcp_bind(&relay_listener, (struct sockaddr *)&any, 0), 0);
  CHECK_EQ(uv_listen((uv_stream_t *)&relay_listener, 16, on_relay_accept), 0);
  uv_tcp_getsockname(&relay_listener, (struct sockaddr *)&ss, &sl);
  rport = ntohs(((struct sockaddr_in *)&ss)->sin_port);
  snprintf(relay_target, sizeof(relay_target), "ipv4:127.0.0.1:%d", rport);
}

static void close_all(uvg_channel_t *ch) {
  uvg_channel_close(ch, NULL, NULL);
  /* the relay's connections close when the channel's does */
  uv_run(&loop, UV_RUN_NOWAIT);
}

/* One download of DOWNLOAD bytes: its time in ms. */
static double timed_download(uint32_t window) {
  uvg_channel_options_t o;
  uvg_channel_t *ch;
  dl_t d = {0};
  uvg_channel_options_init(&o);
  o.initial_window_size = window;
  CHECK_EQ(uvg_channel_new(&loop, relay_target, uvg_insecure_channel_credentials(), &o,
                           &ch),
           0);
  /* connect first: the handshake's round trips are not the window's */
  uvg_channel_state(ch, 1);
  while (uvg_channel_state(ch, 0) != UVG_STATE_READY) uv_run(&loop, UV_RUN_ONCE);
  uint64_t t0 = uv_hrtime();
  calls_ended = 0;
  start_download(ch, &d, DOWNLOAD);
  while (!d.ended) uv_run(&loop, UV_RUN_ONCE);
  double ms = (double)(uv_hrtime() - t0) / 1e6;
  CHECK_EQ(d.code, UVG_STATUS_OK);
  CHECK_EQ(d.received, DOWNLOAD);
  close_all(ch);
  return ms;
}

static void test_window_grows_with_the_delay(void) {
  window_max = 0;
  double fixed = timed_download(65535);
  CHECK_EQ(window_max, 0); /* a window the application set stays */
  double grown = timed_download(0);
  fprintf(stderr, "  %u KiB over a %d ms round trip: %.0f ms with 64 KiB, %.0f ms "
          "growing to %u KiB\n", DOWNLOAD / 1024, 2 * DELAY_MS, fixed, grown,
          window_max / 1024);
  /* 64 KiB per round trip would take 48 round trips */
  CHECK(fixed > 40 * 2 * DELAY_MS);
  CHECK(window_max > 4 * 65535);
  CHECK(grown * 2.5 < fixed);
}

static void test_streams_stay_within_the_cap(void) {
  uvg_channel_options_t o;
  uvg_channel_t *ch;
  dl_t d[STREAMS];
  memset(d, 0, sizeof(d));
  window_max = 0;
  window_over = 0;
  uvg_channel_options_init(&o);
  o.max_stream_windows_per_connection = CAP;
  CHECK_EQ(uvg_channel_new(&loop, relay_target, uvg_insecure_channel_credentials(), &o,
                           &ch),
           0);
  server_sent = 0;
  /* One stream alone: its window grows to the whole cap. */
  start_download(ch, &d[0], 0);
  uint64_t until = uv_now(&loop) + 1000;
  while (uv_now(&loop) < until) uv_run(&loop, UV_RUN_ONCE);
  uint32_t alone = window_max;
  /* The others join: the window shrinks before their HEADERS leave. */
  for (int i = 1; i < STREAMS; i++) start_download(ch, &d[i], 0);
  until = uv_now(&loop) + 1000;
  while (uv_now(&loop) < until) uv_run(&loop, UV_RUN_ONCE);
  uint64_t received = 0;
  for (int i = 0; i < STREAMS; i++) d[i].reading = 0;
  /* The server goes on sending until every window is full. */
  until = uv_now(&loop) + 1000;
  while (uv_now(&loop) < until) uv_run(&loop, UV_RUN_ONCE);
  for (int i = 0; i < STREAMS; i++) received += d[i].received;
  uint64_t ahead = server_sent - received;
  fprintf(stderr, "  cap %u KiB: one stream's window grew to %u KiB; with %d "
          "streams %" PRIu64 " KiB were sent ahead of the reads\n", CAP / 1024,
          alone / 1024, STREAMS, ahead / 1024);
  CHECK(alone > CAP / 2);          /* it grew */
  CHECK(window_over <= CAP);       /* every window times its streams */
  CHECK(ahead <= CAP);             /* and so the memory */
  /* the windows were used; the cap's coarse steps may share it among up
   * to twice the streams open, so a quarter at the least */
  CHECK(ahead >= CAP / 4);
  for (int i = 0; i < STREAMS; i++) uvg_client_call_cancel(d[i].call);
  while (calls_ended < STREAMS) uv_run(&loop, UV_RUN_ONCE);
  close_all(ch);
}

/* BURST unary calls started at once on one channel, with the window at
 * its default (64 KiB), fixed at 16 MiB, and grown by a download over the
 * delayed link: the default cap (32 MiB) shares the larger ones. The
 * server answers each SETTINGS with an ack and takes a thousand unsent
 * acks for a flood: a SETTINGS per stream opened and closed ended in
 * GOAWAY ENHANCE_YOUR_CALM, every call UNAVAILABLE. */
#define BURST 3000

static void burst(const char *target, uint32_t window, int grow) {
  uvg_channel_options_t o;
  uvg_channel_t *ch;
  uvg_channel_options_init(&o);
  o.initial_window_size = window;
  CHECK_EQ(uvg_channel_new(&loop, target, uvg_insecure_channel_credentials(), &o, &ch),
           0);
  window_max = window;
  if (grow) {
    dl_t d = {0};
    calls_ended = 0;
    start_download(ch, &d, DOWNLOAD);
    while (!d.ended) uv_run(&loop, UV_RUN_ONCE);
    CHECK_EQ(d.code, UVG_STATUS_OK);
    CHECK(window_max > 4 * 65535);
  }
  for (int round = 0; round < 2; round++) {
    window_changes = 0;
    unary_done = unary_ok = 0;
    for (int i = 0; i < BURST; i++)
      CHECK_EQ(uvg_channel_unary(ch, "/bdp.Test/Echo", (const uint8_t *)"x", 1, NULL,
                                 on_unary, NULL),
               0);
    while (unary_done < BURST) uv_run(&loop, UV_RUN_ONCE);
    fprintf(stderr, "  %d calls at once, window %u KiB: %d OK, %u SETTINGS\n", BURST,
            window_max ? window_max / 1024 : 64, unary_ok, window_changes);
    CHECK_EQ(unary_ok, BURST);
    /* each a halving or a doubling at least: log2(32 MiB / 16 KiB) */
    CHECK(window_changes <= 12);
  }
  close_all(ch);
}

static void test_a_burst_costs_few_settings(void) {
  burst(server_target, 0, 0);
  burst(server_target, 16u << 20, 0);
  burst(relay_target, 0, 1);
}

static void on_relay_listener_closed(uv_handle_t *h) { (void)h; }

/* Wakes uv_run(UV_RUN_ONCE) while the test waits for a time to pass. */
static uv_timer_t tick;
static void on_tick(uv_timer_t *t) { (void)t; }

static void walk_close(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

int main(void) {
  alarm(50); /* a hang fails the test instead of stalling the suite */
  CHECK_EQ(setenv("UVG_TRACE", "transport", 1), 0);
  uvg_set_log_cb(on_log, NULL);
  CHECK_EQ(uv_loop_init(&loop), 0);
  setup();
  uv_timer_init(&loop, &tick);
  uv_timer_start(&tick, on_tick, 20, 20);
  RUN(test_window_grows_with_the_delay);
  RUN(test_streams_stay_within_the_cap);
  RUN(test_a_burst_costs_few_settings);
  uvg_server_close(server, NULL, NULL);
  uv_close((uv_handle_t *)&tick, NULL);
  uv_close((uv_handle_t *)&relay_listener, on_relay_listener_closed);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_walk(&loop, walk_close, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ(uv_loop_close(&loop), 0);
  TEST_EXIT();
}

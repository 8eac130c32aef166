/* The receive windows on a link with delay: a relay in the test holds
 * every chunk DELAY_MS each way (a 2 * DELAY_MS round trip on 127.0.0.1).
 * With the dynamic window the stream window grows with the measured
 * bandwidth-delay product, the channel's for a download and the server's
 * for an upload, and either is several times faster than with HTTP/2's
 * fixed 64 KiB window; with several streams open, what the sender may
 * send ahead of the calls' reads (the sum of the stream windows) stays
 * within max_stream_windows_per_connection, the channel's or the
 * server's, and a burst of calls costs either side a few SETTINGS, not
 * two a call. */
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

/* ---- /bdp.Test/Upload takes what a client streams ---- */

static uint64_t server_received; /* request bytes the handlers took */
static int server_holding;       /* the handlers stop reading */

static void on_upload(uvg_call_t *call, const uint8_t *msg, size_t len) {
  (void)call;
  (void)msg;
  (void)len;
}

static void on_upload_message(uvg_call_t *call, const uint8_t *msg, size_t len) {
  (void)msg;
  server_received += len;
  if (server_holding) uvg_call_pause_reading(call, 1);
}

static void on_upload_half_close(uvg_call_t *call) {
  uvg_call_send(call, "x", 1, 0, NULL, NULL);
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}

static void on_upload_cancel(uvg_call_t *call, const uvg_status_t *st) {
  (void)st;
  uvg_call_finish(call, UVG_STATUS_CANCELLED, NULL, NULL, 0);
}

static void on_upload_done(uvg_call_t *call, const uvg_status_t *st) {
  (void)call;
  (void)st;
}

/* ---- the windows, as the transport's trace reports them ---- */

enum { CLIENT, SERVER };
static uint32_t window_max[2];  /* the largest stream window set */
static unsigned window_changes[2]; /* SETTINGS changing the window */
static uint64_t window_over[2]; /* the most a window times its streams */

static void on_log(uvg_log_level_t level, const char *line, void *data) {
  unsigned from, to, n;
  char role[8];
  const char *p = strstr(line, ": client stream window ");
  (void)level;
  (void)data;
  if (p == NULL) p = strstr(line, ": server stream window ");
  if (p == NULL ||
      sscanf(p, ": %7s stream window %u -> %u (%u streams)", role, &from, &to, &n) != 4)
    return;
  int r = strcmp(role, "server") == 0 ? SERVER : CLIENT;
  window_changes[r]++;
  if (to > window_max[r]) window_max[r] = to;
  if ((uint64_t)to * n > window_over[r]) window_over[r] = (uint64_t)to * n;
}

static void windows_reset(void) {
  memset(window_max, 0, sizeof(window_max));
  memset(window_changes, 0, sizeof(window_changes));
  memset(window_over, 0, sizeof(window_over));
}

/* ---- the client ---- */

/* A download, or an upload of MSG-byte messages with AHEAD queued. */
typedef struct {
  uvg_client_call_t *call;
  uint64_t received;
  uint64_t left; /* upload: bytes still to queue; UINT64_MAX: no end */
  unsigned queued;
  int reading; /* asks for the next message as each arrives */
  int ended;
  uvg_status_code_t code;
} dl_t;

static int calls_ended;
static uint64_t client_sent; /* request bytes handed to the socket */

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

static const uvg_client_call_cbs_t dl_cbs = {NULL, on_dl_message, on_dl_status};

static void start_download(uvg_channel_t *ch, dl_t *d, uint32_t bytes) {
  uint8_t req[4] = {(uint8_t)(bytes >> 24), (uint8_t)(bytes >> 16),
                    (uint8_t)(bytes >> 8), (uint8_t)bytes};
  d->reading = 1;
  CHECK_EQ(uvg_client_call_start(ch, "/bdp.Test/Download", NULL, &dl_cbs, d, &d->call),
           0);
  CHECK_EQ(uvg_client_call_send(d->call, req, 4, 0, NULL, NULL), 0);
  CHECK_EQ(uvg_client_call_half_close(d->call), 0);
  CHECK_EQ(uvg_client_call_read(d->call), 0);
}

static void upload_more(dl_t *d);

static void on_upload_sent(uvg_client_call_t *call, int status, void *data) {
  dl_t *d = data;
  (void)call;
  d->queued--;
  if (status != 0) return;
  client_sent += MSG;
  upload_more(d);
}

static void upload_more(dl_t *d) {
  while (!d->ended && d->queued < AHEAD && d->left > 0) {
    if (uvg_client_call_send(d->call, payload, MSG, 0, on_upload_sent, d) != 0) return;
    d->queued++;
    if (d->left != UINT64_MAX) d->left -= MSG;
    if (d->left == 0) CHECK_EQ(uvg_client_call_half_close(d->call), 0);
  }
}

static void start_upload(uvg_channel_t *ch, dl_t *d, uint64_t bytes) {
  d->left = bytes;
  CHECK_EQ(uvg_client_call_start(ch, "/bdp.Test/Upload", NULL, &dl_cbs, d, &d->call),
           0);
  CHECK_EQ(uvg_client_call_read(d->call), 0);
  upload_more(d);
}

/* Runs the loop until the call ended and its sends were reported. */
static void wait_ended(dl_t *d) {
  while (!d->ended || d->queued > 0) uv_run(&loop, UV_RUN_ONCE);
}

static void run_for(uint64_t ms) {
  uint64_t until = uv_now(&loop) + ms;
  while (uv_now(&loop) < until) uv_run(&loop, UV_RUN_ONCE);
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

/* The test's server, with default options, serves the relay unless a
 * test points the relay at one of its own. */
static uvg_server_t *server;
static int server_port;
static char relay_target[64], server_target[64];

/* A server with options `o` (NULL: the defaults); the relay's
 * connections from now on go to it. */
static uvg_server_t *serve(const uvg_server_options_t *o) {
  uvg_method_t m[] = {
      {.path = "/bdp.Test/Download", .type = UVG_METHOD_SERVER_STREAMING,
       .on_call = on_download, .on_cancel = on_download_cancel,
       .on_done = on_download_done},
      {.path = "/bdp.Test/Upload", .type = UVG_METHOD_CLIENT_STREAMING,
       .on_call = on_upload, .on_message = on_upload_message,
       .on_half_close = on_upload_half_close, .on_cancel = on_upload_cancel,
       .on_done = on_upload_done},
      {.path = "/bdp.Test/Echo", .on_call = on_echo, .on_done = on_echo_done}};
  uvg_server_t *s;
  int port;
  CHECK_EQ(uvg_server_new(&loop, o, &s), 0);
  CHECK_EQ(uvg_server_register(s, m, 3), 0);
  CHECK_EQ(uvg_server_listen(s, "127.0.0.1:0", uvg_insecure_server_credentials(), &port),
           0);
  uv_ip4_addr("127.0.0.1", port, &server_addr);
  if (o == NULL) server_port = port;
  return s;
}

/* A server whose stream window is `window` (0: dynamic) and whose cap is
 * `cap` (0: the default), serving the relay until unserve(). */
static uvg_server_t *serve_window(uint32_t window, uint32_t cap) {
  uvg_server_options_t o;
  uvg_server_options_init(&o);
  o.initial_window_size = window;
  o.max_stream_windows_per_connection = cap;
  return serve(&o);
}

static void unserve(uvg_server_t *s) {
  uvg_server_close(s, NULL, NULL);
  uv_ip4_addr("127.0.0.1", server_port, &server_addr);
}

static void setup(void) {
  int rport;
  struct sockaddr_in any;
  struct sockaddr_storage ss;
  int sl = sizeof(ss);
  server = serve(NULL);
  snprintf(server_target, sizeof(server_target), "ipv4:127.0.0.1:%d", server_port);
  uv_ip4_addr("127.0.0.1", 0, &any);
  uv_tcp_init(&loop, &relay_listener);
  CHECK_EQ(uv_tcp_bind(&relay_listener, (struct sockaddr *)&any, 0), 0);
  CHECK_EQ(uv_listen((uv_stream_t *)&relay_listener, 16, on_relay_accept), 0);
  uv_tcp_getsockname(&relay_listener, (struct sockaddr *)&ss, &sl);
  rport = ntohs(((struct sockaddr_in *)&ss)->sin_port);
  snprintf(relay_target, sizeof(relay_target), "ipv4:127.0.0.1:%d", rport);
}

/* A channel with stream window `window` (0: dynamic) and cap `cap` (0:
 * the default). */
static uvg_channel_t *channel(const char *target, uint32_t window, uint32_t cap) {
  uvg_channel_options_t o;
  uvg_channel_t *ch;
  uvg_channel_options_init(&o);
  o.initial_window_size = window;
  o.max_stream_windows_per_connection = cap;
  CHECK_EQ(uvg_channel_new(&loop, target, uvg_insecure_channel_credentials(), &o, &ch),
           0);
  return ch;
}

static void close_all(uvg_channel_t *ch) {
  uvg_channel_close(ch, NULL, NULL);
  /* the relay's connections close when the channel's does */
  uv_run(&loop, UV_RUN_NOWAIT);
}

/* One transfer of DOWNLOAD bytes through the relay: a download with the
 * channel's window `window` (0: dynamic), or an upload with the server's.
 * Its time in ms. */
static double timed_transfer(uint32_t window, int upload) {
  uvg_server_t *s = upload ? serve_window(window, 0) : NULL;
  uvg_channel_t *ch = channel(relay_target, upload ? 0 : window, 0);
  dl_t d = {0};
  /* connect first: the handshake's round trips are not the window's */
  uvg_channel_state(ch, 1);
  while (uvg_channel_state(ch, 0) != UVG_STATE_READY) uv_run(&loop, UV_RUN_ONCE);
  uint64_t t0 = uv_hrtime();
  uint64_t taken = server_received;
  if (upload)
    start_upload(ch, &d, DOWNLOAD);
  else
    start_download(ch, &d, DOWNLOAD);
  wait_ended(&d);
  double ms = (double)(uv_hrtime() - t0) / 1e6;
  CHECK_EQ(d.code, UVG_STATUS_OK);
  if (upload)
    CHECK_EQ(server_received - taken, DOWNLOAD);
  else
    CHECK_EQ(d.received, DOWNLOAD);
  close_all(ch);
  if (s != NULL) unserve(s);
  return ms;
}

/* The receiver's window (the channel's for a download, the server's for
 * an upload) grows, and the transfer is several times faster than with
 * 64 KiB; a window the application set stays. */
static void window_grows(int upload) {
  int r = upload ? SERVER : CLIENT;
  windows_reset();
  double fixed = timed_transfer(65535, upload);
  CHECK_EQ(window_max[r], 0);
  double grown = timed_transfer(0, upload);
  fprintf(stderr, "  %s of %u KiB over a %d ms round trip: %.0f ms with 64 KiB, "
          "%.0f ms growing to %u KiB\n", upload ? "upload" : "download",
          DOWNLOAD / 1024, 2 * DELAY_MS, fixed, grown, window_max[r] / 1024);
  /* 64 KiB per round trip would take 48 round trips */
  CHECK(fixed > 40 * 2 * DELAY_MS);
  CHECK(window_max[r] > 4 * 65535);
  CHECK(grown * 2.5 < fixed);
}

static void test_window_grows_with_the_delay(void) { window_grows(0); }
static void test_server_window_grows_with_the_delay(void) { window_grows(1); }

/* One stream alone grows its window to the whole cap; STREAMS - 1 join
 * and the receiver shares the cap among them; then the receiver stops
 * reading: what the sender sent ahead of the reads stays within the cap.
 * The channel's cap (CAP) for downloads, the server's for uploads: four
 * times CAP, as the server's window starts at 1 MiB. */
static void streams_stay_within_the_cap(int upload) {
  int r = upload ? SERVER : CLIENT;
  uint32_t cap = upload ? 4 * CAP : CAP;
  uvg_server_t *s = upload ? serve_window(0, cap) : NULL;
  uvg_channel_t *ch = channel(relay_target, 0, upload ? 0 : cap);
  uint32_t alone = 0;
  dl_t d[STREAMS];
  memset(d, 0, sizeof(d));
  windows_reset();
  server_sent = client_sent = server_received = 0;
  server_holding = 0;
  calls_ended = 0;
  for (int i = 0; i < STREAMS; i++) {
    if (upload)
      start_upload(ch, &d[i], UINT64_MAX);
    else
      start_download(ch, &d[i], 0);
    /* the first alone, then the others together: the window shrinks
     * before their HEADERS leave (a channel), or as they arrive */
    if (i == 0 || i == STREAMS - 1) run_for(1000);
    if (i == 0) alone = window_max[r];
  }
  for (int i = 0; i < STREAMS; i++) d[i].reading = 0;
  server_holding = 1;
  /* The sender goes on until every window is full. */
  run_for(1000);
  uint64_t received = server_received;
  if (!upload)
    for (int i = 0; i < STREAMS; i++) received += d[i].received;
  uint64_t ahead = (upload ? client_sent : server_sent) - received;
  fprintf(stderr, "  %s cap %u KiB: one stream's window grew to %u KiB; with %d "
          "streams %" PRIu64 " KiB were sent ahead of the reads\n",
          upload ? "server" : "channel", cap / 1024, alone / 1024, STREAMS,
          ahead / 1024);
  CHECK(alone > cap / 2);          /* it grew */
  CHECK(window_over[r] <= cap);    /* every window times its streams */
  CHECK(ahead <= cap);             /* and so the memory */
  /* the windows were used; the cap's coarse steps may share it among up
   * to twice the streams open, so a quarter at the least */
  CHECK(ahead >= cap / 4);
  for (int i = 0; i < STREAMS; i++) uvg_client_call_cancel(d[i].call);
  for (int i = 0; i < STREAMS; i++) wait_ended(&d[i]);
  server_holding = 0;
  close_all(ch);
  if (s != NULL) unserve(s);
}

static void test_streams_stay_within_the_cap(void) { streams_stay_within_the_cap(0); }
static void test_server_streams_stay_within_the_cap(void) {
  streams_stay_within_the_cap(1);
}

/* BURST unary calls started at once on one channel, with the window at
 * its default (64 KiB), fixed at 16 MiB, and grown over the delayed link
 * by a download (the channel's) or an upload (the server's): the default
 * cap (32 MiB) shares the larger ones. Either side answers each SETTINGS
 * with an ack and nghttp2 takes a thousand unsent acks for a flood: a
 * SETTINGS per stream opened and closed ended in GOAWAY
 * ENHANCE_YOUR_CALM, every call UNAVAILABLE. */
#define BURST 3000

static void burst(const char *target, uint32_t window, int grow_upload, int grow) {
  uvg_channel_t *ch = channel(target, window, 0);
  int r = grow_upload ? SERVER : CLIENT;
  windows_reset();
  if (grow) {
    dl_t d = {0};
    calls_ended = 0;
    if (grow_upload)
      start_upload(ch, &d, DOWNLOAD);
    else
      start_download(ch, &d, DOWNLOAD);
    wait_ended(&d);
    CHECK_EQ(d.code, UVG_STATUS_OK);
    CHECK(window_max[r] > 4 * 65535);
  }
  uint32_t grown = window_max[r] ? window_max[r] : window ? window : 65535;
  for (int round = 0; round < 2; round++) {
    memset(window_changes, 0, sizeof(window_changes));
    unary_done = unary_ok = 0;
    for (int i = 0; i < BURST; i++)
      CHECK_EQ(uvg_channel_unary(ch, "/bdp.Test/Echo", (const uint8_t *)"x", 1, NULL,
                                 on_unary, NULL),
               0);
    while (unary_done < BURST) uv_run(&loop, UV_RUN_ONCE);
    fprintf(stderr, "  %d calls at once, %s window %u KiB: %d OK, %u SETTINGS "
            "from the channel, %u from the server\n", BURST,
            grow_upload ? "server" : "channel", grown / 1024, unary_ok,
            window_changes[CLIENT], window_changes[SERVER]);
    CHECK_EQ(unary_ok, BURST);
    /* each a halving or a doubling at least: log2(32 MiB / 16 KiB) */
    CHECK(window_changes[CLIENT] <= 12);
    CHECK(window_changes[SERVER] <= 12);
  }
  close_all(ch);
}

static void test_a_burst_costs_few_settings(void) {
  burst(server_target, 0, 0, 0);
  burst(server_target, 16u << 20, 0, 0);
  burst(relay_target, 0, 0, 1);
  burst(relay_target, 0, 1, 1);
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
  RUN(test_server_window_grows_with_the_delay);
  RUN(test_streams_stay_within_the_cap);
  RUN(test_server_streams_stay_within_the_cap);
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

/* The channel and client calls against the project's own server on the
 * same loop: the four kinds of RPC, metadata and status both ways,
 * deadlines, cancellation, read pacing, connectivity states, reconnection,
 * fail-fast and wait-for-ready, close, and a loop that an idle channel does
 * not keep alive. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uvgrpc.h>

#include "test.h"
#include "loop_wait.h"

static uv_loop_t *loop;

/* ---- the server ---- */

static int srv_cancels, srv_done;
static char srv_seen_md[32], srv_seen_ua[64];

static void echo(uvg_call_t *call, const uint8_t *msg, size_t len) {
  const uvg_metadata_t *m = uvg_call_metadata_get(call, "x-req");
  snprintf(srv_seen_md, sizeof(srv_seen_md), "%.*s", m ? (int)m->value_len : 0,
           m ? (const char *)m->value : "");
  const uvg_metadata_t *ua = uvg_call_metadata_get(call, "user-agent");
  snprintf(srv_seen_ua, sizeof(srv_seen_ua), "%.*s", ua ? (int)ua->value_len : 0,
           ua ? (const char *)ua->value : "");
  const uvg_metadata_t hd = {"x-head", (const uint8_t *)"h", 1};
  uvg_call_send_headers(call, &hd, 1);
  uvg_call_send(call, msg, len, 0, NULL, NULL);
  const uvg_metadata_t tr = {"x-trail", (const uint8_t *)"t", 1};
  uvg_call_finish(call, UVG_STATUS_OK, NULL, &tr, 1);
}
static void zip(uvg_call_t *call, const uint8_t *msg, size_t len) {
  CHECK_EQ(uvg_call_set_compression(call, UVG_COMPRESS_GZIP), 0);
  uvg_call_send(call, msg, len, 0, NULL, NULL);
  uvg_call_send(call, msg, len, UVG_SEND_NO_COMPRESS, NULL, NULL);
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}
static void fail(uvg_call_t *call, const uint8_t *msg, size_t len) {
  (void)msg;
  (void)len;
  const uvg_status_t st = {UVG_STATUS_NOT_FOUND, " no such thing: 100% ",
                           (const uint8_t *)"\x01\x02\x00", 3};
  uvg_call_finish_status(call, &st, NULL, 0);
}
static void never(uvg_call_t *call, const uint8_t *msg, size_t len) {
  (void)call;
  (void)msg;
  (void)len; /* answers only when cancelled */
}
static void on_srv_cancel(uvg_call_t *call, const uvg_status_t *st) {
  (void)st;
  srv_cancels++;
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}
/* server streaming: the request is a decimal count of 1 KiB replies */
static uint8_t kib[16384];
static void many(uvg_call_t *call, const uint8_t *msg, size_t len) {
  char buf[16];
  snprintf(buf, sizeof(buf), "%.*s", (int)len, (const char *)msg);
  int n = atoi(buf);
  for (int i = 0; i < n; i++) uvg_call_send(call, kib, 1024, 0, NULL, NULL);
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}
/* client streaming: replies with the number of messages and bytes */
typedef struct {
  int n;
  size_t bytes;
} sum_t;
static sum_t sums[8];
static int nsums;
static void sum_start(uvg_call_t *call, const uint8_t *msg, size_t len) {
  (void)msg;
  (void)len;
  sum_t *s = &sums[nsums++ % 8];
  memset(s, 0, sizeof(*s));
  uvg_call_set_data(call, s);
}
static void sum_msg(uvg_call_t *call, const uint8_t *msg, size_t len) {
  (void)msg;
  sum_t *s = uvg_call_get_data(call);
  s->n++;
  s->bytes += len;
}
static void sum_end(uvg_call_t *call) {
  sum_t *s = uvg_call_get_data(call);
  char out[32];
  int n = snprintf(out, sizeof(out), "%d/%zu", s->n, s->bytes);
  uvg_call_send(call, out, (size_t)n, 0, NULL, NULL);
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}
/* bidi: echoes each message */
static void bidi_msg(uvg_call_t *call, const uint8_t *msg, size_t len) {
  uvg_call_send(call, msg, len, 0, NULL, NULL);
}
static void bidi_end(uvg_call_t *call) {
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}
static void srv_done_cb(uvg_call_t *call, const uvg_status_t *st) {
  (void)call;
  (void)st;
  srv_done++;
}

static const uvg_method_t methods[] = {
    {.path = "/t.T/Echo", .on_call = echo, .on_done = srv_done_cb},
    {.path = "/t.T/Fail", .on_call = fail, .on_done = srv_done_cb},
    {.path = "/t.T/Zip", .type = UVG_METHOD_SERVER_STREAMING, .on_call = zip,
     .on_done = srv_done_cb},
    {.path = "/t.T/Never", .on_call = never, .on_cancel = on_srv_cancel,
     .on_done = srv_done_cb},
    {.path = "/t.T/Many", .type = UVG_METHOD_SERVER_STREAMING, .on_call = many,
     .on_done = srv_done_cb},
    {.path = "/t.T/Sum", .type = UVG_METHOD_CLIENT_STREAMING, .on_call = sum_start,
     .on_message = sum_msg, .on_half_close = sum_end, .on_cancel = on_srv_cancel,
     .on_done = srv_done_cb},
    {.path = "/t.T/Bidi", .type = UVG_METHOD_BIDI_STREAMING, .on_call = sum_start,
     .on_message = bidi_msg, .on_half_close = bidi_end, .on_cancel = on_srv_cancel,
     .on_done = srv_done_cb},
};

static int srv_closed;
static void on_srv_closed(uvg_server_t *s, void *d) {
  (void)s;
  (void)d;
  srv_closed++;
}

static uvg_server_t *server_on(int *port) {
  uvg_server_t *s;
  char addr[32];
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", *port);
  CHECK_EQ(uvg_server_new(loop, NULL, &s), 0);
  CHECK_EQ(uvg_server_register(s, methods, 7), 0);
  CHECK_EQ(uvg_server_listen(s, addr, uvg_insecure_server_credentials(), port), 0);
  return s;
}

static void server_stop(uvg_server_t *s) {
  int before = srv_closed;
  uvg_server_close(s, on_srv_closed, NULL);
  while (srv_closed == before) uv_run(loop, UV_RUN_ONCE);
}

/* ---- running the loop ---- */

static int run_until(const int *flag, int want, int ms) {
  return wait_count(loop, flag, want, ms);
}

static uvg_channel_t *channel_to(int port, const uvg_channel_options_t *o) {
  char target[48];
  snprintf(target, sizeof(target), "127.0.0.1:%d", port);
  uvg_channel_t *ch;
  CHECK_EQ(uvg_channel_new(loop, target, uvg_insecure_channel_credentials(), o, &ch), 0);
  return ch;
}

static int ch_closed;
static void on_ch_closed(uvg_channel_t *ch, void *d) {
  (void)ch;
  (void)d;
  ch_closed++;
}
static void channel_close(uvg_channel_t *ch) {
  int before = ch_closed;
  uvg_channel_close(ch, on_ch_closed, NULL);
  CHECK(run_until(&ch_closed, before + 1, 3000));
}

/* ---- a recording client call ---- */

typedef struct {
  int metadata, messages, statuses;
  char head[8], trail[8];
  uvg_status_code_t code;
  char message[128];
  uint8_t details[8];
  size_t details_len;
  char last[64];
  size_t bytes;
  int compressed[4];
  int auto_read;
  int ready, last_ready; /* uvg_client_call_message_ready() said 1; the last */
} rec_t;

static void r_metadata(uvg_client_call_t *call, const uvg_metadata_t *md, size_t n,
                       void *ud) {
  rec_t *r = ud;
  (void)call;
  r->metadata++;
  for (size_t i = 0; i < n; i++)
    if (strcmp(md[i].key, "x-head") == 0)
      snprintf(r->head, sizeof(r->head), "%.*s", (int)md[i].value_len,
               (const char *)md[i].value);
}
static void r_message(uvg_client_call_t *call, const uint8_t *msg, size_t len,
                      void *ud) {
  rec_t *r = ud;
  if (r->messages < 4) r->compressed[r->messages] = uvg_client_call_message_compressed(call);
  r->messages++;
  r->last_ready = uvg_client_call_message_ready(call);
  r->ready += r->last_ready;
  r->bytes += len;
  snprintf(r->last, sizeof(r->last), "%.*s", (int)(len < 63 ? len : 63),
           (const char *)msg);
  if (r->auto_read) uvg_client_call_read(call);
}
static void r_status(uvg_client_call_t *call, const uvg_status_t *st,
                     const uvg_metadata_t *tr, size_t n, void *ud) {
  rec_t *r = ud;
  (void)call;
  r->statuses++;
  r->code = st->code;
  snprintf(r->message, sizeof(r->message), "%s", st->message);
  r->details_len = st->details_len < 8 ? st->details_len : 8;
  if (st->details) memcpy(r->details, st->details, r->details_len);
  for (size_t i = 0; i < n; i++)
    if (strcmp(tr[i].key, "x-trail") == 0)
      snprintf(r->trail, sizeof(r->trail), "%.*s", (int)tr[i].value_len,
               (const char *)tr[i].value);
}
static const uvg_client_call_cbs_t rec_cbs = {r_metadata, r_message, r_status};

static uvg_client_call_t *start(uvg_channel_t *ch, const char *method, rec_t *r,
                                const uvg_client_call_options_t *o) {
  memset(r, 0, sizeof(*r));
  r->auto_read = 1;
  uvg_client_call_t *call = NULL;
  CHECK_EQ(uvg_client_call_start(ch, method, o, &rec_cbs, r, &call), 0);
  CHECK_EQ(uvg_client_call_read(call), 0);
  return call;
}

/* ---- unary ---- */

typedef struct {
  int calls;
  uvg_status_code_t code;
  char reply[64];
  char message[128];
} unary_t;

static void on_unary(const uvg_status_t *st, const uint8_t *reply, size_t len,
                     void *ud) {
  unary_t *u = ud;
  u->calls++;
  u->code = st->code;
  snprintf(u->message, sizeof(u->message), "%s", st->message);
  snprintf(u->reply, sizeof(u->reply), "%.*s", (int)len, reply ? (const char *)reply : "");
}

static void test_unary(void) {
  int port = 0;
  uvg_server_t *s = server_on(&port);
  uvg_channel_t *ch = channel_to(port, NULL);
  CHECK_EQ(uvg_channel_state(ch, 0), UVG_STATE_IDLE);
  unary_t u = {0};
  const uvg_metadata_t md = {"x-req", (const uint8_t *)"abc", 3};
  uvg_client_call_options_t o = {.metadata = &md, .nmetadata = 1};
  CHECK_EQ(uvg_channel_unary(ch, "/t.T/Echo", "hello", 5, &o, on_unary, &u), 0);
  CHECK_EQ(u.calls, 0); /* never inside the call that started it */
  CHECK(run_until(&u.calls, 1, 3000));
  CHECK_EQ(u.code, UVG_STATUS_OK);
  CHECK_STR(u.reply, "hello");
  CHECK_STR(srv_seen_md, "abc");
  CHECK_STR(srv_seen_ua, "grpc-c-uvgrpc/0.1.0");
  CHECK_EQ(uvg_channel_state(ch, 0), UVG_STATE_READY);
  /* an error status with its message and details */
  rec_t r;
  uvg_client_call_t *c = start(ch, "/t.T/Fail", &r, NULL);
  uvg_client_call_send(c, "", 0, 0, NULL, NULL);
  uvg_client_call_half_close(c);
  CHECK(run_until(&r.statuses, 1, 3000));
  CHECK_EQ(r.code, UVG_STATUS_NOT_FOUND);
  CHECK_STR(r.message, " no such thing: 100% ");
  CHECK_EQ(r.details_len, 3);
  CHECK(memcmp(r.details, "\x01\x02\x00", 3) == 0);
  /* unknown method */
  unary_t v = {0};
  CHECK_EQ(uvg_channel_unary(ch, "/t.T/Nope", "", 0, NULL, on_unary, &v), 0);
  CHECK(run_until(&v.calls, 1, 3000));
  CHECK_EQ(v.code, UVG_STATUS_UNIMPLEMENTED);
  channel_close(ch);
  server_stop(s);
}

static void test_four_kinds_and_metadata(void) {
  int port = 0;
  uvg_server_t *s = server_on(&port);
  uvg_channel_t *ch = channel_to(port, NULL);
  /* unary with the generic call: headers, message, trailers */
  rec_t r;
  uvg_client_call_t *c = start(ch, "/t.T/Echo", &r, NULL);
  CHECK_EQ(uvg_client_call_send(c, "x", 1, 0, NULL, NULL), 0);
  CHECK_EQ(uvg_client_call_half_close(c), 0);
  CHECK(run_until(&r.statuses, 1, 3000));
  CHECK_EQ(r.code, UVG_STATUS_OK);
  CHECK_EQ(r.metadata, 1);
  CHECK_STR(r.head, "h");
  CHECK_STR(r.trail, "t");
  CHECK_EQ(r.messages, 1);
  /* server streaming */
  c = start(ch, "/t.T/Many", &r, NULL);
  CHECK_EQ(uvg_client_call_message_ready(c), 0); /* outside on_message */
  uvg_client_call_send(c, "50", 2, 0, NULL, NULL);
  uvg_client_call_half_close(c);
  CHECK(run_until(&r.statuses, 1, 3000));
  CHECK_EQ(r.code, UVG_STATUS_OK);
  CHECK_EQ(r.messages, 50);
  CHECK_EQ(r.bytes, 50 * 1024);
  /* 50 KiB come in a few reads: most messages had the next one waiting;
   * the last had the status after it, not a message */
  CHECK(r.ready > 0 && r.ready < 50);
  CHECK_EQ(r.last_ready, 0);
  /* client streaming */
  c = start(ch, "/t.T/Sum", &r, NULL);
  for (int i = 0; i < 10; i++) uvg_client_call_send(c, kib, 100, 0, NULL, NULL);
  uvg_client_call_half_close(c);
  CHECK(run_until(&r.statuses, 1, 3000));
  CHECK_EQ(r.code, UVG_STATUS_OK);
  CHECK_STR(r.last, "10/1000");
  /* compressed responses, one message opting out */
  c = start(ch, "/t.T/Zip", &r, NULL);
  uvg_client_call_send(c, "zzzzzzzz", 8, 0, NULL, NULL);
  uvg_client_call_half_close(c);
  CHECK(run_until(&r.statuses, 1, 3000));
  CHECK_EQ(r.code, UVG_STATUS_OK);
  CHECK_EQ(r.messages, 2);
  CHECK_STR(r.last, "zzzzzzzz");
  CHECK_EQ(r.compressed[0], 1);
  CHECK_EQ(r.compressed[1], 0);
  /* bidi, with compression */
  uvg_client_call_options_t o = {.compression = UVG_COMPRESS_GZIP};
  c = start(ch, "/t.T/Bidi", &r, &o);
  uvg_client_call_send(c, "one", 3, 0, NULL, NULL);
  CHECK(run_until(&r.messages, 1, 3000));
  CHECK_STR(r.last, "one");
  uvg_client_call_send(c, "two", 3, UVG_SEND_NO_COMPRESS, NULL, NULL);
  CHECK(run_until(&r.messages, 2, 3000));
  CHECK_STR(r.last, "two");
  uvg_client_call_half_close(c);
  CHECK(run_until(&r.statuses, 1, 3000));
  CHECK_EQ(r.code, UVG_STATUS_OK);
  channel_close(ch);
  server_stop(s);
}

/* Nothing more is read for a call until the application asks: the server
 * can put at most about one window in flight. */
static int sent_ok;
static void counted(uvg_call_t *call, int status, void *ud) {
  (void)call;
  (void)ud;
  if (status == 0) sent_ok++;
}
static void flood(uvg_call_t *call, const uint8_t *msg, size_t len) {
  (void)msg;
  (void)len;
  for (int i = 0; i < 64; i++) uvg_call_send(call, kib, sizeof(kib), 0, counted, NULL);
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}
static void test_read_pacing(void) {
  static const uvg_method_t fm = {.path = "/t.T/Flood",
                                  .type = UVG_METHOD_SERVER_STREAMING,
                                  .on_call = flood, .on_done = srv_done_cb};
  int port = 0;
  uvg_server_t *s = server_on(&port);
  CHECK_EQ(uvg_server_register(s, &fm, 1), 0);
  uvg_channel_options_t o;
  memset(&o, 0, sizeof(o));
  o.initial_window_size = 65535; /* fixed: no growth with the bdp */
  uvg_channel_t *ch = channel_to(port, &o);
  rec_t r;
  memset(&r, 0, sizeof(r));
  uvg_client_call_t *c;
  CHECK_EQ(uvg_client_call_start(ch, "/t.T/Flood", NULL, &rec_cbs, &r, &c), 0);
  uvg_client_call_send(c, "", 0, 0, NULL, NULL);
  uvg_client_call_half_close(c);
  sent_ok = 0;
  int never_flag = 0;
  run_until(&never_flag, 1, 300);
  /* 16 KiB messages, a 64 KiB window: at most ~5 messages left */
  CHECK(sent_ok <= 6);
  CHECK_EQ(r.messages, 0);
  /* reading one at a time lets the rest through */
  r.auto_read = 1;
  uvg_client_call_read(c);
  CHECK(run_until(&r.statuses, 1, 3000));
  CHECK_EQ(r.messages, 64);
  CHECK_EQ(r.code, UVG_STATUS_OK);
  CHECK_EQ(sent_ok, 64);
  channel_close(ch);
  server_stop(s);
}

/* Calls cancelled with unread data give their bytes back to the
 * connection's window: later calls on the connection still flow. */
static void test_cancelled_calls_free_the_window(void) {
  static const uvg_method_t fm = {.path = "/t.T/Flood",
                                  .type = UVG_METHOD_SERVER_STREAMING,
                                  .on_call = flood, .on_done = srv_done_cb};
  int port = 0;
  uvg_server_t *s = server_on(&port);
  CHECK_EQ(uvg_server_register(s, &fm, 1), 0);
  uvg_channel_options_t o;
  memset(&o, 0, sizeof(o));
  o.initial_connection_window_size = 131072; /* two stream windows */
  uvg_channel_t *ch = channel_to(port, &o);
  for (int k = 0; k < 8; k++) {
    rec_t r;
    memset(&r, 0, sizeof(r));
    uvg_client_call_t *c;
    CHECK_EQ(uvg_client_call_start(ch, "/t.T/Flood", NULL, &rec_cbs, &r, &c), 0);
    uvg_client_call_send(c, "", 0, 0, NULL, NULL);
    uvg_client_call_half_close(c);
    uvg_client_call_read(c);
    CHECK(run_until(&r.messages, 1, 3000));
    int flag = 0;
    run_until(&flag, 1, 30); /* a window's worth arrives unread */
    uvg_client_call_cancel(c);
    CHECK(run_until(&r.statuses, 1, 3000));
  }
  rec_t r;
  uvg_client_call_options_t co = {.timeout_ms = 3000};
  uvg_client_call_t *c = start(ch, "/t.T/Flood", &r, &co);
  uvg_client_call_send(c, "", 0, 0, NULL, NULL);
  uvg_client_call_half_close(c);
  CHECK(run_until(&r.statuses, 1, 4000));
  CHECK_EQ(r.code, UVG_STATUS_OK);
  CHECK_EQ(r.messages, 64);
  channel_close(ch);
  server_stop(s);
}

static void test_deadline_and_cancel(void) {
  int port = 0;
  uvg_server_t *s = server_on(&port);
  uvg_channel_t *ch = channel_to(port, NULL);
  int cancels0 = srv_cancels;
  rec_t r;
  uvg_client_call_options_t o = {.timeout_ms = 100};
  uvg_client_call_t *c = start(ch, "/t.T/Never", &r, &o);
  uvg_client_call_send(c, "", 0, 0, NULL, NULL);
  uvg_client_call_half_close(c);
  uv_update_time(loop);
  uint64_t t0 = uv_now(loop);
  CHECK(run_until(&r.statuses, 1, 3000));
  CHECK_EQ(r.code, UVG_STATUS_DEADLINE_EXCEEDED);
  CHECK(uv_now(loop) - t0 >= 90);
  CHECK(run_until(&srv_cancels, cancels0 + 1, 3000));
  /* cancel */
  c = start(ch, "/t.T/Bidi", &r, NULL);
  uvg_client_call_send(c, "x", 1, 0, NULL, NULL);
  CHECK(run_until(&r.messages, 1, 3000));
  CHECK_EQ(uvg_client_call_cancel(c), 0);
  CHECK_EQ(r.statuses, 0);
  CHECK(run_until(&r.statuses, 1, 3000));
  CHECK_EQ(r.code, UVG_STATUS_CANCELLED);
  CHECK(run_until(&srv_cancels, cancels0 + 2, 3000));
  channel_close(ch);
  server_stop(s);
}

/* ---- connectivity ---- */

static uvg_connectivity_t seen[16];
static int nseen;
static void on_state(uvg_channel_t *ch, uvg_connectivity_t st, void *ud) {
  (void)ud;
  if (nseen < 16) seen[nseen] = st;
  nseen++;
  if (st != UVG_STATE_SHUTDOWN) uvg_channel_watch_state(ch, st, on_state, NULL);
}

static void test_states_and_reconnect(void) {
  int port = 0;
  uvg_server_t *s = server_on(&port);
  uvg_channel_options_t o;
  memset(&o, 0, sizeof(o));
  o.backoff_initial_ms = 20;
  o.backoff_max_ms = 50;
  uvg_channel_t *ch = channel_to(port, &o);
  nseen = 0;
  CHECK_EQ(uvg_channel_watch_state(ch, UVG_STATE_IDLE, on_state, NULL), 0);
  CHECK_EQ(uvg_channel_state(ch, 1), UVG_STATE_CONNECTING);
  CHECK(run_until(&nseen, 2, 3000));
  CHECK_EQ(seen[0], UVG_STATE_CONNECTING);
  CHECK_EQ(seen[1], UVG_STATE_READY);
  /* the server goes: IDLE; a fail-fast call then finds no server */
  server_stop(s);
  CHECK(run_until(&nseen, 3, 3000));
  CHECK_EQ(seen[2], UVG_STATE_IDLE);
  unary_t u = {0};
  CHECK_EQ(uvg_channel_unary(ch, "/t.T/Echo", "a", 1, NULL, on_unary, &u), 0);
  CHECK(run_until(&u.calls, 1, 3000));
  CHECK_EQ(u.code, UVG_STATUS_UNAVAILABLE);
  CHECK(nseen >= 5);
  CHECK_EQ(seen[3], UVG_STATE_CONNECTING);
  CHECK_EQ(seen[4], UVG_STATE_TRANSIENT_FAILURE);
  /* a wait-for-ready call waits; the server comes back on the same port
   * and the channel's backoff finds it */
  unary_t w = {0};
  uvg_client_call_options_t wfr = {.wait_for_ready = 1, .timeout_ms = 3000};
  CHECK_EQ(uvg_channel_unary(ch, "/t.T/Echo", "back", 4, &wfr, on_unary, &w), 0);
  int never_flag = 0;
  run_until(&never_flag, 1, 100);
  CHECK_EQ(w.calls, 0);
  s = server_on(&port);
  CHECK(run_until(&w.calls, 1, 3000));
  CHECK_EQ(w.code, UVG_STATUS_OK);
  CHECK_STR(w.reply, "back");
  CHECK_EQ(uvg_channel_state(ch, 0), UVG_STATE_READY);
  /* close: a call in flight ends once with CANCELLED; watches see SHUTDOWN */
  rec_t r;
  start(ch, "/t.T/Never", &r, NULL);
  run_until(&never_flag, 1, 50);
  int before = nseen;
  channel_close(ch);
  CHECK_EQ(r.statuses, 1);
  CHECK_EQ(r.code, UVG_STATUS_CANCELLED);
  CHECK(nseen > before);
  CHECK_EQ(seen[(nseen - 1) % 16], UVG_STATE_SHUTDOWN);
  server_stop(s);
}

/* After idle_timeout_ms without calls the channel closes its connection
 * and is IDLE; the next call connects again. */
static void test_idle_timeout(void) {
  int port = 0;
  uvg_server_t *s = server_on(&port);
  uvg_channel_options_t o;
  memset(&o, 0, sizeof(o));
  o.idle_timeout_ms = 50;
  uvg_channel_t *ch = channel_to(port, &o);
  unary_t u = {0};
  uvg_channel_unary(ch, "/t.T/Echo", "a", 1, NULL, on_unary, &u);
  CHECK(run_until(&u.calls, 1, 3000));
  CHECK_EQ(uvg_channel_state(ch, 0), UVG_STATE_READY);
  nseen = 0;
  CHECK_EQ(uvg_channel_watch_state(ch, UVG_STATE_READY, on_state, NULL), 0);
  uv_update_time(loop);
  uint64_t t0 = uv_now(loop);
  CHECK(run_until(&nseen, 1, 3000));
  CHECK_EQ(seen[0], UVG_STATE_IDLE);
  CHECK(uv_now(loop) - t0 >= 40);
  uvg_server_stats_t st0, st1;
  uvg_server_get_stats(s, &st0);
  int flag = 0;
  run_until(&flag, 1, 50);
  uvg_server_get_stats(s, &st1);
  CHECK_EQ(st1.connections_open, 0); /* the connection is gone */
  unary_t v = {0};
  uvg_channel_unary(ch, "/t.T/Echo", "b", 1, NULL, on_unary, &v);
  CHECK(run_until(&v.calls, 1, 3000));
  CHECK_EQ(v.code, UVG_STATUS_OK);
  uvg_server_get_stats(s, &st1);
  CHECK_EQ(st1.connections_accepted, st0.connections_accepted + 1);
  /* connected without a call, it goes idle too */
  nseen = 0;
  CHECK_EQ(uvg_channel_watch_state(ch, UVG_STATE_READY, on_state, NULL), 0);
  CHECK(run_until(&nseen, 1, 3000)); /* idle again after the call */
  CHECK_EQ(seen[0], UVG_STATE_IDLE);
  CHECK_EQ(uvg_channel_state(ch, 1), UVG_STATE_CONNECTING);
  int was_ready = 0, idle_after = 0;
  for (int k = 0; k < 300 && !idle_after; k++) {
    run_until(&flag, 1, 5);
    uvg_connectivity_t now = uvg_channel_state(ch, 0);
    if (now == UVG_STATE_READY) was_ready = 1;
    if (was_ready && now == UVG_STATE_IDLE) idle_after = 1;
  }
  CHECK(was_ready);
  CHECK(idle_after);
  channel_close(ch);
  server_stop(s);
}

/* A wait-for-ready call to nothing ends at its deadline. */
static void test_wait_for_ready_deadline(void) {
  uvg_channel_t *ch = channel_to(1, NULL); /* nothing listens on port 1 */
  unary_t u = {0};
  uvg_client_call_options_t o = {.wait_for_ready = 1, .timeout_ms = 150};
  CHECK_EQ(uvg_channel_unary(ch, "/t.T/Echo", "a", 1, &o, on_unary, &u), 0);
  CHECK(run_until(&u.calls, 1, 3000));
  CHECK_EQ(u.code, UVG_STATUS_DEADLINE_EXCEEDED);
  channel_close(ch);
}

/* A call that only waits (wait-for-ready through backoff, nothing
 * listening) keeps uv_run() going until it ends; then uv_run() returns. */
static void test_waiting_call_keeps_loop_alive(void) {
  uvg_channel_options_t o;
  memset(&o, 0, sizeof(o));
  o.backoff_initial_ms = 20;
  uvg_channel_t *ch = channel_to(1, &o);
  unary_t u = {0};
  uvg_client_call_options_t co = {.wait_for_ready = 1, .timeout_ms = 300};
  CHECK_EQ(uvg_channel_unary(ch, "/t.T/Echo", "a", 1, &co, on_unary, &u), 0);
  uv_update_time(loop);
  uint64_t t0 = uv_now(loop);
  uv_run(loop, UV_RUN_DEFAULT);
  CHECK_EQ(u.calls, 1);
  CHECK_EQ(u.code, UVG_STATUS_DEADLINE_EXCEEDED);
  CHECK(uv_now(loop) - t0 >= 290);
  channel_close(ch);
}

/* An idle channel and a closed server leave nothing that keeps the loop
 * running: uv_run() returns. */
static void test_idle_channel_does_not_keep_loop_alive(void) {
  int port = 0;
  uvg_server_t *s = server_on(&port);
  uvg_channel_t *ch = channel_to(port, NULL);
  unary_t u = {0};
  uvg_channel_unary(ch, "/t.T/Echo", "a", 1, NULL, on_unary, &u);
  CHECK(run_until(&u.calls, 1, 3000));
  CHECK_EQ(uvg_channel_state(ch, 0), UVG_STATE_READY);
  uvg_server_close(s, on_srv_closed, NULL);
  /* returns once the server is gone, although the channel stays open */
  uv_update_time(loop);
  uint64_t t0 = uv_now(loop);
  uv_run(loop, UV_RUN_DEFAULT);
  CHECK(uv_now(loop) - t0 < 2000);
  channel_close(ch);
}

static void test_bad_arguments(void) {
  uvg_channel_t *ch;
  CHECK_EQ(uvg_channel_new(loop, "127.0.0.1:1", NULL, NULL, &ch), UVG_ENOCREDS);
  CHECK_EQ(uvg_channel_new(loop, "ipv4:1.2.3", uvg_insecure_channel_credentials(),
                           NULL, &ch),
           UVG_EADDR);
  /* names go to the system resolver: a DNS server of its own is refused */
  CHECK_EQ(uvg_channel_new(loop, "dns://127.0.0.1:53/localhost:1",
                           uvg_insecure_channel_credentials(), NULL, &ch),
           UVG_EADDR);
  CHECK_EQ(uvg_channel_new(loop, "dns:///localhost:1",
                           uvg_insecure_channel_credentials(), NULL, &ch), 0);
  uvg_channel_close(ch, NULL, NULL);
  ch = channel_to(1, NULL);
  uvg_client_call_t *c;
  uvg_client_call_cbs_t none = {0};
  CHECK_EQ(uvg_client_call_start(ch, "/t.T/Echo", NULL, &none, NULL, &c), UVG_EINVAL);
  const uvg_metadata_t bad = {"Bad Key", (const uint8_t *)"v", 1};
  uvg_client_call_options_t o = {.metadata = &bad, .nmetadata = 1};
  rec_t r;
  CHECK_EQ(uvg_client_call_start(ch, "/t.T/Echo", &o, &rec_cbs, &r, &c), UVG_EINVAL);
  channel_close(ch);
}

/* 10,000 calls of every kind with random cancels and deadlines, and the
 * server closed under the last ones: every call ends exactly once. */
typedef struct {
  int statuses;
  uvg_client_call_t *call;
} stress_t;
static int stress_done, stress_internal;
static void st_message(uvg_client_call_t *call, const uint8_t *msg, size_t len,
                       void *ud) {
  (void)msg;
  (void)len;
  (void)ud;
  uvg_client_call_read(call);
}
static void st_status(uvg_client_call_t *call, const uvg_status_t *st,
                      const uvg_metadata_t *tr, size_t n, void *ud) {
  stress_t *x = ud;
  (void)call;
  (void)tr;
  (void)n;
  if (st->code == UVG_STATUS_INTERNAL || st->code == UVG_STATUS_UNKNOWN) {
    if (stress_internal++ == 0)
      fprintf(stderr, "  unexpected %s: %s\n", uvg_status_code_name(st->code),
              st->message);
  }
  x->statuses++;
  x->call = NULL;
  stress_done++;
}
static const uvg_client_call_cbs_t stress_cbs = {NULL, st_message, st_status};

static int h2_errors;
static void count_h2_errors(uvg_log_level_t level, const char *line, void *ud) {
  (void)ud;
  if (level <= UVG_LOG_WARN && strstr(line, "HTTP/2 error") != NULL) {
    if (h2_errors++ == 0) fprintf(stderr, "  %s\n", line);
  }
}

static void test_stress_exactly_once(void) {
  uvg_set_log_cb(count_h2_errors, NULL);
  h2_errors = 0;
  enum { N = 10000, WAVE = 200 };
  static stress_t calls[N];
  static const char *paths[] = {"/t.T/Echo", "/t.T/Never", "/t.T/Many",
                                "/t.T/Sum", "/t.T/Bidi", "/t.T/Fail"};
  int port = 0;
  uvg_server_t *s = server_on(&port);
  uvg_channel_t *ch = channel_to(port, NULL);
  memset(calls, 0, sizeof(calls));
  stress_done = 0;
  srand(7);
  int started = 0;
  for (int w = 0; w < N / WAVE; w++) {
    for (int i = 0; i < WAVE; i++, started++) {
      stress_t *x = &calls[started];
      uvg_client_call_options_t o = {.timeout_ms = (uint64_t)(rand() % 3 ? 0 : 1 + rand() % 20)};
      const char *path = paths[rand() % 6];
      CHECK_EQ(uvg_client_call_start(ch, path, &o, &stress_cbs, x, &x->call), 0);
      uvg_client_call_read(x->call);
      uvg_client_call_send(x->call, "3", 1, 0, NULL, NULL);
      if (rand() % 2) uvg_client_call_half_close(x->call);
      if (rand() % 5 == 0) uvg_client_call_cancel(x->call);
    }
    /* some calls are cancelled later, from the loop */
    for (int k = 0; k < 5; k++) {
      uv_run(loop, UV_RUN_NOWAIT);
      for (int i = started - WAVE; i < started; i++)
        if (calls[i].call != NULL && rand() % 4 == 0)
          uvg_client_call_cancel(calls[i].call);
    }
  }
  /* the rest: those still open are cancelled; the server goes away */
  for (int i = 0; i < N; i++)
    if (calls[i].call != NULL && rand() % 2) uvg_client_call_cancel(calls[i].call);
  uvg_server_close(s, on_srv_closed, NULL);
  CHECK(run_until(&stress_done, N, 20000));
  int twice = 0;
  for (int i = 0; i < N; i++) twice += calls[i].statuses != 1;
  CHECK_EQ(twice, 0);
  CHECK_EQ(stress_done, N);
  CHECK_EQ(stress_internal, 0);
  /* neither side found the other breaking HTTP/2 */
  CHECK_EQ(h2_errors, 0);
  uvg_set_log_cb(NULL, NULL);
  channel_close(ch);
}

/* A server that allows 2 streams at a time: 20 calls queue and all
 * succeed. */
static void test_max_concurrent_streams_queue(void) {
  uvg_server_options_t so;
  memset(&so, 0, sizeof(so));
  so.max_concurrent_streams = 2;
  uvg_server_t *s;
  int port;
  CHECK_EQ(uvg_server_new(loop, &so, &s), 0);
  CHECK_EQ(uvg_server_register(s, methods, 7), 0);
  CHECK_EQ(uvg_server_listen(s, "127.0.0.1:0", uvg_insecure_server_credentials(), &port), 0);
  uvg_channel_t *ch = channel_to(port, NULL);
  /* settle the connection first so the SETTINGS limit is known */
  unary_t first = {0};
  uvg_channel_unary(ch, "/t.T/Echo", "0", 1, NULL, on_unary, &first);
  CHECK(run_until(&first.calls, 1, 3000));
  static unary_t u[20];
  int done = 0;
  memset(u, 0, sizeof(u));
  for (int i = 0; i < 20; i++)
    CHECK_EQ(uvg_channel_unary(ch, "/t.T/Echo", "x", 1, NULL, on_unary, &u[i]), 0);
  for (int k = 0; k < 400 && done < 20; k++) {
    int flag = 0;
    run_until(&flag, 1, 5);
    done = 0;
    for (int i = 0; i < 20; i++) done += u[i].calls;
  }
  CHECK_EQ(done, 20);
  for (int i = 0; i < 20; i++) CHECK_EQ(u[i].code, UVG_STATUS_OK);
  channel_close(ch);
  server_stop(s);
}

/* Client interceptors: metadata changed before the request leaves, a call
 * refused before it starts, messages both ways and the status, in order. */
static char ic_log[256];
static void ic_note(const char *what) {
  size_t n = strlen(ic_log);
  snprintf(ic_log + n, sizeof(ic_log) - n, "%s ", what);
}
static int ic_start(uvg_client_call_t *call, void *data, uvg_status_t *reject) {
  ic_note((const char *)data);
  if (strcmp(uvg_client_call_method(call), "/t.T/Fail") == 0) {
    reject->code = UVG_STATUS_PERMISSION_DENIED;
    reject->message = "not for you";
    return 1;
  }
  const uvg_metadata_t *md;
  size_t n = uvg_client_call_metadata(call, &md);
  CHECK_EQ(n, 1);
  CHECK_EQ(uvg_client_call_set_metadata(call, "x-req", "changed", 7), 0);
  CHECK_EQ(uvg_client_call_set_metadata(call, "Bad", "v", 1), UVG_EINVAL);
  return 0;
}
static void ic_send(uvg_client_call_t *call, const uint8_t *msg, size_t len, void *d) {
  (void)call;
  (void)msg;
  (void)len;
  ic_note(strcmp(d, "A") == 0 ? "sendA" : "sendB");
}
static void ic_recv(uvg_client_call_t *call, const uint8_t *msg, size_t len, void *d) {
  (void)call;
  (void)msg;
  (void)len;
  ic_note(strcmp(d, "A") == 0 ? "recvA" : "recvB");
}
static void ic_status(uvg_client_call_t *call, const uvg_status_t *st, void *d) {
  (void)call;
  (void)st;
  ic_note(strcmp(d, "A") == 0 ? "statusA" : "statusB");
}
static void test_interceptors(void) {
  int port = 0;
  uvg_server_t *s = server_on(&port);
  uvg_channel_t *ch = channel_to(port, NULL);
  static const uvg_client_interceptor_t ic = {ic_start, ic_send, ic_recv, ic_status};
  CHECK_EQ(uvg_channel_add_interceptor(ch, &ic, "A"), 0);
  CHECK_EQ(uvg_channel_add_interceptor(ch, &ic, "B"), 0);
  ic_log[0] = '\0';
  unary_t u = {0};
  const uvg_metadata_t md = {"x-req", (const uint8_t *)"orig", 4};
  uvg_client_call_options_t o = {.metadata = &md, .nmetadata = 1};
  CHECK_EQ(uvg_channel_unary(ch, "/t.T/Echo", "hi", 2, &o, on_unary, &u), 0);
  CHECK(run_until(&u.calls, 1, 3000));
  CHECK_EQ(u.code, UVG_STATUS_OK);
  CHECK_STR(srv_seen_md, "changed");
  CHECK_STR(ic_log, "sendA sendB A B recvA recvB statusB statusA ");
  /* refused before it starts: no request reaches the server */
  ic_log[0] = '\0';
  int done0 = srv_done;
  unary_t v = {0};
  CHECK_EQ(uvg_channel_unary(ch, "/t.T/Fail", "", 0, NULL, on_unary, &v), 0);
  CHECK(run_until(&v.calls, 1, 3000));
  CHECK_EQ(v.code, UVG_STATUS_PERMISSION_DENIED);
  CHECK_STR(v.message, "not for you");
  CHECK_STR(ic_log, "sendA sendB A ");
  int flag = 0;
  run_until(&flag, 1, 50);
  CHECK_EQ(srv_done, done0);
  channel_close(ch);
  server_stop(s);
}

/* A server in a child process, on its own loop, at `port` (0: any); the
 * bound port comes back through a pipe. */
static pid_t server_process(int *port) {
  int fds[2];
  CHECK_EQ(pipe(fds), 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    uv_loop_t child;
    uv_loop_init(&child);
    loop = &child;
    uvg_server_t *s = server_on(port);
    if (write(fds[1], port, sizeof(*port)) != (ssize_t)sizeof(*port)) _exit(1);
    (void)s;
    uv_run(&child, UV_RUN_DEFAULT);
    _exit(0);
  }
  close(fds[1]);
  CHECK_EQ(read(fds[0], port, sizeof(*port)), (ssize_t)sizeof(*port));
  close(fds[0]);
  return pid;
}

/* The server process is killed under calls in flight: each ends once,
 * UNAVAILABLE. A server started again on the port is found by the
 * channel's backoff and later calls succeed. */
static void test_server_killed_and_restarted(void) {
  enum { N = 20 };
  int port = 0;
  pid_t pid = server_process(&port);
  uvg_channel_options_t o;
  memset(&o, 0, sizeof(o));
  o.backoff_initial_ms = 20;
  o.backoff_max_ms = 100;
  uvg_channel_t *ch = channel_to(port, &o);
  static rec_t r[N];
  int echoed = 0;
  for (int i = 0; i < N; i++) {
    uvg_client_call_t *c = start(ch, "/t.T/Bidi", &r[i], NULL);
    uvg_client_call_send(c, "x", 1, 0, NULL, NULL);
  }
  for (int k = 0; k < 400 && echoed < N; k++) {
    int flag = 0;
    run_until(&flag, 1, 5);
    echoed = 0;
    for (int i = 0; i < N; i++) echoed += r[i].messages;
  }
  CHECK_EQ(echoed, N); /* every call is under way */
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  int ended = 0;
  for (int k = 0; k < 400 && ended < N; k++) {
    int flag = 0;
    run_until(&flag, 1, 5);
    ended = 0;
    for (int i = 0; i < N; i++) ended += r[i].statuses;
  }
  for (int i = 0; i < N; i++) {
    CHECK_EQ(r[i].statuses, 1);
    CHECK_EQ(r[i].code, UVG_STATUS_UNAVAILABLE);
  }
  pid = server_process(&port);
  unary_t u = {0};
  uvg_client_call_options_t wfr = {.wait_for_ready = 1, .timeout_ms = 3000};
  CHECK_EQ(uvg_channel_unary(ch, "/t.T/Echo", "again", 5, &wfr, on_unary, &u), 0);
  CHECK(run_until(&u.calls, 1, 4000));
  CHECK_EQ(u.code, UVG_STATUS_OK);
  CHECK_STR(u.reply, "again");
  channel_close(ch);
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
}

int main(void) {
  loop = uv_default_loop();
  uvg_set_log_cb(NULL, NULL);
  RUN(test_unary);
  RUN(test_four_kinds_and_metadata);
  RUN(test_read_pacing);
  RUN(test_cancelled_calls_free_the_window);
  RUN(test_deadline_and_cancel);
  RUN(test_states_and_reconnect);
  RUN(test_wait_for_ready_deadline);
  RUN(test_idle_timeout);
  RUN(test_idle_channel_does_not_keep_loop_alive);
  RUN(test_waiting_call_keeps_loop_alive);
  RUN(test_bad_arguments);
  RUN(test_max_concurrent_streams_queue);
  RUN(test_interceptors);
  RUN(test_stress_exactly_once);
  RUN(test_server_killed_and_restarted);
  uv_run(loop, UV_RUN_DEFAULT);
  CHECK_EQ(uv_loop_close(loop), 0);
  TEST_EXIT();
}

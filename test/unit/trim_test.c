/* Idle connections give memory back: once a connection has had no stream
 * for a while, both sides give nghttp2's outbound frame buffer and its
 * empty stream map back to the kernel, and the connection goes on working
 * after it: calls with header blocks of several pages and large messages,
 * each one after the last trim, all come back whole. A connection with a
 * stream open is never trimmed. */
#include <unistd.h>

#include "loop_wait.h"
#include "test.h"
#include "uvgrpc.h"
#include "workq.h"

#define METHOD "/trim.Test/Echo"
#define STREAM "/trim.Test/Hold"
#define PAD_LEN 6000 /* header blocks of two pages */
#define MSG_LEN (100 * 1024)

static char pad[PAD_LEN + 1];
static uint8_t req[MSG_LEN];
static int replies, bad, held_open, held_done;

static void on_echo(uvg_call_t *call, const uint8_t *msg, size_t len) {
  const uvg_metadata_t *md = uvg_call_metadata_get(call, "pad");
  uvg_metadata_t back = {"pad-back", (const uint8_t *)pad, PAD_LEN};
  if (md == NULL || md->value_len != PAD_LEN || memcmp(md->value, pad, PAD_LEN) != 0) {
    uvg_call_finish(call, UVG_STATUS_INVALID_ARGUMENT, "metadata damaged", NULL, 0);
    return;
  }
  uvg_call_send_headers(call, &back, 1);
  uvg_call_send(call, msg, len, 0, NULL, NULL);
  uvg_call_finish(call, UVG_STATUS_OK, NULL, &back, 1);
}

static void on_done(uvg_call_t *call, const uvg_status_t *st) {
  (void)call;
  (void)st;
}

static void on_reply(const uvg_status_t *st, const uint8_t *reply, size_t len,
                     void *data) {
  (void)data;
  if (st->code != UVG_STATUS_OK || len != MSG_LEN || memcmp(reply, req, len) != 0) {
    fprintf(stderr, "  call failed: %d %s (%zu bytes)\n", st->code, st->message, len);
    bad++;
  }
  replies++;
}

static void on_small(uvg_call_t *call, const uint8_t *msg, size_t len) {
  uvg_call_send(call, msg, len, 0, NULL, NULL);
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}

/* A server-streaming call the server holds open until told. */
static uvg_call_t *held;
static void on_hold(uvg_call_t *call, const uint8_t *msg, size_t len) {
  (void)msg;
  (void)len;
  held = call;
  held_open = 1;
}
static void on_stream_status(uvg_client_call_t *c, const uvg_status_t *st,
                             const uvg_metadata_t *tr, size_t n, void *d) {
  (void)c;
  (void)tr;
  (void)n;
  (void)d;
  if (st->code != UVG_STATUS_OK) bad++;
  held_done = 1;
}

static void test_idle_connections_give_memory_back(void) {
  uv_loop_t loop;
  uvg__sched_t *sched;
  uvg_server_t *srv;
  uvg_channel_t *ch;
  int port;
  char target[64];
  uvg_method_t m[] = {
      {.path = METHOD, .type = UVG_METHOD_UNARY, .on_call = on_echo, .on_done = on_done},
      {.path = STREAM, .type = UVG_METHOD_SERVER_STREAMING, .on_call = on_hold,
       .on_done = on_done}};
  memset(pad, 'p', PAD_LEN);
  for (int i = 0; i < PAD_LEN; i += 7) pad[i] = (char)('a' + i % 26);

  CHECK_EQ(uv_loop_init(&loop), 0);
  /* the scheduler the server and the channel will share, trimming fast */
  CHECK_EQ(uvg__sched_acquire(&loop, &sched), 0);
  sched->idle_trim_ms = 30;
  CHECK_EQ(uvg_server_new(&loop, NULL, &srv), 0);
  CHECK_EQ(uvg_server_register(srv, m, 2), 0);
  CHECK_EQ(uvg_server_listen(srv, "127.0.0.1:0", uvg_insecure_server_credentials(), &port),
           0);
  snprintf(target, sizeof(target), "ipv4:127.0.0.1:%d", port);
  CHECK_EQ(uvg_channel_new(&loop, target, uvg_insecure_channel_credentials(), NULL, &ch),
           0);

  uvg_metadata_t md = {"pad", (const uint8_t *)pad, PAD_LEN};
  uvg_client_call_options_t o = {.metadata = &md, .nmetadata = 1, .timeout_ms = 5000};
  for (int round = 0; round < 5; round++) {
    for (size_t i = 0; i < MSG_LEN; i++) req[i] = (uint8_t)(i * 31 + round);
    uint64_t trims = sched->idle_trims, trimmed = sched->idle_trimmed;
    CHECK_EQ(uvg_channel_unary(ch, METHOD, req, MSG_LEN, &o, on_reply, NULL), 0);
    CHECK(wait_count(&loop, &replies, round + 1, 5000));
    /* both ends of the connection, each giving back its frame buffer
     * (16 KiB) and its emptied stream map (a page at least) */
    int want = (int)trims + 2, now;
    for (int t = 0; t < 200 && (now = (int)sched->idle_trims) < want; t++)
      wait_ms(&loop, 5);
    CHECK_EQ(sched->idle_trims, (uint64_t)want);
    CHECK(sched->idle_trimmed - trimmed >= 2 * (16384 + 4096));
    /* and the kernel agrees: no page of either side's runs is resident */
    CHECK_EQ(uvg__pages_resident(&sched->pages), 0);
  }
  CHECK_EQ(replies, 5);

  /* A stream open holds the connection busy: no trim while it lasts. */
  uvg_client_call_t *call;
  uvg_client_call_cbs_t cbs = {.on_status = on_stream_status};
  CHECK_EQ(uvg_client_call_start(ch, STREAM, NULL, &cbs, NULL, &call), 0);
  CHECK_EQ(uvg_client_call_send(call, "", 0, 0, NULL, NULL), 0);
  CHECK_EQ(uvg_client_call_half_close(call), 0);
  CHECK(wait_count(&loop, &held_open, 1, 5000));
  uint64_t trims = sched->idle_trims;
  wait_ms(&loop, 200);
  CHECK_EQ(sched->idle_trims, trims);
  uvg_call_finish(held, UVG_STATUS_OK, NULL, NULL, 0);
  CHECK(wait_count(&loop, &held_done, 1, 5000));
  CHECK_EQ(bad, 0);

  uvg_channel_close(ch, NULL, NULL);
  uvg_server_close(srv, NULL, NULL);
  uvg__sched_release(sched);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ(uv_loop_close(&loop), 0);
}

/* Ten thousand connections that go idle together must not stall the loop:
 * trims come at most a batch (64) per loop turn. */
#define NCH 100
static uvg__sched_t *batch_sched;
static uint64_t last_trims, most_per_turn;
static void count_turn(uv_check_t *h) {
  (void)h;
  uint64_t d = batch_sched->idle_trims - last_trims;
  if (d > most_per_turn) most_per_turn = d;
  last_trims = batch_sched->idle_trims;
}

static uint64_t trims_wanted;
static void stop_when_trimmed(uv_timer_t *t) {
  if (batch_sched->idle_trims >= trims_wanted) uv_stop(t->loop);
}

static void on_small_reply(const uvg_status_t *st, const uint8_t *reply,
                           size_t len, void *data) {
  (void)reply;
  (void)len;
  (void)data;
  if (st->code != UVG_STATUS_OK) bad++;
  replies++;
}

static void test_trims_come_in_batches(void) {
  uv_loop_t loop;
  uvg_server_t *srv;
  static uvg_channel_t *ch[NCH];
  int port;
  char target[64];
  uvg_method_t m = {.path = METHOD, .type = UVG_METHOD_UNARY,
                    .on_call = on_small, .on_done = on_done};
  CHECK_EQ(uv_loop_init(&loop), 0);
  CHECK_EQ(uvg__sched_acquire(&loop, &batch_sched), 0);
  batch_sched->idle_trim_ms = 200;
  CHECK_EQ(uvg_server_new(&loop, NULL, &srv), 0);
  CHECK_EQ(uvg_server_register(srv, &m, 1), 0);
  CHECK_EQ(uvg_server_listen(srv, "127.0.0.1:0", uvg_insecure_server_credentials(), &port),
           0);
  snprintf(target, sizeof(target), "ipv4:127.0.0.1:%d", port);
  replies = bad = 0;
  for (int i = 0; i < NCH; i++) {
    CHECK_EQ(uvg_channel_new(&loop, target, uvg_insecure_channel_credentials(), NULL,
                             &ch[i]),
             0);
    CHECK_EQ(uvg_channel_unary(ch[i], METHOD, "x", 1, NULL, on_small_reply, NULL), 0);
  }
  CHECK(wait_count(&loop, &replies, NCH, 10000));
  /* One timer phase per loop turn, as an application's uv_run() does
   * (UV_RUN_ONCE runs the timers twice); a check handle sees each turn. */
  uv_check_t check;
  uv_timer_t stop;
  uv_check_init(&loop, &check);
  uv_timer_init(&loop, &stop);
  last_trims = batch_sched->idle_trims;
  trims_wanted = last_trims + 2 * NCH; /* both ends of each connection */
  uv_check_start(&check, count_turn);
  uv_timer_start(&stop, stop_when_trimmed, 5, 5);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&check, NULL);
  uv_close((uv_handle_t *)&stop, NULL);
  CHECK(batch_sched->idle_trims >= 2 * NCH);
  CHECK(most_per_turn > 0 && most_per_turn <= 64);
  fprintf(stderr, "  %d trims, at most %d in one loop turn\n", 2 * NCH, (int)most_per_turn);
  CHECK_EQ(bad, 0);
  for (int i = 0; i < NCH; i++) uvg_channel_close(ch[i], NULL, NULL);
  uvg_server_close(srv, NULL, NULL);
  uvg__sched_release(batch_sched);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ(uv_loop_close(&loop), 0);
}

int main(void) {
  alarm(50); /* a hang fails the test instead of stalling the suite */
  RUN(test_idle_connections_give_memory_back);
  RUN(test_trims_come_in_batches);
  TEST_EXIT();
}

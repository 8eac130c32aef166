/* The allocation-failure sweep through generated code: typed handlers on a
 * server and typed stubs on a channel to it, the four kinds of RPC
 * (uvg.test.v1.Kinds), packing and unpacking through the library's
 * allocator. The Nth allocation fails, for every N of the exchange; every
 * call ends once on each side, a call that ends OK got every message, no
 * call waits for its deadline, nothing runs inside a library function,
 * and everything allocated is given back. */
#include <signal.h>
#include <uvgrpc.h>

#include "test.h"
#include "uvg/test/v1/kinds.uvgrpc.h"

typedef Uvg__Test__V1__Outer__Inner inner_t;

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

enum { UNARY, FAN, SUM, CHAT, NCALLS };
enum { ROUNDS = 3 };
static const char *const names[NCALLS] = {"Unary", "Fan", "Sum", "Chat"};

static struct {
  int in_api, reentered;
  int s_calls, s_dones;
  int c_started[NCALLS], c_statuses[NCALLS], c_code[NCALLS], c_msgs[NCALLS];
  int server_closed, channel_closed;
} T;

#define API(expr) (T.in_api++, (expr), T.in_api--)
static void entered(void) { T.reentered += T.in_api > 0; }

/* ---- server: typed handlers ---- */

/* A call's data: seen by a handler, then finished by it. A request that
 * does not decode (its arena could not be allocated) ends the call before
 * any handler sees it; on_done still runs for it, with no data set. */
static int seen_mark, finished_mark;
static void s_finish(uvg_call_t *call, uvg_status_code_t code) {
  if (uvg_call_get_data(call) == &finished_mark) return;
  uvg_call_set_data(call, &finished_mark);
  API(uvg_call_finish(call, code, NULL, NULL, 0));
}

static void unary(uvg_call_t *call, const inner_t *req) {
  entered();
  T.s_calls++;
  inner_t reply = UVG__TEST__V1__OUTER__INNER__INIT;
  reply.value = req->value + 1;
  reply.text = "echo";
  uvg_call_set_data(call, &finished_mark); /* the reply finishes it */
  API(uvg__test__v1__Kinds__Unary__reply(call, &reply));
}
static void fan(uvg_call_t *call, const inner_t *req) {
  entered();
  T.s_calls++;
  uvg_call_set_data(call, &seen_mark);
  for (int i = 0; i < req->value; i++) {
    inner_t m = UVG__TEST__V1__OUTER__INNER__INIT;
    m.value = i;
    m.text = "fan";
    int rc;
    API(rc = uvg__test__v1__Kinds__Fan__send(call, &m, 0, NULL, NULL));
    if (rc != 0) {
      s_finish(call, UVG_STATUS_RESOURCE_EXHAUSTED);
      return;
    }
  }
  s_finish(call, UVG_STATUS_OK);
}
static void stream_call(uvg_call_t *call) {
  entered();
  T.s_calls++;
  uvg_call_set_data(call, &seen_mark);
}
static int32_t sums[1];
static void sum_message(uvg_call_t *call, const inner_t *msg) {
  (void)call;
  entered();
  sums[0] += msg->value;
}
static void sum_half_close(uvg_call_t *call) {
  entered();
  Uvg__Test__V1__Total reply = UVG__TEST__V1__TOTAL__INIT;
  reply.sum = sums[0];
  uvg_call_set_data(call, &finished_mark);
  API(uvg__test__v1__Kinds__Sum__reply(call, &reply));
}
static void chat_message(uvg_call_t *call, const inner_t *msg) {
  entered();
  inner_t m = UVG__TEST__V1__OUTER__INNER__INIT;
  m.value = msg->value;
  m.text = "chat";
  int rc;
  API(rc = uvg__test__v1__Kinds__Chat__send(call, &m, 0, NULL, NULL));
  if (rc != 0) s_finish(call, UVG_STATUS_RESOURCE_EXHAUSTED);
}
static void chat_half_close(uvg_call_t *call) {
  entered();
  s_finish(call, UVG_STATUS_OK);
}
static void s_cancel(uvg_call_t *call, const uvg_status_t *st) {
  (void)st;
  entered();
  s_finish(call, UVG_STATUS_CANCELLED);
}
static void s_done(uvg_call_t *call, const uvg_status_t *st) {
  entered();
  if (uvg_call_get_data(call) != NULL) T.s_dones++;
  else CHECK_EQ(st->code, UVG_STATUS_INTERNAL);
}

static const uvg__test__v1__Kinds__server_t impl = {
    .Unary = {unary, s_cancel, s_done},
    .Fan = {fan, s_cancel, s_done},
    .Sum = {stream_call, sum_message, sum_half_close, s_cancel, s_done},
    .Chat = {stream_call, chat_message, chat_half_close, s_cancel, s_done},
};

/* ---- client: typed stubs ---- */

static int kinds[NCALLS] = {UNARY, FAN, SUM, CHAT};

static void ended(int k, const uvg_status_t *st) {
  entered();
  T.c_statuses[k]++;
  T.c_code[k] = st->code;
}

static void on_unary(const uvg_status_t *st, const inner_t *reply, void *ud) {
  (void)ud;
  T.c_msgs[UNARY] += reply != NULL && reply->value == 42;
  ended(UNARY, st);
}

static void fan_message(uvg__test__v1__Kinds__Fan__client_call_t *call,
                        const inner_t *msg, void *ud) {
  (void)ud;
  entered();
  T.c_msgs[FAN] += msg->value == T.c_msgs[FAN];
  API(uvg__test__v1__Kinds__Fan__client_read(call));
}
static void fan_status(uvg__test__v1__Kinds__Fan__client_call_t *call,
                       const uvg_status_t *st, const uvg_metadata_t *tr,
                       size_t n, void *ud) {
  (void)call;
  (void)tr;
  (void)n;
  (void)ud;
  ended(FAN, st);
}

static void sum_status(uvg__test__v1__Kinds__Sum__client_call_t *call,
                       const uvg_status_t *st, const Uvg__Test__V1__Total *t,
                       const uvg_metadata_t *tr, size_t n, void *ud) {
  (void)call;
  (void)tr;
  (void)n;
  (void)ud;
  T.c_msgs[SUM] += t != NULL && t->sum == 6;
  ended(SUM, st);
}

static int chat_send(uvg__test__v1__Kinds__Chat__client_call_t *call, int v) {
  inner_t m = UVG__TEST__V1__OUTER__INNER__INIT;
  m.value = v;
  m.text = "chat";
  int rc;
  API(rc = uvg__test__v1__Kinds__Chat__client_send(call, &m, 0, NULL, NULL));
  if (rc != 0) API(uvg__test__v1__Kinds__Chat__client_cancel(call));
  return rc;
}
static void chat_msg(uvg__test__v1__Kinds__Chat__client_call_t *call,
                     const inner_t *msg, void *ud) {
  (void)ud;
  entered();
  int i = T.c_msgs[CHAT]++;
  CHECK_EQ(msg->value, i);
  if (i + 1 < ROUNDS && chat_send(call, i + 1) != 0) return;
  if (i + 1 == ROUNDS) API(uvg__test__v1__Kinds__Chat__client_half_close(call));
  API(uvg__test__v1__Kinds__Chat__client_read(call));
}
static void chat_status(uvg__test__v1__Kinds__Chat__client_call_t *call,
                        const uvg_status_t *st, const uvg_metadata_t *tr,
                        size_t n, void *ud) {
  (void)call;
  (void)tr;
  (void)n;
  (void)ud;
  ended(CHAT, st);
}

static void start_calls(uvg_channel_t *ch) {
  static const uvg__test__v1__Kinds__Fan__client_cbs_t fan_cbs = {
      NULL, fan_message, fan_status};
  static const uvg__test__v1__Kinds__Sum__client_cbs_t sum_cbs = {NULL,
                                                                  sum_status};
  static const uvg__test__v1__Kinds__Chat__client_cbs_t chat_cbs = {
      NULL, chat_msg, chat_status};
  uvg_client_call_options_t o = {.timeout_ms = 5000};
  inner_t req = UVG__TEST__V1__OUTER__INNER__INIT;
  int rc;
  req.value = 41;
  req.text = "hi";
  API(rc = uvg__test__v1__Kinds__Unary__client_unary(ch, &req, &o, on_unary,
                                                     &kinds[UNARY]));
  T.c_started[UNARY] = rc == 0;

  uvg__test__v1__Kinds__Fan__client_call_t *fc;
  req.value = ROUNDS;
  API(rc = uvg__test__v1__Kinds__Fan__client_start(ch, &req, &o, &fan_cbs,
                                                   NULL, &fc));
  T.c_started[FAN] = rc == 0;
  if (rc == 0) API(uvg__test__v1__Kinds__Fan__client_read(fc));

  uvg__test__v1__Kinds__Sum__client_call_t *sc;
  API(rc = uvg__test__v1__Kinds__Sum__client_start(ch, &o, &sum_cbs, NULL, &sc));
  T.c_started[SUM] = rc == 0;
  for (int i = 1; rc == 0 && i <= ROUNDS; i++) {
    req.value = i;
    API(rc = uvg__test__v1__Kinds__Sum__client_send(sc, &req, 0, NULL, NULL));
    if (rc != 0) API(uvg__test__v1__Kinds__Sum__client_cancel(sc));
  }
  if (rc == 0) API(uvg__test__v1__Kinds__Sum__client_half_close(sc));

  uvg__test__v1__Kinds__Chat__client_call_t *cc;
  API(rc = uvg__test__v1__Kinds__Chat__client_start(ch, &o, &chat_cbs, NULL,
                                                    &cc));
  T.c_started[CHAT] = rc == 0;
  if (rc == 0 && chat_send(cc, 0) == 0)
    API(uvg__test__v1__Kinds__Chat__client_read(cc));
}

static void on_server_closed(uvg_server_t *s, void *d) {
  (void)s;
  (void)d;
  entered();
  T.server_closed = 1;
}
static void on_channel_closed(uvg_channel_t *ch, void *d) {
  (void)ch;
  (void)d;
  entered();
  T.channel_closed = 1;
}

static int watchdog_fired;
static void on_watchdog(uv_timer_t *t) {
  (void)t;
  watchdog_fired = 1;
}

static int calls_open(void) {
  for (int k = 0; k < NCALLS; k++)
    if (T.c_started[k] && T.c_statuses[k] == 0) return 1;
  return T.s_dones < T.s_calls;
}

/* One exchange on a fresh loop; returns how many calls ended OK. */
static int one_round(void) {
  uv_loop_t loop;
  uvg_server_t *server = NULL;
  uvg_channel_t *channel = NULL;
  int port = 0, ok = 0;
  memset(&T, 0, sizeof(T));
  sums[0] = 0;
  for (int k = 0; k < NCALLS; k++) T.c_code[k] = -1;
  CHECK_EQ(uv_loop_init(&loop), 0);
  if (uvg_server_new(&loop, NULL, &server) == 0 &&
      (uvg__test__v1__Kinds__register(server, &impl, NULL) != 0 ||
       uvg_server_listen(server, "127.0.0.1:0",
                         uvg_insecure_server_credentials(), &port) != 0))
    port = 0;
  char target[64];
  snprintf(target, sizeof(target), "ipv4:127.0.0.1:%d", port);
  uvg_channel_options_t co;
  uvg_channel_options_init(&co);
  co.disable_http_proxy = 1;
  if (port != 0 && uvg_channel_new(&loop, target,
                                   uvg_insecure_channel_credentials(), &co,
                                   &channel) == 0)
    start_calls(channel);

  uv_timer_t watchdog;
  uv_timer_init(&loop, &watchdog);
  uv_timer_start(&watchdog, on_watchdog, 8000, 0);
  uv_unref((uv_handle_t *)&watchdog);
  watchdog_fired = 0;
  while (!watchdog_fired && calls_open()) uv_run(&loop, UV_RUN_ONCE);
  if (channel != NULL) API(uvg_channel_close(channel, on_channel_closed, NULL));
  if (server != NULL) API(uvg_server_close(server, on_server_closed, NULL));
  while (!watchdog_fired && uv_run(&loop, UV_RUN_ONCE) != 0) {
  }
  int hung = watchdog_fired;
  uv_close((uv_handle_t *)&watchdog, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);

  CHECK(!hung);
  CHECK_EQ(T.reentered, 0);
  for (int k = 0; k < NCALLS; k++) {
    CHECK_EQ(T.c_statuses[k], T.c_started[k]);
    int want = k == FAN || k == CHAT ? ROUNDS : 1;
    if (T.c_code[k] == UVG_STATUS_OK && T.c_msgs[k] != want)
      fprintf(stderr, "  %s: OK after %d of %d messages\n", names[k],
              T.c_msgs[k], want);
    CHECK(T.c_code[k] != UVG_STATUS_OK || T.c_msgs[k] == want);
    if (T.c_code[k] == UVG_STATUS_DEADLINE_EXCEEDED)
      fprintf(stderr, "  %s waited for its deadline\n", names[k]);
    CHECK(T.c_code[k] != UVG_STATUS_DEADLINE_EXCEEDED);
    ok += T.c_statuses[k] == 1 && T.c_code[k] == UVG_STATUS_OK;
  }
  CHECK_EQ(T.s_dones, T.s_calls);
  CHECK(channel == NULL || T.channel_closed);
  CHECK(server == NULL || T.server_closed);
  CHECK_EQ(uv_loop_close(&loop), 0);
  return ok;
}

static void test_allocation_failures(void) {
  n_alloc = n_free = 0;
  fail_at = -1;
  CHECK_EQ(one_round(), NCALLS);
  CHECK_EQ(n_alloc, n_free);
  long total = n_alloc;
  CHECK(total > 100);
  int all_ok = 0;
  for (long k = 0; k < total; k++) {
    int before = test_failures;
    n_alloc = n_free = 0;
    fail_at = k;
    int ok = one_round();
    fail_at = -1;
    all_ok += ok == NCALLS;
    CHECK(n_alloc - 1 == n_free || n_alloc == n_free);
    if (test_failures != before) {
      fprintf(stderr, "  failing allocation %ld of %ld: %ld allocated, "
              "%ld freed\n", k, total, n_alloc, n_free);
      if (test_failures > 20) break;
    }
  }
  fprintf(stderr, "  %ld allocations failed one at a time; all four calls "
          "still succeeded in %d of the runs\n", total, all_ok);
}

static void quiet(uvg_log_level_t level, const char *line, void *d) {
  (void)level;
  (void)line;
  (void)d;
}

int main(void) {
  signal(SIGPIPE, SIG_IGN); /* libuv writes with write(2) */
  uvg_set_log_cb(quiet, NULL);
  CHECK_EQ(uvg_set_allocator(t_malloc, t_realloc, t_free), 0);
  RUN(test_allocation_failures);
  TEST_EXIT();
}

/* The allocation-failure sweep through generated code: typed handlers on a
 * server and typed stubs on a channel to it, the four kinds of RPC
 * (uvg.test.v1.Kinds), packing and unpacking through the library's
 * allocator. The Nth allocation fails, for every N of the exchange; every
 * call ends once on each side, a call that ends OK got every message, no
 * call waits for its deadline, nothing runs inside a library function,
 * and everything allocated is given back. */
#include <signal.h>
#include <uvgrpc.h>

#include "fault_harness.h"
#include "test.h"
#include "uvg/test/v1/kinds.uvgrpc.h"

typedef Uvg__Test__V1__Outer__Inner inner_t;

enum { UNARY, FAN, SUM, CHAT, NCALLS };
_Static_assert(NCALLS == FH_KINDS, "a round has one call of each kind");
enum { ROUNDS = 3 };
static const char *const names[NCALLS] = {"Unary", "Fan", "Sum", "Chat"};

static fh_round_t T;

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
  fh_entered();
  T.s_calls++;
  inner_t reply = UVG__TEST__V1__OUTER__INNER__INIT;
  reply.value = req->value + 1;
  reply.text = "echo";
  uvg_call_set_data(call, &finished_mark); /* the reply finishes it */
  API(uvg__test__v1__Kinds__Unary__reply(call, &reply));
}
static void fan(uvg_call_t *call, const inner_t *req) {
  fh_entered();
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
  fh_entered();
  T.s_calls++;
  uvg_call_set_data(call, &seen_mark);
}
static int32_t sums[1];
static void sum_message(uvg_call_t *call, const inner_t *msg) {
  (void)call;
  fh_entered();
  sums[0] += msg->value;
}
static void sum_half_close(uvg_call_t *call) {
  fh_entered();
  Uvg__Test__V1__Total reply = UVG__TEST__V1__TOTAL__INIT;
  reply.sum = sums[0];
  uvg_call_set_data(call, &finished_mark);
  API(uvg__test__v1__Kinds__Sum__reply(call, &reply));
}
static void chat_message(uvg_call_t *call, const inner_t *msg) {
  fh_entered();
  inner_t m = UVG__TEST__V1__OUTER__INNER__INIT;
  m.value = msg->value;
  m.text = "chat";
  int rc;
  API(rc = uvg__test__v1__Kinds__Chat__send(call, &m, 0, NULL, NULL));
  if (rc != 0) s_finish(call, UVG_STATUS_RESOURCE_EXHAUSTED);
}
static void chat_half_close(uvg_call_t *call) {
  fh_entered();
  s_finish(call, UVG_STATUS_OK);
}
static void s_cancel(uvg_call_t *call, const uvg_status_t *st) {
  (void)st;
  fh_entered();
  s_finish(call, UVG_STATUS_CANCELLED);
}
static void s_done(uvg_call_t *call, const uvg_status_t *st) {
  fh_entered();
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
  fh_entered();
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
  fh_entered();
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
  fh_entered();
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

static int calls_open(void) { return fh_round_open(&T); }
static void close_all(void) { fh_round_close(&T); }

/* One exchange on a fresh loop; returns how many calls ended OK. */
static int one_round(void) {
  uv_loop_t loop;
  int port = 0;
  memset(&T, 0, sizeof(T));
  fh_reentered = 0;
  sums[0] = 0;
  for (int k = 0; k < NCALLS; k++) T.c_code[k] = -1;
  CHECK_EQ(uv_loop_init(&loop), 0);
  if (uvg_server_new(&loop, NULL, &T.server) == 0 &&
      (uvg__test__v1__Kinds__register(T.server, &impl, NULL) != 0 ||
       uvg_server_listen(T.server, "127.0.0.1:0",
                         uvg_insecure_server_credentials(), &port) != 0))
    port = 0;
  char target[64];
  snprintf(target, sizeof(target), "ipv4:127.0.0.1:%d", port);
  uvg_channel_options_t co;
  uvg_channel_options_init(&co);
  co.disable_http_proxy = 1;
  if (port != 0 && uvg_channel_new(&loop, target,
                                   uvg_insecure_channel_credentials(), &co,
                                   &T.channel) == 0)
    start_calls(T.channel);

  static const int want[NCALLS] = {1, ROUNDS, 1, ROUNDS};
  return fh_round_finish(&loop, &T, calls_open, close_all, names, want);
}

static void test_allocation_failures(void) {
  int all_ok;
  long total = fh_sweep(one_round, NCALLS, &all_ok);
  CHECK(total > 100);
  fprintf(stderr, "  %ld allocations failed one at a time; all four calls "
          "still succeeded in %d of the runs\n", total, all_ok);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN); /* libuv writes with write(2) */
  uvg_set_log_cb(fh_quiet, NULL);
  CHECK_EQ(uvg_set_allocator(fh_malloc, fh_realloc, fh_free), 0);
  RUN(test_allocation_failures);
  TEST_EXIT();
}

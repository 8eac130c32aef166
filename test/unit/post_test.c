/* uvg_post(): the thread-safe entry point (uvgrpc.h, "Cross-thread
 * posting"). Producers on other threads lose nothing and keep their order;
 * closing refuses later posts and cancels what was accepted. */
#include <stdint.h>
#include <uv.h>

#include "test.h"
#include "uvgrpc.h"

/* ---- many producers ---- */

enum { PRODUCERS = 4, PER_PRODUCER = 25000 };

typedef struct {
  uvg_poster_t *poster;
  uv_thread_t thread;
  int id;
  int post_errors;
} producer_t;

typedef struct {
  uv_loop_t *loop;
  uvg_poster_t *poster;
  long count;
  long next_seq[PRODUCERS];
  long order_errors;
  long status_errors;
  int close_cb_calls;
  void *close_user_data;
  int loop_thread_errors;
  uv_thread_t loop_thread;
} sink_t;

static sink_t sink;

/* arg carries (producer << 24 | seq): no allocation per closure. */
static void sink_fn(void *arg, int status);

static void producer_main(void *arg) {
  producer_t *p = arg;
  for (long seq = 0; seq < PER_PRODUCER; seq++) {
    uintptr_t v = (uintptr_t)p->id << 24 | (uintptr_t)seq;
    if (uvg_post(p->poster, sink_fn, (void *)v) != 0) p->post_errors++;
  }
}

static void on_poster_closed(uvg_poster_t *p, void *user_data) {
  (void)p;
  sink.close_cb_calls++;
  sink.close_user_data = user_data;
}

static void sink_fn(void *arg, int status) {
  uintptr_t v = (uintptr_t)arg;
  int id = (int)(v >> 24);
  long seq = (long)(v & 0xffffff);
  uv_thread_t self = uv_thread_self();
  if (!uv_thread_equal(&self, &sink.loop_thread)) sink.loop_thread_errors++;
  if (status != 0) sink.status_errors++;
  if (id < 0 || id >= PRODUCERS) {
    sink.order_errors++;
    return;
  }
  if (seq != sink.next_seq[id]) sink.order_errors++;
  sink.next_seq[id] = seq + 1;
  if (++sink.count == (long)PRODUCERS * PER_PRODUCER)
    uvg_poster_close(sink.poster, on_poster_closed, &sink);
}

static void test_four_producers_lose_nothing(void) {
  uv_loop_t loop;
  producer_t prod[PRODUCERS];
  memset(&sink, 0, sizeof(sink));
  CHECK_EQ(uv_loop_init(&loop), 0);
  sink.loop = &loop;
  sink.loop_thread = uv_thread_self();
  CHECK_EQ(uvg_poster_new(&loop, &sink.poster), 0);

  for (int i = 0; i < PRODUCERS; i++) {
    prod[i] = (producer_t){sink.poster, 0, i, 0};
    CHECK_EQ(uv_thread_create(&prod[i].thread, producer_main, &prod[i]), 0);
  }
  /* The poster keeps the loop alive until the last closure closes it. */
  CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
  for (int i = 0; i < PRODUCERS; i++) {
    CHECK_EQ(uv_thread_join(&prod[i].thread), 0);
    CHECK_EQ(prod[i].post_errors, 0);
    CHECK_EQ(sink.next_seq[i], PER_PRODUCER);
  }
  CHECK_EQ(sink.count, 100000);
  CHECK_EQ(sink.order_errors, 0);
  CHECK_EQ(sink.status_errors, 0);
  CHECK_EQ(sink.loop_thread_errors, 0);
  CHECK_EQ(sink.close_cb_calls, 1);
  CHECK(sink.close_user_data == &sink);
  CHECK_EQ(uv_loop_close(&loop), 0);
}

/* ---- closing ---- */

typedef struct {
  int calls;
  int status;
  int order;
} rec_t;

static int run_seq;

static void rec_fn(void *arg, int status) {
  rec_t *r = arg;
  r->calls++;
  r->status = status;
  r->order = run_seq++;
}

static int close_calls;
static void count_close(uvg_poster_t *p, void *user_data) {
  (void)p;
  (void)user_data;
  close_calls++;
}

static void test_post_runs_later_in_order(void) {
  uv_loop_t loop;
  uvg_poster_t *p;
  rec_t r[10];
  memset(r, 0, sizeof(r));
  run_seq = 0;
  close_calls = 0;
  CHECK_EQ(uv_loop_init(&loop), 0);
  CHECK_EQ(uvg_poster_new(&loop, &p), 0);
  for (int i = 0; i < 10; i++) {
    CHECK_EQ(uvg_post(p, rec_fn, &r[i]), 0);
    CHECK_EQ(r[i].calls, 0); /* never runs inside uvg_post */
  }
  CHECK_EQ(uv_run(&loop, UV_RUN_NOWAIT), 1); /* the poster keeps it alive */
  for (int i = 0; i < 10; i++) {
    CHECK_EQ(r[i].calls, 1);
    CHECK_EQ(r[i].status, 0);
    CHECK_EQ(r[i].order, i);
  }
  uvg_poster_close(p, count_close, NULL);
  CHECK_EQ(close_calls, 0); /* asynchronous, like uv_close */
  CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ(close_calls, 1);
  for (int i = 0; i < 10; i++) CHECK_EQ(r[i].calls, 1);
  CHECK_EQ(uv_loop_close(&loop), 0);
}

static void test_post_after_close(void) {
  uv_loop_t loop;
  uvg_poster_t *p;
  rec_t r = {0, 0, 0};
  close_calls = 0;
  CHECK_EQ(uv_loop_init(&loop), 0);
  CHECK_EQ(uvg_poster_new(&loop, &p), 0);
  uvg_poster_close(p, count_close, NULL);
  /* Refused between the close and its callback. */
  CHECK_EQ(uvg_post(p, rec_fn, &r), UVG_ECLOSED);
  uvg_poster_close(p, count_close, NULL); /* a second close is a no-op */
  CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ(r.calls, 0);
  CHECK_EQ(close_calls, 1);
  CHECK_EQ(uv_loop_close(&loop), 0);
}

static void test_close_cancels_accepted(void) {
  uv_loop_t loop;
  uvg_poster_t *p;
  rec_t r[5];
  memset(r, 0, sizeof(r));
  run_seq = 0;
  close_calls = 0;
  CHECK_EQ(uv_loop_init(&loop), 0);
  CHECK_EQ(uvg_poster_new(&loop, &p), 0);
  for (int i = 0; i < 5; i++) CHECK_EQ(uvg_post(p, rec_fn, &r[i]), 0);
  uvg_poster_close(p, count_close, NULL);
  CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
  for (int i = 0; i < 5; i++) {
    CHECK_EQ(r[i].calls, 1);
    CHECK_EQ(r[i].status, UVG_ECANCELED);
    CHECK_EQ(r[i].order, i);
  }
  CHECK_EQ(close_calls, 1);
  CHECK_EQ(uv_loop_close(&loop), 0);
}

/* A closure that closes the poster while later closures of the same wake-up
 * are accepted but not yet run: those must get UVG_ECANCELED, not run as if
 * nothing happened. */
static uvg_poster_t *closing_poster;
static void close_from_closure(void *arg, int status) {
  rec_fn(arg, status);
  uvg_poster_close(closing_poster, count_close, NULL);
}

static void test_close_from_closure_cancels_rest(void) {
  uv_loop_t loop;
  rec_t r[4];
  memset(r, 0, sizeof(r));
  run_seq = 0;
  close_calls = 0;
  CHECK_EQ(uv_loop_init(&loop), 0);
  CHECK_EQ(uvg_poster_new(&loop, &closing_poster), 0);
  CHECK_EQ(uvg_post(closing_poster, rec_fn, &r[0]), 0);
  CHECK_EQ(uvg_post(closing_poster, close_from_closure, &r[1]), 0);
  CHECK_EQ(uvg_post(closing_poster, rec_fn, &r[2]), 0);
  CHECK_EQ(uvg_post(closing_poster, rec_fn, &r[3]), 0);
  CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ(r[0].calls, 1);
  CHECK_EQ(r[0].status, 0);
  CHECK_EQ(r[1].calls, 1);
  CHECK_EQ(r[1].status, 0);
  for (int i = 2; i < 4; i++) {
    CHECK_EQ(r[i].calls, 1);
    CHECK_EQ(r[i].status, UVG_ECANCELED);
  }
  CHECK_EQ(close_calls, 1);
  CHECK_EQ(uv_loop_close(&loop), 0);
}

static void test_invalid_arguments(void) {
  uv_loop_t loop;
  uvg_poster_t *p = NULL;
  rec_t r = {0, 0, 0};
  close_calls = 0;
  CHECK_EQ(uvg_post(NULL, rec_fn, &r), UVG_EINVAL);
  CHECK_EQ(uvg_poster_new(NULL, &p), UVG_EINVAL);
  CHECK(p == NULL);
  CHECK_EQ(uv_loop_init(&loop), 0);
  CHECK_EQ(uvg_poster_new(&loop, NULL), UVG_EINVAL);
  CHECK_EQ(uvg_poster_new(&loop, &p), 0);
  CHECK_EQ(uvg_post(p, NULL, &r), UVG_EINVAL);
  uvg_poster_close(p, NULL, NULL); /* a NULL callback is allowed */
  CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ(r.calls, 0);
  CHECK_EQ(uv_loop_close(&loop), 0);
}

/* ---- closing while producers still post ---- */

enum { RACE_LIMIT = 200000 };

typedef struct {
  uvg_poster_t *poster;
  uv_thread_t thread;
  long accepted;
  long refused;
  long other_errors;
} racer_t;

static struct {
  long ran_ok;
  long cancelled;
  long bad_status;
  racer_t *racers;
  int n;
  int closing;
  int close_calls;
  uvg_poster_t *poster;
} race;

static void race_fn(void *arg, int status) {
  (void)arg;
  if (status == 0)
    race.ran_ok++;
  else if (status == UVG_ECANCELED)
    race.cancelled++;
  else
    race.bad_status++;
}

static void racer_main(void *arg) {
  racer_t *r = arg;
  /* Posts until refused; bounded so that the test ends even if the loop
   * thread is starved (valgrind runs one thread at a time). */
  for (long i = 0; i < RACE_LIMIT; i++) {
    int rc = uvg_post(r->poster, race_fn, NULL);
    if (rc == 0) {
      r->accepted++;
    } else if (rc == UVG_ECLOSED) {
      r->refused++;
      return;
    } else {
      r->other_errors++;
      return;
    }
  }
}

static void on_race_closed(uvg_poster_t *p, void *user_data) {
  (void)p;
  (void)user_data;
  race.close_calls++;
}

/* Once some closures have run, closes the poster while the producers post,
 * then joins them on the loop thread: after uvg_poster_close() returns every
 * post is refused, so they stop before the close callback (after which
 * posting is undefined). */
static void on_race_check(uv_check_t *h) {
  if (race.ran_ok < 1000) return;
  uvg_poster_close(race.poster, on_race_closed, NULL);
  for (int i = 0; i < race.n; i++) CHECK_EQ(uv_thread_join(&race.racers[i].thread), 0);
  CHECK_EQ(race.close_calls, 0);
  uv_close((uv_handle_t *)h, NULL);
}

static void test_close_races_producers(void) {
  enum { N = 4 };
  uv_loop_t loop;
  uv_check_t check;
  racer_t racers[N];
  memset(&race, 0, sizeof(race));
  memset(racers, 0, sizeof(racers));
  race.racers = racers;
  race.n = N;
  CHECK_EQ(uv_loop_init(&loop), 0);
  CHECK_EQ(uvg_poster_new(&loop, &race.poster), 0);
  CHECK_EQ(uv_check_init(&loop, &check), 0);
  CHECK_EQ(uv_check_start(&check, on_race_check), 0);
  for (int i = 0; i < N; i++) {
    racers[i].poster = race.poster;
    CHECK_EQ(uv_thread_create(&racers[i].thread, racer_main, &racers[i]), 0);
  }
  CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);

  long accepted = 0;
  for (int i = 0; i < N; i++) {
    accepted += racers[i].accepted;
    /* Stopped by the close, or (rarely) done before it. */
    CHECK(racers[i].refused == 1 || racers[i].accepted == RACE_LIMIT);
    CHECK_EQ(racers[i].other_errors, 0);
  }
  CHECK_EQ(race.close_calls, 1);
  CHECK_EQ(race.bad_status, 0);
  /* Every accepted closure ran exactly once, normally or cancelled. */
  CHECK_EQ(race.ran_ok + race.cancelled, accepted);
  CHECK(race.ran_ok >= 1000);
  CHECK_EQ(uv_loop_close(&loop), 0);
}

int main(void) {
  RUN(test_four_producers_lose_nothing);
  RUN(test_post_runs_later_in_order);
  RUN(test_post_after_close);
  RUN(test_close_cancels_accepted);
  RUN(test_close_from_closure_cancels_rest);
  RUN(test_invalid_arguments);
  RUN(test_close_races_producers);
  TEST_EXIT();
}

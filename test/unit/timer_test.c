/* One-shot timers on the scheduler's shared uv_timer_t (loop/timer.h). */
#include <stdint.h>
#include <uv.h>

#include "test.h"
#include "timer.h"

typedef struct {
  uv_loop_t loop;
  uvg__sched_t sched;
  int sched_closed;
} fixture_t;

static void fixture_init(fixture_t *f) {
  memset(f, 0, sizeof(*f));
  CHECK_EQ(uv_loop_init(&f->loop), 0);
  f->loop.data = f;
  CHECK_EQ(uvg__sched_init(&f->loop, &f->sched), 0);
}

static void on_sched_closed(uvg__sched_t *s) {
  fixture_t *f = s->loop->data;
  f->sched_closed++;
}

static void fixture_close(fixture_t *f) {
  uvg__sched_close(&f->sched, on_sched_closed);
  CHECK_EQ(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ(f->sched_closed, 1);
  CHECK_EQ(uv_loop_close(&f->loop), 0);
}

/* A timer with a record of its firings. */
typedef struct {
  uvg__timer_t t;
  int id;
  int fired;
  int armed_in_cb;
  uint64_t due;       /* t.due when armed last */
  uint64_t fired_at;  /* uv_now() when it fired */
  int order;
} rec_t;

static int fire_seq;
static uint64_t last_due;
static long due_order_errors;

static void rec_cb(uvg__timer_t *t) {
  rec_t *r = uvg__container_of(t, rec_t, t);
  r->fired++;
  r->armed_in_cb = uvg__timer_armed(t);
  r->fired_at = uv_now(t->sched->loop);
  r->order = fire_seq++;
  if (r->due < last_due) due_order_errors++;
  last_due = r->due;
}

static void rec_init(fixture_t *f, rec_t *r, int id) {
  memset(r, 0, sizeof(*r));
  r->id = id;
  r->order = -1;
  uvg__timer_init(&f->sched, &r->t);
}

static int rec_start(rec_t *r, uint64_t ms) {
  int rc = uvg__timer_start(&r->t, rec_cb, ms);
  r->due = r->t.due;
  return rc;
}

static void reset_order(void) {
  fire_seq = 0;
  last_due = 0;
  due_order_errors = 0;
}

/* ---- tests ---- */

static void test_many_timers_fire_in_due_order(void) {
  enum { N = 10000 };
  fixture_t f;
  static rec_t r[N];
  fixture_init(&f);
  reset_order();
  srand(12345);
  uint64_t start = uv_now(&f.loop);
  for (int i = 0; i < N; i++) {
    rec_init(&f, &r[i], i);
    CHECK_EQ(rec_start(&r[i], (uint64_t)(rand() % 51)), 0);
    CHECK(uvg__timer_armed(&r[i].t));
  }
  /* Armed timers keep the loop alive; none fires inside start. */
  CHECK(uv_loop_alive(&f.loop));
  for (int i = 0; i < N; i++) CHECK_EQ(r[i].fired, 0);
  CHECK_EQ(uv_run(&f.loop, UV_RUN_DEFAULT), 0);

  int fired_once = 0, early = 0, armed = 0;
  for (int i = 0; i < N; i++) {
    if (r[i].fired == 1) fired_once++;
    if (r[i].fired_at < r[i].due) early++;
    if (r[i].armed_in_cb || uvg__timer_armed(&r[i].t)) armed++;
  }
  CHECK_EQ(fired_once, N);
  CHECK_EQ(early, 0);
  CHECK_EQ(armed, 0);
  CHECK_EQ(due_order_errors, 0);
  CHECK_EQ(fire_seq, N);
  CHECK(uv_now(&f.loop) >= start + 50);
  fixture_close(&f);
}

static void test_stop_before_due(void) {
  fixture_t f;
  rec_t a, b, c;
  fixture_init(&f);
  reset_order();
  rec_init(&f, &a, 0);
  rec_init(&f, &b, 1);
  rec_init(&f, &c, 2);
  CHECK_EQ(uvg__timer_armed(&a.t), 0);
  uvg__timer_stop(&a.t); /* stopping a disarmed timer is a no-op */
  CHECK_EQ(rec_start(&a, 5), 0);
  CHECK_EQ(rec_start(&b, 10), 0);
  CHECK_EQ(rec_start(&c, 15), 0);
  CHECK(uvg__timer_armed(&a.t));
  uvg__timer_stop(&a.t); /* the earliest */
  uvg__timer_stop(&c.t); /* the latest */
  CHECK_EQ(uvg__timer_armed(&a.t), 0);
  CHECK_EQ(uvg__timer_armed(&c.t), 0);
  uvg__timer_stop(&a.t); /* twice: no-op */
  CHECK(uvg__timer_armed(&b.t));
  CHECK_EQ(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ(a.fired, 0);
  CHECK_EQ(b.fired, 1);
  CHECK_EQ(c.fired, 0);
  CHECK(b.fired_at >= b.due);
  fixture_close(&f);
}

/* With every timer stopped nothing keeps the loop alive. */
static void test_stop_all_releases_loop(void) {
  fixture_t f;
  rec_t a;
  fixture_init(&f);
  rec_init(&f, &a, 0);
  CHECK_EQ(rec_start(&a, 1000), 0);
  CHECK(uv_loop_alive(&f.loop));
  uvg__timer_stop(&a.t);
  CHECK_EQ(uv_loop_alive(&f.loop), 0);
  uint64_t t0 = uv_hrtime();
  CHECK_EQ(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
  CHECK(uv_hrtime() - t0 < 500u * 1000 * 1000); /* did not wait 1 s */
  CHECK_EQ(a.fired, 0);
  fixture_close(&f);
}

static void test_restart_moves(void) {
  fixture_t f;
  rec_t early, late, mid;
  fixture_init(&f);
  reset_order();
  rec_init(&f, &early, 0);
  rec_init(&f, &late, 1);
  rec_init(&f, &mid, 2);
  uint64_t start = uv_now(&f.loop);
  CHECK_EQ(rec_start(&early, 100), 0); /* moved earlier below */
  CHECK_EQ(rec_start(&late, 1), 0);    /* moved later below */
  CHECK_EQ(rec_start(&mid, 20), 0);
  CHECK_EQ(rec_start(&early, 5), 0);
  CHECK_EQ(rec_start(&late, 40), 0);
  CHECK(uvg__timer_armed(&early.t));
  CHECK(uvg__timer_armed(&late.t));
  CHECK_EQ(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ(early.fired, 1);
  CHECK_EQ(mid.fired, 1);
  CHECK_EQ(late.fired, 1);
  CHECK_EQ(early.order, 0);
  CHECK_EQ(mid.order, 1);
  CHECK_EQ(late.order, 2);
  CHECK(early.fired_at >= start + 5);
  CHECK(late.fired_at >= start + 40);
  fixture_close(&f);
}

/* A callback stopping other timers: one not due yet, and one due in the
 * same pass (both armed with 0 ms: whichever fires first stops the other). */
typedef struct {
  uvg__timer_t t;
  uvg__timer_t *victim;
  int fired;
} stopper_t;

static void stopper_cb(uvg__timer_t *t) {
  stopper_t *s = uvg__container_of(t, stopper_t, t);
  s->fired++;
  uvg__timer_stop(s->victim);
}

static void test_stop_from_other_callback(void) {
  fixture_t f;
  stopper_t s;
  rec_t victim, bystander;
  fixture_init(&f);
  reset_order();
  rec_init(&f, &victim, 0);
  rec_init(&f, &bystander, 1);
  uvg__timer_init(&f.sched, &s.t);
  s.fired = 0;
  s.victim = &victim.t;
  CHECK_EQ(uvg__timer_start(&s.t, stopper_cb, 5), 0);
  CHECK_EQ(rec_start(&victim, 15), 0);
  CHECK_EQ(rec_start(&bystander, 25), 0);
  CHECK_EQ(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ(s.fired, 1);
  CHECK_EQ(victim.fired, 0);
  CHECK_EQ(bystander.fired, 1);
  fixture_close(&f);
}

static void test_stop_due_peer_from_callback(void) {
  fixture_t f;
  stopper_t a, b;
  fixture_init(&f);
  uvg__timer_init(&f.sched, &a.t);
  uvg__timer_init(&f.sched, &b.t);
  a.fired = b.fired = 0;
  a.victim = &b.t;
  b.victim = &a.t;
  CHECK_EQ(uvg__timer_start(&a.t, stopper_cb, 0), 0);
  CHECK_EQ(uvg__timer_start(&b.t, stopper_cb, 0), 0);
  CHECK_EQ(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ(a.fired + b.fired, 1);
  CHECK_EQ(uvg__timer_armed(&a.t), 0);
  CHECK_EQ(uvg__timer_armed(&b.t), 0);
  fixture_close(&f);
}

/* A callback re-arming its own timer: it fires again, each time no earlier
 * than asked, and is armed right after the restart. */
typedef struct {
  uvg__timer_t t;
  int fired;
  int left;
  uint64_t last;
  int too_early;
  int not_armed;
} rearm_t;

static void rearm_cb(uvg__timer_t *t) {
  rearm_t *r = uvg__container_of(t, rearm_t, t);
  uint64_t now = uv_now(t->sched->loop);
  if (r->fired > 0 && now < r->last + 3) r->too_early++;
  r->last = now;
  r->fired++;
  if (--r->left > 0) {
    CHECK_EQ(uvg__timer_start(t, rearm_cb, 3), 0);
    if (!uvg__timer_armed(t)) r->not_armed++;
  }
}

static void test_callback_rearms_itself(void) {
  fixture_t f;
  rearm_t r;
  fixture_init(&f);
  memset(&r, 0, sizeof(r));
  uvg__timer_init(&f.sched, &r.t);
  r.left = 5;
  CHECK_EQ(uvg__timer_start(&r.t, rearm_cb, 3), 0);
  CHECK_EQ(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ(r.fired, 5);
  CHECK_EQ(r.too_early, 0);
  CHECK_EQ(r.not_armed, 0);
  CHECK_EQ(uvg__timer_armed(&r.t), 0);
  fixture_close(&f);
}

/* A callback starting a timer that is already due fires it in due course,
 * once, and a later-due one is not fired early. */
typedef struct {
  uvg__timer_t t;
  rec_t *other;
  uint64_t other_ms;
} starter_t;

static void starter_cb(uvg__timer_t *t) {
  starter_t *s = uvg__container_of(t, starter_t, t);
  CHECK_EQ(rec_start(s->other, s->other_ms), 0);
}

static void test_start_other_from_callback(void) {
  fixture_t f;
  starter_t s;
  rec_t other;
  fixture_init(&f);
  reset_order();
  rec_init(&f, &other, 0);
  uvg__timer_init(&f.sched, &s.t);
  s.other = &other;
  s.other_ms = 10;
  CHECK_EQ(uvg__timer_start(&s.t, starter_cb, 2), 0);
  CHECK_EQ(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ(other.fired, 1);
  CHECK(other.fired_at >= other.due);
  fixture_close(&f);
}

/* Timers stopped and their owners dropped without any close: the scheduler
 * closes cleanly (valgrind checks the heap is freed). */
static void test_stop_then_free_owner(void) {
  fixture_t f;
  fixture_init(&f);
  for (int i = 0; i < 100; i++) {
    rec_t *r = malloc(sizeof(*r));
    rec_init(&f, r, i);
    CHECK_EQ(rec_start(r, 1000 + (uint64_t)i), 0);
    uvg__timer_stop(&r->t);
    free(r);
  }
  CHECK_EQ(uv_loop_alive(&f.loop), 0);
  fixture_close(&f);
}

int main(void) {
  RUN(test_many_timers_fire_in_due_order);
  RUN(test_stop_before_due);
  RUN(test_stop_all_releases_loop);
  RUN(test_restart_moves);
  RUN(test_stop_from_other_callback);
  RUN(test_stop_due_peer_from_callback);
  RUN(test_callback_rearms_itself);
  RUN(test_start_other_from_callback);
  RUN(test_stop_then_free_owner);
  TEST_EXIT();
}

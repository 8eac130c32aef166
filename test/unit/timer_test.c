/* One-shot timers on the scheduler's shared uv_timer_t (loop/timer.h). */
#include <stdint.h>
#include <uv.h>

#include "test.h"
#include "timer.h"

typedef struct {
  uv_loop_t loop;
  uvg__sched_t sched;
  uv_prepare_t prepare; /* ends run_timers(); unref'd */
  int sched_closed;
} fixture_t;

static void fixture_init(fixture_t *f) {
  memset(f, 0, sizeof(*f));
  CHECK_EQ(uv_loop_init(&f->loop), 0);
  f->loop.data = f;
  CHECK_EQ(uvg__sched_init(&f->loop, &f->sched), 0);
  CHECK_EQ(uv_prepare_init(&f->loop, &f->prepare), 0);
  f->prepare.data = f;
  uv_unref((uv_handle_t *)&f->prepare);
}

static void on_sched_closed(uvg__sched_t *s) {
  fixture_t *f = s->loop->data;
  f->sched_closed++;
}

static void fixture_close(fixture_t *f) {
  uvg__sched_close(&f->sched, on_sched_closed);
  uv_close((uv_handle_t *)&f->prepare, NULL);
  CHECK_EQ(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ(f->sched_closed, 1);
  CHECK_EQ(uv_loop_close(&f->loop), 0);
}

/* Armed timers do not keep the loop alive (workq.h), so a test that waits
 * for them holds the scheduler until none is armed. The check comes in the
 * prepare phase, after the turn's timers ran and before poll would block. */
static void release_when_no_timer(uv_prepare_t *h) {
  fixture_t *f = h->data;
  if (f->sched.heap_n > 0) return;
  uv_prepare_stop(h);
  uvg__sched_unhold(&f->sched);
}

static int run_timers(fixture_t *f) {
  uvg__sched_hold(&f->sched);
  uv_prepare_start(&f->prepare, release_when_no_timer);
  return uv_run(&f->loop, UV_RUN_DEFAULT);
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

static void rec_start(rec_t *r, uint64_t ms) {
  uvg__timer_start(&r->t, rec_cb, ms);
  r->due = r->t.due;
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
    rec_start(&r[i], (uint64_t)(rand() % 51));
    CHECK(uvg__timer_armed(&r[i].t));
  }
  /* None fires inside start. */
  for (int i = 0; i < N; i++) CHECK_EQ(r[i].fired, 0);
  CHECK_EQ(run_timers(&f), 0);

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
  rec_start(&a, 5);
  rec_start(&b, 10);
  rec_start(&c, 15);
  CHECK(uvg__timer_armed(&a.t));
  uvg__timer_stop(&a.t); /* the earliest */
  uvg__timer_stop(&c.t); /* the latest */
  CHECK_EQ(uvg__timer_armed(&a.t), 0);
  CHECK_EQ(uvg__timer_armed(&c.t), 0);
  uvg__timer_stop(&a.t); /* twice: no-op */
  CHECK(uvg__timer_armed(&b.t));
  CHECK_EQ(run_timers(&f), 0);
  CHECK_EQ(a.fired, 0);
  CHECK_EQ(b.fired, 1);
  CHECK_EQ(c.fired, 0);
  CHECK(b.fired_at >= b.due);
  fixture_close(&f);
}

static void count_work(void *arg, int status) {
  if (status == 0) (*(int *)arg)++;
}
static void noop_timer(uv_timer_t *h) { (void)h; }
static int turns;
static void count_turn(uv_prepare_t *h) {
  (void)h;
  turns++;
}
static void unhold_cb(uvg__timer_t *t) {
  rec_cb(t);
  uvg__sched_unhold(t->sched);
}

/* An armed timer does not keep the loop alive: uv_run() returns at once,
 * as a program whose channels are idle must. It fires while something else
 * keeps the loop running; pending work does, and so does a hold. */
static void test_armed_timer_does_not_keep_loop_alive(void) {
  fixture_t f;
  rec_t a, b;
  fixture_init(&f);
  rec_init(&f, &a, 0);
  rec_init(&f, &b, 1);
  rec_start(&a, 10 * 1000);
  CHECK_EQ(uv_loop_alive(&f.loop), 0);
  uint64_t t0 = uv_hrtime();
  CHECK_EQ(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
  CHECK(uv_hrtime() - t0 < 500u * 1000 * 1000); /* did not wait 10 s */
  CHECK_EQ(a.fired, 0);
  CHECK(uvg__timer_armed(&a.t));

  /* Pending work keeps the loop alive until it ran, not until the timer. */
  uvg__workq_t q;
  int ran = 0;
  uvg__workq_init(&f.sched, &q);
  CHECK_EQ(uvg__workq_post(&q, count_work, &ran), 0);
  CHECK(uv_loop_alive(&f.loop));
  t0 = uv_hrtime();
  CHECK_EQ(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ(ran, 1);
  CHECK(uv_hrtime() - t0 < 500u * 1000 * 1000);
  CHECK_EQ(a.fired, 0);
  uvg__workq_close(&q);

  /* Another handle keeps the loop alive: the timer fires on time. */
  uv_timer_t other;
  uv_timer_init(&f.loop, &other);
  uv_timer_start(&other, noop_timer, 60, 0);
  rec_start(&b, 20);
  uint64_t start = uv_now(&f.loop);
  CHECK_EQ(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ(b.fired, 1);
  CHECK(b.fired_at >= start + 20 && b.fired_at < start + 60);
  uv_close((uv_handle_t *)&other, NULL);

  /* A hold keeps the loop alive without a busy poll: a timer that ends the
   * hold fires after a few loop turns, not thousands. */
  uv_prepare_start(&f.prepare, count_turn);
  turns = 0;
  uvg__timer_start(&b.t, unhold_cb, 30);
  uvg__sched_hold(&f.sched);
  start = uv_now(&f.loop);
  CHECK(uv_loop_alive(&f.loop));
  CHECK_EQ(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ(b.fired, 2);
  CHECK(uv_now(&f.loop) >= start + 30);
  CHECK(turns <= 5);
  uv_prepare_stop(&f.prepare);

  uvg__timer_stop(&a.t);
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
  rec_start(&early, 100); /* moved earlier below */
  rec_start(&late, 1);    /* moved later below */
  rec_start(&mid, 20);
  rec_start(&early, 5);
  rec_start(&late, 40);
  CHECK(uvg__timer_armed(&early.t));
  CHECK(uvg__timer_armed(&late.t));
  CHECK_EQ(run_timers(&f), 0);
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
  uvg__timer_start(&s.t, stopper_cb, 5);
  rec_start(&victim, 15);
  rec_start(&bystander, 25);
  CHECK_EQ(run_timers(&f), 0);
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
  uvg__timer_start(&a.t, stopper_cb, 0);
  uvg__timer_start(&b.t, stopper_cb, 0);
  CHECK_EQ(run_timers(&f), 0);
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
    uvg__timer_start(t, rearm_cb, 3);
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
  uvg__timer_start(&r.t, rearm_cb, 3);
  CHECK_EQ(run_timers(&f), 0);
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
  rec_start(s->other, s->other_ms);
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
  uvg__timer_start(&s.t, starter_cb, 2);
  CHECK_EQ(run_timers(&f), 0);
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
    rec_start(r, 1000 + (uint64_t)i);
    uvg__timer_stop(&r->t);
    free(r);
  }
  CHECK_EQ(uv_loop_alive(&f.loop), 0);
  fixture_close(&f);
}

/* Equal due times fire in start order; restarting a timer puts it behind
 * the others that are due at the same time. */
static void test_equal_due_in_start_order(void) {
  enum { N = 64 };
  fixture_t f;
  rec_t r[N];
  fixture_init(&f);
  reset_order();
  for (int i = 0; i < N; i++) {
    rec_init(&f, &r[i], i);
    rec_start(&r[i], 3);
  }
  rec_start(&r[0], 3); /* now the last of the 64 */
  CHECK_EQ(run_timers(&f), 0);
  int wrong = 0;
  for (int i = 1; i < N; i++) wrong += r[i].order != i - 1;
  CHECK_EQ(wrong, 0);
  CHECK_EQ(r[0].order, N - 1);
  fixture_close(&f);
}

/* Arming cannot fail: with every allocation failing, timers still arm, fire
 * in due order, and stop. (Deadlines, keepalive, linger and the accept
 * back-off all rely on it; none of them has a way to report a failure.) */
static void *fail_malloc(size_t n) {
  (void)n;
  return NULL;
}
static void *fail_realloc(void *p, size_t n) {
  (void)p;
  (void)n;
  return NULL;
}

static void test_start_needs_no_memory(void) {
  enum { N = 1000 };
  fixture_t f;
  static rec_t r[N];
  fixture_init(&f);
  reset_order();
  CHECK_EQ(uvg_set_allocator(fail_malloc, fail_realloc, free), 0);
  int armed = 0;
  for (int i = 0; i < N; i++) {
    rec_init(&f, &r[i], i);
    rec_start(&r[i], (uint64_t)(i % 7));
    armed += uvg__timer_armed(&r[i].t) != 0;
  }
  CHECK_EQ(armed, N);
  for (int i = 0; i < N; i += 2) uvg__timer_stop(&r[i].t);
  CHECK_EQ(run_timers(&f), 0);
  int fired = 0, wrong = 0;
  for (int i = 0; i < N; i++) {
    fired += r[i].fired;
    if (r[i].fired != (i % 2)) wrong++;
  }
  CHECK_EQ(fired, N / 2);
  CHECK_EQ(wrong, 0);
  CHECK_EQ(due_order_errors, 0);
  CHECK_EQ(uvg_set_allocator(malloc, realloc, free), 0);
  fixture_close(&f);
}

/* Randomized against a reference model: timers are started, restarted and
 * stopped at random, from outside and from inside callbacks, and every
 * firing must be the reference's earliest armed timer, earliest due first
 * and, among equal due times, the one started first. */
enum { RND_N = 512 };

typedef struct {
  uvg__timer_t t;
  int armed;     /* reference: armed? */
  uint64_t due;  /* reference: due time */
  uint64_t seq;  /* reference: start order */
} rnd_timer_t;

static struct {
  fixture_t f;
  rnd_timer_t tm[RND_N];
  uint64_t rng, seq;
  long ops_left, fires, starts, stops;
  long not_min, early, state_mismatch;
} rnd;

static uint32_t rnd_next(void) {
  /* xorshift64*: reproducible, independent of the C library's rand() */
  rnd.rng ^= rnd.rng >> 12;
  rnd.rng ^= rnd.rng << 25;
  rnd.rng ^= rnd.rng >> 27;
  return (uint32_t)((rnd.rng * 2685821657736338717ull) >> 32);
}

static void rnd_cb(uvg__timer_t *t);

static void rnd_start(rnd_timer_t *x, uint64_t ms) {
  uvg__timer_start(&x->t, rnd_cb, ms);
  x->armed = 1;
  x->due = uv_now(&rnd.f.loop) + ms;
  x->seq = rnd.seq++;
  rnd.starts++;
}

static void rnd_stop(rnd_timer_t *x) {
  uvg__timer_stop(&x->t);
  x->armed = 0;
  rnd.stops++;
}

/* A few random operations on random timers. */
static void rnd_ops(int n) {
  for (int k = 0; k < n && rnd.ops_left > 0; k++, rnd.ops_left--) {
    rnd_timer_t *x = &rnd.tm[rnd_next() % RND_N];
    if (rnd_next() % 4 == 0)
      rnd_stop(x);
    else
      rnd_start(x, rnd_next() % 6); /* many equal due times */
  }
}

static void rnd_cb(uvg__timer_t *t) {
  rnd_timer_t *x = uvg__container_of(t, rnd_timer_t, t);
  const rnd_timer_t *min = NULL;
  for (int i = 0; i < RND_N; i++) {
    const rnd_timer_t *y = &rnd.tm[i];
    if (y->armed && (min == NULL || y->due < min->due ||
                     (y->due == min->due && y->seq < min->seq)))
      min = y;
  }
  if (min != x) rnd.not_min++;
  if (uv_now(&rnd.f.loop) < x->due) rnd.early++;
  if (uvg__timer_armed(t)) rnd.state_mismatch++;
  x->armed = 0;
  rnd.fires++;
  rnd_ops(3);
}

static void test_random_against_reference(void) {
  memset(&rnd, 0, sizeof(rnd));
  fixture_init(&rnd.f);
  rnd.rng = 0x9e3779b97f4a7c15ull;
  rnd.ops_left = 100000;
  for (int i = 0; i < RND_N; i++) uvg__timer_init(&rnd.f.sched, &rnd.tm[i].t);
  for (int round = 0; round < 20; round++) {
    rnd_ops(1000); /* from outside callbacks */
    long armed = 0, wrong = 0;
    for (int i = 0; i < RND_N; i++) {
      armed += rnd.tm[i].armed;
      if (!uvg__timer_armed(&rnd.tm[i].t) != !rnd.tm[i].armed) wrong++;
    }
    CHECK_EQ(wrong, 0);
    if (armed > 0) {
      uvg__sched_hold(&rnd.f.sched);
      uv_run(&rnd.f.loop, UV_RUN_ONCE);
      uvg__sched_unhold(&rnd.f.sched);
    }
  }
  CHECK_EQ(run_timers(&rnd.f), 0);
  long left = 0;
  for (int i = 0; i < RND_N; i++)
    left += rnd.tm[i].armed + (uvg__timer_armed(&rnd.tm[i].t) != 0);
  CHECK_EQ(left, 0);
  CHECK_EQ(rnd.not_min, 0);
  CHECK_EQ(rnd.early, 0);
  CHECK_EQ(rnd.state_mismatch, 0);
  CHECK_EQ(rnd.ops_left, 0);
  CHECK(rnd.fires > 10000);
  fprintf(stderr, "  %ld starts, %ld stops, %ld fires\n", rnd.starts,
          rnd.stops, rnd.fires);
  fixture_close(&rnd.f);
}

int main(void) {
  RUN(test_many_timers_fire_in_due_order);
  RUN(test_stop_before_due);
  RUN(test_armed_timer_does_not_keep_loop_alive);
  RUN(test_restart_moves);
  RUN(test_stop_from_other_callback);
  RUN(test_stop_due_peer_from_callback);
  RUN(test_callback_rearms_itself);
  RUN(test_start_other_from_callback);
  RUN(test_stop_then_free_owner);
  RUN(test_equal_due_in_start_order);
  RUN(test_start_needs_no_memory);
  RUN(test_random_against_reference);
  TEST_EXIT();
}

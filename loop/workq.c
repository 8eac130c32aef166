#include "workq.h"

#include <assert.h>
#include <pthread.h>

#include "timer.h"

static void on_check(uv_check_t *h);
static void on_idle(uv_idle_t *h) { (void)h; }

/* The shared schedulers of every loop in the process, found by their loop.
 * A list under a lock, because loops on several threads create servers and
 * channels at once; it holds one entry per loop that has servers or
 * channels, and a scheduler leaves it when its last reference goes, before
 * its loop can be closed, so no entry outlives its loop. */
static pthread_mutex_t shared_mu = PTHREAD_MUTEX_INITIALIZER;
static uvg__sched_t *shared_list;

int uvg__sched_init(uv_loop_t *loop, uvg__sched_t *s) {
  int err;
  s->loop = loop;
  uvg__list_init(&s->ready);
  uvg__list_init(&s->pool);
  uvg__pool_init(&s->mem);
  uvg__pages_init(&s->pages);
  s->draining = NULL;
  s->heap = NULL;
  s->heap_n = 0;
  s->timer_seq = 0;
  s->refs = s->holds = 0;
  s->next_shared = NULL;
  s->closing = 0;
  s->close_cb = NULL;
  uvg__list_init(&s->idle_conns);
  uvg__timer_init(s, &s->idle_timer);
  /* Long enough that a connection busy between pauses does not pay page
   * faults per call. */
  s->idle_trim_ms = 1000;
  s->idle_trims = s->idle_trimmed = 0;
  if ((err = uv_check_init(loop, &s->check)) != 0) return err;
  uv_idle_init(loop, &s->idle);
  uv_timer_init(loop, &s->timer);
  s->handles_open = 3;
  s->check.data = s->idle.data = s->timer.data = s;
  /* The check handle runs every turn but must not keep the loop alive; the
   * idle handle does that, and only while work is pending. Armed timers do
   * not keep it alive either (workq.h says why). */
  uv_check_start(&s->check, on_check);
  uv_unref((uv_handle_t *)&s->check);
  uv_unref((uv_handle_t *)&s->timer);
  return 0;
}

int uvg__sched_acquire(uv_loop_t *loop, uvg__sched_t **out) {
  uvg__sched_t *s;
  pthread_mutex_lock(&shared_mu);
  for (s = shared_list; s != NULL; s = s->next_shared)
    if (s->loop == loop) break;
  if (s == NULL) {
    int err = UVG_ENOMEM;
    if ((s = uvg__malloc(sizeof(*s))) == NULL ||
        (err = uvg__sched_init(loop, s)) != 0) {
      pthread_mutex_unlock(&shared_mu);
      uvg__free(s);
      return err;
    }
    s->next_shared = shared_list;
    shared_list = s;
  }
  s->refs++;
  pthread_mutex_unlock(&shared_mu);
  *out = s;
  return 0;
}

static void free_shared(uvg__sched_t *s) { uvg__free(s); }

void uvg__sched_release(uvg__sched_t *s) {
  assert(s->refs > 0);
  pthread_mutex_lock(&shared_mu);
  if (--s->refs > 0) {
    pthread_mutex_unlock(&shared_mu);
    return;
  }
  /* Closing: the next acquire on this loop makes a new one. */
  uvg__sched_t **p = &shared_list;
  while (*p != s) p = &(*p)->next_shared;
  *p = s->next_shared;
  pthread_mutex_unlock(&shared_mu);
  /* Its own timer may still be armed for connections long gone. */
  assert(uvg__list_empty(&s->idle_conns));
  uvg__timer_stop(&s->idle_timer);
  assert(s->heap == NULL && s->holds == 0);
  uvg__sched_close(s, free_shared);
}

void uvg__sched_hold(uvg__sched_t *s) {
  /* An active, referenced check handle keeps uv_run() going; unlike the
   * idle handle it leaves poll's timeout to the timers. */
  if (s->holds++ == 0) uv_ref((uv_handle_t *)&s->check);
}

void uvg__sched_unhold(uvg__sched_t *s) {
  assert(s->holds > 0);
  if (--s->holds == 0) uv_unref((uv_handle_t *)&s->check);
}

/* The handles' own addresses lead back to their scheduler. */
static uvg__sched_t *sched_of(uv_handle_t *h) {
  if (h->type == UV_CHECK)
    return uvg__container_of((uv_check_t *)h, uvg__sched_t, check);
  if (h->type == UV_IDLE)
    return uvg__container_of((uv_idle_t *)h, uvg__sched_t, idle);
  return uvg__container_of((uv_timer_t *)h, uvg__sched_t, timer);
}

static void on_handle_closed(uv_handle_t *h) {
  uvg__sched_t *s = sched_of(h);
  if (--s->handles_open > 0) return;
  uvg__work_t *w;
  while (!uvg__list_empty(&s->pool)) {
    w = uvg__container_of(s->pool.next, uvg__work_t, link);
    uvg__list_remove(&w->link);
    uvg__free(w);
  }
  uvg__pool_trim(&s->mem);
  uvg__pages_fini(&s->pages);
  if (s->close_cb != NULL) s->close_cb(s);
}

void uvg__sched_close(uvg__sched_t *s, void (*cb)(uvg__sched_t *s)) {
  if (s->closing) return;
  s->closing = 1;
  s->close_cb = cb;
  while (!uvg__list_empty(&s->ready)) {
    uvg__workq_t *q = uvg__container_of(s->ready.next, uvg__workq_t, ready_link);
    uvg__workq_close(q);
  }
  uv_close((uv_handle_t *)&s->check, on_handle_closed);
  uv_close((uv_handle_t *)&s->idle, on_handle_closed);
  uv_close((uv_handle_t *)&s->timer, on_handle_closed);
}

void uvg__workq_init(uvg__sched_t *s, uvg__workq_t *q) {
  q->sched = s;
  q->closed = 0;
  q->n = q->turn_n = 0;
  uvg__list_init(&q->items);
  uvg__list_init(&q->ready_link);
}

static void make_ready(uvg__workq_t *q) {
  uvg__sched_t *s = q->sched;
  if (!uvg__list_empty(&q->ready_link)) return;
  if (uvg__list_empty(&s->ready)) uv_idle_start(&s->idle, on_idle);
  uvg__list_push(&s->ready, &q->ready_link);
}

static void enqueue(uvg__workq_t *q, uvg__work_t *w, uvg__work_fn fn,
                    void *arg) {
  w->fn = fn;
  w->arg = arg;
  uvg__list_push(&q->items, &w->link);
  q->n++;
  if (q != q->sched->draining) make_ready(q);
}

int uvg__workq_post(uvg__workq_t *q, uvg__work_fn fn, void *arg) {
  uvg__work_t *w;
  if (q->closed || q->sched->closing) return UVG_ECLOSED;
  if (!uvg__list_empty(&q->sched->pool)) {
    w = uvg__container_of(q->sched->pool.next, uvg__work_t, link);
    uvg__list_remove(&w->link);
  } else if ((w = uvg__malloc(sizeof(*w))) == NULL) {
    return UVG_ENOMEM;
  }
  w->owned = 0;
  enqueue(q, w, fn, arg);
  return 0;
}

int uvg__workq_post_node(uvg__workq_t *q, uvg__work_t *w, uvg__work_fn fn,
                         void *arg) {
  assert(w->owned && !uvg__work_queued(w));
  if (q->closed || q->sched->closing) return UVG_ECLOSED;
  enqueue(q, w, fn, arg);
  return 0;
}

/* Pops the first closure of `q` into fn/arg and recycles its node. */
static int pop(uvg__workq_t *q, uvg__work_fn *fn, void **arg) {
  if (uvg__list_empty(&q->items)) return 0;
  uvg__work_t *w = uvg__container_of(q->items.next, uvg__work_t, link);
  uvg__list_remove(&w->link);
  q->n--;
  *fn = w->fn;
  *arg = w->arg;
  if (!w->owned) uvg__list_push(&q->sched->pool, &w->link);
  return 1;
}

void uvg__workq_close(uvg__workq_t *q) {
  uvg__work_fn fn;
  void *arg;
  if (q->closed) return;
  q->closed = 1;
  uvg__list_remove(&q->ready_link);
  if (q->sched->draining == q) q->sched->draining = NULL;
  while (pop(q, &fn, &arg)) fn(arg, UVG_ECANCELED);
}

size_t uvg__workq_pending(const uvg__workq_t *q) { return q->n; }

static void on_check(uv_check_t *h) {
  uvg__sched_t *s = uvg__container_of(h, uvg__sched_t, check);
  uvg__list_t turn;
  uvg__work_fn fn;
  void *arg;

  /* Only the queues ready now run in this turn; a queue that gets new work
   * while it drains goes back on s->ready for the next turn. */
  uvg__list_init(&turn);
  uvg__list_move(&s->ready, &turn);
  for (uvg__list_t *p = turn.next; p != &turn; p = p->next)
    uvg__container_of(p, uvg__workq_t, ready_link)->turn_n =
        uvg__container_of(p, uvg__workq_t, ready_link)->n;
  while (!uvg__list_empty(&turn)) {
    uvg__workq_t *q = uvg__container_of(turn.next, uvg__workq_t, ready_link);
    uvg__list_remove(&q->ready_link);
    size_t n = q->turn_n;
    s->draining = q;
    /* s->draining turns NULL if a closure closes q (and maybe frees it). */
    while (n-- > 0 && s->draining == q && pop(q, &fn, &arg)) fn(arg, 0);
    if (s->draining == q) {
      s->draining = NULL;
      if (!uvg__list_empty(&q->items)) make_ready(q);
    }
  }
  if (uvg__list_empty(&s->ready) && !s->closing) uv_idle_stop(&s->idle);
}

#include "timer.h"

static int earlier(const uvg__timer_t *a, const uvg__timer_t *b) {
  return a->due < b->due;
}

static void place(uvg__sched_t *s, size_t i, uvg__timer_t *t) {
  s->heap[i] = t;
  t->heap_index = i;
}

static void sift_up(uvg__sched_t *s, size_t i) {
  uvg__timer_t *t = s->heap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!earlier(t, s->heap[parent])) break;
    place(s, i, s->heap[parent]);
    i = parent;
  }
  place(s, i, t);
}

static void sift_down(uvg__sched_t *s, size_t i) {
  uvg__timer_t *t = s->heap[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= s->heap_len) break;
    if (c + 1 < s->heap_len && earlier(s->heap[c + 1], s->heap[c])) c++;
    if (!earlier(s->heap[c], t)) break;
    place(s, i, s->heap[c]);
    i = c;
  }
  place(s, i, t);
}

static void on_uv_timer(uv_timer_t *h);

/* Points the shared uv_timer_t at the earliest due time. */
static void rearm(uvg__sched_t *s) {
  if (s->heap_len == 0) {
    uv_timer_stop(&s->timer);
    return;
  }
  uint64_t now = uv_now(s->loop), due = s->heap[0]->due;
  uv_timer_start(&s->timer, on_uv_timer, due > now ? due - now : 0, 0);
}

static void heap_remove(uvg__sched_t *s, uvg__timer_t *t) {
  size_t i = t->heap_index;
  uvg__timer_t *last = s->heap[--s->heap_len];
  t->heap_index = SIZE_MAX;
  if (last == t) return;
  place(s, i, last);
  sift_up(s, i);
  sift_down(s, last->heap_index);
}

static void on_uv_timer(uv_timer_t *h) {
  uvg__sched_t *s = h->data;
  uint64_t now = uv_now(s->loop);
  while (s->heap_len > 0 && s->heap[0]->due <= now) {
    uvg__timer_t *t = s->heap[0];
    heap_remove(s, t);
    t->cb(t); /* may start or stop any timer, including t */
  }
  rearm(s);
}

void uvg__timer_init(uvg__sched_t *s, uvg__timer_t *t) {
  t->sched = s;
  t->due = 0;
  t->heap_index = SIZE_MAX;
  t->cb = NULL;
}

int uvg__timer_start(uvg__timer_t *t, void (*cb)(uvg__timer_t *t),
                     uint64_t timeout_ms) {
  uvg__sched_t *s = t->sched;
  if (uvg__timer_armed(t)) heap_remove(s, t);
  if (s->heap_len == s->heap_cap) {
    size_t cap = s->heap_cap ? s->heap_cap * 2 : 16;
    uvg__timer_t **h = uvg__realloc(s->heap, cap * sizeof(*h));
    if (h == NULL) return UVG_ENOMEM;
    s->heap = h;
    s->heap_cap = cap;
  }
  uint64_t now = uv_now(s->loop);
  t->due = timeout_ms > UINT64_MAX - now ? UINT64_MAX : now + timeout_ms;
  t->cb = cb;
  place(s, s->heap_len++, t);
  sift_up(s, t->heap_index);
  if (s->heap[0] == t) rearm(s);
  return 0;
}

void uvg__timer_stop(uvg__timer_t *t) {
  uvg__sched_t *s = t->sched;
  if (!uvg__timer_armed(t)) return;
  int was_first = s->heap[0] == t;
  heap_remove(s, t);
  if (was_first) rearm(s);
}

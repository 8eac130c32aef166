/*
 * The armed timers form a binary min-heap whose links are embedded in the
 * timers, so there is no array to grow and arming cannot fail.
 *
 * The heap is a complete binary tree. Number its nodes 1, 2, 3, ... in level
 * order: node k has children 2k and 2k+1, so the binary digits of k after
 * its leading 1 spell the way down from the root, 0 for left and 1 for
 * right. That finds the next free place (node n+1) and the last node
 * (node n) in O(log n) steps, which is all insertion and removal need.
 */
#include "timer.h"

/* Earlier due time first; among equal ones, the one started first. */
static int earlier(const uvg__timer_t *a, const uvg__timer_t *b) {
  return a->due != b->due ? a->due < b->due : a->seq < b->seq;
}

/* The link that holds node number k (1-based; k may be one past the last
 * node: then the link is NULL and is where that node goes). *parent gets
 * the node owning that link, NULL for the root. */
static uvg__timer_t **link_of(uvg__sched_t *s, size_t k,
                              uvg__timer_t **parent) {
  uvg__timer_t **link = &s->heap;
  int depth = 0;
  *parent = NULL;
  while ((k >> depth) > 1) depth++;
  while (depth-- > 0) {
    *parent = *link;
    link = (k >> depth) & 1 ? &(*parent)->right : &(*parent)->left;
  }
  return link;
}

/* Exchanges `c` and its parent in the tree. The nodes are their owners'
 * memory, so the links move, not the timers. */
static void swap_with_parent(uvg__sched_t *s, uvg__timer_t *c) {
  uvg__timer_t *p = c->parent, *cl = c->left, *cr = c->right, *sibling;
  if (p->left == c) {
    sibling = p->right;
    c->left = p;
    c->right = sibling;
  } else {
    sibling = p->left;
    c->left = sibling;
    c->right = p;
  }
  if (sibling != NULL) sibling->parent = c;
  c->parent = p->parent;
  if (c->parent == NULL)
    s->heap = c;
  else if (c->parent->left == p)
    c->parent->left = c;
  else
    c->parent->right = c;
  p->parent = c;
  p->left = cl;
  p->right = cr;
  if (cl != NULL) cl->parent = p;
  if (cr != NULL) cr->parent = p;
}

static void sift_up(uvg__sched_t *s, uvg__timer_t *t) {
  while (t->parent != NULL && earlier(t, t->parent)) swap_with_parent(s, t);
}

static void sift_down(uvg__sched_t *s, uvg__timer_t *t) {
  for (;;) {
    uvg__timer_t *c = t->left;
    if (c == NULL) return; /* complete tree: no left child, no right one */
    if (t->right != NULL && earlier(t->right, c)) c = t->right;
    if (!earlier(c, t)) return;
    swap_with_parent(s, c);
  }
}

static void heap_insert(uvg__sched_t *s, uvg__timer_t *t) {
  uvg__timer_t *parent;
  uvg__timer_t **link = link_of(s, s->heap_n + 1, &parent);
  t->parent = parent;
  t->left = t->right = NULL;
  *link = t;
  s->heap_n++;
  sift_up(s, t);
}

static void heap_remove(uvg__sched_t *s, uvg__timer_t *t) {
  uvg__timer_t *parent;
  uvg__timer_t **link = link_of(s, s->heap_n, &parent);
  uvg__timer_t *last = *link;
  *link = NULL; /* detached first, in case it is t's own child */
  s->heap_n--;
  if (last != t) {
    /* The last node takes t's place, then moves to where it belongs. */
    last->parent = t->parent;
    last->left = t->left;
    last->right = t->right;
    if (last->left != NULL) last->left->parent = last;
    if (last->right != NULL) last->right->parent = last;
    if (t->parent == NULL)
      s->heap = last;
    else if (t->parent->left == t)
      t->parent->left = last;
    else
      t->parent->right = last;
    sift_down(s, last);
    sift_up(s, last);
  }
  t->parent = t->left = t->right = NULL;
  t->armed = 0;
}

static void on_uv_timer(uv_timer_t *h);

/* Points the shared uv_timer_t at the earliest due time. */
static void rearm(uvg__sched_t *s) {
  if (s->heap == NULL) {
    uv_timer_stop(&s->timer);
    return;
  }
  uint64_t now = uv_now(s->loop), due = s->heap->due;
  uv_timer_start(&s->timer, on_uv_timer, due > now ? due - now : 0, 0);
}

static void on_uv_timer(uv_timer_t *h) {
  uvg__sched_t *s = h->data;
  uint64_t now = uv_now(s->loop);
  while (s->heap != NULL && s->heap->due <= now) {
    uvg__timer_t *t = s->heap;
    heap_remove(s, t);
    t->cb(t); /* may start or stop any timer, including t */
  }
  rearm(s);
}

void uvg__timer_init(uvg__sched_t *s, uvg__timer_t *t) {
  t->sched = s;
  t->parent = t->left = t->right = NULL;
  t->due = t->seq = 0;
  t->armed = 0;
  t->cb = NULL;
}

void uvg__timer_start(uvg__timer_t *t, void (*cb)(uvg__timer_t *t),
                      uint64_t timeout_ms) {
  uvg__sched_t *s = t->sched;
  int was_first = s->heap == t;
  if (t->armed) heap_remove(s, t);
  uint64_t now = uv_now(s->loop);
  t->due = timeout_ms > UINT64_MAX - now ? UINT64_MAX : now + timeout_ms;
  t->seq = s->timer_seq++;
  t->cb = cb;
  t->armed = 1;
  heap_insert(s, t);
  if (was_first || s->heap == t) rearm(s);
}

void uvg__timer_stop(uvg__timer_t *t) {
  uvg__sched_t *s = t->sched;
  if (!t->armed) return;
  int was_first = s->heap == t;
  heap_remove(s, t);
  if (was_first) rearm(s);
}

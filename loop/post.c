/*
 * uvg_post(): the producer side that other threads use. Nodes are linked
 * under a mutex and the loop is woken through a uv_async_t; the async
 * callback takes the whole list at once, so coalesced wake-ups lose nothing
 * and one FIFO keeps every producer's order.
 */
#include <uv.h>

#include "common.h"

typedef struct post_node_s {
  struct post_node_s *next;
  uvg_post_cb cb;
  void *arg;
} post_node_t;

struct uvg_poster_s {
  uv_async_t async;
  uv_mutex_t mu;
  post_node_t *head, *tail; /* guarded by mu */
  int closing;              /* guarded by mu */
  uvg_poster_close_cb close_cb;
  void *close_data;
};

static post_node_t *take_all(uvg_poster_t *p) {
  uv_mutex_lock(&p->mu);
  post_node_t *n = p->head;
  p->head = p->tail = NULL;
  uv_mutex_unlock(&p->mu);
  return n;
}

/* Runs a batch; once the poster starts closing (a closure may close it),
 * the rest of the batch is cancelled. `closing` is only written on the loop
 * thread, so reading it here needs no lock. */
static void run_all(uvg_poster_t *p, post_node_t *n) {
  while (n != NULL) {
    post_node_t *next = n->next;
    uvg_post_cb cb = n->cb;
    void *arg = n->arg;
    uvg__free(n);
    cb(arg, p->closing ? UVG_ECANCELED : 0);
    n = next;
  }
}

static void on_async(uv_async_t *h) {
  uvg_poster_t *p = h->data;
  run_all(p, take_all(p));
}

int uvg_poster_new(uv_loop_t *loop, uvg_poster_t **out) {
  if (loop == NULL || out == NULL) return UVG_EINVAL;
  uvg_poster_t *p = uvg__calloc(1, sizeof(*p));
  if (p == NULL) return UVG_ENOMEM;
  int err = uv_mutex_init(&p->mu);
  if (err == 0 && (err = uv_async_init(loop, &p->async, on_async)) != 0)
    uv_mutex_destroy(&p->mu);
  if (err != 0) {
    uvg__free(p);
    return err;
  }
  p->async.data = p;
  *out = p;
  return 0;
}

int uvg_post(uvg_poster_t *p, uvg_post_cb cb, void *arg) {
  if (p == NULL || cb == NULL) return UVG_EINVAL;
  post_node_t *n = uvg__malloc(sizeof(*n));
  if (n == NULL) return UVG_ENOMEM;
  n->next = NULL;
  n->cb = cb;
  n->arg = arg;
  uv_mutex_lock(&p->mu);
  if (p->closing) {
    uv_mutex_unlock(&p->mu);
    uvg__free(n);
    return UVG_ECLOSED;
  }
  if (p->tail != NULL)
    p->tail->next = n;
  else
    p->head = n;
  p->tail = n;
  /* Sent under the lock so that no send can race the handle's close. */
  uv_async_send(&p->async);
  uv_mutex_unlock(&p->mu);
  return 0;
}

static void on_closed(uv_handle_t *h) {
  uvg_poster_t *p = h->data;
  /* Posting from the close callback must still see `closing`. */
  if (p->close_cb != NULL) p->close_cb(p, p->close_data);
  uv_mutex_destroy(&p->mu);
  uvg__free(p);
}

void uvg_poster_close(uvg_poster_t *p, uvg_poster_close_cb cb, void *data) {
  uv_mutex_lock(&p->mu);
  int was_closing = p->closing;
  p->closing = 1;
  uv_mutex_unlock(&p->mu);
  if (was_closing) return;
  p->close_cb = cb;
  p->close_data = data;
  run_all(p, take_all(p));
  uv_close((uv_handle_t *)&p->async, on_closed);
}

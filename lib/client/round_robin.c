/*
 * round_robin, on the public LB API: a subchannel per address, all kept
 * connected (an IDLE one is connected again at once), calls spread over
 * the READY ones in turn from a random start.
 *
 * The policy's state (doc/load-balancing.md and grpc-go's base balancer):
 * READY if any subchannel is READY; else CONNECTING if any is connecting
 * or idle; else TRANSIENT_FAILURE. A subchannel that failed counts as
 * failed until it is READY again, so a backend that keeps failing does not
 * flip the channel between CONNECTING and TRANSIENT_FAILURE (gRFC A62's
 * stickiness, applied per subchannel as grpc does).
 */
#include <stdio.h>
#include <string.h>

#include "channel.h"

typedef struct {
  uvg_subchannel_t *sc;
  uvg_connectivity_t state; /* as the aggregate counts it */
} rr_entry_t;

typedef struct {
  uvg_lb_t *lb;
  rr_entry_t *v;
  size_t n;
  uvg_connectivity_t state;
  char error[256];
} rr_t;

typedef struct {
  uvg_connectivity_t state;
  size_t n, next;
  char message[288];
  uvg_subchannel_t *ready[]; /* n of them */
} rr_picker_t;

static uvg_pick_result_t rr_pick(void *p, const uvg_pick_info_t *info,
                                 uvg_subchannel_t **sc, uvg_status_t *st) {
  rr_picker_t *pk = p;
  (void)info;
  if (pk->n > 0) {
    *sc = pk->ready[pk->next];
    pk->next = (pk->next + 1) % pk->n;
    return UVG_PICK_COMPLETE;
  }
  if (pk->state == UVG_STATE_TRANSIENT_FAILURE) {
    st->code = UVG_STATUS_UNAVAILABLE;
    st->message = pk->message;
    return UVG_PICK_FAIL;
  }
  return UVG_PICK_QUEUE;
}

static void publish(rr_t *rr) {
  size_t ready = 0, connecting = 0;
  for (size_t i = 0; i < rr->n; i++) {
    if (rr->v[i].state == UVG_STATE_READY) ready++;
    else if (rr->v[i].state != UVG_STATE_TRANSIENT_FAILURE) connecting++;
  }
  uvg_connectivity_t st = ready ? UVG_STATE_READY
                          : connecting ? UVG_STATE_CONNECTING
                                       : UVG_STATE_TRANSIENT_FAILURE;
  rr_picker_t *pk = uvg__calloc(1, sizeof(*pk) + ready * sizeof(pk->ready[0]));
  rr->state = st;
  if (pk == NULL) { /* no picker: the calls wait, which is safe */
    uvg_lb_update_state(rr->lb, ready ? UVG_STATE_CONNECTING : st, NULL, NULL, NULL);
    return;
  }
  pk->state = st;
  for (size_t i = 0; i < rr->n; i++)
    if (rr->v[i].state == UVG_STATE_READY) pk->ready[pk->n++] = rr->v[i].sc;
  /* a random start, so that many channels do not all begin on one backend */
  pk->next = pk->n ? (size_t)(uvg__random() % pk->n) : 0;
  snprintf(pk->message, sizeof(pk->message), "no connection: %s",
           rr->error[0] ? rr->error : "connection failed");
  uvg_lb_update_state(rr->lb, st, rr_pick, pk, uvg__free);
}

static int rr_update(void *state, const uvg_address_t *addrs, size_t n,
                     const char *config) {
  rr_t *rr = state;
  (void)config;
  rr_entry_t *v = uvg__calloc(n, sizeof(*v));
  if (v == NULL) return UVG_ENOMEM;
  /* a backend still listed keeps its subchannel (and its connection) */
  for (size_t i = 0; i < n; i++) {
    for (size_t j = 0; j < rr->n; j++) {
      if (rr->v[j].sc != NULL && uvg__address_equal(uvg_subchannel_address(rr->v[j].sc), &addrs[i])) {
        v[i] = rr->v[j];
        rr->v[j].sc = NULL;
        break;
      }
    }
  }
  /* one that is gone finishes its calls and closes */
  for (size_t j = 0; j < rr->n; j++)
    if (rr->v[j].sc != NULL) uvg_subchannel_release(rr->v[j].sc);
  uvg__free(rr->v);
  rr->v = v;
  rr->n = n;
  for (size_t i = 0; i < n; i++) {
    if (v[i].sc != NULL) continue;
    v[i].state = UVG_STATE_IDLE;
    if (uvg_lb_subchannel_new(rr->lb, &addrs[i], &v[i].sc) != 0) {
      v[i].sc = NULL;
      v[i].state = UVG_STATE_TRANSIENT_FAILURE;
      continue;
    }
    uvg_subchannel_connect(v[i].sc);
    v[i].state = UVG_STATE_CONNECTING;
  }
  publish(rr);
  return 0;
}

static void rr_subchannel_state(void *state, uvg_subchannel_t *sc,
                                uvg_connectivity_t st, const char *error) {
  rr_t *rr = state;
  rr_entry_t *e = NULL;
  for (size_t i = 0; i < rr->n && e == NULL; i++)
    if (rr->v[i].sc == sc) e = &rr->v[i];
  if (e == NULL) return;
  uvg_connectivity_t was = e->state;
  if (st == UVG_STATE_TRANSIENT_FAILURE) {
    snprintf(rr->error, sizeof(rr->error), "%s", error);
    uvg_lb_request_resolution(rr->lb);
  }
  if (st == UVG_STATE_IDLE) {
    if (was == UVG_STATE_READY) uvg_lb_request_resolution(rr->lb);
    uvg_subchannel_connect(sc); /* round_robin keeps every backend connected */
    st = uvg_subchannel_state(sc);
  }
  /* a failed subchannel counts as failed until it is READY */
  if (was == UVG_STATE_TRANSIENT_FAILURE && st != UVG_STATE_READY) return;
  e->state = st;
  if (was != e->state || st == UVG_STATE_TRANSIENT_FAILURE) publish(rr);
}

static void rr_resolver_error(void *state, const char *message) {
  rr_t *rr = state;
  if (rr->n > 0 && rr->state != UVG_STATE_TRANSIENT_FAILURE) return;
  snprintf(rr->error, sizeof(rr->error), "%s", message);
  publish(rr);
}

static int rr_create(uvg_lb_t *lb, void **state) {
  rr_t *rr = uvg__calloc(1, sizeof(*rr));
  if (rr == NULL) return UVG_ENOMEM;
  rr->lb = lb;
  rr->state = UVG_STATE_CONNECTING;
  *state = rr;
  return 0;
}

static void rr_destroy(void *state) {
  rr_t *rr = state;
  for (size_t i = 0; i < rr->n; i++)
    if (rr->v[i].sc != NULL) uvg_subchannel_release(rr->v[i].sc);
  uvg__free(rr->v);
  uvg__free(rr);
}

const uvg_lb_policy_type_t uvg__round_robin = {
    .name = "round_robin",
    .create = rr_create,
    .update = rr_update,
    .resolver_error = rr_resolver_error,
    .subchannel_state = rr_subchannel_state,
    .exit_idle = NULL,
    .destroy = rr_destroy,
};

/*
 * pick_first, as gRFC A62 and A61 describe it, on the public LB API.
 *
 * One subchannel per address. The first pass tries them in order (IPv6
 * and IPv4 interleaved, A61), starting the next one also when an attempt
 * has gone 250 ms without an answer (Happy Eyeballs); the first to become
 * READY is selected and the others are released. When every address has
 * failed once the policy reports TRANSIENT_FAILURE and keeps it (sticky,
 * A62) while it goes on connecting each subchannel as soon as its backoff
 * lets it (IDLE), until one is READY. When the selected connection is lost
 * the policy goes IDLE and asks for re-resolution; the next call starts a
 * new pass.
 *
 * Its configuration: {"shuffleAddressList": true} shuffles the addresses
 * before the interleaving (A62).
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "channel.h"

/* A61: the attempt delay of Happy Eyeballs (RFC 8305 recommends 250 ms). */
#define HAPPY_EYEBALLS_MS 250
/* What an allocation failure left undone (a picker, every subchannel) is
 * tried again this much later: nothing else would come to do it, and the
 * calls would wait for their deadlines. */
#define RETRY_MS 100

typedef struct {
  uvg_lb_t *lb;
  uvg_address_t *addrs; /* the list as interleaved; attrs owned */
  size_t naddrs;
  uvg_subchannel_t **scs; /* one per address, or NULL once released */
  uint8_t *failed;        /* failed at least once in this pass */
  size_t next;            /* the next address the first pass tries */
  uvg_subchannel_t *selected;
  uvg_connectivity_t state;
  uint8_t first_pass_done;
  uint8_t shuffle;
  uint8_t retry_report; /* the state went out without its picker */
  uint8_t retry_pass;   /* a pass found no subchannel to try */
  uvg__timer_t eyeballs;
  uvg__timer_t retry;
  char error[256];
} pf_t;

typedef struct {
  uvg_connectivity_t state;
  uvg_subchannel_t *sc;
  char message[288];
} pf_picker_t;

static uvg_pick_result_t pf_pick(void *p, const uvg_pick_info_t *info,
                                 uvg_subchannel_t **sc, uvg_status_t *st) {
  pf_picker_t *pk = p;
  (void)info;
  if (pk->state == UVG_STATE_READY) {
    *sc = pk->sc;
    return UVG_PICK_COMPLETE;
  }
  if (pk->state == UVG_STATE_TRANSIENT_FAILURE) {
    st->code = UVG_STATUS_UNAVAILABLE;
    st->message = pk->message;
    return UVG_PICK_FAIL;
  }
  return UVG_PICK_QUEUE;
}

static void on_retry(uvg__timer_t *t);

static void report(pf_t *pf, uvg_connectivity_t st) {
  pf_picker_t *pk = uvg__calloc(1, sizeof(*pk));
  pf->state = st;
  pf->retry_report = pk == NULL;
  if (pk == NULL) { /* no picker: the calls wait until the retry */
    uvg_lb_update_state(pf->lb, st == UVG_STATE_READY ? UVG_STATE_CONNECTING : st,
                        NULL, NULL, NULL);
    uvg__timer_start(&pf->retry, on_retry, RETRY_MS);
    return;
  }
  pk->state = st;
  pk->sc = pf->selected;
  snprintf(pk->message, sizeof(pk->message), "no connection: %s",
           pf->error[0] ? pf->error : "connection failed");
  uvg_lb_update_state(pf->lb, st, pf_pick, pk, uvg__free);
}

static void release_all(pf_t *pf, uvg_subchannel_t *keep) {
  for (size_t i = 0; i < pf->naddrs; i++) {
    if (pf->scs[i] != NULL && pf->scs[i] != keep) {
      uvg_subchannel_release(pf->scs[i]);
      pf->scs[i] = NULL;
    }
  }
}

static void free_list(pf_t *pf) {
  release_all(pf, NULL);
  for (size_t i = 0; i < pf->naddrs; i++) uvg__address_free(&pf->addrs[i]);
  uvg__free(pf->addrs);
  uvg__free(pf->scs);
  uvg__free(pf->failed);
  pf->addrs = NULL;
  pf->scs = NULL;
  pf->failed = NULL;
  pf->naddrs = 0;
}

static void on_eyeballs(uvg__timer_t *t);

/* The first pass moves on to the next address. */
static void try_next(pf_t *pf) {
  uvg__timer_stop(&pf->eyeballs);
  while (pf->next < pf->naddrs) {
    uvg_subchannel_t *sc = pf->scs[pf->next++];
    if (sc == NULL || uvg_subchannel_state(sc) == UVG_STATE_TRANSIENT_FAILURE)
      continue;
    uvg_subchannel_connect(sc);
    if (pf->next < pf->naddrs)
      uvg__timer_start(&pf->eyeballs, on_eyeballs, HAPPY_EYEBALLS_MS);
    return;
  }
}

static void start_pass(pf_t *pf);

static void on_retry(uvg__timer_t *t) {
  pf_t *pf = uvg__container_of(t, pf_t, retry);
  /* an IDLE policy waits for a call (A62) */
  int pass = pf->retry_pass && pf->selected == NULL && pf->state != UVG_STATE_IDLE;
  pf->retry_pass = 0;
  if (pass) start_pass(pf);
  if (pf->retry_report) report(pf, pf->state);
}

static void on_eyeballs(uvg__timer_t *t) {
  pf_t *pf = uvg__container_of(t, pf_t, eyeballs);
  if (pf->selected == NULL && !pf->first_pass_done) try_next(pf);
}

/* Makes the subchannels released by the last pass, or never made for
 * want of memory; returns how many the policy has. */
static size_t make_subchannels(pf_t *pf) {
  size_t have = 0;
  for (size_t i = 0; i < pf->naddrs; i++) {
    if (pf->scs[i] == NULL &&
        uvg_lb_subchannel_new(pf->lb, &pf->addrs[i], &pf->scs[i]) != 0)
      pf->scs[i] = NULL;
    have += pf->scs[i] != NULL;
  }
  return have;
}

static void start_pass(pf_t *pf) {
  pf->next = 0;
  pf->first_pass_done = 0;
  memset(pf->failed, 0, pf->naddrs);
  if (pf->naddrs > 0 && make_subchannels(pf) == 0) {
    /* nothing to try, and so nothing that would report: the pass has
     * failed, and another one follows */
    snprintf(pf->error, sizeof(pf->error), "out of memory");
    pf->first_pass_done = 1;
    pf->retry_pass = 1;
    report(pf, UVG_STATE_TRANSIENT_FAILURE);
    uvg__timer_start(&pf->retry, on_retry, RETRY_MS);
    return;
  }
  /* a pass under way makes the retry of one that found nothing stale:
   * it would start this one over and forget which addresses failed */
  pf->retry_pass = 0;
  if (!pf->retry_report) uvg__timer_stop(&pf->retry);
  /* A62: TRANSIENT_FAILURE stays until a subchannel is READY */
  if (pf->state != UVG_STATE_TRANSIENT_FAILURE) report(pf, UVG_STATE_CONNECTING);
  try_next(pf);
}

/* A61: the family of the first address first, then alternately the other
 * family's next address and this one's, each family keeping its order. */
static void interleave(uvg_address_t *a, size_t n) {
  uvg_address_t *out = uvg__malloc(n * sizeof(*out));
  if (out == NULL || n < 3) { /* two addresses are in order either way */
    uvg__free(out);
    return;
  }
  int first = ((struct sockaddr *)&a[0].addr)->sa_family;
  size_t i = 0, j = 0, k = 0; /* next of the first family, of the other */
  int turn_first = 1;
  while (k < n) {
    size_t *idx = turn_first ? &i : &j;
    while (*idx < n && (((struct sockaddr *)&a[*idx].addr)->sa_family == first) != turn_first)
      (*idx)++;
    if (*idx < n) out[k++] = a[(*idx)++];
    turn_first = !turn_first;
  }
  memcpy(a, out, n * sizeof(*out));
  uvg__free(out);
}

static void shuffle(uvg_address_t *a, size_t n) {
  for (size_t i = n; i > 1; i--) {
    size_t j = (size_t)(uvg__random() % i);
    uvg_address_t t = a[i - 1];
    a[i - 1] = a[j];
    a[j] = t;
  }
}

/* A62: {"shuffleAddressList": bool}; other fields are ignored. Sets
 * *shuffle; returns 0 or UVG_EINVAL. */
static int pf_read_config(const char *config, int *shuffle) {
  json_t *cfg = config != NULL ? json_loads(config, 0, NULL) : NULL;
  json_t *sh = cfg != NULL ? json_object_get(cfg, "shuffleAddressList") : NULL;
  int rc = config != NULL && (cfg == NULL || !json_is_object(cfg) ||
                              (sh != NULL && !json_is_boolean(sh)))
               ? UVG_EINVAL
               : 0;
  *shuffle = sh != NULL && json_is_true(sh);
  json_decref(cfg);
  return rc;
}

static int pf_check_config(const char *config) {
  int on;
  return pf_read_config(config, &on);
}

static int pf_update(void *state, const uvg_address_t *addrs, size_t n,
                     const char *config) {
  pf_t *pf = state;
  int on;
  if (pf_read_config(config, &on) != 0) return UVG_EINVAL;
  pf->shuffle = on;
  uvg_address_t *list = uvg__calloc(n, sizeof(*list));
  uvg_subchannel_t **scs = uvg__calloc(n, sizeof(*scs));
  uint8_t *failed = uvg__calloc(n, 1);
  size_t copied = 0;
  while (list != NULL && copied < n && uvg__address_copy(&list[copied], &addrs[copied]) == 0)
    copied++;
  if (list == NULL || scs == NULL || failed == NULL || copied < n) {
    for (size_t i = 0; list != NULL && i < copied; i++) uvg__address_free(&list[i]);
    uvg__free(list);
    uvg__free(scs);
    uvg__free(failed);
    return UVG_ENOMEM;
  }
  if (pf->shuffle) shuffle(list, n);
  interleave(list, n);
  /* A62: a selected address that is still in the list stays selected */
  uvg_subchannel_t *keep = NULL;
  for (size_t i = 0; pf->selected != NULL && i < n; i++) {
    if (uvg__address_equal(uvg_subchannel_address(pf->selected), &list[i])) {
      keep = pf->selected;
      scs[i] = keep;
      break; /* one slot: a subchannel is released once */
    }
  }
  for (size_t i = 0; i < pf->naddrs; i++)
    if (pf->scs[i] == keep) pf->scs[i] = NULL; /* moved to the new list */
  free_list(pf);
  pf->addrs = list;
  pf->scs = scs;
  pf->failed = failed;
  pf->naddrs = n;
  pf->selected = keep;
  for (size_t i = 0; i < n; i++) {
    if (scs[i] != NULL) continue;
    if (uvg_lb_subchannel_new(pf->lb, &list[i], &scs[i]) != 0) {
      scs[i] = NULL;
      failed[i] = 1;
    }
  }
  if (keep != NULL) {
    report(pf, UVG_STATE_READY);
    return 0;
  }
  /* A62: an IDLE policy connects on the next call, not on an update */
  if (pf->state != UVG_STATE_IDLE) start_pass(pf);
  return 0;
}

static int all_failed(const pf_t *pf) {
  for (size_t i = 0; i < pf->naddrs; i++)
    if (!pf->failed[i]) return 0;
  return 1;
}

static size_t index_of(const pf_t *pf, const uvg_subchannel_t *sc) {
  for (size_t i = 0; i < pf->naddrs; i++)
    if (pf->scs[i] == sc) return i;
  return pf->naddrs;
}

static void pf_subchannel_state(void *state, uvg_subchannel_t *sc,
                                uvg_connectivity_t st, const char *error) {
  pf_t *pf = state;
  size_t i = index_of(pf, sc);
  if (i == pf->naddrs) return;
  if (sc == pf->selected) {
    if (st == UVG_STATE_READY) return;
    /* A62: the connection is lost: IDLE until the next call */
    pf->selected = NULL;
    pf->first_pass_done = 0;
    uvg_lb_request_resolution(pf->lb);
    report(pf, UVG_STATE_IDLE);
    return;
  }
  switch (st) {
    case UVG_STATE_READY:
      uvg__timer_stop(&pf->eyeballs);
      pf->selected = sc;
      release_all(pf, sc);
      report(pf, UVG_STATE_READY);
      return;
    case UVG_STATE_TRANSIENT_FAILURE:
      pf->failed[i] = 1;
      snprintf(pf->error, sizeof(pf->error), "%s", error);
      if (!pf->first_pass_done) {
        if (all_failed(pf)) {
          pf->first_pass_done = 1;
          uvg__timer_stop(&pf->eyeballs);
          uvg_lb_request_resolution(pf->lb);
          report(pf, UVG_STATE_TRANSIENT_FAILURE);
          /* A62: from now on each tries again when its backoff lets it;
           * those whose backoff is already over try now */
          for (size_t j = 0; j < pf->naddrs; j++)
            if (pf->scs[j] != NULL && uvg_subchannel_state(pf->scs[j]) == UVG_STATE_IDLE)
              uvg_subchannel_connect(pf->scs[j]);
        } else {
          try_next(pf); /* A61: a failure starts the next attempt at once */
        }
      } else {
        report(pf, UVG_STATE_TRANSIENT_FAILURE); /* sticky; a newer reason */
      }
      return;
    case UVG_STATE_IDLE:
      if (!pf->first_pass_done && !pf->failed[i]) {
        /* Its connection was lost before the policy heard it was READY
         * (lb.c withdraws that READY: a server that answers SETTINGS and
         * GOAWAY together): as when the selected connection is lost, IDLE
         * until the next call, which starts a new pass. Waiting on would
         * leave the queued calls to a subchannel nobody connects. */
        uvg__timer_stop(&pf->eyeballs);
        uvg_lb_request_resolution(pf->lb);
        report(pf, UVG_STATE_IDLE);
        return;
      }
      /* A62: after the first pass, each tries again when its backoff
       * allows, until one is READY */
      if (pf->first_pass_done && pf->state == UVG_STATE_TRANSIENT_FAILURE)
        uvg_subchannel_connect(sc);
      return;
    default:
      return;
  }
}

static void pf_exit_idle(void *state) {
  pf_t *pf = state;
  if (pf->state != UVG_STATE_IDLE || pf->naddrs == 0) return;
  start_pass(pf); /* which makes the released subchannels again */
}

static void pf_resolver_error(void *state, const char *message) {
  pf_t *pf = state;
  /* what works keeps working; a policy that has nothing fails */
  if (pf->selected != NULL || (pf->naddrs > 0 && !pf->first_pass_done)) return;
  snprintf(pf->error, sizeof(pf->error), "%s", message);
  report(pf, UVG_STATE_TRANSIENT_FAILURE);
}

static int pf_create(uvg_lb_t *lb, void **state) {
  pf_t *pf = uvg__calloc(1, sizeof(*pf));
  if (pf == NULL) return UVG_ENOMEM;
  pf->lb = lb;
  pf->state = UVG_STATE_CONNECTING;
  uvg__timer_init(lb->ch->sched, &pf->eyeballs);
  uvg__timer_init(lb->ch->sched, &pf->retry);
  *state = pf;
  return 0;
}

static void pf_destroy(void *state) {
  pf_t *pf = state;
  uvg__timer_stop(&pf->eyeballs);
  uvg__timer_stop(&pf->retry);
  free_list(pf);
  uvg__free(pf);
}

const uvg_lb_policy_type_t uvg__pick_first = {
    .name = "pick_first",
    .create = pf_create,
    .update = pf_update,
    .resolver_error = pf_resolver_error,
    .subchannel_state = pf_subchannel_state,
    .exit_idle = pf_exit_idle,
    .destroy = pf_destroy,
    .check_config = pf_check_config,
};

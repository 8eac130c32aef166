/*
 * grpc.health.v1.Health (doc/health-checking.md) on the generated code of
 * grpc-proto's health.proto, compiled into the library.
 *
 * A watcher lives in its call's arena (uvg_call_alloc()), so it costs no
 * allocation of its own and is gone with the call. It has at most one
 * response in flight: when the status changes while one is, the send
 * callback sends the status as it is then, so a slow reader gets the
 * latest status and memory stays bounded however often it changes.
 */
#include "uvgrpc/health.h"

#include <string.h>

#include "../server/server.h"
#include "grpc/health/v1/health.uvgrpc.h"

typedef Grpc__Health__V1__HealthCheckRequest request_t;
typedef Grpc__Health__V1__HealthCheckResponse response_t;

/* doc/health-checking.md: SERVICE_UNKNOWN is Watch's answer for a
 * service the server does not know. */
#define SERVICE_UNKNOWN \
  GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN

typedef struct {
  char *service;
  int status; /* a uvg_health_status_t */
} entry_t;

struct uvg_health_s {
  uvg__server_hook_t hook;
  entry_t *entries;
  size_t n, cap;
  uvg__list_t watchers;
  int closing; /* the server is going: everything NOT_SERVING, for good */
};

typedef struct {
  uvg__list_t link; /* health->watchers until the call ends */
  uvg_health_t *health;
  uvg_call_t *call;
  const char *service; /* the request's, valid for the call's life */
  int sent;            /* the status last sent, -1 before the first */
  uint8_t sending, ended;
} watcher_t;

static entry_t *find(uvg_health_t *h, const char *service) {
  for (size_t i = 0; i < h->n; i++)
    if (strcmp(h->entries[i].service, service) == 0) return &h->entries[i];
  return NULL;
}

static int current(uvg_health_t *h, const char *service) {
  const entry_t *e = find(h, service);
  return e != NULL ? e->status : SERVICE_UNKNOWN;
}

/* ---- Check ---- */

static void on_check(uvg_call_t *call, const request_t *req) {
  uvg_health_t *h = uvg_call_method_data(call);
  const entry_t *e = find(h, req->service);
  if (e == NULL) {
    uvg_call_finish(call, UVG_STATUS_NOT_FOUND, "unknown service", NULL, 0);
    return;
  }
  response_t resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
  resp.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)e->status;
  grpc__health__v1__Health__Check__reply(call, &resp);
}

/* ---- Watch ---- */

static void watch_send(watcher_t *w);

static void watch_end(watcher_t *w, uvg_status_code_t code, const char *msg);

static void on_watch_sent(uvg_call_t *call, int status, void *arg) {
  watcher_t *w = arg;
  (void)call;
  w->sending = 0;
  if (status == 0) watch_send(w);
  /* a shutdown waited for this send, so that NOT_SERVING goes out first */
  if (!w->sending && w->health->closing)
    watch_end(w, UVG_STATUS_UNAVAILABLE, "server shutting down");
}

/* Sends the current status if the client has not had it. */
static void watch_send(watcher_t *w) {
  if (w->sending || w->ended) return;
  int now = current(w->health, w->service);
  if (now == w->sent) return;
  response_t resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
  resp.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)now;
  if (grpc__health__v1__Health__Watch__send(w->call, &resp, 0, on_watch_sent,
                                            w) == 0) {
    w->sending = 1;
    w->sent = now;
  }
}

static void watch_end(watcher_t *w, uvg_status_code_t code, const char *msg) {
  if (w->ended) return;
  w->ended = 1;
  uvg__list_remove(&w->link);
  uvg_call_finish(w->call, code, msg, NULL, 0);
}

static void on_watch(uvg_call_t *call, const request_t *req) {
  uvg_health_t *h = uvg_call_method_data(call);
  watcher_t *w = uvg_call_alloc(call, sizeof(*w));
  if (w == NULL) {
    uvg_call_finish(call, UVG_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL,
                    0);
    return;
  }
  memset(w, 0, sizeof(*w));
  w->health = h;
  w->call = call;
  w->service = req->service;
  w->sent = -1;
  uvg_call_set_data(call, w);
  uvg__list_push(&h->watchers, &w->link);
  watch_send(w);
  if (h->closing && !w->sending)
    watch_end(w, UVG_STATUS_UNAVAILABLE, "server shutting down");
}

static void on_watch_cancel(uvg_call_t *call, const uvg_status_t *status) {
  (void)status;
  watcher_t *w = uvg_call_get_data(call);
  if (w != NULL) watch_end(w, UVG_STATUS_CANCELLED, NULL);
}

static void on_watch_done(uvg_call_t *call, const uvg_status_t *status) {
  (void)status;
  watcher_t *w = uvg_call_get_data(call);
  if (w != NULL && !w->ended) uvg__list_remove(&w->link);
}

static const grpc__health__v1__Health__server_t impl = {
    .Check = {.on_call = on_check},
    .Watch = {.on_call = on_watch,
              .on_cancel = on_watch_cancel,
              .on_done = on_watch_done},
};

static void notify(uvg_health_t *h, const char *service) {
  for (uvg__list_t *p = h->watchers.next; p != &h->watchers; p = p->next) {
    watcher_t *w = uvg__container_of(p, watcher_t, link);
    if (service == NULL || strcmp(w->service, service) == 0) watch_send(w);
  }
}

/* ---- the server's life ---- */

/* Shutdown or close began: NOT_SERVING everywhere, said to every watcher
 * before its call ends, so that a balancer moves away. */
static void on_server_close(uvg__server_hook_t *hook) {
  uvg_health_t *h = uvg__container_of(hook, uvg_health_t, hook);
  h->closing = 1;
  for (size_t i = 0; i < h->n; i++)
    h->entries[i].status = UVG_HEALTH_NOT_SERVING;
  notify(h, NULL);
  /* A watcher with a send in flight ends from its send callback, after
   * NOT_SERVING has gone out behind it. */
  for (uvg__list_t *p = h->watchers.next, *next; p != &h->watchers; p = next) {
    next = p->next;
    watcher_t *w = uvg__container_of(p, watcher_t, link);
    if (!w->sending)
      watch_end(w, UVG_STATUS_UNAVAILABLE, "server shutting down");
  }
}

static void on_server_free(uvg__server_hook_t *hook) {
  uvg_health_t *h = uvg__container_of(hook, uvg_health_t, hook);
  for (size_t i = 0; i < h->n; i++) uvg__free(h->entries[i].service);
  uvg__free(h->entries);
  uvg__free(h);
}

int uvg_health_add(uvg_server_t *server, uvg_health_t **out) {
  if (server == NULL || out == NULL) return UVG_EINVAL;
  uvg_health_t *h = uvg__calloc(1, sizeof(*h));
  if (h == NULL) return UVG_ENOMEM;
  uvg__list_init(&h->watchers);
  int rc = uvg_health_set(h, "", UVG_HEALTH_SERVING);
  if (rc == 0) rc = grpc__health__v1__Health__register(server, &impl, h);
  if (rc != 0) {
    on_server_free(&h->hook);
    return rc;
  }
  h->hook.on_close = on_server_close;
  h->hook.on_free = on_server_free;
  uvg__server_add_hook(server, &h->hook);
  *out = h;
  return 0;
}

int uvg_health_set(uvg_health_t *h, const char *service,
                   uvg_health_status_t status) {
  if (h == NULL || service == NULL || (unsigned)status > UVG_HEALTH_NOT_SERVING)
    return UVG_EINVAL;
  if (h->closing) return UVG_ECLOSED;
  entry_t *e = find(h, service);
  if (e == NULL) {
    if (h->n == h->cap) {
      size_t cap = h->cap ? h->cap * 2 : 8;
      entry_t *v = uvg__realloc(h->entries, cap * sizeof(*v));
      if (v == NULL) return UVG_ENOMEM;
      h->entries = v;
      h->cap = cap;
    }
    char *name = uvg__strdup(service);
    if (name == NULL) return UVG_ENOMEM;
    e = &h->entries[h->n++];
    e->service = name;
    e->status = -1;
  }
  if (e->status == (int)status) return 0;
  e->status = (int)status;
  notify(h, service);
  return 0;
}

int uvg_health_clear(uvg_health_t *h, const char *service) {
  if (h == NULL || service == NULL) return UVG_EINVAL;
  if (h->closing) return UVG_ECLOSED;
  entry_t *e = find(h, service);
  if (e == NULL) return 0;
  uvg__free(e->service);
  *e = h->entries[--h->n];
  notify(h, service);
  return 0;
}

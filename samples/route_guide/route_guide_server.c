/*
 * route_guide_server: the four kinds of gRPC call on generated code.
 *
 *   route_guide_server [--port N]
 *
 * Prints "listening on port N" and stops on SIGINT or SIGTERM, letting
 * calls in flight finish for a second. Health and reflection are on, so
 * grpcurl-style tools can list and call it.
 *
 * How each kind is written:
 *   GetFeature    unary: answer in on_call with ..._reply().
 *   ListFeatures  server streaming: send one feature, send the next from
 *                 the send callback (backpressure: one message buffered),
 *                 finish when none is left.
 *   RecordRoute   client streaming: per-call state from uvg_call_alloc(),
 *                 updated by each on_message, answered at on_half_close.
 *   RouteChat     bidi: answer each note as it comes, finish at the
 *                 client's half-close.
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uvgrpc.h>
#include <uvgrpc/health.h>
#include <uvgrpc/reflection.h>

#include "route_guide.uvgrpc.h"

typedef Routeguide__Point point_t;

/* The map: a few made-up places (E7 coordinates). */
static const struct {
  const char *name;
  int32_t lat, lon;
} places[] = {
    {"Old Mill, 3 River Lane", 407838351, -746143763},
    {"Harbour Light, Pier 9", 408122808, -743999179},
    {"Stone Bridge", 413628156, -749015468},
    {"Hilltop Water Tower", 419999544, -740371136},
    {"Market Square", 414008389, -743951297},
    {"North Gate", 419611318, -746524769},
    {"Lake Shelter", 406411633, -741722051},
    {"Signal Box, Line 4", 406109563, -742186778},
    {"Orchard Barn", 416802456, -742370183},
    {"Quarry Lookout", 412950425, -741077389},
};
#define NPLACES (sizeof(places) / sizeof(places[0]))

static uv_loop_t *loop;

static void set_feature(Routeguide__Feature *f, point_t *loc, size_t i) {
  routeguide__feature__init(f);
  routeguide__point__init(loc);
  loc->latitude = places[i].lat;
  loc->longitude = places[i].lon;
  f->name = (char *)places[i].name;
  f->location = loc;
}

/* ---- GetFeature: unary ---- */

static void get_feature(uvg_call_t *call, const point_t *p) {
  Routeguide__Feature f = ROUTEGUIDE__FEATURE__INIT;
  point_t loc = *p;
  f.location = &loc;
  for (size_t i = 0; i < NPLACES; i++)
    if (places[i].lat == p->latitude && places[i].lon == p->longitude)
      f.name = (char *)places[i].name;
  routeguide__RouteGuide__GetFeature__reply(call, &f);
}

/* ---- ListFeatures: server streaming with backpressure ---- */

typedef struct {
  int32_t lo_lat, hi_lat, lo_lon, hi_lon;
  size_t next; /* the next place to look at */
} listing_t;

static void list_next(uvg_call_t *call, int status, void *arg);

static void list_send(uvg_call_t *call, listing_t *l) {
  for (; l->next < NPLACES; l->next++) {
    size_t i = l->next;
    if (places[i].lat < l->lo_lat || places[i].lat > l->hi_lat ||
        places[i].lon < l->lo_lon || places[i].lon > l->hi_lon)
      continue;
    Routeguide__Feature f;
    point_t loc;
    set_feature(&f, &loc, i);
    l->next++;
    /* The next one goes from list_next, once this one has left. */
    if (routeguide__RouteGuide__ListFeatures__send(call, &f, 0, list_next, l) !=
        0)
      uvg_call_finish(call, UVG_STATUS_INTERNAL, "cannot send", NULL, 0);
    return;
  }
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}

/* status is UVG_ECANCELED when the call ended first: nothing more to do. */
static void list_next(uvg_call_t *call, int status, void *arg) {
  if (status == 0) list_send(call, arg);
}

static int32_t min32(int32_t a, int32_t b) {
  return a < b ? a : b;
}
static int32_t max32(int32_t a, int32_t b) {
  return a > b ? a : b;
}

static void list_features(uvg_call_t *call, const Routeguide__Rectangle *r) {
  if (r->lo == NULL || r->hi == NULL) {
    uvg_call_finish(call, UVG_STATUS_INVALID_ARGUMENT, "lo and hi are required",
                    NULL, 0);
    return;
  }
  listing_t *l =
      uvg_call_alloc(call, sizeof(*l)); /* lives as long as the call */
  if (l == NULL) {
    uvg_call_finish(call, UVG_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL,
                    0);
    return;
  }
  l->lo_lat = min32(r->lo->latitude, r->hi->latitude);
  l->hi_lat = max32(r->lo->latitude, r->hi->latitude);
  l->lo_lon = min32(r->lo->longitude, r->hi->longitude);
  l->hi_lon = max32(r->lo->longitude, r->hi->longitude);
  l->next = 0;
  list_send(call, l);
}

/* A cancelled call is still finished by its handler (uvg_method_t). */
static void finish_cancelled(uvg_call_t *call, const uvg_status_t *status) {
  (void)status;
  uvg_call_finish(call, UVG_STATUS_CANCELLED, NULL, NULL, 0);
}

/* ---- RecordRoute: client streaming ---- */

typedef struct {
  int32_t points, features;
  double distance;
  point_t last;
  uint64_t start_ms;
} route_t;

/* Great-circle distance in metres (haversine), between E7 points. */
static double distance_m(const point_t *a, const point_t *b) {
  const double r = 6371000.0, e7 = 1e7, rad = 3.14159265358979323846 / 180.0;
  double lat1 = a->latitude / e7 * rad, lat2 = b->latitude / e7 * rad;
  double dlat = lat2 - lat1, dlon = (b->longitude - a->longitude) / e7 * rad;
  double h = sin(dlat / 2) * sin(dlat / 2) +
             cos(lat1) * cos(lat2) * sin(dlon / 2) * sin(dlon / 2);
  return 2 * r * atan2(sqrt(h), sqrt(1 - h));
}

static void record_start(uvg_call_t *call) {
  route_t *r = uvg_call_alloc(call, sizeof(*r));
  if (r == NULL) {
    uvg_call_finish(call, UVG_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL,
                    0);
    return;
  }
  memset(r, 0, sizeof(*r));
  r->start_ms = uv_now(loop);
  uvg_call_set_data(call, r);
}

/* `p` lives during this callback only: what is kept is copied. */
static void record_point(uvg_call_t *call, const point_t *p) {
  route_t *r = uvg_call_get_data(call);
  if (r->points > 0) r->distance += distance_m(&r->last, p);
  r->points++;
  r->last = *p;
  for (size_t i = 0; i < NPLACES; i++)
    if (places[i].lat == p->latitude && places[i].lon == p->longitude)
      r->features++;
}

static void record_end(uvg_call_t *call) {
  route_t *r = uvg_call_get_data(call);
  Routeguide__RouteSummary s = ROUTEGUIDE__ROUTE_SUMMARY__INIT;
  s.point_count = r->points;
  s.feature_count = r->features;
  s.distance = (int32_t)r->distance;
  s.elapsed_time = (int32_t)((uv_now(loop) - r->start_ms) / 1000);
  routeguide__RouteGuide__RecordRoute__reply(call, &s);
}

/* ---- RouteChat: bidi ---- */

/* Every note ever left, server-wide. */
typedef struct {
  point_t at;
  char *message;
} note_t;
static note_t *notes;
static size_t nnotes, notes_cap;

static void chat_start(uvg_call_t *call) {
  (void)call;
}

static void chat_note(uvg_call_t *call, const Routeguide__RouteNote *n) {
  point_t at = ROUTEGUIDE__POINT__INIT;
  if (n->location != NULL) at = *n->location;
  for (size_t i = 0; i < nnotes; i++) {
    if (notes[i].at.latitude != at.latitude ||
        notes[i].at.longitude != at.longitude)
      continue;
    Routeguide__RouteNote old = ROUTEGUIDE__ROUTE_NOTE__INIT;
    old.location = &notes[i].at;
    old.message = notes[i].message;
    /* No callback: copied, so a slow reader costs memory here; a server
     * facing untrusted clients would pace this as ListFeatures does. */
    routeguide__RouteGuide__RouteChat__send(call, &old, 0, NULL, NULL);
  }
  if (nnotes == notes_cap) {
    size_t cap = notes_cap ? notes_cap * 2 : 16;
    note_t *v = realloc(notes, cap * sizeof(*v));
    if (v == NULL) return; /* not kept; the call goes on */
    notes = v;
    notes_cap = cap;
  }
  size_t len = strlen(n->message) + 1;
  if ((notes[nnotes].message = malloc(len)) == NULL) return;
  memcpy(notes[nnotes].message, n->message, len);
  notes[nnotes].at = at;
  nnotes++;
}

static void chat_end(uvg_call_t *call) {
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}

static const routeguide__RouteGuide__server_t route_guide = {
    .GetFeature = {.on_call = get_feature},
    .ListFeatures = {.on_call = list_features, .on_cancel = finish_cancelled},
    .RecordRoute = {.on_call = record_start,
                    .on_message = record_point,
                    .on_half_close = record_end,
                    .on_cancel = finish_cancelled},
    .RouteChat = {.on_call = chat_start,
                  .on_message = chat_note,
                  .on_half_close = chat_end,
                  .on_cancel = finish_cancelled},
};

/* ---- main ---- */

static uvg_server_t *server;
static uv_signal_t sigint, sigterm;

static void on_closed(uvg_server_t *s, void *data) {
  (void)s;
  (void)data;
  uv_close((uv_handle_t *)&sigint, NULL);
  uv_close((uv_handle_t *)&sigterm, NULL);
}

static void on_signal(uv_signal_t *h, int signum) {
  (void)signum;
  uvg_server_shutdown(server, 1000, on_closed, h);
}

int main(int argc, char **argv) {
  const char *port = "10000";
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
      port = argv[++i];
    else if (strncmp(argv[i], "--port=", 7) == 0)
      port = argv[i] + 7;
    else {
      fprintf(stderr, "usage: %s [--port N]\n", argv[0]);
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  loop = uv_default_loop();
  uvg_health_t *health;
  char addr[64];
  int bound, err;
  snprintf(addr, sizeof(addr), "127.0.0.1:%s", port);
  if ((err = uvg_server_new(loop, NULL, &server)) != 0 ||
      (err = routeguide__RouteGuide__register(server, &route_guide, NULL)) !=
          0 ||
      (err = uvg_health_add(server, &health)) != 0 ||
      (err = uvg_health_set(health, "routeguide.RouteGuide",
                            UVG_HEALTH_SERVING)) != 0 ||
      (err = uvg_reflection_add(server)) != 0 ||
      (err = uvg_server_listen(server, addr, uvg_insecure_server_credentials(),
                               &bound)) != 0) {
    fprintf(stderr, "route_guide_server: %s: %s\n", addr, uvg_strerror(err));
    return 1;
  }
  uv_signal_init(loop, &sigint);
  uv_signal_init(loop, &sigterm);
  uv_signal_start(&sigint, on_signal, SIGINT);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  printf("listening on port %d\n", bound);
  fflush(stdout);
  uv_run(loop, UV_RUN_DEFAULT);
  for (size_t i = 0; i < nnotes; i++) free(notes[i].message);
  free(notes);
  return uv_loop_close(loop) == 0 ? 0 : 1;
}

/*
 * route_guide_client: calls each method of routeguide.RouteGuide once, one
 * after the other, and prints what comes back.
 *
 *   route_guide_client [--target 127.0.0.1:10000 | --port N]
 *
 * One loop, no threads: each step starts the next from its final callback,
 * and the last one closes the channel, which lets uv_run() return.
 *
 *   GetFeature    a unary call in one step: ..._client_unary().
 *   ListFeatures  a typed call object: ..._client_read() asks for each
 *                 response; on_message gets it decoded.
 *   RecordRoute   ..._client_send() per point, then ..._client_half_close();
 *                 the one response comes with on_status.
 *   RouteChat     sends and reads at the same time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uvgrpc.h>

#include "route_guide.uvgrpc.h"

typedef Routeguide__Point point_t;

static uvg_channel_t *channel;
static int failed;
static const uvg_client_call_options_t opts = {.timeout_ms = 10000,
                                               .wait_for_ready = 1};

static void step_list(void);
static void step_record(void);
static void step_chat(void);
static void done(void);

static void print_point(const point_t *p) {
  printf("%.7f, %.7f", p ? p->latitude / 1e7 : 0.0,
         p ? p->longitude / 1e7 : 0.0);
}

static int ok(const char *what, const uvg_status_t *status) {
  if (status->code == UVG_STATUS_OK) return 1;
  fprintf(stderr, "route_guide_client: %s: %s: %s\n", what,
          uvg_status_code_name(status->code), status->message);
  failed = 1;
  return 0;
}

/* ---- GetFeature ---- */

static int get_left = 2;

static void on_feature(const uvg_status_t *status, const Routeguide__Feature *f,
                       void *user_data) {
  (void)user_data;
  if (ok("GetFeature", status)) {
    if (f->name[0] != '\0') {
      printf("GetFeature: %s at ", f->name);
    } else {
      printf("GetFeature: nothing at ");
    }
    print_point(f->location);
    printf("\n");
  }
  if (--get_left == 0) step_list();
}

static void step_get(void) {
  point_t known = ROUTEGUIDE__POINT__INIT, nowhere = ROUTEGUIDE__POINT__INIT;
  known.latitude = 407838351;
  known.longitude = -746143763;
  /* Two calls at once on one connection; the replies may come in any order,
   * so the second one's is printed by the same callback. */
  routeguide__RouteGuide__GetFeature__client_unary(channel, &known, &opts,
                                                   on_feature, NULL);
  routeguide__RouteGuide__GetFeature__client_unary(channel, &nowhere, &opts,
                                                   on_feature, NULL);
}

/* ---- ListFeatures ---- */

static int listed;

static void on_listed(routeguide__RouteGuide__ListFeatures__client_call_t *call,
                      const Routeguide__Feature *f, void *user_data) {
  (void)user_data;
  printf("ListFeatures: %s at ", f->name);
  print_point(f->location);
  printf("\n");
  listed++;
  routeguide__RouteGuide__ListFeatures__client_read(call); /* the next one */
}

static void on_list_end(
    routeguide__RouteGuide__ListFeatures__client_call_t *call,
    const uvg_status_t *status, const uvg_metadata_t *trailers, size_t n,
    void *user_data) {
  (void)call;
  (void)trailers;
  (void)n;
  (void)user_data;
  if (ok("ListFeatures", status)) printf("ListFeatures: %d features\n", listed);
  step_record();
}

static void step_list(void) {
  static const routeguide__RouteGuide__ListFeatures__client_cbs_t cbs = {
      .on_message = on_listed, .on_status = on_list_end};
  point_t lo = ROUTEGUIDE__POINT__INIT, hi = ROUTEGUIDE__POINT__INIT;
  lo.latitude = 400000000;
  lo.longitude = -750000000;
  hi.latitude = 415000000;
  hi.longitude = -740000000;
  Routeguide__Rectangle rect = ROUTEGUIDE__RECTANGLE__INIT;
  rect.lo = &lo;
  rect.hi = &hi;
  routeguide__RouteGuide__ListFeatures__client_call_t *call;
  if (routeguide__RouteGuide__ListFeatures__client_start(
          channel, &rect, &opts, &cbs, NULL, &call) != 0 ||
      routeguide__RouteGuide__ListFeatures__client_read(call) != 0) {
    failed = 1;
    step_record();
  }
}

/* ---- RecordRoute ---- */

static void on_summary(routeguide__RouteGuide__RecordRoute__client_call_t *call,
                       const uvg_status_t *status,
                       const Routeguide__RouteSummary *s,
                       const uvg_metadata_t *trailers, size_t n,
                       void *user_data) {
  (void)call;
  (void)trailers;
  (void)n;
  (void)user_data;
  if (ok("RecordRoute", status))
    printf("RecordRoute: %d points, %d features, %d m\n", s->point_count,
           s->feature_count, s->distance);
  step_chat();
}

static void step_record(void) {
  static const routeguide__RouteGuide__RecordRoute__client_cbs_t cbs = {
      .on_status = on_summary};
  static const int32_t route[][2] = {{407838351, -746143763},
                                     {408122808, -743999179},
                                     {413628156, -749015468},
                                     {406000000, -745000000}};
  routeguide__RouteGuide__RecordRoute__client_call_t *call;
  if (routeguide__RouteGuide__RecordRoute__client_start(channel, &opts, &cbs,
                                                        NULL, &call) != 0) {
    failed = 1;
    step_chat();
    return;
  }
  for (size_t i = 0; i < sizeof(route) / sizeof(route[0]); i++) {
    point_t p = ROUTEGUIDE__POINT__INIT;
    p.latitude = route[i][0];
    p.longitude = route[i][1];
    /* No callback: packed and copied now; with one, it would be sent from
     * the library's buffer and the callback would say when it left. */
    routeguide__RouteGuide__RecordRoute__client_send(call, &p, 0, NULL, NULL);
  }
  routeguide__RouteGuide__RecordRoute__client_half_close(call);
}

/* ---- RouteChat ---- */

static void on_note(routeguide__RouteGuide__RouteChat__client_call_t *call,
                    const Routeguide__RouteNote *note, void *user_data) {
  (void)user_data;
  printf("RouteChat: \"%s\" was left at ", note->message);
  print_point(note->location);
  printf("\n");
  routeguide__RouteGuide__RouteChat__client_read(call);
}

static void on_chat_end(routeguide__RouteGuide__RouteChat__client_call_t *call,
                        const uvg_status_t *status,
                        const uvg_metadata_t *trailers, size_t n,
                        void *user_data) {
  (void)call;
  (void)trailers;
  (void)n;
  (void)user_data;
  if (ok("RouteChat", status)) printf("RouteChat: done\n");
  done();
}

static void step_chat(void) {
  static const routeguide__RouteGuide__RouteChat__client_cbs_t cbs = {
      .on_message = on_note, .on_status = on_chat_end};
  static const struct {
    int32_t lat, lon;
    const char *text;
  } sent[] = {{1, 1, "first note at A"},
              {2, 2, "first note at B"},
              {1, 1, "second note at A"},
              {2, 2, "second note at B"}};
  routeguide__RouteGuide__RouteChat__client_call_t *call;
  if (routeguide__RouteGuide__RouteChat__client_start(channel, &opts, &cbs,
                                                      NULL, &call) != 0) {
    failed = 1;
    done();
    return;
  }
  routeguide__RouteGuide__RouteChat__client_read(call);
  for (size_t i = 0; i < sizeof(sent) / sizeof(sent[0]); i++) {
    point_t at = ROUTEGUIDE__POINT__INIT;
    at.latitude = sent[i].lat;
    at.longitude = sent[i].lon;
    Routeguide__RouteNote note = ROUTEGUIDE__ROUTE_NOTE__INIT;
    note.location = &at;
    note.message = (char *)sent[i].text;
    routeguide__RouteGuide__RouteChat__client_send(call, &note, 0, NULL, NULL);
  }
  routeguide__RouteGuide__RouteChat__client_half_close(call);
}

static void done(void) {
  uvg_channel_close(channel, NULL, NULL);
}

int main(int argc, char **argv) {
  const char *target = "127.0.0.1:10000";
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--target") == 0 && i + 1 < argc) {
      target = argv[++i];
    } else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
      static char t[64];
      snprintf(t, sizeof(t), "127.0.0.1:%s", argv[++i]);
      target = t;
    } else {
      fprintf(stderr, "usage: %s [--target HOST:PORT | --port N]\n", argv[0]);
      return 2;
    }
  }
  uv_loop_t *loop = uv_default_loop();
  int err = uvg_channel_new(loop, target, uvg_insecure_channel_credentials(),
                            NULL, &channel);
  if (err != 0) {
    fprintf(stderr, "route_guide_client: %s: %s\n", target, uvg_strerror(err));
    return 1;
  }
  step_get();
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  return failed;
}

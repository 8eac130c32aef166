/*
 * Client-side health checking (gRFC A17, grpc/grpc doc/health-checking.md).
 *
 * With healthCheckConfig.serviceName in the service config, and an LB
 * policy other than pick_first (which, as in gRPC, does not use it), a
 * subchannel whose connection is up watches grpc.health.v1.Health/Watch on
 * that connection and counts as READY only while the server answers
 * SERVING; until the first answer it stays CONNECTING, and another answer
 * makes it TRANSIENT_FAILURE. A server without the health service
 * (UNIMPLEMENTED) counts as healthy, logged once per channel. A watch that
 * ends otherwise makes the subchannel TRANSIENT_FAILURE and is started
 * again after a backoff, on the same connection.
 *
 * The messages are two fields, encoded by hand: HealthCheckRequest
 * {string service = 1} and HealthCheckResponse {ServingStatus status = 1}.
 */
#include <stdio.h>
#include <string.h>

#include "channel.h"

#define WATCH "/grpc.health.v1.Health/Watch"
#define SERVING 1

int uvg__health_enabled(const uvg_channel_t *ch) {
  return ch->sc != NULL && ch->sc->health_check_service != NULL &&
         ch->lb.type != NULL && ch->lb.type != &uvg__pick_first;
}

/* HealthCheckResponse.status, or -1 for bytes that are not one. */
static int parse_status(const uint8_t *p, size_t n) {
  int status = 0; /* proto3: absent is 0, UNKNOWN */
  size_t i = 0;
  while (i < n) {
    uint8_t key = p[i++];
    uint64_t v = 0;
    int shift = 0;
    if ((key & 7) == 0) { /* varint */
      while (i < n && shift < 64) {
        v |= (uint64_t)(p[i] & 0x7f) << shift;
        shift += 7;
        if (!(p[i++] & 0x80)) break;
      }
      if (key >> 3 == 1) status = (int)v;
    } else if ((key & 7) == 2) { /* length-delimited: skipped */
      while (i < n && shift < 35) {
        v |= (uint64_t)(p[i] & 0x7f) << shift;
        shift += 7;
        if (!(p[i++] & 0x80)) break;
      }
      if (v > n - i) return -1;
      i += (size_t)v;
    } else {
      return -1;
    }
  }
  return status;
}

static void health_start(uvg_subchannel_t *sc);

static void on_retry(uvg__timer_t *t) {
  uvg_subchannel_t *sc = uvg__container_of(t, uvg_subchannel_t, health_timer);
  health_start(sc);
}

static void on_message(uvg_client_call_t *call, const uint8_t *msg, size_t len,
                       void *ud) {
  uvg_subchannel_t *sc = ud;
  int st = parse_status(msg, len);
  if (sc->health_call == call && !sc->released && sc->conn != NULL) {
    if (st == SERVING) {
      uvg__backoff_reset(&sc->health_backoff);
      uvg__subchannel_set_health(sc, 1, NULL);
    } else {
      char why[64];
      snprintf(why, sizeof(why), "health check: %s",
               st == 2 ? "NOT_SERVING" : st == 3 ? "SERVICE_UNKNOWN" : "UNKNOWN");
      uvg__subchannel_set_health(sc, 0, why);
    }
  }
  uvg_client_call_read(call);
}

static void on_status(uvg_client_call_t *call, const uvg_status_t *st,
                      const uvg_metadata_t *tr, size_t n, void *ud) {
  uvg_subchannel_t *sc = ud;
  (void)tr;
  (void)n;
  if (sc->health_call != call) { /* stopped: the subchannel let it go */
    uvg__subchannel_unref(sc);
    return;
  }
  sc->health_call = NULL;
  uvg_channel_t *ch = sc->ch;
  if (!sc->released && sc->conn != NULL && !ch->closing) {
    if (st->code == UVG_STATUS_UNIMPLEMENTED) {
      if (!ch->health_unimplemented_logged) {
        ch->health_unimplemented_logged = 1;
        uvg__log(UVG_LOG_WARN, "%s: the server has no health service; its "
                 "backends count as healthy", sc->name);
      }
      uvg__subchannel_set_health(sc, 1, NULL);
    } else {
      char why[160];
      snprintf(why, sizeof(why), "health check: %s: %s", uvg_status_code_name(st->code),
               st->message);
      uvg__subchannel_set_health(sc, 0, why);
      uvg__timer_start(&sc->health_timer, on_retry, uvg__backoff_next(&sc->health_backoff));
    }
  }
  uvg__subchannel_unref(sc);
}

static const uvg_client_call_cbs_t health_cbs = {NULL, on_message, on_status};

static void health_start(uvg_subchannel_t *sc) {
  uvg_channel_t *ch = sc->ch;
  if (sc->health_call != NULL || sc->released || sc->conn == NULL || ch->closing ||
      !uvg__health_enabled(ch))
    return;
  const char *service = ch->sc->health_check_service;
  size_t n = strlen(service), h = 1;
  uint8_t *req = uvg__malloc(n + 6);
  if (req == NULL) {
    uvg__subchannel_set_health(sc, 0, "health check: out of memory");
    uvg__timer_start(&sc->health_timer, on_retry, uvg__backoff_next(&sc->health_backoff));
    return;
  }
  req[0] = 0x0a; /* field 1, length-delimited; the length as a varint */
  for (size_t v = n; ; v >>= 7) {
    req[h++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
    if (v <= 0x7f) break;
  }
  memcpy(req + h, service, n);
  uvg_client_call_t *call;
  if (uvg__ccall_start_pinned(ch, sc->conn, WATCH, &health_cbs, sc, &call) != 0) {
    uvg__free(req);
    uvg__subchannel_set_health(sc, 0, "health check: cannot start the watch");
    uvg__timer_start(&sc->health_timer, on_retry, uvg__backoff_next(&sc->health_backoff));
    return;
  }
  sc->health_call = call;
  sc->refs++; /* until on_status */
  uvg_client_call_send(call, req, h + n, 0, NULL, NULL); /* copied */
  uvg__free(req);
  uvg_client_call_half_close(call);
  uvg_client_call_read(call);
}

void uvg__health_start(uvg_subchannel_t *sc) {
  uvg__timer_stop(&sc->health_timer);
  health_start(sc);
}

void uvg__health_config_changed(uvg_channel_t *ch) {
  const char *want = uvg__health_enabled(ch) ? ch->sc->health_check_service : NULL;
  const char *now = ch->health_service;
  if ((want == NULL && now == NULL) || (want && now && strcmp(want, now) == 0)) return;
  uvg__free(ch->health_service);
  ch->health_service = want ? uvg__strdup(want) : NULL;
  for (uvg__list_t *p = ch->subchannels.next; p != &ch->subchannels; p = p->next) {
    uvg_subchannel_t *sc = uvg__container_of(p, uvg_subchannel_t, link);
    if (sc->released || sc->conn == NULL) continue;
    uvg__health_stop(sc);
    if (want == NULL) {
      uvg__subchannel_set_health(sc, 1, NULL); /* no verdict to wait for */
    } else {
      uvg__subchannel_set_connecting(sc); /* until the new watch answers */
      health_start(sc);
    }
  }
}

void uvg__health_stop(uvg_subchannel_t *sc) {
  uvg__timer_stop(&sc->health_timer);
  uvg_client_call_t *call = sc->health_call;
  sc->health_call = NULL;
  if (call != NULL) uvg_client_call_cancel(call);
}

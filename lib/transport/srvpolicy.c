/*
 * What a server does with its connections that a client does not: it
 * checks the stream ids the client opens (RFC 9113 5.1.1), polices the
 * client's pings (gRFC A8, "Enforcement"), closes connections idle or old
 * (gRFC A9) with a graceful drain, and never lets a GOAWAY's
 * last-stream-id grow (RFC 9113 6.8). The state lives in uvg__conn_srv_t,
 * which only a server's connections have: every function here does nothing
 * when c->srv is NULL.
 */
#include <string.h>

#include "conn.h"

/* A8: more than this many strikes and the client is told to calm down. */
#define MAX_PING_STRIKES 2
/* A8: without streams (and without permit_without_stream) a client has no
 * reason to ping more often than this. */
#define PING_WITHOUT_STREAM_MIN (2ull * 60 * 60 * 1000)
/* How long the heads-up GOAWAY waits for its PING before the final one. */
#define DRAIN_PING_WAIT 1000

static const uint8_t drain_ping[8] = {'u', 'v', 'g', 'd', 'r', 'a', 'i', 'n'};

static uint64_t now_of(uvg__conn_t *c) { return uv_now(c->sched->loop); }

static uvg__conn_t *conn_of(uvg__conn_srv_t *p) {
  return &uvg__container_of(p, uvg__srvconn_t, srv)->c;
}

void uvg__srvconn_init(uvg__srvconn_t *sc, uvg__sched_t *sched,
                       const uvg__conn_cbs_t *cbs) {
  uvg__conn_srv_t *p = &sc->srv;
  uvg__conn_init(&sc->c, sched, cbs);
  memset(p, 0, sizeof(*p));
  p->next_peer_id = 1;
  uvg__timer_init(sched, &p->idle_timer);
  uvg__timer_init(sched, &p->age_timer);
  uvg__timer_init(sched, &p->drain_timer);
  sc->c.srv = p;
}

/* ---- max idle and max age (A9) ---- */

static void on_idle(uvg__timer_t *t) {
  uvg__conn_srv_t *p = uvg__container_of(t, uvg__conn_srv_t, idle_timer);
  uvg__conn_t *c = conn_of(p);
  UVG__TRACE(UVG__TRACE_TRANSPORT, "%s: idle; draining", c->peer);
  if (c->nstreams == 0) uvg__conn_drain(c);
}

static void on_age_grace(uvg__timer_t *t) {
  uvg__conn_t *c = conn_of(uvg__container_of(t, uvg__conn_srv_t, age_timer));
  UVG__TRACE(UVG__TRACE_TRANSPORT, "%s: age grace over; closing", c->peer);
  uvg__conn_close(c);
}

static void on_age(uvg__timer_t *t) {
  uvg__conn_t *c = conn_of(uvg__container_of(t, uvg__conn_srv_t, age_timer));
  UVG__TRACE(UVG__TRACE_TRANSPORT, "%s: max age; draining", c->peer);
  uvg__conn_drain(c);
  if (c->settings->age_grace) uvg__timer_start(t, on_age_grace, c->settings->age_grace);
}

void uvg__srv_start(uvg__conn_t *c) {
  const uvg__conn_settings_t *st = c->settings;
  if (c->srv == NULL) return;
  if (st->max_age) {
    /* A9: ±10% jitter so that connections made together do not all
     * reconnect together. (Against 2^64 the modulo is as good as uniform.) */
    uint64_t tenth = st->max_age / 10;
    uint64_t age = st->max_age - tenth + uvg__random() % (2 * tenth + 1);
    uvg__timer_start(&c->srv->age_timer, on_age, age);
  }
  uvg__srv_on_stream_count(c);
}

void uvg__srv_stop(uvg__conn_t *c) {
  if (c->srv == NULL) return;
  uvg__timer_stop(&c->srv->idle_timer);
  uvg__timer_stop(&c->srv->age_timer);
  uvg__timer_stop(&c->srv->drain_timer);
}

void uvg__srv_on_stream_count(uvg__conn_t *c) {
  uvg__conn_srv_t *p = c->srv;
  if (p == NULL || c->settings == NULL || !c->settings->max_idle) return;
  if (c->nstreams > 0)
    uvg__timer_stop(&p->idle_timer);
  else if (!uvg__timer_armed(&p->idle_timer))
    uvg__timer_start(&p->idle_timer, on_idle, c->settings->max_idle);
}

/* ---- stream ids (RFC 9113 5.1.1) and GOAWAY (6.8) ---- */

/* "The identifier of a newly established stream MUST be numerically
 * greater than all streams that the initiating endpoint has opened", and
 * the first use of an id closes every idle stream below it. So a HEADERS
 * on an id the client skipped is a connection error PROTOCOL_ERROR.
 * nghttp2 ignores it: it keeps no record of ids below the highest, and
 * cannot tell a skipped id from one whose stream is closed and forgotten,
 * where a HEADERS may be innocent (trailers that crossed our RST_STREAM,
 * 5.1 and 6.4). Clients open ids in sequence, so a skip is rare: the
 * connection remembers the last few skipped ranges and leaves any other id
 * below the highest to nghttp2. */
int uvg__srv_on_begin_frame(uvg__conn_t *c, const nghttp2_frame_hd *hd) {
  uvg__conn_srv_t *p = c->srv;
  uint32_t id = (uint32_t)hd->stream_id;
  /* stream 0 and even ids are nghttp2's to refuse */
  if (p == NULL || hd->type != NGHTTP2_HEADERS || (id & 1) == 0) return 0;
  if (id >= p->next_peer_id) {
    if (id > p->next_peer_id) {
      uint32_t *r = p->skipped[p->nskipped++ % UVG__ARRAY_SIZE(p->skipped)];
      r[0] = p->next_peer_id;
      r[1] = id - 2;
    }
    p->next_peer_id = id + 2;
    return 0;
  }
  size_t n = UVG__ARRAY_SIZE(p->skipped);
  if (p->nskipped < n) n = p->nskipped;
  for (size_t i = 0; i < n; i++) {
    if (id >= p->skipped[i][0] && id <= p->skipped[i][1]) {
      if (c->stat_proto) (*c->stat_proto)++;
      uvg__log(UVG_LOG_WARN, "%s: HTTP/2 error: HEADERS on stream %u, an id "
               "the client skipped; closing connection", c->peer, id);
      /* nghttp2 ignores the rest of the input and closes once the
       * GOAWAY is out, as for the protocol errors it finds itself */
      if (nghttp2_session_terminate_session(c->h2, NGHTTP2_PROTOCOL_ERROR) != 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
      break;
    }
  }
  return 0;
}

/* A stream above the last-stream-id of the GOAWAY we sent is not
 * processed; the peer may retry it elsewhere. Streams opened before it,
 * also after a heads-up GOAWAY, are served. */
int uvg__srv_refuses(const uvg__conn_t *c, int32_t id) {
  return c->srv != NULL && c->srv->goaway_final && id > c->srv->goaway_last_id;
}

/* nghttp2 only clamps against a GOAWAY already sent, and streams refused
 * since still count as processed there. */
int32_t uvg__srv_goaway_last_id(uvg__conn_t *c, int32_t last) {
  uvg__conn_srv_t *p = c->srv;
  if (p == NULL) return last;
  if (!p->goaway_final || last < p->goaway_last_id) p->goaway_last_id = last;
  p->goaway_final = 1;
  return p->goaway_last_id;
}

/* ---- pings (A8, "Enforcement") and the drain ---- */

void uvg__srv_on_headers_or_data_sent(uvg__conn_t *c) {
  /* A8: strikes are forgiven whenever the server sends headers or data */
  if (c->srv != NULL) c->srv->reset_strikes = 1;
}

static void police_ping(uvg__conn_t *c, uvg__conn_srv_t *p) {
  const uvg__conn_settings_t *st = c->settings;
  uint64_t now = now_of(c), last = p->last_ping_at;
  p->last_ping_at = now;
  if (p->reset_strikes) {
    p->reset_strikes = 0;
    p->ping_strikes = 0;
    return;
  }
  uint64_t min = c->nstreams == 0 && !st->permit_without_stream
                     ? PING_WITHOUT_STREAM_MIN
                     : st->min_ping_interval;
  if (last != 0 && now - last < min) p->ping_strikes++;
  if (p->ping_strikes > MAX_PING_STRIKES && !c->close_on_goaway) {
    uvg__log(UVG_LOG_WARN, "%s: too many pings; GOAWAY ENHANCE_YOUR_CALM", c->peer);
    uvg__conn_goaway(c, NGHTTP2_ENHANCE_YOUR_CALM, "too_many_pings");
  }
}

static void send_final_goaway(uvg__conn_t *c) {
  uvg__conn_srv_t *p = c->srv;
  /* After uvg__conn_goaway() its GOAWAY is the final one. */
  if (p->drained || c->closing || c->close_on_goaway) return;
  p->drained = 1;
  uvg__timer_stop(&p->drain_timer);
  uvg__conn_submit_goaway(c, NGHTTP2_NO_ERROR, NULL);
}

static void on_drain_timeout(uvg__timer_t *t) {
  send_final_goaway(conn_of(uvg__container_of(t, uvg__conn_srv_t, drain_timer)));
}

void uvg__srv_on_frame(uvg__conn_t *c, const nghttp2_frame *f) {
  uvg__conn_srv_t *p = c->srv;
  if (p == NULL || f->hd.type != NGHTTP2_PING) return;
  if (!(f->hd.flags & NGHTTP2_FLAG_ACK)) {
    if (c->settings->min_ping_interval) police_ping(c, p);
  } else if (memcmp(f->ping.opaque_data, drain_ping, 8) == 0) {
    send_final_goaway(c);
  }
}

int uvg__srv_draining(const uvg__conn_t *c) {
  return c->srv != NULL && c->srv->draining && !c->srv->drained;
}

void uvg__conn_drain(uvg__conn_t *c) {
  uvg__conn_srv_t *p = c->srv;
  if (p == NULL || p->draining || c->closing || c->h2 == NULL ||
      c->close_on_goaway)
    return;
  p->draining = 1;
  uvg__timer_stop(&p->idle_timer);
  /* RFC 9113 6.8: a GOAWAY with the largest stream id first, so requests
   * already in flight toward us are not lost; then the real one. */
  nghttp2_submit_shutdown_notice(c->h2);
  nghttp2_submit_ping(c->h2, NGHTTP2_FLAG_NONE, drain_ping);
  uvg__timer_start(&p->drain_timer, on_drain_timeout, DRAIN_PING_WAIT);
  uvg__conn_schedule_flush(c);
}

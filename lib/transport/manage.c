/*
 * Connection management: keepalive pings (doc/keepalive.md, gRFC A8), the
 * server's ping enforcement policy, max idle and max age (gRFC A9), the
 * handshake deadline and the graceful GOAWAY. All timers are heap timers
 * embedded in the connection, so none of them needs closing.
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

static const uint8_t keepalive_ping[8] = {'u', 'v', 'g', 'k', 'e', 'e', 'p', 0};
static const uint8_t drain_ping[8] = {'u', 'v', 'g', 'd', 'r', 'a', 'i', 'n'};

static uint64_t now_of(uvg__conn_t *c) { return uv_now(c->sched->loop); }

static void on_keepalive(uvg__timer_t *t) {
  uvg__conn_t *c = uvg__container_of(t, uvg__conn_t, ka_timer);
  const uvg__conn_settings_t *st = c->settings;
  uint64_t now = now_of(c);
  if (c->ping_outstanding) {
    if (c->last_read > c->ping_sent_at) {
      c->ping_outstanding = 0; /* the peer spoke: it is alive */
    } else {
      uvg__log(UVG_LOG_WARN, "%s: keepalive ping not answered in %llu ms; closing",
               c->peer, (unsigned long long)st->keepalive_timeout);
      uvg__conn_set_close_reason(c, "keepalive ping not answered");
      uvg__conn_close(c);
      return;
    }
  }
  uint64_t quiet = now - c->last_read;
  if (quiet < st->keepalive_time) {
    uvg__timer_start(t, on_keepalive, st->keepalive_time - quiet);
    return;
  }
  /* A8: a client pings a connection without calls only when permitted */
  if (c->is_client && c->nstreams == 0 && !st->permit_without_stream) {
    uvg__timer_start(t, on_keepalive, st->keepalive_time);
    return;
  }
  UVG__TRACE(UVG__TRACE_TRANSPORT, "%s: keepalive ping", c->peer);
  nghttp2_submit_ping(c->h2, NGHTTP2_FLAG_NONE, keepalive_ping);
  c->ping_outstanding = 1;
  c->ping_sent_at = now;
  uvg__timer_start(t, on_keepalive, st->keepalive_timeout);
  uvg__conn_schedule_flush(c);
}

static void on_handshake_timeout(uvg__timer_t *t) {
  uvg__conn_t *c = uvg__container_of(t, uvg__conn_t, hs_timer);
  /* the deadline covers the byte stream's own handshake (TLS) too */
  int tls = c->io.ops->handshaking != NULL && c->io.ops->handshaking(&c->io);
  uvg__log(UVG_LOG_WARN, "%s: %s in %llu ms; closing", c->peer,
           tls ? "TLS handshake not finished" : "no HTTP/2 preface and SETTINGS",
           (unsigned long long)c->settings->handshake_timeout);
  uvg__conn_set_close_reason(c, tls ? "TLS handshake timed out"
                                    : "HTTP/2 handshake timed out");
  uvg__conn_close(c);
}

static void on_idle(uvg__timer_t *t) {
  uvg__conn_t *c = uvg__container_of(t, uvg__conn_t, idle_timer);
  UVG__TRACE(UVG__TRACE_TRANSPORT, "%s: idle; draining", c->peer);
  if (c->nstreams == 0) uvg__conn_drain(c);
}

static void on_age_grace(uvg__timer_t *t) {
  uvg__conn_t *c = uvg__container_of(t, uvg__conn_t, age_timer);
  UVG__TRACE(UVG__TRACE_TRANSPORT, "%s: age grace over; closing", c->peer);
  uvg__conn_close(c);
}

static void on_age(uvg__timer_t *t) {
  uvg__conn_t *c = uvg__container_of(t, uvg__conn_t, age_timer);
  UVG__TRACE(UVG__TRACE_TRANSPORT, "%s: max age; draining", c->peer);
  uvg__conn_drain(c);
  if (c->settings->age_grace) uvg__timer_start(t, on_age_grace, c->settings->age_grace);
}

void uvg__conn_manage_start(uvg__conn_t *c) {
  const uvg__conn_settings_t *st = c->settings;
  c->last_read = now_of(c);
  if (st->keepalive_time && st->keepalive_timeout)
    uvg__timer_start(&c->ka_timer, on_keepalive, st->keepalive_time);
  if (st->handshake_timeout)
    uvg__timer_start(&c->hs_timer, on_handshake_timeout, st->handshake_timeout);
  if (st->max_age) {
    /* A9: ±10% jitter so that connections made together do not all
     * reconnect together. (Against 2^64 the modulo is as good as uniform.) */
    uint64_t tenth = st->max_age / 10;
    uint64_t age = st->max_age - tenth + uvg__random() % (2 * tenth + 1);
    uvg__timer_start(&c->age_timer, on_age, age);
  }
  uvg__conn_on_stream_count(c);
}

void uvg__conn_manage_stop(uvg__conn_t *c) {
  uvg__timer_stop(&c->ka_timer);
  uvg__timer_stop(&c->idle_timer);
  uvg__timer_stop(&c->age_timer);
  uvg__timer_stop(&c->hs_timer);
  uvg__timer_stop(&c->drain_timer);
}

void uvg__conn_on_read(uvg__conn_t *c) { c->last_read = now_of(c); }

void uvg__conn_on_headers_or_data_sent(uvg__conn_t *c) {
  /* A8: strikes are forgiven whenever the server sends headers or data */
  c->reset_strikes = 1;
}

void uvg__conn_on_stream_count(uvg__conn_t *c) {
  if (c->settings == NULL || !c->settings->max_idle) return;
  if (c->nstreams > 0)
    uvg__timer_stop(&c->idle_timer);
  else if (!uvg__timer_armed(&c->idle_timer))
    uvg__timer_start(&c->idle_timer, on_idle, c->settings->max_idle);
}

/* Server policy for a PING from the client (A8, "Enforcement"). */
static void police_ping(uvg__conn_t *c) {
  const uvg__conn_settings_t *st = c->settings;
  uint64_t now = now_of(c), last = c->last_ping_at;
  c->last_ping_at = now;
  if (c->reset_strikes) {
    c->reset_strikes = 0;
    c->ping_strikes = 0;
    return;
  }
  uint64_t min = c->nstreams == 0 && !st->permit_without_stream
                     ? PING_WITHOUT_STREAM_MIN
                     : st->min_ping_interval;
  if (last != 0 && now - last < min) c->ping_strikes++;
  if (c->ping_strikes > MAX_PING_STRIKES && !c->close_on_goaway) {
    uvg__log(UVG_LOG_WARN, "%s: too many pings; GOAWAY ENHANCE_YOUR_CALM", c->peer);
    uvg__conn_goaway(c, NGHTTP2_ENHANCE_YOUR_CALM, "too_many_pings");
  }
}

static void send_final_goaway(uvg__conn_t *c) {
  /* After uvg__conn_goaway() its GOAWAY is the final one. */
  if (c->drained || c->closing || c->close_on_goaway) return;
  c->drained = 1;
  uvg__timer_stop(&c->drain_timer);
  uvg__conn_submit_goaway(c, NGHTTP2_NO_ERROR, NULL);
}

static void on_drain_timeout(uvg__timer_t *t) {
  send_final_goaway(uvg__container_of(t, uvg__conn_t, drain_timer));
}

void uvg__conn_on_frame(uvg__conn_t *c, const nghttp2_frame *f) {
  if (f->hd.type == NGHTTP2_SETTINGS && !(f->hd.flags & NGHTTP2_FLAG_ACK)) {
    uvg__timer_stop(&c->hs_timer);
  } else if (f->hd.type == NGHTTP2_PING) {
    if (!(f->hd.flags & NGHTTP2_FLAG_ACK)) {
      if (c->settings->min_ping_interval) police_ping(c);
    } else if (memcmp(f->ping.opaque_data, keepalive_ping, 8) == 0) {
      c->ping_outstanding = 0;
    } else if (memcmp(f->ping.opaque_data, drain_ping, 8) == 0) {
      send_final_goaway(c);
    }
  }
}

void uvg__conn_drain(uvg__conn_t *c) {
  if (c->draining || c->closing || c->h2 == NULL || c->close_on_goaway) return;
  c->draining = 1;
  uvg__timer_stop(&c->idle_timer);
  /* RFC 9113 6.8: a GOAWAY with the largest stream id first, so requests
   * already in flight toward us are not lost; then the real one. */
  nghttp2_submit_shutdown_notice(c->h2);
  nghttp2_submit_ping(c->h2, NGHTTP2_FLAG_NONE, drain_ping);
  uvg__timer_start(&c->drain_timer, on_drain_timeout, DRAIN_PING_WAIT);
  uvg__conn_schedule_flush(c);
}

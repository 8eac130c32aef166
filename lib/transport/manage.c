/*
 * Connection management for both roles: keepalive pings (doc/keepalive.md,
 * gRFC A8) and the handshake deadline; the server's own policy is in
 * srvpolicy.c. All timers are heap timers embedded in the connection, so
 * none of them needs closing.
 */
#include <string.h>

#include "conn.h"

static const uint8_t keepalive_ping[8] = {'u', 'v', 'g', 'k', 'e', 'e', 'p', 0};
static const uint8_t bdp_ping[8] = {'u', 'v', 'g', 'b', 'd', 'p', 0, 0};

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
           (unsigned long long)c->hs_ms);
  uvg__conn_set_close_reason(c, tls ? "TLS handshake timed out"
                                    : "HTTP/2 handshake timed out");
  uvg__conn_close(c);
}

void uvg__conn_handshake_within(uvg__conn_t *c, uint64_t ms) {
  if (c->ready || c->closing) return;
  c->hs_ms = ms ? ms : 1;
  uvg__timer_start(&c->hs_timer, on_handshake_timeout, c->hs_ms);
}

void uvg__conn_manage_start(uvg__conn_t *c) {
  const uvg__conn_settings_t *st = c->settings;
  uvg__bdp_init(&c->bdp, st->initial_window_size, st->bdp_limit);
  c->window = st->initial_window_size;
  c->window_streams = 1;
  c->last_read = now_of(c);
  if (st->keepalive_time && st->keepalive_timeout)
    uvg__timer_start(&c->ka_timer, on_keepalive, st->keepalive_time);
  if (st->handshake_timeout)
    uvg__timer_start(&c->hs_timer, on_handshake_timeout,
                     c->hs_ms = st->handshake_timeout);
  uvg__srv_start(c);
}

void uvg__conn_manage_stop(uvg__conn_t *c) {
  uvg__timer_stop(&c->ka_timer);
  uvg__timer_stop(&c->hs_timer);
  uvg__srv_stop(c);
}

/* ---- the receive window that grows with the bandwidth-delay product ---- */

void uvg__conn_on_data_received(uvg__conn_t *c, size_t len) {
  if (c->settings->bdp_limit && uvg__bdp_on_data(&c->bdp, len, uv_hrtime()))
    nghttp2_submit_ping(c->h2, NGHTTP2_FLAG_NONE, bdp_ping);
}

void uvg__conn_settings_window(uvg__conn_settings_t *st, uint32_t window,
                               uint32_t start, uint32_t cap) {
  st->initial_window_size = window ? window : start;
  st->bdp_limit = window ? 0 : UVG__WINDOW_BDP_LIMIT;
  if (cap == 0)
    cap = st->initial_window_size > UVG__WINDOW_CAP ? st->initial_window_size
                                                    : UVG__WINDOW_CAP;
  st->window_cap = cap;
}

/* The new initial window applies to every stream, open ones included
 * (RFC 9113 6.9.2): the peer adds the difference, positive or negative, to
 * each stream's send window when it reads the SETTINGS, so no
 * WINDOW_UPDATE is needed. A lower window takes effect for data the peer
 * sends after reading it; what it sent before fits the old window, which
 * the cap allowed for the streams then open.
 * c->window is what the peer was told: it changes only with a SETTINGS
 * queued. One that nghttp2 cannot queue (out of memory) is tried again by
 * the next write; a lower one returns UVG_ENOMEM, for this write must not
 * carry the HEADERS it makes room for. */
static int set_window(uvg__conn_t *c, uint32_t w, unsigned n) {
  UVG__TRACE(UVG__TRACE_TRANSPORT, "%s: %s stream window %u -> %u (%u streams)",
             c->peer, c->is_client ? "client" : "server", c->window, w, n);
  nghttp2_settings_entry iv = {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, w};
  if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, &iv, 1) != 0)
    return w < c->window ? UVG_ENOMEM : 0;
  c->window = w;
  if (w > c->settings->connection_window_size)
    nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, (int32_t)w);
  return 0;
}

/* The streams whose windows the peer may fill once the pending frames are
 * sent. A client's: those whose HEADERS left, and as many of the others as
 * the peer's MAX_CONCURRENT_STREAMS lets nghttp2 send now; those it holds
 * back wait for a later write, which counts them then. A server's: the
 * streams the client opened; it cannot hold back a stream the client
 * opens before the SETTINGS reaches it, so such a stream starts under the
 * window then set, and counts from the write after its HEADERS arrive. */
static unsigned streams_after_write(const uvg__conn_t *c) {
  if (!c->is_client) return c->nstreams;
  uint32_t max = nghttp2_session_get_remote_settings(
      c->h2, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
  unsigned waiting = c->nstreams - c->wire_streams;
  unsigned room = max > c->wire_streams ? max - c->wire_streams : 0;
  return c->wire_streams + (waiting < room ? waiting : room);
}

static unsigned pow2_at_least(unsigned n) {
  unsigned p = 1;
  while (p < n && p < (1u << 31)) p <<= 1;
  return p;
}

/* The cap is shared among c->window_streams, a power of two, not among the
 * streams open: it doubles (or more) as soon as they pass it, and comes
 * down only once they fit in a quarter of it. Each window the cap sets is
 * then at least twice or at most half the one before, and the streams
 * must double or halve between two of them, so a burst of N calls and its
 * end cost O(log N) SETTINGS, not two each (a server answers every
 * SETTINGS with an ack, and nghttp2 servers take a thousand unsent acks
 * for a flood). */
int uvg__conn_window_update(uvg__conn_t *c) {
  const uvg__conn_settings_t *st = c->settings;
  if (st == NULL || (st->bdp_limit == 0 && st->window_cap == 0)) return 0;
  uint32_t w = st->bdp_limit ? c->bdp.bdp : st->initial_window_size;
  unsigned n = streams_after_write(c);
  if (st->window_cap != 0) {
    if (n > c->window_streams || (n > 0 && n <= c->window_streams / 4))
      c->window_streams = pow2_at_least(n);
    uint32_t share = st->window_cap / c->window_streams;
    if (share < UVG__WINDOW_FLOOR) share = UVG__WINDOW_FLOOR;
    if (share < w) w = share;
  }
  return w != c->window ? set_window(c, w, n) : 0;
}

/* A measurement ended: the estimate may have grown; the next write
 * decides. */
static void on_bdp_ack(uvg__conn_t *c) {
  if (uvg__bdp_on_ack(&c->bdp, uv_hrtime()) != 0) uvg__conn_schedule_flush(c);
}

void uvg__conn_on_read(uvg__conn_t *c) { c->last_read = now_of(c); }

void uvg__conn_on_frame(uvg__conn_t *c, const nghttp2_frame *f) {
  if (f->hd.type == NGHTTP2_SETTINGS && !(f->hd.flags & NGHTTP2_FLAG_ACK)) {
    uvg__timer_stop(&c->hs_timer);
  } else if (f->hd.type == NGHTTP2_PING) {
    if (!(f->hd.flags & NGHTTP2_FLAG_ACK))
      ;
    else if (memcmp(f->ping.opaque_data, keepalive_ping, 8) == 0)
      c->ping_outstanding = 0;
    else if (memcmp(f->ping.opaque_data, bdp_ping, 8) == 0)
      on_bdp_ack(c);
  }
  uvg__srv_on_frame(c, f);
}

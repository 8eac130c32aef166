/*
 * A subchannel: one address and the connections to it (grpc-go's addrConn
 * and its resetTransport). The LB policy asks it to connect; it reports
 * CONNECTING, then READY or TRANSIENT_FAILURE, and IDLE once a READY
 * connection is lost or its backoff after a failure is over
 * (doc/connectivity-semantics-and-api.md, gRFC A62's subchannel).
 *
 * Backoff (doc/connection-backoff.md) is the subchannel's own: an attempt
 * has max(backoff, min_connect_timeout) for the connect and the HTTP/2
 * handshake together, and the next attempt may start the backoff delay
 * after this one started. It resets when a connection proves itself: a
 * call on it gets response headers, or it lasts its attempt's delay. Not
 * on the server's SETTINGS, as grpc-go (backoffIdx = 0 once the transport
 * is up) and grpc-js (backoffTimeout.reset() on READY) do: a server that
 * answers every connection with SETTINGS then GOAWAY would get a new
 * connection each round trip, and connection-backoff.md says no attempts
 * "substantially more often" than its algorithm. The first such loss
 * reconnects at once, as they do (a server restarting: its replacement
 * may be up); the next ones are failed attempts, TRANSIENT_FAILURE until
 * their backoff delay is over.
 *
 * Every state change reaches the policy as a closure on the channel's
 * queue (lb.c), so the policy never runs inside the transport.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "channel.h"

static void set_state(uvg_subchannel_t *sc, uvg_connectivity_t st) {
  if (sc->state == st) return;
  UVG__TRACE(UVG__TRACE_TRANSPORT, "subchannel %s: %s -> %s", sc->name,
             uvg_connectivity_name(sc->state), uvg_connectivity_name(st));
  sc->state = st;
  /* kept until READY: a TRANSIENT_FAILURE still queued for the policy
   * reads it when delivered */
  if (st == UVG_STATE_READY) sc->last_error[0] = '\0';
  if (!sc->released) uvg__lb_post_subchannel_state(sc);
}

static void on_backoff_over(uvg__timer_t *t) {
  uvg_subchannel_t *sc = uvg__container_of(t, uvg_subchannel_t, backoff_timer);
  if (sc->state == UVG_STATE_TRANSIENT_FAILURE) set_state(sc, UVG_STATE_IDLE);
}

/* The attempt failed: TRANSIENT_FAILURE until the backoff delay, counted
 * from the attempt's start, is over. */
static void attempt_failed(uvg_subchannel_t *sc) {
  if (sc->released || sc->ch->closing) return;
  uint64_t now = uv_now(sc->ch->loop);
  uint64_t due = sc->attempt_started + sc->attempt_delay;
  set_state(sc, UVG_STATE_TRANSIENT_FAILURE);
  uvg__timer_start(&sc->backoff_timer, on_backoff_over, due > now ? due - now : 0);
}

static void set_error(uvg_subchannel_t *sc, const char *what, const char *why) {
  snprintf(sc->last_error, sizeof(sc->last_error), "%s%s%s", what,
           *what ? ": " : "", why);
}

/* ---- connections ---- */

static void on_conn_ready(uvg__conn_t *c) {
  uvg__cconn_t *cc = (uvg__cconn_t *)c;
  uvg_subchannel_t *sc = cc->sc;
  if (sc == NULL || cc->draining || sc->pending_conn != cc) return;
  sc->pending_conn = NULL;
  sc->conn = cc;
  sc->ch->goaway_text[0] = '\0';
  if (uvg__health_enabled(sc->ch)) { /* READY once the server says SERVING */
    uvg__health_start(sc);
    return;
  }
  UVG__TRACE(UVG__TRACE_TRANSPORT, "%s: subchannel READY", c->peer);
  set_state(sc, UVG_STATE_READY);
}

void uvg__subchannel_set_connecting(uvg_subchannel_t *sc) {
  if (sc->conn != NULL && !sc->released) set_state(sc, UVG_STATE_CONNECTING);
}

void uvg__subchannel_set_health(uvg_subchannel_t *sc, int healthy, const char *why) {
  if (sc->conn == NULL || sc->released) return;
  if (!healthy) set_error(sc, "", why);
  set_state(sc, healthy ? UVG_STATE_READY : UVG_STATE_TRANSIENT_FAILURE);
}

static void proven(uvg_subchannel_t *sc) {
  uvg__backoff_reset(&sc->backoff);
  sc->unproven = 0;
}

void uvg__subchannel_conn_answered(uvg__cconn_t *cc) {
  if (cc->answered) return;
  cc->answered = 1;
  if (cc->sc != NULL && cc->sc->conn == cc) proven(cc->sc);
}

/* The connection takes no new calls: a READY subchannel becomes IDLE (the
 * policy decides whether to connect again), unless the connection is the
 * second in a row lost before it proved itself: that attempt failed. One
 * still waiting for the SETTINGS has failed its attempt. */
static void leave_conn(uvg_subchannel_t *sc, uvg__cconn_t *cc, const char *why) {
  cc->draining = 1;
  if (sc->conn == cc) {
    sc->conn = NULL;
    uvg__health_stop(sc);
    if (cc->answered || uv_now(sc->ch->loop) >= sc->attempt_started + sc->attempt_delay)
      proven(sc);
    else if (sc->unproven < 255)
      sc->unproven++;
    if (sc->unproven < 2) {
      set_state(sc, UVG_STATE_IDLE);
      return;
    }
    set_error(sc, "", why ? why : "connection lost before any response");
    attempt_failed(sc);
  } else if (sc->pending_conn == cc) {
    sc->pending_conn = NULL;
    set_error(sc, "", why ? why : "connection closed during the handshake");
    attempt_failed(sc);
  }
}

void uvg__subchannel_conn_unusable(uvg_subchannel_t *sc, uvg__cconn_t *cc) {
  leave_conn(sc, cc, NULL);
}

static void on_conn_goaway(uvg__conn_t *c, int32_t last, uint32_t code,
                           const uint8_t *debug, size_t len) {
  uvg__cconn_t *cc = (uvg__cconn_t *)c;
  (void)last;
  if (code != NGHTTP2_NO_ERROR)
    snprintf(cc->ch->goaway_text, sizeof(cc->ch->goaway_text), "%s", c->goaway_text);
  if (code == NGHTTP2_ENHANCE_YOUR_CALM && len == 14 &&
      memcmp(debug, "too_many_pings", 14) == 0)
    uvg__channel_too_many_pings(cc->ch, c->peer);
  uvg_subchannel_t *sc = cc->sc;
  if (sc != NULL && sc->conn == cc && code != NGHTTP2_NO_ERROR && c->nstreams == 0 &&
      !cc->answered) {
    /* an error before any call went there (a TLS port answering a
     * plaintext client): the attempt failed, for that reason */
    cc->draining = 1;
    sc->conn = NULL;
    uvg__health_stop(sc);
    set_error(sc, "", c->goaway_text[0] ? c->goaway_text : "GOAWAY from the server");
    attempt_failed(sc);
    return;
  }
  if (sc != NULL) leave_conn(sc, cc, c->goaway_text[0] ? c->goaway_text
                                                       : "GOAWAY during the handshake");
  cc->draining = 1;
}

static void on_conn_close(uvg__conn_t *c) {
  uvg__cconn_t *cc = (uvg__cconn_t *)c;
  uvg_channel_t *ch = cc->ch;
  uvg_subchannel_t *sc = cc->sc;
  uvg__list_remove(&c->link);
  if (sc != NULL) {
    if (c->close_reason != NULL && sc->conn != cc)
      set_error(sc, "", c->close_reason);
    leave_conn(sc, cc, c->close_reason);
    if (c->close_reason != NULL)
      uvg__channel_set_error(ch, "%s", c->close_reason);
  }
  uvg__free(cc);
  uvg__channel_maybe_released(ch);
}

static const uvg__conn_cbs_t client_conn_cbs = {
    .on_header = uvg__ccall_on_header,
    .on_headers = uvg__ccall_on_headers,
    .on_data = uvg__ccall_on_data,
    .on_remote_end = uvg__ccall_on_remote_end,
    .on_stream_close = uvg__ccall_on_stream_close,
    .on_close = on_conn_close,
    .on_ready = on_conn_ready,
    .on_goaway = on_conn_goaway,
};

/* ---- connecting ---- */

static void on_connected(uvg__connect_t *req, int status) {
  uvg_subchannel_t *sc = req->data;
  uvg_channel_t *ch = sc->ch;
  uvg__cconn_t *cc = sc->attempt_conn;
  sc->connecting = NULL;
  sc->attempt_conn = NULL;
  if (status != 0) {
    uvg__free(cc); /* nothing of it is open */
    if (!sc->released && !ch->closing) {
      /* through a proxy: its own words when the CONNECT exchange failed */
      if (ch->proxy != NULL && req->detail[0] != '\0')
        snprintf(sc->last_error, sizeof(sc->last_error), "proxy %s %s", ch->proxy->name,
                 req->detail);
      else if (ch->proxy != NULL)
        snprintf(sc->last_error, sizeof(sc->last_error), "connect to proxy %s: %s",
                 ch->proxy->name, uv_strerror(status));
      else
        set_error(sc, "connect", uv_strerror(status));
      uvg__channel_set_error(ch, "%s", sc->last_error);
      UVG__TRACE(UVG__TRACE_TRANSPORT, "subchannel %s: %s", sc->name, sc->last_error);
      attempt_failed(sc);
    }
    uvg__subchannel_unref(sc);
    return;
  }
  uvg__list_push(&ch->conns, &cc->c.link);
  int err = sc->released || ch->closing ? UVG_ECLOSED : 0;
  if (err == 0 && ch->tls != NULL) err = uvg__tls_wrap(&cc->c.io, ch->tls, ch->tls_name);
  if (err == 0) err = uvg__conn_start_client(&cc->c, &ch->settings);
  if (err != 0) {
    const char *why = cc->c.io.ops->error ? cc->c.io.ops->error(&cc->c.io) : NULL;
    cc->sc = NULL;
    if (!sc->released && !ch->closing) {
      set_error(sc, "", why ? why : uvg_strerror(err));
      attempt_failed(sc);
    }
    uvg__conn_close(&cc->c);
    uvg__subchannel_unref(sc);
    return;
  }
  /* READY when the server's SETTINGS arrive (on_conn_ready); a server
   * that never sends them is closed when the attempt's time is up. */
  uint64_t now = uv_now(ch->loop);
  uvg__conn_handshake_within(&cc->c, sc->attempt_deadline > now
                                         ? sc->attempt_deadline - now : 0);
  sc->pending_conn = cc;
  uvg__channel_update_ref(ch);
  uvg__subchannel_unref(sc);
}

/* The tunnel an address is for, through the channel's proxy, or NULL. */
static const char *tunnel_request(const uvg_subchannel_t *sc, size_t *len) {
  const uvg__proxy_t *p = sc->ch->proxy;
  for (size_t i = 0; p != NULL && i < sc->addr.nattrs; i++) {
    if (strcmp(sc->addr.attrs[i].key, UVG__ATTR_TUNNEL) == 0) {
      size_t t = (size_t)strtoul(sc->addr.attrs[i].value, NULL, 10);
      if (t >= p->ntunnels) return NULL;
      *len = strlen(p->requests[t]);
      return p->requests[t];
    }
  }
  return NULL;
}

static int start_connect(uvg_subchannel_t *sc, uvg__cconn_t *cc, uint64_t timeout) {
  uvg_channel_t *ch = sc->ch;
  const struct sockaddr *sa = (const struct sockaddr *)&sc->addr.addr;
  size_t len;
  const char *req = tunnel_request(sc, &len);
  if (req != NULL)
    return uvg__connect_tunnel(&sc->connect_req, ch->sched, sa, req, len, timeout,
                               &cc->c.io, on_connected);
  if (sa->sa_family == AF_UNIX) {
    const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
    size_t off = offsetof(struct sockaddr_un, sun_path);
    size_t n = sc->addr.addrlen > off ? sc->addr.addrlen - off : 0;
    if (n > 0 && un->sun_path[0] != '\0') n = strnlen(un->sun_path, n);
    return uvg__connect_unix(&sc->connect_req, ch->sched, un->sun_path, n, timeout,
                             &cc->c.io, on_connected);
  }
  return uvg__connect_tcp(&sc->connect_req, ch->sched, sa, timeout, &cc->c.io,
                          on_connected);
}

void uvg_subchannel_connect(uvg_subchannel_t *sc) {
  uvg_channel_t *ch = sc->ch;
  if (sc->state != UVG_STATE_IDLE || sc->released || ch->closing) return;
  uint64_t now = uv_now(ch->loop);
  sc->attempt_started = now;
  sc->attempt_delay = uvg__backoff_next(&sc->backoff);
  uint64_t timeout = uvg__backoff_connect_timeout(&sc->backoff, sc->attempt_delay);
  sc->attempt_deadline = now + timeout;
  set_state(sc, UVG_STATE_CONNECTING);
  uvg__cconn_t *cc = uvg__calloc(1, sizeof(*cc));
  if (cc == NULL) {
    set_error(sc, "", "out of memory");
    attempt_failed(sc);
    return;
  }
  cc->ch = ch;
  cc->sc = sc;
  uvg__conn_init(&cc->c, ch->sched, &client_conn_cbs);
  cc->c.io.read_buf = ch->read_buf;
  cc->c.io.read_buf_len = UVG__CHANNEL_READ_BUF;
  int rc = start_connect(sc, cc, timeout);
  if (rc != 0) {
    uvg__free(cc);
    set_error(sc, "connect", uv_strerror(rc));
    uvg__channel_set_error(ch, "%s", sc->last_error);
    attempt_failed(sc);
    return;
  }
  sc->connect_req.data = sc;
  sc->connecting = &sc->connect_req;
  sc->attempt_conn = cc;
  sc->refs++; /* until on_connected */
  uvg__channel_update_ref(ch);
}

/* ---- life ---- */

int uvg__subchannel_new(uvg_channel_t *ch, const uvg_address_t *addr,
                        uvg_subchannel_t **out) {
  const struct sockaddr *sa = (const struct sockaddr *)&addr->addr;
  if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6 &&
      sa->sa_family != AF_UNIX)
    return UVG_EINVAL;
  uvg_subchannel_t *sc = uvg__calloc(1, sizeof(*sc));
  if (sc == NULL) return UVG_ENOMEM;
  if (uvg__address_copy(&sc->addr, addr) != 0) {
    uvg__free(sc);
    return UVG_ENOMEM;
  }
  uvg__backoff_params_t bp = {ch->opts.backoff_initial_ms, ch->opts.backoff_multiplier,
                              ch->opts.backoff_jitter, ch->opts.backoff_max_ms,
                              ch->opts.min_connect_timeout_ms};
  uvg__backoff_init(&sc->backoff, &bp, NULL, NULL); /* checked at channel_new */
  uvg__backoff_init(&sc->health_backoff, &bp, NULL, NULL);
  uvg__timer_init(ch->sched, &sc->health_timer);
  sc->ch = ch;
  sc->refs = 1;
  sc->state = sc->reported = UVG_STATE_IDLE;
  uvg__work_init(&sc->w_state);
  uvg__address_name(&sc->addr, sc->name, sizeof(sc->name));
  uvg__timer_init(ch->sched, &sc->backoff_timer);
  uvg__list_push(&ch->subchannels, &sc->link);
  *out = sc;
  return 0;
}

uvg__cconn_t *uvg__subchannel_conn(uvg_subchannel_t *sc) {
  return sc->state == UVG_STATE_READY && !sc->released ? sc->conn : NULL;
}

void uvg__subchannel_unref(uvg_subchannel_t *sc) {
  if (--sc->refs > 0) return;
  uvg_channel_t *ch = sc->ch;
  uvg__list_remove(&sc->link);
  uvg__address_free(&sc->addr);
  uvg__free(sc);
  uvg__channel_maybe_released(ch);
}

void uvg_subchannel_release(uvg_subchannel_t *sc) {
  uvg_channel_t *ch = sc->ch;
  if (sc->released) return;
  sc->released = 1;
  uvg__timer_stop(&sc->backoff_timer);
  uvg__health_stop(sc);
  if (sc->connecting != NULL) uvg__connect_cancel(sc->connecting);
  /* its connections finish the calls they carry, then close */
  for (uvg__list_t *p = ch->conns.next; p != &ch->conns; p = p->next) {
    uvg__cconn_t *cc = (uvg__cconn_t *)uvg__container_of(p, uvg__conn_t, link);
    if (cc->sc != sc) continue;
    cc->sc = NULL;
    cc->draining = 1;
    if (ch->closing)
      uvg__conn_goaway(&cc->c, NGHTTP2_NO_ERROR, "channel closed");
    else
      uvg__conn_close_when_idle(&cc->c, "subchannel released");
  }
  sc->conn = sc->pending_conn = NULL;
  uvg__subchannel_unref(sc);
}

uvg_connectivity_t uvg_subchannel_state(const uvg_subchannel_t *sc) {
  return sc->state;
}
const uvg_address_t *uvg_subchannel_address(const uvg_subchannel_t *sc) {
  return &sc->addr;
}
void uvg_subchannel_set_data(uvg_subchannel_t *sc, void *data) { sc->lb_data = data; }
void *uvg_subchannel_get_data(const uvg_subchannel_t *sc) { return sc->lb_data; }

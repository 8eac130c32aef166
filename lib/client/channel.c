/*
 * The channel: target, resolution, one pick_first subchannel folded in
 * (grpc-go's ClientConn + addrConn.resetTransport), connectivity state and
 * its watchers, the waiting calls (pickerWrapper), the idle timer, close.
 *
 * Connecting (doc/connection-backoff.md): a round tries the resolved
 * addresses in order, each attempt bounded by max(backoff, 20 s); when the
 * round fails the channel is TRANSIENT_FAILURE and the next round starts
 * when the backoff delay, counted from the round's start, has passed. The
 * backoff resets when a connection receives the server's SETTINGS.
 * TRANSIENT_FAILURE is sticky (gRFC A62): only READY ends it.
 */
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "channel.h"

static void set_state(uvg_channel_t *ch, uvg_connectivity_t st);
static void start_round(uvg_channel_t *ch);
static void maybe_released(uvg_channel_t *ch);

const char *uvg_connectivity_name(int state) {
  static const char *names[] = {"IDLE", "CONNECTING", "READY",
                                "TRANSIENT_FAILURE", "SHUTDOWN"};
  return state >= 0 && state <= UVG_STATE_SHUTDOWN ? names[state] : "UNKNOWN";
}

void uvg_channel_options_init(uvg_channel_options_t *o) {
  memset(o, 0, sizeof(*o));
  o->initial_window_size = 65535;
  o->initial_connection_window_size = 16 * 1024 * 1024;
  o->max_frame_size = 16384;
  o->max_header_list_size = 16384;
  o->max_receive_message_size = 4 * 1024 * 1024;
  o->max_send_message_size = 0x7fffffff;
  o->backoff_initial_ms = UVG__BACKOFF_INITIAL_MS;
  o->backoff_multiplier = UVG__BACKOFF_MULTIPLIER;
  o->backoff_jitter = UVG__BACKOFF_JITTER;
  o->backoff_max_ms = UVG__BACKOFF_MAX_MS;
  o->min_connect_timeout_ms = UVG__BACKOFF_MIN_CONNECT_TIMEOUT_MS;
  o->idle_timeout_ms = 30 * 60 * 1000;
  o->keepalive_time_ms = UVG_INFINITE;
  o->keepalive_timeout_ms = 20 * 1000;
}

/* Takes the caller's nonzero settings over the defaults; checks ranges. */
static int merge_options(uvg_channel_options_t *o, const uvg_channel_options_t *in) {
  uvg_channel_options_init(o);
  if (in != NULL) {
#define TAKE(f) if (in->f) o->f = in->f
    TAKE(initial_window_size);
    TAKE(initial_connection_window_size);
    TAKE(max_frame_size);
    TAKE(max_header_list_size);
    TAKE(max_receive_message_size);
    TAKE(max_send_message_size);
    TAKE(backoff_initial_ms);
    TAKE(backoff_multiplier);
    TAKE(backoff_jitter);
    TAKE(backoff_max_ms);
    TAKE(min_connect_timeout_ms);
    TAKE(idle_timeout_ms);
    TAKE(keepalive_time_ms);
    TAKE(keepalive_timeout_ms);
    TAKE(keepalive_permit_without_calls);
    TAKE(authority);
    TAKE(call_credentials);
    TAKE(allow_insecure_call_credentials);
#undef TAKE
  }
  if (o->initial_window_size > 0x7fffffff ||
      o->initial_connection_window_size > 0x7fffffff ||
      o->max_frame_size < 16384 || o->max_frame_size > 16777215)
    return UVG_EINVAL;
  /* A8: "clients MUST NOT be configured with a keepalive time less than
   * 10 seconds" */
  if (o->keepalive_time_ms < UVG__CLIENT_KEEPALIVE_MIN_MS) {
    uvg__log(UVG_LOG_WARN, "keepalive time %llu ms raised to the minimum, %u ms",
             (unsigned long long)o->keepalive_time_ms, UVG__CLIENT_KEEPALIVE_MIN_MS);
    o->keepalive_time_ms = UVG__CLIENT_KEEPALIVE_MIN_MS;
  }
  return 0;
}

/* ---- connections ---- */

/* An idle client connection must not keep the application's loop alive
 * (grpc-js unrefs its sockets the same way). */
static void update_ref(uvg_channel_t *ch) {
  for (uvg__list_t *p = ch->conns.next; p != &ch->conns; p = p->next) {
    uvg__conn_t *c = uvg__container_of(p, uvg__conn_t, link);
    if (c->closing) continue;
    if (c->nstreams > 0 || ch->ncalls > 0)
      uv_ref(&c->io.h.handle);
    else
      uv_unref(&c->io.h.handle);
  }
}

static void attach_waiting(uvg_channel_t *ch) {
  while (ch->conn != NULL && !uvg__list_empty(&ch->waiting))
    uvg__ccall_attach(uvg__ccall_of_link(ch->waiting.next), ch->conn);
}

static void fail_fast_waiting(uvg_channel_t *ch) {
  char msg[352];
  snprintf(msg, sizeof(msg), "no connection: %s",
           ch->last_error[0] ? ch->last_error : "connection failed");
  uvg__list_t keep;
  uvg__list_init(&keep);
  while (!uvg__list_empty(&ch->waiting)) {
    uvg__list_t *p = ch->waiting.next;
    uvg_client_call_t *call = uvg__ccall_of_link(p);
    if (uvg__ccall_wait_for_ready(call)) {
      uvg__list_remove(p);
      uvg__list_push(&keep, p);
    } else {
      uvg__ccall_fail(call, UVG_STATUS_UNAVAILABLE, msg);
    }
  }
  uvg__list_move(&keep, &ch->waiting);
}

static void on_idle(uvg__timer_t *t);

static void on_conn_ready(uvg__conn_t *c) {
  uvg__cconn_t *cc = (uvg__cconn_t *)c;
  uvg_channel_t *ch = cc->ch;
  if (ch->closing || cc->draining) return;
  if (ch->pending_conn == cc) ch->pending_conn = NULL;
  /* connection-backoff.md: reset once the SETTINGS frame is received */
  uvg__backoff_reset(&ch->backoff);
  uvg__timer_stop(&ch->backoff_timer);
  ch->conn = cc;
  ch->last_error[0] = '\0';
  ch->goaway_text[0] = '\0';
  UVG__TRACE(UVG__TRACE_TRANSPORT, "%s: channel READY", c->peer);
  set_state(ch, UVG_STATE_READY);
  /* connected without a call (uvg_channel_state(ch, 1)): idle from now */
  if (ch->ncalls == 0 && ch->opts.idle_timeout_ms != UVG_INFINITE)
    uvg__timer_start(&ch->idle_timer, on_idle, ch->opts.idle_timeout_ms);
}

/* The connection carries no new calls: the channel goes IDLE and the next
 * call (or a waiting one) connects again. */
static void leave_conn(uvg_channel_t *ch, uvg__cconn_t *cc) {
  if (ch->conn != cc) return;
  ch->conn = NULL;
  if (ch->closing) return;
  set_state(ch, UVG_STATE_IDLE);
  if (!uvg__list_empty(&ch->waiting)) start_round(ch);
}

static void on_conn_goaway(uvg__conn_t *c, int32_t last, uint32_t code,
                           const uint8_t *debug, size_t len) {
  uvg__cconn_t *cc = (uvg__cconn_t *)c;
  (void)last;
  if (code != NGHTTP2_NO_ERROR)
    snprintf(cc->ch->goaway_text, sizeof(cc->ch->goaway_text), "%s", c->goaway_text);
  /* gRFC A8: the server finds our pings too frequent */
  if (code == NGHTTP2_ENHANCE_YOUR_CALM && len == 14 &&
      memcmp(debug, "too_many_pings", 14) == 0 && cc->ch->settings.keepalive_time) {
    uvg_channel_t *ch = cc->ch;
    if (ch->settings.keepalive_time < UINT64_MAX / 2) ch->settings.keepalive_time *= 2;
    uvg__log(UVG_LOG_WARN, "%s: GOAWAY too_many_pings: keepalive time doubled to "
             "%llu ms", c->peer, (unsigned long long)ch->settings.keepalive_time);
  }
  cc->draining = 1;
  leave_conn(cc->ch, cc);
}

static void attempt(uvg_channel_t *ch);
static void round_failed(uvg_channel_t *ch);

static void on_conn_close(uvg__conn_t *c) {
  uvg__cconn_t *cc = (uvg__cconn_t *)c;
  uvg_channel_t *ch = cc->ch;
  uvg__list_remove(&c->link);
  if (c->close_reason != NULL && ch->conn != cc)
    snprintf(ch->last_error, sizeof(ch->last_error), "%s", c->close_reason);
  leave_conn(ch, cc);
  int was_pending = ch->pending_conn == cc;
  uvg__free(cc);
  if (was_pending) {
    /* connected, but no HTTP/2 from the server: the next address */
    ch->pending_conn = NULL;
    if (!ch->closing && ++ch->next_addr < ch->naddrs)
      attempt(ch);
    else if (!ch->closing)
      round_failed(ch);
  }
  maybe_released(ch);
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

static void round_failed(uvg_channel_t *ch) {
  set_state(ch, UVG_STATE_TRANSIENT_FAILURE);
  fail_fast_waiting(ch);
  /* The backoff timer armed at the round's start starts the next one; an
   * attempt can outlast it (it gets max(backoff, min_connect_timeout)),
   * and then the next round starts now. */
  if (!uvg__timer_armed(&ch->backoff_timer)) start_round(ch);
}

static void on_backoff_over(uvg__timer_t *t) {
  uvg_channel_t *ch = uvg__container_of(t, uvg_channel_t, backoff_timer);
  if (ch->connecting == NULL && ch->conn == NULL && !ch->closing &&
      ch->state == UVG_STATE_TRANSIENT_FAILURE)
    start_round(ch);
}

static void on_connected(uvg__connect_t *req, int status) {
  uvg_channel_t *ch = req->data;
  uvg__cconn_t *cc = ch->attempt_conn;
  ch->connecting = NULL;
  ch->attempt_conn = NULL;
  if (status != 0) {
    uvg__free(cc); /* nothing of it is open */
    if (ch->closing) {
      maybe_released(ch);
      return;
    }
    snprintf(ch->last_error, sizeof(ch->last_error), "connect: %s",
             uv_strerror(status));
    UVG__TRACE(UVG__TRACE_TRANSPORT, "channel: %s", ch->last_error);
    if (++ch->next_addr < ch->naddrs)
      attempt(ch);
    else
      round_failed(ch);
    return;
  }
  uvg__list_push(&ch->conns, &cc->c.link);
  int err = ch->closing ? UVG_ECLOSED : 0;
  if (err == 0 && ch->tls != NULL) err = uvg__tls_wrap(&cc->c.io, ch->tls, ch->tls_name);
  if (err == 0) err = uvg__conn_start_client(&cc->c, &ch->settings);
  if (err != 0) {
    const char *why = cc->c.io.ops->error ? cc->c.io.ops->error(&cc->c.io) : NULL;
    if (!ch->closing)
      snprintf(ch->last_error, sizeof(ch->last_error), "%s",
               why ? why : uvg_strerror(err));
    ch->pending_conn = cc; /* its close moves on to the next address */
    uvg__conn_close(&cc->c);
    return;
  }
  /* READY when the server's SETTINGS arrive (on_conn_ready); a server
   * that never sends them is closed by the handshake timeout. */
  ch->pending_conn = cc;
  update_ref(ch);
}

static void attempt(uvg_channel_t *ch) {
  uint64_t timeout = uvg__backoff_connect_timeout(&ch->backoff, ch->round_delay);
  uvg__cconn_t *cc = uvg__calloc(1, sizeof(*cc));
  if (cc == NULL) {
    snprintf(ch->last_error, sizeof(ch->last_error), "out of memory");
    round_failed(ch);
    return;
  }
  cc->ch = ch;
  uvg__conn_init(&cc->c, ch->sched, &client_conn_cbs);
  cc->c.io.read_buf = ch->read_buf;
  cc->c.io.read_buf_len = UVG__CHANNEL_READ_BUF;
  int rc;
  if (ch->target.scheme == UVG__TARGET_UNIX ||
      ch->target.scheme == UVG__TARGET_UNIX_ABSTRACT) {
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    size_t n = 0;
    if (ch->target.scheme == UVG__TARGET_UNIX_ABSTRACT) path[n++] = '\0';
    memcpy(path + n, ch->target.path, ch->target.path_len);
    n += ch->target.path_len;
    rc = uvg__connect_unix(&ch->connect_req, ch->sched, path, n, timeout,
                           &cc->c.io, on_connected);
  } else {
    rc = uvg__connect_tcp(&ch->connect_req, ch->sched,
                          (struct sockaddr *)&ch->addrs[ch->next_addr], timeout,
                          &cc->c.io, on_connected);
  }
  if (rc != 0) {
    uvg__free(cc);
    snprintf(ch->last_error, sizeof(ch->last_error), "connect: %s", uv_strerror(rc));
    round_failed(ch);
    return;
  }
  ch->connect_req.data = ch;
  ch->connecting = &ch->connect_req;
  ch->attempt_conn = cc;
}

/* ---- resolution ---- */

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  uvg_channel_t *ch = req->data;
  ch->resolving = 0;
  size_t n = 0;
  for (struct addrinfo *a = res; status == 0 && a != NULL; a = a->ai_next)
    if (a->ai_family == AF_INET || a->ai_family == AF_INET6) n++;
  uvg__free(ch->addrs);
  ch->addrs = n ? uvg__calloc(n, sizeof(*ch->addrs)) : NULL;
  ch->naddrs = 0;
  for (struct addrinfo *a = res; ch->addrs != NULL && a != NULL; a = a->ai_next)
    if (a->ai_family == AF_INET || a->ai_family == AF_INET6)
      memcpy(&ch->addrs[ch->naddrs++], a->ai_addr, a->ai_addrlen);
  if (res != NULL) uv_freeaddrinfo(res);
  if (ch->closing) {
    maybe_released(ch);
    return;
  }
  if (ch->naddrs == 0) {
    snprintf(ch->last_error, sizeof(ch->last_error), "DNS resolution of %s: %s",
             ch->target.host, status ? uv_strerror(status) : "no addresses");
    round_failed(ch);
    return;
  }
  ch->resolved_at = uv_now(ch->loop);
  ch->next_addr = 0;
  attempt(ch);
}

/* The addresses a round tries: fixed for ipv4/ipv6/unix targets; for dns
 * resolved again after 30 s (grpc-go's minimum between re-resolutions). */
#define RERESOLVE_MIN_MS 30000
static void resolve_and_attempt(uvg_channel_t *ch) {
  ch->next_addr = 0;
  if (ch->target.scheme != UVG__TARGET_DNS) {
    attempt(ch);
    return;
  }
  if (ch->naddrs > 0 && uv_now(ch->loop) - ch->resolved_at < RERESOLVE_MIN_MS) {
    attempt(ch);
    return;
  }
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  ch->resolve_req.data = ch;
  int rc = uv_getaddrinfo(ch->loop, &ch->resolve_req, on_resolved, ch->target.host,
                          ch->target.port_str, &hints);
  if (rc != 0) {
    snprintf(ch->last_error, sizeof(ch->last_error), "DNS resolution of %s: %s",
             ch->target.host, uv_strerror(rc));
    round_failed(ch);
    return;
  }
  ch->resolving = 1;
}

static void start_round(uvg_channel_t *ch) {
  if (ch->closing || ch->connecting != NULL || ch->resolving ||
      ch->pending_conn != NULL || ch->conn != NULL)
    return;
  if (ch->state != UVG_STATE_TRANSIENT_FAILURE) set_state(ch, UVG_STATE_CONNECTING);
  /* the next round may start this long after this one started */
  ch->round_delay = uvg__backoff_next(&ch->backoff);
  uvg__timer_start(&ch->backoff_timer, on_backoff_over, ch->round_delay);
  resolve_and_attempt(ch);
}

/* ---- state and watchers ---- */

typedef struct {
  uvg__list_t link;
  uvg_connectivity_t last_seen;
  uvg_channel_state_cb cb;
  void *user_data;
} watch_t;

static void run_watches(void *arg, int status) {
  uvg_channel_t *ch = arg;
  (void)status;
  uvg__list_t due;
  uvg__list_init(&due);
  for (uvg__list_t *p = ch->watches.next, *next; p != &ch->watches; p = next) {
    next = p->next;
    watch_t *w = uvg__container_of(p, watch_t, link);
    if (w->last_seen != ch->state) {
      uvg__list_remove(p);
      uvg__list_push(&due, p);
    }
  }
  while (!uvg__list_empty(&due)) {
    watch_t *w = uvg__container_of(due.next, watch_t, link);
    uvg__list_remove(&w->link);
    w->cb(ch, ch->state, w->user_data);
    uvg__free(w);
  }
  maybe_released(ch);
}

static void post_watches(uvg_channel_t *ch) {
  if (!uvg__list_empty(&ch->watches) && !uvg__work_queued(&ch->w_watch))
    uvg__workq_post_node(&ch->q, &ch->w_watch, run_watches, ch);
}

static void set_state(uvg_channel_t *ch, uvg_connectivity_t st) {
  if (ch->state == st) return;
  UVG__TRACE(UVG__TRACE_API, "channel %s -> %s", uvg_connectivity_name(ch->state),
             uvg_connectivity_name(st));
  ch->state = st;
  post_watches(ch);
  if (st == UVG_STATE_READY) attach_waiting(ch);
}

uvg_connectivity_t uvg_channel_state(uvg_channel_t *ch, int try_to_connect) {
  if (try_to_connect && ch->state == UVG_STATE_IDLE) start_round(ch);
  return ch->state;
}

int uvg_channel_watch_state(uvg_channel_t *ch, uvg_connectivity_t last_seen,
                            uvg_channel_state_cb cb, void *user_data) {
  if (ch == NULL || cb == NULL) return UVG_EINVAL;
  if (ch->closing) return UVG_ECLOSED;
  watch_t *w = uvg__malloc(sizeof(*w));
  if (w == NULL) return UVG_ENOMEM;
  w->last_seen = last_seen;
  w->cb = cb;
  w->user_data = user_data;
  uvg__list_push(&ch->watches, &w->link);
  post_watches(ch);
  return 0;
}

/* ---- calls ---- */

static void on_idle(uvg__timer_t *t) {
  uvg_channel_t *ch = uvg__container_of(t, uvg_channel_t, idle_timer);
  if (ch->ncalls > 0 || ch->conn == NULL) return;
  UVG__TRACE(UVG__TRACE_API, "channel idle; closing its connection");
  uvg__cconn_t *cc = ch->conn;
  cc->draining = 1;
  leave_conn(ch, cc);
  uvg__conn_goaway(&cc->c, NGHTTP2_NO_ERROR, "idle");
}

void uvg__channel_call_born(uvg_channel_t *ch) {
  /* A call keeps the loop alive until it ends, also while it only waits
   * (backoff, wait-for-ready): those timers alone would not. */
  if (ch->ncalls++ == 0) uvg__sched_hold(ch->sched);
  uvg__timer_stop(&ch->idle_timer);
  update_ref(ch);
}

void uvg__channel_conn_unusable(uvg_channel_t *ch, uvg__cconn_t *cc) {
  cc->draining = 1;
  leave_conn(ch, cc);
}

void uvg__channel_place(uvg_channel_t *ch, uvg_client_call_t *call,
                        uvg__list_t *link) {
  if (ch->closing) { /* closed while the call was on its way here */
    uvg__ccall_fail(call, UVG_STATUS_CANCELLED, "channel closed");
    return;
  }
  uvg__list_push(&ch->waiting, link);
  if (ch->conn != NULL) {
    uvg__ccall_attach(call, ch->conn);
  } else if (ch->state == UVG_STATE_TRANSIENT_FAILURE &&
             !uvg__ccall_wait_for_ready(call)) {
    char msg[352];
    snprintf(msg, sizeof(msg), "no connection: %s",
             ch->last_error[0] ? ch->last_error : "connection failed");
    uvg__ccall_fail(call, UVG_STATUS_UNAVAILABLE, msg);
  } else if (ch->state == UVG_STATE_IDLE) {
    start_round(ch);
  }
}

void uvg__channel_call_freed(uvg_channel_t *ch) {
  ch->ncalls--;
  if (ch->ncalls == 0) {
    uvg__sched_unhold(ch->sched);
    update_ref(ch);
    if (ch->conn != NULL && ch->opts.idle_timeout_ms != UVG_INFINITE)
      uvg__timer_start(&ch->idle_timer, on_idle, ch->opts.idle_timeout_ms);
  }
  maybe_released(ch);
}

int uvg_channel_add_interceptor(uvg_channel_t *ch, const uvg_client_interceptor_t *ic,
                                void *data) {
  if (ch == NULL || ic == NULL || ch->ninterceptors == UVG__MAX_CLIENT_INTERCEPTORS)
    return UVG_EINVAL;
  ch->interceptors[ch->ninterceptors].ic = *ic;
  ch->interceptors[ch->ninterceptors].data = data;
  ch->ninterceptors++;
  return 0;
}

/* ---- creating and closing ---- */

/* The host of an authority ("host:port", "[v6]:port", "host"), which a
 * server's certificate must match; brackets stay (uvg__tls_wrap takes
 * them off). Returns a copy or NULL when out of memory. */
static char *authority_host(const char *auth) {
  const char *end = auth + strlen(auth);
  if (auth[0] == '[') {
    const char *close = strchr(auth, ']');
    if (close != NULL) end = close + 1;
  } else {
    const char *colon = strchr(auth, ':');
    if (colon != NULL && strchr(colon + 1, ':') == NULL) end = colon;
  }
  return uvg__strndup(auth, (size_t)(end - auth));
}

int uvg_channel_new(uv_loop_t *loop, const char *target,
                    uvg_channel_credentials_t *creds,
                    const uvg_channel_options_t *opts, uvg_channel_t **out) {
  char err[192];
  if (loop == NULL || target == NULL || out == NULL) return UVG_EINVAL;
  if (creds == NULL) return UVG_ENOCREDS;
  if (!creds->cfg.insecure && creds->cfg.is_server) return UVG_EINVAL;
  uvg__trace_init();
  uvg_channel_t *ch = uvg__calloc(1, sizeof(*ch));
  if (ch == NULL) return UVG_ENOMEM;
  int rc = merge_options(&ch->opts, opts);
  uvg__backoff_params_t bp = {ch->opts.backoff_initial_ms, ch->opts.backoff_multiplier,
                              ch->opts.backoff_jitter, ch->opts.backoff_max_ms,
                              ch->opts.min_connect_timeout_ms};
  if (rc == 0) rc = uvg__backoff_init(&ch->backoff, &bp, NULL, NULL);
  if (rc == 0) {
    rc = uvg__target_parse(target, &ch->target, err, sizeof(err));
    if (rc == UVG_EADDR) uvg__log(UVG_LOG_WARN, "%s", err);
  }
  if (rc == 0) {
    const char *auth = ch->opts.authority ? ch->opts.authority
                                          : ch->target.default_authority;
    ch->opts.authority = NULL; /* the caller's string is not kept */
    if ((ch->authority = uvg__strdup(auth)) == NULL) rc = UVG_ENOMEM;
  }
  if (rc == 0 && !creds->cfg.insecure) {
    ch->tls_name = creds->cfg.server_name != NULL
                       ? uvg__strdup(creds->cfg.server_name)
                       : authority_host(ch->authority);
    if (ch->tls_name == NULL) rc = UVG_ENOMEM;
  }
  if (rc == 0 && (ch->read_buf = uvg__malloc(UVG__CHANNEL_READ_BUF)) == NULL)
    rc = UVG_ENOMEM;
  if (rc == 0) rc = uvg__sched_acquire(loop, &ch->sched);
  if (rc != 0) {
    uvg__target_free(&ch->target);
    uvg__free(ch->authority);
    uvg__free(ch->tls_name);
    uvg__free(ch->read_buf);
    uvg__free(ch);
    return rc;
  }
  if (!creds->cfg.insecure) ch->tls = uvg__tls_config_ref(&creds->cfg);
  uvg__call_creds_ref(ch->opts.call_credentials);
  ch->loop = loop;
  ch->state = UVG_STATE_IDLE;
  ch->settings.initial_window_size = ch->opts.initial_window_size;
  ch->settings.connection_window_size = ch->opts.initial_connection_window_size;
  ch->settings.max_frame_size = ch->opts.max_frame_size;
  ch->settings.max_header_list_size = ch->opts.max_header_list_size;
  ch->settings.handshake_timeout = ch->opts.min_connect_timeout_ms;
  if (ch->opts.keepalive_time_ms != UVG_INFINITE) {
    ch->settings.keepalive_time = ch->opts.keepalive_time_ms;
    ch->settings.keepalive_timeout = ch->opts.keepalive_timeout_ms;
    ch->settings.permit_without_stream = ch->opts.keepalive_permit_without_calls;
  }
  /* fixed addresses are known at once */
  if (ch->target.scheme == UVG__TARGET_IPV4 || ch->target.scheme == UVG__TARGET_IPV6) {
    ch->addrs = ch->target.addrs;
    ch->naddrs = ch->target.naddrs;
    ch->target.addrs = NULL;
    ch->target.naddrs = 0;
  } else if (ch->target.scheme != UVG__TARGET_DNS) {
    ch->naddrs = 1; /* the unix path */
  }
  uvg__workq_init(ch->sched, &ch->q);
  uvg__timer_init(ch->sched, &ch->backoff_timer);
  uvg__timer_init(ch->sched, &ch->idle_timer);
  uvg__work_init(&ch->w_watch);
  uvg__work_init(&ch->w_release);
  uvg__list_init(&ch->conns);
  uvg__list_init(&ch->waiting);
  uvg__list_init(&ch->active);
  uvg__list_init(&ch->calls);
  uvg__list_init(&ch->watches);
  *out = ch;
  return 0;
}

static void run_release(void *arg, int status) {
  uvg_channel_t *ch = arg;
  (void)status;
  uvg__workq_close(&ch->q);
  uvg__sched_release(ch->sched);
  uvg__target_free(&ch->target);
  uvg__free(ch->addrs);
  uvg__free(ch->authority);
  uvg__free(ch->tls_name);
  uvg__tls_config_unref(ch->tls);
  uvg_call_credentials_release(ch->opts.call_credentials);
  uvg__free(ch->read_buf);
  if (ch->close_cb != NULL) ch->close_cb(ch, ch->close_data);
  uvg__free(ch);
}

static void maybe_released(uvg_channel_t *ch) {
  if (!ch->closing || ch->released || ch->ncalls > 0 || ch->connecting != NULL ||
      ch->resolving || !uvg__list_empty(&ch->conns) ||
      !uvg__list_empty(&ch->watches))
    return;
  ch->released = 1;
  /* from the queue: the close callback never runs inside a uvgrpc call */
  uvg__workq_post_node(&ch->q, &ch->w_release, run_release, ch);
}

void uvg_channel_close(uvg_channel_t *ch, uvg_channel_close_cb cb, void *user_data) {
  if (ch == NULL || ch->closing) return;
  ch->closing = 1;
  ch->close_cb = cb;
  ch->close_data = user_data;
  uvg__timer_stop(&ch->backoff_timer);
  uvg__timer_stop(&ch->idle_timer);
  if (ch->resolving) uv_cancel((uv_req_t *)&ch->resolve_req);
  if (ch->connecting != NULL) uvg__connect_cancel(ch->connecting);
  uvg__ccall_cancel_all(ch, "channel closed");
  ch->conn = NULL;
  ch->pending_conn = NULL;
  for (uvg__list_t *p = ch->conns.next; p != &ch->conns; p = p->next)
    uvg__conn_goaway(uvg__container_of(p, uvg__conn_t, link), NGHTTP2_NO_ERROR,
                     "channel closed");
  set_state(ch, UVG_STATE_SHUTDOWN);
  maybe_released(ch);
}

/*
 * The channel (grpc-go's ClientConn): options, the connectivity state and
 * its watchers, idleness, the calls waiting for a pick (pickerWrapper) and
 * close. What it connects to is decided by its resolver (resolver.c) and
 * its LB policy (lb.c, pick_first.c, round_robin.c); the connections
 * belong to subchannels (subchannel.c).
 *
 * Idle (grpc-go's idleness manager): a new channel, and one without calls
 * for idle_timeout_ms, has no resolver and no policy. The first call, or
 * uvg_channel_state(ch, 1), starts them; the state is then the policy's.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "channel.h"

static void set_state(uvg_channel_t *ch, uvg_connectivity_t st);
static void want_connection(uvg_channel_t *ch);
static void arm_idle_timer(uvg_channel_t *ch);

const char *uvg_connectivity_name(int state) {
  static const char *names[] = {"IDLE", "CONNECTING", "READY",
                                "TRANSIENT_FAILURE", "SHUTDOWN"};
  return state >= 0 && state <= UVG_STATE_SHUTDOWN ? names[state] : "UNKNOWN";
}

void uvg_channel_options_init(uvg_channel_options_t *o) {
  memset(o, 0, sizeof(*o));
  o->initial_window_size = 0; /* dynamic */
  o->initial_connection_window_size = 16 * 1024 * 1024;
  o->max_stream_windows_per_connection = 0; /* UVG__WINDOW_CAP */
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
    TAKE(max_stream_windows_per_connection);
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
    TAKE(lb_policy);
    TAKE(default_service_config);
    TAKE(http_proxy);
    TAKE(disable_http_proxy);
    TAKE(call_credentials);
    TAKE(allow_insecure_call_credentials);
#undef TAKE
  }
  if (o->initial_window_size > 0x7fffffff ||
      o->initial_connection_window_size > 0x7fffffff ||
      o->max_frame_size < 16384 || o->max_frame_size > 16777215)
    return UVG_EINVAL;
  /* the subchannels' backoff: checked once here */
  uvg__backoff_t b;
  uvg__backoff_params_t bp = {o->backoff_initial_ms, o->backoff_multiplier,
                              o->backoff_jitter, o->backoff_max_ms,
                              o->min_connect_timeout_ms};
  if (uvg__backoff_init(&b, &bp, NULL, NULL) != 0) return UVG_EINVAL;
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
 * (grpc-js unrefs its sockets the same way); one that is closing does, for
 * the second at most that its close may take, so that a program that
 * closed its channel exits with every connection closed. */
void uvg__channel_update_ref(uvg_channel_t *ch) {
  for (uvg__list_t *p = ch->conns.next; p != &ch->conns; p = p->next) {
    uvg__conn_t *c = uvg__container_of(p, uvg__conn_t, link);
    /* not c->nstreams: a health check's stream alone keeps nothing alive */
    if (c->closing || c->close_on_goaway || c->close_when_idle || ch->closing ||
        ch->ncalls > 0)
      uv_ref(&c->io.h.handle);
    else
      uv_unref(&c->io.h.handle);
  }
  /* so must a connect in progress: a policy that keeps reconnecting to an
   * address that never answers would keep the loop alive for good */
  for (uvg__list_t *p = ch->subchannels.next; p != &ch->subchannels; p = p->next) {
    uvg_subchannel_t *sc = uvg__container_of(p, uvg_subchannel_t, link);
    if (sc->connecting == NULL || !sc->connect_req.polling) continue;
    if (ch->ncalls > 0 || ch->closing)
      uv_ref((uv_handle_t *)&sc->connect_req.poll);
    else
      uv_unref((uv_handle_t *)&sc->connect_req.poll);
  }
}

void uvg__channel_set_error(uvg_channel_t *ch, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ch->last_error, sizeof(ch->last_error), fmt, ap);
  va_end(ap);
}

void uvg__channel_too_many_pings(uvg_channel_t *ch, const char *peer) {
  /* gRFC A8: the server finds our pings too frequent */
  if (!ch->settings.keepalive_time) return;
  if (ch->settings.keepalive_time < UINT64_MAX / 2) ch->settings.keepalive_time *= 2;
  uvg__log(UVG_LOG_WARN, "%s: GOAWAY too_many_pings: keepalive time doubled to "
           "%llu ms", peer, (unsigned long long)ch->settings.keepalive_time);
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
  uvg__channel_maybe_released(ch);
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
}

uvg_connectivity_t uvg_channel_state(uvg_channel_t *ch, int try_to_connect) {
  if (try_to_connect && (ch->idle_mode || ch->state == UVG_STATE_IDLE)) {
    want_connection(ch);
    arm_idle_timer(ch); /* connected without a call: idle again later */
  }
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

/* ---- idleness ---- */

static void on_idle(uvg__timer_t *t);

static void run_exit_idle(void *arg, int status);

/* Starts the resolver (and so, with its first result, the policy). */
static void exit_idle_mode(uvg_channel_t *ch) {
  if (!ch->idle_mode || ch->closing) return;
  ch->idle_mode = 0;
  UVG__TRACE(UVG__TRACE_API, "channel leaves idle");
  set_state(ch, UVG_STATE_CONNECTING);
  int rc = uvg__resolver_start(ch);
  if (rc != 0) {
    uvg__channel_set_error(ch, "resolver: %s", uvg_strerror(rc));
    uvg__channel_set_picker(ch, UVG_STATE_TRANSIENT_FAILURE, NULL, NULL, NULL);
  }
}

static void enter_idle_mode(uvg_channel_t *ch) {
  if (ch->idle_mode || ch->closing) return;
  UVG__TRACE(UVG__TRACE_API, "channel idle: resolver and LB policy stopped");
  ch->idle_mode = 1;
  uvg__resolver_stop(ch);
  uvg__lb_destroy(ch);
  uvg__channel_set_picker(ch, UVG_STATE_IDLE, NULL, NULL, NULL);
}

/* A call needs a connection: leave idle mode, or wake an IDLE policy. */
static void want_connection(uvg_channel_t *ch) {
  if (ch->idle_mode) {
    exit_idle_mode(ch);
  } else if (ch->state == UVG_STATE_IDLE && ch->lb.type != NULL &&
             ch->lb.type->exit_idle != NULL && !uvg__work_queued(&ch->w_exit_idle)) {
    /* from the queue: the policy may be the caller */
    if (uvg__workq_post_node(&ch->q, &ch->w_exit_idle, run_exit_idle, ch) == 0)
      ch->pending++;
  }
}

static void run_exit_idle(void *arg, int status) {
  uvg_channel_t *ch = arg;
  ch->pending--;
  if (status == 0 && !ch->closing && ch->state == UVG_STATE_IDLE &&
      ch->lb.type != NULL && ch->lb.type->exit_idle != NULL)
    ch->lb.type->exit_idle(ch->lb.state);
  uvg__channel_maybe_released(ch);
}

static void on_idle(uvg__timer_t *t) {
  uvg_channel_t *ch = uvg__container_of(t, uvg_channel_t, idle_timer);
  if (ch->ncalls > 0) return;
  enter_idle_mode(ch);
}

static void arm_idle_timer(uvg_channel_t *ch) {
  if (ch->ncalls == 0 && !ch->idle_mode && !ch->closing &&
      ch->opts.idle_timeout_ms != UVG_INFINITE)
    uvg__timer_start(&ch->idle_timer, on_idle, ch->opts.idle_timeout_ms);
}

/* ---- picking ---- */

/* Picks for a waiting call: it starts on the chosen connection, fails, or
 * stays in ch->waiting. */
static void pick_for(uvg_channel_t *ch, uvg_client_call_t *call) {
  /* grpc-go waits for the resolver before it looks up a call's method
   * config; here the call waits in ch->waiting for the same */
  if (ch->sc_known && !uvg__ccall_config_applied(call)) {
    uvg_pick_info_t info;
    uvg__ccall_pick_info(call, &info);
    uvg__ccall_apply_config(call, ch->sc ? uvg__service_config_method(ch->sc, info.method)
                                         : NULL);
    if (uvg__ccall_hedging(call)) {
      uvg__ccall_hedge_begin(call);
      return;
    }
  }
  uvg_subchannel_t *sc = NULL;
  uvg_status_t st = {UVG_STATUS_UNAVAILABLE, NULL, NULL, 0};
  uvg_pick_result_t r = UVG_PICK_QUEUE;
  if (ch->pick != NULL) {
    uvg_pick_info_t info;
    uvg__ccall_pick_info(call, &info);
    r = ch->pick(ch->picker, &info, &sc, &st);
  } else if (ch->state == UVG_STATE_TRANSIENT_FAILURE) {
    r = UVG_PICK_FAIL; /* no policy yet: the resolver failed */
  }
  if (r == UVG_PICK_COMPLETE) {
    uvg__cconn_t *cc = sc != NULL ? uvg__subchannel_conn(sc) : NULL;
    if (cc != NULL) uvg__ccall_attach(call, cc);
    return; /* a subchannel that is not READY now: wait */
  }
  if (r == UVG_PICK_FAIL && !uvg__ccall_wait_for_ready(call)) {
    char msg[352];
    if (st.message == NULL)
      snprintf(msg, sizeof(msg), "no connection: %s",
               ch->last_error[0] ? ch->last_error : "connection failed");
    uvg__ccall_fail(call, (unsigned)st.code <= 16 && st.code != UVG_STATUS_OK
                              ? st.code : UVG_STATUS_UNAVAILABLE,
                    st.message != NULL ? st.message : msg);
  }
}

/* Every waiting call is picked again (grpc-go's pickerWrapper wakes its
 * blocked picks on a new picker). */
static void repick(uvg_channel_t *ch) {
  uvg__list_t todo;
  uvg__list_init(&todo);
  uvg__list_move(&ch->waiting, &todo);
  while (!uvg__list_empty(&todo)) {
    uvg__list_t *p = todo.next;
    uvg__list_remove(p);
    uvg__list_push(&ch->waiting, p);
    pick_for(ch, uvg__ccall_of_link(p));
  }
}

void uvg__channel_set_picker(uvg_channel_t *ch, uvg_connectivity_t st,
                             uvg_pick_fn pick, void *picker,
                             void (*free_picker)(void *)) {
  if (ch->free_picker != NULL) ch->free_picker(ch->picker);
  ch->pick = pick;
  ch->picker = picker;
  ch->free_picker = free_picker;
  if (ch->closing) {
    if (free_picker != NULL) free_picker(picker);
    ch->pick = NULL;
    ch->free_picker = NULL;
    return;
  }
  set_state(ch, st);
  repick(ch);
  if (st == UVG_STATE_IDLE && !uvg__list_empty(&ch->waiting)) want_connection(ch);
}

/* ---- calls ---- */

void uvg__channel_call_born(uvg_channel_t *ch, int internal) {
  if (internal) {
    ch->ninternal++;
    return;
  }
  /* A call keeps the loop alive until it ends, also while it only waits
   * (backoff, wait-for-ready): those timers alone would not. The sockets'
   * references change only with the first call and the last. */
  if (ch->ncalls++ > 0) return;
  uvg__sched_hold(ch->sched);
  uvg__timer_stop(&ch->idle_timer);
  uvg__channel_update_ref(ch);
}

void uvg__channel_conn_unusable(uvg_channel_t *ch, uvg__cconn_t *cc) {
  (void)ch;
  cc->draining = 1;
  if (cc->sc != NULL) uvg__subchannel_conn_unusable(cc->sc, cc);
}

void uvg__channel_place(uvg_channel_t *ch, uvg_client_call_t *call,
                        uvg__list_t *link) {
  if (ch->closing) { /* closed while the call was on its way here */
    uvg__ccall_fail(call, UVG_STATUS_CANCELLED, "channel closed");
    return;
  }
  uvg__list_push(&ch->waiting, link);
  uvg__cconn_t *pinned = uvg__ccall_pinned(call);
  if (pinned != NULL) { /* past the picker, on its one connection */
    if (!pinned->draining && !pinned->c.closing) uvg__ccall_attach(call, pinned);
    if (!uvg__ccall_attached(call))
      uvg__ccall_fail(call, UVG_STATUS_UNAVAILABLE, "the connection is going away");
    return;
  }
  if (ch->idle_mode || ch->state == UVG_STATE_IDLE) want_connection(ch);
  pick_for(ch, call);
}

void uvg__channel_call_freed(uvg_channel_t *ch, int internal) {
  if (internal) {
    ch->ninternal--;
    uvg__channel_maybe_released(ch);
    return;
  }
  ch->ncalls--;
  if (ch->ncalls == 0) {
    uvg__sched_unhold(ch->sched);
    uvg__channel_update_ref(ch);
    arm_idle_timer(ch);
  }
  uvg__channel_maybe_released(ch);
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
  if (loop == NULL || target == NULL || out == NULL) return UVG_EINVAL;
  if (creds == NULL) return UVG_ENOCREDS;
  if (!creds->cfg.insecure && creds->cfg.is_server) return UVG_EINVAL;
  uvg__trace_init();
  uvg_channel_t *ch = uvg__calloc(1, sizeof(*ch));
  if (ch == NULL) return UVG_ENOMEM;
  int rc = merge_options(&ch->opts, opts);
  const char *lb = ch->opts.lb_policy ? ch->opts.lb_policy : "pick_first";
  ch->opts.lb_policy = NULL; /* the caller's string is not kept */
  if (rc == 0 && (ch->lb_default = uvg__lb_find(lb)) == NULL) {
    uvg__log(UVG_LOG_WARN, "LB policy \"%s\" is not registered", lb);
    rc = UVG_EINVAL;
  }
  const char *dsc = ch->opts.default_service_config;
  ch->opts.default_service_config = NULL; /* parsed, not kept */
  if (rc == 0 && dsc != NULL) {
    char err[160];
    rc = uvg__service_config_parse(dsc, strlen(dsc), uvg__lb_supported, NULL,
                                   &ch->sc_default, err, sizeof(err));
    if (rc == UVG_EINVAL) uvg__log(UVG_LOG_WARN, "default service config: %s", err);
    if (rc == 0) ch->sc = uvg__service_config_ref(ch->sc_default);
  }
  if (rc == 0) rc = uvg__resolver_prepare(ch, target);
  /* gRFC A1: through a proxy the resolver resolves the proxy's name */
  if (rc == 0 && ch->builtin_target)
    rc = uvg__proxy_setup(&ch->target, ch->opts.http_proxy, ch->opts.disable_http_proxy,
                          &ch->proxy);
  ch->opts.http_proxy = NULL; /* the caller's string is not kept */
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
    if (ch->sc != NULL) uvg__service_config_unref(ch->sc);
    if (ch->sc_default != NULL) uvg__service_config_unref(ch->sc_default);
    uvg__target_free(&ch->target);
    uvg__resolver_free(ch);
    uvg__proxy_free(ch->proxy);
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
  ch->idle_mode = 1;
  ch->resolver.ch = ch;
  ch->lb.ch = ch;
  ch->settings.connection_window_size = ch->opts.initial_connection_window_size;
  uvg__conn_settings_window(&ch->settings, ch->opts.initial_window_size,
                            UVG__CHANNEL_WINDOW,
                            ch->opts.max_stream_windows_per_connection);
  ch->settings.max_frame_size = ch->opts.max_frame_size;
  ch->settings.max_header_list_size = ch->opts.max_header_list_size;
  ch->settings.handshake_timeout = ch->opts.min_connect_timeout_ms;
  if (ch->opts.keepalive_time_ms != UVG_INFINITE) {
    ch->settings.keepalive_time = ch->opts.keepalive_time_ms;
    ch->settings.keepalive_timeout = ch->opts.keepalive_timeout_ms;
    ch->settings.permit_without_stream = ch->opts.keepalive_permit_without_calls;
  }
  uvg__workq_init(ch->sched, &ch->q);
  uvg__timer_init(ch->sched, &ch->idle_timer);
  uvg__work_init(&ch->w_watch);
  uvg__work_init(&ch->w_release);
  uvg__work_init(&ch->w_exit_idle);
  uvg__list_init(&ch->subchannels);
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
  uvg__resolver_free(ch);
  uvg__proxy_free(ch->proxy);
  if (ch->sc != NULL) uvg__service_config_unref(ch->sc);
  if (ch->sc_default != NULL) uvg__service_config_unref(ch->sc_default);
  uvg__free(ch->health_service);
  uvg__free(ch->authority);
  uvg__free(ch->tls_name);
  uvg__tls_config_unref(ch->tls);
  uvg_call_credentials_release(ch->opts.call_credentials);
  uvg__free(ch->read_buf);
  if (ch->close_cb != NULL) ch->close_cb(ch, ch->close_data);
  uvg__free(ch);
}

void uvg__channel_maybe_released(uvg_channel_t *ch) {
  if (!ch->closing || ch->released || ch->ncalls > 0 || ch->ninternal > 0 ||
      ch->pending > 0 ||
      !uvg__list_empty(&ch->subchannels) || !uvg__list_empty(&ch->conns) ||
      !uvg__list_empty(&ch->watches))
    return;
  ch->released = 1;
  /* from the queue: the close callback never runs inside a uvgrpc call */
  uvg__workq_post_node(&ch->q, &ch->w_release, run_release, ch);
}

void uvg_channel_close(uvg_channel_t *ch, uvg_channel_close_cb cb, void *user_data) {
  if (ch == NULL || ch->closing) return;
  ch->close_cb = cb;
  ch->close_data = user_data;
  uvg__timer_stop(&ch->idle_timer);
  uvg__resolver_stop(ch);
  ch->closing = 1;
  uvg__lb_destroy(ch); /* the subchannels' connections get GOAWAY */
  uvg__channel_set_picker(ch, UVG_STATE_SHUTDOWN, NULL, NULL, NULL);
  uvg__ccall_cancel_all(ch, "channel closed");
  for (uvg__list_t *p = ch->conns.next; p != &ch->conns; p = p->next)
    uvg__conn_goaway(uvg__container_of(p, uvg__conn_t, link), NGHTTP2_NO_ERROR,
                     "channel closed");
  set_state(ch, UVG_STATE_SHUTDOWN);
  uvg__channel_update_ref(ch);
  uvg__channel_maybe_released(ch);
}

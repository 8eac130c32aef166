/* The server: listeners, accepted connections, the method registry and an
 * asynchronous close. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server.h"

/* The stream window a server starts with when it grows: the 1 MiB it
 * kept fixed before it grew. A first upload over a 50 ms round trip
 * takes a third of the time it takes from 64 KiB (bdp_delay_test), and
 * the cap shares it among the streams a client opens. */
#define UVG__SERVER_WINDOW (1024u * 1024)
/* Over TLS its top UVG__TLS_PLAIN_MAX bytes take the decrypted records. */
#define READ_BUF_LEN (64 * 1024)

void uvg_server_options_init(uvg_server_options_t *o) {
  o->max_concurrent_streams = 100;
  o->initial_window_size = 0; /* dynamic */
  o->initial_connection_window_size = 16 * 1024 * 1024;
  o->max_stream_windows_per_connection = 0; /* UVG__WINDOW_CAP */
  o->max_frame_size = 16384;
  o->max_header_list_size = 8192;
  o->max_receive_message_size = 4 * 1024 * 1024;
  o->max_send_message_size = 0x7fffffff;
  o->keepalive_time_ms = 2ull * 60 * 60 * 1000;
  o->keepalive_timeout_ms = 20 * 1000;
  o->keepalive_min_time_ms = 5 * 60 * 1000;
  o->keepalive_permit_without_stream = 0;
  o->max_connection_idle_ms = UVG_INFINITE;
  o->max_connection_age_ms = UVG_INFINITE;
  o->max_connection_age_grace_ms = UVG_INFINITE;
  o->connection_timeout_ms = 120 * 1000;
}

/* The transport's duration: 0 turns a timer off. */
static uint64_t finite(uint64_t ms) { return ms == UVG_INFINITE ? 0 : ms; }

/* Takes the caller's nonzero settings over the defaults; checks ranges. */
static int merge_options(uvg_server_options_t *o, const uvg_server_options_t *in) {
  uvg_server_options_init(o);
  if (in != NULL) {
#define TAKE(f) if (in->f) o->f = in->f
    TAKE(max_concurrent_streams);
    TAKE(initial_window_size);
    TAKE(initial_connection_window_size);
    TAKE(max_stream_windows_per_connection);
    TAKE(max_frame_size);
    TAKE(max_header_list_size);
    TAKE(max_receive_message_size);
    TAKE(max_send_message_size);
    TAKE(keepalive_time_ms);
    TAKE(keepalive_timeout_ms);
    TAKE(keepalive_min_time_ms);
    TAKE(keepalive_permit_without_stream);
    TAKE(max_connection_idle_ms);
    TAKE(max_connection_age_ms);
    TAKE(max_connection_age_grace_ms);
    TAKE(connection_timeout_ms);
    TAKE(reuse_port);
#undef TAKE
  }
  if (o->initial_window_size > 0x7fffffff ||
      o->initial_connection_window_size > 0x7fffffff ||
      o->max_frame_size < 16384 || o->max_frame_size > 16777215)
    return UVG_EINVAL;
  return 0;
}

int uvg_server_new(uv_loop_t *loop, const uvg_server_options_t *opts,
                   uvg_server_t **out) {
  if (loop == NULL || out == NULL) return UVG_EINVAL;
  uvg__trace_init();
  uvg_server_t *s = uvg__calloc(1, sizeof(*s));
  if (s == NULL) return UVG_ENOMEM;
  if (merge_options(&s->opts, opts) != 0) {
    uvg__free(s);
    return UVG_EINVAL;
  }
  s->settings.max_concurrent_streams = s->opts.max_concurrent_streams;
  s->settings.connection_window_size = s->opts.initial_connection_window_size;
  uvg__conn_settings_window(&s->settings, s->opts.initial_window_size,
                            UVG__SERVER_WINDOW,
                            s->opts.max_stream_windows_per_connection);
  s->settings.max_frame_size = s->opts.max_frame_size;
  s->settings.max_header_list_size = s->opts.max_header_list_size;
  s->settings.keepalive_time = finite(s->opts.keepalive_time_ms);
  s->settings.keepalive_timeout = finite(s->opts.keepalive_timeout_ms);
  s->settings.min_ping_interval = finite(s->opts.keepalive_min_time_ms);
  s->settings.permit_without_stream = s->opts.keepalive_permit_without_stream;
  s->settings.max_idle = finite(s->opts.max_connection_idle_ms);
  s->settings.max_age = finite(s->opts.max_connection_age_ms);
  s->settings.age_grace = finite(s->opts.max_connection_age_grace_ms);
  s->settings.handshake_timeout = finite(s->opts.connection_timeout_ms);
  s->loop = loop;
  uvg__list_init(&s->listeners);
  uvg__list_init(&s->conns);
  uvg__list_init(&s->services);
  uvg__list_init(&s->hooks);
  uvg__list_init(&s->call_pool);
  s->read_buf = uvg__malloc(READ_BUF_LEN);
  int err = s->read_buf ? uvg__sched_acquire(loop, &s->sched) : UVG_ENOMEM;
  if (err != 0) {
    uvg__free(s->read_buf);
    uvg__free(s);
    return err;
  }
  uvg__workq_init(s->sched, &s->q);
  uvg__work_init(&s->w_close);
  uvg__timer_init(s->sched, &s->grace_timer);
  *out = s;
  return 0;
}

/* ---- method registry: open addressing on a hash of the path ---- */

static uint64_t hash_path(const char *p, size_t n) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
  return h;
}

static uvg__method_entry_t **slot_for(uvg__method_entry_t **tab, size_t cap,
                                      const char *path, size_t len) {
  size_t i = hash_path(path, len) & (cap - 1);
  while (tab[i] != NULL &&
         (tab[i]->path_len != len || memcmp(tab[i]->path, path, len) != 0))
    i = (i + 1) & (cap - 1);
  return &tab[i];
}

const uvg__method_entry_t *uvg__server_find(const uvg_server_t *s,
                                            const char *path, size_t len) {
  if (s->methods_cap == 0) return NULL;
  return *slot_for(s->methods, s->methods_cap, path, len);
}

int uvg__server_has_service(const uvg_server_t *s, const char *path,
                            size_t service_len) {
  for (size_t i = 0; i < s->methods_cap; i++) {
    const uvg__method_entry_t *e = s->methods[i];
    if (e != NULL && e->service_len == service_len &&
        memcmp(e->path, path, service_len) == 0)
      return 1;
  }
  return 0;
}

/* Length of "/Service" in "/Service/Method", or 0 if malformed. */
static size_t service_len_of(const char *path) {
  if (path[0] != '/') return 0;
  const char *slash = strchr(path + 1, '/');
  if (slash == NULL || slash == path + 1 || slash[1] == '\0' ||
      strchr(slash + 1, '/') != NULL)
    return 0;
  return (size_t)(slash - path);
}

static int method_valid(const uvg_method_t *m) {
  if (m->path == NULL || service_len_of(m->path) == 0 || m->on_call == NULL ||
      m->on_done == NULL || (unsigned)m->type > UVG_METHOD_BIDI_STREAMING)
    return 0;
  if ((m->type == UVG_METHOD_CLIENT_STREAMING ||
       m->type == UVG_METHOD_BIDI_STREAMING) &&
      (m->on_message == NULL || m->on_half_close == NULL))
    return 0;
  return 1;
}

/* Makes room for `need` methods at a load of at most 1/2. Only the slot
 * array is reallocated: the entries stay where they are. */
static int grow_table(uvg_server_t *s, size_t need) {
  if (need * 2 <= s->methods_cap) return 0;
  size_t cap = s->methods_cap ? s->methods_cap : 16;
  while (need * 2 > cap) cap *= 2;
  uvg__method_entry_t **tab = uvg__calloc(cap, sizeof(*tab));
  if (tab == NULL) return UVG_ENOMEM;
  for (size_t i = 0; i < s->methods_cap; i++) {
    uvg__method_entry_t *e = s->methods[i];
    if (e != NULL) *slot_for(tab, cap, e->path, e->path_len) = e;
  }
  uvg__free(s->methods);
  s->methods = tab;
  s->methods_cap = cap;
  return 0;
}

static uvg__method_entry_t *entry_new(const uvg_method_t *m,
                                      const uvg__service_t *service) {
  size_t len = strlen(m->path);
  uvg__method_entry_t *e = uvg__malloc(sizeof(*e) + len + 1);
  if (e == NULL) return NULL;
  memcpy(e->path, m->path, len + 1);
  e->m = *m;
  e->m.path = e->path;
  e->service = service;
  e->path_len = len;
  e->service_len = service_len_of(e->path);
  return e;
}

int uvg_server_register(uvg_server_t *s, const uvg_method_t *methods, size_t n) {
  return uvg__server_register(s, methods, n, NULL);
}

int uvg__server_register(uvg_server_t *s, const uvg_method_t *methods,
                         size_t n, const uvg__service_t *service) {
  if (s == NULL || (methods == NULL && n > 0)) return UVG_EINVAL;
  if (s->closing) return UVG_ECLOSED;
  for (size_t i = 0; i < n; i++) {
    if (!method_valid(&methods[i])) return UVG_EINVAL;
    size_t len = strlen(methods[i].path);
    if (uvg__server_find(s, methods[i].path, len) != NULL) return UVG_EEXIST;
    for (size_t j = 0; j < i; j++)
      if (strcmp(methods[j].path, methods[i].path) == 0) return UVG_EEXIST;
  }
  if (n == 0) return 0;
  /* Everything that can fail happens before the table changes, so a
   * failed batch leaves no method of it registered. */
  uvg__method_entry_t **batch = uvg__calloc(n, sizeof(*batch));
  if (batch == NULL) return UVG_ENOMEM;
  size_t made = 0;
  while (made < n && (batch[made] = entry_new(&methods[made], service)) != NULL) made++;
  if (made < n || grow_table(s, s->methods_n + n) != 0) {
    while (made-- > 0) uvg__free(batch[made]);
    uvg__free(batch);
    return UVG_ENOMEM;
  }
  for (size_t i = 0; i < n; i++)
    *slot_for(s->methods, s->methods_cap, batch[i]->path, batch[i]->path_len) =
        batch[i];
  s->methods_n += n;
  uvg__free(batch);
  return 0;
}

void uvg__server_add_hook(uvg_server_t *s, uvg__server_hook_t *hook) {
  uvg__list_push(&s->hooks, &hook->link);
  if (s->closing && hook->on_close != NULL) hook->on_close(hook);
}

/* ---- listening and accepting ---- */

int uvg__server_adopt(uvg_server_t *s, int fd, int is_unix,
                      uvg__tls_config_t *tls) {
  if (s->closing) {
    close(fd);
    return UVG_ECLOSED;
  }
  uvg__srvconn_t *sc = uvg__calloc(1, sizeof(*sc));
  if (sc == NULL) {
    close(fd); /* refused rather than left to wait */
    return UVG_ENOMEM;
  }
  uvg__conn_t *c = &sc->c;
  c->data = s;
  uvg__srvconn_init(sc, s->sched, &uvg__server_conn_cbs);
  c->stat_writes = &s->stats.writes;
  c->stat_bytes = &s->stats.bytes_written;
  c->stat_proto = &s->stats.protocol_errors;
  int err = uvg__stream_open_fd(s->loop, &c->io, fd, is_unix, c->io.cbs,
                                s->read_buf, READ_BUF_LEN);
  if (c->io.ops == NULL) {
    uvg__free(sc);
    return err;
  }
  uvg__list_push(&s->conns, &c->link);
  s->stats.connections_accepted++;
  s->stats.connections_open++;
  if (err == 0 && tls != NULL) err = uvg__tls_wrap(&c->io, tls, NULL);
  if (err == 0) err = uvg__conn_start_server(sc, &s->settings);
  if (err != 0) {
    uvg__log(UVG_LOG_WARN, "cannot start connection: %s", uvg_strerror(err));
    uvg__conn_close(c);
  }
  return err;
}

static void on_accept(uvg__listener_t *ll, int fd) {
  uvg__server_listener_t *sl = uvg__container_of(ll, uvg__server_listener_t, l);
  (void)uvg__server_adopt(sl->server, fd, ll->is_unix, sl->tls);
}

/* Parses "HOST:PORT", "[V6]:PORT" or "unix:PATH" into a socket address or a
 * path. Returns 0 or UVG_EADDR. */
static int parse_address(const char *a, struct sockaddr_storage *ss,
                         const char **path) {
  char host[64];
  *path = NULL;
  if (strncmp(a, "unix:", 5) == 0) {
    *path = a + 5;
    return **path ? 0 : UVG_EADDR;
  }
  const char *colon = strrchr(a, ':');
  if (colon == NULL || colon[1] == '\0') return UVG_EADDR;
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (*end != '\0' || port < 0 || port > 65535) return UVG_EADDR;
  size_t hl = (size_t)(colon - a);
  if (hl >= sizeof(host)) return UVG_EADDR;
  if (a[0] == '[') {
    if (hl < 2 || a[hl - 1] != ']') return UVG_EADDR;
    memcpy(host, a + 1, hl - 2);
    host[hl - 2] = '\0';
    return uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) ? UVG_EADDR : 0;
  }
  memcpy(host, a, hl);
  host[hl] = '\0';
  return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) ? UVG_EADDR : 0;
}

static void on_listener_closed(uvg__listener_t *ll) {
  uvg__server_listener_t *sl = uvg__container_of(ll, uvg__server_listener_t, l);
  uvg_server_t *s = sl->server;
  uvg__list_remove(&sl->link);
  uvg__tls_config_unref(sl->tls);
  uvg__free(sl);
  uvg__server_maybe_closed(s);
}

int uvg_server_listen(uvg_server_t *s, const char *address,
                      uvg_server_credentials_t *creds, int *bound_port) {
  struct sockaddr_storage ss;
  const char *path;
  int err, port;
  if (s == NULL || address == NULL) return UVG_EINVAL;
  if (creds == NULL) return UVG_ENOCREDS;
  if (!creds->cfg.insecure && !creds->cfg.is_server) return UVG_EINVAL;
  if (s->closing) return UVG_ECLOSED;
  if ((err = parse_address(address, &ss, &path)) != 0) return err;
  uvg__server_listener_t *sl = uvg__calloc(1, sizeof(*sl));
  if (sl == NULL) return UVG_ENOMEM;
  sl->server = s;
  err = uvg__listener_open(s->sched, &sl->l, path ? NULL : (struct sockaddr *)&ss,
                           path, &port,
                           s->opts.reuse_port ? UVG__LISTEN_REUSEPORT : 0,
                           on_accept);
  if (err != 0) {
    uvg__free(sl);
    return err;
  }
  if (!creds->cfg.insecure) sl->tls = uvg__tls_config_ref(&creds->cfg);
  uvg__list_push(&s->listeners, &sl->link);
  if (bound_port != NULL) *bound_port = port;
  UVG__TRACE(UVG__TRACE_SERVER, "listening on %s", address);
  return 0;
}

int uvg_server_add_interceptor(uvg_server_t *s, const uvg_server_interceptor_t *ic,
                               void *data) {
  if (s == NULL || ic == NULL || s->ninterceptors == UVG__MAX_INTERCEPTORS)
    return UVG_EINVAL;
  s->interceptors[s->ninterceptors].ic = *ic;
  s->interceptors[s->ninterceptors].data = data;
  s->ninterceptors++;
  return 0;
}

void uvg_server_get_stats(const uvg_server_t *s, uvg_server_stats_t *st) {
  *st = s->stats;
}

/* ---- closing ---- */

/* Runs from the server's own queue, so that the close callback never runs
 * inside uvg_server_close() even when there was nothing to close: the
 * scheduler is shared and its handles may stay open. The listeners' and
 * connections' handles are closed by now, so the server is gone when the
 * callback runs. */
static void finish_close(void *arg, int status) {
  uvg_server_t *s = arg;
  (void)status; /* nothing but this closure closes q */
  uvg__workq_close(&s->q);
  uvg__sched_release(s->sched);
  uvg__server_call_pool_free(s);
  for (size_t i = 0; i < s->methods_cap; i++) uvg__free(s->methods[i]);
  uvg__free(s->methods);
  uvg__free(s->read_buf);
  while (!uvg__list_empty(&s->hooks)) {
    uvg__server_hook_t *h = uvg__container_of(s->hooks.next, uvg__server_hook_t, link);
    uvg__list_remove(&h->link);
    h->on_free(h);
  }
  while (!uvg__list_empty(&s->services)) {
    uvg__list_t *p = s->services.next;
    uvg__list_remove(p);
    uvg__free(uvg__container_of(p, uvg__service_t, link));
  }
  if (s->close_cb != NULL) s->close_cb(s, s->close_data);
  uvg__free(s);
}

void uvg__server_maybe_closed(uvg_server_t *s) {
  if (!s->closing || s->finishing || !uvg__list_empty(&s->listeners) ||
      !uvg__list_empty(&s->conns) || s->stats.calls_open > 0)
    return;
  s->finishing = 1;
  uvg__timer_stop(&s->grace_timer);
  /* Cannot fail: q is open and our reference keeps the scheduler open. */
  uvg__workq_post_node(&s->q, &s->w_close, finish_close, s);
}

/* Stops accepting; returns 0 if the server was already closing. */
static int begin_close(uvg_server_t *s, uvg_server_close_cb cb, void *data) {
  if (s == NULL || s->closing) return 0;
  s->closing = 1;
  s->close_cb = cb;
  s->close_data = data;
  for (uvg__list_t *p = s->hooks.next; p != &s->hooks; p = p->next) {
    uvg__server_hook_t *h = uvg__container_of(p, uvg__server_hook_t, link);
    if (h->on_close != NULL) h->on_close(h);
  }
  for (uvg__list_t *p = s->listeners.next; p != &s->listeners; p = p->next) {
    uvg__server_listener_t *sl = uvg__container_of(p, uvg__server_listener_t, link);
    if (!sl->closing) {
      sl->closing = 1;
      uvg__listener_close(&sl->l, on_listener_closed);
    }
  }
  return 1;
}

/* Each connection says GOAWAY and closes once it has been written; its
 * calls are cancelled with UNAVAILABLE. */
static void goaway_all(uvg_server_t *s) {
  for (uvg__list_t *p = s->conns.next; p != &s->conns; p = p->next)
    uvg__conn_goaway(uvg__container_of(p, uvg__conn_t, link), NGHTTP2_NO_ERROR,
                     "server closing");
}

/* Ends a graceful shutdown's grace now: what is left is closed as by
 * uvg_server_close(). */
static void end_grace(uvg_server_t *s) {
  s->graceful = 0;
  uvg__timer_stop(&s->grace_timer);
  goaway_all(s);
  uvg__server_maybe_closed(s);
}

void uvg_server_close(uvg_server_t *s, uvg_server_close_cb cb, void *data) {
  if (s != NULL && s->closing) {
    /* A close after a shutdown is how a caller stops waiting for calls
     * that may never end (grpc-go's Stop() after GracefulStop()); the
     * shutdown's callback stays the one close callback. */
    if (s->graceful && !s->finishing) {
      UVG__TRACE(UVG__TRACE_SERVER, "closing during shutdown; grace ends");
      end_grace(s);
    }
    return;
  }
  if (!begin_close(s, cb, data)) return;
  UVG__TRACE(UVG__TRACE_SERVER, "closing");
  goaway_all(s);
  uvg__server_maybe_closed(s);
}

static void on_grace_over(uvg__timer_t *t) {
  uvg_server_t *s = uvg__container_of(t, uvg_server_t, grace_timer);
  UVG__TRACE(UVG__TRACE_SERVER, "shutdown grace over; closing connections");
  end_grace(s);
}

void uvg_server_shutdown(uvg_server_t *s, uint64_t grace_ms,
                         uvg_server_close_cb cb, void *data) {
  if (!begin_close(s, cb, data)) return;
  s->graceful = 1;
  UVG__TRACE(UVG__TRACE_SERVER, "shutting down, grace %llu ms",
             (unsigned long long)grace_ms);
  for (uvg__list_t *p = s->conns.next; p != &s->conns; p = p->next)
    uvg__conn_drain(uvg__container_of(p, uvg__conn_t, link));
  if (grace_ms != UVG_INFINITE) uvg__timer_start(&s->grace_timer, on_grace_over, grace_ms);
  uvg__server_maybe_closed(s);
}

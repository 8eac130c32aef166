/*
 * uvgrpc.node: uvgrpc on Node's own libuv loop, through Node-API alone.
 *
 * The addon is context-aware: each Node environment (the main thread, each
 * worker) gets its own env_t through napi_set_instance_data(), its own loop
 * from napi_get_uv_event_loop(), and its servers and channels are closed
 * from an async cleanup hook when the environment goes away. It creates no
 * thread and never runs the loop. Serialization stays in JavaScript
 * (index.js): this file moves bytes, metadata and statuses.
 *
 * Every callback into JavaScript goes through napi_make_callback() inside
 * the call's async context, so Promises, process.nextTick() and
 * AsyncLocalStorage behave in handlers as in any Node callback, and an
 * exception thrown there reaches process.on('uncaughtException').
 *
 * Lifetimes: a server, channel or call is a C struct with two references:
 * the JavaScript external that names it (dropped by its GC finalizer) and
 * the library's object (dropped by the close callback, on_done or
 * on_status). The struct is freed when both are gone; after the library's
 * side ended, its pointer is NULL and the functions below refuse it.
 */
#define NAPI_VERSION 8
#include <node_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "uvgrpc.h"

/* Every struct of this file comes from here: the count of those alive,
 * over all environments (liveObjects(), for tests of teardown). */
static _Atomic long live_objects;

static void *obj_alloc(size_t size) {
  void *p = calloc(1, size);
  if (p != NULL) live_objects++;
  return p;
}

static void obj_free(void *p) {
  if (p != NULL) live_objects--;
  free(p);
}

typedef struct link_s {
  struct link_s *prev, *next;
} link_t;

static void link_init(link_t *l) {
  l->prev = l->next = l;
}
static void link_insert(link_t *head, link_t *l) {
  l->next = head->next;
  l->prev = head;
  head->next->prev = l;
  head->next = l;
}
static void link_remove(link_t *l) {
  l->prev->next = l->next;
  l->next->prev = l->prev;
  link_init(l);
}

/* Per-environment state (napi_set_instance_data). */
typedef struct {
  napi_env env;
  uv_loop_t *loop;
  link_t servers;   /* server_t.link, until their close callback */
  link_t channels;  /* channel_t.link, until their close callback */
  link_t mdreqs;    /* mdreq_t.link: call credentials not answered yet */
  size_t live;      /* servers and channels not yet closed */
  int tearing_down; /* the async cleanup hook ran: no more JavaScript */
  napi_async_cleanup_hook_handle cleanup;
} env_t;

/* A call's async context: destroyed once the call ended and no send
 * callback is pending (`live` counts both). */
typedef struct {
  env_t *e;
  napi_async_context ctx;
  int live;
} jsctx_t;

static void jsctx_release(jsctx_t *j) {
  if (--j->live == 0) napi_async_destroy(j->e->env, j->ctx);
}

typedef struct {
  link_t link;
  env_t *e;
  uvg_server_t *server; /* NULL once closed */
  int closing;
  int refs;
  napi_ref on_call;  /* function(path, call, msg, md, remaining_ms) */
  napi_ref close_cb; /* function() or NULL */
  napi_async_context close_ctx;
} server_t;

typedef struct {
  link_t link;
  env_t *e;
  uvg_channel_t *channel; /* NULL once closed */
  int closing;
  int refs;
} channel_t;

/* A server call (uvg_call_t) or a client call (uvg_client_call_t): one
 * struct, so that sending, events and lifetimes are one piece of code. */
typedef struct {
  env_t *e;
  void *call; /* NULL after on_done / on_status */
  int client;
  int refs;
  napi_ref ev; /* function(kind, ...) the dispatcher returned */
  jsctx_t js;
  /* Client reading: responses are read while `credit` (what the stream
   * still wants) lasts and handed to JavaScript in batches, one callback
   * for every run of messages that were already in memory; `batch` holds
   * them as [u32 length][bytes]... */
  char peer[64]; /* the peer's address, kept when a server call ends */
  int reading;   /* a uvg_client_call_read() is pending */
  uint32_t credit;
  uint8_t *batch;
  size_t batch_len, batch_cap;
  /* a response message could not be kept: the call ends CANCELLED even
   * when the server's status (which a cancel does not change) is in */
  int lost;
} call_t;

/* ---- helpers ---------------------------------------------------------- */

#define CHECK(env, expr)      \
  do {                        \
    if ((expr) != napi_ok) {  \
      throw_last(env, #expr); \
      return NULL;            \
    }                         \
  } while (0)

/* The arguments of a function called from JavaScript: argc (how many
 * were given) and argv[n] (undefined past argc). */
#define ARGS(n)         \
  size_t argc = (n);    \
  napi_value argv[(n)]; \
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL))

static void throw_last(napi_env env, const char *what) {
  const napi_extended_error_info *info = NULL;
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (pending) return;
  napi_get_last_error_info(env, &info);
  napi_throw_error(env, NULL,
                   info && info->error_message ? info->error_message : what);
}

/* Throws an Error whose message names `err` and whose `errno` is `err`. */
static napi_value throw_uvg(napi_env env, const char *what, int err) {
  char msg[256];
  napi_value m, error, code;
  snprintf(msg, sizeof(msg), "%s: %s", what, uvg_strerror(err));
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
  napi_create_error(env, NULL, m, &error);
  napi_create_int32(env, err, &code);
  napi_set_named_property(env, error, "errno", code);
  napi_throw(env, error);
  return NULL;
}

static void *unwrap(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok) return NULL;
  return p;
}

/* napi_async_init() with a fresh resource object (Node 20 wants one). */
static void async_init(napi_env env, napi_value name, napi_async_context *ctx) {
  napi_value resource;
  napi_create_object(env, &resource);
  napi_async_init(env, resource, name, ctx);
}

/* Calls `fn` from the loop: a handle scope is open; an exception becomes
 * an uncaught exception, as it would from any other Node callback. */
static void make_callback(napi_env env, napi_async_context ctx, napi_value fn,
                          size_t argc, const napi_value *argv,
                          napi_value *result) {
  napi_value recv; /* napi_make_callback() wants an object */
  napi_get_global(env, &recv);
  napi_status st = napi_make_callback(env, ctx, recv, fn, argc, argv, result);
  if (st != napi_ok) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value err;
      napi_get_and_clear_last_exception(env, &err);
      napi_fatal_exception(env, err);
    }
    if (result) *result = NULL;
  }
}

static int ends_with_bin(const char *key) {
  size_t n = strlen(key);
  return n >= 4 && strcmp(key + n - 4, "-bin") == 0;
}

/* Metadata to JavaScript: a flat array [key, value, ...], values Buffers
 * for "-bin" keys and strings for the others. */
static napi_value md_to_js(napi_env env, const uvg_metadata_t *md, size_t n) {
  napi_value arr, k, v;
  napi_create_array_with_length(env, n * 2, &arr);
  for (size_t i = 0; i < n; i++) {
    napi_create_string_utf8(env, md[i].key, NAPI_AUTO_LENGTH, &k);
    if (ends_with_bin(md[i].key))
      napi_create_buffer_copy(env, md[i].value_len, md[i].value, NULL, &v);
    else
      napi_create_string_latin1(env, (const char *)md[i].value, md[i].value_len,
                                &v);
    napi_set_element(env, arr, (uint32_t)(2 * i), k);
    napi_set_element(env, arr, (uint32_t)(2 * i + 1), v);
  }
  return arr;
}

/* Metadata from JavaScript (the flat array above; a value may be a string
 * or a Buffer). Strings are copied into `md_free`'s blocks; Buffers are
 * pointed at and stay valid while the caller's arguments live. */
typedef struct {
  uvg_metadata_t *md;
  char **strings;
  size_t n, nstrings;
} md_arg_t;

static void md_arg_free(md_arg_t *a) {
  for (size_t i = 0; i < a->nstrings; i++) free(a->strings[i]);
  free(a->strings);
  free(a->md);
  memset(a, 0, sizeof(*a));
}

static char *js_string(napi_env env, napi_value v, size_t *len_out) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return NULL;
  char *s = malloc(len + 1);
  if (s == NULL) return NULL;
  napi_get_value_string_utf8(env, v, s, len + 1, &len);
  if (len_out) *len_out = len;
  return s;
}

/* Returns 0, or -1 with an exception thrown. */
static int md_from_js(napi_env env, napi_value arr, md_arg_t *a) {
  memset(a, 0, sizeof(*a));
  napi_valuetype t;
  napi_typeof(env, arr, &t);
  if (t == napi_undefined || t == napi_null) return 0;
  bool is_array = false;
  napi_is_array(env, arr, &is_array);
  if (!is_array) {
    napi_throw_type_error(env, NULL, "metadata must be a flat array");
    return -1;
  }
  uint32_t len;
  napi_get_array_length(env, arr, &len);
  size_t n = len / 2;
  if (n == 0) return 0;
  a->md = calloc(n, sizeof(*a->md));
  a->strings = calloc(n * 2, sizeof(char *));
  if (a->md == NULL || a->strings == NULL) goto nomem;
  for (size_t i = 0; i < n; i++) {
    napi_value k, v;
    napi_get_element(env, arr, (uint32_t)(2 * i), &k);
    napi_get_element(env, arr, (uint32_t)(2 * i + 1), &v);
    char *key = js_string(env, k, NULL);
    if (key == NULL) goto bad;
    a->strings[a->nstrings++] = key;
    a->md[i].key = key;
    bool is_buf = false;
    napi_is_buffer(env, v, &is_buf);
    if (is_buf) {
      void *data;
      size_t dlen;
      napi_get_buffer_info(env, v, &data, &dlen);
      a->md[i].value = data;
      a->md[i].value_len = dlen;
    } else {
      size_t slen;
      char *s = js_string(env, v, &slen);
      if (s == NULL) goto bad;
      a->strings[a->nstrings++] = s;
      a->md[i].value = (const uint8_t *)s;
      a->md[i].value_len = slen;
    }
    a->n++;
  }
  return 0;
bad:
  md_arg_free(a);
  napi_throw_type_error(env, NULL,
                        "metadata keys and values must be strings "
                        "or Buffers");
  return -1;
nomem:
  md_arg_free(a);
  napi_throw_error(env, NULL, "out of memory");
  return -1;
}

static napi_value undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

static napi_value int32(napi_env env, int32_t v) {
  napi_value r;
  napi_create_int32(env, v, &r);
  return r;
}

/* obj[name] as PEM data when it is a Buffer (valid while `obj` lives). */
static void pem_prop(napi_env env, napi_value obj, const char *name,
                     uvg_pem_t *pem) {
  napi_value v;
  bool is_buf = false;
  memset(pem, 0, sizeof(*pem));
  if (napi_get_named_property(env, obj, name, &v) != napi_ok) return;
  napi_is_buffer(env, v, &is_buf);
  if (is_buf) {
    void *d;
    napi_get_buffer_info(env, v, &d, &pem->len);
    pem->data = d;
  }
}

static int is_object(napi_env env, napi_value v) {
  napi_valuetype t = napi_undefined;
  napi_typeof(env, v, &t);
  return t == napi_object;
}

/* A request JavaScript holds until it answers: answered once at most. The
 * library keeps a request, and its call waits, until it is answered: those
 * JavaScript can no longer answer (the environment is going, the generator
 * dropped its callback) are answered UNAVAILABLE. */
typedef struct {
  link_t link;                 /* env_t.mdreqs while not answered */
  uvg_metadata_request_t *req; /* NULL once answered */
} mdreq_t;

/* Answers `m` (not answered yet) and forgets it. */
static int mdreq_done(mdreq_t *m, const uvg_metadata_t *md, size_t n,
                      uvg_status_code_t code, const char *message) {
  uvg_metadata_request_t *req = m->req;
  m->req = NULL;
  link_remove(&m->link);
  return uvg_metadata_request_done(req, md, n, code, message);
}

/* ---- environment teardown --------------------------------------------- */

static void env_object_closed(env_t *e) {
  if (--e->live == 0 && e->tearing_down && e->cleanup != NULL) {
    napi_async_cleanup_hook_handle h = e->cleanup;
    e->cleanup = NULL;
    napi_remove_async_cleanup_hook(h); /* the env may go away here */
  }
}

static void server_unref(server_t *s) {
  if (--s->refs == 0) obj_free(s);
}

static void channel_unref(channel_t *c) {
  if (--c->refs == 0) obj_free(c);
}

static void server_closed(uvg_server_t *server, void *user_data);
static void channel_closed(uvg_channel_t *channel, void *user_data);

/* The environment is going away (process exit, worker.terminate()): close
 * every server and channel without calling into JavaScript; the hook is
 * removed once the last close callback ran, so Node keeps turning the loop
 * until then. */
static void env_cleanup_hook(napi_async_cleanup_hook_handle handle, void *arg) {
  env_t *e = arg;
  (void)handle;
  e->tearing_down = 1;
  e->live++; /* hold the hook while closing */
  while (e->mdreqs.next != &e->mdreqs)
    mdreq_done((mdreq_t *)e->mdreqs.next, NULL, 0, UVG_STATUS_UNAVAILABLE,
               "environment closing");
  for (link_t *l = e->servers.next; l != &e->servers; l = l->next) {
    server_t *s = (server_t *)l;
    /* also a server already shutting down: its calls may never end, and
     * the close ends the grace (the shutdown's close callback stays) */
    s->closing = 1;
    uvg_server_close(s->server, server_closed, s);
  }
  for (link_t *l = e->channels.next; l != &e->channels; l = l->next) {
    channel_t *c = (channel_t *)l;
    if (!c->closing) {
      c->closing = 1;
      uvg_channel_close(c->channel, channel_closed, c);
    }
  }
  env_object_closed(e);
}

/* Node-API finalizers (the GC dropped a JavaScript external): `name` drops
 * the external's reference with `drop`. */
#define FINALIZER(name, drop)                              \
  static void name(napi_env env, void *data, void *hint) { \
    (void)env;                                             \
    (void)hint;                                            \
    drop(data);                                            \
  }

/* What obj_alloc() made and nothing else holds. */
FINALIZER(obj_finalize, obj_free)

static int is_function(napi_env env, napi_value v) {
  napi_valuetype t = napi_undefined;
  napi_typeof(env, v, &t);
  return t == napi_function;
}

/* ---- calls: lifetime and events ---------------------------------------- */

static void call_unref(call_t *c) {
  if (--c->refs > 0) return;
  free(c->batch);
  obj_free(c);
}

FINALIZER(call_finalize, call_unref)

/* The call named by a JavaScript external, NULL once it ended. */
static call_t *call_arg(napi_env env, napi_value v) {
  call_t *c = unwrap(env, v);
  return c != NULL && c->call != NULL ? c : NULL;
}

/* Starts the call's async context and takes its two references (the
 * external made by the caller and the library's call). */
static void call_init(call_t *c, env_t *e, int client, const char *name) {
  napi_value n;
  c->e = e;
  c->client = client;
  c->refs = 2;
  napi_create_string_utf8(e->env, name, NAPI_AUTO_LENGTH, &n);
  async_init(e->env, n, &c->js.ctx);
  c->js.e = e;
  c->js.live = 1;
}

/* Calls the call's event function with (kind, args...); a scope is open. */
static void call_event(call_t *c, int kind, size_t argc,
                       const napi_value *args) {
  napi_env env = c->e->env;
  napi_value argv[6], fn;
  if (c->ev == NULL || c->e->tearing_down) return;
  argv[0] = int32(env, kind);
  for (size_t i = 0; i < 5; i++)
    argv[i + 1] = i < argc ? args[i] : undefined(env);
  napi_get_reference_value(env, c->ev, &fn);
  make_callback(env, c->js.ctx, fn, 6, argv, NULL);
}

/* The library is done with the call: no event after this one; the event
 * function and the async context are released. A scope is open. */
static void call_ended(call_t *c, int kind, size_t argc,
                       const napi_value *args) {
  c->call = NULL;
  call_event(c, kind, argc, args);
  if (c->ev != NULL) napi_delete_reference(c->e->env, c->ev);
  c->ev = NULL;
  jsctx_release(&c->js);
  call_unref(c);
}

/* ---- sends with a completion callback ---------------------------------- */

/* Messages sent without copying: the Buffers (one, or an Array of them)
 * are held until the library called back for each (the bytes reached the
 * socket, or the call ended); then the JavaScript callback runs once, with
 * the first error or 0: the stream's backpressure signal. The request
 * holds its call struct and async context. */
typedef struct {
  call_t *c;
  napi_ref bufs;
  napi_ref cb;
  size_t pending; /* library callbacks to come */
  int status;
} send_req_t;

static void send_done(send_req_t *r, int status) {
  call_t *c = r->c;
  env_t *e = c->e;
  napi_env env = e->env;
  if (status != 0 && r->status == 0) r->status = status;
  if (--r->pending > 0) return;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  if (!e->tearing_down) {
    napi_value fn, arg = int32(env, r->status);
    napi_get_reference_value(env, r->cb, &fn);
    make_callback(env, c->js.ctx, fn, 1, &arg, NULL);
  }
  napi_delete_reference(env, r->bufs);
  napi_delete_reference(env, r->cb);
  napi_close_handle_scope(env, scope);
  jsctx_release(&c->js);
  call_unref(c);
  obj_free(r);
}

static void srv_send_cb(uvg_call_t *call, int status, void *user_data) {
  (void)call;
  send_done(user_data, status);
}

static void cli_send_cb(uvg_client_call_t *call, int status, void *user_data) {
  (void)call;
  send_done(user_data, status);
}

/* One message, copied when `r` is NULL. */
static int call_send_one(call_t *c, const void *data, size_t len,
                         send_req_t *r) {
  if (c->client)
    return uvg_client_call_send(c->call, data, len, 0, r ? cli_send_cb : NULL,
                                r);
  return uvg_call_send(c->call, data, len, 0, r ? srv_send_cb : NULL, r);
}

/* callSend(call, buffers[, cb]) -> 0 or an error code, server and client
 * calls alike. `buffers` is a Buffer or an Array of them, sent in order.
 * Without cb the bytes are copied; with it they are sent as they are and
 * cb(status) runs once, when the last reached the socket (0) or the call
 * ended (UVG_ECANCELED). If this returns an error cb never runs; messages
 * before the one refused are sent all the same. */
static napi_value js_call_send(napi_env env, napi_callback_info info) {
  ARGS(3);
  napi_value item = NULL;
  call_t *c = call_arg(env, argv[0]);
  if (c == NULL) return int32(env, UVG_ECANCELED);
  bool is_array = false;
  uint32_t n = 1;
  napi_is_array(env, argv[1], &is_array);
  if (is_array) napi_get_array_length(env, argv[1], &n);
  send_req_t *r = NULL;
  if (argc >= 3 && is_function(env, argv[2])) {
    if ((r = obj_alloc(sizeof(*r))) == NULL)
      return throw_uvg(env, "send", UVG_ENOMEM);
    r->c = c;
    r->pending = 1; /* held until every message is queued */
    c->refs++;
    c->js.live++;
    napi_create_reference(env, argv[1], 1, &r->bufs);
    napi_create_reference(env, argv[2], 1, &r->cb);
  }
  int err = 0;
  uint32_t i;
  for (i = 0; i < n && err == 0; i++) {
    void *data;
    size_t len;
    if (is_array)
      napi_get_element(env, argv[1], i, &item);
    else
      item = argv[1];
    if (napi_get_buffer_info(env, item, &data, &len) != napi_ok) {
      err = UVG_EINVAL;
      break;
    }
    if (r) r->pending++;
    err = call_send_one(c, data, len, r);
    if (err && r) r->pending--;
  }
  if (r == NULL) return int32(env, err);
  if (err != 0 && r->pending == 1) { /* nothing queued: cb never runs */
    napi_delete_reference(env, r->bufs);
    napi_delete_reference(env, r->cb);
    c->js.live--;
    c->refs--;
    obj_free(r);
    return int32(env, err);
  }
  /* the library never calls back from inside a send: the messages queued
   * keep the request */
  send_done(r, err);
  return int32(env, 0);
}

/* The server or channel named by a JavaScript external, NULL once it is
 * closing. */
static server_t *open_server(napi_env env, napi_value v) {
  server_t *s = unwrap(env, v);
  return s != NULL && s->server != NULL && !s->closing ? s : NULL;
}

static channel_t *open_channel(napi_env env, napi_value v) {
  channel_t *c = unwrap(env, v);
  return c != NULL && c->channel != NULL && !c->closing ? c : NULL;
}

/* ---- server ------------------------------------------------------------ */

FINALIZER(server_finalize, server_unref)

static void server_closed(uvg_server_t *server, void *user_data) {
  server_t *s = user_data;
  env_t *e = s->e;
  napi_env env = e->env;
  (void)server;
  s->server = NULL;
  link_remove(&s->link);
  if (!e->tearing_down && s->close_cb != NULL) {
    napi_handle_scope scope;
    napi_value fn;
    napi_open_handle_scope(env, &scope);
    napi_get_reference_value(env, s->close_cb, &fn);
    make_callback(env, s->close_ctx, fn, 0, NULL, NULL);
    napi_close_handle_scope(env, scope);
  }
  if (s->close_cb != NULL) {
    napi_delete_reference(env, s->close_cb);
    napi_async_destroy(env, s->close_ctx);
    s->close_cb = NULL;
  }
  napi_delete_reference(env, s->on_call);
  s->on_call = NULL;
  server_unref(s);
  env_object_closed(e);
}

/* serverNew(onCall) -> server */
static napi_value js_server_new(napi_env env, napi_callback_info info) {
  ARGS(1);
  napi_value ext;
  env_t *e;
  CHECK(env, napi_get_instance_data(env, (void **)&e));
  server_t *s = obj_alloc(sizeof(*s));
  if (s == NULL) return throw_uvg(env, "serverNew", UVG_ENOMEM);
  int err = uvg_server_new(e->loop, NULL, &s->server);
  if (err) {
    obj_free(s);
    return throw_uvg(env, "serverNew", err);
  }
  s->e = e;
  s->refs = 2;
  napi_create_reference(env, argv[0], 1, &s->on_call);
  link_insert(&e->servers, &s->link);
  e->live++;
  CHECK(env, napi_create_external(env, s, server_finalize, NULL, &ext));
  return ext;
}

static void srv_on_call(uvg_call_t *call, const uint8_t *msg, size_t len);
static void srv_on_message(uvg_call_t *call, const uint8_t *msg, size_t len);
static void srv_on_half_close(uvg_call_t *call);
static void srv_on_cancel(uvg_call_t *call, const uvg_status_t *status);
static void srv_on_done(uvg_call_t *call, const uvg_status_t *status);

/* serverRegister(server, path, type) */
static napi_value js_server_register(napi_env env, napi_callback_info info) {
  ARGS(3);
  server_t *s = open_server(env, argv[0]);
  if (s == NULL) return throw_uvg(env, "register", UVG_ECLOSED);
  char *path = js_string(env, argv[1], NULL);
  int32_t type = 0;
  napi_get_value_int32(env, argv[2], &type);
  if (path == NULL) return throw_uvg(env, "register", UVG_EINVAL);
  uvg_method_t m = {
      .path = path,
      .type = (uvg_method_type_t)type,
      .on_call = srv_on_call,
      .on_message = srv_on_message,
      .on_half_close = srv_on_half_close,
      .on_cancel = srv_on_cancel,
      .on_done = srv_on_done,
      .method_data = s,
  };
  int err = uvg_server_register(s->server, &m, 1);
  free(path);
  if (err) return throw_uvg(env, "register", err);
  return undefined(env);
}

/* serverListen(server, address[, tls]) -> bound port. `tls`, if an object,
 * holds PEM Buffers: cert, key, and ca with clientCert 1 (request) or 2
 * (require) for mTLS; the credentials are made here and released once the
 * server holds them. */
static napi_value js_server_listen(napi_env env, napi_callback_info info) {
  ARGS(3);
  server_t *s = open_server(env, argv[0]);
  if (s == NULL) return throw_uvg(env, "listen", UVG_ECLOSED);
  uvg_server_credentials_t *creds = uvg_insecure_server_credentials();
  if (argc >= 3 && is_object(env, argv[2])) {
    uvg_tls_server_options_t o;
    memset(&o, 0, sizeof(o));
    pem_prop(env, argv[2], "cert", &o.cert_chain);
    pem_prop(env, argv[2], "key", &o.private_key);
    pem_prop(env, argv[2], "ca", &o.client_ca);
    napi_value v;
    int32_t mode = 0;
    if (napi_get_named_property(env, argv[2], "clientCert", &v) == napi_ok)
      napi_get_value_int32(env, v, &mode);
    o.client_cert = (uvg_client_cert_t)mode;
    int err = uvg_tls_server_credentials_new(&o, &creds);
    if (err) return throw_uvg(env, "listen", err);
  }
  char *addr = js_string(env, argv[1], NULL);
  if (addr == NULL) {
    uvg_server_credentials_release(creds);
    return throw_uvg(env, "listen", UVG_EINVAL);
  }
  int port = 0;
  int err = uvg_server_listen(s->server, addr, creds, &port);
  uvg_server_credentials_release(creds);
  free(addr);
  if (err) return throw_uvg(env, "listen", err);
  return int32(env, port);
}

/* serverClose(server, graceMs, cb): graceMs < 0 closes at once (calls
 * cancelled), otherwise drains for up to graceMs. cb runs once all is
 * released. On a server already closing, graceMs < 0 ends a drain at once
 * and the first call's cb is the one that runs. */
static napi_value js_server_close(napi_env env, napi_callback_info info) {
  ARGS(3);
  napi_value name;
  server_t *s = unwrap(env, argv[0]);
  if (s == NULL || s->server == NULL) return undefined(env);
  double grace = -1;
  napi_get_value_double(env, argv[1], &grace);
  if (s->closing) {
    /* forceShutdown() after tryShutdown(): the calls left are cancelled
     * and tryShutdown's callback runs, as in grpc-js; `cb` is not kept */
    if (grace < 0) uvg_server_close(s->server, server_closed, s);
    return undefined(env);
  }
  napi_valuetype t;
  napi_typeof(env, argv[2], &t);
  if (t == napi_function) {
    napi_create_reference(env, argv[2], 1, &s->close_cb);
    napi_create_string_utf8(env, "uvgrpc.Server.close", NAPI_AUTO_LENGTH,
                            &name);
    async_init(env, name, &s->close_ctx);
  }
  s->closing = 1;
  if (grace < 0)
    uvg_server_close(s->server, server_closed, s);
  else
    uvg_server_shutdown(s->server, (uint64_t)grace, server_closed, s);
  return undefined(env);
}

static void srv_on_call(uvg_call_t *call, const uint8_t *msg, size_t len) {
  server_t *s = uvg_call_method_data(call);
  env_t *e = s->e;
  napi_env env = e->env;
  if (e->tearing_down) {
    uvg_call_finish(call, UVG_STATUS_UNAVAILABLE, "server closing", NULL, 0);
    return;
  }
  call_t *c = obj_alloc(sizeof(*c));
  if (c == NULL) {
    uvg_call_finish(call, UVG_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL,
                    0);
    return;
  }
  c->call = call;
  uvg_call_set_data(call, c);

  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value argv[5], fn, result = NULL;
  call_init(c, e, 0, "uvgrpc.ServerCall");
  napi_create_string_utf8(env, uvg_call_method(call), NAPI_AUTO_LENGTH,
                          &argv[0]);
  napi_create_external(env, c, call_finalize, NULL, &argv[1]);
  if (msg != NULL || len > 0)
    napi_create_buffer_copy(env, len, msg, NULL, &argv[2]);
  else
    argv[2] = undefined(env);
  const uvg_metadata_t *md;
  size_t n = uvg_call_metadata(call, &md);
  argv[3] = md_to_js(env, md, n);
  napi_create_double(env, (double)uvg_call_time_remaining(call), &argv[4]);
  napi_get_reference_value(env, s->on_call, &fn);
  make_callback(env, c->js.ctx, fn, 5, argv, &result);
  if (result != NULL && is_function(env, result)) {
    napi_create_reference(env, result, 1, &c->ev);
  } else if (c->call != NULL) {
    uvg_call_finish(call, UVG_STATUS_UNKNOWN, "handler failed", NULL, 0);
  }
  napi_close_handle_scope(env, scope);
}

/* Server call events: message(buffer), halfclose, cancel(code), done(code). */
enum { SRV_MESSAGE, SRV_HALF_CLOSE, SRV_CANCEL, SRV_DONE };

static void srv_on_message(uvg_call_t *call, const uint8_t *msg, size_t len) {
  call_t *c = uvg_call_get_data(call);
  if (c == NULL) return;
  napi_env env = c->e->env;
  napi_handle_scope scope;
  napi_value buf;
  napi_open_handle_scope(env, &scope);
  napi_create_buffer_copy(env, len, msg, NULL, &buf);
  call_event(c, SRV_MESSAGE, 1, &buf);
  napi_close_handle_scope(env, scope);
}

static void srv_on_half_close(uvg_call_t *call) {
  call_t *c = uvg_call_get_data(call);
  if (c == NULL) return;
  napi_env env = c->e->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  call_event(c, SRV_HALF_CLOSE, 0, NULL);
  napi_close_handle_scope(env, scope);
}

static void srv_on_cancel(uvg_call_t *call, const uvg_status_t *status) {
  call_t *c = uvg_call_get_data(call);
  if (c != NULL) {
    napi_env env = c->e->env;
    napi_handle_scope scope;
    napi_open_handle_scope(env, &scope);
    napi_value code = int32(env, (int32_t)status->code);
    call_event(c, SRV_CANCEL, 1, &code);
    napi_close_handle_scope(env, scope);
  }
  /* The handler's later finish is a no-op; this one releases the call. */
  uvg_call_finish(call, UVG_STATUS_CANCELLED, NULL, NULL, 0);
}

static void srv_on_done(uvg_call_t *call, const uvg_status_t *status) {
  call_t *c = uvg_call_get_data(call);
  if (c == NULL) return;
  napi_env env = c->e->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value code = int32(env, (int32_t)status->code);
  /* a handler may ask who called after the call ended */
  snprintf(c->peer, sizeof(c->peer), "%s", uvg_call_peer(call));
  call_ended(c, SRV_DONE, 1, &code);
  napi_close_handle_scope(env, scope);
}

/* callSendHeaders(call, md) -> 0 or an error code */
static napi_value js_call_send_headers(napi_env env, napi_callback_info info) {
  ARGS(2);
  call_t *c = call_arg(env, argv[0]);
  if (c == NULL || c->client) return int32(env, UVG_ECANCELED);
  md_arg_t md;
  if (md_from_js(env, argv[1], &md)) return NULL;
  int err = uvg_call_send_headers(c->call, md.md, md.n);
  md_arg_free(&md);
  return int32(env, err);
}

/* callPauseReading(call, paused): client-streaming and bidi calls; while
 * paused no message (nor the half-close) is delivered and no window is
 * granted beyond what the call had. */
static napi_value js_call_pause_reading(napi_env env, napi_callback_info info) {
  ARGS(2);
  call_t *c = call_arg(env, argv[0]);
  if (c == NULL || c->client) return int32(env, UVG_ECANCELED);
  bool paused = false;
  napi_get_value_bool(env, argv[1], &paused);
  return int32(env, uvg_call_pause_reading(c->call, paused));
}

/* callPeer(call) -> the peer's address as the library writes it; "" before
 * a client call had a connection or after it ended (its status says). */
static napi_value js_call_peer(napi_env env, napi_callback_info info) {
  ARGS(1);
  napi_value r;
  call_t *c = unwrap(env, argv[0]);
  const char *peer = "";
  if (c != NULL && c->call == NULL)
    peer = c->peer;
  else if (c != NULL)
    peer = c->client ? uvg_client_call_peer(c->call) : uvg_call_peer(c->call);
  napi_create_string_utf8(env, peer, NAPI_AUTO_LENGTH, &r);
  return r;
}

/* A status from JavaScript: (code, message, metadata) at argv[0..2];
 * *message (a string or NULL) and *md are the caller's to free. Returns 0,
 * or -1 with an exception thrown and nothing to free. */
static int status_from_js(napi_env env, const napi_value *argv, int32_t *code,
                          char **message, md_arg_t *md) {
  napi_valuetype t = napi_undefined;
  *code = 0;
  *message = NULL;
  napi_get_value_int32(env, argv[0], code);
  napi_typeof(env, argv[1], &t);
  if (t == napi_string) *message = js_string(env, argv[1], NULL);
  if (md_from_js(env, argv[2], md)) {
    free(*message);
    return -1;
  }
  return 0;
}

/* callFinish(call, code, message, trailers, details) -> 0 or an error */
static napi_value js_call_finish(napi_env env, napi_callback_info info) {
  ARGS(5);
  call_t *c = call_arg(env, argv[0]);
  if (c == NULL || c->client) return int32(env, UVG_ECANCELED);
  int32_t code;
  char *message;
  md_arg_t md;
  if (status_from_js(env, argv + 1, &code, &message, &md)) return NULL;
  uvg_status_t st = {.code = (uvg_status_code_t)code, .message = message};
  bool is_buf = false;
  if (argc >= 5) napi_is_buffer(env, argv[4], &is_buf);
  if (is_buf) {
    void *d;
    napi_get_buffer_info(env, argv[4], &d, &st.details_len);
    st.details = d;
  }
  int err = uvg_call_finish_status(c->call, &st, md.md, md.n);
  md_arg_free(&md);
  free(message);
  return int32(env, err);
}

/* ---- call credentials -------------------------------------------------- */

/* Call credentials whose metadata JavaScript makes: get(serviceUrl,
 * methodName, req) is called before each call that uses them starts, and
 * JavaScript answers with metadataRequestDone(req, ...). The JavaScript
 * external holds one reference, each channel and call given them another;
 * the function is released with the last. */
typedef struct {
  env_t *e;
  napi_ref get;
  napi_async_context ctx;
} ccreds_t;

static void mdreq_finalize(napi_env env, void *data, void *hint) {
  mdreq_t *m = data;
  (void)env;
  (void)hint;
  if (m->req != NULL) /* the generator's callback is gone */
    mdreq_done(m, NULL, 0, UVG_STATUS_UNAVAILABLE,
               "call credentials dropped unanswered");
  obj_free(m);
}

static void ccreds_get(uvg_metadata_request_t *req, const char *service_url,
                       const char *method_name, void *user_data) {
  ccreds_t *k = user_data;
  napi_env env = k->e->env;
  if (k->e->tearing_down) {
    uvg_metadata_request_done(req, NULL, 0, UVG_STATUS_UNAVAILABLE,
                              "environment closing");
    return;
  }
  mdreq_t *m = obj_alloc(sizeof(*m));
  if (m == NULL) {
    uvg_metadata_request_done(req, NULL, 0, UVG_STATUS_RESOURCE_EXHAUSTED,
                              "out of memory");
    return;
  }
  m->req = req;
  link_insert(&k->e->mdreqs, &m->link);
  napi_handle_scope scope;
  napi_value argv[3], fn;
  napi_open_handle_scope(env, &scope);
  napi_create_string_utf8(env, service_url, NAPI_AUTO_LENGTH, &argv[0]);
  napi_create_string_utf8(env, method_name, NAPI_AUTO_LENGTH, &argv[1]);
  napi_create_external(env, m, mdreq_finalize, NULL, &argv[2]);
  napi_get_reference_value(env, k->get, &fn);
  make_callback(env, k->ctx, fn, 3, argv, NULL);
  napi_close_handle_scope(env, scope);
}

static void ccreds_destroy(void *user_data) {
  ccreds_t *k = user_data;
  napi_delete_reference(k->e->env, k->get);
  napi_async_destroy(k->e->env, k->ctx);
  obj_free(k);
}

FINALIZER(ccreds_finalize, uvg_call_credentials_release)

/* callCredsNew(get) -> call credentials */
static napi_value js_call_creds_new(napi_env env, napi_callback_info info) {
  ARGS(1);
  napi_value ext, name;
  env_t *e;
  CHECK(env, napi_get_instance_data(env, (void **)&e));
  ccreds_t *k = obj_alloc(sizeof(*k));
  if (k == NULL) return throw_uvg(env, "callCredsNew", UVG_ENOMEM);
  uvg_call_credentials_t *creds;
  int err = uvg_call_credentials_new(ccreds_get, ccreds_destroy, k, &creds);
  if (err) {
    obj_free(k);
    return throw_uvg(env, "callCredsNew", err);
  }
  k->e = e;
  napi_create_reference(env, argv[0], 1, &k->get);
  napi_create_string_utf8(env, "uvgrpc.CallCredentials", NAPI_AUTO_LENGTH,
                          &name);
  async_init(env, name, &k->ctx);
  CHECK(env, napi_create_external(env, creds, ccreds_finalize, NULL, &ext));
  return ext;
}

/* metadataRequestDone(req, code, message, md) -> 0 or an error code; a
 * request answered already: UVG_ESTATE. */
static napi_value js_metadata_request_done(napi_env env,
                                           napi_callback_info info) {
  ARGS(4);
  mdreq_t *m = unwrap(env, argv[0]);
  if (m == NULL || m->req == NULL) return int32(env, UVG_ESTATE);
  int32_t code;
  char *message;
  md_arg_t md;
  if (status_from_js(env, argv + 1, &code, &message, &md)) return NULL;
  int err = mdreq_done(m, md.md, md.n, (uvg_status_code_t)code, message);
  md_arg_free(&md);
  free(message);
  return int32(env, err);
}

/* ---- client ------------------------------------------------------------ */

FINALIZER(channel_finalize, channel_unref)

static void channel_closed(uvg_channel_t *channel, void *user_data) {
  channel_t *c = user_data;
  (void)channel;
  c->channel = NULL;
  link_remove(&c->link);
  env_t *e = c->e;
  channel_unref(c);
  env_object_closed(e);
}

/* channelNew(target[, tls[, callCreds]]) -> channel. `tls`, if an object:
 * PEM Buffers roots (none: the system's), cert and key (mTLS), and the
 * string serverName (the name the certificate must carry); callCreds, call
 * credentials every call carries. */
static napi_value js_channel_new(napi_env env, napi_callback_info info) {
  ARGS(3);
  napi_value ext;
  env_t *e;
  CHECK(env, napi_get_instance_data(env, (void **)&e));
  uvg_channel_credentials_t *creds = uvg_insecure_channel_credentials();
  if (argc >= 2 && is_object(env, argv[1])) {
    uvg_tls_channel_options_t o;
    memset(&o, 0, sizeof(o));
    pem_prop(env, argv[1], "roots", &o.root_certs);
    pem_prop(env, argv[1], "cert", &o.cert_chain);
    pem_prop(env, argv[1], "key", &o.private_key);
    napi_value v;
    char *name = NULL;
    napi_valuetype t = napi_undefined;
    if (napi_get_named_property(env, argv[1], "serverName", &v) == napi_ok)
      napi_typeof(env, v, &t);
    if (t == napi_string) name = js_string(env, v, NULL);
    o.server_name_override = name;
    int err = uvg_tls_channel_credentials_new(&o, &creds);
    free(name);
    if (err) return throw_uvg(env, "channelNew", err);
  }
  char *target = js_string(env, argv[0], NULL);
  channel_t *c = target ? obj_alloc(sizeof(*c)) : NULL;
  if (c == NULL) {
    free(target);
    uvg_channel_credentials_release(creds);
    return throw_uvg(env, "channelNew", target ? UVG_ENOMEM : UVG_EINVAL);
  }
  uvg_channel_options_t copts;
  uvg_channel_options_init(&copts);
  if (argc >= 3) copts.call_credentials = unwrap(env, argv[2]);
  int err = uvg_channel_new(e->loop, target, creds, &copts, &c->channel);
  uvg_channel_credentials_release(creds);
  free(target);
  if (err) {
    obj_free(c);
    return throw_uvg(env, "channelNew", err);
  }
  c->e = e;
  c->refs = 2;
  link_insert(&e->channels, &c->link);
  e->live++;
  CHECK(env, napi_create_external(env, c, channel_finalize, NULL, &ext));
  return ext;
}

/* channelClose(channel): calls in flight end CANCELLED. */
static napi_value js_channel_close(napi_env env, napi_callback_info info) {
  ARGS(1);
  channel_t *c = open_channel(env, argv[0]);
  if (c != NULL) {
    c->closing = 1;
    uvg_channel_close(c->channel, channel_closed, c);
  }
  return undefined(env);
}

/* channelState(channel, tryToConnect) -> uvg_connectivity_t (SHUTDOWN once
 * closing) */
static napi_value js_channel_state(napi_env env, napi_callback_info info) {
  ARGS(2);
  channel_t *c = open_channel(env, argv[0]);
  bool connect = false;
  if (argc >= 2) napi_get_value_bool(env, argv[1], &connect);
  if (c == NULL) return int32(env, UVG_STATE_SHUTDOWN);
  return int32(env, (int32_t)uvg_channel_state(c->channel, connect));
}

/* A channelWatch() waiting for the state to change. */
typedef struct {
  env_t *e;
  napi_ref cb;
  napi_async_context ctx;
} watch_t;

static void watch_fired(uvg_channel_t *channel, uvg_connectivity_t state,
                        void *user_data) {
  watch_t *w = user_data;
  napi_env env = w->e->env;
  napi_handle_scope scope;
  (void)channel;
  napi_open_handle_scope(env, &scope);
  if (!w->e->tearing_down) {
    napi_value fn, arg = int32(env, (int32_t)state);
    napi_get_reference_value(env, w->cb, &fn);
    make_callback(env, w->ctx, fn, 1, &arg, NULL);
  }
  napi_delete_reference(env, w->cb);
  napi_async_destroy(env, w->ctx);
  napi_close_handle_scope(env, scope);
  obj_free(w);
}

/* channelWatch(channel, lastSeen, cb) -> 0 or an error: cb(state) once,
 * when the state differs from lastSeen (SHUTDOWN when the channel closes).
 * The watch does not keep the loop alive. */
static napi_value js_channel_watch(napi_env env, napi_callback_info info) {
  ARGS(3);
  napi_value name;
  channel_t *c = open_channel(env, argv[0]);
  if (c == NULL) return int32(env, UVG_ECLOSED);
  int32_t last = 0;
  napi_get_value_int32(env, argv[1], &last);
  watch_t *w = obj_alloc(sizeof(*w));
  if (w == NULL) return int32(env, UVG_ENOMEM);
  w->e = c->e;
  int err = uvg_channel_watch_state(c->channel, (uvg_connectivity_t)last,
                                    watch_fired, w);
  if (err) {
    obj_free(w);
    return int32(env, err);
  }
  napi_create_reference(env, argv[2], 1, &w->cb);
  napi_create_string_utf8(env, "uvgrpc.Channel.watch", NAPI_AUTO_LENGTH, &name);
  async_init(env, name, &w->ctx);
  return int32(env, 0);
}

/* Client call events: metadata(md), messages(batch, reading),
 * status(code, message, details, trailers, peer). */
enum { CLI_METADATA, CLI_MESSAGES, CLI_STATUS };

/* Bytes a batch grows to before it is handed over, messages in memory or
 * not: a batch is one Buffer, and this bounds its copy. */
#define BATCH_MAX (64 * 1024)

static int batch_add(call_t *c, const uint8_t *msg, size_t len) {
  size_t need = c->batch_len + 4 + len;
  if (len > UINT32_MAX) return UVG_E2BIG;
  if (need > c->batch_cap) {
    size_t cap = c->batch_cap ? c->batch_cap : 256;
    while (cap < need) cap *= 2;
    uint8_t *b = realloc(c->batch, cap);
    if (b == NULL) return UVG_ENOMEM;
    c->batch = b;
    c->batch_cap = cap;
  }
  uint8_t *p = c->batch + c->batch_len;
  p[0] = (uint8_t)len;
  p[1] = (uint8_t)(len >> 8);
  p[2] = (uint8_t)(len >> 16);
  p[3] = (uint8_t)(len >> 24);
  memcpy(p + 4, msg, len);
  c->batch_len = need;
  return 0;
}

/* Hands the batch to JavaScript with whether a read is still pending (the
 * stream's credit lasts); a scope is open. */
static void batch_flush(call_t *c) {
  napi_env env = c->e->env;
  napi_value a[2];
  if (c->batch_len == 0) return;
  napi_create_buffer_copy(env, c->batch_len, c->batch, NULL, &a[0]);
  c->batch_len = 0;
  if (c->batch_cap > 2 * BATCH_MAX) { /* a large message: not kept for life */
    free(c->batch);
    c->batch = NULL;
    c->batch_cap = 0;
  }
  napi_get_boolean(env, c->reading, &a[1]);
  call_event(c, CLI_MESSAGES, 2, a);
}

static void cli_on_metadata(uvg_client_call_t *call, const uvg_metadata_t *md,
                            size_t n, void *user_data) {
  call_t *c = user_data;
  napi_env env = c->e->env;
  napi_handle_scope scope;
  (void)call;
  napi_open_handle_scope(env, &scope);
  napi_value a = md_to_js(env, md, n);
  call_event(c, CLI_METADATA, 1, &a);
  napi_close_handle_scope(env, scope);
}

/* One JavaScript callback per run of messages: while the stream wants more
 * and the next one is already in memory, it is read at once (the library
 * delivers it when this returns) and only added to the batch. */
static void cli_on_message(uvg_client_call_t *call, const uint8_t *msg,
                           size_t len, void *user_data) {
  call_t *c = user_data;
  c->reading = 0;
  if (batch_add(c, msg, len) != 0) {
    c->lost = 1;
    uvg_client_call_cancel(call); /* on_status follows */
    return;
  }
  if (c->credit > 0) c->credit--;
  if (c->credit > 0) {
    c->reading = uvg_client_call_read(call) == 0;
    if (c->batch_len < BATCH_MAX && uvg_client_call_message_ready(call)) return;
  }
  napi_env env = c->e->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  batch_flush(c);
  napi_close_handle_scope(env, scope);
}

static void cli_on_status(uvg_client_call_t *call, const uvg_status_t *status,
                          const uvg_metadata_t *trailers, size_t n,
                          void *user_data) {
  call_t *c = user_data;
  napi_env env = c->e->env;
  napi_handle_scope scope;
  napi_value a[5];
  napi_open_handle_scope(env, &scope);
  c->reading = 0;
  batch_flush(c); /* a status of the library's own can cut a run short */
  uvg_status_t cancelled = {UVG_STATUS_CANCELLED, "Cancelled on client", NULL, 0};
  if (c->lost) {
    status = &cancelled;
    n = 0;
  }
  if (!c->e->tearing_down) {
    a[0] = int32(env, (int32_t)status->code);
    napi_create_string_utf8(env, status->message ? status->message : "",
                            NAPI_AUTO_LENGTH, &a[1]);
    if (status->details != NULL)
      napi_create_buffer_copy(env, status->details_len, status->details, NULL,
                              &a[2]);
    else
      a[2] = undefined(env);
    a[3] = md_to_js(env, trailers, n);
    napi_create_string_utf8(env, uvg_client_call_peer(call), NAPI_AUTO_LENGTH,
                            &a[4]);
  }
  call_ended(c, CLI_STATUS, 5, a);
  napi_close_handle_scope(env, scope);
}

static const uvg_client_call_cbs_t client_cbs = {
    .on_metadata = cli_on_metadata,
    .on_message = cli_on_message,
    .on_status = cli_on_status,
};

/* clientCallStart(channel, method, md, timeoutMs, ev[, callCreds]) -> call;
 * ev(kind, ...) with the CLI_* events above, the status exactly once and
 * last; callCreds: this call's own call credentials. */
static napi_value js_client_call_start(napi_env env, napi_callback_info info) {
  ARGS(6);
  napi_value ext;
  channel_t *ch = open_channel(env, argv[0]);
  if (ch == NULL) return throw_uvg(env, "start", UVG_ECLOSED);
  char *method = js_string(env, argv[1], NULL);
  if (method == NULL) return throw_uvg(env, "start", UVG_EINVAL);
  md_arg_t md;
  if (md_from_js(env, argv[2], &md)) {
    free(method);
    return NULL;
  }
  double timeout = 0;
  napi_get_value_double(env, argv[3], &timeout);
  uvg_client_call_options_t opts = {
      .timeout_ms = timeout > 0 ? (uint64_t)timeout : 0,
      .metadata = md.md,
      .nmetadata = md.n,
      .call_credentials = argc >= 6 ? unwrap(env, argv[5]) : NULL,
  };
  call_t *c = obj_alloc(sizeof(*c));
  if (c == NULL) {
    md_arg_free(&md);
    free(method);
    return throw_uvg(env, "start", UVG_ENOMEM);
  }
  call_init(c, ch->e, 1, "uvgrpc.ClientCall");
  napi_create_reference(env, argv[4], 1, &c->ev);
  uvg_client_call_t *call = NULL;
  int err =
      uvg_client_call_start(ch->channel, method, &opts, &client_cbs, c, &call);
  md_arg_free(&md);
  free(method);
  if (err) {
    napi_delete_reference(env, c->ev);
    jsctx_release(&c->js);
    obj_free(c);
    return throw_uvg(env, "start", err);
  }
  c->call = call;
  CHECK(env, napi_create_external(env, c, call_finalize, NULL, &ext));
  return ext;
}

/* clientCallRead(call[, n]): the stream wants up to n (1) more messages;
 * they come in CLI_MESSAGES batches, the last with reading false. */
static napi_value js_client_call_read(napi_env env, napi_callback_info info) {
  ARGS(2);
  call_t *c = call_arg(env, argv[0]);
  if (c == NULL || !c->client) return int32(env, UVG_ECANCELED);
  uint32_t n = 1;
  if (argc >= 2) napi_get_value_uint32(env, argv[1], &n);
  c->credit = n > 0 ? n : 1;
  if (c->reading) return int32(env, 0);
  int err = uvg_client_call_read(c->call);
  c->reading = err == 0;
  return int32(env, err);
}

#define CLIENT_CALL_OP(js_name, fn)                                  \
  static napi_value js_name(napi_env env, napi_callback_info info) { \
    ARGS(1);                                                         \
    call_t *c = call_arg(env, argv[0]);                              \
    if (c == NULL || !c->client) return int32(env, UVG_ECANCELED);   \
    return int32(env, fn(c->call));                                  \
  }

CLIENT_CALL_OP(js_client_call_half_close, uvg_client_call_half_close)
CLIENT_CALL_OP(js_client_call_cancel, uvg_client_call_cancel)

/* liveObjects() -> the number of the addon's structs alive in the process:
 * environments, servers, channels, calls and pending sends. */
static napi_value js_live_objects(napi_env env, napi_callback_info info) {
  napi_value r;
  (void)info;
  napi_create_double(env, (double)live_objects, &r);
  return r;
}

/* ---- module ------------------------------------------------------------ */

NAPI_MODULE_INIT() {
  env_t *e = obj_alloc(sizeof(*e));
  if (e == NULL) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  e->env = env;
  link_init(&e->servers);
  link_init(&e->channels);
  link_init(&e->mdreqs);
  if (napi_get_uv_event_loop(env, &e->loop) != napi_ok ||
      napi_set_instance_data(env, e, obj_finalize, NULL) != napi_ok) {
    obj_free(e);
    throw_last(env, "init");
    return NULL;
  }
  CHECK(env,
        napi_add_async_cleanup_hook(env, env_cleanup_hook, e, &e->cleanup));

  static const struct {
    const char *name;
    napi_callback fn;
  } fns[] = {
      {"serverNew", js_server_new},
      {"serverRegister", js_server_register},
      {"serverListen", js_server_listen},
      {"serverClose", js_server_close},
      {"callSendHeaders", js_call_send_headers},
      {"callSend", js_call_send},
      {"callPauseReading", js_call_pause_reading},
      {"callPeer", js_call_peer},
      {"callFinish", js_call_finish},
      {"channelNew", js_channel_new},
      {"channelClose", js_channel_close},
      {"channelState", js_channel_state},
      {"channelWatch", js_channel_watch},
      {"clientCallStart", js_client_call_start},
      {"clientCallHalfClose", js_client_call_half_close},
      {"clientCallRead", js_client_call_read},
      {"clientCallCancel", js_client_call_cancel},
      {"callCredsNew", js_call_creds_new},
      {"metadataRequestDone", js_metadata_request_done},
      {"liveObjects", js_live_objects},
  };
  for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
    napi_value f;
    CHECK(env, napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH,
                                    fns[i].fn, NULL, &f));
    CHECK(env, napi_set_named_property(env, exports, fns[i].name, f));
  }
  return exports;
}

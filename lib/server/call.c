/*
 * A server call: one RPC on one HTTP/2 stream.
 *
 * Transport events arrive inside nghttp2's callbacks; everything the
 * application sees is posted to the server's work queue instead (grpc-go's
 * serverHandlerTransport.do), so a handler never runs inside nghttp2 and
 * callbacks of one call keep their order. Every notification travels on a
 * work node embedded in the call or in the message it carries, so none can
 * be lost for want of memory and none has to run re-entrantly instead.
 * `pending` counts the closures still queued for a call; the call is
 * released (on_done, then freed) only when its stream is closed and its
 * fate known (the status reached the socket, or the client reset, or the
 * connection died), its messages have left, nothing is pending and the
 * handler has finished it.
 */
#include <stdio.h>
#include <string.h>

#include "server.h"

#define CALL_POOL_MAX 256

struct uvg_call_s {
  uvg__tstream_t ts; /* first: the transport's stream */
  uvg_server_t *server;
  const uvg__method_entry_t *method;
  uvg__auth_t *auth; /* the connection's TLS view (a reference), or NULL */
  char *peer; /* the connection's peer (arena), for uvg_call_peer() */
  uvg__list_t pool_link;
  char *path;
  uvg__md_list_t md;
  uvg__deframer_t deframer;
  uvg__timer_t deadline;
  uint64_t deadline_at; /* uv_now() ms; valid when has_deadline */
  uint8_t *req;         /* the request of a unary or server-streaming call */
  uint8_t req_on_heap;  /* too large for the arena: freed after on_call */
  uint32_t req_len, req_count;
  unsigned msgs_out; /* messages queued on the transport */
  unsigned pending;  /* closures queued for this call */
  /* streaming requests: messages (and the half-close) wait here until the
   * handler takes them; nothing is given back to flow control meanwhile */
  uvg__list_t inbox;
  uint8_t half_close_due, read_paused;
  uvg__work_t w_call, w_deliver, w_cancel, w_release;
  /* request headers as parsed */
  uint8_t is_post, ct_ok, timeout_bad, md_bad, has_deadline;
  char *bad_encoding;    /* a grpc-encoding we lack */
  uint8_t recv_enc;      /* grpc-encoding of the request */
  uint8_t send_enc;      /* uvg_call_set_compression */
  unsigned accept_mask;  /* the client's grpc-accept-encoding; 0: none sent */
  uint8_t req_compressed, cur_compressed;
  uint8_t headers_too_big;
  size_t header_bytes;   /* RFC 9113 6.5.2 size of the request headers */
  uint32_t max_send;
  /* progress */
  uint8_t started;       /* on_call is queued or has run */
  uint8_t app_seen;      /* on_call ran: the handler owns the call */
  uint8_t headers_sent;
  uint8_t sent_one;
  uint8_t ended;         /* the status is queued or the stream is gone */
  uint8_t finished;      /* the handler called uvg_call_finish */
  uint8_t cancelled;
  uint8_t deadline_passed;
  uint8_t ts_closed;
  uint8_t release_posted;
  uint8_t intercepted; /* interceptors [0, intercepted) saw on_start ok */
  uvg_status_code_t final_code;
  char *final_msg;
  uint8_t *final_details; /* grpc-status-details-bin as sent, or NULL */
  size_t final_details_len;
  void *user_data;
  /* decoded protobuf messages (lib/pb); kept with the call in the pool */
  uvg__arena_t arena, msg_arena;
};

typedef struct {
  uvg__list_t link; /* in call->inbox */
  uint8_t *data;
  uint32_t len;
  int compressed;
  uint8_t bytes[]; /* data points here, or to a buffer the record owns */
} recv_msg_t;

static void free_msg(recv_msg_t *r) {
  if (r->data != r->bytes) uvg__free(r->data);
  uvg__free(r);
}

typedef struct {
  uvg__msg_t m;
  uvg__work_t w;
  uvg_call_t *call;
  uvg_send_cb cb;
  void *user_data;
  int status;
  uint8_t bytes[]; /* the copy, when the caller gave no callback */
} send_msg_t;

static void maybe_release(uvg_call_t *c);
static void run_on_cancel(void *arg, int status);

static uvg_call_t *call_of(uvg__tstream_t *ts) {
  return uvg__container_of(ts, uvg_call_t, ts);
}

/* Cannot fail: the node is the caller's and the server's queue closes only
 * after its last call is freed. */
static void post(uvg_call_t *c, uvg__work_t *w, uvg__work_fn fn, void *arg) {
  if (uvg__workq_post_node(&c->server->q, w, fn, arg) == 0) c->pending++;
}

/* Tells a handler that holds the call that it was cancelled, once. */
static void cancel_handler(uvg_call_t *c) {
  if (!c->started || c->finished || c->cancelled) return;
  c->cancelled = 1;
  post(c, &c->w_cancel, run_on_cancel, c);
}

static void set_final(uvg_call_t *c, uvg_status_code_t code, const char *msg) {
  uvg__free(c->final_msg);
  uvg__free(c->final_details);
  c->final_details = NULL;
  c->final_details_len = 0;
  c->final_code = code;
  /* an empty message is the common case (OK): nothing to copy */
  c->final_msg = msg && *msg ? uvg__strdup(msg) : NULL;
}

/* The final status as the client sees it, for on_cancel and on_done. */
static uvg_status_t final_status(const uvg_call_t *c) {
  uvg_status_t st = {c->final_code, c->final_msg ? c->final_msg : "",
                     c->final_details, c->final_details_len};
  return st;
}

/* ---- sending headers and status ---- */

static int respond_headers(uvg_call_t *c, const uvg__md_list_t *md) {
  const char *enc = uvg__encoding_name(c->send_enc);
  nghttp2_nv fixed[] = {
      UVG__NV(":status", "200", 3),
      UVG__NV("content-type", "application/grpc", 16),
      UVG__NV("grpc-accept-encoding", UVG__ACCEPT_ENCODING,
              sizeof(UVG__ACCEPT_ENCODING) - 1),
      UVG__NV("grpc-encoding", enc, strlen(enc)),
  };
  uvg__nv_block_t b;
  int rc = uvg__nv_build(&b, fixed, c->send_enc ? 4 : 3, md);
  if (rc == 0) {
    rc = uvg__ts_respond(&c->ts, b.nv, b.n, 0);
    uvg__nv_free(&b);
  }
  if (rc == 0) c->headers_sent = 1;
  return rc;
}

/* Queues the status: trailers after the messages, or a trailers-only
 * response (with `http_status`) when nothing was sent yet. */
static int send_status(uvg_call_t *c, const char *http_status,
                       uvg_status_code_t code, const char *message,
                       const uvg__md_list_t *trailers, int accept_encoding) {
  char code_buf[4];
  int n = snprintf(code_buf, sizeof(code_buf), "%d", (int)code);
  char *enc = message && *message ? uvg__percent_encode(message, strlen(message))
                                   : NULL;
  nghttp2_nv fixed[6];
  size_t nf = 0;
  c->ended = 1;
  if (!c->headers_sent) {
    fixed[nf++] = (nghttp2_nv)UVG__NV(":status", http_status, strlen(http_status));
    fixed[nf++] = (nghttp2_nv)UVG__NV("content-type", "application/grpc", 16);
  }
  fixed[nf++] = (nghttp2_nv)UVG__NV("grpc-status", code_buf, (size_t)n);
  if (enc != NULL) fixed[nf++] = (nghttp2_nv)UVG__NV("grpc-message", enc, strlen(enc));
  if (accept_encoding)
    fixed[nf++] = (nghttp2_nv)UVG__NV("grpc-accept-encoding", UVG__ACCEPT_ENCODING,
                                      sizeof(UVG__ACCEPT_ENCODING) - 1);
  uvg__nv_block_t b;
  int rc = uvg__nv_build(&b, fixed, nf, trailers);
  if (rc == 0) {
    rc = c->headers_sent ? uvg__ts_end(&c->ts, b.nv, b.n)
                         : uvg__ts_respond(&c->ts, b.nv, b.n, 1);
    uvg__nv_free(&b);
  }
  uvg__free(enc);
  if (rc == 0) c->headers_sent = 1;
  if (rc == UVG_ENOMEM) uvg__ts_reset(&c->ts, NGHTTP2_INTERNAL_ERROR);
  return rc;
}

/* ---- application notifications (run from the server's queue) ---- */

#define EACH_INTERCEPTOR(c, i, fn) \
  for (unsigned i = 0; i < (c)->intercepted; i++) \
    if ((c)->server->interceptors[i].ic.fn != NULL)

static void intercept_recv(uvg_call_t *c, const uint8_t *msg, size_t len) {
  EACH_INTERCEPTOR(c, i, on_recv_message)
  c->server->interceptors[i].ic.on_recv_message(c, msg, len,
                                                c->server->interceptors[i].data);
}

/* Runs the chain's on_start; returns 0 if the call may go on, else ends it
 * with the status an interceptor chose. */
static int intercept_start(uvg_call_t *c) {
  uvg_server_t *s = c->server;
  for (unsigned i = 0; i < s->ninterceptors; i++) {
    uvg_status_t reject = {UVG_STATUS_OK, NULL, NULL, 0};
    if (s->interceptors[i].ic.on_start != NULL &&
        s->interceptors[i].ic.on_start(c, s->interceptors[i].data, &reject) != 0) {
      if (reject.code == UVG_STATUS_OK || (unsigned)reject.code > 16)
        reject.code = UVG_STATUS_UNKNOWN;
      set_final(c, reject.code, reject.message);
      send_status(c, "200", reject.code, c->final_msg, NULL, 0);
      return -1;
    }
    c->intercepted = (uint8_t)(i + 1);
  }
  return 0;
}

static void free_request(uvg_call_t *c) {
  if (c->req_on_heap) uvg__free(c->req);
  c->req_on_heap = 0;
  c->req = NULL; /* else in the arena */
}

static void run_on_call(void *arg, int status) {
  uvg_call_t *c = arg;
  c->pending--;
  if (status == 0 && !c->cancelled && !c->ended && intercept_start(c) == 0) {
    c->app_seen = 1;
    if (c->req != NULL || c->req_count > 0) intercept_recv(c, c->req, c->req_len);
    c->cur_compressed = c->req_compressed;
    UVG__TRACE(UVG__TRACE_CALL, "call %s started", c->path);
    c->method->m.on_call(c, c->req, c->req_len);
  }
  free_request(c);
  maybe_release(c);
}

static void free_inbox(uvg_call_t *c) {
  while (!uvg__list_empty(&c->inbox)) {
    recv_msg_t *r = uvg__container_of(c->inbox.next, recv_msg_t, link);
    uvg__list_remove(&r->link);
    free_msg(r);
  }
}

/* Received bytes go back to flow control only while the handler has taken
 * every message that arrived and has not paused reading. */
static void maybe_consume(uvg_call_t *c) {
  if (uvg__list_empty(&c->inbox) && !c->read_paused) uvg__ts_consume(&c->ts);
}

static void run_deliver(void *arg, int status);

static void schedule_deliver(uvg_call_t *c) {
  if (!c->read_paused && (!uvg__list_empty(&c->inbox) || c->half_close_due) &&
      !uvg__work_queued(&c->w_deliver))
    post(c, &c->w_deliver, run_deliver, c);
}

/* Hands the handler what arrived, in order, until it pauses: the
 * messages, then the half-close. */
static void run_deliver(void *arg, int status) {
  uvg_call_t *c = arg;
  c->pending--;
  while (status == 0 && !c->read_paused && c->app_seen && !c->finished &&
         !c->cancelled) {
    if (!uvg__list_empty(&c->inbox)) {
      recv_msg_t *r = uvg__container_of(c->inbox.next, recv_msg_t, link);
      uvg__list_remove(&r->link);
      intercept_recv(c, r->data, r->len);
      c->cur_compressed = (uint8_t)r->compressed;
      c->method->m.on_message(c, r->data, r->len);
      free_msg(r);
    } else if (c->half_close_due) {
      c->half_close_due = 0;
      c->method->m.on_half_close(c);
    } else {
      break;
    }
  }
  if (c->finished || c->cancelled || status != 0) free_inbox(c);
  maybe_consume(c);
  maybe_release(c);
}

static void run_on_cancel(void *arg, int status) {
  uvg_call_t *c = arg;
  c->pending--;
  if (status == 0 && c->app_seen && !c->finished &&
      c->method->m.on_cancel != NULL) {
    uvg_status_t st = final_status(c);
    c->method->m.on_cancel(c, &st);
  }
  maybe_release(c);
}

static void run_send_cb(void *arg, int status) {
  send_msg_t *sm = arg;
  uvg_call_t *c = sm->call;
  c->pending--;
  (void)status;
  sm->cb(c, sm->status, sm->user_data);
  uvg__pool_free(&c->server->sched->mem, sm);
  maybe_release(c);
}

/* Ends the call from the library's side: the client gets `code`, and a
 * handler that already has the call learns it through on_cancel. */
static void fail_call(uvg_call_t *c, uvg_status_code_t code, const char *msg) {
  if (c->ended || c->finished) return;
  UVG__TRACE(UVG__TRACE_CALL, "call %s failed: %s %s", c->path ? c->path : "?",
             uvg_status_code_name(code), msg);
  send_status(c, "200", code, msg, NULL, 0);
  set_final(c, code, msg);
  cancel_handler(c);
}

/* The deadline stays armed until the stream is gone: a status queued
 * behind messages the client does not read would otherwise pin the call,
 * its messages and the application's buffers until the connection dies. */
static void on_deadline(uvg__timer_t *t) {
  uvg_call_t *c = uvg__container_of(t, uvg_call_t, deadline);
  c->deadline_passed = 1;
  if (!c->ended) fail_call(c, UVG_STATUS_DEADLINE_EXCEEDED, "Deadline Exceeded");
  if (uvg__ts_has_queued(&c->ts)) {
    set_final(c, UVG_STATUS_DEADLINE_EXCEEDED, "Deadline Exceeded");
    uvg__ts_reset(&c->ts, NGHTTP2_CANCEL);
  }
}

/* ---- release ---- */

static void free_call(uvg_call_t *c) {
  uvg_server_t *s = c->server;
  free_inbox(c);
  free_request(c); /* a call that ended before its on_call */
  uvg__md_list_free(&c->md);
  uvg__deframer_free(&c->deframer);
  uvg__free(c->final_msg);
  uvg__free(c->final_details);
  uvg__free(c->bad_encoding);
  uvg__arena_reset(&c->arena);
  uvg__arena_reset(&c->msg_arena);
  uvg__auth_unref(c->auth);
  s->stats.calls_open--;
  if (s->call_pool_n < CALL_POOL_MAX && !s->closing) {
    uvg__list_push(&s->call_pool, &c->pool_link);
    s->call_pool_n++;
  } else {
    uvg__arena_free(&c->arena);
    uvg__arena_free(&c->msg_arena);
    uvg__free(c);
  }
  uvg__server_maybe_closed(s);
}

static void run_release(void *arg, int status) {
  uvg_call_t *c = arg;
  (void)status;
  c->pending--;
  uvg_status_t st = final_status(c);
  for (unsigned i = c->intercepted; i-- > 0;)
    if (c->server->interceptors[i].ic.on_done != NULL)
      c->server->interceptors[i].ic.on_done(c, &st, c->server->interceptors[i].data);
  if (c->app_seen) {
    UVG__TRACE(UVG__TRACE_CALL, "call %s done: %s", c->path,
               uvg_status_code_name(c->final_code));
    c->method->m.on_done(c, &st);
  }
  free_call(c);
}

static void maybe_release(uvg_call_t *c) {
  if (c->release_posted || !c->ts_closed || c->msgs_out > 0 || c->pending > 0 ||
      (c->app_seen && !c->finished))
    return;
  c->release_posted = 1;
  /* on_done never runs inside a library function the handler called. */
  post(c, &c->w_release, run_release, c);
}

void uvg__server_call_pool_free(uvg_server_t *s) {
  while (!uvg__list_empty(&s->call_pool)) {
    uvg_call_t *c = uvg__container_of(s->call_pool.next, uvg_call_t, pool_link);
    uvg__list_remove(&c->pool_link);
    uvg__arena_free(&c->arena);
    uvg__arena_free(&c->msg_arena);
    uvg__free(c);
  }
  s->call_pool_n = 0;
}

/* ---- transport events ---- */

static uvg__tstream_t *on_stream_open(uvg__conn_t *conn) {
  uvg_server_t *s = conn->data;
  uvg_call_t *c;
  uvg__arena_t arena, msg_arena;
  if (!uvg__list_empty(&s->call_pool)) {
    c = uvg__container_of(s->call_pool.next, uvg_call_t, pool_link);
    uvg__list_remove(&c->pool_link);
    s->call_pool_n--;
    arena = c->arena; /* their first blocks serve the next call */
    msg_arena = c->msg_arena;
  } else if ((c = uvg__malloc(sizeof(*c))) == NULL) {
    return NULL;
  } else {
    uvg__arena_init(&arena);
    uvg__arena_init(&msg_arena);
  }
  memset(c, 0, sizeof(*c));
  c->arena = arena;
  c->msg_arena = msg_arena;
  uvg__work_init(&c->w_call);
  uvg__work_init(&c->w_deliver);
  uvg__list_init(&c->inbox);
  uvg__work_init(&c->w_cancel);
  uvg__work_init(&c->w_release);
  c->server = s;
  c->auth = uvg__auth_ref(uvg__tls_auth(&conn->io));
  /* copied: the call may outlive its connection */
  size_t peer_len = strlen(conn->peer) + 1;
  if ((c->peer = uvg__arena_alloc(&c->arena, peer_len)) != NULL)
    memcpy(c->peer, conn->peer, peer_len);
  uvg__list_init(&c->pool_link);
  /* received metadata in the arena too: freed with it, at once */
  uvg__md_list_init_arena(&c->md, &c->arena);
  uvg__deframer_init(&c->deframer, s->opts.max_receive_message_size);
  uvg__timer_init(s->sched, &c->deadline);
  s->stats.calls_started++;
  s->stats.calls_open++;
  return &c->ts;
}

static int header_is(const uint8_t *name, size_t len, const char *lit) {
  return strlen(lit) == len && memcmp(name, lit, len) == 0;
}

static int on_header(uvg__tstream_t *ts, uvg__hblock_t kind,
                     const uint8_t *name, size_t nlen, const uint8_t *value,
                     size_t vlen) {
  uvg_call_t *c = call_of(ts);
  (void)kind; /* always a request's */
  /* Past the advertised SETTINGS_MAX_HEADER_LIST_SIZE nothing more is kept;
   * the call is answered RESOURCE_EXHAUSTED when the block ends. */
  c->header_bytes += nlen + vlen + 32;
  if (c->header_bytes > c->server->opts.max_header_list_size) {
    c->headers_too_big = 1;
    return 0;
  }
  if (header_is(name, nlen, ":method")) {
    c->is_post = vlen == 4 && memcmp(value, "POST", 4) == 0;
  } else if (header_is(name, nlen, ":path")) {
    /* in the arena, as the request: nothing allocated per call */
    if ((c->path = uvg__arena_strndup(&c->arena, (const char *)value, vlen)) ==
        NULL)
      return -1;
  } else if (nlen > 0 && name[0] == ':') {
    /* :authority and :scheme: nghttp2 has checked them */
  } else if (header_is(name, nlen, "content-type")) {
    /* "application/grpc" [("+proto" / "+json" / {custom})] */
    c->ct_ok = vlen >= 16 && memcmp(value, "application/grpc", 16) == 0 &&
               (vlen == 16 || value[16] == '+' || value[16] == ';');
  } else if (header_is(name, nlen, "grpc-timeout")) {
    uint64_t ms;
    if (uvg__timeout_parse((const char *)value, vlen, &ms) != 0) {
      c->timeout_bad = 1;
    } else {
      c->has_deadline = 1;
      c->deadline_at = uv_now(c->server->loop) + ms;
    }
  } else if (header_is(name, nlen, "grpc-encoding")) {
    int enc = uvg__encoding_parse((const char *)value, vlen);
    if (enc < 0) {
      uvg__free(c->bad_encoding);
      c->bad_encoding = uvg__strndup((const char *)value, vlen);
    } else {
      c->recv_enc = (uint8_t)enc;
    }
  } else if (header_is(name, nlen, "grpc-accept-encoding")) {
    /* several fields of one name make one comma-separated list */
    c->accept_mask |= uvg__accept_encoding_parse((const char *)value, vlen);
  } else if (header_is(name, nlen, "te") ||
             header_is(name, nlen, "content-length") ||
             (nlen > 5 && memcmp(name, "grpc-", 5) == 0 &&
              /* gRFC A6: which attempt this is, for the handler (grpc-go
               * shows it too) */
              !header_is(name, nlen, "grpc-previous-rpc-attempts"))) {
    /* protocol headers, not metadata; content-length is HTTP's framing,
     * which nghttp2 checks against the DATA received */
  } else {
    int rc = uvg__md_list_add_wire(&c->md, (const char *)name, nlen, value, vlen);
    if (rc == UVG_ENOMEM) return -1;
    if (rc != 0) c->md_bad = 1;
  }
  return 0;
}

static void reject(uvg_call_t *c, const char *http_status,
                   uvg_status_code_t code, const char *msg, int accept_enc) {
  UVG__TRACE(UVG__TRACE_CALL, "rejecting %s: %s", c->path ? c->path : "?", msg);
  set_final(c, code, msg);
  send_status(c, http_status, code, msg, NULL, accept_enc);
}

static void on_headers(uvg__tstream_t *ts, uvg__hblock_t kind, int end_stream) {
  uvg_call_t *c = call_of(ts);
  (void)kind;
  uvg_server_t *s = c->server;
  char msg[256];
  (void)end_stream;
  if (c->headers_too_big) {
    snprintf(msg, sizeof(msg), "header list size %zu exceeds the limit %u",
             c->header_bytes, s->opts.max_header_list_size);
    reject(c, "200", UVG_STATUS_RESOURCE_EXHAUSTED, msg, 0);
    return;
  }
  if (!c->is_post) {
    reject(c, "405", UVG_STATUS_INTERNAL, "gRPC requires method POST", 0);
    return;
  }
  /* PROTOCOL-HTTP2.md: servers SHOULD answer a content-type that is not
   * application/grpc with HTTP 415, so that non-gRPC clients see an error. */
  if (!c->ct_ok) {
    reject(c, "415", UVG_STATUS_INTERNAL, "invalid gRPC request content-type", 0);
    return;
  }
  if (c->timeout_bad) {
    reject(c, "200", UVG_STATUS_INTERNAL, "malformed grpc-timeout", 0);
    return;
  }
  if (c->md_bad) {
    reject(c, "200", UVG_STATUS_INTERNAL, "malformed binary metadata", 0);
    return;
  }
  size_t len = strlen(c->path);
  c->method = uvg__server_find(s, c->path, len);
  if (c->method == NULL) {
    const char *slash = len > 1 ? strchr(c->path + 1, '/') : NULL;
    if (slash != NULL &&
        uvg__server_has_service(s, c->path, (size_t)(slash - c->path)))
      snprintf(msg, sizeof(msg), "unknown method %s for service %.*s", slash + 1,
               (int)(slash - c->path - 1), c->path + 1);
    else
      snprintf(msg, sizeof(msg), "unknown service %.*s",
               slash ? (int)(slash - c->path - 1) : (int)len - 1,
               c->path + (len > 0));
    reject(c, "200", UVG_STATUS_UNIMPLEMENTED, msg, 0);
    return;
  }
  if (c->bad_encoding != NULL) {
    snprintf(msg, sizeof(msg), "grpc: Decompressor is not installed for "
             "grpc-encoding \"%s\"", c->bad_encoding);
    reject(c, "200", UVG_STATUS_UNIMPLEMENTED, msg, 1);
    return;
  }
  const uvg_method_t *m = &c->method->m;
  c->deframer.max_len = m->max_receive_message_size ? m->max_receive_message_size
                                                     : s->opts.max_receive_message_size;
  c->max_send = m->max_send_message_size ? m->max_send_message_size
                                         : s->opts.max_send_message_size;
  if (c->has_deadline) {
    uint64_t now = uv_now(s->loop);
    uvg__timer_start(&c->deadline, on_deadline,
                     c->deadline_at > now ? c->deadline_at - now : 0);
  }
  uvg_method_type_t t = c->method->m.type;
  if (t == UVG_METHOD_CLIENT_STREAMING || t == UVG_METHOD_BIDI_STREAMING) {
    c->started = 1;
    post(c, &c->w_call, run_on_call, c);
  }
}

/* Decompresses a message into *out (the caller frees it); fails the call
 * and returns nonzero on error. */
static int decompress(uvg_call_t *c, const uint8_t *msg, uint32_t len,
                      uint8_t **out, uint32_t *out_len) {
  char text[128];
  if (c->recv_enc == UVG_COMPRESS_NONE) {
    /* PROTOCOL-HTTP2.md: the flag without an encoding is a protocol error */
    fail_call(c, UVG_STATUS_INTERNAL,
              "grpc: compressed flag set with identity or empty grpc-encoding");
    return UVG_EPROTO;
  }
  size_t n;
  size_t max = c->deframer.max_len;
  int rc = uvg__decompress(c->recv_enc, msg, len, max, out, &n);
  if (rc == UVG__E_TOO_LARGE) {
    snprintf(text, sizeof(text),
             "grpc: received message after decompression larger than max %zu", max);
    fail_call(c, UVG_STATUS_RESOURCE_EXHAUSTED, text);
  } else if (rc != 0) {
    fail_call(c, UVG_STATUS_INTERNAL, "grpc: failed to decompress the received message");
  }
  if (rc == 0) *out_len = (uint32_t)n;
  return rc;
}

/* Keeps a message that is only lent: a unary request in the call's arena
 * (whose first block a pooled call reuses), a streamed one in a record of
 * its own. `*own`, if not NULL, is a heap buffer holding the message (the
 * deframer's, or a decompressed one): a large request or a streamed
 * message keeps it instead of a copy, and *own becomes NULL. Returns 0,
 * UVG_EPROTO (a second request of a unary-request method; the call is
 * failed) or UVG_ENOMEM. */
static int keep_message(uvg_call_t *c, int compressed, const uint8_t *msg,
                        uint32_t len, uint8_t **own) {
  uvg_method_type_t t = c->method->m.type;
  if (t == UVG_METHOD_UNARY || t == UVG_METHOD_SERVER_STREAMING) {
    if (++c->req_count > 1) {
      fail_call(c, UVG_STATUS_UNIMPLEMENTED,
                "grpc: client sent more than one request message on a unary-request method");
      return UVG_EPROTO;
    }
    /* A small request shares the call's arena; a large one must not stay
     * for the life of a call its handler holds (a stream of hours). */
    c->req_on_heap = len > UVG__ARENA_FIRST;
    if (c->req_on_heap && *own != NULL) {
      c->req = *own;
      *own = NULL;
    } else {
      c->req = c->req_on_heap ? uvg__malloc(len) : uvg__arena_alloc(&c->arena, len);
      if (c->req == NULL) return UVG_ENOMEM;
      if (len > 0) memcpy(c->req, msg, len);
    }
    c->req_len = len;
    c->req_compressed = (uint8_t)compressed;
    return 0;
  }
  recv_msg_t *r = uvg__malloc(sizeof(*r) + (*own != NULL ? 0 : len));
  if (r == NULL) return UVG_ENOMEM;
  if (*own != NULL) {
    r->data = *own;
    *own = NULL;
  } else {
    r->data = r->bytes;
    if (len > 0) memcpy(r->bytes, msg, len);
  }
  r->len = len;
  r->compressed = compressed;
  uvg__list_push(&c->inbox, &r->link);
  schedule_deliver(c);
  return 0;
}

static int on_deframed(void *arg, int compressed, const uint8_t *msg,
                       uint32_t len) {
  uvg_call_t *c = arg;
  uint8_t *plain = NULL;
  if (compressed && decompress(c, msg, len, &plain, &len) != 0)
    return UVG_EPROTO;
  uint8_t *own = plain ? plain : uvg__deframer_take(&c->deframer);
  int rc = keep_message(c, compressed, plain ? plain : msg, len, &own);
  uvg__free(own); /* unless kept */
  if (rc == UVG_ENOMEM) fail_call(c, UVG_STATUS_INTERNAL, "out of memory");
  return rc;
}

/* Reading is paced: received bytes are given back to flow control only
 * while no request message waits for the handler, so a handler that is
 * behind holds at most one message and one stream window. */
static void on_data(uvg__tstream_t *ts, const uint8_t *p, size_t n) {
  uvg_call_t *c = call_of(ts);
  char msg[128];
  if (!c->ended && !c->finished && c->method != NULL) {
    int rc = uvg__deframer_feed(&c->deframer, p, n, on_deframed, c);
    if (rc == UVG__E_TOO_LARGE) {
      snprintf(msg, sizeof(msg), "grpc: received message larger than max (%u vs. %u)",
               c->deframer.msg_len, c->deframer.max_len);
      fail_call(c, UVG_STATUS_RESOURCE_EXHAUSTED, msg);
    } else if (rc == UVG_ENOMEM) {
      fail_call(c, UVG_STATUS_INTERNAL, "out of memory");
    }
  }
  maybe_consume(c);
}

static void on_remote_end(uvg__tstream_t *ts) {
  uvg_call_t *c = call_of(ts);
  if (c->ended || c->finished || c->method == NULL) return;
  if (uvg__deframer_partial(&c->deframer)) {
    fail_call(c, UVG_STATUS_INTERNAL, "grpc: stream ended inside a message");
    return;
  }
  uvg_method_type_t t = c->method->m.type;
  if (t == UVG_METHOD_UNARY || t == UVG_METHOD_SERVER_STREAMING) {
    if (c->req_count == 0) {
      fail_call(c, UVG_STATUS_UNIMPLEMENTED,
                "grpc: client sent no request message on a unary-request method");
      return;
    }
    c->started = 1;
    post(c, &c->w_call, run_on_call, c);
  } else {
    c->half_close_due = 1;
    schedule_deliver(c);
  }
}

static void on_stream_close(uvg__tstream_t *ts, uint32_t h2_error) {
  uvg_call_t *c = call_of(ts);
  c->ts_closed = 1;
  uvg__timer_stop(&c->deadline);
  if (h2_error != NGHTTP2_NO_ERROR) {
    /* Our status, if any, never reached the client: it sees the reset,
     * the lost connection, or its own deadline. */
    char text[64];
    if (c->deadline_passed)
      set_final(c, UVG_STATUS_DEADLINE_EXCEEDED, "Deadline Exceeded");
    else if (h2_error == UVG__H2_CONN_CLOSED)
      set_final(c, UVG_STATUS_UNAVAILABLE, "connection closed");
    else if (h2_error == NGHTTP2_CANCEL)
      set_final(c, UVG_STATUS_CANCELLED, "call cancelled by the client");
    else {
      snprintf(text, sizeof(text), "stream reset (%s)",
               nghttp2_http2_strerror(h2_error));
      set_final(c, uvg__status_of_reset(h2_error), text);
    }
    c->ended = 1;
    cancel_handler(c);
  }
  maybe_release(c);
}

static void on_conn_close(uvg__conn_t *conn) {
  uvg_server_t *s = conn->data;
  uvg__list_remove(&conn->link);
  s->stats.connections_open--;
  uvg__free(uvg__container_of(conn, uvg__srvconn_t, c));
  uvg__server_maybe_closed(s);
}

const uvg__conn_cbs_t uvg__server_conn_cbs = {
    .stream_open = on_stream_open,
    .on_header = on_header,
    .on_headers = on_headers,
    .on_data = on_data,
    .on_remote_end = on_remote_end,
    .on_stream_close = on_stream_close,
    .on_close = on_conn_close,
};

/* ---- the public call API ---- */

const char *uvg_call_method(const uvg_call_t *c) { return c->path; }
const uvg__method_entry_t *uvg__call_entry(const uvg_call_t *c) { return c->method; }
uvg__arena_t *uvg__call_arena(uvg_call_t *c) { return &c->arena; }
uvg__arena_t *uvg__call_msg_arena(uvg_call_t *c) { return &c->msg_arena; }
void *uvg_call_method_data(const uvg_call_t *c) { return c->method->m.method_data; }
void uvg_call_set_data(uvg_call_t *c, void *data) { c->user_data = data; }
void *uvg_call_get_data(const uvg_call_t *c) { return c->user_data; }

size_t uvg_call_metadata(const uvg_call_t *c, const uvg_metadata_t **md) {
  *md = c->md.items;
  return c->md.n;
}

const uvg_metadata_t *uvg_call_metadata_get(const uvg_call_t *c, const char *key) {
  return uvg__md_list_get(&c->md, key);
}

int64_t uvg_call_time_remaining(const uvg_call_t *c) {
  if (!c->has_deadline) return -1;
  uint64_t now = uv_now(c->server->loop);
  return c->deadline_at > now ? (int64_t)(c->deadline_at - now) : 0;
}

int uvg_call_is_cancelled(const uvg_call_t *c) { return c->cancelled; }

const uvg_auth_info_t *uvg_call_auth_info(const uvg_call_t *c) {
  return uvg__auth_info(c->auth);
}

const char *uvg_call_peer(const uvg_call_t *c) {
  return c->peer != NULL ? c->peer : "";
}

static int can_send(const uvg_call_t *c) {
  return !c->cancelled && !c->finished && !c->ended && !c->ts_closed;
}

int uvg_call_send_headers(uvg_call_t *c, const uvg_metadata_t *md, size_t n) {
  if (c == NULL || (md == NULL && n > 0)) return UVG_EINVAL;
  if (!can_send(c)) return UVG_ECANCELED;
  if (c->headers_sent) return UVG_ESTATE;
  uvg__md_list_t list;
  uvg__md_list_init(&list);
  int rc = uvg__md_list_add_app(&list, md, n);
  if (rc == 0) rc = respond_headers(c, &list);
  uvg__md_list_free(&list);
  return rc;
}

static void on_msg_done(uvg__msg_t *m, int status) {
  send_msg_t *sm = uvg__container_of(m, send_msg_t, m);
  uvg_call_t *c = sm->call;
  c->msgs_out--;
  if (sm->cb != NULL) {
    /* Reported from the queue: this can run inside nghttp2's callbacks. */
    sm->status = status;
    uvg__work_init(&sm->w);
    post(c, &sm->w, run_send_cb, sm);
    return;
  }
  uvg__pool_free(&c->server->sched->mem, sm);
  maybe_release(c);
}

int uvg_call_send(uvg_call_t *c, const void *data, size_t len, unsigned flags,
                  uvg_send_cb cb, void *user_data) {
  if (c == NULL || (data == NULL && len > 0) || len > UINT32_MAX) return UVG_EINVAL;
  if (!can_send(c)) return UVG_ECANCELED;
  uvg_method_type_t t = c->method->m.type;
  if ((t == UVG_METHOD_UNARY || t == UVG_METHOD_CLIENT_STREAMING) && c->sent_one)
    return UVG_ESTATE;
  if (len > c->max_send) {
    char text[128];
    snprintf(text, sizeof(text), "grpc: trying to send message larger than max (%zu vs. %u)",
             len, c->max_send);
    fail_call(c, UVG_STATUS_RESOURCE_EXHAUSTED, text);
    return UVG_E2BIG;
  }
  EACH_INTERCEPTOR(c, i, on_send_message)
  c->server->interceptors[i].ic.on_send_message(c, data, len,
                                                c->server->interceptors[i].data);
  int enc = flags & UVG_SEND_NO_COMPRESS ? UVG_COMPRESS_NONE : c->send_enc;
  /* from the scheduler's pool: a small reply, copied, costs no malloc */
  uvg__pool_t *pool = &c->server->sched->mem;
  send_msg_t *sm =
      uvg__pool_alloc(pool, sizeof(*sm) + uvg__msg_room(len, enc, cb == NULL));
  if (sm == NULL) return UVG_ENOMEM;
  if (uvg__msg_fill(&sm->m, sm->bytes, data, len, enc, cb == NULL) != 0) {
    uvg__pool_free(pool, sm);
    return UVG_ENOMEM;
  }
  int rc = c->headers_sent ? 0 : respond_headers(c, NULL);
  if (rc != 0) {
    uvg__pool_free(pool, sm);
    return rc == UVG_ECLOSED ? UVG_ECANCELED : rc;
  }
  sm->call = c;
  sm->cb = cb;
  sm->user_data = user_data;
  sm->status = 0;
  sm->m.done = on_msg_done;
  if (uvg__ts_send(&c->ts, &sm->m) != 0) {
    uvg__pool_free(pool, sm);
    return UVG_ECANCELED;
  }
  c->msgs_out++;
  c->sent_one = 1;
  return 0;
}

int uvg_call_set_compression(uvg_call_t *c, uvg_compression_t alg) {
  if (c == NULL || (unsigned)alg > UVG_COMPRESS_DEFLATE) return UVG_EINVAL;
  if (!can_send(c)) return UVG_ECANCELED;
  if (c->headers_sent) return UVG_ESTATE;
  /* doc/compression.md: a server sends uncompressed what "it knows the
   * client doesn't support (as indicated by the last grpc-accept-encoding
   * header received from the client)". Without the header it knows
   * nothing of the kind: grpc-go before 1.5x sends none unless its request
   * is compressed, yet decompresses what it registered, and gRPC's C core
   * compresses regardless of the header. So only a list that leaves the
   * algorithm out refuses it. */
  if (c->accept_mask != 0 && !(c->accept_mask & (1u << alg)))
    return UVG_ENOTSUP;
  c->send_enc = (uint8_t)alg;
  return 0;
}

int uvg_call_message_compressed(const uvg_call_t *c) { return c->cur_compressed; }

int uvg_call_pause_reading(uvg_call_t *c, int paused) {
  if (c == NULL) return UVG_EINVAL;
  c->read_paused = paused != 0;
  if (!c->read_paused) {
    schedule_deliver(c);
    maybe_consume(c);
  }
  return 0;
}

#define DETAILS_KEY "grpc-status-details-bin"

/* The trailers of a finishing call: the application's, then the status's
 * details as grpc-status-details-bin. Returns 0, UVG_EINVAL (a bad key or
 * value, or the details given both ways) or UVG_ENOMEM. */
static int finish_trailers(uvg__md_list_t *list, const uvg_status_t *st,
                           const uvg_metadata_t *trailers, size_t n) {
  if ((trailers == NULL && n > 0) ||
      (st->details == NULL && st->details_len > 0))
    return UVG_EINVAL;
  int rc = uvg__md_list_add_app(list, trailers, n);
  if (rc != 0 || st->details == NULL) return rc;
  if (uvg__md_list_get(list, DETAILS_KEY) != NULL) return UVG_EINVAL;
  return uvg__md_list_add(list, DETAILS_KEY, sizeof(DETAILS_KEY) - 1,
                          st->details, st->details_len);
}

int uvg_call_finish_status(uvg_call_t *c, const uvg_status_t *status,
                           const uvg_metadata_t *trailers, size_t n) {
  if (c == NULL) return UVG_EINVAL;
  if (c->finished) return UVG_ESTATE;
  c->finished = 1;
  int rc = 0;
  if (c->cancelled || c->ended || c->ts_closed) {
    rc = UVG_ECANCELED;
  } else {
    uvg_status_t st = {UVG_STATUS_INTERNAL, NULL, NULL, 0};
    uvg__md_list_t list;
    uvg__md_list_init(&list);
    if (status == NULL || (unsigned)status->code > 16 ||
        finish_trailers(&list, status, trailers, n) != 0) {
      uvg__md_list_free(&list);
      st.message = "server handler returned an invalid status or trailers";
      rc = UVG_EINVAL;
    } else {
      st = *status;
    }
    set_final(c, st.code, st.message);
    /* on_done reports the details the client gets, however they were given */
    const uvg_metadata_t *d = uvg__md_list_get(&list, DETAILS_KEY);
    if (d != NULL) c->final_details = uvg__malloc(d->value_len + 1);
    if (c->final_details != NULL) {
      memcpy(c->final_details, d->value, d->value_len);
      c->final_details_len = d->value_len;
    }
    send_status(c, "200", st.code, st.message, &list, 0);
    uvg__md_list_free(&list);
  }
  maybe_release(c);
  return rc;
}

int uvg_call_finish(uvg_call_t *c, uvg_status_code_t code, const char *message,
                    const uvg_metadata_t *trailers, size_t n) {
  uvg_status_t st = {code, message, NULL, 0};
  return uvg_call_finish_status(c, &st, trailers, n);
}

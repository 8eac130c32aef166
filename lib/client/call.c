/*
 * A client call: one RPC on one HTTP/2 stream of a channel's connection
 * (grpc-go's clientStream over http2Client, grpc-js's Http2SubchannelCall).
 *
 * The call decides its status once (`done`): from the server's trailers,
 * or from the library (cancel, deadline, reset, lost connection, a limit,
 * a malformed response). A status from the server waits until every
 * message before it has been read; one of the library's drops unread
 * messages. on_status is posted only once no send callback can follow, so
 * it is the last callback; the call is freed after it, once its stream is
 * gone. Reading is paced: received bytes are given back to flow control
 * only while no complete message waits for the application.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "channel.h"
#include "retry.h"

/* A message received and not yet read, its bytes inline: one block of the
 * scheduler's pool, so a small reply costs no allocation; or a buffer
 * that arrived in pieces, which the record takes over instead. */
typedef struct {
  uvg__list_t link;
  uint8_t *data; /* bytes, or the buffer it owns */
  uint32_t len;
  uint8_t compressed; /* it arrived compressed */
  uint8_t bytes[];
} recv_msg_t;

typedef struct {
  uvg__msg_t m;
  uvg__work_t w;
  uvg__list_t early; /* in call->early before the stream exists, or in
                      * call->kept once gone, for a transparent retry */
  uvg_client_call_t *call;
  uvg_client_send_cb cb;
  void *user_data;
  int status;
  uint32_t seq;     /* the call's send order */
  uint8_t reserved; /* its bytes count in call->kept_bytes: kept once sent */
  uint8_t in_ts;    /* the transport holds it */
  uint8_t bytes[]; /* the copy, when the caller gave no callback */
} send_msg_t;

struct uvg_client_call_s {
  uvg__tstream_t ts; /* first: the transport's stream */
  uvg_channel_t *ch;
  uvg__list_t link; /* ch->waiting or ch->active */
  uvg__list_t all_link; /* ch->calls, for the call's whole life */
  uvg_client_call_cbs_t cbs;
  void *user_data;
  char *method;
  char *authority;
  uvg__md_list_t md; /* request metadata */
  uvg__timer_t deadline;
  uint64_t deadline_at; /* uv_now() ms; 0: none */
  uint64_t started_at;
  uvg__cconn_t *pinned; /* the library's own call on this connection */
  uint8_t hedge_attempt; /* an attempt of a hedged call */
  uint8_t wait_for_ready;
  uint8_t wfr_chosen;     /* the caller said; the service config does not */
  uint8_t config_applied;
  uvg__service_config_t *sc; /* holds mc */
  const uvg__method_config_t *mc;
  /* gRFC A6 retries: the attempts so far; between two attempts the call
   * waits for the old stream's close and the backoff (retry_timer) */
  uvg__retry_t retry;
  uvg__timer_t retry_timer;
  uint8_t retry_wait, retry_due;
  /* gRFC A6 hedging: the call's attempts are calls of their own (hedge.c
   * part below); the application's call holds them and their request */
  struct hedge_s *hedge;
  uint8_t internal; /* the library's own: no interceptors, no credentials */
  uint8_t send_enc;
  uint32_t max_send;
  /* the response */
  uvg__md_list_t resp_md, trailers;
  uvg__deframer_t deframer;
  uvg__list_t msgs;    /* complete messages the application has not read */
  uint8_t recv_enc;
  uint8_t got_response; /* the (final) response headers arrived */
  uint8_t cur_compressed; /* the message on_message is handing over */
  uint8_t delivering;     /* run_message is handing messages over */
  char *bad_encoding;
  char http_status[4];
  uint8_t ct_grpc;
  int grpc_status; /* -1 until read */
  char *grpc_message;
  uint8_t *details;
  size_t details_len;
  /* the status */
  uvg_status_code_t code;
  char *message;
  uint8_t done;       /* the status is decided */
  uint8_t from_server;
  uint8_t status_posted, status_run;
  /* progress */
  uvg__list_t early; /* sends queued before the stream exists */
  /* Copied messages kept until the response headers arrive, so that a
   * stream the server never processed can be sent again, once (gRPC's
   * transparent retry), or another attempt made (A6). Their bytes are
   * reserved when they are sent, so that one in the socket's write when
   * the attempt fails is sure to come back into `kept`. A zero-copy
   * message, or one past the limits, makes the call not replayable once
   * the transport is done with it; until then `unkept_out` says it will. */
  uvg__list_t kept;
  size_t kept_bytes;
  uint8_t replayable, retried;
  uint8_t attached, ts_closed, half_close_wanted, read_pending;
  unsigned msgs_out;   /* sends not yet done: queued or in the transport */
  unsigned cbs_out;    /* ... of them, those with a send callback */
  unsigned unkept_out; /* ... of them, those that cannot go again */
  unsigned in_ts;      /* ... of them, those the transport holds */
  uint32_t next_seq;
  unsigned pending;  /* closures queued for this call */
  uvg__work_t w_start, w_meta, w_msg, w_status, w_free;
  unsigned nics;       /* interceptors the call was started with */
  unsigned intercepted; /* [0, intercepted) accepted it in on_start */
  /* call credentials: the call's own (a reference), and the requests for
   * the channel's [0] and the call's [1] that await their answer */
  uvg_call_credentials_t *creds;
  uvg_metadata_request_t *reqs[2];
  uvg__md_list_t creds_md[2]; /* their answers, added in this order */
  unsigned creds_waiting;
  uvg__auth_t *auth; /* the TLS view of the connection it went on */
  char peer[64];     /* that connection's peer, "" before it had one */
  uint8_t on_conn;   /* it has had a stream: auth is what it is */
};

/* Where a call's per-call records come from: the scheduler's free lists,
 * which outlive the call (the channel holds the scheduler until its last
 * call is freed). */
static uvg__pool_t *pool_of(const uvg_client_call_t *c) {
  return &c->ch->sched->mem;
}

/* One call's question to one call credential (uvg_get_metadata_cb). */
struct uvg_metadata_request_s {
  uvg_client_call_t *call; /* NULL once the call is freed */
  unsigned slot;           /* in call->reqs */
  char *method_name;       /* after service_url, in this allocation */
  char service_url[];
};

#define EACH_INTERCEPTOR(c, i, n, fn)                              \
  for (unsigned i = 0; i < (n); i++)                                \
    if ((c)->ch->interceptors[i].ic.fn != NULL)
#define IC(c, i) ((c)->ch->interceptors[i])

/* Request bytes kept for a retry: for the transparent one, and (grpc-go's
 * per-call retry buffer) under a retry policy; beyond it the call is
 * committed. */
#define RETRY_KEEP_MAX (64 * 1024)
#define RETRY_POLICY_KEEP_MAX (256 * 1024)
#define STR_(x) #x
#define STR(x) STR_(x)
/* gRPC's user-agent form, "grpc-<language>-<name>/<version>" */
#define USER_AGENT                                                       \
  "grpc-c-uvgrpc/" STR(UVG_VERSION_MAJOR) "." STR(UVG_VERSION_MINOR) "." \
      STR(UVG_VERSION_PATCH)
#define UVG__CLIENT_TIMEOUT_MAX_MS (99999999ull * 3600 * 1000)

static uvg_client_call_t *call_of(uvg__tstream_t *ts) {
  return uvg__container_of(ts, uvg_client_call_t, ts);
}

static void maybe_post_status(uvg_client_call_t *c);
static void maybe_free(uvg_client_call_t *c);
static int retry_configured(uvg_client_call_t *c, uvg_status_code_t code,
                            const uvg_metadata_t *trailers, size_t ntrailers);
static void on_msg_done(uvg__msg_t *m, int status);
static void hedge_cancel_others(uvg_client_call_t *p, uvg_client_call_t *keep);
static int hedge_send(uvg_client_call_t *p, const void *data, size_t len, unsigned flags,
                      uvg_client_send_cb cb, void *user_data);
static int start_call(uvg_channel_t *ch, const char *method,
                      const uvg_client_call_options_t *opts,
                      const uvg_client_call_cbs_t *cbs, void *user_data,
                      uvg__cconn_t *pinned, int internal, uint32_t attempt,
                      uvg_client_call_t **out);

#define HEDGE_MAX 5 /* UVG__MAX_ATTEMPTS_LIMIT */

typedef struct {
  uvg__list_t link;
  size_t len;
  unsigned flags; /* UVG_SEND_NO_COMPRESS */
  uint8_t bytes[];
} hedge_msg_t;

struct hedge_s {
  uvg_client_call_t *call; /* the application's */
  uvg__hedge_t h;
  uvg_client_call_t *attempts[HEDGE_MAX]; /* alive ones; NULL once ended */
  unsigned started;                        /* attempts made so far */
  unsigned alive;
  uvg_client_call_t *winner;
  uvg__timer_t timer; /* the next attempt */
  uvg__list_t msgs;   /* the request, for attempts to come */
  uint8_t half_closed;
  /* the last status of a losing attempt, for when nothing else is left */
  uvg_status_code_t last_code;
  char last_message[160];
};


static void post(uvg_client_call_t *c, uvg__work_t *w, uvg__work_fn fn) {
  if (uvg__workq_post_node(&c->ch->q, w, fn, c) == 0) c->pending++;
}

/* ---- the status ---- */

/* Decides the status once. A status of the library's drops the messages
 * the application has not read; the stream, if any, is reset. */
static void free_msg(uvg_client_call_t *c, recv_msg_t *r) {
  if (r->data != r->bytes) uvg__free(r->data);
  uvg__pool_free(&c->ch->sched->mem, r);
}

static void drop_unread(uvg_client_call_t *c) {
  while (!uvg__list_empty(&c->msgs)) {
    recv_msg_t *r = uvg__container_of(c->msgs.next, recv_msg_t, link);
    uvg__list_remove(&r->link);
    free_msg(c, r);
  }
}

static void end_call(uvg_client_call_t *c, uvg_status_code_t code,
                     const char *msg, int from_server) {
  if (c->done) return;
  c->done = 1;
  c->code = code;
  c->from_server = (uint8_t)from_server;
  /* an empty message is the common case (OK): nothing to copy */
  c->message = msg && *msg ? uvg__strdup(msg) : NULL;
  uvg__timer_stop(&c->deadline);
  uvg__timer_stop(&c->retry_timer);
  int between = c->retry_wait; /* messages may wait for the next attempt */
  c->retry_wait = 0;
  if (c->hedge != NULL) hedge_cancel_others(c, NULL);
  UVG__TRACE(UVG__TRACE_CALL, "client call %s: %s %s", c->method,
             uvg_status_code_name(code), msg ? msg : "");
  if (!from_server) {
    drop_unread(c);
    if (c->attached && !c->ts_closed) uvg__ts_reset(&c->ts, NGHTTP2_CANCEL);
    /* messages that never reached a stream end here */
    while ((!c->attached || between) && !uvg__list_empty(&c->early)) {
      send_msg_t *sm = uvg__container_of(c->early.next, send_msg_t, early);
      uvg__list_remove(&sm->early);
      on_msg_done(&sm->m, UVG_ECANCELED);
    }
  } else if (between) {
    while (!uvg__list_empty(&c->early)) {
      send_msg_t *sm = uvg__container_of(c->early.next, send_msg_t, early);
      uvg__list_remove(&sm->early);
      on_msg_done(&sm->m, UVG_ECANCELED);
    }
  } else if (c->attached && !c->ts_closed && c->ts.conn != NULL &&
             !nghttp2_session_get_stream_local_close(c->ts.conn->h2, c->ts.id)) {
    /* the server has ended the call while we still send: our side ends
     * too (RFC 9113 8.1), or the stream would stay half-open for good */
    uvg__ts_reset(&c->ts, NGHTTP2_NO_ERROR);
  }
  maybe_post_status(c);
}

/* A cancel or a channel close after the server's status, while messages
 * before it wait to be read: the application will not read them. */
static void abandon_with(uvg_client_call_t *c, uvg_status_code_t code,
                         const char *msg) {
  if (!c->done) {
    end_call(c, code, msg, 0);
  } else if (!c->status_posted) {
    drop_unread(c);
    c->from_server = 0;
    c->code = code;
    uvg__free(c->message);
    c->message = msg && *msg ? uvg__strdup(msg) : NULL;
    maybe_post_status(c);
  }
}

static void abandon(uvg_client_call_t *c, const char *msg) {
  abandon_with(c, UVG_STATUS_CANCELLED, msg);
}

static void run_status(void *arg, int status) {
  uvg_client_call_t *c = arg;
  (void)status;
  c->pending--;
  c->status_run = 1;
  uvg_status_t st = {c->code, c->message ? c->message : "",
                     c->from_server ? c->details : NULL,
                     c->from_server ? c->details_len : 0};
  for (unsigned i = c->intercepted; i-- > 0;)
    if (IC(c, i).ic.on_status != NULL) IC(c, i).ic.on_status(c, &st, IC(c, i).data);
  c->cbs.on_status(c, &st, c->trailers.items, c->trailers.n, c->user_data);
  maybe_free(c);
}

/* on_status is the last callback: it waits for the messages before a
 * server's status to be read, and for every send callback to be posted. */
static void maybe_post_status(uvg_client_call_t *c) {
  if (!c->done || c->status_posted || c->cbs_out > 0 ||
      (c->from_server && !uvg__list_empty(&c->msgs)))
    return;
  c->status_posted = 1;
  post(c, &c->w_status, run_status);
}

/* ---- freeing ---- */

static void free_kept(uvg_client_call_t *c) {
  while (!uvg__list_empty(&c->kept)) {
    uvg__list_t *p = c->kept.next;
    uvg__list_remove(p);
    uvg__pool_free(pool_of(c), uvg__container_of(p, send_msg_t, early));
  }
  c->ch->retry_buffered -= c->kept_bytes;
  c->kept_bytes = 0;
  c->replayable = 0;
}

static void hedge_free(uvg_client_call_t *p);

static void free_call(uvg_client_call_t *c) {
  uvg_channel_t *ch = c->ch;
  hedge_free(c);
  /* an answer still to come finds no call and is dropped */
  for (unsigned i = 0; i < 2; i++)
    if (c->reqs[i] != NULL) c->reqs[i]->call = NULL;
  uvg__auth_unref(c->auth);
  uvg_call_credentials_release(c->creds);
  uvg__md_list_free(&c->creds_md[0]);
  uvg__md_list_free(&c->creds_md[1]);
  free_kept(c);
  uvg__list_remove(&c->link);
  uvg__list_remove(&c->all_link);
  uvg__md_list_free(&c->md);
  uvg__md_list_free(&c->resp_md);
  uvg__md_list_free(&c->trailers);
  uvg__deframer_free(&c->deframer);
  if (c->sc != NULL) uvg__service_config_unref(c->sc);
  uvg__pool_free(pool_of(c), c->method);
  uvg__free(c->authority);
  uvg__free(c->bad_encoding);
  uvg__free(c->grpc_message);
  uvg__free(c->details);
  uvg__free(c->message);
  int internal = c->internal;
  uvg__pool_free(pool_of(c), c);
  uvg__channel_call_freed(ch, internal);
}

static void run_free(void *arg, int status) {
  (void)status;
  free_call(arg);
}

static void maybe_free(uvg_client_call_t *c) {
  if (!c->status_run || c->pending > 0 || c->msgs_out > 0 ||
      (c->hedge != NULL && c->hedge->alive > 0) ||
      (c->attached && !c->ts_closed) ||
      uvg__work_queued(&c->w_free))
    return;
  /* after the callback that may be on the stack has returned */
  uvg__workq_post_node(&c->ch->q, &c->w_free, run_free, c);
}

/* ---- reading, paced by the application ---- */

/* Gives received bytes back to flow control while no complete message
 * waits for the application: a call holds at most one window unread. */
static void maybe_consume(uvg_client_call_t *c) {
  if (uvg__list_empty(&c->msgs)) uvg__ts_consume(&c->ts);
}

/* Hands over, in this turn, every message that has arrived for as long as
 * the application keeps reading from on_message (not one per loop turn). */
static void run_message(void *arg, int status) {
  uvg_client_call_t *c = arg;
  (void)status;
  c->pending--;
  c->delivering = 1;
  while (c->read_pending && !uvg__list_empty(&c->msgs) && !c->status_run) {
    recv_msg_t *r = uvg__container_of(c->msgs.next, recv_msg_t, link);
    uvg__list_remove(&r->link);
    c->read_pending = 0; /* on_message may ask for the next one */
    maybe_consume(c);
    c->cur_compressed = r->compressed;
    EACH_INTERCEPTOR(c, i, c->intercepted, on_recv_message)
    IC(c, i).ic.on_recv_message(c, r->data, r->len, IC(c, i).data);
    if (c->cbs.on_message != NULL)
      c->cbs.on_message(c, r->data, r->len, c->user_data);
    free_msg(c, r);
  }
  c->delivering = 0;
  maybe_post_status(c);
  maybe_free(c);
}

static void maybe_deliver(uvg_client_call_t *c) {
  if (c->read_pending && !uvg__list_empty(&c->msgs) &&
      !uvg__work_queued(&c->w_msg))
    post(c, &c->w_msg, run_message);
}

/* Queues a received message for the application: `*own`, if not NULL, is
 * a heap buffer holding it (the deframer's, or a decompressed one), kept
 * instead of a copy (*own becomes NULL). Returns 0 or UVG_ENOMEM. */
static int queue_message(uvg_client_call_t *c, int compressed,
                         const uint8_t *msg, size_t len, uint8_t **own) {
  recv_msg_t *r = uvg__pool_alloc(&c->ch->sched->mem,
                                  sizeof(*r) + (*own != NULL ? 0 : len));
  if (r == NULL) return UVG_ENOMEM;
  if (*own != NULL) {
    r->data = *own;
    *own = NULL;
  } else {
    r->data = r->bytes;
    if (len > 0) memcpy(r->bytes, msg, len);
  }
  r->len = (uint32_t)len;
  r->compressed = (uint8_t)compressed;
  uvg__list_push(&c->msgs, &r->link);
  maybe_deliver(c);
  return 0;
}

static int on_deframed(void *arg, int compressed, const uint8_t *msg,
                       uint32_t len) {
  uvg_client_call_t *c = arg;
  char text[128];
  uint8_t *plain = NULL;
  size_t plain_len = 0;
  if (compressed) {
    if (c->recv_enc == UVG_COMPRESS_NONE) {
      end_call(c, UVG_STATUS_INTERNAL,
               "grpc: compressed flag set with identity or empty grpc-encoding", 0);
      return UVG_EPROTO;
    }
    size_t max = c->deframer.max_len;
    int rc = uvg__decompress(c->recv_enc, msg, len, max, &plain, &plain_len);
    if (rc == UVG__E_TOO_LARGE) {
      snprintf(text, sizeof(text),
               "grpc: received message after decompression larger than max %zu", max);
      end_call(c, UVG_STATUS_RESOURCE_EXHAUSTED, text, 0);
    } else if (rc != 0) {
      end_call(c, UVG_STATUS_INTERNAL,
               "grpc: failed to decompress the received message", 0);
    }
    if (rc != 0) return rc;
  }
  uint8_t *own = plain ? plain : uvg__deframer_take(&c->deframer);
  int rc = plain ? queue_message(c, compressed, plain, plain_len, &own)
                 : queue_message(c, compressed, msg, len, &own);
  uvg__free(own); /* unless queued */
  if (rc != 0) {
    end_call(c, UVG_STATUS_INTERNAL, "out of memory", 0);
    return rc;
  }
  return 0;
}

/* ---- transport events ---- */

static int header_is(const uint8_t *name, size_t len, const char *lit) {
  return strlen(lit) == len && memcmp(name, lit, len) == 0;
}

int uvg__ccall_on_header(uvg__tstream_t *ts, uvg__hblock_t kind,
                         const uint8_t *name, size_t nlen, const uint8_t *value,
                         size_t vlen) {
  uvg_client_call_t *c = call_of(ts);
  if (c->done) return 0;
  /* after a 1xx, nghttp2 files the final response as a trailers block */
  if (kind == UVG__HB_TRAILERS && !c->got_response) kind = UVG__HB_RESPONSE;
  if (header_is(name, nlen, ":status")) {
    size_t n = vlen < 3 ? vlen : 3;
    memcpy(c->http_status, value, n);
    c->http_status[n] = '\0';
  } else if (header_is(name, nlen, "content-type")) {
    c->ct_grpc = vlen >= 16 && memcmp(value, "application/grpc", 16) == 0 &&
                 (vlen == 16 || value[16] == '+' || value[16] == ';');
  } else if (header_is(name, nlen, "grpc-status")) {
    c->grpc_status = uvg__status_parse((const char *)value, vlen);
    if (c->grpc_status < 0) c->grpc_status = UVG_STATUS_UNKNOWN;
  } else if (header_is(name, nlen, "grpc-message")) {
    uvg__free(c->grpc_message);
    c->grpc_message = uvg__percent_decode((const char *)value, vlen);
  } else if (header_is(name, nlen, "grpc-status-details-bin")) {
    uvg__free(c->details);
    c->details = uvg__base64_decode((const char *)value, vlen, &c->details_len);
    if (c->details == NULL) c->details_len = 0;
  } else if (header_is(name, nlen, "grpc-encoding")) {
    int enc = uvg__encoding_parse((const char *)value, vlen);
    if (enc < 0) {
      uvg__free(c->bad_encoding);
      c->bad_encoding = uvg__strndup((const char *)value, vlen);
    } else {
      c->recv_enc = (uint8_t)enc;
    }
  } else if ((nlen > 0 && name[0] == ':') || header_is(name, nlen, "content-length") ||
             header_is(name, nlen, "grpc-accept-encoding")) {
    /* protocol headers, not metadata */
  } else {
    uvg__md_list_t *l = kind == UVG__HB_TRAILERS ? &c->trailers : &c->resp_md;
    if (uvg__md_list_add_wire(l, (const char *)name, nlen, value, vlen) ==
        UVG_ENOMEM)
      return -1;
  }
  return 0;
}

static void run_metadata(void *arg, int status) {
  uvg_client_call_t *c = arg;
  (void)status;
  c->pending--;
  if (!c->status_run && c->cbs.on_metadata != NULL)
    c->cbs.on_metadata(c, c->resp_md.items, c->resp_md.n, c->user_data);
  maybe_free(c);
}

/* doc/http-grpc-status-mapping.md: the status of an HTTP status that is
 * not 200. */
static uvg_status_code_t http_status_code(int http) {
  switch (http) {
  case 400:
  case 431:
    return UVG_STATUS_INTERNAL;
  case 401:
    return UVG_STATUS_UNAUTHENTICATED;
  case 403:
    return UVG_STATUS_PERMISSION_DENIED;
  case 404:
    return UVG_STATUS_UNIMPLEMENTED;
  case 429:
  case 502:
  case 503:
  case 504:
    return UVG_STATUS_UNAVAILABLE;
  default:
    return UVG_STATUS_UNKNOWN;
  }
}

/* The status a trailers block (or a trailers-only response) carries. */
static void status_from_trailers(uvg_client_call_t *c) {
  if (uvg__deframer_partial(&c->deframer))
    end_call(c, UVG_STATUS_INTERNAL, "grpc: the stream ended inside a message", 0);
  else if (c->grpc_status < 0)
    end_call(c, UVG_STATUS_UNKNOWN, "grpc: the server sent no grpc-status", 1);
  else if (!retry_configured(c, (uvg_status_code_t)c->grpc_status, c->trailers.items,
                             c->trailers.n))
    end_call(c, (uvg_status_code_t)c->grpc_status, c->grpc_message, 1);
}

/* A response that is only headers: they are its trailers. */
static void trailers_only(uvg_client_call_t *c) {
  uvg__md_list_t md = c->trailers;
  c->trailers = c->resp_md;
  c->resp_md = md;
  status_from_trailers(c);
}

void uvg__ccall_on_headers(uvg__tstream_t *ts, uvg__hblock_t kind, int end) {
  uvg_client_call_t *c = call_of(ts);
  char text[160];
  if (c->done) return;
  if (kind == UVG__HB_TRAILERS && !c->got_response) kind = UVG__HB_RESPONSE;
  if (kind == UVG__HB_TRAILERS) {
    status_from_trailers(c);
    return;
  }
  int http = atoi(c->http_status);
  if (http >= 100 && http < 200 && !end) {
    /* http-grpc-status-mapping.md: informational headers are skipped */
    c->http_status[0] = '\0';
    c->ct_grpc = 0;
    c->grpc_status = -1;
    uvg__md_list_free(&c->resp_md);
    return;
  }
  if (http != 200) {
    snprintf(text, sizeof(text), "grpc: unexpected HTTP status %s%s", c->http_status,
             c->grpc_status >= 0 ? "" : " (no grpc-status)");
    uvg_status_code_t code = http_status_code(http);
    /* a gRPC server's own status wins when it sent one; an HTTP error page
     * (a proxy's 503) is no response of the server's and commits nothing */
    if (c->grpc_status >= 0 && end)
      trailers_only(c);
    else if (!retry_configured(c, code, c->resp_md.items, c->resp_md.n))
      end_call(c, code, text, 0);
    return;
  }
  if (c->ts.conn != NULL) uvg__subchannel_conn_answered((uvg__cconn_t *)c->ts.conn);
  /* gRFC A6: response headers commit the call; a trailers-only response
   * does not */
  if (!end) {
    c->got_response = 1;
    free_kept(c); /* the server has the request */
  }
  if (!c->ct_grpc) {
    end_call(c, UVG_STATUS_UNKNOWN, "grpc: the response content-type is not gRPC", 0);
    return;
  }
  if (end) {
    trailers_only(c);
    return;
  }
  if (c->bad_encoding != NULL) {
    snprintf(text, sizeof(text), "grpc: the response grpc-encoding \"%s\" is not "
             "supported", c->bad_encoding);
    end_call(c, UVG_STATUS_INTERNAL, text, 0);
    return;
  }
  post(c, &c->w_meta, run_metadata);
}

void uvg__ccall_on_data(uvg__tstream_t *ts, const uint8_t *p, size_t n) {
  uvg_client_call_t *c = call_of(ts);
  char text[128];
  if (!c->done && !c->retry_wait) {
    int rc = uvg__deframer_feed(&c->deframer, p, n, on_deframed, c);
    if (rc == UVG__E_TOO_LARGE) {
      snprintf(text, sizeof(text), "grpc: received message larger than max (%u vs. %u)",
               c->deframer.msg_len, c->deframer.max_len);
      end_call(c, UVG_STATUS_RESOURCE_EXHAUSTED, text, 0);
    } else if (rc == UVG_ENOMEM) {
      end_call(c, UVG_STATUS_INTERNAL, "out of memory", 0);
    }
  }
  maybe_consume(c);
}

void uvg__ccall_on_remote_end(uvg__tstream_t *ts) {
  uvg_client_call_t *c = call_of(ts);
  if (c->retry_wait) return; /* a trailers-only attempt's end */
  /* trailers end a stream through on_headers first */
  end_call(c, UVG_STATUS_INTERNAL,
           "grpc: the server closed the stream without sending trailers", 0);
}

/* PROTOCOL-HTTP2.md, "Errors": RST_STREAM codes as statuses. */
static void run_replace(void *arg, int status) {
  uvg_client_call_t *c = arg;
  (void)status;
  c->pending--;
  if (!c->done) uvg__channel_place(c->ch, c, &c->link);
  maybe_free(c);
}

/* Makes the call a fresh attempt: the response is forgotten and every
 * message it sent goes again first, in its order. Placed from the queue:
 * nghttp2 may still be closing the old stream. */
static void next_attempt(uvg_client_call_t *c) {
  c->attached = 0;
  c->ts_closed = 0;
  c->retry_wait = c->retry_due = 0;
  c->http_status[0] = '\0';
  c->ct_grpc = 0;
  c->grpc_status = -1;
  uvg__free(c->grpc_message);
  c->grpc_message = NULL;
  uvg__free(c->details);
  c->details = NULL;
  c->details_len = 0;
  uvg__free(c->bad_encoding);
  c->bad_encoding = NULL;
  uvg__md_list_free(&c->resp_md);
  uvg__md_list_free(&c->trailers);
  uvg__deframer_free(&c->deframer);
  /* the kept ones (sent, no callback, their bytes still reserved) go
   * first; those sent since follow */
  for (uvg__list_t *p = c->kept.next; p != &c->kept; p = p->next) {
    send_msg_t *sm = uvg__container_of(p, send_msg_t, early);
    sm->m.off = 0;
    c->msgs_out++;
  }
  uvg__list_t later;
  uvg__list_init(&later);
  uvg__list_move(&c->early, &later);
  uvg__list_move(&c->kept, &c->early);
  uvg__list_move(&later, &c->early);
  uvg__list_remove(&c->link);
  post(c, &c->w_start, run_replace);
}

/* gRFC A6: the call is committed once response headers arrived or a
 * message it sent cannot go again. Sending commits nothing: a message
 * still in the socket's write comes back to `kept` (attempt_over). */
static int committed(const uvg_client_call_t *c) {
  return c->got_response || !c->replayable || c->unkept_out > 0;
}

/* The attempt is over: its stream closed and the transport gave back
 * every message it held, so `kept` has them all, in their order. */
static int attempt_over(const uvg_client_call_t *c) {
  return (!c->attached || c->ts_closed) && c->in_ts == 0;
}

static void maybe_next_attempt(uvg_client_call_t *c) {
  if (c->retry_wait && c->retry_due && !c->done && attempt_over(c)) next_attempt(c);
}

/* A stream the server never processed (REFUSED_STREAM, or above a GOAWAY's
 * last-stream-id) is sent again once on another connection, with every
 * message it had sent, when nothing of it reached the application and all
 * its messages can go again (gRFC A6: transparent; it does not count as an
 * attempt). Returns 1 if so: the next attempt is due. */
static int retry(uvg_client_call_t *c, uint32_t h2_error) {
  if (h2_error != NGHTTP2_REFUSED_STREAM || c->done || c->retried || c->retry_wait ||
      c->pinned != NULL || committed(c) || c->ch->closing)
    return 0;
  UVG__TRACE(UVG__TRACE_CALL, "client call %s: not processed; retrying", c->method);
  c->retried = 1;
  c->retry_wait = c->retry_due = 1;
  return 1;
}

static void on_retry_timer(uvg__timer_t *t) {
  uvg_client_call_t *c = uvg__container_of(t, uvg_client_call_t, retry_timer);
  c->retry_due = 1;
  maybe_next_attempt(c);
}

/* gRFC A6: an attempt ended with `code` before the call was committed (no
 * response headers; every message sent is at hand). Asks the policy (and
 * the channel's throttle, which hears of every attempt's outcome); returns
 * 1 when another attempt follows, after the backoff or the server's
 * pushback: the old stream is reset and the call waits. */
static int retry_configured(uvg_client_call_t *c, uvg_status_code_t code,
                            const uvg_metadata_t *trailers, size_t ntrailers) {
  uvg_channel_t *ch = c->ch;
  if (c->done || c->retry_wait || ch->closing) return 0;
  if (c->retry.policy == NULL && !ch->throttle_on) return 0;
  if (c->hedge_attempt) return 0; /* its call counts it (hedge_on_status) */
  uvg__pushback_t pb = uvg__pushback_from_metadata(trailers, ntrailers);
  uint64_t delay;
  uvg__retry_verdict_t v = uvg__retry_decide(&c->retry, (int)code, committed(c), pb,
                                             ch->throttle_on ? &ch->throttle : NULL,
                                             &delay);
  if (code != UVG_STATUS_OK)
    UVG__TRACE(UVG__TRACE_CALL, "client call %s: attempt %u ended %s: %s", c->method,
               c->retry.attempts - (v == UVG__RETRY_AFTER_DELAY),
               uvg_status_code_name(code), uvg__retry_verdict_name(v));
  if (v != UVG__RETRY_AFTER_DELAY) return 0;
  c->retry_wait = 1;
  if (c->attached && !c->ts_closed) uvg__ts_reset(&c->ts, NGHTTP2_CANCEL);
  uvg__timer_start(&c->retry_timer, on_retry_timer, delay);
  return 1;
}

void uvg__ccall_on_stream_close(uvg__tstream_t *ts, uint32_t h2_error) {
  uvg_client_call_t *c = call_of(ts);
  c->ts_closed = 1;
  uvg__list_remove(&c->link);
  if (retry(c, h2_error) || c->retry_wait) { /* the next attempt is due */
    maybe_next_attempt(c);
    maybe_free(c);
    return;
  }
  char text[200];
  uvg_status_code_t lost = h2_error == UVG__H2_CONN_CLOSED ? UVG_STATUS_UNAVAILABLE
                           : h2_error == NGHTTP2_NO_ERROR ? UVG_STATUS_INTERNAL
                                                          : uvg__status_of_reset(h2_error);
  /* a lost connection or a reset is an attempt's failure too (grpc-go) */
  if (!c->done && !(h2_error == NGHTTP2_CANCEL && c->deadline_at &&
                    uv_now(c->ch->loop) >= c->deadline_at) &&
      retry_configured(c, lost, NULL, 0)) {
    maybe_next_attempt(c);
    maybe_free(c);
    return;
  }
  if (h2_error == NGHTTP2_REFUSED_STREAM && c->ch->goaway_text[0]) {
    /* refused by a GOAWAY that said why (a TLS port answering plaintext) */
    snprintf(text, sizeof(text), "stream refused by the server: %s",
             c->ch->goaway_text);
    end_call(c, UVG_STATUS_UNAVAILABLE, text, 0);
  } else if (h2_error == UVG__H2_CONN_CLOSED) {
    end_call(c, UVG_STATUS_UNAVAILABLE, "connection closed", 0);
  } else if (h2_error == NGHTTP2_NO_ERROR) {
    end_call(c, UVG_STATUS_INTERNAL, "grpc: the stream ended without a status", 0);
  } else if (h2_error == NGHTTP2_CANCEL && c->deadline_at &&
             uv_now(c->ch->loop) >= c->deadline_at) {
    /* PROTOCOL-HTTP2.md: CANCEL past the deadline is DEADLINE_EXCEEDED */
    end_call(c, UVG_STATUS_DEADLINE_EXCEEDED, "Deadline Exceeded", 0);
  } else {
    snprintf(text, sizeof(text), "stream reset by the server (%s)",
             nghttp2_http2_strerror(h2_error));
    end_call(c, uvg__status_of_reset(h2_error), text, 0);
  }
  maybe_free(c);
}

/* ---- sending ---- */

static void run_send_cb(void *arg, int status) {
  send_msg_t *sm = arg;
  uvg_client_call_t *c = sm->call;
  (void)status;
  c->pending--;
  sm->cb(c, sm->status, sm->user_data);
  uvg__pool_free(pool_of(c), sm);
  maybe_free(c);
}

/* A copy that fits what the call and the channel keep for retries is
 * reserved when it is sent, so that the decision on an attempt that fails
 * while the copy is still in the socket's write knows it will be at hand. */
static void reserve(uvg_client_call_t *c, send_msg_t *sm) {
  size_t max = c->retry.policy != NULL || !c->config_applied ? RETRY_POLICY_KEEP_MAX
                                                              : RETRY_KEEP_MAX;
  sm->reserved = sm->cb == NULL && c->replayable && c->kept_bytes + sm->m.len <= max &&
                 /* gRFC A6: and what all the channel's calls keep */
                 c->ch->retry_buffered + sm->m.len <= UVG__CHANNEL_RETRY_BUFFER;
  if (sm->reserved) {
    c->kept_bytes += sm->m.len;
    c->ch->retry_buffered += sm->m.len;
  } else {
    c->unkept_out++;
  }
}

/* In send order: a message whose bytes were in the write in flight comes
 * back after later ones that the closed stream dropped at once. */
static void keep(uvg_client_call_t *c, send_msg_t *sm) {
  uvg__list_t *at = c->kept.prev;
  while (at != &c->kept && uvg__container_of(at, send_msg_t, early)->seq > sm->seq)
    at = at->prev;
  uvg__list_push(at->next, &sm->early);
}

static void on_msg_done(uvg__msg_t *m, int status) {
  send_msg_t *sm = uvg__container_of(m, send_msg_t, m);
  uvg_client_call_t *c = sm->call;
  c->msgs_out--;
  if (sm->in_ts) {
    sm->in_ts = 0;
    c->in_ts--;
  }
  if (!sm->reserved) {
    /* the socket took its bytes, or they were dropped: they cannot be
     * sent again */
    c->unkept_out--;
    free_kept(c);
  }
  if (sm->cb != NULL) c->cbs_out--;
  if (sm->cb != NULL) {
    /* the application hears it was sent or dropped */
    sm->status = status;
    uvg__work_init(&sm->w);
    if (uvg__workq_post_node(&c->ch->q, &sm->w, run_send_cb, sm) == 0) {
      c->pending++;
    } else {
      uvg__pool_free(pool_of(c), sm);
    }
  } else if (c->replayable && !c->done) {
    keep(c, sm);
  } else {
    if (c->replayable) { /* the call ended: its reservation goes */
      c->kept_bytes -= sm->m.len;
      c->ch->retry_buffered -= sm->m.len;
    }
    uvg__pool_free(pool_of(c), sm);
  }
  maybe_next_attempt(c);
  maybe_post_status(c);
  maybe_free(c);
}


/* ---- hedging (gRFC A6) ----
 *
 * A hedged call sends its request on up to maxAttempts attempts, the next
 * one hedgingDelay after the last (or at once after a non-fatal status),
 * and the first attempt to get response headers (or an OK) wins: the
 * others are cancelled and the winner's response is the call's. Each
 * attempt is a call of the library's own on the same channel, picked like
 * any call; the application's call keeps the request messages (copies) so
 * a later attempt sends them all, and hands the winner's metadata,
 * messages and status on as its own. */

static int hedge_start_attempt(uvg_client_call_t *p);

static void hedge_drop_kept(struct hedge_s *hg) {
  while (!uvg__list_empty(&hg->msgs)) {
    hedge_msg_t *m = uvg__container_of(hg->msgs.next, hedge_msg_t, link);
    uvg__list_remove(&m->link);
    uvg__free(m);
  }
}

static void hedge_cancel_others(uvg_client_call_t *p, uvg_client_call_t *keep) {
  struct hedge_s *hg = p->hedge;
  uvg__timer_stop(&hg->timer);
  for (unsigned i = 0; i < hg->started; i++)
    if (hg->attempts[i] != NULL && hg->attempts[i] != keep)
      uvg_client_call_cancel(hg->attempts[i]);
}

/* Nothing more will be sent and no attempt is alive: the call ends with
 * the last attempt's status. */
static void hedge_maybe_over(uvg_client_call_t *p) {
  struct hedge_s *hg = p->hedge;
  if (p->done || hg->alive > 0 || (uvg__timer_armed(&hg->timer) && !hg->h.stopped))
    return;
  uvg__timer_stop(&hg->timer);
  end_call(p, hg->last_code, hg->last_message, 1);
  maybe_free(p);
}

static void hedge_next(uvg_client_call_t *p);

static void on_hedge_timer(uvg__timer_t *t) {
  hedge_next(uvg__container_of(t, struct hedge_s, timer)->call);
}

static void hedge_next(uvg_client_call_t *p) {
  struct hedge_s *hg = p->hedge;
  uvg_channel_t *ch = p->ch;
  if (p->done || hg->winner != NULL) return;
  switch (uvg__hedge_next(&hg->h, ch->throttle_on ? &ch->throttle : NULL)) {
    case UVG__HEDGE_SEND:
      if (hedge_start_attempt(p) != 0) {
        hg->last_code = UVG_STATUS_UNAVAILABLE;
        snprintf(hg->last_message, sizeof(hg->last_message), "cannot start an attempt");
      }
      break;
    case UVG__HEDGE_THROTTLED: /* this one is given up; later ones may go */
      break;
    case UVG__HEDGE_DONE:
      hedge_maybe_over(p);
      return;
  }
  uint64_t delay = uvg__hedge_delay_ms(&hg->h);
  if (hg->h.sent < hg->h.policy->max_attempts && !hg->h.stopped && delay > 0)
    uvg__timer_start(&hg->timer, on_hedge_timer, delay);
  else if (hg->h.sent < hg->h.policy->max_attempts && !hg->h.stopped)
    hedge_next(p); /* hedgingDelay 0: all at once */
  hedge_maybe_over(p);
}

static uvg_client_call_t *parent_of(void *ud) { return ud; }

static void hedge_on_metadata(uvg_client_call_t *a, const uvg_metadata_t *md, size_t n,
                              void *ud) {
  uvg_client_call_t *p = parent_of(ud);
  struct hedge_s *hg = p->hedge;
  if (p->done) return;
  if (hg->winner == NULL) { /* response headers: this attempt is committed */
    hg->winner = a;
    snprintf(p->peer, sizeof(p->peer), "%s", a->peer);
    uvg__hedge_commit(&hg->h);
    hedge_cancel_others(p, a);
    hedge_drop_kept(hg);
    /* a read the application asked for goes to the winner */
    if (p->read_pending && uvg__list_empty(&p->msgs)) uvg_client_call_read(a);
  }
  if (hg->winner != a) return;
  for (size_t i = 0; i < n; i++)
    if (uvg__md_list_add(&p->resp_md, md[i].key, strlen(md[i].key), md[i].value,
                         md[i].value_len) != 0)
      break;
  p->got_response = 1;
  post(p, &p->w_meta, run_metadata);
}

static void hedge_on_message(uvg_client_call_t *a, const uint8_t *msg, size_t len,
                             void *ud) {
  uvg_client_call_t *p = parent_of(ud);
  uint8_t *copy = NULL; /* the attempt keeps its own */
  if (!p->done && p->hedge->winner == a) {
    if (queue_message(p, uvg_client_call_message_compressed(a), msg, len, &copy) != 0)
      end_call(p, UVG_STATUS_INTERNAL, "out of memory", 0);
  }
}

static void hedge_on_status(uvg_client_call_t *a, const uvg_status_t *st,
                            const uvg_metadata_t *tr, size_t n, void *ud) {
  uvg_client_call_t *p = parent_of(ud);
  struct hedge_s *hg = p->hedge;
  uvg_channel_t *ch = p->ch;
  for (unsigned i = 0; i < hg->started; i++)
    if (hg->attempts[i] == a) hg->attempts[i] = NULL;
  hg->alive--;
  if (!p->done) {
    uint64_t delay = 0;
    uvg__hedge_verdict_t v = UVG__HEDGE_WAIT; /* a loser cancelled for the winner */
    if (hg->winner == NULL)
      v = uvg__hedge_on_status(&hg->h, (int)st->code, uvg__pushback_from_metadata(tr, n),
                               ch->throttle_on ? &ch->throttle : NULL, &delay);
    UVG__TRACE(UVG__TRACE_CALL, "client call %s: hedged attempt ended %s", p->method,
               uvg_status_code_name(st->code));
    if (hg->winner == a && ch->throttle_on) { /* the committed attempt's outcome */
      if (st->code == UVG_STATUS_OK)
        uvg__retry_throttle_success(&ch->throttle);
      else if (uvg__code_set_has(hg->h.policy->non_fatal_codes, (int)st->code))
        uvg__retry_throttle_failure(&ch->throttle);
    }
    if (hg->winner == a || v == UVG__HEDGE_WIN || v == UVG__HEDGE_FATAL) {
      /* this status is the call's */
      hedge_cancel_others(p, a);
      for (size_t i = 0; i < n; i++)
        uvg__md_list_add(&p->trailers, tr[i].key, strlen(tr[i].key), tr[i].value,
                         tr[i].value_len);
      if (st->details_len > 0 && (p->details = uvg__malloc(st->details_len)) != NULL) {
        memcpy(p->details, st->details, st->details_len);
        p->details_len = st->details_len;
      }
      end_call(p, st->code, st->message, 1);
    } else {
      hg->last_code = st->code;
      snprintf(hg->last_message, sizeof(hg->last_message), "%s", st->message);
      if (v == UVG__HEDGE_NEXT_IN) {
        uvg__timer_stop(&hg->timer);
        if (delay > 0)
          uvg__timer_start(&hg->timer, on_hedge_timer, delay);
        else
          hedge_next(p);
      }
      hedge_maybe_over(p);
    }
  }
  maybe_free(p);
}

static const uvg_client_call_cbs_t hedge_cbs = {hedge_on_metadata, hedge_on_message,
                                                hedge_on_status};

/* Starts attempt number hg->started with every message so far. */
static int hedge_start_attempt(uvg_client_call_t *p) {
  struct hedge_s *hg = p->hedge;
  uvg_channel_t *ch = p->ch;
  if (hg->started == HEDGE_MAX) return UVG_EINVAL;
  uvg_client_call_options_t o = {
      .wait_for_ready = p->wait_for_ready ? 1 : -1,
      .metadata = p->md.items,
      .nmetadata = p->md.n,
      .compression = (uvg_compression_t)p->send_enc,
      .max_receive_message_size = p->deframer.max_len,
      .max_send_message_size = p->max_send,
      .authority = p->authority,
  };
  if (p->deadline_at) {
    uint64_t now = uv_now(ch->loop);
    o.timeout_ms = p->deadline_at > now ? p->deadline_at - now : 1;
  }
  uvg_client_call_t *a;
  /* its number gives grpc-previous-rpc-attempts */
  int rc = start_call(ch, p->method, &o, &hedge_cbs, p, NULL, 1, hg->started + 1, &a);
  if (rc != 0) return rc;
  hg->attempts[hg->started++] = a;
  hg->alive++;
  for (uvg__list_t *q = hg->msgs.next; q != &hg->msgs; q = q->next) {
    hedge_msg_t *m = uvg__container_of(q, hedge_msg_t, link);
    uvg_client_call_send(a, m->bytes, m->len, m->flags, NULL, NULL);
  }
  if (hg->half_closed) uvg_client_call_half_close(a);
  a->hedge_attempt = 1;
  return 0;
}

static int hedge_keep(uvg_client_call_t *p, const void *data, size_t len,
                      unsigned flags) {
  hedge_msg_t *m = uvg__malloc(sizeof(*m) + len);
  if (m == NULL) return UVG_ENOMEM;
  m->len = len;
  m->flags = flags;
  memcpy(m->bytes, data, len);
  uvg__list_push(&p->hedge->msgs, &m->link);
  return 0;
}

int uvg__ccall_hedging(const uvg_client_call_t *c) {
  return c->mc != NULL && c->mc->policy == UVG__POLICY_HEDGING && c->hedge == NULL &&
         !c->internal;
}

/* The call leaves the channel's waiting list and becomes the holder of
 * its attempts; the messages sent so far are kept for all of them. */
void uvg__ccall_hedge_begin(uvg_client_call_t *p) {
  struct hedge_s *hg = uvg__calloc(1, sizeof(*hg));
  uvg__list_remove(&p->link);
  if (hg == NULL) {
    uvg__ccall_fail(p, UVG_STATUS_INTERNAL, "out of memory");
    return;
  }
  p->hedge = hg;
  hg->call = p;
  uvg__hedge_init(&hg->h, &p->mc->hedging);
  uvg__timer_init(p->ch->sched, &hg->timer);
  uvg__list_init(&hg->msgs);
  hg->last_code = UVG_STATUS_UNAVAILABLE;
  snprintf(hg->last_message, sizeof(hg->last_message), "no attempt could be made");
  hg->half_closed = p->half_close_wanted;
  /* the attempts keep their own copies: the call itself keeps none */
  free_kept(p);
  while (!uvg__list_empty(&p->early)) {
    send_msg_t *sm = uvg__container_of(p->early.next, send_msg_t, early);
    uvg__list_remove(&sm->early);
    /* the message as the application gave it: a compressed one is
     * expanded again, each attempt compresses its own */
    uint8_t *plain = NULL;
    size_t plain_len = 0;
    if (sm->m.head_len > 0 && sm->m.head[0] != 0 &&
        uvg__decompress(p->send_enc, sm->m.data, sm->m.len, p->max_send, &plain,
                        &plain_len) == 0) {
      hedge_keep(p, plain, plain_len, 0);
      uvg__free(plain);
    } else {
      hedge_keep(p, sm->m.data, sm->m.len,
                 p->send_enc && !(sm->m.head_len > 0 && sm->m.head[0]) ? UVG_SEND_NO_COMPRESS
                                                                       : 0);
    }
    on_msg_done(&sm->m, 0);
  }
  /* the first attempt now (uvg__hedge_init counts it as sent); the next
   * ones after hedgingDelay, or all at once */
  if (hedge_start_attempt(p) != 0) {
    hedge_maybe_over(p);
    return;
  }
  uint64_t delay = uvg__hedge_delay_ms(&hg->h);
  if (delay > 0)
    uvg__timer_start(&hg->timer, on_hedge_timer, delay);
  else
    hedge_next(p);
}

/* A message of a hedged call: kept for attempts to come, sent on the
 * live ones; its callback (the bytes are copied at once) follows from the
 * queue. */
static int hedge_send(uvg_client_call_t *p, const void *data, size_t len, unsigned flags,
                      uvg_client_send_cb cb, void *user_data) {
  struct hedge_s *hg = p->hedge;
  send_msg_t *sm = NULL;
  if (cb != NULL && (sm = uvg__pool_calloc(pool_of(p), 1, sizeof(*sm))) == NULL)
    return UVG_ENOMEM;
  /* after the commit no attempt starts: nothing to keep */
  if (hg->winner == NULL && hedge_keep(p, data, len, flags) != 0) {
    uvg__pool_free(pool_of(p), sm);
    return UVG_ENOMEM;
  }
  for (unsigned i = 0; i < hg->started; i++)
    if (hg->attempts[i] != NULL)
      uvg_client_call_send(hg->attempts[i], data, len, flags, NULL, NULL);
  if (sm != NULL) {
    sm->call = p;
    sm->cb = cb;
    sm->user_data = user_data;
    sm->status = 0;
    uvg__work_init(&sm->w);
    if (uvg__workq_post_node(&p->ch->q, &sm->w, run_send_cb, sm) == 0)
      p->pending++;
    else
      uvg__pool_free(pool_of(p), sm);
  }
  return 0;
}

static void hedge_free(uvg_client_call_t *p) {
  struct hedge_s *hg = p->hedge;
  if (hg == NULL) return;
  uvg__timer_stop(&hg->timer);
  hedge_drop_kept(hg);
  uvg__free(hg);
  p->hedge = NULL;
}

/* ---- starting ---- */

void uvg__ccall_attach(uvg_client_call_t *c, uvg__cconn_t *cc) {
  uvg_channel_t *ch = c->ch;
  char timeout[10];
  const char *enc = uvg__encoding_name(c->send_enc);
  size_t tlen = 0;
  if (c->deadline_at) {
    uint64_t now = uv_now(ch->loop);
    tlen = uvg__timeout_encode(c->deadline_at > now ? c->deadline_at - now : 1,
                               timeout);
  }
  const char *auth = c->authority ? c->authority : ch->authority;
  char attempts[12];
  nghttp2_nv fixed[11] = {
      UVG__NV(":method", "POST", 4),
      UVG__NV(":scheme", "http", 4),
      UVG__NV(":path", c->method, strlen(c->method)),
      UVG__NV(":authority", auth, strlen(auth)),
      UVG__NV("content-type", "application/grpc", 16),
      UVG__NV("te", "trailers", 8),
      UVG__NV("user-agent", USER_AGENT, sizeof(USER_AGENT) - 1),
      UVG__NV("grpc-accept-encoding", UVG__ACCEPT_ENCODING,
              sizeof(UVG__ACCEPT_ENCODING) - 1),
  };
  size_t nf = 8;
  if (c->send_enc) fixed[nf++] = (nghttp2_nv)UVG__NV("grpc-encoding", enc, strlen(enc));
  if (tlen) fixed[nf++] = (nghttp2_nv)UVG__NV("grpc-timeout", timeout, tlen);
  if (c->retry.attempts > 1) { /* gRFC A6 */
    int n = snprintf(attempts, sizeof(attempts), "%u", c->retry.attempts - 1);
    fixed[nf++] = (nghttp2_nv)UVG__NV("grpc-previous-rpc-attempts", attempts, (size_t)n);
  }
  uvg__nv_block_t b;
  int rc = uvg__nv_build(&b, fixed, nf, &c->md);
  if (rc == 0) {
    rc = uvg__conn_request(&cc->c, &c->ts, b.nv, b.n);
    uvg__nv_free(&b);
  }
  if (rc == UVG_ECLOSED) {
    /* the connection is going (closing, GOAWAY, stream ids used up): the
     * call waits for the next one */
    uvg__channel_conn_unusable(ch, cc);
    return;
  }
  if (rc != 0) {
    uvg__list_remove(&c->link);
    uvg__ccall_fail(c, UVG_STATUS_UNAVAILABLE, "cannot start a stream");
    return;
  }
  c->attached = 1;
  c->on_conn = 1;
  uvg__auth_unref(c->auth); /* a transparent retry's earlier connection */
  c->auth = uvg__auth_ref(uvg__tls_auth(&cc->c.io));
  snprintf(c->peer, sizeof(c->peer), "%s", cc->c.peer);
  uvg__list_remove(&c->link);
  uvg__list_push(&ch->active, &c->link);
  while (!uvg__list_empty(&c->early)) {
    send_msg_t *sm = uvg__container_of(c->early.next, send_msg_t, early);
    uvg__list_remove(&sm->early);
    if (uvg__ts_send(&c->ts, &sm->m) != 0) {
      on_msg_done(&sm->m, UVG_ECANCELED);
      continue;
    }
    sm->in_ts = 1;
    c->in_ts++;
  }
  if (c->half_close_wanted) uvg__ts_end(&c->ts, NULL, 0);
}

void uvg__ccall_fail(uvg_client_call_t *c, uvg_status_code_t code,
                     const char *msg) {
  uvg__list_remove(&c->link);
  end_call(c, code, msg, 0);
  maybe_free(c);
}

/* Ends a call on the client's own account, whether it has a stream yet
 * or still waits for one. */
static void fail_local(uvg_client_call_t *c, uvg_status_code_t code,
                       const char *msg) {
  if (c->attached) end_call(c, code, msg, 0);
  else uvg__ccall_fail(c, code, msg);
}

uvg_client_call_t *uvg__ccall_of_link(uvg__list_t *link) {
  return uvg__container_of(link, uvg_client_call_t, link);
}

static void on_deadline(uvg__timer_t *t);

int uvg__ccall_config_applied(const uvg_client_call_t *c) { return c->config_applied; }

static uint32_t min_u32(uint32_t a, uint32_t b) { return a < b ? a : b; }

/* service_config.md: the method's timeout bounds the call's deadline; a
 * waitForReady applies unless the call chose; the message limits are the
 * smaller of the call's and the config's (grpc-go's rules). */
void uvg__ccall_apply_config(uvg_client_call_t *c, const uvg__method_config_t *mc) {
  uvg_channel_t *ch = c->ch;
  c->config_applied = 1;
  /* sends before the config were reserved against a retry policy's limit */
  if ((mc == NULL || mc->policy != UVG__POLICY_RETRY) && c->kept_bytes > RETRY_KEEP_MAX)
    free_kept(c);
  if (mc == NULL) return;
  c->sc = uvg__service_config_ref(ch->sc);
  c->mc = mc;
  if (mc->policy == UVG__POLICY_RETRY) uvg__retry_init(&c->retry, &mc->retry, NULL, NULL);
  if (mc->wait_for_ready >= 0 && !c->wfr_chosen) c->wait_for_ready = (uint8_t)mc->wait_for_ready;
  if (mc->has_max_request_bytes) c->max_send = min_u32(c->max_send, mc->max_request_bytes);
  if (mc->has_max_response_bytes)
    c->deframer.max_len = min_u32(c->deframer.max_len, mc->max_response_bytes);
  if (mc->has_timeout) {
    uint64_t ms = uvg__duration_ms(&mc->timeout);
    if (ms < UVG__CLIENT_TIMEOUT_MAX_MS) {
      uint64_t at = c->started_at + ms, now = uv_now(ch->loop);
      if (c->deadline_at == 0 || at < c->deadline_at) {
        c->deadline_at = at;
        uvg__timer_start(&c->deadline, on_deadline, at > now ? at - now : 0);
      }
    }
  }
}

void uvg__ccall_pick_info(const uvg_client_call_t *c, uvg_pick_info_t *info) {
  info->method = c->method;
  info->metadata = c->md.items;
  info->nmetadata = c->md.n;
}

int uvg__ccall_wait_for_ready(const uvg_client_call_t *c) {
  return c->wait_for_ready;
}

void uvg__ccall_cancel_all(uvg_channel_t *ch, const char *msg) {
  while (!uvg__list_empty(&ch->waiting))
    uvg__ccall_fail(uvg__ccall_of_link(ch->waiting.next),
                    UVG_STATUS_CANCELLED, msg);
  /* also calls on no list: ended by the server with messages unread,
   * starting (interceptors) or about to be retried */
  for (uvg__list_t *p = ch->calls.next; p != &ch->calls; p = p->next)
    abandon(uvg__container_of(p, uvg_client_call_t, all_link), msg);
}

/* ---- call credentials ---- */

/* Asks the call's credentials, the channel's and its own, for metadata.
 * Returns 0 when there are none (the call goes on now), 1 when the call
 * waits for the answers or has ended. */
static int ask_credentials(uvg_client_call_t *c) {
  uvg_channel_t *ch = c->ch;
  uvg_call_credentials_t *creds[2] = {ch->opts.call_credentials, c->creds};
  if (creds[0] == NULL && creds[1] == NULL) return 0;
  if (ch->tls == NULL && !ch->opts.allow_insecure_call_credentials) {
    /* grpc-go: "cannot send secure credentials on an insecure connection" */
    uvg__ccall_fail(c, UVG_STATUS_UNAUTHENTICATED,
                    "cannot send call credentials on an insecure channel (its "
                    "options do not set allow_insecure_call_credentials)");
    return 1;
  }
  char *url = uvg__service_url(c->authority ? c->authority : ch->authority, c->method);
  const char *name = strrchr(c->method, '/') + 1; /* the path starts with '/' */
  size_t ulen = url != NULL ? strlen(url) + 1 : 0, nlen = strlen(name) + 1;
  for (unsigned i = 0; i < 2 && url != NULL; i++) {
    if (creds[i] == NULL) continue;
    uvg_metadata_request_t *r = uvg__malloc(sizeof(*r) + ulen + nlen);
    if (r == NULL) break;
    r->call = c;
    r->slot = i;
    memcpy(r->service_url, url, ulen);
    r->method_name = r->service_url + ulen;
    memcpy(r->method_name, name, nlen);
    c->reqs[i] = r;
    c->creds_waiting++;
  }
  uvg__free(url);
  if (c->creds_waiting < (unsigned)((creds[0] != NULL) + (creds[1] != NULL))) {
    for (unsigned i = 0; i < 2; i++) uvg__free(c->reqs[i]);
    c->reqs[0] = c->reqs[1] = NULL;
    c->creds_waiting = 0;
    uvg__ccall_fail(c, UVG_STATUS_INTERNAL, "out of memory");
    return 1;
  }
  /* All requests exist before the first is asked, so that an answer given
   * at once cannot send the call before the other one is in. */
  for (unsigned i = 0; i < 2; i++) {
    uvg_metadata_request_t *r = c->reqs[i];
    if (r == NULL) continue;
    if (c->done) { /* an earlier answer ended the call: no need to ask */
      c->reqs[i] = NULL;
      c->creds_waiting--;
      uvg__free(r);
      continue;
    }
    creds[i]->get(r, r->service_url, r->method_name, creds[i]->user_data);
  }
  return 1;
}

int uvg_metadata_request_done(uvg_metadata_request_t *r, const uvg_metadata_t *md,
                              size_t n, uvg_status_code_t code,
                              const char *message) {
  if (r == NULL) return UVG_EINVAL;
  uvg_client_call_t *c = r->call;
  unsigned slot = r->slot;
  uvg__free(r);
  if (c == NULL) return UVG_ECANCELED;
  c->reqs[slot] = NULL;
  c->creds_waiting--;
  if (c->done) {
    maybe_free(c);
    return UVG_ECANCELED;
  }
  int rc = 0;
  char text[192];
  if ((unsigned)code > UVG_STATUS_UNAUTHENTICATED) {
    uvg__ccall_fail(c, UVG_STATUS_INTERNAL,
                    "call credentials answered with an invalid status code");
    return UVG_EINVAL;
  }
  if (code != UVG_STATUS_OK) {
    uvg_status_code_t final = uvg__call_creds_code(code);
    if (final != code)
      snprintf(text, sizeof(text),
               "call credentials failed with the status %s, which gRFC A54 "
               "reserves: %s", uvg_status_code_name(code), message ? message : "");
    uvg__ccall_fail(c, final, final != code ? text : message);
    return 0;
  }
  if ((rc = uvg__md_list_add_app(&c->creds_md[slot], md, n)) != 0) {
    uvg__ccall_fail(c, UVG_STATUS_INTERNAL,
                    rc == UVG_ENOMEM ? "out of memory"
                                     : "call credentials gave invalid metadata");
    return rc;
  }
  if (c->creds_waiting > 0) return 0;
  /* the channel's metadata, then the call's, whichever answered first */
  for (unsigned i = 0; i < 2 && rc == 0; i++)
    for (size_t k = 0; k < c->creds_md[i].n && rc == 0; k++) {
      const uvg_metadata_t *m = &c->creds_md[i].items[k];
      rc = uvg__md_list_add(&c->md, m->key, strlen(m->key), m->value, m->value_len);
    }
  uvg__md_list_free(&c->creds_md[0]);
  uvg__md_list_free(&c->creds_md[1]);
  if (rc != 0) {
    uvg__ccall_fail(c, UVG_STATUS_INTERNAL, "out of memory");
    return rc;
  }
  uvg__channel_place(c->ch, c, &c->link);
  return 0;
}

/* Runs the interceptors' on_start from the queue, then places the call. */
static void run_start(void *arg, int status) {
  uvg_client_call_t *c = arg;
  uvg_channel_t *ch = c->ch;
  (void)status;
  c->pending--;
  if (!c->done && ch->closing) uvg__ccall_fail(c, UVG_STATUS_CANCELLED, "channel closed");
  for (unsigned i = 0; i < c->nics && !c->done; i++) {
    uvg_status_t reject = {UVG_STATUS_OK, NULL, NULL, 0};
    if (IC(c, i).ic.on_start != NULL &&
        IC(c, i).ic.on_start(c, IC(c, i).data, &reject) != 0) {
      if (reject.code == UVG_STATUS_OK || (unsigned)reject.code > 16)
        reject.code = UVG_STATUS_UNKNOWN;
      uvg__ccall_fail(c, reject.code, reject.message);
      break;
    }
    c->intercepted = i + 1;
  }
  if (!c->done && !ask_credentials(c)) uvg__channel_place(ch, c, &c->link);
  maybe_free(c);
}

static void on_deadline(uvg__timer_t *t) {
  uvg_client_call_t *c = uvg__container_of(t, uvg_client_call_t, deadline);
  if (!c->attached) {
    /* a wait-for-ready call that waited out failing connections says why
     * they failed (a refused TLS handshake, say), as grpc-go does */
    char text[400];
    uvg_channel_t *ch = c->ch;
    int why = ch->state == UVG_STATE_TRANSIENT_FAILURE && ch->last_error[0] &&
              c->hedge == NULL;
    if (why)
      snprintf(text, sizeof(text),
               "Deadline Exceeded while waiting for a connection; the last "
               "attempt: %s", ch->last_error);
    uvg__ccall_fail(c, UVG_STATUS_DEADLINE_EXCEEDED, why ? text : "Deadline Exceeded");
    return;
  }
  end_call(c, UVG_STATUS_DEADLINE_EXCEEDED, "Deadline Exceeded", 0);
}

static int start_call(uvg_channel_t *ch, const char *method,
                      const uvg_client_call_options_t *opts,
                      const uvg_client_call_cbs_t *cbs, void *user_data,
                      uvg__cconn_t *pinned, int internal, uint32_t attempt,
                      uvg_client_call_t **out) {
  static const uvg_client_call_options_t defaults;
  if (ch == NULL || method == NULL || method[0] != '/' || cbs == NULL ||
      cbs->on_status == NULL || out == NULL)
    return UVG_EINVAL;
  if (opts == NULL) opts = &defaults;
  if ((unsigned)opts->compression > UVG_COMPRESS_DEFLATE ||
      (opts->metadata == NULL && opts->nmetadata > 0))
    return UVG_EINVAL;
  if (ch->closing) return UVG_ECLOSED;
  /* the call and its path from the scheduler's free lists: a unary call
   * in steady state allocates nothing of its own */
  uvg_client_call_t *c = uvg__pool_calloc(&ch->sched->mem, 1, sizeof(*c));
  if (c == NULL) return UVG_ENOMEM;
  c->ch = ch;
  c->cbs = *cbs;
  c->user_data = user_data;
  c->grpc_status = -1;
  uvg__list_init(&c->link);
  uvg__list_init(&c->all_link);
  uvg__list_init(&c->msgs);
  uvg__list_init(&c->early);
  uvg__list_init(&c->kept);
  c->replayable = 1;
  uvg__md_list_init(&c->md);
  uvg__md_list_init(&c->creds_md[0]);
  uvg__md_list_init(&c->creds_md[1]);
  uvg__md_list_init(&c->resp_md);
  uvg__md_list_init(&c->trailers);
  uvg__work_init(&c->w_start);
  uvg__work_init(&c->w_meta);
  uvg__work_init(&c->w_msg);
  uvg__work_init(&c->w_status);
  uvg__work_init(&c->w_free);
  uvg__timer_init(ch->sched, &c->deadline);
  uvg__timer_init(ch->sched, &c->retry_timer);
  uvg__retry_init(&c->retry, NULL, NULL, NULL);
  uvg__deframer_init(&c->deframer, opts->max_receive_message_size
                                       ? opts->max_receive_message_size
                                       : ch->opts.max_receive_message_size);
  c->max_send = opts->max_send_message_size ? opts->max_send_message_size
                                            : ch->opts.max_send_message_size;
  c->send_enc = (uint8_t)opts->compression;
  c->wait_for_ready = opts->wait_for_ready > 0;
  c->wfr_chosen = opts->wait_for_ready != 0;
  c->started_at = uv_now(ch->loop);
  int rc = uvg__md_list_add_app(&c->md, opts->metadata, opts->nmetadata);
  size_t mlen = strlen(method);
  if ((c->method = uvg__pool_alloc(pool_of(c), mlen + 1)) != NULL)
    memcpy(c->method, method, mlen + 1);
  c->creds = uvg__call_creds_ref(opts->call_credentials);
  if (opts->authority != NULL) c->authority = uvg__strdup(opts->authority);
  if (rc == 0 && (c->method == NULL || (opts->authority && c->authority == NULL)))
    rc = UVG_ENOMEM;
  if (rc != 0) {
    uvg__md_list_free(&c->md);
    uvg__pool_free(pool_of(c), c->method);
    uvg__free(c->authority);
    uvg_call_credentials_release(c->creds);
    uvg__pool_free(pool_of(c), c);
    return rc;
  }
  /* a deadline past what grpc-timeout can say (99999999 hours) is none */
  if (opts->timeout_ms && opts->timeout_ms < UVG__CLIENT_TIMEOUT_MAX_MS) {
    c->deadline_at = uv_now(ch->loop) + opts->timeout_ms;
    uvg__timer_start(&c->deadline, on_deadline, opts->timeout_ms);
  }
  *out = c;
  uvg__list_push(&ch->calls, &c->all_link);
  c->pinned = pinned;
  c->retry.attempts = attempt; /* > 1: a hedged attempt's number */
  c->internal = (uint8_t)(internal || pinned != NULL);
  if (c->internal) c->config_applied = 1; /* the library's own call */
  uvg__channel_call_born(ch, c->internal);
  c->nics = c->internal ? 0 : ch->ninterceptors;
  /* interceptors and call credentials run from the loop */
  if (c->nics > 0 ||
      (!c->internal && (c->creds != NULL || ch->opts.call_credentials != NULL)))
    post(c, &c->w_start, run_start);
  else
    uvg__channel_place(ch, c, &c->link);
  return 0;
}

int uvg_client_call_start(uvg_channel_t *ch, const char *method,
                          const uvg_client_call_options_t *opts,
                          const uvg_client_call_cbs_t *cbs, void *user_data,
                          uvg_client_call_t **out) {
  return start_call(ch, method, opts, cbs, user_data, NULL, 0, 1, out);
}

int uvg__ccall_start_pinned(uvg_channel_t *ch, uvg__cconn_t *cc, const char *method,
                            const uvg_client_call_cbs_t *cbs, void *user_data,
                            uvg_client_call_t **out) {
  return start_call(ch, method, NULL, cbs, user_data, cc, 1, 1, out);
}

uvg__cconn_t *uvg__ccall_pinned(const uvg_client_call_t *c) { return c->pinned; }
int uvg__ccall_attached(const uvg_client_call_t *c) { return c->attached; }

const char *uvg_client_call_method(const uvg_client_call_t *c) { return c->method; }

const uvg_auth_info_t *uvg_client_call_auth_info(const uvg_client_call_t *c) {
  return c->on_conn ? uvg__auth_info(c->auth) : NULL;
}

int uvg_client_call_message_compressed(const uvg_client_call_t *c) {
  return c->cur_compressed;
}

int uvg_client_call_message_ready(const uvg_client_call_t *c) {
  return c->delivering && !c->status_run && !uvg__list_empty(&c->msgs);
}

const char *uvg_client_call_peer(const uvg_client_call_t *c) {
  return c->peer;
}

size_t uvg_client_call_metadata(const uvg_client_call_t *c, const uvg_metadata_t **md) {
  *md = c->md.items;
  return c->md.n;
}

int uvg_client_call_set_metadata(uvg_client_call_t *c, const char *key,
                                 const void *value, size_t len) {
  if (c == NULL || key == NULL) return UVG_EINVAL;
  if (c->attached || c->done || c->hedge != NULL) return UVG_ESTATE;
  uvg__md_list_t one;
  uvg__md_list_init(&one);
  const uvg_metadata_t md = {key, value, len};
  int rc = value != NULL ? uvg__md_list_add_app(&one, &md, 1) : 0;
  if (value == NULL && (!uvg__md_key_valid(key, strlen(key)) ||
                        uvg__md_key_reserved(key, strlen(key))))
    rc = UVG_EINVAL;
  /* room first, so that a failure leaves the list as it was */
  if (rc == 0 && value != NULL) rc = uvg__md_list_reserve(&c->md);
  if (rc == 0) {
    uvg__md_list_remove(&c->md, key);
    if (value != NULL) {
      c->md.items[c->md.n++] = one.items[0];
      one.n = 0;
    }
  }
  uvg__md_list_free(&one);
  return rc;
}

int uvg_client_call_send(uvg_client_call_t *c, const void *data, size_t len,
                         unsigned flags, uvg_client_send_cb cb, void *user_data) {
  if (c == NULL || (data == NULL && len > 0) || len > UINT32_MAX) return UVG_EINVAL;
  if (c->done) return UVG_ECANCELED;
  if (c->half_close_wanted) return UVG_ESTATE;
  if (len > c->max_send) {
    char text[128];
    snprintf(text, sizeof(text),
             "grpc: trying to send message larger than max (%zu vs. %u)", len,
             c->max_send);
    fail_local(c, UVG_STATUS_RESOURCE_EXHAUSTED, text);
    return UVG_E2BIG;
  }
  /* also messages sent before on_start ran (it runs from the loop) */
  EACH_INTERCEPTOR(c, i, c->nics, on_send_message)
  IC(c, i).ic.on_send_message(c, data, len, IC(c, i).data);
  if (c->hedge != NULL) return hedge_send(c, data, len, flags, cb, user_data);
  int enc = flags & UVG_SEND_NO_COMPRESS ? UVG_COMPRESS_NONE : c->send_enc;
  send_msg_t *sm = uvg__pool_alloc(
      pool_of(c), sizeof(*sm) + uvg__msg_room(len, enc, cb == NULL));
  if (sm == NULL) return UVG_ENOMEM;
  if (uvg__msg_fill(&sm->m, sm->bytes, data, len, enc, cb == NULL) != 0) {
    uvg__pool_free(pool_of(c), sm);
    return UVG_ENOMEM;
  }
  sm->call = c;
  sm->cb = cb;
  sm->user_data = user_data;
  sm->status = 0;
  sm->m.done = on_msg_done;
  sm->seq = c->next_seq++;
  sm->in_ts = 0;
  uvg__list_init(&sm->early);
  /* between two attempts a message waits for the next one */
  if (c->attached && !c->retry_wait) {
    if (uvg__ts_send(&c->ts, &sm->m) != 0) {
      uvg__pool_free(pool_of(c), sm);
      return UVG_ECANCELED;
    }
    sm->in_ts = 1;
    c->in_ts++;
  } else {
    uvg__list_push(&c->early, &sm->early);
  }
  reserve(c, sm);
  c->msgs_out++;
  if (cb != NULL) c->cbs_out++;
  return 0;
}

int uvg_client_call_half_close(uvg_client_call_t *c) {
  if (c == NULL) return UVG_EINVAL;
  if (c->done) return UVG_ECANCELED;
  if (c->half_close_wanted) return UVG_ESTATE;
  c->half_close_wanted = 1;
  if (c->hedge != NULL) {
    c->hedge->half_closed = 1;
    for (unsigned i = 0; i < c->hedge->started; i++)
      if (c->hedge->attempts[i] != NULL) uvg_client_call_half_close(c->hedge->attempts[i]);
    return 0;
  }
  if (c->attached && !c->retry_wait && uvg__ts_end(&c->ts, NULL, 0) != 0)
    return UVG_ECANCELED;
  return 0;
}

int uvg_client_call_read(uvg_client_call_t *c) {
  if (c == NULL) return UVG_EINVAL;
  if (c->status_posted) return UVG_ECANCELED;
  if (c->read_pending) return UVG_ESTATE;
  c->read_pending = 1;
  /* a hedged call reads one more message from its winner when it has none */
  if (c->hedge != NULL && c->hedge->winner != NULL && uvg__list_empty(&c->msgs))
    uvg_client_call_read(c->hedge->winner);
  if (!c->delivering) maybe_deliver(c); /* else run_message goes on */
  return 0;
}

/* Once the status is known a cancel changes nothing, as in grpc-go (its
 * transport's closeStream() returns at once for a stream already done:
 * the status stays the server's) and grpc-js (a status it has delivered,
 * or a non-OK one, stands). It drops the response messages the
 * application will not read, for on_status waits for them; when they come
 * before an OK, the call did not complete for the application, and it
 * ends CANCELLED (grpc-js: an OK that waits for reads gives way). */
int uvg_client_call_cancel(uvg_client_call_t *c) {
  if (c == NULL) return UVG_EINVAL;
  int ok_unread = c->done && c->from_server && c->code == UVG_STATUS_OK &&
                  !uvg__list_empty(&c->msgs);
  if (c->done && !ok_unread) {
    if (!c->status_posted) {
      drop_unread(c);
      maybe_post_status(c);
    }
    return UVG_ECANCELED;
  }
  return uvg__client_call_abort(c, UVG_STATUS_CANCELLED, "Cancelled on client");
}

int uvg__client_call_abort(uvg_client_call_t *c, uvg_status_code_t code,
                           const char *msg) {
  if (c == NULL) return UVG_EINVAL;
  if (c->status_posted) return UVG_ECANCELED;
  if (!c->attached && !c->done)
    uvg__ccall_fail(c, code, msg);
  else
    abandon_with(c, code, msg);
  return 0;
}

/* ---- unary ---- */

typedef struct {
  uvg_unary_cb cb;
  void *user_data;
  uint8_t *reply;
  size_t len;
  int nreplies;
} unary_t;

static void unary_message(uvg_client_call_t *call, const uint8_t *msg, size_t len,
                          void *ud) {
  unary_t *u = ud;
  if (++u->nreplies == 1) {
    u->reply = uvg__malloc(len ? len : 1);
    /* an empty message may come as NULL, which memcpy must not see */
    if (u->reply != NULL && len > 0) memcpy(u->reply, msg, len);
    u->len = len;
  }
  uvg_client_call_read(call);
}

static void unary_status(uvg_client_call_t *call, const uvg_status_t *status,
                         const uvg_metadata_t *trailers, size_t n, void *ud) {
  unary_t *u = ud;
  (void)call;
  (void)trailers;
  (void)n;
  uvg_status_t st = *status;
  if (st.code == UVG_STATUS_OK && u->nreplies != 1) {
    st.code = UVG_STATUS_INTERNAL;
    st.message = u->nreplies == 0 ? "grpc: no response message on a unary call"
                                  : "grpc: more than one response message on a unary call";
  } else if (st.code == UVG_STATUS_OK && u->reply == NULL) {
    st.code = UVG_STATUS_INTERNAL;
    st.message = "out of memory";
  }
  u->cb(&st, st.code == UVG_STATUS_OK ? u->reply : NULL,
        st.code == UVG_STATUS_OK ? u->len : 0, u->user_data);
  uvg__free(u->reply);
  uvg__free(u);
}

int uvg_channel_unary(uvg_channel_t *ch, const char *method, const void *req,
                      size_t len, const uvg_client_call_options_t *opts,
                      uvg_unary_cb cb, void *user_data) {
  static const uvg_client_call_cbs_t cbs = {NULL, unary_message, unary_status};
  if (cb == NULL || (req == NULL && len > 0)) return UVG_EINVAL;
  unary_t *u = uvg__calloc(1, sizeof(*u));
  if (u == NULL) return UVG_ENOMEM;
  u->cb = cb;
  u->user_data = user_data;
  uvg_client_call_t *call;
  int rc = uvg_client_call_start(ch, method, opts, &cbs, u, &call);
  if (rc != 0) {
    uvg__free(u);
    return rc;
  }
  /* Errors here end the call through its status: a request that could
   * not be queued, for want of memory, too (the call would otherwise
   * wait for its deadline, or for ever). */
  rc = uvg_client_call_send(call, req, len, 0, NULL, NULL);
  if (rc == 0)
    uvg_client_call_half_close(call);
  else if (!call->done)
    fail_local(call, UVG_STATUS_INTERNAL, "out of memory");
  uvg_client_call_read(call);
  return 0;
}

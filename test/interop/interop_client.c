/*
 * The gRPC interop test client (grpc/grpc doc/interop-test-descriptions.md,
 * "Client") for grpc.testing.TestService, on the typed stubs that
 * protoc-gen-uvgrpc writes for grpc-proto's test.proto.
 *
 *   interop_client --server_port=N [--server_host=HOST]
 *                  [--server_host_override=NAME] [--test_case=NAME|all]
 *                  [--use_tls=true|false] [--use_test_ca=true|false]
 *                  [--ca_file=PEM] [--client_cert_file=PEM]
 *                  [--client_key_file=PEM]
 *
 * Prints "PASS name" or "FAIL name: reason", one line per case, and exits
 * 0 only if every case passed. --server_host_override becomes the
 * :authority of every call and, over TLS, the name the server's
 * certificate must carry. With --use_tls=true the server's certificate is
 * checked against gRPC's test CA (--use_test_ca=true: the testdata's
 * ca.pem, or --ca_file), or else the system's roots; --client_cert_file
 * and --client_key_file present a client certificate (mTLS).
 *
 * Everything runs on one loop. A case is a step function: it is called
 * when the case starts and again after each event of its RPCs (a response
 * message, a status) or of its timer and connectivity watch; it looks at
 * what has arrived, checks what the description asserts, starts the next
 * RPC, and in the end passes or fails the case. Each case has a channel of
 * its own and an overall time limit, so a broken case fails instead of
 * hanging. The outcome is printed once the channel and everything else of
 * the case has been released.
 *
 * The compressed flag of a response message is not part of the client
 * API (messages arrive decompressed), yet server_compressed_* assert it.
 * So for the four compression cases the channel connects through a wire
 * tap: a TCP relay on the same loop that forwards bytes unchanged and
 * notes the flag of every gRPC message in the HTTP/2 DATA frames going
 * by, in both directions. The cases check the responses' flags, and the
 * flags of their own requests as a self-check of the library's per-call
 * compression and of UVG_SEND_NO_COMPRESS. Over TLS the wire is
 * encrypted: the responses' flags come from
 * uvg_client_call_message_compressed() instead, and the requests'
 * self-check is left to the server, which checks every request's
 * expect_compressed against how it arrived.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uvgrpc.h>

#include "grpc/testing/test.uvgrpc.h"
#define ECHO_INITIAL "x-grpc-test-echo-initial"
#define ECHO_INITIAL_VALUE "test_initial_metadata_value"
#define ECHO_TRAILING "x-grpc-test-echo-trailing-bin"
static const uint8_t echo_trailing_value[] = {0xab, 0xab, 0xab};

/* Request and response sizes of the descriptions. */
#define LARGE_REQUEST_SIZE 271828
#define LARGE_RESPONSE_SIZE 314159
static const int32_t client_stream_sizes[] = {27182, 8, 1828, 45904};
static const int32_t server_stream_sizes[] = {31415, 9, 2653, 58979};

/* A case that has not ended by then fails; its cleanup gets as long. */
#define CASE_TIMEOUT_MS 10000
#define CLEANUP_TIMEOUT_MS 5000

#define MAX_RPCS 4 /* RPCs per case */
#define MAX_MSGS 8 /* responses kept per RPC */

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Zero bytes for request payloads and to compare response payloads with:
 * as many as the largest payload. Never written. */
static uint8_t zeros[LARGE_RESPONSE_SIZE];

static uv_loop_t *loop;

/* From the command line. */
static const char *server_host = "localhost";
static int server_port;
static const char *host_override; /* the calls' :authority, or NULL */
/* --service_config_json: the channels' default service config, or NULL */
static const char *service_config;
static char server_addr[300];     /* host:port, [v6]:port */
static uvg_channel_credentials_t *creds; /* every case's channel's */
static int use_tls;

typedef struct case_s case_t;
typedef struct tap_s tap_t;

/* Allocations of the test program itself: out of memory ends it. */
static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (p == NULL) {
    fprintf(stderr, "interop_client: out of memory\n");
    exit(1);
  }
  return p;
}

static void *xcalloc(size_t n) {
  return memset(xmalloc(n), 0, n ? n : 1);
}

static char *xstrndup(const char *s, size_t n) {
  char *p = xmalloc(n + 1);
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

/* ---------------------------------------------------------------------------
 * The wire tap
 * ------------------------------------------------------------------------- */

#define TAP_MAX_CONNS 4
#define TAP_MAX_STREAMS 8
#define TAP_MAX_FLAGS 4 /* messages noted per stream and direction */

enum { TAP_REQUESTS = 0, TAP_RESPONSES = 1 };

/* RFC 9113 3.4: the client connection preface. */
static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define H2_FRAME_HEADER_LEN 9
#define H2_DATA 0x0
#define H2_HEADERS 0x1
#define H2_FLAG_PADDED 0x8

/* gRPC length-prefixed message parsing of one stream in one direction. */
typedef struct {
  uint8_t prefix[5]; /* compressed flag, 4-byte length */
  size_t have;
  uint32_t body_left;
  uint8_t flags[TAP_MAX_FLAGS];
  size_t nflags;
} tap_msgs_t;

typedef struct {
  int conn_id;
  uint32_t id;
  tap_msgs_t dir[2];
} tap_stream_t;

typedef struct tap_conn_s tap_conn_t;

/* One direction of a relayed connection: the bytes read from one socket
 * are noted and written to the other, `to`. HTTP/2 frames are followed as
 * the bytes pass; nothing is buffered but a frame header. */
typedef struct {
  tap_conn_t *conn;
  int dir;
  uv_tcp_t *to;
  uv_shutdown_t shutdown; /* of `to`, after EOF from the other side */
  int shut;               /* that shutdown is done: `to` got all bytes */
  size_t preface_left;
  uint8_t head[H2_FRAME_HEADER_LEN];
  size_t head_have;
  uint8_t type, flags;
  uint32_t stream;
  uint32_t frame_left; /* payload bytes of the frame still to come */
  uint32_t data_left;  /* DATA: of those, data before the padding */
  int pad_next;        /* DATA with PADDED: the pad length comes next */
} tap_dir_t;

struct tap_conn_s {
  tap_t *tap;
  int id;
  uv_tcp_t sock[2]; /* 0: the client's side, 1: the server's */
  uv_connect_t connect;
  tap_dir_t dir[2]; /* TAP_REQUESTS reads sock[0] */
  int closing, handles;
};

struct tap_s {
  uv_tcp_t listener;
  int port;
  struct sockaddr_storage upstream;
  tap_conn_t *conns[TAP_MAX_CONNS];
  int nconns_total; /* connections accepted, ids */
  tap_stream_t streams[TAP_MAX_STREAMS];
  size_t nstreams;
  char error[128]; /* the first thing the tap could not follow */
  int closing, handles;
  void (*closed_cb)(tap_t *, void *);
  void *closed_data;
};

typedef struct {
  uv_write_t req;
  uv_buf_t buf;
} tap_write_t;

static void free_handle(uv_handle_t *h) {
  free(h);
}
static void free_data(uv_handle_t *h) {
  free(h->data);
}

static void tap_error(tap_t *t, const char *what) {
  if (t->error[0] == '\0') snprintf(t->error, sizeof(t->error), "%s", what);
}

/* The stream record for `id` on `conn_id`, made on first sight; NULL when
 * there are too many. */
static tap_stream_t *tap_stream(tap_t *t, int conn_id, uint32_t id) {
  for (size_t i = 0; i < t->nstreams; i++)
    if (t->streams[i].conn_id == conn_id && t->streams[i].id == id)
      return &t->streams[i];
  if (t->nstreams == TAP_MAX_STREAMS) {
    tap_error(t, "tap: too many streams");
    return NULL;
  }
  tap_stream_t *s = &t->streams[t->nstreams++];
  memset(s, 0, sizeof(*s));
  s->conn_id = conn_id;
  s->id = id;
  return s;
}

/* gRPC message framing (PROTOCOL-HTTP2.md, "Length-Prefixed-Message"):
 * notes the compressed flag of each message that starts in these bytes. */
static void tap_grpc_bytes(tap_dir_t *d, const uint8_t *p, size_t n) {
  tap_t *t = d->conn->tap;
  tap_stream_t *s = tap_stream(t, d->conn->id, d->stream);
  if (s == NULL) return;
  tap_msgs_t *m = &s->dir[d->dir];
  while (n > 0) {
    if (m->body_left > 0) {
      size_t take = n < m->body_left ? n : m->body_left;
      m->body_left -= (uint32_t)take;
      p += take;
      n -= take;
      continue;
    }
    m->prefix[m->have++] = *p++;
    n--;
    if (m->have == sizeof(m->prefix)) {
      m->have = 0;
      m->body_left = (uint32_t)m->prefix[1] << 24 |
                     (uint32_t)m->prefix[2] << 16 |
                     (uint32_t)m->prefix[3] << 8 | m->prefix[4];
      if (m->nflags == TAP_MAX_FLAGS)
        tap_error(t, "tap: too many messages on a stream");
      else
        m->flags[m->nflags++] = m->prefix[0];
    }
  }
}

/* RFC 9113 4.1 and 6.1: follows the frames in these bytes. */
static void tap_bytes(tap_dir_t *d, const uint8_t *p, size_t n) {
  while (n > 0) {
    if (d->preface_left > 0) {
      size_t take = n < d->preface_left ? n : d->preface_left;
      d->preface_left -= take;
      p += take;
      n -= take;
    } else if (d->head_have < H2_FRAME_HEADER_LEN) {
      d->head[d->head_have++] = *p++;
      n--;
      if (d->head_have < H2_FRAME_HEADER_LEN) continue;
      d->frame_left =
          (uint32_t)d->head[0] << 16 | (uint32_t)d->head[1] << 8 | d->head[2];
      d->type = d->head[3];
      d->flags = d->head[4];
      d->stream = ((uint32_t)d->head[5] << 24 | (uint32_t)d->head[6] << 16 |
                   (uint32_t)d->head[7] << 8 | d->head[8]) &
                  0x7fffffffu;
      d->pad_next = d->type == H2_DATA && (d->flags & H2_FLAG_PADDED);
      d->data_left = d->type == H2_DATA && !d->pad_next ? d->frame_left : 0;
      /* a client's HEADERS open its streams in the order of its calls */
      if (d->type == H2_HEADERS && d->dir == TAP_REQUESTS && d->stream != 0)
        tap_stream(d->conn->tap, d->conn->id, d->stream);
      if (d->frame_left == 0) d->head_have = 0;
    } else {
      size_t take;
      if (d->pad_next) {
        d->pad_next = 0;
        if (*p >= d->frame_left)
          tap_error(d->conn->tap, "tap: bad DATA padding");
        d->data_left = *p < d->frame_left ? d->frame_left - 1 - *p : 0;
        take = 1;
      } else if (d->data_left > 0) {
        take = n < d->data_left ? n : d->data_left;
        d->data_left -= (uint32_t)take;
        tap_grpc_bytes(d, p, take);
      } else { /* another frame's payload, or padding */
        take = n < d->frame_left ? n : d->frame_left;
      }
      d->frame_left -= (uint32_t)take;
      p += take;
      n -= take;
      if (d->frame_left == 0) d->head_have = 0;
    }
  }
}

static void tap_maybe_closed(tap_t *t) {
  if (t->closing && t->handles == 0 && t->closed_cb != NULL) {
    void (*cb)(tap_t *, void *) = t->closed_cb;
    t->closed_cb = NULL;
    cb(t, t->closed_data);
  }
}

static void tap_conn_sock_closed(uv_handle_t *h) {
  tap_conn_t *c = h->data;
  if (--c->handles > 0) return;
  tap_t *t = c->tap;
  for (int i = 0; i < TAP_MAX_CONNS; i++)
    if (t->conns[i] == c) t->conns[i] = NULL;
  free(c);
  t->handles--;
  tap_maybe_closed(t);
}

/* Closes both sockets; writes still queued are dropped. */
static void tap_conn_close(tap_conn_t *c) {
  if (c->closing) return;
  c->closing = 1;
  for (int i = 0; i < 2; i++)
    uv_close((uv_handle_t *)&c->sock[i], tap_conn_sock_closed);
}

static void tap_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  buf->base = xmalloc(suggested);
  buf->len = suggested;
}

static void tap_written(uv_write_t *req, int status) {
  tap_write_t *w = (tap_write_t *)req;
  (void)status; /* a failed write shows up as a read error or EOF */
  free(w->buf.base);
  free(w);
}

/* The bytes before an EOF have all been written on: once both directions
 * are through, the relay is done. */
static void tap_shut(uv_shutdown_t *req, int status) {
  tap_dir_t *d = req->data;
  tap_conn_t *c = d->conn;
  if (c->closing) return;
  d->shut = 1;
  if (status < 0 || c->dir[!d->dir].shut) tap_conn_close(c);
}

/* Forwards what one side sent to the other. HTTP/2 flow control bounds
 * what either peer sends before the other reads, so the write queues stay
 * small without pausing reads. */
static void tap_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  tap_conn_t *c = s->data;
  tap_dir_t *d = &c->dir[s == (uv_stream_t *)&c->sock[0] ? 0 : 1];
  if (nread > 0) {
    tap_bytes(d, (const uint8_t *)buf->base, (size_t)nread);
    tap_write_t *w = xmalloc(sizeof(*w));
    w->buf = uv_buf_init(buf->base, (unsigned)nread);
    if (uv_write(&w->req, (uv_stream_t *)d->to, &w->buf, 1, tap_written) == 0)
      return; /* the bytes are the write's now */
    free(w);
    free(buf->base);
    tap_conn_close(c);
    return;
  }
  free(buf->base);
  if (nread == UV_EOF) {
    uv_read_stop(s);
    d->shutdown.data = d;
    if (uv_shutdown(&d->shutdown, (uv_stream_t *)d->to, tap_shut) != 0)
      tap_conn_close(c);
  } else if (nread < 0) {
    tap_conn_close(c);
  }
}

static void tap_upstream_connected(uv_connect_t *req, int status) {
  tap_conn_t *c = req->data;
  if (status == UV_ECANCELED) return; /* closing */
  if (status < 0 ||
      uv_read_start((uv_stream_t *)&c->sock[0], tap_alloc, tap_read) != 0 ||
      uv_read_start((uv_stream_t *)&c->sock[1], tap_alloc, tap_read) != 0) {
    tap_error(c->tap, "tap: cannot connect to the server");
    tap_conn_close(c);
  }
}

static void tap_accept(uv_stream_t *server, int status) {
  tap_t *t = server->data;
  if (status < 0 || t->closing) return;
  int slot = -1;
  for (int i = 0; i < TAP_MAX_CONNS; i++)
    if (t->conns[i] == NULL) slot = i;
  if (slot < 0) {
    uv_tcp_t *drop = xmalloc(sizeof(*drop));
    tap_error(t, "tap: too many connections");
    uv_tcp_init(loop, drop);
    uv_accept(server, (uv_stream_t *)drop);
    uv_close((uv_handle_t *)drop, free_handle);
    return;
  }
  tap_conn_t *c = xcalloc(sizeof(*c));
  t->conns[slot] = c;
  t->handles++;
  c->tap = t;
  c->id = t->nconns_total++;
  c->handles = 2;
  for (int i = 0; i < 2; i++) {
    uv_tcp_init(loop, &c->sock[i]);
    c->sock[i].data = c;
    c->dir[i].conn = c;
    c->dir[i].dir = i;
    c->dir[i].to = &c->sock[!i];
  }
  c->dir[TAP_REQUESTS].preface_left = sizeof(h2_preface) - 1;
  c->connect.data = c;
  if (uv_accept(server, (uv_stream_t *)&c->sock[0]) != 0 ||
      uv_tcp_connect(&c->connect, &c->sock[1],
                     (const struct sockaddr *)&t->upstream,
                     tap_upstream_connected) != 0) {
    tap_error(t, "tap: cannot relay a connection");
    tap_conn_close(c);
  }
}

/* Starts a tap on 127.0.0.1 that relays to the server. Returns NULL with
 * a reason in `err` on failure. */
static tap_t *tap_start(char *err, size_t errlen) {
  tap_t *t = xcalloc(sizeof(*t));
  char port[16];
  snprintf(port, sizeof(port), "%d", server_port);
  uv_getaddrinfo_t gai;
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
  int rc = uv_getaddrinfo(loop, &gai, NULL, server_host, port, &hints);
  if (rc != 0) {
    snprintf(err, errlen, "tap: cannot resolve %s: %s", server_host,
             uv_strerror(rc));
    free(t);
    return NULL;
  }
  memcpy(&t->upstream, gai.addrinfo->ai_addr, gai.addrinfo->ai_addrlen);
  uv_freeaddrinfo(gai.addrinfo);
  struct sockaddr_in any;
  struct sockaddr_storage bound;
  int len = sizeof(bound);
  uv_ip4_addr("127.0.0.1", 0, &any);
  uv_tcp_init(loop, &t->listener);
  t->listener.data = t;
  t->handles = 1;
  if ((rc = uv_tcp_bind(&t->listener, (const struct sockaddr *)&any, 0)) != 0 ||
      (rc = uv_listen((uv_stream_t *)&t->listener, 8, tap_accept)) != 0 ||
      (rc = uv_tcp_getsockname(&t->listener, (struct sockaddr *)&bound,
                               &len)) != 0) {
    snprintf(err, errlen, "tap: cannot listen: %s", uv_strerror(rc));
    t->closing = 1;
    uv_close((uv_handle_t *)&t->listener, free_data);
    return NULL;
  }
  t->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
  return t;
}

static void tap_listener_closed(uv_handle_t *h) {
  tap_t *t = h->data;
  t->handles--;
  tap_maybe_closed(t);
}

/* Closes the listener and every relayed connection; `cb` runs once all is
 * released (free the tap then). */
static void tap_close(tap_t *t, void (*cb)(tap_t *, void *), void *data) {
  t->closing = 1;
  t->closed_cb = cb;
  t->closed_data = data;
  uv_close((uv_handle_t *)&t->listener, tap_listener_closed);
  for (int i = 0; i < TAP_MAX_CONNS; i++)
    if (t->conns[i] != NULL) tap_conn_close(t->conns[i]);
}

/* The compressed flags noted in `dir`, stream by stream in the order the
 * calls opened them: "[0][1,0]" is a first stream with one uncompressed
 * message and a second one with a compressed and an uncompressed one. */
static const char *tap_flags(const tap_t *t, int dir, char *buf, size_t cap) {
  size_t n = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < t->nstreams; i++) {
    const tap_msgs_t *m = &t->streams[i].dir[dir];
    n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "[");
    for (size_t j = 0; j < m->nflags; j++)
      n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "%s%u",
                            j ? "," : "", m->flags[j]);
    n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "]");
  }
  return buf;
}

/* ---------------------------------------------------------------------------
 * Cases and their RPCs
 * ------------------------------------------------------------------------- */

/* One RPC of a case: what arrived, recorded for the case's checks. */
typedef struct {
  case_t *k;
  const char *what;        /* names the RPC in failure reasons */
  uvg_client_call_t *call; /* from start until on_status (the typed call's raw) */
  const ProtobufCMessageDescriptor *response_type;
  ProtobufCMessage *msgs[MAX_MSGS]; /* responses, unpacked (NULL: invalid) */
  size_t msg_len[MAX_MSGS];         /* their serialized sizes */
  uint8_t compressed[MAX_MSGS];     /* ... and whether they came compressed */
  size_t nmsgs;                     /* responses received, kept or not */
  int ended;
  char *echo_initial;     /* x-grpc-test-echo-initial of the headers */
  uint8_t *echo_trailing; /* x-grpc-test-echo-trailing-bin of the trailers */
  size_t echo_trailing_len;
  uvg_status_code_t code;
  char *message;
} rpc_t;

typedef struct {
  const char *name;
  void (*step)(case_t *k);
  int tapped; /* runs through the wire tap */
} case_def_t;

struct case_s {
  const case_def_t *def;
  uvg_channel_t *ch;
  tap_t *tap;
  uv_timer_t timer; /* the time limit, then the cleanup's */
  uv_timer_t wake;  /* a step that waits for time to pass */
  int step;
  int sent;         /* ping_pong: requests sent */
  int over;         /* the outcome is decided */
  char reason[512]; /* empty when the case passed */
  rpc_t rpc[MAX_RPCS];
  int calls_open, watches_open, channel_open, handles_open;
  int released;
};

static void maybe_release(case_t *k);

static void step(case_t *k) {
  if (!k->over) k->def->step(k);
}

static void on_channel_closed(uvg_channel_t *ch, void *data) {
  case_t *k = data;
  (void)ch;
  k->channel_open = 0;
  maybe_release(k);
}

static void on_tap_closed(tap_t *t, void *data) {
  case_t *k = data;
  free(t);
  k->tap = NULL;
  maybe_release(k);
}

static void on_cleanup_timeout(uv_timer_t *timer) {
  case_t *k = timer->data;
  printf(
      "FAIL %s: %s%snot released within %d ms (calls %d, watches %d, "
      "channel %d, tap %d)\n",
      k->def->name, k->reason, k->reason[0] ? "; " : "", CLEANUP_TIMEOUT_MS,
      k->calls_open, k->watches_open, k->channel_open, k->tap != NULL);
  fflush(stdout);
  exit(1);
}

/* Decides the outcome once, then releases the case: the channel closes
 * (calls still open end CANCELLED), then the tap. */
static void end_case(case_t *k) {
  if (k->over) return;
  k->over = 1;
  uv_timer_stop(&k->wake);
  uv_timer_start(&k->timer, on_cleanup_timeout, CLEANUP_TIMEOUT_MS, 0);
  uvg_channel_close(k->ch, on_channel_closed, k);
  maybe_release(k);
}

static void pass(case_t *k) {
  end_case(k);
}

static void fail(case_t *k, const char *fmt, ...) {
  if (k->over) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(k->reason, sizeof(k->reason), fmt, ap);
  va_end(ap);
  if (k->reason[0] == '\0') snprintf(k->reason, sizeof(k->reason), "failed");
  /* what the tap saw go wrong may be why */
  if (k->tap != NULL && k->tap->error[0] != '\0' &&
      strcmp(k->reason, k->tap->error) != 0) {
    size_t n = strlen(k->reason);
    snprintf(k->reason + n, sizeof(k->reason) - n, " (%s)", k->tap->error);
  }
  end_case(k);
}

static void on_handle_closed(uv_handle_t *h) {
  case_t *k = h->data;
  if (--k->handles_open == 0) k->released = 1;
}

static void maybe_release(case_t *k) {
  if (!k->over || k->calls_open > 0 || k->watches_open > 0 || k->channel_open)
    return;
  if (k->tap != NULL) {
    if (!k->tap->closing) tap_close(k->tap, on_tap_closed, k);
    return;
  }
  if (k->handles_open == 2 && !uv_is_closing((uv_handle_t *)&k->timer)) {
    uv_close((uv_handle_t *)&k->timer, on_handle_closed);
    uv_close((uv_handle_t *)&k->wake, on_handle_closed);
  }
}

static void on_case_timeout(uv_timer_t *timer) {
  case_t *k = timer->data;
  fail(k, "did not end within %d ms (at step %d)", CASE_TIMEOUT_MS, k->step);
}

static void on_wake(uv_timer_t *timer) {
  step(timer->data);
}

/* Writes `s` into `out` as a C string literal would show it. */
static const char *quoted(const char *s, char *out, size_t cap) {
  size_t n = 0;
  for (; *s != '\0' && n + 5 < cap; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '\n')
      n += (size_t)snprintf(out + n, cap - n, "\\n");
    else if (ch == '\r')
      n += (size_t)snprintf(out + n, cap - n, "\\r");
    else if (ch == '\t')
      n += (size_t)snprintf(out + n, cap - n, "\\t");
    else if (ch == '"' || ch == '\\')
      n += (size_t)snprintf(out + n, cap - n, "\\%c", ch);
    else if (ch < 0x20 || ch == 0x7f)
      n += (size_t)snprintf(out + n, cap - n, "\\x%02x", ch);
    else
      out[n++] = (char)ch;
  }
  out[n] = '\0';
  return out;
}

/* ---- RPC callbacks ---- */

static const uvg_metadata_t *md_find(const uvg_metadata_t *md, size_t n,
                                     const char *key) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(md[i].key, key) == 0) return &md[i];
  return NULL;
}

static void rpc_metadata(uvg_client_call_t *call, const uvg_metadata_t *md,
                         size_t n, void *user_data) {
  rpc_t *r = user_data;
  (void)call;
  const uvg_metadata_t *m = md_find(md, n, ECHO_INITIAL);
  if (m != NULL && r->echo_initial == NULL)
    r->echo_initial = xstrndup((const char *)m->value, m->value_len);
}

/* Keeps a copy of response `m`: the stubs hand it over for the callback
 * only, and the cases look at it later. */
static void keep_message(rpc_t *r, uvg_client_call_t *call, const ProtobufCMessage *m) {
  if (r->nmsgs < MAX_MSGS) {
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = xmalloc(len);
    protobuf_c_message_pack(m, buf);
    r->msgs[r->nmsgs] = protobuf_c_message_unpack(m->descriptor, NULL, len, buf);
    r->msg_len[r->nmsgs] = len;
    free(buf);
    r->compressed[r->nmsgs] = (uint8_t)uvg_client_call_message_compressed(call);
  }
  r->nmsgs++;
}

/* A response of a method with streamed responses: kept, the next asked
 * for. */
static void rpc_message(uvg_client_call_t *call, const ProtobufCMessage *m,
                        void *user_data) {
  rpc_t *r = user_data;
  keep_message(r, call, m);
  uvg_client_call_read(call);
  step(r->k);
}

static void rpc_status(uvg_client_call_t *call, const uvg_status_t *status,
                       const uvg_metadata_t *trailers, size_t n,
                       void *user_data) {
  rpc_t *r = user_data;
  case_t *k = r->k;
  (void)call;
  r->call = NULL;
  r->ended = 1;
  r->code = status->code;
  r->message = xstrndup(status->message, strlen(status->message));
  const uvg_metadata_t *m = md_find(trailers, n, ECHO_TRAILING);
  if (m != NULL) {
    r->echo_trailing = xmalloc(m->value_len);
    memcpy(r->echo_trailing, m->value, m->value_len);
    r->echo_trailing_len = m->value_len;
  }
  k->calls_open--;
  step(k);
  maybe_release(k);
}

/* ---- the methods, each through its generated stub ----
 *
 * Each method's typed callbacks hand what they get to the ones above; a
 * method with one response gets it with its status. */

#define TYPED(svc, m) grpc__testing__##svc##__##m

#define SINGLE_RESPONSE_CBS(svc, m, resp_t)                                   \
  static void svc##_##m##_metadata(TYPED(svc, m##__client_call_t) * c,        \
                                   const uvg_metadata_t *md, size_t n,        \
                                   void *ud) {                                \
    rpc_metadata(TYPED(svc, m##__client_raw)(c), md, n, ud);                  \
  }                                                                           \
  static void svc##_##m##_status(TYPED(svc, m##__client_call_t) * c,          \
                                 const uvg_status_t *st, const resp_t *reply, \
                                 const uvg_metadata_t *t, size_t n,          \
                                 void *ud) {                                  \
    if (reply != NULL)                                                        \
      keep_message(ud, TYPED(svc, m##__client_raw)(c),                        \
                   (const ProtobufCMessage *)reply);                          \
    rpc_status(TYPED(svc, m##__client_raw)(c), st, t, n, ud);                \
  }                                                                           \
  static const TYPED(svc, m##__client_cbs_t)                                  \
      svc##_##m##_cbs = {svc##_##m##_metadata, svc##_##m##_status};

#define STREAMED_RESPONSE_CBS(svc, m, resp_t)                                 \
  static void svc##_##m##_metadata(TYPED(svc, m##__client_call_t) * c,        \
                                   const uvg_metadata_t *md, size_t n,        \
                                   void *ud) {                                \
    rpc_metadata(TYPED(svc, m##__client_raw)(c), md, n, ud);                  \
  }                                                                           \
  static void svc##_##m##_message(TYPED(svc, m##__client_call_t) * c,         \
                                  const resp_t *msg, void *ud) {              \
    rpc_message(TYPED(svc, m##__client_raw)(c), (const ProtobufCMessage *)msg, \
                ud);                                                          \
  }                                                                           \
  static void svc##_##m##_status(TYPED(svc, m##__client_call_t) * c,          \
                                 const uvg_status_t *st,                      \
                                 const uvg_metadata_t *t, size_t n,          \
                                 void *ud) {                                  \
    rpc_status(TYPED(svc, m##__client_raw)(c), st, t, n, ud);                \
  }                                                                           \
  static const TYPED(svc, m##__client_cbs_t) svc##_##m##_cbs = {              \
      svc##_##m##_metadata, svc##_##m##_message, svc##_##m##_status};

/* Starts the call as r->call; `req` goes with the start (unary and
 * server-streaming methods) or is NULL. */
typedef int (*start_fn)(uvg_channel_t *ch, const ProtobufCMessage *req,
                        const uvg_client_call_options_t *o, rpc_t *r);

#define START_WITH_REQUEST(svc, m, req_t)                                     \
  static int svc##_##m##_start(uvg_channel_t *ch, const ProtobufCMessage *req, \
                               const uvg_client_call_options_t *o, rpc_t *r) { \
    TYPED(svc, m##__client_call_t) * c;                                       \
    int rc = TYPED(svc, m##__client_start)(ch, (const req_t *)req, o,         \
                                           &svc##_##m##_cbs, r, &c);          \
    if (rc == 0) r->call = TYPED(svc, m##__client_raw)(c);                    \
    return rc;                                                                \
  }

#define START_STREAMING(svc, m)                                               \
  static int svc##_##m##_start(uvg_channel_t *ch, const ProtobufCMessage *req, \
                               const uvg_client_call_options_t *o, rpc_t *r) { \
    TYPED(svc, m##__client_call_t) * c;                                       \
    (void)req;                                                                \
    int rc = TYPED(svc, m##__client_start)(ch, o, &svc##_##m##_cbs, r, &c);   \
    if (rc == 0) r->call = TYPED(svc, m##__client_raw)(c);                    \
    return rc;                                                                \
  }

SINGLE_RESPONSE_CBS(TestService, EmptyCall, Grpc__Testing__Empty)
START_WITH_REQUEST(TestService, EmptyCall, Grpc__Testing__Empty)
SINGLE_RESPONSE_CBS(TestService, UnaryCall, Grpc__Testing__SimpleResponse)
START_WITH_REQUEST(TestService, UnaryCall, Grpc__Testing__SimpleRequest)
SINGLE_RESPONSE_CBS(TestService, StreamingInputCall,
                    Grpc__Testing__StreamingInputCallResponse)
START_STREAMING(TestService, StreamingInputCall)
STREAMED_RESPONSE_CBS(TestService, StreamingOutputCall,
                      Grpc__Testing__StreamingOutputCallResponse)
START_WITH_REQUEST(TestService, StreamingOutputCall,
                   Grpc__Testing__StreamingOutputCallRequest)
STREAMED_RESPONSE_CBS(TestService, FullDuplexCall,
                      Grpc__Testing__StreamingOutputCallResponse)
START_STREAMING(TestService, FullDuplexCall)
SINGLE_RESPONSE_CBS(TestService, UnimplementedCall, Grpc__Testing__Empty)
START_WITH_REQUEST(TestService, UnimplementedCall, Grpc__Testing__Empty)
SINGLE_RESPONSE_CBS(UnimplementedService, UnimplementedCall, Grpc__Testing__Empty)
START_WITH_REQUEST(UnimplementedService, UnimplementedCall, Grpc__Testing__Empty)

typedef struct {
  start_fn start;
  const ProtobufCMessageDescriptor *response_type;
  int request_at_start;  /* unary, server streaming */
  int streamed_response; /* server streaming, bidi: read one at a time */
} method_t;

static const method_t EMPTY_CALL = {TestService_EmptyCall_start,
                                    &grpc__testing__empty__descriptor, 1, 0};
static const method_t UNARY_CALL = {
    TestService_UnaryCall_start, &grpc__testing__simple_response__descriptor, 1, 0};
static const method_t STREAMING_INPUT_CALL = {
    TestService_StreamingInputCall_start,
    &grpc__testing__streaming_input_call_response__descriptor, 0, 0};
static const method_t STREAMING_OUTPUT_CALL = {
    TestService_StreamingOutputCall_start,
    &grpc__testing__streaming_output_call_response__descriptor, 1, 1};
static const method_t FULL_DUPLEX_CALL = {
    TestService_FullDuplexCall_start,
    &grpc__testing__streaming_output_call_response__descriptor, 0, 1};
static const method_t UNIMPLEMENTED_CALL = {
    TestService_UnimplementedCall_start, &grpc__testing__empty__descriptor, 1, 0};
static const method_t UNIMPLEMENTED_SERVICE_CALL = {
    UnimplementedService_UnimplementedCall_start,
    &grpc__testing__empty__descriptor, 1, 0};

/* Starts `m` as k->rpc[i], with `req` if the method takes it at the start
 * (then it is sent with the half-close). `o` may be NULL. Returns 0, or
 * fails the case. */
static int rpc_call(case_t *k, int i, const char *what, const method_t *m,
                    const uvg_client_call_options_t *o,
                    const ProtobufCMessage *req) {
  rpc_t *r = &k->rpc[i];
  uvg_client_call_options_t opts;
  if (o != NULL)
    opts = *o;
  else
    memset(&opts, 0, sizeof(opts));
  opts.authority = host_override;
  r->k = k;
  r->what = what;
  r->response_type = m->response_type;
  int rc = m->start(k->ch, req, &opts, r);
  if (rc != 0) {
    fail(k, "%s: starting the call: %s", what, uvg_strerror(rc));
    return rc;
  }
  k->calls_open++;
  /* A single response comes with the status, read by the stub. */
  if (m->streamed_response && (rc = uvg_client_call_read(r->call)) != 0) {
    fail(k, "%s: uvg_client_call_read: %s", what, uvg_strerror(rc));
    return rc;
  }
  return 0;
}

/* Starts `m`, a method with streamed requests, as k->rpc[i]. */
static int rpc_start(case_t *k, int i, const char *what, const method_t *m,
                     const uvg_client_call_options_t *o) {
  return rpc_call(k, i, what, m, o, NULL);
}

static void on_request_sent(uvg_client_call_t *call, int status, void *data) {
  (void)call;
  (void)status;
  (void)data;
}

/* Sends `m` on k->rpc[i], packed once into the library's buffer and sent
 * without a copy. Returns 0; UVG_ECANCELED when the call has ended or is
 * ending (its status will tell why); else fails the case. */
static int rpc_send(case_t *k, int i, const ProtobufCMessage *m,
                    unsigned flags) {
  rpc_t *r = &k->rpc[i];
  int rc = r->call != NULL ? uvg_client_call_send_message(r->call, m, flags,
                                                          on_request_sent, NULL)
                           : UVG_ECANCELED;
  if (rc != 0 && rc != UVG_ECANCELED)
    fail(k, "%s: uvg_client_call_send_message: %s", r->what, uvg_strerror(rc));
  return rc;
}

/* As rpc_send(). */
static int rpc_half_close(case_t *k, int i) {
  rpc_t *r = &k->rpc[i];
  int rc =
      r->call != NULL ? uvg_client_call_half_close(r->call) : UVG_ECANCELED;
  if (rc != 0 && rc != UVG_ECANCELED)
    fail(k, "%s: uvg_client_call_half_close: %s", r->what, uvg_strerror(rc));
  return rc;
}

/* Starts, sends one request and half-closes. `flags` are for a method
 * with streamed requests; the stub sends the others' with the start. */
static int rpc_unary(case_t *k, int i, const char *what, const method_t *m,
                     const uvg_client_call_options_t *o,
                     const ProtobufCMessage *req, unsigned flags) {
  if (m->request_at_start) {
    if (flags != 0) {
      fail(k, "%s: per-message flags on a request sent with the start", what);
      return -1;
    }
    return rpc_call(k, i, what, m, o, req);
  }
  if (rpc_start(k, i, what, m, o) != 0 || rpc_send(k, i, req, flags) != 0)
    return -1;
  return rpc_half_close(k, i);
}

static void rpc_free(rpc_t *r) {
  for (size_t i = 0; i < r->nmsgs && i < MAX_MSGS; i++)
    if (r->msgs[i] != NULL) protobuf_c_message_free_unpacked(r->msgs[i], NULL);
  free(r->echo_initial);
  free(r->echo_trailing);
  free(r->message);
}

/* ---- the assertions: each returns 1, or fails the case and returns 0 ---- */

static int expect_status(case_t *k, const rpc_t *r, uvg_status_code_t want) {
  if (r->code == want) return 1;
  char q[256];
  fail(k, "%s: status %s (\"%s\"), expected %s", r->what,
       uvg_status_code_name(r->code),
       quoted(r->message ? r->message : "", q, sizeof(q)),
       uvg_status_code_name(want));
  return 0;
}

/* Exactly `want` responses, each a valid message of the response type. */
static int expect_responses(case_t *k, const rpc_t *r, size_t want) {
  if (r->nmsgs != want) {
    fail(k, "%s: %zu responses, expected exactly %zu", r->what, r->nmsgs, want);
    return 0;
  }
  for (size_t i = 0; i < want && i < MAX_MSGS; i++)
    if (r->msgs[i] == NULL) {
      fail(k, "%s: response %zu is not a valid %s", r->what, i,
           r->response_type->name);
      return 0;
    }
  return 1;
}

/* A payload of `size` zero bytes of type COMPRESSABLE. */
static int expect_payload(case_t *k, const rpc_t *r, size_t i,
                          const Grpc__Testing__Payload *p, int32_t size) {
  if (p == NULL) {
    fail(k, "%s: response %zu has no payload", r->what, i);
  } else if (p->type != GRPC__TESTING__PAYLOAD_TYPE__COMPRESSABLE) {
    fail(k, "%s: response %zu has payload type %d, expected COMPRESSABLE",
         r->what, i, (int)p->type);
  } else if (p->body.len != (size_t)size) {
    fail(k, "%s: response %zu has a payload of %zu bytes, expected %d", r->what,
         i, p->body.len, (int)size);
  } else if (size > 0 && memcmp(p->body.data, zeros, (size_t)size) != 0) {
    fail(k, "%s: response %zu has a payload that is not all zeros", r->what, i);
  } else {
    return 1;
  }
  return 0;
}

/* OK with one SimpleResponse carrying `size` zero bytes. */
static int expect_simple_ok(case_t *k, const rpc_t *r, int32_t size) {
  if (!expect_status(k, r, UVG_STATUS_OK) || !expect_responses(k, r, 1))
    return 0;
  const Grpc__Testing__SimpleResponse *resp =
      (const Grpc__Testing__SimpleResponse *)r->msgs[0];
  return expect_payload(k, r, 0, resp->payload, size);
}

/* StreamingOutputCallResponses with payloads of these sizes, in order. */
static int expect_stream_payloads(case_t *k, const rpc_t *r,
                                  const int32_t *sizes, size_t n) {
  if (!expect_responses(k, r, n)) return 0;
  for (size_t i = 0; i < n; i++) {
    const Grpc__Testing__StreamingOutputCallResponse *resp =
        (const Grpc__Testing__StreamingOutputCallResponse *)r->msgs[i];
    if (!expect_payload(k, r, i, resp->payload, sizes[i])) return 0;
  }
  return 1;
}

static int expect_echoed_metadata(case_t *k, const rpc_t *r) {
  if (r->echo_initial == NULL) {
    fail(k, "%s: no " ECHO_INITIAL " in the initial metadata", r->what);
  } else if (strcmp(r->echo_initial, ECHO_INITIAL_VALUE) != 0) {
    char q[128];
    fail(k, "%s: initial metadata " ECHO_INITIAL " is \"%s\", expected \"%s\"",
         r->what, quoted(r->echo_initial, q, sizeof(q)), ECHO_INITIAL_VALUE);
  } else if (r->echo_trailing == NULL) {
    fail(k, "%s: no " ECHO_TRAILING " in the trailing metadata", r->what);
  } else if (r->echo_trailing_len != sizeof(echo_trailing_value) ||
             memcmp(r->echo_trailing, echo_trailing_value,
                    sizeof(echo_trailing_value)) != 0) {
    fail(k,
         "%s: trailing metadata " ECHO_TRAILING " is %zu bytes, not 0xababab",
         r->what, r->echo_trailing_len);
  } else {
    return 1;
  }
  return 0;
}

/* The responses' compressed flags as the API reports them, in tap_flags()
 * form: one bracket per RPC started. */
static const char *api_flags(const case_t *k, char *buf, size_t cap) {
  size_t n = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < MAX_RPCS && k->rpc[i].k != NULL; i++) {
    const rpc_t *r = &k->rpc[i];
    n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "[");
    for (size_t j = 0; j < r->nmsgs && j < MAX_MSGS; j++)
      n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "%s%u",
                            j ? "," : "", r->compressed[j]);
    n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "]");
  }
  return buf;
}

/* The tap saw these compressed flags (see tap_flags()) going `dir`; over
 * TLS see the top of the file. */
static int expect_flags(case_t *k, int dir, const char *want,
                        const char *what) {
  char got[128];
  if (k->tap == NULL) {
    if (dir == TAP_REQUESTS) return 1;
    if (strcmp(api_flags(k, got, sizeof(got)), want) == 0) return 1;
    fail(k, "%s: compressed flags per call were %s, expected %s", what, got,
         want);
    return 0;
  }
  if (k->tap->error[0] != '\0') {
    fail(k, "%s", k->tap->error);
    return 0;
  }
  if (strcmp(tap_flags(k->tap, dir, got, sizeof(got)), want) == 0) return 1;
  fail(k, "%s: compressed flags per call were %s, expected %s", what, got,
       want);
  return 0;
}

/* ---- request messages ---- */

static void set_payload(Grpc__Testing__Payload *p, int32_t size) {
  grpc__testing__payload__init(p);
  p->body.data = zeros;
  p->body.len = (size_t)size;
}

/* large_unary's request: 271828 zero bytes in, 314159 asked for. */
static void large_request(Grpc__Testing__SimpleRequest *req,
                          Grpc__Testing__Payload *p) {
  grpc__testing__simple_request__init(req);
  set_payload(p, LARGE_REQUEST_SIZE);
  req->response_size = LARGE_RESPONSE_SIZE;
  req->payload = p;
}

static const uvg_metadata_t echo_md[] = {
    {ECHO_INITIAL, (const uint8_t *)ECHO_INITIAL_VALUE,
     sizeof(ECHO_INITIAL_VALUE) - 1},
    {ECHO_TRAILING, echo_trailing_value, sizeof(echo_trailing_value)},
};


/* ---------------------------------------------------------------------------
 * The cases, in the order of the descriptions
 * ------------------------------------------------------------------------- */

static void empty_unary(case_t *k) {
  rpc_t *r = &k->rpc[0];
  if (k->step == 0) {
    Grpc__Testing__Empty req = GRPC__TESTING__EMPTY__INIT;
    k->step = 1;
    rpc_unary(k, 0, "EmptyCall", &EMPTY_CALL, NULL, &req.base, 0);
    return;
  }
  if (!r->ended) return;
  /* the description's ideal: the response serialized to zero bytes */
  if (expect_status(k, r, UVG_STATUS_OK) && expect_responses(k, r, 1)) {
    if (r->msg_len[0] != 0)
      fail(k, "EmptyCall: the response is %zu bytes, expected 0",
           r->msg_len[0]);
    else
      pass(k);
  }
}

static void large_unary(case_t *k) {
  rpc_t *r = &k->rpc[0];
  if (k->step == 0) {
    Grpc__Testing__SimpleRequest req;
    Grpc__Testing__Payload p;
    large_request(&req, &p);
    k->step = 1;
    rpc_unary(k, 0, "UnaryCall", &UNARY_CALL, NULL,
              &req.base, 0);
    return;
  }
  if (!r->ended) return;
  if (expect_simple_ok(k, r, LARGE_RESPONSE_SIZE)) pass(k);
}

/* The probe (uncompressed, claiming to be compressed), then a compressed
 * and an uncompressed call, with the call's compression as gRPC's C++
 * client sets it. */
static void client_compressed_unary(case_t *k) {
  static const char *whats[] = {
      "UnaryCall (probe: uncompressed, expect_compressed)",
      "UnaryCall (compressed)", "UnaryCall (uncompressed)"};
  int i = k->step - 1; /* the RPC waited for */
  if (i >= 0 && !k->rpc[i].ended) return;
  if (i == 0 && !expect_status(k, &k->rpc[0], UVG_STATUS_INVALID_ARGUMENT))
    return;
  if (i >= 1 && !expect_simple_ok(k, &k->rpc[i], LARGE_RESPONSE_SIZE)) return;
  if (i == 2) {
    if (expect_flags(k, TAP_REQUESTS, "[0][1][0]",
                     "requests (client self-check)"))
      pass(k);
    return;
  }
  int next = i + 1;
  Grpc__Testing__SimpleRequest req;
  Grpc__Testing__Payload p;
  Grpc__Testing__BoolValue expect = GRPC__TESTING__BOOL_VALUE__INIT;
  large_request(&req, &p);
  expect.value = next != 2;
  req.expect_compressed = &expect;
  uvg_client_call_options_t o = {.compression = next == 1 ? UVG_COMPRESS_GZIP
                                                          : UVG_COMPRESS_NONE};
  k->step++;
  rpc_unary(k, next, whats[next], &UNARY_CALL, &o,
            &req.base, 0);
}

static void server_compressed_unary(case_t *k) {
  static const char *whats[] = {"UnaryCall (response_compressed=true)",
                                "UnaryCall (response_compressed=false)"};
  int i = k->step - 1;
  if (i >= 0 && (!k->rpc[i].ended ||
                 !expect_simple_ok(k, &k->rpc[i], LARGE_RESPONSE_SIZE)))
    return;
  if (i == 1) {
    if (expect_flags(k, TAP_RESPONSES, "[1][0]", "responses")) pass(k);
    return;
  }
  int next = i + 1;
  Grpc__Testing__SimpleRequest req;
  Grpc__Testing__Payload p;
  Grpc__Testing__BoolValue compressed = GRPC__TESTING__BOOL_VALUE__INIT;
  large_request(&req, &p);
  compressed.value = next == 0;
  req.response_compressed = &compressed;
  k->step++;
  rpc_unary(k, next, whats[next], &UNARY_CALL, NULL,
            &req.base, 0);
}

static void client_streaming(case_t *k) {
  rpc_t *r = &k->rpc[0];
  if (k->step == 0) {
    k->step = 1;
    if (rpc_start(k, 0, "StreamingInputCall", &STREAMING_INPUT_CALL, NULL) != 0)
      return;
    for (size_t i = 0; i < ARRAY_SIZE(client_stream_sizes); i++) {
      Grpc__Testing__StreamingInputCallRequest req =
          GRPC__TESTING__STREAMING_INPUT_CALL_REQUEST__INIT;
      Grpc__Testing__Payload p;
      set_payload(&p, client_stream_sizes[i]);
      req.payload = &p;
      if (rpc_send(k, 0, &req.base, 0) != 0) return;
    }
    rpc_half_close(k, 0);
    return;
  }
  if (!r->ended || !expect_status(k, r, UVG_STATUS_OK) ||
      !expect_responses(k, r, 1))
    return;
  const Grpc__Testing__StreamingInputCallResponse *resp =
      (const Grpc__Testing__StreamingInputCallResponse *)r->msgs[0];
  if (resp->aggregated_payload_size != 74922)
    fail(k, "StreamingInputCall: aggregated_payload_size %d, expected 74922",
         (int)resp->aggregated_payload_size);
  else
    pass(k);
}

/* The probe (uncompressed, claiming to be compressed) on a call without
 * compression; then one gzip call with a compressed message and one sent
 * with UVG_SEND_NO_COMPRESS, as gRPC's C++ client does it. */
static void client_compressed_streaming(case_t *k) {
  rpc_t *probe = &k->rpc[0], *r = &k->rpc[1];
  Grpc__Testing__StreamingInputCallRequest req =
      GRPC__TESTING__STREAMING_INPUT_CALL_REQUEST__INIT;
  Grpc__Testing__Payload p;
  Grpc__Testing__BoolValue expect = GRPC__TESTING__BOOL_VALUE__INIT;
  req.payload = &p;
  req.expect_compressed = &expect;
  switch (k->step) {
    case 0:
      k->step = 1;
      set_payload(&p, 27182);
      expect.value = 1;
      rpc_unary(k, 0,
                "StreamingInputCall (probe: uncompressed, expect_compressed)",
                &STREAMING_INPUT_CALL, NULL,
                &req.base, 0);
      return;
    case 1: {
      if (!probe->ended ||
          !expect_status(k, probe, UVG_STATUS_INVALID_ARGUMENT))
        return;
      uvg_client_call_options_t o = {.compression = UVG_COMPRESS_GZIP};
      k->step = 2;
      if (rpc_start(k, 1, "StreamingInputCall (compressed, then not)",
                    &STREAMING_INPUT_CALL,
                    &o) != 0)
        return;
      set_payload(&p, 27182);
      expect.value = 1;
      if (rpc_send(k, 1, &req.base, 0) != 0) return;
      set_payload(&p, 45904);
      expect.value = 0;
      if (rpc_send(k, 1, &req.base, UVG_SEND_NO_COMPRESS) != 0) return;
      rpc_half_close(k, 1);
      return;
    }
    default:
      if (!r->ended || !expect_status(k, r, UVG_STATUS_OK) ||
          !expect_responses(k, r, 1))
        return;
      const Grpc__Testing__StreamingInputCallResponse *resp =
          (const Grpc__Testing__StreamingInputCallResponse *)r->msgs[0];
      if (resp->aggregated_payload_size != 73086)
        fail(k, "%s: aggregated_payload_size %d, expected 73086", r->what,
             (int)resp->aggregated_payload_size);
      else if (expect_flags(k, TAP_REQUESTS, "[0][1,0]",
                            "requests (client self-check)"))
        pass(k);
  }
}

/* Starts a StreamingOutputCall asking for responses of these sizes, the
 * i-th compressed if compressed[i] (compressed may be NULL). */
static void start_streaming_output(case_t *k, const int32_t *sizes,
                                   const int *compressed, size_t n) {
  Grpc__Testing__StreamingOutputCallRequest req =
      GRPC__TESTING__STREAMING_OUTPUT_CALL_REQUEST__INIT;
  Grpc__Testing__ResponseParameters params[4], *pp[4];
  Grpc__Testing__BoolValue flags[4];
  for (size_t i = 0; i < n; i++) {
    grpc__testing__response_parameters__init(&params[i]);
    params[i].size = sizes[i];
    if (compressed != NULL) {
      grpc__testing__bool_value__init(&flags[i]);
      flags[i].value = compressed[i] != 0;
      params[i].compressed = &flags[i];
    }
    pp[i] = &params[i];
  }
  req.n_response_parameters = n;
  req.response_parameters = pp;
  rpc_unary(k, 0, "StreamingOutputCall", &STREAMING_OUTPUT_CALL, NULL, &req.base, 0);
}

static void server_streaming(case_t *k) {
  rpc_t *r = &k->rpc[0];
  if (k->step == 0) {
    k->step = 1;
    start_streaming_output(k, server_stream_sizes, NULL,
                           ARRAY_SIZE(server_stream_sizes));
    return;
  }
  if (r->ended && expect_status(k, r, UVG_STATUS_OK) &&
      expect_stream_payloads(k, r, server_stream_sizes,
                             ARRAY_SIZE(server_stream_sizes)))
    pass(k);
}

static void server_compressed_streaming(case_t *k) {
  static const int32_t sizes[] = {31415, 92653};
  static const int compressed[] = {1, 0};
  rpc_t *r = &k->rpc[0];
  if (k->step == 0) {
    k->step = 1;
    start_streaming_output(k, sizes, compressed, ARRAY_SIZE(sizes));
    return;
  }
  if (r->ended && expect_status(k, r, UVG_STATUS_OK) &&
      expect_stream_payloads(k, r, sizes, ARRAY_SIZE(sizes)) &&
      expect_flags(k, TAP_RESPONSES, "[1,0]", "responses"))
    pass(k);
}

/* FullDuplexCall request: one response of `response_size`, a payload of
 * `payload_size` (< 0: none). */
static int send_duplex_request(case_t *k, int i, int32_t response_size,
                               int32_t payload_size) {
  Grpc__Testing__StreamingOutputCallRequest req =
      GRPC__TESTING__STREAMING_OUTPUT_CALL_REQUEST__INIT;
  Grpc__Testing__ResponseParameters param, *pp = &param;
  Grpc__Testing__Payload p;
  grpc__testing__response_parameters__init(&param);
  param.size = response_size;
  req.n_response_parameters = 1;
  req.response_parameters = &pp;
  if (payload_size >= 0) {
    set_payload(&p, payload_size);
    req.payload = &p;
  }
  return rpc_send(k, i, &req.base, 0);
}

/* One request, then the next each time its reply is in; the half-close
 * after the fourth reply. */
static void ping_pong(case_t *k) {
  rpc_t *r = &k->rpc[0];
  if (k->step == 0) {
    k->step = 1;
    if (rpc_start(k, 0, "FullDuplexCall", &FULL_DUPLEX_CALL, NULL) == 0 &&
        send_duplex_request(k, 0, server_stream_sizes[0],
                            client_stream_sizes[0]) == 0)
      k->sent = 1;
    return;
  }
  while (k->step == 1 && r->nmsgs >= (size_t)k->sent) {
    size_t i = (size_t)k->sent - 1; /* the reply to request i is in */
    if (r->msgs[i] == NULL) {
      fail(k, "FullDuplexCall: response %zu is not a valid %s", i,
           r->response_type->name);
      return;
    }
    const Grpc__Testing__StreamingOutputCallResponse *resp =
        (const Grpc__Testing__StreamingOutputCallResponse *)r->msgs[i];
    if (!expect_payload(k, r, i, resp->payload, server_stream_sizes[i])) return;
    if (k->sent == 4) {
      k->step = 2;
      rpc_half_close(k, 0);
      return;
    }
    if (send_duplex_request(k, 0, server_stream_sizes[k->sent],
                            client_stream_sizes[k->sent]) != 0)
      return;
    k->sent++;
  }
  if (!r->ended) return;
  if (k->step == 1) {
    char q[256];
    fail(k,
         "FullDuplexCall: ended %s (\"%s\") after %zu responses, before the "
         "reply to request %d",
         uvg_status_code_name(r->code), quoted(r->message, q, sizeof(q)),
         r->nmsgs, k->sent);
  } else if (expect_status(k, r, UVG_STATUS_OK) &&
             expect_stream_payloads(k, r, server_stream_sizes,
                                    ARRAY_SIZE(server_stream_sizes))) {
    pass(k);
  }
}

static void empty_stream(case_t *k) {
  rpc_t *r = &k->rpc[0];
  if (k->step == 0) {
    k->step = 1;
    if (rpc_start(k, 0, "FullDuplexCall", &FULL_DUPLEX_CALL, NULL) == 0)
      rpc_half_close(k, 0);
    return;
  }
  if (r->ended && expect_status(k, r, UVG_STATUS_OK) &&
      expect_responses(k, r, 0))
    pass(k);
}

/* The request asks for no response and the client never half-closes: the
 * server sleeps on the stream until the 1 ms deadline. */
static void timeout_on_sleeping_server(case_t *k) {
  rpc_t *r = &k->rpc[0];
  if (k->step == 0) {
    Grpc__Testing__StreamingOutputCallRequest req =
        GRPC__TESTING__STREAMING_OUTPUT_CALL_REQUEST__INIT;
    Grpc__Testing__Payload p;
    set_payload(&p, 27182);
    req.payload = &p;
    uvg_client_call_options_t o = {.timeout_ms = 1};
    k->step = 1;
    if (rpc_start(k, 0, "FullDuplexCall", &FULL_DUPLEX_CALL, &o) == 0)
      rpc_send(k, 0, &req.base, 0);
    return;
  }
  if (r->ended && expect_status(k, r, UVG_STATUS_DEADLINE_EXCEEDED)) pass(k);
}

static void on_state(uvg_channel_t *ch, uvg_connectivity_t state, void *data) {
  case_t *k = data;
  (void)ch;
  (void)state;
  k->watches_open--;
  step(k);
  maybe_release(k);
}

/* Steps on once the channel is READY. Returns 1 if it is now; 0 if the
 * case waits (or failed). */
static int ready(case_t *k) {
  uvg_connectivity_t st = uvg_channel_state(k->ch, 1);
  if (st == UVG_STATE_READY) return 1;
  if (st == UVG_STATE_TRANSIENT_FAILURE || st == UVG_STATE_SHUTDOWN) {
    fail(k, "the channel is %s", uvg_connectivity_name(st));
    return 0;
  }
  int rc = uvg_channel_watch_state(k->ch, st, on_state, k);
  if (rc != 0)
    fail(k, "uvg_channel_watch_state: %s", uvg_strerror(rc));
  else
    k->watches_open++;
  return 0;
}

/* "Cancelled after metadata has been sent but before payloads are sent":
 * with the channel READY the call's headers leave in the loop turn that
 * starts it; the cancel follows a few milliseconds later, since the API
 * has no event for headers that have left. */
static void cancel_after_begin(case_t *k) {
  rpc_t *r = &k->rpc[0];
  switch (k->step) {
    case 0:
      if (!ready(k)) return;
      k->step = 1;
      if (rpc_start(k, 0, "StreamingInputCall", &STREAMING_INPUT_CALL, NULL) == 0)
        uv_timer_start(&k->wake, on_wake, 5, 0);
      return;
    case 1:
      if (r->ended) {
        fail(k, "StreamingInputCall: ended %s before the cancel",
             uvg_status_code_name(r->code));
        return;
      }
      if (uv_is_active((uv_handle_t *)&k->wake)) return;
      k->step = 2;
      int rc = uvg_client_call_cancel(r->call);
      if (rc != 0) fail(k, "uvg_client_call_cancel: %s", uvg_strerror(rc));
      return;
    default:
      if (r->ended && expect_status(k, r, UVG_STATUS_CANCELLED)) pass(k);
  }
}

static void cancel_after_first_response(case_t *k) {
  rpc_t *r = &k->rpc[0];
  switch (k->step) {
    case 0:
      k->step = 1;
      if (rpc_start(k, 0, "FullDuplexCall", &FULL_DUPLEX_CALL, NULL) == 0)
        send_duplex_request(k, 0, 31415, 27182);
      return;
    case 1: {
      if (r->nmsgs == 0) {
        if (r->ended)
          fail(k, "FullDuplexCall: ended %s before the first response",
               uvg_status_code_name(r->code));
        return;
      }
      if (r->msgs[0] == NULL) {
        fail(k, "FullDuplexCall: response 0 is not a valid %s",
             r->response_type->name);
        return;
      }
      const Grpc__Testing__StreamingOutputCallResponse *resp =
          (const Grpc__Testing__StreamingOutputCallResponse *)r->msgs[0];
      if (!expect_payload(k, r, 0, resp->payload, 31415)) return;
      k->step = 2;
      if (r->ended) { /* the server ended it first: no cancel to test */
        fail(k, "FullDuplexCall: ended %s before the cancel",
             uvg_status_code_name(r->code));
        return;
      }
      int rc = uvg_client_call_cancel(r->call);
      if (rc != 0) fail(k, "uvg_client_call_cancel: %s", uvg_strerror(rc));
      return;
    }
    default:
      if (r->ended && expect_status(k, r, UVG_STATUS_CANCELLED)) pass(k);
  }
}

/* Both calls ask for status 2 with `message`; the FullDuplexCall only
 * with `with_full_duplex`. */
static void echo_status_case(case_t *k, const char *message,
                             int with_full_duplex) {
  Grpc__Testing__EchoStatus st = GRPC__TESTING__ECHO_STATUS__INIT;
  st.code = UVG_STATUS_UNKNOWN;
  st.message = (char *)message;
  int i = k->step - 1;
  if (i >= 0) {
    rpc_t *r = &k->rpc[i];
    char q1[256], q2[256];
    if (!r->ended || !expect_status(k, r, UVG_STATUS_UNKNOWN)) return;
    if (strcmp(r->message, message) != 0) {
      fail(k, "%s: status message \"%s\", expected \"%s\"", r->what,
           quoted(r->message, q1, sizeof(q1)), quoted(message, q2, sizeof(q2)));
      return;
    }
    if (i == 1 || !with_full_duplex) {
      pass(k);
      return;
    }
  }
  k->step++;
  if (i < 0) {
    Grpc__Testing__SimpleRequest req = GRPC__TESTING__SIMPLE_REQUEST__INIT;
    req.response_status = &st;
    rpc_unary(k, 0, "UnaryCall", &UNARY_CALL, NULL,
              &req.base, 0);
  } else {
    Grpc__Testing__StreamingOutputCallRequest req =
        GRPC__TESTING__STREAMING_OUTPUT_CALL_REQUEST__INIT;
    req.response_status = &st;
    rpc_unary(k, 1, "FullDuplexCall", &FULL_DUPLEX_CALL, NULL, &req.base, 0);
  }
}

static void status_code_and_message(case_t *k) {
  echo_status_case(k, "test status message", 1);
}

static void special_status_message(case_t *k) {
  echo_status_case(
      k,
      "\t\ntest with whitespace\r\nand Unicode BMP \xe2\x98\xba and "
      "non-BMP \xf0\x9f\x98\x88\t\n",
      0);
}

static void custom_metadata(case_t *k) {
  uvg_client_call_options_t o = {.metadata = echo_md,
                                 .nmetadata = ARRAY_SIZE(echo_md)};
  switch (k->step) {
    case 0: {
      Grpc__Testing__SimpleRequest req;
      Grpc__Testing__Payload p;
      large_request(&req, &p);
      k->step = 1;
      rpc_unary(k, 0, "UnaryCall", &UNARY_CALL, &o,
                &req.base, 0);
      return;
    }
    case 1: {
      rpc_t *r = &k->rpc[0];
      if (!r->ended || !expect_simple_ok(k, r, LARGE_RESPONSE_SIZE) ||
          !expect_echoed_metadata(k, r))
        return;
      k->step = 2;
      if (rpc_start(k, 1, "FullDuplexCall", &FULL_DUPLEX_CALL, &o) == 0 &&
          send_duplex_request(k, 1, LARGE_RESPONSE_SIZE, LARGE_REQUEST_SIZE) ==
              0)
        rpc_half_close(k, 1);
      return;
    }
    default: {
      static const int32_t sizes[] = {LARGE_RESPONSE_SIZE};
      rpc_t *r = &k->rpc[1];
      if (r->ended && expect_status(k, r, UVG_STATUS_OK) &&
          expect_stream_payloads(k, r, sizes, 1) &&
          expect_echoed_metadata(k, r))
        pass(k);
    }
  }
}

static void unimplemented(case_t *k, const char *what, const method_t *method) {
  rpc_t *r = &k->rpc[0];
  if (k->step == 0) {
    Grpc__Testing__Empty req = GRPC__TESTING__EMPTY__INIT;
    k->step = 1;
    rpc_unary(k, 0, what, method, NULL, &req.base, 0);
    return;
  }
  if (r->ended && expect_status(k, r, UVG_STATUS_UNIMPLEMENTED)) pass(k);
}

static void unimplemented_method(case_t *k) {
  unimplemented(k, "UnimplementedCall", &UNIMPLEMENTED_CALL);
}

static void unimplemented_service(case_t *k) {
  unimplemented(k, "UnimplementedService/UnimplementedCall",
                &UNIMPLEMENTED_SERVICE_CALL);
}

static const case_def_t cases[] = {
    {"empty_unary", empty_unary, 0},
    {"large_unary", large_unary, 0},
    {"client_compressed_unary", client_compressed_unary, 1},
    {"server_compressed_unary", server_compressed_unary, 1},
    {"client_streaming", client_streaming, 0},
    {"client_compressed_streaming", client_compressed_streaming, 1},
    {"server_streaming", server_streaming, 0},
    {"server_compressed_streaming", server_compressed_streaming, 1},
    {"ping_pong", ping_pong, 0},
    {"empty_stream", empty_stream, 0},
    {"custom_metadata", custom_metadata, 0},
    {"status_code_and_message", status_code_and_message, 0},
    {"special_status_message", special_status_message, 0},
    {"unimplemented_method", unimplemented_method, 0},
    {"unimplemented_service", unimplemented_service, 0},
    {"cancel_after_begin", cancel_after_begin, 0},
    {"cancel_after_first_response", cancel_after_first_response, 0},
    {"timeout_on_sleeping_server", timeout_on_sleeping_server, 0},
};

/* ---------------------------------------------------------------------------
 * Running a case
 * ------------------------------------------------------------------------- */

/* Runs one case to its end and prints its line. Returns 1 if it passed. */
static int run_case(const case_def_t *def) {
  case_t *k = xcalloc(sizeof(*k));
  k->def = def;
  uv_timer_init(loop, &k->timer);
  uv_timer_init(loop, &k->wake);
  k->timer.data = k->wake.data = k;
  k->handles_open = 2;
  uv_timer_start(&k->timer, on_case_timeout, CASE_TIMEOUT_MS, 0);

  char target[340], why[512] = "";
  const char *target_addr = server_addr;
  char tap_addr[32];
  if (def->tapped && !use_tls) {
    k->tap = tap_start(why, sizeof(why));
    if (k->tap != NULL) {
      snprintf(tap_addr, sizeof(tap_addr), "127.0.0.1:%d", k->tap->port);
      target_addr = tap_addr;
    }
  }
  /* through the tap the channel still names the server in :authority */
  uvg_channel_options_t o;
  uvg_channel_options_init(&o);
  o.authority = server_addr;
  o.default_service_config = service_config;
  snprintf(target, sizeof(target), "dns:///%s", target_addr);
  int rc =
      why[0] ? -1 : uvg_channel_new(loop, target, creds, &o, &k->ch);
  if (rc != 0) {
    if (!why[0])
      snprintf(why, sizeof(why), "uvg_channel_new(%s): %s", target,
               uvg_strerror(rc));
    k->over = 1;
    snprintf(k->reason, sizeof(k->reason), "%s", why);
    maybe_release(k);
  } else {
    k->channel_open = 1;
    step(k);
  }
  uv_run(loop, UV_RUN_DEFAULT);

  int passed = 0;
  if (!k->released)
    printf("FAIL %s: the loop ran out of work before the case ended\n",
           def->name);
  else if (k->reason[0] != '\0')
    printf("FAIL %s: %s\n", def->name, k->reason);
  else
    passed = 1;
  if (passed) printf("PASS %s\n", def->name);
  fflush(stdout);
  if (k->released) { /* else something may still point at it */
    for (int i = 0; i < MAX_RPCS; i++) rpc_free(&k->rpc[i]);
    free(k);
  }
  return passed;
}

static void usage(const char *argv0) {
  fprintf(stderr,
          "usage: %s --server_port=N [--server_host=HOST] "
          "[--server_host_override=NAME] [--test_case=NAME|all] "
          "[--service_config_json=JSON] [--use_tls=true|false] [--use_test_ca=true|false] [--ca_file=PEM] "
          "[--client_cert_file=PEM] [--client_key_file=PEM]\ncases:",
          argv0);
  for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
    fprintf(stderr, " %s", cases[i].name);
  fprintf(stderr, "\n");
}

/* Matches "--name=value" or "--name value"; sets *value. */
static int flag(int argc, char **argv, int *i, const char *name,
                const char **value) {
  size_t n = strlen(name);
  if (strncmp(argv[*i], name, n) != 0) return 0;
  if (argv[*i][n] == '=') {
    *value = argv[*i] + n + 1;
    return 1;
  }
  if (argv[*i][n] == '\0' && *i + 1 < argc) {
    *value = argv[++*i];
    return 1;
  }
  return 0;
}

/* Channel credentials from the TLS flags. Returns 0 or 1 (reported). */
static int make_creds(const char *test_ca, const char *ca_file,
                      const char *cert, const char *key) {
  if (!use_tls) {
    creds = uvg_insecure_channel_credentials();
    return 0;
  }
  uvg_tls_channel_options_t o = {
      .root_certs = {.file = strcmp(test_ca, "true") == 0 ? ca_file : NULL},
      .cert_chain = {.file = cert},
      .private_key = {.file = key},
      .server_name_override = host_override,
  };
  int rc = uvg_tls_channel_credentials_new(&o, &creds);
  if (rc != 0) fprintf(stderr, "interop_client: TLS credentials: %s\n", uvg_strerror(rc));
  return rc != 0;
}

int main(int argc, char **argv) {
  const char *test_case = "large_unary", *port = NULL, *tls = "false";
  const char *test_ca = "false", *ca_file = GRPC_TESTDATA "/ca.pem";
  const char *cert = NULL, *key = NULL;
  for (int i = 1; i < argc; i++) {
    if (flag(argc, argv, &i, "--server_host", &server_host) ||
        flag(argc, argv, &i, "--server_port", &port) ||
        flag(argc, argv, &i, "--server_host_override", &host_override) ||
        flag(argc, argv, &i, "--test_case", &test_case) ||
        flag(argc, argv, &i, "--service_config_json", &service_config) ||
        flag(argc, argv, &i, "--use_tls", &tls) ||
        flag(argc, argv, &i, "--use_test_ca", &test_ca) ||
        flag(argc, argv, &i, "--ca_file", &ca_file) ||
        flag(argc, argv, &i, "--client_cert_file", &cert) ||
        flag(argc, argv, &i, "--client_key_file", &key))
      continue;
    usage(argv[0]);
    return 2;
  }
  if (port == NULL || (server_port = atoi(port)) <= 0 || server_port > 65535 ||
      (strcmp(tls, "true") != 0 && strcmp(tls, "false") != 0) ||
      (strcmp(test_ca, "true") != 0 && strcmp(test_ca, "false") != 0) ||
      (cert == NULL) != (key == NULL)) {
    usage(argv[0]);
    return 2;
  }
  use_tls = strcmp(tls, "true") == 0;
  if (make_creds(test_ca, ca_file, cert, key) != 0) return 1;
  int v6 = strchr(server_host, ':') != NULL;
  snprintf(server_addr, sizeof(server_addr), "%s%s%s:%d", v6 ? "[" : "",
           server_host, v6 ? "]" : "", server_port);

  /* A peer that goes away mid-write must not kill the process. */
  signal(SIGPIPE, SIG_IGN);
  loop = uv_default_loop();
  int ran = 0, failed = 0;
  for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
    if (strcmp(test_case, "all") != 0 && strcmp(test_case, cases[i].name) != 0)
      continue;
    ran++;
    failed += !run_case(&cases[i]);
  }
  if (ran == 0) {
    fprintf(stderr, "interop_client: unknown test case \"%s\"\n", test_case);
    usage(argv[0]);
    return 2;
  }
  uvg_channel_credentials_release(creds); /* the channels had their own */
  int rc = uv_loop_close(loop);
  if (rc != 0) {
    fprintf(stderr, "interop_client: uv_loop_close: %s\n", uv_strerror(rc));
    return 1;
  }
  return failed ? 1 : 0;
}

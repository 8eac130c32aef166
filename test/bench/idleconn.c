/*
 * idleconn: opens N HTTP/2 connections to a greeter on 127.0.0.1, makes one
 * SayHello call on each, then keeps every connection open and idle (still
 * answering PINGs and SETTINGS through nghttp2) until SIGTERM/SIGINT.
 *
 *   idleconn PORT N REQUEST_FILE [call|nocall]
 *
 * REQUEST_FILE is the gRPC-framed HelloRequest (5-byte prefix + protobuf).
 * Once every call has ended it prints one line on stdout:
 *   ready ok=K failed=F
 * (a call is ok on :status 200 and grpc-status 0), so that the benchmark can
 * read the server's RSS with N idle connections. With "nocall" a connection
 * makes no call and is ok once the server's SETTINGS have arrived. Built by
 * test/bench/run.sh with pkg-config libnghttp2 libuv.
 */
#include <nghttp2/nghttp2.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* Connections that may be connecting or mid-call at once: keeps the
 * server's accept backlog from overflowing. */
#define IN_FLIGHT 64
/* Give up waiting for calls after this long. */
#define DEADLINE_MS 60000

typedef struct conn {
  uv_tcp_t tcp;
  uv_connect_t creq;
  nghttp2_session *h2;
  size_t body_off;
  int status;      /* :status */
  int grpc_status; /* -1 until the trailer arrives */
  int done;        /* 0 running, 1 ok, 2 failed */
  int closed;
} conn_t;

static uv_loop_t *loop;
static struct sockaddr_in addr;
static char authority[32];
static uint8_t *body;
static size_t body_len;
static conn_t *conns;
static int total, started, finished, ok, failed;
static uv_signal_t sigterm, sigint;
static uv_timer_t deadline;
static int ready_printed;
static int no_call; /* connections only exchange SETTINGS */

static void start_next(void);

static void print_ready(void) {
  if (ready_printed)
    return;
  ready_printed = 1;
  printf("ready ok=%d failed=%d\n", ok, failed + (total - finished));
  fflush(stdout);
  uv_timer_stop(&deadline);
}

static void call_ended(conn_t *c, int good) {
  if (c->done)
    return;
  c->done = good ? 1 : 2;
  finished++;
  if (good)
    ok++;
  else
    failed++;
  if (finished == total)
    print_ready();
  else
    start_next();
}

static void on_write(uv_write_t *w, int status) {
  (void)status;
  free(w->data);
  free(w);
}

static void on_close(uv_handle_t *h) {
  (void)h;
}

static void conn_close(conn_t *c) {
  if (c->closed)
    return;
  c->closed = 1;
  if (c->h2)
    nghttp2_session_del(c->h2);
  c->h2 = NULL;
  uv_close((uv_handle_t *)&c->tcp, on_close);
}

/* Sends whatever nghttp2 has queued in one write. */
static void flush(conn_t *c) {
  const uint8_t *data;
  ssize_t n;
  size_t len = 0, cap = 0;
  uint8_t *buf = NULL;
  while (c->h2 && (n = nghttp2_session_mem_send(c->h2, &data)) > 0) {
    if (len + (size_t)n > cap) {
      cap = (len + (size_t)n) * 2;
      buf = realloc(buf, cap);
    }
    memcpy(buf + len, data, (size_t)n);
    len += (size_t)n;
  }
  if (len == 0) {
    free(buf);
    return;
  }
  uv_write_t *w = malloc(sizeof(*w));
  uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
  w->data = buf;
  if (uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
    free(buf);
    free(w);
    call_ended(c, 0);
    conn_close(c);
  }
}

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
                         uint32_t *flags, nghttp2_data_source *src, void *ud) {
  (void)s;
  (void)id;
  (void)src;
  conn_t *c = ud;
  size_t n = body_len - c->body_off;
  if (n > len)
    n = len;
  memcpy(buf, body + c->body_off, n);
  c->body_off += n;
  if (c->body_off == body_len)
    *flags |= NGHTTP2_DATA_FLAG_EOF;
  return (ssize_t)n;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen,
                     uint8_t flags, void *ud) {
  (void)s;
  (void)f;
  (void)flags;
  (void)valuelen;
  conn_t *c = ud;
  if (namelen == 7 && memcmp(name, ":status", 7) == 0)
    c->status = atoi((const char *)value);
  else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0)
    c->grpc_status = atoi((const char *)value);
  return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t err, void *ud) {
  (void)s;
  (void)id;
  conn_t *c = ud;
  call_ended(c, err == 0 && c->status == 200 && c->grpc_status == 0);
  return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud) {
  (void)s;
  if (no_call && f->hd.type == NGHTTP2_SETTINGS && !(f->hd.flags & NGHTTP2_FLAG_ACK))
    call_ended(ud, 1);
  return 0;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  (void)h;
  (void)hint;
  static char buf[65536]; /* one loop thread: one shared read buffer */
  *b = uv_buf_init(buf, sizeof(buf));
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
  conn_t *c = st->data;
  if (n < 0) { /* the server closed an idle connection: count it */
    if (!c->done)
      call_ended(c, 0);
    else
      fprintf(stderr, "idleconn: connection %d closed by the server\n",
              (int)(c - conns));
    conn_close(c);
    return;
  }
  if (n == 0 || !c->h2)
    return;
  if (nghttp2_session_mem_recv(c->h2, (const uint8_t *)b->base, (size_t)n) < 0) {
    call_ended(c, 0);
    conn_close(c);
    return;
  }
  flush(c);
}

static void on_connect(uv_connect_t *req, int status) {
  conn_t *c = req->data;
  if (status != 0) {
    fprintf(stderr, "idleconn: connect: %s\n", uv_strerror(status));
    call_ended(c, 0);
    conn_close(c);
    return;
  }
  nghttp2_session_callbacks *cbs;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
  nghttp2_session_client_new(&c->h2, cbs, c);
  nghttp2_session_callbacks_del(cbs);
  nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, NULL, 0);
#define NV(n, v)                                                                   \
  { (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE }
  nghttp2_nv hdrs[] = {
      NV(":method", "POST"),
      NV(":scheme", "http"),
      NV(":authority", authority),
      NV(":path", "/helloworld.Greeter/SayHello"),
      NV("content-type", "application/grpc"),
      NV("te", "trailers"),
  };
  nghttp2_data_provider dp = {.source = {.ptr = NULL}, .read_callback = read_body};
  if (!no_call && nghttp2_submit_request(c->h2, NULL, hdrs, sizeof(hdrs) / sizeof(hdrs[0]), &dp,
                             c) < 0) {
    call_ended(c, 0);
    conn_close(c);
    return;
  }
  c->tcp.data = c;
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  flush(c);
}

static void start_next(void) {
  while (started < total && started - finished < IN_FLIGHT) {
    conn_t *c = &conns[started++];
    c->grpc_status = -1;
    uv_tcp_init(loop, &c->tcp);
    c->creq.data = c;
    if (uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&addr, on_connect) != 0) {
      call_ended(c, 0);
      conn_close(c);
    }
  }
}

static void on_deadline(uv_timer_t *t) {
  (void)t;
  fprintf(stderr, "idleconn: %d of %d calls still running after %d ms\n",
          total - finished, total, DEADLINE_MS);
  print_ready();
}

static void on_signal(uv_signal_t *h, int sig) {
  (void)h;
  (void)sig;
  for (int i = 0; i < started; i++)
    conn_close(&conns[i]);
  uv_close((uv_handle_t *)&sigterm, NULL);
  uv_close((uv_handle_t *)&sigint, NULL);
  uv_close((uv_handle_t *)&deadline, NULL);
}

int main(int argc, char **argv) {
  if (argc != 4 && !(argc == 5 && (strcmp(argv[4], "call") == 0 ||
                                    strcmp(argv[4], "nocall") == 0))) {
    fprintf(stderr, "usage: %s PORT N REQUEST_FILE [call|nocall]\n", argv[0]);
    return 2;
  }
  no_call = argc == 5 && strcmp(argv[4], "nocall") == 0;
  int port = atoi(argv[1]);
  total = atoi(argv[2]);
  FILE *f = fopen(argv[3], "rb");
  if (!f || total <= 0 || port <= 0) {
    fprintf(stderr, "idleconn: bad arguments\n");
    return 2;
  }
  body = malloc(1 << 20);
  body_len = fread(body, 1, 1 << 20, f);
  fclose(f);
  snprintf(authority, sizeof(authority), "127.0.0.1:%d", port);
  uv_ip4_addr("127.0.0.1", port, &addr);
  conns = calloc((size_t)total, sizeof(*conns));
  loop = uv_default_loop();
  uv_signal_init(loop, &sigterm);
  uv_signal_init(loop, &sigint);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  uv_signal_start(&sigint, on_signal, SIGINT);
  uv_timer_init(loop, &deadline);
  uv_timer_start(&deadline, on_deadline, DEADLINE_MS, 0);
  start_next();
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  free(conns);
  free(body);
  return ok == total ? 0 : 1;
}

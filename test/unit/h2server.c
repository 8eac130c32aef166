#include "h2server.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void on_handle_closed(uv_handle_t *h) {
  h2s_t *s = h->data;
  s->closing_handles--;
}

static void close_handle(h2s_t *s, uv_handle_t *h) {
  h->data = s;
  s->closing_handles++;
  uv_close(h, on_handle_closed);
}

/* ---- writing ---- */

typedef struct {
  uv_write_t req;
  uv_buf_t buf;
} wreq_t;

static void on_written(uv_write_t *req, int status) {
  (void)status;
  wreq_t *w = (wreq_t *)req;
  free(w->buf.base);
  free(w);
}

/* Writes what nghttp2 has queued; called after every action, never from
 * inside nghttp2's callbacks. */
static void flush(h2s_conn_t *c) {
  if (c->h2 == NULL || c->closed) return;
  for (;;) {
    const uint8_t *data;
    ssize_t n = nghttp2_session_mem_send(c->h2, &data);
    if (n < 0) {
      fprintf(stderr, "h2server: send: %s\n", nghttp2_strerror((int)n));
      c->srv->errors++;
      return;
    }
    if (n == 0) return;
    wreq_t *w = malloc(sizeof(*w));
    w->buf = uv_buf_init(malloc((size_t)n), (unsigned)n);
    memcpy(w->buf.base, data, (size_t)n);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &w->buf, 1, on_written) !=
        0) {
      free(w->buf.base);
      free(w);
      return;
    }
  }
}

static void conn_close(h2s_conn_t *c) {
  if (c->closed) return;
  c->closed = 1;
  close_handle(c->srv, (uv_handle_t *)&c->tcp);
}

/* ---- nghttp2's callbacks: recording what the client sends ---- */

static int on_begin_headers(nghttp2_session *h2, const nghttp2_frame *f,
                            void *ud) {
  h2s_conn_t *c = ud;
  h2s_t *s = c->srv;
  if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0;
  if (s->nstreams == H2S_MAX_STREAMS) {
    s->errors++;
    return 0;
  }
  h2s_stream_t *st = &s->streams[s->nstreams];
  st->srv = s;
  st->conn = c;
  st->index = s->nstreams++;
  st->id = f->hd.stream_id;
  nghttp2_session_set_stream_user_data(h2, st->id, st);
  if (++c->open_streams > c->max_open_streams)
    c->max_open_streams = c->open_streams;
  uint64_t windows = (uint64_t)c->open_streams *
                     nghttp2_session_get_remote_settings(
                         h2, NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE);
  if (windows > c->max_windows) c->max_windows = windows;
  return 0;
}

static int on_header(nghttp2_session *h2, const nghttp2_frame *f,
                     const uint8_t *name, size_t nl, const uint8_t *value,
                     size_t vl, uint8_t flags, void *ud) {
  (void)flags;
  (void)ud;
  h2s_stream_t *st = nghttp2_session_get_stream_user_data(h2, f->hd.stream_id);
  if (st != NULL && nl == 5 && memcmp(name, ":path", 5) == 0)
    snprintf(st->path, sizeof(st->path), "%.*s", (int)vl, (const char *)value);
  if (st != NULL && nl == 10 && memcmp(name, ":authority", 10) == 0)
    snprintf(st->authority, sizeof(st->authority), "%.*s", (int)vl,
             (const char *)value);
  if (st != NULL && nl == 12 && memcmp(name, "grpc-timeout", 12) == 0)
    snprintf(st->timeout, sizeof(st->timeout), "%.*s", (int)vl, (const char *)value);
  return 0;
}

static int on_data_chunk(nghttp2_session *h2, uint8_t flags, int32_t id,
                         const uint8_t *data, size_t len, void *ud) {
  (void)flags;
  (void)ud;
  h2s_stream_t *st = nghttp2_session_get_stream_user_data(h2, id);
  if (st == NULL) return 0;
  st->body = realloc(st->body, st->body_len + len + 1);
  memcpy(st->body + st->body_len, data, len);
  st->body_len += len;
  return 0;
}

static int on_frame_recv(nghttp2_session *h2, const nghttp2_frame *f,
                         void *ud) {
  h2s_conn_t *c = ud;
  h2s_stream_t *st = nghttp2_session_get_stream_user_data(h2, f->hd.stream_id);
  switch (f->hd.type) {
    case NGHTTP2_PING:
      if (f->hd.flags & NGHTTP2_FLAG_ACK)
        c->ping_acks++;
      else
        c->pings_received++;
      break;
    case NGHTTP2_GOAWAY:
      c->goaways_received++;
      break;
    case NGHTTP2_RST_STREAM:
      c->rsts_received++;
      if (st != NULL) {
        st->got_rst = 1;
        st->rst_code = f->rst_stream.error_code;
      }
      break;
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA:
      /* the behaviour runs once nghttp2 has returned (feed) */
      if (st != NULL && (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        st->half_closed = 1;
        if (!c->srv->answer_on_headers) st->answer_due = 1;
      }
      if (st != NULL && c->srv->answer_on_headers && f->hd.type == NGHTTP2_HEADERS &&
          f->headers.cat == NGHTTP2_HCAT_REQUEST)
        st->answer_due = 1;
      break;
  }
  return 0;
}

static int on_stream_close(nghttp2_session *h2, int32_t id, uint32_t code,
                           void *ud) {
  h2s_conn_t *c = ud;
  h2s_stream_t *st = nghttp2_session_get_stream_user_data(h2, id);
  if (st == NULL) return 0;
  st->closed = 1;
  st->close_code = code;
  c->open_streams--;
  return 0;
}

static int on_frame_not_send(nghttp2_session *h2, const nghttp2_frame *f,
                             int error, void *ud) {
  h2s_conn_t *c = ud;
  (void)h2;
  fprintf(stderr, "h2server: frame type %u on stream %d not sent: %s\n",
          f->hd.type, f->hd.stream_id, nghttp2_strerror(error));
  c->srv->errors++;
  return 0;
}

/* ---- reading ---- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)h;
  *buf = uv_buf_init(malloc(hint), (unsigned)hint);
}

/* Gives bytes to nghttp2, then runs the behaviour of each request that
 * ended in them. */
static void feed(h2s_conn_t *c, const uint8_t *p, size_t n) {
  h2s_t *s = c->srv;
  ssize_t rv = nghttp2_session_mem_recv(c->h2, p, n);
  if (rv < 0) {
    fprintf(stderr, "h2server: recv: %s\n", nghttp2_strerror((int)rv));
    s->errors++;
    conn_close(c);
    return;
  }
  for (int i = 0; i < s->nstreams; i++) {
    h2s_stream_t *st = &s->streams[i];
    if (st->conn != c || !st->answer_due) continue;
    st->answer_due = 0;
    s->behaviour(st, s->ud);
  }
  flush(c);
}

static void on_read(uv_stream_t *tcp, ssize_t n, const uv_buf_t *buf) {
  h2s_conn_t *c = tcp->data;
  if (n > 0 && !c->closed) feed(c, (const uint8_t *)buf->base, (size_t)n);
  if (n < 0) conn_close(c); /* EOF or reset: the client is gone */
  free(buf->base);
}

static void on_connection(uv_stream_t *listener, int status) {
  h2s_t *s = listener->data;
  if (status != 0 || s->nconns == H2S_MAX_CONNS) {
    s->errors++;
    return;
  }
  h2s_conn_t *c = &s->conns[s->nconns];
  c->srv = s;
  c->index = s->nconns++;
  uv_tcp_init(s->loop, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
    s->errors++;
    conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  nghttp2_session_callbacks *cbs;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs,
                                                          on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
  nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs,
                                                           on_frame_not_send);
  nghttp2_session_server_new(&c->h2, cbs, c);
  nghttp2_session_callbacks_del(cbs);
  nghttp2_settings_entry iv[1] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
                                   (uint32_t)s->max_concurrent_streams}};
  nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv,
                          s->max_concurrent_streams >= 0 ? 1 : 0);
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  flush(c);
}

int h2s_start(h2s_t *s, uv_loop_t *loop, h2s_behaviour_fn behaviour, void *ud) {
  struct sockaddr_in addr;
  struct sockaddr_storage bound;
  int len = sizeof(bound);
  /* clients under test close connections mid-write */
  signal(SIGPIPE, SIG_IGN);
  memset(s, 0, sizeof(*s));
  s->loop = loop;
  s->behaviour = behaviour;
  s->ud = ud;
  s->max_concurrent_streams = -1;
  s->conns = calloc(H2S_MAX_CONNS, sizeof(h2s_conn_t));
  s->streams = calloc(H2S_MAX_STREAMS, sizeof(h2s_stream_t));
  uv_ip4_addr("127.0.0.1", 0, &addr);
  uv_tcp_init(loop, &s->listener);
  s->listener.data = s;
  int err = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
  if (err == 0) err = uv_listen((uv_stream_t *)&s->listener, 64, on_connection);
  if (err == 0)
    err = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len);
  if (err != 0) return err;
  s->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
  return 0;
}

/* ---- acting ---- */

static int usable(const h2s_stream_t *st) {
  return st->conn != NULL && st->conn->h2 != NULL && !st->conn->closed;
}

void h2s_headers(h2s_stream_t *st, const char *const *nv, int end_stream) {
  nghttp2_nv h[32];
  size_t n = 0;
  if (!usable(st)) return;
  if (st->out != NULL) {
    /* nghttp2 would send these headers before the DATA still queued */
    fprintf(stderr, "h2server: headers behind queued DATA on stream %d\n",
            st->id);
    st->srv->errors++;
    return;
  }
  for (; nv != NULL && nv[0] != NULL && n < 32; nv += 2, n++)
    h[n] = (nghttp2_nv){(uint8_t *)nv[0], (uint8_t *)nv[1], strlen(nv[0]),
                        strlen(nv[1]), NGHTTP2_NV_FLAG_NONE};
  int rv = nghttp2_submit_headers(st->conn->h2,
                                  end_stream ? NGHTTP2_FLAG_END_STREAM : 0,
                                  st->id, NULL, h, n, NULL);
  if (rv < 0) {
    fprintf(stderr, "h2server: headers: %s\n", nghttp2_strerror(rv));
    st->srv->errors++;
  }
  flush(st->conn);
}

static ssize_t read_out(nghttp2_session *h2, int32_t id, uint8_t *buf,
                        size_t length, uint32_t *flags,
                        nghttp2_data_source *src, void *ud) {
  (void)h2;
  (void)id;
  (void)ud;
  h2s_stream_t *st = src->ptr;
  size_t n = st->out_len - st->out_off;
  if (n > length) n = length;
  memcpy(buf, st->out + st->out_off, n);
  st->out_off += n;
  if (st->out_off == st->out_len) {
    *flags |= NGHTTP2_DATA_FLAG_EOF; /* END_STREAM if submitted with it */
    free((void *)st->out);
    st->out = NULL;
  }
  return (ssize_t)n;
}

void h2s_data(h2s_stream_t *st, const void *p, size_t n, int end_stream) {
  if (!usable(st) || (n == 0 && !end_stream)) return;
  if (st->out != NULL) {
    /* nghttp2 takes one DATA item per stream: the tests stay within the
     * window, so the previous one has always left by now */
    fprintf(stderr, "h2server: DATA still queued on stream %d\n", st->id);
    st->srv->errors++;
    return;
  }
  uint8_t *copy = malloc(n ? n : 1);
  if (n) memcpy(copy, p, n);
  st->out = copy;
  st->out_len = n;
  st->out_off = 0;
  nghttp2_data_provider prd = {.source.ptr = st, .read_callback = read_out};
  int rv = nghttp2_submit_data(
      st->conn->h2, end_stream ? NGHTTP2_FLAG_END_STREAM : 0, st->id, &prd);
  if (rv < 0) {
    fprintf(stderr, "h2server: data: %s\n", nghttp2_strerror(rv));
    st->srv->errors++;
    free(copy);
    st->out = NULL;
  }
  flush(st->conn);
}

void h2s_message(h2s_stream_t *st, int compressed, const void *msg,
                 size_t len) {
  uint8_t *b = malloc(5 + len);
  b[0] = (uint8_t)(compressed != 0);
  b[1] = (uint8_t)(len >> 24);
  b[2] = (uint8_t)(len >> 16);
  b[3] = (uint8_t)(len >> 8);
  b[4] = (uint8_t)len;
  if (len) memcpy(b + 5, msg, len);
  h2s_data(st, b, 5 + len, 0);
  free(b);
}

void h2s_ok(h2s_stream_t *st, const void *msg, size_t len) {
  static const char *const head[] = {":status", "200", "content-type",
                                     "application/grpc", NULL};
  static const char *const trailers[] = {"grpc-status", "0", NULL};
  h2s_headers(st, head, 0);
  h2s_message(st, 0, msg, len);
  h2s_headers(st, trailers, 1);
}

void h2s_rst(h2s_stream_t *st, uint32_t code) {
  if (!usable(st)) return;
  nghttp2_submit_rst_stream(st->conn->h2, NGHTTP2_FLAG_NONE, st->id, code);
  flush(st->conn);
}

void h2s_goaway(h2s_conn_t *c, int32_t last_stream_id, uint32_t code) {
  if (c->h2 == NULL || c->closed) return;
  nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE, last_stream_id, code, NULL,
                        0);
  flush(c);
}

void h2s_ping(h2s_conn_t *c) {
  uint8_t opaque[8] = {0};
  if (c->h2 == NULL || c->closed) return;
  opaque[7] = (uint8_t)++c->pings_sent;
  nghttp2_submit_ping(c->h2, NGHTTP2_FLAG_NONE, opaque);
  flush(c);
}

void h2s_max_streams(h2s_conn_t *c, uint32_t n) {
  nghttp2_settings_entry iv[1] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, n}};
  if (c->h2 == NULL || c->closed) return;
  nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, 1);
  flush(c);
}

void h2s_drop(h2s_conn_t *c) {
  conn_close(c);
}

static void on_later(uv_timer_t *t) {
  h2s_stream_t *st = t->data;
  st->later(st);
}

void h2s_later(h2s_stream_t *st, uint64_t ms, h2s_later_fn fn) {
  if (!st->timer_used) {
    uv_timer_init(st->srv->loop, &st->timer);
    st->timer_used = 1;
  }
  st->timer.data = st;
  st->later = fn;
  uv_timer_start(&st->timer, on_later, ms, 0);
}

/* ---- closing ---- */

void h2s_close(h2s_t *s) {
  close_handle(s, (uv_handle_t *)&s->listener);
  for (int i = 0; i < s->nconns; i++) conn_close(&s->conns[i]);
  for (int i = 0; i < s->nstreams; i++)
    if (s->streams[i].timer_used)
      close_handle(s, (uv_handle_t *)&s->streams[i].timer);
  while (s->closing_handles > 0) uv_run(s->loop, UV_RUN_ONCE);
  for (int i = 0; i < s->nconns; i++)
    if (s->conns[i].h2 != NULL) nghttp2_session_del(s->conns[i].h2);
  for (int i = 0; i < s->nstreams; i++) {
    free(s->streams[i].body);
    free((void *)s->streams[i].out);
  }
  free(s->conns);
  free(s->streams);
  s->conns = NULL;
  s->streams = NULL;
}

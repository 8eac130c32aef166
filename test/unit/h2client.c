#include "h2client.h"

#include <stdlib.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

static h2c_stream_t *stream_by_id(h2c_t *c, int32_t id) {
  for (int i = 0; i < c->nstreams; i++)
    if (c->streams[i].id == id) return &c->streams[i];
  return NULL;
}

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

void h2c_write_raw(h2c_t *c, const void *p, size_t n) {
  if (c->closed || n == 0) return;
  wreq_t *w = malloc(sizeof(*w));
  w->buf = uv_buf_init(malloc(n), (unsigned)n);
  memcpy(w->buf.base, p, n);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &w->buf, 1, on_written) != 0) {
    free(w->buf.base);
    free(w);
  }
}

void h2c_flush(h2c_t *c) {
  if (c->h2 == NULL) return;
  for (;;) {
    const uint8_t *data;
    ssize_t n = nghttp2_session_mem_send(c->h2, &data);
    if (n <= 0) break;
    h2c_write_raw(c, data, (size_t)n);
  }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)h;
  *buf = uv_buf_init(malloc(hint), (unsigned)hint);
}

/* Scans the server's frames as they arrive (the server sends no preface). */
static void scan_frames(h2c_t *c, const uint8_t *p, size_t n) {
  c->raw = realloc(c->raw, c->raw_len + n);
  memcpy(c->raw + c->raw_len, p, n);
  c->raw_len += n;
  size_t off = 0;
  while (c->raw_len - off >= 9) {
    const uint8_t *f = c->raw + off;
    size_t len = (size_t)f[0] << 16 | (size_t)f[1] << 8 | f[2];
    if (c->raw_len - off < 9 + len) break;
    if (f[3] == NGHTTP2_GOAWAY && len >= 8) {
      c->raw_goaways++;
      c->raw_goaway_last_stream =
          (int32_t)((uint32_t)(f[9] & 0x7f) << 24 | (uint32_t)f[10] << 16 |
                    (uint32_t)f[11] << 8 | f[12]);
      c->raw_goaway_code = (uint32_t)f[13] << 24 | (uint32_t)f[14] << 16 |
                           (uint32_t)f[15] << 8 | f[16];
    }
    if (f[3] == NGHTTP2_RST_STREAM && len == 4) {
      c->raw_rst_streams++;
      c->raw_rst_code = (uint32_t)f[9] << 24 | (uint32_t)f[10] << 16 |
                        (uint32_t)f[11] << 8 | f[12];
    }
    off += 9 + len;
  }
  memmove(c->raw, c->raw + off, c->raw_len - off);
  c->raw_len -= off;
}

static void feed(h2c_t *c, const uint8_t *p, size_t n) {
  ssize_t rv = c->h2 ? nghttp2_session_mem_recv(c->h2, p, n) : 0;
  if (rv < 0) {
    fprintf(stderr, "h2client: %s\n", nghttp2_strerror((int)rv));
    c->eof = 1;
  }
  h2c_flush(c);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
  h2c_t *c = st->data;
  if (n > 0) scan_frames(c, (const uint8_t *)buf->base, (size_t)n);
  if (n < 0) {
    c->eof = 1;
    uv_read_stop(st);
  } else if (n > 0) {
    c->reads++;
    if (c->hold) {
      c->held = realloc(c->held, c->held_len + (size_t)n);
      memcpy(c->held + c->held_len, buf->base, (size_t)n);
      c->held_len += (size_t)n;
    } else {
      feed(c, (const uint8_t *)buf->base, (size_t)n);
    }
  }
  free(buf->base);
}

void h2c_read_resume(h2c_t *c) {
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

void h2c_hold(h2c_t *c, int hold) {
  c->hold = hold;
  if (hold || c->held_len == 0) return;
  feed(c, c->held, c->held_len);
  free(c->held);
  c->held = NULL;
  c->held_len = 0;
}

static void copy_header(h2c_header_t *h, const uint8_t *name, size_t nl,
                        const uint8_t *value, size_t vl) {
  snprintf(h->name, sizeof(h->name), "%.*s", (int)nl, name);
  snprintf(h->value, sizeof(h->value), "%.*s", (int)vl, value);
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud) {
  (void)s;
  h2c_stream_t *st = stream_by_id(ud, f->hd.stream_id);
  if (st != NULL && f->hd.type == NGHTTP2_HEADERS) st->header_blocks++;
  return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f,
                     const uint8_t *name, size_t nl, const uint8_t *value,
                     size_t vl, uint8_t flags, void *ud) {
  (void)s;
  (void)flags;
  h2c_stream_t *st = stream_by_id(ud, f->hd.stream_id);
  if (st == NULL) return 0;
  if (st->header_blocks == 1 && st->nheaders < H2C_MAX_HEADERS)
    copy_header(&st->headers[st->nheaders++], name, nl, value, vl);
  else if (st->header_blocks > 1 && st->ntrailers < H2C_MAX_HEADERS)
    copy_header(&st->trailers[st->ntrailers++], name, nl, value, vl);
  return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud) {
  h2c_t *c = ud;
  (void)s;
  if (f->hd.type == NGHTTP2_GOAWAY) {
    c->got_goaway = 1;
    c->goaways++;
    c->goaway_code = f->goaway.error_code;
    c->goaway_last_stream = f->goaway.last_stream_id;
    snprintf(c->goaway_debug, sizeof(c->goaway_debug), "%.*s",
             (int)f->goaway.opaque_data_len, (const char *)f->goaway.opaque_data);
  }
  if (f->hd.type == NGHTTP2_PING && !(f->hd.flags & NGHTTP2_FLAG_ACK)) c->pings++;
  if (f->hd.type == NGHTTP2_PING && (f->hd.flags & NGHTTP2_FLAG_ACK)) {
    c->ping_acks++;
    memcpy(c->ping_data, f->ping.opaque_data, 8);
  }
  h2c_stream_t *st = stream_by_id(c, f->hd.stream_id);
  if (st == NULL) return 0;
  if (f->hd.type == NGHTTP2_HEADERS && st->header_blocks == 1 &&
      (f->hd.flags & NGHTTP2_FLAG_END_STREAM))
    st->trailers_only = 1;
  if (f->hd.type == NGHTTP2_DATA) st->data_frames++;
  if (f->hd.type == NGHTTP2_RST_STREAM) {
    st->got_rst = 1;
    st->rst_code = f->rst_stream.error_code;
  }
  return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id,
                   const uint8_t *data, size_t len, void *ud) {
  h2c_t *c = ud;
  (void)flags;
  h2c_stream_t *st = stream_by_id(c, id);
  if (st != NULL) {
    if (st->data_len + len + 1 > st->data_cap) { /* grow geometrically */
      st->data_cap = (st->data_len + len + 1) * 2;
      st->data = realloc(st->data, st->data_cap);
    }
    memcpy(st->data + st->data_len, data, len);
    st->data_len += len;
  }
  if (c->auto_window) nghttp2_session_consume(s, id, len);
  return 0;
}

static int on_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud) {
  (void)s;
  h2c_stream_t *st = stream_by_id(ud, id);
  if (st != NULL) {
    st->closed = 1;
    if (!st->got_rst) st->rst_code = code;
  }
  return 0;
}

static void on_connect(uv_connect_t *req, int status) {
  h2c_t *c = req->data;
  c->connected = 1;
  c->connect_status = status;
}

static int connected(void *arg) { return ((h2c_t *)arg)->connected; }

static void init(h2c_t *c, uv_loop_t *loop) {
  /* servers under test close on clients mid-write */
  signal(SIGPIPE, SIG_IGN);
  memset(c, 0, sizeof(*c));
  c->streams = calloc(H2C_MAX_STREAMS, sizeof(h2c_stream_t));
  c->loop = loop;
  c->auto_window = 1;
  c->creq.data = c;
}

static int start(h2c_t *c, int h2, uint32_t window, int no_ping_ack);

int h2c_connect(h2c_t *c, uv_loop_t *loop, int port, int h2, uint32_t window) {
  return h2c_connect_ex(c, loop, port, h2, window, 0);
}

int h2c_connect_ex(h2c_t *c, uv_loop_t *loop, int port, int h2, uint32_t window,
                   int no_ping_ack) {
  struct sockaddr_in addr;
  init(c, loop);
  uv_ip4_addr("127.0.0.1", port, &addr);
  uv_tcp_init(loop, &c->tcp);
  c->tcp.data = c;
  int err = uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&addr, on_connect);
  if (err != 0) {
    c->closed = 1;
    uv_close((uv_handle_t *)&c->tcp, NULL);
    return err;
  }
  h2c_run_until(loop, connected, c, 5000);
  if (!c->connected) return UV_ETIMEDOUT;
  if (c->connect_status != 0) return c->connect_status;
  uv_tcp_nodelay(&c->tcp, 1);
  return start(c, h2, window, no_ping_ack);
}

int h2c_connect_unix(h2c_t *c, uv_loop_t *loop, const char *path) {
  init(c, loop);
  uv_pipe_init(loop, &c->pipe, 0);
  c->pipe.data = c;
  uv_pipe_connect(&c->creq, &c->pipe, path, on_connect);
  h2c_run_until(loop, connected, c, 5000);
  if (c->connect_status != 0) return c->connect_status;
  return start(c, 1, 0, 0);
}

static int start(h2c_t *c, int h2, uint32_t window, int no_ping_ack) {
  /* Reading starts once the session exists, so no byte is dropped. */
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (!h2) return 0;
  nghttp2_session_callbacks *cbs;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_close);
  nghttp2_option *opt;
  nghttp2_option_new(&opt);
  nghttp2_option_set_no_auto_window_update(opt, 1);
  if (no_ping_ack) nghttp2_option_set_no_auto_ping_ack(opt, 1);
  nghttp2_session_client_new2(&c->h2, cbs, c, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  nghttp2_settings_entry iv[1] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE,
                                   window ? window : 65535}};
  nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, 1);
  if (window != 0) c->auto_window = 0;
  h2c_flush(c);
  return 0;
}

size_t h2c_frame(uint8_t *buf, size_t off, const void *msg, size_t len) {
  buf[off] = 0;
  buf[off + 1] = (uint8_t)(len >> 24);
  buf[off + 2] = (uint8_t)(len >> 16);
  buf[off + 3] = (uint8_t)(len >> 8);
  buf[off + 4] = (uint8_t)len;
  if (len > 0) memcpy(buf + off + 5, msg, len);
  return off + 5 + len;
}

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf,
                         size_t length, uint32_t *flags,
                         nghttp2_data_source *src, void *ud) {
  (void)s;
  (void)id;
  (void)ud;
  h2c_stream_t *st = src->ptr;
  size_t n = st->body_len - st->body_off;
  if (st->chunk && n > st->chunk) n = st->chunk;
  if (n > length) n = length;
  memcpy(buf, st->body + st->body_off, n);
  st->body_off += n;
  if (st->body_off == st->body_len) {
    if (st->end_after_body)
      *flags |= NGHTTP2_DATA_FLAG_EOF;
    else if (n == 0)
      return NGHTTP2_ERR_DEFERRED;
  }
  return (ssize_t)n;
}

int h2c_request(h2c_t *c, const char *path, const char *content_type,
                const char *const *extra, const uint8_t *body, size_t len,
                size_t chunk, int end_stream) {
  if (c->nstreams == H2C_MAX_STREAMS) return -1;
  int i = c->nstreams++;
  h2c_stream_t *st = &c->streams[i];
  memset(st, 0, sizeof(*st));
  st->body = malloc(len ? len : 1);
  if (len) memcpy(st->body, body, len);
  st->body_len = len;
  st->chunk = chunk;
  st->end_after_body = end_stream;
  nghttp2_nv nv[H2C_MAX_HEADERS];
  size_t n = 0;
#define NV(k, v) \
  nv[n++] = (nghttp2_nv){(uint8_t *)(k), (uint8_t *)(v), strlen(k), strlen(v), 0}
  NV(":method", "POST");
  NV(":scheme", "http");
  NV(":path", path);
  NV(":authority", "localhost");
  NV("content-type", content_type ? content_type : "application/grpc");
  NV("te", "trailers");
  for (; extra && extra[0] && n + 1 < H2C_MAX_HEADERS; extra += 2) NV(extra[0], extra[1]);
#undef NV
  nghttp2_data_provider prd = {.source.ptr = st, .read_callback = read_body};
  /* Always a provider: without one nghttp2 ends the stream with HEADERS. */
  st->id = nghttp2_submit_request(c->h2, NULL, nv, n, &prd, NULL);
  h2c_flush(c);
  return st->id > 0 ? i : -1;
}

void h2c_end_stream(h2c_t *c, int i) {
  c->streams[i].end_after_body = 1;
  nghttp2_session_resume_data(c->h2, c->streams[i].id);
  h2c_flush(c);
}

void h2c_send(h2c_t *c, int i, const uint8_t *body, size_t len, int end_stream) {
  h2c_stream_t *st = &c->streams[i];
  st->body = realloc(st->body, st->body_len + len + 1);
  if (len) memcpy(st->body + st->body_len, body, len);
  st->body_len += len;
  if (end_stream) st->end_after_body = 1;
  nghttp2_session_resume_data(c->h2, st->id);
  h2c_flush(c);
}

void h2c_reset(h2c_t *c, int i, uint32_t code) {
  nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, c->streams[i].id, code);
  h2c_flush(c);
}

void h2c_consume(h2c_t *c, int i, size_t n) {
  nghttp2_session_consume(c->h2, c->streams[i].id, n);
  h2c_flush(c);
}

static void on_tick(uv_timer_t *t) { (void)t; }

int h2c_run_until(uv_loop_t *loop, int (*pred)(void *), void *arg,
                  int timeout_ms) {
  uv_timer_t tick;
  uv_timer_init(loop, &tick);
  uv_timer_start(&tick, on_tick, 5, 5);
  uv_update_time(loop);
  uint64_t end = uv_now(loop) + (uint64_t)timeout_ms;
  while (!pred(arg) && uv_now(loop) < end) uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&tick, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  return pred(arg);
}

static int never(void *arg) {
  (void)arg;
  return 0;
}

void h2c_run_for(uv_loop_t *loop, int ms) { h2c_run_until(loop, never, NULL, ms); }

static const char *find(const h2c_header_t *h, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (strcmp(h[i].name, name) == 0) return h[i].value;
  return NULL;
}

const char *h2c_header(const h2c_stream_t *s, const char *name) {
  return find(s->headers, s->nheaders, name);
}

const char *h2c_trailer(const h2c_stream_t *s, const char *name) {
  return find(s->trailers, s->ntrailers, name);
}

int h2c_grpc_status(const h2c_stream_t *s) {
  const char *v = s->trailers_only ? h2c_header(s, "grpc-status")
                                   : h2c_trailer(s, "grpc-status");
  return v ? atoi(v) : -1;
}

static void on_tcp_closed(uv_handle_t *h) { ((h2c_t *)h->data)->closed = 2; }
static int is_closed(void *arg) { return ((h2c_t *)arg)->closed == 2; }

void h2c_close(h2c_t *c) {
  if (!c->closed) {
    c->closed = 1;
    uv_close((uv_handle_t *)&c->tcp, on_tcp_closed);
  }
  h2c_run_until(c->loop, is_closed, c, 2000);
  if (c->h2) nghttp2_session_del(c->h2);
  c->h2 = NULL;
  for (int i = 0; i < c->nstreams; i++) {
    free(c->streams[i].body);
    free(c->streams[i].data);
  }
  free(c->streams);
  c->streams = NULL;
  free(c->raw);
  c->raw = NULL;
  free(c->held);
  c->held = NULL;
  c->held_len = 0;
}

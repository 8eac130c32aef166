#include "conn.h"

#include <string.h>

/* Bytes serialized for one write before the writer yields, so one busy
 * connection cannot hold the loop; the write's completion continues. */
#define WRITE_BATCH_MAX (256 * 1024)
/* Message pieces shorter than this are copied into the write's arena: an
 * iovec entry costs the kernel more than copying a few dozen bytes. */
#define COPY_BELOW 256

static void flush(uvg__conn_t *c);
static void detach_stream(uvg__tstream_t *s, uint32_t h2_error);
static void on_linger_over(uvg__timer_t *t);

/* ---- nghttp2 session callbacks ---- */

static size_t out_bytes(uvg__conn_t *c) { return uvg__iovs_bytes(&c->out); }

static ssize_t on_send(nghttp2_session *h2, const uint8_t *data, size_t len,
                       int flags, void *ud) {
  uvg__conn_t *c = ud;
  (void)h2;
  (void)flags;
  if (c->out.n > 0 && out_bytes(c) >= WRITE_BATCH_MAX)
    return NGHTTP2_ERR_WOULDBLOCK;
  if (uvg__iovs_copy(&c->out, data, len) != 0)
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  return (ssize_t)len;
}

/* The data provider of every response: reports what the send queue holds,
 * without copying (NO_COPY: on_send_data writes the bytes), and asks for the
 * trailers once the queue is empty and the stream is ending. */
static ssize_t on_read_data(nghttp2_session *h2, int32_t id, uint8_t *buf,
                            size_t length, uint32_t *flags,
                            nghttp2_data_source *src, void *ud) {
  uvg__tstream_t *s = src->ptr;
  (void)buf;
  (void)ud;
  size_t avail = s->queued;
  if (avail == 0 && !s->end_queued) {
    s->deferred = 1;
    return NGHTTP2_ERR_DEFERRED;
  }
  if (avail > 0) *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
  if (avail <= length && s->end_queued) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (s->ntrailers > 0) {
      if (nghttp2_submit_trailer(h2, id, s->trailers, s->ntrailers) != 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
      *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    }
  }
  return (ssize_t)(avail < length ? avail : length);
}

static int add_piece(uvg__conn_t *c, const uint8_t *p, size_t n) {
  return n < COPY_BELOW ? uvg__iovs_copy(&c->out, p, n)
                        : uvg__iovs_ref(&c->out, p, n);
}

static int on_send_data(nghttp2_session *h2, nghttp2_frame *frame,
                        const uint8_t *framehd, size_t length,
                        nghttp2_data_source *src, void *ud) {
  uvg__conn_t *c = ud;
  uvg__tstream_t *s = src->ptr;
  (void)h2;
  (void)frame;
  if (c->out.n > 0 && out_bytes(c) >= WRITE_BATCH_MAX)
    return NGHTTP2_ERR_WOULDBLOCK;
  if (uvg__iovs_copy(&c->out, framehd, 9) != 0) return NGHTTP2_ERR_CALLBACK_FAILURE;
  while (length > 0) {
    uvg__msg_t *m = uvg__container_of(s->sendq.next, uvg__msg_t, link);
    size_t total = m->head_len + m->len, n;
    int rc;
    if (m->off < m->head_len) {
      n = m->head_len - m->off;
      if (n > length) n = length;
      rc = uvg__iovs_copy(&c->out, m->head + m->off, n);
    } else {
      n = total - m->off;
      if (n > length) n = length;
      rc = add_piece(c, m->data + (m->off - m->head_len), n);
    }
    if (rc != 0) return NGHTTP2_ERR_CALLBACK_FAILURE;
    m->off += n;
    s->queued -= n;
    length -= n;
    if (!m->in_write) {
      m->in_write = 1;
      uvg__list_push(&c->write_msgs, &m->wlink);
    }
    if (m->off == total) uvg__list_remove(&m->link);
  }
  return 0;
}

static uvg__tstream_t *stream_of(nghttp2_session *h2, int32_t id) {
  return nghttp2_session_get_stream_user_data(h2, id);
}

/* Called for every frame before nghttp2 acts on it. */
static int on_begin_frame(nghttp2_session *h2, const nghttp2_frame_hd *hd,
                          void *ud) {
  (void)h2;
  return uvg__srv_on_begin_frame(ud, hd);
}

static int on_begin_headers(nghttp2_session *h2, const nghttp2_frame *frame,
                            void *ud) {
  uvg__conn_t *c = ud;
  if (c->is_client || frame->hd.type != NGHTTP2_HEADERS ||
      frame->headers.cat != NGHTTP2_HCAT_REQUEST || c->closing)
    return 0;
  uvg__tstream_t *s = uvg__srv_refuses(c, frame->hd.stream_id)
                          ? NULL
                          : c->cbs->stream_open(c);
  if (s == NULL) {
    nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                              NGHTTP2_REFUSED_STREAM);
    return 0;
  }
  memset(s, 0, sizeof(*s));
  s->id = frame->hd.stream_id;
  s->conn = c;
  uvg__list_init(&s->sendq);
  uvg__list_push(&c->streams, &s->conn_link);
  nghttp2_session_set_stream_user_data(h2, s->id, s);
  c->nstreams++;
  uvg__list_remove(&c->idle_link);
  uvg__srv_on_stream_count(c);
  /* More streams than the window was shared among: the next write lowers
   * it, even if no handler answers yet. */
  if (c->nstreams > c->window_streams) uvg__conn_schedule_flush(c);
  return 0;
}

/* The kind of a received header block, or -1 for one the upper layer does
 * not read (a client's trailers). A server's 1xx informational headers
 * come as a response block; the client call skips them. */
static int block_kind(const uvg__conn_t *c, const nghttp2_frame *frame) {
  if (frame->hd.type != NGHTTP2_HEADERS) return -1;
  switch (frame->headers.cat) {
  case NGHTTP2_HCAT_REQUEST:
    return c->is_client ? -1 : UVG__HB_REQUEST;
  case NGHTTP2_HCAT_RESPONSE:
    return c->is_client ? UVG__HB_RESPONSE : -1;
  case NGHTTP2_HCAT_HEADERS:
    /* nghttp2 has checked it ends the stream (RFC 9113 8.1) */
    return c->is_client ? UVG__HB_TRAILERS : -1;
  default:
    return -1;
  }
}

static int on_header(nghttp2_session *h2, const nghttp2_frame *frame,
                     const uint8_t *name, size_t namelen, const uint8_t *value,
                     size_t valuelen, uint8_t flags, void *ud) {
  uvg__conn_t *c = ud;
  (void)flags;
  int kind = block_kind(c, frame);
  if (kind < 0) return 0;
  uvg__tstream_t *s = stream_of(h2, frame->hd.stream_id);
  if (s == NULL) return 0;
  if (c->cbs->on_header(s, (uvg__hblock_t)kind, name, namelen, value,
                        valuelen) != 0)
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  return 0;
}

static void on_settings_or_goaway(uvg__conn_t *c, const nghttp2_frame *frame) {
  if (frame->hd.type == NGHTTP2_SETTINGS) {
    if ((frame->hd.flags & NGHTTP2_FLAG_ACK) || c->ready) return;
    c->ready = 1;
    if (c->cbs->on_ready != NULL) c->cbs->on_ready(c);
  } else if (frame->hd.type == NGHTTP2_GOAWAY) {
    c->goaway_received = 1;
    UVG__TRACE(UVG__TRACE_TRANSPORT, "%s: GOAWAY last stream %d code %u",
               c->peer, frame->goaway.last_stream_id, frame->goaway.error_code);
    if (frame->goaway.error_code != NGHTTP2_NO_ERROR) {
      /* the peer's reason is the connection's (a TLS port answering a
       * plaintext client says so in the debug data) */
      size_t n = frame->goaway.opaque_data_len, k;
      const uint8_t *d = frame->goaway.opaque_data;
      k = (size_t)snprintf(c->goaway_text, sizeof(c->goaway_text),
                           "GOAWAY %s from the peer%s",
                           nghttp2_http2_strerror(frame->goaway.error_code),
                           n > 0 ? ": " : "");
      for (size_t i = 0; i < n && k + 1 < sizeof(c->goaway_text); i++)
        c->goaway_text[k++] = d[i] >= 0x20 && d[i] < 0x7f ? (char)d[i] : '?';
      c->goaway_text[k] = '\0';
      uvg__conn_set_close_reason(c, c->goaway_text);
    }
    if (c->cbs->on_goaway != NULL)
      c->cbs->on_goaway(c, frame->goaway.last_stream_id,
                        frame->goaway.error_code, frame->goaway.opaque_data,
                        frame->goaway.opaque_data_len);
  }
}

/* A reset of a stream whose status is in the write in flight: the peer
 * will not read that status, although the write may still complete. The
 * stream may be gone from nghttp2 already (both ends closed when our
 * END_STREAM was serialized), so it is looked up in the write's list. A
 * NO_ERROR reset is a client that had all it wanted (grpc-go sends one
 * after the trailers). */
static void note_reset(uvg__conn_t *c, int32_t id, uint32_t code) {
  if (c->is_client || code == NGHTTP2_NO_ERROR) return;
  for (uvg__list_t *p = c->write_streams.next; p != &c->write_streams; p = p->next) {
    uvg__tstream_t *s = uvg__container_of(p, uvg__tstream_t, wlink);
    if (s->id == id) {
      s->reset_code = code;
      return;
    }
  }
}

static int on_frame_recv(nghttp2_session *h2, const nghttp2_frame *frame,
                         void *ud) {
  uvg__conn_t *c = ud;
  uvg__conn_on_frame(c, frame);
  if (frame->hd.type == NGHTTP2_RST_STREAM)
    note_reset(c, frame->hd.stream_id, frame->rst_stream.error_code);
  if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) {
    on_settings_or_goaway(c, frame);
    return 0;
  }
  uvg__tstream_t *s = stream_of(h2, frame->hd.stream_id);
  if (s == NULL) return 0;
  int end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  int kind = block_kind(c, frame);
  if (kind >= 0) c->cbs->on_headers(s, (uvg__hblock_t)kind, end);
  if (end && s->conn != NULL && !s->remote_closed) {
    s->remote_closed = 1;
    c->cbs->on_remote_end(s);
  }
  return 0;
}

static int on_data_chunk(nghttp2_session *h2, uint8_t flags, int32_t id,
                         const uint8_t *data, size_t len, void *ud) {
  uvg__conn_t *c = ud;
  (void)flags;
  uvg__tstream_t *s = stream_of(h2, id);
  /* The connection's window comes back at once, as grpc-go does: only the
   * stream's waits for the application, so one unread call cannot starve
   * the others. */
  nghttp2_session_consume_connection(h2, len);
  uvg__conn_on_data_received(c, len);
  if (s == NULL) {
    nghttp2_session_consume_stream(h2, id, len); /* nobody reads it */
    return 0;
  }
  s->unconsumed += len;
  c->cbs->on_data(s, data, len);
  return 0;
}

static int on_frame_send(nghttp2_session *h2, const nghttp2_frame *frame,
                         void *ud) {
  uvg__conn_t *c = ud;
  if (frame->hd.type == NGHTTP2_GOAWAY && c->close_on_goaway) {
    c->close_after_write = 1;
    return 0;
  }
  if (frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA)
    uvg__srv_on_headers_or_data_sent(c);
  /* The server may fill a stream's window only once it has its HEADERS:
   * the cap (manage.c) counts streams from then on. */
  if (frame->hd.type == NGHTTP2_HEADERS &&
      frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    uvg__tstream_t *s = stream_of(h2, frame->hd.stream_id);
    if (s != NULL && !s->on_wire) {
      s->on_wire = 1;
      c->wire_streams++;
    }
  }
  if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
      !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
    return 0;
  uvg__tstream_t *s = stream_of(h2, frame->hd.stream_id);
  if (s == NULL || c->is_client) return 0;
  /* The status is only delivered once this write completes. */
  s->end_in_write = 1;
  uvg__list_push(&c->write_streams, &s->wlink);
  /* RFC 9113 8.1: a server that has sent its whole response may tell a
   * client that is still sending to stop, with RST_STREAM NO_ERROR. */
  if (!s->remote_closed)
    nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_NO_ERROR);
  return 0;
}

static int on_stream_close(nghttp2_session *h2, int32_t id, uint32_t error,
                           void *ud) {
  (void)ud;
  uvg__tstream_t *s = stream_of(h2, id);
  if (s != NULL) detach_stream(s, error);
  return 0;
}

/* Makes a filled-in set of callbacks and only then hands it out. nghttp2
 * allocates it with plain calloc, not through nghttp2_mem. Returns 0 or
 * UVG_ENOMEM. */
static int new_callbacks(nghttp2_session_callbacks **out) {
  nghttp2_session_callbacks *cbs;
  if (nghttp2_session_callbacks_new(&cbs) != 0) return UVG_ENOMEM;
  nghttp2_session_callbacks_set_send_callback(cbs, on_send);
  nghttp2_session_callbacks_set_send_data_callback(cbs, on_send_data);
  nghttp2_session_callbacks_set_on_begin_frame_callback(cbs, on_begin_frame);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
  *out = cbs;
  return 0;
}

/* One set for every connection of the process, made once: loops on other
 * threads may start connections at the same moment. Never freed. NULL if
 * making it failed; connections then make their own (see session_new). */
static nghttp2_session_callbacks *shared_callbacks;
static uv_once_t shared_callbacks_once = UV_ONCE_INIT;

static void make_shared_callbacks(void) {
  if (new_callbacks(&shared_callbacks) != 0) shared_callbacks = NULL;
}

/* nghttp2 copies the callbacks into the session, so a set made for one
 * session can be freed at once. Returns 0 or UVG_ENOMEM. */
static int session_new(uvg__conn_t *c, int client) {
  nghttp2_session_callbacks *own = NULL;
  uv_once(&shared_callbacks_once, make_shared_callbacks);
  const nghttp2_session_callbacks *cbs = shared_callbacks;
  /* uv_once does not run twice: an out-of-memory at that moment must not
   * refuse every later connection. */
  if (cbs == NULL) {
    if (new_callbacks(&own) != 0) return UVG_ENOMEM;
    cbs = own;
  }
  /* nghttp2's allocations come from the scheduler's free lists (and so
   * from the library's allocator): the stream objects, queued frames and
   * header copies every call makes are reused, not allocated each time. */
  uvg__h2mem_init(&c->h2mem, &c->sched->mem, &c->sched->pages);
  nghttp2_mem mem = uvg__h2mem_begin(&c->h2mem);
  /* Window is granted by hand (uvg__ts_consume) as the application takes
   * messages: reading is paced by the application, on both sides. */
  nghttp2_option *opt;
  int rv = nghttp2_option_new(&opt);
  if (rv == 0) {
    nghttp2_option_set_no_auto_window_update(opt, 1);
    /* gRPC values may begin or end with a space (a grpc-message, ASCII
     * metadata); RFC 9113 8.2.1's check would reset such streams. */
    nghttp2_option_set_no_rfc9113_leading_and_trailing_ws_validation(opt, 1);
    /* A server's nghttp2 keeps up to max_concurrent_streams closed streams
     * for RFC 7540 priorities, which gRPC never sends: 100 stream objects
     * an idle connection would hold for nothing. */
    nghttp2_option_set_no_closed_streams(opt, 1);
    rv = client ? nghttp2_session_client_new3(&c->h2, cbs, c, opt, &mem)
                : nghttp2_session_server_new3(&c->h2, cbs, c, opt, &mem);
    nghttp2_option_del(opt);
  }
  uvg__h2mem_created(&c->h2mem);
  if (own != NULL) nghttp2_session_callbacks_del(own);
  return rv == 0 ? 0 : UVG_ENOMEM;
}

/* ---- streams ---- */

static void drop_msg(uvg__msg_t *m) {
  uvg__list_remove(&m->link);
  if (m->in_write)
    m->dropped = 1; /* its bytes are in the write in flight: wait for it */
  else
    m->done(m, UVG_ECANCELED);
}

static void detach_stream(uvg__tstream_t *s, uint32_t h2_error) {
  uvg__conn_t *c = s->conn;
  if (c == NULL) return;
  if (c->h2 != NULL) nghttp2_session_set_stream_user_data(c->h2, s->id, NULL);
  uvg__list_remove(&s->conn_link);
  c->nstreams--;
  if (s->on_wire) c->wire_streams--;
  if (!c->closing) uvg__srv_on_stream_count(c);
  if (c->close_when_idle && c->nstreams == 0 && !c->closing)
    uvg__conn_goaway(c, NGHTTP2_NO_ERROR, c->close_reason);
  while (!uvg__list_empty(&s->sendq))
    drop_msg(uvg__container_of(s->sendq.next, uvg__msg_t, link));
  s->queued = 0;
  uvg__pool_free(&c->sched->mem, s->trailers);
  s->trailers = NULL;
  s->ntrailers = 0;
  s->unconsumed = 0;
  s->conn = NULL;
  if (s->end_in_write) {
    /* complete_write() reports it; a reset by the peer wins */
    if (h2_error != NGHTTP2_NO_ERROR && h2_error != UVG__H2_CONN_CLOSED)
      s->reset_code = h2_error;
    return;
  }
  if (c->is_client)
    ; /* our END_STREAM is only the half-close */
  else if (s->end_written)
    h2_error = NGHTTP2_NO_ERROR; /* the peer has the whole response */
  else if (h2_error == NGHTTP2_NO_ERROR)
    h2_error = NGHTTP2_CANCEL; /* the peer reset before our status */
  c->cbs->on_stream_close(s, h2_error);
}

static void resume(uvg__tstream_t *s) {
  if (s->deferred) {
    s->deferred = 0;
    nghttp2_session_resume_data(s->conn->h2, s->id);
  }
  uvg__conn_schedule_flush(s->conn);
}

static const nghttp2_data_provider *provider_for(uvg__tstream_t *s,
                                                 nghttp2_data_provider *p) {
  p->source.ptr = s;
  p->read_callback = on_read_data;
  return p;
}

int uvg__ts_respond(uvg__tstream_t *s, const nghttp2_nv *nv, size_t n,
                    int end_stream) {
  nghttp2_data_provider p;
  if (s->conn == NULL || s->conn->closing) return UVG_ECLOSED;
  int rv = nghttp2_submit_response(s->conn->h2, s->id, nv, n,
                                   end_stream ? NULL : provider_for(s, &p));
  if (rv != 0) return rv == NGHTTP2_ERR_NOMEM ? UVG_ENOMEM : UVG_ECLOSED;
  s->has_provider = !end_stream;
  uvg__conn_schedule_flush(s->conn);
  return 0;
}

int uvg__ts_send(uvg__tstream_t *s, uvg__msg_t *m) {
  if (s->conn == NULL || s->conn->closing || s->end_queued) return UVG_ECLOSED;
  m->off = 0;
  m->in_write = m->dropped = 0;
  uvg__list_init(&m->wlink);
  uvg__list_push(&s->sendq, &m->link);
  s->queued += m->head_len + m->len;
  resume(s);
  return 0;
}

/* Copies nv into one block of the scheduler's pool so that the trailers
 * outlive the caller. */
static nghttp2_nv *pack_nv(uvg__pool_t *pool, const nghttp2_nv *nv, size_t n) {
  size_t size = n * sizeof(nghttp2_nv);
  for (size_t i = 0; i < n; i++) size += nv[i].namelen + nv[i].valuelen;
  nghttp2_nv *out = uvg__pool_alloc(pool, size);
  if (out == NULL) return NULL;
  uint8_t *p = (uint8_t *)(out + n);
  for (size_t i = 0; i < n; i++) {
    out[i] = nv[i];
    out[i].name = memcpy(p, nv[i].name, nv[i].namelen);
    p += nv[i].namelen;
    out[i].value = nv[i].valuelen ? memcpy(p, nv[i].value, nv[i].valuelen) : p;
    p += nv[i].valuelen;
  }
  return out;
}

int uvg__ts_end(uvg__tstream_t *s, const nghttp2_nv *nv, size_t n) {
  if (s->conn == NULL || s->conn->closing || s->end_queued) return UVG_ECLOSED;
  if (n > 0 &&
      (s->trailers = pack_nv(&s->conn->sched->mem, nv, n)) == NULL)
    return UVG_ENOMEM;
  s->ntrailers = n;
  s->end_queued = 1;
  resume(s);
  return 0;
}

void uvg__ts_consume(uvg__tstream_t *s) {
  uvg__conn_t *c = s->conn;
  if (c == NULL || s->unconsumed == 0 || c->closing) return;
  nghttp2_session_consume_stream(c->h2, s->id, s->unconsumed);
  s->unconsumed = 0;
  uvg__conn_schedule_flush(c);
}

void uvg__ts_reset(uvg__tstream_t *s, uint32_t h2_error) {
  uvg__conn_t *c = s->conn;
  if (c == NULL || c->closing) return;
  nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, s->id, h2_error);
  uvg__conn_schedule_flush(c);
}

/* ---- the connection ---- */

static void close_now(uvg__conn_t *c);
static void linger(uvg__conn_t *c);
static void abort_with_goaway(uvg__conn_t *c, uint32_t h2_error);

static void on_io_read(uvg__stream_t *io, ssize_t nread, const uint8_t *buf) {
  uvg__conn_t *c = uvg__container_of(io, uvg__conn_t, io);
  if (c->closing) {
    if (c->lingering && nread < 0) close_now(c);
    return;
  }
  if (nread < 0) {
    UVG__TRACE(UVG__TRACE_TRANSPORT, "%s: read ended: %s", c->peer,
               uv_strerror((int)nread));
    /* a layer's failure (a TLS handshake) says more than the code */
    const char *why = c->io.ops->error ? c->io.ops->error(&c->io) : NULL;
    uvg__conn_set_close_reason(c, why                ? why
                                  : nread == UV_EOF ? "connection closed by the peer"
                                                    : "connection reset or read failed");
    close_now(c);
    return;
  }
  uvg__conn_on_read(c);
  ssize_t rv = nghttp2_session_mem_recv(c->h2, buf, (size_t)nread);
  if (rv < 0) {
    if (rv == NGHTTP2_ERR_NOMEM || rv == NGHTTP2_ERR_CALLBACK_FAILURE) {
      /* Our own failure, not the peer's: RFC 9113 7 names it
       * INTERNAL_ERROR, and it is no protocol error of the client's. */
      uvg__log(UVG_LOG_WARN, "%s: internal error: %s; closing connection",
               c->peer, nghttp2_strerror((int)rv));
      uvg__conn_set_close_reason(c, "internal error (out of memory)");
      abort_with_goaway(c, NGHTTP2_INTERNAL_ERROR);
      return;
    }
    if (c->stat_proto) (*c->stat_proto)++;
    if (rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC) {
      /* not an HTTP/2 client: nothing it could read would help */
      uvg__log(UVG_LOG_WARN, "%s: bad HTTP/2 client preface; closing connection",
               c->peer);
      close_now(c);
      return;
    }
    uvg__log(UVG_LOG_WARN, "%s: HTTP/2 error: %s; closing connection",
             c->peer, nghttp2_strerror((int)rv));
    uvg__conn_set_close_reason(c, "HTTP/2 protocol error by the peer");
    abort_with_goaway(c, rv == NGHTTP2_ERR_FLOODED ||
                                 rv == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS
                             ? NGHTTP2_ENHANCE_YOUR_CALM
                             : NGHTTP2_PROTOCOL_ERROR);
    return;
  }
  uvg__conn_schedule_flush(c);
}

/* The write in flight is done (status 0) or failed: its messages are
 * handed back and the streams whose END_STREAM it carried learn their fate.
 * A stream the transport already detached is reported closed now. */
static void complete_write(uvg__conn_t *c, int status) {
  while (!uvg__list_empty(&c->write_msgs)) {
    uvg__msg_t *m = uvg__container_of(c->write_msgs.next, uvg__msg_t, wlink);
    uvg__list_remove(&m->wlink);
    m->in_write = 0;
    if (m->dropped)
      m->done(m, UVG_ECANCELED);
    else if (m->off == m->head_len + m->len)
      m->done(m, status < 0 ? UVG_ECANCELED : 0);
    else if (status < 0)
      drop_msg(m);
  }
  while (!uvg__list_empty(&c->write_streams)) {
    uvg__tstream_t *s =
        uvg__container_of(c->write_streams.next, uvg__tstream_t, wlink);
    uvg__list_remove(&s->wlink);
    s->end_in_write = 0;
    s->end_written = status >= 0 && s->reset_code == 0;
    if (s->conn == NULL)
      c->cbs->on_stream_close(s, status < 0 ? UVG__H2_CONN_CLOSED : s->reset_code);
  }
}

/* The write is over, in flight until now or taken by the socket at once:
 * its messages and streams learn their fate. Returns 1 if the connection
 * may write again, 0 if it is closing. */
static int end_write(uvg__conn_t *c, int status) {
  c->writing = 0;
  uvg__iovs_reset(&c->out);
  /* One large batch must not stay with an idle connection for good. */
  if (c->out.arena.cap > 16 * 1024) uvg__iovs_free(&c->out);
  complete_write(c, status);
  if (c->closing) return 0;
  if (c->close_after_write) {
    linger(c);
    return 0;
  }
  if (status < 0) {
    UVG__TRACE(UVG__TRACE_TRANSPORT, "%s: write failed: %s", c->peer,
               uv_strerror(status));
    uvg__conn_set_close_reason(c, "write failed");
    close_now(c);
    return 0;
  }
  return 1;
}

static void on_io_write(uvg__stream_t *io, int status) {
  uvg__conn_t *c = uvg__container_of(io, uvg__conn_t, io);
  if (end_write(c, status)) flush(c);
}

static void on_io_close(uvg__stream_t *io) {
  uvg__conn_t *c = uvg__container_of(io, uvg__conn_t, io);
  complete_write(c, UVG_ECANCELED);
  uvg__list_remove(&c->idle_link);
  if (c->h2 != NULL) nghttp2_session_del(c->h2);
  c->h2 = NULL;
  uvg__iovs_free(&c->out);
  c->cbs->on_close(c);
}

static const uvg__stream_cbs_t io_cbs = {on_io_read, on_io_write, on_io_close};

void uvg__conn_init(uvg__conn_t *c, uvg__sched_t *sched,
                    const uvg__conn_cbs_t *cbs) {
  c->sched = sched;
  c->cbs = cbs;
  c->h2 = NULL;
  c->writing = c->flush_queued = c->closing = 0;
  c->is_client = c->ready = c->goaway_received = 0;
  c->close_reason = NULL;
  uvg__work_init(&c->flush_node);
  uvg__workq_init(sched, &c->q);
  uvg__list_init(&c->streams);
  uvg__list_init(&c->write_msgs);
  uvg__list_init(&c->write_streams);
  uvg__list_init(&c->idle_link);
  uvg__iovs_init(&c->out);
  c->io.cbs = &io_cbs;
  c->peer[0] = '\0';
  c->srv = NULL;
  c->goaway_text[0] = '\0';
  c->settings = NULL;
  c->nstreams = c->wire_streams = 0;
  c->ping_outstanding = 0;
  c->close_on_goaway = c->close_after_write = c->lingering = 0;
  c->close_when_idle = 0;
  c->last_read = c->ping_sent_at = 0;
  uvg__timer_init(sched, &c->ka_timer);
  uvg__timer_init(sched, &c->hs_timer);
  uvg__timer_init(sched, &c->close_timer);
}

/* The first SETTINGS says what this side accepts: the server its stream
 * limit, the client that it takes no pushed streams (gRPC has none). */
static int start(uvg__conn_t *c, const uvg__conn_settings_t *st, int client) {
  c->is_client = (uint8_t)client;
  c->io.ops->peer_name(&c->io, c->peer, sizeof(c->peer));
  if (session_new(c, client) != 0) return UVG_ENOMEM;
  nghttp2_settings_entry iv[] = {
      client ? (nghttp2_settings_entry){NGHTTP2_SETTINGS_ENABLE_PUSH, 0}
             : (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
                                        st->max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, st->initial_window_size},
      {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, st->max_frame_size},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, st->max_header_list_size},
  };
  if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, 4) != 0 ||
      nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0,
                                            (int32_t)st->connection_window_size) != 0)
    return UVG_ENOMEM;
  c->settings = st;
  if (st->keepalive_time && st->keepalive_timeout && c->io.ops->set_user_timeout)
    c->io.ops->set_user_timeout(&c->io, st->keepalive_timeout); /* gRFC A18 */
  int err = c->io.ops->read_start(&c->io);
  if (err != 0) return err;
  uvg__conn_manage_start(c);
  uvg__conn_schedule_flush(c);
  UVG__TRACE(UVG__TRACE_TRANSPORT, "%s: %s connection open", c->peer,
             client ? "client" : "server");
  return 0;
}

int uvg__conn_start_server(uvg__srvconn_t *sc, const uvg__conn_settings_t *st) {
  return start(&sc->c, st, 0);
}

int uvg__conn_start_client(uvg__conn_t *c, const uvg__conn_settings_t *st) {
  return start(c, st, 1);
}

int uvg__conn_request(uvg__conn_t *c, uvg__tstream_t *s, const nghttp2_nv *nv,
                      size_t n) {
  nghttp2_data_provider p;
  if (c->closing || c->goaway_received || c->h2 == NULL) return UVG_ECLOSED;
  memset(s, 0, sizeof(*s));
  uvg__list_init(&s->sendq);
  uvg__list_init(&s->wlink);
  int32_t id = nghttp2_submit_request(c->h2, NULL, nv, n, provider_for(s, &p), s);
  if (id < 0) return id == NGHTTP2_ERR_NOMEM ? UVG_ENOMEM : UVG_ECLOSED;
  s->id = id;
  s->conn = c;
  s->has_provider = 1;
  uvg__list_push(&c->streams, &s->conn_link);
  c->nstreams++;
  uvg__list_remove(&c->idle_link);
  uvg__conn_schedule_flush(c);
  return 0;
}

static void run_flush(void *arg, int status) {
  uvg__conn_t *c = arg;
  c->flush_queued = 0;
  if (status == 0) flush(c);
}

void uvg__conn_schedule_flush(uvg__conn_t *c) {
  if (c->flush_queued || c->closing) return;
  if (uvg__workq_post_node(&c->q, &c->flush_node, run_flush, c) == 0)
    c->flush_queued = 1;
}

/* ---- giving memory back while idle ----
 *
 * A connection without streams joins its scheduler's list of idle ones,
 * oldest first; one timer walks it. Once idle sched->idle_trim_ms, the
 * connection gives back the pages nghttp2 can do without (h2mem.h) and
 * its write buffer. Joining and leaving are list links, so a call pays
 * nothing for it. */
/* Connections trimmed per timer callback: ten thousand that went idle
 * together must not stall the loop. */
#define IDLE_TRIM_BATCH 64

static void on_idle_timer(uvg__timer_t *t);

static void idle_enter(uvg__conn_t *c) {
  if (!uvg__list_empty(&c->idle_link)) return;
  uvg__sched_t *s = c->sched;
  c->idle_due = uv_now(s->loop) + s->idle_trim_ms;
  uvg__list_push(&s->idle_conns, &c->idle_link);
  if (!uvg__timer_armed(&s->idle_timer))
    uvg__timer_start(&s->idle_timer, on_idle_timer, s->idle_trim_ms);
}

static void trim(uvg__conn_t *c) {
  if (c->nstreams > 0 || c->writing || c->closing || c->h2 == NULL ||
      nghttp2_session_want_write(c->h2))
    return;
  uvg__iovs_free(&c->out);
  c->sched->idle_trimmed += uvg__h2mem_trim(&c->h2mem);
  c->sched->idle_trims++;
}

static void on_idle_timer(uvg__timer_t *t) {
  uvg__sched_t *s = uvg__container_of(t, uvg__sched_t, idle_timer);
  uint64_t now = uv_now(s->loop);
  for (int n = 0; !uvg__list_empty(&s->idle_conns); n++) {
    uvg__conn_t *c =
        uvg__container_of(s->idle_conns.next, uvg__conn_t, idle_link);
    if (n == IDLE_TRIM_BATCH || c->idle_due > now) {
      /* At least 1 ms: a timer due now would fire again in this same
       * pass over the due timers, and the batch would not yield. */
      uvg__timer_start(t, on_idle_timer, c->idle_due > now + 1 ? c->idle_due - now : 1);
      return;
    }
    uvg__list_remove(&c->idle_link);
    trim(c);
  }
}

/* Writes the chain: first what the socket takes at once, then the rest
 * with a write whose completion follows. Returns 1 if the socket took it
 * all (no completion follows), 0 if a write is in flight, or a libuv
 * error. */
static int write_out(uvg__conn_t *c) {
  if (c->io.ops->try_write != NULL) {
    int n = c->io.ops->try_write(&c->io, c->out.iov, c->out.n);
    if (n < 0) return n;
    if ((size_t)n == out_bytes(c)) return 1;
    uvg__iovs_consume(&c->out, (size_t)n);
  }
  return c->io.ops->write(&c->io, c->out.iov, c->out.n);
}

/* Serializes what is pending and writes it; from the queue, or at once
 * when the write in flight completes (a flush still queued then finds
 * nothing to do). While the socket takes each batch at once, the next
 * one follows in the same call, up to a batch's worth: then the flush
 * goes back to the queue, behind the other connections' work, so one busy
 * connection cannot hold the loop. */
static void flush(uvg__conn_t *c) {
  size_t taken = 0;
  while (!c->writing && !c->closing) {
    if (taken >= WRITE_BATCH_MAX) {
      uvg__conn_schedule_flush(c);
      return;
    }
    /* Once a write, before the HEADERS it may carry, not once a stream.
     * Without the smaller window they wait: for a turn, not for good. */
    if (uvg__conn_window_update(c) != 0) {
      uvg__conn_schedule_flush(c);
      return;
    }
    int rv = nghttp2_session_send(c->h2);
    if (rv != 0) {
      uvg__log(UVG_LOG_WARN, "%s: HTTP/2 send failed: %s; closing connection",
               c->peer, nghttp2_strerror(rv));
      uvg__conn_set_close_reason(c, "internal error (out of memory)");
      close_now(c);
      return;
    }
    if (c->out.n == 0) {
      if (c->nstreams == 0 && !c->closing) idle_enter(c);
      /* Done when nghttp2 is (GOAWAY exchanged, no streams left), unless a
       * drain still waits for its PING before the final GOAWAY. */
      if (!nghttp2_session_want_read(c->h2) &&
          !nghttp2_session_want_write(c->h2) && !uvg__srv_draining(c))
        linger(c);
      return;
    }
    uvg__iovs_finish(&c->out);
    size_t bytes = out_bytes(c);
    if (c->stat_writes) (*c->stat_writes)++;
    if (c->stat_bytes) *c->stat_bytes += bytes;
    UVG__TRACE(UVG__TRACE_WRITER, "%s: write %zu bytes in %u iovecs", c->peer,
               bytes, c->out.n);
    int err = write_out(c);
    if (err < 0) {
      uvg__iovs_reset(&c->out);
      complete_write(c, err);
      close_now(c);
      return;
    }
    if (err == 0) {
      c->writing = 1;
      return;
    }
    taken += bytes;
    if (!end_write(c, 0)) return;
  }
}

void uvg__conn_submit_goaway(uvg__conn_t *c, uint32_t h2_error,
                             const char *debug) {
  /* RFC 9113 6.8: a later GOAWAY MUST NOT increase the last-stream-id. */
  int32_t last = uvg__srv_goaway_last_id(
      c, nghttp2_session_get_last_proc_stream_id(c->h2));
  /* Not nghttp2_session_terminate_session(): it cannot carry debug data. */
  nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE, last, h2_error,
                        (const uint8_t *)debug, debug ? strlen(debug) : 0);
  uvg__conn_schedule_flush(c);
}

void uvg__conn_goaway(uvg__conn_t *c, uint32_t h2_error, const char *debug) {
  if (c->closing || c->h2 == NULL || c->close_on_goaway) return;
  uvg__conn_submit_goaway(c, h2_error, debug);
  c->close_on_goaway = 1;
  /* The GOAWAY waits behind the write in flight, and a peer that stops
   * reading never lets that write complete: the close has a deadline. */
  uvg__timer_start(&c->close_timer, on_linger_over, UVG__CONN_CLOSE_MS);
}

void uvg__conn_close_when_idle(uvg__conn_t *c, const char *debug) {
  if (c->closing || c->close_on_goaway) return;
  uvg__conn_set_close_reason(c, debug);
  if (c->nstreams == 0)
    uvg__conn_goaway(c, NGHTTP2_NO_ERROR, debug);
  else
    c->close_when_idle = 1;
}

/* Ends every stream and stops everything but the socket. */
static void begin_close(uvg__conn_t *c) {
  c->closing = 1;
  uvg__list_remove(&c->idle_link);
  uvg__conn_manage_stop(c);
  uvg__workq_close(&c->q);
  while (!uvg__list_empty(&c->streams))
    detach_stream(uvg__container_of(c->streams.next, uvg__tstream_t, conn_link),
                  UVG__H2_CONN_CLOSED);
}

void uvg__conn_set_close_reason(uvg__conn_t *c, const char *reason) {
  if (c->close_reason == NULL) c->close_reason = reason;
}

static void close_now(uvg__conn_t *c) {
  const char *why = c->io.ops->error ? c->io.ops->error(&c->io) : NULL;
  uvg__conn_set_close_reason(c, why ? why : "connection closed");
  if (!c->closing) begin_close(c);
  uvg__timer_stop(&c->close_timer);
  c->io.ops->close(&c->io);
}

static void on_linger_over(uvg__timer_t *t) {
  close_now(uvg__container_of(t, uvg__conn_t, close_timer));
}

/* Closes after a GOAWAY without losing it: closing a socket with unread
 * input makes the kernel send RST, which can destroy the GOAWAY before the
 * peer reads it. So: half-close, read and drop until the peer's EOF, and
 * close then or after LINGER_MS. */
#define LINGER_MS 1000
static void linger(uvg__conn_t *c) {
  if (c->closing) return;
  uvg__conn_set_close_reason(c, c->goaway_received ? "GOAWAY received"
                                                   : "GOAWAY sent");
  /* After uvg__conn_goaway() its close deadline stands. */
  uint64_t ms = LINGER_MS;
  if (c->close_on_goaway && uvg__timer_armed(&c->close_timer)) {
    uint64_t now = uv_now(c->sched->loop);
    ms = c->close_timer.due > now ? c->close_timer.due - now : 0;
  }
  begin_close(c);
  if (c->io.ops->shutdown == NULL || c->io.ops->shutdown(&c->io) != 0) {
    close_now(c);
    return;
  }
  c->lingering = 1;
  uvg__timer_start(&c->close_timer, on_linger_over, ms);
}

/* nghttp2 gave up on the session (a flood, a fatal protocol error): its
 * queues cannot be trusted, so a GOAWAY is written by hand (RFC 9113 6.8)
 * before the connection lingers closed. */
static void abort_with_goaway(uvg__conn_t *c, uint32_t h2_error) {
  if (c->writing || c->closing) {
    close_now(c);
    return;
  }
  uint8_t *f = c->abort_frame;
  uint32_t last = (uint32_t)nghttp2_session_get_last_proc_stream_id(c->h2);
  static const uint8_t head[9] = {0, 0, 8, NGHTTP2_GOAWAY, 0, 0, 0, 0, 0};
  memcpy(f, head, 9);
  for (int i = 0; i < 4; i++) {
    f[9 + i] = (uint8_t)(last >> (24 - 8 * i));
    f[13 + i] = (uint8_t)(h2_error >> (24 - 8 * i));
  }
  uv_buf_t b = uv_buf_init((char *)f, sizeof(c->abort_frame));
  if (c->io.ops->write(&c->io, &b, 1) != 0) {
    close_now(c);
    return;
  }
  c->writing = 1;
  linger(c); /* the half-close waits for the GOAWAY to be written */
}

void uvg__conn_close(uvg__conn_t *c) { close_now(c); }

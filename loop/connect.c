#include "connect.h"

#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

/* Only for a stream whose open failed after its handle was made: the
 * callback waits until that handle is closed, so the caller never sees
 * anything open after a failure. */
static void failed_stream_closed(uvg__stream_t *s) {
  uvg__connect_t *req = s->h.handle.data;
  s->cbs = req->stream_cbs;
  req->cb(req, req->status);
}
static const uvg__stream_cbs_t failed_stream_cbs = {NULL, NULL,
                                                    failed_stream_closed};

static void deliver(uvg__connect_t *req) {
  uvg__stream_t *s = req->stream;
  int status = req->status;
  uvg__workq_close(&req->q);
  req->done = 1;
  if (status != 0) {
    if (req->fd >= 0) close(req->fd);
    req->fd = -1;
    req->cb(req, status);
    return;
  }
  req->stream_cbs = s->cbs;
  status = uvg__stream_open_fd(req->sched->loop, s, req->fd, req->is_unix,
                               s->cbs, s->read_buf, s->read_buf_len);
  req->fd = -1; /* the stream has it, or it is closed */
  if (status != 0 && s->ops != NULL) {
    req->status = status;
    s->cbs = &failed_stream_cbs;
    s->h.handle.data = req;
    s->ops->close(s);
    return;
  }
  req->cb(req, status);
}

static void on_deferred(void *arg, int status) {
  (void)status; /* nothing but deliver() closes the queue */
  deliver(arg);
}

static void on_poll_closed(uv_handle_t *h) {
  uvg__connect_t *req = uvg__container_of((uv_poll_t *)h, uvg__connect_t, poll);
  req->polling = 0;
  deliver(req);
}

/* Settles the outcome. The callback comes once the poll handle is closed,
 * so that `req` is free for the caller to release in it; with no handle
 * to close it comes from the queue, so never from inside the caller's own
 * call. */
static void finish(uvg__connect_t *req, int status) {
  if (req->finishing) return;
  req->finishing = 1;
  req->status = status;
  uvg__timer_stop(&req->timer);
  if (req->polling) {
    uv_close((uv_handle_t *)&req->poll, on_poll_closed);
    return;
  }
  /* Cannot fail: the queue is ours and open, and the caller's reference
   * keeps the scheduler open. */
  int rc = uvg__workq_post_node(&req->q, &req->w, on_deferred, req);
  assert(rc == 0);
  (void)rc;
}

/* ---- a tunnel through an HTTP proxy ---- */

static void on_request_writable(uv_poll_t *h, int status, int events);
static void on_answer_readable(uv_poll_t *h, int status, int events);

/* Sends what is left of the CONNECT request, then waits for the answer. */
static void send_request(uvg__connect_t *req) {
  while (req->tunnel_sent < req->tunnel_len) {
    ssize_t n = send(req->fd, req->tunnel_req + req->tunnel_sent,
                     req->tunnel_len - req->tunnel_sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      uv_poll_start(&req->poll, UV_WRITABLE, on_request_writable);
      return;
    }
    if (n < 0) {
      finish(req, -errno);
      return;
    }
    req->tunnel_sent += (size_t)n;
  }
  uv_poll_start(&req->poll, UV_READABLE, on_answer_readable);
}

static void on_request_writable(uv_poll_t *h, int status, int events) {
  (void)status; /* send() reports a broken socket itself */
  (void)events;
  send_request(uvg__container_of(h, uvg__connect_t, poll));
}

/* Copies `n` bytes of the proxy's text into req->detail after `prefix`,
 * with anything unprintable shown as '?': a log line must not carry the
 * proxy's control characters. */
static void set_detail(uvg__connect_t *req, const char *prefix,
                       const char *text, size_t n, const char *suffix) {
  size_t len = (size_t)snprintf(req->detail, sizeof(req->detail), "%s", prefix);
  size_t room = sizeof(req->detail) - strlen(suffix) - 1;
  for (size_t i = 0; i < n && len < room; i++) {
    unsigned char c = (unsigned char)text[i];
    req->detail[len++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
  }
  snprintf(req->detail + len, sizeof(req->detail) - len, "%s", suffix);
}

static ssize_t recv_intr(int fd, void *buf, size_t n, int flags) {
  for (;;) {
    ssize_t r = recv(fd, buf, n, flags);
    if (r >= 0 || errno != EINTR) return r;
  }
}

/* The header block is complete: a 2xx status opens the tunnel. */
static void judge_answer(uvg__connect_t *req) {
  const char *reason;
  size_t reason_len;
  int code = uvg__tunnel_head_status(&req->head, &reason, &reason_len);
  if (code >= 200 && code <= 299) {
    finish(req, 0);
    return;
  }
  if (code < 0) {
    set_detail(req, "answered CONNECT with something other than HTTP/1.x: \"",
               req->head.status,
               req->head.status_len > 40 ? 40 : req->head.status_len, "\"");
  } else {
    char prefix[24];
    snprintf(prefix, sizeof(prefix), "answered %d%s", code,
             reason_len ? " " : "");
    set_detail(req, prefix, reason, reason_len, "");
  }
  finish(req, UV_EPROTO);
}

/* Reads the proxy's answer without taking a byte of the tunnel: the
 * socket's data is peeked, and only the part the scanner calls header is
 * consumed. Whatever the proxy sent after its blank line (the server's
 * first bytes, relayed at once) stays queued for the stream to read. */
static void on_answer_readable(uv_poll_t *h, int status, int events) {
  uvg__connect_t *req = uvg__container_of(h, uvg__connect_t, poll);
  uint8_t buf[UVG__TUNNEL_HEAD_MAX];
  (void)events;
  size_t room = UVG__TUNNEL_HEAD_MAX - req->head.len;
  ssize_t n = recv_intr(req->fd, buf, room, MSG_PEEK);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    if (status < 0) finish(req, status);
    return;
  }
  if (n < 0) {
    finish(req, -errno);
    return;
  }
  if (n == 0) {
    snprintf(
        req->detail, sizeof(req->detail), "%s",
        req->head.len == 0
            ? "closed the connection without answering CONNECT"
            : "closed the connection in the middle of its answer to CONNECT");
    finish(req, UV_EPROTO);
    return;
  }
  int done;
  size_t head = uvg__tunnel_head_feed(&req->head, buf, (size_t)n, &done);
  /* The peeked bytes are there: this takes exactly `head` of them. */
  ssize_t got = recv_intr(req->fd, buf, head, 0);
  if (got != (ssize_t)head) {
    finish(req, got < 0 ? -errno : UV_EIO);
    return;
  }
  if (done) {
    judge_answer(req);
  } else if (req->head.len >= UVG__TUNNEL_HEAD_MAX) {
    snprintf(req->detail, sizeof(req->detail),
             "answered CONNECT with a header block over %d bytes",
             UVG__TUNNEL_HEAD_MAX);
    finish(req, UV_EPROTO);
  }
}

static void begin_tunnel(uvg__connect_t *req) {
  req->tunneling = 1;
  send_request(req);
}

/* ---- connecting ---- */

static void on_writable(uv_poll_t *h, int status, int events) {
  uvg__connect_t *req = uvg__container_of(h, uvg__connect_t, poll);
  int err = 0;
  socklen_t len = sizeof(err);
  (void)events;
  /* Writable, or an error or hang-up event, means connect() has finished;
   * SO_ERROR says how. libuv reports an error event (POLLERR) as status
   * UV_EBADF, which names no reason: SO_ERROR has the real one
   * (ECONNREFUSED, ...). */
  if (getsockopt(req->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err == 0 && status == 0 && req->tunnel_req != NULL) {
    begin_tunnel(req);
    return;
  }
  finish(req, err != 0 ? -err : status);
}

static void on_timeout(uvg__timer_t *t) {
  uvg__connect_t *req = uvg__container_of(t, uvg__connect_t, timer);
  if (req->tunneling)
    snprintf(req->detail, sizeof(req->detail), "%s",
             req->tunnel_sent < req->tunnel_len
                 ? "did not take the CONNECT request in time"
                 : "did not answer CONNECT in time");
  finish(req, UV_ETIMEDOUT);
}

static void start(uvg__connect_t *req, uvg__sched_t *sched,
                  const struct sockaddr *addr, socklen_t addr_len,
                  uint64_t timeout_ms, const char *tunnel, size_t tunnel_len,
                  uvg__stream_t *stream, uvg__connect_cb cb) {
  req->sched = sched;
  req->stream = stream;
  req->cb = cb;
  req->fd = -1;
  req->status = 0;
  req->tunnel_req = tunnel;
  req->tunnel_len = tunnel_len;
  req->tunnel_sent = 0;
  memset(&req->head, 0, sizeof(req->head));
  req->detail[0] = '\0';
  req->is_unix = addr->sa_family == AF_UNIX;
  req->polling = req->finishing = req->done = req->tunneling = 0;
  uvg__timer_init(sched, &req->timer);
  uvg__workq_init(sched, &req->q);
  uvg__work_init(&req->w);

  req->fd =
      socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (req->fd < 0) {
    finish(req, -errno);
    return;
  }
  int connected = connect(req->fd, addr, addr_len) == 0;
  if (connected && tunnel == NULL) {
    finish(req, 0); /* a unix socket with room in the listener's backlog */
    return;
  }
  /* EINTR: the connection goes on in the background, as with EINPROGRESS.
   * A unix listener with a full backlog gives EAGAIN: no connection is
   * pending then, so it is a failure like any other. */
  if (!connected && errno != EINPROGRESS && errno != EINTR) {
    finish(req, -errno);
    return;
  }
  int err = uv_poll_init_socket(sched->loop, &req->poll, req->fd);
  if (err != 0) {
    finish(req, err);
    return;
  }
  req->polling = 1;
  /* armed first: the tunnel may finish (fail) at once, and finish()
   * disarms it */
  if (timeout_ms > 0) uvg__timer_start(&req->timer, on_timeout, timeout_ms);
  if (connected)
    begin_tunnel(req);
  else
    uv_poll_start(&req->poll, UV_WRITABLE, on_writable);
}

static int tcp_addr_len(const struct sockaddr *addr, socklen_t *len) {
  if (addr->sa_family == AF_INET)
    *len = sizeof(struct sockaddr_in);
  else if (addr->sa_family == AF_INET6)
    *len = sizeof(struct sockaddr_in6);
  else
    return UV_EINVAL;
  return 0;
}

int uvg__connect_tcp(uvg__connect_t *req, uvg__sched_t *sched,
                     const struct sockaddr *addr, uint64_t timeout_ms,
                     uvg__stream_t *stream, uvg__connect_cb cb) {
  socklen_t len;
  if (req == NULL || sched == NULL || addr == NULL || stream == NULL ||
      cb == NULL || tcp_addr_len(addr, &len) != 0)
    return UV_EINVAL;
  start(req, sched, addr, len, timeout_ms, NULL, 0, stream, cb);
  return 0;
}

int uvg__connect_tunnel(uvg__connect_t *req, uvg__sched_t *sched,
                        const struct sockaddr *addr, const char *request,
                        size_t request_len, uint64_t timeout_ms,
                        uvg__stream_t *stream, uvg__connect_cb cb) {
  socklen_t len;
  if (req == NULL || sched == NULL || addr == NULL || request == NULL ||
      request_len == 0 || stream == NULL || cb == NULL ||
      tcp_addr_len(addr, &len) != 0)
    return UV_EINVAL;
  start(req, sched, addr, len, timeout_ms, request, request_len, stream, cb);
  return 0;
}

int uvg__connect_unix(uvg__connect_t *req, uvg__sched_t *sched,
                      const char *path, size_t path_len, uint64_t timeout_ms,
                      uvg__stream_t *stream, uvg__connect_cb cb) {
  struct sockaddr_un un;
  socklen_t len;
  if (req == NULL || sched == NULL || path == NULL || path_len == 0 ||
      stream == NULL || cb == NULL)
    return UV_EINVAL;
  memset(&un, 0, sizeof(un));
  un.sun_family = AF_UNIX;
  if (path[0] == '\0') {
    /* An abstract name is exactly its bytes: the length says where it
     * ends, and a trailing NUL would be part of another name. */
    if (path_len > sizeof(un.sun_path)) return UV_ENAMETOOLONG;
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + path_len);
  } else {
    if (memchr(path, '\0', path_len) != NULL) return UV_EINVAL;
    if (path_len >= sizeof(un.sun_path)) return UV_ENAMETOOLONG;
    len = sizeof(un);
  }
  memcpy(un.sun_path, path, path_len);
  start(req, sched, (const struct sockaddr *)&un, len, timeout_ms, NULL, 0,
        stream, cb);
  return 0;
}

void uvg__connect_cancel(uvg__connect_t *req) {
  if (req->done) return;
  if (!req->finishing) {
    finish(req, UV_ECANCELED);
    return;
  }
  /* Decided but not delivered yet (the poll handle is closing, or the
   * outcome waits in the queue): the caller no longer wants it. */
  req->status = UV_ECANCELED;
}

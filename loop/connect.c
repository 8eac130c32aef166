#include "connect.h"

#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
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
  finish(req, err != 0 ? -err : status);
}

static void on_timeout(uvg__timer_t *t) {
  finish(uvg__container_of(t, uvg__connect_t, timer), UV_ETIMEDOUT);
}

static void start(uvg__connect_t *req, uvg__sched_t *sched,
                  const struct sockaddr *addr, socklen_t addr_len,
                  uint64_t timeout_ms, uvg__stream_t *stream,
                  uvg__connect_cb cb) {
  req->sched = sched;
  req->stream = stream;
  req->cb = cb;
  req->fd = -1;
  req->status = 0;
  req->is_unix = addr->sa_family == AF_UNIX;
  req->polling = req->finishing = req->done = 0;
  uvg__timer_init(sched, &req->timer);
  uvg__workq_init(sched, &req->q);
  uvg__work_init(&req->w);

  req->fd =
      socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (req->fd < 0) {
    finish(req, -errno);
    return;
  }
  if (connect(req->fd, addr, addr_len) == 0) {
    finish(req, 0); /* a unix socket with room in the listener's backlog */
    return;
  }
  /* EINTR: the connection goes on in the background, as with EINPROGRESS.
   * A unix listener with a full backlog gives EAGAIN: no connection is
   * pending then, so it is a failure like any other. */
  if (errno != EINPROGRESS && errno != EINTR) {
    finish(req, -errno);
    return;
  }
  int err = uv_poll_init_socket(sched->loop, &req->poll, req->fd);
  if (err != 0) {
    finish(req, err);
    return;
  }
  req->polling = 1;
  uv_poll_start(&req->poll, UV_WRITABLE, on_writable);
  if (timeout_ms > 0) uvg__timer_start(&req->timer, on_timeout, timeout_ms);
}

int uvg__connect_tcp(uvg__connect_t *req, uvg__sched_t *sched,
                     const struct sockaddr *addr, uint64_t timeout_ms,
                     uvg__stream_t *stream, uvg__connect_cb cb) {
  socklen_t len;
  if (req == NULL || sched == NULL || addr == NULL || stream == NULL ||
      cb == NULL)
    return UV_EINVAL;
  if (addr->sa_family == AF_INET)
    len = sizeof(struct sockaddr_in);
  else if (addr->sa_family == AF_INET6)
    len = sizeof(struct sockaddr_in6);
  else
    return UV_EINVAL;
  start(req, sched, addr, len, timeout_ms, stream, cb);
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
  start(req, sched, (const struct sockaddr *)&un, len, timeout_ms, stream, cb);
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

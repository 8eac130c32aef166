/* TCP and unix-socket byte streams over uv_stream_t. */
#include "stream.h"

#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  uvg__stream_t *s = uvg__container_of(h, uvg__stream_t, h.handle);
  (void)hint;
  *buf = uv_buf_init((char *)s->read_buf, (unsigned)s->read_buf_len);
}

static void on_uv_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  uvg__stream_t *s = uvg__container_of(st, uvg__stream_t, h.stream);
  if (nread == 0) return; /* EAGAIN: nothing to do */
  if (nread < 0) uv_read_stop(st);
  s->cbs->on_read(s, nread, (const uint8_t *)buf->base);
}

static int sock_read_start(uvg__stream_t *s) {
  return uv_read_start(&s->h.stream, on_alloc, on_uv_read);
}

static void on_uv_write(uv_write_t *req, int status) {
  uvg__stream_t *s = uvg__container_of(req, uvg__stream_t, wreq);
  s->cbs->on_write(s, status);
}

static int sock_write(uvg__stream_t *s, const uv_buf_t *bufs, unsigned n) {
  return uv_write(&s->wreq, &s->h.stream, bufs, n, on_uv_write);
}

static int sock_try_write(uvg__stream_t *s, const uv_buf_t *bufs, unsigned n) {
  int rc = uv_try_write(&s->h.stream, bufs, n);
  return rc == UV_EAGAIN ? 0 : rc;
}

static void on_uv_shutdown(uv_shutdown_t *req, int status) {
  (void)req;
  (void)status; /* the reader sees the end either way */
}

static int sock_shutdown(uvg__stream_t *s) {
  return uv_shutdown(&s->sreq, &s->h.stream, on_uv_shutdown);
}

static void on_uv_close(uv_handle_t *h) {
  uvg__stream_t *s = uvg__container_of(h, uvg__stream_t, h.handle);
  s->cbs->on_close(s);
}

static void sock_close(uvg__stream_t *s) {
  if (!uv_is_closing(&s->h.handle)) uv_close(&s->h.handle, on_uv_close);
}

static void tcp_peer_name(uvg__stream_t *s, char *out, size_t len) {
  struct sockaddr_storage ss;
  int n = sizeof(ss);
  char ip[64] = "?";
  int port = 0;
  if (uv_tcp_getpeername(&s->h.tcp, (struct sockaddr *)&ss, &n) == 0) {
    if (ss.ss_family == AF_INET6) {
      struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
      uv_ip6_name(a, ip, sizeof(ip));
      port = ntohs(a->sin6_port);
      snprintf(out, len, "[%s]:%d", ip, port);
      return;
    }
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    uv_ip4_name(a, ip, sizeof(ip));
    port = ntohs(a->sin_port);
  }
  snprintf(out, len, "%s:%d", ip, port);
}

/* A unix client's socket usually has no address, and the listening path is
 * our own name, not the peer's: the peer is named by the credentials the
 * kernel recorded when it connected. */
static void pipe_peer_name(uvg__stream_t *s, char *out, size_t len) {
  uv_os_fd_t fd;
  struct ucred cred;
  socklen_t n = sizeof(cred);
  if (uv_fileno(&s->h.handle, &fd) == 0 &&
      getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &n) == 0 &&
      n == sizeof(cred))
    snprintf(out, len, "unix:pid=%d,uid=%u", (int)cred.pid, (unsigned)cred.uid);
  else
    snprintf(out, len, "unix peer");
}

static void tcp_set_user_timeout(uvg__stream_t *s, uint64_t ms) {
  uv_os_fd_t fd;
  unsigned int v = ms > UINT_MAX ? UINT_MAX : (unsigned int)ms;
  if (uv_fileno(&s->h.handle, &fd) == 0)
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &v, sizeof(v));
}

static const uvg__stream_ops_t tcp_ops = {
    .read_start = sock_read_start,
    .write = sock_write,
    .try_write = sock_try_write,
    .close = sock_close,
    .shutdown = sock_shutdown,
    .peer_name = tcp_peer_name,
    .set_user_timeout = tcp_set_user_timeout,
};
static const uvg__stream_ops_t pipe_ops = {
    .read_start = sock_read_start,
    .write = sock_write,
    .try_write = sock_try_write,
    .close = sock_close,
    .shutdown = sock_shutdown,
    .peer_name = pipe_peer_name,
};

int uvg__stream_open_fd(uv_loop_t *loop, uvg__stream_t *s, int fd, int is_unix,
                        const uvg__stream_cbs_t *cbs, uint8_t *read_buf,
                        size_t read_buf_len) {
  int err;
  s->cbs = cbs;
  s->layer = NULL;
  s->read_buf = read_buf;
  s->read_buf_len = read_buf_len;
  err = is_unix ? uv_pipe_init(loop, &s->h.pipe, 0) : uv_tcp_init(loop, &s->h.tcp);
  if (err != 0) {
    close(fd);
    s->ops = NULL;
    return err;
  }
  s->ops = is_unix ? &pipe_ops : &tcp_ops;
  err = is_unix ? uv_pipe_open(&s->h.pipe, fd) : uv_tcp_open(&s->h.tcp, fd);
  if (err != 0) {
    close(fd); /* the handle did not take it */
    return err;
  }
  if (!is_unix) uv_tcp_nodelay(&s->h.tcp, 1);
  return 0;
}

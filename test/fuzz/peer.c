#include "peer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "uvgrpc.h"

static void on_pipe_closed(uv_handle_t *h) {
  fz_peer_t *p = h->data;
  p->closed = 1;
  if (p->on_closed != NULL) p->on_closed(p);
}

void fz_peer_close(fz_peer_t *p) {
  if (p->open && !uv_is_closing((uv_handle_t *)&p->pipe))
    uv_close((uv_handle_t *)&p->pipe, on_pipe_closed);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  static char buf[65536];
  (void)h, (void)hint;
  *b = uv_buf_init(buf, sizeof(buf));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  (void)b;
  if (n < 0) fz_peer_close(s->data);
}

static void on_shutdown(uv_shutdown_t *r, int status) { (void)r, (void)status; }

static void on_write(uv_write_t *w, int status) {
  fz_peer_t *p = w->data;
  if (status == 0 && !uv_is_closing((uv_handle_t *)&p->pipe))
    uv_shutdown(&p->sreq, (uv_stream_t *)&p->pipe, on_shutdown);
}

static void peer_init(fz_peer_t *p, uv_loop_t *loop, const uint8_t *in,
                      size_t n, void (*on_closed)(fz_peer_t *p)) {
  p->on_closed = on_closed;
  p->in = uv_buf_init((char *)in, (unsigned)n);
  if (uv_pipe_init(loop, &p->pipe, 0) != 0) abort();
  p->open = 1;
  p->pipe.data = p;
  p->wreq.data = p;
}

static void peer_start(fz_peer_t *p) {
  if (uv_write(&p->wreq, (uv_stream_t *)&p->pipe, &p->in, 1, on_write) != 0 ||
      uv_read_start((uv_stream_t *)&p->pipe, alloc_cb, on_read) != 0)
    abort();
}

void fz_peer_open(fz_peer_t *p, uv_loop_t *loop, int fd, const uint8_t *in,
                  size_t n, void (*on_closed)(fz_peer_t *p)) {
  peer_init(p, loop, in, n, on_closed);
  if (uv_pipe_open(&p->pipe, fd) != 0) abort();
  peer_start(p);
}

void fz_peer_accept(fz_peer_t *p, uv_stream_t *listener, const uint8_t *in,
                    size_t n, void (*on_closed)(fz_peer_t *p)) {
  peer_init(p, listener->loop, in, n, on_closed);
  if (uv_accept(listener, (uv_stream_t *)&p->pipe) != 0) abort();
  peer_start(p);
}

static char sock_name[64];

const char *fz_socket_name(void) {
  if (sock_name[0] == 0)
    snprintf(sock_name, sizeof(sock_name), "uvgrpc-fuzz-%d", (int)getpid());
  return sock_name;
}

int fz_listen(void) {
  const char *name = fz_socket_name();
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  size_t nlen = strlen(name);
  memcpy(sa.sun_path + 1, name, nlen);
  socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + nlen);
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, len) != 0 || listen(fd, 8) != 0)
    abort();
  return fd;
}

static void quiet(uvg_log_level_t level, const char *line, void *arg) {
  (void)level, (void)line, (void)arg;
}

void fz_quiet(void) {
  /* with UVG_TRACE set, someone is looking at one input: keep the log */
  if (getenv("UVG_TRACE") == NULL) uvg_set_log_cb(quiet, NULL);
}

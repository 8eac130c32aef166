/* Small send buffers for the test's own client sockets. The kernel sizes a
 * new loopback connection's send buffer for its whole initial congestion
 * window (about 1.3 MB), so a write of a few hundred KiB is taken at once
 * and never stays in flight. A test that needs a client's write to stay
 * in flight while its peer acts gives the client's sockets a small one. */
#ifndef UVG_TEST_SOCKBUF_H
#define UVG_TEST_SOCKBUF_H

#include <uv.h>

typedef struct {
  int port; /* the peer's */
  int size;
} sockbuf_match_t;

static void sockbuf_shrink_one(uv_handle_t *h, void *arg) {
  const sockbuf_match_t *m = arg;
  struct sockaddr_storage ss;
  int len = sizeof(ss), size = m->size;
  if (h->type == UV_TCP && !uv_is_closing(h) &&
      uv_tcp_getpeername((uv_tcp_t *)h, (struct sockaddr *)&ss, &len) == 0 &&
      ss.ss_family == AF_INET &&
      ntohs(((struct sockaddr_in *)&ss)->sin_port) == m->port)
    uv_send_buffer_size(h, &size);
}

/* Sets SO_SNDBUF to `size` on every TCP handle of `loop` connected to
 * 127.0.0.1:`port`, the connections made so far. */
static inline void sockbuf_shrink(uv_loop_t *loop, int port, int size) {
  sockbuf_match_t m = {port, size};
  uv_walk(loop, sockbuf_shrink_one, &m);
}

#endif

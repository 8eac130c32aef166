/*
 * Connecting a byte stream: TCP to an IPv4 or IPv6 address, or a unix
 * socket to a path or a Linux abstract name, without blocking the loop and
 * with a timeout. The socket is connected by hand (a non-blocking
 * connect() and a uv_poll_t for writability) rather than with
 * uv_tcp_connect()/uv_pipe_connect(): libuv 1.44 cannot connect to an
 * abstract name (uv_pipe_connect2 came in 1.46), and one path for both
 * families ends the same way, in uvg__stream_open_fd(), as an accepted
 * connection does: the client's stream has the same ops, TCP_NODELAY on.
 *
 * A TCP connect may go on through an HTTP proxy (uvg__connect_tunnel):
 * the CONNECT request and the proxy's answer are exchanged on the raw
 * socket before the stream exists, so the stream starts at the tunnel's
 * first byte.
 *
 * A connect that started ends in exactly one callback, always from the
 * loop, never inside the call that started it or inside
 * uvg__connect_cancel(). A connect in progress keeps the loop alive (its
 * poll handle is active), for at most the timeout.
 */
#ifndef UVG_LOOP_CONNECT_H
#define UVG_LOOP_CONNECT_H

#include <sys/socket.h>

#include "stream.h"
#include "timer.h"
#include "tunnel.h"

typedef struct uvg__connect_s uvg__connect_t;

/* status 0: `stream` is open (the caller's callbacks, its read buffer,
 * not reading yet) and belongs to the caller, who closes it with
 * stream->ops->close(). Otherwise a libuv error and nothing is open:
 * UV_ECONNREFUSED, UV_ENOENT (no socket file), UV_EAGAIN (a unix
 * listener's backlog is full: the peer is overloaded, and the caller backs
 * off as after any failed attempt), UV_ETIMEDOUT (the timeout passed),
 * UV_ECANCELED (uvg__connect_cancel(): a libuv code like every other
 * outcome here, so one uv_strerror() names them all), UV_EMFILE, ...; and
 * for a tunnel UV_EPROTO (the proxy refused or did not speak HTTP/1.x;
 * req->detail says how). In both cases `req` may be reused or freed from
 * the callback on. */
typedef void (*uvg__connect_cb)(uvg__connect_t *req, int status);

struct uvg__connect_s {
  uvg__sched_t *sched;
  uvg__stream_t *stream; /* the caller's, opened on success */
  uvg__connect_cb cb;
  void *data;         /* the caller's */
  uv_poll_t poll;     /* writability of the connecting socket */
  uvg__timer_t timer; /* the connect timeout */
  /* Outcomes known before any poll (connect() done at once, socket()
   * failed) are delivered from a queue, in a later loop phase. */
  uvg__workq_t q;
  uvg__work_t w;
  /* the stream's callbacks while a stream whose open failed is closing */
  const uvg__stream_cbs_t *stream_cbs;
  int fd; /* -1 once closed or handed to the stream */
  int status;
  /* a tunnel: the caller's CONNECT request, how much of it is sent, and
   * the answer so far */
  const char *tunnel_req;
  size_t tunnel_len, tunnel_sent;
  uvg__tunnel_head_t head;
  /* After a failed tunnel, what the proxy did, for a message that starts
   * with the proxy's name: "answered 407 Proxy Authentication Required",
   * "did not answer CONNECT in time"; empty otherwise. */
  char detail[112];
  uint8_t is_unix;
  uint8_t tunneling; /* TCP is up; the CONNECT exchange is under way */
  uint8_t polling;   /* poll is an open handle */
  uint8_t finishing; /* the outcome is decided, its delivery under way */
  uint8_t done;      /* the callback ran or is running */
};

/* Connects `stream` to `addr` (AF_INET or AF_INET6) over TCP. `stream`
 * must have its cbs, read_buf and read_buf_len set: they are what
 * uvg__stream_open_fd() gets (uvg__conn_init() sets cbs). timeout_ms 0
 * means none (the kernel's SYN retries, about two minutes, bound it).
 * Returns 0: cb(req, status) follows exactly once, also for failures the
 * system reports at once (socket() out of descriptors, an unreachable
 * network). Returns UV_EINVAL (a NULL argument, a family other than
 * AF_INET and AF_INET6): no callback follows and nothing needs closing.
 * `addr` is not used after the call. */
int uvg__connect_tcp(uvg__connect_t *req, uvg__sched_t *sched,
                     const struct sockaddr *addr, uint64_t timeout_ms,
                     uvg__stream_t *stream, uvg__connect_cb cb);

/* uvg__connect_tcp() to an HTTP proxy at `addr`, then a tunnel through it
 * (RFC 9110 9.3.6): once TCP is up, the `request_len` bytes of `request`
 * (a whole CONNECT request, header block and blank line) are sent, and
 * the proxy's answer is read up to the blank line that ends its header
 * block and no further, so that the bytes after it are the stream's first
 * read. The connect succeeds when the status is 2xx; otherwise the
 * callback has UV_EPROTO and req->detail says why: another status, an
 * answer that is not HTTP/1.x or whose header block passes
 * UVG__TUNNEL_HEAD_MAX bytes, a proxy that closed before answering.
 * timeout_ms bounds the connect and the exchange together (UV_ETIMEDOUT;
 * req->detail says which part was slow once the exchange has begun).
 * `request` must stay valid until the callback. Returns 0 or UV_EINVAL as
 * uvg__connect_tcp() does (also for an empty request). */
int uvg__connect_tunnel(uvg__connect_t *req, uvg__sched_t *sched,
                        const struct sockaddr *addr, const char *request,
                        size_t request_len, uint64_t timeout_ms,
                        uvg__stream_t *stream, uvg__connect_cb cb);

/* The same over a unix socket to the `path_len` bytes at `path`: a file
 * path (no NUL among them), or with path[0] == '\0' a Linux abstract
 * name, whose every byte counts. A unix connect never waits (it
 * succeeds, or fails with UV_EAGAIN when the backlog is full), so the
 * timeout only matters for TCP. Returns 0 (the callback follows), or
 * UV_EINVAL (empty, or a NUL inside a file path) or UV_ENAMETOOLONG
 * without a callback. `path` is not used after the call. */
int uvg__connect_unix(uvg__connect_t *req, uvg__sched_t *sched,
                      const char *path, size_t path_len, uint64_t timeout_ms,
                      uvg__stream_t *stream, uvg__connect_cb cb);

/* Gives up a connect that uvg__connect_tcp/unix() started and that has
 * not called back yet: the callback comes with UV_ECANCELED, even if the
 * socket had connected meanwhile (it is closed; `stream` is left
 * untouched). A no-op once the callback has run or while it runs, so it is
 * safe to call from it and more than once. */
void uvg__connect_cancel(uvg__connect_t *req);

#endif

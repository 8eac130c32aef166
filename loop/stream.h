/*
 * A byte stream: what the HTTP/2 transport reads from and writes to. TCP and
 * unix sockets implement it here; TLS (lib/tls/) implements the same
 * operations on top of one of them, so the transport never knows which it
 * has. A layer wraps an open socket stream in place: it keeps the socket's
 * ops and the owner's callbacks, puts its own in their stead and its state
 * in `layer`, so the owner's pointer to the stream stays the same.
 *
 * Reads go into a buffer the owner lends (one per scheduler is enough: the
 * transport consumes every read synchronously), so an idle connection holds
 * no read buffer. At most one write is in flight; the transport's writer
 * guarantees it.
 */
#ifndef UVG_LOOP_STREAM_H
#define UVG_LOOP_STREAM_H

#include <uv.h>

#include "common.h"

typedef struct uvg__stream_s uvg__stream_t;

typedef struct {
  int (*read_start)(uvg__stream_t *s);
  int (*write)(uvg__stream_t *s, const uv_buf_t *bufs, unsigned n);
  /* Optional. Writes what the socket takes at once, with no write in
   * flight: returns the bytes written (0 when it takes none) or a libuv
   * error; no on_write follows. What it took need not go to write(), which
   * costs a request, a callback on the next loop turn and, in libuv, a
   * poll re-registration. */
  int (*try_write)(uvg__stream_t *s, const uv_buf_t *bufs, unsigned n);
  void (*close)(uvg__stream_t *s);
  /* Half-closes: no more writes (FIN) once pending ones are out. Returns 0
   * or a libuv error. */
  int (*shutdown)(uvg__stream_t *s);
  /* The peer as text for log lines: its address ("127.0.0.1:5000",
   * "[::1]:5000"), or for a unix socket the connecting process
   * ("unix:pid=1234,uid=1000"; "unix peer" if the kernel cannot say);
   * writes at most len bytes with the NUL. */
  void (*peer_name)(uvg__stream_t *s, char *out, size_t len);
  /* TCP_USER_TIMEOUT: how long sent data may stay unacknowledged before
   * the kernel drops the connection. NULL where it does not apply. */
  void (*set_user_timeout)(uvg__stream_t *s, uint64_t ms);
  /* Optional (NULL for sockets). Why the stream failed once a read reported
   * an error: text the stream owns, valid until on_close; NULL when the
   * error code says it all. */
  const char *(*error)(uvg__stream_t *s);
  /* Optional. 1 while a layer's own handshake (TLS) is unfinished, so that
   * the owner's timeout can say what stalled. */
  int (*handshaking)(uvg__stream_t *s);
} uvg__stream_ops_t;

typedef struct {
  /* nread > 0: bytes in buf. nread < 0: EOF (UV_EOF) or a read error; no
   * more reads follow. The bytes are valid during the call only. */
  void (*on_read)(uvg__stream_t *s, ssize_t nread, const uint8_t *buf);
  /* The write started by ops->write finished (0 or a libuv error). */
  void (*on_write)(uvg__stream_t *s, int status);
  /* The stream is closed; its memory may be released. */
  void (*on_close)(uvg__stream_t *s);
} uvg__stream_cbs_t;

struct uvg__stream_s {
  const uvg__stream_ops_t *ops;
  const uvg__stream_cbs_t *cbs;
  uint8_t *read_buf; /* lent by the owner */
  size_t read_buf_len;
  void *layer; /* the state of a layer wrapped over the socket, or NULL */
  uv_write_t wreq;
  uv_shutdown_t sreq;
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } h;
};

/* Makes `s` a stream over the connected socket `fd` (TCP, or unix with
 * is_unix), which it owns from now on. Returns 0 or a libuv error. Whatever
 * it returns, `s` is an open handle afterwards unless the handle's init
 * failed (then s->ops is NULL and fd is closed): close it with
 * s->ops->close() and release it in cbs->on_close. */
int uvg__stream_open_fd(uv_loop_t *loop, uvg__stream_t *s, int fd, int is_unix,
                        const uvg__stream_cbs_t *cbs, uint8_t *read_buf,
                        size_t read_buf_len);

#endif

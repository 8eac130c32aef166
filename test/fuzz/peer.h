/*
 * The far end of a connection under test, for the whole-path targets:
 * writes the fuzz input on its socket in one write, half-closes, then reads
 * and drops whatever the library sends until the library closes its end.
 */
#ifndef UVG_FUZZ_PEER_H
#define UVG_FUZZ_PEER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct fz_peer_s fz_peer_t;
struct fz_peer_s {
  uv_pipe_t pipe;
  uv_write_t wreq;
  uv_shutdown_t sreq;
  uv_buf_t in;
  void (*on_closed)(fz_peer_t *p); /* may be NULL */
  void *data;
  int open, closed;
};

/* Takes over the connected unix socket `fd` and starts writing the `n`
 * bytes at `in` (kept until on_closed). Aborts on a libuv failure: the
 * target's own setup must not fail. */
void fz_peer_open(fz_peer_t *p, uv_loop_t *loop, int fd, const uint8_t *in,
                  size_t n, void (*on_closed)(fz_peer_t *p));
/* fz_peer_open() for a connection waiting on `listener`. */
void fz_peer_accept(fz_peer_t *p, uv_stream_t *listener, const uint8_t *in,
                    size_t n, void (*on_closed)(fz_peer_t *p));
/* Closes now (no-op when not open or already closing). */
void fz_peer_close(fz_peer_t *p);

/* The listening end of an abstract unix socket named after the process,
 * for channels to connect to ("unix-abstract:" + fz_socket_name()). */
int fz_listen(void);
const char *fz_socket_name(void);

/* Silences the library's log: a line per malformed input is noise. */
void fz_quiet(void);

#endif

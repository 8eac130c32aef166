/*
 * A listening socket that accepts by itself (a uv_poll_t on the socket and
 * accept4), so that it can back off: when the process is out of file
 * descriptors, accepting pauses 5 ms, doubling to 1 s, and the waiting
 * connections stay in the kernel's backlog. uv_listen() cannot pause; on
 * EMFILE libuv accepts and closes pending connections instead.
 */
#ifndef UVG_LOOP_LISTENER_H
#define UVG_LOOP_LISTENER_H

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "timer.h"

typedef struct uvg__listener_s uvg__listener_t;

struct uvg__listener_s {
  uv_poll_t poll;
  int fd;
  int is_unix;
  uint64_t delay; /* current back-off, 0 while accepting */
  uvg__timer_t backoff;
  /* A connection was accepted: `fd` (non-blocking, close-on-exec) now
   * belongs to the callee. */
  void (*on_accept)(uvg__listener_t *l, int fd);
  void (*on_close)(uvg__listener_t *l);
  void *data;
  /* the unix socket file we bound, removed at close if it is still ours */
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  dev_t dev;
  ino_t ino;
};

/* With UVG__LISTEN_REUSEPORT a TCP listener sets SO_REUSEPORT: several
 * sockets, in one process or many, bind the same address and the kernel
 * spreads incoming connections across them by a hash of the peer's
 * address and port. Ignored for unix sockets. */
#define UVG__LISTEN_REUSEPORT 1u

/* Binds and listens on `addr` (TCP, SO_REUSEADDR) or, with addr NULL, on
 * the unix socket `path`; `flags` as above. A socket file at `path` that nothing listens on
 * (connecting is refused) is removed first; one something listens on, or a
 * file that is not a socket, gives UV_EADDRINUSE. *port receives the bound
 * TCP port (0 for unix). Returns 0 or a libuv error (UV_EADDRINUSE,
 * UV_EACCES, ...); on error nothing needs closing. */
int uvg__listener_open(uvg__sched_t *sched, uvg__listener_t *l,
                       const struct sockaddr *addr, const char *path, int *port,
                       unsigned flags,
                       void (*on_accept)(uvg__listener_t *l, int fd));

/* Stops accepting and closes the socket; on_close(l) follows, after which
 * `l` may be freed. A unix socket file is removed, unless the path has
 * meanwhile become another file. */
void uvg__listener_close(uvg__listener_t *l, void (*on_close)(uvg__listener_t *l));

#endif

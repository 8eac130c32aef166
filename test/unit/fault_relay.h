/*
 * A TCP relay for fault injection, on the test's loop: it listens on
 * 127.0.0.1, connects each accepted connection to 127.0.0.1:upstream_port
 * and copies bytes both ways, until `budget` bytes have gone in the
 * direction `dir`; then it ends both TCP connections, by RST (SO_LINGER 0)
 * or by FIN (shutdown of its write side toward both peers, after which
 * whatever a peer sends is dropped). Each side thus sees a real read or
 * write error, or end of stream, at an exact byte of the exchange.
 */
#ifndef UVG_TEST_FAULT_RELAY_H
#define UVG_TEST_FAULT_RELAY_H

#include <stdint.h>
#include <uv.h>

typedef enum {
  FR_RST, /* both connections reset */
  FR_FIN  /* both connections half-closed by the relay */
} fr_kill_t;

enum { FR_UP = 0, FR_DOWN = 1 }; /* client to server; server to client */

typedef struct fr_conn_s fr_conn_t;

typedef struct {
  /* set before fr_start() */
  int upstream_port;
  fr_kill_t kill;
  int dir;        /* FR_UP or FR_DOWN: the direction the budget counts */
  int64_t budget; /* bytes relayed in `dir` before the kill; < 0: never */
  /* only the first this many connections are cut (0: all); later ones
   * relay everything, as a reconnect that succeeds */
  int faulty;

  /* what happened */
  int port;
  int connections; /* accepted */
  int kills;       /* connections ended by the budget */
  int64_t bytes[2]; /* relayed, all connections, per direction */

  /* private */
  uv_loop_t *loop;
  uv_tcp_t listener;
  fr_conn_t *conns;
  int open_handles;
} fr_t;

/* Listens on 127.0.0.1:0; r->port is then the port. Returns 0 or a libuv
 * error. */
int fr_start(fr_t *r, uv_loop_t *loop);

/* Stops listening and closes every connection (their handles are closed
 * when the loop next runs; fr_stop() does not run it). */
void fr_stop(fr_t *r);

#endif

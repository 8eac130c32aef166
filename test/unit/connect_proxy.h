/*
 * A small HTTP CONNECT proxy for client tests, on libuv and the test's own
 * loop. It listens on 127.0.0.1 (a port the kernel picks), records each
 * request's header block as received, and then behaves as the test asks:
 * tunnels to 127.0.0.1 (to a fixed port, or to the loopback host:port the
 * request names), demands credentials, answers a fixed response, or
 * stalls. A tunnel's 200 can leave in one write with the server's first
 * bytes, as a proxy that relays at once may send them.
 */
#ifndef UVG_TEST_CONNECT_PROXY_H
#define UVG_TEST_CONNECT_PROXY_H

#include <uv.h>

typedef enum {
  CPX_TUNNEL, /* 200, then bytes both ways */
  CPX_ANSWER, /* writes `answer` and closes */
  CPX_STALL   /* reads the request and never answers */
} cpx_mode_t;

typedef struct cpx_conn_s cpx_conn_t;

typedef struct {
  /* set before cpx_start() (zero: defaults) */
  cpx_mode_t mode;
  /* CPX_TUNNEL: every tunnel goes to 127.0.0.1:upstream_port; 0: to the
   * request's host:port, which must be 127.0.0.1, [::1] or localhost
   * (anything else is answered 403: this proxy reaches loopback only) */
  int upstream_port;
  /* CPX_TUNNEL: the Proxy-Authorization value required ("Basic ..."),
   * else 407; NULL: none required */
  const char *require_auth;
  /* CPX_ANSWER: the bytes written */
  const char *answer;
  /* CPX_TUNNEL: hold the 200 until the server's first bytes, and write
   * both at once */
  int coalesce;
  /* print each request line to stdout (the standalone proxy) */
  int verbose;

  /* what happened */
  int port;
  int connections;    /* accepted */
  int requests;       /* complete request header blocks */
  int tunnels;        /* tunnels opened to the upstream */
  char request[1024]; /* the last request's header block, NUL-terminated */

  /* private */
  uv_loop_t *loop;
  uv_tcp_t listener;
  cpx_conn_t *conns;
  int open_handles;
} cpx_t;

/* Listens on 127.0.0.1:0; p->port is then the port. Returns 0 or a libuv
 * error. */
int cpx_start(cpx_t *p, uv_loop_t *loop);

/* Stops listening, closes every connection, and runs the loop until all
 * of the proxy's handles are closed. */
void cpx_stop(cpx_t *p);

#endif

/* The test suite's HTTP CONNECT proxy (test/unit/connect_proxy.c) as a
 * program, for checks with other gRPC clients:
 *
 *   connect_proxy [--require_auth=VALUE]
 *
 * Listens on 127.0.0.1 (a port the kernel picks), prints "listening on
 * port N", then "proxy: " and the request line of each request, and
 * tunnels to the loopback host:port a request names. With --require_auth
 * a request without that Proxy-Authorization value is answered 407. Ends
 * on SIGTERM or SIGINT. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "connect_proxy.h"

static cpx_t px;
static uv_signal_t sigterm, sigint;

static void on_signal(uv_signal_t *h, int signum) {
  (void)signum;
  (void)h;
  uv_close((uv_handle_t *)&sigterm, NULL);
  uv_close((uv_handle_t *)&sigint, NULL);
  cpx_stop(&px);
}

int main(int argc, char **argv) {
  uv_loop_t *loop = uv_default_loop();
  px.mode = CPX_TUNNEL;
  px.verbose = 1;
  for (int i = 1; i < argc; i++) {
    if (strncmp(argv[i], "--require_auth=", 15) == 0) {
      px.require_auth = argv[i] + 15;
    } else {
      fprintf(stderr, "usage: %s [--require_auth=VALUE]\n", argv[0]);
      return 2;
    }
  }
  int rc = cpx_start(&px, loop);
  if (rc != 0) {
    fprintf(stderr, "connect_proxy: %s\n", uv_strerror(rc));
    return 1;
  }
  printf("listening on port %d\n", px.port);
  fflush(stdout);
  uv_signal_init(loop, &sigterm);
  uv_signal_init(loop, &sigint);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  uv_signal_start(&sigint, on_signal, SIGINT);
  uv_run(loop, UV_RUN_DEFAULT);
  return uv_loop_close(loop) == 0 ? 0 : 1;
}

/*
 * greeter_server: serves helloworld.Greeter/SayHello on 127.0.0.1, with the
 * health service and server reflection beside it.
 *
 *   greeter_server --port 50051
 *
 * Prints "listening on port N" once it accepts connections (N is the bound
 * port, useful with --port 0) and stops cleanly on SIGINT or SIGTERM.
 *
 * The typed code comes from helloworld.proto through protoc-gen-uvgrpc
 * (helloworld.uvgrpc.h) and protoc-c (helloworld.pb-c.h): see meson.build.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <uvgrpc.h>
#include <uvgrpc/health.h>
#include <uvgrpc/reflection.h>

#include "helloworld.uvgrpc.h"

/* The request is decoded already; it lives until the call is done. */
static void say_hello(uvg_call_t *call, const Helloworld__HelloRequest *req) {
  size_t n = strlen(req->name) + sizeof("Hello ");
  char *text = uvg_call_alloc(call, n); /* freed with the call */
  if (text == NULL) {
    uvg_call_finish(call, UVG_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL,
                    0);
    return;
  }
  snprintf(text, n, "Hello %s", req->name);
  Helloworld__HelloReply reply = HELLOWORLD__HELLO_REPLY__INIT;
  reply.message = text;
  helloworld__Greeter__SayHello__reply(call, &reply); /* sends, finishes OK */
}

static const helloworld__Greeter__server_t greeter = {
    .SayHello = {.on_call = say_hello},
};

static uvg_server_t *server;
static uv_signal_t sigint, sigterm;

static void on_closed(uvg_server_t *s, void *data) {
  (void)s;
  (void)data;
  uv_close((uv_handle_t *)&sigint, NULL);
  uv_close((uv_handle_t *)&sigterm, NULL);
}

/* Calls in flight get a second to finish; health turns NOT_SERVING at once.
 * A second signal is a no-op. */
static void on_signal(uv_signal_t *h, int signum) {
  (void)signum;
  uvg_server_shutdown(server, 1000, on_closed, h);
}

int main(int argc, char **argv) {
  const char *port = "50051";
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
      port = argv[++i];
    else if (strncmp(argv[i], "--port=", 7) == 0)
      port = argv[i] + 7;
    else {
      fprintf(stderr, "usage: %s [--port N]\n", argv[0]);
      return 2;
    }
  }
  /* A peer that goes away mid-write must not kill the process: libuv
   * writes with write(2), so SIGPIPE is the application's to ignore. */
  signal(SIGPIPE, SIG_IGN);
  uv_loop_t *loop = uv_default_loop();
  uvg_health_t *health;
  char addr[64];
  int bound, err;
  snprintf(addr, sizeof(addr), "127.0.0.1:%s", port);
  if ((err = uvg_server_new(loop, NULL, &server)) != 0 ||
      (err = helloworld__Greeter__register(server, &greeter, NULL)) != 0 ||
      (err = uvg_health_add(server, &health)) != 0 ||
      (err = uvg_health_set(health, "helloworld.Greeter",
                            UVG_HEALTH_SERVING)) != 0 ||
      (err = uvg_reflection_add(server)) != 0 ||
      (err = uvg_server_listen(server, addr, uvg_insecure_server_credentials(),
                               &bound)) != 0) {
    fprintf(stderr, "greeter_server: %s: %s\n", addr, uvg_strerror(err));
    return 1;
  }
  uv_signal_init(loop, &sigint);
  uv_signal_init(loop, &sigterm);
  uv_signal_start(&sigint, on_signal, SIGINT);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  printf("listening on port %d\n", bound);
  fflush(stdout);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  return 0;
}

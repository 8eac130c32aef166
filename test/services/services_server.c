/*
 * A server with the test protos' services, health and reflection, for the
 * reflection client (reflection_client.py) to explore and call.
 *
 *   services_server --port=N
 *
 * Prints "listening on port N" and stops on SIGTERM or SIGINT.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <uvgrpc.h>
#include <uvgrpc/health.h>
#include <uvgrpc/reflection.h>

#include "nopkg.uvgrpc.h"
#include "uvg/test/v1/kinds.uvgrpc.h"

static uvg_server_t *server;
static uv_signal_t sigint, sigterm;

static void unary(uvg_call_t *call, const Uvg__Test__V1__Outer__Inner *req) {
  Uvg__Test__V1__Outer__Inner reply = UVG__TEST__V1__OUTER__INNER__INIT;
  reply.value = req->value * 2;
  size_t n = strlen(req->text) + 7;
  reply.text = uvg_call_alloc(call, n);
  snprintf(reply.text, n, "twice:%s", req->text);
  uvg__test__v1__Kinds__Unary__reply(call, &reply);
}

static void say(uvg_call_t *call, const Ping *req) {
  Echo__Say__reply(call, req);
}

static void on_closed(uvg_server_t *s, void *data) {
  (void)s;
  (void)data;
  uv_close((uv_handle_t *)&sigint, NULL);
  uv_close((uv_handle_t *)&sigterm, NULL);
}

static void on_signal(uv_signal_t *h, int signum) {
  (void)signum;
  uvg_server_shutdown(server, 1000, on_closed, h);
}

int main(int argc, char **argv) {
  const char *port = "0";
  for (int i = 1; i < argc; i++) {
    if (strncmp(argv[i], "--port=", 7) == 0) {
      port = argv[i] + 7;
    } else {
      fprintf(stderr, "usage: %s --port=N\n", argv[0]);
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  uv_loop_t *loop = uv_default_loop();
  static const uvg__test__v1__Kinds__server_t kinds = {
      .Unary = {.on_call = unary}};
  static const uvg__test__v1__Other__server_t other = {0};
  static const Echo__server_t echo = {.Say = {.on_call = say}};
  uvg_health_t *health;
  char addr[64];
  int bound, err;
  snprintf(addr, sizeof(addr), "127.0.0.1:%s", port);
  if ((err = uvg_server_new(loop, NULL, &server)) != 0 ||
      (err = uvg__test__v1__Kinds__register(server, &kinds, NULL)) != 0 ||
      (err = uvg__test__v1__Other__register(server, &other, NULL)) != 0 ||
      (err = Echo__register(server, &echo, NULL)) != 0 ||
      (err = uvg_health_add(server, &health)) != 0 ||
      (err = uvg_health_set(health, "uvg.test.v1.Kinds", UVG_HEALTH_SERVING)) !=
          0 ||
      (err = uvg_health_set(health, "uvg.test.v1.Other",
                            UVG_HEALTH_NOT_SERVING)) != 0 ||
      (err = uvg_reflection_add(server)) != 0 ||
      (err = uvg_server_listen(server, addr, uvg_insecure_server_credentials(),
                               &bound)) != 0) {
    fprintf(stderr, "services_server: %s\n", uvg_strerror(err));
    return 1;
  }
  uv_signal_init(loop, &sigint);
  uv_signal_init(loop, &sigterm);
  uv_signal_start(&sigint, on_signal, SIGINT);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  printf("listening on port %d\n", bound);
  fflush(stdout);
  uv_run(loop, UV_RUN_DEFAULT);
  return uv_loop_close(loop) == 0 ? 0 : 1;
}

/*
 * The uvgrpc greeter of samples/helloworld with the reply built on the heap,
 * for the benchmark's 1 KiB and 64 KiB replies: the sample formats
 * "Hello " + name into a 512-byte stack buffer, so it cuts longer names
 * (its reply is at most 519 bytes on the wire). Everything else (options,
 * method table, one uvg_call_send + uvg_call_finish per call) is the same.
 *
 *   uvgrpc_greeter [--port N]
 *
 * Built by test/bench/run.sh against build/libuvgrpc.a only when the sample
 * fails the benchmark's reply check.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uvgrpc.h>

#include "helloworld.pb-c.h"

static void on_say_hello(uvg_call_t *call, const uint8_t *msg, size_t len) {
  Helloworld__HelloRequest *req = helloworld__hello_request__unpack(NULL, len, msg);
  if (req == NULL) {
    uvg_call_finish(call, UVG_STATUS_INVALID_ARGUMENT, "cannot parse HelloRequest",
                    NULL, 0);
    return;
  }
  size_t nlen = strlen(req->name);
  char *text = malloc(nlen + 7);
  memcpy(text, "Hello ", 6);
  memcpy(text + 6, req->name, nlen + 1);
  helloworld__hello_request__free_unpacked(req, NULL);

  Helloworld__HelloReply reply = HELLOWORLD__HELLO_REPLY__INIT;
  reply.message = text;
  size_t cap = helloworld__hello_reply__get_packed_size(&reply);
  uint8_t *buf = malloc(cap ? cap : 1);
  size_t n = helloworld__hello_reply__pack(&reply, buf);
  free(text);
  uvg_call_send(call, buf, n, 0, NULL, NULL); /* no callback: bytes are copied */
  free(buf);
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}

static void on_done(uvg_call_t *call, const uvg_status_t *status) {
  (void)call;
  (void)status;
}

static uvg_server_t *server;
static uv_signal_t sigint, sigterm;

static void on_closed(uvg_server_t *s, void *data) {
  (void)s;
  (void)data;
  uv_close((uv_handle_t *)&sigint, NULL);
  uv_close((uv_handle_t *)&sigterm, NULL);
}

static void on_signal(uv_signal_t *h, int signum) {
  (void)signum;
  uvg_server_close(server, on_closed, h);
}

int main(int argc, char **argv) {
  const char *port = "0";
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
      port = argv[++i];
    else {
      fprintf(stderr, "usage: %s [--port N]\n", argv[0]);
      return 2;
    }
  }
  uv_loop_t *loop = uv_default_loop();
  static const uvg_method_t methods[] = {{
      .path = "/helloworld.Greeter/SayHello",
      .type = UVG_METHOD_UNARY,
      .on_call = on_say_hello,
      .on_done = on_done,
  }};
  char addr[64];
  int bound, err;
  snprintf(addr, sizeof(addr), "127.0.0.1:%s", port);
  if ((err = uvg_server_new(loop, NULL, &server)) != 0 ||
      (err = uvg_server_register(server, methods, 1)) != 0 ||
      (err = uvg_server_listen(server, addr, uvg_insecure_server_credentials(),
                               &bound)) != 0) {
    fprintf(stderr, "uvgrpc_greeter: %s: %s\n", addr, uvg_strerror(err));
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

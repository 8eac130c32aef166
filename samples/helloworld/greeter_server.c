/*
 * greeter_server: serves helloworld.Greeter/SayHello on 127.0.0.1, with the
 * health service and server reflection beside it.
 *
 *   greeter_server --port 50051 [--tls [--cert PEM --key PEM]]
 *
 * Prints "listening on port N" once it accepts connections (N is the bound
 * port, useful with --port 0) and stops cleanly on SIGINT or SIGTERM.
 *
 * The typed code comes from helloworld.proto through protoc-gen-uvgrpc
 * (helloworld.uvgrpc.h) and protoc-c (helloworld.pb-c.h): see meson.build.
 * With --tls it speaks TLS with gRPC's test certificate (server1.pem and
 * server1.key from grpc-go's testdata, for *.test.google.fr), or the
 * certificate chain and key given.
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
  const char *cert = GRPC_TESTDATA "/server1.pem", *key = GRPC_TESTDATA "/server1.key";
  int tls = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
      port = argv[++i];
    else if (strncmp(argv[i], "--port=", 7) == 0)
      port = argv[i] + 7;
    else if (strcmp(argv[i], "--tls") == 0)
      tls = 1;
    else if (strcmp(argv[i], "--cert") == 0 && i + 1 < argc)
      cert = argv[++i];
    else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc)
      key = argv[++i];
    else {
      fprintf(stderr, "usage: %s [--port N] [--tls [--cert PEM --key PEM]]\n",
              argv[0]);
      return 2;
    }
  }
  /* Credentials are chosen explicitly: TLS from a certificate and its
   * key, or plaintext. The server keeps its own reference to them. */
  uvg_server_credentials_t *creds = uvg_insecure_server_credentials();
  if (tls) {
    uvg_tls_server_options_t o = {.cert_chain = {.file = cert},
                                  .private_key = {.file = key}};
    int err = uvg_tls_server_credentials_new(&o, &creds);
    if (err != 0) { /* the log line above says which file and why */
      fprintf(stderr, "greeter_server: TLS: %s\n", uvg_strerror(err));
      return 1;
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
      (err = uvg_server_listen(server, addr, creds,
                               &bound)) != 0) {
    fprintf(stderr, "greeter_server: %s: %s\n", addr, uvg_strerror(err));
    return 1;
  }
  uvg_server_credentials_release(creds);
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

/*
 * greeter_client: calls helloworld.Greeter/SayHello and prints the reply.
 *
 *   greeter_client --target 127.0.0.1:50051 --name world [--count N]
 *                  [--timeout MS] [--tls [--ca PEM] [--server_name NAME]]
 *
 * With --tls the channel speaks TLS and checks the server's certificate
 * against gRPC's test CA (ca.pem of grpc-go's testdata, or --ca) for the
 * name foo.test.google.fr, which the test certificate greeter_server
 * --tls serves carries (--server_name for another; with --ca but no
 * --server_name, the target's host).
 *
 * Everything happens in callbacks on one libuv loop: the channel connects
 * on the first call, each reply arrives decoded in on_reply, and once the
 * last one is in the channel is closed, which lets uv_run() return.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uvgrpc.h>

#include "helloworld.uvgrpc.h"

static uvg_channel_t *channel;
static int outstanding, failed;

/* `reply` is NULL unless the status is OK; both live during the callback. */
static void on_reply(const uvg_status_t *status,
                     const Helloworld__HelloReply *reply, void *user_data) {
  (void)user_data;
  if (status->code != UVG_STATUS_OK) {
    fprintf(stderr, "greeter_client: %s: %s\n",
            uvg_status_code_name(status->code), status->message);
    failed = 1;
  } else {
    printf("Greeter client received: %s\n", reply->message);
  }
  if (--outstanding == 0) uvg_channel_close(channel, NULL, NULL);
}

int main(int argc, char **argv) {
  const char *target = "127.0.0.1:50051", *name = "world";
  const char *ca = NULL, *server_name = NULL;
  int count = 1, tls = 0, timeout = 5000;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--target") == 0 && i + 1 < argc)
      target = argv[++i];
    else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
      static char t[64];
      snprintf(t, sizeof(t), "127.0.0.1:%s", argv[++i]);
      target = t;
    } else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc)
      name = argv[++i];
    else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc)
      count = atoi(argv[++i]);
    else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
      timeout = atoi(argv[++i]);
    else if (strcmp(argv[i], "--tls") == 0)
      tls = 1;
    else if (strcmp(argv[i], "--ca") == 0 && i + 1 < argc)
      ca = argv[++i];
    else if (strcmp(argv[i], "--server_name") == 0 && i + 1 < argc)
      server_name = argv[++i];
    else {
      fprintf(stderr,
              "usage: %s [--target T | --port N] [--name S] [--count N] "
              "[--timeout MS] [--tls [--ca PEM] [--server_name NAME]]\n",
              argv[0]);
      return 2;
    }
  }
  uv_loop_t *loop = uv_default_loop();
  uvg_channel_credentials_t *creds = uvg_insecure_channel_credentials();
  if (tls) {
    uvg_tls_channel_options_t o = {
        .root_certs = {.file = ca ? ca : GRPC_TESTDATA "/ca.pem"},
        .server_name_override = server_name ? server_name
                                : ca ? NULL
                                     : "foo.test.google.fr",
    };
    int err = uvg_tls_channel_credentials_new(&o, &creds);
    if (err != 0) {
      fprintf(stderr, "greeter_client: TLS: %s\n", uvg_strerror(err));
      return 1;
    }
  }
  int err = uvg_channel_new(loop, target, creds, NULL, &channel);
  uvg_channel_credentials_release(creds); /* the channel keeps its own */
  if (err != 0) {
    fprintf(stderr, "greeter_client: %s: %s\n", target, uvg_strerror(err));
    return 1;
  }
  Helloworld__HelloRequest req = HELLOWORLD__HELLO_REQUEST__INIT;
  req.name = (char *)name;
  /* A deadline on every call: a server that is not there fails it in 5 s. */
  uvg_client_call_options_t opts = {.timeout_ms = (uint64_t)timeout, .wait_for_ready = 1};
  for (int i = 0; i < count; i++) {
    /* The request is packed and copied before this returns. */
    err = helloworld__Greeter__SayHello__client_unary(channel, &req, &opts,
                                                      on_reply, NULL);
    if (err != 0) {
      fprintf(stderr, "greeter_client: %s\n", uvg_strerror(err));
      return 1;
    }
    outstanding++;
  }
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  return failed;
}

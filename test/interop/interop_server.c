/*
 * The gRPC interop test server (doc/interop-test-descriptions.md, "Server")
 * for grpc.testing.TestService, on the code protoc-gen-uvgrpc writes for
 * grpc-proto's test.proto, with the health service and reflection beside
 * it (a reflection client can call it knowing no .proto).
 *
 *   interop_server --port=N [--use_tls=true|false] [--tls_cert_file=PEM]
 *                  [--tls_key_file=PEM] [--require_client_cert[=true]]
 *                  [--client_ca_file=PEM]
 *
 * Prints "listening on port N" once listening (N is the bound port, so
 * --port=0 works) and exits cleanly on SIGTERM or SIGINT. With
 * --use_tls=true it serves gRPC's test certificate (server1.pem and
 * server1.key of grpc-go's testdata, which Debian's golang-google-grpc-dev
 * installs; --tls_cert_file/--tls_key_file as grpc-go's interop server
 * names them choose others); --require_client_cert makes it require a
 * client certificate signed by --client_ca_file (by default the testdata's
 * x509/client_ca_cert.pem, which signs x509/client1_cert.pem).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uvgrpc.h>
#include <uvgrpc/health.h>
#include <uvgrpc/reflection.h>

#include "grpc/testing/test.uvgrpc.h"

#define ECHO_INITIAL "x-grpc-test-echo-initial"
#define ECHO_TRAILING "x-grpc-test-echo-trailing-bin"

/* ---- helpers ---- */

/* Packs `m` and sends a copy. */
static int send_packed(uvg_call_t *call, const ProtobufCMessage *m,
                       unsigned flags) {
  return uvg_call_send_message(call, m, flags, NULL, NULL);
}

/* expect_compressed: the request must have arrived compressed exactly
 * when it says so (client_compressed_* cases). */
static int compression_as_expected(uvg_call_t *call,
                                   const Grpc__Testing__BoolValue *expect) {
  int want = expect != NULL && expect->value;
  return want == uvg_call_message_compressed(call);
}

/* Echoes x-grpc-test-echo-initial back as initial metadata. */
static void echo_initial(uvg_call_t *call) {
  const uvg_metadata_t *md = uvg_call_metadata_get(call, ECHO_INITIAL);
  if (md != NULL) uvg_call_send_headers(call, md, 1);
}

/* Finishes with `code`/`message`, echoing x-grpc-test-echo-trailing-bin. */
static void finish(uvg_call_t *call, int code, const char *message) {
  const uvg_metadata_t *md = uvg_call_metadata_get(call, ECHO_TRAILING);
  uvg_status_t st = {(uvg_status_code_t)code, message, NULL, 0};
  uvg_call_finish_status(call, &st, md, md ? 1 : 0);
}

static Grpc__Testing__Payload *make_payload(Grpc__Testing__Payload *p, int32_t size) {
  grpc__testing__payload__init(p);
  p->type = GRPC__TESTING__PAYLOAD_TYPE__COMPRESSABLE;
  p->body.len = size > 0 ? (size_t)size : 0;
  p->body.data = calloc(1, p->body.len ? p->body.len : 1);
  return p;
}

static void on_done(uvg_call_t *call, const uvg_status_t *status) {
  (void)call;
  (void)status;
}

/* ---- unary ---- */

static void on_empty_call(uvg_call_t *call, const Grpc__Testing__Empty *req) {
  (void)req;
  Grpc__Testing__Empty resp = GRPC__TESTING__EMPTY__INIT;
  grpc__testing__TestService__EmptyCall__reply(call, &resp);
}

static void on_unary_call(uvg_call_t *call, const Grpc__Testing__SimpleRequest *req) {
  int want_compressed = req->response_compressed && req->response_compressed->value;
  if (want_compressed) uvg_call_set_compression(call, UVG_COMPRESS_GZIP);
  echo_initial(call);
  if (!compression_as_expected(call, req->expect_compressed)) {
    finish(call, UVG_STATUS_INVALID_ARGUMENT, "request compression not as expected");
  } else if (req->response_status != NULL && req->response_status->code != 0) {
    finish(call, req->response_status->code, req->response_status->message);
  } else {
    Grpc__Testing__SimpleResponse resp = GRPC__TESTING__SIMPLE_RESPONSE__INIT;
    Grpc__Testing__Payload payload;
    resp.payload = make_payload(&payload, req->response_size);
    send_packed(call, &resp.base, want_compressed ? 0 : UVG_SEND_NO_COMPRESS);
    free(payload.body.data);
    finish(call, UVG_STATUS_OK, NULL);
  }
}

/* ---- streaming responses: a queue of (size, interval) paced by a timer
 * and by the send callback, which is how a handler applies backpressure ---- */

typedef struct {
  int32_t size, interval_us;
  int compressed;
} planned_t;

typedef struct {
  uvg_call_t *call;
  uv_timer_t timer;
  planned_t *plan;
  size_t plan_len, plan_cap, next;
  int sending;        /* a response is waiting for its timer or send_cb */
  int input_done;     /* no more requests will add to the plan */
  int have_status;    /* a request asked for this status */
  int status_code;
  char *status_message;
  int finished;
  int32_t aggregated; /* StreamingInputCall */
  int half_duplex;
  Grpc__Testing__StreamingOutputCallRequest **held; /* HalfDuplexCall */
  size_t held_len;
} stream_ctx_t;

static stream_ctx_t *ctx_new(uvg_call_t *call) {
  stream_ctx_t *x = calloc(1, sizeof(*x));
  x->call = call;
  uv_timer_init(uv_default_loop(), &x->timer);
  x->timer.data = x;
  uvg_call_set_data(call, x);
  return x;
}

static void ctx_free_cb(uv_handle_t *h) {
  stream_ctx_t *x = h->data;
  free(x->plan);
  free(x->status_message);
  free(x);
}

static void on_stream_done(uvg_call_t *call, const uvg_status_t *status) {
  (void)status;
  stream_ctx_t *x = uvg_call_get_data(call);
  if (x == NULL) return; /* the request did not decode: no handler ran */
  uv_close((uv_handle_t *)&x->timer, ctx_free_cb);
}

static void ctx_finish(stream_ctx_t *x) {
  if (x->finished) return;
  x->finished = 1;
  uv_timer_stop(&x->timer);
  if (x->have_status)
    finish(x->call, x->status_code, x->status_message);
  else
    finish(x->call, UVG_STATUS_OK, NULL);
}

static void pump(stream_ctx_t *x);

/* The response left (or the call ended). */
static void on_sent(uvg_call_t *call, int status, void *data) {
  stream_ctx_t *x = data;
  (void)call;
  x->sending = 0;
  if (status == 0) pump(x);
}

/* Sends the next planned response, packed once into the library's buffer;
 * the next one waits for on_sent, so at most one response per call is
 * buffered. */
static void send_next(stream_ctx_t *x) {
  planned_t p = x->plan[x->next++];
  Grpc__Testing__StreamingOutputCallResponse resp =
      GRPC__TESTING__STREAMING_OUTPUT_CALL_RESPONSE__INIT;
  Grpc__Testing__Payload payload;
  resp.payload = make_payload(&payload, p.size);
  x->sending = 1;
  if (uvg_call_send_message(x->call, &resp.base,
                            p.compressed ? 0 : UVG_SEND_NO_COMPRESS, on_sent, x) != 0)
    x->sending = 0;
  free(payload.body.data);
}

static void on_interval(uv_timer_t *t) {
  stream_ctx_t *x = t->data;
  x->sending = 0;
  send_next(x);
}

static void pump(stream_ctx_t *x) {
  if (x->sending || x->finished || uvg_call_is_cancelled(x->call)) return;
  if (x->next < x->plan_len) {
    planned_t *p = &x->plan[x->next];
    if (p->interval_us > 0) {
      x->sending = 1;
      uv_timer_start(&x->timer, on_interval, (uint64_t)(p->interval_us + 999) / 1000, 0);
    } else {
      send_next(x);
    }
    return;
  }
  if (x->input_done) ctx_finish(x);
}

static void plan_request(stream_ctx_t *x,
                         const Grpc__Testing__StreamingOutputCallRequest *req) {
  for (size_t i = 0; i < req->n_response_parameters; i++) {
    if (x->plan_len == x->plan_cap) {
      x->plan_cap = x->plan_cap ? x->plan_cap * 2 : 8;
      x->plan = realloc(x->plan, x->plan_cap * sizeof(*x->plan));
    }
    x->plan[x->plan_len].size = req->response_parameters[i]->size;
    x->plan[x->plan_len].interval_us = req->response_parameters[i]->interval_us;
    x->plan[x->plan_len].compressed = req->response_parameters[i]->compressed &&
                                      req->response_parameters[i]->compressed->value;
    /* A compressed response needs grpc-encoding in the headers: possible
     * until the first response goes out. */
    if (x->plan[x->plan_len].compressed)
      uvg_call_set_compression(x->call, UVG_COMPRESS_GZIP);
    x->plan_len++;
  }
  if (req->response_status != NULL && req->response_status->code != 0) {
    x->have_status = 1;
    x->status_code = req->response_status->code;
    free(x->status_message);
    x->status_message = strdup(req->response_status->message);
  }
}

static void on_streaming_output_call(
    uvg_call_t *call, const Grpc__Testing__StreamingOutputCallRequest *req) {
  stream_ctx_t *x = ctx_new(call);
  echo_initial(call);
  plan_request(x, req);
  x->input_done = 1;
  pump(x);
}

static void on_stream_cancel(uvg_call_t *call, const uvg_status_t *status) {
  stream_ctx_t *x = uvg_call_get_data(call);
  (void)status;
  uv_timer_stop(&x->timer);
  if (!x->finished) {
    x->finished = 1;
    uvg_call_finish(call, UVG_STATUS_CANCELLED, NULL, NULL, 0);
  }
}

/* ---- client streaming ---- */

static void on_input_call(uvg_call_t *call) {
  ctx_new(call);
}

static void on_input_message(uvg_call_t *call,
                             const Grpc__Testing__StreamingInputCallRequest *req) {
  stream_ctx_t *x = uvg_call_get_data(call);
  if (req->payload != NULL) x->aggregated += (int32_t)req->payload->body.len;
  if (!compression_as_expected(call, req->expect_compressed)) {
    x->finished = 1;
    finish(call, UVG_STATUS_INVALID_ARGUMENT, "request compression not as expected");
  }
}

static void on_input_half_close(uvg_call_t *call) {
  stream_ctx_t *x = uvg_call_get_data(call);
  Grpc__Testing__StreamingInputCallResponse resp =
      GRPC__TESTING__STREAMING_INPUT_CALL_RESPONSE__INIT;
  resp.aggregated_payload_size = x->aggregated;
  send_packed(call, &resp.base, 0);
  x->input_done = 1;
  ctx_finish(x);
}

/* ---- bidi: FullDuplexCall answers each request as it comes;
 * HalfDuplexCall holds them until the client half-closes ---- */

static void on_duplex_call(uvg_call_t *call) {
  ctx_new(call);
  echo_initial(call);
}

static void on_half_duplex_call(uvg_call_t *call) {
  on_duplex_call(call);
  ((stream_ctx_t *)uvg_call_get_data(call))->half_duplex = 1;
}

static void on_duplex_message(uvg_call_t *call,
                              const Grpc__Testing__StreamingOutputCallRequest *req) {
  stream_ctx_t *x = uvg_call_get_data(call);
  plan_request(x, req);
  if (!x->half_duplex) pump(x);
}

static void on_duplex_half_close(uvg_call_t *call) {
  stream_ctx_t *x = uvg_call_get_data(call);
  x->input_done = 1;
  pump(x);
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
  uvg_server_close(server, on_closed, h); /* a second signal is a no-op */
}

/* With --require_client_cert: a call without a verified client
 * certificate is refused (it cannot happen: the handshake requires one). */
static int check_peer(uvg_call_t *call, void *data, uvg_status_t *reject) {
  const uvg_auth_info_t *a = uvg_call_auth_info(call);
  (void)data;
  if (a->secure && a->peer_verified && a->peer_common_name != NULL) return 0;
  reject->code = UVG_STATUS_UNAUTHENTICATED;
  reject->message = "no verified client certificate";
  return 1;
}

/* Matches "--name=value" or "--name value"; sets *value. */
static int flag(int argc, char **argv, int *i, const char *name,
                const char **value) {
  size_t n = strlen(name);
  if (strncmp(argv[*i], name, n) != 0) return 0;
  if (argv[*i][n] == '=') {
    *value = argv[*i] + n + 1;
    return 1;
  }
  if (argv[*i][n] == '\0' && *i + 1 < argc) {
    *value = argv[++*i];
    return 1;
  }
  return 0;
}

/* "true" or "false"; returns -1 for anything else. */
static int boolean(const char *v) {
  return strcmp(v, "true") == 0 ? 1 : strcmp(v, "false") == 0 ? 0 : -1;
}

int main(int argc, char **argv) {
  const char *port = "10000", *tls = "false", *require = "false";
  const char *cert = GRPC_TESTDATA "/server1.pem";
  const char *key = GRPC_TESTDATA "/server1.key";
  const char *client_ca = GRPC_TESTDATA "/x509/client_ca_cert.pem";
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--require_client_cert") == 0) {
      require = "true";
      continue;
    }
    if (flag(argc, argv, &i, "--port", &port) ||
        flag(argc, argv, &i, "--use_tls", &tls) ||
        flag(argc, argv, &i, "--tls_cert_file", &cert) ||
        flag(argc, argv, &i, "--tls_key_file", &key) ||
        flag(argc, argv, &i, "--client_ca_file", &client_ca) ||
        flag(argc, argv, &i, "--require_client_cert", &require))
      continue;
    fprintf(stderr,
            "usage: %s --port=N [--use_tls=true|false] [--tls_cert_file=PEM] "
            "[--tls_key_file=PEM] [--require_client_cert] "
            "[--client_ca_file=PEM]\n",
            argv[0]);
    return 2;
  }
  int use_tls = boolean(tls), require_cert = boolean(require);
  if (use_tls < 0 || require_cert < 0 || (require_cert && !use_tls)) {
    fprintf(stderr, "interop_server: --use_tls and --require_client_cert take "
                    "true or false, and a client certificate needs TLS\n");
    return 2;
  }
  /* UnimplementedCall is left out: it answers UNIMPLEMENTED. */
  static const grpc__testing__TestService__server_t test_service = {
      .EmptyCall = {.on_call = on_empty_call, .on_done = on_done},
      .UnaryCall = {.on_call = on_unary_call, .on_done = on_done},
      .CacheableUnaryCall = {.on_call = on_unary_call, .on_done = on_done},
      .StreamingOutputCall = {.on_call = on_streaming_output_call,
                              .on_cancel = on_stream_cancel,
                              .on_done = on_stream_done},
      .StreamingInputCall = {.on_call = on_input_call,
                             .on_message = on_input_message,
                             .on_half_close = on_input_half_close,
                             .on_cancel = on_stream_cancel,
                             .on_done = on_stream_done},
      .FullDuplexCall = {.on_call = on_duplex_call,
                         .on_message = on_duplex_message,
                         .on_half_close = on_duplex_half_close,
                         .on_cancel = on_stream_cancel,
                         .on_done = on_stream_done},
      .HalfDuplexCall = {.on_call = on_half_duplex_call,
                         .on_message = on_duplex_message,
                         .on_half_close = on_duplex_half_close,
                         .on_cancel = on_stream_cancel,
                         .on_done = on_stream_done},
  };
  uvg_health_t *health;
  /* A peer that goes away mid-write must not kill the process: libuv
   * writes with write(2), so SIGPIPE is the application's to ignore. */
  signal(SIGPIPE, SIG_IGN);
  uv_loop_t *loop = uv_default_loop();
  char addr[64];
  int bound, err = 0;
  snprintf(addr, sizeof(addr), "127.0.0.1:%s", port);
  uvg_server_credentials_t *creds = uvg_insecure_server_credentials();
  if (use_tls) {
    uvg_tls_server_options_t o = {
        .cert_chain = {.file = cert},
        .private_key = {.file = key},
        .client_ca = {.file = require_cert ? client_ca : NULL},
        .client_cert = require_cert ? UVG_CLIENT_CERT_REQUIRE : UVG_CLIENT_CERT_NONE,
    };
    if ((err = uvg_tls_server_credentials_new(&o, &creds)) != 0) {
      fprintf(stderr, "interop_server: TLS credentials: %s\n", uvg_strerror(err));
      return 1;
    }
  }
  if ((err = uvg_server_new(loop, NULL, &server)) != 0 ||
      (err = grpc__testing__TestService__register(server, &test_service, NULL)) != 0 ||
      (err = uvg_health_add(server, &health)) != 0 ||
      (err = uvg_reflection_add(server)) != 0 ||
      (err = uvg_server_listen(server, addr, creds,
                               &bound)) != 0) {
    fprintf(stderr, "interop_server: %s: %s\n", addr, uvg_strerror(err));
    return 1;
  }
  uvg_server_credentials_release(creds); /* the server holds its own */
  /* mTLS: every call must come with the client's verified identity, as
   * an interceptor sees it */
  static const uvg_server_interceptor_t need_peer = {.on_start = check_peer};
  if (require_cert && (err = uvg_server_add_interceptor(server, &need_peer, NULL)) != 0) {
    fprintf(stderr, "interop_server: %s\n", uvg_strerror(err));
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

/*
 * bench_server: the server of the client benchmark (test/bench/client_run.sh),
 * on 127.0.0.1 only. It serves what every client of that benchmark can call:
 *
 *   /helloworld.Greeter/SayHello              "Hello " + name, exactly as
 *       samples/helloworld/greeter_server does (h2load, grpc-go and our
 *       client all send the same HelloRequest bytes)
 *   /grpc.testing.BenchmarkService/UnaryCall  SimpleRequest -> SimpleResponse
 *   /grpc.testing.BenchmarkService/StreamingCall        ping-pong: one
 *       SimpleResponse for each SimpleRequest, as they come
 *   /grpc.testing.BenchmarkService/StreamingFromServer  one SimpleRequest,
 *       then SimpleResponses without end until the client cancels
 *   /bench.Echo/Echo  bidi: every message sent back as it came, whatever
 *       its bytes (test/bench/stream_run.sh; the grpc-go and gRPC C++
 *       greeters serve it too, through their generic handlers)
 *
 * A SimpleResponse carries a payload of the request's response_size zero
 * bytes (grpc/testing/benchmark_service.proto). The streamed responses are
 * packed once per call and sent without copying, a few at a time: each send
 * callback queues the next, so at most AHEAD messages wait per call.
 *
 *   bench_server [--port N] [--reuseport] [--threads N] [--window B]
 *
 * Prints "listening on port N" once listening (--port 0 picks a port) and
 * stops cleanly on SIGINT or SIGTERM. --reuseport sets the server option
 * reuse_port, so that several bench_server processes share the port;
 * --threads N runs N loops on N threads, each with its own server on the
 * same port (reuse_port), as docs/scaling.md describes. --window sets the
 * per-stream receive window (initial_window_size), for looking into
 * streaming throughput.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include <uvgrpc.h>

#include "grpc/testing/messages.pb-c.h"
#include "helloworld.pb-c.h"

/* Streamed responses queued per call before the first send callback. */
#define AHEAD 8

static void on_done(uvg_call_t *call, const uvg_status_t *status) {
  (void)call;
  (void)status;
}

/* ---- helloworld.Greeter/SayHello, as the sample greeter ---- */

static void on_say_hello(uvg_call_t *call, const uint8_t *msg, size_t len) {
  Helloworld__HelloRequest *req =
      helloworld__hello_request__unpack(NULL, len, msg);
  if (req == NULL) {
    uvg_call_finish(call, UVG_STATUS_INVALID_ARGUMENT,
                    "cannot parse HelloRequest", NULL, 0);
    return;
  }
  size_t n = strlen(req->name);
  char *text = malloc(n + 7);
  Helloworld__HelloReply reply = HELLOWORLD__HELLO_REPLY__INIT;
  reply.message = text;
  uint8_t *buf = text ? malloc(n + 16) : NULL; /* the reply's wire size */
  if (buf == NULL) {
    free(text);
    helloworld__hello_request__free_unpacked(req, NULL);
    uvg_call_finish(call, UVG_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL,
                    0);
    return;
  }
  memcpy(text, "Hello ", 6);
  memcpy(text + 6, req->name, n + 1);
  helloworld__hello_request__free_unpacked(req, NULL);
  size_t size = helloworld__hello_reply__pack(&reply, buf);
  uvg_call_send(call, buf, size, 0, NULL, NULL); /* no callback: copied */
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
  free(buf);
  free(text);
}

/* ---- BenchmarkService ---- */

/* A packed SimpleResponse with `size` zero bytes of payload, or NULL. */
static uint8_t *pack_response(int32_t size, size_t *len) {
  if (size < 0) size = 0;
  uint8_t *body = calloc(1, (size_t)size + 1);
  if (body == NULL) return NULL;
  Grpc__Testing__Payload payload = GRPC__TESTING__PAYLOAD__INIT;
  payload.body.data = body;
  payload.body.len = (size_t)size;
  Grpc__Testing__SimpleResponse resp = GRPC__TESTING__SIMPLE_RESPONSE__INIT;
  resp.payload = &payload;
  *len = grpc__testing__simple_response__get_packed_size(&resp);
  uint8_t *buf = malloc(*len ? *len : 1);
  if (buf != NULL) grpc__testing__simple_response__pack(&resp, buf);
  free(body);
  return buf;
}

/* The response_size a SimpleRequest asks for, or -1 if it does not parse. */
static int32_t response_size(const uint8_t *msg, size_t len) {
  Grpc__Testing__SimpleRequest *req =
      grpc__testing__simple_request__unpack(NULL, len, msg);
  if (req == NULL) return -1;
  int32_t size = req->response_size < 0 ? 0 : req->response_size;
  grpc__testing__simple_request__free_unpacked(req, NULL);
  return size;
}

static void on_unary_call(uvg_call_t *call, const uint8_t *msg, size_t len) {
  int32_t size = response_size(msg, len);
  size_t n;
  uint8_t *buf = size < 0 ? NULL : pack_response(size, &n);
  if (buf == NULL) {
    uvg_call_finish(call, UVG_STATUS_INVALID_ARGUMENT, "bad SimpleRequest",
                    NULL, 0);
    return;
  }
  uvg_call_send(call, buf, n, 0, NULL, NULL);
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
  free(buf);
}

/* A streaming call's packed response, kept for as long as the call sends
 * the same size; freed in on_done, after every send callback has run. */
typedef struct {
  uint8_t *resp;
  size_t resp_len;
  int32_t resp_size;
  unsigned in_flight; /* StreamingFromServer: sends not yet called back */
  int finished;
} stream_t;

static stream_t *stream_of(uvg_call_t *call) {
  stream_t *s = uvg_call_get_data(call);
  if (s == NULL && (s = calloc(1, sizeof(*s))) != NULL) {
    s->resp_size = -1;
    uvg_call_set_data(call, s);
  }
  return s;
}

static void finish_stream(uvg_call_t *call, stream_t *s, uvg_status_code_t code,
                          const char *msg) {
  if (s != NULL) {
    if (s->finished) return;
    s->finished = 1;
  }
  uvg_call_finish(call, code, msg, NULL, 0);
}

static void on_stream_done(uvg_call_t *call, const uvg_status_t *status) {
  (void)status;
  stream_t *s = uvg_call_get_data(call);
  if (s != NULL) {
    free(s->resp);
    free(s);
  }
}

static void on_stream_cancel(uvg_call_t *call, const uvg_status_t *status) {
  (void)status;
  finish_stream(call, uvg_call_get_data(call), UVG_STATUS_CANCELLED, NULL);
}

/* Sets the call's packed response to `size` payload bytes. */
static int set_response(stream_t *s, int32_t size) {
  if (s->resp != NULL && s->resp_size == size) return 0;
  free(s->resp);
  s->resp = pack_response(size, &s->resp_len);
  s->resp_size = size;
  return s->resp != NULL ? 0 : -1;
}

/* StreamingCall: ping-pong. */

static void on_pingpong_call(uvg_call_t *call, const uint8_t *msg, size_t len) {
  (void)msg;
  (void)len;
  if (stream_of(call) == NULL)
    uvg_call_finish(call, UVG_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL,
                    0);
}

static void on_pingpong_message(uvg_call_t *call, const uint8_t *msg,
                                size_t len) {
  stream_t *s = uvg_call_get_data(call);
  if (s == NULL || s->finished) return;
  int32_t size = response_size(msg, len);
  if (size < 0 || set_response(s, size) != 0) {
    finish_stream(call, s, UVG_STATUS_INVALID_ARGUMENT, "bad SimpleRequest");
    return;
  }
  /* copied: the next request may ask for another size */
  uvg_call_send(call, s->resp, s->resp_len, 0, NULL, NULL);
}

static void on_pingpong_half_close(uvg_call_t *call) {
  finish_stream(call, uvg_call_get_data(call), UVG_STATUS_OK, NULL);
}

/* StreamingFromServer: responses until the client cancels. */

static void send_more(uvg_call_t *call, stream_t *s);

static void on_stream_sent(uvg_call_t *call, int status, void *data) {
  stream_t *s = data;
  s->in_flight--;
  if (status == 0) send_more(call, s);
}

static void send_more(uvg_call_t *call, stream_t *s) {
  while (!s->finished && s->in_flight < AHEAD) {
    if (uvg_call_send(call, s->resp, s->resp_len, 0, on_stream_sent, s) != 0) {
      finish_stream(call, s, UVG_STATUS_INTERNAL, "send failed");
      return;
    }
    s->in_flight++;
  }
}

static void on_server_stream_call(uvg_call_t *call, const uint8_t *msg,
                                  size_t len) {
  stream_t *s = stream_of(call);
  int32_t size = response_size(msg, len);
  if (s == NULL || size < 0 || set_response(s, size) != 0) {
    finish_stream(call, s, UVG_STATUS_INVALID_ARGUMENT, "bad SimpleRequest");
    return;
  }
  send_more(call, s);
}

/* Echo: each message back as it came (copied: `msg` is the library's). */

static void on_echo_call(uvg_call_t *call, const uint8_t *msg, size_t len) {
  (void)call;
  (void)msg;
  (void)len;
}

static void on_echo_message(uvg_call_t *call, const uint8_t *msg, size_t len) {
  if (uvg_call_send(call, msg, len, 0, NULL, NULL) != 0 &&
      !uvg_call_get_data(call)) {
    uvg_call_set_data(call, call); /* marks it finished */
    uvg_call_finish(call, UVG_STATUS_INTERNAL, "send failed", NULL, 0);
  }
}

static void on_echo_half_close(uvg_call_t *call) {
  if (!uvg_call_get_data(call)) uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}

static void on_echo_cancel(uvg_call_t *call, const uvg_status_t *status) {
  (void)status;
  if (!uvg_call_get_data(call))
    uvg_call_finish(call, UVG_STATUS_CANCELLED, NULL, NULL, 0);
}

/* ---- main ---- */

#define SVC "/grpc.testing.BenchmarkService/"
static const uvg_method_t methods[] = {
    {.path = "/helloworld.Greeter/SayHello",
     .type = UVG_METHOD_UNARY,
     .on_call = on_say_hello,
     .on_done = on_done},
    {.path = SVC "UnaryCall",
     .type = UVG_METHOD_UNARY,
     .on_call = on_unary_call,
     .on_done = on_done},
    {.path = SVC "StreamingCall",
     .type = UVG_METHOD_BIDI_STREAMING,
     .on_call = on_pingpong_call,
     .on_message = on_pingpong_message,
     .on_half_close = on_pingpong_half_close,
     .on_cancel = on_stream_cancel,
     .on_done = on_stream_done},
    {.path = SVC "StreamingFromServer",
     .type = UVG_METHOD_SERVER_STREAMING,
     .on_call = on_server_stream_call,
     .on_cancel = on_stream_cancel,
     .on_done = on_stream_done},
    {.path = "/bench.Echo/Echo",
     .type = UVG_METHOD_BIDI_STREAMING,
     .on_call = on_echo_call,
     .on_message = on_echo_message,
     .on_half_close = on_echo_half_close,
     .on_cancel = on_echo_cancel,
     .on_done = on_done},
};

/* One loop and its server; with --threads, one per thread. */
typedef struct {
  uv_loop_t loop;
  uv_thread_t thread;
  uv_sem_t ready;
  uvg_server_t *server;
  uvg_poster_t *poster; /* --threads: the main thread's way in */
  int port;             /* in: to bind (0: any); out: bound */
  int err;
} worker_t;

static int reuseport;
static uint32_t window; /* --window: initial_window_size; 0 the default */

static int serve(worker_t *w, uv_loop_t *loop) {
  uvg_server_options_t o;
  char addr[64];
  int err;
  uvg_server_options_init(&o);
  o.reuse_port = reuseport;
  o.initial_window_size = window;
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", w->port);
  if ((err = uvg_server_new(loop, &o, &w->server)) != 0 ||
      (err = uvg_server_register(w->server, methods,
                                 sizeof(methods) / sizeof(methods[0]))) != 0 ||
      (err = uvg_server_listen(w->server, addr, uvg_insecure_server_credentials(),
                               &w->port)) != 0)
    fprintf(stderr, "bench_server: %s: %s\n", addr, uvg_strerror(err));
  return err;
}

static void stop_worker(void *arg, int status) {
  worker_t *w = arg;
  if (status != 0) return;
  uvg_server_close(w->server, NULL, NULL);
  uvg_poster_close(w->poster, NULL, NULL);
}

static void worker_main(void *arg) {
  worker_t *w = arg;
  uv_loop_init(&w->loop);
  w->err = uvg_poster_new(&w->loop, &w->poster);
  if (w->err == 0) w->err = serve(w, &w->loop);
  uv_sem_post(&w->ready);
  if (w->err == 0) uv_run(&w->loop, UV_RUN_DEFAULT);
}

static worker_t *workers;
static int nthreads;
static uv_signal_t sigint, sigterm;

static void on_closed(uvg_server_t *srv, void *data) {
  (void)srv;
  (void)data;
  uv_close((uv_handle_t *)&sigint, NULL);
  uv_close((uv_handle_t *)&sigterm, NULL);
}

static void on_signal(uv_signal_t *h, int signum) {
  (void)signum;
  if (nthreads == 0) {
    uvg_server_close(workers[0].server, on_closed, h); /* again: a no-op */
    return;
  }
  if (uv_is_closing((uv_handle_t *)h)) return;
  for (int i = 0; i < nthreads; i++) uvg_post(workers[i].poster, stop_worker, &workers[i]);
  on_closed(NULL, NULL);
}

int main(int argc, char **argv) {
  int port = 50051;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
      port = atoi(argv[++i]);
    else if (strncmp(argv[i], "--port=", 7) == 0)
      port = atoi(argv[i] + 7);
    else if (strcmp(argv[i], "--reuseport") == 0)
      reuseport = 1;
    else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
      nthreads = atoi(argv[++i]);
    else if (strcmp(argv[i], "--window") == 0 && i + 1 < argc)
      window = (uint32_t)strtoul(argv[++i], NULL, 10);
    else {
      fprintf(stderr, "usage: %s [--port N] [--reuseport] [--threads N] [--window B]\n",
              argv[0]);
      return 2;
    }
  }
  if (nthreads < 0 || nthreads > 64) nthreads = 0;
  if (nthreads > 1) reuseport = 1;
  /* A client that goes away mid-write must not kill the process. */
  signal(SIGPIPE, SIG_IGN);
  uv_loop_t *loop = uv_default_loop();
  workers = calloc(nthreads ? (size_t)nthreads : 1, sizeof(*workers));
  if (workers == NULL) return 1;
  int bound = port;
  if (nthreads == 0) { /* the default: the server on the main thread's loop */
    workers[0].port = port;
    if (serve(&workers[0], loop) != 0) return 1;
    bound = workers[0].port;
  }
  for (int i = 0; i < nthreads; i++) {
    worker_t *w = &workers[i];
    w->port = bound;
    uv_sem_init(&w->ready, 0);
    uv_thread_create(&w->thread, worker_main, w);
    uv_sem_wait(&w->ready);
    if (w->err != 0) return 1;
    bound = w->port; /* the others share the port the first one got */
  }
  uv_signal_init(loop, &sigint);
  uv_signal_init(loop, &sigterm);
  uv_signal_start(&sigint, on_signal, SIGINT);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  printf("listening on port %d\n", bound);
  fflush(stdout);
  uv_run(loop, UV_RUN_DEFAULT);
  int rc = 0;
  for (int i = 0; i < nthreads; i++) {
    uv_thread_join(&workers[i].thread);
    if (uv_loop_close(&workers[i].loop) != 0) rc = 1;
  }
  free(workers);
  return uv_loop_close(loop) == 0 ? rc : 1;
}

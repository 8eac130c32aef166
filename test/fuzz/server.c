/*
 * The server's whole inbound path: the input is what a client sends on one
 * connection (the HTTP/2 preface, frames, gRPC messages), written whole
 * into one end of a socket pair whose other end the server serves
 * (uvg__server_adopt), then half-closed. The bytes go through nghttp2 and
 * our callbacks to a handler that answers every kind of call: echoes,
 * custom metadata, compression, error statuses with trailers; its replies
 * go out and are read and dropped. After the client's FIN the server is
 * closed and the loop must end empty, every call having ended in exactly
 * one on_done.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "peer.h"
#include "server/server.h"
#include "serve.h"

typedef struct {
  uv_loop_t loop;
  uvg_server_t *server;
  fz_peer_t peer;
  uv_timer_t limit;
  unsigned calls, done;
  int server_closed;
} fuzz_t;

static fuzz_t *F; /* the iteration's state, for the handler */

static const uvg_metadata_t md[] = {
    {"x-fuzz", (const uint8_t *)"a,b", 3},
    {"x-fuzz-bin", (const uint8_t *)"\0\1\2\377", 4},
};

static int finished(uvg_call_t *call) {
  return uvg_call_get_data(call) != NULL;
}

static void finish(uvg_call_t *call, uvg_status_code_t code) {
  if (finished(call)) return;
  uvg_call_set_data(call, call);
  if (code == UVG_STATUS_OK) {
    uvg_call_finish(call, code, NULL, NULL, 0);
  } else {
    static const char details[] = "\x08\x05\x12\x03nah";
    uvg_status_t st = {code, "bad \xe2\x98\x83 %", (const uint8_t *)details,
                       sizeof(details) - 1};
    uvg_call_finish_status(call, &st, md, 1);
  }
}

/* How the handler answers depends on the request's first byte. */
static void answer(uvg_call_t *call, const uint8_t *msg, size_t len, int end) {
  unsigned how = len > 0 ? msg[0] % 5 : 0;
  switch (how) {
  case 1:
    uvg_call_send_headers(call, md, 2);
    break;
  case 2:
    uvg_call_set_compression(call, UVG_COMPRESS_GZIP);
    break;
  case 3:
    uvg_call_set_compression(call, UVG_COMPRESS_DEFLATE);
    break;
  case 4:
    if (end) finish(call, UVG_STATUS_INVALID_ARGUMENT);
    return;
  }
  uvg_call_send(call, msg, len, 0, NULL, NULL);
  if (end) finish(call, how == 1 ? UVG_STATUS_ABORTED : UVG_STATUS_OK);
}

static void on_call_unary(uvg_call_t *call, const uint8_t *msg, size_t len) {
  F->calls++;
  (void)uvg_call_metadata_get(call, "x-fuzz-bin");
  (void)uvg_call_time_remaining(call);
  answer(call, msg, len, 1);
}

static void on_call_sstream(uvg_call_t *call, const uint8_t *msg,
                            size_t len) {
  F->calls++;
  uvg_call_send(call, msg, len, 0, NULL, NULL);
  answer(call, msg, len, 1);
}

static void on_call_stream(uvg_call_t *call, const uint8_t *msg, size_t len) {
  (void)call;
  (void)msg;
  (void)len;
  F->calls++;
}

static void on_message_bidi(uvg_call_t *call, const uint8_t *msg, size_t len) {
  if (len > 0 && msg[0] == 'p') uvg_call_pause_reading(call, 1);
  answer(call, msg, len, 0);
}

static void on_message_cstream(uvg_call_t *call, const uint8_t *msg,
                               size_t len) {
  if (len > 0 && msg[0] == 'x') finish(call, UVG_STATUS_OUT_OF_RANGE);
}

static void on_half_close(uvg_call_t *call) {
  if (!finished(call)) uvg_call_send(call, "end", 3, 0, NULL, NULL);
  finish(call, UVG_STATUS_OK);
}

static void on_cancel(uvg_call_t *call, const uvg_status_t *status) {
  (void)status;
  finish(call, UVG_STATUS_CANCELLED);
}

static void on_done(uvg_call_t *call, const uvg_status_t *status) {
  (void)call;
  (void)status;
  F->done++;
}

static const uvg_method_t methods[] = {
    {.path = "/fuzz.S/Unary", .type = UVG_METHOD_UNARY,
     .on_call = on_call_unary, .on_cancel = on_cancel, .on_done = on_done},
    {.path = "/fuzz.S/Server", .type = UVG_METHOD_SERVER_STREAMING,
     .on_call = on_call_sstream, .on_cancel = on_cancel, .on_done = on_done},
    {.path = "/fuzz.S/Client", .type = UVG_METHOD_CLIENT_STREAMING,
     .on_call = on_call_stream, .on_message = on_message_cstream,
     .on_half_close = on_half_close, .on_cancel = on_cancel,
     .on_done = on_done},
    {.path = "/fuzz.S/Bidi", .type = UVG_METHOD_BIDI_STREAMING,
     .on_call = on_call_stream, .on_message = on_message_bidi,
     .on_half_close = on_half_close, .on_cancel = on_cancel,
     .on_done = on_done, .max_receive_message_size = 1024},
    /* the paths of the interop tests' recorded traffic */
    {.path = "/grpc.testing.TestService/UnaryCall", .type = UVG_METHOD_UNARY,
     .on_call = on_call_unary, .on_cancel = on_cancel, .on_done = on_done},
    {.path = "/grpc.testing.TestService/StreamingOutputCall",
     .type = UVG_METHOD_SERVER_STREAMING, .on_call = on_call_sstream,
     .on_cancel = on_cancel, .on_done = on_done},
    {.path = "/grpc.testing.TestService/StreamingInputCall",
     .type = UVG_METHOD_CLIENT_STREAMING, .on_call = on_call_stream,
     .on_message = on_message_cstream, .on_half_close = on_half_close,
     .on_cancel = on_cancel, .on_done = on_done},
    {.path = "/grpc.testing.TestService/FullDuplexCall",
     .type = UVG_METHOD_BIDI_STREAMING, .on_call = on_call_stream,
     .on_message = on_message_bidi, .on_half_close = on_half_close,
     .on_cancel = on_cancel, .on_done = on_done},
};

static void on_server_closed(uvg_server_t *s, void *arg) {
  (void)s;
  ((fuzz_t *)arg)->server_closed = 1;
}

/* The server answered the FIN by closing: close the server in turn. */
static void on_peer_closed(fz_peer_t *p) {
  fuzz_t *f = p->data;
  uv_close((uv_handle_t *)&f->limit, NULL);
  uvg_server_close(f->server, on_server_closed, f);
}

static void on_limit(uv_timer_t *t) {
  /* The server must answer a FIN by closing; this only keeps a wrong
   * server from hanging the run, and the abort reports it. */
  (void)t;
  fprintf(stderr, "the server did not close the connection after the FIN\n");
  abort();
}

int fz_serve(const uint8_t *data, size_t size, uvg__tls_config_t *tls,
             fz_peer_start_cb peer_start) {
  fuzz_t f;
  memset(&f, 0, sizeof(f));
  F = &f;
  if (uv_loop_init(&f.loop) != 0) abort();
  uvg_server_options_t opts;
  uvg_server_options_init(&opts);
  opts.max_concurrent_streams = 8;
  opts.max_header_list_size = 4096;
  if (uvg_server_new(&f.loop, &opts, &f.server) != 0) abort();
  if (uvg_server_register(f.server, methods,
                          sizeof(methods) / sizeof(methods[0])) != 0)
    abort();
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) abort();
  if (uvg__server_adopt(f.server, fds[0], 1, tls) != 0) abort();
  uv_timer_init(&f.loop, &f.limit);
  uv_timer_start(&f.limit, on_limit, 10000, 0);
  f.peer.data = &f;
  f.peer.in = uv_buf_init((char *)data, (unsigned)size);
  f.peer.on_closed = on_peer_closed;
  if (peer_start != NULL)
    peer_start(&f.loop, fds[1], &f.peer);
  else
    fz_peer_open(&f.peer, &f.loop, fds[1], data, size, on_peer_closed);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  if (!f.server_closed || !f.peer.closed || f.done != f.calls) {
    fprintf(stderr, "server closed %d, peer closed %d, calls %u, done %u\n",
            f.server_closed, f.peer.closed, f.calls, f.done);
    abort();
  }
  if (uv_loop_close(&f.loop) != 0) abort();
  F = NULL;
  return 0;
}

#ifndef FUZZ_SERVE_ONLY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return fz_serve(data, size, NULL, NULL);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  fz_quiet();
  return 0;
}
#endif

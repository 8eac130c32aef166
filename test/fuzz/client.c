/*
 * The client's whole inbound path: the input is what a server sends on a
 * channel's connection (SETTINGS, response headers, messages, trailers,
 * resets, GOAWAY, PING...). A channel to a unix-abstract socket the target
 * listens on starts a unary call and a bidi call; the target accepts the
 * connection, writes the input whole, half-closes, and reads and drops
 * what the client sends. Every call must end in exactly one on_status,
 * then the channel is closed and the loop must end empty. Connections the
 * channel makes after the first (reconnects) are closed at once.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "peer.h"
#include "serve.h"
#include "uvgrpc.h"

typedef struct {
  uv_loop_t loop;
  uv_poll_t listener;
  int lfd;
  fz_peer_t peer;
  fz_peer_start_cb peer_start;
  uv_timer_t limit;
  unsigned open_handles;
  uvg_channel_t *channel;
  unsigned calls, statuses;
  int channel_closed;
} fuzz_t;

static void on_handle_closed(uv_handle_t *h) {
  fuzz_t *f = h->data;
  f->open_handles--;
}

static void close_handle(fuzz_t *f, void *h) {
  ((uv_handle_t *)h)->data = f;
  uv_close(h, on_handle_closed);
}

static void on_channel_closed(uvg_channel_t *ch, void *arg) {
  fuzz_t *f = arg;
  (void)ch;
  f->channel_closed = 1;
  close_handle(f, &f->listener);
  close_handle(f, &f->limit);
  fz_peer_close(&f->peer);
}

static void call_ended(fuzz_t *f) {
  if (f->statuses >= f->calls) abort(); /* a second status for a call */
  if (++f->statuses == f->calls)
    uvg_channel_close(f->channel, on_channel_closed, f);
}

static void on_unary(const uvg_status_t *status, const uint8_t *reply,
                     size_t len, void *arg) {
  (void)status, (void)reply, (void)len;
  call_ended(arg);
}

static void on_metadata(uvg_client_call_t *call, const uvg_metadata_t *md,
                        size_t n, void *arg) {
  (void)call, (void)arg;
  for (size_t i = 0; i < n; i++)
    if (md[i].key == NULL || (md[i].value == NULL && md[i].value_len))
      abort();
}

static void on_message(uvg_client_call_t *call, const uint8_t *msg,
                       size_t len, void *arg) {
  (void)arg;
  (void)uvg_client_call_message_compressed(call);
  if (len > 0 && msg[0] == 'c')
    uvg_client_call_cancel(call);
  else
    uvg_client_call_read(call);
}

static void on_status(uvg_client_call_t *call, const uvg_status_t *status,
                      const uvg_metadata_t *trailers, size_t n, void *arg) {
  (void)call, (void)trailers, (void)n;
  if (status->message == NULL && status->code != UVG_STATUS_OK) abort();
  call_ended(arg);
}

/* The channel connects: the first connection gets the input, later ones
 * (reconnects) are closed. */
static void on_connection(uv_poll_t *h, int status, int events) {
  fuzz_t *f = h->data;
  (void)events;
  if (status != 0) abort();
  int fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd < 0) return;
  if (f->peer.open || f->peer.in.base == NULL) {
    close(fd);
    return;
  }
  if (f->peer_start != NULL)
    f->peer_start(&f->loop, fd, &f->peer);
  else
    fz_peer_open(&f->peer, &f->loop, fd, (const uint8_t *)f->peer.in.base,
                 f->peer.in.len, NULL);
}

static void on_limit(uv_timer_t *t) {
  fuzz_t *f = t->data;
  fprintf(stderr, "calls %u, statuses %u after 10 s\n", f->calls, f->statuses);
  abort();
}

static const uvg_client_call_cbs_t cbs = {on_metadata, on_message, on_status};

int fz_call(const uint8_t *data, size_t size, uvg_channel_credentials_t *creds,
            fz_peer_start_cb peer_start) {
  fuzz_t f;
  memset(&f, 0, sizeof(f));
  f.peer.data = &f;
  /* a non-NULL base even for an empty input: "not yet connected" */
  f.peer.in = uv_buf_init(size ? (char *)data : "", (unsigned)size);
  f.peer_start = peer_start;
  if (uv_loop_init(&f.loop) != 0) abort();
  f.lfd = fz_listen();
  if (uv_poll_init(&f.loop, &f.listener, f.lfd) != 0) abort();
  f.open_handles++;
  f.listener.data = &f;
  uv_poll_start(&f.listener, UV_READABLE, on_connection);
  uv_timer_init(&f.loop, &f.limit);
  f.open_handles++;
  f.limit.data = &f;
  uv_timer_start(&f.limit, on_limit, 10000, 0);

  char target[96];
  snprintf(target, sizeof(target), "unix-abstract:%s", fz_socket_name());
  uvg_channel_options_t opts;
  uvg_channel_options_init(&opts);
  opts.max_receive_message_size = 1024;
  if (creds != NULL) opts.authority = "foo.test.google.fr";
  if (uvg_channel_new(&f.loop, target,
                      creds ? creds : uvg_insecure_channel_credentials(), &opts,
                      &f.channel) != 0)
    abort();

  uvg_client_call_options_t co;
  memset(&co, 0, sizeof(co));
  co.wait_for_ready = -1;
  co.timeout_ms = 60000; /* sent as grpc-timeout; never reached */
  if (uvg_channel_unary(f.channel, "/fuzz.S/Unary", "hi", 2, &co, on_unary,
                        &f) != 0)
    abort();
  f.calls++;
  uvg_client_call_t *call;
  co.compression = UVG_COMPRESS_GZIP;
  if (uvg_client_call_start(f.channel, "/fuzz.S/Bidi", &co, &cbs, &f, &call) !=
      0)
    abort();
  f.calls++;
  uvg_client_call_send(call, "hello", 5, 0, NULL, NULL);
  uvg_client_call_half_close(call);
  uvg_client_call_read(call);

  uv_run(&f.loop, UV_RUN_DEFAULT);
  close(f.lfd);
  if (!f.channel_closed || f.statuses != f.calls || f.open_handles != 0 ||
      (f.peer.open && !f.peer.closed)) {
    fprintf(stderr, "channel closed %d, calls %u, statuses %u, handles %u\n",
            f.channel_closed, f.calls, f.statuses, f.open_handles);
    abort();
  }
  if (uv_loop_close(&f.loop) != 0) abort();
  return 0;
}

#ifndef FUZZ_CALL_ONLY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return fz_call(data, size, NULL, NULL);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  fz_quiet();
  return 0;
}
#endif

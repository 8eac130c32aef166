/*
 * tls_idle: opens N TLS connections to a greeter on 127.0.0.1 (one uvgrpc
 * channel each), makes one SayHello call on each, then keeps every
 * connection open and idle until SIGTERM/SIGINT: the TLS counterpart of
 * idleconn.c, for the RSS an idle TLS connection costs a server.
 *
 *   tls_idle PORT N REQUEST_FILE call|nocall CA_FILE SERVER_NAME
 *
 * REQUEST_FILE is the gRPC-framed HelloRequest (5-byte prefix + protobuf);
 * the server's certificate is checked against CA_FILE for SERVER_NAME.
 * Once every call has ended it prints "ready ok=K failed=F". With
 * "nocall" a channel only connects (READY: TLS and the server's SETTINGS
 * are done).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uvgrpc.h>

#define IN_FLIGHT 64 /* connections being made at once */

static uv_loop_t *loop;
static uvg_channel_t **chans;
static uvg_channel_credentials_t *creds;
static char target[64];
static uint8_t *req;
static size_t req_len;
static int total, started, ok, failed, no_call, closed;
static uv_signal_t sigterm, sigint;

static void start_next(void);

static void finished(int good) {
  good ? ok++ : failed++;
  if (ok + failed == total) {
    printf("ready ok=%d failed=%d\n", ok, failed);
    fflush(stdout);
  }
  start_next();
}

static void on_reply(const uvg_status_t *st, const uint8_t *reply, size_t len,
                     void *data) {
  (void)reply;
  (void)len;
  (void)data;
  if (st->code != UVG_STATUS_OK)
    fprintf(stderr, "tls_idle: %s: %s\n", uvg_status_code_name(st->code),
            st->message);
  finished(st->code == UVG_STATUS_OK);
}

static void on_state(uvg_channel_t *ch, uvg_connectivity_t state, void *data) {
  (void)data;
  if (state == UVG_STATE_CONNECTING || state == UVG_STATE_IDLE) {
    uvg_channel_watch_state(ch, state, on_state, NULL);
    return;
  }
  finished(state == UVG_STATE_READY);
}

static void start_next(void) {
  while (started < total && started - ok - failed < IN_FLIGHT) {
    uvg_channel_t **ch = &chans[started++];
    int rc = uvg_channel_new(loop, target, creds, NULL, ch);
    if (rc == 0 && no_call) {
      uvg_channel_state(*ch, 1);
      rc = uvg_channel_watch_state(*ch, UVG_STATE_IDLE, on_state, NULL);
    } else if (rc == 0) {
      uvg_client_call_options_t o = {.timeout_ms = 30000, .wait_for_ready = 1};
      rc = uvg_channel_unary(*ch, "/helloworld.Greeter/SayHello", req, req_len,
                             &o, on_reply, NULL);
    }
    if (rc != 0) {
      fprintf(stderr, "tls_idle: %s\n", uvg_strerror(rc));
      finished(0);
    }
  }
}

static void on_closed(uvg_channel_t *ch, void *data) {
  (void)ch;
  (void)data;
  if (++closed == started) {
    uv_close((uv_handle_t *)&sigterm, NULL);
    uv_close((uv_handle_t *)&sigint, NULL);
  }
}

static void on_signal(uv_signal_t *h, int signum) {
  (void)h;
  (void)signum;
  uv_signal_stop(&sigterm);
  uv_signal_stop(&sigint);
  for (int i = 0; i < started; i++)
    uvg_channel_close(chans[i], on_closed, NULL);
  if (started == 0) on_closed(NULL, NULL);
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr,
            "usage: %s PORT N REQUEST_FILE call|nocall CA_FILE SERVER_NAME\n",
            argv[0]);
    return 2;
  }
  snprintf(target, sizeof(target), "ipv4:127.0.0.1:%s", argv[1]);
  total = atoi(argv[2]);
  no_call = strcmp(argv[4], "nocall") == 0;
  FILE *f = fopen(argv[3], "rb");
  static uint8_t buf[1 << 16];
  size_t n = f ? fread(buf, 1, sizeof(buf), f) : 0;
  if (f) fclose(f);
  if (n < 5 || total <= 0) {
    fprintf(stderr, "tls_idle: bad request file or count\n");
    return 2;
  }
  req = buf + 5; /* the channel frames it */
  req_len = n - 5;
  uvg_tls_channel_options_t o = {.root_certs = {.file = argv[5]},
                                 .server_name_override = argv[6]};
  if (uvg_tls_channel_credentials_new(&o, &creds) != 0) return 1;
  signal(SIGPIPE, SIG_IGN);
  loop = uv_default_loop();
  chans = calloc((size_t)total, sizeof(*chans));
  uv_signal_init(loop, &sigterm);
  uv_signal_init(loop, &sigint);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  uv_signal_start(&sigint, on_signal, SIGINT);
  start_next();
  uv_run(loop, UV_RUN_DEFAULT);
  uvg_channel_credentials_release(creds);
  free(chans);
  return uv_loop_close(loop) == 0 ? 0 : 1;
}

/*
 * work_client: calls the embedding sample's work.Work service.
 *
 *   work_client --port N [--hashes K] [--rounds R]
 *
 * Sends K Hash calls at once (they run on the server's thread pool and
 * may finish in any order), then Count, and prints the replies.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uvgrpc.h>

#include "work.uvgrpc.h"

static uvg_channel_t *channel;
static int left, failed;
static const uvg_client_call_options_t opts = {.timeout_ms = 10000,
                                               .wait_for_ready = 1};

static void on_count(const uvg_status_t *st, const Work__CountReply *r,
                     void *ud) {
  (void)ud;
  if (st->code != UVG_STATUS_OK) {
    fprintf(stderr, "work_client: Count: %s\n", st->message);
    failed = 1;
  } else {
    printf("Count: %lld hashes, %lld lines, %lld ticks\n", (long long)r->hashes,
           (long long)r->lines, (long long)r->ticks);
  }
  uvg_channel_close(channel, NULL, NULL);
}

static void on_hash(const uvg_status_t *st, const Work__HashReply *r,
                    void *ud) {
  if (st->code != UVG_STATUS_OK) {
    fprintf(stderr, "work_client: Hash: %s\n", st->message);
    failed = 1;
  } else {
    printf("Hash %d: %016llx\n", (int)(intptr_t)ud,
           (unsigned long long)r->hash);
  }
  if (--left == 0) {
    Work__CountRequest req = WORK__COUNT_REQUEST__INIT;
    work__Work__Count__client_unary(channel, &req, &opts, on_count, NULL);
  }
}

int main(int argc, char **argv) {
  const char *port = NULL;
  int nhashes = 4;
  uint32_t rounds = 100000;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--port") == 0)
      port = argv[i + 1];
    else if (strcmp(argv[i], "--hashes") == 0)
      nhashes = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--rounds") == 0)
      rounds = (uint32_t)strtoul(argv[i + 1], NULL, 10);
  }
  if (port == NULL || nhashes < 1) {
    fprintf(stderr, "usage: %s --port N [--hashes K] [--rounds R]\n", argv[0]);
    return 2;
  }
  uv_loop_t *loop = uv_default_loop();
  char target[64];
  snprintf(target, sizeof(target), "127.0.0.1:%s", port);
  if (uvg_channel_new(loop, target, uvg_insecure_channel_credentials(), NULL,
                      &channel) != 0)
    return 1;
  for (int i = 0; i < nhashes; i++) {
    char text[32];
    int n = snprintf(text, sizeof(text), "block %d", i);
    Work__HashRequest req = WORK__HASH_REQUEST__INIT;
    req.data.data = (uint8_t *)text;
    req.data.len = (size_t)n;
    req.rounds = rounds;
    if (work__Work__Hash__client_unary(channel, &req, &opts, on_hash,
                                       (void *)(intptr_t)i) != 0)
      return 1;
    left++;
  }
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  return failed;
}

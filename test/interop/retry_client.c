/*
 * retry_client: the client's retries and hedging (gRFC A6) against a
 * grpcio server (retry_server.py), which fails the first attempts of a
 * call as asked and reports what each attempt carried. Run by run_case.py:
 *
 *   retry_client --server_host=127.0.0.1 --server_port=N --test_case=all
 *
 * Prints PASS/FAIL per case; exits non-zero if one failed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uvgrpc.h>

static uv_loop_t *loop;
static char target[64];
static int failures;

#define EXPECT(cond, ...)                                \
  do {                                                   \
    if (!(cond)) {                                       \
      printf("FAIL %s: ", name);                         \
      printf(__VA_ARGS__);                               \
      printf("\n");                                      \
      failures++;                                        \
      return;                                            \
    }                                                    \
  } while (0)

typedef struct {
  int done;
  uvg_status_code_t code;
  char message[160];
  char reply[160];
} result_t;

static void on_reply(const uvg_status_t *st, const uint8_t *reply, size_t len,
                     void *ud) {
  result_t *r = ud;
  r->done = 1;
  r->code = st->code;
  snprintf(r->message, sizeof(r->message), "%s", st->message ? st->message : "");
  snprintf(r->reply, sizeof(r->reply), "%.*s", (int)len, reply ? (const char *)reply : "");
}

static int closed;
static void on_closed(uvg_channel_t *ch, void *ud) {
  (void)ch;
  (void)ud;
  closed = 1;
}

/* One call of `req` on a channel with `config`; returns its duration. */
static uint64_t call(const char *config, const char *req, result_t *r) {
  uvg_channel_options_t o;
  uvg_channel_options_init(&o);
  o.default_service_config = config;
  uvg_channel_t *ch;
  memset(r, 0, sizeof(*r));
  if (uvg_channel_new(loop, target, uvg_insecure_channel_credentials(), &o, &ch) != 0) {
    r->done = 1;
    r->code = UVG_STATUS_INTERNAL;
    snprintf(r->message, sizeof(r->message), "uvg_channel_new failed");
    return 0;
  }
  /* connected first: the timing then measures the retries only */
  uvg_client_call_options_t co = {.wait_for_ready = 1, .timeout_ms = 5000};
  result_t warm = {0};
  uvg_channel_unary(ch, "/retry.Test/Call", "count none", 10, &co, on_reply, &warm);
  while (!warm.done) uv_run(loop, UV_RUN_ONCE);
  uv_update_time(loop);
  uint64_t t0 = uv_now(loop);
  uvg_channel_unary(ch, "/retry.Test/Call", req, strlen(req), &co, on_reply, r);
  while (!r->done) uv_run(loop, UV_RUN_ONCE);
  uint64_t took = uv_now(loop) - t0;
  closed = 0;
  uvg_channel_close(ch, on_closed, NULL);
  while (!closed) uv_run(loop, UV_RUN_ONCE);
  return took;
}

/* What the server saw of `key`. */
static void count(const char *key, result_t *r) {
  char req[64];
  snprintf(req, sizeof(req), "count %s", key);
  call(NULL, req, r);
}

#define RETRY(max)                                                             \
  "{\"methodConfig\": [{\"name\": [{\"service\": \"retry.Test\"}], "          \
  "\"retryPolicy\": {\"maxAttempts\": " #max ", \"initialBackoff\": \"0.05s\"," \
  " \"maxBackoff\": \"0.1s\", \"backoffMultiplier\": 2,"                       \
  " \"retryableStatusCodes\": [\"UNAVAILABLE\"]}}]}"

static void retried_until_ok(void) {
  const char *name = "retried_until_ok";
  result_t r;
  call(RETRY(4), "k1 2 14 - 0", &r);
  EXPECT(r.code == UVG_STATUS_OK, "status %s: %s", uvg_status_code_name(r.code), r.message);
  /* A6: retries carry grpc-previous-rpc-attempts, the first none */
  EXPECT(strcmp(r.reply, "attempts=3 prev=-,1,2") == 0, "reply \"%s\"", r.reply);
  printf("PASS %s\n", name);
}

static void exhausted(void) {
  const char *name = "exhausted";
  result_t r;
  call(RETRY(3), "k2 9 14 - 0", &r);
  EXPECT(r.code == UVG_STATUS_UNAVAILABLE, "status %s", uvg_status_code_name(r.code));
  EXPECT(strcmp(r.message, "attempt 3 fails") == 0, "message \"%s\"", r.message);
  count("k2", &r);
  EXPECT(strncmp(r.reply, "attempts=3 ", 11) == 0, "server saw \"%s\"", r.reply);
  call(RETRY(3), "k3 9 13 - 0", &r); /* INTERNAL: not retryable */
  EXPECT(r.code == UVG_STATUS_INTERNAL, "status %s", uvg_status_code_name(r.code));
  count("k3", &r);
  EXPECT(strncmp(r.reply, "attempts=1 ", 11) == 0, "server saw \"%s\"", r.reply);
  printf("PASS %s\n", name);
}

static void pushback(void) {
  const char *name = "pushback";
  result_t r;
  uint64_t took = call(RETRY(3), "k4 1 14 300 0", &r);
  EXPECT(r.code == UVG_STATUS_OK, "status %s", uvg_status_code_name(r.code));
  EXPECT(took >= 290, "retried after %llu ms, not the 300 the server asked",
         (unsigned long long)took);
  call(RETRY(3), "k5 1 14 -1 0", &r); /* negative: stop */
  EXPECT(r.code == UVG_STATUS_UNAVAILABLE, "status %s", uvg_status_code_name(r.code));
  count("k5", &r);
  EXPECT(strncmp(r.reply, "attempts=1 ", 11) == 0, "server saw \"%s\"", r.reply);
  printf("PASS %s\n", name);
}

static void hedged(void) {
  const char *name = "hedged";
  result_t r;
  const char *config =
      "{\"methodConfig\": [{\"name\": [{\"service\": \"retry.Test\"}], "
      "\"hedgingPolicy\": {\"maxAttempts\": 2, \"hedgingDelay\": \"0.1s\"}}]}";
  uint64_t took = call(config, "k6 0 0 - 1000", &r);
  EXPECT(r.code == UVG_STATUS_OK, "status %s: %s", uvg_status_code_name(r.code), r.message);
  /* the second attempt, sent 100 ms later, answered; the first waits */
  EXPECT(strcmp(r.reply, "attempts=2 prev=-,1") == 0, "reply \"%s\"", r.reply);
  EXPECT(took >= 90 && took < 900, "took %llu ms", (unsigned long long)took);
  /* and was cancelled: grpcio's handler saw it go */
  for (int i = 0; i < 200; i++) { /* grpcio notices within a few polls */
    count("k6", &r);
    if (strcmp(r.reply, "attempts=2 cancelled=1") == 0) break;
  }
  EXPECT(strcmp(r.reply, "attempts=2 cancelled=1") == 0, "server saw \"%s\"", r.reply);
  printf("PASS %s\n", name);
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *port = NULL, *test_case = "all";
  for (int i = 1; i < argc; i++) {
    if (strncmp(argv[i], "--server_host=", 14) == 0) host = argv[i] + 14;
    else if (strncmp(argv[i], "--server_port=", 14) == 0) port = argv[i] + 14;
    else if (strncmp(argv[i], "--test_case=", 12) == 0) test_case = argv[i] + 12;
  }
  if (port == NULL) {
    fprintf(stderr, "usage: %s --server_port=N [--server_host=H] [--test_case=all]\n",
            argv[0]);
    return 2;
  }
  snprintf(target, sizeof(target), "%s:%s", host, port);
  loop = uv_default_loop();
  static const struct {
    const char *name;
    void (*fn)(void);
  } cases[] = {{"retried_until_ok", retried_until_ok},
               {"exhausted", exhausted},
               {"pushback", pushback},
               {"hedged", hedged}};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
    if (strcmp(test_case, "all") == 0 || strcmp(test_case, cases[i].name) == 0)
      cases[i].fn();
  /* every channel closed: nothing may be left on the loop */
  if (uv_loop_close(loop) != 0) {
    printf("FAIL: handles left on the loop\n");
    failures++;
  }
  return failures ? 1 : 0;
}

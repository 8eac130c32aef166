/* gRFC A6 retries and hedging: the backoff bound random(0, min(initial *
 * multiplier^(n-1), max)), grpc-retry-pushback-ms, throttling with exact
 * thousandths, and the verdict each ended attempt gets. */
#include "client/retry.h"

#include <stdint.h>
#include <stdlib.h>

#include "test.h"

/* A random source that always returns *arg. */
static uint64_t fixed_rand(void *arg) {
  return *(uint64_t *)arg;
}

static uint64_t lowest = 0, highest = UINT64_MAX, middle = UINT64_C(1) << 63;

static uvg__duration_t dur(uint64_t s, uint32_t ns) {
  uvg__duration_t d = {s, ns};
  return d;
}

/* A6's example: maxAttempts 4, 0.1 s, 1 s, x2, UNAVAILABLE. */
static uvg__retry_policy_t a6_policy(void) {
  uvg__retry_policy_t p = {0};
  p.max_attempts = 4;
  p.initial_backoff = dur(0, 100000000);
  p.max_backoff = dur(1, 0);
  p.backoff_multiplier = 2;
  p.retryable_codes = 1u << UVG_STATUS_UNAVAILABLE;
  return p;
}

static const uvg__pushback_t no_pushback = {UVG__PUSHBACK_NONE, 0};
static const uvg__pushback_t stop_pushback = {UVG__PUSHBACK_STOP, 0};
static uvg__pushback_t pushback_ms(uint32_t ms) {
  uvg__pushback_t p = {UVG__PUSHBACK_DELAY, ms};
  return p;
}

/* ---- backoff ---- */

/* The bound for n = 1, 2, ...: 100, 200, 400, 800 ms, then maxBackoff; the
 * highest draw reaches it, the lowest is 0, the middle half of it. */
static void test_backoff_bounds(void) {
  uvg__retry_policy_t p = a6_policy();
  static const uint64_t bound[] = {100, 100, 200, 400, 800, 1000, 1000, 1000};
  for (uint32_t n = 0; n < UVG__ARRAY_SIZE(bound); n++) {
    CHECK_EQ(uvg__retry_backoff_ms(&p, n, fixed_rand, &highest), bound[n]);
    CHECK_EQ(uvg__retry_backoff_ms(&p, n, fixed_rand, &lowest), 0);
    CHECK_EQ(uvg__retry_backoff_ms(&p, n, fixed_rand, &middle), bound[n] / 2);
  }
  CHECK_EQ(uvg__retry_backoff_ms(&p, 1000000, fixed_rand, &highest), 1000);
  CHECK_EQ(uvg__retry_backoff_ms(&p, UINT32_MAX, fixed_rand, &highest), 1000);
}

static void test_backoff_shapes(void) {
  uvg__retry_policy_t p = a6_policy();
  /* A multiplier below 1 shrinks the bound. */
  p.initial_backoff = dur(1, 0);
  p.max_backoff = dur(10, 0);
  p.backoff_multiplier = 0.5;
  CHECK_EQ(uvg__retry_backoff_ms(&p, 1, fixed_rand, &highest), 1000);
  CHECK_EQ(uvg__retry_backoff_ms(&p, 2, fixed_rand, &highest), 500);
  CHECK_EQ(uvg__retry_backoff_ms(&p, 3, fixed_rand, &highest), 250);
  CHECK_EQ(uvg__retry_backoff_ms(&p, 60, fixed_rand, &highest), 0);
  /* An initial backoff above the maximum: the maximum. */
  p.initial_backoff = dur(10, 0);
  p.max_backoff = dur(1, 0);
  p.backoff_multiplier = 2;
  CHECK_EQ(uvg__retry_backoff_ms(&p, 1, fixed_rand, &highest), 1000);
  /* A fractional multiplier: 1000 * 1.5^(n-1). */
  p.initial_backoff = dur(1, 0);
  p.max_backoff = dur(100, 0);
  p.backoff_multiplier = 1.5;
  CHECK_EQ(uvg__retry_backoff_ms(&p, 2, fixed_rand, &highest), 1500);
  CHECK_EQ(uvg__retry_backoff_ms(&p, 3, fixed_rand, &highest), 2250);
  CHECK_EQ(uvg__retry_backoff_ms(&p, 4, fixed_rand, &highest), 3375);
  /* Below a millisecond: rounded to the nearest. */
  p.initial_backoff = dur(0, 400000); /* 0.4 ms */
  p.max_backoff = dur(0, 1500000);    /* 1.5 ms */
  p.backoff_multiplier = 2;
  CHECK_EQ(uvg__retry_backoff_ms(&p, 1, fixed_rand, &highest), 0);
  CHECK_EQ(uvg__retry_backoff_ms(&p, 2, fixed_rand, &highest), 1); /* 0.8 */
  CHECK_EQ(uvg__retry_backoff_ms(&p, 3, fixed_rand, &highest), 2); /* 1.5 */
  /* The largest durations and a multiplier that overflows a double. */
  p.initial_backoff = dur(UVG__DURATION_MAX_SECONDS, 999999999);
  p.max_backoff = dur(UVG__DURATION_MAX_SECONDS, 999999999);
  p.backoff_multiplier = 1e300;
  CHECK_EQ(uvg__retry_backoff_ms(&p, 5, fixed_rand, &highest),
           UVG__DURATION_MAX_SECONDS * 1000 + 1000);
  CHECK_EQ(uvg__retry_backoff_ms(&p, 5, fixed_rand, &lowest), 0);
}

/* Draws from the library's generator stay in [0, bound] and spread over
 * it. */
static void test_backoff_spread(void) {
  uvg__retry_policy_t p = a6_policy();
  int out = 0, low = 0, high = 0;
  double sum = 0;
  for (int i = 0; i < 10000; i++) {
    uint64_t d = uvg__retry_backoff_ms(&p, 3, NULL, NULL); /* bound 400 */
    out += d > 400;
    low += d < 40;
    high += d > 360;
    sum += (double)d;
  }
  CHECK_EQ(out, 0);
  CHECK(low > 700 && low < 1300);
  CHECK(high > 700 && high < 1300);
  CHECK(sum / 10000 > 190 && sum / 10000 < 210);
}

static int rand_calls;
static uint64_t counting_rand(void *arg) {
  CHECK(arg == &rand_calls);
  rand_calls++;
  return UINT64_MAX;
}

/* ---- pushback ---- */

static uvg__pushback_t pb(const char *s) {
  return uvg__pushback_parse((const uint8_t *)s, strlen(s));
}

static void test_pushback_parse(void) {
  static const struct {
    const char *s;
    uint32_t ms;
  } delay[] = {{"0", 0},
               {"1", 1},
               {"100", 100},
               {"2147483647", 2147483647u},
               {"007", 7},
               {"-0", 0},
               {"0000000000000000000000001", 1}};
  for (size_t i = 0; i < UVG__ARRAY_SIZE(delay); i++) {
    uvg__pushback_t p = pb(delay[i].s);
    CHECK_EQ(p.kind, UVG__PUSHBACK_DELAY);
    CHECK_EQ(p.ms, delay[i].ms);
  }
  /* A6: "negative or unparseble" is "do not retry". */
  static const char *const stop[] = {"-1",
                                     "-2147483648",
                                     "-99999999999",
                                     "",
                                     "-",
                                     "+1",
                                     " 1",
                                     "1 ",
                                     "1.5",
                                     "1e3",
                                     "abc",
                                     "10,20",
                                     "2147483648",
                                     "99999999999999999999999",
                                     "0x10",
                                     "1ms"};
  for (size_t i = 0; i < UVG__ARRAY_SIZE(stop); i++) {
    uvg__pushback_t p = pb(stop[i]);
    CHECK_EQ(p.kind, UVG__PUSHBACK_STOP);
    CHECK_EQ(p.ms, 0);
  }
  /* The length bounds the value. */
  uvg__pushback_t p = uvg__pushback_parse((const uint8_t *)"1234", 2);
  CHECK(p.kind == UVG__PUSHBACK_DELAY && p.ms == 12);
  p = uvg__pushback_parse(NULL, 0);
  CHECK_EQ(p.kind, UVG__PUSHBACK_STOP);
}

static void test_pushback_metadata(void) {
  uvg_metadata_t md[] = {
      {"x-a", (const uint8_t *)"1", 1},
      {"grpc-retry-pushback-ms", (const uint8_t *)"250", 3},
      {"grpc-retry-pushback-ms-bin", (const uint8_t *)"\x01", 1},
      {"grpc-retry-pushback-ms", (const uint8_t *)"300", 3},
      {"grpc-retry-pushback-ms", (const uint8_t *)"-5", 2},
  };
  uvg__pushback_t p = uvg__pushback_from_metadata(md, 0);
  CHECK(p.kind == UVG__PUSHBACK_NONE && p.ms == 0);
  p = uvg__pushback_from_metadata(md, 1);
  CHECK_EQ(p.kind, UVG__PUSHBACK_NONE);
  p = uvg__pushback_from_metadata(md, 3);
  CHECK(p.kind == UVG__PUSHBACK_DELAY && p.ms == 250);
  /* several values: do not retry */
  p = uvg__pushback_from_metadata(md, 4);
  CHECK_EQ(p.kind, UVG__PUSHBACK_STOP);
  p = uvg__pushback_from_metadata(md + 4, 1);
  CHECK_EQ(p.kind, UVG__PUSHBACK_STOP);
  p = uvg__pushback_from_metadata(NULL, 0);
  CHECK_EQ(p.kind, UVG__PUSHBACK_NONE);
}

/* ---- throttling ---- */

/* A6's example, maxTokens 10 and tokenRatio 0.1: the threshold is 5
 * tokens, and at 5 retries stop. */
static void test_throttle_a6(void) {
  uvg__retry_throttle_t t;
  uvg__retry_throttle_init(&t, 10000, 100);
  CHECK_EQ(t.milli, 10000);
  CHECK(uvg__retry_throttle_allows(&t));
  for (int i = 0; i < 4; i++) uvg__retry_throttle_failure(&t);
  CHECK_EQ(t.milli, 6000);
  CHECK(uvg__retry_throttle_allows(&t));
  uvg__retry_throttle_failure(&t);
  CHECK_EQ(t.milli, 5000); /* "less than or equal to the threshold" */
  CHECK(!uvg__retry_throttle_allows(&t));
  uvg__retry_throttle_success(&t);
  CHECK_EQ(t.milli, 5100); /* "rises over the threshold" */
  CHECK(uvg__retry_throttle_allows(&t));
  uvg__retry_throttle_failure(&t);
  CHECK_EQ(t.milli, 4100);
  CHECK(!uvg__retry_throttle_allows(&t));
  /* The floor is 0. */
  for (int i = 0; i < 20; i++) uvg__retry_throttle_failure(&t);
  CHECK_EQ(t.milli, 0);
  /* From 0, fifty successes of 0.1 make exactly 5.000 (a double adding
   * 0.1 fifty times would not), still throttled; the 51st lifts it. */
  for (int i = 0; i < 50; i++) uvg__retry_throttle_success(&t);
  CHECK_EQ(t.milli, 5000);
  CHECK(!uvg__retry_throttle_allows(&t));
  uvg__retry_throttle_success(&t);
  CHECK(uvg__retry_throttle_allows(&t));
  /* The ceiling is maxTokens. */
  for (int i = 0; i < 100; i++) uvg__retry_throttle_success(&t);
  CHECK_EQ(t.milli, 10000);
  /* "the client's ratio of failures to successes exceeds ~10%": one
   * failure per ten successes holds the count steady. */
  for (int round = 0; round < 100; round++) {
    uvg__retry_throttle_failure(&t);
    for (int i = 0; i < 10; i++) uvg__retry_throttle_success(&t);
  }
  CHECK_EQ(t.milli, 10000);
  for (int round = 0; round < 100; round++) {
    uvg__retry_throttle_failure(&t);
    uvg__retry_throttle_failure(&t);
    for (int i = 0; i < 10; i++) uvg__retry_throttle_success(&t);
  }
  CHECK(!uvg__retry_throttle_allows(&t));
}

/* An odd maximum: the threshold is exactly half, not rounded. */
static void test_throttle_threshold(void) {
  uvg__retry_throttle_t t;
  uvg__retry_throttle_init(&t, 3000, 500); /* threshold 1.5 */
  uvg__retry_throttle_failure(&t);         /* 2 */
  CHECK(uvg__retry_throttle_allows(&t));
  uvg__retry_throttle_failure(&t); /* 1 */
  CHECK(!uvg__retry_throttle_allows(&t));
  uvg__retry_throttle_success(&t); /* 1.5: not above */
  CHECK_EQ(t.milli, 1500);
  CHECK(!uvg__retry_throttle_allows(&t));
  uvg__retry_throttle_success(&t); /* 2 */
  CHECK(uvg__retry_throttle_allows(&t));

  uvg__retry_throttle_init(&t, 1, 1); /* maxTokens 0.001 */
  CHECK(uvg__retry_throttle_allows(&t));
  uvg__retry_throttle_failure(&t);
  CHECK_EQ(t.milli, 0);
  CHECK(!uvg__retry_throttle_allows(&t));

  uvg__retry_throttle_init(&t, 1000000, 1000000); /* the largest values */
  for (int i = 0; i < 600; i++) uvg__retry_throttle_failure(&t);
  CHECK(!uvg__retry_throttle_allows(&t));
  uvg__retry_throttle_success(&t);
  CHECK_EQ(t.milli, 1000000);

  /* No throttling: a NULL throttle, or one never set. */
  CHECK(uvg__retry_throttle_allows(NULL));
  uvg__retry_throttle_success(NULL);
  uvg__retry_throttle_failure(NULL);
  uvg__retry_throttle_t none = {0};
  for (int i = 0; i < 5; i++) uvg__retry_throttle_failure(&none);
  CHECK(uvg__retry_throttle_allows(&none));
}

static void test_throttle_update(void) {
  uvg__retry_throttle_t t;
  uvg__retry_throttle_init(&t, 10000, 100);
  for (int i = 0; i < 4; i++) uvg__retry_throttle_failure(&t); /* 6 of 10 */
  uvg__retry_throttle_update(&t, 20000, 500);
  CHECK_EQ(t.milli, 12000); /* 6/10 of 20 */
  CHECK_EQ(t.max_milli, 20000);
  CHECK_EQ(t.ratio_milli, 500);
  uvg__retry_throttle_update(&t, 3000, 500);
  CHECK_EQ(t.milli, 1800);
  CHECK(uvg__retry_throttle_allows(&t));
  /* From a struct that never throttled: full. */
  uvg__retry_throttle_t none = {0};
  uvg__retry_throttle_update(&none, 7000, 10);
  CHECK(none.milli == 7000 && none.max_milli == 7000 && none.ratio_milli == 10);
}

/* ---- retry decisions ---- */

/* A6's policy against UNAVAILABLE every time: retries after the backoff
 * for n = 1, 2, 3, then maxAttempts is reached. */
static void test_decide_sequence(void) {
  uvg__retry_policy_t p = a6_policy();
  uvg__retry_t r;
  uvg__retry_init(&r, &p, fixed_rand, &highest);
  CHECK_EQ(r.attempts, 1);
  uint64_t delay = 99;
  static const uint64_t want[] = {100, 200, 400};
  for (int i = 0; i < 3; i++) {
    CHECK_EQ(uvg__retry_decide(&r, UVG_STATUS_UNAVAILABLE, 0, no_pushback, NULL,
                               &delay),
             UVG__RETRY_AFTER_DELAY);
    CHECK_EQ(delay, want[i]);
    CHECK_EQ(r.attempts, (uint32_t)i + 2);
  }
  CHECK_EQ(uvg__retry_decide(&r, UVG_STATUS_UNAVAILABLE, 0, no_pushback, NULL,
                             &delay),
           UVG__RETRY_EXHAUSTED);
  CHECK_EQ(delay, 0);
  CHECK_EQ(r.attempts, 4);
  /* A pushback delay does not go past maxAttempts either. */
  CHECK_EQ(uvg__retry_decide(&r, UVG_STATUS_UNAVAILABLE, 0, pushback_ms(5),
                             NULL, &delay),
           UVG__RETRY_EXHAUSTED);
  /* ... and the OK of the last attempt is a success. */
  CHECK_EQ(uvg__retry_decide(&r, UVG_STATUS_OK, 0, no_pushback, NULL, &delay),
           UVG__RETRY_SUCCEEDED);

  /* maxAttempts 2: one retry. */
  p.max_attempts = 2;
  uvg__retry_init(&r, &p, fixed_rand, &lowest);
  CHECK_EQ(uvg__retry_decide(&r, UVG_STATUS_UNAVAILABLE, 0, no_pushback, NULL,
                             &delay),
           UVG__RETRY_AFTER_DELAY);
  CHECK_EQ(delay, 0);
  CHECK_EQ(uvg__retry_decide(&r, UVG_STATUS_UNAVAILABLE, 0, no_pushback, NULL,
                             &delay),
           UVG__RETRY_EXHAUSTED);
}

/* Each rule, with what it does to the throttle (10 tokens, ratio 0.1). */
static void test_decide_rules(void) {
  uvg__retry_policy_t p = a6_policy();
  p.retryable_codes |= 1u << UVG_STATUS_RESOURCE_EXHAUSTED;
  uvg__retry_throttle_t t;
  uvg__retry_t r;
  uint64_t delay;

  /* OK: a success. */
  uvg__retry_throttle_init(&t, 10000, 100);
  t.milli = 7000;
  uvg__retry_init(&r, &p, fixed_rand, &highest);
  CHECK_EQ(uvg__retry_decide(&r, UVG_STATUS_OK, 0, no_pushback, &t, &delay),
           UVG__RETRY_SUCCEEDED);
  CHECK_EQ(t.milli, 7100);
  CHECK_EQ(r.attempts, 1);

  /* A code outside retryableStatusCodes: no retry, not counted, even with
   * a pushback delay. */
  static const int fatal[] = {UVG_STATUS_INVALID_ARGUMENT,
                              UVG_STATUS_INTERNAL,
                              UVG_STATUS_CANCELLED,
                              UVG_STATUS_DEADLINE_EXCEEDED,
                              99,
                              -1};
  for (size_t i = 0; i < UVG__ARRAY_SIZE(fatal); i++) {
    CHECK_EQ(uvg__retry_decide(&r, fatal[i], 0, no_pushback, &t, &delay),
             UVG__RETRY_FATAL);
    CHECK_EQ(uvg__retry_decide(&r, fatal[i], 0, pushback_ms(10), &t, &delay),
             UVG__RETRY_FATAL);
  }
  CHECK_EQ(t.milli, 7100);
  CHECK_EQ(r.attempts, 1);

  /* Pushback STOP: no retry and a failure, whatever the code. */
  CHECK_EQ(uvg__retry_decide(&r, UVG_STATUS_UNAVAILABLE, 0, stop_pushback, &t,
                             &delay),
           UVG__RETRY_PUSHBACK_STOP);
  CHECK_EQ(t.milli, 6100);
  CHECK_EQ(uvg__retry_decide(&r, UVG_STATUS_INVALID_ARGUMENT, 0, stop_pushback,
                             &t, &delay),
           UVG__RETRY_PUSHBACK_STOP);
  CHECK_EQ(t.milli, 5100);
  /* ... but an OK stays a success. */
  CHECK_EQ(uvg__retry_decide(&r, UVG_STATUS_OK, 0, stop_pushback, &t, &delay),
           UVG__RETRY_SUCCEEDED);
  CHECK_EQ(t.milli, 5200);

  /* Committed: no retry, but still a failure. */
  CHECK_EQ(
      uvg__retry_decide(&r, UVG_STATUS_UNAVAILABLE, 1, no_pushback, &t, &delay),
      UVG__RETRY_THROTTLED); /* 4.2 tokens: throttled comes first */
  CHECK_EQ(t.milli, 4200);
  t.milli = 10000;
  CHECK_EQ(uvg__retry_decide(&r, UVG_STATUS_UNAVAILABLE, 1, pushback_ms(3), &t,
                             &delay),
           UVG__RETRY_COMMITTED);
  CHECK_EQ(t.milli, 9000);
  CHECK_EQ(r.attempts, 1);

  /* Throttled with attempts left: 6 tokens, the failure makes 5. */
  t.milli = 6000;
  CHECK_EQ(uvg__retry_decide(&r, UVG_STATUS_RESOURCE_EXHAUSTED, 0, no_pushback,
                             &t, &delay),
           UVG__RETRY_THROTTLED);
  CHECK_EQ(t.milli, 5000);
  CHECK_EQ(delay, 0);
  t.milli = 6001;
  CHECK_EQ(uvg__retry_decide(&r, UVG_STATUS_RESOURCE_EXHAUSTED, 0, no_pushback,
                             &t, &delay),
           UVG__RETRY_AFTER_DELAY);
  CHECK_EQ(delay, 100);

  /* No policy: nothing retries; OK and pushback STOP still count. */
  uvg__retry_init(&r, NULL, NULL, NULL);
  t.milli = 8000;
  CHECK_EQ(
      uvg__retry_decide(&r, UVG_STATUS_UNAVAILABLE, 0, no_pushback, &t, &delay),
      UVG__RETRY_NO_POLICY);
  CHECK_EQ(uvg__retry_decide(&r, UVG_STATUS_UNAVAILABLE, 0, pushback_ms(1), &t,
                             &delay),
           UVG__RETRY_NO_POLICY);
  CHECK_EQ(t.milli, 8000);
  CHECK_EQ(uvg__retry_decide(&r, UVG_STATUS_OK, 0, no_pushback, &t, &delay),
           UVG__RETRY_SUCCEEDED);
  CHECK_EQ(t.milli, 8100);
  CHECK_EQ(uvg__retry_decide(&r, UVG_STATUS_UNAVAILABLE, 0, stop_pushback, &t,
                             &delay),
           UVG__RETRY_PUSHBACK_STOP);
  CHECK_EQ(t.milli, 7100);
}

/* A6: "When a client receives an explicit pushback response [...] it will
 * retry after exactly that delay. For subsequent retries, the delay period
 * will be reset to the initialBackoff setting". */
static void test_decide_pushback_resets_backoff(void) {
  uvg__retry_policy_t p = a6_policy();
  p.max_attempts = 5;
  uvg__retry_t r;
  uvg__retry_init(&r, &p, fixed_rand, &highest);
  uint64_t delay;
  const int U = UVG_STATUS_UNAVAILABLE;
  CHECK_EQ(uvg__retry_decide(&r, U, 0, no_pushback, NULL, &delay),
           UVG__RETRY_AFTER_DELAY);
  CHECK_EQ(delay, 100); /* n = 1 */
  CHECK_EQ(uvg__retry_decide(&r, U, 0, no_pushback, NULL, &delay),
           UVG__RETRY_AFTER_DELAY);
  CHECK_EQ(delay, 200); /* n = 2 */
  CHECK_EQ(uvg__retry_decide(&r, U, 0, pushback_ms(1234), NULL, &delay),
           UVG__RETRY_AFTER_DELAY);
  CHECK_EQ(delay, 1234); /* exactly, above maxBackoff too */
  CHECK_EQ(uvg__retry_decide(&r, U, 0, no_pushback, NULL, &delay),
           UVG__RETRY_AFTER_DELAY);
  CHECK_EQ(delay, 100); /* n = 1 again */
  CHECK_EQ(r.attempts, 5);
  CHECK_EQ(uvg__retry_decide(&r, U, 0, no_pushback, NULL, &delay),
           UVG__RETRY_EXHAUSTED);

  /* A pushback of 0 retries at once. */
  uvg__retry_init(&r, &p, fixed_rand, &highest);
  CHECK_EQ(uvg__retry_decide(&r, U, 0, pushback_ms(0), NULL, &delay),
           UVG__RETRY_AFTER_DELAY);
  CHECK_EQ(delay, 0);

  /* The random source is the call's, asked once per backoff, never for a
   * pushback. */
  rand_calls = 0;
  uvg__retry_init(&r, &p, counting_rand, &rand_calls);
  (void)uvg__retry_decide(&r, U, 0, no_pushback, NULL, &delay);
  (void)uvg__retry_decide(&r, U, 0, pushback_ms(7), NULL, &delay);
  (void)uvg__retry_decide(&r, U, 0, no_pushback, NULL, &delay);
  CHECK_EQ(rand_calls, 2);
}

/* Calls of one channel share its throttle: with A6's 10 tokens and a
 * server failing everything, the first four calls retry and use up their
 * attempts; the fifth failure reaches the threshold. */
static void test_decide_shared_throttle(void) {
  uvg__retry_policy_t p = a6_policy();
  p.max_attempts = 2;
  uvg__retry_throttle_t t;
  uvg__retry_throttle_init(&t, 10000, 100);
  uint64_t delay;
  uvg__retry_t a, b, c;
  uvg__retry_init(&a, &p, fixed_rand, &lowest);
  uvg__retry_init(&b, &p, fixed_rand, &lowest);
  uvg__retry_init(&c, &p, fixed_rand, &lowest);
  const int U = UVG_STATUS_UNAVAILABLE;
  CHECK_EQ(uvg__retry_decide(&a, U, 0, no_pushback, &t, &delay),
           UVG__RETRY_AFTER_DELAY); /* 9 */
  CHECK_EQ(uvg__retry_decide(&b, U, 0, no_pushback, &t, &delay),
           UVG__RETRY_AFTER_DELAY); /* 8 */
  CHECK_EQ(uvg__retry_decide(&a, U, 0, no_pushback, &t, &delay),
           UVG__RETRY_EXHAUSTED); /* 7 */
  CHECK_EQ(uvg__retry_decide(&b, U, 0, no_pushback, &t, &delay),
           UVG__RETRY_EXHAUSTED); /* 6 */
  CHECK_EQ(uvg__retry_decide(&c, U, 0, no_pushback, &t, &delay),
           UVG__RETRY_THROTTLED); /* 5 */
  CHECK_EQ(t.milli, 5000);
  /* A success elsewhere on the channel lifts it over the threshold, but
   * a call's own failure counts before its retry is considered: at 6.1
   * tokens a failing call retries, at 5.1 it does not. */
  uvg__retry_init(&c, &p, fixed_rand, &lowest);
  CHECK_EQ(uvg__retry_decide(&c, UVG_STATUS_OK, 0, no_pushback, &t, &delay),
           UVG__RETRY_SUCCEEDED);
  CHECK_EQ(t.milli, 5100);
  CHECK(uvg__retry_throttle_allows(&t));
  uvg__retry_init(&c, &p, fixed_rand, &lowest);
  CHECK_EQ(uvg__retry_decide(&c, U, 0, no_pushback, &t, &delay),
           UVG__RETRY_THROTTLED);                               /* 4.1 */
  for (int i = 0; i < 20; i++) uvg__retry_throttle_success(&t); /* 6.1 */
  uvg__retry_init(&c, &p, fixed_rand, &lowest);
  CHECK_EQ(uvg__retry_decide(&c, U, 0, no_pushback, &t, &delay),
           UVG__RETRY_AFTER_DELAY); /* 5.1 */
  CHECK_EQ(t.milli, 5100);
}

/* From the parsed config to the decision. */
static int any_policy(const char *name, const char *config, void *arg) {
  (void)name;
  (void)config;
  (void)arg;
  return 1;
}

static void test_decide_from_config(void) {
  const char *json =
      "{\"retryThrottling\": {\"maxTokens\": 10, \"tokenRatio\": 0.1},"
      " \"methodConfig\": [{\"name\": [{\"service\": \"pkg.Echo\"}],"
      " \"retryPolicy\": {\"maxAttempts\": 7, \"initialBackoff\": \"0.05s\","
      " \"maxBackoff\": \"0.3s\", \"backoffMultiplier\": 3,"
      " \"retryableStatusCodes\": [\"unavailable\", 8]}}]}";
  char err[256];
  uvg__service_config_t *sc;
  CHECK_EQ(uvg__service_config_parse(json, strlen(json), any_policy, NULL, &sc,
                                     err, sizeof(err)),
           0);
  const uvg__method_config_t *m =
      uvg__service_config_method(sc, "/pkg.Echo/Say");
  CHECK(m != NULL && m->policy == UVG__POLICY_RETRY);
  uvg__retry_throttle_t t;
  uvg__retry_throttle_init(&t, sc->max_milli_tokens, sc->milli_token_ratio);
  uvg__retry_t r;
  uvg__retry_init(&r, &m->retry, fixed_rand, &highest);
  uint64_t delay;
  static const uint64_t want[] = {50, 150, 300, 300};
  for (int i = 0; i < 4; i++) {
    CHECK_EQ(uvg__retry_decide(&r, UVG_STATUS_RESOURCE_EXHAUSTED, 0,
                               no_pushback, &t, &delay),
             UVG__RETRY_AFTER_DELAY);
    CHECK_EQ(delay, want[i]);
  }
  /* maxAttempts 7 reads as 5 */
  CHECK_EQ(
      uvg__retry_decide(&r, UVG_STATUS_UNAVAILABLE, 0, no_pushback, &t, &delay),
      UVG__RETRY_THROTTLED); /* the fifth failure: 5 tokens */
  CHECK_EQ(r.attempts, 5);
  uvg__service_config_unref(sc);
}

static void test_verdict_names(void) {
  for (int a = UVG__RETRY_SUCCEEDED; a <= UVG__RETRY_AFTER_DELAY; a++) {
    const char *na = uvg__retry_verdict_name((uvg__retry_verdict_t)a);
    CHECK(na != NULL && strcmp(na, "?") != 0);
    for (int b = a + 1; b <= UVG__RETRY_AFTER_DELAY; b++)
      CHECK(strcmp(na, uvg__retry_verdict_name((uvg__retry_verdict_t)b)) != 0);
  }
  CHECK_STR(uvg__retry_verdict_name(UVG__RETRY_THROTTLED), "throttled");
}

/* ---- hedging ---- */

/* A6's example: maxAttempts 4, hedgingDelay 0.5 s, non-fatal UNAVAILABLE,
 * INTERNAL, ABORTED. */
static uvg__hedging_policy_t a6_hedging(void) {
  uvg__hedging_policy_t p = {0};
  p.max_attempts = 4;
  p.hedging_delay = dur(0, 500000000);
  p.non_fatal_codes = 1u << UVG_STATUS_UNAVAILABLE | 1u << UVG_STATUS_INTERNAL |
                      1u << UVG_STATUS_ABORTED;
  return p;
}

/* "after 1ms there would be one outstanding RPC (the original), after
 * 501ms there would be two [...], after 1501ms there would be four": the
 * timer fires every 500 ms and three hedges go; then no more. */
static void test_hedge_schedule(void) {
  uvg__hedging_policy_t p = a6_hedging();
  uvg__hedge_t h;
  uvg__hedge_init(&h, &p);
  CHECK_EQ(h.sent, 1);
  CHECK_EQ(uvg__hedge_delay_ms(&h), 500);
  for (int i = 0; i < 3; i++)
    CHECK_EQ(uvg__hedge_next(&h, NULL), UVG__HEDGE_SEND);
  CHECK_EQ(h.sent, 4);
  CHECK_EQ(uvg__hedge_next(&h, NULL), UVG__HEDGE_DONE);
  CHECK_EQ(h.sent, 4);
  /* "0s": every attempt at once; a fraction of a ms rounds up. */
  p.hedging_delay = dur(0, 0);
  CHECK_EQ(uvg__hedge_delay_ms(&h), 0);
  p.hedging_delay = dur(0, 100);
  CHECK_EQ(uvg__hedge_delay_ms(&h), 1);
  /* A commit stops the schedule. */
  p = a6_hedging();
  uvg__hedge_init(&h, &p);
  CHECK_EQ(uvg__hedge_next(&h, NULL), UVG__HEDGE_SEND);
  uvg__hedge_commit(&h);
  CHECK_EQ(uvg__hedge_next(&h, NULL), UVG__HEDGE_DONE);
}

static void test_hedge_statuses(void) {
  uvg__hedging_policy_t p = a6_hedging();
  uvg__retry_throttle_t t;
  uvg__retry_throttle_init(&t, 10000, 100);
  t.milli = 8000;
  uvg__hedge_t h;
  uint64_t delay = 99;

  /* OK wins and counts as a success. */
  uvg__hedge_init(&h, &p);
  CHECK_EQ(uvg__hedge_on_status(&h, UVG_STATUS_OK, no_pushback, &t, &delay),
           UVG__HEDGE_WIN);
  CHECK_EQ(t.milli, 8100);
  CHECK_EQ(delay, 0);

  /* A fatal code ends the call; not counted. */
  uvg__hedge_init(&h, &p);
  CHECK_EQ(uvg__hedge_on_status(&h, UVG_STATUS_INVALID_ARGUMENT, no_pushback,
                                &t, &delay),
           UVG__HEDGE_FATAL);
  CHECK_EQ(t.milli, 8100);

  /* Non-fatal: the next hedge at once, counted as a failure. */
  uvg__hedge_init(&h, &p);
  delay = 99;
  CHECK_EQ(
      uvg__hedge_on_status(&h, UVG_STATUS_UNAVAILABLE, no_pushback, &t, &delay),
      UVG__HEDGE_NEXT_IN);
  CHECK_EQ(delay, 0);
  CHECK_EQ(t.milli, 7100);
  /* ... or after the pushback delay. */
  CHECK_EQ(uvg__hedge_on_status(&h, UVG_STATUS_ABORTED, pushback_ms(300), &t,
                                &delay),
           UVG__HEDGE_NEXT_IN);
  CHECK_EQ(delay, 300);
  CHECK_EQ(t.milli, 6100);
  /* With every attempt sent, a non-fatal status waits for the others. */
  for (int i = 0; i < 3; i++) (void)uvg__hedge_next(&h, NULL);
  CHECK_EQ(uvg__hedge_on_status(&h, UVG_STATUS_INTERNAL, pushback_ms(300), &t,
                                &delay),
           UVG__HEDGE_WAIT);
  CHECK_EQ(delay, 0);
  CHECK_EQ(t.milli, 5100);

  /* Pushback STOP: no more hedges, counted; the code decides whether the
   * others are cancelled. */
  t.milli = 8000;
  uvg__hedge_init(&h, &p);
  CHECK_EQ(uvg__hedge_on_status(&h, UVG_STATUS_UNAVAILABLE, stop_pushback, &t,
                                &delay),
           UVG__HEDGE_WAIT);
  CHECK_EQ(t.milli, 7000);
  CHECK_EQ(uvg__hedge_next(&h, NULL), UVG__HEDGE_DONE);
  CHECK_EQ(h.sent, 1);
  CHECK_EQ(
      uvg__hedge_on_status(&h, UVG_STATUS_UNAVAILABLE, no_pushback, &t, &delay),
      UVG__HEDGE_WAIT);
  uvg__hedge_init(&h, &p);
  CHECK_EQ(
      uvg__hedge_on_status(&h, UVG_STATUS_NOT_FOUND, stop_pushback, &t, &delay),
      UVG__HEDGE_FATAL);
  CHECK_EQ(t.milli, 5000);
  CHECK_EQ(uvg__hedge_on_status(&h, UVG_STATUS_OK, stop_pushback, &t, &delay),
           UVG__HEDGE_WIN);

  /* After a commit, a non-fatal status sends nothing more. */
  uvg__hedge_init(&h, &p);
  uvg__hedge_commit(&h);
  CHECK_EQ(uvg__hedge_on_status(&h, UVG_STATUS_UNAVAILABLE, no_pushback, NULL,
                                &delay),
           UVG__HEDGE_WAIT);

  /* Without nonFatalStatusCodes every failure is fatal. */
  p.non_fatal_codes = 0;
  uvg__hedge_init(&h, &p);
  CHECK_EQ(uvg__hedge_on_status(&h, UVG_STATUS_UNAVAILABLE, no_pushback, NULL,
                                &delay),
           UVG__HEDGE_FATAL);
}

/* A6: "subsequent hedged RPCs will only be sent if token_count is greater
 * than the threshold"; a throttled hedge is given up, a later one may go. */
static void test_hedge_throttled(void) {
  uvg__hedging_policy_t p = a6_hedging();
  p.max_attempts = 5;
  uvg__retry_throttle_t t;
  uvg__retry_throttle_init(&t, 10000, 100);
  uvg__hedge_t h;
  uvg__hedge_init(&h, &p);
  t.milli = 5000;
  CHECK_EQ(uvg__hedge_next(&h, &t), UVG__HEDGE_THROTTLED);
  CHECK_EQ(h.sent, 2);
  t.milli = 5001;
  CHECK_EQ(uvg__hedge_next(&h, &t), UVG__HEDGE_SEND);
  t.milli = 0;
  CHECK_EQ(uvg__hedge_next(&h, &t), UVG__HEDGE_THROTTLED);
  CHECK_EQ(uvg__hedge_next(&h, &t), UVG__HEDGE_THROTTLED);
  CHECK_EQ(h.sent, 5);
  CHECK_EQ(uvg__hedge_next(&h, &t), UVG__HEDGE_DONE);
}

int main(void) {
  RUN(test_backoff_bounds);
  RUN(test_backoff_shapes);
  RUN(test_backoff_spread);
  RUN(test_pushback_parse);
  RUN(test_pushback_metadata);
  RUN(test_throttle_a6);
  RUN(test_throttle_threshold);
  RUN(test_throttle_update);
  RUN(test_decide_sequence);
  RUN(test_decide_rules);
  RUN(test_decide_pushback_resets_backoff);
  RUN(test_decide_shared_throttle);
  RUN(test_decide_from_config);
  RUN(test_verdict_names);
  RUN(test_hedge_schedule);
  RUN(test_hedge_statuses);
  RUN(test_hedge_throttled);
  TEST_EXIT();
}

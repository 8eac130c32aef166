/* Connection backoff (grpc/grpc doc/connection-backoff.md): INITIAL_BACKOFF
 * 1 s, MULTIPLIER 1.6, JITTER 0.2, MAX_BACKOFF 120 s, MIN_CONNECT_TIMEOUT
 * 20 s; each attempt may take max(its backoff, MIN_CONNECT_TIMEOUT). */
#include <math.h>
#include <stdint.h>

#include "client/client.h"
#include "test.h"

/* A random source that always returns *arg. */
static uint64_t fixed_rand(void *arg) {
  return *(uint64_t *)arg;
}

static uint64_t lowest = 0, highest = UINT64_MAX, middle = UINT64_C(1) << 63;

static void init_jitter(uvg__backoff_t *b, double jitter) {
  uvg__backoff_params_t p;
  uvg__backoff_params_init(&p);
  p.jitter = jitter;
  CHECK_EQ(uvg__backoff_init(b, &p, fixed_rand, &middle), 0);
}

static void test_defaults(void) {
  uvg__backoff_params_t p;
  uvg__backoff_params_init(&p);
  CHECK_EQ(p.initial_ms, 1000);
  CHECK(p.multiplier == 1.6);
  CHECK(p.jitter == 0.2);
  CHECK_EQ(p.max_ms, 120000);
  CHECK_EQ(p.min_connect_timeout_ms, 20000);
  /* NULL params are the doc's values, NULL rand the library's generator. */
  uvg__backoff_t b;
  CHECK_EQ(uvg__backoff_init(&b, NULL, NULL, NULL), 0);
  CHECK(memcmp(&b.params, &p, sizeof(p)) == 0);
  double base = 1000;
  int out = 0;
  for (int i = 0; i < 100; i++) {
    uint64_t d = uvg__backoff_next(&b);
    out += (double)d < base * 0.8 - 0.5 || (double)d > base * 1.2 + 0.5;
    base = base * 1.6 < 120000 ? base * 1.6 : 120000;
  }
  CHECK_EQ(out, 0);
}

/* Without jitter: 1, 1.6, 2.56, 4.096 ... s, times 1.6 each attempt,
 * rounded to the millisecond, then 120 s for ever. */
static void test_sequence_without_jitter(void) {
  static const uint64_t want[] = {1000,   1600,   2560,   4096,  6554,
                                  10486,  16777,  26844,  42950, 68719,
                                  109951, 120000, 120000, 120000};
  uvg__backoff_t b;
  init_jitter(&b, 0);
  for (size_t i = 0; i < UVG__ARRAY_SIZE(want); i++)
    CHECK_EQ(uvg__backoff_next(&b), want[i]);
  for (int i = 0; i < 1000; i++) CHECK_EQ(uvg__backoff_next(&b), 120000);
  /* The random source is not what keeps the sequence: any draw gives the
   * same delays when jitter is 0. */
  uvg__backoff_params_t p;
  uvg__backoff_params_init(&p);
  p.jitter = 0;
  CHECK_EQ(uvg__backoff_init(&b, &p, fixed_rand, &highest), 0);
  for (size_t i = 0; i < UVG__ARRAY_SIZE(want); i++)
    CHECK_EQ(uvg__backoff_next(&b), want[i]);
}

/* The exact sequence, computed the doc's way in floating point, over many
 * attempts: the un-jittered value never drifts from initial * 1.6^n. */
static void test_sequence_matches_formula(void) {
  uvg__backoff_t b;
  init_jitter(&b, 0);
  double cur = 1000;
  int bad = 0;
  for (int i = 0; i < 40; i++) {
    uint64_t want = (uint64_t)(cur + 0.5);
    bad += uvg__backoff_next(&b) != want;
    cur = cur * 1.6 < 120000 ? cur * 1.6 : 120000;
  }
  CHECK_EQ(bad, 0);
}

/* With jitter 0.2, the lowest draw gives 0.8 times the backoff and the
 * highest 1.2 times it, the first delay included; the sequence underneath
 * is the same one. */
static void test_jitter_extremes(void) {
  static const uint64_t base[] = {1000, 1600, 2560, 4096, 6554, 10486};
  uvg__backoff_t lo, hi, mid;
  CHECK_EQ(uvg__backoff_init(&lo, NULL, fixed_rand, &lowest), 0);
  CHECK_EQ(uvg__backoff_init(&hi, NULL, fixed_rand, &highest), 0);
  CHECK_EQ(uvg__backoff_init(&mid, NULL, fixed_rand, &middle), 0);
  static const uint64_t want_lo[] = {800, 1280, 2048, 3277, 5243, 8389};
  static const uint64_t want_hi[] = {1200, 1920, 3072, 4915, 7864, 12583};
  for (size_t i = 0; i < UVG__ARRAY_SIZE(base); i++) {
    CHECK_EQ(uvg__backoff_next(&lo), want_lo[i]);
    CHECK_EQ(uvg__backoff_next(&hi), want_hi[i]);
    CHECK_EQ(uvg__backoff_next(&mid), base[i]);
  }
  /* At the cap, jitter still applies: 96 s to 144 s. */
  for (int i = 0; i < 20; i++) {
    (void)uvg__backoff_next(&lo);
    (void)uvg__backoff_next(&hi);
  }
  CHECK_EQ(uvg__backoff_next(&lo), 96000);
  CHECK_EQ(uvg__backoff_next(&hi), 144000);
}

/* Jitter 1: from no wait at all to twice the backoff. */
static void test_full_jitter(void) {
  uvg__backoff_params_t p;
  uvg__backoff_params_init(&p);
  p.jitter = 1;
  uvg__backoff_t lo, hi;
  CHECK_EQ(uvg__backoff_init(&lo, &p, fixed_rand, &lowest), 0);
  CHECK_EQ(uvg__backoff_init(&hi, &p, fixed_rand, &highest), 0);
  CHECK_EQ(uvg__backoff_next(&lo), 0);
  CHECK_EQ(uvg__backoff_next(&hi), 2000);
  CHECK_EQ(uvg__backoff_next(&lo), 0);
  CHECK_EQ(uvg__backoff_next(&hi), 3200);
}

/* Draws from the library's generator stay inside the bounds and spread
 * over them: both the lowest and the highest tenth of the range are hit. */
static void test_jitter_spread(void) {
  uvg__backoff_params_t p;
  uvg__backoff_params_init(&p);
  p.multiplier = 1; /* every delay is 1000 ms +- 20% */
  uvg__backoff_t b;
  CHECK_EQ(uvg__backoff_init(&b, &p, NULL, NULL), 0);
  int out = 0, low = 0, high = 0;
  for (int i = 0; i < 10000; i++) {
    uint64_t d = uvg__backoff_next(&b);
    out += d < 800 || d > 1200;
    low += d < 840;
    high += d > 1160;
  }
  CHECK_EQ(out, 0);
  CHECK(low > 500 && low < 1500);
  CHECK(high > 500 && high < 1500);
}

/* The injected source gets its argument. */
static int calls;
static uint64_t counting_rand(void *arg) {
  CHECK(arg == &calls);
  calls++;
  return UINT64_C(1) << 63;
}

static void test_rand_arg(void) {
  uvg__backoff_t b;
  CHECK_EQ(uvg__backoff_init(&b, NULL, counting_rand, &calls), 0);
  for (int i = 0; i < 5; i++) (void)uvg__backoff_next(&b);
  CHECK_EQ(calls, 5);
}

/* After a reset the sequence starts again at INITIAL_BACKOFF. */
static void test_reset(void) {
  uvg__backoff_t b;
  init_jitter(&b, 0);
  for (int i = 0; i < 30; i++) (void)uvg__backoff_next(&b);
  CHECK_EQ(uvg__backoff_next(&b), 120000);
  uvg__backoff_reset(&b);
  CHECK_EQ(uvg__backoff_next(&b), 1000);
  CHECK_EQ(uvg__backoff_next(&b), 1600);
  CHECK_EQ(uvg__backoff_next(&b), 2560);
  uvg__backoff_reset(&b);
  uvg__backoff_reset(&b);
  CHECK_EQ(uvg__backoff_next(&b), 1000);
}

/* Small values, as tests and local setups configure them. */
static void test_small_values(void) {
  uvg__backoff_params_t p = {.initial_ms = 10,
                             .multiplier = 2,
                             .jitter = 0,
                             .max_ms = 50,
                             .min_connect_timeout_ms = 5};
  uvg__backoff_t b;
  CHECK_EQ(uvg__backoff_init(&b, &p, NULL, NULL), 0);
  CHECK_EQ(uvg__backoff_next(&b), 10);
  CHECK_EQ(uvg__backoff_next(&b), 20);
  CHECK_EQ(uvg__backoff_next(&b), 40);
  CHECK_EQ(uvg__backoff_next(&b), 50);
  CHECK_EQ(uvg__backoff_next(&b), 50);
  CHECK_EQ(uvg__backoff_connect_timeout(&b, 50), 50);
  CHECK_EQ(uvg__backoff_connect_timeout(&b, 2), 5);

  /* 1 ms, multiplier 1: a constant backoff. */
  uvg__backoff_params_t one = {.initial_ms = 1,
                               .multiplier = 1,
                               .jitter = 0,
                               .max_ms = 1,
                               .min_connect_timeout_ms = 0};
  CHECK_EQ(uvg__backoff_init(&b, &one, NULL, NULL), 0);
  for (int i = 0; i < 10; i++) CHECK_EQ(uvg__backoff_next(&b), 1);
  CHECK_EQ(uvg__backoff_connect_timeout(&b, 1), 1);

  /* Fractions of a millisecond accumulate before rounding: 3, 4.5, 6.75. */
  uvg__backoff_params_t frac = {.initial_ms = 3,
                                .multiplier = 1.5,
                                .jitter = 0,
                                .max_ms = 100,
                                .min_connect_timeout_ms = 0};
  CHECK_EQ(uvg__backoff_init(&b, &frac, NULL, NULL), 0);
  CHECK_EQ(uvg__backoff_next(&b), 3);
  CHECK_EQ(uvg__backoff_next(&b), 5);  /* 4.5 */
  CHECK_EQ(uvg__backoff_next(&b), 7);  /* 6.75 */
  CHECK_EQ(uvg__backoff_next(&b), 10); /* 10.125 */
  CHECK_EQ(uvg__backoff_next(&b), 15); /* 15.1875 */
}

/* The doc: TryConnect(Max(current_deadline, now() + MIN_CONNECT_TIMEOUT)),
 * so an attempt gets 20 s while its backoff is shorter, and the backoff
 * (jittered, as drawn for that attempt) once it is longer. */
static void test_connect_timeout(void) {
  uvg__backoff_t b;
  init_jitter(&b, 0);
  uint64_t d;
  int n = 0;
  while ((d = uvg__backoff_next(&b)) < 20000) {
    CHECK_EQ(uvg__backoff_connect_timeout(&b, d), 20000);
    n++;
  }
  CHECK_EQ(n, 7); /* 1000 ... 16777 */
  CHECK_EQ(d, 26844);
  CHECK_EQ(uvg__backoff_connect_timeout(&b, d), 26844);
  CHECK_EQ(uvg__backoff_connect_timeout(&b, 20000), 20000);
  CHECK_EQ(uvg__backoff_connect_timeout(&b, 20001), 20001);
  CHECK_EQ(uvg__backoff_connect_timeout(&b, 144000), 144000);
  CHECK_EQ(uvg__backoff_connect_timeout(&b, 0), 20000);

  /* With the highest jitter at the cap: 144 s to connect. */
  uvg__backoff_t hi;
  CHECK_EQ(uvg__backoff_init(&hi, NULL, fixed_rand, &highest), 0);
  for (int i = 0; i < 30; i++) d = uvg__backoff_next(&hi);
  CHECK_EQ(d, 144000);
  CHECK_EQ(uvg__backoff_connect_timeout(&hi, d), 144000);
}

static void test_rejects_bad_params(void) {
  uvg__backoff_params_t good;
  uvg__backoff_params_init(&good);
  uvg__backoff_t b;
  uvg__backoff_params_t p;
#define CHECK_BAD(field, value)                                  \
  do {                                                           \
    p = good;                                                    \
    p.field = (value);                                           \
    CHECK_EQ(uvg__backoff_init(&b, &p, NULL, NULL), UVG_EINVAL); \
  } while (0)
  CHECK_BAD(initial_ms, 0);
  CHECK_BAD(max_ms, 999); /* below initial */
  CHECK_BAD(max_ms, UVG__BACKOFF_MAX_MS_LIMIT + 1);
  CHECK_BAD(multiplier, 0.99);
  CHECK_BAD(multiplier, 0);
  CHECK_BAD(multiplier, -1.6);
  CHECK_BAD(multiplier, NAN);
  CHECK_BAD(multiplier, INFINITY);
  CHECK_BAD(jitter, -0.01);
  CHECK_BAD(jitter, 1.01);
  CHECK_BAD(jitter, NAN);
#undef CHECK_BAD
  /* The edges of each range are accepted. */
  p = good;
  p.max_ms = p.initial_ms;
  CHECK_EQ(uvg__backoff_init(&b, &p, NULL, NULL), 0);
  p = good;
  p.max_ms = UVG__BACKOFF_MAX_MS_LIMIT;
  p.multiplier = 1;
  p.jitter = 1;
  p.min_connect_timeout_ms = 0;
  CHECK_EQ(uvg__backoff_init(&b, &p, NULL, NULL), 0);
}

/* The largest values: no overflow, the cap holds, jitter above it too. */
static void test_huge_values(void) {
  uvg__backoff_params_t p = {.initial_ms = UVG__BACKOFF_MAX_MS_LIMIT / 2,
                             .multiplier = 1e300,
                             .jitter = 1,
                             .max_ms = UVG__BACKOFF_MAX_MS_LIMIT,
                             .min_connect_timeout_ms = UINT64_MAX};
  uvg__backoff_t b;
  CHECK_EQ(uvg__backoff_init(&b, &p, fixed_rand, &highest), 0);
  CHECK_EQ(uvg__backoff_next(&b), UVG__BACKOFF_MAX_MS_LIMIT);
  CHECK_EQ(uvg__backoff_next(&b), UVG__BACKOFF_MAX_MS_LIMIT * 2);
  CHECK_EQ(uvg__backoff_next(&b), UVG__BACKOFF_MAX_MS_LIMIT * 2);
  CHECK(uvg__backoff_connect_timeout(&b, 5) == UINT64_MAX);
}

int main(void) {
  RUN(test_defaults);
  RUN(test_sequence_without_jitter);
  RUN(test_sequence_matches_formula);
  RUN(test_jitter_extremes);
  RUN(test_full_jitter);
  RUN(test_jitter_spread);
  RUN(test_rand_arg);
  RUN(test_reset);
  RUN(test_small_values);
  RUN(test_connect_timeout);
  RUN(test_rejects_bad_params);
  RUN(test_huge_values);
  TEST_EXIT();
}

/* gRFC A6, client retries: backoff, pushback, throttling and the decision
 * each ended attempt gets. The rules and the A6 sentences they follow are
 * written beside each function in retry.h. */
#include "retry.h"

#include <math.h>
#include <string.h>

/* ====================================================================== */
/* Backoff */

static uint64_t draw_library_random(void *arg) {
  (void)arg;
  return uvg__random();
}

/* A number uniform in [0, 1], both ends included: the top 53 bits, which
 * a double holds exactly, over their largest value. */
static double draw_unit(uvg__backoff_rand_cb rand_cb, void *rand_arg) {
  if (rand_cb == NULL) rand_cb = draw_library_random;
  uint64_t bits = rand_cb(rand_arg) >> 11;
  return (double)bits / (double)((UINT64_C(1) << 53) - 1);
}

uint64_t uvg__retry_backoff_ms(const uvg__retry_policy_t *p, uint32_t n,
                               uvg__backoff_rand_cb rand_cb, void *rand_arg) {
  double initial = uvg__duration_ms_f(&p->initial_backoff);
  double max = uvg__duration_ms_f(&p->max_backoff);
  double bound = initial * pow(p->backoff_multiplier, n > 1 ? n - 1.0 : 0.0);
  /* Also catches an overflow to infinity. The bound is then at most
   * about 3.2e14 ms, so the product below converts without overflow. */
  if (!(bound < max)) bound = max;
  return (uint64_t)(bound * draw_unit(rand_cb, rand_arg) + 0.5);
}

/* ====================================================================== */
/* Pushback */

uvg__pushback_t uvg__pushback_parse(const uint8_t *value, size_t len) {
  uvg__pushback_t stop = {UVG__PUSHBACK_STOP, 0};
  size_t i = 0;
  int negative = len > 0 && value[0] == '-';
  if (negative) i++;
  if (i == len) return stop;
  /* Signed 32-bit: magnitude up to 2^31 when negative, 2^31-1 otherwise. */
  uint64_t limit = negative ? UINT64_C(2147483648) : UINT64_C(2147483647);
  uint64_t v = 0;
  for (; i < len; i++) {
    if (value[i] < '0' || value[i] > '9') return stop;
    v = v * 10 + (uint64_t)(value[i] - '0');
    if (v > limit) return stop;
  }
  if (negative && v != 0) return stop;
  uvg__pushback_t delay = {UVG__PUSHBACK_DELAY, (uint32_t)v};
  return delay;
}

uvg__pushback_t uvg__pushback_from_metadata(const uvg_metadata_t *md,
                                            size_t n) {
  uvg__pushback_t none = {UVG__PUSHBACK_NONE, 0};
  const uvg_metadata_t *found = NULL;
  for (size_t i = 0; i < n; i++) {
    if (strcmp(md[i].key, UVG__PUSHBACK_KEY) != 0) continue;
    if (found != NULL) {
      uvg__pushback_t stop = {UVG__PUSHBACK_STOP, 0};
      return stop;
    }
    found = &md[i];
  }
  return found != NULL ? uvg__pushback_parse(found->value, found->value_len)
                       : none;
}

/* ====================================================================== */
/* Throttling */

void uvg__retry_throttle_init(uvg__retry_throttle_t *t, uint32_t max_milli,
                              uint32_t ratio_milli) {
  t->max_milli = max_milli;
  t->ratio_milli = ratio_milli;
  t->milli = max_milli;
}

void uvg__retry_throttle_update(uvg__retry_throttle_t *t, uint32_t max_milli,
                                uint32_t ratio_milli) {
  if (t->max_milli == 0) {
    uvg__retry_throttle_init(t, max_milli, ratio_milli);
    return;
  }
  t->milli = (uint32_t)((uint64_t)t->milli * max_milli / t->max_milli);
  t->max_milli = max_milli;
  t->ratio_milli = ratio_milli;
}

void uvg__retry_throttle_success(uvg__retry_throttle_t *t) {
  if (t == NULL) return;
  uint64_t v = (uint64_t)t->milli + t->ratio_milli;
  t->milli = v < t->max_milli ? (uint32_t)v : t->max_milli;
}

void uvg__retry_throttle_failure(uvg__retry_throttle_t *t) {
  if (t == NULL) return;
  t->milli = t->milli > 1000 ? t->milli - 1000 : 0;
}

int uvg__retry_throttle_allows(const uvg__retry_throttle_t *t) {
  if (t == NULL || t->max_milli == 0) return 1;
  return 2 * (uint64_t)t->milli > t->max_milli;
}

/* ====================================================================== */
/* Retries */

void uvg__retry_init(uvg__retry_t *r, const uvg__retry_policy_t *policy,
                     uvg__backoff_rand_cb rand_cb, void *rand_arg) {
  r->policy = policy;
  r->attempts = 1;
  r->since_pushback = 0;
  r->rand_cb = rand_cb;
  r->rand_arg = rand_arg;
}

uvg__retry_verdict_t uvg__retry_decide(uvg__retry_t *r, int code, int committed,
                                       uvg__pushback_t pushback,
                                       uvg__retry_throttle_t *throttle,
                                       uint64_t *delay_ms) {
  *delay_ms = 0;
  if (code == UVG_STATUS_OK) {
    uvg__retry_throttle_success(throttle);
    return UVG__RETRY_SUCCEEDED;
  }
  if (pushback.kind == UVG__PUSHBACK_STOP) {
    uvg__retry_throttle_failure(throttle);
    return UVG__RETRY_PUSHBACK_STOP;
  }
  if (r->policy == NULL) return UVG__RETRY_NO_POLICY;
  if (!uvg__code_set_has(r->policy->retryable_codes, code))
    return UVG__RETRY_FATAL;
  uvg__retry_throttle_failure(throttle);
  if (!uvg__retry_throttle_allows(throttle)) return UVG__RETRY_THROTTLED;
  if (committed) return UVG__RETRY_COMMITTED;
  if (r->attempts >= r->policy->max_attempts) return UVG__RETRY_EXHAUSTED;
  if (pushback.kind == UVG__PUSHBACK_DELAY) {
    *delay_ms = pushback.ms;
    r->since_pushback = 0;
  } else {
    *delay_ms = uvg__retry_backoff_ms(r->policy, ++r->since_pushback,
                                      r->rand_cb, r->rand_arg);
  }
  r->attempts++;
  return UVG__RETRY_AFTER_DELAY;
}

const char *uvg__retry_verdict_name(uvg__retry_verdict_t v) {
  switch (v) {
    case UVG__RETRY_SUCCEEDED:
      return "succeeded";
    case UVG__RETRY_NO_POLICY:
      return "no retry policy";
    case UVG__RETRY_FATAL:
      return "status not retryable";
    case UVG__RETRY_PUSHBACK_STOP:
      return "server pushback: do not retry";
    case UVG__RETRY_THROTTLED:
      return "throttled";
    case UVG__RETRY_COMMITTED:
      return "committed";
    case UVG__RETRY_EXHAUSTED:
      return "maxAttempts reached";
    case UVG__RETRY_AFTER_DELAY:
      return "retry";
  }
  return "?";
}

/* ====================================================================== */
/* Hedging */

void uvg__hedge_init(uvg__hedge_t *h, const uvg__hedging_policy_t *policy) {
  h->policy = policy;
  h->sent = 1;
  h->stopped = 0;
}

uint64_t uvg__hedge_delay_ms(const uvg__hedge_t *h) {
  return uvg__duration_ms(&h->policy->hedging_delay);
}

uvg__hedge_next_t uvg__hedge_next(uvg__hedge_t *h,
                                  const uvg__retry_throttle_t *throttle) {
  if (h->stopped || h->sent >= h->policy->max_attempts) return UVG__HEDGE_DONE;
  h->sent++;
  return uvg__retry_throttle_allows(throttle) ? UVG__HEDGE_SEND
                                              : UVG__HEDGE_THROTTLED;
}

void uvg__hedge_commit(uvg__hedge_t *h) {
  h->stopped = 1;
}

uvg__hedge_verdict_t uvg__hedge_on_status(uvg__hedge_t *h, int code,
                                          uvg__pushback_t pushback,
                                          uvg__retry_throttle_t *throttle,
                                          uint64_t *delay_ms) {
  *delay_ms = 0;
  int non_fatal = uvg__code_set_has(h->policy->non_fatal_codes, code);
  if (code == UVG_STATUS_OK) {
    uvg__retry_throttle_success(throttle);
    return UVG__HEDGE_WIN;
  }
  if (pushback.kind == UVG__PUSHBACK_STOP) {
    uvg__retry_throttle_failure(throttle);
    h->stopped = 1;
    return non_fatal ? UVG__HEDGE_WAIT : UVG__HEDGE_FATAL;
  }
  if (!non_fatal) return UVG__HEDGE_FATAL;
  uvg__retry_throttle_failure(throttle);
  if (h->stopped || h->sent >= h->policy->max_attempts) return UVG__HEDGE_WAIT;
  if (pushback.kind == UVG__PUSHBACK_DELAY) *delay_ms = pushback.ms;
  return UVG__HEDGE_NEXT_IN;
}

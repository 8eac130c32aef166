/* Connection backoff, grpc/grpc doc/connection-backoff.md:
 *
 *   current_backoff = INITIAL_BACKOFF
 *   current_deadline = now() + INITIAL_BACKOFF
 *   while (TryConnect(Max(current_deadline, now() + MIN_CONNECT_TIMEOUT))
 *          != SUCCESS)
 *     SleepUntil(current_deadline)
 *     current_backoff = Min(current_backoff * MULTIPLIER, MAX_BACKOFF)
 *     current_deadline = now() + current_backoff +
 *       UniformRandom(-JITTER * current_backoff, JITTER * current_backoff)
 *
 * The pseudocode leaves the first delay without jitter; we jitter every
 * delay, the first included, as gRPC C++ does (BackOff::NextAttemptDelay),
 * because the doc also requires that "connection backoffs started at the
 * same time disperse", and clients that all lost the same server fail
 * their first attempt together. (grpc-go and grpc-js keep the first delay
 * exact; grpc-js further compounds each jittered delay into the next one,
 * which we do not: jitter never moves the exponential sequence.)
 *
 * Jitter is applied after the cap, as in the pseudocode and every
 * implementation, so a delay may reach MAX_BACKOFF * (1 + JITTER). */
#include <math.h>

#include "client.h"

static uint64_t draw_library_random(void *arg) {
  (void)arg;
  return uvg__random();
}

void uvg__backoff_params_init(uvg__backoff_params_t *p) {
  p->initial_ms = UVG__BACKOFF_INITIAL_MS;
  p->multiplier = UVG__BACKOFF_MULTIPLIER;
  p->jitter = UVG__BACKOFF_JITTER;
  p->max_ms = UVG__BACKOFF_MAX_MS;
  p->min_connect_timeout_ms = UVG__BACKOFF_MIN_CONNECT_TIMEOUT_MS;
}

/* 1 when every value is in its range. A multiplier below 1 would attempt
 * "substantially more often than the above algorithm", which the doc forbids;
 * an initial backoff of 0 would never back off at all. The comparisons are
 * written so that NaN fails. */
static int check_params(const uvg__backoff_params_t *p) {
  return p->initial_ms >= 1 && p->max_ms >= p->initial_ms &&
         p->max_ms <= UVG__BACKOFF_MAX_MS_LIMIT && p->multiplier >= 1.0 &&
         isfinite(p->multiplier) && p->jitter >= 0.0 && p->jitter <= 1.0;
}

int uvg__backoff_init(uvg__backoff_t *b, const uvg__backoff_params_t *p,
                      uvg__backoff_rand_cb rand_cb, void *rand_arg) {
  if (p == NULL)
    uvg__backoff_params_init(&b->params);
  else
    b->params = *p;
  b->rand_cb = rand_cb != NULL ? rand_cb : draw_library_random;
  b->rand_arg = rand_cb != NULL ? rand_arg : NULL;
  uvg__backoff_reset(b);
  return check_params(&b->params) ? 0 : UVG_EINVAL;
}

void uvg__backoff_reset(uvg__backoff_t *b) {
  b->current_ms = (double)b->params.initial_ms;
}

/* A number uniform in [0, 1], both ends included, so that the jitter range
 * is the doc's closed [-JITTER, +JITTER]: the top 53 bits, which a double
 * holds exactly, over their largest value. */
static double draw_unit(uvg__backoff_t *b) {
  uint64_t bits = b->rand_cb(b->rand_arg) >> 11;
  return (double)bits / (double)((UINT64_C(1) << 53) - 1);
}

uint64_t uvg__backoff_next(uvg__backoff_t *b) {
  double cur = b->current_ms;
  double factor = 1.0 + b->params.jitter * (2.0 * draw_unit(b) - 1.0);
  /* cur <= 2^52 and factor <= 2: the product converts without overflow. */
  uint64_t delay = (uint64_t)(cur * factor + 0.5);
  double next = cur * b->params.multiplier;
  double max = (double)b->params.max_ms;
  b->current_ms = next < max ? next : max;
  return delay;
}

uint64_t uvg__backoff_connect_timeout(const uvg__backoff_t *b,
                                      uint64_t delay_ms) {
  uint64_t min = b->params.min_connect_timeout_ms;
  return delay_ms > min ? delay_ms : min;
}

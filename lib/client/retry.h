/*
 * Retries and hedging, gRFC A6: the arithmetic and the decisions, without
 * timers or streams. The call owns a uvg__retry_t or a uvg__hedge_t and
 * asks it what to do when an attempt ends; the channel owns the
 * uvg__retry_throttle_t all its calls share. Loop thread only (nothing
 * here locks); no allocation.
 */
#ifndef UVG_CLIENT_RETRY_H
#define UVG_CLIENT_RETRY_H

#include <stddef.h>
#include <stdint.h>

#include "client.h"
#include "service_config.h"

/* ---- backoff ---- */

/* A6: "the n-th attempt will occur at random(0,
 * min(initialBackoff*backoffMultiplier**(n-1), maxBackoff))", n = 1 for
 * the first retry (n = 0 reads as 1). Returns that delay in milliseconds,
 * rounded to the nearest: the bound times a number drawn uniformly from
 * [0, 1] (both ends included) from `rand_cb` (NULL: the library's
 * generator, uvg__random). */
uint64_t uvg__retry_backoff_ms(const uvg__retry_policy_t *p, uint32_t n,
                               uvg__backoff_rand_cb rand_cb, void *rand_arg);

/* ---- server pushback ---- */

#define UVG__PUSHBACK_KEY "grpc-retry-pushback-ms"

typedef enum {
  UVG__PUSHBACK_NONE = 0, /* no grpc-retry-pushback-ms in the trailers */
  UVG__PUSHBACK_DELAY,    /* retry, if at all, after exactly `ms` */
  UVG__PUSHBACK_STOP      /* the server asks that the call not be retried */
} uvg__pushback_kind_t;

typedef struct {
  uvg__pushback_kind_t kind;
  uint32_t ms; /* DELAY only: 0 .. 2^31-1 */
} uvg__pushback_t;

/* Reads one grpc-retry-pushback-ms value. A6: "The value is to be an ASCII
 * encoded signed 32-bit integer [...]. If the value for pushback is
 * negative or unparseble, then it will be seen as the server asking the
 * client not to retry at all." So: an optional '-' and decimal digits
 * whose value fits an int32; negative -> STOP; anything else (empty,
 * spaces, a sign '+', a fraction, a number past 2^31-1, "10,20") -> STOP.
 * Leading zeros and "-0" (which is 0) are accepted -> DELAY. */
uvg__pushback_t uvg__pushback_parse(const uint8_t *value, size_t len);
/* The pushback in trailing metadata: NONE without the key, the value's
 * reading with one entry, STOP with several (grpc-go: "Server retry
 * pushback specified multiple values; not retrying"). */
uvg__pushback_t uvg__pushback_from_metadata(const uvg_metadata_t *md, size_t n);

/* ---- throttling (per channel) ---- */

/* A6: "the gRPC client maintains a token_count variable which is
 * initially set to maxTokens and can take values between 0 and maxTokens.
 * [...] Every failed RPC will decrement the token_count by 1. Every
 * successful RPC will increment the token_count by tokenRatio. If
 * token_count is less than or equal to the threshold, defined to be
 * (maxTokens / 2), then RPCs will not be retried". Kept in thousandths of
 * a token (A6 keeps 3 decimal places of tokenRatio), so every step is
 * exact. A struct with max_milli 0 never throttles. */
typedef struct {
  uint32_t max_milli;   /* maxTokens * 1000 */
  uint32_t ratio_milli; /* tokenRatio * 1000 */
  uint32_t milli;       /* token_count * 1000: 0 .. max_milli */
} uvg__retry_throttle_t;

/* Starts full: token_count = maxTokens. Values as in the service config
 * (uvg__service_config_t max_milli_tokens, milli_token_ratio). */
void uvg__retry_throttle_init(uvg__retry_throttle_t *t, uint32_t max_milli,
                              uint32_t ratio_milli);
/* A new service config with other values: the count keeps its fraction of
 * the maximum (gRPC C++'s ServerRetryThrottleData does so, so that a
 * config push neither refills nor drains a throttled channel; A6 is
 * silent). From a struct that never throttled, as init. */
void uvg__retry_throttle_update(uvg__retry_throttle_t *t, uint32_t max_milli,
                                uint32_t ratio_milli);
void uvg__retry_throttle_success(uvg__retry_throttle_t *t);
void uvg__retry_throttle_failure(uvg__retry_throttle_t *t);
/* 1 while token_count > maxTokens / 2 (exactly: 2 * milli > max_milli),
 * or when `t` is NULL or never throttles. */
int uvg__retry_throttle_allows(const uvg__retry_throttle_t *t);

/* ---- retries (per call) ---- */

typedef struct {
  const uvg__retry_policy_t *policy; /* NULL: the method has none */
  /* Attempts made or decided so far, the first included; transparent
   * retries do not count (A6: "transparent retries do not count toward
   * the limit of configured RPC attempts"). grpc-previous-rpc-attempts of
   * an attempt is this minus 1. */
  uint32_t attempts;
  /* Retries since the last pushback: the next backoff uses n = this + 1
   * (A6: "the nth attempt since the last server pushback response"). */
  uint32_t since_pushback;
  uvg__backoff_rand_cb rand_cb;
  void *rand_arg;
} uvg__retry_t;

/* Starts the state of a call whose first attempt is about to go out.
 * `policy` (may be NULL) must outlive it: the call holds a reference on
 * the service config it came from. `rand_cb` as uvg__retry_backoff_ms(). */
void uvg__retry_init(uvg__retry_t *r, const uvg__retry_policy_t *policy,
                     uvg__backoff_rand_cb rand_cb, void *rand_arg);

/* What became of an attempt; only UVG__RETRY_AFTER_DELAY retries. */
typedef enum {
  UVG__RETRY_SUCCEEDED = 0, /* OK */
  UVG__RETRY_NO_POLICY,     /* not OK, and the method has no retryPolicy */
  UVG__RETRY_FATAL,         /* the status is not in retryableStatusCodes */
  UVG__RETRY_PUSHBACK_STOP, /* the server said not to retry */
  UVG__RETRY_THROTTLED,     /* token_count is at or below the threshold */
  UVG__RETRY_COMMITTED,     /* the call is committed */
  UVG__RETRY_EXHAUSTED,     /* maxAttempts attempts were made */
  UVG__RETRY_AFTER_DELAY    /* start the next attempt after *delay_ms */
} uvg__retry_verdict_t;

/* Decides, when an attempt ends with `code` (the status the server sent,
 * or the library's own for a failure that reached no server but is not a
 * transparent retry), whether the call retries, and records the outcome
 * in `throttle` (may be NULL). `committed`: response headers arrived or
 * the request outgrew the retry buffer. `pushback`: from the attempt's
 * trailers (uvg__pushback_from_metadata). On AFTER_DELAY, counts the new
 * attempt in r->attempts and sets *delay_ms; otherwise *delay_ms is 0 and
 * the status goes to the application. The rules, in this order:
 *
 *  1. OK: success; the throttle gains tokenRatio ("Every successful RPC
 *     will increment the token_count by tokenRatio").
 *  2. Pushback STOP: no retry, counted as a failure ("The only RPCs that
 *     are counted as failures for the throttling policy are RPCs that
 *     fail with a status code that qualifies as a retryable [...] status
 *     code, or that receive a pushback response indicating not to
 *     retry"; summary 4: "Pushback: Don't Retry [...] Don't retry").
 *  3. No policy, or a code outside retryableStatusCodes: no retry and not
 *     counted ("This avoids conflating server failure with responses to
 *     malformed requests"). A pushback delay does not make such a code
 *     retryable (gRPC C++ and grpc-go check the code first).
 *  4. Counted as a failure, then THROTTLED if the count is now at or
 *     below the threshold ("RPCs will not be retried until token_count
 *     rises over the threshold"). Counting before the remaining checks
 *     keeps committed and last attempts in the count, as gRPC C++ does.
 *  5. COMMITTED ("When Retries are Valid": an RPC "committed" is not
 *     retried).
 *  6. EXHAUSTED once attempts >= maxAttempts ("If the client has already
 *     exhausted its maxAttempts, the call will not be retried even if the
 *     server says to retry after a given delay").
 *  7. Retry: after exactly the pushback delay, which also resets the
 *     backoff ("For subsequent retries, the delay period will be reset to
 *     the initialBackoff setting"), or after the backoff for
 *     n = since_pushback + 1. */
uvg__retry_verdict_t uvg__retry_decide(uvg__retry_t *r, int code, int committed,
                                       uvg__pushback_t pushback,
                                       uvg__retry_throttle_t *throttle,
                                       uint64_t *delay_ms);

/* A static name for a verdict ("throttled", ...), for trace lines. */
const char *uvg__retry_verdict_name(uvg__retry_verdict_t v);

/* ---- hedging (per call) ---- */

/* A6 "Hedging Policy": "the original RPC is sent immediately [...]. After
 * hedgingDelay has elapsed without a successful response, the second RPC
 * will be issued [...] up to maxAttempts." The call arms a timer for
 * uvg__hedge_delay_ms() after each attempt it sends and, when it fires,
 * asks uvg__hedge_next(). */
typedef struct {
  const uvg__hedging_policy_t *policy;
  uint32_t sent;   /* attempts sent or given up on, the first included */
  uint8_t stopped; /* pushback STOP or commit: no further attempt */
} uvg__hedge_t;

/* The first attempt goes out now: sent = 1. `policy` must outlive `h`. */
void uvg__hedge_init(uvg__hedge_t *h, const uvg__hedging_policy_t *policy);
/* hedgingDelay in ms, rounded up; 0 sends every attempt at once. */
uint64_t uvg__hedge_delay_ms(const uvg__hedge_t *h);

typedef enum {
  UVG__HEDGE_SEND = 0,  /* send one more attempt now */
  UVG__HEDGE_THROTTLED, /* this one is given up (A6: "The hedged request
                         * is cancelled"); later ones may still go */
  UVG__HEDGE_DONE       /* nothing more will be sent */
} uvg__hedge_next_t;

/* The hedging timer fired (or a non-fatal status asked for the next
 * attempt at once): SEND counts the attempt; THROTTLED also uses up its
 * place (A6: "subsequent hedged RPCs will only be sent if token_count is
 * greater than the threshold"); DONE after maxAttempts, a pushback STOP or
 * a commit. */
uvg__hedge_next_t uvg__hedge_next(uvg__hedge_t *h,
                                  const uvg__retry_throttle_t *throttle);

/* The call committed to one attempt (A6: "no subsequent attempts will be
 * started"); the call cancels the others itself. */
void uvg__hedge_commit(uvg__hedge_t *h);

typedef enum {
  UVG__HEDGE_WIN = 0, /* OK: cancel the others, this is the response */
  UVG__HEDGE_FATAL,   /* cancel the others, this status is the call's */
  UVG__HEDGE_NEXT_IN, /* re-arm the hedging timer to *delay_ms (0: now) */
  UVG__HEDGE_WAIT     /* nothing more to send: the call ends with this
                       * status unless another attempt is outstanding */
} uvg__hedge_verdict_t;

/* An attempt ended with `code` and `pushback`; records it in `throttle`
 * (may be NULL). A6's summary, in this order:
 *  - OK: "Successful response, cancel previous and pending hedges";
 *    counted as a success.
 *  - Pushback STOP: counted as a failure and "no further hedged requests
 *    will be sent"; then FATAL for a fatal code, else WAIT.
 *  - A code outside nonFatalStatusCodes: "Cancel previous and pending
 *    hedges"; not counted.
 *  - Non-fatal: counted as a failure; WAIT when nothing more can be sent,
 *    else NEXT_IN with the pushback delay ("Send next hedged request in n
 *    ms. Subsequent hedged requests will resume at n + hedgingDelay") or
 *    0 ("Immediately send next scheduled hedged request, if any.
 *    Subsequent hedged requests will resume at hedgingDelay"). Whether
 *    the next one may go (throttling) is uvg__hedge_next()'s to say when
 *    the timer fires. */
uvg__hedge_verdict_t uvg__hedge_on_status(uvg__hedge_t *h, int code,
                                          uvg__pushback_t pushback,
                                          uvg__retry_throttle_t *throttle,
                                          uint64_t *delay_ms);

#endif

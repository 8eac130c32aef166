/*
 * The service config (grpc/grpc doc/service_config.md, gRFC A2, A6, A17,
 * A21, A24), parsed from its JSON form into an immutable, refcounted
 * struct. Pure: no socket, no loop; the parse may run on any thread, the
 * refcount is touched on the loop thread only.
 *
 * The JSON form is the proto3 JSON mapping of grpc.service_config's
 * ServiceConfig message (service_config.proto), so for every known field:
 * null means absent; integers and floats may also be written as strings
 * ("10", "0.5"); durations are strings of seconds ("1.5s").
 */
#ifndef UVG_CLIENT_SERVICE_CONFIG_H
#define UVG_CLIENT_SERVICE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "../../loop/common.h"

/* ---- protobuf JSON Durations ---- */

/* A google.protobuf.Duration, exactly as written, never negative. */
typedef struct {
  uint64_t seconds; /* 0 .. UVG__DURATION_MAX_SECONDS */
  uint32_t nanos;   /* 0 .. 999999999 */
} uvg__duration_t;

/* duration.proto: "Range is approximately +-10,000 years." */
#define UVG__DURATION_MAX_SECONDS UINT64_C(315576000000)

/* Parses `len` bytes of `s` as a protobuf JSON Duration without a sign:
 * digits, optionally '.' and 1 to 9 digits, then 's' ("10s", "1.5s",
 * "0.000000001s"), at most UVG__DURATION_MAX_SECONDS. Returns 0, or
 * UVG_EINVAL with `*why` (may be NULL) set to a static reason: "must end in
 * 's'", "must not be negative", "is not a number of seconds", "has more
 * than 9 fractional digits", "is out of range". */
int uvg__duration_parse(const char *s, size_t len, uvg__duration_t *out,
                        const char **why);
/* The duration in milliseconds, rounded up so that a positive duration is
 * never 0 ms; UINT64_MAX when it does not fit (it always does: the largest
 * is about 3.2e14 ms). */
uint64_t uvg__duration_ms(const uvg__duration_t *d);
/* The duration in milliseconds as a double, unrounded. */
double uvg__duration_ms_f(const uvg__duration_t *d);
static inline int uvg__duration_is_zero(const uvg__duration_t *d) {
  return d->seconds == 0 && d->nanos == 0;
}

/* ---- status code sets ---- */

/* A set of status codes: bit (1u << code) for each uvg_status_code_t. */
typedef uint32_t uvg__code_set_t;
static inline int uvg__code_set_has(uvg__code_set_t set, int code) {
  return code >= 0 && code <= 16 && (set >> code & 1u) != 0;
}

/* Parses a status code name as gRFC A6 accepts it in a list of codes,
 * "case-insensitive string form" ("UNAVAILABLE", "unavailable"). Returns
 * the code, or -1. */
int uvg__status_code_parse(const char *name);

/* ---- the parsed config ---- */

/* gRFC A6 "Limits on Retries and Hedges": "maxAttempts [...] have, by
 * default, a client-side maximum value of 5". */
#define UVG__MAX_ATTEMPTS_LIMIT 5u

/* methodConfig[].retryPolicy */
typedef struct {
  uint32_t max_attempts;           /* 2 .. 5; larger values read as 5 */
  uvg__duration_t initial_backoff; /* > 0 */
  uvg__duration_t max_backoff;     /* > 0 */
  double backoff_multiplier;       /* > 0, finite */
  uvg__code_set_t retryable_codes; /* never empty */
  /* gRPC C++'s perAttemptRecvTimeout: > 0 when present. */
  uint8_t has_per_attempt_recv_timeout;
  uvg__duration_t per_attempt_recv_timeout;
} uvg__retry_policy_t;

/* methodConfig[].hedgingPolicy */
typedef struct {
  uint32_t max_attempts;           /* 2 .. 5; larger values read as 5 */
  uvg__duration_t hedging_delay;   /* 0 when absent: all attempts at once */
  uvg__code_set_t non_fatal_codes; /* may be empty */
} uvg__hedging_policy_t;

typedef enum {
  UVG__POLICY_NONE = 0, /* neither: no retries, no hedging */
  UVG__POLICY_RETRY,
  UVG__POLICY_HEDGING
} uvg__policy_kind_t;

/* One methodConfig entry. A field the config leaves out has its has_ flag
 * 0 (wait_for_ready: -1), and the application's or the channel's value
 * applies. */
typedef struct {
  int8_t wait_for_ready; /* -1 unset, 0 or 1 */
  uint8_t has_timeout;
  uint8_t has_max_request_bytes;
  uint8_t has_max_response_bytes;
  uvg__duration_t timeout; /* may be 0 */
  uint32_t max_request_bytes;
  uint32_t max_response_bytes;
  uvg__policy_kind_t policy;
  uvg__retry_policy_t retry;     /* valid when policy is RETRY */
  uvg__hedging_policy_t hedging; /* valid when policy is HEDGING */
} uvg__method_config_t;

/* One methodConfig[].name entry; "" for a service or method left out. */
typedef struct {
  const char *service; /* "" only with method "": the default config */
  const char *method;  /* "": every method of the service */
  const uvg__method_config_t *config;
} uvg__method_name_t;

typedef struct {
  unsigned refs;
  /* The load balancing policy the config chose: the first entry of
   * loadBalancingConfig the channel supports, with that entry's config
   * as compact JSON text, or the deprecated loadBalancingPolicy (lower
   * case) with config "{}". Both NULL when the config names neither: the
   * channel's default policy applies. */
  char *lb_policy;
  char *lb_config;
  /* retryThrottling: tokens in thousandths, as A6 keeps 3 decimal places
   * ("0.5466 is treated as 0.546"). */
  uint8_t has_retry_throttling;
  uint32_t max_milli_tokens;  /* 1 .. 1000000 */
  uint32_t milli_token_ratio; /* 1 .. 1000000 (larger ratios cap here) */
  /* healthCheckConfig.serviceName; NULL when unset (A17: "If unset,
   * health checking is disabled"); may be "". */
  char *health_check_service;
  /* Every methodConfig, in the config's order, and every name of them,
   * sorted by (service, method) for lookup. */
  uvg__method_config_t *methods;
  size_t nmethods;
  uvg__method_name_t *names;
  size_t nnames;
} uvg__service_config_t;

/* Tells whether the channel has a load balancing policy named `name` that
 * takes `config` (JSON text): 1 yes, 0 no such policy, -1 the policy
 * refuses the config. `arg` is what uvg__service_config_parse() was
 * given. */
typedef int (*uvg__lb_supported_cb)(const char *name, const char *config,
                                    void *arg);

/* Parses the service config in the `len` bytes of `json` (UTF-8, no NUL
 * needed). `supported` picks the load balancing policy (required).
 *
 * Returns 0 with *out set to a new config holding one reference
 * (uvg__service_config_unref() frees it). On failure *out is NULL and the
 * result is UVG_EINVAL: the config is invalid as a whole (A21: "the
 * client should ignore that service config in its entirety") and `err`
 * says why, naming the field ("methodConfig[1].retryPolicy.maxAttempts:
 * must be at least 2"); or UVG_ENOMEM ("out of memory"); or UVG_EINVAL
 * for a NULL json, out or supported. `err` receives a NUL-terminated
 * message, truncated to `errlen` bytes; it may be NULL when errlen is 0.
 *
 * Unknown fields are ignored (A21). Everything the config keeps is
 * allocated with the library's allocator; jansson's parse tree, freed
 * before returning, uses jansson's (malloc unless the application set
 * json_set_alloc_funcs(), which is process-wide and left alone here). */
int uvg__service_config_parse(const char *json, size_t len,
                              uvg__lb_supported_cb supported, void *arg,
                              uvg__service_config_t **out, char *err,
                              size_t errlen);

/* The client language service config choices name: gRFC A2's
 * clientLanguage lists strings such as "c++", "java", "go". */
#define UVG__SERVICE_CONFIG_LANGUAGE "c"

/* Reads gRFC A2's list of service config choices: the value of a DNS TXT
 * record's grpc_config attribute, its strings joined and "grpc_config="
 * removed by the caller. Picks the first choice whose criteria all match
 * this client: clientLanguage holds UVG__SERVICE_CONFIG_LANGUAGE (any
 * case), clientHostname holds `hostname` (exactly; NULL matches no
 * name), percentage is above `draw`, a number the caller draws once per
 * channel uniformly from 0..99 (so percentage 0 matches no client, 100
 * every one); an absent or empty criterion matches. Then parses that
 * choice's serviceConfig as uvg__service_config_parse() does.
 *
 * Returns 0 with *out set, or with *out NULL when no choice matches (A21:
 * the channel then uses its default config). UVG_EINVAL when the list is
 * invalid, which a choice before the chosen one can make it (not a list,
 * a choice not an object, an unexpected field, a criterion of the wrong
 * type, a serviceConfig missing or not an object) and the chosen
 * serviceConfig can; choices after the chosen one are not read. Messages
 * name the path from the list ("[1].serviceConfig.methodConfig[0]
 * .timeout: ..."). UVG_ENOMEM as uvg__service_config_parse(). */
int uvg__service_config_parse_choices(const char *json, size_t len,
                                      const char *hostname, unsigned draw,
                                      uvg__lb_supported_cb supported, void *arg,
                                      uvg__service_config_t **out, char *err,
                                      size_t errlen);

/* Adds a reference; returns `sc`. */
uvg__service_config_t *uvg__service_config_ref(uvg__service_config_t *sc);
/* Drops a reference; the last one frees the config and every pointer
 * into it (method configs, names, strings). NULL is ignored. */
void uvg__service_config_unref(uvg__service_config_t *sc);

/* The method config for `path` ("/pkg.Service/Method", NUL-terminated),
 * by the precedence of service_config.proto ("the most specific match
 * wins"): the name with this service and method, else the service's
 * default (method ""), else the default config (service ""), else NULL.
 * A path not of the form "/service/method" gets the default config only.
 * Valid while the caller holds a reference on `sc`. No allocation. */
const uvg__method_config_t *uvg__service_config_method(
    const uvg__service_config_t *sc, const char *path);

#endif

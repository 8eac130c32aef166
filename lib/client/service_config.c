/* The service config in JSON form (grpc/grpc doc/service_config.md: "the
 * result of converting the protobuf form into JSON using the normal
 * protobuf to JSON translation rules"), validated as gRFC A21 asks: "If
 * any of the known fields fails in validation, the entire service config
 * is deemed invalid", while "unknown fields do not affect validation".
 *
 * Where the specs are silent or disagree we follow gRPC C++, the
 * implementation A21 was written against, unless noted:
 *
 * - JSON objects with a repeated key are invalid (C++'s JSON reader; Go's
 *   encoding/json keeps the last one). Nothing then depends on which of
 *   two values a parser happens to keep.
 * - null is the same as absent for every known field (proto3 JSON: "null
 *   is accepted for all field types and treated as the default value").
 * - Numbers may be strings ("10", "0.5"), as proto3 JSON allows and C++
 *   accepts; an integer field takes 4.0 but not 4.5.
 * - Durations: digits, optionally '.' and 1 to 9 digits, then 's'. "1.s"
 *   and ".5s" are refused as C++ and grpc-js refuse them (grpc-go takes
 *   them); a sign is refused, since no duration here may be negative.
 * - loadBalancingConfig: entries are checked up to the first supported
 *   one, which is chosen; later entries are not looked at (C++). An entry
 *   is an object with exactly one key whose value is an object (A24).
 * - loadBalancingPolicy (deprecated) is checked even when
 *   loadBalancingConfig is present; "" means unset; an unknown name is
 *   invalid (A21's own example; grpc-go falls back to pick_first).
 * - retryThrottling.maxTokens keeps 3 decimal places like tokenRatio (A6's
 *   JSON comment: "Up to 3 decimal places are supported"; its validation
 *   list says integer; grpc-go takes any number). Both are truncated to
 *   thousandths first, then checked: (0, 1000] and > 0.
 * - retryPolicy.retryableStatusCodes must be non-empty even with
 *   perAttemptRecvTimeout (C++ relaxes that only behind an experimental
 *   hedging switch).
 * - A methodConfig without names is still validated (A21), then unused.
 */
#include "service_config.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ====================================================================== */
/* Durations */

static int is_digit(char c) {
  return c >= '0' && c <= '9';
}

int uvg__duration_parse(const char *s, size_t len, uvg__duration_t *out,
                        const char **why) {
  const char *dummy;
  if (why == NULL) why = &dummy;
  if (len == 0 || s[len - 1] != 's') {
    *why = "must end in 's'";
    return UVG_EINVAL;
  }
  if (s[0] == '-') {
    *why = "must not be negative";
    return UVG_EINVAL;
  }
  size_t end = len - 1, i = 0;
  uint64_t sec = 0;
  while (i < end && is_digit(s[i])) {
    /* Past the maximum the value only needs to stay past it. */
    if (sec <= UVG__DURATION_MAX_SECONDS)
      sec = sec * 10 + (uint64_t)(s[i] - '0');
    i++;
  }
  if (i == 0) {
    *why = "is not a number of seconds";
    return UVG_EINVAL;
  }
  uint32_t nanos = 0;
  if (i < end && s[i] == '.') {
    size_t start = ++i;
    while (i < end && is_digit(s[i])) i++;
    size_t nfrac = i - start;
    if (nfrac == 0) {
      *why = "is not a number of seconds";
      return UVG_EINVAL;
    }
    if (nfrac > 9 && i == end) {
      *why = "has more than 9 fractional digits";
      return UVG_EINVAL;
    }
    for (size_t k = 0; k < 9; k++)
      nanos = nanos * 10 + (k < nfrac ? (uint32_t)(s[start + k] - '0') : 0);
  }
  if (i != end) {
    *why = "is not a number of seconds";
    return UVG_EINVAL;
  }
  if (sec > UVG__DURATION_MAX_SECONDS) {
    *why = "is out of range";
    return UVG_EINVAL;
  }
  out->seconds = sec;
  out->nanos = nanos;
  return 0;
}

uint64_t uvg__duration_ms(const uvg__duration_t *d) {
  return d->seconds * 1000 + (d->nanos + 999999u) / 1000000u;
}

double uvg__duration_ms_f(const uvg__duration_t *d) {
  return (double)d->seconds * 1000.0 + (double)d->nanos / 1e6;
}

/* ====================================================================== */
/* Status codes */

static const char *const code_names[17] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

int uvg__status_code_parse(const char *name) {
  for (int c = 0; c < 17; c++)
    if (strcasecmp(name, code_names[c]) == 0) return c;
  return -1;
}

/* ====================================================================== */
/* The parser: a path to the field being read, for messages */

typedef struct {
  char *err;
  size_t errlen;
  char path[256];
  size_t pathlen;
} parser_t;

/* Appends to the path, truncating; returns the length to restore. */
static size_t push(parser_t *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static size_t push(parser_t *p, const char *fmt, ...) {
  size_t mark = p->pathlen;
  if (p->pathlen < sizeof(p->path) - 1) {
    va_list ap;
    va_start(ap, fmt);
    int n =
        vsnprintf(p->path + p->pathlen, sizeof(p->path) - p->pathlen, fmt, ap);
    va_end(ap);
    if (n > 0) p->pathlen += (size_t)n;
    if (p->pathlen > sizeof(p->path) - 1) p->pathlen = sizeof(p->path) - 1;
  }
  return mark;
}

static size_t push_field(parser_t *p, const char *name) {
  return push(p, p->pathlen == 0 ? "%s" : ".%s", name);
}

static size_t push_index(parser_t *p, size_t i) {
  return push(p, "[%zu]", i);
}

static void pop(parser_t *p, size_t mark) {
  p->pathlen = mark;
  p->path[mark] = '\0';
}

/* Writes "path: message" (or the message alone at the top) to the
 * caller's buffer; returns UVG_EINVAL. */
static int fail(parser_t *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int fail(parser_t *p, const char *fmt, ...) {
  if (p->errlen == 0) return UVG_EINVAL;
  int n = p->pathlen > 0 ? snprintf(p->err, p->errlen, "%s: ", p->path) : 0;
  size_t used = n > 0 ? (size_t)n : 0;
  if (used < p->errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err + used, p->errlen - used, fmt, ap);
    va_end(ap);
  }
  return UVG_EINVAL;
}

static int out_of_memory(parser_t *p) {
  if (p->errlen > 0) snprintf(p->err, p->errlen, "out of memory");
  return UVG_ENOMEM;
}

/* The value of `name` in `obj`, or NULL when absent or null. */
static json_t *get(const json_t *obj, const char *name) {
  json_t *v = json_object_get(obj, name);
  return v == NULL || json_is_null(v) ? NULL : v;
}

/* ---- typed readers: the path names the field when they are called ---- */

static int read_bool(parser_t *p, const json_t *v, int8_t *out) {
  if (!json_is_boolean(v)) return fail(p, "must be true or false");
  *out = json_is_true(v) ? 1 : 0;
  return 0;
}

static int read_string(parser_t *p, const json_t *v, const char **out) {
  if (!json_is_string(v)) return fail(p, "must be a string");
  *out = json_string_value(v);
  return 0;
}

static int read_duration(parser_t *p, const json_t *v, uvg__duration_t *out) {
  if (!json_is_string(v))
    return fail(p, "must be a duration string such as \"1.5s\"");
  const char *why;
  if (uvg__duration_parse(json_string_value(v), json_string_length(v), out,
                          &why) != 0)
    return fail(p, "\"%s\" %s", json_string_value(v), why);
  return 0;
}

/* Reads an integer written as a JSON integer, an integral real (4.0) or a
 * string of an optional '-' and digits; values past int64 saturate, which
 * every range check below then refuses or caps. */
static int read_int(parser_t *p, const json_t *v, int64_t *out) {
  if (json_is_integer(v)) {
    *out = (int64_t)json_integer_value(v);
    return 0;
  }
  if (json_is_real(v)) {
    double d = json_real_value(v);
    if (d != floor(d)) return fail(p, "must be an integer");
    *out = d >= 9.2e18 ? INT64_MAX : d <= -9.2e18 ? INT64_MIN : (int64_t)d;
    return 0;
  }
  if (json_is_string(v)) {
    const char *s = json_string_value(v);
    size_t n = json_string_length(v), i = s[0] == '-';
    if (i == n) return fail(p, "must be an integer");
    uint64_t mag = 0;
    for (; i < n; i++) {
      if (!is_digit(s[i])) return fail(p, "must be an integer");
      if (mag <= (uint64_t)INT64_MAX) mag = mag * 10 + (uint64_t)(s[i] - '0');
    }
    if (mag > (uint64_t)INT64_MAX) mag = (uint64_t)INT64_MAX;
    *out = s[0] == '-' ? -(int64_t)mag : (int64_t)mag;
    return 0;
  }
  return fail(p, "must be an integer");
}

/* proto3 UInt32Value: 0 .. 2^32-1. */
static int read_uint32(parser_t *p, const json_t *v, uint32_t *out) {
  int64_t n;
  int rc = read_int(p, v, &n);
  if (rc != 0) return rc;
  if (n < 0) return fail(p, "must not be negative");
  if (n > (int64_t)UINT32_MAX) return fail(p, "must be at most 4294967295");
  *out = (uint32_t)n;
  return 0;
}

/* maxAttempts of either policy: "MUST be a JSON integer value greater
 * than 1. Values greater than 5 are treated as 5 without being considered
 * a validation error" (A6). */
static int read_max_attempts(parser_t *p, const json_t *v, uint32_t *out) {
  int64_t n;
  int rc = read_int(p, v, &n);
  if (rc != 0) return rc;
  if (n < 2) return fail(p, "must be at least 2");
  *out = n > (int64_t)UVG__MAX_ATTEMPTS_LIMIT ? UVG__MAX_ATTEMPTS_LIMIT
                                              : (uint32_t)n;
  return 0;
}

/* A finite number, written as a JSON number or a numeric string. */
static int read_number(parser_t *p, const json_t *v, double *out) {
  double d;
  if (json_is_number(v)) {
    d = json_number_value(v);
  } else if (json_is_string(v) && json_string_length(v) > 0) {
    /* Decimal text only: strtod() would also take hexadecimal, "inf" and
     * leading spaces. */
    const char *s = json_string_value(v);
    if (strspn(s, "0123456789+-.eE") != json_string_length(v))
      return fail(p, "must be a number");
    char *end;
    errno = 0;
    d = strtod(s, &end);
    if (*end != '\0' || errno == ERANGE) return fail(p, "must be a number");
  } else {
    return fail(p, "must be a number");
  }
  if (!isfinite(d)) return fail(p, "must be a number");
  *out = d;
  return 0;
}

/* The largest value read_milli() returns, far above every limit. */
#define MILLI_CAP UINT64_C(1000000000000000)

/* Reads a decimal number text ([-]digits[.digits][(e|E)[+-]digits]) as a
 * count of thousandths, truncated ("Decimal places beyond 3 are ignored",
 * A6), saturating at MILLI_CAP. *negative is set for a leading '-'.
 * Returns 0, or -1 when the text is not such a number. */
static int decimal_to_milli(const char *s, uint64_t *out, int *negative) {
  size_t i = 0;
  *negative = s[0] == '-';
  if (*negative || s[0] == '+') i++;
  size_t int_start = i;
  while (is_digit(s[i])) i++;
  size_t nint = i - int_start, frac_start = i, nfrac = 0;
  if (s[i] == '.') {
    frac_start = ++i;
    while (is_digit(s[i])) i++;
    nfrac = i - frac_start;
  }
  if (nint + nfrac == 0) return -1;
  long exp = 0;
  if (s[i] == 'e' || s[i] == 'E') {
    i++;
    int eneg = s[i] == '-';
    if (s[i] == '-' || s[i] == '+') i++;
    if (!is_digit(s[i])) return -1;
    while (is_digit(s[i])) {
      if (exp < 100000) exp = exp * 10 + (s[i] - '0');
      i++;
    }
    if (eneg) exp = -exp;
  }
  if (s[i] != '\0') return -1;
  /* Digit k of the nint + nfrac digits weighs 10^(nint - 1 - k + exp + 3)
   * thousandths; digits of negative weight are the ones truncated. */
  uint64_t milli = 0;
  for (size_t k = 0; k < nint + nfrac; k++) {
    char c = k < nint ? s[int_start + k] : s[frac_start + (k - nint)];
    long power = (long)nint - 1 - (long)k + exp + 3;
    if (power < 0 || c == '0') continue;
    uint64_t term = (uint64_t)(c - '0');
    for (long e = 0; e < power && term < MILLI_CAP; e++) term *= 10;
    milli = milli + term < MILLI_CAP ? milli + term : MILLI_CAP;
  }
  *out = milli;
  return 0;
}

/* A number kept to thousandths. A JSON number reaches us as a double, so
 * its text is rebuilt as the shortest decimal that reads back to the same
 * double: 0.3 is 300 thousandths, not the 299.99... the double holds, and
 * for any number written with up to 15 significant digits that text is
 * the one written. A string is read as written. */
static int read_milli(parser_t *p, const json_t *v, uint64_t *out,
                      int *negative) {
  char buf[64];
  const char *text;
  if (json_is_integer(v)) {
    snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    text = buf;
  } else if (json_is_real(v)) {
    double d = json_real_value(v);
    for (int prec = 1; prec <= 17; prec++) {
      snprintf(buf, sizeof(buf), "%.*g", prec, d);
      if (strtod(buf, NULL) == d) break;
    }
    text = buf;
  } else if (json_is_string(v)) {
    text = json_string_value(v);
  } else {
    return fail(p, "must be a number");
  }
  if (decimal_to_milli(text, out, negative) != 0)
    return fail(p, "must be a number");
  return 0;
}

/* A list of status codes, each a name (any case) or an integer 0..16. */
static int read_codes(parser_t *p, const json_t *v, uvg__code_set_t *out) {
  if (!json_is_array(v)) return fail(p, "must be a list of status codes");
  uvg__code_set_t set = 0;
  for (size_t i = 0; i < json_array_size(v); i++) {
    const json_t *e = json_array_get(v, i);
    size_t mark = push_index(p, i);
    int code = -1;
    if (json_is_string(e)) {
      code = uvg__status_code_parse(json_string_value(e));
      if (code < 0)
        return fail(p, "\"%s\" is not a status code", json_string_value(e));
    } else if (json_is_integer(e)) {
      json_int_t n = json_integer_value(e);
      if (n < 0 || n > 16)
        return fail(p, "%" JSON_INTEGER_FORMAT " is not a status code", n);
      code = (int)n;
    } else if (json_is_real(e) && json_real_value(e) >= 0 &&
               json_real_value(e) <= 16 &&
               json_real_value(e) == floor(json_real_value(e))) {
      code = (int)json_real_value(e);
    } else {
      return fail(p, "must be a status code name or number");
    }
    set |= 1u << code;
    pop(p, mark);
  }
  *out = set;
  return 0;
}

/* Runs `read` on the field `name` of `obj` when present (not null), with
 * the path naming it. */
#define OPTIONAL_FIELD(p, obj, name, read, ...) \
  do {                                          \
    const json_t *v_ = get((obj), (name));      \
    if (v_ != NULL) {                           \
      size_t m_ = push_field((p), (name));      \
      int rc_ = read((p), v_, __VA_ARGS__);     \
      if (rc_ != 0) return rc_;                 \
      pop((p), m_);                             \
    }                                           \
  } while (0)

/* The same for a field that must be present. */
#define REQUIRED_FIELD(p, obj, name, read, ...)      \
  do {                                               \
    const json_t *v_ = get((obj), (name));           \
    size_t m_ = push_field((p), (name));             \
    if (v_ == NULL) return fail((p), "is required"); \
    int rc_ = read((p), v_, __VA_ARGS__);            \
    if (rc_ != 0) return rc_;                        \
    pop((p), m_);                                    \
  } while (0)

/* ====================================================================== */
/* methodConfig */

/* A name as parsed, before the names are sorted. */
typedef struct {
  char *service;
  char *method;
  size_t mc;   /* index of its methodConfig */
  size_t name; /* index in that methodConfig's name list */
} name_entry_t;

typedef struct {
  name_entry_t *v;
  size_t n, cap;
} name_list_t;

static void free_names(name_list_t *l) {
  for (size_t i = 0; i < l->n; i++) {
    uvg__free(l->v[i].service);
    uvg__free(l->v[i].method);
  }
  uvg__free(l->v);
  l->v = NULL;
  l->n = l->cap = 0;
}

static int add_name(parser_t *p, name_list_t *l, const char *service,
                    const char *method, size_t mc, size_t ni) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 8;
    name_entry_t *v = uvg__realloc(l->v, cap * sizeof(*v));
    if (v == NULL) return out_of_memory(p);
    l->v = v;
    l->cap = cap;
  }
  name_entry_t *e = &l->v[l->n];
  e->service = uvg__strdup(service);
  e->method = uvg__strdup(method);
  e->mc = mc;
  e->name = ni;
  if (e->service == NULL || e->method == NULL) {
    uvg__free(e->service);
    uvg__free(e->method);
    return out_of_memory(p);
  }
  l->n++;
  return 0;
}

/* service_config.proto: "If the 'service' field is empty, the 'method'
 * field must be empty", and "value "", value `null`, and not present are
 * the same". */
static int read_names(parser_t *p, const json_t *v, name_list_t *names,
                      size_t mc) {
  if (!json_is_array(v)) return fail(p, "must be a list");
  for (size_t i = 0; i < json_array_size(v); i++) {
    const json_t *e = json_array_get(v, i);
    size_t mark = push_index(p, i);
    if (!json_is_object(e)) return fail(p, "must be an object");
    const char *service = "", *method = "";
    OPTIONAL_FIELD(p, e, "service", read_string, &service);
    OPTIONAL_FIELD(p, e, "method", read_string, &method);
    if (service[0] == '\0' && method[0] != '\0')
      return fail(p, "method \"%s\" without a service", method);
    int rc = add_name(p, names, service, method, mc, i);
    if (rc != 0) return rc;
    pop(p, mark);
  }
  return 0;
}

static int read_retry_policy(parser_t *p, const json_t *v,
                             uvg__retry_policy_t *rp) {
  if (!json_is_object(v)) return fail(p, "must be an object");
  memset(rp, 0, sizeof(*rp));
  REQUIRED_FIELD(p, v, "maxAttempts", read_max_attempts, &rp->max_attempts);

  /* A6: initialBackoff and maxBackoff "MUST have a duration value greater
   * than 0"; backoffMultiplier "MUST be a JSON number greater than 0". */
  static const char *const backoffs[] = {"initialBackoff", "maxBackoff"};
  uvg__duration_t *values[] = {&rp->initial_backoff, &rp->max_backoff};
  for (int i = 0; i < 2; i++) {
    REQUIRED_FIELD(p, v, backoffs[i], read_duration, values[i]);
    if (uvg__duration_is_zero(values[i])) {
      push_field(p, backoffs[i]);
      return fail(p, "must be greater than 0");
    }
  }
  REQUIRED_FIELD(p, v, "backoffMultiplier", read_number,
                 &rp->backoff_multiplier);
  if (!(rp->backoff_multiplier > 0)) {
    push_field(p, "backoffMultiplier");
    return fail(p, "must be greater than 0");
  }
  /* "MUST be specified as a JSON array of status codes and be
   * non-empty" */
  REQUIRED_FIELD(p, v, "retryableStatusCodes", read_codes,
                 &rp->retryable_codes);
  if (rp->retryable_codes == 0) {
    push_field(p, "retryableStatusCodes");
    return fail(p, "must not be empty");
  }
  OPTIONAL_FIELD(p, v, "perAttemptRecvTimeout", read_duration,
                 &rp->per_attempt_recv_timeout);
  if (get(v, "perAttemptRecvTimeout") != NULL) {
    if (uvg__duration_is_zero(&rp->per_attempt_recv_timeout)) {
      push_field(p, "perAttemptRecvTimeout");
      return fail(p, "must be greater than 0");
    }
    rp->has_per_attempt_recv_timeout = 1;
  }
  return 0;
}

static int read_hedging_policy(parser_t *p, const json_t *v,
                               uvg__hedging_policy_t *hp) {
  if (!json_is_object(v)) return fail(p, "must be an object");
  memset(hp, 0, sizeof(*hp));
  REQUIRED_FIELD(p, v, "maxAttempts", read_max_attempts, &hp->max_attempts);
  OPTIONAL_FIELD(p, v, "hedgingDelay", read_duration, &hp->hedging_delay);
  OPTIONAL_FIELD(p, v, "nonFatalStatusCodes", read_codes, &hp->non_fatal_codes);
  return 0;
}

static int read_method_config(parser_t *p, const json_t *v,
                              uvg__method_config_t *mc, name_list_t *names,
                              size_t index) {
  if (!json_is_object(v)) return fail(p, "must be an object");
  mc->wait_for_ready = -1;
  OPTIONAL_FIELD(p, v, "name", read_names, names, index);
  OPTIONAL_FIELD(p, v, "waitForReady", read_bool, &mc->wait_for_ready);
  OPTIONAL_FIELD(p, v, "timeout", read_duration, &mc->timeout);
  mc->has_timeout = get(v, "timeout") != NULL;
  OPTIONAL_FIELD(p, v, "maxRequestMessageBytes", read_uint32,
                 &mc->max_request_bytes);
  mc->has_max_request_bytes = get(v, "maxRequestMessageBytes") != NULL;
  OPTIONAL_FIELD(p, v, "maxResponseMessageBytes", read_uint32,
                 &mc->max_response_bytes);
  mc->has_max_response_bytes = get(v, "maxResponseMessageBytes") != NULL;
  /* service_config.proto: "Only one of retry_policy or hedging_policy may
   * be set"; A6: "An individual RPC may be governed by a retry policy or a
   * hedge policy, but not both." */
  if (get(v, "retryPolicy") != NULL && get(v, "hedgingPolicy") != NULL)
    return fail(p, "retryPolicy and hedgingPolicy are both set");
  OPTIONAL_FIELD(p, v, "retryPolicy", read_retry_policy, &mc->retry);
  if (get(v, "retryPolicy") != NULL) mc->policy = UVG__POLICY_RETRY;
  OPTIONAL_FIELD(p, v, "hedgingPolicy", read_hedging_policy, &mc->hedging);
  if (get(v, "hedgingPolicy") != NULL) mc->policy = UVG__POLICY_HEDGING;
  return 0;
}

static int compare_entries(const void *a, const void *b) {
  const name_entry_t *x = a, *y = b;
  int c = strcmp(x->service, y->service);
  if (c == 0) c = strcmp(x->method, y->method);
  if (c == 0) c = x->mc < y->mc ? -1 : x->mc > y->mc;
  if (c == 0) c = x->name < y->name ? -1 : x->name > y->name;
  return c;
}

static int read_method_configs(parser_t *p, const json_t *v,
                               uvg__service_config_t *sc) {
  if (!json_is_array(v)) return fail(p, "must be a list");
  size_t n = json_array_size(v);
  name_list_t names = {0};
  int rc = 0;
  if (n > 0) {
    sc->methods = uvg__calloc(n, sizeof(*sc->methods));
    if (sc->methods == NULL) return out_of_memory(p);
    sc->nmethods = n;
  }
  for (size_t i = 0; i < n && rc == 0; i++) {
    size_t mark = push_index(p, i);
    rc =
        read_method_config(p, json_array_get(v, i), &sc->methods[i], &names, i);
    if (rc == 0) pop(p, mark);
  }
  if (rc != 0) goto done;

  /* service_config.proto: "Each name entry must be unique across the
   * entire ServiceConfig." Sorted, equal names sit together, the one
   * written first ahead. */
  if (names.n > 1) qsort(names.v, names.n, sizeof(*names.v), compare_entries);
  for (size_t i = 1; i < names.n; i++) {
    const name_entry_t *a = &names.v[i - 1], *b = &names.v[i];
    if (strcmp(a->service, b->service) == 0 &&
        strcmp(a->method, b->method) == 0) {
      pop(p, 0);
      push(p, "methodConfig[%zu].name[%zu]", b->mc, b->name);
      rc = fail(p, "repeats methodConfig[%zu].name[%zu]", a->mc, a->name);
      goto done;
    }
  }
  if (names.n > 0) {
    sc->names = uvg__calloc(names.n, sizeof(*sc->names));
    if (sc->names == NULL) {
      rc = out_of_memory(p);
      goto done;
    }
    /* The strings move to the config. */
    for (size_t i = 0; i < names.n; i++) {
      sc->names[i].service = names.v[i].service;
      sc->names[i].method = names.v[i].method;
      sc->names[i].config = &sc->methods[names.v[i].mc];
    }
    sc->nnames = names.n;
    names.n = 0;
  }
done:
  free_names(&names);
  return rc;
}

/* ====================================================================== */
/* Load balancing */

/* `v` as compact JSON text, allocated with the library's allocator. Reals
 * are written with 17 significant digits, which read back to the same
 * double. */
static char *dump_json(const json_t *v) {
  size_t n = json_dumpb(v, NULL, 0, JSON_COMPACT);
  if (n == 0) return NULL;
  char *s = uvg__malloc(n + 1);
  if (s == NULL) return NULL;
  if (json_dumpb(v, s, n, JSON_COMPACT) != n) {
    uvg__free(s);
    return NULL;
  }
  s[n] = '\0';
  return s;
}

/* A24 / A21: "a list of LB policies with the client selecting the first
 * policy it supports. If it doesn't understand any of the policies, it is
 * treated as invalid, and the entire service config is rejected." */
static int read_lb_config(parser_t *p, const json_t *v,
                          uvg__lb_supported_cb supported, void *arg,
                          uvg__service_config_t *sc) {
  if (!json_is_array(v)) return fail(p, "must be a list");
  for (size_t i = 0; i < json_array_size(v); i++) {
    const json_t *e = json_array_get(v, i);
    size_t mark = push_index(p, i);
    if (!json_is_object(e) || json_object_size(e) != 1)
      return fail(p, "must be an object with exactly one field, the policy");
    void *it = json_object_iter((json_t *)e);
    const char *name = json_object_iter_key(it);
    const json_t *config = json_object_iter_value(it);
    if (!json_is_object(config)) {
      push_field(p, name);
      return fail(p, "must be an object");
    }
    char *text = dump_json(config);
    if (text == NULL) return out_of_memory(p);
    int verdict = supported(name, text, arg);
    if (verdict < 0) {
      uvg__free(text);
      push_field(p, name);
      return fail(p, "refused by the policy");
    }
    if (verdict > 0) {
      sc->lb_policy = uvg__strdup(name);
      sc->lb_config = text;
      if (sc->lb_policy == NULL) return out_of_memory(p);
      return 0;
    }
    uvg__free(text);
    pop(p, mark);
  }
  return fail(p, "no supported load balancing policy in the list");
}

/* The deprecated loadBalancingPolicy: a policy name, compared without
 * regard to case (gRPC C++ lowercases it; the proto has the enum value
 * ROUND_ROBIN, which the JSON form writes "round_robin"). */
static int read_lb_policy(parser_t *p, const json_t *v,
                          uvg__lb_supported_cb supported, void *arg,
                          char **out) {
  if (!json_is_string(v)) return fail(p, "must be a string");
  size_t n = json_string_length(v);
  if (n == 0) return 0;
  char *lower = uvg__strndup(json_string_value(v), n);
  if (lower == NULL) return out_of_memory(p);
  for (size_t i = 0; i < n; i++)
    if (lower[i] >= 'A' && lower[i] <= 'Z') lower[i] = (char)(lower[i] + 32);
  if (supported(lower, "{}", arg) <= 0) {
    int rc = fail(p, "unknown policy \"%s\"", lower);
    uvg__free(lower);
    return rc;
  }
  *out = lower;
  return 0;
}

/* ====================================================================== */
/* Top level */

/* A6: "maxTokens MUST be specified and MUST be a JSON integer value in
 * the range (0, 1000]"; "tokenRatio MUST be specified and MUST be a JSON
 * floating point greater than 0. Decimal places beyond 3 are ignored." */
static int read_throttling(parser_t *p, const json_t *v,
                           uvg__service_config_t *sc) {
  if (!json_is_object(v)) return fail(p, "must be an object");
  uint64_t max, ratio;
  int neg;
  REQUIRED_FIELD(p, v, "maxTokens", read_milli, &max, &neg);
  if (neg || max == 0 || max > 1000000) {
    push_field(p, "maxTokens");
    return fail(p, max > 1000000 && !neg ? "must be at most 1000"
                                         : "must be greater than 0");
  }
  REQUIRED_FIELD(p, v, "tokenRatio", read_milli, &ratio, &neg);
  if (neg || ratio == 0) {
    push_field(p, "tokenRatio");
    return fail(p, "must be greater than 0 (3 decimal places are kept)");
  }
  sc->has_retry_throttling = 1;
  sc->max_milli_tokens = (uint32_t)max;
  /* A success never lifts the count above maxTokens, so a ratio above the
   * largest maxTokens acts as that maximum. */
  sc->milli_token_ratio = ratio > 1000000 ? 1000000u : (uint32_t)ratio;
  return 0;
}

/* A17: "serviceName must be a valid JSON string". */
static int read_health_check(parser_t *p, const json_t *v,
                             uvg__service_config_t *sc) {
  if (!json_is_object(v)) return fail(p, "must be an object");
  const char *name = NULL;
  OPTIONAL_FIELD(p, v, "serviceName", read_string, &name);
  if (name != NULL && (sc->health_check_service = uvg__strdup(name)) == NULL)
    return out_of_memory(p);
  return 0;
}

static int read_service_config(parser_t *p, const json_t *root,
                               uvg__lb_supported_cb supported, void *arg,
                               uvg__service_config_t *sc) {
  if (!json_is_object(root))
    return fail(p, "the service config must be a JSON object");
  char *deprecated = NULL;
  OPTIONAL_FIELD(p, root, "loadBalancingPolicy", read_lb_policy, supported, arg,
                 &deprecated);
  const json_t *lbc = get(root, "loadBalancingConfig");
  if (lbc != NULL) {
    uvg__free(deprecated);
    OPTIONAL_FIELD(p, root, "loadBalancingConfig", read_lb_config, supported,
                   arg, sc);
  } else if (deprecated != NULL) {
    sc->lb_policy = deprecated;
    if ((sc->lb_config = uvg__strdup("{}")) == NULL) return out_of_memory(p);
  }
  OPTIONAL_FIELD(p, root, "methodConfig", read_method_configs, sc);
  OPTIONAL_FIELD(p, root, "retryThrottling", read_throttling, sc);
  OPTIONAL_FIELD(p, root, "healthCheckConfig", read_health_check, sc);
  return 0;
}

static void free_config(uvg__service_config_t *sc) {
  uvg__free(sc->lb_policy);
  uvg__free(sc->lb_config);
  uvg__free(sc->health_check_service);
  for (size_t i = 0; i < sc->nnames; i++) {
    uvg__free((char *)sc->names[i].service);
    uvg__free((char *)sc->names[i].method);
  }
  uvg__free(sc->names);
  uvg__free(sc->methods);
  uvg__free(sc);
}

/* Loads `len` bytes of JSON; on failure sets the message and *rc. */
static json_t *load_json(parser_t *p, const char *json, size_t len, int *rc) {
  json_error_t jerr;
  json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
  if (root == NULL) {
    /* jansson reports its own allocation failures as syntax errors of a
     * kind of their own. */
    *rc = json_error_code(&jerr) == json_error_out_of_memory
              ? out_of_memory(p)
              : fail(p, "invalid JSON at line %d, column %d: %s", jerr.line,
                     jerr.column, jerr.text);
  }
  return root;
}

/* Reads the service config object `v` into a new config. */
static int new_config(parser_t *p, const json_t *v,
                      uvg__lb_supported_cb supported, void *arg,
                      uvg__service_config_t **out) {
  uvg__service_config_t *sc = uvg__calloc(1, sizeof(*sc));
  if (sc == NULL) return out_of_memory(p);
  sc->refs = 1;
  int rc = read_service_config(p, v, supported, arg, sc);
  if (rc != 0) {
    free_config(sc);
    return rc;
  }
  *out = sc;
  return 0;
}

/* The checks both entry points make; 0 to go on. */
static int check_arguments(parser_t *p, const char *json,
                           uvg__lb_supported_cb supported,
                           uvg__service_config_t **out) {
  if (p->errlen > 0) p->err[0] = '\0';
  if (out == NULL) return UVG_EINVAL;
  *out = NULL;
  if (json == NULL || supported == NULL) {
    if (p->errlen > 0)
      snprintf(p->err, p->errlen, "no service config or no policy check");
    return UVG_EINVAL;
  }
  return 0;
}

int uvg__service_config_parse(const char *json, size_t len,
                              uvg__lb_supported_cb supported, void *arg,
                              uvg__service_config_t **out, char *err,
                              size_t errlen) {
  parser_t p = {.err = err, .errlen = errlen};
  int rc = check_arguments(&p, json, supported, out);
  if (rc != 0) return rc;
  json_t *root = load_json(&p, json, len, &rc);
  if (root == NULL) return rc;
  rc = new_config(&p, root, supported, arg, out);
  json_decref(root);
  return rc;
}

/* ====================================================================== */
/* gRFC A2 service config choices */

/* A list of strings, any of which may equal `want` (NULL: none does);
 * an absent or empty list matches every client (A2: "If a field is
 * absent or empty, it matches all clients"). Sets *match. */
static int read_criterion(parser_t *p, const json_t *v, const char *want,
                          int ignore_case, int *match) {
  if (!json_is_array(v)) return fail(p, "must be a list of strings");
  *match = json_array_size(v) == 0;
  for (size_t i = 0; i < json_array_size(v); i++) {
    const json_t *e = json_array_get(v, i);
    if (!json_is_string(e)) {
      push_index(p, i);
      return fail(p, "must be a string");
    }
    const char *s = json_string_value(e);
    if (want != NULL &&
        (ignore_case ? strcasecmp(s, want) : strcmp(s, want)) == 0)
      *match = 1;
  }
  return 0;
}

/* A2: "Percentage: integer from 0 to 100 indicating the percentage of
 * clients that should use this choice"; a client with draw d (0..99)
 * is among the first `percentage` of 100. */
static int read_percentage(parser_t *p, const json_t *v, unsigned draw,
                           int *match) {
  if (!json_is_integer(v) || json_integer_value(v) < 0 ||
      json_integer_value(v) > 100)
    return fail(p, "must be an integer from 0 to 100");
  *match = draw < (unsigned)json_integer_value(v);
  return 0;
}

/* One choice: whether it matches this client. "If any unexpected field
 * name is present in this object, the entire config is considered
 * invalid"; its serviceConfig must be an object even when not chosen. */
static int read_choice(parser_t *p, const json_t *v, const char *hostname,
                       unsigned draw, int *match) {
  if (!json_is_object(v)) return fail(p, "must be an object");
  const char *key;
  json_t *value;
  json_object_foreach((json_t *)v, key, value) {
    if (strcmp(key, "clientLanguage") != 0 && strcmp(key, "percentage") != 0 &&
        strcmp(key, "clientHostname") != 0 && strcmp(key, "serviceConfig") != 0)
      return fail(p, "unexpected field \"%s\"", key);
  }
  const json_t *sc = json_object_get(v, "serviceConfig");
  if (sc == NULL || !json_is_object(sc)) {
    push_field(p, "serviceConfig");
    return fail(p, sc == NULL ? "is required" : "must be an object");
  }
  int language = 1, percentage = 1, host = 1;
  OPTIONAL_FIELD(p, v, "clientLanguage", read_criterion,
                 UVG__SERVICE_CONFIG_LANGUAGE, 1, &language);
  OPTIONAL_FIELD(p, v, "percentage", read_percentage, draw, &percentage);
  OPTIONAL_FIELD(p, v, "clientHostname", read_criterion, hostname, 0, &host);
  *match = language && percentage && host;
  return 0;
}

int uvg__service_config_parse_choices(const char *json, size_t len,
                                      const char *hostname, unsigned draw,
                                      uvg__lb_supported_cb supported, void *arg,
                                      uvg__service_config_t **out, char *err,
                                      size_t errlen) {
  parser_t p = {.err = err, .errlen = errlen};
  int rc = check_arguments(&p, json, supported, out);
  if (rc != 0) return rc;
  json_t *root = load_json(&p, json, len, &rc);
  if (root == NULL) return rc;
  if (!json_is_array(root)) {
    rc = fail(&p, "the service config choices must be a JSON list");
  } else {
    for (size_t i = 0; i < json_array_size(root); i++) {
      const json_t *choice = json_array_get(root, i);
      int match = 0;
      size_t mark = push_index(&p, i);
      if ((rc = read_choice(&p, choice, hostname, draw, &match)) != 0) break;
      if (match) {
        /* A21: "Only the chosen service config affects the validation". */
        push_field(&p, "serviceConfig");
        rc = new_config(&p, json_object_get(choice, "serviceConfig"), supported,
                        arg, out);
        break;
      }
      pop(&p, mark);
    }
  }
  json_decref(root);
  return rc;
}

uvg__service_config_t *uvg__service_config_ref(uvg__service_config_t *sc) {
  sc->refs++;
  return sc;
}

void uvg__service_config_unref(uvg__service_config_t *sc) {
  if (sc != NULL && --sc->refs == 0) free_config(sc);
}

/* ====================================================================== */
/* Lookup */

/* strcmp() between the `n` bytes at `a` and the string `b`. */
static int compare_span(const char *a, size_t n, const char *b) {
  size_t m = strlen(b);
  int c = memcmp(a, b, n < m ? n : m);
  if (c != 0) return c;
  return n < m ? -1 : n > m;
}

static const uvg__method_config_t *find(const uvg__service_config_t *sc,
                                        const char *service, size_t slen,
                                        const char *method, size_t mlen) {
  size_t lo = 0, hi = sc->nnames;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const uvg__method_name_t *e = &sc->names[mid];
    int c = compare_span(service, slen, e->service);
    if (c == 0) c = compare_span(method, mlen, e->method);
    if (c == 0) return e->config;
    if (c < 0)
      hi = mid;
    else
      lo = mid + 1;
  }
  return NULL;
}

const uvg__method_config_t *uvg__service_config_method(
    const uvg__service_config_t *sc, const char *path) {
  if (sc == NULL || sc->nnames == 0) return NULL;
  const char *slash =
      path != NULL && path[0] == '/' ? strchr(path + 1, '/') : NULL;
  if (slash != NULL && slash > path + 1) {
    const char *service = path + 1, *method = slash + 1;
    size_t slen = (size_t)(slash - service), mlen = strlen(method);
    const uvg__method_config_t *mc;
    if (mlen > 0 && (mc = find(sc, service, slen, method, mlen)) != NULL)
      return mc;
    if ((mc = find(sc, service, slen, "", 0)) != NULL) return mc;
  }
  return find(sc, "", 0, "", 0);
}

/* The service config (doc/service_config.md, gRFC A2, A6, A17, A21, A24):
 * every field read into its value, every invalid field rejecting the whole
 * config with a message naming it, the examples of the docs, name
 * precedence, protobuf JSON durations, and allocation failure. */
#include "client/service_config.h"

#include <stdint.h>
#include <stdlib.h>

#include "test.h"

static char err[512];

/* The channel of these tests knows pick_first, round_robin and
 * weighted_round_robin; it counts the questions and keeps the last. */
static int asked;
static char last_asked[64];
static int known_policy(const char *name, const char *config, void *arg) {
  CHECK(arg == &asked);
  asked++;
  snprintf(last_asked, sizeof(last_asked), "%s", name);
  /* weighted_round_robin refuses a config with a "refuse" field */
  if (strcmp(name, "weighted_round_robin") == 0)
    return strstr(config, "\"refuse\"") == NULL ? 1 : -1;
  return strcmp(name, "pick_first") == 0 || strcmp(name, "round_robin") == 0;
}

/* Parses `json`, which must be valid; the caller unrefs the result. */
static uvg__service_config_t *parse(const char *json) {
  uvg__service_config_t *sc = NULL;
  memset(err, 'x', sizeof(err));
  int rc = uvg__service_config_parse(json, strlen(json), known_policy, &asked,
                                     &sc, err, sizeof(err));
  if (rc != 0) fprintf(stderr, "  %s\n  -> %d %s\n", json, rc, err);
  CHECK_EQ(rc, 0);
  CHECK(rc != 0 || (sc != NULL && err[0] == '\0' && sc->refs == 1));
  return rc == 0 ? sc : NULL;
}

/* `json` must be rejected whole with exactly `msg`. */
#define CHECK_INVALID(json, msg)                                             \
  do {                                                                       \
    uvg__service_config_t *sc_ = (uvg__service_config_t *)&err;              \
    const char *j_ = (json);                                                 \
    CHECK_EQ(uvg__service_config_parse(j_, strlen(j_), known_policy, &asked, \
                                       &sc_, err, sizeof(err)),              \
             UVG_EINVAL);                                                    \
    CHECK(sc_ == NULL);                                                      \
    CHECK_STR(err, (msg));                                                   \
  } while (0)

/* A config of one methodConfig with `fields` and name {service: "s"}. */
static const char *mc(const char *fields) {
  static char buf[2048];
  snprintf(buf, sizeof(buf),
           "{\"methodConfig\": [{\"name\": [{\"service\": \"s\"}]%s%s}]}",
           fields[0] ? ", " : "", fields);
  return buf;
}

/* The method config of service "s" in `sc`. */
static const uvg__method_config_t *s_config(const uvg__service_config_t *sc) {
  return sc != NULL ? uvg__service_config_method(sc, "/s/M") : NULL;
}

static void test_empty_config(void) {
  const char *empties[] = {
      "{}",
      " { } ",
      "{\"methodConfig\": []}",
      /* proto3 JSON: null is the default value, that is, absent */
      "{\"loadBalancingConfig\": null, \"loadBalancingPolicy\": null, "
      "\"methodConfig\": null, \"retryThrottling\": null, "
      "\"healthCheckConfig\": null}",
      /* A21: "Unknown fields are allowed" */
      "{\"UnknownField\": \"value\", \"methodConfig\": [], \"x\": {\"y\": "
      "[1]}}",
  };
  for (size_t i = 0; i < UVG__ARRAY_SIZE(empties); i++) {
    uvg__service_config_t *sc = parse(empties[i]);
    if (sc == NULL) continue;
    CHECK(sc->lb_policy == NULL && sc->lb_config == NULL);
    CHECK_EQ(sc->has_retry_throttling, 0);
    CHECK(sc->health_check_service == NULL);
    CHECK_EQ(sc->nnames, 0);
    CHECK(uvg__service_config_method(sc, "/a.B/C") == NULL);
    uvg__service_config_unref(sc);
  }
}

/* doc/service_config.md's example, in JSON form. */
static void test_doc_example(void) {
  uvg__service_config_t *sc = parse(
      "{\n"
      "  \"loadBalancingConfig\": [ { \"round_robin\": {} } ],\n"
      "  \"methodConfig\": [\n"
      "    {\n"
      "      \"name\": [\n"
      "        { \"service\": \"foo\", \"method\": \"bar\" },\n"
      "        { \"service\": \"baz\" }\n"
      "      ],\n"
      "      \"timeout\": \"1.000000001s\"\n"
      "    }\n"
      "  ]\n"
      "}");
  if (sc == NULL) return;
  CHECK_STR(sc->lb_policy, "round_robin");
  CHECK_STR(sc->lb_config, "{}");
  CHECK_EQ(sc->nmethods, 1);
  CHECK_EQ(sc->nnames, 2);
  const uvg__method_config_t *m = uvg__service_config_method(sc, "/foo/bar");
  CHECK(m == &sc->methods[0]);
  CHECK(uvg__service_config_method(sc, "/baz/Anything") == m);
  CHECK(uvg__service_config_method(sc, "/foo/other") == NULL);
  CHECK(uvg__service_config_method(sc, "/other/bar") == NULL);
  CHECK_EQ(m->has_timeout, 1);
  CHECK_EQ(m->timeout.seconds, 1);
  CHECK_EQ(m->timeout.nanos, 1);
  CHECK_EQ(uvg__duration_ms(&m->timeout), 1001); /* rounded up */
  CHECK_EQ(m->wait_for_ready, -1);
  CHECK_EQ(m->has_max_request_bytes, 0);
  CHECK_EQ(m->has_max_response_bytes, 0);
  CHECK_EQ(m->policy, UVG__POLICY_NONE);
  uvg__service_config_unref(sc);
}

/* gRFC A2's TXT record example: its serviceConfig. */
static void test_a2_example(void) {
  uvg__service_config_t *sc = parse(
      "{\"loadBalancingPolicy\":\"round_robin\",\"methodConfig\":[{\"name\":"
      "[{\"service\":\"MyService\",\"method\":\"Foo\"}],\"waitForReady\":true}"
      "]}");
  if (sc == NULL) return;
  CHECK_STR(sc->lb_policy, "round_robin");
  CHECK_STR(sc->lb_config, "{}");
  const uvg__method_config_t *m =
      uvg__service_config_method(sc, "/MyService/Foo");
  CHECK(m != NULL && m->wait_for_ready == 1);
  CHECK(uvg__service_config_method(sc, "/MyService/Bar") == NULL);
  uvg__service_config_unref(sc);
}

/* service_config.proto: "the most specific match wins": MyService/Foo
 * the third entry, MyService/Bar the second, AnotherService/Baz the
 * first; in every order the entries may come. */
static void test_precedence(void) {
  static const char *const entries[3] = {
      "{\"name\": [{}], \"timeout\": \"1s\"}",
      "{\"name\": [{\"service\": \"MyService\"}], \"timeout\": \"2s\"}",
      "{\"name\": [{\"service\": \"MyService\", \"method\": \"Foo\"}], "
      "\"timeout\": \"3s\"}"};
  static const int orders[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2},
                                   {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
  for (int o = 0; o < 6; o++) {
    char json[1024];
    snprintf(json, sizeof(json), "{\"methodConfig\": [%s, %s, %s]}",
             entries[orders[o][0]], entries[orders[o][1]],
             entries[orders[o][2]]);
    uvg__service_config_t *sc = parse(json);
    if (sc == NULL) continue;
    const uvg__method_config_t *m;
    m = uvg__service_config_method(sc, "/MyService/Foo");
    CHECK(m != NULL && m->timeout.seconds == 3);
    m = uvg__service_config_method(sc, "/MyService/Bar");
    CHECK(m != NULL && m->timeout.seconds == 2);
    m = uvg__service_config_method(sc, "/AnotherService/Baz");
    CHECK(m != NULL && m->timeout.seconds == 1);
    /* An empty method is the service's own default. */
    m = uvg__service_config_method(sc, "/MyService/");
    CHECK(m != NULL && m->timeout.seconds == 2);
    /* Paths not of the form /service/method get the default only. */
    static const char *const odd[] = {
        "MyService/Foo", "/MyService", "", "//Foo", "/", "MyService"};
    for (size_t i = 0; i < UVG__ARRAY_SIZE(odd); i++) {
      m = uvg__service_config_method(sc, odd[i]);
      CHECK(m != NULL && m->timeout.seconds == 1);
    }
    /* Names compare exactly: case, prefixes and extensions differ. */
    static const char *const other[] = {"/myservice/Foo", "/MyService.x/Foo",
                                        "/MyServic/Foo", "/My/Foo"};
    for (size_t i = 0; i < UVG__ARRAY_SIZE(other); i++) {
      m = uvg__service_config_method(sc, other[i]);
      CHECK(m != NULL && m->timeout.seconds == 1);
    }
    m = uvg__service_config_method(sc, "/MyService/foo");
    CHECK(m != NULL && m->timeout.seconds == 2);
    m = uvg__service_config_method(sc, "/MyService/Foo2");
    CHECK(m != NULL && m->timeout.seconds == 2);
    m = uvg__service_config_method(sc, "/MyService/Fo");
    CHECK(m != NULL && m->timeout.seconds == 2);
    uvg__service_config_unref(sc);
  }

  /* Without a default config, an unmatched path has no config; with only
   * exact names, the service's other methods have none either. */
  uvg__service_config_t *sc = parse(mc("\"timeout\": \"5s\""));
  if (sc != NULL) {
    CHECK(uvg__service_config_method(sc, "/s/Any") != NULL);
    CHECK(uvg__service_config_method(sc, "/t/Any") == NULL);
    CHECK(uvg__service_config_method(sc, "bad") == NULL);
    uvg__service_config_unref(sc);
  }
  sc = parse(
      "{\"methodConfig\": [{\"name\": [{\"service\": \"s\", "
      "\"method\": \"A\"}], \"timeout\": \"5s\"}]}");
  if (sc != NULL) {
    CHECK(uvg__service_config_method(sc, "/s/A") != NULL);
    CHECK(uvg__service_config_method(sc, "/s/B") == NULL);
    CHECK(uvg__service_config_method(sc, "/s/") == NULL);
    uvg__service_config_unref(sc);
  }
}

/* Many names across configs: each path finds its own. */
static void test_many_names(void) {
  static char json[64 * 1024];
  size_t n = 0;
  n += (size_t)snprintf(json + n, sizeof(json) - n, "{\"methodConfig\": [");
  for (int i = 0; i < 40; i++) {
    n += (size_t)snprintf(
        json + n, sizeof(json) - n,
        "%s{\"name\": [{\"service\": \"svc%d\"}, {\"service\": \"svc%d\", "
        "\"method\": \"M%d\"}, {\"service\": \"pkg.S\", \"method\": \"m%d\"}]"
        ", \"maxRequestMessageBytes\": %d}",
        i ? ", " : "", i, (i * 7) % 40, i, i, i);
  }
  snprintf(json + n, sizeof(json) - n, "]}");
  uvg__service_config_t *sc = parse(json);
  if (sc == NULL) return;
  CHECK_EQ(sc->nmethods, 40);
  CHECK_EQ(sc->nnames, 120);
  int bad = 0;
  for (int i = 0; i < 40; i++) {
    char path[64];
    snprintf(path, sizeof(path), "/svc%d/Other", i);
    const uvg__method_config_t *m = uvg__service_config_method(sc, path);
    bad += m == NULL || m->max_request_bytes != (uint32_t)i;
    /* methodConfig[i] names svc((i*7)%40)/M(i). */
    snprintf(path, sizeof(path), "/svc%d/M%d", (i * 7) % 40, i);
    m = uvg__service_config_method(sc, path);
    bad += m == NULL || m->max_request_bytes != (uint32_t)i;
    snprintf(path, sizeof(path), "/pkg.S/m%d", i);
    m = uvg__service_config_method(sc, path);
    bad += m == NULL || m->max_request_bytes != (uint32_t)i;
  }
  CHECK_EQ(bad, 0);
  CHECK(uvg__service_config_method(sc, "/pkg.S/m40") == NULL);
  CHECK(uvg__service_config_method(sc, "/svc40/M1") == NULL);
  uvg__service_config_unref(sc);
}

static void test_names(void) {
  /* "value "", value `null`, and not present are the same" */
  static const char *const defaults[] = {
      "{}",
      "{\"service\": \"\"}",
      "{\"service\": null}",
      "{\"service\": \"\", \"method\": \"\"}",
      "{\"service\": null, \"method\": null}",
      "{\"unknown\": 1}"};
  for (size_t i = 0; i < UVG__ARRAY_SIZE(defaults); i++) {
    char json[256];
    snprintf(json, sizeof(json),
             "{\"methodConfig\": [{\"name\": [%s], \"timeout\": \"7s\"}]}",
             defaults[i]);
    uvg__service_config_t *sc = parse(json);
    if (sc == NULL) continue;
    CHECK_EQ(sc->nnames, 1);
    CHECK_STR(sc->names[0].service, "");
    CHECK_STR(sc->names[0].method, "");
    const uvg__method_config_t *m = uvg__service_config_method(sc, "/x/y");
    CHECK(m != NULL && m->timeout.seconds == 7);
    uvg__service_config_unref(sc);
  }
  static const char *const service_defaults[] = {
      "{\"service\": \"s\"}", "{\"service\": \"s\", \"method\": \"\"}",
      "{\"service\": \"s\", \"method\": null}"};
  for (size_t i = 0; i < UVG__ARRAY_SIZE(service_defaults); i++) {
    char json[256];
    snprintf(json, sizeof(json),
             "{\"methodConfig\": [{\"name\": [%s], \"timeout\": \"7s\"}]}",
             service_defaults[i]);
    uvg__service_config_t *sc = parse(json);
    if (sc == NULL) continue;
    CHECK(uvg__service_config_method(sc, "/s/y") != NULL);
    CHECK(uvg__service_config_method(sc, "/t/y") == NULL);
    uvg__service_config_unref(sc);
  }

  CHECK_INVALID("{\"methodConfig\": [{\"name\": [{\"method\": \"Foo\"}]}]}",
                "methodConfig[0].name[0]: method \"Foo\" without a service");
  CHECK_INVALID(
      "{\"methodConfig\": [{\"name\": [{\"service\": \"\", "
      "\"method\": \"Foo\"}]}]}",
      "methodConfig[0].name[0]: method \"Foo\" without a service");
  CHECK_INVALID("{\"methodConfig\": [{\"name\": {\"service\": \"s\"}}]}",
                "methodConfig[0].name: must be a list");
  CHECK_INVALID("{\"methodConfig\": [{\"name\": [{}, \"s\"]}]}",
                "methodConfig[0].name[1]: must be an object");
  CHECK_INVALID("{\"methodConfig\": [{\"name\": [{\"service\": 5}]}]}",
                "methodConfig[0].name[0].service: must be a string");
  CHECK_INVALID(
      "{\"methodConfig\": [{\"name\": [{\"service\": \"s\", \"method\": "
      "[]}]}]}",
      "methodConfig[0].name[0].method: must be a string");
  CHECK_INVALID("{\"methodConfig\": {}}", "methodConfig: must be a list");
  CHECK_INVALID("{\"methodConfig\": [{}, 3]}",
                "methodConfig[1]: must be an object");
}

/* service_config.proto: "Each name entry must be unique across the entire
 * ServiceConfig." The message names the repeat and the first. */
static void test_duplicate_names(void) {
  CHECK_INVALID(
      "{\"methodConfig\": [{\"name\": [{\"service\": \"a\", \"method\": "
      "\"b\"}]}, {\"name\": [{\"service\": \"c\"}, {\"service\": \"a\", "
      "\"method\": \"b\"}]}]}",
      "methodConfig[1].name[1]: repeats methodConfig[0].name[0]");
  CHECK_INVALID(
      "{\"methodConfig\": [{\"name\": [{\"service\": \"a\"}, "
      "{\"service\": \"a\", \"method\": \"\"}]}]}",
      "methodConfig[0].name[1]: repeats methodConfig[0].name[0]");
  CHECK_INVALID(
      "{\"methodConfig\": [{\"name\": [{}]}, {\"name\": [{\"x\": "
      "1}]}, {\"name\": [{\"service\": null}]}]}",
      "methodConfig[1].name[0]: repeats methodConfig[0].name[0]");
  /* The same method in two services, the same service with two methods:
   * different names. */
  uvg__service_config_t *sc = parse(
      "{\"methodConfig\": [{\"name\": [{\"service\": \"a\", \"method\": "
      "\"m\"}, {\"service\": \"b\", \"method\": \"m\"}]}, {\"name\": "
      "[{\"service\": \"a\", \"method\": \"n\"}, {\"service\": \"a\"}, {}]}]}");
  if (sc != NULL) {
    CHECK_EQ(sc->nnames, 5);
    CHECK(uvg__service_config_method(sc, "/a/m") == &sc->methods[0]);
    CHECK(uvg__service_config_method(sc, "/b/m") == &sc->methods[0]);
    CHECK(uvg__service_config_method(sc, "/a/n") == &sc->methods[1]);
    CHECK(uvg__service_config_method(sc, "/a/o") == &sc->methods[1]);
    CHECK(uvg__service_config_method(sc, "/b/o") == &sc->methods[1]);
    uvg__service_config_unref(sc);
  }
}

/* service_config.proto: "MethodConfig without names (empty list) will be
 * skipped"; A21 still has its fields validated. */
static void test_methods_without_names(void) {
  uvg__service_config_t *sc = parse(
      "{\"methodConfig\": [{\"timeout\": \"1s\"}, {\"name\": [], "
      "\"timeout\": \"2s\"}, {\"name\": null}]}");
  if (sc != NULL) {
    CHECK_EQ(sc->nmethods, 3);
    CHECK_EQ(sc->nnames, 0);
    CHECK(uvg__service_config_method(sc, "/s/m") == NULL);
    uvg__service_config_unref(sc);
  }
  CHECK_INVALID("{\"methodConfig\": [{\"name\": [], \"timeout\": \"1\"}]}",
                "methodConfig[0].timeout: \"1\" must end in 's'");
}

static void test_wait_for_ready(void) {
  uvg__service_config_t *sc = parse(mc("\"waitForReady\": true"));
  CHECK(sc != NULL && s_config(sc)->wait_for_ready == 1);
  uvg__service_config_unref(sc);
  sc = parse(mc("\"waitForReady\": false"));
  CHECK(sc != NULL && s_config(sc)->wait_for_ready == 0);
  uvg__service_config_unref(sc);
  sc = parse(mc("\"waitForReady\": null"));
  CHECK(sc != NULL && s_config(sc)->wait_for_ready == -1);
  uvg__service_config_unref(sc);
  CHECK_INVALID(mc("\"waitForReady\": \"true\""),
                "methodConfig[0].waitForReady: must be true or false");
  CHECK_INVALID(mc("\"waitForReady\": 1"),
                "methodConfig[0].waitForReady: must be true or false");
}

/* protobuf JSON Durations, read exactly. */
static void test_durations(void) {
  static const struct {
    const char *s;
    uint64_t sec;
    uint32_t nanos;
    uint64_t ms;
  } good[] = {
      {"1s", 1, 0, 1000},
      {"1.5s", 1, 500000000, 1500},
      {"10s", 10, 0, 10000},
      {"0s", 0, 0, 0},
      {"0.0s", 0, 0, 0},
      {"0.000000001s", 0, 1, 1}, /* a positive duration is never 0 ms */
      {"0.001s", 0, 1000000, 1},
      {"0.0015s", 0, 1500000, 2},
      {"0.999999999s", 0, 999999999, 1000},
      {"1.000340012s", 1, 340012, 1001},
      {"1.100s", 1, 100000000, 1100},
      {"01s", 1, 0, 1000},
      {"315576000000s", 315576000000u, 0, 315576000000000u},
      {"315576000000.999999999s", 315576000000u, 999999999, 315576000001000u},
  };
  for (size_t i = 0; i < UVG__ARRAY_SIZE(good); i++) {
    uvg__duration_t d = {99, 99};
    const char *why = NULL;
    CHECK_EQ(uvg__duration_parse(good[i].s, strlen(good[i].s), &d, &why), 0);
    CHECK_EQ(d.seconds, good[i].sec);
    CHECK_EQ(d.nanos, good[i].nanos);
    CHECK_EQ(uvg__duration_ms(&d), good[i].ms);
    CHECK(why == NULL);
  }
  static const struct {
    const char *s, *why;
  } bad[] = {
      {"1", "must end in 's'"},
      {"", "must end in 's'"},
      {"1S", "must end in 's'"},
      {"1s ", "must end in 's'"},
      {"1ms", "is not a number of seconds"},
      {"1.s", "is not a number of seconds"},
      {".5s", "is not a number of seconds"},
      {"s", "is not a number of seconds"},
      {"-1s", "must not be negative"},
      {"-0s", "must not be negative"},
      {"+1s", "is not a number of seconds"},
      {" 1s", "is not a number of seconds"},
      {"1 s", "is not a number of seconds"},
      {"1e3s", "is not a number of seconds"},
      {"1.5.5s", "is not a number of seconds"},
      {"0x10s", "is not a number of seconds"},
      {"1ss", "is not a number of seconds"},
      {"1,5s", "is not a number of seconds"},
      {"1.0000000001s", "has more than 9 fractional digits"},
      {"0.0000000000s", "has more than 9 fractional digits"},
      {"315576000001s", "is out of range"},
      {"315576000000000000000000000000s", "is out of range"},
  };
  for (size_t i = 0; i < UVG__ARRAY_SIZE(bad); i++) {
    uvg__duration_t d = {99, 99};
    const char *why = NULL;
    CHECK_EQ(uvg__duration_parse(bad[i].s, strlen(bad[i].s), &d, &why),
             UVG_EINVAL);
    CHECK_STR(why, bad[i].why);
    CHECK(d.seconds == 99 && d.nanos == 99);
    /* `why` may be NULL */
    CHECK_EQ(uvg__duration_parse(bad[i].s, strlen(bad[i].s), &d, NULL),
             UVG_EINVAL);
  }
  /* The length bounds the text: no NUL needed. */
  uvg__duration_t d;
  CHECK_EQ(uvg__duration_parse("2sxyz", 2, &d, NULL), 0);
  CHECK_EQ(d.seconds, 2);
  CHECK(uvg__duration_ms_f(&(uvg__duration_t){1, 500000}) == 1000.5);

  /* In a config: the timeout, with the field named in the message. */
  uvg__service_config_t *sc = parse(mc("\"timeout\": \"0.25s\""));
  if (sc != NULL) {
    const uvg__method_config_t *m = s_config(sc);
    CHECK(m->has_timeout && m->timeout.seconds == 0 &&
          m->timeout.nanos == 250000000);
    uvg__service_config_unref(sc);
  }
  sc = parse(mc("\"timeout\": \"0s\""));
  CHECK(sc != NULL && s_config(sc)->has_timeout &&
        uvg__duration_is_zero(&s_config(sc)->timeout));
  uvg__service_config_unref(sc);
  CHECK_INVALID(mc("\"timeout\": \"1.s\""),
                "methodConfig[0].timeout: \"1.s\" is not a number of seconds");
  CHECK_INVALID(mc("\"timeout\": \"-1s\""),
                "methodConfig[0].timeout: \"-1s\" must not be negative");
  CHECK_INVALID(mc("\"timeout\": \"1.0000000001s\""),
                "methodConfig[0].timeout: \"1.0000000001s\" has more than 9 "
                "fractional digits");
  CHECK_INVALID(mc("\"timeout\": 1"),
                "methodConfig[0].timeout: must be a duration string such as "
                "\"1.5s\"");
  CHECK_INVALID(mc("\"timeout\": {\"seconds\": 1}"),
                "methodConfig[0].timeout: must be a duration string such as "
                "\"1.5s\"");
}

static void test_message_sizes(void) {
  uvg__service_config_t *sc =
      parse(mc("\"maxRequestMessageBytes\": 0, \"maxResponseMessageBytes\": "
               "4294967295"));
  if (sc != NULL) {
    const uvg__method_config_t *m = s_config(sc);
    CHECK(m->has_max_request_bytes && m->max_request_bytes == 0);
    CHECK(m->has_max_response_bytes && m->max_response_bytes == 4294967295u);
    uvg__service_config_unref(sc);
  }
  /* proto3 JSON: integers may be strings; 1e3 and 1024.0 are integers. */
  sc =
      parse(mc("\"maxRequestMessageBytes\": \"1048576\", "
               "\"maxResponseMessageBytes\": 1e3"));
  if (sc != NULL) {
    CHECK_EQ(s_config(sc)->max_request_bytes, 1048576);
    CHECK_EQ(s_config(sc)->max_response_bytes, 1000);
    uvg__service_config_unref(sc);
  }
  sc = parse(mc("\"maxResponseMessageBytes\": 1024.0"));
  CHECK(sc != NULL && s_config(sc)->max_response_bytes == 1024 &&
        !s_config(sc)->has_max_request_bytes);
  uvg__service_config_unref(sc);

  static const struct {
    const char *v, *msg;
  } bad[] = {
      {"-1", "must not be negative"},
      {"\"-5\"", "must not be negative"},
      {"4294967296", "must be at most 4294967295"},
      {"\"99999999999999999999999\"", "must be at most 4294967295"},
      {"1e300", "must be at most 4294967295"},
      {"1.5", "must be an integer"},
      {"\"1.5\"", "must be an integer"},
      {"\"12a\"", "must be an integer"},
      {"\"\"", "must be an integer"},
      {"\"-\"", "must be an integer"},
      {"\" 1\"", "must be an integer"},
      {"true", "must be an integer"},
      {"[1]", "must be an integer"},
  };
  for (size_t i = 0; i < UVG__ARRAY_SIZE(bad); i++) {
    char fields[128], msg[128];
    snprintf(fields, sizeof(fields), "\"maxResponseMessageBytes\": %s",
             bad[i].v);
    snprintf(msg, sizeof(msg), "methodConfig[0].maxResponseMessageBytes: %s",
             bad[i].msg);
    CHECK_INVALID(mc(fields), msg);
    snprintf(fields, sizeof(fields), "\"maxRequestMessageBytes\": %s",
             bad[i].v);
    snprintf(msg, sizeof(msg), "methodConfig[0].maxRequestMessageBytes: %s",
             bad[i].msg);
    CHECK_INVALID(mc(fields), msg);
  }
}

#define A6_RETRY                                                         \
  "\"retryPolicy\": {\"maxAttempts\": 4, \"initialBackoff\": \"0.1s\", " \
  "\"maxBackoff\": \"1s\", \"backoffMultiplier\": 2, "                   \
  "\"retryableStatusCodes\": [\"UNAVAILABLE\"]}"

#define BIT(code) (1u << (code))

/* gRFC A6's retry policy example, read field by field. */
static void test_retry_policy(void) {
  uvg__service_config_t *sc = parse(mc(A6_RETRY));
  if (sc != NULL) {
    const uvg__method_config_t *m = s_config(sc);
    CHECK_EQ(m->policy, UVG__POLICY_RETRY);
    const uvg__retry_policy_t *r = &m->retry;
    CHECK_EQ(r->max_attempts, 4);
    CHECK(r->initial_backoff.seconds == 0 &&
          r->initial_backoff.nanos == 100000000);
    CHECK(r->max_backoff.seconds == 1 && r->max_backoff.nanos == 0);
    CHECK(r->backoff_multiplier == 2.0);
    CHECK_EQ(r->retryable_codes, BIT(UVG_STATUS_UNAVAILABLE));
    CHECK_EQ(r->has_per_attempt_recv_timeout, 0);
    uvg__service_config_unref(sc);
  }

  /* Codes as names in any case, as numbers, repeated; every other field
   * in its other forms; unknown fields ignored. */
  sc = parse(
      mc("\"retryPolicy\": {\"maxAttempts\": \"2\", \"initialBackoff\": "
         "\"0.000000001s\", \"maxBackoff\": \"315576000000s\", "
         "\"backoffMultiplier\": \"1.5\", \"retryableStatusCodes\": "
         "[\"unavailable\", 4, \"Internal\", 14, 0, 16.0, \"data_loss\"], "
         "\"perAttemptRecvTimeout\": \"2.5s\", \"futureField\": [1]}"));
  if (sc != NULL) {
    const uvg__retry_policy_t *r = &s_config(sc)->retry;
    CHECK_EQ(r->max_attempts, 2);
    CHECK_EQ(r->initial_backoff.nanos, 1);
    CHECK_EQ(r->max_backoff.seconds, 315576000000u);
    CHECK(r->backoff_multiplier == 1.5);
    CHECK_EQ(r->retryable_codes,
             BIT(14) | BIT(4) | BIT(13) | BIT(0) | BIT(16) | BIT(15));
    CHECK_EQ(r->has_per_attempt_recv_timeout, 1);
    CHECK(r->per_attempt_recv_timeout.seconds == 2 &&
          r->per_attempt_recv_timeout.nanos == 500000000);
    uvg__service_config_unref(sc);
  }

  /* A6: "Values greater than 5 are treated as 5 without being considered
   * a validation error." */
  static const char *const big[] = {"6",
                                    "5",
                                    "1000",
                                    "\"7\"",
                                    "1e30",
                                    "9223372036854775807",
                                    "\"99999999999999999999\""};
  for (size_t i = 0; i < UVG__ARRAY_SIZE(big); i++) {
    char fields[512];
    snprintf(fields, sizeof(fields),
             "\"retryPolicy\": {\"maxAttempts\": %s, \"initialBackoff\": "
             "\"1s\", \"maxBackoff\": \"1s\", \"backoffMultiplier\": 1, "
             "\"retryableStatusCodes\": [14]}",
             big[i]);
    sc = parse(mc(fields));
    CHECK(sc != NULL && s_config(sc)->retry.max_attempts == 5);
    uvg__service_config_unref(sc);
  }
  /* A multiplier below 1 is greater than 0, so allowed. */
  sc = parse(
      mc("\"retryPolicy\": {\"maxAttempts\": 3, \"initialBackoff\": \"1s\", "
         "\"maxBackoff\": \"0.5s\", \"backoffMultiplier\": 0.5, "
         "\"retryableStatusCodes\": [\"ABORTED\"]}"));
  CHECK(sc != NULL && s_config(sc)->retry.backoff_multiplier == 0.5);
  uvg__service_config_unref(sc);
  /* The retry policy comes with the method's other fields. */
  sc = parse(mc("\"waitForReady\": true, \"timeout\": \"30s\", " A6_RETRY));
  CHECK(sc != NULL && s_config(sc)->wait_for_ready == 1 &&
        s_config(sc)->policy == UVG__POLICY_RETRY &&
        s_config(sc)->timeout.seconds == 30);
  uvg__service_config_unref(sc);
}

/* A retry policy with one field replaced by `field: value` (or removed
 * when value is NULL) must fail with `msg` after the field's path. */
static void check_bad_retry(const char *field, const char *value,
                            const char *msg) {
  static const char *const names[] = {"maxAttempts", "initialBackoff",
                                      "maxBackoff", "backoffMultiplier",
                                      "retryableStatusCodes"};
  static const char *const values[] = {"3", "\"0.1s\"", "\"1s\"", "2",
                                       "[\"UNAVAILABLE\"]"};
  char fields[1024];
  size_t n = (size_t)snprintf(fields, sizeof(fields), "\"retryPolicy\": {");
  int first = 1, replaced = 0;
  for (size_t i = 0; i < UVG__ARRAY_SIZE(names); i++) {
    const char *v = values[i];
    if (strcmp(names[i], field) == 0) {
      v = value;
      replaced = 1;
    }
    if (v == NULL) continue;
    n += (size_t)snprintf(fields + n, sizeof(fields) - n, "%s\"%s\": %s",
                          first ? "" : ", ", names[i], v);
    first = 0;
  }
  if (!replaced)
    n += (size_t)snprintf(fields + n, sizeof(fields) - n, ", \"%s\": %s", field,
                          value);
  snprintf(fields + n, sizeof(fields) - n, "}");
  char want[256];
  snprintf(want, sizeof(want), "methodConfig[0].retryPolicy.%s%s%s", field,
           msg[0] == '[' ? "" : ": ", msg);
  CHECK_INVALID(mc(fields), want);
}

static void test_retry_policy_invalid(void) {
  check_bad_retry("maxAttempts", NULL, "is required");
  check_bad_retry("maxAttempts", "null", "is required");
  check_bad_retry("maxAttempts", "1", "must be at least 2");
  check_bad_retry("maxAttempts", "0", "must be at least 2");
  check_bad_retry("maxAttempts", "-3", "must be at least 2");
  check_bad_retry("maxAttempts", "\"-9999999999999999999999\"",
                  "must be at least 2");
  check_bad_retry("maxAttempts", "2.5", "must be an integer");
  check_bad_retry("maxAttempts", "\"three\"", "must be an integer");
  check_bad_retry("maxAttempts", "false", "must be an integer");
  check_bad_retry("initialBackoff", NULL, "is required");
  check_bad_retry("initialBackoff", "\"0s\"", "must be greater than 0");
  check_bad_retry("initialBackoff", "\"0.000000000s\"",
                  "must be greater than 0");
  check_bad_retry("initialBackoff", "\"-0.1s\"",
                  "\"-0.1s\" must not be negative");
  check_bad_retry("initialBackoff", "0.1",
                  "must be a duration string such as \"1.5s\"");
  check_bad_retry("maxBackoff", NULL, "is required");
  check_bad_retry("maxBackoff", "\"0s\"", "must be greater than 0");
  check_bad_retry("maxBackoff", "\"1\"", "\"1\" must end in 's'");
  check_bad_retry("backoffMultiplier", NULL, "is required");
  check_bad_retry("backoffMultiplier", "0", "must be greater than 0");
  check_bad_retry("backoffMultiplier", "-2", "must be greater than 0");
  check_bad_retry("backoffMultiplier", "\"0\"", "must be greater than 0");
  check_bad_retry("backoffMultiplier", "\"two\"", "must be a number");
  check_bad_retry("backoffMultiplier", "\"inf\"", "must be a number");
  check_bad_retry("backoffMultiplier", "\"nan\"", "must be a number");
  check_bad_retry("backoffMultiplier", "\"0x10\"", "must be a number");
  check_bad_retry("backoffMultiplier", "\" 2\"", "must be a number");
  check_bad_retry("backoffMultiplier", "\"1e999\"", "must be a number");
  check_bad_retry("backoffMultiplier", "\"\"", "must be a number");
  check_bad_retry("backoffMultiplier", "[2]", "must be a number");
  check_bad_retry("retryableStatusCodes", NULL, "is required");
  check_bad_retry("retryableStatusCodes", "[]", "must not be empty");
  check_bad_retry("retryableStatusCodes", "\"UNAVAILABLE\"",
                  "must be a list of status codes");
  check_bad_retry("retryableStatusCodes", "14",
                  "must be a list of status codes");
  check_bad_retry("retryableStatusCodes", "[\"UNAVAILABLE\", \"FOO\"]",
                  "[1]: \"FOO\" is not a status code");
  check_bad_retry("retryableStatusCodes", "[\"CANCELED\"]",
                  "[0]: \"CANCELED\" is not a status code");
  check_bad_retry("retryableStatusCodes", "[\"\"]",
                  "[0]: \"\" is not a status code");
  check_bad_retry("retryableStatusCodes", "[\" UNAVAILABLE\"]",
                  "[0]: \" UNAVAILABLE\" is not a status code");
  check_bad_retry("retryableStatusCodes", "[\"14\"]",
                  "[0]: \"14\" is not a status code");
  check_bad_retry("retryableStatusCodes", "[17]",
                  "[0]: 17 is not a status code");
  check_bad_retry("retryableStatusCodes", "[14, -1]",
                  "[1]: -1 is not a status code");
  check_bad_retry("retryableStatusCodes", "[14.5]",
                  "[0]: must be a status code name or number");
  check_bad_retry("retryableStatusCodes", "[true]",
                  "[0]: must be a status code name or number");
  check_bad_retry("retryableStatusCodes", "[null]",
                  "[0]: must be a status code name or number");
  check_bad_retry("perAttemptRecvTimeout", "\"0s\"", "must be greater than 0");
  check_bad_retry("perAttemptRecvTimeout", "\"x\"", "\"x\" must end in 's'");
  CHECK_INVALID(mc("\"retryPolicy\": [1]"),
                "methodConfig[0].retryPolicy: must be an object");
  CHECK_INVALID(mc("\"retryPolicy\": \"on\""),
                "methodConfig[0].retryPolicy: must be an object");
  /* The second methodConfig, as the message counts them. */
  CHECK_INVALID(
      "{\"methodConfig\": [{\"name\": [{}]}, {\"name\": [{\"service\": "
      "\"s\"}], \"retryPolicy\": {\"maxAttempts\": 1, \"initialBackoff\": "
      "\"1s\", \"maxBackoff\": \"1s\", \"backoffMultiplier\": 2, "
      "\"retryableStatusCodes\": [14]}}]}",
      "methodConfig[1].retryPolicy.maxAttempts: must be at least 2");
}

/* gRFC A6's hedging examples, and the defaults of the optional fields. */
static void test_hedging_policy(void) {
  uvg__service_config_t *sc = parse(
      mc("\"hedgingPolicy\": {\"maxAttempts\": 4, \"hedgingDelay\": "
         "\"0.5s\", \"nonFatalStatusCodes\": [\"UNAVAILABLE\", \"INTERNAL\", "
         "\"ABORTED\"]}"));
  if (sc != NULL) {
    const uvg__method_config_t *m = s_config(sc);
    CHECK_EQ(m->policy, UVG__POLICY_HEDGING);
    CHECK_EQ(m->hedging.max_attempts, 4);
    CHECK(m->hedging.hedging_delay.seconds == 0 &&
          m->hedging.hedging_delay.nanos == 500000000);
    CHECK_EQ(m->hedging.non_fatal_codes, BIT(14) | BIT(13) | BIT(10));
    uvg__service_config_unref(sc);
  }
  sc = parse(
      mc("\"hedgingPolicy\": {\"maxAttempts\": 4, \"hedgingDelay\": \"0s\", "
         "\"nonFatalStatusCodes\": [\"UNAVAILABLE\", \"INTERNAL\", "
         "\"ABORTED\"]}"));
  CHECK(sc != NULL &&
        uvg__duration_is_zero(&s_config(sc)->hedging.hedging_delay));
  uvg__service_config_unref(sc);
  sc = parse(mc("\"hedgingPolicy\": {\"maxAttempts\": 9}"));
  if (sc != NULL) {
    const uvg__hedging_policy_t *h = &s_config(sc)->hedging;
    CHECK_EQ(h->max_attempts, 5);
    CHECK(uvg__duration_is_zero(&h->hedging_delay));
    CHECK_EQ(h->non_fatal_codes, 0);
    uvg__service_config_unref(sc);
  }
  sc =
      parse(mc("\"hedgingPolicy\": {\"maxAttempts\": 2, \"hedgingDelay\": "
               "null, \"nonFatalStatusCodes\": []}"));
  CHECK(sc != NULL && s_config(sc)->hedging.non_fatal_codes == 0);
  uvg__service_config_unref(sc);

  CHECK_INVALID(mc("\"hedgingPolicy\": {}"),
                "methodConfig[0].hedgingPolicy.maxAttempts: is required");
  CHECK_INVALID(
      mc("\"hedgingPolicy\": {\"maxAttempts\": 1}"),
      "methodConfig[0].hedgingPolicy.maxAttempts: must be at least 2");
  CHECK_INVALID(
      mc("\"hedgingPolicy\": {\"maxAttempts\": 3, \"hedgingDelay\": "
         "\"-1s\"}"),
      "methodConfig[0].hedgingPolicy.hedgingDelay: \"-1s\" must not be "
      "negative");
  CHECK_INVALID(
      mc("\"hedgingPolicy\": {\"maxAttempts\": 3, \"nonFatalStatusCodes\": "
         "[\"OK\", \"NOPE\"]}"),
      "methodConfig[0].hedgingPolicy.nonFatalStatusCodes[1]: \"NOPE\" is not "
      "a status code");
  CHECK_INVALID(mc("\"hedgingPolicy\": true"),
                "methodConfig[0].hedgingPolicy: must be an object");

  /* "Only one of retry_policy or hedging_policy may be set" */
  CHECK_INVALID(mc(A6_RETRY ", \"hedgingPolicy\": {\"maxAttempts\": 3}"),
                "methodConfig[0]: retryPolicy and hedgingPolicy are both set");
  /* ... even when one of them is itself invalid */
  CHECK_INVALID(
      mc("\"retryPolicy\": {}, \"hedgingPolicy\": {\"maxAttempts\": 3}"),
      "methodConfig[0]: retryPolicy and hedgingPolicy are both set");
  /* null is absent, so the other one stands alone */
  sc = parse(mc(A6_RETRY ", \"hedgingPolicy\": null"));
  CHECK(sc != NULL && s_config(sc)->policy == UVG__POLICY_RETRY);
  uvg__service_config_unref(sc);
  sc =
      parse(mc("\"retryPolicy\": null, \"hedgingPolicy\": {\"maxAttempts\": "
               "3}"));
  CHECK(sc != NULL && s_config(sc)->policy == UVG__POLICY_HEDGING);
  uvg__service_config_unref(sc);
}

/* retryThrottling, kept in thousandths of a token. */
static void test_retry_throttling(void) {
  static const struct {
    const char *max, *ratio;
    uint32_t max_milli, ratio_milli;
  } good[] = {
      {"10", "0.1", 10000, 100},    /* A6's example */
      {"10", "0.5466", 10000, 546}, /* A6: "0.5466 is treated as 0.546" */
      {"1", "0.3", 1000, 300},      /* 0.3 is below 0.3 as a double */
      {"1", "0.7", 1000, 700},           {"1", "1.001", 1000, 1001},
      {"1", "0.001", 1000, 1},           {"1", "1e-3", 1000, 1},
      {"1", "0.0019999", 1000, 1},       {"1", "0.1234567890123", 1000, 123},
      {"1", "2.5e1", 1000, 25000},       {"1000", "1", 1000000, 1000},
      {"1000.0009", "1", 1000000, 1000}, /* truncated, then in range */
      {"10.5", "1", 10500, 1000},        {"0.001", "1", 1, 1000},
      {"1e3", "1e6", 1000000, 1000000}, /* ratio capped at 1000 tokens */
      {"\"10\"", "\"0.1\"", 10000, 100}, {"\"10\"", "\"0.99999\"", 10000, 999},
      {"5", "\"1E-2\"", 5000, 10},
  };
  for (size_t i = 0; i < UVG__ARRAY_SIZE(good); i++) {
    char json[256];
    snprintf(json, sizeof(json),
             "{\"retryThrottling\": {\"maxTokens\": %s, \"tokenRatio\": %s}}",
             good[i].max, good[i].ratio);
    uvg__service_config_t *sc = parse(json);
    if (sc == NULL) continue;
    CHECK_EQ(sc->has_retry_throttling, 1);
    CHECK_EQ(sc->max_milli_tokens, good[i].max_milli);
    CHECK_EQ(sc->milli_token_ratio, good[i].ratio_milli);
    uvg__service_config_unref(sc);
  }
  static const struct {
    const char *body, *msg;
  } bad[] = {
      {"{\"tokenRatio\": 0.1}", "maxTokens: is required"},
      {"{\"maxTokens\": 10}", "tokenRatio: is required"},
      {"{\"maxTokens\": 10, \"tokenRatio\": null}", "tokenRatio: is required"},
      {"{\"maxTokens\": 0, \"tokenRatio\": 0.1}",
       "maxTokens: must be greater than 0"},
      {"{\"maxTokens\": 0.0009, \"tokenRatio\": 0.1}",
       "maxTokens: must be greater than 0"},
      {"{\"maxTokens\": -1, \"tokenRatio\": 0.1}",
       "maxTokens: must be greater than 0"},
      {"{\"maxTokens\": -5000, \"tokenRatio\": 0.1}",
       "maxTokens: must be greater than 0"},
      {"{\"maxTokens\": 1001, \"tokenRatio\": 0.1}",
       "maxTokens: must be at most 1000"},
      {"{\"maxTokens\": 1000.001, \"tokenRatio\": 0.1}",
       "maxTokens: must be at most 1000"},
      {"{\"maxTokens\": 1e300, \"tokenRatio\": 0.1}",
       "maxTokens: must be at most 1000"},
      {"{\"maxTokens\": \"ten\", \"tokenRatio\": 0.1}",
       "maxTokens: must be a number"},
      {"{\"maxTokens\": true, \"tokenRatio\": 0.1}",
       "maxTokens: must be a number"},
      {"{\"maxTokens\": 10, \"tokenRatio\": 0}",
       "tokenRatio: must be greater than 0 (3 decimal places are kept)"},
      {"{\"maxTokens\": 10, \"tokenRatio\": 0.0009}",
       "tokenRatio: must be greater than 0 (3 decimal places are kept)"},
      {"{\"maxTokens\": 10, \"tokenRatio\": 5e-324}",
       "tokenRatio: must be greater than 0 (3 decimal places are kept)"},
      {"{\"maxTokens\": 10, \"tokenRatio\": -0.1}",
       "tokenRatio: must be greater than 0 (3 decimal places are kept)"},
      {"{\"maxTokens\": 10, \"tokenRatio\": \"-0\"}",
       "tokenRatio: must be greater than 0 (3 decimal places are kept)"},
      {"{\"maxTokens\": 10, \"tokenRatio\": \"0.1.2\"}",
       "tokenRatio: must be a number"},
      {"{\"maxTokens\": 10, \"tokenRatio\": \"NaN\"}",
       "tokenRatio: must be a number"},
      {"{\"maxTokens\": 10, \"tokenRatio\": \"1e\"}",
       "tokenRatio: must be a number"},
      {"{\"maxTokens\": 10, \"tokenRatio\": \".\"}",
       "tokenRatio: must be a number"},
      {"{\"maxTokens\": 10, \"tokenRatio\": \"\"}",
       "tokenRatio: must be a number"},
      {"[10, 0.1]", "must be an object"},
  };
  for (size_t i = 0; i < UVG__ARRAY_SIZE(bad); i++) {
    char json[256], msg[256];
    snprintf(json, sizeof(json), "{\"retryThrottling\": %s}", bad[i].body);
    snprintf(msg, sizeof(msg), "retryThrottling%s%s",
             bad[i].msg[0] == 'm' && bad[i].msg[1] == 'u' ? ": " : ".",
             bad[i].msg);
    CHECK_INVALID(json, msg);
  }
}

/* gRFC A17: "If unset, health checking is disabled"; "" is the server's
 * overall health. */
static void test_health_check(void) {
  uvg__service_config_t *sc =
      parse("{\"healthCheckConfig\": {\"serviceName\": \"foo\"}}");
  CHECK(sc != NULL && sc->health_check_service != NULL &&
        strcmp(sc->health_check_service, "foo") == 0);
  uvg__service_config_unref(sc);
  sc = parse("{\"healthCheckConfig\": {\"serviceName\": \"\"}}");
  CHECK(sc != NULL && sc->health_check_service != NULL &&
        sc->health_check_service[0] == '\0');
  uvg__service_config_unref(sc);
  sc = parse("{\"healthCheckConfig\": {}}");
  CHECK(sc != NULL && sc->health_check_service == NULL);
  uvg__service_config_unref(sc);
  sc = parse("{\"healthCheckConfig\": {\"serviceName\": null}}");
  CHECK(sc != NULL && sc->health_check_service == NULL);
  uvg__service_config_unref(sc);
  CHECK_INVALID("{\"healthCheckConfig\": {\"serviceName\": 5}}",
                "healthCheckConfig.serviceName: must be a string");
  CHECK_INVALID("{\"healthCheckConfig\": \"foo\"}",
                "healthCheckConfig: must be an object");
}

/* A24/A21: the first supported policy of loadBalancingConfig wins; its
 * config goes to the policy as JSON text. */
static void test_lb_config(void) {
  asked = 0;
  uvg__service_config_t *sc = parse(
      "{\"loadBalancingConfig\": [{\"grpclb\": {\"childPolicy\": []}}, "
      "{\"xds_experimental\": {}}, {\"weighted_round_robin\": "
      "{\"enableOobLoadReport\": true, \"blackoutPeriod\": \"10s\", "
      "\"n\": [1, 2.5, null], \"s\": \"a\\\"b\"}}, {\"round_robin\": {}}]}");
  if (sc != NULL) {
    CHECK_STR(sc->lb_policy, "weighted_round_robin");
    CHECK_STR(sc->lb_config,
              "{\"enableOobLoadReport\":true,\"blackoutPeriod\":\"10s\","
              "\"n\":[1,2.5,null],\"s\":\"a\\\"b\"}");
    /* asked in order, and not past the chosen one */
    CHECK_EQ(asked, 3);
    CHECK_STR(last_asked, "weighted_round_robin");
    uvg__service_config_unref(sc);
  }
  /* Entries after the chosen one are not looked at. */
  sc = parse(
      "{\"loadBalancingConfig\": [{\"pick_first\": {\"shuffle"
      "AddressList\": true}}, 5, {\"a\": 1, \"b\": 2}]}");
  CHECK(sc != NULL && strcmp(sc->lb_policy, "pick_first") == 0 &&
        strcmp(sc->lb_config, "{\"shuffleAddressList\":true}") == 0);
  uvg__service_config_unref(sc);
  /* A21: the chosen policy refusing its config makes the whole config
   * invalid; the entries after it are no fallback (gRPC C++, grpc-go). */
  CHECK_INVALID("{\"loadBalancingConfig\": [{\"weighted_round_robin\": "
                "{\"refuse\": 1}}, {\"round_robin\": {}}]}",
                "loadBalancingConfig[0].weighted_round_robin: refused by the "
                "policy");
  /* Names compare exactly here. */
  CHECK_INVALID("{\"loadBalancingConfig\": [{\"ROUND_ROBIN\": {}}]}",
                "loadBalancingConfig: no supported load balancing policy in "
                "the list");
  /* A21's example: no policy understood rejects the whole config. */
  CHECK_INVALID(
      "{\"loadBalancingConfig\": [{\"UnknownPolicy1\": {}}, "
      "{\"UnknownPolicy2\": {}}]}",
      "loadBalancingConfig: no supported load balancing policy in "
      "the list");
  CHECK_INVALID("{\"loadBalancingConfig\": []}",
                "loadBalancingConfig: no supported load balancing policy in "
                "the list");
  CHECK_INVALID("{\"loadBalancingConfig\": {\"round_robin\": {}}}",
                "loadBalancingConfig: must be a list");
  CHECK_INVALID(
      "{\"loadBalancingConfig\": [{\"x\": {}}, {\"round_robin\": "
      "{}, \"pick_first\": {}}]}",
      "loadBalancingConfig[1]: must be an object with exactly one "
      "field, the policy");
  CHECK_INVALID("{\"loadBalancingConfig\": [{}]}",
                "loadBalancingConfig[0]: must be an object with exactly one "
                "field, the policy");
  CHECK_INVALID("{\"loadBalancingConfig\": [\"round_robin\"]}",
                "loadBalancingConfig[0]: must be an object with exactly one "
                "field, the policy");
  CHECK_INVALID("{\"loadBalancingConfig\": [{\"round_robin\": []}]}",
                "loadBalancingConfig[0].round_robin: must be an object");
  CHECK_INVALID(
      "{\"loadBalancingConfig\": [{\"nope\": null}, "
      "{\"round_robin\": {}}]}",
      "loadBalancingConfig[0].nope: must be an object");
}

/* The deprecated loadBalancingPolicy: any case, used only without
 * loadBalancingConfig, checked always. */
static void test_lb_policy(void) {
  static const char *const forms[] = {"round_robin", "ROUND_ROBIN",
                                      "Round_Robin"};
  for (size_t i = 0; i < UVG__ARRAY_SIZE(forms); i++) {
    char json[128];
    snprintf(json, sizeof(json), "{\"loadBalancingPolicy\": \"%s\"}", forms[i]);
    uvg__service_config_t *sc = parse(json);
    CHECK(sc != NULL && strcmp(sc->lb_policy, "round_robin") == 0 &&
          strcmp(sc->lb_config, "{}") == 0);
    CHECK_STR(last_asked, "round_robin");
    uvg__service_config_unref(sc);
  }
  uvg__service_config_t *sc = parse("{\"loadBalancingPolicy\": \"\"}");
  CHECK(sc != NULL && sc->lb_policy == NULL && sc->lb_config == NULL);
  uvg__service_config_unref(sc);
  sc = parse(
      "{\"loadBalancingPolicy\": \"round_robin\", "
      "\"loadBalancingConfig\": [{\"pick_first\": {}}]}");
  CHECK(sc != NULL && strcmp(sc->lb_policy, "pick_first") == 0);
  uvg__service_config_unref(sc);
  /* A21: "loadBalancingPolicy" : "UnknownPolicy" is invalid. */
  CHECK_INVALID("{\"loadBalancingPolicy\": \"UnknownPolicy\"}",
                "loadBalancingPolicy: unknown policy \"unknownpolicy\"");
  CHECK_INVALID(
      "{\"loadBalancingPolicy\": \"UnknownPolicy\", "
      "\"loadBalancingConfig\": [{\"pick_first\": {}}]}",
      "loadBalancingPolicy: unknown policy \"unknownpolicy\"");
  CHECK_INVALID("{\"loadBalancingPolicy\": 1}",
                "loadBalancingPolicy: must be a string");
}

static void test_bad_json(void) {
  static const struct {
    const char *json, *prefix;
  } bad[] = {
      {"", "invalid JSON at line 1, column 0: "},
      {"{", "invalid JSON at line 1, column 1: "},
      {"{} x", "invalid JSON at line 1, column 4: "},
      {"{\"methodConfig\": [}", "invalid JSON at line 1, column 19: "},
      /* A21's badly formatted example */
      {"{\"serviceConfig\" : {\n  \"MethodConfig\" : {\n    \"Service // bad "
       "format\n  }",
       "invalid JSON at line 3, column "},
      {"\"serviceConfig\": {}", "invalid JSON at line 1, column 15: "},
      /* a key twice */
      {"{\"methodConfig\": [], \"methodConfig\": []}",
       "invalid JSON at line 1, column "},
      {"{\"a\": \"\\u0000\"}", "invalid JSON at line 1, column "},
      {"{\"a\": 1e400}", "invalid JSON at line 1, column "},
  };
  for (size_t i = 0; i < UVG__ARRAY_SIZE(bad); i++) {
    uvg__service_config_t *sc = (uvg__service_config_t *)&err;
    CHECK_EQ(
        uvg__service_config_parse(bad[i].json, strlen(bad[i].json),
                                  known_policy, &asked, &sc, err, sizeof(err)),
        UVG_EINVAL);
    CHECK(sc == NULL);
    if (strncmp(err, bad[i].prefix, strlen(bad[i].prefix)) != 0)
      fprintf(stderr, "  %s -> %s\n", bad[i].json, err);
    CHECK(strncmp(err, bad[i].prefix, strlen(bad[i].prefix)) == 0);
    CHECK(strlen(err) > strlen(bad[i].prefix));
  }
  /* The length bounds the text: a NUL inside it is an error, bytes after
   * it are not read. */
  uvg__service_config_t *sc = NULL;
  CHECK_EQ(uvg__service_config_parse("{}\0{", 4, known_policy, &asked, &sc, err,
                                     sizeof(err)),
           UVG_EINVAL);
  CHECK_EQ(uvg__service_config_parse("{}garbage", 2, known_policy, &asked, &sc,
                                     err, sizeof(err)),
           0);
  uvg__service_config_unref(sc);

  CHECK_INVALID("[]", "the service config must be a JSON object");
  CHECK_INVALID("[{\"serviceConfig\": {}}]",
                "the service config must be a JSON object");
  CHECK_INVALID("null",
                "invalid JSON at line 1, column 4: '[' or '{' "
                "expected near 'null'");
}

/* gRFC A2's list of choices. `want` is the timeout in seconds of the
 * chosen config, or -1 for none chosen. */
static void check_choice(const char *json, const char *host, unsigned draw,
                         int want) {
  uvg__service_config_t *sc = (uvg__service_config_t *)&err;
  int rc = uvg__service_config_parse_choices(json, strlen(json), host, draw,
                                             known_policy, &asked, &sc, err,
                                             sizeof(err));
  if (rc != 0) fprintf(stderr, "  %s\n  -> %d %s\n", json, rc, err);
  CHECK_EQ(rc, 0);
  CHECK_STR(err, "");
  if (want < 0) {
    CHECK(sc == NULL);
    return;
  }
  const uvg__method_config_t *m =
      sc ? uvg__service_config_method(sc, "/a/b") : NULL;
  CHECK(m != NULL && m->timeout.seconds == (uint64_t)want);
  uvg__service_config_unref(sc);
}

#define CHOICE(criteria, secs)                               \
  "{" criteria                                               \
  "\"serviceConfig\": {\"methodConfig\": [{\"name\": [{}], " \
  "\"timeout\": \"" #secs "s\"}]}}"

static void test_choices(void) {
  /* A2's TXT record for "myserver", as the resolver hands it over. */
  uvg__service_config_t *sc = NULL;
  const char *a2 =
      "[{\"serviceConfig\":{\"loadBalancingPolicy\":\"round_robin\","
      "\"methodConfig\":[{\"name\":[{\"service\":\"MyService\",\"method\":"
      "\"Foo\"}],\"waitForReady\":true}]}}]";
  CHECK_EQ(
      uvg__service_config_parse_choices(a2, strlen(a2), "h", 0, known_policy,
                                        &asked, &sc, err, sizeof(err)),
      0);
  CHECK(sc != NULL && strcmp(sc->lb_policy, "round_robin") == 0);
  CHECK(sc != NULL &&
        uvg__service_config_method(sc, "/MyService/Foo")->wait_for_ready == 1);
  uvg__service_config_unref(sc);

  /* "The first matching entry wins." */
  check_choice("[" CHOICE("", 1) ", " CHOICE("", 2) "]", "h", 0, 1);
  /* Language: ours is "c", in any case; others are skipped. */
  check_choice(
      "[" CHOICE("\"clientLanguage\": [\"go\", \"java\"],", 1) ", " CHOICE(
          "\"clientLanguage\": [\"python\", \"C\"],", 2) "]",
      "h", 0, 2);
  check_choice("[" CHOICE("\"clientLanguage\": [\"c++\"],", 1) "]", "h", 0, -1);
  check_choice("[" CHOICE("\"clientLanguage\": [],", 1) "]", "h", 0, 1);
  check_choice("[" CHOICE("\"clientLanguage\": null,", 1) "]", "h", 0, 1);
  /* Hostname: exact. */
  check_choice("[" CHOICE("\"clientHostname\": [\"Host1\"],", 1) ", " CHOICE(
                   "\"clientHostname\": [\"host2\", \"host1\"],", 2) "]",
               "host1", 0, 2);
  check_choice("[" CHOICE("\"clientHostname\": [\"host1\"],", 1) "]", NULL, 0,
               -1);
  check_choice("[" CHOICE("\"clientHostname\": [],", 1) "]", NULL, 0, 1);
  /* Percentage: the first `percentage` draws of 100. */
  const char *pct = "[" CHOICE("\"percentage\": 30,", 1) ", " CHOICE("", 2) "]";
  check_choice(pct, "h", 0, 1);
  check_choice(pct, "h", 29, 1);
  check_choice(pct, "h", 30, 2);
  check_choice(pct, "h", 99, 2);
  check_choice("[" CHOICE("\"percentage\": 0,", 1) "]", "h", 0, -1);
  check_choice("[" CHOICE("\"percentage\": 100,", 1) "]", "h", 99, 1);
  /* All criteria must match. */
  const char *all = "[" CHOICE(
      "\"clientLanguage\": [\"c\"], \"percentage\": "
      "50, \"clientHostname\": [\"h\"],",
      1) "]";
  check_choice(all, "h", 49, 1);
  check_choice(all, "h", 50, -1);
  check_choice(all, "x", 0, -1);
  /* None chosen, or none at all: valid, no config. */
  check_choice("[]", "h", 0, -1);
  /* Choices after the chosen one are not read; the ones before are
   * checked but their serviceConfig is not parsed (A21: "Only the chosen
   * service config affects the validation"). */
  check_choice("[" CHOICE("", 3) ", 5, {\"bogus\": 1}]", "h", 0, 3);
  check_choice(
      "[{\"percentage\": 0, \"serviceConfig\": {\"methodConfig\": "
      "7}}, " CHOICE("", 4) "]",
      "h", 0, 4);

  static const struct {
    const char *json, *msg;
  } bad[] = {
      {"{}", "the service config choices must be a JSON list"},
      {"[3]", "[0]: must be an object"},
      {"[{}]", "[0].serviceConfig: is required"},
      {"[{\"serviceConfig\": []}]", "[0].serviceConfig: must be an object"},
      {"[{\"serviceConfig\": null}]", "[0].serviceConfig: must be an object"},
      {"[{\"serviceConfig\": {}, \"clientLanguages\": [\"c\"]}]",
       "[0]: unexpected field \"clientLanguages\""},
      {"[{\"percentage\": 0, \"serviceConfig\": {}}, {\"serviceConfig\": {}, "
       "\"x\": 1}]",
       "[1]: unexpected field \"x\""},
      {"[{\"serviceConfig\": {}, \"clientLanguage\": \"c\"}]",
       "[0].clientLanguage: must be a list of strings"},
      {"[{\"serviceConfig\": {}, \"clientHostname\": [\"a\", 1]}]",
       "[0].clientHostname[1]: must be a string"},
      {"[{\"serviceConfig\": {}, \"percentage\": 101}]",
       "[0].percentage: must be an integer from 0 to 100"},
      {"[{\"serviceConfig\": {}, \"percentage\": -1}]",
       "[0].percentage: must be an integer from 0 to 100"},
      {"[{\"serviceConfig\": {}, \"percentage\": 50.5}]",
       "[0].percentage: must be an integer from 0 to 100"},
      {"[{\"serviceConfig\": {}, \"percentage\": \"50\"}]",
       "[0].percentage: must be an integer from 0 to 100"},
      {"[{\"clientLanguage\": [\"go\"], \"serviceConfig\": {}}, "
       "{\"serviceConfig\": {\"methodConfig\": [{\"timeout\": \"1\"}]}}]",
       "[1].serviceConfig.methodConfig[0].timeout: \"1\" must end in 's'"},
      {"[{\"serviceConfig\": {\"loadBalancingPolicy\": \"nope\"}}]",
       "[0].serviceConfig.loadBalancingPolicy: unknown policy \"nope\""},
  };
  for (size_t i = 0; i < UVG__ARRAY_SIZE(bad); i++) {
    sc = (uvg__service_config_t *)&err;
    CHECK_EQ(uvg__service_config_parse_choices(bad[i].json, strlen(bad[i].json),
                                               "h", 0, known_policy, &asked,
                                               &sc, err, sizeof(err)),
             UVG_EINVAL);
    CHECK(sc == NULL);
    CHECK_STR(err, bad[i].msg);
  }
  sc = (uvg__service_config_t *)&err;
  CHECK_EQ(uvg__service_config_parse_choices("[", 1, "h", 0, known_policy,
                                             &asked, &sc, err, sizeof(err)),
           UVG_EINVAL);
  CHECK(sc == NULL && strncmp(err, "invalid JSON at line 1", 22) == 0);
  CHECK_EQ(uvg__service_config_parse_choices(NULL, 0, "h", 0, known_policy,
                                             &asked, &sc, err, sizeof(err)),
           UVG_EINVAL);
  CHECK_EQ(uvg__service_config_parse_choices("[]", 2, "h", 0, known_policy,
                                             &asked, NULL, err, sizeof(err)),
           UVG_EINVAL);
}

static void test_arguments_and_messages(void) {
  uvg__service_config_t *sc = (uvg__service_config_t *)&err;
  CHECK_EQ(uvg__service_config_parse(NULL, 0, known_policy, &asked, &sc, err,
                                     sizeof(err)),
           UVG_EINVAL);
  CHECK(sc == NULL);
  sc = (uvg__service_config_t *)&err;
  CHECK_EQ(
      uvg__service_config_parse("{}", 2, NULL, NULL, &sc, err, sizeof(err)),
      UVG_EINVAL);
  CHECK(sc == NULL);
  CHECK_EQ(uvg__service_config_parse("{}", 2, known_policy, &asked, NULL, err,
                                     sizeof(err)),
           UVG_EINVAL);
  /* No buffer at all, or a small one: still the same result, and the
   * message is cut, NUL-terminated. */
  const char *json = mc("\"timeout\": \"1\"");
  CHECK_EQ(uvg__service_config_parse(json, strlen(json), known_policy, &asked,
                                     &sc, NULL, 0),
           UVG_EINVAL);
  char small[12];
  memset(small, 'x', sizeof(small));
  CHECK_EQ(uvg__service_config_parse(json, strlen(json), known_policy, &asked,
                                     &sc, small, sizeof(small)),
           UVG_EINVAL);
  CHECK_STR(small, "methodConfi");
  char tiny[1] = {'x'};
  CHECK_EQ(uvg__service_config_parse(json, strlen(json), known_policy, &asked,
                                     &sc, tiny, sizeof(tiny)),
           UVG_EINVAL);
  CHECK_EQ(tiny[0], '\0');
  /* A very long policy name is cut in the path, and the message still
   * says what is wrong. */
  static char long_json[4096];
  char name[3000];
  memset(name, 'p', sizeof(name) - 1);
  name[sizeof(name) - 1] = '\0';
  snprintf(long_json, sizeof(long_json),
           "{\"loadBalancingConfig\": [{\"%s\": 1}]}", name);
  CHECK_EQ(uvg__service_config_parse(long_json, strlen(long_json), known_policy,
                                     &asked, &sc, err, sizeof(err)),
           UVG_EINVAL);
  CHECK(strncmp(err, "loadBalancingConfig[0].ppp", 26) == 0);
  CHECK(strlen(err) < sizeof(err) - 1);
  const char *tail = ": must be an object";
  CHECK_STR(err + strlen(err) - strlen(tail), tail);
}

static void test_status_code_names(void) {
  for (int c = 0; c <= 16; c++) {
    CHECK_EQ(uvg__status_code_parse(uvg_status_code_name(c)), c);
    char lower[32];
    snprintf(lower, sizeof(lower), "%s", uvg_status_code_name(c));
    for (char *p = lower; *p; p++)
      if (*p >= 'A' && *p <= 'Z') *p = (char)(*p + 32);
    CHECK_EQ(uvg__status_code_parse(lower), c);
  }
  CHECK_EQ(uvg__status_code_parse("Deadline_Exceeded"), 4);
  CHECK_EQ(uvg__status_code_parse(""), -1);
  CHECK_EQ(uvg__status_code_parse("CANCELED"), -1);
  CHECK_EQ(uvg__status_code_parse("UNAVAILABLE "), -1);
  CHECK_EQ(uvg__status_code_parse("14"), -1);
  CHECK(uvg__code_set_has(BIT(14), 14));
  CHECK(!uvg__code_set_has(BIT(14), 13));
  CHECK(!uvg__code_set_has(0xffffffffu, 17));
  CHECK(!uvg__code_set_has(0xffffffffu, -1));
}

static void test_refcount(void) {
  uvg__service_config_t *sc = parse(mc(A6_RETRY));
  if (sc == NULL) return;
  const uvg__method_config_t *m = s_config(sc);
  CHECK(uvg__service_config_ref(sc) == sc);
  CHECK(uvg__service_config_ref(sc) == sc);
  CHECK_EQ(sc->refs, 3);
  uvg__service_config_unref(sc);
  uvg__service_config_unref(sc);
  /* still valid with one reference left */
  CHECK_EQ(sc->refs, 1);
  CHECK_EQ(m->retry.max_attempts, 4);
  uvg__service_config_unref(sc);
  uvg__service_config_unref(NULL);
}

/* Allocation failure, nghttp2's way: fail the 1st, 2nd, ... allocation of
 * a parse until one succeeds; each failure is UVG_ENOMEM with nothing
 * left allocated. */
static long n_alloc, n_live, fail_at = -1;
static void *t_malloc(size_t n) {
  if (n_alloc++ == fail_at) return NULL;
  void *p = malloc(n);
  n_live += p != NULL;
  return p;
}
static void *t_realloc(void *p, size_t n) {
  if (n_alloc++ == fail_at) return NULL;
  void *q = realloc(p, n);
  n_live += p == NULL && q != NULL;
  return q;
}
static void t_free(void *p) {
  n_live -= p != NULL;
  free(p);
}

static void test_allocation_failure(void) {
  /* Every kind of allocation: the config, the methods, a dozen names (the
   * list grows), the policy, its config, the health check name; and the
   * deprecated policy name, freed when loadBalancingConfig wins. */
  static char json[4096];
  size_t n = (size_t)snprintf(
      json, sizeof(json),
      "{\"loadBalancingPolicy\": \"ROUND_ROBIN\", \"loadBalancingConfig\": "
      "[{\"x\": {}}, {\"pick_first\": {\"a\": [1]}}], \"healthCheckConfig\": "
      "{\"serviceName\": \"h\"}, \"retryThrottling\": {\"maxTokens\": 3, "
      "\"tokenRatio\": 0.2}, \"methodConfig\": [{\"name\": [");
  for (int i = 0; i < 12; i++)
    n += (size_t)snprintf(json + n, sizeof(json) - n,
                          "%s{\"service\": \"s%d\", \"method\": \"m\"}",
                          i ? ", " : "", i);
  snprintf(json + n, sizeof(json) - n, "], %s}, {\"name\": [{}]}]}", A6_RETRY);

  CHECK_EQ(uvg_set_allocator(t_malloc, t_realloc, t_free), 0);
  int failures = 0, succeeded = 0;
  for (fail_at = 0; fail_at < 200 && !succeeded; fail_at++) {
    n_alloc = n_live = 0;
    uvg__service_config_t *sc = (uvg__service_config_t *)&err;
    int rc = uvg__service_config_parse(json, strlen(json), known_policy, &asked,
                                       &sc, err, sizeof(err));
    if (rc == 0) {
      succeeded = 1;
      CHECK(n_alloc == fail_at); /* the first run that did not fail */
      CHECK_STR(sc->lb_policy, "pick_first");
      CHECK_EQ(sc->nnames, 13);
      uvg__service_config_unref(sc);
    } else {
      failures++;
      CHECK_EQ(rc, UVG_ENOMEM);
      CHECK_STR(err, "out of memory");
      CHECK(sc == NULL);
    }
    CHECK_EQ(n_live, 0);
  }
  CHECK(succeeded);
  CHECK(failures >= 8);

  /* The same through a list of choices. */
  static char choices[5000];
  snprintf(choices, sizeof(choices),
           "[{\"percentage\": 0, \"serviceConfig\": {}}, {\"serviceConfig\": "
           "%s}]",
           json);
  succeeded = 0;
  for (fail_at = 0; fail_at < 200 && !succeeded; fail_at++) {
    n_alloc = n_live = 0;
    uvg__service_config_t *sc = (uvg__service_config_t *)&err;
    int rc = uvg__service_config_parse_choices(choices, strlen(choices), "h",
                                               50, known_policy, &asked, &sc,
                                               err, sizeof(err));
    if (rc == 0) {
      succeeded = 1;
      CHECK(sc != NULL && sc->nnames == 13);
      uvg__service_config_unref(sc);
    } else {
      CHECK_EQ(rc, UVG_ENOMEM);
      CHECK(sc == NULL);
    }
    CHECK_EQ(n_live, 0);
  }
  CHECK(succeeded);
  CHECK_EQ(uvg_set_allocator(malloc, realloc, free), 0);
  fail_at = -1;
}

int main(void) {
  RUN(test_empty_config);
  RUN(test_doc_example);
  RUN(test_a2_example);
  RUN(test_precedence);
  RUN(test_many_names);
  RUN(test_names);
  RUN(test_duplicate_names);
  RUN(test_methods_without_names);
  RUN(test_wait_for_ready);
  RUN(test_durations);
  RUN(test_message_sizes);
  RUN(test_retry_policy);
  RUN(test_retry_policy_invalid);
  RUN(test_hedging_policy);
  RUN(test_retry_throttling);
  RUN(test_health_check);
  RUN(test_lb_config);
  RUN(test_lb_policy);
  RUN(test_bad_json);
  RUN(test_choices);
  RUN(test_arguments_and_messages);
  RUN(test_status_code_names);
  RUN(test_refcount);
  RUN(test_allocation_failure);
  TEST_EXIT();
}

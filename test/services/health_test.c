/* grpc.health.v1.Health as a client sees it on the wire (messages encoded
 * by hand here, so that the test shares no code with the service): Check
 * of the server, of a known and an unknown service; Watch of an unknown
 * service that appears, changes and goes; a watcher that does not read
 * gets the latest status, not every one; shutdown turns everything
 * NOT_SERVING, tells watchers and ends their calls, and refuses changes. */
#include <uvgrpc.h>
#include <uvgrpc/health.h>

#include "loop_wait.h"
#include "test.h"

static uv_loop_t *loop;
static uvg_server_t *server;
static uvg_health_t *health;
static uvg_channel_t *channel;
static int server_closed;

#define CHECK_PATH "/grpc.health.v1.Health/Check"
#define WATCH_PATH "/grpc.health.v1.Health/Watch"
enum { UNKNOWN = 0, SERVING = 1, NOT_SERVING = 2, SERVICE_UNKNOWN = 3 };

/* HealthCheckRequest{service = 1 (string)} */
static size_t encode_request(const char *service, uint8_t *buf) {
  size_t n = strlen(service);
  if (n == 0) return 0;
  buf[0] = 0x0a;
  buf[1] = (uint8_t)n; /* the names here are short */
  memcpy(buf + 2, service, n);
  return n + 2;
}

/* HealthCheckResponse{status = 1 (enum)}: 0 when absent. */
static int decode_status(const uint8_t *msg, size_t len) {
  if (len == 0) return UNKNOWN;
  CHECK(len == 2 && msg[0] == 0x08);
  return len == 2 ? msg[1] : -1;
}

typedef struct {
  int done;
  uvg_status_code_t code;
  int status;
} check_t;

static void on_check(const uvg_status_t *st, const uint8_t *reply, size_t len,
                     void *ud) {
  check_t *c = ud;
  c->code = st->code;
  if (st->code == UVG_STATUS_OK) c->status = decode_status(reply, len);
  c->done++;
}

/* Runs Check(service); returns the status, or -code for a failed call. */
static int check(const char *service) {
  uint8_t buf[64];
  check_t c = {0};
  uvg_client_call_options_t opts = {.timeout_ms = 5000};
  CHECK_EQ(uvg_channel_unary(channel, CHECK_PATH, buf,
                             encode_request(service, buf), &opts, on_check, &c),
           0);
  CHECK(wait_count(loop, &c.done, 1, 5000));
  return c.code == UVG_STATUS_OK ? c.status : -(int)c.code;
}

typedef struct {
  uvg_client_call_t *call;
  int got[64];
  int ngot;
  int reading; /* reads automatically after each message */
  int done;
  uvg_status_code_t code;
} watch_t;

static void watch_message(uvg_client_call_t *call, const uint8_t *msg,
                          size_t len, void *ud) {
  watch_t *w = ud;
  if (w->ngot < 64) w->got[w->ngot++] = decode_status(msg, len);
  if (w->reading) uvg_client_call_read(call);
}

static void watch_status(uvg_client_call_t *call, const uvg_status_t *st,
                         const uvg_metadata_t *t, size_t n, void *ud) {
  watch_t *w = ud;
  (void)call;
  (void)t;
  (void)n;
  w->code = st->code;
  w->done++;
}

static void watch(watch_t *w, const char *service, int reading) {
  static const uvg_client_call_cbs_t cbs = {NULL, watch_message, watch_status};
  uint8_t buf[64];
  memset(w, 0, sizeof(*w));
  w->reading = reading;
  uvg_client_call_options_t opts = {.timeout_ms = 20000};
  CHECK_EQ(uvg_client_call_start(channel, WATCH_PATH, &opts, &cbs, w, &w->call),
           0);
  CHECK_EQ(uvg_client_call_send(w->call, buf, encode_request(service, buf), 0,
                                NULL, NULL),
           0);
  CHECK_EQ(uvg_client_call_half_close(w->call), 0);
  if (reading) uvg_client_call_read(w->call);
}

static void setup(void) {
  loop = uv_default_loop();
  int port;
  CHECK_EQ(uvg_server_new(loop, NULL, &server), 0);
  CHECK_EQ(uvg_health_add(server, &health), 0);
  uvg_health_t *again;
  CHECK_EQ(uvg_health_add(server, &again), UVG_EEXIST);
  CHECK_EQ(uvg_server_listen(server, "127.0.0.1:0",
                             uvg_insecure_server_credentials(), &port),
           0);
  char target[64];
  snprintf(target, sizeof(target), "127.0.0.1:%d", port);
  CHECK_EQ(uvg_channel_new(loop, target, uvg_insecure_channel_credentials(),
                           NULL, &channel),
           0);
}

static void test_check(void) {
  CHECK_EQ(check(""), SERVING);
  CHECK_EQ(check("pkg.Svc"), -UVG_STATUS_NOT_FOUND);
  CHECK_EQ(uvg_health_set(health, "pkg.Svc", UVG_HEALTH_NOT_SERVING), 0);
  CHECK_EQ(check("pkg.Svc"), NOT_SERVING);
  CHECK_EQ(uvg_health_set(health, "pkg.Svc", UVG_HEALTH_SERVING), 0);
  CHECK_EQ(check("pkg.Svc"), SERVING);
  CHECK_EQ(uvg_health_clear(health, "pkg.Svc"), 0);
  CHECK_EQ(check("pkg.Svc"), -UVG_STATUS_NOT_FOUND);
  CHECK_EQ(uvg_health_set(health, "x", (uvg_health_status_t)7), UVG_EINVAL);
  CHECK_EQ(uvg_health_set(health, NULL, UVG_HEALTH_SERVING), UVG_EINVAL);
}

static void test_watch(void) {
  watch_t w;
  watch(&w, "later.Svc", 1);
  /* An unknown service: SERVICE_UNKNOWN at once, and the call goes on. */
  CHECK(wait_count(loop, &w.ngot, 1, 5000));
  CHECK_EQ(w.got[0], SERVICE_UNKNOWN);
  CHECK_EQ(uvg_health_set(health, "later.Svc", UVG_HEALTH_SERVING), 0);
  CHECK(wait_count(loop, &w.ngot, 2, 5000));
  CHECK_EQ(w.got[1], SERVING);
  /* the same status again is no change */
  CHECK_EQ(uvg_health_set(health, "later.Svc", UVG_HEALTH_SERVING), 0);
  CHECK_EQ(uvg_health_set(health, "later.Svc", UVG_HEALTH_NOT_SERVING), 0);
  CHECK(wait_count(loop, &w.ngot, 3, 5000));
  CHECK_EQ(w.got[2], NOT_SERVING);
  CHECK_EQ(uvg_health_clear(health, "later.Svc"), 0);
  CHECK(wait_count(loop, &w.ngot, 4, 5000));
  CHECK_EQ(w.got[3], SERVICE_UNKNOWN);
  /* other services' changes are not sent */
  CHECK_EQ(uvg_health_set(health, "other.Svc", UVG_HEALTH_SERVING), 0);
  wait_ms(loop, 50);
  CHECK_EQ(w.ngot, 4);
  CHECK_EQ(w.done, 0);
  uvg_client_call_cancel(w.call);
  CHECK(wait_count(loop, &w.done, 1, 5000));
  CHECK_EQ(w.code, UVG_STATUS_CANCELLED);
}

/* A watcher that reads nothing while the status flips 1000 times, then
 * reads: it gets a few statuses, the last being the latest. */
static void test_slow_watcher(void) {
  watch_t w;
  CHECK_EQ(uvg_health_set(health, "flip.Svc", UVG_HEALTH_SERVING), 0);
  watch(&w, "flip.Svc", 0);
  uvg_client_call_read(w.call);
  CHECK(wait_count(loop, &w.ngot, 1, 5000));
  CHECK_EQ(w.got[0], SERVING);
  for (int i = 0; i < 1000; i++)
    uvg_health_set(health, "flip.Svc",
                   i % 2 ? UVG_HEALTH_SERVING : UVG_HEALTH_NOT_SERVING);
  uvg_health_set(health, "flip.Svc", UVG_HEALTH_NOT_SERVING);
  wait_ms(loop, 100);
  w.reading = 1;
  uvg_client_call_read(w.call);
  wait_ms(loop, 100);
  CHECK(w.ngot >= 2 && w.ngot <= 4);
  CHECK_EQ(w.got[w.ngot - 1], NOT_SERVING);
  uvg_client_call_cancel(w.call);
  CHECK(wait_count(loop, &w.done, 1, 5000));
}

static void closed(uvg_server_t *s, void *ud) {
  (void)s;
  (void)ud;
  server_closed = 1;
}

/* Shutdown: the watcher hears NOT_SERVING, then its call ends; statuses
 * cannot be changed any more. */
static void test_shutdown(void) {
  watch_t w;
  CHECK_EQ(uvg_health_set(health, "last.Svc", UVG_HEALTH_SERVING), 0);
  watch(&w, "last.Svc", 1);
  CHECK(wait_count(loop, &w.ngot, 1, 5000));
  CHECK_EQ(w.got[0], SERVING);
  uvg_server_shutdown(server, 5000, closed, NULL);
  CHECK_EQ(uvg_health_set(health, "last.Svc", UVG_HEALTH_SERVING), UVG_ECLOSED);
  CHECK(wait_count(loop, &w.done, 1, 5000));
  CHECK_EQ(w.ngot, 2);
  CHECK_EQ(w.got[1], NOT_SERVING);
  CHECK_EQ(w.code, UVG_STATUS_UNAVAILABLE);
  /* With its watcher gone, the shutdown completes long before its grace. */
  CHECK(wait_count(loop, &server_closed, 1, 3000));
}

int main(void) {
  setup();
  RUN(test_check);
  RUN(test_watch);
  RUN(test_slow_watcher);
  RUN(test_shutdown);
  uvg_channel_close(channel, NULL, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  CHECK_EQ(uv_loop_close(loop), 0);
  TEST_EXIT();
}

/* A channel through an HTTP CONNECT proxy (gRFC A1): the test's proxy
 * (connect_proxy.c) in front of the project's server or a raw HTTP/2 one
 * (h2server.c), all on 127.0.0.1 and on one loop. Calls succeed through
 * the proxy; the request names the target as written, with credentials
 * when the URL has them; the :authority stays the target's; refusals,
 * errors and a silent proxy end calls UNAVAILABLE with the proxy's
 * reason; the environment, no_proxy and the disable option decide as
 * documented. */
#include <stdlib.h>
#include <uvgrpc.h>

#include "connect_proxy.h"
#include "h2server.h"
#include "loop_wait.h"
#include "test.h"

static uv_loop_t *loop;

static int run_until(const int *flag, int want, int ms) {
  return wait_count(loop, flag, want, ms);
}

/* ---- the server ---- */

static void echo(uvg_call_t *call, const uint8_t *msg, size_t len) {
  uvg_call_send(call, msg, len, 0, NULL, NULL);
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}
static void done(uvg_call_t *call, const uvg_status_t *st) {
  (void)call;
  (void)st;
}
static const uvg_method_t methods[] = {
    {.path = "/t.T/Echo", .on_call = echo, .on_done = done}};

static int srv_closed;
static void on_srv_closed(uvg_server_t *s, void *d) {
  (void)s;
  (void)d;
  srv_closed++;
}

static uvg_server_t *server_on(int *port) {
  uvg_server_t *s;
  *port = 0;
  CHECK_EQ(uvg_server_new(loop, NULL, &s), 0);
  CHECK_EQ(uvg_server_register(s, methods, 1), 0);
  CHECK_EQ(uvg_server_listen(s, "127.0.0.1:0",
                             uvg_insecure_server_credentials(), port),
           0);
  return s;
}

static void server_stop(uvg_server_t *s) {
  int before = srv_closed;
  uvg_server_close(s, on_srv_closed, NULL);
  CHECK(run_until(&srv_closed, before + 1, 3000));
}

/* ---- the proxy ---- */

static cpx_t px;

static void proxy_start(cpx_mode_t mode, int upstream_port) {
  memset(&px, 0, sizeof(px));
  px.mode = mode;
  px.upstream_port = upstream_port;
}
static void proxy_listen(void) {
  CHECK_EQ(cpx_start(&px, loop), 0);
}

/* "http://127.0.0.1:<proxy port>" with `userinfo@` before the host. */
static const char *proxy_url(const char *userinfo) {
  static char url[128];
  snprintf(url, sizeof(url), "http://%s%s127.0.0.1:%d",
           userinfo ? userinfo : "", userinfo ? "@" : "", px.port);
  return url;
}

/* ---- the channel and its calls ---- */

static int ch_closed;
static void on_ch_closed(uvg_channel_t *ch, void *d) {
  (void)ch;
  (void)d;
  ch_closed++;
}
static void channel_close(uvg_channel_t *ch) {
  int before = ch_closed;
  uvg_channel_close(ch, on_ch_closed, NULL);
  CHECK(run_until(&ch_closed, before + 1, 3000));
}

/* A channel to `target` through `proxy` (NULL: the environment decides);
 * each attempt may take `connect_ms`, and the backoff starts there too. */
static uvg_channel_t *channel(const char *target, const char *proxy,
                              uint64_t connect_ms) {
  uvg_channel_options_t o;
  uvg_channel_options_init(&o);
  o.http_proxy = proxy;
  o.min_connect_timeout_ms = connect_ms;
  o.backoff_initial_ms = connect_ms;
  uvg_channel_t *ch = NULL;
  CHECK_EQ(uvg_channel_new(loop, target, uvg_insecure_channel_credentials(), &o,
                           &ch),
           0);
  return ch;
}

typedef struct {
  int calls;
  uvg_status_code_t code;
  char reply[64];
  char message[256];
} unary_t;

static void on_unary(const uvg_status_t *st, const uint8_t *reply, size_t len,
                     void *ud) {
  unary_t *u = ud;
  u->calls++;
  u->code = st->code;
  snprintf(u->message, sizeof(u->message), "%s",
           st->message ? st->message : "");
  snprintf(u->reply, sizeof(u->reply), "%.*s", (int)len,
           reply ? (const char *)reply : "");
}

/* One unary call of `msg`, waited for. */
static unary_t call(uvg_channel_t *ch, const char *msg) {
  unary_t u = {0};
  CHECK_EQ(
      uvg_channel_unary(ch, "/t.T/Echo", msg, strlen(msg), NULL, on_unary, &u),
      0);
  CHECK(run_until(&u.calls, 1, 5000));
  return u;
}

/* The call ended UNAVAILABLE with `want` in its message. */
static void check_unavailable(const unary_t *u, const char *want) {
  CHECK_EQ(u->calls, 1);
  CHECK_EQ(u->code, UVG_STATUS_UNAVAILABLE);
  CHECK(strstr(u->message, want) != NULL);
  if (strstr(u->message, want) == NULL)
    fprintf(stderr, "  message: \"%s\", want \"%s\"\n", u->message, want);
}

/* ---- log lines ---- */

static char last_log[512];
static void on_log(uvg_log_level_t level, const char *line, void *d) {
  (void)d;
  if (level != UVG_LOG_TRACE) snprintf(last_log, sizeof(last_log), "%s", line);
}

static void clear_proxy_env(void) {
  const char *vars[] = {"grpc_proxy", "https_proxy", "http_proxy",
                        "no_grpc_proxy", "no_proxy"};
  for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) unsetenv(vars[i]);
}

/* ---- calls through the proxy ---- */

/* The target is a name only the proxy could resolve (it ignores it and
 * tunnels to the server): the channel resolved the proxy instead, and
 * sent the name as written. Calls share the one tunnel. */
static void test_calls_through_proxy(void) {
  int port;
  uvg_server_t *s = server_on(&port);
  proxy_start(CPX_TUNNEL, port);
  proxy_listen();
  uvg_channel_t *ch =
      channel("dns:///backend.test.invalid:4242", proxy_url(NULL), 5000);
  for (int i = 0; i < 3; i++) {
    unary_t u = call(ch, "hello");
    CHECK_EQ(u.code, UVG_STATUS_OK);
    CHECK_STR(u.reply, "hello");
  }
  CHECK_EQ(uvg_channel_state(ch, 0), UVG_STATE_READY);
  CHECK_EQ(px.connections, 1);
  CHECK_EQ(px.tunnels, 1);
  CHECK_STR(px.request,
            "CONNECT backend.test.invalid:4242 HTTP/1.1\r\n"
            "Host: backend.test.invalid:4242\r\n\r\n");
  channel_close(ch);
  cpx_stop(&px);
  server_stop(s);
}

static h2s_stream_t *seen;
static void answer_ok(h2s_stream_t *st, void *ud) {
  (void)ud;
  seen = st;
  h2s_ok(st, "pong", 4);
}

/* The server sees the target's :authority, not the proxy's; the port left
 * out of the target is the default one in the request. */
static void test_authority_is_the_targets(void) {
  h2s_t h2;
  CHECK_EQ(h2s_start(&h2, loop, answer_ok, NULL), 0);
  proxy_start(CPX_TUNNEL, h2.port);
  proxy_listen();
  uvg_channel_t *ch =
      channel("dns:///svc.internal.example", proxy_url(NULL), 5000);
  seen = NULL;
  unary_t u = call(ch, "ping");
  CHECK_EQ(u.code, UVG_STATUS_OK);
  CHECK_STR(u.reply, "pong");
  CHECK(seen != NULL);
  if (seen != NULL) CHECK_STR(seen->authority, "svc.internal.example");
  CHECK_STR(px.request,
            "CONNECT svc.internal.example:443 HTTP/1.1\r\n"
            "Host: svc.internal.example:443\r\n\r\n");
  channel_close(ch);
  cpx_stop(&px);
  CHECK_EQ(h2.errors, 0);
  h2s_close(&h2);
}

/* An ipv4 target tunnels to its address; the proxy connects to what the
 * request names. */
static void test_ipv4_target(void) {
  int port;
  char target[64], want[160];
  uvg_server_t *s = server_on(&port);
  proxy_start(CPX_TUNNEL, 0);
  proxy_listen();
  snprintf(target, sizeof(target), "ipv4:127.0.0.1:%d", port);
  uvg_channel_t *ch = channel(target, proxy_url(NULL), 5000);
  unary_t u = call(ch, "v4");
  CHECK_EQ(u.code, UVG_STATUS_OK);
  CHECK_STR(u.reply, "v4");
  snprintf(want, sizeof(want),
           "CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", port,
           port);
  CHECK_STR(px.request, want);
  channel_close(ch);
  cpx_stop(&px);
  server_stop(s);
}

/* The proxy's 200 and the server's SETTINGS in one write: the channel
 * reads the SETTINGS from the tunnel, or it would never be READY. */
static void test_server_bytes_with_the_200(void) {
  int port;
  uvg_server_t *s = server_on(&port);
  proxy_start(CPX_TUNNEL, port);
  px.coalesce = 1;
  proxy_listen();
  uvg_channel_t *ch =
      channel("dns:///coalesced.test.invalid:1", proxy_url(NULL), 2000);
  unary_t u = call(ch, "together");
  CHECK_EQ(u.code, UVG_STATUS_OK);
  CHECK_STR(u.reply, "together");
  CHECK_EQ(px.tunnels, 1);
  channel_close(ch);
  cpx_stop(&px);
  server_stop(s);
}

/* ---- authentication ---- */

static void test_credentials(void) {
  int port;
  uvg_server_t *s = server_on(&port);
  proxy_start(CPX_TUNNEL, port);
  px.require_auth = "Basic dXNAZXI6cDpzcw=="; /* "us@er:p:ss" */
  proxy_listen();
  uvg_channel_t *ch =
      channel("dns:///auth.test.invalid:7", proxy_url("us%40er:p%3Ass"), 5000);
  unary_t u = call(ch, "secret");
  CHECK_EQ(u.code, UVG_STATUS_OK);
  CHECK_STR(px.request,
            "CONNECT auth.test.invalid:7 HTTP/1.1\r\n"
            "Host: auth.test.invalid:7\r\n"
            "Proxy-Authorization: Basic dXNAZXI6cDpzcw==\r\n\r\n");
  channel_close(ch);
  cpx_stop(&px);
  server_stop(s);
}

static void test_credentials_refused(void) {
  char want[128];
  proxy_start(CPX_TUNNEL, 1);
  px.require_auth = "Basic YWxpY2U6c2VjcmV0"; /* "alice:secret" */
  proxy_listen();
  snprintf(want, sizeof(want),
           "proxy 127.0.0.1:%d answered 407 Proxy Authentication Required",
           px.port);
  /* none, then wrong ones */
  uvg_channel_t *ch =
      channel("dns:///auth.test.invalid:7", proxy_url(NULL), 2000);
  unary_t u = call(ch, "x");
  check_unavailable(&u, want);
  CHECK_EQ(uvg_channel_state(ch, 0), UVG_STATE_TRANSIENT_FAILURE);
  channel_close(ch);
  ch = channel("dns:///auth.test.invalid:7", proxy_url("alice:guess"), 2000);
  u = call(ch, "x");
  check_unavailable(&u, want);
  CHECK(strstr(px.request, "Proxy-Authorization: Basic YWxpY2U6Z3Vlc3M=\r\n") !=
        NULL);
  CHECK_EQ(px.tunnels, 0);
  channel_close(ch);
  cpx_stop(&px);
}

/* ---- failures ---- */

static void test_error_answer(void) {
  char want[128];
  proxy_start(CPX_ANSWER, 0);
  px.answer = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n";
  proxy_listen();
  uvg_channel_t *ch =
      channel("dns:///svc.test.invalid:1", proxy_url(NULL), 2000);
  unary_t u = call(ch, "x");
  snprintf(want, sizeof(want),
           "proxy 127.0.0.1:%d answered 500 Internal Server Error", px.port);
  check_unavailable(&u, want);
  channel_close(ch);
  cpx_stop(&px);
}

/* A proxy that takes the request and says nothing: the attempt's connect
 * timeout ends it. */
static void test_silent_proxy(void) {
  char want[128];
  proxy_start(CPX_STALL, 0);
  proxy_listen();
  uvg_channel_t *ch =
      channel("dns:///svc.test.invalid:1", proxy_url(NULL), 300);
  uint64_t t0 = uv_hrtime();
  unary_t u = call(ch, "x");
  uint64_t ms = (uv_hrtime() - t0) / 1000000;
  snprintf(want, sizeof(want),
           "proxy 127.0.0.1:%d did not answer CONNECT in time", px.port);
  check_unavailable(&u, want);
  CHECK(ms >= 250 && ms < 3000);
  CHECK(px.requests >= 1);
  channel_close(ch);
  cpx_stop(&px);
}

static void test_proxy_down(void) {
  char want[128];
  proxy_start(CPX_STALL, 0);
  proxy_listen();
  const char *url = proxy_url(NULL);
  int port = px.port;
  cpx_stop(&px); /* nothing listens there now */
  uvg_channel_t *ch = channel("dns:///svc.test.invalid:1", url, 2000);
  unary_t u = call(ch, "x");
  snprintf(want, sizeof(want),
           "connect to proxy 127.0.0.1:%d: connection refused", port);
  check_unavailable(&u, want);
  channel_close(ch);
}

/* Closing the channel while the proxy keeps it waiting: the call ends
 * CANCELLED, the channel closes at once, and the proxy sees the close. */
static void test_close_during_connect(void) {
  proxy_start(CPX_STALL, 0);
  proxy_listen();
  uvg_channel_t *ch =
      channel("dns:///svc.test.invalid:1", proxy_url(NULL), 20000);
  unary_t u = {0};
  CHECK_EQ(uvg_channel_unary(ch, "/t.T/Echo", "x", 1, NULL, on_unary, &u), 0);
  CHECK(run_until(&px.requests, 1, 3000));
  uint64_t t0 = uv_hrtime();
  channel_close(ch);
  CHECK((uv_hrtime() - t0) / 1000000 < 1000);
  CHECK_EQ(u.calls, 1);
  CHECK_EQ(u.code, UVG_STATUS_CANCELLED);
  /* the proxy's connection ends: only its listener is left open */
  for (int i = 0; i < 200 && px.open_handles > 1; i++) wait_ms(loop, 5);
  CHECK_EQ(px.open_handles, 1);
  cpx_stop(&px);
}

/* ---- who decides ---- */

/* grpc_proxy before https_proxy; a loopback target skips a proxy from
 * the environment. */
static void test_environment(void) {
  int port;
  char target[64];
  uvg_server_t *s = server_on(&port);
  proxy_start(CPX_TUNNEL, port);
  proxy_listen();
  setenv("grpc_proxy", proxy_url(NULL), 1);
  setenv("https_proxy", "http://127.0.0.1:1", 1); /* would be refused */
  uvg_channel_t *ch = channel("dns:///env.test.invalid:4242", NULL, 2000);
  unary_t u = call(ch, "env");
  CHECK_EQ(u.code, UVG_STATUS_OK);
  CHECK_STR(px.request,
            "CONNECT env.test.invalid:4242 HTTP/1.1\r\n"
            "Host: env.test.invalid:4242\r\n\r\n");
  channel_close(ch);

  snprintf(target, sizeof(target), "127.0.0.1:%d", port);
  ch = channel(target, NULL, 2000);
  u = call(ch, "direct");
  CHECK_EQ(u.code, UVG_STATUS_OK);
  CHECK_EQ(px.connections, 1); /* still the first channel's only */
  channel_close(ch);
  clear_proxy_env();
  cpx_stop(&px);
  server_stop(s);
}

/* no_proxy excludes a target even from the option's proxy; the disable
 * option turns every proxy off. */
static void test_no_proxy_and_disable(void) {
  int port;
  char target[64];
  uvg_server_t *s = server_on(&port);
  proxy_start(CPX_TUNNEL, port);
  proxy_listen();
  snprintf(target, sizeof(target), "127.0.0.1:%d", port);

  setenv("no_proxy", "example.com, 127.0.0.0/8", 1);
  uvg_channel_t *ch = channel(target, proxy_url(NULL), 2000);
  CHECK_EQ(call(ch, "a").code, UVG_STATUS_OK);
  CHECK_EQ(px.connections, 0);
  channel_close(ch);
  clear_proxy_env();

  ch = channel(target, proxy_url(NULL), 2000);
  CHECK_EQ(call(ch, "b").code, UVG_STATUS_OK);
  CHECK_EQ(px.connections, 1);
  channel_close(ch);

  uvg_channel_options_t o;
  uvg_channel_options_init(&o);
  o.http_proxy = proxy_url(NULL);
  o.disable_http_proxy = 1;
  CHECK_EQ(uvg_channel_new(loop, target, uvg_insecure_channel_credentials(), &o,
                           &ch),
           0);
  CHECK_EQ(call(ch, "c").code, UVG_STATUS_OK);
  CHECK_EQ(px.connections, 1);
  channel_close(ch);
  cpx_stop(&px);
  server_stop(s);
}

/* A bad proxy URL: the option's fails the channel; the environment's is
 * logged and the channel connects directly. */
static void test_bad_proxy_url(void) {
  uvg_channel_options_t o;
  uvg_channel_options_init(&o);
  o.http_proxy = "socks5://127.0.0.1:1080";
  uvg_channel_t *ch = NULL;
  uvg_set_log_cb(on_log, NULL);
  CHECK_EQ(uvg_channel_new(loop, "dns:///svc.test.invalid:1",
                           uvg_insecure_channel_credentials(), &o, &ch),
           UVG_EINVAL);
  CHECK(ch == NULL);
  CHECK_STR(last_log,
            "channel option http_proxy: scheme \"socks5\" is not supported "
            "(only http)");

  setenv("https_proxy", "https://user:pw@proxy.example:3128", 1);
  ch = channel("dns:///elsewhere.test.invalid:1", NULL, 2000);
  CHECK_STR(last_log,
            "ignoring the proxy in https_proxy: scheme \"https\" is not "
            "supported (only http); connecting directly");
  channel_close(ch);
  uvg_set_log_cb(NULL, NULL);
  clear_proxy_env();
}

int main(void) {
  loop = uv_default_loop();
  uvg_set_log_cb(NULL, NULL);
  clear_proxy_env(); /* the machine's proxy settings are not the test's */
  RUN(test_calls_through_proxy);
  RUN(test_authority_is_the_targets);
  RUN(test_ipv4_target);
  RUN(test_server_bytes_with_the_200);
  RUN(test_credentials);
  RUN(test_credentials_refused);
  RUN(test_error_answer);
  RUN(test_silent_proxy);
  RUN(test_proxy_down);
  RUN(test_close_during_connect);
  RUN(test_environment);
  RUN(test_no_proxy_and_disable);
  RUN(test_bad_proxy_url);
  uv_run(loop, UV_RUN_DEFAULT);
  CHECK_EQ(uv_loop_close(loop), 0);
  TEST_EXIT();
}

/*
 * Call credentials (lib/client/call_creds.c and their requests in
 * lib/client/call.c): the service URL they are asked with, the metadata
 * they add reaching the server, an answer given later from a timer, a
 * failure ending the call (gRFC A54's reserved codes as INTERNAL), the
 * refusal on an insecure channel unless allowed, the channel's and the
 * call's together, a deadline passing while they think, and destroy on the
 * last reference.
 */
#include <uvgrpc.h>

#include "client/channel.h"
#include "loop_wait.h"
#include "test.h"
#include "tls_certs.h"

static uv_loop_t *loop;
static tc_pem_t ca, server_cert;

/* ---- pure parts ---- */

static void test_service_url(void) {
  char *u = uvg__service_url("example.com:443", "/helloworld.Greeter/SayHello");
  CHECK_STR(u, "https://example.com/helloworld.Greeter");
  uvg__free(u);
  u = uvg__service_url("localhost:50051", "/a.b.C/D");
  CHECK_STR(u, "https://localhost:50051/a.b.C");
  uvg__free(u);
  u = uvg__service_url("[::1]:443", "/s.S/M");
  CHECK_STR(u, "https://[::1]/s.S");
  uvg__free(u);
  CHECK_EQ(uvg__call_creds_code(UVG_STATUS_UNAUTHENTICATED),
           UVG_STATUS_UNAUTHENTICATED);
  CHECK_EQ(uvg__call_creds_code(UVG_STATUS_PERMISSION_DENIED),
           UVG_STATUS_PERMISSION_DENIED);
  CHECK_EQ(uvg__call_creds_code(UVG_STATUS_UNAVAILABLE),
           UVG_STATUS_UNAVAILABLE);
  const uvg_status_code_t reserved[] = {
      UVG_STATUS_INVALID_ARGUMENT, UVG_STATUS_NOT_FOUND,
      UVG_STATUS_ALREADY_EXISTS,   UVG_STATUS_FAILED_PRECONDITION,
      UVG_STATUS_ABORTED,          UVG_STATUS_OUT_OF_RANGE,
      UVG_STATUS_DATA_LOSS};
  for (size_t i = 0; i < UVG__ARRAY_SIZE(reserved); i++)
    CHECK_EQ(uvg__call_creds_code(reserved[i]), UVG_STATUS_INTERNAL);
}

/* ---- a server that answers with the authorization it got ---- */

static void whoami(uvg_call_t *call, const uint8_t *msg, size_t len) {
  (void)msg;
  (void)len;
  char reply[256] = "";
  const uvg_metadata_t *md;
  size_t n = uvg_call_metadata(call, &md);
  for (size_t i = 0; i < n; i++)
    if (strcmp(md[i].key, "authorization") == 0 ||
        strcmp(md[i].key, "x-call") == 0) {
      size_t k = strlen(reply);
      snprintf(reply + k, sizeof(reply) - k, "%s%s=%.*s", k ? ";" : "",
               md[i].key, (int)md[i].value_len, (const char *)md[i].value);
    }
  uvg_call_send(call, reply, strlen(reply), 0, NULL, NULL);
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}
static void done(uvg_call_t *call, const uvg_status_t *st) {
  (void)call;
  (void)st;
}
static const uvg_method_t methods[] = {
    {.path = "/t.T/WhoAmI", .on_call = whoami, .on_done = done}};

/* ---- credentials the tests configure ---- */

typedef struct {
  const char *token;      /* added as "authorization: Bearer <token>" */
  const char *key;        /* or this key... */
  int later_ms;           /* answer from a timer this much later (0: at once) */
  uvg_status_code_t fail; /* answer with this code instead */
  int asked;
  int destroyed;
  char url[128], method[64];
  int last_rc;
} creds_cfg_t;

typedef struct {
  uv_timer_t t;
  uvg_metadata_request_t *req;
  creds_cfg_t *cfg;
} later_t;

static void answer(uvg_metadata_request_t *req, creds_cfg_t *cfg) {
  char value[96];
  if (cfg->fail != UVG_STATUS_OK) {
    cfg->last_rc = uvg_metadata_request_done(req, NULL, 0, cfg->fail,
                                             "token service down");
    return;
  }
  snprintf(value, sizeof(value), "Bearer %s", cfg->token);
  uvg_metadata_t md = {cfg->key ? cfg->key : "authorization",
                       (const uint8_t *)value, strlen(value)};
  cfg->last_rc = uvg_metadata_request_done(req, &md, 1, UVG_STATUS_OK, NULL);
}

static void free_later(uv_handle_t *h) {
  free(h);
}

static void on_later(uv_timer_t *t) {
  later_t *l = (later_t *)t;
  answer(l->req, l->cfg);
  uv_close((uv_handle_t *)t, free_later);
}

static void get_metadata(uvg_metadata_request_t *req, const char *url,
                         const char *method, void *user_data) {
  creds_cfg_t *cfg = user_data;
  cfg->asked++;
  snprintf(cfg->url, sizeof(cfg->url), "%s", url);
  snprintf(cfg->method, sizeof(cfg->method), "%s", method);
  if (cfg->later_ms == 0) {
    answer(req, cfg);
    return;
  }
  later_t *l = malloc(sizeof(*l));
  l->req = req;
  l->cfg = cfg;
  uv_timer_init(loop, &l->t);
  uv_timer_start(&l->t, on_later, (uint64_t)cfg->later_ms, 0);
}

static void destroy(void *user_data) {
  ((creds_cfg_t *)user_data)->destroyed++;
}

static uvg_call_credentials_t *make(creds_cfg_t *cfg) {
  uvg_call_credentials_t *c;
  CHECK_EQ(uvg_call_credentials_new(get_metadata, destroy, cfg, &c), 0);
  return c;
}

/* ---- one call ---- */

typedef struct {
  int done;
  uvg_status_code_t code;
  char message[256];
  char reply[256];
} result_t;

static void on_reply(const uvg_status_t *st, const uint8_t *reply, size_t len,
                     void *data) {
  result_t *r = data;
  r->done = 1;
  r->code = st->code;
  snprintf(r->message, sizeof(r->message), "%s", st->message);
  snprintf(r->reply, sizeof(r->reply), "%.*s", (int)len,
           reply ? (const char *)reply : "");
}

static int port, plain_port, channel_closed;
static void on_channel_closed(uvg_channel_t *ch, void *d) {
  (void)ch;
  (void)d;
  channel_closed++;
}

/* One call on a fresh channel (TLS unless `plain`) with the channel's
 * credentials `chc` and the call's `cc` (either may be NULL). */
static result_t call(int plain, int allow_insecure, uvg_call_credentials_t *chc,
                     uvg_call_credentials_t *cc, uint64_t timeout) {
  result_t r;
  memset(&r, 0, sizeof(r));
  uvg_channel_credentials_t *creds = uvg_insecure_channel_credentials();
  if (!plain) {
    uvg_tls_channel_options_t o = {
        .root_certs = {.data = ca.cert, .len = strlen(ca.cert)},
        .server_name_override = "localhost"};
    CHECK_EQ(uvg_tls_channel_credentials_new(&o, &creds), 0);
  }
  uvg_channel_options_t co;
  uvg_channel_options_init(&co);
  co.call_credentials = chc;
  co.allow_insecure_call_credentials = allow_insecure;
  co.authority = "api.example.com:443";
  char target[64];
  snprintf(target, sizeof(target), "127.0.0.1:%d", plain ? plain_port : port);
  uvg_channel_t *ch;
  CHECK_EQ(uvg_channel_new(loop, target, creds, &co, &ch), 0);
  uvg_channel_credentials_release(creds);
  uvg_client_call_options_t opts = {.timeout_ms = timeout ? timeout : 5000,
                                    .call_credentials = cc};
  CHECK_EQ(uvg_channel_unary(ch, "/t.T/WhoAmI", "", 0, &opts, on_reply, &r), 0);
  CHECK(wait_count(loop, &r.done, 1, 6000));
  int before = channel_closed;
  uvg_channel_close(ch, on_channel_closed, NULL);
  CHECK(wait_count(loop, &channel_closed, before + 1, 3000));
  return r;
}

static void test_token_reaches_server(void) {
  creds_cfg_t cfg = {.token = "t0ken"};
  uvg_call_credentials_t *c = make(&cfg);
  result_t r = call(0, 0, c, NULL, 0);
  CHECK_EQ(r.code, UVG_STATUS_OK);
  CHECK_STR(r.reply, "authorization=Bearer t0ken");
  CHECK_EQ(cfg.asked, 1);
  CHECK_STR(cfg.url, "https://api.example.com/t.T");
  CHECK_STR(cfg.method, "WhoAmI");
  /* answered later, from a timer */
  cfg.later_ms = 30;
  cfg.token = "later";
  r = call(0, 0, NULL, c, 0);
  CHECK_EQ(r.code, UVG_STATUS_OK);
  CHECK_STR(r.reply, "authorization=Bearer later");
  CHECK_EQ(cfg.destroyed, 0);
  uvg_call_credentials_release(c);
  CHECK_EQ(cfg.destroyed, 1); /* the channels and calls are gone */
}

static void test_channel_and_call_together(void) {
  creds_cfg_t chan = {.token = "channel", .later_ms = 20};
  creds_cfg_t per_call = {.token = "call", .key = "x-call"};
  uvg_call_credentials_t *a = make(&chan), *b = make(&per_call);
  result_t r = call(0, 0, a, b, 0);
  CHECK_EQ(r.code, UVG_STATUS_OK);
  CHECK_STR(r.reply, "authorization=Bearer channel;x-call=Bearer call");
  uvg_call_credentials_release(a);
  uvg_call_credentials_release(b);
  CHECK_EQ(chan.destroyed + per_call.destroyed, 2);
}

static void test_failing_credentials(void) {
  creds_cfg_t cfg = {.fail = UVG_STATUS_UNAVAILABLE};
  uvg_call_credentials_t *c = make(&cfg);
  result_t r = call(0, 0, NULL, c, 0);
  CHECK_EQ(r.code, UVG_STATUS_UNAVAILABLE);
  CHECK_STR(r.message, "token service down");
  /* gRFC A54: the control plane may not make the call INVALID_ARGUMENT */
  cfg.fail = UVG_STATUS_INVALID_ARGUMENT;
  r = call(0, 0, NULL, c, 0);
  CHECK_EQ(r.code, UVG_STATUS_INTERNAL);
  CHECK(strstr(r.message, "INVALID_ARGUMENT") != NULL);
  CHECK(strstr(r.message, "token service down") != NULL);
  /* a reserved header is not metadata: the call ends INTERNAL */
  cfg.fail = UVG_STATUS_OK;
  cfg.key = "content-type";
  cfg.token = "x";
  r = call(0, 0, NULL, c, 0);
  CHECK_EQ(r.code, UVG_STATUS_INTERNAL);
  CHECK_EQ(cfg.last_rc, UVG_EINVAL);
  uvg_call_credentials_release(c);
}

static void test_insecure_channel(void) {
  creds_cfg_t cfg = {.token = "secret"};
  uvg_call_credentials_t *c = make(&cfg);
  result_t r = call(1, 0, c, NULL, 0);
  CHECK_EQ(r.code, UVG_STATUS_UNAUTHENTICATED);
  CHECK(strstr(r.message, "insecure channel") != NULL);
  CHECK(strstr(r.message, "allow_insecure_call_credentials") != NULL);
  r = call(1, 0, NULL, c, 0);
  CHECK_EQ(r.code, UVG_STATUS_UNAUTHENTICATED);
  CHECK_EQ(cfg.asked, 0); /* never asked */
  r = call(1, 1, c, NULL, 0);
  CHECK_EQ(r.code, UVG_STATUS_OK);
  CHECK_STR(r.reply, "authorization=Bearer secret");
  uvg_call_credentials_release(c);
}

/* The deadline passes while the credentials think: the call ends
 * DEADLINE_EXCEEDED, and the late answer is told it came too late. */
static void test_deadline_while_asking(void) {
  creds_cfg_t cfg = {.token = "slow", .later_ms = 150};
  uvg_call_credentials_t *c = make(&cfg);
  result_t r = call(0, 0, NULL, c, 50);
  CHECK_EQ(r.code, UVG_STATUS_DEADLINE_EXCEEDED);
  cfg.last_rc = 0;
  wait_ms(loop, 200);
  CHECK_EQ(cfg.last_rc, UVG_ECANCELED);
  uvg_call_credentials_release(c);
  CHECK_EQ(cfg.destroyed, 1);
}

int main(void) {
  static const char *const names[] = {"localhost", NULL};
  loop = uv_default_loop();
  RUN(test_service_url);
  CHECK_EQ(tc_make_ca(&ca, "test CA"), 0);
  tc_leaf_t l = {.cn = "localhost", .dns = names};
  CHECK_EQ(tc_make_leaf(&server_cert, &ca, &l), 0);
  uvg_tls_server_options_t so = {
      .cert_chain = {.data = server_cert.cert, .len = strlen(server_cert.cert)},
      .private_key = {.data = server_cert.key, .len = strlen(server_cert.key)}};
  uvg_server_credentials_t *sc;
  CHECK_EQ(uvg_tls_server_credentials_new(&so, &sc), 0);
  uvg_server_t *s;
  CHECK_EQ(uvg_server_new(loop, NULL, &s), 0);
  CHECK_EQ(uvg_server_register(s, methods, 1), 0);
  CHECK_EQ(uvg_server_listen(s, "127.0.0.1:0", sc, &port), 0);
  CHECK_EQ(uvg_server_listen(s, "127.0.0.1:0",
                             uvg_insecure_server_credentials(), &plain_port),
           0);
  uvg_server_credentials_release(sc);
  RUN(test_token_reaches_server);
  RUN(test_channel_and_call_together);
  RUN(test_failing_credentials);
  RUN(test_insecure_channel);
  RUN(test_deadline_while_asking);
  uvg_server_close(s, NULL, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  tc_free(&ca);
  tc_free(&server_cert);
  CHECK_EQ(uv_loop_close(loop), 0);
  TEST_EXIT();
}

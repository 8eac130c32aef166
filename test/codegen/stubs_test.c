/* Calls through the generated code both ways on one loop: typed handlers
 * on a server, typed stubs on a channel to it. The four kinds of RPC, a
 * second service in a file, a file without a package, methods named like
 * C keywords, the same service name in two packages, types from another
 * file, request lifetime (an answer given later from a timer), response
 * metadata, UNIMPLEMENTED for a handler left out, cancellation, and
 * messages that do not decode, both ways. */
#include <uvgrpc.h>

#include "imports/common.uvgrpc.h"
#include "keywords.uvgrpc.h"
#include "loop_wait.h"
#include "nopkg.uvgrpc.h"
#include "same/one.uvgrpc.h"
#include "same/two.uvgrpc.h"
#include "test.h"
#include "uvg/test/v1/kinds.uvgrpc.h"

typedef Uvg__Test__V1__Outer__Inner inner_t;

static uv_loop_t *loop;
static uvg_server_t *server, *raw_server;
static uvg_channel_t *channel, *raw_channel;
static int srv_done, srv_cancelled;

/* ---- the typed server ---- */

static const char *dup_text(uvg_call_t *call, const char *a, const char *b) {
  size_t n = strlen(a) + strlen(b) + 1;
  char *s = uvg_call_alloc(call, n); /* lives until on_done */
  snprintf(s, n, "%s%s", a, b);
  return s;
}

static void on_later(uv_timer_t *t) {
  uvg_call_t *call = t->data;
  /* The request still lives: it is in the call's arena until on_done. */
  const inner_t *req = uvg_call_get_data(call);
  inner_t reply = UVG__TEST__V1__OUTER__INNER__INIT;
  reply.value = req->value + 1;
  reply.text = (char *)dup_text(call, "later:", req->text);
  uvg__test__v1__Kinds__Unary__reply(call, &reply);
  uv_close((uv_handle_t *)t, (uv_close_cb)free);
}

static void unary(uvg_call_t *call, const inner_t *req) {
  CHECK(uvg_call_method_data(call) == &srv_done);
  const uvg_metadata_t *md = uvg_call_metadata_get(call, "x-echo");
  if (md != NULL) uvg_call_send_headers(call, md, 1);
  if (strcmp(req->text, "later") == 0) {
    uvg_call_set_data(call, (void *)req);
    uv_timer_t *t = malloc(sizeof(*t));
    uv_timer_init(loop, t);
    t->data = call;
    uv_timer_start(t, on_later, 20, 0);
    return;
  }
  if (strcmp(req->text, "fail") == 0) {
    uvg_call_finish(call, UVG_STATUS_FAILED_PRECONDITION, "as asked", NULL, 0);
    return;
  }
  inner_t reply = UVG__TEST__V1__OUTER__INNER__INIT;
  reply.value = req->value + 1;
  reply.text = (char *)dup_text(call, "echo:", req->text);
  uvg__test__v1__Kinds__Unary__reply(call, &reply);
}

typedef struct {
  int next, count;
  uvg_call_t *call;
} fan_t;

static fan_t fans[4];
static int nfans;

static void fan_next(uvg_call_t *call, int status, void *ud);

/* Each response goes out once the previous one left: backpressure. */
static void fan_send(fan_t *f) {
  if (f->next == f->count) {
    uvg_call_finish(f->call, UVG_STATUS_OK, NULL, NULL, 0);
    return;
  }
  inner_t m = UVG__TEST__V1__OUTER__INNER__INIT;
  m.value = f->next++;
  m.text = "fan";
  if (uvg__test__v1__Kinds__Fan__send(f->call, &m, 0, fan_next, f) != 0)
    uvg_call_finish(f->call, UVG_STATUS_INTERNAL, "send failed", NULL, 0);
}

static void fan_next(uvg_call_t *call, int status, void *ud) {
  (void)call;
  if (status == 0) fan_send(ud);
}

static void fan(uvg_call_t *call, const inner_t *req) {
  fan_t *f = &fans[nfans++ % 4];
  f->next = 0;
  f->count = req->value;
  f->call = call;
  if (req->value < 0) return; /* forever: waits for the cancel */
  fan_send(f);
}

static void fan_cancel(uvg_call_t *call, const uvg_status_t *status) {
  CHECK_EQ(status->code, UVG_STATUS_CANCELLED);
  srv_cancelled++;
  uvg_call_finish(call, UVG_STATUS_CANCELLED, NULL, NULL, 0);
}

typedef struct {
  int count;
  int64_t sum;
} total_t;

static void sum_call(uvg_call_t *call) {
  uvg_call_set_data(call, uvg_call_alloc(call, sizeof(total_t)));
  memset(uvg_call_get_data(call), 0, sizeof(total_t));
}

static void sum_message(uvg_call_t *call, const inner_t *msg) {
  total_t *t = uvg_call_get_data(call);
  t->count++;
  t->sum += msg->value;
}

static void sum_half_close(uvg_call_t *call) {
  total_t *t = uvg_call_get_data(call);
  Uvg__Test__V1__Total reply = UVG__TEST__V1__TOTAL__INIT;
  reply.count = t->count;
  reply.sum = t->sum;
  uvg__test__v1__Kinds__Sum__reply(call, &reply);
}

static void chat_call(uvg_call_t *call) {
  (void)call;
}

static void chat_message(uvg_call_t *call, const inner_t *msg) {
  inner_t m = UVG__TEST__V1__OUTER__INNER__INIT;
  m.value = msg->value * 10;
  m.text = msg->text;
  uvg__test__v1__Kinds__Chat__send(call, &m, 0, NULL, NULL);
}

static void chat_half_close(uvg_call_t *call) {
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}

static void shared(uvg_call_t *call, const Uvg__Test__Common__Point *p) {
  Uvg__Test__Common__Point r = UVG__TEST__COMMON__POINT__INIT;
  r.x = p->y;
  r.y = p->x;
  uvg__test__v1__Kinds__Shared__reply(call, &r);
}

static void count_done(uvg_call_t *call, const uvg_status_t *status) {
  (void)call;
  (void)status;
  srv_done++;
}

static const uvg__test__v1__Kinds__server_t kinds_impl = {
    .Unary = {.on_call = unary, .on_done = count_done},
    .Fan = {.on_call = fan, .on_cancel = fan_cancel, .on_done = count_done},
    .Sum = {.on_call = sum_call,
            .on_message = sum_message,
            .on_half_close = sum_half_close,
            .on_done = count_done},
    .Chat = {.on_call = chat_call,
             .on_message = chat_message,
             .on_half_close = chat_half_close,
             .on_done = count_done},
    .Shared = {.on_call = shared, .on_done = count_done},
};

static void count_items(uvg_call_t *call, const Uvg__Test__V1__Outer *req) {
  Uvg__Test__V1__Total t = UVG__TEST__V1__TOTAL__INIT;
  t.count = (int32_t)req->n_items;
  for (size_t i = 0; i < req->n_items; i++)
    t.sum += (int64_t)strlen(req->items[i]->text);
  uvg__test__v1__Other__Count__reply(call, &t);
}

/* Other: Ping left NULL, so it answers UNIMPLEMENTED. */
static const uvg__test__v1__Other__server_t other_impl = {
    .Ping = {.on_done = count_done}, .Count = {.on_call = count_items}};

static void echo_say(uvg_call_t *call, const Ping *req) {
  Ping r = PING__INIT;
  r.text = (char *)dup_text(call, "nopkg:", req->text);
  Echo__Say__reply(call, &r);
}

static void echo_nothing(uvg_call_t *call, const Google__Protobuf__Empty *req) {
  (void)req;
  Google__Protobuf__Empty r = GOOGLE__PROTOBUF__EMPTY__INIT;
  Echo__Nothing__reply(call, &r);
}

static const Echo__server_t echo_impl = {
    .Say = {.on_call = echo_say},
    .Nothing = {.on_call = echo_nothing},
};

/* kw.switch: every method answers with its name's length in `default`. */
static void kw_reply(uvg_call_t *call, int v) {
  Kw__ServerT r = KW__SERVER_T__INIT;
  r.default_ = v;
  uvg_call_reply(call, (const ProtobufCMessage *)&r);
}
static void kw_default(uvg_call_t *call, const Kw__ServerT *req) {
  kw_reply(call, req->default_ + 7);
}
static void kw_register(uvg_call_t *call, const Kw__ServerT *req) {
  kw_reply(call, req->default_ + 8);
}
static void kw_class(uvg_call_t *call, const Kw__ServerT *req) {
  Kw__ServerT r = KW__SERVER_T__INIT;
  r.default_ = req->default_ + 5;
  kw__switch__class__send(call, &r, 0, NULL, NULL);
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}
static void kw_errno_call(uvg_call_t *call) {
  (void)call;
}
static void kw_errno_msg(uvg_call_t *call, const Kw__ServerT *m) {
  uvg_call_set_data(call, (void *)(intptr_t)m->default_);
}
static void kw_errno_end(uvg_call_t *call) {
  Kw__ServerT r = KW__SERVER_T__INIT;
  r.default_ = (int)(intptr_t)uvg_call_get_data(call) + 5;
  kw__switch__errno__reply(call, &r);
}
static void kw_unix_msg(uvg_call_t *call, const Kw__ServerT *m) {
  Kw__ServerT r = KW__SERVER_T__INIT;
  r.default_ = m->default_ + 4;
  kw__switch__unix__send(call, &r, 0, NULL, NULL);
}
static void kw_unix_end(uvg_call_t *call) {
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}

static const kw__switch__server_t kw_impl = {
    .default_ = {.on_call = kw_default},
    .register_ = {.on_call = kw_register},
    .class_ = {.on_call = kw_class},
    .errno_ = {.on_call = kw_errno_call,
               .on_message = kw_errno_msg,
               .on_half_close = kw_errno_end},
    .unix_ = {.on_call = kw_errno_call,
              .on_message = kw_unix_msg,
              .on_half_close = kw_unix_end},
};

static void one_hello(uvg_call_t *call, const One__Msg *m) {
  One__Msg r = ONE__MSG__INIT;
  r.from = (char *)dup_text(call, "one:", m->from);
  one__Greeter__Hello__reply(call, &r);
}
static void two_hello(uvg_call_t *call, const Two__Msg *m) {
  Two__Msg r = TWO__MSG__INIT;
  r.from = (char *)dup_text(call, "two:", m->from);
  two__Greeter__Hello__reply(call, &r);
}
static const one__Greeter__server_t one_impl = {
    .Hello = {.on_call = one_hello}};
static const two__Greeter__server_t two_impl = {
    .Hello = {.on_call = two_hello}};

/* ---- a raw server that answers typed clients wrongly ---- */

static void raw_garbage(uvg_call_t *call, const uint8_t *msg, size_t len) {
  (void)msg;
  (void)len;
  static const uint8_t junk[] = {0x0a, 0xff, 0xff}; /* a length past the end */
  uvg_call_send(call, junk, sizeof(junk), 0, NULL, NULL);
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}
static void raw_two(uvg_call_t *call, const uint8_t *msg, size_t len) {
  uvg_call_send(call, msg, len, 0, NULL, NULL);
  uvg_call_send(call, msg, len, 0, NULL, NULL);
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}
static void raw_done(uvg_call_t *call, const uvg_status_t *st) {
  (void)call;
  (void)st;
}

static void setup(void) {
  loop = uv_default_loop();
  int port, raw_port;
  CHECK_EQ(uvg_server_new(loop, NULL, &server), 0);
  CHECK_EQ(uvg__test__v1__Kinds__register(server, &kinds_impl, &srv_done), 0);
  CHECK_EQ(uvg__test__v1__Other__register(server, &other_impl, NULL), 0);
  CHECK_EQ(Echo__register(server, &echo_impl, NULL), 0);
  CHECK_EQ(kw__switch__register(server, &kw_impl, NULL), 0);
  CHECK_EQ(one__Greeter__register(server, &one_impl, NULL), 0);
  CHECK_EQ(two__Greeter__register(server, &two_impl, NULL), 0);
  /* A service is registered once. */
  CHECK_EQ(one__Greeter__register(server, &one_impl, NULL), UVG_EEXIST);
  static const Idle__server_t idle = {0};
  CHECK_EQ(Idle__register(server, &idle, NULL),
           0); /* no methods, still a service */
  CHECK_EQ(uvg_server_listen(server, "127.0.0.1:0",
                             uvg_insecure_server_credentials(), &port),
           0);
  static const uvg_method_t raw[] = {
      {.path = two__Greeter__Hello__PATH,
       .type = UVG_METHOD_UNARY,
       .on_call = raw_garbage,
       .on_done = raw_done},
      /* streaming on this side, so that it may answer twice */
      {.path = uvg__test__v1__Other__Ping__PATH,
       .type = UVG_METHOD_SERVER_STREAMING,
       .on_call = raw_two,
       .on_done = raw_done},
  };
  CHECK_EQ(uvg_server_new(loop, NULL, &raw_server), 0);
  CHECK_EQ(uvg_server_register(raw_server, raw, 2), 0);
  CHECK_EQ(uvg_server_listen(raw_server, "127.0.0.1:0",
                             uvg_insecure_server_credentials(), &raw_port),
           0);
  char target[64];
  snprintf(target, sizeof(target), "127.0.0.1:%d", port);
  CHECK_EQ(uvg_channel_new(loop, target, uvg_insecure_channel_credentials(),
                           NULL, &channel),
           0);
  snprintf(target, sizeof(target), "127.0.0.1:%d", raw_port);
  CHECK_EQ(uvg_channel_new(loop, target, uvg_insecure_channel_credentials(),
                           NULL, &raw_channel),
           0);
}

/* ---- the tests ---- */

static const uvg_client_call_options_t opts = {.timeout_ms = 5000};

typedef struct {
  int done;
  uvg_status_code_t code;
  char message[128];
  int32_t value;
  char text[64];
  int64_t sum;
  int count;
  char md[32];
} result_t;

static void keep_status(result_t *r, const uvg_status_t *st) {
  r->code = st->code;
  snprintf(r->message, sizeof(r->message), "%s", st->message);
  r->done++;
}

static void on_unary(const uvg_status_t *st, const inner_t *reply, void *ud) {
  result_t *r = ud;
  if (st->code == UVG_STATUS_OK) {
    r->value = reply->value;
    snprintf(r->text, sizeof(r->text), "%s", reply->text);
  } else {
    CHECK(reply == NULL);
  }
  keep_status(r, st);
}

static void test_unary(void) {
  result_t r = {0};
  inner_t req = UVG__TEST__V1__OUTER__INNER__INIT;
  req.value = 41;
  req.text = "hi";
  int before = srv_done;
  CHECK_EQ(uvg__test__v1__Kinds__Unary__client_unary(channel, &req, &opts,
                                                     on_unary, &r),
           0);
  CHECK(wait_count(loop, &r.done, 1, 5000));
  CHECK_EQ(r.code, UVG_STATUS_OK);
  CHECK_EQ(r.value, 42);
  CHECK_STR(r.text, "echo:hi");
  CHECK(wait_count(loop, &srv_done, before + 1, 1000)); /* on_done ran */

  /* A status other than OK: no reply. */
  memset(&r, 0, sizeof(r));
  req.text = "fail";
  CHECK_EQ(uvg__test__v1__Kinds__Unary__client_unary(channel, &req, &opts,
                                                     on_unary, &r),
           0);
  CHECK(wait_count(loop, &r.done, 1, 5000));
  CHECK_EQ(r.code, UVG_STATUS_FAILED_PRECONDITION);
  CHECK_STR(r.message, "as asked");

  /* Bad arguments are refused before a call starts. */
  CHECK_EQ(uvg__test__v1__Kinds__Unary__client_unary(channel, NULL, &opts,
                                                     on_unary, &r),
           UVG_EINVAL);
  CHECK_EQ(
      uvg__test__v1__Kinds__Unary__client_unary(channel, &req, &opts, NULL, &r),
      UVG_EINVAL);
}

/* The request is valid until on_done: the handler answers 20 ms later. */
static void test_answer_later(void) {
  result_t r = {0};
  inner_t req = UVG__TEST__V1__OUTER__INNER__INIT;
  req.value = 1;
  req.text = "later";
  CHECK_EQ(uvg__test__v1__Kinds__Unary__client_unary(channel, &req, &opts,
                                                     on_unary, &r),
           0);
  CHECK(wait_count(loop, &r.done, 1, 5000));
  CHECK_EQ(r.code, UVG_STATUS_OK);
  CHECK_EQ(r.value, 2);
  CHECK_STR(r.text, "later:later");
}

/* The typed call object of a unary method: response metadata too. */
static void unary_md(uvg__test__v1__Kinds__Unary__client_call_t *call,
                     const uvg_metadata_t *md, size_t n, void *ud) {
  result_t *r = ud;
  CHECK(uvg__test__v1__Kinds__Unary__client_raw(call) != NULL);
  for (size_t i = 0; i < n; i++)
    if (strcmp(md[i].key, "x-echo") == 0)
      snprintf(r->md, sizeof(r->md), "%.*s", (int)md[i].value_len,
               (const char *)md[i].value);
}
static void unary_status(uvg__test__v1__Kinds__Unary__client_call_t *call,
                         const uvg_status_t *st, const inner_t *reply,
                         const uvg_metadata_t *trailers, size_t n, void *ud) {
  result_t *r = ud;
  (void)call;
  (void)trailers;
  (void)n;
  if (reply != NULL) r->value = reply->value;
  keep_status(r, st);
}

static void test_unary_call_object(void) {
  result_t r = {0};
  inner_t req = UVG__TEST__V1__OUTER__INNER__INIT;
  req.value = 7;
  req.text = "md";
  const uvg_metadata_t md = {"x-echo", (const uint8_t *)"yes", 3};
  uvg_client_call_options_t o = {
      .timeout_ms = 5000, .metadata = &md, .nmetadata = 1};
  static const uvg__test__v1__Kinds__Unary__client_cbs_t cbs = {unary_md,
                                                                unary_status};
  uvg__test__v1__Kinds__Unary__client_call_t *call = NULL;
  CHECK_EQ(uvg__test__v1__Kinds__Unary__client_start(channel, &req, &o, &cbs,
                                                     &r, &call),
           0);
  CHECK(call != NULL);
  CHECK(wait_count(loop, &r.done, 1, 5000));
  CHECK_EQ(r.code, UVG_STATUS_OK);
  CHECK_EQ(r.value, 8);
  CHECK_STR(r.md, "yes");
}

static void fan_message(uvg__test__v1__Kinds__Fan__client_call_t *call,
                        const inner_t *msg, void *ud) {
  result_t *r = ud;
  CHECK_EQ(msg->value, r->count);
  CHECK_STR(msg->text, "fan");
  r->count++;
  uvg__test__v1__Kinds__Fan__client_read(call);
}
static void fan_status(uvg__test__v1__Kinds__Fan__client_call_t *call,
                       const uvg_status_t *st, const uvg_metadata_t *trailers,
                       size_t n, void *ud) {
  (void)call;
  (void)trailers;
  (void)n;
  keep_status(ud, st);
}

static void test_server_streaming(void) {
  result_t r = {0};
  inner_t req = UVG__TEST__V1__OUTER__INNER__INIT;
  req.value = 5;
  static const uvg__test__v1__Kinds__Fan__client_cbs_t cbs = {NULL, fan_message,
                                                              fan_status};
  uvg__test__v1__Kinds__Fan__client_call_t *call;
  CHECK_EQ(uvg__test__v1__Kinds__Fan__client_start(channel, &req, &opts, &cbs,
                                                   &r, &call),
           0);
  CHECK_EQ(uvg__test__v1__Kinds__Fan__client_read(call), 0);
  CHECK(wait_count(loop, &r.done, 1, 5000));
  CHECK_EQ(r.code, UVG_STATUS_OK);
  CHECK_EQ(r.count, 5);
}

/* Cancelling from the client reaches the handler's on_cancel. */
static void test_cancel(void) {
  result_t r = {0};
  inner_t req = UVG__TEST__V1__OUTER__INNER__INIT;
  req.value = -1;
  static const uvg__test__v1__Kinds__Fan__client_cbs_t cbs = {NULL, fan_message,
                                                              fan_status};
  uvg__test__v1__Kinds__Fan__client_call_t *call;
  int cancels = srv_cancelled;
  CHECK_EQ(uvg__test__v1__Kinds__Fan__client_start(channel, &req, &opts, &cbs,
                                                   &r, &call),
           0);
  wait_ms(loop, 50);
  CHECK_EQ(uvg__test__v1__Kinds__Fan__client_cancel(call), 0);
  CHECK(wait_count(loop, &r.done, 1, 5000));
  CHECK_EQ(r.code, UVG_STATUS_CANCELLED);
  CHECK(wait_count(loop, &srv_cancelled, cancels + 1, 5000));
}

static void sum_status(uvg__test__v1__Kinds__Sum__client_call_t *call,
                       const uvg_status_t *st,
                       const Uvg__Test__V1__Total *reply,
                       const uvg_metadata_t *trailers, size_t n, void *ud) {
  result_t *r = ud;
  (void)call;
  (void)trailers;
  (void)n;
  if (reply != NULL) {
    r->count = reply->count;
    r->sum = reply->sum;
  }
  keep_status(r, st);
}

static void test_client_streaming(void) {
  result_t r = {0};
  static const uvg__test__v1__Kinds__Sum__client_cbs_t cbs = {NULL, sum_status};
  uvg__test__v1__Kinds__Sum__client_call_t *call;
  CHECK_EQ(
      uvg__test__v1__Kinds__Sum__client_start(channel, &opts, &cbs, &r, &call),
      0);
  for (int i = 1; i <= 4; i++) {
    inner_t m = UVG__TEST__V1__OUTER__INNER__INIT;
    m.value = i * 100;
    CHECK_EQ(uvg__test__v1__Kinds__Sum__client_send(call, &m, 0, NULL, NULL),
             0);
  }
  CHECK_EQ(uvg__test__v1__Kinds__Sum__client_half_close(call), 0);
  CHECK(wait_count(loop, &r.done, 1, 5000));
  CHECK_EQ(r.code, UVG_STATUS_OK);
  CHECK_EQ(r.count, 4);
  CHECK_EQ(r.sum, 1000);
}

static int chat_sent_cbs;
static void chat_sent(uvg_client_call_t *call, int status, void *ud) {
  (void)call;
  (void)ud;
  CHECK_EQ(status, 0);
  chat_sent_cbs++;
}
static void chat_msg(uvg__test__v1__Kinds__Chat__client_call_t *call,
                     const inner_t *msg, void *ud) {
  result_t *r = ud;
  r->sum += msg->value;
  r->count++;
  if (r->count < 3) {
    inner_t m = UVG__TEST__V1__OUTER__INNER__INIT;
    m.value = r->count + 1;
    m.text = "again";
    /* With a callback: packed once, sent without a copy. */
    CHECK_EQ(
        uvg__test__v1__Kinds__Chat__client_send(call, &m, 0, chat_sent, NULL),
        0);
    uvg__test__v1__Kinds__Chat__client_read(call);
  } else {
    uvg__test__v1__Kinds__Chat__client_half_close(call);
  }
}
static void chat_status(uvg__test__v1__Kinds__Chat__client_call_t *call,
                        const uvg_status_t *st, const uvg_metadata_t *trailers,
                        size_t n, void *ud) {
  (void)call;
  (void)trailers;
  (void)n;
  keep_status(ud, st);
}

/* Ping-pong: each response brings the next request. */
static void test_bidi(void) {
  result_t r = {0};
  static const uvg__test__v1__Kinds__Chat__client_cbs_t cbs = {NULL, chat_msg,
                                                               chat_status};
  uvg__test__v1__Kinds__Chat__client_call_t *call;
  chat_sent_cbs = 0;
  CHECK_EQ(
      uvg__test__v1__Kinds__Chat__client_start(channel, &opts, &cbs, &r, &call),
      0);
  inner_t m = UVG__TEST__V1__OUTER__INNER__INIT;
  m.value = 1;
  m.text = "first";
  CHECK_EQ(uvg__test__v1__Kinds__Chat__client_send(call, &m, 0, NULL, NULL), 0);
  CHECK_EQ(uvg__test__v1__Kinds__Chat__client_read(call), 0);
  CHECK(wait_count(loop, &r.done, 1, 5000));
  CHECK_EQ(r.code, UVG_STATUS_OK);
  CHECK_EQ(r.count, 3);
  CHECK_EQ(r.sum, 60);
  CHECK_EQ(chat_sent_cbs, 2);
}

static void on_point(const uvg_status_t *st, const Uvg__Test__Common__Point *p,
                     void *ud) {
  result_t *r = ud;
  if (p != NULL) r->value = p->x * 1000 + p->y;
  keep_status(r, st);
}

static void on_total(const uvg_status_t *st, const Uvg__Test__V1__Total *t,
                     void *ud) {
  result_t *r = ud;
  CHECK(t == NULL);
  keep_status(r, st);
}

static void test_types_and_services(void) {
  result_t r = {0};
  Uvg__Test__Common__Point p = UVG__TEST__COMMON__POINT__INIT;
  p.x = 3;
  p.y = 4;
  CHECK_EQ(uvg__test__v1__Kinds__Shared__client_unary(channel, &p, &opts,
                                                      on_point, &r),
           0);
  CHECK(wait_count(loop, &r.done, 1, 5000));
  CHECK_EQ(r.code, UVG_STATUS_OK);
  CHECK_EQ(r.value, 4003);

  /* The second service of the file: its handler is NULL. */
  memset(&r, 0, sizeof(r));
  Uvg__Test__V1__Total t = UVG__TEST__V1__TOTAL__INIT;
  CHECK_EQ(uvg__test__v1__Other__Ping__client_unary(channel, &t, &opts,
                                                    on_total, &r),
           0);
  CHECK(wait_count(loop, &r.done, 1, 5000));
  CHECK_EQ(r.code, UVG_STATUS_UNIMPLEMENTED);
  CHECK_STR(r.message, "method Ping not implemented");
}

static void on_ping(const uvg_status_t *st, const Ping *p, void *ud) {
  result_t *r = ud;
  if (p != NULL) snprintf(r->text, sizeof(r->text), "%s", p->text);
  keep_status(r, st);
}
static void on_empty(const uvg_status_t *st, const Google__Protobuf__Empty *e,
                     void *ud) {
  CHECK(e != NULL);
  keep_status(ud, st);
}

static void test_no_package(void) {
  result_t r = {0};
  Ping p = PING__INIT;
  p.text = "x";
  CHECK_STR(Echo__Say__PATH, "/Echo/Say");
  CHECK_EQ(Echo__Say__client_unary(channel, &p, &opts, on_ping, &r), 0);
  CHECK(wait_count(loop, &r.done, 1, 5000));
  CHECK_EQ(r.code, UVG_STATUS_OK);
  CHECK_STR(r.text, "nopkg:x");
  memset(&r, 0, sizeof(r));
  Google__Protobuf__Empty e = GOOGLE__PROTOBUF__EMPTY__INIT;
  CHECK_EQ(Echo__Nothing__client_unary(channel, &e, &opts, on_empty, &r), 0);
  CHECK(wait_count(loop, &r.done, 1, 5000));
  CHECK_EQ(r.code, UVG_STATUS_OK);
}

static void on_kw(const uvg_status_t *st, const Kw__ServerT *m, void *ud) {
  result_t *r = ud;
  if (m != NULL) r->value = m->default_;
  keep_status(r, st);
}
static void kw_class_msg(kw__switch__class__client_call_t *call,
                         const Kw__ServerT *m, void *ud) {
  result_t *r = ud;
  r->value = m->default_;
  kw__switch__class__client_read(call);
}
static void kw_class_status(kw__switch__class__client_call_t *call,
                            const uvg_status_t *st, const uvg_metadata_t *t,
                            size_t n, void *ud) {
  (void)call;
  (void)t;
  (void)n;
  keep_status(ud, st);
}
static void kw_errno_status(kw__switch__errno__client_call_t *call,
                            const uvg_status_t *st, const Kw__ServerT *reply,
                            const uvg_metadata_t *t, size_t n, void *ud) {
  result_t *r = ud;
  (void)call;
  (void)t;
  (void)n;
  if (reply != NULL) r->value = reply->default_;
  keep_status(r, st);
}
static void kw_unix_msg_c(kw__switch__unix__client_call_t *call,
                          const Kw__ServerT *m, void *ud) {
  result_t *r = ud;
  r->value = m->default_;
  kw__switch__unix__client_half_close(call);
}
static void kw_unix_status(kw__switch__unix__client_call_t *call,
                           const uvg_status_t *st, const uvg_metadata_t *t,
                           size_t n, void *ud) {
  (void)call;
  (void)t;
  (void)n;
  keep_status(ud, st);
}

/* Methods named default, register, class, errno, unix, Init: each kind. */
static void test_keywords(void) {
  Kw__ServerT m = KW__SERVER_T__INIT;
  m.default_ = 100;
  result_t r = {0};
  CHECK_EQ(kw__switch__default__client_unary(channel, &m, &opts, on_kw, &r), 0);
  CHECK(wait_count(loop, &r.done, 1, 5000));
  CHECK_EQ(r.value, 107);
  memset(&r, 0, sizeof(r));
  CHECK_EQ(kw__switch__register__client_unary(channel, &m, &opts, on_kw, &r),
           0);
  CHECK(wait_count(loop, &r.done, 1, 5000));
  CHECK_EQ(r.value, 108);
  memset(&r, 0, sizeof(r));
  CHECK_EQ(kw__switch__Init__client_unary(channel, &m, &opts, on_kw, &r), 0);
  CHECK(wait_count(loop, &r.done, 1, 5000));
  CHECK_EQ(r.code, UVG_STATUS_UNIMPLEMENTED);

  memset(&r, 0, sizeof(r));
  static const kw__switch__class__client_cbs_t ccbs = {NULL, kw_class_msg,
                                                       kw_class_status};
  kw__switch__class__client_call_t *cc;
  CHECK_EQ(kw__switch__class__client_start(channel, &m, &opts, &ccbs, &r, &cc),
           0);
  kw__switch__class__client_read(cc);
  CHECK(wait_count(loop, &r.done, 1, 5000));
  CHECK_EQ(r.code, UVG_STATUS_OK);
  CHECK_EQ(r.value, 105);

  memset(&r, 0, sizeof(r));
  static const kw__switch__errno__client_cbs_t ecbs = {NULL, kw_errno_status};
  kw__switch__errno__client_call_t *ec;
  CHECK_EQ(kw__switch__errno__client_start(channel, &opts, &ecbs, &r, &ec), 0);
  kw__switch__errno__client_send(ec, &m, 0, NULL, NULL);
  kw__switch__errno__client_half_close(ec);
  CHECK(wait_count(loop, &r.done, 1, 5000));
  CHECK_EQ(r.value, 105);

  memset(&r, 0, sizeof(r));
  static const kw__switch__unix__client_cbs_t ucbs = {NULL, kw_unix_msg_c,
                                                      kw_unix_status};
  kw__switch__unix__client_call_t *uc;
  CHECK_EQ(kw__switch__unix__client_start(channel, &opts, &ucbs, &r, &uc), 0);
  kw__switch__unix__client_send(uc, &m, 0, NULL, NULL);
  kw__switch__unix__client_read(uc);
  CHECK(wait_count(loop, &r.done, 1, 5000));
  CHECK_EQ(r.code, UVG_STATUS_OK);
  CHECK_EQ(r.value, 104);
}

static void on_one(const uvg_status_t *st, const One__Msg *m, void *ud) {
  result_t *r = ud;
  if (m != NULL) snprintf(r->text, sizeof(r->text), "%s", m->from);
  keep_status(r, st);
}
static void on_two(const uvg_status_t *st, const Two__Msg *m, void *ud) {
  result_t *r = ud;
  if (m != NULL) snprintf(r->text, sizeof(r->text), "%s", m->from);
  keep_status(r, st);
}

/* one.Greeter and two.Greeter on one server, each to its own handler. */
static void test_same_names(void) {
  result_t a = {0}, b = {0};
  One__Msg m1 = ONE__MSG__INIT;
  Two__Msg m2 = TWO__MSG__INIT;
  m1.from = m2.from = "x";
  CHECK_EQ(one__Greeter__Hello__client_unary(channel, &m1, &opts, on_one, &a),
           0);
  CHECK_EQ(two__Greeter__Hello__client_unary(channel, &m2, &opts, on_two, &b),
           0);
  CHECK(wait_count(loop, &b.done, 1, 5000));
  CHECK(wait_count(loop, &a.done, 1, 5000));
  CHECK_STR(a.text, "one:x");
  CHECK_STR(b.text, "two:x");
}

static void on_raw(const uvg_status_t *st, const uint8_t *reply, size_t len,
                   void *ud) {
  (void)reply;
  (void)len;
  keep_status(ud, st);
}

/* Bytes that are no message: INTERNAL, on either side. */
static void test_undecodable(void) {
  result_t r = {0};
  static const uint8_t junk[] = {0x12, 0x7f}; /* field 2, 127 bytes, none */
  CHECK_EQ(uvg_channel_unary(channel, uvg__test__v1__Kinds__Unary__PATH, junk,
                             sizeof(junk), &opts, on_raw, &r),
           0);
  CHECK(wait_count(loop, &r.done, 1, 5000));
  CHECK_EQ(r.code, UVG_STATUS_INTERNAL);
  CHECK_STR(r.message, "grpc: error unmarshalling request");

  memset(&r, 0, sizeof(r));
  Two__Msg m = TWO__MSG__INIT;
  CHECK_EQ(
      two__Greeter__Hello__client_unary(raw_channel, &m, &opts, on_two, &r), 0);
  CHECK(wait_count(loop, &r.done, 1, 5000));
  CHECK_EQ(r.code, UVG_STATUS_INTERNAL);
  CHECK_STR(r.message, "grpc: failed to unmarshal the received message");

  /* Two responses to a unary call. */
  memset(&r, 0, sizeof(r));
  Uvg__Test__V1__Total t = UVG__TEST__V1__TOTAL__INIT;
  t.count = 1;
  CHECK_EQ(uvg__test__v1__Other__Ping__client_unary(raw_channel, &t, &opts,
                                                    on_total, &r),
           0);
  CHECK(wait_count(loop, &r.done, 1, 5000));
  CHECK_EQ(r.code, UVG_STATUS_INTERNAL);
}

/* What the generated tables say. */
static void test_descriptors(void) {
  const uvg_pb_service_t *s = &uvg__test__v1__Kinds__service;
  CHECK_STR(s->name, "uvg.test.v1.Kinds");
  CHECK_EQ(s->nmethods, 5);
  CHECK_EQ(uvg__test__v1__Other__service.nmethods, 3);
  CHECK_STR(s->methods[0].path, "/uvg.test.v1.Kinds/Unary");
  CHECK_EQ(s->methods[1].type, UVG_METHOD_SERVER_STREAMING);
  CHECK_EQ(s->methods[2].type, UVG_METHOD_CLIENT_STREAMING);
  CHECK_EQ(s->methods[3].type, UVG_METHOD_BIDI_STREAMING);
  CHECK(s->methods[4].input == &uvg__test__common__point__descriptor);
  const uvg_pb_file_t *f = s->file;
  CHECK_STR(f->name, "uvg/test/v1/kinds.proto");
  CHECK_STR(f->package, "uvg.test.v1");
  CHECK_EQ(f->ndeps, 2);
  CHECK(f->deps[0] == &uvg_gen_file_imports_2fcommon_2eproto);
  CHECK_STR(f->deps[0]->name, "imports/common.proto");
  int found = 0;
  for (size_t i = 0; i < f->nsymbols; i++)
    found += strcmp(f->symbols[i], "uvg.test.v1.Outer.Inner") == 0 ||
             strcmp(f->symbols[i], "uvg.test.v1.Kinds.Chat") == 0;
  CHECK_EQ(found, 2);
  /* The embedded descriptor is the file, without source info. */
  CHECK(f->descriptor_len > 100);
  CHECK_EQ(f->descriptor[0], 0x0a); /* field 1, name */
  CHECK_EQ(f->descriptor[1], strlen("uvg/test/v1/kinds.proto"));
  CHECK_STR(uvg_gen_file_nopkg_2eproto.package, "");
  CHECK_EQ(uvg_gen_file_imports_2fcommon_2eproto.nsymbols, 2);
  CHECK_EQ(kw__switch__service.nmethods, 9);
  CHECK_STR(kw__switch__service.methods[0].path, "/kw.switch/default");
}

/* Every allocation of the library, decoding included, goes through here. */
static long allocations;
static void *counting_malloc(size_t n) {
  allocations++;
  return malloc(n);
}
static void *counting_realloc(void *p, size_t n) {
  allocations++;
  return realloc(p, n);
}

static void on_count(const uvg_status_t *st, const Uvg__Test__V1__Total *t,
                     void *ud) {
  result_t *r = ud;
  if (t != NULL) {
    r->count = t->count;
    r->sum = t->sum;
  }
  keep_status(r, st);
}

/* What one Count call of `n` items costs the library in allocations, on
 * both sides (the calls before it warm the pools up). */
static long allocations_of_count(size_t n) {
  static inner_t items[400];
  static inner_t *ptrs[400];
  Uvg__Test__V1__Outer req = UVG__TEST__V1__OUTER__INIT;
  for (size_t i = 0; i < n; i++) {
    uvg__test__v1__outer__inner__init(&items[i]);
    items[i].value = (int32_t)i;
    items[i].text = "item";
    ptrs[i] = &items[i];
  }
  req.n_items = n;
  req.items = ptrs;
  long best = -1;
  for (int round = 0; round < 3; round++) {
    result_t r = {0};
    long before = allocations;
    CHECK_EQ(uvg__test__v1__Other__Count__client_unary(channel, &req, &opts,
                                                       on_count, &r),
             0);
    CHECK(wait_count(loop, &r.done, 1, 5000));
    CHECK_EQ(r.code, UVG_STATUS_OK);
    CHECK_EQ(r.count, (int)n);
    CHECK_EQ(r.sum, 4 * (int64_t)n);
    long used = allocations - before;
    if (best < 0 || used < best) best = used;
  }
  return best;
}

/* Decoding goes to the call's arena: 400 items with a string each (800
 * fields with memory of their own) cost a few blocks, not an allocation
 * per field. */
static void test_decode_allocations(void) {
  long one = allocations_of_count(1);
  long many = allocations_of_count(400);
  fprintf(stderr, "  allocations per call: %ld with 1 item, %ld with 400\n",
          one, many);
  CHECK(many - one < 20);
}

static void closed(uvg_server_t *s, void *ud) {
  (void)s;
  ++*(int *)ud;
}

int main(void) {
  uvg_set_allocator(counting_malloc, counting_realloc, free);
  setup();
  RUN(test_descriptors);
  RUN(test_unary);
  RUN(test_answer_later);
  RUN(test_unary_call_object);
  RUN(test_server_streaming);
  RUN(test_cancel);
  RUN(test_client_streaming);
  RUN(test_bidi);
  RUN(test_types_and_services);
  RUN(test_no_package);
  RUN(test_keywords);
  RUN(test_same_names);
  RUN(test_undecodable);
  RUN(test_decode_allocations);
  int n = 0;
  uvg_channel_close(channel, NULL, NULL);
  uvg_channel_close(raw_channel, NULL, NULL);
  uvg_server_close(server, closed, &n);
  uvg_server_close(raw_server, closed, &n);
  CHECK(wait_count(loop, &n, 2, 5000));
  uv_run(loop, UV_RUN_DEFAULT);
  CHECK_EQ(uv_loop_close(loop), 0);
  TEST_EXIT();
}

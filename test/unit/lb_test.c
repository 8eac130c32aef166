/* Load balancing and resolvers against several servers of the project's
 * own on loopback ports: round_robin's spread, a backend killed and
 * restarted, a resolver update that removes a backend while it still has
 * a call, pick_first over several addresses (in order, Happy Eyeballs, A61
 * interleaving), and the plug-in APIs with a resolver and a policy written
 * here. Run one case by name, or all with no argument. */
#include <sys/un.h>
#include <uvgrpc.h>

#include "test.h"
#include "loop_wait.h"

static uv_loop_t *loop;

/* ---- backends: each counts the calls it answers ---- */

#define NB 3
typedef struct {
  uvg_server_t *srv;
  int port;
  int calls;
  uvg_method_t methods[3];
  int health;              /* the status its health service answers */
  int no_health;           /* no health service at all */
  uvg_call_t *watch;       /* the client's Health/Watch, while open */
  char watched[32];        /* the service name it asked about */
} backend_t;
static backend_t be[NB];

typedef struct {
  uv_timer_t t; /* first: freed through its handle */
  uvg_call_t *call;
} slow_t;
static void slow_reply(uv_timer_t *t) {
  slow_t *s = t->data;
  uvg_call_send(s->call, "slow", 4, 0, NULL, NULL);
  uvg_call_finish(s->call, UVG_STATUS_OK, NULL, NULL, 0);
  uv_close((uv_handle_t *)t, (uv_close_cb)free);
}
static void count(uvg_call_t *call, const uint8_t *msg, size_t len) {
  backend_t *b = uvg_call_method_data(call);
  (void)msg;
  (void)len;
  b->calls++;
  char id = (char)('0' + (b - be));
  uvg_call_send(call, &id, 1, 0, NULL, NULL);
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}
/* answers after 300 ms: a call in flight while the test acts */
static void slow(uvg_call_t *call, const uint8_t *msg, size_t len) {
  backend_t *b = uvg_call_method_data(call);
  (void)msg;
  (void)len;
  b->calls++;
  slow_t *s = calloc(1, sizeof(*s));
  s->call = call;
  uv_timer_init(loop, &s->t);
  s->t.data = s;
  uv_timer_start(&s->t, slow_reply, 300, 0);
}

static void srv_done(uvg_call_t *call, const uvg_status_t *st) {
  (void)call;
  (void)st;
}

/* grpc.health.v1.Health/Watch: HealthCheckResponse {status = 1} */
static void send_health(backend_t *b) {
  uint8_t msg[2] = {0x08, (uint8_t)b->health};
  if (b->watch != NULL) uvg_call_send(b->watch, msg, 2, 0, NULL, NULL);
}
static void watch(uvg_call_t *call, const uint8_t *msg, size_t len) {
  backend_t *b = uvg_call_method_data(call);
  /* HealthCheckRequest {service = 1} */
  snprintf(b->watched, sizeof(b->watched), "%.*s", len > 2 ? (int)msg[1] : 0,
           (const char *)msg + 2);
  b->watch = call;
  send_health(b);
}
static void watch_cancel(uvg_call_t *call, const uvg_status_t *st) {
  backend_t *b = uvg_call_method_data(call);
  (void)st;
  if (b->watch == call) b->watch = NULL;
  uvg_call_finish(call, UVG_STATUS_CANCELLED, NULL, NULL, 0);
}

static int srv_closed;
static void on_srv_closed(uvg_server_t *s, void *d) {
  (void)s;
  (void)d;
  srv_closed++;
}
static void backend_start(int i) {
  backend_t *b = &be[i];
  char addr[32];
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", b->port);
  b->methods[0] = (uvg_method_t){.path = "/t.T/Count", .on_call = count,
                                 .on_done = srv_done, .method_data = b};
  b->methods[1] = (uvg_method_t){.path = "/t.T/Slow", .on_call = slow,
                                 .on_done = srv_done, .method_data = b};
  b->methods[2] = (uvg_method_t){.path = "/grpc.health.v1.Health/Watch",
                                 .type = UVG_METHOD_SERVER_STREAMING, .on_call = watch,
                                 .on_cancel = watch_cancel, .on_done = srv_done,
                                 .method_data = b};
  b->watch = NULL;
  CHECK_EQ(uvg_server_new(loop, NULL, &b->srv), 0);
  CHECK_EQ(uvg_server_register(b->srv, b->methods, b->no_health ? 2 : 3), 0);
  CHECK_EQ(uvg_server_listen(b->srv, addr, uvg_insecure_server_credentials(), &b->port), 0);
}
static void backend_stop(int i) {
  int before = srv_closed;
  uvg_server_close(be[i].srv, on_srv_closed, NULL);
  be[i].srv = NULL;
  while (srv_closed == before) uv_run(loop, UV_RUN_ONCE);
}
static void backends_start(void) {
  for (int i = 0; i < NB; i++) {
    be[i].port = 0;
    be[i].calls = 0;
    be[i].health = 1; /* SERVING */
    backend_start(i);
  }
}
static void backends_stop(void) {
  for (int i = 0; i < NB; i++)
    if (be[i].srv != NULL) backend_stop(i);
}
static void reset_counts(void) {
  for (int i = 0; i < NB; i++) be[i].calls = 0;
}

static uvg_address_t addr_v4(int port) {
  uvg_address_t a;
  memset(&a, 0, sizeof(a));
  uv_ip4_addr("127.0.0.1", port, (struct sockaddr_in *)&a.addr);
  a.addrlen = sizeof(struct sockaddr_in);
  return a;
}

/* ---- the client ---- */

static int ch_closed;
static void on_ch_closed(uvg_channel_t *ch, void *d) {
  (void)ch;
  (void)d;
  ch_closed++;
}
static void channel_close(uvg_channel_t *ch) {
  int before = ch_closed;
  uvg_channel_close(ch, on_ch_closed, NULL);
  CHECK(wait_count(loop, &ch_closed, before + 1, 5000));
}

static uvg_channel_t *manual_channel(const char *lb) {
  uvg_channel_options_t o;
  uvg_channel_options_init(&o);
  o.lb_policy = lb;
  o.backoff_initial_ms = 50;
  o.backoff_max_ms = 100;
  uvg_channel_t *ch = NULL;
  CHECK_EQ(uvg_channel_new(loop, "manual:lb-test", uvg_insecure_channel_credentials(),
                           &o, &ch), 0);
  return ch;
}
static void push(uvg_channel_t *ch, const int *which, int n) {
  uvg_address_t a[NB];
  for (int i = 0; i < n; i++) a[i] = addr_v4(be[which[i]].port);
  CHECK_EQ(uvg_resolver_update(uvg_channel_manual_resolver(ch), a, (size_t)n, NULL), 0);
}

typedef struct {
  int done, ok, failed;
  int last_code;
  char last_msg[128];
} tally_t;
static void on_reply(const uvg_status_t *st, const uint8_t *reply, size_t len,
                     void *ud) {
  tally_t *t = ud;
  (void)reply;
  (void)len;
  t->done++;
  if (st->code == UVG_STATUS_OK) {
    t->ok++;
  } else {
    t->failed++;
    t->last_code = st->code;
    snprintf(t->last_msg, sizeof(t->last_msg), "%s", st->message ? st->message : "");
  }
}
/* n wait-for-ready calls, `at_once` in flight at a time */
static void calls(uvg_channel_t *ch, const char *method, int n, tally_t *t) {
  static const uvg_client_call_options_t wfr = {.wait_for_ready = 1, .timeout_ms = 5000};
  memset(t, 0, sizeof(*t));
  int started = 0;
  while (t->done < n) {
    while (started < n && started - t->done < 20) {
      CHECK_EQ(uvg_channel_unary(ch, method, "x", 1, &wfr, on_reply, t), 0);
      started++;
    }
    uv_run(loop, UV_RUN_ONCE);
  }
}

/* ---- round_robin ---- */

static void test_round_robin_spread(void) {
  backends_start();
  uvg_channel_t *ch = manual_channel("round_robin");
  push(ch, (int[]){0, 1, 2}, 3);
  tally_t t;
  calls(ch, "/t.T/Count", 30, &t); /* every backend connected */
  reset_counts();
  calls(ch, "/t.T/Count", 3000, &t);
  CHECK_EQ(t.ok, 3000);
  for (int i = 0; i < NB; i++) {
    fprintf(stderr, "  backend %d: %d calls\n", i, be[i].calls);
    CHECK(be[i].calls >= 900 && be[i].calls <= 1100);
  }
  channel_close(ch);
  backends_stop();
}

static void test_round_robin_backend_killed_and_back(void) {
  backends_start();
  uvg_channel_t *ch = manual_channel("round_robin");
  push(ch, (int[]){0, 1, 2}, 3);
  tally_t t;
  calls(ch, "/t.T/Count", 30, &t);
  /* killed: its share moves to the others, no wait-for-ready call fails */
  int port1 = be[1].port;
  backend_stop(1);
  reset_counts();
  calls(ch, "/t.T/Count", 600, &t);
  fprintf(stderr, "  without 1: %d / %d / %d, failed %d (%s)\n", be[0].calls,
          be[1].calls, be[2].calls, t.failed, t.last_msg);
  CHECK_EQ(t.ok, 600);
  CHECK_EQ(be[1].calls, 0);
  CHECK(be[0].calls >= 250 && be[2].calls >= 250);
  /* back on the same port: after its backoff it gets calls again */
  be[1].port = port1;
  backend_start(1);
  CHECK_EQ(be[1].port, port1);
  int never = 0;
  wait_count(loop, &never, 1, 400);
  reset_counts();
  calls(ch, "/t.T/Count", 600, &t);
  fprintf(stderr, "  with 1 back: %d / %d / %d\n", be[0].calls, be[1].calls, be[2].calls);
  CHECK_EQ(t.ok, 600);
  CHECK(be[1].calls >= 150);
  channel_close(ch);
  backends_stop();
}

/* A backend the resolver no longer lists gets no new calls, and the call
 * it is answering finishes. */
static tally_t slow_tally;
static void test_update_drains_removed_backend(void) {
  backends_start();
  uvg_channel_t *ch = manual_channel("round_robin");
  push(ch, (int[]){0, 1, 2}, 3);
  tally_t t;
  calls(ch, "/t.T/Count", 30, &t);
  /* one slow call on each backend */
  static const uvg_client_call_options_t wfr = {.wait_for_ready = 1, .timeout_ms = 5000};
  memset(&slow_tally, 0, sizeof(slow_tally));
  for (int i = 0; i < 3; i++)
    CHECK_EQ(uvg_channel_unary(ch, "/t.T/Slow", "x", 1, &wfr, on_reply, &slow_tally), 0);
  int never = 0;
  wait_count(loop, &never, 1, 100);
  CHECK_EQ(be[0].calls + be[1].calls + be[2].calls, 3 + 30);
  push(ch, (int[]){0, 1}, 2);
  CHECK(wait_count(loop, &slow_tally.done, 3, 3000));
  if (slow_tally.failed) fprintf(stderr, "  slow call failed: %s\n", slow_tally.last_msg);
  CHECK_EQ(slow_tally.ok, 3);
  reset_counts();
  calls(ch, "/t.T/Count", 300, &t);
  fprintf(stderr, "  after the update: %d / %d / %d\n", be[0].calls, be[1].calls,
          be[2].calls);
  CHECK_EQ(t.ok, 300);
  CHECK_EQ(be[2].calls, 0);
  CHECK_EQ(be[0].calls + be[1].calls, 300);
  channel_close(ch);
  backends_stop();
}

/* ---- pick_first ---- */

/* A port nobody listens on: connecting is refused at once. */
static int dead_port(void) {
  uv_tcp_t t;
  struct sockaddr_in a;
  struct sockaddr_storage bound;
  int len = sizeof(bound);
  uv_ip4_addr("127.0.0.1", 0, &a);
  uv_tcp_init(loop, &t);
  uv_tcp_bind(&t, (struct sockaddr *)&a, 0);
  uv_tcp_getsockname(&t, (struct sockaddr *)&bound, &len);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  return ntohs(((struct sockaddr_in *)&bound)->sin_port);
}

static void test_pick_first_in_order(void) {
  backends_start();
  uvg_channel_t *ch = manual_channel(NULL); /* pick_first by default */
  uvg_address_t a[3] = {addr_v4(dead_port()), addr_v4(be[1].port), addr_v4(be[2].port)};
  CHECK_EQ(uvg_resolver_update(uvg_channel_manual_resolver(ch), a, 3, NULL), 0);
  tally_t t;
  calls(ch, "/t.T/Count", 100, &t);
  CHECK_EQ(t.ok, 100);
  /* the first address that answers takes every call */
  CHECK_EQ(be[1].calls, 100);
  CHECK_EQ(be[2].calls, 0);
  /* it goes away: the next call goes to the next address */
  backend_stop(1);
  calls(ch, "/t.T/Count", 50, &t);
  CHECK_EQ(t.ok, 50);
  CHECK_EQ(be[2].calls, 50);
  channel_close(ch);
  backends_stop();
}

/* Listeners that accept and never answer: an attempt on them hangs. */
typedef struct {
  uv_tcp_t l;
  int port, accepts;
  uv_tcp_t conns[8];
} mute_t;
static void mute_alloc(uv_handle_t *h, size_t s, uv_buf_t *b) {
  static char buf[4096];
  (void)h;
  (void)s;
  *b = uv_buf_init(buf, sizeof(buf));
}
static void mute_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  (void)b;
  if (n < 0) uv_read_stop(s);
}
static void mute_accept(uv_stream_t *l, int status) {
  mute_t *m = l->data;
  if (status != 0 || m->accepts == 8) return;
  uv_tcp_t *c = &m->conns[m->accepts++];
  uv_tcp_init(loop, c);
  uv_accept(l, (uv_stream_t *)c);
  uv_read_start((uv_stream_t *)c, mute_alloc, mute_read);
}
static int mute_listen(mute_t *m, const char *ip, int v6) {
  memset(m, 0, sizeof(*m));
  struct sockaddr_storage ss, bound;
  int len = sizeof(bound);
  if (v6)
    uv_ip6_addr(ip, 0, (struct sockaddr_in6 *)&ss);
  else
    uv_ip4_addr(ip, 0, (struct sockaddr_in *)&ss);
  uv_tcp_init(loop, &m->l);
  m->l.data = m;
  if (uv_tcp_bind(&m->l, (struct sockaddr *)&ss, 0) != 0 ||
      uv_listen((uv_stream_t *)&m->l, 8, mute_accept) != 0) {
    uv_close((uv_handle_t *)&m->l, NULL);
    return -1;
  }
  uv_tcp_getsockname(&m->l, (struct sockaddr *)&bound, &len);
  m->port = v6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
               : ntohs(((struct sockaddr_in *)&bound)->sin_port);
  return 0;
}
static void mute_close(mute_t *m) {
  for (int i = 0; i < m->accepts; i++) uv_close((uv_handle_t *)&m->conns[i], NULL);
  uv_close((uv_handle_t *)&m->l, NULL);
  wait_ms(loop, 20); /* closed before the memory goes */
}

/* A62: shuffleAddressList: channels that each take the first address of
 * their shuffled list do not all pick the same backend. */
static void test_pick_first_shuffle(void) {
  backends_start();
  int rc;
  for (int k = 0; k < 2; k++) {
    reset_counts();
    for (int i = 0; i < 20; i++) {
      uvg_channel_options_t o;
      uvg_channel_options_init(&o);
      o.default_service_config = k ? "{\"loadBalancingConfig\": [{\"pick_first\": "
                                     "{\"shuffleAddressList\": true}}]}"
                                   : "{}";
      uvg_channel_t *ch = NULL;
      rc = uvg_channel_new(loop, "manual:s", uvg_insecure_channel_credentials(), &o, &ch);
      CHECK_EQ(rc, 0);
      push(ch, (int[]){0, 1, 2}, 3);
      tally_t t;
      calls(ch, "/t.T/Count", 1, &t);
      channel_close(ch);
    }
    fprintf(stderr, "  %s: %d / %d / %d\n", k ? "shuffled" : "in order", be[0].calls,
            be[1].calls, be[2].calls);
    if (k == 0) CHECK_EQ(be[0].calls, 20);
    else CHECK(be[0].calls < 20 && be[0].calls + be[1].calls + be[2].calls == 20);
  }
  backends_stop();
}

/* A61: an attempt that has not answered in 250 ms does not hold up the
 * next address; the first to be READY wins. */
static void test_pick_first_happy_eyeballs(void) {
  backends_start();
  mute_t m;
  CHECK_EQ(mute_listen(&m, "127.0.0.1", 0), 0);
  uvg_channel_t *ch = manual_channel(NULL);
  uvg_address_t a[2] = {addr_v4(m.port), addr_v4(be[0].port)};
  CHECK_EQ(uvg_resolver_update(uvg_channel_manual_resolver(ch), a, 2, NULL), 0);
  uv_update_time(loop);
  uint64_t t0 = uv_now(loop);
  tally_t t;
  calls(ch, "/t.T/Count", 1, &t);
  uint64_t took = uv_now(loop) - t0;
  fprintf(stderr, "  first call after %llu ms; mute accepts %d\n",
          (unsigned long long)took, m.accepts);
  CHECK_EQ(t.ok, 1);
  CHECK_EQ(be[0].calls, 1);
  CHECK_EQ(m.accepts, 1);
  CHECK(took >= 240 && took < 2000);
  channel_close(ch);
  mute_close(&m);
  backends_stop();
}

/* A61: the first address's family first, then alternately: v4, v4, v6 is
 * tried as v4, v6, v4. */
static void test_pick_first_interleaves_families(void) {
  mute_t m4a, m4b, m6;
  if (mute_listen(&m6, "::1", 1) != 0) {
    fprintf(stderr, "  no IPv6 loopback here: skipped\n");
    return;
  }
  CHECK_EQ(mute_listen(&m4a, "127.0.0.1", 0), 0);
  CHECK_EQ(mute_listen(&m4b, "127.0.0.1", 0), 0);
  uvg_channel_t *ch = manual_channel(NULL);
  uvg_address_t a[3] = {addr_v4(m4a.port), addr_v4(m4b.port)};
  memset(&a[2], 0, sizeof(a[2]));
  uv_ip6_addr("::1", m6.port, (struct sockaddr_in6 *)&a[2].addr);
  a[2].addrlen = sizeof(struct sockaddr_in6);
  CHECK_EQ(uvg_resolver_update(uvg_channel_manual_resolver(ch), a, 3, NULL), 0);
  uvg_channel_state(ch, 1);
  int never = 0;
  wait_count(loop, &never, 1, 400); /* the first attempt, and the second */
  fprintf(stderr, "  accepts: v4a %d, v6 %d, v4b %d\n", m4a.accepts, m6.accepts,
          m4b.accepts);
  CHECK_EQ(m4a.accepts, 1);
  CHECK_EQ(m6.accepts, 1);
  CHECK_EQ(m4b.accepts, 0);
  channel_close(ch);
  mute_close(&m4a);
  mute_close(&m4b);
  mute_close(&m6);
}

/* ---- the plug-in APIs: a resolver and a policy of the application ---- */

/* "static-list:PORT,PORT" resolves to 127.0.0.1 with those ports */
static int res_starts, res_stops, res_resolve_now;
static int sl_start(uvg_resolver_t *r, const uvg_target_info_t *t, void **state) {
  uvg_address_t a[4];
  int n = 0;
  res_starts++;
  CHECK_STR(t->scheme, "static-list");
  for (const char *p = t->endpoint; *p && n < 4; p = strchr(p, ',') ? strchr(p, ',') + 1 : "")
    a[n++] = addr_v4(atoi(p));
  *state = r;
  return uvg_resolver_update(r, a, (size_t)n, NULL);
}
static void sl_resolve_now(void *state) {
  (void)state;
  res_resolve_now++;
}
static void sl_stop(void *state) {
  (void)state;
  res_stops++;
}
static const uvg_resolver_type_t static_list = {"static-list", sl_start, sl_resolve_now,
                                                sl_stop};

/* "last_one": a subchannel for the last address only; calls fail with
 * RESOURCE_EXHAUSTED until it is READY (to see a FAIL pick). */
typedef struct {
  uvg_lb_t *lb;
  uvg_subchannel_t *sc;
  int updates, states;
} last_t;
static last_t *last_seen;
static uvg_pick_result_t last_pick(void *p, const uvg_pick_info_t *info,
                                   uvg_subchannel_t **sc, uvg_status_t *st) {
  last_t *l = p;
  CHECK_STR(info->method, "/t.T/Count");
  if (uvg_subchannel_state(l->sc) == UVG_STATE_READY) {
    *sc = l->sc;
    return UVG_PICK_COMPLETE;
  }
  st->code = UVG_STATUS_RESOURCE_EXHAUSTED;
  st->message = "last_one is not ready";
  return UVG_PICK_FAIL;
}
static int last_create(uvg_lb_t *lb, void **state) {
  last_t *l = calloc(1, sizeof(*l));
  l->lb = lb;
  last_seen = l;
  *state = l;
  return 0;
}
static int last_update(void *state, const uvg_address_t *addrs, size_t n,
                       const char *config) {
  last_t *l = state;
  CHECK_STR(config, "{}");
  l->updates++;
  if (l->sc != NULL) uvg_subchannel_release(l->sc);
  CHECK_EQ(uvg_lb_subchannel_new(l->lb, &addrs[n - 1], &l->sc), 0);
  uvg_subchannel_connect(l->sc);
  uvg_lb_update_state(l->lb, UVG_STATE_CONNECTING, last_pick, l, NULL);
  return 0;
}
static void last_state(void *state, uvg_subchannel_t *sc, uvg_connectivity_t st,
                       const char *error) {
  last_t *l = state;
  (void)error;
  if (sc != l->sc) return;
  l->states++;
  if (st == UVG_STATE_IDLE) uvg_subchannel_connect(sc);
  uvg_lb_update_state(l->lb, st == UVG_STATE_READY ? st : UVG_STATE_CONNECTING, last_pick,
                      l, NULL);
}
static void last_destroy(void *state) {
  last_t *l = state;
  if (l->sc != NULL) uvg_subchannel_release(l->sc);
  last_seen = NULL;
  free(l);
}
static const uvg_lb_policy_type_t last_one = {
    .name = "last_one", .create = last_create, .update = last_update,
    .subchannel_state = last_state, .destroy = last_destroy};

static void test_custom_resolver_and_policy(void) {
  backends_start();
  CHECK_EQ(uvg_resolver_register(&static_list), 0);
  CHECK_EQ(uvg_lb_policy_register(&last_one), 0);
  CHECK_EQ(uvg_resolver_register(&(uvg_resolver_type_t){"bad:", sl_start, NULL, sl_stop}),
           UVG_EINVAL);
  char target[64];
  snprintf(target, sizeof(target), "static-list:%d,%d,%d", be[0].port, be[1].port,
           be[2].port);
  uvg_channel_options_t o;
  uvg_channel_options_init(&o);
  o.lb_policy = "last_one";
  uvg_channel_t *ch = NULL;
  CHECK_EQ(uvg_channel_new(loop, target, uvg_insecure_channel_credentials(), &o, &ch), 0);
  CHECK(uvg_channel_manual_resolver(ch) == NULL);
  CHECK_EQ(res_starts, 0); /* idle until used */
  /* fail-fast calls meet the policy's FAIL before it is READY */
  tally_t t;
  memset(&t, 0, sizeof(t));
  CHECK_EQ(uvg_channel_unary(ch, "/t.T/Count", "x", 1, NULL, on_reply, &t), 0);
  CHECK(wait_count(loop, &t.done, 1, 3000));
  CHECK_EQ(res_starts, 1);
  CHECK_EQ(t.last_code, UVG_STATUS_RESOURCE_EXHAUSTED);
  CHECK_STR(t.last_msg, "last_one is not ready");
  calls(ch, "/t.T/Count", 50, &t);
  CHECK_EQ(t.ok, 50);
  CHECK_EQ(be[2].calls, 50);
  CHECK(last_seen != NULL && last_seen->updates == 1 && last_seen->states >= 2);
  /* the backend goes: the policy is told, asks the resolver through
   * nothing of ours, and the resolver is not asked (last_one never calls
   * uvg_lb_request_resolution) */
  CHECK_EQ(res_resolve_now, 0);
  channel_close(ch);
  CHECK_EQ(res_stops, 1);
  CHECK(last_seen == NULL);
  /* an unregistered policy name is refused */
  o.lb_policy = "no_such_policy";
  CHECK_EQ(uvg_channel_new(loop, target, uvg_insecure_channel_credentials(), &o, &ch),
           UVG_EINVAL);
  backends_stop();
}

/* A manual channel keeps what was pushed across idleness: it leaves idle
 * with the same addresses. */
static void test_manual_survives_idle(void) {
  backends_start();
  uvg_channel_options_t o;
  uvg_channel_options_init(&o);
  o.idle_timeout_ms = 50;
  uvg_channel_t *ch = NULL;
  CHECK_EQ(uvg_channel_new(loop, "manual:x", uvg_insecure_channel_credentials(), &o, &ch), 0);
  push(ch, (int[]){1}, 1);
  tally_t t;
  calls(ch, "/t.T/Count", 5, &t);
  CHECK_EQ(t.ok, 5);
  int never = 0;
  wait_count(loop, &never, 1, 200);
  CHECK_EQ(uvg_channel_state(ch, 0), UVG_STATE_IDLE);
  calls(ch, "/t.T/Count", 5, &t);
  CHECK_EQ(t.ok, 5);
  CHECK_EQ(be[1].calls, 10);
  channel_close(ch);
  backends_stop();
}

/* ---- the service config ---- */

static uvg_channel_t *config_channel(const char *json, int *rc) {
  uvg_channel_options_t o;
  uvg_channel_options_init(&o);
  o.default_service_config = json;
  o.backoff_initial_ms = 50;
  o.backoff_max_ms = 100;
  uvg_channel_t *ch = NULL;
  *rc = uvg_channel_new(loop, "manual:sc", uvg_insecure_channel_credentials(), &o, &ch);
  return ch;
}

static void one_call(uvg_channel_t *ch, const char *method, int wfr, tally_t *t) {
  uvg_client_call_options_t co = {.wait_for_ready = wfr, .timeout_ms = 2000};
  memset(t, 0, sizeof(*t));
  CHECK_EQ(uvg_channel_unary(ch, method, "x", 1, &co, on_reply, t), 0);
  CHECK(wait_count(loop, &t->done, 1, 4000));
}

/* The default config's methodConfig: a timeout for one method, the
 * message limit for another, and its LB policy. */
static void test_default_service_config(void) {
  backends_start();
  int rc;
  uvg_channel_t *ch = config_channel(
      "{\"loadBalancingConfig\": [{\"no_such_policy\": {}}, {\"round_robin\": {}}],"
      " \"methodConfig\": ["
      "  {\"name\": [{\"service\": \"t.T\", \"method\": \"Slow\"}], \"timeout\": \"0.1s\"},"
      "  {\"name\": [{\"service\": \"t.T\"}], \"maxResponseMessageBytes\": 1000}]}",
      &rc);
  CHECK_EQ(rc, 0);
  push(ch, (int[]){0, 1, 2}, 3);
  tally_t t;
  uv_update_time(loop);
  uint64_t t0 = uv_now(loop);
  one_call(ch, "/t.T/Slow", 1, &t);
  uint64_t took = uv_now(loop) - t0;
  fprintf(stderr, "  Slow: %s after %llu ms\n", t.last_msg, (unsigned long long)took);
  CHECK_EQ(t.last_code, UVG_STATUS_DEADLINE_EXCEEDED);
  CHECK(took >= 90 && took < 290);
  /* round_robin, the first policy of the list that is registered */
  calls(ch, "/t.T/Count", 300, &t);
  CHECK_EQ(t.ok, 300);
  for (int i = 0; i < NB; i++) CHECK(be[i].calls >= 80);
  channel_close(ch);
  /* an invalid default config fails the channel's creation */
  CHECK(config_channel("{\"methodConfig\": [{\"timeout\": \"1\"}]}", &rc) == NULL);
  CHECK_EQ(rc, UVG_EINVAL);
  CHECK(config_channel("{\"loadBalancingConfig\": [{\"nope\": {}}]}", &rc) == NULL);
  CHECK_EQ(rc, UVG_EINVAL);
  backends_stop();
}

/* gRFC A21: the resolver's config: an invalid one before any valid one
 * fails the calls; a valid one applies (here it switches the policy); an
 * invalid one after it leaves it in force. */
static void test_resolver_service_config(void) {
  backends_start();
  int rc;
  uvg_channel_t *ch = config_channel(NULL, &rc);
  uvg_resolver_t *r = uvg_channel_manual_resolver(ch);
  uvg_address_t a[NB];
  for (int i = 0; i < NB; i++) a[i] = addr_v4(be[i].port);
  CHECK_EQ(uvg_resolver_update(r, a, NB, "{\"methodConfig\": 7}"), 0);
  tally_t t;
  one_call(ch, "/t.T/Count", 0, &t);
  fprintf(stderr, "  %s\n", t.last_msg);
  CHECK_EQ(t.last_code, UVG_STATUS_UNAVAILABLE);
  CHECK(strstr(t.last_msg, "invalid service config") != NULL);
  CHECK_EQ(uvg_channel_state(ch, 0), UVG_STATE_TRANSIENT_FAILURE);
  CHECK_EQ(uvg_resolver_update(r, a, NB, "{\"loadBalancingPolicy\": \"round_robin\"}"), 0);
  calls(ch, "/t.T/Count", 300, &t);
  CHECK_EQ(t.ok, 300);
  for (int i = 0; i < NB; i++) CHECK(be[i].calls >= 80);
  CHECK_EQ(uvg_resolver_update(r, a, NB, "{\"loadBalancingPolicy\": 1}"), 0);
  reset_counts();
  calls(ch, "/t.T/Count", 300, &t);
  CHECK_EQ(t.ok, 300);
  for (int i = 0; i < NB; i++) CHECK(be[i].calls >= 80); /* still round_robin */
  /* and back to pick_first: one backend takes everything */
  CHECK_EQ(uvg_resolver_update(r, a, NB, "{}"), 0);
  calls(ch, "/t.T/Count", 10, &t);
  reset_counts();
  calls(ch, "/t.T/Count", 100, &t);
  CHECK_EQ(t.ok, 100);
  CHECK_EQ(be[0].calls, 100);
  channel_close(ch);
  backends_stop();
}

/* waitForReady from the config: a call that says nothing waits; one that
 * chose fail-fast (-1) does not. */
static void test_config_wait_for_ready(void) {
  int rc;
  uvg_channel_t *ch = config_channel(
      "{\"methodConfig\": [{\"name\": [{}], \"waitForReady\": true}]}", &rc);
  CHECK_EQ(rc, 0);
  uvg_address_t a = addr_v4(dead_port());
  CHECK_EQ(uvg_resolver_update(uvg_channel_manual_resolver(ch), &a, 1, NULL), 0);
  uvg_client_call_options_t co = {.timeout_ms = 300};
  tally_t t1 = {0}, t2 = {0};
  CHECK_EQ(uvg_channel_unary(ch, "/t.T/Count", "x", 1, &co, on_reply, &t1), 0);
  co.wait_for_ready = -1;
  CHECK_EQ(uvg_channel_unary(ch, "/t.T/Count", "x", 1, &co, on_reply, &t2), 0);
  CHECK(wait_count(loop, &t1.done, 1, 3000));
  CHECK(wait_count(loop, &t2.done, 1, 3000));
  fprintf(stderr, "  config wfr: %s; call fail-fast: %s\n", t1.last_msg, t2.last_msg);
  CHECK_EQ(t1.last_code, UVG_STATUS_DEADLINE_EXCEEDED);
  CHECK_EQ(t2.last_code, UVG_STATUS_UNAVAILABLE);
  channel_close(ch);
}

/* gRFC A17: with healthCheckConfig, round_robin sends calls only to
 * backends whose health service says SERVING; one without the service
 * counts as healthy. */
static void test_health_checks(void) {
  be[2].no_health = 1;
  backends_start();
  be[1].health = 2; /* NOT_SERVING */
  int rc;
  uvg_channel_t *ch = config_channel(
      "{\"loadBalancingConfig\": [{\"round_robin\": {}}],"
      " \"healthCheckConfig\": {\"serviceName\": \"t.T\"}}", &rc);
  CHECK_EQ(rc, 0);
  push(ch, (int[]){0, 1, 2}, 3);
  tally_t t;
  calls(ch, "/t.T/Count", 300, &t);
  fprintf(stderr, "  1 NOT_SERVING: %d / %d / %d\n", be[0].calls, be[1].calls, be[2].calls);
  CHECK_EQ(t.ok, 300);
  CHECK_EQ(be[1].calls, 0);
  CHECK(be[0].calls >= 100 && be[2].calls >= 100);
  CHECK_STR(be[0].watched, "t.T");
  /* it recovers: SERVING puts it back */
  be[1].health = 1;
  send_health(&be[1]);
  int never = 0;
  wait_count(loop, &never, 1, 100);
  reset_counts();
  calls(ch, "/t.T/Count", 300, &t);
  fprintf(stderr, "  1 SERVING: %d / %d / %d\n", be[0].calls, be[1].calls, be[2].calls);
  CHECK(be[1].calls >= 80);
  /* and goes: NOT_SERVING takes it out again without a failed call */
  be[0].health = 2;
  send_health(&be[0]);
  wait_count(loop, &never, 1, 100);
  reset_counts();
  calls(ch, "/t.T/Count", 300, &t);
  CHECK_EQ(t.ok, 300);
  CHECK_EQ(be[0].calls, 0);
  channel_close(ch);
  backends_stop();
  be[2].no_health = 0;
}

/* pick_first does not use health checks (as in gRPC): a NOT_SERVING
 * backend still takes the calls. */
static void test_pick_first_ignores_health(void) {
  backends_start();
  be[0].health = 2;
  int rc;
  uvg_channel_t *ch = config_channel(
      "{\"healthCheckConfig\": {\"serviceName\": \"\"}}", &rc);
  CHECK_EQ(rc, 0);
  push(ch, (int[]){0}, 1);
  tally_t t;
  calls(ch, "/t.T/Count", 10, &t);
  CHECK_EQ(t.ok, 10);
  CHECK_EQ(be[0].calls, 10);
  CHECK(be[0].watch == NULL);
  channel_close(ch);
  backends_stop();
}

/* gRFC A21: a config whose policy refuses its part (checked when the
 * config is parsed) is refused whole: the previous one stays in force. */
static void test_refused_policy_config_keeps_previous(void) {
  backends_start();
  int rc;
  uvg_channel_t *ch = config_channel(NULL, &rc);
  uvg_resolver_t *r = uvg_channel_manual_resolver(ch);
  uvg_address_t a[NB];
  for (int i = 0; i < NB; i++) a[i] = addr_v4(be[i].port);
  CHECK_EQ(uvg_resolver_update(r, a, NB, "{\"loadBalancingPolicy\": \"round_robin\"}"), 0);
  tally_t t;
  calls(ch, "/t.T/Count", 30, &t);
  CHECK_EQ(t.ok, 30);
  CHECK_EQ(uvg_resolver_update(r, a, NB, "{\"loadBalancingConfig\": [{\"pick_first\": "
                                         "{\"shuffleAddressList\": \"yes\"}}]}"), 0);
  int never = 0;
  wait_count(loop, &never, 1, 50); /* the update is applied from the loop */
  reset_counts();
  calls(ch, "/t.T/Count", 30, &t);
  CHECK_EQ(t.ok, 30);
  fprintf(stderr, "  still round_robin: %d / %d / %d\n", be[0].calls, be[1].calls,
          be[2].calls);
  for (int i = 0; i < NB; i++) CHECK_EQ(be[i].calls, 10);
  channel_close(ch);
  backends_stop();
}

/* A policy without check_config can only refuse its config in update():
 * then the channel has no working policy, and no picker of the old one is
 * left behind: fail-fast calls fail with the reason (and nothing reads
 * the old policy's subchannels, which are freed). */
static int refuse_create(uvg_lb_t *lb, void **state) {
  *state = lb;
  return 0;
}
static int refuse_update(void *state, const uvg_address_t *addrs, size_t n,
                         const char *config) {
  (void)state;
  (void)addrs;
  (void)n;
  (void)config;
  return UVG_EINVAL;
}
static void refuse_state(void *state, uvg_subchannel_t *sc, uvg_connectivity_t st,
                         const char *error) {
  (void)state;
  (void)sc;
  (void)st;
  (void)error;
}
static void refuse_destroy(void *state) { (void)state; }
static const uvg_lb_policy_type_t refuses = {
    .name = "refuses", .create = refuse_create, .update = refuse_update,
    .subchannel_state = refuse_state, .destroy = refuse_destroy};

static void test_switch_to_refused_policy_config(void) {
  backends_start();
  CHECK_EQ(uvg_lb_policy_register(&refuses), 0);
  int rc;
  uvg_channel_t *ch = config_channel(NULL, &rc);
  uvg_resolver_t *r = uvg_channel_manual_resolver(ch);
  uvg_address_t a[NB];
  for (int i = 0; i < NB; i++) a[i] = addr_v4(be[i].port);
  CHECK_EQ(uvg_resolver_update(r, a, NB, "{\"loadBalancingPolicy\": \"round_robin\"}"), 0);
  tally_t t;
  calls(ch, "/t.T/Count", 30, &t);
  CHECK_EQ(t.ok, 30);
  CHECK_EQ(uvg_resolver_update(r, a, NB, "{\"loadBalancingConfig\": [{\"refuses\": {}}]}"),
           0);
  int never = 0;
  wait_count(loop, &never, 1, 50); /* the update is applied from the loop */
  uvg_client_call_options_t co = {.timeout_ms = 2000, .wait_for_ready = -1};
  memset(&t, 0, sizeof(t));
  CHECK_EQ(uvg_channel_unary(ch, "/t.T/Count", "x", 1, &co, on_reply, &t), 0);
  CHECK(wait_count(loop, &t.done, 1, 3000));
  fprintf(stderr, "  %s\n", t.last_msg);
  CHECK_EQ(t.last_code, UVG_STATUS_UNAVAILABLE);
  CHECK(strstr(t.last_msg, "refused its configuration") != NULL);
  /* a valid config puts it back in service */
  CHECK_EQ(uvg_resolver_update(r, a, NB, "{}"), 0);
  calls(ch, "/t.T/Count", 10, &t);
  CHECK_EQ(t.ok, 10);
  channel_close(ch);
  backends_stop();
}

/* The same address twice (a resolver's duplicate records) while READY:
 * the selected subchannel is kept once and released once. */
static void test_pick_first_duplicate_addresses(void) {
  backends_start();
  uvg_channel_t *ch = manual_channel(NULL);
  push(ch, (int[]){0}, 1);
  tally_t t;
  calls(ch, "/t.T/Count", 5, &t);
  push(ch, (int[]){0, 0, 1}, 3);
  calls(ch, "/t.T/Count", 5, &t);
  CHECK_EQ(t.ok, 5);
  CHECK_EQ(be[0].calls, 10);
  channel_close(ch);
  backends_stop();
}

/* A62: an address that failed early in the first pass is tried again
 * once its backoff is over, not only those that failed last. */
static void test_pick_first_retries_every_address(void) {
  mute_t m;
  CHECK_EQ(mute_listen(&m, "127.0.0.1", 0), 0);
  int port = dead_port();
  uvg_channel_options_t o;
  uvg_channel_options_init(&o);
  o.backoff_initial_ms = 50;
  o.backoff_max_ms = 100;
  o.min_connect_timeout_ms = 300; /* the mute address's attempts */
  uvg_channel_t *ch = NULL;
  CHECK_EQ(uvg_channel_new(loop, "manual:r", uvg_insecure_channel_credentials(), &o, &ch), 0);
  uvg_address_t a[2] = {addr_v4(port), addr_v4(m.port)};
  CHECK_EQ(uvg_resolver_update(uvg_channel_manual_resolver(ch), a, 2, NULL), 0);
  uvg_client_call_options_t co = {.timeout_ms = 4000, .wait_for_ready = 1};
  tally_t t = {0};
  CHECK_EQ(uvg_channel_unary(ch, "/t.T/Count", "x", 1, &co, on_reply, &t), 0);
  int never = 0;
  wait_count(loop, &never, 1, 700); /* the first pass is over */
  be[0].port = port;
  be[0].calls = 0;
  be[0].health = 1;
  backend_start(0); /* the first address answers now */
  CHECK(wait_count(loop, &t.done, 1, 4000));
  fprintf(stderr, "  %s\n", t.failed ? t.last_msg : "OK");
  CHECK_EQ(t.ok, 1);
  CHECK_EQ(be[0].calls, 1);
  channel_close(ch);
  mute_close(&m);
  backend_stop(0);
}

/* Health checks follow the service config: taken out, a NOT_SERVING
 * backend is READY again. */
static void test_health_config_removed(void) {
  backends_start();
  be[1].health = 2;
  int rc;
  uvg_channel_t *ch = config_channel(NULL, &rc);
  uvg_resolver_t *r = uvg_channel_manual_resolver(ch);
  uvg_address_t a[NB];
  for (int i = 0; i < NB; i++) a[i] = addr_v4(be[i].port);
  CHECK_EQ(uvg_resolver_update(r, a, NB, "{\"loadBalancingPolicy\": \"round_robin\","
                                         " \"healthCheckConfig\": {\"serviceName\": \"s\"}}"), 0);
  tally_t t;
  calls(ch, "/t.T/Count", 90, &t);
  CHECK_EQ(be[1].calls, 0);
  CHECK_EQ(uvg_resolver_update(r, a, NB, "{\"loadBalancingPolicy\": \"round_robin\"}"), 0);
  int never = 0;
  wait_count(loop, &never, 1, 100);
  reset_counts();
  calls(ch, "/t.T/Count", 90, &t);
  fprintf(stderr, "  without health checks: %d / %d / %d\n", be[0].calls, be[1].calls,
          be[2].calls);
  CHECK(be[1].calls >= 20);
  channel_close(ch);
  backends_stop();
}

int main(int argc, char **argv) {
  loop = uv_default_loop();
  const char *t = argc > 1 ? argv[1] : "";
#define CASE(n) if (*t == '\0' || strcmp(t, #n) == 0) RUN(test_##n)
  CASE(round_robin_spread);
  CASE(round_robin_backend_killed_and_back);
  CASE(update_drains_removed_backend);
  CASE(pick_first_in_order);
  CASE(pick_first_happy_eyeballs);
  CASE(pick_first_shuffle);
  CASE(pick_first_interleaves_families);
  CASE(custom_resolver_and_policy);
  CASE(manual_survives_idle);
  CASE(default_service_config);
  CASE(resolver_service_config);
  CASE(config_wait_for_ready);
  CASE(health_checks);
  CASE(pick_first_ignores_health);
  CASE(switch_to_refused_policy_config);
  CASE(refused_policy_config_keeps_previous);
  CASE(pick_first_duplicate_addresses);
  CASE(pick_first_retries_every_address);
  CASE(health_config_removed);
  TEST_EXIT();
}

/*
 * Soak: mixed traffic of the four kinds of RPC from several channels to one
 * server on one loop, while the world breaks around the calls: random
 * cancels, random deadlines, handlers that finish early, late or after
 * on_cancel, zero-copy sends, the server closed (or shut down) and
 * listening again on the same ports, connections drained at their max
 * age, channels closed under their calls and made again, and a relay
 * between some channels and the server that kills connections at random
 * (FIN or RST). Two of the eight channels speak TLS, one of them through
 * the relay; every other channel retries (gRFC A6).
 *
 *   soak_test [SECONDS]            SOAK_SECONDS=N, SOAK_SEED=S also work
 *
 * The run lasts 120 s (30 s under AddressSanitizer) unless told otherwise,
 * then traffic stops, every call in flight must end, and everything is
 * closed. What it asserts:
 *  - every call started ends exactly once on the client (on_status), and
 *    every call a handler saw ends exactly once on the server (on_done);
 *    the counts by status add up to the calls on each side;
 *  - no status outside what the faults explain (OK, CANCELLED,
 *    DEADLINE_EXCEEDED, UNAVAILABLE, and the ABORTED and OUT_OF_RANGE the
 *    client asked for);
 *  - an OK call carried the right responses, and a status the server
 *    sent (OK, ABORTED, OUT_OF_RANGE) is one that an attempt of the call
 *    ended with in the server's on_done;
 *  - each zero-copy send's callback runs once, before the call's last
 *    callback; no handler callback comes after the handler finished;
 *  - every kind of fault happened;
 *  - RSS (VmRSS) after the warm-up (the first third) grows by less than
 *    RSS_GROWTH_MAX; under AddressSanitizer LeakSanitizer checks leaks at
 *    exit instead.
 * The random choices come from one generator whose seed is printed first:
 * SOAK_SEED replays the same sequence of choices (the timing of the
 * machine is not replayed).
 */
#include "soak.h"

#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "uvgrpc.h"

/* Channels 0-2 plaintext to the server, 3-5 plaintext through the relay,
 * 6 TLS to the server, 7 TLS through the relay. */
#define NCHANNELS 8
#define TLS_CHANNEL 6
static int via_relay(int i) {
  return (i >= 3 && i < 6) || i == 7;
}
#define IN_FLIGHT 24   /* calls per channel at any time */
#define DRAIN_MS 30000 /* for the calls in flight when traffic stops */
#define RSS_GROWTH_MAX (4 << 20)
#define RING (1 << 16)          /* calls remembered for the cross-check */
#define MAX_REQUEST (256 << 10) /* past the stream window: flow control */

enum { UNARY, SERVER_STREAM, CLIENT_STREAM, BIDI, NKINDS };
static const char *const paths[NKINDS] = {
    "/soak.Soak/Unary", "/soak.Soak/ServerStream", "/soak.Soak/ClientStream",
    "/soak.Soak/Bidi"};

static int failures;
#define FAIL(...)                                \
  do {                                           \
    fprintf(stderr, "soak: FAIL: " __VA_ARGS__); \
    fputc('\n', stderr);                         \
    failures++;                                  \
  } while (0)

static uv_loop_t *loop;

/* xorshift64*: small, and the same sequence for the same seed. */
static uint64_t rng_state;
static uint64_t rnd(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 2685821657736338717ULL;
}
static unsigned rnd_below(unsigned n) {
  return (unsigned)(rnd() % n);
}
static int chance(unsigned percent) {
  return rnd_below(100) < percent;
}

/* ---- the cross-check: what each side saw of a call, by id ---- */

typedef struct {
  uint64_t id;
  int32_t client;  /* final code, -1 not yet */
  uint32_t server; /* bit k: an attempt ended with code k on the server */
} slot_t;
static slot_t ring[RING];

/* A status the server sent (not one the faults made up) must be one that
 * an attempt of the call ended with in the server's on_done. Checked when
 * the slot is reused and at the end, not as the statuses arrive: a
 * server's on_done may come after the client has its status. */
static int server_sent(int code) {
  return code == UVG_STATUS_OK || code == UVG_STATUS_ABORTED ||
         code == UVG_STATUS_OUT_OF_RANGE;
}

static void cross_check(const slot_t *s) {
  if (s->client < 0 || !server_sent(s->client)) return;
  if (s->server != 0 && !(s->server & (1u << s->client)))
    FAIL("call %" PRIu64 ": client %s, server's attempts 0x%x", s->id,
         uvg_status_code_name(s->client), s->server);
}

/* ---- the server ---- */

static uvg_server_t *server;
static int port, tls_port;
static uvg_server_credentials_t *server_tls;
static uvg_channel_credentials_t *channel_tls;
static int server_restarts, server_down;
static uint64_t s_seen, s_done, s_by_code[17];

typedef struct {
  uvg_call_t *call; /* NULL after on_done */
  uv_timer_t timer;
  int kind, left, finished, cancelled;
  int sends_pending; /* zero-copy sends whose callback has not run */
  uint32_t got;
  uint64_t id;
  uint8_t fail, early;
  uint8_t msg[64]; /* the one zero-copy message in flight */
} scall_t;

static void scall_closed(uv_handle_t *h) {
  free(h->data);
}

static void s_finish(scall_t *s, uvg_status_code_t code, const char *msg) {
  if (s->finished) return;
  s->finished = 1;
  uvg_call_finish(s->call, code, msg, NULL, 0);
}

/* Unary and client streaming: the one response, and the status. */
static void s_reply(scall_t *s) {
  static uint8_t buf[MAX_REQUEST];
  size_t len;
  if (s->fail) {
    s_finish(s, UVG_STATUS_ABORTED, "soak: asked to fail");
    return;
  }
  if (s->kind == UNARY) {
    len = s->got; /* the reply is as long as the request */
    memset(buf, 0x5a, len);
  } else {
    len = 4;
    memcpy(buf, &s->got, 4);
  }
  if (uvg_call_send(s->call, buf, len, 0, NULL, NULL) == 0)
    s_finish(s, UVG_STATUS_OK, NULL);
}

static void s_step(uv_timer_t *t);

/* A zero-copy send's callback: exactly once, before on_done. */
static void s_sent(uvg_call_t *call, int status, void *ud) {
  scall_t *s = ud;
  (void)call;
  if (s->call == NULL) FAIL("send callback after on_done");
  if (status != 0 && status != UVG_ECANCELED) FAIL("send callback: %d", status);
  if (--s->sends_pending < 0) FAIL("send callback twice");
  if (status == 0 && !s->finished && !s->cancelled)
    uv_timer_start(&s->timer, s_step, rnd_below(20), 0);
}

static void s_step(uv_timer_t *t) {
  scall_t *s = t->data;
  if (s->call == NULL) return;
  if (s->cancelled) { /* on_cancel left the finish for later */
    s_finish(s, UVG_STATUS_CANCELLED, NULL);
    return;
  }
  if (s->finished) return;
  if (s->kind == SERVER_STREAM) {
    if (s->left == 0) {
      s_finish(s, s->fail ? UVG_STATUS_ABORTED : UVG_STATUS_OK,
               s->fail ? "soak: asked to fail" : NULL);
      return;
    }
    s->left--;
    if (chance(50)) { /* without a copy: the next one from the callback */
      memset(s->msg, s->left, sizeof(s->msg));
      s->sends_pending++;
      if (uvg_call_send(s->call, s->msg, rnd_below(sizeof(s->msg)), 0, s_sent,
                        s) != 0)
        s->sends_pending--; /* ending: on_cancel follows */
      return;
    }
    uint8_t msg[64];
    memset(msg, s->left, sizeof(msg));
    if (uvg_call_send(s->call, msg, rnd_below(sizeof(msg)), 0, NULL, NULL) != 0)
      return; /* ending: on_cancel follows */
    uv_timer_start(&s->timer, s_step, rnd_below(20), 0);
    return;
  }
  if (s->kind == BIDI) {
    s_finish(s, UVG_STATUS_OK, NULL);
    return;
  }
  s_reply(s);
}

static scall_t *s_new(uvg_call_t *call, int kind) {
  scall_t *s = calloc(1, sizeof(*s));
  if (s == NULL) abort();
  s->call = call;
  s->kind = kind;
  uv_timer_init(loop, &s->timer);
  s->timer.data = s;
  const uvg_metadata_t *id = uvg_call_metadata_get(call, "x-soak-id");
  char num[24] = "";
  if (id != NULL && id->value_len < sizeof(num)) {
    memcpy(num, id->value, id->value_len);
    s->id = strtoull(num, NULL, 10);
    slot_t *slot = &ring[s->id % RING];
    if (slot->id != s->id)
      FAIL("server saw call %s unknown to the client", num);
  } else {
    FAIL("a call without x-soak-id");
  }
  const uvg_metadata_t *early = uvg_call_metadata_get(call, "x-soak-early");
  s->early = early != NULL;
  uvg_call_set_data(call, s);
  s_seen++;
  return s;
}

/* A request of unary and server streaming: byte 0 is how many responses
 * to stream, byte 1 how long to wait before answering (x4 ms), byte 2
 * whether to fail the call ABORTED. */
static void s_on_call(uvg_call_t *call, const uint8_t *msg, size_t len) {
  int kind = (int)(intptr_t)uvg_call_method_data(call);
  scall_t *s = s_new(call, kind);
  if (kind == UNARY || kind == SERVER_STREAM) {
    s->got = (uint32_t)len;
    if (len < 3) {
      FAIL("short request (%zu bytes)", len);
      s_finish(s, UVG_STATUS_INVALID_ARGUMENT, "short");
      return;
    }
    s->left = msg[0];
    s->fail = msg[2];
    if (kind == SERVER_STREAM && s->left == 0 && msg[1] == 0) {
      s_finish(s, s->fail ? UVG_STATUS_ABORTED : UVG_STATUS_OK,
               s->fail ? "soak: asked to fail" : NULL);
      return;
    }
    if (kind == UNARY && msg[1] == 0) {
      s_reply(s);
      return;
    }
    uv_timer_start(&s->timer, s_step, (uint64_t)msg[1] * 4, 0);
  } else if (s->early) {
    /* Ends before the client has sent all it meant to (OUT_OF_RANGE, as
     * the client asked), maybe before reading any of it. */
    s_finish(s, UVG_STATUS_OUT_OF_RANGE, "soak: early");
  }
}

static void s_on_message(uvg_call_t *call, const uint8_t *msg, size_t len) {
  scall_t *s = uvg_call_get_data(call);
  if (s->finished) FAIL("on_message after the handler finished");
  s->got++;
  if (s->kind == BIDI && !s->finished)
    uvg_call_send(call, msg, len, 0, NULL,
                  NULL); /* copied; fails once ending */
}

static void s_on_half_close(uvg_call_t *call) {
  scall_t *s = uvg_call_get_data(call);
  if (s->finished) FAIL("on_half_close after the handler finished");
  if (chance(50))
    s_step(&s->timer);
  else
    uv_timer_start(&s->timer, s_step, rnd_below(100), 0);
}

static void s_on_cancel(uvg_call_t *call, const uvg_status_t *st) {
  scall_t *s = uvg_call_get_data(call);
  (void)st;
  if (s->finished) FAIL("on_cancel after the handler finished");
  s->cancelled = 1;
  /* The finish only releases the call: now, or later as a handler whose
   * work takes a while would. */
  if (chance(50)) {
    uv_timer_stop(&s->timer);
    s_finish(s, UVG_STATUS_CANCELLED, NULL);
  } else {
    uv_timer_start(&s->timer, s_step, rnd_below(50), 0);
  }
}

static void s_on_done(uvg_call_t *call, const uvg_status_t *st) {
  scall_t *s = uvg_call_get_data(call);
  if (s == NULL || s->call == NULL) {
    FAIL("on_done for a call without its state, or twice");
    return;
  }
  s_done++;
  if (!s->finished) FAIL("on_done before the handler finished");
  if (s->sends_pending != 0)
    FAIL("on_done with %d send callbacks to come", s->sends_pending);
  if (st->code >= 0 && st->code <= 16) s_by_code[st->code]++;
  slot_t *slot = &ring[s->id % RING];
  if (slot->id == s->id && st->code >= 0 && st->code <= 16) {
    slot->server |= 1u << st->code;
  }
  s->call = NULL;
  uvg_call_set_data(call, NULL);
  uv_close((uv_handle_t *)&s->timer, scall_closed);
}

static uvg_method_t methods[NKINDS];

static void server_start(void);

static int closing_all; /* the run is over: no more restarts */

static void server_closed(uvg_server_t *srv, void *ud) {
  (void)srv;
  (void)ud;
  if (closing_all) return;
  server = NULL;
  server_start();
}

static uv_timer_t relisten_timer;
static void relisten(uv_timer_t *t) {
  (void)t;
  if (!closing_all) server_start();
}

static void server_start(void) {
  uvg_server_options_t o;
  uvg_server_options_init(&o);
  o.max_concurrent_streams = 1000;
  /* Connections drained (GOAWAY) and closed under the calls now and then. */
  o.max_connection_age_ms = 4000;
  o.max_connection_age_grace_ms = 2000;
  if (uvg_server_new(loop, &o, &server) != 0 ||
      uvg_server_register(server, methods, NKINDS) != 0) {
    FAIL("server_new");
    abort();
  }
  char addr[32];
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
  int bound = 0, tls_bound = 0,
      rc = uvg_server_listen(server, addr, uvg_insecure_server_credentials(),
                             &bound);
  if (rc == 0) {
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", tls_port);
    rc = uvg_server_listen(server, addr, server_tls, &tls_bound);
  }
  if (rc == UV_EADDRINUSE && port != 0) {
    /* Not expected (the listener sets SO_REUSEADDR), but not the library's
     * fault either: try again shortly. */
    fprintf(stderr, "soak: port %d busy; listening again in 50 ms\n", port);
    uvg_server_close(server, NULL, NULL);
    server = NULL;
    uv_timer_start(&relisten_timer, relisten, 50, 0);
    return;
  }
  if (rc != 0) {
    FAIL("listen on %s: %s", addr, uvg_strerror(rc));
    abort();
  }
  port = bound;
  tls_port = tls_bound;
  server_down = 0;
}

static uv_timer_t restart_timer;
static int stopping;

static void restart_server(uv_timer_t *t) {
  if (stopping || server == NULL) return;
  server_restarts++;
  server_down = 1;
  if (chance(50))
    uvg_server_close(server, server_closed, NULL);
  else
    uvg_server_shutdown(server, rnd_below(500), server_closed, NULL);
  uv_timer_start(t, restart_server, 3000 + rnd_below(5000), 0);
}

/* ---- the relay: client side <-> server, killed at random ---- */

typedef struct rconn {
  uv_tcp_t down, up; /* the channel's side, the server's side */
  uv_connect_t creq;
  int closing, closed;
  struct rconn *prev, *next;
} rconn_t;

typedef struct {
  uv_write_t req;
  uv_buf_t buf;
} rwrite_t;

static uv_tcp_t relay, relay_tls; /* to the plaintext port, to the TLS one */
static int relay_port, relay_tls_port;
static rconn_t *rconns;
static int nrconns, relay_kills;

static void r_freed(uv_handle_t *h) {
  rconn_t *c = h->data;
  if (++c->closed < 2) return;
  if (c->prev)
    c->prev->next = c->next;
  else
    rconns = c->next;
  if (c->next) c->next->prev = c->prev;
  nrconns--;
  free(c);
}

static void r_close(rconn_t *c, int reset) {
  if (c->closing) return;
  c->closing = 1;
  if (reset && uv_tcp_close_reset(&c->down, r_freed) == 0) {
  } else {
    uv_close((uv_handle_t *)&c->down, r_freed);
  }
  if (reset && uv_tcp_close_reset(&c->up, r_freed) == 0) {
  } else {
    uv_close((uv_handle_t *)&c->up, r_freed);
  }
}

static void r_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)h;
  (void)hint;
  buf->base = malloc(65536);
  buf->len = buf->base ? 65536 : 0;
}

static void r_written(uv_write_t *req, int status) {
  rwrite_t *w = (rwrite_t *)req;
  (void)status;
  free(w->buf.base);
  free(w);
}

static void r_read(uv_stream_t *from, ssize_t n, const uv_buf_t *buf) {
  rconn_t *c = from->data;
  if (n <= 0) {
    free(buf->base);
    if (n < 0) r_close(c, 0);
    return;
  }
  if (c->closing) {
    free(buf->base);
    return;
  }
  uv_stream_t *to = from == (uv_stream_t *)&c->down ? (uv_stream_t *)&c->up
                                                    : (uv_stream_t *)&c->down;
  rwrite_t *w = malloc(sizeof(*w));
  if (w == NULL) abort();
  w->buf = uv_buf_init(buf->base, (unsigned)n);
  if (uv_write(&w->req, to, &w->buf, 1, r_written) != 0) {
    free(buf->base);
    free(w);
    r_close(c, 0);
  }
}

static void r_connected(uv_connect_t *req, int status) {
  rconn_t *c = req->data;
  if (status != 0 || c->closing) {
    r_close(c, 0);
    return;
  }
  uv_read_start((uv_stream_t *)&c->down, r_alloc, r_read);
  uv_read_start((uv_stream_t *)&c->up, r_alloc, r_read);
}

static void r_accept(uv_stream_t *l, int status) {
  if (status != 0) return;
  rconn_t *c = calloc(1, sizeof(*c));
  if (c == NULL) abort();
  uv_tcp_init(loop, &c->down);
  uv_tcp_init(loop, &c->up);
  c->down.data = c->up.data = c->creq.data = c;
  c->next = rconns;
  if (rconns) rconns->prev = c;
  rconns = c;
  nrconns++;
  if (uv_accept(l, (uv_stream_t *)&c->down) != 0) {
    r_close(c, 0);
    return;
  }
  struct sockaddr_in sa;
  uv_ip4_addr("127.0.0.1", l == (uv_stream_t *)&relay ? port : tls_port, &sa);
  if (uv_tcp_connect(&c->creq, &c->up, (struct sockaddr *)&sa, r_connected) !=
      0)
    r_close(c, 0);
}

static uv_timer_t kill_timer;
static void kill_one(uv_timer_t *t) {
  if (stopping) return;
  if (nrconns > 0) {
    int k = (int)rnd_below((unsigned)nrconns);
    rconn_t *c = rconns;
    while (k-- > 0) c = c->next;
    if (!c->closing) {
      relay_kills++;
      r_close(c, chance(50));
    }
  }
  uv_timer_start(t, kill_one, 200 + rnd_below(1500), 0);
}

static int relay_listen(uv_tcp_t *l, int *bound) {
  struct sockaddr_in sa;
  int salen = sizeof(sa);
  uv_ip4_addr("127.0.0.1", 0, &sa);
  uv_tcp_init(loop, l);
  if (uv_tcp_bind(l, (struct sockaddr *)&sa, 0) != 0 ||
      uv_listen((uv_stream_t *)l, 128, r_accept) != 0) {
    FAIL("relay listen");
    return -1;
  }
  uv_tcp_getsockname(l, (struct sockaddr *)&sa, &salen);
  *bound = ntohs(sa.sin_port);
  return 0;
}

/* ---- the clients ---- */

typedef struct {
  uvg_channel_t *ch;
  int in_flight;
} chan_t;
static chan_t chans[NCHANNELS];

#define CCALL_MAGIC 0x50a4c0deu
typedef struct {
  uint32_t magic;
  chan_t *chan;
  uvg_client_call_t *call;
  uv_timer_t cancel_timer, send_timer;
  int kind, closes, ended;
  int to_send, sent; /* client and bidi streaming */
  int want;          /* responses expected when OK */
  int got;
  size_t req_len;
  uint32_t reply_count; /* client streaming's reply */
  int fail, early;
  int sends_pending; /* zero-copy sends whose callback has not run */
  uint64_t id;
  uint8_t msg[512]; /* the one zero-copy message in flight */
} ccall_t;

static uint64_t next_id = 1;
static uint64_t c_started, c_ended, c_by_code[17], c_by_kind[NKINDS];
static uint64_t c_cancels, c_deadlines;

static void start_calls(chan_t *ch);

static void c_closed(uv_handle_t *h) {
  ccall_t *c = h->data;
  if (++c->closes < 2) return;
  c->magic = 0;
  free(c);
}

static void c_on_message(uvg_client_call_t *call, const uint8_t *msg,
                         size_t len, void *ud) {
  ccall_t *c = ud;
  (void)call;
  if (c->magic != CCALL_MAGIC || c->ended) {
    FAIL("on_message after on_status");
    return;
  }
  c->got++;
  if (c->kind == UNARY && len != c->req_len)
    FAIL("unary reply of %zu bytes for %zu", len, c->req_len);
  if (c->kind == CLIENT_STREAM) {
    if (len == 4)
      memcpy(&c->reply_count, msg, 4);
    else
      FAIL("client streaming reply of %zu bytes", len);
  }
  if (c->kind != UNARY && c->kind != CLIENT_STREAM) uvg_client_call_read(call);
}

static void c_on_status(uvg_client_call_t *call, const uvg_status_t *st,
                        const uvg_metadata_t *tr, size_t n, void *ud) {
  ccall_t *c = ud;
  (void)call;
  (void)tr;
  (void)n;
  if (c->magic != CCALL_MAGIC || c->ended) {
    FAIL("on_status twice");
    return;
  }
  c->ended = 1;
  c_ended++;
  if (c->sends_pending != 0)
    FAIL("on_status with %d send callbacks to come", c->sends_pending);
  int code = st->code;
  if (code >= 0 && code <= 16) c_by_code[code]++;
  switch (code) {
    case UVG_STATUS_OK:
      if (c->fail || c->early) FAIL("call asked to fail ended OK");
      if (c->kind == CLIENT_STREAM && c->reply_count != (uint32_t)c->sent)
        FAIL("client streaming: server counted %u of %d", c->reply_count,
             c->sent);
      if (c->kind == BIDI && c->got != c->sent)
        FAIL("bidi: %d echoes of %d", c->got, c->sent);
      if ((c->kind == UNARY || c->kind == CLIENT_STREAM) && c->got != 1)
        FAIL("%s: %d replies", paths[c->kind], c->got);
      if (c->kind == SERVER_STREAM && c->got != c->want)
        FAIL("server streaming: %d of %d", c->got, c->want);
      break;
    case UVG_STATUS_ABORTED:
      if (!c->fail) FAIL("ABORTED not asked for: %s", st->message);
      break;
    case UVG_STATUS_OUT_OF_RANGE:
      if (!c->early) FAIL("OUT_OF_RANGE not asked for: %s", st->message);
      break;
    case UVG_STATUS_CANCELLED:
    case UVG_STATUS_DEADLINE_EXCEEDED:
    case UVG_STATUS_UNAVAILABLE:
      break;
    default:
      FAIL("%s ended %s: %s", paths[c->kind], uvg_status_code_name(code),
           st->message ? st->message : "");
  }
  slot_t *slot = &ring[c->id % RING];
  if (slot->id == c->id) {
    slot->client = code;
  }
  uv_close((uv_handle_t *)&c->cancel_timer, c_closed);
  uv_close((uv_handle_t *)&c->send_timer, c_closed);
  c->chan->in_flight--;
  if (!stopping) start_calls(c->chan);
}

static void c_cancel(uv_timer_t *t) {
  ccall_t *c = t->data;
  if (c->ended) return;
  c_cancels++;
  /* UVG_ECANCELED: its status is on the way already. */
  int rc = uvg_client_call_cancel(c->call);
  if (rc != 0 && rc != UVG_ECANCELED) FAIL("cancel: %s", uvg_strerror(rc));
}

static void c_send_next(uv_timer_t *t);

/* A zero-copy send's callback: exactly once, before on_status. */
static void c_sent(uvg_client_call_t *call, int status, void *ud) {
  ccall_t *c = ud;
  (void)call;
  if (c->magic != CCALL_MAGIC || c->ended) {
    FAIL("send callback after on_status");
    return;
  }
  if (status != 0 && status != UVG_ECANCELED)
    FAIL("client send callback: %d", status);
  if (--c->sends_pending < 0) FAIL("client send callback twice");
  if (status == 0)
    uv_timer_start(&c->send_timer, c_send_next, rnd_below(10), 0);
}

static void c_send_next(uv_timer_t *t) {
  ccall_t *c = t->data;
  if (c->ended) return;
  if (c->sent < c->to_send && chance(50)) {
    size_t len = rnd_below(sizeof(c->msg));
    memset(c->msg, c->sent, len);
    c->sends_pending++;
    int rc = uvg_client_call_send(c->call, c->msg, len, 0, c_sent, c);
    if (rc != 0) c->sends_pending--;
    if (rc == UVG_ECANCELED) return;
    if (rc != 0)
      FAIL("send: %s", uvg_strerror(rc));
    else
      c->sent++;
    return;
  }
  if (c->sent < c->to_send) {
    uint8_t msg[512];
    size_t len = rnd_below(sizeof(msg));
    memset(msg, c->sent, len);
    int rc = uvg_client_call_send(c->call, msg, len, 0, NULL, NULL);
    if (rc == UVG_ECANCELED) return; /* ending; on_status follows */
    if (rc != 0) {
      FAIL("send: %s", uvg_strerror(rc));
      return;
    }
    c->sent++;
    uv_timer_start(&c->send_timer, c_send_next, rnd_below(30), 0);
    return;
  }
  int rc = uvg_client_call_half_close(c->call);
  if (rc != 0 && rc != UVG_ECANCELED) FAIL("half_close: %s", uvg_strerror(rc));
}

static const uvg_client_call_cbs_t ccbs = {.on_message = c_on_message,
                                           .on_status = c_on_status};

static void start_call(chan_t *ch) {
  ccall_t *c = calloc(1, sizeof(*c));
  if (c == NULL) abort();
  c->magic = CCALL_MAGIC;
  c->chan = ch;
  c->kind = (int)rnd_below(NKINDS);
  c->id = next_id++;
  uv_timer_init(loop, &c->cancel_timer);
  uv_timer_init(loop, &c->send_timer);
  c->cancel_timer.data = c->send_timer.data = c;

  char id[24];
  snprintf(id, sizeof(id), "%" PRIu64, c->id);
  uvg_metadata_t md[2] = {{"x-soak-id", (const uint8_t *)id, strlen(id)},
                          {"x-soak-early", (const uint8_t *)"1", 1}};
  c->early = (c->kind == CLIENT_STREAM || c->kind == BIDI) && chance(10);
  uvg_client_call_options_t o = {.metadata = md, .nmetadata = c->early ? 2 : 1};
  unsigned d = rnd_below(100);
  if (d < 25)
    o.timeout_ms = 0; /* none */
  else if (d < 50)
    o.timeout_ms = 5 + rnd_below(300); /* often passes */
  else
    o.timeout_ms = 1000 + rnd_below(4000);
  if (o.timeout_ms != 0) c_deadlines++;
  /* A call without a deadline waits for the restarted server; the others
   * may fail fast while it is down. */
  o.wait_for_ready = o.timeout_ms == 0 || chance(50) ? 1 : -1;

  slot_t *slot = &ring[c->id % RING];
  if (slot->id != 0) cross_check(slot);
  slot->id = c->id;
  slot->client = -1;
  slot->server = 0;

  int rc =
      uvg_client_call_start(ch->ch, paths[c->kind], &o, &ccbs, c, &c->call);
  if (rc != 0) {
    FAIL("call_start: %s", uvg_strerror(rc));
    slot->id = 0;
    uv_close((uv_handle_t *)&c->cancel_timer, c_closed);
    uv_close((uv_handle_t *)&c->send_timer, c_closed);
    return;
  }
  c_started++;
  c_by_kind[c->kind]++;
  ch->in_flight++;

  if (c->kind == UNARY || c->kind == SERVER_STREAM) {
    static uint8_t req[MAX_REQUEST];
    size_t len = 3 + (chance(2)   ? rnd_below(sizeof(req) - 3)
                      : chance(5) ? rnd_below(8192)
                                  : rnd_below(200));
    memset(req, 0, len);
    c->want = c->kind == SERVER_STREAM ? (int)rnd_below(20) : 1;
    req[0] = (uint8_t)c->want;
    req[1] = chance(50) ? 0 : (uint8_t)rnd_below(75); /* up to 300 ms */
    req[2] = c->fail = chance(5);
    c->req_len = len;
    /* UVG_ECANCELED: a fail-fast call on a channel in TRANSIENT_FAILURE
     * is ending already. */
    if (((rc = uvg_client_call_send(c->call, req, len, 0, NULL, NULL)) != 0 ||
         (rc = uvg_client_call_half_close(c->call)) != 0) &&
        rc != UVG_ECANCELED)
      FAIL("send/half_close right after start: %s", uvg_strerror(rc));
  } else {
    c->to_send = (int)rnd_below(10);
    uv_timer_start(&c->send_timer, c_send_next, rnd_below(20), 0);
  }
  uvg_client_call_read(c->call);
  if (chance(10)) uv_timer_start(&c->cancel_timer, c_cancel, rnd_below(300), 0);
}

static void start_calls(chan_t *ch) {
  while (ch->in_flight < IN_FLIGHT) start_call(ch);
}

/* ---- channels closed under their calls and made again ---- */

static uvg_channel_options_t chan_opts;
#define RETRY_CONFIG                                                 \
  "{\"methodConfig\":[{\"name\":[{\"service\":\"soak.Soak\"}],"      \
  "\"retryPolicy\":{\"maxAttempts\":3,\"initialBackoff\":\"0.01s\"," \
  "\"maxBackoff\":\"0.1s\",\"backoffMultiplier\":2,"                 \
  "\"retryableStatusCodes\":[\"UNAVAILABLE\",\"ABORTED\"]}}]}"
static int channel_recycles, channels_closed;

static void channel_closed(uvg_channel_t *ch, void *ud) {
  (void)ch;
  (void)ud;
  channels_closed++;
}

static int channel_open(chan_t *ch, int i) {
  char target[64];
  int tls = i >= TLS_CHANNEL;
  snprintf(target, sizeof(target), "127.0.0.1:%d",
           via_relay(i) ? (tls ? relay_tls_port : relay_port)
                        : (tls ? tls_port : port));
  /* Every other channel retries (gRFC A6), so that attempts, their
   * backoff and the faults meet. */
  uvg_channel_options_t o = chan_opts;
  if (i % 2 == 1) o.default_service_config = RETRY_CONFIG;
  int rc = uvg_channel_new(
      loop, target, tls ? channel_tls : uvg_insecure_channel_credentials(), &o,
      &ch->ch);
  if (rc != 0) FAIL("channel_new %s: %s", target, uvg_strerror(rc));
  return rc;
}

static uv_timer_t recycle_timer;
static void recycle_channel(uv_timer_t *t) {
  if (stopping) return;
  int i = (int)rnd_below(NCHANNELS);
  channel_recycles++;
  /* Its calls end CANCELLED; their on_status starts the next ones on the
   * new channel in the same slot. */
  uvg_channel_close(chans[i].ch, channel_closed, NULL);
  if (channel_open(&chans[i], i) != 0) abort();
  uv_timer_start(t, recycle_channel, 4000 + rnd_below(6000), 0);
}

/* ---- RSS ---- */

#define MAX_SAMPLES 4096
static long rss[MAX_SAMPLES];
static int nrss;

/* The faults make the library log (a TLS handshake cut by the relay, a
 * connection reset): counted, and the first few shown. */
static int log_lines;
static void on_log(uvg_log_level_t level, const char *line, void *ud) {
  (void)ud;
  if (level == UVG_LOG_ERROR) FAIL("logged an error: %s", line);
  if (++log_lines <= 5) fprintf(stderr, "soak: log: %s\n", line);
}

/* ---- the run ---- */

static uv_timer_t tick_timer, stop_timer;
static uint64_t t0, seconds;

static void tick(uv_timer_t *t) {
  (void)t;
  if (nrss < MAX_SAMPLES) rss[nrss++] = vm_rss();
  uint64_t el = (uv_now(loop) - t0) / 1000;
  if (el % 10 == 0)
    fprintf(stderr,
            "soak: %3" PRIu64 " s: %" PRIu64 " calls, %" PRIu64
            " ok, rss %ld KiB, restarts %d, kills %d\n",
            el, c_ended, c_by_code[0], rss[nrss - 1] / 1024, server_restarts,
            relay_kills);
}

static void stop(uv_timer_t *t) {
  (void)t;
  stopping = 1;
  uv_timer_stop(&restart_timer);
  uv_timer_stop(&kill_timer);
  uv_timer_stop(&tick_timer);
  uv_timer_stop(&recycle_timer);
}

static void relay_conns_close(void) {
  for (rconn_t *c = rconns; c != NULL; c = c->next) r_close(c, 0);
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  seconds = UNDER_ASAN ? 30 : 120;
  const char *env = getenv("SOAK_SECONDS");
  if (argc > 1)
    seconds = strtoull(argv[1], NULL, 10);
  else if (env != NULL)
    seconds = strtoull(env, NULL, 10);
  if (seconds < 3) seconds = 3;
  env = getenv("SOAK_SEED");
  uint64_t seed = env ? strtoull(env, NULL, 10)
                      : (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)getpid();
  if (seed == 0) seed = 1;
  rng_state = seed;
  fprintf(stderr,
          "soak: seed %" PRIu64 " (replay with SOAK_SEED=%" PRIu64 "), %" PRIu64
          " s%s\n",
          seed, seed, seconds, UNDER_ASAN ? ", AddressSanitizer" : "");

  uvg_set_log_cb(on_log, NULL);
  loop = uv_default_loop();
  for (int k = 0; k < NKINDS; k++) {
    methods[k] = (uvg_method_t){
        .path = paths[k],
        .type = k == UNARY           ? UVG_METHOD_UNARY
                : k == SERVER_STREAM ? UVG_METHOD_SERVER_STREAMING
                : k == CLIENT_STREAM ? UVG_METHOD_CLIENT_STREAMING
                                     : UVG_METHOD_BIDI_STREAMING,
        .on_call = s_on_call,
        .on_message = s_on_message,
        .on_half_close = s_on_half_close,
        .on_cancel = s_on_cancel,
        .on_done = s_on_done,
        .method_data = (void *)(intptr_t)k};
  }
  /* gRPC's test certificates (server1 is for *.test.google.fr). */
  uvg_tls_server_options_t so = {
      .cert_chain = {.file = GRPC_TESTDATA "/server1.pem"},
      .private_key = {.file = GRPC_TESTDATA "/server1.key"}};
  uvg_tls_channel_options_t to = {
      .root_certs = {.file = GRPC_TESTDATA "/ca.pem"},
      .server_name_override = "foo.test.google.fr"};
  if (uvg_tls_server_credentials_new(&so, &server_tls) != 0 ||
      uvg_tls_channel_credentials_new(&to, &channel_tls) != 0) {
    FAIL("TLS credentials from " GRPC_TESTDATA);
    return 1;
  }
  uv_timer_init(loop, &relisten_timer);
  server_start();

  if (relay_listen(&relay, &relay_port) != 0 ||
      relay_listen(&relay_tls, &relay_tls_port) != 0)
    return 1;

  uvg_channel_options_init(&chan_opts);
  chan_opts.backoff_initial_ms = 50;
  chan_opts.backoff_max_ms = 500;
  for (int i = 0; i < NCHANNELS; i++)
    if (channel_open(&chans[i], i) != 0) return 1;

  uv_update_time(loop);
  t0 = uv_now(loop);
  uv_timer_init(loop, &restart_timer);
  uv_timer_init(loop, &kill_timer);
  uv_timer_init(loop, &tick_timer);
  uv_timer_init(loop, &stop_timer);
  uv_timer_init(loop, &recycle_timer);
  uv_timer_start(&recycle_timer, recycle_channel, 3000 + rnd_below(4000), 0);
  uv_timer_start(&restart_timer, restart_server, 2000 + rnd_below(3000), 0);
  uv_timer_start(&kill_timer, kill_one, 500, 0);
  uv_timer_start(&tick_timer, tick, 1000, 1000);
  uv_timer_start(&stop_timer, stop, seconds * 1000, 0);
  for (int i = 0; i < NCHANNELS; i++) start_calls(&chans[i]);

  while (!stopping) uv_run(loop, UV_RUN_ONCE);

  /* Traffic has stopped: every call in flight must end by itself (the
   * longest deadline is 5 s; calls without one wait for a server that is
   * up again). */
  uint64_t drain_end = uv_now(loop) + DRAIN_MS;
  int in_flight = 1;
  while (in_flight > 0 && uv_now(loop) < drain_end) {
    uv_run(loop, UV_RUN_NOWAIT);
    usleep(1000);
    uv_update_time(loop);
    in_flight = 0;
    for (int i = 0; i < NCHANNELS; i++) in_flight += chans[i].in_flight;
  }
  if (in_flight > 0)
    FAIL("%d calls still in flight %d s after traffic stopped", in_flight,
         DRAIN_MS / 1000);

  for (int i = 0; i < NCHANNELS; i++)
    uvg_channel_close(chans[i].ch, channel_closed, NULL);
  uv_close((uv_handle_t *)&relay, NULL);
  uv_close((uv_handle_t *)&relay_tls, NULL);
  relay_conns_close();
  closing_all = 1;
  if (server != NULL) uvg_server_close(server, NULL, NULL);
  server = NULL;
  uv_close((uv_handle_t *)&restart_timer, NULL);
  uv_close((uv_handle_t *)&kill_timer, NULL);
  uv_close((uv_handle_t *)&tick_timer, NULL);
  uv_close((uv_handle_t *)&stop_timer, NULL);
  uv_close((uv_handle_t *)&recycle_timer, NULL);
  uv_close((uv_handle_t *)&relisten_timer, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  uvg_server_credentials_release(server_tls);
  uvg_channel_credentials_release(channel_tls);

  /* ---- the accounts ---- */
  uint64_t sum = 0;
  for (int k = 0; k <= 16; k++) sum += c_by_code[k];
  fprintf(stderr,
          "soak: client: %" PRIu64 " started, %" PRIu64 " ended:", c_started,
          c_ended);
  for (int k = 0; k <= 16; k++)
    if (c_by_code[k])
      fprintf(stderr, " %s %" PRIu64, uvg_status_code_name(k), c_by_code[k]);
  fprintf(stderr,
          "\nsoak: kinds: unary %" PRIu64 ", server streaming %" PRIu64
          ", client streaming %" PRIu64 ", bidi %" PRIu64 "; %" PRIu64
          " cancels, %" PRIu64 " deadlines set\n",
          c_by_kind[0], c_by_kind[1], c_by_kind[2], c_by_kind[3], c_cancels,
          c_deadlines);
  if (c_ended != c_started)
    FAIL("client: %" PRIu64 " started, %" PRIu64 " ended", c_started, c_ended);
  if (sum != c_ended) FAIL("client: statuses add up to %" PRIu64, sum);
  sum = 0;
  for (int k = 0; k <= 16; k++) sum += s_by_code[k];
  fprintf(stderr, "soak: server: %" PRIu64 " seen, %" PRIu64 " done:", s_seen,
          s_done);
  for (int k = 0; k <= 16; k++)
    if (s_by_code[k])
      fprintf(stderr, " %s %" PRIu64, uvg_status_code_name(k), s_by_code[k]);
  fprintf(
      stderr,
      "\nsoak: %d server restarts, %d relay kills, %d channels closed under "
      "their calls, %d lines logged\n",
      server_restarts, relay_kills, channel_recycles, log_lines);
  if (channels_closed != channel_recycles + NCHANNELS)
    FAIL("%d channels closed, %d close callbacks", channel_recycles + NCHANNELS,
         channels_closed);
  if (s_done != s_seen)
    FAIL("server: %" PRIu64 " seen, %" PRIu64 " done", s_seen, s_done);
  if (sum != s_done) FAIL("server: statuses add up to %" PRIu64, sum);
  for (size_t i = 0; i < RING; i++) {
    slot_t *s = &ring[i];
    if (s->id == 0) continue;
    if (s->client < 0)
      FAIL("call %" PRIu64 " never ended on the client", s->id);
    cross_check(s);
    if (server_sent(s->client) && s->server == 0)
      FAIL("call %" PRIu64 " %s on the client, never done on the server", s->id,
           uvg_status_code_name(s->client));
  }
  /* Each fault must have happened, or the run proved less than it says. */
  if (server_restarts < 1) FAIL("no server restart");
  if (seconds >= 20 && channel_recycles < 1)
    FAIL("no channel closed under its calls");
  if (seconds >= 20 && relay_kills < 5)
    FAIL("only %d relay kills", relay_kills);
  for (int k = 0; k < NKINDS; k++)
    if (c_by_kind[k] == 0) FAIL("no %s call", paths[k]);
  if (c_by_code[UVG_STATUS_OK] == 0 || c_by_code[UVG_STATUS_CANCELLED] == 0 ||
      c_by_code[UVG_STATUS_OUT_OF_RANGE] == 0 ||
      c_by_code[UVG_STATUS_DEADLINE_EXCEEDED] == 0 ||
      c_by_code[UVG_STATUS_UNAVAILABLE] == 0 ||
      c_by_code[UVG_STATUS_ABORTED] == 0)
    FAIL("a status the faults should have produced is missing");

  if (!UNDER_ASAN) {
    /* Warm-up: the first third. Growth: the mean of the last five samples
     * against the mean of the five after the warm-up. */
    int w = nrss / 3;
    if (nrss - w < 10 && seconds >= 30) {
      FAIL("too few RSS samples (%d)", nrss);
    } else if (nrss - w < 10) {
      fprintf(stderr, "soak: too short a run to check RSS\n");
    } else {
      long a = 0, b = 0;
      for (int i = 0; i < 5; i++) a += rss[w + i], b += rss[nrss - 5 + i];
      a /= 5;
      b /= 5;
      fprintf(
          stderr,
          "soak: RSS after warm-up %ld KiB, at the end %ld KiB (%+ld KiB)\n",
          a / 1024, b / 1024, (b - a) / 1024);
      if (b - a >= RSS_GROWTH_MAX)
        FAIL("RSS grew by %ld KiB after the warm-up (limit %d KiB)",
             (b - a) / 1024, RSS_GROWTH_MAX / 1024);
    }
  }
  uv_loop_close(loop);
  fprintf(stderr, "soak: %s (seed %" PRIu64 ")\n", failures ? "FAILED" : "ok",
          seed);
  return failures ? 1 : 0;
}

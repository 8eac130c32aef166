/* Beyond one core: two loops on two threads, each with its own server,
 * share one port through the reuse_port option. The kernel spreads the
 * client's connections across both; every call is answered on the thread
 * of the loop that accepted it; both servers shut down from their own
 * loops (through uvg_post) and leave nothing open. Without the option a
 * second server cannot bind the port. */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

#include "test.h"
#include "uvgrpc.h"

#define METHOD "/scale.Test/Which"
#define MAX_CHANNELS 64
#define MIN_CALLS 8

typedef struct {
  int index;
  uv_thread_t thread;
  uv_loop_t loop;
  uv_sem_t ready;
  uvg_poster_t *poster;
  uvg_server_t *server;
  int port; /* in: the port to bind (0: any); out: the port bound */
  int listen_rc;
  atomic_int calls;
  atomic_int foreign; /* handlers run on a thread not the loop's */
  int loop_close_rc;
  int server_closed;
} worker_t;

static void on_which(uvg_call_t *call, const uint8_t *msg, size_t len) {
  worker_t *w = uvg_call_method_data(call);
  uv_thread_t self = uv_thread_self();
  (void)msg;
  (void)len;
  if (!uv_thread_equal(&self, &w->thread)) atomic_fetch_add(&w->foreign, 1);
  atomic_fetch_add(&w->calls, 1);
  uint8_t idx = (uint8_t)w->index;
  uvg_call_send(call, &idx, 1, 0, NULL, NULL);
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}

static void on_done(uvg_call_t *call, const uvg_status_t *st) {
  (void)call;
  (void)st;
}

static void on_server_closed(uvg_server_t *s, void *data) {
  worker_t *w = data;
  (void)s;
  w->server_closed = 1;
}

/* Runs on the worker's loop: the server and the poster are closed from
 * their own thread, as the threading contract asks. */
static void stop_worker(void *arg, int status) {
  worker_t *w = arg;
  if (status != 0) return;
  uvg_server_shutdown(w->server, 1000, on_server_closed, w);
  uvg_poster_close(w->poster, NULL, NULL);
}

static void worker_main(void *arg) {
  worker_t *w = arg;
  uvg_server_options_t o;
  char addr[64];
  uvg_method_t m = {.path = METHOD, .type = UVG_METHOD_UNARY,
                    .on_call = on_which, .on_done = on_done, .method_data = w};
  CHECK_EQ(uv_loop_init(&w->loop), 0);
  CHECK_EQ(uvg_poster_new(&w->loop, &w->poster), 0);
  uvg_server_options_init(&o);
  o.reuse_port = 1;
  CHECK_EQ(uvg_server_new(&w->loop, &o, &w->server), 0);
  CHECK_EQ(uvg_server_register(w->server, &m, 1), 0);
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", w->port);
  w->listen_rc = uvg_server_listen(w->server, addr, uvg_insecure_server_credentials(),
                                   &w->port);
  uv_sem_post(&w->ready);
  uv_run(&w->loop, UV_RUN_DEFAULT);
  /* Every handle the server and the poster opened is closed by now. */
  w->loop_close_rc = uv_loop_close(&w->loop);
}

static void start_worker(worker_t *w, int index, int port) {
  w->index = index;
  w->port = port;
  atomic_init(&w->calls, 0);
  atomic_init(&w->foreign, 0);
  CHECK_EQ(uv_sem_init(&w->ready, 0), 0);
  CHECK_EQ(uv_thread_create(&w->thread, worker_main, w), 0);
  uv_sem_wait(&w->ready);
  uv_sem_destroy(&w->ready);
}

/* ---- the client, on the main thread's loop ---- */

static uvg_channel_t *channels[MAX_CHANNELS];
static int nchannels, served_by[2], call_errors;
static char target[64];

static void next_call(uv_loop_t *loop);

static void on_reply(const uvg_status_t *st, const uint8_t *reply, size_t len,
                     void *data) {
  uv_loop_t *loop = data;
  if (st->code != UVG_STATUS_OK || len != 1 || reply[0] > 1)
    call_errors++;
  else
    served_by[reply[0]]++;
  if ((served_by[0] && served_by[1] && nchannels >= MIN_CALLS) ||
      nchannels == MAX_CHANNELS || call_errors) {
    for (int i = 0; i < nchannels; i++) uvg_channel_close(channels[i], NULL, NULL);
    return;
  }
  next_call(loop);
}

/* A new channel for each call: a new connection, from a new source port,
 * that the kernel hashes to one of the two listeners. */
static void next_call(uv_loop_t *loop) {
  uvg_channel_t *ch;
  CHECK_EQ(uvg_channel_new(loop, target, uvg_insecure_channel_credentials(), NULL, &ch),
           0);
  channels[nchannels++] = ch;
  CHECK_EQ(uvg_channel_unary(ch, METHOD, "", 0, NULL, on_reply, loop), 0);
}

static void test_two_loops_share_one_port(void) {
  static worker_t w[2];
  uv_loop_t loop;
  start_worker(&w[0], 0, 0);
  CHECK_EQ(w[0].listen_rc, 0);
  start_worker(&w[1], 1, w[0].port);
  CHECK_EQ(w[1].listen_rc, 0);
  CHECK_EQ(w[1].port, w[0].port);

  snprintf(target, sizeof(target), "ipv4:127.0.0.1:%d", w[0].port);
  CHECK_EQ(uv_loop_init(&loop), 0);
  next_call(&loop);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ(call_errors, 0);
  CHECK(served_by[0] > 0);
  CHECK(served_by[1] > 0);
  CHECK_EQ(atomic_load(&w[0].calls), served_by[0]);
  CHECK_EQ(atomic_load(&w[1].calls), served_by[1]);
  CHECK_EQ(uv_loop_close(&loop), 0);

  for (int i = 0; i < 2; i++) {
    CHECK_EQ(uvg_post(w[i].poster, stop_worker, &w[i]), 0);
    CHECK_EQ(uv_thread_join(&w[i].thread), 0);
    CHECK_EQ(w[i].server_closed, 1);
    CHECK_EQ(w[i].loop_close_rc, 0);
    CHECK_EQ(atomic_load(&w[i].foreign), 0);
  }
  fprintf(stderr, "  %d channels: %d calls on loop 0, %d on loop 1\n", nchannels,
          served_by[0], served_by[1]);
}

/* The option is what lets the second server in: without it on both, the
 * port is taken. */
static void test_port_taken_without_the_option(void) {
  uv_loop_t loop;
  uvg_server_t *a, *b;
  uvg_server_options_t o;
  int port = 0;
  char addr[64];
  CHECK_EQ(uv_loop_init(&loop), 0);
  uvg_server_options_init(&o);
  o.reuse_port = 1;
  CHECK_EQ(uvg_server_new(&loop, &o, &a), 0);
  CHECK_EQ(uvg_server_listen(a, "127.0.0.1:0", uvg_insecure_server_credentials(), &port),
           0);
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
  CHECK_EQ(uvg_server_new(&loop, NULL, &b), 0);
  CHECK_EQ(uvg_server_listen(b, addr, uvg_insecure_server_credentials(), NULL),
           UV_EADDRINUSE);
  uvg_server_close(b, NULL, NULL);
  uvg_server_close(a, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ(uv_loop_close(&loop), 0);
}

int main(void) {
  alarm(50); /* a hang fails the test instead of stalling the suite */
  RUN(test_port_taken_without_the_option);
  RUN(test_two_loops_share_one_port);
  TEST_EXIT();
}

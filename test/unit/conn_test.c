/* The HTTP/2 connection (lib/transport/conn.c): the nghttp2 callbacks that
 * every connection shares are made once, safely when two loops on two
 * threads accept their first connections together, and an allocation
 * failure while making them does not disable the server for good.
 *
 * nghttp2_session_callbacks_new() is wrapped here so that its first call
 * can be made slow (to hold a second thread in the window where another
 * thread is still filling the shared callbacks in) or fail. Each scenario
 * runs in its own process, since the callbacks are made once per process. */
#include <dlfcn.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uvgrpc.h>

#include "h2client.h"
#include "test.h"

/* ---- the wrapped nghttp2_session_callbacks_new ---- */

enum { FIRST_NORMAL, FIRST_SLOW, FIRST_FAILS };
static int (*real_callbacks_new)(nghttp2_session_callbacks **);
static int first_mode;
static atomic_int first_taken;
static uv_sem_t first_made; /* posted once the slow first call has made it */

int nghttp2_session_callbacks_new(nghttp2_session_callbacks **out) {
  if (atomic_exchange(&first_taken, 1) == 0) {
    if (first_mode == FIRST_FAILS) return NGHTTP2_ERR_NOMEM;
    if (first_mode == FIRST_SLOW) {
      int rv = real_callbacks_new(out);
      uv_sem_post(&first_made);
      uv_sleep(300); /* the caller fills the callbacks in after this */
      return rv;
    }
  }
  return real_callbacks_new(out);
}

/* ---- a server on its own loop ---- */

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

typedef struct {
  uv_loop_t loop;
  uvg_server_t *server;
  int port;
  int closed;
} side_t;

static void side_open(side_t *s) {
  memset(s, 0, sizeof(*s));
  CHECK_EQ(uv_loop_init(&s->loop), 0);
  CHECK_EQ(uvg_server_new(&s->loop, NULL, &s->server), 0);
  CHECK_EQ(uvg_server_register(s->server, methods, 1), 0);
  CHECK_EQ(uvg_server_listen(s->server, "127.0.0.1:0",
                             uvg_insecure_server_credentials(), &s->port),
           0);
}

static void on_server_closed(uvg_server_t *server, void *data) {
  (void)server;
  ((side_t *)data)->closed++;
}

static void side_close(side_t *s) {
  uvg_server_close(s->server, on_server_closed, s);
  CHECK_EQ(uv_run(&s->loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ(s->closed, 1);
  CHECK_EQ(uv_loop_close(&s->loop), 0);
}

/* One unary call through the test client; its grpc-status, or -1. */
static int call_once(side_t *s) {
  h2c_t c;
  int status = -1;
  if (h2c_connect(&c, &s->loop, s->port, 1, 0) == 0) {
    uint8_t body[16];
    size_t n = h2c_frame(body, 0, "hello", 5);
    int i = h2c_request(&c, "/t.T/Echo", NULL, NULL, body, n, 0, 1);
    for (int k = 0; k < 500 && i >= 0 && !c.streams[i].closed && !c.eof; k++)
      h2c_run_for(&s->loop, 2);
    if (i >= 0) status = h2c_grpc_status(&c.streams[i]);
  }
  h2c_close(&c);
  return status;
}

/* Connects with a plain socket (no nghttp2 on the client side, so the
 * server's call of nghttp2_session_callbacks_new is the process's first)
 * and runs the loop until the server's first frame or EOF. Returns 1 if
 * the server began HTTP/2 on the connection: its first frame is SETTINGS. */
static int raw_gets_settings(side_t *s) {
  struct sockaddr_in a;
  uint8_t head[9];
  size_t have = 0;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(fd >= 0);
  CHECK_EQ(uv_ip4_addr("127.0.0.1", s->port, &a), 0);
  CHECK_EQ(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  fcntl(fd, F_SETFL, O_NONBLOCK);
  uint64_t end = uv_hrtime() + 5000ull * 1000 * 1000;
  while (have < sizeof(head) && uv_hrtime() < end) {
    uv_run(&s->loop, UV_RUN_NOWAIT);
    ssize_t n = recv(fd, head + have, sizeof(head) - have, 0);
    if (n == 0) break; /* the server closed it */
    if (n > 0)
      have += (size_t)n;
    else
      uv_sleep(1);
  }
  close(fd);
  return have == sizeof(head) && head[3] == NGHTTP2_SETTINGS;
}

/* ---- scenarios, each in a process of its own ---- */

typedef struct {
  uv_thread_t tid;
  int status;
} second_t;

/* The second loop's thread: waits until the first thread is inside the
 * slow making of the callbacks, then serves a call of its own. */
static void second_main(void *arg) {
  second_t *b = arg;
  side_t s;
  uv_sem_wait(&first_made);
  side_open(&s);
  b->status = call_once(&s);
  side_close(&s);
}

static void scenario_two_loops(void) {
  side_t a;
  second_t b = {.status = -1};
  first_mode = FIRST_SLOW;
  CHECK_EQ(uv_sem_init(&first_made, 0), 0);
  side_open(&a);
  CHECK_EQ(uv_thread_create(&b.tid, second_main, &b), 0);
  CHECK(raw_gets_settings(&a));
  CHECK_EQ(uv_thread_join(&b.tid), 0);
  CHECK_EQ(b.status, 0);
  CHECK_EQ(call_once(&a), 0);
  side_close(&a);
  uv_sem_destroy(&first_made);
}

static void scenario_first_make_fails(void) {
  side_t a;
  first_mode = FIRST_FAILS;
  side_open(&a);
  /* the shared callbacks could not be made: this connection gets a set of
   * its own, and so do later ones */
  CHECK(raw_gets_settings(&a));
  CHECK_EQ(call_once(&a), 0);
  CHECK_EQ(call_once(&a), 0);
  side_close(&a);
}

static void in_child(void (*scenario)(void)) {
  fflush(stderr);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    scenario();
    exit(test_failures == 0 ? 0 : 1);
  }
  int st = 0;
  CHECK_EQ(waitpid(pid, &st, 0), pid);
  if (WIFSIGNALED(st)) fprintf(stderr, "  killed by signal %d\n", WTERMSIG(st));
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void test_two_loops_on_two_threads(void) {
  in_child(scenario_two_loops);
}
static void test_first_make_fails(void) {
  in_child(scenario_first_make_fails);
}

int main(void) {
  real_callbacks_new = (int (*)(nghttp2_session_callbacks **))dlsym(
      RTLD_NEXT, "nghttp2_session_callbacks_new");
  CHECK(real_callbacks_new != NULL);
  if (real_callbacks_new == NULL) TEST_EXIT();
  RUN(test_two_loops_on_two_threads);
  RUN(test_first_make_fails);
  TEST_EXIT();
}

/* The listening socket (loop/listener.c): unix socket files left behind by
 * a listener that is gone are replaced; a path something listens on, or
 * that is not a socket, is left alone; the accept back-off keeps the loop
 * alive. */
#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "listener.h"
#include "test.h"

typedef struct {
  uv_loop_t loop;
  uvg__sched_t sched;
  int sched_closed;
} fixture_t;

static void fixture_init(fixture_t *f) {
  memset(f, 0, sizeof(*f));
  CHECK_EQ(uv_loop_init(&f->loop), 0);
  f->loop.data = f;
  CHECK_EQ(uvg__sched_init(&f->loop, &f->sched), 0);
}

static void on_sched_closed(uvg__sched_t *s) {
  fixture_t *f = s->loop->data;
  f->sched_closed++;
}

static void fixture_close(fixture_t *f) {
  uvg__sched_close(&f->sched, on_sched_closed);
  CHECK_EQ(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ(f->sched_closed, 1);
  CHECK_EQ(uv_loop_close(&f->loop), 0);
}

static int accepted, listeners_closed;

static void on_accept(uvg__listener_t *l, int fd) {
  (void)l;
  accepted++;
  close(fd);
}

static void on_listener_closed(uvg__listener_t *l) {
  (void)l;
  listeners_closed++;
}

static void close_listener(fixture_t *f, uvg__listener_t *l) {
  int before = listeners_closed;
  uvg__listener_close(l, on_listener_closed);
  while (listeners_closed == before) uv_run(&f->loop, UV_RUN_ONCE);
}

static char path[108];

static void make_path(void) {
  snprintf(path, sizeof(path), "/tmp/uvg-listener-test-%d.sock", (int)getpid());
  unlink(path);
}

static int open_unix(fixture_t *f, uvg__listener_t *l) {
  int port = -1;
  int rc = uvg__listener_open(&f->sched, l, NULL, path, &port, 0, on_accept);
  if (rc == 0) CHECK_EQ(port, 0);
  return rc;
}

/* Connects to `path` and runs the loop until `expect` more connections
 * have been accepted. Returns 1 if they were. */
static int connect_accepted(fixture_t *f, int expect) {
  struct sockaddr_un un;
  memset(&un, 0, sizeof(un));
  un.sun_family = AF_UNIX;
  strcpy(un.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (connect(fd, (struct sockaddr *)&un, sizeof(un)) != 0) {
    close(fd);
    return 0;
  }
  int before = accepted;
  for (int k = 0; k < 1000 && accepted < before + expect; k++) {
    uv_run(&f->loop, UV_RUN_NOWAIT);
    if (accepted < before + expect) uv_sleep(1);
  }
  close(fd);
  return accepted == before + expect;
}

/* Listens on `path`, checks a connection is accepted, and closes. */
static void listen_accept_close(fixture_t *f, uvg__listener_t *l) {
  int rc = open_unix(f, l);
  CHECK_EQ(rc, 0);
  if (rc != 0) return;
  CHECK(connect_accepted(f, 1));
  close_listener(f, l);
}

/* A socket file whose listener closed without removing it (a process
 * that crashed or was killed): listening on the path works. */
static void test_stale_socket_file_replaced(void) {
  fixture_t f;
  uvg__listener_t l;
  fixture_init(&f);
  make_path();
  struct sockaddr_un un;
  memset(&un, 0, sizeof(un));
  un.sun_family = AF_UNIX;
  strcpy(un.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  CHECK_EQ(bind(fd, (struct sockaddr *)&un, sizeof(un)), 0);
  CHECK_EQ(listen(fd, 8), 0);
  close(fd); /* the file stays */
  struct stat st;
  CHECK(lstat(path, &st) == 0 && S_ISSOCK(st.st_mode));
  listen_accept_close(&f, &l);

  /* a listener of ours removes its file when it closes */
  CHECK(lstat(path, &st) != 0 && errno == ENOENT);
  listen_accept_close(&f, &l);
  CHECK(lstat(path, &st) != 0 && errno == ENOENT);
  fixture_close(&f);
}

/* A path that became another file while we listened is left to it. */
static void test_replaced_path_kept_at_close(void) {
  fixture_t f;
  uvg__listener_t l;
  fixture_init(&f);
  make_path();
  CHECK_EQ(open_unix(&f, &l), 0);
  unlink(path);
  int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
  CHECK(fd >= 0);
  close(fd);
  close_listener(&f, &l);
  struct stat st;
  CHECK(lstat(path, &st) == 0 && S_ISREG(st.st_mode));
  unlink(path);
  fixture_close(&f);
}

/* A path something listens on is not taken over: UV_EADDRINUSE, and the
 * listener there keeps its file and its connections. */
static void test_live_socket_kept(void) {
  fixture_t f;
  uvg__listener_t first, second;
  fixture_init(&f);
  make_path();
  CHECK_EQ(open_unix(&f, &first), 0);
  CHECK_EQ(open_unix(&f, &second), UV_EADDRINUSE);
  /* the first listener gets the second's probe (a connection closed at
   * once) and ours */
  CHECK(connect_accepted(&f, 2));
  close_listener(&f, &first);
  unlink(path);
  fixture_close(&f);
}

/* A file that is not a socket is never removed. */
static void test_other_file_kept(void) {
  fixture_t f;
  uvg__listener_t l;
  fixture_init(&f);
  make_path();
  int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
  CHECK(fd >= 0);
  CHECK_EQ(write(fd, "keep", 4), 4);
  close(fd);
  CHECK_EQ(open_unix(&f, &l), UV_EADDRINUSE);
  struct stat st;
  CHECK(lstat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 4);
  unlink(path);
  fixture_close(&f);
}

/* Connects a client to `path` (the kernel completes it from the backlog)
 * and runs the loop until the listener has started backing off, for want
 * of a descriptor to accept into. Returns the client's socket. */
static int connect_until_backoff(fixture_t *f, uvg__listener_t *l) {
  struct sockaddr_un un;
  struct rlimit lim;
  memset(&un, 0, sizeof(un));
  un.sun_family = AF_UNIX;
  strcpy(un.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  CHECK_EQ(connect(fd, (struct sockaddr *)&un, sizeof(un)), 0);
  /* The lowest free descriptor is the next one accept would get. */
  int lowest = dup(0);
  close(lowest);
  getrlimit(RLIMIT_NOFILE, &lim);
  lim.rlim_cur = (rlim_t)lowest;
  CHECK_EQ(setrlimit(RLIMIT_NOFILE, &lim), 0);
  for (int k = 0; k < 100 && l->delay == 0; k++) {
    uv_run(&f->loop, UV_RUN_NOWAIT);
    if (l->delay == 0) uv_sleep(1);
  }
  getrlimit(RLIMIT_NOFILE, &lim);
  lim.rlim_cur = lim.rlim_max;
  CHECK_EQ(setrlimit(RLIMIT_NOFILE, &lim), 0);
  return fd;
}

/* While accepting pauses, the socket is not polled and only a timer ends
 * the pause; timers do not keep the loop alive, so the listener holds the
 * scheduler: uv_run() does not return while a server listens. Closing in
 * the pause lets go of the hold. */
static void test_backoff_keeps_loop_alive(void) {
  fixture_t f;
  uvg__listener_t l;
  struct rlimit saved;
  fixture_init(&f);
  make_path();
  getrlimit(RLIMIT_NOFILE, &saved);
  CHECK_EQ(open_unix(&f, &l), 0);
  accepted = 0;

  int fd = connect_until_backoff(&f, &l);
  CHECK(l.delay > 0);
  CHECK_EQ(accepted, 0);
  CHECK(!uv_is_active((uv_handle_t *)&l.poll));
  CHECK(uv_loop_alive(&f.loop));
  /* Descriptors are back: the pause ends and the connection is taken. */
  for (int k = 0; k < 100 && accepted == 0; k++) uv_run(&f.loop, UV_RUN_ONCE);
  CHECK_EQ(accepted, 1);
  CHECK_EQ(f.sched.holds, 0);
  close(fd);

  fd = connect_until_backoff(&f, &l);
  CHECK(l.delay > 0);
  CHECK_EQ(f.sched.holds, 1);
  close_listener(&f, &l);
  CHECK_EQ(f.sched.holds, 0);
  CHECK_EQ(accepted, 1);
  close(fd);
  CHECK_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
  fixture_close(&f);
}

int main(void) {
  RUN(test_stale_socket_file_replaced);
  RUN(test_live_socket_kept);
  RUN(test_other_file_kept);
  RUN(test_replaced_path_kept_at_close);
  RUN(test_backoff_keeps_loop_alive);
  TEST_EXIT();
}

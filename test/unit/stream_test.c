/* Byte streams over sockets (loop/stream.c): the peer name that log lines
 * carry names the other end of an accepted connection. */
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "listener.h"
#include "stream.h"
#include "test.h"

static uv_loop_t loop;
static uvg__sched_t sched;
static int sched_closed, accepted, streams_closed, listener_closed;
static char peer[128];

static void on_read(uvg__stream_t *s, ssize_t nread, const uint8_t *buf) {
  (void)s;
  (void)nread;
  (void)buf;
}
static void on_write(uvg__stream_t *s, int status) {
  (void)s;
  (void)status;
}
static void on_close(uvg__stream_t *s) {
  (void)s;
  streams_closed++;
}
static const uvg__stream_cbs_t cbs = {on_read, on_write, on_close};

static uint8_t read_buf[1024];
static uvg__stream_t server_end;

static void on_accept(uvg__listener_t *l, int fd) {
  accepted++;
  CHECK_EQ(uvg__stream_open_fd(&loop, &server_end, fd, l->is_unix, &cbs,
                               read_buf, sizeof(read_buf)),
           0);
  server_end.ops->peer_name(&server_end, peer, sizeof(peer));
  server_end.ops->close(&server_end);
}

static void on_listener_closed(uvg__listener_t *l) {
  (void)l;
  listener_closed++;
}
static void on_sched_closed(uvg__sched_t *s) {
  (void)s;
  sched_closed++;
}

/* Listens (on a unix path, or TCP with path NULL), connects one client
 * socket and fills `peer` with the accepted end's name. Returns the
 * client's socket, still open. */
static int accept_one(const char *path, int *client_port) {
  uvg__listener_t l;
  struct sockaddr_in in;
  struct sockaddr_un un;
  int port = 0, fd;
  peer[0] = '\0';
  accepted = streams_closed = listener_closed = 0;
  uv_ip4_addr("127.0.0.1", 0, &in);
  CHECK_EQ(uvg__listener_open(&sched, &l, path ? NULL : (struct sockaddr *)&in,
                              path, &port, 0, on_accept),
           0);
  if (path != NULL) {
    memset(&un, 0, sizeof(un));
    un.sun_family = AF_UNIX;
    strcpy(un.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK_EQ(connect(fd, (struct sockaddr *)&un, sizeof(un)), 0);
  } else {
    uv_ip4_addr("127.0.0.1", port, &in);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK_EQ(connect(fd, (struct sockaddr *)&in, sizeof(in)), 0);
    struct sockaddr_in me;
    socklen_t len = sizeof(me);
    getsockname(fd, (struct sockaddr *)&me, &len);
    *client_port = ntohs(me.sin_port);
  }
  for (int k = 0; k < 1000 && streams_closed == 0; k++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    if (streams_closed == 0) uv_sleep(1);
  }
  CHECK_EQ(accepted, 1);
  CHECK_EQ(streams_closed, 1);
  uvg__listener_close(&l, on_listener_closed);
  while (listener_closed == 0) uv_run(&loop, UV_RUN_ONCE);
  return fd;
}

/* A unix peer is named by its credentials (SO_PEERCRED), not by the
 * socket's path, which is the server's own. */
static void test_unix_peer_name(void) {
  char path[108], want[128];
  snprintf(path, sizeof(path), "/tmp/uvg-stream-test-%d.sock", (int)getpid());
  unlink(path);
  int fd = accept_one(path, NULL);
  snprintf(want, sizeof(want), "unix:pid=%d,uid=%u", (int)getpid(),
           (unsigned)getuid());
  CHECK(strstr(peer, path) == NULL);
  CHECK_STR(peer, want);
  close(fd);
  unlink(path);
}

static void test_tcp_peer_name(void) {
  char want[64];
  int client_port = 0;
  int fd = accept_one(NULL, &client_port);
  snprintf(want, sizeof(want), "127.0.0.1:%d", client_port);
  CHECK_STR(peer, want);
  close(fd);
}

int main(void) {
  CHECK_EQ(uv_loop_init(&loop), 0);
  CHECK_EQ(uvg__sched_init(&loop, &sched), 0);
  RUN(test_unix_peer_name);
  RUN(test_tcp_peer_name);
  uvg__sched_close(&sched, on_sched_closed);
  CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ(sched_closed, 1);
  CHECK_EQ(uv_loop_close(&loop), 0);
  TEST_EXIT();
}

/* Connecting byte streams (loop/connect.c): TCP over IPv4 and IPv6, unix
 * sockets by path and by abstract name; refused, missing, overloaded and
 * timed-out connects; cancelling; tunnels through an HTTP proxy that the
 * test plays by hand. Every connect ends in exactly one
 * callback, never inside the call that started or cancelled it, and
 * leaves no handle or descriptor open. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "connect.h"
#include "test.h"

static uv_loop_t loop;
static uvg__sched_t *sched;

/* ---- a client: the connect request, its stream and what happened ---- */

typedef struct {
  uvg__connect_t req;
  uvg__stream_t stream;
  uint8_t read_buf[256];
  int calls;        /* connect callbacks */
  int status;       /* the last one's status */
  int cancel_in_cb; /* cancel once more from inside the callback */
  char got[64];     /* bytes read */
  size_t got_len;
  size_t want; /* close the stream once this many bytes are read */
  int writes, write_status, closed;
} client_t;

static void on_read(uvg__stream_t *s, ssize_t nread, const uint8_t *buf) {
  client_t *c = uvg__container_of(s, client_t, stream);
  if (nread < 0) {
    s->ops->close(s);
    return;
  }
  size_t n = (size_t)nread;
  if (n > sizeof(c->got) - c->got_len) n = sizeof(c->got) - c->got_len;
  memcpy(c->got + c->got_len, buf, n);
  c->got_len += n;
  if (c->got_len >= c->want) s->ops->close(s);
}
static void on_write(uvg__stream_t *s, int status) {
  client_t *c = uvg__container_of(s, client_t, stream);
  c->writes++;
  c->write_status = status;
}
static void on_close(uvg__stream_t *s) {
  client_t *c = uvg__container_of(s, client_t, stream);
  c->closed++;
}
static const uvg__stream_cbs_t stream_cbs = {on_read, on_write, on_close};

static void on_connect(uvg__connect_t *req, int status) {
  client_t *c = uvg__container_of(req, client_t, req);
  c->calls++;
  c->status = status;
  if (c->cancel_in_cb) uvg__connect_cancel(req); /* too late: a no-op */
}

static void client_init(client_t *c) {
  memset(c, 0, sizeof(*c));
  c->status = 1; /* no status yet */
  c->stream.ops = NULL;
  c->stream.cbs = &stream_cbs;
  c->stream.read_buf = c->read_buf;
  c->stream.read_buf_len = sizeof(c->read_buf);
}

/* ---- running the loop ---- */

static void on_watchdog(uv_timer_t *t) { uv_stop(t->loop); }

/* Runs the loop until nothing keeps it alive, which is what a finished
 * connect must leave; a hang ends after 5 s with uv_stop(). Returns the
 * milliseconds it ran. */
static uint64_t run(void) {
  uv_timer_t dog;
  uv_timer_init(&loop, &dog);
  uv_timer_start(&dog, on_watchdog, 5000, 0);
  uv_unref((uv_handle_t *)&dog);
  uint64_t t0 = uv_hrtime();
  CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
  uint64_t ms = (uv_hrtime() - t0) / 1000000;
  uv_close((uv_handle_t *)&dog, NULL);
  /* After a hang the stuck handles are still alive: only the close. */
  uv_run(&loop, UV_RUN_NOWAIT);
  return ms;
}

static int count_open_fds(void) {
  int n = 0;
  uv_fs_t req;
  uv_dirent_t ent;
  if (uv_fs_scandir(NULL, &req, "/proc/self/fd", 0, NULL) < 0) return -1;
  while (uv_fs_scandir_next(&req, &ent) != UV_EOF) n++;
  uv_fs_req_cleanup(&req);
  return n;
}

/* ---- servers: plain listening sockets the test accepts on by hand ---- */

/* Listens on the loopback address of `family`; *port gets the port.
 * Returns the socket, or -1 if the machine has no such loopback. */
static int listen_tcp(int family, int backlog, int *port) {
  struct sockaddr_storage ss;
  socklen_t len;
  memset(&ss, 0, sizeof(ss));
  if (family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_addr = in6addr_loopback;
    len = sizeof(*a);
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof(*a);
  }
  int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, backlog) != 0) {
    close(fd);
    return -1;
  }
  getsockname(fd, (struct sockaddr *)&ss, &len);
  *port = ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                   : ((struct sockaddr_in *)&ss)->sin_port);
  return fd;
}

static void loopback(int family, int port, struct sockaddr_storage *ss) {
  if (family == AF_INET6)
    uv_ip6_addr("::1", port, (struct sockaddr_in6 *)ss);
  else
    uv_ip4_addr("127.0.0.1", port, (struct sockaddr_in *)ss);
}

static socklen_t unix_addr(struct sockaddr_un *un, const char *path,
                           size_t len) {
  memset(un, 0, sizeof(*un));
  un->sun_family = AF_UNIX;
  memcpy(un->sun_path, path, len);
  return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
}

/* Binds a unix socket to the `len` bytes of `path` (abstract if path[0]
 * is NUL); listens unless backlog < 0. */
static int bind_unix(const char *path, size_t len, int backlog) {
  struct sockaddr_un un;
  socklen_t al = unix_addr(&un, path, len);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  CHECK_EQ(bind(fd, (struct sockaddr *)&un, al), 0);
  if (backlog >= 0) CHECK_EQ(listen(fd, backlog), 0);
  return fd;
}

/* ---- a connected client works like an accepted connection ---- */

/* 1 once `fd` is readable (a connection to accept, bytes, or EOF), so a
 * bug fails a check instead of hanging the test. */
static int readable(int fd) {
  struct pollfd p = {fd, POLLIN, 0};
  return poll(&p, 1, 2000) == 1;
}

/* Accepts the client's connection on `lfd` and exchanges a few bytes each
 * way through the stream's ops; checks its peer name against `want_peer`
 * (NULL: skip) and closes everything. */
static void exchange(client_t *c, int lfd, const char *want_peer) {
  char peer[128];
  uvg__stream_t *s = &c->stream;
  CHECK(s->ops != NULL && s->cbs == &stream_cbs);
  if (s->ops == NULL) return;
  int sfd = readable(lfd) ? accept(lfd, NULL, NULL) : -1;
  CHECK(sfd >= 0);
  if (sfd < 0) return;
  s->ops->peer_name(s, peer, sizeof(peer));
  if (want_peer != NULL) CHECK_STR(peer, want_peer);

  uv_buf_t b = uv_buf_init("ping", 4);
  CHECK_EQ(s->ops->write(s, &b, 1), 0);
  run();
  CHECK_EQ(c->writes, 1);
  CHECK_EQ(c->write_status, 0);
  char in[8] = {0};
  CHECK(readable(sfd) && read(sfd, in, 4) == 4);
  CHECK_STR(in, "ping");

  CHECK_EQ(write(sfd, "pong", 4), 4);
  c->want = 4;
  CHECK_EQ(s->ops->read_start(s), 0);
  run(); /* on_read closes the stream after 4 bytes */
  CHECK_EQ(c->got_len, 4);
  CHECK(memcmp(c->got, "pong", 4) == 0);
  CHECK_EQ(c->closed, 1);
  /* the server end sees the client's close */
  CHECK(readable(sfd) && read(sfd, in, sizeof(in)) == 0);
  close(sfd);
}

static void connect_tcp_and_talk(int family) {
  struct sockaddr_storage ss;
  client_t c;
  char want[64];
  int port, one = 0;
  socklen_t ol = sizeof(one);
  int lfd = listen_tcp(family, 16, &port);
  if (lfd < 0) {
    fprintf(stderr, "  skipped: no %s loopback on this machine\n",
            family == AF_INET6 ? "IPv6" : "IPv4");
    return;
  }
  loopback(family, port, &ss);
  client_init(&c);
  CHECK_EQ(uvg__connect_tcp(&c.req, sched, (struct sockaddr *)&ss, 1000,
                            &c.stream, on_connect),
           0);
  CHECK_EQ(c.calls, 0); /* never from inside the call */
  run();
  CHECK_EQ(c.calls, 1);
  CHECK_EQ(c.status, 0);
  if (c.status == 0) {
    uv_os_fd_t fd;
    CHECK_EQ(uv_fileno(&c.stream.h.handle, &fd), 0);
    CHECK_EQ(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, &ol), 0);
    CHECK(one != 0);
    CHECK(c.stream.ops->set_user_timeout != NULL);
    snprintf(want, sizeof(want),
             family == AF_INET6 ? "[::1]:%d" : "127.0.0.1:%d", port);
    exchange(&c, lfd, want);
  }
  CHECK_EQ(c.calls, 1);
  close(lfd);
}

static void test_tcp_ipv4(void) { connect_tcp_and_talk(AF_INET); }
static void test_tcp_ipv6(void) { connect_tcp_and_talk(AF_INET6); }

static void connect_unix_and_talk(const char *path, size_t len) {
  client_t c;
  char want[64];
  int lfd = bind_unix(path, len, 16);
  client_init(&c);
  c.cancel_in_cb = 1;
  CHECK_EQ(
      uvg__connect_unix(&c.req, sched, path, len, 1000, &c.stream, on_connect),
      0);
  CHECK_EQ(c.calls, 0);
  run();
  CHECK_EQ(c.calls, 1);
  CHECK_EQ(c.status, 0);
  /* a unix client is named by the peer's credentials: here, ourselves */
  snprintf(want, sizeof(want), "unix:pid=%d,uid=%u", (int)getpid(),
           (unsigned)getuid());
  if (c.status == 0) exchange(&c, lfd, want);
  CHECK_EQ(c.calls, 1);
  close(lfd);
}

static void test_unix_path(void) {
  char path[108];
  int n = snprintf(path, sizeof(path), "/tmp/uvg-connect-test-%d.sock",
                   (int)getpid());
  unlink(path);
  connect_unix_and_talk(path, (size_t)n);
  unlink(path);
}

/* An abstract name is its exact bytes: a name that is a prefix of the one
 * listened on is another name, with nothing listening on it. */
static void test_unix_abstract(void) {
  char name[64];
  client_t c;
  int n = snprintf(name, sizeof(name), "%cuvg-connect-test-%d", '\0',
                   (int)getpid());
  connect_unix_and_talk(name, (size_t)n);

  int lfd = bind_unix(name, (size_t)n, 16);
  client_init(&c);
  CHECK_EQ(uvg__connect_unix(&c.req, sched, name, (size_t)n - 1, 1000,
                             &c.stream, on_connect),
           0);
  run();
  CHECK_EQ(c.calls, 1);
  CHECK_EQ(c.status, UV_ECONNREFUSED);
  close(lfd);
}

/* ---- failures ---- */

static void test_tcp_refused(void) {
  struct sockaddr_storage ss;
  client_t c;
  int port;
  int lfd = listen_tcp(AF_INET, 16, &port);
  close(lfd); /* a port nothing listens on now */
  loopback(AF_INET, port, &ss);
  client_init(&c);
  CHECK_EQ(uvg__connect_tcp(&c.req, sched, (struct sockaddr *)&ss, 1000,
                            &c.stream, on_connect),
           0);
  run();
  CHECK_EQ(c.calls, 1);
  CHECK_EQ(c.status, UV_ECONNREFUSED);
  CHECK(c.stream.ops == NULL); /* nothing was opened */
}

static void test_unix_missing_and_refused(void) {
  char path[108];
  client_t c;
  int n = snprintf(path, sizeof(path), "/tmp/uvg-connect-test-%d.sock",
                   (int)getpid());
  unlink(path);
  client_init(&c);
  CHECK_EQ(uvg__connect_unix(&c.req, sched, path, (size_t)n, 1000, &c.stream,
                             on_connect),
           0);
  CHECK_EQ(c.calls, 0); /* known at once, still called back from the loop */
  run();
  CHECK_EQ(c.calls, 1);
  CHECK_EQ(c.status, UV_ENOENT);

  /* a socket file nothing listens on */
  int fd = bind_unix(path, (size_t)n, -1);
  client_init(&c);
  CHECK_EQ(uvg__connect_unix(&c.req, sched, path, (size_t)n, 1000, &c.stream,
                             on_connect),
           0);
  run();
  CHECK_EQ(c.calls, 1);
  CHECK_EQ(c.status, UV_ECONNREFUSED);
  close(fd);
  unlink(path);
}

/* A unix listener whose backlog is full refuses a non-blocking connect
 * with EAGAIN and leaves nothing pending: reported as it is. */
static void test_unix_backlog_full(void) {
  char name[64];
  struct sockaddr_un un;
  int fillers[8], nf = 0;
  client_t c;
  int n = snprintf(name, sizeof(name), "%cuvg-connect-full-%d", '\0',
                   (int)getpid());
  int lfd = bind_unix(name, (size_t)n, 0);
  socklen_t al = unix_addr(&un, name, (size_t)n);
  while (nf < 8) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    fillers[nf++] = fd;
    if (connect(fd, (struct sockaddr *)&un, al) != 0) {
      CHECK_EQ(errno, EAGAIN);
      break;
    }
  }
  client_init(&c);
  CHECK_EQ(uvg__connect_unix(&c.req, sched, name, (size_t)n, 1000, &c.stream,
                             on_connect),
           0);
  run();
  CHECK_EQ(c.calls, 1);
  CHECK_EQ(c.status, UV_EAGAIN);
  while (nf > 0) close(fillers[--nf]);
  close(lfd);
}

/* A TCP listener with backlog 0 whose queue is full: Linux drops the
 * SYNs that follow, so a connect to it stays pending until the client
 * gives up. Fills the queue and returns the listening socket. */
static int pending_listener(struct sockaddr_storage *ss, int *fillers, int nf) {
  int port;
  int lfd = listen_tcp(AF_INET, 0, &port);
  loopback(AF_INET, port, ss);
  for (int i = 0; i < nf; i++) {
    fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    connect(fillers[i], (struct sockaddr *)ss, sizeof(struct sockaddr_in));
  }
  /* the first one completes and fills the queue */
  struct pollfd p = {fillers[0], POLLOUT, 0};
  CHECK_EQ(poll(&p, 1, 1000), 1);
  return lfd;
}

static void test_timeout(void) {
  struct sockaddr_storage ss;
  int fillers[3];
  client_t c;
  int lfd = pending_listener(&ss, fillers, 3);
  client_init(&c);
  CHECK_EQ(uvg__connect_tcp(&c.req, sched, (struct sockaddr *)&ss, 100,
                            &c.stream, on_connect),
           0);
  uint64_t ms = run();
  CHECK_EQ(c.calls, 1);
  CHECK_EQ(c.status, UV_ETIMEDOUT);
  CHECK(ms >= 90 && ms < 3000); /* ours: the kernel gives up after minutes */
  CHECK(c.stream.ops == NULL);
  for (int i = 0; i < 3; i++) close(fillers[i]);
  close(lfd);
}

/* ---- cancelling ---- */

static void test_cancel_in_progress(void) {
  struct sockaddr_storage ss;
  int fillers[3];
  client_t c;
  int lfd = pending_listener(&ss, fillers, 3);
  client_init(&c);
  CHECK_EQ(uvg__connect_tcp(&c.req, sched, (struct sockaddr *)&ss, 0, &c.stream,
                            on_connect),
           0);
  for (int i = 0; i < 5; i++) uv_run(&loop, UV_RUN_NOWAIT);
  CHECK_EQ(c.calls, 0); /* still connecting */
  uvg__connect_cancel(&c.req);
  uvg__connect_cancel(&c.req); /* twice: still one callback */
  CHECK_EQ(c.calls, 0);        /* never from inside cancel */
  run();
  CHECK_EQ(c.calls, 1);
  CHECK_EQ(c.status, UV_ECANCELED);
  CHECK(c.stream.ops == NULL); /* the caller's stream is untouched */
  CHECK(c.stream.cbs == &stream_cbs);
  uvg__connect_cancel(&c.req); /* after the callback: a no-op */
  run();
  CHECK_EQ(c.calls, 1);
  for (int i = 0; i < 3; i++) close(fillers[i]);
  close(lfd);
}

/* A unix connect succeeds inside connect(), but the callback has not run
 * yet: cancelling then still reports UV_ECANCELED, and the socket is
 * closed, as the server end sees. */
static void test_cancel_after_connected(void) {
  char name[64];
  client_t c;
  char buf[4];
  int n = snprintf(name, sizeof(name), "%cuvg-connect-cancel-%d", '\0',
                   (int)getpid());
  int lfd = bind_unix(name, (size_t)n, 16);
  client_init(&c);
  CHECK_EQ(uvg__connect_unix(&c.req, sched, name, (size_t)n, 0, &c.stream,
                             on_connect),
           0);
  uvg__connect_cancel(&c.req);
  CHECK_EQ(c.calls, 0);
  run();
  CHECK_EQ(c.calls, 1);
  CHECK_EQ(c.status, UV_ECANCELED);
  CHECK(c.stream.ops == NULL);
  int sfd = readable(lfd) ? accept(lfd, NULL, NULL) : -1;
  CHECK(sfd >= 0);
  CHECK(readable(sfd) && read(sfd, buf, sizeof(buf)) == 0);
  if (sfd >= 0) close(sfd);
  close(lfd);
}

/* ---- the request may be reused or freed from its callback ---- */

typedef struct {
  client_t *c;
  struct sockaddr_storage *next; /* connect here from the callback */
  int first_status;
} retry_t;
static retry_t retry;

static void on_connect_retry(uvg__connect_t *req, int status) {
  client_t *c = uvg__container_of(req, client_t, req);
  if (retry.next != NULL) {
    retry.first_status = status;
    struct sockaddr_storage *a = retry.next;
    retry.next = NULL;
    CHECK_EQ(uvg__connect_tcp(req, sched, (struct sockaddr *)a, 1000,
                              &c->stream, on_connect),
             0);
    return;
  }
  on_connect(req, status);
}

static void on_connect_free(uvg__connect_t *req, int status) {
  CHECK_EQ(status, UV_ENOENT);
  free(uvg__container_of(req, client_t, req));
  retry.first_status = status;
}

static void test_reuse_and_free_in_callback(void) {
  struct sockaddr_storage refused, ok;
  client_t c;
  int port;
  int lfd = listen_tcp(AF_INET, 16, &port);
  loopback(AF_INET, port, &ok);
  int gone = listen_tcp(AF_INET, 16, &port); /* a port other than lfd's */
  close(gone);
  loopback(AF_INET, port, &refused);
  client_init(&c);
  retry.c = &c;
  retry.next = &ok;
  CHECK_EQ(uvg__connect_tcp(&c.req, sched, (struct sockaddr *)&refused, 1000,
                            &c.stream, on_connect_retry),
           0);
  run();
  CHECK_EQ(retry.first_status, UV_ECONNREFUSED);
  CHECK_EQ(c.calls, 1);
  CHECK_EQ(c.status, 0);
  if (c.status == 0) exchange(&c, lfd, NULL);
  close(lfd);

  /* freed from its callback (ASan checks nothing touches it after) */
  client_t *h = malloc(sizeof(*h));
  client_init(h);
  retry.first_status = 1;
  CHECK_EQ(uvg__connect_unix(&h->req, sched, "/nonexistent/uvg.sock", 21, 0,
                             &h->stream, on_connect_free),
           0);
  run();
  CHECK_EQ(retry.first_status, UV_ENOENT);
}

/* ---- arguments refused without a callback ---- */

static void test_bad_arguments(void) {
  client_t c;
  struct sockaddr_un un;
  char long_path[200];
  memset(long_path, 'a', sizeof(long_path));
  long_path[0] = '/';
  client_init(&c);
  unix_addr(&un, "/tmp/x", 6);
  CHECK_EQ(uvg__connect_tcp(&c.req, sched, (struct sockaddr *)&un, 0, &c.stream,
                            on_connect),
           UV_EINVAL);
  CHECK_EQ(uvg__connect_unix(&c.req, sched, "", 0, 0, &c.stream, on_connect),
           UV_EINVAL);
  CHECK_EQ(uvg__connect_unix(&c.req, sched, "/tmp/a\0b", 8, 0, &c.stream,
                             on_connect),
           UV_EINVAL);
  CHECK_EQ(uvg__connect_unix(&c.req, sched, long_path, 108, 0, &c.stream,
                             on_connect),
           UV_ENAMETOOLONG);
  long_path[0] = '\0';
  CHECK_EQ(uvg__connect_unix(&c.req, sched, long_path, 109, 0, &c.stream,
                             on_connect),
           UV_ENAMETOOLONG);
  run();
  CHECK_EQ(c.calls, 0);
}

/* ---- through an HTTP proxy (uvg__connect_tunnel) ---- */

static const char tunnel_req[] =
    "CONNECT svc.example:50051 HTTP/1.1\r\nHost: svc.example:50051\r\n\r\n";

/* Starts a tunnel to the listener `lfd` (the proxy, played by the test)
 * and runs the loop until the whole request has arrived there: returns
 * the proxy's end of the connection, the request in `got`. */
static int start_tunnel(client_t *c, int lfd, int port, uint64_t timeout_ms,
                        char *got, size_t cap) {
  struct sockaddr_storage ss;
  size_t n = 0;
  int sfd = -1;
  loopback(AF_INET, port, &ss);
  client_init(c);
  CHECK_EQ(uvg__connect_tunnel(&c->req, sched, (struct sockaddr *)&ss,
                               tunnel_req, strlen(tunnel_req), timeout_ms,
                               &c->stream, on_connect),
           0);
  got[0] = '\0';
  for (int i = 0; i < 400 && strstr(got, "\r\n\r\n") == NULL; i++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    struct pollfd p = {sfd < 0 ? lfd : sfd, POLLIN, 0};
    if (poll(&p, 1, 5) != 1) continue;
    if (sfd < 0) {
      sfd = accept(lfd, NULL, NULL);
      continue;
    }
    ssize_t r = read(sfd, got + n, cap - 1 - n);
    if (r <= 0) break;
    n += (size_t)r;
    got[n] = '\0';
  }
  CHECK_STR(got, tunnel_req);
  CHECK_EQ(c->calls, 0);
  return sfd;
}

/* Reads from the tunnel's stream until `want` bytes are in or 2 s pass
 * (bytes lost in the exchange fail the test, not hang it), then closes
 * it. Returns the bytes read. */
static size_t read_tunnel(client_t *c, size_t want) {
  c->want = want;
  CHECK_EQ(c->stream.ops->read_start(&c->stream), 0);
  for (int i = 0; i < 400 && c->got_len < want; i++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    poll(NULL, 0, 5);
  }
  if (c->closed == 0) c->stream.ops->close(&c->stream); /* on_read did not */
  run();
  CHECK_EQ(c->closed, 1);
  return c->got_len;
}

/* The proxy's 200 and the server's first bytes arrive together: the
 * stream's first read has those bytes, none of the answer. */
static void test_tunnel_keeps_tunnel_bytes(void) {
  char got[256];
  client_t c;
  int port, lfd = listen_tcp(AF_INET, 16, &port);
  int sfd = start_tunnel(&c, lfd, port, 1000, got, sizeof(got));
  const char ans[] =
      "HTTP/1.1 200 Connection established\r\nVia: t\r\n\r\npong";
  CHECK_EQ(write(sfd, ans, sizeof(ans) - 1), (ssize_t)sizeof(ans) - 1);
  run();
  CHECK_EQ(c.calls, 1);
  CHECK_EQ(c.status, 0);
  CHECK_STR(c.req.detail, "");
  if (c.status == 0) {
    CHECK_EQ(read_tunnel(&c, 4), 4);
    CHECK(memcmp(c.got, "pong", 4) == 0);
  }
  close(sfd);
  close(lfd);
}

/* The answer in pieces, as a slow proxy sends it. */
static void test_tunnel_answer_in_pieces(void) {
  char got[256];
  client_t c;
  int port, lfd = listen_tcp(AF_INET, 16, &port);
  int sfd = start_tunnel(&c, lfd, port, 1000, got, sizeof(got));
  const char *pieces[] = {"HTTP/1.1 2", "00 OK\r", "\n\r", "\nxy"};
  for (int i = 0; i < 4; i++) {
    ssize_t len = (ssize_t)strlen(pieces[i]);
    CHECK_EQ(write(sfd, pieces[i], (size_t)len), len);
    for (int k = 0; k < 5; k++) uv_run(&loop, UV_RUN_NOWAIT);
    if (i < 3) CHECK_EQ(c.calls, 0);
  }
  run();
  CHECK_EQ(c.calls, 1);
  CHECK_EQ(c.status, 0);
  if (c.status == 0) {
    CHECK_EQ(read_tunnel(&c, 2), 2);
    CHECK(memcmp(c.got, "xy", 2) == 0);
  }
  close(sfd);
  close(lfd);
}

/* Answers `ans` (n bytes; then closes with close_after) and expects the
 * connect to fail with `status` and `detail`. */
static void tunnel_fails(const char *ans, size_t n, int close_after, int status,
                         const char *detail) {
  char got[256];
  client_t c;
  int port, lfd = listen_tcp(AF_INET, 16, &port);
  int sfd = start_tunnel(&c, lfd, port, 1000, got, sizeof(got));
  if (n > 0) CHECK_EQ(write(sfd, ans, n), (ssize_t)n);
  if (close_after) shutdown(sfd, SHUT_WR);
  run();
  CHECK_EQ(c.calls, 1);
  CHECK_EQ(c.status, status);
  CHECK_STR(c.req.detail, detail);
  CHECK(c.stream.ops == NULL); /* nothing was opened */
  /* and the proxy sees the client's socket closed */
  char buf[64];
  CHECK(readable(sfd) && read(sfd, buf, sizeof(buf)) <= 0);
  close(sfd);
  close(lfd);
}

static void test_tunnel_refused(void) {
  const char a[] = "HTTP/1.1 407 Proxy Authentication Required\r\n"
                   "Proxy-Authenticate: Basic realm=\"x\"\r\n\r\n";
  tunnel_fails(a, sizeof(a) - 1, 0, UV_EPROTO,
               "answered 407 Proxy Authentication Required");
  const char b[] = "HTTP/1.0 502\r\n\r\n";
  tunnel_fails(b, sizeof(b) - 1, 0, UV_EPROTO, "answered 502");
  /* 1xx is not the tunnel either */
  const char d[] = "HTTP/1.1 100 Continue\r\n\r\n";
  tunnel_fails(d, sizeof(d) - 1, 0, UV_EPROTO, "answered 100 Continue");
  /* the proxy's control characters stay out of the message */
  const char e[] = "HTTP/1.1 500 Bad\x1b[31m\r\n\r\n";
  tunnel_fails(e, sizeof(e) - 1, 0, UV_EPROTO, "answered 500 Bad?[31m");
}

static void test_tunnel_not_http(void) {
  const char a[] = "SSH-2.0-OpenSSH_9.2\r\n\r\n";
  tunnel_fails(a, sizeof(a) - 1, 0, UV_EPROTO,
               "answered CONNECT with something other than HTTP/1.x: "
               "\"SSH-2.0-OpenSSH_9.2\"");
  /* a header block without end */
  static char big[9000];
  memset(big, 'a', sizeof(big));
  memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 20);
  tunnel_fails(big, sizeof(big), 0, UV_EPROTO,
               "answered CONNECT with a header block over 8192 bytes");
}

static void test_tunnel_closed_by_proxy(void) {
  tunnel_fails(NULL, 0, 1, UV_EPROTO,
               "closed the connection without answering CONNECT");
  const char a[] = "HTTP/1.1 200 OK\r\n";
  tunnel_fails(a, sizeof(a) - 1, 1, UV_EPROTO,
               "closed the connection in the middle of its answer to CONNECT");
}

/* A proxy that takes the request and never answers: the timeout covers
 * the exchange too. */
static void test_tunnel_timeout(void) {
  char got[256];
  client_t c;
  int port, lfd = listen_tcp(AF_INET, 16, &port);
  uint64_t t0 = uv_hrtime();
  int sfd = start_tunnel(&c, lfd, port, 150, got, sizeof(got));
  run();
  uint64_t ms = (uv_hrtime() - t0) / 1000000;
  CHECK_EQ(c.calls, 1);
  CHECK_EQ(c.status, UV_ETIMEDOUT);
  CHECK_STR(c.req.detail, "did not answer CONNECT in time");
  CHECK(ms >= 140 && ms < 3000);
  CHECK(c.stream.ops == NULL);
  close(sfd);
  close(lfd);
}

static void test_tunnel_cancel(void) {
  char got[256], buf[8];
  client_t c;
  int port, lfd = listen_tcp(AF_INET, 16, &port);
  int sfd = start_tunnel(&c, lfd, port, 0, got, sizeof(got));
  uvg__connect_cancel(&c.req);
  CHECK_EQ(c.calls, 0);
  /* an answer that arrives now changes nothing */
  CHECK_EQ(write(sfd, "HTTP/1.1 200 OK\r\n\r\n", 19), 19);
  run();
  CHECK_EQ(c.calls, 1);
  CHECK_EQ(c.status, UV_ECANCELED);
  CHECK(c.stream.ops == NULL);
  CHECK(readable(sfd) && read(sfd, buf, sizeof(buf)) <= 0);
  close(sfd);
  close(lfd);
}

static void test_tunnel_bad_arguments(void) {
  struct sockaddr_storage ss;
  client_t c;
  struct sockaddr_un un;
  loopback(AF_INET, 1, &ss);
  unix_addr(&un, "/tmp/x", 6);
  client_init(&c);
  CHECK_EQ(uvg__connect_tunnel(&c.req, sched, (struct sockaddr *)&ss, NULL, 5,
                               0, &c.stream, on_connect),
           UV_EINVAL);
  CHECK_EQ(uvg__connect_tunnel(&c.req, sched, (struct sockaddr *)&ss, "x", 0,
                               0, &c.stream, on_connect),
           UV_EINVAL);
  CHECK_EQ(uvg__connect_tunnel(&c.req, sched, (struct sockaddr *)&un, "x", 1,
                               0, &c.stream, on_connect),
           UV_EINVAL);
  run();
  CHECK_EQ(c.calls, 0);
}

int main(void) {
  /* libuv opens its process-wide descriptors with the first loop */
  CHECK_EQ(uv_loop_init(&loop), 0);
  CHECK_EQ(uv_loop_close(&loop), 0);
  int fds = count_open_fds();
  CHECK_EQ(uv_loop_init(&loop), 0);
  CHECK_EQ(uvg__sched_acquire(&loop, &sched), 0);
  RUN(test_tcp_ipv4);
  RUN(test_tcp_ipv6);
  RUN(test_unix_path);
  RUN(test_unix_abstract);
  RUN(test_tcp_refused);
  RUN(test_unix_missing_and_refused);
  RUN(test_unix_backlog_full);
  RUN(test_timeout);
  RUN(test_cancel_in_progress);
  RUN(test_cancel_after_connected);
  RUN(test_reuse_and_free_in_callback);
  RUN(test_bad_arguments);
  RUN(test_tunnel_keeps_tunnel_bytes);
  RUN(test_tunnel_answer_in_pieces);
  RUN(test_tunnel_refused);
  RUN(test_tunnel_not_http);
  RUN(test_tunnel_closed_by_proxy);
  RUN(test_tunnel_timeout);
  RUN(test_tunnel_cancel);
  RUN(test_tunnel_bad_arguments);
  uvg__sched_release(sched);
  CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ(uv_loop_close(&loop), 0);
  /* every socket was closed (libuv's own descriptors go with the loop) */
  CHECK_EQ(count_open_fds(), fds);
  TEST_EXIT();
}

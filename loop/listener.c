#include "listener.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define BACKOFF_FIRST 5
#define BACKOFF_MAX 1000
#define ACCEPTS_PER_WAKEUP 64 /* then let other handles run */

static void on_readable(uv_poll_t *h, int status, int events);

static void on_backoff_over(uvg__timer_t *t) {
  uvg__listener_t *l = uvg__container_of(t, uvg__listener_t, backoff);
  uvg__sched_unhold(t->sched);
  uv_poll_start(&l->poll, UV_READABLE, on_readable);
  /* The waiting connections made the socket readable long ago and epoll
   * will not say so again: try now. */
  on_readable(&l->poll, 0, UV_READABLE);
}

static void on_readable(uv_poll_t *h, int status, int events) {
  uvg__listener_t *l = uvg__container_of(h, uvg__listener_t, poll);
  (void)status;
  (void)events;
  for (int n = 0; n < ACCEPTS_PER_WAKEUP; n++) {
    int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      l->delay = 0;
      l->on_accept(l, fd);
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
      /* Leave the connections in the backlog and try again later, as
       * grpc-go's Serve does on temporary accept errors. */
      l->delay = l->delay ? l->delay * 2 : BACKOFF_FIRST;
      if (l->delay > BACKOFF_MAX) l->delay = BACKOFF_MAX;
      uvg__log(UVG_LOG_WARN, "accept: %s; pausing %llu ms", strerror(errno),
               (unsigned long long)l->delay);
      uv_poll_stop(&l->poll);
      /* With its socket unpolled and timers not keeping the loop alive, a
       * server with no connection open would let uv_run() return while it
       * is still listening. */
      uvg__sched_hold(l->backoff.sched);
      uvg__timer_start(&l->backoff, on_backoff_over, l->delay);
      return;
    }
    uvg__log(UVG_LOG_WARN, "accept: %s", strerror(errno));
    return;
  }
}

/* 1 if `un` names a socket file that nothing listens on any more (its
 * process exited without removing it): connecting is refused. A socket
 * something listens on, even with a full backlog (EAGAIN), or a path that
 * is not a socket, is not stale. A live listener sees the probe as a
 * connection that closes at once. */
static int stale_socket_file(const struct sockaddr_un *un) {
  struct stat st;
  if (lstat(un->sun_path, &st) != 0 || !S_ISSOCK(st.st_mode)) return 0;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  int refused = connect(fd, (const struct sockaddr *)un, sizeof(*un)) != 0 &&
                errno == ECONNREFUSED;
  close(fd);
  return refused;
}

int uvg__listener_open(uvg__sched_t *sched, uvg__listener_t *l,
                       const struct sockaddr *addr, const char *path, int *port,
                       unsigned flags,
                       void (*on_accept)(uvg__listener_t *l, int fd)) {
  struct sockaddr_un un;
  socklen_t len;
  int one = 1, err;
  l->is_unix = addr == NULL;
  l->delay = 0;
  l->on_accept = on_accept;
  uvg__timer_init(sched, &l->backoff);
  if (l->is_unix) {
    if (strlen(path) >= sizeof(un.sun_path)) return UV_ENAMETOOLONG;
    memset(&un, 0, sizeof(un));
    un.sun_family = AF_UNIX;
    strcpy(un.sun_path, path);
    addr = (const struct sockaddr *)&un;
    len = sizeof(un);
  } else {
    len = addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                      : sizeof(struct sockaddr_in);
  }
  l->fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (l->fd < 0) return -errno;
  if (!l->is_unix) setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  /* Before bind: the kernel lets a second socket share the port only if
   * every socket on it asked, all from the same user. */
  if ((flags & UVG__LISTEN_REUSEPORT) && !l->is_unix &&
      setsockopt(l->fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
    err = -errno;
    close(l->fd);
    return err;
  }
  int rc = bind(l->fd, addr, len);
  if (rc != 0 && errno == EADDRINUSE && l->is_unix && stale_socket_file(&un)) {
    /* A server restarting after a crash finds its old socket file. */
    unlink(un.sun_path);
    rc = bind(l->fd, addr, len);
  }
  if (rc != 0 || listen(l->fd, SOMAXCONN) != 0) {
    err = -errno;
    close(l->fd);
    return err;
  }
  l->path[0] = '\0';
  struct stat st;
  if (l->is_unix && lstat(un.sun_path, &st) == 0) {
    strcpy(l->path, un.sun_path);
    l->dev = st.st_dev;
    l->ino = st.st_ino;
  }
  if (port != NULL) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    *port = 0;
    if (!l->is_unix && getsockname(l->fd, (struct sockaddr *)&ss, &sl) == 0)
      *port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                            : ((struct sockaddr_in *)&ss)->sin_port);
  }
  if ((err = uv_poll_init_socket(sched->loop, &l->poll, l->fd)) != 0) {
    close(l->fd);
    return err;
  }
  uv_poll_start(&l->poll, UV_READABLE, on_readable);
  return 0;
}

static void on_poll_closed(uv_handle_t *h) {
  uvg__listener_t *l = uvg__container_of((uv_poll_t *)h, uvg__listener_t, poll);
  struct stat st;
  /* As grpc-go does; the next server on the path then needs no stale-file
   * check. A file someone put there since is not ours to remove. */
  if (l->path[0] != '\0' && lstat(l->path, &st) == 0 && st.st_dev == l->dev &&
      st.st_ino == l->ino)
    unlink(l->path);
  close(l->fd);
  l->on_close(l);
}

void uvg__listener_close(uvg__listener_t *l, void (*on_close)(uvg__listener_t *l)) {
  l->on_close = on_close;
  if (uvg__timer_armed(&l->backoff)) {
    uvg__timer_stop(&l->backoff);
    uvg__sched_unhold(l->backoff.sched);
  }
  uv_close((uv_handle_t *)&l->poll, on_poll_closed);
}

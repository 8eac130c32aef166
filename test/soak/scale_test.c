/*
 * Scale on one loop: a server holding CONNS idle client connections, then
 * STREAMS concurrent streams (SCONNS connections x PER_CONN streams), each
 * call with a deadline, all open at once and then all completed.
 *
 *   scale_test [CONNS SCONNS PER_CONN]
 *
 * Defaults: 10000 connections, 100 x 1000 streams (under AddressSanitizer
 * 1000 connections, 20 x 500 streams). The clients run in a forked child
 * with a loop of their own, so that each process stays under the hard
 * limit of open files, to which both raise RLIMIT_NOFILE. The server
 * process measures and prints RSS per idle connection, RSS per open
 * stream, and the time of a deadline timer's start and stop while every
 * call's deadline timer is pending.
 *
 * Asserts: every connection accepted and open at once, every stream open
 * at once on the server, and every call completed OK on both sides.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "soak.h"
#include "timer.h"
#include "uvgrpc.h"

#define LIMIT_MS 120000   /* the whole run, in either process */
#define CONNECTING 200    /* channels connecting at once: no SYN floods */
#define DEADLINE_MS 60000 /* of every held stream */
#define TIMER_OPS 200000

static int failures;
#define FAIL(...)                                 \
  do {                                            \
    fprintf(stderr, "scale: FAIL: " __VA_ARGS__); \
    fputc('\n', stderr);                          \
    failures++;                                   \
  } while (0)

static int conns = UNDER_ASAN ? 1000 : 10000;
static int sconns = UNDER_ASAN ? 20 : 100;
static int per_conn = UNDER_ASAN ? 500 : 1000;
static uv_loop_t *loop;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* This process's CPU time (user + system), which the machine's load does
 * not stretch the way it stretches wall time. */
static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < (rlim_t)conns + 200) {
    fprintf(stderr, "scale: RLIMIT_NOFILE %llu is too low for %d connections\n",
            (unsigned long long)rl.rlim_cur, conns);
    exit(77); /* skipped */
  }
}

/* The two processes talk in short lines over a socketpair. */
static int ctl_fd;
static void ctl_send(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static void ctl_send(const char *fmt, ...) {
  char line[128];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  if (write(ctl_fd, line, (size_t)n) != n) {
    perror("scale: control write");
    exit(1);
  }
}

static uv_pipe_t ctl_pipe;
static char ctl_buf[256];
static size_t ctl_len;
static void (*on_line)(const char *line);

static void ctl_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  (void)h;
  (void)hint;
  b->base = ctl_buf + ctl_len;
  b->len = sizeof(ctl_buf) - ctl_len - 1;
}

static void ctl_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  (void)s;
  (void)b;
  if (n < 0) {
    uv_read_stop(s);
    on_line(NULL); /* the other process is gone */
    return;
  }
  ctl_len += (size_t)n;
  ctl_buf[ctl_len] = '\0';
  char *nl;
  while ((nl = strchr(ctl_buf, '\n')) != NULL) {
    *nl = '\0';
    on_line(ctl_buf);
    size_t used = (size_t)(nl + 1 - ctl_buf);
    memmove(ctl_buf, nl + 1, ctl_len - used + 1);
    ctl_len -= used;
  }
}

static void ctl_start(void (*cb)(const char *line)) {
  on_line = cb;
  uv_pipe_init(loop, &ctl_pipe, 0);
  uv_pipe_open(&ctl_pipe, ctl_fd);
  uv_read_start((uv_stream_t *)&ctl_pipe, ctl_alloc, ctl_read);
}

static uv_timer_t limit_timer;

/* ---------------- the client process ---------------- */

static uvg_channel_t **chs;
static int c_next, c_connected, c_failed;
static int c_streams_ok, c_streams_bad, c_streams_ended;
static const uint8_t req[] = {1, 2, 3};

static void c_open_next(void);

static void c_unary_done(const uvg_status_t *st, const uint8_t *reply,
                         size_t len, void *ud) {
  (void)reply;
  (void)len;
  (void)ud;
  if (st->code == UVG_STATUS_OK) {
    c_connected++;
  } else {
    c_failed++;
    if (c_failed <= 5)
      fprintf(stderr, "scale: client: first call: %s %s\n",
              uvg_status_code_name(st->code), st->message ? st->message : "");
  }
  if (c_connected + c_failed == conns)
    ctl_send("idle %d %d %.3f\n", c_connected, c_failed, cpu_s());
  else
    c_open_next();
}

static void c_open_next(void) {
  if (c_next == conns) return;
  int i = c_next++;
  char target[48];
  snprintf(target, sizeof(target), "127.0.0.1:%d", (int)(intptr_t)chs[conns]);
  uvg_client_call_options_t o = {.timeout_ms = 30000, .wait_for_ready = 1};
  if (uvg_channel_new(loop, target, uvg_insecure_channel_credentials(), NULL,
                      &chs[i]) != 0 ||
      uvg_channel_unary(chs[i], "/scale.Scale/Ping", req, sizeof(req), &o,
                        c_unary_done, NULL) != 0) {
    FAIL("client: channel %d", i);
    exit(1);
  }
}

static double c_cpu_mark;

static void c_stream_status(uvg_client_call_t *call, const uvg_status_t *st,
                            const uvg_metadata_t *tr, size_t n, void *ud) {
  (void)call;
  (void)tr;
  (void)n;
  (void)ud;
  c_streams_ended++;
  if (st->code == UVG_STATUS_OK) {
    c_streams_ok++;
  } else if (++c_streams_bad <= 5) {
    fprintf(stderr, "scale: client: stream: %s %s\n",
            uvg_status_code_name(st->code), st->message ? st->message : "");
  }
  if (c_streams_ended == sconns * per_conn)
    ctl_send("done %d %d %.3f\n", c_streams_ok, c_streams_bad,
             cpu_s() - c_cpu_mark);
}

static const uvg_client_call_cbs_t stream_cbs = {.on_status = c_stream_status};

static void c_start_streams(void) {
  c_cpu_mark = cpu_s();
  uvg_client_call_options_t o = {.timeout_ms = DEADLINE_MS};
  for (int i = 0; i < sconns; i++)
    for (int k = 0; k < per_conn; k++) {
      uvg_client_call_t *call;
      if (uvg_client_call_start(chs[i], "/scale.Scale/Hold", &o, &stream_cbs,
                                NULL, &call) != 0) {
        FAIL("client: call_start");
        exit(1);
      }
    }
}

static void c_closed(uvg_channel_t *ch, void *ud) {
  (void)ch;
  (void)ud;
}

static void c_line(const char *line) {
  if (line == NULL || strcmp(line, "quit") == 0) {
    for (int i = 0; i < conns; i++) uvg_channel_close(chs[i], c_closed, NULL);
    uv_close((uv_handle_t *)&ctl_pipe, NULL);
    uv_close((uv_handle_t *)&limit_timer, NULL);
  } else if (strcmp(line, "streams") == 0) {
    c_start_streams();
  }
}

static void c_limit(uv_timer_t *t) {
  (void)t;
  fprintf(stderr, "scale: client: out of time\n");
  exit(1);
}

static int client_main(void) {
  char line[32];
  ssize_t n = read(ctl_fd, line, sizeof(line) - 1);
  if (n <= 0) return 1;
  line[n] = '\0';
  int port = atoi(line);
  loop = uv_default_loop();
  chs = calloc((size_t)conns + 1, sizeof(*chs));
  chs[conns] = (void *)(intptr_t)port;
  uv_timer_init(loop, &limit_timer);
  uv_timer_start(&limit_timer, c_limit, LIMIT_MS, 0);
  uv_unref((uv_handle_t *)&limit_timer);
  ctl_start(c_line);
  for (int i = 0; i < CONNECTING; i++) c_open_next();
  uv_run(loop, UV_RUN_DEFAULT);
  free(chs);
  return failures ? 1 : 0;
}

/* ---------------- the server process ---------------- */

static uvg_server_t *server;
static uvg_call_t **held;
static int nheld, s_done_ok, s_done_bad;
static long rss_base, rss_idle, rss_streams;
static double t_idle, t_streams;
/* what the client reported once its connections were idle */
static int idle_ok, idle_bad;
static double idle_cpu, idle_c_cpu;
static uv_timer_t settle_timer;
static void s_settled(uv_timer_t *t);
static double t_start, cpu_start;

static void s_ping(uvg_call_t *call, const uint8_t *msg, size_t len) {
  uvg_call_send(call, msg, len, 0, NULL, NULL);
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}

static void s_done(uvg_call_t *call, const uvg_status_t *st) {
  (void)call;
  if (strcmp(uvg_call_method(call), "/scale.Scale/Hold") != 0) return;
  if (st->code == UVG_STATUS_OK)
    s_done_ok++;
  else
    s_done_bad++;
}

static void noop_cb(uvg__timer_t *t) {
  (void)t;
}

/* Nanoseconds per start or stop of one timer among the pending ones.
 * `spread`: a due time at random within the deadlines already armed, so
 * that each start sifts into the middle of the heap; otherwise after all
 * of them, as a new call's deadline usually is. */
static double time_timer_ops(uvg__sched_t *sched, int spread) {
  uvg__timer_t t;
  uvg__timer_init(sched, &t);
  uint64_t x = 88172645463325252ULL;
  double t0 = now_s();
  for (int i = 0; i < TIMER_OPS; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    uvg__timer_start(&t, noop_cb,
                     spread ? 1000 + x % DEADLINE_MS : 2 * DEADLINE_MS);
    uvg__timer_stop(&t);
  }
  return (now_s() - t0) * 1e9 / (2.0 * TIMER_OPS);
}

static void measure_timers(void) {
  uvg__sched_t *sched;
  if (uvg__sched_acquire(loop, &sched) != 0) {
    FAIL("sched_acquire");
    return;
  }
  size_t pending = sched->heap_n;
  double last = time_timer_ops(sched, 0), mid = time_timer_ops(sched, 1);
  printf(
      "timer start or stop with %zu timers pending: %.0f ns (due after "
      "them all), %.0f ns (due among them); %d of each\n",
      pending, last, mid, TIMER_OPS);
  if ((int)pending < sconns * per_conn)
    FAIL("only %zu timers pending: the calls' deadlines are not armed",
         pending);
  uvg__sched_release(sched);
}

static void s_hold(uvg_call_t *call, const uint8_t *msg, size_t len) {
  (void)msg;
  (void)len;
  held[nheld++] = call;
  if (nheld < sconns * per_conn) return;
  t_streams = now_s() - t_start;
  double cpu = cpu_s() - cpu_start;
  rss_streams = vm_rss();
  uvg_server_stats_t st;
  uvg_server_get_stats(server, &st);
  printf("%d streams open at once on %d connections (%" PRIu64
         " calls open) "
         "after %.1f s (server CPU %.2f s): RSS %.1f MiB, %.0f bytes per open "
         "stream\n",
         nheld, sconns, st.calls_open, t_streams, cpu, rss_streams / 1048576.0,
         (double)(rss_streams - rss_idle) / nheld);
  if ((int)st.calls_open != nheld) FAIL("calls_open %" PRIu64, st.calls_open);
  measure_timers();
  for (int i = 0; i < nheld; i++)
    uvg_call_finish(held[i], UVG_STATUS_OK, NULL, NULL, 0);
}

static void s_nop(uvg_call_t *call, const uint8_t *msg, size_t len) {
  (void)call;
  (void)msg;
  (void)len;
}
static void s_nop_half(uvg_call_t *call) {
  (void)call;
}

static const uvg_method_t s_methods[] = {
    {.path = "/scale.Scale/Ping",
     .type = UVG_METHOD_UNARY,
     .on_call = s_ping,
     .on_done = s_done},
    {.path = "/scale.Scale/Hold",
     .type = UVG_METHOD_BIDI_STREAMING,
     .on_call = s_hold,
     .on_message = s_nop,
     .on_half_close = s_nop_half,
     .on_done = s_done},
};

static int child_done, client_ok = -1, client_bad = -1;

static void s_line(const char *line) {
  int a, b;
  double c_cpu;
  if (line == NULL) {
    child_done = 1;
    uvg_server_close(server, NULL, NULL);
    uv_close((uv_handle_t *)&ctl_pipe, NULL);
    uv_close((uv_handle_t *)&limit_timer, NULL);
    uv_close((uv_handle_t *)&settle_timer, NULL);
  } else if (sscanf(line, "idle %d %d %lf", &a, &b, &c_cpu) == 3) {
    t_idle = now_s() - t_start;
    idle_cpu = cpu_s() - cpu_start;
    idle_ok = a;
    idle_bad = b;
    idle_c_cpu = c_cpu;
    /* An idle connection gives memory back after a second without
     * streams: measure what it holds then. */
    uv_timer_start(&settle_timer, s_settled, 1500, 0);
  } else if (sscanf(line, "done %d %d %lf", &a, &b, &c_cpu) == 3) {
    client_ok = a;
    client_bad = b;
    printf(
        "client: %d streams OK, %d not, %.1f s after they started "
        "(client CPU %.2f s, server CPU %.2f s)\n",
        a, b, now_s() - t_start, c_cpu, cpu_s() - cpu_start);
    ctl_send("quit\n");
  }
}

static void s_settled(uv_timer_t *t) {
  int a = idle_ok, b = idle_bad;
  double cpu = idle_cpu, c_cpu = idle_c_cpu;
  (void)t;
  rss_idle = vm_rss();
  uvg_server_stats_t st;
  uvg_server_get_stats(server, &st);
  printf("%" PRIu64 " connections accepted, %" PRIu64
         " open, after %.1f s "
         "(server CPU %.2f s, client CPU %.2f s): RSS %.1f MiB, "
         "%.0f bytes per idle connection (base %.1f MiB)\n",
         st.connections_accepted, st.connections_open, t_idle, cpu, c_cpu,
         rss_idle / 1048576.0, (double)(rss_idle - rss_base) / conns,
         rss_base / 1048576.0);
  if (a != conns || b != 0)
    FAIL("client: %d of %d first calls OK, %d failed", a, conns, b);
  if ((int)st.connections_accepted != conns ||
      (int)st.connections_open != conns)
    FAIL("server: %" PRIu64 " connections accepted, %" PRIu64 " open of %d",
         st.connections_accepted, st.connections_open, conns);
  t_start = now_s();
  cpu_start = cpu_s();
  ctl_send("streams\n");
}

static void s_limit(uv_timer_t *t) {
  (void)t;
  FAIL("out of time (%d s): %d streams held, %d done", LIMIT_MS / 1000, nheld,
       s_done_ok + s_done_bad);
  ctl_send("quit\n");
  s_line(NULL);
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc == 4) {
    conns = atoi(argv[1]);
    sconns = atoi(argv[2]);
    per_conn = atoi(argv[3]);
  }
  if (conns < sconns || sconns < 1 || per_conn < 1) {
    fprintf(stderr, "usage: scale_test [CONNS SCONNS PER_CONN]\n");
    return 2;
  }
  raise_nofile();
  printf("scale: %d idle connections, then %d x %d streams%s\n", conns, sconns,
         per_conn, UNDER_ASAN ? " (AddressSanitizer)" : "");
  fflush(stdout);
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 1;
  pid_t pid = fork();
  if (pid < 0) return 1;
  if (pid == 0) {
    close(sv[0]);
    ctl_fd = sv[1];
    _exit(client_main());
  }
  close(sv[1]);
  ctl_fd = sv[0];

  loop = uv_default_loop();
  held = calloc((size_t)sconns * per_conn, sizeof(*held));
  uvg_server_options_t o;
  uvg_server_options_init(&o);
  o.max_concurrent_streams = (uint32_t)per_conn;
  int port = 0;
  if (uvg_server_new(loop, &o, &server) != 0 ||
      uvg_server_register(server, s_methods, 2) != 0 ||
      uvg_server_listen(server, "127.0.0.1:0",
                        uvg_insecure_server_credentials(), &port) != 0) {
    FAIL("server");
    kill(pid, SIGKILL);
    return 1;
  }
  rss_base = vm_rss();
  t_start = now_s();
  cpu_start = cpu_s();
  ctl_send("%d\n", port);
  uv_timer_init(loop, &limit_timer);
  uv_timer_start(&limit_timer, s_limit, LIMIT_MS, 0);
  uv_timer_init(loop, &settle_timer);
  ctl_start(s_line);
  uv_run(loop, UV_RUN_DEFAULT);

  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    FAIL("client process: status %d", status);
  int total = sconns * per_conn;
  if (nheld != total)
    FAIL("server: %d of %d streams open at once", nheld, total);
  if (s_done_ok != total || s_done_bad != 0)
    FAIL("server: %d streams done OK, %d not, of %d", s_done_ok, s_done_bad,
         total);
  if (client_ok != total || client_bad != 0)
    FAIL("client: %d streams OK, %d not, of %d", client_ok, client_bad, total);
  free(held);
  uv_loop_close(loop);
  printf("scale: %s\n", failures ? "FAILED" : "ok");
  return failures ? 1 : 0;
}

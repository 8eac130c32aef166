/*
 * embedded_server: a libuv program that does its own work and serves gRPC
 * on the same loop, as a daemon or a Node addon would embed uvgrpc.
 *
 *   embedded_server [--port N] [--lines-port M]
 *
 * On one loop, with no thread of uvgrpc's:
 *   - its own TCP service on --lines-port: each line sent is answered in
 *     capitals (plain uv_tcp_t, nothing of gRPC);
 *   - its own timer, ticking every 100 ms;
 *   - a gRPC server on --port: work.Work/Count answers at once from the
 *     counters above; work.Work/Hash hands the request to libuv's thread
 *     pool (uv_queue_work) and the worker thread gives the result back to
 *     the loop with uvg_post(), the one uvgrpc function any thread may
 *     call, where the call is answered.
 *
 * Prints "listening on port N, lines on port M" and stops on SIGINT or
 * SIGTERM: the gRPC server shuts down, the program's own handles close,
 * and uv_run() returns when nothing is left.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uvgrpc.h>

#include "work.uvgrpc.h"

static uv_loop_t *loop;
static uvg_server_t *server;
static uvg_poster_t *poster;
static uv_tcp_t lines_listener;
static uv_timer_t ticker;
static uv_signal_t sigint, sigterm;
static int64_t lines, ticks, hashes;
static int stopping;

/* ---- the program's own work: a line service and a timer ---- */

typedef struct line_conn_s {
  uv_tcp_t tcp;
  struct line_conn_s *next, **prev; /* the open connections, for stopping */
  char line[256];
  size_t len;
} line_conn_t;

static line_conn_t *line_conns;

static void on_line_closed(uv_handle_t *h) {
  line_conn_t *c = (line_conn_t *)h;
  *c->prev = c->next;
  if (c->next != NULL) c->next->prev = c->prev;
  free(c);
}

static void on_line_written(uv_write_t *w, int status) {
  (void)status;
  free(w);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  static char slab[4096];
  (void)suggested;
  *buf = uv_buf_init(slab, sizeof(slab));
}

static void answer_line(line_conn_t *c) {
  typedef struct {
    uv_write_t req;
    char text[258];
  } wr_t;
  wr_t *w = malloc(sizeof(*w));
  if (w == NULL) return;
  for (size_t i = 0; i < c->len; i++)
    w->text[i] = (char)(c->line[i] >= 'a' && c->line[i] <= 'z' ? c->line[i] - 32
                                                               : c->line[i]);
  w->text[c->len] = '\n';
  uv_buf_t b = uv_buf_init(w->text, (unsigned)c->len + 1);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_line_written) != 0)
    free(w);
  lines++;
  c->len = 0;
}

static void on_line_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  line_conn_t *c = (line_conn_t *)s;
  if (n < 0) {
    uv_close((uv_handle_t *)s, on_line_closed);
    return;
  }
  for (ssize_t i = 0; i < n; i++) {
    if (buf->base[i] == '\n')
      answer_line(c);
    else if (c->len < sizeof(c->line))
      c->line[c->len++] = buf->base[i];
  }
}

static void on_line_conn(uv_stream_t *listener, int status) {
  if (status != 0) return;
  line_conn_t *c = calloc(1, sizeof(*c));
  if (c == NULL) return;
  uv_tcp_init(loop, &c->tcp);
  c->next = line_conns;
  c->prev = &line_conns;
  if (line_conns != NULL) line_conns->prev = &c->next;
  line_conns = c;
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0 ||
      uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_line_read) != 0)
    uv_close((uv_handle_t *)&c->tcp, on_line_closed);
}

static void on_tick(uv_timer_t *t) {
  (void)t;
  ticks++;
}

/* ---- work.Work/Count: answered on the loop ---- */

static void count(uvg_call_t *call, const Work__CountRequest *req) {
  (void)req;
  Work__CountReply reply = WORK__COUNT_REPLY__INIT;
  reply.lines = lines;
  reply.ticks = ticks;
  reply.hashes = hashes;
  work__Work__Count__reply(call, &reply);
}

/* ---- work.Work/Hash: computed on a worker, answered through uvg_post() */

/* One Hash call's job. The worker gets a copy of the request: the call may
 * end (its deadline, a client that goes away) while the worker still
 * reads. Three things end at their own time, all on the loop: the
 * worker's after_work callback, the posted result, and the call
 * (on_done). The last of them frees the job. */
typedef struct {
  uv_work_t work;
  uvg_call_t *call; /* NULL once the call is done */
  uint32_t rounds;
  uint64_t hash; /* written by the worker */
  int posted;    /* written by the worker: the result is on its way */
  int refs;
  size_t len;
  uint8_t data[];
} job_t;

static int jobs_running, server_closed;

static void job_unref(job_t *j) {
  if (--j->refs == 0) free(j);
}

/* The poster may close only when no worker can post any more. */
static void maybe_close_poster(void) {
  if (server_closed && jobs_running == 0 && poster != NULL) {
    uvg_poster_close(poster, NULL, NULL);
    poster = NULL;
  }
}

/* FNV-1a, `rounds` times over the data: CPU the loop should not spend. */
static uint64_t hash_rounds(const uint8_t *p, size_t n, uint32_t rounds) {
  uint64_t h = 14695981039346656037ull;
  for (uint32_t r = 0; r < rounds; r++)
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

/* On the loop thread, through uvg_post(): the worker's result. */
static void on_hash_result(void *arg, int status) {
  job_t *j = arg;
  if (status == 0 && j->call != NULL) {
    Work__HashReply reply = WORK__HASH_REPLY__INIT;
    reply.hash = j->hash;
    work__Work__Hash__reply(j->call, &reply);
    hashes++;
  }
  job_unref(j);
}

/* On a thread of libuv's pool: the only uvgrpc function it calls is
 * uvg_post(), which hands the result to the loop at once, without
 * waiting for this work item's after_work callback. */
static void hash_work(uv_work_t *w) {
  job_t *j = w->data;
  j->hash = hash_rounds(j->data, j->len, j->rounds);
  j->posted = uvg_post(poster, on_hash_result, j) == 0;
}

static void hash_after_work(uv_work_t *w, int status) {
  job_t *j = w->data;
  /* Not posted (the work was cancelled, or the poster refused): the
   * result's reference is dropped here, and the call answered. */
  int unposted = status != 0 || !j->posted;
  if (unposted && j->call != NULL)
    uvg_call_finish(j->call, UVG_STATUS_UNAVAILABLE, "no worker", NULL, 0);
  j->refs -= unposted; /* the result's, which will never run */
  job_unref(j);
  jobs_running--;
  maybe_close_poster();
}

static void hash(uvg_call_t *call, const Work__HashRequest *req) {
  job_t *j = malloc(sizeof(*j) + req->data.len);
  if (j == NULL) {
    uvg_call_finish(call, UVG_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL,
                    0);
    return;
  }
  j->work.data = j;
  j->call = call;
  j->rounds = req->rounds;
  j->posted = 0;
  j->refs = 3; /* after_work, the posted result, the call */
  j->len = req->data.len;
  if (j->len > 0) memcpy(j->data, req->data.data, j->len);
  if (uv_queue_work(loop, &j->work, hash_work, hash_after_work) != 0) {
    free(j);
    uvg_call_finish(call, UVG_STATUS_UNAVAILABLE, "no worker", NULL, 0);
    return;
  }
  jobs_running++;
  uvg_call_set_data(call, j);
}

/* The deadline passed or the client went away while the worker ran: the
 * call is finished now; the result, when it comes, finds no call. */
static void hash_cancel(uvg_call_t *call, const uvg_status_t *status) {
  (void)status;
  uvg_call_finish(call, UVG_STATUS_CANCELLED, NULL, NULL, 0);
}

static void hash_done(uvg_call_t *call, const uvg_status_t *status) {
  (void)status;
  job_t *j = uvg_call_get_data(call);
  if (j == NULL) return;
  j->call = NULL;
  job_unref(j);
}

static const work__Work__server_t work_impl = {
    .Count = {.on_call = count},
    .Hash = {.on_call = hash, .on_cancel = hash_cancel, .on_done = hash_done},
};

/* ---- starting and stopping ---- */

static void on_server_closed(uvg_server_t *s, void *data) {
  (void)s;
  (void)data;
  server_closed = 1;
  maybe_close_poster();
}

/* Stops everything; uv_run() returns once all of it has closed. */
static void on_signal(uv_signal_t *h, int signum) {
  (void)h;
  (void)signum;
  if (stopping++) return;
  uvg_server_shutdown(server, 1000, on_server_closed, NULL);
  uv_close((uv_handle_t *)&lines_listener, NULL);
  uv_close((uv_handle_t *)&ticker, NULL);
  uv_close((uv_handle_t *)&sigint, NULL);
  uv_close((uv_handle_t *)&sigterm, NULL);
  for (line_conn_t *c = line_conns; c != NULL; c = c->next)
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
      uv_close((uv_handle_t *)&c->tcp, on_line_closed);
}

int main(int argc, char **argv) {
  const char *port = "50052";
  int lines_port = 0;
  for (int i = 1; i < argc; i++) {
    if (strncmp(argv[i], "--port=", 7) == 0)
      port = argv[i] + 7;
    else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
      port = argv[++i];
    else if (strcmp(argv[i], "--lines-port") == 0 && i + 1 < argc)
      lines_port = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: %s [--port N] [--lines-port M]\n", argv[0]);
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  loop = uv_default_loop();

  struct sockaddr_in sa;
  uv_ip4_addr("127.0.0.1", lines_port, &sa);
  uv_tcp_init(loop, &lines_listener);
  int err = uv_tcp_bind(&lines_listener, (const struct sockaddr *)&sa, 0);
  if (err == 0)
    err = uv_listen((uv_stream_t *)&lines_listener, 64, on_line_conn);
  if (err != 0) {
    fprintf(stderr, "embedded_server: lines port: %s\n", uv_strerror(err));
    return 1;
  }
  int namelen = sizeof(sa);
  uv_tcp_getsockname(&lines_listener, (struct sockaddr *)&sa, &namelen);
  uv_timer_init(loop, &ticker);
  uv_timer_start(&ticker, on_tick, 100, 100);

  char addr[64];
  int bound;
  snprintf(addr, sizeof(addr), "127.0.0.1:%s", port);
  if ((err = uvg_poster_new(loop, &poster)) != 0 ||
      (err = uvg_server_new(loop, NULL, &server)) != 0 ||
      (err = work__Work__register(server, &work_impl, NULL)) != 0 ||
      (err = uvg_server_listen(server, addr, uvg_insecure_server_credentials(),
                               &bound)) != 0) {
    fprintf(stderr, "embedded_server: %s: %s\n", addr, uvg_strerror(err));
    return 1;
  }
  uv_signal_init(loop, &sigint);
  uv_signal_init(loop, &sigterm);
  uv_signal_start(&sigint, on_signal, SIGINT);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  printf("listening on port %d, lines on port %d\n", bound, ntohs(sa.sin_port));
  fflush(stdout);
  uv_run(loop, UV_RUN_DEFAULT);
  return uv_loop_close(loop) == 0 ? 0 : 1;
}

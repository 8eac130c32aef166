#include "fault_relay.h"

#include <stdlib.h>
#include <string.h>

struct fr_conn_s {
  fr_t *r;
  fr_conn_t *next;
  uv_tcp_t side[2]; /* [FR_UP]: the client's connection, read for bytes
                     * going up; [FR_DOWN]: the upstream's */
  uv_connect_t creq;
  uv_shutdown_t sreq[2];
  int handles; /* open handles */
  int open[2];
  int connected;
  int writes; /* in flight */
  int64_t sent[2];
  int faulty; /* the budget applies */
  int doomed; /* the budget is spent: kill once the writes are out */
  int killed;
  int closing;
};

typedef struct {
  uv_write_t w;
  fr_conn_t *c;
  char data[];
} wreq_t;

static char read_buf[64 * 1024];

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  (void)h;
  (void)hint;
  *b = uv_buf_init(read_buf, sizeof(read_buf));
}

static void on_handle_closed(uv_handle_t *h) {
  fr_conn_t *c = h->data;
  fr_t *r = c->r;
  r->open_handles--;
  if (--c->handles > 0) return;
  for (fr_conn_t **pp = &r->conns; *pp != NULL; pp = &(*pp)->next) {
    if (*pp == c) {
      *pp = c->next;
      break;
    }
  }
  free(c);
}

static void close_side(fr_conn_t *c, int d, int reset) {
  if (!c->open[d]) return;
  c->open[d] = 0;
  if (reset && uv_tcp_close_reset(&c->side[d], on_handle_closed) == 0) return;
  uv_close((uv_handle_t *)&c->side[d], on_handle_closed);
}

static void conn_close(fr_conn_t *c, int reset) {
  c->closing = 1;
  close_side(c, FR_UP, reset);
  close_side(c, FR_DOWN, reset);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)req;
  (void)status;
}

/* RST: both sockets reset. FIN: the relay sends no more either way and
 * drops what comes; each side is closed when its peer closes too. */
static void kill_conn(fr_conn_t *c) {
  fr_t *r = c->r;
  c->killed = 1;
  r->kills++;
  if (r->kill == FR_RST || !c->connected) {
    conn_close(c, 1);
    return;
  }
  for (int d = 0; d < 2; d++)
    if (uv_shutdown(&c->sreq[d], (uv_stream_t *)&c->side[d], on_shutdown) != 0)
      close_side(c, d, 0);
}

static void on_written(uv_write_t *w, int status) {
  wreq_t *q = (wreq_t *)w;
  fr_conn_t *c = q->c;
  free(q);
  c->writes--;
  if (c->closing || c->killed) return;
  if (status < 0) {
    conn_close(c, 1);
    return;
  }
  if (c->doomed && c->writes == 0) kill_conn(c);
}

static void forward(fr_conn_t *c, int d, const char *p, size_t n) {
  fr_t *r = c->r;
  if (c->faulty && r->budget >= 0 && d == r->dir) {
    int64_t left = r->budget - c->sent[d];
    if ((int64_t)n >= left) {
      n = (size_t)left;
      c->doomed = 1;
    }
  }
  if (n > 0) {
    wreq_t *q = malloc(sizeof(*q) + n);
    memcpy(q->data, p, n);
    q->c = c;
    uv_buf_t b = uv_buf_init(q->data, (unsigned)n);
    /* bytes read from side d go out on the other side */
    if (uv_write(&q->w, (uv_stream_t *)&c->side[!d], &b, 1, on_written) != 0) {
      free(q);
      conn_close(c, 1);
      return;
    }
    c->writes++;
    c->sent[d] += (int64_t)n;
    r->bytes[d] += (int64_t)n;
  }
  if (c->doomed && c->writes == 0) kill_conn(c);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  fr_conn_t *c = s->data;
  int d = s == (uv_stream_t *)&c->side[FR_UP] ? FR_UP : FR_DOWN;
  if (n == 0 || c->closing) return;
  if (c->killed) { /* FIN: drop the bytes; a side leaves when it ends */
    if (n < 0) close_side(c, d, 0);
    return;
  }
  if (c->doomed) return;
  if (n < 0) { /* a peer ended: so does the relay, both ways */
    conn_close(c, n != UV_EOF);
    return;
  }
  forward(c, d, b->base, (size_t)n);
}

static void on_connected(uv_connect_t *req, int status) {
  fr_conn_t *c = req->data;
  if (c->closing) return;
  if (status < 0) {
    conn_close(c, 1);
    return;
  }
  c->connected = 1;
  /* as the peers do: Nagle would hold a small write for the peer's
   * delayed ACK, 40 ms a case */
  uv_tcp_nodelay(&c->side[FR_UP], 1);
  uv_tcp_nodelay(&c->side[FR_DOWN], 1);
  uv_read_start((uv_stream_t *)&c->side[FR_UP], on_alloc, on_read);
  uv_read_start((uv_stream_t *)&c->side[FR_DOWN], on_alloc, on_read);
  if (c->faulty && c->r->budget == 0) {
    c->doomed = 1;
    kill_conn(c);
  }
}

static void on_connection(uv_stream_t *server, int status) {
  fr_t *r = server->data;
  if (status < 0) return;
  fr_conn_t *c = calloc(1, sizeof(*c));
  c->r = r;
  c->next = r->conns;
  r->conns = c;
  for (int d = 0; d < 2; d++) {
    uv_tcp_init(r->loop, &c->side[d]);
    c->side[d].data = c;
    c->open[d] = 1;
    c->handles++;
    r->open_handles++;
  }
  r->connections++;
  c->faulty = r->faulty == 0 || r->connections <= r->faulty;
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", r->upstream_port, &a);
  c->creq.data = c;
  if (uv_accept(server, (uv_stream_t *)&c->side[FR_UP]) != 0 ||
      uv_tcp_connect(&c->creq, &c->side[FR_DOWN], (struct sockaddr *)&a,
                     on_connected) != 0)
    conn_close(c, 1);
}

int fr_start(fr_t *r, uv_loop_t *loop) {
  struct sockaddr_in a;
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  r->loop = loop;
  r->conns = NULL;
  r->open_handles = 0;
  uv_ip4_addr("127.0.0.1", 0, &a);
  int rc = uv_tcp_init(loop, &r->listener);
  if (rc != 0) return rc;
  r->listener.data = r;
  r->open_handles++;
  if ((rc = uv_tcp_bind(&r->listener, (struct sockaddr *)&a, 0)) != 0 ||
      (rc = uv_listen((uv_stream_t *)&r->listener, 64, on_connection)) != 0) {
    fr_stop(r);
    return rc;
  }
  uv_tcp_getsockname(&r->listener, (struct sockaddr *)&ss, &len);
  r->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
  return 0;
}

static void on_listener_closed(uv_handle_t *h) {
  ((fr_t *)h->data)->open_handles--;
}

void fr_stop(fr_t *r) {
  if (!uv_is_closing((uv_handle_t *)&r->listener))
    uv_close((uv_handle_t *)&r->listener, on_listener_closed);
  for (fr_conn_t *c = r->conns; c != NULL; c = c->next) conn_close(c, 0);
}

#include "connect_proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
  READ_REQUEST, /* the request's header block is arriving */
  CONNECTING,   /* to the upstream */
  WAIT_FIRST,   /* coalesce: the upstream's first bytes carry the 200 */
  RELAY,
  DONE /* answered, stalled or failed: the client's bytes are dropped */
};

static const char ok_answer[] = "HTTP/1.1 200 Connection established\r\n\r\n";

struct cpx_conn_s {
  cpx_t *p;
  cpx_conn_t *next;
  uv_tcp_t down; /* the client's connection */
  uv_tcp_t up;   /* the upstream's, once connecting */
  uv_connect_t creq;
  int handles; /* open handles of this connection */
  int up_open;
  int closing;
  int state;
  char head[2048];
  size_t head_len;
  /* the client's bytes after its request, for the upstream */
  char *pending;
  size_t pending_len;
};

typedef struct {
  uv_write_t w;
  cpx_conn_t *c;
  int close_after;
  char data[];
} wreq_t;

/* Every read is consumed before the next: one buffer serves all. */
static char read_buf[64 * 1024];

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  (void)h;
  (void)hint;
  *b = uv_buf_init(read_buf, sizeof(read_buf));
}

static void on_handle_closed(uv_handle_t *h) {
  cpx_conn_t *c = h->data;
  cpx_t *p = c->p;
  p->open_handles--;
  if (--c->handles > 0) return;
  for (cpx_conn_t **pp = &p->conns; *pp != NULL; pp = &(*pp)->next) {
    if (*pp == c) {
      *pp = c->next;
      break;
    }
  }
  free(c->pending);
  free(c);
}

static void conn_close(cpx_conn_t *c) {
  if (c->closing) return;
  c->closing = 1;
  uv_close((uv_handle_t *)&c->down, on_handle_closed);
  if (c->up_open) uv_close((uv_handle_t *)&c->up, on_handle_closed);
}

static void on_written(uv_write_t *w, int status) {
  wreq_t *r = (wreq_t *)w;
  if (r->close_after || status < 0) conn_close(r->c);
  free(r);
}

/* Writes a then b, copied, as one write; closes the connection after it
 * with close_after. */
static void send_to(cpx_conn_t *c, uv_tcp_t *to, const char *a, size_t an,
                    const char *b, size_t bn, int close_after) {
  if (c->closing) return;
  wreq_t *r = malloc(sizeof(*r) + an + bn);
  if (r == NULL) {
    conn_close(c);
    return;
  }
  memcpy(r->data, a, an);
  if (bn > 0) memcpy(r->data + an, b, bn);
  r->c = c;
  r->close_after = close_after;
  uv_buf_t buf = uv_buf_init(r->data, (unsigned)(an + bn));
  if (uv_write(&r->w, (uv_stream_t *)to, &buf, 1, on_written) != 0) {
    free(r);
    conn_close(c);
  }
}

static void answer_and_close(cpx_conn_t *c, const char *text) {
  c->state = DONE;
  send_to(c, &c->down, text, strlen(text), NULL, 0, 1);
}

static void on_up_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  cpx_conn_t *c = s->data;
  if (n == 0) return;
  if (n < 0) {
    conn_close(c);
    return;
  }
  if (c->state == WAIT_FIRST) {
    c->state = RELAY;
    send_to(c, &c->down, ok_answer, strlen(ok_answer), b->base, (size_t)n, 0);
    return;
  }
  send_to(c, &c->down, b->base, (size_t)n, NULL, 0, 0);
}

static void on_up_connected(uv_connect_t *req, int status) {
  cpx_conn_t *c = req->data;
  if (c->closing) return;
  if (status < 0) {
    answer_and_close(c,
                     "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
    return;
  }
  c->p->tunnels++;
  uv_read_start((uv_stream_t *)&c->up, on_alloc, on_up_read);
  if (c->pending_len > 0)
    send_to(c, &c->up, c->pending, c->pending_len, NULL, 0, 0);
  if (c->p->coalesce) {
    c->state = WAIT_FIRST;
  } else {
    c->state = RELAY;
    send_to(c, &c->down, ok_answer, strlen(ok_answer), NULL, 0, 0);
  }
}

/* The value of the request's Proxy-Authorization field is `want`. */
static int has_auth(const char *head, const char *want) {
  static const char name[] = "\r\nproxy-authorization:";
  for (const char *l = head; (l = strstr(l, "\r\n")) != NULL; l += 2) {
    if (strncasecmp(l, name, sizeof(name) - 1) != 0) continue;
    const char *v = l + sizeof(name) - 1;
    while (*v == ' ') v++;
    size_t n = strcspn(v, "\r");
    return n == strlen(want) && memcmp(v, want, n) == 0;
  }
  return 0;
}

/* The upstream of "CONNECT host:port HTTP/1.1": loopback only. */
static int upstream_addr(cpx_t *p, const char *head,
                         struct sockaddr_storage *ss) {
  char host[64];
  int port;
  if (p->upstream_port != 0)
    return uv_ip4_addr("127.0.0.1", p->upstream_port, (struct sockaddr_in *)ss);
  if (sscanf(head, "CONNECT [%63[^]]]:%d ", host, &port) == 2)
    return strcmp(host, "::1") == 0
               ? uv_ip6_addr("::1", port, (struct sockaddr_in6 *)ss)
               : -1;
  if (sscanf(head, "CONNECT %63[^:]:%d ", host, &port) != 2) return -1;
  if (strcmp(host, "127.0.0.1") != 0 && strcmp(host, "localhost") != 0)
    return -1;
  return uv_ip4_addr("127.0.0.1", port, (struct sockaddr_in *)ss);
}

static void handle_request(cpx_conn_t *c) {
  cpx_t *p = c->p;
  struct sockaddr_storage ss;
  if (p->verbose) {
    printf("proxy: %.*s\n", (int)strcspn(c->head, "\r"), c->head);
    fflush(stdout);
  }
  switch (p->mode) {
    case CPX_STALL:
      c->state = DONE;
      return;
    case CPX_ANSWER:
      answer_and_close(c, p->answer);
      return;
    case CPX_TUNNEL:
      break;
  }
  if (strncmp(c->head, "CONNECT ", 8) != 0) {
    answer_and_close(c, "HTTP/1.1 405 Method Not Allowed\r\n\r\n");
    return;
  }
  if (p->require_auth != NULL && !has_auth(c->head, p->require_auth)) {
    answer_and_close(c,
                     "HTTP/1.1 407 Proxy Authentication Required\r\n"
                     "Proxy-Authenticate: Basic realm=\"test\"\r\n"
                     "Content-Length: 0\r\n\r\n");
    return;
  }
  if (upstream_addr(p, c->head, &ss) != 0) {
    answer_and_close(c, "HTTP/1.1 403 Forbidden\r\n\r\n");
    return;
  }
  uv_tcp_init(p->loop, &c->up);
  c->up.data = c;
  c->up_open = 1;
  c->handles++;
  p->open_handles++;
  c->creq.data = c;
  c->state = CONNECTING;
  if (uv_tcp_connect(&c->creq, &c->up, (struct sockaddr *)&ss,
                     on_up_connected) != 0)
    answer_and_close(c, "HTTP/1.1 502 Bad Gateway\r\n\r\n");
}

static void keep_pending(cpx_conn_t *c, const char *p, size_t n) {
  if (n == 0) return;
  char *np = realloc(c->pending, c->pending_len + n);
  if (np == NULL) return;
  memcpy(np + c->pending_len, p, n);
  c->pending = np;
  c->pending_len += n;
}

static void on_down_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  cpx_conn_t *c = s->data;
  if (n == 0) return;
  if (n < 0) {
    conn_close(c);
    return;
  }
  switch (c->state) {
    case RELAY:
    case WAIT_FIRST:
      send_to(c, &c->up, b->base, (size_t)n, NULL, 0, 0);
      return;
    case CONNECTING:
      keep_pending(c, b->base, (size_t)n);
      return;
    case DONE:
      return;
  }
  size_t room = sizeof(c->head) - 1 - c->head_len;
  size_t take = (size_t)n < room ? (size_t)n : room;
  memcpy(c->head + c->head_len, b->base, take);
  c->head_len += take;
  c->head[c->head_len] = '\0';
  char *end = strstr(c->head, "\r\n\r\n");
  if (end == NULL) {
    if (c->head_len == sizeof(c->head) - 1)
      answer_and_close(c,
                       "HTTP/1.1 431 Request Header Fields Too Large\r\n\r\n");
    return;
  }
  size_t hl = (size_t)(end + 4 - c->head);
  c->p->requests++;
  snprintf(c->p->request, sizeof(c->p->request), "%.*s", (int)hl, c->head);
  /* what followed the block, in this read and the part not copied */
  keep_pending(c, c->head + hl, c->head_len - hl);
  keep_pending(c, b->base + take, (size_t)n - take);
  c->head[hl] = '\0';
  handle_request(c);
}

static void on_connection(uv_stream_t *server, int status) {
  cpx_t *p = server->data;
  if (status < 0) return;
  cpx_conn_t *c = calloc(1, sizeof(*c));
  if (c == NULL) return;
  c->p = p;
  uv_tcp_init(p->loop, &c->down);
  c->down.data = c;
  c->handles = 1;
  p->open_handles++;
  c->next = p->conns;
  p->conns = c;
  if (uv_accept(server, (uv_stream_t *)&c->down) != 0) {
    conn_close(c);
    return;
  }
  p->connections++;
  uv_read_start((uv_stream_t *)&c->down, on_alloc, on_down_read);
}

int cpx_start(cpx_t *p, uv_loop_t *loop) {
  struct sockaddr_in a;
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  p->loop = loop;
  p->conns = NULL;
  p->open_handles = 0;
  p->connections = p->requests = p->tunnels = 0;
  p->request[0] = '\0';
  uv_ip4_addr("127.0.0.1", 0, &a);
  int rc = uv_tcp_init(loop, &p->listener);
  if (rc != 0) return rc;
  p->listener.data = p;
  p->open_handles++;
  if ((rc = uv_tcp_bind(&p->listener, (struct sockaddr *)&a, 0)) != 0 ||
      (rc = uv_listen((uv_stream_t *)&p->listener, 64, on_connection)) != 0) {
    cpx_stop(p);
    return rc;
  }
  uv_tcp_getsockname(&p->listener, (struct sockaddr *)&ss, &len);
  p->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
  return 0;
}

static void on_listener_closed(uv_handle_t *h) {
  cpx_t *p = h->data;
  p->open_handles--;
}

void cpx_stop(cpx_t *p) {
  if (!uv_is_closing((uv_handle_t *)&p->listener))
    uv_close((uv_handle_t *)&p->listener, on_listener_closed);
  for (cpx_conn_t *c = p->conns; c != NULL; c = c->next) conn_close(c);
  while (p->open_handles > 0) uv_run(p->loop, UV_RUN_ONCE);
}

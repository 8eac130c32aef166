/* A proxy's answer to CONNECT (loop/tunnel.c): where its header block
 * ends, fed whole or a byte at a time, with CR LF or bare LF line ends,
 * and what its status line says. */
#include "tunnel.h"

#include <uv.h>

#include "test.h"

/* Feeds `s` in pieces of `step` bytes; returns the bytes of `s` the
 * header took, or -1 when the block did not end. */
static long feed_all(uvg__tunnel_head_t *h, const char *s, size_t step) {
  size_t n = strlen(s), off = 0;
  memset(h, 0, sizeof(*h));
  while (off < n) {
    size_t k = n - off < step ? n - off : step;
    int done;
    size_t used = uvg__tunnel_head_feed(h, (const uint8_t *)s + off, k, &done);
    off += used;
    if (done) return (long)off;
    CHECK_EQ(used, k);
  }
  return -1;
}

static void test_block_end(void) {
  uvg__tunnel_head_t h;
  const char *ans = "HTTP/1.1 200 Connection established\r\n\r\nPRI * HTTP/2.0";
  size_t head = strlen(ans) - strlen("PRI * HTTP/2.0");
  for (size_t step = 1; step <= strlen(ans); step++)
    CHECK_EQ(feed_all(&h, ans, step), (long)head); /* never a tunnel byte */
  CHECK_EQ(h.len, head);

  /* fields before the blank line; bare LF ends lines too */
  CHECK_EQ(feed_all(&h, "HTTP/1.0 200 OK\r\nVia: x\r\nA: b\r\n\r\nrest", 3),
           33);
  CHECK_EQ(feed_all(&h, "HTTP/1.1 200 OK\nVia: x\n\nrest", 1), 24);
  CHECK_EQ(feed_all(&h, "HTTP/1.1 200 OK\n\r\nrest", 5), 18);
  /* a lone CR is no line end */
  CHECK_EQ(feed_all(&h, "HTTP/1.1 200 OK\r\rX\r\n", 1), -1);
  /* not finished */
  CHECK_EQ(feed_all(&h, "HTTP/1.1 200 OK\r\nVia: x\r\n", 4), -1);
  CHECK_EQ(h.len, 25);
}

static int status_of(const char *ans, char *reason, size_t cap) {
  uvg__tunnel_head_t h;
  const char *r;
  size_t rl;
  feed_all(&h, ans, 7);
  int code = uvg__tunnel_head_status(&h, &r, &rl);
  if (code >= 0) snprintf(reason, cap, "%.*s", (int)rl, r);
  return code;
}

static void test_status_line(void) {
  char r[128];
  CHECK_EQ(
      status_of("HTTP/1.1 200 Connection established\r\n\r\n", r, sizeof(r)),
      200);
  CHECK_STR(r, "Connection established");
  CHECK_EQ(status_of("HTTP/1.0 407 Proxy Authentication Required\r\n\r\n", r,
                     sizeof(r)),
           407);
  CHECK_STR(r, "Proxy Authentication Required");
  CHECK_EQ(status_of("HTTP/1.1 204\r\n\r\n", r, sizeof(r)), 204); /* no SP */
  CHECK_STR(r, "");
  CHECK_EQ(status_of("HTTP/1.1 502 \r\n\r\n", r, sizeof(r)), 502);
  CHECK_STR(r, "");
  CHECK_EQ(status_of("HTTP/1.1 999 Odd\n\n", r, sizeof(r)), 999);

  CHECK_EQ(status_of("HTTP/2 200 OK\r\n\r\n", r, sizeof(r)), -1);
  CHECK_EQ(status_of("ICY 200 OK\r\n\r\n", r, sizeof(r)), -1);
  CHECK_EQ(status_of("HTTP/1.1 20 OK\r\n\r\n", r, sizeof(r)), -1);
  CHECK_EQ(status_of("HTTP/1.1 2000 OK\r\n\r\n", r, sizeof(r)), -1);
  CHECK_EQ(status_of("HTTP/1.1 099 Low\r\n\r\n", r, sizeof(r)), -1);
  CHECK_EQ(status_of("HTTP/1.1  200 OK\r\n\r\n", r, sizeof(r)), -1);
  CHECK_EQ(status_of("\r\n\r\n", r, sizeof(r)), -1);
  CHECK_EQ(status_of("SSH-2.0-OpenSSH_9.2\r\n\r\n", r, sizeof(r)), -1);
}

/* A status line longer than the kept prefix still parses; the reason is
 * cut, and the block's end is still found. */
static void test_long_status_line(void) {
  char ans[400], r[128];
  memset(r, 0, sizeof(r));
  int n = snprintf(ans, sizeof(ans), "HTTP/1.1 503 ");
  while (n < 300) ans[n++] = 'x';
  snprintf(ans + n, sizeof(ans) - (size_t)n, "\r\n\r\n");
  CHECK_EQ(status_of(ans, r, sizeof(r)), 503);
  CHECK_EQ(strlen(r), sizeof(((uvg__tunnel_head_t *)0)->status) - 1 - 13);
  uvg__tunnel_head_t h;
  CHECK_EQ(feed_all(&h, ans, 64), 304);
}

int main(void) {
  RUN(test_block_end);
  RUN(test_status_line);
  RUN(test_long_status_line);
  TEST_EXIT();
}

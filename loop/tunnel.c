#include "tunnel.h"

#include <string.h>

size_t uvg__tunnel_head_feed(uvg__tunnel_head_t *h, const uint8_t *p, size_t n,
                             int *done) {
  *done = 0;
  for (size_t i = 0; i < n; i++) {
    uint8_t c = p[i];
    h->len++;
    if (!h->status_done) {
      if (c == '\n')
        h->status_done = 1;
      else if (c != '\r' && h->status_len < sizeof(h->status) - 1)
        h->status[h->status_len++] = (char)c;
    }
    if (c == '\n') {
      /* line_empty starts at 0: the status line, even an empty one, is
       * never the blank line that ends the block. */
      if (h->line_empty) {
        *done = 1;
        return i + 1;
      }
      h->line_empty = 1;
    } else if (c != '\r') {
      h->line_empty = 0;
    }
  }
  return n;
}

static int is_digit(char c) {
  return c >= '0' && c <= '9';
}

int uvg__tunnel_head_status(const uvg__tunnel_head_t *h, const char **reason,
                            size_t *reason_len) {
  const char *s = h->status;
  size_t n = h->status_len;
  /* RFC 9112 4: status-line = HTTP-version SP status-code SP
   * [ reason-phrase ]; the SP before an empty reason is often left out. */
  if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0 || !is_digit(s[7]) ||
      s[8] != ' ' || !is_digit(s[9]) || !is_digit(s[10]) || !is_digit(s[11]) ||
      s[9] == '0')
    return -1;
  if (n > 12 && s[12] != ' ') return -1;
  *reason = n > 13 ? s + 13 : s + n;
  *reason_len = n > 13 ? n - 13 : 0;
  return (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
}

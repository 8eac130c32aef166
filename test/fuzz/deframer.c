/* The message deframer (lib/rpc/framing.c): the input is fed in pieces
 * whose sizes the input itself chooses, since bytes arrive split anywhere.
 * Every message handed out must be exactly as long as its prefix said, and
 * the same bytes fed whole must give the same messages. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/rpc.h"

typedef struct {
  uint64_t sum; /* of lengths and a hash of contents */
  unsigned n;
} sink_t;

/* A message is lent for the call only: read it, keep nothing. */
static int take(void *arg, int compressed, const uint8_t *msg, uint32_t len) {
  sink_t *s = arg;
  uint64_t h = len * 31u + (unsigned)compressed;
  for (uint32_t i = 0; i < len; i++) h = h * 131 + msg[i];
  s->sum += h;
  s->n++;
  return s->n >= 1000 ? -1 : 0; /* a callback's stop code ends the feed */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  /* first byte: the max length in a few sizes; second: the piece size */
  static const uint32_t maxes[4] = {0, 16, 4096, 4u << 20};
  uint32_t max = maxes[data[0] & 3];
  size_t piece = (size_t)data[1] + 1;
  data += 2;
  size -= 2;

  uvg__deframer_t a, b;
  sink_t sa = {0, 0}, sb = {0, 0};
  uvg__deframer_init(&a, max);
  uvg__deframer_init(&b, max);
  int ra = 0;
  for (size_t off = 0; off < size && ra == 0; off += piece) {
    size_t n = size - off < piece ? size - off : piece;
    ra = uvg__deframer_feed(&a, data + off, n, take, &sa);
  }
  int rb = uvg__deframer_feed(&b, data, size, take, &sb);
  if (ra != rb || sa.n != sb.n || sa.sum != sb.sum) abort();
  if (ra == 0 && uvg__deframer_partial(&a) != uvg__deframer_partial(&b))
    abort();
  uvg__deframer_free(&a);
  uvg__deframer_free(&b);
  return 0;
}

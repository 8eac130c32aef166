/* grpc-timeout (lib/rpc/timeout.c): what parses must encode back to a
 * timeout at least as long (rounded up, never shortened to "none"), and
 * what we encode must parse back, never shorter unless capped. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/rpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint64_t ms;
  if (uvg__timeout_parse((const char *)data, size, &ms) == 0) {
    /* the header's grammar: 1-8 digits and a unit */
    if (size < 2 || size > 9) abort();
    char out[10];
    size_t n = uvg__timeout_encode(ms, out);
    uint64_t back;
    if (n == 0 || n > 9 || uvg__timeout_parse(out, n, &back) != 0) abort();
    if (back < ms) abort();
  }
  if (size >= 8) {
    uint64_t v;
    memcpy(&v, data, 8);
    char out[10];
    size_t n = uvg__timeout_encode(v, out);
    uint64_t back;
    if (n == 0 || n > 9 || uvg__timeout_parse(out, n, &back) != 0) abort();
    /* rounded up, or capped at the longest the header can say */
    const uint64_t longest = 99999999ull * 3600000;
    if (back < (v < longest ? v : longest)) abort();
  }
  return 0;
}

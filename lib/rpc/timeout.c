/* grpc-timeout (doc/PROTOCOL-HTTP2.md): TimeoutValue TimeoutUnit, where
 * TimeoutValue is a positive integer of at most 8 digits. */
#include <stdio.h>

#include "rpc.h"

int uvg__timeout_parse(const char *s, size_t n, uint64_t *ms) {
  if (n < 2 || n > 9) return UVG_EINVAL;
  uint64_t v = 0;
  for (size_t i = 0; i + 1 < n; i++) {
    if (s[i] < '0' || s[i] > '9') return UVG_EINVAL;
    v = v * 10 + (uint64_t)(s[i] - '0');
  }
  switch (s[n - 1]) {
    case 'H': *ms = v * 3600000; break;
    case 'M': *ms = v * 60000; break;
    case 'S': *ms = v * 1000; break;
    case 'm': *ms = v; break;
    case 'u': *ms = (v + 999) / 1000; break;
    case 'n': *ms = (v + 999999) / 1000000; break;
    default: return UVG_EINVAL;
  }
  return 0;
}

size_t uvg__timeout_encode(uint64_t ms, char out[10]) {
  static const struct {
    char unit;
    uint64_t per;
  } units[] = {{'m', 1}, {'S', 1000}, {'M', 60000}, {'H', 3600000}};
  for (size_t i = 0; i < 4; i++) {
    uint64_t v = ms / units[i].per + (ms % units[i].per != 0); /* round up */
    if (v <= 99999999 || i == 3) {
      if (v > 99999999) v = 99999999;
      return (size_t)snprintf(out, 10, "%llu%c", (unsigned long long)v,
                              units[i].unit);
    }
  }
  return 0;
}

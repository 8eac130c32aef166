/* grpc-message percent-decoding (lib/rpc/status.c): decoding never fails,
 * and decode(encode(x)) == x for any bytes without a NUL. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/rpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data;
  char *dec = uvg__percent_decode(s, size);
  if (dec == NULL) abort(); /* only out of memory may give NULL */
  if (strlen(dec) > size) abort();
  uvg__free(dec);

  size_t n = strnlen(s, size);
  char *enc = uvg__percent_encode(s, n);
  if (enc == NULL) abort();
  for (const char *p = enc; *p; p++)
    if (*p < 0x20 || *p > 0x7e) abort();
  char *back = uvg__percent_decode(enc, strlen(enc));
  if (back == NULL || strlen(back) != n || memcmp(back, s, n) != 0) abort();
  uvg__free(back);
  uvg__free(enc);
  return 0;
}

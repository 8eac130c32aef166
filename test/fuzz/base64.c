/* base64 and "-bin" metadata (lib/rpc/metadata.c). The first byte picks
 * the part: the decoder (and encode(decode(x)) round trip), or a received
 * header "key: value" as the transport hands it up (uvg__md_list_add_wire:
 * "-bin" values decoded, comma-joined values split). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/rpc.h"

static void base64(const char *s, size_t n) {
  size_t len;
  uint8_t *dec = uvg__base64_decode(s, n, &len);
  if (dec == NULL) {
    if (len != SIZE_MAX) abort();
  } else {
    size_t elen;
    char *enc = uvg__base64_encode(dec, len, &elen);
    if (enc == NULL || elen != uvg__base64_len(len)) abort();
    size_t len2;
    uint8_t *dec2 = uvg__base64_decode(enc, elen, &len2);
    if (dec2 == NULL || len2 != len || memcmp(dec, dec2, len) != 0) abort();
    uvg__free(dec2);
    uvg__free(enc);
    uvg__free(dec);
  }
}

static void wire(const uint8_t *p, size_t n) {
  /* key up to the first ':', the rest the value */
  const uint8_t *colon = memchr(p, ':', n);
  if (colon == NULL) return;
  size_t klen = (size_t)(colon - p);
  uvg__md_list_t l;
  uvg__md_list_init(&l);
  const uint8_t *v = colon + 1;
  size_t vlen = n - klen - 1;
  /* twice, so that a list with entries already in it is exercised too */
  for (int i = 0; i < 2; i++)
    if (uvg__md_list_add_wire(&l, (const char *)p, klen, v, vlen) != 0) break;
  for (size_t i = 0; i < l.n; i++)
    if (l.items[i].key == NULL) abort();
  char key[64];
  if (klen > 0 && klen < sizeof(key)) {
    memcpy(key, p, klen);
    key[klen] = 0;
    (void)uvg__md_list_get(&l, key);
    uvg__md_list_remove(&l, key);
  }
  (void)uvg__md_key_valid((const char *)p, klen);
  (void)uvg__md_key_reserved((const char *)p, klen);
  (void)uvg__md_value_valid(v, vlen);
  uvg__md_list_free(&l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  if (data[0] & 1)
    wire(data + 1, size - 1);
  else
    base64((const char *)data + 1, size - 1);
  return 0;
}

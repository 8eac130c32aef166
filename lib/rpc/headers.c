/* Turning metadata into HTTP/2 header fields for nghttp2. */
#include <string.h>

#include "rpc.h"

int uvg__nv_build(uvg__nv_block_t *b, const nghttp2_nv *fixed, size_t nfixed,
                  const uvg__md_list_t *md) {
  size_t n = nfixed + (md ? md->n : 0), extra = 0;
  for (size_t i = 0; md && i < md->n; i++) {
    const uvg_metadata_t *e = &md->items[i];
    if (uvg__md_key_is_bin(e->key, strlen(e->key)))
      extra += uvg__base64_len(e->value_len) + 1;
  }
  if (extra == 0 && n <= sizeof(b->inline_nv) / sizeof(b->inline_nv[0]))
    b->nv = b->inline_nv;
  else if ((b->nv = uvg__malloc(n * sizeof(nghttp2_nv) + extra)) == NULL)
    return UVG_ENOMEM;
  b->n = n;
  char *p = (char *)(b->nv + n);
  memcpy(b->nv, fixed, nfixed * sizeof(nghttp2_nv));
  for (size_t i = 0; md && i < md->n; i++) {
    const uvg_metadata_t *e = &md->items[i];
    nghttp2_nv *nv = &b->nv[nfixed + i];
    size_t klen = strlen(e->key);
    nv->name = (uint8_t *)e->key;
    nv->namelen = klen;
    nv->flags = NGHTTP2_NV_FLAG_NONE;
    if (uvg__md_key_is_bin(e->key, klen)) {
      size_t len;
      char *enc = uvg__base64_encode(e->value, e->value_len, &len);
      if (enc == NULL) {
        uvg__nv_free(b);
        return UVG_ENOMEM;
      }
      memcpy(p, enc, len + 1);
      uvg__free(enc);
      nv->value = (uint8_t *)p;
      nv->valuelen = len;
      p += len + 1;
    } else {
      nv->value = (uint8_t *)e->value;
      nv->valuelen = e->value_len;
    }
  }
  return 0;
}

void uvg__nv_free(uvg__nv_block_t *b) {
  if (b->nv != b->inline_nv) uvg__free(b->nv);
  b->nv = NULL;
  b->n = 0;
}

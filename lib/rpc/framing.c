/* Length-Prefixed-Message framing (doc/PROTOCOL-HTTP2.md, "Requests"). */
#include <string.h>

#include "rpc.h"

void uvg__deframer_init(uvg__deframer_t *d, uint32_t max_len) {
  memset(d, 0, sizeof(*d));
  d->max_len = max_len;
}

int uvg__deframer_partial(const uvg__deframer_t *d) {
  return d->hdr_have > 0;
}

void uvg__deframer_free(uvg__deframer_t *d) {
  uvg__free(d->msg);
  d->msg = NULL;
  d->hdr_have = 0;
}

void uvg__frame_header(uint8_t out[UVG__FRAME_HEADER_LEN], int compressed,
                       uint32_t len) {
  out[0] = compressed ? 1 : 0;
  out[1] = (uint8_t)(len >> 24);
  out[2] = (uint8_t)(len >> 16);
  out[3] = (uint8_t)(len >> 8);
  out[4] = (uint8_t)len;
}

int uvg__deframer_feed(uvg__deframer_t *d, const uint8_t *p, size_t n,
                       uvg__deframe_cb cb, void *arg) {
  while (n > 0) {
    if (d->hdr_have < UVG__FRAME_HEADER_LEN) {
      size_t take = UVG__FRAME_HEADER_LEN - d->hdr_have;
      if (take > n) take = n;
      memcpy(d->hdr + d->hdr_have, p, take);
      d->hdr_have += take;
      p += take;
      n -= take;
      if (d->hdr_have < UVG__FRAME_HEADER_LEN) return 0;
      d->msg_len = (uint32_t)d->hdr[1] << 24 | (uint32_t)d->hdr[2] << 16 |
                   (uint32_t)d->hdr[3] << 8 | d->hdr[4];
      if (d->msg_len > d->max_len) return UVG__E_TOO_LARGE;
      d->msg_have = 0;
      if (d->msg_len > 0 && (d->msg = uvg__malloc(d->msg_len)) == NULL)
        return UVG_ENOMEM;
    }
    size_t take = d->msg_len - d->msg_have;
    if (take > n) take = n;
    if (take > 0) memcpy(d->msg + d->msg_have, p, take);
    d->msg_have += (uint32_t)take;
    p += take;
    n -= take;
    if (d->msg_have < d->msg_len) return 0;
    uint8_t *msg = d->msg;
    int compressed = d->hdr[0] & 1;
    d->msg = NULL;
    d->hdr_have = 0;
    int rc = cb(arg, compressed, msg, d->msg_len);
    if (rc != 0) return rc;
  }
  return 0;
}

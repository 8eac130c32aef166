/* Length-Prefixed-Message framing (doc/PROTOCOL-HTTP2.md, "Requests"). */
#include <string.h>

#include "rpc.h"

/* The first buffer of a message that does not arrive whole. Up to this a
 * message gets one buffer of its exact size as soon as its bytes start to
 * arrive; beyond it the buffer doubles as bytes arrive. */
#define FIRST_CHUNK (16 * 1024)

void uvg__deframer_init(uvg__deframer_t *d, uint32_t max_len) {
  memset(d, 0, sizeof(*d));
  d->max_len = max_len;
}

uint8_t *uvg__deframer_take(uvg__deframer_t *d) {
  uint8_t *p = d->given;
  d->given = NULL;
  return p;
}

int uvg__deframer_partial(const uvg__deframer_t *d) {
  return d->hdr_have > 0;
}

void uvg__deframer_free(uvg__deframer_t *d) {
  uvg__free(d->msg);
  d->msg = NULL;
  d->msg_cap = 0;
  d->hdr_have = 0;
}

/* Makes room for `need` bytes of the message. The 5-byte prefix alone would
 * otherwise make the peer's declared length (up to the receive limit, per
 * stream) ours to hold, so the buffer follows the bytes received: never
 * more than twice them or FIRST_CHUNK, and never more than the declared
 * length. A message that is all here, or is small, gets its exact size at
 * once and is copied once; a larger one pays for the doubling with at most
 * about one more copy of its bytes in all. Returns 0 or UVG_ENOMEM (msg is
 * kept; uvg__deframer_free releases it). */
static int grow(uvg__deframer_t *d, uint32_t need) {
  uint64_t cap = (uint64_t)d->msg_cap * 2;
  if (cap < need) cap = need;
  if (cap < FIRST_CHUNK) cap = FIRST_CHUNK;
  if (cap > d->msg_len) cap = d->msg_len;
  uint8_t *p = d->msg == NULL ? uvg__malloc((size_t)cap)
                              : uvg__realloc(d->msg, (size_t)cap);
  if (p == NULL) return UVG_ENOMEM;
  d->msg = p;
  d->msg_cap = (uint32_t)cap;
  return 0;
}

size_t uvg__msg_room(size_t len, int enc, int copy) {
  return enc != UVG_COMPRESS_NONE ? uvg__compress_bound(len) : copy ? len : 0;
}

int uvg__msg_fill(uvg__msg_t *m, uint8_t *storage, const void *data, size_t len,
                  int enc, int copy) {
  memset(m, 0, sizeof(*m));
  if (enc != UVG_COMPRESS_NONE) {
    /* compressed straight into its own storage: no second copy */
    if (uvg__compress_into(enc, data, len, storage, &len) != 0 || len > UINT32_MAX)
      return UVG_ENOMEM;
    m->data = storage;
  } else if (copy) {
    if (len > 0) memcpy(storage, data, len);
    m->data = storage;
  } else {
    m->data = data;
  }
  m->len = len;
  m->head_len = UVG__FRAME_HEADER_LEN;
  uvg__frame_header(m->head, enc != UVG_COMPRESS_NONE, (uint32_t)len);
  return 0;
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
    }
    if (d->msg_have == 0 && n >= d->msg_len) {
      /* whole in this chunk, the usual case: lent, never copied here */
      d->hdr_have = 0;
      int rc = cb(arg, d->hdr[0] & 1, d->msg_len > 0 ? p : NULL, d->msg_len);
      if (rc != 0) return rc;
      p += d->msg_len;
      n -= d->msg_len;
      continue;
    }
    size_t take = d->msg_len - d->msg_have;
    if (take > n) take = n;
    if (d->msg_have + take > d->msg_cap &&
        grow(d, d->msg_have + (uint32_t)take) != 0)
      return UVG_ENOMEM;
    if (take > 0) memcpy(d->msg + d->msg_have, p, take);
    d->msg_have += (uint32_t)take;
    p += take;
    n -= take;
    if (d->msg_have < d->msg_len) return 0;
    uint8_t *msg = d->msg;
    d->msg = NULL;
    d->msg_cap = 0;
    d->hdr_have = 0;
    d->given = msg;
    int rc = cb(arg, d->hdr[0] & 1, msg, d->msg_len);
    uvg__free(d->given); /* unless the callback took it */
    d->given = NULL;
    if (rc != 0) return rc;
  }
  return 0;
}

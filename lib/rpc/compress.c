/* Message compression (doc/compression.md): gzip and deflate through zlib.
 * "deflate" is the zlib format (RFC 1950), as gRPC's C core sends it. */
#include <string.h>
#include <zlib.h>

#include "rpc.h"

static const struct {
  const char *name;
  int window_bits; /* zlib: 15 + 16 selects the gzip wrapper */
} encodings[] = {
    [UVG_COMPRESS_NONE] = {"identity", 0},
    [UVG_COMPRESS_GZIP] = {"gzip", 15 + 16},
    [UVG_COMPRESS_DEFLATE] = {"deflate", 15},
};

int uvg__encoding_parse(const char *s, size_t n) {
  for (int i = 0; i < (int)UVG__ARRAY_SIZE(encodings); i++)
    if (strlen(encodings[i].name) == n && memcmp(s, encodings[i].name, n) == 0)
      return i;
  return -1;
}

const char *uvg__encoding_name(int enc) { return encodings[enc].name; }

unsigned uvg__accept_encoding_parse(const char *s, size_t n) {
  unsigned mask = 1u << UVG_COMPRESS_NONE;
  while (n > 0) {
    size_t len = 0;
    while (len < n && s[len] != ',') len++;
    size_t b = 0, e = len;
    while (b < e && s[b] == ' ') b++;
    while (e > b && s[e - 1] == ' ') e--;
    int enc = uvg__encoding_parse(s + b, e - b);
    if (enc >= 0) mask |= 1u << enc;
    s += len;
    n -= len;
    if (n > 0) s++, n--;
  }
  return mask;
}

static voidpf z_alloc(voidpf opaque, uInt items, uInt size) {
  (void)opaque;
  return uvg__calloc(items, size);
}
static void z_free(voidpf opaque, voidpf p) {
  (void)opaque;
  uvg__free(p);
}

size_t uvg__compress_bound(size_t len) {
  /* deflateBound()'s worst case for stored blocks, plus the gzip wrapper's
   * 18 bytes, which zlib's bound already covers for the zlib wrapper. */
  return len + (len >> 12) + (len >> 14) + (len >> 25) + 13 + 18;
}

int uvg__compress_into(int enc, const uint8_t *in, size_t len, uint8_t *out,
                       size_t *out_len) {
  z_stream z;
  memset(&z, 0, sizeof(z));
  z.zalloc = z_alloc;
  z.zfree = z_free;
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED,
                   encodings[enc].window_bits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return UVG_ENOMEM;
  z.next_in = (Bytef *)(uintptr_t)in;
  z.avail_in = (uInt)len;
  z.next_out = out;
  z.avail_out = (uInt)uvg__compress_bound(len);
  int rc = deflate(&z, Z_FINISH);
  deflateEnd(&z);
  if (rc != Z_STREAM_END) return UVG_ENOMEM;
  *out_len = z.total_out;
  return 0;
}

int uvg__compress(int enc, const uint8_t *in, size_t len, uint8_t **out,
                  size_t *out_len) {
  uint8_t *buf = uvg__malloc(uvg__compress_bound(len));
  if (buf == NULL) return UVG_ENOMEM;
  int rc = uvg__compress_into(enc, in, len, buf, out_len);
  if (rc != 0) {
    uvg__free(buf);
    return rc;
  }
  *out = buf;
  return 0;
}

int uvg__decompress(int enc, const uint8_t *in, size_t len, size_t max,
                    uint8_t **out, size_t *out_len) {
  z_stream z;
  memset(&z, 0, sizeof(z));
  z.zalloc = z_alloc;
  z.zfree = z_free;
  if (inflateInit2(&z, encodings[enc].window_bits) != Z_OK) return UVG_ENOMEM;
  size_t cap = len * 4 + 64, have = 0;
  if (cap > max + 1) cap = max + 1;
  uint8_t *buf = uvg__malloc(cap);
  int rc = buf ? Z_OK : Z_MEM_ERROR;
  z.next_in = (Bytef *)(uintptr_t)in;
  z.avail_in = (uInt)len;
  while (rc == Z_OK) {
    if (have == cap) {
      /* Grow, but never past max + 1: a bomb stops at the limit. */
      if (cap > max) break;
      size_t ncap = cap * 2 > max + 1 ? max + 1 : cap * 2;
      uint8_t *nb = uvg__realloc(buf, ncap);
      if (nb == NULL) {
        rc = Z_MEM_ERROR;
        break;
      }
      buf = nb;
      cap = ncap;
    }
    z.next_out = buf + have;
    z.avail_out = (uInt)(cap - have);
    rc = inflate(&z, Z_NO_FLUSH);
    have = cap - z.avail_out;
    if (rc == Z_BUF_ERROR && z.avail_out != 0) break; /* truncated input */
    if (rc == Z_BUF_ERROR) rc = Z_OK;
  }
  inflateEnd(&z);
  int result = 0;
  if (have > max)
    result = UVG__E_TOO_LARGE;
  else if (rc == Z_MEM_ERROR)
    result = UVG_ENOMEM;
  else if (rc != Z_STREAM_END || z.avail_in != 0)
    result = UVG_EPROTO;
  if (result != 0) {
    uvg__free(buf);
    return result;
  }
  *out = buf;
  *out_len = have;
  return 0;
}

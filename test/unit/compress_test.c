/* gzip and deflate through lib/rpc/compress.c. */
#include <zlib.h>

#include "rpc/rpc.h"
#include "test.h"

static void test_round_trip(void) {
  static uint8_t in[100000];
  for (size_t i = 0; i < sizeof(in); i++) in[i] = (uint8_t)(i % 251 < 200 ? 'a' : i);
  for (int enc = UVG_COMPRESS_GZIP; enc <= UVG_COMPRESS_DEFLATE; enc++) {
    uint8_t *z, *out;
    size_t zlen, olen;
    CHECK_EQ(uvg__compress(enc, in, sizeof(in), &z, &zlen), 0);
    CHECK(zlen < sizeof(in) / 4);
    if (enc == UVG_COMPRESS_GZIP) CHECK(z[0] == 0x1f && z[1] == 0x8b);
    if (enc == UVG_COMPRESS_DEFLATE) CHECK_EQ(z[0] & 0x0f, 8); /* zlib CM */
    CHECK_EQ(uvg__decompress(enc, z, zlen, sizeof(in), &out, &olen), 0);
    CHECK_EQ(olen, sizeof(in));
    CHECK(memcmp(out, in, sizeof(in)) == 0);
    uvg__free(out);
    /* one byte under the size: refused, not truncated */
    CHECK_EQ(uvg__decompress(enc, z, zlen, sizeof(in) - 1, &out, &olen),
             UVG__E_TOO_LARGE);
    /* truncated and corrupted input */
    CHECK_EQ(uvg__decompress(enc, z, zlen / 2, sizeof(in), &out, &olen), UVG_EPROTO);
    z[zlen / 2] ^= 0x55;
    z[zlen / 3] ^= 0x55;
    CHECK_EQ(uvg__decompress(enc, z, zlen, sizeof(in), &out, &olen), UVG_EPROTO);
    uvg__free(z);
  }
}

static void test_empty_and_bomb(void) {
  uint8_t *z, *out;
  size_t zlen, olen;
  CHECK_EQ(uvg__compress(UVG_COMPRESS_GZIP, (const uint8_t *)"", 0, &z, &zlen), 0);
  CHECK_EQ(uvg__decompress(UVG_COMPRESS_GZIP, z, zlen, 10, &out, &olen), 0);
  CHECK_EQ(olen, 0);
  uvg__free(out);
  uvg__free(z);
  /* 64 MiB of zeros compresses to ~64 KiB; a 4 MiB limit stops it early */
  size_t big = 64u << 20;
  uint8_t *zeros = calloc(1, big);
  CHECK_EQ(uvg__compress(UVG_COMPRESS_GZIP, zeros, big, &z, &zlen), 0);
  free(zeros);
  CHECK(zlen < big / 500);
  CHECK_EQ(uvg__decompress(UVG_COMPRESS_GZIP, z, zlen, 4u << 20, &out, &olen),
           UVG__E_TOO_LARGE);
  uvg__free(z);
}

/* Incompressible input still fits the bound compress_into is given. */
static void test_bound_holds_for_random_data(void) {
  static uint8_t in[70000], out[80000];
  uint32_t x = 12345;
  for (size_t i = 0; i < sizeof(in); i++) in[i] = (uint8_t)((x = x * 1103515245 + 12345) >> 24);
  size_t sizes[] = {0, 1, 5, 100, 4096, 65536, sizeof(in)};
  for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++)
    for (int enc = UVG_COMPRESS_GZIP; enc <= UVG_COMPRESS_DEFLATE; enc++) {
      size_t n, olen;
      uint8_t *back;
      CHECK(uvg__compress_bound(sizes[k]) <= sizeof(out));
      CHECK_EQ(uvg__compress_into(enc, in, sizes[k], out, &n), 0);
      CHECK(n <= uvg__compress_bound(sizes[k]));
      CHECK_EQ(uvg__decompress(enc, out, n, sizes[k], &back, &olen), 0);
      CHECK(olen == sizes[k] && (olen == 0 || memcmp(back, in, olen) == 0));
      uvg__free(back);
    }
}

static void test_names(void) {
  CHECK_EQ(uvg__encoding_parse("gzip", 4), UVG_COMPRESS_GZIP);
  CHECK_EQ(uvg__encoding_parse("deflate", 7), UVG_COMPRESS_DEFLATE);
  CHECK_EQ(uvg__encoding_parse("identity", 8), UVG_COMPRESS_NONE);
  CHECK_EQ(uvg__encoding_parse("snappy", 6), -1);
  CHECK_EQ(uvg__encoding_parse("gzi", 3), -1);
  const char *list = "identity, deflate ,gzip,br";
  CHECK_EQ(uvg__accept_encoding_parse(list, strlen(list)), 7);
  CHECK_EQ(uvg__accept_encoding_parse("gzip", 4), 3);
  CHECK_EQ(uvg__accept_encoding_parse("", 0), 1);
  CHECK_STR(uvg__encoding_name(UVG_COMPRESS_GZIP), "gzip");
}

int main(void) {
  RUN(test_round_trip);
  RUN(test_empty_and_bomb);
  RUN(test_bound_holds_for_random_data);
  RUN(test_names);
  TEST_EXIT();
}

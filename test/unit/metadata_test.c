/* Metadata keys and values, base64 for "-bin" values, grpc-message
 * percent-encoding (doc/PROTOCOL-HTTP2.md), header blocks for nghttp2,
 * grpc-status parsing and the names of codes. */
#include <stdint.h>
#include <uv.h>

#include "rpc/rpc.h"
#include "test.h"

/* ---- base64 ---- */

static void check_b64_encode(const char *in, const char *want) {
  size_t n = 12345;
  char *out = uvg__base64_encode((const uint8_t *)in, strlen(in), &n);
  CHECK_STR(out, want);
  CHECK_EQ(n, strlen(want));
  uvg__free(out);
}

/* RFC 4648's vectors without their padding: PROTOCOL-HTTP2.md says
 * implementations "SHOULD emit un-padded values". */
static void test_base64_encode_rfc4648(void) {
  check_b64_encode("", "");
  check_b64_encode("f", "Zg");
  check_b64_encode("fo", "Zm8");
  check_b64_encode("foo", "Zm9v");
  check_b64_encode("foob", "Zm9vYg");
  check_b64_encode("fooba", "Zm9vYmE");
  check_b64_encode("foobar", "Zm9vYmFy");
  /* The two last characters of the standard alphabet. */
  static const uint8_t hi[] = {0xfb, 0xff, 0xbf};
  size_t n;
  char *out = uvg__base64_encode(hi, sizeof(hi), &n);
  CHECK_STR(out, "+/+/");
  uvg__free(out);
}

/* Decodes `in` and compares with `want` (want_len bytes). */
static void check_b64_decode(const char *in, const char *want, size_t want_len) {
  size_t n = 12345;
  uint8_t *out = uvg__base64_decode(in, strlen(in), &n);
  CHECK(out != NULL);
  CHECK_EQ(n, want_len);
  if (out != NULL && n == want_len) CHECK(memcmp(out, want, want_len) == 0);
  uvg__free(out);
}

static void check_b64_reject(const char *in) {
  size_t n = 0;
  uint8_t *out = uvg__base64_decode(in, strlen(in), &n);
  CHECK(out == NULL);
  CHECK_EQ(n, SIZE_MAX); /* malformed, not out of memory */
  if (out != NULL) fprintf(stderr, "  accepted \"%s\"\n", in);
  uvg__free(out);
}

static void test_base64_decode(void) {
  /* Padded. */
  check_b64_decode("", "", 0);
  check_b64_decode("Zg==", "f", 1);
  check_b64_decode("Zm8=", "fo", 2);
  check_b64_decode("Zm9v", "foo", 3);
  check_b64_decode("Zm9vYg==", "foob", 4);
  check_b64_decode("Zm9vYmE=", "fooba", 5);
  check_b64_decode("Zm9vYmFy", "foobar", 6);
  check_b64_decode("+/+/", "\xfb\xff\xbf", 3);
  /* Un-padded: "Implementations MUST accept padded and un-padded values". */
  check_b64_decode("Zg", "f", 1);
  check_b64_decode("Zm8", "fo", 2);
  check_b64_decode("Zm9vYg", "foob", 4);
  check_b64_decode("Zm9vYmE", "fooba", 5);

  /* Every byte value survives a round trip. */
  uint8_t all[256];
  for (int i = 0; i < 256; i++) all[i] = (uint8_t)i;
  for (size_t len = 0; len <= 256; len += 1) {
    size_t elen, dlen;
    char *enc = uvg__base64_encode(all, len, &elen);
    CHECK(enc != NULL);
    if (enc == NULL) continue;
    uint8_t *dec = uvg__base64_decode(enc, elen, &dlen);
    CHECK(dec != NULL && dlen == len && memcmp(dec, all, len) == 0);
    uvg__free(dec);
    CHECK(elen == 0 || enc[elen - 1] != '=');
    /* and with the padding another implementation may send */
    char padded[400];
    memcpy(padded, enc, elen);
    while (elen % 4 != 0) padded[elen++] = '=';
    dec = uvg__base64_decode(padded, elen, &dlen);
    CHECK(dec != NULL && dlen == len && memcmp(dec, all, len) == 0);
    uvg__free(dec);
    uvg__free(enc);
  }
}

static void test_base64_decode_rejects(void) {
  check_b64_reject("Z");         /* length % 4 == 1 */
  check_b64_reject("Zm9vY");
  check_b64_reject("Z===");      /* 1 character once the padding is gone */
  check_b64_reject("Zm9v!");
  check_b64_reject("Zm9*");      /* bad characters */
  check_b64_reject("Zm 9");
  check_b64_reject("Zm9\n");
  check_b64_reject("Zm-_");      /* URL-safe alphabet is not base64 here */
  check_b64_reject("Z=g=");      /* padding in the middle */
  check_b64_reject("Zg==Zg==");
  check_b64_reject("Zm\xc3\xa9");
}

/* ---- grpc-message percent-encoding ---- */

static void check_pct_encode(const char *in, size_t n, const char *want) {
  char *out = uvg__percent_encode(in, n);
  CHECK_STR(out, want);
  uvg__free(out);
}

static void test_percent_encode(void) {
  check_pct_encode("", 0, "");
  check_pct_encode("hello world", 11, "hello world");
  /* Every printable ASCII byte but '%' is kept, space and '~' included. */
  char printable[96], want[100];
  size_t k = 0, w = 0;
  for (int c = 0x20; c <= 0x7e; c++) {
    printable[k++] = (char)c;
    if (c == '%') {
      memcpy(want + w, "%25", 3);
      w += 3;
    } else {
      want[w++] = (char)c;
    }
  }
  want[w] = '\0';
  check_pct_encode(printable, k, want);
  check_pct_encode("50%", 3, "50%25");
  check_pct_encode("%%", 2, "%25%25");
  check_pct_encode("a\nb", 3, "a%0Ab");          /* control characters */
  check_pct_encode("\t\r", 2, "%09%0D");
  check_pct_encode("\x1f\x7f", 2, "%1F%7F");     /* just outside the range */
  check_pct_encode("a\0b", 3, "a%00b");          /* embedded NUL: n counts */
  /* UTF-8 is encoded byte by byte, uppercase hex. */
  check_pct_encode("caf\xc3\xa9", 5, "caf%C3%A9");
  check_pct_encode("\xe2\x82\xac 5", 5, "%E2%82%AC 5");
  check_pct_encode("\xff", 1, "%FF");
}

static void check_pct_decode(const char *in, const char *want) {
  char *out = uvg__percent_decode(in, strlen(in));
  CHECK_STR(out, want);
  uvg__free(out);
}

static void test_percent_decode(void) {
  check_pct_decode("", "");
  check_pct_decode("plain text", "plain text");
  check_pct_decode("50%25", "50%");
  check_pct_decode("%41", "A");
  check_pct_decode("x%41", "xA");
  check_pct_decode("caf%C3%A9", "caf\xc3\xa9");
  check_pct_decode("caf%c3%a9", "caf\xc3\xa9"); /* lowercase hex too */
  check_pct_decode("a%0Ab", "a\nb");
  /* Malformed sequences are kept as they are: decoding never fails. */
  check_pct_decode("%", "%");
  check_pct_decode("%4", "%4");
  check_pct_decode("%zz", "%zz");
  check_pct_decode("%4g", "%4g");
  check_pct_decode("%g4", "%g4");
  check_pct_decode("100%", "100%");
  check_pct_decode("ab%4", "ab%4");
  check_pct_decode("%%41", "%A");
  check_pct_decode("%%", "%%");
  check_pct_decode("% 41", "% 41");

  /* decode(encode(s)) == s for text with every kind of byte. */
  static const char *samples[] = {"", "ok", "100% done", "line\nbreak",
                                  "caf\xc3\xa9 \xe2\x82\xac", "%41 literal",
                                  "\x01\x7f\x80\xff~ "};
  for (size_t i = 0; i < UVG__ARRAY_SIZE(samples); i++) {
    char *enc = uvg__percent_encode(samples[i], strlen(samples[i]));
    char *dec = enc ? uvg__percent_decode(enc, strlen(enc)) : NULL;
    CHECK_STR(dec, samples[i]);
    uvg__free(enc);
    uvg__free(dec);
  }
}

/* ---- keys and values ---- */

static int key_valid(const char *k) { return uvg__md_key_valid(k, strlen(k)); }
static int key_reserved(const char *k) { return uvg__md_key_reserved(k, strlen(k)); }
static int key_bin(const char *k) { return uvg__md_key_is_bin(k, strlen(k)); }
static int value_valid(const char *v) {
  return uvg__md_value_valid((const uint8_t *)v, strlen(v));
}

static void test_key_validity(void) {
  CHECK(key_valid("x-foo"));
  CHECK(key_valid("a"));
  CHECK(key_valid("my.key_name-2"));
  CHECK(key_valid("0123456789abcdefghijklmnopqrstuvwxyz_.-"));
  CHECK(key_valid("x-trace-bin"));
  CHECK(!key_valid(""));
  CHECK(!key_valid("X-Foo")); /* keys are lower-case */
  CHECK(!key_valid("x-Foo"));
  CHECK(!key_valid("x foo"));
  CHECK(!key_valid(":path"));
  CHECK(!key_valid("x/foo"));
  CHECK(!key_valid("x\xc3\xa9"));
  CHECK(!uvg__md_key_valid("ab\0c", 4));
  CHECK(uvg__md_key_valid("ab\0c", 2)); /* only n bytes count */
}

static void test_value_validity(void) {
  CHECK(value_valid(""));
  CHECK(value_valid("plain value"));
  CHECK(value_valid(" !~"));
  CHECK(!value_valid("tab\there"));
  CHECK(!value_valid("line\n"));
  CHECK(!value_valid("\x7f"));
  CHECK(!value_valid("caf\xc3\xa9"));
  CHECK(!uvg__md_value_valid((const uint8_t *)"a\0b", 3));
}

static void test_key_is_bin(void) {
  CHECK(key_bin("x-bin"));
  CHECK(key_bin("grpc-status-details-bin"));
  CHECK(key_bin("-bin"));
  CHECK(!key_bin("bin"));
  CHECK(!key_bin("x-bin2"));
  CHECK(!key_bin("x-binary"));
  CHECK(!key_bin("xbin-x"));
  CHECK(!key_bin(""));
}

static void test_reserved_keys(void) {
  static const char *reserved[] = {":path", ":authority", ":method", ":status",
                                   ":scheme", "content-type", "te",
                                   "grpc-status", "grpc-timeout", "grpc-message",
                                   "grpc-encoding", "grpc-accept-encoding",
                                   "user-agent", "connection", "host",
                                   "grpc-previous-rpc-attempts"};
  for (size_t i = 0; i < UVG__ARRAY_SIZE(reserved); i++) {
    if (!key_reserved(reserved[i])) fprintf(stderr, "  not reserved: %s\n", reserved[i]);
    CHECK(key_reserved(reserved[i]));
  }
  static const char *free_keys[] = {"grpc-status-details-bin", "grpc-retry-pushback-ms",
                                    "x-foo", "x-bin",
                                    "authorization", "tee", "t", "content-typo",
                                    "grpc", "x-grpc-status"};
  for (size_t i = 0; i < UVG__ARRAY_SIZE(free_keys); i++) {
    if (key_reserved(free_keys[i])) fprintf(stderr, "  reserved: %s\n", free_keys[i]);
    CHECK(!key_reserved(free_keys[i]));
  }
  /* Only n bytes count. */
  CHECK(uvg__md_key_reserved("tex", 2));
  CHECK(!uvg__md_key_reserved("tex", 3));
}

/* ---- metadata lists ---- */

static int item_is(const uvg_metadata_t *m, const char *key, const void *v, size_t n) {
  return m != NULL && strcmp(m->key, key) == 0 && m->value_len == n &&
         (n == 0 || memcmp(m->value, v, n) == 0);
}

static int add_wire(uvg__md_list_t *l, const char *key, const char *value) {
  return uvg__md_list_add_wire(l, key, strlen(key), (const uint8_t *)value,
                               strlen(value));
}

static void test_md_list_add_and_get(void) {
  uvg__md_list_t l;
  uvg__md_list_init(&l);
  CHECK_EQ(l.n, 0);
  CHECK(uvg__md_list_get(&l, "a") == NULL);
  char key[] = "x-one", val[] = "value one";
  CHECK_EQ(uvg__md_list_add(&l, key, 5, (const uint8_t *)val, 9), 0);
  /* Copied: the caller's buffers may change. */
  memcpy(key, "zzzzz", 5);
  memcpy(val, "ZZZZZZZZZ", 9);
  CHECK(item_is(&l.items[0], "x-one", "value one", 9));
  /* A key of key_len bytes, without the rest of the string. */
  CHECK_EQ(uvg__md_list_add(&l, "x-twoXX", 5, (const uint8_t *)"2", 1), 0);
  CHECK_EQ(uvg__md_list_add(&l, "x-one", 5, (const uint8_t *)"again", 5), 0);
  for (int i = 0; i < 20; i++) /* grows past its first capacity */
    CHECK_EQ(uvg__md_list_add(&l, "x-many", 6, (const uint8_t *)"m", 1), 0);
  CHECK_EQ(l.n, 23);
  CHECK(item_is(uvg__md_list_get(&l, "x-two"), "x-two", "2", 1));
  /* get returns the first entry of that name. */
  CHECK(item_is(uvg__md_list_get(&l, "x-one"), "x-one", "value one", 9));
  CHECK(uvg__md_list_get(&l, "x-thr") == NULL);
  /* Values are NUL-terminated for ASCII readers; value_len excludes it. */
  CHECK_EQ(l.items[0].value[9], '\0');
  uvg__md_list_free(&l);
  CHECK_EQ(l.n, 0);
  CHECK(l.items == NULL);
}

static void test_md_list_add_wire(void) {
  uvg__md_list_t l;
  uvg__md_list_init(&l);

  /* A comma-joined binary header: one entry per value, each decoded. */
  CHECK_EQ(add_wire(&l, "x-bin", "AAE=,AgM"), 0);
  CHECK_EQ(l.n, 2);
  CHECK(item_is(&l.items[0], "x-bin", "\x00\x01", 2));
  CHECK(item_is(&l.items[1], "x-bin", "\x02\x03", 2));

  /* Un-padded, and optional whitespace after the comma. */
  CHECK_EQ(add_wire(&l, "y-bin", "AAE"), 0);
  CHECK_EQ(l.n, 3);
  CHECK(item_is(&l.items[2], "y-bin", "\x00\x01", 2));
  CHECK_EQ(add_wire(&l, "z-bin", "Zm9v, YmFy"), 0);
  CHECK_EQ(l.n, 5);
  CHECK(item_is(&l.items[3], "z-bin", "foo", 3));
  CHECK(item_is(&l.items[4], "z-bin", "bar", 3));

  /* ASCII values are kept as they are, commas and all. */
  CHECK_EQ(add_wire(&l, "x-list", "a, b,c"), 0);
  CHECK_EQ(l.n, 6);
  CHECK(item_is(&l.items[5], "x-list", "a, b,c", 6));
  CHECK_EQ(add_wire(&l, "x-b64-looking", "AAE="), 0);
  CHECK(item_is(&l.items[6], "x-b64-looking", "AAE=", 4));
  CHECK_EQ(l.n, 7);

  /* Bad base64 in a -bin header. */
  uvg__md_list_t bad;
  uvg__md_list_init(&bad);
  CHECK_EQ(add_wire(&bad, "x-bin", "!!!!"), UVG_EINVAL);
  CHECK_EQ(add_wire(&bad, "x-bin", "A"), UVG_EINVAL);
  CHECK_EQ(add_wire(&bad, "x-bin", "AAE=,A"), UVG_EINVAL);
  uvg__md_list_free(&bad);
  uvg__md_list_free(&l);
}

static void test_md_list_add_app(void) {
  uvg__md_list_t l;
  uvg__md_list_init(&l);
  static const uint8_t raw[] = {0x00, 0xff, 0x10, '\n'};
  uvg_metadata_t good[] = {
      {"x-foo", (const uint8_t *)"bar", 3},
      {"x-raw-bin", raw, sizeof(raw)}, /* -bin values may hold any byte */
      {"grpc-status-details-bin", raw, 2},
      {"x-empty", NULL, 0},
  };
  CHECK_EQ(uvg__md_list_add_app(&l, good, UVG__ARRAY_SIZE(good)), 0);
  CHECK_EQ(l.n, 4);
  CHECK(item_is(&l.items[0], "x-foo", "bar", 3));
  CHECK(item_is(&l.items[1], "x-raw-bin", raw, sizeof(raw)));
  CHECK(item_is(&l.items[2], "grpc-status-details-bin", raw, 2));
  CHECK(item_is(&l.items[3], "x-empty", "", 0));
  CHECK_EQ(uvg__md_list_add_app(&l, NULL, 0), 0);
  CHECK_EQ(l.n, 4);

  /* Each bad entry is refused, and a refused batch adds nothing, not even
   * the valid entries before the bad one. */
  uvg_metadata_t bads[][2] = {
      {{"x-ok", (const uint8_t *)"1", 1}, {"grpc-status", (const uint8_t *)"0", 1}},
      {{"x-ok", (const uint8_t *)"1", 1}, {":path", (const uint8_t *)"/a/b", 4}},
      {{"x-ok", (const uint8_t *)"1", 1}, {"content-type", (const uint8_t *)"x", 1}},
      {{"x-ok", (const uint8_t *)"1", 1}, {"te", (const uint8_t *)"trailers", 8}},
      {{"x-ok", (const uint8_t *)"1", 1}, {"grpc-timeout", (const uint8_t *)"1S", 2}},
      {{"x-ok", (const uint8_t *)"1", 1}, {"X-Upper", (const uint8_t *)"v", 1}},
      {{"x-ok", (const uint8_t *)"1", 1}, {"", (const uint8_t *)"v", 1}},
      {{"x-ok", (const uint8_t *)"1", 1}, {NULL, (const uint8_t *)"v", 1}},
      {{"x-ok", (const uint8_t *)"1", 1}, {"x-ctl", (const uint8_t *)"a\nb", 3}},
      {{"x-ok", (const uint8_t *)"1", 1}, {"x-del", (const uint8_t *)"\x7f", 1}},
      {{"x-ok", (const uint8_t *)"1", 1}, {"x-utf8", (const uint8_t *)"\xc3\xa9", 2}},
      {{"x-ok", (const uint8_t *)"1", 1}, {"x-null", NULL, 3}},
  };
  for (size_t i = 0; i < UVG__ARRAY_SIZE(bads); i++) {
    uvg__md_list_t b;
    uvg__md_list_init(&b);
    int rc = uvg__md_list_add_app(&b, bads[i], 2);
    if (rc != UVG_EINVAL) fprintf(stderr, "  bad entry %zu accepted\n", i);
    CHECK_EQ(rc, UVG_EINVAL);
    CHECK_EQ(b.n, 0);
    uvg__md_list_free(&b);
  }
  uvg__md_list_free(&l);
}

/* ---- header blocks ---- */

#define NV(n, v) \
  { (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1, NGHTTP2_NV_FLAG_NONE }

static int nv_is(const nghttp2_nv *nv, const char *name, const void *value, size_t vlen) {
  return nv->namelen == strlen(name) && memcmp(nv->name, name, nv->namelen) == 0 &&
         nv->valuelen == vlen && memcmp(nv->value, value, vlen) == 0;
}

static void test_status_of_reset(void) {
  CHECK_EQ(uvg__status_of_reset(NGHTTP2_CANCEL), UVG_STATUS_CANCELLED);
  CHECK_EQ(uvg__status_of_reset(NGHTTP2_REFUSED_STREAM), UVG_STATUS_UNAVAILABLE);
  CHECK_EQ(uvg__status_of_reset(NGHTTP2_ENHANCE_YOUR_CALM),
           UVG_STATUS_RESOURCE_EXHAUSTED);
  CHECK_EQ(uvg__status_of_reset(NGHTTP2_INADEQUATE_SECURITY),
           UVG_STATUS_PERMISSION_DENIED);
  CHECK_EQ(uvg__status_of_reset(NGHTTP2_PROTOCOL_ERROR), UVG_STATUS_INTERNAL);
  CHECK_EQ(uvg__status_of_reset(NGHTTP2_NO_ERROR), UVG_STATUS_INTERNAL);
}

static void test_md_list_remove(void) {
  uvg__md_list_t l;
  uvg__md_list_init(&l);
  CHECK_EQ(uvg__md_list_add(&l, "a", 1, (const uint8_t *)"1", 1), 0);
  CHECK_EQ(uvg__md_list_add(&l, "b", 1, (const uint8_t *)"2", 1), 0);
  CHECK_EQ(uvg__md_list_add(&l, "a", 1, (const uint8_t *)"3", 1), 0);
  CHECK_EQ(uvg__md_list_add(&l, "c", 1, (const uint8_t *)"4", 1), 0);
  uvg__md_list_remove(&l, "a");
  CHECK_EQ(l.n, 2);
  CHECK_STR(l.items[0].key, "b");
  CHECK_STR(l.items[1].key, "c");
  uvg__md_list_remove(&l, "zzz");
  CHECK_EQ(l.n, 2);
  size_t cap = l.cap;
  for (size_t i = l.n; i < cap; i++)
    CHECK_EQ(uvg__md_list_add(&l, "d", 1, (const uint8_t *)"5", 1), 0);
  CHECK_EQ(uvg__md_list_reserve(&l), 0);
  CHECK(l.cap > l.n);
  uvg__md_list_free(&l);
}

static void test_nv_build(void) {
  nghttp2_nv fixed[] = {NV(":status", "200"), NV("content-type", "application/grpc")};
  uvg__md_list_t md;
  uvg__md_list_init(&md);
  static const uint8_t bin[] = {0x00, 0x01, 0x02, 0xff};
  uvg_metadata_t app[] = {
      {"x-foo", (const uint8_t *)"bar baz", 7},
      {"x-data-bin", bin, sizeof(bin)},
      {"x-empty-bin", NULL, 0},
      {"x-f-bin", (const uint8_t *)"f", 1},
  };
  CHECK_EQ(uvg__md_list_add_app(&md, app, UVG__ARRAY_SIZE(app)), 0);

  uvg__nv_block_t b;
  CHECK_EQ(uvg__nv_build(&b, fixed, 2, &md), 0);
  CHECK_EQ(b.n, 6);
  if (b.n == 6) {
    CHECK(b.nv[0].name == fixed[0].name); /* fixed fields come first, as given */
    CHECK(nv_is(&b.nv[0], ":status", "200", 3));
    CHECK(nv_is(&b.nv[1], "content-type", "application/grpc", 16));
    /* ASCII values are used as they are (pointing into the list). */
    CHECK(nv_is(&b.nv[2], "x-foo", "bar baz", 7));
    CHECK(b.nv[2].value == md.items[0].value);
    /* Binary values are base64-encoded. */
    CHECK(nv_is(&b.nv[3], "x-data-bin", "AAEC/w", 6)); /* un-padded */
    CHECK(nv_is(&b.nv[4], "x-empty-bin", "", 0));
    CHECK(nv_is(&b.nv[5], "x-f-bin", "Zg", 2));
    for (size_t i = 2; i < 6; i++) CHECK_EQ(b.nv[i].flags, NGHTTP2_NV_FLAG_NONE);
    /* What it encodes, the receiving side decodes back. */
    uvg__md_list_t back;
    uvg__md_list_init(&back);
    for (size_t i = 2; i < 6; i++)
      CHECK_EQ(uvg__md_list_add_wire(&back, (const char *)b.nv[i].name, b.nv[i].namelen,
                                     b.nv[i].value, b.nv[i].valuelen), 0);
    CHECK_EQ(back.n, 4);
    for (size_t i = 0; i < back.n && i < 4; i++)
      CHECK(item_is(&back.items[i], app[i].key, app[i].value, app[i].value_len));
    uvg__md_list_free(&back);
  }
  uvg__nv_free(&b);
  CHECK(b.nv == NULL);
  CHECK_EQ(b.n, 0);

  /* Without metadata: just the fixed fields. */
  CHECK_EQ(uvg__nv_build(&b, fixed, 2, NULL), 0);
  CHECK_EQ(b.n, 2);
  CHECK(b.n == 2 && nv_is(&b.nv[1], "content-type", "application/grpc", 16));
  uvg__nv_free(&b);
  uvg__md_list_t empty;
  uvg__md_list_init(&empty);
  CHECK_EQ(uvg__nv_build(&b, fixed, 1, &empty), 0);
  CHECK_EQ(b.n, 1);
  uvg__nv_free(&b);
  uvg__md_list_free(&md);
}

/* ---- status ---- */

static int status_parse(const char *s) { return uvg__status_parse(s, strlen(s)); }

static void test_status_parse(void) {
  CHECK_EQ(status_parse("0"), 0);
  CHECK_EQ(status_parse("1"), 1);
  CHECK_EQ(status_parse("16"), 16);
  CHECK_EQ(status_parse("14"), 14);
  CHECK_EQ(status_parse("007"), 7);
  CHECK_EQ(status_parse(""), -1);
  CHECK_EQ(status_parse("-1"), -1);
  CHECK_EQ(status_parse("+1"), -1);
  CHECK_EQ(status_parse("1a"), -1);
  CHECK_EQ(status_parse(" 1"), -1);
  CHECK_EQ(status_parse("1 "), -1);
  CHECK_EQ(status_parse("0x1"), -1);
  CHECK_EQ(status_parse("1000"), -1);
  CHECK_EQ(status_parse("99999999999"), -1);
  CHECK_EQ(uvg__status_parse("12", 1), 1); /* only n bytes count */
}

static void test_strerror(void) {
  static const int codes[] = {UVG_EINVAL, UVG_ENOMEM, UVG_ECLOSED, UVG_ECANCELED,
                              UVG_ESTATE, UVG_EPROTO, UVG_ENOCREDS, UVG_EEXIST,
                              UVG_EADDR};
  const char *unknown = uvg_strerror(-39999);
  CHECK(unknown != NULL);
  for (size_t i = 0; i < UVG__ARRAY_SIZE(codes); i++) {
    const char *s = uvg_strerror(codes[i]);
    CHECK(s != NULL && *s != '\0');
    CHECK(s != NULL && unknown != NULL && strcmp(s, unknown) != 0);
    /* each code has its own text */
    for (size_t j = 0; j < i; j++)
      CHECK(s != NULL && strcmp(s, uvg_strerror(codes[j])) != 0);
  }
  CHECK_STR(uvg_strerror(UVG_EINVAL), "invalid argument");
  CHECK_STR(uvg_strerror(UVG_ECLOSED), "object is closing or closed");
  CHECK(uvg_strerror(0) != NULL);
  /* libuv codes go to uv_strerror. */
  CHECK_STR(uvg_strerror(UV_EADDRINUSE), uv_strerror(UV_EADDRINUSE));
  CHECK_STR(uvg_strerror(UV_ECONNRESET), uv_strerror(UV_ECONNRESET));
  CHECK_STR(uvg_strerror(UV_EOF), uv_strerror(UV_EOF));
  CHECK_STR(uvg_strerror(UV_EACCES), uv_strerror(UV_EACCES));
  /* Never NULL, whatever the value. */
  CHECK(uvg_strerror(1) != NULL);
  CHECK(uvg_strerror(-30100) != NULL);
  CHECK(uvg_strerror(-2147483647 - 1) != NULL);
  CHECK(uvg_strerror(2147483647) != NULL);
}

static void test_status_code_name(void) {
  static const char *names[] = {
      "OK",           "CANCELLED",         "UNKNOWN",
      "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
      "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
      "FAILED_PRECONDITION", "ABORTED",     "OUT_OF_RANGE",
      "UNIMPLEMENTED", "INTERNAL",         "UNAVAILABLE",
      "DATA_LOSS",    "UNAUTHENTICATED"};
  for (int i = 0; i <= 16; i++) CHECK_STR(uvg_status_code_name(i), names[i]);
  CHECK_STR(uvg_status_code_name(UVG_STATUS_UNAVAILABLE), "UNAVAILABLE");
  CHECK_STR(uvg_status_code_name(-1), "UNKNOWN");
  CHECK_STR(uvg_status_code_name(17), "UNKNOWN");
  CHECK_STR(uvg_status_code_name(1000), "UNKNOWN");
  CHECK_STR(uvg_status_code_name(-2147483647 - 1), "UNKNOWN");
}

int main(void) {
  RUN(test_base64_encode_rfc4648);
  RUN(test_base64_decode);
  RUN(test_base64_decode_rejects);
  RUN(test_percent_encode);
  RUN(test_percent_decode);
  RUN(test_key_validity);
  RUN(test_value_validity);
  RUN(test_key_is_bin);
  RUN(test_reserved_keys);
  RUN(test_md_list_add_and_get);
  RUN(test_md_list_add_wire);
  RUN(test_md_list_add_app);
  RUN(test_md_list_remove);
  RUN(test_status_of_reset);
  RUN(test_nv_build);
  RUN(test_status_parse);
  RUN(test_strerror);
  RUN(test_status_code_name);
  TEST_EXIT();
}

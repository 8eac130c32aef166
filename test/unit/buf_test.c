/* Byte buffers (loop/buf.h): growable bytes, refcounted buffers and the
 * iovec chain a writer hands to uv_write(). */
#include <stdint.h>

#include "buf.h"
#include "test.h"

/* ---- uvg__bytes_t ---- */

static void test_bytes_append(void) {
  uvg__bytes_t b;
  uvg__bytes_init(&b);
  CHECK(b.data == NULL);
  CHECK_EQ(b.len, 0);
  CHECK_EQ(b.cap, 0);

  CHECK_EQ(uvg__bytes_append(&b, NULL, 0), 0); /* nothing to append */
  CHECK_EQ(b.len, 0);
  CHECK_EQ(uvg__bytes_append(&b, "hello", 5), 0);
  CHECK_EQ(b.len, 5);
  CHECK(b.cap >= 5);
  CHECK(memcmp(b.data, "hello", 5) == 0);

  /* Growing past the capacity keeps the bytes already there. */
  uint8_t big[1000];
  for (int i = 0; i < 1000; i++) big[i] = (uint8_t)(i * 7);
  for (int round = 0; round < 10; round++) {
    size_t before = b.len;
    CHECK_EQ(uvg__bytes_append(&b, big, sizeof(big)), 0);
    CHECK_EQ(b.len, before + sizeof(big));
    CHECK(b.cap >= b.len);
  }
  CHECK(memcmp(b.data, "hello", 5) == 0);
  int bad = 0;
  for (int round = 0; round < 10; round++)
    if (memcmp(b.data + 5 + round * 1000, big, 1000) != 0) bad++;
  CHECK_EQ(bad, 0);

  uvg__bytes_free(&b);
  CHECK(b.data == NULL);
  CHECK_EQ(b.len, 0);
  CHECK_EQ(b.cap, 0);
  uvg__bytes_free(&b); /* freeing an empty buffer is fine */
}

static void test_bytes_reserve(void) {
  uvg__bytes_t b;
  uvg__bytes_init(&b);
  CHECK_EQ(uvg__bytes_reserve(&b, 0), 0);
  CHECK_EQ(uvg__bytes_reserve(&b, 10), 0);
  CHECK(b.cap >= 10);
  CHECK_EQ(b.len, 0);
  CHECK_EQ(uvg__bytes_append(&b, "abc", 3), 0);

  /* Reserving space that is already there moves nothing. */
  uint8_t *data = b.data;
  size_t cap = b.cap;
  CHECK_EQ(uvg__bytes_reserve(&b, cap - 3), 0);
  CHECK(b.data == data);
  CHECK_EQ(b.cap, cap);

  /* Reserving more makes at least that much room and keeps the bytes. */
  CHECK_EQ(uvg__bytes_reserve(&b, 5000), 0);
  CHECK(b.cap - b.len >= 5000);
  CHECK_EQ(b.len, 3);
  CHECK(memcmp(b.data, "abc", 3) == 0);
  /* Reserved room can be written through data without reallocating. */
  data = b.data;
  memset(b.data + b.len, 'x', 5000);
  b.len += 5000;
  CHECK_EQ(uvg__bytes_append(&b, NULL, 0), 0);
  CHECK(b.data == data);

  /* An impossible size fails and leaves the buffer as it was. */
  size_t len = b.len;
  cap = b.cap;
  CHECK_EQ(uvg__bytes_reserve(&b, SIZE_MAX), UVG_ENOMEM);
  CHECK_EQ(uvg__bytes_reserve(&b, SIZE_MAX - b.len), UVG_ENOMEM);
  CHECK_EQ(b.len, len);
  CHECK_EQ(b.cap, cap);
  CHECK(b.data == data);
  CHECK_EQ(uvg__bytes_append(&b, "z", SIZE_MAX), UVG_ENOMEM);
  CHECK_EQ(b.len, len);
  CHECK(memcmp(b.data, "abc", 3) == 0);
  uvg__bytes_free(&b);
}

/* ---- uvg__rbuf_t ---- */

static void test_rbuf_refcount(void) {
  uvg__rbuf_t *b = uvg__rbuf_new("payload", 7);
  CHECK(b != NULL);
  if (b == NULL) return;
  CHECK_EQ(b->refs, 1);
  CHECK_EQ(b->len, 7);
  CHECK(memcmp(b->data, "payload", 7) == 0);

  uvg__rbuf_t *r = uvg__rbuf_ref(b);
  CHECK(r == b);
  CHECK_EQ(b->refs, 2);
  uvg__rbuf_ref(b);
  CHECK_EQ(b->refs, 3);
  uvg__rbuf_unref(b);
  uvg__rbuf_unref(b);
  /* One reference left: still readable (valgrind would flag otherwise). */
  CHECK_EQ(b->refs, 1);
  CHECK(memcmp(b->data, "payload", 7) == 0);
  uvg__rbuf_unref(b); /* the last one frees it */

  uvg__rbuf_unref(NULL); /* no-op */

  /* Without a source: room for len bytes, to be filled by the owner. */
  uvg__rbuf_t *e = uvg__rbuf_new(NULL, 64);
  CHECK(e != NULL);
  if (e != NULL) {
    CHECK_EQ(e->len, 64);
    CHECK_EQ(e->refs, 1);
    memset(e->data, 0xab, 64);
    uvg__rbuf_unref(e);
  }
  uvg__rbuf_t *z = uvg__rbuf_new("x", 0);
  CHECK(z != NULL);
  if (z != NULL) {
    CHECK_EQ(z->len, 0);
    uvg__rbuf_unref(z);
  }
  CHECK(uvg__rbuf_new(NULL, SIZE_MAX) == NULL);
}

/* ---- uvg__iovs_t ---- */

static int iov_eq(const uv_buf_t *b, const void *p, size_t n) {
  return b->len == n && memcmp(b->base, p, n) == 0;
}

static int in_arena(const uvg__iovs_t *v, const uv_buf_t *b) {
  const uint8_t *p = (const uint8_t *)b->base;
  return p >= v->arena.data && p + b->len <= v->arena.data + v->arena.len;
}

static void test_iovs_copy_merges_ref_separate(void) {
  uvg__iovs_t v;
  static const char owned[] = "OWNED-BYTES";
  uvg__iovs_init(&v);
  CHECK_EQ(v.n, 0);
  CHECK_EQ(uvg__iovs_bytes(&v), 0);

  char tmp[8];
  memcpy(tmp, "ab", 2);
  CHECK_EQ(uvg__iovs_copy(&v, tmp, 2), 0);
  memcpy(tmp, "cd", 2); /* copied: the caller may reuse its memory */
  CHECK_EQ(uvg__iovs_copy(&v, tmp, 2), 0);
  CHECK_EQ(v.n, 1); /* adjacent copies merge */
  CHECK_EQ(uvg__iovs_copy(&v, "ignored", 0), 0);
  CHECK_EQ(uvg__iovs_ref(&v, owned, 0), 0);
  CHECK_EQ(v.n, 1); /* empty pieces add no entry */

  CHECK_EQ(uvg__iovs_ref(&v, owned, 5), 0);
  CHECK_EQ(uvg__iovs_ref(&v, owned + 5, 6), 0);
  CHECK_EQ(v.n, 3); /* refs are never merged */
  CHECK_EQ(uvg__iovs_copy(&v, "ef", 2), 0);
  CHECK_EQ(uvg__iovs_copy(&v, "g", 1), 0);
  CHECK_EQ(v.n, 4);
  memcpy(tmp, "zz", 2);

  CHECK_EQ(uvg__iovs_bytes(&v), 4 + 5 + 6 + 3);
  uvg__iovs_finish(&v);
  CHECK_EQ(uvg__iovs_bytes(&v), 4 + 5 + 6 + 3);
  CHECK(iov_eq(&v.iov[0], "abcd", 4));
  CHECK(v.iov[1].base == owned); /* points to the caller's memory */
  CHECK_EQ(v.iov[1].len, 5);
  CHECK(v.iov[2].base == owned + 5);
  CHECK_EQ(v.iov[2].len, 6);
  CHECK(iov_eq(&v.iov[3], "efg", 3));
  CHECK(in_arena(&v, &v.iov[0]));
  CHECK(in_arena(&v, &v.iov[3]));
  uvg__iovs_free(&v);
  CHECK_EQ(v.n, 0);
  CHECK(v.iov == NULL);
}

/* A write that took part of a chain: the rest starts where it stopped,
 * inside an entry or at its end, and the byte count follows. */
static void test_iovs_consume(void) {
  uvg__iovs_t v;
  static const char owned[] = "0123456789";
  uvg__iovs_init(&v);
  CHECK_EQ(uvg__iovs_copy(&v, "head", 4), 0);
  CHECK_EQ(uvg__iovs_ref(&v, owned, 10), 0);
  CHECK_EQ(uvg__iovs_copy(&v, "tail", 4), 0);
  uvg__iovs_finish(&v);
  uvg__iovs_consume(&v, 2); /* inside the first entry */
  CHECK_EQ(v.n, 3);
  CHECK(iov_eq(&v.iov[0], "ad", 2));
  CHECK_EQ(uvg__iovs_bytes(&v), 16);
  uvg__iovs_consume(&v, 2 + 3); /* the first whole, into the second */
  CHECK_EQ(v.n, 2);
  CHECK(v.iov[0].base == owned + 3);
  CHECK_EQ(v.iov[0].len, 7);
  CHECK_EQ(uvg__iovs_bytes(&v), 11);
  uvg__iovs_consume(&v, 7); /* exactly an entry */
  CHECK_EQ(v.n, 1);
  CHECK(iov_eq(&v.iov[0], "tail", 4));
  uvg__iovs_consume(&v, 4);
  CHECK_EQ(v.n, 0);
  CHECK_EQ(uvg__iovs_bytes(&v), 0);
  uvg__iovs_free(&v);
}

/* Many copies longer than the arena's first allocation, interleaved with
 * refs so that they do not merge: the arena moves many times, and finish
 * must still resolve every entry to the right bytes. */
static void test_iovs_finish_after_arena_moves(void) {
  enum { N = 60, PIECE = 300 };
  uvg__iovs_t v;
  static uint8_t src[N][PIECE];
  static const char ref_bytes[N][4];
  uvg__iovs_init(&v);
  size_t total = 0;
  for (int i = 0; i < N; i++) {
    for (int j = 0; j < PIECE; j++) src[i][j] = (uint8_t)(i * 31 + j);
    CHECK_EQ(uvg__iovs_copy(&v, src[i], PIECE), 0);
    CHECK_EQ(uvg__iovs_ref(&v, ref_bytes[i], sizeof(ref_bytes[i])), 0);
    total += PIECE + sizeof(ref_bytes[i]);
  }
  CHECK_EQ(v.n, 2 * N); /* more than the first 16 entries: the chain grew */
  CHECK(v.arena.cap >= (size_t)N * PIECE);
  CHECK_EQ(uvg__iovs_bytes(&v), total);
  uvg__iovs_finish(&v);
  int bad = 0;
  for (int i = 0; i < N; i++) {
    if (!iov_eq(&v.iov[2 * i], src[i], PIECE) || !in_arena(&v, &v.iov[2 * i]))
      bad++;
    if (v.iov[2 * i + 1].base != (const char *)ref_bytes[i] ||
        v.iov[2 * i + 1].len != sizeof(ref_bytes[i]))
      bad++;
  }
  CHECK_EQ(bad, 0);
  CHECK_EQ(uvg__iovs_bytes(&v), total);
  uvg__iovs_free(&v);
}

/* Merged copies that cross arena reallocations stay one contiguous entry. */
static void test_iovs_merged_copies_across_growth(void) {
  uvg__iovs_t v;
  uint8_t expect[100 * 37];
  uvg__iovs_init(&v);
  for (int i = 0; i < 100; i++) {
    uint8_t piece[37];
    for (int j = 0; j < 37; j++) piece[j] = (uint8_t)(i + j * 3);
    memcpy(expect + i * 37, piece, 37);
    CHECK_EQ(uvg__iovs_copy(&v, piece, 37), 0);
  }
  CHECK_EQ(v.n, 1);
  uvg__iovs_finish(&v);
  CHECK(iov_eq(&v.iov[0], expect, sizeof(expect)));
  uvg__iovs_free(&v);
}

static void test_iovs_reset_keeps_capacity(void) {
  uvg__iovs_t v;
  static const char ext[] = "external";
  uvg__iovs_init(&v);
  for (int i = 0; i < 40; i++) {
    CHECK_EQ(uvg__iovs_copy(&v, "0123456789", 10), 0);
    CHECK_EQ(uvg__iovs_ref(&v, ext, 8), 0);
  }
  uvg__iovs_finish(&v);
  uv_buf_t *iov = v.iov;
  unsigned cap = v.cap;
  uint8_t *arena = v.arena.data;
  size_t arena_cap = v.arena.cap;

  uvg__iovs_reset(&v);
  CHECK_EQ(v.n, 0);
  CHECK_EQ(uvg__iovs_bytes(&v), 0);
  CHECK_EQ(v.arena.len, 0);
  CHECK(v.iov == iov);
  CHECK_EQ(v.cap, cap);
  CHECK(v.arena.data == arena);
  CHECK_EQ(v.arena.cap, arena_cap);

  /* Reused for the next turn: offsets start from the arena's beginning,
   * and a copy right after reset does not merge with stale entries. */
  CHECK_EQ(uvg__iovs_ref(&v, ext, 3), 0);
  CHECK_EQ(uvg__iovs_copy(&v, "new", 3), 0);
  CHECK_EQ(uvg__iovs_copy(&v, "er", 2), 0);
  CHECK_EQ(v.n, 2);
  uvg__iovs_finish(&v);
  CHECK(v.iov[0].base == ext);
  CHECK_EQ(v.iov[0].len, 3);
  CHECK(iov_eq(&v.iov[1], "newer", 5));
  CHECK((uint8_t *)v.iov[1].base == v.arena.data);
  CHECK(v.iov == iov);
  CHECK(v.arena.data == arena);
  CHECK_EQ(uvg__iovs_bytes(&v), 8);

  uvg__iovs_reset(&v);
  CHECK_EQ(uvg__iovs_copy(&v, "abc", 3), 0);
  CHECK_EQ(v.n, 1);
  uvg__iovs_finish(&v);
  CHECK(iov_eq(&v.iov[0], "abc", 3));
  uvg__iovs_free(&v);
}

int main(void) {
  RUN(test_bytes_append);
  RUN(test_bytes_reserve);
  RUN(test_rbuf_refcount);
  RUN(test_iovs_copy_merges_ref_separate);
  RUN(test_iovs_consume);
  RUN(test_iovs_finish_after_arena_moves);
  RUN(test_iovs_merged_copies_across_growth);
  RUN(test_iovs_reset_keeps_capacity);
  TEST_EXIT();
}

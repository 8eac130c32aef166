/* The free lists: a freed block serves the next allocation of its class
 * without the allocator, what they keep is capped, and trimming gives
 * everything back. */
#include <stdint.h>
#include <uvgrpc.h>

#include "pool.h"
#include "test.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
/* Under ASan a block kept on a free list is poisoned, so that a use after
 * free of a pooled object is reported; taken again, it is not. */
static void test_kept_blocks_poisoned(void) {
  uvg__pool_t p;
  uvg__pool_init(&p);
  char *a = uvg__pool_alloc(&p, 40);
  CHECK(!__asan_address_is_poisoned(a));
  uvg__pool_free(&p, a);
  CHECK(__asan_address_is_poisoned(a));
  char *b = uvg__pool_alloc(&p, 40);
  CHECK(b == a && !__asan_address_is_poisoned(b));
  uvg__pool_free(&p, b);
  uvg__pool_trim(&p);
}
#endif

static long n_alloc, n_free;
static void *t_malloc(size_t n) {
  n_alloc++;
  return malloc(n);
}
static void *t_realloc(void *p, size_t n) {
  n_alloc++;
  return realloc(p, n);
}
static void t_free(void *p) {
  if (p != NULL) n_free++;
  free(p);
}

static void test_reuse_without_the_allocator(void) {
  uvg__pool_t p;
  uvg__pool_init(&p);
  void *a = uvg__pool_alloc(&p, 100);
  CHECK(a != NULL);
  CHECK_EQ((uintptr_t)a % _Alignof(max_align_t), 0);
  memset(a, 1, 100);
  uvg__pool_free(&p, a);
  long before = n_alloc;
  /* any size of the same class (65..128) gets the same block back */
  void *b = uvg__pool_alloc(&p, 128);
  CHECK(b == a);
  CHECK_EQ(n_alloc, before);
  uvg__pool_free(&p, b);
  /* calloc zeroes what the last user left */
  uint8_t *z = uvg__pool_calloc(&p, 10, 10);
  CHECK(z == a);
  int dirty = 0;
  for (int i = 0; i < 100; i++) dirty |= z[i];
  CHECK_EQ(dirty, 0);
  uvg__pool_free(&p, z);
  CHECK(uvg__pool_calloc(&p, SIZE_MAX / 2, 4) == NULL);
  uvg__pool_trim(&p);
  CHECK_EQ(uvg__pool_kept_bytes(&p), 0);
}

static void test_realloc_keeps_the_bytes(void) {
  uvg__pool_t p;
  uvg__pool_init(&p);
  char *s = uvg__pool_realloc(&p, NULL, 20);
  memcpy(s, "nineteen characters", 20);
  CHECK(uvg__pool_realloc(&p, s, 30) == s); /* still fits its class */
  char *t = uvg__pool_realloc(&p, s, 5000); /* past the largest class */
  CHECK(t != NULL && strcmp(t, "nineteen characters") == 0);
  uvg__pool_free(&p, t); /* a large block goes straight back */
  CHECK_EQ(uvg__pool_kept_bytes(&p), 16 + 32);
  uvg__pool_trim(&p);
}

/* What a class keeps is capped: a burst of frees beyond it goes back to
 * the allocator, and everything goes back when trimmed. */
static void test_kept_is_bounded(void) {
  enum { N = 2000 };
  static void *blocks[N];
  uvg__pool_t p;
  uvg__pool_init(&p);
  long allocs = n_alloc, frees = n_free;
  for (int i = 0; i < N; i++) blocks[i] = uvg__pool_alloc(&p, 64);
  for (int i = 0; i < N; i++) uvg__pool_free(&p, blocks[i]);
  CHECK(uvg__pool_kept_bytes(&p) <= UVG__POOL_KEEP + UVG__POOL_KEEP / 4);
  CHECK(uvg__pool_kept_bytes(&p) >= UVG__POOL_KEEP / 2);
  uvg__pool_trim(&p);
  CHECK_EQ(n_alloc - allocs, N);
  CHECK_EQ(n_free - frees, N);
}

int main(void) {
  CHECK_EQ(uvg_set_allocator(t_malloc, t_realloc, t_free), 0);
  RUN(test_reuse_without_the_allocator);
  RUN(test_realloc_keeps_the_bytes);
  RUN(test_kept_is_bounded);
#if defined(__SANITIZE_ADDRESS__)
  RUN(test_kept_blocks_poisoned);
#endif
  CHECK_EQ(n_alloc, n_free);
  TEST_EXIT();
}

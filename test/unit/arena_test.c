/* The arena: alignment, growth, reset keeping the first block, a caller's
 * block, and failure when the allocator fails. */
#include "arena.h"

#include <stdalign.h>
#include <stdint.h>

#include "test.h"

static int fail_after = -1, mallocs;
static size_t largest;

static void *counting_malloc(size_t n) {
  if (fail_after >= 0 && mallocs >= fail_after) return NULL;
  mallocs++;
  if (n > largest) largest = n;
  return malloc(n);
}

static void test_alignment_and_growth(void) {
  uvg__arena_t a;
  uvg__arena_init(&a);
  mallocs = 0;
  for (int i = 0; i < 100; i++) {
    uint8_t *p = uvg__arena_alloc(&a, (size_t)(i % 7) + 1);
    CHECK(p != NULL);
    CHECK_EQ((uintptr_t)p % alignof(max_align_t), 0);
    memset(p, 0xab, (size_t)(i % 7) + 1);
  }
  /* 100 small allocations of 16 bytes: 1 KiB, 2 KiB blocks */
  CHECK_EQ(mallocs, 2);
  /* a request larger than the next block gets a block of its size */
  uint8_t *big = uvg__arena_alloc(&a, 100000);
  CHECK(big != NULL);
  memset(big, 1, 100000);
  CHECK_EQ(mallocs, 3);
  uvg__arena_free(&a);
}

static void test_reset_keeps_first(void) {
  uvg__arena_t a;
  uvg__arena_init(&a);
  mallocs = 0;
  void *first = uvg__arena_alloc(&a, 10);
  uvg__arena_alloc(&a, 5000);
  CHECK_EQ(mallocs, 2);
  uvg__arena_reset(&a);
  /* the first block serves again, nothing allocated */
  CHECK(uvg__arena_alloc(&a, 10) == first);
  CHECK_EQ(mallocs, 2);
  uvg__arena_free(&a);
  /* a first block above the keep limit is not kept */
  uvg__arena_init(&a);
  uvg__arena_alloc(&a, UVG__ARENA_KEEP_MAX + 1);
  uvg__arena_reset(&a);
  CHECK(a.head == NULL);
  uvg__arena_free(&a);
}

/* Two 64 KiB messages (a request decoded, a reply built) get blocks of
 * their own size: doubling would ask for 128 KiB, past the C library's
 * mmap threshold, for fresh pages on every call. Small allocations go on
 * in the head block, and a reset frees the large blocks (ASan sees a
 * double free or a leak). */
static void test_large_allocations_own_blocks(void) {
  uvg__arena_t a;
  uvg__arena_init(&a);
  for (int round = 0; round < 3; round++) {
    mallocs = 0;
    largest = 0;
    uint8_t *small = uvg__arena_alloc(&a, 40);
    uint8_t *m1 = uvg__arena_alloc(&a, 65536);
    uint8_t *m2 = uvg__arena_alloc(&a, 65536);
    uint8_t *small2 = uvg__arena_alloc(&a, 40);
    CHECK(small != NULL && m1 != NULL && m2 != NULL && small2 != NULL);
    memset(m1, 1, 65536);
    memset(m2, 2, 65536);
    CHECK(largest < 65536 + 256); /* no block of twice a message */
    CHECK(small2 == small + 48);  /* the head block still serves */
    CHECK_EQ(mallocs, round == 0 ? 3 : 2);
    CHECK_EQ(m1[65535], 1);
    uvg__arena_reset(&a);
  }
  uvg__arena_free(&a);
}

/* A server call's path lives in its arena: a copy with its NUL, and on a
 * reused arena no allocation. */
static void test_strndup(void) {
  uvg__arena_t a;
  uvg__arena_init(&a);
  char *s = uvg__arena_strndup(&a, "/t.T/Echoes", 9);
  CHECK(s != NULL && strcmp(s, "/t.T/Echo") == 0);
  uvg__arena_reset(&a);
  mallocs = 0;
  s = uvg__arena_strndup(&a, "", 0);
  CHECK(s != NULL && s[0] == '\0');
  CHECK_EQ(mallocs, 0);
  uvg__arena_free(&a);
}

static void test_callers_block(void) {
  alignas(max_align_t) uint8_t buf[256];
  uvg__arena_t a;
  uvg__arena_init_buf(&a, buf, sizeof(buf));
  mallocs = 0;
  uint8_t *p = uvg__arena_alloc(&a, 64);
  CHECK(p > buf && p < buf + sizeof(buf));
  CHECK_EQ(mallocs, 0);
  uvg__arena_alloc(&a, 1000); /* past the caller's block */
  CHECK_EQ(mallocs, 1);
  uvg__arena_reset(&a); /* frees ours, keeps the caller's */
  CHECK(uvg__arena_alloc(&a, 8) == p);
  uvg__arena_free(&a);
}

static void test_failure(void) {
  uvg__arena_t a;
  uvg__arena_init(&a);
  mallocs = 0;
  fail_after = 1;
  CHECK(uvg__arena_alloc(&a, 16) != NULL);
  CHECK(uvg__arena_alloc(&a, 4096) == NULL);
  CHECK_EQ(a.failed, 1);
  fail_after = -1;
  uvg__arena_reset(&a);
  CHECK_EQ(a.failed, 0);
  uvg__arena_free(&a);
}

int main(void) {
  uvg_set_allocator(counting_malloc, realloc, free);
  RUN(test_alignment_and_growth);
  RUN(test_reset_keeps_first);
  RUN(test_large_allocations_own_blocks);
  RUN(test_strndup);
  RUN(test_callers_block);
  RUN(test_failure);
  TEST_EXIT();
}

/* Page runs: page-aligned and alone on their pages, given back to the
 * kernel when released, reused once freed, never overlapping a live run in
 * a fragmented slab, and slabs returned to the allocator when empty.
 * Under ASan, free pages and a run's tail are poisoned. */
#include <stdint.h>
#include <sys/mman.h>
#include <uvgrpc.h>

#include "fault_harness.h"
#include "pages.h"

/* Resident pages of [p, p + n), by mincore(). */
static size_t resident(void *p, size_t n) {
  size_t page = uvg__page_size(), k = (n + page - 1) / page, r = 0;
  unsigned char v[64];
  CHECK(k <= sizeof(v));
  CHECK_EQ(mincore(p, k * page, v), 0);
  for (size_t i = 0; i < k; i++) r += v[i] & 1;
  return r;
}

static void test_runs_are_aligned_and_apart(void) {
  uvg__pages_t pp;
  uvg__pages_slab_t *s1, *s2, *s3;
  size_t page = uvg__page_size();
  uvg__pages_init(&pp);
  uint8_t *a = uvg__pages_alloc(&pp, 16394, &s1);
  uint8_t *b = uvg__pages_alloc(&pp, page, &s2);
  uint8_t *c = uvg__pages_alloc(&pp, 1, &s3);
  CHECK(a != NULL && b != NULL && c != NULL);
  CHECK_EQ((uintptr_t)a % page, 0);
  CHECK_EQ((uintptr_t)b % page, 0);
  CHECK_EQ((uintptr_t)c % page, 0);
  /* 16394 bytes take five pages; none shares one with another run */
  CHECK(b >= a + 5 * page || a >= b + page);
  CHECK(c >= b + page || b >= c + page);
  CHECK(c >= a + 5 * page || a >= c + page);
  memset(a, 0xa5, 16394);
  memset(b, 0x5a, page);
  CHECK_EQ(a[16393], 0xa5);
  CHECK_EQ(b[0], 0x5a);
  /* too long a run is refused, not served badly */
  uvg__pages_slab_t *sx;
  CHECK(uvg__pages_alloc(&pp, (UVG__PAGES_MAX + 1) * page, &sx) == NULL);
  CHECK(uvg__pages_alloc(&pp, 0, &sx) == NULL);
  uvg__pages_free(&pp, a, 16394, s1);
  uvg__pages_free(&pp, b, page, s2);
  uvg__pages_free(&pp, c, 1, s3);
  uvg__pages_fini(&pp);
}

/* A released run keeps its address, reads as zeros and holds no memory
 * until written again. */
static void test_release_gives_pages_back(void) {
  uvg__pages_t pp;
  uvg__pages_slab_t *s;
  size_t page = uvg__page_size();
  uvg__pages_init(&pp);
  uint8_t *a = uvg__pages_alloc(&pp, 3 * page, &s);
  CHECK(a != NULL);
  CHECK_EQ(resident(a, 3 * page), 0); /* a fresh slab's pages are not */
  memset(a, 7, 3 * page);
  CHECK_EQ(resident(a, 3 * page), 3);
  CHECK_EQ(uvg__pages_resident(&pp), 3);
  CHECK_EQ(uvg__pages_release(a, 3 * page), 0);
  CHECK_EQ(resident(a, 3 * page), 0);
  CHECK_EQ(uvg__pages_resident(&pp), 0);
  for (size_t i = 0; i < 3 * page; i += 512) CHECK_EQ(a[i], 0);
  a[page] = 1;
  /* a partial last page is not released: it may not be the caller's */
  CHECK_EQ(uvg__pages_release(a, page + 100), 0);
  CHECK_EQ(a[page], 1);
  uvg__pages_free(&pp, a, 3 * page, s);
  uvg__pages_fini(&pp);
}

/* A freed run is the next one of its size. */
static void test_free_reuses_pages(void) {
  uvg__pages_t pp;
  uvg__pages_slab_t *s, *s2;
  size_t page = uvg__page_size();
  uvg__pages_init(&pp);
  uint8_t *keep = uvg__pages_alloc(&pp, page, &s2);
  uint8_t *a = uvg__pages_alloc(&pp, 2 * page, &s);
  memset(a, 1, 2 * page);
  uvg__pages_free(&pp, a, 2 * page, s);
  uvg__pages_slab_t *s3;
  uint8_t *b = uvg__pages_alloc(&pp, 2 * page, &s3);
  CHECK(b == a && s3 == s); /* the slab stayed: `keep` is in it */
  uvg__pages_free(&pp, b, 2 * page, s3);
  uvg__pages_free(&pp, keep, page, s2);
  uvg__pages_fini(&pp);
}

/* Many runs fill slab after slab; freeing them all returns every slab to
 * the allocator. */
static void test_slabs_come_and_go(void) {
  enum { N = 3 * UVG__PAGES_SLAB / 5 + 7 };
  static uint8_t *p[N];
  static uvg__pages_slab_t *sl[N];
  uvg__pages_t pp;
  uvg__pages_init(&pp);
  fh_allocs = fh_frees = 0;
  for (int i = 0; i < N; i++) {
    p[i] = uvg__pages_alloc(&pp, 5 * uvg__page_size() - 10, &sl[i]);
    CHECK(p[i] != NULL);
    p[i][0] = (uint8_t)i;
  }
  CHECK(fh_allocs >= 3); /* one allocation a slab */
  for (int i = 0; i < N; i++) CHECK_EQ(p[i][0], (uint8_t)i);
  /* free in an order that empties slabs out of turn */
  for (int i = 0; i < N; i += 2) uvg__pages_free(&pp, p[i], 5 * uvg__page_size() - 10, sl[i]);
  for (int i = 1; i < N; i += 2) uvg__pages_free(&pp, p[i], 5 * uvg__page_size() - 10, sl[i]);
  CHECK_EQ(fh_frees, fh_allocs);
  uvg__pages_fini(&pp);
}

/* In a slab with every other page taken, a run of two pages goes where it
 * overlaps nothing. */
static void test_fragmented_slab(void) {
  enum { N = UVG__PAGES_SLAB };
  static uint8_t *p[N];
  static uvg__pages_slab_t *sl[N];
  size_t page = uvg__page_size();
  uvg__pages_t pp;
  uvg__pages_init(&pp);
  for (int i = 0; i < N; i++) {
    p[i] = uvg__pages_alloc(&pp, page, &sl[i]);
    CHECK(p[i] != NULL);
    p[i][0] = (uint8_t)i;
  }
  for (int i = 0; i < N; i += 2) uvg__pages_free(&pp, p[i], page, sl[i]);
  uvg__pages_slab_t *s2;
  uint8_t *two = uvg__pages_alloc(&pp, 2 * page, &s2);
  CHECK(two != NULL);
  for (int i = 1; i < N; i += 2) CHECK(two + 2 * page <= p[i] || two >= p[i] + page);
  memset(two, 0xee, 2 * page);
  for (int i = 1; i < N; i += 2) CHECK_EQ(p[i][0], (uint8_t)i);
  uvg__pages_free(&pp, two, 2 * page, s2);
  for (int i = 1; i < N; i += 2) uvg__pages_free(&pp, p[i], page, sl[i]);
  uvg__pages_fini(&pp);
}

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
static void test_asan_poisoning(void) {
  uvg__pages_t pp;
  uvg__pages_slab_t *s;
  uvg__pages_init(&pp);
  uint8_t *a = uvg__pages_alloc(&pp, 5000, &s);
  CHECK(!__asan_address_is_poisoned(a) && !__asan_address_is_poisoned(a + 4999));
  CHECK(__asan_address_is_poisoned(a + 5000)); /* the run's tail */
  CHECK(__asan_address_is_poisoned(a + 2 * uvg__page_size())); /* free pages */
  uvg__pages_free(&pp, a, 5000, s);
  CHECK(__asan_address_is_poisoned(a));
  uvg__pages_fini(&pp);
}
#endif

/* The allocator failing is reported, and nothing is half made. */
static void test_allocator_failure(void) {
  uvg__pages_t pp;
  uvg__pages_slab_t *s;
  uvg__pages_init(&pp);
  fh_allocs = fh_frees = 0;
  fh_fail_at = 0;
  CHECK(uvg__pages_alloc(&pp, 100, &s) == NULL);
  fh_fail_at = -1;
  uint8_t *a = uvg__pages_alloc(&pp, 100, &s);
  CHECK(a != NULL);
  uvg__pages_free(&pp, a, 100, s);
  uvg__pages_fini(&pp);
  CHECK(fh_balanced());
}

int main(void) {
  uvg_set_allocator(fh_malloc, fh_realloc, fh_free);
  RUN(test_runs_are_aligned_and_apart);
  RUN(test_release_gives_pages_back);
  RUN(test_free_reuses_pages);
  RUN(test_slabs_come_and_go);
  RUN(test_fragmented_slab);
#if defined(__SANITIZE_ADDRESS__)
  RUN(test_asan_poisoning);
#endif
  RUN(test_allocator_failure);
  TEST_EXIT();
}

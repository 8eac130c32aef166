/* nghttp2's memory for one connection; see h2mem.h. */
#include "h2mem.h"

#include <string.h>

void uvg__h2mem_init(uvg__h2mem_t *m, uvg__pool_t *pool, uvg__pages_t *pages) {
  memset(m, 0, sizeof(*m));
  m->pool = pool;
  m->pages = pages;
  m->framebuf = -1;
}

static int big_index(const uvg__h2mem_t *m, const void *p) {
  if (p == NULL) return -1;
  for (int i = 0; i < UVG__H2MEM_BIG; i++)
    if (m->big[i].p == p) return i;
  return -1;
}

/* A run of pages in a free slot, or NULL when there is no slot, the block
 * is too large or no slab could be had: then the pool serves it. */
static void *big_alloc(uvg__h2mem_t *m, size_t n) {
  int i;
  for (i = 0; i < UVG__H2MEM_BIG && m->big[i].p != NULL; i++)
    ;
  if (i == UVG__H2MEM_BIG || n > UVG__PAGES_MAX * uvg__page_size()) return NULL;
  uint8_t *p = uvg__pages_alloc(m->pages, n, &m->big[i].slab);
  if (p == NULL) return NULL;
  m->big[i].p = p;
  m->big[i].n = n;
  /* Of what nghttp2 makes with the session, its outbound frame buffer
   * (9 + 1 + 16384 bytes) is the only block of a frame's size. */
  if (m->framebuf < 0 && n >= 16384) m->framebuf = (int8_t)i;
  return p;
}

static void big_free(uvg__h2mem_t *m, int i) {
  uvg__pages_free(m->pages, m->big[i].p, m->big[i].n, m->big[i].slab);
  m->big[i].p = NULL;
  m->big[i].slab = NULL;
  m->big[i].n = 0;
  if (m->framebuf == i) m->framebuf = -1;
}

/* Every block of every call passes through h2_malloc and h2_free: their
 * common case is a jump to the pool, and the rest lives out of line. */
static __attribute__((noinline)) void *malloc_big(size_t n, uvg__h2mem_t *m) {
  void *p = n >= uvg__page_size() ? big_alloc(m, n) : NULL;
  return p != NULL ? p : uvg__pool_alloc(m->pool, n);
}

static void *h2_malloc(size_t n, void *ud) {
  uvg__h2mem_t *m = ud;
  /* Only what lives as long as the session; a large header value or
   * frame on its way through is the pool's. */
  if (!m->creating) return uvg__pool_alloc(m->pool, n);
  return malloc_big(n, m);
}

static __attribute__((noinline)) void free_aligned(void *p, uvg__h2mem_t *m) {
  int i = big_index(m, p);
  if (i >= 0)
    big_free(m, i);
  else
    uvg__pool_free(m->pool, p);
}

static void h2_free(void *p, void *ud) {
  uvg__h2mem_t *m = ud;
  /* A run is page-aligned, so at least 4096-aligned; a block of the pool
   * seldom is. */
  if (((uintptr_t)p & 4095) != 0) {
    uvg__pool_free(m->pool, p);
    return;
  }
  free_aligned(p, m);
}

static void *h2_calloc(size_t n, size_t size, void *ud) {
  if (size != 0 && n > SIZE_MAX / size) return NULL;
  void *p = h2_malloc(n * size, ud);
  if (p != NULL) memset(p, 0, n * size);
  return p;
}

static void *h2_realloc(void *p, size_t n, void *ud) {
  uvg__h2mem_t *m = ud;
  int i = big_index(m, p);
  if (i < 0 && n < uvg__page_size()) return uvg__pool_realloc(m->pool, p, n);
  size_t old = i >= 0 ? m->big[i].n : p != NULL ? uvg__pool_usable(p) : 0;
  if (i >= 0 && n <= old) return p;
  void *np = h2_malloc(n, ud);
  if (np == NULL) return NULL;
  if (p != NULL) memcpy(np, p, old < n ? old : n);
  h2_free(p, ud);
  return np;
}

nghttp2_mem uvg__h2mem_begin(uvg__h2mem_t *m) {
  m->creating = 1;
  return (nghttp2_mem){m, h2_malloc, h2_free, h2_calloc, h2_realloc};
}

void uvg__h2mem_created(uvg__h2mem_t *m) { m->creating = 0; }

static int page_is_zero(const uint8_t *p, size_t n) {
  const uint64_t *w = (const uint64_t *)p;
  uint64_t any = 0;
  for (size_t k = 0; k < n / sizeof(*w); k++) any |= w[k];
  return any == 0;
}

size_t uvg__h2mem_trim(uvg__h2mem_t *m) {
  size_t page = uvg__page_size(), given = 0;
  for (int i = 0; i < UVG__H2MEM_BIG; i++) {
    uint8_t *p = m->big[i].p;
    size_t n = m->big[i].n;
    if (p == NULL) continue;
    if (i == m->framebuf) {
      /* the last page too: the run is the block's alone */
      size_t whole = (n + page - 1) & ~(page - 1);
      if (uvg__pages_release(p, whole) == 0) given += whole;
      continue;
    }
    for (size_t off = 0; off + page <= n; off += page)
      if (page_is_zero(p + off, page) && uvg__pages_release(p + off, page) == 0)
        given += page;
  }
  return given;
}

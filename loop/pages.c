/* Page runs from slabs; see pages.h. */
#include "pages.h"
#include "poison.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>


struct uvg__pages_slab_s {
  uvg__pages_slab_t *next, *prev;
  uint8_t *base; /* its first whole page */
  unsigned free; /* pages not in a run */
  uint64_t used[UVG__PAGES_SLAB / 64];
};

size_t uvg__page_size(void) {
  /* Loops on several threads may race to store the same value. */
  static size_t page;
  size_t p = __atomic_load_n(&page, __ATOMIC_RELAXED);
  if (p == 0) {
    long v = sysconf(_SC_PAGESIZE);
    p = v > 0 ? (size_t)v : 4096;
    __atomic_store_n(&page, p, __ATOMIC_RELAXED);
  }
  return p;
}

void uvg__pages_init(uvg__pages_t *pp) { pp->slabs = NULL; }

static size_t pages_for(size_t n) {
  size_t page = uvg__page_size();
  return (n + page - 1) / page;
}

static int bit(const uvg__pages_slab_t *s, unsigned i) {
  return (int)((s->used[i / 64] >> (i % 64)) & 1);
}

static void set_bits(uvg__pages_slab_t *s, unsigned i, unsigned k, int on) {
  for (unsigned j = i; j < i + k; j++) {
    uint64_t m = (uint64_t)1 << (j % 64);
    s->used[j / 64] = on ? s->used[j / 64] | m : s->used[j / 64] & ~m;
  }
}

/* The first free run of k pages, or -1. */
static int find_run(const uvg__pages_slab_t *s, unsigned k) {
  unsigned run = 0;
  for (unsigned i = 0; i < UVG__PAGES_SLAB; i++) {
    run = bit(s, i) ? 0 : run + 1;
    if (run == k) return (int)(i + 1 - k);
  }
  return -1;
}

static void unlink_slab(uvg__pages_t *pp, uvg__pages_slab_t *s) {
  if (s->prev != NULL)
    s->prev->next = s->next;
  else
    pp->slabs = s->next;
  if (s->next != NULL) s->next->prev = s->prev;
  s->next = s->prev = NULL;
}

static void push_front(uvg__pages_t *pp, uvg__pages_slab_t *s) {
  s->prev = NULL;
  s->next = pp->slabs;
  if (pp->slabs != NULL) pp->slabs->prev = s;
  pp->slabs = s;
}

static uvg__pages_slab_t *new_slab(void) {
  size_t page = uvg__page_size();
  /* The bookkeeping goes in front of the first whole page, on the page the
   * allocator's own header already makes resident. */
  uvg__pages_slab_t *s = uvg__malloc(sizeof(*s) + UVG__PAGES_SLAB * page + page - 1);
  if (s == NULL) return NULL;
  memset(s, 0, sizeof(*s));
  s->base = (uint8_t *)(((uintptr_t)(s + 1) + page - 1) & ~(uintptr_t)(page - 1));
  s->free = UVG__PAGES_SLAB;
  /* Memory the allocator reused (or filled, as MALLOC_PERTURB_ makes
   * glibc do) is resident: start from pages that are not. */
  uvg__pages_release(s->base, UVG__PAGES_SLAB * page);
  UVG__POISON(s->base, UVG__PAGES_SLAB * page);
  return s;
}

void *uvg__pages_alloc(uvg__pages_t *pp, size_t n, uvg__pages_slab_t **slab) {
  size_t k = pages_for(n);
  if (k == 0 || k > UVG__PAGES_MAX) return NULL;
  uvg__pages_slab_t *s;
  int at = -1;
  /* Full slabs sit at the back, so the walk ends at the first of them. */
  for (s = pp->slabs; s != NULL && s->free > 0; s = s->next)
    if (s->free >= k && (at = find_run(s, (unsigned)k)) >= 0) break;
  if (s == NULL || at < 0) {
    if ((s = new_slab()) == NULL) return NULL;
    push_front(pp, s);
    at = 0;
  }
  set_bits(s, (unsigned)at, (unsigned)k, 1);
  s->free -= (unsigned)k;
  if (s->free == 0) {
    unlink_slab(pp, s);
    /* to the back: the walk above stops at it */
    uvg__pages_slab_t *last = pp->slabs;
    if (last == NULL) {
      pp->slabs = s;
    } else {
      while (last->next != NULL) last = last->next;
      last->next = s;
      s->prev = last;
    }
  }
  *slab = s;
  uint8_t *p = s->base + (size_t)at * uvg__page_size();
  UVG__UNPOISON(p, n);
  return p;
}

static void free_slab(uvg__pages_slab_t *s) {
  UVG__UNPOISON(s->base, UVG__PAGES_SLAB * uvg__page_size());
  uvg__free(s);
}

void uvg__pages_free(uvg__pages_t *pp, void *p, size_t n,
                     uvg__pages_slab_t *s) {
  if (p == NULL) return;
  size_t k = pages_for(n);
  unsigned at = (unsigned)(((uint8_t *)p - s->base) / uvg__page_size());
  /* The pages stay as they are: the owner gave back what it could while
   * it was idle, and the next run here uses them again. */
  UVG__POISON(p, k * uvg__page_size());
  set_bits(s, at, (unsigned)k, 0);
  s->free += (unsigned)k;
  unlink_slab(pp, s);
  /* An empty slab goes back at once, so what a scheduler holds follows
   * its connections. (A connection opened and closed over and over takes
   * a slab each time: from the top of the C library's heap, that costs
   * little.) */
  if (s->free == UVG__PAGES_SLAB)
    free_slab(s);
  else
    push_front(pp, s);
}

int uvg__pages_release(void *p, size_t n) {
  size_t whole = n & ~(uvg__page_size() - 1);
  if (whole == 0) return 0;
  return madvise(p, whole, MADV_DONTNEED) == 0 ? 0 : -1;
}

size_t uvg__pages_resident(const uvg__pages_t *pp) {
  size_t page = uvg__page_size(), r = 0;
  unsigned char v[UVG__PAGES_SLAB];
  for (const uvg__pages_slab_t *s = pp->slabs; s != NULL; s = s->next) {
    if (mincore(s->base, UVG__PAGES_SLAB * page, v) != 0) continue;
    for (unsigned i = 0; i < UVG__PAGES_SLAB; i++) r += bit(s, i) && (v[i] & 1);
  }
  return r;
}

void uvg__pages_fini(uvg__pages_t *pp) {
  while (pp->slabs != NULL) {
    uvg__pages_slab_t *s = pp->slabs;
    unlink_slab(pp, s);
    free_slab(s);
  }
}

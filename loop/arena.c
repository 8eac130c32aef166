/* Bump allocation in chained blocks; see arena.h. */
#include "arena.h"

#include <stdalign.h>
#include <string.h>

#define ALIGN alignof(max_align_t)

struct uvg__arena_block_s {
  uvg__arena_block_t *next; /* the block before this one */
  size_t size, used;
  uint8_t external; /* the caller's memory: never freed here */
  alignas(max_align_t) unsigned char data[];
};

void uvg__arena_init(uvg__arena_t *a) {
  memset(a, 0, sizeof(*a));
}

void uvg__arena_init_buf(uvg__arena_t *a, void *buf, size_t size) {
  uvg__arena_init(a);
  uvg__arena_block_t *b = buf;
  b->next = NULL;
  b->size = size - sizeof(*b);
  b->used = 0;
  b->external = 1;
  a->head = a->first = b;
}

static size_t round_up(size_t n) {
  return (n + ALIGN - 1) & ~(ALIGN - 1);
}

void *uvg__arena_alloc(uvg__arena_t *a, size_t n) {
  n = round_up(n ? n : 1);
  uvg__arena_block_t *b = a->head;
  if (b != NULL && b->size - b->used >= n) {
    void *p = b->data + b->used;
    b->used += n;
    return p;
  }
  /* Each new block doubles the last, so many small allocations cost
   * O(log size) blocks. An allocation of half that or more gets a block
   * of its own size, behind the head, which goes on serving small ones:
   * doubling for it would make the next large one's block twice its
   * size, past the C library's mmap threshold (128 KiB) for 64 KiB
   * messages, and so fresh pages from the kernel on every call. */
  size_t size = b ? b->size * 2 : UVG__ARENA_FIRST;
  int own = n >= size / 2;
  if (own) size = n;
  uvg__arena_block_t *nb = uvg__malloc(sizeof(*nb) + size);
  if (nb == NULL) {
    a->failed = 1;
    return NULL;
  }
  nb->size = size;
  nb->used = n;
  nb->external = 0;
  if (own && b != NULL) {
    nb->next = b->next;
    b->next = nb;
    return nb->data;
  }
  nb->next = b;
  a->head = nb;
  if (a->first == NULL) a->first = nb;
  return nb->data;
}

char *uvg__arena_strndup(uvg__arena_t *a, const char *s, size_t n) {
  char *d = uvg__arena_alloc(a, n + 1);
  if (d == NULL) return NULL;
  if (n > 0) memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

void uvg__arena_reset(uvg__arena_t *a) {
  uvg__arena_block_t *keep = a->first;
  if (keep != NULL && !keep->external && keep->size > UVG__ARENA_KEEP_MAX)
    keep = NULL;
  for (uvg__arena_block_t *b = a->head, *next; b != NULL; b = next) {
    next = b->next;
    if (b != keep && !b->external) uvg__free(b);
  }
  a->head = a->first = keep;
  if (keep != NULL) {
    keep->used = 0;
    keep->next = NULL; /* a block of one allocation may have followed it */
  }
  a->failed = 0;
}

void uvg__arena_free(uvg__arena_t *a) {
  for (uvg__arena_block_t *b = a->head, *next; b != NULL; b = next) {
    next = b->next;
    if (!b->external) uvg__free(b);
  }
  uvg__arena_init(a);
}

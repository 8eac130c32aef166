/* Size-classed free lists; see pool.h. */
#include "pool.h"
#include "poison.h"

#include <stdalign.h>
#include <string.h>

#define DIRECT 0xff /* the class of a block too large for the lists */


/* Half-power steps: a block wastes at most a third of itself. Some blocks
 * live as long as their connection (nghttp2's header table entries), so
 * rounding shows in the memory an idle connection holds. */
static const uint16_t class_size[UVG__POOL_CLASSES] = {
    32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048};

/* 16 bytes before the caller's: aligned as malloc's blocks are. */
struct uvg__pool_block_s {
  alignas(max_align_t) union {
    size_t size;             /* usable bytes, while allocated */
    uvg__pool_block_t *next; /* on a free list */
  } u;
  uint8_t cls; /* size class, or DIRECT */
};

void uvg__pool_init(uvg__pool_t *p) { memset(p, 0, sizeof(*p)); }

static unsigned class_of(size_t n) {
  unsigned c = 0;
  while (c < UVG__POOL_CLASSES && class_size[c] < n) c++;
  return c;
}

static void *block_data(uvg__pool_block_t *b) { return b + 1; }
static uvg__pool_block_t *block_of(void *ptr) {
  return (uvg__pool_block_t *)ptr - 1;
}

void *uvg__pool_alloc(uvg__pool_t *p, size_t n) {
  unsigned c = class_of(n);
  uvg__pool_block_t *b;
  size_t size;
  if (c < UVG__POOL_CLASSES && (b = p->free[c]) != NULL) {
    p->free[c] = b->u.next;
    p->kept[c]--;
    size = class_size[c];
    UVG__UNPOISON(block_data(b), size);
  } else {
    size = c < UVG__POOL_CLASSES ? class_size[c] : n;
    if (size > SIZE_MAX - sizeof(*b)) return NULL;
    if ((b = uvg__malloc(sizeof(*b) + size)) == NULL) return NULL;
  }
  b->u.size = size;
  b->cls = c < UVG__POOL_CLASSES ? (uint8_t)c : DIRECT;
  return block_data(b);
}

void *uvg__pool_calloc(uvg__pool_t *p, size_t n, size_t size) {
  if (size != 0 && n > SIZE_MAX / size) return NULL;
  void *ptr = uvg__pool_alloc(p, n * size);
  if (ptr != NULL) memset(ptr, 0, n * size);
  return ptr;
}

void *uvg__pool_realloc(uvg__pool_t *p, void *ptr, size_t n) {
  if (ptr == NULL) return uvg__pool_alloc(p, n);
  uvg__pool_block_t *b = block_of(ptr);
  if (n <= b->u.size) return ptr;
  void *np = uvg__pool_alloc(p, n);
  if (np == NULL) return NULL;
  memcpy(np, ptr, b->u.size);
  uvg__pool_free(p, ptr);
  return np;
}

size_t uvg__pool_usable(const void *ptr) {
  return ((const uvg__pool_block_t *)ptr - 1)->u.size;
}

void uvg__pool_free(uvg__pool_t *p, void *ptr) {
  if (ptr == NULL) return;
  uvg__pool_block_t *b = block_of(ptr);
  unsigned c = b->cls;
  if (c == DIRECT ||
      ((size_t)p->kept[c] + 1) * class_size[c] > UVG__POOL_KEEP) {
    uvg__free(b);
    return;
  }
  b->u.next = p->free[c];
  p->free[c] = b;
  p->kept[c]++;
  UVG__POISON(block_data(b), class_size[c]);
}

size_t uvg__pool_kept_bytes(const uvg__pool_t *p) {
  size_t n = 0;
  for (unsigned c = 0; c < UVG__POOL_CLASSES; c++)
    n += p->kept[c] * (sizeof(uvg__pool_block_t) + class_size[c]);
  return n;
}

void uvg__pool_trim(uvg__pool_t *p) {
  for (unsigned c = 0; c < UVG__POOL_CLASSES; c++) {
    while (p->free[c] != NULL) {
      uvg__pool_block_t *b = p->free[c];
      p->free[c] = b->u.next;
      UVG__UNPOISON(block_data(b), class_size[c]);
      uvg__free(b);
    }
    p->kept[c] = 0;
  }
}

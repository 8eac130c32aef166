/* The one replaceable allocator every allocation of the library uses. */
#include <stdlib.h>
#include <string.h>

#include "common.h"

static void *(*malloc_fn)(size_t) = malloc;
static void *(*realloc_fn)(void *, size_t) = realloc;
static void (*free_fn)(void *) = free;

int uvg_set_allocator(void *(*m)(size_t), void *(*r)(void *, size_t),
                      void (*f)(void *)) {
  if (m == NULL || r == NULL || f == NULL) return UVG_EINVAL;
  malloc_fn = m;
  realloc_fn = r;
  free_fn = f;
  return 0;
}

void *uvg__malloc(size_t n) { return malloc_fn(n ? n : 1); }

void *uvg__calloc(size_t n, size_t size) {
  if (size != 0 && n > SIZE_MAX / size) return NULL;
  size_t total = n * size;
  void *p = malloc_fn(total > 0 ? total : 1);
  if (p != NULL) memset(p, 0, total);
  return p;
}

void *uvg__realloc(void *p, size_t n) { return realloc_fn(p, n ? n : 1); }

void uvg__free(void *p) {
  if (p != NULL) free_fn(p);
}

char *uvg__strndup(const char *s, size_t n) {
  char *d = uvg__malloc(n + 1);
  if (d == NULL) return NULL;
  if (n > 0) memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

char *uvg__strdup(const char *s) { return uvg__strndup(s, strlen(s)); }

/* The plugin's memory: a pool of strings freed at exit, and a string
 * builder. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

typedef struct chunk_s {
  struct chunk_s *next;
  char data[];
} chunk_t;

static chunk_t *pool;

void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (p == NULL) {
    fputs("protoc-gen-uvgrpc: out of memory\n", stderr);
    exit(1);
  }
  return p;
}

void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (q == NULL) {
    fputs("protoc-gen-uvgrpc: out of memory\n", stderr);
    exit(1);
  }
  return q;
}

static char *pool_alloc(size_t n) {
  chunk_t *c = xmalloc(sizeof(*c) + n);
  c->next = pool;
  pool = c;
  return c->data;
}

char *pstrf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *s = pool_alloc((size_t)n + 1);
  va_start(ap, fmt);
  vsnprintf(s, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return s;
}

char *pstrndup(const char *s, size_t n) {
  char *p = pool_alloc(n + 1);
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

void pool_free(void) {
  while (pool != NULL) {
    chunk_t *c = pool;
    pool = c->next;
    free(c);
  }
}

static void sb_reserve(sb_t *b, size_t extra) {
  if (b->len + extra + 1 <= b->cap) return;
  size_t cap = b->cap ? b->cap : 1024;
  while (cap < b->len + extra + 1) cap *= 2;
  b->s = xrealloc(b->s, cap);
  b->cap = cap;
}

void sb_vadd(sb_t *b, const char *fmt, va_list ap) {
  /* Never NULL; said so because GCC's UBSan builds otherwise see a NULL
   * path in their own checks and warn. */
  if (fmt == NULL) return;
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  sb_reserve(b, (size_t)n);
  vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
  b->len += (size_t)n;
}

void sb_add(sb_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  sb_vadd(b, fmt, ap);
  va_end(ap);
}

void sb_addn(sb_t *b, const char *s, size_t n) {
  sb_reserve(b, n);
  memcpy(b->s + b->len, s, n);
  b->len += n;
  b->s[b->len] = '\0';
}

void sb_free(sb_t *b) {
  free(b->s);
  b->s = NULL;
  b->len = b->cap = 0;
}

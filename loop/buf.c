#include "buf.h"

#include <string.h>

int uvg__bytes_reserve(uvg__bytes_t *b, size_t extra) {
  if (b->cap - b->len >= extra) return 0;
  if (extra > SIZE_MAX / 2 - b->len) return UVG_ENOMEM;
  size_t cap = b->cap ? b->cap : 256;
  while (cap - b->len < extra) cap *= 2;
  uint8_t *d = uvg__realloc(b->data, cap);
  if (d == NULL) return UVG_ENOMEM;
  b->data = d;
  b->cap = cap;
  return 0;
}

int uvg__bytes_append(uvg__bytes_t *b, const void *p, size_t n) {
  if (n == 0) return 0;
  if (uvg__bytes_reserve(b, n) != 0) return UVG_ENOMEM;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

void uvg__bytes_free(uvg__bytes_t *b) {
  uvg__free(b->data);
  uvg__bytes_init(b);
}

uvg__rbuf_t *uvg__rbuf_new(const void *src, size_t len) {
  if (len > SIZE_MAX - sizeof(uvg__rbuf_t)) return NULL;
  uvg__rbuf_t *b = uvg__malloc(sizeof(*b) + len);
  if (b == NULL) return NULL;
  b->refs = 1;
  b->len = len;
  if (src != NULL && len > 0) memcpy(b->data, src, len);
  return b;
}

void uvg__rbuf_unref(uvg__rbuf_t *b) {
  if (b != NULL && --b->refs == 0) uvg__free(b);
}

void uvg__iovs_init(uvg__iovs_t *v) {
  v->iov = NULL;
  v->is_arena = NULL;
  v->n = v->cap = 0;
  v->bytes = 0;
  uvg__bytes_init(&v->arena);
}

static int grow(uvg__iovs_t *v) {
  if (v->n < v->cap) return 0;
  unsigned cap = v->cap ? v->cap * 2 : 16;
  uv_buf_t *iov = uvg__realloc(v->iov, cap * sizeof(*iov));
  if (iov == NULL) return UVG_ENOMEM;
  v->iov = iov;
  uint8_t *is_arena = uvg__realloc(v->is_arena, cap);
  if (is_arena == NULL) return UVG_ENOMEM;
  v->is_arena = is_arena;
  v->cap = cap;
  return 0;
}

int uvg__iovs_copy(uvg__iovs_t *v, const void *p, size_t n) {
  if (n == 0) return 0;
  size_t off = v->arena.len;
  if (uvg__bytes_append(&v->arena, p, n) != 0) return UVG_ENOMEM;
  if (v->n > 0 && v->is_arena[v->n - 1]) {
    v->iov[v->n - 1].len += n;
    v->bytes += n;
    return 0;
  }
  if (grow(v) != 0) {
    v->arena.len = off;
    return UVG_ENOMEM;
  }
  v->iov[v->n] = uv_buf_init((char *)(uintptr_t)off, (unsigned)n);
  v->is_arena[v->n++] = 1;
  v->bytes += n;
  return 0;
}

int uvg__iovs_ref(uvg__iovs_t *v, const void *p, size_t n) {
  if (n == 0) return 0;
  if (grow(v) != 0) return UVG_ENOMEM;
  v->iov[v->n] = uv_buf_init((char *)p, (unsigned)n);
  v->is_arena[v->n++] = 0;
  v->bytes += n;
  return 0;
}

void uvg__iovs_finish(uvg__iovs_t *v) {
  for (unsigned i = 0; i < v->n; i++)
    if (v->is_arena[i]) {
      v->iov[i].base = (char *)v->arena.data + (uintptr_t)v->iov[i].base;
      v->is_arena[i] = 0;
    }
}

void uvg__iovs_consume(uvg__iovs_t *v, size_t n) {
  unsigned i = 0;
  v->bytes -= n;
  while (i < v->n && n >= v->iov[i].len) n -= v->iov[i++].len;
  if (i < v->n) {
    v->iov[i].base += n;
    v->iov[i].len -= n;
  }
  v->n -= i;
  memmove(v->iov, v->iov + i, v->n * sizeof(*v->iov));
  memmove(v->is_arena, v->is_arena + i, v->n);
}

void uvg__iovs_reset(uvg__iovs_t *v) {
  v->n = 0;
  v->bytes = 0;
  v->arena.len = 0;
}

void uvg__iovs_free(uvg__iovs_t *v) {
  uvg__free(v->iov);
  uvg__free(v->is_arena);
  uvg__bytes_free(&v->arena);
  uvg__iovs_init(v);
}

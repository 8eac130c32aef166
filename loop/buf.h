/*
 * Byte buffers: a growable buffer (uvg__bytes_t), a refcounted immutable
 * buffer (uvg__rbuf_t) and an iovec chain (uvg__iovs_t) that a writer hands
 * to one uv_write().
 */
#ifndef UVG_LOOP_BUF_H
#define UVG_LOOP_BUF_H

#include <uv.h>

#include "common.h"

typedef struct {
  uint8_t *data;
  size_t len, cap;
} uvg__bytes_t;

static inline void uvg__bytes_init(uvg__bytes_t *b) {
  b->data = NULL;
  b->len = b->cap = 0;
}
/* Makes room for `extra` more bytes. Returns 0 or UVG_ENOMEM. */
int uvg__bytes_reserve(uvg__bytes_t *b, size_t extra);
/* Appends n bytes. Returns 0 or UVG_ENOMEM (b unchanged). */
int uvg__bytes_append(uvg__bytes_t *b, const void *p, size_t n);
void uvg__bytes_free(uvg__bytes_t *b);

/* Refcounted buffer: header and bytes in one allocation. */
typedef struct {
  uint32_t refs;
  size_t len;
  uint8_t data[];
} uvg__rbuf_t;

/* Returns a buffer of `len` bytes with one reference, copying `src` in when
 * not NULL; NULL on allocation failure. */
uvg__rbuf_t *uvg__rbuf_new(const void *src, size_t len);
static inline uvg__rbuf_t *uvg__rbuf_ref(uvg__rbuf_t *b) {
  b->refs++;
  return b;
}
void uvg__rbuf_unref(uvg__rbuf_t *b);

/* iovec chain. An entry is either an offset into an arena (bytes copied,
 * resolved to a pointer when the chain is finished, since the arena may move
 * while it grows) or a pointer to bytes owned elsewhere. */
typedef struct {
  uv_buf_t *iov;
  uint8_t *is_arena; /* per entry: base holds an arena offset */
  unsigned n, cap;
  size_t bytes; /* in all entries: kept as they are added */
  uvg__bytes_t arena;
} uvg__iovs_t;

void uvg__iovs_init(uvg__iovs_t *v);
/* Copies n bytes into the arena, merging with a preceding arena entry.
 * Returns 0 or UVG_ENOMEM. */
int uvg__iovs_copy(uvg__iovs_t *v, const void *p, size_t n);
/* References n bytes owned by the caller, valid until uvg__iovs_reset().
 * Returns 0 or UVG_ENOMEM. */
int uvg__iovs_ref(uvg__iovs_t *v, const void *p, size_t n);
/* Turns arena offsets into pointers; call once before handing iov out. */
void uvg__iovs_finish(uvg__iovs_t *v);
static inline size_t uvg__iovs_bytes(const uvg__iovs_t *v) { return v->bytes; }
/* Drops the first n bytes (a write took them) of a finished chain. */
void uvg__iovs_consume(uvg__iovs_t *v, size_t n);
/* Empties the chain, keeping its memory for the next turn. */
void uvg__iovs_reset(uvg__iovs_t *v);
void uvg__iovs_free(uvg__iovs_t *v);

#endif

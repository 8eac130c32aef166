/*
 * Free lists of small blocks by size class, for memory that is allocated
 * and freed at the pace of calls: nghttp2's streams, queued frames and
 * header copies, a call's send and receive records. A block freed here is
 * kept for the next allocation of its class instead of going back to the
 * allocator, so steady-state traffic allocates nothing. What a class keeps
 * is capped (UVG__POOL_KEEP bytes), so a burst of streams does not pin its
 * peak for good. One pool per scheduler; loop thread only.
 *
 * Every block carries a 16-byte header with its size, so a block can be
 * freed or resized without knowing its size. Blocks larger than the
 * largest class go to the allocator directly.
 */
#ifndef UVG_LOOP_POOL_H
#define UVG_LOOP_POOL_H

#include "common.h"

#define UVG__POOL_CLASSES 13 /* 32, 48, 64, 96, ... 1536, 2048 bytes */
#define UVG__POOL_KEEP (64 * 1024)

typedef struct uvg__pool_block_s uvg__pool_block_t;

typedef struct {
  uvg__pool_block_t *free[UVG__POOL_CLASSES];
  uint32_t kept[UVG__POOL_CLASSES]; /* blocks on each list */
} uvg__pool_t;

void uvg__pool_init(uvg__pool_t *p);
/* `n` bytes aligned for any type, or NULL when the allocator fails. */
void *uvg__pool_alloc(uvg__pool_t *p, size_t n);
/* The same, zeroed. NULL also when n * size overflows. */
void *uvg__pool_calloc(uvg__pool_t *p, size_t n, size_t size);
/* realloc() for a block of this pool (or NULL); NULL and `ptr` untouched
 * when the allocator fails. */
void *uvg__pool_realloc(uvg__pool_t *p, void *ptr, size_t n);
/* The bytes a block of this pool may hold (at least what was asked). */
size_t uvg__pool_usable(const void *ptr);
/* Takes back a block of this pool; NULL is ignored. */
void uvg__pool_free(uvg__pool_t *p, void *ptr);
/* The heap the free lists hold, headers included. */
size_t uvg__pool_kept_bytes(const uvg__pool_t *p);
/* Gives every kept block back to the allocator; the pool stays usable. */
void uvg__pool_trim(uvg__pool_t *p);

#endif

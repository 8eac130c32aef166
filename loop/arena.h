/*
 * A bump allocator for memory that dies all at once: a decoded message's
 * fields, a call's scratch space. Blocks are chained; allocating is a
 * pointer bump in the newest block, and only a block that fills up costs
 * an allocation. Reset frees everything but the first block, which the
 * next use of the arena starts from, so an arena that is reused (a pooled
 * call) allocates nothing in steady state. Loop thread only.
 */
#ifndef UVG_LOOP_ARENA_H
#define UVG_LOOP_ARENA_H

#include "common.h"

typedef struct uvg__arena_block_s uvg__arena_block_t;

typedef struct {
  uvg__arena_block_t *head;  /* the newest block; NULL when empty */
  uvg__arena_block_t *first; /* the oldest, kept over a reset */
  uint8_t failed;            /* an allocation failed since the reset */
} uvg__arena_t;

/* The first block's size, and the largest first block a reset keeps. */
#define UVG__ARENA_FIRST 1024
#define UVG__ARENA_KEEP_MAX 4096

/* An empty arena: allocates nothing until used. */
void uvg__arena_init(uvg__arena_t *a);
/* An arena whose first block is the caller's `buf` of `size` bytes (at
 * least 64, aligned for any type), never freed by the arena; the arena
 * must be reset or freed before `buf` goes. */
void uvg__arena_init_buf(uvg__arena_t *a, void *buf, size_t size);
/* `n` bytes aligned for any type, valid until the next reset or free.
 * Returns NULL (and sets `failed`) when the allocator does. */
void *uvg__arena_alloc(uvg__arena_t *a, size_t n);
/* A NUL-terminated copy of `n` bytes at `s` in the arena, or NULL. */
char *uvg__arena_strndup(uvg__arena_t *a, const char *s, size_t n);
/* Releases every allocation; keeps the first block if it is at most
 * UVG__ARENA_KEEP_MAX bytes (or the caller's). */
void uvg__arena_reset(uvg__arena_t *a);
/* Releases everything; the arena is empty and may be used again. */
void uvg__arena_free(uvg__arena_t *a);

#endif

/*
 * Whole pages, for buffers that a connection keeps for its whole life but
 * only needs while it is busy (nghttp2's outbound frame buffer and stream
 * map): a run of pages shares no page with anything else, so an idle owner
 * can give it back to the kernel (uvg__pages_release) and keep the address.
 * A released page reads as zeros and is faulted in again when written.
 *
 * Runs are carved from slabs of UVG__PAGES_SLAB pages taken from the
 * library's allocator, with their bookkeeping (a bitmap) outside the pages
 * so that nothing touches a page but its owner. A freed run keeps its pages
 * for the next run there; a slab goes back to the allocator once its last
 * run is freed. One set per scheduler; loop thread only.
 */
#ifndef UVG_LOOP_PAGES_H
#define UVG_LOOP_PAGES_H

#include "common.h"

#define UVG__PAGES_SLAB 256
#define UVG__PAGES_MAX 8 /* the longest run, in pages */

typedef struct uvg__pages_slab_s uvg__pages_slab_t;

typedef struct {
  uvg__pages_slab_t *slabs; /* slabs with a free page first */
} uvg__pages_t;

/* The system's page size. Thread-safe. */
size_t uvg__page_size(void);

void uvg__pages_init(uvg__pages_t *pp);
/* A page-aligned run of pages holding `n` bytes (n <= UVG__PAGES_MAX
 * pages) and the slab it came from, which freeing it needs; NULL
 * when the allocator fails or n is out of range. */
void *uvg__pages_alloc(uvg__pages_t *pp, size_t n, uvg__pages_slab_t **slab);
/* Gives back a run of uvg__pages_alloc(pp, n, ...), pages and all. */
void uvg__pages_free(uvg__pages_t *pp, void *p, size_t n,
                     uvg__pages_slab_t *slab);
/* The whole pages of the `n` bytes at `p` (page-aligned) go back to the
 * kernel; they stay the caller's and read as zeros. Returns 0, or -1 when
 * the kernel refused (then they hold what they held). Thread-safe. */
int uvg__pages_release(void *p, size_t n);
/* Pages of live runs that are resident, by mincore(): for tests. */
size_t uvg__pages_resident(const uvg__pages_t *pp);
/* Frees every slab; every run must have been freed. */
void uvg__pages_fini(uvg__pages_t *pp);

#endif

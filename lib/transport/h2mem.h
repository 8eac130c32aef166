/*
 * nghttp2's memory for one connection.
 *
 * Small blocks (streams, queued frames, header table entries) come from the
 * scheduler's free lists. The blocks of a page or more that nghttp2 makes
 * with the session (its outbound frame buffer, 16 KiB; its stream map,
 * 4 KiB in the nghttp2 of Debian 12) are runs of pages (loop/pages.h),
 * recorded here, so that a
 * connection idle for a while can give their pages back to the kernel
 * (uvg__h2mem_trim): on a server with many idle connections they would be
 * most of what each one holds. A page given back reads as zeros and costs
 * one page fault when the connection is next used.
 */
#ifndef UVG_TRANSPORT_H2MEM_H
#define UVG_TRANSPORT_H2MEM_H

#include <nghttp2/nghttp2.h>

#include "../../loop/pages.h"
#include "../../loop/pool.h"

#define UVG__H2MEM_BIG 3 /* more large blocks than this come from the pool */

typedef struct {
  uvg__pool_t *pool;
  uvg__pages_t *pages;
  struct {
    uint8_t *p; /* a run of pages */
    size_t n;
    uvg__pages_slab_t *slab;
  } big[UVG__H2MEM_BIG];
  int8_t framebuf;   /* big[] index of the outbound frame buffer, or -1 */
  uint8_t creating;  /* the session is being made */
} uvg__h2mem_t;

void uvg__h2mem_init(uvg__h2mem_t *m, uvg__pool_t *pool, uvg__pages_t *pages);

/* The allocator to make the session with; `m` must outlive the session.
 * Call uvg__h2mem_created() once nghttp2_session_*_new has returned. */
nghttp2_mem uvg__h2mem_begin(uvg__h2mem_t *m);
void uvg__h2mem_created(uvg__h2mem_t *m);

/* Gives back the pages nghttp2 does not need while nothing is in flight:
 * the outbound frame buffer's (nghttp2 writes each frame into it from its
 * start, so between frames its bytes are dead) and, of any other large
 * block, the pages that are all zeros (an empty stream map). Call only
 * when nghttp2 has no frame half sent (nghttp2_session_want_write() == 0).
 * Returns the bytes given back. */
size_t uvg__h2mem_trim(uvg__h2mem_t *m);

#endif

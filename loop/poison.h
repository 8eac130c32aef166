/*
 * Memory a free list or a page run keeps for later is poisoned under
 * AddressSanitizer, so that a use after free of a pooled object is
 * reported as ASan reports one of malloc's, instead of reading the next
 * owner's data. Without ASan the macros do nothing.
 */
#ifndef UVG_LOOP_POISON_H
#define UVG_LOOP_POISON_H

#if defined(__SANITIZE_ADDRESS__)
#define UVG__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UVG__ASAN 1
#endif
#endif

#ifdef UVG__ASAN
#include <sanitizer/asan_interface.h>
#define UVG__POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UVG__UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define UVG__POISON(p, n) ((void)(p), (void)(n))
#define UVG__UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#endif

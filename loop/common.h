/*
 * Shared internals of every layer: the allocator hook, intrusive lists,
 * container-of, logging and trace flags. Loop thread only unless a
 * function says otherwise.
 */
#ifndef UVG_LOOP_COMMON_H
#define UVG_LOOP_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "uvgrpc.h"

#define uvg__container_of(ptr, type, member) \
  ((type *)((char *)(ptr) - offsetof(type, member)))

#define UVG__ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- allocator (uvg_set_allocator) : thread-safe if the hook is ---- */
void *uvg__malloc(size_t n);
void *uvg__calloc(size_t n, size_t size);
void *uvg__realloc(void *p, size_t n);
void uvg__free(void *p);
/* Returns a NUL-terminated copy of `s` (NULL on allocation failure). */
char *uvg__strdup(const char *s);
char *uvg__strndup(const char *s, size_t n);

/* ---- random numbers (loop/rand.c): thread-safe ---- */
/* A uniform 64-bit number from this thread's generator, seeded from the
 * kernel (uv_random) at first use and again in a forked child. The C
 * library's rand() state is not touched. For jitter, not for secrets. */
uint64_t uvg__random(void);

/* ---- intrusive doubly linked list; an empty head points at itself ---- */
typedef struct uvg__list_s {
  struct uvg__list_s *next;
  struct uvg__list_s *prev;
} uvg__list_t;

static inline void uvg__list_init(uvg__list_t *h) { h->next = h->prev = h; }
static inline int uvg__list_empty(const uvg__list_t *h) { return h->next == h; }
static inline void uvg__list_push(uvg__list_t *h, uvg__list_t *n) {
  n->prev = h->prev;
  n->next = h;
  h->prev->next = n;
  h->prev = n;
}
/* Unlinks `n` and leaves it as an empty list, so removing twice is safe. */
static inline void uvg__list_remove(uvg__list_t *n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->next = n->prev = n;
}
/* Moves every node of `from` to the end of `to`; `from` becomes empty. */
static inline void uvg__list_move(uvg__list_t *from, uvg__list_t *to) {
  if (uvg__list_empty(from)) return;
  from->next->prev = to->prev;
  to->prev->next = from->next;
  from->prev->next = to;
  to->prev = from->prev;
  uvg__list_init(from);
}

/* ---- logging and tracing ---- */
enum {
  UVG__TRACE_API = 1u << 0,
  UVG__TRACE_TRANSPORT = 1u << 1,
  UVG__TRACE_WRITER = 1u << 2,
  UVG__TRACE_SERVER = 1u << 3,
  UVG__TRACE_CALL = 1u << 4,
  UVG__TRACE_TLS = 1u << 5
};
extern unsigned uvg__trace_flags;

/* Parses UVG_TRACE once per process; later calls do nothing. Thread-safe:
 * a call made while another thread parses returns when the flags are set. */
void uvg__trace_init(void);
void uvg__log(uvg_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define UVG__TRACE(flag, ...)                                   \
  do {                                                          \
    if (uvg__trace_flags & (flag)) uvg__log(UVG_LOG_TRACE, __VA_ARGS__); \
  } while (0)

#endif

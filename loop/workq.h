/*
 * Ordered closures run on the loop: the replacement for a goroutine reading
 * a channel. A scheduler owns the libuv handles; any number of work queues,
 * embedded in their owners, share it. Every server and channel on a loop
 * shares that loop's one scheduler (uvg__sched_acquire()), so a closure of
 * one that produces frames for a connection of another still leads to one
 * flush of that connection per turn.
 *
 * A queue's closures run in the order they were posted, never re-entrantly
 * from inside uvg__workq_post(), in the check phase of the loop turn in which
 * they were posted (right after that turn's I/O callbacks). A closure posted
 * while queues are being drained runs in the next turn, so one turn does a
 * bounded amount of work; the scheduler keeps poll from blocking while work
 * is pending.
 *
 * Liveness: pending closures keep uv_run() going; armed timers do not, as
 * grpc-js unrefs its timers. A program whose servers are closed and whose
 * channels are idle must return from uv_run(), and what a timer of ours
 * waits for is tied to a handle that keeps the loop alive by itself when it
 * should: keepalive, idle, age, handshake, drain and linger timers to their
 * connection's socket (read until it closes), a call's deadline to its
 * connection, a shutdown's grace period to the connections it waits for. A
 * wait that nothing but a timer ends takes a hold (uvg__sched_hold()).
 */
#ifndef UVG_LOOP_WORKQ_H
#define UVG_LOOP_WORKQ_H

#include <uv.h>

#include "common.h"
#include "pages.h"
#include "pool.h"

/* status: 0 when run normally, UVG_ECANCELED when the queue closed first (the
 * closure should only free what `arg` owns). */
typedef void (*uvg__work_fn)(void *arg, int status);

typedef struct uvg__work_s {
  uvg__list_t link;
  uvg__work_fn fn;
  void *arg;
  uint8_t owned; /* embedded in its owner: never returned to the pool */
} uvg__work_t;

typedef struct uvg__timer_s uvg__timer_t;
typedef struct uvg__sched_s uvg__sched_t;

/* A one-shot timer (timer.h). */
struct uvg__timer_s {
  uvg__sched_t *sched;
  /* heap links; all NULL while disarmed (parent is NULL for the root too) */
  struct uvg__timer_s *parent, *left, *right;
  uint64_t due; /* uv_now() milliseconds */
  uint64_t seq; /* start order: equal due times fire first started first */
  int armed;
  void (*cb)(uvg__timer_t *t);
};

struct uvg__sched_s {
  uv_loop_t *loop;
  /* drains the ready queues after each poll; unref'd except while held */
  uv_check_t check;
  uv_idle_t idle;    /* active while work is pending: poll must not block */
  uv_timer_t timer;  /* due time of the earliest uvg__timer_t; unref'd */
  uvg__list_t ready; /* queues with pending closures */
  uvg__list_t pool;  /* free work nodes */
  uvg__pool_t mem;   /* free blocks for per-call memory (nghttp2's) */
  uvg__pages_t pages; /* page runs for connections' buffers */
  struct uvg__workq_s *draining; /* the queue being drained, or NULL */
  uvg__timer_t *heap;  /* root of the armed timers' heap (loop/timer.c) */
  size_t heap_n;       /* armed timers */
  uint64_t timer_seq;  /* starts so far, to order equal due times */
  unsigned refs;  /* references of a shared scheduler; 0 for a private one */
  struct uvg__sched_s *next_shared; /* in workq.c's list of shared ones */
  unsigned holds; /* uvg__sched_hold() calls not yet undone */
  int handles_open;
  int closing;
  void (*close_cb)(struct uvg__sched_s *);
  /* connections without streams, oldest first, to give memory back once
   * they have been idle a while (lib/transport/conn.c) */
  uvg__list_t idle_conns;
  uvg__timer_t idle_timer;
  uint64_t idle_trim_ms; /* how long idle first (tests shorten it) */
  uint64_t idle_trims;   /* times a connection gave memory back */
  uint64_t idle_trimmed; /* bytes given back those times */
};

typedef struct uvg__workq_s {
  uvg__sched_t *sched;
  uvg__list_t items;
  size_t n;               /* closures in items */
  size_t turn_n;          /* how many of them the current turn runs */
  uvg__list_t ready_link; /* in sched->ready, or self-linked */
  int closed;
} uvg__workq_t;

/* The scheduler of `loop` that the library's servers and channels share:
 * the first call on a loop creates it, later ones return the same one. Each
 * successful call takes a reference that uvg__sched_release() gives back.
 * Loop thread only; loops run by different threads never share one.
 *
 * The scheduler is found in a process-wide list of the shared ones, by
 * loop, under a lock: O(loops in the process), whatever the number of
 * handles on the loop (walking them, as this once did, made creating the
 * n-th of many channels on a loop O(n)). The last release takes it off the
 * list, so a scheduler that is closing is never returned: an acquire after
 * the last release creates a new one.
 *
 * Returns 0, UVG_ENOMEM or a libuv error (then *out is unchanged). */
int uvg__sched_acquire(uv_loop_t *loop, uvg__sched_t **out);

/* Gives back a reference taken by uvg__sched_acquire(). The last one closes
 * the scheduler, which frees itself once its handles are closed; by then
 * every queue on it must be closed, every timer stopped and every hold
 * undone, as nothing may use it afterwards. */
void uvg__sched_release(uvg__sched_t *s);

/* Keeps uv_run() from returning while held, without keeping poll from
 * blocking: for a wait that only a timer ends and that the loop must not
 * end first (the listener's accept back-off, while its socket is not
 * polled). Holds nest; each needs one uvg__sched_unhold(). */
void uvg__sched_hold(uvg__sched_t *s);
void uvg__sched_unhold(uvg__sched_t *s);

/* Initialises a private scheduler in memory the caller owns, which
 * uvg__sched_acquire() never returns (tests, and code that must not share
 * its loop turns). Returns 0 or a libuv error. */
int uvg__sched_init(uv_loop_t *loop, uvg__sched_t *s);

/* Closes a private scheduler's handles; every queue must be closed already.
 * `cb` runs once the handles are closed; then `s` may be freed. */
void uvg__sched_close(uvg__sched_t *s, void (*cb)(uvg__sched_t *s));

void uvg__workq_init(uvg__sched_t *s, uvg__workq_t *q);

/* Queues fn(arg, 0). Returns 0; UVG_ECLOSED after uvg__workq_close() (fn
 * will not run); UVG_ENOMEM. */
int uvg__workq_post(uvg__workq_t *q, uvg__work_fn fn, void *arg);

/* Queues fn(arg, 0) on a node the caller embeds in its own object, so the
 * post cannot fail for want of memory: a notification that must be
 * delivered (a call's cancel or release) takes this path. The node must not
 * be queued already (uvg__work_queued()). Returns 0, or UVG_ECLOSED after
 * uvg__workq_close() (fn will not run). */
int uvg__workq_post_node(uvg__workq_t *q, uvg__work_t *w, uvg__work_fn fn,
                         void *arg);

/* Prepares an embedded node for uvg__workq_post_node(). */
static inline void uvg__work_init(uvg__work_t *w) {
  uvg__list_init(&w->link);
  w->owned = 1;
}

/* 1 while an embedded node waits in a queue. */
static inline int uvg__work_queued(const uvg__work_t *w) {
  return !uvg__list_empty(&w->link);
}

/* Refuses later posts and runs every pending closure now with
 * UVG_ECANCELED. Safe to call from a closure of the same queue: the
 * closures left in that drain are cancelled too. Idempotent. */
void uvg__workq_close(uvg__workq_t *q);

/* Number of pending closures (tests and stats). */
size_t uvg__workq_pending(const uvg__workq_t *q);

#endif

/*
 * One-shot timers for deadlines, keepalive and backoff, embedded in their
 * owner. All timers of a scheduler share one uv_timer_t through a min-heap
 * whose links live in the timers themselves, so arming allocates nothing
 * and cannot fail, and a timer needs no uv_close(): an owner can be freed
 * right after uvg__timer_stop(). O(log n) per start/stop, which keeps 100k
 * concurrent deadlines cheap.
 *
 * An armed timer does not keep uv_run() going (see workq.h): it fires while
 * something else keeps the loop running.
 */
#ifndef UVG_LOOP_TIMER_H
#define UVG_LOOP_TIMER_H

#include "workq.h"

/* struct uvg__timer_s is in workq.h: a scheduler embeds one. */

void uvg__timer_init(uvg__sched_t *s, uvg__timer_t *t);

/* Arms `t` to call cb(t) once, `timeout_ms` from the loop's cached now.
 * Re-arming an armed timer moves it. Timers fire in due order; those with
 * the same due time fire in the order they were (last) started. */
void uvg__timer_start(uvg__timer_t *t, void (*cb)(uvg__timer_t *t),
                      uint64_t timeout_ms);

/* Disarms `t`; a no-op when it is not armed. */
void uvg__timer_stop(uvg__timer_t *t);

static inline int uvg__timer_armed(const uvg__timer_t *t) { return t->armed; }

#endif

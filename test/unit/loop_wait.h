/* Running a test's loop until something has happened, with a time limit:
 * a 5 ms tick keeps uv_run() from sleeping past the limit while the
 * handles under test are idle or unref'd. */
#ifndef UVG_TEST_LOOP_WAIT_H
#define UVG_TEST_LOOP_WAIT_H

#include <uv.h>

static void wait_tick(uv_timer_t *t) { (void)t; }

/* Runs `loop` until *count >= want or `ms` pass; returns whether it got
 * there. */
static inline int wait_count(uv_loop_t *loop, const int *count, int want,
                             int ms) {
  uv_timer_t tick;
  uv_timer_init(loop, &tick);
  uv_timer_start(&tick, wait_tick, 5, 5);
  uv_update_time(loop);
  uint64_t end = uv_now(loop) + (uint64_t)ms;
  while (*count < want && uv_now(loop) < end) uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&tick, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  return *count >= want;
}

/* Runs `loop` for `ms`. */
static inline void wait_ms(uv_loop_t *loop, int ms) {
  int never = 0;
  wait_count(loop, &never, 1, ms);
}

#endif

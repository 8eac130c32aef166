/* What the fault tests share: an allocator that fails the Nth allocation
 * and counts what is given back, the check that no callback runs inside a
 * library function, and a case's end on a loop of its own (the calls end,
 * then everything is closed, and no handle may be left). */
#ifndef UVG_TEST_FAULT_HARNESS_H
#define UVG_TEST_FAULT_HARNESS_H

#include <stdio.h>
#include <stdlib.h>
#include <uvgrpc.h>

#include "test.h"

/* ---- the failing allocator (uvg_set_allocator(fh_malloc, ...)) ---- */

static long fh_allocs, fh_frees, fh_fail_at = -1;

static inline int fh_should_fail(void) {
  return fh_fail_at >= 0 && fh_allocs == fh_fail_at;
}
static inline void *fh_malloc(size_t n) {
  if (fh_should_fail()) return fh_allocs++, NULL;
  fh_allocs++;
  return malloc(n);
}
static inline void *fh_realloc(void *p, size_t n) {
  if (p == NULL) return fh_malloc(n);
  if (fh_should_fail()) return fh_allocs++, NULL;
  fh_allocs++;
  fh_frees++;
  return realloc(p, n);
}
static inline void fh_free(void *p) {
  if (p != NULL) fh_frees++;
  free(p);
}
/* Everything allocated was given back (but the allocation that failed). */
static inline int fh_balanced(void) {
  return fh_allocs == fh_frees || fh_allocs - 1 == fh_frees;
}

/* Runs one_round() once with no failure, then once with each of its
 * allocations failing in turn (ALLOC_ONLY=N: the Nth alone; ALLOC_STEP=S:
 * every Sth). A round returns how many calls ended OK and does its own
 * checks; here, everything allocated must be given back. Returns how many
 * allocations the round makes; *all_ok gets how many failing rounds still
 * had `want` calls end OK. */
static inline long fh_sweep(int (*one_round)(void), int want, int *all_ok) {
  fh_allocs = fh_frees = 0;
  fh_fail_at = -1;
  *all_ok = 0;
  if (one_round() != want || fh_allocs != fh_frees) return -1;
  long total = fh_allocs, first = 0, end = total, step = 1;
  const char *s = getenv("ALLOC_STEP");
  if (s != NULL && atol(s) > 0) step = atol(s);
  if ((s = getenv("ALLOC_ONLY")) != NULL) first = atol(s), end = first + 1;
  for (long k = first; k < end; k += step) {
    fh_allocs = fh_frees = 0;
    fh_fail_at = k;
    uint64_t t0 = uv_hrtime();
    int ok = one_round();
    fh_fail_at = -1;
    *all_ok += ok == want;
    int slow = uv_hrtime() - t0 > 1000000000;
    if (!fh_balanced() || slow)
      fprintf(stderr, "  failing allocation %ld of %ld: %ld allocated, %ld "
              "freed%s\n", k, total, fh_allocs, fh_frees,
              slow ? ", over a second" : "");
    if (!fh_balanced()) return -1;
  }
  return total;
}

/* ---- re-entrancy: every call into the library is made through API() ---- */

static int fh_in_api, fh_reentered;
#define API(expr) (fh_in_api++, (expr), fh_in_api--)
/* At the top of every callback. */
static inline void fh_entered(void) { fh_reentered += fh_in_api > 0; }

static inline void fh_server_closed(uvg_server_t *s, void *count) {
  (void)s;
  fh_entered();
  ++*(int *)count;
}
static inline void fh_channel_closed(uvg_channel_t *ch, void *count) {
  (void)ch;
  fh_entered();
  ++*(int *)count;
}

/* One round of the allocation sweeps over calls: a channel's call of each
 * of the four kinds to one server, and what each side saw of them. */
#define FH_KINDS 4
typedef struct {
  int s_calls, s_dones;
  int c_started[FH_KINDS], c_statuses[FH_KINDS], c_code[FH_KINDS],
      c_msgs[FH_KINDS];
  uvg_server_t *server;
  uvg_channel_t *channel;
  int server_closed, channel_closed;
} fh_round_t;

/* Whether a call the round started has not ended on either side. */
static inline int fh_round_open(const fh_round_t *t) {
  for (int k = 0; k < FH_KINDS; k++)
    if (t->c_started[k] && t->c_statuses[k] == 0) return 1;
  return t->s_dones < t->s_calls;
}

/* Closes what the round made; each close ends in its callback. */
static inline void fh_round_close(fh_round_t *t) {
  if (t->channel != NULL)
    API(uvg_channel_close(t->channel, fh_channel_closed, &t->channel_closed));
  if (t->server != NULL)
    API(uvg_server_close(t->server, fh_server_closed, &t->server_closed));
}

static inline void fh_quiet(uvg_log_level_t level, const char *line, void *d) {
  (void)level;
  (void)line;
  (void)d;
}

/* The checks of a round's client calls, each an index of these arrays:
 * one that started ended once, OK only with all `want` messages, and
 * none waited for its deadline (far beyond the exchange: only a call that
 * nothing would ever end reaches it). Returns how many ended OK. */
static inline int fh_check_calls(int n, const char *const *names,
                                 const int *started, const int *statuses,
                                 const int *codes, const int *msgs,
                                 const int *want) {
  int ok = 0;
  for (int k = 0; k < n; k++) {
    if (getenv("ALLOC_ONLY") != NULL)
      fprintf(stderr, "  %s: started %d, %d status(es), %s, %d message(s)\n",
              names[k], started[k], statuses[k],
              uvg_status_code_name(codes[k]), msgs[k]);
    CHECK_EQ(statuses[k], started[k]);
    if (codes[k] == UVG_STATUS_OK && msgs[k] != want[k])
      fprintf(stderr, "  %s: OK after %d of %d messages\n", names[k], msgs[k],
              want[k]);
    CHECK(codes[k] != UVG_STATUS_OK || msgs[k] == want[k]);
    if (codes[k] == UVG_STATUS_DEADLINE_EXCEEDED)
      fprintf(stderr, "  %s waited for its deadline\n", names[k]);
    CHECK(codes[k] != UVG_STATUS_DEADLINE_EXCEEDED);
    ok += statuses[k] == 1 && codes[k] == UVG_STATUS_OK;
  }
  return ok;
}

/* ---- a case's end ---- */

static inline void fh_on_watchdog(uv_timer_t *t) { *(int *)t->data = 1; }

/* Runs `loop` while calls_open() says so, then calls close_all() and runs
 * the loop until nothing is left in it, and closes it. Returns 0, or -1
 * if that took longer than `ms` (a hang: the loop is then not closed). */
static inline int fh_finish_case(uv_loop_t *loop, int (*calls_open)(void),
                                 void (*close_all)(void), uint64_t ms) {
  uv_timer_t watchdog;
  int fired = 0;
  uv_timer_init(loop, &watchdog);
  watchdog.data = &fired;
  uv_timer_start(&watchdog, fh_on_watchdog, ms, 0);
  uv_unref((uv_handle_t *)&watchdog); /* it wakes the loop, keeps it not */
  while (!fired && calls_open()) uv_run(loop, UV_RUN_ONCE);
  close_all();
  while (!fired && uv_run(loop, UV_RUN_ONCE) != 0) {
  }
  uv_close((uv_handle_t *)&watchdog, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  return fired ? -1 : 0;
}

/* The end of an allocation sweep's round: its calls end (or 8 s pass),
 * everything it made is closed, no callback ran inside a library
 * function, every call ended once as fh_check_calls() wants, each server
 * call ended, and the loop closes clean. Returns how many calls ended
 * OK. */
static inline int fh_round_finish(uv_loop_t *loop, fh_round_t *t,
                                  int (*calls_open)(void), void (*close_all)(void),
                                  const char *const *names, const int *want) {
  int hung = fh_finish_case(loop, calls_open, close_all, 8000);
  CHECK(!hung);
  CHECK_EQ(fh_reentered, 0);
  int ok = fh_check_calls(FH_KINDS, names, t->c_started, t->c_statuses, t->c_code,
                          t->c_msgs, want);
  CHECK_EQ(t->s_dones, t->s_calls);
  CHECK(t->channel == NULL || t->channel_closed);
  CHECK(t->server == NULL || t->server_closed);
  if (!hung) CHECK_EQ(uv_loop_close(loop), 0);
  return ok;
}

#endif

/* Log lines and the UVG_TRACE switch (loop/log.c). */
#include <stdint.h>
#include <uv.h>

#include "common.h"
#include "test.h"

/* Two loops on two threads may create their first servers at the same
 * time, and each parses UVG_TRACE on the way (uvg__trace_init). Whichever
 * thread comes second must not go on before the flags are set: it would
 * miss its trace lines, or read the flags while the first thread writes
 * them. The setting is made long so that parsing takes a while and the
 * second thread arrives in the middle of it. */
typedef struct {
  uv_thread_t tid;
  uint64_t delay_ms;
  unsigned flags_seen;
} tracer_t;

static void tracer_main(void *arg) {
  tracer_t *t = arg;
  if (t->delay_ms) uv_sleep((unsigned)t->delay_ms);
  uvg__trace_init();
  t->flags_seen = uvg__trace_flags;
}

static void test_trace_init_from_two_threads(void) {
  /* a million unknown names, then "all": the flags are complete only
   * once the whole value is read */
  enum { JUNK = 1000000 };
  char *value = malloc(2 * JUNK + 4);
  for (size_t i = 0; i < JUNK; i++) memcpy(value + 2 * i, "x,", 2);
  memcpy(value + 2 * JUNK, "all", 4);
  CHECK_EQ(setenv("UVG_TRACE", value, 1), 0);
  free(value);

  uint64_t t0 = uv_hrtime();
  tracer_t a = {.delay_ms = 0}, b = {.delay_ms = 5};
  CHECK_EQ(uv_thread_create(&a.tid, tracer_main, &a), 0);
  CHECK_EQ(uv_thread_create(&b.tid, tracer_main, &b), 0);
  CHECK_EQ(uv_thread_join(&a.tid), 0);
  CHECK_EQ(uv_thread_join(&b.tid), 0);
  uint64_t took_ms = (uv_hrtime() - t0) / 1000000;
  /* The test only means something if parsing outlasted the delay. */
  if (took_ms <= b.delay_ms)
    fprintf(stderr,
            "  parsing took %llu ms only: the threads did not overlap\n",
            (unsigned long long)took_ms);
  CHECK_EQ(a.flags_seen, ~0u);
  CHECK_EQ(b.flags_seen, ~0u);
  /* read once: a later call changes nothing */
  CHECK_EQ(setenv("UVG_TRACE", "api", 1), 0);
  uvg__trace_init();
  CHECK_EQ(uvg__trace_flags, ~0u);
  uvg__trace_flags = 0; /* quiet for whatever runs next */
}

int main(void) {
  RUN(test_trace_init_from_two_threads);
  TEST_EXIT();
}

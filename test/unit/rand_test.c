/* The library's random numbers (loop/rand.c). */
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "common.h"
#include "test.h"

/* The application's rand() sequence is not moved by the library's. */
static void test_leaves_rand_alone(void) {
  srand(42);
  int a = rand(), b = rand();
  srand(42);
  for (int i = 0; i < 100; i++) (void)uvg__random();
  CHECK_EQ(rand(), a);
  CHECK_EQ(rand(), b);
}

/* Values look uniform enough for jitter: over many draws every one of 16
 * buckets of the low and the high bits gets its share. */
static void test_spread(void) {
  enum { N = 160000 };
  long lo[16] = {0}, hi[16] = {0};
  for (int i = 0; i < N; i++) {
    uint64_t x = uvg__random();
    lo[x & 15]++;
    hi[x >> 60]++;
  }
  int off = 0;
  for (int k = 0; k < 16; k++)
    off += lo[k] < N / 16 * 9 / 10 || lo[k] > N / 16 * 11 / 10 ||
           hi[k] < N / 16 * 9 / 10 || hi[k] > N / 16 * 11 / 10;
  CHECK_EQ(off, 0);
}

/* A forked child does not repeat its parent's numbers. */
static void test_fork_reseeds(void) {
  int fds[2];
  (void)uvg__random(); /* the parent's generator is seeded */
  CHECK_EQ(pipe(fds), 0);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    uint64_t x[4];
    for (int i = 0; i < 4; i++) x[i] = uvg__random();
    _exit(write(fds[1], x, sizeof(x)) == (ssize_t)sizeof(x) ? 0 : 1);
  }
  uint64_t mine[4], child[4];
  for (int i = 0; i < 4; i++) mine[i] = uvg__random();
  CHECK_EQ(read(fds[0], child, sizeof(child)), (ssize_t)sizeof(child));
  int st;
  CHECK_EQ(waitpid(pid, &st, 0), pid);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  CHECK(memcmp(mine, child, sizeof(mine)) != 0);
  close(fds[0]);
  close(fds[1]);
}

/* Each thread has a generator of its own: two threads draw different
 * numbers, without sharing (or racing on) any state. */
static void draw(void *arg) {
  uint64_t *x = arg;
  for (int i = 0; i < 4; i++) x[i] = uvg__random();
}

static void test_threads_differ(void) {
  uint64_t a[4], b[4];
  uv_thread_t ta, tb;
  CHECK_EQ(uv_thread_create(&ta, draw, a), 0);
  CHECK_EQ(uv_thread_create(&tb, draw, b), 0);
  CHECK_EQ(uv_thread_join(&ta), 0);
  CHECK_EQ(uv_thread_join(&tb), 0);
  CHECK(memcmp(a, b, sizeof(a)) != 0);
}

int main(void) {
  RUN(test_leaves_rand_alone);
  RUN(test_spread);
  RUN(test_fork_reseeds);
  RUN(test_threads_differ);
  TEST_EXIT();
}

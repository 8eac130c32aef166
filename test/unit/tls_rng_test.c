/*
 * The TLS random generator (lib/tls/rng.c): a forked child reseeds before
 * its first byte, so parent and child never hand out the same bytes (the
 * same ECDHE keys); requests larger than one CTR_DRBG request work.
 */
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"
#include "tls/tls.h"

static void test_bytes_differ(void) {
  unsigned char a[32], b[32];
  CHECK_EQ(uvg__tls_random(NULL, a, sizeof(a)), 0);
  CHECK_EQ(uvg__tls_random(NULL, b, sizeof(b)), 0);
  CHECK(memcmp(a, b, sizeof(a)) != 0);
  /* more than MBEDTLS_CTR_DRBG_MAX_REQUEST (1024) at once */
  static unsigned char big[5000], zero[5000];
  CHECK_EQ(uvg__tls_random(NULL, big, sizeof(big)), 0);
  CHECK(memcmp(big + 4000, zero, 1000) != 0);
}

/* After fork() both processes hold the same generator state; each draws
 * 32 bytes, and the child sends its own to the parent. They differ only
 * because the child reseeded. Done twice: a grandchild too. */
static void test_fork_reseeds(void) {
  unsigned char warm[8];
  CHECK_EQ(uvg__tls_random(NULL, warm, sizeof(warm)), 0); /* seeded here */
  for (int depth = 0; depth < 2; depth++) {
    int fds[2];
    CHECK_EQ(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
      unsigned char mine[32];
      int ok = uvg__tls_random(NULL, mine, sizeof(mine)) == 0;
      if (ok && depth == 1) { /* the child forks again and reports its child */
        int inner[2];
        if (pipe(inner) != 0) _exit(1);
        pid_t g = fork();
        if (g == 0) {
          unsigned char gm[32];
          ok = uvg__tls_random(NULL, gm, sizeof(gm)) == 0;
          ok = ok && write(inner[1], gm, sizeof(gm)) == (ssize_t)sizeof(gm);
          _exit(ok ? 0 : 1);
        }
        unsigned char gm[32];
        ok = read(inner[0], gm, sizeof(gm)) == (ssize_t)sizeof(gm) &&
             memcmp(gm, mine, sizeof(mine)) != 0;
        waitpid(g, NULL, 0);
      }
      ok = ok && write(fds[1], mine, sizeof(mine)) == (ssize_t)sizeof(mine);
      _exit(ok ? 0 : 1);
    }
    CHECK(pid > 0);
    unsigned char parent[32], child[32];
    CHECK_EQ(uvg__tls_random(NULL, parent, sizeof(parent)), 0);
    CHECK_EQ(read(fds[0], child, sizeof(child)), (ssize_t)sizeof(child));
    CHECK(memcmp(parent, child, sizeof(parent)) != 0);
    int status;
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(fds[0]);
    close(fds[1]);
  }
}

int main(void) {
  RUN(test_bytes_differ);
  RUN(test_fork_reseeds);
  TEST_EXIT();
}

/* Random numbers for jitter: a small generator per thread (splitmix64),
 * so that the library neither moves the application's rand() sequence nor
 * shares state between loops on different threads. Not for secrets. */
#include <unistd.h>
#include <uv.h>

#include "common.h"

static _Thread_local uint64_t state;
static _Thread_local pid_t seeded_by; /* 0 until seeded */

/* From the kernel when it can; otherwise from the clock, the process and
 * this thread (the address of its state), which still differ between
 * processes started together and between threads. */
static void seed(pid_t pid) {
  uint64_t s;
  if (uv_random(NULL, NULL, &s, sizeof(s), 0, NULL) != 0)
    s = uv_hrtime() ^ (uint64_t)pid << 32 ^ (uint64_t)(uintptr_t)&state;
  state = s;
  seeded_by = pid;
}

uint64_t uvg__random(void) {
  pid_t pid = getpid();
  /* a forked child must not repeat its parent's numbers */
  if (seeded_by != pid) seed(pid);
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

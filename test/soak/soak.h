/* What the soak and scale tests share: whether they run under
 * AddressSanitizer (which sizes them, and makes RSS meaningless), and the
 * process's resident set size. */
#ifndef UVG_TEST_SOAK_H
#define UVG_TEST_SOAK_H

#include <stdio.h>

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

/* VmRSS from /proc/self/status, in bytes; -1 if it cannot be read. */
static inline long vm_rss(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kb = -1;
  if (f == NULL) return -1;
  while (fgets(line, sizeof(line), f))
    if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
  fclose(f);
  return kb < 0 ? -1 : kb * 1024;
}

#endif

/* A minimal test harness: each test file is one executable whose main()
 * runs its cases with RUN(); a failed CHECK prints the expression and the
 * line and makes the executable exit 1 at the end. */
#ifndef UVG_TEST_H
#define UVG_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_failures;

#define CHECK(cond)                                                    \
  do {                                                                 \
    if (!(cond)) {                                                     \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, \
              #cond);                                                  \
      test_failures++;                                                 \
    }                                                                  \
  } while (0)

#define CHECK_EQ(a, b)                                                     \
  do {                                                                     \
    long long va_ = (long long)(a), vb_ = (long long)(b);                  \
    if (va_ != vb_) {                                                      \
      fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s (%lld vs %lld)\n", \
              __FILE__, __LINE__, #a, #b, va_, vb_);                       \
      test_failures++;                                                     \
    }                                                                      \
  } while (0)

#define CHECK_STR(a, b)                                                    \
  do {                                                                     \
    const char *sa_ = (a), *sb_ = (b);                                     \
    if (sa_ == NULL || sb_ == NULL || strcmp(sa_, sb_) != 0) {             \
      fprintf(stderr, "%s:%d: CHECK_STR failed: %s == %s (\"%s\" vs \"%s\")\n", \
              __FILE__, __LINE__, #a, #b, sa_ ? sa_ : "(null)",            \
              sb_ ? sb_ : "(null)");                                       \
      test_failures++;                                                     \
    }                                                                      \
  } while (0)

#define RUN(fn)                                        \
  do {                                                 \
    int before_ = test_failures;                       \
    fn();                                              \
    fprintf(stderr, "%s %s\n",                         \
            test_failures == before_ ? "ok  " : "FAIL", #fn); \
  } while (0)

#define TEST_EXIT() return test_failures == 0 ? 0 : 1

#endif

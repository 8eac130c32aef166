/* grpc-timeout (doc/PROTOCOL-HTTP2.md): TimeoutValue (1 to 8 ASCII digits)
 * followed by one TimeoutUnit of H M S m u n. */
#include <stdint.h>

#include "rpc/rpc.h"
#include "test.h"

static int parse(const char *s, uint64_t *ms) {
  return uvg__timeout_parse(s, strlen(s), ms);
}

/* Parses `s` and checks the result is `want` milliseconds. */
#define CHECK_PARSE(s, want)                 \
  do {                                       \
    uint64_t ms_ = 12345;                    \
    CHECK_EQ(parse((s), &ms_), 0);           \
    CHECK_EQ(ms_, (want));                   \
  } while (0)

#define CHECK_REJECT(s, n)                                        \
  do {                                                            \
    uint64_t ms_ = 0;                                             \
    CHECK_EQ(uvg__timeout_parse((s), (n), &ms_), UVG_EINVAL);     \
  } while (0)

static void test_parse_units(void) {
  CHECK_PARSE("1H", 3600000);
  CHECK_PARSE("2M", 120000);
  CHECK_PARSE("3S", 3000);
  CHECK_PARSE("4m", 4);
  CHECK_PARSE("5000u", 5);
  CHECK_PARSE("7000000n", 7);
  CHECK_PARSE("250m", 250);
  CHECK_PARSE("10S", 10000);
  CHECK_PARSE("00000001m", 1); /* 8 digits with leading zeros */
  CHECK_PARSE("12345678S", 12345678000ull);
  CHECK_PARSE("99999999H", 99999999ull * 3600000ull); /* largest value */
  CHECK_PARSE("99999999n", 100);
  /* Only the first n bytes are read. */
  uint64_t ms = 0;
  CHECK_EQ(uvg__timeout_parse("15mXYZ", 3, &ms), 0);
  CHECK_EQ(ms, 15);
}

/* Rounding up: a sub-millisecond timeout must still time out rather than
 * become 0 ("already expired" is fine, "no deadline" is not). */
static void test_parse_rounds_up(void) {
  CHECK_PARSE("1n", 1);
  CHECK_PARSE("999999n", 1);
  CHECK_PARSE("1000000n", 1);
  CHECK_PARSE("1000001n", 2);
  CHECK_PARSE("1u", 1);
  CHECK_PARSE("999u", 1);
  CHECK_PARSE("1000u", 1);
  CHECK_PARSE("1001u", 2);
  CHECK_PARSE("1500u", 2);
  CHECK_PARSE("99999999u", 100000);
}

static void test_parse_rejects(void) {
  CHECK_REJECT("", 0);                 /* empty */
  CHECK_REJECT("m", 1);                /* unit without value */
  CHECK_REJECT("S", 1);
  CHECK_REJECT("0", 1);                /* "0" alone */
  CHECK_REJECT("100", 3);              /* no unit */
  CHECK_REJECT("123456789m", 10);      /* 9 digits */
  CHECK_REJECT("000000001S", 10);      /* 9 digits, even as leading zeros */
  CHECK_REJECT("10x", 3);              /* unknown unit */
  CHECK_REJECT("10h", 3);              /* units are case-sensitive */
  CHECK_REJECT("10s", 3);
  CHECK_REJECT("10N", 3);
  CHECK_REJECT("10U", 3);
  CHECK_REJECT("1a0m", 4);             /* non-digits */
  CHECK_REJECT("1.5S", 4);
  CHECK_REJECT("10 m", 4);
  CHECK_REJECT(" 10m", 4);
  CHECK_REJECT("0x1m", 4);
  CHECK_REJECT("-1m", 3);              /* sign */
  CHECK_REJECT("+1m", 3);
  CHECK_REJECT("1mm", 3);
  CHECK_REJECT("1m\0", 3);
}

/* ---- encode ---- */

#define CHECK_ENCODE(ms, want)                               \
  do {                                                       \
    char out_[10];                                           \
    memset(out_, '#', sizeof(out_));                         \
    size_t n_ = uvg__timeout_encode((ms), out_);             \
    CHECK_STR(out_, (want));                                 \
    CHECK_EQ(n_, strlen(want));                              \
  } while (0)

static void test_encode_known(void) {
  CHECK_ENCODE(1, "1m");
  CHECK_ENCODE(250, "250m");
  CHECK_ENCODE(99999999ull, "99999999m");        /* finest unit while it fits */
  CHECK_ENCODE(100000000ull, "100000S");
  CHECK_ENCODE(100000001ull, "100001S");         /* rounded up */
  CHECK_ENCODE(99999999000ull, "99999999S");
  CHECK_ENCODE(99999999001ull, "1666667M");
  CHECK_ENCODE(6000000000000ull, "1666667H");
  CHECK_ENCODE(99999999ull * 3600000ull, "99999999H");
}

/* Encoded value has 1-8 digits and a unit, parses back to at least the
 * input, and loses less than one unit. */
static int unit_ms(char u) {
  switch (u) {
    case 'm': return 1;
    case 'S': return 1000;
    case 'M': return 60000;
    case 'H': return 3600000;
    default: return -1;
  }
}

static int check_round_trip(uint64_t x) {
  char out[10];
  size_t n = uvg__timeout_encode(x, out);
  if (n < 2 || n > 9 || strlen(out) != n) return 1;
  int unit = unit_ms(out[n - 1]);
  if (unit < 0) return 1;
  for (size_t i = 0; i + 1 < n; i++)
    if (out[i] < '0' || out[i] > '9') return 1;
  uint64_t back;
  if (uvg__timeout_parse(out, n, &back) != 0) return 1;
  if (back < x) return 1;
  if (back - x >= (uint64_t)unit) return 1;
  /* The finest unit that fits: one finer would need more than 8 digits. */
  if (unit > 1) {
    uint64_t f = unit == 1000 ? 1 : unit == 60000 ? 1000 : 60000;
    if ((x + f - 1) / f <= 99999999) return 1;
  }
  return 0;
}

static void test_encode_round_trips(void) {
  int bad = 0;
  for (uint64_t x = 1; x <= 5000; x++) bad += check_round_trip(x);
  /* Around each power of ten and each unit change. */
  for (uint64_t p = 10; p <= 100000000000000ull; p *= 10)
    for (uint64_t d = 0; d < 3; d++) {
      bad += check_round_trip(p - d);
      bad += check_round_trip(p + d);
    }
  static const uint64_t edges[] = {99999999ull, 100000000ull, 99999999000ull,
                                   99999999001ull, 5999999940000ull,
                                   5999999940001ull, 359999996399999ull,
                                   359999996400000ull};
  for (size_t i = 0; i < UVG__ARRAY_SIZE(edges); i++) bad += check_round_trip(edges[i]);
  srand(99);
  for (int i = 0; i < 100000; i++) {
    uint64_t x = ((uint64_t)rand() << 31 ^ (uint64_t)rand()) % 359999996400000ull + 1;
    bad += check_round_trip(x);
  }
  CHECK_EQ(bad, 0);
}

/* Beyond the largest encodable timeout (99999999H, about 11,400 years) the
 * value saturates at the largest one: it must never wrap to a short
 * deadline. */
static void test_encode_saturates(void) {
  CHECK_ENCODE(400000000000000ull, "99999999H");
  CHECK_ENCODE(UINT64_MAX / 2, "99999999H");
  CHECK_ENCODE(UINT64_MAX - 3600000, "99999999H");
  CHECK_ENCODE(UINT64_MAX - 1000, "99999999H");
  CHECK_ENCODE(UINT64_MAX, "99999999H");
}

int main(void) {
  RUN(test_parse_units);
  RUN(test_parse_rounds_up);
  RUN(test_parse_rejects);
  RUN(test_encode_known);
  RUN(test_encode_round_trips);
  RUN(test_encode_saturates);
  TEST_EXIT();
}

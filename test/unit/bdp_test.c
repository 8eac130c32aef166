/* The receive window's bandwidth-delay estimate (grpc-go's bdpEstimator):
 * a measurement starts with DATA, ends with the PING's ack, and the window
 * grows to twice a sample that filled two thirds of it at the best
 * bandwidth seen, never beyond the limit. */
#include "transport/bdp.h"
#include "test.h"

#define US 1000ull

static void test_measures_one_round_trip_at_a_time(void) {
  uvg__bdp_t b;
  uvg__bdp_init(&b, 65535, 1 << 24);
  CHECK_EQ(uvg__bdp_on_data(&b, 1000, 0), 1); /* PING now */
  CHECK_EQ(uvg__bdp_on_data(&b, 1000, 10 * US), 0);
  CHECK_EQ(b.sample, 2000u);
  /* 2000 bytes in a 65535 window: too little to grow */
  CHECK_EQ(uvg__bdp_on_ack(&b, 100 * US), 0u);
  CHECK_EQ(b.bdp, 65535u);
  /* a second ack without a PING out changes nothing */
  CHECK_EQ(uvg__bdp_on_ack(&b, 200 * US), 0u);
  /* the next DATA starts the next measurement */
  CHECK_EQ(uvg__bdp_on_data(&b, 10, 300 * US), 1);
  CHECK_EQ(b.sample, 10u);
}

static void test_grows_to_twice_a_full_sample(void) {
  uvg__bdp_t b;
  uvg__bdp_init(&b, 65535, 1 << 24);
  CHECK_EQ(uvg__bdp_on_data(&b, 16384, 0), 1);
  for (int i = 0; i < 3; i++) uvg__bdp_on_data(&b, 16384, 10 * US);
  /* 65536 bytes in 100 us: the window was the limit */
  CHECK_EQ(uvg__bdp_on_ack(&b, 100 * US), 131072u);
  CHECK_EQ(b.bdp, 131072u);
  /* the same bandwidth again fills only half of the new window */
  CHECK_EQ(uvg__bdp_on_data(&b, 65536, 1000 * US), 1);
  CHECK_EQ(uvg__bdp_on_ack(&b, 1100 * US), 0u);
  /* more bytes per round trip: it grows again */
  CHECK_EQ(uvg__bdp_on_data(&b, 131072, 2000 * US), 1);
  CHECK_EQ(uvg__bdp_on_ack(&b, 2100 * US), 262144u);
}

static void test_slower_sample_does_not_grow(void) {
  uvg__bdp_t b;
  uvg__bdp_init(&b, 65535, 1 << 24);
  uvg__bdp_on_data(&b, 60000, 0);
  CHECK_EQ(uvg__bdp_on_ack(&b, 100 * US), 120000u);
  /* a full window, but over a round trip ten times as long: the
   * bandwidth is below the best seen, so the window is not the limit */
  uvg__bdp_on_data(&b, 100000, 1000 * US);
  CHECK_EQ(uvg__bdp_on_ack(&b, 3000 * US), 0u);
  CHECK_EQ(b.bdp, 120000u);
}

static void test_stops_at_the_limit(void) {
  uvg__bdp_t b;
  uvg__bdp_init(&b, 65535, 200000);
  uvg__bdp_on_data(&b, 65535, 0);
  CHECK_EQ(uvg__bdp_on_ack(&b, 100 * US), 131070u);
  uvg__bdp_on_data(&b, 131070, 1000 * US);
  CHECK_EQ(uvg__bdp_on_ack(&b, 1100 * US), 200000u);
  /* at the limit nothing is measured any more: no PINGs */
  CHECK_EQ(uvg__bdp_on_data(&b, 200000, 2000 * US), 0);
  CHECK_EQ(uvg__bdp_on_ack(&b, 2100 * US), 0u);
}

int main(void) {
  RUN(test_measures_one_round_trip_at_a_time);
  RUN(test_grows_to_twice_a_full_sample);
  RUN(test_slower_sample_does_not_grow);
  RUN(test_stops_at_the_limit);
  TEST_EXIT();
}

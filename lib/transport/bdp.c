#include "bdp.h"

/* grpc-go's constants: the smoothing weight once 10 samples are in, the
 * share of the window a sample must fill, and the growth factor. */
#define ALPHA 0.9
#define BETA 0.66
#define GAMMA 2.0

void uvg__bdp_init(uvg__bdp_t *b, uint32_t window, uint32_t limit) {
  b->bdp = window;
  b->limit = limit;
  b->sample = 0;
  b->sent_ns = 0;
  b->rtt = 0;
  b->bw_max = 0;
  b->samples = 0;
  b->running = 0;
}

int uvg__bdp_on_data(uvg__bdp_t *b, size_t n, uint64_t now_ns) {
  if (b->bdp >= b->limit) return 0; /* nothing more to learn */
  if (b->running) {
    b->sample += n;
    return 0;
  }
  b->running = 1;
  b->sample = n;
  b->sent_ns = now_ns;
  b->samples++;
  return 1;
}

uint32_t uvg__bdp_on_ack(uvg__bdp_t *b, uint64_t now_ns) {
  if (!b->running) return 0;
  b->running = 0;
  double rtt = (double)(now_ns - b->sent_ns) / 1e9;
  if (rtt <= 0) rtt = 1e-9;
  /* A running mean for the first samples, then an exponential one. */
  if (b->samples < 10)
    b->rtt += (rtt - b->rtt) / b->samples;
  else
    b->rtt += (rtt - b->rtt) * ALPHA;
  /* The sample took about one and a half round trips to arrive: the
   * PING's way out overlaps the data already in flight. */
  double bw = (double)b->sample / (b->rtt * 1.5);
  if (bw > b->bw_max) b->bw_max = bw;
  if ((double)b->sample < BETA * b->bdp || bw < b->bw_max) return 0;
  double grown = GAMMA * (double)b->sample;
  uint32_t next = grown >= b->limit ? b->limit : (uint32_t)grown;
  if (next <= b->bdp) return 0;
  b->bdp = next;
  return next;
}

/*
 * Bandwidth-delay product estimation for the receive window, as grpc-go's
 * bdpEstimator does it: when DATA arrives and no measurement is running, a
 * PING goes out; the bytes received until its ack are a sample of what one
 * round trip carries. When a sample fills most of the window (2/3) at the
 * best bandwidth seen so far, the window is too small to keep the pipe
 * full: it becomes twice the sample, up to a limit. Pure arithmetic: the
 * connection sends the PING and applies the new window.
 */
#ifndef UVG_TRANSPORT_BDP_H
#define UVG_TRANSPORT_BDP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  uint32_t bdp;    /* the current window, the estimate */
  uint32_t limit;  /* it never grows beyond this */
  uint64_t sample; /* bytes received since the PING went out */
  uint64_t sent_ns;
  double rtt;      /* seconds, smoothed */
  double bw_max;   /* the best bytes/s seen */
  unsigned samples;
  uint8_t running; /* a PING is out */
} uvg__bdp_t;

void uvg__bdp_init(uvg__bdp_t *b, uint32_t window, uint32_t limit);

/* `n` bytes of DATA arrived at now_ns (uv_hrtime()). Returns 1 when a PING
 * must go out now to start a measurement. */
int uvg__bdp_on_data(uvg__bdp_t *b, size_t n, uint64_t now_ns);

/* The measurement's PING was acknowledged at now_ns. Returns the new
 * window when it should grow, else 0. */
uint32_t uvg__bdp_on_ack(uvg__bdp_t *b, uint64_t now_ns);

#endif

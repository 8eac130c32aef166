/*
 * The proxy's answer to an HTTP CONNECT request (RFC 9110 9.3.6): the
 * part of a tunnel that is pure bytes, so it is tested without sockets.
 * The connector (connect.c) feeds it what it peeks from the socket and
 * consumes only what the scanner says is header: the bytes after the
 * blank line are the tunnel's, and stay in the socket for the transport.
 */
#ifndef UVG_LOOP_TUNNEL_H
#define UVG_LOOP_TUNNEL_H

#include <stddef.h>
#include <stdint.h>

/* The longest header block accepted from a proxy. A CONNECT answer is a
 * status line and a few fields; more is a proxy that is not answering
 * CONNECT (or is streaming a body), and reading on would only buffer. */
#define UVG__TUNNEL_HEAD_MAX 8192

/* Where a scan of the answer's header block stands. Zero it to start. */
typedef struct {
  size_t len;          /* header bytes seen */
  uint8_t line_empty;  /* nothing but CR since the last LF */
  uint8_t status_done; /* the status line has ended */
  uint8_t status_len;
  char status[96]; /* the status line's first bytes, without CR LF */
} uvg__tunnel_head_t;

/* Feeds the next `n` bytes of the answer. Returns how many of them belong
 * to the header block: all `n` while it goes on, or up to and including
 * the LF of the blank line that ends it, and then sets *done to 1. A bare
 * LF ends a line as CR LF does (RFC 9112 2.2 lets a recipient accept it).
 * The caller bounds h->len by UVG__TUNNEL_HEAD_MAX. */
size_t uvg__tunnel_head_feed(uvg__tunnel_head_t *h, const uint8_t *p, size_t n,
                             int *done);

/* The status code of the status line, "HTTP/1.x NNN[ reason]", 100 to
 * 999, with *reason pointing at the reason phrase (in h->status, not
 * NUL-terminated, possibly cut at the line's first 95 bytes) of
 * *reason_len bytes; or -1 when the line is not an HTTP/1.x status line. */
int uvg__tunnel_head_status(const uvg__tunnel_head_t *h, const char **reason,
                            size_t *reason_len);

#endif

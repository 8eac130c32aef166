/*
 * A raw HTTP/2 server for client tests, on nghttp2 and the test's own loop:
 * the mirror of h2client. It listens on 127.0.0.1 (a port the kernel
 * picks) and, once a client has half-closed a request stream, hands the
 * stream to the test's behaviour, which answers with whatever frames the
 * case needs: any headers, raw DATA bytes (well-formed gRPC messages or
 * not), trailers or none, RST_STREAM, GOAWAY, PING, SETTINGS. Each action
 * is written at once, so frames leave in the order the behaviour calls
 * them. It records what the client sent: requests, RST_STREAMs, PING acks.
 */
#ifndef UVG_TEST_H2SERVER_H
#define UVG_TEST_H2SERVER_H

#include <nghttp2/nghttp2.h>
#include <uv.h>

#define H2S_MAX_STREAMS 256
#define H2S_MAX_CONNS 16

typedef struct h2s_s h2s_t;
typedef struct h2s_conn_s h2s_conn_t;
typedef struct h2s_stream_s h2s_stream_t;

/* The test's answer to one request; `ud` is the pointer given to
 * h2s_start(). Runs outside nghttp2's callbacks, so it may act at once. */
typedef void (*h2s_behaviour_fn)(h2s_stream_t *st, void *ud);
/* A step of a behaviour run later (h2s_later). */
typedef void (*h2s_later_fn)(h2s_stream_t *st);

struct h2s_stream_s {
  h2s_t *srv;
  h2s_conn_t *conn;
  int index; /* arrival order over the server's life, from 0 */
  int32_t id;
  char path[128];
  char authority[128];
  char timeout[16]; /* grpc-timeout as received */
  uint8_t *body; /* the request's DATA bytes */
  size_t body_len;
  int half_closed; /* the client's END_STREAM arrived */
  int got_rst;     /* RST_STREAM from the client, and its code */
  uint32_t rst_code;
  int closed; /* nghttp2 closed the stream, with this code */
  uint32_t close_code;
  void *data; /* the behaviour's own */
  /* private */
  int answer_due;
  uv_timer_t timer;
  int timer_used;
  h2s_later_fn later;
  const uint8_t *out; /* the DATA item being sent */
  size_t out_len, out_off;
  int out_end;
};

struct h2s_conn_s {
  h2s_t *srv;
  int index; /* accept order, from 0 */
  uv_tcp_t tcp;
  nghttp2_session *h2;
  int closed; /* closed or closing: actions on it do nothing */
  int open_streams, max_open_streams;
  /* the most the client let this side send ahead of its reads: its
   * SETTINGS_INITIAL_WINDOW_SIZE times the streams open, at each request's
   * arrival */
  uint64_t max_windows;
  int pings_sent, ping_acks; /* our PINGs, and the client's acks of them */
  int pings_received;        /* the client's own PINGs */
  int goaways_received;
  int rsts_received;
};

struct h2s_s {
  uv_loop_t *loop;
  uv_tcp_t listener;
  int port;
  /* SETTINGS_MAX_CONCURRENT_STREAMS in the first SETTINGS of each
   * connection; -1 (the default) sends none. Set before clients connect. */
  int64_t max_concurrent_streams;
  int answer_on_headers; /* answer at the request headers, not the half-close */
  h2s_behaviour_fn behaviour;
  void *ud;
  h2s_conn_t *conns; /* H2S_MAX_CONNS, on the heap */
  int nconns;
  h2s_stream_t *streams; /* H2S_MAX_STREAMS, on the heap; never reused */
  int nstreams;
  int errors; /* what the server could not do; a test expects 0 */
  int closing_handles;
};

/* Listens on 127.0.0.1:0 (s->port is then the port) and answers each
 * request with behaviour(stream, ud). Returns 0 or a libuv error. */
int h2s_start(h2s_t *s, uv_loop_t *loop, h2s_behaviour_fn behaviour, void *ud);

/* Sends one HEADERS frame with the pairs in `nv` (name, value, ...,
 * NULL): response headers, a second block (trailers, 1xx then a final
 * response), with any names and values, checked by nobody. */
void h2s_headers(h2s_stream_t *st, const char *const *nv, int end_stream);
/* Sends `n` raw bytes as DATA (one frame when the window allows); with
 * end_stream the last frame carries END_STREAM. */
void h2s_data(h2s_stream_t *st, const void *p, size_t n, int end_stream);
/* Sends one length-prefixed message as DATA with the given compressed
 * flag, not ending the stream. */
void h2s_message(h2s_stream_t *st, int compressed, const void *msg, size_t len);
/* A well-formed OK response: 200, application/grpc, `msg`, grpc-status 0. */
void h2s_ok(h2s_stream_t *st, const void *msg, size_t len);
/* Sends RST_STREAM(code). */
void h2s_rst(h2s_stream_t *st, uint32_t code);
/* Sends GOAWAY(last_stream_id, code); the connection stays open. */
void h2s_goaway(h2s_conn_t *c, int32_t last_stream_id, uint32_t code);
/* Sends a PING; conn->ping_acks counts the client's answers. */
void h2s_ping(h2s_conn_t *c);
/* Sends SETTINGS with MAX_CONCURRENT_STREAMS = n. */
void h2s_max_streams(h2s_conn_t *c, uint32_t n);
/* Closes the TCP connection at once, without GOAWAY. */
void h2s_drop(h2s_conn_t *c);
/* Runs fn(st) `ms` from now; one pending step per stream. */
void h2s_later(h2s_stream_t *st, uint64_t ms, h2s_later_fn fn);

/* Stops listening, closes every connection and timer, runs the loop until
 * they are closed and frees what the server holds. */
void h2s_close(h2s_t *s);

#endif

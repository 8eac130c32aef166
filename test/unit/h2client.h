/*
 * A raw HTTP/2 client for server tests, on nghttp2 and the test's own loop:
 * it can send well-formed gRPC requests with any headers and any DATA
 * framing, or raw bytes, and records everything the server answers.
 */
#ifndef UVG_TEST_H2CLIENT_H
#define UVG_TEST_H2CLIENT_H

#include <nghttp2/nghttp2.h>
#include <uv.h>

#define H2C_MAX_STREAMS 256
#define H2C_MAX_HEADERS 32

typedef struct {
  char name[64];
  char value[512];
} h2c_header_t;

typedef struct {
  int32_t id;
  /* request body, served `chunk` bytes per DATA frame */
  uint8_t *body;
  size_t body_len, body_off, chunk;
  int end_after_body;  /* END_STREAM with the last body byte */
  /* response */
  h2c_header_t headers[H2C_MAX_HEADERS];
  int nheaders;
  int header_blocks;   /* 1 = headers, 2 = headers + trailers */
  int trailers_only;   /* the first block ended the stream */
  h2c_header_t trailers[H2C_MAX_HEADERS];
  int ntrailers;
  uint8_t *data;
  size_t data_len, data_cap;
  int data_frames;
  int closed;
  uint32_t rst_code; /* RST_STREAM code received or the close error */
  int got_rst;
} h2c_stream_t;

typedef struct {
  uv_loop_t *loop;
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  };
  uv_connect_t creq;
  nghttp2_session *h2;
  int connected, connect_status, eof, closed;
  int got_goaway;
  uint32_t goaway_code;
  int ping_acks;
  uint8_t ping_data[8];
  int pings;          /* PINGs received (not acks) */
  int goaways;        /* GOAWAY frames received */
  int32_t goaway_last_stream;
  /* GOAWAYs as seen on the wire, also those nghttp2 ignores once the
   * session is closing */
  int raw_goaways;
  int32_t raw_goaway_last_stream;
  uint32_t raw_goaway_code;
  int raw_rst_streams;
  uint32_t raw_rst_code;
  uint8_t *raw;
  size_t raw_len;
  char goaway_debug[64];
  h2c_stream_t *streams; /* H2C_MAX_STREAMS, on the heap */
  int nstreams;
  int auto_window; /* consume received DATA at once (default 1) */
  /* h2c_hold(): bytes are scanned for GOAWAY/RST but kept from nghttp2 */
  int hold;
  uint8_t *held;
  size_t held_len;
  uint64_t reads;
} h2c_t;

/* Connects to 127.0.0.1:port and runs the loop until connected. With
 * `h2` the HTTP/2 preface and SETTINGS are sent; `window` sets the
 * initial stream window (0 = nghttp2's default) and, when nonzero, turns
 * off automatic WINDOW_UPDATEs. Returns 0 or a libuv error. */
int h2c_connect(h2c_t *c, uv_loop_t *loop, int port, int h2, uint32_t window);
/* h2c_connect with no automatic PING acks when no_ping_ack is set. */
int h2c_connect_ex(h2c_t *c, uv_loop_t *loop, int port, int h2, uint32_t window,
                   int no_ping_ack);
/* The same over a unix socket at `path`. */
int h2c_connect_unix(h2c_t *c, uv_loop_t *loop, const char *path);

/* Starts a gRPC POST to `path` with extra headers (pairs name, value,
 * NULL-terminated; may be NULL) and a body of length-prefixed messages
 * built by h2c_frame(). chunk = max bytes per DATA frame (0 = any). With
 * end_stream the client half-closes after the body. Returns the stream
 * index or -1. Passing content_type NULL uses application/grpc. */
int h2c_request(h2c_t *c, const char *path, const char *content_type,
                const char *const *extra, const uint8_t *body, size_t len,
                size_t chunk, int end_stream);

/* Appends a 5-byte prefix and `len` bytes to buf (at *off). */
size_t h2c_frame(uint8_t *buf, size_t off, const void *msg, size_t len);

/* Half-closes stream index i (END_STREAM after its body). */
void h2c_end_stream(h2c_t *c, int i);
/* Appends `len` bytes to stream index i's body (sent as DATA, framed by
 * the caller with h2c_frame()); with end_stream the client half-closes
 * after them. */
void h2c_send(h2c_t *c, int i, const uint8_t *body, size_t len, int end_stream);
/* Sends RST_STREAM(code) for stream index i. */
void h2c_reset(h2c_t *c, int i, uint32_t code);
/* Writes raw bytes on the socket (no HTTP/2 framing). */
void h2c_write_raw(h2c_t *c, const void *p, size_t n);
/* Gives back `n` bytes of flow-control window on stream i. */
void h2c_consume(h2c_t *c, int i, size_t n);
/* While held, what the server sends is recorded in the raw counters but
 * not given to the session, as if still on the wire; releasing feeds it. */
void h2c_hold(h2c_t *c, int hold);
/* Reads again after a uv_read_stop() on the client's socket. */
void h2c_read_resume(h2c_t *c);
/* Sends whatever nghttp2 has queued. */
void h2c_flush(h2c_t *c);

/* Runs the loop until pred(arg) is true or timeout_ms passes; returns the
 * final value of pred. */
int h2c_run_until(uv_loop_t *loop, int (*pred)(void *), void *arg,
                  int timeout_ms);
/* Runs the loop for ms milliseconds. */
void h2c_run_for(uv_loop_t *loop, int ms);

/* The value of a response header or trailer named `name`, or NULL. */
const char *h2c_header(const h2c_stream_t *s, const char *name);
const char *h2c_trailer(const h2c_stream_t *s, const char *name);
/* grpc-status from trailers (or the trailers-only headers); -1 if absent. */
int h2c_grpc_status(const h2c_stream_t *s);

/* Closes the socket; runs the loop until it is closed. */
void h2c_close(h2c_t *c);

#endif

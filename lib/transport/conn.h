/*
 * One HTTP/2 connection on nghttp2, over a loop/ byte stream.
 *
 * The connection owns the nghttp2 session, the writer and the list of open
 * streams. nghttp2's callbacks never reach the application directly: the
 * layer above gets events through uvg__conn_cbs_t and defers anything the
 * application sees through the connection's work queue, so application code
 * never runs inside nghttp2.
 *
 * The writer (grpc-go's loopyWriter + controlBuf): producers queue frames in
 * nghttp2 or messages on a stream and call uvg__conn_schedule_flush(); one
 * flush per loop turn serializes everything pending on the connection (every
 * stream's frames, window updates, PING and SETTINGS acks) into one iovec
 * array and issues ONE uv_write. Message bytes are referenced, not copied
 * (nghttp2 NO_COPY data frames), except short ones that are cheaper to copy.
 * While a write is in flight nothing else is serialized; its completion
 * flushes again.
 */
#ifndef UVG_TRANSPORT_CONN_H
#define UVG_TRANSPORT_CONN_H

#include <nghttp2/nghttp2.h>

#include "../../loop/buf.h"
#include "../../loop/stream.h"
#include "../../loop/timer.h"
#include "../../loop/workq.h"
#include "bdp.h"
#include "h2mem.h"

typedef struct uvg__conn_s uvg__conn_t;
typedef struct uvg__tstream_s uvg__tstream_t;
typedef struct uvg__msg_s uvg__msg_t;

/* An outgoing message: head_len bytes of `head` (gRPC's 5-byte prefix;
 * the transport does not look inside) then `len` bytes at `data`,
 * which stay valid until done() runs. done(m, 0) runs once every byte is
 * handed to the socket, done(m, UVG_ECANCELED) if the stream or connection
 * ended first; the msg is not touched by the transport afterwards. */
struct uvg__msg_s {
  uvg__list_t link;  /* in the stream's send queue */
  uvg__list_t wlink; /* in the connection's current write */
  uint8_t head[8];
  uint8_t head_len;
  const uint8_t *data;
  size_t len;
  size_t off; /* bytes serialized, head included */
  uint8_t in_write;
  uint8_t dropped;
  void (*done)(uvg__msg_t *m, int status);
};

struct uvg__tstream_s {
  int32_t id;
  uvg__conn_t *conn; /* NULL once the stream closed */
  uvg__list_t conn_link;
  uvg__list_t sendq;
  uvg__list_t wlink;     /* in conn->write_streams while end_in_write */
  uint32_t reset_code;   /* the peer's RST_STREAM while end_in_write, or 0 */
  size_t unconsumed;     /* DATA received, not yet given back to the window */
  size_t queued;         /* bytes in sendq not yet serialized; 0 once gone */
  uint8_t end_in_write;  /* our END_STREAM is in a write not yet complete */
  uint8_t end_written;   /* our END_STREAM reached the socket */
  uint8_t deferred;      /* nghttp2 waits for uvg__conn_resume */
  uint8_t has_provider;  /* response headers carried a data provider */
  uint8_t end_queued;    /* trailers follow the send queue */
  uint8_t remote_closed; /* the peer sent END_STREAM */
  uint8_t on_wire;       /* client role: its HEADERS were sent */
  nghttp2_nv *trailers;  /* packed: one allocation */
  size_t ntrailers;
};

/* on_stream_close's code when the whole connection went away. */
#define UVG__H2_CONN_CLOSED 0x100u

/* What a header block is, by the role that receives it. */
typedef enum {
  UVG__HB_REQUEST = 0,  /* server: a request's headers */
  UVG__HB_RESPONSE = 1, /* client: response headers (maybe trailers-only) */
  UVG__HB_TRAILERS = 2  /* client: the trailers after the messages */
} uvg__hblock_t;

typedef struct {
  /* Server: a peer opened a stream: return its storage (the upper
   * layer's), or NULL to refuse it with RST_STREAM REFUSED_STREAM. */
  uvg__tstream_t *(*stream_open)(uvg__conn_t *c);
  /* One header of a header block the upper layer reads: a request's (the
   * server's), a response's or its trailers (the client's); a client's
   * trailers carry nothing gRPC reads and are not passed up. Return
   * nonzero to reset the stream (PROTOCOL_ERROR). */
  int (*on_header)(uvg__tstream_t *s, uvg__hblock_t kind, const uint8_t *name,
                   size_t namelen, const uint8_t *value, size_t valuelen);
  /* The header block is complete; with end_stream a response block is a
   * trailers-only response. */
  void (*on_headers)(uvg__tstream_t *s, uvg__hblock_t kind, int end_stream);
  void (*on_data)(uvg__tstream_t *s, const uint8_t *p, size_t n);
  /* The peer sent END_STREAM (after the data). */
  void (*on_remote_end)(uvg__tstream_t *s);
  /* The stream is gone from the connection and its fate is known: NO_ERROR
   * once our END_STREAM (the status) reached the socket; otherwise the
   * RST_STREAM code (either side's; a peer's NO_ERROR reset before our end
   * becomes CANCEL) or UVG__H2_CONN_CLOSED. A stream whose end is in a
   * write in flight is reported when that write completes. s->conn is NULL
   * from here on. */
  void (*on_stream_close)(uvg__tstream_t *s, uint32_t h2_error);
  /* The connection is closed (c->close_reason says why, until this
   * returns); it is freed when this returns. */
  void (*on_close)(uvg__conn_t *c);
  /* Optional. The peer's first SETTINGS arrived: the connection is ready
   * for streams (a client's signal to call it READY). */
  void (*on_ready)(uvg__conn_t *c);
  /* Optional. The peer sent GOAWAY: no new stream may start here. Streams
   * above last_stream_id were never processed: they close with
   * REFUSED_STREAM, safe to retry elsewhere. */
  void (*on_goaway)(uvg__conn_t *c, int32_t last_stream_id, uint32_t h2_error,
                    const uint8_t *debug, size_t debug_len);
} uvg__conn_cbs_t;

/* What a connection is configured with; owned by the layer above, which
 * keeps it alive as long as its connections. Durations in milliseconds,
 * 0 = never (off). */
typedef struct {
  uint32_t max_concurrent_streams;
  uint32_t initial_window_size;
  uint32_t connection_window_size;
  uint32_t max_frame_size;
  uint32_t max_header_list_size;
  uint64_t keepalive_time;     /* ping after this long without reads */
  uint64_t keepalive_timeout;  /* close if the ping is not answered */
  uint64_t min_ping_interval;  /* enforcement: pings closer are strikes */
  int permit_without_stream;   /* enforcement: pings with no streams ok */
  uint64_t max_idle;           /* drain after this long without streams */
  uint64_t max_age;            /* drain at this age (±10% jitter) */
  uint64_t age_grace;          /* then close this long after draining */
  uint64_t handshake_timeout;  /* close if no SETTINGS by then */
  /* Nonzero: the stream window starts at initial_window_size and grows
   * with the bandwidth-delay estimate (bdp.h) up to this. */
  uint32_t bdp_limit;
  /* Nonzero: the memory the peer may fill, the stream window times the
   * streams open, stays within this (manage.c); each stream keeps at
   * least UVG__WINDOW_FLOOR. Client role: a stream's HEADERS leave after
   * the SETTINGS that makes room for it. */
  uint32_t window_cap;
} uvg__conn_settings_t;

/* What only a server's connection carries (srvpolicy.c): the RFC 9113
 * stream-id bookkeeping of a peer that opens streams, ping enforcement
 * (gRFC A8), max idle and max age (A9), the graceful drain and the
 * last-stream-id of the GOAWAY it sent. A client's connection has none. */
typedef struct {
  /* RFC 9113 5.1.1: the next stream id the client may open, and the last
   * ranges of ids it skipped (never opened, closed for good) */
  uint32_t next_peer_id;
  uint32_t skipped[4][2]; /* [first, last]; the oldest is overwritten */
  unsigned nskipped;      /* ranges ever recorded */
  uvg__timer_t idle_timer, age_timer, drain_timer;
  uint64_t last_ping_at;
  uint8_t ping_strikes;
  uint8_t reset_strikes;
  uint8_t draining; /* the first (heads-up) GOAWAY is out */
  uint8_t drained;  /* the final GOAWAY is out */
  uint8_t goaway_final; /* a GOAWAY with goaway_last_id is submitted */
  int32_t goaway_last_id; /* streams above it are refused */
} uvg__conn_srv_t;

struct uvg__conn_s {
  uvg__stream_t io; /* first: the byte stream */
  uvg__sched_t *sched;
  uvg__workq_t q; /* flushes and everything deferred for this connection */
  nghttp2_session *h2;
  const uvg__conn_cbs_t *cbs;
  void *data; /* the upper layer's */
  uvg__list_t link; /* the upper layer's list of connections */
  uvg__list_t streams;
  uvg__iovs_t out;
  uvg__list_t write_msgs; /* messages referenced by the write in flight */
  uvg__list_t write_streams; /* streams whose END_STREAM is in that write */
  uint64_t *stat_writes, *stat_bytes, *stat_proto; /* counters, or NULL */
  uvg__work_t flush_node; /* the flush: posting it cannot fail */
  uvg__conn_srv_t *srv;   /* the server's policy, in uvg__srvconn_t; or NULL */
  uint8_t writing;
  uint8_t flush_queued;
  uint8_t closing;
  uint8_t is_client;
  uint8_t ready;          /* the peer's first SETTINGS arrived */
  uint8_t goaway_received;
  /* why the connection closed: static text, or the byte stream's error,
   * valid until on_close returns */
  const char *close_reason;
  /* keepalive and the handshake deadline (manage.c), both roles */
  const uvg__conn_settings_t *settings;
  uvg__timer_t ka_timer, hs_timer;
  uint64_t hs_ms; /* the handshake's time, for the log line */
  uint64_t last_read, ping_sent_at;
  unsigned nstreams;
  uint8_t ping_outstanding;
  uvg__bdp_t bdp; /* when settings->bdp_limit */
  uvg__h2mem_t h2mem; /* nghttp2's memory */
  /* in sched->idle_conns while without streams; gives memory back then */
  uvg__list_t idle_link;
  uint64_t idle_due;
  uint32_t window; /* the SETTINGS_INITIAL_WINDOW_SIZE last submitted */
  unsigned wire_streams;   /* client role: streams whose HEADERS were sent */
  unsigned window_streams; /* the streams the window was sized for (manage.c) */
  /* closing after a GOAWAY */
  uvg__timer_t close_timer;  /* the close deadline, then the linger */
  uint8_t close_on_goaway;   /* uvg__conn_goaway: close once it is sent */
  uint8_t close_when_idle;   /* uvg__conn_close_when_idle: when streams end */
  uint8_t close_after_write; /* ... and it is in the write in flight */
  uint8_t lingering;         /* half-closed, waiting for the peer's EOF */
  uint8_t abort_frame[17];   /* a GOAWAY written when nghttp2 gave up */
  char peer[64];
  /* a GOAWAY with an error, as a close reason: its code and debug text */
  char goaway_text[128];
};

/* A server's connection: the common part and the server's policy. */
typedef struct {
  uvg__conn_t c;
  uvg__conn_srv_t srv;
} uvg__srvconn_t;

/* Prepares `c` before its io is opened; sets c->io.cbs, which the byte
 * stream must be opened with. From here on uvg__conn_close() is valid. */
void uvg__conn_init(uvg__conn_t *c, uvg__sched_t *sched,
                    const uvg__conn_cbs_t *cbs);

/* uvg__conn_init() for a server's connection, with its policy. */
void uvg__srvconn_init(uvg__srvconn_t *sc, uvg__sched_t *sched,
                       const uvg__conn_cbs_t *cbs);

/* Starts the server side of a connection whose io is open: creates the
 * session, queues SETTINGS and starts reading. Returns 0, UVG_ENOMEM or a
 * libuv error; on failure the caller closes `c`. */
int uvg__conn_start_server(uvg__srvconn_t *sc,
                           const uvg__conn_settings_t *settings);

/* Starts the client side of a connection whose io is open: creates the
 * session, queues the preface and SETTINGS and starts reading; on_ready
 * follows the server's SETTINGS. Only the HTTP/2 settings, keepalive_time
 * and keepalive_timeout of `settings` apply. Returns 0, UVG_ENOMEM or a
 * libuv error; on failure the caller closes `c`. */
int uvg__conn_start_client(uvg__conn_t *c, const uvg__conn_settings_t *settings);

/* Client: opens stream `s` (the caller's storage) with request headers
 * `nv` (copied); messages follow with uvg__ts_send() and the half-close
 * with uvg__ts_end(s, NULL, 0). Returns 0; UVG_ECLOSED (the connection is
 * closing, got GOAWAY, or ran out of stream ids: open a new one);
 * UVG_ENOMEM. */
int uvg__conn_request(uvg__conn_t *c, uvg__tstream_t *s, const nghttp2_nv *nv,
                      size_t n);

/* Marks the connection dirty: one flush runs this loop turn (or when the
 * write in flight completes). */
void uvg__conn_schedule_flush(uvg__conn_t *c);

/* ---- keepalive and handshake deadline (manage.c): gRFC A8 ---- */

/* Arms the keepalive and handshake timers (and the server's). */
void uvg__conn_manage_start(uvg__conn_t *c);
/* The handshake (the peer's SETTINGS) must be done `ms` from now, whatever
 * settings->handshake_timeout says: a client's connect deadline covers
 * the connect and the handshake together. */
void uvg__conn_handshake_within(uvg__conn_t *c, uint64_t ms);
/* Disarms every timer; at close. */
void uvg__conn_manage_stop(uvg__conn_t *c);
/* Events from conn.c. */
void uvg__conn_on_read(uvg__conn_t *c);
void uvg__conn_on_frame(uvg__conn_t *c, const nghttp2_frame *frame);
void uvg__conn_on_data_received(uvg__conn_t *c, size_t len);
/* Before each write: the stream window the estimate and the cap allow
 * for the streams that may be open once it is sent; at most one SETTINGS,
 * which nghttp2 sends ahead of any HEADERS (manage.c). Returns 0, or
 * UVG_ENOMEM when a smaller window could not be queued: the write must
 * wait. c->window stays the window the peer was told. */
int uvg__conn_window_update(uvg__conn_t *c);

/* The least stream window the cap leaves a stream: one frame's worth. */
#define UVG__WINDOW_FLOOR 16384u
/* The receive window both roles default to grows with the estimate up to
 * grpc-go's bdpLimit; the stream windows of a connection add up to
 * UVG__WINDOW_CAP at most (two streams at the full grown window). */
#define UVG__WINDOW_BDP_LIMIT (16u * 1024 * 1024)
#define UVG__WINDOW_CAP (32u * 1024 * 1024)

/* Sets the receive window of `st` from an application's options, the
 * same way for a channel and a server: `window` 0 starts at `start` and
 * grows with the bandwidth-delay estimate, else it stays at `window` (as
 * grpc-go keeps a window it is given); `cap` 0 is UVG__WINDOW_CAP, or
 * the fixed window if that is larger. */
void uvg__conn_settings_window(uvg__conn_settings_t *st, uint32_t window,
                               uint32_t start, uint32_t cap);

/* ---- the server's policy (srvpolicy.c): RFC 9113 5.1.1, gRFC A8, A9 ----
 * Each does nothing on a client's connection (c->srv == NULL). */

void uvg__srv_start(uvg__conn_t *c);
void uvg__srv_stop(uvg__conn_t *c);
/* Before nghttp2 acts on a frame: a HEADERS on a stream id the client
 * skipped ends the connection. Returns 0 or an nghttp2 error. */
int uvg__srv_on_begin_frame(uvg__conn_t *c, const nghttp2_frame_hd *hd);
/* 1 if a new stream `id` must be refused: it is above the last-stream-id
 * of the final GOAWAY sent. */
int uvg__srv_refuses(const uvg__conn_t *c, int32_t id);
void uvg__srv_on_frame(uvg__conn_t *c, const nghttp2_frame *frame);
void uvg__srv_on_headers_or_data_sent(uvg__conn_t *c);
void uvg__srv_on_stream_count(uvg__conn_t *c);
/* 1 between the heads-up GOAWAY and the final one. */
int uvg__srv_draining(const uvg__conn_t *c);
/* The last-stream-id for a GOAWAY to send now, given nghttp2's last
 * processed stream; records it (RFC 9113 6.8: it never grows). */
int32_t uvg__srv_goaway_last_id(uvg__conn_t *c, int32_t last_processed);
/* Graceful GOAWAY: a heads-up GOAWAY (last stream 2^31-1) and a PING; on
 * the ack (or after a second) the final GOAWAY with the last stream id
 * processed. Streams in flight finish; the connection then closes. */
void uvg__conn_drain(uvg__conn_t *c);

/* Submits a GOAWAY whose last-stream-id is the last stream processed;
 * streams the peer opens after it are refused. */
void uvg__conn_submit_goaway(uvg__conn_t *c, uint32_t h2_error,
                             const char *debug);

/* Sends GOAWAY with `h2_error`, lets the write finish, then closes; the
 * connection is closed within UVG__CONN_CLOSE_MS whatever the peer does
 * (a peer that stops reading cannot hold it open). */
#define UVG__CONN_CLOSE_MS 1000
void uvg__conn_goaway(uvg__conn_t *c, uint32_t h2_error, const char *debug);

/* Closes gracefully: uvg__conn_goaway(NO_ERROR, debug) once no stream is
 * open (at once if none is); the streams open now finish. The caller
 * opens no new stream on it. `debug` is static text. */
void uvg__conn_close_when_idle(uvg__conn_t *c, const char *debug);

/* Records why the connection closes (static text, or text valid until
 * on_close returns), unless a reason is already recorded: the first cause
 * wins. */
void uvg__conn_set_close_reason(uvg__conn_t *c, const char *reason);

/* Closes now: every open stream gets on_stream_close, then on_close. */
void uvg__conn_close(uvg__conn_t *c);

/* Sends response headers. With end_stream, the headers end the stream (a
 * trailers-only response). Returns 0, UVG_ECLOSED or UVG_ENOMEM. */
int uvg__ts_respond(uvg__tstream_t *s, const nghttp2_nv *nv, size_t n,
                    int end_stream);
/* Queues a message after the response headers. Returns 0 or UVG_ECLOSED. */
int uvg__ts_send(uvg__tstream_t *s, uvg__msg_t *m);
/* Queues trailers (copied; none for a client's half-close) to follow
 * every queued message; END_STREAM. Returns 0, UVG_ECLOSED or UVG_ENOMEM. */
int uvg__ts_end(uvg__tstream_t *s, const nghttp2_nv *nv, size_t n);
/* Gives the DATA received on `s` so far back to the stream's flow-control
 * window: the upper layer calls it when it is ready for more. The
 * connection's window is given back as DATA arrives. */
void uvg__ts_consume(uvg__tstream_t *s);

/* 1 while messages wait in the stream's send queue. */
static inline int uvg__ts_has_queued(const uvg__tstream_t *s) {
  return !uvg__list_empty(&s->sendq);
}
/* Resets the stream with RST_STREAM `h2_error`. */
void uvg__ts_reset(uvg__tstream_t *s, uint32_t h2_error);

#define UVG__NV(name, value, vlen)                                      \
  {                                                                     \
    (uint8_t *)(name), (uint8_t *)(value), sizeof(name) - 1, (vlen),    \
        NGHTTP2_NV_FLAG_NONE                                            \
  }

#endif

/*
 * The channel and its calls (channel.c, call.c): grpc-go's ClientConn with
 * one policy, pick_first, over the addresses its target resolves to.
 *
 * One connection at a time carries new calls (ch->conn, READY). A
 * connection that received GOAWAY leaves that place and lives on in
 * ch->conns until its streams end. Calls wait in ch->waiting until the
 * channel has a ready connection (grpc-go's pickerWrapper: re-picked on
 * every state change), and every notification to the application is a
 * closure on the channel's work queue (ch->q), so no application code runs
 * inside nghttp2 or inside a uvgrpc function the application called.
 */
#ifndef UVG_CLIENT_CHANNEL_H
#define UVG_CLIENT_CHANNEL_H

#include "../rpc/rpc.h"
#include "../tls/tls.h"
#include "../transport/conn.h"
#include "../../loop/connect.h"
#include "client.h"

/* gRFC A8: the least keepalive time a client may use. */
#define UVG__CLIENT_KEEPALIVE_MIN_MS 10000u

/* Call credentials (call_creds.c): refcounted, atomically like the
 * channel credentials, since they may be shared across loops. */
struct uvg_call_credentials_s {
  atomic_uint refs;
  uvg_get_metadata_cb get;
  void (*destroy)(void *user_data);
  void *user_data;
};

/* Takes a reference; NULL stays NULL. */
uvg_call_credentials_t *uvg__call_creds_ref(uvg_call_credentials_t *cc);
/* The service URL call credentials are asked with: "https://" + the
 * authority without a ":443" + the method's "/package.Service" (grpc-go's
 * audience). Returns an allocated string or NULL when out of memory. */
char *uvg__service_url(const char *authority, const char *method);
/* The status a failing call credential ends a call with: `code`, unless
 * gRFC A54 reserves it for the control plane (INVALID_ARGUMENT, NOT_FOUND,
 * ALREADY_EXISTS, FAILED_PRECONDITION, ABORTED, OUT_OF_RANGE, DATA_LOSS):
 * then INTERNAL. */
uvg_status_code_t uvg__call_creds_code(uvg_status_code_t code);

/* A client connection: the transport's connection and its channel. */
typedef struct {
  uvg__conn_t c;
  uvg_channel_t *ch;
  uint8_t draining; /* GOAWAY received: no new calls */
} uvg__cconn_t;

/* Reads of the channel's connections land here: the transport consumes
 * every read at once, so one buffer serves them all. Over TLS its top
 * UVG__TLS_PLAIN_MAX bytes take the decrypted records. */
#define UVG__CHANNEL_READ_BUF (64 * 1024)

struct uvg_channel_s {
  uv_loop_t *loop;
  uvg__sched_t *sched;
  uvg__workq_t q; /* the application's notifications, in order */
  uvg_channel_options_t opts;
  uvg__conn_settings_t settings;
  uvg__target_t target;
  char *authority;
  uvg__tls_config_t *tls; /* a reference; NULL for plaintext */
  char *tls_name;         /* what the server's certificate must match */
  uvg_connectivity_t state;
  /* resolved addresses; pick_first tries them in order */
  struct sockaddr_storage *addrs;
  size_t naddrs, next_addr;
  uint64_t resolved_at;
  uv_getaddrinfo_t resolve_req;
  uint8_t resolving;
  uvg__backoff_t backoff;
  uint64_t round_delay;       /* this round's backoff delay */
  uvg__timer_t backoff_timer; /* the next round of attempts */
  uvg__timer_t idle_timer;
  uvg__connect_t connect_req;
  uvg__connect_t *connecting; /* the attempt in progress, or NULL */
  uvg__cconn_t *attempt_conn; /* the connection being connected */
  uvg__cconn_t *pending_conn; /* connected, waiting for the SETTINGS */
  uvg__cconn_t *conn;         /* READY: where new calls go */
  uint8_t *read_buf;
  uvg__list_t conns;          /* every open connection (c.link) */
  uvg__list_t waiting;        /* calls without a stream yet */
  uvg__list_t active;         /* calls with a stream */
  uvg__list_t calls;          /* every call not yet freed */
  uvg__list_t watches;
#define UVG__MAX_CLIENT_INTERCEPTORS 16
  struct {
    uvg_client_interceptor_t ic;
    void *data;
  } interceptors[UVG__MAX_CLIENT_INTERCEPTORS];
  unsigned ninterceptors;
  unsigned ncalls;            /* calls not yet freed */
  uvg__work_t w_watch;        /* runs the watches after a state change */
  uvg__work_t w_release;
  uint8_t closing;
  uint8_t released;
  uvg_channel_close_cb close_cb;
  void *close_data;
  char last_error[320]; /* why the last connection attempt failed */
  /* the last GOAWAY with an error code since a connection became READY:
   * why the streams it refuses fail */
  char goaway_text[128];
};

/* ---- call.c: the calls' side of the channel ---- */

/* The channel has a ready connection for a waiting call: its request
 * starts there. On failure the call ends UNAVAILABLE. */
void uvg__ccall_attach(uvg_client_call_t *call, uvg__cconn_t *conn);
/* Ends a call that has no stream yet (fail-fast in TRANSIENT_FAILURE,
 * channel closed). */
void uvg__ccall_fail(uvg_client_call_t *call, uvg_status_code_t code,
                     const char *msg);
/* The call whose `link` (in ch->waiting or ch->active) this is. */
uvg_client_call_t *uvg__ccall_of_link(uvg__list_t *link);
/* 1 for a wait-for-ready call. */
int uvg__ccall_wait_for_ready(const uvg_client_call_t *call);
/* Ends every call the channel holds (channel close). */
void uvg__ccall_cancel_all(uvg_channel_t *ch, const char *msg);
/* The stream callbacks of client connections. */
int uvg__ccall_on_header(uvg__tstream_t *s, uvg__hblock_t kind,
                         const uint8_t *name, size_t namelen,
                         const uint8_t *value, size_t valuelen);
void uvg__ccall_on_headers(uvg__tstream_t *s, uvg__hblock_t kind, int end);
void uvg__ccall_on_data(uvg__tstream_t *s, const uint8_t *p, size_t n);
void uvg__ccall_on_remote_end(uvg__tstream_t *s);
void uvg__ccall_on_stream_close(uvg__tstream_t *s, uint32_t h2_error);

/* ---- channel.c, for call.c ---- */

/* A call is born: the channel counts it until uvg__channel_call_freed(). */
void uvg__channel_call_born(uvg_channel_t *ch);
/* A call is ready to go: it starts on the ready connection, waits (and an
 * IDLE channel starts connecting), or fails fast. */
void uvg__channel_place(uvg_channel_t *ch, uvg_client_call_t *call,
                        uvg__list_t *link);
/* `cc` cannot start streams any more: the channel stops using it and
 * connects again for the waiting calls. */
void uvg__channel_conn_unusable(uvg_channel_t *ch, uvg__cconn_t *cc);
/* A call is freed. */
void uvg__channel_call_freed(uvg_channel_t *ch);

#endif

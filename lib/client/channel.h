/*
 * The channel and its calls: grpc-go's ClientConn, on the loop.
 *
 *   resolver (resolver.c)  --addresses, service config-->  channel
 *   channel --addresses-->  LB policy (pick_first.c, round_robin.c, or
 *                           the application's; lb.c is its side of it)
 *   LB policy --makes-->    subchannels (subchannel.c: grpc-go's addrConn:
 *                           one address, its backoff, its connections)
 *   LB policy --picker-->   channel: waiting calls are picked again
 *
 * Resolver results, subchannel state changes and everything the
 * application is told are closures on the channel's work queue (ch->q):
 * delivered in order, from the loop, never inside nghttp2 or inside a
 * uvgrpc function the caller is in (grpc-go's serializer and update
 * buffers). Calls wait in ch->waiting until a pick gives them a READY
 * subchannel (grpc-go's pickerWrapper).
 */
#ifndef UVG_CLIENT_CHANNEL_H
#define UVG_CLIENT_CHANNEL_H

#include "../rpc/rpc.h"
#include "../tls/tls.h"
#include "../transport/conn.h"
#include "../../loop/connect.h"
#include "client.h"
#include "retry.h"
#include "service_config.h"

/* gRFC A8: the least keepalive time a client may use. */
#define UVG__CLIENT_KEEPALIVE_MIN_MS 10000u
/* The stream window a channel starts with when it grows: HTTP/2's
 * default, as grpc-go's. */
#define UVG__CHANNEL_WINDOW 65535u
/* gRFC A6's channel-wide limit on request bytes kept for retries (the
 * size is ours): past it, a call that would keep more is committed. */
#define UVG__CHANNEL_RETRY_BUFFER (16u * 1024 * 1024)

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

/* A client connection: the transport's connection, its channel, and the
 * subchannel it belongs to (NULL once the subchannel is released: it then
 * only finishes its calls). */
typedef struct {
  uvg__conn_t c;
  uvg_channel_t *ch;
  uvg_subchannel_t *sc;
  uint8_t draining; /* GOAWAY received or sent: no new calls */
  uint8_t answered; /* a call on it got response headers */
} uvg__cconn_t;

/* The address attribute that names, for a channel through an HTTP CONNECT
 * proxy, which tunnel (proxy->requests[i]) a proxy address is for. */
#define UVG__ATTR_TUNNEL "uvg.tunnel"

/* Reads of the channel's connections land here: the transport consumes
 * every read at once, so one buffer serves them all. Over TLS its top
 * UVG__TLS_PLAIN_MAX bytes take the decrypted records. */
#define UVG__CHANNEL_READ_BUF (64 * 1024)

/* ---- subchannel.c ---- */

struct uvg_subchannel_s {
  uvg_channel_t *ch;
  uvg__list_t link; /* ch->subchannels */
  uvg_address_t addr; /* attrs owned */
  char name[64];      /* the address as text, for logs */
  uvg_connectivity_t state;
  uvg_connectivity_t reported; /* the last state the policy was told */
  uvg_connectivity_t pend[4];  /* states it is yet to be told, in order */
  unsigned npend;
  uvg__work_t w_state;         /* tells the policy (lb.c) */
  void *lb_data;
  unsigned refs;      /* the policy's, a queued w_state's, the attempt's */
  uint8_t released;   /* by the policy */
  /* READY connections lost in a row before they proved themselves
   * (subchannel.c, leave_conn) */
  uint8_t unproven;
  uvg__backoff_t backoff;
  uvg__timer_t backoff_timer; /* TRANSIENT_FAILURE -> IDLE */
  uint64_t attempt_started;
  uint64_t attempt_delay;     /* this attempt's backoff delay */
  uint64_t attempt_deadline;  /* loop time it must be READY by */
  uvg__connect_t connect_req;
  uvg__connect_t *connecting; /* the connect in progress, or NULL */
  uvg__cconn_t *attempt_conn; /* the connection being connected */
  uvg__cconn_t *pending_conn; /* connected, waiting for the SETTINGS */
  uvg__cconn_t *conn;         /* up (READY once healthy): picked calls go here */
  /* health checking (health.c, gRFC A17) */
  uvg_client_call_t *health_call;
  uvg__timer_t health_timer;
  uvg__backoff_t health_backoff;
  char last_error[256];
};

/* Makes a subchannel (IDLE) for the channel's policy. */
int uvg__subchannel_new(uvg_channel_t *ch, const uvg_address_t *addr,
                        uvg_subchannel_t **out);
/* The connection picked calls start on, or NULL when not READY. */
uvg__cconn_t *uvg__subchannel_conn(uvg_subchannel_t *sc);
/* A connection of it cannot take new streams: it is left (IDLE). */
void uvg__subchannel_conn_unusable(uvg_subchannel_t *sc, uvg__cconn_t *cc);
/* A call on `cc` got response headers: the server serves there, and its
 * subchannel's backoff resets. */
void uvg__subchannel_conn_answered(uvg__cconn_t *cc);
/* Drops a reference; the last one frees it. */
void uvg__subchannel_unref(uvg_subchannel_t *sc);
/* The health check's verdict on its connection: READY, or
 * TRANSIENT_FAILURE with `why`. */
void uvg__subchannel_set_health(uvg_subchannel_t *sc, int healthy, const char *why);
/* A connected subchannel waits for a new health verdict. */
void uvg__subchannel_set_connecting(uvg_subchannel_t *sc);

/* ---- health.c ---- */

/* 1 when the service config asks for health checks and the policy uses
 * them. */
int uvg__health_enabled(const uvg_channel_t *ch);
/* Watches the health of sc->conn; stops watching. */
void uvg__health_start(uvg_subchannel_t *sc);
void uvg__health_stop(uvg_subchannel_t *sc);
/* The service config may have turned health checks on or off or renamed
 * the service: every connected subchannel follows. */
void uvg__health_config_changed(uvg_channel_t *ch);

/* ---- resolver.c ---- */

struct uvg_resolver_s {
  uvg_channel_t *ch;
  const uvg_resolver_type_t *type;
  void *state;
  unsigned generation; /* results of an older instance are dropped */
  uint8_t running;
};

/* Splits `target` and finds its resolver: a registered scheme, else
 * dns:///target (naming.md). Fills ch->target / ch->tinfo. Returns 0,
 * UVG_EADDR (logged) or UVG_ENOMEM. */
int uvg__resolver_prepare(uvg_channel_t *ch, const char *target);
/* Starts (leaving idle) and stops (idle, close) the channel's resolver. */
int uvg__resolver_start(uvg_channel_t *ch);
void uvg__resolver_stop(uvg_channel_t *ch);
void uvg__resolver_resolve_now(uvg_channel_t *ch);
void uvg__resolver_free(uvg_channel_t *ch);

/* ---- lb.c ---- */

struct uvg_lb_s {
  uvg_channel_t *ch;
  const uvg_lb_policy_type_t *type;
  void *state;
};

const uvg_lb_policy_type_t *uvg__lb_find(const char *name);
/* The service config parser's question (uvg__lb_supported_cb). */
int uvg__lb_supported(const char *name, const char *config, void *arg);
/* The built-in policies. */
extern const uvg_lb_policy_type_t uvg__pick_first;
extern const uvg_lb_policy_type_t uvg__round_robin;
/* Applies a resolution: creates the policy if there is none, hands it the
 * addresses. */
void uvg__lb_resolved(uvg_channel_t *ch, const uvg_address_t *addrs, size_t n,
                      const char *service_config);
void uvg__lb_resolver_error(uvg_channel_t *ch, const char *message);
/* Destroys the policy (idle, close) and drops its picker. */
void uvg__lb_destroy(uvg_channel_t *ch);
/* A subchannel changed state: the policy hears of it from the queue, every
 * change in order (should more than four wait, the last is replaced). */
void uvg__lb_post_subchannel_state(uvg_subchannel_t *sc);
/* Copies an address with its attributes; frees such a copy. */
int uvg__address_copy(uvg_address_t *dst, const uvg_address_t *src);
void uvg__address_free(uvg_address_t *a);
/* 1 when both are the same socket address with the same attributes. */
int uvg__address_equal(const uvg_address_t *a, const uvg_address_t *b);
/* The address as text ("127.0.0.1:50051", "[::1]:1", "unix:/p"). */
void uvg__address_name(const uvg_address_t *a, char *out, size_t len);

/* ---- channel.c ---- */

struct uvg_channel_s {
  uv_loop_t *loop;
  uvg__sched_t *sched;
  uvg__workq_t q; /* the application's notifications, in order */
  uvg_channel_options_t opts;
  uvg__conn_settings_t settings;
  char *authority;
  uvg__tls_config_t *tls; /* a reference; NULL for plaintext */
  char *tls_name;         /* what the server's certificate must match */
  uvg_connectivity_t state;
  /* the target and its resolver */
  uvg_target_info_t tinfo; /* strings owned */
  uvg__target_t target;    /* parsed, for the built-in schemes */
  uint8_t builtin_target;  /* dns, ipv4, ipv6, unix, unix-abstract */
  uvg__proxy_t *proxy;     /* HTTP CONNECT proxy (proxy.c, gRFC A1), or NULL */
  uvg_resolver_t resolver;
  struct { /* the "manual" scheme: the last push, given again on start */
    uvg_address_t *addrs;
    size_t n;
    char *config;
    uint8_t on;
  } manual;
  /* the LB policy and its latest picker */
  uvg_lb_t lb;
  const uvg_lb_policy_type_t *lb_default;
  uvg_pick_fn pick;
  void *picker;
  void (*free_picker)(void *picker);
  /* the service config in force: the resolver's last valid one, else the
   * default from the options; NULL: none. Calls take their method's
   * config once a resolution arrived (sc_known). */
  uvg__service_config_t *sc, *sc_default;
  uint8_t sc_known;
  uvg__retry_throttle_t throttle; /* gRFC A6 retryThrottling, when on */
  size_t retry_buffered; /* request bytes all calls keep for a retry */
  uint8_t throttle_on;
  uint8_t idle_mode;   /* no resolver, no policy: the next call starts them */
  uint8_t health_unimplemented_logged;
  char *health_service; /* what the subchannels watch now, or NULL */
  uint8_t exit_idle_queued;
  uvg__list_t subchannels;
  uvg__timer_t idle_timer;
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
  unsigned ninternal;         /* ... and the library's own */
  unsigned pending;           /* queued closures that use the channel */
  uvg__work_t w_watch;        /* runs the watches after a state change */
  uvg__work_t w_release;
  uvg__work_t w_exit_idle;
  uint8_t closing;
  uint8_t released;
  uvg_channel_close_cb close_cb;
  void *close_data;
  char last_error[320]; /* why the channel has no connection */
  /* the last GOAWAY with an error code since a connection became READY:
   * why the streams it refuses fail */
  char goaway_text[128];
};

/* The policy's state and picker: the channel's state; waiting calls are
 * picked again. */
void uvg__channel_set_picker(uvg_channel_t *ch, uvg_connectivity_t st,
                             uvg_pick_fn pick, void *picker,
                             void (*free_picker)(void *));
/* Records why the channel has no connection (for fail-fast calls). */
void uvg__channel_set_error(uvg_channel_t *ch, const char *fmt, ...);
/* An open connection's loop reference follows whether calls need it. */
void uvg__channel_update_ref(uvg_channel_t *ch);
/* A closure of a resolver or subchannel ran: the channel may be done. */
void uvg__channel_maybe_released(uvg_channel_t *ch);
/* The keepalive time doubles after GOAWAY too_many_pings (gRFC A8). */
void uvg__channel_too_many_pings(uvg_channel_t *ch, const char *peer);

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

/* A call is born: the channel counts it until uvg__channel_call_freed().
 * An internal one (a health check) does not keep the channel from idling
 * or the loop alive. */
void uvg__channel_call_born(uvg_channel_t *ch, int internal);
/* A call is ready to go: it starts on the ready connection, waits (and an
 * IDLE channel starts connecting), or fails fast. */
void uvg__channel_place(uvg_channel_t *ch, uvg_client_call_t *call,
                        uvg__list_t *link);
/* `cc` cannot start streams any more: its subchannel leaves it, and the
 * call waits for the next pick. */
void uvg__channel_conn_unusable(uvg_channel_t *ch, uvg__cconn_t *cc);
/* The method's config from the service config (NULL: none) applies to
 * the call: deadline, wait-for-ready, message limits, retry policy. */
void uvg__ccall_apply_config(uvg_client_call_t *call, const uvg__method_config_t *mc);
int uvg__ccall_config_applied(const uvg_client_call_t *call);
/* 1 for a call whose method config hedges (gRFC A6): instead of a pick it
 * becomes the holder of its attempts (uvg__ccall_hedge_begin). */
int uvg__ccall_hedging(const uvg_client_call_t *call);
void uvg__ccall_hedge_begin(uvg_client_call_t *call);
/* What a pick sees of a call. */
void uvg__ccall_pick_info(const uvg_client_call_t *call, uvg_pick_info_t *info);
/* A call is freed. */
void uvg__channel_call_freed(uvg_channel_t *ch, int internal);
/* A call of the library's own on one connection, past the picker (a
 * health check); it fails if that connection cannot take it. */
int uvg__ccall_start_pinned(uvg_channel_t *ch, uvg__cconn_t *cc, const char *method,
                            const uvg_client_call_cbs_t *cbs, void *user_data,
                            uvg_client_call_t **out);
uvg__cconn_t *uvg__ccall_pinned(const uvg_client_call_t *call);
int uvg__ccall_attached(const uvg_client_call_t *call);

#endif

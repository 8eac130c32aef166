/*
 * uvgrpc: gRPC on one libuv event loop.
 *
 * Threading contract: every function here must be called on the thread that
 * runs the uv_loop_t the object was created on, except uvg_post(), which may
 * be called from any thread. uvgrpc never creates threads and never runs the
 * loop; the application calls uv_run(). Loops on several threads may each
 * hold their own servers and channels (servers can share a port: the
 * reuse_port option); objects of different loops never meet. The
 * process-wide calls (uvg_set_allocator, uvg_set_log_cb,
 * uvg_resolver_register, uvg_lb_policy_register) come before those threads
 * start; the allocator and the log callback are then called from each.
 *
 * Error contract: functions that can fail return 0 or a negative error code:
 * one of the UVG_E* codes below or a libuv error code (a negative errno such
 * as UV_EADDRINUSE). uvg_strerror() names both. The outcome of an RPC is not
 * an error code but a uvg_status_t delivered in the call's final callback.
 *
 * Ownership contract: servers and calls are opaque objects the library
 * allocates. Closing is asynchronous, with a close callback, like uv_close();
 * nothing is freed before that callback. A buffer the caller passes in is
 * either copied before the function returns or, where a function says so,
 * must stay valid until a named callback.
 */
#ifndef UVGRPC_H
#define UVGRPC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define UVG_EXTERN __declspec(dllexport)
#elif defined(__GNUC__)
#define UVG_EXTERN __attribute__((visibility("default")))
#else
#define UVG_EXTERN
#endif

#define UVG_VERSION_MAJOR 0
#define UVG_VERSION_MINOR 1
#define UVG_VERSION_PATCH 0

/* ---------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------- */

/* Library error codes. They lie below -30000 so they never collide with
 * libuv's (negative errno) codes, which the library passes through. */
typedef enum {
  UVG_EINVAL = -30001,   /* an argument is out of its documented range */
  UVG_ENOMEM = -30002,   /* the allocator returned NULL */
  UVG_ECLOSED = -30003,  /* the object is closing or closed */
  UVG_ECANCELED = -30004, /* the call was cancelled or already finished */
  UVG_ESTATE = -30005,   /* not allowed in the object's current state */
  UVG_EPROTO = -30006,   /* the peer broke the HTTP/2 or gRPC protocol */
  UVG_ENOCREDS = -30007, /* no credentials were given where they are required */
  UVG_EEXIST = -30008,   /* a method with that path is already registered */
  UVG_EADDR = -30009,    /* the address string cannot be parsed */
  UVG_ENOTSUP = -30010,  /* the peer does not accept what was asked for */
  UVG_E2BIG = -30011,    /* a message is larger than the configured limit */
  UVG_EBADCREDS = -30012 /* a certificate, key or CA list cannot be read,
                          * parsed or used together (the log says why) */
} uvg_errno_t;

/* Returns a static, human readable name for `err`: a UVG_E* code, a libuv
 * error code, or 0 ("success"). Never returns NULL. */
UVG_EXTERN const char *uvg_strerror(int err);

/* ---------------------------------------------------------------------------
 * Allocation
 * ------------------------------------------------------------------------- */

/* Replaces the allocator every later allocation of the library goes through.
 * Call it before any other uvgrpc function, or not at all; the functions must
 * be thread-safe if uvg_post() is used from other threads or loops on
 * several threads use the library. realloc_fn and
 * free_fn follow the C standard's semantics (free_fn(NULL) is a no-op).
 * The memory must be private and anonymous, as malloc's is: an idle
 * connection gives pages of its buffers back to the kernel
 * (madvise(MADV_DONTNEED)) and expects them to read as zeros afterwards.
 * Returns 0, or UVG_EINVAL if any function is NULL. */
UVG_EXTERN int uvg_set_allocator(void *(*malloc_fn)(size_t),
                                 void *(*realloc_fn)(void *, size_t),
                                 void (*free_fn)(void *));

/* ---------------------------------------------------------------------------
 * Logging and tracing
 *
 * Warnings (a peer that broke the protocol, an accept that failed) go to the
 * log callback; the default one writes a line to stderr. Tracing is switched
 * on per subsystem by the environment variable UVG_TRACE, a comma-separated
 * list of: api, transport, writer, server, call, tls, all. It is read once,
 * at the first server or channel created; tracing costs one branch when
 * off.
 * ------------------------------------------------------------------------- */

typedef enum { UVG_LOG_ERROR = 0, UVG_LOG_WARN = 1, UVG_LOG_TRACE = 2 } uvg_log_level_t;

typedef void (*uvg_log_cb)(uvg_log_level_t level, const char *line,
                           void *user_data);

/* Sends every later log line to `cb` (NULL restores the stderr default).
 * `line` has no trailing newline and is valid during the callback only. */
UVG_EXTERN void uvg_set_log_cb(uvg_log_cb cb, void *user_data);

/* ---------------------------------------------------------------------------
 * Cross-thread posting: the one thread-safe entry point.
 * ------------------------------------------------------------------------- */

typedef struct uvg_poster_s uvg_poster_t;

/* A posted closure. `status` is 0 when it runs normally, UVG_ECANCELED when
 * the poster closed before it could run (free what `arg` owns, call nothing
 * else of the library's from it). */
typedef void (*uvg_post_cb)(void *arg, int status);
typedef void (*uvg_poster_close_cb)(uvg_poster_t *poster, void *user_data);

/* Creates a poster bound to `loop`. Loop thread only. The poster keeps the
 * loop alive (it holds an active uv_async_t) until uvg_poster_close().
 * Returns 0, UVG_EINVAL, UVG_ENOMEM or a libuv error. */
UVG_EXTERN int uvg_poster_new(uv_loop_t *loop, uvg_poster_t **out);

/* Thread-safe: queues `cb(arg, 0)` to run on the loop thread. Closures run in
 * the order they were posted; closures posted by one thread keep that
 * thread's order. Never runs `cb` before returning.
 * Returns 0; UVG_ECLOSED once uvg_poster_close() has begun (`cb` will not
 * run); UVG_ENOMEM. Calling it after the close callback has run is
 * undefined: stop producer threads first. */
UVG_EXTERN int uvg_post(uvg_poster_t *poster, uvg_post_cb cb, void *arg);

/* Loop thread only. Refuses further posts, runs the closures that were
 * already accepted with status UVG_ECANCELED, then calls `cb` (may be NULL)
 * once the poster's memory may be released; it is released after `cb`. */
UVG_EXTERN void uvg_poster_close(uvg_poster_t *poster, uvg_poster_close_cb cb,
                                 void *user_data);

/* ---------------------------------------------------------------------------
 * Status and metadata
 * ------------------------------------------------------------------------- */

typedef enum {
  UVG_STATUS_OK = 0,
  UVG_STATUS_CANCELLED = 1,
  UVG_STATUS_UNKNOWN = 2,
  UVG_STATUS_INVALID_ARGUMENT = 3,
  UVG_STATUS_DEADLINE_EXCEEDED = 4,
  UVG_STATUS_NOT_FOUND = 5,
  UVG_STATUS_ALREADY_EXISTS = 6,
  UVG_STATUS_PERMISSION_DENIED = 7,
  UVG_STATUS_RESOURCE_EXHAUSTED = 8,
  UVG_STATUS_FAILED_PRECONDITION = 9,
  UVG_STATUS_ABORTED = 10,
  UVG_STATUS_OUT_OF_RANGE = 11,
  UVG_STATUS_UNIMPLEMENTED = 12,
  UVG_STATUS_INTERNAL = 13,
  UVG_STATUS_UNAVAILABLE = 14,
  UVG_STATUS_DATA_LOSS = 15,
  UVG_STATUS_UNAUTHENTICATED = 16
} uvg_status_code_t;

/* The outcome of an RPC. `message` is UTF-8 text (NUL-terminated, may be
 * empty); `details` holds the serialized google.rpc.Status carried in the
 * `grpc-status-details-bin` trailer, or NULL. When the library hands a status
 * to a callback, its strings are valid during the callback only. */
typedef struct {
  uvg_status_code_t code;
  const char *message;
  const uint8_t *details;
  size_t details_len;
} uvg_status_t;

/* Returns the canonical name of `code` ("OK", "CANCELLED", ...), or
 * "UNKNOWN" for a value outside 0..16. */
UVG_EXTERN const char *uvg_status_code_name(int code);

/* One metadata entry. Keys are lower-case ASCII ([0-9a-z_.-]); a key ending
 * in "-bin" carries raw bytes, which the library base64-encodes on the wire
 * (without padding) and decodes on receipt (padded or not); other values are
 * printable ASCII (0x20-0x7E).
 * A received comma-joined binary header is split into separate entries. */
typedef struct {
  const char *key;
  const uint8_t *value;
  size_t value_len;
} uvg_metadata_t;

/* ---------------------------------------------------------------------------
 * Credentials
 * ------------------------------------------------------------------------- */

/*
 * TLS runs on mbedtls 2.28, which speaks TLS 1.2 and nothing newer (it has
 * no TLS 1.3): every connection is TLS 1.2, with the cipher suites RFC 9113
 * 9.2.2 leaves to HTTP/2 (ECDHE key exchange, AES-GCM or ChaCha20-Poly1305:
 * TLS_ECDHE_{ECDSA,RSA}_WITH_{AES_128_GCM_SHA256, AES_256_GCM_SHA384,
 * CHACHA20_POLY1305_SHA256}), on X25519, P-256 or P-384, without
 * renegotiation (a peer that tries it loses the connection) and without
 * session resumption. Both sides offer ALPN "h2" and require it: a peer
 * that negotiates no ALPN, or another protocol, is refused during the
 * handshake with a no_application_protocol alert.
 *
 * Credentials objects are refcounted: whatever they are made from (files,
 * memory) is read and parsed when they are made and not used afterwards;
 * a server or channel given them keeps its own reference for as long as it
 * needs them, so the application may release its reference right after
 * uvg_server_listen() or uvg_channel_new(). The reference count is atomic:
 * one credentials object may serve servers and channels on several loops
 * and threads. Creating and releasing credentials may be done from any
 * thread. The insecure credentials are static objects; releasing them does
 * nothing.
 *
 * A handshake failure (plaintext sent to a TLS port, a malformed
 * ClientHello, a certificate that is expired, for another name or from an
 * untrusted CA, no ALPN "h2") ends that connection alone, with a log line
 * naming the peer and the reason; a channel's calls then fail UNAVAILABLE
 * with a message carrying that reason.
 *
 * mbedtls's own memory (record buffers, about 33 KiB per connection, and
 * parsed certificates) comes from the C library's allocator, not from
 * uvg_set_allocator(): Debian builds mbedtls without
 * MBEDTLS_PLATFORM_MEMORY.
 */

/* A subject alternative name of a certificate. */
typedef enum {
  UVG_SAN_EMAIL = 1, /* rfc822Name */
  UVG_SAN_DNS = 2,   /* dNSName, "*.example.com" as written */
  UVG_SAN_URI = 6,   /* uniformResourceIdentifier, "spiffe://..." */
  UVG_SAN_IP = 7     /* iPAddress, as text: "192.168.1.3", "2001:db8::1" */
} uvg_san_type_t;

typedef struct {
  uvg_san_type_t type;
  const char *value;
} uvg_san_t;

/* What a connection's security established: the server's handlers and
 * interceptors see it for the client (uvg_call_auth_info()), a client call
 * for the server (uvg_client_call_auth_info()). On a plaintext connection
 * every field is 0 or NULL. */
typedef struct {
  int secure;        /* 1: TLS */
  /* 1 when the peer presented a certificate that verified: always on a
   * client's TLS connection, on a server's when the client sent one */
  int peer_verified;
  const char *protocol;     /* "TLSv1.2" */
  const char *cipher_suite; /* IANA name, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" */
  const char *alpn;         /* "h2" */
  /* server: the name the client asked for (SNI), NULL if it sent none;
   * client: the name the server's certificate was verified against */
  const char *server_name;
  /* The peer's certificate: its subject ("C=US, O=..., CN=test-client1"),
   * the subject's common name, its subject alternative names and the
   * whole certificate (DER); NULL / 0 when the peer sent none. */
  const char *peer_subject;
  const char *peer_common_name;
  const uvg_san_t *peer_sans;
  size_t npeer_sans;
  const uint8_t *peer_cert;
  size_t peer_cert_len;
} uvg_auth_info_t;

/* PEM text: from the file `file`, or the `len` bytes at `data` (no NUL
 * needed). Exactly one of the two may be set; neither means "none". */
typedef struct {
  const char *file;
  const char *data;
  size_t len;
} uvg_pem_t;

typedef struct uvg_server_credentials_s uvg_server_credentials_t;

/* Plaintext HTTP/2 (h2c). A deliberate choice: uvg_server_listen() refuses to
 * listen without credentials. The returned object is static; never free it. */
UVG_EXTERN uvg_server_credentials_t *uvg_insecure_server_credentials(void);

/* Whether a TLS server asks clients for a certificate (mTLS). */
typedef enum {
  UVG_CLIENT_CERT_NONE = 0,    /* no certificate is asked for */
  /* asked for; a client may send none, but one it sends must verify
   * against client_ca (else the connection is refused) */
  UVG_CLIENT_CERT_REQUEST = 1,
  /* asked for and required: a client without a certificate that verifies
   * against client_ca is refused during the handshake */
  UVG_CLIENT_CERT_REQUIRE = 2
} uvg_client_cert_t;

typedef struct {
  /* Required: the server's certificate, then any intermediates, and its
   * private key (RSA or EC; PKCS#1, SEC1 or unencrypted PKCS#8). */
  uvg_pem_t cert_chain;
  uvg_pem_t private_key;
  /* The CAs client certificates must chain to: required when
   * client_cert is not UVG_CLIENT_CERT_NONE, else unused. */
  uvg_pem_t client_ca;
  uvg_client_cert_t client_cert;
} uvg_tls_server_options_t;

/* Makes TLS server credentials with one reference, which the caller
 * releases with uvg_server_credentials_release(). Returns 0;
 * UVG_EINVAL (NULL argument, a uvg_pem_t with both or, where required,
 * neither source, client_cert out of range); UVG_EBADCREDS (a file that
 * cannot be read, PEM that does not parse, a key that does not match the
 * certificate, client_ca missing with a client_cert mode; the log says
 * which); UVG_ENOMEM. */
UVG_EXTERN int uvg_tls_server_credentials_new(const uvg_tls_server_options_t *opts,
                                              uvg_server_credentials_t **out);

/* Drops the caller's reference (NULL and the insecure credentials: no-op).
 * Servers listening with them keep theirs until they close. */
UVG_EXTERN void uvg_server_credentials_release(uvg_server_credentials_t *creds);

/* ---------------------------------------------------------------------------
 * Server
 * ------------------------------------------------------------------------- */

typedef struct uvg_server_s uvg_server_t;
typedef struct uvg_call_s uvg_call_t;

typedef enum {
  UVG_METHOD_UNARY = 0,
  UVG_METHOD_CLIENT_STREAMING = 1,
  UVG_METHOD_SERVER_STREAMING = 2,
  UVG_METHOD_BIDI_STREAMING = 3
} uvg_method_type_t;

/* A method handler. Message bytes passed to a callback are valid during that
 * callback only. Callbacks never run re-entrantly from inside another uvgrpc
 * function: they come from the loop. */
typedef struct {
  /* Full path, "/package.Service/Method". Copied at registration. */
  const char *path;
  uvg_method_type_t type;
  /* Required. The call begins. For UNARY and SERVER_STREAMING it runs once
   * the client has sent its one request message and half-closed, with that
   * message in `msg`/`len`; for CLIENT_STREAMING and BIDI_STREAMING it runs
   * as soon as the request headers arrive, with msg NULL and len 0. */
  void (*on_call)(uvg_call_t *call, const uint8_t *msg, size_t len);
  /* CLIENT_STREAMING and BIDI_STREAMING: one request message. */
  void (*on_message)(uvg_call_t *call, const uint8_t *msg, size_t len);
  /* CLIENT_STREAMING and BIDI_STREAMING: the client sends no more. */
  void (*on_half_close)(uvg_call_t *call);
  /* Optional. The call was cancelled before the handler finished it: its
   * deadline passed (DEADLINE_EXCEEDED), the client reset the stream
   * (CANCELLED), or the connection or server went away (UNAVAILABLE). Later
   * sends fail with UVG_ECANCELED; the handler must still call
   * uvg_call_finish() to release the call, and should stop its work. */
  void (*on_cancel)(uvg_call_t *call, const uvg_status_t *status);
  /* Required. The last callback of every call, exactly once, after the
   * handler called uvg_call_finish() and the status reached the socket (or
   * the call was cancelled). `status` is the final status as the client will
   * see it, details included: a client reset or a lost connection before
   * the status left makes it CANCELLED or UNAVAILABLE, whatever the handler
   * finished with, or INTERNAL for another reset code. The call's deadline
   * holds after uvg_call_finish() too: a status stuck behind messages the
   * client does not take (HTTP/2 flow control) when the deadline passes
   * resets the stream, and this reports DEADLINE_EXCEEDED. A connection
   * whose socket takes nothing at all is ended by keepalive
   * (TCP_USER_TIMEOUT), not by the deadline. The call is freed when this
   * returns. */
  void (*on_done)(uvg_call_t *call, const uvg_status_t *status);
  /* Returned by uvg_call_method_data(). */
  void *method_data;
  /* Per-method limits overriding the server's options (0: the server's). */
  uint32_t max_receive_message_size;
  uint32_t max_send_message_size;
} uvg_method_t;

/* A duration that never ends: turns a timer-driven behaviour off. */
#define UVG_INFINITE UINT64_MAX

/* Server-wide settings; a field left 0 takes its default. Durations are in
 * milliseconds. */
typedef struct {
  /* SETTINGS_MAX_CONCURRENT_STREAMS; default 100. Streams beyond it are
   * refused with RST_STREAM(REFUSED_STREAM). */
  uint32_t max_concurrent_streams;
  /* Per-stream receive window (SETTINGS_INITIAL_WINDOW_SIZE), at most
   * 2^31-1. Left 0 (as uvg_server_options_init() leaves it), it starts at
   * 1 MiB and grows with the measured bandwidth-delay product of each
   * connection up to 16 MiB, as grpc-go's dynamic window and the
   * channel's do; set, it stays as set. */
  uint32_t initial_window_size;
  /* Connection receive window; default 16 MiB, at most 2^31-1. */
  uint32_t initial_connection_window_size;
  /* The memory one client may fill ahead of its calls' reads: the
   * per-stream window times the streams it has open stays within it, as
   * the channel option of the same name. The window, grown or set, is
   * lowered in halvings as the client's streams pass a power of two, and
   * given back once they fit in a quarter of it; each stream keeps at
   * least 16 KiB. A stream the client opens before the lower window
   * reaches it starts under the window then in force. Default 32 MiB, or
   * initial_window_size if that is larger. */
  uint32_t max_stream_windows_per_connection;
  /* SETTINGS_MAX_FRAME_SIZE; default 16384, from 16384 to 16777215. */
  uint32_t max_frame_size;
  /* Largest request header block (SETTINGS_MAX_HEADER_LIST_SIZE, counted as
   * RFC 9113 does: name + value + 32 per field); default 8 KiB. A larger one
   * is answered with RESOURCE_EXHAUSTED. */
  uint32_t max_header_list_size;
  /* Largest request message, after decompression; default 4 MiB. A larger
   * one ends the call with RESOURCE_EXHAUSTED. */
  uint32_t max_receive_message_size;
  /* Largest response message; default 2^31-1. See uvg_call_send(). */
  uint32_t max_send_message_size;

  /* Connection management (doc/keepalive.md, gRFC A8, A9, A18). */
  /* Ping a client after this long without reading from it; default 2 h. */
  uint64_t keepalive_time_ms;
  /* Close if that ping is not answered in time; default 20 s. Also set as
   * TCP_USER_TIMEOUT on the socket. */
  uint64_t keepalive_timeout_ms;
  /* Enforcement: a client PING that comes sooner than this after the
   * client's previous PING is a strike (a connection's first PING never
   * is). Two strikes are tolerated; the third gets GOAWAY
   * ENHANCE_YOUR_CALM "too_many_pings" and the connection is closed, as
   * grpc-go does (its limit of 2 strikes is exceeded). Default 5 min.
   * Strikes are forgiven whenever the server sends headers or data. */
  uint64_t keepalive_min_time_ms;
  /* Enforcement: allow keepalive pings on connections without calls
   * (otherwise such pings are held to a 2 h minimum). Default 0. */
  int keepalive_permit_without_stream;
  /* Drain (GOAWAY) a connection without calls for this long; default
   * UVG_INFINITE. */
  uint64_t max_connection_idle_ms;
  /* Drain a connection at this age, ±10%; default UVG_INFINITE. */
  uint64_t max_connection_age_ms;
  /* After draining for age, close this much later; default UVG_INFINITE. */
  uint64_t max_connection_age_grace_ms;
  /* Close a connection whose HTTP/2 preface and SETTINGS have not arrived
   * by then; default 120 s. */
  uint64_t connection_timeout_ms;

  /* Nonzero: TCP listeners set SO_REUSEPORT, so that several servers
   * share one port: N processes, or N loops on N threads, each with its
   * own server (the threading contract holds per loop). The kernel
   * spreads new connections across them by a hash of the client's address
   * and port; a connection stays with the server that accepted it. Every
   * socket on the port must set it, from the same user. Default 0 (a
   * second bind gives UV_EADDRINUSE). Unix sockets ignore it. See
   * docs/scaling.md. */
  int reuse_port;
} uvg_server_options_t;

/* Fills `opts` with the defaults (every field set to its default value). */
UVG_EXTERN void uvg_server_options_init(uvg_server_options_t *opts);

/* Creates a server on `loop` (options may be NULL for the defaults).
 * Returns 0, UVG_EINVAL (a setting out of its range) or UVG_ENOMEM. */
UVG_EXTERN int uvg_server_new(uv_loop_t *loop, const uvg_server_options_t *opts,
                              uvg_server_t **out);

/* Registers `n` methods; `methods` is copied. Call before or after listening.
 * Returns 0; UVG_EINVAL (NULL path, path not "/Service/Method", missing
 * on_call/on_done, or a streaming type without on_message/on_half_close);
 * UVG_EEXIST (that path is registered); UVG_ECLOSED; UVG_ENOMEM. On error no
 * method of the batch is registered. */
UVG_EXTERN int uvg_server_register(uvg_server_t *server,
                                   const uvg_method_t *methods, size_t n);

/* Starts listening. `address` is "HOST:PORT" with an IPv4 literal,
 * "[IPV6]:PORT", or "unix:PATH". `creds` is required: pass
 * uvg_insecure_server_credentials() for plaintext. If `bound_port` is not
 * NULL it receives the port actually bound (useful with port 0; 0 for unix
 * paths). May be called several times to listen on several addresses.
 * A unix socket file left at PATH by a process that no longer listens on it
 * is replaced; if something listens there, or PATH is not a socket, the
 * result is UV_EADDRINUSE and the file is left alone. The server removes
 * its socket file when it closes (unless another file took the path).
 * Returns 0; UVG_ENOCREDS; UVG_EADDR; UVG_ECLOSED; UVG_ENOMEM; or a libuv
 * error from bind/listen (UV_EADDRINUSE, UV_EACCES, ...). */
UVG_EXTERN int uvg_server_listen(uvg_server_t *server, const char *address,
                                 uvg_server_credentials_t *creds,
                                 int *bound_port);

typedef void (*uvg_server_close_cb)(uvg_server_t *server, void *user_data);

/* Stops listening, closes every connection and cancels every call in flight
 * (their handlers see on_cancel with UNAVAILABLE; each call's on_done still
 * runs once its handler has called uvg_call_finish()). `cb` (may be NULL)
 * runs when every handle and call is released; the server is freed after
 * it returns. Each connection is closed at most 1 s after its GOAWAY was
 * queued, even if the client stopped reading. Calling it twice is a no-op.
 * Calling it while uvg_server_shutdown() waits ends that shutdown's grace
 * at once: the calls left are cancelled as above and the server closes;
 * only the shutdown's callback runs (this call's `cb` is never called). */
UVG_EXTERN void uvg_server_close(uvg_server_t *server, uvg_server_close_cb cb,
                                 void *user_data);

/* Shuts down gracefully: stops listening, drains every connection (a
 * heads-up GOAWAY and a PING, then the final GOAWAY once the PING returns:
 * calls in flight go on, also those the client sent before it read the
 * heads-up; streams above the final GOAWAY's last-stream-id are refused),
 * and after `grace_ms` closes
 * what is left, cancelling those calls with UNAVAILABLE. `cb` (may be NULL)
 * runs when everything is released; the server is freed after it.
 * uvg_server_close() during the grace ends it early (see there). Calling
 * it after a shutdown or close began is a no-op. */
UVG_EXTERN void uvg_server_shutdown(uvg_server_t *server, uint64_t grace_ms,
                                    uvg_server_close_cb cb, void *user_data);

/* A server interceptor: sees every call's method and metadata, each message
 * in both directions and the final status, and may reject a call before its
 * handler sees it. Every callback is optional; `data` is the pointer given
 * to uvg_server_add_interceptor(). They run on the loop, in the order the
 * interceptors were added (on_done in reverse order). */
typedef struct {
  /* The call was routed to a method (uvg_call_method(), uvg_call_metadata()
   * work). Return 0 to let it go on, or fill `reject` (code other than OK;
   * message may be NULL, copied) and return nonzero to end it with that
   * status: no later interceptor and no handler sees the call. */
  int (*on_start)(uvg_call_t *call, void *data, uvg_status_t *reject);
  /* A request message, decompressed, before the handler gets it. */
  void (*on_recv_message)(uvg_call_t *call, const uint8_t *msg, size_t len,
                          void *data);
  /* A response message the handler sends, before compression. */
  void (*on_send_message)(uvg_call_t *call, const uint8_t *msg, size_t len,
                          void *data);
  /* The final status, once per call whose on_start returned 0. */
  void (*on_done)(uvg_call_t *call, const uvg_status_t *status, void *data);
} uvg_server_interceptor_t;

/* Appends an interceptor (copied) to the server's chain; at most 16.
 * Returns 0, UVG_EINVAL or UVG_ENOMEM. Add interceptors before listening:
 * calls already in flight are not shown to new ones. */
UVG_EXTERN int uvg_server_add_interceptor(uvg_server_t *server,
                                          const uvg_server_interceptor_t *ic,
                                          void *data);

/* Counters for observability and tests. */
typedef struct {
  uint64_t connections_accepted;
  uint64_t connections_open;
  uint64_t calls_started;
  uint64_t calls_open;
  uint64_t writes;         /* batches written (each one uv_try_write() or
                              uv_write()), all connections */
  uint64_t bytes_written;
  uint64_t protocol_errors; /* connections closed for a protocol violation */
} uvg_server_stats_t;

UVG_EXTERN void uvg_server_get_stats(const uvg_server_t *server,
                                     uvg_server_stats_t *stats);

/* ---------------------------------------------------------------------------
 * Server calls
 * ------------------------------------------------------------------------- */

/* The method path of the call ("/pkg.Svc/Method"); valid for the call's life. */
UVG_EXTERN const char *uvg_call_method(const uvg_call_t *call);
/* The registered method's method_data. */
UVG_EXTERN void *uvg_call_method_data(const uvg_call_t *call);

/* Application data attached to the call; NULL until set. */
UVG_EXTERN void uvg_call_set_data(uvg_call_t *call, void *data);
UVG_EXTERN void *uvg_call_get_data(const uvg_call_t *call);

/* The request metadata (custom headers, without pseudo-headers, `te`,
 * `content-type`, `content-length` and the `grpc-` headers of the protocol
 * such as `grpc-timeout`; "-bin" values already decoded). Valid for the
 * call's life. Returns the number of entries. */
UVG_EXTERN size_t uvg_call_metadata(const uvg_call_t *call,
                                    const uvg_metadata_t **md);

/* Looks up the first request metadata entry named `key`; NULL if absent. */
UVG_EXTERN const uvg_metadata_t *uvg_call_metadata_get(const uvg_call_t *call,
                                                       const char *key);

/* Milliseconds left until the call's deadline (0 when passed), or -1 when
 * the client set no grpc-timeout. */
UVG_EXTERN int64_t uvg_call_time_remaining(const uvg_call_t *call);

/* 1 once the call has been cancelled (see on_cancel), else 0. */
UVG_EXTERN int uvg_call_is_cancelled(const uvg_call_t *call);

/* The security of the call's connection: TLS, and the client's identity
 * when it presented a certificate (mTLS). Never NULL; valid for the call's
 * life, also after its connection closed. */
UVG_EXTERN const uvg_auth_info_t *uvg_call_auth_info(const uvg_call_t *call);

/* The client's address as text: "127.0.0.1:5000", "[::1]:5000", or for a
 * unix socket the connecting process ("unix:pid=1234,uid=1000"; "unix peer"
 * when the kernel cannot say). Never NULL; valid for the call's life, also
 * after its connection closed. */
UVG_EXTERN const char *uvg_call_peer(const uvg_call_t *call);

/* Sends the response headers with `n` custom metadata entries (copied).
 * Optional: the first uvg_call_send() or uvg_call_finish() sends headers
 * without custom metadata if this was not called.
 * Returns 0; UVG_EINVAL (bad key or value); UVG_ESTATE (headers already
 * sent); UVG_ECANCELED (cancelled or finished); UVG_ENOMEM. */
UVG_EXTERN int uvg_call_send_headers(uvg_call_t *call, const uvg_metadata_t *md,
                                     size_t n);

/* Message compression algorithms (grpc-encoding). */
typedef enum {
  UVG_COMPRESS_NONE = 0, /* "identity" */
  UVG_COMPRESS_GZIP = 1,
  UVG_COMPRESS_DEFLATE = 2
} uvg_compression_t;

/* Compresses the call's response messages with `alg` (announced in the
 * response headers' grpc-encoding). Call it before the headers are sent.
 * Messages sent with UVG_SEND_NO_COMPRESS still go uncompressed.
 * A client that sent no grpc-accept-encoding is taken to accept every
 * algorithm of this library (some send the header only with compressed
 * requests, yet decompress responses); one that sent the header accepts
 * what it lists (doc/compression.md).
 * Returns 0; UVG_EINVAL (unknown alg); UVG_ESTATE (headers already sent);
 * UVG_ENOTSUP (the client's grpc-accept-encoding does not list it: the
 * call stays uncompressed); UVG_ECANCELED. */
UVG_EXTERN int uvg_call_set_compression(uvg_call_t *call, uvg_compression_t alg);

/* During on_call (unary and server-streaming) or on_message: 1 if the
 * message being delivered arrived compressed, else 0. Received messages are
 * always handed over decompressed. */
UVG_EXTERN int uvg_call_message_compressed(const uvg_call_t *call);

/* CLIENT_STREAMING and BIDI_STREAMING: with `paused` nonzero no more
 * on_message (or on_half_close) is delivered, and no flow-control window is
 * granted for the call beyond what it already had, until it is called
 * again with 0: the handler paces reading (a client sending faster than it
 * can handle is held back by HTTP/2 flow control, and the call holds at
 * most one stream window of unread bytes). Without it, messages are given
 * to the handler as they arrive and window is granted as they are.
 * Returns 0 or UVG_EINVAL. */
UVG_EXTERN int uvg_call_pause_reading(uvg_call_t *call, int paused);

/* uvg_call_send() flags. */
#define UVG_SEND_NO_COMPRESS 1u /* send this message uncompressed */

/* Called when the message passed to uvg_call_send() has been handed to the
 * socket (status 0) or dropped because the call ended (UVG_ECANCELED). */
typedef void (*uvg_send_cb)(uvg_call_t *call, int status, void *user_data);

/* Queues one response message; `flags` is 0 or UVG_SEND_NO_COMPRESS. A
 * compressed message is compressed before this returns, so `data` is free
 * to reuse at once; `cb`, if set, still reports when it left.
 * With `cb` NULL the bytes are copied and the
 * function returns with `data` free to reuse. With `cb` set the bytes are
 * sent without copying: `data` must stay valid and unchanged until `cb`
 * runs. `cb` is the backpressure signal: a handler that sends its next
 * message from `cb` never has more than one message buffered per call.
 * Messages are sent in the order queued, flow control permitting.
 * Returns 0; UVG_ECANCELED (cancelled or finished: `cb` will not run);
 * UVG_ESTATE (a UNARY or CLIENT_STREAMING call already has its response);
 * UVG_E2BIG (larger than the send limit: the call is ended with
 * RESOURCE_EXHAUSTED and on_cancel follows); UVG_ENOMEM. */
UVG_EXTERN int uvg_call_send(uvg_call_t *call, const void *data, size_t len,
                             unsigned flags, uvg_send_cb cb, void *user_data);

/* Ends the call with `status` and optional trailing metadata, all copied:
 * the status is sent after every queued message. A call with nothing sent
 * yet gets a trailers-only response. status->message may be NULL; it is
 * percent-encoded on the wire. status->details, if not NULL, holds
 * status->details_len bytes (a serialized google.rpc.Status) sent as the
 * grpc-status-details-bin trailer; `trailers` may carry that trailer
 * instead, not both. on_done follows, with the status as the client gets
 * it, details included. Must be called exactly once per call (this or
 * uvg_call_finish()), also after on_cancel (then nothing is sent and it
 * returns UVG_ECANCELED, but the call is released all the same).
 * Returns 0; UVG_ECANCELED (see above); UVG_EINVAL (status NULL, bad code,
 * key or value, details given twice: the call ends with INTERNAL instead);
 * UVG_ESTATE (already finished: no effect). */
UVG_EXTERN int uvg_call_finish_status(uvg_call_t *call,
                                      const uvg_status_t *status,
                                      const uvg_metadata_t *trailers, size_t n);

/* uvg_call_finish_status() with a status of `code` and `message` and no
 * details. */
UVG_EXTERN int uvg_call_finish(uvg_call_t *call, uvg_status_code_t code,
                               const char *message, const uvg_metadata_t *trailers,
                               size_t n);

/* ---------------------------------------------------------------------------
 * Channels: the client side
 *
 * Names: everything of the client starts uvg_channel_ or uvg_client_call_.
 * uvg_call_* functions always act on a server call (the handler's side);
 * a call made through a channel is a uvg_client_call_t.
 * ------------------------------------------------------------------------- */

typedef struct uvg_channel_s uvg_channel_t;
typedef struct uvg_channel_credentials_s uvg_channel_credentials_t;
typedef struct uvg_client_call_s uvg_client_call_t;

/* Plaintext HTTP/2 (h2c), chosen explicitly: uvg_channel_new() refuses to
 * make a channel without credentials. The object is static; never free it. */
UVG_EXTERN uvg_channel_credentials_t *uvg_insecure_channel_credentials(void);

/* TLS for a channel (see "Credentials" above for the protocol, the cipher
 * suites and the ownership rules). */
typedef struct {
  /* The CAs the server's certificate must chain to. Neither file nor data:
   * the file named by the environment variable
   * GRPC_DEFAULT_SSL_ROOTS_FILE_PATH (as gRPC reads it), else the system's
   * bundle, /etc/ssl/certs/ca-certificates.crt. */
  uvg_pem_t root_certs;
  /* Optional, both or neither: a client certificate and its key for
   * servers that ask for one (mTLS). */
  uvg_pem_t cert_chain;
  uvg_pem_t private_key;
  /* The name the server's certificate must carry and that is sent as SNI,
   * instead of the host of the channel's authority (gRPC's
   * ssl_target_name_override, the interop tests' --server_host_override).
   * It does not change the :authority of calls. Copied. An IP address
   * (as the authority's host or here) is matched against the
   * certificate's IP SANs and is not sent as SNI (RFC 6066 3). */
  const char *server_name_override;
} uvg_tls_channel_options_t;

/* Makes TLS channel credentials with one reference, which the caller
 * releases with uvg_channel_credentials_release(). Every connection
 * verifies the server's certificate against the roots and the name (the
 * override or the authority's host); there is no way to skip it.
 * Returns 0; UVG_EINVAL (NULL argument, a uvg_pem_t with both sources, a
 * certificate without its key or a key without its certificate);
 * UVG_EBADCREDS (a file that cannot be read, PEM that does not parse, no
 * usable root, a key that does not match its certificate; the log says
 * which); UVG_ENOMEM. */
UVG_EXTERN int uvg_tls_channel_credentials_new(const uvg_tls_channel_options_t *opts,
                                               uvg_channel_credentials_t **out);

/* Drops the caller's reference (NULL and the insecure credentials:
 * no-op). Channels made with them keep theirs until they are released. */
UVG_EXTERN void uvg_channel_credentials_release(uvg_channel_credentials_t *creds);

/* ---- Call credentials: per-call metadata such as a bearer token ---- */

typedef struct uvg_call_credentials_s uvg_call_credentials_t;
typedef struct uvg_metadata_request_s uvg_metadata_request_t;

/* Asks for the metadata of one call: `service_url` is
 * "https://" + the call's authority (without ":443") + "/package.Service",
 * `method_name` the method alone ("SayHello"), as gRPC's plugin
 * credentials get them; both are valid until the request is answered.
 * Answer exactly once, now or later, with uvg_metadata_request_done(). It
 * runs on the loop, never inside a uvgrpc function the application called. */
typedef void (*uvg_get_metadata_cb)(uvg_metadata_request_t *req,
                                    const char *service_url,
                                    const char *method_name, void *user_data);

/* Makes call credentials with one reference: `get` is asked before each
 * call that uses them starts; `destroy` (may be NULL) runs with user_data
 * once the last reference is gone. Returns 0, UVG_EINVAL (get NULL) or
 * UVG_ENOMEM. Call credentials apply per channel
 * (uvg_channel_options_t.call_credentials) and per call
 * (uvg_client_call_options_t.call_credentials); a call with both asks both,
 * the channel's first, and carries the metadata of both. They are sent
 * only over TLS: on a channel with insecure credentials such a call fails
 * UNAUTHENTICATED, without asking `get`, unless the channel sets
 * allow_insecure_call_credentials. */
UVG_EXTERN int uvg_call_credentials_new(uvg_get_metadata_cb get,
                                        void (*destroy)(void *user_data),
                                        void *user_data,
                                        uvg_call_credentials_t **out);

/* Drops a reference (NULL: no-op). Channels and calls given the
 * credentials keep their own. */
UVG_EXTERN void uvg_call_credentials_release(uvg_call_credentials_t *creds);

/* Answers `req`: with code UVG_STATUS_OK its `n` metadata entries (copied;
 * keys and values as for request metadata) are added to the call, which
 * goes on; with another code the call ends with that code and `message`
 * (may be NULL, copied) without being sent, except that the codes gRFC A54
 * keeps for the control plane (INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS,
 * FAILED_PRECONDITION, ABORTED, OUT_OF_RANGE, DATA_LOSS) become INTERNAL.
 * `req` is freed by this call in every case. Returns 0; UVG_ECANCELED (the
 * call ended meanwhile: nothing is added); UVG_EINVAL (NULL req, a bad key
 * or value, or a code outside 0..16: the call ends INTERNAL); UVG_ENOMEM
 * (the call ends INTERNAL). Loop thread only, like everything but
 * uvg_post(): a token fetched on another thread comes back through it. */
UVG_EXTERN int uvg_metadata_request_done(uvg_metadata_request_t *req,
                                         const uvg_metadata_t *md, size_t n,
                                         uvg_status_code_t code,
                                         const char *message);

/* Connectivity states (grpc/grpc doc/connectivity-semantics-and-api.md). */
typedef enum {
  UVG_STATE_IDLE = 0,
  UVG_STATE_CONNECTING = 1,
  UVG_STATE_READY = 2,
  UVG_STATE_TRANSIENT_FAILURE = 3,
  UVG_STATE_SHUTDOWN = 4
} uvg_connectivity_t;

/* Returns "IDLE", "CONNECTING", ... ("UNKNOWN" outside the enum). */
UVG_EXTERN const char *uvg_connectivity_name(int state);

/* Channel-wide settings; a field left 0 takes its default. Durations are in
 * milliseconds. */
typedef struct {
  /* Per-stream receive window (SETTINGS_INITIAL_WINDOW_SIZE). Left 0 (as
   * uvg_channel_options_init() leaves it), it starts at 64 KiB and grows with the measured bandwidth-delay product
   * up to 16 MiB (as grpc-go's dynamic window); set, it stays as set.
   * Reading is paced by uvg_client_call_read(): a call holds at most one
   * window of unread bytes. */
  uint32_t initial_window_size;
  /* Connection receive window; default 16 MiB. */
  uint32_t initial_connection_window_size;
  /* The memory one connection lets its server fill ahead of the calls'
   * reads: the per-stream window times the streams open stays within it.
   * The window, grown or set, is lowered (a SETTINGS sent before the new
   * streams' HEADERS) in halvings as the streams the server lets open
   * pass a power of two, and given back once they fit in a quarter of it;
   * each stream keeps at least 16 KiB. Streams waiting behind the server's
   * MAX_CONCURRENT_STREAMS count only once they are sent. Bytes a stream
   * already holds unread under its earlier, larger window stay until
   * read: while a stream that stopped reading keeps them, the streams
   * that joined add up to this again at most. Default
   * 32 MiB, or initial_window_size if that is larger. */
  uint32_t max_stream_windows_per_connection;
  uint32_t max_frame_size;       /* default 16384 */
  uint32_t max_header_list_size; /* largest response header block; 16 KiB */
  /* Largest response message, after decompression (default 4 MiB) and
   * largest request message (default 2^31-1); per call overridable. */
  uint32_t max_receive_message_size;
  uint32_t max_send_message_size;
  /* Reconnect backoff (doc/connection-backoff.md): first delay (1 s), its
   * growth (1.6), jitter (0.2: ±20%), cap (120 s), and the least time a
   * connection attempt gets (20 s). */
  uint64_t backoff_initial_ms;
  double backoff_multiplier;
  double backoff_jitter;
  uint64_t backoff_max_ms;
  uint64_t min_connect_timeout_ms;
  /* Go IDLE (close the connection) after this long without calls; default
   * 30 min; UVG_INFINITE: never. */
  uint64_t idle_timeout_ms;
  /* Keepalive (gRFC A8): ping after this long without reading from the
   * server; default UVG_INFINITE (off); at least 10 s (a smaller value is
   * raised to 10 s). Doubled, for the channel's later connections, when
   * the server answers GOAWAY too_many_pings. */
  uint64_t keepalive_time_ms;
  /* Close the connection if the ping is not answered in time; default
   * 20 s. Also TCP_USER_TIMEOUT on the socket. */
  uint64_t keepalive_timeout_ms;
  /* Ping also while the channel has no calls; default 0 (no). */
  int keepalive_permit_without_calls;
  /* The :authority of calls; default from the target (its host[:port], or
   * "localhost" for unix sockets). */
  const char *authority;
  /* The LB policy when the service config names none; default
   * "pick_first". Must be registered (uvg_lb_policy_register). */
  const char *lb_policy;
  /* The service config (JSON, doc/service_config.md; copied) in force
   * while the resolver gives none: LB policy, per-method timeout,
   * waitForReady, message size limits, retryPolicy, hedgingPolicy,
   * retryThrottling, healthCheckConfig (docs/resolvers.md). An
   * invalid one fails uvg_channel_new() with UVG_EINVAL and a log line
   * that says why. */
  const char *default_service_config;
  /* HTTP CONNECT proxy (gRFC A1) for a dns, ipv4 or ipv6 target:
   * "http://[user:password@]host[:port]" (port 80 when left out; user and
   * password percent-decoded and sent as "Proxy-Authorization: Basic").
   * The channel then resolves the proxy's host, not the target's, and
   * each connection asks the proxy for a tunnel to the target's host:port
   * as written (the proxy resolves it), or to each address of an
   * ipv4/ipv6 target; :authority stays the target's. NULL (the default):
   * the environment decides (grpc_proxy, https_proxy, http_proxy;
   * docs/api.md). "": no proxy. no_grpc_proxy / no_proxy still exclude
   * targets. Copied. A malformed value or a scheme other than http fails
   * uvg_channel_new() with UVG_EINVAL and a log line. */
  const char *http_proxy;
  /* Nonzero: never a proxy, whatever http_proxy and the environment say
   * (gRPC C-core's GRPC_ARG_ENABLE_HTTP_PROXY=0). Default 0. */
  int disable_http_proxy;
  /* Call credentials every call of the channel uses (the channel takes a
   * reference); NULL: none. */
  uvg_call_credentials_t *call_credentials;
  /* Nonzero: call credentials may be sent over a channel with insecure
   * credentials (for a proxy that terminates TLS, or tests). */
  int allow_insecure_call_credentials;
} uvg_channel_options_t;

/* Fills `opts` with the defaults. */
UVG_EXTERN void uvg_channel_options_init(uvg_channel_options_t *opts);

/* Creates a channel to `target` on `loop` (options may be NULL). Targets
 * follow grpc/grpc doc/naming.md: "dns:[///]host[:port]" (port 443 by
 * default; names are resolved by the system's getaddrinfo, so a DNS server
 * named in the authority, "dns://8.8.8.8/host", is refused with UVG_EADDR,
 * as gRPC C++'s native resolver does), "host:port", "ipv4:addr[:port][,addr[:port]...]",
 * "ipv6:[addr]:port,...", "unix:path", "unix:///abs/path",
 * "unix-abstract:name". The channel starts IDLE and connects on its first
 * call (or uvg_channel_state(ch, 1)); it tries the resolved addresses in
 * order (pick_first) and reconnects with backoff after a failure.
 * Returns 0; UVG_EINVAL (NULL argument, option out of range, an unusable
 * http_proxy option); UVG_ENOCREDS (creds NULL); UVG_EADDR (a malformed
 * target, or one whose host a proxy request cannot carry; the log says
 * why); UVG_ENOMEM. */
UVG_EXTERN int uvg_channel_new(uv_loop_t *loop, const char *target,
                               uvg_channel_credentials_t *creds,
                               const uvg_channel_options_t *opts,
                               uvg_channel_t **out);

typedef void (*uvg_channel_close_cb)(uvg_channel_t *channel, void *user_data);

/* Closes the channel: calls in flight and queued end with CANCELLED
 * ("channel closed"), each through its one on_status; the state becomes
 * SHUTDOWN; `cb` (may be NULL) runs once every call and connection is
 * released, and the channel is freed after it. Calling it twice is a
 * no-op. New calls fail with UVG_ECLOSED from here on. */
UVG_EXTERN void uvg_channel_close(uvg_channel_t *channel,
                                  uvg_channel_close_cb cb, void *user_data);

/* The channel's state now; with try_to_connect an IDLE channel starts
 * connecting. */
UVG_EXTERN uvg_connectivity_t uvg_channel_state(uvg_channel_t *channel,
                                                int try_to_connect);

typedef void (*uvg_channel_state_cb)(uvg_channel_t *channel,
                                     uvg_connectivity_t state, void *user_data);

/* Calls `cb` once, from the loop, when the state differs from `last_seen`
 * (at once, on the next loop turn, if it already does). Watches do not
 * keep the loop alive. A watch still waiting when the channel closes runs
 * with SHUTDOWN. Returns 0, UVG_ECLOSED or UVG_ENOMEM. */
UVG_EXTERN int uvg_channel_watch_state(uvg_channel_t *channel,
                                       uvg_connectivity_t last_seen,
                                       uvg_channel_state_cb cb, void *user_data);

/* What a client call reports. Every callback is optional except on_status.
 * They run on the loop, never inside a uvgrpc function the application
 * called, and `user_data` is the pointer given to uvg_client_call_start(). */
typedef struct {
  /* The response headers' metadata (none for a trailers-only response). */
  void (*on_metadata)(uvg_client_call_t *call, const uvg_metadata_t *md,
                      size_t n, void *user_data);
  /* One response message, decompressed, after a uvg_client_call_read();
   * valid during the callback only. */
  void (*on_message)(uvg_client_call_t *call, const uint8_t *msg, size_t len,
                     void *user_data);
  /* Required. The last callback of every call, exactly once: the status
   * and the trailing metadata (valid during the callback). The call is
   * freed when it returns. A status the server sent arrives after every
   * message that came before it has been read; a status of the library's
   * own (CANCELLED, DEADLINE_EXCEEDED, UNAVAILABLE, RESOURCE_EXHAUSTED,
   * INTERNAL) at once, dropping unread messages. */
  void (*on_status)(uvg_client_call_t *call, const uvg_status_t *status,
                    const uvg_metadata_t *trailers, size_t n, void *user_data);
} uvg_client_call_cbs_t;

/* Per-call settings (the struct may be NULL: all defaults). */
typedef struct {
  /* Deadline from now, sent as grpc-timeout; 0 = none, and so is a value
   * past what grpc-timeout can say (UVG_INFINITE, say). When it passes the
   * call ends DEADLINE_EXCEEDED and its stream is reset (CANCEL). */
  uint64_t timeout_ms;
  /* Wait-for-ready: wait through TRANSIENT_FAILURE until READY or the
   * deadline; otherwise (fail-fast) a channel in TRANSIENT_FAILURE fails
   * the call with UNAVAILABLE, and one CONNECTING makes it wait. 1: wait;
   * -1: fail fast; 0: as the service config's waitForReady says for the
   * method (fail fast when it says nothing). */
  int wait_for_ready;
  /* Request metadata (copied). */
  const uvg_metadata_t *metadata;
  size_t nmetadata;
  /* Compression of request messages (UVG_SEND_NO_COMPRESS opts one out). */
  uvg_compression_t compression;
  /* 0: the channel's limits. */
  uint32_t max_receive_message_size;
  uint32_t max_send_message_size;
  /* The call's :authority, instead of the channel's. */
  const char *authority;
  /* Call credentials for this call alone, after the channel's (the call
   * takes a reference); NULL: none. */
  uvg_call_credentials_t *call_credentials;
} uvg_client_call_options_t;

/* Starts a call of `method` ("/package.Service/Method", copied) with
 * `opts` (copied; may be NULL). The request headers go out once the
 * channel has a ready connection. Returns 0 with *out set: from then on
 * on_status will run exactly once. Returns UVG_EINVAL (bad argument, bad
 * metadata key or value, no on_status), UVG_ECLOSED (the channel is
 * closing) or UVG_ENOMEM, and then no callback runs. */
UVG_EXTERN int uvg_client_call_start(uvg_channel_t *channel, const char *method,
                                     const uvg_client_call_options_t *opts,
                                     const uvg_client_call_cbs_t *cbs,
                                     void *user_data, uvg_client_call_t **out);

typedef void (*uvg_client_send_cb)(uvg_client_call_t *call, int status,
                                   void *user_data);

/* Queues one request message, as uvg_call_send() does on the server: with
 * `cb` NULL the bytes are copied; with `cb` they are sent without copying,
 * must stay valid until `cb` runs (0: handed to the socket; UVG_ECANCELED:
 * the call ended first), and `cb` is the backpressure signal. `flags`: 0
 * or UVG_SEND_NO_COMPRESS. Returns 0; UVG_ESTATE (after the half-close);
 * UVG_ECANCELED (the call has ended or is ending: cb will not run);
 * UVG_E2BIG (over the send limit: the call ends RESOURCE_EXHAUSTED);
 * UVG_ENOMEM. */
UVG_EXTERN int uvg_client_call_send(uvg_client_call_t *call, const void *data,
                                    size_t len, unsigned flags,
                                    uvg_client_send_cb cb, void *user_data);

/* During on_message: 1 if the message being delivered arrived compressed,
 * else 0 (messages are always handed over decompressed). */
UVG_EXTERN int uvg_client_call_message_compressed(const uvg_client_call_t *call);

/* During on_message: 1 when another response message has arrived and waits
 * in memory, so that a uvg_client_call_read() made now has it delivered as
 * soon as this on_message returns, in the same run of callbacks; 0 when the
 * next message has yet to come from the network (or the call is ending).
 * A binding that hands messages to another runtime in batches reads on
 * while this says 1 and hands the batch over when it says 0. */
UVG_EXTERN int uvg_client_call_message_ready(const uvg_client_call_t *call);

/* The client sends no more messages (END_STREAM after those queued).
 * Returns 0, UVG_ESTATE (twice) or UVG_ECANCELED. */
UVG_EXTERN int uvg_client_call_half_close(uvg_client_call_t *call);

/* Asks for the next response message: on_message follows once, when one
 * has arrived. Until then nothing more of the call is read into memory
 * and no flow-control window is granted beyond one window (grpc-js's
 * startRead). Returns 0, UVG_ESTATE (a read is already pending) or
 * UVG_ECANCELED. */
UVG_EXTERN int uvg_client_call_read(uvg_client_call_t *call);

/* Cancels the call. Before its status is known: on_status follows with
 * CANCELLED ("Cancelled on client"), the stream is reset, and it returns
 * 0. Once the status is known (the server's status has arrived, or the
 * call ended on the client's side) the cancel changes nothing, as in
 * grpc-go and grpc-js: on_status reports that status, once, whether it
 * already ran, is queued, or waits for response messages the application
 * has not read (those are dropped); it returns UVG_ECANCELED. One
 * exception: a server's OK with response messages still unread becomes
 * CANCELLED (the application did not get the whole response), and it
 * returns 0. */
UVG_EXTERN int uvg_client_call_cancel(uvg_client_call_t *call);

/* The result of a unary call: `reply` (NULL unless status->code is OK) is
 * valid during the callback. */
typedef void (*uvg_unary_cb)(const uvg_status_t *status, const uint8_t *reply,
                             size_t len, void *user_data);

/* A unary call in one step: sends `req` (copied), half-closes, reads the
 * one reply and calls `cb` exactly once. An OK response with no message,
 * or more than one, ends INTERNAL, as grpc-java and grpc-go report it, and
 * so does a request that cannot be queued for want of memory.
 * Returns 0, or what uvg_client_call_start() returns (then cb never
 * runs). */
UVG_EXTERN int uvg_channel_unary(uvg_channel_t *channel, const char *method,
                                 const void *req, size_t len,
                                 const uvg_client_call_options_t *opts,
                                 uvg_unary_cb cb, void *user_data);

/* A client interceptor: sees every call of the channel, may add, change
 * or remove its request metadata and fail it before it starts, and sees
 * each message both ways and the final status. Every callback is
 * optional; `data` is the pointer given to uvg_channel_add_interceptor().
 * They run on the loop, from the channel's queue, in the order the
 * interceptors were added (on_status in reverse order). */
typedef struct {
  /* The call is about to start: uvg_client_call_method() and the metadata
   * functions below work. Return 0 to let it go on, or fill `reject` (a
   * code other than OK; message may be NULL, copied) and return nonzero:
   * the call ends with that status without a request being sent, and no
   * later interceptor sees it. */
  int (*on_start)(uvg_client_call_t *call, void *data, uvg_status_t *reject);
  /* A request message, before compression, as uvg_client_call_send()
   * takes it: also one sent right after uvg_client_call_start(), before
   * on_start ran. */
  void (*on_send_message)(uvg_client_call_t *call, const uint8_t *msg,
                          size_t len, void *data);
  /* A response message, decompressed, before the application gets it. */
  void (*on_recv_message)(uvg_client_call_t *call, const uint8_t *msg,
                          size_t len, void *data);
  /* The final status, once per call whose on_start returned 0, before the
   * application's on_status. */
  void (*on_status)(uvg_client_call_t *call, const uvg_status_t *status,
                    void *data);
} uvg_client_interceptor_t;

/* Appends an interceptor (copied) to the channel's chain; at most 16. Add
 * interceptors before the first call: calls already started do not see
 * later ones. Returns 0 or UVG_EINVAL. */
UVG_EXTERN int uvg_channel_add_interceptor(uvg_channel_t *channel,
                                           const uvg_client_interceptor_t *ic,
                                           void *data);

/* The call's method path; valid for the call's life. */
UVG_EXTERN const char *uvg_client_call_method(const uvg_client_call_t *call);

/* The security of the connection the call was sent on: the server's
 * certificate over TLS. NULL until the call has a stream (from on_metadata
 * on, and in on_status for a call that reached the server); then valid
 * for the call's life. */
/* The server's address as uvg_call_peer() writes it ("127.0.0.1:443",
 * "[::1]:443", "unix:pid=..."), of the connection the call went on (a
 * hedged call's: its winning attempt's); "" before the call had a
 * connection. Never NULL; valid until on_status returns. */
UVG_EXTERN const char *uvg_client_call_peer(const uvg_client_call_t *call);

UVG_EXTERN const uvg_auth_info_t *uvg_client_call_auth_info(
    const uvg_client_call_t *call);

/* The request metadata as it stands (valid until it is changed). Returns
 * the number of entries. */
UVG_EXTERN size_t uvg_client_call_metadata(const uvg_client_call_t *call,
                                           const uvg_metadata_t **md);

/* Sets request metadata `key` to the one value given (value copied),
 * replacing every entry of that key; value NULL removes them. Only before
 * the request headers are sent: from an interceptor's on_start, or right
 * after uvg_client_call_start() returns. Returns 0; UVG_EINVAL (bad or
 * reserved key, bad ASCII value); UVG_ESTATE (the headers are sent);
 * UVG_ENOMEM. */
UVG_EXTERN int uvg_client_call_set_metadata(uvg_client_call_t *call,
                                            const char *key, const void *value,
                                            size_t len);

/* ---------------------------------------------------------------------------
 * Name resolution and load balancing: plug-ins (docs/resolvers.md)
 *
 * A channel asks a resolver, chosen by the target's scheme, for addresses;
 * a load-balancing (LB) policy, chosen by name, makes subchannels for them
 * and publishes a picker that chooses one for each call (grpc-go's
 * resolver.Builder and balancer.Builder). Both run on the channel's loop,
 * and every event they receive is delivered from the loop in order, never
 * from inside a uvgrpc function the plug-in called: a plug-in may call any
 * function of this section from its callbacks. Register plug-ins before the
 * channels that use them are made; registration is not thread-safe.
 * ------------------------------------------------------------------------- */

/* An attribute of an address: for the LB policy (a weight, a zone). */
typedef struct {
  const char *key;
  const char *value;
} uvg_attribute_t;

/* An address: a socket address (struct sockaddr_in, sockaddr_in6 or
 * sockaddr_un; an abstract unix name has sun_path[0] == '\0' and addrlen
 * says its length) and attributes. Whoever receives one copies it. */
typedef struct {
  struct sockaddr_storage addr;
  uint32_t addrlen;
  const uvg_attribute_t *attrs;
  size_t nattrs;
} uvg_address_t;

/* A channel's target, split as an RFC 3986 URI (doc/naming.md). */
typedef struct {
  const char *target;    /* as given to uvg_channel_new() */
  const char *scheme;    /* "dns", "unix", a registered scheme */
  const char *authority; /* "" when there is none */
  const char *endpoint;  /* the path without its first '/' */
} uvg_target_info_t;

/* The channel's side of one resolver instance. */
typedef struct uvg_resolver_s uvg_resolver_t;

typedef struct {
  const char *scheme; /* the target scheme it serves; not copied */
  /* Starts resolving `t` for a channel, when the channel leaves idle (its
   * first call), and again after each idle period; results go to
   * uvg_resolver_update() or uvg_resolver_error(), now or later. Sets
   * *state (passed to the others). Returns 0, or an error (UVG_EADDR for
   * a target it cannot serve): the channel is then TRANSIENT_FAILURE and
   * fail-fast calls end UNAVAILABLE with "resolver: ...". */
  int (*start)(uvg_resolver_t *r, const uvg_target_info_t *t, void **state);
  /* The channel would like fresh results (a connection was lost): a hint
   * the resolver may rate-limit. May be NULL. */
  void (*resolve_now)(void *state);
  /* Stops: no update may be pushed after it returns; free what is yours
   * (an operation in flight may finish later and free then). */
  void (*stop)(void *state);
} uvg_resolver_type_t;

/* Registers a resolver for `type->scheme` (the struct is kept, not
 * copied), replacing the one registered before, built-in ones included.
 * Returns 0, UVG_EINVAL, or UVG_ENOMEM (at most 32 schemes). */
UVG_EXTERN int uvg_resolver_register(const uvg_resolver_type_t *type);

/* Pushes a resolution: addresses (copied) and a service config (JSON,
 * copied; NULL for none: the channel's default applies). An update with no
 * address is an error like uvg_resolver_error(). Returns 0, UVG_EINVAL or
 * UVG_ENOMEM. The channel applies it from its loop, in order. */
UVG_EXTERN int uvg_resolver_update(uvg_resolver_t *r, const uvg_address_t *addrs,
                                   size_t n, const char *service_config);
/* Resolution failed (message copied): the LB policy is told; a channel
 * without addresses becomes TRANSIENT_FAILURE with this message. The
 * resolver retries by itself (with backoff) when it can. Returns 0 or
 * UVG_ENOMEM. */
UVG_EXTERN int uvg_resolver_error(uvg_resolver_t *r, const char *message);
/* The loop the resolver runs on. */
UVG_EXTERN uv_loop_t *uvg_resolver_loop(const uvg_resolver_t *r);

/* The "manual" scheme: a channel made with target "manual:NAME" resolves
 * nothing by itself; the application pushes addresses into the resolver
 * this returns (for tests, and for applications with their own
 * discovery). NULL for other channels. Valid until the channel closes. */
UVG_EXTERN uvg_resolver_t *uvg_channel_manual_resolver(uvg_channel_t *channel);

/* The channel's side of one LB policy instance, and a subchannel: one
 * address the channel connects to, reconnecting with its own backoff. */
typedef struct uvg_lb_s uvg_lb_t;
typedef struct uvg_subchannel_s uvg_subchannel_t;

/* What a pick decided for one call. */
typedef enum {
  UVG_PICK_QUEUE = 0,    /* wait for the next picker */
  UVG_PICK_COMPLETE = 1, /* *sc: a READY subchannel */
  UVG_PICK_FAIL = 2      /* *status; wait-for-ready calls keep waiting */
} uvg_pick_result_t;

typedef struct {
  const char *method; /* "/package.Service/Method" */
  const uvg_metadata_t *metadata;
  size_t nmetadata;
} uvg_pick_info_t;

/* Chooses for one call. It runs synchronously inside the channel: it must
 * not call other uvgrpc functions. status->message must stay valid until
 * the next picker replaces this one. */
typedef uvg_pick_result_t (*uvg_pick_fn)(void *picker, const uvg_pick_info_t *info,
                                         uvg_subchannel_t **sc,
                                         uvg_status_t *status);

typedef struct {
  const char *name; /* as service configs name it; not copied */
  /* A channel needs this policy. Sets *state. Returns 0 or an error. */
  int (*create)(uvg_lb_t *lb, void **state);
  /* New addresses from the resolver (at least one), with this policy's
   * configuration from the service config (JSON text, "{}" when none).
   * Returns 0, or UVG_EINVAL for a configuration it rejects. */
  int (*update)(void *state, const uvg_address_t *addrs, size_t n,
                const char *config);
  /* The resolver failed; the policy keeps what it has, or reports
   * TRANSIENT_FAILURE if it has nothing. */
  void (*resolver_error)(void *state, const char *message);
  /* A subchannel of this policy changed state (error: why, for
   * TRANSIENT_FAILURE; else ""). In order; none after its release. */
  void (*subchannel_state)(void *state, uvg_subchannel_t *sc,
                           uvg_connectivity_t st, const char *error);
  /* A call arrived while the policy reported IDLE: connect. May be NULL. */
  void (*exit_idle)(void *state);
  /* The channel is done with the policy: release its subchannels (their
   * connections finish their calls) and free the state. */
  void (*destroy)(void *state);
  /* Optional: whether `config` (JSON text) is valid for this policy;
   * returns 0 or UVG_EINVAL. It runs when a service config names the
   * policy, so that a bad one is refused whole and the channel keeps the
   * config it had (gRFC A21). Without it, a config is only checked by
   * update(), and refused there the channel has no working policy. */
  int (*check_config)(const char *config);
} uvg_lb_policy_type_t;

/* Registers a policy under `type->name` (kept, not copied), replacing one
 * of the same name. "pick_first" and "round_robin" are built in. Returns 0,
 * UVG_EINVAL or UVG_ENOMEM (at most 32 policies). */
UVG_EXTERN int uvg_lb_policy_register(const uvg_lb_policy_type_t *type);

/* Makes a subchannel for `addr` (copied), IDLE; the policy owns it until
 * uvg_subchannel_release(). Returns 0, UVG_EINVAL or UVG_ENOMEM. */
UVG_EXTERN int uvg_lb_subchannel_new(uvg_lb_t *lb, const uvg_address_t *addr,
                                     uvg_subchannel_t **out);
/* Publishes the policy's state (the channel's connectivity state) and a
 * picker. The channel calls free_picker(picker) (may be NULL) when a newer
 * picker replaces it or the policy is destroyed; calls waiting for a pick
 * are picked again with the new one. */
UVG_EXTERN void uvg_lb_update_state(uvg_lb_t *lb, uvg_connectivity_t state,
                                    uvg_pick_fn pick, void *picker,
                                    void (*free_picker)(void *picker));
/* Asks the resolver for fresh results (uvg_resolver_type_t.resolve_now). */
UVG_EXTERN void uvg_lb_request_resolution(uvg_lb_t *lb);
UVG_EXTERN uv_loop_t *uvg_lb_loop(const uvg_lb_t *lb);

/* Starts connecting an IDLE subchannel (no-op in other states). It goes
 * CONNECTING, then READY or TRANSIENT_FAILURE; from TRANSIENT_FAILURE it
 * goes IDLE once its backoff delay is over, and from READY IDLE when the
 * connection is lost or the server sends GOAWAY. */
UVG_EXTERN void uvg_subchannel_connect(uvg_subchannel_t *sc);
/* The policy is done with it: no more events; its connection receives no
 * new calls and closes once its calls end. */
UVG_EXTERN void uvg_subchannel_release(uvg_subchannel_t *sc);
UVG_EXTERN uvg_connectivity_t uvg_subchannel_state(const uvg_subchannel_t *sc);
UVG_EXTERN const uvg_address_t *uvg_subchannel_address(const uvg_subchannel_t *sc);
/* The policy's own pointer on a subchannel. */
UVG_EXTERN void uvg_subchannel_set_data(uvg_subchannel_t *sc, void *data);
UVG_EXTERN void *uvg_subchannel_get_data(const uvg_subchannel_t *sc);

#ifdef __cplusplus
}
#endif
#endif /* UVGRPC_H */

/* Server internals shared by server.c (listeners, connections, registry)
 * and call.c (one RPC on one HTTP/2 stream). */
#ifndef UVG_SERVER_SERVER_H
#define UVG_SERVER_SERVER_H

#include "../../loop/arena.h"
#include "../rpc/rpc.h"
#include "uvgrpc/protobuf.h"
#include "../../loop/listener.h"
#include "../tls/tls.h"
#include "../transport/conn.h"

/* A service added with uvg_server_add_service(): what its generated
 * handlers need (the typed handler struct, copied) and what reflection
 * lists. Freed with the server. */
typedef struct {
  uvg__list_t link; /* server->services, in the order added */
  const uvg_pb_service_t *desc;
  void *data;
  max_align_t impl[]; /* desc->impl_size bytes */
} uvg__service_t;

/* Something of the library's that lives and dies with a server (the health
 * service): told when the server begins to close and when it is freed.
 * Embedded in its owner. */
typedef struct uvg__server_hook_s {
  uvg__list_t link;
  void (*on_close)(struct uvg__server_hook_s *hook); /* may be NULL */
  void (*on_free)(struct uvg__server_hook_s *hook);
} uvg__server_hook_t;

/* One registered method, allocated on its own: calls in flight point at
 * it, so it never moves while the server lives, however the table grows. */
typedef struct {
  uvg_method_t m; /* m.path points at `path` */
  const uvg__service_t *service; /* NULL unless added as a service */
  size_t path_len;
  size_t service_len; /* "/pkg.Service" */
  char path[];        /* our copy, NUL-terminated */
} uvg__method_entry_t;

typedef struct {
  uvg__listener_t l;
  uvg__list_t link;
  uvg_server_t *server;
  uvg__tls_config_t *tls; /* a reference; NULL for plaintext */
  uint8_t closing;
} uvg__server_listener_t;

struct uvg_server_s {
  uv_loop_t *loop;
  uvg__sched_t *sched; /* the loop's, shared (uvg__sched_acquire) */
  uvg__workq_t q; /* call notifications when a connection's queue is gone */
  uvg__work_t w_close; /* the last step of closing, on q */
  uvg_server_options_t opts;
  uvg__conn_settings_t settings;
  /* Open addressing on the path hash; a slot holds an entry's address
   * (NULL when free), so growing moves pointers, never entries. */
  uvg__method_entry_t **methods;
  size_t methods_cap, methods_n;
  uvg__list_t listeners;
  uvg__list_t conns;
  uvg__list_t services; /* uvg__service_t */
  uvg__list_t hooks;    /* uvg__server_hook_t */
  uvg__list_t call_pool; /* released calls kept for reuse */
  size_t call_pool_n;
  uint8_t *read_buf;
  uvg_server_stats_t stats;
  uvg__timer_t grace_timer; /* uvg_server_shutdown's grace period */
#define UVG__MAX_INTERCEPTORS 16
  struct {
    uvg_server_interceptor_t ic;
    void *data;
  } interceptors[UVG__MAX_INTERCEPTORS];
  unsigned ninterceptors;
  int closing;
  int graceful;  /* uvg_server_shutdown() began it and its grace runs on */
  int finishing; /* everything is closed; w_close is queued */
  uvg_server_close_cb close_cb;
  void *close_data;
};

const uvg__method_entry_t *uvg__server_find(const uvg_server_t *s,
                                            const char *path, size_t len);
/* 1 if some registered method's path starts with this "/Service/". */
int uvg__server_has_service(const uvg_server_t *s, const char *path,
                            size_t service_len);
/* uvg_server_register() for the methods of `service` (may be NULL). */
int uvg__server_register(uvg_server_t *s, const uvg_method_t *methods,
                         size_t n, const uvg__service_t *service);
/* Adds `hook`; its on_close runs at once if the server is closing. */
void uvg__server_add_hook(uvg_server_t *s, uvg__server_hook_t *hook);
/* Serves the connected socket `fd` (TCP, or unix with is_unix) as if it
 * had been accepted, through TLS with `tls` (borrowed: the caller keeps
 * it alive as long as the server) or in plaintext with NULL. The server
 * owns fd from here on, whatever the result: 0; UVG_ECLOSED (closing);
 * UVG_ENOMEM; a libuv error (the connection is then closed). This is how
 * the listeners serve what they accept, and how the fuzz targets feed a
 * connection bytes without listening. */
int uvg__server_adopt(uvg_server_t *s, int fd, int is_unix,
                      uvg__tls_config_t *tls);
/* Re-checks whether a closing server can complete. */
void uvg__server_maybe_closed(uvg_server_t *s);

/* The connection callbacks that create and drive server calls. */
extern const uvg__conn_cbs_t uvg__server_conn_cbs;
/* Frees the calls kept for reuse. */
void uvg__server_call_pool_free(uvg_server_t *s);

/* A call's registered method. */
const uvg__method_entry_t *uvg__call_entry(const uvg_call_t *c);
/* A call's arenas: `arena` lives as long as the call, `msg_arena` holds
 * the one streamed request message being handed over. Both are reset when
 * the call is released. */
uvg__arena_t *uvg__call_arena(uvg_call_t *c);
uvg__arena_t *uvg__call_msg_arena(uvg_call_t *c);

#endif

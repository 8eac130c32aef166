/* Server internals shared by server.c (listeners, connections, registry)
 * and call.c (one RPC on one HTTP/2 stream). */
#ifndef UVG_SERVER_SERVER_H
#define UVG_SERVER_SERVER_H

#include "../rpc/rpc.h"
#include "../../loop/listener.h"
#include "../tls/tls.h"
#include "../transport/conn.h"

/* One registered method, allocated on its own: calls in flight point at
 * it, so it never moves while the server lives, however the table grows. */
typedef struct {
  uvg_method_t m; /* m.path points at `path` */
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
  int finishing; /* everything is closed; w_close is queued */
  uvg_server_close_cb close_cb;
  void *close_data;
};

const uvg__method_entry_t *uvg__server_find(const uvg_server_t *s,
                                            const char *path, size_t len);
/* 1 if some registered method's path starts with this "/Service/". */
int uvg__server_has_service(const uvg_server_t *s, const char *path,
                            size_t service_len);
/* Re-checks whether a closing server can complete. */
void uvg__server_maybe_closed(uvg_server_t *s);

/* The connection callbacks that create and drive server calls. */
extern const uvg__conn_cbs_t uvg__server_conn_cbs;
/* Frees the calls kept for reuse. */
void uvg__server_call_pool_free(uvg_server_t *s);

#endif

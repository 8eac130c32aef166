/*
 * The client side of uvgrpc/protobuf.h: typed calls on the general client
 * call. Each call carries a small context (the application's callbacks,
 * copied, and an arena whose first block is inline), so decoding a reply
 * allocates nothing in the common case.
 *
 * A method with a single response (unary, client streaming) reads it
 * itself and hands it to on_status, as grpc-go's CloseAndRecv and the
 * C++ unary callback do; the others deliver each response on_message
 * after the application's read, and its memory is reused by the next.
 */
#include "../client/client.h"

#include <string.h>

#include "pb.h"

#define INLINE_ARENA 512

typedef struct {
  const uvg_pb_method_t *method;
  const uvg_pb_client_tramp_t *tramp;
  void *user_data;
  uvg__arena_t arena;
  const ProtobufCMessage *reply; /* single response: the one that came */
  unsigned nreplies;
  uint8_t single;
  alignas(max_align_t) uint8_t inline_block[INLINE_ARENA];
  alignas(max_align_t) uint8_t cbs[]; /* the application's, copied */
} ctx_t;

static void on_metadata(uvg_client_call_t *call, const uvg_metadata_t *md,
                        size_t n, void *ud) {
  ctx_t *x = ud;
  if (x->tramp->on_metadata != NULL)
    x->tramp->on_metadata(call, md, n, x->cbs, x->user_data);
}

static void on_message(uvg_client_call_t *call, const uint8_t *msg, size_t len,
                       void *ud) {
  ctx_t *x = ud;
  if (x->single) {
    if (++x->nreplies > 1) {
      uvg__client_call_abort(call, UVG_STATUS_INTERNAL,
                             "grpc: more than one response message on a "
                             "single-response call");
      return;
    }
  } else {
    uvg__arena_reset(&x->arena); /* the previous response is done with */
  }
  const ProtobufCMessage *m =
      uvg__pb_decode(&x->arena, x->method->output, msg, len);
  if (m == NULL) {
    /* grpc-go's words for the same failure */
    uvg__client_call_abort(call, UVG_STATUS_INTERNAL,
                           x->arena.failed ? "out of memory"
                                           : "grpc: failed to unmarshal the "
                                             "received message");
    return;
  }
  if (x->single) {
    x->reply = m;
    uvg_client_call_read(call); /* on to the status, or a second message */
  } else if (x->tramp->on_message != NULL) {
    x->tramp->on_message(call, m, x->cbs, x->user_data);
  }
}

static void on_status(uvg_client_call_t *call, const uvg_status_t *status,
                      const uvg_metadata_t *trailers, size_t n, void *ud) {
  ctx_t *x = ud;
  uvg_status_t st = *status;
  if (x->single && st.code == UVG_STATUS_OK && x->reply == NULL) {
    st.code = UVG_STATUS_INTERNAL;
    st.message = "grpc: no response message on a single-response call";
    st.details = NULL;
    st.details_len = 0;
  }
  x->tramp->on_status(call, &st, st.code == UVG_STATUS_OK ? x->reply : NULL,
                      trailers, n, x->cbs, x->user_data);
  uvg__arena_free(&x->arena);
  uvg__free(x);
}

static void on_packed_sent(uvg_client_call_t *call, int status, void *arg) {
  uvg__pb_packed_t *p = arg;
  uvg_client_send_cb cb = (uvg_client_send_cb)p->cb;
  void *user_data = p->user_data;
  uvg__free(p);
  cb(call, status, user_data);
}

static int send_bytes(void *call, const uint8_t *bytes, size_t len,
                      unsigned flags, uvg__pb_packed_t *p) {
  return uvg_client_call_send(call, bytes, len, flags,
                              p ? on_packed_sent : NULL, p);
}

int uvg_client_call_send_message(uvg_client_call_t *call,
                                 const ProtobufCMessage *msg, unsigned flags,
                                 uvg_client_send_cb cb, void *user_data) {
  return uvg__pb_send(call, msg, flags, (void (*)(void))cb, user_data,
                      send_bytes);
}

int uvg_client_call_start_pb(uvg_channel_t *ch, const uvg_pb_method_t *method,
                             const ProtobufCMessage *req,
                             const uvg_client_call_options_t *opts,
                             const uvg_pb_client_tramp_t *tramp,
                             const void *cbs, size_t cbs_size, void *user_data,
                             uvg_client_call_t **out) {
  static const uvg_client_call_cbs_t raw_cbs = {on_metadata, on_message,
                                                on_status};
  if (method == NULL || tramp == NULL || tramp->on_status == NULL ||
      (cbs == NULL && cbs_size > 0))
    return UVG_EINVAL;
  int req_stream = method->type == UVG_METHOD_CLIENT_STREAMING ||
                   method->type == UVG_METHOD_BIDI_STREAMING;
  if ((req == NULL) != req_stream) return UVG_EINVAL;
  ctx_t *x = uvg__malloc(sizeof(*x) + cbs_size);
  if (x == NULL) return UVG_ENOMEM;
  x->method = method;
  x->tramp = tramp;
  x->user_data = user_data;
  uvg__arena_init_buf(&x->arena, x->inline_block, sizeof(x->inline_block));
  x->reply = NULL;
  x->nreplies = 0;
  x->single = method->type == UVG_METHOD_UNARY ||
              method->type == UVG_METHOD_CLIENT_STREAMING;
  if (cbs_size > 0) memcpy(x->cbs, cbs, cbs_size);
  uvg_client_call_t *call;
  int rc = uvg_client_call_start(ch, method->path, opts, &raw_cbs, x, &call);
  if (rc != 0) {
    uvg__free(x);
    return rc;
  }
  if (req != NULL) {
    /* From here every failure ends the call through its on_status. */
    rc = uvg_client_call_send_message(call, req, 0, NULL, NULL);
    if (rc == 0)
      uvg_client_call_half_close(call);
    else
      uvg__client_call_abort(call, UVG_STATUS_INTERNAL, uvg_strerror(rc));
  }
  if (x->single) uvg_client_call_read(call);
  if (out != NULL) *out = call;
  return 0;
}

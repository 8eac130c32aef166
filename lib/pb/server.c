/*
 * The server side of uvgrpc/protobuf.h: services added with their typed
 * handlers, requests decoded into the call's arena, responses packed.
 *
 * A unary request lives in the call's arena until on_done, so a handler
 * may answer later (from a timer, from another thread through uvg_post())
 * without copying it. Streamed requests go to a second arena that is
 * emptied before each message, so a long stream holds one message at a
 * time however many arrive.
 */
#include "../server/server.h"

#include <stdalign.h>
#include <string.h>

#include "pb.h"

static void *arena_alloc(void *data, size_t n) {
  return uvg__arena_alloc(data, n);
}
static void arena_free(void *data, void *p) {
  (void)data;
  (void)p; /* the arena is released as a whole */
}

const ProtobufCMessage *uvg__pb_decode(uvg__arena_t *arena,
                                       const ProtobufCMessageDescriptor *desc,
                                       const uint8_t *msg, size_t len) {
  ProtobufCAllocator al = {arena_alloc, arena_free, arena};
  static const uint8_t none[1];
  return protobuf_c_message_unpack(desc, &al, len, msg ? msg : none);
}

uvg__pb_packed_t *uvg__pb_pack_new(const ProtobufCMessage *msg) {
  size_t len = protobuf_c_message_get_packed_size(msg);
  uvg__pb_packed_t *p = uvg__malloc(sizeof(*p) + len);
  if (p == NULL) return NULL;
  p->len = protobuf_c_message_pack(msg, p->bytes);
  return p;
}

int uvg__pb_send(void *call, const ProtobufCMessage *msg, unsigned flags,
                 void (*cb)(void), void *user_data, uvg__pb_send_fn send) {
  if (call == NULL || msg == NULL) return UVG_EINVAL;
  if (cb == NULL) {
    alignas(max_align_t) uint8_t stack[UVG__PB_STACK_PACK];
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = len <= sizeof(stack) ? stack : uvg__malloc(len);
    if (buf == NULL) return UVG_ENOMEM;
    protobuf_c_message_pack(msg, buf);
    int rc = send(call, buf, len, flags, NULL);
    if (buf != stack) uvg__free(buf);
    return rc;
  }
  uvg__pb_packed_t *p = uvg__pb_pack_new(msg);
  if (p == NULL) return UVG_ENOMEM;
  p->cb = cb;
  p->user_data = user_data;
  int rc = send(call, p->bytes, p->len, flags, p);
  if (rc != 0) uvg__free(p);
  return rc;
}

int uvg_server_add_service(uvg_server_t *s, const uvg_pb_service_t *svc,
                           const void *impl, void *data) {
  if (s == NULL || svc == NULL || impl == NULL || svc->name == NULL ||
      (svc->nmethods > 0 && (svc->methods == NULL || svc->handlers == NULL)))
    return UVG_EINVAL;
  if (s->closing) return UVG_ECLOSED;
  uvg__service_t *b = uvg__malloc(sizeof(*b) + svc->impl_size);
  uvg_method_t *ms =
      uvg__malloc((svc->nmethods ? svc->nmethods : 1) * sizeof(*ms));
  if (b == NULL || ms == NULL) {
    uvg__free(b);
    uvg__free(ms);
    return UVG_ENOMEM;
  }
  b->desc = svc;
  b->data = data;
  memcpy(b->impl, impl, svc->impl_size);
  for (size_t i = 0; i < svc->nmethods; i++) {
    ms[i] = svc->handlers[i];
    ms[i].method_data = data;
  }
  int rc = uvg__server_register(s, ms, svc->nmethods, b);
  uvg__free(ms);
  if (rc != 0) {
    uvg__free(b);
    return rc;
  }
  uvg__list_push(&s->services, &b->link);
  return 0;
}

const void *uvg_call_service_impl(const uvg_call_t *call) {
  const uvg__service_t *svc = uvg__call_entry(call)->service;
  return svc != NULL ? svc->impl : NULL;
}

void *uvg_call_alloc(uvg_call_t *call, size_t size) {
  return uvg__arena_alloc(uvg__call_arena(call), size);
}

static const ProtobufCMessage *decode(uvg_call_t *call, uvg__arena_t *arena,
                                      const ProtobufCMessageDescriptor *desc,
                                      const uint8_t *msg, size_t len) {
  const ProtobufCMessage *m = uvg__pb_decode(arena, desc, msg, len);
  if (m == NULL) {
    /* grpc-go's words for the same failure */
    uvg_call_finish(
        call, UVG_STATUS_INTERNAL,
        arena->failed ? "out of memory" : "grpc: error unmarshalling request",
        NULL, 0);
  }
  return m;
}

const ProtobufCMessage *uvg_call_decode_request(
    uvg_call_t *call, const ProtobufCMessageDescriptor *desc,
    const uint8_t *msg, size_t len) {
  return decode(call, uvg__call_arena(call), desc, msg, len);
}

const ProtobufCMessage *uvg_call_decode_message(
    uvg_call_t *call, const ProtobufCMessageDescriptor *desc,
    const uint8_t *msg, size_t len) {
  uvg__arena_t *a = uvg__call_msg_arena(call);
  uvg__arena_reset(a);
  return decode(call, a, desc, msg, len);
}

static void on_packed_sent(uvg_call_t *call, int status, void *arg) {
  uvg__pb_packed_t *p = arg;
  uvg_send_cb cb = (uvg_send_cb)p->cb;
  void *user_data = p->user_data;
  uvg__free(p);
  cb(call, status, user_data);
}

static int send_bytes(void *call, const uint8_t *bytes, size_t len,
                      unsigned flags, uvg__pb_packed_t *p) {
  return uvg_call_send(call, bytes, len, flags, p ? on_packed_sent : NULL, p);
}

int uvg_call_send_message(uvg_call_t *call, const ProtobufCMessage *msg,
                          unsigned flags, uvg_send_cb cb, void *user_data) {
  return uvg__pb_send(call, msg, flags, (void (*)(void))cb, user_data,
                      send_bytes);
}

static void on_reply_sent(uvg_call_t *call, int status, void *arg) {
  (void)call; /* the bytes are in the call's arena */
  (void)status;
  (void)arg;
}

int uvg_call_reply(uvg_call_t *call, const ProtobufCMessage *msg) {
  if (call == NULL || msg == NULL) return UVG_EINVAL;
  int rc;
  if (uvg__call_entry(call)->m.type == UVG_METHOD_UNARY) {
    /* The arena outlives the send: packed there, the reply costs neither
     * an allocation nor a copy. */
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = uvg__arena_alloc(uvg__call_arena(call), len);
    if (buf == NULL) {
      rc = UVG_ENOMEM;
    } else {
      protobuf_c_message_pack(msg, buf);
      rc = uvg_call_send(call, buf, len, 0, on_reply_sent, NULL);
    }
  } else {
    rc = uvg_call_send_message(call, msg, 0, NULL, NULL);
  }
  if (rc != 0) {
    uvg_call_finish(call, UVG_STATUS_INTERNAL,
                    rc == UVG_ENOMEM ? "out of memory" : uvg_strerror(rc), NULL,
                    0);
    return rc;
  }
  return uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}

/*
 * uvgrpc/protobuf.h: typed calls on protobuf-c messages.
 *
 * The code protoc-gen-uvgrpc writes (NAME.uvgrpc.h / NAME.uvgrpc.c) is a
 * thin typed layer over the functions here: per service a struct of
 * handlers and a registration function, per method a typed client stub.
 * An application calls the generated functions; the ones below are what
 * they are made of, and what a program uses to send a message whose type
 * it knows only at run time.
 *
 * Messages are encoded and decoded with protobuf-c. A decoded message lives
 * in memory that belongs to its call (an arena: one block serves every
 * field, so decoding costs no allocation per field): never call
 * protobuf_c_message_free_unpacked() on it.
 *
 * Everything here follows uvgrpc.h's contracts: loop thread only, 0 or a
 * negative UVG_E* code, exactly one final callback per call.
 */
#ifndef UVGRPC_PROTOBUF_H
#define UVGRPC_PROTOBUF_H

#include <protobuf-c/protobuf-c.h>
#include <uvgrpc.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------
 * What the generated code describes
 * ------------------------------------------------------------------------- */

/* An extension a .proto file declares, for reflection. */
typedef struct {
  const char *extendee; /* full name of the extended message */
  int32_t number;
} uvg_pb_extension_t;

/* A .proto file: its serialized google.protobuf.FileDescriptorProto (with
 * no source code info), the files it imports, and the full names it
 * defines. Generated as `uvg_gen_file_<path>`; reflection serves it. */
typedef struct uvg_pb_file_s uvg_pb_file_t;
struct uvg_pb_file_s {
  const char *name;    /* as protoc saw it: "grpc/testing/test.proto" */
  const char *package; /* "" without a package statement */
  const uint8_t *descriptor;
  size_t descriptor_len;
  const uvg_pb_file_t *const *deps; /* in the order of the imports */
  size_t ndeps;
  /* Messages, enums (nested ones too), services, methods and extensions,
   * by full name without a leading dot: "grpc.testing.Payload". */
  const char *const *symbols;
  size_t nsymbols;
  const uvg_pb_extension_t *extensions;
  size_t nextensions;
};

/* A method of a service. */
typedef struct {
  const char *name; /* "UnaryCall" */
  const char *path; /* "/grpc.testing.TestService/UnaryCall" */
  uvg_method_type_t type;
  const ProtobufCMessageDescriptor *input;
  const ProtobufCMessageDescriptor *output;
} uvg_pb_method_t;

/* A service: generated as `<package>__<Service>__service`. */
typedef struct {
  const char *name; /* full name: "grpc.testing.TestService" */
  const uvg_pb_file_t *file;
  const uvg_pb_method_t *methods;
  /* The server side: one raw handler per method, in the order of
   * `methods`, which decode requests and call the typed handlers. */
  const uvg_method_t *handlers;
  size_t nmethods;
  size_t impl_size; /* sizeof the generated handler struct */
} uvg_pb_service_t;

/* ---------------------------------------------------------------------------
 * Server
 * ------------------------------------------------------------------------- */

/* Registers every method of `service` with the typed handlers in `impl`, a
 * `<package>__<Service>__server_t` of `service->impl_size` bytes (copied).
 * A method whose handler is NULL answers UNIMPLEMENTED. `data` is what
 * uvg_call_method_data() returns for the service's calls. The service is
 * then known to reflection (uvg_reflection_add()) with its .proto file and
 * every file that file imports. The generated
 * `<package>__<Service>__register()` calls this with the right types.
 * Returns what uvg_server_register() returns (UVG_EEXIST if a method of the
 * service is registered already), or UVG_EINVAL (NULL argument). */
UVG_EXTERN int uvg_server_add_service(uvg_server_t *server,
                                      const uvg_pb_service_t *service,
                                      const void *impl, void *data);

/* Memory that lives as long as the call: until on_done returns. For a
 * response's strings and submessages, say, without freeing them one by
 * one. Aligned for any type. Returns NULL when out of memory. */
UVG_EXTERN void *uvg_call_alloc(uvg_call_t *call, size_t size);

/* Packs `msg` and queues it, as uvg_call_send() does: with `cb` NULL the
 * bytes are copied; with `cb` they are packed into a buffer of the
 * library's, sent without a further copy and freed when `cb` runs. Either
 * way `msg` is free to change once this returns. `flags`: 0 or
 * UVG_SEND_NO_COMPRESS. Returns what uvg_call_send() returns. */
UVG_EXTERN int uvg_call_send_message(uvg_call_t *call,
                                     const ProtobufCMessage *msg,
                                     unsigned flags, uvg_send_cb cb,
                                     void *user_data);

/* Sends `msg` as the one response of a unary or client-streaming call and
 * finishes the call OK: the usual end of such a handler. The call is
 * finished whatever happens (INTERNAL if the message could not be queued),
 * so the handler calls no uvg_call_finish() after it. Returns 0 or what
 * uvg_call_send() returned. */
UVG_EXTERN int uvg_call_reply(uvg_call_t *call, const ProtobufCMessage *msg);

/* For generated code: the handler struct given to uvg_server_add_service()
 * (the library's copy), or NULL for a method registered otherwise. */
UVG_EXTERN const void *uvg_call_service_impl(const uvg_call_t *call);

/* For generated code: decodes the request of a unary or server-streaming
 * call into the call's arena; it stays valid until on_done returns. On
 * malformed bytes the call is finished with INTERNAL and NULL returned. */
UVG_EXTERN const ProtobufCMessage *uvg_call_decode_request(
    uvg_call_t *call, const ProtobufCMessageDescriptor *desc,
    const uint8_t *msg, size_t len);

/* For generated code: decodes one message of a streaming request; it is
 * valid until the next one is decoded (so during on_message), which reuses
 * its memory. On malformed bytes as above. */
UVG_EXTERN const ProtobufCMessage *uvg_call_decode_message(
    uvg_call_t *call, const ProtobufCMessageDescriptor *desc,
    const uint8_t *msg, size_t len);

/* ---------------------------------------------------------------------------
 * Client
 * ------------------------------------------------------------------------- */

/* Packs `msg` and queues it as uvg_client_call_send() does: with `cb` NULL
 * the bytes are copied (and kept for a transparent retry); with `cb` they
 * are packed into a buffer of the library's, sent without a further copy
 * and freed when `cb` runs. `msg` is free to change once this returns.
 * Returns what uvg_client_call_send() returns. */
UVG_EXTERN int uvg_client_call_send_message(uvg_client_call_t *call,
                                            const ProtobufCMessage *msg,
                                            unsigned flags,
                                            uvg_client_send_cb cb,
                                            void *user_data);

/* For generated code: how a typed call reports. The generated trampolines
 * turn these into the typed callbacks of `cbs` (a copy of the application's
 * callback struct, or of its one unary callback). Messages are valid during
 * the callback. on_status gets `reply` (NULL unless the status is OK) for
 * methods with a single response; for the others it is NULL and the
 * responses came through on_message. */
typedef struct {
  void (*on_metadata)(uvg_client_call_t *call, const uvg_metadata_t *md,
                      size_t n, const void *cbs, void *user_data);
  void (*on_message)(uvg_client_call_t *call, const ProtobufCMessage *msg,
                     const void *cbs, void *user_data);
  void (*on_status)(uvg_client_call_t *call, const uvg_status_t *status,
                    const ProtobufCMessage *reply,
                    const uvg_metadata_t *trailers, size_t n, const void *cbs,
                    void *user_data);
} uvg_pb_client_tramp_t;

/* For generated code: starts a call of `method` (see
 * uvg_client_call_start()). With `req` (unary and server-streaming methods)
 * the request is sent and the call half-closed at once. For a method with a
 * single response (unary, client-streaming) the response is read by the
 * library and handed to on_status: none, or more than one, on an OK status
 * ends the call INTERNAL, as a response that cannot be decoded does. For
 * the other methods each uvg_client_call_read() leads to one on_message.
 * `cbs_size` bytes of `cbs` are copied. `out` may be NULL.
 * Returns 0 (on_status will run once) or what uvg_client_call_start()
 * returns (no callback will run). */
UVG_EXTERN int uvg_client_call_start_pb(
    uvg_channel_t *channel, const uvg_pb_method_t *method,
    const ProtobufCMessage *req, const uvg_client_call_options_t *opts,
    const uvg_pb_client_tramp_t *tramp, const void *cbs, size_t cbs_size,
    void *user_data, uvg_client_call_t **out);

#ifdef __cplusplus
}
#endif
#endif /* UVGRPC_PROTOBUF_H */

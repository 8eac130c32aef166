/*
 * protobuf-c on uvgrpc calls (uvgrpc/protobuf.h): decoding into arenas,
 * packing for sends. Shared by server.c and client.c of this folder.
 */
#ifndef UVG_PB_PB_H
#define UVG_PB_PB_H

#include <stdalign.h>

#include "../../loop/arena.h"
#include "uvgrpc/protobuf.h"

/* Packs up to this many bytes on the stack when the library copies them
 * anyway (a send without a callback). */
#define UVG__PB_STACK_PACK 512

/* Decodes `len` bytes of `desc` into `arena`; NULL if they are not a valid
 * message or memory ran out (then arena->failed is set). */
const ProtobufCMessage *uvg__pb_decode(uvg__arena_t *arena,
                                       const ProtobufCMessageDescriptor *desc,
                                       const uint8_t *msg, size_t len);

/* A packed message sent without a copy: freed once the library has sent
 * it, after which the application's callback runs. */
typedef struct {
  void (*cb)(void); /* the application's send callback, as a generic pointer */
  void *user_data;
  size_t len;
  alignas(max_align_t) uint8_t bytes[];
} uvg__pb_packed_t;

/* Packs `msg` into a new uvg__pb_packed_t; NULL when out of memory. */
uvg__pb_packed_t *uvg__pb_pack_new(const ProtobufCMessage *msg);

/* A side's byte send: with `p`, its callback frees p and runs p->cb;
 * without, the library copies the bytes and there is no callback. */
typedef int (*uvg__pb_send_fn)(void *call, const uint8_t *bytes, size_t len,
                               unsigned flags, uvg__pb_packed_t *p);

/* Packs `msg` and sends it with `send`, both sides' *_send_message():
 * on the stack when the bytes are copied anyway (no callback), else into
 * a uvg__pb_packed_t that lives until `cb`. */
int uvg__pb_send(void *call, const ProtobufCMessage *msg, unsigned flags,
                 void (*cb)(void), void *user_data, uvg__pb_send_fn send);

#endif

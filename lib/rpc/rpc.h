/*
 * What the server and client share of gRPC over HTTP/2
 * (doc/PROTOCOL-HTTP2.md): message framing, grpc-timeout, grpc-message
 * percent-encoding, metadata keys, values and base64. Pure functions over
 * buffers: no sockets, no loop.
 */
#ifndef UVG_RPC_H
#define UVG_RPC_H

#include <nghttp2/nghttp2.h>

#include "../../loop/arena.h"
#include "../../loop/buf.h"
#include "../transport/conn.h"

/* ---- Length-Prefixed-Message: 1-byte Compressed-Flag, 4-byte length ---- */
#define UVG__FRAME_HEADER_LEN 5

typedef struct {
  uint8_t hdr[UVG__FRAME_HEADER_LEN];
  size_t hdr_have;
  uint8_t *msg;      /* grows as the message's bytes arrive */
  uint32_t msg_len;  /* declared by the prefix */
  uint32_t msg_have; /* received */
  uint32_t msg_cap;  /* allocated */
  uint32_t max_len;
  uint8_t *given; /* the assembled message the callback may take */
} uvg__deframer_t;

/* Called for each complete message: `len` bytes at `msg` (NULL when len is
 * 0), valid during the call only. A message that arrived whole in one fed
 * chunk is that chunk's bytes, lent and not copied; a callee that keeps a
 * message copies it where it lives (a call's arena, a received-message
 * record). Return 0 to go on, or a negative code that uvg__deframer_feed
 * returns at once. */
typedef int (*uvg__deframe_cb)(void *arg, int compressed, const uint8_t *msg,
                               uint32_t len);

void uvg__deframer_init(uvg__deframer_t *d, uint32_t max_len);
/* Feeds bytes split anywhere (the prefix too). Returns 0; UVG__E_TOO_LARGE
 * for a message longer than max_len (RESOURCE_EXHAUSTED); UVG_ENOMEM; or
 * what the callback returned. */
int uvg__deframer_feed(uvg__deframer_t *d, const uint8_t *p, size_t n,
                       uvg__deframe_cb cb, void *arg);
/* During the callback: the buffer of the message being delivered if the
 * deframer assembled it (it came in pieces), now the caller's to
 * uvg__free(); else NULL, and the message is only lent. A callee that
 * keeps the message takes it instead of copying it. */
uint8_t *uvg__deframer_take(uvg__deframer_t *d);
/* 1 when a message has begun but not ended (the stream ended mid-message). */
int uvg__deframer_partial(const uvg__deframer_t *d);
void uvg__deframer_free(uvg__deframer_t *d);
#define UVG__E_TOO_LARGE (-30100)

/* An outgoing message's bytes, as both sides send them: compressed with
 * `enc` into `storage`, copied into it (`copy`), or referenced where they
 * are (the caller keeps them until the message is done).
 * uvg__msg_room() is how many bytes `storage` needs (it lives in the
 * message's holder, after the uvg__msg_t); uvg__msg_fill() fills m->data,
 * len, head and head_len. Returns 0 or UVG_ENOMEM. */
size_t uvg__msg_room(size_t len, int enc, int copy);
int uvg__msg_fill(uvg__msg_t *m, uint8_t *storage, const void *data, size_t len,
                  int enc, int copy);

/* Writes the 5-byte prefix for a message of `len` bytes. */
void uvg__frame_header(uint8_t out[UVG__FRAME_HEADER_LEN], int compressed,
                       uint32_t len);

/* ---- grpc-timeout: TimeoutValue (1-8 ASCII digits) TimeoutUnit ---- */
/* Parses into milliseconds, rounding up (a 1ns timeout must still time
 * out, not mean "no deadline"). Returns 0 or UVG_EINVAL. */
int uvg__timeout_parse(const char *s, size_t n, uint64_t *ms);
/* Encodes `ms` with the finest unit that fits 8 digits; out needs 10 bytes.
 * Returns the length written (without NUL). */
size_t uvg__timeout_encode(uint64_t ms, char out[10]);

/* ---- grpc-message: percent-encode bytes outside 0x20-0x7E and '%' ---- */
/* Returns an allocated NUL-terminated string, NULL on allocation failure. */
char *uvg__percent_encode(const char *s, size_t n);
/* Decodes leniently: a malformed %XX is kept as is (the spec says decoding
 * must not fail). Returns an allocated string or NULL. */
char *uvg__percent_decode(const char *s, size_t n);

/* ---- base64 for "-bin" metadata ---- */
/* Standard alphabet, without padding (the gRPC spec's "should emit
 * un-padded values"). Returns an allocated string of *out_len characters
 * (plus NUL), or NULL. */
char *uvg__base64_encode(const uint8_t *p, size_t n, size_t *out_len);
/* The length uvg__base64_encode() gives `n` bytes. */
size_t uvg__base64_len(size_t n);
/* Accepts padded and unpadded input. Returns an allocated buffer of *out_len
 * bytes or NULL (malformed input or no memory: *out_len set to SIZE_MAX for
 * malformed). */
uint8_t *uvg__base64_decode(const char *s, size_t n, size_t *out_len);

/* ---- metadata ---- */
/* 1 if `key` (n bytes) is a legal metadata key: non-empty, [0-9a-z_.-]. */
int uvg__md_key_valid(const char *key, size_t n);
/* 1 if the value is legal for an ASCII (non "-bin") key: 0x20-0x7E. */
int uvg__md_value_valid(const uint8_t *v, size_t n);
/* 1 if the key ends in "-bin". */
int uvg__md_key_is_bin(const char *key, size_t n);
/* 1 if the application may not set this key: it is reserved for the
 * protocol (pseudo-headers, content-type, te, grpc-* other than
 * grpc-status-details-bin, ...). */
int uvg__md_key_reserved(const char *key, size_t n);

/* A metadata list with its own storage: allocated, or in an arena that
 * outlives the list (a server call's received metadata), where removing
 * and freeing release nothing. */
typedef struct {
  uvg_metadata_t *items;
  size_t n, cap;
  uvg__arena_t *arena; /* or NULL */
} uvg__md_list_t;

void uvg__md_list_init(uvg__md_list_t *l);
void uvg__md_list_init_arena(uvg__md_list_t *l, uvg__arena_t *arena);
/* Appends a copy of key/value. Returns 0 or UVG_ENOMEM. */
int uvg__md_list_add(uvg__md_list_t *l, const char *key, size_t key_len,
                     const uint8_t *value, size_t value_len);
/* Appends a received header: a "-bin" value is base64-decoded, and a
 * comma-joined one split into entries. Returns 0, UVG_EINVAL (bad base64)
 * or UVG_ENOMEM. */
int uvg__md_list_add_wire(uvg__md_list_t *l, const char *key, size_t key_len,
                          const uint8_t *value, size_t value_len);
/* Checks then copies application metadata. Returns 0, UVG_EINVAL (bad or
 * reserved key, bad ASCII value) or UVG_ENOMEM. */
int uvg__md_list_add_app(uvg__md_list_t *l, const uvg_metadata_t *md, size_t n);
const uvg_metadata_t *uvg__md_list_get(const uvg__md_list_t *l, const char *key);
/* Makes room for one more entry. Returns 0 or UVG_ENOMEM. */
int uvg__md_list_reserve(uvg__md_list_t *l);
/* Removes every entry named `key`, keeping the others' order. */
void uvg__md_list_remove(uvg__md_list_t *l, const char *key);
void uvg__md_list_free(uvg__md_list_t *l);

/* Header fields for nghttp2: `fixed` fields (pointing at the caller's
 * storage) followed by the metadata of `md` ("-bin" values base64-encoded
 * into the block). The block points into `md`: keep both alive until the
 * fields are submitted (nghttp2 copies them). A block that fits `inline_nv`
 * (the usual one: no "-bin" values) allocates nothing; it must not be
 * copied, since nv may point into it. Returns 0 or UVG_ENOMEM. */
typedef struct {
  nghttp2_nv *nv;
  size_t n;
  nghttp2_nv inline_nv[16];
} uvg__nv_block_t;
int uvg__nv_build(uvg__nv_block_t *b, const nghttp2_nv *fixed, size_t nfixed,
                  const uvg__md_list_t *md);
void uvg__nv_free(uvg__nv_block_t *b);

/* ---- compression: encodings are uvg_compression_t values ---- */
/* Returns the encoding named by s/n, or -1 for one this library lacks. */
int uvg__encoding_parse(const char *s, size_t n);
const char *uvg__encoding_name(int enc);
/* The encodings a grpc-accept-encoding list names, as a bit mask (bit
 * 1 << enc); identity is always included. */
unsigned uvg__accept_encoding_parse(const char *s, size_t n);
/* The value this library advertises in grpc-accept-encoding. */
#define UVG__ACCEPT_ENCODING "identity,deflate,gzip"
/* The most bytes compressing `len` bytes can take. */
size_t uvg__compress_bound(size_t len);
/* Compresses into `out` (at least uvg__compress_bound(len) bytes); *out_len
 * gets the size. Returns 0 or UVG_ENOMEM. */
int uvg__compress_into(int enc, const uint8_t *in, size_t len, uint8_t *out,
                       size_t *out_len);
/* Compresses into a new buffer. Returns 0 or UVG_ENOMEM. */
int uvg__compress(int enc, const uint8_t *in, size_t len, uint8_t **out,
                  size_t *out_len);
/* Decompresses into a new buffer of at most `max` bytes. Returns 0;
 * UVG__E_TOO_LARGE past max (RESOURCE_EXHAUSTED); UVG_EPROTO for corrupt or
 * truncated input; UVG_ENOMEM. */
int uvg__decompress(int enc, const uint8_t *in, size_t len, size_t max,
                    uint8_t **out, size_t *out_len);

/* ---- status ---- */
/* Parses an ASCII decimal grpc-status; returns -1 if malformed. */
int uvg__status_parse(const char *s, size_t n);
/* PROTOCOL-HTTP2.md, "Errors": the status a stream reset with RST_STREAM
 * `h2_error` ends with (CANCEL: CANCELLED, REFUSED_STREAM: UNAVAILABLE,
 * ENHANCE_YOUR_CALM: RESOURCE_EXHAUSTED, INADEQUATE_SECURITY:
 * PERMISSION_DENIED, any other: INTERNAL). */
uvg_status_code_t uvg__status_of_reset(uint32_t h2_error);

#endif

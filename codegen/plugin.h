/*
 * protoc-gen-uvgrpc internals: the plugin is a short-lived process that
 * reads one CodeGeneratorRequest and writes one CodeGeneratorResponse.
 * Every string it makes comes from one pool freed at exit, and running out
 * of memory ends the process with a message: there is nothing to recover.
 */
#ifndef UVG_CODEGEN_PLUGIN_H
#define UVG_CODEGEN_PLUGIN_H

#include <stdarg.h>
#include <stddef.h>

#include "google/protobuf/compiler/plugin.pb-c.h"

typedef Google__Protobuf__FileDescriptorProto file_proto_t;
typedef Google__Protobuf__DescriptorProto message_proto_t;
typedef Google__Protobuf__EnumDescriptorProto enum_proto_t;
typedef Google__Protobuf__ServiceDescriptorProto service_proto_t;
typedef Google__Protobuf__MethodDescriptorProto method_proto_t;
typedef Google__Protobuf__FieldDescriptorProto field_proto_t;

/* ---- memory (util.c) ---- */

void *xmalloc(size_t n);
void *xrealloc(void *p, size_t n);
/* A string from the pool: printf-formatted, freed by pool_free(). */
char *pstrf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *pstrndup(const char *s, size_t n);
void pool_free(void);

/* A growable string. */
typedef struct {
  char *s;
  size_t len, cap;
} sb_t;
void sb_add(sb_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void sb_vadd(sb_t *b, const char *fmt, va_list ap);
void sb_addn(sb_t *b, const char *s, size_t n);
void sb_free(sb_t *b);

/* ---- names (names.c) ---- */

/* A message type known to the request, by its full name. */
typedef struct {
  const char *full_name; /* ".pkg.Outer.Inner" as fields refer to it */
  const char *c_type;    /* protoc-c's struct: "Pkg__Outer__Inner" */
  const char *c_lower;   /* protoc-c's prefix: "pkg__outer__inner" */
  const file_proto_t *file;
} msg_info_t;

/* Every message of every file in the request. */
typedef struct {
  msg_info_t *msgs;
  size_t n, cap;
} type_index_t;

void index_file(type_index_t *ix, const file_proto_t *f);
/* The message named `full_name` (".pkg.Msg"), or NULL. */
const msg_info_t *index_find(const type_index_t *ix, const char *full_name);

/* The package protoc-c uses for C names: the file option
 * (pb_c_file).c_package if set, else the package, else "". */
const char *c_package(const file_proto_t *f);
/* The prefix of this plugin's names for a file: the C package with "." as
 * "__", followed by "__"; "" without a package. */
const char *name_prefix(const file_proto_t *f);
/* A path as a C identifier fragment: [A-Za-z0-9] kept, every other byte
 * as "_" and two hex digits (so "_" itself is "_5f": no two paths meet). */
const char *path_ident(const char *path);
/* "NAME" for a file "NAME.proto" (the base protoc-c names outputs after). */
const char *strip_proto(const char *path);
/* `name`, or `name` + "_" when it is a C or C++ keyword or a macro a C
 * program commonly has in scope (errno, unix, assert...). */
const char *member_name(const char *name);

/* ---- output (generate.c) ---- */

typedef struct {
  const char *name; /* relative to the output directory */
  sb_t content;
} out_file_t;

typedef struct {
  const Google__Protobuf__Compiler__CodeGeneratorRequest *req;
  type_index_t types;
  /* Set when generation cannot go on: the message protoc shows. */
  char *error;
  out_file_t *files;
  size_t nfiles;
} gen_t;

/* Writes NAME.uvgrpc.h and NAME.uvgrpc.c for `f` into g->files. On a
 * problem with the .proto (names that would collide in C) sets g->error
 * and returns -1; returns 0 otherwise. */
int generate_file(gen_t *g, const file_proto_t *f);
/* The file of the request named `name`, or NULL. */
const file_proto_t *find_file(const gen_t *g, const char *name);

/* ---- the request (request.c) ---- */

/* protoc's parameter string ("pb_c,protoc_gen_c=PATH"). */
typedef struct {
  int pb_c;
  const char *protoc_gen_c;
} options_t;

/* Fills `o` from protoc's parameter string; returns an error or NULL. */
const char *parse_options(const char *param, options_t *o);
/* The request must hold every file it asks for and every file those
 * import, each file, message, service and method with a name; one that
 * does not is not from protoc.
 * Returns why (a pool string) or NULL. */
const char *check_request(const gen_t *g);
/* Indexes the request's types, reads its options into `opts` and
 * generates every file it asks for into g->files, stopping at the first
 * g->error (protoc-c's files are main.c's business). */
void generate_files(gen_t *g, options_t *opts);
/* Frees what generate_files() made (not the pool: pool_free()). */
void gen_free(gen_t *g);

#endif

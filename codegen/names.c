/*
 * C names. The message types are protoc-c's, so their names follow
 * protoc-c's rules exactly (protobuf-c 1.4, c_helpers.cc): a type is the
 * full name's pieces, each in CamelCase, joined by "__"
 * (grpc.testing.SimpleRequest -> Grpc__Testing__SimpleRequest); functions
 * and descriptors take the pieces in lower_case (grpc__testing__simple_
 * request__descriptor); the file option (pb_c_file).c_package replaces the
 * package in both.
 *
 * This plugin's own names keep the .proto's spelling, case included, so
 * that SayHello and Say_hello stay apart and a name can be found in the
 * .proto by searching: <package>__<Service>__<word> for a service and
 * <package>__<Service>__<Method>__<word> for a method, where every word is
 * fixed and lower case and a proto identifier never starts with "_". They
 * never meet protoc-c's, which are all lower case after a lower-case
 * package or start with a capital.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

/* protobuf-c.proto: extend google.protobuf.FileOptions with
 * ProtobufCFileOptions pb_c_file = 1019, whose field 6 is c_package. */
#define PB_C_FILE_OPTIONS 1019
#define PB_C_PACKAGE_FIELD 6

static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  *v = 0;
  for (int shift = 0; *p < end && shift < 64; shift += 7) {
    uint8_t b = *(*p)++;
    *v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) return 0;
  }
  return -1;
}

/* The c_package field of one serialized ProtobufCFileOptions, or NULL. */
static const char *c_package_in(const uint8_t *p, size_t len) {
  const uint8_t *end = p + len;
  const char *found = NULL;
  while (p < end) {
    uint64_t key, n;
    if (read_varint(&p, end, &key) != 0) return found;
    switch (key & 7) {
      case 0:
        if (read_varint(&p, end, &n) != 0) return found;
        break;
      case 1:
        p += 8;
        break;
      case 2:
        if (read_varint(&p, end, &n) != 0 || n > (uint64_t)(end - p))
          return found;
        if ((key >> 3) == PB_C_PACKAGE_FIELD)
          found = pstrndup((const char *)p, n);
        p += n;
        break;
      case 5:
        p += 4;
        break;
      default:
        return found;
    }
  }
  return found;
}

const char *c_package(const file_proto_t *f) {
  const char *pkg = f->package ? f->package : "";
  if (f->options == NULL) return pkg;
  const ProtobufCMessage *base = &f->options->base;
  for (unsigned i = 0; i < base->n_unknown_fields; i++) {
    const ProtobufCMessageUnknownField *u = &base->unknown_fields[i];
    if (u->tag != PB_C_FILE_OPTIONS ||
        u->wire_type != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED)
      continue;
    /* protobuf-c keeps such a field's length prefix with its bytes */
    const uint8_t *p = u->data, *end = u->data + u->len;
    uint64_t n;
    if (read_varint(&p, end, &n) != 0 || n > (uint64_t)(end - p)) continue;
    const char *c = c_package_in(p, (size_t)n);
    if (c != NULL) pkg = c;
  }
  return pkg;
}

/* protoc-c's ToCamel: the first letter and each letter after "_" in upper
 * case, the underscores dropped. */
static void add_camel(sb_t *b, const char *piece, size_t n) {
  int upper_next = 1;
  for (size_t i = 0; i < n; i++) {
    char c = piece[i];
    if (c == '_') {
      upper_next = 1;
    } else if (upper_next) {
      char u = (char)toupper((unsigned char)c);
      sb_addn(b, &u, 1);
      upper_next = 0;
    } else {
      sb_addn(b, &c, 1);
    }
  }
}

/* protoc-c's CamelToLower: a capital after a non-capital gets "_" before
 * it; capitals become lower case. */
static void add_lower(sb_t *b, const char *piece, size_t n) {
  int was_upper = 1;
  for (size_t i = 0; i < n; i++) {
    char c = piece[i];
    int is_upper = isupper((unsigned char)c) != 0;
    if (is_upper && !was_upper) sb_addn(b, "_", 1);
    char l = (char)tolower((unsigned char)c);
    sb_addn(b, &l, 1);
    was_upper = is_upper;
  }
}

/* Joins the dot-separated pieces of `name` with "__", each through `add`. */
static void add_pieces(sb_t *b, const char *name,
                       void (*add)(sb_t *, const char *, size_t)) {
  const char *p = name;
  while (*p != '\0') {
    const char *dot = strchr(p, '.');
    size_t n = dot ? (size_t)(dot - p) : strlen(p);
    if (n > 0) {
      if (b->len > 0) sb_addn(b, "__", 2);
      add(b, p, n);
    }
    p += n + (dot != NULL);
  }
}

static void index_message(type_index_t *ix, const file_proto_t *f,
                          const char *scope, const message_proto_t *m) {
  /* scope: the message's parents, "Outer.Inner", or "" at the top */
  const char *pkg = f->package ? f->package : "";
  const char *local = scope[0] ? pstrf("%s.%s", scope, m->name) : m->name;
  const char *cpkg = c_package(f);
  const char *c_full = cpkg[0] ? pstrf("%s.%s", cpkg, local) : local;
  if (ix->n == ix->cap) {
    ix->cap = ix->cap ? ix->cap * 2 : 64;
    ix->msgs = xrealloc(ix->msgs, ix->cap * sizeof(*ix->msgs));
  }
  msg_info_t *mi = &ix->msgs[ix->n++];
  mi->full_name = pkg[0] ? pstrf(".%s.%s", pkg, local) : pstrf(".%s", local);
  sb_t b = {0};
  add_pieces(&b, c_full, add_camel);
  mi->c_type = pstrf("%s", b.s ? b.s : "");
  b.len = 0;
  add_pieces(&b, c_full, add_lower);
  mi->c_lower = pstrf("%s", b.s ? b.s : "");
  sb_free(&b);
  mi->file = f;
  for (size_t i = 0; i < m->n_nested_type; i++)
    index_message(ix, f, local, m->nested_type[i]);
}

void index_file(type_index_t *ix, const file_proto_t *f) {
  for (size_t i = 0; i < f->n_message_type; i++)
    index_message(ix, f, "", f->message_type[i]);
}

const msg_info_t *index_find(const type_index_t *ix, const char *full_name) {
  for (size_t i = 0; i < ix->n; i++)
    if (strcmp(ix->msgs[i].full_name, full_name) == 0) return &ix->msgs[i];
  return NULL;
}

const char *name_prefix(const file_proto_t *f) {
  const char *pkg = c_package(f);
  if (pkg[0] == '\0') return "";
  sb_t b = {0};
  add_pieces(&b, pkg, sb_addn);
  const char *r = pstrf("%s__", b.s);
  sb_free(&b);
  return r;
}

const char *path_ident(const char *path) {
  sb_t b = {0};
  for (const char *p = path; *p; p++) {
    if (isalnum((unsigned char)*p))
      sb_addn(&b, p, 1);
    else
      sb_add(&b, "_%02x", (unsigned char)*p);
  }
  const char *r = pstrf("%s", b.s ? b.s : "");
  sb_free(&b);
  return r;
}

const char *strip_proto(const char *path) {
  size_t n = strlen(path);
  if (n > 6 && strcmp(path + n - 6, ".proto") == 0) n -= 6;
  return pstrndup(path, n);
}

/* A struct member must not be a keyword of C or C++ (the generated headers
 * compile as both) nor a name a common header defines as a macro. */
static const char *const reserved[] = {
    /* C11 */
    "auto",
    "break",
    "case",
    "char",
    "const",
    "continue",
    "default",
    "do",
    "double",
    "else",
    "enum",
    "extern",
    "float",
    "for",
    "goto",
    "if",
    "inline",
    "int",
    "long",
    "register",
    "restrict",
    "return",
    "short",
    "signed",
    "sizeof",
    "static",
    "struct",
    "switch",
    "typedef",
    "union",
    "unsigned",
    "void",
    "volatile",
    "while",
    /* C++ */
    "alignas",
    "alignof",
    "and",
    "and_eq",
    "asm",
    "bitand",
    "bitor",
    "bool",
    "catch",
    "char8_t",
    "char16_t",
    "char32_t",
    "class",
    "compl",
    "concept",
    "consteval",
    "constexpr",
    "constinit",
    "const_cast",
    "co_await",
    "co_return",
    "co_yield",
    "decltype",
    "delete",
    "dynamic_cast",
    "explicit",
    "export",
    "false",
    "friend",
    "mutable",
    "namespace",
    "new",
    "noexcept",
    "not",
    "not_eq",
    "nullptr",
    "operator",
    "or",
    "or_eq",
    "private",
    "protected",
    "public",
    "reinterpret_cast",
    "requires",
    "static_assert",
    "static_cast",
    "template",
    "this",
    "thread_local",
    "throw",
    "true",
    "try",
    "typeid",
    "typename",
    "using",
    "virtual",
    "wchar_t",
    "xor",
    "xor_eq",
    /* macros of the C library and of GNU C's predefined set */
    "errno",
    "assert",
    "NULL",
    "EOF",
    "stdin",
    "stdout",
    "stderr",
    "offsetof",
    "complex",
    "imaginary",
    "I",
    "noreturn",
    "unix",
    "linux",
    "major",
    "minor",
    "makedev",
    "setjmp",
    "va_arg",
    "va_start",
    "va_end",
    "va_copy",
};

const char *member_name(const char *name) {
  for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
    if (strcmp(name, reserved[i]) == 0) return pstrf("%s_", name);
  return name;
}

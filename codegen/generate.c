/*
 * Writes NAME.uvgrpc.h and NAME.uvgrpc.c for one .proto file.
 *
 * The header holds what an application reads: per service the handler
 * struct, its registration and the typed reply/send functions of the
 * server side, and per method the typed client stubs; trivial wrappers are
 * static inline there. The source holds the file's serialized descriptor
 * and the trampolines between the library's byte-level callbacks and the
 * typed ones: each decodes with the method's own descriptor and calls a
 * function of the right type, so no function is ever called through a
 * pointer of another type.
 *
 * Output is deterministic (no dates, no versions): golden files compare it
 * byte for byte.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

/* FileDescriptorProto field numbers, for SourceCodeInfo paths. */
#define FILE_SERVICE 6
#define SERVICE_METHOD 2

typedef struct {
  const char *name;   /* "SayHello" */
  const char *member; /* its member in the handler struct */
  const char *id;     /* helloworld__Greeter__SayHello */
  const char *path;   /* "/helloworld.Greeter/SayHello" */
  const char *kind;   /* UVG_METHOD_... */
  const char *kind_text;
  int req_stream, resp_stream;
  size_t index;
  const msg_info_t *in, *out;
  const char *comment; /* or NULL */
} method_t;

typedef struct {
  const char *full; /* "helloworld.Greeter" */
  const char *id;   /* helloworld__Greeter */
  const char *comment;
  method_t *methods;
  size_t n;
} service_t;

/* ---- comments ---- */

/* The comments protoc kept for the element at `path`, or NULL. */
static const char *comment_at(const file_proto_t *f, const int32_t *path,
                              size_t n) {
  if (f->source_code_info == NULL) return NULL;
  for (size_t i = 0; i < f->source_code_info->n_location; i++) {
    const Google__Protobuf__SourceCodeInfo__Location *l =
        f->source_code_info->location[i];
    if (l->n_path != n || memcmp(l->path, path, n * sizeof(*path)) != 0)
      continue;
    const char *lead = l->leading_comments, *trail = l->trailing_comments;
    int has_lead = lead != NULL && lead[0] != '\0';
    int has_trail = trail != NULL && trail[0] != '\0';
    if (has_lead && has_trail) return pstrf("%s\n%s", lead, trail);
    if (has_lead) return lead;
    if (has_trail) return trail;
    return NULL;
  }
  return NULL;
}

/* `text` without the line breaks and spaces at its end. */
static const char *trim_end(const char *text) {
  size_t n = strlen(text);
  while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' ')) n--;
  return pstrndup(text, n);
}

/* Writes `text` as a C comment indented by `indent`, one " *" line per
 * line, blank lines at either end dropped. "*" "/" and "/" "*" inside are
 * broken apart so the comment cannot end early or nest. */
static void emit_comment(sb_t *o, const char *indent, const char *text) {
  if (text == NULL) return;
  const char *start = text;
  while (*start == '\n') start++;
  size_t end = strlen(start);
  while (end > 0 && (start[end - 1] == '\n' || start[end - 1] == ' ')) end--;
  if (end == 0) return;
  sb_add(o, "%s/*\n", indent);
  const char *p = start, *stop = start + end;
  while (p < stop) {
    const char *nl = memchr(p, '\n', (size_t)(stop - p));
    size_t n = nl ? (size_t)(nl - p) : (size_t)(stop - p);
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\r'))
      n--;
    sb_add(o, "%s *", indent);
    if (n > 0 && p[0] != ' ') sb_addn(o, " ", 1);
    for (size_t i = 0; i < n; i++) {
      sb_addn(o, &p[i], 1);
      if ((p[i] == '*' && i + 1 < n && p[i + 1] == '/') ||
          (p[i] == '/' && i + 1 < n && p[i + 1] == '*'))
        sb_addn(o, " ", 1);
    }
    sb_addn(o, "\n", 1);
    p += n;
    while (p < stop && *p != '\n') p++; /* the trimmed tail */
    if (p < stop) p++;
  }
  sb_add(o, "%s */\n", indent);
}

/* ---- names that must not meet ---- */

typedef struct {
  const char *name, *origin;
} ident_t;

typedef struct {
  ident_t *v;
  size_t n, cap;
} idents_t;

static void ident_add(idents_t *s, const char *name, const char *origin) {
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 64;
    s->v = xrealloc(s->v, s->cap * sizeof(*s->v));
  }
  s->v[s->n].name = name;
  s->v[s->n].origin = origin;
  s->n++;
}

static int ident_cmp(const void *a, const void *b) {
  return strcmp(((const ident_t *)a)->name, ((const ident_t *)b)->name);
}

/* Sets g->error and returns -1 when two origins make one C name. */
static int idents_check(gen_t *g, const file_proto_t *f, idents_t *s) {
  if (s->n == 0) return 0;
  qsort(s->v, s->n, sizeof(*s->v), ident_cmp);
  for (size_t i = 1; i < s->n; i++) {
    if (strcmp(s->v[i - 1].name, s->v[i].name) == 0) {
      g->error =
          pstrf("%s: %s and %s both become the C name %s; rename one", f->name,
                s->v[i - 1].origin, s->v[i].origin, s->v[i].name);
      return -1;
    }
  }
  return 0;
}

static const char *const service_words[] = {"service", "server_t", "register",
                                            "methods", "impl",     "handlers"};
static const char *const method_words[] = {"PATH",
                                           "reply",
                                           "send",
                                           "on_call",
                                           "on_message",
                                           "on_half_close",
                                           "on_cancel",
                                           "on_done",
                                           "client_call_s",
                                           "client_call_t",
                                           "client_cbs_t",
                                           "client_start",
                                           "client_cb",
                                           "client_unary",
                                           "client_send",
                                           "client_half_close",
                                           "client_read",
                                           "client_cancel",
                                           "client_raw",
                                           "client_on_metadata",
                                           "client_on_message",
                                           "client_on_status",
                                           "client_tramp",
                                           "client_unary_on_status",
                                           "client_unary_tramp"};

/* ---- the model of one file's services ---- */

static int build_services(gen_t *g, const file_proto_t *f, service_t **out,
                          size_t *nout) {
  const char *prefix = name_prefix(f);
  const char *pkg = f->package ? f->package : "";
  service_t *svcs = xmalloc(f->n_service * sizeof(*svcs));
  idents_t ids = {0};
  int rc = 0;
  size_t nbuilt = 0; /* services whose methods array is allocated */
  for (size_t i = 0; i < f->n_service && rc == 0; i++) {
    const service_proto_t *sp = f->service[i];
    service_t *s = &svcs[i];
    s->full = pkg[0] ? pstrf("%s.%s", pkg, sp->name) : sp->name;
    s->id = pstrf("%s%s", prefix, sp->name);
    int32_t spath[] = {FILE_SERVICE, (int32_t)i};
    s->comment = comment_at(f, spath, 2);
    s->n = sp->n_method;
    s->methods = xmalloc(sp->n_method * sizeof(*s->methods));
    nbuilt = i + 1;
    for (size_t w = 0; w < sizeof(service_words) / sizeof(*service_words); w++)
      ident_add(&ids, pstrf("%s__%s", s->id, service_words[w]),
                pstrf("service %s", s->full));
    idents_t members = {0};
    for (size_t j = 0; j < sp->n_method; j++) {
      const method_proto_t *mp = sp->method[j];
      method_t *m = &s->methods[j];
      m->name = mp->name;
      m->member = member_name(mp->name);
      m->id = pstrf("%s__%s", s->id, mp->name);
      m->path = pstrf("/%s/%s", s->full, mp->name);
      m->req_stream = mp->has_client_streaming && mp->client_streaming;
      m->resp_stream = mp->has_server_streaming && mp->server_streaming;
      m->index = j;
      static const char *const kinds[2][2] = {
          {"UVG_METHOD_UNARY", "UVG_METHOD_SERVER_STREAMING"},
          {"UVG_METHOD_CLIENT_STREAMING", "UVG_METHOD_BIDI_STREAMING"}};
      static const char *const texts[2][2] = {
          {"unary", "server streaming"},
          {"client streaming", "bidi streaming"}};
      m->kind = kinds[m->req_stream][m->resp_stream];
      m->kind_text = texts[m->req_stream][m->resp_stream];
      m->in = index_find(&g->types, mp->input_type ? mp->input_type : "");
      m->out = index_find(&g->types, mp->output_type ? mp->output_type : "");
      if (m->in == NULL || m->out == NULL) {
        g->error =
            pstrf("%s: method %s.%s: type %s is in no file of the request",
                  f->name, s->full, mp->name,
                  m->in == NULL ? mp->input_type : mp->output_type);
        rc = -1;
        break;
      }
      int32_t mpath[] = {FILE_SERVICE, (int32_t)i, SERVICE_METHOD, (int32_t)j};
      m->comment = comment_at(f, mpath, 4);
      const char *origin = pstrf("method %s.%s", s->full, mp->name);
      for (size_t w = 0; w < sizeof(method_words) / sizeof(*method_words); w++)
        ident_add(&ids, pstrf("%s__%s", m->id, method_words[w]), origin);
      ident_add(&members, m->member, origin);
    }
    if (rc == 0) rc = idents_check(g, f, &members);
    free(members.v);
  }
  if (rc == 0) rc = idents_check(g, f, &ids);
  free(ids.v);
  *out = svcs;
  *nout = f->n_service;
  if (rc != 0) {
    /* the services after the one that failed were never built */
    for (size_t i = 0; i < nbuilt; i++) free(svcs[i].methods);
    free(svcs);
    *out = NULL;
  }
  return rc;
}

/* ---- the header ---- */

/* Writes a prototype "RET NAME(\n    P1,\n    P2)" ending in `end`. */
static void emit_proto(sb_t *o, const char *ret, const char *name,
                       const char *const *params, size_t n, const char *end) {
  size_t rl = strlen(ret);
  sb_add(o, "%s%s%s(", ret, rl > 0 && ret[rl - 1] == '*' ? "" : " ", name);
  for (size_t i = 0; i < n; i++)
    sb_add(o, "\n    %s%s", params[i], i + 1 < n ? "," : "");
  sb_add(o, ")%s", end);
}

static void emit_server_h(sb_t *o, const service_t *s) {
  sb_add(
      o,
      "/* The handlers of %s, for\n"
      " * %s__register(): a method whose on_call is NULL\n"
      " * answers UNIMPLEMENTED; on_cancel and on_done are optional and mean\n"
      " * what they mean in uvg_method_t. */\n"
      "typedef struct {\n",
      s->full, s->id);
  for (size_t j = 0; j < s->n; j++) {
    const method_t *m = &s->methods[j];
    if (j > 0) sb_add(o, "\n");
    const char *note =
        pstrf("%s, %s: %s.\n%s with %s__%s()%s.", m->name, m->kind_text,
              m->req_stream ? "each `msg` lives during its on_message"
                            : "`req` lives until on_done",
              m->resp_stream ? "Send" : "Answer", m->id,
              m->resp_stream ? "send" : "reply",
              m->resp_stream ? ",\nend with uvg_call_finish()"
                             : "\nor uvg_call_finish()");
    emit_comment(
        o, "  ",
        m->comment ? pstrf("%s\n\n%s", trim_end(m->comment), note) : note);
    if (!m->req_stream) {
      sb_add(
          o,
          "  struct {\n    void (*on_call)(uvg_call_t *call, const %s *req);\n",
          m->in->c_type);
    } else {
      sb_add(o,
             "  struct {\n"
             "    void (*on_call)(uvg_call_t *call);\n"
             "    void (*on_message)(uvg_call_t *call, const %s *msg);\n"
             "    void (*on_half_close)(uvg_call_t *call);\n",
             m->in->c_type);
    }
    sb_add(
        o,
        "    void (*on_cancel)(uvg_call_t *call, const uvg_status_t *status);\n"
        "    void (*on_done)(uvg_call_t *call, const uvg_status_t *status);\n"
        "  } %s;\n",
        m->member);
  }
  if (s->n == 0) sb_add(o, "  char no_methods; /* C has no empty struct */\n");
  sb_add(o, "} %s__server_t;\n\n", s->id);

  sb_add(o,
         "/* Registers the handlers of %s (copied) on `server`;\n"
         " * `data` is what uvg_call_method_data() returns in them (see\n"
         " * uvg_server_add_service()). */\n",
         s->full);
  const char *reg[] = {"uvg_server_t *server",
                       pstrf("const %s__server_t *impl", s->id), "void *data"};
  emit_proto(o, "static inline int", pstrf("%s__register", s->id), reg, 3,
             " {\n");
  sb_add(
      o,
      "  return uvg_server_add_service(server, &%s__service, impl, data);\n}\n",
      s->id);

  for (size_t j = 0; j < s->n; j++) {
    const method_t *m = &s->methods[j];
    sb_add(o, "\n");
    if (!m->resp_stream) {
      sb_add(o,
             "/* Sends the response of a %s call and finishes it OK\n"
             " * (see uvg_call_reply()). */\n",
             m->name);
      const char *p[] = {"uvg_call_t *call",
                         pstrf("const %s *reply", m->out->c_type)};
      emit_proto(o, "static inline int", pstrf("%s__reply", m->id), p, 2,
                 " {\n");
      sb_add(o,
             "  return uvg_call_reply(call, (const ProtobufCMessage "
             "*)reply);\n}\n");
    } else {
      sb_add(o,
             "/* Queues one response of a %s call (see\n"
             " * uvg_call_send_message()). */\n",
             m->name);
      const char *p[] = {"uvg_call_t *call",
                         pstrf("const %s *msg", m->out->c_type),
                         "unsigned flags", "uvg_send_cb cb", "void *user_data"};
      emit_proto(o, "static inline int", pstrf("%s__send", m->id), p, 5,
                 " {\n");
      sb_add(o,
             "  return uvg_call_send_message(call, (const ProtobufCMessage "
             "*)msg, flags,\n"
             "                               cb, user_data);\n}\n");
    }
  }
}

static void emit_client_h(sb_t *o, const method_t *m) {
  const char *call_t = pstrf("%s__client_call_t", m->id);
  sb_add(o,
         "\n/* ---- %s: client ---- */\n\n"
         "/* A %s call: a uvg_client_call_t of this method's types. */\n"
         "typedef struct %s__client_call_s\n    %s;\n\n",
         m->path, m->name, m->id, call_t);
  sb_add(o,
         "typedef struct {\n"
         "  /* Optional: the response headers' metadata. */\n"
         "  void (*on_metadata)(\n"
         "      %s *call,\n"
         "      const uvg_metadata_t *md, size_t n, void *user_data);\n",
         call_t);
  if (m->resp_stream)
    sb_add(o,
           "  /* Optional: one response, after each %s__client_read();\n"
           "   * valid during the callback. */\n"
           "  void (*on_message)(\n"
           "      %s *call,\n"
           "      const %s *msg, void *user_data);\n",
           m->id, call_t, m->out->c_type);
  if (!m->resp_stream)
    sb_add(o,
           "  /* Required: the end of the call, exactly once. `reply` is the\n"
           "   * response if the status is OK, else NULL; valid during the\n"
           "   * callback. */\n"
           "  void (*on_status)(\n"
           "      %s *call,\n"
           "      const uvg_status_t *status, const %s *reply,\n",
           call_t, m->out->c_type);
  else
    sb_add(o,
           "  /* Required: the end of the call, exactly once. */\n"
           "  void (*on_status)(\n"
           "      %s *call,\n"
           "      const uvg_status_t *status,\n",
           call_t);
  sb_add(o,
         "      const uvg_metadata_t *trailers, size_t n, void *user_data);\n"
         "} %s__client_cbs_t;\n\n",
         m->id);

  if (!m->req_stream)
    sb_add(
        o,
        "/* Starts a %s call with `req`, sent at once with the\n"
        " * half-close (see uvg_client_call_start()). `out` may be NULL. */\n",
        m->name);
  else
    sb_add(o,
           "/* Starts a %s call (see uvg_client_call_start()): send with\n"
           " * %s__client_send(), then %s__client_half_close().\n"
           " * `out` may be NULL. */\n",
           m->name, m->id, m->id);
  const char *start[6];
  size_t n = 0;
  start[n++] = "uvg_channel_t *channel";
  if (!m->req_stream) start[n++] = pstrf("const %s *req", m->in->c_type);
  start[n++] = "const uvg_client_call_options_t *opts";
  start[n++] = pstrf("const %s__client_cbs_t *cbs", m->id);
  start[n++] = "void *user_data";
  start[n++] = pstrf("%s **out", call_t);
  emit_proto(o, "int", pstrf("%s__client_start", m->id), start, n, ";\n");

  if (!m->req_stream && !m->resp_stream) {
    sb_add(o,
           "\n/* The result of %s__client_unary(): `reply` is the\n"
           " * response if status->code is OK, else NULL; valid during the\n"
           " * callback. */\n"
           "typedef void (*%s__client_cb)(\n"
           "    const uvg_status_t *status, const %s *reply, void "
           "*user_data);\n\n",
           m->id, m->id, m->out->c_type);
    sb_add(
        o,
        "/* A %s call in one step: `cb` runs exactly once. Returns 0, or\n"
        " * what uvg_client_call_start() returns (then `cb` never runs). */\n",
        m->name);
    const char *p[] = {"uvg_channel_t *channel",
                       pstrf("const %s *req", m->in->c_type),
                       "const uvg_client_call_options_t *opts",
                       pstrf("%s__client_cb cb", m->id), "void *user_data"};
    emit_proto(o, "int", pstrf("%s__client_unary", m->id), p, 5, ";\n");
  }
  if (m->req_stream) {
    sb_add(
        o,
        "\n/* Queues one request (see uvg_client_call_send_message()). */\n");
    const char *p[] = {pstrf("%s *call", call_t),
                       pstrf("const %s *msg", m->in->c_type), "unsigned flags",
                       "uvg_client_send_cb cb", "void *user_data"};
    emit_proto(o, "static inline int", pstrf("%s__client_send", m->id), p, 5,
               " {\n");
    sb_add(o,
           "  return uvg_client_call_send_message((uvg_client_call_t *)call,\n"
           "      (const ProtobufCMessage *)msg, flags, cb, user_data);\n}\n");
    sb_add(o, "\n/* No more requests (see uvg_client_call_half_close()). */\n");
    const char *h[] = {pstrf("%s *call", call_t)};
    emit_proto(o, "static inline int", pstrf("%s__client_half_close", m->id), h,
               1, " {\n");
    sb_add(
        o,
        "  return uvg_client_call_half_close((uvg_client_call_t *)call);\n}\n");
  }
  if (m->resp_stream) {
    sb_add(
        o,
        "\n/* Asks for the next response (see uvg_client_call_read()). */\n");
    const char *p[] = {pstrf("%s *call", call_t)};
    emit_proto(o, "static inline int", pstrf("%s__client_read", m->id), p, 1,
               " {\n");
    sb_add(o, "  return uvg_client_call_read((uvg_client_call_t *)call);\n}\n");
  }
  sb_add(o, "\n/* See uvg_client_call_cancel(). */\n");
  const char *p[] = {pstrf("%s *call", call_t)};
  emit_proto(o, "static inline int", pstrf("%s__client_cancel", m->id), p, 1,
             " {\n");
  sb_add(o, "  return uvg_client_call_cancel((uvg_client_call_t *)call);\n}\n");
  sb_add(o,
         "\n/* The call as a uvg_client_call_t, for the general functions\n"
         " * (uvg_client_call_set_metadata(), ...). */\n");
  emit_proto(o, "static inline uvg_client_call_t *",
             pstrf("%s__client_raw", m->id), p, 1, " {\n");
  sb_add(o, "  return (uvg_client_call_t *)call;\n}\n");
}

static void emit_header(sb_t *o, const file_proto_t *f, const service_t *svcs,
                        size_t nsvcs) {
  const char *base = strip_proto(f->name);
  const char *pid = path_ident(f->name);
  sb_add(o,
         "/* Generated by protoc-gen-uvgrpc from %s. Do not edit. */\n"
         "#ifndef UVGRPC_GEN_%s_H\n"
         "#define UVGRPC_GEN_%s_H\n\n"
         "#include <uvgrpc/protobuf.h>\n\n"
         "#include \"%s.pb-c.h\"\n\n"
         "#ifdef __cplusplus\n"
         "extern \"C\" {\n"
         "#endif\n\n"
         "/* %s, for reflection. */\n"
         "extern const uvg_pb_file_t uvg_gen_file_%s;\n",
         f->name, pid, pid, base, f->name, pid);
  for (size_t i = 0; i < nsvcs; i++) {
    const service_t *s = &svcs[i];
    sb_add(o, "\n/* ==== service %s ==== */\n\n", s->full);
    emit_comment(o, "", s->comment);
    sb_add(o, "extern const uvg_pb_service_t %s__service;\n\n", s->id);
    for (size_t j = 0; j < s->n; j++)
      sb_add(o, "#define %s__PATH \"%s\"\n", s->methods[j].id,
             s->methods[j].path);
    sb_add(o, "\n");
    emit_server_h(o, s);
    for (size_t j = 0; j < s->n; j++) emit_client_h(o, &s->methods[j]);
  }
  sb_add(o,
         "\n#ifdef __cplusplus\n"
         "}\n"
         "#endif\n"
         "#endif\n");
}

/* ---- the source ---- */

static void add_symbols_of_message(sb_t *syms, size_t *n, const char *scope,
                                   const message_proto_t *m) {
  const char *full = scope[0] ? pstrf("%s.%s", scope, m->name) : m->name;
  sb_add(syms, "    \"%s\",\n", full);
  (*n)++;
  for (size_t i = 0; i < m->n_nested_type; i++)
    add_symbols_of_message(syms, n, full, m->nested_type[i]);
  for (size_t i = 0; i < m->n_enum_type; i++) {
    sb_add(syms, "    \"%s.%s\",\n", full, m->enum_type[i]->name);
    (*n)++;
  }
}

static void add_extensions(sb_t *exts, size_t *n, sb_t *syms, size_t *nsyms,
                           const char *scope, field_proto_t *const *ext,
                           size_t next) {
  for (size_t i = 0; i < next; i++) {
    const char *extendee = ext[i]->extendee ? ext[i]->extendee : "";
    if (extendee[0] == '.') extendee++;
    sb_add(exts, "    {\"%s\", %d},\n", extendee, ext[i]->number);
    (*n)++;
    sb_add(syms, "    \"%s%s%s\",\n", scope, scope[0] ? "." : "", ext[i]->name);
    (*nsyms)++;
  }
}

static void add_nested_extensions(sb_t *exts, size_t *n, sb_t *syms,
                                  size_t *nsyms, const char *scope,
                                  const message_proto_t *m) {
  const char *full = scope[0] ? pstrf("%s.%s", scope, m->name) : m->name;
  add_extensions(exts, n, syms, nsyms, full, m->extension, m->n_extension);
  for (size_t i = 0; i < m->n_nested_type; i++)
    add_nested_extensions(exts, n, syms, nsyms, full, m->nested_type[i]);
}

static void emit_file_descriptor(sb_t *o, const file_proto_t *f) {
  /* Reflection serves the file as protoc-gen-go embeds it: without the
   * source code info, which only comments and positions need. */
  file_proto_t copy = *f;
  copy.source_code_info = NULL;
  size_t len = protobuf_c_message_get_packed_size(&copy.base);
  uint8_t *bytes = xmalloc(len);
  protobuf_c_message_pack(&copy.base, bytes);
  sb_add(o, "static const uint8_t uvg_gen_descriptor[%zu] = {", len);
  for (size_t i = 0; i < len; i++)
    sb_add(o, "%s0x%02x,", i % 12 == 0 ? "\n    " : " ", bytes[i]);
  sb_add(o, "\n};\n\n");
  free(bytes);

  const char *pkg = f->package ? f->package : "";
  sb_t syms = {0}, exts = {0};
  size_t nsyms = 0, nexts = 0;
  for (size_t i = 0; i < f->n_message_type; i++)
    add_symbols_of_message(&syms, &nsyms, pkg, f->message_type[i]);
  for (size_t i = 0; i < f->n_enum_type; i++) {
    sb_add(&syms, "    \"%s%s%s\",\n", pkg, pkg[0] ? "." : "",
           f->enum_type[i]->name);
    nsyms++;
  }
  for (size_t i = 0; i < f->n_service; i++) {
    const service_proto_t *s = f->service[i];
    const char *full = pkg[0] ? pstrf("%s.%s", pkg, s->name) : s->name;
    sb_add(&syms, "    \"%s\",\n", full);
    nsyms++;
    for (size_t j = 0; j < s->n_method; j++) {
      sb_add(&syms, "    \"%s.%s\",\n", full, s->method[j]->name);
      nsyms++;
    }
  }
  add_extensions(&exts, &nexts, &syms, &nsyms, pkg, f->extension,
                 f->n_extension);
  for (size_t i = 0; i < f->n_message_type; i++)
    add_nested_extensions(&exts, &nexts, &syms, &nsyms, pkg,
                          f->message_type[i]);

  if (f->n_dependency > 0) {
    sb_add(o, "static const uvg_pb_file_t *const uvg_gen_deps[] = {\n");
    for (size_t i = 0; i < f->n_dependency; i++)
      sb_add(o, "    &uvg_gen_file_%s,\n", path_ident(f->dependency[i]));
    sb_add(o, "};\n\n");
  }
  if (nsyms > 0)
    sb_add(o, "static const char *const uvg_gen_symbols[] = {\n%s};\n\n",
           syms.s);
  if (nexts > 0)
    sb_add(o,
           "static const uvg_pb_extension_t uvg_gen_extensions[] = {\n%s};\n\n",
           exts.s);
  sb_add(o,
         "const uvg_pb_file_t uvg_gen_file_%s = {\n"
         "    \"%s\",\n"
         "    \"%s\",\n"
         "    uvg_gen_descriptor,\n"
         "    sizeof(uvg_gen_descriptor),\n",
         path_ident(f->name), f->name, pkg);
  if (f->n_dependency > 0)
    sb_add(o, "    uvg_gen_deps,\n    %zu,\n", f->n_dependency);
  else
    sb_add(o, "    NULL,\n    0,\n");
  if (nsyms > 0)
    sb_add(o, "    uvg_gen_symbols,\n    %zu,\n", nsyms);
  else
    sb_add(o, "    NULL,\n    0,\n");
  if (nexts > 0)
    sb_add(o, "    uvg_gen_extensions,\n    %zu,\n", nexts);
  else
    sb_add(o, "    NULL,\n    0,\n");
  sb_add(o, "};\n");
  sb_free(&syms);
  sb_free(&exts);
}

static void emit_server_c(sb_t *o, const service_t *s, const char *file_id) {
  sb_add(o, "\n/* ==== service %s ==== */\n\n", s->full);
  if (s->n > 0) {
    sb_add(o, "static const uvg_pb_method_t %s__methods[] = {\n", s->id);
    for (size_t j = 0; j < s->n; j++) {
      const method_t *m = &s->methods[j];
      sb_add(o,
             "    {\"%s\", %s__PATH, %s,\n"
             "     &%s__descriptor,\n"
             "     &%s__descriptor},\n",
             m->name, m->id, m->kind, m->in->c_lower, m->out->c_lower);
    }
    sb_add(o, "};\n\n");
    sb_add(
        o,
        "static const %s__server_t *%s__impl(\n    const uvg_call_t *call) {\n"
        "  return (const %s__server_t *)uvg_call_service_impl(call);\n"
        "}\n",
        s->id, s->id, s->id);
  }
  for (size_t j = 0; j < s->n; j++) {
    const method_t *m = &s->methods[j];
    const char *impl =
        pstrf("  const %s__server_t *impl = %s__impl(call);\n", s->id, s->id);
    const char *unimpl = pstrf(
        "  if (impl->%s.on_call == NULL) {\n"
        "    uvg_call_finish(call, UVG_STATUS_UNIMPLEMENTED,\n"
        "                    \"method %s not implemented\", NULL, 0);\n"
        "    return;\n"
        "  }\n",
        m->member, m->name);
    sb_add(o,
           "\nstatic void %s__on_call(\n"
           "    uvg_call_t *call, const uint8_t *msg, size_t len) {\n%s",
           m->id, impl);
    if (!m->req_stream) {
      sb_add(
          o,
          "%s"
          "  const ProtobufCMessage *req = uvg_call_decode_request(\n"
          "      call, &%s__descriptor, msg, len);\n"
          "  if (req != NULL)\n    impl->%s.on_call(call, (const %s *)req);\n"
          "}\n",
          unimpl, m->in->c_lower, m->member, m->in->c_type);
    } else {
      sb_add(o,
             "  (void)msg;\n"
             "  (void)len;\n"
             "%s"
             "  impl->%s.on_call(call);\n"
             "}\n",
             unimpl, m->member);
      sb_add(o,
             "\nstatic void %s__on_message(\n"
             "    uvg_call_t *call, const uint8_t *msg, size_t len) {\n%s"
             "  if (impl->%s.on_message == NULL) return;\n"
             "  const ProtobufCMessage *req = uvg_call_decode_message(\n"
             "      call, &%s__descriptor, msg, len);\n"
             "  if (req != NULL)\n    impl->%s.on_message(call, (const %s "
             "*)req);\n"
             "}\n",
             m->id, impl, m->member, m->in->c_lower, m->member, m->in->c_type);
      sb_add(o,
             "\nstatic void %s__on_half_close(\n    uvg_call_t *call) {\n%s"
             "  if (impl->%s.on_half_close != NULL)\n    "
             "impl->%s.on_half_close(call);\n"
             "}\n",
             m->id, impl, m->member, m->member);
    }
    sb_add(o,
           "\nstatic void %s__on_cancel(\n"
           "    uvg_call_t *call, const uvg_status_t *status) {\n%s"
           "  if (impl->%s.on_cancel != NULL)\n    impl->%s.on_cancel(call, "
           "status);\n"
           "}\n",
           m->id, impl, m->member, m->member);
    sb_add(
        o,
        "\nstatic void %s__on_done(\n"
        "    uvg_call_t *call, const uvg_status_t *status) {\n%s"
        "  if (impl->%s.on_done != NULL)\n    impl->%s.on_done(call, status);\n"
        "}\n",
        m->id, impl, m->member, m->member);
  }
  if (s->n > 0) {
    sb_add(o, "\nstatic const uvg_method_t %s__handlers[] = {\n", s->id);
    for (size_t j = 0; j < s->n; j++) {
      const method_t *m = &s->methods[j];
      sb_add(o,
             "    {.path = %s__PATH,\n"
             "     .type = %s,\n"
             "     .on_call = %s__on_call,\n",
             m->id, m->kind, m->id);
      if (m->req_stream)
        sb_add(o,
               "     .on_message = %s__on_message,\n"
               "     .on_half_close = %s__on_half_close,\n",
               m->id, m->id);
      sb_add(o,
             "     .on_cancel = %s__on_cancel,\n"
             "     .on_done = %s__on_done},\n",
             m->id, m->id);
    }
    sb_add(o, "};\n");
  }
  sb_add(o,
         "\nconst uvg_pb_service_t %s__service = {\n"
         "    \"%s\",\n"
         "    &uvg_gen_file_%s,\n",
         s->id, s->full, file_id);
  if (s->n > 0)
    sb_add(o, "    %s__methods,\n    %s__handlers,\n", s->id, s->id);
  else
    sb_add(o, "    NULL,\n    NULL,\n");
  sb_add(o, "    %zu,\n    sizeof(%s__server_t),\n};\n", s->n, s->id);
}

static void emit_client_c(sb_t *o, const service_t *s, const method_t *m) {
  const char *call_t = pstrf("%s__client_call_t", m->id);
  const char *cbs_t = pstrf("%s__client_cbs_t", m->id);
  sb_add(o, "\n/* ---- %s: client ---- */\n", m->path);
  sb_add(
      o,
      "\nstatic void %s__client_on_metadata(\n"
      "    uvg_client_call_t *call, const uvg_metadata_t *md, size_t n,\n"
      "    const void *cbs, void *user_data) {\n"
      "  const %s *c =\n      (const %s *)cbs;\n"
      "  if (c->on_metadata != NULL)\n"
      "    c->on_metadata((%s *)call, md, n,\n                   user_data);\n"
      "}\n",
      m->id, cbs_t, cbs_t, call_t);
  if (m->resp_stream)
    sb_add(o,
           "\nstatic void %s__client_on_message(\n"
           "    uvg_client_call_t *call, const ProtobufCMessage *msg,\n"
           "    const void *cbs, void *user_data) {\n"
           "  const %s *c =\n      (const %s *)cbs;\n"
           "  if (c->on_message != NULL)\n"
           "    c->on_message((%s *)call,\n                  (const %s *)msg, "
           "user_data);\n"
           "}\n",
           m->id, cbs_t, cbs_t, call_t, m->out->c_type);
  sb_add(o,
         "\nstatic void %s__client_on_status(\n"
         "    uvg_client_call_t *call,\n"
         "    const uvg_status_t *status, const ProtobufCMessage *reply,\n"
         "    const uvg_metadata_t *trailers, size_t n, const void *cbs,\n"
         "    void *user_data) {\n"
         "  const %s *c =\n      (const %s *)cbs;\n",
         m->id, cbs_t, cbs_t);
  if (m->resp_stream)
    sb_add(o,
           "  (void)reply;\n"
           "  c->on_status((%s *)call, status,\n               trailers, n, "
           "user_data);\n}\n",
           call_t);
  else
    sb_add(o,
           "  c->on_status((%s *)call, status,\n"
           "               (const %s *)reply, trailers, n, user_data);\n}\n",
           call_t, m->out->c_type);
  sb_add(o,
         "\nstatic const uvg_pb_client_tramp_t %s__client_tramp = {\n"
         "    %s__client_on_metadata,\n    %s,\n    %s__client_on_status};\n",
         m->id, m->id,
         m->resp_stream ? pstrf("%s__client_on_message", m->id) : "NULL",
         m->id);

  const char *start[6];
  size_t n = 0;
  start[n++] = "uvg_channel_t *channel";
  if (!m->req_stream) start[n++] = pstrf("const %s *req", m->in->c_type);
  start[n++] = "const uvg_client_call_options_t *opts";
  start[n++] = pstrf("const %s *cbs", cbs_t);
  start[n++] = "void *user_data";
  start[n++] = pstrf("%s **out", call_t);
  sb_add(o, "\n");
  emit_proto(o, "int", pstrf("%s__client_start", m->id), start, n, " {\n");
  sb_add(o,
         "  uvg_client_call_t *raw;\n"
         "  if (cbs == NULL || cbs->on_status == NULL%s) return UVG_EINVAL;\n"
         "  int rc = uvg_client_call_start_pb(\n"
         "      channel, &%s__methods[%zu],\n      %s, opts,\n"
         "      &%s__client_tramp, cbs, sizeof(*cbs), user_data, &raw);\n"
         "  if (rc == 0 && out != NULL)\n    *out = (%s *)raw;\n"
         "  return rc;\n"
         "}\n",
         m->req_stream ? "" : " || req == NULL", s->id, m->index,
         m->req_stream ? "NULL" : "(const ProtobufCMessage *)req", m->id,
         call_t);

  if (!m->req_stream && !m->resp_stream) {
    sb_add(o,
           "\nstatic void %s__client_unary_on_status(\n"
           "    uvg_client_call_t *call,\n"
           "    const uvg_status_t *status, const ProtobufCMessage *reply,\n"
           "    const uvg_metadata_t *trailers, size_t n, const void *cbs,\n"
           "    void *user_data) {\n"
           "  const %s__client_cb *cb =\n      (const %s__client_cb *)cbs;\n"
           "  (void)call;\n"
           "  (void)trailers;\n"
           "  (void)n;\n"
           "  (*cb)(status, (const %s *)reply, user_data);\n"
           "}\n",
           m->id, m->id, m->id, m->out->c_type);
    sb_add(o,
           "\nstatic const uvg_pb_client_tramp_t %s__client_unary_tramp = {\n"
           "    NULL,\n    NULL,\n    %s__client_unary_on_status};\n\n",
           m->id, m->id);
    const char *p[] = {"uvg_channel_t *channel",
                       pstrf("const %s *req", m->in->c_type),
                       "const uvg_client_call_options_t *opts",
                       pstrf("%s__client_cb cb", m->id), "void *user_data"};
    emit_proto(o, "int", pstrf("%s__client_unary", m->id), p, 5, " {\n");
    sb_add(o,
           "  if (req == NULL || cb == NULL) return UVG_EINVAL;\n"
           "  return uvg_client_call_start_pb(\n"
           "      channel, &%s__methods[%zu],\n      (const ProtobufCMessage "
           "*)req, opts,\n"
           "      &%s__client_unary_tramp, &cb, sizeof(cb), user_data, NULL);\n"
           "}\n",
           s->id, m->index, m->id);
  }
}

static void emit_source(sb_t *o, const file_proto_t *f, const service_t *svcs,
                        size_t nsvcs) {
  const char *pid = path_ident(f->name);
  sb_add(o,
         "/* Generated by protoc-gen-uvgrpc from %s. Do not edit. */\n"
         "#include \"%s.uvgrpc.h\"\n",
         f->name, strip_proto(f->name));
  for (size_t i = 0; i < f->n_dependency; i++)
    sb_add(o, "#include \"%s.uvgrpc.h\"\n", strip_proto(f->dependency[i]));
  sb_add(o, "\n");
  emit_file_descriptor(o, f);
  for (size_t i = 0; i < nsvcs; i++) {
    emit_server_c(o, &svcs[i], pid);
    for (size_t j = 0; j < svcs[i].n; j++)
      emit_client_c(o, &svcs[i], &svcs[i].methods[j]);
  }
}

static out_file_t *add_file(gen_t *g, const char *name) {
  g->files = xrealloc(g->files, (g->nfiles + 1) * sizeof(*g->files));
  out_file_t *of = &g->files[g->nfiles++];
  of->name = name;
  memset(&of->content, 0, sizeof(of->content));
  return of;
}

const file_proto_t *find_file(const gen_t *g, const char *name) {
  for (size_t i = 0; i < g->req->n_proto_file; i++)
    if (strcmp(g->req->proto_file[i]->name, name) == 0)
      return g->req->proto_file[i];
  return NULL;
}

int generate_file(gen_t *g, const file_proto_t *f) {
  service_t *svcs;
  size_t nsvcs;
  if (build_services(g, f, &svcs, &nsvcs) != 0) return -1;
  const char *base = strip_proto(f->name);
  emit_header(&add_file(g, pstrf("%s.uvgrpc.h", base))->content, f, svcs,
              nsvcs);
  emit_source(&add_file(g, pstrf("%s.uvgrpc.c", base))->content, f, svcs,
              nsvcs);
  for (size_t i = 0; i < nsvcs; i++) free(svcs[i].methods);
  free(svcs);
  return 0;
}

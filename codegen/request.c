/*
 * What the plugin does with a CodeGeneratorRequest, without its I/O: the
 * checks that it comes from protoc, the options, and the generation of
 * every file asked for (main.c adds protoc-c's files and the response).
 * The fuzz target test/fuzz/codegen.c runs this on arbitrary requests.
 */
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

const char *parse_options(const char *param, options_t *o) {
  memset(o, 0, sizeof(*o));
  o->protoc_gen_c = "protoc-gen-c";
  if (param == NULL) return NULL;
  const char *p = param;
  while (*p != '\0') {
    const char *comma = strchr(p, ',');
    size_t n = comma ? (size_t)(comma - p) : strlen(p);
    const char *opt = pstrndup(p, n);
    if (strcmp(opt, "pb_c") == 0)
      o->pb_c = 1;
    else if (strncmp(opt, "protoc_gen_c=", 13) == 0 && opt[13] != '\0')
      o->protoc_gen_c = opt + 13;
    else if (n > 0)
      return pstrf("unknown option \"%s\" (known: pb_c, protoc_gen_c=PATH)",
                   opt);
    p += n + (comma != NULL);
  }
  return NULL;
}

/* protoc names every message, service and method; the generator relies
 * on it. Returns the first thing without a name, or NULL. */
static const char *unnamed_message(const message_proto_t *m) {
  if (m->name == NULL) return "a message";
  for (size_t i = 0; i < m->n_nested_type; i++) {
    const char *what = unnamed_message(m->nested_type[i]);
    if (what != NULL) return what;
  }
  return NULL;
}

static const char *unnamed(const file_proto_t *f) {
  for (size_t i = 0; i < f->n_message_type; i++) {
    const char *what = unnamed_message(f->message_type[i]);
    if (what != NULL) return what;
  }
  for (size_t i = 0; i < f->n_service; i++) {
    const service_proto_t *s = f->service[i];
    if (s->name == NULL) return "a service";
    for (size_t j = 0; j < s->n_method; j++)
      if (s->method[j]->name == NULL) return "a method";
  }
  return NULL;
}

const char *check_request(const gen_t *g) {
  const Google__Protobuf__Compiler__CodeGeneratorRequest *req = g->req;
  if (req->n_file_to_generate == 0)
    return "the request names no file to generate; run me from protoc:\n"
           "  protoc --plugin=protoc-gen-uvgrpc=PATH --uvgrpc_out=DIR "
           "FILE.proto";
  for (size_t i = 0; i < req->n_proto_file; i++) {
    const file_proto_t *f = req->proto_file[i];
    if (f->name == NULL) return "the request has a file without a name";
    const char *what = unnamed(f);
    if (what != NULL)
      return pstrf("%s has %s without a name", f->name, what);
  }
  for (size_t i = 0; i < req->n_file_to_generate; i++) {
    const file_proto_t *f = find_file(g, req->file_to_generate[i]);
    if (f == NULL)
      return pstrf("the request asks for %s but does not contain it",
                   req->file_to_generate[i]);
    for (size_t j = 0; j < f->n_dependency; j++)
      if (find_file(g, f->dependency[j]) == NULL)
        return pstrf("%s imports %s, which the request does not contain",
                     f->name, f->dependency[j]);
  }
  return NULL;
}

void generate_files(gen_t *g, options_t *opts) {
  const Google__Protobuf__Compiler__CodeGeneratorRequest *req = g->req;
  for (size_t i = 0; i < req->n_proto_file; i++)
    index_file(&g->types, req->proto_file[i]);
  const char *opt_err = parse_options(req->parameter, opts);
  if (opt_err != NULL) g->error = (char *)opt_err;
  for (size_t i = 0; i < req->n_file_to_generate && g->error == NULL; i++)
    generate_file(g, find_file(g, req->file_to_generate[i]));
}

void gen_free(gen_t *g) {
  for (size_t i = 0; i < g->nfiles; i++) sb_free(&g->files[i].content);
  free(g->files);
  free(g->types.msgs);
}

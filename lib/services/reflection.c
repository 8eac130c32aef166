/*
 * Server reflection (gRFC A15) on the generated code of grpc-proto's
 * reflection protos, v1 and v1alpha.
 *
 * The two versions differ in their package only: their messages are the
 * same on the wire. A request of either is read into one form here and
 * answered with a v1 response, whose bytes a v1alpha client reads as its
 * own.
 *
 * Everything served comes from the server's services (uvg__service_t) and
 * the uvg_pb_file_t each points at: the files are reached through their
 * imports at each request, since services may be added at any time. A
 * stream has at most one response in flight; reading waits for it, so a
 * client that sends requests without reading responses is held back by
 * flow control.
 */
#include "uvgrpc/reflection.h"

#include <string.h>

#include "../server/server.h"
#include "grpc/reflection/v1/reflection.uvgrpc.h"
#include "grpc/reflection/v1alpha/reflection.uvgrpc.h"

typedef Grpc__Reflection__V1__ServerReflectionRequest v1_request_t;
typedef Grpc__Reflection__V1__ServerReflectionResponse response_t;
typedef Grpc__Reflection__V1alpha__ServerReflectionRequest v1alpha_request_t;

/* What a request asks, whichever version it came in. The oneof's field
 * numbers, which both versions share, say what. */
enum {
  BY_FILENAME = 3,
  CONTAINING_SYMBOL = 4,
  CONTAINING_EXTENSION = 5,
  EXTENSION_NUMBERS = 6,
  LIST_SERVICES = 7
};

typedef struct {
  const char *host;
  int kind;
  const char *name; /* file, symbol, type, or list_services' content */
  int32_t number;   /* CONTAINING_EXTENSION */
} query_t;

/* A growable list of pointers, for the files of one response. */
typedef struct {
  const void **v;
  size_t n, cap;
  int failed;
} ptrs_t;

static void ptrs_add(ptrs_t *p, const void *x) {
  if (p->n == p->cap) {
    size_t cap = p->cap ? p->cap * 2 : 16;
    const void **v = uvg__realloc(p->v, cap * sizeof(*v));
    if (v == NULL) {
      p->failed = 1;
      return;
    }
    p->v = v;
    p->cap = cap;
  }
  p->v[p->n++] = x;
}

static int ptrs_has(const ptrs_t *p, const void *x) {
  for (size_t i = 0; i < p->n; i++)
    if (p->v[i] == x) return 1;
  return 0;
}

/* Adds `f` and, depth first, what it imports, each file once. */
static void add_file_and_deps(ptrs_t *files, const uvg_pb_file_t *f) {
  if (ptrs_has(files, f)) return;
  ptrs_add(files, f);
  for (size_t i = 0; i < f->ndeps; i++) add_file_and_deps(files, f->deps[i]);
}

/* Every file the server's services reach. */
static void all_files(uvg_server_t *s, ptrs_t *files) {
  for (uvg__list_t *p = s->services.next; p != &s->services; p = p->next)
    add_file_and_deps(files,
                      uvg__container_of(p, uvg__service_t, link)->desc->file);
}

static const uvg_pb_file_t *file_named(const ptrs_t *files, const char *name) {
  for (size_t i = 0; i < files->n; i++) {
    const uvg_pb_file_t *f = files->v[i];
    if (strcmp(f->name, name) == 0) return f;
  }
  return NULL;
}

static const uvg_pb_file_t *file_defining(const ptrs_t *files,
                                          const char *symbol) {
  for (size_t i = 0; i < files->n; i++) {
    const uvg_pb_file_t *f = files->v[i];
    for (size_t j = 0; j < f->nsymbols; j++)
      if (strcmp(f->symbols[j], symbol) == 0) return f;
  }
  return NULL;
}

static const uvg_pb_file_t *file_extending(const ptrs_t *files,
                                           const char *type, int32_t number) {
  for (size_t i = 0; i < files->n; i++) {
    const uvg_pb_file_t *f = files->v[i];
    for (size_t j = 0; j < f->nextensions; j++)
      if (f->extensions[j].number == number &&
          strcmp(f->extensions[j].extendee, type) == 0)
        return f;
  }
  return NULL;
}

/* Fills `resp` with an error_response. */
static void error_response(response_t *resp,
                           Grpc__Reflection__V1__ErrorResponse *err,
                           uvg_status_code_t code, const char *msg) {
  err->error_code = (int32_t)code;
  err->error_message = (char *)msg;
  resp->message_response_case =
      GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
  resp->error_response = err;
}

static void on_sent(uvg_call_t *call, int status, void *arg) {
  (void)status;
  (void)arg;
  uvg_call_pause_reading(call, 0); /* the next request may come */
}

/* Answers one request with one response. */
static void answer(uvg_call_t *call, const query_t *q, v1_request_t *original) {
  uvg_server_t *s = uvg_call_method_data(call);
  response_t resp = GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__INIT;
  Grpc__Reflection__V1__ErrorResponse err =
      GRPC__REFLECTION__V1__ERROR_RESPONSE__INIT;
  Grpc__Reflection__V1__FileDescriptorResponse fdr =
      GRPC__REFLECTION__V1__FILE_DESCRIPTOR_RESPONSE__INIT;
  Grpc__Reflection__V1__ListServiceResponse lsr =
      GRPC__REFLECTION__V1__LIST_SERVICE_RESPONSE__INIT;
  Grpc__Reflection__V1__ExtensionNumberResponse enr =
      GRPC__REFLECTION__V1__EXTENSION_NUMBER_RESPONSE__INIT;
  ProtobufCBinaryData *blobs = NULL;
  Grpc__Reflection__V1__ServiceResponse *svcs = NULL, **svcp = NULL;
  int32_t *numbers = NULL;
  ptrs_t files = {0}, reply = {0};
  char text[256];

  resp.valid_host = (char *)q->host;
  resp.original_request = original;
  all_files(s, &files);
  const uvg_pb_file_t *found = NULL;
  switch (q->kind) {
    case BY_FILENAME:
    case CONTAINING_SYMBOL:
    case CONTAINING_EXTENSION:
      found = q->kind == BY_FILENAME ? file_named(&files, q->name)
              : q->kind == CONTAINING_SYMBOL
                  ? file_defining(&files, q->name)
                  : file_extending(&files, q->name, q->number);
      if (found == NULL) {
        snprintf(text, sizeof(text), "%s not found: %s%s",
                 q->kind == BY_FILENAME         ? "file"
                 : q->kind == CONTAINING_SYMBOL ? "symbol"
                                                : "extension",
                 q->name,
                 q->kind == CONTAINING_EXTENSION ? " (by number)" : "");
        error_response(&resp, &err, UVG_STATUS_NOT_FOUND, text);
        break;
      }
      /* gRFC A15: the file "and its transitive dependencies" */
      add_file_and_deps(&reply, found);
      blobs = uvg__calloc(reply.n ? reply.n : 1, sizeof(*blobs));
      if (blobs == NULL) reply.failed = 1;
      for (size_t i = 0; blobs != NULL && i < reply.n; i++) {
        const uvg_pb_file_t *f = reply.v[i];
        blobs[i].data = (uint8_t *)f->descriptor;
        blobs[i].len = f->descriptor_len;
      }
      fdr.n_file_descriptor_proto = reply.n;
      fdr.file_descriptor_proto = blobs;
      resp.message_response_case =
          GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
      resp.file_descriptor_response = &fdr;
      break;
    case EXTENSION_NUMBERS:
      if (file_defining(&files, q->name) == NULL) {
        snprintf(text, sizeof(text), "type not found: %s", q->name);
        error_response(&resp, &err, UVG_STATUS_NOT_FOUND, text);
        break;
      }
      for (size_t i = 0; i < files.n; i++) {
        const uvg_pb_file_t *f = files.v[i];
        for (size_t j = 0; j < f->nextensions; j++)
          if (strcmp(f->extensions[j].extendee, q->name) == 0)
            enr.n_extension_number++;
      }
      numbers = uvg__calloc(enr.n_extension_number ? enr.n_extension_number : 1,
                            sizeof(*numbers));
      if (numbers == NULL) {
        reply.failed = 1;
        break;
      }
      enr.n_extension_number = 0;
      for (size_t i = 0; i < files.n; i++) {
        const uvg_pb_file_t *f = files.v[i];
        for (size_t j = 0; j < f->nextensions; j++)
          if (strcmp(f->extensions[j].extendee, q->name) == 0)
            numbers[enr.n_extension_number++] = f->extensions[j].number;
      }
      enr.base_type_name = (char *)q->name;
      enr.extension_number = numbers;
      resp.message_response_case =
          GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE;
      resp.all_extension_numbers_response = &enr;
      break;
    case LIST_SERVICES: {
      size_t n = 0;
      for (uvg__list_t *p = s->services.next; p != &s->services; p = p->next)
        n++;
      svcs = uvg__calloc(n ? n : 1, sizeof(*svcs));
      svcp = uvg__calloc(n ? n : 1, sizeof(*svcp));
      if (svcs == NULL || svcp == NULL) {
        reply.failed = 1;
        break;
      }
      size_t i = 0;
      for (uvg__list_t *p = s->services.next; p != &s->services;
           p = p->next, i++) {
        grpc__reflection__v1__service_response__init(&svcs[i]);
        svcs[i].name =
            (char *)uvg__container_of(p, uvg__service_t, link)->desc->name;
        svcp[i] = &svcs[i];
      }
      lsr.n_service = n;
      lsr.service = svcp;
      resp.message_response_case =
          GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
      resp.list_services_response = &lsr;
      break;
    }
    default:
      error_response(&resp, &err, UVG_STATUS_INVALID_ARGUMENT,
                     "the request asks for nothing this server knows");
  }
  int rc;
  if (files.failed || reply.failed) {
    rc = UVG_ENOMEM;
  } else {
    /* Packed before this returns: every pointer above may go after. */
    rc = uvg_call_send_message(call, (const ProtobufCMessage *)&resp, 0,
                               on_sent, NULL);
    if (rc == 0) uvg_call_pause_reading(call, 1);
  }
  if (rc != 0)
    uvg_call_finish(call, UVG_STATUS_INTERNAL,
                    rc == UVG_ENOMEM ? "out of memory" : uvg_strerror(rc), NULL,
                    0);
  uvg__free(blobs);
  uvg__free(svcs);
  uvg__free(svcp);
  uvg__free(numbers);
  uvg__free(files.v);
  uvg__free(reply.v);
}

static void on_call(uvg_call_t *call) {
  (void)call;
}

static void on_half_close(uvg_call_t *call) {
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}

static void on_cancel(uvg_call_t *call, const uvg_status_t *status) {
  (void)status;
  uvg_call_finish(call, UVG_STATUS_CANCELLED, NULL, NULL, 0);
}

static void on_v1(uvg_call_t *call, const v1_request_t *req) {
  query_t q = {req->host, (int)req->message_request_case, "", 0};
  switch (req->message_request_case) {
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
      q.name = req->file_by_filename;
      break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
      q.name = req->file_containing_symbol;
      break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
      if (req->file_containing_extension != NULL) {
        q.name = req->file_containing_extension->containing_type;
        q.number = req->file_containing_extension->extension_number;
      }
      break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
      q.name = req->all_extension_numbers_of_type;
      break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
      q.name = req->list_services;
      break;
    default:
      break;
  }
  answer(call, &q, (v1_request_t *)req);
}

/* The v1alpha request as a v1 one, for original_request: the same fields
 * under the same numbers. */
static void on_v1alpha(uvg_call_t *call, const v1alpha_request_t *req) {
  v1_request_t v1 = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
  Grpc__Reflection__V1__ExtensionRequest ext =
      GRPC__REFLECTION__V1__EXTENSION_REQUEST__INIT;
  v1.host = req->host;
  v1.message_request_case =
      (Grpc__Reflection__V1__ServerReflectionRequest__MessageRequestCase)
          req->message_request_case;
  switch (req->message_request_case) {
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
      v1.file_by_filename = req->file_by_filename;
      break;
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
      v1.file_containing_symbol = req->file_containing_symbol;
      break;
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
      if (req->file_containing_extension != NULL) {
        ext.containing_type = req->file_containing_extension->containing_type;
        ext.extension_number = req->file_containing_extension->extension_number;
      }
      v1.file_containing_extension = &ext;
      break;
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
      v1.all_extension_numbers_of_type = req->all_extension_numbers_of_type;
      break;
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
      v1.list_services = req->list_services;
      break;
    default:
      v1.message_request_case =
          GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST__NOT_SET;
      break;
  }
  on_v1(call, &v1);
}

static const grpc__reflection__v1__ServerReflection__server_t v1_impl = {
    .ServerReflectionInfo = {.on_call = on_call,
                             .on_message = on_v1,
                             .on_half_close = on_half_close,
                             .on_cancel = on_cancel},
};

static const grpc__reflection__v1alpha__ServerReflection__server_t
    v1alpha_impl = {
        .ServerReflectionInfo = {.on_call = on_call,
                                 .on_message = on_v1alpha,
                                 .on_half_close = on_half_close,
                                 .on_cancel = on_cancel},
};

int uvg_reflection_add(uvg_server_t *server) {
  if (server == NULL) return UVG_EINVAL;
  int rc = grpc__reflection__v1__ServerReflection__register(server, &v1_impl,
                                                            server);
  if (rc != 0) return rc;
  /* Registering v1alpha can fail only if it is there already; v1 stays. */
  return grpc__reflection__v1alpha__ServerReflection__register(
      server, &v1alpha_impl, server);
}

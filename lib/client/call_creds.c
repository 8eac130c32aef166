/*
 * Call credentials: an application callback that gives each call its
 * metadata (a bearer token, say), asked before the call is sent
 * (grpc-go's PerRPCCredentials, gRPC's plugin credentials). The object is
 * refcounted atomically like the channel credentials; the per-call
 * request that carries the answer back lives in call.c.
 */
#include <string.h>

#include "channel.h"

int uvg_call_credentials_new(uvg_get_metadata_cb get, void (*destroy)(void *),
                             void *user_data, uvg_call_credentials_t **out) {
  if (get == NULL || out == NULL) return UVG_EINVAL;
  uvg_call_credentials_t *cc = uvg__malloc(sizeof(*cc));
  if (cc == NULL) return UVG_ENOMEM;
  atomic_init(&cc->refs, 1);
  cc->get = get;
  cc->destroy = destroy;
  cc->user_data = user_data;
  *out = cc;
  return 0;
}

uvg_call_credentials_t *uvg__call_creds_ref(uvg_call_credentials_t *cc) {
  if (cc != NULL) atomic_fetch_add_explicit(&cc->refs, 1, memory_order_relaxed);
  return cc;
}

void uvg_call_credentials_release(uvg_call_credentials_t *cc) {
  if (cc == NULL ||
      atomic_fetch_sub_explicit(&cc->refs, 1, memory_order_acq_rel) != 1)
    return;
  if (cc->destroy != NULL) cc->destroy(cc->user_data);
  uvg__free(cc);
}

char *uvg__service_url(const char *authority, const char *method) {
  size_t alen = strlen(authority);
  /* grpc-go's createAudience: the default port is left out */
  if (alen > 4 && memcmp(authority + alen - 4, ":443", 4) == 0) alen -= 4;
  const char *slash = strrchr(method, '/');
  size_t mlen = slash != NULL ? (size_t)(slash - method) : strlen(method);
  char *url = uvg__malloc(8 + alen + mlen + 1);
  if (url == NULL) return NULL;
  memcpy(url, "https://", 8);
  memcpy(url + 8, authority, alen);
  memcpy(url + 8 + alen, method, mlen);
  url[8 + alen + mlen] = '\0';
  return url;
}

uvg_status_code_t uvg__call_creds_code(uvg_status_code_t code) {
  /* gRFC A54: codes a control plane may not make a data plane report */
  switch (code) {
    case UVG_STATUS_INVALID_ARGUMENT:
    case UVG_STATUS_NOT_FOUND:
    case UVG_STATUS_ALREADY_EXISTS:
    case UVG_STATUS_FAILED_PRECONDITION:
    case UVG_STATUS_ABORTED:
    case UVG_STATUS_OUT_OF_RANGE:
    case UVG_STATUS_DATA_LOSS:
      return UVG_STATUS_INTERNAL;
    default:
      return code;
  }
}

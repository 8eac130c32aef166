/* Status codes (doc/statuscodes.md) and library error names. */
#include <uv.h>

#include "rpc.h"

static const char *const code_names[] = {
    "OK",        "CANCELLED",         "UNKNOWN",          "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",  "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
    "UNIMPLEMENTED", "INTERNAL",      "UNAVAILABLE",      "DATA_LOSS",
    "UNAUTHENTICATED"};

const char *uvg_status_code_name(int code) {
  if (code < 0 || code > 16) return "UNKNOWN";
  return code_names[code];
}

uvg_status_code_t uvg__status_of_reset(uint32_t h2_error) {
  switch (h2_error) {
    case NGHTTP2_REFUSED_STREAM: return UVG_STATUS_UNAVAILABLE;
    case NGHTTP2_CANCEL: return UVG_STATUS_CANCELLED;
    case NGHTTP2_ENHANCE_YOUR_CALM: return UVG_STATUS_RESOURCE_EXHAUSTED;
    case NGHTTP2_INADEQUATE_SECURITY: return UVG_STATUS_PERMISSION_DENIED;
    default: return UVG_STATUS_INTERNAL;
  }
}

const char *uvg_strerror(int err) {
  switch (err) {
    case 0: return "success";
    case UVG_EINVAL: return "invalid argument";
    case UVG_ENOMEM: return "out of memory";
    case UVG_ECLOSED: return "object is closing or closed";
    case UVG_ECANCELED: return "call cancelled or finished";
    case UVG_ESTATE: return "operation not allowed in the current state";
    case UVG_EPROTO: return "protocol violation by the peer";
    case UVG_ENOCREDS: return "credentials are required";
    case UVG_EEXIST: return "method already registered";
    case UVG_EADDR: return "malformed address";
    case UVG_ENOTSUP: return "not accepted by the peer";
    case UVG_E2BIG: return "message larger than the configured limit";
    case UVG_EBADCREDS: return "unusable certificate, key or CA list";
    default: break;
  }
  if (err < 0 && err > -30000) return uv_strerror(err);
  return "unknown error";
}

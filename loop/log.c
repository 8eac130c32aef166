/* Log lines and the UVG_TRACE switch. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common.h"

unsigned uvg__trace_flags;
static uv_once_t trace_once = UV_ONCE_INIT;
static uvg_log_cb log_cb;
static void *log_data;

static const struct {
  const char *name;
  unsigned flag;
} trace_names[] = {
    {"api", UVG__TRACE_API},       {"transport", UVG__TRACE_TRANSPORT},
    {"writer", UVG__TRACE_WRITER}, {"server", UVG__TRACE_SERVER},
    {"call", UVG__TRACE_CALL},     {"tls", UVG__TRACE_TLS},
    {"all", ~0u},
};

static void parse_trace(void) {
  const char *env = getenv("UVG_TRACE");
  if (env == NULL) return;
  while (*env != '\0') {
    size_t n = strcspn(env, ",");
    for (size_t i = 0; i < UVG__ARRAY_SIZE(trace_names); i++)
      if (strlen(trace_names[i].name) == n &&
          strncmp(env, trace_names[i].name, n) == 0)
        uvg__trace_flags |= trace_names[i].flag;
    env += n;
    if (*env == ',') env++;
  }
}

/* Loops on several threads may create their first servers together: each
 * must wait until the flags are complete, not see them half parsed. */
void uvg__trace_init(void) {
  uv_once(&trace_once, parse_trace);
}

void uvg_set_log_cb(uvg_log_cb cb, void *user_data) {
  log_cb = cb;
  log_data = user_data;
}

void uvg__log(uvg_log_level_t level, const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  if (log_cb != NULL) {
    log_cb(level, line, log_data);
    return;
  }
  static const char *names[] = {"error", "warn", "trace"};
  fprintf(stderr, "uvgrpc %s: %s\n", names[level], line);
}

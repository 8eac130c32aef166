/* Service config JSON (lib/client/service_config.c, gRFC A2/A6/A21): a
 * config either parses or is refused with a message; a parsed one answers
 * method look-ups. The first byte picks a plain config or a DNS TXT
 * record's list of choices, and which LB policies the channel "has". */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client/service_config.h"
#include "rpc/rpc.h"

static int supported(const char *name, const char *config, void *arg) {
  unsigned mask = *(const unsigned *)arg;
  /* with bit 2, pick_first refuses any config but {} (check_config) */
  if (strcmp(name, "pick_first") == 0)
    return (mask & 2) && strcmp(config, "{}") != 0 ? -1 : 1;
  if (strcmp(name, "round_robin") == 0) return (mask & 4) != 0;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  unsigned mask = data[0];
  const char *json = (const char *)data + 1;
  size_t len = size - 1;
  uvg__service_config_t *sc = NULL;
  char err[256];
  int rc;
  if (mask & 1) {
    rc = uvg__service_config_parse_choices(json, len, "fuzz.example",
                                           (mask >> 3) * 4, supported, &mask,
                                           &sc, err, sizeof(err));
  } else {
    rc = uvg__service_config_parse(json, len, supported, &mask, &sc, err,
                                   sizeof(err));
  }
  if (rc != 0) {
    if (sc != NULL || memchr(err, 0, sizeof(err)) == NULL) abort();
    return 0;
  }
  if (sc == NULL) return 0; /* no choice matched */
  static const char *const paths[] = {"/", "", "/a/b", "/pkg.S/M",
                                      "/helloworld.Greeter/SayHello", "x"};
  for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
    (void)uvg__service_config_method(sc, paths[i]);
  /* every name the config lists finds a config */
  for (size_t i = 0; i < sc->nnames; i++) {
    char path[512];
    const uvg__method_name_t *n = &sc->names[i];
    if (n->service == NULL || n->method == NULL || n->service[0] == 0 ||
        n->method[0] == 0 || strchr(n->service, '/') != NULL ||
        strchr(n->method, '/') != NULL)
      continue;
    size_t pl = (size_t)snprintf(path, sizeof(path), "/%s/%s", n->service,
                                 n->method);
    if (pl < sizeof(path) && uvg__service_config_method(sc, path) == NULL)
      abort();
  }
  uvg__service_config_ref(sc);
  uvg__service_config_unref(sc);
  uvg__service_config_unref(sc);
  return 0;
}

/* Target URIs (lib/client/target.c, gRPC's doc/naming.md) and the address
 * parsing the ipv4:/ipv6: resolvers rely on; with them the proxy
 * settings a channel reads beside its target (lib/client/proxy.c). The
 * first byte picks the parser. A parsed target must be self-consistent:
 * its addresses carry the family its scheme names. */
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client/client.h"
#include "rpc/rpc.h"

static void target(const char *s) {
  uvg__target_t t;
  char err[256];
  int rc = uvg__target_parse(s, &t, err, sizeof(err));
  if (rc == 0) {
    for (size_t i = 0; i < t.naddrs; i++) {
      int fam = t.addrs[i].ss_family;
      if (fam != AF_INET && fam != AF_INET6) abort();
    }
    if (t.default_authority == NULL) abort();
    /* what a channel does next: decide on a proxy */
    uvg__proxy_env_t env;
    memset(&env, 0, sizeof(env));
    env.http_proxy = "proxy.example:3128";
    env.no_proxy = "example.com,10.0.0.0/8,::1";
    uvg__proxy_t *p = NULL;
    if (uvg__proxy_decide(&t, &env, &p, err, sizeof(err)) == 0 && p != NULL)
      uvg__proxy_free(p);
  } else if (memchr(err, 0, sizeof(err)) == NULL) {
    abort();
  }
  uvg__target_free(&t);
  (void)uvg__target_scheme_len(s);
  char *a = uvg__authority_encode(s);
  uvg__free(a);
}

static void proxy_url(const char *s) {
  uvg__proxy_url_t u;
  char err[256];
  if (uvg__proxy_url_parse(s, &u, err, sizeof(err)) == 0) {
    if (u.host == NULL || u.port_str == NULL) abort();
    uvg__proxy_url_free(&u);
  }
}

static void no_proxy(const char *s) {
  /* list, then a NUL, then the host */
  const char *host = s + strlen(s) + 1;
  (void)uvg__no_proxy_match(s, "a.example.com");
  (void)uvg__no_proxy_match(s, "10.1.2.3");
  (void)uvg__no_proxy_match(s, "fd00::1");
  (void)uvg__no_proxy_match("example.com,10.0.0.0/8,fd00::/8,*.x", host);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  /* a NUL-terminated copy, and for no_proxy a second string after it */
  char *s = malloc(size + 1);
  if (s == NULL) abort();
  memcpy(s, data + 1, size - 1);
  s[size - 1] = 0;
  s[size] = 0;
  switch (data[0] % 3) {
  case 0: target(s); break;
  case 1: proxy_url(s); break;
  default: no_proxy(s); break;
  }
  free(s);
  return 0;
}

/* Choosing a channel's HTTP CONNECT proxy (gRFC A1, case 1 and case 2),
 * as gRPC C-core's default proxy mapper (doc/core/default_http_proxy_mapper.md)
 * does, with these choices where it leaves room or where we differ:
 *
 * - A variable that is set but empty stops the search and means no proxy
 *   (C-core): grpc_proxy="" keeps gRPC off a proxy that https_proxy sets
 *   for other programs.
 * - A value without "://" is read as http ("proxy:3128", as curl and Go
 *   read it; C-core fails to parse it). A port left out is http's, 80 (as
 *   grpc-js; C-core uses 443).
 * - Only lowercase names are read, as C-core and grpc-js do.
 * - no_proxy names match themselves and their subdomains at a dot
 *   boundary, with or without a leading dot (curl, Go); C-core now takes
 *   a name without one as an exact match. "*" (curl, Go) matches all.
 *   Entries with a port are not supported (C-core has none); such an
 *   entry matches nothing.
 * - Loopback targets skip a proxy that came from the environment (Go's
 *   httpproxy does; C-core does not): a local server is not behind the
 *   corporate proxy the environment names. The channel option applies to
 *   them.
 * - The user and password of the URL are percent-decoded before they are
 *   base64-encoded (RFC 3986 userinfo; C-core encodes them as written).
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../rpc/rpc.h"
#include "client.h"

void uvg__proxy_env_read(uvg__proxy_env_t *e) {
  e->grpc_proxy = getenv("grpc_proxy");
  e->https_proxy = getenv("https_proxy");
  e->http_proxy = getenv("http_proxy");
  e->no_grpc_proxy = getenv("no_grpc_proxy");
  e->no_proxy = getenv("no_proxy");
}

/* ---- the proxy URL ---- */

static int is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
}

static int set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int set_err(char *err, size_t errlen, const char *fmt, ...) {
  if (errlen > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return UVG_EINVAL;
}

void uvg__proxy_url_free(uvg__proxy_url_t *u) {
  uvg__free(u->host);
  uvg__free(u->port_str);
  uvg__free(u->userpass);
  memset(u, 0, sizeof(*u));
}

/* "user:password" from the userinfo's n bytes, each part decoded. */
static char *decode_userpass(const char *s, size_t n) {
  const char *colon = memchr(s, ':', n);
  size_t un = colon ? (size_t)(colon - s) : n;
  char *user = uvg__percent_decode(s, un);
  char *pass =
      colon ? uvg__percent_decode(colon + 1, n - un - 1) : uvg__strdup("");
  char *out = NULL;
  if (user != NULL && pass != NULL) {
    size_t len = strlen(user) + 1 + strlen(pass) + 1;
    if ((out = uvg__malloc(len)) != NULL)
      snprintf(out, len, "%s:%s", user, pass);
  }
  uvg__free(user);
  uvg__free(pass);
  return out;
}

static int parse_url(const char *url, uvg__proxy_url_t *u, char *err,
                     size_t errlen) {
  const char *auth = url;
  const char *sep = strstr(url, "://");
  if (sep != NULL) {
    if ((size_t)(sep - url) != 4 || strncasecmp(url, "http", 4) != 0)
      return set_err(err, errlen,
                     "scheme \"%.*s\" is not supported (only http)",
                     (int)(sep - url > 16 ? 16 : sep - url), url);
    auth = sep + 3;
  }
  size_t alen = strcspn(auth, "/?#");
  const char *at = NULL;
  for (size_t i = 0; i < alen; i++)
    if (auth[i] == '@') at = auth + i;
  if (at != NULL) {
    u->userpass = decode_userpass(auth, (size_t)(at - auth));
    if (u->userpass == NULL) return UVG_ENOMEM;
    alen -= (size_t)(at + 1 - auth);
    auth = at + 1;
  }
  const char *host = auth, *port = NULL;
  size_t hlen, plen = 0;
  if (alen > 0 && auth[0] == '[') {
    const char *close = memchr(auth, ']', alen);
    if (close == NULL)
      return set_err(err, errlen, "missing \"]\" after the IPv6 host");
    host = auth + 1;
    hlen = (size_t)(close - host);
    char buf[INET6_ADDRSTRLEN];
    struct in6_addr a;
    if (hlen >= sizeof(buf)) return set_err(err, errlen, "bad IPv6 host");
    memcpy(buf, host, hlen);
    buf[hlen] = '\0';
    if (inet_pton(AF_INET6, buf, &a) != 1)
      return set_err(err, errlen, "bad IPv6 host \"%s\"", buf);
    size_t rest = alen - hlen - 2;
    if (rest > 0) {
      if (close[1] != ':')
        return set_err(err, errlen, "unexpected text after the IPv6 host");
      port = close + 2;
      plen = rest - 1;
    }
  } else {
    const char *colon = memchr(auth, ':', alen);
    hlen = colon ? (size_t)(colon - auth) : alen;
    if (colon != NULL) {
      port = colon + 1;
      plen = alen - hlen - 1;
    }
    for (size_t i = 0; i < hlen; i++)
      if (!is_name_char(host[i]))
        return set_err(err, errlen, "bad host \"%.*s\"",
                       (int)(hlen > 64 ? 64 : hlen), host);
  }
  if (hlen == 0) return set_err(err, errlen, "no host");
  if (port != NULL) {
    unsigned long v = 0;
    for (size_t i = 0; i < plen; i++) {
      if (port[i] < '0' || port[i] > '9' ||
          (v = v * 10 + (unsigned long)(port[i] - '0')) > 65535)
        return set_err(err, errlen, "bad port \"%.*s\"",
                       (int)(plen > 16 ? 16 : plen), port);
    }
    if (plen == 0 || v == 0)
      return set_err(err, errlen, "bad port \"%.*s\"", (int)plen, port);
  }
  u->host = uvg__strndup(host, hlen);
  u->port_str = port ? uvg__strndup(port, plen) : uvg__strdup("80");
  return u->host != NULL && u->port_str != NULL ? 0 : UVG_ENOMEM;
}

int uvg__proxy_url_parse(const char *url, uvg__proxy_url_t *out, char *err,
                         size_t errlen) {
  if (errlen > 0) err[0] = '\0';
  memset(out, 0, sizeof(*out));
  int rc = parse_url(url, out, err, errlen);
  if (rc == UVG_ENOMEM && errlen > 0) snprintf(err, errlen, "out of memory");
  if (rc != 0) uvg__proxy_url_free(out);
  return rc;
}

/* ---- no_proxy ---- */

typedef struct {
  int family; /* AF_INET, AF_INET6, or 0: not an address */
  uint8_t bytes[16];
} ip_t;

/* An IPv4 or IPv6 address in the n bytes at s, IPv6 maybe bracketed. */
static ip_t parse_ip(const char *s, size_t n) {
  ip_t ip = {0, {0}};
  char buf[INET6_ADDRSTRLEN];
  if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
    s++;
    n -= 2;
  }
  if (n == 0 || n >= sizeof(buf)) return ip;
  memcpy(buf, s, n);
  buf[n] = '\0';
  if (inet_pton(AF_INET, buf, ip.bytes) == 1)
    ip.family = AF_INET;
  else if (inet_pton(AF_INET6, buf, ip.bytes) == 1)
    ip.family = AF_INET6;
  return ip;
}

/* The first `bits` bits of a and b agree. */
static int prefix_equal(const uint8_t *a, const uint8_t *b, unsigned bits) {
  unsigned whole = bits / 8, rest = bits % 8;
  if (memcmp(a, b, whole) != 0) return 0;
  if (rest == 0) return 1;
  uint8_t mask = (uint8_t)(0xff << (8 - rest));
  return (a[whole] & mask) == (b[whole] & mask);
}

/* "addr/bits" of n bytes against the host's address. */
static int cidr_match(const char *e, size_t n, const ip_t *host) {
  const char *slash = memchr(e, '/', n);
  size_t alen = (size_t)(slash - e), blen = n - alen - 1;
  ip_t net = parse_ip(e, alen);
  if (net.family == 0 || net.family != host->family || blen == 0 || blen > 3)
    return 0;
  unsigned bits = 0;
  for (size_t i = 0; i < blen; i++) {
    if (slash[1 + i] < '0' || slash[1 + i] > '9') return 0;
    bits = bits * 10 + (unsigned)(slash[1 + i] - '0');
  }
  if (bits > (net.family == AF_INET ? 32u : 128u)) return 0;
  return prefix_equal(net.bytes, host->bytes, bits);
}

/* The name `e` (n bytes) is `host` or one of its parent domains. */
static int name_match(const char *e, size_t n, const char *host) {
  if (n > 0 && e[0] == '.') {
    e++;
    n--;
  }
  size_t hl = strlen(host);
  if (n == 0 || hl < n || strncasecmp(host + hl - n, e, n) != 0) return 0;
  return hl == n || host[hl - n - 1] == '.';
}

int uvg__no_proxy_match(const char *list, const char *host) {
  if (list == NULL || host == NULL) return 0;
  ip_t hip = parse_ip(host, strlen(host));
  const char *p = list;
  while (*p != '\0') {
    size_t n = strcspn(p, ",");
    const char *e = p, *end = p + n;
    p = *end == ',' ? end + 1 : end;
    while (e < end && (*e == ' ' || *e == '\t')) e++;
    while (end > e && (end[-1] == ' ' || end[-1] == '\t')) end--;
    size_t len = (size_t)(end - e);
    if (len == 0) continue;
    if (len == 1 && e[0] == '*') return 1;
    if (memchr(e, '/', len) != NULL) {
      if (hip.family != 0 && cidr_match(e, len, &hip)) return 1;
      continue;
    }
    ip_t eip = parse_ip(e, len);
    if (eip.family != 0) {
      if (eip.family == hip.family &&
          memcmp(eip.bytes, hip.bytes, eip.family == AF_INET ? 4 : 16) == 0)
        return 1;
      continue;
    }
    if (hip.family == 0 && name_match(e, len, host)) return 1;
  }
  return 0;
}

/* ---- the decision ---- */

static int is_loopback(const char *host) {
  if (strcasecmp(host, "localhost") == 0) return 1;
  ip_t ip = parse_ip(host, strlen(host));
  static const uint8_t v6_loopback[16] = {[15] = 1};
  return (ip.family == AF_INET && ip.bytes[0] == 127) ||
         (ip.family == AF_INET6 && memcmp(ip.bytes, v6_loopback, 16) == 0);
}

/* RFC 3986 3.2.2 reg-name characters, and those of an IPv6 literal: what
 * a request line can carry as it is. */
static int is_host_char(char c) {
  return is_name_char(c) || (c != '\0' && strchr("~!$&'()*+,;=%:", c) != NULL);
}

/* The tunnel targets' hosts and ports as a request names them: the dns
 * target's host:port as written, or each address of an ipv4/ipv6 one. */
typedef struct {
  char host[INET6_ADDRSTRLEN + 16];
  char port[8];
} hop_t;

/* Returns an allocated array of *n hops, or NULL. */
static hop_t *tunnel_hops(const uvg__target_t *t, size_t *n) {
  *n = t->scheme == UVG__TARGET_DNS ? 1 : t->naddrs;
  hop_t *hops = uvg__calloc(*n, sizeof(*hops));
  if (hops == NULL) return NULL;
  if (t->scheme == UVG__TARGET_DNS) {
    snprintf(hops[0].host, sizeof(hops[0].host), "%s", t->host);
    snprintf(hops[0].port, sizeof(hops[0].port), "%s", t->port_str);
    return hops;
  }
  for (size_t i = 0; i < *n; i++) {
    const struct sockaddr_storage *ss = &t->addrs[i];
    int port;
    if (ss->ss_family == AF_INET6) {
      const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
      uv_ip6_name(a, hops[i].host, sizeof(hops[i].host));
      port = ntohs(a->sin6_port);
    } else {
      const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
      uv_ip4_name(a, hops[i].host, sizeof(hops[i].host));
      port = ntohs(a->sin_port);
    }
    snprintf(hops[i].port, sizeof(hops[i].port), "%d", port);
  }
  return hops;
}

/* "host:port", the host bracketed when it is an IPv6 address. */
static char *join_host_port(const char *host, const char *port) {
  int v6 = strchr(host, ':') != NULL;
  size_t len = strlen(host) + strlen(port) + 4;
  char *s = uvg__malloc(len);
  if (s != NULL) snprintf(s, len, v6 ? "[%s]:%s" : "%s:%s", host, port);
  return s;
}

/* RFC 9110 9.3.6: "CONNECT server.example.com:80 HTTP/1.1", Host the same
 * authority; RFC 7617's Basic credentials when the URL has them. */
static char *connect_request(const char *authority, const char *userpass) {
  char *b64 = NULL;
  size_t n = 0;
  if (userpass != NULL) {
    b64 = uvg__base64_encode((const uint8_t *)userpass, strlen(userpass), &n);
    if (b64 == NULL) return NULL;
  }
  /* uvg__base64_encode() leaves the padding out (gRPC's -bin rule);
   * RFC 7617 uses RFC 4648 base64, which pads. */
  int pad = (int)((4 - n % 4) % 4);
  const char *fmt = "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s%s%.*s%s\r\n";
  const char *field = b64 ? "Proxy-Authorization: Basic " : "";
  const char *end = b64 ? "\r\n" : "";
  const char *cred = b64 ? b64 : "";
  int len =
      snprintf(NULL, 0, fmt, authority, authority, field, cred, pad, "==", end);
  char *req = len > 0 ? uvg__malloc((size_t)len + 1) : NULL;
  if (req != NULL)
    snprintf(req, (size_t)len + 1, fmt, authority, authority, field, cred, pad,
             "==", end);
  uvg__free(b64);
  return req;
}

void uvg__proxy_free(uvg__proxy_t *p) {
  if (p == NULL) return;
  for (size_t i = 0; i < p->ntunnels; i++) uvg__free(p->requests[i]);
  uvg__free(p->requests);
  uvg__free(p->host);
  uvg__free(p->port_str);
  uvg__free(p->name);
  uvg__free(p);
}

static int make_proxy(uvg__proxy_url_t *u, const hop_t *hops, size_t nhops,
                      uvg__proxy_t **out) {
  uvg__proxy_t *p = uvg__calloc(1, sizeof(*p));
  if (p == NULL) return UVG_ENOMEM;
  p->requests = uvg__calloc(nhops, sizeof(*p->requests));
  p->name = join_host_port(u->host, u->port_str);
  p->host = u->host;
  p->port_str = u->port_str;
  u->host = u->port_str = NULL;
  int rc = p->requests != NULL && p->name != NULL ? 0 : UVG_ENOMEM;
  for (size_t i = 0; rc == 0 && i < nhops; i++) {
    char *authority = join_host_port(hops[i].host, hops[i].port);
    if (authority != NULL)
      p->requests[i] = connect_request(authority, u->userpass);
    uvg__free(authority);
    if (p->requests[i] == NULL) rc = UVG_ENOMEM;
    p->ntunnels = i + 1;
  }
  if (rc != 0) {
    uvg__proxy_free(p);
    return rc;
  }
  *out = p;
  return 0;
}

/* 0 if every hop's host can be sent, else UVG_EADDR with `err` set;
 * *excluded counts the hops that skip the proxy. */
static int check_hops(const hop_t *hops, size_t n, const char *no_proxy,
                      int from_env, size_t *excluded, char *err,
                      size_t errlen) {
  *excluded = 0;
  for (size_t i = 0; i < n; i++) {
    for (const char *c = hops[i].host; *c != '\0'; c++) {
      if (!is_host_char(*c)) {
        if (errlen > 0)
          snprintf(err, errlen,
                   "target host \"%.64s\" cannot be named in a CONNECT request",
                   hops[i].host);
        return UVG_EADDR;
      }
    }
    if (uvg__no_proxy_match(no_proxy, hops[i].host) ||
        (from_env && is_loopback(hops[i].host)))
      (*excluded)++;
  }
  return 0;
}

int uvg__proxy_decide(const uvg__target_t *t, const uvg__proxy_env_t *env,
                      uvg__proxy_t **out, char *err, size_t errlen) {
  if (errlen > 0) err[0] = '\0';
  *out = NULL;
  if (env->disabled || t->scheme == UVG__TARGET_UNIX ||
      t->scheme == UVG__TARGET_UNIX_ABSTRACT)
    return 0;
  const char *url = env->option;
  int from_env = url == NULL;
  if (url == NULL) url = env->grpc_proxy;
  if (url == NULL) url = env->https_proxy;
  if (url == NULL) url = env->http_proxy;
  if (url == NULL || url[0] == '\0') return 0;

  uvg__proxy_url_t u;
  int rc = uvg__proxy_url_parse(url, &u, err, errlen);
  if (rc != 0) return rc;
  size_t nhops, excluded = 0;
  hop_t *hops = tunnel_hops(t, &nhops);
  const char *no_proxy =
      env->no_grpc_proxy ? env->no_grpc_proxy : env->no_proxy;
  rc = hops == NULL ? UVG_ENOMEM
                    : check_hops(hops, nhops, no_proxy, from_env, &excluded,
                                 err, errlen);
  /* A list of addresses goes through the proxy unless all of them are
   * excluded: one channel, one way of connecting. */
  if (rc == 0 && excluded < nhops) rc = make_proxy(&u, hops, nhops, out);
  if (rc == UVG_ENOMEM && errlen > 0) snprintf(err, errlen, "out of memory");
  uvg__free(hops);
  uvg__proxy_url_free(&u);
  return rc;
}

int uvg__proxy_setup(const uvg__target_t *t, const char *option, int disabled,
                     uvg__proxy_t **out) {
  uvg__proxy_env_t env = {.option = option, .disabled = disabled};
  char err[160];
  uvg__proxy_env_read(&env);
  int rc = uvg__proxy_decide(t, &env, out, err, sizeof(err));
  if (rc == UVG_EINVAL && option == NULL) {
    /* the name of the variable that was read */
    const char *var = env.grpc_proxy    ? "grpc_proxy"
                      : env.https_proxy ? "https_proxy"
                                        : "http_proxy";
    uvg__log(UVG_LOG_ERROR, "ignoring the proxy in %s: %s; connecting directly",
             var, err);
    return 0;
  }
  if (rc == UVG_EINVAL)
    uvg__log(UVG_LOG_ERROR, "channel option http_proxy: %s", err);
  else if (rc == UVG_EADDR)
    uvg__log(UVG_LOG_WARN, "%s", err);
  else if (rc == 0 && *out != NULL)
    UVG__TRACE(UVG__TRACE_API, "channel: through proxy %s (%s)", (*out)->name,
               option ? "channel option" : "environment");
  return rc;
}

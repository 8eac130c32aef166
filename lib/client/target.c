/* Channel targets, grpc/grpc doc/naming.md: "A fully qualified, self
 * contained name used for gRPC channel construction uses URI syntax as
 * defined in RFC 3986. [...] If no scheme prefix is specified or the scheme
 * is unknown, the dns scheme is used by default."
 *
 * Where naming.md is silent we do what grpc-go (NewClient) and grpc-js do:
 *
 * - An unknown scheme is not an error: the whole target is read as a DNS
 *   name, as grpc-go does by parsing "dns:///" + target and grpc-js by
 *   mapUriDefaultScheme(). "localhost:50051" is thus host "localhost", port
 *   50051. When such a target then fails to parse and looks like a URI
 *   ("xds:///x", "http://host:port"), the message says that the scheme was
 *   not recognized, since that is the likelier mistake.
 * - Schemes compare without regard to case (RFC 3986 3.1; Go's url.Parse
 *   lowercases them).
 * - dns: a port is decimal digits, 0 to 65535 (grpc-js's /^\d+$/; grpc-go
 *   leaves a service name to net.Dial, which we do not follow). "host:" is
 *   an error (grpc-go: "ends with colon"). ":port" means localhost (grpc-go,
 *   "consistent with net.Dial()"), and its authority is "localhost:port".
 *   An unbracketed name with several colons is a bare IPv6 address with no
 *   port ("::1"), and must parse as one (grpc-go: "too many colons");
 *   brackets hold only an IPv6 address (grpc-js's splitHostPort).
 * - The default :authority is the dns endpoint as written (grpc-go's
 *   Target.Endpoint(), grpc-js's DnsResolver.getDefaultAuthority), without
 *   the default port; for ipv4 and ipv6 the first address as written
 *   (grpc-js's IpResolver; grpc-go has no such schemes); for unix and
 *   unix-abstract "localhost" (grpc-go and grpc-js). Characters an
 *   authority may not hold are percent-encoded, as grpc-go's
 *   encodeAuthority() does.
 * - ipv4/ipv6/unix/unix-abstract refuse a non-empty URI authority (gRPC
 *   C++: "authority-based URIs not supported"; grpc-go's unix resolver:
 *   "invalid (non-empty) authority"); "scheme:///x" has an empty one.
 * - An empty element of an ipv4/ipv6 list is an error (grpc-js), not
 *   skipped as gRPC C++ now does: "ipv4:1.2.3.4," is more likely a mistake.
 * - An IPv6 zone must be a numeric interface index: a name would need
 *   if_nametoindex(), a system call this pure parser does not make.
 * - Paths are taken byte for byte: no percent-decoding (grpc-js decodes
 *   nothing; grpc-go decodes "unix:///a%20b" but not "unix:a%20b").
 * - An empty unix path or abstract name is an error.
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#include "client.h"

/* Bytes of the target, not NUL-terminated. */
typedef struct {
  const char *p;
  size_t n;
} span_t;

typedef struct {
  const char *target;
  char *err;
  size_t errlen;
  /* a scheme-like prefix that was not recognized, before a '/' */
  span_t unknown_scheme;
} parser_t;

typedef struct {
  span_t host;
  span_t port;
  int has_port;
  int bracketed;
} host_port_t;

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)
#define DEFAULT_PORT_STR STRINGIFY(UVG__TARGET_DEFAULT_PORT)

#define SUN_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)

static span_t make_span(const char *p, size_t n) {
  span_t s = {p, n};
  return s;
}

static const char *find_byte(span_t s, char c) {
  return s.n > 0 ? memchr(s.p, c, s.n) : NULL;
}

/* Writes 'target "...": ' and the message into the caller's buffer.
 * Returns UVG_EADDR. */
static int fail(parser_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int fail(parser_t *c, const char *fmt, ...) {
  if (c->errlen == 0) return UVG_EADDR;
  int n = snprintf(c->err, c->errlen, "target \"%s\": ", c->target);
  size_t used = n < 0 ? 0 : (size_t)n;
  if (used < c->errlen) {
    va_list ap;
    va_start(ap, fmt);
    n = vsnprintf(c->err + used, c->errlen - used, fmt, ap);
    va_end(ap);
    used += n < 0 ? 0 : (size_t)n;
  }
  if (used < c->errlen && c->unknown_scheme.n > 0)
    snprintf(c->err + used, c->errlen - used,
             " (\"%.*s\" is not a known scheme, so the whole target was read "
             "as a DNS name)",
             (int)c->unknown_scheme.n, c->unknown_scheme.p);
  return UVG_EADDR;
}

static int fail_nomem(parser_t *c) {
  if (c->errlen > 0) snprintf(c->err, c->errlen, "out of memory");
  return UVG_ENOMEM;
}

static int is_alpha(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}
static int is_digit(char ch) {
  return ch >= '0' && ch <= '9';
}

/* RFC 3986 3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ),
 * followed here by ':'. Returns the scheme's length, 0 when there is none. */
static size_t measure_scheme(const char *s) {
  if (!is_alpha(s[0])) return 0;
  size_t i = 1;
  while (is_alpha(s[i]) || is_digit(s[i]) || s[i] == '+' || s[i] == '-' ||
         s[i] == '.')
    i++;
  return s[i] == ':' ? i : 0;
}

size_t uvg__target_scheme_len(const char *target) { return measure_scheme(target); }

static int find_scheme(span_t s, uvg__target_scheme_t *out) {
  static const struct {
    const char *name;
    uvg__target_scheme_t scheme;
  } known[] = {{"dns", UVG__TARGET_DNS},
               {"ipv4", UVG__TARGET_IPV4},
               {"ipv6", UVG__TARGET_IPV6},
               {"unix", UVG__TARGET_UNIX},
               {"unix-abstract", UVG__TARGET_UNIX_ABSTRACT}};
  for (size_t i = 0; i < UVG__ARRAY_SIZE(known); i++) {
    if (strlen(known[i].name) == s.n &&
        strncasecmp(known[i].name, s.p, s.n) == 0) {
      *out = known[i].scheme;
      return 1;
    }
  }
  return 0;
}

/* RFC 3986 3: hier-part = "//" authority path-abempty / path. With "//",
 * `path` starts at the '/' that ends the authority. */
static int split_authority(parser_t *c, span_t rest, span_t *auth,
                           int *has_auth, span_t *path) {
  *has_auth = rest.n >= 2 && rest.p[0] == '/' && rest.p[1] == '/';
  if (!*has_auth) {
    *path = rest;
    return 0;
  }
  span_t after = make_span(rest.p + 2, rest.n - 2);
  const char *slash = find_byte(after, '/');
  if (slash == NULL)
    return fail(c, "missing \"/\" after the authority \"%.*s\"", (int)after.n,
                after.p);
  *auth = make_span(after.p, (size_t)(slash - after.p));
  *path = make_span(slash, after.n - auth->n);
  return 0;
}

/* host[:port] or [host][:port] (RFC 3986 3.2.2 IP-literal). Without
 * brackets, two colons or more mean a bare IPv6 address and no port. */
static int split_host_port(parser_t *c, span_t s, host_port_t *hp) {
  memset(hp, 0, sizeof(*hp));
  if (s.n > 0 && s.p[0] == '[') {
    const char *close = find_byte(s, ']');
    if (close == NULL)
      return fail(c, "missing \"]\" in \"%.*s\"", (int)s.n, s.p);
    hp->bracketed = 1;
    hp->host = make_span(s.p + 1, (size_t)(close - s.p - 1));
    span_t after = make_span(close + 1, s.n - hp->host.n - 2);
    if (after.n == 0) return 0;
    if (after.p[0] != ':')
      return fail(c, "unexpected \"%.*s\" after \"]\" in \"%.*s\"",
                  (int)after.n, after.p, (int)s.n, s.p);
    hp->has_port = 1;
    hp->port = make_span(after.p + 1, after.n - 1);
    return 0;
  }
  const char *colon = find_byte(s, ':');
  if (colon == NULL ||
      find_byte(make_span(colon + 1, s.n - (size_t)(colon + 1 - s.p)), ':')) {
    hp->host = s;
    return 0;
  }
  hp->host = make_span(s.p, (size_t)(colon - s.p));
  hp->has_port = 1;
  hp->port = make_span(colon + 1, s.n - hp->host.n - 1);
  return 0;
}

/* Decimal digits, 0 to 65535. */
static int parse_port(parser_t *c, span_t s, uint16_t *port) {
  if (s.n == 0) return fail(c, "empty port");
  uint32_t v = 0;
  for (size_t i = 0; i < s.n; i++)
    if (!is_digit(s.p[i])) return fail(c, "bad port \"%.*s\"", (int)s.n, s.p);
  for (size_t i = 0; i < s.n; i++) {
    v = v * 10 + (uint32_t)(s.p[i] - '0');
    if (v > 65535)
      return fail(c, "port %.*s is out of range (0 to 65535)", (int)s.n, s.p);
  }
  *port = (uint16_t)v;
  return 0;
}

/* Copies `s` into buf (NUL-terminated); 0 when it does not fit. */
static int copy_span(char *buf, size_t size, span_t s) {
  if (s.n >= size) return 0;
  memcpy(buf, s.p, s.n);
  buf[s.n] = '\0';
  return 1;
}

/* An IPv6 address, with an optional "%zone" (RFC 4007 11.2). With `sin6`
 * NULL the zone may be any non-empty text (a name for getaddrinfo);
 * otherwise it must be a numeric interface index, stored as the scope id.
 * Returns 1 if the address parses. */
static int parse_ipv6(span_t s, struct sockaddr_in6 *sin6) {
  char buf[INET6_ADDRSTRLEN];
  struct in6_addr a;
  const char *pct = find_byte(s, '%');
  span_t addr = make_span(s.p, pct ? (size_t)(pct - s.p) : s.n);
  if (!copy_span(buf, sizeof(buf), addr) || inet_pton(AF_INET6, buf, &a) != 1)
    return 0;
  uint32_t scope = 0;
  if (pct != NULL) {
    span_t zone = make_span(pct + 1, s.n - addr.n - 1);
    if (zone.n == 0) return 0;
    if (sin6 != NULL) {
      if (zone.n > 10) return 0;
      uint64_t v = 0;
      for (size_t i = 0; i < zone.n; i++) {
        if (!is_digit(zone.p[i])) return 0;
        v = v * 10 + (uint64_t)(zone.p[i] - '0');
      }
      if (v > UINT32_MAX) return 0;
      scope = (uint32_t)v;
    }
  }
  if (sin6 != NULL) {
    memset(sin6, 0, sizeof(*sin6));
    sin6->sin6_family = AF_INET6;
    sin6->sin6_addr = a;
    sin6->sin6_scope_id = scope;
  }
  return 1;
}

/* RFC 3986 3.2: the characters an authority holds as they are
 * (unreserved, sub-delims, and ":" "[" "]" "@"). */
static int is_authority_char(unsigned char ch) {
  if (is_alpha((char)ch) || is_digit((char)ch)) return 1;
  return ch != '\0' && strchr("-._~!$&'()*+,;=:[]@", ch) != NULL;
}

/* Returns an allocated `prefix` + `s` with the characters an authority may
 * not hold percent-encoded, or NULL. */
static char *encode_authority(const char *prefix, span_t s) {
  size_t plen = strlen(prefix), n = plen;
  for (size_t i = 0; i < s.n; i++)
    n += is_authority_char((unsigned char)s.p[i]) ? 1 : 3;
  char *out = uvg__malloc(n + 1), *o = out;
  if (out == NULL) return NULL;
  memcpy(o, prefix, plen);
  o += plen;
  for (size_t i = 0; i < s.n; i++) {
    unsigned char ch = (unsigned char)s.p[i];
    if (is_authority_char(ch)) {
      *o++ = (char)ch;
    } else {
      *o++ = '%';
      *o++ = "0123456789ABCDEF"[ch >> 4];
      *o++ = "0123456789ABCDEF"[ch & 15];
    }
  }
  *o = '\0';
  return out;
}

char *uvg__authority_encode(const char *s) {
  return encode_authority("", make_span(s, strlen(s)));
}

/* dns:[//authority/]host[:port] */
static int parse_dns(parser_t *c, uvg__target_t *t, span_t auth, int has_auth,
                     span_t endpoint) {
  host_port_t hp;
  int err;
  if (endpoint.n == 0) return fail(c, "empty host");
  if ((err = split_host_port(c, endpoint, &hp)) != 0) return err;
  uint16_t port = UVG__TARGET_DEFAULT_PORT;
  if (hp.has_port && (err = parse_port(c, hp.port, &port)) != 0) return err;
  if (hp.bracketed && !parse_ipv6(hp.host, NULL))
    return fail(c, "bad IPv6 address \"%.*s\" (brackets hold only one)",
                (int)hp.host.n, hp.host.p);
  if (!hp.bracketed && !hp.has_port && find_byte(hp.host, ':') &&
      !parse_ipv6(hp.host, NULL))
    return fail(c,
                "too many colons in \"%.*s\" (an IPv6 address with a port "
                "goes in brackets)",
                (int)hp.host.n, hp.host.p);
  int localhost = hp.host.n == 0;
  t->port = port;
  if (has_auth && auth.n > 0 &&
      (t->dns_authority = uvg__strndup(auth.p, auth.n)) == NULL)
    return fail_nomem(c);
  t->host =
      localhost ? uvg__strdup("localhost") : uvg__strndup(hp.host.p, hp.host.n);
  if (t->host == NULL) return fail_nomem(c);
  t->port_str = hp.has_port ? uvg__strndup(hp.port.p, hp.port.n)
                            : uvg__strdup(DEFAULT_PORT_STR);
  if (t->port_str == NULL) return fail_nomem(c);
  t->default_authority =
      encode_authority(localhost ? "localhost" : "", endpoint);
  return t->default_authority != NULL ? 0 : fail_nomem(c);
}

/* One address of an ipv4/ipv6 list, port included, into `ss`. Returns 0 or
 * UVG_EADDR. */
static int parse_ip_element(parser_t *c, uvg__target_scheme_t scheme, span_t e,
                            struct sockaddr_storage *ss) {
  host_port_t hp;
  int err;
  uint16_t port = UVG__TARGET_DEFAULT_PORT;
  if (scheme == UVG__TARGET_IPV6) {
    /* naming.md: "To use with a port the address must [be] enclosed in literal
     * square brackets"; without them the element is all address. */
    if (e.p[0] == '[') {
      if ((err = split_host_port(c, e, &hp)) != 0) return err;
    } else {
      memset(&hp, 0, sizeof(hp));
      hp.host = e;
    }
    if (hp.has_port && (err = parse_port(c, hp.port, &port)) != 0) return err;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    if (!parse_ipv6(hp.host, sin6)) {
      if (find_byte(hp.host, '%') && parse_ipv6(hp.host, NULL))
        return fail(c, "zone of \"%.*s\" is not a numeric interface index",
                    (int)hp.host.n, hp.host.p);
      return fail(c, "bad IPv6 address \"%.*s\"", (int)hp.host.n, hp.host.p);
    }
    sin6->sin6_port = htons(port);
    return 0;
  }
  if ((err = split_host_port(c, e, &hp)) != 0) return err;
  if (hp.has_port && (err = parse_port(c, hp.port, &port)) != 0) return err;
  char buf[INET_ADDRSTRLEN];
  struct sockaddr_in *sin = (struct sockaddr_in *)ss;
  memset(sin, 0, sizeof(*sin));
  if (hp.bracketed || !copy_span(buf, sizeof(buf), hp.host) ||
      inet_pton(AF_INET, buf, &sin->sin_addr) != 1) {
    span_t shown = hp.bracketed ? e : hp.host;
    return fail(c, "bad IPv4 address \"%.*s\"", (int)shown.n, shown.p);
  }
  sin->sin_family = AF_INET;
  sin->sin_port = htons(port);
  return 0;
}

/* ipv4:address[:port][,address[:port],...], ipv6 alike. */
static int parse_ip(parser_t *c, uvg__target_t *t, span_t list) {
  const char *name = t->scheme == UVG__TARGET_IPV4 ? "IPv4" : "IPv6";
  if (list.n == 0) return fail(c, "no %s address", name);
  size_t n = 1;
  for (size_t i = 0; i < list.n; i++) n += list.p[i] == ',';
  t->addrs = uvg__calloc(n, sizeof(*t->addrs));
  if (t->addrs == NULL) return fail_nomem(c);
  span_t first = {NULL, 0};
  const char *p = list.p, *end = list.p + list.n;
  for (size_t i = 0; i < n; i++) {
    const char *comma = memchr(p, ',', (size_t)(end - p));
    span_t e = make_span(p, (size_t)((comma ? comma : end) - p));
    if (e.n == 0) return fail(c, "empty %s address in the list", name);
    int err = parse_ip_element(c, t->scheme, e, &t->addrs[i]);
    if (err != 0) return err;
    if (i == 0) first = e;
    p = e.p + e.n + 1;
  }
  t->naddrs = n;
  t->default_authority = encode_authority("", first);
  return t->default_authority != NULL ? 0 : fail_nomem(c);
}

/* unix:path, unix:///absolute_path, unix-abstract:name */
static int parse_unix(parser_t *c, uvg__target_t *t, span_t path) {
  int abstract = t->scheme == UVG__TARGET_UNIX_ABSTRACT;
  if (path.n == 0) return fail(c, abstract ? "empty name" : "empty path");
  /* sun_path ends in a NUL for a path; an abstract name begins with one. */
  if (path.n > SUN_PATH_MAX)
    return fail(c,
                "%s is %zu bytes, more than the %zu of a unix socket "
                "address",
                abstract ? "name" : "path", path.n, (size_t)SUN_PATH_MAX);
  if ((t->path = uvg__strndup(path.p, path.n)) == NULL) return fail_nomem(c);
  t->path_len = path.n;
  t->default_authority = uvg__strdup("localhost");
  return t->default_authority != NULL ? 0 : fail_nomem(c);
}

static int parse_target(parser_t *c, uvg__target_t *t) {
  const char *s = c->target;
  size_t len = strlen(s);
  if (len == 0) return fail(c, "empty target");
  size_t slen = measure_scheme(s);
  span_t rest = make_span(s, len);
  t->scheme = UVG__TARGET_DNS;
  if (slen > 0) {
    if (find_scheme(make_span(s, slen), &t->scheme))
      rest = make_span(s + slen + 1, len - slen - 1);
    else if (s[slen + 1] == '/') /* "xds:///x", "http://x": URI-like */
      c->unknown_scheme = make_span(s, slen);
  }
  if (rest.p == s) return parse_dns(c, t, rest, 0, rest);

  span_t auth = {NULL, 0}, path;
  int has_auth, err;
  if ((err = split_authority(c, rest, &auth, &has_auth, &path)) != 0)
    return err;
  switch (t->scheme) {
    case UVG__TARGET_DNS:
      /* the endpoint follows the '/' that ends the authority */
      if (has_auth) path = make_span(path.p + 1, path.n - 1);
      return parse_dns(c, t, auth, has_auth, path);
    case UVG__TARGET_IPV4:
    case UVG__TARGET_IPV6:
      if (has_auth && auth.n > 0)
        return fail(c, "the %s scheme takes no authority (\"%.*s\")",
                    t->scheme == UVG__TARGET_IPV4 ? "ipv4" : "ipv6",
                    (int)auth.n, auth.p);
      if (has_auth) path = make_span(path.p + 1, path.n - 1);
      return parse_ip(c, t, path);
    case UVG__TARGET_UNIX:
    case UVG__TARGET_UNIX_ABSTRACT:
      /* naming.md: "unix://absolute_path [...] there will actually be
       * three slashes"; the third begins the path. */
      if (has_auth && auth.n > 0)
        return fail(c,
                    "the %s scheme takes no authority (\"%.*s\"); an "
                    "absolute path takes three slashes: %s:///path",
                    t->scheme == UVG__TARGET_UNIX ? "unix" : "unix-abstract",
                    (int)auth.n, auth.p,
                    t->scheme == UVG__TARGET_UNIX ? "unix" : "unix-abstract");
      return parse_unix(c, t, path);
  }
  return fail(c, "unknown scheme"); /* not reached */
}

int uvg__target_parse(const char *target, uvg__target_t *out, char *err,
                      size_t errlen) {
  if (errlen > 0) err[0] = '\0';
  if (out != NULL) memset(out, 0, sizeof(*out));
  if (target == NULL || out == NULL) {
    if (errlen > 0) snprintf(err, errlen, "no target");
    return UVG_EINVAL;
  }
  parser_t c = {.target = target, .err = err, .errlen = errlen};
  int rc = parse_target(&c, out);
  if (rc != 0) uvg__target_free(out);
  return rc;
}

void uvg__target_free(uvg__target_t *t) {
  uvg__free(t->default_authority);
  uvg__free(t->dns_authority);
  uvg__free(t->host);
  uvg__free(t->port_str);
  uvg__free(t->addrs);
  uvg__free(t->path);
  memset(t, 0, sizeof(*t));
}

/* Channel targets (grpc/grpc doc/naming.md): dns:[//authority/]host[:port]
 * and bare host[:port], ipv4: and ipv6: address lists, unix:path,
 * unix:///absolute_path and unix-abstract:name; the default :authority of
 * each; the message each malformed target gets. */
#include <arpa/inet.h>
#include <stdint.h>
#include <sys/un.h>

#include "client/client.h"
#include "test.h"

static char err[256];

/* Parses `s`, which must succeed; the caller frees *t. */
static int parse_ok(const char *s, uvg__target_t *t) {
  int rc = uvg__target_parse(s, t, err, sizeof(err));
  if (rc != 0) fprintf(stderr, "  %s: %d %s\n", s, rc, err);
  return rc == 0 && err[0] == '\0';
}

/* A dns target: host, port, the port as a string, the default authority
 * and the DNS server (NULL for none). */
#define CHECK_DNS(s, h, p, ps, auth, server)                      \
  do {                                                            \
    uvg__target_t t_;                                             \
    CHECK(parse_ok((s), &t_));                                    \
    CHECK_EQ(t_.scheme, UVG__TARGET_DNS);                         \
    CHECK_STR(t_.host, (h));                                      \
    CHECK_EQ(t_.port, (p));                                       \
    CHECK_STR(t_.port_str, (ps));                                 \
    CHECK_STR(t_.default_authority, (auth));                      \
    if ((server) == NULL)                                         \
      CHECK(t_.dns_authority == NULL);                            \
    else                                                          \
      CHECK_STR(t_.dns_authority, (const char *)(server));        \
    CHECK(t_.addrs == NULL && t_.naddrs == 0 && t_.path == NULL); \
    uvg__target_free(&t_);                                        \
  } while (0)

/* A target that must fail with UVG_EADDR and exactly message `msg`. */
#define CHECK_FAIL(s, msg)                                              \
  do {                                                                  \
    uvg__target_t t_;                                                   \
    memset(&t_, 0xab, sizeof(t_));                                      \
    CHECK_EQ(uvg__target_parse((s), &t_, err, sizeof(err)), UVG_EADDR); \
    CHECK_STR(err, (msg));                                              \
    CHECK(t_.default_authority == NULL && t_.host == NULL &&            \
          t_.port_str == NULL && t_.dns_authority == NULL &&            \
          t_.addrs == NULL && t_.naddrs == 0 && t_.path == NULL);       \
    uvg__target_free(&t_);                                              \
  } while (0)

/* "1.2.3.4:80" or "[::1]:80" for an address of the list. */
static const char *addr_str(const struct sockaddr_storage *ss) {
  static char buf[INET6_ADDRSTRLEN + 32];
  char a[INET6_ADDRSTRLEN];
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
    inet_ntop(AF_INET, &in->sin_addr, a, sizeof(a));
    snprintf(buf, sizeof(buf), "%s:%u", a, ntohs(in->sin_port));
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
    inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof(a));
    if (in6->sin6_scope_id != 0)
      snprintf(buf, sizeof(buf), "[%s%%%u]:%u", a, in6->sin6_scope_id,
               ntohs(in6->sin6_port));
    else
      snprintf(buf, sizeof(buf), "[%s]:%u", a, ntohs(in6->sin6_port));
  } else {
    snprintf(buf, sizeof(buf), "family %d", ss->ss_family);
  }
  return buf;
}

/* ---- dns ---- */

/* No scheme: the target is host[:port] and the port defaults to 443. */
static void test_dns_bare(void) {
  CHECK_DNS("localhost", "localhost", 443, "443", "localhost", NULL);
  CHECK_DNS("localhost:50051", "localhost", 50051, "50051", "localhost:50051",
            NULL);
  CHECK_DNS("grpc.example.com:443", "grpc.example.com", 443, "443",
            "grpc.example.com:443", NULL);
  CHECK_DNS("127.0.0.1:50051", "127.0.0.1", 50051, "50051", "127.0.0.1:50051",
            NULL);
  CHECK_DNS("127.0.0.1", "127.0.0.1", 443, "443", "127.0.0.1", NULL);
  CHECK_DNS("a", "a", 443, "443", "a", NULL);
  /* Port edges; a port keeps its digits as written. */
  CHECK_DNS("h:0", "h", 0, "0", "h:0", NULL);
  CHECK_DNS("h:65535", "h", 65535, "65535", "h:65535", NULL);
  CHECK_DNS("h:0080", "h", 80, "0080", "h:0080", NULL);
  CHECK_DNS("h:0000000000065535", "h", 65535, "0000000000065535",
            "h:0000000000065535", NULL);
}

static void test_dns_scheme(void) {
  CHECK_DNS("dns:example.com", "example.com", 443, "443", "example.com", NULL);
  CHECK_DNS("dns:example.com:8080", "example.com", 8080, "8080",
            "example.com:8080", NULL);
  CHECK_DNS("dns:///example.com:8080", "example.com", 8080, "8080",
            "example.com:8080", NULL);
  CHECK_DNS("dns:///example.com", "example.com", 443, "443", "example.com",
            NULL);
  /* The URI authority names the DNS server, not the :authority. */
  CHECK_DNS("dns://8.8.8.8:53/example.com:8080", "example.com", 8080, "8080",
            "example.com:8080", "8.8.8.8:53");
  CHECK_DNS("dns://ns.example/example.com", "example.com", 443, "443",
            "example.com", "ns.example");
  /* Schemes are case-insensitive (RFC 3986 3.1). */
  CHECK_DNS("DNS:///example.com", "example.com", 443, "443", "example.com",
            NULL);
  CHECK_DNS("Dns:h:1", "h", 1, "1", "h:1", NULL);
}

/* IPv6 literals: in brackets with or without a port; bare without one. */
static void test_dns_ipv6(void) {
  CHECK_DNS("[::1]:50051", "::1", 50051, "50051", "[::1]:50051", NULL);
  CHECK_DNS("[::1]", "::1", 443, "443", "[::1]", NULL);
  CHECK_DNS("dns:///[2001:db8::1]:8443", "2001:db8::1", 8443, "8443",
            "[2001:db8::1]:8443", NULL);
  CHECK_DNS("dns:[::ffff:127.0.0.1]:1", "::ffff:127.0.0.1", 1, "1",
            "[::ffff:127.0.0.1]:1", NULL);
  CHECK_DNS("::1", "::1", 443, "443", "::1", NULL);
  CHECK_DNS("dns:///2001:db8::2", "2001:db8::2", 443, "443", "2001:db8::2",
            NULL);
  /* A bare address that ends like a port is all address (naming.md: with
   * a port, "the address must [be] enclosed in literal square brackets"). */
  CHECK_DNS("::1:80", "::1:80", 443, "443", "::1:80", NULL);
  /* A zone may be an interface name here (getaddrinfo takes it); '%' is
   * percent-encoded in the authority. */
  CHECK_DNS("[fe80::1%eth0]:80", "fe80::1%eth0", 80, "80",
            "[fe80::1%25eth0]:80", NULL);
}

/* grpc-go: ":port" is localhost, as for net.Dial. */
static void test_dns_empty_host_with_port(void) {
  CHECK_DNS(":50051", "localhost", 50051, "50051", "localhost:50051", NULL);
  CHECK_DNS("dns:///:8080", "localhost", 8080, "8080", "localhost:8080", NULL);
  CHECK_DNS("dns::1", "localhost", 1, "1", "localhost:1", NULL);
}

/* An unknown scheme is not an error: the whole target is a DNS name. */
static void test_dns_unknown_scheme(void) {
  CHECK_DNS("localhost:50051", "localhost", 50051, "50051", "localhost:50051",
            NULL);
  CHECK_DNS("my-host.internal:7", "my-host.internal", 7, "7",
            "my-host.internal:7", NULL);
  CHECK_DNS("dnsx:1", "dnsx", 1, "1", "dnsx:1", NULL);
  CHECK_DNS("unix2:9", "unix2", 9, "9", "unix2:9", NULL);
  CHECK_FAIL("xds:///service",
             "target \"xds:///service\": bad port \"///service\" (\"xds\" is "
             "not a known scheme, so the whole target was read as a DNS "
             "name)");
  CHECK_FAIL("http://localhost:50051",
             "target \"http://localhost:50051\": too many colons in "
             "\"http://localhost:50051\" (an IPv6 address with a port goes "
             "in brackets) (\"http\" is not a known scheme, so the whole "
             "target was read as a DNS name)");
  /* No URI-like '/' after the colon: a host:port, said plainly. */
  CHECK_FAIL("foo:bar", "target \"foo:bar\": bad port \"bar\"");
}

/* Characters an authority does not hold are percent-encoded. */
static void test_dns_authority_encoding(void) {
  CHECK_DNS("my host:1", "my host", 1, "1", "my%20host:1", NULL);
  CHECK_DNS("h\x7f\xc3\xa9:2", "h\x7f\xc3\xa9", 2, "2", "h%7F%C3%A9:2", NULL);
  CHECK_DNS("a-b_c.d~e!$&'()*+,;=@f:3", "a-b_c.d~e!$&'()*+,;=@f", 3, "3",
            "a-b_c.d~e!$&'()*+,;=@f:3", NULL);
  CHECK_DNS("dns:///x/y", "x/y", 443, "443", "x%2Fy", NULL);
}

static void test_dns_errors(void) {
  CHECK_FAIL("", "target \"\": empty target");
  CHECK_FAIL("dns:", "target \"dns:\": empty host");
  CHECK_FAIL("dns:///", "target \"dns:///\": empty host");
  CHECK_FAIL("dns://8.8.8.8/", "target \"dns://8.8.8.8/\": empty host");
  CHECK_FAIL("dns://8.8.8.8",
             "target \"dns://8.8.8.8\": missing \"/\" after the authority "
             "\"8.8.8.8\"");
  CHECK_FAIL("dns://localhost:50051",
             "target \"dns://localhost:50051\": missing \"/\" after the "
             "authority \"localhost:50051\"");
  CHECK_FAIL("host:", "target \"host:\": empty port");
  CHECK_FAIL(":", "target \":\": empty port");
  CHECK_FAIL("[::1]:", "target \"[::1]:\": empty port");
  CHECK_FAIL("host:65536",
             "target \"host:65536\": port 65536 is out of range (0 to 65535)");
  CHECK_FAIL("host:99999999999999999999",
             "target \"host:99999999999999999999\": port 99999999999999999999 "
             "is out of range (0 to 65535)");
  CHECK_FAIL("host:-1", "target \"host:-1\": bad port \"-1\"");
  CHECK_FAIL("host:+80", "target \"host:+80\": bad port \"+80\"");
  CHECK_FAIL("host: 80", "target \"host: 80\": bad port \" 80\"");
  CHECK_FAIL("host:80 ", "target \"host:80 \": bad port \"80 \"");
  CHECK_FAIL("host:http", "target \"host:http\": bad port \"http\"");
  CHECK_FAIL("host:0x50", "target \"host:0x50\": bad port \"0x50\"");
  CHECK_FAIL("localhost:50051/",
             "target \"localhost:50051/\": bad port \"50051/\"");
  CHECK_FAIL("a:b:c",
             "target \"a:b:c\": too many colons in \"a:b:c\" (an IPv6 "
             "address with a port goes in brackets)");
  CHECK_FAIL("dns:///1.2.3.4:80:90",
             "target \"dns:///1.2.3.4:80:90\": too many colons in "
             "\"1.2.3.4:80:90\" (an IPv6 address with a port goes in "
             "brackets)");
  CHECK_FAIL("[::1", "target \"[::1\": missing \"]\" in \"[::1\"");
  CHECK_FAIL("[::1]80",
             "target \"[::1]80\": unexpected \"80\" after \"]\" in "
             "\"[::1]80\"");
  CHECK_FAIL("[localhost]:80",
             "target \"[localhost]:80\": bad IPv6 address \"localhost\" "
             "(brackets hold only one)");
  CHECK_FAIL("[1.2.3.4]",
             "target \"[1.2.3.4]\": bad IPv6 address \"1.2.3.4\" (brackets "
             "hold only one)");
  CHECK_FAIL("[]:80",
             "target \"[]:80\": bad IPv6 address \"\" (brackets hold only "
             "one)");
  CHECK_FAIL("[fe80::1%]:80",
             "target \"[fe80::1%]:80\": bad IPv6 address \"fe80::1%\" "
             "(brackets hold only one)");
}

/* ---- ipv4 / ipv6 ---- */

static void test_ipv4(void) {
  uvg__target_t t;
  CHECK(parse_ok("ipv4:127.0.0.1", &t));
  CHECK_EQ(t.scheme, UVG__TARGET_IPV4);
  CHECK_EQ(t.naddrs, 1);
  CHECK_STR(addr_str(&t.addrs[0]), "127.0.0.1:443");
  CHECK_STR(t.default_authority, "127.0.0.1");
  CHECK(t.host == NULL && t.port_str == NULL && t.path == NULL);
  uvg__target_free(&t);

  CHECK(parse_ok("ipv4:127.0.0.1:50051,10.0.0.2,192.168.1.1:80", &t));
  CHECK_EQ(t.naddrs, 3);
  CHECK_STR(addr_str(&t.addrs[0]), "127.0.0.1:50051");
  CHECK_STR(addr_str(&t.addrs[1]), "10.0.0.2:443");
  CHECK_STR(addr_str(&t.addrs[2]), "192.168.1.1:80");
  CHECK_STR(t.default_authority, "127.0.0.1:50051"); /* the first address */
  uvg__target_free(&t);

  CHECK(parse_ok("ipv4:///0.0.0.0:0", &t)); /* an empty URI authority */
  CHECK_EQ(t.naddrs, 1);
  CHECK_STR(addr_str(&t.addrs[0]), "0.0.0.0:0");
  CHECK_STR(t.default_authority, "0.0.0.0:0");
  uvg__target_free(&t);

  CHECK(parse_ok("IPV4:255.255.255.255:65535", &t));
  CHECK_STR(addr_str(&t.addrs[0]), "255.255.255.255:65535");
  uvg__target_free(&t);
}

static void test_ipv4_errors(void) {
  CHECK_FAIL("ipv4:1.2.3", "target \"ipv4:1.2.3\": bad IPv4 address \"1.2.3\"");
  CHECK_FAIL("ipv4:", "target \"ipv4:\": no IPv4 address");
  CHECK_FAIL("ipv4:///", "target \"ipv4:///\": no IPv4 address");
  CHECK_FAIL("ipv4:1.2.3.4,",
             "target \"ipv4:1.2.3.4,\": empty IPv4 address in the list");
  CHECK_FAIL("ipv4:,1.2.3.4",
             "target \"ipv4:,1.2.3.4\": empty IPv4 address in the list");
  CHECK_FAIL("ipv4:1.2.3.4,,5.6.7.8",
             "target \"ipv4:1.2.3.4,,5.6.7.8\": empty IPv4 address in the "
             "list");
  CHECK_FAIL("ipv4:1.2.3.4,5.6.7",
             "target \"ipv4:1.2.3.4,5.6.7\": bad IPv4 address \"5.6.7\"");
  CHECK_FAIL("ipv4:256.1.1.1",
             "target \"ipv4:256.1.1.1\": bad IPv4 address \"256.1.1.1\"");
  CHECK_FAIL("ipv4:localhost:80",
             "target \"ipv4:localhost:80\": bad IPv4 address \"localhost\"");
  CHECK_FAIL("ipv4:1.2.3.4.5",
             "target \"ipv4:1.2.3.4.5\": bad IPv4 address \"1.2.3.4.5\"");
  CHECK_FAIL("ipv4:1.2.3.4:70000",
             "target \"ipv4:1.2.3.4:70000\": port 70000 is out of range (0 "
             "to 65535)");
  CHECK_FAIL("ipv4:1.2.3.4:", "target \"ipv4:1.2.3.4:\": empty port");
  CHECK_FAIL("ipv4:1.2.3.4:x", "target \"ipv4:1.2.3.4:x\": bad port \"x\"");
  CHECK_FAIL("ipv4:::1", "target \"ipv4:::1\": bad IPv4 address \"::1\"");
  CHECK_FAIL("ipv4:[1.2.3.4]:80",
             "target \"ipv4:[1.2.3.4]:80\": bad IPv4 address "
             "\"[1.2.3.4]:80\"");
  CHECK_FAIL("ipv4:1.2.3.4:80:90",
             "target \"ipv4:1.2.3.4:80:90\": bad IPv4 address "
             "\"1.2.3.4:80:90\"");
  CHECK_FAIL("ipv4:1111111111111111111111.2.3.4",
             "target \"ipv4:1111111111111111111111.2.3.4\": bad IPv4 address "
             "\"1111111111111111111111.2.3.4\"");
  CHECK_FAIL("ipv4://host/1.2.3.4",
             "target \"ipv4://host/1.2.3.4\": the ipv4 scheme takes no "
             "authority (\"host\")");
}

static void test_ipv6(void) {
  uvg__target_t t;
  CHECK(parse_ok("ipv6:[::1]:50051", &t));
  CHECK_EQ(t.scheme, UVG__TARGET_IPV6);
  CHECK_EQ(t.naddrs, 1);
  CHECK_STR(addr_str(&t.addrs[0]), "[::1]:50051");
  CHECK_STR(t.default_authority, "[::1]:50051");
  uvg__target_free(&t);

  CHECK(parse_ok("ipv6:::1", &t)); /* no brackets, no port */
  CHECK_STR(addr_str(&t.addrs[0]), "[::1]:443");
  CHECK_STR(t.default_authority, "::1");
  uvg__target_free(&t);

  CHECK(parse_ok("ipv6:[::1]", &t));
  CHECK_STR(addr_str(&t.addrs[0]), "[::1]:443");
  CHECK_STR(t.default_authority, "[::1]");
  uvg__target_free(&t);

  CHECK(parse_ok("ipv6:[2001:db8::1]:443,[::]:1234,fe80::2", &t));
  CHECK_EQ(t.naddrs, 3);
  CHECK_STR(addr_str(&t.addrs[0]), "[2001:db8::1]:443");
  CHECK_STR(addr_str(&t.addrs[1]), "[::]:1234");
  CHECK_STR(addr_str(&t.addrs[2]), "[fe80::2]:443");
  CHECK_STR(t.default_authority, "[2001:db8::1]:443");
  uvg__target_free(&t);

  /* Without brackets everything is address: "::1:80" is one. */
  CHECK(parse_ok("ipv6:::1:80", &t));
  struct in6_addr want;
  CHECK_EQ(inet_pton(AF_INET6, "::1:80", &want), 1);
  const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&t.addrs[0];
  CHECK(memcmp(&in6->sin6_addr, &want, sizeof(want)) == 0);
  CHECK_EQ(ntohs(in6->sin6_port), 443);
  uvg__target_free(&t);

  /* A numeric zone is the scope id; '%' is encoded in the authority. */
  CHECK(parse_ok("ipv6:///[fe80::1%2]:80,fe80::3%4294967295", &t));
  CHECK_EQ(t.naddrs, 2);
  CHECK_STR(addr_str(&t.addrs[0]), "[fe80::1%2]:80");
  CHECK_STR(addr_str(&t.addrs[1]), "[fe80::3%4294967295]:443");
  CHECK_STR(t.default_authority, "[fe80::1%252]:80");
  uvg__target_free(&t);

  CHECK(parse_ok("ipv6:[::ffff:10.0.0.1]:9", &t));
  CHECK_STR(addr_str(&t.addrs[0]), "[::ffff:10.0.0.1]:9");
  uvg__target_free(&t);
}

static void test_ipv6_errors(void) {
  CHECK_FAIL("ipv6:", "target \"ipv6:\": no IPv6 address");
  CHECK_FAIL("ipv6:[::1", "target \"ipv6:[::1\": missing \"]\" in \"[::1\"");
  CHECK_FAIL("ipv6:[::1]x",
             "target \"ipv6:[::1]x\": unexpected \"x\" after \"]\" in "
             "\"[::1]x\"");
  CHECK_FAIL("ipv6:[::1]:", "target \"ipv6:[::1]:\": empty port");
  CHECK_FAIL("ipv6:[::1]:65536",
             "target \"ipv6:[::1]:65536\": port 65536 is out of range (0 to "
             "65535)");
  CHECK_FAIL("ipv6:1.2.3.4",
             "target \"ipv6:1.2.3.4\": bad IPv6 address \"1.2.3.4\"");
  CHECK_FAIL("ipv6:[1.2.3.4]:80",
             "target \"ipv6:[1.2.3.4]:80\": bad IPv6 address \"1.2.3.4\"");
  CHECK_FAIL("ipv6:[]:80", "target \"ipv6:[]:80\": bad IPv6 address \"\"");
  CHECK_FAIL("ipv6:::1,",
             "target \"ipv6:::1,\": empty IPv6 address in the "
             "list");
  CHECK_FAIL("ipv6:[::1]:80,[::2",
             "target \"ipv6:[::1]:80,[::2\": missing \"]\" in \"[::2\"");
  CHECK_FAIL("ipv6:[fe80::1%eth0]:80",
             "target \"ipv6:[fe80::1%eth0]:80\": zone of \"fe80::1%eth0\" is "
             "not a numeric interface index");
  CHECK_FAIL("ipv6:fe80::1%4294967296",
             "target \"ipv6:fe80::1%4294967296\": zone of "
             "\"fe80::1%4294967296\" is not a numeric interface index");
  CHECK_FAIL("ipv6:fe80::1%",
             "target \"ipv6:fe80::1%\": bad IPv6 address \"fe80::1%\"");
  CHECK_FAIL("ipv6:1:2:3:4:5:6:7:8:9",
             "target \"ipv6:1:2:3:4:5:6:7:8:9\": bad IPv6 address "
             "\"1:2:3:4:5:6:7:8:9\"");
  CHECK_FAIL("ipv6://h/::1",
             "target \"ipv6://h/::1\": the ipv6 scheme takes no authority "
             "(\"h\")");
}

/* ---- unix, unix-abstract ---- */

static void check_unix(const char *s, uvg__target_scheme_t scheme,
                       const char *path) {
  uvg__target_t t;
  CHECK(parse_ok(s, &t));
  CHECK_EQ(t.scheme, scheme);
  CHECK_STR(t.path, path);
  CHECK_EQ(t.path_len, strlen(path));
  CHECK_STR(t.default_authority, "localhost");
  CHECK(t.host == NULL && t.addrs == NULL && t.dns_authority == NULL);
  uvg__target_free(&t);
}

static void test_unix(void) {
  check_unix("unix:/tmp/s.sock", UVG__TARGET_UNIX, "/tmp/s.sock");
  check_unix("unix:relative/s.sock", UVG__TARGET_UNIX, "relative/s.sock");
  check_unix("unix:s", UVG__TARGET_UNIX, "s");
  check_unix("unix:///tmp/s.sock", UVG__TARGET_UNIX, "/tmp/s.sock");
  check_unix("UNIX:/x", UVG__TARGET_UNIX, "/x");
  /* Bytes as they are: no percent-decoding, ':' and ',' are path. */
  check_unix("unix:/tmp/a%20b:1,2", UVG__TARGET_UNIX, "/tmp/a%20b:1,2");
  check_unix("unix-abstract:name", UVG__TARGET_UNIX_ABSTRACT, "name");
  check_unix("unix-abstract:a b\x01\xff:/%", UVG__TARGET_UNIX_ABSTRACT,
             "a b\x01\xff:/%");
  check_unix("unix-abstract:///x", UVG__TARGET_UNIX_ABSTRACT, "/x");
}

/* sun_path holds 107 bytes of path (and its NUL), or a NUL and 107 bytes
 * of abstract name. */
static void test_unix_length(void) {
  enum { MAX = sizeof(((struct sockaddr_un *)0)->sun_path) - 1 };
  char target[16 + MAX + 2], path[MAX + 2], want[256];
  memset(path, 'p', MAX);
  path[0] = '/';
  path[MAX] = '\0';
  snprintf(target, sizeof(target), "unix:%s", path);
  check_unix(target, UVG__TARGET_UNIX, path);
  snprintf(target, sizeof(target), "unix:///%s", path + 1);
  check_unix(target, UVG__TARGET_UNIX, path);
  snprintf(target, sizeof(target), "unix-abstract:%s", path);
  check_unix(target, UVG__TARGET_UNIX_ABSTRACT, path);

  path[MAX] = 'p';
  path[MAX + 1] = '\0';
  snprintf(target, sizeof(target), "unix:%s", path);
  snprintf(want, sizeof(want), "target \"%.30s",
           target); /* the message is truncated below */
  uvg__target_t t;
  char big[512];
  CHECK_EQ(uvg__target_parse(target, &t, big, sizeof(big)), UVG_EADDR);
  char tail[128];
  snprintf(tail, sizeof(tail),
           "\": path is %d bytes, more than the %d of a unix socket address",
           MAX + 1, MAX);
  CHECK(strncmp(big, want, strlen(want)) == 0);
  CHECK(strlen(big) > strlen(tail) &&
        strcmp(big + strlen(big) - strlen(tail), tail) == 0);
  snprintf(target, sizeof(target), "unix-abstract:%s", path);
  CHECK_EQ(uvg__target_parse(target, &t, big, sizeof(big)), UVG_EADDR);
  snprintf(tail, sizeof(tail),
           "\": name is %d bytes, more than the %d of a unix socket address",
           MAX + 1, MAX);
  CHECK(strcmp(big + strlen(big) - strlen(tail), tail) == 0);
}

static void test_unix_errors(void) {
  CHECK_FAIL("unix:", "target \"unix:\": empty path");
  CHECK_FAIL("unix-abstract:", "target \"unix-abstract:\": empty name");
  CHECK_FAIL("unix://",
             "target \"unix://\": missing \"/\" after the authority \"\"");
  CHECK_FAIL("unix://tmp/s.sock",
             "target \"unix://tmp/s.sock\": the unix scheme takes no "
             "authority (\"tmp\"); an absolute path takes three slashes: "
             "unix:///path");
  CHECK_FAIL("unix-abstract://h/x",
             "target \"unix-abstract://h/x\": the unix-abstract scheme takes "
             "no authority (\"h\"); an absolute path takes three slashes: "
             "unix-abstract:///path");
}

/* ---- the error channel ---- */

static void test_bad_arguments(void) {
  uvg__target_t t;
  strcpy(err, "stale");
  CHECK_EQ(uvg__target_parse(NULL, &t, err, sizeof(err)), UVG_EINVAL);
  CHECK_STR(err, "no target");
  CHECK(t.default_authority == NULL && t.host == NULL);
  CHECK_EQ(uvg__target_parse("localhost", NULL, err, sizeof(err)), UVG_EINVAL);
  /* No message buffer at all. */
  CHECK_EQ(uvg__target_parse("ipv4:1.2.3", &t, NULL, 0), UVG_EADDR);
  CHECK_EQ(uvg__target_parse("localhost", &t, NULL, 0), 0);
  uvg__target_free(&t);
  /* Success clears an old message. */
  strcpy(err, "stale");
  CHECK_EQ(uvg__target_parse("localhost", &t, err, sizeof(err)), 0);
  CHECK_STR(err, "");
  uvg__target_free(&t);
  /* Freeing twice is harmless. */
  uvg__target_free(&t);
}

/* A short buffer gets the start of the message, NUL-terminated. */
static void test_message_truncated(void) {
  uvg__target_t t;
  char small[12];
  memset(small, 'x', sizeof(small));
  CHECK_EQ(uvg__target_parse("ipv4:1.2.3", &t, small, sizeof(small)),
           UVG_EADDR);
  CHECK_STR(small, "target \"ipv");
  char one[1] = {'x'};
  CHECK_EQ(uvg__target_parse("ipv4:1.2.3", &t, one, 1), UVG_EADDR);
  CHECK_EQ(one[0], '\0');
  /* Cut inside the unknown-scheme note, too. */
  char mid[40];
  CHECK_EQ(uvg__target_parse("xds:///x", &t, mid, sizeof(mid)), UVG_EADDR);
  CHECK_EQ(strlen(mid), sizeof(mid) - 1);
  /* A long target is cut, never overrun. */
  char longt[600];
  memset(longt, 'a', sizeof(longt) - 1);
  longt[sizeof(longt) - 1] = '\0';
  longt[300] = ':';
  CHECK_EQ(uvg__target_parse(longt, &t, err, sizeof(err)), UVG_EADDR);
  CHECK_EQ(strlen(err), sizeof(err) - 1);
}

/* ---- allocation failure ---- */

static long n_alloc, n_live, fail_at = -1;

static void *t_malloc(size_t n) {
  if (n_alloc++ == fail_at) return NULL;
  void *p = malloc(n);
  if (p != NULL) n_live++;
  return p;
}
static void *t_realloc(void *p, size_t n) {
  if (p == NULL) return t_malloc(n);
  if (n_alloc++ == fail_at) return NULL;
  return realloc(p, n);
}
static void t_free(void *p) {
  if (p != NULL) n_live--;
  free(p);
}

/* Each allocation fails in turn: UVG_ENOMEM, "out of memory", nothing
 * left allocated; then the whole parse succeeds and frees everything. */
static void check_alloc_failures(const char *s) {
  int failures = 0;
  for (fail_at = 0;; fail_at++) {
    uvg__target_t t;
    n_alloc = n_live = 0;
    int rc = uvg__target_parse(s, &t, err, sizeof(err));
    if (rc == 0) {
      CHECK(n_alloc == fail_at); /* every allocation has failed once */
      uvg__target_free(&t);
      CHECK_EQ(n_live, 0);
      break;
    }
    failures++;
    CHECK_EQ(rc, UVG_ENOMEM);
    CHECK_STR(err, "out of memory");
    CHECK_EQ(n_live, 0);
    CHECK(t.default_authority == NULL && t.host == NULL && t.addrs == NULL &&
          t.path == NULL && t.dns_authority == NULL && t.port_str == NULL);
    uvg__target_free(&t);
    if (fail_at > 20) break;
  }
  CHECK(failures > 0);
  fail_at = -1;
}

static void test_allocation_failure(void) {
  CHECK_EQ(uvg_set_allocator(t_malloc, t_realloc, t_free), 0);
  check_alloc_failures("dns://8.8.8.8/example.com:443");
  check_alloc_failures(":50051");
  check_alloc_failures("localhost");
  check_alloc_failures("ipv4:1.2.3.4:5,6.7.8.9");
  check_alloc_failures("ipv6:[::1]:80");
  check_alloc_failures("unix:///tmp/s");
  check_alloc_failures("unix-abstract:s");
  /* A target that is wrong allocates nothing, or gives it back. */
  n_alloc = n_live = 0;
  uvg__target_t t;
  CHECK_EQ(uvg__target_parse("ipv4:1.2.3.4,1.2.3", &t, err, sizeof(err)),
           UVG_EADDR);
  CHECK_EQ(n_live, 0);
  CHECK_EQ(uvg_set_allocator(malloc, realloc, free), 0);
}

int main(void) {
  RUN(test_dns_bare);
  RUN(test_dns_scheme);
  RUN(test_dns_ipv6);
  RUN(test_dns_empty_host_with_port);
  RUN(test_dns_unknown_scheme);
  RUN(test_dns_authority_encoding);
  RUN(test_dns_errors);
  RUN(test_ipv4);
  RUN(test_ipv4_errors);
  RUN(test_ipv6);
  RUN(test_ipv6_errors);
  RUN(test_unix);
  RUN(test_unix_length);
  RUN(test_unix_errors);
  RUN(test_bad_arguments);
  RUN(test_message_truncated);
  RUN(test_allocation_failure);
  TEST_EXIT();
}

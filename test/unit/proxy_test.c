/* Choosing a channel's proxy (lib/client/proxy.c), with the environment
 * handed in: proxy URLs, no_proxy matching, the order of the variables
 * and the option, what is excluded, and the CONNECT requests built. */
#include <uv.h>

#include "client/client.h"
#include "test.h"

/* ---- proxy URLs ---- */

static void check_url(const char *url, const char *host, const char *port,
                      const char *userpass) {
  uvg__proxy_url_t u;
  char err[128];
  int rc = uvg__proxy_url_parse(url, &u, err, sizeof(err));
  CHECK_EQ(rc, 0);
  if (rc != 0) {
    fprintf(stderr, "  %s: %s\n", url, err);
    return;
  }
  CHECK_STR(u.host, host);
  CHECK_STR(u.port_str, port);
  if (userpass == NULL)
    CHECK(u.userpass == NULL);
  else
    CHECK_STR(u.userpass, userpass);
  uvg__proxy_url_free(&u);
}

static void check_bad_url(const char *url, const char *want_err) {
  uvg__proxy_url_t u;
  char err[128];
  CHECK_EQ(uvg__proxy_url_parse(url, &u, err, sizeof(err)), UVG_EINVAL);
  CHECK(u.host == NULL && u.userpass == NULL);
  CHECK_STR(err, want_err);
}

static void test_url(void) {
  check_url("http://proxy.corp:3128", "proxy.corp", "3128", NULL);
  check_url("HTTP://proxy.corp:3128/", "proxy.corp", "3128", NULL);
  check_url("http://proxy.corp", "proxy.corp", "80", NULL); /* http's port */
  check_url("proxy.corp:8080", "proxy.corp", "8080", NULL); /* as curl */
  check_url("http://10.1.2.3:3128/some/path?x#y", "10.1.2.3", "3128", NULL);
  check_url("http://[::1]:3128", "::1", "3128", NULL);
  check_url("http://[fd00::1]", "fd00::1", "80", NULL);
  check_url("http://user:pass@proxy:3128", "proxy", "3128", "user:pass");
  /* percent-decoded; a colon in the password stays in it */
  check_url("http://us%40er:p%3Ass:w@proxy:3128", "proxy", "3128",
            "us@er:p:ss:w");
  /* RFC 7617's user-pass has a colon even without a password */
  check_url("http://alice@proxy", "proxy", "80", "alice:");
  check_url("http://alice:@proxy", "proxy", "80", "alice:");

  check_bad_url("https://proxy:3128",
                "scheme \"https\" is not supported (only http)");
  check_bad_url("socks5://proxy:1080",
                "scheme \"socks5\" is not supported (only http)");
  check_bad_url("http://", "no host");
  check_bad_url("http://user:secret@", "no host");
  check_bad_url("http://:3128", "no host");
  check_bad_url("http://proxy:", "bad port \"\"");
  check_bad_url("http://proxy:0", "bad port \"0\"");
  check_bad_url("http://proxy:65536", "bad port \"65536\"");
  check_bad_url("http://proxy:31x", "bad port \"31x\"");
  check_bad_url("http://pro xy:3128", "bad host \"pro xy\"");
  check_bad_url("http://[::1", "missing \"]\" after the IPv6 host");
  check_bad_url("http://[nope]:1", "bad IPv6 host \"nope\"");
  check_bad_url("http://[::1]x", "unexpected text after the IPv6 host");
}

/* The password never reaches an error message. */
static void test_url_error_hides_password(void) {
  uvg__proxy_url_t u;
  char err[128];
  CHECK_EQ(
      uvg__proxy_url_parse("http://bob:hunter2@pro xy:1", &u, err, sizeof(err)),
      UVG_EINVAL);
  CHECK(strstr(err, "hunter2") == NULL);
  CHECK_EQ(
      uvg__proxy_url_parse("ftp://bob:hunter2@proxy:1", &u, err, sizeof(err)),
      UVG_EINVAL);
  CHECK(strstr(err, "hunter2") == NULL);
}

/* ---- no_proxy ---- */

static void test_no_proxy_names(void) {
  /* a name matches itself and its subdomains, with or without a dot */
  CHECK(uvg__no_proxy_match("example.com", "example.com"));
  CHECK(uvg__no_proxy_match("example.com", "api.example.com"));
  CHECK(uvg__no_proxy_match("example.com", "a.b.example.com"));
  CHECK(uvg__no_proxy_match(".example.com", "example.com"));
  CHECK(uvg__no_proxy_match(".example.com", "api.example.com"));
  CHECK(!uvg__no_proxy_match("example.com", "badexample.com"));
  CHECK(!uvg__no_proxy_match(".example.com", "badexample.com"));
  CHECK(!uvg__no_proxy_match("api.example.com", "example.com"));
  CHECK(!uvg__no_proxy_match("example.com", "example.com.evil"));
  /* case, blanks, empty entries */
  CHECK(uvg__no_proxy_match("EXAMPLE.Com", "Api.example.COM"));
  CHECK(uvg__no_proxy_match(" foo , , example.com\t", "x.example.com"));
  CHECK(uvg__no_proxy_match("foo,example.com", "example.com"));
  CHECK(!uvg__no_proxy_match("foo,bar", "example.com"));
  CHECK(!uvg__no_proxy_match("", "example.com"));
  CHECK(!uvg__no_proxy_match(",", "example.com"));
  CHECK(!uvg__no_proxy_match(".", "example.com"));
  CHECK(!uvg__no_proxy_match(NULL, "example.com"));
  /* "*" anywhere in the list */
  CHECK(uvg__no_proxy_match("*", "example.com"));
  CHECK(uvg__no_proxy_match("foo, *", "10.0.0.1"));
  CHECK(!uvg__no_proxy_match("*.example.com", "a.example.com")); /* no glob */
  /* no ports in entries (C-core has none): such an entry matches nothing */
  CHECK(!uvg__no_proxy_match("example.com:443", "example.com"));
  /* a name entry never matches an address, nor the reverse */
  CHECK(!uvg__no_proxy_match("0.0.1", "10.0.0.1"));
  CHECK(!uvg__no_proxy_match("10.0.0.1", "host10.0.0.1"));
}

static void test_no_proxy_addresses(void) {
  CHECK(uvg__no_proxy_match("10.0.0.1", "10.0.0.1"));
  CHECK(!uvg__no_proxy_match("10.0.0.1", "110.0.0.1"));
  CHECK(!uvg__no_proxy_match("10.0.0.1", "10.0.0.10"));
  CHECK(uvg__no_proxy_match("::1", "::1"));
  CHECK(uvg__no_proxy_match("[::1]", "::1"));
  CHECK(uvg__no_proxy_match("fd00:0::1", "fd00::1")); /* as addresses */
  CHECK(!uvg__no_proxy_match("::1", "::2"));
  /* CIDR blocks */
  CHECK(uvg__no_proxy_match("10.0.0.0/8", "10.200.3.4"));
  CHECK(!uvg__no_proxy_match("10.0.0.0/8", "11.0.0.1"));
  CHECK(uvg__no_proxy_match("192.168.1.0/24", "192.168.1.255"));
  CHECK(!uvg__no_proxy_match("192.168.1.0/24", "192.168.2.0"));
  CHECK(uvg__no_proxy_match("10.10.0.0/23", "10.10.1.7"));
  CHECK(!uvg__no_proxy_match("10.10.0.0/23", "10.10.2.7"));
  CHECK(uvg__no_proxy_match("10.10.0.1/32", "10.10.0.1"));
  CHECK(!uvg__no_proxy_match("10.10.0.1/32", "10.10.0.2"));
  CHECK(uvg__no_proxy_match("0.0.0.0/0", "8.8.8.8"));
  CHECK(uvg__no_proxy_match("fd00::/8", "fdab::5"));
  CHECK(!uvg__no_proxy_match("fd00::/8", "fe80::1"));
  CHECK(uvg__no_proxy_match("2001:db8::/33", "2001:db8:7fff::1"));
  CHECK(!uvg__no_proxy_match("2001:db8::/33", "2001:db8:8000::1"));
  /* families do not mix; names are not in blocks; bad blocks match nothing */
  CHECK(!uvg__no_proxy_match("0.0.0.0/0", "::1"));
  CHECK(!uvg__no_proxy_match("10.0.0.0/8", "ten.example"));
  CHECK(!uvg__no_proxy_match("10.0.0.0/33", "10.0.0.1"));
  CHECK(!uvg__no_proxy_match("10.0.0.0/", "10.0.0.1"));
  CHECK(!uvg__no_proxy_match("10.0.0.0/x", "10.0.0.1"));
  CHECK(!uvg__no_proxy_match("nope/8", "10.0.0.1"));
}

/* ---- the decision ---- */

static uvg__target_t target(const char *s) {
  uvg__target_t t;
  char err[128];
  CHECK_EQ(uvg__target_parse(s, &t, err, sizeof(err)), 0);
  return t;
}

/* Decides for `tgt`; returns the proxy's name ("" for none) and fills
 * `req` with the first CONNECT request. */
static int decide(const char *tgt, const uvg__proxy_env_t *env, char *name,
                  size_t cap, char *req, size_t req_cap) {
  uvg__target_t t = target(tgt);
  uvg__proxy_t *p = NULL;
  char err[160];
  int rc = uvg__proxy_decide(&t, env, &p, err, sizeof(err));
  snprintf(name, cap, "%s", p ? p->name : (rc ? err : ""));
  if (req != NULL) snprintf(req, req_cap, "%s", p ? p->requests[0] : "");
  uvg__proxy_free(p);
  uvg__target_free(&t);
  return rc;
}

#define DECIDES(tgt, env, want)                             \
  do {                                                      \
    char n_[160];                                           \
    CHECK_EQ(decide(tgt, env, n_, sizeof(n_), NULL, 0), 0); \
    CHECK_STR(n_, want);                                    \
  } while (0)

static void test_precedence(void) {
  uvg__proxy_env_t e = {0};
  DECIDES("dns:///svc.example:443", &e, ""); /* nothing set */
  e.http_proxy = "http://h:1";
  DECIDES("svc.example:443", &e, "h:1");
  e.https_proxy = "http://hs:2";
  DECIDES("svc.example:443", &e, "hs:2");
  e.grpc_proxy = "http://g:3";
  DECIDES("svc.example:443", &e, "g:3");
  e.option = "http://o:4";
  DECIDES("svc.example:443", &e, "o:4");
  /* set but empty: no proxy, and the search stops there (C-core) */
  e.option = "";
  DECIDES("svc.example:443", &e, "");
  e.option = NULL;
  e.grpc_proxy = "";
  DECIDES("svc.example:443", &e, "");
  e.grpc_proxy = NULL;
  e.https_proxy = "";
  DECIDES("svc.example:443", &e, "");
  /* disabled beats everything */
  e.https_proxy = "http://hs:2";
  e.option = "http://o:4";
  e.disabled = 1;
  DECIDES("svc.example:443", &e, "");
}

static void test_exclusions(void) {
  uvg__proxy_env_t e = {.https_proxy = "http://proxy:3128"};
  /* unix targets never */
  DECIDES("unix:/tmp/x.sock", &e, "");
  DECIDES("unix-abstract:x", &e, "");
  e.option = "http://proxy:3128";
  DECIDES("unix:/tmp/x.sock", &e, "");
  e.option = NULL;
  /* no_grpc_proxy wins over no_proxy, even when empty */
  e.no_proxy = "svc.example";
  DECIDES("svc.example:443", &e, "");
  DECIDES("other.example:443", &e, "proxy:3128");
  e.no_grpc_proxy = "other.example";
  DECIDES("svc.example:443", &e, "proxy:3128");
  DECIDES("other.example:443", &e, "");
  e.no_grpc_proxy = "";
  DECIDES("svc.example:443", &e, "proxy:3128");
  e.no_grpc_proxy = NULL;
  e.no_proxy = "10.0.0.0/8, *.nope";
  DECIDES("10.1.2.3:50051", &e, "");
  DECIDES("dns:///10.1.2.3:50051", &e, "");
  DECIDES("ipv4:10.1.2.3:50051", &e, "");
  DECIDES("11.1.2.3:50051", &e, "proxy:3128");
  /* an address list is excluded only as a whole */
  DECIDES("ipv4:10.1.2.3:1,10.9.9.9:2", &e, "");
  DECIDES("ipv4:10.1.2.3:1,11.9.9.9:2", &e, "proxy:3128");
  e.no_proxy = "*";
  DECIDES("svc.example:443", &e, "");
  /* no_proxy applies to the option too (C-core) */
  e.option = "http://opt:1";
  DECIDES("svc.example:443", &e, "");
  e.no_proxy = NULL;
  DECIDES("svc.example:443", &e, "opt:1");
}

/* Loopback skips a proxy from the environment, not the option's. */
static void test_loopback(void) {
  uvg__proxy_env_t e = {.http_proxy = "http://proxy:3128"};
  DECIDES("localhost:50051", &e, "");
  DECIDES("LocalHost:50051", &e, "");
  DECIDES("127.0.0.1:50051", &e, "");
  DECIDES("127.8.9.1:50051", &e, "");
  DECIDES("[::1]:50051", &e, "");
  DECIDES("ipv6:[::1]:50051", &e, "");
  DECIDES("ipv4:127.0.0.1:1,127.0.0.2:2", &e, "");
  DECIDES("localhost.example:50051", &e, "proxy:3128");
  DECIDES("128.0.0.1:50051", &e, "proxy:3128");
  e.option = "http://opt:1";
  DECIDES("127.0.0.1:50051", &e, "opt:1");
  DECIDES("localhost:50051", &e, "opt:1");
}

static void test_requests(void) {
  char name[160], req[512];
  uvg__proxy_env_t e = {.option = "http://proxy.corp:3128"};
  CHECK_EQ(decide("dns:///svc.example:50051", &e, name, sizeof(name), req,
                  sizeof(req)),
           0);
  CHECK_STR(req,
            "CONNECT svc.example:50051 HTTP/1.1\r\n"
            "Host: svc.example:50051\r\n\r\n");
  /* the default port goes in; an IPv6 host is bracketed */
  decide("svc.example", &e, name, sizeof(name), req, sizeof(req));
  CHECK_STR(
      req, "CONNECT svc.example:443 HTTP/1.1\r\nHost: svc.example:443\r\n\r\n");
  decide("[2001:db8::5]:8443", &e, name, sizeof(name), req, sizeof(req));
  CHECK_STR(req,
            "CONNECT [2001:db8::5]:8443 HTTP/1.1\r\n"
            "Host: [2001:db8::5]:8443\r\n\r\n");
  decide("ipv6:[2001:db8::5]:8443", &e, name, sizeof(name), req, sizeof(req));
  CHECK_STR(req,
            "CONNECT [2001:db8::5]:8443 HTTP/1.1\r\n"
            "Host: [2001:db8::5]:8443\r\n\r\n");
  /* the proxy's own name */
  e.option = "http://[fd00::7]:3128";
  decide("svc.example:1", &e, name, sizeof(name), NULL, 0);
  CHECK_STR(name, "[fd00::7]:3128");

  /* credentials, decoded then base64 with padding (RFC 7617):
   * "Aladdin:open sesame", the RFC's example, and lengths needing one and
   * two '=' */
  e.option = "http://Aladdin:open%20sesame@proxy:3128";
  decide("svc.example:1", &e, name, sizeof(name), req, sizeof(req));
  CHECK_STR(req,
            "CONNECT svc.example:1 HTTP/1.1\r\nHost: svc.example:1\r\n"
            "Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n");
  e.option = "http://ab:c@proxy:3128"; /* "ab:c": 4 bytes, two '=' */
  decide("svc.example:1", &e, name, sizeof(name), req, sizeof(req));
  CHECK(strstr(req, "Proxy-Authorization: Basic YWI6Yw==\r\n") != NULL);
  e.option = "http://abc:de@proxy:3128"; /* 6 bytes, none */
  decide("svc.example:1", &e, name, sizeof(name), req, sizeof(req));
  CHECK(strstr(req, "Proxy-Authorization: Basic YWJjOmRl\r\n") != NULL);
  e.option = "http://ab:cd@proxy:3128"; /* "ab:cd": 5 bytes, one '=' */
  decide("svc.example:1", &e, name, sizeof(name), req, sizeof(req));
  CHECK(strstr(req, "Proxy-Authorization: Basic YWI6Y2Q=\r\n") != NULL);
}

static void test_bad_inputs(void) {
  char name[160];
  uvg__proxy_env_t e = {.option = "https://proxy:3128"};
  CHECK_EQ(decide("svc.example:1", &e, name, sizeof(name), NULL, 0),
           UVG_EINVAL);
  CHECK_STR(name, "scheme \"https\" is not supported (only http)");
  /* a bad URL counts only where it is chosen */
  e.option = NULL;
  e.http_proxy = "socks5://x";
  e.grpc_proxy = "http://fine:1";
  CHECK_EQ(decide("svc.example:1", &e, name, sizeof(name), NULL, 0), 0);
  CHECK_STR(name, "fine:1");
  /* a target host that a request line cannot carry */
  e.grpc_proxy = "http://fine:1";
  CHECK_EQ(decide("dns:///a\"b:1", &e, name, sizeof(name), NULL, 0), UVG_EADDR);
  CHECK_STR(name, "target host \"a\"b\" cannot be named in a CONNECT request");
}

/* An address list: each address is a tunnel target (the resolver tries
 * each through each of the proxy's addresses); one request per target. */
static void test_tunnels(void) {
  uvg__target_t t = target("ipv4:10.0.0.1:1,10.0.0.2:2,10.0.0.3:3");
  uvg__proxy_env_t e = {.option = "http://proxy:3128"};
  uvg__proxy_t *p;
  char err[128];
  CHECK_EQ(uvg__proxy_decide(&t, &e, &p, err, sizeof(err)), 0);
  CHECK_EQ(p->ntunnels, 3);
  const char *want[] = {"10.0.0.1:1", "10.0.0.2:2", "10.0.0.3:3"};
  for (size_t i = 0; i < p->ntunnels; i++) {
    char line[64];
    snprintf(line, sizeof(line), "CONNECT %s HTTP/1.1\r\n", want[i]);
    CHECK(strncmp(p->requests[i], line, strlen(line)) == 0);
  }
  uvg__proxy_free(p);
  uvg__target_free(&t);
  /* a name: one tunnel, to the name as written */
  t = target("svc.example:1");
  CHECK_EQ(uvg__proxy_decide(&t, &e, &p, err, sizeof(err)), 0);
  CHECK_EQ(p->ntunnels, 1);
  CHECK(strncmp(p->requests[0], "CONNECT svc.example:1 ", 22) == 0);
  uvg__proxy_free(p);
  uvg__target_free(&t);
}

int main(void) {
  RUN(test_url);
  RUN(test_url_error_hides_password);
  RUN(test_no_proxy_names);
  RUN(test_no_proxy_addresses);
  RUN(test_precedence);
  RUN(test_exclusions);
  RUN(test_loopback);
  RUN(test_requests);
  RUN(test_bad_inputs);
  RUN(test_tunnels);
  TEST_EXIT();
}

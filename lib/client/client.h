/*
 * Client internals shared by the files of lib/client/: the channel, its
 * resolvers, subchannels and calls. Loop thread only unless a function says
 * otherwise. The pure parts (target parsing, backoff arithmetic) come
 * first; they touch no socket and no loop.
 */
#ifndef UVG_CLIENT_CLIENT_H
#define UVG_CLIENT_CLIENT_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "../../loop/common.h"

/* ====================================================================== */
/* ---- channel targets (target.c): doc/naming.md ---- */

typedef enum {
  UVG__TARGET_DNS,          /* dns:[//authority/]host[:port], or no scheme */
  UVG__TARGET_IPV4,         /* ipv4:addr[:port][,addr[:port]...] */
  UVG__TARGET_IPV6,         /* ipv6:[addr]:port,... or ipv6:addr */
  UVG__TARGET_UNIX,         /* unix:path, unix:///absolute_path */
  UVG__TARGET_UNIX_ABSTRACT /* unix-abstract:name */
} uvg__target_scheme_t;

/* The default port of dns, ipv4 and ipv6 targets that name none
 * (naming.md: "If not specified, 443 is used"). */
#define UVG__TARGET_DEFAULT_PORT 443

/* A parsed channel target. Every string is NUL-terminated, allocated with
 * the library's allocator and owned by the struct (uvg__target_free). Fields
 * that do not apply to the scheme are NULL / 0. */
typedef struct {
  uvg__target_scheme_t scheme;
  /* The :authority a call carries unless the application sets one:
   * dns: host[:port] as written ("localhost" prefixed when the host is
   * left out); ipv4/ipv6: the first address as written; unix and
   * unix-abstract: "localhost". Characters RFC 3986 3.2 does not allow in
   * an authority are percent-encoded. */
  char *default_authority;

  /* dns */
  char *dns_authority; /* the DNS server of dns://authority/..., or NULL */
  char *host;          /* without brackets; "localhost" for ":port" */
  char *port_str;      /* digits as written, or "443" */
  uint16_t port;

  /* ipv4, ipv6: at least one, port set in each, in the target's order */
  struct sockaddr_storage *addrs;
  size_t naddrs;

  /* unix: the file system path; unix-abstract: the name, without the NUL
   * byte the socket address puts before it. */
  char *path;
  size_t path_len;
} uvg__target_t;

/* Parses `target` (doc/naming.md). On success fills `*out` and returns 0.
 * On failure `*out` is left empty (uvg__target_free() on it is harmless)
 * and the result is UVG_EADDR (the target cannot be parsed; `err` says
 * why, e.g. `target "ipv4:1.2.3": bad IPv4 address "1.2.3"`), UVG_ENOMEM
 * (`err` says "out of memory") or UVG_EINVAL (NULL target or out). `err`
 * receives a NUL-terminated message, truncated to `errlen` bytes; it may be
 * NULL when errlen is 0. Pure: no name lookup, no socket. */
int uvg__target_parse(const char *target, uvg__target_t *out, char *err,
                      size_t errlen);
/* Frees what `t` owns and empties it. */
void uvg__target_free(uvg__target_t *t);
/* `s` with the characters RFC 3986 3.2 does not allow in an authority
 * percent-encoded ("a/b" -> "a%2Fb"), allocated; NULL when out of memory. */
char *uvg__authority_encode(const char *s);
/* The length of the RFC 3986 scheme `target` starts with (before its
 * ':'), or 0 when it has none. */
size_t uvg__target_scheme_len(const char *target);

/* ====================================================================== */
/* ---- connection backoff (backoff.c): doc/connection-backoff.md ---- */

typedef struct {
  uint64_t initial_ms;             /* INITIAL_BACKOFF: 1000; at least 1 */
  double multiplier;               /* MULTIPLIER: 1.6; at least 1 */
  double jitter;                   /* JITTER: 0.2; 0 to 1 */
  uint64_t max_ms;                 /* MAX_BACKOFF: 120000; >= initial_ms */
  uint64_t min_connect_timeout_ms; /* MIN_CONNECT_TIMEOUT: 20000 */
} uvg__backoff_params_t;

/* The doc's values. */
#define UVG__BACKOFF_INITIAL_MS 1000
#define UVG__BACKOFF_MULTIPLIER 1.6
#define UVG__BACKOFF_JITTER 0.2
#define UVG__BACKOFF_MAX_MS 120000
#define UVG__BACKOFF_MIN_CONNECT_TIMEOUT_MS 20000
/* The largest max_ms accepted: 2^52 ms (about 142,000 years) keeps every
 * value a double holds exactly and every delay far from overflowing. */
#define UVG__BACKOFF_MAX_MS_LIMIT (UINT64_C(1) << 52)

/* A source of uniform 64-bit numbers; `arg` is what uvg__backoff_init()
 * was given. */
typedef uint64_t (*uvg__backoff_rand_cb)(void *arg);

typedef struct {
  uvg__backoff_params_t params;
  double current_ms; /* the attempt after this one waits this, un-jittered */
  uvg__backoff_rand_cb rand_cb;
  void *rand_arg;
} uvg__backoff_t;

/* Fills `p` with the doc's values. */
void uvg__backoff_params_init(uvg__backoff_params_t *p);
/* Copies `p` (NULL: the doc's values) and resets. `rand_cb` NULL means the
 * library's generator (uvg__random). Returns 0, or UVG_EINVAL when a value
 * is out of the range written beside it above (max_ms also at most
 * UVG__BACKOFF_MAX_MS_LIMIT); `b` is then left unusable. */
int uvg__backoff_init(uvg__backoff_t *b, const uvg__backoff_params_t *p,
                      uvg__backoff_rand_cb rand_cb, void *rand_arg);
/* Back to INITIAL_BACKOFF: called when a connection succeeds (the doc:
 * "when the SETTINGS frame is received"). */
void uvg__backoff_reset(uvg__backoff_t *b);
/* Called as a connection attempt starts. Returns the delay, in ms, from
 * the start of this attempt to the earliest start of the next one: the
 * current backoff times a factor drawn uniformly from [1 - jitter,
 * 1 + jitter], rounded to the millisecond; then the current backoff becomes
 * min(current * multiplier, max_ms). With jitter 0: 1000, 1600, 2560, 4096,
 * ... 120000, 120000. */
uint64_t uvg__backoff_next(uvg__backoff_t *b);
/* How long the attempt whose delay uvg__backoff_next() returned may take to
 * connect: max(delay, min_connect_timeout_ms). */
uint64_t uvg__backoff_connect_timeout(const uvg__backoff_t *b,
                                      uint64_t delay_ms);

/* ====================================================================== */
/* ---- HTTP CONNECT proxies (proxy.c): gRFC A1 ---- */

/* What decides a channel's proxy: the application's options and the
 * environment's values (NULL: the variable is unset), handed in so that
 * the decision itself reads nothing global. */
typedef struct {
  const char *option; /* uvg_channel_options_t.http_proxy */
  int disabled;       /* uvg_channel_options_t.disable_http_proxy */
  const char *grpc_proxy, *https_proxy, *http_proxy;
  const char *no_grpc_proxy, *no_proxy;
} uvg__proxy_env_t;

/* Fills the environment's fields of `e` with getenv(); leaves the rest. */
void uvg__proxy_env_read(uvg__proxy_env_t *e);

/* A proxy URL, "[http://][user[:password]@]host[:port][/...]", taken
 * apart. Strings are allocated and owned (uvg__proxy_url_free). */
typedef struct {
  char *host;     /* a name, an IPv4 address, or an IPv6 one unbracketed */
  char *port_str; /* 1 to 65535 as written; "80", http's, when absent */
  /* "user:password" percent-decoded (":" added when the URL has no
   * password, as RFC 7617's user-pass needs one), or NULL */
  char *userpass;
} uvg__proxy_url_t;

/* Parses `url`. Without "://" the whole value is host[:port] with its
 * userinfo, as curl and Go read "proxy:3128". Returns 0; UVG_EINVAL with
 * `err` saying why (a scheme other than http, an empty or malformed host,
 * a bad port); UVG_ENOMEM. The message never repeats the userinfo. `*out`
 * is left empty on failure. */
int uvg__proxy_url_parse(const char *url, uvg__proxy_url_t *out, char *err,
                         size_t errlen);
void uvg__proxy_url_free(uvg__proxy_url_t *u);

/* 1 if `host` (a name, or an IP address without brackets) is in `list`, a
 * no_proxy value: comma-separated entries, blanks around them ignored;
 * "*" matches every host; an IPv4 or IPv6 address matches that address;
 * a CIDR block ("10.0.0.0/8", "fd00::/8") the addresses in it; a name
 * (a leading dot ignored) matches itself and its subdomains, without
 * regard to case ("example.com" and ".example.com" both match
 * "example.com" and "a.example.com", not "badexample.com"). */
int uvg__no_proxy_match(const char *list, const char *host);

/* A channel's proxy: the name it resolves instead of the target's, and
 * the CONNECT requests its attempts send. Owned by the channel. */
typedef struct {
  char *host, *port_str; /* resolved instead of the target */
  char *name;            /* "host:port", for messages */
  /* One whole CONNECT request per tunnel target: the dns target's
   * host:port as written (the proxy resolves it: A1, case 1), or each
   * address of an ipv4/ipv6 target (A1, case 2). */
  char **requests;
  size_t ntunnels;
} uvg__proxy_t;

/* Decides whether a channel to `t` goes through a proxy, and which. In
 * order: `disabled` means none; unix targets never use one; the proxy is
 * env->option if set, else the first of grpc_proxy, https_proxy and
 * http_proxy that is set (gRPC C-core's order); an empty value means none.
 * Then no_grpc_proxy, or no_proxy when that is unset, may exclude the
 * target (uvg__no_proxy_match) and so may loopback (localhost,
 * 127.0.0.0/8, ::1) when the proxy came from the environment, as Go's
 * httpproxy does. An ipv4/ipv6 target is excluded when all its
 * addresses are. Returns 0 with *out NULL (connect directly) or set;
 * UVG_EINVAL (the chosen proxy URL is unusable: `err` says why);
 * UVG_EADDR (the target's host has characters a CONNECT request cannot
 * carry); UVG_ENOMEM. Pure. */
int uvg__proxy_decide(const uvg__target_t *t, const uvg__proxy_env_t *env,
                      uvg__proxy_t **out, char *err, size_t errlen);

/* uvg__proxy_decide() for a new channel, with the environment read: an
 * unusable proxy URL from the environment is logged and ignored (the
 * channel connects directly, as C-core and grpc-js do: the variables are
 * shared with every other program), one from the option fails with
 * UVG_EINVAL and a log line. Returns 0, UVG_EINVAL, UVG_EADDR or
 * UVG_ENOMEM. */
int uvg__proxy_setup(const uvg__target_t *t, const char *option, int disabled,
                     uvg__proxy_t **out);

void uvg__proxy_free(uvg__proxy_t *p);

/* ---- client calls (call.c), for what is built on them (lib/pb) ---- */

/* uvg_client_call_cancel() with a status of the caller's: the call ends
 * with `code` and `msg` (copied) unless it already ended. Returns 0,
 * UVG_EINVAL or UVG_ECANCELED. */
int uvg__client_call_abort(uvg_client_call_t *call, uvg_status_code_t code,
                           const char *msg);

#endif

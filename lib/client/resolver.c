/*
 * Resolvers: the registry by scheme, the channel's side of its resolver
 * (grpc-go's ccResolverWrapper: results are copied and applied from the
 * channel's queue, in order, and a stopped resolver's late results are
 * dropped), and the built-in ones on the same public API:
 *
 *   dns           uv_getaddrinfo on libuv's threadpool; again when asked,
 *                 at most every 30 s (grpc-go's minimum), and after a
 *                 failure with connection backoff
 *   ipv4, ipv6    the addresses written in the target
 *   unix,         the path or name in the target
 *   unix-abstract
 *   manual        nothing by itself: the application pushes addresses
 *                 (uvg_channel_manual_resolver)
 */
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "channel.h"

/* grpc-go's dns resolver: no re-resolution sooner than this after one. */
#define DNS_MIN_INTERVAL_MS 30000
#define MAX_RESOLVERS 32

static const uvg_resolver_type_t dns_type, static_type, manual_type;
static const uvg_resolver_type_t *types[MAX_RESOLVERS];
static size_t ntypes;

/* The built-in schemes, unless the application registered its own. */
static const uvg_resolver_type_t *builtin(const char *scheme) {
  if (strcmp(scheme, "dns") == 0) return &dns_type;
  if (strcmp(scheme, "manual") == 0) return &manual_type;
  if (strcmp(scheme, "ipv4") == 0 || strcmp(scheme, "ipv6") == 0 ||
      strcmp(scheme, "unix") == 0 || strcmp(scheme, "unix-abstract") == 0)
    return &static_type;
  return NULL;
}

static const uvg_resolver_type_t *registered(const char *scheme, size_t len) {
  for (size_t i = 0; i < ntypes; i++)
    if (strlen(types[i]->scheme) == len && strncmp(types[i]->scheme, scheme, len) == 0)
      return types[i];
  return NULL;
}

int uvg_resolver_register(const uvg_resolver_type_t *t) {
  if (t == NULL || t->scheme == NULL || t->start == NULL || t->stop == NULL ||
      uvg__target_scheme_len(t->scheme) != 0 || t->scheme[0] == '\0')
    return UVG_EINVAL;
  for (size_t i = 0; i < ntypes; i++) {
    if (strcmp(types[i]->scheme, t->scheme) == 0) {
      types[i] = t;
      return 0;
    }
  }
  if (ntypes == MAX_RESOLVERS) return UVG_ENOMEM;
  types[ntypes++] = t;
  return 0;
}

/* ---- the target ---- */

static void free_tinfo(uvg_target_info_t *t) {
  uvg__free((char *)t->target);
  uvg__free((char *)t->scheme);
  uvg__free((char *)t->authority);
  uvg__free((char *)t->endpoint);
  memset(t, 0, sizeof(*t));
}

/* RFC 3986: scheme ":" ["//" authority] path; the endpoint is the path
 * without its first '/'. */
static int split_target(uvg_target_info_t *t, const char *target, size_t slen) {
  const char *rest = target + slen + 1, *auth = "", *end;
  size_t alen = 0;
  if (rest[0] == '/' && rest[1] == '/') {
    auth = rest + 2;
    end = strchr(auth, '/');
    alen = end ? (size_t)(end - auth) : strlen(auth);
    rest = auth + alen;
  }
  if (rest[0] == '/') rest++;
  t->target = uvg__strdup(target);
  t->scheme = uvg__strndup(target, slen);
  t->authority = uvg__strndup(auth, alen);
  t->endpoint = uvg__strdup(rest);
  if (t->target == NULL || t->scheme == NULL || t->authority == NULL ||
      t->endpoint == NULL) {
    free_tinfo(t);
    return UVG_ENOMEM;
  }
  return 0;
}

int uvg__resolver_prepare(uvg_channel_t *ch, const char *target) {
  char err[192];
  size_t slen = uvg__target_scheme_len(target);
  const uvg_resolver_type_t *custom = slen ? registered(target, slen) : NULL;
  int rc;
  int manual = custom == NULL && slen == 6 && strncmp(target, "manual", 6) == 0;
  if (custom != NULL || manual) {
    rc = split_target(&ch->tinfo, target, slen);
    ch->resolver.type = manual ? &manual_type : custom;
    ch->manual.on = (uint8_t)manual;
    /* the :authority is the endpoint, as grpc-go makes it */
    if (rc == 0 && (ch->target.default_authority = uvg__authority_encode(
                        ch->tinfo.endpoint[0] ? ch->tinfo.endpoint : "localhost")) == NULL)
      rc = UVG_ENOMEM;
    return rc;
  }
  rc = uvg__target_parse(target, &ch->target, err, sizeof(err));
  if (rc == 0 && ch->target.dns_authority != NULL) {
    /* uv_getaddrinfo asks the system's resolver; it cannot be pointed at
     * another server, and quietly using the system's would be wrong */
    snprintf(err, sizeof(err), "target \"%s\": a DNS server in the "
             "authority is not supported (names are resolved by the "
             "system resolver): use \"dns:///host\"", target);
    rc = UVG_EADDR;
  }
  if (rc == UVG_EADDR) uvg__log(UVG_LOG_WARN, "%s", err);
  if (rc != 0) return rc;
  ch->builtin_target = 1;
  static const char *names[] = {"dns", "ipv4", "ipv6", "unix", "unix-abstract"};
  const char *scheme = names[ch->target.scheme];
  /* a scheme the application registered in place of a built-in one */
  const uvg_resolver_type_t *over = registered(scheme, strlen(scheme));
  ch->resolver.type = over ? over : builtin(scheme);
  rc = split_target(&ch->tinfo, target, slen);
  if (rc == 0 && slen == 0) { /* "host:port": a DNS name */
    uvg__free((char *)ch->tinfo.scheme);
    uvg__free((char *)ch->tinfo.endpoint);
    ch->tinfo.scheme = uvg__strdup("dns");
    ch->tinfo.endpoint = uvg__strdup(target);
    if (ch->tinfo.scheme == NULL || ch->tinfo.endpoint == NULL) rc = UVG_ENOMEM;
  }
  return rc;
}

/* ---- the channel's side ---- */

typedef struct {
  uvg_channel_t *ch;
  unsigned generation;
  uvg_address_t *addrs;
  size_t n;
  char *config;
  char *error; /* an error instead */
} result_t;

static void free_addrs(uvg_address_t *a, size_t n) {
  for (size_t i = 0; i < n; i++) uvg__address_free(&a[i]);
  uvg__free(a);
}

static void free_result(result_t *res) {
  free_addrs(res->addrs, res->n);
  uvg__free(res->config);
  uvg__free(res->error);
  uvg__free(res);
}

static void run_result(void *arg, int status) {
  result_t *res = arg;
  uvg_channel_t *ch = res->ch;
  ch->pending--;
  if (status == 0 && !ch->closing && ch->resolver.running &&
      res->generation == ch->resolver.generation) {
    if (res->error != NULL)
      uvg__lb_resolver_error(ch, res->error);
    else
      uvg__lb_resolved(ch, res->addrs, res->n, res->config);
  }
  free_result(res);
  uvg__channel_maybe_released(ch);
}

static int post_result(uvg_resolver_t *r, result_t *res) {
  res->ch = r->ch;
  res->generation = r->generation;
  if (uvg__workq_post(&r->ch->q, run_result, res) != 0) {
    free_result(res);
    return UVG_ENOMEM;
  }
  r->ch->pending++;
  return 0;
}

static int copy_addrs(uvg_address_t **out, const uvg_address_t *addrs, size_t n) {
  uvg_address_t *a = n ? uvg__calloc(n, sizeof(*a)) : NULL;
  if (n && a == NULL) return UVG_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    if (uvg__address_copy(&a[i], &addrs[i]) != 0) {
      free_addrs(a, i);
      return UVG_ENOMEM;
    }
  }
  *out = a;
  return 0;
}

int uvg_resolver_error(uvg_resolver_t *r, const char *message) {
  if (r == NULL || message == NULL) return UVG_EINVAL;
  result_t *res = uvg__calloc(1, sizeof(*res));
  if (res == NULL || (res->error = uvg__strdup(message)) == NULL) {
    uvg__free(res);
    return UVG_ENOMEM;
  }
  return post_result(r, res);
}

int uvg_resolver_update(uvg_resolver_t *r, const uvg_address_t *addrs, size_t n,
                        const char *service_config) {
  if (r == NULL || (n > 0 && addrs == NULL)) return UVG_EINVAL;
  uvg_channel_t *ch = r->ch;
  if (ch->manual.on && r == &ch->resolver) {
    /* kept, and given again when the channel leaves idle */
    uvg_address_t *keep;
    char *cfg = service_config ? uvg__strdup(service_config) : NULL;
    if ((service_config && cfg == NULL) || copy_addrs(&keep, addrs, n) != 0) {
      uvg__free(cfg);
      return UVG_ENOMEM;
    }
    free_addrs(ch->manual.addrs, ch->manual.n);
    uvg__free(ch->manual.config);
    ch->manual.addrs = keep;
    ch->manual.n = n;
    ch->manual.config = cfg;
    if (!r->running) return 0;
  }
  if (n == 0) return uvg_resolver_error(r, "the resolver found no addresses");
  result_t *res = uvg__calloc(1, sizeof(*res));
  if (res == NULL) return UVG_ENOMEM;
  if (copy_addrs(&res->addrs, addrs, n) != 0 ||
      (service_config != NULL && (res->config = uvg__strdup(service_config)) == NULL)) {
    free_result(res);
    return UVG_ENOMEM;
  }
  res->n = n;
  return post_result(r, res);
}

uv_loop_t *uvg_resolver_loop(const uvg_resolver_t *r) { return r->ch->loop; }

uvg_resolver_t *uvg_channel_manual_resolver(uvg_channel_t *ch) {
  return ch != NULL && ch->manual.on && !ch->closing ? &ch->resolver : NULL;
}

int uvg__resolver_start(uvg_channel_t *ch) {
  uvg_resolver_t *r = &ch->resolver;
  if (r->running) return 0;
  r->ch = ch;
  r->generation++;
  r->running = 1;
  /* gRFC A1: a proxied channel resolves the proxy's name, whatever its
   * target's scheme (the proxy reaches the target) */
  const uvg_resolver_type_t *t = ch->proxy != NULL ? &dns_type : r->type;
  int rc = t->start(r, &ch->tinfo, &r->state);
  if (rc != 0) r->running = 0;
  return rc;
}

void uvg__resolver_stop(uvg_channel_t *ch) {
  uvg_resolver_t *r = &ch->resolver;
  if (!r->running) return;
  r->running = 0;
  (ch->proxy != NULL ? &dns_type : r->type)->stop(r->state);
  r->state = NULL;
}

void uvg__resolver_resolve_now(uvg_channel_t *ch) {
  uvg_resolver_t *r = &ch->resolver;
  const uvg_resolver_type_t *t = ch->proxy != NULL ? &dns_type : r->type;
  if (r->running && t->resolve_now != NULL) t->resolve_now(r->state);
}

void uvg__resolver_free(uvg_channel_t *ch) {
  free_tinfo(&ch->tinfo);
  free_addrs(ch->manual.addrs, ch->manual.n);
  uvg__free(ch->manual.config);
  ch->manual.addrs = NULL;
  ch->manual.n = 0;
  ch->manual.config = NULL;
}

/* ---- ipv4, ipv6, unix, unix-abstract: what the target says ---- */

static int static_start(uvg_resolver_t *r, const uvg_target_info_t *t, void **state) {
  uvg__target_t *tg = &r->ch->target;
  (void)t;
  *state = r;
  if (tg->scheme == UVG__TARGET_UNIX || tg->scheme == UVG__TARGET_UNIX_ABSTRACT) {
    uvg_address_t a;
    memset(&a, 0, sizeof(a));
    struct sockaddr_un *un = (struct sockaddr_un *)&a.addr;
    un->sun_family = AF_UNIX;
    size_t off = tg->scheme == UVG__TARGET_UNIX_ABSTRACT; /* the NUL first */
    memcpy(un->sun_path + off, tg->path, tg->path_len);
    a.addrlen = (uint32_t)(offsetof(struct sockaddr_un, sun_path) + off + tg->path_len);
    return uvg_resolver_update(r, &a, 1, NULL);
  }
  uvg_address_t *a = uvg__calloc(tg->naddrs, sizeof(*a));
  if (a == NULL) return UVG_ENOMEM;
  for (size_t i = 0; i < tg->naddrs; i++) {
    a[i].addr = tg->addrs[i];
    a[i].addrlen = tg->addrs[i].ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                                     : sizeof(struct sockaddr_in6);
  }
  int rc = uvg_resolver_update(r, a, tg->naddrs, NULL);
  uvg__free(a);
  return rc;
}

static void static_stop(void *state) { (void)state; }

static const uvg_resolver_type_t static_type = {"ipv4", static_start, NULL, static_stop};

/* ---- manual ---- */

static int manual_start(uvg_resolver_t *r, const uvg_target_info_t *t, void **state) {
  uvg_channel_t *ch = r->ch;
  (void)t;
  *state = r;
  if (ch->manual.n == 0) return 0;
  result_t *res = uvg__calloc(1, sizeof(*res));
  if (res == NULL || copy_addrs(&res->addrs, ch->manual.addrs, ch->manual.n) != 0 ||
      (ch->manual.config && (res->config = uvg__strdup(ch->manual.config)) == NULL)) {
    if (res != NULL) free_result(res);
    return UVG_ENOMEM;
  }
  res->n = ch->manual.n;
  return post_result(r, res);
}

static const uvg_resolver_type_t manual_type = {"manual", manual_start, NULL, static_stop};

/* ---- dns ---- */

typedef struct {
  uvg_resolver_t *r;
  uv_loop_t *loop;
  uv_getaddrinfo_t req;
  uvg__timer_t timer; /* the next resolution */
  uvg__backoff_t backoff; /* after failures */
  uint64_t resolved_at;
  uint8_t in_flight;
  uint8_t stopped;
  uint8_t resolved_once;
} dns_t;

static void dns_resolve(dns_t *d);

static void on_dns_timer(uvg__timer_t *t) {
  dns_resolve(uvg__container_of(t, dns_t, timer));
}

/* The names a dns resolution asks for: the target's, or its proxy's. */
static const char *dns_host(const uvg_channel_t *ch) {
  return ch->proxy != NULL ? ch->proxy->host : ch->target.host;
}
static const char *dns_port(const uvg_channel_t *ch) {
  return ch->proxy != NULL ? ch->proxy->port_str : ch->target.port_str;
}

/* gRFC A1: every proxy address once per tunnel target, each tagged with
 * its tunnel (the CONNECT request the subchannel sends). */
static int push_proxied(uvg_resolver_t *r, const uvg_address_t *addrs, size_t n) {
  uvg__proxy_t *p = r->ch->proxy;
  size_t nt = p->ntunnels ? p->ntunnels : 1;
  uvg_address_t *all = uvg__calloc(n * nt, sizeof(*all));
  uvg_attribute_t *attrs = uvg__calloc(nt, sizeof(*attrs));
  char (*idx)[24] = uvg__calloc(nt, sizeof(*idx));
  int rc = UVG_ENOMEM;
  if (all != NULL && attrs != NULL && idx != NULL) {
    for (size_t t = 0; t < nt; t++) {
      snprintf(idx[t], sizeof(idx[t]), "%zu", t);
      attrs[t] = (uvg_attribute_t){UVG__ATTR_TUNNEL, idx[t]};
      for (size_t i = 0; i < n; i++) {
        all[t * n + i] = addrs[i];
        all[t * n + i].attrs = &attrs[t];
        all[t * n + i].nattrs = 1;
      }
    }
    rc = uvg_resolver_update(r, all, n * nt, NULL);
  }
  uvg__free(all);
  uvg__free(attrs);
  uvg__free(idx);
  return rc;
}

static void on_dns_result(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  dns_t *d = uvg__container_of(req, dns_t, req);
  d->in_flight = 0;
  if (d->stopped) { /* stopped while in flight: nobody else frees it */
    if (res != NULL) uv_freeaddrinfo(res);
    uvg__free(d);
    return;
  }
  const uvg_channel_t *ch = d->r->ch;
  size_t n = 0;
  for (struct addrinfo *a = res; status == 0 && a != NULL; a = a->ai_next)
    if (a->ai_family == AF_INET || a->ai_family == AF_INET6) n++;
  uvg_address_t *addrs = n ? uvg__calloc(n, sizeof(*addrs)) : NULL;
  size_t k = 0;
  for (struct addrinfo *a = res; addrs != NULL && a != NULL; a = a->ai_next) {
    if (a->ai_family != AF_INET && a->ai_family != AF_INET6) continue;
    memcpy(&addrs[k].addr, a->ai_addr, a->ai_addrlen);
    addrs[k++].addrlen = (uint32_t)a->ai_addrlen;
  }
  if (res != NULL) uv_freeaddrinfo(res);
  d->resolved_at = uv_now(d->loop);
  d->resolved_once = 1;
  if (k > 0) {
    uvg__backoff_reset(&d->backoff);
    if (ch->proxy != NULL)
      push_proxied(d->r, addrs, k);
    else
      uvg_resolver_update(d->r, addrs, k, NULL);
  } else {
    char msg[160];
    snprintf(msg, sizeof(msg), "DNS resolution of %s%s: %s", ch->proxy ? "proxy " : "",
             dns_host(ch), status ? uv_strerror(status) : n ? "out of memory" : "no addresses");
    uvg_resolver_error(d->r, msg);
    uvg__timer_start(&d->timer, on_dns_timer, uvg__backoff_next(&d->backoff));
  }
  uvg__free(addrs);
}

static void dns_resolve(dns_t *d) {
  const uvg_channel_t *ch = d->r->ch;
  if (d->in_flight || d->stopped) return;
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = uv_getaddrinfo(d->loop, &d->req, on_dns_result, dns_host(ch), dns_port(ch),
                          &hints);
  if (rc != 0) {
    char msg[160];
    snprintf(msg, sizeof(msg), "DNS resolution of %s%s: %s", ch->proxy ? "proxy " : "",
             dns_host(ch), uv_strerror(rc));
    uvg_resolver_error(d->r, msg);
    uvg__timer_start(&d->timer, on_dns_timer, uvg__backoff_next(&d->backoff));
    return;
  }
  d->in_flight = 1;
}

static int dns_start(uvg_resolver_t *r, const uvg_target_info_t *t, void **state) {
  uvg_channel_t *ch = r->ch;
  (void)t;
  dns_t *d = uvg__calloc(1, sizeof(*d));
  if (d == NULL) return UVG_ENOMEM;
  d->r = r;
  d->loop = ch->loop;
  uvg__timer_init(ch->sched, &d->timer);
  uvg__backoff_params_t bp = {ch->opts.backoff_initial_ms, ch->opts.backoff_multiplier,
                              ch->opts.backoff_jitter, ch->opts.backoff_max_ms,
                              ch->opts.min_connect_timeout_ms};
  uvg__backoff_init(&d->backoff, &bp, NULL, NULL);
  *state = d;
  dns_resolve(d);
  return 0;
}

static void dns_resolve_now(void *state) {
  dns_t *d = state;
  if (d->in_flight || uvg__timer_armed(&d->timer)) return;
  uint64_t now = uv_now(d->loop), since = now - d->resolved_at;
  if (!d->resolved_once || since >= DNS_MIN_INTERVAL_MS)
    dns_resolve(d);
  else
    uvg__timer_start(&d->timer, on_dns_timer, DNS_MIN_INTERVAL_MS - since);
}

static void dns_stop(void *state) {
  dns_t *d = state;
  d->stopped = 1;
  uvg__timer_stop(&d->timer);
  if (d->in_flight)
    uv_cancel((uv_req_t *)&d->req); /* on_dns_result frees it */
  else
    uvg__free(d);
}

static const uvg_resolver_type_t dns_type = {"dns", dns_start, dns_resolve_now, dns_stop};

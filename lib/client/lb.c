/*
 * The channel's side of its LB policy (grpc-go's ccBalancerWrapper): the
 * registry of policies, the functions a policy calls (uvg_lb_*), and the
 * delivery of subchannel states to it from the channel's queue, so that a
 * policy never runs inside the transport or inside its own calls.
 */
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "channel.h"

#define MAX_POLICIES 32

static const uvg_lb_policy_type_t *policies[MAX_POLICIES] = {&uvg__pick_first,
                                                             &uvg__round_robin};
static size_t npolicies = 2;

int uvg_lb_policy_register(const uvg_lb_policy_type_t *t) {
  if (t == NULL || t->name == NULL || t->name[0] == '\0' || t->create == NULL ||
      t->update == NULL || t->subchannel_state == NULL || t->destroy == NULL)
    return UVG_EINVAL;
  for (size_t i = 0; i < npolicies; i++) {
    if (strcmp(policies[i]->name, t->name) == 0) {
      policies[i] = t;
      return 0;
    }
  }
  if (npolicies == MAX_POLICIES) return UVG_ENOMEM;
  policies[npolicies++] = t;
  return 0;
}

const uvg_lb_policy_type_t *uvg__lb_find(const char *name) {
  for (size_t i = 0; i < npolicies; i++)
    if (strcmp(policies[i]->name, name) == 0) return policies[i];
  return NULL;
}

/* ---- addresses ---- */

int uvg__address_copy(uvg_address_t *dst, const uvg_address_t *src) {
  *dst = *src;
  dst->attrs = NULL;
  dst->nattrs = 0;
  if (src->nattrs == 0) return 0;
  /* one block: the array, then the strings */
  size_t size = src->nattrs * sizeof(uvg_attribute_t);
  for (size_t i = 0; i < src->nattrs; i++)
    size += strlen(src->attrs[i].key) + strlen(src->attrs[i].value) + 2;
  uvg_attribute_t *a = uvg__malloc(size);
  if (a == NULL) return UVG_ENOMEM;
  char *p = (char *)(a + src->nattrs);
  for (size_t i = 0; i < src->nattrs; i++) {
    size_t k = strlen(src->attrs[i].key) + 1, v = strlen(src->attrs[i].value) + 1;
    a[i].key = memcpy(p, src->attrs[i].key, k);
    a[i].value = memcpy(p + k, src->attrs[i].value, v);
    p += k + v;
  }
  dst->attrs = a;
  dst->nattrs = src->nattrs;
  return 0;
}

int uvg__address_equal(const uvg_address_t *a, const uvg_address_t *b) {
  if (a->addrlen != b->addrlen || memcmp(&a->addr, &b->addr, a->addrlen) != 0 ||
      a->nattrs != b->nattrs)
    return 0;
  for (size_t i = 0; i < a->nattrs; i++) /* (a tunnel is an attribute) */
    if (strcmp(a->attrs[i].key, b->attrs[i].key) != 0 ||
        strcmp(a->attrs[i].value, b->attrs[i].value) != 0)
      return 0;
  return 1;
}

void uvg__address_free(uvg_address_t *a) {
  uvg__free((void *)a->attrs);
  a->attrs = NULL;
  a->nattrs = 0;
}

void uvg__address_name(const uvg_address_t *a, char *out, size_t len) {
  const struct sockaddr *sa = (const struct sockaddr *)&a->addr;
  char host[64] = "?";
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    uv_ip4_name(in, host, sizeof(host));
    snprintf(out, len, "%s:%u", host, ntohs(in->sin_port));
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    uv_ip6_name(in6, host, sizeof(host));
    snprintf(out, len, "[%s]:%u", host, ntohs(in6->sin6_port));
  } else if (sa->sa_family == AF_UNIX) {
    const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
    if (un->sun_path[0] == '\0')
      snprintf(out, len, "unix-abstract:%.*s",
               (int)strnlen(un->sun_path + 1, sizeof(un->sun_path) - 1),
               un->sun_path + 1);
    else
      snprintf(out, len, "unix:%.*s", (int)strnlen(un->sun_path, sizeof(un->sun_path)),
               un->sun_path);
  } else {
    snprintf(out, len, "(family %d)", sa->sa_family);
  }
}

/* ---- the policy's instance ---- */

static int current(const uvg_lb_t *lb) { return lb->type != NULL; }

int uvg__lb_supported(const char *name, const char *config, void *arg) {
  const uvg_lb_policy_type_t *t = uvg__lb_find(name);
  (void)arg;
  if (t == NULL) return 0;
  return t->check_config == NULL || t->check_config(config) == 0 ? 1 : -1;
}

/* gRFC A21: an invalid config from the resolver leaves the channel with
 * the config it had; a channel that never had one fails. Returns 0 when
 * the resolution may be applied. */
static int take_service_config(uvg_channel_t *ch, const char *json) {
  if (json == NULL) { /* the resolver has none: the default applies */
    if (ch->sc != ch->sc_default) {
      if (ch->sc != NULL) uvg__service_config_unref(ch->sc);
      ch->sc = ch->sc_default ? uvg__service_config_ref(ch->sc_default) : NULL;
    }
    return 0;
  }
  char err[160];
  uvg__service_config_t *sc;
  if (uvg__service_config_parse(json, strlen(json), uvg__lb_supported, NULL, &sc, err,
                                sizeof(err)) != 0) {
    uvg__log(UVG_LOG_WARN, "service config from the resolver rejected: %s", err);
    if (ch->sc != NULL) return 0; /* the previous one stays */
    uvg__channel_set_error(ch, "invalid service config: %s", err);
    uvg__channel_set_picker(ch, UVG_STATE_TRANSIENT_FAILURE, NULL, NULL, NULL);
    return -1;
  }
  if (ch->sc != NULL) uvg__service_config_unref(ch->sc);
  ch->sc = sc;
  return 0;
}

/* gRFC A6: the channel's throttle follows the config; a new limit keeps
 * the share of tokens left. */
static void update_throttle(uvg_channel_t *ch) {
  const uvg__service_config_t *sc = ch->sc;
  if (sc == NULL || !sc->has_retry_throttling) {
    ch->throttle_on = 0;
  } else if (!ch->throttle_on) {
    uvg__retry_throttle_init(&ch->throttle, sc->max_milli_tokens, sc->milli_token_ratio);
    ch->throttle_on = 1;
  } else {
    uvg__retry_throttle_update(&ch->throttle, sc->max_milli_tokens, sc->milli_token_ratio);
  }
}

void uvg__lb_resolved(uvg_channel_t *ch, const uvg_address_t *addrs, size_t n,
                      const char *service_config) {
  uvg_lb_t *lb = &ch->lb;
  if (take_service_config(ch, service_config) != 0) return;
  ch->sc_known = 1;
  update_throttle(ch);
  const uvg_lb_policy_type_t *want = ch->lb_default;
  const char *config = "{}";
  if (ch->sc != NULL && ch->sc->lb_policy != NULL) {
    want = uvg__lb_find(ch->sc->lb_policy); /* supported: checked at parse */
    if (ch->sc->lb_config != NULL) config = ch->sc->lb_config;
  }
  int fresh = 0;
  if (current(lb) && lb->type != want) { /* another policy */
    uvg__lb_destroy(ch);
    if (!ch->closing) uvg__channel_set_picker(ch, UVG_STATE_CONNECTING, NULL, NULL, NULL);
  }
  if (!current(lb)) {
    fresh = 1;
    lb->ch = ch;
    lb->type = want;
    int rc = want->create(lb, &lb->state);
    if (rc != 0) {
      lb->type = NULL;
      uvg__channel_set_error(ch, "LB policy %s: %s", want->name, uvg_strerror(rc));
      uvg__channel_set_picker(ch, UVG_STATE_TRANSIENT_FAILURE, NULL, NULL, NULL);
      return;
    }
  }
  int rc = lb->type->update(lb->state, addrs, n, config);
  if (rc != 0) {
    uvg__log(UVG_LOG_WARN, "LB policy %s refused its update: %s", lb->type->name,
             uvg_strerror(rc));
    /* a policy that never took addresses has nothing to serve with */
    if (fresh) {
      uvg__channel_set_error(ch, "LB policy %s refused its configuration",
                             lb->type->name);
      uvg__lb_destroy(ch);
      uvg__channel_set_picker(ch, UVG_STATE_TRANSIENT_FAILURE, NULL, NULL, NULL);
    }
  }
  uvg__health_config_changed(ch);
}

void uvg__lb_resolver_error(uvg_channel_t *ch, const char *message) {
  uvg__channel_set_error(ch, "%s", message);
  if (current(&ch->lb) && ch->lb.type->resolver_error != NULL) {
    ch->lb.type->resolver_error(ch->lb.state, message);
    return;
  }
  if (!current(&ch->lb))
    uvg__channel_set_picker(ch, UVG_STATE_TRANSIENT_FAILURE, NULL, NULL, NULL);
}

void uvg__lb_destroy(uvg_channel_t *ch) {
  uvg_lb_t *lb = &ch->lb;
  if (!current(lb)) return;
  const uvg_lb_policy_type_t *t = lb->type;
  lb->type = NULL;
  t->destroy(lb->state);
  lb->state = NULL;
  /* its picker names subchannels that are gone now */
  if (ch->free_picker != NULL) ch->free_picker(ch->picker);
  ch->pick = NULL;
  ch->picker = NULL;
  ch->free_picker = NULL;
}

static void run_subchannel_state(void *arg, int status) {
  uvg_subchannel_t *sc = arg;
  uvg_channel_t *ch = sc->ch;
  /* the policy may change the state again as it hears (a connect): those
   * changes are appended and told in this same loop */
  while (status == 0 && sc->npend > 0 && !sc->released && current(&ch->lb)) {
    uvg_connectivity_t st = sc->pend[0];
    memmove(sc->pend, sc->pend + 1, --sc->npend * sizeof(sc->pend[0]));
    if (st == sc->reported) continue;
    sc->reported = st;
    ch->lb.type->subchannel_state(ch->lb.state, sc, st,
                                  st == UVG_STATE_TRANSIENT_FAILURE ? sc->last_error
                                                                    : "");
  }
  uvg__subchannel_unref(sc);
}

void uvg__lb_post_subchannel_state(uvg_subchannel_t *sc) {
  size_t max = UVG__ARRAY_SIZE(sc->pend);
  /* READY lost before the policy heard of it was never usable: the policy
   * sees the attempt end as it ended (a server that answers SETTINGS and
   * GOAWAY together, say), not a READY it would pick */
  if (sc->npend > 0 && sc->pend[sc->npend - 1] == UVG_STATE_READY &&
      sc->state != UVG_STATE_READY)
    sc->npend--;
  if (sc->npend == max) sc->npend--;
  sc->pend[sc->npend++] = sc->state;
  if (uvg__work_queued(&sc->w_state)) return;
  if (uvg__workq_post_node(&sc->ch->q, &sc->w_state, run_subchannel_state, sc) == 0)
    sc->refs++;
}

/* ---- what a policy calls ---- */

int uvg_lb_subchannel_new(uvg_lb_t *lb, const uvg_address_t *addr,
                          uvg_subchannel_t **out) {
  if (lb == NULL || addr == NULL || out == NULL || !current(lb)) return UVG_EINVAL;
  return uvg__subchannel_new(lb->ch, addr, out);
}

void uvg_lb_update_state(uvg_lb_t *lb, uvg_connectivity_t state, uvg_pick_fn pick,
                         void *picker, void (*free_picker)(void *picker)) {
  if (!current(lb)) { /* destroyed: nothing listens any more */
    if (free_picker != NULL) free_picker(picker);
    return;
  }
  uvg__channel_set_picker(lb->ch, state, pick, picker, free_picker);
}

void uvg_lb_request_resolution(uvg_lb_t *lb) {
  if (current(lb)) uvg__resolver_resolve_now(lb->ch);
}

uv_loop_t *uvg_lb_loop(const uvg_lb_t *lb) { return lb->ch->loop; }

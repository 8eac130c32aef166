/* Metadata keys and values, base64 for "-bin" values, and grpc-message
 * percent-encoding (doc/PROTOCOL-HTTP2.md, "Custom-Metadata" and
 * "Status-Message"). */
#include <string.h>

#include "rpc.h"

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t uvg__base64_len(size_t n) { return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0); }

/* PROTOCOL-HTTP2.md: "Implementations MUST accept padded and un-padded
 * values and should emit un-padded values." */
char *uvg__base64_encode(const uint8_t *p, size_t n, size_t *out_len) {
  size_t len = uvg__base64_len(n);
  char *o = uvg__malloc(len + 1), *w = o;
  if (o == NULL) return NULL;
  size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
    *w++ = b64[v >> 18];
    *w++ = b64[(v >> 12) & 63];
    *w++ = b64[(v >> 6) & 63];
    *w++ = b64[v & 63];
  }
  if (i < n) {
    uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
    *w++ = b64[v >> 18];
    *w++ = b64[(v >> 12) & 63];
    if (i + 1 < n) *w++ = b64[(v >> 6) & 63];
  }
  *w = '\0';
  *out_len = len;
  return o;
}

static int b64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

uint8_t *uvg__base64_decode(const char *s, size_t n, size_t *out_len) {
  /* "Implementations MUST accept padded and un-padded values." */
  while (n > 0 && s[n - 1] == '=') n--;
  if (n % 4 == 1) {
    *out_len = SIZE_MAX;
    return NULL;
  }
  uint8_t *o = uvg__malloc(n / 4 * 3 + 3), *w = o;
  if (o == NULL) {
    *out_len = 0;
    return NULL;
  }
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    int v = b64_value(s[i]);
    if (v < 0) {
      uvg__free(o);
      *out_len = SIZE_MAX;
      return NULL;
    }
    acc = acc << 6 | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      *w++ = (uint8_t)(acc >> bits);
    }
  }
  *out_len = (size_t)(w - o);
  return o;
}

static int unreserved_char(unsigned char c) { return c >= 0x20 && c <= 0x7e && c != '%'; }

char *uvg__percent_encode(const char *s, size_t n) {
  static const char hex[] = "0123456789ABCDEF";
  size_t len = 0;
  for (size_t i = 0; i < n; i++) len += unreserved_char((unsigned char)s[i]) ? 1 : 3;
  char *o = uvg__malloc(len + 1), *w = o;
  if (o == NULL) return NULL;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (unreserved_char(c)) {
      *w++ = (char)c;
    } else {
      *w++ = '%';
      *w++ = hex[c >> 4];
      *w++ = hex[c & 15];
    }
  }
  *w = '\0';
  return o;
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

char *uvg__percent_decode(const char *s, size_t n) {
  char *o = uvg__malloc(n + 1), *w = o;
  if (o == NULL) return NULL;
  for (size_t i = 0; i < n; i++) {
    int hi, lo;
    if (s[i] == '%' && i + 2 < n &&
        (hi = hex_value(s[i + 1])) >= 0 && (lo = hex_value(s[i + 2])) >= 0) {
      *w++ = (char)(hi << 4 | lo);
      i += 2;
    } else {
      *w++ = s[i];
    }
  }
  *w = '\0';
  return o;
}

int uvg__md_key_valid(const char *key, size_t n) {
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = key[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '-' || c == '.'))
      return 0;
  }
  return 1;
}

int uvg__md_value_valid(const uint8_t *v, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (v[i] < 0x20 || v[i] > 0x7e) return 0;
  return 1;
}

int uvg__md_key_is_bin(const char *key, size_t n) {
  return n >= 4 && memcmp(key + n - 4, "-bin", 4) == 0;
}

static int key_is(const char *key, size_t n, const char *lit) {
  return strlen(lit) == n && memcmp(key, lit, n) == 0;
}

int uvg__md_key_reserved(const char *key, size_t n) {
  if (n > 0 && key[0] == ':') return 1;
  /* gRFC A6: a server's trailers may ask the client to wait or stop */
  if (key_is(key, n, "grpc-status-details-bin") ||
      key_is(key, n, "grpc-retry-pushback-ms"))
    return 0;
  if (n >= 5 && memcmp(key, "grpc-", 5) == 0) return 1;
  return key_is(key, n, "content-type") || key_is(key, n, "te") ||
         key_is(key, n, "user-agent") || key_is(key, n, "connection") ||
         key_is(key, n, "host") || key_is(key, n, "transfer-encoding") ||
         key_is(key, n, "keep-alive") || key_is(key, n, "upgrade") ||
         key_is(key, n, "proxy-connection");
}

void uvg__md_list_init(uvg__md_list_t *l) {
  l->items = NULL;
  l->n = l->cap = 0;
  l->arena = NULL;
}

void uvg__md_list_init_arena(uvg__md_list_t *l, uvg__arena_t *arena) {
  uvg__md_list_init(l);
  l->arena = arena;
}

/* Releases what the list allocated itself; nothing of an arena's. */
static void release(const uvg__md_list_t *l, void *p) {
  if (l->arena == NULL) uvg__free(p);
}

static void *grow_items(uvg__md_list_t *l, size_t cap) {
  if (l->arena == NULL) return uvg__realloc(l->items, cap * sizeof(*l->items));
  uvg_metadata_t *items = uvg__arena_alloc(l->arena, cap * sizeof(*items));
  if (items != NULL && l->n > 0) memcpy(items, l->items, l->n * sizeof(*items));
  return items;
}

int uvg__md_list_reserve(uvg__md_list_t *l) {
  if (l->n < l->cap) return 0;
  size_t cap = l->cap ? l->cap * 2 : 4;
  uvg_metadata_t *items = grow_items(l, cap);
  if (items == NULL) return UVG_ENOMEM;
  l->items = items;
  l->cap = cap;
  return 0;
}

/* A NUL-terminated copy where the list keeps its entries, or NULL. */
static char *copy_bytes(const uvg__md_list_t *l, const void *p, size_t n) {
  return l->arena ? uvg__arena_strndup(l->arena, p, n) : uvg__strndup(p, n);
}

/* Appends an entry that takes ownership of key and value. */
static int push_owned(uvg__md_list_t *l, char *key, uint8_t *value, size_t vlen) {
  if (uvg__md_list_reserve(l) != 0) {
    release(l, key);
    release(l, value);
    return UVG_ENOMEM;
  }
  l->items[l->n].key = key;
  l->items[l->n].value = value;
  l->items[l->n].value_len = vlen;
  l->n++;
  return 0;
}

int uvg__md_list_add(uvg__md_list_t *l, const char *key, size_t key_len,
                     const uint8_t *value, size_t value_len) {
  char *k = copy_bytes(l, key, key_len);
  /* NUL-terminated as a courtesy to ASCII readers; value_len excludes it. */
  char *v = copy_bytes(l, value, value_len);
  if (k == NULL || v == NULL) {
    release(l, k);
    release(l, v);
    return UVG_ENOMEM;
  }
  return push_owned(l, k, (uint8_t *)v, value_len);
}

int uvg__md_list_add_wire(uvg__md_list_t *l, const char *key, size_t key_len,
                          const uint8_t *value, size_t value_len) {
  if (!uvg__md_key_is_bin(key, key_len))
    return uvg__md_list_add(l, key, key_len, value, value_len);
  /* Binary headers may arrive comma-joined; each piece is one value. */
  const char *p = (const char *)value, *end = p + value_len;
  for (;;) {
    const char *comma = memchr(p, ',', (size_t)(end - p));
    const char *stop = comma ? comma : end;
    while (p < stop && *p == ' ') p++;
    size_t n, dlen;
    for (n = (size_t)(stop - p); n > 0 && p[n - 1] == ' ';) n--;
    uint8_t *d = uvg__base64_decode(p, n, &dlen);
    if (d == NULL) return dlen == SIZE_MAX ? UVG_EINVAL : UVG_ENOMEM;
    char *k = copy_bytes(l, key, key_len);
    uint8_t *v = l->arena ? (uint8_t *)copy_bytes(l, d, dlen)
                          : uvg__realloc(d, dlen + 1);
    if (k == NULL || v == NULL) {
      release(l, k);
      if (v != NULL) release(l, v);
      if (v == NULL || l->arena) uvg__free(d);
      return UVG_ENOMEM;
    }
    if (l->arena) uvg__free(d);
    v[dlen] = '\0';
    int rc = push_owned(l, k, v, dlen);
    if (rc != 0) return rc;
    if (comma == NULL) return 0;
    p = comma + 1;
  }
}

int uvg__md_list_add_app(uvg__md_list_t *l, const uvg_metadata_t *md, size_t n) {
  for (size_t i = 0; i < n; i++) {
    size_t klen = md[i].key ? strlen(md[i].key) : 0;
    if (!uvg__md_key_valid(md[i].key, klen) || uvg__md_key_reserved(md[i].key, klen))
      return UVG_EINVAL;
    if (md[i].value == NULL && md[i].value_len > 0) return UVG_EINVAL;
    if (!uvg__md_key_is_bin(md[i].key, klen) &&
        !uvg__md_value_valid(md[i].value, md[i].value_len))
      return UVG_EINVAL;
  }
  for (size_t i = 0; i < n; i++) {
    int rc = uvg__md_list_add(l, md[i].key, strlen(md[i].key), md[i].value,
                              md[i].value_len);
    if (rc != 0) return rc;
  }
  return 0;
}

void uvg__md_list_remove(uvg__md_list_t *l, const char *key) {
  size_t kept = 0;
  for (size_t i = 0; i < l->n; i++) {
    if (strcmp(l->items[i].key, key) == 0) {
      release(l, (void *)l->items[i].key);
      release(l, (void *)l->items[i].value);
    } else {
      l->items[kept++] = l->items[i];
    }
  }
  l->n = kept;
}

const uvg_metadata_t *uvg__md_list_get(const uvg__md_list_t *l, const char *key) {
  for (size_t i = 0; i < l->n; i++)
    if (strcmp(l->items[i].key, key) == 0) return &l->items[i];
  return NULL;
}

void uvg__md_list_free(uvg__md_list_t *l) {
  for (size_t i = 0; i < l->n; i++) {
    release(l, (void *)l->items[i].key);
    release(l, (void *)l->items[i].value);
  }
  release(l, l->items);
  uvg__md_list_init_arena(l, l->arena);
}

int uvg__status_parse(const char *s, size_t n) {
  if (n == 0 || n > 3) return -1;
  int v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

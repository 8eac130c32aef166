/*
 * Records seed inputs for the fuzz targets from the tests' real traffic
 * (docs/fuzzing.md, "Seeds"). Not part of any build: linked into a
 * throw-away build of the tests with -Wl,--wrap for each function below,
 * it saves what each parser is handed, in the target's input format, to
 * $UVG_FUZZ_RECORD/<target>/, one file per input (per connection for the
 * byte streams), then calls the real function.
 */
#include <mbedtls/ssl.h>
#include <nghttp2/nghttp2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct uvg__deframer_s uvg__deframer_t;

static unsigned seq;

static FILE *open_new(const char *target, const char *mode, char *path,
                      size_t len) {
  const char *dir = getenv("UVG_FUZZ_RECORD");
  if (dir == NULL) return NULL;
  char d[512];
  snprintf(d, sizeof(d), "%s/%s", dir, target);
  mkdir(d, 0777);
  snprintf(path, len, "%s/%d-%u", d, (int)getpid(), seq++);
  return fopen(path, mode);
}

static void save(const char *target, int prefix, const void *a, size_t an,
                 int sep, const void *b, size_t bn) {
  char path[600];
  FILE *f = open_new(target, "wb", path, sizeof(path));
  if (f == NULL) return;
  if (prefix >= 0) fputc(prefix, f);
  fwrite(a, 1, an, f);
  if (sep >= 0) fputc(sep, f);
  if (b != NULL) fwrite(b, 1, bn, f);
  fclose(f);
}

/* ---- the small parsers ---- */

__attribute__((weak)) int __real_uvg__timeout_parse(const char *s, size_t n, uint64_t *ms);
int __wrap_uvg__timeout_parse(const char *s, size_t n, uint64_t *ms) {
  save("timeout", -1, s, n, -1, NULL, 0);
  return __real_uvg__timeout_parse(s, n, ms);
}

__attribute__((weak)) char *__real_uvg__percent_decode(const char *s, size_t n);
char *__wrap_uvg__percent_decode(const char *s, size_t n) {
  save("percent", -1, s, n, -1, NULL, 0);
  return __real_uvg__percent_decode(s, n);
}

__attribute__((weak)) uint8_t *__real_uvg__base64_decode(const char *s, size_t n, size_t *out_len);
uint8_t *__wrap_uvg__base64_decode(const char *s, size_t n, size_t *out_len) {
  save("base64", 0, s, n, -1, NULL, 0);
  return __real_uvg__base64_decode(s, n, out_len);
}

__attribute__((weak)) int __real_uvg__md_list_add_wire(void *l, const char *key, size_t key_len,
                                 const uint8_t *value, size_t value_len);
int __wrap_uvg__md_list_add_wire(void *l, const char *key, size_t key_len,
                                 const uint8_t *value, size_t value_len) {
  save("base64", 1, key, key_len, ':', value, value_len);
  return __real_uvg__md_list_add_wire(l, key, key_len, value, value_len);
}

typedef int (*deframe_cb)(void *arg, int compressed, uint8_t *msg,
                          uint32_t len);
__attribute__((weak)) int __real_uvg__deframer_feed(uvg__deframer_t *d, const uint8_t *p, size_t n,
                              deframe_cb cb, void *arg);
int __wrap_uvg__deframer_feed(uvg__deframer_t *d, const uint8_t *p, size_t n,
                              deframe_cb cb, void *arg) {
  /* max 4 MiB, pieces of 256 */
  uint8_t head[2] = {3, 255};
  save("deframer", -1, head, 2, -1, p, n);
  return __real_uvg__deframer_feed(d, p, n, cb, arg);
}

typedef int (*lb_cb)(const char *name, void *arg);
__attribute__((weak)) int __real_uvg__service_config_parse(const char *json, size_t len, lb_cb cb,
                                     void *arg, void **out, char *err,
                                     size_t errlen);
int __wrap_uvg__service_config_parse(const char *json, size_t len, lb_cb cb,
                                     void *arg, void **out, char *err,
                                     size_t errlen) {
  save("service_config", 0x06, json, len, -1, NULL, 0);
  return __real_uvg__service_config_parse(json, len, cb, arg, out, err, errlen);
}

__attribute__((weak)) int __real_uvg__service_config_parse_choices(const char *json, size_t len,
                                             const char *host, unsigned draw,
                                             lb_cb cb, void *arg, void **out,
                                             char *err, size_t errlen);
int __wrap_uvg__service_config_parse_choices(const char *json, size_t len,
                                             const char *host, unsigned draw,
                                             lb_cb cb, void *arg, void **out,
                                             char *err, size_t errlen) {
  save("service_config", 0x07, json, len, -1, NULL, 0);
  return __real_uvg__service_config_parse_choices(json, len, host, draw, cb,
                                                  arg, out, err, errlen);
}

__attribute__((weak)) int __real_uvg__target_parse(const char *t, void *out, char *err, size_t n);
int __wrap_uvg__target_parse(const char *t, void *out, char *err, size_t n) {
  if (t != NULL) save("target", 0, t, strlen(t), -1, NULL, 0);
  return __real_uvg__target_parse(t, out, err, n);
}

__attribute__((weak)) int __real_uvg__proxy_url_parse(const char *u, void *out, char *err, size_t n);
int __wrap_uvg__proxy_url_parse(const char *u, void *out, char *err, size_t n) {
  save("target", 1, u, strlen(u), -1, NULL, 0);
  return __real_uvg__proxy_url_parse(u, out, err, n);
}

__attribute__((weak)) int __real_uvg__no_proxy_match(const char *list, const char *host);
int __wrap_uvg__no_proxy_match(const char *list, const char *host) {
  save("target", 2, list, strlen(list), 0, host, strlen(host));
  return __real_uvg__no_proxy_match(list, host);
}

/* ---- byte streams: one file per connection, appended to ---- */

#define MAX_STREAMS 256
static struct {
  const void *key;
  char path[600];
} streams[MAX_STREAMS];

static void append(const void *key, const char *target, const void *p,
                   size_t n) {
  int i, free_i = -1;
  for (i = 0; i < MAX_STREAMS; i++) {
    if (streams[i].key == key) break;
    if (free_i < 0 && streams[i].key == NULL) free_i = i;
  }
  FILE *f;
  if (i == MAX_STREAMS) {
    if (free_i < 0) free_i = (int)(seq % MAX_STREAMS);
    f = open_new(target, "wb", streams[free_i].path,
                 sizeof(streams[free_i].path));
    if (f == NULL) return;
    streams[free_i].key = key;
  } else {
    f = fopen(streams[i].path, "ab");
    if (f == NULL) return;
  }
  fwrite(p, 1, n, f);
  fclose(f);
}

__attribute__((weak)) ssize_t __real_nghttp2_session_mem_recv(nghttp2_session *s, const uint8_t *in,
                                        size_t n);
ssize_t __wrap_nghttp2_session_mem_recv(nghttp2_session *s, const uint8_t *in,
                                        size_t n) {
  append(s, nghttp2_session_check_server_session(s) ? "server" : "client", in,
         n);
  return __real_nghttp2_session_mem_recv(s, in, n);
}

__attribute__((weak)) void __real_nghttp2_session_del(nghttp2_session *s);
void __wrap_nghttp2_session_del(nghttp2_session *s) {
  for (int i = 0; i < MAX_STREAMS; i++)
    if (streams[i].key == s) streams[i].key = NULL;
  __real_nghttp2_session_del(s);
}

/* TLS: the record bytes each side's mbedtls reads, through its recv. */
static struct {
  mbedtls_ssl_context *ssl;
  mbedtls_ssl_recv_t *recv;
} bios[MAX_STREAMS];

static int rec_recv(void *ctx, unsigned char *buf, size_t len) {
  for (int i = 0; i < MAX_STREAMS; i++) {
    if (bios[i].ssl == NULL || bios[i].ssl->p_bio != ctx) continue;
    int rc = bios[i].recv(ctx, buf, len);
    if (rc > 0)
      append(bios[i].ssl,
             bios[i].ssl->conf->endpoint == MBEDTLS_SSL_IS_SERVER ? "tls_server"
                                                                  : "tls_client",
             buf, (size_t)rc);
    return rc;
  }
  abort();
}

__attribute__((weak)) void __real_mbedtls_ssl_set_bio(mbedtls_ssl_context *ssl, void *p_bio,
                                mbedtls_ssl_send_t *f_send,
                                mbedtls_ssl_recv_t *f_recv,
                                mbedtls_ssl_recv_timeout_t *f_recv_timeout);
void __wrap_mbedtls_ssl_set_bio(mbedtls_ssl_context *ssl, void *p_bio,
                                mbedtls_ssl_send_t *f_send,
                                mbedtls_ssl_recv_t *f_recv,
                                mbedtls_ssl_recv_timeout_t *f_recv_timeout) {
  int i;
  for (i = 0; i < MAX_STREAMS && bios[i].ssl != NULL && bios[i].ssl != ssl; i++)
    ;
  if (i == MAX_STREAMS) i = (int)(seq % MAX_STREAMS);
  bios[i].ssl = ssl;
  bios[i].recv = f_recv;
  __real_mbedtls_ssl_set_bio(ssl, p_bio, f_send, rec_recv, f_recv_timeout);
}

__attribute__((weak)) void __real_mbedtls_ssl_free(mbedtls_ssl_context *ssl);
void __wrap_mbedtls_ssl_free(mbedtls_ssl_context *ssl) {
  for (int i = 0; i < MAX_STREAMS; i++) {
    if (bios[i].ssl == ssl) bios[i].ssl = NULL;
    if (streams[i].key == ssl) streams[i].key = NULL;
  }
  __real_mbedtls_ssl_free(ssl);
}

/*
 * file_resolver: a resolver of the application's own, on uvgrpc's plug-in
 * API. Target "file:PATH" resolves to the addresses listed in PATH, one
 * "IPv4:port" or "[IPv6]:port" per line ('#' starts a comment); the file
 * is watched, and every change is pushed to the channel, which spreads
 * calls over the addresses with round_robin (from its service config).
 *
 *   file_resolver --file backends.txt [--count N] [--interval-ms MS]
 *
 * It calls helloworld.Greeter/SayHello N times, MS apart, prints each
 * reply and each resolution, then closes the channel.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uvgrpc.h>

#include "helloworld.pb-c.h"

/* ---- the resolver ---- */

typedef struct {
  uvg_resolver_t *r;
  char *path;
  uv_fs_event_t watch;
  int watching;
} file_resolver_t;

/* One "host:port" line into an address; 0 on success. */
static int parse_line(char *line, uvg_address_t *a) {
  char *port = strrchr(line, ':');
  if (port == NULL) return -1;
  *port++ = '\0';
  memset(a, 0, sizeof(*a));
  if (line[0] == '[') {
    size_t n = strlen(line);
    if (n < 2 || line[n - 1] != ']') return -1;
    line[n - 1] = '\0';
    a->addrlen = sizeof(struct sockaddr_in6);
    return uv_ip6_addr(line + 1, atoi(port), (struct sockaddr_in6 *)&a->addr);
  }
  a->addrlen = sizeof(struct sockaddr_in);
  return uv_ip4_addr(line, atoi(port), (struct sockaddr_in *)&a->addr);
}

/* Reads the file and pushes what it lists (or an error) to the channel. */
static void push_file(file_resolver_t *f) {
  FILE *fp = fopen(f->path, "r");
  if (fp == NULL) {
    uvg_resolver_error(f->r, "cannot read the address file");
    return;
  }
  uvg_address_t addrs[64];
  size_t n = 0;
  char line[256];
  while (n < 64 && fgets(line, sizeof(line), fp) != NULL) {
    line[strcspn(line, "#\r\n")] = '\0';
    if (line[0] != '\0' && parse_line(line, &addrs[n]) == 0) n++;
  }
  fclose(fp);
  printf("file resolver: %zu address%s in %s\n", n, n == 1 ? "" : "es", f->path);
  fflush(stdout);
  /* none is an error the channel reports to calls that cannot wait */
  uvg_resolver_update(f->r, addrs, n, NULL);
}

static void on_change(uv_fs_event_t *h, const char *name, int events, int status) {
  (void)name;
  (void)events;
  if (status == 0) push_file(h->data);
}

static int fr_start(uvg_resolver_t *r, const uvg_target_info_t *t, void **state) {
  if (t->endpoint[0] == '\0') return UVG_EADDR;
  file_resolver_t *f = calloc(1, sizeof(*f));
  if (f == NULL) return UVG_ENOMEM;
  f->r = r;
  /* "file:backends.txt"; "file:/abs/b.txt" and "file:///abs/b.txt" are
   * absolute (the endpoint is the path without its first '/') */
  const char *rest = t->target + strlen(t->scheme) + 1;
  size_t n = strlen(t->endpoint) + 2;
  if ((f->path = malloc(n)) == NULL) {
    free(f);
    return UVG_ENOMEM;
  }
  snprintf(f->path, n, "%s%s", rest[0] == '/' ? "/" : "", t->endpoint);
  uv_fs_event_init(uvg_resolver_loop(r), &f->watch);
  f->watch.data = f;
  f->watching = uv_fs_event_start(&f->watch, on_change, f->path, 0) == 0;
  *state = f;
  push_file(f);
  return 0;
}

static void on_watch_closed(uv_handle_t *h) {
  file_resolver_t *f = h->data;
  free(f->path);
  free(f);
}

static void fr_stop(void *state) {
  file_resolver_t *f = state;
  uv_close((uv_handle_t *)&f->watch, on_watch_closed);
}

static const uvg_resolver_type_t file_resolver = {
    .scheme = "file", .start = fr_start, .resolve_now = NULL, .stop = fr_stop};

/* ---- the client ---- */

static uvg_channel_t *channel;
static uv_timer_t tick;
static int left, outstanding, failed;
static uint8_t request[64];
static size_t request_len;

static void on_reply(const uvg_status_t *status, const uint8_t *reply, size_t len,
                     void *ud) {
  (void)ud;
  outstanding--;
  Helloworld__HelloReply *r =
      status->code == UVG_STATUS_OK ? helloworld__hello_reply__unpack(NULL, len, reply) : NULL;
  if (r == NULL) {
    fprintf(stderr, "file_resolver: %s: %s\n", uvg_status_code_name(status->code),
            status->message);
    failed = 1;
  } else {
    printf("reply: %s\n", r->message);
    fflush(stdout);
    helloworld__hello_reply__free_unpacked(r, NULL);
  }
  if (left == 0 && outstanding == 0) uvg_channel_close(channel, NULL, NULL);
}

static void on_tick(uv_timer_t *t) {
  uvg_client_call_options_t opts = {.timeout_ms = 5000, .wait_for_ready = 1};
  if (uvg_channel_unary(channel, "/helloworld.Greeter/SayHello", request, request_len,
                        &opts, on_reply, NULL) == 0)
    outstanding++;
  if (--left == 0) uv_close((uv_handle_t *)t, NULL);
}

int main(int argc, char **argv) {
  const char *file = NULL;
  int count = 5, interval = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--file") == 0) file = argv[i + 1];
    else if (strcmp(argv[i], "--count") == 0) count = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--interval-ms") == 0) interval = atoi(argv[i + 1]);
  }
  if (file == NULL || count < 1) {
    fprintf(stderr, "usage: %s --file PATH [--count N] [--interval-ms MS]\n", argv[0]);
    return 2;
  }
  uvg_resolver_register(&file_resolver);
  char target[512];
  snprintf(target, sizeof(target), "file:%s", file);
  uvg_channel_options_t o;
  uvg_channel_options_init(&o);
  o.default_service_config = "{\"loadBalancingConfig\": [{\"round_robin\": {}}]}";
  uv_loop_t *loop = uv_default_loop();
  int err = uvg_channel_new(loop, target, uvg_insecure_channel_credentials(), &o, &channel);
  if (err != 0) {
    fprintf(stderr, "file_resolver: %s: %s\n", target, uvg_strerror(err));
    return 1;
  }
  Helloworld__HelloRequest req = HELLOWORLD__HELLO_REQUEST__INIT;
  req.name = "file resolver";
  request_len = helloworld__hello_request__pack(&req, request);
  left = count;
  uv_timer_init(loop, &tick);
  uv_timer_start(&tick, on_tick, 0, (uint64_t)interval);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  return failed;
}

/*
 * protoc-gen-uvgrpc: a protoc plugin writing uvgrpc's typed server and
 * client code for protobuf-c messages.
 *
 *   protoc --plugin=protoc-gen-uvgrpc --uvgrpc_out=[OPTIONS:]DIR FILE.proto
 *
 * For each FILE.proto it writes FILE.uvgrpc.h and FILE.uvgrpc.c, to be
 * compiled beside protoc-c's FILE.pb-c.h and FILE.pb-c.c. Options, comma
 * separated:
 *
 *   pb_c                also write FILE.pb-c.h and FILE.pb-c.c, by running
 *                       protoc-gen-c (protobuf-c's plugin) on the request
 *                       with the services taken out: protoc-c's own
 *                       service code does not compile for a method named
 *                       like a C keyword (default, register...) or like
 *                       one of its own names (init, descriptor), and is
 *                       not used by uvgrpc anyway
 *   protoc_gen_c=PATH   the protoc-gen-c to run (default: from PATH)
 *
 * The plugin protocol (google/protobuf/compiler/plugin.proto): protoc
 * writes a CodeGeneratorRequest to stdin and reads a CodeGeneratorResponse
 * from stdout. A problem with the .proto files goes back in the response's
 * `error`, which protoc prints; input that is not a request at all is
 * reported on stderr with a non-zero exit.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "plugin.h"

typedef Google__Protobuf__Compiler__CodeGeneratorRequest request_t;
typedef Google__Protobuf__Compiler__CodeGeneratorResponse response_t;
typedef Google__Protobuf__Compiler__CodeGeneratorResponse__File response_file_t;

extern char **environ;

static const char *prog = "protoc-gen-uvgrpc";
static request_t *req; /* freed on every way out, for leak checkers */

static void die(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "%s: ", prog);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  if (req != NULL)
    google__protobuf__compiler__code_generator_request__free_unpacked(req,
                                                                      NULL);
  pool_free();
  exit(1);
}

/* Reads all of `fd`. */
static uint8_t *read_all(int fd, size_t *len) {
  size_t cap = 64 * 1024, n = 0;
  uint8_t *buf = xmalloc(cap);
  for (;;) {
    if (n == cap) buf = xrealloc(buf, cap *= 2);
    ssize_t r = read(fd, buf + n, cap - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) die("cannot read stdin: %s", strerror(errno));
    if (r == 0) break;
    n += (size_t)r;
  }
  *len = n;
  return buf;
}

static int write_all(int fd, const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Runs `argv0` with `in` on its stdin and returns its stdout, or NULL with
 * *err set. Both pipes are served together, so a child that writes before
 * it has read everything cannot block us or itself. */
static uint8_t *run_filter(const char *argv0, const uint8_t *in, size_t in_len,
                           size_t *out_len, const char **err) {
  int to[2], from[2];
  if (pipe(to) != 0 || pipe(from) != 0) {
    *err = pstrf("pipe: %s", strerror(errno));
    return NULL;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, to[0], 0);
  posix_spawn_file_actions_adddup2(&fa, from[1], 1);
  posix_spawn_file_actions_addclose(&fa, to[1]);
  posix_spawn_file_actions_addclose(&fa, from[0]);
  pid_t pid;
  char *argv[] = {(char *)argv0, NULL};
  int rc = posix_spawnp(&pid, argv0, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(to[0]);
  close(from[1]);
  if (rc != 0) {
    close(to[1]);
    close(from[0]);
    *err = pstrf("cannot run %s: %s", argv0, strerror(rc));
    return NULL;
  }
  /* A child that exits early must not kill us with SIGPIPE. */
  signal(SIGPIPE, SIG_IGN);
  fcntl(to[1], F_SETFL, O_NONBLOCK);
  size_t cap = 64 * 1024, n = 0, sent = 0;
  uint8_t *out = xmalloc(cap);
  int wfd = in_len > 0 ? to[1] : -1;
  if (wfd < 0) close(to[1]);
  for (;;) {
    struct pollfd pf[2] = {{from[0], POLLIN, 0}, {wfd, POLLOUT, 0}};
    if (poll(pf, wfd >= 0 ? 2 : 1, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (wfd >= 0 && (pf[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t w = write(wfd, in + sent, in_len - sent);
      if (w > 0) sent += (size_t)w;
      if (w < 0 && errno != EAGAIN && errno != EINTR) sent = in_len;
      if (sent == in_len) {
        close(wfd);
        wfd = -1;
      }
    }
    if (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      if (n == cap) out = xrealloc(out, cap *= 2);
      ssize_t r = read(from[0], out + n, cap - n);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      n += (size_t)r;
    }
  }
  if (wfd >= 0) close(wfd);
  close(from[0]);
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    free(out);
    *err = pstrf("%s failed (exit status %d)", argv0,
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return NULL;
  }
  *out_len = n;
  return out;
}

/* protoc-c's messages for the files of the request, without its service
 * code: the services are taken out of every file before protoc-gen-c sees
 * the request. Its files are appended to g->files. Returns 0, or -1 with
 * g->error set. */
static int generate_pb_c(gen_t *g, const options_t *o) {
  /* Hidden for the packing only: the request still owns its services. */
  size_t *nservice = xmalloc((req->n_proto_file + 1) * sizeof(*nservice));
  for (size_t i = 0; i < req->n_proto_file; i++) {
    nservice[i] = req->proto_file[i]->n_service;
    req->proto_file[i]->n_service = 0;
  }
  char *param = req->parameter;
  req->parameter = NULL;
  size_t len = protobuf_c_message_get_packed_size(&req->base);
  uint8_t *bytes = xmalloc(len);
  protobuf_c_message_pack(&req->base, bytes);
  req->parameter = param;
  for (size_t i = 0; i < req->n_proto_file; i++)
    req->proto_file[i]->n_service = nservice[i];
  free(nservice);
  const char *err = NULL;
  size_t out_len = 0;
  uint8_t *out = run_filter(o->protoc_gen_c, bytes, len, &out_len, &err);
  free(bytes);
  if (out == NULL) {
    g->error = pstrf("pb_c: %s", err);
    return -1;
  }
  response_t *resp =
      google__protobuf__compiler__code_generator_response__unpack(NULL, out_len,
                                                                  out);
  free(out);
  if (resp == NULL) {
    g->error =
        pstrf("pb_c: %s wrote no CodeGeneratorResponse", o->protoc_gen_c);
    return -1;
  }
  int rc = 0;
  if (resp->error != NULL) {
    g->error = pstrf("pb_c: %s", resp->error);
    rc = -1;
  }
  for (size_t i = 0; i < resp->n_file && rc == 0; i++) {
    const response_file_t *f = resp->file[i];
    if (f->name == NULL || f->insertion_point != NULL) continue;
    g->files = xrealloc(g->files, (g->nfiles + 1) * sizeof(*g->files));
    out_file_t *of = &g->files[g->nfiles++];
    of->name = pstrf("%s", f->name);
    memset(&of->content, 0, sizeof(of->content));
    if (f->content != NULL)
      sb_addn(&of->content, f->content, strlen(f->content));
  }
  google__protobuf__compiler__code_generator_response__free_unpacked(resp,
                                                                     NULL);
  return rc;
}

int main(int argc, char **argv) {
  if (argc > 1) {
    if (strcmp(argv[1], "--version") == 0) {
      printf("%s %s\n", prog, PLUGIN_VERSION);
      return 0;
    }
    fprintf(stderr,
            "%s: a protoc plugin; it takes no arguments. Use it as\n"
            "  protoc --plugin=protoc-gen-uvgrpc=PATH --uvgrpc_out=[pb_c:]DIR "
            "FILE.proto\n",
            prog);
    return 2;
  }
  if (isatty(0))
    die("stdin is a terminal; I read a CodeGeneratorRequest from protoc:\n"
        "  protoc --plugin=protoc-gen-uvgrpc=PATH --uvgrpc_out=DIR FILE.proto");
  size_t len;
  uint8_t *in = read_all(0, &len);
  req =
      google__protobuf__compiler__code_generator_request__unpack(NULL, len, in);
  free(in);
  if (req == NULL)
    die("stdin (%zu bytes) is not a CodeGeneratorRequest; run me from protoc:\n"
        "  protoc --plugin=protoc-gen-uvgrpc=PATH --uvgrpc_out=DIR FILE.proto",
        len);

  gen_t g = {0};
  g.req = req;
  const char *bad = check_request(&g);
  if (bad != NULL) die("%s", bad);
  options_t opts;
  generate_files(&g, &opts);
  if (g.error == NULL && opts.pb_c) generate_pb_c(&g, &opts);

  response_t resp = GOOGLE__PROTOBUF__COMPILER__CODE_GENERATOR_RESPONSE__INIT;
  /* Proto3 optional fields change nothing here: messages are protoc-c's. */
  resp.has_supported_features = 1;
  resp.supported_features =
      GOOGLE__PROTOBUF__COMPILER__CODE_GENERATOR_RESPONSE__FEATURE__FEATURE_PROTO3_OPTIONAL;
  response_file_t *files = NULL, **filep = NULL;
  if (g.error != NULL) {
    resp.error = g.error;
  } else {
    files = xmalloc(g.nfiles * sizeof(*files));
    filep = xmalloc(g.nfiles * sizeof(*filep));
    for (size_t i = 0; i < g.nfiles; i++) {
      google__protobuf__compiler__code_generator_response__file__init(
          &files[i]);
      files[i].name = (char *)g.files[i].name;
      files[i].content =
          g.files[i].content.s ? g.files[i].content.s : (char *)"";
      filep[i] = &files[i];
    }
    resp.n_file = g.nfiles;
    resp.file = filep;
  }
  size_t out_len =
      google__protobuf__compiler__code_generator_response__get_packed_size(
          &resp);
  uint8_t *out = xmalloc(out_len);
  google__protobuf__compiler__code_generator_response__pack(&resp, out);
  int rc = write_all(1, out, out_len);
  free(out);
  free(files);
  free(filep);
  gen_free(&g);
  google__protobuf__compiler__code_generator_request__free_unpacked(req, NULL);
  pool_free();
  if (rc != 0) {
    fprintf(stderr, "%s: cannot write the response: %s\n", prog,
            strerror(errno));
    return 1;
  }
  return 0;
}

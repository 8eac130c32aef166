/* The server end to end over loopback, driven by a raw HTTP/2 client so
 * every frame the server sends or receives can be checked. */
#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <uvgrpc.h>

#include "h2client.h"
#include "rpc/rpc.h"
#include "server/server.h"
#include "test.h"

static uv_loop_t *loop;
static uvg_server_t *server;
static int port;

static int n_calls, n_done, n_cancel, n_messages, n_send_cb;
static int last_cancel_code = -1, last_done_code = -1;
static char last_md[8][2][64];
static int n_last_md;
static int log_lines;
static char last_log[512];

/* ---- handlers ---- */

static void on_done(uvg_call_t *call, const uvg_status_t *st) {
  (void)call;
  n_done++;
  last_done_code = st->code;
}

static void on_cancel(uvg_call_t *call, const uvg_status_t *st) {
  n_cancel++;
  last_cancel_code = st->code;
  CHECK(uvg_call_is_cancelled(call));
  CHECK_EQ(uvg_call_send(call, "x", 1, 0, NULL, NULL), UVG_ECANCELED);
  CHECK_EQ(uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0), UVG_ECANCELED);
}

/* Echoes the request; records its metadata; sends metadata both ways. */
static void echo_unary(uvg_call_t *call, const uint8_t *msg, size_t len) {
  n_calls++;
  const uvg_metadata_t *md;
  size_t n = uvg_call_metadata(call, &md);
  n_last_md = 0;
  for (size_t i = 0; i < n && n_last_md < 8; i++, n_last_md++) {
    snprintf(last_md[n_last_md][0], 64, "%s", md[i].key);
    memset(last_md[n_last_md][1], 0, 64);
    memcpy(last_md[n_last_md][1], md[i].value, md[i].value_len < 63 ? md[i].value_len : 63);
  }
  static const uint8_t bin[] = {0x00, 0x01, 0xfe, 0xff};
  uvg_metadata_t init[] = {{"x-init", (const uint8_t *)"hello", 5},
                           {"x-raw-bin", bin, sizeof(bin)}};
  CHECK_EQ(uvg_call_send_headers(call, init, 2), 0);
  CHECK_EQ(uvg_call_send_headers(call, init, 2), UVG_ESTATE);
  CHECK_EQ(uvg_call_send(call, msg, len, 0, NULL, NULL), 0);
  CHECK_EQ(uvg_call_send(call, msg, len, 0, NULL, NULL), UVG_ESTATE);
  uvg_metadata_t trail[] = {{"x-trail", (const uint8_t *)"bye", 3}};
  CHECK_EQ(uvg_call_finish(call, UVG_STATUS_OK, NULL, trail, 1), 0);
  CHECK_EQ(uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0), UVG_ESTATE);
}

/* The request is "<code>:<message>": finish with it and send nothing. */
static int last_compressed;
static void status_unary(uvg_call_t *call, const uint8_t *msg, size_t len) {
  char buf[256];
  n_calls++;
  last_compressed = uvg_call_message_compressed(call);
  snprintf(buf, sizeof(buf), "%.*s", (int)len, (const char *)msg);
  char *colon = strchr(buf, ':');
  uvg_call_finish(call, (uvg_status_code_t)atoi(buf), colon ? colon + 1 : NULL,
                  NULL, 0);
}

/* Echoes the request, compressed with gzip if the client accepts it. */
static int last_set_compression;
static void gzip_unary(uvg_call_t *call, const uint8_t *msg, size_t len) {
  n_calls++;
  last_set_compression = uvg_call_set_compression(call, UVG_COMPRESS_GZIP);
  uvg_call_send(call, msg, len, 0, NULL, NULL);
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}

/* Never answers: it waits to be cancelled. */
static void sleep_unary(uvg_call_t *call, const uint8_t *msg, size_t len) {
  (void)msg;
  (void)len;
  (void)call;
  n_calls++;
}

static size_t collected_bytes;
static void collect_call(uvg_call_t *call, const uint8_t *msg, size_t len) {
  (void)call;
  CHECK(msg == NULL && len == 0);
  n_calls++;
  n_messages = 0;
  collected_bytes = 0;
}
static void collect_message(uvg_call_t *call, const uint8_t *msg, size_t len) {
  (void)call;
  for (size_t i = 0; i < len; i++) CHECK_EQ(msg[i], (uint8_t)(i & 0xff));
  n_messages++;
  collected_bytes += len;
}
static void collect_half_close(uvg_call_t *call) {
  char reply[64];
  int n = snprintf(reply, sizeof(reply), "%d,%zu", n_messages, collected_bytes);
  uvg_call_send(call, reply, (size_t)n, 0, NULL, NULL);
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}

/* Server streaming: `big_count` messages of `big_size` bytes, each sent
 * from the previous one's send callback (zero-copy). */
static uint8_t *big_buf;
static size_t big_size = 1024 * 1024;
static int big_count = 4, big_sent;
static void big_send_cb(uvg_call_t *call, int status, void *data) {
  (void)data;
  n_send_cb++;
  if (status != 0) return;
  if (++big_sent < big_count)
    CHECK_EQ(uvg_call_send(call, big_buf, big_size, 0, big_send_cb, NULL), 0);
  else
    uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}
static void big_call(uvg_call_t *call, const uint8_t *msg, size_t len) {
  (void)msg;
  (void)len;
  n_calls++;
  big_sent = 0;
  CHECK_EQ(uvg_call_send(call, big_buf, big_size, 0, big_send_cb, NULL), 0);
}

static void bidi_call(uvg_call_t *call, const uint8_t *msg, size_t len) {
  (void)call;
  (void)msg;
  (void)len;
  n_calls++;
}
static void bidi_message(uvg_call_t *call, const uint8_t *msg, size_t len) {
  CHECK_EQ(uvg_call_send(call, msg, len, 0, NULL, NULL), 0);
}
static void bidi_half_close(uvg_call_t *call) {
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}

/* Ends the call as the request says, with a google.rpc.Status (code 3,
 * message "b\0\xfe\xff") in the status details. */
static const uint8_t details[] = {0x08, 0x03, 0x12, 0x04, 'b', 0x00, 0xfe, 0xff};
static int last_finish_rc;
static uint8_t done_details[64];
static size_t done_details_len;
static int done_has_details;

static void details_done(uvg_call_t *call, const uvg_status_t *st) {
  on_done(call, st);
  done_has_details = st->details != NULL;
  done_details_len = st->details_len;
  if (st->details != NULL && st->details_len <= sizeof(done_details))
    memcpy(done_details, st->details, st->details_len);
}

static int msg_is(const uint8_t *msg, size_t len, const char *text) {
  return len == strlen(text) && memcmp(msg, text, len) == 0;
}

static void details_unary(uvg_call_t *call, const uint8_t *msg, size_t len) {
  uvg_status_t st = {UVG_STATUS_INVALID_ARGUMENT, "bad request", details,
                     sizeof(details)};
  uvg_metadata_t trail[] = {{"x-trail", (const uint8_t *)"bye", 3},
                            {"grpc-status-details-bin", details, sizeof(details)}};
  n_calls++;
  if (msg_is(msg, len, "sent")) { /* after a message: in the trailers */
    CHECK_EQ(uvg_call_send(call, msg, len, 0, NULL, NULL), 0);
    last_finish_rc = uvg_call_finish_status(call, &st, trail, 1);
  } else if (msg_is(msg, len, "both")) { /* the details twice */
    last_finish_rc = uvg_call_finish_status(call, &st, trail, 2);
  } else if (msg_is(msg, len, "trailer")) { /* built by hand */
    last_finish_rc = uvg_call_finish(call, UVG_STATUS_NOT_FOUND, "nf", trail + 1, 1);
  } else if (msg_is(msg, len, "null")) {
    last_finish_rc = uvg_call_finish_status(call, NULL, NULL, 0);
  } else { /* trailers-only */
    last_finish_rc = uvg_call_finish_status(call, &st, trail, 1);
  }
}

static const uvg_method_t methods[] = {
    {.path = "/test.Echo/Unary", .on_call = echo_unary, .on_done = on_done},
    {.path = "/test.Echo/Status", .on_call = status_unary, .on_done = on_done},
    {.path = "/test.Echo/Gzip", .on_call = gzip_unary, .on_done = on_done},
    {.path = "/test.Echo/Sleep", .on_call = sleep_unary, .on_cancel = on_cancel,
     .on_done = on_done},
    {.path = "/test.Echo/Collect", .type = UVG_METHOD_CLIENT_STREAMING,
     .on_call = collect_call, .on_message = collect_message,
     .on_half_close = collect_half_close, .on_cancel = on_cancel,
     .on_done = on_done},
    {.path = "/test.Echo/Big", .type = UVG_METHOD_SERVER_STREAMING,
     .on_call = big_call, .on_cancel = on_cancel, .on_done = on_done},
    {.path = "/test.Echo/Bidi", .type = UVG_METHOD_BIDI_STREAMING,
     .on_call = bidi_call, .on_message = bidi_message,
     .on_half_close = bidi_half_close, .on_cancel = on_cancel,
     .on_done = on_done},
    {.path = "/test.Echo/Details", .on_call = details_unary, .on_done = details_done},
};

static void on_log(uvg_log_level_t level, const char *line, void *data) {
  (void)level;
  (void)data;
  if (level == UVG_LOG_TRACE || getenv("UVG_TRACE")) {
    fprintf(stderr, "trace: %s\n", line);
    return;
  }
  log_lines++;
  snprintf(last_log, sizeof(last_log), "%s", line);
}

/* ---- helpers ---- */

typedef struct {
  h2c_t *c;
  int i;
} wait_t;

static int stream_closed(void *arg) {
  wait_t *w = arg;
  return w->c->streams[w->i].closed;
}

static int wait_closed(h2c_t *c, int i) {
  wait_t w = {c, i};
  return h2c_run_until(loop, stream_closed, &w, 5000);
}

static int counter_target;
static int *counter;
static int counter_reached(void *arg) {
  (void)arg;
  return *counter >= counter_target;
}
static int wait_count(int *cnt, int target) {
  counter = cnt;
  counter_target = target;
  return h2c_run_until(loop, counter_reached, NULL, 5000);
}

static int unary(h2c_t *c, const char *path, const char *const *extra,
                 const void *msg, size_t len) {
  uint8_t body[4096];
  size_t n = h2c_frame(body, 0, msg, len);
  int i = h2c_request(c, path, NULL, extra, body, n, 0, 1);
  CHECK(i >= 0);
  CHECK(wait_closed(c, i));
  return i;
}

/* ---- tests ---- */

static void test_unary_and_metadata(void) {
  h2c_t c;
  int done0 = n_done;
  CHECK_EQ(h2c_connect(&c, loop, port, 1, 0), 0);
  const char *extra[] = {"x-ascii", "plain value",
                         "x-pad-bin", "AAH+/w==",       /* padded */
                         "x-nopad-bin", "AAH+/w",       /* unpadded */
                         "x-multi-bin", "YQ==,Yg",      /* comma-joined */
                         "content-length", "9",         /* HTTP's, not metadata */
                         NULL};
  int i = unary(&c, "/test.Echo/Unary", extra, "ping", 4);
  h2c_stream_t *s = &c.streams[i];
  CHECK_STR(h2c_header(s, ":status"), "200");
  CHECK_STR(h2c_header(s, "content-type"), "application/grpc");
  CHECK_STR(h2c_header(s, "x-init"), "hello");
  CHECK_STR(h2c_header(s, "x-raw-bin"), "AAH+/w"); /* sent un-padded */
  CHECK_EQ(h2c_grpc_status(s), 0);
  CHECK(!s->trailers_only);
  CHECK_STR(h2c_trailer(s, "x-trail"), "bye");
  CHECK_EQ(s->data_len, 9);
  CHECK(s->data_len == 9 && memcmp(s->data, "\0\0\0\0\4ping", 9) == 0);
  /* request metadata as the handler saw it: -bin decoded and split */
  CHECK_EQ(n_last_md, 5);
  int seen = 0;
  for (int k = 0; k < n_last_md; k++) {
    if (!strcmp(last_md[k][0], "x-ascii") && !strcmp(last_md[k][1], "plain value")) seen |= 1;
    if (!strcmp(last_md[k][0], "x-pad-bin") && !memcmp(last_md[k][1], "\0\1\xfe\xff", 4)) seen |= 2;
    if (!strcmp(last_md[k][0], "x-nopad-bin") && !memcmp(last_md[k][1], "\0\1\xfe\xff", 4)) seen |= 4;
    if (!strcmp(last_md[k][0], "x-multi-bin") && !strcmp(last_md[k][1], "a")) seen |= 8;
    if (!strcmp(last_md[k][0], "x-multi-bin") && !strcmp(last_md[k][1], "b")) seen |= 16;
  }
  CHECK_EQ(seen, 31);
  CHECK(wait_count(&n_done, done0 + 1));
  h2c_close(&c);
}

static void test_status_and_trailers_only(void) {
  h2c_t c;
  CHECK_EQ(h2c_connect(&c, loop, port, 1, 0), 0);
  const char *req = "5:caf\xc3\xa9 100% done\n";
  int i = unary(&c, "/test.Echo/Status", NULL, req, strlen(req));
  h2c_stream_t *s = &c.streams[i];
  /* nothing was sent: one HEADERS frame that ends the stream */
  CHECK(s->trailers_only);
  CHECK_EQ(s->header_blocks, 1);
  CHECK_STR(h2c_header(s, ":status"), "200");
  CHECK_EQ(h2c_grpc_status(s), 5);
  CHECK_STR(h2c_header(s, "grpc-message"), "caf%C3%A9 100%25 done%0A");
  CHECK_EQ(s->data_len, 0);
  /* an invalid status code from the handler becomes INTERNAL */
  i = unary(&c, "/test.Echo/Status", NULL, "99:bad", 6);
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), UVG_STATUS_INTERNAL);
  h2c_close(&c);
}

/* The status's details travel as grpc-status-details-bin (un-padded
 * base64), and on_done sees the status as the client does. */
static int details_seen(void) {
  return done_has_details && done_details_len == sizeof(details) &&
         memcmp(done_details, details, sizeof(details)) == 0;
}

static void test_status_details(void) {
  h2c_t c;
  CHECK_EQ(h2c_connect(&c, loop, port, 1, 0), 0);
  int done0 = n_done;
  done_has_details = 0;
  int i = unary(&c, "/test.Echo/Details", NULL, "only", 4);
  h2c_stream_t *s = &c.streams[i];
  CHECK_EQ(last_finish_rc, 0);
  CHECK(s->trailers_only);
  CHECK_EQ(h2c_grpc_status(s), UVG_STATUS_INVALID_ARGUMENT);
  CHECK_STR(h2c_header(s, "grpc-message"), "bad request");
  CHECK_STR(h2c_header(s, "grpc-status-details-bin"), "CAMSBGIA/v8");
  CHECK_STR(h2c_header(s, "x-trail"), "bye");
  CHECK(wait_count(&n_done, done0 + 1));
  CHECK_EQ(last_done_code, UVG_STATUS_INVALID_ARGUMENT);
  CHECK(details_seen());

  done_has_details = 0;
  i = unary(&c, "/test.Echo/Details", NULL, "sent", 4);
  s = &c.streams[i];
  CHECK_EQ(last_finish_rc, 0);
  CHECK(!s->trailers_only);
  CHECK_EQ(s->data_len, 9);
  CHECK_EQ(h2c_grpc_status(s), UVG_STATUS_INVALID_ARGUMENT);
  CHECK_STR(h2c_trailer(s, "grpc-status-details-bin"), "CAMSBGIA/v8");
  CHECK(wait_count(&n_done, done0 + 2));
  CHECK(details_seen());

  /* details in hand-built trailers reach on_done too */
  done_has_details = 0;
  i = unary(&c, "/test.Echo/Details", NULL, "trailer", 7);
  s = &c.streams[i];
  CHECK_EQ(last_finish_rc, 0);
  CHECK_EQ(h2c_grpc_status(s), UVG_STATUS_NOT_FOUND);
  CHECK_STR(h2c_header(s, "grpc-status-details-bin"), "CAMSBGIA/v8");
  CHECK(wait_count(&n_done, done0 + 3));
  CHECK(details_seen());

  /* details twice, or no status at all: the call ends INTERNAL */
  const char *bad[] = {"both", "null"};
  for (int k = 0; k < 2; k++) {
    done_has_details = 1;
    i = unary(&c, "/test.Echo/Details", NULL, bad[k], 4);
    s = &c.streams[i];
    CHECK_EQ(last_finish_rc, UVG_EINVAL);
    CHECK_EQ(h2c_grpc_status(s), UVG_STATUS_INTERNAL);
    CHECK(h2c_header(s, "grpc-status-details-bin") == NULL);
    CHECK(h2c_header(s, "x-trail") == NULL);
    CHECK(wait_count(&n_done, done0 + 4 + k));
    CHECK_EQ(last_done_code, UVG_STATUS_INTERNAL);
    CHECK(!done_has_details);
  }
  h2c_close(&c);
}

static void test_unimplemented_and_content_type(void) {
  h2c_t c;
  int calls0 = n_calls;
  CHECK_EQ(h2c_connect(&c, loop, port, 1, 0), 0);
  int i = unary(&c, "/test.Echo/Nope", NULL, "", 0);
  CHECK_STR(h2c_header(&c.streams[i], ":status"), "200");
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), UVG_STATUS_UNIMPLEMENTED);
  CHECK_STR(h2c_header(&c.streams[i], "grpc-message"),
            "unknown method Nope for service test.Echo");
  i = unary(&c, "/no.Such/Method", NULL, "", 0);
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), UVG_STATUS_UNIMPLEMENTED);
  CHECK_STR(h2c_header(&c.streams[i], "grpc-message"), "unknown service no.Such");

  uint8_t body[16];
  size_t n = h2c_frame(body, 0, "x", 1);
  i = h2c_request(&c, "/test.Echo/Unary", "text/plain", NULL, body, n, 0, 1);
  CHECK(wait_closed(&c, i));
  CHECK_STR(h2c_header(&c.streams[i], ":status"), "415");
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), UVG_STATUS_INTERNAL);

  /* application/grpc+proto is gRPC too */
  i = h2c_request(&c, "/test.Echo/Status", "application/grpc+proto", NULL, body, n, 0, 1);
  CHECK(wait_closed(&c, i));
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), 0);
  calls0++;

  /* an unsupported grpc-encoding is UNIMPLEMENTED with the accepted list */
  const char *enc[] = {"grpc-encoding", "snappy", NULL};
  i = unary(&c, "/test.Echo/Unary", enc, "x", 1);
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), UVG_STATUS_UNIMPLEMENTED);
  CHECK(h2c_header(&c.streams[i], "grpc-accept-encoding") != NULL);

  /* a malformed grpc-timeout */
  const char *bad_timeout[] = {"grpc-timeout", "123456789S", NULL};
  i = unary(&c, "/test.Echo/Unary", bad_timeout, "x", 1);
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), UVG_STATUS_INTERNAL);

  /* a compressed-flagged message without grpc-encoding */
  body[0] = 1;
  i = h2c_request(&c, "/test.Echo/Unary", NULL, NULL, body, n, 0, 1);
  CHECK(wait_closed(&c, i));
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), UVG_STATUS_INTERNAL);
  CHECK_EQ(n_calls, calls0); /* no handler saw any of these */
  h2c_close(&c);
}

/* A request compressed with `enc` (the test links zlib through uvgrpc). */
static size_t gzip_frame(uint8_t *body, const char *text, int corrupt) {
  uint8_t *z;
  size_t zlen;
  uvg__compress(UVG_COMPRESS_GZIP, (const uint8_t *)text, strlen(text), &z, &zlen);
  if (corrupt) z[zlen / 2] ^= 0xff, z[zlen - 3] ^= 0xff;
  size_t n = h2c_frame(body, 0, z, zlen);
  body[0] = 1;
  uvg__free(z);
  return n;
}

static void test_compression(void) {
  h2c_t c;
  uint8_t body[70000];
  CHECK_EQ(h2c_connect(&c, loop, port, 1, 0), 0);
  const char *gz[] = {"grpc-encoding", "gzip", "grpc-accept-encoding", "gzip", NULL};
  /* a compressed request reaches the handler decompressed */
  size_t n = gzip_frame(body, "7:compressed request", 0);
  int i = h2c_request(&c, "/test.Echo/Status", NULL, gz, body, n, 0, 1);
  CHECK(wait_closed(&c, i));
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), 7);
  CHECK_STR(h2c_header(&c.streams[i], "grpc-message"), "compressed request");
  CHECK(last_compressed);
  /* corrupt compressed data */
  n = gzip_frame(body, "0:this will be corrupted, and some more text", 1);
  i = h2c_request(&c, "/test.Echo/Status", NULL, gz, body, n, 0, 1);
  CHECK(wait_closed(&c, i));
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), UVG_STATUS_INTERNAL);
  /* a decompression bomb: 8 MiB of zeros against the 4 MiB limit */
  size_t big = 8u << 20;
  char *zeros = calloc(1, big + 1);
  memset(zeros, '0', big);
  n = gzip_frame(body, zeros, 0);
  free(zeros);
  CHECK(n < sizeof(body));
  i = h2c_request(&c, "/test.Echo/Status", NULL, gz, body, n, 0, 1);
  CHECK(wait_closed(&c, i));
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), UVG_STATUS_RESOURCE_EXHAUSTED);
  /* a compressed response when the handler asks and the client accepts */
  const char *req = "gzip-me please, gzip-me please, gzip-me please";
  i = unary(&c, "/test.Echo/Gzip", gz + 2, req, strlen(req));
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), 0);
  CHECK_STR(h2c_header(&c.streams[i], "grpc-encoding"), "gzip");
  CHECK(c.streams[i].data_len > 5 && c.streams[i].data[0] == 1);
  uint8_t *out;
  size_t olen;
  CHECK_EQ(uvg__decompress(UVG_COMPRESS_GZIP, c.streams[i].data + 5,
                           c.streams[i].data_len - 5, 1000, &out, &olen), 0);
  CHECK(olen == strlen(req) && memcmp(out, req, olen) == 0);
  uvg__free(out);
  /* a client that says it accepts only identity gets an uncompressed
   * response (doc/compression.md: the server knows it lacks gzip) */
  const char *identity[] = {"grpc-accept-encoding", "identity", NULL};
  i = unary(&c, "/test.Echo/Gzip", identity, req, strlen(req));
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), 0);
  CHECK(h2c_header(&c.streams[i], "grpc-encoding") == NULL);
  CHECK(c.streams[i].data_len == 5 + strlen(req) && c.streams[i].data[0] == 0);
  CHECK_EQ(last_set_compression, UVG_ENOTSUP);
  const char *deflate[] = {"grpc-accept-encoding", "identity,deflate", NULL};
  i = unary(&c, "/test.Echo/Gzip", deflate, req, strlen(req));
  CHECK(h2c_header(&c.streams[i], "grpc-encoding") == NULL);
  CHECK_EQ(last_set_compression, UVG_ENOTSUP);
  /* a client that sends no grpc-accept-encoding at all (grpc-go before
   * 1.5x when its request is not compressed) says nothing against gzip:
   * the response is compressed, as gRPC's C core does */
  i = unary(&c, "/test.Echo/Gzip", NULL, req, strlen(req));
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), 0);
  CHECK_EQ(last_set_compression, 0);
  CHECK_STR(h2c_header(&c.streams[i], "grpc-encoding"), "gzip");
  CHECK(c.streams[i].data_len > 5 && c.streams[i].data[0] == 1);
  out = NULL;
  CHECK_EQ(uvg__decompress(UVG_COMPRESS_GZIP, c.streams[i].data + 5,
                           c.streams[i].data_len - 5, 1000, &out, &olen), 0);
  CHECK(out != NULL && olen == strlen(req) && memcmp(out, req, olen) == 0);
  uvg__free(out);
  /* the list may come in several header fields */
  const char *split[] = {"grpc-accept-encoding", "identity",
                         "grpc-accept-encoding", "deflate, gzip", NULL};
  i = unary(&c, "/test.Echo/Gzip", split, req, strlen(req));
  CHECK_STR(h2c_header(&c.streams[i], "grpc-encoding"), "gzip");
  CHECK_EQ(last_set_compression, 0);
  h2c_close(&c);
}

static void test_framing(void) {
  static uint8_t body[200000];
  static uint8_t msg[3000];
  for (size_t k = 0; k < sizeof(msg); k++) msg[k] = (uint8_t)(k & 0xff);
  h2c_t c;
  CHECK_EQ(h2c_connect(&c, loop, port, 1, 0), 0);
  /* 10 messages, one byte per DATA frame: prefixes split everywhere */
  size_t n = 0;
  for (int k = 0; k < 10; k++) n = h2c_frame(body, n, msg, (size_t)(k * 7));
  int i = h2c_request(&c, "/test.Echo/Collect", NULL, NULL, body, n, 1, 1);
  CHECK(wait_closed(&c, i));
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), 0);
  CHECK(c.streams[i].data_len > 5 &&
        memcmp(c.streams[i].data + 5, "10,315", 6) == 0);
  /* 50 messages (3 empty) in one DATA frame */
  n = 0;
  for (int k = 0; k < 50; k++) n = h2c_frame(body, n, msg, k % 17 == 0 ? 0 : 3000);
  i = h2c_request(&c, "/test.Echo/Collect", NULL, NULL, body, n, 0, 1);
  CHECK(wait_closed(&c, i));
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), 0);
  CHECK(c.streams[i].data_len > 5 &&
        memcmp(c.streams[i].data + 5, "50,141000", 9) == 0);
  /* a stream that ends inside a message */
  n = h2c_frame(body, 0, msg, 100) - 10;
  i = h2c_request(&c, "/test.Echo/Collect", NULL, NULL, body, n, 0, 1);
  CHECK(wait_closed(&c, i));
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), UVG_STATUS_INTERNAL);
  /* bidi echo of an empty and a non-empty message */
  n = h2c_frame(body, 0, msg, 0);
  n = h2c_frame(body, n, msg, 10);
  i = h2c_request(&c, "/test.Echo/Bidi", NULL, NULL, body, n, 3, 1);
  CHECK(wait_closed(&c, i));
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), 0);
  CHECK_EQ(c.streams[i].data_len, 5 + 15);
  /* a unary call with no message, and with two */
  i = h2c_request(&c, "/test.Echo/Unary", NULL, NULL, body, 0, 0, 1);
  CHECK(wait_closed(&c, i));
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), UVG_STATUS_UNIMPLEMENTED);
  i = h2c_request(&c, "/test.Echo/Unary", NULL, NULL, body, n, 0, 1);
  CHECK(wait_closed(&c, i));
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), UVG_STATUS_UNIMPLEMENTED);
  h2c_close(&c);
}

static void test_deadline(void) {
  h2c_t c;
  int cancel0 = n_cancel, done0 = n_done;
  CHECK_EQ(h2c_connect(&c, loop, port, 1, 0), 0);
  const char *extra[] = {"grpc-timeout", "50m", NULL};
  uint64_t t0 = uv_now(loop);
  int i = unary(&c, "/test.Echo/Sleep", extra, "z", 1);
  CHECK(uv_now(loop) - t0 >= 45);
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), UVG_STATUS_DEADLINE_EXCEEDED);
  CHECK(wait_count(&n_done, done0 + 1));
  CHECK_EQ(n_cancel, cancel0 + 1);
  CHECK_EQ(last_cancel_code, UVG_STATUS_DEADLINE_EXCEEDED);
  CHECK_EQ(last_done_code, UVG_STATUS_DEADLINE_EXCEEDED);
  h2c_run_for(loop, 20);
  CHECK_EQ(n_done, done0 + 1); /* exactly one completion */
  h2c_close(&c);
}

static void test_client_reset(void) {
  h2c_t c;
  int cancel0 = n_cancel, done0 = n_done, calls0 = n_calls;
  CHECK_EQ(h2c_connect(&c, loop, port, 1, 0), 0);
  /* a streaming call the handler has started */
  int i = h2c_request(&c, "/test.Echo/Collect", NULL, NULL, NULL, 0, 0, 0);
  CHECK(wait_count(&n_calls, calls0 + 1));
  h2c_reset(&c, i, NGHTTP2_CANCEL);
  CHECK(wait_count(&n_done, done0 + 1));
  CHECK_EQ(n_cancel, cancel0 + 1);
  CHECK_EQ(last_cancel_code, UVG_STATUS_CANCELLED);
  CHECK_EQ(last_done_code, UVG_STATUS_CANCELLED);
  /* a unary call reset before its message: the handler never sees it */
  calls0 = n_calls;
  i = h2c_request(&c, "/test.Echo/Sleep", NULL, NULL, NULL, 0, 0, 0);
  h2c_run_for(loop, 20);
  h2c_reset(&c, i, NGHTTP2_CANCEL);
  h2c_run_for(loop, 20);
  CHECK_EQ(n_calls, calls0);
  CHECK_EQ(n_done, done0 + 1);
  /* the connection still serves */
  i = unary(&c, "/test.Echo/Status", NULL, "0:", 2);
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), 0);
  h2c_close(&c);
}

static int all_closed(void *arg) {
  h2c_t *c = arg;
  for (int i = 0; i < c->nstreams; i++)
    if (!c->streams[i].closed) return 0;
  return 1;
}

static int got_ping_ack(void *arg) { return ((h2c_t *)arg)->ping_acks > 0; }

static void test_ping(void) {
  h2c_t c;
  CHECK_EQ(h2c_connect(&c, loop, port, 1, 0), 0);
  nghttp2_submit_ping(c.h2, NGHTTP2_FLAG_NONE, (const uint8_t *)"12345678");
  h2c_flush(&c);
  CHECK(h2c_run_until(loop, got_ping_ack, &c, 5000));
  CHECK(memcmp(c.ping_data, "12345678", 8) == 0);
  h2c_close(&c);
}

static void test_write_coalescing(void) {
  h2c_t c;
  uvg_server_stats_t before, after;
  CHECK_EQ(h2c_connect(&c, loop, port, 1, 0), 0);
  h2c_run_for(loop, 20); /* settle the SETTINGS exchange */
  uvg_server_get_stats(server, &before);
  /* 100 requests leave the client in one write, reach the server in one
   * read (or a few), and their responses must leave in a handful of writes */
  nghttp2_session *h2 = c.h2;
  c.h2 = NULL; /* hold the flush */
  uint8_t body[16];
  size_t n = h2c_frame(body, 0, "0:", 2);
  for (int k = 0; k < 100; k++) {
    c.h2 = h2;
    CHECK(h2c_request(&c, "/test.Echo/Status", NULL, NULL, body, n, 0, 1) == k);
    c.h2 = NULL;
  }
  c.h2 = h2;
  CHECK(h2c_run_until(loop, all_closed, &c, 5000));
  uvg_server_get_stats(server, &after);
  int ok = 0;
  for (int k = 0; k < 100; k++) ok += h2c_grpc_status(&c.streams[k]) == 0;
  CHECK_EQ(ok, 100);
  uint64_t writes = after.writes - before.writes;
  fprintf(stderr, "  100 unary responses took %llu writes, %llu bytes\n",
          (unsigned long long)writes,
          (unsigned long long)(after.bytes_written - before.bytes_written));
  CHECK(writes >= 1 && writes <= 5);
  h2c_close(&c);
}

static void test_backpressure(void) {
  h2c_t c;
  big_buf = calloc(1, big_size);
  n_send_cb = 0;
  /* a client that grants 64 KiB and consumes nothing */
  CHECK_EQ(h2c_connect(&c, loop, port, 1, 65535), 0);
  uint8_t body[16];
  size_t n = h2c_frame(body, 0, "", 0);
  int i = h2c_request(&c, "/test.Echo/Big", NULL, NULL, body, n, 0, 1);
  h2c_run_for(loop, 100);
  /* the first 1 MiB message cannot leave, so the handler is not told to
   * write again */
  CHECK_EQ(n_send_cb, 0);
  CHECK(c.streams[i].data_len <= 65535);
  /* now read everything, granting window as data arrives */
  c.auto_window = 1;
  h2c_consume(&c, i, c.streams[i].data_len);
  wait_closed(&c, i);
  CHECK(c.streams[i].closed);
  CHECK_EQ(n_send_cb, big_count);
  CHECK_EQ(c.streams[i].data_len, (size_t)big_count * (big_size + 5));
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), 0);
  h2c_close(&c);
  free(big_buf);
}

static void test_bad_preface(void) {
  h2c_t bad, good;
  int lines0 = log_lines;
  uvg_server_stats_t st0, st1;
  uvg_server_get_stats(server, &st0);
  CHECK_EQ(h2c_connect(&bad, loop, port, 0, 0), 0);
  h2c_write_raw(&bad, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
  int eof_wait(void *arg);
  CHECK(h2c_run_until(loop, (int (*)(void *))eof_wait, &bad, 5000));
  CHECK(log_lines > lines0);
  CHECK(strstr(last_log, "preface") != NULL);
  uvg_server_get_stats(server, &st1);
  CHECK_EQ(st1.protocol_errors, st0.protocol_errors + 1);
  h2c_close(&bad);
  /* the server keeps serving */
  CHECK_EQ(h2c_connect(&good, loop, port, 1, 0), 0);
  int i = unary(&good, "/test.Echo/Status", NULL, "0:", 2);
  CHECK_EQ(h2c_grpc_status(&good.streams[i]), 0);
  h2c_close(&good);
}

int eof_wait(void *arg) { return ((h2c_t *)arg)->eof; }

/* RFC 9113 3.4: the preface must be followed by a SETTINGS frame. */
static void test_settings_first(void) {
  h2c_t c;
  uvg_server_stats_t st0, st1;
  uvg_server_get_stats(server, &st0);
  CHECK_EQ(h2c_connect(&c, loop, port, 0, 0), 0);
  static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  static const uint8_t ping[] = {0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8};
  h2c_write_raw(&c, preface, sizeof(preface) - 1);
  h2c_write_raw(&c, ping, sizeof(ping));
  CHECK(h2c_run_until(loop, (int (*)(void *))eof_wait, &c, 5000));
  CHECK_EQ(c.raw_goaways, 1);
  CHECK_EQ(c.raw_goaway_code, NGHTTP2_PROTOCOL_ERROR);
  h2c_close(&c);
  h2c_run_for(loop, 20);
  uvg_server_get_stats(server, &st1);
  CHECK_EQ(st1.connections_open, st0.connections_open);
}

static int closed_flag;
static void on_server_closed(uvg_server_t *s, void *data) {
  (void)s;
  CHECK(data == &closed_flag);
  closed_flag++;
}

static void test_listen_variants(void) {
  uvg_server_t *s;
  int p = -1;
  CHECK_EQ(uvg_server_new(loop, NULL, &s), 0);
  CHECK_EQ(uvg_server_listen(s, "127.0.0.1:0", NULL, &p), UVG_ENOCREDS);
  CHECK_EQ(uvg_server_listen(s, "nonsense", uvg_insecure_server_credentials(), &p),
           UVG_EADDR);
  CHECK_EQ(uvg_server_listen(s, "[::1]:0", uvg_insecure_server_credentials(), &p), 0);
  CHECK(p > 0);
  char path[64];
  snprintf(path, sizeof(path), "unix:/tmp/uvg-test-%d.sock", (int)uv_os_getpid());
  remove(path + 5);
  CHECK_EQ(uvg_server_listen(s, path, uvg_insecure_server_credentials(), &p), 0);
  CHECK_EQ(p, 0);
  CHECK_EQ(uvg_server_register(s, methods, sizeof(methods) / sizeof(methods[0])), 0);
  h2c_t uc;
  CHECK_EQ(h2c_connect_unix(&uc, loop, path + 5), 0);
  int k = unary(&uc, "/test.Echo/Status", NULL, "0:", 2);
  CHECK_EQ(h2c_grpc_status(&uc.streams[k]), 0);
  h2c_close(&uc);
  CHECK_EQ(uvg_server_listen(s, "127.0.0.1:0", uvg_insecure_server_credentials(), &p), 0);
  int p2 = -1;
  char again[32];
  snprintf(again, sizeof(again), "127.0.0.1:%d", p);
  CHECK_EQ(uvg_server_listen(s, again, uvg_insecure_server_credentials(), &p2),
           UV_EADDRINUSE);
  uvg_method_t bad = {.path = "nope", .on_call = echo_unary, .on_done = on_done};
  CHECK_EQ(uvg_server_register(s, &bad, 1), UVG_EINVAL);
  CHECK_EQ(uvg_server_register(s, methods, 1), UVG_EEXIST);
  closed_flag = 0;
  uvg_server_close(s, on_server_closed, &closed_flag);
  uvg_server_close(s, on_server_closed, &closed_flag); /* no-op */
  CHECK(wait_count(&closed_flag, 1));
  h2c_run_for(loop, 10);
  CHECK_EQ(closed_flag, 1);
  remove(path + 5);
}

static int send_rc;
static void send_big_unary(uvg_call_t *call, const uint8_t *msg, size_t len) {
  static uint8_t big[200];
  (void)msg;
  n_calls++;
  send_rc = uvg_call_send(call, big, len, 0, NULL, NULL); /* len bytes back */
  if (send_rc == 0) uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}
static void finish_on_cancel(uvg_call_t *call, const uvg_status_t *st) {
  last_cancel_code = st->code;
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}

static void test_limits(void) {
  uvg_server_t *s;
  uvg_server_options_t o;
  memset(&o, 0, sizeof(o));
  o.max_receive_message_size = 100;
  o.max_send_message_size = 50;
  o.max_header_list_size = 1024;
  o.max_concurrent_streams = 2;
  o.max_frame_size = 1000; /* below the HTTP/2 minimum */
  CHECK_EQ(uvg_server_new(loop, &o, &s), UVG_EINVAL);
  o.max_frame_size = 0;
  CHECK_EQ(uvg_server_new(loop, &o, &s), 0);
  uvg_method_t m[] = {
      {.path = "/l.L/Echo", .on_call = send_big_unary, .on_cancel = finish_on_cancel,
       .on_done = on_done},
      {.path = "/l.L/Roomy", .on_call = send_big_unary, .on_cancel = finish_on_cancel,
       .on_done = on_done, .max_receive_message_size = 150,
       .max_send_message_size = 150},
      methods[3], /* Sleep */
  };
  CHECK_EQ(uvg_server_register(s, m, 3), 0);
  int p;
  CHECK_EQ(uvg_server_listen(s, "127.0.0.1:0", uvg_insecure_server_credentials(), &p), 0);
  h2c_t c;
  static uint8_t msg[140];
  CHECK_EQ(h2c_connect(&c, loop, p, 1, 0), 0);
  int i = unary(&c, "/l.L/Echo", NULL, msg, 40);
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), 0);
  /* over the server's receive limit; the method's own limit allows it */
  i = unary(&c, "/l.L/Echo", NULL, msg, 120);
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), UVG_STATUS_RESOURCE_EXHAUSTED);
  i = unary(&c, "/l.L/Roomy", NULL, msg, 120);
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), 0);
  CHECK_EQ(c.streams[i].data_len, 125);
  /* over the send limit: the handler's send fails and the client sees
   * RESOURCE_EXHAUSTED */
  i = unary(&c, "/l.L/Echo", NULL, msg, 60);
  CHECK_EQ(send_rc, UVG_E2BIG);
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), UVG_STATUS_RESOURCE_EXHAUSTED);
  CHECK_EQ(last_cancel_code, UVG_STATUS_RESOURCE_EXHAUSTED);
  /* a header block over 1 KiB */
  static char big_value[1500];
  memset(big_value, 'v', sizeof(big_value) - 1);
  const char *extra[] = {"x-big", big_value, NULL};
  i = unary(&c, "/l.L/Echo", extra, msg, 10);
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), UVG_STATUS_RESOURCE_EXHAUSTED);
  /* the stream limit is advertised: a third stream waits until one of
   * the first two ends (a peer that ignores it is refused by nghttp2) */
  CHECK_EQ(nghttp2_session_get_remote_settings(
               c.h2, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS), 2);
  int a = h2c_request(&c, "/test.Echo/Sleep", NULL, NULL, NULL, 0, 0, 0);
  int b = h2c_request(&c, "/test.Echo/Sleep", NULL, NULL, NULL, 0, 0, 0);
  uint8_t body[64];
  size_t n = h2c_frame(body, 0, msg, 10);
  int d = h2c_request(&c, "/l.L/Echo", NULL, NULL, body, n, 0, 1);
  h2c_run_for(loop, 50);
  CHECK(!c.streams[d].closed);
  h2c_reset(&c, a, NGHTTP2_CANCEL);
  CHECK(wait_closed(&c, d));
  CHECK_EQ(h2c_grpc_status(&c.streams[d]), 0);
  h2c_reset(&c, b, NGHTTP2_CANCEL);
  h2c_close(&c);
  closed_flag = 0;
  uvg_server_close(s, on_server_closed, &closed_flag);
  CHECK(wait_count(&closed_flag, 1));
}

/* ---- 64 MiB each way ---- */

#define HUGE_LEN (64u << 20)
static uint8_t *huge_reply;
static int huge_ok;
static void huge_sent(uvg_call_t *call, int status, void *data) {
  (void)data;
  CHECK_EQ(status, 0);
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}
static void huge_unary(uvg_call_t *call, const uint8_t *msg, size_t len) {
  huge_ok = len == HUGE_LEN && msg[0] == 0 && msg[len - 1] == (uint8_t)((len - 1) % 251);
  for (size_t k = 0; huge_ok && k < len; k += 4093) huge_ok = msg[k] == (uint8_t)(k % 251);
  /* zero-copy: the reply buffer stays ours until huge_sent */
  CHECK_EQ(uvg_call_send(call, huge_reply, HUGE_LEN, 0, huge_sent, NULL), 0);
}

static void test_64mib_each_way(void) {
  uvg_server_t *s;
  uvg_server_options_t o;
  memset(&o, 0, sizeof(o));
  o.max_receive_message_size = HUGE_LEN;
  CHECK_EQ(uvg_server_new(loop, &o, &s), 0);
  uvg_method_t m = {.path = "/h.H/Huge", .on_call = huge_unary, .on_done = on_done};
  CHECK_EQ(uvg_server_register(s, &m, 1), 0);
  int p;
  CHECK_EQ(uvg_server_listen(s, "127.0.0.1:0", uvg_insecure_server_credentials(), &p), 0);
  huge_reply = malloc(HUGE_LEN);
  uint8_t *body = malloc(HUGE_LEN + 5);
  for (size_t k = 0; k < HUGE_LEN; k++) huge_reply[k] = (uint8_t)(k % 253);
  body[0] = 0;
  body[1] = (uint8_t)(HUGE_LEN >> 24);
  body[2] = (uint8_t)(HUGE_LEN >> 16);
  body[3] = (uint8_t)(HUGE_LEN >> 8);
  body[4] = (uint8_t)HUGE_LEN;
  for (size_t k = 0; k < HUGE_LEN; k++) body[5 + k] = (uint8_t)(k % 251);
  h2c_t c;
  CHECK_EQ(h2c_connect(&c, loop, p, 1, 0), 0);
  huge_ok = 0;
  int i = h2c_request(&c, "/h.H/Huge", NULL, NULL, body, HUGE_LEN + 5, 0, 1);
  free(body);
  uint64_t end = uv_now(loop) + 60000;
  while (!c.streams[i].closed && uv_now(loop) < end) h2c_run_for(loop, 50);
  CHECK(huge_ok);
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), 0);
  CHECK_EQ(c.streams[i].data_len, (size_t)HUGE_LEN + 5);
  int same = c.streams[i].data_len == HUGE_LEN + 5 &&
             memcmp(c.streams[i].data + 5, huge_reply, HUGE_LEN) == 0;
  CHECK(same);
  h2c_close(&c);
  free(huge_reply);
  closed_flag = 0;
  uvg_server_close(s, on_server_closed, &closed_flag);
  CHECK(wait_count(&closed_flag, 1));
}

/* ---- interceptors ---- */

static char ic_log[512];
static void ic_append(const char *fmt, const char *a, long b) {
  size_t n = strlen(ic_log);
  snprintf(ic_log + n, sizeof(ic_log) - n, fmt, a, b);
}
static int ic_start(uvg_call_t *call, void *data, uvg_status_t *reject) {
  const uvg_metadata_t *deny = uvg_call_metadata_get(call, "x-deny");
  size_t n = strlen(ic_log);
  snprintf(ic_log + n, sizeof(ic_log) - n, "%s:start %s;", (const char *)data,
           uvg_call_method(call));
  if (deny != NULL && strcmp(data, "B") == 0) {
    reject->code = UVG_STATUS_PERMISSION_DENIED;
    reject->message = "denied by interceptor";
    return 1;
  }
  return 0;
}
static void ic_recv(uvg_call_t *call, const uint8_t *msg, size_t len, void *data) {
  (void)call;
  (void)msg;
  ic_append("%s:recv %ld;", (const char *)data, (long)len);
}
static void ic_send(uvg_call_t *call, const uint8_t *msg, size_t len, void *data) {
  (void)call;
  (void)msg;
  ic_append("%s:send %ld;", (const char *)data, (long)len);
}
static void ic_done(uvg_call_t *call, const uvg_status_t *st, void *data) {
  (void)call;
  ic_append("%s:done %ld;", (const char *)data, (long)st->code);
}

static void test_interceptors(void) {
  uvg_server_t *s;
  int p;
  static const uvg_server_interceptor_t ic = {ic_start, ic_recv, ic_send, ic_done};
  CHECK_EQ(uvg_server_new(loop, NULL, &s), 0);
  CHECK_EQ(uvg_server_register(s, methods, sizeof(methods) / sizeof(methods[0])), 0);
  CHECK_EQ(uvg_server_add_interceptor(s, &ic, "A"), 0);
  CHECK_EQ(uvg_server_add_interceptor(s, &ic, "B"), 0);
  CHECK_EQ(uvg_server_listen(s, "127.0.0.1:0", uvg_insecure_server_credentials(), &p), 0);
  h2c_t c;
  CHECK_EQ(h2c_connect(&c, loop, p, 1, 0), 0);
  ic_log[0] = '\0';
  int calls0 = n_calls, done0 = n_done;
  int i = unary(&c, "/test.Echo/Unary", NULL, "hello", 5);
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), 0);
  CHECK(wait_count(&n_done, done0 + 1));
  CHECK_STR(ic_log,
            "A:start /test.Echo/Unary;B:start /test.Echo/Unary;A:recv 5;B:recv 5;"
            "A:send 5;B:send 5;B:done 0;A:done 0;");
  /* B rejects: the handler never sees the call, A still sees the end */
  ic_log[0] = '\0';
  const char *deny[] = {"x-deny", "1", NULL};
  i = unary(&c, "/test.Echo/Unary", deny, "hello", 5);
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), UVG_STATUS_PERMISSION_DENIED);
  CHECK_STR(h2c_header(&c.streams[i], "grpc-message"), "denied by interceptor");
  h2c_run_for(loop, 20);
  CHECK_EQ(n_calls, calls0 + 1);
  CHECK_STR(ic_log, "A:start /test.Echo/Unary;B:start /test.Echo/Unary;A:done 7;");
  h2c_close(&c);
  closed_flag = 0;
  uvg_server_close(s, on_server_closed, &closed_flag);
  CHECK(wait_count(&closed_flag, 1));
}

/* uvg_server_register() after listening grows the method table while a
 * call in flight holds its method: the call goes on undisturbed (under
 * AddressSanitizer a moved entry is a use after free). */
static void test_register_during_call(void) {
  enum { MORE = 300 };
  static char paths[MORE][32];
  static uvg_method_t more[MORE];
  uvg_server_t *s;
  int p;
  h2c_t c;
  CHECK_EQ(uvg_server_new(loop, NULL, &s), 0);
  CHECK_EQ(uvg_server_register(s, &methods[6], 1), 0); /* Bidi */
  CHECK_EQ(uvg_server_listen(s, "127.0.0.1:0", uvg_insecure_server_credentials(), &p), 0);
  CHECK_EQ(h2c_connect(&c, loop, p, 1, 0), 0);
  int calls0 = n_calls, done0 = n_done;
  int i = h2c_request(&c, "/test.Echo/Bidi", NULL, NULL, NULL, 0, 0, 0);
  CHECK(wait_count(&n_calls, calls0 + 1));
  for (int k = 0; k < MORE; k++) {
    snprintf(paths[k], sizeof(paths[k]), "/grow.Svc/M%d", k);
    more[k] = methods[1];
    more[k].path = paths[k];
  }
  /* one by one, then in a batch: the table grows several times */
  for (int k = 0; k < 20; k++) CHECK_EQ(uvg_server_register(s, &more[k], 1), 0);
  CHECK_EQ(uvg_server_register(s, more + 20, MORE - 20), 0);
  /* a batch with a duplicate registers nothing */
  uvg_method_t dup[2] = {methods[0], methods[6]};
  CHECK_EQ(uvg_server_register(s, dup, 2), UVG_EEXIST);
  uint8_t body[64];
  size_t n = h2c_frame(body, 0, "still here", 10);
  h2c_send(&c, i, body, n, 1); /* on_message, on_half_close, on_done */
  CHECK(wait_closed(&c, i));
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), 0);
  CHECK(c.streams[i].data_len == n && memcmp(c.streams[i].data, body, n) == 0);
  CHECK(wait_count(&n_done, done0 + 1));
  /* every method answers, the new ones and the old one */
  int k = unary(&c, "/grow.Svc/M7", NULL, "3:seven", 7);
  CHECK_EQ(h2c_grpc_status(&c.streams[k]), 3);
  k = unary(&c, "/grow.Svc/M299", NULL, "4:last", 6);
  CHECK_EQ(h2c_grpc_status(&c.streams[k]), 4);
  k = unary(&c, "/test.Echo/Unary", NULL, "x", 1);
  CHECK_EQ(h2c_grpc_status(&c.streams[k]), UVG_STATUS_UNIMPLEMENTED);
  CHECK_STR(h2c_header(&c.streams[k], "grpc-message"),
            "unknown method Unary for service test.Echo");
  h2c_close(&c);
  closed_flag = 0;
  uvg_server_close(s, on_server_closed, &closed_flag);
  CHECK(wait_count(&closed_flag, 1));
}

static void test_close_with_call_in_flight(void) {
  uvg_server_t *s;
  int p;
  h2c_t c;
  CHECK_EQ(uvg_server_new(loop, NULL, &s), 0);
  CHECK_EQ(uvg_server_register(s, methods, sizeof(methods) / sizeof(methods[0])), 0);
  CHECK_EQ(uvg_server_listen(s, "127.0.0.1:0", uvg_insecure_server_credentials(), &p), 0);
  CHECK_EQ(h2c_connect(&c, loop, p, 1, 0), 0);
  int calls0 = n_calls, done0 = n_done, cancel0 = n_cancel;
  h2c_request(&c, "/test.Echo/Collect", NULL, NULL, NULL, 0, 0, 0);
  CHECK(wait_count(&n_calls, calls0 + 1));
  closed_flag = 0;
  uvg_server_close(s, on_server_closed, &closed_flag);
  CHECK(wait_count(&closed_flag, 1));
  CHECK_EQ(n_cancel, cancel0 + 1);
  CHECK_EQ(last_cancel_code, UVG_STATUS_UNAVAILABLE);
  CHECK_EQ(n_done, done0 + 1);
  CHECK(wait_count(&c.eof, 1));
  CHECK(c.got_goaway);
  CHECK_EQ(c.goaway_code, NGHTTP2_NO_ERROR);
  h2c_close(&c);
}

/* Out of file descriptors, the server pauses accepting and picks the
 * waiting connections up later, instead of dropping them. */
/* The RLIMIT_NOFILE that leaves room for exactly `n` more descriptors: the
 * limit bounds descriptor numbers, and new ones take the lowest free
 * numbers, wherever the inherited ones sit. */
static int limit_for(int n) {
  for (int fd = 0; fd < 65536; fd++)
    if (fcntl(fd, F_GETFD) == -1 && errno == EBADF && --n == 0) return fd + 1;
  return -1;
}

static int emfile_connected, emfile_eof;
static void emfile_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  static char sink[4096];
  (void)h;
  (void)hint;
  *b = uv_buf_init(sink, sizeof(sink));
}
static void emfile_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
  (void)st;
  (void)b;
  if (n < 0) emfile_eof++;
}
static void emfile_on_connect(uv_connect_t *req, int status) {
  if (status == 0) emfile_connected++;
  uv_read_start(req->handle, emfile_alloc, emfile_read);
}

static void test_accept_backoff_on_emfile(void) {
  enum { N = 4 };
  uv_tcp_t clients[N];
  uv_connect_t reqs[N];
  struct rlimit old, low;
  struct sockaddr_in a;
  uvg_server_stats_t st0, st1;
  getrlimit(RLIMIT_NOFILE, &old);
  uv_ip4_addr("127.0.0.1", port, &a);
  int limit = limit_for(N);
  CHECK(limit > 0);
  uvg_server_get_stats(server, &st0);
  int lines0 = log_lines;
  /* exactly room for the clients' sockets: none for accepting them */
  low = old;
  low.rlim_cur = (rlim_t)limit;
  CHECK_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  emfile_connected = emfile_eof = 0;
  for (int k = 0; k < N; k++) {
    uv_tcp_init(loop, &clients[k]);
    CHECK_EQ(uv_tcp_connect(&reqs[k], &clients[k], (struct sockaddr *)&a,
                            emfile_on_connect), 0);
  }
  h2c_run_for(loop, 100);
  uvg_server_get_stats(server, &st1);
  CHECK_EQ(emfile_connected, N); /* they wait in the backlog */
  CHECK_EQ(st1.connections_accepted, st0.connections_accepted);
  CHECK(log_lines > lines0);
  CHECK(strstr(last_log, "pausing") != NULL);
  /* descriptors come back: every waiting connection is accepted */
  CHECK_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
  uint64_t end = uv_now(loop) + 3000;
  do {
    h2c_run_for(loop, 20);
    uvg_server_get_stats(server, &st1);
  } while (st1.connections_accepted - st0.connections_accepted < N && uv_now(loop) < end);
  CHECK_EQ(st1.connections_accepted - st0.connections_accepted, N);
  CHECK_EQ(emfile_eof, 0); /* none was dropped */
  for (int k = 0; k < N; k++) uv_close((uv_handle_t *)&clients[k], NULL);
  h2c_run_for(loop, 20);
}

/* ---- two servers on one loop share its scheduler ---- */

static uvg_call_t *held_call;
static int n_held, n_share_done;

static void hold_call(uvg_call_t *call, const uint8_t *msg, size_t len) {
  (void)msg;
  (void)len;
  held_call = call;
  n_held++;
}
/* A handler of one server answers a call held by the other. */
static void wake_call(uvg_call_t *call, const uint8_t *msg, size_t len) {
  CHECK(held_call != NULL);
  if (held_call != NULL) {
    CHECK_EQ(uvg_call_send(held_call, msg, len, 0, NULL, NULL), 0);
    CHECK_EQ(uvg_call_finish(held_call, UVG_STATUS_OK, NULL, NULL, 0), 0);
    held_call = NULL;
  }
  CHECK_EQ(uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0), 0);
}
static void share_done(uvg_call_t *call, const uvg_status_t *st) {
  (void)call;
  CHECK_EQ(st->code, UVG_STATUS_OK);
  n_share_done++;
}

/* Checks that every connection of `s` runs on `sched`; returns how many. */
static int conns_on(uvg_server_t *s, uvg__sched_t *sched) {
  int n = 0;
  for (uvg__list_t *p = s->conns.next; p != &s->conns; p = p->next, n++)
    CHECK(uvg__container_of(p, uvg__conn_t, link)->sched == sched);
  return n;
}

static void test_two_servers_share_scheduler(void) {
  static const uvg_method_t hold = {.path = "/test.Share/Hold",
                                    .on_call = hold_call, .on_done = share_done};
  static const uvg_method_t wake = {.path = "/test.Share/Wake",
                                    .on_call = wake_call, .on_done = share_done};
  uvg_server_t *s2;
  h2c_t c1, c2, c3;
  int p2;
  uint8_t body[64];
  CHECK_EQ(uvg_server_new(loop, NULL, &s2), 0);
  CHECK(s2->sched == server->sched);
  CHECK_EQ(server->sched->refs, 2);
  CHECK_EQ(uvg_server_register(server, &hold, 1), 0);
  CHECK_EQ(uvg_server_register(s2, &wake, 1), 0);
  CHECK_EQ(uvg_server_listen(s2, "127.0.0.1:0", uvg_insecure_server_credentials(), &p2), 0);
  CHECK_EQ(h2c_connect(&c1, loop, port, 1, 0), 0);
  CHECK_EQ(h2c_connect(&c2, loop, p2, 1, 0), 0);

  /* c1's call waits on the first server until c2's call to the second
   * one answers it: a handler writing to another server's connection. */
  n_held = n_share_done = 0;
  size_t n = h2c_frame(body, 0, "", 0);
  int i1 = h2c_request(&c1, "/test.Share/Hold", NULL, NULL, body, n, 0, 1);
  CHECK(wait_count(&n_held, 1));
  CHECK_EQ(conns_on(server, server->sched), 1);
  CHECK_EQ(conns_on(s2, server->sched), 1);
  int i2 = unary(&c2, "/test.Share/Wake", NULL, "woken", 5);
  CHECK(wait_closed(&c1, i1));
  CHECK_EQ(h2c_grpc_status(&c1.streams[i1]), 0);
  CHECK_EQ(h2c_grpc_status(&c2.streams[i2]), 0);
  CHECK_EQ(c1.streams[i1].data_len, 10);
  CHECK(c1.streams[i1].data_len == 10 &&
        memcmp(c1.streams[i1].data + 5, "woken", 5) == 0);
  CHECK(wait_count(&n_share_done, 2));

  /* Closing one server leaves the other serving, on the same scheduler. */
  closed_flag = 0;
  uvg_server_close(s2, on_server_closed, &closed_flag);
  CHECK(wait_count(&closed_flag, 1));
  CHECK_EQ(server->sched->refs, 1);
  CHECK(wait_count(&c2.eof, 1));
  h2c_close(&c2);
  int k = unary(&c1, "/test.Echo/Status", NULL, "0:", 2);
  CHECK_EQ(h2c_grpc_status(&c1.streams[k]), 0);
  CHECK_EQ(h2c_connect(&c3, loop, port, 1, 0), 0);
  k = unary(&c3, "/test.Echo/Status", NULL, "0:", 2);
  CHECK_EQ(h2c_grpc_status(&c3.streams[k]), 0);
  h2c_close(&c3);
  h2c_close(&c1);

  /* A server that never listened closes asynchronously too, as uv_close
   * does, though nothing of its own needs closing. */
  CHECK_EQ(uvg_server_new(loop, NULL, &s2), 0);
  closed_flag = 0;
  uvg_server_close(s2, on_server_closed, &closed_flag);
  CHECK_EQ(closed_flag, 0);
  CHECK(wait_count(&closed_flag, 1));
}

/* A handler that pauses reading takes no message and grants no window
 * until it resumes: the client can send only one stream window; then
 * everything arrives, in order, and the half-close after it. */
static int paced_msgs, paced_half;
static uvg_call_t *paced_call;
static void paced_start(uvg_call_t *call, const uint8_t *msg, size_t len) {
  (void)msg;
  (void)len;
  paced_call = call;
  CHECK_EQ(uvg_call_pause_reading(call, 1), 0);
}
static void paced_msg(uvg_call_t *call, const uint8_t *msg, size_t len) {
  (void)call;
  CHECK_EQ(len, 16000);
  CHECK_EQ(msg[0], (uint8_t)paced_msgs);
  paced_msgs++;
}
static void paced_end(uvg_call_t *call) {
  CHECK_EQ(paced_msgs, 40);
  paced_half++;
  uvg_call_finish(call, UVG_STATUS_OK, NULL, NULL, 0);
}
static void test_pause_reading(void) {
  uvg_server_t *s;
  uvg_server_options_t o;
  memset(&o, 0, sizeof(o));
  o.initial_window_size = 65535;
  CHECK_EQ(uvg_server_new(loop, &o, &s), 0);
  uvg_method_t m = {.path = "/p.P/Paced", .type = UVG_METHOD_CLIENT_STREAMING,
                    .on_call = paced_start, .on_message = paced_msg,
                    .on_half_close = paced_end, .on_cancel = finish_on_cancel,
                    .on_done = on_done};
  CHECK_EQ(uvg_server_register(s, &m, 1), 0);
  int p;
  CHECK_EQ(uvg_server_listen(s, "127.0.0.1:0", uvg_insecure_server_credentials(), &p), 0);
  static uint8_t body[40 * 16005], one[16000];
  size_t n = 0;
  for (int k = 0; k < 40; k++) {
    memset(one, k, sizeof(one));
    n = h2c_frame(body, n, one, sizeof(one));
  }
  h2c_t c;
  CHECK_EQ(h2c_connect(&c, loop, p, 1, 0), 0);
  paced_msgs = paced_half = 0;
  int i = h2c_request(&c, "/p.P/Paced", NULL, NULL, body, n, 16384, 1);
  h2c_run_for(loop, 200);
  CHECK_EQ(paced_msgs, 0);
  CHECK(c.streams[i].body_off <= 65535);
  CHECK_EQ(uvg_call_pause_reading(paced_call, 0), 0);
  for (int k = 0; k < 400 && !c.streams[i].closed; k++) h2c_run_for(loop, 5);
  CHECK_EQ(paced_msgs, 40);
  CHECK_EQ(paced_half, 1);
  CHECK_EQ(h2c_grpc_status(&c.streams[i]), 0);
  h2c_close(&c);
  closed_flag = 0;
  uvg_server_close(s, on_server_closed, &closed_flag);
  while (!closed_flag) uv_run(loop, UV_RUN_ONCE);
}

int main(void) {
  loop = uv_default_loop();
  uvg_set_log_cb(on_log, NULL);
  CHECK_EQ(uvg_server_new(loop, NULL, &server), 0);
  CHECK_EQ(uvg_server_register(server, methods, sizeof(methods) / sizeof(methods[0])), 0);
  CHECK_EQ(uvg_server_listen(server, "127.0.0.1:0", uvg_insecure_server_credentials(),
                             &port), 0);
  RUN(test_unary_and_metadata);
  RUN(test_status_and_trailers_only);
  RUN(test_status_details);
  RUN(test_unimplemented_and_content_type);
  RUN(test_framing);
  RUN(test_compression);
  RUN(test_deadline);
  RUN(test_client_reset);
  RUN(test_ping);
  RUN(test_write_coalescing);
  RUN(test_backpressure);
  RUN(test_bad_preface);
  RUN(test_settings_first);
  RUN(test_listen_variants);
  RUN(test_limits);
  RUN(test_interceptors);
  RUN(test_64mib_each_way);
  RUN(test_register_during_call);
  RUN(test_close_with_call_in_flight);
  RUN(test_accept_backoff_on_emfile);
  RUN(test_two_servers_share_scheduler);
  RUN(test_pause_reading);

  uvg_server_stats_t st;
  uvg_server_get_stats(server, &st);
  CHECK_EQ(st.calls_open, 0);
  closed_flag = 0;
  uvg_server_close(server, on_server_closed, &closed_flag);
  uv_run(loop, UV_RUN_DEFAULT);
  CHECK_EQ(closed_flag, 1);
  CHECK_EQ(uv_loop_close(loop), 0);
  TEST_EXIT();
}
